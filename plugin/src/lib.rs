//! StreamSpeech Vocoder: the plugin as hosts see it.
//!
//! The `Plugin` impl is deliberately thin: parameters live in [`params`], latency arithmetic in
//! [`latency`], and the per-sample work in [`shell::ShellEngine`]. The neural engine (issue 4)
//! replaces the shell engine's slot outputs; the host contract (latency, automation, state)
//! stays here.

use nice_plug::prelude::*;
use std::num::NonZeroU32;
use std::sync::Arc;

pub mod dsp;
pub mod latency;
pub mod params;
pub mod shell;

pub use latency::{LatencyBudget, LatencyChoice};
pub use params::{DeviceChoice, Mode, VocoderParams};
use shell::ShellEngine;

/// Stable plugin identities. Changing these breaks every saved project that uses the plugin.
pub const CLAP_ID: &str = "org.streamspeech.vocoder";
pub const VST3_CLASS_ID: [u8; 16] = *b"StrmSpchVocoder1";
pub const PLUGIN_NAME: &str = "StreamSpeech Vocoder";

/// Crossfade length of a mode switch.
pub const MODE_FADE_MS: f32 = 20.0;

/// The mode crossfade in samples at a sample rate (even, so its centre is a whole sample).
pub fn mode_fade_samples(sample_rate: f32) -> u64 {
    (((MODE_FADE_MS / 1000.0 * sample_rate).round() as u64).max(2)) & !1
}

pub struct StreamSpeechVocoder {
    params: Arc<VocoderParams>,
    engine: Option<ShellEngine>,
    /// A CLAP restart was requested for a latency change and has not happened yet.
    restart_requested: bool,
}

impl Default for StreamSpeechVocoder {
    fn default() -> Self {
        Self { params: Arc::new(VocoderParams::default()), engine: None, restart_requested: false }
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
    type Editor = ();

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn activate(
        &mut self,
        audio_io_layout: &AudioIOLayout,
        buffer_config: &BufferConfig,
        context: &mut impl ActivateContext<Self>,
    ) -> bool {
        let channels = audio_io_layout.main_output_channels.map(NonZeroU32::get).unwrap_or(0) as usize;
        let engine = ShellEngine::new(
            buffer_config.sample_rate,
            channels,
            self.params.latency.value(),
            self.params.mode.value(),
        );
        // Within activate() this is the one place CLAP allows `latency.changed`.
        context.set_latency_samples(engine.latency_samples());
        self.restart_requested = false;
        self.params.mix.smoothed.reset(self.params.mix.value());
        self.params.output_db.smoothed.reset(self.params.output_db.value());
        self.engine = Some(engine);
        true
    }

    fn reset(&mut self) {
        if let Some(engine) = &mut self.engine {
            engine.reset(self.params.mode.value());
        }
        self.params.mix.smoothed.reset(self.params.mix.value());
        self.params.output_db.smoothed.reset(self.params.output_db.value());
    }

    fn deactivate(&mut self) {
        self.engine = None;
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
        if wanted != engine.latency_choice() {
            match context.plugin_api() {
                // CLAP only lets latency change inside activate(): ask the host for a restart and
                // keep running (and reporting) the current plan until it happens.
                PluginApi::Clap => {
                    if !self.restart_requested {
                        context.request_restart();
                        self.restart_requested = true;
                    }
                }
                // VST3 hosts re-query the latency on restartComponent(kLatencyChanged), which
                // set_latency_samples sends; buffers are sized for the largest choice, so the new
                // plan applies at once without allocating.
                _ => {
                    engine.set_latency_choice(wanted);
                    context.set_latency_samples(engine.latency_samples());
                }
            }
        }
        // With sample-accurate automation the wrapper splits blocks at parameter events, so a
        // mode change seen here happens exactly at this block's first sample.
        engine.observe_mode(self.params.mode.value());
        engine.process(buffer.as_slice(), &self.params.mix.smoothed, &self.params.output_db.smoothed);
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
