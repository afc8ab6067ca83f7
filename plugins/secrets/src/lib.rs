//! secrets: Vault-style KV v2 and Transit engines, sealed at rest (docs/SECRETS.md).
//!
//! The plugin does no cryptography of its own: AEADs, HMAC, HKDF, Ed25519 and randomness are
//! the node's vetted host functions (ABI v3), and everything it stores goes through the node's
//! barrier (`barrier_seal`, bound to the KV key it is stored under), so no secret value and no
//! key material is ever in clear in the Raft log, snapshots or a raw read of its namespace.
//! A sealed node answers `SEALED`. Every request is checked against the caller's policy
//! (`caller`, set by the node): `root` (the cookie) may do anything, others what their policy's
//! rules grant (policy.rs).

pub mod b64;
pub mod kv;
pub mod policy;
pub mod store;
pub mod transit;

use aspen_wasm_guest_sdk::crypto::barrier_sealed;
use aspen_wasm_guest_sdk::prelude::*;

pub const NAME: &str = "secrets";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A request's failure: a code the caller sees and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fail {
    pub code: &'static str,
    pub message: String,
}

pub type Out<T> = Result<T, Fail>;

pub fn fail<T>(code: &'static str, message: impl std::fmt::Display) -> Out<T> {
    Err(Fail { code, message: message.to_string() })
}

pub fn invalid<T>(message: impl std::fmt::Display) -> Out<T> {
    fail("INVALID_REQUEST", message)
}

impl From<HostError> for Fail {
    fn from(e: HostError) -> Fail {
        // The host's codes pass through (SEALED, DECRYPT_FAILED, TIMEOUT, NOT_LEADER, ...).
        let code: &'static str = match e.code.as_str() {
            "SEALED" => "SEALED",
            "DECRYPT_FAILED" => "DECRYPT_FAILED",
            "TIMEOUT" => "TIMEOUT",
            "NOT_LEADER" => "NOT_LEADER",
            "UNAVAILABLE" => "UNAVAILABLE",
            "VALUE_TOO_LARGE" => "VALUE_TOO_LARGE",
            "KEY_TOO_LARGE" => "KEY_TOO_LARGE",
            "LIMIT_EXCEEDED" => "LIMIT_EXCEEDED",
            "INVALID_ARGUMENT" => "INVALID_REQUEST",
            "PERMISSION_DENIED" => "PERMISSION_DENIED",
            _ => "HOST_ERROR",
        };
        Fail { code, message: format!("{}: {}", e.code, e.message) }
    }
}

// -- request fields ----------------------------------------------------------------------------

pub fn str_of<'a>(r: &'a Request, name: &str) -> Out<&'a str> {
    match r.get(name) {
        Some(Value::Str(s)) => Ok(s),
        Some(_) => invalid(format!("{}: '{}' must be a string", r.type_name, name)),
        None => invalid(format!("{}: '{}' is required", r.type_name, name)),
    }
}

pub fn opt_str<'a>(r: &'a Request, name: &str) -> Out<Option<&'a str>> {
    match r.get(name) {
        None | Some(Value::Nil) => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s)),
        Some(_) => invalid(format!("{}: '{}' must be a string", r.type_name, name)),
    }
}

pub fn opt_int(r: &Request, name: &str, lo: i64, hi: i64) -> Out<Option<i64>> {
    match r.get(name) {
        None | Some(Value::Nil) => Ok(None),
        Some(Value::Int(i)) if *i >= lo && *i <= hi => Ok(Some(*i)),
        Some(_) => invalid(format!("{}: '{}' must be an integer from {} to {}", r.type_name, name, lo, hi)),
    }
}

pub fn opt_bool(r: &Request, name: &str) -> Out<Option<bool>> {
    match r.get(name) {
        None | Some(Value::Nil) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => invalid(format!("{}: '{}' must be true or false", r.type_name, name)),
    }
}

/// A list of version numbers (`versions`), each at least 1, at most `max` of them.
pub fn versions_of(r: &Request, name: &str, max: usize) -> Out<Option<Vec<u64>>> {
    match r.get(name) {
        None | Some(Value::Nil) => Ok(None),
        Some(Value::Array(items)) if items.len() <= max => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item.as_i64() {
                    Some(v) if v >= 1 => out.push(v as u64),
                    _ => return invalid(format!("{}: '{}' must be version numbers from 1", r.type_name, name)),
                }
            }
            Ok(Some(out))
        }
        Some(_) => invalid(format!("{}: '{}' must be a list of at most {} versions", r.type_name, name, max)),
    }
}

pub fn now_ms() -> i64 {
    current_time_ms() as i64
}

// -- the plugin --------------------------------------------------------------------------------

pub struct Secrets;

fn route(r: &Request, caller: &str) -> Out<Response> {
    let t = r.type_name.as_str();
    if t.starts_with("SecretsKv") {
        return kv::handle(t, r, caller);
    }
    if t.starts_with("SecretsTransit") {
        return transit::handle(t, r, caller);
    }
    if t.starts_with("SecretsPolicy") {
        return policy::handle(t, r, caller);
    }
    fail("UNHANDLED", format!("{} does not handle {}", NAME, t))
}

pub fn serve(r: &Request) -> ClientRpcResponse {
    let caller = match r.get("caller") {
        Some(Value::Str(s)) if !s.is_empty() => s.clone(),
        _ => return ClientRpcResponse::error("PERMISSION_DENIED", "the request carries no caller identity"),
    };
    match barrier_sealed() {
        Ok(false) => {}
        Ok(true) => {
            return ClientRpcResponse::error("SEALED", "this node is sealed: `aspen-cli secrets unseal` (docs/SECRETS.md)")
        }
        Err(e) => return ClientRpcResponse::error(&e.code, e.message),
    }
    match route(r, &caller) {
        Ok(resp) => ClientRpcResponse::Custom(resp),
        Err(f) => ClientRpcResponse::error(f.code, f.message),
    }
}

impl AspenPlugin for Secrets {
    fn info() -> PluginInfo {
        PluginInfo::new(NAME, VERSION).description("Vault-style KV v2 and Transit, sealed at rest behind the node's barrier")
    }

    fn handle(request: ClientRpcRequest) -> ClientRpcResponse {
        match request {
            ClientRpcRequest::Other(r) => serve(&r),
            other => ClientRpcResponse::unhandled(NAME, &other),
        }
    }
}

register_plugin!(Secrets);

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: aspen_wasm_guest_sdk::allocator::SizeClasses =
    aspen_wasm_guest_sdk::allocator::SizeClasses::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_info_matches_manifest() {
        aspen_wasm_guest_sdk::check_info_matches_manifest(&Secrets::info(), include_str!("../plugin.json")).unwrap();
    }

    #[test]
    fn host_codes_pass_through() {
        assert_eq!(Fail::from(HostError::new("SEALED", "x")).code, "SEALED");
        assert_eq!(Fail::from(HostError::new("SOMETHING_NEW", "x")).code, "HOST_ERROR");
    }
}
