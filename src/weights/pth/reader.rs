//! The two container formats of `torch.save`: a zip archive holding `data.pkl` and one member
//! per storage (PyTorch >= 1.6), and the legacy stream of five pickles followed by the raw
//! storages.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::rc::Rc;

use super::tensors::{collect, materialize};
use super::vm::{Persid, Pickle, Value};
use super::{
    bad, budget_for, clean, take, vm_budget_for, RawTensor, LEGACY_MAGIC, LEGACY_PROTOCOL,
    MAX_EXPANSION,
};
use crate::error::{Error, Result};

pub(super) fn read_zip(bytes: &[u8]) -> Result<Vec<RawTensor>> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| bad(format!("unreadable zip archive: {e}")))?;
    let mut prefix: Option<String> = None;
    for name in zip.file_names() {
        let Some(p) = name.strip_suffix("data.pkl") else {
            continue;
        };
        let top_level = p.is_empty() || p.strip_suffix('/').is_some_and(|d| !d.contains('/'));
        if top_level {
            if prefix.is_some() {
                return Err(bad("the archive holds more than one data.pkl"));
            }
            prefix = Some(p.to_string());
        }
    }
    let prefix = prefix.ok_or_else(|| bad("the archive holds no data.pkl"))?;
    let mut read_budget = budget_for(bytes);

    let order_name = format!("{prefix}byteorder");
    if zip.file_names().any(|n| n == order_name) {
        let order = read_entry(&mut zip, &order_name, bytes.len(), &mut read_budget)?;
        if order.trim_ascii() != b"little" {
            return Err(Error::Unsupported(
                "big-endian PyTorch checkpoints are not supported".into(),
            ));
        }
    }

    let pkl = read_entry(
        &mut zip,
        &format!("{prefix}data.pkl"),
        bytes.len(),
        &mut read_budget,
    )?;
    let mut vm = Pickle::new(&pkl, 0, Persid::Zip, vm_budget_for(bytes));
    let top = vm.run()?;
    let found = collect(&vm, &top)?;

    let mut storages: HashMap<Rc<str>, Cow<[u8]>> = HashMap::new();
    for &(_, t) in &found {
        let sref = &vm.storages[vm.tensors[t].storage];
        if sref.ty.dtype.is_some() && !storages.contains_key(&sref.key) {
            let name = format!("{prefix}data/{}", sref.key);
            let data = read_entry(&mut zip, &name, bytes.len(), &mut read_budget)?;
            storages.insert(sref.key.clone(), Cow::Owned(data));
        }
    }
    materialize(&vm, found, &storages, budget_for(bytes))
}

/// Reads one archive member, trusting its declared size only after checking it fits the budget.
fn read_entry(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
    file_len: usize,
    budget: &mut usize,
) -> Result<Vec<u8>> {
    let entry = zip
        .by_name(name)
        .map_err(|e| bad(format!("cannot read {}: {e}", clean(name))))?;
    let size = usize::try_from(entry.size())
        .ok()
        .filter(|&s| s <= *budget)
        .ok_or_else(|| {
            bad(format!(
                "{} declares {} bytes, more than {MAX_EXPANSION} times the file or what is left of \
                 that budget (a memory bomb?)",
                clean(name),
                entry.size()
            ))
        })?;
    // Capacity is only a hint: a stored member cannot really be larger than the file.
    let mut out = Vec::with_capacity(size.min(file_len));
    entry
        .take(size as u64)
        .read_to_end(&mut out)
        .map_err(|e| bad(format!("cannot read {}: {e}", clean(name))))?;
    if out.len() != size {
        return Err(bad(format!("{} is truncated", clean(name))));
    }
    *budget -= size;
    Ok(out)
}

pub(super) fn read_legacy(bytes: &[u8]) -> Result<Vec<RawTensor>> {
    let mut magic = Pickle::new(bytes, 0, Persid::Refuse, vm_budget_for(bytes));
    if !matches!(magic.run()?, Value::Int(LEGACY_MAGIC)) {
        return Err(bad("not a PyTorch file (magic number missing)"));
    }
    let mut proto = Pickle::new(bytes, magic.pos, Persid::Refuse, magic.budget);
    match proto.run()? {
        Value::Int(LEGACY_PROTOCOL) => {}
        Value::Int(v) => {
            return Err(Error::Unsupported(format!(
                "legacy PyTorch format version {v}"
            )))
        }
        _ => return Err(bad("legacy format version is not a number")),
    }
    let mut info = Pickle::new(bytes, proto.pos, Persid::Refuse, proto.budget);
    let sys_info = info.run()?;
    let little = info
        .dict(&sys_info)?
        .iter()
        .find(|(k, _)| matches!(k, Value::Str(s) if &**s == "little_endian"));
    if let Some((_, Value::Bool(false))) = little {
        return Err(Error::Unsupported(
            "big-endian PyTorch checkpoints are not supported".into(),
        ));
    }

    let mut vm = Pickle::new(bytes, info.pos, Persid::Legacy, info.budget);
    let top = vm.run()?;
    let mut keys_vm = Pickle::new(bytes, vm.pos, Persid::Refuse, vm.budget);
    let keys_val = keys_vm.run()?;
    let keys = keys_vm.seq(&keys_val, "storage key list")?;

    // Each root storage's element size and count, as the main pickle declared them.
    let mut roots: HashMap<&str, (usize, usize)> = HashMap::new();
    for s in &vm.storages {
        let decl = (s.ty.elem_size, s.numel);
        if *roots.entry(&*s.key).or_insert(decl) != decl {
            return Err(bad(format!(
                "storage {} is declared twice, differently",
                clean(&s.key)
            )));
        }
    }
    let mut storages: HashMap<Rc<str>, Cow<[u8]>> = HashMap::new();
    let mut pos = keys_vm.pos;
    for key in keys {
        let Value::Str(key) = key else {
            return Err(bad("a storage key is not a string"));
        };
        let &(elem_size, numel) = roots
            .get(&**key)
            .ok_or_else(|| bad(format!("storage {} is listed but never used", clean(key))))?;
        let count = take(bytes, &mut pos, 8)?;
        let count = u64::from_le_bytes(count.try_into().map_err(|_| bad("truncated"))?);
        if usize::try_from(count).ok() != Some(numel) {
            return Err(bad(format!(
                "storage {} holds {count} elements, the pickle says {numel}",
                clean(key)
            )));
        }
        let len = numel
            .checked_mul(elem_size)
            .ok_or_else(|| bad("absurd storage size"))?;
        let data = take(bytes, &mut pos, len)?;
        if storages.insert(key.clone(), Cow::Borrowed(data)).is_some() {
            return Err(bad(format!("storage {} is listed twice", clean(key))));
        }
    }
    let found = collect(&vm, &top)?;
    materialize(&vm, found, &storages, budget_for(bytes))
}
