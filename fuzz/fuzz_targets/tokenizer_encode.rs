//! Arbitrary bytes encoded and decoded by a small byte-level BPE tokenizer with DeepSeek-V3's
//! pre-tokenizer (fuzz/tokenizer.json): encoding without special-token parsing must round
//! trip exactly; arbitrary ids must decode to `Ok` or `Err`; streaming decode must agree.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use moela::tokenizer::{StreamDecoder, Tokenizer};

fn tok() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tokenizer.json");
        Tokenizer::from_hf_files(&p, None).expect("fuzz/tokenizer.json loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let t = tok();
    let text = String::from_utf8_lossy(data);
    let ids = t.encode(&text, false, false);
    assert_eq!(t.decode(&ids).unwrap(), text, "round trip");
    let ids = t.encode(&text, true, true);
    let full = t.decode(&ids).unwrap();
    let mut s = StreamDecoder::new();
    let mut streamed = String::new();
    for &id in &ids {
        streamed += &s.push(t, id).unwrap();
    }
    streamed += &s.flush();
    assert_eq!(streamed, full);
    // The bytes as little-endian ids.
    let raw: Vec<u32> = data
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let _ = t.decode(&raw);
    let _ = t.pre_tokenize(&text);
});
