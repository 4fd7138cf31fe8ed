//! Project tasks. `cargo xtask bundle ...` is nice-plug's bundler; the other commands are ours.
//!
//! - `cargo xtask bundle streamspeech_vocoder [--release]`: build the CLAP and VST3 bundles into
//!   `target/bundled/` (names from `bundler.toml`).
//! - `cargo xtask test`: the project's whole test suite, exactly what CI runs. It first fetches the
//!   default models (idempotent), then builds the host-test bundle (debug, `assert_process_allocs` + `host-test-slots`) so the host tests never
//!   load a stale bundle, the standalone (for the window test) and the CUDA build (for its CPU
//!   fallback test), then runs `cargo test --workspace`.
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
//! - `cargo xtask build --cuda`: the CUDA build of the CLI and the CLAP/VST3 bundles
//!   into `target/cuda/` on a machine without a GPU or a system CUDA toolkit (nvcc from PyPI's
//!   NVIDIA wheels); it starts and runs on the CPU where there is no driver. See `build_cuda`.
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
        Some("build") if args[1..].iter().any(|a| a == "--cuda") => build_cuda(),
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
    // The CUDA build's CPU fallback is tested on this GPU-less machine (tests/tests/cuda_build.rs).
    build_cuda()?;
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
/// The CUDA toolkit the CUDA build compiles with: NVIDIA's PyPI wheels, pinned. CUDA 13 because
/// it is the only major version whose wheels carry `nvcc` itself (the CUDA 12 `nvidia-cuda-nvcc-cu12`
/// wheels hold `ptxas` alone); 13.0, its first release, because candle loads its kernels as PTX,
/// which the driver compiles at first use and only when it is at least as new as the PTX: 13.0
/// runs on every driver since R580. cudarc 0.19 (candle 0.11's) supports 13.0.
const CUDA_WHEELS: [&str; 5] = [
    "nvidia-cuda-nvcc==13.0.88",
    "nvidia-nvvm==13.0.88",
    "nvidia-cuda-crt==13.0.88",
    "nvidia-cuda-runtime==13.0.96",
    "nvidia-cuda-cccl==13.0.85",
];
/// The compute capability the kernels are compiled for: candle's kernels ship as PTX for
/// `compute_80`, which the driver JIT-compiles for every GPU of capability 8.0 or newer — 8.0
/// (A100), 8.6 (A10, RTX 30), 8.9 (L4, L40, RTX 40), 9.0 (H100, H200) and later — and caches.
/// (candle's build takes one capability; PTX is how one build covers them all.)
const CUDA_COMPUTE_CAP: &str = "80";
/// The candle version whose CUDA linking the build switches to dynamic loading.
const CANDLE_VERSION: &str = "0.11.1";

/// `cargo xtask build --cuda`: the CLI and the plugin bundles (release) with candle's CUDA
/// backend, into `target/cuda/release/` and `target/cuda/bundled/`.
///
/// - The toolkit: the pinned wheels of [`CUDA_WHEELS`] installed with pip into
///   `target/cuda-toolkit/` (once); no system CUDA, no GPU needed to build.
/// - Starting without a driver: candle 0.11 links cudarc with `dynamic-linking`, which puts
///   `libcuda.so.1`, cuBLAS, cuBLASLt and cuRAND into the binary's needed libraries, so the binary
///   would not even start on a machine without them (huggingface/candle#3900). The build gives
///   cargo a copy of candle-core's crates.io source from the local registry, in
///   `target/cuda-patch/`, with that one feature switched to cudarc's `dynamic-loading` (the
///   change upstream is making), as a `[patch]` for this build only; `Cargo.lock` is restored
///   after. The libraries are then loaded when a GPU is asked for, after `vocoder::device` has
///   checked they exist.
/// - candle's kernels library needs the CUDA runtime (`libcudart.so.13`, which itself loads the
///   driver only when used): it is copied next to the binary and into each bundle (the binaries
///   look beside themselves, `$ORIGIN`), with NVIDIA's license (the runtime is redistributable
///   under the CUDA EULA).
fn build_cuda() -> Result<()> {
    let profile = "release";
    let root = std::env::current_dir()?;
    let toolkit = root.join("target/cuda-toolkit");
    let cuda = toolkit.join("nvidia/cu13");
    if !cuda.join("bin/nvcc").is_file() || !cuda.join("nvvm/bin/cicc").is_file() {
        println!("Installing the CUDA toolkit wheels into {} ...", toolkit.display());
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--no-deps", "--upgrade", "--target"])
            .arg(&toolkit)
            .args(CUDA_WHEELS)
            .status()
            .context("could not run python3 -m pip")?;
        if !status.success() {
            bail!("pip could not install the CUDA toolkit wheels ({status})");
        }
    }
    // Wheels do not always keep the executable bits.
    for dir in ["bin", "nvvm/bin"] {
        for e in std::fs::read_dir(cuda.join(dir))? {
            let p = e?.path();
            if p.is_file() {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
            }
        }
    }
    let cudart = cuda.join("lib/libcudart.so.13");
    let link = cuda.join("lib/libcudart.so");
    if !link.exists() {
        std::os::unix::fs::symlink("libcudart.so.13", &link)?;
    }

    let patched = patch_candle_core(&root)?;
    let path = format!("{}:{}", cuda.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let patch = format!("patch.crates-io.candle-core.path={:?}", patched.display().to_string());
    let lock = std::fs::read(root.join("Cargo.lock"))?;
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "-p", "streamspeech-cli", "-p", PLUGIN_PACKAGE, "--features", "streamspeech-cli/cuda,streamspeech_vocoder/cuda"])
        .args(["--target-dir", "target/cuda", "--config", &patch])
        .env("PATH", path)
        .env("CUDA_HOME", &cuda)
        .env("CUDA_PATH", &cuda)
        .env("CUDA_COMPUTE_CAP", CUDA_COMPUTE_CAP)
        .env("LIBRARY_PATH", cuda.join("lib"))
        .env("RUSTFLAGS", "-C link-arg=-Wl,-rpath,$ORIGIN")
        .arg("--release");
    let status = cmd.status().context("could not run cargo");
    // The patch is this build's alone: the workspace's lock file stays as committed.
    std::fs::write(root.join("Cargo.lock"), &lock)?;
    if !status?.success() {
        bail!("the CUDA build failed");
    }
    nice_plug_xtask::bundle(Path::new("target/cuda"), PLUGIN_PACKAGE, &["--release".to_string()], false)?;

    // The CUDA runtime beside each binary that needs it, with its license.
    let license = std::fs::read_dir(&toolkit)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("nvidia_cuda_runtime-")))
        .map(|d| d.join("licenses/License.txt"))
        .filter(|p| p.is_file());
    let mut places = vec![root.join("target/cuda").join(profile), root.join("target/cuda/bundled")];
    for e in std::fs::read_dir(root.join("target/cuda/bundled"))? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "vst3") {
            places.push(p.join("Contents/x86_64-linux"));
        }
    }
    for dir in &places {
        std::fs::copy(&cudart, dir.join("libcudart.so.13")).with_context(|| format!("copying the CUDA runtime into {}", dir.display()))?;
        if let Some(l) = &license {
            std::fs::copy(l, dir.join("libcudart.LICENSE.txt"))?;
        }
    }
    println!(
        "CUDA build ({profile}, CUDA 13.0, PTX for compute capability {}.{} and newer):\n  {}\n  {}",
        &CUDA_COMPUTE_CAP[..1],
        &CUDA_COMPUTE_CAP[1..],
        root.join("target/cuda").join(profile).join("streamspeech-vocoder").display(),
        root.join("target/cuda/bundled").display()
    );
    Ok(())
}

/// Copies candle-core's crates.io source (the one the workspace resolves, from cargo's local
/// registry) into `target/cuda-patch/` with cudarc's `dynamic-linking` feature switched to
/// `dynamic-loading`, and returns its folder. Refuses any other candle version: the switch is
/// checked against 0.11.1's manifest, where the feature appears exactly once.
fn patch_candle_core(root: &Path) -> Result<PathBuf> {
    let out = Command::new(env!("CARGO")).args(["metadata", "--format-version", "1"]).output().context("could not run cargo metadata")?;
    let meta = String::from_utf8_lossy(&out.stdout);
    let tail = format!("/candle-core-{CANDLE_VERSION}/Cargo.toml\"");
    let end = meta.find(&tail).with_context(|| format!("candle-core {CANDLE_VERSION} is not in the workspace's dependencies; update build_cuda's patch"))?;
    let start = meta[..end].rfind('"').context("cargo metadata")? + 1;
    let source = PathBuf::from(&meta[start..end + tail.len() - "/Cargo.toml\"".len()]);
    let dest = root.join("target/cuda-patch").join(format!("candle-core-{CANDLE_VERSION}"));
    if dest.exists() {
        std::fs::remove_dir_all(&dest)?;
    }
    copy_tree(&source, &dest)?;
    let manifest = dest.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)?;
    if text.matches("\"dynamic-linking\"").count() != 1 {
        bail!("{}: expected cudarc's \"dynamic-linking\" feature exactly once", manifest.display());
    }
    std::fs::write(&manifest, text.replace("\"dynamic-linking\"", "\"dynamic-loading\""))?;
    Ok(dest)
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type()?.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

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
