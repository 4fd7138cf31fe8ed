//! `streamspeech-vocoder render`, run as users run it: every flag and every error of the render
//! issue. Uses the default models in `models/` (the README's test command fetches the Original;
//! the Modified is committed) and short real clips from `tests/data`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn data(name: &str) -> PathBuf {
    root().join("tests/data").join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_streamspeech-vocoder"))
        .args(args)
        .current_dir(root())
        .env_remove("STREAMSPEECH_VOCODER_MODELS")
        .output()
        .expect("runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn p(x: &Path) -> &str {
    x.to_str().unwrap()
}

/// A 16-bit WAV cut from a shared clip (first `seconds`), optionally made stereo (R = 0.5 L).
fn clip_wav(dir: &Path, name: &str, source: &str, seconds: f64, stereo: bool, bits: u16, float: bool) -> PathBuf {
    let mut r = hound::WavReader::open(data(source)).unwrap();
    let rate = r.spec().sample_rate;
    let x: Vec<f32> = r.samples::<i16>().map(|s| s.unwrap() as f32 / 32768.0).take((seconds * rate as f64) as usize).collect();
    let path = dir.join(name);
    let spec = hound::WavSpec {
        channels: if stereo { 2 } else { 1 },
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: if float { hound::SampleFormat::Float } else { hound::SampleFormat::Int },
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for &v in &x {
        for c in 0..spec.channels {
            let v = if c == 0 { v } else { 0.5 * v };
            match (float, bits) {
                (true, _) => w.write_sample(v).unwrap(),
                (false, 16) => w.write_sample((v * 32767.0) as i16).unwrap(),
                (false, 24) => w.write_sample((v * 8_388_607.0) as i32).unwrap(),
                (false, _) => w.write_sample((v * 2_147_483_647.0) as i32).unwrap(),
            }
        }
    }
    w.finalize().unwrap();
    path
}

struct Wav {
    spec: hound::WavSpec,
    channels: Vec<Vec<f32>>,
}

fn read(path: &Path) -> Wav {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    let x: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().map(Result::unwrap).collect(),
        hound::SampleFormat::Int => {
            let s = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            r.samples::<i32>().map(|v| v.unwrap() as f32 * s).collect()
        }
    };
    let n = spec.channels as usize;
    let channels = (0..n).map(|c| x.iter().skip(c).step_by(n).copied().collect()).collect();
    Wav { spec, channels }
}

fn envelope(x: &[f32], win: usize) -> Vec<f32> {
    x.chunks(win).map(|c| c.iter().map(|v| v * v).sum::<f32>().sqrt()).collect()
}

/// Lag (in envelope windows) of the cross-correlation peak of two envelopes within ±max.
fn envelope_lag(a: &[f32], b: &[f32], max: i64) -> i64 {
    let n = a.len().min(b.len()) as i64;
    let mut best = (f32::MIN, 0);
    for lag in -max..=max {
        let mut s = 0.0;
        for i in 0..n {
            let j = i + lag;
            if j >= 0 && j < n {
                s += a[i as usize] * b[j as usize];
            }
        }
        if s > best.0 {
            best = (s, lag);
        }
    }
    best.1
}

#[test]
fn stereo_wav_keeps_rate_channels_length_and_alignment() {
    let d = tmp();
    let input = clip_wav(d.path(), "in.wav", "en_cmuarctic_axb_a0004.wav", 2.0, true, 16, false);
    let out = d.path().join("out.wav");
    let o = run(&["render", p(&input), "-o", p(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("engine latency"), "{}", text(&o));
    let i = read(&input);
    let w = read(&out);
    assert_eq!((w.spec.sample_rate, w.spec.channels), (16_000, 2), "input's rate and channels");
    assert_eq!((w.spec.bits_per_sample, w.spec.sample_format), (32, hound::SampleFormat::Float), "32-bit float by default");
    assert_eq!(w.channels[0].len(), i.channels[0].len(), "same length as the input");
    assert_eq!(w.channels[0], w.channels[1], "the wet signal is mono, on both channels");
    // Aligned: the output's energy envelope follows the input's with no lag (5 ms windows).
    let lag = envelope_lag(&envelope(&i.channels[0], 80), &envelope(&w.channels[0], 80), 20);
    assert_eq!(lag, 0, "output envelope is shifted by {lag} × 5 ms against the input");
    assert!(w.channels[0].iter().all(|v| v.is_finite()) && w.channels[0].iter().any(|v| v.abs() > 0.01));
}

#[test]
fn flac_mp3_ogg_and_wav_depths_are_read() {
    let d = tmp();
    let formats = root().join("tests/data/formats");
    let mut inputs = vec![
        (formats.join("fr_1s5_mono.flac"), 16_000u32, 1u16),
        (formats.join("fr_1s5_stereo.ogg"), 44_100, 2),
        (formats.join("fr_1s5_mono.mp3"), 24_000, 1),
    ];
    inputs.push((clip_wav(d.path(), "i24.wav", "fr_cv_17299458.wav", 1.0, false, 24, false), 16_000, 1));
    inputs.push((clip_wav(d.path(), "f32.wav", "fr_cv_17299458.wav", 1.0, true, 32, true), 16_000, 2));
    for (k, (input, rate, ch)) in inputs.iter().enumerate() {
        let out = d.path().join(format!("o{k}.wav"));
        let o = run(&["render", p(input), "-o", p(&out), "--quiet", "--mode", "modified"]);
        assert_eq!(o.status.code(), Some(0), "{}: {}", input.display(), text(&o));
        assert!(o.stdout.is_empty(), "--quiet prints nothing: {}", text(&o));
        let w = read(&out);
        assert_eq!((w.spec.sample_rate, w.spec.channels), (*rate, *ch), "{}", input.display());
        assert!(w.channels[0].len() as f64 >= 0.99 * *rate as f64, "{}: {} samples", input.display(), w.channels[0].len());
    }
}

#[test]
fn switch_schedule_bits_block_size_and_latency_flags() {
    let d = tmp();
    let input = clip_wav(d.path(), "in.wav", "es_librivox_cuentosdehadas03_14_grimm.wav", 2.0, false, 16, false);
    let a = d.path().join("a.wav");
    let b = d.path().join("b.wav");
    let switch = "0.7:modified,1.4:original";
    let o = run(&["render", p(&input), "-o", p(&a), "--switch", switch, "--block-size", "512", "--quiet"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = run(&["render", p(&input), "-o", p(&b), "--switch", switch, "--block-size", "37", "--quiet"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(read(&a).channels, read(&b).channels, "the render does not depend on the block size");
    // The switched render equals Original before the first fade and Modified inside the
    // switched stretch (20 ms fades centred on the switch points).
    let orig = d.path().join("orig.wav");
    let modi = d.path().join("modi.wav");
    assert_eq!(run(&["render", p(&input), "-o", p(&orig), "--quiet"]).status.code(), Some(0));
    assert_eq!(run(&["render", p(&input), "-o", p(&modi), "--mode", "modified", "--quiet"]).status.code(), Some(0));
    let (s, o_, m_) = (read(&a).channels[0].clone(), read(&orig).channels[0].clone(), read(&modi).channels[0].clone());
    let sr = 22_050f64;
    let fade = (0.010 * sr) as usize + 2;
    let t1 = (0.7 * sr) as usize;
    let t2 = (1.4 * sr) as usize;
    assert_eq!(&s[..t1 - fade], &o_[..t1 - fade], "Original before the switch");
    assert_eq!(&s[t1 + fade..t2 - fade], &m_[t1 + fade..t2 - fade], "Modified between the switches");
    assert_eq!(&s[t2 + fade..], &o_[t2 + fade..], "Original after switching back");
    assert_ne!(o_, m_, "the two modes differ");
    // --bits 16 / 24.
    for bits in ["16", "24"] {
        let out = d.path().join(format!("b{bits}.wav"));
        let o = run(&["render", p(&input), "-o", p(&out), "--bits", bits, "--quiet"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let w = read(&out);
        assert_eq!((w.spec.bits_per_sample.to_string(), w.spec.sample_format), (bits.to_string(), hound::SampleFormat::Int));
        let err = w.channels[0].iter().zip(&o_).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        assert!(err < 1e-3, "{bits}-bit output within quantisation of the float render ({err})");
    }
    // --latency-ms sets the chunk and so the engine's latency; the aligned output barely changes.
    let mut latencies = Vec::new();
    for ms in ["20", "640"] {
        let out = d.path().join(format!("l{ms}.wav"));
        let o = run(&["render", p(&input), "-o", p(&out), "--latency-ms", ms]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let t = text(&o);
        let lat: u32 = t.split("engine latency ").nth(1).and_then(|r| r.split(' ').next()).and_then(|v| v.parse().ok()).expect("latency printed");
        latencies.push(lat);
        let w = read(&out);
        let err = w.channels[0].iter().zip(&o_).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        assert!(err < 1e-3, "latency {ms} ms: aligned output equals the 80 ms render ({err})");
    }
    assert!(latencies[1] > latencies[0] + 10_000, "640 ms chunk reports more latency: {latencies:?}");
    // Explicit model files and --device.
    let out = d.path().join("explicit.wav");
    let o = run(&[
        "render",
        p(&input),
        "-o",
        p(&out),
        "--model-original",
        "models/hifigan_v1_universal.safetensors",
        "--model-modified",
        "models/grc_mrf_distilled.safetensors",
        "--device",
        "cpu",
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(read(&out).channels[0], o_, "explicit default files render the same");
    let o = run(&["render", p(&input), "-o", p(&d.path().join("gpu.wav")), "--device", "gpu"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    if !cfg!(feature = "cuda") {
        assert!(text(&o).contains("using the CPU"), "a GPU request on a CPU build says so: {}", text(&o));
    }
}

#[test]
fn report_writes_spectrogram_and_json() {
    let d = tmp();
    let input = clip_wav(d.path(), "in.wav", "es_librivox_cuentosdehadas03_14_grimm.wav", 2.0, false, 16, false);
    let out = d.path().join("out.wav");
    let rep = d.path().join("report");
    let o = run(&["render", p(&input), "-o", p(&out), "--switch", "1.0:modified", "--report", p(&rep)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let png = rep.join("spectrogram.png");
    let bytes = std::fs::read(&png).expect("spectrogram.png written");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let (w, h) = (u32::from_be_bytes(bytes[16..20].try_into().unwrap()), u32::from_be_bytes(bytes[20..24].try_into().unwrap()));
    assert_eq!((w, h), (1400, 4 * 240 + 40), "four stacked panels");
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(rep.join("report.json")).unwrap()).unwrap();
    let models = j["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    for m in models {
        assert_eq!(m["checkpoint_report"]["clean"], true, "{m}");
        assert_eq!(m["health"]["healthy"], true, "{m}");
        assert_eq!(m["config_hash"].as_str().unwrap().len(), 64);
    }
    assert_eq!(models[0]["family"], "hifigan (resblock 1)");
    assert_eq!(models[1]["family"], "grc-mrf");
    assert_eq!(j["switches"][0]["seconds"], 1.0);
    assert_eq!(j["switches"][0]["mode"], "modified");
    let renders = j["renders"].as_array().unwrap();
    assert_eq!(renders.len(), 3);
    for r in renders {
        let flat = r["mel"]["spectral_flatness"].as_f64().unwrap();
        assert!(flat < 0.5, "{}: a speech render is not white noise (flatness {flat})", r["name"]);
        assert!(r["mel"]["mel_correlation"].as_f64().unwrap() > 0.5, "{r}");
        assert!(r["loudness_lufs"].as_f64().unwrap() < 0.0);
    }
    assert!(j["latency_samples"].as_u64().unwrap() > 0 && j["real_time_factor"].as_f64().unwrap() > 0.0);
    assert!(j["input_loudness_lufs"].as_f64().is_some());
}

#[test]
fn errors_are_one_line_exit_2_and_leave_nothing_behind() {
    let d = tmp();
    let input = clip_wav(d.path(), "in.wav", "fr_cv_17299458.wav", 1.0, false, 16, false);
    let out = d.path().join("out.wav");
    let expect_2 = |args: &[&str], needle: &str| {
        let o = run(args);
        let t = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(t.starts_with("error: ") && t.contains(needle), "{args:?}: expected `{needle}` in: {t}");
        t
    };
    // Input problems.
    expect_2(&["render", p(&d.path().join("nope.wav")), "-o", p(&out)], "cannot read");
    let garbage = d.path().join("garbage.wav");
    std::fs::write(&garbage, b"RIFF\x10\0\0\0WAVEjunkjunkjunk").unwrap();
    expect_2(&["render", p(&garbage), "-o", p(&out)], "unsupported or corrupt audio");
    let empty = d.path().join("empty.wav");
    hound::WavWriter::create(&empty, hound::WavSpec { channels: 1, sample_rate: 16_000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int })
        .unwrap()
        .finalize()
        .unwrap();
    expect_2(&["render", p(&empty), "-o", p(&out)], "no audio samples");
    // Model problems: missing default, mismatched checkpoint (with its report), unhealthy.
    let no_models = d.path().join("no-models");
    std::fs::create_dir(&no_models).unwrap();
    expect_2(&["render", p(&input), "-o", p(&out), "--models-dir", p(&no_models)], "models fetch");
    let broken = root().join("vocoder/tests/fixtures/broken/missing_tensor.safetensors");
    let t = expect_2(&["render", p(&input), "-o", p(&out), "--model-original", p(&broken)], "does not match the model");
    assert!(t.contains("missing"), "the checkpoint report follows: {t}");
    let noisy = root().join("vocoder/tests/fixtures/v1_tiny/model.safetensors");
    expect_2(&["render", p(&input), "-o", p(&out), "--model-original", p(&noisy)], "fails the health probe");
    let o = run(&["render", p(&input), "-o", p(&out), "--model-original", p(&noisy), "--no-health-check", "--quiet"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("warning: original model"), "{}", text(&o));
    // Output problems: existing file without --force, unwritable folder; nothing partial left.
    let before = std::fs::read(&out).unwrap();
    expect_2(&["render", p(&input), "-o", p(&out)], "exists (use --force");
    assert_eq!(std::fs::read(&out).unwrap(), before, "an existing output is untouched");
    let o = run(&["render", p(&input), "-o", p(&out), "--force", "--quiet"]);
    assert_eq!(o.status.code(), Some(0), "--force overwrites: {}", text(&o));
    assert_ne!(std::fs::read(&out).unwrap(), before);
    let unwritable = d.path().join("missing-dir/out.wav");
    expect_2(&["render", p(&input), "-o", p(&unwritable)], "cannot write");
    let leftovers: Vec<_> = std::fs::read_dir(d.path()).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().contains(".part")).collect();
    assert!(leftovers.is_empty(), "temp files left behind: {leftovers:?}");
    // Bad flags.
    expect_2(&["render", p(&input), "-o", p(&d.path().join("x.wav")), "--switch", "1.0:loud"], "not a mode");
}

// ---------------------------------------------------------------------------------------------
// Hostile inputs and safe outputs (issue #18)

fn umask() -> u32 {
    let o = Command::new("sh").args(["-c", "umask"]).output().unwrap();
    u32::from_str_radix(String::from_utf8_lossy(&o.stdout).trim(), 8).unwrap()
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Files in `dir` other than `keep` (a failed write must leave nothing behind).
fn leftovers(dir: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

#[test]
fn output_paths_are_checked_before_rendering() {
    let d = tmp();
    let input = clip_wav(d.path(), "in.wav", "fr_cv_17299458.wav", 0.3, false, 16, false);
    std::fs::create_dir(d.path().join("folder")).unwrap();
    // A model that does not exist: had the output been checked only after loading and
    // rendering, the error would be about the model.
    let cases = [
        (PathBuf::from("/dev/null"), "not a regular file"),
        (d.path().join("folder"), "folder"),
        (d.path().join("missing/out.wav"), "does not exist"),
    ];
    for (out, want) in &cases {
        let out = p(out);
        let o = run(&["render", p(&input), "-o", out, "--force", "--model-original", "/nonexistent.safetensors"]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains(want) && !text(&o).contains("nonexistent"), "{out}: {}", text(&o));
    }
    assert_eq!(leftovers(d.path(), &["in.wav", "folder"]), Vec::<String>::new());
}

#[test]
fn outputs_follow_symlinks_and_take_permissions_from_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let d = tmp();
    let input = clip_wav(d.path(), "in.wav", "fr_cv_17299458.wav", 0.3, false, 16, false);
    // A new file: 0666 less the umask (0644 typically), not 0600.
    let out = d.path().join("new.wav");
    assert_eq!(run(&["render", p(&input), "-o", p(&out), "--quiet"]).status.code(), Some(0));
    assert_eq!(mode(&out), 0o666 & !umask(), "permissions from the umask");
    // Replacing a file keeps its permissions.
    let kept = d.path().join("kept.wav");
    std::fs::write(&kept, b"old").unwrap();
    std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(run(&["render", p(&input), "-o", p(&kept), "--quiet", "--force"]).status.code(), Some(0));
    assert_eq!(mode(&kept), 0o640);
    assert_eq!(read(&kept).channels, read(&out).channels);
    // A symlink is written through: the link stays a link, its target gets the render.
    let target = d.path().join("target.wav");
    std::fs::write(&target, b"old").unwrap();
    let link = d.path().join("link.wav");
    std::os::unix::fs::symlink("target.wav", &link).unwrap();
    let o = run(&["render", p(&input), "-o", p(&link), "--quiet", "--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is still a link");
    assert_eq!(read(&target).channels, read(&out).channels, "the target holds the render");
    // Without --force an existing target (through the link) is refused.
    let o = run(&["render", p(&input), "-o", p(&link), "--quiet"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("exists"), "{}", text(&o));
    assert_eq!(leftovers(d.path(), &["in.wav", "new.wav", "kept.wav", "target.wav", "link.wav"]), Vec::<String>::new());
}

#[test]
fn a_failing_report_leaves_no_output() {
    let d = tmp();
    let input = clip_wav(d.path(), "in.wav", "fr_cv_17299458.wav", 0.3, false, 16, false);
    let report = d.path().join("report");
    // report.json cannot be written: a folder is in its place.
    std::fs::create_dir_all(report.join("report.json")).unwrap();
    let out = d.path().join("out.wav");
    let o = run(&["render", p(&input), "-o", p(&out), "--report", p(&report), "--quiet"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("report"), "{}", text(&o));
    assert!(!out.exists(), "the WAV is only put in place after the report succeeded");
    assert_eq!(leftovers(d.path(), &["in.wav", "report"]), Vec::<String>::new());
    assert_eq!(leftovers(&report, &["report.json"]), Vec::<String>::new(), "no temporary files in the report folder");
}

#[test]
fn switch_file_equals_switch_flag() {
    let d = tmp();
    let input = clip_wav(d.path(), "in.wav", "fr_cv_17299458.wav", 0.6, false, 16, false);
    let file = d.path().join("switches.txt");
    std::fs::write(&file, "# automation\n0.2:modified\n0.4:original\n").unwrap();
    let (a, b) = (d.path().join("a.wav"), d.path().join("b.wav"));
    assert_eq!(run(&["render", p(&input), "-o", p(&a), "--quiet", "--switch", "0.2:modified,0.4:original"]).status.code(), Some(0));
    let o = run(&["render", p(&input), "-o", p(&b), "--quiet", "--switch-file", p(&file)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(read(&a).channels, read(&b).channels);
    let o = run(&["render", p(&input), "-o", p(&b), "--force", "--switch", "1:modified", "--switch-file", p(&file)]);
    assert_eq!(o.status.code(), Some(2));
}

/// A 16-bit mono WAV of `x` whose header is rewritten by `patch(header bytes)`.
fn patched_wav(path: &Path, rate: u32, x: &[i16], patch: impl FnOnce(&mut Vec<u8>)) {
    let spec = hound::WavSpec { channels: 1, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    x.iter().for_each(|v| w.write_sample(*v).unwrap());
    w.finalize().unwrap();
    let mut b = std::fs::read(path).unwrap();
    patch(&mut b);
    std::fs::write(path, b).unwrap();
}

#[test]
fn wav_headers_with_absurd_rates_are_refused_and_12_bit_pcm_is_read() {
    use streamspeech_cli::audio_io::read_audio;
    let d = tmp();
    let x: Vec<i16> = (0..4000).map(|i| (((i as f32 * 0.05).sin() * 20000.0) as i16) & !0xf).collect();
    // hound writes a plain 44-byte header: rate at 24, byte rate at 28, bits at 34.
    for rate in [4_294_967_291u32, 1, 7, 999, 800_000] {
        let path = d.path().join(format!("r{rate}.wav"));
        patched_wav(&path, 16_000, &x, |b| {
            b[24..28].copy_from_slice(&rate.to_le_bytes());
            b[28..32].copy_from_slice(&rate.wrapping_mul(2).to_le_bytes());
        });
        let e = read_audio(&path).unwrap_err().to_string();
        assert!(e.contains("outside 1000..=768000 Hz"), "{rate}: {e}");
    }
    // 12 valid bits in 16-bit containers, plain PCM header: the same samples as the 16-bit file.
    let plain = d.path().join("plain.wav");
    patched_wav(&plain, 16_000, &x, |_| {});
    let twelve = d.path().join("twelve.wav");
    patched_wav(&twelve, 16_000, &x, |b| b[34..36].copy_from_slice(&12u16.to_le_bytes()));
    let (a, b) = (read_audio(&plain).unwrap(), read_audio(&twelve).unwrap());
    assert_eq!(a.channels, b.channels, "12-bit samples are left-justified in their container");
    assert_eq!(b.rate, 16_000);
}

#[test]
fn mp3_encoder_delay_and_padding_are_trimmed() {
    use streamspeech_cli::audio_io::read_audio;
    // fr_1s5_mono.mp3 is 1.5 s at 24 kHz: 36 000 samples were encoded (its LAME header says
    // how much delay and padding the encoder added).
    let a = read_audio(&data("formats/fr_1s5_mono.mp3")).unwrap();
    assert_eq!((a.rate, a.frames()), (24_000, 36_000));
    let f = read_audio(&data("formats/fr_1s5_mono.flac")).unwrap();
    assert_eq!((f.rate, f.frames()), (16_000, 24_000));
    // Not shifted: the MP3 and the FLAC (same source, lossless) line up.
    let mp3_16k: Vec<f32> = a.channels[0].iter().step_by(3).copied().collect();
    let flac_at_8k: Vec<f32> = f.channels[0].iter().step_by(2).copied().collect();
    let lag = envelope_lag(&envelope(&mp3_16k, 40), &envelope(&flac_at_8k, 40), 10);
    assert_eq!(lag, 0, "MP3 decode shifted by {lag} × 5 ms");
}

/// Files the fuzz harness found crashing the reader (abort on a 2 GB allocation, overflow
/// panics, a panic inside symphonia): each must now be a clear error.
#[test]
fn fuzz_found_audio_crashes_are_errors() {
    use streamspeech_cli::audio_io::read_audio;
    let d = tmp();
    let be24 = |n: usize| [(n >> 16) as u8, (n >> 8) as u8, n as u8];
    // FLAC whose picture block claims a 2.2 GB MIME type (symphonia allocated it up front).
    let mut flac = b"fLaC".to_vec();
    flac.extend_from_slice(&[0x00, 0, 0, 34]);
    flac.extend_from_slice(&[0x10, 0x00, 0x10, 0x00, 0, 0, 0, 0, 0, 0, 0x03, 0xe8, 0x00, 0xf0, 0, 0, 0, 0]);
    flac.extend_from_slice(&[0u8; 16]);
    let picture = [3u32.to_be_bytes(), 0x8333_3333u32.to_be_bytes()].concat();
    flac.push(0x86);
    flac.extend_from_slice(&be24(picture.len()));
    flac.extend_from_slice(&picture);
    // FLAC whose Vorbis comment claims 4 GiB.
    let mut comments = flac[..42].to_vec();
    let body = [4u32.to_le_bytes(), *b"abcd", 1u32.to_le_bytes(), u32::MAX.to_le_bytes()].concat();
    comments.push(0x84);
    comments.extend_from_slice(&be24(body.len()));
    comments.extend_from_slice(&body);
    // WAVs hound refuses (24-bit float, A-law): one with a LIST/INFO entry claiming 4 GiB, one
    // with a zero sample rate (symphonia asserted on it).
    let wav = |tag: u8, rate: u32, bits: u8, extra: &[u8]| {
        let mut b = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        // A-law's fmt chunk carries cbSize (18 bytes).
        let alaw = tag == 6;
        b.extend_from_slice(&(if alaw { 18u32 } else { 16 }).to_le_bytes());
        b.extend_from_slice(&[tag, 0, 1, 0]);
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&(rate * u32::from(bits / 8)).to_le_bytes());
        b.extend_from_slice(&[bits / 8, 0, bits, 0]);
        if alaw {
            b.extend_from_slice(&[0, 0]);
        }
        b.extend_from_slice(extra);
        b.extend_from_slice(b"data\x0c\0\0\0");
        b.extend_from_slice(&[0u8; 12]);
        let n = (b.len() - 8) as u32;
        b[4..8].copy_from_slice(&n.to_le_bytes());
        b
    };
    let list = [b"LIST".to_vec(), 16u32.to_le_bytes().to_vec(), b"INFOINAM".to_vec(), u32::MAX.to_le_bytes().to_vec(), vec![0u8; 4]].concat();
    // 12 valid bits declared in a 65535-byte container (an overflow in our own 12-bit path).
    let mut wide = wav(1, 16_000, 16, &[]);
    wide[32..34].copy_from_slice(&0xffffu16.to_le_bytes());
    wide[34..36].copy_from_slice(&12u16.to_le_bytes());
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("picture.flac", flac, "FLAC picture block claims"),
        ("comment.flac", comments, "Vorbis comment block claims"),
        ("info.wav", wav(3, 16_000, 24, &list), "LIST entry `INAM` claims"),
        ("rate0.wav", wav(6, 0, 8, &[]), "0 Hz"),
        ("wide.wav", wide, ""),
    ];
    for (name, bytes, want) in cases {
        let path = d.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let e = read_audio(&path).err().unwrap_or_else(|| panic!("{name} was accepted")).to_string();
        assert!(e.contains(want) && !e.contains('\n'), "{name}: {e}");
    }
}

#[test]
fn a_bad_model_is_one_line_naming_the_file_once() {
    let d = tmp();
    let input = clip_wav(d.path(), "in.wav", "fr_cv_17299458.wav", 0.3, false, 16, false);
    let model = d.path().join("bad.pth");
    std::fs::write(&model, b"\x80\x02}q\x00X\xff\xff\xff\x7f").unwrap();
    let o = run(&["render", p(&input), "-o", p(&d.path().join("o.wav")), "--model-original", p(&model)]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(err.matches(p(&model)).count(), 1, "{err}");
}
