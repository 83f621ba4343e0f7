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

use crate::config::{Family, MoeRouting, Scoring, TopkMethod};
use crate::ops::{sigmoid, softmax};

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
    let n = logits.len();
    s.scores.clear();
    s.scores.extend_from_slice(logits);
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
}
