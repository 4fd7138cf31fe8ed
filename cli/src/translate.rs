//! `translate`: StreamSpeech speech-to-speech translation of a whole file (the translator crate),
//! with the units voiced by a unit vocoder.

use std::path::Path;

use crate::audio_io::{self, Audio, Bits};

/// What `translate` produced, written as `--text` JSON.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TranslationText {
    pub source_text: String,
    pub target_text_ctc: String,
    pub target_text: String,
    /// Units (0–999) for the vocoder.
    pub units: Vec<u32>,
    pub segment_ms: usize,
}

pub struct TranslateArgs<'a> {
    pub input: &'a Path,
    pub translator: &'a Path,
    pub data: &'a Path,
    pub segment_ms: usize,
    pub max_tokens: usize,
    pub vocoder: Option<&'a Path>,
    pub vocoder_config: Option<&'a Path>,
    pub dur_prediction: bool,
    pub output: Option<&'a Path>,
    pub text: Option<&'a Path>,
    pub force: bool,
}

/// Runs the whole translation; writes the WAV and the JSON (each atomically) when asked.
pub fn translate(a: &TranslateArgs) -> Result<TranslationText, String> {
    // Outputs are checked before anything long runs.
    for p in [a.output, a.text].into_iter().flatten() {
        vocoder::files::output_target(p, a.force).map_err(|e| e.to_string())?;
    }
    if a.output.is_some() && a.vocoder.is_none() {
        return Err("-o needs --vocoder (a unit vocoder: CodeHiFiGAN or UnitHiFiGAN)".into());
    }
    let unit_vocoder = match a.vocoder {
        Some(p) => Some(vocoder::units::load_unit_vocoder(p, a.vocoder_config, &candle_core::Device::Cpu).map_err(|e| format!("unit vocoder {}: {}", p.display(), e.detail()))?),
        None => None,
    };
    let data = translator::data::DataDir::load(a.data).map_err(|e| e.to_string())?;
    let (model, _) = translator::model::StreamSpeech::load_for_segment(a.translator, data.mt, Some(a.segment_ms), &candle_core::Device::Cpu)
        .map_err(|e| format!("translator {}: {e}", a.translator.display()))?;
    let units_out = model.cfg.t2u.vocab.saturating_sub(5);
    if let Some(v) = &unit_vocoder
        && v.vocoder.config().num_embeddings != units_out
    {
        return Err(format!("the unit vocoder takes {} units; the translator emits {units_out}", v.vocoder.config().num_embeddings));
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
    let result = TranslationText {
        source_text: data.source.detokenize(&out.asr.tokens),
        target_text_ctc: data.target.detokenize(&out.st.tokens),
        target_text: data.target.detokenize(&out.mt_tokens),
        units,
        segment_ms: a.segment_ms,
    };
    if let (Some(path), Some(v)) = (a.output, &unit_vocoder) {
        let ids: Vec<i64> = result.units.iter().map(|u| *u as i64).collect();
        let speech = v.vocoder.synthesize(&ids, None, a.dur_prediction, None).map_err(|e| e.to_string())?;
        let rate = v.vocoder.config().sampling_rate;
        audio_io::write_wav(path, &Audio { rate, channels: vec![speech.audio] }, Bits::Float32, a.force).map_err(|e| e.to_string())?;
    }
    if let Some(path) = a.text {
        let json = serde_json::to_string_pretty(&result).expect("serialises");
        vocoder::files::write_file(path, json.as_bytes(), a.force).map_err(|e| e.to_string())?;
    }
    Ok(result)
}
