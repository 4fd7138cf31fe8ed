//! The CI smoke run of the fuzz harness: every target for a few seconds under the memory cap
//! (about 100 s in all). The million-execution runs are `cargo xtask fuzz` (README).

use std::process::Command;

#[test]
fn every_target_runs_clean_for_a_few_seconds() {
    let out = fuzz::workspace().join("target/fuzz-smoke");
    let o = Command::new(env!("CARGO_BIN_EXE_fuzz"))
        .args(["all", "--seconds", "12", "--seed", &std::process::id().to_string(), "--out", out.to_str().unwrap()])
        .output()
        .expect("fuzz runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "crashing inputs are in {}:\n{stdout}\n{stderr}", out.display());
    for t in fuzz::TARGETS {
        let row = stdout.lines().find(|l| l.split_whitespace().next() == Some(t.name)).unwrap_or_else(|| panic!("no row for {}:\n{stdout}", t.name));
        let cols: Vec<&str> = row.split_whitespace().collect();
        let (execs, accepted, refused, crashes): (u64, u64, u64, u64) =
            (cols[1].parse().unwrap(), cols[4].parse().unwrap(), cols[5].parse().unwrap(), cols[6].parse().unwrap());
        assert!(execs >= 1000, "{}: only {execs} executions", t.name);
        assert_eq!(crashes, 0, "{row}");
        // The mutants must reach both sides: some still valid, most refused.
        assert!(accepted > 0 && refused > 0, "{row}");
    }
    println!("{stdout}");
}
