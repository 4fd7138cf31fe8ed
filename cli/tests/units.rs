//! `streamspeech-vocoder units` and `inspect` on unit vocoders, run as users run them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn units_fixture(model: &str, file: &str) -> PathBuf {
    root().join("vocoder/tests/fixtures/units").join(model).join(file)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_streamspeech-vocoder")).args(args).current_dir(root()).output().expect("runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn inspect_shows_each_unit_vocoder_kind() {
    let o = run(&["inspect", units_fixture("code_tiny", "g_tiny.pth").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("kind: unit vocoder") && t.contains("family: codehifigan") && t.contains("duration predictor: yes"), "{t}");
    assert!(t.contains("every model parameter loaded") || t.contains("loads (strict)"), "{t}");
    let o = run(&["inspect", units_fixture("film_tiny", "ckpt.pth").to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["family"], "unit-hifigan-film");
    assert_eq!(j["film"], true);
    assert_eq!(j["loads"], true);
}

#[test]
fn units_writes_audio_and_refuses_noise_without_the_flag() {
    let d = std::env::temp_dir().join(format!("streamspeech-cli-units-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let ids = d.join("units.txt");
    std::fs::write(&ids, "3 3 17 -1 42 8 8 8 0 49 21 21 7 30 1 2 44 5 5 6\n").unwrap();
    let out = d.join("out.wav");
    let model = units_fixture("code_tiny", "g_tiny.pth");
    // The tiny FiLM fixture has random weights: over half a second its output is white noise
    // (spectral flatness ≈ 0.8), and the health check refuses it.
    let long = d.join("long.txt");
    std::fs::write(&long, (0..400).map(|i| ((i * 7 + 3) % 50).to_string()).collect::<Vec<_>>().join(" ")).unwrap();
    let noisy = units_fixture("film_tiny", "ckpt.pth");
    let o = run(&["units", long.to_str().unwrap(), "-o", out.to_str().unwrap(), "--model", noisy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).starts_with("error: ") && text(&o).contains("white-noise-like"), "{}", text(&o));
    assert!(!out.exists(), "nothing written on failure");
    let o = run(&[
        "units",
        ids.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--dur-prediction",
        "--speaker",
        "3",
        "--no-health-check",
        "--rate",
        "48000",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("frames after duration prediction"), "{}", text(&o));
    let r = hound::WavReader::open(&out).unwrap();
    assert_eq!(r.spec().sample_rate, 48_000);
    assert!(r.len() > 19 * 20 * 3, "duration prediction lengthens the output");
    // FiLM conditioning from a file; a conditioning file on a FiLM-less model is an error.
    let film = units_fixture("film_tiny", "ckpt.pth");
    let cond = units_fixture("film_tiny", "cond.safetensors");
    let out2 = d.join("film.wav");
    let o = run(&["units", ids.to_str().unwrap(), "-o", out2.to_str().unwrap(), "--model", film.to_str().unwrap(), "--cond", cond.to_str().unwrap(), "--no-health-check"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out3 = d.join("film_npy.wav");
    let npy = units_fixture("film_tiny", "cond.npy");
    let o = run(&["units", ids.to_str().unwrap(), "-o", out3.to_str().unwrap(), "--model", film.to_str().unwrap(), "--cond", npy.to_str().unwrap(), "--no-health-check"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let samples = |p: &Path| hound::WavReader::open(p).unwrap().samples::<f32>().map(Result::unwrap).collect::<Vec<f32>>();
    let (a, b) = (samples(&out2), samples(&out3));
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5), ".npy and safetensors conditioning give the same audio");
    let o = run(&["units", ids.to_str().unwrap(), "-o", d.join("x.wav").to_str().unwrap(), "--model", model.to_str().unwrap(), "--cond", cond.to_str().unwrap(), "--no-health-check"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("no FiLM layers"), "{}", text(&o));
    // A CodeHiFiGAN whose speaker input is a vector (Linear `spkr`) takes it with --cond.
    let xvec = units_fixture("code_xvec_tiny", "g_tiny.pth");
    let spk = units_fixture("code_xvec_tiny", "speaker.safetensors");
    let o = run(&["units", ids.to_str().unwrap(), "-o", d.join("xv.wav").to_str().unwrap(), "--model", xvec.to_str().unwrap(), "--cond", spk.to_str().unwrap(), "--no-health-check"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = run(&["units", ids.to_str().unwrap(), "-o", d.join("xv2.wav").to_str().unwrap(), "--model", xvec.to_str().unwrap(), "--no-health-check"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("speaker vector"), "{}", text(&o));
    // Bad ids.
    std::fs::write(&ids, "1 2 x 4").unwrap();
    let o = run(&["units", ids.to_str().unwrap(), "-o", d.join("y.wav").to_str().unwrap(), "--model", model.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("`x` is not a unit id"), "{}", text(&o));
    std::fs::write(&ids, "1 2 999").unwrap();
    let o = run(&["units", ids.to_str().unwrap(), "-o", d.join("y.wav").to_str().unwrap(), "--model", model.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("out of range"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&d);
}
