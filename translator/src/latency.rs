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

/// The text and speech metrics of one run, as SimulEval would report them without a reference.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Metrics {
    pub al: Option<f64>,
    pub laal: Option<f64>,
    pub ap: Option<f64>,
    pub dal: Option<f64>,
    pub start_offset: Option<f64>,
    pub end_offset: Option<f64>,
}

impl Metrics {
    /// `word_delays`: per target word, the source ms when it was written; `speech`: per speech
    /// segment written, (source ms when written, duration ms).
    pub fn compute(word_delays: &[f64], speech: &[(f64, f64)], source_ms: f64) -> Self {
        let n = word_delays.len();
        let (delays, durations): (Vec<f64>, Vec<f64>) = speech.iter().copied().unzip();
        let intervals = speech_intervals(&delays, &durations);
        Metrics {
            al: average_lagging(word_delays, source_ms, n),
            laal: length_adaptive_average_lagging(word_delays, source_ms, n),
            ap: average_proportion(word_delays, source_ms, n),
            dal: differentiable_average_lagging(word_delays, source_ms),
            start_offset: start_offset(&delays),
            end_offset: end_offset(&intervals, source_ms),
        }
    }
}
