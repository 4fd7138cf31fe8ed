//! The one loading path every model goes through: checkpoint → config → strict report →
//! tensor checks → model. A model either has every weight it needs, exactly, or is not built.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::Serialize;

use crate::arch::{InferredArch, expected_params, infer};
use crate::checkpoint::{self, Checkpoint, WeightNorm};
use crate::config::{Family, VocoderConfig};
use crate::error::VocoderError;
use crate::grc::GrcMrf;
use crate::health::{self, HealthVerdict};
use crate::hifigan::HifiGan;
use crate::layers::Kernels;
use crate::report::CheckpointReport;
use crate::weights::Weights;

enum Generator {
    HifiGan(HifiGan),
    Grc(GrcMrf),
}

/// A vocoder ready to run: mel in, audio out.
pub struct Vocoder {
    config: VocoderConfig,
    family: Family,
    generator: Generator,
    device: Device,
    param_count: usize,
}

impl Vocoder {
    /// Builds the model from a weight store that holds exactly its parameters.
    pub fn new(config: VocoderConfig, weights: &Weights, device: &Device) -> Result<Self, VocoderError> {
        let family = config.family()?;
        let param_count = expected_params(&config)?.values().map(|s| s.iter().product::<usize>()).sum();
        let generator = match family {
            Family::HifiGanV1 | Family::HifiGanV3 => Generator::HifiGan(HifiGan::new(&config, weights)?),
            Family::GrcMrf => Generator::Grc(GrcMrf::new(&config, weights)?),
        };
        Ok(Self { config, family, generator, device: device.clone(), param_count })
    }

    pub fn config(&self) -> &VocoderConfig {
        &self.config
    }
    pub fn family(&self) -> Family {
        self.family
    }
    pub fn param_count(&self) -> usize {
        self.param_count
    }
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// mel [B, num_mels, T] → audio [B, 1, T · hop].
    pub fn forward(&self, mel: &Tensor) -> Result<Tensor, VocoderError> {
        Ok(match &self.generator {
            Generator::HifiGan(g) => g.forward(mel)?,
            Generator::Grc(g) => g.forward(mel)?,
        })
    }

    /// Log-mel `[num_mels][frames]` (row-major) → audio samples at the model's rate.
    pub fn synthesize(&self, mel: &[f32], frames: usize) -> Result<Vec<f32>, VocoderError> {
        if frames == 0 {
            return Ok(Vec::new());
        }
        let x = Tensor::from_slice(mel, (1, self.config.num_mels, frames), &self.device)?;
        Ok(self.forward(&x)?.flatten_all()?.to_vec1::<f32>()?)
    }
}

/// A model's explicit streaming state: feed mel frames in order, get the audio samples that
/// became computable. The concatenated output equals [`Vocoder::forward`] over all the frames
/// (zero-padded on the left exactly as the batch forward; the stream never ends, so there is no
/// right edge), and after `f` frames exactly `max(0, hop · f − lag)` samples have come out.
pub struct VocoderStream {
    state: StreamState,
    frames: usize,
    emitted: usize,
}

enum StreamState {
    HifiGan(crate::hifigan::HifiGanStream),
    Grc(crate::grc::GrcMrfStream),
}

impl VocoderStream {
    pub fn frames_in(&self) -> usize {
        self.frames
    }
    pub fn samples_out(&self) -> usize {
        self.emitted
    }
}

impl Vocoder {
    /// A fresh streaming state (all histories zero).
    pub fn stream(&self) -> Result<VocoderStream, VocoderError> {
        let like = Tensor::zeros(1, candle_core::DType::F32, &self.device)?;
        let state = match &self.generator {
            Generator::HifiGan(g) => StreamState::HifiGan(g.stream(&like)?),
            Generator::Grc(g) => StreamState::Grc(g.stream(&like)?),
        };
        Ok(VocoderStream { state, frames: 0, emitted: 0 })
    }

    /// Samples the stream still owes for the frames it has received (the model's own lookahead).
    pub fn stream_lag(&self) -> usize {
        match &self.generator {
            Generator::HifiGan(g) => g.stream_lag(),
            Generator::Grc(g) => g.stream_lag(),
        }
    }

    /// Samples of past an output sample depends on, beyond what [`stream_lag`](Self::stream_lag)
    /// accounts for: a stream restarted from an earlier frame replays this much before it equals
    /// the one that ran all along. The centred generators reach about as far back as ahead (their
    /// lag, measured on every family); a causal one reaches back its whole receptive field.
    pub fn stream_reach_back(&self) -> usize {
        match &self.generator {
            Generator::Grc(g) if g.is_causal() => g.past_reach(),
            _ => self.stream_lag(),
        }
    }

    /// Feeds mel frames [1, num_mels, n] and appends the audio that became computable to `out`.
    pub fn stream_step(&self, st: &mut VocoderStream, mel: &Tensor, out: &mut Vec<f32>) -> Result<(), VocoderError> {
        let n = mel.dim(2)?;
        if n == 0 {
            return Ok(());
        }
        let y = match (&self.generator, &mut st.state) {
            (Generator::HifiGan(g), StreamState::HifiGan(s)) => g.stream_step(s, mel)?,
            (Generator::Grc(g), StreamState::Grc(s)) => g.stream_step(s, mel)?,
            _ => return Err(VocoderError::Config("streaming state belongs to another model".into())),
        };
        st.frames += n;
        if let Some(y) = y {
            let v = y.flatten_all()?.to_vec1::<f32>()?;
            st.emitted += v.len();
            out.extend_from_slice(&v);
        }
        Ok(())
    }
}

/// Where the config came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ConfigSource {
    /// `--config` (or the caller's explicit choice).
    Explicit(PathBuf),
    /// The safetensors file's own metadata.
    Embedded,
    /// `config.json` beside the checkpoint.
    Sidecar(PathBuf),
}

pub fn resolve_config(ckpt: &Checkpoint, explicit: Option<&Path>) -> Result<(VocoderConfig, ConfigSource), VocoderError> {
    let read = |p: &Path| crate::files::read_text(p, crate::files::MAX_CONFIG_BYTES, "config");
    if let Some(p) = explicit {
        return Ok((VocoderConfig::from_json(&read(p)?)?, ConfigSource::Explicit(p.into())));
    }
    if let Some(text) = &ckpt.embedded_config {
        return Ok((VocoderConfig::from_json(text)?, ConfigSource::Embedded));
    }
    let sidecar = ckpt.path.with_file_name("config.json");
    if sidecar.is_file() {
        return Ok((VocoderConfig::from_json(&read(&sidecar)?)?, ConfigSource::Sidecar(sidecar)));
    }
    Err(VocoderError::Config(format!(
        "{} has no config: give one with --config, put a config.json beside it, or convert it to safetensors with the config embedded",
        ckpt.path.display()
    )))
}

/// The strict comparison, with what loading did recorded as notes.
pub fn checkpoint_report(ckpt: &Checkpoint, cfg: &VocoderConfig) -> Result<CheckpointReport, VocoderError> {
    checkpoint_report_for(ckpt, &expected_params(cfg)?)
}

/// The strict comparison against any expected parameter set (the unit vocoders use it too).
pub fn checkpoint_report_for(ckpt: &Checkpoint, expected: &BTreeMap<String, Vec<usize>>) -> Result<CheckpointReport, VocoderError> {
    let mut report = CheckpointReport::compare(expected, &ckpt.shapes());
    if !ckpt.code_calls.is_empty() {
        let shown: Vec<&str> = ckpt.code_calls.iter().take(4).map(String::as_str).collect();
        report.notes.push(format!(
            "WARNING: this file contains code that Python would run when loading it ({}); it was NOT run here (only tensors were read), but do not open it with torch.load",
            shown.join(", ")
        ));
    }
    report.notes.push(format!("format: {}", ckpt.format.name()));
    if let Some(n) = &ckpt.nesting {
        report.notes.push(format!("state dict taken from nested dict `{n}`"));
    }
    if let Some(p) = &ckpt.stripped_prefix {
        report.notes.push(format!("key prefix `{p}` stripped"));
    }
    match ckpt.weight_norm {
        WeightNorm::None => {}
        WeightNorm::GV => report.notes.push(format!("weight norm (weight_g/weight_v) folded into {} weights", ckpt.folded)),
        WeightNorm::Parametrizations => report
            .notes
            .push(format!("weight norm (parametrizations.weight.original0/1) folded into {} weights", ckpt.folded)),
    }
    if !ckpt.ignored.is_empty() {
        let shown: Vec<&str> = ckpt.ignored.iter().take(8).map(String::as_str).collect();
        let more = if ckpt.ignored.len() > 8 { format!(" (+{} more)", ckpt.ignored.len() - 8) } else { String::new() };
        report.notes.push(format!("non-model entries ignored: {}{more}", shown.join(", ")));
    }
    Ok(report)
}

/// Checks every model tensor is floating point and finite, and moves them to `device`.
fn checked_weights(ckpt: &mut Checkpoint, cfg: &VocoderConfig, device: &Device) -> Result<Weights, VocoderError> {
    weights_for(ckpt, &expected_params(cfg)?, device)
}

/// The store of exactly the `expected` tensors (checked floating point and finite) on `device`.
/// The values are moved out of `ckpt` (its shapes and notes stay): loading never holds the
/// checkpoint's copy and the model's at once.
pub(crate) fn weights_for(ckpt: &mut Checkpoint, expected: &BTreeMap<String, Vec<usize>>, device: &Device) -> Result<Weights, VocoderError> {
    let mut tensors = BTreeMap::new();
    for (key, shape) in expected {
        let t = ckpt.tensors.get_mut(key).ok_or_else(|| VocoderError::BadTensor { key: key.clone(), reason: "missing".into() })?;
        let Some(values) = t.values.take() else {
            return Err(VocoderError::BadTensor {
                key: key.clone(),
                reason: format!("stored as {}; model parameters must be floating point", t.dtype.name()),
            });
        };
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(VocoderError::BadTensor {
                key: key.clone(),
                reason: format!("contains a non-finite value ({}) at flat index {i}", values[i]),
            });
        }
        tensors.insert(key.clone(), Tensor::from_vec(values, shape.as_slice(), device)?);
    }
    Ok(Weights::new(tensors))
}

pub struct LoadedVocoder {
    pub vocoder: Vocoder,
    pub report: CheckpointReport,
    pub config_source: ConfigSource,
    /// What was read: format, notes, shapes. The model's tensor values were moved into the
    /// model (so a loaded model is held once); the non-model entries keep theirs.
    pub checkpoint: Checkpoint,
}

/// Loads a model file strictly. `config`: an explicit config file (else embedded or sidecar).
pub fn load_vocoder(path: &Path, config: Option<&Path>, device: &Device) -> Result<LoadedVocoder, VocoderError> {
    let ckpt = checkpoint::load(path)?;
    let (cfg, config_source) = resolve_config(&ckpt, config)?;
    load_from_checkpoint(ckpt, cfg, config_source, device)
}

/// Another instance of a loaded model with a chosen CPU kernel implementation (the benchmark's
/// stock-candle baseline, and the fast-vs-stock tests).
pub fn rebuild_with_kernels(loaded: &LoadedVocoder, kernels: Kernels) -> Result<Vocoder, VocoderError> {
    let cfg = loaded.vocoder.config().clone();
    // The loaded checkpoint's values live in the model now: read the file again.
    let mut ckpt = checkpoint::load(&loaded.checkpoint.path)?;
    let weights = checked_weights(&mut ckpt, &cfg, loaded.vocoder.device())?.with_kernels(kernels);
    Vocoder::new(cfg, &weights, loaded.vocoder.device())
}

pub fn load_from_checkpoint(
    ckpt: Checkpoint,
    cfg: VocoderConfig,
    config_source: ConfigSource,
    device: &Device,
) -> Result<LoadedVocoder, VocoderError> {
    let report = checkpoint_report(&ckpt, &cfg)?;
    if !report.is_clean() {
        return Err(VocoderError::Mismatch(Box::new(report)));
    }
    let mut ckpt = ckpt;
    let weights = checked_weights(&mut ckpt, &cfg, device)?;
    let vocoder = Vocoder::new(cfg, &weights, device)?;
    Ok(LoadedVocoder { vocoder, report, config_source, checkpoint: ckpt })
}

/// Loads and probes: the plugin and CLI use only models that pass.
pub fn load_healthy(path: &Path, config: Option<&Path>, device: &Device) -> Result<(LoadedVocoder, HealthVerdict), VocoderError> {
    let loaded = load_vocoder(path, config, device)?;
    let verdict = health::probe(&loaded.vocoder)?;
    if !verdict.healthy {
        return Err(VocoderError::Unhealthy(Box::new(verdict)));
    }
    Ok((loaded, verdict))
}

/// Everything `inspect` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub checkpoint: PathBuf,
    pub format: Option<String>,
    pub read_error: Option<String>,
    pub config_source: Option<ConfigSource>,
    pub config_error: Option<String>,
    pub family: Option<String>,
    pub config_hash: Option<String>,
    pub report: Option<CheckpointReport>,
    pub inferred: Option<InferredArch>,
    pub disagreements: Vec<String>,
    pub load_error: Option<String>,
    pub parameters: Option<usize>,
    pub health: Option<HealthVerdict>,
}

impl Inspection {
    /// An inspection that could not run at all.
    pub fn failed(path: &Path, why: String) -> Self {
        Inspection { read_error: Some(why), ..Self::nothing_yet(path) }
    }

    fn nothing_yet(path: &Path) -> Self {
        Inspection {
            checkpoint: path.into(),
            format: None,
            read_error: None,
            config_source: None,
            config_error: None,
            family: None,
            config_hash: None,
            report: None,
            inferred: None,
            disagreements: Vec::new(),
            load_error: None,
            parameters: None,
            health: None,
        }
    }

    /// Loads and probes when possible; every stage that fails is recorded, never hidden.
    pub fn run(path: &Path, config: Option<&Path>, device: &Device) -> Self {
        let mut ins = Self::nothing_yet(path);
        let ckpt = match checkpoint::load(path) {
            Ok(c) => c,
            Err(e) => {
                ins.read_error = Some(e.to_string());
                return ins;
            }
        };
        ins.format = Some(ckpt.format.name().to_string());
        let inferred = infer(&ckpt.shapes(), ckpt.weight_norm != WeightNorm::None);
        let (cfg, src) = match resolve_config(&ckpt, config) {
            Ok(c) => c,
            Err(e) => {
                ins.config_error = Some(e.to_string());
                ins.inferred = Some(inferred);
                return ins;
            }
        };
        ins.disagreements = inferred.disagreements(&cfg);
        ins.inferred = Some(inferred);
        ins.config_source = Some(src.clone());
        ins.family = cfg.family().ok().map(|f| f.name().to_string());
        ins.config_hash = Some(cfg.hash());
        match checkpoint_report(&ckpt, &cfg) {
            Ok(r) => ins.report = Some(r),
            Err(e) => {
                ins.load_error = Some(e.to_string());
                return ins;
            }
        }
        match load_from_checkpoint(ckpt, cfg, src, device) {
            Ok(loaded) => {
                ins.parameters = Some(loaded.vocoder.param_count());
                match health::probe(&loaded.vocoder) {
                    Ok(v) => ins.health = Some(v),
                    Err(e) => ins.load_error = Some(format!("health probe failed to run: {e}")),
                }
            }
            Err(VocoderError::Mismatch(_)) => {
                ins.load_error = Some("checkpoint does not match the model (see report)".into());
            }
            Err(e) => ins.load_error = Some(e.to_string()),
        }
        ins
    }

    /// True when the model would load and is healthy (exit code 0).
    pub fn ok(&self) -> bool {
        self.load_error.is_none()
            && self.read_error.is_none()
            && self.config_error.is_none()
            && self.health.as_ref().is_some_and(|h| h.healthy)
    }
}

impl std::fmt::Display for Inspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "checkpoint: {}", self.checkpoint.display())?;
        if let Some(e) = &self.read_error {
            return writeln!(f, "error: {e}\nverdict: cannot be loaded");
        }
        if let Some(fmt) = &self.format {
            writeln!(f, "format: {fmt}")?;
        }
        match (&self.config_source, &self.config_error) {
            (Some(ConfigSource::Explicit(p)), _) => writeln!(f, "config: {} (given)", p.display())?,
            (Some(ConfigSource::Embedded), _) => writeln!(f, "config: embedded in the file")?,
            (Some(ConfigSource::Sidecar(p)), _) => writeln!(f, "config: {} (beside the checkpoint)", p.display())?,
            (None, Some(e)) => writeln!(f, "config: none ({e})")?,
            _ => {}
        }
        if let (Some(fam), Some(h)) = (&self.family, &self.config_hash) {
            writeln!(f, "family (config): {fam}, config hash {h}")?;
        }
        if let Some(inf) = &self.inferred {
            writeln!(f, "\narchitecture inferred from the checkpoint alone:")?;
            for line in inf.to_string().lines() {
                writeln!(f, "  {line}")?;
            }
        }
        if !self.disagreements.is_empty() {
            writeln!(f, "\nthe declared config disagrees with the checkpoint:")?;
            for d in &self.disagreements {
                writeln!(f, "  {d}")?;
            }
        }
        if let Some(r) = &self.report {
            writeln!(f, "\ncheckpoint report:")?;
            for line in r.to_string().lines() {
                writeln!(f, "  {line}")?;
            }
        }
        if let Some(p) = self.parameters {
            writeln!(f, "\nparameters: {p}")?;
        }
        if let Some(h) = &self.health {
            writeln!(f, "health: {h}")?;
        }
        if let Some(e) = &self.load_error {
            writeln!(f, "\nerror: {e}")?;
        }
        writeln!(
            f,
            "verdict: {}",
            if self.ok() { "loads and is healthy" } else if self.health.is_some() { "loads but is unhealthy: will not be used" } else { "will not load" }
        )
    }
}
