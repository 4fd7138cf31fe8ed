//! The strict weight store the models are built from: every tensor is taken by exact name and
//! shape, and a model is only constructed after the `CheckpointReport` came out clean, so there
//! is no path on which a parameter could silently keep a random initial value.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, ConvTranspose1d, ConvTranspose1dConfig};

use crate::error::VocoderError;
use crate::layers::{Conv1dLayer, ConvTranspose1dLayer, Kernels};

pub struct Weights {
    tensors: BTreeMap<String, Tensor>,
    kernels: Kernels,
}

impl Weights {
    pub fn new(tensors: BTreeMap<String, Tensor>) -> Self {
        Self { tensors, kernels: Kernels::default() }
    }

    /// Which CPU implementation the layers built from this store use.
    pub fn with_kernels(mut self, kernels: Kernels) -> Self {
        self.kernels = kernels;
        self
    }

    /// Builds the store from plain f32 data (used by tests and by the checkpoint loader).
    pub fn from_f32(data: &BTreeMap<String, (Vec<usize>, Vec<f32>)>, device: &Device) -> Result<Self, VocoderError> {
        let mut tensors = BTreeMap::new();
        for (k, (shape, values)) in data {
            tensors.insert(k.clone(), Tensor::from_slice(values, shape.as_slice(), device)?);
        }
        Ok(Self { tensors, kernels: Kernels::default() })
    }

    pub fn get(&self, key: &str, shape: &[usize]) -> Result<Tensor, VocoderError> {
        let t = self
            .tensors
            .get(key)
            .ok_or_else(|| VocoderError::BadTensor { key: key.into(), reason: "missing".into() })?;
        if t.dims() != shape {
            return Err(VocoderError::BadTensor {
                key: key.into(),
                reason: format!("shape {:?}, model needs {:?}", t.dims(), shape),
            });
        }
        Ok(t.clone())
    }

    pub fn conv1d(&self, name: &str, cin: usize, cout: usize, k: usize, dilation: usize, padding: usize) -> Result<Conv1dLayer, VocoderError> {
        let w = self.get(&format!("{name}.weight"), &[cout, cin, k])?;
        let b = self.get(&format!("{name}.bias"), &[cout])?;
        let stock = Conv1d::new(w, Some(b), Conv1dConfig { padding, stride: 1, dilation, groups: 1, cudnn_fwd_algo: None });
        Ok(Conv1dLayer::new(stock, self.kernels)?)
    }

    pub fn conv_transpose1d(&self, name: &str, cin: usize, cout: usize, k: usize, stride: usize) -> Result<ConvTranspose1dLayer, VocoderError> {
        self.conv_transpose1d_padded(name, cin, cout, k, stride, (k - stride) / 2)
    }

    /// As [`conv_transpose1d`](Self::conv_transpose1d) with the padding given (0: causal).
    pub fn conv_transpose1d_padded(
        &self,
        name: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        padding: usize,
    ) -> Result<ConvTranspose1dLayer, VocoderError> {
        let w = self.get(&format!("{name}.weight"), &[cin, cout, k])?;
        let b = self.get(&format!("{name}.bias"), &[cout])?;
        let stock = ConvTranspose1d::new(
            w,
            Some(b),
            ConvTranspose1dConfig { padding, output_padding: 0, stride, dilation: 1, groups: 1 },
        );
        Ok(ConvTranspose1dLayer::new(stock, self.kernels)?)
    }
}

/// leaky_relu as max(x, slope·x) (equal for 0 <= slope <= 1, and one pass instead of several).
pub fn leaky_relu(x: &Tensor, slope: f64) -> candle_core::Result<Tensor> {
    x.maximum(&(x * slope)?)
}
