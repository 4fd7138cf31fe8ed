//! The latency the plugin reports, computed in one place so the host-facing value and the
//! engine's own value can never disagree.

use nice_plug::prelude::Enum;

/// The `Latency` parameter: the processing block the engine works in.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyChoice {
    #[id = "20ms"]
    #[name = "20 ms"]
    Ms20,
    #[id = "40ms"]
    #[name = "40 ms"]
    Ms40,
    #[id = "80ms"]
    #[name = "80 ms"]
    Ms80,
    #[id = "160ms"]
    #[name = "160 ms"]
    Ms160,
    #[id = "320ms"]
    #[name = "320 ms"]
    Ms320,
    #[id = "640ms"]
    #[name = "640 ms"]
    Ms640,
}

impl LatencyChoice {
    pub const ALL: [LatencyChoice; 6] = [
        LatencyChoice::Ms20,
        LatencyChoice::Ms40,
        LatencyChoice::Ms80,
        LatencyChoice::Ms160,
        LatencyChoice::Ms320,
        LatencyChoice::Ms640,
    ];

    pub fn millis(self) -> u32 {
        match self {
            LatencyChoice::Ms20 => 20,
            LatencyChoice::Ms40 => 40,
            LatencyChoice::Ms80 => 80,
            LatencyChoice::Ms160 => 160,
            LatencyChoice::Ms320 => 320,
            LatencyChoice::Ms640 => 640,
        }
    }

    pub const MAX_MILLIS: u32 = 640;
}

/// What the engine's latency is made of, in host samples.
///
/// Until the streaming engine lands the only term is the processing block itself; the engine
/// issue adds model context, STFT lookahead and resampler delays as further terms here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyBudget {
    pub sample_rate: u32,
    pub choice_ms: u32,
    /// The processing block (chunk) in host samples.
    pub chunk: u32,
}

impl LatencyBudget {
    pub fn new(sample_rate: f32, choice: LatencyChoice) -> Self {
        let sample_rate = sample_rate.round() as u32;
        let choice_ms = choice.millis();
        // Rounded to the nearest whole sample so e.g. 20 ms at 44.1 kHz is 882 samples exactly.
        let chunk = ((sample_rate as u64 * choice_ms as u64 + 500) / 1000) as u32;
        Self { sample_rate, choice_ms, chunk }
    }

    /// The latency reported to the host: the exact delay between an input sample and the output
    /// sample that it produced.
    pub fn total_samples(&self) -> u32 {
        self.chunk
    }

    /// The most any choice can need at this sample rate; buffers are sized once for this so a
    /// latency change never allocates on the audio thread.
    pub fn max_samples(sample_rate: f32) -> u32 {
        LatencyChoice::ALL
            .iter()
            .map(|c| LatencyBudget::new(sample_rate, *c).total_samples())
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_exact_for_common_rates() {
        assert_eq!(LatencyBudget::new(48_000.0, LatencyChoice::Ms80).total_samples(), 3840);
        assert_eq!(LatencyBudget::new(44_100.0, LatencyChoice::Ms20).total_samples(), 882);
        assert_eq!(LatencyBudget::new(96_000.0, LatencyChoice::Ms640).total_samples(), 61_440);
        assert_eq!(LatencyBudget::new(22_050.0, LatencyChoice::Ms20).total_samples(), 441);
        assert_eq!(LatencyBudget::max_samples(192_000.0), 122_880);
    }

    #[test]
    fn latency_grows_with_choice() {
        for rate in [8_000.0, 44_100.0, 48_000.0, 96_000.0, 192_000.0] {
            let v: Vec<u32> = LatencyChoice::ALL
                .iter()
                .map(|c| LatencyBudget::new(rate, *c).total_samples())
                .collect();
            assert!(v.windows(2).all(|w| w[0] < w[1]), "{rate}: {v:?}");
        }
    }
}
