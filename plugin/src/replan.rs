//! Latency changes that take effect whether or not the host re-activates the plugin.
//!
//! VST3 hosts are told a new latency with `restartComponent(kLatencyChanged)`; some re-activate
//! the plugin (a new plan is built in `activate`), others (Ardour 7) only re-read the latency and
//! keep processing. So the plugin never reports a latency before the plan that applies it runs:
//! this helper thread builds the engine for the new Latency choice off the audio thread, the
//! audio thread swaps it in at a block boundary ([`engine::EngineProcessor::take_over`]: it
//! continues from the old engine's input history), and only then reports its latency. The old
//! engine goes back to this thread to be dropped (its worker joined) — the audio thread only
//! moves boxes through rings.
//!
//! The same thread fills the window's latency table for the choices not active (activation
//! computes only the active plan, so it stays quick at any rate).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use engine::{EngineProcessor, EngineSetup};

use crate::editor::EditorShared;
use crate::latency::{LatencyChoice, planned_latency};
use crate::params::VocoderParams;
use crate::translate::{self, Task};

/// Two changes of the Latency choice closer than this (in audio) are coalesced: the second waits
/// until this much audio has passed since the first re-plan (automation cannot thrash the plan).
pub const MIN_REPLAN_INTERVAL_S: f64 = 1.0;

/// What an engine is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanRequest {
    pub choice: LatencyChoice,
    pub task: Task,
    /// The Mode slot the engine starts in.
    pub slot: usize,
}

/// A built engine on its way to the audio thread.
pub struct Built {
    pub engine: Box<EngineProcessor>,
    pub plan: PlanRequest,
}

/// The engine for a plan (main or re-plan thread, never the audio thread): the vocoder engine
/// with the slots' mel models (Resynthesize), or the Translate engine with the translator loaded
/// for the choice's segment and the unit vocoders. The Translate slots it used are published
/// in `shared.translate` (the window's cards).
pub fn build_engine(template: &EngineSetup, plan: PlanRequest, params: &VocoderParams, shared: &EditorShared) -> EngineProcessor {
    match plan.task {
        Task::Resynthesize => {
            let mut setup = template.clone();
            setup.chunk_ms = plan.choice.millis();
            setup.slots = current_models(shared);
            setup.initial_slot = plan.slot;
            // The window may have changed it since activation (it asks for a re-plan).
            setup.unheard = params.unheard.read().engine();
            EngineProcessor::new(setup)
        }
        Task::Translate => {
            let slots = params.translate_slots(plan.choice);
            let setup = translate::translate_setup(
                &slots,
                plan.choice,
                template.host_rate,
                template.channels,
                template.max_block,
                plan.slot,
                template.offline,
                template.worker_threads.clone(),
                shared.live.clone(),
            );
            *shared.translate.write() = Some(slots);
            EngineProcessor::translating(setup)
        }
    }
}

/// The latency every Latency choice would report for a task (the window's table).
fn fill_latency_table(template: &EngineSetup, task: Task, params: &VocoderParams, shared: &EditorShared, stop: &AtomicBool) {
    let models = current_models(shared);
    let slots = (task == Task::Translate).then(|| shared.translate.read().clone().unwrap_or_else(|| params.translate_slots(LatencyChoice::Ms320)));
    for c in LatencyChoice::ALL {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let l = match &slots {
            None => planned_latency(template.host_rate, template.max_block, c, &models, params.unheard.read().engine()),
            Some(s) => translate::planned_translate(s, c, template.host_rate, template.max_block).latency() as u32,
        };
        shared.latency_table[c.index()].store(l, Ordering::Relaxed);
    }
}

/// What a built engine hands the window once the audio thread runs it.
struct Handover {
    stats: Arc<engine::EngineStats>,
    scope: Option<rtrb::Consumer<engine::scope::ScopeFrame>>,
    swapper: engine::SlotSwapper,
    latency: u32,
    task: Task,
}

pub struct Replanner {
    requests: rtrb::Producer<PlanRequest>,
    built: rtrb::Consumer<Built>,
    retired: rtrb::Producer<Box<EngineProcessor>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// An engine is being built (at most one at a time; it carries its choice).
    pub building: bool,
}

impl Replanner {
    /// `template`: the running engine's setup (rate, channels, block, mode flags); the models
    /// are re-read from `shared` when a plan is built, so a hot-swapped model is kept.
    pub fn new(template: EngineSetup, task: Task, assume_freewheel: bool, params: Arc<VocoderParams>, shared: Arc<EditorShared>) -> Self {
        let (requests, mut req_rx) = rtrb::RingBuffer::<PlanRequest>::new(4);
        let (mut built_tx, built) = rtrb::RingBuffer::<Built>::new(2);
        let (retired, mut retired_rx) = rtrb::RingBuffer::<Box<EngineProcessor>>::new(4);
        let stop = Arc::new(AtomicBool::new(false));
        let stop_t = stop.clone();
        let thread = std::thread::Builder::new()
            .name("streamspeech-replan".into())
            .spawn(move || {
                // Fill the window's latency table for the other choices (the active one is set).
                fill_latency_table(&template, task, &params, &shared, &stop_t);
                // What the swapped-in engine hands the window once the swap has happened.
                let mut pending: Option<Handover> = None;
                while !stop_t.load(Ordering::Relaxed) {
                    if let Ok(req) = req_rx.pop() {
                        let mut engine = build_engine(&template, req, &params, &shared);
                        if assume_freewheel {
                            engine.assume_freewheel();
                        }
                        pending = Some(Handover { stats: engine.stats.clone(), scope: engine.take_scope(), swapper: engine.swapper(), latency: engine.latency(), task: req.task });
                        let _ = built_tx.push(Built { engine: Box::new(engine), plan: req });
                    }
                    if let Ok(old) = retired_rx.pop() {
                        // The audio thread runs the new engine now: the window follows it.
                        if let Some(Handover { stats, scope, swapper, latency, task }) = pending.take() {
                            *shared.stats.write() = Some(stats);
                            *shared.scope.lock() = scope;
                            *shared.swapper.lock() = Some(swapper);
                            shared.reported_latency.store(latency, Ordering::Relaxed);
                            shared.active_task.store(task == Task::Translate, Ordering::Relaxed);
                            fill_latency_table(&template, task, &params, &shared, &stop_t);
                        }
                        drop(old);
                    }
                    std::thread::park_timeout(Duration::from_millis(5));
                }
            })
            .expect("spawn re-plan thread");
        Self { requests, built, retired, stop, thread: Some(thread), building: false }
    }

    /// Asks for an engine for `plan` (audio thread; no allocation). Ignored while one is built.
    pub fn request(&mut self, plan: PlanRequest) {
        if !self.building && self.requests.push(plan).is_ok() {
            self.building = true;
            if let Some(t) = &self.thread {
                t.thread().unpark();
            }
        }
    }

    /// The built engine, if ready. With `wait` (rendering exactly: offline or freewheel), waits
    /// for the one in flight (bounded).
    pub fn take_built(&mut self, wait: bool) -> Option<Built> {
        if !self.building {
            return None;
        }
        let start = Instant::now();
        loop {
            if let Ok(b) = self.built.pop() {
                self.building = false;
                return Some(b);
            }
            if !wait || start.elapsed() > Duration::from_secs(30) {
                return None;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Hands the replaced engine back to be dropped off the audio thread.
    pub fn retire(&mut self, old: Box<EngineProcessor>) {
        if let Err(rtrb::PushError::Full(old)) = self.retired.push(old) {
            // Cannot happen with one swap in flight; never drop (join a thread) here.
            std::mem::forget(old);
        }
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }
}

impl Drop for Replanner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn current_models(shared: &EditorShared) -> [Option<Arc<vocoder::Vocoder>>; 2] {
    let slots = shared.slots.read();
    [slots[0].vocoder(), slots[1].vocoder()]
}
