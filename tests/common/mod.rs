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
