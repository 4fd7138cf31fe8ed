//! The CTC heads (ASR: source-language pieces; ST: target-language pieces; fairseq's
//! `CTCDecoder`: one Linear from the encoder width to the vocabulary) and StreamSpeech's greedy
//! CTC decoding (agent/ctc_decoder.py): pad and unk never chosen, arg-max per frame, consecutive
//! repeats merged, blank (0) and pad dropped. The frame index of each kept token is kept too (the
//! simultaneous policy uses it).

use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::linear::Linear;

pub struct CtcHead {
    proj: Linear,
}

impl CtcHead {
    /// Weights `proj.weight` / `proj.bias` under `vb`.
    pub fn new(in_dim: usize, vocab: usize, vb: VarBuilder) -> Result<Self> {
        Ok(CtcHead { proj: crate::linear::linear(in_dim, vocab, true, vb.pp("proj"))? })
    }

    /// Encoder states `[1, t, in_dim]` → logits `[1, t, vocab]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.proj.forward(x)
    }
}

/// A greedy CTC hypothesis: the tokens, and the frame each was emitted at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtcHypothesis {
    pub tokens: Vec<u32>,
    pub frames: Vec<usize>,
}

/// Greedy decoding of logits `[t, vocab]` (log-softmax does not change the arg-max, so it is
/// skipped). `pad` and `unk` are masked. `blank`: 0 for the text heads (the agent drops id 0),
/// the unit dictionary's blank for units.
pub fn greedy(logits: &Tensor, pad: u32, unk: u32, blank: u32) -> Result<CtcHypothesis> {
    Ok(collapse(&best_ids(logits, pad, unk)?, pad, blank))
}

/// The arg-max per frame of logits `[t, vocab]`, `pad` and `unk` masked (ties: the lowest id).
pub fn best_ids(logits: &Tensor, pad: u32, unk: u32) -> Result<Vec<u32>> {
    let (_, vocab) = logits.dims2()?;
    let mut mask = vec![0f32; vocab];
    for id in [pad, unk] {
        if let Some(m) = mask.get_mut(id as usize) {
            *m = f32::NEG_INFINITY;
        }
    }
    let mask = Tensor::from_vec(mask, (1, vocab), logits.device())?;
    logits.to_dtype(DType::F32)?.broadcast_add(&mask)?.argmax(D::Minus1)?.to_dtype(DType::U32)?.to_vec1()
}

/// Greedy CTC's collapse of per-frame arg-maxes: repeats merged, `blank` and `pad` dropped.
pub fn collapse(best: &[u32], pad: u32, blank: u32) -> CtcHypothesis {
    let mut hyp = CtcHypothesis { tokens: Vec::new(), frames: Vec::new() };
    for (i, &v) in best.iter().enumerate() {
        if i > 0 && best[i - 1] == v {
            continue;
        }
        if v != blank && v != pad {
            hyp.tokens.push(v);
            hyp.frames.push(i);
        }
    }
    hyp
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn logits(best: &[usize], vocab: usize) -> Tensor {
        let mut v = vec![0f32; best.len() * vocab];
        for (t, &b) in best.iter().enumerate() {
            v[t * vocab + b] = 5.0;
            v[t * vocab + 3] = 4.0; // unk is always the runner-up
        }
        Tensor::from_vec(v, (best.len(), vocab), &Device::Cpu).unwrap()
    }

    #[test]
    fn repeats_merge_blanks_split_pad_and_unk_are_never_chosen() {
        // Frames: a a blank a b b pad(→ masked: unk masked too, so the next best, 0 = blank...).
        let h = greedy(&logits(&[5, 5, 0, 5, 6, 6, 1, 7], 10), 1, 3, 0).unwrap();
        // Frame 6 picks pad (1) first; masked, and unk (3) masked, the rest are 0 → blank (id 0
        // wins the tie as the first maximum).
        assert_eq!(h.tokens, vec![5, 5, 6, 7]);
        assert_eq!(h.frames, vec![0, 3, 4, 7]);
        // With another blank, id 0 is a token like any other.
        let h = greedy(&logits(&[5, 0, 0, 9, 5], 10), 1, 3, 9).unwrap();
        assert_eq!(h.tokens, vec![5, 0, 5]);
    }
}
