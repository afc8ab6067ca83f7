//! __NAME__: a KV store for keys under `__NAME__:`.
//!
//! The node sends every ReadKey, WriteKey and DeleteKey whose key lies under this plugin's
//! kv_prefixes to the plugin (its namespace), so `aspen-cli kv set __NAME__:a 1` lands here.
//! The plugin validates before it writes: values over VALUE_MAX_BYTES are refused.

use aspen_wasm_guest_sdk::prelude::*;

pub const NAME: &str = "__NAME__";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const PREFIX: &str = "__NAME__:";
pub const VALUE_MAX_BYTES: usize = 64 * 1024;

pub struct Plugin;

/// Pure logic, testable with `cargo test`.
pub fn check_write(key: &str, value: &[u8]) -> Result<(), String> {
    if !key.starts_with(PREFIX) || key.len() == PREFIX.len() {
        return Err(format!("key must be {}NAME", PREFIX));
    }
    if value.len() > VALUE_MAX_BYTES {
        return Err(format!("value of {} bytes is over {}", value.len(), VALUE_MAX_BYTES));
    }
    Ok(())
}

impl AspenPlugin for Plugin {
    fn info() -> PluginInfo {
        PluginInfo::new(NAME, VERSION).description("KV read/write/delete with namespaced keys")
    }

    fn handle(request: ClientRpcRequest) -> ClientRpcResponse {
        match request {
            ClientRpcRequest::ReadKey { key } => match kv_get_value(&key) {
                Ok(value) => ClientRpcResponse::ReadResult(ReadResultResponse {
                    was_found: value.is_some(),
                    value,
                    error: None,
                }),
                Err(e) => ClientRpcResponse::Error(error_response("READ_FAILED", &e)),
            },
            ClientRpcRequest::WriteKey { key, value } => {
                if let Err(problem) = check_write(&key, &value) {
                    return ClientRpcResponse::error("INVALID_REQUEST", problem);
                }
                match kv_put_value(&key, &value) {
                    Ok(()) => ClientRpcResponse::WriteResult(WriteResultResponse::default()),
                    Err(e) => ClientRpcResponse::Error(error_response("WRITE_FAILED", &e)),
                }
            }
            ClientRpcRequest::DeleteKey { key } => match kv_delete_key(&key) {
                Ok(deleted) => ClientRpcResponse::DeleteResult(DeleteResultResponse { deleted }),
                Err(e) => ClientRpcResponse::Error(error_response("DELETE_FAILED", &e)),
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
    fn writes_are_checked() {
        assert!(check_write("__NAME__:a", b"1").is_ok());
        assert!(check_write("other:a", b"1").is_err());
        assert!(check_write("__NAME__:", b"1").is_err());
        assert!(check_write("__NAME__:a", &vec![0u8; VALUE_MAX_BYTES + 1]).is_err());
    }
}
