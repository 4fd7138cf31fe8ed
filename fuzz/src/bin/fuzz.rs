//! `fuzz [TARGET|all] [--execs N] [--seconds S] [--seed X] [--rss-mb M] [--out DIR]`
//!
//! Runs each target until N executions or S seconds, whichever comes first, under an
//! address-space cap of M MB (default 2048: any allocation beyond it fails, and a failure is
//! what the readers must survive). Panics are caught and saved as crashes; an abort or a hang
//! (one input running over 10 s) kills the process and leaves `current.bin` in DIR (default
//! target/fuzz). Exit 0 only when no input crashed.

use std::io::{Seek, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fuzz::{Outcome, TARGETS, load_seeds, mutate};

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn peak_rss_mb() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    u.ru_maxrss as f64 / 1024.0
}

static EXECS: AtomicU64 = AtomicU64::new(0);

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().filter(|a| !a.starts_with("--")).cloned().unwrap_or_else(|| "all".into());
    let execs: u64 = arg(&args, "--execs", 1_000_000);
    let seconds: f64 = arg(&args, "--seconds", f64::INFINITY);
    let seed: u64 = arg(&args, "--seed", 1);
    let rss_mb: u64 = arg(&args, "--rss-mb", 2048);
    let out = std::path::PathBuf::from(arg(&args, "--out", "target/fuzz".to_string()));
    // `--replay FILE`: run one input on the target, panics and all (for a backtrace).
    if let Some(file) = args.iter().position(|a| a == "--replay").and_then(|i| args.get(i + 1)) {
        let t = TARGETS.iter().find(|t| t.name == which).ok_or_else(|| anyhow::anyhow!("--replay needs a TARGET"))?;
        let scratch = std::env::temp_dir().join(format!("fuzz-replay-{}", std::process::id()));
        println!("{:?}", (t.run)(&std::fs::read(file)?, &scratch));
        return Ok(());
    }
    std::fs::create_dir_all(out.join("crashes"))?;

    let cap = libc::rlimit { rlim_cur: rss_mb << 20, rlim_max: rss_mb << 20 };
    // SAFETY: plain syscall on a struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_AS, &cap) } != 0 {
        anyhow::bail!("setrlimit failed");
    }
    // Panics are expected to be rare and are reported by the loop; keep stderr readable.
    std::panic::set_hook(Box::new(|_| {}));
    // Watchdog: an input that runs for over 10 s is a hang.
    std::thread::spawn(|| {
        let mut last = u64::MAX;
        loop {
            std::thread::sleep(Duration::from_secs(10));
            let now = EXECS.load(Ordering::Relaxed);
            if now == last {
                eprintln!("HANG: one input ran for over 10 s (left in current.bin)");
                std::process::abort();
            }
            last = now;
        }
    });

    let mut current = std::fs::File::create(out.join("current.bin"))?;
    let scratch = out.join(format!("scratch-{}", std::process::id()));
    let mut crashes_total = 0;
    println!("target        execs      seconds  execs/s   accepted  refused  crashes  peak RSS MB");
    for t in TARGETS.iter().filter(|t| which == "all" || t.name == which) {
        let seeds = load_seeds(t);
        let mut rng = fastrand::Rng::with_seed(seed ^ t.name.bytes().fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(b as u64)));
        let start = Instant::now();
        let (mut accepted, mut refused, mut crashes, mut n) = (0u64, 0u64, 0u64, 0u64);
        // Seeds first, unmutated: they must be accepted.
        for (i, s) in seeds.iter().enumerate() {
            if (t.run)(s, &scratch) != Outcome::Accepted && t.seeds.get(i).is_some_and(|(_, keep)| *keep == 0) {
                eprintln!("note: {} seed {i} is refused unmutated", t.name);
            }
        }
        while n < execs && start.elapsed().as_secs_f64() < seconds {
            let input = match (t.generate, seeds.is_empty()) {
                (Some(g), true) => g(&mut rng),
                (Some(g), false) if rng.u8(0..3) == 0 => g(&mut rng),
                _ => {
                    let a = &seeds[rng.usize(..seeds.len())];
                    let b = &seeds[rng.usize(..seeds.len())];
                    mutate(&mut rng, a, b)
                }
            };
            current.set_len(0)?;
            current.rewind()?;
            current.write_all(&input)?;
            match std::panic::catch_unwind(|| (t.run)(&input, &scratch)) {
                Ok(Outcome::Accepted) => accepted += 1,
                Ok(Outcome::Refused) => refused += 1,
                Err(p) => {
                    crashes += 1;
                    let msg = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default();
                    let file = out.join("crashes").join(format!("{}-{crashes}.bin", t.name));
                    std::fs::write(&file, &input)?;
                    eprintln!("CRASH {}: {msg} (input saved to {})", t.name, file.display());
                }
            }
            n += 1;
            EXECS.store(EXECS.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{:<12} {:>9} {:>10.1} {:>8.0} {:>10} {:>8} {:>8} {:>12.0}",
            t.name,
            n,
            secs,
            n as f64 / secs,
            accepted,
            refused,
            crashes,
            peak_rss_mb()
        );
        crashes_total += crashes;
    }
    let _ = std::fs::remove_file(&scratch);
    for ext in ["wav", "npy"] {
        let _ = std::fs::remove_file(scratch.with_extension(ext));
    }
    if crashes_total > 0 {
        anyhow::bail!("{crashes_total} crashing inputs (in {})", out.join("crashes").display());
    }
    Ok(())
}
