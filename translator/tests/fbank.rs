//! The front end against torchaudio (fixture: `scripts/make_fbank_fixture.py`, on a real Spanish
//! clip). Tolerance: 1e−4 relative (of max(|reference|, 1)) for the filter banks and after CMVN.

use std::path::{Path, PathBuf};

use translator::fbank::{Fbank, FbankConfig, GlobalCmvn};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn tensor(st: &safetensors::SafeTensors, name: &str) -> (Vec<usize>, Vec<f32>) {
    let t = st.tensor(name).unwrap();
    (t.shape().to_vec(), t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
}

fn worst_relative(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs() / y.abs().max(1.0)).fold(0.0, f32::max)
}

#[test]
fn fbank_and_cmvn_match_torchaudio_and_the_agent() {
    let bytes = std::fs::read(fixtures().join("fbank_ref.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, wave) = tensor(&st, "wave");
    let (shape, reference) = tensor(&st, "fbank");
    let (_, reference_cmvn) = tensor(&st, "cmvn");
    let fbank = Fbank::new(FbankConfig::default()).unwrap();
    assert_eq!((fbank.window_len, fbank.shift), (400, 160));
    let (mut ours, frames) = fbank.compute(&wave);
    assert_eq!(vec![frames, 80], shape, "frame count (snip_edges)");
    let err = worst_relative(&ours, &reference);
    assert!(err <= 1e-4, "fbank differs from torchaudio by {err:.2e} (relative)");
    let cmvn = GlobalCmvn::from_npz(&fixtures().join("es-en-small/gcmvn.npz"), 80).unwrap();
    cmvn.apply(&mut ours);
    let err = worst_relative(&ours, &reference_cmvn);
    assert!(err <= 1e-4, "CMVN output differs from the agent's by {err:.2e} (relative)");
    println!("frames {frames}; worst relative difference after CMVN {err:.2e}");
}

#[test]
fn short_inputs_and_bad_cmvn_files() {
    let fbank = Fbank::new(FbankConfig::default()).unwrap();
    assert_eq!(fbank.frames(399), 0);
    assert_eq!(fbank.frames(400), 1);
    assert_eq!(fbank.frames(560), 2);
    assert_eq!(fbank.compute(&[0.0; 399]).1, 0);
    // Digital silence: every bin at the floor, ln(f32::EPSILON).
    let (s, _) = fbank.compute(&[0.0; 400]);
    assert!(s.iter().all(|v| (*v - f32::EPSILON.ln()).abs() < 1e-6));
    let d = std::env::temp_dir().join(format!("translator-cmvn-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let junk = d.join("junk.npz");
    std::fs::write(&junk, b"PK\x03\x04 not really").unwrap();
    assert!(GlobalCmvn::from_npz(&junk, 80).is_err());
    assert!(GlobalCmvn::from_npz(&fixtures().join("es-en-small/gcmvn.npz"), 40).unwrap_err().to_string().contains("80 values"));
    assert!(Fbank::new(FbankConfig { sample_rate: 7, ..Default::default() }).is_err());
    std::fs::remove_dir_all(&d).unwrap();
}
