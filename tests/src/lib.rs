//! Host harnesses shared by the host-level tests. Both load the **built bundles** from
//! `target/bundled/` (built first by `cargo xtask test`), and refuse to run against a bundle that
//! is older than the plugin's sources.

pub mod clap_host;
pub mod signals;
pub mod vst3_host;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub const BUNDLE_NAME: &str = "StreamSpeech Vocoder";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn bundled_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("bundled")
}

pub fn clap_bundle() -> PathBuf {
    let p = bundled_dir().join(format!("{BUNDLE_NAME}.clap"));
    assert_fresh(&p);
    p
}

/// The VST3 bundle's shared library (Linux layout).
pub fn vst3_library() -> PathBuf {
    let arch = if cfg!(target_arch = "aarch64") { "aarch64-linux" } else { "x86_64-linux" };
    let p = bundled_dir()
        .join(format!("{BUNDLE_NAME}.vst3"))
        .join("Contents")
        .join(arch)
        .join(format!("{BUNDLE_NAME}.so"));
    assert_fresh(&p);
    p
}

fn newest_mtime(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            let t = if p.is_dir() {
                newest_mtime(&p)
            } else {
                e.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH)
            };
            newest = newest.max(t);
        }
    }
    newest
}

/// Panics when the bundle is missing or older than any plugin source: a stale bundle would test
/// code that is not the code under review.
fn assert_fresh(bundle: &Path) {
    let meta = std::fs::metadata(bundle).unwrap_or_else(|_| {
        panic!(
            "{} is missing: run the tests with `cargo xtask test`, which bundles the plugin first",
            bundle.display()
        )
    });
    let bundle_time = meta.modified().unwrap();
    let src_time = newest_mtime(&workspace_root().join("plugin/src"))
        .max(newest_mtime(&workspace_root().join("plugin/Cargo.toml")));
    assert!(
        bundle_time >= src_time,
        "{} is older than the plugin sources: run `cargo xtask test` (it re-bundles first)",
        bundle.display()
    );
}
