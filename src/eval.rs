//! Measuring a model on text: perplexity and the KL divergence of a (quantized) model's
//! next-token distributions from a base model's (`moela ppl`, `moela kld`).
//!
//! The text is cut into windows of `ctx` tokens starting every `stride` tokens (default
//! stride = ctx: non-overlapping; a tail shorter than `ctx` is dropped, as llama-perplexity
//! does). The first token of each window is replaced by BOS when the tokenizer has one. Each
//! window is evaluated from an empty context in one batch, and the logits at window positions
//! `first ≤ j < ctx − 1` score token `j + 1`, with `first = max(ctx/2, ctx − 1 − stride)`: by
//! default the second half of every window, as llama-perplexity does (every scored token has at
//! least ctx/2 tokens of context); with a stride ≤ ctx/2 the last `stride` predictions, so every
//! token after the first window is scored exactly once. `score_all` scores every prediction of
//! the window instead (`first = 0`).
//!
//! Perplexity = exp(mean NLL); its ± is exp(mean)·se(NLL) (first-order error propagation of
//! the standard error of the mean NLL over scored tokens, which treats tokens as independent:
//! a lower bound on the real uncertainty). KLD is `Σ_v p_base(v) · (ln p_base(v) − ln p_q(v))`
//! per scored position, in nats, computed in f64 from the raw logits, reported as mean ± se.

use std::ops::Range;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::moe::router::ExpertSkip;
use crate::session::{Session, SessionParams};

/// How windows are cut and which of their predictions are scored.
#[derive(Clone, Copy, Debug)]
pub struct WindowSpec {
    /// Tokens per window (≥ 2).
    pub ctx: usize,
    /// Start of each window after the previous one (1..=ctx).
    pub stride: usize,
    /// Score every prediction of a window, not only those from `first_scored()` on.
    pub score_all: bool,
}

impl WindowSpec {
    pub fn new(ctx: usize, stride: Option<usize>, score_all: bool) -> Result<WindowSpec> {
        let stride = stride.unwrap_or(ctx);
        if ctx < 2 {
            return Err(Error::InvalidArg(format!("--ctx {ctx}: need at least 2")));
        }
        if stride == 0 || stride > ctx {
            return Err(Error::InvalidArg(format!(
                "--stride {stride}: must be between 1 and --ctx ({ctx})"
            )));
        }
        Ok(WindowSpec {
            ctx,
            stride,
            score_all,
        })
    }

    /// The token ranges of the windows over `n_tokens` tokens.
    pub fn windows(&self, n_tokens: usize) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut s = 0;
        while s + self.ctx <= n_tokens {
            out.push(s..s + self.ctx);
            s += self.stride;
        }
        out
    }

    /// The first window position whose prediction is scored.
    pub fn first_scored(&self) -> usize {
        if self.score_all {
            0
        } else {
            (self.ctx / 2).max(self.ctx.saturating_sub(1 + self.stride))
        }
    }
}

/// ln Σ exp(logits), in f64, stable.
pub fn log_sum_exp(logits: &[f32]) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    if !max.is_finite() {
        return max;
    }
    let s: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    max + s.ln()
}

/// Negative log-likelihood (nats) of `target` under softmax(`logits`).
pub fn nll(logits: &[f32], target: usize) -> f64 {
    log_sum_exp(logits) - logits[target] as f64
}

/// KL(base ‖ q) in nats between softmax(`base`) and softmax(`q`) (same length).
pub fn kl_divergence(base: &[f32], q: &[f32]) -> f64 {
    let (lb, lq) = (log_sum_exp(base), log_sum_exp(q));
    let mut kl = 0.0;
    for (&b, &qv) in base.iter().zip(q) {
        let lpb = b as f64 - lb;
        let p = lpb.exp();
        if p > 0.0 {
            kl += p * (lpb - (qv as f64 - lq));
        }
    }
    kl.max(0.0) // rounding can leave a tiny negative for identical rows
}

/// Index of the largest logit (the first on ties).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Running mean and standard error of a sample (Welford's update: no cancellation when the
/// values are nearly equal).
#[derive(Clone, Copy, Debug, Default)]
pub struct Mean {
    pub n: usize,
    mean: f64,
    m2: f64,
}

impl Mean {
    pub fn push(&mut self, x: f64) {
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
    }
    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            self.mean
        }
    }
    /// Standard error of the mean (sample standard deviation / √n); 0 for n < 2.
    pub fn stderr(&self) -> f64 {
        if self.n < 2 {
            return 0.0;
        }
        let n = self.n as f64;
        (self.m2.max(0.0) / (n - 1.0) / n).sqrt()
    }
}

/// Perplexity from NLL statistics: (ppl, ± its first-order standard error).
pub fn perplexity(nll: &Mean) -> (f64, f64) {
    let p = nll.mean().exp();
    (p, p * nll.stderr())
}

/// The results of `moela kld`.
#[derive(Clone, Copy, Debug, Default)]
pub struct KldStats {
    pub kld: Mean,
    /// Positions where both models' most likely token is the same.
    pub top1_same: usize,
    pub nll_base: Mean,
    pub nll_q: Mean,
}

impl KldStats {
    /// Scores one position: logits of both models, and the token that followed.
    pub fn push(&mut self, base: &[f32], q: &[f32], target: usize) {
        self.kld.push(kl_divergence(base, q));
        if argmax(base) == argmax(q) {
            self.top1_same += 1;
        }
        self.nll_base.push(nll(base, target));
        self.nll_q.push(nll(q, target));
    }
    pub fn top1_fraction(&self) -> f64 {
        self.top1_same as f64 / self.kld.n.max(1) as f64
    }
}

/// Evaluates window `w` of `tokens` with a fresh context and calls `score(logits_row, next)`
/// for each scored position. The first token becomes `bos` when given.
fn eval_window(
    session: &mut Session,
    tokens: &[u32],
    bos: Option<u32>,
    spec: &WindowSpec,
    mut score: impl FnMut(usize, &[f32], usize),
) -> Result<()> {
    let mut win = tokens.to_vec();
    if let (Some(b), Some(first)) = (bos, win.first_mut()) {
        *first = b;
    }
    session.reset();
    let vocab = session.model().config.vocab_size;
    let logits = session.eval(&win, true)?;
    for j in spec.first_scored()..win.len() - 1 {
        score(
            j,
            &logits[j * vocab..(j + 1) * vocab],
            tokens[j + 1] as usize,
        );
    }
    Ok(())
}

fn session_for(model: &Arc<Model>, spec: &WindowSpec, skip: &ExpertSkip) -> Result<Session> {
    let params = SessionParams {
        n_ctx: spec.ctx,
        expert_skip: *skip,
        ..Default::default()
    };
    Session::new(model.clone(), &params)
}

/// Perplexity of `model` on `tokens`. `progress(done, total, nll_so_far)` after each window.
pub fn perplexity_of(
    model: &Arc<Model>,
    tokens: &[u32],
    bos: Option<u32>,
    spec: &WindowSpec,
    progress: &mut dyn FnMut(usize, usize, &Mean),
) -> Result<Mean> {
    perplexity_of_skipping(model, tokens, bos, spec, &ExpertSkip::default(), progress)
}

/// [`perplexity_of`] with run-time expert skipping.
pub fn perplexity_of_skipping(
    model: &Arc<Model>,
    tokens: &[u32],
    bos: Option<u32>,
    spec: &WindowSpec,
    skip: &ExpertSkip,
    progress: &mut dyn FnMut(usize, usize, &Mean),
) -> Result<Mean> {
    let windows = spec.windows(tokens.len());
    if windows.is_empty() {
        return Err(Error::InvalidArg(format!(
            "the text has {} tokens, fewer than one window of --ctx {}",
            tokens.len(),
            spec.ctx
        )));
    }
    let mut session = session_for(model, spec, skip)?;
    let mut stats = Mean::default();
    for (i, w) in windows.iter().enumerate() {
        eval_window(&mut session, &tokens[w.clone()], bos, spec, |_, row, t| {
            stats.push(nll(row, t))
        })?;
        progress(i + 1, windows.len(), &stats);
    }
    Ok(stats)
}

/// KL divergence of `q`'s distributions from `base`'s (same vocabulary), over the windows.
pub fn kld_of(
    base: &Arc<Model>,
    q: &Arc<Model>,
    tokens: &[u32],
    bos: Option<u32>,
    spec: &WindowSpec,
    progress: &mut dyn FnMut(usize, usize, &KldStats),
) -> Result<KldStats> {
    kld_of_skipping(base, q, tokens, bos, spec, &ExpertSkip::default(), progress)
}

/// [`kld_of`] where `q` runs with run-time expert skipping (`base` never skips; `q` may be
/// the same model).
pub fn kld_of_skipping(
    base: &Arc<Model>,
    q: &Arc<Model>,
    tokens: &[u32],
    bos: Option<u32>,
    spec: &WindowSpec,
    skip: &ExpertSkip,
    progress: &mut dyn FnMut(usize, usize, &KldStats),
) -> Result<KldStats> {
    let vocab = base.config.vocab_size;
    if q.config.vocab_size != vocab {
        return Err(Error::InvalidArg(format!(
            "the models' vocabularies differ ({vocab} vs {})",
            q.config.vocab_size
        )));
    }
    let windows = spec.windows(tokens.len());
    if windows.is_empty() {
        return Err(Error::InvalidArg(format!(
            "the text has {} tokens, fewer than one window of --ctx {}",
            tokens.len(),
            spec.ctx
        )));
    }
    let (mut sb, mut sq) = (
        session_for(base, spec, &ExpertSkip::default())?,
        session_for(q, spec, skip)?,
    );
    let mut stats = KldStats::default();
    let mut base_rows = Vec::new();
    for (i, w) in windows.iter().enumerate() {
        let toks = &tokens[w.clone()];
        base_rows.clear();
        eval_window(&mut sb, toks, bos, spec, |_, row, _| {
            base_rows.extend_from_slice(row)
        })?;
        let first = spec.first_scored();
        eval_window(&mut sq, toks, bos, spec, |j, row, t| {
            let k = j - first;
            stats.push(&base_rows[k * vocab..(k + 1) * vocab], row, t)
        })?;
        progress(i + 1, windows.len(), &stats);
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_logits_have_perplexity_vocab() {
        // Any constant logits: NLL = ln V for every token, so ppl = V exactly, stderr 0.
        for v in [2usize, 7, 8192] {
            let logits = vec![3.25f32; v];
            let mut m = Mean::default();
            for t in 0..5 {
                m.push(nll(&logits, t % v));
            }
            let (p, se) = perplexity(&m);
            assert!((p - v as f64).abs() < 1e-9 * v as f64, "{p} vs {v}");
            assert!(se < 1e-9);
        }
    }

    #[test]
    fn hand_computed_nll_and_kld() {
        // logits ln(1), ln(3) → p = (1/4, 3/4).
        let l = [0.0f32, 3f32.ln()];
        assert!((nll(&l, 1) - (4.0f64 / 3.0).ln()).abs() < 1e-7);
        assert!((nll(&l, 0) - 4f64.ln()).abs() < 1e-7);
        // KL((1/4,3/4) ‖ (1/2,1/2)) = 1/4 ln(1/2) + 3/4 ln(3/2).
        let want = 0.25 * 0.5f64.ln() + 0.75 * 1.5f64.ln();
        assert!((kl_divergence(&l, &[5.0, 5.0]) - want).abs() < 1e-7);
        // And the other way: KL((1/2,1/2) ‖ (1/4,3/4)) = 1/2 ln 2 + 1/2 ln(2/3).
        let want2 = 0.5 * 2f64.ln() + 0.5 * (2.0f64 / 3.0).ln();
        assert!((kl_divergence(&[5.0, 5.0], &l) - want2).abs() < 1e-7);
        // Identical distributions (also shifted logits: softmax is shift-invariant) → 0.
        let a = [1.0f32, -2.0, 0.5, 4.0];
        let b = [11.0f32, 8.0, 10.5, 14.0];
        assert!(kl_divergence(&a, &a).abs() < 1e-12);
        assert!(kl_divergence(&a, &b).abs() < 1e-6);
        // Huge logits do not overflow.
        assert!((nll(&[1000.0, 1000.0], 0) - 2f64.ln()).abs() < 1e-9);
    }

    #[test]
    fn mean_and_stderr() {
        let mut m = Mean::default();
        for x in [1.0, 2.0, 3.0, 4.0] {
            m.push(x);
        }
        assert_eq!(m.mean(), 2.5);
        // sample variance 5/3, se = sqrt(5/3 / 4)
        assert!((m.stderr() - (5.0f64 / 12.0).sqrt()).abs() < 1e-12);
        let mut k = KldStats::default();
        k.push(&[0.0, 1.0], &[0.0, 1.0], 1);
        k.push(&[0.0, 1.0], &[1.0, 0.0], 1);
        assert_eq!(k.top1_same, 1);
        assert_eq!(k.top1_fraction(), 0.5);
        assert!(k.kld.mean() > 0.0);
        assert_eq!(k.nll_base.n, 2);
    }

    #[test]
    fn windows_and_scored_positions() {
        let s = WindowSpec::new(8, None, false).unwrap();
        assert_eq!(s.windows(20), vec![0..8, 8..16]);
        assert_eq!(s.first_scored(), 4); // predictions 4, 5, 6 → tokens 5, 6, 7
        let s = WindowSpec::new(8, Some(2), false).unwrap();
        assert_eq!(s.windows(12), vec![0..8, 2..10, 4..12]);
        // Positions 5 and 6 predict window tokens 6 and 7: the 2 new tokens of each window.
        assert_eq!(s.first_scored(), 5);
        assert_eq!(
            WindowSpec::new(8, Some(6), false).unwrap().first_scored(),
            4
        );
        let s = WindowSpec::new(8, Some(3), true).unwrap();
        assert_eq!(s.first_scored(), 0);
        assert!(WindowSpec::new(1, None, false).is_err());
        assert!(WindowSpec::new(8, Some(0), false).is_err());
        assert!(WindowSpec::new(8, Some(9), false).is_err());
        assert!(s.windows(7).is_empty());
    }
}
