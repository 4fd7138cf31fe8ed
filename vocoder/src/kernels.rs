//! Fast CPU kernels for the operators that dominate the vocoders (97 % of HiFi-GAN's FLOPs are
//! stride-1 dilated conv1d layers).
//!
//! Why not candle's own ops: candle 0.11's CPU `conv1d` always builds an im2col buffer with a
//! single-threaded copy (hundreds of MB per k=11 layer at 10 s of audio) and transposes the result
//! back; `conv_transpose1d` with padding falls to a per-tap scalar loop; `leaky_relu` is several
//! passes with temporaries. Here:
//! - conv1d is a sum over kernel taps of one GEMM each, `Y[:, t] += W_j · X[:, t + j·d]`, reading
//!   the shifted input in place (no im2col), with the bias (and the residual, when fused) as the
//!   initial value of `Y`, tiled along time so that an output tile stays in L2, and tiles split
//!   across the kernel thread pool. The pre-activation (leaky ReLU / ReLU) is fused into the one
//!   copy that zero-pads the input.
//! - conv_transpose1d is polyphase: output phase `r` is a small conv over the taps `r + m·s`, one
//!   GEMM per tap writing straight into the strided output columns (no col2im scatter).
//! The GEMMs are the `gemm` crate's (the one candle itself uses), single-threaded per tile.
//!
//! The thread count is explicit and per calling thread ([`set_threads`]): the plugin's worker must
//! not oversubscribe the host's own threads.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parking_lot::Mutex;
use rayon::prelude::*;

/// Per-layer timing for the benchmark: off unless [`profile_start`] was called (one relaxed
/// atomic load per kernel call when off).
static PROFILING: AtomicBool = AtomicBool::new(false);
static PROFILE: Mutex<BTreeMap<String, LayerTime>> = Mutex::new(BTreeMap::new());

/// Time spent in one kind of layer (same op and shape), summed over calls.
#[derive(Debug, Clone, Default)]
pub struct LayerTime {
    pub calls: usize,
    pub seconds: f64,
    pub flops: f64,
}

pub fn profile_start() {
    PROFILE.lock().clear();
    PROFILING.store(true, Ordering::Relaxed);
}

/// Stops profiling and returns the per-layer totals, keyed by op and shape.
pub fn profile_take() -> BTreeMap<String, LayerTime> {
    PROFILING.store(false, Ordering::Relaxed);
    std::mem::take(&mut *PROFILE.lock())
}

fn record(label: impl FnOnce() -> String, start: Option<Instant>, flops: f64) {
    if let Some(t0) = start {
        let dt = t0.elapsed().as_secs_f64();
        let mut p = PROFILE.lock();
        let e = p.entry(label()).or_default();
        e.calls += 1;
        e.seconds += dt;
        e.flops += flops;
    }
}

fn profiling_clock() -> Option<Instant> {
    PROFILING.load(Ordering::Relaxed).then(Instant::now)
}

/// Thread pools by size, shared by every caller that wants that many threads.
static POOLS: Mutex<Vec<Arc<rayon::ThreadPool>>> = Mutex::new(Vec::new());

thread_local! {
    /// This thread's choice (None: the process default).
    static THREADS: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

fn default_threads() -> usize {
    static DEFAULT: OnceLock<usize> = OnceLock::new();
    *DEFAULT.get_or_init(|| {
        std::env::var("STREAMSPEECH_VOCODER_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
    })
}

fn pool(n: usize) -> Arc<rayon::ThreadPool> {
    let mut pools = POOLS.lock();
    if let Some(p) = pools.iter().find(|p| p.current_num_threads() == n) {
        return p.clone();
    }
    let p = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(move |i| format!("vocoder-kernel-{n}-{i}"))
            .build()
            .expect("the kernel thread pool starts"),
    );
    pools.push(p.clone());
    p
}

/// Sets how many threads the fast kernels use for calls made **from this thread** (default: all
/// cores, or `STREAMSPEECH_VOCODER_THREADS`). With 1 the kernels run on the calling thread only.
/// Per calling thread, so each plugin instance's worker chooses for itself without changing
/// another instance's (or the host's) threading.
pub fn set_threads(n: usize) {
    THREADS.with(|t| t.set(Some(n.max(1))));
}

/// The kernels' thread count for calls from this thread.
pub fn threads() -> usize {
    THREADS.with(|t| t.get()).unwrap_or_else(default_threads)
}

fn run_tiles(n_tiles: usize, f: impl Fn(usize) + Sync + Send) {
    let n = threads();
    if n == 1 || n_tiles == 1 {
        (0..n_tiles).for_each(f);
    } else {
        pool(n).install(|| (0..n_tiles).into_par_iter().for_each(f));
    }
}

/// A raw pointer the tile closures share; every tile writes a disjoint region.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

/// The activation applied to a conv's input as it is copied: `max(x, slope·x)` (leaky ReLU for
/// 0 < slope < 1, ReLU for slope 0), optionally after scaling by `scale` (folds an MRF mean).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PreAct {
    pub scale: f32,
    pub slope: Option<f32>,
}

impl PreAct {
    pub const NONE: PreAct = PreAct { scale: 1.0, slope: None };
    pub fn leaky(slope: f64) -> Self {
        Self { scale: 1.0, slope: Some(slope as f32) }
    }
    #[inline]
    fn apply(self, src: &[f32], dst: &mut [f32]) {
        match self.slope {
            None if self.scale == 1.0 => dst.copy_from_slice(src),
            None => dst.iter_mut().zip(src).for_each(|(d, &s)| *d = s * self.scale),
            Some(a) => dst.iter_mut().zip(src).for_each(|(d, &s)| {
                let v = s * self.scale;
                *d = v.max(v * a)
            }),
        }
    }
}

/// Columns per output tile: keeps the tile (and the input panel it reads) within about 256 KiB.
fn tile_cols(rows: usize, total: usize) -> usize {
    let t = (65_536 / rows.max(1)).clamp(128, 8_192);
    t.min(total.max(1))
}

/// Copies `x` [c, t] into a fresh [c, left + t + right] buffer with zero borders, applying `act`.
fn padded_copy(x: &[f32], c: usize, t: usize, left: usize, right: usize, act: PreAct) -> Vec<f32> {
    let tp = left + t + right;
    let mut xp = vec![0f32; c * tp];
    let body = |(row, dst): (usize, &mut [f32])| act.apply(&x[row * t..(row + 1) * t], &mut dst[left..left + t]);
    let n = threads();
    if c * t > 1 << 16 && n > 1 {
        pool(n).install(|| xp.par_chunks_mut(tp).enumerate().for_each(body));
    } else {
        xp.chunks_mut(tp).enumerate().for_each(body);
    }
    xp
}

/// `dst[m×n] += lhs[m×k] · rhs[k×n]` with explicit row/column strides, single-threaded.
///
/// # Safety
/// The pointers must address the strided regions described, and `dst` must not alias the inputs.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_acc(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: isize,
    dst_cs: isize,
    lhs: *const f32,
    lhs_rs: isize,
    rhs: *const f32,
    rhs_rs: isize,
) {
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs,
            dst_rs,
            true,
            lhs,
            1,
            lhs_rs,
            rhs,
            1,
            rhs_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// Per-tap weight matrices: `taps[j]` is `[c_out, c_in]`, filled from `w(co, ci, j)` (the
/// conv and the transposed conv store PyTorch weights in different orders).
fn pack_taps(c_in: usize, c_out: usize, kernel: usize, w: impl Fn(usize, usize, usize) -> f32) -> Vec<f32> {
    let mut taps = vec![0f32; c_in * c_out * kernel];
    for j in 0..kernel {
        for co in 0..c_out {
            for ci in 0..c_in {
                taps[(j * c_out + co) * c_in + ci] = w(co, ci, j);
            }
        }
    }
    taps
}

/// A stride-1 conv1d (any kernel size, dilation, symmetric zero padding): per output tile,
/// `Y_tile += W_j · P[:, j·d ..]` for each tap j, where P is the tile's activated, zero-padded
/// input panel `[c_in, n + d(k−1)]`. Each tile builds its panel, initialises its output columns
/// (bias + residuals) and runs its GEMMs alone, so everything a tile touches stays in cache and
/// every pass is parallel. (Measured on V1, 2 threads: stacking the taps into one deeper GEMM
/// over a per-tile im2col block was slower at every depth threshold tried, 0.28–0.32 vs 0.25 s
/// per audio second, and the tile size hardly matters between 48 K and 384 K floats.)
pub struct Conv1dKernel {
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub dilation: usize,
    pub padding: usize,
    /// `taps[j]` is the `[c_out, c_in]` matrix of tap j.
    taps: Vec<f32>,
    bias: Vec<f32>,
}

thread_local! {
    /// Per-thread tile scratch (the input panel), reused across calls.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Conv1dKernel {
    /// `weight` is PyTorch's `[c_out, c_in, k]`, row-major.
    pub fn new(weight: &[f32], bias: &[f32], c_in: usize, c_out: usize, kernel: usize, dilation: usize, padding: usize) -> Self {
        assert_eq!(weight.len(), c_out * c_in * kernel, "conv1d weight size");
        assert_eq!(bias.len(), c_out, "conv1d bias size");
        assert!(kernel >= 1 && dilation >= 1);
        let taps = pack_taps(c_in, c_out, kernel, |co, ci, j| weight[(co * c_in + ci) * kernel + j]);
        Self { c_in, c_out, kernel, dilation, padding, taps, bias: bias.to_vec() }
    }

    pub fn out_len(&self, t_in: usize) -> usize {
        self.out_len_padded(t_in, self.padding)
    }

    pub fn out_len_padded(&self, t_in: usize, padding: usize) -> usize {
        (t_in + 2 * padding).saturating_sub(self.dilation * (self.kernel - 1))
    }

    /// Multiply-adds per output column (for GFLOP/s figures: 2 FLOPs each).
    pub fn macs_per_col(&self) -> usize {
        self.c_in * self.c_out * self.kernel
    }

    fn tile(&self, t_out: usize) -> usize {
        let per_col = self.c_in + self.c_out;
        let n = (98_304 / per_col.max(1)).clamp(64, 4_096) / 16 * 16;
        n.min(t_out.max(1))
    }

    /// `x` [c_in, t_in] → `act` → conv → (+ each of `residuals`, [c_out, t_out]) → [c_out, t_out].
    pub fn forward(&self, x: &[f32], t_in: usize, act: PreAct, residuals: &[&[f32]]) -> Vec<f32> {
        self.forward_padded(x, t_in, self.padding, act, residuals)
    }

    /// As [`forward`](Self::forward) with another padding (0 for streaming, where the history
    /// columns stand in for it).
    pub fn forward_padded(&self, x: &[f32], t_in: usize, padding: usize, act: PreAct, residuals: &[&[f32]]) -> Vec<f32> {
        assert_eq!(x.len(), self.c_in * t_in, "conv1d input size");
        let clock = profiling_clock();
        let t_out = self.out_len_padded(t_in, padding);
        let (c_in, c_out, k, d, p) = (self.c_in, self.c_out, self.kernel, self.dilation, padding);
        if t_out == 0 {
            return Vec::new();
        }
        for r in residuals {
            assert_eq!(r.len(), c_out * t_out, "residual size");
        }
        let mut y: Vec<f32> = Vec::with_capacity(c_out * t_out);
        let tile = self.tile(t_out);
        let n_tiles = t_out.div_ceil(tile);
        let span = d * (k - 1);
        let yp = SharedMut(y.as_mut_ptr());
        run_tiles(n_tiles, |ti| {
            let yp = yp;
            let t0 = ti * tile;
            let n = tile.min(t_out - t0);
            // Output columns t0..t0+n start as bias + residuals. SAFETY: tile ti alone writes
            // them, and every element of y is written here before any GEMM reads it.
            for co in 0..c_out {
                let row = unsafe { std::slice::from_raw_parts_mut(yp.0.add(co * t_out + t0), n) };
                let b = self.bias[co];
                match residuals {
                    [] => row.fill(b),
                    [r] => row.iter_mut().zip(&r[co * t_out + t0..]).for_each(|(o, &v)| *o = v + b),
                    [r1, r2] => row
                        .iter_mut()
                        .zip(&r1[co * t_out + t0..])
                        .zip(&r2[co * t_out + t0..])
                        .for_each(|((o, &v1), &v2)| *o = v1 + v2 + b),
                    _ => unreachable!("at most two residuals"),
                }
            }
            // Input column u of this tile's panel is input sample t0 + u − p (zero outside).
            let fill_row = |dst: &mut [f32], ci: usize, first: isize| {
                let len = dst.len() as isize;
                let lo = (-first).clamp(0, len) as usize;
                let hi = (t_in as isize - first).clamp(lo as isize, len) as usize;
                dst[..lo].fill(0.0);
                if hi > lo {
                    let src = &x[ci * t_in + (first + lo as isize) as usize..ci * t_in + (first + hi as isize) as usize];
                    act.apply(src, &mut dst[lo..hi]);
                }
                dst[hi..].fill(0.0);
            };
            SCRATCH.with_borrow_mut(|scratch| {
                let w = n + span;
                scratch.resize(c_in * w, 0.0);
                for ci in 0..c_in {
                    fill_row(&mut scratch[ci * w..(ci + 1) * w], ci, t0 as isize - p as isize);
                }
                for j in 0..k {
                    // SAFETY: panel columns j·d .. j·d + n exist (w = n + d(k−1)).
                    unsafe {
                        gemm_acc(
                            c_out,
                            n,
                            c_in,
                            yp.0.add(t0),
                            t_out as isize,
                            1,
                            self.taps.as_ptr().add(j * c_out * c_in),
                            c_in as isize,
                            scratch.as_ptr().add(j * d),
                            w as isize,
                        );
                    }
                }
            });
        });
        // SAFETY: the tiles above wrote all c_out · t_out elements.
        unsafe { y.set_len(c_out * t_out) };
        record(|| format!("conv1d {c_in}→{c_out} k{k} d{d}"), clock, 2.0 * (self.macs_per_col() * t_out) as f64);
        y
    }
}

/// A conv_transpose1d (stride s, kernel k, padding p, no output padding, dilation 1) in
/// polyphase form.
pub struct ConvTranspose1dKernel {
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    taps: Vec<f32>,
    bias: Vec<f32>,
}

impl ConvTranspose1dKernel {
    /// `weight` is PyTorch's `[c_in, c_out, k]`, row-major.
    pub fn new(weight: &[f32], bias: &[f32], c_in: usize, c_out: usize, kernel: usize, stride: usize, padding: usize) -> Self {
        assert_eq!(weight.len(), c_in * c_out * kernel, "conv_transpose1d weight size");
        assert_eq!(bias.len(), c_out, "conv_transpose1d bias size");
        assert!(kernel >= 1 && stride >= 1);
        let taps = pack_taps(c_in, c_out, kernel, |co, ci, j| weight[(ci * c_out + co) * kernel + j]);
        Self { c_in, c_out, kernel, stride, padding, taps, bias: bias.to_vec() }
    }

    pub fn out_len(&self, t_in: usize) -> usize {
        self.out_len_padded(t_in, self.padding)
    }

    pub fn out_len_padded(&self, t_in: usize, padding: usize) -> usize {
        if t_in == 0 {
            return 0;
        }
        ((t_in - 1) * self.stride + self.kernel).saturating_sub(2 * padding)
    }

    pub fn macs_per_input_col(&self) -> usize {
        self.c_in * self.c_out * self.kernel
    }

    /// `x` [c_in, t_in] → `act` → transposed conv → [c_out, out_len(t_in)].
    pub fn forward(&self, x: &[f32], t_in: usize, act: PreAct) -> Vec<f32> {
        self.forward_padded(x, t_in, self.padding, act)
    }

    /// As [`forward`](Self::forward) with another padding (0 for streaming: the full output).
    pub fn forward_padded(&self, x: &[f32], t_in: usize, padding: usize, act: PreAct) -> Vec<f32> {
        assert_eq!(x.len(), self.c_in * t_in, "conv_transpose1d input size");
        let clock = profiling_clock();
        let t_out = self.out_len_padded(t_in, padding);
        if t_out == 0 {
            return Vec::new();
        }
        let (c_in, c_out, s, k, p) = (self.c_in, self.c_out, self.stride, self.kernel, padding);
        // Output o gets tap j from input t when o + p = t·s + j. With u = o + p = q·s + r, the taps
        // are j = r + m·s (m = 0, 1, ...) at inputs t = q − m. Padding the input by `mt` zero
        // columns each side keeps every read in bounds (out-of-range inputs read zeros).
        let mt = k.div_ceil(s);
        let xp = padded_copy(x, c_in, t_in, mt, mt, act);
        let tp = t_in + 2 * mt;
        let mut y = vec![0f32; c_out * t_out];
        for (co, row) in y.chunks_mut(t_out).enumerate() {
            row.fill(self.bias[co]);
        }
        // Work items: (phase, column tile) pairs, all writing disjoint output columns.
        let tile = tile_cols(c_out.max(c_in), t_out.div_ceil(s));
        let mut items = Vec::new();
        for r in 0..s {
            let o_first = (r + s - p % s) % s;
            if o_first >= t_out {
                continue;
            }
            let count = (t_out - o_first).div_ceil(s);
            let mut i0 = 0;
            while i0 < count {
                items.push((r, o_first, i0, tile.min(count - i0)));
                i0 += tile;
            }
        }
        let yp = SharedMut(y.as_mut_ptr());
        let (xp_ptr, taps) = (xp.as_ptr() as usize, self.taps.as_ptr() as usize);
        run_tiles(items.len(), |it| {
            let yp = yp;
            let (r, o_first, i0, n) = items[it];
            let q0 = (o_first + p) / s + i0;
            let mut m = 0;
            while r + m * s < k {
                let j = r + m * s;
                // SAFETY: columns o_first + (i0..i0+n)·s of y belong to this item only; the
                // input columns q0 − m + mt .. + n lie inside the padded input (see above).
                unsafe {
                    gemm_acc(
                        c_out,
                        n,
                        c_in,
                        yp.0.add(o_first + i0 * s),
                        t_out as isize,
                        s as isize,
                        (taps as *const f32).add(j * c_out * c_in),
                        c_in as isize,
                        (xp_ptr as *const f32).add(q0 + mt - m),
                        tp as isize,
                    );
                }
                m += 1;
            }
        });
        record(
            || format!("conv_transpose1d {}→{} k{} s{}", c_in, c_out, k, s),
            clock,
            2.0 * (self.macs_per_input_col() * t_in) as f64,
        );
        y
    }
}
