//! A continuous stream has no sentence ends: the agent cuts it into utterances after 700 ms of
//! silence following speech, or when an utterance reaches 30 s, so that the work of a policy call
//! (the feature frames the encoder runs over) stays bounded however long the stream runs.
//! The cost measures are the frame counts each call reports, not time (deterministic): the
//! source's feature frames (what attention and the MT decoder run over) and the encoder frames
//! computed (the rest are cached: about one segment's worth per call, however long the
//! utterance).

use std::path::{Path, PathBuf};

use translator::data::DataDir;
use translator::model::StreamSpeech;
use translator::simultaneous::{Action, PolicyConfig, SimultaneousAgent, StreamLimits};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn clip() -> Vec<f32> {
    let mut r = hound::WavReader::open(root().join("tests/data/es_picovoice_bat_test_es.wav")).unwrap();
    assert_eq!(r.spec().sample_rate, 16_000);
    r.samples::<i16>().map(|s| s.unwrap() as f32 / 32768.0).collect()
}

struct Run {
    frames: Vec<usize>,
    encoded: Vec<usize>,
    ended: Vec<usize>,
    writes: usize,
}

fn run(stream: &[f32], segment_ms: usize, limits: &StreamLimits) -> Run {
    let fx = root().join("translator/tests/fixtures");
    let data = DataDir::load(&fx.join("es-en-small")).unwrap();
    let (model, _) = StreamSpeech::load_for_segment(&fx.join("streamspeech/small.pt"), data.mt, Some(segment_ms), &candle_core::Device::Cpu).unwrap();
    let mut agent = SimultaneousAgent::new(&model, PolicyConfig::for_segment(segment_ms), data.cmvn, &data.target).unwrap();
    let per_call = agent.samples_per_segment();
    let mut out = Run { frames: Vec::new(), encoded: Vec::new(), ended: Vec::new(), writes: 0 };
    for (i, chunk) in stream.chunks(per_call).enumerate() {
        let end = (i + 1) * per_call >= stream.len();
        let step = agent.push_stream(chunk, end, limits).unwrap();
        out.frames.push(step.frames);
        out.encoded.push(step.encoded_frames);
        match step.action {
            Action::Write { finished: true, .. } | Action::Finish => {
                out.writes += usize::from(matches!(step.action, Action::Write { .. }));
                out.ended.push(i);
            }
            Action::Write { .. } => out.writes += 1,
            Action::Read => {}
        }
    }
    out
}

#[test]
fn five_minute_stream_resets_at_silences_with_bounded_cost() {
    let speech = clip();
    // 5 s of silence first: not translated at all.
    let mut stream = vec![0.0; 5 * 16_000];
    let mut clips = 0;
    while stream.len() < 5 * 60 * 16_000 {
        stream.extend_from_slice(&speech);
        stream.extend(std::iter::repeat_n(0.0, 16_000)); // 1 s of silence
        clips += 1;
    }
    let segment_ms = 640;
    let r = run(&stream, segment_ms, &StreamLimits::default());
    // One utterance per clip (its silence ends it), so a call never sees more than one clip plus
    // its silence.
    assert!(r.ended.len() + 1 >= clips && r.ended.len() <= clips + 1, "{} utterances for {clips} clips", r.ended.len());
    // One clip, its pause, and up to two segments around them (the silence kept as context
    // before speech, the segment the pause ends in).
    let clip_frames = (speech.len() + 16_000) / 160 + 2 * segment_ms / 10;
    let max = *r.frames.iter().max().unwrap();
    assert!(max <= clip_frames, "a call ran over {max} frames (one clip is {clip_frames})");
    // Flat: the last minute's calls cost what the first minute's did.
    let per_minute = 60_000 / segment_ms;
    let first: usize = r.frames[..per_minute].iter().sum();
    let last: usize = r.frames[r.frames.len() - per_minute..].iter().sum();
    assert!((last as f64) < 1.2 * first as f64 + 1000.0, "first minute {first} frames, last {last}");
    assert!(r.writes >= clips, "{} writes for {clips} clips", r.writes);
    // The encoder computes about a segment per call (its 40 ms frames), plus the open chunk
    // (16 frames at 640 ms); at an utterance's start, the kept context segment too.
    let encoded_max = *r.encoded.iter().max().unwrap();
    assert!(encoded_max <= 2 * segment_ms / 40 + 16, "a call encoded {encoded_max} frames");
    let encoded_total: usize = r.encoded.iter().sum();
    let frames_total: usize = r.frames.iter().sum::<usize>() / 4;
    assert!(encoded_total * 2 < frames_total, "encoded {encoded_total} frames in all, against {frames_total} recomputed");
    println!("{} calls: encoder frames computed, max {encoded_max}, total {encoded_total}; a recompute of every prefix: {frames_total}", r.encoded.len());
    // Silence before speech costs nothing.
    assert!(r.frames[..7].iter().all(|&f| f == 0), "{:?}", &r.frames[..8]);
}

#[test]
fn speech_without_pauses_is_cut_at_the_utterance_cap() {
    let speech = clip();
    let stream: Vec<f32> = speech.iter().cycle().take(45 * 16_000).copied().collect();
    // No silence ever ends an utterance here: only the cap does.
    let limits = StreamLimits { silence_ms: usize::MAX / 32_000, max_utterance_ms: 20_000, ..StreamLimits::default() };
    let segment_ms = 640;
    let r = run(&stream, segment_ms, &limits);
    let cap_frames = 20_000 / 10 + segment_ms / 10;
    let max = *r.frames.iter().max().unwrap();
    assert!(max <= cap_frames, "a call ran over {max} frames (cap {cap_frames})");
    let encoded_max = *r.encoded.iter().max().unwrap();
    assert!(encoded_max <= 2 * segment_ms / 40 + 16, "a call encoded {encoded_max} frames");
    assert!(r.ended.len() >= 2, "cut at the cap: {:?}", r.ended);
    assert_eq!(*r.ended.last().unwrap(), r.frames.len() - 1, "the stream's end finishes the last utterance");
}
