//! `aspen-wasm-guest-sdk`: write an Aspen plugin in Rust (ABI v3, docs/HOST_ABI.md).
//!
//! ```ignore
//! use aspen_wasm_guest_sdk::prelude::*;
//!
//! struct Hello;
//!
//! impl AspenPlugin for Hello {
//!     fn info() -> PluginInfo {
//!         PluginInfo::new("hello", "0.1.0")
//!     }
//!     fn handle(request: ClientRpcRequest) -> ClientRpcResponse {
//!         match request {
//!             ClientRpcRequest::Other(r) if r.type_name == "Hello" => {
//!                 ClientRpcResponse::Custom(Response::new("HelloResult").with("node_id", get_node_id()))
//!             }
//!             other => ClientRpcResponse::unhandled("my-plugin", &other),
//!         }
//!     }
//! }
//!
//! register_plugin!(Hello);
//! ```
//!
//! No dependencies; builds with Rust 1.63 and newer for `wasm32-unknown-unknown`, and natively
//! for `cargo test` (where host functions answer `Err(NO_HOST)`).

pub mod abi;
pub mod allocator;
pub mod crypto;
pub mod host;
pub mod json;
pub mod msgpack;
pub mod types;

pub use msgpack::Value;
pub use types::*;

/// A plugin. Only `info` and `handle` are required; state that must survive a restart or be
/// seen by every node belongs in the KV store.
pub trait AspenPlugin {
    /// Name and version: must equal plugin.json's, or the node refuses the install.
    fn info() -> PluginInfo;

    /// Once after load (and on a fresh instance after a trap). `Err` makes the plugin Failed.
    fn init() -> Result<(), String> {
        Ok(())
    }

    fn handle(request: ClientRpcRequest) -> ClientRpcResponse;

    /// Periodic health check. `Err(reason)`: the plugin is Degraded until it passes again.
    fn health() -> Result<(), String> {
        Ok(())
    }

    fn on_timer(_name: &str) {}

    fn on_hook_event(_event: &HookEvent) {}

    fn shutdown() {}
}

pub mod prelude {
    pub use crate::crypto::Aead;
    pub use crate::host::*;
    pub use crate::register_plugin;
    pub use crate::types::*;
    pub use crate::{AspenPlugin, Value};
}

/// The glue `register_plugin!` calls; not for direct use.
#[doc(hidden)]
pub mod rt {
    use crate::abi;
    use crate::msgpack::Value;
    use crate::types::{ClientRpcRequest, ClientRpcResponse};
    use crate::AspenPlugin;

    /// A panic aborts: a trap the node reports as PLUGIN_TRAP. The hook first hands the host the
    /// message as a warn log line beginning "panicked at ": the node makes the last such line of
    /// a call that ends in the abort's `unreachable` trap the caller's error message
    /// (`PLUGIN_TRAP: panicked at src/lib.rs:43:72: index out of bounds: ...`).
    fn panic_to_host() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                let location = info.location().map(|l| (l.file(), l.line(), l.column()));
                crate::host::log_warn_msg(&crate::panic_message(location, info.payload()))
            }));
        });
    }

    fn out(v: Value) -> i64 {
        abi::give(v.encode())
    }

    pub fn info<P: AspenPlugin>() -> i64 {
        panic_to_host();
        out(P::info().to_value())
    }

    pub fn init<P: AspenPlugin>() -> i64 {
        panic_to_host();
        match P::init() {
            Ok(()) => 0,
            Err(message) => out(ClientRpcResponse::error("INIT_FAILED", message).to_value()),
        }
    }

    /// # Safety
    /// `ptr`/`len` come from the host, as ABI v1 says.
    pub unsafe fn handle<P: AspenPlugin>(ptr: i32, len: i32) -> i64 {
        panic_to_host();
        let bytes = abi::take(ptr, len);
        let response = match Value::decode(&bytes) {
            Err(e) => ClientRpcResponse::error("INVALID_REQUEST", e),
            Ok(value) => match ClientRpcRequest::from_value(value) {
                Err(e) => ClientRpcResponse::error("INVALID_REQUEST", e),
                Ok(request) => P::handle(request),
            },
        };
        out(response.into_value())
    }

    pub fn health<P: AspenPlugin>() -> i64 {
        panic_to_host();
        match P::health() {
            Ok(()) => 0,
            Err(message) => out(Value::map(vec![("healthy", false.into()), ("message", message.into())])),
        }
    }

    /// # Safety
    /// As `handle`.
    pub unsafe fn on_timer<P: AspenPlugin>(ptr: i32, len: i32) -> i64 {
        panic_to_host();
        let bytes = abi::take(ptr, len);
        match Value::decode(&bytes) {
            Ok(Value::Str(name)) => P::on_timer(&name),
            _ => crate::host::log_warn_msg("plugin_on_timer: the timer name is not a msgpack str"),
        }
        0
    }

    /// # Safety
    /// As `handle`.
    pub unsafe fn on_hook_event<P: AspenPlugin>(ptr: i32, len: i32) -> i64 {
        panic_to_host();
        let bytes = abi::take(ptr, len);
        match crate::host::decode_event(&bytes) {
            Ok(event) => P::on_hook_event(&event),
            Err(e) => crate::host::log_warn_msg(&format!("plugin_on_hook_event: {}", e)),
        }
        0
    }

    pub fn shutdown<P: AspenPlugin>() -> i64 {
        panic_to_host();
        P::shutdown();
        0
    }
}

/// Generates the plugin's WebAssembly exports (`memory` comes from the compiler). Call it
/// exactly once per plugin crate, with the type that implements [`AspenPlugin`].
#[macro_export]
macro_rules! register_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        pub mod __aspen_plugin_exports {
            #[allow(unused_imports)]
            use super::*;

            #[no_mangle]
            pub extern "C" fn aspen_alloc(len: i32) -> i32 {
                $crate::abi::alloc(len)
            }

            #[no_mangle]
            pub unsafe extern "C" fn aspen_free(ptr: i32, len: i32) {
                $crate::abi::free(ptr, len)
            }

            #[no_mangle]
            pub extern "C" fn plugin_info() -> i64 {
                $crate::rt::info::<$plugin>()
            }

            #[no_mangle]
            pub extern "C" fn plugin_init() -> i64 {
                $crate::rt::init::<$plugin>()
            }

            #[no_mangle]
            pub unsafe extern "C" fn handle_request(ptr: i32, len: i32) -> i64 {
                $crate::rt::handle::<$plugin>(ptr, len)
            }

            #[no_mangle]
            pub extern "C" fn plugin_health() -> i64 {
                $crate::rt::health::<$plugin>()
            }

            #[no_mangle]
            pub unsafe extern "C" fn plugin_on_timer(ptr: i32, len: i32) -> i64 {
                $crate::rt::on_timer::<$plugin>(ptr, len)
            }

            #[no_mangle]
            pub unsafe extern "C" fn plugin_on_hook_event(ptr: i32, len: i32) -> i64 {
                $crate::rt::on_hook_event::<$plugin>(ptr, len)
            }

            #[no_mangle]
            pub extern "C" fn plugin_shutdown() -> i64 {
                $crate::rt::shutdown::<$plugin>()
            }
        }
    };
}

/// The line a panic hands the host: `panicked at FILE:LINE:COL: MESSAGE` (the node looks for the
/// "panicked at " start; docs/HOST_ABI.md). The message is the panic's `&str` or `String`
/// payload, which is what `panic!`, `expect`, indexing and the other std panics carry.
pub fn panic_message(location: Option<(&str, u32, u32)>, payload: &(dyn std::any::Any + Send)) -> String {
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "Box<dyn Any>"
    };
    match location {
        Some((file, line, column)) => format!("panicked at {}:{}:{}: {}", file, line, column, message),
        None => format!("panicked at an unknown location: {}", message),
    }
}

#[cfg(test)]
mod panic_tests {
    use super::panic_message;

    #[test]
    fn panic_messages_name_the_place_and_the_payload() {
        let owned: String = "index out of bounds: the len is 3 but the index is 7".into();
        assert_eq!(panic_message(Some(("src/lib.rs", 43, 72)), &owned),
                   "panicked at src/lib.rs:43:72: index out of bounds: the len is 3 but the index is 7");
        assert_eq!(panic_message(Some(("src/lib.rs", 1, 2)), &"boom"), "panicked at src/lib.rs:1:2: boom");
        assert_eq!(panic_message(None, &7u8), "panicked at an unknown location: Box<dyn Any>");
    }
}

/// Read `plugin.json` text and check `info()` agrees with it: the generated
/// `plugin_info_matches_manifest` test calls this.
pub fn check_info_matches_manifest(info: &PluginInfo, manifest_json: &str) -> Result<(), String> {
    let manifest = json::parse(manifest_json)?;
    for (field, ours) in [("name", &info.name), ("version", &info.version)] {
        let theirs = manifest.get(field).and_then(Value::as_str);
        if theirs != Some(ours.as_str()) {
            return Err(format!("plugin_info {} is {:?} but plugin.json says {:?}", field, ours, theirs));
        }
    }
    Ok(())
}
