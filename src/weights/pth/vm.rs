//! The pickle machine: a stack interpreter for the opcodes `torch.save` writes, which knows
//! only the globals a state dict needs and refuses every other one the moment it is named.
//!
//! Containers live in an arena and values refer to them by index: that keeps pickle's shared
//! mutable references exact (a dict filled after it was memoized), makes reference cycles
//! harmless, and keeps dropping deeply nested input from recursing.
//!
//! Everything the machine keeps is paid for from a [`Budget`] sized from the file: a one-byte
//! opcode such as DUP or MARK adds tens of bytes of state, so without it a 1 MB compressed
//! pickle can hold gigabytes of stack and memo.

use std::collections::HashMap;
use std::mem::size_of;
use std::rc::Rc;

use super::tensors::{storage_type, StorageRef, StorageType, TensorSpec};
use super::{bad, clean, take, MAX_DEPTH};
use crate::error::{Error, Result};

/// Which persistent ids a pickle may hold: none (the legacy side pickles), or storages in the
/// zip form `("storage", type, key, location, numel)` or the legacy one with `view_metadata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Persid {
    Refuse,
    Zip,
    Legacy,
}

/// Declares the opcodes this reader understands, with their byte, and the byte-to-opcode map;
/// a byte outside the list is refused by name rather than guessed at.
macro_rules! opcodes {
    ($($(#[$doc:meta])* $name:ident = $byte:expr,)*) => {
        /// The pickle opcodes of protocols 0-5 that state dicts use, named as in Python's
        /// `pickletools` (and candle's pickle reader).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(super) enum OpCode {
            $($(#[$doc])* $name,)*
        }

        impl OpCode {
            pub(super) fn from_byte(b: u8) -> Option<Self> {
                $(if b == $byte {
                    return Some(OpCode::$name);
                })*
                None
            }
        }
    };
}

opcodes! {
    /// Protocol version (2-5 from `torch.save`).
    Proto = 0x80,
    /// A framing hint (protocol 4+); the reader has the whole pickle in memory anyway.
    Frame = 0x95,
    Stop = b'.',
    Mark = b'(',
    Pop = b'0',
    PopMark = b'1',
    Dup = b'2',
    EmptyDict = b'}',
    EmptyList = b']',
    EmptyTuple = b')',
    Tuple = b't',
    Tuple1 = 0x85,
    Tuple2 = 0x86,
    Tuple3 = 0x87,
    SetItem = b's',
    SetItems = b'u',
    Append = b'a',
    Appends = b'e',
    BinInt = b'J',
    BinInt1 = b'K',
    BinInt2 = b'M',
    Long1 = 0x8a,
    BinFloat = b'G',
    BinUnicode = b'X',
    ShortBinUnicode = 0x8c,
    BinUnicode8 = 0x8d,
    /// Python 2 `str` (legacy checkpoints), read as latin-1 text.
    ShortBinString = b'U',
    BinString = b'T',
    BinBytes = b'B',
    ShortBinBytes = b'C',
    None = b'N',
    NewTrue = 0x88,
    NewFalse = 0x89,
    Global = b'c',
    StackGlobal = 0x93,
    BinPut = b'q',
    LongBinPut = b'r',
    Memoize = 0x94,
    BinGet = b'h',
    LongBinGet = b'j',
    Reduce = b'R',
    NewObj = 0x81,
    Build = b'b',
    BinPersId = b'Q',
}

/// Bytes the machine may still spend on its own state (stack, marks, memo, containers,
/// strings, tensor and storage records). Costs are the sizes of the records kept, so the
/// real footprint stays within about twice the budget (vectors grow by doubling). Spending is
/// never refunded: a pickle that pushes and pops forever is cut off too, which also bounds
/// its running time.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    left: usize,
}

impl Budget {
    pub(super) fn new(bytes: usize) -> Self {
        Self { left: bytes }
    }

    pub(super) fn spend(&mut self, bytes: usize) -> Result<()> {
        self.left = self.left.checked_sub(bytes).ok_or_else(|| {
            bad(
                "the pickle builds far more objects than a checkpoint of this size holds \
                 (a memory bomb?); it was refused before using more memory",
            )
        })?;
        Ok(())
    }
}

const VALUE: usize = size_of::<Value>();
/// A memo entry: the value plus the hash table's key and control bytes.
const MEMO_ENTRY: usize = size_of::<Value>() + 2 * size_of::<usize>();

/// The only callables and classes a file may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Global {
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
pub(super) enum Value {
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
pub(super) enum Obj {
    Seq(Vec<Value>),
    Dict(Vec<(Value, Value)>),
}

pub(super) struct Pickle<'a> {
    data: &'a [u8],
    pub(super) pos: usize,
    persid: Persid,
    pub(super) budget: Budget,
    stack: Vec<Value>,
    /// Stack heights at each MARK; nothing below the innermost one may be popped.
    marks: Vec<usize>,
    memo: HashMap<usize, Value>,
    pub(super) objs: Vec<Obj>,
    pub(super) storages: Vec<StorageRef>,
    pub(super) tensors: Vec<TensorSpec>,
}

impl<'a> Pickle<'a> {
    pub(super) fn new(data: &'a [u8], pos: usize, persid: Persid, budget: Budget) -> Self {
        Pickle {
            data,
            pos,
            persid,
            budget,
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
        self.budget.spend(n)?;
        Ok(Value::Str(s.into()))
    }

    /// Python 2 `str`: bytes that Python 3 reads as text; latin-1 maps every byte.
    fn latin1(&mut self, n: usize) -> Result<Value> {
        let b = self.take(n)?;
        // Bytes above 0x7f take two bytes in UTF-8.
        self.budget.spend(n.saturating_mul(2))?;
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

    /// Values only enter containers from the stack, where they were paid for; the arena
    /// record is the only new cost.
    fn alloc(&mut self, obj: Obj) -> Result<usize> {
        self.budget.spend(size_of::<Obj>())?;
        self.objs.push(obj);
        Ok(self.objs.len() - 1)
    }

    pub(super) fn seq(&self, v: &Value, what: &str) -> Result<&[Value]> {
        match v {
            Value::Tuple(i) | Value::List(i) => match self.objs.get(*i) {
                Some(Obj::Seq(items)) => Ok(items),
                _ => Err(bad(format!("{what} is malformed"))),
            },
            _ => Err(bad(format!("{what} is not a tuple or list"))),
        }
    }

    pub(super) fn dict(&self, v: &Value) -> Result<&[(Value, Value)]> {
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
        self.budget.spend(MEMO_ENTRY)?;
        self.memo.insert(i, v);
        Ok(())
    }

    /// Runs from `pos` to STOP and returns the pickled object; `pos` ends just past STOP.
    pub(super) fn run(&mut self) -> Result<Value> {
        loop {
            let at = self.pos;
            let byte = self.byte()?;
            let Some(op) = OpCode::from_byte(byte) else {
                return Err(Error::Unsupported(format!(
                    "pickle opcode 0x{byte:02x} at byte {at} is not supported by this reader"
                )));
            };
            let v = match op {
                OpCode::Proto => {
                    let proto = self.byte()?;
                    if proto > 5 {
                        return Err(Error::Unsupported(format!("pickle protocol {proto}")));
                    }
                    continue;
                }
                OpCode::Frame => {
                    self.take(8)?;
                    continue;
                }
                OpCode::Stop => return self.pop(),
                OpCode::Mark => {
                    self.budget.spend(size_of::<usize>())?;
                    self.marks.push(self.stack.len());
                    continue;
                }
                OpCode::Pop => {
                    self.pop()?;
                    continue;
                }
                OpCode::PopMark => {
                    self.pop_mark()?;
                    continue;
                }
                OpCode::Dup => self.top()?.clone(),
                OpCode::EmptyDict => Value::Dict(self.alloc(Obj::Dict(Vec::new()))?),
                OpCode::EmptyList => Value::List(self.alloc(Obj::Seq(Vec::new()))?),
                OpCode::EmptyTuple => Value::Tuple(self.alloc(Obj::Seq(Vec::new()))?),
                OpCode::Tuple => {
                    let items = self.pop_mark()?;
                    Value::Tuple(self.alloc(Obj::Seq(items))?)
                }
                OpCode::Tuple1 | OpCode::Tuple2 | OpCode::Tuple3 => {
                    let n = usize::from(byte - 0x84);
                    let mut items = (0..n).map(|_| self.pop()).collect::<Result<Vec<_>>>()?;
                    items.reverse();
                    Value::Tuple(self.alloc(Obj::Seq(items))?)
                }
                OpCode::SetItem => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.top_dict()?.push((k, v));
                    continue;
                }
                OpCode::SetItems => {
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
                OpCode::Append => {
                    let v = self.pop()?;
                    self.top_list()?.push(v);
                    continue;
                }
                OpCode::Appends => {
                    let items = self.pop_mark()?;
                    self.top_list()?.extend(items);
                    continue;
                }
                OpCode::BinInt => Value::Int(i32::from_le_bytes(self.arr()?).into()),
                OpCode::BinInt1 => Value::Int(self.byte()?.into()),
                OpCode::BinInt2 => Value::Int(u16::from_le_bytes(self.arr()?).into()),
                OpCode::Long1 => {
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
                OpCode::BinFloat => {
                    self.take(8)?;
                    Value::Float
                }
                OpCode::BinUnicode => {
                    let n = self.len_u32()?;
                    self.text(n)?
                }
                OpCode::ShortBinUnicode => {
                    let n = usize::from(self.byte()?);
                    self.text(n)?
                }
                OpCode::BinUnicode8 => {
                    let n = usize::try_from(u64::from_le_bytes(self.arr()?))
                        .map_err(|_| bad("absurd string length"))?;
                    self.text(n)?
                }
                OpCode::ShortBinString => {
                    let n = usize::from(self.byte()?);
                    self.latin1(n)?
                }
                OpCode::BinString => {
                    let n = usize::try_from(i32::from_le_bytes(self.arr()?))
                        .map_err(|_| bad("negative string length"))?;
                    self.latin1(n)?
                }
                OpCode::BinBytes => {
                    let n = self.len_u32()?;
                    self.take(n)?;
                    Value::Bytes
                }
                OpCode::ShortBinBytes => {
                    let n = usize::from(self.byte()?);
                    self.take(n)?;
                    Value::Bytes
                }
                OpCode::None => Value::None,
                OpCode::NewTrue => Value::Bool(true),
                OpCode::NewFalse => Value::Bool(false),
                OpCode::Global => {
                    let module = self.line()?;
                    let name = self.line()?;
                    Value::Global(resolve_global(module, name)?)
                }
                OpCode::StackGlobal => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return Err(bad("STACK_GLOBAL on something other than strings"));
                    };
                    Value::Global(resolve_global(&module, &name)?)
                }
                OpCode::BinPut => {
                    let i = self.byte()?.into();
                    self.memo_put(i)?;
                    continue;
                }
                OpCode::LongBinPut => {
                    let i = self.len_u32()?;
                    self.memo_put(i)?;
                    continue;
                }
                OpCode::Memoize => {
                    self.memo_put(self.memo.len())?;
                    continue;
                }
                OpCode::BinGet => {
                    let i = self.byte()?.into();
                    self.memo_get(i)?
                }
                OpCode::LongBinGet => {
                    let i = self.len_u32()?;
                    self.memo_get(i)?
                }
                OpCode::Reduce => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    self.reduce(func, args)?
                }
                OpCode::NewObj => {
                    let _args = self.pop()?;
                    match self.pop()? {
                        Value::Global(Global::OrderedDict) => {
                            Value::Dict(self.alloc(Obj::Dict(Vec::new()))?)
                        }
                        _ => {
                            return Err(Error::Unsupported(
                                "NEWOBJ of a class other than OrderedDict".into(),
                            ))
                        }
                    }
                }
                OpCode::Build => {
                    // OrderedDict state (`_metadata`) is an attribute, not content: ignored.
                    let _state = self.pop()?;
                    if !matches!(self.top()?, Value::Dict(_)) {
                        return Err(Error::Unsupported(
                            "BUILD on something other than a dict".into(),
                        ));
                    }
                    continue;
                }
                OpCode::BinPersId => {
                    let pid = self.pop()?;
                    self.persistent_load(&pid)?
                }
            };
            self.budget.spend(VALUE)?;
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
            (Global::OrderedDict, []) => Ok(Value::Dict(self.alloc(Obj::Dict(Vec::new()))?)),
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
                // Five bytes of REDUCE on memoized arguments make a new record with two
                // vectors of up to 64 dims: the record is what costs.
                self.budget
                    .spend(size_of::<TensorSpec>() + 2 * shape.len() * size_of::<usize>())?;
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
        let key = key.clone();
        self.budget.spend(size_of::<StorageRef>())?;
        self.storages.push(StorageRef {
            key,
            ty,
            numel,
            view,
        });
        Ok(Value::Storage(self.storages.len() - 1))
    }
}

pub(super) fn to_usize(v: &Value, what: &str) -> Result<usize> {
    match v {
        Value::Int(n) => {
            usize::try_from(*n).map_err(|_| bad(format!("{what} {n} is out of range")))
        }
        _ => Err(bad(format!("{what} is not an integer"))),
    }
}
