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
    #[error("{0} exists (use --force to overwrite)")]
    Exists(PathBuf),
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, String),
}

pub fn read_audio(path: &Path) -> Result<Audio, AudioError> {
    let file = std::fs::File::open(path).map_err(|e| AudioError::Io(path.into(), e))?;
    let is_wav = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("wav") || e.eq_ignore_ascii_case("wave"));
    let audio = if is_wav {
        match read_wav(path) {
            Ok(a) => a,
            // WAV variants hound does not read (e.g. A-law) may still decode with symphonia.
            Err(_) => read_symphonia(path, file)?,
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

fn read_wav(path: &Path) -> Result<Audio, AudioError> {
    let bad = |e: hound::Error| AudioError::Unsupported(path.into(), e.to_string());
    let mut r = hound::WavReader::open(path).map_err(bad)?;
    let spec = r.spec();
    let n_ch = spec.channels as usize;
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().collect::<Result<_, _>>().map_err(bad)?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            r.samples::<i32>().map(|s| s.map(|v| v as f32 * scale)).collect::<Result<_, _>>().map_err(bad)?
        }
    };
    Ok(deinterleave(&interleaved, n_ch, spec.sample_rate))
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
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let probed = symphonia::default::get_probe()
        .format(&hint, mss, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|e| bad(e.to_string()))?;
    let mut format = probed.format;
    let track = format.tracks().iter().find(|t| t.codec_params.codec != CODEC_TYPE_NULL).ok_or_else(|| bad("no audio track".into()))?;
    let track_id = track.id;
    let rate = track.codec_params.sample_rate.ok_or_else(|| bad("unknown sample rate".into()))?;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| bad(e.to_string()))?;
    let mut interleaved = Vec::new();
    let mut n_ch = track.codec_params.channels.map(|c| c.count()).unwrap_or(0);
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
                n_ch = buf.spec().channels.count();
                let mut sb = SampleBuffer::<f32>::new(buf.capacity() as u64, *buf.spec());
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

/// Writes `audio` to `path` via a temp file in the same folder and a rename, so a failure
/// leaves nothing behind and an existing file is only replaced when `force`.
pub fn write_wav(path: &Path, audio: &Audio, bits: Bits, force: bool) -> Result<(), AudioError> {
    if path.exists() && !force {
        return Err(AudioError::Exists(path.into()));
    }
    let werr = |m: String| AudioError::Write(path.into(), m);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new().prefix(".streamspeech-").suffix(".wav.part").tempfile_in(&dir).map_err(|e| werr(e.to_string()))?;
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
        let f = std::io::BufWriter::new(tmp.as_file().try_clone().map_err(|e| werr(e.to_string()))?);
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
    if force {
        tmp.persist(path).map_err(|e| werr(e.error.to_string()))?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| werr(e.error.to_string()))?;
    }
    Ok(())
}
