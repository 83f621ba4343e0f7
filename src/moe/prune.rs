//! Scoring routed experts for offline pruning (`moela prune`, docs/PRUNING.md): statistics
//! recorded while a session runs calibration text ([`crate::Session::record_expert_stats`]),
//! per-expert scores, and the choice of the experts to keep. The GGUF writer is
//! [`crate::prune`].
//!
//! Scores, per layer and routed expert `j`, over the calibration tokens `X_j` routed to it:
//!
//! - REAP (router-weighted expert activation pruning, Lasby et al., ICLR 2026):
//!   `S_j = (1/|X_j|) Σ_{x ∈ X_j} g_j(x) · ‖f_j(x)‖₂`, where `g_j(x)` is the expert's
//!   normalised gate weight for token `x` (its routed weight divided by the sum of the
//!   token's routed weights, so `routed_scaling_factor` and `norm_topk_prob` do not matter)
//!   and `f_j(x)` the expert's output (after `down`, before weighting). An expert never
//!   chosen scores 0.
//! - frequency: `|X_j|`, how many calibration tokens chose it.
//!
//! The lowest-scoring experts go; ties drop the higher expert id.

use crate::error::{Error, Result};

/// How experts are scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Reap,
    Frequency,
}

impl Method {
    pub fn parse(s: &str) -> Result<Method> {
        match s {
            "reap" => Ok(Method::Reap),
            "frequency" | "freq" => Ok(Method::Frequency),
            _ => Err(Error::InvalidArg(format!(
                "prune method {s:?}: expected reap or frequency"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Reap => "reap",
            Method::Frequency => "frequency",
        }
    }
}

/// What one MoE layer's experts did on the calibration text.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerStats {
    pub layer: usize,
    /// Per expert: tokens routed to it.
    pub count: Vec<u64>,
    /// Per expert: Σ normalised gate weight × output L2 norm over those tokens.
    pub reap_sum: Vec<f64>,
}

/// Per MoE layer statistics (dense layers are absent), in layer order.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpertStats {
    pub n_routed_experts: usize,
    /// Tokens evaluated while recording (set by the caller).
    pub tokens: u64,
    pub layers: Vec<LayerStats>,
}

impl ExpertStats {
    pub fn new(n_routed_experts: usize, moe_layers: &[usize]) -> Self {
        ExpertStats {
            n_routed_experts,
            tokens: 0,
            layers: moe_layers
                .iter()
                .map(|&layer| LayerStats {
                    layer,
                    count: vec![0; n_routed_experts],
                    reap_sum: vec![0.0; n_routed_experts],
                })
                .collect(),
        }
    }

    /// Records one token routed to `expert` of `layer` with normalised gate weight
    /// `gate` and expert output L2 norm `out_norm`.
    pub fn record(&mut self, layer: usize, expert: usize, gate: f32, out_norm: f32) {
        if let Some(l) = self.layers.iter_mut().find(|l| l.layer == layer) {
            if expert < l.count.len() {
                l.count[expert] += 1;
                l.reap_sum[expert] += gate as f64 * out_norm as f64;
            }
        }
    }

    /// The scores of every expert of each layer, in layer order: `(layer, scores)`.
    pub fn scores(&self, method: Method) -> Vec<(usize, Vec<f64>)> {
        self.layers
            .iter()
            .map(|l| {
                let s = l
                    .count
                    .iter()
                    .zip(&l.reap_sum)
                    .map(|(&c, &r)| match method {
                        Method::Frequency => c as f64,
                        Method::Reap => reap_score(r, c),
                    })
                    .collect();
                (l.layer, s)
            })
            .collect()
    }
}

/// REAP's score from the sum of `gate × ‖output‖` over the `count` tokens routed to an expert.
pub fn reap_score(sum: f64, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        sum / count as f64
    }
}

/// Checks that `keep` experts out of `n_experts` can be kept with `n_group` routing groups
/// (1 = no groups): the same number in every group, at least `min_per_group` each.
pub fn check_keep(
    keep: usize,
    n_experts: usize,
    n_group: usize,
    min_per_group: usize,
) -> Result<()> {
    let g = n_group.max(1);
    if keep == 0 || keep > n_experts {
        return Err(Error::InvalidArg(format!(
            "prune: keep {keep} experts of {n_experts}: must be 1 ..= {n_experts}"
        )));
    }
    if keep % g != 0 {
        return Err(Error::InvalidArg(format!(
            "prune: keep {keep} experts is not a multiple of the {g} routing groups"
        )));
    }
    if keep / g < min_per_group.max(1) {
        return Err(Error::InvalidArg(format!(
            "prune: keep {keep} experts leaves {} per routing group, fewer than {} (a group \
             would be empty or could not be ranked)",
            keep / g,
            min_per_group.max(1)
        )));
    }
    Ok(())
}

/// The `keep` experts to keep out of `scores.len()`, the same number (`keep / n_group`) in
/// each of the `n_group` contiguous routing groups: the highest scores of each group (ties
/// keep the lower id). Returned in ascending id order. `keep` must pass [`check_keep`].
pub fn select_keep(scores: &[f64], keep: usize, n_group: usize) -> Vec<usize> {
    let g = n_group.max(1);
    let per = scores.len() / g;
    let keep_per = keep / g;
    let mut kept = Vec::with_capacity(keep);
    for grp in 0..g {
        let mut ids: Vec<usize> = (grp * per..(grp + 1) * per).collect();
        ids.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        kept.extend_from_slice(&ids[..keep_per]);
    }
    kept.sort_unstable();
    kept
}

/// The experts each MoE layer keeps: `(layer, ascending ids)`, `keep` per layer, chosen by
/// `method`'s scores with [`select_keep`].
pub fn choose_kept(
    stats: &ExpertStats,
    method: Method,
    keep: usize,
    n_group: usize,
) -> Vec<(usize, Vec<usize>)> {
    stats
        .scores(method)
        .into_iter()
        .map(|(l, s)| (l, select_keep(&s, keep, n_group)))
        .collect()
}

/// Runs `ids` through a session of `model` in windows of `n_ctx` tokens (0: the model's
/// context, at most 4096), `batch` tokens per evaluation, recording [`ExpertStats`].
pub fn calibrate(
    model: std::sync::Arc<crate::Model>,
    ids: &[u32],
    n_ctx: usize,
    batch: usize,
) -> Result<ExpertStats> {
    let mut session = crate::Session::new(
        model,
        &crate::SessionParams {
            n_ctx,
            ..Default::default()
        },
    )?;
    session.record_expert_stats();
    for window in ids.chunks(session.n_ctx()) {
        session.reset();
        for chunk in window.chunks(batch.max(1)) {
            session.eval(chunk, false)?;
        }
    }
    let mut stats = session
        .take_expert_stats()
        .ok_or_else(|| Error::InvalidArg("no expert statistics recorded".into()))?;
    stats.tokens = ids.len() as u64;
    Ok(stats)
}

/// The number of experts to keep for `--keep P%` of `n_experts`: rounded to the nearest
/// multiple of `n_group` (halves down), at least `n_group`.
pub fn keep_for_percent(percent: f64, n_experts: usize, n_group: usize) -> usize {
    let g = n_group.max(1) as f64;
    let want = percent / 100.0 * n_experts as f64;
    let k = ((want / g) - 0.5).ceil().max(1.0) * g;
    (k as usize).min(n_experts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_by_hand() {
        let mut s = ExpertStats::new(4, &[1, 3]);
        // Layer 1: expert 0 twice (gates 0.6, 0.25; norms 2, 4), expert 2 once (0.4, 10),
        // expert 3 three times (0.1, 1 each).
        s.record(1, 0, 0.6, 2.0);
        s.record(1, 0, 0.25, 4.0);
        s.record(1, 2, 0.4, 10.0);
        for _ in 0..3 {
            s.record(1, 3, 0.1, 1.0);
        }
        s.record(0, 1, 1.0, 1.0); // dense layer: ignored
        s.record(3, 1, 0.5, 3.0);
        let reap = s.scores(Method::Reap);
        assert_eq!(reap[0].0, 1);
        let want = [(0.6 * 2.0 + 0.25 * 4.0) / 2.0, 0.0, 4.0, 0.1];
        for (g, w) in reap[0].1.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{reap:?}");
        }
        assert!((reap[1].1[1] - 1.5).abs() < 1e-6);
        let freq = s.scores(Method::Frequency);
        assert_eq!(freq[0].1, vec![2.0, 0.0, 1.0, 3.0]);
        // REAP keeps 2 and 0; frequency keeps 3 and 0.
        assert_eq!(select_keep(&reap[0].1, 2, 1), vec![0, 2]);
        assert_eq!(select_keep(&freq[0].1, 2, 1), vec![0, 3]);
    }

    #[test]
    fn keeps_equally_per_group() {
        // Two groups of 4; group 0 has the four best scores overall.
        let s = [9.0, 8.0, 7.0, 6.0, 1.0, 5.0, 1.0, 2.0];
        assert_eq!(select_keep(&s, 4, 2), vec![0, 1, 5, 7]);
        // Ties keep the lower id.
        assert_eq!(select_keep(&[1.0; 4], 2, 1), vec![0, 1]);
        assert!(check_keep(4, 8, 2, 1).is_ok());
        assert!(check_keep(3, 8, 2, 1).is_err());
        assert!(check_keep(2, 8, 2, 2).is_err());
        assert!(check_keep(0, 8, 1, 1).is_err());
        assert!(check_keep(9, 8, 1, 1).is_err());
    }

    #[test]
    fn percent_rounds_to_groups() {
        assert_eq!(keep_for_percent(50.0, 16, 1), 8);
        assert_eq!(keep_for_percent(75.0, 16, 1), 12);
        assert_eq!(keep_for_percent(50.0, 8, 4), 4);
        // 37.5% of 8 = 3, nearest multiple of 2 (halves down) = 2.
        assert_eq!(keep_for_percent(37.5, 8, 2), 2);
        assert_eq!(keep_for_percent(1.0, 8, 4), 4);
        assert_eq!(keep_for_percent(100.0, 8, 4), 8);
    }
}
