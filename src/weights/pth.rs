//! Safe reader for PyTorch checkpoints (`torch.save` output, zip and legacy formats).
//!
//! A `.pth` file is a Python pickle, and unpickling it with Python runs whatever code the file
//! names. So nothing here unpickles: a small stack machine understands only the opcodes and the
//! handful of globals a state dict needs (`OrderedDict`, `_rebuild_tensor_v2`, the storage
//! types) and refuses every other global the moment it is named. Every length, index and shape
//! in the file is checked against the bytes actually present before anything is allocated, so
//! hostile or truncated input gives an error, never a panic or a huge allocation.
//!
//! Containers live in an arena and values refer to them by index: that keeps pickle's shared
//! mutable references exact (a dict filled after it was memoized), makes reference cycles
//! harmless, and keeps dropping deeply nested input from recursing.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::rc::Rc;

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

impl RawDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            RawDtype::F16 | RawDtype::BF16 => 2,
            RawDtype::F32 => 4,
            RawDtype::F64 | RawDtype::I64 => 8,
        }
    }
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
const MAX_VISITS: usize = 1 << 22;
/// Bounds the memory spent on tensor names for the same reason.
const MAX_NAME_BYTES: usize = 1 << 26;

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
        read_zip(bytes)
    } else if bytes.first() == Some(&0x80) {
        read_legacy(bytes)
    } else {
        Err(bad("neither a zip archive nor a pickle"))
    }
}

fn bad(msg: impl std::fmt::Display) -> Error {
    Error::format_mem(format!("PyTorch checkpoint: {msg}"))
}

/// Keeps file-controlled text in messages short and free of control characters.
fn clean(s: &str) -> String {
    let mut out: String = s.chars().take(80).flat_map(char::escape_default).collect();
    if s.chars().nth(80).is_some() {
        out.push_str("...");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Container formats

fn budget_for(bytes: &[u8]) -> usize {
    bytes.len().saturating_mul(MAX_EXPANSION).max(MIN_BUDGET)
}

fn read_zip(bytes: &[u8]) -> Result<Vec<RawTensor>> {
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
    let mut vm = Pickle::new(&pkl, 0, Persid::Zip);
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
        .ok_or_else(|| bad(format!("{} declares an absurd size", clean(name))))?;
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

fn read_legacy(bytes: &[u8]) -> Result<Vec<RawTensor>> {
    let mut magic = Pickle::new(bytes, 0, Persid::Refuse);
    if !matches!(magic.run()?, Value::Int(LEGACY_MAGIC)) {
        return Err(bad("not a PyTorch file (magic number missing)"));
    }
    let mut proto = Pickle::new(bytes, magic.pos, Persid::Refuse);
    match proto.run()? {
        Value::Int(LEGACY_PROTOCOL) => {}
        Value::Int(v) => {
            return Err(Error::Unsupported(format!(
                "legacy PyTorch format version {v}"
            )))
        }
        _ => return Err(bad("legacy format version is not a number")),
    }
    let mut info = Pickle::new(bytes, proto.pos, Persid::Refuse);
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

    let mut vm = Pickle::new(bytes, info.pos, Persid::Legacy);
    let top = vm.run()?;
    let mut keys_vm = Pickle::new(bytes, vm.pos, Persid::Refuse);
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

fn take<'a>(data: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8]> {
    let end = pos
        .checked_add(n)
        .filter(|&e| e <= data.len())
        .ok_or_else(|| bad(format!("truncated: needs {n} bytes at offset {pos}")))?;
    let out = &data[*pos..end];
    *pos = end;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Tensors

/// Which persistent ids a pickle may hold: none (the legacy side pickles), or storages in the
/// zip form `("storage", type, key, location, numel)` or the legacy one with `view_metadata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persid {
    Refuse,
    Zip,
    Legacy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StorageType {
    dtype: Option<RawDtype>,
    elem_size: usize,
}

/// The typed storage classes `torch.save` names; the ones without a [`RawDtype`] are known only
/// so that a checkpoint holding, say, a bool buffer still loads.
fn storage_type(name: &str) -> Option<StorageType> {
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
struct StorageRef {
    key: Rc<str>,
    ty: StorageType,
    /// Elements in the root storage, as declared.
    numel: usize,
    /// Legacy views: (first element, element count) within the root storage.
    view: Option<(usize, usize)>,
}

#[derive(Debug)]
struct TensorSpec {
    storage: usize,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// Finds every tensor under the top object, named by its path, later duplicates winning.
/// A container that holds itself is not entered again: a cycle adds no tensors.
fn collect(vm: &Pickle, top: &Value) -> Result<Vec<(String, usize)>> {
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

fn materialize(
    vm: &Pickle,
    found: Vec<(String, usize)>,
    storages: &HashMap<Rc<str>, Cow<[u8]>>,
    mut budget: usize,
) -> Result<Vec<RawTensor>> {
    let mut out = Vec::with_capacity(found.len());
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
        budget = budget.checked_sub(nbytes).ok_or_else(too_big)?;
        let mut data = Vec::with_capacity(nbytes);
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

// ---------------------------------------------------------------------------------------------
// The pickle machine

/// The only callables and classes a file may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    RebuildParameterWithState,
    Storage(StorageType),
}

fn resolve_global(module: &str, name: &str) -> Result<Global> {
    let g = match (module, name) {
        ("collections", "OrderedDict") => Some(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensorV2),
        ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
        ("torch._utils", "_rebuild_parameter_with_state") => {
            Some(Global::RebuildParameterWithState)
        }
        ("torch", n) => storage_type(n).map(Global::Storage),
        _ => None,
    };
    g.ok_or_else(|| {
        let (module, name) = (clean(module), clean(name));
        Error::Unsupported(format!(
            "pickle global {module}.{name} is not allowed: \
             this file wants to run code or holds something other than tensors"
        ))
    })
}

/// A pickle value. Containers, storages and tensors are indices into the machine's tables, so
/// cloning a value is cheap and never deep.
#[derive(Debug, Clone)]
enum Value {
    None,
    Bool(bool),
    Int(i128),
    /// An integer wider than 128 bits: kept only so that it can be skipped.
    BigInt,
    /// Floats (hyper-parameters, losses): never needed, so only their presence is kept.
    Float,
    Str(Rc<str>),
    /// Byte strings: never needed by a state dict, so only their presence is kept.
    Bytes,
    Global(Global),
    Tuple(usize),
    List(usize),
    Dict(usize),
    Storage(usize),
    Tensor(usize),
}

#[derive(Debug)]
enum Obj {
    Seq(Vec<Value>),
    Dict(Vec<(Value, Value)>),
}

struct Pickle<'a> {
    data: &'a [u8],
    pos: usize,
    persid: Persid,
    stack: Vec<Value>,
    /// Stack heights at each MARK; nothing below the innermost one may be popped.
    marks: Vec<usize>,
    memo: HashMap<usize, Value>,
    objs: Vec<Obj>,
    storages: Vec<StorageRef>,
    tensors: Vec<TensorSpec>,
}

impl<'a> Pickle<'a> {
    fn new(data: &'a [u8], pos: usize, persid: Persid) -> Self {
        Pickle {
            data,
            pos,
            persid,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            objs: Vec::new(),
            storages: Vec::new(),
            tensors: Vec::new(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        take(self.data, &mut self.pos, n)
    }

    fn arr<const N: usize>(&mut self) -> Result<[u8; N]> {
        let b = self.take(N)?;
        b.try_into().map_err(|_| bad("truncated"))
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.arr::<1>()?[0])
    }

    fn len_u32(&mut self) -> Result<usize> {
        usize::try_from(u32::from_le_bytes(self.arr()?)).map_err(|_| bad("absurd length"))
    }

    fn line(&mut self) -> Result<&'a str> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("truncated GLOBAL"))?;
        let line = self.take(n + 1)?;
        std::str::from_utf8(&line[..n]).map_err(|_| bad("GLOBAL name is not UTF-8"))
    }

    fn text(&mut self, n: usize) -> Result<Value> {
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).map_err(|_| bad("string is not valid UTF-8"))?;
        Ok(Value::Str(s.into()))
    }

    /// Python 2 `str`: bytes that Python 3 reads as text; latin-1 maps every byte.
    fn latin1(&mut self, n: usize) -> Result<Value> {
        let b = self.take(n)?;
        Ok(Value::Str(
            b.iter().map(|&c| char::from(c)).collect::<String>().into(),
        ))
    }

    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<Value> {
        if self.stack.len() <= self.floor() {
            return Err(bad("pickle stack underflow"));
        }
        self.stack
            .pop()
            .ok_or_else(|| bad("pickle stack underflow"))
    }

    fn top(&self) -> Result<&Value> {
        if self.stack.len() <= self.floor() {
            return Err(bad("pickle stack underflow"));
        }
        self.stack
            .last()
            .ok_or_else(|| bad("pickle stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let m = self.marks.pop().ok_or_else(|| bad("pickle MARK missing"))?;
        if m > self.stack.len() {
            return Err(bad("pickle stack underflow"));
        }
        Ok(self.stack.split_off(m))
    }

    fn alloc(&mut self, obj: Obj) -> usize {
        self.objs.push(obj);
        self.objs.len() - 1
    }

    fn seq(&self, v: &Value, what: &str) -> Result<&[Value]> {
        match v {
            Value::Tuple(i) | Value::List(i) => match self.objs.get(*i) {
                Some(Obj::Seq(items)) => Ok(items),
                _ => Err(bad(format!("{what} is malformed"))),
            },
            _ => Err(bad(format!("{what} is not a tuple or list"))),
        }
    }

    fn dict(&self, v: &Value) -> Result<&[(Value, Value)]> {
        match v {
            Value::Dict(i) => match self.objs.get(*i) {
                Some(Obj::Dict(items)) => Ok(items),
                _ => Err(bad("dict is malformed")),
            },
            _ => Err(bad("expected a dict")),
        }
    }

    fn top_list(&mut self) -> Result<&mut Vec<Value>> {
        let Value::List(i) = *self.top()? else {
            return Err(bad("APPEND to something not a list"));
        };
        match self.objs.get_mut(i) {
            Some(Obj::Seq(items)) => Ok(items),
            _ => Err(bad("list is malformed")),
        }
    }

    fn top_dict(&mut self) -> Result<&mut Vec<(Value, Value)>> {
        let Value::Dict(i) = *self.top()? else {
            return Err(bad("SETITEM on something not a dict"));
        };
        match self.objs.get_mut(i) {
            Some(Obj::Dict(items)) => Ok(items),
            _ => Err(bad("dict is malformed")),
        }
    }

    fn memo_get(&self, i: usize) -> Result<Value> {
        self.memo
            .get(&i)
            .cloned()
            .ok_or_else(|| bad(format!("pickle memo entry {i} is missing")))
    }

    fn memo_put(&mut self, i: usize) -> Result<()> {
        let v = self.top()?.clone();
        self.memo.insert(i, v);
        Ok(())
    }

    /// Runs from `pos` to STOP and returns the pickled object; `pos` ends just past STOP.
    fn run(&mut self) -> Result<Value> {
        loop {
            let at = self.pos;
            let op = self.byte()?;
            let v = match op {
                0x80 => {
                    let proto = self.byte()?;
                    if proto > 5 {
                        return Err(Error::Unsupported(format!("pickle protocol {proto}")));
                    }
                    continue;
                }
                0x95 => {
                    self.take(8)?; // FRAME: a read-ahead hint only.
                    continue;
                }
                b'.' => return self.pop(),
                b'(' => {
                    self.marks.push(self.stack.len());
                    continue;
                }
                b'0' => {
                    self.pop()?;
                    continue;
                }
                b'1' => {
                    self.pop_mark()?;
                    continue;
                }
                b'2' => self.top()?.clone(),
                b'}' => Value::Dict(self.alloc(Obj::Dict(Vec::new()))),
                b']' => Value::List(self.alloc(Obj::Seq(Vec::new()))),
                b')' => Value::Tuple(self.alloc(Obj::Seq(Vec::new()))),
                b't' => {
                    let items = self.pop_mark()?;
                    Value::Tuple(self.alloc(Obj::Seq(items)))
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = (0..n).map(|_| self.pop()).collect::<Result<Vec<_>>>()?;
                    items.reverse();
                    Value::Tuple(self.alloc(Obj::Seq(items)))
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.top_dict()?.push((k, v));
                    continue;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(bad("SETITEMS with an odd number of items"));
                    }
                    let mut it = items.into_iter();
                    let dict = self.top_dict()?;
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        dict.push((k, v));
                    }
                    continue;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.top_list()?.push(v);
                    continue;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.top_list()?.extend(items);
                    continue;
                }
                b'J' => Value::Int(i32::from_le_bytes(self.arr()?).into()),
                b'K' => Value::Int(self.byte()?.into()),
                b'M' => Value::Int(u16::from_le_bytes(self.arr()?).into()),
                0x8a => {
                    let n = usize::from(self.byte()?);
                    let b = self.take(n)?;
                    if n > 16 {
                        Value::BigInt
                    } else {
                        let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) {
                            0xff
                        } else {
                            0
                        };
                        let mut buf = [fill; 16];
                        buf[..n].copy_from_slice(b);
                        Value::Int(i128::from_le_bytes(buf))
                    }
                }
                b'G' => {
                    self.take(8)?;
                    Value::Float
                }
                b'X' => {
                    let n = self.len_u32()?;
                    self.text(n)?
                }
                0x8c => {
                    let n = usize::from(self.byte()?);
                    self.text(n)?
                }
                0x8d => {
                    let n = usize::try_from(u64::from_le_bytes(self.arr()?))
                        .map_err(|_| bad("absurd string length"))?;
                    self.text(n)?
                }
                b'U' => {
                    let n = usize::from(self.byte()?);
                    self.latin1(n)?
                }
                b'T' => {
                    let n = usize::try_from(i32::from_le_bytes(self.arr()?))
                        .map_err(|_| bad("negative string length"))?;
                    self.latin1(n)?
                }
                b'B' => {
                    let n = self.len_u32()?;
                    self.take(n)?;
                    Value::Bytes
                }
                b'C' => {
                    let n = usize::from(self.byte()?);
                    self.take(n)?;
                    Value::Bytes
                }
                b'N' => Value::None,
                0x88 => Value::Bool(true),
                0x89 => Value::Bool(false),
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    Value::Global(resolve_global(module, name)?)
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return Err(bad("STACK_GLOBAL on something other than strings"));
                    };
                    Value::Global(resolve_global(&module, &name)?)
                }
                b'q' => {
                    let i = self.byte()?.into();
                    self.memo_put(i)?;
                    continue;
                }
                b'r' => {
                    let i = self.len_u32()?;
                    self.memo_put(i)?;
                    continue;
                }
                0x94 => {
                    self.memo_put(self.memo.len())?;
                    continue;
                }
                b'h' => {
                    let i = self.byte()?.into();
                    self.memo_get(i)?
                }
                b'j' => {
                    let i = self.len_u32()?;
                    self.memo_get(i)?
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    self.reduce(func, args)?
                }
                0x81 => {
                    let _args = self.pop()?;
                    match self.pop()? {
                        Value::Global(Global::OrderedDict) => {
                            Value::Dict(self.alloc(Obj::Dict(Vec::new())))
                        }
                        _ => {
                            return Err(Error::Unsupported(
                                "NEWOBJ of a class other than OrderedDict".into(),
                            ))
                        }
                    }
                }
                b'b' => {
                    // OrderedDict state (`_metadata`) is an attribute, not content: ignored.
                    let _state = self.pop()?;
                    if !matches!(self.top()?, Value::Dict(_)) {
                        return Err(Error::Unsupported(
                            "BUILD on something other than a dict".into(),
                        ));
                    }
                    continue;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.persistent_load(&pid)?
                }
                _ => {
                    return Err(Error::Unsupported(format!(
                        "pickle opcode 0x{op:02x} at byte {at} is not supported by this reader"
                    )))
                }
            };
            self.stack.push(v);
        }
    }

    fn reduce(&mut self, func: Value, args: Value) -> Result<Value> {
        let Value::Global(g) = func else {
            return Err(Error::Unsupported(
                "REDUCE on something that is not an allowed callable".into(),
            ));
        };
        let args = self.seq(&args, "REDUCE arguments")?;
        // Every allowed call takes a few arguments; copying a memoized huge tuple on each
        // REDUCE would be a cheap way to burn time.
        if args.len() > 7 {
            return Err(bad("REDUCE with too many arguments"));
        }
        match (g, &*args.to_vec()) {
            (Global::OrderedDict, []) => Ok(Value::Dict(self.alloc(Obj::Dict(Vec::new())))),
            (Global::RebuildTensorV2, [storage, offset, shape, stride, _grad, _hooks, ..]) => {
                let Value::Storage(storage) = *storage else {
                    return Err(bad("tensor without a storage"));
                };
                let offset = to_usize(offset, "storage offset")?;
                let shape = self.usizes(shape, "tensor size")?;
                let stride = self.usizes(stride, "tensor stride")?;
                if shape.len() != stride.len() {
                    return Err(bad("tensor size and stride differ in length"));
                }
                self.tensors.push(TensorSpec {
                    storage,
                    offset,
                    shape,
                    stride,
                });
                Ok(Value::Tensor(self.tensors.len() - 1))
            }
            (Global::RebuildParameter, [data @ Value::Tensor(_), _, _])
            | (Global::RebuildParameterWithState, [data @ Value::Tensor(_), _, _, _]) => {
                Ok(data.clone())
            }
            _ => Err(Error::Unsupported(format!(
                "pickle calls {g:?} with arguments this reader does not understand"
            ))),
        }
    }

    /// Sizes and strides; torch caps tensors at 64 dims, and so does this.
    fn usizes(&self, v: &Value, what: &str) -> Result<Vec<usize>> {
        let items = self.seq(v, what)?;
        if items.len() > MAX_DEPTH {
            return Err(bad(format!("{what} has too many dims")));
        }
        items.iter().map(|x| to_usize(x, what)).collect()
    }

    fn persistent_load(&mut self, pid: &Value) -> Result<Value> {
        let fields = self.seq(pid, "persistent id")?;
        let (ty, key, numel, view) = match (self.persid, fields) {
            (Persid::Zip, [Value::Str(tag), ty, Value::Str(key), _loc, numel])
                if &**tag == "storage" =>
            {
                (ty, key, numel, None)
            }
            (Persid::Legacy, [Value::Str(tag), ty, Value::Str(key), _loc, numel, view])
                if &**tag == "storage" =>
            {
                (ty, key, numel, Some(view))
            }
            _ => {
                return Err(Error::Unsupported(
                    "persistent id of an unknown kind".into(),
                ))
            }
        };
        let Value::Global(Global::Storage(ty)) = *ty else {
            return Err(bad("persistent id without a storage type"));
        };
        let numel = to_usize(numel, "storage size")?;
        let view = match view {
            None | Some(Value::None) => None,
            Some(v) => match self.seq(v, "storage view")? {
                [_view_key, first, len] => {
                    Some((to_usize(first, "view offset")?, to_usize(len, "view size")?))
                }
                _ => return Err(bad("storage view is malformed")),
            },
        };
        self.storages.push(StorageRef {
            key: key.clone(),
            ty,
            numel,
            view,
        });
        Ok(Value::Storage(self.storages.len() - 1))
    }
}

fn to_usize(v: &Value, what: &str) -> Result<usize> {
    match v {
        Value::Int(n) => {
            usize::try_from(*n).map_err(|_| bad(format!("{what} {n} is out of range")))
        }
        _ => Err(bad(format!("{what} is not an integer"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/models/fixtures/");

    fn fixture(name: &str) -> Option<Vec<u8>> {
        match std::fs::read(format!("{FIXTURES}{name}")) {
            Ok(b) => Some(b),
            Err(_) => {
                eprintln!("skipping: fixture {name} is absent");
                None
            }
        }
    }

    /// A pickle written opcode by opcode, as torch's protocol 2 writes it.
    struct Pk(Vec<u8>);

    impl Pk {
        fn new() -> Self {
            Pk(vec![0x80, 2])
        }
        fn op(&mut self, b: &[u8]) -> &mut Self {
            self.0.extend_from_slice(b);
            self
        }
        fn s(&mut self, s: &str) -> &mut Self {
            self.op(b"X")
                .op(&(s.len() as u32).to_le_bytes())
                .op(s.as_bytes())
        }
        fn i(&mut self, v: i32) -> &mut Self {
            self.op(b"J").op(&v.to_le_bytes())
        }
        fn long(&mut self, v: i64) -> &mut Self {
            self.op(&[0x8a, 8]).op(&v.to_le_bytes())
        }
        fn g(&mut self, module: &str, name: &str) -> &mut Self {
            self.op(b"c")
                .op(module.as_bytes())
                .op(b"\n")
                .op(name.as_bytes())
                .op(b"\n")
        }
        fn ints(&mut self, v: &[i64]) -> &mut Self {
            self.op(b"(");
            for &x in v {
                self.long(x);
            }
            self.op(b"t")
        }
        fn done(&mut self) -> Vec<u8> {
            self.op(b".");
            std::mem::take(&mut self.0)
        }
    }

    /// (name, storage key, storage numel, offset, shape, stride)
    type Spec<'a> = (&'a str, &'a str, i64, i64, &'a [i64], &'a [i64]);

    fn state_dict(p: &mut Pk, tensors: &[Spec], legacy: bool) {
        p.g("collections", "OrderedDict").op(b")R(");
        for &(name, key, numel, offset, shape, stride) in tensors {
            p.s(name).g("torch._utils", "_rebuild_tensor_v2").op(b"((");
            p.s("storage")
                .g("torch", "FloatStorage")
                .s(key)
                .s("cpu")
                .long(numel);
            if legacy {
                p.op(b"N");
            }
            p.op(b"tQ").long(offset).ints(shape).ints(stride);
            p.op(b"\x89")
                .g("collections", "OrderedDict")
                .op(b")Rt")
                .op(b"R");
        }
        p.op(b"u");
    }

    fn floats(n: usize) -> Vec<u8> {
        (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect()
    }

    fn legacy_file(tensors: &[Spec], storages: &[(&str, usize)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut magic = vec![0x80, 2, 0x8a, 10];
        magic.extend_from_slice(&LEGACY_MAGIC.to_le_bytes()[..10]);
        magic.push(b'.');
        out.extend(magic);
        out.extend(Pk::new().op(b"M\xe9\x03").done());
        out.extend(Pk::new().op(b"}(").s("little_endian").op(b"\x88u").done());
        let mut p = Pk::new();
        state_dict(&mut p, tensors, true);
        out.extend(p.done());
        let mut p = Pk::new();
        p.op(b"](");
        for (k, _) in storages {
            p.s(k);
        }
        out.extend(p.op(b"e").done());
        for &(_, n) in storages {
            out.extend((n as u64).to_le_bytes());
            out.extend(floats(n));
        }
        out
    }

    fn zip_file(pkl: &[u8], storages: &[(&str, usize)], deflate: bool) -> Vec<u8> {
        let raw: Vec<_> = storages.iter().map(|&(k, n)| (k, floats(n))).collect();
        zip_raw(pkl, &raw, deflate)
    }

    fn zip_raw(pkl: &[u8], storages: &[(&str, Vec<u8>)], deflate: bool) -> Vec<u8> {
        let method = if deflate {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file("archive/data.pkl", opts).unwrap();
        w.write_all(pkl).unwrap();
        w.start_file("archive/byteorder", opts).unwrap();
        w.write_all(b"little").unwrap();
        for (k, data) in storages {
            w.start_file(format!("archive/data/{k}"), opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn zip_state_dict(tensors: &[Spec], storages: &[(&str, usize)]) -> Vec<u8> {
        let mut p = Pk::new();
        state_dict(&mut p, tensors, false);
        zip_file(&p.done(), storages, false)
    }

    fn f32s(t: &RawTensor) -> Vec<f32> {
        t.data
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    const SMALL: &[Spec] = &[
        ("a.weight", "0", 6, 0, &[2, 3], &[3, 1]),
        ("a.t", "0", 6, 0, &[3, 2], &[1, 3]),
        ("b.bias", "1", 4, 1, &[2], &[2]),
    ];
    const SMALL_STORAGES: &[(&str, usize)] = &[("0", 6), ("1", 4)];

    fn check_small(ts: &[RawTensor]) {
        let names: Vec<_> = ts.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a.weight", "a.t", "b.bias"]);
        assert_eq!(ts[0].shape, [2, 3]);
        assert_eq!(f32s(&ts[0]), [0., 1., 2., 3., 4., 5.]);
        assert_eq!(ts[1].shape, [3, 2]);
        assert_eq!(f32s(&ts[1]), [0., 3., 1., 4., 2., 5.]);
        assert_eq!(f32s(&ts[2]), [1., 3.]);
        assert!(ts.iter().all(|t| t.dtype == RawDtype::F32));
    }

    #[test]
    fn small_files_in_both_formats() {
        check_small(&read_pth(&legacy_file(SMALL, SMALL_STORAGES)).unwrap());
        check_small(&read_pth(&zip_state_dict(SMALL, SMALL_STORAGES)).unwrap());
        let mut p = Pk::new();
        state_dict(&mut p, SMALL, false);
        check_small(&read_pth(&zip_file(&p.done(), SMALL_STORAGES, true)).unwrap());
    }

    /// `_rebuild_tensor_v2(storage, 0, shape, contiguous stride, False, None)`.
    fn tensor(p: &mut Pk, storage_type: &str, key: &str, shape: &[i64]) {
        let numel = shape.iter().product();
        let stride: Vec<i64> = (0..shape.len())
            .map(|i| shape[i + 1..].iter().product())
            .collect();
        p.g("torch._utils", "_rebuild_tensor_v2")
            .op(b"((")
            .s("storage");
        p.g("torch", storage_type)
            .s(key)
            .s("cpu")
            .long(numel)
            .op(b"tQ");
        p.long(0).ints(shape).ints(&stride).op(b"\x89NtR");
    }

    #[test]
    fn other_dtypes_and_parameters() {
        let mut p = Pk::new();
        p.op(b"}(")
            .s("h")
            .g("torch._utils", "_rebuild_parameter")
            .op(b"(");
        tensor(&mut p, "HalfStorage", "h", &[2]);
        p.op(b"\x88").g("collections", "OrderedDict").op(b")RtR");
        p.s("step");
        tensor(&mut p, "LongStorage", "l", &[]);
        p.s("mask");
        tensor(&mut p, "BoolStorage", "b", &[3]);
        p.s("bf");
        tensor(&mut p, "BFloat16Storage", "f", &[1, 2]);
        let pkl = p.op(b"u").done();
        let half: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect();
        let storages = [
            ("h", half.clone()),
            ("l", 7i64.to_le_bytes().to_vec()),
            ("b", vec![1, 0, 1]),
            ("f", vec![1, 2, 3, 4]),
        ];
        let ts = read_pth(&zip_raw(&pkl, &storages, false)).unwrap();
        let got: Vec<_> = ts
            .iter()
            .map(|t| (t.name.as_str(), t.dtype, t.shape.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("h", RawDtype::F16, vec![2]),
                ("step", RawDtype::I64, vec![]),
                ("bf", RawDtype::BF16, vec![1, 2]),
            ]
        );
        assert_eq!(ts[0].data, half);
        assert_eq!(ts[1].data, 7i64.to_le_bytes());
        assert_eq!(ts[2].data, [1, 2, 3, 4]);
    }

    #[test]
    fn legacy_storage_views() {
        let spec: &[Spec] = &[("v", "0", 6, 0, &[3], &[1])];
        let file = legacy_file(spec, &[("0", 6)]);
        let at = file.windows(3).position(|w| w == b"NtQ").unwrap();
        let with_view = |first: i64, len: i64| {
            let mut view = Pk(Vec::new());
            view.op(b"(").s("0v").long(first).long(len).op(b"t");
            [&file[..at], &view.0, &file[at + 1..]].concat()
        };
        let ts = read_pth(&with_view(2, 3)).unwrap();
        assert_eq!(f32s(&ts[0]), [2., 3., 4.]);
        assert!(read_pth(&with_view(2, 2)).is_err());
        assert!(read_pth(&with_view(5, 3)).is_err());
        assert!(read_pth(&with_view(i64::MAX, 3)).is_err());
    }

    #[test]
    fn nested_dicts_get_dotted_names() {
        let mut p = Pk::new();
        p.op(b"}(").s("state_dict").op(b"}(").s("model");
        state_dict(&mut p, &SMALL[..1], false);
        p.op(b"u")
            .s("epoch")
            .i(3)
            .s("lr")
            .op(b"G")
            .op(&0.5f64.to_be_bytes());
        p.s("opt").op(b"]q\x07(").i(1).op(b"h\x07e").op(b"u");
        let ts = read_pth(&zip_file(&p.done(), &SMALL_STORAGES[..1], false)).unwrap();
        assert_eq!(ts.len(), 1);
        assert_eq!(ts[0].name, "state_dict.model.a.weight");
    }

    #[test]
    fn metadata_build_is_ignored() {
        let mut p = Pk::new();
        state_dict(&mut p, &SMALL[..1], false);
        p.op(b"}(")
            .s("_metadata")
            .g("collections", "OrderedDict")
            .op(b")R(")
            .s("");
        p.op(b"}(").s("version").i(1).op(b"uuub");
        let ts = read_pth(&zip_file(&p.done(), &SMALL_STORAGES[..1], false)).unwrap();
        assert_eq!(ts.len(), 1);
    }

    fn assert_refused(r: Result<Vec<RawTensor>>, what: &str) {
        match r {
            Err(Error::Unsupported(msg)) => assert!(msg.contains(what), "{msg}"),
            other => panic!("expected refusal mentioning {what}, got {other:?}"),
        }
    }

    #[test]
    fn refuses_code_execution() {
        let evil = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.";
        assert_refused(read_pth(evil), "pickle global os.system is not allowed");
        assert_refused(read_pth(&zip_file(evil, &[], false)), "os.system");
        for (m, n) in [
            ("posix", "system"),
            ("builtins", "eval"),
            ("subprocess", "Popen"),
        ] {
            let pkl = Pk::new().g(m, n).done();
            assert_refused(read_pth(&zip_file(&pkl, &[], false)), &format!("{m}.{n}"));
            let pkl = Pk::new().s(m).s(n).op(b"\x93").done();
            assert_refused(read_pth(&zip_file(&pkl, &[], false)), &format!("{m}.{n}"));
        }
        let pkl = Pk::new()
            .g("__builtin__", "eval")
            .s("1")
            .op(b"\x85R")
            .done();
        assert_refused(read_pth(&pkl), "__builtin__.eval");
        // Calling a string, calling a storage class, NEWOBJ of a storage class.
        for body in [
            &b"X\x00\x00\x00\x00)R"[..],
            b"ctorch\nFloatStorage\n)R",
            b"ctorch\nFloatStorage\n)\x81",
        ] {
            let pkl = Pk::new().op(body).done();
            assert!(matches!(
                read_pth(&zip_file(&pkl, &[], false)),
                Err(Error::Unsupported(_))
            ));
        }
        let pkl = Pk::new().op(b"}").op(b"\xfe").done();
        assert_refused(read_pth(&zip_file(&pkl, &[], false)), "opcode 0xfe");
    }

    #[test]
    fn refuses_malformed_pickles() {
        for body in [
            &b"0"[..],
            b"(0",
            b"h\x05",
            b"j\x00\x00\x01\x00",
            b"N(s",
            b"Nu",
            b"N\x86",
            b"X\xff\xff\xff\xff",
        ] {
            let pkl = Pk::new().op(body).done();
            assert!(
                matches!(
                    read_pth(&zip_file(&pkl, &[], false)),
                    Err(Error::Format { .. })
                ),
                "{body:?}"
            );
        }
        // A list holding itself is skipped past, not recursed forever.
        let pkl = Pk::new().op(b"]q\x00h\x00a").done();
        assert!(read_pth(&zip_file(&pkl, &[], false)).unwrap().is_empty());
        // Deep nesting neither overflows the stack when built nor when dropped.
        let mut deep = Pk::new();
        deep.op(b"N").op(&vec![0x85; 200_000]);
        assert!(read_pth(&zip_file(&deep.done(), &[], false)).is_err());
    }

    #[test]
    fn refuses_out_of_range_tensors() {
        let cases: &[Spec] = &[
            ("offset", "0", 4, 3, &[2], &[1]),
            ("stride", "0", 4, 0, &[2, 2], &[3, 1]),
            ("huge", "0", 4, 0, &[1 << 40, 1 << 40], &[1, 1]),
            ("broadcast", "0", 4, 0, &[1 << 40], &[0]),
            ("negative", "0", 4, -1, &[1], &[1]),
        ];
        for case in cases {
            let r = read_pth(&zip_state_dict(&[*case], &[("0", 4)]));
            assert!(matches!(r, Err(Error::Format { .. })), "{}: {r:?}", case.0);
            let r = read_pth(&legacy_file(&[*case], &[("0", 4)]));
            assert!(matches!(r, Err(Error::Format { .. })), "{}: {r:?}", case.0);
        }
        // Declared storage sizes larger than the data present.
        let big: &[Spec] = &[("big", "0", 1 << 50, 0, &[1], &[1])];
        assert!(read_pth(&zip_state_dict(big, &[("0", 4)])).is_err());
        assert!(read_pth(&legacy_file(big, &[("0", 4)])).is_err());
        let mut lying = legacy_file(&SMALL[..1], &SMALL_STORAGES[..1]);
        let at = lying.len() - 6 * 4 - 8;
        lying[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(read_pth(&lying).is_err());
    }

    #[test]
    fn every_truncation_of_small_files_fails() {
        for file in [
            legacy_file(SMALL, SMALL_STORAGES),
            zip_state_dict(SMALL, SMALL_STORAGES),
        ] {
            for n in 0..file.len() {
                assert!(
                    read_pth(&file[..n]).is_err(),
                    "prefix {n} of {} parsed",
                    file.len()
                );
            }
        }
    }

    #[test]
    fn random_corruption_never_panics() {
        let mut seed = 0x9e3779b97f4a7c15u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for file in [
            legacy_file(SMALL, SMALL_STORAGES),
            zip_state_dict(SMALL, SMALL_STORAGES),
        ] {
            for _ in 0..3000 {
                let mut f = file.clone();
                for _ in 0..1 + rand() % 4 {
                    let at = (rand() % f.len() as u64) as usize;
                    f[at] = rand() as u8;
                }
                let _ = read_pth(&f);
            }
        }
    }

    #[test]
    fn pickle_soup_never_panics() {
        let mut seed = 0x2545f4914f6cdd1du64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let ops =
            b"\x80\x95.(012}])t\x85\x86\x87suaeJKM\x8aGX\x8c\x8dUTBCN\x88\x89\x93qr\x94hjRbQ\x81";
        let mut good = Pk::new();
        state_dict(&mut good, SMALL, false);
        let good = good.done();
        for round in 0..20_000 {
            let soup: Vec<u8> = if round % 2 == 0 {
                (0..rand() % 64)
                    .map(|_| match rand() % 3 {
                        0 => rand() as u8 % 4,
                        _ => ops[(rand() % ops.len() as u64) as usize],
                    })
                    .collect()
            } else {
                let mut f = good.clone();
                for _ in 0..1 + rand() % 3 {
                    let at = (rand() % f.len() as u64) as usize;
                    f[at] = ops[(rand() % ops.len() as u64) as usize];
                }
                f
            };
            for persid in [Persid::Zip, Persid::Legacy] {
                let mut vm = Pickle::new(&soup, 0, persid);
                if let Ok(top) = vm.run() {
                    let _ = collect(&vm, &top);
                }
            }
        }
    }

    #[test]
    fn shared_subobjects_cannot_blow_up_the_walk() {
        let mut p = Pk::new();
        p.op(b"}q\x00");
        for level in 1..60u8 {
            p.op(b"}(")
                .s("a")
                .op(&[b'h', level - 1])
                .s("b")
                .op(&[b'h', level - 1]);
            p.op(b"u").op(&[b'q', level]);
        }
        assert!(read_pth(&zip_file(&p.done(), &[], false)).is_err());
    }

    #[test]
    fn fixture_matches_safetensors() {
        let (Some(pth), Some(st)) = (fixture("el_ngf8_b9.pth"), fixture("el_ngf8_b9.safetensors"))
        else {
            return;
        };
        let ts = read_pth(&pth).unwrap();
        let st = safetensors::SafeTensors::deserialize(&st).unwrap();
        assert_eq!(ts.len(), st.len());
        for t in &ts {
            let view = st.tensor(&t.name).unwrap();
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{}", t.name);
            assert_eq!(t.dtype, RawDtype::F32, "{}", t.name);
            assert_eq!(view.shape(), t.shape.as_slice(), "{}", t.name);
            assert_eq!(view.data(), t.data.as_slice(), "{}", t.name);
        }
    }

    #[test]
    fn legacy_fixture_matches_zip_fixture() {
        let (Some(zip), Some(legacy)) =
            (fixture("jz_ngf8_b9.pth"), fixture("jz_ngf8_b9_legacy.pth"))
        else {
            return;
        };
        let a = read_pth(&zip).unwrap();
        let b = read_pth(&legacy).unwrap();
        assert!(a.len() > 40);
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((&x.name, x.dtype, &x.shape), (&y.name, y.dtype, &y.shape));
            assert_eq!(x.data, y.data, "{}", x.name);
        }
        let b6 = fixture("jz_ngf8_b6.pth").map(|f| read_pth(&f).unwrap());
        if let Some(b6) = b6 {
            assert!(b6.len() < a.len() && b6.iter().any(|t| t.name == "model.1.weight"));
        }
        assert!(looks_like_pth(&zip) && looks_like_pth(&legacy) && !looks_like_pth(b"\x89PNG"));
    }

    #[test]
    fn fixture_truncations_fail() {
        for name in ["jz_ngf8_b9_legacy.pth", "el_ngf8_b9.pth"] {
            let Some(file) = fixture(name) else { continue };
            for k in 0..200 {
                let n = file.len() * k / 200;
                assert!(read_pth(&file[..n]).is_err(), "{name}: prefix {n} parsed");
            }
        }
    }
}
