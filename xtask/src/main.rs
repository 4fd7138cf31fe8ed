//! Project tasks. `cargo xtask bundle ...` is nice-plug's bundler; the other commands are ours.
//!
//! - `cargo xtask bundle streamspeech_vocoder [--release]`: build the CLAP and VST3 bundles into
//!   `target/bundled/` (names from `bundler.toml`).
//! - `cargo xtask test`: the project's whole test suite, exactly what CI runs. It first fetches the
//!   default models (idempotent), then builds the host-test bundle (debug, `assert_process_allocs` + `host-test-slots`) so the host tests never
//!   load a stale bundle, and the standalone (for the window test), then runs `cargo test --workspace`.
//! - `cargo xtask screenshot [--seconds S]`: build the standalone (release) and take a screenshot
//!   of the window with speech playing (`scripts/window_screenshot.py`, into `target/window/`).
//! - `cargo xtask install`: bundle in release, copy the bundles into the user's plugin folders and
//!   the default models into the folder the plugin reads (`streamspeech-vocoder models install`).
//! - `cargo xtask models`: fetch and convert the default models into `models/`.
//! - `cargo xtask demo [INPUT] [--switch SECONDS] [--out DIR]`: the README's main job: fetch the
//!   models, bundle the plugin (release), and bounce a demo clip through the **bundled** plugin
//!   with Mode automated Original → Modified, writing the WAV and the report (default
//!   `target/demo/`).
//! - `cargo xtask bench [--reference] [--seconds S]`: the CPU speed benchmark (release), ours vs
//!   stock candle (and, with `--reference`, PyTorch and onnxruntime through
//!   `scripts/bench_reference.py`); see `engine/benches/speed.rs`.
//! - `cargo xtask bench-translate [--seconds S] [--reference --python PY --streamspeech DIR]`: the
//!   translator's speed and memory with the full-size generated es→en model and CodeHiFiGAN (and
//!   upstream PyTorch on the same files); see `cli/benches/translate.rs`.
//! - `cargo xtask bench-simultaneous [--seconds S] [--segment-ms MS] [--reference --python PY
//!   --streamspeech DIR]`: per-segment compute of simultaneous translation on one thread (and
//!   upstream's agent on the same files); see `cli/benches/simultaneous.rs`.
//! - `cargo xtask bench-render [--seconds S] [--no-reference]`: the whole CLI `render` and a plugin
//!   offline bounce (bundled CLAP) against the bare whole-file forwards, ours and onnxruntime's, in
//!   the same run; see `tests/src/bin/bench_render.rs`.
//! - `cargo xtask bench-live [--seconds 600] [--threads 1,2] [--unheard spin-up,compute]`: V1 in
//!   both slots through the bundled plugin, paced real time, Mode switching every 2 s: CPU load
//!   and underruns as a host sees them; see `tests/src/bin/bench_live.rs`.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

const PLUGIN_PACKAGE: &str = "streamspeech_vocoder";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    nice_plug_xtask::chdir_workspace_root()?;
    match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("bundle-host-test") => bundle_host_test(),
        Some("install") => install(),
        Some("models") => fetch_models(),
        Some("bench") => bench(&args[1..]),
        Some("bench-translate") => bench_translate(&args[1..]),
        Some("bench-simultaneous") => bench_simultaneous(&args[1..]),
        Some("bench-render") => bench_render(&args[1..]),
        Some("bench-live") => bench_live(&args[1..]),
        Some("demo") => demo(&args[1..]),
        Some("screenshot") => screenshot(&args[1..]),
        _ => nice_plug_xtask::main_with_args("cargo xtask", args),
    }
}

/// The bundle the host tests load: debug build (so `assert_process_allocs` is armed) with the
/// diagnostic slot outputs the tests use to see where a mode change lands.
fn bundle_host_test() -> Result<()> {
    nice_plug_xtask::main_with_args(
        "cargo xtask",
        [
            "bundle".to_string(),
            PLUGIN_PACKAGE.to_string(),
            "--features".to_string(),
            "assert_process_allocs,host-test-slots".to_string(),
        ],
    )
}

fn cargo(args: &[&str]) -> Result<()> {
    let status = Command::new(env!("CARGO")).args(args).status().context("could not run cargo")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Fetches and converts the default models into `models/` (idempotent).
fn fetch_models() -> Result<()> {
    cargo(&["run", "--quiet", "-p", "streamspeech-cli", "--", "models", "fetch"])
}

fn test(extra: &[String]) -> Result<()> {
    // The real-weight tests need the default models; they fail (never skip) without them.
    fetch_models()?;
    bundle_host_test()?;
    // The window test opens the standalone build (tests/tests/window.rs).
    cargo(&["build", "-p", PLUGIN_PACKAGE, "--features", "standalone", "--bin", "streamspeech-vocoder-standalone"])?;
    let status = Command::new(env!("CARGO"))
        .args(["test", "--workspace"])
        .args(extra)
        .status()
        .context("could not run cargo test")?;
    if !status.success() {
        bail!("cargo test failed ({status})");
    }
    Ok(())
}

fn demo(extra: &[String]) -> Result<()> {
    run_with_release_bundle("demo_bounce", &[], extra)
}

/// Fetches the default models, builds the release plugin bundle and `host-tests` (plus `also`)
/// in one cargo build, then runs the `host-tests` binary `bin` with `extra`. One build: the
/// features of the shared dependencies unify, so candle and the rest compile once (bundling the
/// plugin alone, then building the host, would compile them twice with different feature sets).
fn run_with_release_bundle(bin: &str, also: &[&str], extra: &[String]) -> Result<()> {
    fetch_models()?;
    let release = ["--release".to_string()];
    let mut packages = vec![PLUGIN_PACKAGE.to_string(), "host-tests".to_string()];
    packages.extend(also.iter().map(|p| p.to_string()));
    nice_plug_xtask::build(&packages, &release)?;
    nice_plug_xtask::bundle(Path::new("target"), PLUGIN_PACKAGE, &release, false)?;
    let mut args = vec!["run", "--quiet", "--release", "-p", "host-tests", "--bin", bin, "--"];
    args.extend(extra.iter().map(String::as_str));
    cargo(&args)
}

fn screenshot(extra: &[String]) -> Result<()> {
    fetch_models()?;
    cargo(&["build", "--release", "-p", PLUGIN_PACKAGE, "--features", "standalone", "--bin", "streamspeech-vocoder-standalone"])?;
    let status = Command::new("python3")
        .args(["scripts/window_screenshot.py", "--standalone", "target/release/streamspeech-vocoder-standalone"])
        .args(extra)
        .status()
        .context("could not run python3")?;
    if !status.success() {
        bail!("the window screenshot failed its checks ({status}); see target/window/");
    }
    Ok(())
}

/// The translator's benchmark (`cli/benches/translate.rs`): needs no model files (it generates
/// the full-size checkpoints it measures).
fn bench_translate(extra: &[String]) -> Result<()> {
    let mut args = vec!["bench", "-p", "streamspeech-cli", "--bench", "translate", "--"];
    args.extend(extra.iter().map(String::as_str));
    cargo(&args)
}

/// The simultaneous benchmark (`cli/benches/simultaneous.rs`): generated full-size files, as
/// the translator's benchmark.
fn bench_simultaneous(extra: &[String]) -> Result<()> {
    let mut args = vec!["bench", "-p", "streamspeech-cli", "--bench", "simultaneous", "--"];
    args.extend(extra.iter().map(String::as_str));
    cargo(&args)
}

/// The offline render benchmark (`tests/src/bin/bench_render.rs`): the release CLI and the
/// release bundle in one cargo build (shared dependencies compile once), then the host.
fn bench_render(extra: &[String]) -> Result<()> {
    run_with_release_bundle("bench_render", &["streamspeech-cli"], extra)
}

/// The live benchmark through the bundled plugin (`tests/src/bin/bench_live.rs`).
fn bench_live(extra: &[String]) -> Result<()> {
    run_with_release_bundle("bench_live", &[], extra)
}

fn bench(extra: &[String]) -> Result<()> {
    fetch_models()?;
    let mut args = vec!["bench", "-p", "engine", "--bench", "speed", "--"];
    args.extend(extra.iter().map(String::as_str));
    cargo(&args)
}

/// Bundles in release, copies the bundles into the user's plugin folders and the default models
/// (fetched if needed) into the folder the plugin reads them from, so an installed plugin plays
/// its models in a DAW straight away.
fn install() -> Result<()> {
    fetch_models()?;
    nice_plug_xtask::main_with_args(
        "cargo xtask",
        ["bundle".into(), PLUGIN_PACKAGE.into(), "--release".into()],
    )?;
    let home = PathBuf::from(std::env::var("HOME").context("HOME is not set")?);
    let (clap_dir, vst3_dir) = if cfg!(target_os = "macos") {
        let base = home.join("Library/Audio/Plug-Ins");
        (base.join("CLAP"), base.join("VST3"))
    } else if cfg!(target_os = "windows") {
        let common = PathBuf::from(
            std::env::var("COMMONPROGRAMFILES").unwrap_or_else(|_| r"C:\Program Files\Common Files".into()),
        );
        (common.join("CLAP"), common.join("VST3"))
    } else {
        (home.join(".clap"), home.join(".vst3"))
    };
    let bundled = Path::new("target/bundled");
    for (name, dest) in [
        ("StreamSpeech Vocoder.clap", &clap_dir),
        ("StreamSpeech Vocoder.vst3", &vst3_dir),
    ] {
        std::fs::create_dir_all(dest)?;
        let from = bundled.join(name);
        let to = dest.join(name);
        copy_recursively(&from, &to).with_context(|| format!("copying {}", from.display()))?;
        eprintln!("installed {}", to.display());
    }
    // The default models into the folder the plugin reads (the CLI knows the rule).
    cargo(&["run", "--quiet", "-p", "streamspeech-cli", "--", "models", "install"])?;
    Ok(())
}

fn copy_recursively(from: &Path, to: &Path) -> Result<()> {
    if from.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_recursively(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else {
        std::fs::copy(from, to)?;
    }
    Ok(())
}
