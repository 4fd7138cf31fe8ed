//! The window in Translate: the Translator card, a unit vocoder card per mode, the live ASR
//! (Spanish) and translation (English) text — committed text distinct from the tentative — with
//! the last minute scrolling, and the queue's backlog. Loading checks the files on a thread of
//! its own first and only then replaces the slot (a file that does not load leaves the slot as
//! it was, with the reason shown), then asks for a re-plan.

use std::sync::atomic::Ordering;

use egui::{Color32, RichText};

use super::{PLAYING, VocoderWindow, mode_card_frame, mode_name};
use crate::params::Mode;
use crate::translate::{self, TranslatorFiles, TranslatorStatus, UnitVoiceFile, VoiceStatus};

const COMMITTED: Color32 = Color32::from_rgb(235, 235, 235);
const TENTATIVE: Color32 = Color32::from_rgb(140, 150, 170);
const BAD: Color32 = Color32::from_rgb(255, 120, 100);
/// The current utterance shows its last this many characters (a long one scrolls off the start).
const TAIL_CHARS: usize = 240;

/// The end of `s`, at most `n` characters, "…" in front when cut.
fn tail(s: &str, n: usize) -> String {
    let count = s.chars().count();
    if count <= n {
        return s.to_string();
    }
    let cut: String = s.chars().skip(count - n).collect();
    format!("…{}", cut.trim_start())
}

/// The Translate panel's text fields and its last load message.
#[derive(Default)]
pub struct TranslateFields {
    checkpoint: String,
    data: String,
    unit: [String; 2],
    cond: [String; 2],
    /// The last refusal per card (translator, Original voice, Modified voice).
    pub message: std::sync::Arc<parking_lot::Mutex<[Option<String>; 3]>>,
    filled: bool,
    /// A path picked in a file dialog (which field, the path), taken into the field next frame.
    picked: std::sync::Arc<parking_lot::Mutex<Option<(Field, String)>>>,
}

/// The panel's path fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Checkpoint,
    Data,
    Unit(usize),
    Cond(usize),
}

impl VocoderWindow {
    pub(super) fn translate_panel(&mut self, ui: &mut egui::Ui) {
        if !self.translate.filled {
            // The fields start with the persisted files.
            if let Some(f) = self.params.translator.read().clone() {
                self.translate.checkpoint = f.checkpoint;
                self.translate.data = f.data;
            }
            for (i, u) in [self.params.unit_original.read().clone(), self.params.unit_modified.read().clone()].into_iter().enumerate() {
                if let Some(u) = u {
                    self.translate.unit[i] = u.path;
                    self.translate.cond[i] = u.cond.unwrap_or_default();
                }
            }
            self.translate.filled = true;
        }
        let picked = self.translate.picked.lock().take();
        if let Some((field, path)) = picked {
            *self.field_mut(field) = path;
        }
        let slots = self.shared.translate.read().clone();
        self.translator_card(ui, slots.as_ref().map(|s| &s.translator));
        ui.columns(2, |cols| {
            for (i, mode) in [Mode::Original, Mode::Modified].into_iter().enumerate() {
                self.voice_card(&mut cols[i], mode, slots.as_ref().map(|s| &s.voices[i]));
            }
        });
        for m in self.translate.message.lock().iter().flatten() {
            ui.label(RichText::new(m).color(BAD));
        }
        self.live_text(ui);
    }

    fn translator_card(&mut self, ui: &mut egui::Ui, status: Option<&TranslatorStatus>) {
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.set_width(ui.available_width());
            let (badge, colour) = match status {
                Some(TranslatorStatus::Ready { .. }) => ("READY", Color32::from_rgb(120, 200, 120)),
                Some(TranslatorStatus::NotSet) | None => ("NOT SET", Color32::from_rgb(200, 200, 120)),
                Some(_) => ("DRY", Color32::from_rgb(240, 130, 100)),
            };
            ui.horizontal(|ui| {
                ui.label(RichText::new("Translator").size(17.0).strong());
                ui.label("StreamSpeech: Spanish speech to English speech");
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    ui.label(RichText::new(format!(" {badge} ")).background_color(colour).color(Color32::BLACK).strong());
                });
            });
            ui.label(status.map_or_else(|| "not active".into(), |s| s.summary()));
            ui.horizontal(|ui| {
                ui.label("checkpoint");
                ui.add(egui::TextEdit::singleline(&mut self.translate.checkpoint).hint_text("streamspeech.simultaneous.es-en.pt").desired_width(ui.available_width() * 0.42));
                self.browse(ui, Field::Checkpoint);
                ui.label("data");
                ui.add(egui::TextEdit::singleline(&mut self.translate.data).hint_text("folder with config yaml, gcmvn.npz, dictionaries").desired_width(ui.available_width() - 90.0));
                self.browse(ui, Field::Data);
                if ui.button("Load").on_hover_text("Checked first; replaces the translator only if it loads").clicked() {
                    self.load_translator();
                }
            });
            if let Some(TranslatorStatus::Ready { report, .. }) = status {
                ui.toggle_value(&mut self.details_open[0], "details");
                if self.details_open[0] {
                    egui::ScrollArea::vertical().id_salt("translator-details").max_height(120.0).show(ui, |ui| {
                        ui.label(RichText::new(report).monospace().size(11.0));
                    });
                }
            }
        });
    }

    fn voice_card(&mut self, ui: &mut egui::Ui, mode: Mode, status: Option<&VoiceStatus>) {
        let i = mode.slot();
        let active = self.params.mode.value() == mode;
        mode_card_frame(ui, active).show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.horizontal(|ui| {
                ui.label(RichText::new(format!("{} voice", mode_name(mode))).size(17.0).strong());
                if active {
                    ui.label(RichText::new("playing").color(PLAYING));
                }
            });
            let want = if mode == Mode::Original { "CodeHiFiGAN (+ duration prediction)" } else { "UnitHiFiGAN+FiLM + conditioning" };
            ui.label(RichText::new(want).weak());
            ui.label(status.map_or_else(|| "not active".into(), |s| s.summary()));
            ui.horizontal(|ui| {
                ui.add(egui::TextEdit::singleline(&mut self.translate.unit[i]).hint_text("unit vocoder checkpoint").desired_width(ui.available_width() - 40.0));
                self.browse(ui, Field::Unit(i));
            });
            ui.horizontal(|ui| {
                ui.add(egui::TextEdit::singleline(&mut self.translate.cond[i]).hint_text("conditioning (FiLM), optional").desired_width(ui.available_width() - 100.0));
                self.browse(ui, Field::Cond(i));
                if ui.button("Load").clicked() {
                    self.load_voice(mode);
                }
            });
        });
    }

    fn live_text(&mut self, ui: &mut egui::Ui) {
        let live = self.shared.live.clone();
        let text = live.text.lock().clone();
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new("Live translation").strong());
            ui.separator();
            let backlog = live.backlog_ms.load(Ordering::Relaxed);
            ui.label(format!("backlog {backlog:.0} ms")).on_hover_text("How far the translated speech queue runs behind decision + fixed delay");
            ui.add(egui::ProgressBar::new((backlog / 30_000.0).clamp(0.0, 1.0)).desired_width(120.0));
            let dropped = live.dropped_ms.load(Ordering::Relaxed);
            if dropped > 0.0 {
                ui.label(RichText::new(format!("dropped {dropped:.0} ms (queue full)")).color(BAD));
            }
            ui.separator();
            ui.label(format!("{} segments, {} writes", live.segments.load(Ordering::Relaxed), live.writes.load(Ordering::Relaxed)));
        });
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.set_width(ui.available_width());
            egui::ScrollArea::vertical().id_salt("live-text").max_height(96.0).stick_to_bottom(true).show(ui, |ui| {
                for (at, asr, tr) in &text.done {
                    ui.label(RichText::new(format!("{:>6.1} s  es: {asr}", at / 1000.0)).color(COMMITTED));
                    ui.label(RichText::new(format!("          en: {tr}")).color(COMMITTED).strong());
                }
                ui.horizontal_wrapped(|ui| {
                    ui.label(RichText::new(format!("{:>6.1} s  es: ", text.at_ms / 1000.0)).color(COMMITTED));
                    ui.label(RichText::new(tail(&text.asr, TAIL_CHARS)).color(COMMITTED));
                });
                ui.horizontal_wrapped(|ui| {
                    ui.label(RichText::new("          en: ").color(COMMITTED));
                    ui.label(RichText::new(tail(&text.translation, TAIL_CHARS)).color(COMMITTED).strong());
                    // The ST CTC's reading beyond what is committed: tentative, greyed.
                    let tentative = text.tentative.strip_prefix(text.translation.as_str()).unwrap_or(&text.tentative);
                    ui.label(RichText::new(tail(tentative, TAIL_CHARS / 2)).color(TENTATIVE).italics());
                });
            });
        });
    }

    fn field_mut(&mut self, field: Field) -> &mut String {
        match field {
            Field::Checkpoint => &mut self.translate.checkpoint,
            Field::Data => &mut self.translate.data,
            Field::Unit(i) => &mut self.translate.unit[i],
            Field::Cond(i) => &mut self.translate.cond[i],
        }
    }

    /// A "…" button: a file (or, for the data directory, folder) dialog on a thread of its own
    /// that fills the field; Load still checks before anything is replaced.
    fn browse(&self, ui: &mut egui::Ui, field: Field) {
        if !ui.small_button("…").on_hover_text("Browse (or paste the path into the field)").clicked() {
            return;
        }
        let picked = self.translate.picked.clone();
        let _ = std::thread::Builder::new().name("streamspeech-browse".into()).spawn(move || {
            let dialog = rfd::FileDialog::new().set_title(match field {
                Field::Checkpoint => "The StreamSpeech checkpoint",
                Field::Data => "The StreamSpeech data directory (configs/es-en)",
                Field::Unit(_) => "A unit vocoder",
                Field::Cond(_) => "The unit vocoder's conditioning",
            });
            let path = if field == Field::Data { dialog.pick_folder() } else { dialog.pick_file() };
            if let Some(p) = path {
                *picked.lock() = Some((field, p.display().to_string()));
            }
        });
    }

    fn load_translator(&self) {
        let files = TranslatorFiles { checkpoint: self.translate.checkpoint.trim().into(), data: self.translate.data.trim().into() };
        let choice = self.params.latency.value();
        let (params, shared, message) = (self.params.clone(), self.shared.clone(), self.translate.message.clone());
        let _ = std::thread::Builder::new().name("streamspeech-translator-load".into()).spawn(move || {
            match translate::load_translator(Some(&files), translate::segment_ms(choice)) {
                TranslatorStatus::Ready { .. } => {
                    *params.translator.write() = Some(files);
                    message.lock()[0] = None;
                    shared.replan_requested.store(true, Ordering::Release);
                }
                s => message.lock()[0] = Some(format!("translator not replaced: {}", s.summary())),
            }
        });
    }

    fn load_voice(&self, mode: Mode) {
        let i = mode.slot();
        let path = self.translate.unit[i].trim().to_string();
        let cond = Some(self.translate.cond[i].trim().to_string()).filter(|c| !c.is_empty());
        let (params, shared, message) = (self.params.clone(), self.shared.clone(), self.translate.message.clone());
        let _ = std::thread::Builder::new().name("streamspeech-voice-load".into()).spawn(move || {
            let file = (!path.is_empty()).then_some(UnitVoiceFile { path, cond });
            let translator = shared.translate.read().as_ref().and_then(|s| s.translator.translator());
            let status = translate::load_voice(file.as_ref(), translator.as_deref());
            if file.is_none() || status.voice().is_some() {
                let slot = if mode == Mode::Original { &params.unit_original } else { &params.unit_modified };
                *slot.write() = file;
                message.lock()[1 + i] = None;
                shared.replan_requested.store(true, Ordering::Release);
            } else {
                message.lock()[1 + i] = Some(format!("{} voice not replaced: {}", mode_name(mode), status.summary()));
            }
        });
    }
}
