//! One forward pass of a DeepSeek-V2/V3 model over a batch of tokens.
//!
//! Per layer: `x += MLA(RMSNorm(x))`, then `x += FFN(RMSNorm(x))`, where FFN is the dense
//! SwiGLU for the first `first_k_dense_replace` layers and DeepSeekMoE (routed + shared
//! experts) after. Shapes: `x [n, hidden]`; logits `[n_out, vocab]`.

use crate::attention::kv_cache::KvCache;
use crate::attention::mla::{self, AttnPath, MlaScratch};
use crate::error::Result;
use crate::model::weights::{Ffn, Layer, Mlp, Moe};
use crate::model::Model;
use crate::moe::profile::ExpertProfile;
use crate::moe::prune::ExpertStats;
use crate::moe::router::{self, ExpertMask, ExpertSkip, RouterScratch};
use crate::ops::{self, rope::Rope};
use crate::stage_times::{self as st, Stage};
use crate::tensor::view::{matmul_multi, MatJob};

/// Buffers owned by a session and reused by every call (grown, never shrunk), so the
/// per-token path allocates nothing once warm.
#[derive(Default, Debug)]
pub struct Scratch {
    x: Vec<f32>,
    xn: Vec<f32>,
    y: Vec<f32>,
    norm_w: Vec<f32>,
    mla: MlaScratch,
    ffn: FfnScratch,
}

impl Scratch {
    /// Starts counting the routed experts every token chooses (what `moela profile` records).
    pub fn record_profile(&mut self, profile: ExpertProfile) {
        self.ffn.profile = Some(profile);
    }

    /// The profile recorded since [`record_profile`](Self::record_profile).
    pub fn take_profile(&mut self) -> Option<ExpertProfile> {
        self.ffn.profile.take()
    }

    /// The profile being recorded, if any.
    pub fn profile_mut(&mut self) -> Option<&mut ExpertProfile> {
        self.ffn.profile.as_mut()
    }

    /// While on, the routing decisions of a recorded profile are held back as
    /// `(batch row, layer, expert)` in [`held_rows`](Self::held_rows) instead of counted, so
    /// that the caller can count only the rows it keeps (speculative verification).
    pub fn hold_profile_rows(&mut self, on: bool) {
        self.ffn.hold_rows = on;
    }

    /// Run-time expert skipping for every later call (checked by the caller).
    pub fn set_expert_skip(&mut self, skip: ExpertSkip) {
        self.ffn.skip = skip;
    }

    /// Experts taken out of routing for every later call (checked by the caller).
    pub fn set_expert_mask(&mut self, mask: Option<ExpertMask>) {
        self.ffn.mask = mask;
    }

    /// Starts recording the per-expert statistics pruning scores experts by.
    pub fn record_expert_stats(&mut self, stats: ExpertStats) {
        self.ffn.stats = Some(stats);
    }

    /// The statistics recorded since [`record_expert_stats`](Self::record_expert_stats).
    pub fn take_expert_stats(&mut self) -> Option<ExpertStats> {
        self.ffn.stats.take()
    }

    /// Routed-expert uses counted since the last [`reset_expert_uses`](Self::reset_expert_uses):
    /// `(token × expert pairs, token × MoE layer pairs)`; their ratio is the mean number of
    /// routed experts a token used per MoE layer.
    pub fn expert_uses(&self) -> (u64, u64) {
        (self.ffn.uses, self.ffn.token_layers)
    }

    pub fn reset_expert_uses(&mut self) {
        self.ffn.uses = 0;
        self.ffn.token_layers = 0;
    }

    /// The routing decisions held back (see [`hold_profile_rows`](Self::hold_profile_rows)).
    pub fn held_rows(&mut self) -> &mut Vec<(usize, usize, usize)> {
        &mut self.ffn.held
    }
}

#[derive(Default, Debug)]
struct FfnScratch {
    router_logits: Vec<f32>,
    router: RouterScratch,
    chosen: Vec<(usize, f32)>,
    /// Per expert: the (token, weight) pairs routed to it.
    assignments: Vec<Vec<(usize, f32)>>,
    gathered: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    down: Vec<f32>,
    /// The down outputs of a MoE layer's experts, `[tokens, hidden]` each, in expert order,
    /// then the shared experts'.
    layer_down: Vec<f32>,
    /// Experts used by the current layer, in use order.
    used: Vec<usize>,
    /// Next-layer prediction: the hidden state normed with that layer's FFN norm, its router
    /// logits, per expert the tokens predicted to choose it, and the layer predicted for.
    pred_x: Vec<f32>,
    pred_logits: Vec<f32>,
    pred_count: Vec<usize>,
    pred_list: Vec<usize>,
    pred_layer: Option<usize>,
    /// The prediction for the layer after the next.
    pred_far: Vec<usize>,
    profile: Option<ExpertProfile>,
    hold_rows: bool,
    skip: ExpertSkip,
    mask: Option<ExpertMask>,
    /// Pruning statistics being recorded, and per token of the batch the sum of its routed
    /// weights (to normalise the gate weights).
    stats: Option<ExpertStats>,
    tok_wsum: Vec<f32>,
    uses: u64,
    token_layers: u64,
    held: Vec<(usize, usize, usize)>,
}

fn resize(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    v.resize(n, 0.0);
    &mut v[..n]
}

/// Runs `tokens` (already range-checked) at positions `pos0..`, writing the logits of the
/// last token (or of every token when `all_logits`) into `logits`.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    model: &Model,
    rope: &Rope,
    kv: &mut KvCache,
    pos0: usize,
    tokens: &[u32],
    all_logits: bool,
    path: AttnPath,
    s: &mut Scratch,
    logits: &mut Vec<f32>,
) -> Result<()> {
    let cfg = &model.config;
    let w = &model.weights;
    let (n, h) = (tokens.len(), cfg.hidden_size);
    let t0 = st::start();
    let x = resize(&mut s.x, n * h);
    for (t, &tok) in tokens.iter().enumerate() {
        w.embed.row_f32(tok as usize, &mut x[t * h..(t + 1) * h]);
    }
    st::stop(Stage::Embed, t0);
    for (l, layer) in w.layers.iter().enumerate() {
        decoder_layer(model, rope, kv, l, l, layer, pos0, n, path, s)?;
    }
    head(
        model,
        &w.norm,
        &w.lm_head,
        n,
        all_logits,
        &s.x,
        &mut s.xn,
        &mut s.norm_w,
        logits,
    );
    Ok(())
}

/// The last evaluation's hidden states, `[n, hidden]` for its `n` tokens: the residual stream
/// after the last layer, before the final norm (what the MTP module reads). Valid until the
/// next call with this scratch.
pub fn hidden_states(s: &Scratch, n: usize, hidden: usize) -> &[f32] {
    &s.x[..n * hidden]
}

/// Runs the MTP module ([`crate::model::weights::Mtp`]) over `n = tokens.len()` pairs: row `t`
/// joins `hidden[t]`, the trunk's hidden state at position `pos0 + t` (before the final norm),
/// with the embedding of `tokens[t]`, the token after it; the module's layer attends through
/// `kv` (one layer: the module's own latent cache) at positions `pos0..`, like llama.cpp's and
/// vLLM's MTP with positions shifted by one, which RoPE's relative form makes the same. Writes
/// the logits of the last row, or of every row when `all_logits`: each row predicts the token
/// two after its hidden state's position. An error when the model has no MTP module.
#[allow(clippy::too_many_arguments)]
pub fn mtp_forward(
    model: &Model,
    rope: &Rope,
    kv: &mut KvCache,
    pos0: usize,
    hidden: &[f32],
    tokens: &[u32],
    all_logits: bool,
    path: AttnPath,
    s: &mut Scratch,
    logits: &mut Vec<f32>,
) -> Result<()> {
    let cfg = &model.config;
    let w = &model.weights;
    let (Some(mtp), Some(embed), Some(head_w)) = (&w.mtp, w.mtp_embed(), w.mtp_head()) else {
        return Err(crate::error::Error::InvalidArg(format!(
            "{}: the model has no multi-token-prediction (MTP) module",
            model.path.display()
        )));
    };
    let (n, h) = (tokens.len(), cfg.hidden_size);
    assert_eq!(hidden.len(), n * h, "one hidden state per token");
    // xn: per row [enorm(embed(t)) ‖ hnorm(h)], then x = eh_proj(xn).
    let cat = resize(&mut s.xn, n * 2 * h);
    let ew = resize(&mut s.norm_w, 2 * h);
    mtp.enorm.row_f32(0, &mut ew[..h]);
    mtp.hnorm.row_f32(0, &mut ew[h..]);
    let y = resize(&mut s.y, h);
    for (t, (&tok, row)) in tokens.iter().zip(cat.chunks_exact_mut(2 * h)).enumerate() {
        embed.row_f32(tok as usize, y);
        let (e_half, h_half) = row.split_at_mut(h);
        ops::rms_norm(y, &ew[..h], cfg.rms_norm_eps, e_half);
        ops::rms_norm(
            &hidden[t * h..(t + 1) * h],
            &ew[h..],
            cfg.rms_norm_eps,
            h_half,
        );
    }
    let x = resize(&mut s.x, n * h);
    mtp.eh_proj.matmul(cat, n, x);
    decoder_layer(
        model,
        rope,
        kv,
        0,
        cfg.n_layers,
        &mtp.layer,
        pos0,
        n,
        path,
        s,
    )?;
    head(
        model,
        &mtp.head_norm,
        head_w,
        n,
        all_logits,
        &s.x,
        &mut s.xn,
        &mut s.norm_w,
        logits,
    );
    Ok(())
}

/// One decoder layer over the `n` rows of `s.x`, in place: attention through layer `kv_layer`
/// of `kv`, then the FFN; `l` is the layer's index in the model (the MTP layer's is
/// `n_layers`, past the trunk's: no expert store, no prefetch).
#[allow(clippy::too_many_arguments)]
fn decoder_layer(
    model: &Model,
    rope: &Rope,
    kv: &mut KvCache,
    kv_layer: usize,
    l: usize,
    layer: &Layer,
    pos0: usize,
    n: usize,
    path: AttnPath,
    s: &mut Scratch,
) -> Result<()> {
    let cfg = &model.config;
    let h = cfg.hidden_size;
    let x = &mut s.x[..n * h];
    {
        // Attention block.
        let t0 = st::start();
        let nw = resize(&mut s.norm_w, h);
        layer.attn_norm.row_f32(0, nw);
        let xn = resize(&mut s.xn, n * h);
        for (xi, xo) in x.chunks_exact(h).zip(xn.chunks_exact_mut(h)) {
            ops::rms_norm(xi, nw, cfg.rms_norm_eps, xo);
        }
        let y = resize(&mut s.y, n * h);
        st::stop(Stage::Norms, t0);
        let t0 = st::start();
        mla::forward(
            cfg,
            &layer.attn,
            rope,
            kv,
            kv_layer,
            pos0,
            xn,
            n,
            path,
            &mut s.mla,
            y,
        );
        st::stop(Stage::Attention, t0);
        let t0 = st::start();
        x.iter_mut().zip(y.iter()).for_each(|(a, b)| *a += b);

        // Feed-forward block.
        layer.ffn_norm.row_f32(0, nw);
        for (xi, xo) in x.chunks_exact(h).zip(xn.chunks_exact_mut(h)) {
            ops::rms_norm(xi, nw, cfg.rms_norm_eps, xo);
        }
        y.fill(0.0);
        st::stop(Stage::Norms, t0);
        match &layer.ffn {
            Ffn::Dense(m) => mlp_batch(m, xn, n, &mut s.ffn, y),
            Ffn::Moe(moe) => moe_batch(model, l, moe, x, xn, n, &mut s.ffn, y)?,
        }
        let t0 = st::start();
        x.iter_mut().zip(y.iter()).for_each(|(a, b)| *a += b);
        st::stop(Stage::Norms, t0);
    }
    Ok(())
}

/// `logits = head(norm(x))` for the last of the `n` rows of `x`, or every row when `all`.
#[allow(clippy::too_many_arguments)]
fn head(
    model: &Model,
    norm: &crate::tensor::TensorView,
    head_w: &crate::tensor::TensorView,
    n: usize,
    all: bool,
    x: &[f32],
    xn: &mut Vec<f32>,
    norm_w: &mut Vec<f32>,
    logits: &mut Vec<f32>,
) {
    let cfg = &model.config;
    let (h, v) = (cfg.hidden_size, cfg.vocab_size);
    let first = if all { 0 } else { n - 1 };
    let n_out = n - first;
    let nw = resize(norm_w, h);
    norm.row_f32(0, nw);
    let xn = resize(xn, n_out * h);
    for (t, xo) in xn.chunks_exact_mut(h).enumerate() {
        ops::rms_norm(
            &x[(first + t) * h..(first + t + 1) * h],
            nw,
            cfg.rms_norm_eps,
            xo,
        );
    }
    let t0 = st::start();
    logits.resize(n_out * v, 0.0);
    head_w.matmul(xn, n_out, &mut logits[..n_out * v]);
    st::stop(Stage::LmHead, t0);
}
/// `out += down(silu(gate x) * up x)` for `n` tokens.
fn mlp_batch(m: &Mlp, x: &[f32], n: usize, s: &mut FfnScratch, out: &mut [f32]) {
    let inter = m.inter();
    let g = resize(&mut s.gate, n * inter);
    let u = resize(&mut s.up, n * inter);
    m.gate.matmul(x, n, g);
    m.up.matmul(x, n, u);
    ops::silu_mul(g, u);
    let d = resize(&mut s.down, out.len());
    m.down.matmul(g, n, d);
    out.iter_mut().zip(d.iter()).for_each(|(o, v)| *o += v);
}

/// DeepSeekMoE for `n` tokens: route each token, then run each chosen expert once over all the
/// tokens routed to it, plus the shared experts over every token, in one parallel pass (under
/// an expert budget: one pass per group of experts as they become resident), then sum the
/// outputs in expert order, so that the bits are the same whatever the expert budget. `resid` is the
/// residual stream, from which the next layer's experts are predicted for prefetching.
#[allow(clippy::too_many_arguments)]
fn moe_batch(
    model: &Model,
    layer: usize,
    moe: &Moe,
    resid: &[f32],
    x: &[f32],
    n: usize,
    s: &mut FfnScratch,
    out: &mut [f32],
) -> Result<()> {
    let cfg = &model.config;
    let h = cfg.hidden_size;
    let ne = cfg.moe.n_routed_experts;
    let t0 = st::start();
    let rl = resize(&mut s.router_logits, n * ne);
    moe.router.matmul(x, n, rl);
    if s.assignments.len() < ne {
        s.assignments.resize(ne, Vec::new());
    }
    s.assignments.iter_mut().for_each(|a| a.clear());
    let excluded = s.mask.as_ref().and_then(|m| m.layer(layer));
    if s.stats.is_some() {
        s.tok_wsum.clear();
    }
    for t in 0..n {
        router::route_masked(
            &cfg.moe,
            &rl[t * ne..(t + 1) * ne],
            moe.score_bias.as_deref(),
            &s.skip,
            excluded,
            &mut s.router,
            &mut s.chosen,
        );
        s.uses += s.chosen.len() as u64;
        if s.stats.is_some() {
            s.tok_wsum.push(s.chosen.iter().map(|&(_, w)| w).sum());
        }
        for &(e, wgt) in &s.chosen {
            s.assignments[e].push((t, wgt));
            if let Some(p) = s.profile.as_mut() {
                if s.hold_rows {
                    s.held.push((t, layer, e));
                } else {
                    p.record(layer, e);
                }
            }
        }
    }
    s.token_layers += n as u64;
    s.used.clear();
    s.used
        .extend((0..ne).filter(|&e| !s.assignments[e].is_empty()));
    st::stop(Stage::Router, t0);
    // The MTP layer (past the trunk's) is not in the expert store: its experts stay mapped.
    let store = model
        .experts
        .as_ref()
        .filter(|_| layer < model.weights.layers.len());
    let Some(store) = store else {
        run_experts_together(layer, moe, x, n, s, out);
        return Ok(());
    };
    if s.pred_layer == Some(layer) {
        let overlap = s.used.iter().filter(|&&e| s.pred_count[e] > 0).count();
        store.record_prediction(s.pred_list.len(), s.used.len(), overlap);
    }
    s.pred_layer = None;
    // Guards on the resident experts now; the misses go to the I/O threads at once.
    let mut ready = Vec::with_capacity(s.used.len());
    let mut pending = store.begin_layer(layer, &s.used, &mut ready)?;
    if store.prefetch_enabled() {
        // The farther layer first (its list is kept aside), so that the next layer's
        // prediction stays in `s` for the counters and is queued first.
        let far = layer + PREFETCH_DEPTH;
        s.pred_far.clear();
        if PREFETCH_DEPTH > 1 && predict(model, far, resid, n, s) {
            s.pred_far.extend_from_slice(&s.pred_list);
        }
        if predict(model, layer + 1, resid, n, s) {
            s.pred_layer = Some(layer + 1);
            store.prefetch(layer + 1, &s.pred_list, true);
        }
        if !s.pred_far.is_empty() {
            store.prefetch(far, &s.pred_far, false);
        }
    }
    // Every product lands where the all-resident path puts it, pass by pass: first the
    // resident experts and the shared ones, then each group of misses as its reads complete
    // (a group holds slots only while it runs). The sums follow in expert order, so the bits
    // are those of the unbudgeted path.
    let t0 = st::start();
    let mut offset = vec![0usize; s.used.len() + 1];
    for (i, &e) in s.used.iter().enumerate() {
        offset[i + 1] = offset[i] + s.assignments[e].len() * h;
    }
    let shared_off = offset[s.used.len()];
    let down_len = shared_off + if moe.shared.is_some() { n * h } else { 0 };
    let mut down = std::mem::take(&mut s.layer_down);
    down.resize(down_len, 0.0);
    st::stop(Stage::ExpertsRest, t0);
    // The first pass runs the shared experts even when nothing is resident yet.
    let mut first = moe.shared.is_some();
    loop {
        if ready.is_empty() && !pending.is_empty() && !first {
            store.acquire_ready(layer, &mut pending, &mut ready)?;
        }
        if ready.is_empty() && !first {
            break;
        }
        ready.sort_unstable_by_key(|&(e, _)| e);
        let mut mlps: Vec<Item> = ready
            .iter()
            .map(|(e, g)| {
                let i = s.used.binary_search(e).expect("a chosen expert");
                let mlp: &Mlp = g;
                (mlp, Some(*e), s.assignments[*e].len(), offset[i])
            })
            .collect();
        if first {
            if let Some(shared) = &moe.shared {
                mlps.push((shared, None, n, shared_off));
            }
        }
        first = false;
        run_pass(&mlps, x, n, s, &mut down);
        drop(mlps);
        ready.clear();
    }
    finish_layer(moe, layer, s, &offset, down, n, out);
    Ok(())
}

/// One MLP of a pass: (weights, routed expert or None for the shared experts, tokens, offset
/// of its `[tokens, hidden]` output in the layer's down buffer).
type Item<'a> = (&'a Mlp, Option<usize>, usize, usize);

/// The chosen experts (in expert order) and the shared experts of one layer, all resident:
/// one pass, then the weighted sums.
fn run_experts_together(
    layer: usize,
    moe: &Moe,
    x: &[f32],
    n: usize,
    s: &mut FfnScratch,
    out: &mut [f32],
) {
    let t0 = st::start();
    let ne = moe.experts.len();
    let h = x.len() / n;
    let mut mlps: Vec<Item> = Vec::new();
    let mut offset = vec![0usize];
    let mut off = 0;
    for (e, a) in s.assignments.iter().enumerate().take(ne) {
        if !a.is_empty() {
            mlps.push((&moe.experts[e], Some(e), a.len(), off));
            off += a.len() * h;
            offset.push(off);
        }
    }
    if let Some(shared) = &moe.shared {
        mlps.push((shared, None, n, off));
        off += n * h;
    }
    let mut down = std::mem::take(&mut s.layer_down);
    down.resize(off, 0.0);
    st::stop(Stage::ExpertsRest, t0);
    run_pass(&mlps, x, n, s, &mut down);
    finish_layer(moe, layer, s, &offset, down, n, out);
}

/// The end of a MoE layer: the routing statistics when they are recorded, the weighted sum
/// into `out` ([`add_outputs`]), and `down` back into the scratch for the next layer.
fn finish_layer(
    moe: &Moe,
    layer: usize,
    s: &mut FfnScratch,
    offset: &[usize],
    down: Vec<f32>,
    n: usize,
    out: &mut [f32],
) {
    let h = out.len() / n;
    if let Some(stats) = s.stats.as_mut() {
        for (i, &e) in s.used.iter().enumerate() {
            let dm = &down[offset[i]..offset[i + 1]];
            record_stats(stats, layer, e, &s.assignments[e], &s.tok_wsum, dm, h);
        }
    }
    let t0 = st::start();
    add_outputs(moe, &s.used, &s.assignments, offset, &down, n, out);
    s.layer_down = down;
    st::stop(Stage::ExpertsRest, t0);
}

/// `out += Σ weight · expert output` over the chosen experts `used` in expert order (the
/// output of `used[i]` at `offset[i]` of `down`), then the shared experts' output (at
/// `offset[used.len()]`) with weight 1: the same order whatever the passes were.
fn add_outputs(
    moe: &Moe,
    used: &[usize],
    assignments: &[Vec<(usize, f32)>],
    offset: &[usize],
    down: &[f32],
    n: usize,
    out: &mut [f32],
) {
    let h = out.len() / n;
    for (i, &e) in used.iter().enumerate() {
        let dm = &down[offset[i]..offset[i + 1]];
        for (j, &(t, wgt)) in assignments[e].iter().enumerate() {
            ops::axpy(wgt, &dm[j * h..(j + 1) * h], &mut out[t * h..(t + 1) * h]);
        }
    }
    if moe.shared.is_some() {
        let off = offset[used.len()];
        let dm = &down[off..off + n * h];
        out.iter_mut().zip(dm).for_each(|(o, v)| *o += v);
    }
}

/// Runs `mlps` (in increasing offset order) over their tokens: every gate/up product goes to
/// the threads as one pass, then every down product, each into its place in `down`.
fn run_pass(mlps: &[Item], x: &[f32], n: usize, s: &mut FfnScratch, down: &mut [f32]) {
    let t0 = st::start();
    let h = x.len() / n;
    // An expert that every token chose (always so in decode) reads `x` itself, so the layer's
    // input is quantized once for all of them.
    let gathered_len: usize = mlps
        .iter()
        .filter(|&&(_, e, m, _)| e.is_some() && m < n)
        .map(|&(_, _, m, _)| m * h)
        .sum();
    let inter_len: usize = mlps.iter().map(|&(mlp, _, m, _)| m * mlp.inter()).sum();
    let xs = resize(&mut s.gathered, gathered_len);
    let g = resize(&mut s.gate, inter_len);
    let u = resize(&mut s.up, inter_len);

    // Inputs: gather the tokens of partially chosen experts.
    let mut inputs: Vec<&[f32]> = Vec::with_capacity(mlps.len());
    {
        let mut rest: &mut [f32] = xs;
        for &(_, e, m, _) in mlps {
            match e {
                Some(e) if m < n => {
                    let (mine, tail) = std::mem::take(&mut rest).split_at_mut(m * h);
                    for (i, &(t, _)) in s.assignments[e].iter().enumerate() {
                        mine[i * h..(i + 1) * h].copy_from_slice(&x[t * h..(t + 1) * h]);
                    }
                    inputs.push(mine);
                    rest = tail;
                }
                _ => inputs.push(x),
            }
        }
    }

    // gate and up of every MLP in one pass.
    let mut jobs = Vec::with_capacity(2 * mlps.len());
    let (mut g_rest, mut u_rest): (&mut [f32], &mut [f32]) = (g, u);
    for (&(mlp, _, m, _), &xin) in mlps.iter().zip(&inputs) {
        let len = m * mlp.inter();
        let (gi, gt) = std::mem::take(&mut g_rest).split_at_mut(len);
        let (ui, ut) = std::mem::take(&mut u_rest).split_at_mut(len);
        jobs.push(MatJob {
            w: &mlp.gate,
            x: xin,
            n: m,
            out: gi,
        });
        jobs.push(MatJob {
            w: &mlp.up,
            x: xin,
            n: m,
            out: ui,
        });
        (g_rest, u_rest) = (gt, ut);
    }
    st::stop(Stage::ExpertsRest, t0);
    let t0 = st::start();
    matmul_multi(&mut jobs);
    drop(jobs);
    st::stop(Stage::ExpertsGateUp, t0);
    let t0 = st::start();
    let (g, u) = (&mut s.gate[..inter_len], &s.up[..inter_len]);
    ops::silu_mul(g, u);

    // down of every MLP in one pass, each into its own range of `down`.
    let mut jobs = Vec::with_capacity(mlps.len());
    let mut g_rest: &[f32] = g;
    let mut d_rest: &mut [f32] = down;
    let mut d_pos = 0;
    for &(mlp, _, m, off) in mlps {
        let (gi, gt) = g_rest.split_at(m * mlp.inter());
        let (_, tail) = std::mem::take(&mut d_rest).split_at_mut(off - d_pos);
        let (di, dt) = tail.split_at_mut(m * h);
        jobs.push(MatJob {
            w: &mlp.down,
            x: gi,
            n: m,
            out: di,
        });
        (g_rest, d_rest) = (gt, dt);
        d_pos = off + m * h;
    }
    st::stop(Stage::ExpertsRest, t0);
    let t0 = st::start();
    matmul_multi(&mut jobs);
    drop(jobs);
    st::stop(Stage::ExpertsDown, t0);
}

/// Adds expert `e`'s tokens to the pruning statistics: per token its normalised gate weight
/// (routed weight over the token's sum of routed weights) and the L2 norm of the expert's
/// output row in `d` (`[tokens, h]`).
fn record_stats(
    stats: &mut ExpertStats,
    layer: usize,
    e: usize,
    assigned: &[(usize, f32)],
    wsum: &[f32],
    d: &[f32],
    h: usize,
) {
    for (i, &(t, wgt)) in assigned.iter().enumerate() {
        let norm = d[i * h..(i + 1) * h]
            .iter()
            .map(|&v| v as f64 * v as f64)
            .sum::<f64>()
            .sqrt() as f32;
        let total = wsum.get(t).copied().unwrap_or(0.0);
        let gate = if total > 0.0 { wgt / total } else { 0.0 };
        stats.record(layer, e, gate, norm);
    }
}

/// How many MoE layers ahead experts are predicted and read: the next layer's prediction is
/// the better one, the one after gives the I/O thread work while the next layer's misses are
/// not known yet.
const PREFETCH_DEPTH: usize = 2;

/// Predicts the experts of layer `target` (when it is a MoE layer) by applying its FFN norm
/// and router to the current residual stream, which changes little from one layer to the
/// next. Leaves the predicted experts, most requested first, in `s.pred_list`; false when
/// `target` is not a MoE layer.
fn predict(model: &Model, target: usize, resid: &[f32], n: usize, s: &mut FfnScratch) -> bool {
    let cfg = &model.config;
    let Some(next) = model.weights.layers.get(target) else {
        return false;
    };
    let Ffn::Moe(moe) = &next.ffn else {
        return false;
    };
    let (h, ne) = (cfg.hidden_size, cfg.moe.n_routed_experts);
    let xn = resize(&mut s.pred_x, (n + 1) * h);
    let (nw, xn) = xn.split_at_mut(h);
    next.ffn_norm.row_f32(0, nw);
    for (xi, xo) in resid.chunks_exact(h).zip(xn.chunks_exact_mut(h)) {
        ops::rms_norm(xi, nw, cfg.rms_norm_eps, xo);
    }
    let rl = resize(&mut s.pred_logits, n * ne);
    moe.router.matmul(xn, n, rl);
    s.pred_count.clear();
    s.pred_count.resize(ne, 0);
    for t in 0..n {
        router::route_masked(
            &cfg.moe,
            &rl[t * ne..(t + 1) * ne],
            moe.score_bias.as_deref(),
            &s.skip,
            s.mask.as_ref().and_then(|m| m.layer(target)),
            &mut s.router,
            &mut s.chosen,
        );
        for &(e, _) in &s.chosen {
            s.pred_count[e] += 1;
        }
    }
    s.pred_list.clear();
    s.pred_list.extend((0..ne).filter(|&e| s.pred_count[e] > 0));
    let count = &s.pred_count;
    s.pred_list.sort_by_key(|&e| std::cmp::Reverse(count[e]));
    true
}
