//! StreamSpeech's unit vocoders on the HiFi-GAN generator core:
//! - **CodeHiFiGAN** (fairseq / speech-resynthesis `CodeGenerator`): unit embedding `dict`,
//!   optional duration predictor `dur_predictor` (fairseq `VariancePredictor`), optional
//!   multi-speaker embedding `spkr`, then the generator (`conv_pre`, `ups`, `resblocks`,
//!   `conv_post`). 16 kHz, `code_hop_size` samples per unit.
//! - **UnitHiFiGAN+FiLM** (the thesis's later Modified vocoder): no duration predictor;
//!   `cond_proj` on concatenated L2-normalised speaker and emotion vectors, and per stage
//!   `film_layers.{i}.net` (Linear, or Linear→ReLU→Dropout→Linear) giving gamma, beta applied as
//!   `gamma · x + beta` right after each upsampling layer; no conditioning → identity.
//! Loading is strict, through the same `CheckpointReport` as the mel vocoders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, LayerNorm, Linear};
use serde::{Deserialize, Serialize};

use crate::arch::expected_params;
use crate::checkpoint::{self, Checkpoint};
use crate::config::VocoderConfig;
use crate::error::VocoderError;
use crate::hifigan::HifiGan;
use crate::model::{checkpoint_report_for, weights_for};
use crate::report::CheckpointReport;

fn default_lrelu_slope() -> f64 {
    0.1
}
fn default_final_lrelu_slope() -> f64 {
    0.01
}
fn default_num_speakers() -> usize {
    200
}
fn default_embedder_dim() -> usize {
    256
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DurPredictorParams {
    pub encoder_embed_dim: usize,
    pub var_pred_hidden_dim: usize,
    pub var_pred_kernel_size: usize,
    #[serde(default)]
    pub var_pred_dropout: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilmParams {
    pub speaker_dim: usize,
    pub emotion_dim: usize,
    pub proj_dim: usize,
    /// Hidden width of the MLP variant (`net.0` → ReLU → Dropout → `net.3`); None: one Linear.
    #[serde(default)]
    pub mlp_hidden: Option<usize>,
}

/// fairseq's unit-vocoder `config.json` fields (training fields are ignored), plus `film`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitVocoderConfig {
    pub resblock: String,
    pub upsample_rates: Vec<usize>,
    pub upsample_kernel_sizes: Vec<usize>,
    pub upsample_initial_channel: usize,
    pub resblock_kernel_sizes: Vec<usize>,
    pub resblock_dilation_sizes: Vec<Vec<usize>>,
    #[serde(default = "default_lrelu_slope")]
    pub lrelu_slope: f64,
    #[serde(default = "default_final_lrelu_slope")]
    pub final_lrelu_slope: f64,
    pub num_embeddings: usize,
    pub embedding_dim: usize,
    /// The generator's input channels (fairseq: 80 when absent).
    #[serde(default)]
    pub model_in_dim: Option<usize>,
    #[serde(default)]
    pub multispkr: bool,
    #[serde(default = "default_num_speakers")]
    pub num_speakers: usize,
    /// Present (any value): the speaker input is a vector (e.g. an x-vector) through
    /// `spkr` = Linear(`embedder_dim` → `embedding_dim`), as fairseq's `embedder_params` form.
    #[serde(default)]
    pub embedder_params: Option<serde_json::Value>,
    #[serde(default = "default_embedder_dim")]
    pub embedder_dim: usize,
    #[serde(default)]
    pub dur_predictor_params: Option<DurPredictorParams>,
    #[serde(default)]
    pub film: Option<FilmParams>,
    pub sampling_rate: u32,
    pub code_hop_size: usize,
}

impl UnitVocoderConfig {
    pub fn from_json(text: &str) -> Result<Self, VocoderError> {
        let c: UnitVocoderConfig = serde_json::from_str(text).map_err(|e| VocoderError::Config(format!("unit vocoder config JSON: {e}")))?;
        c.generator_config()?;
        let l = &crate::config::LIMITS;
        let mut sizes = vec![
            ("num_embeddings", c.num_embeddings, 1 << 16),
            ("embedding_dim", c.embedding_dim, l.max_channels),
            ("num_speakers", c.num_speakers, 1 << 16),
            ("embedder_dim", c.embedder_dim, l.max_channels),
        ];
        if let Some(d) = &c.dur_predictor_params {
            sizes.push(("dur_predictor_params.var_pred_hidden_dim", d.var_pred_hidden_dim, l.max_channels));
            sizes.push(("dur_predictor_params.var_pred_kernel_size", d.var_pred_kernel_size, l.max_kernel));
        }
        if let Some(f) = &c.film {
            sizes.push(("film.speaker_dim", f.speaker_dim, l.max_channels));
            sizes.push(("film.emotion_dim", f.emotion_dim, l.max_channels));
            sizes.push(("film.proj_dim", f.proj_dim, l.max_channels));
            sizes.push(("film.mlp_hidden", f.mlp_hidden.unwrap_or(1), l.max_channels));
        }
        for (name, v, hi) in sizes {
            if v == 0 && name != "film.emotion_dim" || v > hi {
                return Err(VocoderError::Config(format!("{name} = {v} is outside 1..={hi}")));
            }
        }
        let in_dim = c.in_dim();
        let feeds = c.embedding_dim * if c.has_speaker() { 2 } else { 1 };
        if feeds != in_dim {
            return Err(VocoderError::Config(format!(
                "model_in_dim {in_dim} does not match the features fed to the generator ({} embedding{})",
                feeds,
                if c.has_speaker() { " + speaker embedding" } else { "" }
            )));
        }
        if let Some(d) = &c.dur_predictor_params
            && d.encoder_embed_dim != c.embedding_dim
        {
            return Err(VocoderError::Config(format!(
                "dur_predictor_params.encoder_embed_dim {} != embedding_dim {}",
                d.encoder_embed_dim, c.embedding_dim
            )));
        }
        Ok(c)
    }

    /// Speaker features are appended (an id through an Embedding, or a vector through a Linear).
    pub fn has_speaker(&self) -> bool {
        self.multispkr || self.embedder_params.is_some()
    }

    /// The speaker input is a vector (Linear `spkr`), not an id.
    pub fn speaker_is_vector(&self) -> bool {
        self.embedder_params.is_some()
    }

    pub fn in_dim(&self) -> usize {
        self.model_in_dim.unwrap_or(80)
    }

    pub fn family_name(&self) -> &'static str {
        if self.film.is_some() { "unit-hifigan-film" } else { "codehifigan" }
    }

    /// The HiFi-GAN generator part as a [`VocoderConfig`] (its "mel" is the unit features and
    /// its hop `code_hop_size`, which the upsampling rates must multiply to).
    pub fn generator_config(&self) -> Result<VocoderConfig, VocoderError> {
        let c = VocoderConfig {
            resblock: self.resblock.clone(),
            upsample_rates: self.upsample_rates.clone(),
            upsample_kernel_sizes: self.upsample_kernel_sizes.clone(),
            upsample_initial_channel: self.upsample_initial_channel,
            resblock_kernel_sizes: self.resblock_kernel_sizes.clone(),
            resblock_dilation_sizes: self.resblock_dilation_sizes.clone(),
            grc_kernel_sizes: vec![],
            lrelu_slope: self.lrelu_slope,
            final_lrelu_slope: self.final_lrelu_slope,
            grc_final_lrelu_slope: None,
            causal: false,
            sampling_rate: self.sampling_rate,
            n_fft: self.code_hop_size.saturating_mul(4),
            hop_size: self.code_hop_size,
            win_size: self.code_hop_size.saturating_mul(4),
            num_mels: self.in_dim(),
            fmin: 0.0,
            fmax: None,
        };
        if c.resblock == "grc" {
            return Err(VocoderError::Config("unit vocoders use HiFi-GAN resblocks (\"1\" or \"2\")".into()));
        }
        c.validate()?;
        Ok(c)
    }
}

/// Every parameter the unit vocoder built from `cfg` has.
pub fn expected_unit_params(cfg: &UnitVocoderConfig) -> Result<BTreeMap<String, Vec<usize>>, VocoderError> {
    let mut p = expected_params(&cfg.generator_config()?)?;
    p.insert("dict.weight".into(), vec![cfg.num_embeddings, cfg.embedding_dim]);
    if cfg.speaker_is_vector() {
        p.insert("spkr.weight".into(), vec![cfg.embedding_dim, cfg.embedder_dim]);
        p.insert("spkr.bias".into(), vec![cfg.embedding_dim]);
    } else if cfg.multispkr {
        p.insert("spkr.weight".into(), vec![cfg.num_speakers, cfg.embedding_dim]);
    }
    if let Some(d) = &cfg.dur_predictor_params {
        let (e, h, k) = (d.encoder_embed_dim, d.var_pred_hidden_dim, d.var_pred_kernel_size);
        p.insert("dur_predictor.conv1.0.weight".into(), vec![h, e, k]);
        p.insert("dur_predictor.conv1.0.bias".into(), vec![h]);
        p.insert("dur_predictor.conv2.0.weight".into(), vec![h, h, k]);
        p.insert("dur_predictor.conv2.0.bias".into(), vec![h]);
        for ln in ["ln1", "ln2"] {
            p.insert(format!("dur_predictor.{ln}.weight"), vec![h]);
            p.insert(format!("dur_predictor.{ln}.bias"), vec![h]);
        }
        p.insert("dur_predictor.proj.weight".into(), vec![1, h]);
        p.insert("dur_predictor.proj.bias".into(), vec![1]);
    }
    if let Some(f) = &cfg.film {
        p.insert("cond_proj.weight".into(), vec![f.proj_dim, f.speaker_dim + f.emotion_dim]);
        p.insert("cond_proj.bias".into(), vec![f.proj_dim]);
        for i in 0..cfg.upsample_rates.len() {
            let c2 = 2 * (cfg.upsample_initial_channel >> (i + 1));
            match f.mlp_hidden {
                None => {
                    p.insert(format!("film_layers.{i}.net.weight"), vec![c2, f.proj_dim]);
                    p.insert(format!("film_layers.{i}.net.bias"), vec![c2]);
                }
                Some(hdim) => {
                    p.insert(format!("film_layers.{i}.net.0.weight"), vec![hdim, f.proj_dim]);
                    p.insert(format!("film_layers.{i}.net.0.bias"), vec![hdim]);
                    p.insert(format!("film_layers.{i}.net.3.weight"), vec![c2, hdim]);
                    p.insert(format!("film_layers.{i}.net.3.bias"), vec![c2]);
                }
            }
        }
    }
    Ok(p)
}

struct DurPredictor {
    conv1: Conv1d,
    ln1: LayerNorm,
    conv2: Conv1d,
    ln2: LayerNorm,
    proj: Linear,
}

impl DurPredictor {
    /// Embeddings [1, E, T] → durations per unit: clamp(round(exp(log_dur) − 1), min 1), rounding
    /// half to even as `torch.round` does.
    fn durations(&self, x: &Tensor) -> candle_core::Result<Vec<u32>> {
        let h = self.conv1.forward(x)?.relu()?.transpose(1, 2)?;
        let h = self.ln1.forward(&h)?.transpose(1, 2)?;
        let h = self.conv2.forward(&h)?.relu()?.transpose(1, 2)?;
        let h = self.ln2.forward(&h)?;
        let log_dur = self.proj.forward(&h)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(log_dur.iter().map(|l| ((l.exp() - 1.0).round_ties_even()).max(1.0) as u32).collect())
    }
}

struct Film {
    cond_proj: Linear,
    /// Per stage: one Linear, or (Linear, Linear) around a ReLU (dropout is identity at inference).
    nets: Vec<(Linear, Option<Linear>)>,
}

/// A unit vocoder ready to run: unit ids in, audio out.
pub struct UnitVocoder {
    config: UnitVocoderConfig,
    generator: HifiGan,
    dict: Tensor,
    spkr: Option<Speaker>,
    dur: Option<DurPredictor>,
    film: Option<Film>,
    device: Device,
    param_count: usize,
}

enum Speaker {
    /// Multi-speaker id table.
    Table(Tensor),
    /// A speaker vector's projection.
    Linear(Linear),
}

/// Speaker and emotion vectors: FiLM conditioning (L2-normalised inside), or the speaker vector
/// of a CodeHiFiGAN with a Linear `spkr` (then `emotion` is empty).
#[derive(Debug, Clone)]
pub struct Conditioning {
    pub speaker: Vec<f32>,
    pub emotion: Vec<f32>,
}

impl Conditioning {
    /// Reads the vectors: a safetensors file with `speaker` and `emotion` tensors, or a `.npy`
    /// array (float32 or float64) holding `speaker_dim + emotion_dim` values, speaker first (the
    /// concatenation the model takes; each part is normalised separately).
    pub fn load(path: &Path, speaker_dim: usize, emotion_dim: usize) -> Result<Self, VocoderError> {
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) {
            let bytes = crate::files::read_limited(path, 16 << 20, "conditioning vector")?;
            let values = read_npy_f32(&bytes).map_err(|e| VocoderError::format(path, e))?;
            if values.len() != speaker_dim + emotion_dim {
                return Err(VocoderError::format(
                    path,
                    format!("{} values; the model takes speaker {speaker_dim} + emotion {emotion_dim} = {}", values.len(), speaker_dim + emotion_dim),
                ));
            }
            return Ok(Self { speaker: values[..speaker_dim].to_vec(), emotion: values[speaker_dim..].to_vec() });
        }
        let c = checkpoint::load(path)?;
        let get = |k: &str| {
            c.tensors.get(k).and_then(|t| t.values.clone()).ok_or_else(|| VocoderError::format(path, format!("no float tensor `{k}` (need `speaker` and `emotion`)")))
        };
        let emotion = if emotion_dim == 0 { Vec::new() } else { get("emotion")? };
        Ok(Self { speaker: get("speaker")?, emotion })
    }
}

/// A `.npy` array of float32 or float64 (any shape, flattened) as f32. Bounded: the header
/// length, the shape's product and the data size are checked against the bytes before npyz
/// allocates anything.
pub fn read_npy_f32(bytes: &[u8]) -> Result<Vec<f32>, String> {
    let header_end = match (bytes.get(..6), bytes.get(6)) {
        (Some(b"\x93NUMPY"), Some(1)) => bytes.get(8..10).map(|l| 10 + u16::from_le_bytes([l[0], l[1]]) as usize),
        (Some(b"\x93NUMPY"), Some(2 | 3)) => bytes.get(8..12).map(|l| 12 + u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize),
        _ => None,
    };
    let header_end = header_end.filter(|e| *e <= bytes.len()).ok_or("not a .npy array (bad magic, version or header length)")?;
    let npy = npyz::NpyFile::new(bytes).map_err(|e| format!("not a .npy array: {e}"))?;
    let item = match npy.dtype() {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && matches!(t.size_field(), 4 | 8) => t.size_field() as u64,
        _ => return Err("need a float32 or float64 array".into()),
    };
    let n = npy.shape().iter().try_fold(1u64, |a, s| a.checked_mul(*s)).ok_or("the shape overflows")?;
    if n.checked_mul(item).is_none_or(|b| b > (bytes.len() - header_end) as u64) {
        return Err(format!("the header claims {n} values; the file holds fewer"));
    }
    Ok(if item == 8 {
        npy.into_vec::<f64>().map_err(|e| e.to_string())?.into_iter().map(|v| v as f32).collect()
    } else {
        npy.into_vec::<f32>().map_err(|e| e.to_string())?
    })
}

/// What synthesis produced.
pub struct UnitOutput {
    pub audio: Vec<f32>,
    /// Frames per unit when the duration predictor ran.
    pub durations: Option<Vec<u32>>,
    /// The unit ids actually used (negative ids removed).
    pub units: Vec<u32>,
}

fn linear(w: &crate::weights::Weights, name: &str, out: usize, inp: usize) -> Result<Linear, VocoderError> {
    Ok(Linear::new(w.get(&format!("{name}.weight"), &[out, inp])?, Some(w.get(&format!("{name}.bias"), &[out])?)))
}

impl UnitVocoder {
    pub fn config(&self) -> &UnitVocoderConfig {
        &self.config
    }
    pub fn param_count(&self) -> usize {
        self.param_count
    }
    pub fn has_duration_predictor(&self) -> bool {
        self.dur.is_some()
    }

    fn new(cfg: UnitVocoderConfig, ckpt: &mut Checkpoint, expected: &BTreeMap<String, Vec<usize>>, device: &Device) -> Result<Self, VocoderError> {
        let w = weights_for(ckpt, expected, device)?;
        let generator = HifiGan::new(&cfg.generator_config()?, &w)?;
        let dict = w.get("dict.weight", &[cfg.num_embeddings, cfg.embedding_dim])?;
        let spkr = if cfg.speaker_is_vector() {
            Some(Speaker::Linear(linear(&w, "spkr", cfg.embedding_dim, cfg.embedder_dim)?))
        } else if cfg.multispkr {
            Some(Speaker::Table(w.get("spkr.weight", &[cfg.num_speakers, cfg.embedding_dim])?))
        } else {
            None
        };
        let dur = match &cfg.dur_predictor_params {
            None => None,
            Some(d) => {
                let (e, h, k) = (d.encoder_embed_dim, d.var_pred_hidden_dim, d.var_pred_kernel_size);
                let conv = |name: &str, cin: usize, pad: usize| -> Result<Conv1d, VocoderError> {
                    Ok(Conv1d::new(
                        w.get(&format!("dur_predictor.{name}.0.weight"), &[h, cin, k])?,
                        Some(w.get(&format!("dur_predictor.{name}.0.bias"), &[h])?),
                        Conv1dConfig { padding: pad, stride: 1, dilation: 1, groups: 1, cudnn_fwd_algo: None },
                    ))
                };
                let ln = |name: &str| -> Result<LayerNorm, VocoderError> {
                    Ok(LayerNorm::new(w.get(&format!("dur_predictor.{name}.weight"), &[h])?, w.get(&format!("dur_predictor.{name}.bias"), &[h])?, 1e-5))
                };
                // fairseq's VariancePredictor pads conv1 by (k−1)/2 and conv2 by 1.
                Some(DurPredictor { conv1: conv("conv1", e, (k - 1) / 2)?, ln1: ln("ln1")?, conv2: conv("conv2", h, 1)?, ln2: ln("ln2")?, proj: linear(&w, "dur_predictor.proj", 1, h)? })
            }
        };
        let film = match &cfg.film {
            None => None,
            Some(f) => {
                let cond_proj = linear(&w, "cond_proj", f.proj_dim, f.speaker_dim + f.emotion_dim)?;
                let nets = (0..cfg.upsample_rates.len())
                    .map(|i| {
                        let c2 = 2 * (cfg.upsample_initial_channel >> (i + 1));
                        Ok(match f.mlp_hidden {
                            None => (linear(&w, &format!("film_layers.{i}.net"), c2, f.proj_dim)?, None),
                            Some(hd) => (
                                linear(&w, &format!("film_layers.{i}.net.0"), hd, f.proj_dim)?,
                                Some(linear(&w, &format!("film_layers.{i}.net.3"), c2, hd)?),
                            ),
                        })
                    })
                    .collect::<Result<_, VocoderError>>()?;
                Some(Film { cond_proj, nets })
            }
        };
        let param_count = expected.values().map(|s| s.iter().product::<usize>()).sum();
        Ok(Self { config: cfg, generator, dict, spkr, dur, film, device: device.clone(), param_count })
    }

    /// Per-stage (gamma, beta) [1, C, 1] from the conditioning vectors.
    fn film_params(&self, cond: &Conditioning) -> Result<Vec<(Tensor, Tensor)>, VocoderError> {
        let (film, f) = match (&self.film, &self.config.film) {
            (Some(film), Some(f)) => (film, f),
            _ => return Err(VocoderError::Config("this unit vocoder has no FiLM layers; conditioning is not used".into())),
        };
        if cond.speaker.len() != f.speaker_dim || cond.emotion.len() != f.emotion_dim {
            return Err(VocoderError::Config(format!(
                "conditioning has speaker {} / emotion {} values; the model takes {} / {}",
                cond.speaker.len(),
                cond.emotion.len(),
                f.speaker_dim,
                f.emotion_dim
            )));
        }
        let norm = |v: &[f32]| -> Vec<f32> {
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            v.iter().map(|x| x / n).collect()
        };
        let mut c = norm(&cond.speaker);
        c.extend(norm(&cond.emotion));
        let c = Tensor::from_vec(c, (1, f.speaker_dim + f.emotion_dim), &self.device)?;
        let h = film.cond_proj.forward(&c)?;
        let mut out = Vec::new();
        for (a, b) in &film.nets {
            let g = match b {
                None => a.forward(&h)?,
                Some(b) => b.forward(&a.forward(&h)?.relu()?)?,
            };
            let ch = g.dim(1)? / 2;
            out.push((g.narrow(1, 0, ch)?.unsqueeze(2)?, g.narrow(1, ch, ch)?.unsqueeze(2)?));
        }
        Ok(out)
    }

    /// The generator's input features for `units` (ids already filtered): embeddings, repeated
    /// by predicted durations, with the speaker embedding appended.
    fn features(&self, units: &[u32], speaker: SpeakerIn<'_>, dur_prediction: bool) -> Result<(Tensor, Option<Vec<u32>>), VocoderError> {
        let mut x = self.embed(units)?;
        let mut durations = None;
        if dur_prediction {
            let d = self.predictor()?.durations(&x)?;
            x = self.expand(&x, &d)?;
            durations = Some(d);
        }
        let x = self.with_speaker(x, speaker)?;
        Ok((x, durations))
    }

    /// Unit embeddings [1, E, T].
    fn embed(&self, units: &[u32]) -> Result<Tensor, VocoderError> {
        let ids = Tensor::from_vec(units.to_vec(), units.len(), &self.device)?;
        Ok(self.dict.index_select(&ids, 0)?.t()?.unsqueeze(0)?.contiguous()?)
    }

    /// `repeat_interleave` along time: column i repeated `durations[i]` times.
    fn expand(&self, x: &Tensor, durations: &[u32]) -> Result<Tensor, VocoderError> {
        let idx: Vec<u32> = durations.iter().enumerate().flat_map(|(i, &n)| std::iter::repeat_n(i as u32, n as usize)).collect();
        Ok(x.index_select(&Tensor::from_vec(idx.clone(), idx.len(), &self.device)?, 2)?)
    }

    fn predictor(&self) -> Result<&DurPredictor, VocoderError> {
        self.dur.as_ref().ok_or_else(|| VocoderError::Config("this unit vocoder has no duration predictor (--dur-prediction)".into()))
    }

    /// Valid ids: negative ids are dropped (as the reference vocoder does); ids past the table
    /// are an error.
    pub fn clean_units(&self, units: &[i64]) -> Result<Vec<u32>, VocoderError> {
        let mut out = Vec::with_capacity(units.len());
        for &u in units {
            if u < 0 {
                continue;
            }
            if u as usize >= self.config.num_embeddings {
                return Err(VocoderError::Config(format!("unit id {u} out of range (the model has {} units)", self.config.num_embeddings)));
            }
            out.push(u as u32);
        }
        Ok(out)
    }

    /// The duration predictor's frames per unit for a whole unit sequence (what
    /// [`synthesize`](Self::synthesize) with duration prediction expands by), without running the
    /// generator: StreamSpeech's agent sizes each emission from the durations of the newest units.
    pub fn predict_durations(&self, units: &[i64]) -> Result<Vec<u32>, VocoderError> {
        let units = self.clean_units(units)?;
        if units.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.predictor()?.durations(&self.embed(&units)?)?)
    }

    /// Whole-sequence synthesis.
    pub fn synthesize(&self, units: &[i64], speaker: Option<u32>, dur_prediction: bool, cond: Option<&Conditioning>) -> Result<UnitOutput, VocoderError> {
        let units = self.clean_units(units)?;
        if units.is_empty() {
            return Ok(UnitOutput { audio: Vec::new(), durations: None, units });
        }
        let (x, durations) = self.features(&units, self.speaker_in(speaker, cond), dur_prediction)?;
        let film = self.film_for(cond)?;
        let hook = film.as_ref().map(|p| {
            move |i: usize, x: &Tensor| -> candle_core::Result<Tensor> { x.broadcast_mul(&p[i].0)?.broadcast_add(&p[i].1) }
        });
        let y = self.generator.forward_with(&x, hook.as_ref().map(|h| h as &crate::hifigan::StageHook<'_>))?;
        Ok(UnitOutput { audio: y.flatten_all()?.to_vec1::<f32>()?, durations, units })
    }

    /// Streaming synthesis: a fresh state. Units go in chunk by chunk ([`UnitStream::push`]);
    /// the output equals [`synthesize`](Self::synthesize) over all units.
    pub fn stream(&self, speaker: Option<u32>, dur_prediction: bool, cond: Option<&Conditioning>) -> Result<UnitStream, VocoderError> {
        if dur_prediction && self.dur.is_none() {
            return Err(VocoderError::Config("this unit vocoder has no duration predictor".into()));
        }
        let like = Tensor::zeros(1, DType::F32, &self.device)?;
        Ok(UnitStream {
            state: self.generator.stream(&like)?,
            film: self.film_for(cond)?,
            speaker,
            speaker_vector: if self.config.speaker_is_vector() { cond.map(|c| c.speaker.clone()) } else { None },
            dur_prediction,
            pending: Vec::new(),
            done: 0,
            recent: Vec::new(),
            frames: 0,
            emitted: 0,
        })
    }

    /// Units whose audio the end of a stream depends on: the generator's lag and as much left
    /// context again (its convolutions are about symmetric), with the duration predictor's
    /// context, each unit lasting at least one frame. `vocoder/tests/units.rs` checks it.
    pub fn tail_context_units(&self) -> usize {
        let hop = self.config.code_hop_size.max(1);
        2 * self.stream_lag().div_ceil(hop) + 2 * self.lookahead_units(true) + 8
    }

    /// Ends a stream: its remaining units, then the audio the generator still owes (its last
    /// [`stream_lag`](Self::stream_lag) samples, which need the sequence's end), so that
    /// everything streamed equals [`synthesize`](Self::synthesize) over all units. The owed
    /// audio comes from a whole-sequence run over only the last units (cost independent of the
    /// stream's length).
    pub fn stream_finish(&self, st: &mut UnitStream, out: &mut Vec<f32>) -> Result<(), VocoderError> {
        self.stream_push(st, &[], true, out)?;
        let hop = self.config.code_hop_size;
        let owed = (st.frames * hop).saturating_sub(st.emitted);
        if owed == 0 || st.recent.is_empty() {
            return Ok(());
        }
        let mut x = self.embed(&st.recent)?;
        if st.dur_prediction {
            let d = self.predictor()?.durations(&x)?;
            x = self.expand(&x, &d)?;
        }
        let x = self.with_speaker(x, SpeakerIn { id: st.speaker, vector: st.speaker_vector.as_deref() })?;
        let hook = st.film.as_ref().map(|p| {
            move |i: usize, x: &Tensor| -> candle_core::Result<Tensor> { x.broadcast_mul(&p[i].0)?.broadcast_add(&p[i].1) }
        });
        let y = self.generator.forward_with(&x, hook.as_ref().map(|h| h as &crate::hifigan::StageHook<'_>))?.flatten_all()?.to_vec1::<f32>()?;
        out.extend_from_slice(&y[y.len().saturating_sub(owed)..]);
        st.emitted += owed;
        st.recent.clear();
        Ok(())
    }

    /// Units of lookahead the stream needs before it can emit a unit's features: the duration
    /// predictor's right reach (two convs), or 0 without duration prediction. The generator's own
    /// lookahead is in samples: [`stream_lag`](Self::stream_lag).
    pub fn lookahead_units(&self, dur_prediction: bool) -> usize {
        match (&self.config.dur_predictor_params, dur_prediction) {
            (Some(d), true) => (d.var_pred_kernel_size - 1) / 2 + 1,
            _ => 0,
        }
    }

    /// Output samples the generator still owes for the features it has received.
    pub fn stream_lag(&self) -> usize {
        self.generator.stream_lag()
    }

    /// Feeds unit ids (negative ids dropped) and appends the audio that became computable.
    /// `end`: no more units follow (the duration predictor's right edge is then zero padding).
    pub fn stream_push(&self, st: &mut UnitStream, units: &[i64], end: bool, out: &mut Vec<f32>) -> Result<(), VocoderError> {
        let clean = self.clean_units(units)?;
        st.recent.extend_from_slice(&clean);
        let keep = self.tail_context_units();
        if st.recent.len() > 2 * keep {
            st.recent.drain(..st.recent.len() - keep);
        }
        st.pending.extend(clean);
        let la = self.lookahead_units(st.dur_prediction);
        // Units [done, ready) have their durations fixed by now.
        let ready = if end { st.pending.len() } else { st.pending.len().saturating_sub(la) };
        if ready <= st.done {
            return Ok(());
        }
        let mut x = self.embed(&st.pending[st.done..ready])?;
        if st.dur_prediction {
            // The predictor over the known units with enough context on both sides; only the
            // durations of units [done, ready) are used.
            let from = st.done.saturating_sub(la);
            let d = self.predictor()?.durations(&self.embed(&st.pending[from..])?)?;
            x = self.expand(&x, &d[st.done - from..ready - from])?;
        }
        let x = self.with_speaker(x, SpeakerIn { id: st.speaker, vector: st.speaker_vector.as_deref() })?;
        let hook = st.film.as_ref().map(|p| {
            move |i: usize, x: &Tensor| -> candle_core::Result<Tensor> { x.broadcast_mul(&p[i].0)?.broadcast_add(&p[i].1) }
        });
        st.frames += x.dim(2)?;
        if let Some(y) = self.generator.stream_step_with(&mut st.state, &x, hook.as_ref().map(|h| h as &crate::hifigan::StageHook<'_>))? {
            let y = y.flatten_all()?.to_vec1::<f32>()?;
            st.emitted += y.len();
            out.extend(y);
        }
        st.done = ready;
        // Keep only the context the predictor still needs.
        let keep_from = st.done.saturating_sub(la);
        if keep_from > 0 {
            st.pending.drain(..keep_from);
            st.done -= keep_from;
        }
        Ok(())
    }

    fn with_speaker(&self, x: Tensor, speaker: SpeakerIn<'_>) -> Result<Tensor, VocoderError> {
        let e = match &self.spkr {
            None => return Ok(x),
            Some(Speaker::Table(table)) => {
                let s = speaker.id.unwrap_or(0) as usize;
                if s >= self.config.num_speakers {
                    return Err(VocoderError::Config(format!("speaker {s} out of range (the model has {})", self.config.num_speakers)));
                }
                table.i(s)?
            }
            Some(Speaker::Linear(l)) => {
                let v = speaker.vector.ok_or_else(|| {
                    VocoderError::Config(format!("this unit vocoder takes a speaker vector ({} values): give it with --cond", self.config.embedder_dim))
                })?;
                if v.len() != self.config.embedder_dim {
                    return Err(VocoderError::Config(format!("speaker vector has {} values; the model takes {}", v.len(), self.config.embedder_dim)));
                }
                l.forward(&Tensor::from_slice(v, (1, v.len()), &self.device)?)?.flatten_all()?
            }
        };
        let t = x.dim(2)?;
        let e = e.reshape((1, self.config.embedding_dim, 1))?.repeat((1, 1, t))?;
        Ok(Tensor::cat(&[&x, &e], 1)?)
    }

    /// The speaker input for this model from the caller's id and conditioning file.
    fn speaker_in<'a>(&self, id: Option<u32>, cond: Option<&'a Conditioning>) -> SpeakerIn<'a> {
        SpeakerIn { id, vector: if self.config.speaker_is_vector() { cond.map(|c| c.speaker.as_slice()) } else { None } }
    }

    /// FiLM parameters when the model has FiLM layers; conditioning on a model that uses it for
    /// nothing is an error, so a wrong file never goes unnoticed.
    fn film_for(&self, cond: Option<&Conditioning>) -> Result<Option<Vec<(Tensor, Tensor)>>, VocoderError> {
        match cond {
            Some(c) if self.film.is_some() => Ok(Some(self.film_params(c)?)),
            Some(_) if self.config.speaker_is_vector() => Ok(None),
            Some(c) => self.film_params(c).map(Some),
            None => Ok(None),
        }
    }
}

/// The speaker input: an id (Embedding `spkr`) or a vector (Linear `spkr`).
#[derive(Clone, Copy)]
struct SpeakerIn<'a> {
    id: Option<u32>,
    vector: Option<&'a [f32]>,
}

/// Explicit streaming state of a [`UnitVocoder`].
pub struct UnitStream {
    state: crate::hifigan::HifiGanStream,
    film: Option<Vec<(Tensor, Tensor)>>,
    speaker: Option<u32>,
    speaker_vector: Option<Vec<f32>>,
    dur_prediction: bool,
    /// Unit ids kept for the duration predictor's context; `pending[done..]` not yet emitted.
    pending: Vec<u32>,
    done: usize,
    /// The last units (what the end's audio depends on: [`UnitVocoder::stream_finish`]).
    recent: Vec<u32>,
    /// Feature frames fed to the generator, and samples it emitted.
    frames: usize,
    emitted: usize,
}

pub struct LoadedUnitVocoder {
    pub vocoder: UnitVocoder,
    pub report: CheckpointReport,
    /// What was read; the model's tensor values were moved into the model.
    pub checkpoint: Checkpoint,
    pub config_path: Option<PathBuf>,
}

/// The unit config: `explicit`, else the checkpoint's embedded config, else `config.json`
/// beside it.
pub fn resolve_unit_config(ckpt: &Checkpoint, explicit: Option<&Path>) -> Result<(UnitVocoderConfig, Option<PathBuf>), VocoderError> {
    let read = |p: &Path| crate::files::read_text(p, crate::files::MAX_CONFIG_BYTES, "config");
    if let Some(p) = explicit {
        return Ok((UnitVocoderConfig::from_json(&read(p)?)?, Some(p.into())));
    }
    if let Some(text) = &ckpt.embedded_config {
        return Ok((UnitVocoderConfig::from_json(text)?, None));
    }
    let sidecar = ckpt.path.with_file_name("config.json");
    if sidecar.is_file() {
        return Ok((UnitVocoderConfig::from_json(&read(&sidecar)?)?, Some(sidecar)));
    }
    Err(VocoderError::Config(format!("{} has no config: give one with --config or put config.json beside it", ckpt.path.display())))
}

/// Is this config text a unit vocoder's (it names `num_embeddings`)?
pub fn is_unit_config(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).ok().is_some_and(|v| v.get("num_embeddings").is_some())
}

/// Loads a unit vocoder strictly (the same report as the mel vocoders).
pub fn load_unit_vocoder(path: &Path, config: Option<&Path>, device: &Device) -> Result<LoadedUnitVocoder, VocoderError> {
    let ckpt = checkpoint::load(path)?;
    let (cfg, config_path) = resolve_unit_config(&ckpt, config)?;
    let expected = expected_unit_params(&cfg)?;
    let report = checkpoint_report_for(&ckpt, &expected)?;
    if !report.is_clean() {
        return Err(VocoderError::Mismatch(Box::new(report)));
    }
    let mut ckpt = ckpt;
    let vocoder = UnitVocoder::new(cfg, &mut ckpt, &expected, device)?;
    Ok(LoadedUnitVocoder { vocoder, report, checkpoint: ckpt, config_path })
}

/// Noise check for unit-vocoder output (there is no input mel to compare with): the output's
/// own mel must not be white-noise-like. Returns the reasons it fails, empty when it passes.
pub fn output_health(audio: &[f32], sampling_rate: u32) -> Vec<String> {
    let mut reasons = Vec::new();
    if audio.iter().any(|x| !x.is_finite()) {
        reasons.push("output contains NaN or Inf samples".into());
        return reasons;
    }
    let rms = (audio.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / audio.len().max(1) as f64).sqrt();
    if rms < crate::health::MIN_RMS {
        reasons.push(format!("output is (near) silent: rms {rms:.2e}"));
        return reasons;
    }
    let cfg = VocoderConfig::from_json(&format!(
        r#"{{"resblock":"1","upsample_rates":[4,4,4,4,2,2],"upsample_kernel_sizes":[8,8,8,8,4,4],"upsample_initial_channel":64,
        "resblock_kernel_sizes":[3],"resblock_dilation_sizes":[[1]],"num_mels":80,"n_fft":1024,"hop_size":1024,"win_size":1024,
        "sampling_rate":{sampling_rate},"fmin":0,"fmax":null}}"#
    ))
    .expect("built-in analysis config");
    let front = crate::mel::MelFrontEnd::new(&cfg);
    let (mel, frames) = front.mel(audio);
    let v = crate::health::judge(&front, &mel, frames, audio);
    if v.metrics.spectral_flatness > crate::health::MAX_SPECTRAL_FLATNESS {
        reasons.push(format!("white-noise-like spectrum: spectral flatness {:.2} > {}", v.metrics.spectral_flatness, crate::health::MAX_SPECTRAL_FLATNESS));
    }
    reasons
}
