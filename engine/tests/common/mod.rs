//! What the engine's integration tests share: driving an engine as a host does, the Spanish
//! clip, and bit-exact comparison.
#![allow(dead_code)] // each test binary uses its part

use engine::EngineProcessor;

/// Feeds `x` (mono) through `engine` in blocks of the given sizes (cycled), setting the Mode at
/// `switches` (input sample, slot) and splitting blocks there as a sample-accurate host wrapper
/// does. Returns the output.
pub fn run(engine: &mut EngineProcessor, x: &[f32], blocks: &[usize], switches: &[(u64, usize)]) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    let (mut pos, mut k) = (0usize, 0usize);
    while pos < x.len() {
        let mut n = blocks[k % blocks.len()].min(x.len() - pos);
        k += 1;
        for (t, _) in switches {
            let t = *t as usize;
            if t > pos && t < pos + n {
                n = t - pos;
            }
        }
        for (t, slot) in switches {
            if *t as usize == pos {
                engine.set_mode(*slot);
            }
        }
        let mut buf = x[pos..pos + n].to_vec();
        engine.process(&mut [&mut buf[..]], &mut || (1.0, 1.0));
        out.extend_from_slice(&buf);
        pos += n;
    }
    out
}

/// The Spanish clip (tests/data, 16 kHz) at `rate`, with 2 s of silence after it (its utterance
/// ends at the pause).
pub fn spanish_clip(rate: u32) -> Vec<f32> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut r = hound::WavReader::open(root.join("tests/data/es_picovoice_bat_test_es.wav")).unwrap();
    assert_eq!(r.spec().sample_rate, 16_000);
    let clip: Vec<f32> = r.samples::<i16>().map(|s| s.unwrap() as f32 / 32768.0).collect();
    let mut x = engine::stream::resample_whole(&clip, 16_000, rate);
    x.extend(std::iter::repeat_n(0.0, 2 * rate as usize));
    x
}

/// The first sample where `a` and `b` differ in any bit (over their common length).
pub fn first_difference(a: &[f32], b: &[f32]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x.to_bits() != y.to_bits())
}
