//! Feeds arbitrary bytes to the decoder: it must never panic, hang or
//! allocate without bound, and whatever it accepts must survive encoding
//! and decoding again unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(decoded) = relaycb_core::decode(bytes) else {
        return;
    };
    let again = relaycb_core::decode(&relaycb_core::encode(&decoded.callback))
        .expect("an encoded callback decodes");
    assert_eq!(again.callback, decoded.callback);
    let _ = relaycb_core::DedupKey::of_body(bytes);
});
