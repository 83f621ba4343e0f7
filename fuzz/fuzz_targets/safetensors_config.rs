//! The first byte picks the parser: even → a safetensors file (header + data), odd → the
//! text of a config.json.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moela::format::{hf_config, safetensors};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    if sel % 2 == 0 {
        if let Ok((tensors, _meta)) = safetensors::parse_header_bytes(rest, "fuzz.safetensors") {
            for t in &tensors {
                assert!(t.data.end <= rest.len());
            }
        }
    } else if let Ok(text) = std::str::from_utf8(rest) {
        if let Ok(cfg) = hf_config::parse_config(text, std::path::Path::new("config.json")) {
            let _ = cfg.parameter_counts();
            let _ = cfg.softmax_scale();
        }
    }
});
