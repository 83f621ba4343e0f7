//! Text in, text out: DeepSeek's byte-level BPE tokenizers, bit-exact with Hugging Face
//! `tokenizers`, loaded from a `tokenizer.json` (+ `tokenizer_config.json`) or from GGUF
//! metadata ([`TokenizerParts`]).
//!
//! * [`Tokenizer::encode`]: added/special tokens (only when asked), the DeepSeek
//!   pre-tokenizer, byte-level BPE.
//! * [`Tokenizer::decode`] and [`StreamDecoder`]: ids back to text, never splitting a UTF-8
//!   character, invalid bytes as U+FFFD.
//! * [`Tokenizer::apply_chat_template`]: the model's own Jinja chat template (minijinja), or a
//!   built-in DeepSeek format ([`ChatFormat`]); [`split_reasoning`] for R1's `<think>` block.

mod added;
mod bpe;
mod chat;
mod hf;
mod pretok;
mod stream;

use std::collections::HashMap;
use std::path::Path;

pub use added::AddedToken;
pub use chat::{render_chat_template, split_reasoning, ChatFormat, ChatMessage, CHAT_ROLES};
pub use pretok::PreTokenizerKind;
pub use stream::StreamDecoder;

use crate::error::{Error, Result};
use added::{AddedTokens, Piece};
use bpe::{Bpe, BytesMap, PairMap, Scratch, BYTE_TO_CHAR};
use pretok::PreTokenizer;

/// Token types as GGUF stores them (`tokenizer.ggml.token_type`, llama.cpp's values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum TokenType {
    Normal = 1,
    Unknown = 2,
    /// A special token (HF `special: true`): recognised in text only with `parse_special`.
    Control = 3,
    /// An added token that is not special (HF `special: false`), e.g. DeepSeek's `<think>`.
    UserDefined = 4,
    /// A placeholder filling a hole in the id space; never produced by encoding.
    Unused = 5,
    Byte = 6,
}

impl TokenType {
    pub fn from_i32(v: i32) -> Option<Self> {
        Some(match v {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => return None,
        })
    }
}

/// A tokenizer as GGUF metadata describes it (`tokenizer.ggml.*`, model "gpt2").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizerParts {
    /// `tokenizer.ggml.tokens`, in id order. Normal tokens in the GPT-2 byte-level spelling
    /// ("Ġthe"), added tokens as their text ("<｜User｜>").
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type` (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
    /// 6 byte). `None`: all normal.
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.merges`, "left right", in rank order.
    pub merges: Vec<String>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub pad: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: bool,
    /// `tokenizer.ggml.pre`: "deepseek-llm", "deepseek-v3" (or "joyai-llm", same regex).
    pub pre: String,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<String>,
}

/// A DeepSeek byte-level BPE tokenizer. Immutable, `Send + Sync`; share it freely.
pub struct Tokenizer {
    /// id -> stored token string (None: a hole in the id space)
    tokens: Vec<Option<String>>,
    types: Vec<TokenType>,
    /// id -> bytes, as `bytes[offsets[id]..offsets[id + 1]]`
    bytes: Vec<u8>,
    offsets: Vec<u32>,
    /// token string -> id (added tokens take precedence, as in HF's `token_to_id`)
    vocab: HashMap<String, u32>,
    bpe: Bpe,
    added: AddedTokens,
    pre_kind: PreTokenizerKind,
    pre: PreTokenizer,
    bos: Option<u32>,
    eos: Option<u32>,
    pad: Option<u32>,
    add_bos: bool,
    chat_template: Option<String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("n_vocab", &self.n_vocab())
            .field("n_merges", &self.bpe.n_merges())
            .field("n_added", &self.added.tokens.len())
            .field("pre", &self.pre_kind)
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("add_bos", &self.add_bos)
            .field("chat_template", &self.chat_template.is_some())
            .finish()
    }
}

/// Where a build error is reported: a file, or GGUF metadata.
enum Origin<'a> {
    File(&'a Path),
    Parts,
}

impl Origin<'_> {
    fn err(&self, msg: String) -> Error {
        match self {
            Origin::File(p) => Error::format(*p, msg),
            Origin::Parts => Error::InvalidArg(format!("GGUF tokenizer metadata: {msg}")),
        }
    }
}

struct Build<'a> {
    /// BPE vocabulary: string -> id
    bpe_vocab: Vec<(String, u32)>,
    merges: Vec<(String, String)>,
    added: Vec<AddedToken>,
    /// explicit types for BPE ids (GGUF); added tokens get Control / UserDefined
    types: Option<Vec<TokenType>>,
    pre: PreTokenizerKind,
    ignore_merges: bool,
    bos: Option<u32>,
    eos: Option<u32>,
    pad: Option<u32>,
    add_bos: bool,
    chat_template: Option<String>,
    origin: Origin<'a>,
}

/// Token ids must be below this (2^24, the config's `vocab_size` cap).
pub const MAX_TOKEN_ID: u32 = 1 << 24;

impl Tokenizer {
    /// Loads a Hugging Face `tokenizer.json`, and from `tokenizer_config.json` (when given) the
    /// BOS/EOS/PAD tokens, `add_bos_token` and `chat_template` (a string, or a list of named
    /// templates of which "default" is taken; a `chat_template.jinja` beside the config is
    /// used when the config has none).
    ///
    /// The pre-tokenizer must be one of DeepSeek's (recognised by its exact regexes); the
    /// normalizer must be empty and the model byte-level BPE. Anything else is an error.
    pub fn from_hf_files(
        tokenizer_json: &Path,
        tokenizer_config_json: Option<&Path>,
    ) -> Result<Tokenizer> {
        let h = hf::load(tokenizer_json, tokenizer_config_json)?;
        let cfg_path = tokenizer_config_json.unwrap_or(tokenizer_json);
        // Resolve the config's token texts to ids: added tokens first, then the vocabulary.
        let lookup = |key: &str, t: &Option<String>| -> Result<Option<u32>> {
            let Some(t) = t else { return Ok(None) };
            if let Some(a) = h.added.iter().find(|a| &a.content == t) {
                return Ok(Some(a.id));
            }
            match h.vocab.get(t) {
                Some(&id) => Ok(Some(id)),
                None => Err(Error::config(
                    cfg_path,
                    key,
                    format!("token '{t}' is not in the vocabulary"),
                )),
            }
        };
        let bos = lookup("bos_token", &h.config.bos_token)?;
        let eos = lookup("eos_token", &h.config.eos_token)?;
        let pad = lookup("pad_token", &h.config.pad_token)?;
        Tokenizer::build(Build {
            bpe_vocab: h.vocab.into_iter().collect(),
            merges: h.merges,
            added: h.added,
            types: None,
            pre: h.pre,
            ignore_merges: h.ignore_merges,
            bos,
            eos,
            pad,
            add_bos: h.config.add_bos,
            chat_template: h.config.chat_template,
            origin: Origin::File(tokenizer_json),
        })
    }

    /// Loads a Hugging Face tokenizer from a model directory (its `tokenizer.json`) or from a
    /// `tokenizer.json` path; a `tokenizer_config.json` beside it is read when present.
    pub fn from_hf_path(path: &Path) -> Result<Tokenizer> {
        let tj = if path.is_dir() {
            path.join("tokenizer.json")
        } else {
            path.to_path_buf()
        };
        if !tj.is_file() {
            return Err(Error::io(
                &tj,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no tokenizer.json"),
            ));
        }
        let cfg = tj.with_file_name("tokenizer_config.json");
        Tokenizer::from_hf_files(&tj, cfg.is_file().then_some(cfg.as_path()))
    }

    /// Builds a tokenizer from GGUF metadata. Tokens typed control (3) or unknown (2) become
    /// special added tokens, user-defined (4) non-special added tokens; GGUF does not keep HF's
    /// `normalized` flag, so it is taken as HF's default for the kind (`false` for special,
    /// `true` for the others — which is how DeepSeek's files set it, V3's `<|EOT|>` aside); it
    /// only decides which of two overlapping added tokens wins.
    pub fn from_parts(parts: TokenizerParts) -> Result<Tokenizer> {
        let o = Origin::Parts;
        let pre = PreTokenizerKind::from_gguf_name(&parts.pre).ok_or_else(|| {
            o.err(format!(
                "tokenizer.ggml.pre '{}' is not supported (supported: deepseek-llm, deepseek-v3)",
                parts.pre
            ))
        })?;
        let n = parts.tokens.len();
        let types: Vec<TokenType> = match &parts.token_types {
            None => vec![TokenType::Normal; n],
            Some(t) => {
                if t.len() != n {
                    return Err(o.err(format!("{} token types for {} tokens", t.len(), n)));
                }
                t.iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        TokenType::from_i32(v)
                            .ok_or_else(|| o.err(format!("token {i} has unknown type {v}")))
                    })
                    .collect::<Result<_>>()?
            }
        };
        let mut merges = Vec::with_capacity(parts.merges.len());
        for (i, m) in parts.merges.iter().enumerate() {
            let mut it = m.split(' ');
            match (it.next(), it.next(), it.next()) {
                (Some(a), Some(b), None) => merges.push((a.to_string(), b.to_string())),
                _ => {
                    return Err(o.err(format!(
                        "merge {i} '{m}' is not two tokens separated by a space"
                    )))
                }
            }
        }
        let mut added = Vec::new();
        let mut bpe_vocab = Vec::with_capacity(n);
        for (id, (t, ty)) in parts.tokens.into_iter().zip(types.iter()).enumerate() {
            let id = id as u32;
            match ty {
                TokenType::Control | TokenType::Unknown | TokenType::UserDefined => {
                    let special = *ty != TokenType::UserDefined;
                    added.push(AddedToken {
                        id,
                        content: t.clone(),
                        special,
                        single_word: false,
                        lstrip: false,
                        rstrip: false,
                        normalized: !special,
                    })
                }
                _ => {}
            }
            bpe_vocab.push((t, id));
        }
        for (k, v) in [("bos", parts.bos), ("eos", parts.eos), ("pad", parts.pad)] {
            if let Some(id) = v {
                if id as usize >= n {
                    return Err(o.err(format!("{k} token id {id} is out of range ({n} tokens)")));
                }
            }
        }
        Tokenizer::build(Build {
            bpe_vocab,
            merges,
            added,
            types: Some(types),
            pre,
            ignore_merges: false,
            bos: parts.bos,
            eos: parts.eos,
            pad: parts.pad,
            add_bos: parts.add_bos,
            chat_template: parts.chat_template,
            origin: o,
        })
    }

    fn build(b: Build<'_>) -> Result<Tokenizer> {
        let o = &b.origin;
        let max_id = b
            .bpe_vocab
            .iter()
            .map(|(_, id)| *id)
            .chain(b.added.iter().map(|a| a.id))
            .max()
            .ok_or_else(|| o.err("empty vocabulary".into()))?;
        // Ids index dense tables (one entry per id up to the largest), so a hostile file
        // naming one huge id must not size them: cap ids far above any real vocabulary (the
        // same cap as the config's vocab_size).
        if max_id >= MAX_TOKEN_ID {
            return Err(o.err(format!(
                "token id {max_id} is too large (ids must be below {MAX_TOKEN_ID})"
            )));
        }
        // Real vocabularies are dense (a few holes at most), so the tables stay proportional
        // to the file: a 1 KB file cannot make them 16M entries long.
        let n_entries = b.bpe_vocab.len() + b.added.len();
        if max_id as usize >= 2 * n_entries + 65_536 {
            return Err(o.err(format!(
                "token id {max_id} is too large for a vocabulary of {n_entries} entries"
            )));
        }
        let n = max_id as usize + 1;
        let mut tokens: Vec<Option<String>> = vec![None; n];
        let mut types = vec![TokenType::Unused; n];
        // BPE string -> id. With duplicate strings the first (lowest id) wins.
        let mut bpe_ids: HashMap<String, u32> = HashMap::with_capacity(b.bpe_vocab.len());
        let mut bpe_vocab = b.bpe_vocab;
        bpe_vocab.sort_unstable_by_key(|(_, id)| *id);
        for (s, id) in bpe_vocab {
            let i = id as usize;
            if tokens[i].is_some() {
                return Err(o.err(format!("token id {id} appears twice in the vocabulary")));
            }
            types[i] = match &b.types {
                Some(t) => t[i],
                None => TokenType::Normal,
            };
            bpe_ids.entry(s.clone()).or_insert(id);
            tokens[i] = Some(s);
        }
        let mut vocab: HashMap<String, u32> = HashMap::with_capacity(bpe_ids.len() + b.added.len());
        for a in &b.added {
            let i = a.id as usize;
            tokens[i] = Some(a.content.clone());
            types[i] = if a.special {
                TokenType::Control
            } else {
                TokenType::UserDefined
            };
            vocab.entry(a.content.clone()).or_insert(a.id);
        }
        // byte -> id
        let mut byte_id = [u32::MAX; 256];
        for (byte, slot) in byte_id.iter_mut().enumerate() {
            if let Some(&id) = bpe_ids.get(BYTE_TO_CHAR[byte].encode_utf8(&mut [0; 4]) as &str) {
                *slot = id;
            }
        }
        // merges: (left, right) -> (rank, merged). A repeated pair keeps its last rank, as HF's
        // map construction does.
        let mut merge_map: PairMap<(u32, u32)> = PairMap::default();
        merge_map.reserve(b.merges.len());
        let mut joined = String::new();
        for (rank, (l, r)) in b.merges.iter().enumerate() {
            let id_of = |s: &str| {
                bpe_ids.get(s).copied().ok_or_else(|| {
                    o.err(format!(
                        "merge {rank} '{l} {r}': token '{s}' is not in the vocabulary"
                    ))
                })
            };
            let (a, c) = (id_of(l)?, id_of(r)?);
            joined.clear();
            joined.push_str(l);
            joined.push_str(r);
            let m = id_of(&joined)?;
            merge_map.insert((a as u64) << 32 | c as u64, (rank as u32, m));
        }
        let whole_words = b.ignore_merges.then(|| {
            bpe_ids
                .iter()
                .map(|(s, &id)| (bpe::token_string_to_bytes(s), id))
                .collect::<HashMap<_, _>>()
        });
        for (s, id) in bpe_ids {
            vocab.entry(s).or_insert(id);
        }
        // id -> bytes
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0u32);
        for t in &tokens {
            if let Some(t) = t {
                bytes.extend_from_slice(&bpe::token_string_to_bytes(t));
            }
            offsets.push(
                u32::try_from(bytes.len()).map_err(|_| o.err("vocabulary too large".into()))?,
            );
        }
        for (k, v) in [("bos", b.bos), ("eos", b.eos), ("pad", b.pad)] {
            if let Some(id) = v {
                if id as usize >= n {
                    return Err(o.err(format!("{k} token id {id} is out of range ({n} tokens)")));
                }
            }
        }
        Ok(Tokenizer {
            tokens,
            types,
            bytes,
            offsets,
            vocab,
            bpe: Bpe::new(merge_map, byte_id, whole_words),
            added: AddedTokens::new(b.added),
            pre_kind: b.pre,
            pre: b.pre.build(),
            bos: b.bos,
            eos: b.eos,
            pad: b.pad,
            add_bos: b.add_bos,
            chat_template: b.chat_template,
        })
    }

    /// The GGUF description of this tokenizer, for `moela convert`: tokens in id order (holes
    /// filled with "[PAD{id}]", type unused, as llama.cpp's converter does), types (control for
    /// special added tokens, user-defined for the other added tokens, normal otherwise), merges
    /// in rank order, and the pre-tokenizer's GGUF name.
    pub fn to_parts(&self) -> TokenizerParts {
        self.to_parts_padded(self.n_vocab())
    }

    /// [`Self::to_parts`], padded with "[PAD{id}]" unused tokens up to `n_vocab` entries (the
    /// model's `vocab_size`, e.g. 129280 for V3 or 102400 for V2). A smaller `n_vocab` than
    /// [`Self::n_vocab`] is ignored.
    pub fn to_parts_padded(&self, n_vocab: usize) -> TokenizerParts {
        let n = n_vocab.max(self.n_vocab());
        let mut tokens = Vec::with_capacity(n);
        let mut types = Vec::with_capacity(n);
        for id in 0..n {
            match self.tokens.get(id).and_then(|t| t.as_ref()) {
                Some(t) => {
                    tokens.push(t.clone());
                    types.push(self.types[id] as i32);
                }
                None => {
                    tokens.push(format!("[PAD{id}]"));
                    types.push(TokenType::Unused as i32);
                }
            }
        }
        let mut merges: Vec<(u32, u64)> = self.bpe.merge_pairs().collect();
        merges.sort_unstable();
        let merges = merges
            .into_iter()
            .map(|(_, k)| {
                let (a, b) = ((k >> 32) as usize, (k & 0xffff_ffff) as usize);
                format!(
                    "{} {}",
                    self.tokens[a].as_deref().unwrap_or(""),
                    self.tokens[b].as_deref().unwrap_or("")
                )
            })
            .collect();
        TokenizerParts {
            tokens,
            token_types: Some(types),
            merges,
            bos: self.bos,
            eos: self.eos,
            pad: self.pad,
            add_bos: self.add_bos,
            pre: self.pre_kind.gguf_name().to_string(),
            chat_template: self.chat_template.clone(),
        }
    }

    /// Encodes `text` to token ids.
    ///
    /// * `add_bos`: prepend the BOS token (when the tokenizer has one). Hugging Face
    ///   `tokenizers` never adds it for DeepSeek's files; llama.cpp follows `add_bos_token`
    ///   ([`Self::add_bos`]).
    /// * `parse_special`: recognise the added tokens (special and not, e.g. `<｜User｜>`,
    ///   `<think>`) in the text, exactly as HF `tokenizer.encode(text)` does. When false the
    ///   whole text is plain text: no added token is recognised, so user input cannot inject
    ///   control or role tokens.
    pub fn encode(&self, text: &str, add_bos: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_bos {
            if let Some(b) = self.bos {
                out.push(b);
            }
        }
        let mut enc = PlainEncoder::new(self, text.len());
        if parse_special {
            self.added.split(text, &mut |p| match p {
                Piece::Token(id) => out.push(id),
                Piece::Text(t) => enc.encode(t, &mut out),
            });
        } else {
            enc.encode(text, &mut out);
        }
        out
    }

    /// Decodes ids to text, Hugging Face style: every token's bytes (special tokens' text
    /// included) concatenated, invalid UTF-8 replaced by U+FFFD (lossy, like HF). An id outside
    /// the vocabulary is an error.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.decode_opts(ids, false)
    }

    /// [`Self::decode`], optionally leaving out special (control) tokens, like HF's
    /// `skip_special_tokens=True`.
    pub fn decode_opts(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        let mut buf = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let b = self.token_to_bytes(id).ok_or(Error::TokenOutOfRange {
                token: id,
                n_vocab: self.n_vocab(),
            })?;
            if skip_special && self.is_special(id) {
                continue;
            }
            buf.extend_from_slice(b);
        }
        Ok(match String::from_utf8(buf) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// The bytes a token stands for (special tokens: their text). `None` outside the vocabulary;
    /// a hole in the id space gives an empty slice.
    #[inline]
    pub fn token_to_bytes(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        if i >= self.tokens.len() {
            return None;
        }
        Some(&self.bytes[self.offsets[i] as usize..self.offsets[i + 1] as usize])
    }

    /// The token as stored in the vocabulary ("Ġthe", "<｜User｜>").
    pub fn token_to_str(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize)?.as_deref()
    }

    /// The id of a stored token string ("Ġthe", "<｜User｜>"); added tokens first.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.vocab.get(token).copied()
    }

    /// Number of ids (highest id + 1).
    pub fn n_vocab(&self) -> usize {
        self.tokens.len()
    }

    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    pub fn pad(&self) -> Option<u32> {
        self.pad
    }

    /// The file's `add_bos_token` (what llama.cpp would do by default).
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// A special (control) token: `<｜begin▁of▁sentence｜>`, `<｜end▁of▁sentence｜>`, ...
    pub fn is_special(&self, id: u32) -> bool {
        matches!(
            self.types.get(id as usize),
            Some(TokenType::Control | TokenType::Unknown)
        )
    }

    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// The added tokens (special and user-defined), in file order.
    pub fn added_tokens(&self) -> &[AddedToken] {
        &self.added.tokens
    }

    pub fn pre_tokenizer(&self) -> PreTokenizerKind {
        self.pre_kind
    }

    /// The chat template the file carries, if any.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Splits text into pre-tokens (before byte-level BPE) — for debugging and tests.
    pub fn pre_tokenize(&self, text: &str) -> Vec<String> {
        let mut v = Vec::new();
        self.pre.split(text, &mut |p: &str| v.push(p.to_string()));
        v
    }
}

/// Encodes plain text (no added tokens): pre-tokenizer, then BPE per pre-token. For long inputs
/// a per-call cache of pre-token -> ids avoids re-running BPE on repeated words.
struct PlainEncoder<'t, 'a> {
    tok: &'t Tokenizer,
    scratch: Scratch,
    cache: Option<BytesMap<&'a str, (u32, u32)>>,
}

impl<'t, 'a> PlainEncoder<'t, 'a> {
    fn new(tok: &'t Tokenizer, text_len: usize) -> Self {
        PlainEncoder {
            tok,
            scratch: Scratch::default(),
            cache: (text_len >= 2048).then(BytesMap::default),
        }
    }

    fn encode(&mut self, text: &'a str, out: &mut Vec<u32>) {
        let bpe = &self.tok.bpe;
        let scratch = &mut self.scratch;
        match &mut self.cache {
            None => self.tok.pre.split(text, &mut |p: &str| {
                bpe.encode_word(p.as_bytes(), out, scratch)
            }),
            Some(cache) => self.tok.pre.split(text, &mut |p: &'a str| {
                if p.len() <= 2 || p.len() > 64 {
                    bpe.encode_word(p.as_bytes(), out, scratch);
                    return;
                }
                if let Some(&(s, l)) = cache.get(p) {
                    out.extend_from_within(s as usize..(s + l) as usize);
                    return;
                }
                let s = out.len();
                bpe.encode_word(p.as_bytes(), out, scratch);
                if cache.len() < 1 << 16 {
                    cache.insert(p, (s as u32, (out.len() - s) as u32));
                }
            }),
        }
    }
}

#[cfg(test)]
mod tests;
