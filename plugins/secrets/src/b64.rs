//! Standard base64 (RFC 4648, with padding): Vault's encoding of plaintexts, contexts and
//! ciphertext bodies. A codec, not cryptography. Decoding is strict: no whitespace, canonical
//! padding, the unused bits of the last character zero.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn encode(data: &[u8]) -> String {
    let mut out = Vec::with_capacity(encoded_len(data.len()));
    encode_into(data, &mut out);
    String::from_utf8(out).unwrap_or_default() // the alphabet is ASCII: always valid
}

pub fn encoded_len(n: usize) -> usize {
    (n + 2) / 3 * 4
}

/// Append the base64 of `data` (ASCII) to `out`.
pub fn encode_into(data: &[u8], out: &mut Vec<u8>) {
    // Whole triples first, without per-character branches, into space made once: this runs
    // on every plaintext and ciphertext, and the guest pays for each instruction in fuel.
    let start = out.len();
    out.resize(start + encoded_len(data.len()), 0);
    let buf = &mut out[start..];
    let mut chunks = data.chunks_exact(3);
    for (c, o) in (&mut chunks).zip(buf.chunks_exact_mut(4)) {
        let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        o[0] = ALPHABET[(n >> 18) as usize & 63];
        o[1] = ALPHABET[(n >> 12) as usize & 63];
        o[2] = ALPHABET[(n >> 6) as usize & 63];
        o[3] = ALPHABET[n as usize & 63];
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let b1 = *rest.get(1).unwrap_or(&0);
        let n = (u32::from(rest[0]) << 16) | (u32::from(b1) << 8);
        let at = buf.len() - 4;
        buf[at] = ALPHABET[(n >> 18) as usize & 63];
        buf[at + 1] = ALPHABET[(n >> 12) as usize & 63];
        buf[at + 2] = if rest.len() == 2 { ALPHABET[(n >> 6) as usize & 63] } else { b'=' };
        buf[at + 3] = b'=';
    }
}

/// 0..=63 for an alphabet byte, 255 otherwise.
const fn table() -> [u8; 256] {
    let mut t = [255u8; 256];
    let mut i = 0;
    while i < 64 {
        t[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    t
}

const TABLE: [u8; 256] = table();

pub fn decode(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    if bytes.len() % 4 != 0 {
        return Err("base64: the length is not a multiple of 4".to_string());
    }
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let pad = bytes.iter().rev().take(2).take_while(|&&c| c == b'=').count();
    let body = &bytes[..bytes.len() - 4];
    let last = &bytes[bytes.len() - 4..];
    let mut out = vec![0u8; body.len() / 4 * 3];
    let mut bad = 0u8;
    for (q, o) in body.chunks_exact(4).zip(out.chunks_exact_mut(3)) {
        let (a, b, c, d) = (TABLE[q[0] as usize], TABLE[q[1] as usize], TABLE[q[2] as usize], TABLE[q[3] as usize]);
        // Checked once at the end: a branch per quad costs more than the rare wasted work.
        bad |= a | b | c | d;
        let n = (u32::from(a) << 18) | (u32::from(b) << 12) | (u32::from(c) << 6) | u32::from(d);
        o[0] = (n >> 16) as u8;
        o[1] = (n >> 8) as u8;
        o[2] = n as u8;
    }
    if bad & 0xc0 != 0 {
        return Err("base64: invalid character (or misplaced padding)".to_string());
    }
    let mut n: u32 = 0;
    for (i, &ch) in last.iter().enumerate() {
        let v = if i >= 4 - pad {
            0
        } else {
            match TABLE[ch as usize] {
                255 => return Err(format!("base64: invalid character {:?}", ch as char)),
                v => u32::from(v),
            }
        };
        n = (n << 6) | v;
    }
    let got = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
    if (pad == 1 && got[2] != 0) || (pad == 2 && (got[1] != 0 || got[2] != 0)) {
        return Err("base64: non-canonical padding bits".to_string());
    }
    out.extend_from_slice(&got[..3 - pad]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        for (plain, enc) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="),
                             ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")] {
            assert_eq!(encode(plain.as_bytes()), enc);
            assert_eq!(decode(enc).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn round_trips_every_length() {
        for n in 0..200usize {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(decode(&encode(&data)).unwrap(), data);
        }
    }

    #[test]
    fn refuses_bad_input() {
        for bad in ["Zg=", "Z===", "Zg==Zg==", "Zh==", "Zm9v\n", "Zm 9", "@@@@", "Zm=v", "=Zm9", "Zm9v=AAA"] {
            assert!(decode(bad).is_err(), "{}", bad);
        }
    }
}
