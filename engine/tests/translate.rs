//! The translation session (engine/src/translate.rs) that the CLI's `translate --simultaneous`
//! and the plugin's Translate task share: fed in any block sizes it gives the render's samples
//! bit for bit (what makes a bounce equal the CLI), its lanes are independent, and its queue is
//! bounded. The small real-format StreamSpeech checkpoint and the tiny 1000-unit CodeHiFiGAN of
//! translator/tests/fixtures, on a real Spanish clip.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::translate::{SessionConfig, TranslateSession, VoiceSpec};
use translator::data::DataDir;
use translator::model::StreamSpeech;

mod common;
use common::spanish_clip as input;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

struct Fixture {
    model: StreamSpeech,
    data: DataDir,
    vocoder: Arc<vocoder::units::UnitVocoder>,
}

fn fixture(segment_ms: usize) -> Fixture {
    let fx = root().join("translator/tests/fixtures");
    let data = DataDir::load(&fx.join("es-en-small")).unwrap();
    let (model, _) = StreamSpeech::load_for_segment(&fx.join("streamspeech/small.pt"), data.mt, Some(segment_ms), &candle_core::Device::Cpu).unwrap();
    let vocoder = vocoder::units::load_unit_vocoder(&fx.join("simultaneous/unit_vocoder_tiny.safetensors"), None, &candle_core::Device::Cpu).unwrap();
    Fixture { model, data, vocoder: Arc::new(vocoder.vocoder) }
}

/// A small deterministic generator for block sizes.
fn blocks(seed: u64, len: usize, max: usize) -> Vec<usize> {
    let mut s = seed;
    let mut out = Vec::new();
    let mut left = len;
    while left > 0 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let n = ((s % max as u64) as usize + 1).min(left);
        out.push(n);
        left -= n;
    }
    out
}

#[test]
fn any_block_sizes_give_the_render_bit_for_bit() {
    let fx = fixture(320);
    let rate = 48_000;
    let x = input(rate);
    let voice = || VoiceSpec::new(fx.vocoder.clone(), None);
    // The render: the whole input at once, ended (what the CLI does).
    let mut render = vec![Vec::new()];
    let mut s = TranslateSession::new(&fx.model, &fx.data, vec![voice()], SessionConfig::new(320, rate, rate)).unwrap();
    let want = s.push(&x, true, 0, &mut render).unwrap();
    let render = render.pop().unwrap();
    assert_eq!(render.len(), x.len().max(render.len()), "the listener covers the input");
    let writes = want.iter().filter(|r| !r.new_units.is_empty()).count();
    assert!(writes >= 3, "{writes} writes");
    assert!(render.iter().any(|v| v.abs() > 1e-3), "speech in the render");
    assert!(s.delay_ms(0) >= 320.0);
    // Half a second a sample at a time, then the rest at once; random blocks; fixed blocks.
    let one_by_one: Vec<usize> = std::iter::repeat_n(1, rate as usize / 2).chain([x.len() - rate as usize / 2]).collect();
    for (sizes, label) in [(one_by_one, "1"), (blocks(7, x.len(), 64), "≤64"), (blocks(9, x.len(), 4096), "≤4096"), (vec![512; x.len() / 512], "512")] {
        // A live stream never ends: fed block by block, it emits what it can as it goes.
        let mut out = vec![Vec::new()];
        let mut s = TranslateSession::new(&fx.model, &fx.data, vec![voice()], SessionConfig::new(320, rate, rate)).unwrap();
        let (mut pos, mut reports) = (0, Vec::new());
        for n in sizes {
            reports.extend(s.push(&x[pos..pos + n], false, 0, &mut out).unwrap());
            pos += n;
            // The output keeps up with the input: it trails by at most a segment (a decision
            // covers the segment before it) and the converters' reach; the fixed delay puts it
            // ahead again.
            let lag = pos as f64 - out[0].len() as f64;
            assert!(lag <= (320.0 + 60.0) * rate as f64 / 1000.0, "{label}: output {lag} samples behind input {pos}");
        }
        let out = &out[0];
        assert!(out.len() + (rate as usize) >= x.len(), "{label}: {} of {}", out.len(), x.len());
        let first_diff = out.iter().zip(&render).position(|(a, b)| a.to_bits() != b.to_bits());
        assert_eq!(first_diff, None, "{label}: the stream differs from the render");
        // Same decisions (the render's last call ends the stream: silence, nothing said).
        for (g, w) in reports.iter().zip(&want) {
            assert_eq!((g.action, &g.new_units, &g.step.translation_ids), (w.action, &w.new_units, &w.step.translation_ids), "{label}: segment {}", g.index);
            assert_eq!(g.voiced, w.voiced, "{label}: segment {}", g.index);
        }
        assert!(reports.len() + 1 >= want.len(), "{label}");
    }
}

#[test]
fn lanes_are_independent_and_the_queue_is_bounded() {
    let fx = fixture(320);
    let rate = 16_000;
    let x = input(rate);
    let with_dur = VoiceSpec::new(fx.vocoder.clone(), None);
    let without = VoiceSpec { dur_prediction: false, ..with_dur.clone() };
    let run = |voices: Vec<VoiceSpec>, cfg: SessionConfig| {
        let n = voices.len();
        let mut out = vec![Vec::new(); n];
        let mut s = TranslateSession::new(&fx.model, &fx.data, voices, cfg).unwrap();
        let reports = s.push(&x, true, 0, &mut out).unwrap();
        let stats: Vec<_> = (0..n).map(|i| s.lane_stats(i)).collect();
        (out, reports, stats)
    };
    let cfg = || SessionConfig::new(320, rate, rate);
    let (both, _, both_stats) = run(vec![with_dur.clone(), without.clone()], cfg());
    let (a, _, _) = run(vec![with_dur.clone()], cfg());
    let (b, _, _) = run(vec![without.clone()], cfg());
    assert_eq!(both[0], a[0], "lane 0 as if alone");
    assert_eq!(both[1], b[0], "lane 1 as if alone");
    assert_ne!(both[0], both[1], "duration prediction changes the speech");
    // Bounded queue: with no backlog allowed, a write that would queue behind earlier speech is
    // dropped (counted), and nothing starts later than its due time.
    let queued = both_stats.iter().any(|s| s.max_backlog > 0);
    assert!(queued, "the fixture's writes queue (its units outlast the segments)");
    let (_, reports, stats) = run(vec![with_dur.clone()], SessionConfig { max_backlog_ms: 0.0, ..cfg() });
    assert_eq!(stats[0].max_backlog, 0);
    assert!(stats[0].dropped_samples > 0, "{:?}", stats[0]);
    assert!(reports.iter().any(|r| r.voiced[0].start.is_some()), "the first write still plays");
    // A live caller that fell behind: speech starts no earlier than it can still be heard.
    let mut out = vec![Vec::new()];
    let mut s = TranslateSession::new(&fx.model, &fx.data, vec![with_dur], cfg()).unwrap();
    let late = 3 * rate as u64;
    let reports = s.push(&x, true, late, &mut out).unwrap();
    let first = reports.iter().find_map(|r| r.voiced[0].start).expect("speech");
    assert!(first >= late, "{first}");
    assert!(out[0][..late as usize].iter().all(|v| *v == 0.0), "silence before it");
}
