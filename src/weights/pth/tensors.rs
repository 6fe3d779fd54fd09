//! From the pickle's records to tensors: which storage types exist, the walk that finds and
//! names every tensor, and the copy of each tensor's elements out of its storage.
//!
//! Both steps are bounded by the file: the walk by a cap on visits, names and tensors (shared
//! sub-objects make it exponential otherwise), the copy by an output budget that every tensor
//! pays for, even an empty one.

use std::borrow::Cow;
use std::collections::HashMap;
use std::mem::size_of;
use std::rc::Rc;

use super::vm::{Obj, Pickle, Value};
use super::{
    bad, clean, RawDtype, RawTensor, MAX_DEPTH, MAX_EXPANSION, MAX_NAME_BYTES, MAX_TENSORS,
    MAX_VISITS,
};
use crate::error::Result;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StorageType {
    pub(super) dtype: Option<RawDtype>,
    pub(super) elem_size: usize,
}

/// The typed storage classes `torch.save` names; the ones without a [`RawDtype`] are known only
/// so that a checkpoint holding, say, a bool buffer still loads.
pub(super) fn storage_type(name: &str) -> Option<StorageType> {
    let (dtype, elem_size) = match name {
        "FloatStorage" => (Some(RawDtype::F32), 4),
        "HalfStorage" => (Some(RawDtype::F16), 2),
        "BFloat16Storage" => (Some(RawDtype::BF16), 2),
        "DoubleStorage" => (Some(RawDtype::F64), 8),
        "LongStorage" => (Some(RawDtype::I64), 8),
        "IntStorage" => (None, 4),
        "ShortStorage" => (None, 2),
        "CharStorage" | "ByteStorage" | "BoolStorage" => (None, 1),
        _ => return None,
    };
    Some(StorageType { dtype, elem_size })
}

#[derive(Debug)]
pub(super) struct StorageRef {
    pub(super) key: Rc<str>,
    pub(super) ty: StorageType,
    /// Elements in the root storage, as declared.
    pub(super) numel: usize,
    /// Legacy views: (first element, element count) within the root storage.
    pub(super) view: Option<(usize, usize)>,
}

#[derive(Debug)]
pub(super) struct TensorSpec {
    pub(super) storage: usize,
    pub(super) offset: usize,
    pub(super) shape: Vec<usize>,
    pub(super) stride: Vec<usize>,
}

/// Finds every tensor under the top object, named by its path, later duplicates winning.
/// A container that holds itself is not entered again: a cycle adds no tensors.
pub(super) fn collect(vm: &Pickle, top: &Value) -> Result<Vec<(String, usize)>> {
    struct Walk<'v> {
        vm: &'v Pickle<'v>,
        path: Vec<usize>,
        visits: usize,
        name_bytes: usize,
        found: Vec<(String, usize)>,
    }
    impl Walk<'_> {
        fn value(&mut self, v: &Value, name: String) -> Result<()> {
            let vm = self.vm;
            let i = match *v {
                Value::Tensor(t) => {
                    // Counted before names are merged: a tensor reached a million times
                    // through shared lists costs a million entries here.
                    if self.found.len() >= MAX_TENSORS {
                        return Err(bad(format!(
                            "the file holds more than {MAX_TENSORS} tensors (or reaches the \
                             same ones over and over); no model has that many"
                        )));
                    }
                    self.found.push((name, t));
                    return Ok(());
                }
                Value::Dict(i) | Value::List(i) | Value::Tuple(i) => i,
                _ => return Ok(()),
            };
            if self.path.contains(&i) {
                return Ok(());
            }
            if self.path.len() >= MAX_DEPTH {
                return Err(bad("objects nested too deeply"));
            }
            self.path.push(i);
            match vm.objs.get(i) {
                Some(Obj::Dict(items)) => {
                    for (k, v) in items {
                        match k {
                            Value::Str(s) => self.item(v, &name, s)?,
                            Value::Int(n) => self.item(v, &name, n)?,
                            _ => {}
                        }
                    }
                }
                Some(Obj::Seq(items)) => {
                    for (n, v) in items.iter().enumerate() {
                        self.item(v, &name, &n)?;
                    }
                }
                None => {}
            }
            self.path.pop();
            Ok(())
        }

        /// Names are built only for what may hold tensors, and both the number of steps and
        /// the bytes of names are capped: shared sub-objects can make a walk exponential.
        fn item(&mut self, v: &Value, parent: &str, key: &dyn std::fmt::Display) -> Result<()> {
            self.visits += 1;
            if self.visits > MAX_VISITS {
                return Err(bad("too many objects (shared sub-objects?)"));
            }
            if !matches!(
                v,
                Value::Tensor(_) | Value::Dict(_) | Value::List(_) | Value::Tuple(_)
            ) {
                return Ok(());
            }
            let name = match parent {
                "" => key.to_string(),
                _ => format!("{parent}.{key}"),
            };
            self.name_bytes = self.name_bytes.saturating_add(name.len());
            if self.name_bytes > MAX_NAME_BYTES {
                return Err(bad("tensor names too long or too many"));
            }
            self.value(v, name)
        }
    }
    let mut walk = Walk {
        vm,
        path: Vec::new(),
        visits: 0,
        name_bytes: 0,
        found: Vec::new(),
    };
    walk.value(top, String::new())?;
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut unique: Vec<(String, usize)> = Vec::new();
    for (name, t) in walk.found {
        match index.get(&name) {
            Some(&at) => unique[at].1 = t,
            None => {
                index.insert(name.clone(), unique.len());
                unique.push((name, t));
            }
        }
    }
    Ok(unique)
}

pub(super) fn materialize(
    vm: &Pickle,
    found: Vec<(String, usize)>,
    storages: &HashMap<Rc<str>, Cow<[u8]>>,
    mut budget: usize,
) -> Result<Vec<RawTensor>> {
    let mut out = Vec::new();
    out.try_reserve_exact(found.len())
        .map_err(|_| bad("too many tensors for the memory available"))?;
    for (name, t) in found {
        let spec = &vm.tensors[t];
        let sref = &vm.storages[spec.storage];
        let Some(dtype) = sref.ty.dtype else { continue };
        let es = sref.ty.elem_size;
        let too_big = || bad(format!("tensor {} has an absurd size", clean(&name)));
        let root = storages
            .get(&sref.key)
            .ok_or_else(|| bad(format!("storage {} is missing", clean(&sref.key))))?;
        let declared = sref.numel.checked_mul(es).ok_or_else(too_big)?;
        if root.len() < declared {
            return Err(bad(format!("storage {} is truncated", clean(&sref.key))));
        }
        let (first, len) = sref.view.unwrap_or((0, sref.numel));
        let window = first
            .checked_add(len)
            .filter(|&end| end <= sref.numel)
            .and_then(|end| root.get(first * es..end * es))
            .ok_or_else(|| {
                bad(format!(
                    "view of storage {} is out of range",
                    clean(&sref.key)
                ))
            })?;

        let numel = spec.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let nbytes = numel.and_then(|n| n.checked_mul(es)).ok_or_else(too_big)?;
        let numel = nbytes / es;
        // Every tensor costs its record, name and shape too, so that a flood of empty
        // tensors is paid for like any other content.
        let record = size_of::<RawTensor>() + name.len() + spec.shape.len() * size_of::<usize>();
        budget = budget
            .checked_sub(nbytes.saturating_add(record))
            .ok_or_else(|| {
                bad(format!(
                    "tensor {} takes the tensors past {MAX_EXPANSION} times the file's size \
                     (a memory bomb?)",
                    clean(&name)
                ))
            })?;
        let mut data = Vec::new();
        data.try_reserve_exact(nbytes).map_err(|_| {
            crate::error::Error::OutOfMemory(format!(
                "cannot allocate {nbytes} bytes for tensor {}",
                clean(&name)
            ))
        })?;
        if numel > 0 {
            let last = spec
                .shape
                .iter()
                .zip(&spec.stride)
                .try_fold(spec.offset, |a, (&d, &s)| {
                    (d - 1).checked_mul(s).and_then(|x| a.checked_add(x))
                });
            if last.is_none_or(|l| l >= len) {
                return Err(bad(format!(
                    "tensor {} reaches past the end of its storage",
                    clean(&name)
                )));
            }
            // Row-major strides, ignoring size-1 dims whose stride is irrelevant.
            let mut expect = 1usize;
            let mut contiguous = true;
            for (&d, &s) in spec.shape.iter().zip(&spec.stride).rev() {
                contiguous &= d == 1 || s == expect;
                expect = expect.saturating_mul(d);
            }
            if contiguous {
                let src = window.get(spec.offset * es..(spec.offset + numel) * es);
                data.extend_from_slice(src.ok_or_else(too_big)?);
            } else {
                // Every index below is bounded by `last`, checked above, so nothing overflows.
                let mut idx = vec![0usize; spec.shape.len()];
                for _ in 0..numel {
                    let at = spec.offset
                        + idx
                            .iter()
                            .zip(&spec.stride)
                            .map(|(i, s)| i * s)
                            .sum::<usize>();
                    data.extend_from_slice(window.get(at * es..(at + 1) * es).ok_or_else(too_big)?);
                    for (i, &d) in idx.iter_mut().zip(&spec.shape).rev() {
                        *i += 1;
                        if *i < d {
                            break;
                        }
                        *i = 0;
                    }
                }
            }
        }
        out.push(RawTensor {
            name,
            dtype,
            shape: spec.shape.clone(),
            data,
        });
    }
    Ok(out)
}
