//! __NAME__: an event-driven audit logger. It subscribes to `hooks.kv.*` and keeps the last
//! committed KV change under `__NAME__:last_event` ("REVISION SUBJECT KEY"), and the number of
//! changes it has seen on each node under `__NAME__:seen:NODE_ID`. `__CAMEL__Stats` reports both.
//!
//! Its own writes never come back to it as events (the node drops a plugin's own changes), so
//! recording an event cannot loop.

use aspen_wasm_guest_sdk::prelude::*;

pub const NAME: &str = "__NAME__";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const LAST_KEY: &str = "__NAME__:last_event";
pub const SEEN_PREFIX: &str = "__NAME__:seen:";
pub const PATTERN: &str = "hooks.kv.*";

pub struct Plugin;

/// Pure logic, testable with `cargo test`: the record for one event.
pub fn record(revision: i64, subject: &str, key: Option<&str>) -> String {
    format!("{} {} {}", revision, subject, key.unwrap_or("-"))
}

fn bump(key: &str) -> Result<(), String> {
    let current = kv_get_value(key).map_err(|e| e.to_string())?;
    let n = current.as_deref().and_then(|b| std::str::from_utf8(b).ok()).and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
    // Only this node's plugin writes this key, one event at a time: a plain put is enough.
    kv_put_value(key, (n + 1).to_string().as_bytes()).map_err(|e| e.to_string())
}

impl AspenPlugin for Plugin {
    fn info() -> PluginInfo {
        PluginInfo::new(NAME, VERSION).description("Event-driven audit logger")
    }

    fn init() -> Result<(), String> {
        subscribe_hook_events(PATTERN).map_err(|e| e.to_string())
    }

    fn on_hook_event(event: &HookEvent) {
        let line = record(event.revision, &event.subject, event.key.as_deref());
        let result = kv_put_value(LAST_KEY, line.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|_| bump(&format!("{}{}", SEEN_PREFIX, get_node_id())));
        if let Err(e) = result {
            log_warn_msg(&format!("could not record {}: {}", line, e));
        }
    }

    fn handle(request: ClientRpcRequest) -> ClientRpcResponse {
        match request {
            ClientRpcRequest::Other(r) if r.type_name == "__CAMEL__Stats" => {
                let last = match kv_get_value(LAST_KEY) {
                    Ok(v) => v.map(|b| String::from_utf8_lossy(&b).into_owned()),
                    Err(e) => return ClientRpcResponse::Error(error_response("READ_FAILED", &e)),
                };
                let seen = match kv_scan_prefix(SEEN_PREFIX, 0) {
                    Ok(entries) => entries
                        .into_iter()
                        .map(|(k, v)| {
                            Value::map(vec![
                                ("node", Value::from(&k[SEEN_PREFIX.len()..])),
                                ("events", Value::from(String::from_utf8_lossy(&v).into_owned())),
                            ])
                        })
                        .collect(),
                    Err(e) => return ClientRpcResponse::Error(error_response("READ_FAILED", &e)),
                };
                ClientRpcResponse::Custom(
                    Response::new("__CAMEL__StatsResult").with("last_event", last).with("seen", Value::Array(seen)),
                )
            }
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
    fn records_name_the_change() {
        assert_eq!(record(7, "hooks.kv.write_committed", Some("a")), "7 hooks.kv.write_committed a");
        assert_eq!(record(8, "hooks.kv.delete_committed", None), "8 hooks.kv.delete_committed -");
    }
}
