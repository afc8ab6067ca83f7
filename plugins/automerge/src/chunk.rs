//! Automerge change chunks: framing, checksum and the few header fields a store needs.
//!
//! A chunk is `85 6f 4a 83` (magic), a 4-byte checksum, a type byte, ULEB128(len(body)) and
//! the body. The change's hash is SHA-256(type || ULEB(len) || body), which are exactly the
//! chunk's bytes from the type byte to the end, so they are hashed in place; the checksum is
//! the hash's first 4 bytes. A change body begins with its deps (ULEB count, then 32-byte
//! hashes), its actor (ULEB length, then bytes) and its seq (ULEB); the ops after that are
//! not read: a store keeps changes, it does not apply them.

pub const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
pub const HASH_BYTES: usize = 32;
pub const TYPE_DOCUMENT: u8 = 0;
pub const TYPE_CHANGE: u8 = 1;
pub const TYPE_COMPRESSED: u8 = 2;
pub const TYPE_BUNDLE: u8 = 3;
/// Bounds of what one change may claim: a dep list or actor past these is refused, so one
/// record (kept in a log segment) stays small however the change was made.
pub const DEPS_MAX: usize = 1024;
pub const ACTOR_MAX_BYTES: usize = 128;

pub type Hash = [u8; HASH_BYTES];

/// Why a chunk was refused: `code` is stable (clients match on it), `message` says more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkError {
    pub code: &'static str,
    pub message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> ChunkError {
    ChunkError { code, message: message.into() }
}

/// One framed chunk of the pushed bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub offset: usize,
    pub len: usize,
    pub chunk_type: u8,
    pub checksum: [u8; 4],
    /// Where the hashed bytes (type byte to end of body) start within the chunk.
    pub hashed_from: usize,
    /// Where the body starts within the chunk.
    pub body_from: usize,
}

/// The header fields a store keeps of a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeHeader {
    pub deps: Vec<Hash>,
    pub actor: Vec<u8>,
    pub seq: u64,
}

/// A ULEB128 at `data[*pos..]`, at most 10 bytes and 64 bits.
pub fn read_uleb(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let byte = *data.get(*pos)?;
        *pos += 1;
        let bits = u64::from(byte & 0x7f);
        if i == 9 && bits > 1 {
            return None; // over 64 bits
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

pub fn write_uleb(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The frame of the chunk at `data[offset..]`. An error here means the rest of the input
/// cannot be split into chunks (no magic, or a length past the end): the caller stops.
pub fn frame_at(data: &[u8], offset: usize) -> Result<Frame, ChunkError> {
    let rest = &data[offset..];
    if rest.len() < 4 || rest[..4] != MAGIC {
        return Err(refuse("BAD_MAGIC", format!("no chunk at byte {}: the magic bytes 85 6f 4a 83 are missing", offset)));
    }
    if rest.len() < 10 {
        return Err(refuse("TRUNCATED", format!("chunk at byte {}: {} bytes, too few for a chunk header", offset, rest.len())));
    }
    let mut checksum = [0u8; 4];
    checksum.copy_from_slice(&rest[4..8]);
    let chunk_type = rest[8];
    let mut pos = 9;
    let body_len = read_uleb(rest, &mut pos)
        .ok_or_else(|| refuse("TRUNCATED", format!("chunk at byte {}: its length is cut off or malformed", offset)))?;
    let mut canonical = Vec::new();
    write_uleb(body_len, &mut canonical);
    if pos - 9 != canonical.len() {
        // The hash covers the length as written; Automerge hashes its shortest form. A padded
        // one would give this change a hash no client agrees with.
        return Err(refuse("INVALID_CHANGE", format!("chunk at byte {}: its length is not in shortest ULEB128 form", offset)));
    }
    let end = (pos as u64).checked_add(body_len).filter(|&e| e <= rest.len() as u64).ok_or_else(|| {
        refuse("TRUNCATED", format!("chunk at byte {} claims {} body bytes; only {} follow", offset, body_len, rest.len() - pos))
    })?;
    Ok(Frame { offset, len: end as usize, chunk_type, checksum, hashed_from: 8, body_from: pos })
}

/// The type check: only changes (type 1) are stored.
pub fn check_type(chunk_type: u8) -> Result<(), ChunkError> {
    match chunk_type {
        TYPE_CHANGE => Ok(()),
        TYPE_COMPRESSED => Err(refuse(
            "COMPRESSED_UNSUPPORTED",
            "a DEFLATE-compressed change (type 2): this store does not inflate; push uncompressed changes (getChanges, getChangesSince)",
        )),
        TYPE_DOCUMENT => Err(refuse(
            "DOCUMENT_CHUNK",
            "a whole-document chunk (type 0, from save()): push its changes instead (getAllChanges)",
        )),
        TYPE_BUNDLE => Err(refuse("BUNDLE_CHUNK", "a bundle chunk (type 3): push its changes one by one")),
        other => Err(refuse("UNKNOWN_CHUNK_TYPE", format!("chunk type {} is not an Automerge change", other))),
    }
}

/// The checksum check: the first 4 bytes of the change's hash.
pub fn check_checksum(frame: &Frame, hash: &Hash) -> Result<(), ChunkError> {
    if hash[..4] == frame.checksum {
        Ok(())
    } else {
        Err(refuse("BAD_CHECKSUM", format!(
            "chunk at byte {}: checksum {} is not the first 4 bytes of its SHA-256 ({})",
            frame.offset, hex(&frame.checksum), hex(&hash[..4])
        )))
    }
}

/// Deps, actor and seq from the start of a change body.
pub fn parse_header(body: &[u8]) -> Result<ChangeHeader, ChunkError> {
    let bad = |what: &str| refuse("INVALID_CHANGE", format!("change body: {}", what));
    let mut pos = 0;
    let count = read_uleb(body, &mut pos).ok_or_else(|| bad("the deps count is malformed"))?;
    if count > DEPS_MAX as u64 {
        return Err(refuse("TOO_MANY_DEPS", format!("a change with {} deps; at most {}", count, DEPS_MAX)));
    }
    let mut deps = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let end = pos + HASH_BYTES;
        let bytes = body.get(pos..end).ok_or_else(|| bad("a dep hash is cut off"))?;
        let mut dep = [0u8; HASH_BYTES];
        dep.copy_from_slice(bytes);
        deps.push(dep);
        pos = end;
    }
    let actor_len = read_uleb(body, &mut pos).ok_or_else(|| bad("the actor length is malformed"))?;
    if actor_len == 0 || actor_len > ACTOR_MAX_BYTES as u64 {
        return Err(bad(&format!("actor id of {} bytes; must be 1 to {}", actor_len, ACTOR_MAX_BYTES)));
    }
    let actor = body.get(pos..pos + actor_len as usize).ok_or_else(|| bad("the actor id is cut off"))?.to_vec();
    pos += actor_len as usize;
    let seq = read_uleb(body, &mut pos).ok_or_else(|| bad("the seq is malformed"))?;
    if seq == 0 {
        return Err(bad("seq 0 (seqs start at 1)"));
    }
    Ok(ChangeHeader { deps, actor, seq })
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// A 64-hex-digit change hash (lowercase or uppercase), as Automerge's heads are written.
pub fn parse_hash(text: &str) -> Option<Hash> {
    let bytes = text.as_bytes();
    if bytes.len() != HASH_BYTES * 2 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; HASH_BYTES];
    for (i, pair) in bytes.chunks(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(deps: &[Hash], actor: &[u8], seq: u64) -> Vec<u8> {
        let mut b = Vec::new();
        write_uleb(deps.len() as u64, &mut b);
        for d in deps {
            b.extend_from_slice(d);
        }
        write_uleb(actor.len() as u64, &mut b);
        b.extend_from_slice(actor);
        write_uleb(seq, &mut b);
        b.extend_from_slice(&[1, 2, 0, 0]); // start op, time, message: not read
        b
    }

    fn chunk(chunk_type: u8, body: &[u8]) -> Vec<u8> {
        let mut c = MAGIC.to_vec();
        c.extend_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd, chunk_type]);
        write_uleb(body.len() as u64, &mut c);
        c.extend_from_slice(body);
        c
    }

    #[test]
    fn uleb_round_trips_and_bounds() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut out = Vec::new();
            write_uleb(v, &mut out);
            let mut pos = 0;
            assert_eq!(read_uleb(&out, &mut pos), Some(v));
            assert_eq!(pos, out.len());
        }
        let mut pos = 0;
        assert_eq!(read_uleb(&[0x80, 0x80], &mut pos), None);
        let mut pos = 0;
        assert_eq!(read_uleb(&[0xff; 11], &mut pos), None);
    }

    #[test]
    fn frames_and_headers() {
        let dep = [7u8; 32];
        let b = body(&[dep], b"actor-1", 3);
        let mut data = chunk(TYPE_CHANGE, &b);
        data.extend(chunk(TYPE_CHANGE, &body(&[], b"a", 1)));
        let f = frame_at(&data, 0).unwrap();
        assert_eq!((f.chunk_type, f.checksum, f.len), (1, [0xaa, 0xbb, 0xcc, 0xdd], 10 + b.len()));
        let h = parse_header(&data[f.body_from..f.len]).unwrap();
        assert_eq!(h, ChangeHeader { deps: vec![dep], actor: b"actor-1".to_vec(), seq: 3 });
        let g = frame_at(&data, f.len).unwrap();
        assert_eq!(g.offset + g.len, data.len());
    }

    #[test]
    fn refusals() {
        let data = chunk(TYPE_CHANGE, &body(&[], b"a", 1));
        assert_eq!(frame_at(&data[..data.len() - 1], 0).unwrap_err().code, "TRUNCATED");
        let mut wrong = data.clone();
        wrong[0] = 0x86;
        assert_eq!(frame_at(&wrong, 0).unwrap_err().code, "BAD_MAGIC");
        assert_eq!(frame_at(&data[..3], 0).unwrap_err().code, "BAD_MAGIC");
        assert_eq!(frame_at(&data[..9], 0).unwrap_err().code, "TRUNCATED");
        let mut padded = data[..9].to_vec();
        padded.extend_from_slice(&[0x80 | data[9], 0x00]);
        padded.extend_from_slice(&data[10..]);
        assert_eq!(frame_at(&padded, 0).unwrap_err().code, "INVALID_CHANGE");
        assert_eq!(check_type(2).unwrap_err().code, "COMPRESSED_UNSUPPORTED");
        assert_eq!(check_type(0).unwrap_err().code, "DOCUMENT_CHUNK");
        assert_eq!(check_type(3).unwrap_err().code, "BUNDLE_CHUNK");
        assert!(check_type(1).is_ok());
        let f = frame_at(&data, 0).unwrap();
        let mut hash = [0u8; 32];
        assert_eq!(check_checksum(&f, &hash).unwrap_err().code, "BAD_CHECKSUM");
        hash[..4].copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert!(check_checksum(&f, &hash).is_ok());
        assert_eq!(parse_header(&body(&[], b"a", 0)).unwrap_err().code, "INVALID_CHANGE");
        assert_eq!(parse_header(&body(&[], b"", 1)).unwrap_err().code, "INVALID_CHANGE");
        assert_eq!(parse_header(&[1, 2, 3]).unwrap_err().code, "INVALID_CHANGE");
        let mut many = Vec::new();
        write_uleb(DEPS_MAX as u64 + 1, &mut many);
        assert_eq!(parse_header(&many).unwrap_err().code, "TOO_MANY_DEPS");
    }

    #[test]
    fn hashes_in_hex() {
        let h = [0xabu8; 32];
        assert_eq!(parse_hash(&hex(&h)), Some(h));
        assert_eq!(parse_hash(&hex(&h).to_uppercase()), Some(h));
        assert_eq!(parse_hash("ab"), None);
        assert_eq!(parse_hash(&"zz".repeat(32)), None);
    }
}
