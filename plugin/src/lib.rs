//! StreamSpeech Vocoder: the plugin as hosts see it.
//!
//! The `Plugin` impl is deliberately thin: parameters live in [`params`], model slots in
//! [`models`], and all audio work in the `engine` crate (audio-thread side, worker thread,
//! models). The host contract (latency, automation, state) stays here.

use nice_plug::prelude::*;
use std::num::NonZeroU32;
use std::sync::Arc;

pub mod editor;
pub mod latency;
pub mod models;
pub mod params;
pub mod replan;
pub mod translate;
pub mod view;

use editor::EditorShared;
use engine::{EngineProcessor, EngineSetup};
use replan::Replanner;
use std::sync::atomic::Ordering;
pub use engine::{MODE_FADE_MS, mode_fade_samples};
pub use latency::{LatencyChoice, planned_latency};
use models::SlotStatus;
pub use params::{DeviceChoice, Mode, ThreadsChoice, UnheardChoice, VocoderParams};
pub use translate::Task;

/// Stable plugin identities. Changing these breaks every saved project that uses the plugin.
pub const CLAP_ID: &str = "org.streamspeech.vocoder";
pub const VST3_CLASS_ID: [u8; 16] = *b"StrmSpchVocoder1";
pub const PLUGIN_NAME: &str = "StreamSpeech Vocoder";

/// Gain of each empty slot's passthrough: the host-test build gives the Modified slot the
/// opposite polarity so tests can see where a mode switch lands.
const PASSTHROUGH_GAIN: [f32; 2] = if cfg!(feature = "host-test-slots") { [1.0, -1.0] } else { [1.0, 1.0] };

pub struct StreamSpeechVocoder {
    params: Arc<VocoderParams>,
    engine: Option<Box<EngineProcessor>>,
    /// Builds the engine for a new Latency choice off the audio thread (VST3, standalone).
    replanner: Option<Replanner>,
    /// Input samples processed since activation, and when the last re-plan was asked for.
    position: u64,
    last_replan_at: Option<u64>,
    host_rate: u32,
    transport: TransportAnchor,
    /// What the window shows: the models each slot holds, the device, the latency table, the
    /// engine's meters and spectrogram feed (written here on activation, never in `process`).
    pub shared: Arc<EditorShared>,
    active_choice: LatencyChoice,
    active_task: Task,
    /// A restart was requested for a latency change and has not happened yet.
    restart_requested: bool,
}

impl Default for StreamSpeechVocoder {
    fn default() -> Self {
        Self {
            params: Arc::new(VocoderParams::default()),
            engine: None,
            replanner: None,
            position: 0,
            last_replan_at: None,
            host_rate: 48_000,
            transport: TransportAnchor::default(),
            shared: Arc::new(EditorShared::default()),
            active_choice: LatencyChoice::Ms80,
            active_task: Task::Resynthesize,
            restart_requested: false,
        }
    }
}

/// The models the plugin would use for the persisted slot values (loads them if needed).
pub fn resolve_slots(params: &VocoderParams) -> ([SlotStatus; 2], String) {
    let (device, device_status) = models::resolve_device(*params.device.read());
    (
        [
            models::load_slot(Mode::Original, params.model_original.read().as_deref(), &device),
            models::load_slot(Mode::Modified, params.model_modified.read().as_deref(), &device),
        ],
        device_status,
    )
}

/// What `activate` reports for these inputs with default slot settings (host tests use this to
/// check the reported value against the engine's own).
pub fn expected_latency(host_rate: u32, max_block: usize, choice: LatencyChoice) -> u32 {
    expected_latency_with(host_rate, max_block, choice, UnheardChoice::Compute)
}

/// The same with a choice for the unheard slot.
pub fn expected_latency_with(host_rate: u32, max_block: usize, choice: LatencyChoice, unheard: UnheardChoice) -> u32 {
    let (slots, _) = resolve_slots(&VocoderParams::default());
    planned_latency(host_rate, max_block, choice, &[slots[0].vocoder(), slots[1].vocoder()], unheard.engine())
}

/// What `activate` reports when a CLAP host activates for an offline render (a bounce): the
/// real-time latency plus the render-ahead (`engine::RENDER_AHEAD_SECONDS`) when a slot has a model.
pub fn expected_offline_latency(host_rate: u32, max_block: usize, choice: LatencyChoice) -> u32 {
    let (slots, _) = resolve_slots(&VocoderParams::default());
    let has_model = slots.iter().any(|s| s.vocoder().is_some());
    expected_latency(host_rate, max_block, choice) + if has_model { engine::render_ahead_samples(host_rate) as u32 } else { 0 }
}

/// What `activate` reports in Translate for these inputs and the persisted slots (host tests
/// check the reported value against it).
pub fn expected_translate_latency(params: &VocoderParams, host_rate: u32, max_block: usize, choice: LatencyChoice) -> u32 {
    translate::planned_translate(&params.translate_slots(choice), choice, host_rate, max_block).latency() as u32
}

impl StreamSpeechVocoder {
    fn activate_inner(
        &mut self,
        audio_io_layout: &AudioIOLayout,
        buffer_config: &BufferConfig,
        context: &mut impl ActivateContext<Self>,
    ) -> bool {
        pin_library();
        // Models load here (main thread, cached process-wide: once per process, not per
        // activation), never in process().
        let (slots, device_status) = resolve_slots(&self.params);
        let models = [slots[0].vocoder(), slots[1].vocoder()];
        *self.shared.slots.write() = slots;
        *self.shared.device_status.write() = device_status;
        let host_rate = buffer_config.sample_rate.round() as u32;
        let max_block = buffer_config.max_buffer_size as usize;
        let choice = self.params.latency.value();
        let channels = audio_io_layout.main_output_channels.map(NonZeroU32::get).unwrap_or(0) as usize;
        // CLAP's render extension is reliable; VST3's mode reaches `activate` one
        // `setupProcessing` late in nice-plug, so there it only starts the engine rendering
        // exactly, and real-time pacing ends that (engine/src/pace.rs). A host that says nothing
        // and renders faster than real time is recognised by its pacing either way.
        let host_offline = buffer_config.process_mode == ProcessMode::Offline;
        let trusted_offline = host_offline && context.plugin_api() == PluginApi::Clap;
        // The persisted choice (restored with the project) reaches the worker through the live handle.
        self.shared.worker_threads.set(self.params.worker_threads.read().engine_value());
        let setup = EngineSetup {
            host_rate,
            channels,
            max_block,
            chunk_ms: choice.millis(),
            slots: models,
            initial_slot: self.params.mode.value().slot(),
            offline: trusted_offline,
            passthrough_gain: PASSTHROUGH_GAIN,
            worker_threads: self.shared.worker_threads.clone(),
            unheard: self.params.unheard.read().engine(),
            // A bounce the host announced: gather 1.5 s of input per model step (batch speed);
            // the host compensates the extra latency, fixed at this activation.
            render_ahead: trusted_offline,
        };
        let task = self.params.task.value();
        let assume_freewheel = host_offline && !trusted_offline;
        let plan = replan::PlanRequest { choice, task, slot: self.params.mode.value().slot() };
        let mut engine = Box::new(replan::build_engine(&setup, plan, &self.params, &self.shared));
        if assume_freewheel {
            engine.assume_freewheel();
        }
        // Only the active plan is computed here (activation stays quick at any rate); the
        // re-plan thread fills in the window's table for the other choices.
        for c in LatencyChoice::ALL {
            self.shared.latency_table[c.index()].store(0, Ordering::Relaxed);
        }
        self.shared.active_task.store(task == Task::Translate, Ordering::Relaxed);
        self.shared.latency_table[choice.index()].store(engine.latency(), Ordering::Relaxed);
        // Within activate() is the one place CLAP allows `latency.changed`.
        context.set_latency_samples(engine.latency());
        let shared = &self.shared;
        shared.reported_latency.store(engine.latency(), Ordering::Relaxed);
        shared.sample_rate.store(buffer_config.sample_rate, Ordering::Relaxed);
        shared.max_block.store(max_block as u32, Ordering::Relaxed);
        shared.restart_pending.store(false, Ordering::Release);
        shared.replan_requested.store(false, Ordering::Release);
        *shared.stats.write() = Some(engine.stats.clone());
        *shared.scope.lock() = engine.take_scope();
        *shared.swapper.lock() = Some(engine.swapper());
        self.replanner = Some(Replanner::new(setup, task, assume_freewheel, self.params.clone(), self.shared.clone()));
        self.active_choice = choice;
        self.active_task = task;
        self.restart_requested = false;
        self.position = 0;
        self.last_replan_at = None;
        self.host_rate = host_rate;
        self.transport = TransportAnchor::default();
        self.params.mix.smoothed.reset(self.params.mix.value());
        self.params.output_db.smoothed.reset(self.params.output_db.value());
        engine.set_bypass(self.params.bypass.value());
        self.engine = Some(engine);
        true
    }
}

impl Plugin for StreamSpeechVocoder {
    const NAME: &'static str = PLUGIN_NAME;
    const VENDOR: &'static str = "StreamSpeech Vocoder project";
    const URL: &'static str = "https://example.invalid/streamspeech-vocoder";
    const EMAIL: &'static str = "streamspeech-vocoder@example.invalid";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = &[
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(2),
            main_output_channels: NonZeroU32::new(2),
            ..AudioIOLayout::const_default()
        },
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(1),
            main_output_channels: NonZeroU32::new(1),
            ..AudioIOLayout::const_default()
        },
    ];

    // Mode switches must land on the automation sample, not the next block boundary.
    const SAMPLE_ACCURATE_AUTOMATION: bool = true;

    type SysExMessage = ();
    type BackgroundTask = ();
    type Editor = editor::VocoderEditor;

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn editor(&mut self, _async_executor: AsyncExecutor<Self>) -> Option<Self::Editor> {
        editor::create(self.params.clone(), self.shared.clone())
    }

    fn activate(
        &mut self,
        audio_io_layout: &AudioIOLayout,
        buffer_config: &BufferConfig,
        context: &mut impl ActivateContext<Self>,
    ) -> bool {
        // Called by the host: a panic must not unwind across its FFI boundary. Model loading
        // catches its own (the slot says why); anything else fails the activation, with the
        // reason in the window.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.activate_inner(audio_io_layout, buffer_config, context))) {
            Ok(ok) => ok,
            Err(p) => {
                self.engine = None;
                *self.shared.device_status.write() = format!("activation failed: {}", models::panic_message(&*p));
                false
            }
        }
    }

    fn reset(&mut self) {
        self.params.mix.smoothed.reset(self.params.mix.value());
        self.params.output_db.smoothed.reset(self.params.output_db.value());
    }

    fn deactivate(&mut self) {
        // Joins the worker threads (main thread, not the audio thread).
        self.engine = None;
        self.replanner = None;
        *self.shared.swapper.lock() = None;
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        _aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        let Some(engine) = &mut self.engine else {
            return ProcessStatus::Error("process() before activate()");
        };
        let wanted = self.params.latency.value();
        let task = self.params.task.value();
        let slot = self.params.mode.value().slot();
        // The window loaded a Translate slot: same choice and task, new engine.
        let reload = self.shared.replan_requested.load(Ordering::Acquire);
        if wanted != self.active_choice || task != self.active_task || reload {
            match (context.plugin_api(), &mut self.replanner) {
                // CLAP allows a latency change only inside activate(): ask for a restart and keep
                // reporting (and applying) the running plan's latency until it comes.
                (PluginApi::Clap, _) => {
                    if !self.restart_requested {
                        context.request_restart();
                        self.restart_requested = true;
                    }
                }
                // VST3 (and the standalone): build the new plan now, whether or not the host
                // re-activates; it is reported when it runs (below).
                (_, Some(replanner)) => {
                    let interval = (replan::MIN_REPLAN_INTERVAL_S * self.host_rate as f64) as u64;
                    let due = self.last_replan_at.is_none_or(|t| self.position >= t + interval);
                    if due && !replanner.building {
                        self.shared.replan_requested.store(false, Ordering::Release);
                        replanner.request(replan::PlanRequest { choice: wanted, task, slot });
                        self.last_replan_at = Some(self.position);
                    }
                }
                _ => {}
            }
        }
        if let Some(replanner) = &mut self.replanner {
            // Rendering exactly (a bounce), the new plan starts at the block that asked for it.
            if let Some(built) = replanner.take_built(engine.renders_exactly()) {
                let mut next = built.engine;
                next.take_over(engine);
                let old = std::mem::replace(engine, next);
                replanner.retire(old);
                self.active_choice = built.plan.choice;
                self.active_task = built.plan.task;
                context.set_latency_samples(engine.latency());
            }
        }
        let t = context.transport();
        let len = buffer.samples();
        if let Some(at) = self.transport.restart_point(t.playing, t.pos_samples(), len, engine.latency()) {
            engine.restart_at(engine.input_position() + at as u64);
        }
        // With sample-accurate automation the wrapper splits blocks at parameter events, so a
        // mode (or bypass) change seen here happens exactly at this block's first sample.
        engine.set_mode(slot);
        engine.set_bypass(self.params.bypass.value());
        let mix = &self.params.mix.smoothed;
        let gain = &self.params.output_db.smoothed;
        engine.process(buffer.as_slice(), &mut || (mix.next(), 10f32.powf(gain.next() / 20.0)));
        self.position += len as u64;
        ProcessStatus::Normal
    }
}

/// Keeps this plugin's shared library loaded until the process exits.
///
/// The kernels' thread pools and the model cache are process-wide and outlive instances (hosts
/// create and destroy instances often; loading the models is the slow part). The pools' idle
/// threads park inside this library's code, so a host that unloads the library after its last
/// instance (a VST3 module release, a session close) would leave them returning into unmapped
/// code on their next wake-up. Marking the library `RTLD_NODELETE` (a `dlopen` of ourselves)
/// makes the host's `dlclose` leave it mapped. Unix only (Linux and macOS; a Windows build would
/// need `GetModuleHandleExW` with `GET_MODULE_HANDLE_EX_FLAG_PIN` for the same).
fn pin_library() {
    #[cfg(unix)]
    {
        static PINNED: std::sync::Once = std::sync::Once::new();
        PINNED.call_once(|| unsafe {
            let mut info: libc::Dl_info = std::mem::zeroed();
            // Any address inside this library finds its path.
            if libc::dladdr(pin_library as *const libc::c_void, &mut info) != 0 && !info.dli_fname.is_null() {
                // RTLD_NOLOAD: only take another reference to the loaded library; RTLD_NODELETE:
                // never unmap it. The handle is deliberately never closed.
                let _ = libc::dlopen(info.dli_fname, libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE);
            }
        });
    }
}

/// Where the model streams restart so that a bounce depends only on the session, not on what the
/// plugin processed before (idle blocks, an earlier playback): at every transport start or jump.
///
/// Hosts that compensate latency read the track ahead: Ardour reports the output's timeline
/// position, and the input a block carries is `latency` samples later on the timeline (its
/// blocks split at input position 0 when playback starts before it, in the latency pre-roll).
/// The restart is placed at that input timeline's start position, or at its 0 when the transport
/// starts before the session does, so an export from the session start is a fresh stream from
/// the session's first sample: exactly the CLI's render of the same audio.
#[derive(Debug, Default, Clone)]
pub struct TransportAnchor {
    was_playing: bool,
    /// Where the next block should start if the transport runs on (output timeline).
    expected: Option<i64>,
    /// A restart armed for this input timeline position.
    pending: Option<i64>,
}

impl TransportAnchor {
    /// Call once per block of `len` samples; returns the offset in this block where the streams
    /// restart, if they do.
    pub fn restart_point(&mut self, playing: bool, pos: Option<i64>, len: usize, latency: u32) -> Option<usize> {
        let Some(pos) = pos else {
            self.expected = None;
            self.was_playing = playing;
            return None;
        };
        let input_pos = pos + latency as i64;
        if playing && (!self.was_playing || self.expected != Some(pos)) {
            self.pending = Some(input_pos.max(0));
        }
        self.was_playing = playing;
        self.expected = playing.then_some(pos + len as i64);
        let at = self.pending?;
        if !playing || at >= input_pos + len as i64 {
            return None;
        }
        self.pending = None;
        Some((at - input_pos).max(0) as usize)
    }
}

#[cfg(test)]
mod transport_tests {
    use super::TransportAnchor;

    #[test]
    fn ardour_export_pre_roll_restarts_at_the_input_timelines_zero() {
        // Latency 17148, blocks of 1024: stopped, then playback from -18176 (output timeline),
        // split at the input's 0 (-17148) as Ardour does.
        let mut a = TransportAnchor::default();
        for _ in 0..5 {
            assert_eq!(a.restart_point(false, Some(256), 1024, 17_148), None);
        }
        assert_eq!(a.restart_point(true, Some(-18_176), 1024, 17_148), None);
        assert_eq!(a.restart_point(true, Some(-17_152), 4, 17_148), None);
        assert_eq!(a.restart_point(true, Some(-17_148), 1020, 17_148), Some(0));
        assert_eq!(a.restart_point(true, Some(-16_128), 1024, 17_148), None);
        // Unsplit blocks: the restart lands inside one.
        let mut b = TransportAnchor::default();
        assert_eq!(b.restart_point(true, Some(-17_648), 1024, 17_148), Some(500));
    }

    #[test]
    fn a_jump_while_playing_restarts_there_and_continuous_playback_never_does() {
        let mut a = TransportAnchor::default();
        assert_eq!(a.restart_point(true, Some(48_000), 512, 1000), Some(0));
        for k in 1..100 {
            assert_eq!(a.restart_point(true, Some(48_000 + k * 512), 512, 1000), None);
        }
        assert_eq!(a.restart_point(true, Some(0), 512, 1000), Some(0), "loop back");
        assert_eq!(a.restart_point(false, Some(512), 512, 1000), None);
        assert_eq!(a.restart_point(true, Some(512), 512, 1000), Some(0), "play again");
        assert_eq!(a.restart_point(true, None, 512, 1000), None, "no transport, no restart");
    }
}

impl ClapPlugin for StreamSpeechVocoder {
    const CLAP_ID: &'static str = CLAP_ID;
    const CLAP_DESCRIPTION: Option<&'static str> =
        Some("StreamSpeech neural vocoders: Original HiFi-GAN and the GRC Modified variant");
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] = &[
        ClapFeature::AudioEffect,
        ClapFeature::Restoration,
        ClapFeature::Stereo,
        ClapFeature::Mono,
    ];
}

impl Vst3Plugin for StreamSpeechVocoder {
    const VST3_CLASS_ID: [u8; 16] = VST3_CLASS_ID;
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] =
        &[Vst3SubCategory::Fx, Vst3SubCategory::Restoration];
}

nice_export_clap!(StreamSpeechVocoder);
nice_export_vst3!(StreamSpeechVocoder);
