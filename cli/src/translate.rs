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
    /// Simultaneous: the agent's policy segment by segment, the listener's timeline.
    pub simultaneous: bool,
    pub timeline: Option<&'a Path>,
    pub srt: Option<&'a Path>,
    /// Simultaneous: the input is one utterance, fed as upstream's evaluator feeds its agent (no
    /// cut at silences or at the length cap).
    pub single_utterance: bool,
    /// Show a progress bar (long inputs, simultaneous).
    pub progress: bool,
    pub force: bool,
}

/// Runs the whole translation; writes the WAV and the JSON (each atomically) when asked. Every
/// input is loaded and checked before the model runs, and nothing is written on an error.
pub fn translate(a: &TranslateArgs) -> Result<TranslationText, String> {
    if a.simultaneous {
        return Err("internal: simultaneous runs go through translate_simultaneous".into());
    }
    if a.timeline.is_some() || a.srt.is_some() {
        return Err("--timeline and --srt describe a simultaneous run; add --simultaneous".into());
    }
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

/// One policy call of a simultaneous run, as the timeline JSON lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SegmentEntry {
    pub index: usize,
    /// Which utterance of the stream (silence or the length cap ends one; its texts and ids
    /// start anew).
    pub utterance: usize,
    /// Source time of the decision: the end of the input this call had.
    pub input_ms: f64,
    /// "READ" or "WRITE" (a final call that adds nothing is a WRITE of nothing, as upstream's).
    pub action: &'static str,
    /// The ASR CTC output so far (source dictionary ids) and its text.
    pub asr_ids: Vec<u32>,
    pub asr: String,
    /// The committed translation so far (target dictionary ids) and its text.
    pub translation_ids: Vec<u32>,
    pub translation: String,
    /// The ST CTC head's current hypothesis: where the translation is heading, not committed.
    pub translation_tentative: String,
    pub new_units: Vec<u32>,
    /// Samples (at `sample_rate`) of new speech this call made available to the listener.
    pub emitted_samples: usize,
    /// When the listener starts hearing them (`null` without new speech).
    pub audio_start_ms: Option<f64>,
    /// This call's compute (policy, models, vocoder).
    pub compute_ms: f64,
    /// Feature frames of the utterance so far (the attention's and the MT decoder's cost
    /// grow with them; bounded by the utterance cap).
    pub frames: usize,
    /// Encoder frames this call computed (completed chunks are cached).
    pub encoded_frames: usize,
}

/// The listener's timeline of a simultaneous run (`--timeline` JSON).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Timeline {
    pub segment_ms: usize,
    /// The rate of `emitted_samples` (the vocoder's).
    pub sample_rate: u32,
    /// New speech starts this long after its decision (the segment, so that its compute fits in
    /// the next one, plus the vocoder's lookahead), or when the speech before it ends.
    pub delay_ms: f64,
    pub input_ms: f64,
    /// Where the last speech ends.
    pub output_ms: f64,
    /// The most the queue ran behind `decision + delay_ms`.
    pub max_backlog_ms: f64,
    pub asr: String,
    pub translation: String,
    pub units: usize,
    /// SimulEval's metrics for the run (`translator::latency`), scored as one instance.
    pub latency: LatencyReport,
    pub segments: Vec<SegmentEntry>,
}

/// SimulEval's metrics: text ones over the committed target pieces (each timed by the segment
/// that committed it), speech ones over the segments that wrote speech laid out as SimulEval lays
/// them (at their decision time, queued) — not our listener's fixed delay.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct LatencyReport {
    /// Delays are the source consumed at each decision.
    pub non_computation_aware: LatencyMetrics,
    /// Delays add the compute spent since the start (as if fed as fast as it runs).
    pub computation_aware: LatencyMetrics,
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
#[allow(non_snake_case)]
pub struct LatencyMetrics {
    pub AL: Option<f64>,
    pub LAAL: Option<f64>,
    pub AP: Option<f64>,
    pub DAL: Option<f64>,
    pub StartOffset: Option<f64>,
    pub EndOffset: Option<f64>,
    pub ATD: Option<f64>,
}

impl From<translator::latency::Metrics> for LatencyMetrics {
    fn from(m: translator::latency::Metrics) -> Self {
        LatencyMetrics { AL: m.al, LAAL: m.laal, AP: m.ap, DAL: m.dal, StartOffset: m.start_offset, EndOffset: m.end_offset, ATD: m.atd }
    }
}

fn latency_report(segments: &[SegmentEntry], input_ms: f64, rate: u32) -> LatencyReport {
    let score = |aware: bool| {
        let (mut words, mut speech, mut speech_elapsed) = (Vec::new(), Vec::new(), Vec::new());
        let (mut shown, mut utterance, mut spent) = (0usize, 0usize, 0.0);
        for s in segments {
            spent += s.compute_ms;
            let at = s.input_ms + if aware { spent } else { 0.0 };
            if s.utterance != utterance {
                (shown, utterance) = (0, s.utterance);
            }
            let n = s.translation_ids.len();
            words.extend(std::iter::repeat_n(at, n.saturating_sub(shown)));
            shown = shown.max(n);
            if s.emitted_samples > 0 {
                speech.push((s.input_ms, s.emitted_samples as f64 * 1000.0 / rate as f64));
                speech_elapsed.push(s.input_ms + spent);
            }
        }
        let m = if aware {
            translator::latency::Metrics::compute_aware(&words, &speech, &speech_elapsed, input_ms)
        } else {
            translator::latency::Metrics::compute(&words, &speech, input_ms)
        };
        LatencyMetrics::from(m)
    };
    LatencyReport { non_computation_aware: score(false), computation_aware: score(true) }
}

/// Simultaneous translation of a file: StreamSpeech's policy (translator::simultaneous) fed the
/// input segment by segment as upstream's evaluator feeds its agent, each new unit voiced as soon
/// as the streaming vocoder can, and the speech placed on the listener's timeline: it starts at
/// its decision time + [`Timeline::delay_ms`], or right after the speech before it (a queue:
/// never overlapping, never dropped). Writes `-o` (the timeline at the input's length plus the
/// tail, at `--rate` or the input's rate), `--timeline` JSON and `--srt` subtitles.
pub fn translate_simultaneous(a: &TranslateArgs) -> Result<Timeline, String> {
    for p in [a.output, a.text, a.timeline, a.srt].into_iter().flatten() {
        vocoder::files::output_target(p, a.force).map_err(|e| e.to_string())?;
    }
    if a.text.is_some() {
        return Err("--text is the whole-utterance JSON; a simultaneous run writes --timeline".into());
    }
    let voice = match a.vocoder {
        Some(p) => Voice::load(p, a)?,
        None => return Err("--simultaneous voices the translation as it goes: give --vocoder (a unit vocoder)".into()),
    };
    let data = translator::data::DataDir::load(a.data).map_err(|e| e.to_string())?;
    let (model, _) = translator::model::StreamSpeech::load_for_segment(a.translator, data.mt, Some(a.segment_ms), &candle_core::Device::Cpu)
        .map_err(|e| format!("translator {}: {e}", a.translator.display()))?;
    let units_out = model.cfg.t2u.vocab.saturating_sub(5);
    let vocoder = std::sync::Arc::new(voice.loaded.vocoder);
    let v = &vocoder;
    if v.config().num_embeddings != units_out {
        return Err(format!("the unit vocoder takes {} units; the translator emits {units_out}", v.config().num_embeddings));
    }
    let input = audio_io::read_audio(a.input).map_err(|e| e.to_string())?;
    let rate = v.config().sampling_rate;
    let out_rate = a.rate.unwrap_or(input.rate);
    // The plugin's Translate task runs the same session on the host's blocks; a bounce equals
    // this render bit for bit.
    let spec = engine::translate::VoiceSpec {
        vocoder: vocoder.clone(),
        dur_prediction: !a.no_dur_prediction && v.has_duration_predictor(),
        speaker: a.speaker,
        cond: voice.cond.clone(),
    };
    let mut cfg = engine::translate::SessionConfig::new(a.segment_ms, input.rate, out_rate);
    cfg.single_utterance = a.single_utterance;
    let mut session = engine::translate::TranslateSession::new(&model, &data, vec![spec], cfg)?;
    let delay_ms = session.delay_ms(0);
    let mono = input.mono();
    // Fed a segment's worth of input at a time (the progress bar's step).
    let piece = (a.segment_ms * input.rate as usize).div_ceil(1000).max(1);
    let calls = mono.len().div_ceil(piece).max(1);
    let bar = (a.progress && mono.len() > 30 * input.rate as usize).then(|| crate::progress_bar(calls as u64, "translate"));
    let mut out = vec![Vec::new()];
    let mut reports = Vec::with_capacity(calls);
    let mut pos = 0;
    loop {
        let end = (pos + piece).min(mono.len());
        reports.extend(session.push(&mono[pos..end], end == mono.len(), 0, &mut out)?);
        pos = end;
        if let Some(b) = &bar {
            b.inc(1);
        }
        if pos == mono.len() {
            break;
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let source_ms = session.source_samples() as f64 * 1000.0 / 16_000.0;
    let stats = session.lane_stats(0);
    let mut segments = Vec::with_capacity(reports.len());
    let (mut asr_text, mut translation_text, mut unit_count) = (String::new(), String::new(), 0usize);
    let (mut done_asr, mut done_translation): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    for r in reports {
        unit_count += r.new_units.len();
        let asr = data.source.detokenize(&r.step.asr_ids);
        let translation = data.target.detokenize(&r.step.translation_ids);
        let joined = |done: &[String], current: &str| done.iter().map(String::as_str).chain([current]).filter(|t| !t.is_empty()).collect::<Vec<_>>().join(" ");
        asr_text = joined(&done_asr, &asr);
        translation_text = joined(&done_translation, &translation);
        if r.utterance_done {
            done_asr.push(asr.clone());
            done_translation.push(translation.clone());
        }
        let input_ms = r.input_ms();
        let voiced = r.voiced[0];
        segments.push(SegmentEntry {
            index: r.index,
            utterance: r.utterance,
            input_ms,
            action: r.action,
            asr,
            asr_ids: r.step.asr_ids,
            translation,
            translation_ids: r.step.translation_ids,
            translation_tentative: data.target.detokenize(&r.step.st_ids),
            new_units: r.new_units,
            emitted_samples: voiced.samples,
            audio_start_ms: voiced.start.map(|s| s as f64 * 1000.0 / rate as f64),
            compute_ms: r.compute_s * 1000.0,
            frames: r.step.frames,
            encoded_frames: r.step.encoded_frames,
        });
    }
    let timeline = Timeline {
        segment_ms: a.segment_ms,
        sample_rate: rate,
        delay_ms,
        input_ms: source_ms,
        output_ms: stats.queue_end as f64 * 1000.0 / rate as f64,
        max_backlog_ms: stats.max_backlog as f64 * 1000.0 / rate as f64,
        asr: asr_text,
        translation: translation_text,
        units: unit_count,
        latency: latency_report(&segments, source_ms, rate),
        segments,
    };
    // Everything is computed before anything is written.
    let out_audio = a.output.map(|_| Audio { rate: out_rate, channels: vec![std::mem::take(&mut out[0])] });
    if let Some(audio) = &out_audio {
        let reasons = vocoder::units::output_health(&audio.channels[0], audio.rate);
        if !reasons.is_empty() && timeline.units > 0 {
            let why = reasons.join("; ");
            if !a.no_health_check {
                return Err(format!("the translated speech fails the health check: {why} (--no-health-check writes it anyway)"));
            }
            eprintln!("warning: the translated speech fails the health check: {why}; writing it anyway (--no-health-check)");
        }
    }
    if let (Some(path), Some(audio)) = (a.output, &out_audio) {
        audio_io::write_wav(path, audio, Bits::Float32, a.force).map_err(|e| e.to_string())?;
    }
    if let Some(path) = a.timeline {
        let json = serde_json::to_string_pretty(&timeline).expect("serialises");
        vocoder::files::write_file(path, json.as_bytes(), a.force).map_err(|e| e.to_string())?;
    }
    if let Some(path) = a.srt {
        vocoder::files::write_file(path, srt(&timeline, &data.target).as_bytes(), a.force).map_err(|e| e.to_string())?;
    }
    Ok(timeline)
}

/// Subtitles: each write's newly committed translation, from when its speech starts until the
/// next subtitle (or its speech's end, at least 1 s).
pub fn srt(t: &Timeline, target: &translator::data::Dictionary) -> String {
    let mut cues: Vec<(f64, String)> = Vec::new();
    let (mut shown, mut utterance) = (0usize, 0usize);
    for s in &t.segments {
        if s.utterance != utterance {
            (shown, utterance) = (0, s.utterance);
        }
        if let Some(start) = s.audio_start_ms
            && s.translation_ids.len() > shown
        {
            let text = target.detokenize(&s.translation_ids[shown..]);
            shown = s.translation_ids.len();
            if !text.is_empty() {
                cues.push((start, text));
            }
        }
    }
    let stamp = |ms: f64| {
        let ms = ms.max(0.0).round() as u64;
        format!("{:02}:{:02}:{:02},{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
    };
    let mut out = String::new();
    for (i, (start, text)) in cues.iter().enumerate() {
        let end = cues.get(i + 1).map_or((t.output_ms).max(start + 1000.0), |n| n.0);
        out.push_str(&format!("{}\n{} --> {}\n{}\n\n", i + 1, stamp(*start), stamp(end.max(start + 1.0)), text));
    }
    out
}
