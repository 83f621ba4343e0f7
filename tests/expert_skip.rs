//! Run-time expert skipping (`--expert-top-k`, `--expert-min-weight`; src/moe/router.rs) on the
//! fixture models: no-op settings give the same bits, and skipping equals an independent
//! reference (the model with a smaller top-k in its config) where the routing rules make the
//! two the same.

use std::sync::Arc;

use moela::moe::router::ExpertSkip;
use moela::session::sequence_logits;
use moela::{Error, Model, Session, SessionParams};
mod common;
use common::{fixture, fixture_tokens as tokens};

fn skip(min_weight: f32, top_k: usize) -> ExpertSkip {
    ExpertSkip { min_weight, top_k }
}

/// Logits of every token (5 as a batch, the rest one at a time) with `skip`.
fn logits(model: &Arc<Model>, toks: &[u32], s: ExpertSkip) -> Vec<u32> {
    let p = SessionParams {
        expert_skip: s,
        ..Default::default()
    };
    sequence_logits(model.clone(), toks, 5, &p)
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

#[test]
fn no_op_settings_are_bit_identical() {
    for name in ["v2_lite", "v2", "v3", "v3_dense2"] {
        let model = Arc::new(Model::load(fixture(name)).unwrap());
        let toks = tokens(name);
        let k = model.config.moe.experts_per_tok;
        let base = logits(&model, &toks, ExpertSkip::default());
        assert_eq!(logits(&model, &toks, skip(0.0, k)), base, "{name}");
        assert_eq!(logits(&model, &toks, skip(0.0, 0)), base, "{name}");
        // Top-1 changes the logits.
        assert_ne!(logits(&model, &toks, skip(0.0, 1)), base, "{name}");
    }
}

/// Without norm_topk_prob (v2_lite: greedy; v2: group-limited, scale 2.0) keeping the first K
/// choices is exactly a model whose config says top-K; and W = 0.99 keeps only the first
/// choice of a softmax router (no expert can reach a 0.99 share unless it is the first), so
/// it equals top-1.
#[test]
fn skipping_equals_a_smaller_top_k_without_normalisation() {
    for name in ["v2_lite", "v2"] {
        let model = Arc::new(Model::load(fixture(name)).unwrap());
        assert!(!model.config.moe.norm_topk_prob);
        let toks = tokens(name);
        let k = model.config.moe.experts_per_tok;
        for kk in 1..k {
            let mut reference = Model::load(fixture(name)).unwrap();
            reference.config.moe.experts_per_tok = kk;
            let reference = Arc::new(reference);
            let want = logits(&reference, &toks, ExpertSkip::default());
            assert_eq!(logits(&model, &toks, skip(0.0, kk)), want, "{name} K={kk}");
            if kk == 1 {
                assert_eq!(logits(&model, &toks, skip(0.99, 0)), want, "{name} W=0.99");
            }
        }
    }
}

/// With norm_topk_prob (v3: sigmoid, noaux_tc, top-2, norm, scale 2.5) the kept experts are
/// renormalised; with K = 1 each token uses exactly one routed expert per MoE layer, and a
/// threshold between drops some but not all second choices.
#[test]
fn v3_counts_and_thresholds() {
    let model = Arc::new(Model::load(fixture("v3")).unwrap());
    let toks = tokens("v3");
    let moe_layers = (0..model.config.n_layers)
        .filter(|&l| model.config.is_moe_layer(l))
        .count() as u64;
    let uses = |s: ExpertSkip| {
        let p = SessionParams {
            expert_skip: s,
            ..Default::default()
        };
        let mut sess = Session::new(model.clone(), &p).unwrap();
        sess.eval(&toks, false).unwrap();
        sess.expert_uses()
    };
    let n = toks.len() as u64 * moe_layers;
    assert_eq!(uses(ExpertSkip::default()), (2 * n, n));
    assert_eq!(uses(skip(0.0, 1)), (n, n));
    assert_eq!(uses(skip(0.99, 0)), (n, n));
    let (u, t) = uses(skip(0.45, 0));
    assert_eq!(t, n);
    assert!(u > n && u < 2 * n, "W=0.45 kept {u} of {}", 2 * n);
    // Fewer bytes per token with fewer experts.
    assert!(model.active_bytes_per_token_with(1.0) < model.active_bytes_per_token());
    assert_eq!(
        model.active_bytes_per_token_with(2.0),
        model.active_bytes_per_token()
    );
}

#[test]
fn bad_values_are_refused() {
    let model = Arc::new(Model::load(fixture("v3")).unwrap());
    for s in [skip(0.0, 3), skip(-0.1, 0), skip(1.0, 0), skip(f32::NAN, 0)] {
        let p = SessionParams {
            expert_skip: s,
            ..Default::default()
        };
        match Session::new(model.clone(), &p) {
            Err(Error::InvalidArg(m)) => assert!(m.contains("expert"), "{m}"),
            Err(e) => panic!("{s:?}: {e}"),
            Ok(_) => panic!("{s:?} accepted"),
        }
    }
}
