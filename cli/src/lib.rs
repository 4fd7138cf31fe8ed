//! The library behind the `streamspeech-vocoder` command (also used by the host tests to compare
//! a CLI render with a DAW bounce of the same file).

pub mod audio_guard;
pub mod audio_io;
pub mod render;
pub mod report;
pub mod translate;
