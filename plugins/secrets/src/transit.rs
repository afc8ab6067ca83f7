//! Transit with Vault's semantics (docs/SECRETS.md, "Transit"): named, versioned keys whose
//! material never leaves the plugin unless the key is exportable, and encryption as a service.
//!
//! A key is one record `secrets:transit/k/<name>`, sealed by the barrier, holding every version's
//! material; changes (rotate, config, trim) are compare-and-swaps on it. Ciphertexts,
//! signatures and HMACs are `aspen:v<N>:<base64>`: for the AEADs the base64 of
//! `nonce || ciphertext || tag` under the version's key (HKDF-SHA256 of it with the context,
//! for a derived key), so anyone holding an exported key can open them with libsodium or any
//! AES-GCM (tests do).

use aspen_wasm_guest_sdk::crypto::{
    aead_open, aead_seal, ed25519_public_key, ed25519_sign, ed25519_verify, hkdf_sha256, hmac_sha256, random_bytes, Aead,
};
use std::borrow::Cow;
use std::rc::Rc;

use aspen_wasm_guest_sdk::prelude::*;

use crate::policy::check;
use crate::{b64, fail, invalid, now_ms, opt_bool, opt_int, opt_str, str_of, store, Fail, Out};

pub const XCHACHA: &str = "xchacha20-poly1305";
pub const AES: &str = "aes256-gcm96";
pub const ED25519: &str = "ed25519";
pub const NAME_MAX: usize = 128;
pub const VERSIONS_MAX: u64 = 1000;
pub const BATCH_MAX: usize = 1000;
/// The most input (plaintexts, ciphertexts, contexts, as sent) one request may carry.
pub const BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;
/// The most one plaintext (or signed input) may be, decoded.
pub const INPUT_MAX_BYTES: usize = 1024 * 1024;
const DERIVE_INFO: &[u8] = b"aspen transit derive\x00";
const HMAC_INFO: &[u8] = b"aspen transit hmac";
const ATTEMPTS: usize = 8;

#[derive(Clone, Debug)]
pub struct Key {
    pub kind: String,
    pub derived: bool,
    pub convergent: bool,
    pub exportable: bool,
    pub deletion_allowed: bool,
    pub min_decryption_version: u64,
    pub min_encryption_version: u64,
    pub min_available_version: u64,
    pub latest_version: u64,
    pub created_ms: i64,
    pub versions: Vec<(u64, i64, Vec<u8>)>, // (version, created_ms, material)
}

impl Key {
    fn to_value(&self) -> Value {
        Value::map(vec![
            ("type", Value::from(self.kind.as_str())),
            ("derived", Value::Bool(self.derived)),
            ("convergent", Value::Bool(self.convergent)),
            ("exportable", Value::Bool(self.exportable)),
            ("deletion_allowed", Value::Bool(self.deletion_allowed)),
            ("min_decryption_version", Value::Int(self.min_decryption_version as i64)),
            ("min_encryption_version", Value::Int(self.min_encryption_version as i64)),
            ("min_available_version", Value::Int(self.min_available_version as i64)),
            ("latest_version", Value::Int(self.latest_version as i64)),
            ("created_ms", Value::Int(self.created_ms)),
            (
                "versions",
                Value::Array(
                    self.versions
                        .iter()
                        .map(|(v, c, m)| Value::Array(vec![Value::Int(*v as i64), Value::Int(*c), Value::Bin(m.clone())]))
                        .collect(),
                ),
            ),
        ])
    }

    fn from_value(v: &Value) -> Out<Key> {
        let mut versions = Vec::new();
        for item in v.get("versions").and_then(Value::as_array).unwrap_or(&[]) {
            let a = item.as_array().unwrap_or(&[]);
            match (a.first().and_then(Value::as_i64), a.get(1).and_then(Value::as_i64), a.get(2)) {
                (Some(ver), Some(c), Some(Value::Bin(m))) => versions.push((ver as u64, c, m.clone())),
                _ => return fail("CORRUPT", "a transit key record has a malformed version"),
            }
        }
        Ok(Key {
            kind: store::text(v, "type").to_string(),
            derived: store::flag(v, "derived"),
            convergent: store::flag(v, "convergent"),
            exportable: store::flag(v, "exportable"),
            deletion_allowed: store::flag(v, "deletion_allowed"),
            min_decryption_version: store::int(v, "min_decryption_version") as u64,
            min_encryption_version: store::int(v, "min_encryption_version") as u64,
            min_available_version: store::int(v, "min_available_version") as u64,
            latest_version: store::int(v, "latest_version") as u64,
            created_ms: store::int(v, "created_ms"),
            versions,
        })
    }

    fn aead(&self) -> Out<Aead> {
        match self.kind.as_str() {
            XCHACHA => Ok(Aead::XChaCha20Poly1305),
            AES => Ok(Aead::Aes256Gcm),
            _ => fail("UNSUPPORTED_OPERATION", format!("a {} key does not encrypt", self.kind)),
        }
    }

    fn material(&self, version: u64) -> Out<&[u8]> {
        match self.versions.iter().find(|(v, _, _)| *v == version) {
            Some((_, _, m)) => Ok(m),
            None if version > self.latest_version => fail("NOT_FOUND", format!("key version {} does not exist (latest {})",
                                                                               version, self.latest_version)),
            None => fail("NOT_FOUND", format!("key version {} was trimmed (min_available_version {})",
                                             version, self.min_available_version)),
        }
    }

    /// The key that encrypts or decrypts with `version` and `context`.
    fn aead_key(&self, version: u64, context: &Option<Vec<u8>>) -> Out<Cow<'_, [u8]>> {
        let material = self.material(version)?;
        match (self.derived, context) {
            (true, Some(ctx)) => {
                let mut info = DERIVE_INFO.to_vec();
                info.extend_from_slice(ctx);
                Ok(Cow::Owned(hkdf_sha256(material, b"", &info, 32)?))
            }
            (true, None) => invalid("this key is derived: every operation needs a 'context'"),
            (false, Some(_)) => invalid("'context' was given for a key that is not derived"),
            (false, None) => Ok(Cow::Borrowed(material)),
        }
    }

    fn hmac_key(&self, version: u64) -> Out<Vec<u8>> {
        Ok(hkdf_sha256(self.material(version)?, b"", HMAC_INFO, 32)?)
    }

    /// The version to encrypt/sign with: `asked` (0 = the latest), within the minimum.
    fn encryption_version(&self, asked: u64) -> Out<u64> {
        let v = if asked == 0 { self.latest_version } else { asked };
        if v > self.latest_version {
            return fail("NOT_FOUND", format!("key version {} does not exist (latest {})", v, self.latest_version));
        }
        if self.min_encryption_version > 0 && v < self.min_encryption_version {
            return fail("MIN_ENCRYPTION_VERSION", format!("key version {} is below min_encryption_version {}",
                                                         v, self.min_encryption_version));
        }
        Ok(v)
    }

    fn check_decryption_version(&self, v: u64) -> Out<()> {
        if v < self.min_decryption_version {
            return fail("MIN_DECRYPTION_VERSION", format!("key version {} is below min_decryption_version {}",
                                                         v, self.min_decryption_version));
        }
        Ok(())
    }

    fn describe(&self, name: &str) -> Out<Value> {
        let mut keys = Vec::new();
        for (v, created, material) in &self.versions {
            let mut entry = vec![("created_ms", Value::Int(*created))];
            if self.kind == ED25519 {
                entry.push(("public_key", Value::from(b64::encode(&ed25519_public_key(material)?))));
            }
            keys.push((Value::from(v.to_string()), Value::map(entry)));
        }
        Ok(Value::map(vec![
            ("name", Value::from(name)),
            ("type", Value::from(self.kind.as_str())),
            ("derived", Value::Bool(self.derived)),
            ("convergent_encryption", Value::Bool(self.convergent)),
            ("exportable", Value::Bool(self.exportable)),
            ("deletion_allowed", Value::Bool(self.deletion_allowed)),
            ("latest_version", Value::Int(self.latest_version as i64)),
            ("min_available_version", Value::Int(self.min_available_version as i64)),
            ("min_decryption_version", Value::Int(self.min_decryption_version as i64)),
            ("min_encryption_version", Value::Int(self.min_encryption_version as i64)),
            ("supports_encryption", Value::Bool(self.kind != ED25519)),
            ("supports_signing", Value::Bool(self.kind == ED25519)),
            ("created_ms", Value::Int(self.created_ms)),
            ("keys", Value::Map(keys)),
        ]))
    }
}

pub fn check_name(name: &str) -> Out<()> {
    if name.is_empty() || name.len() > NAME_MAX || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
        return invalid(format!("name: 1 to {} characters [A-Za-z0-9_.-]", NAME_MAX));
    }
    Ok(())
}

fn key_key(name: &str) -> String {
    store::key(&["transit/k/", name])
}

/// Keys opened recently by this instance, by name, with the sealed bytes they were opened
/// from. A read of the record (linearizable, as always) that returns the same bytes reuses the
/// opened key instead of opening the envelope again: the bytes are the key's whole state, so
/// equal bytes are an equal key. Bounded; a sealed node never reaches it (lib.rs checks first).
struct Opened {
    entries: Vec<(String, Vec<u8>, Rc<Key>)>,
}

const OPENED_MAX: usize = 32;

thread_local! {
    static OPENED: std::cell::RefCell<Opened> = std::cell::RefCell::new(Opened { entries: Vec::new() });
}

/// The key's record as read now and the key it holds; shared with the cache (`Rc`): a hit
/// costs no copy of the key's versions.
fn load(name: &str) -> Out<(Vec<u8>, Rc<Key>)> {
    let k = key_key(name);
    let raw = match kv_get_value(&k)? {
        Some(raw) => raw,
        None => return fail("NOT_FOUND", format!("no transit key {:?}", name)),
    };
    let hit = OPENED.with(|o| {
        o.borrow().entries.iter().find(|(n, r, _)| n == name && same_bytes(r, &raw)).map(|(_, _, key)| Rc::clone(key))
    });
    if let Some(key) = hit {
        return Ok((raw, key));
    }
    let key = Rc::new(Key::from_value(&store::open(&k, &raw)?)?);
    OPENED.with(|o| {
        let mut o = o.borrow_mut();
        o.entries.retain(|(n, _, _)| n != name);
        if o.entries.len() >= OPENED_MAX {
            o.entries.remove(0);
        }
        o.entries.push((name.to_string(), raw.clone(), Rc::clone(&key)));
    });
    Ok((raw, key))
}

/// `a == b`, eight bytes at a time: a slice's `==` is this target's memcmp, a byte loop
/// (compiler_builtins), and the key record is compared on every request.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail_equal = wa.remainder().iter().zip(wb.remainder()).all(|(x, y)| x == y);
    let word = |w: &[u8]| u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
    tail_equal && wa.zip(wb).all(|(x, y)| word(x) == word(y))
}

fn new_material() -> Out<Vec<u8>> {
    Ok(random_bytes(32)?)
}

/// Change the key under a compare-and-swap, retrying a concurrent change.
fn update(name: &str, change: &dyn Fn(&mut Key) -> Out<()>) -> Out<Key> {
    for _ in 0..ATTEMPTS {
        let (raw, key) = load(name)?;
        let mut key = Key::clone(&key);
        change(&mut key)?;
        if store::cas(&key_key(name), Some(&raw), &key.to_value())? {
            return Ok(key);
        }
    }
    fail("CONFLICT", format!("transit key {:?}: too many concurrent changes; try again", name))
}

// -- encodings ---------------------------------------------------------------------------------

/// Bytes given as base64 text (Vault's way) or as msgpack bin.
fn bytes_value(v: &Value, what: &str) -> Out<Vec<u8>> {
    let out = match v {
        Value::Str(s) => b64::decode(s).map_err(|e| Fail { code: "INVALID_REQUEST", message: format!("{}: {}", what, e) })?,
        Value::Bin(b) => b.clone(),
        _ => return invalid(format!("{}: base64 text or bytes", what)),
    };
    if out.len() > INPUT_MAX_BYTES {
        return fail("VALUE_TOO_LARGE", format!("{}: {} bytes is over {}", what, out.len(), INPUT_MAX_BYTES));
    }
    Ok(out)
}

fn opt_bytes(v: &Value, name: &str) -> Out<Option<Vec<u8>>> {
    match v.get(name) {
        None | Some(Value::Nil) => Ok(None),
        Some(x) => bytes_value(x, name).map(Some),
    }
}

fn req_bytes(v: &Value, name: &str) -> Out<Vec<u8>> {
    match v.get(name) {
        None | Some(Value::Nil) => invalid(format!("'{}' is required", name)),
        Some(x) => bytes_value(x, name),
    }
}

fn armor(version: u64, body: &[u8]) -> String {
    // Built in place: format! copied the whole base64 body again through the formatter.
    let version = version.to_string();
    let mut out = Vec::with_capacity(8 + version.len() + b64::encoded_len(body.len()));
    out.extend_from_slice(b"aspen:v");
    out.extend_from_slice(version.as_bytes());
    out.push(b':');
    b64::encode_into(body, &mut out);
    String::from_utf8(out).unwrap_or_default() // ASCII: always valid
}

/// (version, body) of `aspen:v<N>:<base64>`.
pub fn unarmor(text: &str, what: &str) -> Out<(u64, Vec<u8>)> {
    let bad = || Fail { code: "INVALID_CIPHERTEXT", message: format!("{}: not aspen:v<N>:<base64>", what) };
    let rest = text.strip_prefix("aspen:v").ok_or_else(bad)?;
    let (num, body) = rest.split_once(':').ok_or_else(bad)?;
    if num.is_empty() || num.len() > 10 || !num.bytes().all(|b| b.is_ascii_digit()) || num.starts_with('0') {
        return Err(bad());
    }
    let version: u64 = num.parse().map_err(|_| bad())?;
    let body = b64::decode(body).map_err(|e| Fail { code: "INVALID_CIPHERTEXT", message: format!("{}: {}", what, e) })?;
    Ok((version, body))
}

fn str_in<'a>(v: &'a Value, name: &str) -> Out<&'a str> {
    match v.get(name) {
        Some(Value::Str(s)) => Ok(s),
        _ => invalid(format!("'{}' is required: a string", name)),
    }
}

// -- the operations on one item ----------------------------------------------------------------

fn encrypt_one(key: &Key, version: u64, plaintext: &[u8], context: &Option<Vec<u8>>) -> Out<String> {
    let alg = key.aead()?;
    let k = key.aead_key(version, context)?;
    let nonce = if key.convergent {
        // Convergent: the same plaintext and context give the same ciphertext (Vault's
        // convergent encryption): the nonce is an HMAC of them under the derived key.
        Some(hmac_sha256(&k, plaintext)?[..alg.nonce_len()].to_vec())
    } else {
        None
    };
    let sealed = aead_seal(alg, &k, plaintext, b"", nonce.as_deref())?;
    Ok(armor(version, &sealed))
}

fn decrypt_one(key: &Key, ciphertext: &str, context: &Option<Vec<u8>>) -> Out<(u64, Vec<u8>)> {
    let alg = key.aead()?;
    let (version, body) = unarmor(ciphertext, "ciphertext")?;
    key.check_decryption_version(version)?;
    let k = key.aead_key(version, context)?;
    match aead_open(alg, &k, &body, b"") {
        Ok(plain) => Ok((version, plain)),
        Err(e) if e.code == "DECRYPT_FAILED" => {
            fail("DECRYPT_FAILED", "the ciphertext failed authentication: forged, truncated, or of another key or context")
        }
        Err(e) => Err(e.into()),
    }
}

fn item_error(f: &Fail) -> Value {
    Value::map(vec![("error", Value::from(format!("{}: {}", f.code, f.message))), ("code", Value::from(f.code))])
}

/// The items of a request: `batch_input` (a list of maps), or the request itself as one item.
fn items(r: &Request) -> Out<(bool, &[Value])> {
    let (batch, list) = match r.get("batch_input") {
        None | Some(Value::Nil) => (false, std::slice::from_ref(&r.fields)),
        Some(Value::Array(list)) if !list.is_empty() && list.len() <= BATCH_MAX => (true, &list[..]),
        Some(_) => return invalid(format!("batch_input: a list of 1 to {} items", BATCH_MAX)),
    };
    // The whole request's input, bounded before any work: a call's fuel (the manifest's
    // 2e9) covers about 8 MiB of base64 through the AEADs, and a call that runs out traps.
    let total: usize = list.iter().map(|item| {
        ["plaintext", "ciphertext", "context"].iter().map(|f| item.get(f).and_then(Value::as_bytes).map_or(0, <[u8]>::len)).sum::<usize>()
    }).sum();
    if total > BATCH_BYTES_MAX {
        return fail("VALUE_TOO_LARGE", format!("the request's input is {} bytes, over {}: split the batch", total, BATCH_BYTES_MAX));
    }
    Ok((batch, list))
}

fn reply(t: &str, batch: bool, results: Vec<Out<Value>>) -> Out<Response> {
    if batch {
        let out = results.into_iter().map(|r| r.unwrap_or_else(|f| item_error(&f))).collect();
        return Ok(Response::new(t).with("batch_results", Value::Array(out)));
    }
    let one = results.into_iter().next().unwrap_or_else(|| invalid("no input"))?;
    let mut resp = Response::new(t);
    if let Value::Map(entries) = one {
        for (k, v) in entries {
            if let Some(k) = k.as_str() {
                resp = resp.with(k, v);
            }
        }
    }
    Ok(resp)
}

// -- requests ----------------------------------------------------------------------------------

fn create(r: &Request, name: &str) -> Out<Response> {
    let kind = opt_str(r, "key_type")?.unwrap_or(XCHACHA).to_string();
    if ![XCHACHA, AES, ED25519].contains(&kind.as_str()) {
        return invalid(format!("key_type: one of {}, {}, {}", XCHACHA, AES, ED25519));
    }
    let derived = opt_bool(r, "derived")?.unwrap_or(false);
    let convergent = opt_bool(r, "convergent_encryption")?.unwrap_or(false);
    if convergent && !derived {
        return invalid("convergent_encryption needs derived: true (each context gets its own key)");
    }
    if kind == ED25519 && (derived || convergent) {
        return invalid("an ed25519 key is neither derived nor convergent here");
    }
    if let Ok((_, existing)) = load(name) {
        return Ok(Response::new("SecretsTransitKey").with("created", false).with("key", existing.describe(name)?));
    }
    let now = now_ms();
    let key = Key {
        kind,
        derived,
        convergent,
        exportable: opt_bool(r, "exportable")?.unwrap_or(false),
        deletion_allowed: false,
        min_decryption_version: 1,
        min_encryption_version: 0,
        min_available_version: 1,
        latest_version: 1,
        created_ms: now,
        versions: vec![(1, now, new_material()?)],
    };
    if !store::cas(&key_key(name), None, &key.to_value())? {
        let (_, existing) = load(name)?; // created concurrently: that one stands
        return Ok(Response::new("SecretsTransitKey").with("created", false).with("key", existing.describe(name)?));
    }
    Ok(Response::new("SecretsTransitKey").with("created", true).with("key", key.describe(name)?))
}

fn config(r: &Request, name: &str) -> Out<Response> {
    let min_dec = opt_int(r, "min_decryption_version", 1, VERSIONS_MAX as i64 * 1000)?.map(|v| v as u64);
    let min_enc = opt_int(r, "min_encryption_version", 0, VERSIONS_MAX as i64 * 1000)?.map(|v| v as u64);
    let deletion = opt_bool(r, "deletion_allowed")?;
    let exportable = opt_bool(r, "exportable")?;
    let key = update(name, &|k: &mut Key| {
        if let Some(v) = min_dec {
            if v > k.latest_version || v < k.min_available_version {
                return invalid(format!("min_decryption_version must be from min_available_version {} to the latest version {}",
                                       k.min_available_version, k.latest_version));
            }
            k.min_decryption_version = v;
        }
        if let Some(v) = min_enc {
            if v > k.latest_version || (v != 0 && v < k.min_available_version) {
                return invalid(format!("min_encryption_version must be 0 (the latest) or from {} to {}",
                                       k.min_available_version, k.latest_version));
            }
            k.min_encryption_version = v;
        }
        if k.min_encryption_version != 0 && k.min_encryption_version < k.min_decryption_version {
            return invalid("min_encryption_version must be 0 or at least min_decryption_version");
        }
        if let Some(d) = deletion {
            k.deletion_allowed = d;
        }
        match exportable {
            Some(false) if k.exportable => return invalid("exportable cannot be turned off once on (the key may have been exported)"),
            Some(e) => k.exportable = e,
            None => {}
        }
        Ok(())
    })?;
    Ok(Response::new("SecretsTransitKey").with("key", key.describe(name)?))
}

fn rotate(name: &str) -> Out<Response> {
    let material = new_material()?;
    let key = update(name, &|k: &mut Key| {
        if k.versions.len() as u64 >= VERSIONS_MAX {
            return fail("LIMIT_EXCEEDED", format!("{} versions kept: trim old versions first", VERSIONS_MAX));
        }
        k.latest_version += 1;
        k.versions.push((k.latest_version, now_ms(), material.clone()));
        Ok(())
    })?;
    Ok(Response::new("SecretsTransitKey").with("key", key.describe(name)?))
}

fn trim(r: &Request, name: &str) -> Out<Response> {
    let min = match opt_int(r, "min_available_version", 1, i64::MAX)? {
        Some(v) => v as u64,
        None => return invalid("min_available_version is required"),
    };
    let key = update(name, &|k: &mut Key| {
        if min < k.min_available_version {
            return invalid(format!("min_available_version cannot go back (it is {})", k.min_available_version));
        }
        if min > k.min_decryption_version || (k.min_encryption_version != 0 && min > k.min_encryption_version) {
            return invalid("min_available_version must be at most min_decryption_version and min_encryption_version: \
                            raise those first");
        }
        k.min_available_version = min;
        k.versions.retain(|(v, _, _)| *v >= min);
        Ok(())
    })?;
    Ok(Response::new("SecretsTransitKey").with("key", key.describe(name)?))
}

fn delete(name: &str) -> Out<Response> {
    let (_, key) = load(name)?;
    if !key.deletion_allowed {
        return fail("DELETION_NOT_ALLOWED", format!("transit key {:?}: set deletion_allowed first (config)", name));
    }
    store::delete(&key_key(name))?;
    Ok(Response::new("SecretsTransitDeleted").with("name", name))
}

fn encrypt(r: &Request, key: &Key) -> Out<Response> {
    let asked = opt_int(r, "key_version", 0, i64::MAX)?.unwrap_or(0) as u64;
    let version = key.encryption_version(asked)?;
    key.aead()?;
    let (batch, list) = items(r)?;
    let results = list
        .iter()
        .map(|item| {
            let plaintext = req_bytes(item, "plaintext")?;
            let context = opt_bytes(item, "context")?;
            let ct = encrypt_one(key, version, &plaintext, &context)?;
            Ok(Value::map(vec![("ciphertext", Value::from(ct)), ("key_version", Value::Int(version as i64))]))
        })
        .collect();
    reply("SecretsTransitEncrypted", batch, results)
}

fn decrypt(r: &Request, key: &Key) -> Out<Response> {
    key.aead()?;
    let (batch, list) = items(r)?;
    let results = list
        .iter()
        .map(|item| {
            let (version, plain) = decrypt_one(key, str_in(item, "ciphertext")?, &opt_bytes(item, "context")?)?;
            Ok(Value::map(vec![("plaintext", Value::from(b64::encode(&plain))), ("key_version", Value::Int(version as i64))]))
        })
        .collect();
    reply("SecretsTransitDecrypted", batch, results)
}

fn rewrap(r: &Request, key: &Key) -> Out<Response> {
    let asked = opt_int(r, "key_version", 0, i64::MAX)?.unwrap_or(0) as u64;
    let version = key.encryption_version(asked)?;
    key.aead()?;
    let (batch, list) = items(r)?;
    let results = list
        .iter()
        .map(|item| {
            let context = opt_bytes(item, "context")?;
            let (_, plain) = decrypt_one(key, str_in(item, "ciphertext")?, &context)?;
            let ct = encrypt_one(key, version, &plain, &context)?;
            Ok(Value::map(vec![("ciphertext", Value::from(ct)), ("key_version", Value::Int(version as i64))]))
        })
        .collect();
    reply("SecretsTransitRewrapped", batch, results)
}

fn datakey(r: &Request, key: &Key) -> Out<Response> {
    let kind = opt_str(r, "key_kind")?.unwrap_or("wrapped");
    if kind != "plaintext" && kind != "wrapped" {
        return invalid("key_kind: plaintext (the key and its wrapped form) or wrapped (the wrapped form only)");
    }
    let bits = opt_int(r, "bits", 128, 512)?.unwrap_or(256);
    if bits != 128 && bits != 256 && bits != 512 {
        return invalid("bits: 128, 256 or 512");
    }
    let version = key.encryption_version(0)?;
    let context = opt_bytes(&r.fields, "context")?;
    let plain = random_bytes((bits / 8) as u32)?;
    let ct = encrypt_one(key, version, &plain, &context)?;
    let mut resp = Response::new("SecretsTransitDatakey").with("ciphertext", ct).with("key_version", version);
    if kind == "plaintext" {
        resp = resp.with("plaintext", b64::encode(&plain));
    }
    Ok(resp)
}

fn sign(r: &Request, key: &Key) -> Out<Response> {
    if key.kind != ED25519 {
        return fail("UNSUPPORTED_OPERATION", format!("a {} key does not sign: create an ed25519 key", key.kind));
    }
    let asked = opt_int(r, "key_version", 0, i64::MAX)?.unwrap_or(0) as u64;
    let version = key.encryption_version(asked)?;
    let input = req_bytes(&r.fields, "input")?;
    let sig = ed25519_sign(key.material(version)?, &input)?;
    Ok(Response::new("SecretsTransitSigned").with("signature", armor(version, &sig)).with("key_version", version))
}

fn verify(r: &Request, key: &Key) -> Out<Response> {
    let input = req_bytes(&r.fields, "input")?;
    if let Some(Value::Str(mac)) = r.get("hmac") {
        let (version, given) = unarmor(mac, "hmac")?;
        key.check_decryption_version(version)?;
        let want = hmac_sha256(&key.hmac_key(version)?, &input)?;
        // Constant time: every byte is compared whatever the first difference.
        let same = given.len() == want.len() && given.iter().zip(want.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        return Ok(Response::new("SecretsTransitVerified").with("valid", same).with("key_version", version));
    }
    if key.kind != ED25519 {
        return fail("UNSUPPORTED_OPERATION", format!("a {} key has no signatures: verify an 'hmac' instead", key.kind));
    }
    let signature = match r.get("signature") {
        Some(Value::Str(s)) => s,
        _ => return invalid("'signature' (or 'hmac') is required"),
    };
    let (version, sig) = unarmor(signature, "signature")?;
    key.check_decryption_version(version)?;
    if sig.len() != 64 {
        return Ok(Response::new("SecretsTransitVerified").with("valid", false).with("key_version", version));
    }
    let public = ed25519_public_key(key.material(version)?)?;
    let valid = ed25519_verify(&public, &input, &sig)?;
    Ok(Response::new("SecretsTransitVerified").with("valid", valid).with("key_version", version))
}

fn hmac(r: &Request, key: &Key) -> Out<Response> {
    let asked = opt_int(r, "key_version", 0, i64::MAX)?.unwrap_or(0) as u64;
    let version = key.encryption_version(asked)?;
    let input = req_bytes(&r.fields, "input")?;
    let mac = hmac_sha256(&key.hmac_key(version)?, &input)?;
    Ok(Response::new("SecretsTransitHmac").with("hmac", armor(version, &mac)).with("key_version", version))
}

fn export(r: &Request, name: &str, key: &Key) -> Out<Response> {
    if !key.exportable {
        return fail("NOT_EXPORTABLE", format!("transit key {:?} is not exportable", name));
    }
    let kind = str_of(r, "export_type")?;
    let wanted: Vec<u64> = match r.get("version") {
        None | Some(Value::Nil) => key.versions.iter().map(|(v, _, _)| *v).collect(),
        Some(Value::Str(s)) if s == "latest" => vec![key.latest_version],
        Some(Value::Int(v)) if *v >= 1 => vec![*v as u64],
        Some(_) => return invalid("version: a version number or \"latest\""),
    };
    let mut keys = Vec::new();
    for v in wanted {
        let material = match kind {
            "encryption-key" => {
                key.aead()?;
                key.material(v)?.to_vec()
            }
            "signing-key" if key.kind == ED25519 => key.material(v)?.to_vec(),
            "signing-key" => return fail("UNSUPPORTED_OPERATION", "only an ed25519 key has a signing key"),
            "hmac-key" => key.hmac_key(v)?,
            _ => return invalid("export_type: encryption-key, signing-key or hmac-key"),
        };
        keys.push((Value::from(v.to_string()), Value::from(b64::encode(&material))));
    }
    Ok(Response::new("SecretsTransitExported").with("name", name).with("type", key.kind.as_str())
        .with("keys", Value::Map(keys)))
}

pub fn handle(t: &str, r: &Request, caller: &str) -> Out<Response> {
    if t == "SecretsTransitList" {
        check(caller, "transit/", "list")?;
        let prefix = key_key("");
        let names: Vec<Value> = store::keys(&prefix)?.into_iter().map(|k| Value::from(&k[prefix.len()..])).collect();
        return Ok(Response::new("SecretsTransitKeys").with("keys", Value::Array(names)));
    }
    let name = str_of(r, "name")?;
    check_name(name)?;
    let resource = format!("transit/{}", name);
    let cap = match t {
        "SecretsTransitCreate" | "SecretsTransitRotate" | "SecretsTransitConfig" | "SecretsTransitDelete"
        | "SecretsTransitTrim" => "manage",
        "SecretsTransitRead" => "read",
        "SecretsTransitEncrypt" | "SecretsTransitDatakey" | "SecretsTransitRewrap" => "encrypt",
        "SecretsTransitDecrypt" => "decrypt",
        "SecretsTransitSign" => "sign",
        "SecretsTransitVerify" => "verify",
        "SecretsTransitHmac" => "hmac",
        "SecretsTransitExport" => "export",
        _ => return fail("UNHANDLED", format!("secrets does not handle {}", t)),
    };
    check(caller, &resource, cap)?;
    if t == "SecretsTransitRewrap" {
        check(caller, &resource, "decrypt")?;
    }
    match t {
        "SecretsTransitCreate" => return create(r, name),
        "SecretsTransitRotate" => return rotate(name),
        "SecretsTransitConfig" => return config(r, name),
        "SecretsTransitDelete" => return delete(name),
        "SecretsTransitTrim" => return trim(r, name),
        _ => {}
    }
    let (_, key) = load(name)?;
    match t {
        "SecretsTransitRead" => Ok(Response::new("SecretsTransitKey").with("key", key.describe(name)?)),
        "SecretsTransitEncrypt" => encrypt(r, &key),
        "SecretsTransitDecrypt" => decrypt(r, &key),
        "SecretsTransitRewrap" => rewrap(r, &key),
        "SecretsTransitDatakey" => datakey(r, &key),
        "SecretsTransitSign" => sign(r, &key),
        "SecretsTransitVerify" => verify(r, &key),
        "SecretsTransitHmac" => hmac(r, &key),
        _ => export(r, name, &key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_is_equality() {
        let a: Vec<u8> = (0..40u8).collect();
        for n in 0..40 {
            assert!(same_bytes(&a[..n], &a[..n]));
            assert!(!same_bytes(&a[..n], &a[..n + 1]));
            for i in 0..n {
                let mut b = a[..n].to_vec();
                b[i] ^= 1;
                assert!(!same_bytes(&a[..n], &b), "{} {}", n, i);
            }
        }
    }

    #[test]
    fn ciphertext_syntax() {
        assert_eq!(unarmor("aspen:v12:Zm9v", "c").unwrap(), (12, b"foo".to_vec()));
        for bad in ["vault:v1:Zm9v", "aspen:v0:Zm9v", "aspen:v01:Zm9v", "aspen:v1Zm9v", "aspen:v:Zm9v", "aspen:vx:Zm9v",
                    "aspen:v1:Zm9", "aspen:v99999999999:Zm9v"] {
            assert_eq!(unarmor(bad, "c").unwrap_err().code, "INVALID_CIPHERTEXT", "{}", bad);
        }
    }
}
