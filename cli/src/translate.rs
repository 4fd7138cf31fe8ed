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
                    "encoder: {} conformer layers, d {}, FFN {}, {} heads, chunk {:?}; MT decoder: {} layers, d {}; T2U: {} encoder + {} unit decoder layers, d {}, ×{} upsampling; {} units",
                    c.encoder.layers, c.encoder.layer.embed_dim, c.encoder.layer.ffn_embed_dim, c.encoder.layer.attention_heads, c.encoder.attention_chunk,
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
