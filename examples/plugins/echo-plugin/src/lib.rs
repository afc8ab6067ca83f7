//! echo-plugin: the smallest useful plugin. `Echo {message, key?}` answers
//! `EchoResult {message, node_id, value?}`; with `key` it also reads that key (under `echo:`).

use aspen_wasm_guest_sdk::prelude::*;

pub const NAME: &str = "echo-plugin";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const MESSAGE_MAX_BYTES: usize = 4096;

pub struct Echo;

pub fn check_message(message: Option<&str>) -> Result<&str, String> {
    match message {
        None => Err("Echo: 'message' must be a string".to_string()),
        Some(m) if m.len() > MESSAGE_MAX_BYTES => Err(format!("Echo: message over {} bytes", MESSAGE_MAX_BYTES)),
        Some(m) => Ok(m),
    }
}

fn echo(request: &Request) -> ClientRpcResponse {
    let message = match check_message(request.str_field("message")) {
        Ok(m) => m,
        Err(problem) => return ClientRpcResponse::error("INVALID_REQUEST", problem),
    };
    let mut response = Response::new("EchoResult").with("message", message).with("node_id", get_node_id());
    if let Some(key) = request.str_field("key") {
        match kv_get_value(key) {
            Ok(value) => response = response.with("value", value),
            Err(e) => return ClientRpcResponse::Error(error_response("READ_FAILED", &e)),
        }
    }
    ClientRpcResponse::Custom(response)
}

impl AspenPlugin for Echo {
    fn info() -> PluginInfo {
        PluginInfo::new(NAME, VERSION).description("Minimal handler, KV read")
    }

    fn handle(request: ClientRpcRequest) -> ClientRpcResponse {
        match request {
            ClientRpcRequest::Other(r) if r.type_name == "Echo" => echo(&r),
            other => ClientRpcResponse::unhandled(NAME, &other),
        }
    }
}

register_plugin!(Echo);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_info_matches_manifest() {
        aspen_wasm_guest_sdk::check_info_matches_manifest(&Echo::info(), include_str!("../plugin.json")).unwrap();
    }

    #[test]
    fn messages_are_checked() {
        assert_eq!(check_message(Some("hi")), Ok("hi"));
        assert!(check_message(None).is_err());
        assert!(check_message(Some(&"x".repeat(MESSAGE_MAX_BYTES + 1))).is_err());
    }
}
