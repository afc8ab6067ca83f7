//! kv-counter: counters under `counter:`, safe under concurrent increments from every node.
//!
//! ```text
//! aspen-cli kv set counter:visits increment    # +1, answers the new count
//! aspen-cli kv set counter:visits +5           # +5 (or -5)
//! aspen-cli kv get counter:visits              # the count
//! aspen-cli kv delete counter:visits           # back to nothing
//! ```
//!
//! The node routes every KV request for a key under `counter:` to this plugin (its namespace).
//! An increment reads the count and writes it back with a compare-and-swap; when another
//! increment won the race, the CAS answers the value it found and the loop retries from that,
//! at most CAS_RETRIES_MAX times. No increment is lost and none is applied twice.

use aspen_wasm_guest_sdk::prelude::*;

pub const NAME: &str = "kv-counter";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const CAS_RETRIES_MAX: u32 = 64;

pub struct Counter;

/// What a write asks for: the amount to add.
pub fn parse_delta(value: &[u8]) -> Result<i64, String> {
    let text = std::str::from_utf8(value).map_err(|_| "the value must be text".to_string())?.trim();
    if text == "increment" {
        return Ok(1);
    }
    if text == "decrement" {
        return Ok(-1);
    }
    if text.starts_with('+') || text.starts_with('-') {
        if let Ok(delta) = text.parse::<i64>() {
            return Ok(delta);
        }
    }
    Err(format!("write 'increment', 'decrement', +N or -N, not {:?}", text))
}

/// The stored count (absent: 0).
pub fn parse_count(stored: Option<&[u8]>) -> Result<i64, String> {
    match stored {
        None => Ok(0),
        Some(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or_else(|| "the stored count is not a number".to_string()),
    }
}

fn add(key: &str, delta: i64) -> ClientRpcResponse {
    let mut current = match kv_get_value(key) {
        Ok(v) => v,
        Err(e) => return ClientRpcResponse::Error(error_response("READ_FAILED", &e)),
    };
    for _ in 0..CAS_RETRIES_MAX {
        let count = match parse_count(current.as_deref()) {
            Ok(c) => c,
            Err(problem) => return ClientRpcResponse::error("CORRUPT_COUNTER", problem),
        };
        let next = match count.checked_add(delta) {
            Some(n) => n.to_string(),
            None => return ClientRpcResponse::error("OVERFLOW", "the count would overflow"),
        };
        match kv_compare_and_swap(key, current.as_deref(), next.as_bytes()) {
            Ok(()) => {
                return ClientRpcResponse::WriteResult(WriteResultResponse { value: Some(next.into_bytes()) })
            }
            Err(CasError::Conflict { actual }) => current = actual, // lost a race: retry from what won
            Err(CasError::Host(e)) => return ClientRpcResponse::Error(error_response("WRITE_FAILED", &e)),
        }
    }
    // Nothing was written: the caller may retry safely.
    ClientRpcResponse::error("CONFLICT", format!("{} conflicting updates in a row; nothing changed", CAS_RETRIES_MAX))
}

impl AspenPlugin for Counter {
    fn info() -> PluginInfo {
        PluginInfo::new(NAME, VERSION).description("CAS-based atomic increment")
    }

    fn handle(request: ClientRpcRequest) -> ClientRpcResponse {
        match request {
            ClientRpcRequest::WriteKey { key, value } => match parse_delta(&value) {
                Ok(delta) => add(&key, delta),
                Err(problem) => ClientRpcResponse::error("INVALID_REQUEST", problem),
            },
            ClientRpcRequest::ReadKey { key } => match kv_get_value(&key) {
                Ok(value) => ClientRpcResponse::ReadResult(ReadResultResponse {
                    was_found: value.is_some(),
                    value,
                    error: None,
                }),
                Err(e) => ClientRpcResponse::Error(error_response("READ_FAILED", &e)),
            },
            ClientRpcRequest::DeleteKey { key } => match kv_delete_key(&key) {
                Ok(deleted) => ClientRpcResponse::DeleteResult(DeleteResultResponse { deleted }),
                Err(e) => ClientRpcResponse::Error(error_response("DELETE_FAILED", &e)),
            },
            other => ClientRpcResponse::unhandled(NAME, &other),
        }
    }
}

register_plugin!(Counter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_info_matches_manifest() {
        aspen_wasm_guest_sdk::check_info_matches_manifest(&Counter::info(), include_str!("../plugin.json")).unwrap();
    }

    #[test]
    fn deltas() {
        assert_eq!(parse_delta(b"increment"), Ok(1));
        assert_eq!(parse_delta(b"decrement"), Ok(-1));
        assert_eq!(parse_delta(b"+5"), Ok(5));
        assert_eq!(parse_delta(b"-7"), Ok(-7));
        assert!(parse_delta(b"5").is_err());
        assert!(parse_delta(b"lots").is_err());
        assert!(parse_delta(&[0xff]).is_err());
    }

    #[test]
    fn counts() {
        assert_eq!(parse_count(None), Ok(0));
        assert_eq!(parse_count(Some(b"41")), Ok(41));
        assert!(parse_count(Some(b"x")).is_err());
    }
}
