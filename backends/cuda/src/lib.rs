//! `libcyclegan_backend_cuda.so`: cyclegan's candle engine behind the abi_stable boundary
//! of `cyclegan-backend-api`, loaded by cyclegan at run time (docs/gpu.md).
//!
//! With the `cuda` feature it runs on the first CUDA GPU with cyclegan's fused kernels;
//! without it, on candle's CPU device: the build CI loads to test the boundary, which
//! reports itself as no GPU so that `--device auto` never prefers it to the CPU engine.
//!
//! Nothing unwinds out of this library: every entry point catches panics and returns them
//! as errors.

mod trainer;

use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::export_root_module;
use candle_core::Device;
use cyclegan::engine::{Engine, NormStat, Precision, Stats};
use cyclegan::Error;
use cyclegan_backend_api::abi_stable::prefix_type::PrefixTypeTrait;
use cyclegan_backend_api::abi_stable::sabi_trait::TD_Opaque;
use cyclegan_backend_api::abi_stable::std_types::{
    RErr, ROk, ROption, RResult, RSlice, RStr, RString, RVec,
};
use cyclegan_backend_api::{
    version_stamp, BackendEngine, BackendEngine_TO, BackendError, BackendMod, BackendModRef,
    DeviceProbe, EngineBox, ErrorKind, FlatStats, ForwardArgs, ForwardOut, LoadOptions,
    PrecisionAbi, StatsMode, ABI_REVISION,
};

#[export_root_module]
pub fn get_library() -> BackendModRef {
    BackendMod {
        version: RStr::from_str(version_stamp!()),
        abi_revision: ABI_REVISION,
        name: RStr::from_str("cuda"),
        probe,
        load,
        open_trainer: trainer::open_trainer,
    }
    .leak_into_prefix()
}

/// What this build is, for `cyclegan backends`.
fn build() -> String {
    let mut parts = vec![if cfg!(feature = "cuda") {
        "cuda"
    } else {
        "candle CPU device (boundary test build, no CUDA)"
    }];
    if cfg!(feature = "cudnn") {
        parts.push("cudnn");
    }
    let s = parts.join(", ");
    #[cfg(feature = "cuda")]
    let s = format!("{s}, kernels {}", candle_kernels::BUILT_FOR);
    s
}

/// The device, opened once per process.
fn device() -> Result<Device, String> {
    static DEVICE: std::sync::OnceLock<Result<Device, String>> = std::sync::OnceLock::new();
    DEVICE
        .get_or_init(|| {
            if cfg!(feature = "cuda") {
                cyclegan::Backend::Cuda.device().map_err(|e| match e {
                    Error::BackendUnavailable(why) => why,
                    other => other.to_string(),
                })
            } else {
                Ok(Device::Cpu)
            }
        })
        .clone()
}

/// The device's name and (total, free) memory.
fn device_info(device: &Device) -> (String, u64, u64) {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(dev) => cuda_info(dev),
        _ => ("candle CPU device".into(), 0, 0),
    }
}

#[cfg(feature = "cuda")]
fn cuda_info(dev: &candle_core::cuda::CudaDevice) -> (String, u64, u64) {
    let stream = dev.cuda_stream();
    let ctx = stream.context();
    let name = ctx.name().unwrap_or_else(|_| "CUDA device".into());
    let (free, total) = ctx
        .mem_get_info()
        .map_or((0, 0), |(f, t)| (f as u64, t as u64));
    (name, total, free)
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs `f`, turning a panic into an error.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, BackendError>) -> RResult<T, BackendError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => ROk(v),
        Ok(Err(e)) => RErr(e),
        Err(p) => RErr(BackendError::new(
            ErrorKind::Compute,
            format!(
                "the CUDA backend panicked in {what}: {}",
                panic_message(&*p)
            ),
        )),
    }
}

fn to_abi(e: Error) -> BackendError {
    match e {
        Error::Io { path, source } => {
            BackendError::new(ErrorKind::Io, source.to_string()).with_path(&path)
        }
        Error::Format {
            path: Some(path),
            msg,
        } => BackendError::new(ErrorKind::Format, msg).with_path(&path),
        e => {
            let kind = match &e {
                Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
                Error::Format { .. } => ErrorKind::Format,
                Error::Unsupported(_) => ErrorKind::Unsupported,
                Error::BackendUnavailable(_) => ErrorKind::Unavailable,
                Error::Cancelled => ErrorKind::Cancelled,
                Error::OutOfMemory(_) => ErrorKind::OutOfMemory,
                _ => ErrorKind::Compute,
            };
            BackendError::new(kind, inner_message(&e))
        }
    }
}

/// The message of `e` without the prefix its `Display` adds for its kind ("invalid
/// argument: "): the host wraps it into the same kind, which adds the prefix again.
fn inner_message(e: &Error) -> String {
    match e {
        Error::InvalidArgument(m)
        | Error::Unsupported(m)
        | Error::BackendUnavailable(m)
        | Error::Compute(m) => m.clone(),
        Error::OutOfMemory(m) => m.clone(),
        Error::Format { msg, .. } => msg.clone(),
        other => other.to_string(),
    }
}

extern "C" fn probe() -> DeviceProbe {
    let run = || match device() {
        Ok(d) => {
            let (name, total, free) = device_info(&d);
            DeviceProbe {
                ready: true,
                gpu: !d.is_cpu(),
                device: name.into(),
                memory_total: total,
                memory_free: free,
                build: build().into(),
            }
        }
        Err(why) => DeviceProbe {
            ready: false,
            gpu: cfg!(feature = "cuda"),
            device: why.into(),
            memory_total: 0,
            memory_free: 0,
            build: build().into(),
        },
    };
    catch_unwind(run).unwrap_or_else(|p| DeviceProbe {
        ready: false,
        gpu: cfg!(feature = "cuda"),
        device: format!("the probe panicked: {}", panic_message(&*p)).into(),
        memory_total: 0,
        memory_free: 0,
        build: RString::new(),
    })
}

/// The device `options` ask for (only the first is served), opened.
fn device_for(options: LoadOptions) -> Result<Device, BackendError> {
    if options.device_index != 0 {
        return Err(BackendError::new(
            ErrorKind::Unsupported,
            "this backend uses the first device only",
        ));
    }
    device().map_err(|why| BackendError::new(ErrorKind::Unavailable, why))
}

extern "C" fn load(
    weights: RSlice<'_, u8>,
    options: LoadOptions,
) -> RResult<EngineBox, BackendError> {
    guarded("load", || {
        let device = device_for(options)?;
        let source = cyclegan::Weights::from_bytes(weights.as_slice())
            .and_then(|w| w.generator_weights())
            .map_err(to_abi)?;
        let engine = cyclegan::engine::candle_engine_on(&source, device.clone()).map_err(to_abi)?;
        let (name, _, _) = device_info(&device);
        let label = if device.is_cpu() {
            "cuda backend on the candle CPU device (test build)".to_string()
        } else {
            format!("cuda ({name})")
        };
        Ok(BackendEngine_TO::from_value(
            Loaded {
                engine,
                device,
                label,
            },
            TD_Opaque,
        ))
    })
}

struct Loaded {
    engine: Box<dyn Engine>,
    device: Device,
    label: String,
}

fn unflatten(channels: &[u32], values: &[f32]) -> Result<Vec<NormStat>, BackendError> {
    let mut out = Vec::with_capacity(channels.len());
    let mut at = 0usize;
    for &c in channels {
        let c = c as usize;
        let end = at
            .checked_add(2 * c)
            .filter(|&e| e <= values.len())
            .ok_or_else(|| {
                BackendError::new(
                    ErrorKind::InvalidArgument,
                    "given statistics hold fewer values than their channel counts say",
                )
            })?;
        out.push(NormStat {
            mean: values[at..at + c].to_vec(),
            var: values[at + c..end].to_vec(),
        });
        at = end;
    }
    if at != values.len() {
        return Err(BackendError::new(
            ErrorKind::InvalidArgument,
            "given statistics hold more values than their channel counts say",
        ));
    }
    Ok(out)
}

fn flatten(stats: &[NormStat]) -> FlatStats {
    let mut out = FlatStats::default();
    for s in stats {
        out.channels.push(s.mean.len() as u32);
        out.values.extend_from_slice(&s.mean);
        out.values.extend_from_slice(&s.var);
    }
    out
}

impl BackendEngine for Loaded {
    fn describe(&self) -> RString {
        self.label.as_str().into()
    }

    fn memory_for(&self, width: u64, height: u64) -> u64 {
        let side = |v: u64| usize::try_from(v).unwrap_or(usize::MAX / 2);
        catch_unwind(AssertUnwindSafe(|| {
            self.engine.memory_for(side(width), side(height))
        }))
        .unwrap_or(u64::MAX)
    }

    fn resident_memory(&self) -> u64 {
        catch_unwind(AssertUnwindSafe(|| self.engine.resident_memory())).unwrap_or(0)
    }

    fn device_memory_free(&self) -> ROption<u64> {
        catch_unwind(AssertUnwindSafe(|| {
            let (_, total, free) = device_info(&self.device);
            (total > 0).then_some(free)
        }))
        .ok()
        .flatten()
        .into()
    }

    fn forward(&self, args: ForwardArgs<'_>) -> RResult<ForwardOut, BackendError> {
        guarded("forward", || {
            let side = |v: u64| {
                usize::try_from(v).map_err(|_| {
                    BackendError::new(ErrorKind::InvalidArgument, format!("side {v} is too large"))
                })
            };
            let (width, height) = (side(args.width)?, side(args.height)?);
            let precision = match args.precision {
                PrecisionAbi::Auto => Precision::Auto,
                PrecisionAbi::F32 => Precision::F32,
                PrecisionAbi::Bf16 => Precision::Bf16,
            };
            let progress = args.progress;
            let mut on_layer =
                |done: usize, total: usize| progress.report(done as u64, total as u64);
            let mut recorded = Vec::new();
            let given;
            let stats = match args.stats {
                StatsMode::Measure => Stats::Measure,
                StatsMode::Record => Stats::Record(&mut recorded),
                StatsMode::Given => {
                    given =
                        unflatten(args.given.channels.as_slice(), args.given.values.as_slice())?;
                    Stats::Given(&given)
                }
            };
            let pixels = self
                .engine
                .forward(
                    args.planar.as_slice(),
                    width,
                    height,
                    stats,
                    precision,
                    &mut on_layer,
                )
                .map_err(to_abi)?;
            Ok(ForwardOut {
                pixels: RVec::from(pixels),
                recorded: flatten(&recorded),
            })
        })
    }

    fn release_buffers(&self) {
        let _ = catch_unwind(AssertUnwindSafe(|| self.engine.release_buffers()));
    }
}
