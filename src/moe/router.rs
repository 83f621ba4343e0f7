//! Expert selection in all of DeepSeek's variants, following DeepSeek's own modeling code.
//!
//! - scores: `softmax(logits)` (V2) or `sigmoid(logits)` (V3);
//! - `greedy`: top-k of the scores;
//! - `group_limited_greedy` (V2): groups ranked by their best score, experts outside the best
//!   `topk_group` groups are masked out, then top-k;
//! - `noaux_tc` (V3): choice uses `scores + e_score_correction_bias`; a group's rank is the sum
//!   of its two best biased scores; experts outside the kept groups are masked; the weights are the
//!   un-biased scores of the chosen experts;
//! - weights: V3 normalises (when `norm_topk_prob` and k > 1) and then always multiplies by
//!   `routed_scaling_factor`; V2 either normalises or scales, never both (DeepSeek-V2's
//!   `MoEGate`; transformers' port always scales, which only differs when
//!   `norm_topk_prob` is true, a combination no released V2 config uses).
//!
//! Run-time expert skipping ([`ExpertSkip`], `--expert-top-k` / `--expert-min-weight`) drops
//! some of the chosen experts after the choice and before the weights are finished:
//!
//! 1. the router chooses the model's `k = experts_per_tok` experts as above, in descending
//!    order of choice score (biased for noaux_tc), each with its raw score `s_i` (the softmax
//!    probability for V2, the un-biased sigmoid for V3);
//! 2. `--expert-top-k K` keeps the first K of them (the top-K by choice score, exactly what a
//!    router with top-k K would choose);
//! 3. `--expert-min-weight W` drops every remaining expert whose *normalised gate weight*
//!    `p_i = s_i / Σ_{j ∈ model's top-k} s_j` is below W. `p_i` is the expert's share of the
//!    token's routed mixture among the model's full top-k, whatever `norm_topk_prob` says (for
//!    softmax V2 routers the shares of the chosen probabilities, for sigmoid V3 routers the
//!    shares of the sigmoid scores, the weights a norm_topk_prob model uses before scaling).
//!    The first expert of the choice order is always kept, so every token keeps at least one;
//! 4. the kept experts' weights follow the model's rules with the kept set in place of the
//!    top-k: when the model normalises (`norm_topk_prob` and `k > 1`) the kept raw scores are
//!    divided by their own sum, so the routed mixture keeps its total weight; otherwise the
//!    kept weights are unchanged (`s_i`, times `routed_scaling_factor` where the family
//!    scales) and the dropped share is simply lost, as in a model with a smaller top-k. The
//!    V3 routed scaling always applies.
//!
//! With `W = 0` and `K = k` (or 0, "the model's") nothing changes, bit for bit.

use crate::config::{Family, MoeRouting, Scoring, TopkMethod};
use crate::error::{Error, Result};
use crate::ops::{sigmoid, softmax};

/// Run-time expert skipping (see the module documentation). The default skips nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ExpertSkip {
    /// Drop a chosen routed expert whose normalised gate weight is below this; in [0, 1),
    /// 0 = off.
    pub min_weight: f32,
    /// Use at most this many routed experts per token, 1 ..= the model's top-k; 0 = the
    /// model's top-k.
    pub top_k: usize,
}

impl ExpertSkip {
    /// Checks the values against a model whose routers choose `model_top_k` experts. The
    /// messages name the CLI flags, which the C API and Python map to their field names.
    pub fn check(&self, model_top_k: usize) -> Result<()> {
        let w = self.min_weight;
        if !(0.0..1.0).contains(&w) {
            return Err(Error::InvalidArg(format!(
                "expert min weight {w} (--expert-min-weight, expert_min_weight): must be >= 0 and < 1 (0 = off)"
            )));
        }
        if self.top_k > model_top_k {
            return Err(Error::InvalidArg(format!(
                "expert top-k {} (--expert-top-k, expert_top_k): must be at most the model's top-k, {model_top_k} (0 = the model's)",
                self.top_k
            )));
        }
        Ok(())
    }

    /// Whether this changes routing for a model with top-k `model_top_k`.
    pub fn is_active(&self, model_top_k: usize) -> bool {
        self.min_weight > 0.0 || (self.top_k != 0 && self.top_k < model_top_k)
    }
}

/// Routed experts taken out of routing, per layer: an excluded expert is never chosen, as if
/// its router row did not exist (its router logit is set to -inf before scoring, so softmax
/// routers normalise over the other experts only, and its choice score is -inf before the
/// group ranking and top-k). A model routed with the experts a pruned file dropped masked out
/// gives the pruned file's logits (tests/prune.rs). Set with [`crate::Session::set_expert_mask`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExpertMask {
    /// Per layer, per expert: excluded. Layers past the end (or empty) exclude nothing.
    excluded: Vec<Vec<bool>>,
}

impl ExpertMask {
    /// Excludes nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Excludes every expert of `layer` (out of `n_experts`) that is not in `kept`.
    pub fn keep_only(&mut self, layer: usize, n_experts: usize, kept: &[usize]) {
        let mut ex = vec![true; n_experts];
        for &e in kept {
            if let Some(x) = ex.get_mut(e) {
                *x = false;
            }
        }
        if self.excluded.len() <= layer {
            self.excluded.resize(layer + 1, Vec::new());
        }
        self.excluded[layer] = ex;
    }

    /// Excludes `expert` of `layer` (out of `n_experts`).
    pub fn exclude(&mut self, layer: usize, n_experts: usize, expert: usize) {
        if self.excluded.len() <= layer {
            self.excluded.resize(layer + 1, Vec::new());
        }
        let ex = &mut self.excluded[layer];
        if ex.len() < n_experts {
            ex.resize(n_experts, false);
        }
        if let Some(x) = ex.get_mut(expert) {
            *x = true;
        }
    }

    /// The excluded flags of `layer`, if it excludes any.
    pub fn layer(&self, layer: usize) -> Option<&[bool]> {
        self.excluded
            .get(layer)
            .filter(|v| v.iter().any(|&x| x))
            .map(|v| v.as_slice())
    }

    /// Checks the mask against a model with `n_experts` routed experts per layer and routing
    /// `m`: every masked layer must keep at least `experts_per_tok` experts (within the
    /// `topk_group` best groups for group-limited routing, which is checked per token and so
    /// only by its count here).
    pub fn check(&self, n_experts: usize, experts_per_tok: usize) -> Result<()> {
        for (l, ex) in self.excluded.iter().enumerate() {
            if ex.is_empty() {
                continue;
            }
            if ex.len() != n_experts {
                return Err(Error::InvalidArg(format!(
                    "expert mask: layer {l} has {} entries, the model has {n_experts} routed experts",
                    ex.len()
                )));
            }
            let kept = ex.iter().filter(|&&x| !x).count();
            if kept < experts_per_tok.max(1) {
                return Err(Error::InvalidArg(format!(
                    "expert mask: layer {l} keeps {kept} experts, fewer than the model's top-k {experts_per_tok}"
                )));
            }
        }
        Ok(())
    }
}

/// Reusable buffers so routing allocates nothing per token.
#[derive(Default, Clone, Debug)]
pub struct RouterScratch {
    scores: Vec<f32>,
    choice: Vec<f32>,
    group_score: Vec<f32>,
    order: Vec<usize>,
}

/// Chooses experts for one token from its router logits. Writes `k` (expert, weight) pairs
/// into `out`, in descending order of choice score.
pub fn route(
    m: &MoeRouting,
    logits: &[f32],
    bias: Option<&[f32]>,
    s: &mut RouterScratch,
    out: &mut Vec<(usize, f32)>,
) {
    route_skipping(m, logits, bias, &ExpertSkip::default(), s, out)
}

/// [`route`] with run-time expert skipping (see the module documentation): writes at most
/// `k` pairs, at least one.
pub fn route_skipping(
    m: &MoeRouting,
    logits: &[f32],
    bias: Option<&[f32]>,
    skip: &ExpertSkip,
    s: &mut RouterScratch,
    out: &mut Vec<(usize, f32)>,
) {
    route_masked(m, logits, bias, skip, None, s, out)
}

/// [`route_skipping`] with the experts flagged in `excluded` (one flag per expert) taken out
/// of routing (see [`ExpertMask`]).
pub fn route_masked(
    m: &MoeRouting,
    logits: &[f32],
    bias: Option<&[f32]>,
    skip: &ExpertSkip,
    excluded: Option<&[bool]>,
    s: &mut RouterScratch,
    out: &mut Vec<(usize, f32)>,
) {
    let n = logits.len();
    s.scores.clear();
    s.scores.extend_from_slice(logits);
    if let Some(ex) = excluded {
        s.scores
            .iter_mut()
            .zip(ex)
            .filter(|(_, &x)| x)
            .for_each(|(v, _)| *v = f32::NEG_INFINITY);
    }
    match m.scoring {
        Scoring::Softmax => softmax(&mut s.scores),
        Scoring::Sigmoid => s.scores.iter_mut().for_each(|v| *v = sigmoid(*v)),
    }
    s.choice.clear();
    s.choice.extend_from_slice(&s.scores);
    if m.topk_method == TopkMethod::NoauxTc {
        if let Some(b) = bias {
            s.choice.iter_mut().zip(b).for_each(|(c, b)| *c += b);
        }
    }
    if let Some(ex) = excluded {
        s.choice
            .iter_mut()
            .zip(ex)
            .filter(|(_, &x)| x)
            .for_each(|(v, _)| *v = f32::NEG_INFINITY);
    }
    if m.topk_method != TopkMethod::Greedy && m.n_group > 1 {
        let per = n / m.n_group;
        s.group_score.clear();
        for g in s.choice.chunks_exact(per) {
            let score = match m.topk_method {
                TopkMethod::NoauxTc => top2_sum(g),
                _ => g.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            };
            s.group_score.push(score);
        }
        top_k_indices(&s.group_score, m.topk_group, &mut s.order);
        let mut keep = [false; 256];
        let mut keep_vec;
        let keep: &mut [bool] = if m.n_group <= keep.len() {
            &mut keep[..m.n_group]
        } else {
            keep_vec = vec![false; m.n_group];
            &mut keep_vec
        };
        for &g in &s.order {
            keep[g] = true;
        }
        for (g, chunk) in s.choice.chunks_exact_mut(per).enumerate() {
            if !keep[g] {
                // -inf as DeepSeek's inference code, transformers and llama.cpp do. (The hub
                // modeling code of V3 used 0.0, which lets a dropped group win when biased
                // scores are negative.)
                chunk.fill(f32::NEG_INFINITY);
            }
        }
    }
    top_k_indices(&s.choice, m.experts_per_tok, &mut s.order);
    out.clear();
    out.extend(s.order.iter().map(|&e| (e, s.scores[e])));

    let k = out.len();
    if skip.top_k > 0 && skip.top_k < k {
        out.truncate(skip.top_k);
    }
    if skip.min_weight > 0.0 && out.len() > 1 {
        let total: f32 = s.order.iter().map(|&e| s.scores[e]).sum();
        let w = skip.min_weight;
        let mut first = true;
        out.retain(|&(_, score)| {
            let keep = first || score / total >= w;
            first = false;
            keep
        });
    }
    let normalise = m.norm_topk_prob && k > 1;
    if normalise {
        let denom: f32 = out.iter().map(|(_, w)| w).sum::<f32>() + 1e-20;
        out.iter_mut().for_each(|(_, w)| *w /= denom);
    }
    let scale = match m.family {
        Family::V3 => true,
        Family::V2 => !normalise,
    };
    if scale {
        out.iter_mut()
            .for_each(|(_, w)| *w *= m.routed_scaling_factor);
    }
}

fn top2_sum(g: &[f32]) -> f32 {
    let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &v in g {
        if v > a {
            b = a;
            a = v;
        } else if v > b {
            b = v;
        }
    }
    a + b
}

/// Indices of the `k` largest values, largest first; ties go to the lower index (as
/// torch.topk does on CPU in practice).
fn top_k_indices(v: &[f32], k: usize, out: &mut Vec<usize>) {
    out.clear();
    for _ in 0..k.min(v.len()) {
        let mut best: Option<usize> = None;
        for (i, &x) in v.iter().enumerate() {
            if out.contains(&i) {
                continue;
            }
            // NaN never wins; ties keep the earlier index.
            if best.is_none_or(|b| x > v[b]) {
                best = Some(i);
            }
        }
        if let Some(b) = best {
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing(scoring: Scoring, method: TopkMethod, family: Family) -> MoeRouting {
        MoeRouting {
            n_routed_experts: 8,
            n_shared_experts: 1,
            experts_per_tok: 2,
            scoring,
            topk_method: method,
            n_group: 4,
            topk_group: 2,
            norm_topk_prob: false,
            routed_scaling_factor: 2.0,
            family,
        }
    }

    #[test]
    fn greedy_softmax_picks_largest() {
        let m = routing(Scoring::Softmax, TopkMethod::Greedy, Family::V2);
        let logits = [0.0, 3.0, 1.0, 0.0, 2.0, 0.0, 0.0, 0.0];
        let mut out = vec![];
        route(&m, &logits, None, &mut RouterScratch::default(), &mut out);
        let mut p = logits;
        softmax(&mut p);
        assert_eq!(out.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 4]);
        assert!((out[0].1 - 2.0 * p[1]).abs() < 1e-6);
    }

    #[test]
    fn group_limited_excludes_weak_groups() {
        // Groups of 2: g0 {0,1}, g1 {2,3}, g2 {4,5}, g3 {6,7}. Best maxima: g1 (5.0), g3 (4.0).
        // Expert 0 (3.9) is the third best overall but its group is dropped.
        let m = routing(Scoring::Softmax, TopkMethod::GroupLimitedGreedy, Family::V2);
        let logits = [3.9, 0.0, 5.0, 0.0, 1.0, 1.0, 4.0, 3.95];
        let mut out = vec![];
        route(&m, &logits, None, &mut RouterScratch::default(), &mut out);
        assert_eq!(out.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2, 6]);
        let mut m3 = m;
        m3.experts_per_tok = 3;
        route(&m3, &logits, None, &mut RouterScratch::default(), &mut out);
        assert_eq!(out.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2, 6, 7]);
    }

    #[test]
    fn noaux_tc_uses_bias_for_choice_only() {
        let mut m = routing(Scoring::Sigmoid, TopkMethod::NoauxTc, Family::V3);
        m.norm_topk_prob = true;
        m.routed_scaling_factor = 2.5;
        let logits = [2.0, 1.9, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        // The bias lifts experts 6 and 7 (and their group) above group 0.
        let bias = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0];
        let mut out = vec![];
        route(
            &m,
            &logits,
            Some(&bias),
            &mut RouterScratch::default(),
            &mut out,
        );
        let ids: Vec<_> = out.iter().map(|x| x.0).collect();
        assert_eq!(ids, vec![6, 7]);
        // Weights come from the un-biased sigmoid (equal here), normalised, then scaled.
        assert!((out[0].1 - 1.25).abs() < 1e-6 && (out[1].1 - 1.25).abs() < 1e-6);
    }

    #[test]
    fn v2_normalise_means_no_scaling() {
        let mut m = routing(Scoring::Softmax, TopkMethod::Greedy, Family::V2);
        m.norm_topk_prob = true;
        let logits = [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let mut out = vec![];
        route(&m, &logits, None, &mut RouterScratch::default(), &mut out);
        assert!((out[0].1 - 0.5).abs() < 1e-6);
        m.family = Family::V3;
        route(&m, &logits, None, &mut RouterScratch::default(), &mut out);
        assert!((out[0].1 - 1.0).abs() < 1e-6);
    }

    /// Logits whose softmax over 8 experts is exactly `p` (up to rounding).
    fn logits_of(p: [f32; 8]) -> [f32; 8] {
        p.map(f32::ln)
    }

    fn close(got: &[(usize, f32)], want: &[(usize, f32)]) {
        assert_eq!(
            got.iter().map(|x| x.0).collect::<Vec<_>>(),
            want.iter().map(|x| x.0).collect::<Vec<_>>(),
            "{got:?} vs {want:?}"
        );
        for (g, w) in got.iter().zip(want) {
            assert!((g.1 - w.1).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn skipping_softmax_v2_by_hand() {
        // Probabilities: expert 1: 0.4, 4: 0.3, 6: 0.1, the other five 0.04. Top-3 = 1, 4, 6
        // with shares 0.5, 0.375, 0.125 of their sum 0.8.
        let p = [0.04, 0.4, 0.04, 0.04, 0.3, 0.04, 0.1, 0.04];
        let logits = logits_of(p);
        let mut m = routing(Scoring::Softmax, TopkMethod::Greedy, Family::V2);
        m.experts_per_tok = 3;
        let mut out = vec![];
        let mut sc = RouterScratch::default();
        let mut run = |m: &MoeRouting, skip: ExpertSkip, out: &mut Vec<(usize, f32)>| {
            route_skipping(m, &logits, None, &skip, &mut sc, out)
        };
        // No skipping: 2.0 × p (V2 without normalisation scales).
        run(&m, ExpertSkip::default(), &mut out);
        close(&out, &[(1, 0.8), (4, 0.6), (6, 0.2)]);
        // W = 0.2: expert 6 (share 0.125) goes, the others keep their weights.
        let w02 = ExpertSkip {
            min_weight: 0.2,
            top_k: 0,
        };
        run(&m, w02, &mut out);
        close(&out, &[(1, 0.8), (4, 0.6)]);
        // W = 0.38 drops expert 4 (share 0.375) too.
        run(
            &m,
            ExpertSkip {
                min_weight: 0.38,
                top_k: 0,
            },
            &mut out,
        );
        close(&out, &[(1, 0.8)]);
        // K = 1 and K = 2.
        run(
            &m,
            ExpertSkip {
                min_weight: 0.0,
                top_k: 1,
            },
            &mut out,
        );
        close(&out, &[(1, 0.8)]);
        run(
            &m,
            ExpertSkip {
                min_weight: 0.0,
                top_k: 2,
            },
            &mut out,
        );
        close(&out, &[(1, 0.8), (4, 0.6)]);
        // With norm_topk_prob the kept scores are renormalised over the kept set (V2: no
        // scaling then).
        m.norm_topk_prob = true;
        run(&m, ExpertSkip::default(), &mut out);
        close(&out, &[(1, 0.5), (4, 0.375), (6, 0.125)]);
        run(&m, w02, &mut out);
        close(&out, &[(1, 0.4 / 0.7), (4, 0.3 / 0.7)]);
        run(
            &m,
            ExpertSkip {
                min_weight: 0.0,
                top_k: 1,
            },
            &mut out,
        );
        close(&out, &[(1, 1.0)]);
        // W = 0.99: no expert reaches it, the first choice stays.
        run(
            &m,
            ExpertSkip {
                min_weight: 0.99,
                top_k: 0,
            },
            &mut out,
        );
        close(&out, &[(1, 1.0)]);
    }

    #[test]
    fn skipping_sigmoid_noaux_tc_by_hand() {
        let mut m = routing(Scoring::Sigmoid, TopkMethod::NoauxTc, Family::V3);
        m.norm_topk_prob = true;
        m.routed_scaling_factor = 2.5;
        m.experts_per_tok = 3;
        m.n_group = 1;
        m.topk_group = 1;
        // Sigmoid scores 0.2 (expert 0), 0.6 (expert 3), 0.2 (expert 5), 0.1 elsewhere; the
        // bias puts expert 0 first, then 3, then 5 (choice 0.2+1, 0.6+0.5, 0.2+0.3).
        let sig = [0.2f32, 0.1, 0.1, 0.6, 0.1, 0.2, 0.1, 0.1];
        let logits = sig.map(|y| (y / (1.0 - y)).ln());
        let bias = [1.0, 0.0, 0.0, 0.5, 0.0, 0.3, 0.0, 0.0];
        let mut out = vec![];
        let mut sc = RouterScratch::default();
        let mut run = |m: &MoeRouting, skip: ExpertSkip, out: &mut Vec<(usize, f32)>| {
            route_skipping(m, &logits, Some(&bias), &skip, &mut sc, out)
        };
        run(&m, ExpertSkip::default(), &mut out);
        // Shares 0.2, 0.6, 0.2 of 1.0; weights share × 2.5.
        close(&out, &[(0, 0.5), (3, 1.5), (5, 0.5)]);
        // W = 0.25 drops expert 5 but never the first choice (expert 0, share 0.2):
        // kept 0.2 and 0.6, renormalised over 0.8, times 2.5.
        run(
            &m,
            ExpertSkip {
                min_weight: 0.25,
                top_k: 0,
            },
            &mut out,
        );
        close(&out, &[(0, 0.625), (3, 1.875)]);
        // K = 1 keeps the first choice (by biased score), normalised to 1, times 2.5.
        run(
            &m,
            ExpertSkip {
                min_weight: 0.0,
                top_k: 1,
            },
            &mut out,
        );
        close(&out, &[(0, 2.5)]);
        // K = 2 and W = 0.5: expert 5 by K, then nothing more (expert 3 has 0.6).
        run(
            &m,
            ExpertSkip {
                min_weight: 0.5,
                top_k: 2,
            },
            &mut out,
        );
        close(&out, &[(0, 0.625), (3, 1.875)]);
        // Without norm_topk_prob the kept weights are the scaled sigmoids.
        m.norm_topk_prob = false;
        run(
            &m,
            ExpertSkip {
                min_weight: 0.25,
                top_k: 0,
            },
            &mut out,
        );
        close(&out, &[(0, 0.5), (3, 1.5)]);
    }

    #[test]
    fn no_skip_is_bit_identical_and_bad_values_are_refused() {
        let m = routing(Scoring::Softmax, TopkMethod::GroupLimitedGreedy, Family::V2);
        let logits = [3.9, 0.0, 5.0, 0.0, 1.0, 1.0, 4.0, 3.95];
        let (mut a, mut b) = (vec![], vec![]);
        route(&m, &logits, None, &mut RouterScratch::default(), &mut a);
        let same = ExpertSkip {
            min_weight: 0.0,
            top_k: 2,
        };
        assert!(!same.is_active(2));
        route_skipping(
            &m,
            &logits,
            None,
            &same,
            &mut RouterScratch::default(),
            &mut b,
        );
        assert_eq!(
            a.iter().map(|x| (x.0, x.1.to_bits())).collect::<Vec<_>>(),
            b.iter().map(|x| (x.0, x.1.to_bits())).collect::<Vec<_>>()
        );
        assert!(ExpertSkip::default().check(2).is_ok());
        assert!(same.check(2).is_ok());
        for bad in [
            ExpertSkip {
                min_weight: 0.0,
                top_k: 3,
            },
            ExpertSkip {
                min_weight: -0.1,
                top_k: 0,
            },
            ExpertSkip {
                min_weight: 1.0,
                top_k: 0,
            },
            ExpertSkip {
                min_weight: f32::NAN,
                top_k: 0,
            },
            ExpertSkip {
                min_weight: f32::INFINITY,
                top_k: 0,
            },
        ] {
            assert!(bad.check(2).is_err(), "{bad:?}");
        }
    }

    /// Masking equals routing over the kept experts only: softmax renormalises over them and
    /// the group ranking sees only them (V2 group-limited, bit for bit), and sigmoid/noaux_tc
    /// keeps the un-masked scores and biases.
    #[test]
    fn mask_equals_routing_over_kept_experts() {
        let m = routing(Scoring::Softmax, TopkMethod::GroupLimitedGreedy, Family::V2);
        // Groups of 2; keep experts 1, 2, 5, 6 (one per group).
        let logits = [3.9, 0.5, 5.0, 0.0, 1.0, 1.5, 4.0, 3.95];
        let kept = [1usize, 2, 5, 6];
        let mut mask = ExpertMask::new();
        mask.keep_only(3, 8, &kept);
        assert!(mask.layer(0).is_none());
        let ex = mask.layer(3).unwrap();
        let mut got = vec![];
        let mut sc = RouterScratch::default();
        route_masked(
            &m,
            &logits,
            None,
            &ExpertSkip::default(),
            Some(ex),
            &mut sc,
            &mut got,
        );
        // The pruned router: 4 experts in 4 groups of 1, best 2 groups, top-2.
        let mut mp = m;
        mp.n_routed_experts = 4;
        mp.experts_per_tok = 2;
        let small: Vec<f32> = kept.iter().map(|&e| logits[e]).collect();
        let mut want = vec![];
        route(&mp, &small, None, &mut sc, &mut want);
        let want: Vec<(usize, u32)> = want.iter().map(|&(e, w)| (kept[e], w.to_bits())).collect();
        let got_k2: Vec<(usize, u32)> = got[..2].iter().map(|&(e, w)| (e, w.to_bits())).collect();
        assert_eq!(got_k2, want);
        // Experts 2 (5.0) and 6 (4.0); expert 0 (3.9) and 7 (3.95) are masked.
        assert_eq!(want.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2, 6]);

        let mut m3 = routing(Scoring::Sigmoid, TopkMethod::NoauxTc, Family::V3);
        m3.n_group = 1;
        m3.norm_topk_prob = true;
        let bias = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0];
        let mut mask = ExpertMask::new();
        mask.exclude(0, 8, 6);
        route_masked(
            &m3,
            &[2.0, 1.9, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            Some(&bias),
            &ExpertSkip::default(),
            mask.layer(0),
            &mut sc,
            &mut got,
        );
        // 6 is masked: 7 (biased) then 0.
        assert_eq!(got.iter().map(|x| x.0).collect::<Vec<_>>(), vec![7, 0]);
        let (s7, s0) = (sigmoid(0.0), sigmoid(2.0));
        assert!((got[0].1 - 2.0 * s7 / (s7 + s0)).abs() < 1e-6);
        assert!(mask.check(8, 2).is_ok());
        let mut all = ExpertMask::new();
        all.keep_only(0, 8, &[3]);
        assert!(all.check(8, 2).is_err());
        assert!(all.check(7, 1).is_err());
    }
}
