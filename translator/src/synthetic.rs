//! A StreamSpeech checkpoint with generated weights, written in the real format: what
//! `torch.save` makes of fairseq's checkpoint dict (a torch zip whose `data.pkl` holds `args:
//! None`, `cfg` with the model and task hyper-parameters as argparse Namespaces, the `model`
//! state dict, the optimizer history and an Adam optimizer state of fp32 moments for every
//! parameter).
//!
//! Real checkpoints (≈1.2 GB) cannot be downloaded where the tests run, and the full-size model
//! is too big to commit, so the memory test and the benchmark write one here: the keys and
//! shapes are [`StreamSpeechConfig::expected_params`] (equal to upstream's full-size manifest,
//! `tests/checkpoint.rs`), the values a seeded generator's. The file is streamed to disk a tensor
//! at a time, so writing it takes a few MB whatever its size.
//!
//! Random weights give degenerate arg-maxes; as in `scripts/make_streamspeech_fixture.py` both
//! decoders' embeddings are scaled ×4 and their final LayerNorm weights negated, and the CTC
//! heads' weights scaled ×8, so every stage emits a varied sequence.

use std::io::Write;
use std::path::Path;

use crate::model::StreamSpeechConfig;

/// How the model tensors are stored (the released models were trained with `--fp16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredAs {
    F16,
    F32,
}

pub struct SyntheticCheckpoint<'a> {
    pub cfg: &'a StreamSpeechConfig,
    pub stored_as: StoredAs,
    pub seed: u64,
    /// Write fairseq's optimizer state (two fp32 moments per parameter) as training leaves it.
    pub optimizer_state: bool,
}

/// What was written.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub bytes: u64,
    /// Parameters (tied output projections and buffers not counted).
    pub parameters: usize,
}

/// The full-size es→en simultaneous model's hyper-parameters (upstream's training script
/// `train.simul-s2st.sh`) with the chunk size of its 320 ms agent.
pub fn es_en_full_size() -> StreamSpeechConfig {
    use crate::encoder::EncoderConfig;
    let fields = es_en_fields();
    let get = |k: &str| match fields.iter().find(|(n, _)| *n == k).map(|(_, v)| v) {
        Some(Value::Int(v)) => *v as usize,
        _ => unreachable!("{k} is an int field"),
    };
    let d = get("encoder_embed_dim");
    let enc = EncoderConfig {
        subsampler: crate::subsampler::SubsamplerConfig { in_channels: 80, mid_channels: get("conv_channels"), out_channels: d, kernel_sizes: vec![5, 5], chunk_size: Some(8) },
        layer: crate::conformer::ConformerConfig { embed_dim: d, ffn_embed_dim: get("encoder_ffn_embed_dim"), attention_heads: get("encoder_attention_heads"), depthwise_conv_kernel_size: 31, chunk_size: Some(8) },
        layers: get("encoder_layers"),
        scale_embedding: true,
        attention_chunk: Some(8),
    };
    StreamSpeechConfig {
        encoder: enc,
        mt: crate::mt_decoder::MtDecoderConfig { vocab: 6000, embed_dim: 512, ffn_embed_dim: 2048, attention_heads: 8, layers: 4, encoder_dim: d, padding_idx: 1, eos: 2, max_positions: 1024 },
        t2u: crate::t2u::T2uConfig {
            embed_dim: get("decoder_embed_dim"),
            ffn_embed_dim: get("decoder_ffn_embed_dim"),
            attention_heads: get("decoder_attention_heads"),
            encoder_layers: get("synthesizer_encoder_layers"),
            decoder_layers: get("decoder_layers"),
            vocab: 1005,
            ctc_upsample_rate: get("ctc_upsample_rate"),
            padding_idx: 1,
        },
        asr_vocab: 6000,
        st_vocab: 6000,
    }
}

/// The MT decoder's settings of the full-size es→en model (its multitask config).
pub fn es_en_mt_settings() -> crate::model::MtSettings {
    crate::model::MtSettings { layers: 4, embed_dim: 512, ffn_embed_dim: 2048, attention_heads: 8 }
}

#[derive(Clone)]
enum Value {
    Int(i64),
    Float(f64),
    Str(&'static str),
    Bool(bool),
    None,
}

/// `cfg.model` of the es→en simultaneous training run (the fields the model reads, and the
/// training settings around them as a real checkpoint carries them).
fn es_en_fields() -> Vec<(&'static str, Value)> {
    use Value::*;
    vec![
        ("_name", Str("streamspeech")),
        ("arch", Str("streamspeech")),
        ("encoder_layers", Int(12)),
        ("encoder_embed_dim", Int(256)),
        ("encoder_ffn_embed_dim", Int(2048)),
        ("encoder_attention_heads", Int(4)),
        ("conv_kernel_sizes", Str("5,5")),
        ("conv_version", Str("s2t_transformer")),
        ("conv_channels", Int(1024)),
        ("input_feat_per_channel", Int(80)),
        ("input_channels", Int(1)),
        ("depthwise_conv_kernel_size", Int(31)),
        ("attn_type", Str("espnet")),
        ("pos_enc_type", Str("rel_pos")),
        ("chunk_size", Int(8)),
        ("uni_encoder", Bool(true)),
        ("multichunk", Bool(true)),
        ("translation_decoder_layers", Int(4)),
        ("synthesizer_encoder_layers", Int(2)),
        ("decoder_layers", Int(2)),
        ("decoder_embed_dim", Int(512)),
        ("decoder_ffn_embed_dim", Int(2048)),
        ("decoder_attention_heads", Int(8)),
        ("ctc_upsample_rate", Int(25)),
        ("share_decoder_input_output_embed", Bool(true)),
        ("no_scale_embedding", Bool(false)),
        ("max_target_positions", Int(1200)),
        ("dropout", Float(0.1)),
        ("attention_dropout", Float(0.1)),
        ("relu_dropout", Float(0.1)),
        ("k1", Int(0)),
        ("k2", Int(0)),
        ("n1", Int(1)),
        ("n2", Int(-1)),
        ("fp16", Bool(true)),
        ("seed", Int(1)),
        ("load_pretrained_encoder_from", None),
    ]
}

fn task_fields() -> Vec<(&'static str, Value)> {
    use Value::*;
    vec![
        ("_name", Str("speech_to_speech_ctc")),
        ("data", Str("configs/es-en")),
        ("config_yaml", Str("config_gcmvn.yaml")),
        ("multitask_config_yaml", Str("config_mtl_asr_st_ctcst.yaml")),
        ("target_is_code", Bool(true)),
        ("target_code_size", Int(1000)),
        ("n_frames_per_step", Int(1)),
        ("eval_inference", Bool(false)),
        ("vocoder", Str("code_hifigan")),
    ]
}

/// `cfg.checkpoint` as fairseq 0.12 writes it (the es→en training run's defaults).
fn checkpoint_section() -> Vec<(&'static str, Value)> {
    use Value::*;
    vec![
        ("_name", None),
        ("save_dir", Str("checkpoints")),
        ("restore_file", Str("checkpoint_last.pt")),
        ("continue_once", None),
        ("finetune_from_model", None),
        ("reset_dataloader", Bool(false)),
        ("reset_lr_scheduler", Bool(false)),
        ("reset_meters", Bool(false)),
        ("reset_optimizer", Bool(false)),
        ("optimizer_overrides", Str("{}")),
        ("save_interval", Int(1)),
        ("save_interval_updates", Int(0)),
        ("keep_interval_updates", Int(-1)),
        ("keep_interval_updates_pattern", Int(-1)),
        ("keep_last_epochs", Int(-1)),
        ("keep_best_checkpoints", Int(-1)),
        ("no_save", Bool(false)),
        ("no_epoch_checkpoints", Bool(false)),
        ("no_last_checkpoints", Bool(false)),
        ("no_save_optimizer_state", Bool(false)),
        ("best_checkpoint_metric", Str("loss")),
        ("maximize_best_checkpoint_metric", Bool(false)),
        ("patience", Int(-1)),
        ("checkpoint_suffix", Str("")),
        ("checkpoint_shard_count", Int(1)),
        ("load_checkpoint_on_all_dp_ranks", Bool(false)),
        ("write_checkpoints_asynchronously", Bool(false)),
        ("model_parallel_size", Int(1)),
    ]
}

/// A minimal protocol-2 pickle writer: the opcodes `torch.save` uses for these objects.
struct Pickle(Vec<u8>);

impl Pickle {
    fn str(&mut self, s: &str) {
        self.0.push(b'X');
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn int(&mut self, v: i64) {
        if let Ok(v) = i32::try_from(v) {
            self.0.push(b'J');
            self.0.extend_from_slice(&v.to_le_bytes());
        } else {
            self.0.extend_from_slice(&[0x8a, 8]);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
    }
    fn value(&mut self, v: &Value) {
        match v {
            Value::Int(i) => self.int(*i),
            Value::Float(f) => {
                self.0.push(b'G');
                self.0.extend_from_slice(&f.to_be_bytes());
            }
            Value::Str(s) => self.str(s),
            Value::Bool(b) => self.0.push(if *b { 0x88 } else { 0x89 }),
            Value::None => self.0.push(b'N'),
        }
    }
    fn global(&mut self, module: &str, name: &str) {
        self.0.push(b'c');
        self.0.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }
    /// `argparse.Namespace(**fields)` as protocol 2 pickles it: NEWOBJ, then BUILD with the dict.
    fn namespace(&mut self, fields: &[(&str, Value)]) {
        self.global("argparse", "Namespace");
        self.0.extend_from_slice(b")\x81}(");
        for (k, v) in fields {
            self.str(k);
            self.value(v);
        }
        self.0.extend_from_slice(b"ub");
    }
    fn tuple(&mut self, items: &[usize]) {
        self.0.push(b'(');
        for &i in items {
            self.int(i as i64);
        }
        self.0.push(b't');
    }
    /// `torch._utils._rebuild_tensor_v2(storage, 0, shape, stride, False, OrderedDict())`, the
    /// storage a persistent id `('storage', <dtype>Storage, key, 'cpu', numel)`.
    fn tensor(&mut self, storage: &str, key: usize, numel: usize, shape: &[usize]) {
        self.global("torch._utils", "_rebuild_tensor_v2");
        self.0.push(b'(');
        self.0.push(b'(');
        self.str("storage");
        self.global("torch", storage);
        self.str(&key.to_string());
        self.str("cpu");
        self.int(numel as i64);
        self.0.extend_from_slice(b"tQ");
        self.int(0);
        self.tuple(shape);
        let mut stride = vec![1usize; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * shape[i + 1];
        }
        self.tuple(&stride);
        self.0.push(0x89);
        self.global("collections", "OrderedDict");
        self.0.extend_from_slice(b")RtR");
    }
}

/// A storage to write: its key, dtype and how its values are generated.
struct Storage {
    numel: usize,
    kind: Fill,
    dtype: &'static str,
}

#[derive(Clone, Copy)]
enum Fill {
    /// Uniform in ±bound.
    Uniform(f32),
    Const(f32),
    /// `num_batches_tracked` (int64 zero).
    Counter,
}

/// splitmix64: the same stream on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// How a state-dict entry is initialised (as PyTorch's modules do, roughly, plus the
/// deterministic scaling that keeps the arg-maxes varied).
fn fill_for(key: &str, shape: &[usize]) -> Fill {
    let last = key.rsplit('.').next().unwrap_or("");
    if last == "num_batches_tracked" {
        return Fill::Counter;
    }
    if last == "version" {
        return Fill::Const(3.0);
    }
    if last == "running_mean" {
        return Fill::Const(0.0);
    }
    if last == "running_var" {
        return Fill::Const(1.0);
    }
    let norm = key.contains("norm.") || key.contains("layer_norm");
    if norm && last == "weight" {
        // Both decoders' final LayerNorm negated: an "anti-copy" decoder (see the module doc).
        let top = key == "decoder.layer_norm.weight" || key == "target_unigram_decoder.layer_norm.weight";
        return Fill::Const(if top { -1.0 } else { 1.0 });
    }
    if norm && last == "bias" {
        return Fill::Const(0.0);
    }
    if key.ends_with("embed_tokens.weight") {
        let d = shape.get(1).copied().unwrap_or(1) as f32;
        // N(0, d^-1/2) has this standard deviation; ×4 as the fixture script scales it.
        return Fill::Uniform(4.0 * 3f32.sqrt() / d.sqrt());
    }
    let fan_in: usize = if shape.len() >= 2 { shape[1..].iter().product() } else { shape.first().copied().unwrap_or(1) };
    let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
    let ctc = key.starts_with("source_unigram_decoder.proj.weight") || key.starts_with("ctc_target_unigram_decoder.proj.weight");
    Fill::Uniform(if ctc { 8.0 * bound } else { bound })
}

/// Writes the checkpoint to `path` (created or replaced).
pub fn write(path: &Path, spec: &SyntheticCheckpoint) -> std::io::Result<Written> {
    let params = spec.cfg.expected_params();
    let model_dtype = match spec.stored_as {
        StoredAs::F16 => "HalfStorage",
        StoredAs::F32 => "FloatStorage",
    };
    let mut storages: Vec<Storage> = Vec::new();
    let mut p = Pickle(vec![0x80, 0x02]);
    p.0.extend_from_slice(b"}(");
    p.str("args");
    p.0.push(b'N');
    p.str("cfg");
    p.0.extend_from_slice(b"}(");
    // An argparse-era checkpoint's `cfg.task` is the whole training Namespace, as `cfg.model`
    // is, with the task's `_name`; fairseq's `setup_task` reads its `task` field.
    let model_fields = es_en_fields_for(spec.cfg);
    let mut task = task_fields();
    task.push(("task", Value::Str("speech_to_speech_ctc")));
    task.extend(model_fields.iter().filter(|(k, _)| !task_fields().iter().any(|(t, _)| t == k)).map(|(k, v)| (*k, v.clone())));
    for (name, fields) in [("model", model_fields), ("task", task)] {
        p.str(name);
        p.namespace(&fields);
    }
    p.str("common");
    p.0.extend_from_slice(b"}(");
    p.str("fp16");
    p.0.push(0x88);
    p.str("seed");
    p.int(1);
    p.0.push(b'u');
    // Read by StreamSpeech's agent (`model_overrides`) when it loads a checkpoint.
    p.str("common_eval");
    p.0.extend_from_slice(b"}(");
    for (k, v) in [("_name", Value::None), ("path", Value::None), ("post_process", Value::None), ("quiet", Value::Bool(false)), ("model_overrides", Value::Str("{}")), ("results_path", Value::None)] {
        p.str(k);
        p.value(&v);
    }
    p.0.push(b'u');
    // Read by the agent's `load_model_ensemble` call (suffix, shard count).
    p.str("checkpoint");
    p.0.extend_from_slice(b"}(");
    for (k, v) in checkpoint_section() {
        p.str(k);
        p.value(&v);
    }
    p.0.extend_from_slice(b"uu");
    // The state dict; tied output projections share their embedding's storage as in PyTorch.
    p.str("model");
    p.global("collections", "OrderedDict");
    p.0.extend_from_slice(b")R(");
    let mut parameters = 0usize;
    let mut embedding_storage: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (key, shape) in &params {
        let numel: usize = shape.iter().product();
        let tied = key.strip_suffix("output_projection.weight").map(|m| format!("{m}embed_tokens.weight"));
        let (index, dtype) = match tied.as_ref().and_then(|t| embedding_storage.get(t)) {
            Some(&i) => (i, model_dtype),
            None => {
                let fill = fill_for(key, shape);
                let dtype = if matches!(fill, Fill::Counter) { "LongStorage" } else { model_dtype };
                if !key.ends_with("num_batches_tracked") && !key.ends_with(".version") && !key.contains("running_") {
                    parameters += numel;
                }
                storages.push(Storage { numel, kind: fill, dtype });
                if key.ends_with("embed_tokens.weight") {
                    embedding_storage.insert(key.clone(), storages.len() - 1);
                }
                (storages.len() - 1, dtype)
            }
        };
        p.str(key);
        p.tensor(dtype, index, numel, shape);
    }
    p.0.push(b'u');
    p.str("criterion");
    p.0.push(b'N');
    p.str("optimizer_history");
    p.0.extend_from_slice(b"](}(");
    for (k, v) in [("criterion_name", Value::Str("SpeechToUnit2passCTCASRSTMultitaskTaskCriterion")), ("optimizer_name", Value::Str("FP16Optimizer")), ("num_updates", Value::Int(100_000))] {
        p.str(k);
        p.value(&v);
    }
    // fairseq's checkpoint upgrade reads the scheduler's state (or an old `best_loss`).
    p.str("lr_scheduler_state");
    p.0.extend_from_slice(b"}(");
    p.str("best");
    p.value(&Value::Float(3.21));
    p.0.extend_from_slice(b"uue");
    p.str("task_state");
    p.0.push(b'}');
    p.str("extra_state");
    p.0.extend_from_slice(b"}(");
    p.str("epoch");
    p.int(100);
    p.str("train_iterator");
    p.0.extend_from_slice(b"}(");
    for (k, v) in [("epoch", Value::Int(100)), ("iterations_in_epoch", Value::Int(1000)), ("shuffle", Value::Bool(true))] {
        p.str(k);
        p.value(&v);
    }
    p.0.push(b'u');
    p.str("val_loss");
    p.value(&Value::Float(3.21));
    p.0.push(b'u');
    p.str("last_optimizer_state");
    p.0.extend_from_slice(b"}(");
    p.str("state");
    p.0.push(b'}');
    if spec.optimizer_state {
        // FP16Optimizer keeps one flat fp32 copy of every parameter; Adam two moments of it.
        p.0.push(b'(');
        p.int(0);
        p.0.extend_from_slice(b"}(");
        p.str("step");
        p.int(100_000);
        for m in ["exp_avg", "exp_avg_sq"] {
            p.str(m);
            storages.push(Storage { numel: parameters, kind: Fill::Uniform(1e-3), dtype: "FloatStorage" });
            p.tensor("FloatStorage", storages.len() - 1, parameters, &[parameters]);
        }
        p.0.extend_from_slice(b"uu");
    }
    p.str("loss_scale");
    p.0.extend_from_slice(&[b'G']);
    p.0.extend_from_slice(&128f64.to_be_bytes());
    p.0.push(b'u');
    p.0.extend_from_slice(b"u.");

    let file = std::fs::File::create(path)?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::with_capacity(1 << 20, file));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored).with_alignment(64).large_file(true);
    let zerr = |e: zip::result::ZipError| std::io::Error::other(e.to_string());
    zip.start_file("archive/data.pkl", opts).map_err(zerr)?;
    zip.write_all(&p.0)?;
    zip.start_file("archive/byteorder", opts).map_err(zerr)?;
    zip.write_all(b"little")?;
    let mut rng = Rng(spec.seed);
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    for (i, s) in storages.iter().enumerate() {
        zip.start_file(format!("archive/data/{i}"), opts).map_err(zerr)?;
        let mut left = s.numel;
        while left > 0 {
            let n = left.min(1 << 16);
            buf.clear();
            for _ in 0..n {
                let v = match s.kind {
                    Fill::Uniform(b) => b * rng.uniform(),
                    Fill::Const(c) => c,
                    Fill::Counter => 0.0,
                };
                match s.dtype {
                    "HalfStorage" => buf.extend_from_slice(&half::f16::from_f32(v).to_le_bytes()),
                    "LongStorage" => buf.extend_from_slice(&0i64.to_le_bytes()),
                    _ => buf.extend_from_slice(&v.to_le_bytes()),
                }
            }
            zip.write_all(&buf)?;
            left -= n;
        }
    }
    zip.start_file("archive/version", opts).map_err(zerr)?;
    zip.write_all(b"3\n")?;
    let mut inner = zip.finish().map_err(zerr)?;
    inner.flush()?;
    let bytes = std::fs::metadata(path)?.len();
    Ok(Written { bytes, parameters })
}

/// The model Namespace for `cfg`: the es→en fields with the widths and depths `cfg` has.
fn es_en_fields_for(cfg: &StreamSpeechConfig) -> Vec<(&'static str, Value)> {
    let e = &cfg.encoder;
    es_en_fields()
        .into_iter()
        .map(|(k, v)| {
            let set = match k {
                "encoder_layers" => Some(e.layers),
                "encoder_embed_dim" => Some(e.layer.embed_dim),
                "encoder_ffn_embed_dim" => Some(e.layer.ffn_embed_dim),
                "encoder_attention_heads" => Some(e.layer.attention_heads),
                "conv_channels" => Some(e.subsampler.mid_channels),
                "depthwise_conv_kernel_size" => Some(e.layer.depthwise_conv_kernel_size),
                "translation_decoder_layers" => Some(cfg.mt.layers),
                "synthesizer_encoder_layers" => Some(cfg.t2u.encoder_layers),
                "decoder_layers" => Some(cfg.t2u.decoder_layers),
                "decoder_embed_dim" => Some(cfg.t2u.embed_dim),
                "decoder_ffn_embed_dim" => Some(cfg.t2u.ffn_embed_dim),
                "decoder_attention_heads" => Some(cfg.t2u.attention_heads),
                "ctc_upsample_rate" => Some(cfg.t2u.ctc_upsample_rate),
                "chunk_size" => e.attention_chunk,
                _ => None,
            };
            (k, set.map(|n| Value::Int(n as i64)).unwrap_or(v))
        })
        .collect()
}
