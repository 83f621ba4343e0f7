//! Reading Hugging Face `tokenizer.json` and `tokenizer_config.json`.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::added::AddedToken;
use super::pretok::PreTokenizerKind;
use crate::error::{Error, Result};

#[derive(Deserialize)]
struct TokenizerJson {
    #[serde(default)]
    added_tokens: Vec<AddedTokenJson>,
    #[serde(default)]
    normalizer: Option<Value>,
    #[serde(default)]
    pre_tokenizer: Option<Value>,
    #[serde(default)]
    decoder: Option<Value>,
    model: ModelJson,
}

#[derive(Deserialize)]
struct AddedTokenJson {
    id: u32,
    content: String,
    #[serde(default)]
    single_word: bool,
    #[serde(default)]
    lstrip: bool,
    #[serde(default)]
    rstrip: bool,
    #[serde(default = "yes")]
    normalized: bool,
    #[serde(default)]
    special: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct ModelJson {
    #[serde(rename = "type", default)]
    ty: Option<String>,
    vocab: HashMap<String, u32>,
    merges: Vec<MergeJson>,
    #[serde(default)]
    dropout: Option<f64>,
    #[serde(default)]
    continuing_subword_prefix: Option<String>,
    #[serde(default)]
    end_of_word_suffix: Option<String>,
    #[serde(default)]
    byte_fallback: bool,
    #[serde(default)]
    ignore_merges: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MergeJson {
    Str(String),
    Pair(Vec<String>),
}

/// What the files say, ready for [`super::Tokenizer::build`].
pub(crate) struct HfTokenizer {
    pub vocab: HashMap<String, u32>,
    pub merges: Vec<(String, String)>,
    pub added: Vec<AddedToken>,
    pub pre: PreTokenizerKind,
    pub ignore_merges: bool,
    pub config: HfConfig,
}

#[derive(Default)]
pub(crate) struct HfConfig {
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub pad_token: Option<String>,
    pub add_bos: bool,
    pub chat_template: Option<String>,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

pub(crate) fn load(tokenizer_json: &Path, config_json: Option<&Path>) -> Result<HfTokenizer> {
    let p = tokenizer_json;
    let bytes = read(p)?;
    let j: TokenizerJson = serde_json::from_slice(&bytes)
        .map_err(|e| Error::format(p, format!("not a tokenizer.json: {e}")))?;
    drop(bytes);
    let m = j.model;
    if let Some(ty) = &m.ty {
        if ty != "BPE" {
            return Err(Error::format(
                p,
                format!("model type '{ty}' is not supported (only byte-level BPE)"),
            ));
        }
    }
    if m.dropout.is_some_and(|d| d > 0.0) {
        return Err(Error::format(p, "BPE dropout is not supported"));
    }
    if m.continuing_subword_prefix
        .as_deref()
        .is_some_and(|s| !s.is_empty())
        || m.end_of_word_suffix
            .as_deref()
            .is_some_and(|s| !s.is_empty())
    {
        return Err(Error::format(
            p,
            "BPE continuing_subword_prefix / end_of_word_suffix are not supported",
        ));
    }
    if m.byte_fallback {
        return Err(Error::format(
            p,
            "BPE byte_fallback is not supported (byte-level BPE only)",
        ));
    }
    if let Some(n) = &j.normalizer {
        let empty = n.is_null()
            || (n.get("type").and_then(Value::as_str) == Some("Sequence")
                && n.get("normalizers")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.is_empty()));
        if !empty {
            return Err(Error::format(
                p,
                format!("normalizer {} is not supported", n),
            ));
        }
    }
    if let Some(d) = &j.decoder {
        if !d.is_null() && d.get("type").and_then(Value::as_str) != Some("ByteLevel") {
            return Err(Error::format(
                p,
                format!("decoder {} is not supported (ByteLevel only)", d),
            ));
        }
    }
    let pre = match &j.pre_tokenizer {
        Some(v) if !v.is_null() => {
            PreTokenizerKind::from_hf_json(v).map_err(|e| Error::format(p, e))?
        }
        _ => {
            return Err(Error::format(
                p,
                "no pre_tokenizer; moela needs a DeepSeek pre-tokenizer",
            ))
        }
    };
    let mut merges = Vec::with_capacity(m.merges.len());
    for (i, mj) in m.merges.into_iter().enumerate() {
        let pair = match mj {
            MergeJson::Str(s) => {
                let mut it = s.split(' ');
                match (it.next(), it.next(), it.next()) {
                    (Some(a), Some(b), None) => (a.to_string(), b.to_string()),
                    _ => {
                        return Err(Error::format(
                            p,
                            format!("merge {i} '{s}' is not two tokens separated by a space"),
                        ))
                    }
                }
            }
            MergeJson::Pair(v) if v.len() == 2 => {
                let mut it = v.into_iter();
                (it.next().unwrap(), it.next().unwrap())
            }
            MergeJson::Pair(v) => {
                return Err(Error::format(
                    p,
                    format!("merge {i} has {} parts, expected 2", v.len()),
                ))
            }
        };
        merges.push(pair);
    }
    let added = j
        .added_tokens
        .into_iter()
        .map(|a| AddedToken {
            id: a.id,
            content: a.content,
            special: a.special,
            single_word: a.single_word,
            lstrip: a.lstrip,
            rstrip: a.rstrip,
            normalized: a.normalized,
        })
        .collect();
    let config = match config_json {
        Some(c) => load_config(c)?,
        None => HfConfig::default(),
    };
    Ok(HfTokenizer {
        vocab: m.vocab,
        merges,
        added,
        pre,
        ignore_merges: m.ignore_merges,
        config,
    })
}

/// `bos_token` & co. are a string, an `{"content": ...}` object, or null.
fn token_text(v: Option<&Value>, path: &Path, key: &str) -> Result<Option<String>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(o @ Value::Object(_)) => match o.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(Error::config(
                path,
                key,
                "object without a string 'content'",
            )),
        },
        Some(_) => Err(Error::config(
            path,
            key,
            "expected a string or an object with 'content'",
        )),
    }
}

fn load_config(path: &Path) -> Result<HfConfig> {
    let bytes = read(path)?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::format(path, format!("not JSON: {e}")))?;
    let add_bos = match v.get("add_bos_token") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(Error::config(path, "add_bos_token", "expected a boolean")),
    };
    let chat_template = match v.get("chat_template") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        // A list of named templates: take "default".
        Some(Value::Array(a)) => {
            let mut found = None;
            for t in a {
                if t.get("name").and_then(Value::as_str) == Some("default") {
                    match t.get("template").and_then(Value::as_str) {
                        Some(s) => found = Some(s.to_string()),
                        None => {
                            return Err(Error::config(
                                path,
                                "chat_template",
                                "template 'default' is not a string",
                            ))
                        }
                    }
                }
            }
            if found.is_none() {
                return Err(Error::config(
                    path,
                    "chat_template",
                    "a list of templates without one named 'default'",
                ));
            }
            found
        }
        Some(_) => {
            return Err(Error::config(
                path,
                "chat_template",
                "expected a string or a list of {name, template}",
            ))
        }
    };
    // Newer transformers save the template beside the config instead.
    let chat_template = match chat_template {
        Some(t) => Some(t),
        None => {
            let j = path.with_file_name("chat_template.jinja");
            match std::fs::read_to_string(&j) {
                Ok(s) => Some(s),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(Error::io(j, e)),
            }
        }
    };
    Ok(HfConfig {
        bos_token: token_text(v.get("bos_token"), path, "bos_token")?,
        eos_token: token_text(v.get("eos_token"), path, "eos_token")?,
        pad_token: token_text(v.get("pad_token"), path, "pad_token")?,
        add_bos,
        chat_template,
    })
}
