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
    /// The converter's processing block in input samples: it transforms consecutive blocks of
    /// this size from its first sample, and its state after a block depends on that block
    /// alone. A fresh converter started at a multiple of it is therefore a time-shifted copy of
    /// one that ran from 0, from its second block on (1 when the rates match).
    pub block_in: usize,
    cum_out: std::sync::Arc<Vec<u64>>,
}

/// The cumulative output of a converter's first calls from `from` to `to` Hz (for latency
/// planning). Deterministic in the pair, and costly at high or odd rates (5 s of input through a
/// twin converter: ≈ 0.1–0.3 s at 768 kHz), so computed once per process and pair: hosts
/// re-activate often, each activation plans and builds several converters.
fn output_table(from: u32, to: u32, target: usize, chunk_in: usize, max_out: usize) -> std::sync::Arc<Vec<u64>> {
    type Memo = parking_lot::Mutex<std::collections::HashMap<(u32, u32, usize), std::sync::Arc<Vec<u64>>>>;
    static MEMO: std::sync::OnceLock<Memo> = std::sync::OnceLock::new();
    let memo = MEMO.get_or_init(Default::default);
    if let Some(t) = memo.lock().get(&(from, to, target)) {
        return t.clone();
    }
    let mut twin = fft_converter(from, to, target);
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
    memo.lock().insert((from, to, target), table.clone());
    table
}

/// rubato's synchronous FFT converter for `from` → `to`, fed exactly one FFT block per call.
/// The block is what rubato picks for a `target`-frame chunk (the smallest multiple of the
/// rates' minimum block reaching `target` input frames: its filter length, so its quality and
/// its delay of half a block). Taking the block whole (`FixedSync::Both`) rather than in
/// `target`-frame chunks gives the same output values, each available as soon as its block has
/// arrived instead of after the next chunk (48 → 22.05 kHz: 4 ms less latency).
fn fft_converter(from: u32, to: u32, target: usize) -> Fft<f32> {
    let min_block = (from / gcd(from as u64, to as u64) as u32) as usize;
    let block = target.div_ceil(min_block).max(1) * min_block;
    Fft::<f32>::new(from as usize, to as usize, block, 1, FixedSync::Both).expect("valid rates")
}

/// The FFT block [`RateConverter::new`] aims at, in input frames (rubato's default target):
/// 48 → 22.05 kHz 320 frames, 22.05 → 48 kHz 294 (cutoff 0.954 of the input's Nyquist).
pub const DEFAULT_BLOCK_TARGET: usize = 256;

/// The block a one-hop chunk's conversion back aims at (see [`SlotStream::new`]): 22.05 → 48 kHz
/// 147 frames, cutoff 0.908 of the input's Nyquist (10.0 kHz instead of 10.5).
pub const ONE_HOP_BLOCK_TARGET: usize = 128;

impl RateConverter {
    pub fn new(from: u32, to: u32) -> Self {
        Self::with_block_target(from, to, DEFAULT_BLOCK_TARGET)
    }

    /// A converter whose FFT block is the smallest the rates allow at or above `target` input
    /// frames: a smaller block has half of it less delay and a lower cutoff.
    pub fn with_block_target(from: u32, to: u32, target: usize) -> Self {
        if from == to {
            return Self {
                fft: None,
                pending: Vec::new(),
                scratch: Vec::new(),
                to_trim: 0,
                chunk_in: 1,
                chunk_out: 1,
                delay: 0,
                block_in: 1,
                cum_out: Default::default(),
            };
        }
        let fft = fft_converter(from, to, target);
        let chunk_in = fft.input_frames_next();
        let delay = fft.output_delay();
        let block_in = fft.fft_size_in();
        let max_out = fft.output_frames_max();
        // The frames each call yields vary (the ratio need not divide the chunk): the table of the
        // first calls' cumulative output, for latency planning.
        let cum_out = output_table(from, to, target, chunk_in, max_out);
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
            block_in,
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

/// Streaming vocoder state at the model's rate, in two halves. The *front* (mel frames, computed
/// as their samples arrive) always runs: it is cheap, and it keeps the recent frames. The *back*
/// (the model's explicit streaming state, [`vocoder::model::VocoderStream`], fed a chunk at a
/// time) runs only while the slot may be heard: an idle back is dropped, and [`Self::spin_up`]
/// rebuilds it from the kept frames. Each chunk costs only its own frames (no re-computed
/// context), and the output equals the whole-file forward.
pub struct ModelStream {
    vocoder: Arc<Vocoder>,
    /// The back; `None` while idle.
    state: Option<VocoderStream>,
    front: MelFrontEnd,
    scratch: MelScratch,
    num_mels: usize,
    hop: usize,
    pad: usize,
    /// Chunk size in frames (the `Latency` parameter's processing block).
    pub chunk: usize,
    /// Samples the model still owes for the frames it has received (its own lookahead).
    pub lag: usize,
    /// How far back, in model samples, an output sample's value reaches into the model's input
    /// (frames are centred on their hop, convolutions on their column).
    pub reach_back: usize,
    /// Model-rate input; `input[0]` is absolute sample `input_base`.
    input: Vec<f32>,
    input_base: usize,
    /// Kept mel frames (each `num_mels`, frame-major); `frames[0]` is absolute frame `frames_base`.
    frames: Vec<f32>,
    frames_base: usize,
    /// Frames computed so far (absolute index of the next frame).
    frames_done: usize,
    /// Absolute index of the next frame the back takes.
    frames_fed: usize,
    /// Frames kept behind `frames_done` for a spin-up, beyond what the back still needs.
    keep_frames: usize,
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
        let chunk = chunk_frames.max(1);
        let lag = vocoder.stream_lag();
        // The centred generators (convolutions and transposed convolutions spanning a few hops)
        // make an output sample depend on about as much past as future. Measured on every
        // family (tiny V1/V3/GRC, universal V1, the distilled student): a stream restarted from
        // frame F equals, bit for bit, the one that ran from F·hop + lag on (within 20 samples
        // less). A causal generator reaches back its whole receptive field instead (see
        // `Vocoder::stream_reach_back`). Two hops over that; the spin-up tests check exactness.
        let reach_back = vocoder.stream_reach_back() + 2 * cfg.hop_size;
        let keep_frames = (reach_back + cfg.n_fft).div_ceil(cfg.hop_size) + 2 * chunk + SPIN_UP_SLACK_FRAMES;
        Self {
            num_mels: cfg.num_mels,
            hop: cfg.hop_size,
            pad: front.pad(),
            segment: vec![0.0; cfg.n_fft],
            column: vec![0.0; cfg.num_mels],
            front,
            scratch,
            chunk,
            lag,
            reach_back,
            state: Some(state),
            vocoder,
            input: Vec::new(),
            input_base: 0,
            frames: Vec::new(),
            frames_base: 0,
            frames_done: 0,
            frames_fed: 0,
            keep_frames,
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

    pub fn hop(&self) -> usize {
        self.hop
    }

    /// Whether the back runs (the slot may be heard).
    pub fn is_active(&self) -> bool {
        self.state.is_some()
    }

    /// Drops the back; the front keeps computing and keeping frames.
    pub fn set_idle(&mut self) {
        self.state = None;
    }

    /// The oldest kept frame (a spin-up cannot start before it).
    pub fn oldest_frame(&self) -> usize {
        self.frames_base
    }

    /// Rebuilds the back from frame `from` (a multiple of the chunk, at or after
    /// [`Self::oldest_frame`]) and appends its output to `out`: output sample `j` is model sample
    /// `from · hop + j`. Once past the model's reach this is, sample for sample, what a back that
    /// ran from frame 0 emits: the frames are the same, and they reach the model in the same
    /// chunks (the chunk grid is kept from frame 0), so every column is computed alike.
    pub fn spin_up(&mut self, from: usize, out: &mut Vec<f32>) -> Result<(), VocoderError> {
        debug_assert!(from.is_multiple_of(self.chunk) && from >= self.frames_base);
        self.state = Some(self.vocoder.stream()?);
        self.frames_fed = from.max(self.frames_base);
        self.feed(out)
    }

    /// Whole chunks of computed frames go to the back (when it runs). Several waiting chunks
    /// (a render, a spin-up's replay, a worker catching up) go in one step, up to
    /// [`MAX_STEP_FRAMES`]: the generators' columns do not depend on how the frames are cut into
    /// steps (measured bit for bit, and checked by the bounce-equals-live tests), while larger
    /// steps run the kernels at batch efficiency. What is emitted when stays chunk by chunk.
    fn feed(&mut self, out: &mut Vec<f32>) -> Result<(), VocoderError> {
        let m = self.num_mels;
        let chunk = self.chunk;
        if let Some(state) = &mut self.state {
            while self.frames_fed + chunk <= self.frames_done {
                let waiting = (self.frames_done - self.frames_fed) / chunk;
                let t = chunk * waiting.min((MAX_STEP_FRAMES / chunk).max(1));
                self.mel_block.clear();
                self.mel_block.resize(m * t, 0.0);
                let first = (self.frames_fed - self.frames_base) * m;
                for j in 0..t {
                    for (b, v) in self.frames[first + j * m..first + (j + 1) * m].iter().enumerate() {
                        self.mel_block[b * t + j] = *v;
                    }
                }
                self.frames_fed += t;
                let mel = Tensor::from_slice(&self.mel_block, (1, m, t), self.vocoder.device())?;
                self.vocoder.stream_step(state, &mel, out)?;
            }
        } else {
            // Idle: the chunk grid moves on (a later spin-up starts on it).
            self.frames_fed = self.frames_done / chunk * chunk;
        }
        // Keep what the back still needs and the frames a spin-up may replay.
        let keep_from = self.frames_fed.min(self.frames_done.saturating_sub(self.keep_frames));
        if keep_from > self.frames_base {
            self.frames.drain(..(keep_from - self.frames_base) * m);
            self.frames_base = keep_from;
        }
        Ok(())
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
        self.feed(out)?;
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

/// The most frames one model step takes (≈ 3 s at 22.05 kHz / hop 256): large enough for batch
/// efficiency, small enough to bound a step's activations (V1's widest layer holds 512 channels
/// per frame, its last layers 32 channels per sample).
pub const MAX_STEP_FRAMES: usize = 256;

/// Frames kept beyond a spin-up's own reach: a spin-up runs before the worker pushes the input it
/// just read, and the fade it serves starts at most half a fade before that input.
const SPIN_UP_SLACK_FRAMES: usize = 64;

/// What a spin-up did, for the engine's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpinUp {
    /// Nothing to do (passthrough, or the back already runs).
    Running,
    /// Rebuilt from kept history: from the requested sample on, exactly the stream that ran.
    Exact { replayed: u64 },
    /// The kept history did not reach back far enough (should not happen; counted): the output
    /// is a fresh stream's onset until the model's reach is covered.
    Short { replayed: u64 },
}

/// A slot: host-rate in, host-rate wet out, index-aligned. `None` model: passthrough.
///
/// A model slot can be idle ([`Self::set_idle`]): its input side (rate conversion, mel frames)
/// keeps running and keeping recent frames, the model and the conversion back do not, and it
/// has no output. [`Self::spin_up`] brings it back so that its output from a given sample on is
/// exactly what it would have been had it run all along.
pub struct SlotStream {
    to_model: RateConverter,
    model: Option<ModelStream>,
    to_host: RateConverter,
    host_rate: u32,
    model_rate: u32,
    model_buf: Vec<f32>,
    audio_buf: Vec<f32>,
    /// Model-rate samples still to drop from the model's output (a spin-up starts the conversion
    /// back on its block grid, after the model's replayed onset).
    skip_model: u64,
    /// Host-rate wet samples ready, in order; the first is absolute index `ready_base`.
    pub ready: VecDeque<f32>,
    pub ready_base: u64,
    /// The input index of the stream's first sample (the engine's start, a restart, a swap).
    origin: u64,
}

impl SlotStream {
    pub fn new(host_rate: u32, vocoder: Option<(Arc<Vocoder>, usize)>) -> Self {
        let (model_rate, model) = match vocoder {
            None => (host_rate, None),
            Some((v, chunk_frames)) => (v.config().sampling_rate, Some(ModelStream::new(v, chunk_frames))),
        };
        // The model's output arrives a chunk at a time. A one-hop chunk (256 samples for the
        // 22.05 kHz models) is shorter than the default block back to 44.1/48 kHz (294), so each
        // block would wait for the next chunk: there the block is halved (147), which takes a hop
        // of latency off the low-latency choice at a slightly lower cutoff (10.0 instead of
        // 10.5 kHz for a 22.05 kHz model). Longer chunks keep the default block.
        let to_host = RateConverter::with_block_target(model_rate, host_rate, back_block_target(model.as_ref()));
        Self {
            to_model: RateConverter::new(host_rate, model_rate),
            model,
            to_host,
            host_rate,
            model_rate,
            model_buf: Vec::new(),
            audio_buf: Vec::new(),
            skip_model: 0,
            ready: VecDeque::new(),
            ready_base: 0,
            origin: 0,
        }
    }

    /// Places a fresh stream's first sample at input index `at`.
    pub fn start_at(&mut self, at: u64) {
        self.ready_base = at;
        self.origin = at;
    }

    pub fn push(&mut self, x: &[f32]) -> Result<(), VocoderError> {
        match &mut self.model {
            None => self.ready.extend(x.iter().copied()),
            Some(m) => {
                self.model_buf.clear();
                self.to_model.push(x, &mut self.model_buf);
                self.audio_buf.clear();
                m.push(&self.model_buf, &mut self.audio_buf)?;
                self.emit_model_audio();
            }
        }
        Ok(())
    }

    /// The model's new output (in `audio_buf`) through the conversion back into `ready`.
    fn emit_model_audio(&mut self) {
        let skip = (self.skip_model as usize).min(self.audio_buf.len());
        self.skip_model -= skip as u64;
        self.model_buf.clear();
        self.to_host.push(&self.audio_buf[skip..], &mut self.model_buf);
        self.ready.extend(self.model_buf.iter().copied());
    }

    /// Whether the slot computes its output (a passthrough always does).
    pub fn is_active(&self) -> bool {
        self.model.as_ref().is_none_or(|m| m.is_active())
    }

    /// Stops computing the model; the input side keeps running (see [`Self::spin_up`]).
    pub fn set_idle(&mut self) {
        if let Some(m) = &mut self.model {
            m.set_idle();
            self.ready.clear();
        }
    }

    /// Restarts the model of an idle slot so that its output from input index `from` on is what
    /// it would have been had it never stopped. The model is replayed from kept mel frames far
    /// enough back to cover its reach, on its chunk grid; the conversion back restarts on its
    /// block grid, a block and its delay before it is needed. Both grids are counted from the
    /// stream's origin, so every value computed from `from` on meets exactly the inputs and the
    /// chunking it met in the stream that ran. Returns what it did; the replay is computed here.
    pub fn spin_up(&mut self, from: u64) -> Result<SpinUp, VocoderError> {
        let Some(m) = &mut self.model else { return Ok(SpinUp::Running) };
        if m.is_active() {
            return Ok(SpinUp::Running);
        }
        let g = gcd(self.host_rate as u64, self.model_rate as u64);
        let (p, q) = (self.host_rate as u64 / g, self.model_rate as u64 / g);
        let needed_model = from.saturating_sub(self.origin) * q / p;
        let block = self.to_host.block_in as u64;
        let back_delay = (self.to_host.delay as u64 * q).div_ceil(p);
        let mut start_model = needed_model.saturating_sub(2 * block + back_delay) / block * block;
        let (hop, chunk) = (m.hop() as u64, m.chunk as u64);
        let mut frame = start_model.saturating_sub(m.reach_back as u64) / hop / chunk * chunk;
        let oldest = m.oldest_frame() as u64;
        let exact = frame >= oldest;
        if !exact {
            frame = oldest.div_ceil(chunk) * chunk;
            start_model = (frame * hop).div_ceil(block) * block;
        }
        if frame == 0 {
            // From the stream's start: the very same computation as the stream that ran.
            start_model = 0;
        }
        self.to_host = RateConverter::with_block_target(self.model_rate, self.host_rate, back_block_target(Some(&*m)));
        self.skip_model = start_model - frame * hop;
        self.audio_buf.clear();
        m.spin_up(frame as usize, &mut self.audio_buf)?;
        let replayed_model = (m.frames_fed - frame as usize) as u64 * hop;
        self.ready.clear();
        self.ready_base = self.origin + start_model * p / q;
        self.emit_model_audio();
        let replayed = replayed_model * p / q;
        Ok(if exact { SpinUp::Exact { replayed } } else { SpinUp::Short { replayed } })
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
        let model_rate = m.vocoder.config().sampling_rate as u64;
        let g = gcd(host_rate as u64, model_rate);
        let (p, q) = (host_rate as u64 / g, model_rate / g);
        let hop = m.hop as u64;
        p * (hop / gcd(q, hop))
    }

    /// The most audio, in host samples, a spin-up replays at once (for latency planning): the
    /// model's reach, a chunk of grid alignment, and the conversion back's blocks and delay.
    pub fn spin_up_span(&self) -> u64 {
        let Some(m) = &self.model else { return 0 };
        let g = gcd(self.host_rate as u64, self.model_rate as u64);
        let (p, q) = (self.host_rate as u64 / g, self.model_rate as u64 / g);
        let block = self.to_host.block_in as u64;
        let back_delay = (self.to_host.delay as u64 * q).div_ceil(p);
        let model = m.reach_back as u64 + (m.chunk * m.hop) as u64 + 3 * block + back_delay;
        (model * p).div_ceil(q)
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

/// The conversion back's FFT block target for a slot's model (see [`SlotStream::new`]).
fn back_block_target(model: Option<&ModelStream>) -> usize {
    if model.is_some_and(|m| m.chunk == 1) { ONE_HOP_BLOCK_TARGET } else { DEFAULT_BLOCK_TARGET }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}
