//! Which model each mode slot runs, loaded off the audio thread, strictly, with the health
//! probe; loaded models are shared process-wide (a DAW project may hold many instances).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use vocoder::Vocoder;

use crate::params::Mode;

/// Environment variable naming the folder with the default models.
pub const MODELS_ENV: &str = "STREAMSPEECH_VOCODER_MODELS";
/// Persisted slot value meaning "no model in this slot".
pub const NO_MODEL: &str = "none";

/// What a slot holds, for the GUI and the engine. Anything but `Ready` plays the delayed dry
/// signal, never noise.
#[derive(Clone)]
pub enum SlotStatus {
    Ready { path: PathBuf, vocoder: Arc<Vocoder>, health: String },
    Empty,
    Missing { path: PathBuf },
    /// Did not load: the checkpoint report or the error.
    Failed { path: PathBuf, reason: String },
    Unhealthy { path: PathBuf, verdict: String },
}

impl SlotStatus {
    pub fn vocoder(&self) -> Option<Arc<Vocoder>> {
        match self {
            SlotStatus::Ready { vocoder, .. } => Some(vocoder.clone()),
            _ => None,
        }
    }

    pub fn summary(&self) -> String {
        match self {
            SlotStatus::Ready { path, health, .. } => format!("ok: {} ({health})", path.display()),
            SlotStatus::Empty => "no model".into(),
            SlotStatus::Missing { path } => {
                format!("model file missing: {} (run `streamspeech-vocoder models fetch`)", path.display())
            }
            SlotStatus::Failed { path, reason } => format!("failed to load {}: {reason}", path.display()),
            SlotStatus::Unhealthy { path, verdict } => format!("unhealthy, not used: {} ({verdict})", path.display()),
        }
    }
}

/// The folder holding the default models: `$STREAMSPEECH_VOCODER_MODELS`, else
/// `$XDG_DATA_HOME/streamspeech-vocoder/models` (`~/.local/share/...`).
pub fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(MODELS_ENV) {
        return PathBuf::from(d);
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("streamspeech-vocoder/models")
}

pub fn default_file(mode: Mode) -> &'static str {
    match mode {
        Mode::Original => "hifigan_v1_universal.safetensors",
        Mode::Modified => "grc_mrf_distilled.safetensors",
    }
}

/// The file a slot's persisted value points to (`None` = empty slot).
pub fn resolve(mode: Mode, persisted: Option<&str>) -> Option<PathBuf> {
    match persisted {
        Some(NO_MODEL) => None,
        Some(p) => Some(PathBuf::from(p)),
        None => Some(models_dir().join(default_file(mode))),
    }
}

fn cache() -> &'static Mutex<HashMap<PathBuf, SlotStatus>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, SlotStatus>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Loads (or reuses) the model for a slot. Never called on the audio thread.
pub fn load_slot(mode: Mode, persisted: Option<&str>) -> SlotStatus {
    let Some(path) = resolve(mode, persisted) else { return SlotStatus::Empty };
    if let Some(s) = cache().lock().get(&path) {
        return s.clone();
    }
    let status = if !path.is_file() {
        SlotStatus::Missing { path: path.clone() }
    } else {
        match vocoder::load_healthy(&path, None, &candle_core::Device::Cpu) {
            Ok((loaded, verdict)) => {
                SlotStatus::Ready { path: path.clone(), vocoder: Arc::new(loaded.vocoder), health: verdict.to_string() }
            }
            Err(vocoder::VocoderError::Unhealthy(v)) => SlotStatus::Unhealthy { path: path.clone(), verdict: v.to_string() },
            Err(e) => SlotStatus::Failed { path: path.clone(), reason: e.to_string() },
        }
    };
    cache().lock().insert(path, status.clone());
    status
}
