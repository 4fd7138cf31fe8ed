//! A matrix product for the few rows a streaming call has, with the weight packed once at load:
//! `y[m, n] = x[m, k] · W[k, n]`.
//!
//! Why not candle's (the `gemm` crate's) product: with few rows the work is reading the weight,
//! and `gemm` repacks the whole weight on every call, so a streaming call reads and writes each
//! weight twice more than it multiplies. Measured here on one thread (`examples/mm_stream.rs`,
//! 24 distinct 256×2048 + 2048×256 pairs, 101 MB, the full-size encoder's feed-forward weights):
//! 16 rows 42 ms with distinct weights against 13 ms with one weight reused from cache, and
//! 1 row 17 ms: the product is bound by memory, not arithmetic. Here the weight is read once, in
//! the order the kernel uses it, and kept in half precision when that is exact (StreamSpeech's
//! checkpoints were trained and stored in fp16, so their weights are), which halves the bytes.
//!
//! Layout: panels of [`NR`] columns, each `k` rows of `NR` values (zero beyond `n`). The kernel
//! holds [`MR`] rows × `NR` columns of accumulators and adds `x[r, i] · W[i, ·]` for `i` = 0 …
//! k−1 in order, one fused multiply-add each: every output is the same sequence of operations
//! whatever the number of rows, so a row's result never depends on the rows beside it.
//!
//! x86-64 with AVX2, FMA and F16C only (checked at run time); elsewhere [`PackedMatrix::pack`]
//! returns `None` and the caller keeps candle's product.

use half::f16;

/// Columns per panel: two 8-lane vectors.
pub const NR: usize = 16;
/// Rows per kernel call: 6 × 2 accumulators, 2 weight vectors and a broadcast fit the 16
/// vector registers.
pub const MR: usize = 6;
/// Above this many rows [`crate::linear::Linear`] unpacks the weight for candle's product
/// instead: the kernel is bound by memory up to a few tens of rows, candle's by arithmetic, where
/// it is about twice as fast (`examples/mm_stream.rs`, one thread: 16 rows 26 ms here, 53 ms
/// candle; 64 rows 71 ms and 55 ms; 400 rows 524 ms and 229 ms).
pub const KERNEL_MAX_ROWS: usize = 48;

enum Panels {
    F16(Vec<f16>),
    F32(Vec<f32>),
}

/// A `[k, n]` weight packed for [`PackedMatrix::matmul`].
pub struct PackedMatrix {
    k: usize,
    n: usize,
    panels: Panels,
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedMatrix").field("k", &self.k).field("n", &self.n).field("half", &self.is_half()).finish()
    }
}

/// Whether this CPU runs the kernel.
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl PackedMatrix {
    /// Packs `w` `[k, n]` (row-major); half precision when every value converts exactly. `None`
    /// where the CPU lacks the kernel's instructions.
    pub fn pack(w: &[f32], k: usize, n: usize) -> Option<Self> {
        Self::pack_as(w, k, n, None)
    }

    /// [`pack`](Self::pack), with the storage forced (`Some(true)`: half, rounding; `Some(false)`:
    /// single) for tests and measurements.
    pub fn pack_as(w: &[f32], k: usize, n: usize, half: Option<bool>) -> Option<Self> {
        if !supported() || w.len() != k.checked_mul(n)? {
            return None;
        }
        let half = half.unwrap_or_else(|| w.iter().all(|&v| f16::from_f32(v).to_f32().to_bits() == v.to_bits()));
        let panels = n.div_ceil(NR);
        let value = |p: usize, i: usize, j: usize| {
            let col = p * NR + j;
            if col < n { w[i * n + col] } else { 0.0 }
        };
        let order = (0..panels).flat_map(|p| (0..k).flat_map(move |i| (0..NR).map(move |j| (p, i, j))));
        let panels = if half {
            Panels::F16(order.map(|(p, i, j)| f16::from_f32(value(p, i, j))).collect())
        } else {
            Panels::F32(order.map(|(p, i, j)| value(p, i, j)).collect())
        };
        Some(PackedMatrix { k, n, panels })
    }

    pub fn dims(&self) -> (usize, usize) {
        (self.k, self.n)
    }

    pub fn is_half(&self) -> bool {
        matches!(self.panels, Panels::F16(_))
    }

    /// The weight back, `[k, n]` row-major (exactly what was packed, or its half rounding).
    pub fn unpack(&self) -> Vec<f32> {
        use half::slice::HalfFloatSliceExt;
        let (k, n) = (self.k, self.n);
        let mut w = vec![0f32; k * n];
        let mut panel = vec![0f32; k * NR];
        for p in 0..n.div_ceil(NR) {
            let at = p * k * NR..(p + 1) * k * NR;
            match &self.panels {
                Panels::F16(v) => v[at].convert_to_f32_slice(&mut panel),
                Panels::F32(v) => panel.copy_from_slice(&v[at]),
            }
            let cols = NR.min(n - p * NR);
            for i in 0..k {
                w[i * n + p * NR..i * n + p * NR + cols].copy_from_slice(&panel[i * NR..i * NR + cols]);
            }
        }
        w
    }

    /// `x` `[m, k]` (row-major) times the weight, plus `bias` `[n]` per row: `[m, n]`.
    pub fn matmul(&self, x: &[f32], m: usize, bias: Option<&[f32]>) -> Vec<f32> {
        let (k, n) = (self.k, self.n);
        assert_eq!(x.len(), m * k, "x is [m, k]");
        if let Some(b) = bias {
            assert_eq!(b.len(), n, "bias is [n]");
        }
        let mut y = vec![0f32; m * n];
        // Rows split across the calling pool's threads when there are enough for each to fill
        // its tiles (a whole-utterance call); a streaming call's few rows stay on one thread.
        let threads = rayon::current_num_threads();
        if threads > 1 && m >= 2 * MR * threads.min(2) {
            use rayon::prelude::*;
            let per_task = m.div_ceil(threads).div_ceil(MR) * MR;
            y.par_chunks_mut(per_task * n).zip(x.par_chunks(per_task * k)).for_each(|(y, x)| self.matmul_into(x, y.len() / n, bias, y));
        } else {
            self.matmul_into(x, m, bias, &mut y);
        }
        y
    }

    fn matmul_into(&self, x: &[f32], m: usize, bias: Option<&[f32]>, y: &mut [f32]) {
        let (k, n) = (self.k, self.n);
        #[cfg(target_arch = "x86_64")]
        for p in 0..n.div_ceil(NR) {
            let cols = NR.min(n - p * NR);
            for r0 in (0..m).step_by(MR) {
                let rows = MR.min(m - r0);
                let tile = Tile { x: &x[r0 * k..(r0 + rows) * k], k, cols, bias: bias.map(|b| &b[p * NR..p * NR + cols]) };
                let out = &mut y[r0 * n + p * NR..];
                // SAFETY: `supported()` held when this matrix was packed (pack returns None
                // otherwise); the slices cover what the kernel reads and writes (asserted there).
                unsafe {
                    match &self.panels {
                        Panels::F16(v) => kernel_dispatch::<true>(&tile, v.as_ptr().add(p * k * NR).cast(), out, n, rows),
                        Panels::F32(v) => kernel_dispatch::<false>(&tile, v.as_ptr().add(p * k * NR).cast(), out, n, rows),
                    }
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (x, m, bias, y, k, n);
    }
}

/// One kernel call's rows of `x` and columns of the output.
struct Tile<'a> {
    /// `rows × k`.
    x: &'a [f32],
    k: usize,
    /// Valid columns of the panel (≤ NR).
    cols: usize,
    bias: Option<&'a [f32]>,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn kernel_dispatch<const HALF: bool>(tile: &Tile, w: *const u8, out: &mut [f32], ldo: usize, rows: usize) {
    unsafe {
        match rows {
            1 => kernel::<1, HALF>(tile, w, out, ldo),
            2 => kernel::<2, HALF>(tile, w, out, ldo),
            3 => kernel::<3, HALF>(tile, w, out, ldo),
            4 => kernel::<4, HALF>(tile, w, out, ldo),
            5 => kernel::<5, HALF>(tile, w, out, ldo),
            _ => kernel::<6, HALF>(tile, w, out, ldo),
        }
    }
}

/// `R` rows × one panel. `w`: the panel, `k × NR` values (f16 when `HALF`, else f32); `out`
/// starts at the tile's first output, rows `ldo` apart.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn kernel<const R: usize, const HALF: bool>(tile: &Tile, w: *const u8, out: &mut [f32], ldo: usize) {
    use std::arch::x86_64::*;
    let k = tile.k;
    assert!(tile.x.len() >= R * k && out.len() >= (R - 1) * ldo + tile.cols && tile.cols <= NR);
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        let x = tile.x.as_ptr();
        for i in 0..k {
            // The weight streams from memory once: ask for it a kilobyte ahead (the hardware
            // prefetcher stops at page ends). A hint only, never a fault, even past the end.
            _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(i * NR * if HALF { 2 } else { 4 } + 1024).cast());
            let (w0, w1) = if HALF {
                let p = (w as *const u16).add(i * NR);
                (_mm256_cvtph_ps(_mm_loadu_si128(p.cast())), _mm256_cvtph_ps(_mm_loadu_si128(p.add(8).cast())))
            } else {
                let p = (w as *const f32).add(i * NR);
                (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)))
            };
            for (r, a) in acc.iter_mut().enumerate() {
                let xv = _mm256_set1_ps(*x.add(r * k + i));
                a[0] = _mm256_fmadd_ps(xv, w0, a[0]);
                a[1] = _mm256_fmadd_ps(xv, w1, a[1]);
            }
        }
        let mut row = [0f32; NR];
        for (r, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(row.as_mut_ptr(), a[0]);
            _mm256_storeu_ps(row.as_mut_ptr().add(8), a[1]);
            let dst = &mut out[r * ldo..r * ldo + tile.cols];
            match tile.bias {
                Some(b) => dst.iter_mut().zip(&row).zip(b).for_each(|((d, &v), &b)| *d = v + b),
                None => dst.copy_from_slice(&row[..tile.cols]),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[f32], w: &[f32], m: usize, k: usize, n: usize, bias: Option<&[f32]>) -> Vec<f64> {
        let mut y = vec![0f64; m * n];
        for r in 0..m {
            for c in 0..n {
                let s: f64 = (0..k).map(|i| x[r * k + i] as f64 * w[i * n + c] as f64).sum();
                y[r * n + c] = s + bias.map_or(0.0, |b| b[c] as f64);
            }
        }
        y
    }

    /// Every row count through the tiles, column counts beside and across panels, both
    /// storages, with and without bias, against a float64 product.
    #[test]
    fn products_match_a_float64_reference() {
        if !supported() {
            eprintln!("no AVX2/FMA/F16C on this CPU: PackedMatrix::pack returns None here");
            assert!(PackedMatrix::pack(&[0.0; 4], 2, 2).is_none());
            return;
        }
        let mut seed = 7u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        for (m, k, n) in [(1, 1, 1), (1, 37, 5), (5, 64, 16), (6, 33, 17), (7, 128, 48), (13, 9, 31), (16, 256, 70)] {
            let x: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
            let w: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
            let b: Vec<f32> = (0..n).map(|_| rnd()).collect();
            for half in [false, true] {
                let p = PackedMatrix::pack_as(&w, k, n, Some(half)).unwrap();
                let used = p.unpack();
                assert_eq!(used.len(), k * n);
                if !half {
                    assert_eq!(used, w, "single precision packs exactly");
                }
                for bias in [None, Some(&b[..])] {
                    let y = p.matmul(&x, m, bias);
                    let want = reference(&x, &used, m, k, n, bias);
                    let worst = y.iter().zip(&want).map(|(&a, &b)| (a as f64 - b).abs()).fold(0.0, f64::max);
                    // k float32 fused multiply-adds of terms below 1: rounding ≤ k·2⁻²⁴ each.
                    assert!(worst <= 1e-6 * (k as f64 + 1.0), "m {m} k {k} n {n} half {half}: max |diff| {worst:.2e}");
                }
            }
        }
    }

    /// Half storage is chosen exactly when it loses nothing.
    #[test]
    fn half_storage_only_when_exact() {
        if !supported() {
            return;
        }
        let exact = [0.5f32, -2.0, 0.099975586, 1024.0];
        assert!(PackedMatrix::pack(&exact, 2, 2).unwrap().is_half());
        let inexact = [0.5f32, -2.0, 0.1, 1024.0];
        let p = PackedMatrix::pack(&inexact, 2, 2).unwrap();
        assert!(!p.is_half());
        assert_eq!(p.unpack(), inexact);
    }

    /// A row's result does not depend on how many rows are multiplied with it.
    #[test]
    fn a_row_is_the_same_whatever_the_rows_beside_it() {
        if !supported() {
            return;
        }
        let (k, n) = (40, 20);
        let w: Vec<f32> = (0..k * n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 64.0).collect();
        let x: Vec<f32> = (0..9 * k).map(|i| ((i * 53 % 97) as f32 - 48.0) / 32.0).collect();
        let p = PackedMatrix::pack(&w, k, n).unwrap();
        let all = p.matmul(&x, 9, None);
        for r in 0..9 {
            assert_eq!(p.matmul(&x[r * k..(r + 1) * k], 1, None), all[r * n..(r + 1) * n], "row {r}");
        }
    }
}
