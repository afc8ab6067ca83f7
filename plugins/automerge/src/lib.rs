//! automerge: a store and sync peer for Automerge documents (docs/AUTOMERGE.md).
//!
//! A document is the set of its change chunks and their dependency graph; the plugin never
//! applies ops. Clients push the changes the server lacks (`getChangesSince(doc, serverHeads)`)
//! and pull the ones they lack (by their heads); every change is checked (framing, checksum by
//! the host's SHA-256, type, one hash per actor and seq) before it is stored.
//!
//! ```text
//! AmPush {doc, changes: bin}            -> AmPushResult {stored, duplicate, rejected, errors, heads, missing_deps, pending}
//! AmPull {doc, heads?: [hex], max_bytes?} -> AmPullResult {changes: bin, count, more, next_heads, heads}
//! AmHeads {doc}                         -> AmHeadsResult {heads, changes, pending, missing_deps}
//! AmGetChange {doc, hash}               -> AmChange {hash, change: bin, actor, seq, deps, complete}
//! AmListDocs {prefix?}                  -> AmDocs {docs, truncated}
//! AmDeleteDoc {doc}                     -> AmDeleted {deleted, keys_deleted}
//! ```

pub mod chunk;
pub mod fasthash;
pub mod graph;
pub mod record;
pub mod store;

use aspen_wasm_guest_sdk::prelude::*;

use chunk::{hex, parse_hash, Hash};
use fasthash::FastMap;
use graph::{Admission, Data, Graph, Record};

pub const NAME: &str = "automerge";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The most one push may carry (a request frame is at most 64 MiB).
pub const PUSH_MAX_BYTES: usize = 32 * 1024 * 1024;
pub const PULL_DEFAULT_BYTES: u64 = 8 * 1024 * 1024;
pub const PULL_MAX_BYTES: u64 = 32 * 1024 * 1024;
/// Heads a pull may name (a document's heads are as many as its concurrent branches).
pub const HEADS_MAX: usize = 1024;
/// Lists in answers are cut at these (their counts are whole).
pub const ERRORS_MAX: usize = 100;
pub const MISSING_MAX: usize = 1000;

pub struct Automerge;

/// A refusal of one pushed chunk.
pub struct Rejection {
    /// Where the chunk starts in the pushed bytes (None: a DUPLICATE_SEQ, named by its hash).
    pub offset: Option<usize>,
    pub code: &'static str,
    pub message: String,
}

fn fail(e: HostError) -> ClientRpcResponse {
    ClientRpcResponse::Error(error_response(&e.code, e.message))
}

fn invalid(message: impl std::fmt::Display) -> ClientRpcResponse {
    ClientRpcResponse::error("INVALID_REQUEST", message)
}

fn hex_list(hashes: &[Hash], max: usize) -> Value {
    Value::Array(hashes.iter().take(max).map(|h| Value::Str(hex(h))).collect())
}

fn doc_of(r: &Request) -> Result<&str, ClientRpcResponse> {
    let doc = r.str_field("doc").ok_or_else(|| invalid(format!("{}: 'doc' must be a string", r.type_name)))?;
    store::check_doc_id(doc).map_err(invalid)?;
    Ok(doc)
}

/// Splits pushed bytes into checked change records (chunk bytes inline for now); what is
/// refused is listed. A framing error (magic, length) ends the split: nothing after it can
/// be found.
pub fn split_changes(data: &[u8], sha256: impl Fn(&[u8]) -> HostResult<Hash>) -> HostResult<(Vec<Record>, Vec<Rejection>)> {
    let mut records = Vec::new();
    let mut rejected = Vec::new();
    let mut offset = 0;
    while offset < data.len() {
        let frame = match chunk::frame_at(data, offset) {
            Ok(f) => f,
            Err(e) => {
                rejected.push(Rejection { offset: Some(offset), code: e.code, message: e.message });
                break;
            }
        };
        let bytes = &data[offset..offset + frame.len];
        offset += frame.len;
        let checked = chunk::check_type(frame.chunk_type).and_then(|()| {
            let hash = sha256(&bytes[frame.hashed_from..]).map_err(|e| chunk::ChunkError { code: "HASH_FAILED", message: e.to_string() })?;
            chunk::check_checksum(&frame, &hash)?;
            Ok((hash, chunk::parse_header(&bytes[frame.body_from..])?))
        });
        match checked {
            Ok((hash, header)) => records.push(Record {
                hash,
                actor: header.actor,
                seq: header.seq,
                deps: header.deps,
                size_bytes: bytes.len() as u64,
                data: Data::Inline(bytes.to_vec()),
            }),
            Err(e) => rejected.push(Rejection { offset: Some(frame.offset), code: e.code, message: e.message }),
        }
    }
    Ok((records, rejected))
}

/// Sorts pushed records against the stored graph: new ones are returned, the rest counted.
fn sift(graph: &Graph, records: Vec<Record>, duplicate: &mut u64, rejected: &mut Vec<Rejection>) -> Vec<Record> {
    let mut fresh: Vec<Record> = Vec::new();
    let mut seen: FastMap<Hash, ()> = FastMap::default();
    let mut seqs: FastMap<(Vec<u8>, u64), Hash> = FastMap::default();
    for r in records {
        let taken = match graph.admission(&r.hash, &r.actor, r.seq) {
            Admission::Duplicate => {
                *duplicate += 1;
                continue;
            }
            Admission::SeqTaken(other) => Some(other),
            Admission::New => None,
        };
        if seen.contains_key(&r.hash) {
            *duplicate += 1;
            continue;
        }
        let other = taken.or_else(|| seqs.get(&(r.actor.clone(), r.seq)).copied());
        if let Some(other) = other {
            rejected.push(Rejection {
                offset: None,
                code: "DUPLICATE_SEQ",
                message: format!(
                    "change {} is seq {} of actor {}, which change {} already is: Automerge cannot load both",
                    hex(&r.hash), r.seq, hex(&r.actor), hex(&other)
                ),
            });
            continue;
        }
        seen.insert(r.hash, ());
        seqs.insert((r.actor.clone(), r.seq), r.hash);
        fresh.push(r);
    }
    fresh
}

fn push(r: &Request) -> ClientRpcResponse {
    let doc = match doc_of(r) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let data = match r.get("changes") {
        Some(Value::Bin(b)) => b,
        _ => return invalid("AmPush: 'changes' must be bytes (concatenated change chunks)"),
    };
    if data.len() > PUSH_MAX_BYTES {
        return invalid(format!("AmPush: {} bytes of changes; at most {} a push", data.len(), PUSH_MAX_BYTES));
    }
    match push_changes(doc, data) {
        Ok(response) => ClientRpcResponse::Custom(response),
        Err(e) => fail(e),
    }
}

fn push_changes(doc: &str, data: &[u8]) -> HostResult<Response> {
    let (records, mut rejected) = split_changes(data, sha256_digest)?;
    let (mut graph, mut slot) = store::load(doc)?;
    let mut duplicate = 0;
    let mut pending = sift(&graph, records, &mut duplicate, &mut rejected);
    // Big chunks go to blobs before any record names them.
    for r in pending.iter_mut() {
        if let Data::Inline(bytes) = &r.data {
            if bytes.len() > store::INLINE_MAX_BYTES {
                r.data = Data::Blob(store::put_blob(bytes)?);
            }
        }
    }
    let mut stored = 0u64;
    let mut races = 0;
    while !pending.is_empty() {
        let mut take = 0;
        let mut bytes = 1; // the segment's version byte
        while take < pending.len() && (take == 0 || bytes + record::encoded_len(&pending[take]) <= store::SEGMENT_MAX_BYTES) {
            bytes += record::encoded_len(&pending[take]);
            take += 1;
        }
        match store::claim(doc, slot, &pending[..take])? {
            None => {
                for rec in pending.drain(..take) {
                    graph.insert(rec);
                }
                stored += take as u64;
            }
            Some(theirs) => {
                races += 1;
                if races > store::RACES_MAX {
                    return Err(HostError::new("CONFLICT", format!(
                        "{} racing pushes to {}; {} changes stored, the rest not: push again", races, doc, stored
                    )));
                }
                for rec in theirs {
                    graph.insert(rec);
                }
                pending = sift(&graph, pending, &mut duplicate, &mut rejected);
            }
        }
        slot += 1;
    }
    if stored > 0 {
        store::register(doc)?;
    }
    let analysis = graph.analyze();
    let errors: Vec<Value> = rejected
        .iter()
        .take(ERRORS_MAX)
        .map(|e| Value::map(vec![("offset", e.offset.map_or(Value::Nil, |o| Value::from(o as u64))), ("code", e.code.into()), ("message", e.message.as_str().into())]))
        .collect();
    Ok(Response::new("AmPushResult")
        .with("stored", stored)
        .with("duplicate", duplicate)
        .with("rejected", rejected.len() as u64)
        .with("errors", Value::Array(errors))
        .with("heads", hex_list(&analysis.heads, usize::MAX))
        .with("missing_deps", hex_list(&analysis.missing, MISSING_MAX))
        .with("pending", analysis.pending as u64))
}

fn heads_of_request(r: &Request) -> Result<Vec<Hash>, ClientRpcResponse> {
    let items = match r.get("heads") {
        None | Some(Value::Nil) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(invalid("'heads' must be a list of 64-hex-digit change hashes")),
    };
    if items.len() > HEADS_MAX {
        return Err(invalid(format!("{} heads; at most {}", items.len(), HEADS_MAX)));
    }
    items
        .iter()
        .map(|v| v.as_str().and_then(parse_hash).ok_or_else(|| invalid("'heads' must be a list of 64-hex-digit change hashes")))
        .collect()
}

fn pull(r: &Request) -> ClientRpcResponse {
    let doc = match doc_of(r) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let heads = match heads_of_request(r) {
        Ok(h) => h,
        Err(e) => return e,
    };
    let max_bytes = match r.get("max_bytes") {
        None | Some(Value::Nil) => PULL_DEFAULT_BYTES,
        Some(v) => match v.as_i64() {
            Some(n) if n >= 1 && n as u64 <= PULL_MAX_BYTES => n as u64,
            _ => return invalid(format!("'max_bytes' must be from 1 to {}", PULL_MAX_BYTES)),
        },
    };
    let run = || -> HostResult<Response> {
        let (graph, _) = store::load(doc)?;
        let analysis = graph.analyze();
        let plan = graph.plan_pull(&analysis, &heads, max_bytes);
        let mut out = Vec::new();
        for &i in &plan.send {
            out.extend_from_slice(&store::chunk_bytes(graph.record(i))?);
        }
        Ok(Response::new("AmPullResult")
            .with("changes", out)
            .with("count", plan.send.len() as u64)
            .with("more", plan.more)
            .with("next_heads", hex_list(&plan.next_heads, usize::MAX))
            .with("heads", hex_list(&analysis.heads, usize::MAX)))
    };
    run().map_or_else(fail, ClientRpcResponse::Custom)
}

fn heads(r: &Request) -> ClientRpcResponse {
    let doc = match doc_of(r) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let run = || -> HostResult<Response> {
        let (graph, _) = store::load(doc)?;
        let analysis = graph.analyze();
        Ok(Response::new("AmHeadsResult")
            .with("heads", hex_list(&analysis.heads, usize::MAX))
            .with("changes", graph.len() as u64)
            .with("pending", analysis.pending as u64)
            .with("missing_deps", hex_list(&analysis.missing, MISSING_MAX)))
    };
    run().map_or_else(fail, ClientRpcResponse::Custom)
}

fn get_change(r: &Request) -> ClientRpcResponse {
    let doc = match doc_of(r) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let hash = match r.str_field("hash").and_then(parse_hash) {
        Some(h) => h,
        None => return invalid("AmGetChange: 'hash' must be 64 hex digits"),
    };
    let run = || -> HostResult<Response> {
        let (graph, _) = store::load(doc)?;
        let record = graph
            .find(&hash)
            .ok_or_else(|| HostError::new("NOT_FOUND", format!("no change {} in {}", hex(&hash), doc)))?;
        let analysis = graph.analyze();
        let complete = analysis.order.iter().any(|&i| graph.record(i).hash == hash);
        Ok(Response::new("AmChange")
            .with("hash", hex(&hash))
            .with("change", store::chunk_bytes(record)?)
            .with("actor", hex(&record.actor))
            .with("seq", record.seq)
            .with("deps", hex_list(&record.deps, usize::MAX))
            .with("complete", complete))
    };
    run().map_or_else(fail, ClientRpcResponse::Custom)
}

fn list_docs(r: &Request) -> ClientRpcResponse {
    let prefix = r.str_field("prefix").unwrap_or("");
    if !prefix.is_empty() {
        if let Err(e) = store::check_doc_id(prefix) {
            return invalid(format!("'prefix': {}", e));
        }
    }
    match store::list(prefix) {
        Ok((docs, truncated)) => ClientRpcResponse::Custom(
            Response::new("AmDocs")
                .with("docs", Value::Array(docs.into_iter().map(Value::Str).collect()))
                .with("truncated", truncated),
        ),
        Err(e) => fail(e),
    }
}

fn delete_doc(r: &Request) -> ClientRpcResponse {
    let doc = match doc_of(r) {
        Ok(d) => d,
        Err(e) => return e,
    };
    match store::delete(doc) {
        Ok(n) => ClientRpcResponse::Custom(Response::new("AmDeleted").with("deleted", n > 0).with("keys_deleted", n)),
        Err(e) => fail(e),
    }
}

impl AspenPlugin for Automerge {
    fn info() -> PluginInfo {
        PluginInfo::new(NAME, VERSION).description("Automerge change store and sync peer")
    }

    fn handle(request: ClientRpcRequest) -> ClientRpcResponse {
        match request {
            ClientRpcRequest::Other(r) => match r.type_name.as_str() {
                "AmPush" => push(&r),
                "AmPull" => pull(&r),
                "AmHeads" => heads(&r),
                "AmGetChange" => get_change(&r),
                "AmListDocs" => list_docs(&r),
                "AmDeleteDoc" => delete_doc(&r),
                _ => ClientRpcResponse::unhandled(NAME, &ClientRpcRequest::Other(r)),
            },
            other => ClientRpcResponse::unhandled(NAME, &other),
        }
    }
}

register_plugin!(Automerge);

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: aspen_wasm_guest_sdk::allocator::SizeClasses =
    aspen_wasm_guest_sdk::allocator::SizeClasses::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_info_matches_manifest() {
        aspen_wasm_guest_sdk::check_info_matches_manifest(&Automerge::info(), include_str!("../plugin.json")).unwrap();
    }

    fn change(actor: u8, seq: u8, checksum: [u8; 4]) -> Vec<u8> {
        let body = [0, 1, actor, seq, 0, 0, 0];
        let mut c = chunk::MAGIC.to_vec();
        c.extend_from_slice(&checksum);
        c.push(chunk::TYPE_CHANGE);
        c.push(body.len() as u8);
        c.extend_from_slice(&body);
        c
    }

    /// Natively there is no host SHA-256: a stand-in whose first 4 bytes are the type and
    /// length bytes, so a test chunk's checksum can be written to match.
    fn fake_sha(bytes: &[u8]) -> HostResult<Hash> {
        let mut h = [0u8; 32];
        h[..4].copy_from_slice(&bytes[..4]);
        h[4..8].copy_from_slice(&bytes[bytes.len() - 5..bytes.len() - 1]);
        Ok(h)
    }

    #[test]
    fn split_checks_each_chunk_and_stops_at_bad_framing() {
        let good = change(5, 1, [1, 7, 0, 1]);
        let mut data = good.clone();
        data.extend(change(5, 2, [9, 9, 9, 9])); // bad checksum: skipped, the rest still read
        data.extend(change(6, 1, [1, 7, 0, 1]));
        data.extend_from_slice(&[0x85, 0x6f]); // a cut-off magic ends the split
        let (records, rejected) = split_changes(&data, fake_sha).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!((records[0].actor.as_slice(), records[0].seq), (&[5u8][..], 1));
        let codes: Vec<&str> = rejected.iter().map(|r| r.code).collect();
        assert_eq!(codes, vec!["BAD_CHECKSUM", "BAD_MAGIC"]);
        assert_eq!(rejected[1].offset, Some(3 * good.len()));
    }

    #[test]
    fn sift_counts_duplicates_and_refuses_a_second_seq() {
        let mut graph = Graph::default();
        let rec = |hash: u8, seq: u64| Record { hash: [hash; 32], actor: vec![1], seq, deps: vec![], size_bytes: 1, data: Data::Inline(vec![0]) };
        graph.insert(rec(1, 1));
        let (mut dup, mut rejected) = (0, Vec::new());
        let fresh = sift(&graph, vec![rec(1, 1), rec(2, 1), rec(3, 2), rec(3, 2), rec(4, 2)], &mut dup, &mut rejected);
        assert_eq!(fresh.iter().map(|r| r.hash[0]).collect::<Vec<_>>(), vec![3]);
        assert_eq!(dup, 2);
        assert_eq!(rejected.iter().map(|r| r.code).collect::<Vec<_>>(), vec!["DUPLICATE_SEQ", "DUPLICATE_SEQ"]);
    }
}
