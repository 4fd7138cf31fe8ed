//! Speed and memory of whole-utterance translation with the full-size es→en StreamSpeech model
//! and a full-size CodeHiFiGAN, against the issue #19 targets: translator + vocoder ≤ 0.3 s of
//! compute per second of speech on 2 threads, and ≤ 0.1 × upstream PyTorch's time on the same
//! checkpoint in the same run.
//!
//! `cargo xtask bench-translate [--seconds S] [--reference --python PY --streamspeech DIR]`
//! (= `cargo bench -p streamspeech-cli --bench translate -- ...`).
//! - Writes (once, into `target/bench/translate/`) the generated full-size translator checkpoint
//!   in the real format (`translator::synthetic`: f16 weights + fp32 Adam state, ≈0.7 GB) and a
//!   full-size CodeHiFiGAN (StreamSpeech's unit vocoder config: 512 channels, ×320, duration
//!   predictor; seeded weights; the timed run voices as many seconds as came in, the
//!   translator's units cycled, since generated weights give an arbitrary unit count), and S seconds (default 10) of real Spanish speech (a `tests/data`
//!   clip looped, resampled to 16 kHz as the CLI does).
//! - The MT decoder emits exactly `--max-tokens` pieces (default 4 per second of speech, a real
//!   translation's length; generated weights end a sentence at random), on both sides.
//! - For 1 and 2 threads, in a fresh child process each (peak RSS is per process): load time,
//!   fbank + CMVN, the translator (encoder, CTC heads, MT decoder, T2U, unit decoder), the vocoder
//!   with duration prediction; seconds of compute per second of speech; peak RSS.
//! - `--reference`: the same on upstream's code (`scripts/bench_translate_reference.py`, PyTorch
//!   with fairseq, oneDNN off) given the same checkpoint, vocoder weights and waveform, in the
//!   same run; its pieces and units must equal ours (full-size parity).
//!   Results: Markdown on stdout and `target/bench/translate/results.json`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use candle_core::{Device, Tensor};

mod common;

use common::{Inputs, peak_rss_mb, prepare, root, scratch};

/// One measured run in this (child) process; prints one JSON line.
fn child(threads: usize, max_tokens: usize, inputs: &Inputs) {
    vocoder::kernels::set_threads(threads);
    // SAFETY: single-threaded here; candle's CPU ops read it for their GEMM parallelism.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    let dev = Device::Cpu;
    let t = Instant::now();
    let data = translator::data::DataDir::load(&inputs.data).unwrap();
    let (model, _) = translator::model::StreamSpeech::load_for_segment(&inputs.translator, data.mt, Some(320), &dev).unwrap();
    let voc = vocoder::units::load_unit_vocoder(&inputs.vocoder, None, &dev).unwrap();
    let load_s = t.elapsed().as_secs_f64();
    let rss_loaded = peak_rss_mb();
    let wave = streamspeech_cli::audio_io::read_audio(&inputs.wave).unwrap().mono();
    let speech_s = wave.len() as f64 / 16_000.0;
    let t = Instant::now();
    let front = translator::fbank::Fbank::new(translator::fbank::FbankConfig::default()).unwrap();
    let (mut feats, frames) = front.compute(&wave);
    data.cmvn.apply(&mut feats);
    let features = Tensor::from_vec(feats, (1, frames, 80), &dev).unwrap();
    let fbank_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let out = model.translate_with_length(&features, max_tokens, max_tokens).unwrap();
    let translate_s = t.elapsed().as_secs_f64();
    let units: Vec<i64> = out.units.iter().filter(|u| (4..1004).contains(*u)).map(|u| *u as i64 - 4).collect();
    // The units with duration prediction, as upstream's agent voices them (compared with
    // upstream's durations).
    let speech = voc.vocoder.synthesize(&units, None, true, None).unwrap();
    // The timed vocoder run: as much speech out as came in (50 unit frames per second; the
    // translator's units cycled, no duration prediction), since generated weights give an
    // arbitrary number of units.
    let frames_out = (speech_s * 50.0).round() as usize;
    let realistic: Vec<i64> = units.iter().cycle().take(frames_out).copied().collect();
    let t = Instant::now();
    let voiced = voc.vocoder.synthesize(&realistic, None, false, None).unwrap();
    let vocoder_s = t.elapsed().as_secs_f64();
    let sec = out.seconds;
    let j = serde_json::json!({
        "threads": threads, "speech_s": speech_s, "load_s": load_s, "rss_loaded_mb": rss_loaded,
        "fbank_s": fbank_s, "translate_s": translate_s, "vocoder_s": vocoder_s,
        "output_s": voiced.audio.len() as f64 / 16_000.0, "frames": frames,
        "stages": {"encoder": sec.encoder, "ctc": sec.ctc, "mt_decoder": sec.mt_decoder, "t2u_encoder": sec.t2u_encoder, "unit_decoder": sec.unit_decoder},
        "asr_tokens": out.asr.tokens, "st_tokens": out.st.tokens, "mt_tokens": out.mt_tokens, "units": units,
        "durations": speech.durations, "peak_rss_mb": peak_rss_mb(),
    });
    println!("{j}");
}

fn run_child(args: &[String]) -> Option<serde_json::Value> {
    let o = Command::new(std::env::current_exe().unwrap()).args(args).output().unwrap();
    if !o.status.success() {
        eprintln!("child {args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
        return None;
    }
    String::from_utf8_lossy(&o.stdout).lines().last().and_then(|l| serde_json::from_str(l).ok())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let opt = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let seconds: f64 = opt("--seconds").map(|s| s.parse().expect("--seconds S")).unwrap_or(10.0);
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let threads: usize = args[i + 1].parse().unwrap();
        let max_tokens: usize = args[i + 3].parse().unwrap();
        let dir = scratch();
        let inputs = Inputs {
            translator: dir.join("streamspeech.es-en.generated.pt"),
            vocoder: dir.join("codehifigan.generated.safetensors"),
            wave: PathBuf::from(&args[i + 2]),
            data: dir.join("es-en"),
        };
        child(threads, max_tokens, &inputs);
        return;
    }
    // Generated weights choose end-of-sentence at random (the full-size one after 1 piece), so
    // the MT decoder emits exactly a real translation's length (≈4 target pieces per second of
    // speech) on both sides: end-of-sentence barred before it, as fairseq's --min-len does.
    let max_tokens: usize = opt("--max-tokens").map(|s| s.parse().expect("--max-tokens N")).unwrap_or((4.0 * seconds).ceil() as usize);
    let inputs = prepare(seconds);
    let reference = args.iter().any(|a| a == "--reference");
    let python = opt("--python").unwrap_or_else(|| "python3".into());
    let streamspeech = opt("--streamspeech");
    let mut rows: Vec<(String, serde_json::Value)> = Vec::new();
    for threads in [1usize, 2] {
        if let Some(j) = run_child(&["--child".into(), threads.to_string(), inputs.wave.display().to_string(), max_tokens.to_string()]) {
            rows.push(("ours".into(), j));
        }
        if reference {
            let repo = streamspeech.clone().expect("--reference needs --streamspeech PATH (a StreamSpeech checkout)");
            let o = Command::new(&python)
                .arg(root().join("scripts/bench_translate_reference.py"))
                .args(["--streamspeech", &repo, "--threads", &threads.to_string(), "--max-tokens", &max_tokens.to_string()])
                .arg("--checkpoint")
                .arg(&inputs.translator)
                .arg("--vocoder")
                .arg(&inputs.vocoder)
                .arg("--audio")
                .arg(&inputs.wave)
                .arg("--data")
                .arg(&inputs.data)
                .output()
                .expect("runs the reference script");
            if !o.status.success() {
                eprintln!("reference failed: {}", String::from_utf8_lossy(&o.stderr));
            } else if let Some(j) = String::from_utf8_lossy(&o.stdout).lines().last().and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok()) {
                rows.push(("PyTorch (upstream)".into(), j));
            }
        }
    }
    println!("\n| run | threads | load s | fbank s | translator s (encoder, CTC, MT, T2U, units) | vocoder s (s out) | compute / speech s | peak RSS MB | ASR / MT pieces, units, frames |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, j) in &rows {
        let f = |k: &str| j[k].as_f64().unwrap_or(f64::NAN);
        let n = |k: &str| j[k].as_array().map(|a| a.len()).unwrap_or(0);
        let frames: u64 = j["durations"].as_array().map(|d| d.iter().filter_map(|v| v.as_u64()).sum()).unwrap_or(0);
        let compute = f("fbank_s") + f("translate_s") + f("vocoder_s");
        let st = &j["stages"];
        let stages: Vec<String> = ["encoder", "ctc", "mt_decoder", "t2u_encoder", "unit_decoder"].iter().map(|k| format!("{:.2}", st[*k].as_f64().unwrap_or(f64::NAN))).collect();
        println!(
            "| {name} | {} | {:.2} | {:.3} | {:.2} ({}) | {:.2} ({:.1}) | {:.3} | {:.0} | {} / {}, {}, {} |",
            j["threads"], f("load_s"), f("fbank_s"), f("translate_s"), stages.join(", "), f("vocoder_s"), f("output_s"), compute / f("speech_s"), f("peak_rss_mb"),
            n("asr_tokens"), n("mt_tokens"), n("units"), frames
        );
    }
    // Ours against the reference at each thread count: time ratio, and the same output.
    for threads in [1u64, 2] {
        let get = |name: &str| rows.iter().find(|(n, j)| n.starts_with(name) && j["threads"].as_u64() == Some(threads)).map(|(_, j)| j);
        if let (Some(o), Some(r)) = (get("ours"), get("PyTorch")) {
            let c = |j: &serde_json::Value| ["fbank_s", "translate_s", "vocoder_s"].iter().map(|k| j[*k].as_f64().unwrap_or(0.0)).sum::<f64>();
            let same: Vec<&str> = ["asr_tokens", "st_tokens", "mt_tokens", "units", "durations"].into_iter().filter(|k| o[*k] == r[*k]).collect();
            println!("{threads} thread(s): ours / PyTorch = {:.3} (target ≤ 0.1); identical: {same:?}", c(o) / c(r));
        }
    }
    let all: Vec<serde_json::Value> = rows.iter().map(|(n, j)| serde_json::json!({"run": n, "result": j})).collect();
    std::fs::write(scratch().join("results.json"), serde_json::to_string_pretty(&all).unwrap()).unwrap();
}
