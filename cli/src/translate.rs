//! `translate`: StreamSpeech speech-to-speech translation of a whole file (the translator crate),
//! with the units voiced by a unit vocoder.

use std::path::Path;

use crate::audio_io::{self, Audio, Bits};

/// What `translate` produced, written as `--text` JSON: texts, the ids the model's dictionaries
/// give them, and the units (0–999).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TranslationText {
    /// Source-language text (the ASR CTC head).
    pub asr: String,
    /// Target-language text (the MT decoder: what the units speak).
    pub translation: String,
    /// Source dictionary ids of `asr`.
    pub asr_ids: Vec<u32>,
    /// Target dictionary ids of `translation` (no end-of-sentence).
    pub translation_ids: Vec<u32>,
    /// The ST CTC head's target text, the first pass the simultaneous policy reads.
    pub translation_ctc: String,
    pub translation_ctc_ids: Vec<u32>,
    /// Units (0–999) for the vocoder.
    pub units: Vec<u32>,
    pub segment_ms: usize,
    /// How the units were voiced (absent without a vocoder).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speech: Option<SpeechSummary>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SpeechSummary {
    pub mode: VoiceMode,
    pub vocoder_family: &'static str,
    /// Vocoder frames after duration prediction (the unit count without it).
    pub frames: usize,
    pub sample_rate: u32,
    pub seconds: f64,
}

/// How the units become speech, the plugin's Mode for unit vocoders: **original** is the stock
/// CodeHiFiGAN (duration prediction when the model has a predictor, as upstream's agent runs it);
/// **modified** is the thesis' UnitHiFiGAN with FiLM speaker/emotion conditioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum VoiceMode {
    Original,
    Modified,
}

impl VoiceMode {
    /// The mode a unit vocoder of this family plays.
    pub fn of(cfg: &vocoder::units::UnitVocoderConfig) -> Self {
        if cfg.film.is_some() { VoiceMode::Modified } else { VoiceMode::Original }
    }
}

pub struct TranslateArgs<'a> {
    pub input: &'a Path,
    pub translator: &'a Path,
    pub data: &'a Path,
    pub segment_ms: usize,
    pub max_tokens: usize,
    pub vocoder: Option<&'a Path>,
    pub vocoder_config: Option<&'a Path>,
    /// Checked against the vocoder's family; None: the family decides.
    pub mode: Option<VoiceMode>,
    /// FiLM conditioning (Modified) or a CodeHiFiGAN's speaker vector.
    pub cond: Option<&'a Path>,
    pub speaker: Option<u32>,
    pub no_dur_prediction: bool,
    /// Output rate; None: the vocoder's.
    pub rate: Option<u32>,
    pub no_health_check: bool,
    pub output: Option<&'a Path>,
    pub text: Option<&'a Path>,
    pub force: bool,
}

/// Runs the whole translation; writes the WAV and the JSON (each atomically) when asked. Every
/// input is loaded and checked before the model runs, and nothing is written on an error.
pub fn translate(a: &TranslateArgs) -> Result<TranslationText, String> {
    for p in [a.output, a.text].into_iter().flatten() {
        vocoder::files::output_target(p, a.force).map_err(|e| e.to_string())?;
    }
    if a.output.is_some() && a.vocoder.is_none() {
        return Err("-o needs --vocoder (a unit vocoder: CodeHiFiGAN or UnitHiFiGAN+FiLM)".into());
    }
    if a.output.is_none() && (a.vocoder.is_some() || a.mode.is_some()) {
        return Err("--vocoder/--mode voice the translation into -o OUT.wav; give -o".into());
    }
    let voice = a.vocoder.map(|p| Voice::load(p, a)).transpose()?;
    let data = translator::data::DataDir::load(a.data).map_err(|e| e.to_string())?;
    let (model, _) = translator::model::StreamSpeech::load_for_segment(a.translator, data.mt, Some(a.segment_ms), &candle_core::Device::Cpu)
        .map_err(|e| format!("translator {}: {e}", a.translator.display()))?;
    let units_out = model.cfg.t2u.vocab.saturating_sub(5);
    if let Some(v) = &voice
        && v.loaded.vocoder.config().num_embeddings != units_out
    {
        return Err(format!("the unit vocoder takes {} units; the translator emits {units_out}", v.loaded.vocoder.config().num_embeddings));
    }
    let input = audio_io::read_audio(a.input).map_err(|e| e.to_string())?;
    // The agent's front end works on 16 kHz mono.
    let wave = if input.rate == 16_000 { input.mono() } else { engine::stream::resample_whole(&input.mono(), input.rate, 16_000) };
    let front = translator::fbank::Fbank::new(translator::fbank::FbankConfig::default()).map_err(|e| e.to_string())?;
    let (mut feats, frames) = front.compute(&wave);
    if frames < 10 {
        return Err(format!("{}: too short to translate ({frames} feature frames)", a.input.display()));
    }
    data.cmvn.apply(&mut feats);
    let features = candle_core::Tensor::from_vec(feats, (1, frames, 80), &candle_core::Device::Cpu).map_err(|e| e.to_string())?;
    let out = model.translate(&features, a.max_tokens).map_err(|e| e.to_string())?;
    // Unit dictionary: 4 specials first, then units 0–999 (the blank and specials are not units).
    let units: Vec<u32> = out.units.iter().filter(|u| (4..4 + units_out as u32).contains(*u)).map(|u| u - 4).collect();
    let mut result = TranslationText {
        asr: data.source.detokenize(&out.asr.tokens),
        translation: data.target.detokenize(&out.mt_tokens),
        asr_ids: out.asr.tokens.clone(),
        translation_ids: out.mt_tokens.clone(),
        translation_ctc: data.target.detokenize(&out.st.tokens),
        translation_ctc_ids: out.st.tokens.clone(),
        units,
        segment_ms: a.segment_ms,
        speech: None,
    };
    // Voiced (and checked) before anything is written, so a failure leaves no half output.
    let speech = match (a.output, &voice) {
        (Some(_), Some(v)) => Some(v.speak(&result.units, a)?),
        _ => None,
    };
    result.speech = speech.as_ref().map(|(summary, _)| summary.clone());
    if let (Some(path), Some((_, audio))) = (a.output, &speech) {
        audio_io::write_wav(path, audio, Bits::Float32, a.force).map_err(|e| e.to_string())?;
    }
    if let Some(path) = a.text {
        let json = serde_json::to_string_pretty(&result).expect("serialises");
        vocoder::files::write_file(path, json.as_bytes(), a.force).map_err(|e| e.to_string())?;
    }
    Ok(result)
}

/// A unit vocoder checked against the asked mode, with its conditioning.
struct Voice {
    loaded: vocoder::units::LoadedUnitVocoder,
    mode: VoiceMode,
    cond: Option<vocoder::units::Conditioning>,
}

impl Voice {
    fn load(path: &Path, a: &TranslateArgs) -> Result<Self, String> {
        let loaded = vocoder::units::load_unit_vocoder(path, a.vocoder_config, &candle_core::Device::Cpu).map_err(|e| {
            let why = e.detail();
            // A mel vocoder (the plugin's slots) cannot voice units: say so in the user's terms.
            if vocoder::load_vocoder(path, a.vocoder_config, &candle_core::Device::Cpu).is_ok() {
                format!("{} is a mel-spectrogram vocoder; translate needs a unit vocoder (CodeHiFiGAN or UnitHiFiGAN+FiLM)", path.display())
            } else {
                format!("unit vocoder {}: {why}", path.display())
            }
        })?;
        let c = loaded.vocoder.config();
        let mode = VoiceMode::of(c);
        if let Some(asked) = a.mode
            && asked != mode
        {
            return Err(format!(
                "--mode {} needs a {} unit vocoder; {} is a {}",
                if asked == VoiceMode::Original { "original" } else { "modified" },
                if asked == VoiceMode::Original { "CodeHiFiGAN (no FiLM)" } else { "UnitHiFiGAN+FiLM" },
                path.display(),
                c.family_name()
            ));
        }
        let dims = match &c.film {
            Some(f) => (f.speaker_dim, f.emotion_dim),
            None if c.speaker_is_vector() => (c.embedder_dim, 0),
            None => (0, 0),
        };
        let cond = a.cond.map(|p| vocoder::units::Conditioning::load(p, dims.0, dims.1)).transpose().map_err(|e| e.to_string())?;
        Ok(Voice { loaded, mode, cond })
    }

    /// The units as speech at the asked rate, health-checked.
    fn speak(&self, units: &[u32], a: &TranslateArgs) -> Result<(SpeechSummary, Audio), String> {
        let v = &self.loaded.vocoder;
        let ids: Vec<i64> = units.iter().map(|u| *u as i64).collect();
        if ids.is_empty() {
            return Err("the translator emitted no units to voice".into());
        }
        let dur = !a.no_dur_prediction && v.has_duration_predictor();
        let out = v.synthesize(&ids, a.speaker, dur, self.cond.as_ref()).map_err(|e| e.to_string())?;
        let model_rate = v.config().sampling_rate;
        let reasons = vocoder::units::output_health(&out.audio, model_rate);
        if !reasons.is_empty() {
            let why = reasons.join("; ");
            if !a.no_health_check {
                return Err(format!("the translated speech fails the health check: {why} (--no-health-check writes it anyway)"));
            }
            eprintln!("warning: the translated speech fails the health check: {why}; writing it anyway (--no-health-check)");
        }
        let rate = a.rate.unwrap_or(model_rate);
        let audio = if rate == model_rate { out.audio } else { engine::stream::resample_whole(&out.audio, model_rate, rate) };
        let frames = out.durations.as_ref().map(|d| d.iter().sum::<u32>() as usize).unwrap_or(out.units.len());
        let audio = Audio { rate, channels: vec![audio] };
        let summary = SpeechSummary { mode: self.mode, vocoder_family: v.config().family_name(), frames, sample_rate: rate, seconds: audio.seconds() };
        Ok((summary, audio))
    }
}

/// `inspect` for a StreamSpeech checkpoint (None when the file is not one): its hyper-parameters,
/// parameter count and the strict report (only the `model` tensors are read). Exit 0 when it
/// would load.
pub fn inspect(path: &Path, data: Option<&Path>, json: bool) -> Option<std::process::ExitCode> {
    use std::process::ExitCode;
    use translator::model::{MtSettings, StreamSpeechConfig};
    let opts = vocoder::checkpoint::LoadOptions { tensors_under: Some("model.".into()) };
    let ckpt = vocoder::checkpoint::load_with(path, &opts).ok()?;
    let arch = ckpt.scalars.get("cfg.model.arch").or_else(|| ckpt.scalars.get("args.arch")).and_then(|s| s.as_str().map(str::to_string))?;
    if !arch.starts_with("streamspeech") {
        return None;
    }
    // The MT decoder's settings: the data directory's, else its layer count and widths from the
    // shapes (attention heads do not change any shape, so the report does not need them).
    let mt = match data.map(translator::data::DataDir::load).transpose() {
        Ok(Some(d)) => Ok(d.mt),
        Ok(None) => {
            let shape = |k: &str| ckpt.tensors.get(k).map(|t| t.shape.clone()).unwrap_or_default();
            let layers = (0..).take_while(|i| ckpt.tensors.contains_key(&format!("target_unigram_decoder.layers.{i}.fc1.weight"))).count();
            let fc1 = shape("target_unigram_decoder.layers.0.fc1.weight");
            Ok(MtSettings { layers, embed_dim: fc1.get(1).copied().unwrap_or(1), ffn_embed_dim: fc1.first().copied().unwrap_or(1), attention_heads: 1 })
        }
        Err(e) => Err(e.to_string()),
    };
    let cfg = mt.and_then(|mt| StreamSpeechConfig::from_checkpoint(&ckpt, mt).map_err(|e| e.to_string()));
    let report = cfg.as_ref().ok().map(|c| vocoder::report::CheckpointReport::compare(&c.expected_params(), &ckpt.shapes()));
    let parameters: usize = ckpt
        .tensors
        .iter()
        .filter(|(k, t)| t.dtype.is_float() && !k.ends_with(".version") && !k.contains("running_") && !k.ends_with("output_projection.weight"))
        .map(|(_, t)| t.numel())
        .sum();
    let ok = report.as_ref().is_some_and(|r| r.is_clean()) && ckpt.code_calls.is_empty();
    let dtype = ckpt.tensors.get("encoder.linear.weight").map(|t| t.dtype.name()).unwrap_or("?");
    if json {
        let c = cfg.as_ref().ok();
        let j = serde_json::json!({
            "checkpoint": path, "kind": "StreamSpeech translator", "arch": arch, "loads": ok, "parameters": parameters, "dtype": dtype,
            "encoder_layers": c.map(|c| c.encoder.layers), "encoder_embed_dim": c.map(|c| c.encoder.layer.embed_dim),
            "chunk_size": c.and_then(|c| c.encoder.attention_chunk), "mt_decoder_layers": c.map(|c| c.mt.layers),
            "unit_decoder_layers": c.map(|c| c.t2u.decoder_layers), "ctc_upsample_rate": c.map(|c| c.t2u.ctc_upsample_rate),
            "units": c.map(|c| c.t2u.vocab.saturating_sub(5)), "code_calls": ckpt.code_calls,
            "report": report, "error": cfg.as_ref().err(),
        });
        println!("{}", serde_json::to_string_pretty(&j).expect("serialises"));
    } else {
        println!("checkpoint: {}", path.display());
        println!("kind: StreamSpeech translator (arch {arch}); {parameters} parameters stored as {dtype}");
        match &cfg {
            Ok(c) => {
                println!(
                    "encoder: {} conformer layers, d {}, FFN {}, {} heads, {}; MT decoder: {} layers, d {}; T2U: {} encoder + {} unit decoder layers, d {}, ×{} upsampling; {} units",
                    c.encoder.layers, c.encoder.layer.embed_dim, c.encoder.layer.ffn_embed_dim, c.encoder.layer.attention_heads,
                    c.encoder.attention_chunk.map(|n| format!("chunks of {n} frames")).unwrap_or_else(|| "full attention".into()),
                    c.mt.layers, c.mt.embed_dim, c.t2u.encoder_layers, c.t2u.decoder_layers, c.t2u.embed_dim, c.t2u.ctc_upsample_rate, c.t2u.vocab.saturating_sub(5)
                );
                if data.is_none() {
                    println!("MT decoder settings inferred from the shapes (give --data for its attention heads)");
                }
            }
            Err(e) => println!("error: {e}"),
        }
        if let Some(r) = &report {
            print!("{r}");
        }
        if !ckpt.code_calls.is_empty() {
            println!("refused: the file contains code Python would run ({})", ckpt.code_calls.join(", "));
        }
        println!("{}", if ok { "verdict: loads (strict); translate with `streamspeech-vocoder translate`" } else { "verdict: will not load" });
    }
    Some(if ok { ExitCode::SUCCESS } else { ExitCode::from(2) })
}
