//! Arbitrary bytes as a tokenizer.json (loaded from a scratch file, as a model directory's
//! would be); a tokenizer that loads must encode and decode text.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use moela::tokenizer::Tokenizer;

fn scratch() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("moela-fuzz-tok-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join("tokenizer.json")
    })
}

fuzz_target!(|data: &[u8]| {
    let p = scratch();
    std::fs::write(p, data).unwrap();
    if let Ok(t) = Tokenizer::from_hf_files(p, None) {
        let ids = t.encode("Hello, world! 12345 你好", true, true);
        let _ = t.decode(&ids);
    }
});
