//! ABI v3 (docs/HOST_ABI.md): vetted crypto computed by the node (permission `crypto`) and the
//! barrier (permission `barrier`), as safe wrappers. A plugin that calls these needs a v3
//! node; one that does not still runs on v1 and v2 nodes.
//!
//! Nothing is hand-rolled: XChaCha20-Poly1305 and Ed25519 are libsodium's, AES-256-GCM,
//! HMAC-SHA256 and HKDF-SHA256 OpenSSL's. Errors are `HostError`s with explicit codes:
//! `PERMISSION_DENIED`, `INVALID_ARGUMENT`, `LIMIT_EXCEEDED`, `DECRYPT_FAILED` (a forged,
//! truncated or wrong-key ciphertext: one error, no oracle) and `SEALED` (the node has no
//! data key yet: docs/SECRETS.md).

use crate::host::{bool_of, bytes_of, required, required_bin, HostResult};
use crate::msgpack::{self, Value};

#[cfg(target_arch = "wasm32")]
mod ffi {
    #[link(wasm_import_module = "aspen")]
    extern "C" {
        pub fn crypto_aead_seal(args_ptr: i32, args_len: i32) -> i64;
        pub fn crypto_aead_open(args_ptr: i32, args_len: i32) -> i64;
        pub fn crypto_hmac_sha256(key_ptr: i32, key_len: i32, data_ptr: i32, data_len: i32) -> i64;
        pub fn crypto_hkdf_sha256(args_ptr: i32, args_len: i32) -> i64;
        pub fn crypto_ed25519_public_key(seed_ptr: i32, seed_len: i32) -> i64;
        pub fn crypto_ed25519_sign(seed_ptr: i32, seed_len: i32, data_ptr: i32, data_len: i32) -> i64;
        pub fn crypto_ed25519_verify(k: i32, kl: i32, d: i32, dl: i32, s: i32, sl: i32) -> i64;
        pub fn crypto_random_bytes(count: i32) -> i64;
        pub fn barrier_seal(aad_ptr: i32, aad_len: i32, data_ptr: i32, data_len: i32) -> i64;
        pub fn barrier_open(aad_ptr: i32, aad_len: i32, data_ptr: i32, data_len: i32) -> i64;
        pub fn barrier_status() -> i64;
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::missing_safety_doc)]
mod ffi {
    use crate::host::NO_HOST;
    macro_rules! absent {
        ($($name:ident($($arg:ident),*);)*) => {
            $(pub unsafe fn $name($($arg: i32),*) -> i64 { $(let _ = $arg;)* NO_HOST })*
        };
    }
    absent! {
        crypto_aead_seal(a, b); crypto_aead_open(a, b); crypto_hmac_sha256(a, b, c, d);
        crypto_hkdf_sha256(a, b); crypto_ed25519_public_key(a, b); crypto_ed25519_sign(a, b, c, d);
        crypto_ed25519_verify(a, b, c, d, e, f); crypto_random_bytes(a); barrier_seal(a, b, c, d);
        barrier_open(a, b, c, d); barrier_status();
    }
}

fn ptr(bytes: &[u8]) -> (i32, i32) {
    (bytes.as_ptr() as usize as i32, bytes.len() as i32)
}

/// An AEAD the node offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aead {
    /// XChaCha20-Poly1305 (libsodium): 32-byte key, 24-byte nonce (random nonces are safe).
    XChaCha20Poly1305,
    /// AES-256-GCM (OpenSSL): 32-byte key, 12-byte nonce.
    Aes256Gcm,
}

impl Aead {
    pub fn name(self) -> &'static str {
        match self {
            Aead::XChaCha20Poly1305 => "xchacha20-poly1305",
            Aead::Aes256Gcm => "aes256-gcm",
        }
    }

    pub fn nonce_len(self) -> usize {
        match self {
            Aead::XChaCha20Poly1305 => 24,
            Aead::Aes256Gcm => 12,
        }
    }
}

/// The AEAD functions' argument map, written straight from the caller's slices: building
/// `Value`s first copied every plaintext twice more (into the tree, then into the message).
fn aead_args(alg: Aead, fields: &[(&str, &[u8])]) -> Vec<u8> {
    let size = 1 + msgpack::str_len("alg") + msgpack::str_len(alg.name())
        + fields.iter().map(|(name, b)| msgpack::str_len(name) + msgpack::bin_len(b)).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    msgpack::write_map_len(&mut out, 1 + fields.len());
    msgpack::write_str(&mut out, "alg");
    msgpack::write_str(&mut out, alg.name());
    for (name, bytes) in fields {
        msgpack::write_str(&mut out, name);
        msgpack::write_bin(&mut out, bytes);
    }
    out
}

/// `nonce || ciphertext || tag` of `plaintext` under `key`, bound to `aad`. `nonce` None: the
/// node draws a random one.
pub fn aead_seal(alg: Aead, key: &[u8], plaintext: &[u8], aad: &[u8], nonce: Option<&[u8]>) -> HostResult<Vec<u8>> {
    let packed = match nonce {
        Some(n) => aead_args(alg, &[("key", key), ("plaintext", plaintext), ("aad", aad), ("nonce", n)]),
        None => aead_args(alg, &[("key", key), ("plaintext", plaintext), ("aad", aad)]),
    };
    let (a, al) = ptr(&packed);
    required_bin(unsafe { ffi::crypto_aead_seal(a, al) })
}

/// The plaintext of `aead_seal`'s output; `DECRYPT_FAILED` for anything forged or truncated.
pub fn aead_open(alg: Aead, key: &[u8], sealed: &[u8], aad: &[u8]) -> HostResult<Vec<u8>> {
    let packed = aead_args(alg, &[("key", key), ("sealed", sealed), ("aad", aad)]);
    let (a, al) = ptr(&packed);
    required_bin(unsafe { ffi::crypto_aead_open(a, al) })
}

fn fixed<const N: usize>(bytes: Vec<u8>) -> HostResult<[u8; N]> {
    if bytes.len() != N {
        return Err(crate::host::HostError::new("HOST_ERROR", "unexpected length in host result"));
    }
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes);
    Ok(out)
}

/// HMAC-SHA256 (RFC 2104 / 4231).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> HostResult<[u8; 32]> {
    let (k, kl) = ptr(key);
    let (d, dl) = ptr(data);
    fixed(bytes_of(required(unsafe { ffi::crypto_hmac_sha256(k, kl, d, dl) })?)?)
}

/// HKDF-SHA256 (RFC 5869): `length` (1 to 8,160) bytes from `ikm`, `salt` and `info`.
pub fn hkdf_sha256(ikm: &[u8], salt: &[u8], info: &[u8], length: usize) -> HostResult<Vec<u8>> {
    let packed = Value::map(vec![
        ("ikm", Value::Bin(ikm.to_vec())),
        ("salt", Value::Bin(salt.to_vec())),
        ("info", Value::Bin(info.to_vec())),
        ("length", Value::Int(length.min(i64::MAX as usize) as i64)),
    ])
    .encode();
    let (a, al) = ptr(&packed);
    bytes_of(required(unsafe { ffi::crypto_hkdf_sha256(a, al) })?)
}

/// The Ed25519 public key of a 32-byte seed (RFC 8032's secret key).
pub fn ed25519_public_key(seed: &[u8]) -> HostResult<[u8; 32]> {
    let (s, sl) = ptr(seed);
    fixed(bytes_of(required(unsafe { ffi::crypto_ed25519_public_key(s, sl) })?)?)
}

/// An Ed25519 signature of `data` by the key of `seed`.
pub fn ed25519_sign(seed: &[u8], data: &[u8]) -> HostResult<[u8; 64]> {
    let (s, sl) = ptr(seed);
    let (d, dl) = ptr(data);
    fixed(bytes_of(required(unsafe { ffi::crypto_ed25519_sign(s, sl, d, dl) })?)?)
}

pub fn ed25519_verify(public_key: &[u8], data: &[u8], signature: &[u8]) -> HostResult<bool> {
    let (k, kl) = ptr(public_key);
    let (d, dl) = ptr(data);
    let (s, sl) = ptr(signature);
    bool_of(required(unsafe { ffi::crypto_ed25519_verify(k, kl, d, dl, s, sl) })?)
}

/// `count` (1 to 4,096) bytes from the node's CSPRNG.
pub fn random_bytes(count: u32) -> HostResult<Vec<u8>> {
    bytes_of(required(unsafe { ffi::crypto_random_bytes(count.min(i32::MAX as u32) as i32) })?)
}

/// Seal `data` under this plugin's barrier key (derived from the cluster's data key, which
/// only the node's memory holds), bound to `aad` (for example the KV key it is stored under).
pub fn barrier_seal(aad: &[u8], data: &[u8]) -> HostResult<Vec<u8>> {
    let (a, al) = ptr(aad);
    let (d, dl) = ptr(data);
    required_bin(unsafe { ffi::barrier_seal(a, al, d, dl) })
}

pub fn barrier_open(aad: &[u8], sealed: &[u8]) -> HostResult<Vec<u8>> {
    let (a, al) = ptr(aad);
    let (d, dl) = ptr(sealed);
    required_bin(unsafe { ffi::barrier_open(a, al, d, dl) })
}

/// `Ok(true)` while the node is sealed (barrier_seal/open would answer `SEALED`).
pub fn barrier_sealed() -> HostResult<bool> {
    bool_of(required(unsafe { ffi::barrier_status() })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natively_there_is_no_host() {
        assert_eq!(hmac_sha256(b"k", b"d").unwrap_err().code, "NO_HOST");
        assert_eq!(barrier_seal(b"a", b"d").unwrap_err().code, "NO_HOST");
        assert_eq!(Aead::XChaCha20Poly1305.nonce_len(), 24);
    }

    #[test]
    fn aead_args_are_the_map_the_host_reads() {
        let got = Value::decode(&aead_args(Aead::Aes256Gcm, &[("key", &[1u8; 32]), ("plaintext", &[2u8; 300])])).unwrap();
        assert_eq!(got.get("alg").and_then(Value::as_str), Some("aes256-gcm"));
        assert_eq!(got.get("key"), Some(&Value::Bin(vec![1; 32])));
        assert_eq!(got.get("plaintext"), Some(&Value::Bin(vec![2; 300])));
    }
}
