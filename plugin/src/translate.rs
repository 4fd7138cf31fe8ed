//! The Translate task's slots: the StreamSpeech translator (checkpoint + data directory) and a
//! unit vocoder per mode, loaded off the audio thread, strictly, and shared process-wide (a
//! project may hold many instances; loading is the slow part). What the engine runs is built
//! from them in [`translate_setup`]; anything missing plays the latency-delayed dry signal, and
//! its status says why and how to get it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use engine::translate::VoiceSpec;
use engine::translate_worker::{LiveTranslation, TranslatePlan, TranslateSetup, Translator, translate_plan};
use nice_plug::prelude::Enum;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::latency::LatencyChoice;
use crate::models::panic_message;

/// What the plugin does with the track. Not automatable: it changes the latency.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Today's behaviour: the mode's vocoder resynthesises the input.
    #[id = "resynthesize"]
    #[name = "Resynthesize"]
    Resynthesize,
    /// StreamSpeech translates the (Spanish) speech; the mode's unit vocoder voices it.
    #[id = "translate"]
    #[name = "Translate"]
    Translate,
}

/// StreamSpeech's source segment for a Latency choice. Its three trained-for segments map to
/// themselves; the shorter choices (20–80 ms, made for the vocoders; 80 ms is the parameter's
/// default) map to StreamSpeech's default segment, 320 ms.
pub fn segment_ms(choice: LatencyChoice) -> usize {
    match choice {
        LatencyChoice::Ms160 => 160,
        LatencyChoice::Ms20 | LatencyChoice::Ms40 | LatencyChoice::Ms80 | LatencyChoice::Ms320 => 320,
        LatencyChoice::Ms640 => 640,
    }
}

/// The persisted Translator slot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TranslatorFiles {
    /// The fairseq checkpoint (`streamspeech.simultaneous.es-en.pt`).
    pub checkpoint: String,
    /// The data directory: config yaml, global CMVN, both SentencePiece dictionaries.
    pub data: String,
}

/// A persisted unit vocoder slot: the model and, for FiLM (or a speaker-vector CodeHiFiGAN),
/// its conditioning file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UnitVoiceFile {
    pub path: String,
    #[serde(default)]
    pub cond: Option<String>,
}

/// Where the README says to get the real files.
pub const GET_FILES: &str = "see README \"Translate\" for where to get the StreamSpeech files";

#[derive(Clone)]
pub enum TranslatorStatus {
    NotSet,
    Ready { files: TranslatorFiles, translator: Arc<Translator>, summary: String, report: String },
    Missing { files: TranslatorFiles, what: String },
    Failed { files: TranslatorFiles, reason: String },
}

impl TranslatorStatus {
    pub fn translator(&self) -> Option<Arc<Translator>> {
        match self {
            TranslatorStatus::Ready { translator, .. } => Some(translator.clone()),
            _ => None,
        }
    }

    /// One line for the card (and the host tests).
    pub fn summary(&self) -> String {
        match self {
            TranslatorStatus::NotSet => format!("no translator: playing the dry signal ({GET_FILES})"),
            TranslatorStatus::Ready { summary, .. } => format!("ok: {summary}"),
            TranslatorStatus::Missing { what, .. } => format!("missing {what}: playing the dry signal ({GET_FILES})"),
            TranslatorStatus::Failed { reason, .. } => format!("failed to load: {reason}; playing the dry signal"),
        }
    }
}

#[derive(Clone)]
pub enum VoiceStatus {
    Empty,
    Ready { file: UnitVoiceFile, voice: VoiceSpec, summary: String },
    Missing { file: UnitVoiceFile },
    Failed { file: UnitVoiceFile, reason: String },
}

impl VoiceStatus {
    pub fn voice(&self) -> Option<VoiceSpec> {
        match self {
            VoiceStatus::Ready { voice, .. } => Some(voice.clone()),
            _ => None,
        }
    }

    pub fn summary(&self) -> String {
        match self {
            VoiceStatus::Empty => "no unit vocoder: this mode plays the dry signal".into(),
            VoiceStatus::Ready { summary, .. } => format!("ok: {summary}"),
            VoiceStatus::Missing { file } => format!("unit vocoder missing: {} ({GET_FILES})", file.path),
            VoiceStatus::Failed { file, reason } => format!("unit vocoder {} not used: {reason}", file.path),
        }
    }
}

type TranslatorKey = (TranslatorFiles, usize);

/// A cached load: a loaded translator is held weakly (the engines using it hold it; a full-size
/// one is ~300 MB, and a project that moves on to other files or segments should not keep the old
/// ones alive), a failure as it was.
#[derive(Clone)]
enum Cached {
    Loaded { files: TranslatorFiles, translator: std::sync::Weak<Translator>, summary: String, report: String },
    Status(TranslatorStatus),
}

fn translator_cache() -> &'static Mutex<HashMap<TranslatorKey, Cached>> {
    static CACHE: OnceLock<Mutex<HashMap<TranslatorKey, Cached>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Loads (or reuses, while some engine still holds it) the translator for a segment size. Never
/// on the audio thread. A failure is cached too (a project re-activating does not re-read a
/// broken file), except a missing file, which the user may put there next.
pub fn load_translator(files: Option<&TranslatorFiles>, segment_ms: usize) -> TranslatorStatus {
    let Some(files) = files else { return TranslatorStatus::NotSet };
    let key = (files.clone(), segment_ms);
    match translator_cache().lock().get(&key).cloned() {
        Some(Cached::Status(s)) => return s,
        Some(Cached::Loaded { files, translator, summary, report }) => {
            if let Some(translator) = translator.upgrade() {
                return TranslatorStatus::Ready { files, translator, summary, report };
            }
        }
        None => {}
    }
    let (ckpt, data) = (Path::new(&files.checkpoint), Path::new(&files.data));
    if !ckpt.is_file() {
        return TranslatorStatus::Missing { files: files.clone(), what: format!("checkpoint {}", files.checkpoint) };
    }
    if !data.is_dir() {
        return TranslatorStatus::Missing { files: files.clone(), what: format!("data directory {}", files.data) };
    }
    let status = std::panic::catch_unwind(|| load_translator_uncached(files, segment_ms)).unwrap_or_else(|p| TranslatorStatus::Failed {
        files: files.clone(),
        reason: format!("internal error while loading it ({}); please report this", panic_message(&*p)),
    });
    let cached = match &status {
        TranslatorStatus::Ready { files, translator, summary, report } => {
            Cached::Loaded { files: files.clone(), translator: Arc::downgrade(translator), summary: summary.clone(), report: report.clone() }
        }
        s => Cached::Status(s.clone()),
    };
    translator_cache().lock().insert(key, cached);
    status
}

fn load_translator_uncached(files: &TranslatorFiles, segment_ms: usize) -> TranslatorStatus {
    let fail = |reason: String| TranslatorStatus::Failed { files: files.clone(), reason };
    let data = match translator::data::DataDir::load(Path::new(&files.data)) {
        Ok(d) => d,
        Err(e) => return fail(format!("data directory {}: {e}", files.data)),
    };
    let (model, report) = match translator::model::StreamSpeech::load_for_segment(Path::new(&files.checkpoint), data.mt, Some(segment_ms), &candle_core::Device::Cpu) {
        Ok(m) => m,
        Err(e) => return fail(format!("{}: {e}", files.checkpoint)),
    };
    let parameters: usize = model.cfg.expected_params().values().map(|s| s.iter().product::<usize>()).sum();
    let name = Path::new(&files.checkpoint).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let summary = format!(
        "{name}: Spanish speech to English text and units, {:.1} M parameters, {} source / {} target tokens, {} units, {segment_ms} ms segments",
        parameters as f64 / 1e6,
        data.source.len(),
        data.target.len(),
        model.cfg.t2u.vocab.saturating_sub(5),
    );
    TranslatorStatus::Ready { files: files.clone(), translator: Arc::new(Translator { model, data, segment_ms }), summary, report: report.to_string() }
}

/// A unit vocoder file's load: the voice and its summary, or why not.
type VoiceLoad = Result<(VoiceSpec, String), String>;

fn voice_cache() -> &'static Mutex<HashMap<UnitVoiceFile, VoiceLoad>> {
    static CACHE: OnceLock<Mutex<HashMap<UnitVoiceFile, VoiceLoad>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Loads (or reuses) a unit vocoder and checks it against the translator's unit count when
/// there is one (a vocoder for other units would voice nonsense: refused, with the reason).
pub fn load_voice(file: Option<&UnitVoiceFile>, translator: Option<&Translator>) -> VoiceStatus {
    let Some(file) = file else { return VoiceStatus::Empty };
    if !Path::new(&file.path).is_file() {
        return VoiceStatus::Missing { file: file.clone() };
    }
    let cached = voice_cache().lock().get(file).cloned();
    let loaded = cached.unwrap_or_else(|| {
        let r = std::panic::catch_unwind(|| load_voice_uncached(file))
            .unwrap_or_else(|p| Err(format!("internal error while loading it ({}); please report this", panic_message(&*p))));
        voice_cache().lock().insert(file.clone(), r.clone());
        r
    });
    match loaded {
        Err(reason) => VoiceStatus::Failed { file: file.clone(), reason },
        Ok((voice, summary)) => {
            if let Some(t) = translator {
                let units = t.model.cfg.t2u.vocab.saturating_sub(5);
                let takes = voice.vocoder.config().num_embeddings;
                if takes != units {
                    return VoiceStatus::Failed { file: file.clone(), reason: format!("it takes {takes} units; the translator emits {units}") };
                }
            }
            VoiceStatus::Ready { file: file.clone(), voice, summary }
        }
    }
}

fn load_voice_uncached(file: &UnitVoiceFile) -> VoiceLoad {
    let path = PathBuf::from(&file.path);
    let loaded = vocoder::units::load_unit_vocoder(&path, None, &candle_core::Device::Cpu).map_err(|e| {
        if vocoder::load_vocoder(&path, None, &candle_core::Device::Cpu).is_ok() {
            "it is a mel-spectrogram vocoder (a Resynthesize model); Translate needs a unit vocoder (CodeHiFiGAN or UnitHiFiGAN+FiLM)".to_string()
        } else {
            e.detail()
        }
    })?;
    let v = loaded.vocoder;
    let c = v.config();
    let dims = match &c.film {
        Some(f) => (f.speaker_dim, f.emotion_dim),
        None if c.speaker_is_vector() => (c.embedder_dim, 0),
        None => (0, 0),
    };
    let cond = match &file.cond {
        Some(p) => Some(vocoder::units::Conditioning::load(Path::new(p), dims.0, dims.1).map_err(|e| format!("conditioning {p}: {e}"))?),
        None if c.film.is_some() => return Err("a FiLM unit vocoder needs its conditioning file (speaker/emotion vectors)".into()),
        None => None,
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let summary = format!(
        "{name}: {} unit vocoder, {} units, {} Hz{}{}",
        c.family_name(),
        c.num_embeddings,
        c.sampling_rate,
        if v.has_duration_predictor() { ", duration prediction" } else { "" },
        if cond.is_some() { ", conditioned" } else { "" },
    );
    Ok((VoiceSpec::new(Arc::new(v), cond), summary))
}

/// The Translate engine's inputs for an activation (everything but what the host says).
#[derive(Clone)]
pub struct TranslateSlots {
    pub translator: TranslatorStatus,
    pub voices: [VoiceStatus; 2],
}

impl TranslateSlots {
    pub fn load(files: Option<&TranslatorFiles>, voices: [Option<&UnitVoiceFile>; 2], choice: LatencyChoice) -> Self {
        let translator = load_translator(files, segment_ms(choice));
        let t = translator.translator();
        let voices = voices.map(|v| load_voice(v, t.as_deref()));
        Self { translator, voices }
    }
}

/// The engine setup for these slots (a slot that is not ready plays the dry signal).
#[allow(clippy::too_many_arguments)]
pub fn translate_setup(
    slots: &TranslateSlots,
    choice: LatencyChoice,
    host_rate: u32,
    channels: usize,
    max_block: usize,
    initial_slot: usize,
    offline: bool,
    worker_threads: engine::WorkerThreads,
    live: Arc<LiveTranslation>,
) -> TranslateSetup {
    TranslateSetup {
        host_rate,
        channels,
        max_block,
        segment_ms: segment_ms(choice),
        translator: slots.translator.translator(),
        voices: [slots.voices[0].voice(), slots.voices[1].voice()],
        initial_slot,
        offline,
        worker_threads,
        live,
    }
}

/// The Translate engine's delays for a choice (cheap: no model runs).
pub fn planned_translate(slots: &TranslateSlots, choice: LatencyChoice, host_rate: u32, max_block: usize) -> TranslatePlan {
    let s = translate_setup(slots, choice, host_rate, 1, max_block, 0, true, engine::WorkerThreads::new(1), Arc::new(LiveTranslation::default()));
    translate_plan(&s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("translator/tests/fixtures")
    }

    fn files() -> TranslatorFiles {
        let fx = fixtures();
        TranslatorFiles {
            checkpoint: fx.join("streamspeech/small.pt").to_string_lossy().into(),
            data: fx.join("es-en-small").to_string_lossy().into(),
        }
    }

    #[test]
    fn a_translator_nobody_uses_is_freed_and_one_in_use_is_shared() {
        let a = load_translator(Some(&files()), 640).translator().expect("loads");
        let b = load_translator(Some(&files()), 640).translator().expect("loads");
        assert!(Arc::ptr_eq(&a, &b), "one copy while in use");
        let weak = Arc::downgrade(&a);
        drop((a, b));
        assert!(weak.upgrade().is_none(), "the cache does not keep it alive");
        assert!(load_translator(Some(&files()), 640).translator().is_some(), "loaded again when asked");
    }

    #[test]
    fn segments_for_every_latency_choice() {
        let got: Vec<usize> = LatencyChoice::ALL.iter().map(|c| segment_ms(*c)).collect();
        assert_eq!(got, [320, 320, 320, 160, 320, 640]);
    }

    #[test]
    fn the_fixture_translator_and_voice_load_and_mismatches_are_refused() {
        let unit = UnitVoiceFile { path: fixtures().join("simultaneous/unit_vocoder_tiny.safetensors").to_string_lossy().into(), cond: None };
        let slots = TranslateSlots::load(Some(&files()), [Some(&unit), None], LatencyChoice::Ms320);
        assert!(slots.translator.translator().is_some(), "{}", slots.translator.summary());
        assert!(slots.translator.summary().contains("320 ms segments"), "{}", slots.translator.summary());
        assert!(slots.voices[0].voice().is_some(), "{}", slots.voices[0].summary());
        assert!(matches!(slots.voices[1], VoiceStatus::Empty));
        // A unit vocoder for another unit vocabulary (the 100-unit fixture): refused, saying why.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let other = UnitVoiceFile { path: root.join("vocoder/tests/fixtures/units/code_tiny/g_tiny.pth").to_string_lossy().into(), cond: None };
        let s = load_voice(Some(&other), slots.translator.translator().as_deref());
        assert!(s.voice().is_none() && s.summary().contains("units; the translator emits"), "{}", s.summary());
        // A mel vocoder in a unit slot.
        let mel = UnitVoiceFile { path: root.join("vocoder/tests/fixtures/grc_tiny/model_zip.pth").to_string_lossy().into(), cond: None };
        let s = load_voice(Some(&mel), None);
        assert!(s.voice().is_none(), "{}", s.summary());
        // Missing files say what and where to get them.
        let gone = TranslatorFiles { checkpoint: "/nonexistent/streamspeech.pt".into(), data: files().data };
        let s = load_translator(Some(&gone), 320);
        assert!(s.translator().is_none() && s.summary().contains("missing checkpoint /nonexistent/streamspeech.pt") && s.summary().contains("README"), "{}", s.summary());
        // Not a translator: the reason, never a panic.
        let wrong = TranslatorFiles { checkpoint: unit.path.clone(), data: files().data };
        let s = load_translator(Some(&wrong), 320);
        assert!(matches!(s, TranslatorStatus::Failed { .. }), "{}", s.summary());
    }
}
