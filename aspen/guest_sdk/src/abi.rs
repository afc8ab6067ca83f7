//! ABI v1 memory rules (docs/HOST_ABI.md): the host writes inputs into buffers it gets from
//! `aspen_alloc`; the guest returns outputs as `(ptr << 32) | len` and the host frees them with
//! `aspen_free`. Every buffer is a plain byte allocation (align 1), so a host-made buffer can be
//! taken over as a `Vec<u8>` without a copy.

use std::alloc::{alloc as raw_alloc, dealloc, Layout};

/// The pointer handed out for a zero-length buffer: never dereferenced, never freed.
const EMPTY_PTR: usize = 1;

pub fn alloc(len: i32) -> i32 {
    if len <= 0 {
        return if len == 0 { EMPTY_PTR as i32 } else { 0 };
    }
    match Layout::from_size_align(len as usize, 1) {
        // A null pointer (out of memory) reaches the host as 0, which it reports; no trap here.
        Ok(layout) => unsafe { raw_alloc(layout) as usize as i32 },
        Err(_) => 0,
    }
}

/// # Safety
/// `ptr` and `len` must come from `alloc` (or an output this SDK returned).
pub unsafe fn free(ptr: i32, len: i32) {
    if len > 0 && ptr != 0 {
        dealloc(ptr as u32 as usize as *mut u8, Layout::from_size_align_unchecked(len as usize, 1));
    }
}

/// Take over a buffer the host filled (an input or a host function's result).
///
/// # Safety
/// `ptr`/`len` must describe a buffer from `alloc` that nothing else owns.
pub unsafe fn take(ptr: i32, len: i32) -> Vec<u8> {
    if len <= 0 || ptr == 0 {
        return Vec::new();
    }
    let len = len as u32 as usize;
    Vec::from_raw_parts(ptr as u32 as usize as *mut u8, len, len)
}

/// Hand an output to the host: `(ptr << 32) | len`; the host frees it with `aspen_free`.
pub fn give(bytes: Vec<u8>) -> i64 {
    if bytes.is_empty() {
        return 0;
    }
    let boxed = bytes.into_boxed_slice(); // capacity == len, so free() sees the same layout
    let len = boxed.len() as u64;
    let ptr = Box::into_raw(boxed) as *mut u8 as usize as u64;
    ((ptr << 32) | (len & 0xffff_ffff)) as i64
}

/// Split a packed `(ptr << 32) | len` result.
pub fn unpack(packed: i64) -> (i32, i32) {
    let p = packed as u64;
    ((p >> 32) as u32 as i32, (p & 0xffff_ffff) as u32 as i32)
}
