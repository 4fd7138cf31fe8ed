//! A linear layer whose weight is kept transposed (`[in, out]`, contiguous), as the matrix
//! product reads it best.
//!
//! candle-nn's `Linear` keeps PyTorch's `[out, in]` weight and multiplies by its transposed view,
//! so the GEMM repacks the whole weight on every call. With the few rows a streaming call has
//! (1 token, a 16-frame encoder chunk) that repacking is most of the work: measured on one
//! thread (`examples/mm.rs`), 16×256·256×2048 takes 0.43 ms through candle-nn's layer and 0.22 ms
//! here, 16×2048·2048×256 0.71 ms and 0.16 ms; with 300 rows the gain is ~15 %. The products
//! are the same sums in a different blocking (differences of float rounding only).
//!
//! On a CPU with AVX2/FMA/F16C the weight is packed instead ([`crate::packed`]): read once per
//! call in the kernel's order, in half precision when that is exact, which is what a call of few
//! rows (the streaming encoder, the MT decoder's steps) is bound by.

use std::sync::Arc;

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::packed::PackedMatrix;

#[derive(Debug, Clone)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
}

#[derive(Debug, Clone)]
enum Weight {
    /// `[in, out]`, contiguous: candle's product.
    Transposed(Tensor),
    /// The packed `[in, out]` and the bias as values.
    Packed(Arc<PackedMatrix>, Option<Arc<[f32]>>),
}

impl Linear {
    /// From PyTorch's `[out, in]` weight; packed when `pack` and the CPU runs the kernel (for
    /// layers whose calls have few rows; a layer that always has many keeps candle's product).
    pub fn new(weight: Tensor, bias: Option<Tensor>, pack: bool) -> Result<Self> {
        let weight_t = weight.t()?.contiguous()?;
        if pack && weight_t.device().is_cpu() && weight_t.dtype() == candle_core::DType::F32 && bias.as_ref().is_none_or(|b| b.dtype() == candle_core::DType::F32) {
            let (k, n) = weight_t.dims2()?;
            if let Some(packed) = PackedMatrix::pack(&weight_t.flatten_all()?.to_vec1::<f32>()?, k, n) {
                let values = bias.as_ref().map(|b| b.to_vec1::<f32>().map(Arc::from)).transpose()?;
                return Ok(Linear { weight: Weight::Packed(Arc::new(packed), values), bias });
            }
        }
        Ok(Linear { weight: Weight::Transposed(weight_t), bias })
    }
}

/// `weight` `[out, in]` and `bias` `[out]` under `vb`.
pub fn linear(in_dim: usize, out_dim: usize, pack: bool, vb: VarBuilder) -> Result<Linear> {
    Linear::new(vb.get((out_dim, in_dim), "weight")?, Some(vb.get(out_dim, "bias")?), pack)
}

/// `weight` `[out, in]` under `vb`, no bias.
pub fn linear_no_bias(in_dim: usize, out_dim: usize, pack: bool, vb: VarBuilder) -> Result<Linear> {
    Linear::new(vb.get((out_dim, in_dim), "weight")?, None, pack)
}

impl Linear {
    /// candle's product of `x` `[rows, in]` with `weight_t` `[in, out]`, plus the bias.
    fn candle_product(&self, x: &Tensor, weight_t: &Tensor) -> Result<Tensor> {
        let y = x.matmul(weight_t)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

impl Module for Linear {
    /// `x` `[…, in]` → `[…, out]` (leading dimensions flattened into one product).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let (k, n) = match &self.weight {
            Weight::Transposed(weight_t) => weight_t.dims2()?,
            Weight::Packed(packed, _) => packed.dims(),
        };
        let rows = x.elem_count() / k.max(1);
        let x = x.reshape((rows, k))?;
        let y = match &self.weight {
            Weight::Transposed(weight_t) => self.candle_product(&x, weight_t)?,
            // Many rows: candle's product is faster; the weight is unpacked for it.
            Weight::Packed(packed, _) if rows > crate::packed::KERNEL_MAX_ROWS => self.candle_product(&x, &Tensor::from_vec(packed.unpack(), (k, n), &Device::Cpu)?)?,
            Weight::Packed(packed, bias) => {
                let x = x.to_dtype(candle_core::DType::F32)?.contiguous()?;
                let (storage, layout) = x.storage_and_layout();
                let candle_core::Storage::Cpu(cpu) = &*storage else {
                    candle_core::bail!("linear layer: a packed weight multiplies CPU tensors only");
                };
                let start = layout.start_offset();
                let values = &cpu.as_slice::<f32>()?[start..start + rows * k];
                let y = packed.matmul(values, rows, bias.as_deref());
                drop(storage);
                Tensor::from_vec(y, (rows, n), &Device::Cpu)?
            }
        };
        let mut out = dims.to_vec();
        *out.last_mut().expect("a linear layer's input has a last dimension") = n;
        y.reshape(out)
    }
}
