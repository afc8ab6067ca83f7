//! A document's change DAG: which changes are stored, which have their whole ancestry
//! ("complete": only these are served), the heads, the missing deps, and what a holder of
//! some heads lacks. Pure: no host calls, so it is tested natively.

use crate::chunk::Hash;
use crate::fasthash::FastMap;

/// Where a change's bytes are: in its log record, or a blob (a BLAKE3 hash, for big changes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    Inline(Vec<u8>),
    Blob(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub hash: Hash,
    pub actor: Vec<u8>,
    pub seq: u64,
    pub deps: Vec<Hash>,
    pub size_bytes: u64,
    pub data: Data,
}

/// What storing a change would do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    New,
    /// The same hash is stored: nothing to do.
    Duplicate,
    /// Another change (this hash) holds the same actor and seq: Automerge cannot load both.
    SeqTaken(Hash),
}

#[derive(Default)]
pub struct Graph {
    records: Vec<Record>,
    by_hash: FastMap<Hash, usize>,
    /// Actor ids numbered once each: the (actor, seq) index then needs no copy per record.
    actors: FastMap<Vec<u8>, u32>,
    by_actor_seq: FastMap<(u32, u64), usize>,
}

/// The graph's derived facts, computed in one pass.
pub struct Analysis {
    /// Complete changes, each after all its deps (a topological order).
    pub order: Vec<usize>,
    /// Sorted hashes of the complete changes no complete change depends on.
    pub heads: Vec<Hash>,
    /// Sorted hashes some stored change depends on that are not stored.
    pub missing: Vec<Hash>,
    /// Stored changes held back: some ancestor is missing.
    pub pending: usize,
}

/// What to send to a holder of some heads.
pub struct PullPlan {
    pub send: Vec<usize>,
    /// More changes wait: pull again with `next_heads`.
    pub more: bool,
    pub next_heads: Vec<Hash>,
}

impl Graph {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn record(&self, index: usize) -> &Record {
        &self.records[index]
    }

    pub fn find(&self, hash: &Hash) -> Option<&Record> {
        self.by_hash.get(hash).map(|&i| &self.records[i])
    }

    pub fn admission(&self, hash: &Hash, actor: &[u8], seq: u64) -> Admission {
        if self.by_hash.contains_key(hash) {
            return Admission::Duplicate;
        }
        let taken = self.actors.get(actor).and_then(|&a| self.by_actor_seq.get(&(a, seq)));
        match taken {
            Some(&i) => Admission::SeqTaken(self.records[i].hash),
            None => Admission::New,
        }
    }

    /// Adds a record read from the log (or just written): the log is the truth, so a record
    /// is kept even if a racing writer's record already claimed its (actor, seq) slot in
    /// memory; the first one in log order wins the index.
    pub fn insert(&mut self, record: Record) {
        if self.by_hash.contains_key(&record.hash) {
            return;
        }
        let index = self.records.len();
        self.by_hash.insert(record.hash, index);
        let actor = match self.actors.get(record.actor.as_slice()) {
            Some(&a) => a,
            None => {
                let a = self.actors.len() as u32;
                self.actors.insert(record.actor.clone(), a);
                a
            }
        };
        self.by_actor_seq.entry((actor, record.seq)).or_insert(index);
        self.records.push(record);
    }

    /// Kahn's algorithm over the deps: a change is complete once all its deps are.
    pub fn analyze(&self) -> Analysis {
        let n = self.records.len();
        let mut waiting: Vec<usize> = vec![0; n];
        let mut missing: Vec<Hash> = Vec::new();
        // Who depends on whom, as one flat array sliced per change (no vector per change):
        // dep_index[k] is the stored dep of the k-th (record, dep) pair, or usize::MAX.
        let mut dep_index: Vec<usize> = Vec::new();
        let mut starts: Vec<usize> = vec![0; n + 1];
        for (i, r) in self.records.iter().enumerate() {
            waiting[i] = r.deps.len();
            for dep in &r.deps {
                match self.by_hash.get(dep) {
                    Some(&d) => {
                        dep_index.push(d);
                        starts[d + 1] += 1;
                    }
                    None => {
                        dep_index.push(usize::MAX);
                        missing.push(*dep);
                    }
                }
            }
        }
        for d in 0..n {
            starts[d + 1] += starts[d];
        }
        let mut fill = starts.clone();
        let mut dependents: Vec<usize> = vec![0; starts[n]];
        let mut k = 0;
        for (i, r) in self.records.iter().enumerate() {
            for _ in &r.deps {
                let d = dep_index[k];
                k += 1;
                if d != usize::MAX {
                    dependents[fill[d]] = i;
                    fill[d] += 1;
                }
            }
        }
        let mut order: Vec<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
        let mut next = 0;
        while next < order.len() {
            let i = order[next];
            next += 1;
            for &d in &dependents[starts[i]..starts[i + 1]] {
                waiting[d] -= 1;
                if waiting[d] == 0 {
                    order.push(d);
                }
            }
        }
        let mut complete = vec![false; n];
        for &i in &order {
            complete[i] = true;
        }
        let heads = self.heads_of(&complete);
        missing.sort_unstable();
        missing.dedup();
        Analysis { pending: n - order.len(), order, heads, missing }
    }

    /// Sorted hashes of the members no member depends on.
    pub fn heads_of(&self, members: &[bool]) -> Vec<Hash> {
        let mut depended = vec![false; self.records.len()];
        for (i, r) in self.records.iter().enumerate() {
            if members[i] {
                for dep in &r.deps {
                    if let Some(&d) = self.by_hash.get(dep) {
                        depended[d] = true;
                    }
                }
            }
        }
        let mut heads: Vec<Hash> =
            (0..self.records.len()).filter(|&i| members[i] && !depended[i]).map(|i| self.records[i].hash).collect();
        heads.sort_unstable();
        heads
    }

    /// The stored changes that are the given heads or their ancestors (unknown heads ignored:
    /// the holder then gets a superset, which Automerge tolerates).
    pub fn ancestors(&self, heads: &[Hash]) -> Vec<bool> {
        let mut seen = vec![false; self.records.len()];
        let mut stack: Vec<usize> = heads.iter().filter_map(|h| self.by_hash.get(h).copied()).collect();
        while let Some(i) = stack.pop() {
            if seen[i] {
                continue;
            }
            seen[i] = true;
            for dep in &self.records[i].deps {
                if let Some(&d) = self.by_hash.get(dep) {
                    if !seen[d] {
                        stack.push(d);
                    }
                }
            }
        }
        seen
    }

    /// The complete changes the holder of `heads` lacks, deps first, up to `max_bytes` (at
    /// least one change, however big, so every pull makes progress). When more remain,
    /// `next_heads` are the heads of what the holder will have: pulling with them continues.
    pub fn plan_pull(&self, analysis: &Analysis, heads: &[Hash], max_bytes: u64) -> PullPlan {
        let mut have = self.ancestors(heads);
        let mut send = Vec::new();
        let mut total: u64 = 0;
        let mut more = false;
        for &i in &analysis.order {
            if have[i] {
                continue;
            }
            let size = self.records[i].size_bytes;
            if !send.is_empty() && total + size > max_bytes {
                more = true;
                break;
            }
            total += size;
            send.push(i);
        }
        let next_heads = if more {
            for &i in &send {
                have[i] = true;
            }
            self.heads_of(&have)
        } else {
            Vec::new()
        };
        PullPlan { send, more, next_heads }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> Hash {
        [n; 32]
    }

    fn rec(n: u8, deps: &[u8], actor: &[u8], seq: u64) -> Record {
        Record {
            hash: h(n),
            actor: actor.to_vec(),
            seq,
            deps: deps.iter().map(|&d| h(d)).collect(),
            size_bytes: 10,
            data: Data::Inline(vec![n; 10]),
        }
    }

    /// 1 <- 2 <- 3 (actor a), 1 <- 4 (actor b), 6 depends on the absent 5.
    fn sample() -> Graph {
        let mut g = Graph::default();
        for r in [rec(3, &[2], b"a", 3), rec(1, &[], b"a", 1), rec(2, &[1], b"a", 2), rec(4, &[1], b"b", 1), rec(6, &[5], b"c", 2)] {
            g.insert(r);
        }
        g
    }

    #[test]
    fn complete_heads_missing() {
        let g = sample();
        let a = g.analyze();
        let hashes: Vec<Hash> = a.order.iter().map(|&i| g.record(i).hash).collect();
        assert_eq!(hashes[0], h(1));
        let pos = |n: u8| hashes.iter().position(|x| *x == h(n)).unwrap();
        assert!(pos(1) < pos(2) && pos(2) < pos(3) && pos(1) < pos(4));
        assert_eq!(hashes.len(), 4);
        assert_eq!(a.heads, vec![h(3), h(4)]);
        assert_eq!(a.missing, vec![h(5)]);
        assert_eq!(a.pending, 1);
    }

    #[test]
    fn admissions() {
        let g = sample();
        assert_eq!(g.admission(&h(1), b"a", 1), Admission::Duplicate);
        assert_eq!(g.admission(&h(9), b"a", 2), Admission::SeqTaken(h(2)));
        assert_eq!(g.admission(&h(9), b"a", 4), Admission::New);
    }

    #[test]
    fn pulls_send_what_is_lacking_deps_first() {
        let g = sample();
        let a = g.analyze();
        let all = g.plan_pull(&a, &[], 1 << 20);
        assert_eq!((all.send.len(), all.more), (4, false));
        let some = g.plan_pull(&a, &[h(2)], 1 << 20);
        let sent: Vec<Hash> = some.send.iter().map(|&i| g.record(i).hash).collect();
        assert_eq!(sent.len(), 2);
        assert!(sent.contains(&h(3)) && sent.contains(&h(4)));
        assert!(g.plan_pull(&a, &[h(3), h(4)], 1 << 20).send.is_empty());
        // An unknown head is ignored: a superset is sent.
        assert_eq!(g.plan_pull(&a, &[h(99)], 1 << 20).send.len(), 4);
    }

    #[test]
    fn pages_chain_through_next_heads() {
        let g = sample();
        let a = g.analyze();
        let mut heads: Vec<Hash> = Vec::new();
        let mut got = Vec::new();
        for _ in 0..10 {
            let plan = g.plan_pull(&a, &heads, 15); // one 10-byte change a page
            assert_eq!(plan.send.len(), 1);
            got.extend(plan.send.iter().map(|&i| g.record(i).hash));
            if !plan.more {
                break;
            }
            heads = plan.next_heads;
        }
        got.sort_unstable();
        assert_eq!(got, vec![h(1), h(2), h(3), h(4)]);
        // A change bigger than the page still goes, alone.
        assert_eq!(g.plan_pull(&a, &[], 1).send.len(), 1);
    }
}
