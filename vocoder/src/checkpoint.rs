//! Reading checkpoints: safetensors, PyTorch zip (1.6+) and PyTorch legacy (pre-1.6) files, with
//! the normalisations real checkpoints need (nested dicts, `generator.`/`module.` prefixes,
//! weight norm folding, fp16/bf16/fp64 → f32). Nothing is skipped silently: every entry that is
//! not a usable tensor is listed in [`Checkpoint::ignored`].

use std::collections::BTreeMap;
use std::io::{BufRead, Cursor, Read};
use std::path::{Path, PathBuf};

use candle_core::pickle::{Object, Stack};

use crate::error::VocoderError;

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
}

/// Nested dicts that may hold the generator's state dict, in order of preference.
const STATE_DICT_KEYS: [&str; 5] = ["ema_generator", "generator", "model_state_dict", "state_dict", "model"];
const PREFIXES: [&str; 3] = ["generator.", "module.", "model."];

pub fn load(path: &Path) -> Result<Checkpoint, VocoderError> {
    let bytes = std::fs::read(path).map_err(|e| VocoderError::Io { path: path.into(), source: e })?;
    load_bytes(path, &bytes)
}

pub fn load_bytes(path: &Path, bytes: &[u8]) -> Result<Checkpoint, VocoderError> {
    let (format, entries, embedded_config) = if bytes.starts_with(b"PK\x03\x04") {
        let (e, _) = read_torch_zip(path, bytes)?;
        (CheckpointFormat::TorchZip, e, None)
    } else if bytes.first() == Some(&0x80) {
        (CheckpointFormat::TorchLegacy, read_torch_legacy(path, bytes)?, None)
    } else if bytes.len() >= 8 {
        let (e, cfg) = read_safetensors(path, bytes)?;
        (CheckpointFormat::Safetensors, e, cfg)
    } else {
        return Err(VocoderError::format(path, "file is too short to be a checkpoint"));
    };
    normalise(path, format, entries, embedded_config)
}

/// A raw entry before normalisation: a tensor, or something else (name only).
enum RawEntry {
    Tensor(TensorData),
    Other,
}

type Entries = Vec<(String, RawEntry)>;

// ---------------------------------------------------------------------------------------------
// safetensors

fn read_safetensors(path: &Path, bytes: &[u8]) -> Result<(Entries, Option<String>), VocoderError> {
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
        let values = decode(dtype, view.data(), shape.iter().product(), 1).map_err(|m| VocoderError::format(path, format!("{name}: {m}")))?;
        out.push((name, RawEntry::Tensor(TensorData { shape, dtype, values })));
    }
    Ok((out, config))
}

/// Decodes `numel` elements (contiguous, little-endian). Non-float dtypes keep no values.
fn decode(dtype: StoredDType, data: &[u8], numel: usize, _stride: usize) -> Result<Option<Vec<f32>>, String> {
    if data.len() < numel * dtype.size() {
        return Err(format!("data holds {} bytes, {} needed", data.len(), numel * dtype.size()));
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
    Other,
}

fn read_pickle<R: BufRead>(path: &Path, r: &mut R, what: &str) -> Result<Object, VocoderError> {
    let mut stack = Stack::empty();
    stack
        .read_loop(r)
        .map_err(|e| VocoderError::format(path, format!("{what}: corrupt pickle ({e})")))?;
    stack.finalize().map_err(|e| VocoderError::format(path, format!("{what}: {e}")))
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

fn as_usize(o: &Object) -> Option<usize> {
    match o {
        Object::Int(i) if *i >= 0 => Some(*i as usize),
        Object::Long(i) if *i >= 0 => Some(*i as usize),
        _ => None,
    }
}

fn as_usizes(o: &Object) -> Option<Vec<usize>> {
    match o {
        Object::Tuple(v) | Object::List(v) => v.iter().map(as_usize).collect(),
        _ => None,
    }
}

/// Recognises `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` and the
/// `_rebuild_parameter` wrapper around it.
fn parse_tensor(path: &Path, key: &str, obj: &Object) -> Result<Option<TensorRef>, VocoderError> {
    let Object::Reduce { callable, args } = obj else { return Ok(None) };
    let Object::Class { module_name, class_name } = callable.as_ref() else { return Ok(None) };
    let bad = |m: &str| VocoderError::format(path, format!("tensor `{key}`: {m}"));
    match (module_name.as_str(), class_name.as_str()) {
        ("torch._utils", "_rebuild_parameter") | ("torch._utils", "_rebuild_parameter_with_state") => {
            let Object::Tuple(a) = args.as_ref() else { return Err(bad("malformed parameter")) };
            let inner = a.first().ok_or_else(|| bad("malformed parameter"))?;
            parse_tensor(path, key, inner)
        }
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let Object::Tuple(a) = args.as_ref() else { return Err(bad("malformed tensor")) };
            if a.len() < 4 {
                return Err(bad("malformed tensor arguments"));
            }
            let Object::PersistentLoad(pid) = &a[0] else { return Err(bad("tensor without storage")) };
            let Object::Tuple(pid) = pid.as_ref() else { return Err(bad("malformed storage id")) };
            if pid.len() < 5 {
                return Err(bad("malformed storage id"));
            }
            let Object::Class { class_name: storage_class, .. } = &pid[1] else {
                return Err(bad("malformed storage type"));
            };
            let dtype = storage_dtype(storage_class)
                .ok_or_else(|| bad(&format!("unsupported storage type {storage_class}")))?;
            let storage = match &pid[2] {
                Object::Unicode(s) => s.clone(),
                other => as_usize(other).map(|v| v.to_string()).ok_or_else(|| bad("malformed storage key"))?,
            };
            let offset = as_usize(&a[1]).ok_or_else(|| bad("malformed offset"))?;
            let shape = as_usizes(&a[2]).ok_or_else(|| bad("malformed size"))?;
            let stride = as_usizes(&a[3]).ok_or_else(|| bad("malformed stride"))?;
            Ok(Some(TensorRef { storage, dtype, offset, shape, stride }))
        }
        _ => Ok(None),
    }
}

/// Flattens nested dicts into dotted keys; tensors become `Parsed::Tensor`.
fn walk(path: &Path, prefix: &str, obj: &Object, out: &mut Vec<(String, Parsed)>) -> Result<(), VocoderError> {
    match obj {
        Object::Dict(items) => {
            for (k, v) in items {
                let name = match k {
                    Object::Unicode(s) => s.clone(),
                    Object::Int(i) => i.to_string(),
                    Object::Long(i) => i.to_string(),
                    _ => continue,
                };
                // OrderedDict state dicts carry a `_metadata` attribute (version info only).
                if name == "_metadata" {
                    continue;
                }
                let full = if prefix.is_empty() { name } else { format!("{prefix}.{name}") };
                walk(path, &full, v, out)?;
            }
            Ok(())
        }
        other => {
            match parse_tensor(path, prefix, other)? {
                Some(t) => out.push((prefix.to_string(), Parsed::Tensor(t))),
                None => out.push((prefix.to_string(), Parsed::Other)),
            }
            Ok(())
        }
    }
}

fn materialise(
    path: &Path,
    parsed: Vec<(String, Parsed)>,
    storage: impl Fn(&str) -> Result<Vec<u8>, VocoderError>,
) -> Result<Entries, VocoderError> {
    let mut cache: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut out = Vec::new();
    for (name, p) in parsed {
        match p {
            Parsed::Other => out.push((name, RawEntry::Other)),
            Parsed::Tensor(t) => {
                if !cache.contains_key(&t.storage) {
                    cache.insert(t.storage.clone(), storage(&t.storage)?);
                }
                let data = &cache[&t.storage];
                let numel: usize = t.shape.iter().product();
                let values = gather(&t, data, numel).map_err(|m| VocoderError::format(path, format!("tensor `{name}`: {m}")))?;
                out.push((name, RawEntry::Tensor(TensorData { shape: t.shape, dtype: t.dtype, values })));
            }
        }
    }
    Ok(out)
}

/// Reads a (possibly strided) tensor out of its storage bytes.
fn gather(t: &TensorRef, data: &[u8], numel: usize) -> Result<Option<Vec<f32>>, String> {
    let es = t.dtype.size();
    if !t.dtype.is_float() {
        return Ok(None);
    }
    if numel == 0 {
        return Ok(Some(Vec::new()));
    }
    // Largest element index touched.
    let last: usize = t.offset + t.shape.iter().zip(&t.stride).map(|(s, st)| (s - 1) * st).sum::<usize>();
    if (last + 1) * es > data.len() {
        return Err(format!("storage holds {} bytes but the tensor needs {}", data.len(), (last + 1) * es));
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
    let mut bytes = Vec::with_capacity(numel * es);
    for _ in 0..numel {
        let off = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
        bytes.extend_from_slice(&data[off * es..(off + 1) * es]);
        for d in (0..idx.len()).rev() {
            idx[d] += 1;
            if idx[d] < t.shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    decode(t.dtype, &bytes, numel, 1)
}

fn read_torch_zip(path: &Path, bytes: &[u8]) -> Result<(Entries, ()), VocoderError> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| VocoderError::format(path, format!("corrupt PyTorch zip archive: {e}")))?;
    let pkl = (0..zip.len())
        .filter_map(|i| zip.by_index(i).ok().and_then(|f| f.name().ok().map(|n| n.to_string())))
        .find(|n| n.ends_with("data.pkl") && n.matches('/').count() == 1)
        .ok_or_else(|| VocoderError::format(path, "PyTorch zip archive without data.pkl"))?;
    let dir = pkl.trim_end_matches("data.pkl").to_string();
    let mut pkl_bytes = Vec::new();
    zip.by_name(&pkl)
        .and_then(|mut f| f.read_to_end(&mut pkl_bytes).map_err(Into::into))
        .map_err(|e| VocoderError::format(path, format!("reading {pkl}: {e}")))?;
    let obj = read_pickle(path, &mut Cursor::new(pkl_bytes), "data.pkl")?;
    let mut parsed = Vec::new();
    walk(path, "", &obj, &mut parsed)?;
    let zip = std::cell::RefCell::new(zip);
    let entries = materialise(path, parsed, |key| {
        let name = format!("{dir}data/{key}");
        let mut zip = zip.borrow_mut();
        let mut f = zip
            .by_name(&name)
            .map_err(|e| VocoderError::format(path, format!("storage {name} missing from archive: {e}")))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map_err(|e| VocoderError::format(path, format!("reading {name}: {e}")))?;
        Ok(buf)
    })?;
    Ok((entries, ()))
}

/// The pre-1.6 format: pickled magic number, protocol version, sys info, the object, the list
/// of storage keys; then each storage as a u64 element count followed by its raw data.
fn read_torch_legacy(path: &Path, bytes: &[u8]) -> Result<Entries, VocoderError> {
    // The first pickle is the 80-bit magic number 0x1950a86a20f9469cfc6c as a LONG1 (too wide
    // for the generic pickle reader's i64): PROTO 2, LONG1 10 bytes little-endian, STOP.
    const MAGIC_PICKLE: [u8; 15] =
        [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e];
    if !bytes.starts_with(&MAGIC_PICKLE) {
        return Err(VocoderError::format(path, "not a PyTorch file (bad magic number)"));
    }
    let mut cur = Cursor::new(bytes);
    cur.set_position(MAGIC_PICKLE.len() as u64);
    let protocol = read_pickle(path, &mut cur, "protocol version")?;
    if as_usize(&protocol) != Some(1001) {
        return Err(VocoderError::format(path, format!("unsupported legacy protocol {protocol:?}")));
    }
    let _sys_info = read_pickle(path, &mut cur, "sys info")?;
    let obj = read_pickle(path, &mut cur, "checkpoint object")?;
    let keys = read_pickle(path, &mut cur, "storage keys")?;
    let keys: Vec<String> = match keys {
        Object::List(v) | Object::Tuple(v) => v
            .into_iter()
            .map(|k| match k {
                Object::Unicode(s) => Ok(s),
                _ => Err(VocoderError::format(path, "malformed storage key list")),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(VocoderError::format(path, "malformed storage key list")),
    };
    let mut parsed = Vec::new();
    walk(path, "", &obj, &mut parsed)?;
    let mut dtypes: BTreeMap<String, StoredDType> = BTreeMap::new();
    for (_, p) in &parsed {
        if let Parsed::Tensor(t) = p {
            dtypes.insert(t.storage.clone(), t.dtype);
        }
    }
    let mut storages: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut pos = cur.position() as usize;
    for key in &keys {
        let es = dtypes.get(key).map(|d| d.size()).ok_or_else(|| {
            VocoderError::format(path, format!("storage {key} is not used by any tensor"))
        })?;
        let count_bytes = bytes
            .get(pos..pos + 8)
            .ok_or_else(|| VocoderError::format(path, format!("file ends before storage {key} (truncated?)")))?;
        let count = u64::from_le_bytes(count_bytes.try_into().unwrap()) as usize;
        pos += 8;
        let len = count
            .checked_mul(es)
            .filter(|l| pos + l <= bytes.len())
            .ok_or_else(|| VocoderError::format(path, format!("file ends inside storage {key} (truncated?)")))?;
        storages.insert(key.clone(), bytes[pos..pos + len].to_vec());
        pos += len;
    }
    materialise(path, parsed, |key| {
        storages
            .get(key)
            .cloned()
            .ok_or_else(|| VocoderError::format(path, format!("storage {key} missing")))
    })
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
    for (k, e) in entries {
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
            RawEntry::Other => ignored.push(match &nesting {
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
