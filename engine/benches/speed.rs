//! CPU speed of the default models: our kernels vs candle's stock ops, in the same process.
//!
//! `cargo xtask bench` (= `cargo bench -p engine --bench speed -- [--seconds S] [--reference]`).
//! For each default model, on S seconds (default 10) of real speech (a `tests/data` clip looped):
//! - batch real-time factor (seconds of compute per second of audio) at 1 and 2 kernel threads,
//!   ours (best of 3) and stock candle (1 run), the ratio, and the max abs difference;
//! - per-layer time and achieved GFLOP/s of our kernels (2 threads);
//! - peak RSS of each forward (VmHWM, reset through /proc/self/clear_refs);
//! - streaming at 80 ms chunks with the engine's context (the worker's job), 1 thread.
//! `--reference` also runs `scripts/bench_reference.py` (PyTorch eager and onnxruntime on the same
//! weights and mel, 1 and 2 threads) and puts its figures in the same table.
//! Results: printed as Markdown and written to `target/bench/speed.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{Device, Tensor};
use engine::stream::ModelStream;
use vocoder::kernels;
use vocoder::mel::MelFrontEnd;
use vocoder::{Kernels, Vocoder};

/// The plugin's Latency choices (the worker's chunk per choice, `engine::chunk_frames`).
const LATENCY_CHOICES_MS: [u32; 6] = [20, 40, 80, 160, 320, 640];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn speech(seconds: f64) -> Vec<f32> {
    let mut r = hound::WavReader::open(root().join("tests/data/es_librivox_cuentosdehadas03_14_grimm.wav")).expect("demo clip");
    assert_eq!(r.spec().sample_rate, 22_050, "the benchmark clip is 22.05 kHz");
    let clip: Vec<f32> = r.samples::<i16>().map(|s| s.unwrap() as f32 / 32768.0).collect();
    clip.iter().cycle().take((22_050.0 * seconds) as usize).copied().collect()
}

/// Peak resident set since the last reset, in MiB (Linux; None elsewhere).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn set_threads(n: usize) {
    kernels::set_threads(n);
    // candle's stock CPU ops size their GEMM parallelism from this variable on every call.
    // SAFETY: the benchmark is single-threaded when it changes the environment.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
}

fn forward(v: &Vocoder, mel: &Tensor) -> (f64, Vec<f32>) {
    let t0 = Instant::now();
    let y = v.forward(mel).expect("forward").flatten_all().unwrap().to_vec1::<f32>().unwrap();
    (t0.elapsed().as_secs_f64(), y)
}

fn streaming_rtf(v: Arc<Vocoder>, audio: &[f32], chunk_ms: u32) -> f64 {
    let frames = engine::chunk_frames(&v, chunk_ms);
    let mut s = ModelStream::new(v, frames);
    let mut out = Vec::new();
    let t0 = Instant::now();
    for block in audio.chunks(512) {
        s.push(block, &mut out).expect("stream");
    }
    t0.elapsed().as_secs_f64() / (out.len() as f64 / 22_050.0)
}

struct Row {
    model: String,
    case: String,
    threads: usize,
    ours: f64,
    stock: Option<f64>,
    torch: Option<f64>,
    ort: Option<f64>,
    rss_ours: Option<f64>,
    rss_stock: Option<f64>,
    max_abs: Option<f32>,
}

fn fmt(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "–".into())
}
fn ratio(a: f64, b: Option<f64>) -> String {
    b.map(|b| format!("{:.2}", a / b)).unwrap_or_else(|| "–".into())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: f64 = args.iter().position(|a| a == "--seconds").and_then(|i| args.get(i + 1)).and_then(|s| s.parse().ok()).unwrap_or(10.0);
    let reference = args.iter().any(|a| a == "--reference");
    // Tuning aid: skip the (slow) stock baseline and the streaming rows.
    let ours_only = args.iter().any(|a| a == "--ours-only");
    let models_dir = root().join("models");
    let out_dir = root().join("target/bench");
    std::fs::create_dir_all(&out_dir).unwrap();
    let audio = speech(seconds);
    let mut rows = Vec::new();
    let mut layers_json = BTreeMap::new();
    let mut reference_json = serde_json::Value::Null;
    let mut live_json = BTreeMap::new();

    for (name, file) in [
        ("HiFi-GAN V1 universal", "hifigan_v1_universal.safetensors"),
        ("GRC-MRF distilled", "grc_mrf_distilled.safetensors"),
        ("GRC-MRF causal", "grc_mrf_causal.safetensors"),
    ] {
        let path = models_dir.join(file);
        let loaded = vocoder::load_vocoder(&path, None, &Device::Cpu).unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask models`)", path.display()));
        let fast = Arc::new(vocoder::model::rebuild_with_kernels(&loaded, Kernels::Fast).unwrap());
        let stock = vocoder::model::rebuild_with_kernels(&loaded, Kernels::Stock).unwrap();
        drop(loaded);
        let (mel, frames) = MelFrontEnd::new(fast.config()).mel(&audio);
        let mel_t = Tensor::from_slice(&mel, (1, fast.config().num_mels, frames), &Device::Cpu).unwrap();
        let secs = (frames * fast.config().hop_size) as f64 / fast.config().sampling_rate as f64;
        println!("\n## {name}: {} parameters, {secs:.1} s of audio ({frames} frames)", fast.param_count());

        if reference && name.starts_with("HiFi-GAN") {
            let mel_file = out_dir.join("mel.safetensors");
            let data: Vec<u8> = mel.iter().flat_map(|v| v.to_le_bytes()).collect();
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1, fast.config().num_mels, frames], &data).unwrap();
            safetensors::serialize_to_file([("mel", view)], None, &mel_file).unwrap();
            let script = root().join("scripts/bench_reference.py");
            let out = std::process::Command::new("python3").arg(&script).arg("--model").arg(&path).arg("--mel").arg(&mel_file).output();
            match out {
                Ok(o) if o.status.success() => {
                    reference_json = serde_json::from_slice(&o.stdout).expect("bench_reference.py prints JSON");
                    eprintln!("{}", String::from_utf8_lossy(&o.stderr));
                }
                Ok(o) => eprintln!("reference script failed: {}", String::from_utf8_lossy(&o.stderr)),
                Err(e) => eprintln!("reference script not run: {e}"),
            }
        }

        for threads in [1usize, 2] {
            set_threads(threads);
            forward(&fast, &mel_t.narrow(2, 0, frames.min(100)).unwrap());
            reset_peak_rss();
            let mut best = f64::INFINITY;
            let mut ours_out = Vec::new();
            for _ in 0..3 {
                let (t, y) = forward(&fast, &mel_t);
                best = best.min(t);
                ours_out = y;
            }
            let rss_ours = peak_rss_mib();
            if threads == 2 {
                kernels::profile_start();
                let (total, _) = forward(&fast, &mel_t);
                let prof = kernels::profile_take();
                let in_kernels: f64 = prof.values().map(|l| l.seconds).sum();
                println!("\nper layer (ours, {threads} threads, one forward of {total:.3} s):\n");
                println!("| layer | calls | seconds | share | GFLOP/s |\n| --- | ---: | ---: | ---: | ---: |");
                let mut entries: Vec<_> = prof.iter().collect();
                entries.sort_by(|a, b| b.1.seconds.total_cmp(&a.1.seconds));
                let mut lj = Vec::new();
                for (label, l) in entries {
                    println!("| {label} | {} | {:.4} | {:.1} % | {:.1} |", l.calls, l.seconds, 100.0 * l.seconds / total, l.flops / l.seconds / 1e9);
                    lj.push(serde_json::json!({"layer": label, "calls": l.calls, "seconds": l.seconds, "gflops": l.flops / l.seconds / 1e9}));
                }
                let flops: f64 = prof.values().map(|l| l.flops).sum();
                println!(
                    "| other (adds, tanh, copies) | | {:.4} | {:.1} % | |\n\nconv FLOPs {:.1} GFLOP per audio second; overall {:.1} GFLOP/s",
                    total - in_kernels,
                    100.0 * (total - in_kernels) / total,
                    flops / secs / 1e9,
                    flops / total / 1e9
                );
                layers_json.insert(name.to_string(), serde_json::Value::Array(lj));
            }
            if ours_only {
                println!("{name}, {threads} threads: ours {:.3} s per audio second", best / secs);
                continue;
            }
            reset_peak_rss();
            // The stock path is slow: one run (after a short warm-up).
            forward(&stock, &mel_t.narrow(2, 0, frames.min(20)).unwrap());
            let (stock_t, stock_out) = forward(&stock, &mel_t);
            let rss_stock = peak_rss_mib();
            let max_abs = ours_out.iter().zip(&stock_out).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            let key = if threads == 1 { "1" } else { "2" };
            let pick = |engine: &str| reference_json.get(engine).and_then(|e| e.get(key)).and_then(|v| v.as_f64()).map(|t| t / secs);
            let is_v1 = name.starts_with("HiFi-GAN");
            rows.push(Row {
                model: name.into(),
                case: format!("{seconds:.0} s batch"),
                threads,
                ours: best / secs,
                stock: Some(stock_t / secs),
                torch: if is_v1 { pick("torch") } else { None },
                ort: if is_v1 { pick("onnxruntime") } else { None },
                rss_ours,
                rss_stock,
                max_abs: Some(max_abs),
            });
        }
        if ours_only {
            continue;
        }
        // Streaming: 80 ms chunks through the explicit streaming state, one thread (the worker's own budget).
        set_threads(1);
        let stream_audio = &audio[..audio.len().min(22_050 * 5)];
        let ours = streaming_rtf(fast.clone(), stream_audio, 80);
        let stock_arc = Arc::new(stock);
        let stock_rtf = streaming_rtf(stock_arc, &audio[..audio.len().min(22_050 * 2)], 80);
        rows.push(Row {
            model: name.into(),
            case: "80 ms streaming".into(),
            threads: 1,
            ours,
            stock: Some(stock_rtf),
            torch: None,
            ort: None,
            rss_ours: None,
            rss_stock: None,
            max_abs: None,
        });
        // The real-time worker's setting (window: "threads"): live RTF at every Latency choice
        // with its kernels on 1 and 2 threads (the same bits either way; engine tests).
        let mut live = Vec::new();
        for ms in LATENCY_CHOICES_MS {
            let mut per_threads = [0.0f64; 2];
            for (i, threads) in [1usize, 2].into_iter().enumerate() {
                set_threads(threads);
                per_threads[i] = streaming_rtf(fast.clone(), stream_audio, ms);
            }
            live.push((ms, per_threads));
        }
        set_threads(1);
        println!("\n{name}: live RTF per Latency choice (worker threads)\n");
        println!("| Latency | 1 thread | 2 threads | 1 → 2 |\n| ---: | ---: | ---: | ---: |");
        for (ms, [a, b]) in &live {
            println!("| {ms} ms | {a:.3} | {b:.3} | {:.2}× |", a / b);
        }
        live_json.insert(
            name.to_string(),
            serde_json::Value::Array(live.iter().map(|(ms, [a, b])| serde_json::json!({"latency_ms": ms, "rtf_1_thread": a, "rtf_2_threads": b})).collect()),
        );
    }

    println!("\n## Real-time factor (compute seconds per audio second; lower is faster)\n");
    println!("| model | case | threads | ours | stock candle | ours/stock | PyTorch eager | ours/PyTorch | onnxruntime | ours/onnxruntime | peak RSS ours / stock (MiB) | max abs vs stock |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut rows_json = Vec::new();
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.3} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.model,
            r.case,
            r.threads,
            r.ours,
            fmt(r.stock),
            ratio(r.ours, r.stock),
            fmt(r.torch),
            ratio(r.ours, r.torch),
            fmt(r.ort),
            ratio(r.ours, r.ort),
            match (r.rss_ours, r.rss_stock) {
                (Some(a), Some(b)) => format!("{a:.0} / {b:.0}"),
                _ => "–".into(),
            },
            r.max_abs.map(|m| format!("{m:.1e}")).unwrap_or_else(|| "–".into()),
        );
        rows_json.push(serde_json::json!({
            "model": r.model, "case": r.case, "threads": r.threads, "rtf_ours": r.ours, "rtf_stock": r.stock,
            "rtf_torch": r.torch, "rtf_onnxruntime": r.ort, "peak_rss_mib_ours": r.rss_ours,
            "peak_rss_mib_stock": r.rss_stock, "max_abs_vs_stock": r.max_abs,
        }));
    }
    let v1 = rows.iter().find(|r| r.threads == 2 && r.case.ends_with("batch") && r.model.starts_with("HiFi"));
    let grc = rows.iter().find(|r| r.threads == 2 && r.case.ends_with("batch") && r.model.starts_with("GRC"));
    if let (Some(a), Some(b)) = (v1, grc) {
        println!("\nGRC-MRF distilled is {:.2}× faster than V1 (ours, 2 threads, batch)", a.ours / b.ours);
    }
    let one = rows.iter().find(|r| r.threads == 1 && r.case.ends_with("batch") && r.model.starts_with("HiFi"));
    if let (Some(a), Some(b)) = (one, v1) {
        println!("V1 scaling 1 → 2 threads: {:.2}×", a.ours / b.ours);
    }
    let json = serde_json::json!({"seconds": seconds, "rows": rows_json, "layers": layers_json, "live_worker_threads": live_json, "reference": reference_json});
    std::fs::write(out_dir.join("speed.json"), serde_json::to_string_pretty(&json).unwrap()).unwrap();
    println!("\nwritten: {}", out_dir.join("speed.json").display());
}
