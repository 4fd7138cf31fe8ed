//! The fast CPU kernels against candle's own ops (the reference), over odd shapes: kernel 1…16,
//! dilation 1…5, stride 1…8, lengths 1…10^5, channels 1…512, batch 1–2, with and without the
//! fused activation and residual. Max abs error allowed: 1e−4.

use candle_core::{Device, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, ConvTranspose1d, ConvTranspose1dConfig};
use vocoder::kernels::{self, PreAct};
use vocoder::layers::{Conv1dLayer, ConvTranspose1dLayer, Kernels};

const TOL: f32 = 1e-4;

/// Deterministic values in [−scale, scale).
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn tensor(v: Vec<f32>, shape: (usize, usize, usize)) -> Tensor {
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

#[allow(clippy::too_many_arguments)]
fn check_conv1d(b: usize, cin: usize, cout: usize, k: usize, d: usize, pad: usize, t: usize, act: PreAct, residual: bool) {
    let seed = (b * 7 + cin * 131 + cout * 17 + k * 3 + d * 5 + t) as u64;
    // Weights scaled like a trained layer (fan-in normalised) so sums stay O(1).
    let w = tensor(values(cout * cin * k, seed, 1.0 / ((cin * k) as f32).sqrt()), (cout, cin, k));
    let bias = Tensor::from_vec(values(cout, seed + 1, 0.5), cout, &Device::Cpu).unwrap();
    let cfg = Conv1dConfig { padding: pad, stride: 1, dilation: d, groups: 1, cudnn_fwd_algo: None };
    let stock = Conv1dLayer::new(Conv1d::new(w.clone(), Some(bias.clone()), cfg), Kernels::Stock).unwrap();
    let fast = Conv1dLayer::new(Conv1d::new(w, Some(bias), cfg), Kernels::Fast).unwrap();
    assert!(fast.kernel().is_some() && stock.kernel().is_none());
    let x = tensor(values(b * cin * t, seed + 2, 1.0), (b, cin, t));
    let t_out = (t + 2 * pad) - d * (k - 1);
    // `residual` exercises both fused forms: one residual, and two (the MRF running sum).
    let r1 = tensor(values(b * cout * t_out, seed + 3, 1.0), (b, cout, t_out));
    let r2 = tensor(values(b * cout * t_out, seed + 4, 1.0), (b, cout, t_out));
    let rs: Vec<&Tensor> = if residual { if t % 2 == 0 { vec![&r1] } else { vec![&r1, &r2] } } else { vec![] };
    let want = stock.forward(&x, act, &rs).unwrap();
    let got = fast.forward(&x, act, &rs).unwrap();
    let err = max_abs(&want, &got);
    assert!(err <= TOL, "conv1d b{b} cin{cin} cout{cout} k{k} d{d} p{pad} t{t} {act:?} res{residual}: max abs {err}");
}

#[test]
fn conv1d_matches_candle_over_odd_shapes() {
    let lrelu = PreAct::leaky(0.1);
    let relu = PreAct { scale: 1.0, slope: Some(0.0) };
    let scaled = PreAct { scale: 1.0 / 3.0, slope: Some(0.01) };
    // (batch, c_in, c_out, kernel, dilation, padding, length, act, residual)
    let cases: &[(usize, usize, usize, usize, usize, usize, usize, PreAct, bool)] = &[
        (1, 1, 1, 1, 1, 0, 1, PreAct::NONE, false),
        (1, 1, 1, 16, 1, 0, 16, PreAct::NONE, false),
        (2, 3, 5, 16, 5, 37, 100, lrelu, true),
        (1, 80, 512, 7, 1, 3, 61, PreAct::NONE, false),
        (1, 512, 512, 3, 1, 1, 64, lrelu, true),
        (2, 256, 256, 11, 5, 25, 301, lrelu, true),
        (1, 7, 13, 7, 3, 9, 1, relu, true),
        (1, 13, 7, 2, 4, 2, 5, scaled, false),
        (1, 32, 32, 11, 5, 25, 100_000, lrelu, true),
        (1, 32, 1, 7, 1, 3, 100_000, scaled, false),
        (1, 64, 64, 5, 2, 4, 9_999, relu, true),
        (1, 1, 32, 3, 1, 1, 100_000, PreAct::NONE, false),
        (2, 128, 128, 16, 1, 0, 700, lrelu, false),
        (1, 9, 9, 5, 5, 10, 3, lrelu, true),
    ];
    for &(b, cin, cout, k, d, p, t, act, res) in cases {
        check_conv1d(b, cin, cout, k, d, p, t, act, res);
    }
}

fn check_conv_transpose1d(b: usize, cin: usize, cout: usize, k: usize, s: usize, pad: usize, t: usize, act: PreAct) {
    let seed = (b * 11 + cin * 13 + cout * 19 + k * 23 + s * 29 + pad + t) as u64;
    let w = tensor(values(cin * cout * k, seed, 1.0 / ((cin * k) as f32 / s as f32).sqrt()), (cin, cout, k));
    let bias = Tensor::from_vec(values(cout, seed + 1, 0.5), cout, &Device::Cpu).unwrap();
    let cfg = ConvTranspose1dConfig { padding: pad, output_padding: 0, stride: s, dilation: 1, groups: 1 };
    let stock = ConvTranspose1dLayer::new(ConvTranspose1d::new(w.clone(), Some(bias.clone()), cfg), Kernels::Stock).unwrap();
    let fast = ConvTranspose1dLayer::new(ConvTranspose1d::new(w, Some(bias), cfg), Kernels::Fast).unwrap();
    assert!(fast.kernel().is_some());
    let x = tensor(values(b * cin * t, seed + 2, 1.0), (b, cin, t));
    let want = stock.forward(&x, act).unwrap();
    let got = fast.forward(&x, act).unwrap();
    let err = max_abs(&want, &got);
    assert!(err <= TOL, "conv_transpose1d b{b} cin{cin} cout{cout} k{k} s{s} p{pad} t{t} {act:?}: max abs {err}");
}

#[test]
fn conv_transpose1d_matches_candle_over_odd_shapes() {
    let lrelu = PreAct::leaky(0.1);
    // (batch, c_in, c_out, kernel, stride, padding, length, act)
    let cases: &[(usize, usize, usize, usize, usize, usize, usize, PreAct)] = &[
        (1, 1, 1, 1, 1, 0, 1, PreAct::NONE),
        (1, 512, 256, 16, 8, 4, 50, lrelu),
        (2, 256, 128, 16, 8, 4, 400, lrelu),
        (1, 32, 16, 4, 2, 1, 100_000, lrelu),
        (1, 5, 3, 7, 3, 2, 9, PreAct::NONE),
        (1, 4, 4, 16, 8, 0, 3, lrelu),
        // Length 1 with padding > 0 is valid in PyTorch but underflows in candle's own l_out;
        // the shortest length the reference can compute here is 2.
        (1, 6, 2, 5, 2, 1, 2, lrelu),
        (1, 6, 2, 5, 2, 0, 1, lrelu),
        (2, 3, 7, 11, 5, 3, 17, PreAct { scale: 0.5, slope: Some(0.2) }),
        (1, 8, 8, 3, 4, 0, 10, lrelu),
        (1, 16, 16, 8, 7, 0, 33, PreAct::NONE),
        (1, 64, 32, 4, 2, 1, 20_000, lrelu),
    ];
    for &(b, cin, cout, k, s, p, t, act) in cases {
        check_conv_transpose1d(b, cin, cout, k, s, p, t, act);
    }
}

#[test]
fn thread_count_is_explicit_and_results_do_not_depend_on_it() {
    let k = kernels::Conv1dKernel::new(&values(48 * 48 * 5, 1, 0.1), &values(48, 2, 0.1), 48, 48, 5, 3, 6);
    let x = values(48 * 20_000, 3, 1.0);
    kernels::set_threads(1);
    assert_eq!(kernels::threads(), 1);
    let one = k.forward(&x, 20_000, PreAct::leaky(0.1), &[]);
    kernels::set_threads(2);
    assert_eq!(kernels::threads(), 2);
    let two = k.forward(&x, 20_000, PreAct::leaky(0.1), &[]);
    // Tiles are the same whatever the thread count, so the result is bit-identical.
    assert_eq!(one, two);
}
