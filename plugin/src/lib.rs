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
pub mod view;

use editor::EditorShared;
use engine::{EngineProcessor, EngineSetup};
use std::sync::atomic::Ordering;
pub use engine::{MODE_FADE_MS, mode_fade_samples};
pub use latency::{LatencyChoice, planned_latency};
use models::SlotStatus;
pub use params::{DeviceChoice, Mode, VocoderParams};

/// Stable plugin identities. Changing these breaks every saved project that uses the plugin.
pub const CLAP_ID: &str = "org.streamspeech.vocoder";
pub const VST3_CLASS_ID: [u8; 16] = *b"StrmSpchVocoder1";
pub const PLUGIN_NAME: &str = "StreamSpeech Vocoder";

/// Gain of each empty slot's passthrough: the host-test build gives the Modified slot the
/// opposite polarity so tests can see where a mode switch lands.
const PASSTHROUGH_GAIN: [f32; 2] = if cfg!(feature = "host-test-slots") { [1.0, -1.0] } else { [1.0, 1.0] };

pub struct StreamSpeechVocoder {
    params: Arc<VocoderParams>,
    engine: Option<EngineProcessor>,
    /// What the window shows: the models each slot holds, the device, the latency table, the
    /// engine's meters and spectrogram feed (written here on activation, never in `process`).
    pub shared: Arc<EditorShared>,
    active_choice: LatencyChoice,
    /// A restart was requested for a latency change and has not happened yet.
    restart_requested: bool,
}

impl Default for StreamSpeechVocoder {
    fn default() -> Self {
        Self {
            params: Arc::new(VocoderParams::default()),
            engine: None,
            shared: Arc::new(EditorShared::default()),
            active_choice: LatencyChoice::Ms80,
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
    let (slots, _) = resolve_slots(&VocoderParams::default());
    planned_latency(host_rate, max_block, choice, &[slots[0].vocoder(), slots[1].vocoder()])
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
        // Models load here (main thread, cached process-wide), never in process().
        let (slots, device_status) = resolve_slots(&self.params);
        let models = [slots[0].vocoder(), slots[1].vocoder()];
        *self.shared.slots.write() = slots;
        *self.shared.device_status.write() = device_status;
        let host_rate = buffer_config.sample_rate.round() as u32;
        let max_block = buffer_config.max_buffer_size as usize;
        for c in LatencyChoice::ALL {
            self.shared.latency_table[c.index()].store(planned_latency(host_rate, max_block, c, &models), Ordering::Relaxed);
        }
        let choice = self.params.latency.value();
        let channels = audio_io_layout.main_output_channels.map(NonZeroU32::get).unwrap_or(0) as usize;
        let mut engine = EngineProcessor::new(EngineSetup {
            host_rate,
            channels,
            max_block,
            chunk_ms: choice.millis(),
            slots: models,
            initial_slot: self.params.mode.value().slot(),
            offline: buffer_config.process_mode == ProcessMode::Offline,
            passthrough_gain: PASSTHROUGH_GAIN,
        });
        debug_assert_eq!(engine.latency(), self.shared.latency_table[choice.index()].load(Ordering::Relaxed));
        // Within activate() is the one place CLAP allows `latency.changed`.
        context.set_latency_samples(engine.latency());
        let shared = &self.shared;
        shared.reported_latency.store(engine.latency(), Ordering::Relaxed);
        shared.sample_rate.store(buffer_config.sample_rate, Ordering::Relaxed);
        shared.max_block.store(max_block as u32, Ordering::Relaxed);
        shared.restart_pending.store(false, Ordering::Release);
        *shared.stats.write() = Some(engine.stats.clone());
        *shared.scope.lock() = engine.take_scope();
        *shared.swapper.lock() = Some(engine.swapper());
        self.active_choice = choice;
        self.restart_requested = false;
        self.params.mix.smoothed.reset(self.params.mix.value());
        self.params.output_db.smoothed.reset(self.params.output_db.value());
        self.engine = Some(engine);
        true
    }

    fn reset(&mut self) {
        self.params.mix.smoothed.reset(self.params.mix.value());
        self.params.output_db.smoothed.reset(self.params.output_db.value());
    }

    fn deactivate(&mut self) {
        // Joins the worker thread (main thread, not the audio thread).
        self.engine = None;
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
        if wanted != self.active_choice && !self.restart_requested {
            // A new chunk size needs a new engine plan, which is built off the audio thread on
            // reactivation. CLAP: ask for a restart (latency may only change in activate).
            // VST3: report the new value with restartComponent(kLatencyChanged); hosts
            // re-activate and the new plan starts then.
            match context.plugin_api() {
                PluginApi::Clap => context.request_restart(),
                _ => context.set_latency_samples(self.shared.latency_table[wanted.index()].load(Ordering::Relaxed)),
            }
            self.restart_requested = true;
        }
        // With sample-accurate automation the wrapper splits blocks at parameter events, so a
        // mode change seen here happens exactly at this block's first sample.
        engine.set_mode(self.params.mode.value().slot());
        let mix = &self.params.mix.smoothed;
        let gain = &self.params.output_db.smoothed;
        engine.process(buffer.as_slice(), &mut || (mix.next(), 10f32.powf(gain.next() / 20.0)));
        ProcessStatus::Normal
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
