//! __NAME__: a periodic task. Every node runs its own timer (`tick`, every TICK_INTERVAL_MS)
//! and counts its ticks under `__NAME__:ticks:NODE_ID`; `__CAMEL__Status` reports the counts.

use aspen_wasm_guest_sdk::prelude::*;

pub const NAME: &str = "__NAME__";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const TICKS_PREFIX: &str = "__NAME__:ticks:";
pub const TICK_INTERVAL_MS: u64 = 1_000;
/// CAS retries before a tick gives up (another writer of the same key is the only cause).
pub const CAS_RETRIES_MAX: u32 = 16;

pub struct Plugin;

/// Pure logic, testable with `cargo test`: the count after one more tick.
pub fn next_count(current: Option<&[u8]>) -> u64 {
    current
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .and_then(|text| text.parse::<u64>().ok())
        .unwrap_or(0)
        .saturating_add(1)
}

fn tick() -> Result<(), String> {
    let key = format!("{}{}", TICKS_PREFIX, get_node_id());
    for _ in 0..CAS_RETRIES_MAX {
        let current = kv_get_value(&key).map_err(|e| e.to_string())?;
        let next = next_count(current.as_deref()).to_string();
        match kv_compare_and_swap(&key, current.as_deref(), next.as_bytes()) {
            Ok(()) => return Ok(()),
            Err(CasError::Conflict { .. }) => continue,
            Err(CasError::Host(e)) => return Err(e.to_string()),
        }
    }
    Err(format!("{}: gave up after {} conflicting updates", key, CAS_RETRIES_MAX))
}

impl AspenPlugin for Plugin {
    fn info() -> PluginInfo {
        PluginInfo::new(NAME, VERSION).description("Periodic scheduled task")
    }

    fn init() -> Result<(), String> {
        schedule_timer_on_host(&TimerConfig::repeating("tick", TICK_INTERVAL_MS)).map_err(|e| e.to_string())
    }

    fn on_timer(name: &str) {
        if name == "tick" {
            if let Err(e) = tick() {
                log_warn_msg(&format!("tick failed: {}", e));
            }
        }
    }

    fn handle(request: ClientRpcRequest) -> ClientRpcResponse {
        match request {
            ClientRpcRequest::Other(r) if r.type_name == "__CAMEL__Status" => match kv_scan_prefix(TICKS_PREFIX, 0) {
                Ok(entries) => {
                    let nodes = entries
                        .into_iter()
                        .map(|(key, value)| {
                            Value::map(vec![
                                ("node", Value::from(&key[TICKS_PREFIX.len()..])),
                                ("ticks", Value::from(String::from_utf8_lossy(&value).into_owned())),
                            ])
                        })
                        .collect();
                    ClientRpcResponse::Custom(Response::new("__CAMEL__StatusResult").with("nodes", Value::Array(nodes)))
                }
                Err(e) => ClientRpcResponse::Error(error_response("READ_FAILED", &e)),
            },
            other => ClientRpcResponse::unhandled(NAME, &other),
        }
    }
}

register_plugin!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_info_matches_manifest() {
        aspen_wasm_guest_sdk::check_info_matches_manifest(&Plugin::info(), include_str!("../plugin.json")).unwrap();
    }

    #[test]
    fn counts_up_from_nothing_or_garbage() {
        assert_eq!(next_count(None), 1);
        assert_eq!(next_count(Some(b"41")), 42);
        assert_eq!(next_count(Some(b"junk")), 1);
    }
}
