//! The plugin window (egui through nice-plug-egui): mode, latency, mix and output; both model
//! slots with their load status, checkpoint report and a Load… button; live log-mel
//! spectrograms of the input and the wet output; the engine's meters.
//!
//! What it shows is computed in [`crate::view`] (unit-tested without a window); this file only
//! draws. The window never touches the audio thread: it reads the shared state the main thread
//! writes on activation ([`EditorShared`]), the engine's atomics, and the worker's spectrogram
//! ring; models load on a thread of their own and reach the running engine through its hot-swap
//! channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use atomic_float::AtomicF32;
use engine::scope::ScopeFrame;
use engine::{EngineStats, SlotSwapper};
use egui::{Color32, RichText};
use nice_plug::context::gui::GuiContext;
use nice_plug::editor::{HostMethods, SizeConstraints, SpawnedEditor};
use nice_plug::prelude::*;
use nice_plug_egui::resizable_window::ResizableWindow;
use nice_plug_egui::widgets::ParamSlider;
use nice_plug_egui::{EguiEditorState, EguiNiceSettings, KeyCapture, NiceEguiApp, RepaintNotifier};
use parking_lot::{Mutex, RwLock};

mod translate_panel;

use crate::latency::{LatencyChoice, planned_latency};
use crate::models::{self, NO_MODEL, SlotStatus};
use crate::params::{Mode, ThreadsChoice, UnheardChoice, VocoderParams};
use crate::view::{Badge, MeterView, ScopeHistory, SlotView, WindowSize, latency_text, threads_text};

/// Seconds of history in the live spectrograms.
pub const SCOPE_SECONDS: f32 = 4.0;

/// What the window reads besides the parameters. Written on the main thread (activation) and by
/// the model loader; never touched by the audio thread.
pub struct EditorShared {
    pub slots: RwLock<[SlotStatus; 2]>,
    pub device_status: RwLock<String>,
    /// Reported latency (samples) for every `Latency` choice under the current activation.
    pub latency_table: [AtomicU32; 6],
    /// The latency the host was told at the last activation.
    pub reported_latency: AtomicU32,
    pub sample_rate: AtomicF32,
    pub max_block: AtomicU32,
    pub stats: RwLock<Option<Arc<EngineStats>>>,
    /// The worker's spectrogram feed of the current engine (the window takes it).
    pub scope: Mutex<Option<rtrb::Consumer<ScopeFrame>>>,
    pub swapper: Mutex<Option<SlotSwapper>>,
    /// A model is loading into this slot.
    pub loading: [AtomicBool; 2],
    /// Why the last Load… into this slot was refused (the slot kept its model).
    pub load_error: [Mutex<Option<String>>; 2],
    /// The host must re-activate for a loaded model's latency (asked for; shown until then).
    pub restart_pending: AtomicBool,
    /// The real-time worker's thread choice, live in every engine this instance builds.
    pub worker_threads: engine::WorkerThreads,
    /// The running engine translates (Task = Translate).
    pub active_task: AtomicBool,
    /// The window loaded a Translate slot: the running engine must be re-planned.
    pub replan_requested: AtomicBool,
    /// The Translate slots the running (or next) engine was built with.
    pub translate: RwLock<Option<crate::translate::TranslateSlots>>,
    /// The translation as decided, the queue's backlog (written by the Translate worker).
    pub live: Arc<engine::translate_worker::LiveTranslation>,
}

impl Default for EditorShared {
    fn default() -> Self {
        Self {
            slots: RwLock::new([SlotStatus::Empty, SlotStatus::Empty]),
            device_status: RwLock::new(String::new()),
            latency_table: Default::default(),
            reported_latency: AtomicU32::new(0),
            sample_rate: AtomicF32::new(0.0),
            max_block: AtomicU32::new(0),
            stats: RwLock::new(None),
            scope: Mutex::new(None),
            swapper: Mutex::new(None),
            loading: Default::default(),
            load_error: Default::default(),
            restart_pending: AtomicBool::new(false),
            worker_threads: engine::WorkerThreads::new(0),
            active_task: AtomicBool::new(false),
            replan_requested: AtomicBool::new(false),
            translate: RwLock::new(None),
            live: Arc::new(Default::default()),
        }
    }
}

/// What a model load did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadOutcome {
    /// The slot now holds it (and the running engine crossfades to it).
    Swapped { needs_restart: bool },
    /// Refused: the slot keeps its previous model; the reason is shown under the slot.
    Refused(String),
}

/// Loads a model into a slot off the audio thread (the window's Load…, Default and Unload).
/// `persisted`: the slot's new persisted value (a path, `None` for the default model, or
/// [`NO_MODEL`]). A file that does not load, is unhealthy or needs the translator is refused and
/// loses nothing: the slot keeps its model and says why. Otherwise the persisted value changes,
/// the running engine swaps models without a gap, and if the new model needs more latency than
/// the host was told, a re-activation is requested (`request_restart`).
pub fn load_into_slot(
    params: &VocoderParams,
    shared: &EditorShared,
    mode: Mode,
    persisted: Option<String>,
    request_restart: &dyn Fn(),
) -> LoadOutcome {
    let slot = mode.slot();
    shared.loading[slot].store(true, Ordering::Release);
    let (device, _) = models::resolve_device(*params.device.read());
    let status = models::load_slot(mode, persisted.as_deref(), &device);
    let outcome = match &status {
        SlotStatus::Ready { .. } | SlotStatus::Empty => {
            match mode {
                Mode::Original => *params.model_original.write() = persisted,
                Mode::Modified => *params.model_modified.write() = persisted,
            }
            let vocoder = status.vocoder();
            let models = {
                let mut slots = shared.slots.write();
                slots[slot] = status.clone();
                [slots[0].vocoder(), slots[1].vocoder()]
            };
            *shared.load_error[slot].lock() = None;
            if let Some(swapper) = shared.swapper.lock().as_ref() {
                swapper.swap(slot, vocoder);
            }
            // The latency readout follows the new models; a larger need than reported asks the
            // host to re-activate (latency may only change there).
            let rate = shared.sample_rate.load(Ordering::Relaxed);
            let mut needs_restart = false;
            if rate > 0.0 {
                let block = shared.max_block.load(Ordering::Relaxed) as usize;
                for c in LatencyChoice::ALL {
                    let unheard = params.unheard.read().engine();
                    shared.latency_table[c.index()].store(planned_latency(rate.round() as u32, block, c, &models, unheard), Ordering::Relaxed);
                }
                let wanted = shared.latency_table[params.latency.value().index()].load(Ordering::Relaxed);
                needs_restart = wanted > shared.reported_latency.load(Ordering::Relaxed);
                if needs_restart {
                    shared.restart_pending.store(true, Ordering::Release);
                    request_restart();
                }
            }
            LoadOutcome::Swapped { needs_restart }
        }
        refused => {
            let why = SlotView::new(mode_name(mode), refused).summary.replace(" — plays the dry signal", "");
            let msg = format!("not loaded, kept the current model: {why}");
            *shared.load_error[slot].lock() = Some(msg.clone());
            LoadOutcome::Refused(msg)
        }
    };
    shared.loading[slot].store(false, Ordering::Release);
    outcome
}

/// A mode's card: the playing one outlined.
fn mode_card_frame(ui: &egui::Ui, active: bool) -> egui::Frame {
    egui::Frame::group(ui.style()).stroke(egui::Stroke::new(
        if active { 2.0 } else { 1.0 },
        if active { PLAYING } else { ui.visuals().widgets.noninteractive.bg_stroke.color },
    ))
}

/// The playing mode's colour (its card's outline and label).
const PLAYING: Color32 = Color32::from_rgb(240, 170, 60);

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Original => "Original",
        Mode::Modified => "Modified",
    }
}

/// The plugin's editor. nice-plug asks for it once, when the instance is created (before a
/// project's state is loaded), so each opening builds the egui editor afresh with the size and
/// zoom the project saved.
pub struct VocoderEditor {
    params: Arc<VocoderParams>,
    shared: Arc<EditorShared>,
    open: Mutex<Option<nice_plug_egui::EguiEditor<VocoderWindow>>>,
}

pub fn create(params: Arc<VocoderParams>, shared: Arc<EditorShared>) -> Option<VocoderEditor> {
    Some(VocoderEditor { params, shared, open: Mutex::new(None) })
}

fn resize_hint() -> ResizeHint {
    let logical = |w: WindowSize| nice_plug::editor::dpi::LogicalSize::new(w.width as f32, w.height as f32);
    ResizeHint {
        can_resize: true,
        can_resize_horizontally: true,
        can_resize_vertically: true,
        preserve_aspect_ratio: false,
        aspect_ratio_width: 1,
        aspect_ratio_height: 1,
        size_constraints: SizeConstraints::Logical { min_size: Some(logical(WindowSize::MIN)), max_size: Some(logical(WindowSize::MAX)) },
    }
}

impl Editor for VocoderEditor {
    type Handle = nice_plug_egui::EguiEditorHandle;

    fn spawn(
        &self,
        parent: Option<ParentWindowHandle>,
        wait_for_parent: bool,
        fallback_scale_factor: Option<f64>,
        gui_context: GuiContext,
        host: Option<HostMethods>,
    ) -> Result<SpawnedEditor<Self::Handle>, Box<dyn std::error::Error>> {
        let size = self.params.window.read().clamped();
        let state = EguiEditorState::from_size(
            nice_plug::editor::dpi::LogicalSize::new(size.width as f64, size.height as f64),
            size.zoom_factor(),
        );
        let settings = EguiNiceSettings::new().with_tile(crate::PLUGIN_NAME).with_resize_hint(resize_hint());
        let app = VocoderWindow::new(self.params.clone(), self.shared.clone());
        let editor = nice_plug_egui::create_egui_editor(state, RepaintNotifier::new(), settings, app).ok_or("could not create the egui editor")?;
        let spawned = editor.spawn(parent, wait_for_parent, fallback_scale_factor, gui_context, host)?;
        *self.open.lock() = Some(editor);
        Ok(spawned)
    }

    fn size(&self) -> nice_plug::editor::dpi::NativeSize<u32> {
        if let Some(e) = self.open.lock().as_ref() {
            return e.size();
        }
        let w = self.params.window.read().clamped();
        nice_plug::editor::dpi::NativeSize::from_size(nice_plug::editor::dpi::LogicalSize::new(w.width as f64, w.height as f64).into(), 1.0)
    }

    fn resize_hint(&self) -> ResizeHint {
        resize_hint()
    }

    fn track_info_updated(&self, info: TrackInfo) {
        if let Some(e) = self.open.lock().as_ref() {
            e.track_info_updated(info);
        }
    }

    unsafe fn assume_standalone_in_process(&self) {
        // Safety: the caller upholds baseview's invariants (as nice-plug-egui's editor does).
        unsafe { nice_plug_egui::baseview::assume_standalone_in_process() }
    }
}

pub struct VocoderWindow {
    params: Arc<VocoderParams>,
    shared: Arc<EditorShared>,
    gui: Option<GuiContext>,
    scope: Option<rtrb::Consumer<ScopeFrame>>,
    history: ScopeHistory,
    textures: Option<[egui::TextureHandle; 2]>,
    /// Underrun count at the last meter refresh, and when that was.
    underruns_seen: (u64, u64, Instant),
    details_open: [bool; 2],
    path_text: [String; 2],
    translate: translate_panel::TranslateFields,
}

impl VocoderWindow {
    fn new(params: Arc<VocoderParams>, shared: Arc<EditorShared>) -> Self {
        Self {
            params,
            shared,
            gui: None,
            scope: None,
            history: ScopeHistory::new(400),
            textures: None,
            underruns_seen: (0, 0, Instant::now()),
            details_open: [false; 2],
            path_text: [String::new(), String::new()],
            translate: Default::default(),
        }
    }

    /// Drains the worker's spectrogram feed (a new engine brings a new feed).
    fn drain_scope(&mut self) {
        if let Some(c) = self.shared.scope.lock().take() {
            self.scope = Some(c);
            let rate = self.shared.sample_rate.load(Ordering::Relaxed).max(1.0);
            let cols = (SCOPE_SECONDS * engine::scope::frames_per_second(rate.round() as u32)).ceil() as usize;
            self.history = ScopeHistory::new(cols.clamp(50, 2000));
        }
        if let Some(c) = &mut self.scope {
            while let Ok(f) = c.pop() {
                self.history.push(f);
            }
        }
    }

    /// Loads `persisted` into the slot on a thread of its own (never the GUI or audio thread).
    fn start_load(&self, mode: Mode, persisted: Option<String>) {
        self.spawn_load(mode, move |_| Some(persisted));
    }

    /// Asks for a file first (the dialog blocks the loader thread only), then loads it.
    fn pick_file(&self, mode: Mode) {
        self.spawn_load(mode, move |shared| {
            let asked = Instant::now();
            let picked = rfd::FileDialog::new()
                .set_title(format!("Load a vocoder for the {} mode", mode_name(mode)))
                .add_filter("vocoder checkpoints", &["safetensors", "pt", "pth", "ckpt", "bin"])
                .add_filter("all files", &["*"])
                .set_directory(models::models_dir())
                .pick_file();
            // rfd says None for "cancelled" and for "no dialog could open"; a dialog nobody saw
            // returns at once. Point the user at the path field then.
            if picked.is_none() && asked.elapsed() < Duration::from_millis(300) {
                *shared.load_error[mode.slot()].lock() =
                    Some("no file dialog could open here (it needs an XDG desktop portal or zenity): paste the model's path below".into());
            }
            picked.map(|p| Some(p.display().to_string()))
        });
    }

    /// `choose` yields the slot's new persisted value, or None to load nothing.
    fn spawn_load(&self, mode: Mode, choose: impl FnOnce(&EditorShared) -> Option<Option<String>> + Send + 'static) {
        let (params, shared, gui) = (self.params.clone(), self.shared.clone(), self.gui.clone());
        shared.loading[mode.slot()].store(true, Ordering::Release);
        let spawned = std::thread::Builder::new().name("streamspeech-model-load".into()).spawn({
            let shared = shared.clone();
            move || match choose(&shared) {
                Some(persisted) => {
                    load_into_slot(&params, &shared, mode, persisted, &|| {
                        if let Some(g) = &gui {
                            g.request_restart();
                        }
                    });
                }
                None => shared.loading[mode.slot()].store(false, Ordering::Release),
            }
        });
        if spawned.is_err() {
            shared.loading[mode.slot()].store(false, Ordering::Release);
        }
    }

    fn top_row(&mut self, ui: &mut egui::Ui, setter: &ParamSetter) {
        let p = self.params.clone();
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new("Task").strong());
            let task = p.task.value();
            for t in [crate::translate::Task::Resynthesize, crate::translate::Task::Translate] {
                let name = if t == crate::translate::Task::Translate { "Translate (es-en)" } else { "Resynthesize" };
                if ui.selectable_label(task == t, name).on_hover_text("Not automatable: it changes the latency (re-planned like Latency)").clicked() && task != t {
                    setter.begin_set_parameter(&p.task);
                    setter.set_parameter(&p.task, t);
                    setter.end_set_parameter(&p.task);
                }
            }
            ui.separator();
            ui.label(RichText::new("Mode").strong());
            let current = p.mode.value();
            for mode in [Mode::Original, Mode::Modified] {
                let text = RichText::new(mode_name(mode)).size(16.0);
                if ui.selectable_label(current == mode, text).on_hover_text("automatable: a switch crossfades over 20 ms").clicked() && current != mode {
                    // One gesture, so hosts record the automation.
                    setter.begin_set_parameter(&p.mode);
                    setter.set_parameter(&p.mode, mode);
                    setter.end_set_parameter(&p.mode);
                }
            }
            ui.separator();
            ui.label(RichText::new("Latency").strong());
            let chosen = p.latency.value();
            egui::ComboBox::from_id_salt("latency")
                .selected_text(if p.task.value() == crate::translate::Task::Translate {
                    format!("{} ms (segment {} ms)", chosen.millis(), crate::translate::segment_ms(chosen))
                } else {
                    format!("{} ms", chosen.millis())
                })
                .show_ui(ui, |ui| {
                    for c in LatencyChoice::ALL {
                        let label = if p.task.value() == crate::translate::Task::Translate {
                            format!("{} ms (segment {} ms)", c.millis(), crate::translate::segment_ms(c))
                        } else {
                            format!("{} ms chunk", c.millis())
                        };
                        if ui.selectable_label(c == chosen, label).clicked() && c != chosen {
                            setter.begin_set_parameter(&p.latency);
                            setter.set_parameter(&p.latency, c);
                            setter.end_set_parameter(&p.latency);
                        }
                    }
                });
            let rate = self.shared.sample_rate.load(Ordering::Relaxed);
            if rate > 0.0 {
                let samples = self.shared.latency_table[chosen.index()].load(Ordering::Relaxed);
                ui.label(latency_text(chosen, samples, rate)).on_hover_text(
                    "What the host compensates: chunk + model lookahead + resampling + the worker's compute budget",
                );
            } else {
                ui.label("(not active)");
            }
        });
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new("Mix").strong());
            ui.add(ParamSlider::for_param(&p.mix, setter).with_width(160.0));
            ui.separator();
            ui.label(RichText::new("Output").strong());
            ui.add(ParamSlider::for_param(&p.output_db, setter).with_width(160.0));
            ui.separator();
            ui.label("Zoom");
            let zoom = ui.ctx().zoom_factor();
            for z in [1.0f32, 1.25, 1.5, 2.0] {
                if ui.selectable_label((zoom - z).abs() < 0.01, format!("{:.0}%", z * 100.0)).clicked() && (zoom - z).abs() >= 0.01 {
                    // The window grows or shrinks with the zoom, so the layout stays the same
                    // (within the host's limits; the content scrolls beyond them).
                    let points = ui.ctx().content_rect().size();
                    let max = egui::vec2(WindowSize::MAX.width as f32, WindowSize::MAX.height as f32);
                    let min = egui::vec2(WindowSize::MIN.width as f32, WindowSize::MIN.height as f32);
                    ui.ctx().set_zoom_factor(z);
                    ui.send_viewport_cmd(egui::ViewportCommand::InnerSize((points * z).min(max).max(min) / z));
                    self.params.window.write().zoom_percent = (z * 100.0).round() as u32;
                }
            }
        });
    }

    fn slot_card(&mut self, ui: &mut egui::Ui, mode: Mode) {
        let slot = mode.slot();
        let status = self.shared.slots.read()[slot].clone();
        let view = SlotView::new(mode_name(mode), &status);
        let active = self.params.mode.value() == mode;
        mode_card_frame(ui, active).show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.horizontal(|ui| {
                ui.label(RichText::new(view.mode).size(17.0).strong());
                if active {
                    ui.label(RichText::new("playing").color(PLAYING));
                }
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    ui.label(RichText::new(format!(" {} ", view.badge.label())).background_color(badge_colour(view.badge)).color(Color32::BLACK).strong());
                });
            });
            ui.label(RichText::new(&view.file).monospace());
            ui.label(&view.summary);
            if let Some(e) = self.shared.load_error[slot].lock().clone() {
                ui.label(RichText::new(e).color(Color32::from_rgb(255, 120, 100)));
            }
            let loading = self.shared.loading[slot].load(Ordering::Acquire);
            ui.horizontal_wrapped(|ui| {
                ui.add_enabled_ui(!loading, |ui| {
                    if ui.button("Load…").on_hover_text("Pick a checkpoint (.safetensors, .pt/.pth); it is checked before it replaces this slot's model").clicked() {
                        self.pick_file(mode);
                    }
                    if ui.button("Default").on_hover_text(format!("The default model ({})", models::default_file(mode))).clicked() {
                        self.start_load(mode, None);
                    }
                    if mode == Mode::Modified {
                        let file = models::models_dir().join(vocoder::fetch::CAUSAL_MODIFIED_FILE);
                        let hover = format!(
                            "The low-latency Modified model ({}): a causal GRC-MRF with no look-ahead, for live use",
                            vocoder::fetch::CAUSAL_MODIFIED_FILE
                        );
                        if ui.button("Low latency").on_hover_text(hover).clicked() {
                            self.start_load(mode, Some(file.display().to_string()));
                        }
                    }
                    if ui.button("Unload").on_hover_text("No model: this mode plays the delayed dry signal").clicked() {
                        self.start_load(mode, Some(NO_MODEL.into()));
                    }
                });
                if loading {
                    ui.spinner();
                    ui.label("loading…");
                }
                ui.toggle_value(&mut self.details_open[slot], "details");
            });
            // A path can be typed or pasted too (hosts where no file dialog can open).
            ui.horizontal(|ui| {
                let edit = ui.add(egui::TextEdit::singleline(&mut self.path_text[slot]).hint_text("or paste a model path and press Enter").desired_width(ui.available_width()));
                if edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) && !self.path_text[slot].trim().is_empty() && !loading {
                    self.start_load(mode, Some(self.path_text[slot].trim().to_string()));
                }
            });
            if self.details_open[slot] {
                egui::ScrollArea::vertical().id_salt(("details", slot)).max_height(140.0).show(ui, |ui| {
                    ui.label(RichText::new(&view.details).monospace().size(11.0));
                });
            }
        });
    }

    fn spectrograms(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        let images = [self.history.image(false), self.history.image(true)];
        let to_colour_image = |(w, h, px): &(usize, usize, Vec<[u8; 4]>)| {
            egui::ColorImage::from_rgba_unmultiplied([*w, *h], px.as_flattened())
        };
        match &mut self.textures {
            Some(t) => {
                for (tex, img) in t.iter_mut().zip(images.iter()) {
                    tex.set(to_colour_image(img), egui::TextureOptions::LINEAR);
                }
            }
            None => {
                self.textures = Some([
                    ctx.load_texture("scope-input", to_colour_image(&images[0]), egui::TextureOptions::LINEAR),
                    ctx.load_texture("scope-wet", to_colour_image(&images[1]), egui::TextureOptions::LINEAR),
                ]);
            }
        }
        let textures = self.textures.as_ref().expect("textures");
        let height = ((ui.available_height() - 70.0) / 2.0).clamp(70.0, 260.0);
        for (i, (label, tex)) in [("Input", &textures[0]), ("Output (wet)", &textures[1])].into_iter().enumerate() {
            ui.horizontal(|ui| {
                ui.label(RichText::new(label).strong());
                ui.label(RichText::new(format!("log-mel, 0–8 kHz, last {SCOPE_SECONDS:.0} s, one colour scale for both")).weak().size(11.0));
                if i == 0 {
                    colour_legend(ui);
                }
            });
            let size = egui::vec2(ui.available_width(), height);
            ui.add(egui::Image::new((tex.id(), size)).fit_to_exact_size(size));
        }
    }

    /// The real-time worker's threads: persisted with the project and applied live (the kernels'
    /// results do not depend on it, so the audio does not change; only the worker's speed).
    fn threads_control(&mut self, ui: &mut egui::Ui, in_use: usize) {
        let cores = engine::machine_cores();
        let current = *self.params.worker_threads.read();
        let mut chosen = current;
        ui.label("threads");
        egui::ComboBox::from_id_salt("worker-threads")
            .selected_text(threads_text(current, cores, in_use))
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut chosen, ThreadsChoice::Auto, format!("auto ({})", engine::auto_worker_threads(cores)));
                for n in 1..=cores.min(32) {
                    ui.selectable_value(&mut chosen, ThreadsChoice::Fixed(n as u32), n.to_string());
                }
            })
            .response
            .on_hover_text("Threads of the real-time worker (offline bounces use every core). Auto: a quarter of the cores, 1 to 4.");
        if chosen != current {
            *self.params.worker_threads.write() = chosen;
            self.shared.worker_threads.set(chosen.engine_value());
        }
    }

    /// The slot that is not heard: computed, or spun up on a switch. Persisted; a change
    /// re-plans (the latency changes), the audio does not.
    fn unheard_control(&mut self, ui: &mut egui::Ui, stats: &engine::EngineStats) {
        let current = *self.params.unheard.read();
        let mut chosen = current;
        let label = |c: UnheardChoice| match c {
            UnheardChoice::Compute => "both slots computed",
            UnheardChoice::SpinUp => "heard slot only",
        };
        ui.label("switching");
        egui::ComboBox::from_id_salt("unheard")
            .selected_text(label(current))
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut chosen, UnheardChoice::Compute, label(UnheardChoice::Compute));
                ui.selectable_value(&mut chosen, UnheardChoice::SpinUp, label(UnheardChoice::SpinUp));
            })
            .response
            .on_hover_text(
                "Both slots computed: a Mode switch never waits, no added latency.\n\
                 Heard slot only: the other slot is spun up exactly when a switch needs it \
                 (about half the live load with two full-size models; the replay is added to the \
                 latency). Offline bounces compute only the heard slot either way; the audio is \
                 the same.",
            );
        let ups = stats.spin_ups.load(Ordering::Relaxed);
        if ups > 0 {
            let late = stats.late_spin_ups.load(Ordering::Relaxed);
            let longest = stats.spin_up_us_max.load(Ordering::Relaxed) as f64 / 1000.0;
            ui.label(format!("{ups} spin-ups, longest {longest:.0} ms{}", if late > 0 { format!(", {late} late") } else { String::new() }));
        }
        if chosen != current {
            *self.params.unheard.write() = chosen;
            self.shared.replan_requested.store(true, Ordering::Release);
        }
    }

    fn meters(&mut self, ui: &mut egui::Ui) {
        let stats = self.shared.stats.read().clone();
        let device = self.shared.device_status.read().clone();
        let Some(stats) = stats else {
            ui.label(format!("engine not active · device: {}", if device.is_empty() { "—" } else { &device }));
            return;
        };
        let underruns = stats.underruns.load(Ordering::Relaxed);
        // A rising count over the last ~2 s is "falling back to dry now".
        let (before, older, at) = self.underruns_seen;
        if at.elapsed() > Duration::from_secs(1) {
            self.underruns_seen = (underruns, before, Instant::now());
        }
        let error = stats.worker_error.lock().clone();
        let meter = MeterView::new(
            stats.worker_rtf.load(Ordering::Relaxed),
            underruns,
            older.min(before),
            stats.worker_alive.load(Ordering::Acquire),
            &device,
            error.as_deref(),
        );
        ui.horizontal_wrapped(|ui| {
            ui.label(&meter.rtf);
            ui.separator();
            ui.label(&meter.underruns);
            ui.separator();
            ui.label(format!("device: {}", meter.device));
            ui.separator();
            self.threads_control(ui, stats.worker_threads.load(Ordering::Relaxed));
            ui.separator();
            self.unheard_control(ui, &stats);
        });
        let mut warnings: Vec<String> = meter.warning.into_iter().collect();
        if let Some(w) = self.history.noise_warning() {
            warnings.push(w);
        }
        let slots = self.shared.slots.read().clone();
        let playing = SlotView::new(mode_name(self.params.mode.value()), &slots[self.params.mode.value().slot()]);
        if playing.badge.plays_dry() {
            warnings.push(format!("{} mode: {}", playing.mode, playing.summary));
        }
        if self.shared.restart_pending.load(Ordering::Acquire) {
            warnings.push("the loaded model needs more latency: waiting for the host to re-activate the plugin".into());
        }
        for w in warnings {
            ui.label(RichText::new(format!("Warning: {w}")).color(Color32::from_rgb(255, 110, 90)));
        }
    }
}

/// The colour scale of both spectrograms, in dB of mel magnitude (natural-log units × 8.69).
fn colour_legend(ui: &mut egui::Ui) {
    let db = |v: f32| v * 20.0 / std::f32::consts::LN_10;
    ui.label(RichText::new(format!("{:.0} dB", db(crate::view::SCOPE_LOG_FLOOR))).weak().size(11.0));
    let (rect, _) = ui.allocate_exact_size(egui::vec2(120.0, 10.0), egui::Sense::hover());
    let steps = 40;
    for k in 0..steps {
        let t = k as f32 / (steps - 1) as f32;
        let v = crate::view::SCOPE_LOG_FLOOR + t * (crate::view::SCOPE_LOG_CEIL - crate::view::SCOPE_LOG_FLOOR);
        let [r, g, b] = crate::view::colour(v);
        let x0 = rect.left() + rect.width() * k as f32 / steps as f32;
        let seg = egui::Rect::from_min_max(egui::pos2(x0, rect.top()), egui::pos2(x0 + rect.width() / steps as f32 + 0.5, rect.bottom()));
        ui.painter().rect_filled(seg, 0.0, Color32::from_rgb(r, g, b));
    }
    ui.label(RichText::new(format!("+{:.0} dB", db(crate::view::SCOPE_LOG_CEIL))).weak().size(11.0));
}

fn badge_colour(b: Badge) -> Color32 {
    match b {
        Badge::Ok => Color32::from_rgb(120, 210, 120),
        Badge::Empty => Color32::from_rgb(170, 170, 170),
        Badge::NeedsTranslator => Color32::from_rgb(130, 180, 250),
        Badge::Missing | Badge::Failed | Badge::Unhealthy => Color32::from_rgb(250, 120, 100),
    }
}

impl NiceEguiApp for VocoderWindow {
    fn build(&mut self, egui_ctx: egui::Context, gui: GuiContext, _frame: &mut nice_plug_egui::Frame) -> Result<(), nice_plug_egui::baseview::HandlerError> {
        egui_ctx.set_visuals(egui::Visuals::dark());
        self.gui = Some(gui);
        Ok(())
    }

    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut nice_plug_egui::Frame) {
        // Keys go to the host (transport shortcuts) unless a text field has focus.
        frame.set_key_capture(if ui.ctx().egui_wants_keyboard_input() { KeyCapture::CaptureAll } else { KeyCapture::IgnoreAll });
        self.drain_scope();
        let Some(gui) = self.gui.clone() else { return };
        let setter = gui.param_setter();
        ResizableWindow::new("streamspeech-window")
            .min_size(egui::vec2(WindowSize::MIN.width as f32, WindowSize::MIN.height as f32))
            .show(ui, |ui| {
                egui::ScrollArea::both().auto_shrink([false, false]).show(ui, |ui| {
                    egui::Frame::new().inner_margin(egui::Margin::same(10)).show(ui, |ui| {
                    ui.horizontal(|ui| {
                        ui.heading(crate::PLUGIN_NAME);
                        ui.label(RichText::new(format!("v{}", env!("CARGO_PKG_VERSION"))).weak());
                    });
                    self.top_row(ui, &setter);
                    ui.add_space(4.0);
                    if self.params.task.value() == crate::translate::Task::Translate {
                        self.translate_panel(ui);
                    } else {
                        ui.columns(2, |cols| {
                            self.slot_card(&mut cols[0], Mode::Original);
                            self.slot_card(&mut cols[1], Mode::Modified);
                        });
                    }
                    ui.add_space(4.0);
                    self.meters(ui);
                    ui.add_space(4.0);
                    self.spectrograms(ui);
                    });
                });
            });
        // Live views: about 30 frames per second while the window is open.
        ui.ctx().request_repaint_after(Duration::from_millis(33));
    }

    fn resized(&mut self, new_size: nice_plug_egui::baseview::WindowSize) {
        let mut w = self.params.window.write();
        let zoom = w.zoom_percent;
        *w = WindowSize { width: new_size.logical.width.round() as u32, height: new_size.logical.height.round() as u32, zoom_percent: zoom }.clamped();
    }

    fn zoom_factor_changed(&mut self, zoom_factor: f32) {
        self.params.window.write().zoom_percent = (zoom_factor * 100.0).round() as u32;
    }

    fn editor_closed(&mut self) {
        self.textures = None;
        self.return_scope();
    }
}

impl VocoderWindow {
    /// The spectrogram feed goes back to the shared state, so a reopened window gets it (unless
    /// a newer engine has put its own there).
    fn return_scope(&mut self) {
        if let Some(c) = self.scope.take() {
            let mut slot = self.shared.scope.lock();
            if slot.is_none() {
                *slot = Some(c);
            }
        }
    }
}

impl Drop for VocoderWindow {
    fn drop(&mut self) {
        self.return_scope();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::path::PathBuf;

    fn fixture(name: &str) -> String {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        root.join("vocoder/tests/fixtures").join(name).join("model.safetensors").display().to_string()
    }

    /// A model of the repository's `models/` folder (the distilled GRC is committed; the
    /// universal V1 comes from `cargo xtask models`, which the test command runs first).
    fn repo_model(file: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("models").join(file);
        assert!(p.is_file(), "{} missing: run `cargo xtask models`", p.display());
        p.display().to_string()
    }

    /// A shared state as activation leaves it: the distilled GRC model in the Original slot,
    /// the engine running (its swapper attached), the host told the latency of that plan.
    fn active(params: &VocoderParams) -> (EditorShared, engine::EngineProcessor) {
        let shared = EditorShared::default();
        *params.model_original.write() = Some(repo_model("grc_mrf_distilled.safetensors"));
        *params.model_modified.write() = Some(NO_MODEL.into());
        let (slots, device) = crate::resolve_slots(params);
        let models = [slots[0].vocoder(), slots[1].vocoder()];
        let (rate, block) = (48_000u32, 512usize);
        let engine = engine::EngineProcessor::new(engine::EngineSetup {
            host_rate: rate,
            channels: 1,
            max_block: block,
            chunk_ms: 80,
            slots: models.clone(),
            initial_slot: 0,
            offline: false,
            passthrough_gain: [1.0, 1.0],
            worker_threads: engine::WorkerThreads::new(1),
            unheard: engine::Unheard::Compute,
            render_ahead: false,
        });
        for c in LatencyChoice::ALL {
            shared.latency_table[c.index()].store(planned_latency(rate, block, c, &models, engine::Unheard::Compute), Ordering::Relaxed);
        }
        shared.reported_latency.store(engine.latency(), Ordering::Relaxed);
        shared.sample_rate.store(rate as f32, Ordering::Relaxed);
        shared.max_block.store(block as u32, Ordering::Relaxed);
        *shared.slots.write() = slots;
        *shared.device_status.write() = device;
        *shared.swapper.lock() = Some(engine.swapper());
        (shared, engine)
    }

    #[test]
    fn a_file_that_does_not_load_is_refused_and_the_slot_keeps_its_model() {
        let params = VocoderParams::default();
        let (shared, _engine) = active(&params);
        let before = params.model_original.read().clone();
        let restarts = Cell::new(0);
        let broken = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("vocoder/tests/fixtures/broken");
        // Corrupt, mis-keyed, missing, and a model that loads but is noise (random weights).
        for path in [
            broken.join("truncated.safetensors").display().to_string(),
            broken.join("missing_tensor.safetensors").display().to_string(),
            "/nonexistent/model.safetensors".to_string(),
            fixture("v1_tiny"),
        ] {
            let outcome = load_into_slot(&params, &shared, Mode::Original, Some(path.clone()), &|| restarts.set(restarts.get() + 1));
            let LoadOutcome::Refused(why) = outcome else { panic!("{path} must be refused") };
            assert!(why.starts_with("not loaded, kept the current model"), "{why}");
            assert_eq!(*params.model_original.read(), before, "the persisted choice is unchanged");
            assert!(matches!(shared.slots.read()[0], SlotStatus::Ready { .. }), "the slot still plays its model");
            assert_eq!(shared.load_error[0].lock().as_deref(), Some(why.as_str()), "the window shows why");
            assert!(!shared.loading[0].load(Ordering::Acquire));
        }
        assert_eq!(restarts.get(), 0);
    }

    #[test]
    fn loading_swaps_the_running_engine_and_asks_for_a_restart_only_when_latency_grows() {
        let params = VocoderParams::default();
        let (shared, engine) = active(&params);
        let restarts = Cell::new(0);
        let reported = shared.reported_latency.load(Ordering::Relaxed);
        // HiFi-GAN V1 into the (empty) Modified slot: it looks further ahead than the GRC model
        // the plan was made for, so the host must re-activate to report the larger latency.
        let v1 = repo_model("hifigan_v1_universal.safetensors");
        let outcome = load_into_slot(&params, &shared, Mode::Modified, Some(v1.clone()), &|| restarts.set(restarts.get() + 1));
        let LoadOutcome::Swapped { needs_restart } = outcome else { panic!("{outcome:?}") };
        assert_eq!(params.model_modified.read().as_deref(), Some(v1.as_str()), "persisted with the project");
        let view = SlotView::new("Modified", &shared.slots.read()[1]);
        assert_eq!(view.badge, Badge::Ok);
        assert!(view.facts.unwrap().starts_with("hifigan"));
        assert!(needs_restart, "V1 needs more latency than the GRC-only plan");
        let now = shared.latency_table[LatencyChoice::Ms80.index()].load(Ordering::Relaxed);
        assert_eq!(needs_restart, now > reported, "restart exactly when the plan needs more than was reported");
        assert_eq!(restarts.get(), needs_restart as u32);
        assert_eq!(shared.restart_pending.load(Ordering::Acquire), needs_restart);
        // The running engine got the swap (the worker starts it at its next chunk).
        let t0 = Instant::now();
        while engine.stats.swaps.load(Ordering::Relaxed) == 0 && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(engine.stats.swaps.load(Ordering::Relaxed), 1, "the worker started the swap");

        // Unload: the slot becomes empty and plays dry; Default: back to the default file.
        let outcome = load_into_slot(&params, &shared, Mode::Modified, Some(NO_MODEL.into()), &|| {});
        assert!(matches!(outcome, LoadOutcome::Swapped { .. }));
        assert_eq!(SlotView::new("Modified", &shared.slots.read()[1]).badge, Badge::Empty);
        assert_eq!(params.model_modified.read().as_deref(), Some(NO_MODEL));
        let _ = load_into_slot(&params, &shared, Mode::Modified, None, &|| {});
        let shown = SlotView::new("Modified", &shared.slots.read()[1]);
        let file = models::resolve(Mode::Modified, None).unwrap();
        if file.is_file() {
            assert_eq!(shown.badge, Badge::Ok);
            assert_eq!(*params.model_modified.read(), None);
        } else {
            // Without the default models the default cannot load: refused, nothing lost.
            assert_eq!(shown.badge, Badge::Empty, "{}", PathBuf::from(file).display());
        }
    }
}
