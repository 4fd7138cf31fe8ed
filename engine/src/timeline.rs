//! The mode timeline: a switch requested at input sample `t` becomes an equal-power crossfade
//! of `fade_len` samples centred on input sample `t` (heard at output sample `t + latency`).
//! It is evaluated on the index-aligned wet stream, so the fade can start before `t` without
//! looking into the future as long as the worker sees the switch before it emits sample
//! `t - fade_len/2` (always true: its input runs ahead by the data latency).

/// A mode change scheduled at an input sample index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeSwitch {
    pub at_input_sample: u64,
    pub to_slot: usize,
}

/// The mode timeline in the *delayed* domain: a switch requested at input sample `t` becomes an
/// equal-power crossfade of `fade_len` samples centred on input sample `t`, applied when the
/// delayed signal for those samples is output (output sample `t + latency`). Because the fade is
/// applied after the delay, it can start before `t` without looking into the future, as long as
/// `latency >= fade_len / 2`.
pub struct ModeTimeline {
    pending: [ModeSwitch; Self::CAPACITY],
    head: usize,
    len: usize,
    /// The slot in effect before the current fade (or the only slot when not fading).
    current: usize,
    fade_len: u64,
    /// Switches that did not fit in the queue (extremely dense automation); counted, not lost
    /// silently: the latest target is still applied.
    pub overflowed: u64,
}

impl ModeTimeline {
    pub const CAPACITY: usize = 64;

    pub fn new(initial_slot: usize, fade_len: u64) -> Self {
        Self {
            pending: [ModeSwitch { at_input_sample: 0, to_slot: 0 }; Self::CAPACITY],
            head: 0,
            len: 0,
            current: initial_slot,
            fade_len: fade_len.max(2) & !1,
            overflowed: 0,
        }
    }

    pub fn reset(&mut self, slot: usize) {
        self.head = 0;
        self.len = 0;
        self.current = slot;
    }

    /// The slot the timeline ends in once every pending switch is done.
    pub fn target_slot(&self) -> usize {
        if self.len == 0 {
            self.current
        } else {
            self.pending[(self.head + self.len - 1) % Self::CAPACITY].to_slot
        }
    }

    /// The first sample of the first pending fade into `slot` (None: no pending switch to it).
    /// A slot is heard from there on; the current slot is heard now.
    pub fn heard_from(&self, slot: usize) -> Option<u64> {
        if slot == self.current {
            return Some(0);
        }
        let half = self.fade_len / 2;
        (0..self.len)
            .map(|k| self.pending[(self.head + k) % Self::CAPACITY])
            .find(|sw| sw.to_slot == slot)
            .map(|sw| sw.at_input_sample.saturating_sub(half))
    }

    pub fn schedule(&mut self, switch: ModeSwitch) {
        if switch.to_slot == self.target_slot() {
            return;
        }
        if self.len == Self::CAPACITY {
            // Drop the newest queued switch but keep the requested end state.
            self.overflowed += 1;
            let last = (self.head + self.len - 1) % Self::CAPACITY;
            self.pending[last].to_slot = switch.to_slot;
            return;
        }
        let idx = (self.head + self.len) % Self::CAPACITY;
        self.pending[idx] = switch;
        self.len += 1;
    }

    /// Gains `(slot, gain)` pairs for the delayed input sample `i`: returns
    /// `(from_slot, from_gain, to_slot, to_gain)`.
    #[inline]
    pub fn gains_at(&mut self, i: u64) -> (usize, f32, usize, f32) {
        let half = self.fade_len / 2;
        while self.len > 0 {
            let sw = self.pending[self.head];
            let start = sw.at_input_sample.saturating_sub(half);
            if i < start {
                break;
            }
            let end = start + self.fade_len;
            if i >= end || sw.to_slot == self.current {
                // Fade finished (or was a no-op): commit it and look at the next one.
                self.current = sw.to_slot;
                self.head = (self.head + 1) % Self::CAPACITY;
                self.len -= 1;
                continue;
            }
            // Position 0.5 falls exactly on the automation sample.
            let x = (i as f64 - sw.at_input_sample as f64 + half as f64) / self.fade_len as f64;
            let x = x.clamp(0.0, 1.0) as f32;
            let angle = x * std::f32::consts::FRAC_PI_2;
            return (self.current, angle.cos(), sw.to_slot, angle.sin());
        }
        (self.current, 1.0, self.current, 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossfade_is_centred_and_equal_power() {
        let mut t = ModeTimeline::new(0, 100);
        t.schedule(ModeSwitch { at_input_sample: 1000, to_slot: 1 });
        assert_eq!(t.gains_at(949), (0, 1.0, 0, 0.0));
        let (a, ga, b, gb) = t.gains_at(1000);
        assert_eq!((a, b), (0, 1));
        assert!((ga - gb).abs() < 1e-6, "centre: {ga} {gb}");
        for i in 950..1050 {
            let (_, ga, _, gb) = t.gains_at(i);
            assert!((ga * ga + gb * gb - 1.0).abs() < 1e-5);
        }
        assert_eq!(t.gains_at(1050), (1, 1.0, 1, 0.0));
        // A switch back to the same slot as the target is ignored.
        t.schedule(ModeSwitch { at_input_sample: 2000, to_slot: 1 });
        assert_eq!(t.target_slot(), 1);
        assert_eq!(t.gains_at(2000), (1, 1.0, 1, 0.0));
    }
}
