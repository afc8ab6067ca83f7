//! scheduled-cleanup: keys with a time to live.
//!
//! ```text
//! aspen-cli rpc PutWithTtl --data '{"key": "session1", "value": "data", "ttl_ms": 2000}'
//! aspen-cli kv get ttl:data:session1      # until it expires
//! aspen-cli rpc CleanupStats
//! ```
//!
//! A value lives at `ttl:data:KEY`, its expiry time (ms since the epoch) at `ttl:expiry:KEY`;
//! both are written in one atomic batch. Every node runs a `cleanup` timer each second, but only
//! the Raft leader does the work (is_current_leader), so the cluster deletes each key once,
//! whichever node leads. A run deletes at most BATCH_KEYS_MAX expired keys in one batch; each
//! leader run adds to `ttl:stats:NODE_ID`.

use aspen_wasm_guest_sdk::prelude::*;

pub const NAME: &str = "scheduled-cleanup";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const DATA_PREFIX: &str = "ttl:data:";
pub const EXPIRY_PREFIX: &str = "ttl:expiry:";
pub const STATS_PREFIX: &str = "ttl:stats:";
pub const TIMER: &str = "cleanup";
pub const INTERVAL_MS: u64 = 1_000;
pub const TTL_MAX_MS: i64 = 30 * 24 * 3600 * 1000;
/// Two ops per key, and a batch holds at most 1,000 ops.
pub const BATCH_KEYS_MAX: usize = 500;

pub struct Cleanup;

/// The keys whose expiry is at or before `now_ms`, at most BATCH_KEYS_MAX.
pub fn expired(entries: &[(String, Vec<u8>)], now_ms: u64) -> Vec<String> {
    entries
        .iter()
        .filter(|(_, v)| std::str::from_utf8(v).ok().and_then(|t| t.parse::<u64>().ok()).map_or(true, |at| at <= now_ms))
        .map(|(k, _)| k[EXPIRY_PREFIX.len()..].to_string())
        .take(BATCH_KEYS_MAX)
        .collect()
}

fn put_with_ttl(r: &Request) -> ClientRpcResponse {
    let key = match r.str_field("key") {
        Some(k) if !k.is_empty() => k,
        _ => return ClientRpcResponse::error("INVALID_REQUEST", "PutWithTtl: 'key' must be a non-empty string"),
    };
    let value = match r.bytes_field("value") {
        Some(v) => v,
        None => return ClientRpcResponse::error("INVALID_REQUEST", "PutWithTtl: 'value' must be bytes or text"),
    };
    let ttl_ms = match r.int_field("ttl_ms") {
        Some(t) if (1..=TTL_MAX_MS).contains(&t) => t as u64,
        _ => return ClientRpcResponse::error("INVALID_REQUEST", format!("PutWithTtl: 'ttl_ms' must be 1 to {}", TTL_MAX_MS)),
    };
    let expires_at_ms = current_time_ms() + ttl_ms;
    let ops = [
        KvBatchOp::Set { key: format!("{}{}", DATA_PREFIX, key), value: value.to_vec() },
        KvBatchOp::Set { key: format!("{}{}", EXPIRY_PREFIX, key), value: expires_at_ms.to_string().into_bytes() },
    ];
    match kv_batch_write(&ops) {
        Ok(_) => ClientRpcResponse::Custom(
            Response::new("PutWithTtlResult").with("key", format!("{}{}", DATA_PREFIX, key)).with("expires_at_ms", expires_at_ms),
        ),
        Err(e) => ClientRpcResponse::Error(error_response("WRITE_FAILED", &e)),
    }
}

fn add_stats(deleted: usize) -> Result<(), HostError> {
    let key = format!("{}{}", STATS_PREFIX, get_node_id());
    let (runs, total) = match kv_get_value(&key)? {
        Some(v) => {
            let text = String::from_utf8_lossy(&v).into_owned();
            let mut nums = text.split(' ').filter_map(|p| p.split('=').nth(1)).filter_map(|n| n.parse::<u64>().ok());
            (nums.next().unwrap_or(0), nums.next().unwrap_or(0))
        }
        None => (0, 0),
    };
    // Only the leader writes its own stats key, one timer call at a time: a put is enough.
    kv_put_value(&key, format!("runs={} deleted={}", runs + 1, total + deleted as u64).as_bytes())
}

fn run_cleanup() -> Result<usize, HostError> {
    if !is_current_leader()? {
        log_debug_msg("cleanup: not the leader, nothing to do");
        return Ok(0);
    }
    let entries = kv_scan_prefix(EXPIRY_PREFIX, 0)?;
    let keys = expired(&entries, current_time_ms());
    if !keys.is_empty() {
        let mut ops = Vec::with_capacity(keys.len() * 2);
        for k in &keys {
            ops.push(KvBatchOp::Delete { key: format!("{}{}", DATA_PREFIX, k) });
            ops.push(KvBatchOp::Delete { key: format!("{}{}", EXPIRY_PREFIX, k) });
        }
        kv_batch_write(&ops)?;
        log_info_msg(&format!("cleanup on node {}: deleted {} expired keys", get_node_id(), keys.len()));
    }
    add_stats(keys.len())?;
    Ok(keys.len())
}

fn stats() -> ClientRpcResponse {
    match kv_scan_prefix(STATS_PREFIX, 0) {
        Ok(entries) => {
            let nodes = entries
                .into_iter()
                .map(|(k, v)| {
                    Value::map(vec![
                        ("node", Value::from(&k[STATS_PREFIX.len()..])),
                        ("stats", Value::from(String::from_utf8_lossy(&v).into_owned())),
                    ])
                })
                .collect();
            ClientRpcResponse::Custom(Response::new("CleanupStatsResult").with("nodes", Value::Array(nodes)))
        }
        Err(e) => ClientRpcResponse::Error(error_response("READ_FAILED", &e)),
    }
}

impl AspenPlugin for Cleanup {
    fn info() -> PluginInfo {
        PluginInfo::new(NAME, VERSION).description("Timers, batch operations, TTL pattern")
    }

    fn init() -> Result<(), String> {
        schedule_timer_on_host(&TimerConfig::repeating(TIMER, INTERVAL_MS)).map_err(|e| e.to_string())
    }

    fn on_timer(name: &str) {
        if name == TIMER {
            if let Err(e) = run_cleanup() {
                log_warn_msg(&format!("cleanup failed: {}", e));
            }
        }
    }

    fn handle(request: ClientRpcRequest) -> ClientRpcResponse {
        match request {
            ClientRpcRequest::Other(r) if r.type_name == "PutWithTtl" => put_with_ttl(&r),
            ClientRpcRequest::Other(r) if r.type_name == "CleanupStats" => stats(),
            other => ClientRpcResponse::unhandled(NAME, &other),
        }
    }
}

register_plugin!(Cleanup);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_info_matches_manifest() {
        aspen_wasm_guest_sdk::check_info_matches_manifest(&Cleanup::info(), include_str!("../plugin.json")).unwrap();
    }

    #[test]
    fn picks_expired_keys_only() {
        let entries = vec![
            ("ttl:expiry:a".to_string(), b"100".to_vec()),
            ("ttl:expiry:b".to_string(), b"300".to_vec()),
            ("ttl:expiry:c".to_string(), b"garbage".to_vec()),
        ];
        assert_eq!(expired(&entries, 200), vec!["a".to_string(), "c".to_string()]);
    }
}
