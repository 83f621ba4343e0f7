//! Helpers shared by the integration tests that load the fixtures in tests/fixtures.
#![allow(dead_code)] // each test crate uses its own subset

use std::path::{Path, PathBuf};

/// The directory of fixture `name` (made by tools/gen_fixtures.py).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The token ids of fixture `name` (`tokens.json`'s "tokens").
pub fn fixture_tokens(name: &str) -> Vec<u32> {
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(name).join("tokens.json")).unwrap())
            .unwrap();
    t["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

/// The largest |a[i] - b[i]| (the slices must have the same length).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// DeepSeek-V3's pre-tokenizer (the Split sequence of its tokenizer.json), for hand-made
/// tokenizer.json files.
pub fn v3_pre_tokenizer() -> serde_json::Value {
    const DIGITS: &str = "\\p{N}{1,3}";
    const CJK: &str = "[\u{4e00}-\u{9fa5}\u{3040}-\u{309f}\u{30a0}-\u{30ff}]+";
    const MAIN: &str = "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";
    serde_json::json!({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": DIGITS}, "behavior": "Isolated", "invert": false},
        {"type": "Split", "pattern": {"Regex": CJK}, "behavior": "Isolated", "invert": false},
        {"type": "Split", "pattern": {"Regex": MAIN}, "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
    ]})
}
