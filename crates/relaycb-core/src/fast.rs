//! The fast JSON path shared by decoding and the dedup key: simd-json
//! validates and indexes a whole body with vector instructions and unescapes
//! strings in place, in buffers kept per thread. Whatever it refuses goes to
//! serde_json, which has the last word and words the errors.

use std::cell::RefCell;

/// Bodies larger than this skip the fast path, so that one huge body does
/// not keep its buffers alive for the thread's lifetime.
const MAX_BYTES: usize = 1 << 20;

/// serde_json's own nesting limit, applied to the fast path too, so that
/// both refuse the same deeply nested bodies and neither overflows a stack.
const MAX_DEPTH: usize = 128;

struct Scratch {
    input: Vec<u8>,
    buffers: simd_json::Buffers,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        input: Vec::new(),
        buffers: simd_json::Buffers::with_max_depth(1024, MAX_DEPTH),
    });
}

/// Copies `bytes` into this thread's scratch buffer and hands it to `parse`
/// with the parser's buffers. `None` when the body is too large, the
/// scratch is in use, or `parse` gives up.
pub(crate) fn with_parser<T>(
    bytes: &[u8],
    parse: impl FnOnce(&mut [u8], &mut simd_json::Buffers) -> Option<T>,
) -> Option<T> {
    if bytes.len() > MAX_BYTES {
        return None;
    }
    SCRATCH.with(|cell| {
        let mut scratch = cell.try_borrow_mut().ok()?;
        let Scratch { input, buffers } = &mut *scratch;
        input.clear();
        input.extend_from_slice(bytes);
        parse(input, buffers)
    })
}
