//! `Session::eval` splits a batch longer than its maximum into forward passes of that many
//! tokens (`Session::set_max_batch`, default `session::DEFAULT_MAX_BATCH`): the logits agree
//! with one pass within rounding, every row lands in its place, and pieces of one token are
//! exactly one-token evaluation.

mod common;

use std::sync::Arc;

use moela::{Model, Session, SessionParams};

fn all_logits(m: &Arc<Model>, toks: &[u32], max_batch: usize) -> (Vec<f32>, Vec<f32>) {
    let mut s = Session::new(m.clone(), &SessionParams::default()).unwrap();
    s.set_max_batch(max_batch);
    let rows = s.eval(toks, true).unwrap().to_vec();
    assert_eq!(s.position(), toks.len());
    // One decode step after the split prefill sees the whole cache.
    let next = s.eval(&[toks[0]], false).unwrap().to_vec();
    (rows, next)
}

#[test]
fn split_prefill_matches_one_pass() {
    for name in ["v2_lite", "v3"] {
        let m = Arc::new(Model::load(common::fixture(name)).unwrap());
        let toks = common::fixture_tokens(name);
        assert!(toks.len() >= 8, "{name}: too few tokens to split");
        let (whole, whole_next) = all_logits(&m, &toks, usize::MAX);
        let scale = whole.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        for max_batch in [3, 5, toks.len() - 1] {
            let (split, split_next) = all_logits(&m, &toks, max_batch);
            // Bound: 1e-4 of the largest logit (the pieces' kernels see other batch sizes,
            // so sums are rounded in another order; a misplaced row or position is O(1)).
            let (d, dn) = (
                common::max_abs_diff(&whole, &split),
                common::max_abs_diff(&whole_next, &split_next),
            );
            assert!(
                d <= 1e-4 * scale && dn <= 1e-4 * scale,
                "{name} max_batch {max_batch}: max |Δ| {d} / next {dn} (logit scale {scale})"
            );
        }
        // Pieces of one token are one-token evaluations: bit for bit.
        let (ones, _) = all_logits(&m, &toks, 1);
        let mut s = Session::new(m.clone(), &SessionParams::default()).unwrap();
        for (i, &t) in toks.iter().enumerate() {
            let row = s.eval(&[t], false).unwrap();
            let n = row.len();
            assert!(
                row.iter()
                    .zip(&ones[i * n..(i + 1) * n])
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{name}: row {i} of max_batch 1 differs from a one-token eval"
            );
        }
    }
}
