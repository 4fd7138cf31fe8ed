//! Per-segment compute of simultaneous translation (issue #20's target): S seconds (default 60)
//! of real Spanish speech through the generated full-size es→en StreamSpeech checkpoint and a
//! full-size CodeHiFiGAN at 320 ms segments on one thread; per-segment compute (policy, models,
//! streaming vocoder) ≤ 30 % of the segment at the median and ≤ 100 % at the maximum, flat over
//! the run; side by side with upstream's agent on the same machine, weights and waveform.
//!
//! `cargo xtask bench-simultaneous [--seconds S] [--compare-seconds C] [--segment-ms MS]
//! [--reference --python PY --streamspeech DIR]` (= `cargo bench -p streamspeech-cli --bench simultaneous -- ...`).
//! - Inputs as the translator benchmark writes them (`common::prepare`, in
//!   `target/bench/translate/`).
//! - Generated weights emit about 20 ST CTC pieces per second (a translation has about 4) and end
//!   a sentence at once, so both sides emulate a trained model's output length
//!   (`PolicyConfig::emulate_pieces_per_second` = 4; upstream: its ST CTC hypothesis cut the same
//!   way and its generator's `min_len` set to the length cap): the decoders do a real
//!   translation's work.
//! - Ours runs as the CLI and plugin run a stream (`push_stream`: utterances end at 700 ms of
//!   silence or 30 s) over S seconds: the target's measurement. For the comparison with upstream
//!   (whose evaluator feeds a file as one utterance, without a cap, so its calls grow with the
//!   whole file), ours also runs as one utterance over the first C seconds (`--compare-seconds`,
//!   default 20), and so does upstream's agent with `--reference`: their units must be equal
//!   segment by segment (full-size parity of the policy).
//! - Results: Markdown on stdout and `target/bench/translate/simultaneous.json`.

mod common;

use std::process::Command;
use std::time::Instant;

use common::{peak_rss_mb, prepare, root, scratch};
use translator::simultaneous::{Action, PolicyConfig, SimultaneousAgent, StreamLimits};

/// Target pieces per second of source that both sides emulate (see the module doc).
const PIECES_PER_SECOND: f64 = 4.0;

/// One run of ours: per segment (compute s, action, new units, encoder frames computed).
fn ours(inputs: &common::Inputs, segment_ms: usize, single_utterance: bool) -> serde_json::Value {
    let dev = candle_core::Device::Cpu;
    let data = translator::data::DataDir::load(&inputs.data).unwrap();
    let t = Instant::now();
    let (model, _) = translator::model::StreamSpeech::load_for_segment(&inputs.translator, data.mt, Some(segment_ms), &dev).unwrap();
    let voc = vocoder::units::load_unit_vocoder(&inputs.vocoder, None, &dev).unwrap().vocoder;
    let load_s = t.elapsed().as_secs_f64();
    let wave = streamspeech_cli::audio_io::read_audio(&inputs.wave).unwrap().mono();
    let cfg = PolicyConfig { emulate_pieces_per_second: Some(PIECES_PER_SECOND), ..PolicyConfig::for_segment(segment_ms) };
    let mut agent = SimultaneousAgent::new(&model, cfg, data.cmvn.clone(), &data.target).unwrap();
    let mut stream = voc.stream(None, true, None).unwrap();
    let limits = StreamLimits::default();
    let per_call = agent.samples_per_segment();
    let mut segments = Vec::new();
    let (mut all_units, mut streamed) = (Vec::<i64>::new(), Vec::<f32>::new());
    let mut first_utterance_checked = None;
    for (i, chunk) in wave.chunks(per_call).enumerate() {
        let end = (i + 1) * per_call >= wave.len();
        let t = Instant::now();
        let step = if single_utterance { agent.push(chunk, end) } else { agent.push_stream(chunk, end, &limits) }.unwrap();
        let mut audio = Vec::new();
        let (action, new_units, done) = match &step.action {
            Action::Read => ("READ", Vec::new(), end),
            Action::Write { new_units, finished, .. } => ("WRITE", new_units.clone(), *finished || end),
            Action::Finish => ("WRITE", Vec::new(), true),
        };
        let ids: Vec<i64> = new_units.iter().map(|&u| u as i64).collect();
        voc.stream_push(&mut stream, &ids, false, &mut audio).unwrap();
        if done {
            voc.stream_finish(&mut stream, &mut audio).unwrap();
            stream = voc.stream(None, true, None).unwrap();
        }
        let compute_s = t.elapsed().as_secs_f64();
        let p = step.seconds;
        let vocoder_s = compute_s - (p.features + p.encoder + p.ctc + p.mt_decoder + p.t2u_encoder + p.unit_decoder);
        all_units.extend_from_slice(&ids);
        streamed.extend_from_slice(&audio);
        // The first utterance's streamed speech against its whole vocoding (untimed).
        if done && first_utterance_checked.is_none() && !all_units.is_empty() {
            let whole = voc.synthesize(&all_units, None, true, None).unwrap().audio;
            let n = whole.len().min(streamed.len());
            let diff = whole[..n].iter().zip(&streamed[..n]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            first_utterance_checked = Some(serde_json::json!({"samples": [streamed.len(), whole.len()], "max_abs_diff": diff}));
        }
        if std::env::var_os("BENCH_VERBOSE").is_some() {
            eprintln!(
                "{i} {action} {:.0} ms (enc {:.0} ctc {:.0} mt {:.0} t2u {:.0} units {:.0} voc {:.0}), asr {} st {} committed {} new units {} frames {} encoded {}",
                compute_s * 1000.0, p.encoder * 1e3, p.ctc * 1e3, p.mt_decoder * 1e3, p.t2u_encoder * 1e3, p.unit_decoder * 1e3, vocoder_s * 1e3,
                step.asr_ids.len(), step.st_ids.len(), step.translation_ids.len(), new_units.len(), step.frames, step.encoded_frames
            );
        }
        segments.push(serde_json::json!({
            "compute_s": compute_s, "action": action,
            "stages": {"features": p.features, "encoder": p.encoder, "ctc": p.ctc, "mt_decoder": p.mt_decoder, "t2u_encoder": p.t2u_encoder, "unit_decoder": p.unit_decoder, "vocoder": vocoder_s}, "translation_len": step.translation_ids.len(),
            "new_units": new_units, "frames": step.frames, "encoded_frames": step.encoded_frames, "emitted_samples": audio.len(),
        }));
    }
    serde_json::json!({
        "threads": 1, "segment_ms": segment_ms, "speech_s": wave.len() as f64 / 16_000.0, "load_s": load_s,
        "segments": segments, "peak_rss_mb": peak_rss_mb(), "stream_vs_whole": first_utterance_checked,
    })
}

struct Summary {
    median: f64,
    p90: f64,
    max: f64,
    first_fifth: f64,
    last_fifth: f64,
    total: f64,
    writes: usize,
    units: usize,
}

fn summarize(run: &serde_json::Value) -> Summary {
    let segs = run["segments"].as_array().unwrap();
    let ms: Vec<f64> = segs.iter().map(|s| s["compute_s"].as_f64().unwrap() * 1000.0).collect();
    let mut sorted = ms.clone();
    sorted.sort_by(f64::total_cmp);
    let pick = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    let median_of = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let fifth = (ms.len() / 5).max(1);
    Summary {
        median: pick(0.5),
        p90: pick(0.9),
        max: *sorted.last().unwrap(),
        first_fifth: median_of(&ms[..fifth]),
        last_fifth: median_of(&ms[ms.len() - fifth..]),
        total: ms.iter().sum::<f64>() / 1000.0,
        writes: segs.iter().filter(|s| s["action"] == "WRITE").count(),
        units: segs.iter().map(|s| s["new_units"].as_array().map_or(0, Vec::len)).sum(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let opt = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let seconds: f64 = opt("--seconds").map(|s| s.parse().expect("--seconds S")).unwrap_or(60.0);
    let segment_ms: usize = opt("--segment-ms").map(|s| s.parse().expect("--segment-ms MS")).unwrap_or(320);
    // One thread, set before anything runs.
    vocoder::kernels::set_threads(1);
    // SAFETY: single-threaded here; candle's CPU ops read it for their GEMM parallelism.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    let compare_seconds: f64 = opt("--compare-seconds").map(|s| s.parse().expect("--compare-seconds C")).unwrap_or(20.0);
    assert!(compare_seconds > 0.0, "--compare-seconds must be positive (upstream's agent runs on that many seconds)");
    let inputs = prepare(seconds);
    let mut runs: Vec<(String, serde_json::Value)> = Vec::new();
    runs.push((format!("ours, stream ({seconds} s; resets at pauses, 30 s cap)"), ours(&inputs, segment_ms, false)));
    let inputs = prepare(compare_seconds);
    runs.push((format!("ours, one utterance ({compare_seconds} s, as upstream)"), ours(&inputs, segment_ms, true)));
    if args.iter().any(|a| a == "--reference") {
        let python = opt("--python").unwrap_or_else(|| "python3".into());
        let repo = opt("--streamspeech").expect("--reference needs --streamspeech PATH (a StreamSpeech checkout)");
        let o = Command::new(&python)
            .arg(root().join("scripts/bench_simultaneous_reference.py"))
            .args(["--streamspeech", &repo, "--threads", "1", "--segment-ms", &segment_ms.to_string(), "--pieces-per-second", &PIECES_PER_SECOND.to_string()])
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
        match String::from_utf8_lossy(&o.stdout).lines().last().and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok()) {
            Some(j) if o.status.success() => runs.push(("upstream agent (PyTorch)".into(), j)),
            _ => eprintln!("reference failed: {}", String::from_utf8_lossy(&o.stderr)),
        }
    }
    println!("\nMedian ms per segment by stage (ours; the vocoder is the rest of the call):\n");
    println!("| run | features | encoder | CTC | MT decoder | T2U | unit decoder | vocoder |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, run) in runs.iter().filter(|(n, _)| n.starts_with("ours")) {
        let segs = run["segments"].as_array().unwrap();
        let med = |k: &str| {
            let mut v: Vec<f64> = segs.iter().map(|s| s["stages"][k].as_f64().unwrap_or(0.0) * 1000.0).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let cells: Vec<String> = ["features", "encoder", "ctc", "mt_decoder", "t2u_encoder", "unit_decoder", "vocoder"].iter().map(|k| format!("{:.1}", med(k))).collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
    println!("\n{segment_ms} ms segments, 1 thread; compute per segment in ms (and % of the segment)\n");
    println!("| run | segments | writes | units | median | p90 | max | median, first ⅕ → last ⅕ | total s | peak RSS MB |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let seg = segment_ms as f64;
    for (name, run) in &runs {
        let s = summarize(run);
        let n = run["segments"].as_array().unwrap().len();
        println!(
            "| {name} | {n} | {} | {} | {:.0} ({:.0} %) | {:.0} ({:.0} %) | {:.0} ({:.0} %) | {:.0} → {:.0} | {:.1} | {:.0} |",
            s.writes, s.units, s.median, 100.0 * s.median / seg, s.p90, 100.0 * s.p90 / seg, s.max, 100.0 * s.max / seg, s.first_fifth, s.last_fifth, s.total,
            run["peak_rss_mb"].as_f64().unwrap_or(f64::NAN)
        );
    }
    let ours_stream = summarize(&runs[0].1);
    println!(
        "\ntarget (ours, stream): median ≤ 30 % → {}, max ≤ 100 % → {}",
        if ours_stream.median <= 0.3 * seg { "met" } else { "NOT met" },
        if ours_stream.max <= seg { "met" } else { "NOT met" }
    );
    if let Some(check) = runs[0].1.get("stream_vs_whole").filter(|c| !c.is_null()) {
        println!("first utterance, streamed speech vs its whole vocoding: {check}");
    }
    if let Some((_, reference)) = runs.iter().find(|(n, _)| n.starts_with("upstream")) {
        let units = |r: &serde_json::Value| -> Vec<serde_json::Value> { r["segments"].as_array().unwrap().iter().map(|s| s["new_units"].clone()).collect() };
        let (a, b) = (units(&runs[1].1), units(reference));
        let first_diff = a.iter().zip(&b).position(|(x, y)| x != y);
        match (a.len() == b.len(), first_diff) {
            (true, None) => println!("one utterance: new units equal upstream's at every one of {} segments", a.len()),
            _ => println!("one utterance: units differ from upstream's (segments {} vs {}, first difference at {first_diff:?})", a.len(), b.len()),
        }
        let (o, r) = (summarize(&runs[1].1), summarize(reference));
        println!("one utterance, ours / upstream: median {:.3}, max {:.3}, total {:.3}", o.median / r.median, o.max / r.max, o.total / r.total);
    }
    let all: Vec<serde_json::Value> = runs.iter().map(|(n, j)| serde_json::json!({"run": n, "result": j})).collect();
    std::fs::write(scratch().join("simultaneous.json"), serde_json::to_string_pretty(&all).unwrap()).unwrap();
}
