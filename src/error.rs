//! One error type for the whole crate. Every variant says what went wrong and, where it
//! helps, what to do; `capi::status::status_of` maps each variant onto one of the C ABI's
//! status codes with an exhaustive match, so a new variant cannot ship without one.

use std::path::PathBuf;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A caller passed a value outside its documented range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file was read but its content is not what it claims to be (corrupt image,
    /// truncated weights, unknown tensor layout).
    #[error("{}{msg}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Format { path: Option<PathBuf>, msg: String },

    /// Valid input that this build cannot handle (image format, pickle feature, layout).
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// The requested compute backend is not compiled in or has no device.
    #[error("backend unavailable: {0}")]
    BackendUnavailable(String),

    /// The progress callback asked to stop.
    #[error("cancelled")]
    Cancelled,

    /// The compute engine failed (a device error, an internal inconsistency).
    #[error("compute error: {0}")]
    Compute(String),

    /// A buffer that the input sizes could not be allocated. Returned instead of letting the
    /// allocator abort the process, so a host keeps running and a batch goes on to the next
    /// file. The message says what was being allocated and how big it was.
    #[error("out of memory: {0}; use a smaller image or scale, or free memory")]
    OutOfMemory(String),

    /// An error from the tensor library (shape mismatch, device failure).
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
}

impl Error {
    /// Builds a `Format` error for a file.
    pub fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: Some(path.into()),
            msg: msg.into(),
        }
    }

    /// Builds a `Format` error for in-memory data.
    pub fn format_mem(msg: impl Into<String>) -> Self {
        Error::Format {
            path: None,
            msg: msg.into(),
        }
    }

    /// Builds an `Io` error for a file.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Attaches a path to an error that was raised on in-memory data, so that every message
    /// about a file names it: a `Format` error takes the path, an `Unsupported` or
    /// `OutOfMemory` message gets it as a prefix (unless it already starts with it).
    pub fn with_path(self, path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let prefix = |m: String| {
            let shown = path.display().to_string();
            if m.starts_with(&shown) {
                m
            } else {
                format!("{shown}: {m}")
            }
        };
        match self {
            Error::Format { path: None, msg } => Error::Format {
                path: Some(path),
                msg,
            },
            Error::Unsupported(m) => Error::Unsupported(prefix(m)),
            Error::OutOfMemory(m) => Error::OutOfMemory(prefix(m)),
            other => other,
        }
    }
}

/// Text from a file (a tensor name, a metadata value), made safe to print on a terminal or
/// into a log: control characters (escape sequences that retitle or clear a terminal, line
/// breaks that forge an `error:` line, NUL) and the Unicode bidirectional overrides that
/// reorder what is displayed are written as `\u{..}` escapes; all other text, including
/// non-ASCII letters, is kept as is.
pub fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}');
        if c.is_control() || bidi {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A vector of `len` elements, allocated fallibly: when the allocator refuses, the caller gets
/// [`Error::OutOfMemory`] naming `what` instead of a process abort. For buffers whose size comes
/// from the input (image sizes, tensor sizes).
pub fn try_vec<T: Clone>(len: usize, fill: T, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    reserve(&mut v, len, what)?;
    v.resize(len, fill);
    Ok(v)
}

/// Reserves room for `additional` more elements in `v`, or returns [`Error::OutOfMemory`].
pub fn reserve<T>(v: &mut Vec<T>, additional: usize, what: &str) -> Result<()> {
    v.try_reserve_exact(additional).map_err(|_| {
        let bytes = additional.saturating_mul(std::mem::size_of::<T>());
        Error::OutOfMemory(format!("cannot allocate {bytes} bytes for {what}"))
    })
}

/// Crate-wide result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
