//! StreamSpeech's simultaneous policy, exactly as upstream's agent runs it
//! (`agent/speech_to_speech.streamspeech.agent.py`, `StreamSpeechS2STAgent.policy`), one call per
//! source segment as SimulEval's evaluator makes them:
//!
//! 1. Features over the whole source so far (whole 10 ms frames), CMVN, the encoder with the
//!    segment's chunk sizes, both CTC heads (greedy). Upstream recomputes all of it every call;
//!    ours keeps what later audio cannot change (feature frames, and the encoder's completed
//!    chunks with their CTC arg-maxes: [`crate::encoder::EncoderCache`]) and computes the rest.
//! 2. Until the source ends: READ unless the ASR and the ST CTC outputs both grew by ≥
//!    `stride_n` over their largest lengths so far; the target length is the ST output's length
//!    (+1 with whole words, segments ≥ 640 ms); READ if that adds no token to the committed ones.
//! 3. Greedy MT decoding of the new tokens after the committed ones (fairseq's generator: pad
//!    never chosen, end-of-sentence forced at the length cap). With whole words the result is cut
//!    back before the last word start (`▁`); READ if nothing is left.
//! 4. READ if the tokens did not change (or the MT input did not grow); else the MT decoder's
//!    states for `[eos, tokens…]` → T2U encoder → unit decoder → CTC units over everything, and
//!    the units beyond those already emitted are written.
//! 5. At the source end: decode to end-of-sentence, at most 100 tokens *in total* as upstream's
//!    generator counts them (`max_len_b = 100` includes the committed prefix), write the rest,
//!    reset. With whole words the final MT input carries an extra pad position (`[eos, t…, pad]`)
//!    whose T2U frames can emit units, as upstream's.
//!
//! Where upstream breaks, ours does not: with more than 100 committed tokens at the source end
//! upstream's generator returns nothing and the agent crashes; ours adds no token (what upstream
//! does with exactly 100) and finishes. A source that ends before one feature frame finishes
//! with nothing written.
//!
//! The agent is pure: samples in, decisions and units out. The caller voices the units; upstream
//! emits, from a vocoding of all units, the audio of the newest ones (their predicted durations ×
//! the hop).

use candle_core::{IndexOp, Tensor};

use crate::fbank::{Fbank, FbankConfig, GlobalCmvn};
use crate::model::StreamSpeech;

/// The agent's settings (upstream's command-line defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    /// The source segment (ms of input per policy call).
    pub segment_ms: usize,
    /// `--stride-n`: CTC growth needed to write, and the target-length granularity.
    pub stride_n: usize,
    /// `--lagging-k1`: target tokens held back from the ST CTC length.
    pub lagging_k1: usize,
    /// Whole-word output (upstream: segments ≥ 640 ms).
    pub whole_word: bool,
    /// Upstream's generator's length cap at the source end (`max_len_b`), prefix included.
    pub final_max_tokens: usize,
    /// Not upstream's policy; for benchmarks with generated weights, which emit far more ST CTC
    /// pieces than a translation has (about 20 per second) and end a sentence at once: the ST CTC
    /// hypothesis is cut to this many pieces per second of source, and before the source ends
    /// the MT decoder writes exactly the target length (end of sentence barred before it,
    /// fairseq's `min_len`), so that the decoders do a real translation's work. None by default.
    pub emulate_pieces_per_second: Option<f64>,
}

impl PolicyConfig {
    pub fn for_segment(segment_ms: usize) -> Self {
        PolicyConfig { segment_ms, stride_n: 1, lagging_k1: 0, whole_word: segment_ms >= 640, final_max_tokens: 100, emulate_pieces_per_second: None }
    }
}

/// What one policy call decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Read,
    /// New units to voice (`units` is every unit so far; `new_units` its tail beyond those
    /// already emitted). `finished`: the source ended and the translation is complete.
    Write { units: Vec<u32>, new_units: Vec<u32>, finished: bool },
    /// The source ended with nothing more to say.
    Finish,
}

/// One policy call's record: what the agent saw and decided (the fields upstream's trace has).
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub action: Action,
    pub asr_ids: Vec<u32>,
    pub st_ids: Vec<u32>,
    /// The committed translation (target dictionary ids), cumulative.
    pub translation_ids: Vec<u32>,
    /// The MT decoder input of this call's write (`[eos, tokens…]`, maybe a pad).
    pub mt_input: Option<Vec<u32>>,
    /// Feature frames of the source so far (what the MT decoder's cross-attention and the
    /// encoder's attention run over).
    pub frames: usize,
    /// Encoder frames this call computed (the rest were cached from earlier calls).
    pub encoded_frames: usize,
    /// Where this call's compute went.
    pub seconds: PolicySeconds,
}

/// Wall time of one policy call's stages, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PolicySeconds {
    /// Filter banks and CMVN of the new audio.
    pub features: f64,
    pub encoder: f64,
    pub ctc: f64,
    /// Greedy MT decoding and the MT states of the write.
    pub mt_decoder: f64,
    pub t2u_encoder: f64,
    /// The unit decoder and its CTC units.
    pub unit_decoder: f64,
}

/// How a continuous stream (which has no sentence ends) is cut into utterances, so that the cost
/// of a policy call stays bounded however long the stream runs.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamLimits {
    /// An utterance ends after this much source silence following speech.
    pub silence_ms: usize,
    /// A 10 ms frame is silent when its RMS is below this level (dB relative to full scale).
    pub silence_dbfs: f32,
    /// An utterance ends when its source reaches this length, silence or not.
    pub max_utterance_ms: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits { silence_ms: 700, silence_dbfs: -45.0, max_utterance_ms: 30_000 }
    }
}

/// Speech/silence bookkeeping of the current utterance (10 ms frames at 16 kHz).
#[derive(Debug, Default)]
struct Activity {
    /// Samples not yet forming a whole frame.
    partial: Vec<f32>,
    heard_speech: bool,
    /// Silent samples since the last speech frame.
    silent_run: usize,
}

impl Activity {
    /// Tracks `samples`; returns how many of them lead up to the end of a pause of `pause`
    /// samples that follows speech (the utterance ends there), if one completes in them.
    fn feed(&mut self, samples: &[f32], threshold: f32, pause: usize) -> Option<usize> {
        let carried = self.partial.len();
        self.partial.extend_from_slice(samples);
        let whole = self.partial.len() / 160 * 160;
        let mut cut = None;
        for (i, frame) in self.partial[..whole].chunks_exact(160).enumerate() {
            let rms = (frame.iter().map(|x| x * x).sum::<f32>() / 160.0).sqrt();
            if rms >= threshold {
                self.heard_speech = true;
                self.silent_run = 0;
            } else {
                self.silent_run += 160;
                if self.heard_speech && self.silent_run >= pause && cut.is_none() {
                    cut = Some(((i + 1) * 160).saturating_sub(carried).min(samples.len()));
                }
            }
        }
        self.partial.drain(..whole);
        cut
    }
}

/// Per-utterance state (upstream's agent attributes).
#[derive(Debug, Default)]
struct State {
    src_ctc_len: usize,
    tgt_ctc_len: usize,
    committed: Option<Vec<u32>>,
    mt_input: Option<Vec<u32>>,
    units: Option<Vec<u32>>,
}

pub struct SimultaneousAgent<'m> {
    model: &'m StreamSpeech,
    cfg: PolicyConfig,
    front: Fbank,
    cmvn: GlobalCmvn,
    /// Per target id: does its piece start a word (`▁`)?
    word_start: Vec<bool>,
    source: Vec<f32>,
    /// The source's feature frames so far (CMVN applied), `[frames][80]`.
    features: Vec<f32>,
    encoder: crate::encoder::EncoderCache,
    /// The CTC heads' arg-max ids for the encoder's cached frames.
    asr_best: Vec<u32>,
    st_best: Vec<u32>,
    /// The MT decoder's cross-attention keys and values of the encoder's final frames.
    mt_cross: crate::mt_decoder::CrossCache,
    state: State,
    activity: Activity,
}

const PAD: u32 = 1;
const UNK: u32 = 3;
const EOS: u32 = 2;

impl<'m> SimultaneousAgent<'m> {
    /// `model` loaded for `cfg.segment_ms` (its encoder chunks set as the agent sets them:
    /// [`StreamSpeech::load_for_segment`]); `target` the target dictionary.
    pub fn new(model: &'m StreamSpeech, cfg: PolicyConfig, cmvn: GlobalCmvn, target: &crate::data::Dictionary) -> Result<Self, crate::TranslatorError> {
        let word_start = target.symbols.iter().map(|s| s.starts_with('\u{2581}')).collect();
        Ok(SimultaneousAgent { model, cfg, front: Fbank::new(FbankConfig::default())?, cmvn, word_start, source: Vec::new(),
            features: Vec::new(),
            encoder: Default::default(),
            asr_best: Vec::new(),
            st_best: Vec::new(),
            mt_cross: Default::default(),
            state: State::default(),
            activity: Activity::default(),
        })
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.cfg
    }

    /// Source samples (16 kHz) per policy call, as SimulEval sends them.
    pub fn samples_per_segment(&self) -> usize {
        (self.cfg.segment_ms * 16_000).div_ceil(1000)
    }

    /// Samples received for the current utterance.
    pub fn source_len(&self) -> usize {
        self.source.len()
    }

    /// Forgets the utterance (upstream's `reset`).
    pub fn reset(&mut self) {
        self.source.clear();
        self.clear_source_state();
        self.state = State::default();
        self.activity = Activity::default();
    }

    /// Forgets what was computed from the source (when it is cut).
    fn clear_source_state(&mut self) {
        self.features.clear();
        self.encoder = Default::default();
        self.asr_best.clear();
        self.st_best.clear();
        self.mt_cross = Default::default();
    }

    /// One segment of a continuous stream: [`push`](Self::push), with the utterance ending by
    /// itself once `limits.silence_ms` of silence follow speech (this call then completes its
    /// translation with the source up to the pause's end; the rest of `samples` starts the next
    /// utterance), or once its source reaches `limits.max_utterance_ms`. Silence before any
    /// speech is not translated (only the last segment of it is kept, as context), so a silent
    /// stream costs nothing, and a stream that ends in silence ends with nothing more said. `end`
    /// marks the end of the whole stream.
    pub fn push_stream(&mut self, samples: &[f32], end: bool, limits: &StreamLimits) -> candle_core::Result<Step> {
        let threshold = 10f32.powf(limits.silence_dbfs / 20.0);
        let pause = limits.silence_ms.saturating_mul(16);
        let cut = self.activity.feed(samples, threshold, pause);
        if !self.activity.heard_speech && end {
            // A stream that ends in silence: nothing more to say (the kept context is silence
            // too), exactly as a stream that goes on says nothing there.
            self.reset();
            return Ok(Step { action: Action::Finish, asr_ids: Vec::new(), st_ids: Vec::new(), translation_ids: Vec::new(), mt_input: None, frames: 0, encoded_frames: 0, seconds: PolicySeconds::default() });
        }
        if !self.activity.heard_speech {
            self.source.extend_from_slice(samples);
            let keep = self.samples_per_segment().min(self.source.len());
            self.source.drain(..self.source.len() - keep);
            self.clear_source_state();
            return Ok(Step { action: Action::Read, asr_ids: Vec::new(), st_ids: Vec::new(), translation_ids: Vec::new(), mt_input: None, frames: 0, encoded_frames: 0, seconds: PolicySeconds::default() });
        }
        if let Some(k) = cut.filter(|_| !end) {
            let step = self.push(&samples[..k], true)?;
            // The rest begins the next utterance (read now, translated from the next call on).
            let rest = &samples[k..];
            self.activity.feed(rest, threshold, pause);
            self.source.extend_from_slice(rest);
            return Ok(step);
        }
        let full = (self.source.len() + samples.len()).saturating_mul(1000) >= limits.max_utterance_ms.saturating_mul(16_000);
        self.push(samples, end || full)
    }

    /// Appends `samples` (16 kHz mono) and runs the policy once; `finished` marks the source's
    /// end (the agent then completes the translation and resets).
    pub fn push(&mut self, samples: &[f32], finished: bool) -> candle_core::Result<Step> {
        self.source.extend_from_slice(samples);
        let step = self.policy(finished)?;
        if finished {
            self.reset();
        }
        Ok(step)
    }

    fn policy(&mut self, finished: bool) -> candle_core::Result<Step> {
        let model = self.model;
        let dev = model.device.clone();
        let mut lap = Lap(std::time::Instant::now());
        let mut seconds = PolicySeconds::default();
        let bins = self.front.bins();
        let have = self.features.len() / bins;
        let (mut feats, fresh) = self.front.compute(self.source.get(have * self.front.shift()..).unwrap_or(&[]));
        self.cmvn.apply(&mut feats);
        self.features.extend_from_slice(&feats);
        let frames = have + fresh;
        let mut step = Step { action: Action::Read, asr_ids: Vec::new(), st_ids: Vec::new(), translation_ids: self.committed(), mt_input: None, frames, encoded_frames: 0, seconds: PolicySeconds::default() };
        seconds.features = lap.take();
        if frames == 0 {
            if finished {
                step.action = Action::Finish;
            }
            return Ok(step);
        }
        let features = Tensor::from_slice(&self.features, (1, frames, bins), &dev)?;
        let cached = self.encoder.final_frames();
        let enc = model.encoder.forward_incremental(&features, &mut self.encoder)?;
        seconds.encoder = lap.take();
        let total = enc.dim(1)?;
        step.encoded_frames = total - cached;
        // Arg-maxes of the frames computed now; those that became final are kept.
        let fresh_states = enc.narrow(1, cached, total - cached)?;
        let now_final = self.encoder.final_frames() - cached;
        let asr = crate::ctc::collapse(&head_ids(&model.asr, &fresh_states, &mut self.asr_best, cached, now_final)?, PAD, 0).tokens;
        let mut st = crate::ctc::collapse(&head_ids(&model.st, &fresh_states, &mut self.st_best, cached, now_final)?, PAD, 0).tokens;
        if let Some(rate) = self.cfg.emulate_pieces_per_second {
            st.truncate((rate * self.source.len() as f64 / 16_000.0).ceil() as usize);
        }
        seconds.ctc = lap.take();
        step.seconds = seconds;
        step.asr_ids = asr.clone();
        step.st_ids = st.clone();
        let (n, s) = (self.cfg.stride_n.max(1), &mut self.state);
        let max_len = if !finished {
            if asr.len() < s.src_ctc_len + n || st.len() < s.tgt_ctc_len + n {
                return Ok(step);
            }
            s.src_ctc_len = s.src_ctc_len.max(asr.len());
            s.tgt_ctc_len = s.tgt_ctc_len.max(st.len());
            let mut target = (st.len().saturating_sub(self.cfg.lagging_k1) / n) * n;
            if self.cfg.whole_word {
                target += 1;
            }
            let have = s.committed.as_ref().map_or(0, Vec::len);
            if target < have + 1 {
                return Ok(step);
            }
            target
        } else {
            self.cfg.final_max_tokens
        };
        let prefix = s.committed.clone().unwrap_or_default();
        let min_len = if self.cfg.emulate_pieces_per_second.is_some() && !finished { max_len } else { 1 };
        let cross = model.mt.cross_keys_values_cached(&enc, &mut self.mt_cross, self.encoder.final_frames())?;
        let run = model.mt.greedy_run(&prefix, &cross, min_len, max_len)?;
        let mut tokens = run.tokens.clone();
        step.seconds.mt_decoder = lap.take();
        // fairseq's hypothesis ends with EOS: `len(tokens) + 1` pieces before trimming.
        let mut hypothesis_len = tokens.len() + 1;
        if self.cfg.whole_word && !finished {
            // Back to before the last piece that starts a word (the word may go on).
            let j = (0..tokens.len()).rev().find(|&j| self.word_start.get(tokens[j] as usize).copied().unwrap_or(false)).unwrap_or(0);
            tokens.truncate(j);
            hypothesis_len = j;
            if j == 0 {
                return Ok(step);
            }
        }
        let width = hypothesis_len + usize::from(self.cfg.whole_word);
        let mut mt_input = vec![PAD; width];
        mt_input[0] = EOS;
        mt_input[1..=tokens.len()].copy_from_slice(&tokens);
        if s.committed.as_ref() == Some(&tokens) {
            if finished {
                step.action = Action::Finish;
            }
            return Ok(step);
        }
        s.committed = Some(tokens.clone());
        step.translation_ids = tokens;
        if !finished && let Some(prev) = &s.mt_input && (*prev == mt_input || mt_input.len() <= prev.len()) {
            return Ok(step);
        }
        s.mt_input = Some(mt_input.clone());
        step.mt_input = Some(mt_input.clone());
        let pads: Vec<bool> = mt_input.iter().map(|&t| t == PAD).collect();
        // The greedy run already computed these states (up to float summation order).
        let states = match model.mt.states_from_run(&mt_input, &run)? {
            Some(states) => states,
            None => model.mt.states_with(&mt_input, &cross)?,
        };
        step.seconds.mt_decoder += lap.take();
        let t2u = model.t2u_encoder.forward_masked(&states, &pads)?;
        step.seconds.t2u_encoder = lap.take();
        let logits = model.unit_decoder.forward_masked(&t2u, &pads)?.i(0)?;
        let blank = model.cfg.t2u.vocab as u32 - 1;
        let ids = crate::ctc::greedy(&logits, PAD, UNK, blank)?.tokens;
        step.seconds.unit_decoder = lap.take();
        // Unit dictionary: <s>, <pad>, </s>, <unk>, then units 0…; `<s>`/`</s>` are dropped.
        let units_out = model.cfg.t2u.vocab.saturating_sub(5) as u32;
        let units: Vec<u32> = ids.iter().filter(|&&u| (4..4 + units_out).contains(&u)).map(|u| u - 4).collect();
        let emitted = s.units.as_ref().map_or(0, Vec::len);
        let new_units: Vec<u32> = units.get(emitted..).unwrap_or(&[]).to_vec();
        if units.is_empty() || new_units.is_empty() {
            if finished {
                step.action = Action::Finish;
            }
            return Ok(step);
        }
        s.units = Some(units.clone());
        step.action = Action::Write { units, new_units, finished };
        Ok(step)
    }

    fn committed(&self) -> Vec<u32> {
        self.state.committed.clone().unwrap_or_default()
    }
}

/// A CTC head's arg-max ids over all encoder frames: `kept` holds those of the first `cached`
/// (final) frames; `fresh` are the states after them, of which the first `now_final` just
/// became final (their ids join `kept`).
fn head_ids(head: &crate::ctc::CtcHead, fresh: &Tensor, kept: &mut Vec<u32>, cached: usize, now_final: usize) -> candle_core::Result<Vec<u32>> {
    let best = crate::ctc::best_ids(&head.forward(fresh)?.i(0)?, PAD, UNK)?;
    kept.truncate(cached);
    let all = kept.iter().chain(&best).copied().collect();
    kept.extend_from_slice(&best[..now_final]);
    Ok(all)
}

/// Seconds since the last lap.
struct Lap(std::time::Instant);

impl Lap {
    fn take(&mut self) -> f64 {
        let now = std::time::Instant::now();
        let s = (now - self.0).as_secs_f64();
        self.0 = now;
        s
    }
}
