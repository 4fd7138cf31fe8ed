//! Offline speed where users wait (issue #23, part 0): the whole CLI `render` and a plugin offline
//! bounce through the **bundled** CLAP plugin, against the bare whole-file forward of the same
//! model on the same mel, ours and onnxruntime's, all in the same run.
//!
//! `cargo xtask bench-render [--seconds 60] [--no-reference]` (builds the release CLI and bundle,
//! then runs `cargo run --release -p host-tests --bin bench_render -- ...`).
//!
//! - Input: S seconds (default 60) of real 22.05 kHz speech (the demo clip looped), mono; Mode
//!   Original (HiFi-GAN V1 universal), Latency 80 ms, the CLI's defaults otherwise.
//! - CLI: the release `streamspeech-vocoder render` as a user runs it (load, health check, mel,
//!   vocoder, write), wall time of the process.
//! - Plugin: the bundle in clack-host, CLAP render mode offline (as a DAW bounces), 512-sample
//!   blocks, latency removed; wall time of the render, and its max abs difference to the CLI's
//!   output (equal bit for bit when the engine is exact, tested in CI).
//! - Bare forwards: ours (`Vocoder::forward` over the whole mel, 1 and 2 kernel threads) and
//!   onnxruntime's (`scripts/bench_reference.py`, its graph from `scripts/onnx_hifigan.py`, 1 and 2
//!   intra-op threads; needs `pip install onnx onnxruntime safetensors numpy`).
//!
//! Results: printed as Markdown and written to `target/bench/render.json`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use candle_core::{Device, Tensor};
use host_tests::clap_host::{ClapPlugin, load_entry, use_models};
use streamspeech_cli::audio_io::{self, Audio, Bits};

const CLIP: &str = "tests/data/es_librivox_cuentosdehadas03_14_grimm.wav";

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn speech(root: &Path, seconds: f64) -> Audio {
    let clip = audio_io::read_audio(&root.join(CLIP)).expect("the demo clip");
    assert_eq!(clip.rate, 22_050, "the benchmark clip is 22.05 kHz");
    let n = (clip.rate as f64 * seconds) as usize;
    Audio { rate: clip.rate, channels: vec![clip.channels[0].iter().cycle().take(n).copied().collect()] }
}

fn cli_binary(root: &Path) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let bin = target.join("release/streamspeech-vocoder");
    assert!(bin.exists(), "{} is missing: run `cargo xtask bench-render`, which builds it", bin.display());
    bin
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "outputs of different lengths");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn main() {
    let root = host_tests::workspace_root();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: f64 = flag(&args, "--seconds").map(|s| s.parse().expect("--seconds S")).unwrap_or(60.0);
    let reference = !args.iter().any(|a| a == "--no-reference");
    let out_dir = root.join("target/bench/render");
    std::fs::create_dir_all(&out_dir).expect("output folder");
    let input = speech(&root, seconds);
    let input_wav = out_dir.join(format!("speech_{seconds:.0}s.wav"));
    audio_io::write_wav(&input_wav, &input, Bits::Float32, true).expect("input written");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("# Offline render speed: {seconds:.0} s of 22.05 kHz speech, Original (HiFi-GAN V1 universal), 80 ms, {cores} cores\n");

    // 1. The CLI as a user runs it.
    let cli_out = out_dir.join("cli.wav");
    let t0 = Instant::now();
    let status = Command::new(cli_binary(&root))
        .arg("render")
        .arg(&input_wav)
        .arg("-o")
        .arg(&cli_out)
        .args(["--mode", "original", "--latency-ms", "80", "--bits", "32", "--force", "--quiet", "--models-dir"])
        .arg(root.join("models"))
        .status()
        .expect("the CLI runs");
    let cli_seconds = t0.elapsed().as_secs_f64();
    assert!(status.success(), "the CLI render failed: {status}");
    let cli_audio = audio_io::read_audio(&cli_out).expect("the CLI's output");
    eprintln!("CLI render: {cli_seconds:.2} s");

    // 2. The bundled plugin, bounced offline as a DAW does.
    use_models(true);
    let entry = load_entry();
    let mut plugin = ClapPlugin::new(&entry);
    plugin.set_offline(true);
    plugin.select_channels(1);
    plugin.activate(input.rate as f64, 1, 512);
    let latency = plugin.latency() as usize;
    let padded = vec![input.channels[0].iter().copied().chain(std::iter::repeat_n(0.0, latency)).collect::<Vec<f32>>()];
    let t0 = Instant::now();
    let bounced = plugin.render(&padded, &[512], &[]);
    let plugin_seconds = t0.elapsed().as_secs_f64();
    plugin.deactivate();
    let bounce = &bounced[0][latency..latency + input.frames()];
    let plugin_vs_cli = max_abs_diff(bounce, &cli_audio.channels[0]);
    eprintln!("plugin bounce: {plugin_seconds:.2} s (latency {latency} samples), max abs diff to the CLI {plugin_vs_cli:e}");

    // 3. Bare whole-file forwards on the same mel: ours, then onnxruntime's.
    let model_path = root.join("models/hifigan_v1_universal.safetensors");
    let loaded = vocoder::load_vocoder(&model_path, None, &Device::Cpu).expect("the default V1 (run `cargo xtask models`)");
    let fast = vocoder::model::rebuild_with_kernels(&loaded, vocoder::Kernels::Fast).expect("fast kernels");
    drop(loaded);
    let cfg = fast.config();
    let (mel, frames) = vocoder::mel::MelFrontEnd::new(cfg).mel(&input.channels[0]);
    let mel_t = Tensor::from_slice(&mel, (1, cfg.num_mels, frames), &Device::Cpu).expect("mel tensor");
    let mut ours = Vec::new();
    for threads in [1usize, 2] {
        vocoder::kernels::set_threads(threads);
        fast.forward(&mel_t.narrow(2, 0, frames.min(64)).unwrap()).expect("warm-up");
        let t0 = Instant::now();
        fast.forward(&mel_t).expect("forward");
        ours.push((threads, t0.elapsed().as_secs_f64()));
        eprintln!("ours, bare forward, {threads} threads: {:.2} s", ours.last().unwrap().1);
    }
    let mut ort: Vec<(usize, f64)> = Vec::new();
    let mut reference_note = String::from("not run (--no-reference)");
    if reference {
        let mel_file = out_dir.join("mel.safetensors");
        let data: Vec<u8> = mel.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1, cfg.num_mels, frames], &data).unwrap();
        safetensors::serialize_to_file([("mel", view)], None, &mel_file).unwrap();
        let out = Command::new("python3")
            .arg(root.join("scripts/bench_reference.py"))
            .arg("--model")
            .arg(&model_path)
            .arg("--mel")
            .arg(&mel_file)
            .args(["--threads", "1,2", "--repeats", "1"])
            .output();
        match out {
            Ok(o) if o.status.success() => {
                eprint!("{}", String::from_utf8_lossy(&o.stderr));
                let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("bench_reference.py prints JSON");
                for t in [1usize, 2] {
                    if let Some(s) = json.get("onnxruntime").and_then(|r| r.get(t.to_string())).and_then(|v| v.as_f64()) {
                        ort.push((t, s));
                    }
                }
                reference_note = if ort.is_empty() { "onnxruntime not installed".into() } else { "onnxruntime (scripts/bench_reference.py)".into() };
            }
            Ok(o) => reference_note = format!("reference script failed: {}", String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("")),
            Err(e) => reference_note = format!("reference script not run: {e}"),
        }
    }
    let ort_best = ort.iter().map(|&(_, s)| s).fold(f64::INFINITY, f64::min);
    let ratio = |s: f64| if ort_best.is_finite() { format!("{:.2}", s / ort_best) } else { "–".into() };

    println!("| run | wall s | per audio second | × onnxruntime's best bare forward |\n| --- | ---: | ---: | ---: |");
    println!("| CLI `render` (load, health check, mel, vocoder, write) | {cli_seconds:.2} | {:.3} | {} |", cli_seconds / seconds, ratio(cli_seconds));
    println!(
        "| plugin offline bounce (CLAP, 512-sample blocks, latency {latency}) | {plugin_seconds:.2} | {:.3} | {} |",
        plugin_seconds / seconds,
        ratio(plugin_seconds)
    );
    for &(t, s) in &ours {
        println!("| ours, bare forward, {t} thread(s) | {s:.2} | {:.3} | {} |", s / seconds, ratio(s));
    }
    for &(t, s) in &ort {
        println!("| onnxruntime, bare forward, {t} thread(s) | {s:.2} | {:.3} | {} |", s / seconds, ratio(s));
    }
    println!("\nplugin bounce / CLI render: {:.2} (target ≤ 1.2); CLI render / onnxruntime's best: {} (target ≤ 1.0)", plugin_seconds / cli_seconds, ratio(cli_seconds));
    println!("plugin bounce vs CLI output: max abs diff {plugin_vs_cli:e}; reference: {reference_note}");
    let json = serde_json::json!({
        "seconds": seconds,
        "cores": cores,
        "cli_render_s": cli_seconds,
        "plugin_bounce_s": plugin_seconds,
        "plugin_latency_samples": latency,
        "plugin_vs_cli_max_abs_diff": plugin_vs_cli,
        "ours_bare_forward_s": ours.iter().map(|&(t, s)| (t.to_string(), s)).collect::<std::collections::BTreeMap<_, _>>(),
        "onnxruntime_bare_forward_s": ort.iter().map(|&(t, s)| (t.to_string(), s)).collect::<std::collections::BTreeMap<_, _>>(),
        "reference": reference_note,
    });
    std::fs::write(root.join("target/bench/render.json"), serde_json::to_string_pretty(&json).unwrap()).expect("render.json");
}
