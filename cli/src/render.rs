//! Offline rendering through the plugin's own engine (`engine::EngineProcessor` in offline
//! mode: same resampling, chunking, latency and mode crossfades as a DAW bounce), with the
//! engine's latency removed so the output lines up with the input sample for sample.

use std::sync::Arc;
use std::time::Instant;

use engine::{EngineProcessor, EngineSetup};
use vocoder::Vocoder;

use crate::audio_io::Audio;

/// Mode slots, in the plugin's order.
pub const ORIGINAL: usize = 0;
pub const MODIFIED: usize = 1;

pub fn slot_name(slot: usize) -> &'static str {
    if slot == ORIGINAL { "original" } else { "modified" }
}

/// A mode change at an input time, as `--switch 1.0:modified` writes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Switch {
    pub seconds: f64,
    pub slot: usize,
}

/// Parses `1.0:modified,2.5:original` (times in seconds of input, ascending); newlines separate
/// entries too, and lines starting with `#` are comments (the `--switch-file` form).
pub fn parse_switches(s: &str) -> Result<Vec<Switch>, String> {
    let mut out: Vec<Switch> = Vec::new();
    for item in s.split([',', '\n', '\r']).map(str::trim).filter(|i| !i.is_empty() && !i.starts_with('#')) {
        let (t, m) = item.split_once(':').ok_or_else(|| format!("`{item}`: expected TIME:MODE, e.g. 1.0:modified"))?;
        let seconds: f64 = t.trim().parse().map_err(|_| format!("`{item}`: `{t}` is not a time in seconds"))?;
        if !seconds.is_finite() || seconds < 0.0 {
            return Err(format!("`{item}`: time must be 0 or more seconds"));
        }
        let slot = parse_mode(m.trim())?;
        if out.last().is_some_and(|p| p.seconds > seconds) {
            return Err(format!("`{item}`: switch times must be in ascending order"));
        }
        out.push(Switch { seconds, slot });
    }
    Ok(out)
}

pub fn parse_mode(m: &str) -> Result<usize, String> {
    match m.to_ascii_lowercase().as_str() {
        "original" => Ok(ORIGINAL),
        "modified" => Ok(MODIFIED),
        _ => Err(format!("`{m}` is not a mode (original or modified)")),
    }
}

pub struct RenderSetup {
    pub slots: [Option<Arc<Vocoder>>; 2],
    pub chunk_ms: u32,
    pub block: usize,
    pub initial_slot: usize,
    pub switches: Vec<Switch>,
}

pub struct Rendered {
    pub audio: Audio,
    /// The engine's latency (removed from `audio`), in input samples.
    pub latency: u32,
    /// Wall time of the render, seconds.
    pub compute_seconds: f64,
    pub underruns: u64,
}

/// Renders `input` through the engine. `progress(done, total)` is called per block.
pub fn render(input: &Audio, setup: &RenderSetup, progress: &mut dyn FnMut(u64, u64)) -> Rendered {
    let n_ch = input.channels.len();
    let frames = input.frames();
    let block = setup.block.max(1);
    let mut engine = EngineProcessor::new(EngineSetup {
        host_rate: input.rate,
        channels: n_ch,
        max_block: block,
        chunk_ms: setup.chunk_ms,
        slots: setup.slots.clone(),
        initial_slot: setup.initial_slot,
        offline: true,
        passthrough_gain: [1.0, 1.0],
        worker_threads: engine::WorkerThreads::new(1),
        unheard: engine::Unheard::Compute,
        // The CLI's blocks are large already (64 k samples by default).
        render_ahead: false,
    });
    let latency = engine.latency() as usize;
    let total = frames + latency;
    // Switch points in input samples; each lands on the first sample at or after its time.
    let mut switches: Vec<(usize, usize)> =
        setup.switches.iter().map(|s| ((s.seconds * input.rate as f64).round() as usize, s.slot)).collect();
    switches.reverse();
    let mut out: Vec<Vec<f32>> = vec![Vec::with_capacity(total); n_ch];
    let mut bufs: Vec<Vec<f32>> = vec![vec![0.0; block]; n_ch];
    let t0 = Instant::now();
    let mut pos = 0;
    while pos < total {
        while let Some(&(at, slot)) = switches.last() {
            if at > pos {
                break;
            }
            engine.set_mode(slot);
            switches.pop();
        }
        // Blocks end at the next switch point, as a host splits blocks at automation events.
        let mut end = (pos + block).min(total);
        if let Some(&(at, _)) = switches.last() {
            end = end.min(at.max(pos + 1));
        }
        let n = end - pos;
        for (c, buf) in bufs.iter_mut().enumerate() {
            buf.truncate(0);
            buf.extend((pos..end).map(|i| if i < frames { input.channels[c][i] } else { 0.0 }));
        }
        {
            let mut chans: Vec<&mut [f32]> = bufs.iter_mut().map(|b| &mut b[..n]).collect();
            engine.process(&mut chans, &mut || (1.0, 1.0));
        }
        for (o, b) in out.iter_mut().zip(&bufs) {
            o.extend_from_slice(&b[..n]);
        }
        pos = end;
        progress(pos as u64, total as u64);
    }
    let compute_seconds = t0.elapsed().as_secs_f64();
    let channels = out.into_iter().map(|c| c[latency..latency + frames].to_vec()).collect();
    Rendered {
        audio: Audio { rate: input.rate, channels },
        latency: latency as u32,
        compute_seconds,
        underruns: engine.stats.underruns.load(std::sync::atomic::Ordering::Relaxed),
    }
}
