//! Per-sequence state: the latent KV cache, the position, scratch buffers and the last logits.

use std::sync::Arc;

use crate::attention::kv_cache::{KvCache, KvType};
use crate::attention::mla::AttnPath;
use crate::error::{Error, Result};
use crate::model::deepseek::{self, Scratch};
use crate::model::Model;
use crate::moe::profile::ExpertProfile;
use crate::ops::rope::Rope;

/// Options for a new session.
#[derive(Clone, Debug)]
pub struct SessionParams {
    /// Context length in tokens; 0 = `min(max_position_embeddings, 4096)`.
    pub n_ctx: usize,
    pub kv_type: KvType,
    /// How attention is computed (the default picks expanded for prefill, absorbed for decode).
    pub attn_path: AttnPath,
}

impl Default for SessionParams {
    fn default() -> Self {
        SessionParams {
            n_ctx: 0,
            kv_type: KvType::F32,
            attn_path: AttnPath::Auto,
        }
    }
}

/// One sequence being evaluated. Owned by one thread at a time; many sessions can share one
/// [`Model`].
pub struct Session {
    model: Arc<Model>,
    kv: KvCache,
    rope: Rope,
    pos: usize,
    path: AttnPath,
    scratch: Scratch,
    logits: Vec<f32>,
    n_logit_rows: usize,
}

impl Session {
    pub fn new(model: Arc<Model>, params: &SessionParams) -> Result<Session> {
        model.check_files()?;
        let cfg = &model.config;
        let n_ctx = if params.n_ctx == 0 {
            cfg.max_position_embeddings.clamp(1, 4096)
        } else {
            params.n_ctx
        };
        if n_ctx > (1 << 24) {
            return Err(Error::InvalidArg(format!(
                "n_ctx {n_ctx} is larger than 2^24"
            )));
        }
        let kv = KvCache::new(params.kv_type, cfg.n_layers, n_ctx, cfg.kv_cache_row())?;
        let rope = Rope::new(cfg);
        Ok(Session {
            model,
            kv,
            rope,
            pos: 0,
            path: params.attn_path,
            scratch: Scratch::default(),
            logits: Vec::new(),
            n_logit_rows: 0,
        })
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Tokens evaluated so far (the next token's position).
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn n_ctx(&self) -> usize {
        self.kv.n_ctx
    }

    /// Forgets the sequence; the cache is reused.
    pub fn reset(&mut self) {
        self.pos = 0;
        self.n_logit_rows = 0;
    }

    /// Evaluates `tokens` as one batch after those already seen. Returns the logits of the
    /// last token, or of every token (`[n, vocab]`, row-major) when `all_logits`.
    pub fn eval(&mut self, tokens: &[u32], all_logits: bool) -> Result<&[f32]> {
        if tokens.is_empty() {
            return Err(Error::InvalidArg("eval: no tokens".into()));
        }
        let n_vocab = self.model.config.vocab_size;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(Error::TokenOutOfRange {
                token: bad,
                n_vocab,
            });
        }
        let needed = self.pos + tokens.len();
        if needed > self.kv.n_ctx {
            return Err(Error::ContextFull {
                needed,
                n_ctx: self.kv.n_ctx,
                n_ctx_train: self.model.config.max_position_embeddings,
            });
        }
        self.model.check_files()?;
        deepseek::forward(
            &self.model,
            &self.rope,
            &mut self.kv,
            self.pos,
            tokens,
            all_logits,
            self.path,
            &mut self.scratch,
            &mut self.logits,
        )?;
        self.pos = needed;
        self.n_logit_rows = if all_logits { tokens.len() } else { 1 };
        Ok(&self.logits[..self.n_logit_rows * n_vocab])
    }

    /// Starts recording which routed experts each evaluated token chooses (see
    /// [`crate::moe::profile`]); [`take_profile`](Self::take_profile) returns the counts.
    pub fn record_profile(&mut self, model_name: &str) {
        let cfg = &self.model.config;
        let moe_layers: Vec<usize> = (0..cfg.n_layers).filter(|&l| cfg.is_moe_layer(l)).collect();
        self.scratch.record_profile(ExpertProfile::new(
            model_name,
            cfg.n_layers,
            cfg.moe.n_routed_experts,
            &moe_layers,
        ));
    }

    /// The profile recorded since [`record_profile`](Self::record_profile).
    pub fn take_profile(&mut self) -> Option<ExpertProfile> {
        self.scratch.take_profile()
    }

    /// The logits of the last evaluated token.
    pub fn logits(&self) -> Option<&[f32]> {
        if self.n_logit_rows == 0 {
            return None;
        }
        let v = self.model.config.vocab_size;
        Some(&self.logits[(self.n_logit_rows - 1) * v..self.n_logit_rows * v])
    }
}

/// The logits after every token of `tokens`, `[n, vocab]` row-major: the first `prefill`
/// tokens run as one batch, each later one alone through the KV cache (what `moela logits`
/// writes).
pub fn sequence_logits(
    model: Arc<Model>,
    tokens: &[u32],
    prefill: usize,
    params: &SessionParams,
) -> Result<Vec<f32>> {
    if prefill == 0 || prefill > tokens.len() {
        return Err(Error::InvalidArg(format!(
            "prefill {prefill}: must be between 1 and the number of tokens ({})",
            tokens.len()
        )));
    }
    let params = SessionParams {
        n_ctx: if params.n_ctx == 0 {
            tokens.len()
        } else {
            params.n_ctx
        },
        ..params.clone()
    };
    let mut session = Session::new(model, &params)?;
    let mut rows = session.eval(&tokens[..prefill], true)?.to_vec();
    for &t in &tokens[prefill..] {
        rows.extend_from_slice(session.eval(&[t], false)?);
    }
    Ok(rows)
}
