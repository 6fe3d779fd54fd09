//! One error type for the whole crate. Every variant says what went wrong and, where it
//! helps, what to do; `capi::status::status_of` maps it onto the C ABI's status codes with
//! an exhaustive match, so the two never drift.

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
    #[error("{}: {msg}", path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "<memory>".into()))]
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

    /// Attaches a path to a `Format` error that was raised on in-memory data.
    pub fn with_path(self, path: impl Into<PathBuf>) -> Self {
        match self {
            Error::Format { path: None, msg } => Error::Format {
                path: Some(path.into()),
                msg,
            },
            other => other,
        }
    }
}

/// Crate-wide result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
