//! __NAME__: answers `__CAMEL__Ping` with `__CAMEL__Pong`.
//!
//! `Ping` itself is the node's own request, answered before any plugin, so this plugin's ping
//! has a type of its own. The reply carries the text stored under `__NAME__:greeting` (a KV
//! read), or "pong".

use aspen_wasm_guest_sdk::prelude::*;

pub const NAME: &str = "__NAME__";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const GREETING_KEY: &str = "__NAME__:greeting";

pub struct Plugin;

/// Pure logic, testable with `cargo test`: the reply text.
pub fn pong_message(greeting: Option<Vec<u8>>) -> String {
    match greeting {
        Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        None => "pong".to_string(),
    }
}

impl AspenPlugin for Plugin {
    fn info() -> PluginInfo {
        PluginInfo::new(NAME, VERSION).description("Ping -> Pong handler")
    }

    fn handle(request: ClientRpcRequest) -> ClientRpcResponse {
        match request {
            ClientRpcRequest::Other(r) if r.type_name == "__CAMEL__Ping" => match kv_get_value(GREETING_KEY) {
                Ok(greeting) => ClientRpcResponse::Custom(
                    Response::new("__CAMEL__Pong")
                        .with("message", pong_message(greeting))
                        .with("node_id", get_node_id()),
                ),
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
    fn pong_message_uses_the_greeting() {
        assert_eq!(pong_message(None), "pong");
        assert_eq!(pong_message(Some(b"hello".to_vec())), "hello");
    }
}
