//! Choosing where the networks run. The CPU engine is built in; CUDA comes from a backend
//! library loaded at run time (`libcyclegan_backend_cuda.so`, engine/dynamic.rs), and a
//! build with the `cuda` or `metal` feature (what the backend libraries are built from)
//! has that device compiled in. Asking for a backend that is missing, refused or finds no
//! device is an error, never a silent fallback (except `Auto`, whose job is to fall back,
//! with a notice).

use candle_core::{DType, Device};

use crate::error::{Error, Result};

/// A compute backend as the user names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// The best available: CUDA, then Metal, then the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
    Metal,
}

impl Backend {
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Backend::Auto),
            "cpu" => Ok(Backend::Cpu),
            "cuda" | "gpu" => Ok(Backend::Cuda),
            "metal" => Ok(Backend::Metal),
            _ => Err(Error::InvalidArgument(format!(
                "unknown device {s:?}: use auto, cpu, cuda or metal"
            ))),
        }
    }

    /// Whether this backend can run here: for CUDA, a backend library that loads and found
    /// its device (or CUDA compiled into this build and a device).
    pub fn is_available(self) -> bool {
        match self {
            Backend::Cuda if !cfg!(feature = "cuda") => {
                crate::engine::dynamic::report("cuda").is_some_and(|r| r.is_ready())
            }
            _ => self.device().is_ok(),
        }
    }

    /// What `cyclegan backends` and `cg_backend_describe` say about this backend: one line.
    pub fn describe_status(self) -> String {
        match self {
            Backend::Auto => match Backend::Auto.fallback_notice() {
                Some(n) => format!("auto: cpu ({n})"),
                None if cfg!(feature = "cuda") || cfg!(feature = "metal") => {
                    "auto: the compiled-in GPU".into()
                }
                None => "auto: the cuda backend library".into(),
            },
            Backend::Cpu => "cpu: ready (built in)".into(),
            Backend::Cuda if !cfg!(feature = "cuda") => crate::engine::dynamic::report("cuda")
                .map_or_else(|| "cuda: unknown".into(), |r| r.summary()),
            other => match other.device() {
                Ok(_) => format!("{}: ready (compiled in)", other.name()),
                Err(e) => format!("{}: {e}", other.name()),
            },
        }
    }

    /// The backend library that serves this choice in this build, if any: CUDA in a
    /// build without the `cuda` feature (found or not: asking for it is asking for the
    /// library), and `Auto` when the CUDA library is ready on a GPU. The engine and the
    /// trainer both decide here, so stylizing and training go to the same place.
    pub(crate) fn library(self) -> Option<&'static str> {
        let compiled_in = cfg!(feature = "cuda") || cfg!(feature = "metal");
        match self {
            Backend::Cuda if !cfg!(feature = "cuda") => Some("cuda"),
            Backend::Auto if !compiled_in => crate::engine::dynamic::report("cuda")
                .filter(|r| r.is_gpu())
                .map(|_| "cuda"),
            _ => None,
        }
    }

    /// The name users type.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Cpu => "cpu",
            Backend::Cuda => "cuda",
            Backend::Metal => "metal",
        }
    }

    /// Why `Auto` runs on the CPU although a GPU backend might have served it (no backend
    /// library, a refused one, no driver or GPU), for front ends to show as one notice
    /// line; `None` when it gets a GPU.
    pub fn fallback_notice(self) -> Option<String> {
        if self != Backend::Auto {
            return None;
        }
        if !(cfg!(feature = "cuda") || cfg!(feature = "metal")) {
            let report = crate::engine::dynamic::report("cuda")?;
            return (!report.is_gpu()).then(|| format!("{}; running on the CPU", report.why_not()));
        }
        let why = |e: Error| match e {
            Error::BackendUnavailable(why) => why,
            other => other.to_string(),
        };
        match (Backend::Cuda.device(), Backend::Metal.device()) {
            (Ok(_), _) | (_, Ok(_)) => None,
            (Err(e), _) if cfg!(feature = "cuda") => {
                Some(format!("{}; running on the CPU", why(e)))
            }
            (_, Err(e)) => Some(format!("{}; running on the CPU", why(e))),
        }
    }

    /// Opens the device compiled into this build (the first GPU for CUDA and Metal): what
    /// a trainer in this process and the backend libraries run on. Without the `cuda`
    /// feature, CUDA is reached through the backend library ([`Backend::library`]).
    pub fn device(self) -> Result<Device> {
        match self {
            Backend::Cpu => Ok(Device::Cpu),
            Backend::Auto => Ok(Backend::Cuda
                .device()
                .or_else(|_| Backend::Metal.device())
                .unwrap_or(Device::Cpu)),
            Backend::Cuda => {
                if !cfg!(feature = "cuda") {
                    return Err(Error::BackendUnavailable(
                        "CUDA is served by the backend library libcyclegan_backend_cuda.so: \
                         open training runs with RunSettings::open (what cyclegan train and \
                         cg_trainer_new do), which reaches it"
                            .into(),
                    ));
                }
                cuda_device()
            }
            Backend::Metal => {
                if !cfg!(feature = "metal") {
                    return Err(Error::BackendUnavailable(
                        "this build has no Metal support: rebuild with `--features metal` on macOS"
                            .into(),
                    ));
                }
                Device::new_metal(0)
                    .map_err(|e| Error::BackendUnavailable(format!("no usable Metal device: {e}")))
            }
        }
    }
}

/// The first CUDA device, opened once per process (a context costs tens of milliseconds
/// and front ends ask more than once: a notice, then the model).
fn cuda_device() -> Result<Device> {
    static DEVICE: std::sync::OnceLock<std::result::Result<Device, String>> =
        std::sync::OnceLock::new();
    DEVICE
        .get_or_init(|| {
            missing_cuda_library()?;
            // A build whose CUDA libraries load at run time (scripts/build-cuda-portable.sh)
            // panics inside cudarc when one cannot be found; the probe above names the
            // usual ones, and this turns any other into the same error.
            std::panic::catch_unwind(|| Device::new_cuda(0))
                .map_err(|_| "a CUDA library failed to load".to_string())?
                .map_err(|e| candle_message(&e))
        })
        .clone()
        .map_err(|e| Error::BackendUnavailable(format!("no usable CUDA device: {e}")))
}

/// A candle error's message without the backtrace candle attaches to it when
/// `RUST_BACKTRACE` is set: a device notice is one line (`cyclegan backends`, the fallback
/// notice), not a hundred.
fn candle_message(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => candle_message(inner),
        e => e.to_string(),
    }
}

/// Checks that the CUDA driver and the libraries candle uses can be loaded, so that a GPU
/// build on a machine without them says which one is missing. (A build linked to them the
/// usual way does not start at all without them; then every probe succeeds.)
#[cfg(all(feature = "cuda", target_os = "linux"))]
fn missing_cuda_library() -> std::result::Result<(), String> {
    const PATH: &str = "put the CUDA libraries on LD_LIBRARY_PATH, or use --device cpu";
    let libs: [(&str, &[&str], &str); 3] = [
        (
            "the NVIDIA driver (libcuda.so.1)",
            &["libcuda.so.1", "libcuda.so"],
            "install it, or use --device cpu",
        ),
        (
            "cuBLAS (libcublas.so)",
            &["libcublas.so.13", "libcublas.so.12", "libcublas.so"],
            PATH,
        ),
        (
            "cuRAND (libcurand.so.10)",
            &["libcurand.so.10", "libcurand.so"],
            PATH,
        ),
    ];
    for (what, names, advice) in libs {
        // SAFETY: loading these NVIDIA libraries runs only their initialisers, which have
        // no preconditions; the handle is dropped at once (cudarc loads its own).
        let found = names
            .iter()
            .any(|&n| unsafe { libloading::Library::new(n) }.is_ok());
        if !found {
            return Err(format!("{what} cannot be loaded ({advice})"));
        }
    }
    Ok(())
}

#[cfg(not(all(feature = "cuda", target_os = "linux")))]
fn missing_cuda_library() -> std::result::Result<(), String> {
    Ok(())
}

/// The dtype inference computes in on `device`: f32 everywhere for now; parity with
/// PyTorch is specified in f32 and the CPU has no faster exact path in candle.
pub fn compute_dtype(_device: &Device) -> DType {
    DType::F32
}
