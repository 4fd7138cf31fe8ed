//! Live load through the **bundled** plugin (issue #23's benchmark): HiFi-GAN V1 universal in
//! **both** Mode slots, 48 kHz mono, 512-sample blocks paced like a sound card (clack-host, CLAP
//! render mode real time), Mode automated every 2 s, for S seconds per case (default 600), for
//! each worker-threads × unheard-slot choice asked for.
//!
//! `cargo xtask bench-live [--seconds 600] [--threads 1,2] [--unheard spin-up,compute]`
//! (builds the release bundle, then `cargo run --release -p host-tests --bin bench_live -- ...`).
//!
//! What it reports per case, from outside the plugin as a host sees it:
//! - the reported latency;
//! - CPU load: the process's CPU time (user + system, `/proc/self/stat`) per second of audio, mean
//!   and the largest over 10-second windows. The host's own share is a copy per block; the rest is
//!   the plugin's worker (its kernels' threads included);
//! - underruns: output samples that are the delayed dry input bit for bit (the engine's fallback
//!   when the worker is late; with Mix 100 % and 0 dB a computed sample is never that), counted
//!   where the input is not exactly 0, with the number of separate runs of them.
//!
//! Results: printed as Markdown and written to `target/bench/live.json`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use host_tests::clap_host::{Automation, ClapPlugin, load_entry, state_bytes, state_json, use_models};
use streamspeech_cli::audio_io;

const RATE: u32 = 48_000;
const BLOCK: usize = 512;
const CLIP: &str = "tests/data/fr_cv_17767732.wav";

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

/// CPU seconds (user + system) this process has used so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat (Linux)");
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // Linux reports them in USER_HZ, which its ABI fixes at 100.
    ticks / 100.0
}

struct Case {
    threads: usize,
    unheard: String,
}

fn main() {
    let root = host_tests::workspace_root();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: f64 = flag(&args, "--seconds").map(|s| s.parse().expect("--seconds S")).unwrap_or(600.0);
    let threads: Vec<usize> = flag(&args, "--threads").unwrap_or_else(|| "1,2".into()).split(',').map(|t| t.parse().expect("--threads 1,2")).collect();
    let unheard: Vec<String> = flag(&args, "--unheard").unwrap_or_else(|| "spin-up,compute".into()).split(',').map(str::to_string).collect();
    let cases: Vec<Case> = unheard.iter().flat_map(|u| threads.iter().map(move |&t| Case { threads: t, unheard: u.clone() })).collect();

    let clip = audio_io::read_audio(&root.join(CLIP)).expect("the 48 kHz clip");
    assert_eq!(clip.rate, RATE);
    let n = (RATE as f64 * seconds) as usize;
    let x: Vec<f32> = clip.channels[0].iter().cycle().take(n).copied().collect();
    let v1 = root.join("models/hifigan_v1_universal.safetensors");
    assert!(v1.exists(), "{} is missing: run `cargo xtask models`", v1.display());

    use_models(true);
    let entry = load_entry();
    println!("# Live: V1 universal in both slots, {RATE} Hz, {BLOCK}-sample blocks paced, Mode switching every 2 s, {seconds:.0} s per case\n");
    println!("| unheard slot | threads | latency (ms) | CPU per audio second, mean | max (10 s windows) | underrun samples | underrun runs |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut rows = Vec::new();
    for case in &cases {
        let mut p = ClapPlugin::new(&entry);
        p.set_offline(false);
        p.select_channels(1);
        let mut state = state_json(&p.save_state());
        let fields = state["fields"].as_object_mut().expect("persisted fields");
        fields.insert("model-modified".into(), serde_json::json!(serde_json::to_string(&v1.to_string_lossy()).unwrap()));
        fields.insert("worker-threads".into(), serde_json::json!(format!("{{\"fixed\":{}}}", case.threads)));
        fields.insert("unheard".into(), serde_json::json!(format!("\"{}\"", case.unheard)));
        p.load_state(&state_bytes(&state));
        p.activate(RATE as f64, 1, BLOCK as u32);
        let latency = p.latency() as usize;
        let mode = p.param_id("Mode");
        let automation: Vec<Automation> =
            (1..).map(|k| k * 2 * RATE as u64).take_while(|&t| t < n as u64).enumerate().map(|(i, time)| Automation { time, id: mode, value: if i % 2 == 0 { 1.0 } else { 0.0 } }).collect();
        // CPU time sampled every 10 s while the paced render runs.
        let done = Arc::new(AtomicBool::new(false));
        let monitor = {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut windows = Vec::new();
                let (mut t_prev, mut c_prev) = (Instant::now(), cpu_seconds());
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    if t_prev.elapsed() >= Duration::from_secs(10) {
                        let (t, c) = (Instant::now(), cpu_seconds());
                        windows.push((c - c_prev) / (t - t_prev).as_secs_f64());
                        (t_prev, c_prev) = (t, c);
                    }
                }
                windows
            })
        };
        let (t0, c0) = (Instant::now(), cpu_seconds());
        let out = p.render_paced_with(std::slice::from_ref(&x), BLOCK, RATE as f64, &automation).remove(0);
        let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
        done.store(true, Ordering::Relaxed);
        let windows = monitor.join().expect("monitor");
        p.deactivate();
        // The engine's fallback plays the delayed dry input: those samples are it bit for bit.
        let dry = |i: usize| i >= latency && x[i - latency] != 0.0 && out[i].to_bits() == x[i - latency].to_bits();
        let underrun_samples = (0..n).filter(|&i| dry(i)).count();
        let underrun_runs = (0..n).filter(|&i| dry(i) && (i == 0 || !dry(i - 1))).count();
        let mean = cpu / seconds;
        let max = windows.iter().copied().fold(0.0, f64::max);
        let latency_ms = latency as f64 * 1000.0 / RATE as f64;
        println!(
            "| {} | {} | {latency_ms:.1} | {mean:.3} | {max:.3} | {underrun_samples} | {underrun_runs} |",
            case.unheard, case.threads
        );
        eprintln!("({} × {} threads: wall {wall:.1} s for {seconds:.0} s of audio)", case.unheard, case.threads);
        rows.push(serde_json::json!({
            "unheard": case.unheard, "threads": case.threads, "latency_samples": latency, "cpu_per_audio_second": mean,
            "cpu_max_10s": max, "underrun_samples": underrun_samples, "underrun_runs": underrun_runs, "wall_s": wall,
        }));
    }
    let json = serde_json::json!({"seconds": seconds, "rate": RATE, "block": BLOCK, "switch_every_s": 2, "rows": rows});
    std::fs::create_dir_all(root.join("target/bench")).unwrap();
    std::fs::write(root.join("target/bench/live.json"), serde_json::to_string_pretty(&json).unwrap()).expect("live.json");
}
