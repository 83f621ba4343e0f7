//! Q4_0, Q5_0, Q4_K, Q5_K, Q6_K, Q4_1, Q5_1, Q2_K, Q3_K, IQ4_NL and IQ4_XS weights interleaved by eight rows at load
//! (src/tensor/interleave.rs): the
//! loader does it exactly where the active kernel set asks for it (AVX2), never for the embedding table, the
//! per-head up-projections or (under an expert budget) the routed experts, and the logits match
//! those of the same file kept in its own layout within float summation order: max |Δ| ≤ 1e-4
//! · max |logit| (both run the same q8a activations through kernels that differ only in the
//! order of their float sums; measured ~2e-7 relative on these fixtures).

use std::sync::Arc;

use moela::model::weights::{Ffn, QWeights};
use moela::model::ModelParams;
use moela::moe::experts::{ExpertBudget, ExpertParams};
use moela::session::sequence_logits;
use moela::tensor::DType;
use moela::{Model, SessionParams};
mod common;
use common::{fixture, fixture_tokens as tokens};

#[test]
fn interleaved_q4_0_matches_file_layout() {
    let dir = std::env::temp_dir().join(format!("moela-interleave-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The K-quants need the 256-wide `kq` fixture.
    for (name, dtype) in [
        ("v2_lite", DType::Q4_0),
        ("v3", DType::Q4_0),
        ("v2_lite", DType::Q5_0),
        ("kq", DType::Q4_K),
        ("kq", DType::Q5_K),
        ("kq", DType::Q6_K),
        // Q4_1 on v3: on v2_lite and kq a decode step's expert choice is a near tie that 1e-6
        // changes flip (v2_lite: the avx2 and generic file-layout kernels already disagree
        // from token 9), as does kq's at Q5_1 under a budget.
        ("v3", DType::Q4_1),
        ("v2_lite", DType::Q5_1),
        ("v2_lite", DType::IQ4_NL),
        ("kq", DType::IQ4_XS),
        ("kq", DType::Q2_K),
        ("kq", DType::Q3_K),
    ] {
        let wants = moela::kernels::active().wants_x8(dtype);
        let gguf = dir.join(format!("{name}-{}.gguf", dtype.name()));
        moela::convert::convert_hf_to_gguf(&fixture(name), &gguf, dtype, &mut |_| {}).unwrap();
        let load = |keep: bool, budget: ExpertBudget| {
            let p = ModelParams {
                experts: ExpertParams {
                    budget,
                    ..Default::default()
                },
                keep_file_layout: keep,
            };
            Arc::new(Model::load_with(&gguf, &p).unwrap())
        };
        let interleaved = load(false, ExpertBudget::Unlimited);
        let kept = load(true, ExpertBudget::Unlimited);
        let budgeted = load(false, ExpertBudget::Fraction(0.5));
        let w = &interleaved.weights;
        assert_eq!(w.lm_head.is_interleaved(), wants, "{name} lm_head");
        assert!(!w.embed.is_interleaved(), "{name} embed");
        for (l, layer) in w.layers.iter().enumerate() {
            assert_eq!(layer.attn.o.is_interleaved(), wants, "{name} layer {l} o");
            if let QWeights::Direct { q } = &layer.attn.q {
                assert_eq!(q.is_interleaved(), wants);
            }
            assert!(layer.attn.k_up.iter().all(|h| !h.stored.is_interleaved()));
            if let Ffn::Moe(m) = &layer.ffn {
                assert!(m.experts.iter().all(|e| e.gate.is_interleaved() == wants));
            }
        }
        for layer in &kept.weights.layers {
            assert!(!layer.attn.o.is_interleaved(), "{name}: kept layout");
        }
        for layer in &budgeted.weights.layers {
            if let Ffn::Moe(m) = &layer.ffn {
                assert!(
                    m.experts.iter().all(|e| !e.gate.is_interleaved()),
                    "{name}: budget"
                );
            }
        }
        let toks = tokens(name);
        let p = SessionParams::default();
        let a = sequence_logits(interleaved, &toks, 4, &p).unwrap();
        let b = sequence_logits(kept, &toks, 4, &p).unwrap();
        let c = sequence_logits(budgeted, &toks, 4, &p).unwrap();
        let max = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (what, x) in [("interleaved", &a), ("interleaved, budget", &c)] {
            let d = x
                .iter()
                .zip(&b)
                .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
            println!(
                "{name} {} {what}: max |Δ| {d:e} (max |logit| {max})",
                dtype.name()
            );
            assert!(d <= 1e-4 * max, "{name} {what}: max |Δ| {d} vs {max}");
        }
    }
}

/// The loader's memory guard: nothing is interleaved when the copies would not fit.
#[test]
fn interleaving_respects_its_memory_limit() {
    let dir = std::env::temp_dir().join(format!("moela-interleave-max-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let gguf = dir.join("v3-q4_0.gguf");
    moela::convert::convert_hf_to_gguf(&fixture("v3"), &gguf, DType::Q4_0, &mut |_| {}).unwrap();
    let p = ModelParams {
        keep_file_layout: true,
        ..Default::default()
    };
    let mut m = Model::load_with(&gguf, &p).unwrap();
    assert_eq!(m.weights.interleave_x8(true, |d| d == DType::Q4_0, 1000), 0);
    assert!(!m.weights.lm_head.is_interleaved());
    let all = m
        .weights
        .interleave_x8(true, |d| d == DType::Q4_0, usize::MAX);
    assert!(
        all > 1000 && m.weights.lm_head.is_interleaved(),
        "{all} bytes"
    );
}
