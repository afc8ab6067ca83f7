//! The binary layout of a log segment: a version byte, then records back to back. Decoding a
//! segment is the cost of every request (each reads the whole log), so records are laid out for
//! slicing, not as msgpack values: decoding 10,000 changes through the SDK's `Value` took
//! 60 M fuel before a single record was built.
//!
//! ```text
//! segment = 0x01 record*
//! record  = hash[32] seq:u64le size:u64le actor_len:u8 actor deps:u16le dep[32]* kind:u8 data_len:u32le data
//! kind    = 0: data is the change chunk; 1: data is the BLAKE3 hash (hex) of a blob holding it
//! ```

use crate::chunk::{Hash, HASH_BYTES};
use crate::graph::{Data, Record};

pub const SEGMENT_VERSION: u8 = 1;
const KIND_INLINE: u8 = 0;
const KIND_BLOB: u8 = 1;

/// The encoded size of a record, without encoding it.
pub fn encoded_len(r: &Record) -> usize {
    let data = match &r.data {
        Data::Inline(bytes) => bytes.len(),
        Data::Blob(hash) => hash.len(),
    };
    HASH_BYTES + 8 + 8 + 1 + r.actor.len() + 2 + HASH_BYTES * r.deps.len() + 1 + 4 + data
}

/// A segment of `records`. Actor ids are at most 255 bytes and deps at most 65,535 (the
/// checks in chunk.rs are tighter): the caller only passes checked records.
pub fn encode_segment(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + records.iter().map(encoded_len).sum::<usize>());
    out.push(SEGMENT_VERSION);
    for r in records {
        out.extend_from_slice(&r.hash);
        out.extend_from_slice(&r.seq.to_le_bytes());
        out.extend_from_slice(&r.size_bytes.to_le_bytes());
        out.push(r.actor.len() as u8);
        out.extend_from_slice(&r.actor);
        out.extend_from_slice(&(r.deps.len() as u16).to_le_bytes());
        for dep in &r.deps {
            out.extend_from_slice(dep);
        }
        let (kind, data) = match &r.data {
            Data::Inline(bytes) => (KIND_INLINE, bytes.as_slice()),
            Data::Blob(hash) => (KIND_BLOB, hash.as_bytes()),
        };
        out.push(kind);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }
    out
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn hash(&mut self) -> Option<Hash> {
        let mut h = [0u8; HASH_BYTES];
        h.copy_from_slice(self.take(HASH_BYTES)?);
        Some(h)
    }

    fn u64(&mut self) -> Option<u64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Some(u64::from_le_bytes(b))
    }
}

/// The records of a segment; None when it is not one (a corrupt or foreign value).
pub fn decode_segment(bytes: &[u8]) -> Option<Vec<Record>> {
    if bytes.first() != Some(&SEGMENT_VERSION) {
        return None;
    }
    let mut c = Cursor { bytes, pos: 1 };
    let mut out = Vec::new();
    while c.pos < bytes.len() {
        let hash = c.hash()?;
        let seq = c.u64()?;
        let size_bytes = c.u64()?;
        let actor_len = c.take(1)?[0] as usize;
        let actor = c.take(actor_len)?.to_vec();
        let d = c.take(2)?;
        let dep_count = u16::from_le_bytes([d[0], d[1]]) as usize;
        let mut deps = Vec::with_capacity(dep_count);
        for _ in 0..dep_count {
            deps.push(c.hash()?);
        }
        let kind = c.take(1)?[0];
        let l = c.take(4)?;
        let data_len = u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
        let data = c.take(data_len)?;
        let data = match kind {
            KIND_INLINE => Data::Inline(data.to_vec()),
            KIND_BLOB => Data::Blob(String::from_utf8(data.to_vec()).ok()?),
            _ => return None,
        };
        out.push(Record { hash, actor, seq, deps, size_bytes, data });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record> {
        vec![
            Record { hash: [9; 32], actor: vec![1, 2], seq: 7, deps: vec![[3; 32], [4; 32]], size_bytes: 3, data: Data::Inline(vec![1, 2, 3]) },
            Record { hash: [8; 32], actor: vec![5; 16], seq: 1 << 40, deps: vec![], size_bytes: 1 << 33, data: Data::Blob("ab".repeat(32)) },
        ]
    }

    #[test]
    fn segments_round_trip_and_sizes_add_up() {
        let records = sample();
        let bytes = encode_segment(&records);
        assert_eq!(bytes.len(), 1 + records.iter().map(encoded_len).sum::<usize>());
        assert_eq!(decode_segment(&bytes), Some(records));
        assert_eq!(decode_segment(&[SEGMENT_VERSION]), Some(vec![]));
    }

    #[test]
    fn anything_else_is_refused() {
        let bytes = encode_segment(&sample());
        assert_eq!(decode_segment(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode_segment(&[]), None);
        let mut other = bytes.clone();
        other[0] = 2;
        assert_eq!(decode_segment(&other), None);
    }
}
