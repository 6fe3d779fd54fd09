//! Choosing where the networks run. GPU backends are compiled in by cargo features; asking
//! for one that is not compiled in, or that finds no device, is an error, never a silent
//! fallback (except `Auto`, whose job is to fall back).

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

    /// Whether this build has the backend and a device for it.
    pub fn is_available(self) -> bool {
        self.device().is_ok()
    }

    /// Opens the device (the first GPU for CUDA and Metal).
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
                        "this build has no CUDA support: rebuild with `--features cuda`".into(),
                    ));
                }
                Device::new_cuda(0)
                    .map_err(|e| Error::BackendUnavailable(format!("no usable CUDA device: {e}")))
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

/// The dtype inference computes in on `device`: f32 everywhere for now; parity with
/// PyTorch is specified in f32 and the CPU has no faster exact path in candle.
pub fn compute_dtype(_device: &Device) -> DType {
    DType::F32
}
