//! Which model each mode slot runs, loaded off the audio thread, strictly, with the health
//! probe; loaded models are shared process-wide (a DAW project may hold many instances).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use vocoder::Vocoder;

use crate::params::{DeviceChoice, Mode};

/// The compute device for a persisted choice, and a status line for the user. GPU support needs
/// a build with the `cuda` (or `metal`) feature; otherwise, or when no GPU answers (no driver, no
/// CUDA libraries, no device), the CPU is used and the status says why (see `vocoder::device`).
pub fn resolve_device(choice: DeviceChoice) -> (candle_core::Device, String) {
    use vocoder::device::DeviceRequest;
    let request = match choice {
        DeviceChoice::Cpu => DeviceRequest::Cpu,
        DeviceChoice::Gpu => DeviceRequest::Gpu,
        DeviceChoice::Auto => DeviceRequest::Auto,
    };
    let r = vocoder::device::resolve(request);
    (r.device, r.status)
}

/// Environment variable naming the folder with the default models.
pub const MODELS_ENV: &str = vocoder::fetch::PLUGIN_MODELS_ENV;
/// Persisted slot value meaning "no model in this slot".
pub const NO_MODEL: &str = "none";

/// What a slot holds, for the GUI and the engine. Anything but `Ready` plays the delayed dry
/// signal, never noise.
#[derive(Clone)]
pub enum SlotStatus {
    /// `report`: the checkpoint report (clean, with its notes: conversions, folded weight norm).
    Ready { path: PathBuf, vocoder: Arc<Vocoder>, health: String, report: String },
    Empty,
    Missing { path: PathBuf },
    /// Did not load: the checkpoint report or the error.
    Failed { path: PathBuf, reason: String },
    Unhealthy { path: PathBuf, verdict: String },
    /// A unit vocoder (CodeHiFiGAN / UnitHiFiGAN+FiLM): it loaded strictly, but its input is
    /// speech units, which need the translator in front of it.
    NeedsTranslator { path: PathBuf, family: String },
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
            SlotStatus::NeedsTranslator { path, family } => {
                format!("needs a translator (units input): {} is a {family} unit vocoder; playing the dry signal", path.display())
            }
        }
    }
}

/// The folder holding the default models (`vocoder::fetch::plugin_models_dir`):
/// `$STREAMSPEECH_VOCODER_MODELS`, else `$XDG_DATA_HOME/streamspeech-vocoder/models`.
pub fn models_dir() -> PathBuf {
    vocoder::fetch::plugin_models_dir()
}

pub fn default_file(mode: Mode) -> &'static str {
    let slot = match mode {
        Mode::Original => "original",
        Mode::Modified => "modified",
    };
    vocoder::fetch::default_file(slot).expect("both modes have a default model")
}

/// The file a slot's persisted value points to (`None` = empty slot).
pub fn resolve(mode: Mode, persisted: Option<&str>) -> Option<PathBuf> {
    match persisted {
        Some(NO_MODEL) => None,
        Some(p) => Some(PathBuf::from(p)),
        None => Some(models_dir().join(default_file(mode))),
    }
}

type CacheKey = (PathBuf, String);

fn cache() -> &'static Mutex<HashMap<CacheKey, SlotStatus>> {
    static CACHE: OnceLock<Mutex<HashMap<CacheKey, SlotStatus>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Loads (or reuses) the model for a slot. Never called on the audio thread.
pub fn load_slot(mode: Mode, persisted: Option<&str>, device: &candle_core::Device) -> SlotStatus {
    let Some(path) = resolve(mode, persisted) else { return SlotStatus::Empty };
    let key = (path.clone(), format!("{device:?}"));
    if let Some(s) = cache().lock().get(&key) {
        return s.clone();
    }
    // This runs on the host's threads (activate, state load) and the window's loader: a bug
    // in reading some file must not unwind into the host, so it becomes the slot's reason.
    let status = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load_uncached(&path, device))).unwrap_or_else(|p| {
        SlotStatus::Failed { path: path.clone(), reason: format!("internal error while loading it ({}); please report this", panic_message(&*p)) }
    });
    cache().lock().insert(key, status.clone());
    status
}

fn load_uncached(path: &std::path::Path, device: &candle_core::Device) -> SlotStatus {
    let path = path.to_path_buf();
    // Fault injection: proves a panic in loading is caught (no loader panics on a known input).
    #[cfg(test)]
    if path.file_name().is_some_and(|n| n == "panic-while-loading.safetensors") {
        panic!("injected by the test");
    }
    if !path.is_file() {
        return if path.exists() {
            SlotStatus::Failed { path, reason: "not a regular file".into() }
        } else {
            SlotStatus::Missing { path }
        };
    }
    if let Some(status) = unit_vocoder_status(&path, device) {
        return status;
    }
    match vocoder::load_healthy(&path, None, device) {
        Ok((loaded, verdict)) => {
            let report = loaded.report.to_string();
            SlotStatus::Ready { path, vocoder: Arc::new(loaded.vocoder), health: verdict.to_string(), report }
        }
        Err(vocoder::VocoderError::Unhealthy(v)) => SlotStatus::Unhealthy { path, verdict: v.to_string() },
        Err(e) => SlotStatus::Failed { path, reason: e.detail() },
    }
}

/// The text a panic carried.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_else(|| "panic".into())
}

/// A unit vocoder in a mel slot: loaded strictly (so a broken one says why), then reported as
/// waiting for the translator. None when the file is not a unit vocoder.
fn unit_vocoder_status(path: &std::path::Path, device: &candle_core::Device) -> Option<SlotStatus> {
    let ckpt = vocoder::checkpoint::load(path).ok()?;
    let text = match &ckpt.embedded_config {
        Some(t) => t.clone(),
        None => vocoder::files::read_text(&path.with_file_name("config.json"), vocoder::files::MAX_CONFIG_BYTES, "config").ok()?,
    };
    if !vocoder::units::is_unit_config(&text) {
        return None;
    }
    Some(match vocoder::units::load_unit_vocoder(path, None, device) {
        Ok(l) => SlotStatus::NeedsTranslator { path: path.into(), family: l.vocoder.config().family_name().into() },
        Err(e) => SlotStatus::Failed { path: path.into(), reason: e.detail() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_choice_falls_back_to_cpu_with_a_reason() {
        let (d, status) = resolve_device(DeviceChoice::Cpu);
        assert!(d.is_cpu() && status == "CPU");
        let (d, status) = resolve_device(DeviceChoice::Gpu);
        if !cfg!(any(feature = "cuda", feature = "metal")) {
            assert!(d.is_cpu());
            assert!(status.contains("no GPU support"), "{status}");
        } else if d.is_cpu() {
            // A GPU build on a machine without a GPU (CI): the CPU, and why.
            assert!(status.contains("GPU unavailable"), "{status}");
        }
        let (d, status) = resolve_device(DeviceChoice::Auto);
        if !cfg!(any(feature = "cuda", feature = "metal")) {
            assert!(d.is_cpu() && status == "CPU", "auto in a CPU build is just the CPU: {status}");
        }
    }

    #[test]
    fn slot_values_resolve() {
        assert_eq!(resolve(Mode::Original, Some(NO_MODEL)), None);
        assert_eq!(resolve(Mode::Modified, Some("/x/y.safetensors")), Some(PathBuf::from("/x/y.safetensors")));
        assert!(resolve(Mode::Original, None).unwrap().ends_with(default_file(Mode::Original)));
        let s = load_slot(Mode::Modified, Some("/nonexistent/model.safetensors"), &candle_core::Device::Cpu);
        assert!(matches!(s, SlotStatus::Missing { .. }) && s.vocoder().is_none());
        assert!(s.summary().contains("models fetch"));
    }

    #[test]
    fn a_unit_vocoder_in_a_slot_needs_the_translator_and_plays_dry() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let p = root.join("vocoder/tests/fixtures/units/code_tiny/g_tiny.pth");
        let s = load_slot(Mode::Modified, Some(p.to_str().unwrap()), &candle_core::Device::Cpu);
        assert!(matches!(s, SlotStatus::NeedsTranslator { .. }), "{}", s.summary());
        assert!(s.vocoder().is_none(), "no mel model: the slot plays the delayed dry signal");
        assert!(s.summary().contains("needs a translator (units input)") && s.summary().contains("codehifigan"), "{}", s.summary());
    }

    #[test]
    fn hostile_files_leave_the_slot_empty_with_the_reason() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let d = std::env::temp_dir().join(format!("ssv-plugin-hostile-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let garbage = d.join("huge-string.pth");
        // A PyTorch legacy file whose first pickle claims a 4 GiB string.
        let mut legacy = std::fs::read(root.join("vocoder/tests/fixtures/grc_tiny/model_legacy.pth")).unwrap();
        legacy.splice(15..22, *b"\x80\x02X\xff\xff\xff\xff");
        std::fs::write(&garbage, legacy).unwrap();
        let absurd = d.join("absurd");
        std::fs::create_dir_all(&absurd).unwrap();
        std::fs::copy(root.join("vocoder/tests/fixtures/grc_tiny/model_zip.pth"), absurd.join("model.pth")).unwrap();
        let cfg = std::fs::read_to_string(root.join("vocoder/tests/fixtures/grc_tiny/config.json")).unwrap();
        std::fs::write(absurd.join("config.json"), cfg.replace("\"n_fft\": 128", "\"n_fft\": 1099511627776")).unwrap();
        let panics = d.join("panic-while-loading.safetensors");
        std::fs::write(&panics, b"x").unwrap();
        for (path, want) in [
            (garbage.clone(), "corrupt pickle"),
            (PathBuf::from("/dev/zero"), "not a regular file"),
            (d.clone(), "not a regular file"),
            (absurd.join("model.pth"), "n_fft"),
            (panics.clone(), "internal error while loading it (injected by the test)"),
        ] {
            let s = load_slot(Mode::Original, Some(path.to_str().unwrap()), &candle_core::Device::Cpu);
            assert!(matches!(s, SlotStatus::Failed { .. }) && s.vocoder().is_none(), "{}", s.summary());
            let summary = s.summary();
            assert!(summary.contains(want), "{summary}");
            assert_eq!(summary.matches(path.to_str().unwrap()).count(), 1, "the path once: {summary}");
            assert!(!summary.contains('\n'), "one line: {summary}");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}
