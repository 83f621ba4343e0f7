//! `tokenizer.ggml.*` metadata ↔ [`Tokenizer`] (llama.cpp's keys for byte-level BPE, model
//! "gpt2"; see docs/FORMAT.md §5).

use crate::error::{Error, Result};
use crate::format::gguf::{GgufArray, GgufFile, GgufValue};
use crate::tokenizer::{Tokenizer, TokenizerParts};

/// The tokenizer a GGUF file describes: `Ok(None)` when it has none (`tokenizer.ggml.model`
/// absent or "none": token ids still work, text does not).
pub fn tokenizer_from_gguf(f: &GgufFile) -> Result<Option<Tokenizer>> {
    let err = |k: &str, m: &str| Error::config(&f.path, k, m);
    match f.get("tokenizer.ggml.model").and_then(|v| v.as_str()) {
        None | Some("none") => return Ok(None),
        Some("gpt2") => {}
        Some(other) => {
            return Err(Error::Unsupported {
                path: f.path.clone(),
                msg: format!("tokenizer model {other:?} (moela reads byte-level BPE, \"gpt2\")"),
            })
        }
    }
    let tokens = f
        .get("tokenizer.ggml.tokens")
        .and_then(|v| v.as_str_array())
        .ok_or_else(|| {
            err(
                "tokenizer.ggml.tokens",
                "missing or not an array of strings",
            )
        })?
        .to_vec();
    let merges = f
        .get("tokenizer.ggml.merges")
        .and_then(|v| v.as_str_array())
        .ok_or_else(|| {
            err(
                "tokenizer.ggml.merges",
                "missing or not an array of strings",
            )
        })?
        .to_vec();
    let token_types = match f.get("tokenizer.ggml.token_type") {
        None => None,
        Some(GgufValue::Array(GgufArray::I32(v))) => Some(v.clone()),
        Some(v) => Some(
            v.as_u32_array()
                .map(|a| a.iter().map(|&x| x as i32).collect())
                .ok_or_else(|| err("tokenizer.ggml.token_type", "not an integer array"))?,
        ),
    };
    let id = |k: &str| f.get(k).and_then(|v| v.as_u32());
    let parts = TokenizerParts {
        tokens,
        token_types,
        merges,
        bos: id("tokenizer.ggml.bos_token_id"),
        eos: id("tokenizer.ggml.eos_token_id"),
        pad: id("tokenizer.ggml.padding_token_id"),
        add_bos: f
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        pre: f
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.as_str())
            .unwrap_or("default")
            .to_string(),
        chat_template: f
            .get("tokenizer.chat_template")
            .and_then(|v| v.as_str())
            .map(str::to_string),
    };
    Tokenizer::from_parts(parts)
        .map(Some)
        .map_err(|e| Error::format(&f.path, format!("tokenizer: {e}")))
}

/// The `tokenizer.*` metadata for `t`, padded to the model's vocabulary size as llama.cpp's
/// converter does.
pub fn tokenizer_to_gguf(t: &Tokenizer, n_vocab: usize) -> Vec<(String, GgufValue)> {
    let p = t.to_parts_padded(n_vocab);
    let mut kv = vec![
        (
            "tokenizer.ggml.model".to_string(),
            GgufValue::String("gpt2".into()),
        ),
        ("tokenizer.ggml.pre".to_string(), GgufValue::String(p.pre)),
        (
            "tokenizer.ggml.tokens".to_string(),
            GgufValue::Array(GgufArray::String(p.tokens)),
        ),
    ];
    if let Some(types) = p.token_types {
        kv.push((
            "tokenizer.ggml.token_type".to_string(),
            GgufValue::Array(GgufArray::I32(types)),
        ));
    }
    kv.push((
        "tokenizer.ggml.merges".to_string(),
        GgufValue::Array(GgufArray::String(p.merges)),
    ));
    for (k, v) in [
        ("tokenizer.ggml.bos_token_id", p.bos),
        ("tokenizer.ggml.eos_token_id", p.eos),
        ("tokenizer.ggml.padding_token_id", p.pad),
    ] {
        if let Some(v) = v {
            kv.push((k.to_string(), GgufValue::U32(v)));
        }
    }
    kv.push((
        "tokenizer.ggml.add_bos_token".to_string(),
        GgufValue::Bool(p.add_bos),
    ));
    kv.push((
        "tokenizer.ggml.add_eos_token".to_string(),
        GgufValue::Bool(false),
    ));
    if let Some(tpl) = p.chat_template {
        kv.push((
            "tokenizer.chat_template".to_string(),
            GgufValue::String(tpl),
        ));
    }
    kv
}
