//! Real-time building blocks of the shell's signal path. Everything here is allocated once
//! (`with_capacity`/`new`) and then only indexed, so it is safe on the audio thread.

/// A fixed-capacity delay line. Reading `delay` samples back never allocates; the delay can
/// change at any time up to the capacity.
pub struct DelayLine {
    buf: Vec<f32>,
    mask: usize,
    write: usize,
}

impl DelayLine {
    /// A line that can delay by up to `max_delay` samples.
    pub fn new(max_delay: usize) -> Self {
        let size = (max_delay + 1).next_power_of_two();
        Self { buf: vec![0.0; size], mask: size - 1, write: 0 }
    }

    pub fn max_delay(&self) -> usize {
        self.buf.len() - 1
    }

    /// Pushes one sample and returns the sample pushed `delay` samples ago (0 = this one).
    #[inline]
    pub fn push_and_read(&mut self, x: f32, delay: usize) -> f32 {
        debug_assert!(delay <= self.max_delay());
        self.buf[self.write] = x;
        let out = self.buf[(self.write + self.buf.len() - delay) & self.mask];
        self.write = (self.write + 1) & self.mask;
        out
    }

    pub fn clear(&mut self) {
        self.buf.fill(0.0);
        self.write = 0;
    }
}

/// Replaces NaN/Inf with silence, flushes denormals (they cost orders of magnitude more CPU
/// on x86 when FTZ is off) and clamps absurd levels, so nothing downstream (later: the model)
/// ever sees a non-finite or denormal sample.
#[inline]
pub fn sanitize(x: f32) -> f32 {
    if !x.is_finite() || x.abs() < 1e-20 { 0.0 } else { x.clamp(-16.0, 16.0) }
}

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
    fn delay_line_delays_exactly() {
        let mut d = DelayLine::new(5);
        let out: Vec<f32> = (1..=8).map(|x| d.push_and_read(x as f32, 3)).collect();
        assert_eq!(out, vec![0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(d.push_and_read(9.0, 0), 9.0);
    }

    #[test]
    fn sanitize_removes_non_finite() {
        assert_eq!(sanitize(f32::NAN), 0.0);
        assert_eq!(sanitize(f32::INFINITY), 0.0);
        assert_eq!(sanitize(0.25), 0.25);
        assert_eq!(sanitize(1e9), 16.0);
        assert_eq!(sanitize(1e-40), 0.0);
    }

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
