//! Our one-file model format: safetensors (f32) whose `__metadata__` carries the config JSON
//! under "config", so a DAW user loads a single file. A sidecar `config.json` is accepted too.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use crate::arch::expected_params;
use crate::checkpoint::Checkpoint;
use crate::config::VocoderConfig;
use crate::error::VocoderError;
use crate::model::checkpoint_report;

pub const FORMAT_TAG: &str = "streamspeech-vocoder/1";

/// Writes exactly the model's parameters (f32) with the config embedded.
pub fn write_model(path: &Path, cfg: &VocoderConfig, tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>) -> Result<(), VocoderError> {
    let bytes: BTreeMap<&String, (Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, (s, v))| (k, (s.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect())))
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(k, (s, b))| {
            TensorView::new(Dtype::F32, s.clone(), b).map(|v| (k.to_string(), v)).map_err(|e| VocoderError::BadTensor {
                key: k.to_string(),
                reason: e.to_string(),
            })
        })
        .collect::<Result<_, _>>()?;
    let mut meta = HashMap::new();
    meta.insert("config".to_string(), serde_json::to_string(cfg).expect("config serialises"));
    meta.insert("format".to_string(), FORMAT_TAG.to_string());
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| VocoderError::format(path, format!("writing safetensors: {e}")))?;
    // Callers decided whether to replace an existing file; the write itself is atomic and
    // follows symlinks (crate::files).
    crate::files::write_file(path, &bytes, true)
}

/// Converts a checkpoint (any readable format) + config into our format, strictly: the
/// checkpoint must match the config exactly.
pub fn convert(ckpt: &Checkpoint, cfg: &VocoderConfig, out: &Path) -> Result<(), VocoderError> {
    let report = checkpoint_report(ckpt, cfg)?;
    if !report.is_clean() {
        return Err(VocoderError::Mismatch(Box::new(report)));
    }
    let mut tensors = BTreeMap::new();
    for key in expected_params(cfg)?.keys() {
        let t = &ckpt.tensors[key];
        let values = t.values.clone().ok_or_else(|| VocoderError::BadTensor {
            key: key.clone(),
            reason: format!("stored as {}; model parameters must be floating point", t.dtype.name()),
        })?;
        tensors.insert(key.clone(), (t.shape.clone(), values));
    }
    write_model(out, cfg, &tensors)
}
