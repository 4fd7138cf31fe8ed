//! One mode slot's streaming pipeline, with its state explicit: host-rate input →
//! [`RateConverter`] → mel frames → the vocoder's explicit streaming state, a chunk at a time → [`RateConverter`]
//! back → host-rate wet samples, index-aligned with the input (sample `i` of the output belongs to
//! input sample `i`). A slot without a model passes its input through (the delayed dry signal once
//! the engine applies its latency).

use std::collections::VecDeque;
use std::sync::Arc;

use audioadapter_buffers::direct::InterleavedSlice;
use candle_core::Tensor;
use rubato::{Fft, FixedSync, Resampler};
use vocoder::mel::{MelFrontEnd, MelScratch};
use vocoder::model::VocoderStream;
use vocoder::{Vocoder, VocoderError};


/// Streaming sample-rate conversion with a known, trimmed delay: output sample `k` corresponds
/// to input sample `k / ratio` (the converter's own delay removed). Identity when rates match.
pub struct RateConverter {
    fft: Option<Fft<f32>>,
    pending: Vec<f32>,
    scratch: Vec<f32>,
    to_trim: usize,
    pub chunk_in: usize,
    /// Average frames out per call.
    pub chunk_out: usize,
    pub delay: usize,
    cum_out: std::sync::Arc<Vec<u64>>,
}

/// The cumulative output of a converter's first calls from `from` to `to` Hz (for latency
/// planning). Deterministic in the pair, and costly at high or odd rates (5 s of input through a
/// twin converter: ≈ 0.1–0.3 s at 768 kHz), so computed once per process and pair: hosts
/// re-activate often, each activation plans and builds several converters.
fn output_table(from: u32, to: u32, chunk_in: usize, max_out: usize) -> std::sync::Arc<Vec<u64>> {
    type Memo = parking_lot::Mutex<std::collections::HashMap<(u32, u32), std::sync::Arc<Vec<u64>>>>;
    static MEMO: std::sync::OnceLock<Memo> = std::sync::OnceLock::new();
    let memo = MEMO.get_or_init(Default::default);
    if let Some(t) = memo.lock().get(&(from, to)) {
        return t.clone();
    }
    let mut twin = Fft::<f32>::new(from as usize, to as usize, 256, 1, FixedSync::Input).expect("valid rates");
    let zeros = vec![0f32; chunk_in];
    let mut sink = vec![0f32; max_out];
    let mut cum_out = vec![0u64];
    for _ in 0..(from as usize * 5).div_ceil(chunk_in) {
        let input = InterleavedSlice::new(&zeros[..], 1, chunk_in).expect("sizes");
        let mut output = InterleavedSlice::new_mut(&mut sink[..], 1, max_out).expect("sizes");
        let (_, n) = twin.process_into_buffer(&input, &mut output, None).expect("fixed chunk sizes");
        cum_out.push(cum_out.last().unwrap() + n as u64);
    }
    let table = std::sync::Arc::new(cum_out);
    memo.lock().insert((from, to), table.clone());
    table
}

impl RateConverter {
    pub fn new(from: u32, to: u32) -> Self {
        if from == to {
            return Self {
                fft: None,
                pending: Vec::new(),
                scratch: Vec::new(),
                to_trim: 0,
                chunk_in: 1,
                chunk_out: 1,
                delay: 0,
                cum_out: Default::default(),
            };
        }
        let fft = Fft::<f32>::new(from as usize, to as usize, 256, 1, FixedSync::Input).expect("valid rates");
        let chunk_in = fft.input_frames_next();
        let delay = fft.output_delay();
        let max_out = fft.output_frames_max();
        // The frames each call yields vary (the ratio need not divide the chunk): the table of the
        // first calls' cumulative output, for latency planning.
        let cum_out = output_table(from, to, chunk_in, max_out);
        let chunk_out = (cum_out.last().unwrap() / (cum_out.len() as u64 - 1)) as usize;
        Self {
            cum_out,
            fft: Some(fft),
            pending: Vec::with_capacity(chunk_in * 2),
            scratch: vec![0.0; max_out],
            to_trim: delay,
            chunk_in,
            chunk_out,
            delay,
        }
    }

    /// Converts `x`, appending the available output to `out`.
    pub fn push(&mut self, x: &[f32], out: &mut Vec<f32>) {
        let Some(fft) = &mut self.fft else {
            out.extend_from_slice(x);
            return;
        };
        self.pending.extend_from_slice(x);
        let mut start = 0;
        while self.pending.len() - start >= self.chunk_in {
            let input = InterleavedSlice::new(&self.pending[start..start + self.chunk_in], 1, self.chunk_in).expect("sizes");
            let cap = self.scratch.len();
            let mut output = InterleavedSlice::new_mut(&mut self.scratch, 1, cap).expect("sizes");
            let (_, n) = fft.process_into_buffer(&input, &mut output, None).expect("fixed chunk sizes");
            let trim = self.to_trim.min(n);
            self.to_trim -= trim;
            out.extend_from_slice(&self.scratch[trim..n]);
            start += self.chunk_in;
        }
        self.pending.drain(..start);
    }

    /// Output samples available after `n` input samples (for latency planning).
    pub fn available(&self, n: u64) -> u64 {
        if self.fft.is_none() {
            return n;
        }
        let calls = (n / self.chunk_in as u64) as usize;
        let out = match self.cum_out.get(calls) {
            Some(v) => *v,
            // Beyond the table: extrapolate with the average (planning only looks at 4 s).
            None => *self.cum_out.last().unwrap() + (calls + 1 - self.cum_out.len()) as u64 * self.chunk_out as u64,
        };
        out.saturating_sub(self.delay as u64)
    }
}

/// Converts a whole signal (delay trimmed, tail flushed) — for tests and offline tools.
pub fn resample_whole(x: &[f32], from: u32, to: u32) -> Vec<f32> {
    let mut c = RateConverter::new(from, to);
    let mut out = Vec::new();
    c.push(x, &mut out);
    // Flush the converter's delay and partial chunk with silence, then cut to the exact length.
    let want = (x.len() as u64 * to as u64 / from as u64) as usize;
    let pad = vec![0.0; c.chunk_in * 2 + c.delay * 2 * from as usize / to as usize + 16];
    while out.len() < want {
        c.push(&pad, &mut out);
    }
    out.truncate(want);
    out
}

/// Streaming vocoder state at the model's rate: mel frames are computed as their samples arrive
/// and handed to the model's explicit streaming state ([`vocoder::model::VocoderStream`]) a chunk
/// at a time, so each chunk costs only its own frames (no re-computed context) and the output
/// equals the whole-file forward.
pub struct ModelStream {
    vocoder: Arc<Vocoder>,
    state: VocoderStream,
    front: MelFrontEnd,
    scratch: MelScratch,
    num_mels: usize,
    hop: usize,
    pad: usize,
    /// Chunk size in frames (the `Latency` parameter's processing block).
    pub chunk: usize,
    /// Samples the model still owes for the frames it has received (its own lookahead).
    pub lag: usize,
    /// Model-rate input; `input[0]` is absolute sample `input_base`.
    input: Vec<f32>,
    input_base: usize,
    /// Mel frames not yet given to the model (each `num_mels`, frame-major).
    frames: Vec<f32>,
    frames_done: usize,
    segment: Vec<f32>,
    column: Vec<f32>,
    mel_block: Vec<f32>,
}

impl ModelStream {
    pub fn new(vocoder: Arc<Vocoder>, chunk_frames: usize) -> Self {
        let cfg = vocoder.config().clone();
        let front = MelFrontEnd::new(&cfg);
        let scratch = front.scratch();
        // A fresh state is a few small zero tensors on the model's device, where the model's
        // weights already live: it cannot fail where loading succeeded.
        let state = vocoder.stream().expect("zero-initialised streaming state on the model's device");
        Self {
            num_mels: cfg.num_mels,
            hop: cfg.hop_size,
            pad: front.pad(),
            segment: vec![0.0; cfg.n_fft],
            column: vec![0.0; cfg.num_mels],
            front,
            scratch,
            chunk: chunk_frames.max(1),
            lag: vocoder.stream_lag(),
            state,
            vocoder,
            input: Vec::new(),
            input_base: 0,
            frames: Vec::new(),
            frames_done: 0,
            mel_block: Vec::new(),
        }
    }

    /// Model-rate samples of output available after `m` input samples (for latency planning).
    pub fn available(&self, m: u64) -> u64 {
        let (hop, pad, n_fft) = (self.hop as u64, self.pad as u64, self.segment.len() as u64);
        if m + pad < n_fft {
            return 0;
        }
        let frames = (m + pad - n_fft) / hop + 1;
        let fed = frames / self.chunk as u64 * self.chunk as u64;
        (fed * hop).saturating_sub(self.lag as u64)
    }

    fn sample(&self, abs: isize) -> f32 {
        // Reflect padding at the stream start, as the reference pads the whole signal.
        let idx = if abs < 0 { (-abs) as usize } else { abs as usize };
        self.input[idx - self.input_base]
    }

    /// Adds model-rate input and appends the audio that became computable to `out`.
    pub fn push(&mut self, x: &[f32], out: &mut Vec<f32>) -> Result<(), VocoderError> {
        self.input.extend_from_slice(x);
        let available = self.input_base + self.input.len();
        // Frames whose last sample has arrived.
        loop {
            let f = self.frames_done;
            let start = f as isize * self.hop as isize - self.pad as isize;
            let end = start + self.segment.len() as isize;
            if end > available as isize {
                break;
            }
            for i in 0..self.segment.len() {
                self.segment[i] = self.sample(start + i as isize);
            }
            self.front.frame_into(&self.segment, &mut self.scratch, &mut self.column);
            self.frames.extend_from_slice(&self.column);
            self.frames_done += 1;
        }
        // Whole chunks go to the model.
        let m = self.num_mels;
        while self.frames.len() >= self.chunk * m {
            let t = self.chunk;
            self.mel_block.clear();
            self.mel_block.resize(m * t, 0.0);
            for j in 0..t {
                for (b, v) in self.frames[j * m..(j + 1) * m].iter().enumerate() {
                    self.mel_block[b * t + j] = *v;
                }
            }
            self.frames.drain(..t * m);
            let mel = Tensor::from_slice(&self.mel_block, (1, m, t), self.vocoder.device())?;
            self.vocoder.stream_step(&mut self.state, &mel, out)?;
        }
        // The next frame starts at frames_done*hop - pad (reflected samples 1..=pad while that
        // is negative, so nothing is dropped until then).
        let next_start = self.frames_done * self.hop;
        if next_start > self.pad {
            let keep_sample = next_start - self.pad;
            if keep_sample > self.input_base {
                self.input.drain(..keep_sample - self.input_base);
                self.input_base = keep_sample;
            }
        }
        Ok(())
    }
}

/// A slot: host-rate in, host-rate wet out, index-aligned. `None` model: passthrough.
pub struct SlotStream {
    to_model: RateConverter,
    model: Option<ModelStream>,
    to_host: RateConverter,
    model_buf: Vec<f32>,
    audio_buf: Vec<f32>,
    /// Host-rate wet samples ready, in order; the first is absolute index `ready_base`.
    pub ready: VecDeque<f32>,
    pub ready_base: u64,
}

impl SlotStream {
    pub fn new(host_rate: u32, vocoder: Option<(Arc<Vocoder>, usize)>) -> Self {
        match vocoder {
            None => Self {
                to_model: RateConverter::new(host_rate, host_rate),
                model: None,
                to_host: RateConverter::new(host_rate, host_rate),
                model_buf: Vec::new(),
                audio_buf: Vec::new(),
                ready: VecDeque::new(),
                ready_base: 0,
            },
            Some((v, chunk_frames)) => {
                let model_rate = v.config().sampling_rate;
                Self {
                    to_model: RateConverter::new(host_rate, model_rate),
                    model: Some(ModelStream::new(v, chunk_frames)),
                    to_host: RateConverter::new(model_rate, host_rate),
                    model_buf: Vec::new(),
                    audio_buf: Vec::new(),
                    ready: VecDeque::new(),
                    ready_base: 0,
                }
            }
        }
    }

    pub fn push(&mut self, x: &[f32]) -> Result<(), VocoderError> {
        match &mut self.model {
            None => self.ready.extend(x.iter().copied()),
            Some(m) => {
                self.model_buf.clear();
                self.to_model.push(x, &mut self.model_buf);
                self.audio_buf.clear();
                m.push(&self.model_buf, &mut self.audio_buf)?;
                self.model_buf.clear();
                self.to_host.push(&self.audio_buf, &mut self.model_buf);
                self.ready.extend(self.model_buf.iter().copied());
            }
        }
        Ok(())
    }

    pub fn is_passthrough(&self) -> bool {
        self.model.is_none()
    }

    /// Absolute index one past the last ready sample.
    pub fn ready_end(&self) -> u64 {
        self.ready_base + self.ready.len() as u64
    }

    pub fn pop(&mut self) -> Option<f32> {
        let v = self.ready.pop_front()?;
        self.ready_base += 1;
        Some(v)
    }

    /// Host-rate wet samples available after `n` host input samples (for latency planning).
    pub fn available(&self, n: u64) -> u64 {
        match &self.model {
            None => n,
            Some(m) => self.to_host.available(m.available(self.to_model.available(n))),
        }
    }

    /// The largest shortfall between input pushed and output ready: the data latency in host
    /// samples (found by running the availability arithmetic over a long stretch of input).
    pub fn data_latency(&self, host_rate: u32) -> u64 {
        if self.model.is_none() {
            return 0;
        }
        let mut worst = 0;
        for n in 0..(host_rate as u64 * 4) {
            worst = worst.max(n - self.available(n).min(n));
        }
        worst
    }

    /// The period, in host samples, of the pipeline's analysis grid: the rate converter's phase
    /// and the model's mel frames repeat every `period` input samples, so a stream started at a
    /// multiple of it is a time-shifted copy of one started at 0 (once past its onset).
    pub fn grid_period(&self, host_rate: u32) -> u64 {
        let Some(m) = &self.model else { return 1 };
        fn gcd(a: u64, b: u64) -> u64 {
            if b == 0 { a } else { gcd(b, a % b) }
        }
        let model_rate = m.vocoder.config().sampling_rate as u64;
        let g = gcd(host_rate as u64, model_rate);
        let (p, q) = (host_rate as u64 / g, model_rate / g);
        let hop = m.hop as u64;
        p * (hop / gcd(q, hop))
    }

    /// Chunk length in host samples (for the safety margin).
    pub fn chunk_host_samples(&self, host_rate: u32) -> u64 {
        match &self.model {
            None => 0,
            Some(m) => {
                let model_rate = m.vocoder.config().sampling_rate as f64;
                ((m.chunk * m.hop) as f64 * host_rate as f64 / model_rate).ceil() as u64
            }
        }
    }
}
