//! The library behind the `streamspeech-vocoder` command (also used by the host tests to compare
//! a CLI render with a DAW bounce of the same file).

pub mod audio_guard;
pub mod audio_io;
pub mod device_check;
pub mod render;
pub mod report;
pub mod translate;

/// The command's progress bar (one style for every long job).
pub fn progress_bar(len: u64, label: &str) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(len);
    b.set_style(
        indicatif::ProgressStyle::with_template("{msg:>10} [{bar:40}] {percent:>3}% {elapsed} (eta {eta})")
            .expect("template")
            .progress_chars("=> "),
    );
    b.set_message(label.to_string());
    b
}
