//! What the engine's integration tests share: driving an engine as a host does.

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
