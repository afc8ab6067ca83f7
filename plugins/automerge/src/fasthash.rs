//! A cheap hasher for the graph's maps. std's SipHash costs thousands of fuel per lookup in
//! wasm, and a 10,000-change graph makes tens of thousands of lookups per request. Keys here
//! are SHA-256 hashes (already uniform) and actor ids from authenticated, trusted clients
//! (docs/AUTOMERGE.md), so flooding resistance buys nothing.

use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default)]
pub struct FoldHasher(u64);

const MULTIPLIER: u64 = 0x517c_c1b7_2722_0a95;

impl Hasher for FoldHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(MULTIPLIER);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(MULTIPLIER);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub type FastMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<FoldHasher>>;
