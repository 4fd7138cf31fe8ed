//! How many mel frames of context a chunk needs on each side, derived from the model config by
//! propagating dependency intervals backwards through every layer (not hard-coded): with this
//! much context, chunked output equals whole-file output.

use vocoder::{Family, VocoderConfig};

/// Inclusive interval of indices at some layer's rate.
#[derive(Clone, Copy)]
struct Span(i64, i64);

impl Span {
    fn widen(self, by: i64) -> Span {
        Span(self.0 - by, self.1 + by)
    }
    /// Through a transposed conv (kernel k, stride r, padding p): output j depends on inputs i
    /// with 0 <= j + p - i*r < k.
    fn through_transpose(self, k: i64, r: i64, p: i64) -> Span {
        Span((self.0 + p - k + 1).div_euclid(r) + i64::from((self.0 + p - k + 1).rem_euclid(r) != 0), (self.1 + p).div_euclid(r))
    }
}

/// (left, right) mel frames of context needed by any output sample of a frame.
pub fn context_frames(cfg: &VocoderConfig) -> (usize, usize) {
    let family = cfg.family().expect("validated config");
    let hop = cfg.hop_size as i64;
    let n = cfg.upsample_rates.len();
    // Half-width added by one MRF stage at its own rate.
    let mrf_width = |_stage: usize| -> i64 {
        match family {
            Family::HifiGanV1 => cfg
                .resblock_kernel_sizes
                .iter()
                .zip(&cfg.resblock_dilation_sizes)
                .map(|(k, ds)| ds.iter().map(|d| ((k - 1) * d / 2 + (k - 1) / 2) as i64).sum::<i64>())
                .max()
                .unwrap_or(0),
            Family::HifiGanV3 => cfg
                .resblock_kernel_sizes
                .iter()
                .zip(&cfg.resblock_dilation_sizes)
                .map(|(k, ds)| ds.iter().map(|d| ((k - 1) * d / 2) as i64).sum::<i64>())
                .max()
                .unwrap_or(0),
            // conv1 and conv2, each with padding k/2.
            Family::GrcMrf => cfg.grc_kernel_sizes.iter().map(|k| 2 * (k / 2) as i64).max().unwrap_or(0),
        }
    };
    let f = 1000i64; // far from the signal's edges
    let (mut left, mut right) = (0i64, 0i64);
    for s in f * hop..(f + 1) * hop {
        let mut span = Span(s, s).widen(3); // conv_post / final_conv, k = 7
        for i in (0..n).rev() {
            span = span.widen(mrf_width(i + 1));
            let (k, r) = (cfg.upsample_kernel_sizes[i] as i64, cfg.upsample_rates[i] as i64);
            span = span.through_transpose(k, r, (k - r) / 2);
        }
        if family == Family::GrcMrf {
            span = span.widen(mrf_width(0));
        }
        span = span.widen(3); // conv_pre / initial_conv, k = 7
        left = left.max(f - span.0);
        right = right.max(span.1 - f);
    }
    (left.max(0) as usize, right.max(0) as usize)
}
