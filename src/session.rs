//! Per-sequence state: the latent KV cache, the position, scratch buffers and the last logits.

pub mod hash;
pub mod state;

use std::sync::Arc;

use crate::attention::kv_cache::{KvCache, KvType};
use crate::attention::mla::AttnPath;
use crate::error::{Error, Result};
use crate::model::deepseek::{self, Scratch};
use crate::model::Model;
use crate::moe::profile::ExpertProfile;
use crate::moe::prune::ExpertStats;
use crate::moe::router::{ExpertMask, ExpertSkip};
use crate::ops::rope::Rope;

/// Options for a new session.
#[derive(Clone, Debug)]
pub struct SessionParams {
    /// Context length in tokens; 0 = `min(max_position_embeddings, 4096)`.
    pub n_ctx: usize,
    pub kv_type: KvType,
    /// How attention is computed (the default picks expanded for prefill, absorbed for decode).
    pub attn_path: AttnPath,
    /// Run-time expert skipping (src/moe/router.rs; the default skips nothing). Checked
    /// against the model by [`Session::new`].
    pub expert_skip: ExpertSkip,
}

impl SessionParams {
    /// These parameters with `n_ctx` = `n` when it is 0 (a context sized to a known sequence).
    fn with_default_ctx(&self, n: usize) -> SessionParams {
        SessionParams {
            n_ctx: if self.n_ctx == 0 { n } else { self.n_ctx },
            ..self.clone()
        }
    }
}

impl Default for SessionParams {
    fn default() -> Self {
        SessionParams {
            n_ctx: 0,
            kv_type: KvType::F32,
            attn_path: AttnPath::Auto,
            expert_skip: ExpertSkip::default(),
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
    /// The position of the token whose logits are row 0 of `logits`.
    logits_pos0: usize,
    /// Routing decisions of verified tokens not counted into the profile yet:
    /// `(position, layer, expert)` (see [`Session::verify`]).
    held_profile: Vec<(usize, usize, usize)>,
    /// One-token logits while verifying on the expanded attention path.
    row_buf: Vec<f32>,
    /// The token at each position `0..pos` (what a saved state records).
    tokens: Vec<u32>,
    /// Most tokens one forward pass of [`eval`](Self::eval) takes ([`DEFAULT_MAX_BATCH`]).
    max_batch: usize,
    /// The multi-token-prediction drafter's state, when the model has an MTP module.
    mtp: Option<MtpState>,
}

/// The MTP module's side of a session: its own one-layer latent cache, whose row `j` holds the
/// pair (trunk hidden state `h_j`, token `t_{j+1}`) for `j < filled`, and the trunk's hidden
/// states not fed to it yet (recorded only once [`Session::enable_mtp`] has been called).
struct MtpState {
    on: bool,
    /// Allocated on the first draft.
    kv: Option<KvCache>,
    scratch: Scratch,
    logits: Vec<f32>,
    /// The trunk's hidden states (before the final norm) of positions `hid0..pos`, `[_, hidden]`.
    hidden: Vec<f32>,
    hid0: usize,
    /// Cache rows `0..filled` hold true pairs; rows past it are drafts' or stale.
    filled: usize,
    toks: Vec<u32>,
    chain: Vec<f32>,
}

/// The index of the largest value (the first of equals).
fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Most prompt tokens one forward pass evaluates by default: a longer batch runs in pieces of
/// this many. The activations and scratch of a pass grow with its batch (about 0.3 MB per
/// token for DeepSeek-V2-Lite: a 4,096-token prompt in one pass took ~1.5 GB more at its
/// peak), while the weights are read once per pass, and 512 tokens already keep the GEMM
/// kernels compute-bound (llama.cpp's default micro-batch is the same).
pub const DEFAULT_MAX_BATCH: usize = 512;

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
        params.expert_skip.check(cfg.moe.experts_per_tok)?;
        let kv = KvCache::new(params.kv_type, cfg.n_layers, n_ctx, cfg.kv_cache_row())?;
        let rope = Rope::new(cfg);
        let mut scratch = Scratch::default();
        scratch.set_expert_skip(params.expert_skip);
        let mtp = model_mtp_state(&model);
        Ok(Session {
            model,
            kv,
            rope,
            pos: 0,
            path: params.attn_path,
            scratch,
            logits: Vec::new(),
            n_logit_rows: 0,
            logits_pos0: 0,
            held_profile: Vec::new(),
            row_buf: Vec::new(),
            tokens: Vec::new(),
            max_batch: DEFAULT_MAX_BATCH,
            mtp,
        })
    }

    /// Sets the most tokens one forward pass of [`eval`](Self::eval) takes (at least 1;
    /// [`DEFAULT_MAX_BATCH`] by default). Logits agree across settings within rounding (the
    /// pieces' kernels see other batch sizes), not bit for bit.
    pub fn set_max_batch(&mut self, n: usize) {
        self.max_batch = n.max(1);
    }

    /// Whether the model has a multi-token-prediction module ([`mtp_draft`](Self::mtp_draft)).
    pub fn has_mtp(&self) -> bool {
        self.mtp.is_some()
    }

    /// A saved state does not carry the MTP module's cache nor the trunk's hidden states:
    /// after loading one, the module starts from the loaded position (see
    /// [`mtp_draft`](Self::mtp_draft)).
    pub(crate) fn mtp_state_loaded(&mut self) {
        if let Some(m) = self.mtp.as_mut().filter(|m| m.on) {
            m.hidden.clear();
            m.hid0 = self.pos;
            m.filled = 0;
        }
    }

    /// Starts keeping the trunk's hidden states for the MTP module (what
    /// [`mtp_draft`](Self::mtp_draft) reads; off by default, as they take `hidden_size` floats
    /// per token until drafted from). Call it before evaluating the prompt: the module's cache
    /// then covers the whole context. Enabled later (or by the first `mtp_draft`), the module
    /// starts from the current position, with its cache rows before it empty, and drafts from
    /// the next verified token on: worse drafts for a while, the same output. An error when
    /// the model has no MTP module.
    pub fn enable_mtp(&mut self) -> Result<()> {
        let Some(m) = self.mtp.as_mut() else {
            return Err(no_mtp(&self.model));
        };
        if !m.on {
            m.on = true;
            m.hidden.clear();
            m.hid0 = self.pos;
            m.filled = 0;
        }
        Ok(())
    }

    /// Keeps the hidden states of the `n` tokens the last forward pass over the trunk ran
    /// (at positions `pos0..pos0 + n`) for the MTP module.
    fn record_hidden(&mut self, pos0: usize, n: usize) {
        let Some(m) = self.mtp.as_mut().filter(|m| m.on) else {
            return;
        };
        let h = self.model.config.hidden_size;
        debug_assert_eq!(m.hid0 + m.hidden.len() / h, pos0);
        m.hidden
            .extend_from_slice(deepseek::hidden_states(&self.scratch, n, h));
    }

    /// Drafts up to `max` tokens after the session's tokens and `next` (the token sampled for
    /// position [`position`](Self::position), not evaluated yet) with the model's
    /// multi-token-prediction module, greedily: first the pairs (hidden state, next token)
    /// the module has not seen run as one batch through its layer, giving the draft for the
    /// position after `next`; each further draft chains the module on its own output hidden
    /// state and the previous draft (as vLLM does). The module's cache keeps only the true
    /// pairs: the chained rows are overwritten by the next call. An error when the model has
    /// no MTP module. Nothing is drafted at position 0 (there is no hidden state yet).
    ///
    /// After [`truncate`](Self::truncate) past the last verified hidden state (a rewind of
    /// more than one token) or a loaded state, the module's cache rows of the positions whose
    /// hidden states are gone stay as they were: drafts may be worse, the output is not
    /// affected (every draft is verified).
    pub fn mtp_draft(&mut self, next: u32, max: usize, out: &mut Vec<u32>) -> Result<()> {
        let model = self.model.clone();
        let cfg = &model.config;
        let Some(m) = self.mtp.as_mut() else {
            return Err(no_mtp(&model));
        };
        if !m.on {
            self.enable_mtp()?;
            return Ok(());
        }
        let Some(m) = self.mtp.as_mut() else {
            return Err(no_mtp(&model));
        };
        let (pos, h, v) = (self.pos, cfg.hidden_size, cfg.vocab_size);
        if max == 0 || pos == 0 || pos >= self.kv.n_ctx {
            return Ok(());
        }
        if (next as usize) >= v {
            return Err(Error::TokenOutOfRange {
                token: next,
                n_vocab: v,
            });
        }
        if m.hid0 > pos - 1 {
            // No hidden state of the last position (a loaded state): the next verified
            // token brings one.
            return Ok(());
        }
        model.check_files()?;
        if m.kv.is_none() {
            m.kv = Some(KvCache::new(
                self.kv.kind(),
                1,
                self.kv.n_ctx,
                cfg.kv_cache_row(),
            )?);
        }
        let kv = m.kv.as_mut().expect("allocated above");
        // The pairs j in start..pos: (h_j, t_{j+1}), the last with `next`.
        let start = m.filled.max(m.hid0).min(pos - 1);
        m.toks.clear();
        m.toks.extend_from_slice(&self.tokens[start + 1..pos]);
        m.toks.push(next);
        let rows = &m.hidden[(start - m.hid0) * h..(pos - m.hid0) * h];
        deepseek::mtp_forward(
            &model,
            &self.rope,
            kv,
            start,
            rows,
            &m.toks,
            false,
            self.path,
            &mut m.scratch,
            &mut m.logits,
        )?;
        m.filled = pos;
        // Keep h_{pos-1}: a truncate to `pos` drops `next` and with it pair pos-1.
        if pos - 1 > m.hid0 {
            m.hidden.drain(..(pos - 1 - m.hid0) * h);
            m.hid0 = pos - 1;
        }
        let mut d = argmax(&m.logits[..v]);
        out.push(d);
        let mut last = m.toks.len();
        for i in 1..max {
            let p = pos - 1 + i;
            if p >= self.kv.n_ctx {
                break;
            }
            // The module's own output hidden state of the last row stands for the trunk's.
            m.chain.clear();
            m.chain
                .extend_from_slice(&deepseek::hidden_states(&m.scratch, last, h)[(last - 1) * h..]);
            last = 1;
            deepseek::mtp_forward(
                &model,
                &self.rope,
                kv,
                p,
                &m.chain,
                &[d],
                false,
                self.path,
                &mut m.scratch,
                &mut m.logits,
            )?;
            d = argmax(&m.logits[..v]);
            out.push(d);
        }
        Ok(())
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

    /// The element type of the latent cache.
    pub fn kv_type(&self) -> KvType {
        self.kv.kind()
    }

    /// The tokens in the session, one per position `0..position()`.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Forgets the sequence; the cache is reused.
    pub fn reset(&mut self) {
        self.truncate(0);
    }

    /// Forgets the tokens at positions `pos..` (nothing when `pos` is not below
    /// [`position`](Self::position)): the next token goes to position `pos`. The latent cache
    /// rows past it are simply overwritten later. [`logits`](Self::logits) then gives the
    /// logits after the token at `pos - 1` when the last evaluation computed them (as
    /// [`verify`](Self::verify) does for every row), else None. This is the KV rollback of
    /// speculative decoding.
    pub fn truncate(&mut self, pos: usize) {
        if pos >= self.pos {
            return;
        }
        self.pos = pos;
        self.tokens.truncate(pos);
        self.held_profile.retain(|&(p, _, _)| p < pos);
        if let Some(m) = self.mtp.as_mut() {
            let h = self.model.config.hidden_size;
            // Pair pos-1 was formed with the token at pos, which is gone.
            m.filled = m.filled.min(pos.saturating_sub(1));
            if pos < m.hid0 {
                m.hidden.clear();
                m.hid0 = pos;
            } else {
                m.hidden.truncate((pos - m.hid0) * h);
            }
        }
        // Row r holds the logits after position logits_pos0 + r.
        self.n_logit_rows = if pos > self.logits_pos0 {
            (pos - self.logits_pos0).min(self.n_logit_rows)
        } else {
            0
        };
    }

    /// Checks a batch of `tokens` for [`eval`](Self::eval) and [`verify`](Self::verify).
    fn check_batch(&self, tokens: &[u32]) -> Result<()> {
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
        self.model.check_files()
    }

    /// Counts the held routing decisions of verified tokens that were kept.
    fn commit_profile(&mut self) {
        if self.held_profile.is_empty() {
            return;
        }
        if let Some(p) = self.scratch.profile_mut() {
            for &(_, layer, e) in &self.held_profile {
                p.record(layer, e);
            }
        }
        self.held_profile.clear();
    }

    /// Evaluates `tokens` after those already seen, as one batch or, beyond
    /// [`set_max_batch`](Self::set_max_batch) tokens, in pieces of that many. Returns the
    /// logits of the last token, or of every token (`[n, vocab]`, row-major) when
    /// `all_logits`. If a piece fails (an I/O error reading the model), the pieces before it
    /// stay evaluated.
    pub fn eval(&mut self, tokens: &[u32], all_logits: bool) -> Result<&[f32]> {
        self.check_batch(tokens)?;
        self.commit_profile();
        let n_vocab = self.model.config.vocab_size;
        if tokens.len() > self.max_batch {
            let mut rows = Vec::new();
            for piece in tokens.chunks(self.max_batch) {
                self.eval_batch(piece, all_logits)?;
                if all_logits {
                    rows.extend_from_slice(&self.logits[..piece.len() * n_vocab]);
                }
            }
            if all_logits {
                self.logits = rows;
                self.n_logit_rows = tokens.len();
                self.logits_pos0 = self.pos - tokens.len();
            }
            return Ok(&self.logits[..self.n_logit_rows * n_vocab]);
        }
        self.eval_batch(tokens, all_logits)?;
        Ok(&self.logits[..self.n_logit_rows * n_vocab])
    }

    /// One forward pass of `tokens` (checked by the caller).
    fn eval_batch(&mut self, tokens: &[u32], all_logits: bool) -> Result<()> {
        let needed = self.pos + tokens.len();
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
        self.record_hidden(self.pos, tokens.len());
        self.n_logit_rows = if all_logits { tokens.len() } else { 1 };
        self.logits_pos0 = needed - self.n_logit_rows;
        self.pos = needed;
        self.tokens.extend_from_slice(tokens);
        Ok(())
    }

    /// Evaluates `tokens` as one batch, like `eval(tokens, true)`, but computes every row with
    /// exactly the arithmetic of a one-token [`eval`](Self::eval) (the decode step): the same
    /// kernels, each token's activations quantized on their own, absorbed attention, while
    /// each block of weights is read once for all the tokens. Row `i` of the result
    /// (`[n, vocab]`) is therefore bit-identical to the logits that evaluating `tokens[..=i]`
    /// one at a time would give, which is what speculative decoding needs for its output to
    /// equal plain decoding's. Follow with [`truncate`](Self::truncate) to drop the rejected
    /// tail. With [`AttnPath::Expanded`] the tokens run one at a time (same result, no saving).
    ///
    /// A recorded expert profile (see [`record_profile`](Self::record_profile)) counts only
    /// the rows that are still kept at the next evaluation.
    pub fn verify(&mut self, tokens: &[u32]) -> Result<&[f32]> {
        self.check_batch(tokens)?;
        self.commit_profile();
        let n_vocab = self.model.config.vocab_size;
        let n = tokens.len();
        let pos0 = self.pos;
        let profiling = self.scratch.profile_mut().is_some();
        self.scratch.hold_profile_rows(profiling);
        let run = if self.path == AttnPath::Expanded && n > 1 {
            self.logits.resize(n * n_vocab, 0.0);
            let mut result = Ok(());
            for (t, &tok) in tokens.iter().enumerate() {
                result = deepseek::forward(
                    &self.model,
                    &self.rope,
                    &mut self.kv,
                    pos0 + t,
                    &[tok],
                    false,
                    self.path,
                    &mut self.scratch,
                    &mut self.row_buf,
                );
                if result.is_err() {
                    break;
                }
                self.record_hidden(pos0 + t, 1);
                // One-token passes: every held row is row 0, token t.
                let held = self.scratch.held_rows();
                self.held_profile
                    .extend(held.drain(..).map(|(_, l, e)| (pos0 + t, l, e)));
                self.logits[t * n_vocab..(t + 1) * n_vocab]
                    .copy_from_slice(&self.row_buf[..n_vocab]);
            }
            result
        } else {
            let r = crate::tensor::view::per_token_products(|| {
                deepseek::forward(
                    &self.model,
                    &self.rope,
                    &mut self.kv,
                    pos0,
                    tokens,
                    true,
                    self.path,
                    &mut self.scratch,
                    &mut self.logits,
                )
            });
            let held = self.scratch.held_rows();
            self.held_profile
                .extend(held.drain(..).map(|(t, l, e)| (pos0 + t, l, e)));
            if r.is_ok() {
                self.record_hidden(pos0, n);
            }
            r
        };
        self.scratch.hold_profile_rows(false);
        run?;
        self.n_logit_rows = n;
        self.logits_pos0 = pos0;
        self.pos = pos0 + n;
        self.tokens.extend_from_slice(tokens);
        Ok(&self.logits[..n * n_vocab])
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

    /// Takes the experts flagged in `mask` out of routing for every later evaluation (None:
    /// route over all experts again); see [`ExpertMask`]. Every masked layer must keep at
    /// least the model's top-k experts.
    pub fn set_expert_mask(&mut self, mask: Option<ExpertMask>) -> Result<()> {
        let cfg = &self.model.config;
        if let Some(m) = &mask {
            m.check(cfg.moe.n_routed_experts, cfg.moe.experts_per_tok)?;
        }
        self.scratch.set_expert_mask(mask);
        Ok(())
    }

    /// Starts recording, per MoE layer and routed expert, how many evaluated tokens chose it
    /// and the sum of their normalised gate weight × expert output norm (what `moela prune`
    /// scores experts by, [`crate::moe::prune`]); [`take_expert_stats`](Self::take_expert_stats)
    /// returns them.
    pub fn record_expert_stats(&mut self) {
        let cfg = &self.model.config;
        let moe_layers: Vec<usize> = (0..cfg.n_layers).filter(|&l| cfg.is_moe_layer(l)).collect();
        self.scratch
            .record_expert_stats(ExpertStats::new(cfg.moe.n_routed_experts, &moe_layers));
    }

    /// The statistics recorded since [`record_expert_stats`](Self::record_expert_stats).
    pub fn take_expert_stats(&mut self) -> Option<ExpertStats> {
        self.scratch.take_expert_stats()
    }

    /// The profile recorded since [`record_profile`](Self::record_profile).
    pub fn take_profile(&mut self) -> Option<ExpertProfile> {
        self.commit_profile();
        self.scratch.take_profile()
    }

    /// Routed-expert uses since the session started or since
    /// [`reset_expert_uses`](Self::reset_expert_uses): `(token × expert pairs, token × MoE
    /// layer pairs)`, counting every evaluated token (speculative drafts included).
    pub fn expert_uses(&self) -> (u64, u64) {
        self.scratch.expert_uses()
    }

    pub fn reset_expert_uses(&mut self) {
        self.scratch.reset_expert_uses();
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

/// The MTP module's logits over a whole sequence, `[n - 1, vocab]` row-major: `tokens` run
/// through the trunk as one batch, then row `i` is the module's prediction for the token at
/// `i + 2` from the trunk's hidden state at `i` and the token at `i + 1` (all pairs as one
/// batch through the module's layer, positions `0..n - 1`). What the golden MTP test compares
/// with the torch reference. An error when the model has no MTP module or `tokens` has fewer
/// than two tokens.
pub fn mtp_sequence_logits(
    model: Arc<Model>,
    tokens: &[u32],
    params: &SessionParams,
) -> Result<Vec<f32>> {
    if tokens.len() < 2 {
        return Err(Error::InvalidArg(
            "MTP logits need at least two tokens".into(),
        ));
    }
    let params = params.with_default_ctx(tokens.len());
    let mut session = Session::new(model.clone(), &params)?;
    session.enable_mtp()?;
    session.eval(tokens, false)?;
    let n = tokens.len() - 1;
    let m = session.mtp.as_mut().expect("checked above");
    let h = model.config.hidden_size;
    let mut kv = KvCache::new(
        session.kv.kind(),
        1,
        session.kv.n_ctx,
        model.config.kv_cache_row(),
    )?;
    let mut logits = Vec::new();
    deepseek::mtp_forward(
        &model,
        &session.rope,
        &mut kv,
        0,
        &m.hidden[..n * h],
        &tokens[1..],
        true,
        session.path,
        &mut m.scratch,
        &mut logits,
    )?;
    Ok(logits)
}

/// The MTP state of a new session on `model` (None without an MTP module).
fn model_mtp_state(model: &Model) -> Option<MtpState> {
    model.weights.mtp.as_ref().map(|_| MtpState {
        on: false,
        kv: None,
        scratch: Scratch::default(),
        logits: Vec::new(),
        hidden: Vec::new(),
        hid0: 0,
        filled: 0,
        toks: Vec::new(),
        chain: Vec::new(),
    })
}

/// The error of MTP drafting on a model without the module.
pub(crate) fn no_mtp(model: &Model) -> Error {
    Error::InvalidArg(format!(
        "{}: this model has no multi-token-prediction (MTP) module (GGUF: \
         deepseek2.nextn_predict_layers and blk.N.nextn.* tensors; HF: \
         model.layers.{{num_hidden_layers}}.eh_proj); use --spec lookup or off",
        model.path.display()
    ))
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
    let params = params.with_default_ctx(tokens.len());
    let mut session = Session::new(model, &params)?;
    let mut rows = session.eval(&tokens[..prefill], true)?.to_vec();
    for &t in &tokens[prefill..] {
        rows.extend_from_slice(session.eval(&[t], false)?);
    }
    Ok(rows)
}
