//! The `streamspeech-vocoder` command, run as users run it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn fixtures() -> PathBuf {
    root().join("vocoder/tests/fixtures")
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_streamspeech-vocoder")).args(args).current_dir(root()).output().expect("runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn inspect_real_checkpoint_exits_0() {
    let o = run(&["inspect", "models/hifigan_v1_universal.safetensors"]);
    let s = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{s}{}", String::from_utf8_lossy(&o.stderr));
    assert!(s.contains("every model parameter loaded") && s.contains("health: healthy") && s.contains("loads and is healthy"), "{s}");
}

#[test]
fn inspect_complex_grc_exits_2_and_names_the_causes() {
    let p = fixtures().join("grc_complex/checkpoint.pth");
    let o = run(&["inspect", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let s = stdout(&o);
    assert!(s.contains("grouped convolutions: groups=4") && s.contains("will not load"), "{s}");
    assert!(s.contains("mrfs.2.convs.2.lora_conv2.lora_B [4,4]"), "{s}");

    let o = run(&["inspect", p.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("--json prints one JSON object");
    assert_eq!(v["report"]["checkpoint_keys"], 224);
    assert_eq!(v["report"]["shape_mismatches"].as_array().unwrap().len(), 18);
    assert!(v["report"]["hints"].as_array().unwrap().len() >= 4);
    assert_eq!(v["inferred"]["family"], "GrcMrf");
}

#[test]
fn inspect_finds_sidecar_config_or_takes_explicit_one() {
    let p = fixtures().join("v1_tiny/model_legacy.pth");
    let s = stdout(&run(&["inspect", p.to_str().unwrap()]));
    assert!(s.contains("(beside the checkpoint)") && s.contains("every model parameter loaded"), "{s}");
    // A tiny random-weight model loads but is not a healthy vocoder: exit 2 with the verdict.
    let o = run(&["inspect", p.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["health"]["healthy"], false);
    assert_eq!(o.status.code(), Some(2));
    let cfg = fixtures().join("grc_tiny/config.json");
    let s = stdout(&run(&["inspect", p.to_str().unwrap(), "--config", cfg.to_str().unwrap()]));
    assert!(s.contains("(given)") && s.contains("family: the checkpoint is a HiFi-GAN generator"), "{s}");
}

#[test]
fn inspect_broken_files_exit_2_without_panicking() {
    for f in ["truncated.safetensors", "wrong_dtype.safetensors", "nan_weight.safetensors", "missing_tensor.safetensors"] {
        let p = fixtures().join("broken").join(f);
        let o = run(&["inspect", p.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{f}");
        assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"), "{f}");
    }
    let o = run(&["inspect", "/nonexistent/model.pth"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).contains("cannot read /nonexistent/model.pth"));
}

#[test]
fn convert_writes_one_file_and_refuses_to_overwrite() {
    let dir = std::env::temp_dir().join(format!("ssv-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("grc.safetensors");
    let src = fixtures().join("grc_tiny/model_legacy.pth");
    let o = run(&["convert", src.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let s = stdout(&run(&["inspect", out.to_str().unwrap()]));
    assert!(s.contains("config: embedded in the file") && s.contains("every model parameter loaded"), "{s}");
    let o = run(&["convert", src.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    let o = run(&["convert", src.to_str().unwrap(), "-o", out.to_str().unwrap(), "--force"]);
    assert_eq!(o.status.code(), Some(0));
    let complex = fixtures().join("grc_complex/checkpoint.pth");
    let bad = dir.join("complex.safetensors");
    let o = run(&["convert", complex.to_str().unwrap(), "-o", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!bad.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn models_fetch_is_idempotent_and_list_names_the_default() {
    let o = run(&["models", "fetch"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).contains("already present"), "{}", stdout(&o));
    let o = run(&["models", "list", "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v.as_array().unwrap();
    let universal = rows.iter().find(|r| r["file"].as_str().unwrap().ends_with("hifigan_v1_universal.safetensors")).unwrap();
    assert_eq!(universal["default_for"], "original");
    assert_eq!(universal["status"], "ok");
    assert_eq!(universal["sha256"].as_str().unwrap().len(), 64);
    let student = rows.iter().find(|r| r["file"].as_str().unwrap().ends_with("grc_mrf_distilled.safetensors")).unwrap();
    assert_eq!(student["default_for"], "modified", "the list names the default of each mode slot");
    assert_eq!(student["family"], "grc-mrf");
    assert_eq!(student["status"], "ok");
    let causal = rows.iter().find(|r| r["file"].as_str().unwrap().ends_with("grc_mrf_causal.safetensors")).unwrap();
    assert_eq!(causal["default_for"], "modified (low latency)");
    assert_eq!(causal["status"], "ok");
}

/// `models install` copies the model files into the folder the plugin reads (here redirected by
/// `$STREAMSPEECH_VOCODER_MODELS`), byte for byte; an empty or missing folder is a clear error.
#[test]
fn models_install_copies_the_models_where_the_plugin_reads_them() {
    let dest = root().join("target/cli-test-models-install");
    let _ = std::fs::remove_dir_all(&dest);
    let o = Command::new(env!("CARGO_BIN_EXE_streamspeech-vocoder"))
        .args(["models", "install"])
        .env("STREAMSPEECH_VOCODER_MODELS", &dest)
        .current_dir(root())
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for name in ["hifigan_v1_universal.safetensors", "grc_mrf_distilled.safetensors", "grc_mrf_causal.safetensors"] {
        let a = std::fs::read(root().join("models").join(name)).expect("default model present (cargo xtask models)");
        let b = std::fs::read(dest.join(name)).unwrap_or_else(|e| panic!("{name} not installed: {e}"));
        assert!(a == b, "{name} differs after install");
    }
    let empty = root().join("target/cli-test-models-empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_streamspeech-vocoder"))
        .args(["models", "install", "--dir", empty.to_str().unwrap()])
        .env("STREAMSPEECH_VOCODER_MODELS", &dest)
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no model files"));
}

/// One unreadable file is that file's row: the listing goes on, exit 0.
#[test]
fn models_list_survives_bad_files() {
    let dir = root().join("target/cli-test-models-list-hostile");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(root().join("models/grc_mrf_distilled.safetensors"), dir.join("good.safetensors")).unwrap();
    std::fs::write(dir.join("garbage.safetensors"), b"\x80\x02not a pickle at all").unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.safetensors")).unwrap();
    std::fs::create_dir(dir.join("folder.safetensors")).unwrap();
    let o = run(&["models", "list", "--json", "--dir", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let status = |name: &str| {
        v.as_array().unwrap().iter().find(|r| r["file"].as_str().unwrap().ends_with(name)).map(|r| r["status"].as_str().unwrap().to_string()).unwrap()
    };
    assert_eq!(status("good.safetensors"), "ok");
    assert!(status("garbage.safetensors").contains("not a PyTorch file"), "{}", status("garbage.safetensors"));
    assert!(status("zero.safetensors").contains("not a regular file"), "{}", status("zero.safetensors"));
    assert!(status("folder.safetensors").contains("folder"), "{}", status("folder.safetensors"));
    std::fs::remove_dir_all(&dir).unwrap();
}
