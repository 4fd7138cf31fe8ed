//! Benchmark: peak memory and time of loading model files, against the issue #18 targets:
//! peak ≤ 2 × the model's own size + 64 MB, and a file that cannot be a model refused within
//! 1 s. Each file is loaded in a fresh child process (peak RSS is per process).
//!
//! `cargo run --release -p host-tests --bin load_memory [FILES...]` (default: the models in
//! `models/`, the fixtures in every format, and hostile cases built here).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn vm_hwm_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

fn child(file: &Path) {
    let before = vm_hwm_kb();
    let t = Instant::now();
    let r = vocoder::load_vocoder(file, None, &candle_core::Device::Cpu);
    let secs = t.elapsed().as_secs_f64();
    let peak = vm_hwm_kb().saturating_sub(before) * 1024;
    let (model_bytes, status) = match &r {
        Ok(l) => (l.vocoder.param_count() * 4, "loaded".to_string()),
        Err(e) => (0, format!("refused: {}", e.detail().lines().next().unwrap_or("").chars().take(70).collect::<String>())),
    };
    println!("{}\t{model_bytes}\t{peak}\t{secs}\t{status}", file.display());
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        child(Path::new(&args[1]));
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let scratch = root.join("target/load-memory");
    std::fs::create_dir_all(&scratch).unwrap();
    let mut files: Vec<PathBuf> = args.iter().map(PathBuf::from).collect();
    if files.is_empty() {
        for f in ["models/hifigan_v1_universal.safetensors", "models/grc_mrf_distilled.safetensors", "vocoder/tests/fixtures/grc_tiny/model_zip.pth", "vocoder/tests/fixtures/grc_tiny/model_legacy.pth", "vocoder/tests/fixtures/grc_complex/checkpoint.pth"] {
            files.push(root.join(f));
        }
        // Cannot be models: a sparse 2 GiB file, /dev/zero, a file of random bytes.
        let sparse = scratch.join("sparse-2GiB.bin");
        std::fs::File::create(&sparse).unwrap().set_len(2 << 30).unwrap();
        files.push(sparse);
        // 2 GiB files with a valid PyTorch zip / legacy start and nothing else.
        for (name, head) in [("zip-2GiB.pth", &b"PK\x03\x04"[..]), ("legacy-2GiB.pth", &[0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e, 0x80, 0x02, 0xff][..])] {
            let p = scratch.join(name);
            std::fs::write(&p, head).unwrap();
            std::fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(2 << 30).unwrap();
            files.push(p);
        }
        files.push(PathBuf::from("/dev/zero"));
        let noise = scratch.join("noise-64MiB.pth");
        let mut rng = 0x2545f4914f6cdd1du64;
        let bytes: Vec<u8> = (0..64 << 20).map(|_| { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; rng as u8 }).collect();
        std::fs::write(&noise, bytes).unwrap();
        files.push(noise);
    }
    println!("{:<48} {:>10} {:>10} {:>12} {:>8} {:>7}  result", "file", "model MB", "peak MB", "limit MB", "ratio", "seconds");
    let mut worst: f64 = 0.0;
    for f in &files {
        let o = Command::new(std::env::current_exe().unwrap()).args(["--child", f.to_str().unwrap()]).output().unwrap();
        let line = String::from_utf8_lossy(&o.stdout);
        let cols: Vec<&str> = line.trim_end().split('\t').collect();
        if cols.len() < 5 {
            println!("{}: child failed: {}", f.display(), String::from_utf8_lossy(&o.stderr));
            continue;
        }
        let model: f64 = cols[1].parse().unwrap();
        let peak: f64 = cols[2].parse().unwrap();
        let limit = 2.0 * model + (64u64 << 20) as f64;
        let ratio = peak / limit;
        worst = worst.max(ratio);
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        println!("{:<48} {:>10.1} {:>10.1} {:>12.1} {:>8.2} {:>7.3}  {}", name, model / 1e6, peak / 1e6, limit / 1e6, ratio, cols[3].parse::<f64>().unwrap(), cols[4]);
    }
    println!("worst peak / (2 × model + 64 MB) = {worst:.2} (target ≤ 1)");
}
