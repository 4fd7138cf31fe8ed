//! Shared test helpers.
#![allow(dead_code)]

use std::collections::HashMap;

use candle_core::Tensor;

/// Largest |a − b| (shapes must agree).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// The entries of a fixture under `prefix`, with the prefix removed (a module's weights).
pub fn under(all: &HashMap<String, Tensor>, prefix: &str) -> HashMap<String, Tensor> {
    all.iter().filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v.clone()))).collect()
}
