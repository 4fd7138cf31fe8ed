//! Hostile and broken model files: every case here once crashed, hung or exhausted memory (issue
//! #18). Each must now be a clear one-line error (or load, where the file is valid), never a
//! panic, abort or huge allocation.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::Device;
use common::fixtures;
use vocoder::checkpoint::{self, Checkpoint};
use vocoder::{VocoderConfig, VocoderError, load_vocoder};

// ---------------------------------------------------------------------------------------------
// Building files

/// Pickle opcodes, written by hand (the cases are not files PyTorch would write).
struct P(Vec<u8>);

impl P {
    fn new() -> Self {
        P(vec![0x80, 2])
    }
    fn op(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    fn s(self, s: &str) -> Self {
        let mut v = vec![0x8c, s.len() as u8];
        v.extend_from_slice(s.as_bytes());
        self.op(&v)
    }
    fn int(self, i: i32) -> Self {
        let mut v = vec![b'J'];
        v.extend_from_slice(&i.to_le_bytes());
        self.op(&v)
    }
    /// LONG1 with 8 bytes: any i64.
    fn long(self, i: i64) -> Self {
        let mut v = vec![0x8a, 8];
        v.extend_from_slice(&i.to_le_bytes());
        self.op(&v)
    }
    fn global(self, m: &str, n: &str) -> Self {
        self.op(format!("c{m}\n{n}\n").as_bytes())
    }
    /// `_rebuild_tensor_v2(storage key, offset, shape, stride)` of a FloatStorage.
    fn tensor(self, key: &str, offset: i64, shape: &[i64], stride: &[i64]) -> Self {
        let mut p = self.global("torch._utils", "_rebuild_tensor_v2").op(b"((").s("storage").global("torch", "FloatStorage").s(key).s("cpu").int(1).op(b"tQ").long(offset).op(b"(");
        for s in shape {
            p = p.long(*s);
        }
        p = p.op(b"t(");
        for s in stride {
            p = p.long(*s);
        }
        p.op(b"t\x89").global("collections", "OrderedDict").op(b")RtR")
    }
    fn done(self) -> Vec<u8> {
        self.op(b".").0
    }
}

/// A PyTorch-style zip: `archive/data.pkl` plus storages `archive/data/<key>`.
fn torch_zip(pkl: &[u8], storages: &[(&str, Vec<u8>)], deflate: bool) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let method = if deflate { zip::CompressionMethod::Deflated } else { zip::CompressionMethod::Stored };
    let opts = zip::write::SimpleFileOptions::default().compression_method(method).large_file(true);
    z.start_file("archive/data.pkl", opts).unwrap();
    z.write_all(pkl).unwrap();
    for (k, v) in storages {
        z.start_file(format!("archive/data/{k}"), opts).unwrap();
        z.write_all(v).unwrap();
    }
    z.finish().unwrap().into_inner()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A state dict `{"w": tensor(4 floats)}` plus `extra` entries (raw pickle: key then value).
fn state_dict(extra: impl FnOnce(P) -> P) -> Vec<u8> {
    let p = P::new().op(b"}(").s("w").tensor("0", 0, &[4], &[1]);
    extra(p).op(b"u").done()
}

fn load_zip(pkl: &[u8], storages: &[(&str, Vec<u8>)]) -> Result<Checkpoint, VocoderError> {
    checkpoint::load_bytes(Path::new("case.pth"), &torch_zip(pkl, storages, false))
}

fn four() -> Vec<(&'static str, Vec<u8>)> {
    vec![("0", f32_bytes(&[1.0, 2.0, 3.0, 4.0]))]
}

/// One line, short, naming the file at most once.
fn assert_clear(e: &VocoderError, path: &str) {
    let m = e.to_string();
    assert!(!m.contains('\n'), "one line: {m}");
    assert!(m.len() < 400, "short: {} chars: {m}", m.len());
    assert!(m.matches(path).count() <= 1, "path named once: {m}");
}

fn err_of(r: Result<Checkpoint, VocoderError>) -> VocoderError {
    match r {
        Ok(c) => panic!("loaded, with tensors {:?}", c.tensors.keys().collect::<Vec<_>>()),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------------
// Pickles

#[test]
fn a_hand_built_state_dict_loads() {
    let c = load_zip(&state_dict(|p| p), &four()).unwrap();
    assert_eq!(c.tensors["w"].values.as_deref(), Some(&[1.0, 2.0, 3.0, 4.0][..]));
    assert!(c.code_calls.is_empty());
}

#[test]
fn memo_bomb_is_refused_quickly() {
    // Each step pairs the previous object with itself: 2^60 nodes if memo gets were copies.
    let mut p = P::new().op(b"}(").s("w").tensor("0", 0, &[4], &[1]).s("bomb").op(b"]q\x00");
    for _ in 0..60 {
        p = p.op(b"h\x00h\x00\x86q\x00");
    }
    let pkl = p.op(b"u").done();
    let c = load_zip(&pkl, &four()).expect("a non-tensor entry is not expanded");
    assert!(c.ignored.contains(&"bomb".to_string()));
    // The dict-of-itself case must be refused by the walk's budget.
    let mut q = P::new().op(b"}q\x01");
    for _ in 0..60 {
        q = q.op(b"}(").s("a").op(b"h\x01").s("b").op(b"h\x01uq\x01");
    }
    let e = err_of(load_zip(&q.done(), &four()));
    assert!(e.to_string().contains("memo bomb") || e.to_string().contains("nested"), "{e}");
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    // 400 000 nested dicts (each the value of key "a"), and 900 000 nested lists (a recursive
    // reader overflows its stack at a few thousand; the arena holds at most 2^20 objects).
    let n = 400_000;
    let mut p = P::new();
    for _ in 0..n {
        p = p.op(b"}(").s("a");
    }
    p = p.op(b"}");
    for _ in 0..n {
        p = p.op(b"u");
    }
    let e = err_of(load_zip(&p.done(), &four()));
    assert!(e.to_string().contains("nested deeper"), "{e}");
    assert_clear(&e, "case.pth");

    let n = 900_000;
    let lists = state_dict(|mut p| {
        p = p.s("deep");
        for _ in 0..n {
            p = p.op(b"]");
        }
        for _ in 1..n {
            p = p.op(b"a");
        }
        p
    });
    // A deep non-tensor entry is not walked: it is reported as ignored.
    let c = load_zip(&lists, &four()).unwrap();
    assert!(c.ignored.contains(&"deep".to_string()));
}

#[test]
fn huge_length_fields_are_checked_before_allocating() {
    let cases: Vec<Vec<u8>> = vec![
        P::new().op(b"X\xff\xff\xff\xff").done(),                          // BINUNICODE 4 GiB
        P::new().op(b"\x8d\xff\xff\xff\xff\xff\xff\xff\x7f").done(),         // BINUNICODE8
        P::new().op(b"\x8e\x00\x00\x00\x00\x00\x00\x00\x40").done(),         // BINBYTES8 2^62
        P::new().op(b"\x8b\xff\xff\xff\x7f").done(),                         // LONG4 2 GiB
        P::new().op(b"(").op(&b"0".repeat(10)).done(),                       // POP past the mark
        P::new().op(b"h\x07").done(),                                         // memo read before write
        P::new().op(b"\x82\x01").done(),                                      // extension registry
    ];
    for pkl in cases {
        let e = err_of(load_zip(&pkl, &four()));
        assert!(e.to_string().contains("corrupt pickle"), "{e}");
        assert_clear(&e, "case.pth");
    }
}

#[test]
fn tensor_arithmetic_that_overflows_is_an_error() {
    let cases = [
        (1i64 << 62, vec![4i64], vec![1i64]),            // offset
        (0, vec![1 << 40, 1 << 40], vec![1, 1]),          // shape product
        (0, vec![4], vec![1 << 62]),                      // stride
        (0, vec![1 << 40], vec![0]),                      // 2^40 elements from one float
        (3, vec![4], vec![1]),                            // past the end of the storage
        (-1, vec![4], vec![1]),                           // negative offset
    ];
    for (offset, shape, stride) in cases {
        let pkl = P::new().op(b"}(").s("w").tensor("0", offset, &shape, &stride).op(b"u").done();
        let e = err_of(load_zip(&pkl, &four()));
        assert_clear(&e, "case.pth");
        eprintln!("{offset} {shape:?} {stride:?}: {e}");
    }
}

#[test]
fn zip_bombs_cost_only_what_the_tensors_need() {
    // A 64 MiB storage of zeros, deflated to ~64 KB, of which the tensor uses 16 bytes.
    let pkl = state_dict(|p| p);
    let file = torch_zip(&pkl, &[("0", vec![0u8; 64 << 20])], true);
    assert!(file.len() < 1 << 20);
    let c = checkpoint::load_bytes(Path::new("bomb.pth"), &file).unwrap();
    assert_eq!(c.tensors["w"].values.as_deref(), Some(&[0.0f32; 4][..]));
    // A data.pkl that inflates past the limit is refused by its declared size.
    let file = torch_zip(&vec![b'N'; 40 << 20], &[], true);
    let e = err_of(checkpoint::load_bytes(Path::new("bomb.pth"), &file));
    assert!(e.to_string().contains("data.pkl is 40 MB"), "{e}");
}

#[test]
fn code_in_a_pickle_is_reported_and_never_run() {
    let marker = std::env::temp_dir().join(format!("streamspeech-pwned-{}", std::process::id()));
    let cmd = format!("touch {}", marker.display());
    let pkl = state_dict(|p| p.s("evil").global("os", "system").op(b"(").s(&cmd).op(b"tR"));
    let c = load_zip(&pkl, &four()).unwrap();
    assert_eq!(c.code_calls, vec!["os.system".to_string()]);
    assert!(c.ignored.contains(&"evil".to_string()));
    assert!(!marker.exists());
    let expected = [("w".to_string(), vec![4usize])].into_iter().collect();
    let report = vocoder::model::checkpoint_report_for(&c, &expected).unwrap();
    let text = report.to_string();
    assert!(text.contains("os.system") && text.contains("NOT run"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// Files on disk

#[test]
fn devices_folders_and_non_checkpoints_fail_fast() {
    let d = tempfile::tempdir().unwrap();
    for (p, want) in [(PathBuf::from("/dev/zero"), "not a regular file"), (d.path().to_path_buf(), "a folder")] {
        let e = err_of(checkpoint::load(&p));
        assert!(e.to_string().contains(want), "{e}");
    }
    // A large file that is not a checkpoint is refused from its first bytes.
    let big = d.path().join("big.bin");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(2 << 30).unwrap(); // sparse: 2 GiB of zeros
    let t = std::time::Instant::now();
    let e = err_of(checkpoint::load(&big));
    assert!(e.to_string().contains("not a checkpoint"), "{e}");
    eprintln!("2 GiB non-checkpoint refused in {:?}", t.elapsed());
    // 2 GiB files that start like a PyTorch zip or legacy file: read piecewise, refused from
    // their first pickle or missing directory, not after reading them.
    for (name, head) in [("zip.pth", &b"PK\x03\x04"[..]), ("legacy.pth", &[0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e, 0x80, 0x02, 0xff][..])] {
        let p = d.path().join(name);
        std::fs::write(&p, head).unwrap();
        std::fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(2 << 30).unwrap();
        let t = std::time::Instant::now();
        let e = err_of(checkpoint::load(&p));
        assert_clear(&e, name);
        eprintln!("2 GiB {name}: {e} in {:?}", t.elapsed());
    }
    // A safetensors header length past the end of the file.
    let mut st = (1u64 << 60).to_le_bytes().to_vec();
    st.extend_from_slice(b"{}");
    std::fs::write(d.path().join("h.safetensors"), &st).unwrap();
    assert!(err_of(checkpoint::load(&d.path().join("h.safetensors"))).to_string().contains("not a checkpoint"));
}

fn tiny_config() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("grc_tiny/config.json")).unwrap()).unwrap()
}

#[test]
fn absurd_configs_are_refused_before_anything_is_sized_from_them() {
    let cases: Vec<(&str, serde_json::Value)> = vec![
        ("n_fft", serde_json::json!(1u64 << 40)),
        ("n_fft", serde_json::json!(1u64 << 62)),
        ("sampling_rate", serde_json::json!(4_294_967_291u64)),
        ("sampling_rate", serde_json::json!(1)),
        ("hop_size", serde_json::json!(200)),
        ("upsample_rates", serde_json::json!([1u64 << 32, 1u64 << 32])),
        ("upsample_kernel_sizes", serde_json::json!([1u64 << 40, 8])),
        ("upsample_initial_channel", serde_json::json!(1u64 << 40)),
        ("num_mels", serde_json::json!(1u64 << 30)),
        ("win_size", serde_json::json!(0)),
        ("fmax", serde_json::json!(1e12)),
        ("fmin", serde_json::json!(-5.0)),
        ("grc_kernel_sizes", serde_json::json!([1u64 << 33])),
    ];
    let d = tempfile::tempdir().unwrap();
    let model = fixtures().join("grc_tiny/model.safetensors");
    for (field, value) in cases {
        let mut cfg = tiny_config();
        cfg[field] = value.clone();
        let text = cfg.to_string();
        let e = VocoderConfig::from_json(&text).unwrap_err();
        assert!(e.to_string().contains(field) || e.to_string().contains("config JSON"), "{field}={value}: {e}");
        // The same config beside a real checkpoint: the loader says so, and nothing panics.
        let dir = d.path().join(format!("{field}-{}", value.to_string().len()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&model, dir.join("m.safetensors")).unwrap();
        std::fs::write(dir.join("m.json"), &text).unwrap();
        let r = load_vocoder(&dir.join("m.safetensors"), Some(&dir.join("m.json")), &Device::Cpu);
        let e = r.err().expect("refused");
        assert!(!e.to_string().contains('\n'), "{e}");
    }
}

#[test]
fn a_huge_config_file_is_not_read() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("config.json");
    let f = std::fs::File::create(&cfg).unwrap();
    f.set_len(8 << 30).unwrap();
    let e = load_vocoder(&fixtures().join("grc_tiny/model.safetensors"), Some(&cfg), &Device::Cpu).err().unwrap();
    assert!(e.to_string().contains("limit"), "{e}");
}

/// Found by the fuzz harness: a .npy header length of 3.9 GB was allocated before reading.
#[test]
fn npy_header_length_is_checked() {
    let d = tempfile::tempdir().unwrap();
    let good = std::fs::read(fixtures().join("units/film_tiny/cond.npy")).unwrap();
    let mut bad = good.clone();
    bad[6] = 3;
    bad[8..12].copy_from_slice(&0xe7a5_c000u32.to_le_bytes());
    let p = d.path().join("bad.npy");
    std::fs::write(&p, bad).unwrap();
    let e = vocoder::units::Conditioning::load(&p, 192, 768).err().unwrap();
    assert!(e.to_string().contains("header length"), "{e}");
    std::fs::write(&p, good).unwrap();
    assert!(vocoder::units::Conditioning::load(&p, 192, 768).is_ok());
}
