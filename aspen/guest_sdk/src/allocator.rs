//! An allocator for plugins: free lists of small blocks in front of the system allocator.
//! Opt in from the plugin's lib.rs:
//!
//! ```ignore
//! #[cfg(target_arch = "wasm32")]
//! #[global_allocator]
//! static ALLOCATOR: aspen_wasm_guest_sdk::allocator::SizeClasses =
//!     aspen_wasm_guest_sdk::allocator::SizeClasses::new();
//! ```
//!
//! Rust's wasm32 allocator (dlmalloc, from the prebuilt std, so neither inlined nor tuned for
//! the plugin's code) took a fifth of a secrets transit request's guest time: a request makes
//! and drops some forty small buffers (the decoded request, strings, host results, the
//! response), and the guest pays for every instruction in fuel. Blocks of up to 4 KiB come in
//! nine power-of-two sizes; a freed one goes on its size's list and the next allocation of that
//! size takes it back, in a few instructions. Each list keeps at most CACHED_BYTES of blocks
//! (past that they go back to dlmalloc), so what the lists hold is bounded whatever a request
//! allocated. Larger or over-aligned requests go straight to dlmalloc. The target has one
//! thread, so the lists need no lock. A plugin whose memory is mostly large buffers gains
//! little: measure (benchmarks/README.md has what it did for the first-party plugins).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr;

const CLASSES: usize = 9;
const MIN_SHIFT: u32 = 4; // the smallest block: 16 bytes
const MAX_BLOCK: usize = 16 << (CLASSES - 1); // 4 KiB
const BLOCK_ALIGN: usize = 16;
/// The most bytes of free blocks one size's list keeps.
const CACHED_BYTES: usize = 256 * 1024;

pub struct SizeClasses {
    free: [Cell<*mut u8>; CLASSES],
    cached: [Cell<usize>; CLASSES],
}

// wasm32-unknown-unknown without threads: only one thread ever touches the lists.
unsafe impl Sync for SizeClasses {}

impl SizeClasses {
    pub const fn new() -> SizeClasses {
        const NONE: Cell<*mut u8> = Cell::new(ptr::null_mut());
        const ZERO: Cell<usize> = Cell::new(0);
        SizeClasses { free: [NONE; CLASSES], cached: [ZERO; CLASSES] }
    }
}

impl Default for SizeClasses {
    fn default() -> SizeClasses {
        SizeClasses::new()
    }
}

/// The size class of a request, or None when dlmalloc serves it.
fn class_of(layout: &Layout) -> Option<usize> {
    let size = layout.size();
    if size > MAX_BLOCK || layout.align() > BLOCK_ALIGN {
        return None;
    }
    let size = size.max(1 << MIN_SHIFT);
    Some((usize::BITS - (size - 1).leading_zeros() - MIN_SHIFT) as usize)
}

fn block_layout(class: usize) -> Layout {
    // 16 << class is a power of two from 16 to 4096 and the alignment 16: always valid.
    unsafe { Layout::from_size_align_unchecked(16 << class, BLOCK_ALIGN) }
}

unsafe impl GlobalAlloc for SizeClasses {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let class = match class_of(&layout) {
            Some(c) => c,
            None => return System.alloc(layout),
        };
        let head = self.free[class].get();
        if head.is_null() {
            return System.alloc(block_layout(class));
        }
        // A free block's first word is the next free block.
        self.free[class].set(*(head as *mut *mut u8));
        self.cached[class].set(self.cached[class].get() - (16 << class));
        head
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let class = match class_of(&layout) {
            Some(c) => c,
            None => return System.dealloc(block, layout),
        };
        if self.cached[class].get() + (16 << class) > CACHED_BYTES {
            return System.dealloc(block, block_layout(class));
        }
        *(block as *mut *mut u8) = self.free[class].get();
        self.free[class].set(block);
        self.cached[class].set(self.cached[class].get() + (16 << class));
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = class_of(&layout);
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        let new = class_of(&new_layout);
        if old.is_some() && old == new {
            return block; // the block already holds new_size bytes
        }
        if old.is_none() && new.is_none() {
            return System.realloc(block, layout, new_size);
        }
        let moved = self.alloc(new_layout);
        if !moved.is_null() {
            ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
            self.dealloc(block, layout);
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let l = |size, align| Layout::from_size_align(size, align).unwrap();
        assert_eq!(class_of(&l(0, 1)), Some(0));
        assert_eq!(class_of(&l(16, 8)), Some(0));
        assert_eq!(class_of(&l(17, 1)), Some(1));
        assert_eq!(class_of(&l(4096, 1)), Some(8));
        assert_eq!(class_of(&l(4097, 1)), None);
        assert_eq!(class_of(&l(8, 32)), None);
    }

    #[test]
    fn blocks_are_reused_and_bounded() {
        let a = SizeClasses::new();
        unsafe {
            let l = Layout::from_size_align(100, 1).unwrap();
            let p = a.alloc(l);
            ptr::write_bytes(p, 7, 100);
            a.dealloc(p, l);
            assert_eq!(a.alloc(l), p); // the same block back
            let q = a.realloc(p, l, 120); // same class: stays
            assert_eq!(q, p);
            let r = a.realloc(q, Layout::from_size_align(120, 1).unwrap(), 1000);
            assert_eq!(*r.add(99), 7);
            let big = Layout::from_size_align(1000, 1).unwrap();
            let many: Vec<*mut u8> = (0..1000).map(|_| a.alloc(big)).collect();
            for m in many {
                a.dealloc(m, big);
            }
            a.dealloc(r, big);
            assert!(a.cached.iter().all(|c| c.get() <= CACHED_BYTES));
        }
    }
}
