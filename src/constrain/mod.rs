//! Constrained decoding: a JSON Schema or a grammar turned into a mask over the vocabulary
//! that the [`Sampler`](crate::sampler::Sampler) applies before it chooses a token, so that
//! the generated text always matches.
//!
//! The grammar engine is [llguidance](https://github.com/guidance-ai/llguidance), the library
//! behind llama.cpp's, mistral.rs' and vLLM's structured output. It reads JSON Schema, Lark (its
//! own dialect, `docs/CONSTRAINED.md`) and regular expressions; llama.cpp's GBNF is rewritten
//! into that Lark dialect first (`gbnf.rs`). Its token trie is built once per model from the
//! model's own tokenizer: every token's bytes, special (control) tokens marked as special so
//! that no text rule can produce them, and the end-of-sequence token(s) allowed only when the
//! grammar can end.
//!
//! Behind the default cargo feature `constrain`; without it the API is the same and
//! [`Constraint::new`] fails with [`Error::Unsupported`].

#[cfg(feature = "constrain")]
mod gbnf;

use crate::error::{Error, Result};
use crate::model::Model;

/// The syntaxes a [`Grammar`] can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// A JSON Schema (draft 2020-12 subset that llguidance supports); the output is one JSON
    /// value that validates against it.
    JsonSchema,
    /// llama.cpp's GBNF (`root ::= ...`).
    Gbnf,
    /// llguidance's Lark dialect (`start: ...`).
    Lark,
    /// A regular expression the whole output must match.
    Regex,
}

impl Syntax {
    /// The names [`Syntax::parse`] accepts, for messages and `--help`.
    pub const NAMES: &'static str = "json_schema (or json), gbnf, lark, regex";

    /// "json_schema" / "json", "gbnf", "lark" or "regex" (case-insensitive).
    pub fn parse(name: &str) -> Result<Syntax> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "json_schema" | "json-schema" | "json" => Syntax::JsonSchema,
            "gbnf" => Syntax::Gbnf,
            "lark" => Syntax::Lark,
            "regex" => Syntax::Regex,
            other => {
                return Err(Error::InvalidArg(format!(
                    "grammar syntax {other:?}: must be one of {}",
                    Syntax::NAMES
                )))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Syntax::JsonSchema => "json_schema",
            Syntax::Gbnf => "gbnf",
            Syntax::Lark => "lark",
            Syntax::Regex => "regex",
        }
    }
}

/// A constraint's source text and its syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grammar {
    pub syntax: Syntax,
    pub text: String,
}

impl Grammar {
    pub fn new(syntax: Syntax, text: impl Into<String>) -> Grammar {
        Grammar {
            syntax,
            text: text.into(),
        }
    }

    pub fn json_schema(schema: impl Into<String>) -> Grammar {
        Grammar::new(Syntax::JsonSchema, schema)
    }

    pub fn gbnf(text: impl Into<String>) -> Grammar {
        Grammar::new(Syntax::Gbnf, text)
    }

    pub fn lark(text: impl Into<String>) -> Grammar {
        Grammar::new(Syntax::Lark, text)
    }
}

/// Whether this build has constrained decoding (the `constrain` cargo feature).
pub const SUPPORTED: bool = cfg!(feature = "constrain");

/// Per-model state shared by every constraint of the model: the token trie and llguidance's
/// parser factory, built on first use (a few tens of milliseconds for a 100k vocabulary).
#[derive(Default)]
pub(crate) struct ModelGrammarEnv {
    #[cfg(feature = "constrain")]
    factory: std::sync::OnceLock<std::result::Result<std::sync::Arc<imp::Factory>, String>>,
}

/// A compiled constraint with its parse state: which tokens may come next. Give it to a
/// [`Sampler`](crate::sampler::Sampler) ([`set_constraint`](crate::sampler::Sampler::set_constraint)),
/// which masks the logits with it and advances it with each token it returns.
pub struct Constraint {
    #[cfg(feature = "constrain")]
    inner: imp::Inner,
    #[cfg(not(feature = "constrain"))]
    _never: std::convert::Infallible,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint").finish_non_exhaustive()
    }
}

impl Constraint {
    /// Compiles `grammar` for `model`'s vocabulary. A schema or grammar that does not parse or
    /// that llguidance refuses is [`Error::InvalidArg`] with llguidance's message (which names
    /// the place); a model without a tokenizer or an end-of-sequence token is
    /// [`Error::InvalidArg`] too; a build without the `constrain` feature gives
    /// [`Error::Unsupported`].
    pub fn new(model: &Model, grammar: &Grammar) -> Result<Constraint> {
        #[cfg(feature = "constrain")]
        {
            Ok(Constraint {
                inner: imp::Inner::new(model, grammar)?,
            })
        }
        #[cfg(not(feature = "constrain"))]
        {
            let _ = grammar;
            Err(Error::Unsupported {
                path: model.path.clone(),
                msg: "constrained decoding (JSON Schema / grammars) needs moela built with the \
                      'constrain' cargo feature (on by default)"
                    .into(),
            })
        }
    }

    /// Sets `allowed[id]` for every token the grammar allows next (`allowed` is resized to the
    /// model's vocabulary). An error when the grammar has failed or allows no token at all.
    pub fn allowed(&mut self, allowed: &mut Vec<bool>) -> Result<()> {
        #[cfg(feature = "constrain")]
        {
            self.inner.allowed(allowed)
        }
        #[cfg(not(feature = "constrain"))]
        {
            let _ = allowed;
            match self._never {}
        }
    }

    /// Advances the parse state past `token`, which must be allowed.
    pub fn commit(&mut self, token: u32) -> Result<()> {
        #[cfg(feature = "constrain")]
        {
            self.inner.commit(token)
        }
        #[cfg(not(feature = "constrain"))]
        {
            let _ = token;
            match self._never {}
        }
    }

    /// Whether the output is complete: the grammar has matched and allows nothing more than
    /// the end of the sequence (generation stops here).
    pub fn is_finished(&self) -> bool {
        #[cfg(feature = "constrain")]
        {
            self.inner.is_finished()
        }
        #[cfg(not(feature = "constrain"))]
        {
            match self._never {}
        }
    }

    /// Back to the start of the grammar (no tokens committed).
    pub fn reset(&mut self) {
        #[cfg(feature = "constrain")]
        {
            self.inner.reset()
        }
        #[cfg(not(feature = "constrain"))]
        {
            match self._never {}
        }
    }

    /// The vocabulary size the mask covers (the model's logits).
    pub fn n_vocab(&self) -> usize {
        #[cfg(feature = "constrain")]
        {
            self.inner.n_vocab()
        }
        #[cfg(not(feature = "constrain"))]
        {
            match self._never {}
        }
    }

    /// Applies the mask to `logits` in place in a fresh computation: disallowed tokens get
    /// `-inf`. For callers that sample themselves (the [`Sampler`](crate::sampler::Sampler)
    /// does this internally).
    pub fn mask_logits(&mut self, logits: &mut [f32]) -> Result<()> {
        let mut allowed = Vec::new();
        self.allowed(&mut allowed)?;
        for (l, &a) in logits.iter_mut().zip(allowed.iter()) {
            if !a {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }
}

#[cfg(feature = "constrain")]
mod imp {
    use std::sync::Arc;

    use llguidance::api::TopLevelGrammar;
    use llguidance::toktrie::{SimpleVob, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
    use llguidance::{JsonCompileOptions, Matcher, ParserFactory};

    use super::{Grammar, Syntax};
    use crate::error::{Error, Result};
    use crate::model::Model;

    /// llguidance's view of the model's vocabulary.
    struct TokEnv {
        trie: TokTrie,
    }

    impl TokenizerEnv for TokEnv {
        fn tok_trie(&self) -> &TokTrie {
            &self.trie
        }

        /// Greedy longest-match over the trie: llguidance only uses it for forced tokens and
        /// prompt healing, which moela does not use (hence not canonical, below).
        fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
            self.trie.greedy_tokenize(s)
        }

        fn tokenize_is_canonical(&self) -> bool {
            false
        }
    }

    pub(crate) struct Factory {
        factory: ParserFactory,
        n_vocab: usize,
        eos: Vec<u32>,
    }

    /// The token trie and parser factory of `model`: every id below the config's vocab_size
    /// (the logits' length) gets its bytes; special tokens are 0xFF + their text (llguidance's
    /// marker: no grammar text can match them, `<|name|>` in Lark can); holes and ids past the
    /// tokenizer are empty (never allowed).
    fn build_factory(model: &Model) -> std::result::Result<Factory, String> {
        let tok = model.tokenizer.as_ref().ok_or_else(|| {
            "constrained decoding needs the model's tokenizer, and this model has none".to_string()
        })?;
        let n_vocab = model.config.vocab_size;
        let mut eos: Vec<u32> = Vec::new();
        for e in [tok.eos(), model.config.eos_token_id].into_iter().flatten() {
            if (e as usize) < n_vocab && !eos.contains(&e) {
                eos.push(e);
            }
        }
        if eos.is_empty() {
            return Err(
                "constrained decoding needs an end-of-sequence token, and this model has none"
                    .into(),
            );
        }
        let mut words = Vec::with_capacity(n_vocab);
        for id in 0..n_vocab as u32 {
            let bytes = tok.token_to_bytes(id).unwrap_or(&[]);
            let w = if bytes.is_empty() {
                Vec::new()
            } else if tok.is_special(id) || eos.contains(&id) {
                let mut w = Vec::with_capacity(bytes.len() + 1);
                w.push(TokTrie::SPECIAL_TOKEN_MARKER);
                w.extend_from_slice(bytes);
                w
            } else {
                bytes.to_vec()
            };
            words.push(w);
        }
        let mut info = TokRxInfo::new(n_vocab as u32, eos[0]);
        info.tok_bos = tok.bos().filter(|&b| (b as usize) < n_vocab);
        info.tok_pad = tok.pad().filter(|&b| (b as usize) < n_vocab);
        let trie = TokTrie::from(&info, &words).with_eos_tokens(&eos);
        let env: llguidance::toktrie::TokEnv = Arc::new(TokEnv { trie });
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
        factory.quiet();
        Ok(Factory {
            factory,
            n_vocab,
            eos,
        })
    }

    fn no_token_allowed() -> Error {
        Error::InvalidArg(
            "constrained decoding: the grammar allows no token of the vocabulary here \
             (it needs text no token sequence can spell)"
                .into(),
        )
    }

    pub(crate) struct Inner {
        factory: Arc<Factory>,
        /// The state before any token (for reset).
        fresh: Matcher,
        matcher: Matcher,
        vob: SimpleVob,
    }

    impl Inner {
        pub(crate) fn new(model: &Model, grammar: &Grammar) -> Result<Inner> {
            let factory = model
                .grammar_env
                .factory
                .get_or_init(|| build_factory(model).map(Arc::new))
                .clone()
                .map_err(Error::InvalidArg)?;
            let what = grammar.syntax.name();
            let bad = |e: String| Error::InvalidArg(format!("{what}: {e}"));
            let top = match grammar.syntax {
                Syntax::JsonSchema => {
                    let v: serde_json::Value = serde_json::from_str(&grammar.text)
                        .map_err(|e| bad(format!("not JSON: {e}")))?;
                    if !(v.is_object() || v.is_boolean()) {
                        return Err(bad("a JSON Schema is an object (or true/false)".into()));
                    }
                    // Compact JSON unless the schema says otherwise ("x-guidance": llguidance's
                    // options): flexible whitespace lets a model pad with blanks forever.
                    let mut v = v;
                    if v.is_object() && v.get("x-guidance").is_none() {
                        JsonCompileOptions {
                            whitespace_flexible: false,
                            ..Default::default()
                        }
                        .apply_to(&mut v);
                    }
                    TopLevelGrammar::from_json_schema(v)
                }
                Syntax::Lark => TopLevelGrammar::from_lark(grammar.text.clone()),
                Syntax::Gbnf => TopLevelGrammar::from_lark(
                    super::gbnf::gbnf_to_lark(&grammar.text).map_err(Error::InvalidArg)?,
                ),
                Syntax::Regex => TopLevelGrammar::from_regex(&grammar.text),
            };
            let parser = factory
                .factory
                .create_parser(top)
                .map_err(|e| bad(e.to_string()))?;
            let matcher = Matcher::new(Ok(parser));
            if let Some(e) = matcher.get_error() {
                return Err(bad(e));
            }
            Ok(Inner {
                vob: factory.factory.tok_env().tok_trie().alloc_token_set(),
                factory,
                fresh: matcher.clone(),
                matcher,
            })
        }

        pub(crate) fn n_vocab(&self) -> usize {
            self.factory.n_vocab
        }

        pub(crate) fn allowed(&mut self, allowed: &mut Vec<bool>) -> Result<()> {
            self.vob = self.matcher.compute_mask_or_eos().map_err(|e| {
                let e = e.to_string();
                // llguidance stops with NoExtensionBias (its message's first word, the
                // matcher being in its error state by then) when no token of the vocabulary
                // can continue the text: say that rather than dump its parser state.
                if e.starts_with("NoExtensionBias") {
                    no_token_allowed()
                } else {
                    Error::InvalidArg(format!("constrained decoding: the grammar failed: {e}"))
                }
            })?;
            let n = self.factory.n_vocab;
            allowed.clear();
            allowed.resize(n, false);
            let mut any = false;
            self.vob.iter_set_entries(|i| {
                if i < n {
                    allowed[i] = true;
                    any = true;
                }
            });
            if !any {
                return Err(no_token_allowed());
            }
            Ok(())
        }

        pub(crate) fn commit(&mut self, token: u32) -> Result<()> {
            // After the end, the mask allows only end-of-sequence tokens: taking one is fine.
            if self.matcher.is_stopped()
                && !self.matcher.is_error()
                && self.factory.eos.contains(&token)
            {
                return Ok(());
            }
            self.matcher.consume_token(token).map_err(|e| {
                Error::InvalidArg(format!(
                    "constrained decoding: token {token} is not allowed here: {e}"
                ))
            })
        }

        /// A failed matcher counts as stopped for llguidance; it is not a finished output.
        pub(crate) fn is_finished(&self) -> bool {
            self.matcher.is_stopped() && !self.matcher.is_error()
        }

        pub(crate) fn reset(&mut self) {
            self.matcher = self.fresh.clone();
        }
    }
}
