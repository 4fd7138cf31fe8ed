//! Explicit streaming state for the generators (moshi-style): each conv keeps the input columns
//! its next outputs still need, so a stream of mel chunks is computed once, with no re-computed
//! context, and the output equals the whole-sequence forward.
//!
//! Conventions: every stream carries columns in order from absolute index 0. A layer emits an
//! output column as soon as all the input columns it depends on have arrived; the columns before
//! index 0 are the layer's zero padding (initial history of zeros), exactly as in the batch
//! forward. So each layer's emitted count is `max(0, rate · received − lag)`, and the whole
//! generator's is `max(0, hop · frames − lag)` with `lag` from [`Lag`]. Residual branches and MRF
//! sums line columns up through [`Fifo`]s.

use candle_core::{Result, Tensor};

use crate::kernels::PreAct;
use crate::layers::{Conv1dLayer, ConvTranspose1dLayer};

/// Columns waiting to be consumed (a residual input, or one MRF branch's output).
#[derive(Default)]
pub(crate) struct Fifo {
    data: Option<Tensor>,
}

impl Fifo {
    pub fn push(&mut self, t: &Tensor) -> Result<()> {
        if t.dim(2)? == 0 {
            return Ok(());
        }
        self.data = Some(match self.data.take() {
            None => t.clone(),
            Some(d) => Tensor::cat(&[&d, t], 2)?,
        });
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.data.as_ref().map(|d| d.dim(2).unwrap_or(0)).unwrap_or(0)
    }

    /// The first `m` columns (m ≤ len).
    pub fn take(&mut self, m: usize) -> Result<Tensor> {
        let d = self.data.take().expect("fifo holds the columns the lag arithmetic promised");
        let n = d.dim(2)?;
        let head = d.narrow(2, 0, m)?;
        if m < n {
            self.data = Some(d.narrow(2, m, n - m)?);
        }
        Ok(head)
    }
}

/// A conv1d's history: the last `d(k−1)` input columns (initially its left zero padding).
pub(crate) struct ConvHist {
    hist: Option<Tensor>,
    reach: usize,
}

impl ConvHist {
    pub fn new(layer: &Conv1dLayer, like: &Tensor) -> Result<Self> {
        let (k, d, p) = layer.geometry();
        let hist = if p > 0 { Some(Tensor::zeros((1, layer.in_channels(), p), like.dtype(), like.device())?) } else { None };
        Ok(Self { hist, reach: d * (k - 1) })
    }

    /// Right-side lag in output columns: the padding the batch forward adds on the right.
    pub fn lag(layer: &Conv1dLayer) -> usize {
        let (k, d, p) = layer.geometry();
        d * (k - 1) - p
    }

    /// Feeds `x` (pre-activation) and returns the newly computable outputs, each plus the same
    /// number of columns taken from every residual fifo.
    pub fn step(&mut self, layer: &Conv1dLayer, x: &Tensor, act: PreAct, residuals: &mut [&mut Fifo]) -> Result<Option<Tensor>> {
        let buf = match self.hist.take() {
            None => x.clone(),
            Some(h) => Tensor::cat(&[&h, x], 2)?,
        };
        let len = buf.dim(2)?;
        if len <= self.reach {
            self.hist = (len > 0).then_some(buf);
            return Ok(None);
        }
        let m = len - self.reach;
        let res = residuals.iter_mut().map(|f| f.take(m)).collect::<Result<Vec<_>>>()?;
        let refs: Vec<&Tensor> = res.iter().collect();
        let out = layer.forward_valid(&buf, act, &refs)?;
        self.hist = if self.reach > 0 { Some(buf.narrow(2, m, self.reach)?) } else { None };
        Ok(Some(out))
    }
}

/// A transposed conv's history: the last ⌊(k−1)/s⌋ input columns; `t_a` is the absolute index
/// of the first one and `next_u` the next output to emit, in unpadded output coordinates.
pub(crate) struct TransHist {
    hist: Tensor,
    t_a: i64,
    next_u: i64,
    k: i64,
    s: i64,
}

impl TransHist {
    pub fn new(layer: &ConvTranspose1dLayer, like: &Tensor) -> Result<Self> {
        let (k, s, p) = layer.geometry();
        assert!(k >= s, "transposed conv kernel shorter than its stride");
        let h = k.div_ceil(s);
        let hist = Tensor::zeros((1, layer.in_channels(), h), like.dtype(), like.device())?;
        Ok(Self { hist, t_a: -(h as i64), next_u: p as i64, k: k as i64, s: s as i64 })
    }

    /// Output columns received inputs owe: outputs = s · inputs − lag.
    pub fn lag(layer: &ConvTranspose1dLayer) -> usize {
        layer.geometry().2
    }

    pub fn step(&mut self, layer: &ConvTranspose1dLayer, x: &Tensor, act: PreAct) -> Result<Option<Tensor>> {
        let buf = Tensor::cat(&[&self.hist, x], 2)?;
        let t = buf.dim(2)? as i64;
        let hi = (self.t_a + t) * self.s;
        let out = if hi > self.next_u {
            let full = layer.forward_full(&buf, act)?;
            let from = (self.next_u - self.t_a * self.s) as usize;
            let o = full.narrow(2, from, (hi - self.next_u) as usize)?;
            self.next_u = hi;
            Some(o)
        } else {
            None
        };
        let keep = ((self.k - 1) / self.s).min(t);
        self.hist = buf.narrow(2, (t - keep) as usize, keep as usize)?;
        self.t_a += t - keep;
        Ok(out)
    }
}

/// Sums the fifos' common columns (None while any branch has produced nothing new).
pub(crate) fn take_sum(fifos: &mut [Fifo]) -> Result<Option<Tensor>> {
    let m = fifos.iter().map(Fifo::len).min().unwrap_or(0);
    if m == 0 {
        return Ok(None);
    }
    let mut acc: Option<Tensor> = None;
    for f in fifos.iter_mut() {
        let c = f.take(m)?;
        acc = Some(match acc {
            None => c,
            Some(a) => (a + c)?,
        });
    }
    Ok(acc)
}

/// Lag arithmetic: the whole generator's emitted count is `rate · frames − samples`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lag {
    pub samples: usize,
}
