//! The plugin's namespace, every value sealed by the node's barrier and bound to its KV key
//! (so a sealed value copied under another key does not open). Records are msgpack maps.

use aspen_wasm_guest_sdk::crypto::{barrier_open, barrier_seal};
use aspen_wasm_guest_sdk::prelude::*;

use crate::{fail, Out};

pub const PREFIX: &str = "secrets:";
/// The most keys one scan reads (the host's maximum).
pub const SCAN_MAX: u32 = 10_000;

pub fn key(parts: &[&str]) -> String {
    let mut k = String::from(PREFIX);
    for p in parts {
        k.push_str(p);
    }
    k
}

/// A stored record: its sealed bytes (for a compare-and-swap) and its value.
pub struct Stored {
    pub raw: Vec<u8>,
    pub value: Value,
}

pub fn open(k: &str, raw: &[u8]) -> Out<Value> {
    let plain = barrier_open(k.as_bytes(), raw)?;
    Value::decode(&plain).or_else(|e| fail("CORRUPT", format!("{}: {}", k, e)))
}

pub fn get(k: &str) -> Out<Option<Stored>> {
    match kv_get_value(k)? {
        None => Ok(None),
        Some(raw) => {
            let value = open(k, &raw)?;
            Ok(Some(Stored { raw, value }))
        }
    }
}

pub fn seal(k: &str, value: &Value) -> Out<Vec<u8>> {
    Ok(barrier_seal(k.as_bytes(), &value.encode())?)
}

pub fn put(k: &str, value: &Value) -> Out<()> {
    let sealed = seal(k, value)?;
    Ok(kv_put_value(k, &sealed)?)
}

/// Swap `k` from `expected` (None: absent) to `value`; Ok(false) when it changed meanwhile.
pub fn cas(k: &str, expected: Option<&[u8]>, value: &Value) -> Out<bool> {
    let sealed = seal(k, value)?;
    match kv_compare_and_swap(k, expected, &sealed) {
        Ok(()) => Ok(true),
        Err(CasError::Conflict { .. }) => Ok(false),
        Err(CasError::Host(e)) => Err(e.into()),
    }
}

pub fn delete(k: &str) -> Out<bool> {
    Ok(kv_delete_key(k)?)
}

/// Keys under `prefix`, in order, at most SCAN_MAX.
pub fn keys(prefix: &str) -> Out<Vec<String>> {
    Ok(kv_scan_prefix(prefix, SCAN_MAX)?.into_iter().map(|(k, _)| k).collect())
}

/// Delete these keys, atomically, in batches of at most 1,000 (the host's bound).
pub fn delete_all(keys: &[String]) -> Out<()> {
    for chunk in keys.chunks(1000) {
        let ops: Vec<KvBatchOp> = chunk.iter().map(|k| KvBatchOp::Delete { key: k.clone() }).collect();
        kv_batch_write(&ops)?;
    }
    Ok(())
}

// -- record fields -----------------------------------------------------------------------------

pub fn int(v: &Value, name: &str) -> i64 {
    v.get(name).and_then(Value::as_i64).unwrap_or(0)
}

pub fn flag(v: &Value, name: &str) -> bool {
    v.get(name).and_then(Value::as_bool).unwrap_or(false)
}

pub fn text<'a>(v: &'a Value, name: &str) -> &'a str {
    v.get(name).and_then(Value::as_str).unwrap_or("")
}

pub fn bin(v: &Value, name: &str) -> Vec<u8> {
    match v.get(name) {
        Some(Value::Bin(b)) => b.clone(),
        _ => Vec::new(),
    }
}

/// Hex of bytes (for data-key ids).
pub fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}
