//! GGUF bytes → header parse → tensor index → config → weights → tokenizer, as
//! `Model::load` does for a file. Any input must give `Ok` or `Err`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moela::format::gguf::GgufFile;
use moela::model::{gguf_names, source::TensorIndex, tokenizer_gguf, weights::Weights};

fuzz_target!(|data: &[u8]| {
    let Ok(f) = GgufFile::parse_bytes(data, "fuzz.gguf") else {
        return;
    };
    for t in &f.tensors {
        let bytes = f.tensor_data(t);
        assert!(bytes.len() == t.data.len() || !t.size_known());
        assert!(t.data.end <= data.len());
    }
    let ix = TensorIndex::from_gguf(&f);
    if let Ok(cfg) = gguf_names::config_from_gguf(&f, &ix) {
        let _ = Weights::from_gguf(&ix, &cfg);
    }
    if let Ok(Some(tok)) = tokenizer_gguf::tokenizer_from_gguf(&f) {
        let ids = tok.encode("Hello, 世界 123 <｜User｜>", true, true);
        let _ = tok.decode(&ids);
    }
});
