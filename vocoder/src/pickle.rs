//! A bounded reader for the pickle subset PyTorch (and fairseq) checkpoints use.
//!
//! Why not candle's reader: it deep-clones memo entries (a 1.7 KB pickle re-using its memo grows
//! exponentially), recurses (deep nesting overflows the stack), allocates string lengths before
//! checking them against the input, and its error messages print whole objects. Here:
//! - objects live in one arena and containers hold indices, so a memo get is one index, and the
//!   arena grows at most one node per opcode: memory is linear in the input;
//! - the parser is a loop (no recursion); consumers walk the arena with an explicit depth limit
//!   and a visit budget (shared sub-objects cannot make a walk exponential);
//! - every length is checked against the bytes left before anything is allocated;
//! - nothing is ever called: `REDUCE`/`NEWOBJ`/`INST`/`OBJ` only record the call, and
//!   [`Pickle::calls_outside`] lists the callables a file asked Python to run.

use std::collections::HashMap;

/// Index of a node in [`Pickle::nodes`].
pub type Id = u32;

/// Most nodes one pickle may create (each opcode creates at most one; a node is 32 bytes, so
/// the arena stays under 64 MB). A state dict needs about 20 per tensor: room for 50 000.
pub const MAX_NODES: usize = 1 << 20;
/// Largest string or bytes object kept (longer ones are an error: no checkpoint key is that long).
pub const MAX_STRING: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits (only its byte length is kept).
    BigInt(usize),
    Float(f64),
    Str(String),
    /// Bytes / bytearray / py2 str: only the length is kept (never model data in PyTorch files).
    Bytes(usize),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Set(Vec<Id>),
    /// `module.name` (boxed: keeps every node at 32 bytes).
    Global(Box<(String, String)>),
    /// `callable(*args)`, never executed (boxed: keeps every node at 32 bytes).
    Call(Box<Call>),
    PersistentId(Id),
}

/// A recorded call: `state` from BUILD, `items`/`entries` from APPEND(S)/SETITEM(S) applied
/// to its result.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub callable: Id,
    pub args: Id,
    pub state: Option<Id>,
    pub items: Vec<Id>,
    pub entries: Vec<(Id, Id)>,
}

#[derive(Debug)]
pub struct Pickle {
    pub nodes: Vec<Value>,
    pub root: Id,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PickleError(pub String);

const ENDS_EARLY: &str = "pickle ends early";

impl PickleError {
    /// The input ended inside the pickle (more bytes might complete it).
    pub fn is_truncation(&self) -> bool {
        self.0.starts_with(ENDS_EARLY) || self.0.starts_with("unterminated")
    }
}

fn err<T>(m: impl Into<String>) -> Result<T, PickleError> {
    Err(PickleError(m.into()))
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.data.len() => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            _ => err(format!("{ENDS_EARLY} (needs {n} more bytes at offset {})", self.pos)),
        }
    }
    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }
    fn le<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }
    fn len_u32(&mut self) -> Result<usize, PickleError> {
        Ok(u32::from_le_bytes(self.le::<4>()?) as usize)
    }
    fn len_u64(&mut self) -> Result<usize, PickleError> {
        usize::try_from(u64::from_le_bytes(self.le::<8>()?)).or_else(|_| err("length does not fit in memory"))
    }
    /// A text line (protocol 0 opcodes), without its newline.
    fn line(&mut self) -> Result<&'a [u8], PickleError> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().take(MAX_STRING + 1).position(|b| *b == b'\n').ok_or_else(|| PickleError("unterminated text line".into()))?;
        self.pos += n + 1;
        Ok(&rest[..n])
    }
}

fn utf8(b: &[u8]) -> Result<String, PickleError> {
    if b.len() > MAX_STRING {
        return err(format!("a {}-byte string (limit {MAX_STRING})", b.len()));
    }
    String::from_utf8(b.to_vec()).or_else(|_| err("string is not valid UTF-8"))
}

fn ascii_line(b: &[u8]) -> Result<&str, PickleError> {
    std::str::from_utf8(b).or_else(|_| err("text opcode is not ASCII"))
}

/// Little-endian two's complement integer of `b.len()` bytes (LONG1/LONG4).
fn long_value(b: &[u8]) -> Value {
    if b.is_empty() {
        return Value::Int(0);
    }
    if b.len() > 8 {
        // Fits in i64 only if the extra bytes are pure sign extension.
        let neg = b[b.len() - 1] & 0x80 != 0;
        let fill = if neg { 0xff } else { 0 };
        if b[8..].iter().all(|x| *x == fill) && ((b[7] & 0x80 != 0) == neg) {
            return long_value(&b[..8]);
        }
        return Value::BigInt(b.len());
    }
    let neg = b[b.len() - 1] & 0x80 != 0;
    let mut buf = if neg { [0xffu8; 8] } else { [0u8; 8] };
    buf[..b.len()].copy_from_slice(b);
    Value::Int(i64::from_le_bytes(buf))
}

impl Pickle {
    /// Parses one pickle from the start of `data`; returns it and the bytes it used.
    pub fn parse(data: &[u8]) -> Result<(Pickle, usize), PickleError> {
        let mut p = Parser { r: Reader { data, pos: 0 }, nodes: Vec::new(), stack: Vec::new(), marks: Vec::new(), memo: HashMap::new() };
        let root = p.run()?;
        Ok((Pickle { nodes: p.nodes, root }, p.r.pos))
    }

    pub fn get(&self, id: Id) -> &Value {
        &self.nodes[id as usize]
    }

    /// The `(module, name)` a node is, if it is a global.
    pub fn global(&self, id: Id) -> Option<(&str, &str)> {
        match self.get(id) {
            Value::Global(g) => Some((&g.0, &g.1)),
            _ => None,
        }
    }

    pub fn as_i64(&self, id: Id) -> Option<i64> {
        match self.get(id) {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    pub fn as_str(&self, id: Id) -> Option<&str> {
        match self.get(id) {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Tuple or list elements.
    pub fn seq(&self, id: Id) -> Option<&[Id]> {
        match self.get(id) {
            Value::Tuple(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }

    /// Dict entries: a dict, or a call that received SETITEM(S) (OrderedDict and friends).
    pub fn entries(&self, id: Id) -> Option<&[(Id, Id)]> {
        match self.get(id) {
            Value::Dict(e) => Some(e),
            Value::Call(c) if self.is_dict_class(c.callable) => Some(&c.entries),
            _ => None,
        }
    }

    fn is_dict_class(&self, id: Id) -> bool {
        matches!(
            self.global(id),
            Some(("collections", "OrderedDict" | "defaultdict")) | Some(("builtins" | "__builtin__", "dict"))
        )
    }

    /// Every callable the pickle asks to call (REDUCE/NEWOBJ/INST/OBJ) whose module is not in
    /// `allowed`, as `module.name`, deduplicated. Reads the arena directly: no walk, no budget.
    pub fn calls_outside(&self, allowed: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for v in &self.nodes {
            if let Value::Call(c) = v {
                let name = match self.global(c.callable) {
                    Some((m, _)) if allowed.iter().any(|a| m == *a || m.starts_with(&format!("{a}."))) => continue,
                    Some((m, n)) => format!("{m}.{n}"),
                    None => "a computed callable".to_string(),
                };
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
        out
    }
}

/// Walk limits for consumers of the arena.
pub struct Budget {
    pub visits_left: usize,
    pub max_depth: usize,
}

impl Budget {
    /// Room for every node a dozen times over (real checkpoints visit each about once), plus a
    /// constant for tiny files.
    pub fn for_pickle(p: &Pickle) -> Self {
        Budget { visits_left: p.nodes.len().saturating_mul(12).saturating_add(100_000), max_depth: 64 }
    }

    pub fn visit(&mut self, depth: usize) -> Result<(), PickleError> {
        if depth > self.max_depth {
            return err(format!("objects nested deeper than {} levels", self.max_depth));
        }
        match self.visits_left.checked_sub(1) {
            Some(v) => {
                self.visits_left = v;
                Ok(())
            }
            None => err("the pickle re-uses objects so often that reading it would never end (a memo bomb?)"),
        }
    }
}

struct Parser<'a> {
    r: Reader<'a>,
    nodes: Vec<Value>,
    stack: Vec<Id>,
    marks: Vec<usize>,
    memo: HashMap<u32, Id>,
}

impl Parser<'_> {
    fn push(&mut self, v: Value) -> Result<(), PickleError> {
        if self.nodes.len() >= MAX_NODES {
            return err(format!("more than {MAX_NODES} objects"));
        }
        self.nodes.push(v);
        self.stack.push((self.nodes.len() - 1) as Id);
        Ok(())
    }
    fn pop(&mut self) -> Result<Id, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return err("stack underflow");
        }
        Ok(self.stack.pop().expect("checked"))
    }
    fn top(&self) -> Result<Id, PickleError> {
        self.stack.last().copied().ok_or_else(|| PickleError("stack underflow".into()))
    }
    /// Everything above the last MARK (removing the mark).
    fn pop_mark(&mut self) -> Result<Vec<Id>, PickleError> {
        let m = self.marks.pop().ok_or_else(|| PickleError("no MARK on the stack".into()))?;
        Ok(self.stack.split_off(m))
    }
    fn memo_get(&mut self, key: u32) -> Result<(), PickleError> {
        let id = *self.memo.get(&key).ok_or_else(|| PickleError(format!("memo key {key} read before it was written")))?;
        self.stack.push(id);
        Ok(())
    }
    fn memo_put(&mut self, key: u32) -> Result<(), PickleError> {
        let id = self.top()?;
        self.memo.insert(key, id);
        Ok(())
    }
    fn node_mut(&mut self, id: Id) -> &mut Value {
        &mut self.nodes[id as usize]
    }
    fn append(&mut self, target: Id, items: Vec<Id>) -> Result<(), PickleError> {
        match self.node_mut(target) {
            Value::List(v) | Value::Set(v) => v.extend(items),
            Value::Call(c) => c.items.extend(items),
            _ => return err("APPEND to something that is not a list"),
        }
        Ok(())
    }
    fn set_items(&mut self, target: Id, kv: Vec<Id>) -> Result<(), PickleError> {
        if kv.len() % 2 != 0 {
            return err("SETITEMS with an odd number of items");
        }
        let pairs = kv.chunks_exact(2).map(|c| (c[0], c[1]));
        match self.node_mut(target) {
            Value::Dict(e) => e.extend(pairs),
            Value::Call(c) => c.entries.extend(pairs),
            _ => return err("SETITEM on something that is not a dict"),
        }
        Ok(())
    }
    fn call(&mut self, callable: Id, args: Id) -> Result<(), PickleError> {
        self.push(Value::Call(Box::new(Call { callable, args, state: None, items: Vec::new(), entries: Vec::new() })))
    }
    fn global(&mut self, module: String, name: String) -> Result<(), PickleError> {
        if module.len() > 256 || name.len() > 256 {
            return err("global name longer than 256 bytes");
        }
        self.push(Value::Global(Box::new((module, name))))
    }

    fn run(&mut self) -> Result<Id, PickleError> {
        loop {
            let op = self.r.u8()?;
            match op {
                0x80 => {
                    let proto = self.r.u8()?;
                    if proto > 5 {
                        return err(format!("pickle protocol {proto} (newer than 5)"));
                    }
                }
                0x95 => {
                    self.r.take(8)?; // FRAME: a length hint only
                }
                b'.' => {
                    let root = self.pop()?;
                    return Ok(root);
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let t = self.top()?;
                    self.stack.push(t);
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = i32::from_le_bytes(self.r.le::<4>()?) as i64;
                    self.push(Value::Int(v))?
                }
                b'K' => {
                    let v = self.r.u8()? as i64;
                    self.push(Value::Int(v))?
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.r.le::<2>()?) as i64;
                    self.push(Value::Int(v))?
                }
                0x8a => {
                    let n = self.r.u8()? as usize;
                    let b = self.r.take(n)?;
                    self.push(long_value(b))?
                }
                0x8b => {
                    let n = self.r.len_u32()?;
                    let b = self.r.take(n)?;
                    self.push(long_value(b))?
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.r.le::<8>()?);
                    self.push(Value::Float(v))?
                }
                b'I' | b'L' => {
                    let line = ascii_line(self.r.line()?)?.trim_end_matches('L').to_string();
                    let v = match line.as_str() {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        s => s.parse::<i64>().map(Value::Int).unwrap_or(Value::BigInt(s.len())),
                    };
                    self.push(v)?
                }
                b'F' => {
                    let v = ascii_line(self.r.line()?)?.parse::<f64>().or_else(|_| err("malformed FLOAT"))?;
                    self.push(Value::Float(v))?
                }
                0x8c => {
                    let n = self.r.u8()? as usize;
                    let s = utf8(self.r.take(n)?)?;
                    self.push(Value::Str(s))?
                }
                b'X' => {
                    let n = self.r.len_u32()?;
                    let s = utf8(self.r.take(n)?)?;
                    self.push(Value::Str(s))?
                }
                0x8d => {
                    let n = self.r.len_u64()?;
                    let s = utf8(self.r.take(n)?)?;
                    self.push(Value::Str(s))?
                }
                b'V' => {
                    // raw-unicode-escape: our keys are ASCII; other text is kept lossily.
                    let s = String::from_utf8_lossy(self.r.line()?).into_owned();
                    self.push(Value::Str(s))?
                }
                b'S' => {
                    let n = self.r.line()?.len();
                    self.push(Value::Bytes(n))?
                }
                b'U' | b'C' => {
                    let n = self.r.u8()? as usize;
                    self.r.take(n)?;
                    self.push(Value::Bytes(n))?
                }
                b'T' | b'B' => {
                    let n = self.r.len_u32()?;
                    self.r.take(n)?;
                    self.push(Value::Bytes(n))?
                }
                0x8e | 0x96 => {
                    let n = self.r.len_u64()?;
                    self.r.take(n)?;
                    self.push(Value::Bytes(n))?
                }
                b')' => self.push(Value::Tuple(Vec::new()))?,
                b']' => self.push(Value::List(Vec::new()))?,
                b'}' => self.push(Value::Dict(Vec::new()))?,
                0x8f => self.push(Value::Set(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items))?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let floor = self.marks.last().copied().unwrap_or(0);
                    if self.stack.len() < floor + n {
                        return err("stack underflow");
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push(Value::Tuple(items))?
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(items))?
                }
                b'd' => {
                    let kv = self.pop_mark()?;
                    if kv.len() % 2 != 0 {
                        return err("DICT with an odd number of items");
                    }
                    self.push(Value::Dict(kv.chunks_exact(2).map(|c| (c[0], c[1])).collect()))?
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Value::Set(items))?
                }
                b'a' => {
                    let v = self.pop()?;
                    let target = self.top()?;
                    self.append(target, vec![v])?
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    self.append(target, items)?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let target = self.top()?;
                    self.set_items(target, vec![k, v])?
                }
                b'u' => {
                    let kv = self.pop_mark()?;
                    let target = self.top()?;
                    self.set_items(target, kv)?
                }
                b'c' => {
                    let module = utf8(self.r.line()?)?;
                    let name = utf8(self.r.line()?)?;
                    self.global(module, name)?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(m), Some(n)) = (self.as_str(module), self.as_str(name)) else {
                        return err("STACK_GLOBAL needs two strings");
                    };
                    let (m, n) = (m.to_string(), n.to_string());
                    self.global(m, n)?
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.call(callable, args)?
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.call(callable, args)?
                }
                b'i' => {
                    let module = utf8(self.r.line()?)?;
                    let name = utf8(self.r.line()?)?;
                    let args = self.pop_mark()?;
                    self.global(module, name)?;
                    let callable = self.pop()?;
                    self.push(Value::Tuple(args))?;
                    let args = self.pop()?;
                    self.call(callable, args)?
                }
                b'o' => {
                    let mut items = self.pop_mark()?;
                    if items.is_empty() {
                        return err("OBJ without a class");
                    }
                    let callable = items.remove(0);
                    self.push(Value::Tuple(items))?;
                    let args = self.pop()?;
                    self.call(callable, args)?
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top()?;
                    match self.node_mut(target) {
                        Value::Call(c) => c.state = Some(state),
                        // Attributes set on a plain container (OrderedDict `_metadata`): not
                        // items, so not kept.
                        Value::Dict(_) | Value::List(_) | Value::Set(_) => {}
                        _ => return err("BUILD on something that is not an object"),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.push(Value::PersistentId(pid))?
                }
                b'P' => {
                    let s = utf8(self.r.line()?)?;
                    self.push(Value::Str(s))?;
                    let pid = self.pop()?;
                    self.push(Value::PersistentId(pid))?
                }
                b'h' => {
                    let k = self.r.u8()? as u32;
                    self.memo_get(k)?
                }
                b'j' => {
                    let k = u32::from_le_bytes(self.r.le::<4>()?);
                    self.memo_get(k)?
                }
                b'g' => {
                    let k = ascii_line(self.r.line()?)?.parse::<u32>().or_else(|_| err("malformed GET"))?;
                    self.memo_get(k)?
                }
                b'q' => {
                    let k = self.r.u8()? as u32;
                    self.memo_put(k)?
                }
                b'r' => {
                    let k = u32::from_le_bytes(self.r.le::<4>()?);
                    self.memo_put(k)?
                }
                b'p' => {
                    let k = ascii_line(self.r.line()?)?.parse::<u32>().or_else(|_| err("malformed PUT"))?;
                    self.memo_put(k)?
                }
                0x94 => {
                    let k = u32::try_from(self.memo.len()).or_else(|_| err("memo too large"))?;
                    self.memo_put(k)?
                }
                0x82..=0x84 => return err("pickle uses the copyreg extension registry (not written by PyTorch)"),
                0x97 | 0x98 => return err("pickle uses out-of-band buffers (not written by PyTorch)"),
                other => return err(format!("unknown pickle opcode 0x{other:02x} at offset {}", self.r.pos - 1)),
            }
        }
    }

    fn as_str(&self, id: Id) -> Option<&str> {
        match &self.nodes[id as usize] {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long1_sign_and_width() {
        assert_eq!(long_value(&[0xff]), Value::Int(-1));
        assert_eq!(long_value(&[0x00, 0x01]), Value::Int(256));
        assert_eq!(long_value(&[0xff; 9]), Value::Int(-1));
        assert_eq!(long_value(&[0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]), Value::BigInt(10));
    }

    #[test]
    fn memo_reuse_is_linear() {
        // ]q\x00 then 40 × (h\x00 h\x00 \x86 q\x00): each step pairs the memo entry with itself.
        let mut p = vec![0x80, 2, b']', b'q', 0];
        for _ in 0..40 {
            p.extend_from_slice(&[b'h', 0, b'h', 0, 0x86, b'q', 0]);
        }
        p.push(b'.');
        let (pk, used) = Pickle::parse(&p).unwrap();
        assert_eq!(used, p.len());
        assert!(pk.nodes.len() < 50);
        // A walk over it runs out of budget instead of visiting 2^40 nodes.
        fn walk(pk: &Pickle, id: Id, depth: usize, b: &mut Budget) -> Result<(), PickleError> {
            b.visit(depth)?;
            if let Some(s) = pk.seq(id) {
                for c in s {
                    walk(pk, *c, depth + 1, b)?;
                }
            }
            Ok(())
        }
        let mut b = Budget::for_pickle(&pk);
        b.max_depth = 100;
        assert!(walk(&pk, pk.root, 0, &mut b).unwrap_err().0.contains("memo bomb"));
    }

    #[test]
    fn nodes_stay_small() {
        assert_eq!(std::mem::size_of::<Value>(), 32);
    }

    #[test]
    fn lengths_are_checked_before_allocating() {
        let p = [0x80, 2, b'X', 0xff, 0xff, 0xff, 0xff, b'a'];
        assert!(Pickle::parse(&p).unwrap_err().0.contains("ends early"));
    }

    #[test]
    fn deep_nesting_parses_without_recursion() {
        let mut p = vec![0x80, 2];
        p.extend(std::iter::repeat_n(b']', 1_000_000));
        p.extend(std::iter::repeat_n(b'a', 999_999));
        p.push(b'.');
        let (pk, _) = Pickle::parse(&p).unwrap();
        assert_eq!(pk.nodes.len(), 1_000_000);
        // One node past the cap is refused.
        let mut p = vec![0x80, 2];
        p.extend(std::iter::repeat_n(b'N', MAX_NODES + 1));
        assert!(Pickle::parse(&p).unwrap_err().0.contains("more than"));
    }
}
