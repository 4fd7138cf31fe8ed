//! `--report DIR`: `spectrogram.png` (input, Original, Modified and the switched render as
//! stacked log-mel images on one shared colour scale, time and mel-bin axes, switch points
//! marked) and `report.json` (models, latency, real-time factor, per-render mel statistics —
//! the health probe's flatness and bin variance — and loudness).
//!
//! All mels are computed the same way, after resampling to the reference front end's rate, so
//! the panels are comparable; a white-noise vocoder shows up as flat horizontal bands.

use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;
use vocoder::health::{self, HealthMetrics};
use vocoder::mel::MelFrontEnd;
use vocoder::{Vocoder, VocoderConfig};

use crate::audio_io::Audio;
use crate::render::{Switch, slot_name};

/// What the report says about one loaded model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub slot: &'static str,
    pub file: String,
    pub family: String,
    pub parameters: usize,
    pub sampling_rate: u32,
    /// sha256 of the model's config (as JSON).
    pub config_hash: String,
    pub checkpoint_report: CheckpointSummary,
    pub health: Option<health::HealthVerdict>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckpointSummary {
    pub clean: bool,
    pub notes: Vec<String>,
}

impl ModelInfo {
    pub fn new(slot: usize, file: &Path, loaded: &vocoder::LoadedVocoder, verdict: Option<health::HealthVerdict>) -> Self {
        let v = &loaded.vocoder;
        let cfg_json = serde_json::to_string(v.config()).unwrap_or_default();
        Self {
            slot: slot_name(slot),
            file: file.display().to_string(),
            family: v.family().name().to_string(),
            parameters: v.param_count(),
            sampling_rate: v.config().sampling_rate,
            config_hash: vocoder::fetch::sha256_hex(cfg_json.as_bytes()),
            checkpoint_report: CheckpointSummary { clean: loaded.report.is_clean(), notes: loaded.report.notes.clone() },
            health: verdict,
        }
    }
}

/// A rendered signal to show and measure.
pub struct Panel<'a> {
    pub name: &'a str,
    pub audio: &'a Audio,
}

#[derive(Debug, Clone, Serialize)]
pub struct RenderStats {
    pub name: String,
    /// The health probe's measures of this render against the input's mel.
    pub mel: HealthMetrics,
    /// Integrated loudness (EBU R128), LUFS; None for silence.
    pub loudness_lufs: Option<f64>,
    pub peak: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub input: String,
    pub input_rate: u32,
    pub input_channels: usize,
    pub seconds: f64,
    pub input_loudness_lufs: Option<f64>,
    pub input_peak: f32,
    pub models: Vec<ModelInfo>,
    pub chunk_ms: u32,
    pub block_size: usize,
    pub latency_samples: u32,
    pub latency_ms: f64,
    /// Render wall time / audio duration of the switched render.
    pub real_time_factor: f64,
    pub switches: Vec<SwitchJson>,
    pub renders: Vec<RenderStats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SwitchJson {
    pub seconds: f64,
    pub mode: &'static str,
}

pub fn switches_json(s: &[Switch]) -> Vec<SwitchJson> {
    s.iter().map(|s| SwitchJson { seconds: s.seconds, mode: slot_name(s.slot) }).collect()
}

fn loudness(a: &Audio) -> Option<f64> {
    let mut m = ebur128::EbuR128::new(a.channels.len() as u32, a.rate, ebur128::Mode::I).ok()?;
    let planes: Vec<&[f32]> = a.channels.iter().map(Vec::as_slice).collect();
    m.add_frames_planar_f32(&planes).ok()?;
    m.loudness_global().ok().filter(|l| l.is_finite())
}

fn peak(a: &Audio) -> f32 {
    a.channels.iter().flatten().fold(0f32, |p, x| p.max(x.abs()))
}

/// The front end every panel uses: the Original model's config if loaded (else the Modified's,
/// else the universal V1's audio settings).
pub fn reference_front_end(models: &[Option<&Vocoder>]) -> VocoderConfig {
    if let Some(v) = models.iter().flatten().next() {
        return v.config().clone();
    }
    VocoderConfig::from_json(
        r#"{"resblock":"1","upsample_rates":[8,8,2,2],"upsample_kernel_sizes":[16,16,4,4],
        "upsample_initial_channel":512,"resblock_kernel_sizes":[3,7,11],
        "resblock_dilation_sizes":[[1,3,5],[1,3,5],[1,3,5]],"num_mels":80,"n_fft":1024,
        "hop_size":256,"win_size":1024,"sampling_rate":22050,"fmin":0,"fmax":8000}"#,
    )
    .expect("built-in config")
}

struct Mel {
    data: Vec<f32>,
    frames: usize,
}

/// What the caller knows about the render the report describes.
pub struct RunFacts {
    pub models: Vec<ModelInfo>,
    pub chunk_ms: u32,
    pub block_size: usize,
    /// The engine's latency, in input samples.
    pub latency_samples: u32,
    /// Wall time of the (switched) render.
    pub compute_seconds: f64,
}

/// Measures every panel and writes both files into `dir`. Returns what `report.json` holds.
pub fn write_report(
    dir: &Path,
    input_name: &str,
    input: &Audio,
    panels: &[Panel],
    switches: &[Switch],
    cfg: &VocoderConfig,
    facts: RunFacts,
) -> anyhow::Result<Report> {
    std::fs::create_dir_all(dir)?;
    let mut report = Report {
        input: input_name.to_string(),
        input_rate: input.rate,
        input_channels: input.channels.len(),
        seconds: input.seconds(),
        input_loudness_lufs: loudness(input),
        input_peak: peak(input),
        models: facts.models,
        chunk_ms: facts.chunk_ms,
        block_size: facts.block_size,
        latency_samples: facts.latency_samples,
        latency_ms: facts.latency_samples as f64 * 1000.0 / input.rate as f64,
        real_time_factor: facts.compute_seconds / input.seconds(),
        switches: switches_json(switches),
        renders: Vec::new(),
    };
    let front = MelFrontEnd::new(cfg);
    let to_model = |a: &Audio| engine::stream::resample_whole(&a.mono(), a.rate, cfg.sampling_rate);
    let x = to_model(input);
    let (in_mel, in_frames) = front.mel(&x);
    let mut mels = vec![("Input".to_string(), Mel { data: in_mel.clone(), frames: in_frames })];
    for p in panels {
        let y = to_model(p.audio);
        let verdict = health::judge(&front, &in_mel, in_frames, &y);
        let (m, f) = front.mel(&y);
        mels.push((p.name.to_string(), Mel { data: m, frames: f }));
        report.renders.push(RenderStats { name: p.name.to_string(), mel: verdict.metrics, loudness_lufs: loudness(p.audio), peak: peak(p.audio) });
    }
    // Both files are written beside their targets and put in place together: a failure leaves
    // neither (nor any temporary file).
    let png = vocoder::files::Output::create(&dir.join("spectrogram.png"), true)?;
    draw(png.temp_path(), &mels, cfg, input.seconds(), switches)?;
    let mut json = vocoder::files::Output::create(&dir.join("report.json"), true)?;
    std::io::Write::write_all(json.file(), serde_json::to_string_pretty(&report)?.as_bytes())?;
    png.commit()?;
    json.commit()?;
    Ok(report)
}

/// A perceptual colour map (dark blue → teal → yellow), as viridis.
fn colour(v: f32) -> RGBColor {
    const STOPS: [(f32, [f32; 3]); 5] = [
        (0.0, [68.0, 1.0, 84.0]),
        (0.25, [59.0, 82.0, 139.0]),
        (0.5, [33.0, 145.0, 140.0]),
        (0.75, [94.0, 201.0, 98.0]),
        (1.0, [253.0, 231.0, 37.0]),
    ];
    let v = v.clamp(0.0, 1.0);
    let i = STOPS.iter().position(|s| s.0 >= v).unwrap_or(4).max(1);
    let (a, b) = (STOPS[i - 1], STOPS[i]);
    let t = (v - a.0) / (b.0 - a.0);
    let c = |k: usize| (a.1[k] + t * (b.1[k] - a.1[k])) as u8;
    RGBColor(c(0), c(1), c(2))
}

fn draw(path: &Path, mels: &[(String, Mel)], cfg: &VocoderConfig, seconds: f64, switches: &[Switch]) -> anyhow::Result<()> {
    let bins = cfg.num_mels;
    // One colour scale for every panel: the loudest bin anywhere down to 80 dB below it
    // (log-mel is ln(magnitude): 80 dB = 9.21).
    let vmax = mels.iter().flat_map(|(_, m)| m.data.iter()).fold(f32::MIN, |a, &b| a.max(b));
    let vmin = mels.iter().flat_map(|(_, m)| m.data.iter()).fold(f32::MAX, |a, &b| a.min(b)).max(vmax - 9.21);
    let width = 1400u32;
    let panel_h = 240u32;
    let root = BitMapBackend::new(path, (width, panel_h * mels.len() as u32 + 40)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(40);
    title.draw(&Text::new(
        format!("log-mel spectrograms, shared colour scale {vmin:.1} … {vmax:.1} (ln magnitude; dark = quiet); red lines: mode switches"),
        (10, 12),
        ("sans-serif", 18).into_font(),
    ))?;
    let areas = body.split_evenly((mels.len(), 1));
    let hop_s = cfg.hop_size as f64 / cfg.sampling_rate as f64;
    for ((name, mel), area) in mels.iter().zip(&areas) {
        let mut chart = ChartBuilder::on(area)
            .caption(name, ("sans-serif", 16))
            .margin(6)
            .x_label_area_size(28)
            .y_label_area_size(48)
            .build_cartesian_2d(0f64..seconds.max(hop_s), 0f64..bins as f64)?;
        chart.configure_mesh().disable_mesh().x_desc("time (s)").y_desc("mel bin").label_style(("sans-serif", 12)).draw()?;
        // At most ~1300 columns: longer files are shown with columns merged (max), so the
        // picture stays readable and fast.
        let step = mel.frames.div_ceil(1300).max(1);
        let cols = mel.frames.div_ceil(step);
        chart.draw_series((0..cols).flat_map(|c| {
            (0..bins).map(move |b| {
                let f0 = c * step;
                let f1 = (f0 + step).min(mel.frames);
                let v = (f0..f1).map(|f| mel.data[b * mel.frames + f]).fold(f32::MIN, f32::max);
                let x0 = f0 as f64 * hop_s;
                let x1 = f1 as f64 * hop_s;
                Rectangle::new([(x0, b as f64), (x1, b as f64 + 1.0)], colour((v - vmin) / (vmax - vmin).max(1e-6)).filled())
            })
        }))?;
        for s in switches {
            chart.draw_series(LineSeries::new([(s.seconds, 0.0), (s.seconds, bins as f64)], RED.stroke_width(2)))?;
        }
    }
    root.present()?;
    Ok(())
}
