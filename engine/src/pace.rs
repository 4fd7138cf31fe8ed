//! How the host paces `process()` calls, and so whether the audio thread may wait for the worker.
//!
//! A DAW's export (Ardour's freewheel, for one) often runs the plugin as fast as it can without
//! ever saying "offline". A plugin that trusts only the host's flag then falls behind and plays
//! its real-time fallback (the dry signal) into the bounce. This detector watches the wall clock
//! between calls instead:
//!
//! - **ahead**: how far the host is ahead of real time, as a token bucket over the calls
//!   (`+ block duration − wall time since the previous call`, never below 0). In real time it
//!   stays near 0 (the device clocks the calls), so any wait bounded by it can never make a
//!   real-time block late. This bound holds in every mode.
//! - **freewheel**: the same bucket, but with the time the audio thread itself spent waiting
//!   taken out (`fast`). When the host delivers audio far faster than real time on its own, the
//!   host is rendering, not playing: the engine then waits for every wet sample, exactly as an
//!   announced offline render does. Waiting does not end the state (our waits are excluded); a
//!   window of calls paced like real time does, and also resets both buckets.
//!
//! Everything here is plain arithmetic on `f64` seconds, so the audio thread may call it (no
//! allocation, no lock); tests drive it with a synthetic clock.

/// The detector. Times are seconds on any monotonic clock.
#[derive(Debug, Clone)]
pub struct Pace {
    /// `fast` above this: the host is rendering faster than real time (seconds of audio).
    enter_lead: f64,
    /// Keep this much of `ahead` unused: jitter of a real-time host's callbacks.
    safety: f64,
    /// Audio per pacing window (seconds).
    window: f64,
    prev_start: Option<f64>,
    prev_audio: f64,
    prev_wait: f64,
    ahead: f64,
    fast: f64,
    win_audio: f64,
    win_host: f64,
    freewheel: bool,
    /// Times freewheel was entered (diagnostics, tests).
    pub entered: u64,
}

/// A host's real-time callbacks are no more than this much (host time / audio time) faster than
/// real time over a window; a freewheel's are far below.
const PACED_RATIO: f64 = 0.7;

impl Pace {
    /// `block` is the host's maximum block and `latency` the reported latency, both in seconds.
    /// Freewheel is recognised once the host is ahead by two blocks (at least 100 ms), and always
    /// before the first wet sample is due (three quarters of the latency).
    pub fn new(block: f64, latency: f64) -> Self {
        let enter_lead = (2.0 * block).max(0.1).min(0.75 * latency).max(1e-3);
        Self {
            enter_lead,
            safety: block.max(0.005),
            window: (2.0 * block).max(0.1),
            prev_start: None,
            prev_audio: 0.0,
            prev_wait: 0.0,
            ahead: 0.0,
            fast: 0.0,
            win_audio: 0.0,
            win_host: 0.0,
            freewheel: false,
            entered: 0,
        }
    }

    /// Start in the freewheel state (a host hint that may be stale: real-time pacing ends it).
    pub fn assume_freewheel(&mut self) {
        self.freewheel = true;
    }

    /// A `process()` call begins at `now` with `audio` seconds of audio.
    pub fn begin_block(&mut self, now: f64, audio: f64) {
        if let Some(prev) = self.prev_start {
            let gap = (now - prev).max(0.0);
            let host = (gap - self.prev_wait).max(0.0);
            self.ahead = (self.ahead + self.prev_audio - gap).max(0.0);
            self.fast = (self.fast + self.prev_audio - host).max(0.0);
            self.win_audio += self.prev_audio;
            self.win_host += host;
            if self.win_audio >= self.window {
                if self.win_host >= PACED_RATIO * self.win_audio {
                    // Paced like real time: whatever lead was built up is no longer ours to use.
                    self.freewheel = false;
                    self.ahead = 0.0;
                    self.fast = 0.0;
                }
                self.win_audio = 0.0;
                self.win_host = 0.0;
            }
            if !self.freewheel && self.fast >= self.enter_lead {
                self.freewheel = true;
                self.entered += 1;
            }
        }
        self.prev_start = Some(now);
        self.prev_audio = audio;
        self.prev_wait = 0.0;
    }

    /// The audio thread waited `secs` inside the current call.
    pub fn add_wait(&mut self, secs: f64) {
        self.prev_wait += secs;
    }

    pub fn freewheel(&self) -> bool {
        self.freewheel
    }

    /// How long the current call (begun at `block_start`) may still wait at `now` without making a
    /// real-time block late: the lead minus a safety margin, less what was already spent.
    pub fn wait_allowance(&self, block_start: f64, now: f64) -> f64 {
        self.ahead - self.safety - (now - block_start)
    }

    /// Seconds the host is currently ahead of real time (diagnostics).
    pub fn ahead(&self) -> f64 {
        self.ahead
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: f64 = 512.0 / 48_000.0;

    /// Drives the detector like a host: `gap(k)` is the wall time from call k to call k+1, `wait(k)`
    /// the part of it the plugin spent waiting.
    fn run(p: &mut Pace, calls: usize, gap: impl Fn(usize) -> f64, wait: impl Fn(usize) -> f64) -> Vec<bool> {
        let mut t = 0.0;
        let mut states = Vec::new();
        for k in 0..calls {
            p.begin_block(t, BLOCK);
            p.add_wait(wait(k));
            states.push(p.freewheel());
            t += gap(k);
        }
        states
    }

    #[test]
    fn real_time_callbacks_with_jitter_never_freewheel_nor_wait() {
        let mut p = Pace::new(BLOCK, 0.3);
        // ±40 % jitter around the block period, alternating.
        let states = run(&mut p, 2000, |k| BLOCK * if k % 2 == 0 { 0.6 } else { 1.4 }, |_| 0.0);
        assert!(states.iter().all(|f| !f));
        assert!(p.wait_allowance(0.0, 0.0) <= 0.0, "a real-time host leaves nothing to wait on");
    }

    #[test]
    fn split_blocks_within_one_callback_are_not_a_freewheel() {
        // nice-plug splits a host block at automation events: four sub-blocks back to back, then
        // the device's period.
        let mut p = Pace::new(4.0 * BLOCK, 0.4);
        let mut t = 0.0;
        for k in 0..4000 {
            p.begin_block(t, BLOCK);
            assert!(!p.freewheel(), "call {k}");
            t += if k % 4 == 3 { 4.0 * BLOCK - 3e-5 } else { 1e-5 };
        }
    }

    #[test]
    fn a_fast_host_is_recognised_before_the_first_wet_sample_and_stays_while_we_wait() {
        let latency = 0.25;
        let mut p = Pace::new(BLOCK, latency);
        // An export: 50 µs of host work per block; once recognised, the plugin waits 20 ms a block
        // for the worker (slower than real time), which must not end the freewheel.
        let mut first = None;
        let mut t = 0.0;
        for k in 0..3000 {
            p.begin_block(t, BLOCK);
            if p.freewheel() && first.is_none() {
                first = Some(k);
            }
            let w = if p.freewheel() { 0.02 } else { 0.0 };
            p.add_wait(w);
            t += 50e-6 + w;
        }
        let first = first.expect("freewheel recognised");
        assert!((first as f64) * BLOCK < latency, "recognised after {first} blocks");
        assert!(p.freewheel(), "waiting for a slow worker ended the freewheel");
        assert_eq!(p.entered, 1);
    }

    #[test]
    fn real_time_after_a_freewheel_ends_it_and_forgets_the_lead() {
        let mut p = Pace::new(BLOCK, 0.3);
        run(&mut p, 500, |_| 1e-4, |_| 0.0);
        assert!(p.freewheel());
        assert!(p.ahead() > 1.0);
        let states = run(&mut p, 100, |_| BLOCK, |_| 0.0);
        assert!(!states.last().unwrap(), "paced calls must end the freewheel");
        assert!(p.ahead() < 1e-9, "{}", p.ahead());
        assert!(p.wait_allowance(0.0, 0.0) <= 0.0);
    }

    #[test]
    fn a_stale_offline_hint_is_ended_by_real_time_pacing() {
        let mut p = Pace::new(BLOCK, 0.3);
        p.assume_freewheel();
        assert!(p.freewheel());
        let states = run(&mut p, 100, |_| BLOCK, |_| 0.0);
        assert!(!states.last().unwrap());
    }

    #[test]
    fn a_host_running_ahead_allows_waits_only_within_its_lead() {
        let mut p = Pace::new(BLOCK, 10.0);
        // 5 blocks back to back (ahead by ~4 blocks), not yet a freewheel (enter lead 100 ms).
        run(&mut p, 5, |_| 1e-5, |_| 0.0);
        assert!(!p.freewheel());
        let allowance = p.wait_allowance(0.0, 0.0);
        assert!(allowance > 0.0 && allowance < 4.0 * BLOCK, "{allowance}");
        assert!(p.wait_allowance(0.0, allowance + 1e-6) < 0.0);
    }
}
