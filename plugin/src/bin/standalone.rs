//! The plugin as a standalone application (window + audio through JACK or ALSA), so the window
//! can be used and screenshotted without a DAW. `--help` lists the audio options
//! (`--backend dummy --input <wav>` runs without an audio device).
fn main() {
    nice_plug::nice_export_standalone::<streamspeech_vocoder::StreamSpeechVocoder>();
}
