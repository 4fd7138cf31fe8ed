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

pub mod pace;
pub mod scope;
pub mod stream;
pub mod swap;
pub mod timeline;
pub mod translate;
pub mod translate_worker;
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
    /// How many threads the worker's kernels use in real time (a live handle: a change applies
    /// from the next chunk, without a re-plan). Rendering exactly always uses every core.
    pub worker_threads: WorkerThreads,
    /// What the engine does with the slot that is not heard (see [`Unheard`]).
    pub unheard: Unheard,
    /// Offline only: report [`RENDER_AHEAD_SECONDS`] more latency so the worker can take that
    /// much input at once and step the model in large steps (batch speed) although the host
    /// hands small blocks. Only for a host that says it renders offline *at activation* (the
    /// latency is fixed then); the audio is the same, later by the extra latency.
    pub render_ahead: bool,
}

/// The extra latency of [`EngineSetup::render_ahead`]: input the worker may gather before it
/// must compute. 1.5 s lets V1 (22.05 kHz, hop 256) step about 130 frames at a time; the cost is
/// that much extra tail the host renders at the end of a bounce.
pub const RENDER_AHEAD_SECONDS: f64 = 1.5;

/// What the engine does with the mode slot that is not heard.
///
/// Only a heard slot (or one about to be, in a mode fade) needs its model. An unheard slot can
/// keep just its input side (rate conversion and mel frames, about 1 % of a model's cost) and be
/// spun up when a switch needs it: its model is replayed from kept frames so that its output
/// from the fade's first sample on is exactly what it would have been had it run all along
/// ([`stream::SlotStream::spin_up`]). The replay is a burst of work, `spin_up_span` of audio.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Unheard {
    /// Live: compute both slots (a switch never waits; no added latency). Rendering exactly
    /// (offline, freewheel): spin up, since nothing waits on time there.
    #[default]
    Compute,
    /// Always spin up: about half the live load with two full-size models. The reported latency
    /// adds the spin-up span to the worker's margin, so a replay that runs at least as fast as
    /// real time is ready before the fade is heard; one that is not falls back to the delayed
    /// dry signal for the missing samples (counted as underruns and late spin-ups).
    SpinUp,
    /// Compute both slots everywhere (the engine before spin-ups; the reference the spin-up tests
    /// compare against).
    ComputeAlways,
}

impl Unheard {
    /// Whether both slots run their models now (`exact`: rendering exactly).
    pub fn computes_both(self, exact: bool) -> bool {
        match self {
            Unheard::Compute => !exact,
            Unheard::SpinUp => false,
            Unheard::ComputeAlways => true,
        }
    }
}

/// The real-time worker's thread count, shared between the engine and whoever sets it (the
/// plugin's window). 0 means auto ([`auto_worker_threads`]). The kernels' results do not depend
/// on the thread count (their tiles are fixed), so a change never changes the audio.
#[derive(Clone, Debug, Default)]
pub struct WorkerThreads(Arc<std::sync::atomic::AtomicUsize>);

impl WorkerThreads {
    /// A handle set to `n` (0: auto).
    pub fn new(n: usize) -> Self {
        WorkerThreads(Arc::new(std::sync::atomic::AtomicUsize::new(n)))
    }

    /// Sets the choice (0: auto); values beyond the machine's cores are clamped when used.
    pub fn set(&self, n: usize) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// The choice as set (0: auto).
    pub fn choice(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// The thread count the worker uses on a machine with `cores` cores: the choice clamped to
    /// 1..=cores, or the auto share.
    pub fn resolve(&self, cores: usize) -> usize {
        resolve_worker_threads(self.choice(), cores)
    }
}

/// Auto: a quarter of the cores, 1 to 4. A live plugin shares the machine with the host's audio
/// threads, other plugins and other instances of this one: on 2–7 cores it keeps to one (the
/// others stay free for the host), on 8 it takes 2, on 16 or more 4 (beyond that the kernels'
/// gain at streaming chunk sizes is small, see the README's live table).
pub fn auto_worker_threads(cores: usize) -> usize {
    (cores / 4).clamp(1, 4)
}

/// `choice` (0: auto) for a machine with `cores` cores, within 1..=cores.
pub fn resolve_worker_threads(choice: usize, cores: usize) -> usize {
    let cores = cores.max(1);
    if choice == 0 { auto_worker_threads(cores) } else { choice.min(cores) }
}

/// The cores this process may use (1 when unknown).
pub fn machine_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The latency budget, in host samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyBudget {
    /// The largest data latency of the slot pipelines (chunk + model lookahead + STFT lookahead +
    /// both resampler delays and their chunking).
    pub data: u64,
    /// The worker's compute budget: max(chunk, host max block).
    pub margin: u64,
    /// The longest live spin-up replay ([`Unheard::SpinUp`]; 0 otherwise).
    pub spin_up: u64,
    /// Input the worker may gather before computing in an offline render
    /// ([`EngineSetup::render_ahead`]; 0 otherwise).
    pub render_ahead: u64,
}

impl LatencyBudget {
    pub fn total(&self) -> u32 {
        (self.data + self.margin + self.spin_up + self.render_ahead) as u32
    }
}

/// Chunk size in frames for a model at a chunk length in ms (at least one hop): the nearest
/// whole number of hops, except for a model without look-ahead, whose chunk never exceeds the
/// choice (rounded down). There the chunk is most of what the listener waits for (20 ms at
/// 22.05 kHz: one hop, 11.6 ms, instead of two, 23.2 ms); a centred model's look-ahead dwarfs
/// it, and a shorter chunk would only cost more calls.
pub fn chunk_frames(v: &Vocoder, chunk_ms: u32) -> usize {
    let cfg = v.config();
    let samples = chunk_ms as f64 / 1000.0 * cfg.sampling_rate as f64;
    let hops = samples / cfg.hop_size as f64;
    let frames = if v.stream_lag() == 0 { hops.floor() } else { hops.round() };
    (frames as usize).max(1)
}

pub fn new_slot_stream(setup: &EngineSetup, slot: usize) -> SlotStream {
    SlotStream::new(setup.host_rate, setup.slots[slot].clone().map(|v| {
        let c = chunk_frames(&v, setup.chunk_ms);
        (v, c)
    }))
}

/// The latency budget for `setup`. Memoised process-wide (building the slot pipelines to run
/// their availability arithmetic costs ≈ 5–150 ms, more at high or odd rates, and hosts
/// re-activate often): the key holds the models' identities, which the model cache keeps stable.
pub fn plan(setup: &EngineSetup) -> LatencyBudget {
    type Key = (u32, usize, u32, [usize; 2], Unheard, bool);
    static MEMO: std::sync::OnceLock<parking_lot::Mutex<std::collections::HashMap<Key, LatencyBudget>>> = std::sync::OnceLock::new();
    let id = |s: &Option<Arc<Vocoder>>| s.as_ref().map_or(0, |v| Arc::as_ptr(v) as usize);
    let key = (setup.host_rate, setup.max_block, setup.chunk_ms, [id(&setup.slots[0]), id(&setup.slots[1])], setup.unheard, setup.offline && setup.render_ahead);
    let memo = MEMO.get_or_init(Default::default);
    if let Some(b) = memo.lock().get(&key) {
        return *b;
    }
    let b = plan_uncached(setup);
    memo.lock().insert(key, b);
    b
}

fn plan_uncached(setup: &EngineSetup) -> LatencyBudget {
    let mut data = 0;
    let mut chunk = 0;
    let mut spin_up = 0;
    for s in 0..2 {
        let stream = new_slot_stream(setup, s);
        data = data.max(stream.data_latency(setup.host_rate));
        chunk = chunk.max(stream.chunk_host_samples(setup.host_rate));
        spin_up = spin_up.max(stream.spin_up_span());
    }
    // The worker emits wet sample i only once it has seen input i + fade/2, so that every mode
    // switch whose fade reaches back to i is known (see worker.rs).
    data = data.max(mode_fade_samples(setup.host_rate as f32) / 2);
    if chunk == 0 {
        // No model at all: the plan still honours the chosen processing block.
        chunk = (setup.chunk_ms as u64 * setup.host_rate as u64).div_ceil(1000);
    }
    // Live spin-ups replay up to `spin_up` of audio before the worker goes on: the margin holds
    // it, so a model whose replay runs at real time or faster is ready when its fade is heard.
    let spin_up = if setup.unheard == Unheard::SpinUp { spin_up } else { 0 };
    // Without a model there is nothing to batch.
    let has_model = setup.slots.iter().any(Option::is_some);
    let render_ahead = if setup.offline && setup.render_ahead && has_model { render_ahead_samples(setup.host_rate) } else { 0 };
    LatencyBudget { data, margin: chunk.max(setup.max_block as u64), spin_up, render_ahead }
}

/// [`RENDER_AHEAD_SECONDS`] in host samples.
pub fn render_ahead_samples(host_rate: u32) -> u64 {
    (RENDER_AHEAD_SECONDS * host_rate as f64).round() as u64
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
    /// The host is rendering faster than real time without saying so (see [`pace`]): the engine
    /// renders exactly, waiting for the worker.
    pub freewheel: AtomicBool,
    /// Times a freewheel was recognised.
    pub freewheels: AtomicU64,
    /// Stream restarts (transport starts and jumps, see [`EngineProcessor::restart_at`]).
    pub restarts: AtomicU64,
    /// The threads the worker's kernels use now (0 until the worker starts).
    pub worker_threads: std::sync::atomic::AtomicUsize,
    /// Unheard slots brought back for a mode switch (see [`stream::SlotStream::spin_up`]).
    pub spin_ups: AtomicU64,
    /// Host-rate samples those spin-ups replayed.
    pub spin_up_replayed: AtomicU64,
    /// The longest spin-up and all of them together, in µs of worker time.
    pub spin_up_us_max: AtomicU64,
    pub spin_up_us_total: AtomicU64,
    /// Spin-ups whose kept history was too short to be exact (not expected; counted).
    pub spin_ups_short: AtomicU64,
    /// Spin-ups that finished after the audio thread needed their fade's first sample (in real
    /// time: the missing samples played the delayed dry signal, also counted as underruns).
    pub late_spin_ups: AtomicU64,
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
    /// The audio thread waits for every wet sample (announced offline, or a recognised
    /// freewheel): the worker must not resync, and may use every core.
    pub exact: AtomicBool,
    pub stats: Arc<EngineStats>,
}

/// What the audio-thread side is built for (shared by both tasks).
pub(crate) struct Frame {
    pub host_rate: u32,
    pub channels: usize,
    pub max_block: usize,
    pub offline: bool,
    pub initial_slot: usize,
}

/// The worker's ends of the rings.
pub(crate) struct WorkerIo {
    pub input: rtrb::Consumer<f32>,
    pub events: rtrb::Consumer<ModeSwitch>,
    pub restarts: rtrb::Consumer<u64>,
    pub output: rtrb::Producer<Wet>,
    pub scope: rtrb::Producer<scope::ScopeFrame>,
    pub swaps: std::sync::mpsc::Receiver<swap::SlotSwap>,
    pub shared: Arc<Shared>,
}

/// The audio-thread side. Allocates only in `new`.
pub struct EngineProcessor {
    input: rtrb::Producer<f32>,
    events: rtrb::Producer<ModeSwitch>,
    restarts: rtrb::Producer<u64>,
    output: rtrb::Consumer<Wet>,
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
    latency: usize,
    budget: LatencyBudget,
    offline: bool,
    pace: pace::Pace,
    /// Bypass crossfade position (0: processed, 1: delayed input) and where it is heading.
    bypass: f32,
    bypass_target: f32,
    bypass_step: f32,
    /// The clock `pace` reads (seconds since this instant, plus `clock_offset`).
    epoch: Instant,
    clock_offset: f64,
    host_rate: f64,
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
        let frame = Frame { host_rate: setup.host_rate, channels: setup.channels, max_block: setup.max_block, offline: setup.offline, initial_slot: setup.initial_slot };
        Self::with_worker(frame, budget, move |io| worker::spawn(setup, io))
    }

    /// The audio-thread side around a worker that `spawn` starts with the rings' other ends.
    /// The worker emits wet sample `i` for input sample `i`, heard at output `i + budget.total()`.
    pub(crate) fn with_worker(setup: Frame, budget: LatencyBudget, spawn: impl FnOnce(WorkerIo) -> JoinHandle<()>) -> Self {
        let latency = budget.total() as usize;
        let ring = (latency + setup.max_block * 4 + setup.host_rate as usize * 2).next_power_of_two();
        let (in_p, in_c) = rtrb::RingBuffer::new(ring);
        let (ev_p, ev_c) = rtrb::RingBuffer::new(1024);
        let (restart_p, restart_c) = rtrb::RingBuffer::new(256);
        let (out_p, out_c) = rtrb::RingBuffer::new(ring);
        let (scope_p, scope_c) = rtrb::RingBuffer::new(scope::SCOPE_RING);
        let stats = Arc::new(EngineStats::default());
        stats.worker_alive.store(true, Ordering::SeqCst);
        stats.first_underrun_at.store(u64::MAX, Ordering::SeqCst);
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            needed: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            exact: AtomicBool::new(setup.offline),
            stats: stats.clone(),
        });
        let (swapper, swaps) = SlotSwapper::channel();
        let worker = spawn(WorkerIo { input: in_c, events: ev_c, restarts: restart_c, output: out_p, scope: scope_p, swaps, shared: shared.clone() });
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
            restarts: restart_p,
            output: out_c,
            shared,
            worker: Some(worker),
            latency,
            budget,
            offline: setup.offline,
            pace: pace::Pace::new(
                setup.max_block.max(1) as f64 / setup.host_rate as f64,
                latency as f64 / setup.host_rate as f64,
            ),
            epoch: Instant::now(),
            clock_offset: 0.0,
            bypass: 0.0,
            bypass_target: 0.0,
            bypass_step: 1.0 / (MODE_FADE_MS / 1000.0 * setup.host_rate as f32).max(1.0),
            host_rate: setup.host_rate as f64,
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

    /// The host hinted at an offline render but the hint may be stale (nice-plug hands VST3's
    /// `activate` the process mode of the *previous* `setupProcessing`): start rendering exactly,
    /// and let real-time pacing end it (see [`pace`]).
    pub fn assume_freewheel(&mut self) {
        self.pace.assume_freewheel();
        self.shared.exact.store(true, Ordering::Relaxed);
    }

    /// Whether this engine waits for every wet sample now (offline, or a recognised freewheel).
    pub fn renders_exactly(&self) -> bool {
        self.offline || self.pace.freewheel()
    }

    fn clock(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64() + self.clock_offset
    }

    /// [`process`](Self::process) for a block that starts at `now` seconds on the caller's own
    /// clock (a simulated host: a test that plays real time without sleeping). Time inside the
    /// call still runs at wall-clock speed from there.
    pub fn process_at(&mut self, now: f64, channels: &mut [&mut [f32]], mix_gain: &mut dyn FnMut() -> (f32, f32)) {
        self.clock_offset = now - self.epoch.elapsed().as_secs_f64();
        self.process(channels, mix_gain);
    }

    /// Continues from `old` (an engine for another Latency choice) without a host re-activation:
    /// this engine is fed the input `old` last received (as much as the new latency can use and
    /// `old`'s delay lines hold), so its first output sample is the wet/dry signal for the input
    /// exactly `self.latency()` samples back: the delay applied is the new latency from the very
    /// first sample. It also inherits the pacing state (a freewheel stays a freewheel). Call on the
    /// audio thread before the first `process`; it does not allocate. In real time the worker
    /// needs a moment for the history burst (underruns play the delayed dry signal, counted);
    /// rendering exactly it waits, so a bounce is the model's output throughout.
    pub fn take_over(&mut self, old: &EngineProcessor) {
        let history = self.latency.min(old.dry.first().map_or(0, DelayLine::history));
        let n_ch = self.dry.len().min(old.dry.len());
        let inv = 1.0 / n_ch.max(1) as f32;
        for back in (1..=history).rev() {
            let mut sum = 0.0;
            for c in 0..n_ch {
                let x = old.dry[c].recent(back);
                self.dry[c].push_and_read(x, 0);
                sum += x;
            }
            if self.input.push(sum * inv).is_ok() {
                self.pos_pushed += 1;
            }
        }
        self.pos = history as u64;
        self.pace = old.pace.clone();
        self.shared.exact.store(self.offline || self.pace.freewheel(), Ordering::Relaxed);
        self.bypass = old.bypass;
        self.bypass_target = old.bypass_target;
        if let Some(w) = &self.worker {
            w.thread().unpark();
        }
    }

    /// Input samples handed to this engine so far (the index of the next one).
    pub fn input_position(&self) -> u64 {
        self.pos
    }

    /// Restarts the model streams at input sample `at` (≥ the next one; call at the start of a
    /// block): from there on the wet signal is exactly what a fresh engine (a render of the audio
    /// from `at` on) produces — same analysis grids, empty model state — whatever the engine
    /// processed before. The plugin calls it where the host's transport starts or jumps, so a
    /// bounce does not depend on what played before it. Wet samples of the old streams that
    /// needed input past `at` are silence. Counted in `stats.restarts`; a full ring drops it.
    pub fn restart_at(&mut self, at: u64) {
        let _ = self.restarts.push(at.max(self.pos));
    }

    /// Bypass from the next sample on: the output crossfades (20 ms, linear) to the input delayed
    /// by the reported latency, so a host's bypass button is sample-accurate, latency-compensated
    /// and click-free. The worker keeps running, so un-bypassing is immediate.
    pub fn set_bypass(&mut self, bypass: bool) {
        self.bypass_target = if bypass { 1.0 } else { 0.0 };
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
        let block_start = self.clock();
        self.pace.begin_block(block_start, len as f64 / self.host_rate);
        let freewheel = self.pace.freewheel();
        if freewheel != self.stats.freewheel.load(Ordering::Relaxed) {
            self.stats.freewheel.store(freewheel, Ordering::Relaxed);
            if freewheel {
                self.stats.freewheels.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.shared.exact.store(self.offline || freewheel, Ordering::Relaxed);
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
                if v.is_none() {
                    v = self.wait_for(j, block_start);
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
            if self.bypass != self.bypass_target {
                self.bypass = if self.bypass < self.bypass_target {
                    (self.bypass + self.bypass_step).min(self.bypass_target)
                } else {
                    (self.bypass - self.bypass_step).max(self.bypass_target)
                };
            }
            let b = self.bypass;
            for (c, ch) in channels.iter_mut().take(n_ch).enumerate() {
                let d = if c < 8 { dry[c] } else { dry_mono };
                ch[s] = (1.0 - b) * g * (m * wet + (1.0 - m) * d) + b * d;
            }
        }
        self.pos += len as u64;
    }

    /// Waits until the worker has produced wet sample `j`, when waiting is allowed: without limit
    /// when rendering exactly (offline or freewheel), else only within the lead the host has over
    /// real time (never in a real-time callback: there the lead is 0 and this returns at once).
    fn wait_for(&mut self, j: u64, block_start: f64) -> Option<f32> {
        let exact = self.renders_exactly();
        if !exact && self.pace.wait_allowance(block_start, self.clock()) <= 0.0 {
            return None;
        }
        let start = self.clock();
        let v = loop {
            if let Some(v) = self.next_wet(j) {
                break Some(v);
            }
            if self.shared.consumed.load(Ordering::Acquire) >= self.pos_pushed {
                // Everything pushed is processed and wet `j` is not there: it cannot come before
                // more input does (a swapped-in model needing more latency than reported).
                break self.next_wet(j);
            }
            let now = self.clock();
            let out_of_time = if exact { now - start > 60.0 } else { self.pace.wait_allowance(block_start, now) <= 0.0 };
            if !self.stats.worker_alive.load(Ordering::Acquire) || out_of_time {
                break None;
            }
            if let Some(w) = &self.worker {
                w.thread().unpark();
            }
            std::thread::sleep(Duration::from_micros(100));
        };
        let waited = self.clock() - start;
        self.pace.add_wait(waited);
        v
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

    /// How many past samples the line holds (at least the `max_delay` it was made for).
    pub fn history(&self) -> usize {
        self.buf.len() - 1
    }

    /// The sample pushed `back` calls ago (1: the latest), `back <= history()`.
    pub fn recent(&self, back: usize) -> f32 {
        self.buf[(self.write + self.buf.len() - back) & self.mask]
    }

    #[inline]
    pub fn push_and_read(&mut self, x: f32, delay: usize) -> f32 {
        self.buf[self.write] = x;
        let out = self.buf[(self.write + self.buf.len() - delay) & self.mask];
        self.write = (self.write + 1) & self.mask;
        out
    }
}
