//! Simultaneous translation as a stream (issues #20, #21): StreamSpeech's policy
//! (`translator::simultaneous`) fed segment by segment, each write's new units voiced by one or
//! more streaming unit vocoders ("lanes": the plugin's Original and Modified modes voice the same
//! units), and each lane's speech laid on the listener's timeline and converted to the output
//! rate as soon as no later decision can change it.
//!
//! One piece of code for the CLI's `translate --simultaneous` and the plugin's Translate task, so
//! that a bounce equals the CLI's render bit for bit: the input goes through the engine's
//! streaming [`RateConverter`] (the same samples `resample_whole` gives, whatever the block
//! sizes), the timeline is decided in the vocoder's samples, and the output converter runs over
//! the timeline in order.
//!
//! The listener's timeline: new speech starts at its decision time (the end of the segment that
//! produced it) plus a fixed delay (the segment, so that its compute fits in the next one, plus
//! the streaming vocoder's lookahead), or right after the speech before it if that still plays
//! (a queue: never overlapping). A live caller that fell behind passes `not_before` (the earliest
//! output sample it can still play): late speech is queued later rather than cut. The queue is
//! bounded: a write whose speech would start more than [`SessionConfig::max_backlog_ms`] after
//! its due time is not voiced (counted in [`LaneStats::dropped_samples`]), so a run that cannot
//! keep up never grows an unbounded backlog.

use std::sync::Arc;
use std::time::Instant;

use translator::model::StreamSpeech;
use translator::simultaneous::{Action, PolicyConfig, SimultaneousAgent, Step, StreamLimits};
use vocoder::units::{Conditioning, UnitStream, UnitVocoder};

use crate::stream::RateConverter;

/// The rate the translator's front end reads.
pub const SOURCE_RATE: u32 = 16_000;

/// One voice of the translation: a unit vocoder and how it is driven.
#[derive(Clone)]
pub struct VoiceSpec {
    pub vocoder: Arc<UnitVocoder>,
    /// Duration prediction (when the model has a predictor), as upstream's agent runs it.
    pub dur_prediction: bool,
    pub speaker: Option<u32>,
    pub cond: Option<Conditioning>,
}

impl VoiceSpec {
    /// Duration prediction on when the model has a predictor (upstream's agent's setting).
    pub fn new(vocoder: Arc<UnitVocoder>, cond: Option<Conditioning>) -> Self {
        let dur_prediction = vocoder.has_duration_predictor();
        VoiceSpec { vocoder, dur_prediction, speaker: None, cond }
    }

    /// The fixed delay of this voice's timeline: the segment plus the streaming vocoder's
    /// lookahead (duration predictor and generator), in ms.
    pub fn delay_ms(&self, segment_ms: usize) -> f64 {
        let v = &self.vocoder;
        let c = v.config();
        segment_ms as f64 + (v.lookahead_units(self.dur_prediction) * c.code_hop_size + v.stream_lag()) as f64 * 1000.0 / c.sampling_rate as f64
    }
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub segment_ms: usize,
    /// The input's rate (converted to 16 kHz for the translator).
    pub in_rate: u32,
    /// The output's rate (each lane's timeline is converted to it).
    pub out_rate: u32,
    /// The input is one utterance, fed as upstream's evaluator feeds its agent (no cut at
    /// silences or at the length cap); else a stream cut by `limits`.
    pub single_utterance: bool,
    pub limits: StreamLimits,
    /// The queue's bound: speech due more than this far behind its decision + delay is dropped.
    pub max_backlog_ms: f64,
}

impl SessionConfig {
    pub fn new(segment_ms: usize, in_rate: u32, out_rate: u32) -> Self {
        SessionConfig { segment_ms, in_rate, out_rate, single_utterance: false, limits: StreamLimits::default(), max_backlog_ms: DEFAULT_MAX_BACKLOG_MS }
    }
}

/// 30 s: a long answer can queue behind a short question, but a run that never keeps up stops
/// growing its queue there.
pub const DEFAULT_MAX_BACKLOG_MS: f64 = 30_000.0;

/// What one policy call did.
#[derive(Debug, Clone)]
pub struct SegmentReport {
    pub index: usize,
    /// Which utterance of the stream (silence or the length cap ends one).
    pub utterance: usize,
    /// 16 kHz source samples consumed when the decision was made (its time).
    pub input_samples: u64,
    pub step: Step,
    /// "READ" or "WRITE" (a final call that adds nothing is a WRITE of nothing, as upstream's).
    pub action: &'static str,
    pub new_units: Vec<u32>,
    /// The utterance ended with this call (its texts are complete).
    pub utterance_done: bool,
    /// Per lane: the speech this call made available.
    pub voiced: Vec<Voiced>,
    /// This call's compute (policy, models, every lane's vocoder), seconds.
    pub compute_s: f64,
}

impl SegmentReport {
    pub fn input_ms(&self) -> f64 {
        self.input_samples as f64 * 1000.0 / SOURCE_RATE as f64
    }
}

/// One lane's speech from one call, on its timeline (the vocoder's samples).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Voiced {
    pub samples: usize,
    /// Where it starts (None: nothing voiced, or dropped past the queue's bound).
    pub start: Option<u64>,
}

/// Per lane counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LaneStats {
    /// Where the last speech ends (vocoder samples).
    pub queue_end: u64,
    /// The most the queue ran behind decision + delay (vocoder samples).
    pub max_backlog: u64,
    /// Speech not voiced because the queue was full.
    pub dropped_samples: u64,
    /// Output samples produced so far (out rate).
    pub output_samples: u64,
}

struct Lane {
    spec: VoiceSpec,
    stream: UnitStream,
    rate: u32,
    delay_ms: f64,
    /// Timeline samples `[converted, converted + pending.len())` not yet converted.
    pending: Vec<f32>,
    converted: u64,
    stats: LaneStats,
    out: RateConverter,
}

impl Lane {
    fn new(spec: VoiceSpec, segment_ms: usize, out_rate: u32) -> Result<Self, String> {
        let stream = spec.vocoder.stream(spec.speaker, spec.dur_prediction, spec.cond.as_ref()).map_err(|e| e.to_string())?;
        let rate = spec.vocoder.config().sampling_rate;
        let delay_ms = spec.delay_ms(segment_ms);
        Ok(Lane { stream, rate, delay_ms, pending: Vec::new(), converted: 0, stats: LaneStats::default(), out: RateConverter::new(rate, out_rate), spec })
    }

    /// Places `audio` decided at `input_ms`; None when dropped (queue bound) or empty.
    fn place(&mut self, audio: &[f32], input_ms: f64, not_before: u64, max_backlog: u64) -> Option<u64> {
        if audio.is_empty() {
            return None;
        }
        let due = self.due(input_ms).max(not_before);
        let start = due.max(self.stats.queue_end);
        if start - due > max_backlog {
            self.stats.dropped_samples += audio.len() as u64;
            return None;
        }
        self.stats.max_backlog = self.stats.max_backlog.max(start - due);
        let end = start + audio.len() as u64;
        let need = (end - self.converted) as usize;
        if self.pending.len() < need {
            self.pending.resize(need, 0.0);
        }
        let from = (start - self.converted) as usize;
        self.pending[from..need].copy_from_slice(audio);
        self.stats.queue_end = end;
        Some(start)
    }

    /// Due position of speech decided at `input_ms` (the CLI's rounding, kept for its traces).
    fn due(&self, input_ms: f64) -> u64 {
        ((input_ms + self.delay_ms) * self.rate as f64 / 1000.0).round() as u64
    }

    /// Converts the timeline up to `end` (everything before it is final), appending to `out`.
    fn convert_to(&mut self, end: u64, out: &mut Vec<f32>) {
        if end <= self.converted {
            return;
        }
        let n = (end - self.converted) as usize;
        if self.pending.len() < n {
            self.pending.resize(n, 0.0);
        }
        let before = out.len();
        self.out.push(&self.pending[..n], out);
        self.pending.drain(..n);
        self.converted = end;
        self.stats.output_samples += (out.len() - before) as u64;
    }
}

/// The translation of one stream. Borrows the model (the agent keeps per-utterance state).
pub struct TranslateSession<'m> {
    cfg: SessionConfig,
    agent: SimultaneousAgent<'m>,
    input: RateConverter,
    /// 16 kHz samples received, not yet fed to the agent (less than a segment, or the segment
    /// held back until the caller says whether the stream ends).
    fresh: Vec<f32>,
    /// 16 kHz samples fed to the agent.
    fed: u64,
    /// Input samples received (in_rate).
    received: u64,
    lanes: Vec<Lane>,
    index: usize,
    utterance: usize,
    ended: bool,
}

impl<'m> TranslateSession<'m> {
    /// `model` loaded for `cfg.segment_ms` ([`StreamSpeech::load_for_segment`]); `voices` in
    /// lane order. Each voice's unit count must equal the translator's.
    pub fn new(model: &'m StreamSpeech, data: &translator::data::DataDir, voices: Vec<VoiceSpec>, cfg: SessionConfig) -> Result<Self, String> {
        let units_out = model.cfg.t2u.vocab.saturating_sub(5);
        for v in &voices {
            let n = v.vocoder.config().num_embeddings;
            if n != units_out {
                return Err(format!("the unit vocoder takes {n} units; the translator emits {units_out}"));
            }
        }
        if cfg.segment_ms == 0 || cfg.in_rate == 0 || cfg.out_rate == 0 {
            return Err("segment and rates must be positive".into());
        }
        let agent = SimultaneousAgent::new(model, PolicyConfig::for_segment(cfg.segment_ms), data.cmvn.clone(), &data.target).map_err(|e| e.to_string())?;
        let lanes = voices.into_iter().map(|v| Lane::new(v, cfg.segment_ms, cfg.out_rate)).collect::<Result<_, _>>()?;
        Ok(TranslateSession { input: RateConverter::new(cfg.in_rate, SOURCE_RATE), cfg, agent, fresh: Vec::new(), fed: 0, received: 0, lanes, index: 0, utterance: 0, ended: false })
    }

    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// 16 kHz samples per policy call.
    pub fn samples_per_segment(&self) -> usize {
        self.agent.samples_per_segment()
    }

    /// Lane `i`'s fixed delay (ms).
    pub fn delay_ms(&self, lane: usize) -> f64 {
        self.lanes[lane].delay_ms
    }

    /// Lane `i`'s rate (its vocoder's).
    pub fn lane_rate(&self, lane: usize) -> u32 {
        self.lanes[lane].rate
    }

    pub fn lane_stats(&self, lane: usize) -> LaneStats {
        self.lanes[lane].stats
    }

    /// 16 kHz samples fed to the policy so far.
    pub fn source_samples(&self) -> u64 {
        self.fed
    }

    /// Appends `x` (input rate) and runs the policy on every whole segment; `end`: the stream
    /// ends with `x` (the last call completes the translation, and the output is flushed to the
    /// input's length or the speech's end, whichever is later). Each lane's new output (out
    /// rate, sample `k` heard at input time `k / out_rate`) is appended to `out[lane]`.
    /// `not_before`: the earliest output sample (out rate) new speech may start at (a live
    /// caller that fell behind); 0 for a render.
    pub fn push(&mut self, x: &[f32], end: bool, not_before: u64, out: &mut [Vec<f32>]) -> Result<Vec<SegmentReport>, String> {
        if self.ended {
            return Err("the stream has ended".into());
        }
        self.received += x.len() as u64;
        self.input.push(x, &mut self.fresh);
        if end {
            // Flush the converter to the input's exact 16 kHz length (as `resample_whole` does).
            let want = (self.received as u128 * SOURCE_RATE as u128 / self.cfg.in_rate as u128) as u64;
            let pad = vec![0.0; self.input.chunk_in * 2 + self.input.delay * 2 * self.cfg.in_rate as usize / SOURCE_RATE as usize + 16];
            while self.fed + (self.fresh.len() as u64) < want {
                self.input.push(&pad, &mut self.fresh);
            }
            self.fresh.truncate((want - self.fed) as usize);
        }
        let per_call = self.samples_per_segment();
        let mut reports = Vec::new();
        // Without `end`, a whole segment is fed as soon as it is here; with it, the last piece
        // (whole or not) goes with `finished`. A stream of nothing still gets its final call.
        loop {
            let last = end && self.fresh.len() <= per_call;
            if !last && self.fresh.len() < per_call {
                break;
            }
            let take = self.fresh.len().min(per_call);
            let seg: Vec<f32> = self.fresh.drain(..take).collect();
            reports.push(self.policy_call(&seg, last, not_before, out)?);
            if last {
                break;
            }
        }
        if end {
            self.ended = true;
            let input_len = |rate: u32| (self.fed as u128 * rate as u128 / SOURCE_RATE as u128) as u64;
            for (lane, o) in self.lanes.iter_mut().zip(out.iter_mut()) {
                let final_end = lane.stats.queue_end.max(input_len(lane.rate));
                lane.convert_to(final_end, o);
                // Flush the output converter to the listener's exact length at the out rate.
                let want = (final_end as u128 * self.cfg.out_rate as u128 / lane.rate as u128) as u64;
                let pad = vec![0.0; lane.out.chunk_in * 2 + lane.out.delay * 2 * lane.rate as usize / self.cfg.out_rate as usize + 16];
                let base = o.len() as u64 - lane.stats.output_samples;
                while lane.stats.output_samples < want {
                    let before = o.len();
                    lane.out.push(&pad, o);
                    lane.stats.output_samples += (o.len() - before) as u64;
                }
                o.truncate((base + want) as usize);
                lane.stats.output_samples = want;
            }
        }
        Ok(reports)
    }

    fn policy_call(&mut self, seg: &[f32], finished: bool, not_before: u64, out: &mut [Vec<f32>]) -> Result<SegmentReport, String> {
        let t = Instant::now();
        let step = if self.cfg.single_utterance { self.agent.push(seg, finished) } else { self.agent.push_stream(seg, finished, &self.cfg.limits) };
        let step = step.map_err(|e| e.to_string())?;
        self.fed += seg.len() as u64;
        let utterance_done = matches!(step.action, Action::Finish | Action::Write { finished: true, .. }) || finished;
        let (action, new_units) = match &step.action {
            Action::Read => ("READ", Vec::new()),
            Action::Write { new_units, .. } => ("WRITE", new_units.clone()),
            Action::Finish => ("WRITE", Vec::new()),
        };
        let ids: Vec<i64> = new_units.iter().map(|&u| u as i64).collect();
        let input_ms = self.fed as f64 * 1000.0 / SOURCE_RATE as f64;
        let next_ms = (self.fed + self.samples_per_segment() as u64) as f64 * 1000.0 / SOURCE_RATE as f64;
        let mut voiced = Vec::with_capacity(self.lanes.len());
        let mut audio = Vec::new();
        for (lane, o) in self.lanes.iter_mut().zip(out.iter_mut()) {
            audio.clear();
            let v = lane.spec.vocoder.clone();
            if !ids.is_empty() || utterance_done {
                v.stream_push(&mut lane.stream, &ids, false, &mut audio).map_err(|e| e.to_string())?;
            }
            if utterance_done {
                // The generator's last samples need the utterance's end.
                v.stream_finish(&mut lane.stream, &mut audio).map_err(|e| e.to_string())?;
                lane.stream = v.stream(lane.spec.speaker, lane.spec.dur_prediction, lane.spec.cond.as_ref()).map_err(|e| e.to_string())?;
            }
            let nb = (not_before as u128 * lane.rate as u128).div_ceil(self.cfg.out_rate as u128) as u64;
            let max_backlog = (self.cfg.max_backlog_ms * lane.rate as f64 / 1000.0) as u64;
            let start = lane.place(&audio, input_ms, nb, max_backlog);
            voiced.push(Voiced { samples: if start.is_some() { audio.len() } else { 0 }, start });
            // Final: everything before where the next speech could start (the next decision
            // comes a whole segment later: only the stream's end feeds less).
            let final_end = lane.stats.queue_end.max(lane.due(next_ms)).max(nb);
            if !finished {
                lane.convert_to(final_end, o);
            }
        }
        let report = SegmentReport {
            index: self.index,
            utterance: self.utterance,
            input_samples: self.fed,
            step,
            action,
            new_units,
            utterance_done,
            voiced,
            compute_s: t.elapsed().as_secs_f64(),
        };
        self.index += 1;
        if utterance_done {
            self.utterance += 1;
        }
        Ok(report)
    }
}
