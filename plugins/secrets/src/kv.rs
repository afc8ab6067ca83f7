//! KV v2 with Vault's semantics (docs/SECRETS.md, "KV v2").
//!
//! Per path, one metadata record (`secrets:kv/m/<path>`, sealed) is the truth: its versions,
//! each with created/deletion times, a destroyed flag and the id of its data record
//! (`secrets:kv/d/<sha256(path)[..16]>/<id>`, sealed). A write stores the new data record under
//! a fresh random id, then compare-and-swaps the metadata: concurrent writers on any node
//! serialize on that swap, a loser removes its data record, and a crash between the two
//! leaves only an unreferenced sealed record (removed by `metadata delete`).

use aspen_wasm_guest_sdk::crypto::random_bytes;
use aspen_wasm_guest_sdk::prelude::*;

use crate::policy::check;
use crate::{fail, invalid, now_ms, opt_bool, opt_int, str_of, store, versions_of, Out};

pub const PATH_MAX_BYTES: usize = 512;
/// The most a version's data may take, msgpack-encoded (the host's value bound is 1 MiB).
pub const DATA_MAX_BYTES: usize = 512 * 1024;
pub const MAX_VERSIONS_DEFAULT: i64 = 10;
pub const MAX_VERSIONS_MAX: i64 = 1000;
pub const VERSIONS_PER_REQUEST_MAX: usize = 1000;
pub const CUSTOM_METADATA_MAX: usize = 64;
pub const CUSTOM_KEY_MAX: usize = 128;
pub const CUSTOM_VALUE_MAX: usize = 512;
/// Ten years: the longest delete_version_after.
pub const DELETE_AFTER_MAX_MS: i64 = 10 * 365 * 24 * 3600 * 1000;
/// A write that loses the metadata swap to a concurrent writer tries again, this many times.
const ATTEMPTS: usize = 8;

#[derive(Clone, Debug, PartialEq)]
pub struct Version {
    pub version: u64,
    pub created_ms: i64,
    pub deletion_ms: i64, // 0: none; in the future: deleted then (delete_version_after)
    pub destroyed: bool,
    pub data_id: String,
}

impl Version {
    pub fn deleted(&self, now: i64) -> bool {
        self.deletion_ms != 0 && self.deletion_ms <= now
    }

    fn to_value(&self) -> Value {
        Value::Array(vec![
            Value::Int(self.version as i64),
            Value::Int(self.created_ms),
            Value::Int(self.deletion_ms),
            Value::Bool(self.destroyed),
            Value::from(self.data_id.as_str()),
        ])
    }

    fn from_value(v: &Value) -> Option<Version> {
        let a = v.as_array()?;
        Some(Version {
            version: a.first()?.as_i64()? as u64,
            created_ms: a.get(1)?.as_i64()?,
            deletion_ms: a.get(2)?.as_i64()?,
            destroyed: a.get(3)?.as_bool()?,
            data_id: a.get(4)?.as_str()?.to_string(),
        })
    }

    fn describe(&self) -> Value {
        Value::map(vec![
            ("version", Value::Int(self.version as i64)),
            ("created_ms", Value::Int(self.created_ms)),
            ("deletion_ms", Value::Int(self.deletion_ms)),
            ("destroyed", Value::Bool(self.destroyed)),
        ])
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Meta {
    pub current_version: u64,
    pub max_versions: i64,
    pub cas_required: bool,
    pub delete_version_after_ms: i64,
    pub custom_metadata: Vec<(String, String)>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub versions: Vec<Version>, // ascending
}

impl Meta {
    fn new(now: i64) -> Meta {
        Meta {
            current_version: 0,
            max_versions: 0,
            cas_required: false,
            delete_version_after_ms: 0,
            custom_metadata: Vec::new(),
            created_ms: now,
            updated_ms: now,
            versions: Vec::new(),
        }
    }

    fn to_value(&self) -> Value {
        Value::map(vec![
            ("current_version", Value::Int(self.current_version as i64)),
            ("max_versions", Value::Int(self.max_versions)),
            ("cas_required", Value::Bool(self.cas_required)),
            ("delete_version_after_ms", Value::Int(self.delete_version_after_ms)),
            ("custom_metadata", custom_value(&self.custom_metadata)),
            ("created_ms", Value::Int(self.created_ms)),
            ("updated_ms", Value::Int(self.updated_ms)),
            ("versions", Value::Array(self.versions.iter().map(Version::to_value).collect())),
        ])
    }

    fn from_value(v: &Value) -> Out<Meta> {
        let mut versions = Vec::new();
        for item in v.get("versions").and_then(Value::as_array).unwrap_or(&[]) {
            match Version::from_value(item) {
                Some(ver) => versions.push(ver),
                None => return fail("CORRUPT", "a KV metadata record has a malformed version"),
            }
        }
        let custom = match v.get("custom_metadata") {
            Some(Value::Map(entries)) => entries
                .iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                .collect(),
            _ => Vec::new(),
        };
        Ok(Meta {
            current_version: store::int(v, "current_version") as u64,
            max_versions: store::int(v, "max_versions"),
            cas_required: store::flag(v, "cas_required"),
            delete_version_after_ms: store::int(v, "delete_version_after_ms"),
            custom_metadata: custom,
            created_ms: store::int(v, "created_ms"),
            updated_ms: store::int(v, "updated_ms"),
            versions,
        })
    }

    fn limit(&self) -> usize {
        (if self.max_versions > 0 { self.max_versions } else { MAX_VERSIONS_DEFAULT }) as usize
    }

    /// Drop the oldest versions past max_versions; their data ids (to delete).
    fn prune(&mut self) -> Vec<String> {
        let mut gone = Vec::new();
        while self.versions.len() > self.limit() {
            let v = self.versions.remove(0);
            if !v.destroyed {
                gone.push(v.data_id);
            }
        }
        gone
    }

    fn oldest_version(&self) -> u64 {
        self.versions.first().map_or(0, |v| v.version)
    }

    fn find(&self, version: u64) -> Option<&Version> {
        self.versions.iter().find(|v| v.version == version)
    }

    fn describe(&self) -> Value {
        Value::map(vec![
            ("current_version", Value::Int(self.current_version as i64)),
            ("oldest_version", Value::Int(self.oldest_version() as i64)),
            ("max_versions", Value::Int(self.max_versions)),
            ("cas_required", Value::Bool(self.cas_required)),
            ("delete_version_after_ms", Value::Int(self.delete_version_after_ms)),
            ("custom_metadata", custom_value(&self.custom_metadata)),
            ("created_ms", Value::Int(self.created_ms)),
            ("updated_ms", Value::Int(self.updated_ms)),
            ("versions", Value::Array(self.versions.iter().map(Version::describe).collect())),
        ])
    }
}

fn custom_value(custom: &[(String, String)]) -> Value {
    Value::Map(custom.iter().map(|(k, v)| (Value::from(k.as_str()), Value::from(v.as_str()))).collect())
}

/// A KV path: 1 to 512 bytes of UTF-8 (the wire already is), no control characters, no
/// leading or doubled '/', no '.' or '..' segment; `dir`: may end with '/' (or be empty).
pub fn check_path(path: &str, dir: bool) -> Out<()> {
    if path.is_empty() && dir {
        return Ok(());
    }
    if path.is_empty() || path.len() > PATH_MAX_BYTES {
        return invalid(format!("path: 1 to {} bytes", PATH_MAX_BYTES));
    }
    if path.chars().any(char::is_control) {
        return invalid("path: no control characters");
    }
    if path.starts_with('/') || path.contains("//") {
        return invalid("path: no leading '/' and no empty segment ('//')");
    }
    if !dir && path.ends_with('/') {
        return invalid("path: a secret's path does not end with '/' (that is a directory: list it)");
    }
    if path.split('/').any(|s| s == "." || s == "..") {
        return invalid("path: no '.' or '..' segments");
    }
    Ok(())
}

fn meta_key(path: &str) -> String {
    store::key(&["kv/m/", path])
}

fn data_prefix(path: &str) -> Out<String> {
    let digest = sha256_digest(path.as_bytes())?;
    Ok(store::key(&["kv/d/", &store::hex(&digest[..16]), "/"]))
}

fn data_key(path: &str, id: &str) -> Out<String> {
    Ok(format!("{}{}", data_prefix(path)?, id))
}

fn load(path: &str) -> Out<Option<(Vec<u8>, Meta)>> {
    match store::get(&meta_key(path))? {
        None => Ok(None),
        Some(s) => Ok(Some((s.raw, Meta::from_value(&s.value)?))),
    }
}

fn load_existing(path: &str) -> Out<(Vec<u8>, Meta)> {
    match load(path)? {
        Some(found) => Ok(found),
        None => fail("NOT_FOUND", format!("no secret at {}", path)),
    }
}

fn data_of(r: &Request, name: &str) -> Out<Value> {
    let data = match r.get(name) {
        Some(v @ Value::Map(entries)) => {
            if entries.iter().any(|(k, _)| k.as_str().is_none()) {
                return invalid(format!("{}: keys must be strings", name));
            }
            v.clone()
        }
        _ => return invalid(format!("{}: a map of fields, e.g. {{\"user\": \"u\", \"pass\": \"p\"}}", name)),
    };
    let size = data.encode().len();
    if size > DATA_MAX_BYTES {
        return fail("VALUE_TOO_LARGE", format!("{}: {} bytes encoded is over {}", name, size, DATA_MAX_BYTES));
    }
    Ok(data)
}

fn merge(base: &Value, patch: &Value) -> Value {
    let mut out: Vec<(Value, Value)> = match base {
        Value::Map(e) => e.clone(),
        _ => Vec::new(),
    };
    if let Value::Map(entries) = patch {
        for (k, v) in entries {
            out.retain(|(ek, _)| ek != k);
            if !v.is_nil() {
                out.push((k.clone(), v.clone()));
            }
        }
    }
    Value::Map(out)
}

fn version_response(t: &str, path: &str, v: &Version, meta: &Meta) -> Response {
    Response::new(t)
        .with("path", path)
        .with("version", v.version)
        .with("created_ms", Value::Int(v.created_ms))
        .with("deletion_ms", Value::Int(v.deletion_ms))
        .with("destroyed", v.destroyed)
        .with("custom_metadata", custom_value(&meta.custom_metadata))
}

fn read_data(path: &str, v: &Version) -> Out<Value> {
    let k = data_key(path, &v.data_id)?;
    match store::get(&k)? {
        Some(s) => Ok(s.value.get("data").cloned().unwrap_or(Value::Nil)),
        None => fail("CORRUPT", format!("{} version {}: its data record is missing", path, v.version)),
    }
}

fn put(r: &Request, path: &str, patch: bool) -> Out<Response> {
    let body = data_of(r, "data")?;
    let cas = opt_int(r, "cas", 0, i64::MAX)?.map(|c| c as u64);
    for _ in 0..ATTEMPTS {
        let now = now_ms();
        let (raw, mut meta) = match load(path)? {
            Some((raw, meta)) => (Some(raw), meta),
            None if patch => return fail("NOT_FOUND", format!("no secret at {} to patch", path)),
            None => (None, Meta::new(now)),
        };
        if meta.cas_required && cas.is_none() {
            return fail("CAS_REQUIRED", format!("{} requires cas: give --cas {}", path, meta.current_version));
        }
        if let Some(c) = cas {
            if c != meta.current_version {
                return fail("CAS_MISMATCH", format!(
                    "check-and-set parameter did not match the current version: cas {}, current version {}",
                    c, meta.current_version));
            }
        }
        let data = if patch {
            let latest = match meta.find(meta.current_version) {
                Some(v) if !v.destroyed && !v.deleted(now) => v.clone(),
                _ => return fail("NOT_FOUND", format!("{}: the latest version is deleted or destroyed", path)),
            };
            merge(&read_data(path, &latest)?, &body)
        } else {
            body.clone()
        };
        let id = store::hex(&random_bytes(12)?);
        let dkey = data_key(path, &id)?;
        store::put(&dkey, &Value::map(vec![("data", data)]))?;
        let version = Version {
            version: meta.current_version + 1,
            created_ms: now,
            deletion_ms: if meta.delete_version_after_ms > 0 { now + meta.delete_version_after_ms } else { 0 },
            destroyed: false,
            data_id: id,
        };
        meta.current_version = version.version;
        meta.updated_ms = now;
        meta.versions.push(version.clone());
        let pruned = meta.prune();
        if store::cas(&meta_key(path), raw.as_deref(), &meta.to_value())? {
            let keys: Vec<String> = pruned.iter().map(|id| data_key(path, id)).collect::<Out<_>>()?;
            store::delete_all(&keys)?;
            return Ok(version_response(if patch { "SecretsKvPatched" } else { "SecretsKvWritten" }, path, &version, &meta));
        }
        store::delete(&dkey)?; // lost the swap: this version was never visible
    }
    fail("CONFLICT", format!("{}: too many concurrent writers; try again", path))
}

fn get(r: &Request, path: &str) -> Out<Response> {
    let (_, meta) = load_existing(path)?;
    let want = match opt_int(r, "version", 0, i64::MAX)? {
        Some(v) if v > 0 => v as u64,
        _ => meta.current_version,
    };
    let v = match meta.find(want) {
        Some(v) => v.clone(),
        None => return fail("NOT_FOUND", format!("{}: no version {} (current {}, oldest kept {})",
                                               path, want, meta.current_version, meta.oldest_version())),
    };
    let data = if v.destroyed || v.deleted(now_ms()) { Value::Nil } else { read_data(path, &v)? };
    Ok(version_response("SecretsKvData", path, &v, &meta).with("data", data))
}

/// Apply `change` to the named versions (all must exist) under a metadata swap; returns the
/// data ids to delete afterwards.
fn change_versions(path: &str, versions: &[u64], change: &dyn Fn(&mut Version, i64) -> bool) -> Out<(Meta, Vec<String>)> {
    for _ in 0..ATTEMPTS {
        let now = now_ms();
        let (raw, mut meta) = load_existing(path)?;
        let mut gone = Vec::new();
        for want in versions {
            if *want > meta.current_version {
                return fail("NOT_FOUND", format!("{}: no version {} (current {})", path, want, meta.current_version));
            }
            if let Some(v) = meta.versions.iter_mut().find(|v| v.version == *want) {
                let was_destroyed = v.destroyed;
                if change(v, now) && v.destroyed && !was_destroyed {
                    gone.push(v.data_id.clone());
                }
            }
        }
        meta.updated_ms = now;
        if store::cas(&meta_key(path), Some(&raw), &meta.to_value())? {
            let keys: Vec<String> = gone.iter().map(|id| data_key(path, id)).collect::<Out<_>>()?;
            store::delete_all(&keys)?;
            return Ok((meta, gone));
        }
    }
    fail("CONFLICT", format!("{}: too many concurrent writers; try again", path))
}

fn versions_required(r: &Request) -> Out<Vec<u64>> {
    match versions_of(r, "versions", VERSIONS_PER_REQUEST_MAX)? {
        Some(v) if !v.is_empty() => Ok(v),
        _ => invalid(format!("{}: 'versions' is required: a list of version numbers", r.type_name)),
    }
}

fn delete(r: &Request, path: &str) -> Out<Response> {
    let versions = match versions_of(r, "versions", VERSIONS_PER_REQUEST_MAX)? {
        Some(v) if !v.is_empty() => v,
        _ => vec![load_existing(path)?.1.current_version],
    };
    let (meta, _) = change_versions(path, &versions, &|v, now| {
        if v.destroyed || v.deleted(now) {
            return false;
        }
        v.deletion_ms = now;
        true
    })?;
    Ok(Response::new("SecretsKvDeleted").with("path", path).with("versions", versions_value(&versions))
        .with("metadata", meta.describe()))
}

fn undelete(r: &Request, path: &str) -> Out<Response> {
    let versions = versions_required(r)?;
    let (meta, _) = change_versions(path, &versions, &|v, _| {
        if v.destroyed {
            return false;
        }
        v.deletion_ms = 0;
        true
    })?;
    Ok(Response::new("SecretsKvUndeleted").with("path", path).with("versions", versions_value(&versions))
        .with("metadata", meta.describe()))
}

fn destroy(r: &Request, path: &str) -> Out<Response> {
    let versions = versions_required(r)?;
    let (meta, _) = change_versions(path, &versions, &|v, _| {
        v.destroyed = true;
        true
    })?;
    Ok(Response::new("SecretsKvDestroyed").with("path", path).with("versions", versions_value(&versions))
        .with("metadata", meta.describe()))
}

fn versions_value(versions: &[u64]) -> Value {
    Value::Array(versions.iter().map(|v| Value::Int(*v as i64)).collect())
}

fn custom_of(r: &Request) -> Out<Option<Vec<(String, String)>>> {
    match r.get("custom_metadata") {
        None | Some(Value::Nil) => Ok(None),
        Some(Value::Map(entries)) if entries.len() <= CUSTOM_METADATA_MAX => {
            let mut out = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                match (k.as_str(), v.as_str()) {
                    (Some(k), Some(v)) if !k.is_empty() && k.len() <= CUSTOM_KEY_MAX && v.len() <= CUSTOM_VALUE_MAX => {
                        out.push((k.to_string(), v.to_string()))
                    }
                    _ => return invalid(format!("custom_metadata: string keys of 1 to {} bytes, string values of at most {}",
                                                CUSTOM_KEY_MAX, CUSTOM_VALUE_MAX)),
                }
            }
            Ok(Some(out))
        }
        Some(_) => invalid(format!("custom_metadata: a map of at most {} string pairs", CUSTOM_METADATA_MAX)),
    }
}

fn metadata_put(r: &Request, path: &str) -> Out<Response> {
    let max_versions = opt_int(r, "max_versions", 0, MAX_VERSIONS_MAX)?;
    let cas_required = opt_bool(r, "cas_required")?;
    let delete_after = opt_int(r, "delete_version_after_ms", 0, DELETE_AFTER_MAX_MS)?;
    let custom = custom_of(r)?;
    for _ in 0..ATTEMPTS {
        let now = now_ms();
        let (raw, mut meta) = match load(path)? {
            Some((raw, meta)) => (Some(raw), meta),
            None => (None, Meta::new(now)),
        };
        if let Some(m) = max_versions {
            meta.max_versions = m;
        }
        if let Some(c) = cas_required {
            meta.cas_required = c;
        }
        if let Some(d) = delete_after {
            meta.delete_version_after_ms = d;
        }
        if let Some(c) = &custom {
            meta.custom_metadata = c.clone();
        }
        meta.updated_ms = now;
        let pruned = meta.prune();
        if store::cas(&meta_key(path), raw.as_deref(), &meta.to_value())? {
            let keys: Vec<String> = pruned.iter().map(|id| data_key(path, id)).collect::<Out<_>>()?;
            store::delete_all(&keys)?;
            return Ok(Response::new("SecretsKvMetadata").with("path", path).with("metadata", meta.describe()));
        }
    }
    fail("CONFLICT", format!("{}: too many concurrent writers; try again", path))
}

fn metadata_delete(path: &str) -> Out<Response> {
    let existed = store::delete(&meta_key(path))?;
    // Every data record of the path, unreferenced ones left by a crashed write included.
    let data = store::keys(&data_prefix(path)?)?;
    store::delete_all(&data)?;
    Ok(Response::new("SecretsKvMetadataDeleted").with("path", path).with("existed", existed)
        .with("data_records_deleted", data.len() as u64))
}

fn list(path: &str) -> Out<Response> {
    // A directory: "app" lists what "app/" does (not "apple").
    let dir = if path.is_empty() || path.ends_with('/') { path.to_string() } else { format!("{}/", path) };
    let path = dir.as_str();
    let prefix = meta_key(path);
    let mut names: Vec<String> = Vec::new();
    let keys = store::keys(&prefix)?;
    let truncated = keys.len() as u32 >= store::SCAN_MAX;
    for k in keys {
        let rest = &k[prefix.len()..];
        let name = match rest.find('/') {
            Some(i) => &rest[..=i],
            None => rest,
        };
        if !name.is_empty() && names.last().map(String::as_str) != Some(name) {
            names.push(name.to_string());
        }
    }
    Ok(Response::new("SecretsKvKeys").with("path", path).with("truncated", truncated)
        .with("keys", Value::Array(names.into_iter().map(Value::from).collect())))
}

pub fn handle(t: &str, r: &Request, caller: &str) -> Out<Response> {
    let path = str_of(r, "path")?;
    let dir = t == "SecretsKvList";
    check_path(path, dir)?;
    let resource = format!("kv/{}", path);
    let cap = match t {
        "SecretsKvGet" | "SecretsKvMetadataGet" => "read",
        "SecretsKvPut" | "SecretsKvPatch" | "SecretsKvMetadataPut" => "write",
        "SecretsKvList" => "list",
        "SecretsKvDelete" | "SecretsKvUndelete" => "delete",
        "SecretsKvDestroy" | "SecretsKvMetadataDelete" => "destroy",
        _ => return fail("UNHANDLED", format!("secrets does not handle {}", t)),
    };
    check(caller, &resource, cap)?;
    if t == "SecretsKvPatch" {
        check(caller, &resource, "read")?; // a patch reveals nothing, but builds on what it read
    }
    match t {
        "SecretsKvPut" => put(r, path, false),
        "SecretsKvPatch" => put(r, path, true),
        "SecretsKvGet" => get(r, path),
        "SecretsKvList" => list(path),
        "SecretsKvDelete" => delete(r, path),
        "SecretsKvUndelete" => undelete(r, path),
        "SecretsKvDestroy" => destroy(r, path),
        "SecretsKvMetadataGet" => {
            let (_, meta) = load_existing(path)?;
            Ok(Response::new("SecretsKvMetadata").with("path", path).with("metadata", meta.describe()))
        }
        "SecretsKvMetadataPut" => metadata_put(r, path),
        _ => metadata_delete(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for ok in ["app/db", "a", "x/y/z", "ünï/cödé"] {
            assert!(check_path(ok, false).is_ok(), "{}", ok);
        }
        for bad in ["", "/a", "a//b", "a/", "a/../b", "./a", "a\nb", &"x".repeat(513)] {
            assert!(check_path(bad, false).is_err(), "{}", bad);
        }
        assert!(check_path("", true).is_ok() && check_path("app/", true).is_ok());
    }

    #[test]
    fn prune_and_merge() {
        let mut m = Meta::new(0);
        m.max_versions = 2;
        for i in 1..=4 {
            m.versions.push(Version { version: i, created_ms: 0, deletion_ms: 0, destroyed: i == 2, data_id: format!("{}", i) });
        }
        assert_eq!(m.prune(), vec!["1".to_string()]); // 2 was destroyed: no data left
        assert_eq!(m.oldest_version(), 3);
        let base = Value::map(vec![("a", Value::from("1")), ("b", Value::from("2"))]);
        let patch = Value::map(vec![("b", Value::Nil), ("c", Value::from("3"))]);
        assert_eq!(merge(&base, &patch), Value::map(vec![("a", Value::from("1")), ("c", Value::from("3"))]));
    }
}
