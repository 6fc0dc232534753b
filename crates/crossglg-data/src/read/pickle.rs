//! A minimal, data-only pickle reader: enough of the pickle machine (protocols 2-5) to load
//! what `pickle.dump` writes for dicts, lists, tuples, str, bytes, int, float, bool, None and
//! numpy arrays / dtypes / scalars. Nothing is executed: a call to any other global becomes an
//! opaque [`Object`]. Out-of-band buffers (protocol 5 `buffer_callback`) are not supported.
//!
//! Containers are shared copy-on-write (`Rc`), so memo look-ups are cheap and no reference
//! cycle can be built; a container memoised before it was filled (as the pickler does) is
//! seen empty through a later memo look-up. That only matters for the same list/dict object
//! appearing twice in the pickled data, which plain annotation files do not do.

use std::collections::HashMap;
use std::rc::Rc;

/// Nesting deeper than this is rejected (it also bounds recursion when values are dropped).
pub const MAX_DEPTH: u32 = 200;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    List(Rc<Seq>),
    Tuple(Rc<Seq>),
    Set(Rc<Seq>),
    Dict(Rc<Map>),
    /// A reference to a module-level name (`GLOBAL`), not yet called.
    Global(Rc<(String, String)>),
    Dtype(Rc<Dtype>),
    Array(Rc<NdArray>),
    /// The result of calling or instantiating a global we do not model.
    Object(Rc<Object>),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Seq {
    pub items: Vec<Value>,
    depth: u32,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Map {
    pub items: Vec<(Value, Value)>,
    depth: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub module: String,
    pub name: String,
    pub args: Value,
    pub state: Option<Value>,
    depth: u32,
}

/// A numpy dtype: kind (`f`, `i`, `u`, `b`, ...), item size in bytes and byte order.
#[derive(Debug, Clone, PartialEq)]
pub struct Dtype {
    pub kind: char,
    pub size: usize,
    pub little_endian: bool,
}

/// A numpy array as raw bytes; `data` is empty until the array's state is set.
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub fortran_order: bool,
    pub data: Rc<[u8]>,
}

impl NdArray {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as f32 in C (row-major) order.
    pub fn to_f32(&self) -> Result<Vec<f32>, String> {
        let n = self
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or("shape overflows")?;
        let size = self.dtype.size;
        if size == 0 || size > 8 {
            return Err(format!("dtype item size {size} is not supported"));
        }
        if n.checked_mul(size) != Some(self.data.len()) {
            return Err(format!(
                "array of shape {:?} and item size {size} needs {} bytes, has {}",
                self.shape,
                n.saturating_mul(size),
                self.data.len()
            ));
        }
        let le = self.dtype.little_endian;
        let mut out = Vec::with_capacity(n);
        for c in self.data.chunks_exact(size) {
            let mut b = [0u8; 8];
            b[..size.min(8)].copy_from_slice(&c[..size.min(8)]);
            if !le {
                b[..size].reverse();
            }
            let x = match (self.dtype.kind, size) {
                ('f', 4) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                ('f', 8) => f64::from_le_bytes(b) as f32,
                ('f', 2) => half_to_f32(u16::from_le_bytes([b[0], b[1]])),
                ('i', 1..=8) => {
                    let shift = 64 - 8 * size as u32;
                    ((i64::from_le_bytes(b) << shift) >> shift) as f32
                }
                ('u' | 'b', 1..=8) => u64::from_le_bytes(b) as f32,
                (k, s) => return Err(format!("dtype {k}{s} is not numeric")),
            };
            out.push(x);
        }
        if self.fortran_order && self.shape.len() > 1 {
            // Column-major to row-major: element at C index i sits at the F index of its
            // multi-index.
            let shape = &self.shape;
            let mut c_out = vec![0f32; n];
            let mut idx = vec![0usize; shape.len()];
            for slot in c_out.iter_mut() {
                let mut f = 0usize;
                let mut stride = 1usize;
                for (d, &i) in idx.iter().enumerate() {
                    f += i * stride;
                    stride *= shape[d];
                }
                *slot = out[f];
                for d in (0..shape.len()).rev() {
                    idx[d] += 1;
                    if idx[d] < shape[d] {
                        break;
                    }
                    idx[d] = 0;
                }
            }
            out = c_out;
        }
        Ok(out)
    }
}

fn half_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f32;
    match exp {
        0 => sign * frac * 2f32.powi(-24),
        31 if frac == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        e => sign * (1.0 + frac / 1024.0) * 2f32.powi(e - 15),
    }
}

impl Value {
    pub fn depth(&self) -> u32 {
        match self {
            Value::List(s) | Value::Tuple(s) | Value::Set(s) => s.depth,
            Value::Dict(m) => m.depth,
            Value::Object(o) => o.depth,
            _ => 0,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::List(s) | Value::Tuple(s) => Some(&s.items),
            _ => None,
        }
    }

    /// Looks a string key up in a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(m) => m
                .items
                .iter()
                .rev()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Set(_) => "set",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Dtype(_) => "numpy dtype",
            Value::Array(_) => "numpy array",
            Value::Object(_) => "object",
        }
    }

    fn seq(items: Vec<Value>) -> Result<Rc<Seq>, String> {
        let depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        check_depth(depth)?;
        Ok(Rc::new(Seq { items, depth }))
    }

    fn bytes_like(&self) -> Option<Rc<[u8]>> {
        match self {
            Value::Bytes(b) => Some(b.clone()),
            // Python 2 `str` pickles (BINSTRING) are bytes decoded as latin-1.
            Value::Str(s) => latin1(s).map(Rc::from),
            _ => None,
        }
    }
}

fn latin1(s: &str) -> Option<Vec<u8>> {
    s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
}

fn check_depth(depth: u32) -> Result<(), String> {
    if depth > MAX_DEPTH {
        Err(format!("nesting deeper than {MAX_DEPTH}"))
    } else {
        Ok(())
    }
}

/// A pickle error: what went wrong and at which byte offset.
#[derive(Debug, Clone, PartialEq)]
pub struct PickleError {
    pub offset: usize,
    pub message: String,
}

impl std::fmt::Display for PickleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "byte {}: {}", self.offset, self.message)
    }
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
}

/// Unpickles one object from `data`.
pub fn unpickle(data: &[u8]) -> Result<Value, PickleError> {
    let mut m = Machine {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    loop {
        let at = m.pos;
        match m.step() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(message) => {
                return Err(PickleError {
                    offset: at,
                    message,
                })
            }
        }
    }
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| format!("data ends inside an opcode argument (needs {n} bytes)"))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn len64(&mut self) -> Result<usize, String> {
        let n = self.u64()?;
        usize::try_from(n).map_err(|_| format!("length {n} is too large"))
    }

    fn line(&mut self) -> Result<&'a str, String> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("data ends inside a text argument")?;
        self.pos += end + 1;
        std::str::from_utf8(&rest[..end]).map_err(|_| "text argument is not UTF-8".to_string())
    }

    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    fn pop(&mut self) -> Result<Value, String> {
        if self.stack.len() <= self.marks.last().copied().unwrap_or(0) && !self.marks.is_empty() {
            return Err("stack underflow (pop across a mark)".into());
        }
        self.stack
            .pop()
            .ok_or_else(|| "stack underflow".to_string())
    }

    fn top(&mut self) -> Result<&mut Value, String> {
        if self.stack.len() <= self.marks.last().copied().unwrap_or(0) && !self.marks.is_empty() {
            return Err("stack underflow (mark on top)".into());
        }
        self.stack
            .last_mut()
            .ok_or_else(|| "stack underflow".to_string())
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let mark = self.marks.pop().ok_or("no mark on the stack")?;
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    fn string(&mut self, n: usize) -> Result<Value, String> {
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).map_err(|_| "string is not valid UTF-8".to_string())?;
        Ok(Value::Str(Rc::from(s)))
    }

    fn bytes(&mut self, n: usize) -> Result<Value, String> {
        Ok(Value::Bytes(Rc::from(self.take(n)?)))
    }

    fn step(&mut self) -> Result<Option<Value>, String> {
        let op = self.u8()?;
        match op {
            0x80 => {
                let proto = self.u8()?;
                if proto > 5 {
                    return Err(format!("unsupported pickle protocol {proto}"));
                }
            }
            0x95 => {
                self.u64()?;
            }
            b'.' => {
                let v = self.pop()?;
                return Ok(Some(v));
            }
            b'(' => self.marks.push(self.stack.len()),
            b')' => self.push(Value::Tuple(Value::seq(Vec::new())?)),
            b']' => self.push(Value::List(Value::seq(Vec::new())?)),
            b'}' => self.push(Value::Dict(Rc::new(Map {
                items: Vec::new(),
                depth: 1,
            }))),
            0x8f => self.push(Value::Set(Value::seq(Vec::new())?)),
            b'N' => self.push(Value::None),
            0x88 => self.push(Value::Bool(true)),
            0x89 => self.push(Value::Bool(false)),
            b'J' => {
                let v = self.u32()? as i32;
                self.push(Value::Int(v as i64))
            }
            b'K' => {
                let v = self.u8()?;
                self.push(Value::Int(v as i64))
            }
            b'M' => {
                let b = self.take(2)?;
                self.push(Value::Int(u16::from_le_bytes([b[0], b[1]]) as i64))
            }
            0x8a | 0x8b => {
                let n = if op == 0x8a {
                    self.u8()? as usize
                } else {
                    self.u32()? as usize
                };
                let b = self.take(n)?;
                if n > 8 {
                    return Err(format!("integer of {n} bytes is too large"));
                }
                let mut a = if b.last().is_some_and(|&x| x & 0x80 != 0) {
                    [0xffu8; 8]
                } else {
                    [0u8; 8]
                };
                a[..n].copy_from_slice(b);
                self.push(Value::Int(i64::from_le_bytes(a)))
            }
            b'G' => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                self.push(Value::Float(f64::from_be_bytes(a)))
            }
            b'X' => {
                let n = self.u32()? as usize;
                let v = self.string(n)?;
                self.push(v)
            }
            0x8c => {
                let n = self.u8()? as usize;
                let v = self.string(n)?;
                self.push(v)
            }
            0x8d => {
                let n = self.len64()?;
                let v = self.string(n)?;
                self.push(v)
            }
            b'T' | b'U' => {
                // Python 2 byte strings: decoded as latin-1, as numpy's loaders do.
                let n = if op == b'T' {
                    self.u32()? as usize
                } else {
                    self.u8()? as usize
                };
                let b = self.take(n)?;
                let s: String = b.iter().map(|&c| c as char).collect();
                self.push(Value::Str(Rc::from(s)))
            }
            b'B' => {
                let n = self.u32()? as usize;
                let v = self.bytes(n)?;
                self.push(v)
            }
            b'C' => {
                let n = self.u8()? as usize;
                let v = self.bytes(n)?;
                self.push(v)
            }
            0x8e | 0x96 => {
                let n = self.len64()?;
                let v = self.bytes(n)?;
                self.push(v)
            }
            b'q' => {
                let i = self.u8()? as u64;
                let v = self.top()?.clone();
                self.memo.insert(i, v);
            }
            b'r' => {
                let i = self.u32()? as u64;
                let v = self.top()?.clone();
                self.memo.insert(i, v);
            }
            0x94 => {
                let i = self.memo.len() as u64;
                let v = self.top()?.clone();
                self.memo.insert(i, v);
            }
            b'h' | b'j' => {
                let i = if op == b'h' {
                    self.u8()? as u64
                } else {
                    self.u32()? as u64
                };
                let v = self
                    .memo
                    .get(&i)
                    .cloned()
                    .ok_or_else(|| format!("memo entry {i} is not defined"))?;
                self.push(v)
            }
            b'c' => {
                let module = self.line()?.to_string();
                let name = self.line()?.to_string();
                self.push(Value::Global(Rc::new((module, name))))
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (module.as_str(), name.as_str()) {
                    (Some(m), Some(n)) => {
                        self.push(Value::Global(Rc::new((m.to_string(), n.to_string()))))
                    }
                    _ => return Err("STACK_GLOBAL needs two strings".into()),
                }
            }
            b'R' => {
                let args = self.pop()?;
                let func = self.pop()?;
                let v = reduce(func, args)?;
                self.push(v)
            }
            0x81 => {
                let args = self.pop()?;
                let cls = self.pop()?;
                let v = reduce(cls, args)?;
                self.push(v)
            }
            0x92 => {
                let _kwargs = self.pop()?;
                let args = self.pop()?;
                let cls = self.pop()?;
                let v = reduce(cls, args)?;
                self.push(v)
            }
            b'b' => {
                let state = self.pop()?;
                let obj = self.pop()?;
                let v = build(obj, state)?;
                self.push(v)
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                dict_insert(self.top()?, vec![(k, v)])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                if !items.len().is_multiple_of(2) {
                    return Err("SETITEMS with an odd number of items".into());
                }
                let mut pairs = Vec::with_capacity(items.len() / 2);
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                dict_insert(self.top()?, pairs)?;
            }
            b'a' => {
                let v = self.pop()?;
                seq_extend(self.top()?, vec![v])?;
            }
            b'e' | 0x90 => {
                let items = self.pop_mark()?;
                seq_extend(self.top()?, items)?;
            }
            0x91 => {
                let items = self.pop_mark()?;
                self.push(Value::Set(Value::seq(items)?))
            }
            b't' => {
                let items = self.pop_mark()?;
                self.push(Value::Tuple(Value::seq(items)?))
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop()?);
                }
                items.reverse();
                self.push(Value::Tuple(Value::seq(items)?))
            }
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let v = self.top()?.clone();
                self.push(v)
            }
            other => {
                return Err(format!(
                    "unsupported pickle opcode 0x{other:02x} (only data written by pickle.dump \
                     with protocol 2-5 is read)"
                ))
            }
        }
        Ok(None)
    }
}

fn dict_insert(target: &mut Value, pairs: Vec<(Value, Value)>) -> Result<(), String> {
    match target {
        Value::Dict(m) => {
            let m = Rc::make_mut(m);
            for (k, v) in pairs {
                let d = 1 + k.depth().max(v.depth());
                check_depth(d)?;
                m.depth = m.depth.max(d);
                // Duplicate keys are kept; `get` looks from the end, so the later one wins as
                // in Python without a quadratic search here.
                m.items.push((k, v));
            }
            Ok(())
        }
        other => Err(format!("SETITEM(S) on a {}", other.type_name())),
    }
}

fn seq_extend(target: &mut Value, items: Vec<Value>) -> Result<(), String> {
    match target {
        Value::List(s) | Value::Set(s) => {
            let s = Rc::make_mut(s);
            for v in items {
                let d = 1 + v.depth();
                check_depth(d)?;
                s.depth = s.depth.max(d);
                s.items.push(v);
            }
            Ok(())
        }
        other => Err(format!("APPEND(S) on a {}", other.type_name())),
    }
}

fn is_numpy(module: &str, sub: &str) -> bool {
    module
        .strip_prefix("numpy.core.")
        .or_else(|| module.strip_prefix("numpy._core."))
        == Some(sub)
}

fn parse_dtype_str(s: &str) -> Result<Dtype, String> {
    let (little, rest) = match s.as_bytes().first() {
        Some(b'>') => (false, &s[1..]),
        Some(b'<' | b'=' | b'|') => (true, &s[1..]),
        _ => (true, s),
    };
    let mut chars = rest.chars();
    let kind = chars.next().ok_or("empty dtype")?;
    let size: usize = match chars.as_str() {
        "" if kind == '?' || kind == 'b' => 1,
        n => n
            .parse()
            .map_err(|_| format!("dtype `{s}` is not supported"))?,
    };
    let kind = if kind == '?' { 'b' } else { kind };
    if size == 0 || size > 16 {
        return Err(format!("dtype `{s}` has an unsupported size"));
    }
    Ok(Dtype {
        kind,
        size,
        little_endian: little,
    })
}

fn shape_of(v: &Value) -> Result<Vec<usize>, String> {
    let items = v.as_seq().ok_or("array shape is not a tuple")?;
    items
        .iter()
        .map(|d| {
            d.as_int()
                .and_then(|i| usize::try_from(i).ok())
                .ok_or_else(|| "array shape entry is not a whole number".to_string())
        })
        .collect()
}

/// Calls a global with `args`, for the few callables pickled data needs; anything else stays an
/// opaque object (never executed).
fn reduce(func: Value, args: Value) -> Result<Value, String> {
    let Value::Global(g) = &func else {
        return Err(format!(
            "REDUCE on a {} (expected a global)",
            func.type_name()
        ));
    };
    let (module, name) = (g.0.as_str(), g.1.as_str());
    let a = args.as_seq().unwrap_or(&[]);
    match (module, name) {
        ("_codecs", "encode") => {
            let s = a
                .first()
                .and_then(Value::as_str)
                .ok_or("_codecs.encode needs a str")?;
            let enc = a.get(1).and_then(Value::as_str).unwrap_or("utf-8");
            let b = match enc {
                "latin1" | "latin-1" | "iso-8859-1" => {
                    latin1(s).ok_or("string is not latin-1 encodable")?
                }
                _ => s.as_bytes().to_vec(),
            };
            Ok(Value::Bytes(Rc::from(b)))
        }
        ("builtins" | "__builtin__", "bytearray" | "bytes") => match a.first() {
            None => Ok(Value::Bytes(Rc::from(Vec::new()))),
            Some(Value::Bytes(b)) => Ok(Value::Bytes(b.clone())),
            Some(Value::Str(s)) => Ok(Value::Bytes(Rc::from(
                latin1(s).ok_or("bytearray string is not latin-1")?,
            ))),
            Some(v) => Err(format!("bytearray of a {}", v.type_name())),
        },
        ("collections", "OrderedDict") | ("builtins", "dict") if a.is_empty() => {
            Ok(Value::Dict(Rc::new(Map {
                items: Vec::new(),
                depth: 1,
            })))
        }
        ("numpy", "dtype") => {
            let s = a
                .first()
                .and_then(Value::as_str)
                .ok_or("numpy.dtype needs a str")?;
            Ok(Value::Dtype(Rc::new(parse_dtype_str(s)?)))
        }
        (m, "_reconstruct") if is_numpy(m, "multiarray") => Ok(Value::Array(Rc::new(NdArray {
            dtype: Dtype {
                kind: 'u',
                size: 1,
                little_endian: true,
            },
            shape: Vec::new(),
            fortran_order: false,
            data: Rc::from(Vec::new()),
        }))),
        (m, "scalar") if is_numpy(m, "multiarray") => {
            let Some(Value::Dtype(dt)) = a.first() else {
                return Err("numpy scalar needs a dtype".into());
            };
            let data = a
                .get(1)
                .and_then(Value::bytes_like)
                .ok_or("numpy scalar needs bytes")?;
            let arr = NdArray {
                dtype: (**dt).clone(),
                shape: vec![],
                fortran_order: false,
                data,
            };
            let x = arr.to_f32()?;
            let x = *x.first().ok_or("empty numpy scalar")?;
            Ok(match dt.kind {
                'i' | 'u' => {
                    let mut b = [0u8; 8];
                    let n = dt.size.min(8);
                    b[..n].copy_from_slice(&arr.data[..n]);
                    if !dt.little_endian {
                        b[..n].reverse();
                    }
                    let shift = 64 - 8 * n as u32;
                    let v = i64::from_le_bytes(b);
                    Value::Int(if dt.kind == 'i' {
                        (v << shift) >> shift
                    } else {
                        v
                    })
                }
                'b' => Value::Bool(x != 0.0),
                _ => Value::Float(x as f64),
            })
        }
        (m, "_frombuffer") if is_numpy(m, "numeric") => {
            let data = a
                .first()
                .and_then(Value::bytes_like)
                .ok_or("_frombuffer needs bytes")?;
            let Some(Value::Dtype(dt)) = a.get(1) else {
                return Err("_frombuffer needs a dtype".into());
            };
            let shape = shape_of(a.get(2).ok_or("_frombuffer needs a shape")?)?;
            let fortran = a.get(3).and_then(Value::as_str) == Some("F");
            Ok(Value::Array(Rc::new(NdArray {
                dtype: (**dt).clone(),
                shape,
                fortran_order: fortran,
                data,
            })))
        }
        _ => {
            let depth = 1 + args.depth();
            check_depth(depth)?;
            Ok(Value::Object(Rc::new(Object {
                module: module.to_string(),
                name: name.to_string(),
                args,
                state: None,
                depth,
            })))
        }
    }
}

/// `BUILD`: sets an object's state (numpy arrays and dtypes get theirs decoded).
fn build(obj: Value, state: Value) -> Result<Value, String> {
    match obj {
        Value::Array(a) => {
            // ndarray.__setstate__((version, shape, dtype, is_fortran, data))
            let s = state.as_seq().ok_or("numpy array state is not a tuple")?;
            let off = usize::from(s.len() == 5);
            let shape = shape_of(s.get(off).ok_or("numpy array state is too short")?)?;
            let Some(Value::Dtype(dt)) = s.get(off + 1) else {
                return Err("numpy array state has no dtype".into());
            };
            let fortran = matches!(
                s.get(off + 2),
                Some(Value::Bool(true)) | Some(Value::Int(1))
            );
            let data = s
                .get(off + 3)
                .and_then(Value::bytes_like)
                .ok_or("numpy array data is not bytes (object arrays are not supported)")?;
            let _ = a;
            Ok(Value::Array(Rc::new(NdArray {
                dtype: (**dt).clone(),
                shape,
                fortran_order: fortran,
                data,
            })))
        }
        Value::Dtype(mut d) => {
            // dtype.__setstate__((version, byteorder, ...))
            if let Some(order) = state
                .as_seq()
                .and_then(|s| s.get(1))
                .and_then(Value::as_str)
            {
                Rc::make_mut(&mut d).little_endian = order != ">";
            }
            Ok(Value::Dtype(d))
        }
        Value::Object(mut o) => {
            let d = 1 + state.depth();
            check_depth(d)?;
            let om = Rc::make_mut(&mut o);
            om.depth = om.depth.max(d);
            om.state = Some(state);
            Ok(Value::Object(o))
        }
        // Other builtins have no state to set; keep the value.
        other => Ok(other),
    }
}
