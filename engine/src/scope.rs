//! The live spectrogram feed for the plugin window: log-mel columns of the input and of the wet
//! output, computed on the worker thread (never the audio thread), paired by input index (frame
//! `k` of both covers the same stretch of the input timeline) and handed over through a
//! lock-free SPSC ring of fixed-size frames. The window drains it; when it does not, frames are
//! dropped, never waited for.

use std::collections::VecDeque;

use vocoder::VocoderConfig;
use vocoder::mel::{MelFrontEnd, MelScratch};

pub const SCOPE_MELS: usize = 80;
/// Frames the ring holds (≈ 10 s at 48 kHz).
pub const SCOPE_RING: usize = 1024;

/// One column pair of the live spectrograms (natural-log mel magnitudes, as the models use).
#[derive(Debug, Clone, Copy)]
pub struct ScopeFrame {
    /// Input sample index of the frame's first sample.
    pub index: u64,
    pub input: [f32; SCOPE_MELS],
    pub wet: [f32; SCOPE_MELS],
}

impl Default for ScopeFrame {
    fn default() -> Self {
        Self { index: 0, input: [0.0; SCOPE_MELS], wet: [0.0; SCOPE_MELS] }
    }
}

/// The analysis front end at the host rate: ≈ 43 ms windows, 4 frames per window, 80 mel bins
/// up to 8 kHz (the models' range).
pub fn scope_front_end(host_rate: u32) -> MelFrontEnd {
    let n_fft = scope_fft_size(host_rate);
    let hop = n_fft / 4;
    let cfg = VocoderConfig {
        resblock: "1".into(),
        upsample_rates: vec![hop],
        upsample_kernel_sizes: vec![2 * hop],
        upsample_initial_channel: 2,
        resblock_kernel_sizes: vec![3],
        resblock_dilation_sizes: vec![vec![1]],
        grc_kernel_sizes: vec![],
        lrelu_slope: 0.1,
        final_lrelu_slope: 0.01,
        grc_final_lrelu_slope: None,
        causal: false,
        sampling_rate: host_rate,
        n_fft,
        hop_size: hop,
        win_size: n_fft,
        num_mels: SCOPE_MELS,
        fmin: 0.0,
        fmax: Some(8000f64.min(host_rate as f64 / 2.0)),
    };
    MelFrontEnd::new(&cfg)
}

/// Columns per second of the feed at a host rate.
pub fn frames_per_second(host_rate: u32) -> f32 {
    host_rate as f32 / (scope_fft_size(host_rate) / 4) as f32
}

/// The analysis window: ≈ 43 ms rounded up to a power of two.
fn scope_fft_size(host_rate: u32) -> usize {
    ((host_rate as f64 * 0.043) as usize).next_power_of_two().max(256)
}

struct Framer {
    buf: Vec<f32>,
    frames: VecDeque<[f32; SCOPE_MELS]>,
}

/// Worker-side producer.
pub(crate) struct ScopeAnalyzer {
    front: MelFrontEnd,
    scratch: MelScratch,
    column: Vec<f32>,
    input: Framer,
    wet: Framer,
    next_index: u64,
    out: rtrb::Producer<ScopeFrame>,
}

impl ScopeAnalyzer {
    pub fn new(host_rate: u32, out: rtrb::Producer<ScopeFrame>) -> Self {
        let front = scope_front_end(host_rate);
        Self {
            scratch: front.scratch(),
            column: vec![0.0; SCOPE_MELS],
            input: Framer { buf: Vec::new(), frames: VecDeque::new() },
            wet: Framer { buf: Vec::new(), frames: VecDeque::new() },
            front,
            next_index: 0,
            out,
        }
    }

    fn frame(&mut self, which: bool, x: &[f32]) {
        let (n_fft, hop) = (self.front.n_fft, self.front.hop);
        let f = if which { &mut self.input } else { &mut self.wet };
        f.buf.extend_from_slice(x);
        let mut start = 0;
        while f.buf.len() - start >= n_fft {
            self.front.frame_into(&f.buf[start..start + n_fft], &mut self.scratch, &mut self.column);
            let mut col = [0f32; SCOPE_MELS];
            col.copy_from_slice(&self.column);
            f.frames.push_back(col);
            start += hop;
        }
        f.buf.drain(..start);
    }

    /// Input samples in arrival order (index-aligned with the wet samples).
    pub fn push_input(&mut self, x: &[f32]) {
        self.frame(true, x);
        self.pair();
    }

    /// Wet samples in index order.
    pub fn push_wet(&mut self, x: &[f32]) {
        self.frame(false, x);
        self.pair();
    }

    fn pair(&mut self) {
        while !self.input.frames.is_empty() && !self.wet.frames.is_empty() {
            let input = self.input.frames.pop_front().expect("non-empty");
            let wet = self.wet.frames.pop_front().expect("non-empty");
            // A full ring means nobody is watching: drop the frame.
            let _ = self.out.push(ScopeFrame { index: self.next_index, input, wet });
            self.next_index += self.front.hop as u64;
        }
    }

    /// Restart both streams at input index `at` (after a real-time resync).
    pub fn restart(&mut self, at: u64) {
        self.input.buf.clear();
        self.input.frames.clear();
        self.wet.buf.clear();
        self.wet.frames.clear();
        self.next_index = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_knows_the_feed_rate_of_the_front_end() {
        for rate in [16_000u32, 22_050, 44_100, 48_000, 96_000] {
            let front = scope_front_end(rate);
            assert_eq!(frames_per_second(rate), rate as f32 / front.hop as f32, "{rate} Hz");
            // ≈ 43 ms windows: fine enough for speech, 4 frames per window.
            let ms = front.n_fft as f32 / rate as f32 * 1000.0;
            assert!((43.0..=90.0).contains(&ms) && front.hop * 4 == front.n_fft, "{rate} Hz: {ms} ms");
        }
    }
}
