//! The `CheckpointReport`: what a checkpoint holds compared with what the model needs, per key
//! and per module, with a hint at the likely cause. A model loads only when the report is clean.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShapeMismatch {
    pub key: String,
    pub checkpoint: Vec<usize>,
    pub model: Vec<usize>,
}

/// Keys of one module (e.g. `mrfs.0`, `resblocks.3`, `conv_pre`) on both sides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModuleSummary {
    pub module: String,
    pub checkpoint_keys: usize,
    pub model_keys: usize,
    /// Numbered blocks inside the module (e.g. `convs.0`) with (checkpoint, model) key counts.
    pub blocks: Vec<(String, usize, usize)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckpointReport {
    pub checkpoint_keys: usize,
    pub model_keys: usize,
    pub common: usize,
    /// Keys the model needs that the checkpoint lacks (with the model's shape).
    pub missing_in_checkpoint: Vec<(String, Vec<usize>)>,
    /// Keys the checkpoint has that the model does not use (with the checkpoint's shape).
    pub missing_in_model: Vec<(String, Vec<usize>)>,
    pub shape_mismatches: Vec<ShapeMismatch>,
    pub modules: Vec<ModuleSummary>,
    /// Likely causes, one line each.
    pub hints: Vec<String>,
    /// What loading did on the way (nesting, prefixes, weight norm, ignored entries).
    pub notes: Vec<String>,
}

fn module_of(key: &str) -> String {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.len() >= 3 && parts[1].parse::<usize>().is_ok() {
        format!("{}.{}", parts[0], parts[1])
    } else {
        parts[0].to_string()
    }
}

fn block_of(key: &str) -> Option<String> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.len() >= 5 && parts[1].parse::<usize>().is_ok() && parts[3].parse::<usize>().is_ok() {
        Some(format!("{}.{}", parts[2], parts[3]))
    } else {
        None
    }
}

impl CheckpointReport {
    /// Compares the model's expected parameters with the checkpoint's tensors.
    pub fn compare(model: &BTreeMap<String, Vec<usize>>, checkpoint: &BTreeMap<String, Vec<usize>>) -> Self {
        let mut missing_in_checkpoint = Vec::new();
        let mut shape_mismatches = Vec::new();
        let mut common = 0;
        for (k, shape) in model {
            match checkpoint.get(k) {
                None => missing_in_checkpoint.push((k.clone(), shape.clone())),
                Some(cs) => {
                    common += 1;
                    if cs != shape {
                        shape_mismatches.push(ShapeMismatch { key: k.clone(), checkpoint: cs.clone(), model: shape.clone() });
                    }
                }
            }
        }
        let missing_in_model: Vec<(String, Vec<usize>)> =
            checkpoint.iter().filter(|(k, _)| !model.contains_key(*k)).map(|(k, s)| (k.clone(), s.clone())).collect();

        let mut modules: BTreeMap<String, ModuleSummary> = BTreeMap::new();
        let mut blocks: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
        for (side, keys) in [(0, checkpoint.keys()), (1, model.keys())] {
            for k in keys {
                let m = module_of(k);
                let e = modules.entry(m.clone()).or_insert_with(|| ModuleSummary {
                    module: m.clone(),
                    checkpoint_keys: 0,
                    model_keys: 0,
                    blocks: Vec::new(),
                });
                if side == 0 {
                    e.checkpoint_keys += 1;
                } else {
                    e.model_keys += 1;
                }
                if let Some(b) = block_of(k) {
                    let c = blocks.entry((m, b)).or_default();
                    if side == 0 {
                        c.0 += 1;
                    } else {
                        c.1 += 1;
                    }
                }
            }
        }
        for ((m, b), (c, mo)) in blocks {
            modules.get_mut(&m).unwrap().blocks.push((b, c, mo));
        }
        let mut modules: Vec<ModuleSummary> = modules.into_values().collect();
        // Natural order: `mrfs.2` before `mrfs.10`.
        modules.sort_by_key(|m| {
            let (a, b) = m.module.split_once('.').unwrap_or((&m.module, ""));
            (a.to_string(), b.parse::<usize>().unwrap_or(0))
        });

        let mut report = CheckpointReport {
            checkpoint_keys: checkpoint.len(),
            model_keys: model.len(),
            common,
            missing_in_checkpoint,
            missing_in_model,
            shape_mismatches,
            modules,
            hints: Vec::new(),
            notes: Vec::new(),
        };
        report.hints = report.diagnose();
        report
    }

    pub fn is_clean(&self) -> bool {
        self.missing_in_checkpoint.is_empty() && self.missing_in_model.is_empty() && self.shape_mismatches.is_empty()
    }

    fn diagnose(&self) -> Vec<String> {
        let mut hints = Vec::new();
        // Grouped convolutions: same out-channels and kernel, in-channels divided by `groups`.
        let mut grouped: BTreeMap<usize, usize> = BTreeMap::new();
        let mut kernel_only: Vec<(usize, usize)> = Vec::new();
        for m in &self.shape_mismatches {
            if m.checkpoint.len() == 3 && m.model.len() == 3 && m.checkpoint[0] == m.model[0] {
                if m.checkpoint[1] != m.model[1] && m.checkpoint[1] > 0 && m.model[1] % m.checkpoint[1] == 0 {
                    *grouped.entry(m.model[1] / m.checkpoint[1]).or_default() += 1;
                }
                if m.checkpoint[2] != m.model[2] {
                    kernel_only.push((m.checkpoint[2], m.model[2]));
                }
            }
        }
        for (g, n) in grouped {
            hints.push(format!(
                "grouped vs full-channel: {n} conv weights have 1/{g} of the model's input channels, i.e. the checkpoint uses grouped convolutions (groups={g}) where the model's GRC blocks are full-channel"
            ));
        }
        if !kernel_only.is_empty() {
            let ck: std::collections::BTreeSet<usize> = kernel_only.iter().map(|k| k.0).collect();
            let mk: std::collections::BTreeSet<usize> = kernel_only.iter().map(|k| k.1).collect();
            let fmt = |s: &std::collections::BTreeSet<usize>| s.iter().map(|k| k.to_string()).collect::<Vec<_>>().join("/");
            let extra = if ck.len() == 1 && mk.len() > 1 {
                " (one kernel size everywhere: the checkpoint's blocks probably differ by dilation, not by kernel size)"
            } else {
                ""
            };
            hints.push(format!(
                "kernel vs dilation: {} conv weights have kernel size {} in the checkpoint but {} in the model{extra}",
                kernel_only.len(),
                fmt(&ck),
                fmt(&mk)
            ));
        }
        let extra: Vec<&str> = self.missing_in_model.iter().map(|(k, _)| k.as_str()).collect();
        let count = |pat: &[&str]| extra.iter().filter(|k| pat.iter().any(|p| k.contains(p))).count();
        let norm = count(&["norm", "running_mean", "running_var", "num_batches_tracked"]);
        if norm > 0 {
            hints.push(format!("extra normalisation layers: {norm} BatchNorm/LayerNorm keys the model does not have"));
        }
        let lora = count(&["lora"]);
        if lora > 0 {
            hints.push(format!("extra LoRA adapters: {lora} keys (lora_A/lora_B) the model does not have"));
        }
        let att = count(&["attention", "attn"]);
        if att > 0 {
            hints.push(format!("extra attention layers: {att} keys (channel/temporal attention) the model does not have"));
        }
        let film = count(&["film", "cond_proj"]);
        if film > 0 {
            hints.push(format!("conditioning layers: {film} FiLM/cond_proj keys: this is a conditioned (FiLM) checkpoint"));
        }
        let stems = |keys: &mut dyn Iterator<Item = &String>| -> std::collections::BTreeSet<String> {
            keys.map(|k| k.split('.').next().unwrap_or("").to_string()).collect()
        };
        let ck_stems = stems(&mut self.missing_in_model.iter().map(|(k, _)| k));
        let mo_stems = stems(&mut self.missing_in_checkpoint.iter().map(|(k, _)| k));
        if ck_stems.contains("conv_pre") && mo_stems.contains("initial_conv") {
            hints.push("family: the checkpoint is a HiFi-GAN generator (conv_pre/resblocks) but the config describes a GRC-MRF model".into());
        }
        if ck_stems.contains("initial_conv") && mo_stems.contains("conv_pre") {
            hints.push("family: the checkpoint is a GRC-MRF generator (initial_conv/mrfs) but the config describes a HiFi-GAN model".into());
        }
        if !self.missing_in_checkpoint.is_empty() && self.missing_in_model.is_empty() && self.shape_mismatches.is_empty() {
            hints.push(format!(
                "the checkpoint lacks {} parameters the model needs (incomplete or truncated state dict?)",
                self.missing_in_checkpoint.len()
            ));
        }
        if hints.is_empty() && !self.is_clean() {
            hints.push("run `streamspeech-vocoder inspect` on the checkpoint alone to see the architecture it implies".into());
        }
        hints
    }
}

fn shape(s: &[usize]) -> String {
    format!("[{}]", s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(","))
}

impl fmt::Display for CheckpointReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "checkpoint keys: {}, model keys: {}, common: {}, missing in checkpoint: {}, missing in model (unexpected): {}, shape mismatches: {}",
            self.checkpoint_keys,
            self.model_keys,
            self.common,
            self.missing_in_checkpoint.len(),
            self.missing_in_model.len(),
            self.shape_mismatches.len()
        )?;
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        if self.is_clean() {
            return writeln!(f, "status: every model parameter loaded with the right shape");
        }
        writeln!(f, "per module (checkpoint keys / model keys):")?;
        for m in &self.modules {
            let mark = if m.checkpoint_keys == m.model_keys { "" } else { "  <-- differs" };
            write!(f, "  {}: {} / {} keys", m.module, m.checkpoint_keys, m.model_keys)?;
            if !m.blocks.is_empty() {
                let blocks: Vec<String> =
                    m.blocks.iter().map(|(b, c, mo)| format!("{b}: {c} / {mo} params")).collect();
                write!(f, ", {} blocks; {}", m.blocks.len(), blocks.join("; "))?;
            }
            writeln!(f, "{mark}")?;
        }
        if !self.shape_mismatches.is_empty() {
            writeln!(f, "shape mismatches:")?;
            for m in &self.shape_mismatches {
                writeln!(f, "  {}: checkpoint {}, model {}", m.key, shape(&m.checkpoint), shape(&m.model))?;
            }
        }
        if !self.missing_in_model.is_empty() {
            writeln!(f, "unexpected (in checkpoint, not in model):")?;
            for (k, s) in &self.missing_in_model {
                writeln!(f, "  {k} {}", shape(s))?;
            }
        }
        if !self.missing_in_checkpoint.is_empty() {
            writeln!(f, "missing (model needs, checkpoint lacks):")?;
            for (k, s) in &self.missing_in_checkpoint {
                writeln!(f, "  {k} {}", shape(s))?;
            }
        }
        for h in &self.hints {
            writeln!(f, "hint: {h}")?;
        }
        Ok(())
    }
}
