//! Model hot-swap: a slot's model replaced while audio runs, without a restart or a gap.
//!
//! The window (or any non-audio thread) sends a [`SlotSwap`] through a [`SlotSwapper`]; the
//! worker picks it up between chunks. The incoming model starts streaming at the worker's input
//! position `P`, alongside the outgoing one; its output is only used once it has seen
//! [`SWAP_WARMUP_MS`] of real input (a model fed from silence has an onset transient for a
//! receptive field), and then the slot crossfades from the old model to the new one over
//! [`crate::MODE_FADE_MS`] (equal power). Both run for that short stretch only. The index
//! contract (wet sample `i` for input sample `i`) holds throughout, so the audio thread notices
//! nothing. A new model that needs more latency than the activation planned arrives late
//! (the engine plays the delayed dry signal where wet is missing, counted as underruns) until
//! the host re-activates with the new plan, which the plugin requests.

use std::sync::Arc;
use std::sync::mpsc;

use vocoder::Vocoder;

use crate::stream::SlotStream;

/// How much real input the incoming model sees before its output is used.
pub const SWAP_WARMUP_MS: f32 = 300.0;

/// A request to replace the model of one mode slot (`None`: the slot becomes passthrough).
pub struct SlotSwap {
    pub slot: usize,
    pub vocoder: Option<Arc<Vocoder>>,
}

/// The sending side of the hot-swap channel. Cheap to clone; never used on the audio thread.
#[derive(Clone)]
pub struct SlotSwapper {
    tx: mpsc::Sender<SlotSwap>,
}

impl SlotSwapper {
    pub(crate) fn channel() -> (Self, mpsc::Receiver<SlotSwap>) {
        let (tx, rx) = mpsc::channel();
        (Self { tx }, rx)
    }

    /// Queues the swap; false when the engine is gone (the next activation loads the new model
    /// from the plugin's state anyway).
    pub fn swap(&self, slot: usize, vocoder: Option<Arc<Vocoder>>) -> bool {
        self.tx.send(SlotSwap { slot, vocoder }).is_ok()
    }
}

/// The incoming side of a swap in progress.
struct Incoming {
    stream: SlotStream,
    /// Input index of the incoming stream's first sample.
    start: u64,
    /// First index where the new model is heard (its output before this is discarded).
    fade_start: u64,
    fade_len: u64,
}

/// One mode slot as the worker drives it: the current stream and, during a swap, the incoming one.
pub struct SlotPipe {
    pub current: SlotStream,
    incoming: Option<Incoming>,
    /// Gain of the passthrough (no-model) output of this slot (host tests use -1 for slot 1).
    passthrough_gain: f32,
}

impl SlotPipe {
    pub fn new(stream: SlotStream, passthrough_gain: f32) -> Self {
        Self { current: stream, incoming: None, passthrough_gain }
    }

    /// Starts a swap at or after input position `next_input` (the next input sample the worker
    /// will push). The incoming stream starts on its analysis grid (see
    /// [`SlotStream::grid_period`]) when that comes within a second, so that after the warm-up it
    /// is sample for sample the stream an activation with the new model would have produced;
    /// otherwise at once (the same model on a shifted frame grid, which is inaudible). `stream`
    /// must be fresh. A swap during a swap replaces the incoming stream (the latest request wins).
    pub fn begin_swap(&mut self, mut stream: SlotStream, next_input: u64, host_rate: u32, fade_len: u64) {
        let period = stream.grid_period(host_rate);
        let start = if period <= host_rate as u64 { next_input.div_ceil(period) * period } else { next_input };
        stream.start_at(start);
        if !self.current.is_active() {
            // Not heard now: the incoming model only keeps its input side running, and takes the
            // slot's place as soon as it starts (see `push`).
            stream.set_idle();
        }
        let warm = (SWAP_WARMUP_MS / 1000.0 * host_rate as f32) as u64;
        self.incoming = Some(Incoming { stream, start, fade_start: start + warm, fade_len: fade_len.max(1) });
    }

    pub fn swapping(&self) -> bool {
        self.incoming.is_some()
    }

    /// Whether the slot computes its output (see [`SlotStream::set_idle`]).
    pub fn is_active(&self) -> bool {
        self.current.is_active()
    }

    /// Stops computing the model(s) of a slot that is not heard.
    pub fn set_idle(&mut self) {
        self.current.set_idle();
        if let Some(inc) = &mut self.incoming {
            inc.stream.set_idle();
        }
    }

    /// Brings an idle slot back so that its value from input index `from` on is exactly what it
    /// would have been had it run all along (see [`SlotStream::spin_up`]); a swap in progress
    /// spins its incoming model up too.
    pub fn spin_up(&mut self, from: u64) -> Result<crate::stream::SpinUp, vocoder::VocoderError> {
        let done = self.current.spin_up(from)?;
        if let Some(inc) = &mut self.incoming {
            inc.stream.spin_up(from.max(inc.start))?;
        }
        Ok(done)
    }

    /// Pushes input samples `first_index..first_index + x.len()`.
    pub fn push(&mut self, x: &[f32], first_index: u64) -> Result<(), vocoder::VocoderError> {
        self.current.push(x)?;
        if let Some(inc) = &mut self.incoming {
            let skip = inc.start.saturating_sub(first_index) as usize;
            if skip < x.len() {
                inc.stream.push(&x[skip..])?;
                if !self.current.is_active() {
                    // An idle slot has nothing to fade from: the new model is the slot now.
                    let inc = self.incoming.take().expect("incoming");
                    self.current = inc.stream;
                }
            }
        }
        Ok(())
    }

    /// One past the last index whose slot value can be produced now.
    pub fn ready_end(&self) -> u64 {
        match &self.incoming {
            None => self.current.ready_end(),
            // Before the fade only the current stream is needed.
            Some(inc) => self.current.ready_end().min(inc.stream.ready_end().max(inc.fade_start)),
        }
    }

    fn value_of(stream: &mut SlotStream, index: u64, passthrough_gain: f32) -> f32 {
        if !stream.is_active() {
            return 0.0;
        }
        while stream.ready_base < index && stream.pop().is_some() {}
        let g = if stream.is_passthrough() { passthrough_gain } else { 1.0 };
        if stream.ready_base == index { stream.pop().unwrap_or(0.0) * g } else { 0.0 }
    }

    /// The slot's value at `index` (called once per index, in order, below `ready_end`).
    pub fn pop(&mut self, index: u64) -> f32 {
        let old = Self::value_of(&mut self.current, index, self.passthrough_gain);
        let Some(inc) = &mut self.incoming else { return old };
        if index < inc.fade_start {
            return old;
        }
        let new = Self::value_of(&mut inc.stream, index, self.passthrough_gain);
        let t = (index - inc.fade_start) as f32 / inc.fade_len as f32;
        if t >= 1.0 {
            // The fade is over: the incoming stream becomes the slot.
            let inc = self.incoming.take().expect("incoming");
            self.current = inc.stream;
            return new;
        }
        let (g_old, g_new) = ((t * std::f32::consts::FRAC_PI_2).cos(), (t * std::f32::consts::FRAC_PI_2).sin());
        g_old * old + g_new * new
    }
}
