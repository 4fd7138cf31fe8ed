//! Reading checkpoints: safetensors, PyTorch zip (1.6+) and PyTorch legacy (pre-1.6) files, with
//! the normalisations real checkpoints need (nested dicts, `generator.`/`module.` prefixes,
//! weight norm folding, fp16/bf16/fp64 → f32). Nothing is skipped silently: every entry that is
//! not a usable tensor is listed in [`Checkpoint::ignored`].

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::VocoderError;
use crate::files;
use crate::pickle::{self, Budget, Pickle, Value};

/// The element type a tensor was stored with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredDType {
    F16,
    BF16,
    F32,
    F64,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl StoredDType {
    pub fn size(self) -> usize {
        match self {
            StoredDType::F64 | StoredDType::I64 => 8,
            StoredDType::F32 | StoredDType::I32 => 4,
            StoredDType::F16 | StoredDType::BF16 | StoredDType::I16 => 2,
            StoredDType::I8 | StoredDType::U8 | StoredDType::Bool => 1,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, StoredDType::F16 | StoredDType::BF16 | StoredDType::F32 | StoredDType::F64)
    }

    pub fn name(self) -> &'static str {
        match self {
            StoredDType::F16 => "f16",
            StoredDType::BF16 => "bf16",
            StoredDType::F32 => "f32",
            StoredDType::F64 => "f64",
            StoredDType::I64 => "i64",
            StoredDType::I32 => "i32",
            StoredDType::I16 => "i16",
            StoredDType::I8 => "i8",
            StoredDType::U8 => "u8",
            StoredDType::Bool => "bool",
        }
    }
}

/// One tensor as stored. Floating-point tensors are converted to f32 at load; other dtypes keep
/// only their shape (they are reported, and refused if a model parameter needs them).
#[derive(Debug, Clone)]
pub struct TensorData {
    pub shape: Vec<usize>,
    pub dtype: StoredDType,
    pub values: Option<Vec<f32>>,
}

impl TensorData {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat {
    Safetensors,
    TorchZip,
    TorchLegacy,
}

impl CheckpointFormat {
    pub fn name(self) -> &'static str {
        match self {
            CheckpointFormat::Safetensors => "safetensors",
            CheckpointFormat::TorchZip => "pytorch (zip)",
            CheckpointFormat::TorchLegacy => "pytorch (legacy, pre-1.6)",
        }
    }
}

/// A plain value stored beside the tensors (`steps`, a config field such as
/// `cfg.model.encoder_layers` from an argparse Namespace).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum Scalar {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl Scalar {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Scalar::Int(i) => Some(*i),
            Scalar::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Scalar::Float(f) => Some(*f),
            Scalar::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Scalar::Bool(b) => Some(*b),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// What to read. By default every tensor; `tensors_under` reads only the tensors whose key
/// starts with it (e.g. `model.` of a fairseq training checkpoint: the optimizer state is listed
/// but never read).
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub tensors_under: Option<String>,
}

impl LoadOptions {
    fn wants(&self, key: &str) -> bool {
        self.tensors_under.as_deref().is_none_or(|p| key.starts_with(p))
    }
}

/// How weight norm was stored, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightNorm {
    None,
    /// `weight_g` + `weight_v` (torch.nn.utils.weight_norm).
    GV,
    /// `parametrizations.weight.original0/1` (torch.nn.utils.parametrizations.weight_norm).
    Parametrizations,
}

/// A checkpoint after normalisation: keys are the model's parameter names.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub format: CheckpointFormat,
    pub tensors: BTreeMap<String, TensorData>,
    /// The nested dict the state dict came from (`generator`, `ema_generator`, ...), if any.
    pub nesting: Option<String>,
    /// The key prefix that was stripped (`generator.`, `module.`), if any.
    pub stripped_prefix: Option<String>,
    pub weight_norm: WeightNorm,
    /// Number of weights folded from weight norm.
    pub folded: usize,
    /// Config JSON embedded in the file (safetensors `__metadata__["config"]`).
    pub embedded_config: Option<String>,
    /// Entries that are not model tensors (e.g. `steps`, `optimizer`, other top-level dicts).
    pub ignored: Vec<String>,
    /// Code the file asks Python to run when it is unpickled (`os.system`, `builtins.eval`, ...):
    /// never run here, and reported.
    pub code_calls: Vec<String>,
    /// Plain values by their full dotted key (also listed in `ignored`), including the fields of
    /// argparse Namespaces (`args.encoder_layers`, `cfg.model.encoder_layers`).
    pub scalars: BTreeMap<String, Scalar>,
}

/// Nested dicts that may hold the generator's state dict, in order of preference.
const STATE_DICT_KEYS: [&str; 5] = ["ema_generator", "generator", "model_state_dict", "state_dict", "model"];
const PREFIXES: [&str; 3] = ["generator.", "module.", "model."];

/// Largest checkpoint read (StreamSpeech with its optimizer state is under 1 GB).
pub const MAX_CHECKPOINT_BYTES: u64 = 3 << 30;
/// Largest safetensors header (the format's own reader allows 100 MB).
const MAX_SAFETENSORS_HEADER: u64 = 100 << 20;

/// Reads a checkpoint file. Bounded: regular files only, at most [`MAX_CHECKPOINT_BYTES`]; a
/// file whose first bytes are not one of the three formats is refused before it is read, and
/// PyTorch files are read piecewise (the pickle, then only the storage bytes the tensors use), so
/// a large file that is not a model costs neither time nor memory.
pub fn load(path: &Path) -> Result<Checkpoint, VocoderError> {
    load_with(path, &LoadOptions::default())
}

/// [`load`], reading only the tensors `opts` selects.
pub fn load_with(path: &Path, opts: &LoadOptions) -> Result<Checkpoint, VocoderError> {
    let head = files::read_head(path, 16, MAX_CHECKPOINT_BYTES, "checkpoint")?;
    let len = files::regular_file_len(path)?;
    let (entries, embedded_config, code_calls, format) = match sniff(path, &head, len)? {
        CheckpointFormat::Safetensors => {
            let bytes = files::read_limited(path, MAX_CHECKPOINT_BYTES, "checkpoint")?;
            let (e, cfg) = read_safetensors(path, &bytes, opts)?;
            (e, cfg, Vec::new(), CheckpointFormat::Safetensors)
        }
        format => {
            let file = std::fs::File::open(path).map_err(|e| VocoderError::Io { path: path.into(), source: e })?;
            let reader = std::io::BufReader::new(file);
            let (e, calls) = if format == CheckpointFormat::TorchZip {
                read_torch_zip(path, reader, len, opts)?
            } else {
                read_torch_legacy(path, reader, len, opts)?
            };
            (e, None, calls, format)
        }
    };
    let mut ckpt = normalise(path, format, entries, embedded_config)?;
    ckpt.code_calls = code_calls;
    Ok(ckpt)
}

/// Which format the first bytes announce; an error names what the file looks like instead.
fn sniff(path: &Path, head: &[u8], len: u64) -> Result<CheckpointFormat, VocoderError> {
    if head.starts_with(b"PK\x03\x04") {
        return Ok(CheckpointFormat::TorchZip);
    }
    if head.first() == Some(&0x80) {
        return Ok(CheckpointFormat::TorchLegacy);
    }
    if head.len() >= 9 {
        let header = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        if head[8] == b'{' && header <= MAX_SAFETENSORS_HEADER && header.saturating_add(8) <= len {
            return Ok(CheckpointFormat::Safetensors);
        }
    }
    let what = if head.len() < 9 {
        "too short to be a checkpoint".to_string()
    } else if head.starts_with(b"RIFF") || head.starts_with(b"fLaC") || head.starts_with(b"OggS") || head.starts_with(b"ID3") {
        "an audio file, not a checkpoint".to_string()
    } else if head.first() == Some(&b'{') {
        "a JSON file, not a checkpoint (a config? give it with --config)".to_string()
    } else {
        "not a checkpoint: neither safetensors nor a PyTorch file".to_string()
    };
    Err(VocoderError::format(path, what))
}

/// [`load`] for a checkpoint already in memory (e.g. a member of a downloaded archive).
pub fn load_bytes(path: &Path, bytes: &[u8]) -> Result<Checkpoint, VocoderError> {
    let len = bytes.len() as u64;
    let format = sniff(path, &bytes[..bytes.len().min(16)], len)?;
    let (entries, embedded_config, code_calls) = match format {
        CheckpointFormat::TorchZip => {
            let (e, calls) = read_torch_zip(path, Cursor::new(bytes), len, &LoadOptions::default())?;
            (e, None, calls)
        }
        CheckpointFormat::TorchLegacy => {
            let (e, calls) = read_torch_legacy(path, Cursor::new(bytes), len, &LoadOptions::default())?;
            (e, None, calls)
        }
        CheckpointFormat::Safetensors => {
            let (e, cfg) = read_safetensors(path, bytes, &LoadOptions::default())?;
            (e, cfg, Vec::new())
        }
    };
    let mut ckpt = normalise(path, format, entries, embedded_config)?;
    ckpt.code_calls = code_calls;
    Ok(ckpt)
}

/// A raw entry before normalisation: a tensor, or something else (name only).
enum RawEntry {
    Tensor(TensorData),
    Scalar(Scalar),
    Other,
}

type Entries = Vec<(String, RawEntry)>;

// ---------------------------------------------------------------------------------------------
// safetensors

fn read_safetensors(path: &Path, bytes: &[u8], opts: &LoadOptions) -> Result<(Entries, Option<String>), VocoderError> {
    use safetensors::{Dtype, SafeTensors};
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        VocoderError::format(path, format!("not a valid safetensors file (truncated or corrupt?): {e}"))
    })?;
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| VocoderError::format(path, format!("safetensors header: {e}")))?;
    let config = meta.metadata().as_ref().and_then(|m| m.get("config").cloned());
    let mut out = Vec::new();
    let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    for name in names {
        if !opts.wants(&name) {
            out.push((name, RawEntry::Other));
            continue;
        }
        let view = st.tensor(&name).map_err(|e| VocoderError::format(path, format!("{name}: {e}")))?;
        let dtype = match view.dtype() {
            Dtype::F16 => StoredDType::F16,
            Dtype::BF16 => StoredDType::BF16,
            Dtype::F32 => StoredDType::F32,
            Dtype::F64 => StoredDType::F64,
            Dtype::I64 => StoredDType::I64,
            Dtype::I32 => StoredDType::I32,
            Dtype::I16 => StoredDType::I16,
            Dtype::I8 => StoredDType::I8,
            Dtype::U8 => StoredDType::U8,
            Dtype::BOOL => StoredDType::Bool,
            other => {
                return Err(VocoderError::BadTensor { key: name, reason: format!("unsupported dtype {other:?}") });
            }
        };
        let shape = view.shape().to_vec();
        let numel = shape.iter().try_fold(1usize, |a, s| a.checked_mul(*s)).ok_or_else(|| VocoderError::format(path, format!("{}: shape overflows", short(&name))))?;
        let values = decode(dtype, view.data(), numel, 1).map_err(|m| VocoderError::format(path, format!("{name}: {m}")))?;
        out.push((name, RawEntry::Tensor(TensorData { shape, dtype, values })));
    }
    Ok((out, config))
}

/// Decodes `numel` elements (contiguous, little-endian). Non-float dtypes keep no values.
fn decode(dtype: StoredDType, data: &[u8], numel: usize, _stride: usize) -> Result<Option<Vec<f32>>, String> {
    let need = numel.checked_mul(dtype.size()).ok_or("size overflows")?;
    if data.len() < need {
        return Err(format!("data holds {} bytes, {need} needed", data.len()));
    }
    let data = &data[..numel * dtype.size()];
    Ok(match dtype {
        StoredDType::F32 => Some(data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()),
        StoredDType::F64 => Some(data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect()),
        StoredDType::F16 => {
            Some(data.chunks_exact(2).map(|c| half::f16::from_le_bytes(c.try_into().unwrap()).to_f32()).collect())
        }
        StoredDType::BF16 => {
            Some(data.chunks_exact(2).map(|c| half::bf16::from_le_bytes(c.try_into().unwrap()).to_f32()).collect())
        }
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------------
// PyTorch pickles

/// Where a tensor's data lives: storage key, dtype, element offset, shape, stride.
struct TensorRef {
    storage: String,
    dtype: StoredDType,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

enum Parsed {
    Tensor(TensorRef),
    Scalar(Scalar),
    Other,
}

/// Modules whose callables only build data (tensors, containers, configs). Any other callable in
/// a file is code the file asks Python to run on load: never run here, and reported.
const DATA_MODULES: [&str; 9] =
    ["torch", "collections", "argparse", "numpy", "omegaconf", "fairseq", "typing", "enum", "pathlib"];

fn read_pickle(path: &Path, bytes: &[u8], what: &str) -> Result<(Pickle, usize), VocoderError> {
    Pickle::parse(bytes).map_err(|e| VocoderError::format(path, format!("{what}: corrupt pickle ({e})")))
}

/// Calls the file asks Python to make that are not data constructors (`os.system`, `eval`, ...).
fn code_calls(p: &Pickle) -> Vec<String> {
    p.calls_outside(&DATA_MODULES)
        .into_iter()
        .filter(|c| !matches!(c.as_str(), "builtins.set" | "builtins.frozenset" | "builtins.slice" | "builtins.complex" | "builtins.bytearray" | "builtins.dict" | "builtins.list" | "builtins.tuple" | "__builtin__.set" | "_codecs.encode"))
        .collect()
}

fn storage_dtype(class_name: &str) -> Option<StoredDType> {
    Some(match class_name {
        "FloatStorage" => StoredDType::F32,
        "DoubleStorage" => StoredDType::F64,
        "HalfStorage" => StoredDType::F16,
        "BFloat16Storage" => StoredDType::BF16,
        "LongStorage" => StoredDType::I64,
        "IntStorage" => StoredDType::I32,
        "ShortStorage" => StoredDType::I16,
        "CharStorage" => StoredDType::I8,
        "ByteStorage" => StoredDType::U8,
        "BoolStorage" => StoredDType::Bool,
        _ => return None,
    })
}

fn as_usize(p: &Pickle, id: pickle::Id) -> Option<usize> {
    p.as_i64(id).and_then(|i| usize::try_from(i).ok())
}

fn as_usizes(p: &Pickle, id: pickle::Id) -> Option<Vec<usize>> {
    p.seq(id)?.iter().map(|c| as_usize(p, *c)).collect()
}

/// Recognises `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` and the
/// `_rebuild_parameter` wrapper around it.
fn parse_tensor(path: &Path, key: &str, p: &Pickle, id: pickle::Id) -> Result<Option<TensorRef>, VocoderError> {
    let Value::Call(call) = p.get(id) else { return Ok(None) };
    let (callable, args) = (&call.callable, &call.args);
    let Some(func) = p.global(*callable) else { return Ok(None) };
    let bad = |m: &str| VocoderError::format(path, format!("tensor `{key}`: {m}"));
    match func {
        ("torch._utils", "_rebuild_parameter") | ("torch._utils", "_rebuild_parameter_with_state") => {
            let inner = p.seq(*args).and_then(|a| a.first()).ok_or_else(|| bad("malformed parameter"))?;
            match p.get(*inner) {
                // A parameter of a parameter is not something torch writes (and would recurse).
                Value::Call(c) if p.global(c.callable) == Some(func) => Err(bad("nested parameter")),
                _ => parse_tensor(path, key, p, *inner),
            }
        }
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let a = p.seq(*args).ok_or_else(|| bad("malformed tensor"))?;
            if a.len() < 4 {
                return Err(bad("malformed tensor arguments"));
            }
            let Value::PersistentId(pid) = p.get(a[0]) else { return Err(bad("tensor without storage")) };
            let pid = p.seq(*pid).filter(|v| v.len() >= 5).ok_or_else(|| bad("malformed storage id"))?;
            let (_, storage_class) = p.global(pid[1]).ok_or_else(|| bad("malformed storage type"))?;
            let dtype = storage_dtype(storage_class)
                .ok_or_else(|| bad(&format!("unsupported storage type {}", short(storage_class))))?;
            let storage = match p.as_str(pid[2]) {
                Some(s) => s.to_string(),
                None => as_usize(p, pid[2]).map(|v| v.to_string()).ok_or_else(|| bad("malformed storage key"))?,
            };
            let offset = as_usize(p, a[1]).ok_or_else(|| bad("malformed offset"))?;
            let shape = as_usizes(p, a[2]).ok_or_else(|| bad("malformed size"))?;
            let stride = as_usizes(p, a[3]).ok_or_else(|| bad("malformed stride"))?;
            if shape.len() != stride.len() || shape.len() > 8 {
                return Err(bad("size and stride disagree (or more than 8 dimensions)"));
            }
            Ok(Some(TensorRef { storage, dtype, offset, shape, stride }))
        }
        _ => Ok(None),
    }
}

/// Flattens nested dicts into dotted keys; tensors become `Parsed::Tensor`. Bounded: depth and
/// visits (shared sub-objects cannot make this exponential), and key lengths.
fn walk(
    path: &Path,
    prefix: &str,
    p: &Pickle,
    id: pickle::Id,
    depth: usize,
    budget: &mut Budget,
    out: &mut Vec<(String, Parsed)>,
) -> Result<(), VocoderError> {
    budget.visit(depth).map_err(|e| VocoderError::format(path, e.to_string()))?;
    // A dict, or an argparse Namespace's attributes (fairseq's `args`, `cfg.model`, `cfg.task`).
    if let Some(items) = p.entries(id).or_else(|| namespace_fields(p, id)) {
        for (k, v) in items {
            let name = match p.get(*k) {
                Value::Str(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                _ => continue,
            };
            // OrderedDict state dicts carry a `_metadata` attribute (version info only).
            if name == "_metadata" {
                continue;
            }
            let full = if prefix.is_empty() { name } else { format!("{prefix}.{name}") };
            if full.len() > MAX_KEY_LEN {
                return Err(VocoderError::format(path, format!("a key longer than {MAX_KEY_LEN} bytes")));
            }
            walk(path, &full, p, *v, depth + 1, budget, out)?;
        }
        return Ok(());
    }
    let parsed = match parse_tensor(path, prefix, p, id)? {
        Some(t) => Parsed::Tensor(t),
        None => match p.get(id) {
            Value::None => Parsed::Scalar(Scalar::None),
            Value::Bool(b) => Parsed::Scalar(Scalar::Bool(*b)),
            Value::Int(i) => Parsed::Scalar(Scalar::Int(*i)),
            Value::Float(f) => Parsed::Scalar(Scalar::Float(*f)),
            Value::Str(s) if s.len() <= 4096 => Parsed::Scalar(Scalar::Str(s.clone())),
            _ => Parsed::Other,
        },
    };
    out.push((prefix.to_string(), parsed));
    Ok(())
}

/// The attributes of an argparse Namespace (its BUILD state dict).
fn namespace_fields(p: &Pickle, id: pickle::Id) -> Option<&[(pickle::Id, pickle::Id)]> {
    let Value::Call(c) = p.get(id) else { return None };
    if p.global(c.callable) != Some(("argparse", "Namespace")) {
        return None;
    }
    match p.get(c.state?) {
        Value::Dict(e) => Some(e),
        _ => None,
    }
}

/// Tensors the options do not want become plain entries: listed, never read.
fn select(parsed: Vec<(String, Parsed)>, opts: &LoadOptions) -> Vec<(String, Parsed)> {
    parsed
        .into_iter()
        .map(|(k, p)| match p {
            Parsed::Tensor(_) if !opts.wants(&k) => (k, Parsed::Other),
            p => (k, p),
        })
        .collect()
}

const MAX_KEY_LEN: usize = 4096;

/// A name cut to a readable length for messages.
fn short(s: &str) -> String {
    if s.len() <= 80 {
        return s.to_string();
    }
    let cut = (0..=80).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
    format!("{}…", &s[..cut])
}

/// Bytes a tensor reads from its storage (checked), and its element count.
fn extent(t: &TensorRef) -> Result<(usize, usize), String> {
    let too_big = || "size, stride or offset overflows".to_string();
    let numel = t.shape.iter().try_fold(1usize, |a, s| a.checked_mul(*s)).ok_or_else(too_big)?;
    if numel == 0 {
        return Ok((0, 0));
    }
    let mut last = t.offset;
    for (s, st) in t.shape.iter().zip(&t.stride) {
        last = (s - 1).checked_mul(*st).and_then(|x| x.checked_add(last)).ok_or_else(too_big)?;
    }
    let bytes = last.checked_add(1).and_then(|x| x.checked_mul(t.dtype.size())).ok_or_else(too_big)?;
    Ok((bytes, numel))
}

fn materialise(
    path: &Path,
    parsed: Vec<(String, Parsed)>,
    file_len: usize,
    mut storage: impl FnMut(&str, usize) -> Result<Vec<u8>, VocoderError>,
) -> Result<Entries, VocoderError> {
    // Bytes each storage must hold (the furthest any tensor reads).
    let mut need: BTreeMap<String, usize> = BTreeMap::new();
    let mut decoded_total = 0usize;
    // Shared storages (tied weights) may decode to more than the file; a file whose tensors
    // decode to far more than it holds is refused before anything is allocated.
    let decoded_limit = file_len.saturating_mul(4).saturating_add(64 << 20);
    for (name, p) in &parsed {
        if let Parsed::Tensor(t) = p {
            let (bytes, numel) = extent(t).map_err(|m| VocoderError::format(path, format!("tensor `{}`: {m}", short(name))))?;
            if numel.saturating_mul(t.dtype.size()) > bytes.max(t.dtype.size()) {
                return Err(VocoderError::format(path, format!("tensor `{}` has more elements than its storage (overlapping strides)", short(name))));
            }
            decoded_total = decoded_total.saturating_add(numel.saturating_mul(4));
            if decoded_total > decoded_limit {
                return Err(VocoderError::format(path, format!("the tensors would decode to more than {} MB from a {} MB file", decoded_limit >> 20, file_len >> 20)));
            }
            let n = need.entry(t.storage.clone()).or_insert(0);
            *n = (*n).max(bytes);
        }
    }
    // A storage's bytes are kept only until its last tensor is decoded, so a load holds the
    // decoded values and at most the storages still shared, not the whole raw file besides.
    let mut uses: BTreeMap<String, usize> = BTreeMap::new();
    for (_, p) in &parsed {
        if let Parsed::Tensor(t) = p {
            *uses.entry(t.storage.clone()).or_insert(0) += 1;
        }
    }
    let mut cache: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut out = Vec::new();
    for (name, p) in parsed {
        match p {
            Parsed::Other => out.push((name, RawEntry::Other)),
            Parsed::Scalar(s) => out.push((name, RawEntry::Scalar(s))),
            Parsed::Tensor(t) => {
                if !cache.contains_key(&t.storage) {
                    let data = storage(&t.storage, need[&t.storage])?;
                    cache.insert(t.storage.clone(), data);
                }
                let data = &cache[&t.storage];
                let numel: usize = t.shape.iter().product();
                let values = gather(&t, data, numel).map_err(|m| VocoderError::format(path, format!("tensor `{}`: {m}", short(&name))))?;
                let left = uses.get_mut(&t.storage).expect("counted above");
                *left -= 1;
                if *left == 0 {
                    cache.remove(&t.storage);
                }
                out.push((name, RawEntry::Tensor(TensorData { shape: t.shape, dtype: t.dtype, values })));
            }
        }
    }
    Ok(out)
}

/// Reads a (possibly strided) tensor out of its storage bytes. `extent` was checked before.
fn gather(t: &TensorRef, data: &[u8], numel: usize) -> Result<Option<Vec<f32>>, String> {
    let es = t.dtype.size();
    if !t.dtype.is_float() {
        return Ok(None);
    }
    if numel == 0 {
        return Ok(Some(Vec::new()));
    }
    let (bytes, _) = extent(t)?;
    if bytes > data.len() {
        return Err(format!("storage holds {} bytes but the tensor needs {bytes}", data.len()));
    }
    let contiguous = {
        let mut expect = 1;
        let mut ok = true;
        for (s, st) in t.shape.iter().zip(&t.stride).rev() {
            if *s != 1 && *st != expect {
                ok = false;
            }
            expect *= s;
        }
        ok
    };
    if contiguous {
        return decode(t.dtype, &data[t.offset * es..], numel, 1);
    }
    let mut idx = vec![0usize; t.shape.len()];
    let mut gathered = Vec::with_capacity(numel * es);
    for _ in 0..numel {
        let off = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
        gathered.extend_from_slice(&data[off * es..(off + 1) * es]);
        for d in (0..idx.len()).rev() {
            idx[d] += 1;
            if idx[d] < t.shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    decode(t.dtype, &gathered, numel, 1)
}

/// The entries a PyTorch pickle (a zip's `data.pkl`) describes, as `(name, is_tensor)`, with
/// the same bounds as loading (for tools and the fuzz harness: no storages are read).
pub fn pickle_entries(bytes: &[u8]) -> Result<Vec<(String, bool)>, VocoderError> {
    let path = Path::new("data.pkl");
    let (obj, _) = read_pickle(path, bytes, "data.pkl")?;
    let mut parsed = Vec::new();
    walk(path, "", &obj, obj.root, 0, &mut Budget::for_pickle(&obj), &mut parsed)?;
    Ok(parsed.into_iter().map(|(n, p)| (n, matches!(p, Parsed::Tensor(_)))).collect())
}

/// Largest `data.pkl` read from a zip (StreamSpeech's is a few hundred KB; fairseq training
/// checkpoints with optimizer state a few MB).
const MAX_ZIP_PICKLE: u64 = 32 << 20;

fn read_torch_zip<R: Read + Seek>(path: &Path, reader: R, file_len: u64, opts: &LoadOptions) -> Result<(Entries, Vec<String>), VocoderError> {
    let corrupt = |e: &dyn std::fmt::Display| VocoderError::format(path, format!("corrupt PyTorch zip archive: {e}"));
    let mut zip = zip::ZipArchive::new(reader).map_err(|e| corrupt(&e))?;
    let pkl = zip
        .file_names()
        .filter_map(|n| n.ok())
        .find(|n| n.ends_with("data.pkl") && n.matches('/').count() == 1)
        .map(|n| n.to_string())
        .ok_or_else(|| VocoderError::format(path, "PyTorch zip archive without data.pkl"))?;
    let dir = pkl.trim_end_matches("data.pkl").to_string();
    let declared = zip.by_name(&pkl).map(|f| f.size()).unwrap_or(0);
    if declared > MAX_ZIP_PICKLE {
        return Err(VocoderError::format(path, format!("data.pkl is {} MB (a model's is far smaller; limit {} MB)", declared >> 20, MAX_ZIP_PICKLE >> 20)));
    }
    let pkl_bytes = zip_entry(path, &mut zip, file_len, &pkl, MAX_ZIP_PICKLE as usize)?;
    let (obj, _) = read_pickle(path, &pkl_bytes, "data.pkl")?;
    drop(pkl_bytes);
    let mut parsed = Vec::new();
    walk(path, "", &obj, obj.root, 0, &mut Budget::for_pickle(&obj), &mut parsed)?;
    let parsed = select(parsed, opts);
    let entries = materialise(path, parsed, file_len as usize, |key, need| {
        if key.contains('/') || key.len() > 256 {
            return Err(VocoderError::format(path, format!("malformed storage key `{}`", short(key))));
        }
        zip_entry(path, &mut zip, file_len, &format!("{dir}data/{key}"), need)
    })?;
    Ok((entries, code_calls(&obj)))
}

/// An entry's first `need` bytes (at most). A stored entry (what torch.save writes) must lie
/// within the file, so its buffer is sized exactly; a compressed one is inflated only as far as
/// `need` (a zip bomb costs at most what the tensors need), its buffer growing as data arrives.
fn zip_entry<R: Read + Seek>(path: &Path, zip: &mut zip::ZipArchive<R>, file_len: u64, name: &str, need: usize) -> Result<Vec<u8>, VocoderError> {
    let fail = |m: String| VocoderError::format(path, format!("archive entry {}: {m}", short(name)));
    let f = zip.by_name(name).map_err(|e| fail(format!("missing ({e})")))?;
    let want = usize::try_from(f.size()).unwrap_or(usize::MAX).min(need);
    let stored = f.compression() == zip::CompressionMethod::Stored;
    if stored && f.data_start().is_none_or(|s| s.saturating_add(want as u64) > file_len) {
        return Err(fail("data runs past the end of the file".into()));
    }
    let mut buf = Vec::with_capacity(if stored { want } else { want.min(64 << 20) });
    f.take(want as u64).read_to_end(&mut buf).map_err(|e| fail(format!("cannot be read ({e})")))?;
    Ok(buf)
}

/// The legacy file's pickles after the magic number: protocol version (checked), sys info, the
/// checkpoint object and the storage keys, with the bytes they used. The error names the pickle.
fn legacy_pickles(b: &[u8]) -> Result<(Pickle, Pickle, usize), (&'static str, pickle::PickleError)> {
    let mut pos = 0;
    let mut next = |what: &'static str| -> Result<Pickle, (&'static str, pickle::PickleError)> {
        let (p, used) = Pickle::parse(&b[pos..]).map_err(|e| (what, e))?;
        pos += used;
        Ok(p)
    };
    let protocol = next("protocol version")?;
    if protocol.as_i64(protocol.root) != Some(1001) {
        return Err(("protocol version", pickle::PickleError("unsupported legacy protocol version".into())));
    }
    next("sys info")?;
    let obj = next("checkpoint object")?;
    let keys = next("storage keys")?;
    Ok((obj, keys, pos))
}

/// Most bytes of pickles read at the start of a legacy file (the object pickle holds metadata
/// only; storages follow it).
const MAX_LEGACY_PICKLES: u64 = 64 << 20;

/// The pre-1.6 format: pickled magic number, protocol version, sys info, the object, the list
/// of storage keys; then each storage as a u64 element count followed by its raw data.
fn read_torch_legacy<R: Read + Seek>(path: &Path, mut reader: R, file_len: u64, opts: &LoadOptions) -> Result<(Entries, Vec<String>), VocoderError> {
    // The first pickle is the 80-bit magic number 0x1950a86a20f9469cfc6c as a LONG1: PROTO 2,
    // LONG1 10 bytes little-endian, STOP.
    const MAGIC_PICKLE: [u8; 15] =
        [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e];
    let io = |e: std::io::Error| VocoderError::Io { path: path.into(), source: e };
    // The pickles' total length is known only by parsing them: read 64 KB, and twice as much
    // each time they run past what was read, up to the limit.
    let mut head = Vec::new();
    let mut want = 64u64 << 10;
    let (obj, keys, pos) = loop {
        let have = head.len() as u64;
        (&mut reader).take(want - have).read_to_end(&mut head).map_err(io)?;
        let complete = (head.len() as u64) < want || want >= MAX_LEGACY_PICKLES;
        if !head.starts_with(&MAGIC_PICKLE) {
            return Err(VocoderError::format(path, "not a PyTorch file (bad magic number)"));
        }
        match legacy_pickles(&head[MAGIC_PICKLE.len()..]) {
            Ok((obj, keys, used)) => break (obj, keys, MAGIC_PICKLE.len() + used),
            Err((what, e)) if complete || !e.is_truncation() => {
                return Err(VocoderError::format(path, format!("{what}: corrupt pickle ({e})")));
            }
            Err(_) => want = (want * 2).min(MAX_LEGACY_PICKLES),
        }
    };
    drop(head);
    let keys: Vec<String> = keys
        .seq(keys.root)
        .ok_or_else(|| VocoderError::format(path, "malformed storage key list"))?
        .iter()
        .map(|k| keys.as_str(*k).map(str::to_string).ok_or_else(|| VocoderError::format(path, "malformed storage key list")))
        .collect::<Result<_, _>>()?;
    let mut parsed = Vec::new();
    walk(path, "", &obj, obj.root, 0, &mut Budget::for_pickle(&obj), &mut parsed)?;
    let mut dtypes: BTreeMap<String, StoredDType> = BTreeMap::new();
    for (_, p) in &parsed {
        if let Parsed::Tensor(t) = p {
            dtypes.insert(t.storage.clone(), t.dtype);
        }
    }
    let parsed = select(parsed, opts);
    let needed: std::collections::BTreeSet<&str> =
        parsed.iter().filter_map(|(_, p)| if let Parsed::Tensor(t) = p { Some(t.storage.as_str()) } else { None }).collect();
    // Storages follow in key order; each is read whole (it lies within the file: checked), or
    // skipped when no selected tensor uses it.
    reader.seek(SeekFrom::Start(pos as u64)).map_err(io)?;
    let mut pos = pos as u64;
    let mut storages: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for key in &keys {
        let es = dtypes.get(key).map(|d| d.size()).ok_or_else(|| {
            VocoderError::format(path, format!("storage {} is not used by any tensor", short(key)))
        })?;
        let truncated = || VocoderError::format(path, format!("file ends inside storage {} (truncated?)", short(key)));
        let mut count = [0u8; 8];
        reader.read_exact(&mut count).map_err(|_| truncated())?;
        pos += 8;
        let len = u64::from_le_bytes(count).checked_mul(es as u64).filter(|l| pos.saturating_add(*l) <= file_len).ok_or_else(truncated)?;
        pos += len;
        if !needed.contains(key.as_str()) {
            reader.seek(SeekFrom::Start(pos)).map_err(io)?;
            continue;
        }
        let mut data = vec![0u8; len as usize];
        reader.read_exact(&mut data).map_err(|_| truncated())?;
        storages.insert(key.clone(), data);
    }
    let entries = materialise(path, parsed, file_len as usize, |key, _| {
        storages.remove(key).ok_or_else(|| VocoderError::format(path, format!("storage {} missing", short(key))))
    })?;
    Ok((entries, code_calls(&obj)))
}

// ---------------------------------------------------------------------------------------------
// normalisation

fn normalise(
    path: &Path,
    format: CheckpointFormat,
    entries: Entries,
    embedded_config: Option<String>,
) -> Result<Checkpoint, VocoderError> {
    let mut ignored = Vec::new();
    // 1. Nested dict: if the keys live under one of the known state-dict names, take that one.
    let mut nesting = None;
    let top_levels: Vec<String> = entries.iter().filter_map(|(k, _)| k.split_once('.').map(|(a, _)| a.to_string())).collect();
    for cand in STATE_DICT_KEYS {
        if top_levels.iter().any(|t| t == cand) {
            nesting = Some(cand.to_string());
            break;
        }
    }
    let mut tensors_raw: Vec<(String, TensorData)> = Vec::new();
    let mut scalars = BTreeMap::new();
    for (k, e) in entries {
        if let RawEntry::Scalar(s) = &e {
            scalars.insert(k.clone(), s.clone());
        }
        let key = match &nesting {
            Some(n) => match k.strip_prefix(&format!("{n}.")) {
                Some(rest) => rest.to_string(),
                None => {
                    ignored.push(k);
                    continue;
                }
            },
            None => k,
        };
        match e {
            RawEntry::Tensor(t) => tensors_raw.push((key, t)),
            RawEntry::Scalar(_) | RawEntry::Other => ignored.push(match &nesting {
                Some(n) => format!("{n}.{key}"),
                None => key,
            }),
        }
    }
    // 2. A prefix shared by every key.
    let mut stripped_prefix = None;
    for p in PREFIXES {
        if !tensors_raw.is_empty() && tensors_raw.iter().all(|(k, _)| k.starts_with(p)) {
            for (k, _) in tensors_raw.iter_mut() {
                *k = k[p.len()..].to_string();
            }
            stripped_prefix = Some(p.to_string());
            break;
        }
    }
    // 3. Weight norm folding.
    let mut map: BTreeMap<String, TensorData> = BTreeMap::new();
    for (k, t) in tensors_raw {
        if map.insert(k.clone(), t).is_some() {
            return Err(VocoderError::format(path, format!("duplicate key `{k}` after normalisation")));
        }
    }
    let mut weight_norm = WeightNorm::None;
    let mut folded = 0;
    let keys: Vec<String> = map.keys().cloned().collect();
    for k in keys {
        let (base, g_key, v_key, kind) = if let Some(base) = k.strip_suffix(".weight_g") {
            (base.to_string(), k.clone(), format!("{base}.weight_v"), WeightNorm::GV)
        } else if let Some(base) = k.strip_suffix(".parametrizations.weight.original0") {
            (
                base.to_string(),
                k.clone(),
                format!("{base}.parametrizations.weight.original1"),
                WeightNorm::Parametrizations,
            )
        } else {
            continue;
        };
        let Some(v) = map.remove(&v_key) else {
            return Err(VocoderError::BadTensor { key: g_key, reason: format!("weight norm gain without its direction `{v_key}`") });
        };
        let g = map.remove(&g_key).unwrap();
        let w = fold_weight_norm(&g_key, &g, &v)?;
        let wkey = format!("{base}.weight");
        if map.insert(wkey.clone(), w).is_some() {
            return Err(VocoderError::format(path, format!("`{wkey}` present both plain and weight-normed")));
        }
        weight_norm = kind;
        folded += 1;
    }
    if let Some((k, _)) = map.iter().find(|(k, _)| k.ends_with(".weight_v") || k.ends_with(".parametrizations.weight.original1")) {
        return Err(VocoderError::BadTensor { key: k.clone(), reason: "weight norm direction without its gain".into() });
    }
    Ok(Checkpoint {
        path: path.to_path_buf(),
        format,
        tensors: map,
        nesting,
        stripped_prefix,
        weight_norm,
        folded,
        embedded_config,
        ignored,
        code_calls: Vec::new(),
        scalars,
    })
}

/// `w = g * v / ||v||`, the norm taken over every dim but 0 (PyTorch's weight_norm, dim=0).
fn fold_weight_norm(key: &str, g: &TensorData, v: &TensorData) -> Result<TensorData, VocoderError> {
    let (Some(gv), Some(vv)) = (&g.values, &v.values) else {
        return Err(VocoderError::BadTensor { key: key.into(), reason: "weight norm tensors must be floating point".into() });
    };
    let out_ch = *v.shape.first().unwrap_or(&0);
    if out_ch == 0 || g.numel() != out_ch {
        return Err(VocoderError::BadTensor {
            key: key.into(),
            reason: format!("weight norm gain shape {:?} does not fit direction shape {:?}", g.shape, v.shape),
        });
    }
    let per = v.numel() / out_ch;
    let mut w = Vec::with_capacity(v.numel());
    for o in 0..out_ch {
        let slice = &vv[o * per..(o + 1) * per];
        let norm = slice.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>().sqrt();
        let scale = gv[o] as f64 / norm;
        w.extend(slice.iter().map(|x| (*x as f64 * scale) as f32));
    }
    Ok(TensorData { shape: v.shape.clone(), dtype: v.dtype, values: Some(w) })
}

impl Checkpoint {
    /// Shapes of every tensor (for the report and architecture inference).
    pub fn shapes(&self) -> BTreeMap<String, Vec<usize>> {
        self.tensors.iter().map(|(k, t)| (k.clone(), t.shape.clone())).collect()
    }
}
