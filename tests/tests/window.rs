//! The plugin window, opened for real: the standalone build under Xvfb on a private JACK server
//! (dummy driver), speech looping into its input, the Mode button clicked halfway, and a
//! screenshot checked by `scripts/window_screenshot.py` (the window's size, and speech visible
//! in both live spectrograms). `cargo xtask test` builds the standalone first; the script needs
//! `xvfb jackd2 jack-tools xdotool` and Pillow, which `.ci/run` installs. It never skips: a
//! missing tool or binary fails the test with what to install or build.

use std::path::Path;
use std::process::Command;

#[test]
fn the_window_opens_and_shows_live_spectrograms_of_speech() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let bin = root.join("target/debug/streamspeech-vocoder-standalone");
    assert!(bin.is_file(), "{} missing: run `cargo xtask test` (it builds the standalone)", bin.display());
    let out = root.join("target/window-test");
    let run = Command::new("python3")
        .arg(root.join("scripts/window_screenshot.py"))
        .args(["--standalone", bin.to_str().unwrap(), "--out", out.to_str().unwrap(), "--seconds", "8", "--display", ":93"])
        .env("STREAMSPEECH_VOCODER_MODELS", root.join("models"))
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "screenshot failed ({}):\n{stdout}\n{stderr}\n(log: {})", run.status, out.join("window.log").display());
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("window.json")).unwrap()).unwrap();
    assert_eq!(report["window_size"], serde_json::json!([900, 760]), "{report}");
    assert!(report["warm_pixels_top_half"].as_u64().unwrap() > 2000, "input spectrogram blank: {report}");
    assert!(report["warm_pixels_bottom_half"].as_u64().unwrap() > 2000, "wet spectrogram blank: {report}");
    let png = std::fs::metadata(out.join("window.png")).unwrap();
    assert!(png.len() > 20_000, "screenshot suspiciously small: {} bytes", png.len());
}
