//! SimulEval's latency metrics (`simuleval/evaluator/scorers/latency_scorer.py`), with its
//! definitions and its edge cases, for one instance. `delays` are in ms of source consumed when
//! each output unit (a target word, or a speech segment) was written; `source_ms` is the source
//! length. Without a reference, SimulEval's target length is the number of delays.
//!
//! Computation-aware variants take SimulEval's `elapsed` instead of `delays`: the source consumed
//! plus the wall time since the instance started.

/// Average Lagging (STACL): `1/τ Σ_{i≤τ} d_i − (i−1)·|X|/|Y|`, τ the first index whose delay
/// reaches the source's end; the first delay if it is already past the end.
pub fn average_lagging(delays: &[f64], source_ms: f64, target_len: usize) -> Option<f64> {
    lagging(delays, source_ms, target_len as f64 / source_ms)
}

/// Length-adaptive AL: AL with `max(|Y|, |Y*|)` as the target length.
pub fn length_adaptive_average_lagging(delays: &[f64], source_ms: f64, target_len: usize) -> Option<f64> {
    lagging(delays, source_ms, delays.len().max(target_len) as f64 / source_ms)
}

fn lagging(delays: &[f64], source_ms: f64, gamma: f64) -> Option<f64> {
    let first = *delays.first()?;
    if first > source_ms {
        return Some(first);
    }
    let (mut sum, mut tau) = (0.0, 0usize);
    for (i, &d) in delays.iter().enumerate() {
        sum += d - i as f64 / gamma;
        tau = i + 1;
        if d >= source_ms {
            break;
        }
    }
    Some(sum / tau as f64)
}

/// Average Proportion: `Σ d_i / (|X|·|Y|)`.
pub fn average_proportion(delays: &[f64], source_ms: f64, target_len: usize) -> Option<f64> {
    (!delays.is_empty()).then(|| delays.iter().sum::<f64>() / (source_ms * target_len as f64))
}

/// Differentiable Average Lagging (its target length is always the number of delays).
pub fn differentiable_average_lagging(delays: &[f64], source_ms: f64) -> Option<f64> {
    if delays.is_empty() {
        return None;
    }
    let n = delays.len() as f64;
    let gamma = n / source_ms;
    let (mut sum, mut last) = (0.0, 0.0);
    for (i, &g) in delays.iter().enumerate() {
        let g_prime = if i == 0 { g } else { g.max(last + 1.0 / gamma) };
        sum += g_prime - i as f64 / gamma;
        last = g_prime;
    }
    Some(sum / n)
}

/// Speech output laid out as SimulEval's `SpeechOutputInstance.summarize` does: each segment
/// starts at its delay or when the one before it ends. Returns `(start, duration)` per segment.
pub fn speech_intervals(delays: &[f64], durations: &[f64]) -> Vec<(f64, f64)> {
    let mut prev_end = delays.first().copied().unwrap_or(0.0);
    delays
        .iter()
        .zip(durations)
        .map(|(&d, &dur)| {
            let start = prev_end.max(d);
            prev_end = start + dur;
            (start, dur)
        })
        .collect()
}

/// StartOffset: the first output's delay.
pub fn start_offset(delays: &[f64]) -> Option<f64> {
    delays.first().copied()
}

/// EndOffset for speech: where the last interval ends, minus the source length.
pub fn end_offset(intervals: &[(f64, f64)], source_ms: f64) -> Option<f64> {
    intervals.last().map(|(s, d)| s + d - source_ms)
}

/// Average Token Delay (Kano et al. 2022) as SimulEval's `ATDScorer` computes it for speech
/// input: the source cut into 300 ms tokens per chunk (a chunk: the source read between two
/// distinct delays), the output into 300 ms tokens per written speech segment (`durations`
/// given) or 0-length tokens per text token (None); each output token ends at
/// max(its delay, the previous token's end) + its length (+ its share of the chunk's compute when
/// `elapsed` is given: computation-aware), and is paired with the source token its position
/// maps to. The mean of end − source token end.
pub fn average_token_delay(delays: &[f64], durations: Option<&[f64]>, elapsed: Option<&[f64]>) -> Option<f64> {
    const TOKEN_MS: f64 = 300.0;
    if delays.is_empty() {
        return None;
    }
    // Compute time per output (SimulEval: differences of elapsed − delay).
    let compute: Vec<f64> = match elapsed {
        Some(e) if e.iter().any(|&x| x != 0.0) => {
            let spent: Vec<f64> = e.iter().zip(delays).map(|(e, d)| e - d).collect();
            spent.iter().enumerate().map(|(i, &s)| s - if i == 0 { 0.0 } else { spent[i - 1] }).collect()
        }
        Some(e) => e.to_vec(),
        None => vec![0.0; delays.len()],
    };
    let mut distinct: Vec<f64> = Vec::new();
    for &d in delays {
        if !distinct.contains(&d) {
            distinct.push(d);
        }
    }
    // Python's divmod for positive lengths: whole tokens and a remainder token.
    let split = |len: f64| -> Vec<f64> {
        let whole = (len / TOKEN_MS).floor();
        let rest = len - whole * TOKEN_MS;
        let mut v = vec![TOKEN_MS; whole.max(0.0) as usize];
        if rest != 0.0 {
            v.push(rest);
        }
        v
    };
    let (mut src_sizes, mut tgt_sizes) = (vec![0usize], vec![0usize]);
    let mut tgt_chunk = vec![0usize];
    let (mut src_time, mut tgt_time) = (vec![0.0f64], vec![0.0f64]);
    let (mut out_delays, mut out_compute, mut out_lens) = (Vec::new(), Vec::new(), Vec::new());
    match durations {
        None => {
            let mut prev = None;
            for &d in delays {
                if prev != Some(d) {
                    tgt_sizes.push(1);
                } else {
                    *tgt_sizes.last_mut().expect("pushed") += 1;
                }
                prev = Some(d);
            }
            for (i, &n) in tgt_sizes.iter().enumerate().skip(1) {
                tgt_chunk.extend(std::iter::repeat_n(i, n));
            }
            out_delays = delays.to_vec();
            out_compute = compute;
            out_lens = vec![0.0; delays.len()];
        }
        Some(durations) => {
            let (mut chunk_durations, mut chunk_compute): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
            let mut prev = None;
            for ((&d, &c), &dur) in delays.iter().zip(&compute).zip(durations) {
                if prev != Some(d) {
                    chunk_durations.push(dur);
                    chunk_compute.push(c);
                } else {
                    *chunk_durations.last_mut().expect("pushed") += dur;
                    *chunk_compute.last_mut().expect("pushed") += c;
                }
                prev = Some(d);
            }
            for (i, (&dur, &c)) in chunk_durations.iter().zip(&chunk_compute).enumerate() {
                let lens = split(dur);
                let n = lens.len();
                tgt_sizes.push(n);
                tgt_chunk.extend(std::iter::repeat_n(i + 1, n));
                out_delays.extend(std::iter::repeat_n(distinct[i], n));
                out_compute.extend(std::iter::repeat_n(c / n.max(1) as f64, n));
                out_lens.extend(lens);
            }
        }
    }
    let mut prev = 0.0;
    for &d in &distinct {
        let lens = split(d - prev);
        src_sizes.push(lens.len());
        for l in lens {
            src_time.push(src_time.last().expect("starts with 0") + l);
        }
        prev = d;
    }
    for ((&d, &c), &l) in out_delays.iter().zip(&out_compute).zip(&out_lens) {
        let start = d.max(*tgt_time.last().expect("starts with 0"));
        tgt_time.push(start + l + c);
    }
    let mut sum = 0.0;
    let n = tgt_chunk.len() - 1;
    if n == 0 {
        return None;
    }
    for (t, &chunk) in tgt_chunk.iter().enumerate().skip(1) {
        let acc_x: usize = src_sizes[..chunk.min(src_sizes.len())].iter().sum();
        let acc_y: usize = tgt_sizes[..chunk.min(tgt_sizes.len())].iter().sum();
        let s = t as i64 - acc_y.saturating_sub(acc_x) as i64;
        let current: usize = src_sizes[..(chunk + 1).min(src_sizes.len())].iter().sum();
        let s = if s < current as i64 { s } else { current as i64 };
        // Python indexing (a negative index counts from the end), as the scorer does.
        let idx = if s < 0 { (src_time.len() as i64 + s).max(0) as usize } else { (s as usize).min(src_time.len() - 1) };
        sum += tgt_time[t] - src_time[idx];
    }
    Some(sum / n as f64)
}

/// The text and speech metrics of one run, as SimulEval would report them without a reference.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Metrics {
    pub al: Option<f64>,
    pub laal: Option<f64>,
    pub ap: Option<f64>,
    pub dal: Option<f64>,
    pub start_offset: Option<f64>,
    pub end_offset: Option<f64>,
    /// ATD of the speech output ([`average_token_delay`]).
    pub atd: Option<f64>,
}

impl Metrics {
    /// `word_delays`: per target word, the source ms when it was written; `speech`: per speech
    /// segment written, (source ms when written, duration ms).
    pub fn compute(word_delays: &[f64], speech: &[(f64, f64)], source_ms: f64) -> Self {
        let (delays, durations): (Vec<f64>, Vec<f64>) = speech.iter().copied().unzip();
        Metrics { atd: average_token_delay(&delays, Some(&durations), None), ..Self::from_times(word_delays, speech, source_ms) }
    }

    /// Computation-aware: SimulEval's `elapsed` (source consumed + compute so far) per target
    /// word and per speech segment; `speech` as for [`compute`](Self::compute). ATD takes the
    /// delays and the compute between segments; the others take the elapsed times as delays.
    pub fn compute_aware(word_elapsed: &[f64], speech: &[(f64, f64)], speech_elapsed: &[f64], source_ms: f64) -> Self {
        let (delays, durations): (Vec<f64>, Vec<f64>) = speech.iter().copied().unzip();
        let aware: Vec<(f64, f64)> = speech_elapsed.iter().zip(&durations).map(|(&e, &d)| (e, d)).collect();
        Metrics { atd: average_token_delay(&delays, Some(&durations), Some(speech_elapsed)), ..Self::from_times(word_elapsed, &aware, source_ms) }
    }

    fn from_times(word_delays: &[f64], speech: &[(f64, f64)], source_ms: f64) -> Self {
        let n = word_delays.len();
        let (delays, durations): (Vec<f64>, Vec<f64>) = speech.iter().copied().unzip();
        let intervals = speech_intervals(&delays, &durations);
        Metrics {
            atd: None,
            al: average_lagging(word_delays, source_ms, n),
            laal: length_adaptive_average_lagging(word_delays, source_ms, n),
            ap: average_proportion(word_delays, source_ms, n),
            dal: differentiable_average_lagging(word_delays, source_ms),
            start_offset: start_offset(&delays),
            end_offset: end_offset(&intervals, source_ms),
        }
    }
}
