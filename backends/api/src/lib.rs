//! The boundary between cyclegan and its backend libraries (`libcyclegan_backend_cuda.so`,
//! ...), loaded at run time: an `abi_stable` root module that checks its own layout and
//! version when loaded, and an engine object behind it.
//!
//! It mirrors cyclegan's engine boundary (`cyclegan::engine::Engine`) in FFI-safe types:
//! weights go in as safetensors bytes, pixels as planar f32, instance-norm statistics as
//! flat f32 arrays with a channel count per norm, progress through a C callback. Nothing
//! unwinds across it: a backend turns panics into [`BackendError`]s, the host catches
//! panics in its progress callback.
//!
//! Versioning: abi_stable refuses a library whose root module has another layout, or whose
//! interface version is incompatible; the host also refuses one whose [`version_stamp!`]
//! differs from its own (a backend serves exactly the cyclegan release it was built with)
//! or whose [`ABI_REVISION`] differs (a change of meaning the layout cannot show).

// abi_stable's derive and sabi_trait macros put impls inside consts.
#![allow(non_local_definitions)]

use std::ffi::c_void;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

pub use abi_stable;
use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec, Tuple2};
use abi_stable::{package_version_strings, sabi_trait, StableAbi};

/// Bumped with any change of the boundary's meaning that its layout does not show.
pub const ABI_REVISION: u32 = 2;

/// What the version stamp of a library starts with; the version and a `;` follow.
pub const VERSION_PREFIX: &str = "cyclegan-backend-version=";

/// The version stamp of the crate it is expanded in: `cyclegan-backend-version=X.Y.Z;`. A
/// backend puts its own in its root module; the host compares it with its own. A distinct
/// literal, so tests can find it in a built library and stamp another version.
#[macro_export]
macro_rules! version_stamp {
    () => {
        concat!("cyclegan-backend-version=", env!("CARGO_PKG_VERSION"), ";")
    };
}

/// The version in a stamp (`None` when it is not one).
pub fn stamped_version(stamp: &str) -> Option<&str> {
    stamp.strip_prefix(VERSION_PREFIX)?.strip_suffix(';')
}

/// What a backend finds on this machine, without loading any weights.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct DeviceProbe {
    /// A device was opened and can run the engine.
    pub ready: bool,
    /// The device is a GPU (false for a build on candle's CPU device, which exists to test
    /// the boundary).
    pub gpu: bool,
    /// The device's name when ready ("NVIDIA H200"); otherwise why not, naming the missing
    /// driver, library or device.
    pub device: RString,
    /// Device memory in bytes (0 when unknown or not ready).
    pub memory_total: u64,
    pub memory_free: u64,
    /// How the backend was built ("cuda, cudnn, kernels sm_80 sm_86 sm_89 sm_90 + PTX").
    pub build: RString,
}

/// Options of [`BackendMod::load`].
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Which device of the backend's kind (0: the first).
    pub device_index: u32,
}

/// The arithmetic of a forward pass (cyclegan's `Precision`).
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrecisionAbi {
    Auto,
    F32,
    Bf16,
}

/// Where the instance norms of a forward pass get their statistics (cyclegan's `Stats`).
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsMode {
    /// Measured from the activations.
    Measure,
    /// Measured and returned in [`ForwardOut::recorded`].
    Record,
    /// Given in [`ForwardArgs::given`].
    Given,
}

/// Instance-norm statistics of a forward pass, in forward order: for norm `i` of
/// `channels[i]` channels, its means then its variances, one norm after the other.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default)]
pub struct FlatStats {
    pub channels: RVec<u32>,
    pub values: RVec<f32>,
}

/// Borrowed [`FlatStats`].
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct FlatStatsRef<'a> {
    pub channels: RSlice<'a, u32>,
    pub values: RSlice<'a, f32>,
}

/// Called after each layer with (layers done, layers in all); false cancels the pass.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct Progress<'a> {
    pub context: *mut c_void,
    pub call: extern "C" fn(context: *mut c_void, done: u64, total: u64) -> bool,
    pub _borrow: PhantomData<&'a mut ()>,
}

impl Progress<'_> {
    /// Reports (done, total); whether to go on.
    pub fn report(&self, done: u64, total: u64) -> bool {
        (self.call)(self.context, done, total)
    }
}

/// One forward pass: a planar RGB image (`3 x height x width`, values in [-1, 1], sides
/// multiples of 4).
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct ForwardArgs<'a> {
    pub planar: RSlice<'a, f32>,
    pub width: u64,
    pub height: u64,
    pub stats: StatsMode,
    /// The statistics when `stats` is [`StatsMode::Given`] (empty otherwise).
    pub given: FlatStatsRef<'a>,
    pub precision: PrecisionAbi,
    pub progress: Progress<'a>,
}

/// The result of a forward pass: pixels in the input's layout, and the statistics measured
/// when asked to record them.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default)]
pub struct ForwardOut {
    pub pixels: RVec<f32>,
    pub recorded: FlatStats,
}

/// The kind of a [`BackendError`] (cyclegan's error kinds that can happen behind the
/// boundary).
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidArgument,
    Format,
    Unsupported,
    /// No driver, library or device.
    Unavailable,
    Cancelled,
    Compute,
    /// Reading or writing a file failed ([`BackendError::path`] names it).
    Io,
    /// An allocation sized by the input was refused.
    OutOfMemory,
}

#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct BackendError {
    pub kind: ErrorKind,
    /// For [`ErrorKind::Io`], the cause alone; otherwise the whole message.
    pub message: RString,
    /// The file an [`ErrorKind::Io`] or [`ErrorKind::Format`] error is about, as
    /// [`path_bytes`] encodes it; empty when there is none.
    pub path: RVec<u8>,
}

impl BackendError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: RString::from(message.into()),
            path: RVec::new(),
        }
    }

    /// An error about the file at `path`.
    pub fn with_path(mut self, path: &Path) -> Self {
        self.path = path_bytes(path).into();
        self
    }
}

/// A path as bytes for the boundary: the OS's own bytes on Unix (any file name survives),
/// UTF-8 elsewhere.
pub fn path_bytes(path: &Path) -> Vec<u8> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        path.as_os_str().as_bytes().to_vec()
    }
    #[cfg(not(unix))]
    {
        path.to_string_lossy().into_owned().into_bytes()
    }
}

/// The path [`path_bytes`] encoded.
pub fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
    }
    #[cfg(not(unix))]
    {
        PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
    }
}

/// A generator loaded on a backend's device. Immutable once loaded: one engine serves
/// concurrent forward passes.
#[sabi_trait]
pub trait BackendEngine: Send + Sync {
    /// The backend as users see it: "cuda (NVIDIA H200)".
    fn describe(&self) -> RString;

    /// Peak bytes a forward pass of `width` x `height` allocates on the device.
    fn memory_for(&self, width: u64, height: u64) -> u64;

    /// Bytes the loaded engine holds on its device.
    fn resident_memory(&self) -> u64;

    /// Free device memory now (`RNone` when the device does not say).
    fn device_memory_free(&self) -> ROption<u64>;

    fn forward(&self, args: ForwardArgs<'_>) -> RResult<ForwardOut, BackendError>;

    /// Frees memory kept from earlier calls.
    #[sabi(last_prefix_field)]
    fn release_buffers(&self);
}

/// The engine object a backend returns.
pub type EngineBox = BackendEngine_TO<'static, RBox<()>>;

/// The losses of one training iteration, in the order of cyclegan's `StepLosses`: g, gan,
/// cycle, identity, d_a, d_b.
pub type LossesAbi = [f64; 6];

/// What a training run's progress callback sees after each iteration (cyclegan's
/// `train::Progress`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct IterationAbi {
    pub iteration: u64,
    pub total: u64,
    pub epoch: u64,
    pub lr: f64,
    pub losses: LossesAbi,
    pub elapsed_ns: u64,
    pub remaining_ns: u64,
}

/// Called after each training iteration; false stops the run after it.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct IterationCallback<'a> {
    pub context: *mut c_void,
    pub call: extern "C" fn(context: *mut c_void, iteration: &IterationAbi) -> bool,
    pub _borrow: PhantomData<&'a mut ()>,
}

impl IterationCallback<'_> {
    pub fn report(&self, iteration: &IterationAbi) -> bool {
        (self.call)(self.context, iteration)
    }
}

/// How a run call ended (cyclegan's `train::RunSummary`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct RunSummaryAbi {
    pub iterations: u64,
    pub cancelled: bool,
    pub finished: bool,
}

/// A training run's counters, read after opening it and after each call that moves it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct TrainerInfo {
    pub iteration: u64,
    pub total_iterations: u64,
    pub iterations_per_epoch: u64,
    /// The learning rate of the next iteration.
    pub learning_rate: f64,
    pub content_images: u64,
    pub style_images: u64,
}

/// Which of a run's files [`BackendTrainer::save`] writes.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveKind {
    Checkpoint,
    /// The content -> style generator as a style file.
    Style,
    /// The style -> content generator.
    Inverse,
}

/// An 8-bit-depth RGB picture in [0, 1], interleaved (a training run's sample grid).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Default)]
pub struct PictureAbi {
    pub width: u32,
    pub height: u32,
    pub rgb: RVec<f32>,
}

/// A training run on a backend's device: cyclegan's `Trainer` living in the backend
/// library, so the networks, optimisers and pool stay on its device. It reads the data
/// folders and writes the checkpoint and style files itself, with the same code as the
/// built-in trainer, so both leave the same files.
#[sabi_trait]
pub trait BackendTrainer: Send + Sync {
    /// The backend as users see it: "cuda (NVIDIA H200)".
    fn describe(&self) -> RString;

    /// The run's configuration as the checkpoint metadata stores it.
    fn config(&self) -> RVec<Tuple2<RString, RString>>;

    fn info(&self) -> TrainerInfo;

    /// Messages about skipped files and the like since the last call.
    fn take_warnings(&mut self) -> RVec<RString>;

    /// Up to `iterations` more iterations, calling `progress` after each.
    fn run(
        &mut self,
        iterations: u64,
        progress: IterationCallback<'_>,
    ) -> RResult<RunSummaryAbi, BackendError>;

    /// Writes a checkpoint or style file at `path` (as [`path_bytes`] encodes it),
    /// atomically.
    fn save(&self, kind: SaveKind, path: RSlice<'_, u8>) -> RResult<(), BackendError>;

    #[sabi(last_prefix_field)]
    fn sample_grid(&mut self) -> RResult<PictureAbi, BackendError>;
}

/// The trainer object a backend returns.
pub type TrainerBox = BackendTrainer_TO<'static, RBox<()>>;

/// The root module every backend library exports (with `#[export_root_module]`).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = BackendModRef)))]
#[sabi(missing_field(panic))]
pub struct BackendMod {
    /// [`version_stamp!`] as expanded in the backend.
    pub version: RStr<'static>,
    /// [`ABI_REVISION`] as the backend was built with.
    pub abi_revision: u32,
    /// The backend's name: "cuda", "metal".
    pub name: RStr<'static>,
    /// Opens the device (once per process) and says what it found.
    pub probe: extern "C" fn() -> DeviceProbe,
    /// Loads a generator from safetensors bytes (cyclegan's own style files).
    pub load: extern "C" fn(
        weights: RSlice<'_, u8>,
        options: LoadOptions,
    ) -> RResult<EngineBox, BackendError>,
    /// Opens a training run from cyclegan's run settings as JSON (the keys of
    /// `cg_trainer_new`): a new run, or `"resume": true` to continue the one in `out`.
    #[sabi(last_prefix_field)]
    pub open_trainer: extern "C" fn(
        settings_json: RStr<'_>,
        options: LoadOptions,
    ) -> RResult<TrainerBox, BackendError>,
}

impl RootModule for BackendModRef {
    abi_stable::declare_root_module_statics! {BackendModRef}

    const BASE_NAME: &'static str = "cyclegan_backend";
    const NAME: &'static str = "cyclegan_backend";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The file name of backend `name` on this platform: `libcyclegan_backend_cuda.so`.
pub fn library_file_name(name: &str) -> String {
    format!(
        "{}cyclegan_backend_{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip() {
        assert_eq!(
            stamped_version(version_stamp!()),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(stamped_version("garbage"), None);
    }

    #[test]
    #[cfg(unix)]
    fn paths_keep_their_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(std::ffi::OsStr::from_bytes(b"run/\xff\xfe-not-utf8"));
        assert_eq!(path_from_bytes(&path_bytes(p)), p);
    }
}
