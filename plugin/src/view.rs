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
            SlotStatus::Ready { path, vocoder, health } => {
                let c = vocoder.config();
                let facts = format!("{} · {} Hz · {}", vocoder.family().name(), c.sampling_rate, millions(vocoder.param_count()));
                (file_name(path), Badge::Ok, Some(facts), format!("{}\nhealth: {health}", path.display()))
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

/// "357.2 ms (17148 samples)": what the Latency selector shows next to the choice.
pub fn latency_text(choice: LatencyChoice, samples: u32, sample_rate: f32) -> String {
    let ms = samples as f64 * 1000.0 / sample_rate.max(1.0) as f64;
    format!("{} ms chunk → {ms:.1} ms reported ({samples} samples)", choice.millis())
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

#[cfg(test)]
mod tests {
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
        let s = SlotStatus::Ready { path: p, vocoder: std::sync::Arc::new(v), health: "healthy".into() };
        let view = SlotView::new("Original", &s);
        assert_eq!((view.badge, view.file.as_str()), (Badge::Ok, "model.safetensors"));
        assert!(!view.badge.plays_dry());
        let facts = view.facts.unwrap();
        assert!(facts.starts_with("hifigan (resblock 1) · 16000 Hz · ") && facts.ends_with("parameters"), "{facts}");
    }

    #[test]
    fn latency_and_meters_read_as_a_user_expects() {
        assert_eq!(latency_text(LatencyChoice::Ms80, 17_148, 48_000.0), "80 ms chunk → 357.2 ms reported (17148 samples)");
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
