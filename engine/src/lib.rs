//! The streaming engine between the host's real-time callback and the models.
//!
//! Three separate things (as in anira): the audio-thread side [`EngineProcessor`] (rings and
//! atomics only), the scheduler/worker thread ([`worker`]) that owns the slot pipelines, and the
//! models themselves ([`stream::SlotStream`] around `vocoder::Vocoder`).
//!
//! Timing contract: the worker emits wet sample `i` for input sample `i` (index-aligned), and the
//! audio thread outputs it at output sample `i + latency`. The reported latency is the largest
//! data latency of the slot pipelines (found exactly by running their availability arithmetic)
//! plus a safety margin of one processing block (the larger of the chunk and the host's maximum
//! block), which is the worker's compute budget in real time.

pub mod scope;
pub mod stream;
pub mod swap;
pub mod timeline;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use atomic_float::AtomicF32;
use vocoder::Vocoder;

pub use stream::SlotStream;
pub use swap::SlotSwapper;
pub use timeline::{ModeSwitch, ModeTimeline};

/// Crossfade length of a mode switch.
pub const MODE_FADE_MS: f32 = 20.0;
/// Fade from the dry substitute back to the wet signal after an underrun.
pub const RECOVER_FADE_MS: f32 = 5.0;

pub fn mode_fade_samples(sample_rate: f32) -> u64 {
    (((MODE_FADE_MS / 1000.0 * sample_rate).round() as u64).max(2)) & !1
}

/// What the engine is built for.
#[derive(Clone)]
pub struct EngineSetup {
    pub host_rate: u32,
    pub channels: usize,
    pub max_block: usize,
    /// The `Latency` parameter: the processing chunk in ms (rounded to whole hops).
    pub chunk_ms: u32,
    /// Loaded, healthy models per mode slot (None: the slot passes the delayed dry signal).
    pub slots: [Option<Arc<Vocoder>>; 2],
    pub initial_slot: usize,
    /// Offline (bounce): `process` waits for the worker so every sample is the model's.
    pub offline: bool,
    /// Gain of each slot's passthrough when it has no model (1.0; host tests use -1 for slot 1
    /// to locate mode switches).
    pub passthrough_gain: [f32; 2],
}

/// The latency budget, in host samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyBudget {
    /// The largest data latency of the slot pipelines (chunk + model lookahead + STFT lookahead +
    /// both resampler delays and their chunking).
    pub data: u64,
    /// The worker's compute budget: max(chunk, host max block).
    pub margin: u64,
}

impl LatencyBudget {
    pub fn total(&self) -> u32 {
        (self.data + self.margin) as u32
    }
}

/// Chunk size in frames for a model at a chunk length in ms (at least one hop).
pub fn chunk_frames(v: &Vocoder, chunk_ms: u32) -> usize {
    let cfg = v.config();
    let samples = chunk_ms as f64 / 1000.0 * cfg.sampling_rate as f64;
    ((samples / cfg.hop_size as f64).round() as usize).max(1)
}

pub fn new_slot_stream(setup: &EngineSetup, slot: usize) -> SlotStream {
    SlotStream::new(setup.host_rate, setup.slots[slot].clone().map(|v| {
        let c = chunk_frames(&v, setup.chunk_ms);
        (v, c)
    }))
}

pub fn plan(setup: &EngineSetup) -> LatencyBudget {
    let mut data = 0;
    let mut chunk = 0;
    for s in 0..2 {
        let stream = new_slot_stream(setup, s);
        data = data.max(stream.data_latency(setup.host_rate));
        chunk = chunk.max(stream.chunk_host_samples(setup.host_rate));
    }
    // The worker emits wet sample i only once it has seen input i + fade/2, so that every mode
    // switch whose fade reaches back to i is known (see worker.rs).
    data = data.max(mode_fade_samples(setup.host_rate as f32) / 2);
    if chunk == 0 {
        // No model at all: the plan still honours the chosen processing block.
        chunk = (setup.chunk_ms as u64 * setup.host_rate as u64).div_ceil(1000);
    }
    LatencyBudget { data, margin: chunk.max(setup.max_block as u64) }
}

/// Counters shared with the GUI/host threads.
#[derive(Default)]
pub struct EngineStats {
    pub underruns: AtomicU64,
    pub missing_samples: AtomicU64,
    /// Worker time / audio time over the last second or so.
    pub worker_rtf: AtomicF32,
    pub worker_alive: AtomicBool,
    pub worker_error: parking_lot::Mutex<Option<String>>,
    pub resyncs: AtomicU64,
    /// Output sample index of the first underrun (u64::MAX: none), for diagnosis.
    pub first_underrun_at: AtomicU64,
    /// Model hot swaps the worker has started.
    pub swaps: AtomicU64,
}

/// Wet sample with its input index.
#[derive(Clone, Copy, Default)]
pub(crate) struct Wet {
    pub index: u64,
    pub value: f32,
}

pub(crate) struct Shared {
    pub stop: AtomicBool,
    pub ready: AtomicBool,
    /// The wet index the audio thread needs next (for resync decisions).
    pub needed: AtomicU64,
    /// Input samples the worker has fully processed (everything it could emit from them is in
    /// the output ring). A bounce waits for wet audio only while this is behind its input: a
    /// model that needs more latency than was reported (a hot swap) cannot be waited for, since
    /// the host only sends more input once it has this block's output.
    pub consumed: AtomicU64,
    pub stats: Arc<EngineStats>,
}

/// The audio-thread side. Allocates only in `new`.
pub struct EngineProcessor {
    input: rtrb::Producer<f32>,
    events: rtrb::Producer<ModeSwitch>,
    output: rtrb::Consumer<Wet>,
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
    latency: usize,
    budget: LatencyBudget,
    offline: bool,
    dry: Vec<DelayLine>,
    /// Absolute index of the next input sample.
    pos: u64,
    /// Input samples handed to the worker so far.
    pos_pushed: u64,
    last_slot: usize,
    fallback: f32,
    recover_step: f32,
    in_underrun: bool,
    scope: Option<rtrb::Consumer<scope::ScopeFrame>>,
    swapper: SlotSwapper,
    pub stats: Arc<EngineStats>,
}

impl EngineProcessor {
    pub fn new(setup: EngineSetup) -> Self {
        let budget = plan(&setup);
        let latency = budget.total() as usize;
        let ring = (latency + setup.max_block * 4 + setup.host_rate as usize * 2).next_power_of_two();
        let (in_p, in_c) = rtrb::RingBuffer::new(ring);
        let (ev_p, ev_c) = rtrb::RingBuffer::new(1024);
        let (out_p, out_c) = rtrb::RingBuffer::new(ring);
        let (scope_p, scope_c) = rtrb::RingBuffer::new(scope::SCOPE_RING);
        let stats = Arc::new(EngineStats::default());
        stats.worker_alive.store(true, Ordering::SeqCst);
        stats.first_underrun_at.store(u64::MAX, Ordering::SeqCst);
        let shared = Arc::new(Shared { stop: AtomicBool::new(false), ready: AtomicBool::new(false), needed: AtomicU64::new(0), consumed: AtomicU64::new(0), stats: stats.clone() });
        let (swapper, swaps) = SlotSwapper::channel();
        let worker = worker::spawn(setup.clone(), in_c, ev_c, out_p, scope_p, swaps, shared.clone());
        // Activation waits (bounded) until the worker has built its pipelines and warmed its
        // models up, so the first real-time chunk is not late.
        let t0 = Instant::now();
        while !shared.ready.load(Ordering::Acquire) && t0.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let dry = (0..setup.channels.max(1)).map(|_| DelayLine::new(latency)).collect();
        Self {
            input: in_p,
            events: ev_p,
            output: out_c,
            shared,
            worker: Some(worker),
            latency,
            budget,
            offline: setup.offline,
            dry,
            pos: 0,
            pos_pushed: 0,
            last_slot: setup.initial_slot,
            fallback: 0.0,
            recover_step: 1.0 / (RECOVER_FADE_MS / 1000.0 * setup.host_rate as f32).max(1.0),
            in_underrun: false,
            scope: Some(scope_c),
            swapper,
            stats,
        }
    }

    /// The live spectrogram feed (input and wet log-mel columns, paired by input index), for
    /// the window; taken once. The audio thread never touches it.
    pub fn take_scope(&mut self) -> Option<rtrb::Consumer<scope::ScopeFrame>> {
        self.scope.take()
    }

    /// The hot-swap handle for the window's Load… (see [`swap`]); never used on the audio thread.
    pub fn swapper(&self) -> SlotSwapper {
        self.swapper.clone()
    }

    pub fn latency(&self) -> u32 {
        self.latency as u32
    }

    pub fn budget(&self) -> LatencyBudget {
        self.budget
    }

    /// A mode change at the next input sample (call at the start of a block; with sample-accurate
    /// automation the host wrapper splits blocks at parameter events).
    pub fn set_mode(&mut self, slot: usize) {
        if slot != self.last_slot {
            self.last_slot = slot;
            // The ring is far larger than any realistic automation density; a full ring drops
            // the switch (counted) rather than blocking.
            let _ = self.events.push(ModeSwitch { at_input_sample: self.pos, to_slot: slot });
        }
    }

    fn next_wet(&mut self, j: u64) -> Option<f32> {
        loop {
            match self.output.peek() {
                Ok(w) if w.index < j => {
                    let _ = self.output.pop();
                }
                Ok(w) if w.index == j => {
                    let v = w.value;
                    let _ = self.output.pop();
                    return Some(v);
                }
                _ => return None,
            }
        }
    }

    /// Processes one block in place. `mix_gain()` yields (mix 0..1, linear output gain) per sample.
    pub fn process(&mut self, channels: &mut [&mut [f32]], mix_gain: &mut dyn FnMut() -> (f32, f32)) {
        let n_ch = channels.len().min(self.dry.len());
        if n_ch == 0 {
            return;
        }
        let len = channels[0].len();
        let inv = 1.0 / n_ch as f32;
        // 1. Hand the block's input to the worker.
        for s in 0..len {
            let mut sum = 0.0;
            for ch in channels.iter().take(n_ch) {
                sum += sanitize(ch[s]);
            }
            if self.input.push(sum * inv).is_err() {
                // The worker is hopelessly behind (or gone): its stream would lose alignment.
                self.stats.missing_samples.fetch_add(1, Ordering::Relaxed);
            } else {
                self.pos_pushed += 1;
            }
        }
        if let Some(w) = &self.worker {
            w.thread().unpark();
        }
        // 2. Output: delayed dry and the wet sample for input index o - latency.
        for s in 0..len {
            let o = self.pos + s as u64;
            let (m, g) = mix_gain();
            let mut dry_mono = 0.0;
            let mut dry = [0f32; 8];
            for (c, ch) in channels.iter().take(n_ch).enumerate() {
                let d = self.dry[c].push_and_read(sanitize(ch[s]), self.latency);
                if c < 8 {
                    dry[c] = d;
                }
                dry_mono += d * inv;
            }
            let wet = if o < self.latency as u64 {
                0.0
            } else {
                let j = o - self.latency as u64;
                self.shared.needed.store(j, Ordering::Relaxed);
                let mut v = self.next_wet(j);
                if v.is_none() && self.offline {
                    v = self.wait_for(j);
                }
                match v {
                    Some(v) => {
                        self.in_underrun = false;
                        if self.fallback > 0.0 {
                            self.fallback = (self.fallback - self.recover_step).max(0.0);
                        }
                        (1.0 - self.fallback) * v + self.fallback * dry_mono
                    }
                    None => {
                        if !self.in_underrun {
                            self.in_underrun = true;
                            if self.stats.underruns.fetch_add(1, Ordering::Relaxed) == 0 {
                                self.stats.first_underrun_at.store(o, Ordering::Relaxed);
                            }
                        }
                        self.stats.missing_samples.fetch_add(1, Ordering::Relaxed);
                        self.fallback = 1.0;
                        dry_mono
                    }
                }
            };
            for (c, ch) in channels.iter_mut().take(n_ch).enumerate() {
                let d = if c < 8 { dry[c] } else { dry_mono };
                ch[s] = g * (m * wet + (1.0 - m) * d);
            }
        }
        self.pos += len as u64;
    }

    /// Offline: wait until the worker has produced wet sample `j` (never in real time).
    fn wait_for(&mut self, j: u64) -> Option<f32> {
        let start = Instant::now();
        loop {
            if let Some(v) = self.next_wet(j) {
                return Some(v);
            }
            if self.shared.consumed.load(Ordering::Acquire) >= self.pos_pushed {
                // Everything pushed is processed and wet `j` is not there: it cannot come before
                // more input does (a swapped-in model needing more latency than reported).
                return self.next_wet(j);
            }
            if !self.stats.worker_alive.load(Ordering::Acquire) || start.elapsed() > Duration::from_secs(60) {
                return None;
            }
            if let Some(w) = &self.worker {
                w.thread().unpark();
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

impl Drop for EngineProcessor {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(w) = self.worker.take() {
            w.thread().unpark();
            let _ = w.join();
        }
    }
}

/// Replaces NaN/Inf with silence, flushes denormals and clamps absurd levels: nothing
/// non-finite or denormal ever reaches a model.
#[inline]
pub fn sanitize(x: f32) -> f32 {
    if !x.is_finite() || x.abs() < 1e-20 { 0.0 } else { x.clamp(-16.0, 16.0) }
}

/// A fixed-capacity delay line (allocated once).
pub struct DelayLine {
    buf: Vec<f32>,
    mask: usize,
    write: usize,
}

impl DelayLine {
    pub fn new(max_delay: usize) -> Self {
        let size = (max_delay + 1).next_power_of_two();
        Self { buf: vec![0.0; size], mask: size - 1, write: 0 }
    }

    #[inline]
    pub fn push_and_read(&mut self, x: f32, delay: usize) -> f32 {
        self.buf[self.write] = x;
        let out = self.buf[(self.write + self.buf.len() - delay) & self.mask];
        self.write = (self.write + 1) & self.mask;
        out
    }
}
