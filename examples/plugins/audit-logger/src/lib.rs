//! audit-logger: records every committed KV change (`hooks.kv.*`) exactly once, in a ring of
//! CAPACITY records, so its storage stays bounded however long the cluster runs.
//!
//! Every node delivers each event to its own copy of the plugin. The record of revision R goes
//! to slot `audit:log:{R % CAPACITY}` and holds R, so all nodes write the same record to the
//! same slot: a compare-and-swap that only replaces an older revision makes the first writer
//! win, the others find it there and do nothing, and a late event never overwrites a newer one.
//!
//! Its own writes are never delivered back to it (the node drops a plugin's own changes), so
//! recording cannot loop. `AuditStats` answers how many records the ring holds and the newest.

use aspen_wasm_guest_sdk::prelude::*;

pub const NAME: &str = "audit-logger";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const LOG_PREFIX: &str = "audit:log:";
pub const CAPACITY: i64 = 1024;
pub const PATTERN: &str = "hooks.kv.*";
pub const CAS_RETRIES_MAX: u32 = 8;

pub struct Audit;

pub fn slot_key(revision: i64) -> String {
    format!("{}{:04}", LOG_PREFIX, revision.rem_euclid(CAPACITY))
}

/// "REVISION SUBJECT KEY", the revision zero-padded so records sort by it.
pub fn record(revision: i64, subject: &str, key: Option<&str>) -> String {
    format!("{:020} {} {}", revision, subject, key.unwrap_or("-"))
}

pub fn record_revision(stored: &[u8]) -> Option<i64> {
    std::str::from_utf8(stored).ok()?.split(' ').next()?.parse().ok()
}

fn store(event: &HookEvent) -> Result<(), String> {
    let key = slot_key(event.revision);
    let line = record(event.revision, &event.subject, event.key.as_deref());
    let mut current = kv_get_value(&key).map_err(|e| e.to_string())?;
    for _ in 0..CAS_RETRIES_MAX {
        if let Some(existing) = current.as_deref() {
            if record_revision(existing).map_or(false, |r| r >= event.revision) {
                return Ok(()); // already recorded (by another node), or a newer record owns the slot
            }
        }
        match kv_compare_and_swap(&key, current.as_deref(), line.as_bytes()) {
            Ok(()) => return Ok(()),
            Err(CasError::Conflict { actual }) => current = actual,
            Err(CasError::Host(e)) => return Err(e.to_string()),
        }
    }
    Err(format!("{}: {} conflicting updates", key, CAS_RETRIES_MAX))
}

fn stats() -> ClientRpcResponse {
    match kv_scan_prefix(LOG_PREFIX, CAPACITY as u32) {
        Ok(entries) => {
            let newest = entries.iter().filter_map(|(_, v)| record_revision(v)).max();
            ClientRpcResponse::Custom(
                Response::new("AuditStatsResult")
                    .with("records", entries.len() as u64)
                    .with("capacity", CAPACITY)
                    .with("newest_revision", newest),
            )
        }
        Err(e) => ClientRpcResponse::Error(error_response("READ_FAILED", &e)),
    }
}

impl AspenPlugin for Audit {
    fn info() -> PluginInfo {
        PluginInfo::new(NAME, VERSION).description("Hook subscriptions, event-driven")
    }

    fn init() -> Result<(), String> {
        subscribe_hook_events(PATTERN).map_err(|e| e.to_string())
    }

    fn on_hook_event(event: &HookEvent) {
        if let Err(e) = store(event) {
            log_warn_msg(&format!("revision {} not recorded: {}", event.revision, e));
        }
    }

    fn handle(request: ClientRpcRequest) -> ClientRpcResponse {
        match request {
            ClientRpcRequest::Other(r) if r.type_name == "AuditStats" => stats(),
            other => ClientRpcResponse::unhandled(NAME, &other),
        }
    }
}

register_plugin!(Audit);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_info_matches_manifest() {
        aspen_wasm_guest_sdk::check_info_matches_manifest(&Audit::info(), include_str!("../plugin.json")).unwrap();
    }

    #[test]
    fn records_round_trip_their_revision() {
        let line = record(1234, "hooks.kv.write_committed", Some("a b"));
        assert_eq!(record_revision(line.as_bytes()), Some(1234));
        assert_eq!(slot_key(1234), "audit:log:0210");
        assert_eq!(slot_key(CAPACITY + 1), slot_key(1));
    }
}
