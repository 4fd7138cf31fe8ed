//! Worker real-time factor of the default Original model at each chunk size (offline engine,
//! 22.05 kHz host, 5 s of the demo clip looped). Run with
//! `cargo run --release -p engine --example rtf [-- MODEL.safetensors]`.

use std::sync::Arc;
use std::time::Instant;

use engine::{EngineProcessor, EngineSetup};

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let model = std::env::args().nth(1).map(std::path::PathBuf::from).unwrap_or(root.join("models/hifigan_v1_universal.safetensors"));
    let v = Arc::new(vocoder::load_vocoder(&model, None, &candle_core::Device::Cpu).expect("model loads").vocoder);
    let mut r = hound::WavReader::open(root.join("tests/data/es_librivox_cuentosdehadas03_14_grimm.wav")).unwrap();
    let clip: Vec<f32> = r.samples::<i16>().map(|s| s.unwrap() as f32 / 32768.0).collect();
    let seconds = 5.0;
    let x: Vec<f32> = clip.iter().cycle().take((22_050.0 * seconds) as usize).copied().collect();
    println!("model {} ({} parameters)", model.display(), v.param_count());
    for ms in [80u32, 640] {
        let mut e = EngineProcessor::new(EngineSetup {
            host_rate: 22_050,
            channels: 1,
            max_block: 512,
            chunk_ms: ms,
            slots: [Some(v.clone()), None],
            initial_slot: 0,
            offline: true,
            passthrough_gain: [1.0, 1.0],
            worker_threads: engine::WorkerThreads::new(1),
            unheard: engine::Unheard::Compute,
            render_ahead: false,
        });
        let t0 = Instant::now();
        let mut input = x.clone();
        input.extend(std::iter::repeat_n(0.0, e.latency() as usize));
        for block in input.chunks_mut(512) {
            let mut chans: [&mut [f32]; 1] = [block];
            e.process(&mut chans, &mut || (1.0, 1.0));
        }
        let wall = t0.elapsed().as_secs_f64();
        println!(
            "chunk {ms:>3} ms: {:.2} s per audio second (wall, offline engine incl. context overhead; worker's own RTF {:.2}), latency {} samples",
            wall / seconds,
            e.stats.worker_rtf.load(std::sync::atomic::Ordering::Relaxed),
            e.latency()
        );
    }
}
