//! The shell's signal path: mono wet path through per-mode slots, latency-aligned dry path,
//! mode crossfade, mix and output gain. Allocates only in `new`.

use nice_plug::prelude::Smoother;

use crate::dsp::{DelayLine, ModeSwitch, ModeTimeline, sanitize};
use crate::latency::{LatencyBudget, LatencyChoice};
use crate::params::Mode;
use crate::mode_fade_samples;

pub struct ShellEngine {
    sample_rate: f32,
    choice: LatencyChoice,
    budget: LatencyBudget,
    /// Mono (summed, sanitised) input, read back by the latency.
    mono: DelayLine,
    /// Each input channel, read back by the latency: the phase-aligned dry path.
    dry: Vec<DelayLine>,
    timeline: ModeTimeline,
    last_mode: Mode,
    /// Absolute index of the next input sample since activation/reset.
    input_pos: u64,
}

impl ShellEngine {
    pub fn new(sample_rate: f32, channels: usize, choice: LatencyChoice, mode: Mode) -> Self {
        let max = LatencyBudget::max_samples(sample_rate) as usize;
        let fade = mode_fade_samples(sample_rate);
        Self {
            sample_rate,
            choice,
            budget: LatencyBudget::new(sample_rate, choice),
            mono: DelayLine::new(max),
            dry: (0..channels).map(|_| DelayLine::new(max)).collect(),
            timeline: ModeTimeline::new(mode.slot(), fade),
            last_mode: mode,
            input_pos: 0,
        }
    }

    pub fn latency_samples(&self) -> u32 {
        self.budget.total_samples()
    }

    pub fn latency_choice(&self) -> LatencyChoice {
        self.choice
    }

    /// Returns true when the latency changed.
    pub fn set_latency_choice(&mut self, choice: LatencyChoice) -> bool {
        if choice == self.choice {
            return false;
        }
        self.choice = choice;
        self.budget = LatencyBudget::new(self.sample_rate, choice);
        true
    }

    pub fn observe_mode(&mut self, mode: Mode) {
        if mode != self.last_mode {
            self.timeline.schedule(ModeSwitch { at_input_sample: self.input_pos, to_slot: mode.slot() });
            self.last_mode = mode;
        }
    }

    pub fn reset(&mut self, mode: Mode) {
        self.mono.clear();
        self.dry.iter_mut().for_each(DelayLine::clear);
        self.timeline.reset(mode.slot());
        self.last_mode = mode;
        self.input_pos = 0;
    }

    /// What a mode slot makes of the (delayed) mono input. No model is loaded in the shell, so a
    /// slot passes the delayed dry signal; the `host-test-slots` build gives the Modified slot the
    /// opposite polarity so host tests can locate a mode switch in the output.
    #[inline]
    fn slot_output(slot: usize, mono: f32) -> f32 {
        if cfg!(feature = "host-test-slots") && slot == 1 { -mono } else { mono }
    }

    pub fn process(&mut self, channels: &mut [&mut [f32]], mix: &Smoother<f32>, gain_db: &Smoother<f32>) {
        let n_ch = channels.len().min(self.dry.len());
        if n_ch == 0 {
            return;
        }
        let len = channels[0].len();
        let latency = self.budget.total_samples() as usize;
        let inv_ch = 1.0 / n_ch as f32;
        for s in 0..len {
            let mut sum = 0.0;
            for ch in channels.iter().take(n_ch) {
                sum += sanitize(ch[s]);
            }
            let mono = self.mono.push_and_read(sum * inv_ch, latency);
            let delayed_pos = self.input_pos.checked_sub(latency as u64);
            let wet = match delayed_pos {
                // Output before the first input has come through the delay: silence.
                None => 0.0,
                Some(i) => {
                    let (a, ga, b, gb) = self.timeline.gains_at(i);
                    ga * Self::slot_output(a, mono) + gb * Self::slot_output(b, mono)
                }
            };
            let m = mix.next();
            let g = 10f32.powf(gain_db.next() / 20.0);
            for (c, ch) in channels.iter_mut().take(n_ch).enumerate() {
                let dry = self.dry[c].push_and_read(sanitize(ch[s]), latency);
                ch[s] = g * (m * wet + (1.0 - m) * dry);
            }
            self.input_pos += 1;
        }
    }
}
