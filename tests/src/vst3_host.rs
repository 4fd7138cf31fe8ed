//! A small but real VST3 host on the `vst3` crate's bindings: loads the bundle's module through
//! `libloading`, walks the factory, and drives the component the way a DAW does (bus
//! arrangement, processing setup, activation, sample-accurate parameter queues, IBStream state,
//! and the component handler that receives `restartComponent(kLatencyChanged)`).

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::sync::atomic::{AtomicI32, Ordering};

use vst3::Steinberg::Vst::*;
use vst3::Steinberg::*;
use vst3::{Class, ComPtr, ComWrapper, Interface};

fn tuid_bytes(t: &TUID) -> [u8; 16] {
    t.map(|c| c as u8)
}

fn c_str(chars: &[char8]) -> String {
    let bytes: Vec<u8> = chars.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn w_str(chars: &[TChar]) -> String {
    let units: Vec<u16> = chars.iter().take_while(|c| **c != 0).map(|c| *c as u16).collect();
    String::from_utf16_lossy(&units)
}

fn to_w(s: &str) -> Vec<TChar> {
    s.encode_utf16().map(|u| u as TChar).chain(std::iter::once(0)).collect()
}

// --- Host-side COM objects -----------------------------------------------------------------

struct HostApplication;
impl Class for HostApplication {
    type Interfaces = (IHostApplication,);
}
impl IHostApplicationTrait for HostApplication {
    unsafe fn getName(&self, name: *mut String128) -> tresult {
        let w = to_w("streamspeech-host-tests");
        let dst = unsafe { &mut *name };
        for (d, s) in dst.iter_mut().zip(w.iter()) {
            *d = *s;
        }
        kResultOk
    }
    unsafe fn createInstance(&self, _cid: *mut TUID, _iid: *mut TUID, obj: *mut *mut c_void) -> tresult {
        unsafe { *obj = std::ptr::null_mut() };
        kNotImplemented
    }
}

/// Records the restart flags the plugin asks for.
#[derive(Default)]
pub struct ComponentHandler {
    pub restart_flags: AtomicI32,
}
impl Class for ComponentHandler {
    type Interfaces = (IComponentHandler,);
}
impl IComponentHandlerTrait for ComponentHandler {
    unsafe fn beginEdit(&self, _id: ParamID) -> tresult {
        kResultOk
    }
    unsafe fn performEdit(&self, _id: ParamID, _value: ParamValue) -> tresult {
        kResultOk
    }
    unsafe fn endEdit(&self, _id: ParamID) -> tresult {
        kResultOk
    }
    unsafe fn restartComponent(&self, flags: int32) -> tresult {
        self.restart_flags.fetch_or(flags, Ordering::SeqCst);
        kResultOk
    }
}

struct ParamQueue {
    id: ParamID,
    points: Vec<(i32, f64)>,
}
impl Class for ParamQueue {
    type Interfaces = (IParamValueQueue,);
}
impl IParamValueQueueTrait for ParamQueue {
    unsafe fn getParameterId(&self) -> ParamID {
        self.id
    }
    unsafe fn getPointCount(&self) -> int32 {
        self.points.len() as int32
    }
    unsafe fn getPoint(&self, index: int32, offset: *mut int32, value: *mut ParamValue) -> tresult {
        match self.points.get(index as usize) {
            Some((o, v)) => {
                unsafe {
                    *offset = *o;
                    *value = *v;
                }
                kResultOk
            }
            None => kInvalidArgument,
        }
    }
    unsafe fn addPoint(&self, _offset: int32, _value: ParamValue, _index: *mut int32) -> tresult {
        kResultFalse
    }
}

struct ParamChanges {
    queues: Vec<ComWrapper<ParamQueue>>,
}
impl Class for ParamChanges {
    type Interfaces = (IParameterChanges,);
}
impl IParameterChangesTrait for ParamChanges {
    unsafe fn getParameterCount(&self) -> int32 {
        self.queues.len() as int32
    }
    unsafe fn getParameterData(&self, index: int32) -> *mut IParamValueQueue {
        self.queues
            .get(index as usize)
            .and_then(|q| q.as_com_ref::<IParamValueQueue>())
            .map(|r| r.as_ptr())
            .unwrap_or(std::ptr::null_mut())
    }
    unsafe fn addParameterData(&self, _id: *const ParamID, _index: *mut int32) -> *mut IParamValueQueue {
        std::ptr::null_mut()
    }
}

/// An in-memory IBStream.
#[derive(Default)]
pub struct MemoryStream {
    data: RefCell<Vec<u8>>,
    pos: Cell<usize>,
}
impl Class for MemoryStream {
    type Interfaces = (IBStream,);
}
impl IBStreamTrait for MemoryStream {
    unsafe fn read(&self, buffer: *mut c_void, n: int32, read: *mut int32) -> tresult {
        let data = self.data.borrow();
        let pos = self.pos.get();
        let n = (n.max(0) as usize).min(data.len().saturating_sub(pos));
        unsafe { std::ptr::copy_nonoverlapping(data[pos..].as_ptr(), buffer as *mut u8, n) };
        self.pos.set(pos + n);
        if !read.is_null() {
            unsafe { *read = n as int32 };
        }
        kResultOk
    }
    unsafe fn write(&self, buffer: *mut c_void, n: int32, written: *mut int32) -> tresult {
        let mut data = self.data.borrow_mut();
        let pos = self.pos.get();
        let n = n.max(0) as usize;
        if data.len() < pos + n {
            data.resize(pos + n, 0);
        }
        unsafe { std::ptr::copy_nonoverlapping(buffer as *const u8, data[pos..].as_mut_ptr(), n) };
        self.pos.set(pos + n);
        if !written.is_null() {
            unsafe { *written = n as int32 };
        }
        kResultOk
    }
    unsafe fn seek(&self, pos: int64, mode: int32, result: *mut int64) -> tresult {
        let len = self.data.borrow().len() as i64;
        let base = match mode as u32 {
            IBStream_::IStreamSeekMode_::kIBSeekSet => 0,
            IBStream_::IStreamSeekMode_::kIBSeekCur => self.pos.get() as i64,
            IBStream_::IStreamSeekMode_::kIBSeekEnd => len,
            _ => return kInvalidArgument,
        };
        let new = (base + pos).clamp(0, len);
        self.pos.set(new as usize);
        if !result.is_null() {
            unsafe { *result = new };
        }
        kResultOk
    }
    unsafe fn tell(&self, pos: *mut int64) -> tresult {
        unsafe { *pos = self.pos.get() as int64 };
        kResultOk
    }
}

// --- The harness ----------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct ClassInfo {
    pub cid: [u8; 16],
    pub category: String,
    pub name: String,
    pub sub_categories: String,
}

#[derive(Debug, Clone)]
pub struct Vst3Param {
    pub id: u32,
    pub title: String,
    pub units: String,
    pub step_count: i32,
    pub default_normalized: f64,
    pub automatable: bool,
    /// Flagged as the host's bypass (`kIsBypass`).
    pub bypass: bool,
}

/// A sample-accurate automation point in normalised units.
#[derive(Debug, Clone, Copy)]
pub struct Vst3Automation {
    pub time: u64,
    pub id: u32,
    pub normalized: f64,
}

pub struct Vst3Plugin {
    // Field order matters: COM objects are released before the library is unloaded.
    component: ComPtr<IComponent>,
    processor: ComPtr<IAudioProcessor>,
    controller: ComPtr<IEditController>,
    pub handler: ComWrapper<ComponentHandler>,
    _host: ComWrapper<HostApplication>,
    _factory: ComPtr<IPluginFactory>,
    pub channels: usize,
    max_block: usize,
    active: bool,
    offline: bool,
}

/// The module stays loaded for the whole test process, as DAWs keep plugin modules resident:
/// unloading it while the plugin's own event-loop thread winds down would crash the host.
fn module() -> &'static libloading::Library {
    static MODULE: std::sync::OnceLock<libloading::Library> = std::sync::OnceLock::new();
    MODULE.get_or_init(|| {
        let path = crate::vst3_library();
        // SAFETY: loading our own freshly built plugin; the VST3 module entry points have these
        // signatures on Linux.
        unsafe {
            let lib = libloading::Library::new(&path).expect("VST3 module loads");
            let entry: libloading::Symbol<unsafe extern "C" fn(*mut c_void) -> bool> =
                lib.get(b"ModuleEntry").expect("ModuleEntry");
            assert!(entry(std::ptr::null_mut()), "ModuleEntry failed");
            lib
        }
    })
}

pub fn load_factory() -> ComPtr<IPluginFactory> {
    unsafe {
        let get: libloading::Symbol<unsafe extern "system" fn() -> *mut IPluginFactory> =
            module().get(b"GetPluginFactory").expect("GetPluginFactory");
        ComPtr::from_raw(get()).expect("factory")
    }
}

pub fn class_infos() -> Vec<ClassInfo> {
    let factory = load_factory();
    let f2: Option<ComPtr<IPluginFactory2>> = factory.cast();
    let mut out = Vec::new();
    unsafe {
        for i in 0..factory.countClasses() {
            let mut info: PClassInfo = std::mem::zeroed();
            assert_eq!(factory.getClassInfo(i, &mut info), kResultOk);
            let mut sub = String::new();
            if let Some(f2) = &f2 {
                let mut info2: PClassInfo2 = std::mem::zeroed();
                if f2.getClassInfo2(i, &mut info2) == kResultOk {
                    sub = c_str(&info2.subCategories);
                }
            }
            out.push(ClassInfo {
                cid: tuid_bytes(&info.cid),
                category: c_str(&info.category),
                name: c_str(&info.name),
                sub_categories: sub,
            });
        }
    }
    drop(factory);
    out
}

impl Vst3Plugin {
    pub fn new() -> Self {
        let factory = load_factory();
        let host = ComWrapper::new(HostApplication);
        let handler = ComWrapper::new(ComponentHandler::default());
        unsafe {
            let cid: TUID = streamspeech_vocoder::VST3_CLASS_ID.map(|b| b as char8);
            let mut obj: *mut c_void = std::ptr::null_mut();
            let r = factory.createInstance(cid.as_ptr(), IComponent::IID.as_ptr() as *const char8, &mut obj);
            assert_eq!(r, kResultOk, "createInstance");
            let component = ComPtr::from_raw(obj as *mut IComponent).expect("component");
            let ctx = host.as_com_ref::<IHostApplication>().unwrap().as_ptr() as *mut FUnknown;
            assert_eq!(component.initialize(ctx), kResultOk);
            let processor: ComPtr<IAudioProcessor> = component.cast().expect("IAudioProcessor");
            let controller: ComPtr<IEditController> = component.cast().expect("single-component IEditController");
            assert_eq!(controller.initialize(ctx), kResultOk);
            let h = handler.as_com_ref::<IComponentHandler>().unwrap().as_ptr();
            assert_eq!(controller.setComponentHandler(h), kResultOk);
            Self {
                component,
                processor,
                controller,
                handler,
                _host: host,
                _factory: factory,
                channels: 2,
                max_block: 0,
                active: false,
                offline: false,
            }
        }
    }

    pub fn params(&self) -> Vec<Vst3Param> {
        let mut out = Vec::new();
        unsafe {
            for i in 0..self.controller.getParameterCount() {
                let mut info: ParameterInfo = std::mem::zeroed();
                assert_eq!(self.controller.getParameterInfo(i, &mut info), kResultOk);
                out.push(Vst3Param {
                    id: info.id,
                    title: w_str(&info.title),
                    units: w_str(&info.units),
                    step_count: info.stepCount,
                    default_normalized: info.defaultNormalizedValue,
                    automatable: info.flags & ParameterInfo_::ParameterFlags_::kCanAutomate as i32 != 0,
                    bypass: info.flags & ParameterInfo_::ParameterFlags_::kIsBypass as i32 != 0,
                });
            }
        }
        out
    }

    pub fn param_id(&self, title: &str) -> u32 {
        self.params().into_iter().find(|p| p.title == title).unwrap_or_else(|| panic!("no {title}")).id
    }

    pub fn normalized(&self, id: u32) -> f64 {
        unsafe { self.controller.getParamNormalized(id) }
    }

    pub fn set_normalized(&self, id: u32, value: f64) {
        unsafe { assert_eq!(self.controller.setParamNormalized(id, value), kResultOk) };
    }

    pub fn value_to_text(&self, id: u32, normalized: f64) -> String {
        let mut s: String128 = [0; 128];
        unsafe { assert_eq!(self.controller.getParamStringByValue(id, normalized, &mut s), kResultOk) };
        w_str(&s)
    }

    pub fn text_to_value(&self, id: u32, text: &str) -> Option<f64> {
        let mut w = to_w(text);
        let mut v = 0.0;
        let r = unsafe { self.controller.getParamValueByString(id, w.as_mut_ptr(), &mut v) };
        (r == kResultOk).then_some(v)
    }

    pub fn latency(&self) -> u32 {
        unsafe { self.processor.getLatencySamples() }
    }

    pub fn restart_flags(&self) -> i32 {
        self.handler.restart_flags.load(Ordering::SeqCst)
    }

    /// Bus arrangement (1 = mono, 2 = stereo), processing setup and activation.
    pub fn activate(&mut self, sample_rate: f64, max_block: usize, channels: usize, offline: bool) {
        assert!(!self.active);
        unsafe {
            let mut arr: SpeakerArrangement =
                if channels == 1 { SpeakerArr::kMono } else { SpeakerArr::kStereo };
            let mut arr_out = arr;
            assert_eq!(self.processor.setBusArrangements(&mut arr, 1, &mut arr_out, 1), kResultTrue,
                "bus arrangement with {channels} channels");
            self.component.activateBus(MediaTypes_::kAudio as i32, BusDirections_::kInput as i32, 0, 1);
            self.component.activateBus(MediaTypes_::kAudio as i32, BusDirections_::kOutput as i32, 0, 1);
            let mut setup = ProcessSetup {
                processMode: if offline { ProcessModes_::kOffline } else { ProcessModes_::kRealtime } as i32,
                symbolicSampleSize: SymbolicSampleSizes_::kSample32 as i32,
                maxSamplesPerBlock: max_block as i32,
                sampleRate: sample_rate,
            };
            assert_eq!(self.processor.setupProcessing(&mut setup), kResultOk);
            // nice-plug 0.4.2 stores the *previous* process mode in the buffer config it hands to
            // activate() (it reads the mode before updating it in setupProcessing). Hosts that
            // switch to offline rendering call setupProcessing again before activating; doing the
            // same here gives the plugin the mode this setup asks for. See README, known issues.
            assert_eq!(self.processor.setupProcessing(&mut setup), kResultOk);
            assert_eq!(self.component.setActive(1), kResultOk);
            self.processor.setProcessing(1);
        }
        self.channels = channels;
        self.max_block = max_block;
        self.offline = offline;
        self.active = true;
    }

    pub fn deactivate(&mut self) {
        if self.active {
            unsafe {
                self.processor.setProcessing(0);
                self.component.setActive(0);
            }
            self.active = false;
        }
    }

    /// Renders `input` in blocks of the given sizes (cycled), with sample-accurate automation.
    pub fn render(&mut self, input: &[Vec<f32>], block_sizes: &[usize], automation: &[Vst3Automation]) -> Vec<Vec<f32>> {
        assert!(self.active);
        let channels = input.len();
        assert_eq!(channels, self.channels);
        let len = input[0].len();
        let mut output = vec![vec![0.0f32; len]; channels];
        let mut in_bufs = vec![vec![0.0f32; self.max_block]; channels];
        let mut out_bufs = vec![vec![0.0f32; self.max_block]; channels];
        let (mut pos, mut k) = (0usize, 0usize);
        while pos < len {
            let n = block_sizes[k % block_sizes.len()].min(len - pos).min(self.max_block);
            k += 1;
            for c in 0..channels {
                in_bufs[c][..n].copy_from_slice(&input[c][pos..pos + n]);
            }
            let mut queues: Vec<ComWrapper<ParamQueue>> = Vec::new();
            for a in automation.iter().filter(|a| a.time >= pos as u64 && a.time < (pos + n) as u64) {
                queues.push(ComWrapper::new(ParamQueue { id: a.id, points: vec![((a.time - pos as u64) as i32, a.normalized)] }));
            }
            let changes = ComWrapper::new(ParamChanges { queues });
            let mut in_ptrs: Vec<*mut f32> = in_bufs.iter_mut().map(|b| b.as_mut_ptr()).collect();
            let mut out_ptrs: Vec<*mut f32> = out_bufs.iter_mut().map(|b| b.as_mut_ptr()).collect();
            let mut in_bus = AudioBusBuffers {
                numChannels: channels as i32,
                silenceFlags: 0,
                __field0: AudioBusBuffers__type0 { channelBuffers32: in_ptrs.as_mut_ptr() },
            };
            let mut out_bus = AudioBusBuffers {
                numChannels: channels as i32,
                silenceFlags: 0,
                __field0: AudioBusBuffers__type0 { channelBuffers32: out_ptrs.as_mut_ptr() },
            };
            let mut data = ProcessData {
                processMode: if self.offline { ProcessModes_::kOffline } else { ProcessModes_::kRealtime } as i32,
                symbolicSampleSize: SymbolicSampleSizes_::kSample32 as i32,
                numSamples: n as i32,
                numInputs: 1,
                numOutputs: 1,
                inputs: &mut in_bus,
                outputs: &mut out_bus,
                inputParameterChanges: changes.as_com_ref::<IParameterChanges>().unwrap().as_ptr(),
                outputParameterChanges: std::ptr::null_mut(),
                inputEvents: std::ptr::null_mut(),
                outputEvents: std::ptr::null_mut(),
                processContext: std::ptr::null_mut(),
            };
            let r = unsafe { self.processor.process(&mut data) };
            assert_eq!(r, kResultOk, "process");
            for c in 0..channels {
                output[c][pos..pos + n].copy_from_slice(&out_bufs[c][..n]);
            }
            pos += n;
        }
        output
    }

    pub fn save_state(&self) -> Vec<u8> {
        let stream = ComWrapper::new(MemoryStream::default());
        let ptr = stream.as_com_ref::<IBStream>().unwrap().as_ptr();
        unsafe { assert_eq!(self.component.getState(ptr), kResultOk) };
        stream.data.borrow().clone()
    }

    pub fn load_state(&self, data: &[u8]) {
        let stream = ComWrapper::new(MemoryStream { data: RefCell::new(data.to_vec()), pos: Cell::new(0) });
        let ptr = stream.as_com_ref::<IBStream>().unwrap().as_ptr();
        unsafe {
            assert_eq!(self.component.setState(ptr), kResultOk);
            // Hosts pass the same stream to the controller; nice-plug's single component ignores it.
            stream.pos.set(0);
            assert_eq!(self.controller.setComponentState(ptr), kResultOk);
        }
    }
}

impl Drop for Vst3Plugin {
    fn drop(&mut self) {
        self.deactivate();
        unsafe {
            self.controller.setComponentHandler(std::ptr::null_mut());
            self.controller.terminate();
            self.component.terminate();
        }
    }
}
