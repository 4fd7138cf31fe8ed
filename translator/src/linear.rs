//! A linear layer whose weight is kept transposed (`[in, out]`, contiguous), as the matrix
//! product reads it best.
//!
//! candle-nn's `Linear` keeps PyTorch's `[out, in]` weight and multiplies by its transposed view,
//! so the GEMM repacks the whole weight on every call. With the few rows a streaming call has
//! (1 token, a 16-frame encoder chunk) that repacking is most of the work: measured on one
//! thread (`examples/mm.rs`), 16×256·256×2048 takes 0.43 ms through candle-nn's layer and 0.22 ms
//! here, 16×2048·2048×256 0.71 ms and 0.16 ms; with 300 rows the gain is ~15 %. The products
//! are the same sums in a different blocking (differences of float rounding only).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

#[derive(Debug, Clone)]
pub struct Linear {
    /// `[in, out]`, contiguous.
    weight_t: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// From PyTorch's `[out, in]` weight.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        Ok(Linear { weight_t: weight.t()?.contiguous()?, bias })
    }
}

/// `weight` `[out, in]` and `bias` `[out]` under `vb`.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    Linear::new(vb.get((out_dim, in_dim), "weight")?, Some(vb.get(out_dim, "bias")?))
}

/// `weight` `[out, in]` under `vb`, no bias.
pub fn linear_no_bias(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    Linear::new(vb.get((out_dim, in_dim), "weight")?, None)
}

impl Module for Linear {
    /// `x` `[…, in]` → `[…, out]` (leading dimensions flattened into one product).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let (k, n) = self.weight_t.dims2()?;
        let rows = x.elem_count() / k.max(1);
        let y = x.reshape((rows, k))?.matmul(&self.weight_t)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out = dims.to_vec();
        *out.last_mut().expect("a linear layer's input has a last dimension") = n;
        y.reshape(out)
    }
}
