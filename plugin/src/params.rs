//! The plugin's parameters and persisted (non-parameter) state.

use nice_plug::prelude::*;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::latency::LatencyChoice;
use crate::translate::{Task, TranslatorFiles, UnitVoiceFile};

pub const MIN_OUTPUT_DB: f32 = -24.0;
pub const MAX_OUTPUT_DB: f32 = 12.0;

/// Which vocoder slot produces the wet signal.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The stock HiFi-GAN family vocoder.
    #[id = "original"]
    #[name = "Original"]
    Original,
    /// The thesis variant: Grouped Residual Convolution MRF blocks.
    #[id = "modified"]
    #[name = "Modified"]
    Modified,
}

impl Mode {
    pub fn slot(self) -> usize {
        match self {
            Mode::Original => 0,
            Mode::Modified => 1,
        }
    }
}

/// Where inference runs. Persisted with the project, not automatable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Gpu,
}

/// How many threads the real-time worker uses. Persisted with the project, not automatable.
/// A project may come from another machine: a count beyond this machine's cores is clamped
/// when used (and shown so in the window), never trusted as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThreadsChoice {
    /// A quarter of the cores, 1 to 4 (`engine::auto_worker_threads`).
    #[default]
    Auto,
    Fixed(u32),
}

impl ThreadsChoice {
    /// The engine's encoding: 0 = auto, else the count (0 as a count means 1).
    pub fn engine_value(self) -> usize {
        match self {
            ThreadsChoice::Auto => 0,
            ThreadsChoice::Fixed(n) => (n as usize).max(1),
        }
    }
}

/// What the engine does with the Mode slot that is not heard (`engine::Unheard`). Persisted with
/// the project, not automatable; a change re-plans (the latency changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnheardChoice {
    /// Both slots computed live: a switch never waits, no added latency.
    #[default]
    Compute,
    /// Only the heard slot computed; the other spun up exactly on a switch (about half the
    /// live load with two full-size models, at the cost of the replay in the latency).
    SpinUp,
}

impl UnheardChoice {
    pub fn engine(self) -> engine::Unheard {
        match self {
            UnheardChoice::Compute => engine::Unheard::Compute,
            UnheardChoice::SpinUp => engine::Unheard::SpinUp,
        }
    }
}

#[derive(Params)]
pub struct VocoderParams {
    #[id = "mode"]
    pub mode: EnumParam<Mode>,


    /// A change re-plans the engine and re-reports the latency (see `replan.rs`). Automatable
    /// so that hosts which list only automatable parameters (Ardour) show it; changes closer
    /// than a second are coalesced, so automation cannot thrash the plan.
    #[id = "latency"]
    pub latency: EnumParam<LatencyChoice>,

    /// Wet amount, 0..1 shown as percent.
    #[id = "mix"]
    pub mix: FloatParam,

    /// Output gain in decibels.
    #[id = "output"]
    pub output_db: FloatParam,

    /// The host's bypass (VST3 `kIsBypass`, CLAP bypass): the latency-delayed input, crossfaded
    /// in 20 ms at the automation sample.
    #[id = "bypass"]
    pub bypass: BoolParam,

    /// Resynthesize (the default) or Translate. Not automatable (it changes the latency); a
    /// change re-plans the engine as a Latency change does. Last, so the earlier parameters
    /// keep their places in hosts' lists.
    #[id = "task"]
    pub task: EnumParam<Task>,

    /// Model file for the Original slot (None: the default model; "none": empty slot).
    #[persist = "model-original"]
    pub model_original: RwLock<Option<String>>,

    /// Model file for the Modified slot (None: the default model; "none": empty slot).
    #[persist = "model-modified"]
    pub model_modified: RwLock<Option<String>>,

    /// Translate: the StreamSpeech checkpoint and its data directory (None: not set).
    #[persist = "translator"]
    pub translator: RwLock<Option<TranslatorFiles>>,

    /// Translate: the unit vocoder voicing the Original mode (CodeHiFiGAN) (None: not set).
    #[persist = "unit-original"]
    pub unit_original: RwLock<Option<UnitVoiceFile>>,

    /// Translate: the unit vocoder voicing the Modified mode (UnitHiFiGAN+FiLM + conditioning).
    #[persist = "unit-modified"]
    pub unit_modified: RwLock<Option<UnitVoiceFile>>,

    #[persist = "device"]
    pub device: RwLock<DeviceChoice>,

    /// Threads of the real-time worker (offline bounces use every core).
    #[persist = "worker-threads"]
    pub worker_threads: RwLock<ThreadsChoice>,

    /// The slot that is not heard: computed, or spun up on a switch (offline bounces always
    /// spin up; the audio is the same either way).
    #[persist = "unheard"]
    pub unheard: RwLock<UnheardChoice>,

    /// The window's size and zoom.
    #[persist = "window"]
    pub window: RwLock<crate::view::WindowSize>,
}

impl Default for VocoderParams {
    fn default() -> Self {
        Self {
            mode: EnumParam::new("Mode", Mode::Original),
            task: EnumParam::new("Task", Task::Resynthesize).non_automatable(),
            latency: EnumParam::new("Latency", LatencyChoice::Ms80),
            mix: FloatParam::new("Mix", 1.0, FloatRange::Linear { min: 0.0, max: 1.0 })
                .with_smoother(SmoothingStyle::Linear(20.0))
                .with_unit(" %")
                .with_value_to_string(formatters::v2s_f32_percentage(1))
                .with_string_to_value(formatters::s2v_f32_percentage()),
            output_db: FloatParam::new(
                "Output",
                0.0,
                FloatRange::Linear { min: MIN_OUTPUT_DB, max: MAX_OUTPUT_DB },
            )
            .with_smoother(SmoothingStyle::Linear(20.0))
            .with_step_size(0.1)
            .with_unit(" dB")
            .with_value_to_string(Arc::new(|db| format!("{db:.1}")))
            .with_string_to_value(Arc::new(|s: &str| {
                s.trim().trim_end_matches("dB").trim().parse::<f32>().ok()
            })),
            bypass: BoolParam::new("Bypass", false).make_bypass(),
            model_original: RwLock::new(None),
            model_modified: RwLock::new(None),
            translator: RwLock::new(None),
            unit_original: RwLock::new(None),
            unit_modified: RwLock::new(None),
            device: RwLock::new(DeviceChoice::Auto),
            worker_threads: RwLock::new(ThreadsChoice::Auto),
            unheard: RwLock::new(UnheardChoice::Compute),
            window: RwLock::new(crate::view::WindowSize::DEFAULT),
        }
    }
}

impl VocoderParams {
    pub fn model_path(&self, mode: Mode) -> Option<String> {
        match mode {
            Mode::Original => self.model_original.read().clone(),
            Mode::Modified => self.model_modified.read().clone(),
        }
    }

    /// The Translate task's slots for a Latency choice (loads what is not loaded yet; never on
    /// the audio thread).
    pub fn translate_slots(&self, choice: LatencyChoice) -> crate::translate::TranslateSlots {
        let (o, m) = (self.unit_original.read().clone(), self.unit_modified.read().clone());
        crate::translate::TranslateSlots::load(self.translator.read().as_ref(), [o.as_ref(), m.as_ref()], choice)
    }
}
