//! Reading any input the CLI accepts (WAV of any bit depth via `hound`; FLAC, MP3, OGG/Vorbis
//! and anything else `symphonia` probes) and writing WAV atomically (temp file, then rename).

use std::path::{Path, PathBuf};

/// Planar audio at its own sample rate.
#[derive(Debug, Clone)]
pub struct Audio {
    pub rate: u32,
    pub channels: Vec<Vec<f32>>,
}

impl Audio {
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }
    pub fn seconds(&self) -> f64 {
        self.frames() as f64 / self.rate as f64
    }
    /// The mono mix the models hear (the engine's own wet input).
    pub fn mono(&self) -> Vec<f32> {
        let n = self.channels.len().max(1) as f32;
        (0..self.frames()).map(|i| self.channels.iter().map(|c| c[i]).sum::<f32>() / n).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("cannot read {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}: unsupported or corrupt audio ({1})")]
    Unsupported(PathBuf, String),
    #[error("{0}: the file holds no audio samples")]
    Empty(PathBuf),
    #[error("{0}: {1} channels; the vocoder takes mono or stereo input")]
    Channels(PathBuf, usize),
    #[error("{0}: sample rate {1} Hz is outside {min}..={max} Hz", min = MIN_RATE, max = MAX_RATE)]
    Rate(PathBuf, u32),
    #[error("{0}: longer than one render handles ({1} samples; the limit is {max}): split it", max = MAX_SAMPLES)]
    TooLong(PathBuf, u64),
    #[error("{0}")]
    File(String),
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, String),
}

/// Sample rates an input may have (the engine's resampler converts any of these).
pub const MIN_RATE: u32 = 1_000;
pub const MAX_RATE: u32 = 768_000;
/// Most samples (all channels) one input may decode to: 1 GiB as f32, e.g. 46 minutes of 48 kHz
/// stereo. A small compressed file can claim hours; it is stopped here, not by the allocator.
pub const MAX_SAMPLES: u64 = 1 << 28;
/// Largest input file read.
pub const MAX_FILE_BYTES: u64 = 4 << 30;

fn check_rate(path: &Path, rate: u32) -> Result<(), AudioError> {
    if (MIN_RATE..=MAX_RATE).contains(&rate) { Ok(()) } else { Err(AudioError::Rate(path.into(), rate)) }
}

thread_local! {
    /// Set while this thread decodes a file: a panic there is reported as an error.
    static DECODING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Makes the panic hook silent for panics inside [`read_audio`] (they become one error line);
/// every other panic still prints as usual. The CLI installs it at start.
pub fn quiet_decoder_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !DECODING.with(|d| d.get()) {
            default(info)
        }
    }));
}

pub fn read_audio(path: &Path) -> Result<Audio, AudioError> {
    // The decoders are third-party code fed hostile bytes: one that panics on a malformed file
    // gives an error here, not a crash.
    DECODING.with(|d| d.set(true));
    let result = std::panic::catch_unwind(|| read_audio_unguarded(path));
    DECODING.with(|d| d.set(false));
    result.unwrap_or_else(|p| {
        let msg = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default();
        Err(AudioError::Unsupported(path.into(), format!("the decoder failed on this file ({msg})")))
    })
}

fn read_audio_unguarded(path: &Path) -> Result<Audio, AudioError> {
    let len = vocoder::files::regular_file_len(path).map_err(|e| AudioError::File(e.to_string()))?;
    if len > MAX_FILE_BYTES {
        return Err(AudioError::File(format!("{}: {} MB is larger than an input may be", path.display(), len >> 20)));
    }
    let file = std::fs::File::open(path).map_err(|e| AudioError::Io(path.into(), e))?;
    let is_wav = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("wav") || e.eq_ignore_ascii_case("wave"));
    let audio = if is_wav {
        match read_wav(path, None) {
            Ok(a) => a,
            Err(e @ (AudioError::Rate(..) | AudioError::TooLong(..) | AudioError::Channels(..))) => return Err(e),
            // Integer PCM with fewer valid bits than its container (12 in 16, 20 in 24): the
            // samples are left-justified, so read as the container width. Other WAV variants
            // hound does not read (e.g. A-law) may still decode with symphonia.
            Err(_) => match padded_pcm_as_container(path)? {
                Some(patched) => read_wav(path, Some(patched))?,
                None => read_symphonia(path, file)?,
            },
        }
    } else {
        read_symphonia(path, file)?
    };
    if audio.frames() == 0 {
        return Err(AudioError::Empty(path.into()));
    }
    if !(1..=2).contains(&audio.channels.len()) {
        return Err(AudioError::Channels(path.into(), audio.channels.len()));
    }
    Ok(audio)
}

/// Reads with hound: the file, or `bytes` (a patched copy of it). Rate, channel count and length
/// are checked from the header, before any sample is read.
fn read_wav(path: &Path, bytes: Option<Vec<u8>>) -> Result<Audio, AudioError> {
    let bad = |e: hound::Error| AudioError::Unsupported(path.into(), e.to_string());
    let source: Box<dyn std::io::Read> = match bytes {
        Some(b) => Box::new(std::io::Cursor::new(b)),
        None => Box::new(std::io::BufReader::new(std::fs::File::open(path).map_err(|e| AudioError::Io(path.into(), e))?)),
    };
    let mut r = hound::WavReader::new(source).map_err(bad)?;
    let spec = r.spec();
    check_rate(path, spec.sample_rate)?;
    let n_ch = spec.channels as usize;
    if !(1..=2).contains(&n_ch) {
        return Err(AudioError::Channels(path.into(), n_ch));
    }
    if r.len() as u64 > MAX_SAMPLES {
        return Err(AudioError::TooLong(path.into(), r.len() as u64));
    }
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().collect::<Result<_, _>>().map_err(bad)?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            r.samples::<i32>().map(|s| s.map(|v| v as f32 * scale)).collect::<Result<_, _>>().map_err(bad)?
        }
    };
    Ok(deinterleave(&interleaved, n_ch, spec.sample_rate))
}

/// A WAV whose integer samples have fewer valid bits than their container (a 12-bit recorder's
/// file): a copy with the header saying the container width, or None when that is not the case.
/// Chunks are walked with checked offsets; at most the file-size limit is read.
fn padded_pcm_as_container(path: &Path) -> Result<Option<Vec<u8>>, AudioError> {
    let mut b = vocoder::files::read_limited(path, MAX_FILE_BYTES, "WAV file").map_err(|e| AudioError::File(e.to_string()))?;
    if b.len() < 12 || &b[..4] != b"RIFF" || &b[8..12] != b"WAVE" {
        return Ok(None);
    }
    let mut pos = 12usize;
    while let Some(head) = pos.checked_add(8).and_then(|e| b.get(pos..e)) {
        let size = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
        let body = pos + 8;
        if &head[..4] == b"fmt " {
            if size < 16 || body + size > b.len() {
                return Ok(None);
            }
            let tag = u16::from_le_bytes([b[body], b[body + 1]]);
            let channels = u16::from_le_bytes([b[body + 2], b[body + 3]]).max(1);
            let align = u16::from_le_bytes([b[body + 12], b[body + 13]]);
            let bits = u16::from_le_bytes([b[body + 14], b[body + 15]]);
            let container = u32::from(align / channels) * 8;
            let pcm = tag == 1 || (tag == 0xFFFE && size >= 40 && b[body + 24..body + 26] == [1, 0]);
            if !pcm || !matches!(container, 16 | 24 | 32) {
                return Ok(None);
            }
            let valid_at = body + 18;
            let valid = if tag == 0xFFFE { u16::from_le_bytes([b[valid_at], b[valid_at + 1]]) } else { bits };
            let (bits, valid) = (u32::from(bits), u32::from(valid));
            if (bits == container && valid == container) || valid == 0 || valid > container || bits > container {
                return Ok(None);
            }
            let container = container as u16;
            b[body + 14..body + 16].copy_from_slice(&container.to_le_bytes());
            if tag == 0xFFFE {
                b[valid_at..valid_at + 2].copy_from_slice(&container.to_le_bytes());
            }
            return Ok(Some(b));
        }
        pos = match body.checked_add(size).and_then(|e| e.checked_add(size & 1)) {
            Some(p) => p,
            None => return Ok(None),
        };
    }
    Ok(None)
}

fn deinterleave(x: &[f32], n_ch: usize, rate: u32) -> Audio {
    let n_ch = n_ch.max(1);
    let frames = x.len() / n_ch;
    let channels = (0..n_ch).map(|c| (0..frames).map(|i| x[i * n_ch + c]).collect()).collect();
    Audio { rate, channels }
}

fn read_symphonia(path: &Path, file: std::fs::File) -> Result<Audio, AudioError> {
    use symphonia::core::audio::SampleBuffer;
    use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
    use symphonia::core::errors::Error as SymError;
    use symphonia::core::formats::FormatOptions;
    use symphonia::core::io::MediaSourceStream;
    use symphonia::core::meta::MetadataOptions;
    use symphonia::core::probe::Hint;

    let bad = |m: String| AudioError::Unsupported(path.into(), m);
    crate::audio_guard::check(path).map_err(bad)?;
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    // Gapless: the MP3 encoder's delay and padding (LAME/Xing header) are trimmed, so the input
    // is as long as what was encoded and not shifted.
    let options = FormatOptions { enable_gapless: true, ..Default::default() };
    let probed = symphonia::default::get_probe().format(&hint, mss, &options, &MetadataOptions::default()).map_err(|e| bad(e.to_string()))?;
    let mut format = probed.format;
    let track = format.tracks().iter().find(|t| t.codec_params.codec != CODEC_TYPE_NULL).ok_or_else(|| bad("no audio track".into()))?;
    let track_id = track.id;
    let rate = track.codec_params.sample_rate.ok_or_else(|| bad("unknown sample rate".into()))?;
    check_rate(path, rate)?;
    let mut n_ch = track.codec_params.channels.map(|c| c.count()).unwrap_or(0);
    if n_ch > 2 {
        return Err(AudioError::Channels(path.into(), n_ch));
    }
    let mut decoder = symphonia::default::get_codecs().make(&track.codec_params, &DecoderOptions::default()).map_err(|e| bad(e.to_string()))?;
    let mut interleaved = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymError::ResetRequired) => break,
            Err(e) => return Err(bad(e.to_string())),
        };
        if packet.track_id() != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(buf) => {
                let spec = *buf.spec();
                if spec.rate != rate {
                    return Err(bad(format!("the sample rate changes mid-stream ({rate} → {} Hz)", spec.rate)));
                }
                if n_ch != 0 && spec.channels.count() != n_ch {
                    return Err(bad("the channel count changes mid-stream".into()));
                }
                n_ch = spec.channels.count();
                if n_ch > 2 {
                    return Err(AudioError::Channels(path.into(), n_ch));
                }
                let n = (buf.frames() * n_ch) as u64;
                if interleaved.len() as u64 + n > MAX_SAMPLES {
                    return Err(AudioError::TooLong(path.into(), interleaved.len() as u64 + n));
                }
                let mut sb = SampleBuffer::<f32>::new(buf.capacity() as u64, spec);
                sb.copy_interleaved_ref(buf);
                interleaved.extend_from_slice(sb.samples());
            }
            // A corrupt frame is skipped, as players do; a stream of nothing but errors ends
            // up empty and is refused below.
            Err(SymError::DecodeError(_)) => continue,
            Err(e) => return Err(bad(e.to_string())),
        }
    }
    Ok(deinterleave(&interleaved, n_ch, rate))
}

/// Sample format of the written WAV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bits {
    Int16,
    Int24,
    Float32,
}

/// Encodes `audio` as WAV into a temporary file beside `path` (checked first: see
/// `vocoder::files::Output`), not yet in place: `commit` it, or drop it and nothing is left.
pub fn encode_wav(path: &Path, audio: &Audio, bits: Bits, force: bool) -> Result<vocoder::files::Output, AudioError> {
    let werr = |m: String| AudioError::Write(path.into(), m);
    let mut out = vocoder::files::Output::create(path, force).map_err(|e| AudioError::File(e.to_string()))?;
    let spec = hound::WavSpec {
        channels: audio.channels.len() as u16,
        sample_rate: audio.rate,
        bits_per_sample: match bits {
            Bits::Int16 => 16,
            Bits::Int24 => 24,
            Bits::Float32 => 32,
        },
        sample_format: if bits == Bits::Float32 { hound::SampleFormat::Float } else { hound::SampleFormat::Int },
    };
    {
        let f = std::io::BufWriter::new(out.file());
        let mut w = hound::WavWriter::new(f, spec).map_err(|e| werr(e.to_string()))?;
        for i in 0..audio.frames() {
            for c in &audio.channels {
                let x = c[i].clamp(-1.0, 1.0);
                match bits {
                    Bits::Float32 => w.write_sample(c[i]),
                    Bits::Int16 => w.write_sample((x * 32767.0).round() as i16),
                    Bits::Int24 => w.write_sample((x * 8_388_607.0).round() as i32),
                }
                .map_err(|e| werr(e.to_string()))?;
            }
        }
        w.finalize().map_err(|e| werr(e.to_string()))?;
    }
    Ok(out)
}

/// Writes `audio` to `path` atomically (an existing file is only replaced when `force`).
pub fn write_wav(path: &Path, audio: &Audio, bits: Bits, force: bool) -> Result<(), AudioError> {
    encode_wav(path, audio, bits, force)?.commit().map_err(|e| AudioError::File(e.to_string()))
}
