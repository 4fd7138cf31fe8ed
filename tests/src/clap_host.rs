//! A small but real CLAP host built on `clack-host`: loads the bundle, implements the host side
//! of the latency, params and state extensions, and honours restart and callback requests the way
//! a DAW does (deactivate, reactivate, re-query the latency).

use clack_extensions::audio_ports_config::{AudioPortsConfigBuffer, PluginAudioPortsConfig};
use clack_extensions::latency::{HostLatency, HostLatencyImpl, PluginLatency};
use clack_extensions::params::{
    HostParams, HostParamsImplMainThread, HostParamsImplShared, ParamClearFlags, ParamInfoBuffer,
    ParamInfoFlags, ParamRescanFlags, PluginParams,
};
use clack_extensions::render::{PluginRender, RenderMode};
use clack_extensions::state::{HostState, HostStateImpl, PluginState};
use clack_host::events::event_types::ParamValueEvent;
use clack_host::prelude::*;
use std::ffi::CString;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

pub struct TestHost;

#[derive(Default)]
pub struct Shared {
    pub restart_requested: AtomicBool,
    pub callback_requested: AtomicBool,
    pub process_requested: AtomicBool,
    pub flush_requested: AtomicBool,
    params: OnceLock<Option<PluginParams>>,
    latency: OnceLock<Option<PluginLatency>>,
    state: OnceLock<Option<PluginState>>,
    ports_config: OnceLock<Option<PluginAudioPortsConfig>>,
    render: OnceLock<Option<PluginRender>>,
}

impl<'a> SharedHandler<'a> for Shared {
    fn initializing(&self, instance: InitializingPluginHandle<'a>) {
        let _ = self.params.set(instance.get_extension());
        let _ = self.latency.set(instance.get_extension());
        let _ = self.state.set(instance.get_extension());
        let _ = self.ports_config.set(instance.get_extension());
        let _ = self.render.set(instance.get_extension());
    }
    fn request_restart(&self) {
        self.restart_requested.store(true, Ordering::SeqCst);
    }
    fn request_process(&self) {
        self.process_requested.store(true, Ordering::SeqCst);
    }
    fn request_callback(&self) {
        self.callback_requested.store(true, Ordering::SeqCst);
    }
}

impl HostParamsImplShared for Shared {
    fn request_flush(&self) {
        self.flush_requested.store(true, Ordering::SeqCst);
    }
}

#[derive(Default)]
pub struct MainThread {
    pub latency_changed: AtomicU32,
    pub dirty: AtomicU32,
    pub rescans: AtomicU32,
}

impl<'a> MainThreadHandler<'a> for MainThread {}

impl HostLatencyImpl for MainThread {
    fn changed(&self) {
        self.latency_changed.fetch_add(1, Ordering::SeqCst);
    }
}
impl HostStateImpl for MainThread {
    fn mark_dirty(&self) {
        self.dirty.fetch_add(1, Ordering::SeqCst);
    }
}
impl HostParamsImplMainThread for MainThread {
    fn rescan(&self, _flags: ParamRescanFlags) {
        self.rescans.fetch_add(1, Ordering::SeqCst);
    }
    fn clear(&self, _param_id: ClapId, _flags: ParamClearFlags) {}
}

impl HostHandlers for TestHost {
    type Shared<'a> = Shared;
    type MainThread<'a> = MainThread;
    type AudioProcessor<'a> = ();

    fn declare_extensions(builder: &mut HostExtensions<Self>, _shared: &Self::Shared<'_>) {
        builder.register::<HostLatency>().register::<HostParams>().register::<HostState>();
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParamDesc {
    pub id: u32,
    pub name: String,
    pub min: f64,
    pub max: f64,
    pub default: f64,
    pub automatable: bool,
    pub stepped: bool,
    /// CLAP's `IS_BYPASS` flag.
    pub is_bypass: bool,
}

/// An automation point: at `time` samples into the render, set param `id` to `value` (plain).
#[derive(Debug, Clone, Copy)]
pub struct Automation {
    pub time: u64,
    pub id: u32,
    pub value: f64,
}

/// Which models the plugin under test finds by default: none (the empty-slot shell behaviour)
/// or the repository's `models/` folder. Set once per test process, before any plugin loads.
pub fn use_models(repo_models: bool) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dir = if repo_models {
            crate::workspace_root().join("models")
        } else {
            std::env::temp_dir().join("streamspeech-no-models")
        };
        // SAFETY: set once, before the plugin or any other thread reads the environment.
        unsafe { std::env::set_var(streamspeech_vocoder::models::MODELS_ENV, dir) };
    });
}

/// The plugin's saved state as JSON (nice-plug's CLAP stream: its length, then the JSON).
pub fn state_json(bytes: &[u8]) -> serde_json::Value {
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(len, bytes.len() - 8);
    serde_json::from_slice(&bytes[8..]).expect("state is JSON")
}

/// JSON back into the CLAP state stream.
pub fn state_bytes(v: &serde_json::Value) -> Vec<u8> {
    let json = serde_json::to_vec(v).unwrap();
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend(json);
    out
}

pub fn load_entry() -> PluginEntry {
    let path = crate::clap_bundle();
    // SAFETY: loading our own freshly built plugin bundle.
    unsafe { PluginEntry::load(&path) }.expect("CLAP entry loads")
}

pub struct ClapPlugin {
    pub instance: PluginInstance<TestHost>,
    processor: Option<StoppedPluginAudioProcessor<TestHost>>,
    config: Option<PluginAudioConfiguration>,
    pub channels: usize,
}

impl ClapPlugin {
    pub fn new(entry: &PluginEntry) -> Self {
        let info = HostInfo::new("streamspeech-host-tests", "StreamSpeech", "https://example.invalid", "1.0").unwrap();
        let id = CString::new(streamspeech_vocoder::CLAP_ID).unwrap();
        let instance = PluginInstance::<TestHost>::new(
            |_| Shared::default(),
            |_| MainThread::default(),
            entry,
            &id,
            &info,
        )
        .expect("plugin instantiates");
        Self { instance, processor: None, config: None, channels: 2 }
    }

    fn params_ext(&self) -> PluginParams {
        self.instance
            .access_shared_handler(|s| *s.params.get().unwrap())
            .expect("plugin implements clap.params")
    }

    fn latency_ext(&self) -> PluginLatency {
        self.instance
            .access_shared_handler(|s| *s.latency.get().unwrap())
            .expect("plugin implements clap.latency")
    }

    fn state_ext(&self) -> PluginState {
        self.instance
            .access_shared_handler(|s| *s.state.get().unwrap())
            .expect("plugin implements clap.state")
    }

    /// Offline (bounce) or real-time rendering (`clap.render`; the plugin must be inactive).
    pub fn set_offline(&mut self, offline: bool) {
        let ext = self
            .instance
            .access_shared_handler(|s| *s.render.get().unwrap())
            .expect("plugin implements clap.render");
        let mode = if offline { RenderMode::Offline } else { RenderMode::Realtime };
        ext.set(&mut self.instance.plugin_handle(), mode).expect("render mode accepted");
    }

    /// The plugin's audio port configurations: (id, name, main input channels, main output channels).
    pub fn port_configs(&mut self) -> Vec<(u32, String, u32, u32)> {
        let ext = self
            .instance
            .access_shared_handler(|s| *s.ports_config.get().unwrap())
            .expect("plugin implements clap.audio-ports-config");
        let handle = self.instance.plugin_handle();
        (0..ext.count(&handle))
            .map(|i| {
                let mut buf = AudioPortsConfigBuffer::new();
                let c = ext.get(&handle, i, &mut buf).expect("config");
                (
                    c.id.get(),
                    String::from_utf8_lossy(c.name).into_owned(),
                    c.main_input.as_ref().map_or(0, |p| p.channel_count),
                    c.main_output.as_ref().map_or(0, |p| p.channel_count),
                )
            })
            .collect()
    }

    /// Selects the port configuration with `channels` in and out (the plugin must be inactive).
    pub fn select_channels(&mut self, channels: u32) {
        let id = self
            .port_configs()
            .into_iter()
            .find(|c| c.2 == channels && c.3 == channels)
            .unwrap_or_else(|| panic!("no {channels}-channel configuration"))
            .0;
        let ext = self.instance.access_shared_handler(|s| *s.ports_config.get().unwrap()).unwrap();
        ext.select(&self.instance.plugin_handle(), ClapId::new(id)).expect("select");
        self.channels = channels as usize;
    }

    pub fn params(&mut self) -> Vec<ParamDesc> {
        let ext = self.params_ext();
        let handle = self.instance.plugin_handle();
        let mut out = Vec::new();
        for i in 0..ext.count(&handle) {
            let mut buf = ParamInfoBuffer::new();
            let info = ext.get_info(&handle, i, &mut buf).expect("param info");
            out.push(ParamDesc {
                id: info.id.get(),
                name: String::from_utf8_lossy(info.name).into_owned(),
                min: info.min_value,
                max: info.max_value,
                default: info.default_value,
                automatable: info.flags.contains(ParamInfoFlags::IS_AUTOMATABLE),
                is_bypass: info.flags.contains(ParamInfoFlags::IS_BYPASS),
                stepped: info.flags.contains(ParamInfoFlags::IS_STEPPED),
            });
        }
        out
    }

    pub fn param_id(&mut self, name: &str) -> u32 {
        self.params()
            .into_iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no parameter named {name}"))
            .id
    }

    pub fn param_value(&mut self, id: u32) -> f64 {
        let ext = self.params_ext();
        ext.get_value(&self.instance.plugin_handle(), ClapId::new(id)).expect("value")
    }

    pub fn value_to_text(&mut self, id: u32, value: f64) -> String {
        let ext = self.params_ext();
        let mut buf = [0u8; 256];
        let text = ext
            .value_to_text(&self.instance.plugin_handle(), ClapId::new(id), value, &mut buf)
            .expect("value_to_text");
        String::from_utf8_lossy(text).into_owned()
    }

    pub fn text_to_value(&mut self, id: u32, text: &str) -> Option<f64> {
        let ext = self.params_ext();
        let text = CString::new(text).unwrap();
        ext.text_to_value(&self.instance.plugin_handle(), ClapId::new(id), &text)
    }

    /// Sets parameters while inactive through `clap.params.flush`, as hosts do before activation.
    pub fn set_params_inactive(&mut self, values: &[(u32, f64)]) {
        assert!(self.processor.is_none(), "set_params_inactive needs an inactive plugin");
        let ext = self.params_ext();
        let mut events = EventBuffer::new();
        for (id, v) in values {
            events.push(&ParamValueEvent::new(0, ClapId::new(*id), Pckn::match_all(), *v));
        }
        let mut out = EventBuffer::new();
        let mut handle = self.instance.inactive_plugin_handle().expect("inactive");
        ext.flush(&mut handle, &events.as_input(), &mut out.as_output());
    }

    pub fn latency(&mut self) -> u32 {
        let ext = self.latency_ext();
        ext.get(&self.instance.plugin_handle())
    }

    pub fn latency_changed_count(&self) -> u32 {
        self.instance.access_handler(|h| h.latency_changed.load(Ordering::SeqCst))
    }

    pub fn activate(&mut self, sample_rate: f64, min_block: u32, max_block: u32) {
        assert!(self.processor.is_none());
        let config = PluginAudioConfiguration {
            sample_rate,
            min_frames_count: min_block,
            max_frames_count: max_block,
        };
        let p = self.instance.activate(|_, _| (), config).expect("activates");
        self.processor = Some(p);
        self.config = Some(config);
    }

    pub fn deactivate(&mut self) {
        if let Some(p) = self.processor.take() {
            self.instance.deactivate(p);
        }
    }

    pub fn is_active(&self) -> bool {
        self.processor.is_some()
    }

    /// What a DAW's main loop does between audio callbacks: run requested main-thread callbacks
    /// and honour a restart request (deactivate + reactivate with the same configuration).
    /// Returns true when a restart happened.
    pub fn pump_main_thread(&mut self) -> bool {
        if self.instance.access_shared_handler(|s| s.callback_requested.swap(false, Ordering::SeqCst)) {
            self.instance.call_on_main_thread_callback();
        }
        let restart = self.instance.access_shared_handler(|s| s.restart_requested.swap(false, Ordering::SeqCst));
        if restart && let Some(config) = self.config {
            self.deactivate();
            self.activate(config.sample_rate, config.min_frames_count, config.max_frames_count);
        }
        restart
    }

    /// Renders `input` (one Vec per channel) in blocks of the given sizes (cycled), on a separate
    /// audio thread, with sample-accurate automation events. Returns the output channels.
    pub fn render(&mut self, input: &[Vec<f32>], block_sizes: &[usize], automation: &[Automation]) -> Vec<Vec<f32>> {
        self.render_timed(input, block_sizes, automation, None)
    }

    /// [`render`](Self::render) in real time at `sample_rate`: each block is handed over when a
    /// sound card would ask for it (an absolute schedule, so late blocks do not shift the rest).
    pub fn render_paced_with(&mut self, input: &[Vec<f32>], block: usize, sample_rate: f64, automation: &[Automation]) -> Vec<Vec<f32>> {
        self.render_timed(input, &[block], automation, Some(sample_rate))
    }

    fn render_timed(&mut self, input: &[Vec<f32>], block_sizes: &[usize], automation: &[Automation], pace: Option<f64>) -> Vec<Vec<f32>> {
        let processor = self.processor.take().expect("activate() first");
        let channels = input.len();
        let len = input[0].len();
        let max_block = self.config.unwrap().max_frames_count as usize;
        let (processor, output) = std::thread::scope(|s| {
            s.spawn(move || {
                let mut processor = processor.start_processing().expect("start_processing");
                let mut output = vec![vec![0.0f32; len]; channels];
                let mut in_ports = AudioPorts::with_capacity(channels, 1);
                let mut out_ports = AudioPorts::with_capacity(channels, 1);
                let mut in_bufs = vec![vec![0.0f32; max_block]; channels];
                let mut out_bufs = vec![vec![0.0f32; max_block]; channels];
                let mut events = EventBuffer::with_capacity(64);
                let mut out_events = EventBuffer::with_capacity(64);
                let mut pos = 0usize;
                let mut k = 0usize;
                let t0 = std::time::Instant::now();
                while pos < len {
                    let n = block_sizes[k % block_sizes.len()].min(len - pos).min(max_block);
                    k += 1;
                    for c in 0..channels {
                        in_bufs[c][..n].copy_from_slice(&input[c][pos..pos + n]);
                    }
                    events.clear();
                    for a in automation {
                        if a.time >= pos as u64 && a.time < (pos + n) as u64 {
                            let t = (a.time - pos as u64) as u32;
                            events.push(&ParamValueEvent::new(t, ClapId::new(a.id), Pckn::match_all(), a.value));
                        }
                    }
                    out_events.clear();
                    let inputs = in_ports.with_input_buffers([AudioPortBuffer {
                        latency: 0,
                        channels: AudioPortBufferType::f32_input_only(
                            in_bufs.iter_mut().map(|b| InputChannel::variable(&mut b[..n])),
                        ),
                    }]);
                    let mut outputs = out_ports.with_output_buffers([AudioPortBuffer {
                        latency: 0,
                        channels: AudioPortBufferType::f32_output_only(
                            out_bufs.iter_mut().map(|b| &mut b[..n]),
                        ),
                    }]);
                    processor
                        .process(&inputs, &mut outputs, &events.as_input(), &mut out_events.as_output(), Some(pos as u64), None)
                        .expect("process");
                    for c in 0..channels {
                        output[c][pos..pos + n].copy_from_slice(&out_bufs[c][..n]);
                    }
                    pos += n;
                    if let Some(rate) = pace {
                        let due = t0 + std::time::Duration::from_secs_f64(pos as f64 / rate);
                        if let Some(rest) = due.checked_duration_since(std::time::Instant::now()) {
                            std::thread::sleep(rest);
                        }
                    }
                }
                (processor.stop_processing(), output)
            })
            .join()
            .expect("audio thread")
        });
        self.processor = Some(processor);
        output
    }

    /// Renders in real time: each block is handed over when a sound card would ask for it.
    pub fn render_paced(&mut self, input: &[Vec<f32>], block: usize, sample_rate: f64) -> Vec<Vec<f32>> {
        self.render_paced_with(input, block, sample_rate, &[])
    }

    pub fn save_state(&mut self) -> Vec<u8> {
        let ext = self.state_ext();
        let mut buf = Vec::new();
        ext.save(&self.instance.plugin_handle(), &mut buf).expect("state saves");
        buf
    }

    /// Sets the persisted `device` field (auto, cpu, gpu) through the state, as a project would.
    pub fn set_device(&mut self, device: &str) {
        let mut state = state_json(&self.save_state());
        state["fields"]["device"] = serde_json::Value::String(format!("\"{device}\""));
        self.load_state(&state_bytes(&state));
    }

    pub fn load_state(&mut self, data: &[u8]) {
        let ext = self.state_ext();
        let mut reader = std::io::Cursor::new(data);
        ext.load(&self.instance.plugin_handle(), &mut reader).expect("state loads");
    }
}

impl Drop for ClapPlugin {
    fn drop(&mut self) {
        self.deactivate();
    }
}
