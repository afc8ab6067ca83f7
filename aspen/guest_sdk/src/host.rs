//! The host functions of ABI v2 (docs/HOST_ABI.md), as safe wrappers. Only `sha256_digest` is
//! new in v2: a plugin that calls it needs a v2 node, one that does not runs on v1 nodes too.
//!
//! Every data-returning import answers a tagged msgpack array: `[0, value]` ok, `[1]` not
//! found, `[2, code, message]` error; these wrappers turn it into `Result`/`Option`. A denied
//! permission or a key outside the plugin's `kv_prefixes` is an `Err(HostError)`, never a trap.
//!
//! Outside WebAssembly (`cargo test` on the build machine) there is no host: the data
//! functions answer `Err` with code `NO_HOST`, logging goes to stderr and the clocks read the
//! system clock, so plugin logic stays testable natively. To run a built plugin against real
//! host functions without a cluster, use the Python test kit (`aspen.testing`).

use std::fmt;

use crate::msgpack::Value;
use crate::types::{HookEvent, KvBatchOp, TimerConfig};

/// An error the host reported (or the SDK found in the host's answer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostError {
    pub code: String,
    pub message: String,
}

impl HostError {
    pub fn new(code: &str, message: impl fmt::Display) -> HostError {
        HostError { code: code.to_string(), message: message.to_string() }
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for HostError {}

pub type HostResult<T> = Result<T, HostError>;

/// Why a compare-and-swap did not swap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CasError {
    /// The key did not hold the expected value; `actual` is what it holds (None: absent).
    Conflict { actual: Option<Vec<u8>> },
    Host(HostError),
}

impl fmt::Display for CasError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CasError::Conflict { .. } => write!(f, "CAS_FAILED: the value changed"),
            CasError::Host(e) => e.fmt(f),
        }
    }
}

impl From<HostError> for CasError {
    fn from(e: HostError) -> CasError {
        CasError::Host(e)
    }
}

#[cfg(target_arch = "wasm32")]
mod ffi {
    #[link(wasm_import_module = "aspen")]
    extern "C" {
        pub fn kv_get_value(key_ptr: i32, key_len: i32) -> i64;
        pub fn kv_put_value(key_ptr: i32, key_len: i32, value_ptr: i32, value_len: i32) -> i64;
        pub fn kv_delete_key(key_ptr: i32, key_len: i32) -> i64;
        pub fn kv_scan_prefix(prefix_ptr: i32, prefix_len: i32, limit: i32) -> i64;
        pub fn kv_compare_and_swap(k: i32, kl: i32, e: i32, el: i32, n: i32, nl: i32) -> i64;
        pub fn kv_batch_write(ops_ptr: i32, ops_len: i32) -> i64;
        pub fn blob_exists(hash_ptr: i32, hash_len: i32) -> i64;
        pub fn blob_get_data(hash_ptr: i32, hash_len: i32) -> i64;
        pub fn blob_put_data(data_ptr: i32, data_len: i32) -> i64;
        pub fn is_current_leader() -> i64;
        pub fn get_leader_id() -> i64;
        pub fn get_node_id() -> i64;
        pub fn sign_data(data_ptr: i32, data_len: i32) -> i64;
        pub fn verify_signature(k: i32, kl: i32, d: i32, dl: i32, s: i32, sl: i32) -> i64;
        pub fn public_key() -> i64;
        pub fn get_random_bytes(count: i32) -> i64;
        pub fn schedule_timer_on_host(config_ptr: i32, config_len: i32) -> i64;
        pub fn cancel_timer_on_host(name_ptr: i32, name_len: i32) -> i64;
        pub fn subscribe_hook_events(pattern_ptr: i32, pattern_len: i32) -> i64;
        pub fn unsubscribe_hook_events(pattern_ptr: i32, pattern_len: i32) -> i64;
        pub fn log_info_msg(msg_ptr: i32, msg_len: i32);
        pub fn log_debug_msg(msg_ptr: i32, msg_len: i32);
        pub fn log_warn_msg(msg_ptr: i32, msg_len: i32);
        pub fn current_time_ms() -> i64;
        pub fn hlc_now_ms() -> i64;
        pub fn sha256_digest(data_ptr: i32, data_len: i32) -> i64;
    }
}

/// Native stand-ins: there is no host outside the sandbox, and saying so is the honest answer.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::missing_safety_doc)]
mod ffi {
    pub const NO_HOST: i64 = crate::host::NO_HOST;
    macro_rules! absent {
        ($($name:ident($($arg:ident),*);)*) => {
            $(pub unsafe fn $name($($arg: i32),*) -> i64 { $(let _ = $arg;)* NO_HOST })*
        };
    }
    absent! {
        kv_get_value(a, b); kv_put_value(a, b, c, d); kv_delete_key(a, b); kv_scan_prefix(a, b, c);
        kv_compare_and_swap(a, b, c, d, e, f); kv_batch_write(a, b); blob_exists(a, b);
        blob_get_data(a, b); blob_put_data(a, b); is_current_leader(); get_leader_id();
        sign_data(a, b); verify_signature(a, b, c, d, e, f); public_key(); get_random_bytes(a);
        schedule_timer_on_host(a, b); cancel_timer_on_host(a, b); subscribe_hook_events(a, b);
        unsubscribe_hook_events(a, b); sha256_digest(a, b);
    }
    pub unsafe fn get_node_id() -> i64 {
        0
    }
}

/// What a native stand-in import answers (crypto.rs's too).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) const NO_HOST: i64 = -1;

fn ptr(bytes: &[u8]) -> (i32, i32) {
    (bytes.as_ptr() as usize as i32, bytes.len() as i32)
}

/// Read a tagged result: Ok(Some(value)) / Ok(None) for not found / Err.
pub(crate) fn tagged(packed: i64) -> HostResult<Option<Value>> {
    #[cfg(not(target_arch = "wasm32"))]
    if packed == ffi::NO_HOST {
        return Err(HostError::new("NO_HOST", "host functions exist only inside the Aspen sandbox; test with aspen.testing"));
    }
    if packed == 0 {
        return Err(HostError::new("HOST_ERROR", "the host returned no result"));
    }
    let (p, n) = crate::abi::unpack(packed);
    tagged_bytes(unsafe { crate::abi::take(p, n) })
}

fn tagged_bytes(bytes: Vec<u8>) -> HostResult<Option<Value>> {
    let value = Value::decode(&bytes).map_err(|e| HostError::new("HOST_ERROR", e))?;
    let items = match value {
        Value::Array(items) => items,
        _ => return Err(HostError::new("HOST_ERROR", "host result is not a tagged array")),
    };
    let mut items = items.into_iter();
    match items.next() {
        Some(Value::Int(0)) => Ok(Some(items.next().unwrap_or(Value::Nil))),
        Some(Value::Int(1)) => Ok(None),
        Some(Value::Int(2)) => {
            let code = items.next().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            let message = items.next().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            Err(HostError { code, message })
        }
        _ => Err(HostError::new("HOST_ERROR", "host result has an unknown tag")),
    }
}

/// A tagged result whose value is bytes (`[0, bin]`), as `tagged` + `bytes_of`, without
/// decoding it into a `Value`: the host's buffer becomes the result, the 3 to 6 header bytes
/// moved off its front, instead of a copy of every byte into a new one.
pub(crate) fn tagged_bin(packed: i64) -> HostResult<Option<Vec<u8>>> {
    let no_buffer = packed == 0;
    #[cfg(not(target_arch = "wasm32"))]
    let no_buffer = no_buffer || packed == ffi::NO_HOST;
    if no_buffer {
        return tagged(packed)?.map(bytes_of).transpose();
    }
    let (p, n) = crate::abi::unpack(packed);
    let mut bytes = unsafe { crate::abi::take(p, n) };
    if let Some(header) = ok_bin_header(&bytes) {
        bytes.drain(..header);
        return Ok(Some(bytes));
    }
    tagged_bytes(bytes)?.map(bytes_of).transpose()
}

/// The header's length when `bytes` is exactly `[0, bin]` (msgpack: 0x92 0x00 then a bin).
fn ok_bin_header(bytes: &[u8]) -> Option<usize> {
    let header = match bytes.get(..3)? {
        [0x92, 0x00, 0xc4] => 4,
        [0x92, 0x00, 0xc5] => 5,
        [0x92, 0x00, 0xc6] => 7,
        _ => return None,
    };
    let len = bytes.get(3..header)?.iter().fold(0usize, |n, b| (n << 8) | *b as usize);
    (bytes.len() - header == len).then(|| header)
}

pub(crate) fn required_bin(packed: i64) -> HostResult<Vec<u8>> {
    tagged_bin(packed)?.ok_or_else(|| HostError::new("NOT_FOUND", "not found"))
}

pub(crate) fn required(packed: i64) -> HostResult<Value> {
    tagged(packed)?.ok_or_else(|| HostError::new("NOT_FOUND", "not found"))
}

fn shape<T>(what: &str) -> HostResult<T> {
    Err(HostError::new("HOST_ERROR", format!("unexpected {} in host result", what)))
}

pub(crate) fn bool_of(v: Value) -> HostResult<bool> {
    v.as_bool().map_or_else(|| shape("non-bool"), Ok)
}

pub(crate) fn bytes_of(v: Value) -> HostResult<Vec<u8>> {
    match v {
        Value::Bin(b) => Ok(b),
        _ => shape("non-bin"),
    }
}

// -- KV --------------------------------------------------------------------------------------

/// `Ok(Some(bytes))`, `Ok(None)` when the key does not exist, or `Err`.
pub fn kv_get_value(key: &str) -> HostResult<Option<Vec<u8>>> {
    let (k, kl) = ptr(key.as_bytes());
    tagged_bin(unsafe { ffi::kv_get_value(k, kl) })
}

pub fn kv_put_value(key: &str, value: &[u8]) -> HostResult<()> {
    let (k, kl) = ptr(key.as_bytes());
    let (v, vl) = ptr(value);
    required(unsafe { ffi::kv_put_value(k, kl, v, vl) }).map(|_| ())
}

/// `Ok(true)` when the key existed.
pub fn kv_delete_key(key: &str) -> HostResult<bool> {
    let (k, kl) = ptr(key.as_bytes());
    bool_of(required(unsafe { ffi::kv_delete_key(k, kl) })?)
}

/// Keys and values under `prefix`, in key order; `limit` 0 means the default (1,000), at most 10,000.
pub fn kv_scan_prefix(prefix: &str, limit: u32) -> HostResult<Vec<(String, Vec<u8>)>> {
    let (p, pl) = ptr(prefix.as_bytes());
    let items = match required(unsafe { ffi::kv_scan_prefix(p, pl, limit.min(i32::MAX as u32) as i32) })? {
        Value::Array(items) => items,
        _ => return shape("non-array"),
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::Array(mut pair) if pair.len() == 2 => {
                let value = bytes_of(pair.pop().unwrap_or(Value::Nil))?;
                match pair.pop() {
                    Some(Value::Str(key)) => out.push((key, value)),
                    _ => return shape("scan key"),
                }
            }
            _ => return shape("scan entry"),
        }
    }
    Ok(out)
}

/// Set `key` to `new_value` only if it holds `expected` (`None`: only if it does not exist).
pub fn kv_compare_and_swap(key: &str, expected: Option<&[u8]>, new_value: &[u8]) -> Result<(), CasError> {
    let (k, kl) = ptr(key.as_bytes());
    let (e, el) = match expected {
        Some(bytes) => ptr(bytes),
        None => (0, -1),
    };
    let (n, nl) = ptr(new_value);
    let v = required(unsafe { ffi::kv_compare_and_swap(k, kl, e, el, n, nl) })?;
    match v.get("swapped").and_then(Value::as_bool) {
        Some(true) => Ok(()),
        Some(false) => Err(CasError::Conflict {
            actual: match v.get("actual") {
                Some(Value::Bin(b)) => Some(b.clone()),
                _ => None,
            },
        }),
        None => Err(CasError::Host(HostError::new("HOST_ERROR", "CAS result without 'swapped'"))),
    }
}

/// All ops apply or none do (at most 1,000). Returns the op count.
pub fn kv_batch_write(ops: &[KvBatchOp]) -> HostResult<u32> {
    let encoded = Value::Array(
        ops.iter()
            .map(|op| match op {
                KvBatchOp::Set { key, value } => {
                    Value::Array(vec!["set".into(), key.as_str().into(), value.clone().into()])
                }
                KvBatchOp::Delete { key } => Value::Array(vec!["delete".into(), key.as_str().into()]),
            })
            .collect(),
    )
    .encode();
    let (o, ol) = ptr(&encoded);
    let v = required(unsafe { ffi::kv_batch_write(o, ol) })?;
    Ok(v.as_i64().unwrap_or(ops.len() as i64) as u32)
}

// -- Blobs -----------------------------------------------------------------------------------

pub fn blob_exists(hash: &str) -> HostResult<bool> {
    let (h, hl) = ptr(hash.as_bytes());
    bool_of(required(unsafe { ffi::blob_exists(h, hl) })?)
}

pub fn blob_get_data(hash: &str) -> HostResult<Option<Vec<u8>>> {
    let (h, hl) = ptr(hash.as_bytes());
    match tagged(unsafe { ffi::blob_get_data(h, hl) })? {
        Some(v) => bytes_of(v).map(Some),
        None => Ok(None),
    }
}

/// Stores `data`; returns its BLAKE3 hash (64 hex characters).
pub fn blob_put_data(data: &[u8]) -> HostResult<String> {
    let (d, dl) = ptr(data);
    match required(unsafe { ffi::blob_put_data(d, dl) })? {
        Value::Str(s) => Ok(s),
        _ => shape("non-str hash"),
    }
}

// -- Hashing (ABI v2) -------------------------------------------------------------------------

/// SHA-256 of `data` (at most 64 MiB), computed by the node: 1,000 fuel plus 1 per byte,
/// about 160 times less than the same hash compiled into the guest. No permission needed.
pub fn sha256_digest(data: &[u8]) -> HostResult<[u8; 32]> {
    let (d, dl) = ptr(data);
    let bytes = bytes_of(required(unsafe { ffi::sha256_digest(d, dl) })?)?;
    let mut digest = [0u8; 32];
    if bytes.len() != digest.len() {
        return shape("digest length");
    }
    digest.copy_from_slice(&bytes);
    Ok(digest)
}

// -- Cluster ---------------------------------------------------------------------------------

pub fn is_current_leader() -> HostResult<bool> {
    bool_of(required(unsafe { ffi::is_current_leader() })?)
}

/// `Ok(None)` while there is no leader (an election).
pub fn get_leader_id() -> HostResult<Option<u64>> {
    Ok(tagged(unsafe { ffi::get_leader_id() })?.and_then(|v| v.as_i64()).map(|i| i as u64))
}

pub fn get_node_id() -> u64 {
    unsafe { ffi::get_node_id() as u64 }
}

// -- Crypto ----------------------------------------------------------------------------------

/// Ed25519 signature (64 bytes) by the node's key.
pub fn sign_data(data: &[u8]) -> HostResult<Vec<u8>> {
    let (d, dl) = ptr(data);
    bytes_of(required(unsafe { ffi::sign_data(d, dl) })?)
}

/// `public_key`: 32 bytes or 64 hex characters; `signature`: 64 bytes or 128 hex characters.
pub fn verify_signature(public_key: &[u8], data: &[u8], signature: &[u8]) -> HostResult<bool> {
    let (k, kl) = ptr(public_key);
    let (d, dl) = ptr(data);
    let (s, sl) = ptr(signature);
    bool_of(required(unsafe { ffi::verify_signature(k, kl, d, dl, s, sl) })?)
}

/// The node's Ed25519 public key, hex.
pub fn public_key() -> HostResult<String> {
    match required(unsafe { ffi::public_key() })? {
        Value::Str(s) => Ok(s),
        _ => shape("non-str key"),
    }
}

/// 1 to 4,096 cryptographically random bytes.
pub fn get_random_bytes(count: u32) -> HostResult<Vec<u8>> {
    bytes_of(required(unsafe { ffi::get_random_bytes(count.min(i32::MAX as u32) as i32) })?)
}

// -- Timers and hooks ------------------------------------------------------------------------

/// Fires `AspenPlugin::on_timer(name)` every `interval_ms` (1 s to 24 h); at most 16 per plugin.
/// Scheduling a name again replaces it.
pub fn schedule_timer_on_host(config: &TimerConfig) -> HostResult<()> {
    let encoded = Value::map(vec![
        ("name", config.name.as_str().into()),
        ("interval_ms", config.interval_ms.into()),
        ("repeat", config.repeat.into()),
    ])
    .encode();
    let (c, cl) = ptr(&encoded);
    required(unsafe { ffi::schedule_timer_on_host(c, cl) }).map(|_| ())
}

/// `Ok(false)` when no timer has that name.
pub fn cancel_timer_on_host(name: &str) -> HostResult<bool> {
    let (n, nl) = ptr(name.as_bytes());
    Ok(tagged(unsafe { ffi::cancel_timer_on_host(n, nl) })?.is_some())
}

/// NATS-style pattern (`hooks.kv.*`, `hooks.>`), at most 256 characters, 16 per plugin.
pub fn subscribe_hook_events(pattern: &str) -> HostResult<()> {
    let (p, pl) = ptr(pattern.as_bytes());
    required(unsafe { ffi::subscribe_hook_events(p, pl) }).map(|_| ())
}

/// `Ok(false)` when the plugin was not subscribed to that pattern.
pub fn unsubscribe_hook_events(pattern: &str) -> HostResult<bool> {
    let (p, pl) = ptr(pattern.as_bytes());
    Ok(tagged(unsafe { ffi::unsubscribe_hook_events(p, pl) })?.is_some())
}

/// Turn an event payload into a `HookEvent` (used by the generated export).
pub fn decode_event(bytes: &[u8]) -> Result<HookEvent, String> {
    HookEvent::from_value(Value::decode(bytes).map_err(|e| e.to_string())?)
}

// -- Logging and time ------------------------------------------------------------------------

#[cfg(target_arch = "wasm32")]
pub fn log_info_msg(msg: &str) {
    let (m, ml) = ptr(msg.as_bytes());
    unsafe { ffi::log_info_msg(m, ml) }
}

#[cfg(target_arch = "wasm32")]
pub fn log_debug_msg(msg: &str) {
    let (m, ml) = ptr(msg.as_bytes());
    unsafe { ffi::log_debug_msg(m, ml) }
}

#[cfg(target_arch = "wasm32")]
pub fn log_warn_msg(msg: &str) {
    let (m, ml) = ptr(msg.as_bytes());
    unsafe { ffi::log_warn_msg(m, ml) }
}

#[cfg(target_arch = "wasm32")]
pub fn current_time_ms() -> u64 {
    unsafe { ffi::current_time_ms() as u64 }
}

#[cfg(target_arch = "wasm32")]
pub fn hlc_now_ms() -> u64 {
    unsafe { ffi::hlc_now_ms() as u64 }
}

#[cfg(not(target_arch = "wasm32"))]
pub fn log_info_msg(msg: &str) {
    eprintln!("[info] {}", msg);
}

#[cfg(not(target_arch = "wasm32"))]
pub fn log_debug_msg(msg: &str) {
    eprintln!("[debug] {}", msg);
}

#[cfg(not(target_arch = "wasm32"))]
pub fn log_warn_msg(msg: &str) {
    eprintln!("[warn] {}", msg);
}

#[cfg(not(target_arch = "wasm32"))]
pub fn current_time_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(not(target_arch = "wasm32"))]
pub fn hlc_now_ms() -> u64 {
    current_time_ms()
}

#[cfg(test)]
mod bin_result_tests {
    use super::*;

    #[test]
    fn ok_bin_headers() {
        for n in [0usize, 1, 255, 256, 65535, 65536] {
            let bytes = Value::Array(vec![Value::Int(0), Value::Bin(vec![9; n])]).encode();
            let header = ok_bin_header(&bytes).unwrap();
            assert_eq!(&bytes[header..], &vec![9u8; n][..]);
        }
        assert_eq!(ok_bin_header(&Value::Array(vec![Value::Int(1)]).encode()), None);
        assert_eq!(ok_bin_header(&Value::Array(vec![Value::Int(0), Value::from("s")]).encode()), None);
        assert_eq!(ok_bin_header(&[0x92, 0x00, 0xc4, 5, 1, 2]), None); // shorter than it says
        assert_eq!(ok_bin_header(&[0x92, 0x00, 0xc4, 1, 1, 2]), None); // trailing bytes
        assert_eq!(ok_bin_header(&[0x92, 0x00, 0xc5, 0]), None); // truncated length
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natively_there_is_no_host() {
        assert_eq!(kv_get_value("a").unwrap_err().code, "NO_HOST");
        assert_eq!(sha256_digest(b"abc").unwrap_err().code, "NO_HOST");
        assert!(matches!(kv_compare_and_swap("a", None, b"1"), Err(CasError::Host(_))));
        assert!(current_time_ms() > 1_600_000_000_000);
    }
}
