//! The KV layout (all under `automerge:`, the plugin's kv_prefixes):
//!
//! - `automerge:doc:{doc}` -> empty: the document exists (AmListDocs scans these).
//! - `automerge:log:{doc}:{slot:012}` -> a log segment: change records (record.rs: hash,
//!   seq, size, actor, deps, and the chunk bytes or, for a chunk over INLINE_MAX_BYTES, a
//!   blob's BLAKE3 hash), at most SEGMENT_MAX_BYTES.
//!
//! Slots are dense from 0 and each is claimed with a compare-and-swap that expects it absent,
//! after reading every slot before it: so two pushes through different nodes never overwrite
//! each other, and the second (actor, seq) check sees every change committed before it.
//! A document is read a page of PAGE_SLOTS slots per scan (their keys share the prefix
//! without the last two digits), so every scan stays within the host's limit however long
//! the log grows, and a page holds at most PAGE_SLOTS * SEGMENT_MAX_BYTES.

use aspen_wasm_guest_sdk::prelude::*;

use crate::graph::{Data, Graph, Record};
use crate::record;

pub const PREFIX: &str = "automerge:";
/// A chunk up to this size lives in its log record; a bigger one in a blob.
pub const INLINE_MAX_BYTES: usize = 16 * 1024;
/// A segment's encoded size; one record (16 KiB inline + 1,024 deps) always fits.
pub const SEGMENT_MAX_BYTES: usize = 64 * 1024;
pub const PAGE_SLOTS: u64 = 100;
pub const SLOT_DIGITS: usize = 12;
/// How many slots one push may find taken by racing pushes before it gives up.
pub const RACES_MAX: u32 = 256;
pub const DOC_ID_MAX_BYTES: usize = 128;
pub const DOCS_LIST_MAX: u32 = 10_000;

/// Doc ids are 1 to 128 of `A-Z a-z 0-9 . _ ~ -`: no `:`, so one document's key prefix is
/// never another's (`a` and `a:b`).
pub fn check_doc_id(doc: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-');
    if doc.is_empty() || doc.len() > DOC_ID_MAX_BYTES || !doc.chars().all(ok_char) {
        return Err(format!("doc id must be 1 to {} characters of A-Z a-z 0-9 . _ ~ -", DOC_ID_MAX_BYTES));
    }
    Ok(())
}

pub fn doc_key(doc: &str) -> String {
    format!("{}doc:{}", PREFIX, doc)
}

fn slot_key(doc: &str, slot: u64) -> String {
    format!("{}log:{}:{:0width$}", PREFIX, doc, slot, width = SLOT_DIGITS)
}

fn page_prefix(doc: &str, page: u64) -> String {
    format!("{}log:{}:{:0width$}", PREFIX, doc, page, width = SLOT_DIGITS - 2)
}

fn decode_segment(key: &str, bytes: &[u8]) -> Result<Vec<Record>, HostError> {
    record::decode_segment(bytes)
        .ok_or_else(|| HostError::new("CORRUPT_LOG", format!("log segment {} is not a list of change records", key)))
}

/// A document's graph, and the first free slot of its log.
pub fn load(doc: &str) -> HostResult<(Graph, u64)> {
    let mut graph = Graph::default();
    let mut page = 0;
    loop {
        let rows = kv_scan_prefix(&page_prefix(doc, page), PAGE_SLOTS as u32)?;
        let full = rows.len() as u64 == PAGE_SLOTS;
        let count = rows.len() as u64;
        for (key, value) in rows {
            for record in decode_segment(&key, &value)? {
                graph.insert(record);
            }
        }
        if !full {
            return Ok((graph, page * PAGE_SLOTS + count));
        }
        page += 1;
    }
}

/// Claims `slot` for `records`: Ok(None) when written, Ok(Some(records)) of the segment a
/// racing push wrote there first.
pub fn claim(doc: &str, slot: u64, records: &[Record]) -> HostResult<Option<Vec<Record>>> {
    let key = slot_key(doc, slot);
    let value = record::encode_segment(records);
    match kv_compare_and_swap(&key, None, &value) {
        Ok(()) => Ok(None),
        Err(CasError::Conflict { actual: Some(bytes) }) => decode_segment(&key, &bytes).map(Some),
        Err(CasError::Conflict { actual: None }) => Err(HostError::new("CONFLICT", format!("slot {} changed under us", key))),
        Err(CasError::Host(e)) => Err(e),
    }
}

/// A change's chunk bytes.
pub fn chunk_bytes(r: &Record) -> HostResult<Vec<u8>> {
    match &r.data {
        Data::Inline(bytes) => Ok(bytes.clone()),
        Data::Blob(hash) => blob_get_data(hash)?
            .ok_or_else(|| HostError::new("DATA_MISSING", format!("the blob {} of change is missing", hash))),
    }
}

/// Stores a big chunk as a blob: the record keeps its hash.
pub fn put_blob(chunk: &[u8]) -> HostResult<String> {
    blob_put_data(chunk)
}

pub fn register(doc: &str) -> HostResult<()> {
    let key = doc_key(doc);
    if kv_get_value(&key)?.is_none() {
        kv_put_value(&key, b"")?;
    }
    Ok(())
}

/// Every doc id (at most DOCS_LIST_MAX; `truncated` says there are more) starting with `prefix`.
pub fn list(prefix: &str) -> HostResult<(Vec<String>, bool)> {
    let rows = kv_scan_prefix(&doc_key(prefix), DOCS_LIST_MAX)?;
    let truncated = rows.len() as u32 == DOCS_LIST_MAX;
    let start = doc_key("").len();
    Ok((rows.into_iter().map(|(k, _)| k[start..].to_string()).collect(), truncated))
}

/// Deletes a document's log and its entry; the number of keys deleted (0: no such doc).
/// Blobs of big changes stay: the host has no blob delete (they are content-addressed).
pub fn delete(doc: &str) -> HostResult<u64> {
    let mut deleted = kv_delete_key(&doc_key(doc))? as u64;
    let log_prefix = format!("{}log:{}:", PREFIX, doc);
    loop {
        // The first PAGE_SLOTS keys left, each round: a scan holds at most a page of segments.
        let rows = kv_scan_prefix(&log_prefix, PAGE_SLOTS as u32)?;
        if rows.is_empty() {
            return Ok(deleted);
        }
        let ops: Vec<KvBatchOp> = rows.into_iter().map(|(key, _)| KvBatchOp::Delete { key }).collect();
        deleted += u64::from(kv_batch_write(&ops)?);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_page_by_prefix() {
        assert_eq!(slot_key("d", 1234), "automerge:log:d:000000001234");
        assert!(slot_key("d", 1234).starts_with(&page_prefix("d", 12)));
        assert!(slot_key("d", 1199).starts_with(&page_prefix("d", 11)));
        assert!(!slot_key("d", 1200).starts_with(&page_prefix("d", 11)));
    }

    #[test]
    fn doc_ids() {
        assert!(check_doc_id("notes-2024_v1.x~y").is_ok());
        for bad in ["", "a:b", "a b", "ü", &"x".repeat(DOC_ID_MAX_BYTES + 1)] {
            assert!(check_doc_id(bad).is_err(), "{:?}", bad);
        }
    }

    #[test]
    fn the_biggest_record_fits_a_segment() {
        let r = Record {
            hash: [1; 32],
            actor: vec![2; crate::chunk::ACTOR_MAX_BYTES],
            seq: u64::MAX >> 1,
            deps: vec![[3; 32]; crate::chunk::DEPS_MAX],
            size_bytes: INLINE_MAX_BYTES as u64,
            data: Data::Inline(vec![4; INLINE_MAX_BYTES]),
        };
        assert!(1 + record::encoded_len(&r) <= SEGMENT_MAX_BYTES);
    }
}
