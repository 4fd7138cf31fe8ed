//! Fuzz harness on stable Rust for everything that reads files users hand us.
//!
//! Why not `cargo fuzz`: it needs nightly. `cargo afl` needs its own toolchain build. This harness
//! runs in-process on stable, in the workspace's one build, so CI can run it:
//! - **seed mutation**: real files (the committed fixtures, the test clips) mutated by stacked
//!   byte-level operators (bit flips, interesting integers written over length and offset
//!   fields, range deletion/duplication, splicing two seeds, truncation), biased towards the
//!   first 4 KB where headers and pickles live;
//! - **grammar generation** for pickles: random opcode streams with plausible arguments, which
//!   reach the memo, mark and container logic byte mutation rarely does.
//!
//! The runner (`src/bin/fuzz.rs`) caps the address space (an allocation beyond the cap fails, and
//! failing is what we test for), catches panics, writes each input to disk before running it (so
//! an abort or a hang leaves the input behind) and reports executions, outcomes and peak RSS.

use std::path::{Path, PathBuf};

/// What one execution did with its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The input was accepted (it is a valid file of its kind).
    Accepted,
    /// The input was refused with an error (the expected result for most mutants).
    Refused,
}

/// A fuzz target: seeds, and a function that must never panic, abort or allocate without bound.
pub struct Target {
    pub name: &'static str,
    /// Seed files, relative to the workspace root, and how many leading bytes to keep (0: all).
    pub seeds: &'static [(&'static str, usize)],
    /// Some targets also generate inputs from a grammar.
    pub generate: Option<fn(&mut fastrand::Rng) -> Vec<u8>>,
    /// Runs one input. `scratch` is a file path the target may write the input to.
    pub run: fn(&[u8], &Path) -> Outcome,
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

fn outcome<T, E>(r: Result<T, E>) -> Outcome {
    if r.is_ok() { Outcome::Accepted } else { Outcome::Refused }
}

/// The whole checkpoint path short of building the network: read, normalise, resolve the
/// embedded config (validated), and compare against the parameters it implies.
fn run_checkpoint(bytes: &[u8], _scratch: &Path) -> Outcome {
    let path = Path::new("fuzz-input");
    let Ok(ckpt) = vocoder::checkpoint::load_bytes(path, bytes) else { return Outcome::Refused };
    let report_len = ckpt.shapes().len();
    if let Some(text) = &ckpt.embedded_config
        && let Ok(cfg) = vocoder::VocoderConfig::from_json(text)
    {
        return outcome(vocoder::model::checkpoint_report(&ckpt, &cfg));
    }
    let _ = report_len;
    Outcome::Accepted
}

fn run_pickle(bytes: &[u8], _scratch: &Path) -> Outcome {
    outcome(vocoder::checkpoint::pickle_entries(bytes))
}

/// Configs: parsed and validated, then everything sized from a valid one is built (the mel
/// front end, the parameter list).
fn run_config(bytes: &[u8], _scratch: &Path) -> Outcome {
    let Ok(text) = std::str::from_utf8(bytes) else { return Outcome::Refused };
    if let Ok(u) = vocoder::units::UnitVocoderConfig::from_json(text) {
        return outcome(vocoder::units::expected_unit_params(&u));
    }
    match vocoder::VocoderConfig::from_json(text) {
        Ok(cfg) => {
            let front = vocoder::mel::MelFrontEnd::new(&cfg);
            let (_, frames) = front.mel(&[0.0; 64]);
            let _ = frames;
            outcome(vocoder::arch::expected_params(&cfg))
        }
        Err(_) => Outcome::Refused,
    }
}

fn write_scratch(bytes: &[u8], scratch: &Path) {
    std::fs::write(scratch, bytes).expect("scratch file is writable");
}

fn run_audio(bytes: &[u8], scratch: &Path) -> Outcome {
    write_scratch(bytes, scratch);
    outcome(streamspeech_cli::audio_io::read_audio(scratch))
}

/// WAV goes through hound first (and the 12-bit path), so its own name ends in .wav.
fn run_wav(bytes: &[u8], scratch: &Path) -> Outcome {
    let wav = scratch.with_extension("wav");
    write_scratch(bytes, &wav);
    outcome(streamspeech_cli::audio_io::read_audio(&wav))
}

fn run_npy(bytes: &[u8], scratch: &Path) -> Outcome {
    let npy = scratch.with_extension("npy");
    write_scratch(bytes, &npy);
    outcome(vocoder::units::Conditioning::load(&npy, 192, 768))
}

/// Random pickle opcode streams: every opcode the reader knows and some it does not, with
/// arguments drawn from small and hostile values.
pub fn generate_pickle(rng: &mut fastrand::Rng) -> Vec<u8> {
    const SIMPLE: &[u8] = b"().0125NRQabdelostu}]\x85\x86\x87\x88\x89\x8f\x90\x91\x92\x93\x94\x81";
    let mut out = vec![0x80, rng.u8(0..6)];
    let n = rng.usize(1..300);
    let int = |rng: &mut fastrand::Rng| -> u32 {
        match rng.u8(0..6) {
            0 => u32::MAX,
            1 => 0x7fff_ffff,
            2 => rng.u32(..),
            _ => rng.u32(0..8),
        }
    };
    for _ in 0..n {
        match rng.u8(0..16) {
            0..=5 => out.push(SIMPLE[rng.usize(..SIMPLE.len())]),
            6 => {
                let s = ["storage", "cpu", "0", "w", "generator", "_metadata", "a.weight_g", "a.weight_v"][rng.usize(..8)];
                out.push(0x8c);
                out.push(s.len() as u8);
                out.extend_from_slice(s.as_bytes());
            }
            7 => {
                let g = [
                    "torch._utils\n_rebuild_tensor_v2\n",
                    "torch._utils\n_rebuild_parameter\n",
                    "torch\nFloatStorage\n",
                    "torch\nHalfStorage\n",
                    "collections\nOrderedDict\n",
                    "os\nsystem\n",
                ][rng.usize(..6)];
                out.push(b'c');
                out.extend_from_slice(g.as_bytes());
            }
            8 => {
                out.push(b'J');
                out.extend_from_slice(&int(rng).to_le_bytes());
            }
            9 => {
                out.push(b'K');
                out.push(rng.u8(..));
            }
            10 => {
                out.extend_from_slice(&[0x8a, 8]);
                out.extend_from_slice(&[int(rng).to_le_bytes(), int(rng).to_le_bytes()].concat());
            }
            11 => out.extend_from_slice(&[b'h', rng.u8(0..4)]),
            12 => out.extend_from_slice(&[b'q', rng.u8(0..4)]),
            13 => {
                out.push([b'X', b'B', 0x8b, b'j', b'r'][rng.usize(..5)]);
                out.extend_from_slice(&int(rng).to_le_bytes());
            }
            14 => out.push(rng.u8(..)),
            _ => out.extend_from_slice(&[b'G', 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18]),
        }
    }
    out.push(b'.');
    out
}

pub const TARGETS: &[Target] = &[
    Target {
        name: "safetensors",
        seeds: &[
            ("vocoder/tests/fixtures/grc_tiny/model.safetensors", 0),
            ("vocoder/tests/fixtures/broken/fp16.safetensors", 0),
            ("vocoder/tests/fixtures/units/film_tiny/cond.safetensors", 0),
            ("vocoder/tests/fixtures/grc_tiny/io.safetensors", 0),
        ],
        generate: None,
        run: run_checkpoint,
    },
    Target {
        name: "torch-zip",
        seeds: &[
            ("vocoder/tests/fixtures/grc_tiny/model_zip.pth", 0),
            ("vocoder/tests/fixtures/v1_tiny/model_zip.pth", 0),
            ("vocoder/tests/fixtures/units/code_tiny/g_tiny.pth", 0),
            ("vocoder/tests/fixtures/fairseq/zip.pt", 0),
        ],
        generate: None,
        run: run_checkpoint,
    },
    Target {
        name: "torch-legacy",
        seeds: &[
            ("vocoder/tests/fixtures/grc_tiny/model_legacy.pth", 0),
            ("vocoder/tests/fixtures/v1_tiny/model_legacy.pth", 0),
            ("vocoder/tests/fixtures/fairseq/legacy.pt", 0),
        ],
        generate: None,
        run: run_checkpoint,
    },
    Target { name: "pickle", seeds: &[], generate: Some(generate_pickle), run: run_pickle },
    Target {
        name: "config",
        seeds: &[
            ("vocoder/tests/fixtures/grc_tiny/config.json", 0),
            ("vocoder/tests/fixtures/v1_tiny/config.json", 0),
            ("vocoder/tests/fixtures/units/film_tiny/config.json", 0),
            ("vocoder/tests/fixtures/units/code_tiny/config.json", 0),
        ],
        generate: None,
        run: run_config,
    },
    Target {
        name: "wav",
        seeds: &[("tests/data/fr_cv_17299458.wav", 4096), ("tests/data/en_cmuarctic_axb_a0004.wav", 2048)],
        generate: None,
        run: run_wav,
    },
    Target {
        name: "audio",
        seeds: &[
            ("tests/data/formats/fr_1s5_mono.flac", 4096),
            ("tests/data/formats/fr_1s5_mono.mp3", 3072),
            ("tests/data/formats/fr_1s5_stereo.ogg", 8192),
        ],
        generate: None,
        run: run_audio,
    },
    Target { name: "npy", seeds: &[("vocoder/tests/fixtures/units/film_tiny/cond.npy", 0)], generate: None, run: run_npy },
];

/// Seeds for a target (the `pickle` target also takes the `data.pkl` of every zip seed).
pub fn load_seeds(t: &Target) -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = t
        .seeds
        .iter()
        .map(|(p, keep)| {
            let mut b = std::fs::read(workspace().join(p)).unwrap_or_else(|e| panic!("seed {p}: {e}"));
            if *keep > 0 {
                b.truncate(*keep);
            }
            b
        })
        .collect();
    if t.name == "pickle" {
        for p in ["vocoder/tests/fixtures/grc_tiny/model_zip.pth", "vocoder/tests/fixtures/units/code_tiny/g_tiny.pth", "vocoder/tests/fixtures/fairseq/zip.pt"] {
            let bytes = std::fs::read(workspace().join(p)).expect("zip seed");
            let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("zip seed");
            let name = z.file_names().filter_map(Result::ok).find(|n| n.ends_with("data.pkl")).expect("data.pkl").to_string();
            let mut f = z.by_name(&name).expect("data.pkl");
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut b).expect("data.pkl");
            seeds.push(b);
        }
    }
    seeds
}

const INTERESTING: [u64; 12] = [0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0xffff, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 1 << 40, u64::MAX];

/// 1–8 stacked mutations of `seed` (sometimes spliced with `other`).
pub fn mutate(rng: &mut fastrand::Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..rng.usize(1..=8) {
        if b.is_empty() {
            b.push(rng.u8(..));
        }
        // Headers, pickles and chunk tables live at the start.
        let pos = |rng: &mut fastrand::Rng, len: usize| if rng.bool() { rng.usize(..len.min(4096)) } else { rng.usize(..len) };
        let len = b.len();
        match rng.u8(0..10) {
            0 => {
                let i = pos(rng, len);
                b[i] ^= 1 << rng.u8(0..8);
            }
            1 => {
                let i = pos(rng, len);
                b[i] = INTERESTING[rng.usize(..5)] as u8;
            }
            2 | 3 => {
                let w = [2usize, 4, 8][rng.usize(..3)];
                let i = pos(rng, len);
                let v = INTERESTING[rng.usize(..INTERESTING.len())].wrapping_add(rng.u64(0..3)).wrapping_sub(1);
                let bytes = if rng.bool() { v.to_le_bytes() } else { v.to_be_bytes() };
                let end = (i + w).min(len);
                b[i..end].copy_from_slice(&bytes[..end - i]);
            }
            4 => {
                let i = pos(rng, len);
                let n = rng.usize(1..=((len - i).min(256)));
                b.drain(i..i + n);
            }
            5 => {
                let i = pos(rng, len);
                let n = rng.usize(1..=((len - i).min(256)));
                let chunk = b[i..i + n].to_vec();
                let at = pos(rng, len);
                b.splice(at..at, chunk);
            }
            6 => {
                let at = pos(rng, len);
                let n = rng.usize(1..32);
                b.splice(at..at, (0..n).map(|_| rng.u8(..)));
            }
            7 => b.truncate(rng.usize(..len)),
            8 if !other.is_empty() => {
                let at = pos(rng, len);
                let from = rng.usize(..other.len());
                let n = rng.usize(1..=((other.len() - from).min(1024)));
                b.splice(at..(at + n).min(len), other[from..from + n].iter().copied());
            }
            _ => {
                let i = pos(rng, len);
                b[i] = rng.u8(..);
            }
        }
    }
    b
}
