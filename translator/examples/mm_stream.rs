//! The measurement behind `translator::packed`: a model's worth of distinct weights (the
//! full-size encoder's 24 feed-forward pairs, 256×2048 and 2048×256, 101 MB in f32) multiplied by
//! few or many rows, through candle's product and through the packed kernel (half and single
//! storage), one thread: `cargo run --release -p translator --example mm_stream`.
use candle_core::{Device, Tensor};
use std::time::Instant;
use translator::packed::PackedMatrix;

fn main() {
    unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    let dev = Device::Cpu;
    let pairs = 24;
    // Values exact in half precision, as an fp16-trained checkpoint's are.
    let weight = |k: usize, n: usize| Tensor::randn(0f32, 0.05, (k, n), &dev).unwrap().to_dtype(candle_core::DType::F16).unwrap().to_dtype(candle_core::DType::F32).unwrap();
    let ws: Vec<(Tensor, Tensor)> = (0..pairs).map(|_| (weight(256, 2048), weight(2048, 256))).collect();
    let pack = |w: &Tensor, half: bool| {
        let (k, n) = w.dims2().unwrap();
        PackedMatrix::pack_as(&w.flatten_all().unwrap().to_vec1::<f32>().unwrap(), k, n, Some(half)).expect("AVX2/FMA/F16C")
    };
    let packed: Vec<[(PackedMatrix, PackedMatrix); 2]> = ws.iter().map(|(a, b)| [(pack(a, true), pack(b, true)), (pack(a, false), pack(b, false))]).collect();
    for m in [1usize, 4, 16, 64, 400] {
        let x = Tensor::randn(0f32, 1., (m, 256), &dev).unwrap();
        let h = Tensor::randn(0f32, 1., (m, 2048), &dev).unwrap();
        let (xv, hv) = (x.flatten_all().unwrap().to_vec1::<f32>().unwrap(), h.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let macs = (pairs * 2 * m * 256 * 2048) as f64;
        for name in ["candle", "packed f16", "packed f32", "f16 cached"] {
            let reps = if m >= 400 { 2 } else { 5 };
            let t = Instant::now();
            for _ in 0..reps {
                for (i, (a, b)) in ws.iter().enumerate() {
                    match name {
                        "candle" => {
                            std::hint::black_box(x.matmul(a).unwrap());
                            std::hint::black_box(h.matmul(b).unwrap());
                        }
                        _ => {
                            let j = if name == "f16 cached" { 0 } else { i };
                            let (pa, pb) = &packed[j][usize::from(name == "packed f32")];
                            std::hint::black_box(pa.matmul(&xv, m, None));
                            std::hint::black_box(pb.matmul(&hv, m, None));
                        }
                    }
                }
            }
            let s = t.elapsed().as_secs_f64() / reps as f64;
            println!("m {m:4} {name:10}: {:7.2} ms ({:.1} GMAC/s)", s * 1e3, macs / s / 1e9);
        }
    }
}
