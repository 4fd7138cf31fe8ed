//! Choosing the compute device: one resolver for the CLI and the plugin.
//!
//! A CUDA build must start and run where there is no GPU, no NVIDIA driver or no CUDA libraries
//! (a laptop, a CI machine, a studio computer without the driver): candle's CUDA backend loads
//! `libcuda`, cuBLAS and cuRAND when a device is first created (our CUDA build switches cudarc to
//! dynamic loading, see `cargo xtask build --cuda`), and cudarc panics when one is missing. So the
//! libraries are probed here first, the device creation is guarded, and every refusal becomes a
//! CPU fallback with a sentence that says why — never a crash.

use candle_core::Device;

/// What the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceRequest {
    Cpu,
    /// The GPU; the CPU (with a warning) when there is none.
    Gpu,
    /// The GPU when one answers, else the CPU, quietly.
    Auto,
}

/// The device to run on, and what to tell the user.
#[derive(Clone, Debug)]
pub struct ResolvedDevice {
    pub device: Device,
    /// One line for a status display: "CPU", "GPU (CUDA device 0)", or why the CPU is used.
    pub status: String,
    /// A GPU was asked for (`Gpu`, or `Auto` in a GPU build) and the CPU is used instead: the
    /// reason, for a warning.
    pub fallback: Option<String>,
}

/// Whether this build has a GPU backend at all.
pub const GPU_BUILD: bool = cfg!(any(feature = "cuda", feature = "metal"));

/// Resolves `request` to a device. Never panics: a missing driver or library, or a device that
/// refuses to start, gives the CPU and the reason.
pub fn resolve(request: DeviceRequest) -> ResolvedDevice {
    let cpu = |status: String, fallback: Option<String>| ResolvedDevice { device: Device::Cpu, status, fallback };
    if request == DeviceRequest::Cpu {
        return cpu("CPU".into(), None);
    }
    match gpu() {
        Ok((device, name)) => ResolvedDevice { device, status: name, fallback: None },
        Err(why) if request == DeviceRequest::Gpu || GPU_BUILD => cpu(format!("CPU ({why})"), Some(why)),
        Err(_) => cpu("CPU".into(), None),
    }
}

#[cfg(feature = "cuda")]
fn gpu() -> Result<(Device, String), String> {
    let missing = cuda::missing_libraries();
    if !missing.is_empty() {
        return Err(format!("GPU unavailable: {} not found; using the CPU", missing.join(", ")));
    }
    // cudarc panics on some failures it cannot return (a library that loads but lacks a symbol):
    // contain it rather than take the host down.
    match std::panic::catch_unwind(|| Device::new_cuda(0)) {
        Ok(Ok(d)) => Ok((d, "GPU (CUDA device 0)".into())),
        Ok(Err(e)) => Err(format!("GPU unavailable ({e}); using the CPU")),
        Err(_) => Err("GPU unavailable (the CUDA libraries failed to start); using the CPU".into()),
    }
}

#[cfg(all(feature = "metal", not(feature = "cuda")))]
fn gpu() -> Result<(Device, String), String> {
    Device::new_metal(0).map(|d| (d, "GPU (Metal device 0)".into())).map_err(|e| format!("GPU unavailable ({e}); using the CPU"))
}

#[cfg(not(any(feature = "cuda", feature = "metal")))]
fn gpu() -> Result<(Device, String), String> {
    Err("GPU requested, but this build has no GPU support; using the CPU".into())
}

#[cfg(feature = "cuda")]
pub mod cuda {
    /// The shared libraries candle's CUDA backend loads when it creates a device (the driver,
    /// cuBLAS, cuBLASLt, cuRAND), each with the file names cudarc tries (its
    /// `get_lib_name_candidates` on Linux, in its order), and the name to report when none loads.
    pub fn libraries() -> Vec<(&'static str, Vec<String>)> {
        ["cuda", "cublas", "cublasLt", "curand"]
            .into_iter()
            .map(|name| {
                let mut files = vec![format!("lib{name}.so")];
                files.extend([CUDA_MAJOR, 12, 11, 10, 9, 1].map(|v| format!("lib{name}.so.{v}")));
                (name, files)
            })
            .collect()
    }

    /// The toolkit major version the CUDA build was made with (`cargo xtask build --cuda`).
    pub const CUDA_MAJOR: u32 = 13;

    /// The libraries of [`libraries`] that no file name loads, as their sonames.
    pub fn missing_libraries() -> Vec<String> {
        libraries()
            .into_iter()
            .filter(|(_, files)| {
                !files.iter().any(|f| {
                    // SAFETY: loading runs the library's initialisers; these are NVIDIA's own
                    // libraries under their standard names, which candle would load anyway.
                    unsafe { libloading::Library::new(f) }.is_ok()
                })
            })
            // The sonames of CUDA 13's: the driver's is versioned 1, cuRAND's 10, the others 13.
            .map(|(name, _)| match name {
                "cuda" => "libcuda.so.1".to_string(),
                "curand" => "libcurand.so.10".to_string(),
                _ => format!("lib{name}.so.{CUDA_MAJOR}"),
            })
            .collect()
    }
}
