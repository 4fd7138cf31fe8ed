//! The whole StreamSpeech model's hyper-parameters, read from a real checkpoint, and the exact
//! set of state-dict entries they imply. The loader compares this set with the checkpoint through
//! the same strict `CheckpointReport` as the vocoders (to come: building the modules from it).

use std::collections::BTreeMap;

use vocoder::checkpoint::{Checkpoint, Scalar};

use crate::conformer::ConformerConfig;
use crate::encoder::EncoderConfig;
use crate::error::TranslatorError;
use crate::mt_decoder::MtDecoderConfig;
use crate::subsampler::SubsamplerConfig;
use crate::t2u::T2uConfig;

/// The MT decoder's settings. They are not in the checkpoint's Namespace: upstream reads them from
/// the data directory's multitask config (`target_unigram.decoder_args`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MtSettings {
    pub layers: usize,
    pub embed_dim: usize,
    pub ffn_embed_dim: usize,
    pub attention_heads: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamSpeechConfig {
    pub encoder: EncoderConfig,
    pub mt: MtDecoderConfig,
    pub t2u: T2uConfig,
    /// The ASR CTC head's vocabulary (source pieces) and the ST head's (target pieces).
    pub asr_vocab: usize,
    pub st_vocab: usize,
}

/// Namespace fields, from `cfg.model` (fairseq ≥ 0.10) or `args` (older checkpoints).
struct Fields<'a> {
    scalars: &'a BTreeMap<String, Scalar>,
    prefix: &'static str,
}

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&Scalar> {
        self.scalars.get(&format!("{}{name}", self.prefix))
    }
    fn usize(&self, name: &str) -> Result<usize, TranslatorError> {
        self.get(name)
            .and_then(Scalar::as_i64)
            .and_then(|v| usize::try_from(v).ok())
            .filter(|v| *v <= 1 << 20)
            .ok_or_else(|| TranslatorError::Config(format!("the checkpoint's model config has no usable `{name}`")))
    }
    fn usize_or(&self, name: &str, default: usize) -> Result<usize, TranslatorError> {
        if self.get(name).is_none() { Ok(default) } else { self.usize(name) }
    }
    fn flag(&self, name: &str) -> bool {
        self.get(name).and_then(Scalar::as_bool).unwrap_or(false)
    }
}

/// A vocabulary size from a tensor's first dimension.
fn rows(ckpt: &Checkpoint, key: &str) -> Result<usize, TranslatorError> {
    ckpt.tensors
        .get(key)
        .and_then(|t| t.shape.first().copied())
        .ok_or_else(|| TranslatorError::Config(format!("the checkpoint has no `{key}` (is it a StreamSpeech model?)")))
}

impl StreamSpeechConfig {
    /// From a checkpoint read with `tensors_under: "model."`: hyper-parameters from its model
    /// Namespace, vocabulary sizes from the embedding and head shapes (the dictionaries must
    /// agree), the MT decoder's settings from `mt`.
    pub fn from_checkpoint(ckpt: &Checkpoint, mt: MtSettings) -> Result<Self, TranslatorError> {
        let prefix = if ckpt.scalars.contains_key("cfg.model.encoder_layers") { "cfg.model." } else { "args." };
        let f = Fields { scalars: &ckpt.scalars, prefix };
        let kernels: Vec<usize> = match f.get("conv_kernel_sizes").and_then(Scalar::as_str) {
            Some(s) => s.split(',').map(|k| k.trim().parse().map_err(|_| TranslatorError::Config(format!("conv_kernel_sizes `{s}`")))).collect::<Result<_, _>>()?,
            None => vec![5, 5],
        };
        let chunk = match f.get("chunk_size") {
            None | Some(Scalar::None) => None,
            Some(_) => Some(f.usize("chunk_size")?),
        };
        let d = f.usize("encoder_embed_dim")?;
        let encoder = EncoderConfig {
            subsampler: SubsamplerConfig {
                in_channels: f.usize_or("input_feat_per_channel", 80)? * f.usize_or("input_channels", 1)?,
                mid_channels: f.usize_or("conv_channels", 1024)?,
                out_channels: d,
                kernel_sizes: kernels,
                chunk_size: chunk,
            },
            layer: ConformerConfig {
                embed_dim: d,
                ffn_embed_dim: f.usize("encoder_ffn_embed_dim")?,
                attention_heads: f.usize("encoder_attention_heads")?,
                depthwise_conv_kernel_size: f.usize_or("depthwise_conv_kernel_size", 31)?,
                chunk_size: chunk,
            },
            layers: f.usize("encoder_layers")?,
            scale_embedding: !f.flag("no_scale_embedding"),
            attention_chunk: chunk,
        };
        let mt = MtDecoderConfig {
            vocab: rows(ckpt, "target_unigram_decoder.embed_tokens.weight")?,
            embed_dim: mt.embed_dim,
            ffn_embed_dim: mt.ffn_embed_dim,
            attention_heads: mt.attention_heads,
            layers: mt.layers,
            encoder_dim: d,
            padding_idx: 1,
            eos: 2,
            max_positions: 1024,
        };
        let t2u = T2uConfig {
            embed_dim: f.usize("decoder_embed_dim")?,
            ffn_embed_dim: f.usize("decoder_ffn_embed_dim")?,
            attention_heads: f.usize("decoder_attention_heads")?,
            encoder_layers: f.usize_or("synthesizer_encoder_layers", 0)?,
            decoder_layers: f.usize("decoder_layers")?,
            vocab: rows(ckpt, "decoder.embed_tokens.weight")?,
            ctc_upsample_rate: f.usize_or("ctc_upsample_rate", 10)?,
            padding_idx: 1,
        };
        for (what, dim, heads) in [("encoder", d, encoder.layer.attention_heads), ("MT decoder", mt.embed_dim, mt.attention_heads), ("unit decoder", t2u.embed_dim, t2u.attention_heads)] {
            if heads == 0 || dim % heads != 0 {
                return Err(TranslatorError::Config(format!("{what}: {dim} channels do not split into {heads} heads")));
            }
        }
        Ok(StreamSpeechConfig {
            encoder,
            mt,
            t2u,
            asr_vocab: rows(ckpt, "source_unigram_decoder.proj.weight")?,
            st_vocab: rows(ckpt, "ctc_target_unigram_decoder.proj.weight")?,
        })
    }

    /// Every state-dict entry the model has, with its shape (buffers included: BatchNorm
    /// statistics and step counters, the decoders' `version`), keyed as in the checkpoint's
    /// `model` dict.
    pub fn expected_params(&self) -> BTreeMap<String, Vec<usize>> {
        let mut p = BTreeMap::new();
        let mut put = |k: String, s: &[usize]| {
            p.insert(k, s.to_vec());
        };
        let linear = |put: &mut dyn FnMut(String, &[usize]), k: &str, i: usize, o: usize| {
            put(format!("{k}.weight"), &[o, i]);
            put(format!("{k}.bias"), &[o]);
        };
        let norm = |put: &mut dyn FnMut(String, &[usize]), k: &str, d: usize| {
            put(format!("{k}.weight"), &[d]);
            put(format!("{k}.bias"), &[d]);
        };
        // Encoder.
        let e = &self.encoder;
        let d = e.layer.embed_dim;
        let n = e.subsampler.kernel_sizes.len();
        for (i, &k) in e.subsampler.kernel_sizes.iter().enumerate() {
            let cin = if i == 0 { e.subsampler.in_channels } else { e.subsampler.mid_channels / 2 };
            let cout = if i + 1 < n { e.subsampler.mid_channels } else { 2 * d };
            put(format!("encoder.subsample.conv_layers.{i}.weight"), &[cout, cin, k]);
            put(format!("encoder.subsample.conv_layers.{i}.bias"), &[cout]);
        }
        linear(&mut put, "encoder.linear", d, d);
        let (ffn, h) = (e.layer.ffn_embed_dim, e.layer.attention_heads);
        for l in 0..e.layers {
            let base = format!("encoder.conformer_layers.{l}");
            for f in ["ffn1", "ffn2"] {
                norm(&mut put, &format!("{base}.{f}.layer_norm"), d);
                linear(&mut put, &format!("{base}.{f}.w_1"), d, ffn);
                linear(&mut put, &format!("{base}.{f}.w_2"), ffn, d);
            }
            norm(&mut put, &format!("{base}.self_attn_layer_norm"), d);
            for q in ["linear_q", "linear_k", "linear_v", "linear_out"] {
                linear(&mut put, &format!("{base}.self_attn.{q}"), d, d);
            }
            put(format!("{base}.self_attn.linear_pos.weight"), &[d, d]);
            put(format!("{base}.self_attn.pos_bias_u"), &[h, d / h]);
            put(format!("{base}.self_attn.pos_bias_v"), &[h, d / h]);
            let c = format!("{base}.conv_module");
            norm(&mut put, &format!("{c}.layer_norm"), d);
            put(format!("{c}.pointwise_conv1.weight"), &[2 * d, d, 1]);
            put(format!("{c}.depthwise_conv.weight"), &[d, 1, e.layer.depthwise_conv_kernel_size]);
            norm(&mut put, &format!("{c}.batch_norm"), d);
            put(format!("{c}.batch_norm.running_mean"), &[d]);
            put(format!("{c}.batch_norm.running_var"), &[d]);
            put(format!("{c}.batch_norm.num_batches_tracked"), &[]);
            put(format!("{c}.pointwise_conv2.weight"), &[d, d, 1]);
            norm(&mut put, &format!("{base}.final_layer_norm"), d);
        }
        // CTC heads.
        linear(&mut put, "source_unigram_decoder.proj", d, self.asr_vocab);
        linear(&mut put, "ctc_target_unigram_decoder.proj", d, self.st_vocab);
        // Transformer decoders (MT, unit) and the T2U encoder share fairseq's layer layout.
        let decoder = |put: &mut dyn FnMut(String, &[usize]), base: &str, layers: usize, dm: usize, ffn: usize, kdim: usize, vocab: usize| {
            put(format!("{base}.version"), &[1]);
            put(format!("{base}.embed_tokens.weight"), &[vocab, dm]);
            put(format!("{base}.output_projection.weight"), &[vocab, dm]);
            norm(put, &format!("{base}.layer_norm"), dm);
            for l in 0..layers {
                let b = format!("{base}.layers.{l}");
                for (att, k) in [("self_attn", dm), ("encoder_attn", kdim)] {
                    linear(put, &format!("{b}.{att}.q_proj"), dm, dm);
                    linear(put, &format!("{b}.{att}.k_proj"), k, dm);
                    linear(put, &format!("{b}.{att}.v_proj"), k, dm);
                    linear(put, &format!("{b}.{att}.out_proj"), dm, dm);
                    norm(put, &format!("{b}.{att}_layer_norm"), dm);
                }
                linear(put, &format!("{b}.fc1"), dm, ffn);
                linear(put, &format!("{b}.fc2"), ffn, dm);
                norm(put, &format!("{b}.final_layer_norm"), dm);
            }
        };
        let m = &self.mt;
        decoder(&mut put, "target_unigram_decoder", m.layers, m.embed_dim, m.ffn_embed_dim, d, m.vocab);
        let t = &self.t2u;
        decoder(&mut put, "decoder", t.decoder_layers, t.embed_dim, t.ffn_embed_dim, t.embed_dim, t.vocab);
        for l in 0..t.encoder_layers {
            let b = format!("synthesizer_encoder.layers.{l}");
            for q in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                linear(&mut put, &format!("{b}.self_attn.{q}"), t.embed_dim, t.embed_dim);
            }
            norm(&mut put, &format!("{b}.self_attn_layer_norm"), t.embed_dim);
            linear(&mut put, &format!("{b}.fc1"), t.embed_dim, t.ffn_embed_dim);
            linear(&mut put, &format!("{b}.fc2"), t.ffn_embed_dim, t.embed_dim);
            norm(&mut put, &format!("{b}.final_layer_norm"), t.embed_dim);
        }
        if t.encoder_layers > 0 {
            norm(&mut put, "synthesizer_encoder.layer_norm", t.embed_dim);
        }
        p
    }
}

/// The whole model, built strictly from a checkpoint: every entry the config implies must be
/// there with its shape (the same `CheckpointReport` as the vocoders), or nothing is built.
pub struct StreamSpeech {
    pub cfg: StreamSpeechConfig,
    pub encoder: crate::encoder::ChunkConformerEncoder,
    pub asr: crate::ctc::CtcHead,
    pub st: crate::ctc::CtcHead,
    pub mt: crate::mt_decoder::MtDecoder,
    pub t2u_encoder: crate::t2u::T2uEncoder,
    pub unit_decoder: crate::t2u::UnitDecoder,
    /// Where the weights live (inputs go there too).
    pub device: candle_core::Device,
}

/// Every stage's output for one utterance (whole-utterance inference with the model's chunk
/// size, as upstream's agent computes it).
pub struct Translation {
    pub encoder_out: candle_core::Tensor,
    pub asr_logits: candle_core::Tensor,
    pub st_logits: candle_core::Tensor,
    pub asr: crate::ctc::CtcHypothesis,
    pub st: crate::ctc::CtcHypothesis,
    pub mt_tokens: Vec<u32>,
    pub mt_states: candle_core::Tensor,
    pub t2u_states: candle_core::Tensor,
    pub unit_logits: candle_core::Tensor,
    /// Unit dictionary ids (the unit is id − 4).
    pub units: Vec<u32>,
    /// Wall-clock seconds of each stage (for the benchmark and the scheduler's budget).
    pub seconds: StageSeconds,
}

/// Seconds spent in each stage of one [`StreamSpeech::translate`] call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageSeconds {
    pub encoder: f64,
    /// Both CTC heads and their greedy decoding.
    pub ctc: f64,
    /// Greedy decoding and the final states.
    pub mt_decoder: f64,
    pub t2u_encoder: f64,
    /// The unit decoder and its CTC decoding.
    pub unit_decoder: f64,
}

/// Special ids of fairseq dictionaries: pad, unk; the text CTC blank is 0 (upstream's agent),
/// the unit dictionary's blank its last entry.
const PAD: u32 = 1;
const UNK: u32 = 3;

impl StreamSpeech {
    /// Reads only the `model` tensors of a fairseq checkpoint (f16/bf16/f32 → f32), checks them
    /// strictly and builds every module on `device`.
    pub fn load(path: &std::path::Path, mt: MtSettings, device: &candle_core::Device) -> Result<(Self, vocoder::report::CheckpointReport), TranslatorError> {
        Self::load_for_segment(path, mt, None, device)
    }

    /// [`load`](Self::load) with the chunk sizes upstream's agent sets for a source segment of
    /// `segment_ms` (`encoder::agent_chunk_sizes`); `None` keeps the checkpoint's.
    pub fn load_for_segment(
        path: &std::path::Path,
        mt: MtSettings,
        segment_ms: Option<usize>,
        device: &candle_core::Device,
    ) -> Result<(Self, vocoder::report::CheckpointReport), TranslatorError> {
        let opts = vocoder::checkpoint::LoadOptions { tensors_under: Some("model.".into()) };
        let mut ckpt = vocoder::checkpoint::load_with(path, &opts)?;
        if !ckpt.code_calls.is_empty() {
            return Err(TranslatorError::Data(format!(
                "{}: the file contains code that Python would run when loading it ({}); refusing a translator checkpoint like that",
                path.display(),
                ckpt.code_calls.join(", ")
            )));
        }
        // Another architecture is named as such before any field is looked for.
        match ckpt.scalars.get("cfg.model.arch").or_else(|| ckpt.scalars.get("args.arch")).map(|a| a.as_str()) {
            Some(Some(arch)) if arch.starts_with("streamspeech") => {}
            Some(arch) => {
                return Err(TranslatorError::Config(format!(
                    "{} is a fairseq `{}` checkpoint, not a StreamSpeech translator",
                    path.display(),
                    arch.unwrap_or("?")
                )));
            }
            None => {
                return Err(TranslatorError::Config(format!(
                    "{} has no fairseq model config (`cfg.model` or `args`): not a StreamSpeech translator checkpoint",
                    path.display()
                )));
            }
        }
        let mut cfg = StreamSpeechConfig::from_checkpoint(&ckpt, mt)?;
        if let Some(ms) = segment_ms {
            if ms < 40 {
                return Err(TranslatorError::Config(format!("a segment of {ms} ms is shorter than one encoder frame (40 ms)")));
            }
            let (attention, conv) = crate::encoder::agent_chunk_sizes(ms);
            cfg.encoder.attention_chunk = Some(attention);
            cfg.encoder.subsampler.chunk_size = Some(conv);
            cfg.encoder.layer.chunk_size = Some(conv);
        }
        let report = vocoder::report::CheckpointReport::compare(&cfg.expected_params(), &ckpt.shapes());
        if !report.is_clean() {
            return Err(vocoder::VocoderError::Mismatch(Box::new(report)).into());
        }
        let mut tensors = std::collections::HashMap::new();
        for (k, t) in std::mem::take(&mut ckpt.tensors) {
            if let Some(v) = t.values {
                if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                    return Err(TranslatorError::Data(format!("{}: `{k}` holds a non-finite value at {i}", path.display())));
                }
                tensors.insert(k, candle_core::Tensor::from_vec(v, t.shape, device).map_err(vocoder::VocoderError::from)?);
            }
        }
        // Each weight leaves the map as its module takes it, so a layer that keeps a transformed
        // copy (the transposed linear weights) frees the original at once: the load's peak stays
        // near one model, not two.
        let vb = candle_nn::VarBuilder::from_backend(Box::new(TakenOnce(std::sync::Mutex::new(tensors))), candle_core::DType::F32, device.clone());
        let build = || -> candle_core::Result<StreamSpeech> {
            let d = cfg.encoder.layer.embed_dim;
            Ok(StreamSpeech {
                encoder: crate::encoder::ChunkConformerEncoder::new(&cfg.encoder, vb.pp("encoder"))?,
                asr: crate::ctc::CtcHead::new(d, cfg.asr_vocab, vb.pp("source_unigram_decoder"))?,
                st: crate::ctc::CtcHead::new(d, cfg.st_vocab, vb.pp("ctc_target_unigram_decoder"))?,
                mt: crate::mt_decoder::MtDecoder::new(&cfg.mt, vb.pp("target_unigram_decoder"))?,
                t2u_encoder: crate::t2u::T2uEncoder::new(&cfg.t2u, vb.pp("synthesizer_encoder"))?,
                unit_decoder: crate::t2u::UnitDecoder::new(&cfg.t2u, vb.pp("decoder"))?,
                cfg: cfg.clone(),
                device: device.clone(),
            })
        };
        Ok((build().map_err(vocoder::VocoderError::from)?, report))
    }

    /// CMVN'd features `[1, frames, 80]` → every stage: CTC pieces of the source (ASR) and the
    /// target (ST), the MT decoder's greedy target pieces (at most `max_tokens`), and units.
    pub fn translate(&self, features: &candle_core::Tensor, max_tokens: usize) -> candle_core::Result<Translation> {
        self.translate_with_length(features, 1, max_tokens)
    }

    /// [`translate`](Self::translate) with the MT decoder's end-of-sentence barred before
    /// `min_tokens` pieces (fairseq's `--min-len`).
    pub fn translate_with_length(&self, features: &candle_core::Tensor, min_tokens: usize, max_tokens: usize) -> candle_core::Result<Translation> {
        use candle_core::IndexOp;
        let mut seconds = StageSeconds::default();
        let mut clock = std::time::Instant::now();
        let mut lap = |slot: &mut f64| {
            *slot = clock.elapsed().as_secs_f64();
            clock = std::time::Instant::now();
        };
        let encoder_out = self.encoder.forward(features)?.pop().expect("at least one layer");
        lap(&mut seconds.encoder);
        let asr_logits = self.asr.forward(&encoder_out)?.i(0)?;
        let st_logits = self.st.forward(&encoder_out)?.i(0)?;
        let asr = crate::ctc::greedy(&asr_logits, PAD, UNK, 0)?;
        let st = crate::ctc::greedy(&st_logits, PAD, UNK, 0)?;
        lap(&mut seconds.ctc);
        let cross = self.mt.cross_keys_values(&encoder_out)?;
        let run = self.mt.greedy_run(&[], &cross, min_tokens.max(1), max_tokens)?;
        let mut prev = vec![self.cfg.mt.eos];
        prev.extend(&run.tokens);
        // The greedy run already computed these states (up to float summation order).
        let mt_states = match self.mt.states_from_run(&prev, &run)? {
            Some(states) => states,
            None => self.mt.states_with(&prev, &cross)?,
        };
        let mt_tokens = run.tokens;
        lap(&mut seconds.mt_decoder);
        let t2u_states = self.t2u_encoder.forward(&mt_states)?;
        lap(&mut seconds.t2u_encoder);
        let unit_logits = self.unit_decoder.forward(&t2u_states)?.i(0)?;
        let blank = self.cfg.t2u.vocab as u32 - 1;
        let units = crate::ctc::greedy(&unit_logits, PAD, UNK, blank)?.tokens;
        lap(&mut seconds.unit_decoder);
        Ok(Translation { encoder_out, asr_logits, st_logits, asr, st, mt_tokens, mt_states, t2u_states, unit_logits, units, seconds })
    }
}

/// Checkpoint tensors that a model takes out as it builds (each name once).
struct TakenOnce(std::sync::Mutex<std::collections::HashMap<String, candle_core::Tensor>>);

impl TakenOnce {
    fn take(&self, name: &str) -> candle_core::Result<candle_core::Tensor> {
        let mut map = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        map.remove(name).ok_or_else(|| candle_core::Error::CannotFindTensor { path: name.to_string() }.bt())
    }
}

impl candle_nn::var_builder::SimpleBackend for TakenOnce {
    fn get(
        &self,
        s: candle_core::Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: candle_core::DType,
        dev: &candle_core::Device,
    ) -> candle_core::Result<candle_core::Tensor> {
        let t = self.take(name)?;
        if t.shape() != &s {
            return Err(candle_core::Error::UnexpectedShape { msg: format!("shape mismatch for {name}"), expected: s, got: t.shape().clone() }.bt());
        }
        t.to_device(dev)?.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, dtype: candle_core::DType, dev: &candle_core::Device) -> candle_core::Result<candle_core::Tensor> {
        self.take(name)?.to_device(dev)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).contains_key(name)
    }
}
