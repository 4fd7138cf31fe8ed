use candle_core::{Device, Tensor, Module};
use std::time::Instant;
fn main() {
    unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    let dev = Device::Cpu;
    for &(m, k, n) in &[(1usize, 512usize, 2048usize), (1, 2048, 512), (16, 256, 2048), (16, 2048, 256), (300, 512, 2048), (300, 2048, 512), (1, 512, 6000)] {
        let w = Tensor::randn(0f32, 1., (n, k), &dev).unwrap();
        let x = Tensor::randn(0f32, 1., (1, m, k), &dev).unwrap();
        let lin = candle_nn::Linear::new(w.clone(), None);
        let wt = w.t().unwrap().contiguous().unwrap();
        let reps = if m >= 300 { 10 } else { 200 };
        for (name, f) in [("linear", 0), ("pre-t", 1), ("2d", 2)] {
            let t = Instant::now();
            for _ in 0..reps {
                let y = match f { 0 => lin.forward(&x).unwrap(), 1 => x.broadcast_matmul(&wt).unwrap(), _ => x.squeeze(0).unwrap().matmul(&wt).unwrap() };
                std::hint::black_box(y);
            }
            let s = t.elapsed().as_secs_f64() / reps as f64;
            println!("m {m} k {k} n {n} {name}: {:.3} ms, {:.1} GFLOP/s", s * 1e3, 2.0 * (m * k * n) as f64 / s / 1e9);
        }
    }
}
