//! Safe reader for PyTorch checkpoints (`torch.save` output, zip and legacy formats).
//!
//! A `.pth` file is a Python pickle, and unpickling it with Python runs whatever code the file
//! names. So nothing here unpickles: a small stack machine understands only the opcodes and the
//! handful of globals a state dict needs (`OrderedDict`, `_rebuild_tensor_v2`, the storage
//! types) and refuses every other global the moment it is named. Every length, index and shape
//! in the file is checked against the bytes actually present before anything is allocated, so
//! hostile or truncated input gives an error, never a panic or a huge allocation.
//!
//! Every structure the file can size is paid for from a budget proportional to the file:
//! the machine's stack, marks, memo and containers ([`vm::Budget`]), decompressed members and
//! tensor bytes ([`MAX_EXPANSION`]), and the number of tensors found ([`MAX_TENSORS`]), so a
//! small crafted file cannot make the reader hold gigabytes.
//!
//! - [`reader`]: the two container formats (zip since PyTorch 1.6, the legacy pickle stream);
//! - [`vm`]: the pickle machine and its opcodes;
//! - [`tensors`]: finding and naming tensors, and copying their elements out of storages.

mod reader;
mod tensors;
mod vm;

#[cfg(test)]
mod tests;

use crate::error::{Error, Result};

/// Element types a model's tensors can have; other storage types are skipped, not refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawDtype {
    F16,
    BF16,
    F32,
    F64,
    I64,
}

/// One tensor as stored, already made contiguous (row-major), little-endian bytes.
#[derive(Debug, Clone)]
pub struct RawTensor {
    pub name: String,
    pub dtype: RawDtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// The legacy format's first pickle: `torch.serialization.MAGIC_NUMBER`.
const LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;
/// The legacy format's second pickle: `torch.serialization.PROTOCOL_VERSION`.
const LEGACY_PROTOCOL: i128 = 1001;
/// Output and decompression may exceed the file by this factor (shared storages, deflate);
/// beyond it a file is treated as a memory bomb.
const MAX_EXPANSION: usize = 16;
/// Small files still get this much room, so tiny hand-made checkpoints are not refused.
const MIN_BUDGET: usize = 1 << 20;
/// Nesting deeper than any real checkpoint (and more dims than torch allows).
const MAX_DEPTH: usize = 64;
/// Bounds the walk over shared sub-objects, which can otherwise be exponential.
const MAX_VISITS: usize = 1 << 20;
/// Bounds the memory spent on tensor names for the same reason.
const MAX_NAME_BYTES: usize = 1 << 24;
/// More tensors than any model has (a CycleGAN generator has about 100, a large language
/// model a few thousand): a file that names more is refused before they cost memory.
const MAX_TENSORS: usize = 1 << 16;
/// The pickle machine may keep this many bytes of its own state, or the file's size if that
/// is larger. A real checkpoint's pickle is a few kilobytes for 100 tensors and needs well
/// under 1 MiB; a pickle that builds more is a memory bomb.
const MIN_VM_BUDGET: usize = 16 << 20;

/// True when the bytes start like a zip (new format) or a pickle (legacy format).
pub fn looks_like_pth(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.first() == Some(&0x80)
}

/// Reads every tensor of a PyTorch `.pth` / `.pt` file given as bytes. Never executes anything
/// from the file: the pickle is interpreted by a small VM that knows only what state dicts need.
///
/// Tensors inside nested dicts, lists and tuples are returned with dotted names
/// (`state_dict.model.1.weight`); a bare tensor saved on its own gets the empty name. Values
/// that are not tensors, and tensors of element types outside [`RawDtype`], are skipped.
pub fn read_pth(bytes: &[u8]) -> Result<Vec<RawTensor>> {
    if bytes.starts_with(b"PK\x03\x04") {
        reader::read_zip(bytes)
    } else if bytes.first() == Some(&0x80) {
        reader::read_legacy(bytes)
    } else {
        Err(bad("neither a zip archive nor a pickle"))
    }
}

fn bad(msg: impl std::fmt::Display) -> Error {
    Error::format_mem(format!("PyTorch checkpoint: {msg}"))
}

/// Keeps file-controlled text in messages short and free of control characters.
pub(crate) fn clean(s: &str) -> String {
    let mut out: String = s.chars().take(80).flat_map(char::escape_default).collect();
    if s.chars().nth(80).is_some() {
        out.push_str("...");
    }
    out
}

/// Output and decompression budget for a file of this size.
fn budget_for(bytes: &[u8]) -> usize {
    bytes.len().saturating_mul(MAX_EXPANSION).max(MIN_BUDGET)
}

/// The pickle machine's budget for a file of this size.
fn vm_budget_for(bytes: &[u8]) -> vm::Budget {
    vm::Budget::new(bytes.len().max(MIN_VM_BUDGET))
}

fn take<'a>(data: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8]> {
    let end = pos
        .checked_add(n)
        .filter(|&e| e <= data.len())
        .ok_or_else(|| bad(format!("truncated: needs {n} bytes at offset {pos}")))?;
    let out = &data[*pos..end];
    *pos = end;
    Ok(out)
}
