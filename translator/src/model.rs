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
