//! The checkpoint file: one safetensors file holding the four networks, the optimiser
//! moments and the image pools as tensors, and the step counts, iteration, settings and
//! random state as metadata strings.
//!
//! It is written with [`crate::io::write_atomic`]: the new file is complete and synced
//! before it replaces the previous one, so killing the process at any moment leaves
//! either the old checkpoint or the new one, never a torn file.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::weights::{to_safetensors_bytes, Weights};

/// `format` metadata value that marks our checkpoints.
pub const FORMAT: &str = "cyclegan-train-checkpoint";
/// Bumped when the layout changes incompatibly.
pub const VERSION: &str = "1";

/// The usual file name inside a training output folder.
pub const FILE_NAME: &str = "checkpoint.safetensors";

/// Writes `tensors` and `metadata` (plus the format tag) atomically to `path`.
pub fn write(
    path: &Path,
    tensors: &HashMap<String, Tensor>,
    mut metadata: BTreeMap<String, String>,
) -> Result<()> {
    metadata.insert("format".into(), FORMAT.into());
    metadata.insert("version".into(), VERSION.into());
    let bytes = to_safetensors_bytes(tensors, &metadata)?;
    crate::io::write_atomic(path, &bytes)
}

/// Reads a checkpoint, refusing files that are not one (a style file given by mistake)
/// or that come from an incompatible version.
pub fn read(path: &Path) -> Result<(HashMap<String, Tensor>, BTreeMap<String, String>)> {
    let w = Weights::read(path)?;
    match w.metadata.get("format").map(String::as_str) {
        Some(FORMAT) => {}
        _ => {
            return Err(Error::format(
                path,
                "not a training checkpoint (a style file cannot be resumed; use it with --init)",
            ))
        }
    }
    if w.metadata.get("version").map(String::as_str) != Some(VERSION) {
        return Err(Error::format(
            path,
            format!(
                "checkpoint version {:?}; this build reads version {VERSION}",
                w.metadata.get("version")
            ),
        ));
    }
    Ok((w.tensors, w.metadata))
}
