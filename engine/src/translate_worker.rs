//! The Translate task's engine (issue #21): the same audio-thread side as the vocoder engine
//! ([`crate::EngineProcessor`]: rings and atomics only, exact waits offline, paced waits in a
//! freewheel, bypass, restarts), around a worker that runs a [`TranslateSession`] with one lane
//! per mode slot that has a unit vocoder.
//!
//! Timing: the session's output sample `m` is the listener's timeline at input time `m` (its
//! fixed delay `D` included: new speech starts at its decision + `D`). The worker emits it as
//! wet sample `m - D`, which the audio thread plays (as every engine does) at output
//! `m - D + latency`, the latency being `D + E`, `E` the pipeline's reach: the input's
//! conversion to 16 kHz, the timeline's conversion to the host rate, and one host block. So the
//! listener hears timeline sample `m` at output `m + E` (a bounce is the CLI's render delayed by
//! `E`), and a host's delay compensation puts each piece of translated speech at its decision
//! time (then the queue). A mode switch at input `t` applies at wet `t` (heard, compensated, on
//! its own sample); a slot without a voice (or no translator at all) plays the input delayed by
//! the reported latency.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use translator::data::DataDir;
use translator::model::StreamSpeech;

use crate::scope::ScopeAnalyzer;
use crate::stream::RateConverter;
use crate::timeline::ModeTimeline;
use crate::translate::{SOURCE_RATE, SessionConfig, TranslateSession, VoiceSpec};
use crate::worker::push_wet;
use crate::{EngineProcessor, Frame, LatencyBudget, Wet, WorkerIo, WorkerThreads, mode_fade_samples};

/// A translator ready to run: the model loaded for one segment size and its data directory.
pub struct Translator {
    pub model: StreamSpeech,
    pub data: DataDir,
    pub segment_ms: usize,
}

/// What the Translate engine is built for.
#[derive(Clone)]
pub struct TranslateSetup {
    pub host_rate: u32,
    pub channels: usize,
    pub max_block: usize,
    /// StreamSpeech's source segment (the translator must be loaded for it).
    pub segment_ms: usize,
    /// None: every slot plays the delayed dry signal.
    pub translator: Option<Arc<Translator>>,
    /// Per mode slot: the unit vocoder that voices it (None: the delayed dry signal).
    pub voices: [Option<VoiceSpec>; 2],
    pub initial_slot: usize,
    pub offline: bool,
    pub worker_threads: WorkerThreads,
    /// Live text and counters for the window.
    pub live: Arc<LiveTranslation>,
}

/// What the window shows while translating: the texts as decided and the queue. Written by the
/// worker (never the audio thread).
#[derive(Default)]
pub struct LiveTranslation {
    pub text: parking_lot::Mutex<LiveText>,
    /// The backlog (ms) of the audible lane's queue behind decision + delay, now.
    pub backlog_ms: atomic_float::AtomicF32,
    /// Speech not voiced because the queue was full (ms, all lanes).
    pub dropped_ms: atomic_float::AtomicF32,
    /// Policy calls and writes so far.
    pub segments: std::sync::atomic::AtomicU64,
    pub writes: std::sync::atomic::AtomicU64,
}

/// Finished utterances (the last minute of them) and the current one.
#[derive(Default, Clone, Debug)]
pub struct LiveText {
    /// (source time ms of its end, ASR text, translation) per finished utterance.
    pub done: VecDeque<(f64, String, String)>,
    /// The current utterance: committed ASR and translation, and the ST CTC's tentative text.
    pub asr: String,
    pub translation: String,
    pub tentative: String,
    /// Source time (ms since the stream started) of the last decision.
    pub at_ms: f64,
}

impl LiveText {
    fn update(&mut self, data: &DataDir, r: &crate::translate::SegmentReport, base_ms: f64) {
        self.at_ms = base_ms + r.input_ms();
        self.asr = data.source.detokenize(&r.step.asr_ids);
        self.translation = data.target.detokenize(&r.step.translation_ids);
        self.tentative = data.target.detokenize(&r.step.st_ids);
        if r.utterance_done {
            let (asr, tr) = (std::mem::take(&mut self.asr), std::mem::take(&mut self.translation));
            self.tentative.clear();
            if !asr.is_empty() || !tr.is_empty() {
                self.done.push_back((self.at_ms, asr, tr));
            }
        }
        while self.done.front().is_some_and(|(t, _, _)| *t < self.at_ms - 60_000.0) {
            self.done.pop_front();
        }
    }
}

/// The Translate engine's delays, in host samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TranslatePlan {
    /// The timeline's fixed delay `D` (the largest of the voices'; the segment without one).
    pub delay: u64,
    /// The conversions' reach (input to 16 kHz, timeline to the host rate).
    pub reach: u64,
    /// One host block.
    pub margin: u64,
}

impl TranslatePlan {
    pub fn latency(&self) -> u64 {
        self.delay + self.reach + self.margin
    }
}

/// Input samples a converter from `from` to `to` needs beyond an output sample's position.
fn converter_reach(from: u32, to: u32) -> u64 {
    let c = RateConverter::new(from, to);
    if from == to {
        return 0;
    }
    c.chunk_in as u64 + (c.delay as u64 * from as u64).div_ceil(to as u64)
}

pub fn translate_plan(setup: &TranslateSetup) -> TranslatePlan {
    let host = setup.host_rate as u64;
    let voices: Vec<&VoiceSpec> = if setup.translator.is_some() { setup.voices.iter().flatten().collect() } else { Vec::new() };
    let delay_ms = voices.iter().map(|v| v.delay_ms(setup.segment_ms)).fold(setup.segment_ms as f64, f64::max);
    let delay = (delay_ms * host as f64 / 1000.0).ceil() as u64;
    let mut reach = if voices.is_empty() { 0 } else { converter_reach(setup.host_rate, SOURCE_RATE) };
    let out = voices.iter().map(|v| {
        let rate = v.vocoder.config().sampling_rate;
        (converter_reach(rate, setup.host_rate) * host).div_ceil(rate as u64)
    });
    reach += out.max().unwrap_or(0);
    // Rounding of due times and of the rate ratios.
    if !voices.is_empty() {
        reach += 4;
    }
    TranslatePlan { delay, reach, margin: setup.max_block as u64 }
}

impl EngineProcessor {
    /// The Translate task's engine (see the module's docs).
    pub fn translating(setup: TranslateSetup) -> Self {
        let plan = translate_plan(&setup);
        let budget = LatencyBudget { data: plan.delay + plan.reach, margin: plan.margin, spin_up: 0, render_ahead: 0 };
        let frame = Frame { host_rate: setup.host_rate, channels: setup.channels, max_block: setup.max_block, offline: setup.offline, initial_slot: setup.initial_slot };
        Self::with_worker(frame, budget, move |io| spawn(setup, plan, io))
    }
}

fn spawn(setup: TranslateSetup, plan: TranslatePlan, io: WorkerIo) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("streamspeech-translate".into())
        .spawn(move || run(setup, plan, io))
        .expect("spawn worker thread")
}

/// One session and its lanes' output not yet mixed.
struct Lanes<'m> {
    session: Option<TranslateSession<'m>>,
    /// Input index where the session started: its output `k` is wet `base + k - D`.
    base: u64,
    /// Per lane: output not yet mixed, from wet index `emitted` on.
    bufs: Vec<VecDeque<f32>>,
    /// Per lane: the wet index (+ D, to stay unsigned) of the next output sample.
    next: Vec<u64>,
    out: Vec<Vec<f32>>,
}

fn run(setup: TranslateSetup, plan: TranslatePlan, io: WorkerIo) {
    let WorkerIo { mut input, mut events, mut restarts, mut output, scope: scope_out, swaps, shared } = io;
    let all_cores = crate::machine_cores();
    let threads_now = |exact: bool| if exact { all_cores } else { setup.worker_threads.resolve(all_cores) };
    let mut threads = threads_now(shared.exact.load(Ordering::Relaxed));
    vocoder::kernels::set_threads(threads);
    shared.stats.worker_threads.store(threads, Ordering::Relaxed);
    // Slot → lane (the voices present, in slot order), when there is a translator.
    let translator = setup.translator.clone();
    let mut lane_of = [None, None];
    let mut voices = Vec::new();
    if translator.is_some() {
        for (slot, v) in setup.voices.iter().enumerate() {
            if let Some(v) = v {
                lane_of[slot] = Some(voices.len());
                voices.push(v.clone());
            }
        }
    }
    let new_session = |at: u64| -> Lanes<'_> {
        let session = translator.as_ref().filter(|_| !voices.is_empty()).and_then(|t| {
            let cfg = SessionConfig::new(setup.segment_ms, setup.host_rate, setup.host_rate);
            match TranslateSession::new(&t.model, &t.data, voices.clone(), cfg) {
                Ok(s) => Some(s),
                Err(e) => {
                    *shared.stats.worker_error.lock() = Some(e);
                    None
                }
            }
        });
        Lanes { session, base: at, bufs: vec![VecDeque::new(); voices.len()], next: vec![at; voices.len()], out: vec![Vec::new(); voices.len()] }
    };
    let mut lanes = new_session(0);
    let fade = mode_fade_samples(setup.host_rate as f32);
    let mut timeline = ModeTimeline::new(setup.initial_slot, fade);
    let mut scope = ScopeAnalyzer::new(setup.host_rate, scope_out);
    // The input from wet index `emitted` on (the passthrough slots' signal).
    let mut dry: VecDeque<f32> = VecDeque::new();
    let mut buf: Vec<f32> = Vec::with_capacity(8192);
    let mut wet_buf: Vec<f32> = Vec::with_capacity(8192);
    let (mut emitted, mut input_pos) = (0u64, 0u64);
    let (mut busy, mut audio) = (0f64, 0f64);
    let d = plan.delay;
    let max_behind = setup.host_rate as u64 * 2 + plan.latency();
    shared.ready.store(true, Ordering::Release);
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        // Unit vocoders are not hot-swapped here: a new one re-plans the engine.
        while swaps.try_recv().is_ok() {}
        buf.clear();
        let n = input.slots().min(8192);
        if n == 0 {
            std::thread::park_timeout(Duration::from_millis(2));
            continue;
        }
        if let Ok(chunk) = input.read_chunk(n) {
            let (a, b) = chunk.as_slices();
            buf.extend_from_slice(a);
            buf.extend_from_slice(b);
            chunk.commit_all();
        }
        // A switch at input t applies to wet t (heard at t + latency, as in every engine).
        while let Ok(e) = events.pop() {
            timeline.schedule(e);
        }
        let t0 = Instant::now();
        let exact = shared.exact.load(Ordering::Relaxed);
        if threads_now(exact) != threads {
            threads = threads_now(exact);
            vocoder::kernels::set_threads(threads);
            shared.stats.worker_threads.store(threads, Ordering::Relaxed);
        }
        // Real time only: hopelessly behind? Drop the input backlog and start a new session at
        // the present (the utterance in progress is lost; counted).
        let needed = shared.needed.load(Ordering::Relaxed);
        if !exact && needed > emitted + max_behind {
            input_pos += buf.len() as u64;
            let skip = input.slots();
            if let Ok(c) = input.read_chunk(skip) {
                c.commit_all();
            }
            input_pos += skip as u64;
            lanes = new_session(input_pos);
            emitted = input_pos;
            dry.clear();
            scope.restart(emitted);
            shared.stats.resyncs.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let mut seg_start = 0;
        loop {
            let first = input_pos;
            let remaining = (buf.len() - seg_start) as u64;
            let restart_at = match restarts.peek() {
                Ok(&r) if r < first + remaining => Some(seg_start + (r.max(first) - first) as usize),
                _ => None,
            };
            let cut = restart_at.unwrap_or(buf.len());
            let seg = &buf[seg_start..cut];
            input_pos += seg.len() as u64;
            scope.push_input(seg);
            dry.extend(seg.iter().copied());
            if let Some(s) = lanes.session.as_mut() {
                // Speech decided now cannot be heard before the audio thread's next sample.
                let not_before = (needed + d + plan.reach + plan.margin).saturating_sub(lanes.base);
                let not_before = if exact { 0 } else { not_before };
                match s.push(seg, false, not_before, &mut lanes.out) {
                    Ok(reports) => {
                        if let Some(t) = translator.as_ref().filter(|_| !reports.is_empty()) {
                            let mut text = setup.live.text.lock();
                            for r in &reports {
                                text.update(&t.data, r, lanes.base as f64 * 1000.0 / setup.host_rate as f64);
                            }
                            drop(text);
                            let writes = reports.iter().filter(|r| !r.new_units.is_empty()).count() as u64;
                            setup.live.segments.fetch_add(reports.len() as u64, Ordering::Relaxed);
                            setup.live.writes.fetch_add(writes, Ordering::Relaxed);
                        }
                        let lane = lane_of[timeline.target_slot()].unwrap_or(0);
                        let stats = s.lane_stats(lane);
                        let rate = s.lane_rate(lane) as f32;
                        let queued = stats.queue_end as f32 / rate * 1000.0 - (s.source_samples() as f32 / 16.0 + s.delay_ms(lane) as f32);
                        setup.live.backlog_ms.store(queued.max(0.0), Ordering::Relaxed);
                        let dropped: u64 = (0..voices.len()).map(|l| s.lane_stats(l).dropped_samples * 1000 / s.lane_rate(l) as u64).sum();
                        setup.live.dropped_ms.store(dropped as f32, Ordering::Relaxed);
                    }
                    Err(e) => {
                        *shared.stats.worker_error.lock() = Some(e);
                        shared.stats.worker_alive.store(false, Ordering::Release);
                        return;
                    }
                }
                // Output for wet indices already mixed (a restarted session's first samples) is
                // dropped.
                for ((b, o), next) in lanes.bufs.iter_mut().zip(lanes.out.iter_mut()).zip(lanes.next.iter_mut()) {
                    let n = o.len();
                    let skip = ((emitted + d).saturating_sub(*next) as usize).min(n);
                    b.extend(o.drain(..).skip(skip));
                    *next += n as u64;
                }
            }
            // Mix what every lane has and the mode timeline allows (a switch at input t fades
            // from t - fade/2, known once input t has been read).
            let mut ready = input_pos.saturating_sub(fade / 2);
            if lanes.session.is_some() {
                for b in &lanes.bufs {
                    ready = ready.min(emitted + b.len() as u64);
                }
            }
            wet_buf.clear();
            while emitted < ready {
                let m = emitted;
                let value_of = |slot: usize| -> f32 {
                    match lane_of[slot] {
                        Some(l) if lanes.session.is_some() => lanes.bufs[l].front().copied().unwrap_or(0.0),
                        _ => dry.front().copied().unwrap_or(0.0),
                    }
                };
                let (sa, ga, sb, gb) = timeline.gains_at(m);
                let value = ga * value_of(sa) + if gb != 0.0 { gb * value_of(sb) } else { 0.0 };
                wet_buf.push(value);
                if !push_wet(&mut output, Wet { index: m, value }, &shared) {
                    return;
                }
                emitted += 1;
                for b in lanes.bufs.iter_mut() {
                    b.pop_front();
                }
                dry.pop_front();
            }
            scope.push_wet(&wet_buf);
            if restart_at.is_some() {
                let _ = restarts.pop();
                // The session ends here: speech it had not voiced is lost, and a fresh one starts
                // at this input sample, exactly as a render of the audio from here on does (what
                // is already mixed plays on; the fresh session's speech comes D later anyway).
                lanes = new_session(input_pos);
                scope.restart(emitted);
                shared.stats.restarts.fetch_add(1, Ordering::Relaxed);
            }
            seg_start = cut;
            if restart_at.is_none() {
                break;
            }
        }
        shared.consumed.store(input_pos, Ordering::Release);
        busy += t0.elapsed().as_secs_f64();
        audio += buf.len() as f64 / setup.host_rate as f64;
        if audio > 0.5 {
            shared.stats.worker_rtf.store((busy / audio) as f32, Ordering::Relaxed);
            busy = 0.0;
            audio = 0.0;
        }
    }
    shared.stats.worker_alive.store(false, Ordering::Release);
}
