//! What the plugin window shows, computed without a window (so it is unit-tested): one view per
//! mode slot, the latency readout and the engine meters. The window (issue #9) only draws these.

use std::path::Path;

use crate::latency::LatencyChoice;
use crate::models::SlotStatus;

/// The slot's state at a glance (the colour of its badge in the window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Badge {
    Ok,
    Empty,
    Missing,
    Failed,
    Unhealthy,
    NeedsTranslator,
}

impl Badge {
    pub fn label(self) -> &'static str {
        match self {
            Badge::Ok => "ok",
            Badge::Empty => "no model",
            Badge::Missing => "file missing",
            Badge::Failed => "did not load",
            Badge::Unhealthy => "unhealthy",
            Badge::NeedsTranslator => "needs a translator",
        }
    }
    /// Anything but `Ok` plays the latency-delayed dry signal.
    pub fn plays_dry(self) -> bool {
        self != Badge::Ok
    }
}

/// One mode slot as the window shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotView {
    pub mode: &'static str,
    /// File name (not the whole path), or "—".
    pub file: String,
    pub badge: Badge,
    /// "HiFi-GAN V1 · 22050 Hz · 13.9 M parameters" for a ready model.
    pub facts: Option<String>,
    /// One line under the badge.
    pub summary: String,
    /// The full text behind "details": checkpoint report, health verdict or error.
    pub details: String,
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string())
}

fn millions(n: usize) -> String {
    if n >= 100_000 { format!("{:.1} M parameters", n as f64 / 1e6) } else { format!("{n} parameters") }
}

impl SlotView {
    pub fn new(mode: &'static str, status: &SlotStatus) -> Self {
        let (file, badge, facts, details) = match status {
            SlotStatus::Ready { path, vocoder, health, report } => {
                let c = vocoder.config();
                let facts = format!("{} · {} Hz · {}", vocoder.family().name(), c.sampling_rate, millions(vocoder.param_count()));
                (file_name(path), Badge::Ok, Some(facts), format!("{}\n{}health: {health}", path.display(), report))
            }
            SlotStatus::Empty => ("—".into(), Badge::Empty, None, "This mode has no model: it plays the dry signal.".into()),
            SlotStatus::Missing { path } => (file_name(path), Badge::Missing, None, status.summary()),
            SlotStatus::Failed { path, reason } => (file_name(path), Badge::Failed, None, reason.clone()),
            SlotStatus::Unhealthy { path, verdict } => (file_name(path), Badge::Unhealthy, None, verdict.clone()),
            SlotStatus::NeedsTranslator { path, family } => (file_name(path), Badge::NeedsTranslator, Some(format!("{family} · units input")), status.summary()),
        };
        // The one-liner: the first line of the details for problems, the facts when ready.
        let summary = match badge {
            Badge::Ok => facts.clone().unwrap_or_default(),
            _ => format!("{} — plays the dry signal: {}", badge.label(), details.lines().next().unwrap_or("")),
        };
        Self { mode, file, badge, facts, summary, details }
    }
}

/// "reports 357.2 ms (17148 samples)": what the Latency selector shows next to the choice.
pub fn latency_text(_choice: LatencyChoice, samples: u32, sample_rate: f32) -> String {
    let ms = samples as f64 * 1000.0 / sample_rate.max(1.0) as f64;
    format!("reports {ms:.1} ms ({samples} samples) at {:.0} Hz", sample_rate)
}

/// The meters row.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterView {
    /// "worker 0.67× real time" (compute time per audio time; above 1 cannot keep up).
    pub rtf: String,
    pub underruns: String,
    pub device: String,
    /// Shown in red while the engine substitutes the dry signal for late wet audio.
    pub warning: Option<String>,
}

impl MeterView {
    /// `underruns_before`: the count at the previous refresh (a rising count means the engine
    /// is falling back to dry right now).
    pub fn new(rtf: f32, underruns: u64, underruns_before: u64, worker_alive: bool, device: &str, worker_error: Option<&str>) -> Self {
        let warning = if !worker_alive {
            Some(format!("inference stopped{}: playing the dry signal", worker_error.map(|e| format!(" ({e})")).unwrap_or_default()))
        } else if underruns > underruns_before {
            Some("the model is late: playing the dry signal where wet audio is missing (raise Latency or free CPU)".into())
        } else if rtf > 1.0 {
            Some(format!("the model needs {rtf:.2}× real time on this device: expect dropouts in real time (bounces are exact)"))
        } else {
            None
        };
        Self {
            rtf: format!("worker {rtf:.2}× real time"),
            underruns: format!("{underruns} underrun{}", if underruns == 1 { "" } else { "s" }),
            device: device.to_string(),
            warning,
        }
    }
}

/// The live spectrograms' history: the last `capacity` column pairs from the worker's scope
/// feed (input and wet, paired by input index), oldest first.
pub struct ScopeHistory {
    columns: std::collections::VecDeque<engine::scope::ScopeFrame>,
    capacity: usize,
}

/// Natural-log mel magnitude shown as the bottom of the colour scale (≈ −87 dB: the models'
/// 1e-5 floor is about −100 dB, so silence is black) and the top (≈ +9 dB, louder than speech).
pub const SCOPE_LOG_FLOOR: f32 = -10.0;
pub const SCOPE_LOG_CEIL: f32 = 1.0;

impl ScopeHistory {
    pub fn new(capacity: usize) -> Self {
        Self { columns: std::collections::VecDeque::with_capacity(capacity), capacity: capacity.max(1) }
    }

    pub fn push(&mut self, frame: engine::scope::ScopeFrame) {
        if self.columns.len() == self.capacity {
            self.columns.pop_front();
        }
        self.columns.push_back(frame);
    }

    pub fn len(&self) -> usize {
        self.columns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    pub fn clear(&mut self) {
        self.columns.clear();
    }

    /// RGBA pixels (width = capacity, height = mel bins, low frequencies at the bottom, newest
    /// column at the right; empty history is black), one image per signal on the same colour
    /// scale, so a wet output louder or noisier than its input looks it.
    pub fn image(&self, wet: bool) -> (usize, usize, Vec<[u8; 4]>) {
        let (w, h) = (self.capacity, engine::scope::SCOPE_MELS);
        let mut px = vec![[0, 0, 0, 255]; w * h];
        let offset = w - self.columns.len();
        for (i, f) in self.columns.iter().enumerate() {
            let col = if wet { &f.wet } else { &f.input };
            for (m, &v) in col.iter().enumerate() {
                let [r, g, b] = colour(v);
                px[(h - 1 - m) * w + offset + i] = [r, g, b, 255];
            }
        }
        (w, h, px)
    }

    /// Mean spectral flatness (geometric / arithmetic mean of mel power, 0..1) of the most
    /// recent `frames` columns of the input and of the wet output. Speech stays well below 0.3;
    /// white noise (the failure this project exists to catch) is near 0.6–1.
    pub fn flatness(&self, frames: usize) -> Option<(f32, f32)> {
        let n = self.columns.len().min(frames);
        if n == 0 {
            return None;
        }
        let flat = |col: &[f32; engine::scope::SCOPE_MELS]| {
            let p: Vec<f64> = col.iter().map(|&v| ((2.0 * v) as f64).exp()).collect();
            let am = p.iter().sum::<f64>() / p.len() as f64;
            let gm = (p.iter().map(|x| x.max(1e-30).ln()).sum::<f64>() / p.len() as f64).exp();
            if am <= 0.0 { 0.0 } else { (gm / am) as f32 }
        };
        // Only columns with signal count: silence is flat too, and not a problem.
        let loud = |col: &[f32; engine::scope::SCOPE_MELS]| col.iter().copied().fold(f32::MIN, f32::max) > SCOPE_LOG_FLOOR + 3.0;
        let recent: Vec<_> = self.columns.iter().rev().take(n).collect();
        let mean = |wet: bool| {
            let v: Vec<f32> = recent.iter().map(|f| if wet { &f.wet } else { &f.input }).filter(|c| loud(c)).map(flat).collect();
            if v.is_empty() { 0.0 } else { v.iter().sum::<f32>() / v.len() as f32 }
        };
        Some((mean(false), mean(true)))
    }

    /// A warning when the wet output looks like white noise while the input does not (the
    /// seed's failure: flat horizontal bands where speech should be).
    pub fn noise_warning(&self) -> Option<String> {
        let (input, wet) = self.flatness(200)?;
        (wet > 0.45 && wet > input + 0.2).then(|| {
            format!("the output looks like white noise (spectral flatness {wet:.2} vs the input's {input:.2}): check the model's checkpoint report")
        })
    }
}

/// The spectrogram colour map (black → purple → orange → pale yellow, perceptually ordered like
/// magma) for a natural-log mel magnitude.
pub fn colour(log_mel: f32) -> [u8; 3] {
    let t = ((log_mel - SCOPE_LOG_FLOOR) / (SCOPE_LOG_CEIL - SCOPE_LOG_FLOOR)).clamp(0.0, 1.0);
    const STOPS: [[f32; 3]; 5] = [[0.0, 0.0, 4.0], [81.0, 18.0, 124.0], [183.0, 55.0, 121.0], [252.0, 137.0, 97.0], [252.0, 253.0, 191.0]];
    let x = t * (STOPS.len() - 1) as f32;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f32;
    let mix = |k: usize| (STOPS[i][k] + (STOPS[i + 1][k] - STOPS[i][k]) * f).round() as u8;
    [mix(0), mix(1), mix(2)]
}

/// The window's size (logical points) and zoom, persisted with the project.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WindowSize {
    pub width: u32,
    pub height: u32,
    /// The user's zoom on top of the host's scaling (100–200 %).
    #[serde(default = "default_zoom")]
    pub zoom_percent: u32,
}

fn default_zoom() -> u32 {
    100
}

impl Default for WindowSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl WindowSize {
    pub const DEFAULT: WindowSize = WindowSize { width: 900, height: 760, zoom_percent: 100 };
    pub const MIN: WindowSize = WindowSize { width: 640, height: 560, zoom_percent: 100 };
    pub const MAX: WindowSize = WindowSize { width: 2400, height: 1800, zoom_percent: 200 };

    /// A persisted size from an older or foreign state, brought into the usable range.
    pub fn clamped(self) -> Self {
        Self {
            width: self.width.clamp(Self::MIN.width, Self::MAX.width),
            height: self.height.clamp(Self::MIN.height, Self::MAX.height),
            zoom_percent: self.zoom_percent.clamp(Self::MIN.zoom_percent, Self::MAX.zoom_percent),
        }
    }

    pub fn zoom_factor(&self) -> f32 {
        self.zoom_percent as f32 / 100.0
    }
}

/// The worker-threads control's label: the choice, and what it means on this machine.
/// `in_use`: what the worker runs on now (0: not running); while a bounce renders on every core
/// it differs from the real-time choice and says so.
pub fn threads_text(choice: crate::params::ThreadsChoice, cores: usize, in_use: usize) -> String {
    let live = engine::resolve_worker_threads(choice.engine_value(), cores);
    let chosen = match choice {
        crate::params::ThreadsChoice::Auto => format!("auto ({live})"),
        crate::params::ThreadsChoice::Fixed(n) if n as usize > cores => format!("{n} → {live} (this machine has {cores})"),
        crate::params::ThreadsChoice::Fixed(_) => format!("{live}"),
    };
    if in_use != 0 && in_use != live { format!("{chosen}; {in_use} while rendering") } else { chosen }
}

#[cfg(test)]
mod tests {
    #[test]
    fn threads_text_says_what_runs_on_this_machine() {
        use crate::params::ThreadsChoice;
        assert_eq!(threads_text(ThreadsChoice::Auto, 2, 1), "auto (1)");
        assert_eq!(threads_text(ThreadsChoice::Auto, 16, 4), "auto (4)");
        assert_eq!(threads_text(ThreadsChoice::Fixed(2), 8, 2), "2");
        // A project from a bigger machine: clamped, and said so.
        assert_eq!(threads_text(ThreadsChoice::Fixed(64), 8, 8), "64 → 8 (this machine has 8)");
        // A bounce runs on every core whatever the real-time choice.
        assert_eq!(threads_text(ThreadsChoice::Fixed(1), 8, 8), "1; 8 while rendering");
        assert_eq!(threads_text(ThreadsChoice::Fixed(0), 4, 0), "1");
    }

    use super::*;
    use std::path::PathBuf;

    #[test]
    fn each_slot_status_shows_what_it_is_and_that_it_plays_dry() {
        let empty = SlotView::new("Original", &SlotStatus::Empty);
        assert_eq!((empty.badge, empty.file.as_str()), (Badge::Empty, "—"));
        assert!(empty.summary.starts_with("no model — plays the dry signal"), "{}", empty.summary);

        let missing = SlotView::new("Original", &SlotStatus::Missing { path: PathBuf::from("/m/hifigan_v1_universal.safetensors") });
        assert_eq!(missing.file, "hifigan_v1_universal.safetensors");
        assert!(missing.badge.plays_dry() && missing.summary.contains("models fetch"), "{}", missing.summary);

        let report = "checkpoint does not match the model\nmissing in checkpoint: resblocks.0.convs1.0.weight";
        let failed = SlotView::new("Modified", &SlotStatus::Failed { path: PathBuf::from("/x/thesis.pth"), reason: report.into() });
        assert_eq!(failed.badge, Badge::Failed);
        assert!(failed.summary.contains("did not load") && failed.summary.contains("does not match"), "{}", failed.summary);
        assert_eq!(failed.details, report, "details carry the whole checkpoint report");

        let unhealthy = SlotView::new(
            "Modified",
            &SlotStatus::Unhealthy { path: PathBuf::from("/x/noise.safetensors"), verdict: "white-noise-like spectrum: spectral flatness 0.81 > 0.5".into() },
        );
        assert_eq!(unhealthy.badge, Badge::Unhealthy);
        assert!(unhealthy.summary.contains("white-noise-like"), "{}", unhealthy.summary);

        let units = SlotView::new("Modified", &SlotStatus::NeedsTranslator { path: PathBuf::from("/x/g_00500000"), family: "codehifigan".into() });
        assert_eq!(units.badge, Badge::NeedsTranslator);
        assert_eq!(units.facts.as_deref(), Some("codehifigan · units input"));
        assert!(units.summary.contains("needs a translator"), "{}", units.summary);
    }

    #[test]
    fn a_ready_slot_shows_family_rate_and_size() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let p = root.join("vocoder/tests/fixtures/v1_tiny/model.safetensors");
        let v = vocoder::load_vocoder(&p, None, &candle_core::Device::Cpu).unwrap().vocoder;
        let report = "checkpoint keys: 10, model keys: 10, common: 10\nstatus: every model parameter loaded with the right shape\n".to_string();
        let s = SlotStatus::Ready { path: p, vocoder: std::sync::Arc::new(v), health: "healthy".into(), report };
        let view = SlotView::new("Original", &s);
        assert_eq!((view.badge, view.file.as_str()), (Badge::Ok, "model.safetensors"));
        assert!(!view.badge.plays_dry());
        let facts = view.facts.unwrap();
        assert!(facts.starts_with("hifigan (resblock 1) · 16000 Hz · ") && facts.ends_with("parameters"), "{facts}");
        // Details: where it came from, the checkpoint report, the health verdict.
        assert!(view.details.contains("model.safetensors\ncheckpoint keys: 10") && view.details.contains("every model parameter loaded"), "{}", view.details);
        assert!(view.details.ends_with("health: healthy"), "{}", view.details);
    }

    fn frame(index: u64, input: impl Fn(usize) -> f32, wet: impl Fn(usize) -> f32) -> engine::scope::ScopeFrame {
        let mut f = engine::scope::ScopeFrame { index, ..Default::default() };
        for m in 0..engine::scope::SCOPE_MELS {
            f.input[m] = input(m);
            f.wet[m] = wet(m);
        }
        f
    }

    #[test]
    fn spectrogram_history_scrolls_and_shares_one_colour_scale() {
        let mut h = ScopeHistory::new(4);
        let (w, hh, px) = h.image(false);
        assert_eq!((w, hh), (4, engine::scope::SCOPE_MELS));
        assert!(px.iter().all(|p| p[..3] == [0, 0, 4] || p[..3] == [0, 0, 0]), "empty history is black");
        for i in 0..6 {
            // A rising tone: energy at bin i*10, silence elsewhere; the wet one 1 unit quieter.
            h.push(frame(i, |m| if m == i as usize * 10 { 0.0 } else { -11.5 }, |m| if m == i as usize * 10 { -1.0 } else { -11.5 }));
        }
        assert_eq!(h.len(), 4, "capacity bounds the history");
        let (w, hh, input) = h.image(false);
        let (_, _, wet) = h.image(true);
        // Newest column (i = 5, bin 50) at the right; low bins at the bottom.
        let at = |px: &Vec<[u8; 4]>, col: usize, bin: usize| px[(hh - 1 - bin) * w + col];
        assert_eq!(at(&input, 3, 50)[..3], colour(0.0));
        assert_eq!(at(&input, 0, 20)[..3], colour(0.0), "oldest kept column is i = 2");
        assert_eq!(at(&input, 3, 0)[..3], colour(-11.5));
        // Same scale: the quieter wet bin is darker than the input's.
        let lum = |p: [u8; 4]| p[0] as u32 + p[1] as u32 + p[2] as u32;
        assert!(lum(at(&wet, 3, 50)) < lum(at(&input, 3, 50)));
        assert_eq!(colour(-100.0), [0, 0, 4]);
        assert_eq!(colour(5.0), [252, 253, 191]);
    }

    #[test]
    fn white_noise_output_is_flagged_and_speech_like_output_is_not() {
        let mut h = ScopeHistory::new(300);
        assert!(h.noise_warning().is_none(), "nothing to judge yet");
        // Speech-like: a few strong formant bins over a low floor, in both.
        let speechy = |m: usize| if m % 16 < 2 { 0.0 } else { -6.0 };
        for i in 0..100 {
            h.push(frame(i, speechy, speechy));
        }
        let (fi, fw) = h.flatness(200).unwrap();
        assert!(fi < 0.3 && fw < 0.3, "speech-like flatness {fi} {fw}");
        assert!(h.noise_warning().is_none());
        // The seed's failure: the wet output flat across all bands.
        h.clear();
        for i in 0..100 {
            h.push(frame(i, speechy, |_| -2.0));
        }
        let w = h.noise_warning().expect("white noise must be flagged");
        assert!(w.contains("white noise"), "{w}");
        // Silence is flat too, but it is not flagged.
        h.clear();
        for i in 0..100 {
            h.push(frame(i, |_| -11.5, |_| -11.5));
        }
        assert!(h.noise_warning().is_none());
    }

    #[test]
    fn persisted_window_size_is_kept_in_range() {
        assert_eq!(
            WindowSize { width: 10, height: 99_999, zoom_percent: 400 }.clamped(),
            WindowSize { width: WindowSize::MIN.width, height: WindowSize::MAX.height, zoom_percent: 200 }
        );
        assert_eq!(WindowSize::DEFAULT.clamped(), WindowSize::DEFAULT);
        // A state saved before the zoom existed still reads.
        let old: WindowSize = serde_json::from_str(r#"{"width":1000,"height":800}"#).unwrap();
        assert_eq!((old.width, old.height, old.zoom_factor()), (1000, 800, 1.0));
    }

    #[test]
    fn latency_and_meters_read_as_a_user_expects() {
        assert_eq!(latency_text(LatencyChoice::Ms80, 17_148, 48_000.0), "reports 357.2 ms (17148 samples) at 48000 Hz");
        let calm = MeterView::new(0.67, 0, 0, true, "CPU", None);
        assert_eq!((calm.rtf.as_str(), calm.underruns.as_str(), calm.warning.clone()), ("worker 0.67× real time", "0 underruns", None));
        let late = MeterView::new(0.9, 3, 1, true, "CPU", None);
        assert!(late.warning.unwrap().contains("playing the dry signal"));
        let slow = MeterView::new(1.4, 1, 1, true, "CPU", None);
        assert!(slow.warning.unwrap().contains("1.40× real time"));
        assert_eq!(slow.underruns, "1 underrun");
        let dead = MeterView::new(0.0, 0, 0, false, "CPU", Some("tensor computation failed"));
        assert!(dead.warning.unwrap().contains("inference stopped (tensor computation failed)"));
    }
}
