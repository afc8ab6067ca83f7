//! Who may do what: a policy per caller (the credential name the node puts in `caller`).
//!
//! A policy is a list of rules `{path, capabilities}`. A path names a KV path (`kv/app/db`) or
//! a transit key (`transit/orders`); a path ending in `*` is a prefix (`kv/app/*`,
//! `transit/*`). Capabilities: `read`, `write`, `delete`, `destroy`, `list` (KV);
//! `read`, `manage`, `encrypt`, `decrypt`, `sign`, `verify`, `hmac`, `export` (Transit);
//! `sudo` on `sys/policy` manages policies. `root` (the cookie) may do anything; a caller
//! without a policy may do nothing. Policies are sealed like everything else.

use aspen_wasm_guest_sdk::prelude::*;

use crate::{fail, invalid, str_of, store, Out};

pub const ROOT: &str = "root";
pub const CAPABILITIES: &[&str] =
    &["read", "write", "delete", "destroy", "list", "manage", "encrypt", "decrypt", "sign", "verify", "hmac", "export", "sudo"];
pub const RULES_MAX: usize = 64;
pub const PATH_MAX: usize = 512;

fn policy_key(caller: &str) -> String {
    store::key(&["policy/", caller])
}

fn matches(rule: &str, resource: &str) -> bool {
    match rule.strip_suffix('*') {
        Some(prefix) => resource.starts_with(prefix),
        None => rule == resource,
    }
}

/// Ok when `caller` may `cap` on `resource`, else PERMISSION_DENIED naming both.
pub fn check(caller: &str, resource: &str, cap: &str) -> Out<()> {
    if caller == ROOT {
        return Ok(());
    }
    if let Some(stored) = store::get(&policy_key(caller))? {
        for rule in stored.value.get("rules").and_then(Value::as_array).unwrap_or(&[]) {
            let path = store::text(rule, "path");
            let caps = rule.get("capabilities").and_then(Value::as_array).unwrap_or(&[]);
            if matches(path, resource) && caps.iter().any(|c| c.as_str() == Some(cap)) {
                return Ok(());
            }
        }
    }
    fail("PERMISSION_DENIED", format!("caller {:?} may not {} on {}", caller, cap, resource))
}

fn check_name(r: &Request) -> Out<&str> {
    let name = str_of(r, "name")?;
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
        return invalid("name: a caller name of 1 to 64 characters [A-Za-z0-9_.-]");
    }
    Ok(name)
}

fn rules_of(r: &Request) -> Out<Value> {
    let items = match r.get("rules") {
        Some(Value::Array(items)) if items.len() <= RULES_MAX => items,
        _ => return invalid(format!("rules: a list of at most {} {{path, capabilities}}", RULES_MAX)),
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, rule) in items.iter().enumerate() {
        let path = rule.get("path").and_then(Value::as_str).unwrap_or("");
        if path.is_empty() || path.len() > PATH_MAX || path.chars().any(char::is_control) {
            return invalid(format!("rules[{}].path: 1 to {} bytes, no control characters", i, PATH_MAX));
        }
        let caps = rule.get("capabilities").and_then(Value::as_array).unwrap_or(&[]);
        if caps.is_empty() || caps.len() > CAPABILITIES.len() {
            return invalid(format!("rules[{}].capabilities: some of {}", i, CAPABILITIES.join(", ")));
        }
        let mut checked = Vec::with_capacity(caps.len());
        for c in caps {
            match c.as_str() {
                Some(s) if CAPABILITIES.contains(&s) => checked.push(Value::from(s)),
                _ => return invalid(format!("rules[{}].capabilities: unknown {:?}; known: {}", i, c, CAPABILITIES.join(", "))),
            }
        }
        out.push(Value::map(vec![("path", Value::from(path)), ("capabilities", Value::Array(checked))]));
    }
    Ok(Value::Array(out))
}

pub fn handle(t: &str, r: &Request, caller: &str) -> Out<Response> {
    check(caller, "sys/policy", "sudo")?;
    match t {
        "SecretsPolicyPut" => {
            let name = check_name(r)?;
            let rules = rules_of(r)?;
            store::put(&policy_key(name), &Value::map(vec![("rules", rules.clone())]))?;
            Ok(Response::new("SecretsPolicy").with("name", name).with("rules", rules))
        }
        "SecretsPolicyGet" => {
            let name = check_name(r)?;
            match store::get(&policy_key(name))? {
                Some(s) => Ok(Response::new("SecretsPolicy").with("name", name)
                    .with("rules", s.value.get("rules").cloned().unwrap_or(Value::Array(vec![])))),
                None => fail("NOT_FOUND", format!("no policy for {:?}", name)),
            }
        }
        "SecretsPolicyDelete" => {
            let name = check_name(r)?;
            let existed = store::delete(&policy_key(name))?;
            Ok(Response::new("SecretsPolicyDeleted").with("name", name).with("existed", existed))
        }
        "SecretsPolicyList" => {
            let prefix = store::key(&["policy/"]);
            let names: Vec<Value> =
                store::keys(&prefix)?.into_iter().map(|k| Value::from(&k[prefix.len()..])).collect();
            Ok(Response::new("SecretsPolicies").with("names", Value::Array(names)))
        }
        _ => fail("UNHANDLED", format!("secrets does not handle {}", t)),
    }
}
