//! GPU backends as libraries loaded at run time (`libcyclegan_backend_cuda.so`, docs/gpu.md).
//!
//! The main library and CLI link no GPU library. A backend is found by its file name in:
//! - the folders of `$CYCLEGAN_BACKEND_PATH` (`:`-separated) when it is set, and then only
//!   there (a test or a user that names folders gets exactly those);
//! - otherwise beside this library (or the executable it is linked into) and in its
//!   `cyclegan/` folder (`PREFIX/lib/cyclegan/` for `PREFIX/lib/libcyclegan.so`), then
//!   beside the executable and in `../lib/cyclegan/` from it (`PREFIX/bin/cyclegan`).
//!
//! Each file found is checked before it is opened: an ELF shared object for this machine,
//! complete (no header or segment past the end of the file). Then abi_stable opens it
//! (through libloading) and checks its root module's layout and interface version, and
//! the version stamp must be this cyclegan's. A file that fails any check is refused with
//! the reason, never opened further. Libraries are opened once per process and never
//! unloaded (abi_stable leaks them by design).

use std::ffi::c_void;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cyclegan_backend_api::abi_stable::library::{lib_header_from_path, LibraryError};
use cyclegan_backend_api::abi_stable::std_types::{RResult, RSlice};
use cyclegan_backend_api::{
    library_file_name, path_from_bytes, stamped_version, version_stamp, BackendModRef, DeviceProbe,
    EngineBox, ErrorKind, FlatStatsRef, ForwardArgs, LoadOptions, PrecisionAbi, Progress,
    StatsMode, ABI_REVISION,
};

use super::{check_input, Engine, LayerProgress, NormStat, Precision, Stats};
use crate::error::{Error, Result};
use crate::nn::GeneratorConfig;
use crate::weights::GeneratorWeights;

/// The backends this build knows how to look for.
pub const KNOWN: [&str; 1] = ["cuda"];

/// Set to 1 to let `--device cuda` use a backend built on candle's CPU device (the boundary
/// tests do); `--device auto` never picks one.
pub const ALLOW_CPU_ENV: &str = "CYCLEGAN_BACKEND_ALLOW_CPU";

/// Folders searched instead of the default places.
pub const PATH_ENV: &str = "CYCLEGAN_BACKEND_PATH";

/// What became of one backend file.
#[derive(Debug, Clone)]
pub enum Status {
    /// Loaded and its device opened.
    Ready { version: String, probe: DeviceProbe },
    /// Loaded, but it found no usable device (the probe says which driver, library or
    /// device is missing), or it is a CPU test build and was not asked for.
    Unavailable { version: String, why: String },
    /// Not loaded: the file failed a check.
    Refused(String),
}

/// One file found where the loader looks.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub path: PathBuf,
    pub status: Status,
}

/// What the loader found for one backend name.
pub struct Report {
    pub name: &'static str,
    pub file_name: String,
    pub searched: Vec<PathBuf>,
    pub candidates: Vec<Candidate>,
    /// The candidate a run uses, if any (an index into `candidates`), and its module.
    chosen: Option<(usize, BackendModRef)>,
}

impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Report")
            .field("name", &self.name)
            .field("searched", &self.searched)
            .field("candidates", &self.candidates)
            .field("chosen", &self.chosen.map(|(i, _)| i))
            .finish()
    }
}

impl Report {
    /// The candidate a run uses.
    pub fn chosen(&self) -> Option<&Candidate> {
        self.chosen.map(|(i, _)| &self.candidates[i])
    }

    /// Whether a run can use this backend.
    pub fn is_ready(&self) -> bool {
        self.chosen.is_some()
    }

    /// Whether the chosen backend drives a GPU (`--device auto` picks only those).
    pub fn is_gpu(&self) -> bool {
        matches!(self.chosen(), Some(Candidate { status: Status::Ready { probe, .. }, .. }) if probe.gpu)
    }

    /// Why a run cannot use it: one line.
    pub fn why_not(&self) -> String {
        if self.candidates.is_empty() {
            let places = self
                .searched
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return format!(
                "no {} backend: {} is not in {}",
                self.name,
                self.file_name,
                if places.is_empty() {
                    "any folder (the search path is empty)".into()
                } else {
                    places
                }
            );
        }
        self.candidates
            .iter()
            .map(|c| match &c.status {
                Status::Ready { probe, .. } if !probe.gpu => format!(
                    "{} drives no GPU (a boundary test build; auto uses GPUs only)",
                    c.path.display()
                ),
                Status::Ready { .. } => format!("{} is ready", c.path.display()),
                Status::Unavailable { why, .. } => format!("{}: {why}", c.path.display()),
                Status::Refused(why) => format!("{} was refused: {why}", c.path.display()),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// One line for `cyclegan backends` and `cg_backend_describe`.
    pub fn summary(&self) -> String {
        match self.chosen() {
            Some(c) => format!("{}: {} ({})", self.name, c.status, c.path.display()),
            None => format!("{}: {}", self.name, self.why_not()),
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Ready { probe, .. } => {
                write!(f, "ready: {}", probe.device)?;
                if probe.memory_total > 0 {
                    write!(
                        f,
                        ", {} ({} free)",
                        gib(probe.memory_total),
                        gib(probe.memory_free)
                    )?;
                }
                if !probe.gpu {
                    write!(f, " [no GPU: a boundary test build]")?;
                } else if !probe.build.is_empty() {
                    write!(f, " [{}]", probe.build)?;
                }
                Ok(())
            }
            Status::Unavailable { why, .. } => write!(f, "unavailable: {why}"),
            Status::Refused(why) => write!(f, "refused: {why}"),
        }
    }
}

impl Status {
    pub fn version(&self) -> Option<&str> {
        match self {
            Status::Ready { version, .. } | Status::Unavailable { version, .. } => Some(version),
            Status::Refused(_) => None,
        }
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// What the loader finds for backend `name`, searched and probed once per process.
pub fn report(name: &str) -> Option<&'static Report> {
    static CUDA: OnceLock<Report> = OnceLock::new();
    match name {
        "cuda" => Some(CUDA.get_or_init(|| discover("cuda"))),
        _ => None,
    }
}

/// The folders searched, in order.
pub fn search_dirs() -> Vec<PathBuf> {
    if let Some(v) = std::env::var_os(PATH_ENV) {
        return std::env::split_paths(&v)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
    }
    let mut dirs = Vec::new();
    if let Some(lib) = this_library().as_deref().and_then(Path::parent) {
        dirs.push(lib.to_path_buf());
        dirs.push(lib.join("cyclegan"));
    }
    if let Some(bin) = std::env::current_exe()
        .ok()
        .as_deref()
        .and_then(Path::parent)
    {
        dirs.push(bin.to_path_buf());
        if let Some(prefix) = bin.parent() {
            dirs.push(prefix.join("lib").join("cyclegan"));
        }
    }
    let mut seen = Vec::new();
    dirs.retain(|d| {
        if d.is_file() {
            return false; // `cyclegan/` beside an executable named cyclegan
        }
        let key = d.canonicalize().unwrap_or_else(|_| d.clone());
        let new = !seen.contains(&key);
        seen.push(key);
        new
    });
    dirs
}

/// The file this code was loaded from (libcyclegan.so, or the executable it is linked
/// into).
#[cfg(target_os = "linux")]
fn this_library() -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: Dl_info is plain C data (pointers and integers): all zeros is a valid value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the address (a function of this library) and fills `info`,
    // whose `dli_fname` points to a NUL-terminated string owned by the dynamic loader.
    let ok = unsafe { libc::dladdr(search_dirs as *const c_void, &mut info) };
    if ok == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: non-NULL and NUL-terminated, per dladdr; copied at once.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes()));
    path.canonicalize().ok().or(Some(path))
}

#[cfg(not(target_os = "linux"))]
fn this_library() -> Option<PathBuf> {
    None
}

fn discover(name: &'static str) -> Report {
    let file_name = library_file_name(name);
    let searched = search_dirs();
    let allow_cpu = std::env::var(ALLOW_CPU_ENV).is_ok_and(|v| v == "1");
    let mut candidates = Vec::new();
    let mut chosen = None;
    for dir in &searched {
        let path = dir.join(&file_name);
        if !path.exists() {
            continue;
        }
        let (status, module) = match open(&path) {
            Err(why) => (Status::Refused(why), None),
            Ok((module, version)) => {
                let probe = probe(module);
                if !probe.ready {
                    let why = probe.device.to_string();
                    (Status::Unavailable { version, why }, None)
                } else if !probe.gpu && !allow_cpu {
                    let why = format!(
                        "built without a GPU ({}); set {ALLOW_CPU_ENV}=1 to use it anyway",
                        probe.build
                    );
                    (Status::Unavailable { version, why }, None)
                } else {
                    (Status::Ready { version, probe }, Some(module))
                }
            }
        };
        if let (None, Some(m)) = (chosen, module) {
            chosen = Some((candidates.len(), m));
        }
        candidates.push(Candidate { path, status });
    }
    Report {
        name,
        file_name,
        searched,
        candidates,
        chosen,
    }
}

/// The backend's probe; a library whose probe fails reports that.
fn probe(module: BackendModRef) -> DeviceProbe {
    (module.probe())()
}

/// Checks `path` and opens it: the module and its version.
fn open(path: &Path) -> std::result::Result<(BackendModRef, String), String> {
    check_file(path)?;
    let header = lib_header_from_path(path).map_err(describe_library_error)?;
    let module = header
        .init_root_module::<BackendModRef>()
        .map_err(describe_library_error)?;
    let stamp = module.version().as_str();
    let theirs = stamped_version(stamp)
        .ok_or_else(|| format!("its version stamp {stamp:?} is not one cyclegan writes"))?;
    let ours = stamped_version(version_stamp!()).unwrap_or("?");
    if theirs != ours {
        return Err(format!(
            "it is version {theirs}, built for another cyclegan than this {ours}: install the backend of the same release"
        ));
    }
    if module.abi_revision() != ABI_REVISION {
        return Err(format!(
            "it speaks engine boundary revision {}, this cyclegan {ABI_REVISION}: install the backend of the same release",
            module.abi_revision()
        ));
    }
    Ok((module, theirs.to_string()))
}

fn describe_library_error(e: LibraryError) -> String {
    match e {
        LibraryError::OpenError { err, .. } => {
            let msg = err.to_string();
            let hint = if msg.contains("libcuda.so") {
                " (the NVIDIA driver is missing: install it, or use --device cpu)"
            } else if msg.contains("libcublas") || msg.contains("libcudart") || msg.contains("libcurand") || msg.contains("libcudnn") {
                " (a CUDA library is missing: install the CUDA runtime or put its lib folder on LD_LIBRARY_PATH)"
            } else {
                ""
            };
            format!("cannot be opened: {msg}{hint}")
        }
        LibraryError::GetSymbolError { .. } => {
            "it is not a cyclegan backend (no abi_stable root module)".into()
        }
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => format!(
            "its interface is version {actual_version}, this cyclegan's {expected_version}: install the backend of the same release"
        ),
        LibraryError::AbiInstability(_) => "its boundary types have another layout than this cyclegan's (a backend of another version): install the backend of the same release".into(),
        LibraryError::InvalidAbiHeader(_) | LibraryError::InvalidCAbi { .. } => {
            "it was built with an incompatible abi_stable".into()
        }
        other => other.to_string().lines().next().unwrap_or("").to_string(),
    }
}

/// The ELF machine of this build (`None`: not checked).
fn expected_machine() -> Option<u16> {
    if cfg!(target_arch = "x86_64") {
        Some(62)
    } else if cfg!(target_arch = "aarch64") {
        Some(183)
    } else if cfg!(target_arch = "riscv64") {
        Some(243)
    } else if cfg!(target_arch = "powerpc64") {
        Some(21)
    } else {
        None
    }
}

fn machine_name(m: u16) -> String {
    match m {
        3 => "x86 (32-bit)".into(),
        40 => "ARM (32-bit)".into(),
        62 => "x86-64".into(),
        183 => "AArch64".into(),
        243 => "RISC-V".into(),
        21 => "PowerPC64".into(),
        other => format!("ELF machine {other}"),
    }
}

/// Checks, before the dynamic loader sees it, that `path` is a complete ELF shared object
/// for this machine: a truncated file would fault in the loader, a foreign one fail
/// obscurely.
#[cfg(target_os = "linux")]
fn check_file(path: &Path) -> std::result::Result<(), String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot be read: {e}"))?;
    let len = f
        .metadata()
        .map_err(|e| format!("cannot be read: {e}"))?
        .len();
    let mut h = [0u8; 64];
    if len < 64 || f.read_exact(&mut h).is_err() {
        return Err(format!(
            "it is not a shared library ({len} bytes: truncated or empty)"
        ));
    }
    if h[..4] != *b"\x7fELF" {
        return Err("it is not an ELF shared library (corrupt or not a library)".into());
    }
    if h[4] != 2 || !cfg!(target_pointer_width = "64") {
        return Err("it is a 32-bit library; this cyclegan is 64-bit".into());
    }
    let little = h[5] == 1;
    if little != cfg!(target_endian = "little") {
        return Err("it is for a machine of the other byte order".into());
    }
    let u16_at = |b: &[u8], o: usize| {
        let v = [b[o], b[o + 1]];
        if little {
            u16::from_le_bytes(v)
        } else {
            u16::from_be_bytes(v)
        }
    };
    let u32_at = |b: &[u8], o: usize| {
        let v = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        if little {
            u32::from_le_bytes(v)
        } else {
            u32::from_be_bytes(v)
        }
    };
    let u64_at = |b: &[u8], o: usize| {
        let mut v = [0u8; 8];
        v.copy_from_slice(&b[o..o + 8]);
        if little {
            u64::from_le_bytes(v)
        } else {
            u64::from_be_bytes(v)
        }
    };
    if u16_at(&h, 16) != 3 {
        return Err("it is an ELF file but not a shared library".into());
    }
    let machine = u16_at(&h, 18);
    if let Some(want) = expected_machine() {
        if machine != want {
            return Err(format!(
                "it is built for {}, this machine is {}",
                machine_name(machine),
                machine_name(want)
            ));
        }
    }
    let truncated = |what: &str| {
        format!("it is truncated or corrupt ({what} lies past the end of its {len} bytes)")
    };
    let (phoff, shoff) = (u64_at(&h, 32), u64_at(&h, 40));
    let (phentsize, phnum) = (u16_at(&h, 54) as u64, u16_at(&h, 56) as u64);
    let (shentsize, shnum) = (u16_at(&h, 58) as u64, u16_at(&h, 60) as u64);
    if phentsize < 56 || phnum == 0 {
        return Err("it is corrupt (no program headers)".into());
    }
    let ph_end = phoff.checked_add(phentsize * phnum);
    if ph_end.is_none_or(|e| e > len) {
        return Err(truncated("the program header table"));
    }
    if shoff != 0 && shoff.checked_add(shentsize * shnum).is_none_or(|e| e > len) {
        return Err(truncated("the section header table"));
    }
    let mut ph = vec![0u8; (phentsize * phnum) as usize];
    f.seek(SeekFrom::Start(phoff))
        .and_then(|_| f.read_exact(&mut ph))
        .map_err(|e| format!("cannot be read: {e}"))?;
    for i in 0..phnum as usize {
        let p = &ph[i * phentsize as usize..];
        let (kind, offset, filesz) = (u32_at(p, 0), u64_at(p, 8), u64_at(p, 32));
        // PT_LOAD and PT_DYNAMIC: what the loader maps and reads.
        if (kind == 1 || kind == 2) && offset.checked_add(filesz).is_none_or(|e| e > len) {
            return Err(truncated(&format!("segment {i}")));
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn check_file(path: &Path) -> std::result::Result<(), String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("cannot be read: {e}"))?
        .len();
    if len < 64 {
        return Err(format!(
            "it is not a library ({len} bytes: truncated or empty)"
        ));
    }
    Ok(())
}

/// An engine in a backend library.
pub(crate) struct DynamicEngine {
    engine: EngineBox,
    config: GeneratorConfig,
    label: String,
}

impl fmt::Debug for DynamicEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamicEngine")
            .field("label", &self.label)
            .finish()
    }
}

/// The module of backend `name` a run uses: an error saying why there is none.
pub(crate) fn module(name: &str) -> Result<BackendModRef> {
    let report = report(name)
        .ok_or_else(|| Error::BackendUnavailable(format!("no backend named {name}")))?;
    match report.chosen {
        Some((_, module)) => Ok(module),
        None => Err(Error::BackendUnavailable(report.why_not())),
    }
}

/// Loads `weights` on backend `name`: an error saying why when it cannot.
pub(crate) fn load(weights: &GeneratorWeights, name: &str) -> Result<DynamicEngine> {
    let module = module(name)?;
    let bytes = weights.to_safetensors_bytes()?;
    let engine = into_result((module.load())(
        RSlice::from_slice(&bytes),
        LoadOptions::default(),
    ))?;
    let label = engine.describe().into_string();
    Ok(DynamicEngine {
        engine,
        config: weights.config(),
        label,
    })
}

/// A backend's result as cyclegan's, the error of the same kind (so the C ABI returns the
/// same status as for the built-in engine).
pub(crate) fn into_result<T>(r: RResult<T, cyclegan_backend_api::BackendError>) -> Result<T> {
    r.into_result().map_err(|e| {
        let m = e.message.into_string();
        let path = (!e.path.is_empty()).then(|| path_from_bytes(&e.path));
        match e.kind {
            ErrorKind::InvalidArgument => Error::InvalidArgument(m),
            ErrorKind::Format => Error::Format { path, msg: m },
            ErrorKind::Unsupported => Error::Unsupported(m),
            ErrorKind::Unavailable => Error::BackendUnavailable(m),
            ErrorKind::Cancelled => Error::Cancelled,
            ErrorKind::Compute => Error::Compute(m),
            ErrorKind::Io => Error::Io {
                path: path.unwrap_or_default(),
                source: std::io::Error::other(m),
            },
            ErrorKind::OutOfMemory => Error::OutOfMemory(m),
        }
    })
}

/// What the progress callback carries across the boundary: the caller's closure, and a
/// panic it raised (resumed once the backend has returned).
struct ProgressContext<'p, 'a> {
    progress: &'p mut LayerProgress<'a>,
    panic: Option<Box<dyn std::any::Any + Send>>,
}

extern "C" fn progress_trampoline(context: *mut c_void, done: u64, total: u64) -> bool {
    // SAFETY: `context` is the `ProgressContext` that `forward` below passes with this
    // function, alive and not otherwise borrowed while the backend's forward runs.
    let cx = unsafe { &mut *(context as *mut ProgressContext) };
    if cx.panic.is_some() {
        return false;
    }
    let progress = &mut *cx.progress;
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        progress(done as usize, total as usize)
    })) {
        Ok(go_on) => go_on,
        Err(p) => {
            cx.panic = Some(p);
            false
        }
    }
}

impl Engine for DynamicEngine {
    fn describe(&self) -> String {
        self.label.clone()
    }

    fn config(&self) -> GeneratorConfig {
        self.config
    }

    fn memory_for(&self, width: usize, height: usize) -> u64 {
        self.engine.memory_for(width as u64, height as u64)
    }

    fn resident_memory(&self) -> u64 {
        self.engine.resident_memory()
    }

    fn device_memory_free(&self) -> Option<u64> {
        self.engine.device_memory_free().into_option()
    }

    fn forward(
        &self,
        planar: &[f32],
        width: usize,
        height: usize,
        stats: Stats,
        precision: Precision,
        mut progress: LayerProgress,
    ) -> Result<Vec<f32>> {
        check_input(planar, width, height)?;
        let (mode, channels, values, mut record) = match stats {
            Stats::Measure => (StatsMode::Measure, Vec::new(), Vec::new(), None),
            Stats::Record(out) => (StatsMode::Record, Vec::new(), Vec::new(), Some(out)),
            Stats::Given(given) => {
                let mut channels = Vec::with_capacity(given.len());
                let mut values = Vec::new();
                for (i, s) in given.iter().enumerate() {
                    if s.var.len() != s.mean.len() {
                        return Err(Error::InvalidArgument(format!(
                            "given statistics of norm {i} have {} means and {} variances",
                            s.mean.len(),
                            s.var.len()
                        )));
                    }
                    channels.push(u32::try_from(s.mean.len()).map_err(|_| {
                        Error::InvalidArgument(format!("norm {i} has too many channels"))
                    })?);
                    values.extend_from_slice(&s.mean);
                    values.extend_from_slice(&s.var);
                }
                (StatsMode::Given, channels, values, None)
            }
        };
        let mut cx = ProgressContext {
            progress: &mut progress,
            panic: None,
        };
        let args = ForwardArgs {
            planar: RSlice::from_slice(planar),
            width: width as u64,
            height: height as u64,
            stats: mode,
            given: FlatStatsRef {
                channels: RSlice::from_slice(&channels),
                values: RSlice::from_slice(&values),
            },
            precision: match precision {
                Precision::Auto => PrecisionAbi::Auto,
                Precision::F32 => PrecisionAbi::F32,
                Precision::Bf16 => PrecisionAbi::Bf16,
            },
            progress: Progress {
                context: &mut cx as *mut ProgressContext as *mut c_void,
                call: progress_trampoline,
                _borrow: std::marker::PhantomData,
            },
        };
        let out = self.engine.forward(args);
        if let Some(p) = cx.panic.take() {
            std::panic::resume_unwind(p);
        }
        let out = into_result(out)?;
        if out.pixels.len() != planar.len() {
            return Err(Error::Compute(format!(
                "the {} backend returned {} values for {} pixels",
                self.label,
                out.pixels.len(),
                width * height
            )));
        }
        if let Some(record) = record.as_mut() {
            let mut at = 0usize;
            for &c in out.recorded.channels.iter() {
                let c = c as usize;
                let end = at + 2 * c;
                let v = out.recorded.values.get(at..end).ok_or_else(|| {
                    Error::Compute("the backend returned truncated statistics".into())
                })?;
                record.push(NormStat {
                    mean: v[..c].to_vec(),
                    var: v[c..].to_vec(),
                });
                at = end;
            }
        }
        Ok(out.pixels.into_vec())
    }

    fn release_buffers(&self) {
        self.engine.release_buffers()
    }
}
