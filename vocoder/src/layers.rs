//! The conv layers the generators are written against. Each layer holds candle's own op (used on
//! every device, and as the reference) and, on the CPU, the fast kernel of [`crate::kernels`],
//! called through candle's `CustomOp` mechanism so the model code is the same on every device.
//! The pre-activation and the residual add are part of the layer call because the fast kernel
//! fuses them (into its input copy and its output's initial value).

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Module, Shape, Tensor, bail};
use candle_nn::{Conv1d, Conv1dConfig, ConvTranspose1d, ConvTranspose1dConfig};

use crate::kernels::{Conv1dKernel, ConvTranspose1dKernel, PreAct};

/// Which implementation the CPU path uses. `Stock` is candle's own ops (the benchmark baseline and
/// the reference the kernel tests compare against); GPU devices always use candle's ops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Kernels {
    #[default]
    Fast,
    Stock,
}

fn stock_act(x: &Tensor, act: PreAct) -> candle_core::Result<Tensor> {
    let x = if act.scale != 1.0 { (x * act.scale as f64)? } else { x.clone() };
    match act.slope {
        None => Ok(x),
        Some(a) => x.maximum(&(&x * a as f64)?),
    }
}

fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { bail!("fast vocoder kernels take f32 tensors") };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("fast vocoder kernels take contiguous tensors"),
    }
}

pub struct Conv1dLayer {
    stock: Conv1d,
    /// The same weights without padding (streaming: history columns replace the padding).
    stock_valid: Conv1d,
    fast: Option<Arc<Conv1dKernel>>,
}

struct FastConv1d<'a> {
    kernel: &'a Conv1dKernel,
    act: PreAct,
    padding: usize,
}

impl FastConv1d<'_> {
    fn run(&self, x: &[f32], shape: &Shape, residuals: &[&[f32]]) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, c, t) = shape.dims3()?;
        if c != self.kernel.c_in {
            bail!("conv1d expects {} input channels, got {c}", self.kernel.c_in)
        }
        let t_out = self.kernel.out_len_padded(t, self.padding);
        let per = self.kernel.c_out * t_out;
        let out_shape = Shape::from((b, self.kernel.c_out, t_out));
        if b == 1 {
            return Ok((CpuStorage::F32(self.kernel.forward_padded(x, t, self.padding, self.act, residuals)), out_shape));
        }
        let mut out = Vec::with_capacity(b * per);
        for i in 0..b {
            let r: Vec<&[f32]> = residuals.iter().map(|r| &r[i * per..(i + 1) * per]).collect();
            out.extend(self.kernel.forward_padded(&x[i * c * t..(i + 1) * c * t], t, self.padding, self.act, &r));
        }
        Ok((CpuStorage::F32(out), out_shape))
    }

    fn check_residual(&self, input: &Layout, residual: &Layout) -> candle_core::Result<()> {
        let (b, _, t) = input.shape().dims3()?;
        let want = Shape::from((b, self.kernel.c_out, self.kernel.out_len_padded(t, self.padding)));
        if residual.shape() != &want {
            bail!("residual shape {:?}, conv output {:?}", residual.shape(), want)
        }
        Ok(())
    }
}

impl CustomOp1 for FastConv1d<'_> {
    fn name(&self) -> &'static str {
        "fast-conv1d"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.run(contiguous_f32(s, l)?, l.shape(), &[])
    }
}

impl CustomOp2 for FastConv1d<'_> {
    fn name(&self) -> &'static str {
        "fast-conv1d-residual"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.check_residual(l1, l2)?;
        self.run(contiguous_f32(s1, l1)?, l1.shape(), &[contiguous_f32(s2, l2)?])
    }
}

impl CustomOp3 for FastConv1d<'_> {
    fn name(&self) -> &'static str {
        "fast-conv1d-residual2"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.check_residual(l1, l2)?;
        self.check_residual(l1, l3)?;
        self.run(contiguous_f32(s1, l1)?, l1.shape(), &[contiguous_f32(s2, l2)?, contiguous_f32(s3, l3)?])
    }
}

/// A layer's weights and bias (zeros when absent) as flat f32 for the fast kernels.
fn host_weights(weight: &Tensor, bias: Option<&Tensor>, c_out: usize) -> candle_core::Result<(Vec<f32>, Vec<f32>)> {
    let b = match bias {
        Some(b) => b.to_vec1::<f32>()?,
        None => vec![0.0; c_out],
    };
    Ok((weight.flatten_all()?.to_vec1::<f32>()?, b))
}

fn use_fast(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

impl Conv1dLayer {
    pub fn new(stock: Conv1d, kernels: Kernels) -> candle_core::Result<Self> {
        let fast = if kernels == Kernels::Fast && stock.weight().device().is_cpu() {
            let (c_out, c_in, k) = stock.weight().dims3()?;
            let (w, b) = host_weights(stock.weight(), stock.bias(), c_out)?;
            let cfg = stock.config();
            if cfg.stride != 1 || cfg.groups != 1 {
                bail!("fast conv1d supports stride 1, groups 1")
            }
            Some(Arc::new(Conv1dKernel::new(&w, &b, c_in, c_out, k, cfg.dilation, cfg.padding)))
        } else {
            None
        };
        let stock_valid = Conv1d::new(stock.weight().clone(), stock.bias().cloned(), Conv1dConfig { padding: 0, ..*stock.config() });
        Ok(Self { stock, stock_valid, fast })
    }

    pub fn in_channels(&self) -> usize {
        self.stock.weight().dim(1).unwrap_or(0)
    }

    /// Kernel size, dilation and padding.
    pub fn geometry(&self) -> (usize, usize, usize) {
        let cfg = self.stock.config();
        (self.stock.weight().dim(2).unwrap_or(1), cfg.dilation, cfg.padding)
    }

    /// `act(x)` → conv → `+` each of `residuals` (at most two: the fast kernel folds them into
    /// its output's initial value, which is how an MRF sum costs no extra pass).
    pub fn forward(&self, x: &Tensor, act: PreAct, residuals: &[&Tensor]) -> candle_core::Result<Tensor> {
        self.forward_with(x, act, residuals, false)
    }

    /// As [`forward`](Self::forward) without padding: output length `t − d(k−1)`.
    pub fn forward_valid(&self, x: &Tensor, act: PreAct, residuals: &[&Tensor]) -> candle_core::Result<Tensor> {
        self.forward_with(x, act, residuals, true)
    }

    fn forward_with(&self, x: &Tensor, act: PreAct, residuals: &[&Tensor], valid: bool) -> candle_core::Result<Tensor> {
        if residuals.len() > 2 {
            bail!("conv1d layer takes at most two residuals")
        }
        if let Some(kernel) = self.fast.as_deref().filter(|_| use_fast(x)) {
            let x = x.contiguous()?;
            let op = FastConv1d { kernel, act, padding: if valid { 0 } else { kernel.padding } };
            return match residuals {
                [] => x.apply_op1_no_bwd(&op),
                [r] => x.apply_op2_no_bwd(&r.contiguous()?, &op),
                [r1, r2] => x.apply_op3_no_bwd(&r1.contiguous()?, &r2.contiguous()?, &op),
                _ => unreachable!(),
            };
        }
        let conv = if valid { &self.stock_valid } else { &self.stock };
        let mut y = conv.forward(&stock_act(x, act)?)?;
        for r in residuals {
            y = (y + *r)?;
        }
        Ok(y)
    }

    pub fn kernel(&self) -> Option<&Conv1dKernel> {
        self.fast.as_deref()
    }
}

pub struct ConvTranspose1dLayer {
    stock: ConvTranspose1d,
    /// The same weights without padding (streaming takes its own window of the full output).
    stock_full: ConvTranspose1d,
    fast: Option<Arc<ConvTranspose1dKernel>>,
}

struct FastConvTranspose1d<'a> {
    kernel: &'a ConvTranspose1dKernel,
    act: PreAct,
    padding: usize,
}

impl CustomOp1 for FastConvTranspose1d<'_> {
    fn name(&self) -> &'static str {
        "fast-conv-transpose1d"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l)?;
        let (b, c, t) = l.shape().dims3()?;
        if c != self.kernel.c_in {
            bail!("conv_transpose1d expects {} input channels, got {c}", self.kernel.c_in)
        }
        let t_out = self.kernel.out_len_padded(t, self.padding);
        if b == 1 {
            let y = self.kernel.forward_padded(x, t, self.padding, self.act);
            return Ok((CpuStorage::F32(y), Shape::from((b, self.kernel.c_out, t_out))));
        }
        let mut out = Vec::with_capacity(b * self.kernel.c_out * t_out);
        for i in 0..b {
            out.extend(self.kernel.forward_padded(&x[i * c * t..(i + 1) * c * t], t, self.padding, self.act));
        }
        Ok((CpuStorage::F32(out), Shape::from((b, self.kernel.c_out, t_out))))
    }
}

impl ConvTranspose1dLayer {
    pub fn new(stock: ConvTranspose1d, kernels: Kernels) -> candle_core::Result<Self> {
        let fast = if kernels == Kernels::Fast && stock.weight().device().is_cpu() {
            let (c_in, c_out, k) = stock.weight().dims3()?;
            let (w, b) = host_weights(stock.weight(), stock.bias(), c_out)?;
            let cfg = stock.config();
            if cfg.output_padding != 0 || cfg.dilation != 1 || cfg.groups != 1 {
                bail!("fast conv_transpose1d supports output_padding 0, dilation 1, groups 1")
            }
            Some(Arc::new(ConvTranspose1dKernel::new(&w, &b, c_in, c_out, k, cfg.stride, cfg.padding)))
        } else {
            None
        };
        let stock_full =
            ConvTranspose1d::new(stock.weight().clone(), stock.bias().cloned(), ConvTranspose1dConfig { padding: 0, ..*stock.config() });
        Ok(Self { stock, stock_full, fast })
    }

    pub fn in_channels(&self) -> usize {
        self.stock.weight().dim(0).unwrap_or(0)
    }

    /// Kernel size, stride and padding.
    pub fn geometry(&self) -> (usize, usize, usize) {
        let cfg = self.stock.config();
        (self.stock.weight().dim(2).unwrap_or(1), cfg.stride, cfg.padding)
    }

    /// `act(x)` → transposed conv.
    pub fn forward(&self, x: &Tensor, act: PreAct) -> candle_core::Result<Tensor> {
        self.forward_with(x, act, false)
    }

    /// As [`forward`](Self::forward) without padding: the full `(t − 1)·s + k` output.
    pub fn forward_full(&self, x: &Tensor, act: PreAct) -> candle_core::Result<Tensor> {
        self.forward_with(x, act, true)
    }

    fn forward_with(&self, x: &Tensor, act: PreAct, full: bool) -> candle_core::Result<Tensor> {
        if let Some(kernel) = self.fast.as_deref().filter(|_| use_fast(x)) {
            let padding = if full { 0 } else { kernel.padding };
            return x.contiguous()?.apply_op1_no_bwd(&FastConvTranspose1d { kernel, act, padding });
        }
        let conv = if full { &self.stock_full } else { &self.stock };
        conv.forward(&stock_act(x, act)?)
    }

    pub fn kernel(&self) -> Option<&ConvTranspose1dKernel> {
        self.fast.as_deref()
    }
}
