//! The full-size es→en model (70.6 M parameters) in the real format: a generated checkpoint
//! (`translator::synthetic`, f16 weights as the released models were trained, plus fairseq's
//! fp32 Adam state for every parameter: ≈0.7 GB) loads strictly, and the load's peak RSS, the
//! whole process's, stays within the bound of 1.5 × the model's own f32 size. The
//! optimizer state is never read.
//!
//! One test in its own binary: peak RSS is per process.

#[cfg(target_os = "linux")]
#[test]
fn full_size_checkpoint_loads_within_memory_bound() {
    use translator::model::StreamSpeech;
    use translator::synthetic::{self, StoredAs, SyntheticCheckpoint};

    fn status_kb(field: &str) -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        s.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap()
    }

    let cfg = synthetic::es_en_full_size();
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("streamspeech.simultaneous.es-en.generated.pt");
    let w = synthetic::write(&path, &SyntheticCheckpoint { cfg: &cfg, stored_as: StoredAs::F16, seed: 1, optimizer_state: true }).unwrap();
    assert_eq!(w.parameters, 70_604_768);
    assert!(w.bytes > 700_000_000, "{} bytes: model and optimizer state", w.bytes);
    // Peak RSS from here on: writing "5" to clear_refs resets VmHWM to the current RSS.
    std::fs::write("/proc/self/clear_refs", "5").expect("resets the peak RSS");
    let before = status_kb("VmHWM:") * 1024;
    let t = std::time::Instant::now();
    let (model, report) = StreamSpeech::load(&path, synthetic::es_en_mt_settings(), &candle_core::Device::Cpu).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let peak = status_kb("VmHWM:") * 1024;
    assert!(report.is_clean(), "{report}");
    assert_eq!(model.cfg, cfg);
    let f32_bytes = (w.parameters * 4) as u64;
    println!(
        "file {:.0} MB; model {:.1} MB as f32; RSS before {:.1} MB, peak {:.1} MB = {:.2} × the f32 model; {secs:.2} s",
        w.bytes as f64 / 1e6,
        f32_bytes as f64 / 1e6,
        before as f64 / 1e6,
        peak as f64 / 1e6,
        peak as f64 / f32_bytes as f64
    );
    assert!(peak as f64 <= 1.5 * f32_bytes as f64, "peak RSS {peak} > 1.5 × {f32_bytes}");
}
