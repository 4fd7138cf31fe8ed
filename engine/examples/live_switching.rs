//! Live load with two full-size models: HiFi-GAN V1 universal in both Mode slots, 48 kHz host,
//! 512-sample blocks paced like a sound card, Mode switching every 2 s, for each choice of what
//! the unheard slot does (`Unheard::Compute`: both computed; `Unheard::SpinUp`: heard slot only)
//! and 1 and 2 worker threads. Prints the worker's real-time factor (mean and max over 0.5 s
//! windows), underruns, spin-ups (late ones, longest) and the reported latency.
//! `cargo run --release -p engine --example live_switching [-- SECONDS [CHUNK_MS]]`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use engine::{EngineProcessor, EngineSetup, Unheard, WorkerThreads};

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let seconds: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(30.0);
    let chunk_ms: u32 = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(80);
    let v1 = Arc::new(vocoder::load_vocoder(&root.join("models/hifigan_v1_universal.safetensors"), None, &candle_core::Device::Cpu).expect("model loads").vocoder);
    let mut r = hound::WavReader::open(root.join("tests/data/es_librivox_cuentosdehadas03_14_grimm.wav")).unwrap();
    let clip: Vec<f32> = r.samples::<i16>().map(|s| s.unwrap() as f32 / 32768.0).collect();
    let rate = 48_000u32;
    let clip = engine::stream::resample_whole(&clip, 22_050, rate);
    let n = (rate as f64 * seconds) as usize;
    let x: Vec<f32> = clip.iter().cycle().take(n).copied().collect();
    println!("| unheard slot | threads | latency (ms) | worker RTF mean | max | underruns | spin-ups (late) | longest spin-up (ms) |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for unheard in [Unheard::Compute, Unheard::SpinUp] {
        for threads in [1usize, 2] {
            let mut e = EngineProcessor::new(EngineSetup {
                host_rate: rate,
                channels: 1,
                max_block: 512,
                chunk_ms,
                slots: [Some(v1.clone()), Some(v1.clone())],
                initial_slot: 0,
                offline: false,
                passthrough_gain: [1.0, 1.0],
                worker_threads: WorkerThreads::new(threads),
                unheard,
                render_ahead: false,
            });
            let block = 512;
            let period = Duration::from_secs_f64(block as f64 / rate as f64);
            let start = Instant::now();
            let mut rtf = Vec::new();
            let mut last_sample = Instant::now();
            let mut slot = 0;
            for (k, piece) in x.chunks(block).enumerate() {
                let pos = k * block;
                if pos > 0 && pos % (2 * rate as usize) < block {
                    slot = 1 - slot;
                    e.set_mode(slot);
                }
                let mut buf = piece.to_vec();
                e.process(&mut [&mut buf[..]], &mut || (1.0, 1.0));
                if last_sample.elapsed() >= Duration::from_millis(500) {
                    rtf.push(e.stats.worker_rtf.load(Ordering::Relaxed));
                    last_sample = Instant::now();
                }
                let due = start + period * (k as u32 + 1);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            let s = &e.stats;
            let rtf = &rtf[2.min(rtf.len())..]; // skip the start-up second
            let mean = rtf.iter().sum::<f32>() / rtf.len().max(1) as f32;
            let max = rtf.iter().copied().fold(0.0, f32::max);
            println!(
                "| {unheard:?} | {threads} | {:.1} | {mean:.3} | {max:.3} | {} | {} ({}) | {:.1} |",
                e.latency() as f64 * 1000.0 / rate as f64,
                s.underruns.load(Ordering::Relaxed),
                s.spin_ups.load(Ordering::Relaxed),
                s.late_spin_ups.load(Ordering::Relaxed),
                s.spin_up_us_max.load(Ordering::Relaxed) as f64 / 1000.0,
            );
        }
    }
}
