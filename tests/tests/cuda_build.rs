//! The CUDA build (`cargo xtask build --cuda`, which `cargo xtask test` runs first) on a machine
//! without a GPU, NVIDIA driver or CUDA libraries — CI's, and this project's build machines: it
//! starts, says why it uses the CPU, and renders exactly what it renders when told to use the
//! CPU, from the CLI and from its plugin bundle alike. On a machine where a GPU answers this
//! file has nothing to prove (the fallback does not happen): it fails, saying so, rather than
//! pass without testing the fallback — run `scripts/gpu_check.sh` there instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use clack_host::prelude::PluginEntry;
use host_tests::clap_host::ClapPlugin;
use streamspeech_cli::audio_io::{self, Audio, Bits};

const CLIP: &str = "tests/data/es_librivox_cuentosdehadas03_14_grimm.wav";

fn cuda_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| host_tests::workspace_root().join("target"));
    target.join("cuda")
}

fn cuda_cli() -> PathBuf {
    let bin = cuda_dir().join("release/streamspeech-vocoder");
    assert!(bin.is_file(), "{} is missing: `cargo xtask build --cuda` builds it (`cargo xtask test` does first)", bin.display());
    bin
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("streamspeech-cuda-build-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Two seconds of the demo clip (22.05 kHz mono).
fn clip(dir: &Path) -> (PathBuf, Audio) {
    let a = audio_io::read_audio(&host_tests::workspace_root().join(CLIP)).expect("the demo clip");
    let a = Audio { rate: a.rate, channels: vec![a.channels[0][..2 * a.rate as usize].to_vec()] };
    let p = dir.join("in.wav");
    audio_io::write_wav(&p, &a, Bits::Float32, true).unwrap();
    (p, a)
}

fn render(input: &Path, out: &Path, device: &str) -> (std::process::Output, Audio) {
    let o = Command::new(cuda_cli())
        .arg("render")
        .arg(input)
        .arg("-o")
        .arg(out)
        .args(["--mode", "original", "--bits", "32", "--force", "--device", device, "--models-dir"])
        .arg(host_tests::workspace_root().join("models"))
        .output()
        .expect("the CUDA build's CLI runs");
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "--device {device}: the CUDA build must render on the CPU here: {text}");
    let audio = audio_io::read_audio(out).expect("the render's output");
    (o, audio)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn the_cuda_cli_starts_without_a_driver_and_falls_back_to_the_cpu() {
    let dir = scratch("cli");
    let (input, _) = clip(&dir);
    let (cpu_o, cpu) = render(&input, &dir.join("cpu.wav"), "cpu");
    assert!(!stderr(&cpu_o).contains("GPU"), "--device cpu says nothing about GPUs: {}", stderr(&cpu_o));

    let (gpu_o, gpu) = render(&input, &dir.join("gpu.wav"), "gpu");
    let e = stderr(&gpu_o);
    assert!(
        !e.contains("device: GPU"),
        "a GPU answered on this machine: the fallback cannot be tested here (run scripts/gpu_check.sh instead): {e}"
    );
    assert!(e.contains("warning: GPU unavailable") && e.contains("using the CPU"), "--device gpu says why it uses the CPU: {e}");
    assert!(e.contains("libcuda.so.1"), "it names what is missing (the driver): {e}");
    assert!(!e.contains("no GPU support"), "this is the CUDA build: {e}");
    assert_eq!(gpu.channels, cpu.channels, "the fallback runs exactly the CPU path");

    let (auto_o, auto) = render(&input, &dir.join("auto.wav"), "auto");
    assert!(stderr(&auto_o).contains("note: GPU unavailable"), "--device auto notes the fallback: {}", stderr(&auto_o));
    assert_eq!(auto.channels, cpu.channels);

    // The GPU check's CPU half runs; asked to insist on a GPU, it refuses clearly (exit 3).
    let o = Command::new(cuda_cli())
        .args(["device-check", "--quick", "--require-gpu", "--models-dir"])
        .arg(host_tests::workspace_root().join("models"))
        .arg("--root")
        .arg(host_tests::workspace_root())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("--require-gpu") && stderr(&o).contains("libcuda.so.1"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_cuda_plugin_bundle_loads_without_a_driver_and_bounces_on_the_cpu() {
    let dir = scratch("plugin");
    let (input, audio) = clip(&dir);
    let (_, cli) = render(&input, &dir.join("cli.wav"), "cpu");
    let bundle = cuda_dir().join(format!("bundled/{}.clap", host_tests::BUNDLE_NAME));
    assert!(bundle.is_file(), "{} is missing: `cargo xtask build --cuda` builds it", bundle.display());
    host_tests::clap_host::use_models(true);
    // SAFETY: loading the CUDA build of our own plugin.
    let entry = unsafe { PluginEntry::load(&bundle) }.expect("the CUDA bundle loads (libcudart beside it, no driver needed)");
    for device in ["gpu", "auto"] {
        let mut p = ClapPlugin::new(&entry);
        p.set_device(device);
        p.set_offline(true);
        p.select_channels(1);
        p.activate(audio.rate as f64, 1, 512);
        let lat = p.latency() as usize;
        let padded = vec![audio.channels[0].iter().copied().chain(std::iter::repeat_n(0.0, lat)).collect::<Vec<f32>>()];
        let out = p.render(&padded, &[512], &[]);
        p.deactivate();
        let bounce = &out[0][lat..lat + audio.frames()];
        let err = bounce.iter().zip(&cli.channels[0]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        // The offline engine renders exactly: the CLI's render and the bounce agree to rounding.
        assert!(err <= 1e-5, "device={device}: the CUDA bundle's bounce vs the CLI's CPU render: max abs {err:e}");
        assert!(bounce.iter().map(|x| x.abs()).fold(0.0, f32::max) > 0.05, "device={device}: speech came out");
    }
    std::fs::remove_dir_all(&dir).ok();
}
