//! `streamspeech-vocoder device-check`: every model on the GPU against the CPU, in one table.
//!
//! For each model: parity of the GPU's output with the CPU's on real speech (max abs difference
//! and SNR; pass at ≥ [`PARITY_SNR_DB`]), whole-file real-time factors (10 s and 60 s of speech),
//! and the engine's 80 ms streaming chunk (per-chunk compute time, median and p99), on each
//! device. Without a GPU (or in a CPU build) it runs the CPU half and says why the GPU half did
//! not run; `--require-gpu` makes that an error (for `scripts/gpu_check.sh` on a GPU machine).
//!
//! Models: the default mel vocoders found in the models folder (HiFi-GAN V1 universal, the GRC-MRF
//! students), and the committed parity fixtures of the unit vocoders (CodeHiFiGAN with its
//! duration predictor, UnitHiFiGAN+FiLM with conditioning) and of the StreamSpeech translator,
//! which need no download. Threads: the CPU runs its kernels on all cores.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{Device, Tensor};
use serde::Serialize;

/// Parity bound, CPU vs GPU output (the issue's).
pub const PARITY_SNR_DB: f64 = 60.0;
/// The streaming case: the plugin's default Latency choice.
pub const STREAM_CHUNK_MS: u32 = 80;

#[derive(Clone, Debug, Default, Serialize)]
pub struct DeviceTimes {
    /// Whole-file compute seconds per audio second at 10 s and 60 s (None: not run).
    pub rtf_10s: Option<f64>,
    pub rtf_60s: Option<f64>,
    /// Per-chunk compute at the 80 ms chunk, milliseconds.
    pub chunk_median_ms: Option<f64>,
    pub chunk_p99_ms: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelRow {
    pub model: String,
    pub cpu: DeviceTimes,
    pub gpu: Option<DeviceTimes>,
    /// CPU vs GPU on the same input (None: no GPU).
    pub max_abs: Option<f64>,
    pub snr_db: Option<f64>,
    /// Discrete outputs (tokens, units, durations) identical on both devices (None: none, or no GPU).
    pub discrete_equal: Option<bool>,
    pub pass: Option<bool>,
    pub note: String,
}

#[derive(Debug, Serialize)]
pub struct DeviceCheck {
    pub build: &'static str,
    pub gpu: Option<String>,
    pub gpu_missing_reason: Option<String>,
    pub cpu_threads: usize,
    pub clip: String,
    pub rows: Vec<ModelRow>,
}

pub struct Options {
    pub models_dir: PathBuf,
    /// Real speech (any rate; looped to the lengths measured).
    pub clip: PathBuf,
    /// The repository root (for the committed unit-vocoder and translator fixtures).
    pub fixtures_root: PathBuf,
    /// Skip the 60 s whole-file case (a quick run).
    pub quick: bool,
}

/// 10·log10(Σ ref² / Σ (ref − x)²); infinite when equal.
pub fn snr_db(reference: &[f32], x: &[f32]) -> f64 {
    let n = reference.len().min(x.len());
    let (mut s, mut e) = (0.0f64, 0.0f64);
    for i in 0..n {
        s += (reference[i] as f64).powi(2);
        e += (reference[i] as f64 - x[i] as f64).powi(2);
    }
    if reference.len() != x.len() {
        return f64::NEG_INFINITY;
    }
    if e == 0.0 { f64::INFINITY } else { 10.0 * (s / e).log10() }
}

pub fn max_abs(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    a.iter().zip(b).map(|(x, y)| (x - y).abs() as f64).fold(0.0, f64::max)
}

fn percentile(mut v: Vec<f64>, p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    Some(v[i])
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>, String> {
    t.flatten_all().and_then(|t| t.to_dtype(candle_core::DType::F32)).and_then(|t| t.to_vec1::<f32>()).map_err(|e| e.to_string())
}

/// Runs the check. `gpu`: the GPU device when one answered.
pub fn run(opts: &Options, gpu: Option<&Device>, gpu_missing_reason: Option<String>, progress: &mut dyn FnMut(&str)) -> Result<DeviceCheck, String> {
    let clip = crate::audio_io::read_audio(&opts.clip).map_err(|e| format!("{}: {e}", opts.clip.display()))?;
    let speech = clip.mono();
    let mut rows = Vec::new();
    for (name, file) in [
        ("HiFi-GAN V1 universal", vocoder::fetch::default_file("original").unwrap_or("hifigan_v1_universal.safetensors")),
        ("GRC-MRF distilled", vocoder::fetch::default_file("modified").unwrap_or("grc_mrf_distilled.safetensors")),
        ("GRC-MRF causal (low latency)", vocoder::fetch::CAUSAL_MODIFIED_FILE),
    ] {
        progress(name);
        let path = opts.models_dir.join(file);
        if !path.is_file() {
            rows.push(ModelRow {
                model: name.into(),
                cpu: DeviceTimes::default(),
                gpu: None,
                max_abs: None,
                snr_db: None,
                discrete_equal: None,
                pass: None,
                note: format!("{} missing (run `models fetch`)", path.display()),
            });
            continue;
        }
        rows.push(mel_model_row(name, &path, &speech, clip.rate, gpu, opts.quick)?);
    }
    progress("CodeHiFiGAN + durations");
    rows.push(unit_row("CodeHiFiGAN + durations (fixture)", &opts.fixtures_root.join("vocoder/tests/fixtures/units/code_tiny/g_tiny.pth"), None, gpu)?);
    progress("UnitHiFiGAN + FiLM");
    let film = opts.fixtures_root.join("vocoder/tests/fixtures/units/film_tiny");
    rows.push(unit_row("UnitHiFiGAN + FiLM (fixture)", &film.join("ckpt.pth"), Some(&film.join("cond.safetensors")), gpu)?);
    progress("StreamSpeech translator");
    rows.push(translator_row(&opts.fixtures_root.join("translator/tests/fixtures"), gpu)?);
    Ok(DeviceCheck {
        build: if cfg!(feature = "cuda") { "cuda" } else { "cpu" },
        gpu: gpu.map(|_| "CUDA device 0".to_string()),
        gpu_missing_reason,
        cpu_threads: vocoder::kernels::threads(),
        clip: opts.clip.display().to_string(),
        rows,
    })
}

fn looped(speech: &[f32], rate: u32, to_rate: u32, seconds: f64) -> Vec<f32> {
    let n = (rate as f64 * seconds) as usize;
    let x: Vec<f32> = speech.iter().cycle().take(n).copied().collect();
    if rate == to_rate { x } else { engine::stream::resample_whole(&x, rate, to_rate) }
}

fn whole(v: &vocoder::Vocoder, audio: &[f32]) -> Result<(Vec<f32>, f64), String> {
    let cfg = v.config();
    let (mel, frames) = vocoder::mel::MelFrontEnd::new(cfg).mel(audio);
    let t0 = Instant::now();
    let mel = Tensor::from_slice(&mel, (1, cfg.num_mels, frames), v.device()).map_err(|e| e.to_string())?;
    // Reading the result back waits for the device: the time is the whole forward.
    let y = to_vec(&v.forward(&mel).map_err(|e| e.to_string())?)?;
    let seconds = (frames * cfg.hop_size) as f64 / cfg.sampling_rate as f64;
    Ok((y, t0.elapsed().as_secs_f64() / seconds))
}

fn chunk_times(v: Arc<vocoder::Vocoder>, audio: &[f32]) -> Result<(Option<f64>, Option<f64>), String> {
    let frames = engine::chunk_frames(&v, STREAM_CHUNK_MS);
    let block = frames * v.config().hop_size;
    let mut s = engine::stream::ModelStream::new(v, frames);
    let mut out = Vec::new();
    let mut times = Vec::new();
    for piece in audio.chunks(block) {
        let before = out.len();
        let t0 = Instant::now();
        s.push(piece, &mut out).map_err(|e| e.to_string())?;
        if out.len() > before {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    // The first chunks warm the device up (allocations, kernel JIT): not the steady state.
    let steady: Vec<f64> = times.iter().skip(3).copied().collect();
    Ok((percentile(steady.clone(), 0.5), percentile(steady, 0.99)))
}

fn mel_model_row(name: &str, path: &Path, speech: &[f32], rate: u32, gpu: Option<&Device>, quick: bool) -> Result<ModelRow, String> {
    let load = |d: &Device| vocoder::load_vocoder(path, None, d).map(|l| Arc::new(l.vocoder)).map_err(|e| format!("{name}: {}", e.detail()));
    let cpu_v = load(&Device::Cpu)?;
    let sr = cpu_v.config().sampling_rate;
    let a10 = looped(speech, rate, sr, 10.0);
    let (y_cpu, cpu10) = whole(&cpu_v, &a10)?;
    let cpu60 = if quick { None } else { Some(whole(&cpu_v, &looped(speech, rate, sr, 60.0))?.1) };
    let (cm, cp) = chunk_times(cpu_v.clone(), &a10)?;
    let cpu = DeviceTimes { rtf_10s: Some(cpu10), rtf_60s: cpu60, chunk_median_ms: cm, chunk_p99_ms: cp };
    let Some(g) = gpu else {
        return Ok(ModelRow { model: name.into(), cpu, gpu: None, max_abs: None, snr_db: None, discrete_equal: None, pass: None, note: String::new() });
    };
    let gpu_v = load(g)?;
    // Warm-up: the first forward compiles the kernels for this GPU and sizes the allocator.
    whole(&gpu_v, &a10[..sr as usize])?;
    let (y_gpu, gpu10) = whole(&gpu_v, &a10)?;
    let gpu60 = if quick { None } else { Some(whole(&gpu_v, &looped(speech, rate, sr, 60.0))?.1) };
    let (gm, gp) = chunk_times(gpu_v, &a10)?;
    let snr = snr_db(&y_cpu, &y_gpu);
    Ok(ModelRow {
        model: name.into(),
        cpu,
        gpu: Some(DeviceTimes { rtf_10s: Some(gpu10), rtf_60s: gpu60, chunk_median_ms: gm, chunk_p99_ms: gp }),
        max_abs: Some(max_abs(&y_cpu, &y_gpu)),
        snr_db: Some(snr),
        discrete_equal: None,
        pass: Some(snr >= PARITY_SNR_DB),
        note: String::new(),
    })
}

fn unit_row(name: &str, path: &Path, cond: Option<&Path>, gpu: Option<&Device>) -> Result<ModelRow, String> {
    let run = |d: &Device| -> Result<(Vec<f32>, Option<Vec<u32>>, f64), String> {
        let v = vocoder::units::load_unit_vocoder(path, None, d).map_err(|e| format!("{name}: {}", e.detail()))?.vocoder;
        let cond = match cond {
            Some(c) => Some(vocoder::units::Conditioning::load(c, 192, 768).map_err(|e| e.to_string())?),
            None => None,
        };
        let vocab = v.config().num_embeddings as i64;
        // A deterministic unit sequence covering the vocabulary, long enough to be a real load.
        let units: Vec<i64> = (0..400).map(|i| (i * 37 + 11) % vocab).collect();
        let dur = v.has_duration_predictor();
        let speaker = if v.config().multispkr && !v.config().speaker_is_vector() { Some(0) } else { None };
        v.synthesize(&units[..16], speaker, dur, cond.as_ref()).map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let out = v.synthesize(&units, speaker, dur, cond.as_ref()).map_err(|e| e.to_string())?;
        let rtf = t0.elapsed().as_secs_f64() / (out.audio.len() as f64 / v.config().sampling_rate as f64);
        Ok((out.audio, out.durations, rtf))
    };
    fixture_row(name, "tiny parity fixture: RTF not representative", run, gpu)
}

/// A fixture model's row: `run` gives its output, its discrete output (if any) and its RTF on a
/// device; the GPU's must match the CPU's (SNR, and the discrete output exactly).
fn fixture_row<D: PartialEq>(name: &str, note: &str, run: impl Fn(&Device) -> Result<(Vec<f32>, Option<D>, f64), String>, gpu: Option<&Device>) -> Result<ModelRow, String> {
    let (y_cpu, d_cpu, rtf_cpu) = run(&Device::Cpu)?;
    let cpu = DeviceTimes { rtf_10s: Some(rtf_cpu), ..Default::default() };
    let Some(g) = gpu else {
        return Ok(ModelRow { model: name.into(), cpu, gpu: None, max_abs: None, snr_db: None, discrete_equal: None, pass: None, note: note.into() });
    };
    let (y_gpu, d_gpu, rtf_gpu) = run(g)?;
    let snr = snr_db(&y_cpu, &y_gpu);
    let equal = d_cpu == d_gpu;
    Ok(ModelRow {
        model: name.into(),
        cpu,
        gpu: Some(DeviceTimes { rtf_10s: Some(rtf_gpu), ..Default::default() }),
        max_abs: Some(max_abs(&y_cpu, &y_gpu)),
        snr_db: Some(snr),
        discrete_equal: d_cpu.is_some().then_some(equal),
        pass: Some(snr >= PARITY_SNR_DB && equal),
        note: note.into(),
    })
}

fn translator_row(fixtures: &Path, gpu: Option<&Device>) -> Result<ModelRow, String> {
    let name = "StreamSpeech translator (fixture)";
    let mt = translator::model::MtSettings { layers: 2, embed_dim: 32, ffn_embed_dim: 64, attention_heads: 4 };
    let features = candle_core::safetensors::load(fixtures.join("fbank_ref.safetensors"), &Device::Cpu).map_err(|e| e.to_string())?;
    let features = features.get("cmvn").ok_or("fbank_ref.safetensors: no cmvn")?.unsqueeze(0).map_err(|e| e.to_string())?;
    let audio_seconds = features.dim(1).map_err(|e| e.to_string())? as f64 * 0.01;
    let run = |d: &Device| -> Result<(Vec<f32>, Option<Vec<Vec<u32>>>, f64), String> {
        let (model, _) = translator::model::StreamSpeech::load(&fixtures.join("streamspeech/small.pt"), mt, d).map_err(|e| format!("{name}: {e}"))?;
        let f = features.to_device(d).map_err(|e| e.to_string())?;
        model.translate(&f, 40).map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let out = model.translate(&f, 40).map_err(|e| e.to_string())?;
        let seconds = t0.elapsed().as_secs_f64();
        let ids = vec![out.asr.tokens.clone(), out.st.tokens.clone(), out.mt_tokens.clone(), out.units.clone()];
        Ok((to_vec(&out.encoder_out)?, Some(ids), seconds / audio_seconds))
    };
    fixture_row(name, "small parity fixture: encoder output compared, ASR/ST/MT tokens and units must be equal", run, gpu)
}

fn cell(v: Option<f64>, digits: usize) -> String {
    v.map_or("—".into(), |v| format!("{v:.digits$}"))
}

/// The table, as Markdown.
pub fn table(c: &DeviceCheck) -> String {
    let mut s = String::new();
    s += &format!(
        "{} build; GPU: {}; CPU threads: {}; clip: {}\n\n",
        c.build,
        c.gpu.clone().unwrap_or_else(|| format!("none ({})", c.gpu_missing_reason.clone().unwrap_or_default())),
        c.cpu_threads,
        c.clip
    );
    s += "| model | CPU RTF 10 s | CPU RTF 60 s | GPU RTF 10 s | GPU RTF 60 s | GPU × real time (60 s) | 80 ms chunk CPU median / p99 (ms) | 80 ms chunk GPU median / p99 (ms) | max abs | SNR (dB) | discrete equal | parity ≥ 60 dB |\n";
    s += "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for r in &c.rows {
        let g = r.gpu.clone().unwrap_or_default();
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} / {} | {} / {} | {} | {} | {} | {} |{}\n",
            r.model,
            cell(r.cpu.rtf_10s, 4),
            cell(r.cpu.rtf_60s, 4),
            cell(g.rtf_10s, 5),
            cell(g.rtf_60s, 5),
            cell(g.rtf_60s.or(g.rtf_10s).map(|x| 1.0 / x), 0),
            cell(r.cpu.chunk_median_ms, 2),
            cell(r.cpu.chunk_p99_ms, 2),
            cell(g.chunk_median_ms, 2),
            cell(g.chunk_p99_ms, 2),
            r.max_abs.map_or("—".into(), |v| format!("{v:.2e}")),
            cell(r.snr_db, 1),
            r.discrete_equal.map_or("—", |e| if e { "yes" } else { "NO" }),
            r.pass.map_or("—", |p| if p { "pass" } else { "FAIL" }),
            if r.note.is_empty() { String::new() } else { format!(" {}", r.note) }
        );
    }
    s
}
