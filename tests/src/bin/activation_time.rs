//! How long the bundled CLAP plugin takes to activate, with the default models, at rates from
//! 8 to 768 kHz: the first activation at each rate (a new instance) and a warm re-activation
//! (deactivate → activate at the same rate), as a host's restart does. A benchmark, not a test:
//! `cargo run --release -p host-tests --bin activation_time` (after `cargo xtask bundle
//! streamspeech_vocoder --release`, or against the host-test bundle).

use std::time::Instant;

use host_tests::clap_host::{ClapPlugin, load_entry, use_models};

fn main() {
    use_models(true);
    let entry = load_entry();
    // The models load once per process (cached); pay that first, as a host's first instance does.
    let t = Instant::now();
    let mut p = ClapPlugin::new(&entry);
    p.activate(48_000.0, 1, 512);
    println!("first activation in this process (incl. model load): {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    p.deactivate();
    println!("{:>12} {:>14} {:>14} {:>14}", "rate (Hz)", "first (ms)", "warm (ms)", "deactivate (ms)");
    for rate in [8_000.0, 22_050.0, 44_100.0, 48_000.0, 96_000.0, 123_456.78, 192_000.0, 384_000.0, 768_000.0] {
        let mut p = ClapPlugin::new(&entry);
        let t = Instant::now();
        p.activate(rate, 1, 512);
        let first = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        p.deactivate();
        let deact = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        p.activate(rate, 1, 512);
        let warm = t.elapsed().as_secs_f64() * 1e3;
        p.deactivate();
        println!("{rate:>12.2} {first:>14.1} {warm:>14.1} {deact:>14.1}");
    }
}
