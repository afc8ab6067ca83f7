//! A small, bounded msgpack codec: the ABI's structured values (requests, responses, host
//! results, events) are msgpack, and the SDK has no dependencies.

use std::fmt;

/// Nesting deeper than this is refused when decoding (a hostile or broken input must not
/// exhaust the guest's stack).
pub const DEPTH_MAX: usize = 64;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Nil,
    Bool(bool),
    Int(i64),
    F64(f64),
    Str(String),
    Bin(Vec<u8>),
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "msgpack: {}", self.0)
    }
}

impl Value {
    /// A map with string keys, in the given order.
    pub fn map<K: Into<String>>(entries: Vec<(K, Value)>) -> Value {
        Value::Map(entries.into_iter().map(|(k, v)| (Value::Str(k.into()), v)).collect())
    }

    /// The value under string key `key` of a map.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Bytes of a `bin`, or of a `str` (a JSON client can only send text).
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bin(b) => Some(b),
            Value::Str(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The msgpack bytes, in one allocation of exactly their size: growing the buffer as it
    /// filled reallocated and copied it several times per response (a plugin's allocator and
    /// copies are paid for in fuel and guest time on every call).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// How many bytes `encode` produces.
    pub fn encoded_len(&self) -> usize {
        match self {
            Value::Nil | Value::Bool(_) => 1,
            Value::Int(i) => int_len(*i),
            Value::F64(_) => 9,
            Value::Str(s) => str_head_len(s.len()) + s.len(),
            Value::Bin(b) => bin_head_len(b.len()) + b.len(),
            Value::Array(items) => {
                container_head_len(items.len()) + items.iter().map(Value::encoded_len).sum::<usize>()
            }
            Value::Map(entries) => {
                container_head_len(entries.len())
                    + entries.iter().map(|(k, v)| k.encoded_len() + v.encoded_len()).sum::<usize>()
            }
        }
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Nil => out.push(0xc0),
            Value::Bool(false) => out.push(0xc2),
            Value::Bool(true) => out.push(0xc3),
            Value::Int(i) => encode_int(*i, out),
            Value::F64(f) => {
                out.push(0xcb);
                out.extend_from_slice(&f.to_bits().to_be_bytes());
            }
            Value::Str(s) => {
                let n = s.len();
                if n < 32 {
                    out.push(0xa0 | n as u8);
                } else {
                    head(out, n, [0xd9, 0xda, 0xdb]);
                }
                out.extend_from_slice(s.as_bytes());
            }
            Value::Bin(b) => {
                head(out, b.len(), [0xc4, 0xc5, 0xc6]);
                out.extend_from_slice(b);
            }
            Value::Array(items) => {
                if items.len() < 16 {
                    out.push(0x90 | items.len() as u8);
                } else {
                    head16(out, items.len(), [0xdc, 0xdd]);
                }
                for item in items {
                    item.encode_into(out);
                }
            }
            Value::Map(entries) => {
                if entries.len() < 16 {
                    out.push(0x80 | entries.len() as u8);
                } else {
                    head16(out, entries.len(), [0xde, 0xdf]);
                }
                for (k, v) in entries {
                    k.encode_into(out);
                    v.encode_into(out);
                }
            }
        }
    }

    /// Decode exactly one value; trailing bytes are an error.
    pub fn decode(bytes: &[u8]) -> Result<Value, DecodeError> {
        let mut r = Reader { bytes, pos: 0 };
        let v = r.value(0)?;
        if r.pos != bytes.len() {
            return Err(DecodeError(format!("{} trailing bytes", bytes.len() - r.pos)));
        }
        Ok(v)
    }
}

fn int_len(i: i64) -> usize {
    if (-32..128).contains(&i) {
        1
    } else if (i >= 0 && i < 256) || (i < 0 && i >= i8::MIN as i64) {
        2
    } else if (i >= 0 && i < 65536) || (i < 0 && i >= i16::MIN as i64) {
        3
    } else if (i >= 0 && i <= u32::MAX as i64) || (i < 0 && i >= i32::MIN as i64) {
        5
    } else {
        9
    }
}

fn str_head_len(n: usize) -> usize {
    if n < 32 {
        1
    } else {
        bin_head_len(n)
    }
}

fn bin_head_len(n: usize) -> usize {
    if n < 256 {
        2
    } else if n < 65536 {
        3
    } else {
        5
    }
}

fn container_head_len(n: usize) -> usize {
    if n < 16 {
        1
    } else if n < 65536 {
        3
    } else {
        5
    }
}

/// Writers for a msgpack message built without a `Value` tree (the SDK's host-function
/// arguments: no copy of each byte string into a `Value` first). Same bytes as `encode`.
pub(crate) fn write_map_len(out: &mut Vec<u8>, n: usize) {
    if n < 16 {
        out.push(0x80 | n as u8);
    } else {
        head16(out, n, [0xde, 0xdf]);
    }
}

pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    if s.len() < 32 {
        out.push(0xa0 | s.len() as u8);
    } else {
        head(out, s.len(), [0xd9, 0xda, 0xdb]);
    }
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn write_bin(out: &mut Vec<u8>, b: &[u8]) {
    head(out, b.len(), [0xc4, 0xc5, 0xc6]);
    out.extend_from_slice(b);
}

/// The size `write_str` and `write_bin` take.
pub(crate) fn str_len(s: &str) -> usize {
    str_head_len(s.len()) + s.len()
}

pub(crate) fn bin_len(b: &[u8]) -> usize {
    bin_head_len(b.len()) + b.len()
}

fn head(out: &mut Vec<u8>, n: usize, tags: [u8; 3]) {
    if n < 256 {
        out.push(tags[0]);
        out.push(n as u8);
    } else if n < 65536 {
        out.push(tags[1]);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(tags[2]);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn head16(out: &mut Vec<u8>, n: usize, tags: [u8; 2]) {
    if n < 65536 {
        out.push(tags[0]);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(tags[1]);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn encode_int(i: i64, out: &mut Vec<u8>) {
    if (0..128).contains(&i) {
        out.push(i as u8);
    } else if (-32..0).contains(&i) {
        out.push(i as i8 as u8);
    } else if i >= 0 {
        if i < 256 {
            out.push(0xcc);
            out.push(i as u8);
        } else if i < 65536 {
            out.push(0xcd);
            out.extend_from_slice(&(i as u16).to_be_bytes());
        } else if i <= u32::MAX as i64 {
            out.push(0xce);
            out.extend_from_slice(&(i as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&(i as u64).to_be_bytes());
        }
    } else if i >= i8::MIN as i64 {
        out.push(0xd0);
        out.push(i as i8 as u8);
    } else if i >= i16::MIN as i64 {
        out.push(0xd1);
        out.extend_from_slice(&(i as i16).to_be_bytes());
    } else if i >= i32::MIN as i64 {
        out.push(0xd2);
        out.extend_from_slice(&(i as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&i.to_be_bytes());
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() - self.pos < n {
            return Err(DecodeError(format!("truncated: need {} bytes at offset {}", n, self.pos)));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn be(&mut self, n: usize) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for b in self.take(n)? {
            v = (v << 8) | *b as u64;
        }
        Ok(v)
    }

    fn len(&mut self, n: usize) -> Result<usize, DecodeError> {
        let len = self.be(n)? as usize;
        // Every element takes at least one byte: a count larger than what is left is a lie.
        if len > self.bytes.len() - self.pos {
            return Err(DecodeError(format!("length {} exceeds the {} bytes left", len, self.bytes.len() - self.pos)));
        }
        Ok(len)
    }

    fn string(&mut self, n: usize) -> Result<Value, DecodeError> {
        let raw = self.take(n)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(Value::Str(s.to_string())),
            Err(_) => Err(DecodeError("str is not UTF-8".to_string())),
        }
    }

    fn array(&mut self, n: usize, depth: usize) -> Result<Value, DecodeError> {
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, n: usize, depth: usize) -> Result<Value, DecodeError> {
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let k = self.value(depth + 1)?;
            let v = self.value(depth + 1)?;
            entries.push((k, v));
        }
        Ok(Value::Map(entries))
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > DEPTH_MAX {
            return Err(DecodeError(format!("nested deeper than {}", DEPTH_MAX)));
        }
        let tag = self.byte()?;
        match tag {
            0x00..=0x7f => Ok(Value::Int(tag as i64)),
            0x80..=0x8f => self.map((tag & 0x0f) as usize, depth),
            0x90..=0x9f => self.array((tag & 0x0f) as usize, depth),
            0xa0..=0xbf => self.string((tag & 0x1f) as usize),
            0xc0 => Ok(Value::Nil),
            0xc2 => Ok(Value::Bool(false)),
            0xc3 => Ok(Value::Bool(true)),
            0xc4 | 0xc5 | 0xc6 => {
                let n = self.len(1 << (tag - 0xc4))?;
                Ok(Value::Bin(self.take(n)?.to_vec()))
            }
            0xca => Ok(Value::F64(f32::from_bits(self.be(4)? as u32) as f64)),
            0xcb => Ok(Value::F64(f64::from_bits(self.be(8)?))),
            0xcc | 0xcd | 0xce => Ok(Value::Int(self.be(1 << (tag - 0xcc))? as i64)),
            0xcf => {
                let v = self.be(8)?;
                if v > i64::MAX as u64 {
                    return Err(DecodeError("uint64 above i64::MAX".to_string()));
                }
                Ok(Value::Int(v as i64))
            }
            0xd0 => Ok(Value::Int(self.be(1)? as u8 as i8 as i64)),
            0xd1 => Ok(Value::Int(self.be(2)? as u16 as i16 as i64)),
            0xd2 => Ok(Value::Int(self.be(4)? as u32 as i32 as i64)),
            0xd3 => Ok(Value::Int(self.be(8)? as i64)),
            0xd9 | 0xda | 0xdb => {
                let n = self.len(1 << (tag - 0xd9))?;
                self.string(n)
            }
            0xdc | 0xdd => {
                let n = self.len(if tag == 0xdc { 2 } else { 4 })?;
                self.array(n, depth)
            }
            0xde | 0xdf => {
                let n = self.len(if tag == 0xde { 2 } else { 4 })?;
                self.map(n, depth)
            }
            0xe0..=0xff => Ok(Value::Int(tag as i8 as i64)),
            _ => Err(DecodeError(format!("unsupported type tag 0x{:02x}", tag))),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

impl From<u32> for Value {
    fn from(i: u32) -> Value {
        Value::Int(i as i64)
    }
}

impl From<u64> for Value {
    /// Saturates at i64::MAX (msgpack ints this SDK sends are signed).
    fn from(i: u64) -> Value {
        Value::Int(i.min(i64::MAX as u64) as i64)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Value {
        Value::Bin(b)
    }
}

impl From<&[u8]> for Value {
    fn from(b: &[u8]) -> Value {
        Value::Bin(b.to_vec())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        match v {
            Some(v) => v.into(),
            None => Value::Nil,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(v: Value) {
        let bytes = v.encode();
        assert_eq!(bytes.len(), v.encoded_len(), "{:?}", v);
        assert_eq!(Value::decode(&bytes).unwrap(), v);
    }

    #[test]
    fn writers_match_encode() {
        for n in [0usize, 31, 32, 255, 256, 65536] {
            let (s, b) = ("x".repeat(n), vec![7u8; n]);
            let mut out = Vec::new();
            write_map_len(&mut out, 1);
            write_str(&mut out, &s);
            write_bin(&mut out, &b);
            let v = Value::Map(vec![(Value::Str(s.clone()), Value::Bin(b.clone()))]);
            assert_eq!(out, v.encode());
            assert_eq!(out.len(), 1 + str_len(&s) + bin_len(&b));
        }
    }

    #[test]
    fn round_trips_every_kind_and_width() {
        for i in [0i64, 1, 127, 128, 255, 256, 65535, 65536, u32::MAX as i64, 1 << 32, i64::MAX, -1, -32, -33, -128,
                  -129, -32768, -32769, i32::MIN as i64, i32::MIN as i64 - 1, i64::MIN] {
            round(Value::Int(i));
        }
        for n in [0usize, 31, 32, 255, 256, 65536] {
            round(Value::Str("x".repeat(n)));
            round(Value::Bin(vec![7u8; n]));
        }
        round(Value::Array((0..20).map(Value::Int).collect()));
        round(Value::Map((0..20).map(|i| (Value::Int(i), Value::Nil)).collect()));
        round(Value::map(vec![("type", Value::from("Pong")), ("n", Value::Nil), ("ok", Value::Bool(true))]));
        round(Value::F64(1.5));
    }

    #[test]
    fn refuses_bad_input() {
        assert!(Value::decode(&[0xdc, 0xff, 0xff]).is_err()); // array claims 65535 items, has none
        assert!(Value::decode(&[0xa3, b'a']).is_err()); // truncated str
        assert!(Value::decode(&[0xa1, 0xff]).is_err()); // str not UTF-8
        assert!(Value::decode(&[0xc1]).is_err()); // never-used tag
        assert!(Value::decode(&[0x01, 0x02]).is_err()); // trailing bytes
        assert!(Value::decode(&vec![0x91u8; 100].into_iter().chain([0xc0]).collect::<Vec<_>>()).is_err());
    }
}
