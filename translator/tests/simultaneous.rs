//! The simultaneous policy against upstream's agent: traces recorded by
//! `scripts/make_simultaneous_fixture.py` (StreamSpeech's own `StreamSpeechS2STAgent` with its
//! SimulEval base classes, on the small real-format checkpoint, a tiny 1000-unit CodeHiFiGAN with
//! a duration predictor, and a real Spanish clip at 16 kHz) at 160, 320 and 640 ms segments. Every
//! segment's action, CTC outputs, committed translation, MT decoder input, new units and emitted
//! sample count must be identical (the 640 ms trace includes whole-word trimming and the final
//! step's pad position, the 160 and 320 ms ones the 100-token cap at the source end).

use std::path::{Path, PathBuf};

use translator::data::DataDir;
use translator::model::StreamSpeech;
use translator::simultaneous::{Action, PolicyConfig, SimultaneousAgent};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn fixtures() -> PathBuf {
    root().join("translator/tests/fixtures")
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().map(|a| a.iter().map(|x| x.as_u64().unwrap() as u32).collect()).unwrap_or_default()
}

fn check_trace(segment_ms: usize) {
    let trace: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join(format!("simultaneous/trace_{segment_ms}.json"))).unwrap()).unwrap();
    let data = DataDir::load(&fixtures().join("es-en-small")).unwrap();
    let dev = candle_core::Device::Cpu;
    let (model, _) = StreamSpeech::load_for_segment(&fixtures().join("streamspeech/small.pt"), data.mt, Some(segment_ms), &dev).unwrap();
    let vocoder = vocoder::units::load_unit_vocoder(&fixtures().join("simultaneous/unit_vocoder_tiny.safetensors"), None, &dev).unwrap();
    let hop = vocoder.vocoder.config().code_hop_size;
    let mut reader = hound::WavReader::open(root().join("tests/data").join(trace["clip"].as_str().unwrap())).unwrap();
    assert_eq!(reader.spec().sample_rate, 16_000);
    let wave: Vec<f32> = reader.samples::<i16>().map(|s| s.unwrap() as f32 / 32768.0).collect();
    let mut agent = SimultaneousAgent::new(&model, PolicyConfig::for_segment(segment_ms), data.cmvn, &data.target).unwrap();
    let per_call = agent.samples_per_segment();
    let segments = trace["segments"].as_array().unwrap();
    let (mut pos, mut writes) = (0usize, 0usize);
    for (i, want) in segments.iter().enumerate() {
        let end = (pos + per_call).min(wave.len());
        let finished = pos + per_call >= wave.len();
        let step = agent.push(&wave[pos..end], finished).unwrap();
        pos = end;
        let at = format!("{segment_ms} ms, segment {i}");
        assert_eq!(pos as u64, want["input_samples"].as_u64().unwrap(), "{at}: input");
        assert_eq!(step.asr_ids, ids(&want["asr_ids"]), "{at}: ASR CTC");
        assert_eq!(step.st_ids.len() as u64, want["st_ctc_len"].as_u64().unwrap(), "{at}: ST CTC length");
        assert_eq!(step.translation_ids, ids(&want["translation_ids"]), "{at}: committed translation");
        match (&step.action, want["action"].as_str().unwrap()) {
            (Action::Write { units, new_units, finished: done }, "WRITE") => {
                writes += 1;
                assert_eq!(*done, finished, "{at}: finished");
                assert_eq!(units, &ids(&want["units"]), "{at}: units");
                assert_eq!(new_units, &ids(&want["new_units"]), "{at}: new units");
                if !want["mt_input"].is_null() {
                    assert_eq!(step.mt_input.as_ref(), Some(&ids(&want["mt_input"])), "{at}: MT input");
                }
                // Upstream emits, from a vocoding of all units, the newest units' durations × hop.
                let all: Vec<i64> = units.iter().map(|&u| u as i64).collect();
                let durations = vocoder.vocoder.predict_durations(&all).unwrap();
                assert_eq!(durations, ids(&want["durations"]), "{at}: durations");
                let emitted: u32 = durations[durations.len() - new_units.len()..].iter().sum::<u32>() * hop as u32;
                assert_eq!(emitted as u64, want["emitted_samples"].as_u64().unwrap(), "{at}: emitted samples");
            }
            (Action::Read, "READ") => assert_eq!(want["emitted_samples"].as_u64(), Some(0)),
            (Action::Finish, "WRITE") => assert_eq!(want["emitted_samples"].as_u64(), Some(0), "{at}: an empty final write"),
            (got, expected) => panic!("{at}: {got:?}, upstream {expected}"),
        }
    }
    assert_eq!(pos, wave.len(), "every sample sent");
    assert!(writes >= 4, "{segment_ms} ms: only {writes} writes");
}

#[test]
fn trace_160ms_equals_upstream_agent() {
    check_trace(160);
}

#[test]
fn trace_320ms_equals_upstream_agent() {
    check_trace(320);
}

#[test]
fn trace_640ms_whole_words_equals_upstream_agent() {
    check_trace(640);
}
