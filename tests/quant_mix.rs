//! `moela convert` with quantization policies on tests/fixtures/v3 (4 layers, 3 MoE layers of
//! 8 routed experts): a llama.cpp-style mix, `--expert-quant`, and per-expert types from an
//! expert profile within a target size (experts split into groups by type, docs/FORMAT.md §8).
//!
//! Thresholds against transformers' logits (as tests/golden.rs): the q4_0_m mix and the
//! profile-planned file must be at least as close as plain Q4_0 less 0.02 in median row cosine
//! (mixes only add bits), with every row ≥ 0.5; `--type q8_0 --expert-quant q4_0` every row ≥ 0.5.
//! The grouped reader is checked directly: every expert's weights read back from the file equal
//! the HF expert's of the same id within its type's quantization error.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use moela::convert::{convert_with, ConvertOptions};
use moela::format::gguf::{write_gguf_file, GgufArray, GgufTensorSpec, GgufValue};
use moela::model::weights::Ffn;
use moela::moe::profile::ExpertProfile;
use moela::quant_policy::Base;
use moela::session::sequence_logits;
use moela::tensor::DType;
use moela::{Model, SessionParams};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v3")
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("moela-mix-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Ref {
    tokens: Vec<u32>,
    full: Vec<f32>,
    vocab: usize,
}

fn reference() -> Ref {
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("tokens.json")).unwrap())
            .unwrap();
    let tokens = t["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let (full, _, vocab) = moela::npy::read_f32(&fixture().join("logits_full.npy")).unwrap();
    Ref {
        tokens,
        full,
        vocab,
    }
}

/// (min, median) row cosine and top-1 agreement of `path`'s logits with the reference.
fn quality(path: &Path, r: &Ref) -> (f64, f64, usize) {
    let model = Arc::new(Model::load(path).unwrap());
    let out = sequence_logits(model, &r.tokens, r.tokens.len(), &SessionParams::default()).unwrap();
    let mut c: Vec<f64> = out
        .chunks(r.vocab)
        .zip(r.full.chunks(r.vocab))
        .map(|(x, y)| {
            let dot: f64 = x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum();
            let n = |v: &[f32]| v.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
            dot / (n(x) * n(y))
        })
        .collect();
    let top1 = out
        .chunks(r.vocab)
        .zip(r.full.chunks(r.vocab))
        .filter(|(a, b)| moela::sampler::argmax(a) == moela::sampler::argmax(b))
        .count();
    c.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (c[0], c[c.len() / 2], top1)
}

fn types_of(path: &Path) -> Vec<(String, String)> {
    let m = Model::load(path).unwrap();
    m.tensors
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.type_name()))
        .collect()
}

fn type_of(types: &[(String, String)], name: &str) -> String {
    types
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .1
        .clone()
}

#[test]
fn mix_and_expert_quant() {
    let r = reference();
    let dir = tmpdir("mix");
    let q4 = dir.join("q4_0.gguf");
    moela::convert::convert_hf_to_gguf(&fixture(), &q4, DType::Q4_0, &mut |_| {}).unwrap();
    let (q4_min, q4_med, q4_top1) = quality(&q4, &r);
    println!("q4_0: cosine min {q4_min:.4} median {q4_med:.4} top-1 {q4_top1}/16");

    // The q4_0_m mix.
    let mix = dir.join("q4_0_m.gguf");
    let opts = ConvertOptions {
        base: Base::parse("q4_0_m").unwrap(),
        expert: None,
        profile: None,
    };
    let mut lines = Vec::new();
    let summary =
        convert_with(&fixture(), &mix, &opts, &mut |l| lines.push(l.to_string())).unwrap();
    println!("{}", summary.table());
    assert!(
        lines.iter().any(|l| l.contains("ffn_down_exps")),
        "progress lines"
    );
    assert_eq!(summary.file_bytes, std::fs::metadata(&mix).unwrap().len());
    let t = types_of(&mix);
    // 4 layers: use_more_bits holds for layers 2 ((2 - 0) % 3 == 2) and 3 (the last eighth).
    assert_eq!(type_of(&t, "output.weight"), "Q8_0");
    assert_eq!(type_of(&t, "token_embd.weight"), "Q4_0");
    assert_eq!(type_of(&t, "blk.3.ffn_down_exps.weight"), "Q8_0");
    assert_eq!(type_of(&t, "blk.1.ffn_down_exps.weight"), "Q4_0");
    assert_eq!(type_of(&t, "blk.1.ffn_gate_exps.weight"), "Q4_0");
    assert_eq!(type_of(&t, "blk.1.attn_kv_a_mqa.weight"), "Q8_0");
    assert_eq!(type_of(&t, "blk.1.ffn_gate_inp.weight"), "F32");
    let (min, med, top1) = quality(&mix, &r);
    println!("q4_0_m: cosine min {min:.4} median {med:.4} top-1 {top1}/16");
    assert!(min >= 0.5 && med >= q4_med - 0.02, "q4_0_m: {min} {med}");
    assert!(summary.file_bytes > std::fs::metadata(&q4).unwrap().len());

    // Q8_0 everywhere but the routed experts.
    let eq = dir.join("q8_0-experts-q4_0.gguf");
    let opts = ConvertOptions {
        base: Base::Uniform(DType::Q8_0),
        expert: Some(DType::Q4_0),
        profile: None,
    };
    let s = convert_with(&fixture(), &eq, &opts, &mut |_| {}).unwrap();
    println!("{}", s.table());
    let t = types_of(&eq);
    for l in 1..4 {
        for w in ["ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"] {
            assert_eq!(type_of(&t, &format!("blk.{l}.{w}.weight")), "Q4_0");
        }
        assert_eq!(type_of(&t, &format!("blk.{l}.ffn_up_shexp.weight")), "Q8_0");
        assert_eq!(type_of(&t, &format!("blk.{l}.attn_output.weight")), "Q8_0");
    }
    let (min, med, top1) = quality(&eq, &r);
    println!("q8_0 + q4_0 experts: cosine min {min:.4} median {med:.4} top-1 {top1}/16");
    assert!(min >= 0.5 && med >= q4_med - 0.02);
    std::fs::remove_dir_all(&dir).ok();
}

/// A profile where, in each MoE layer, experts 0..3 are hot (more uses for lower ids) and
/// 4..7 were never chosen.
fn profile() -> ExpertProfile {
    let mut p = ExpertProfile::new("v3 fixture", 4, 8, &[1, 2, 3]);
    for l in 1..4 {
        for e in 0..4 {
            for _ in 0..(40 - 10 * e + l) {
                p.record(l, e);
            }
        }
    }
    p
}

#[test]
fn profile_guided_experts_within_target_size() {
    let r = reference();
    let dir = tmpdir("profile");
    let (lo, hi) = (dir.join("q4_0.gguf"), dir.join("q8_0.gguf"));
    moela::convert::convert_hf_to_gguf(&fixture(), &lo, DType::Q4_0, &mut |_| {}).unwrap();
    let q4_size = std::fs::metadata(&lo).unwrap().len();
    // All experts at Q8_0, the rest Q4_0: the most the planner could use.
    let opts = ConvertOptions {
        base: Base::Uniform(DType::Q4_0),
        expert: Some(DType::Q8_0),
        profile: None,
    };
    convert_with(&fixture(), &hi, &opts, &mut |_| {}).unwrap();
    let hi_size = std::fs::metadata(&hi).unwrap().len();
    let (_, q4_med, _) = quality(&lo, &r);

    // Room for about a third of the experts at Q8_0.
    let target = q4_size + (hi_size - q4_size) / 3;
    let out = dir.join("planned.gguf");
    let opts = ConvertOptions {
        base: Base::Uniform(DType::Q4_0),
        expert: None,
        profile: Some((profile(), target)),
    };
    let s = convert_with(&fixture(), &out, &opts, &mut |_| {}).unwrap();
    println!("{}", s.table());
    let size = std::fs::metadata(&out).unwrap().len();
    println!("q4_0 {q4_size}, all experts q8_0 {hi_size}, target {target}, planned {size}");
    assert!(size <= target, "{size} > {target}");
    let n_hi = s
        .experts_by_type
        .iter()
        .find(|(t, _)| *t == DType::Q8_0)
        .map_or(0, |x| x.1);
    // 24 experts; a third of the difference buys 8 upgrades less the group tensors' headers.
    assert!((6..=8).contains(&n_hi), "{n_hi} experts upgraded");

    // The file: layers with mixed experts carry the group key and the .g1 tensors; the hot
    // experts (low ids) are the upgraded ones.
    let f = moela::format::gguf::GgufFile::open(&out).unwrap();
    let mut upgraded = Vec::new();
    for l in 1..4 {
        if let Some(v) = f.get(&moela::convert::expert_group_key(l)) {
            let g = v.as_u32_array().unwrap().into_owned();
            assert_eq!(g.len(), 8);
            assert!(f
                .tensor(&format!("blk.{l}.ffn_up_exps.g1.weight"))
                .is_some());
            for (e, &grp) in g.iter().enumerate() {
                if grp == 1 {
                    upgraded.push((l, e));
                }
            }
        }
    }
    assert_eq!(upgraded.len(), n_hi);
    assert!(upgraded.iter().all(|&(_, e)| e < 4), "{upgraded:?}");
    assert!(
        upgraded.contains(&(3, 0)),
        "hottest expert upgraded: {upgraded:?}"
    );

    // The reader puts every expert back under its own id: compare with the HF weights.
    let model = Model::load(&out).unwrap();
    let hf = Model::load(fixture()).unwrap();
    for l in 1..4 {
        let (Ffn::Moe(m), Ffn::Moe(h)) = (&model.weights.layers[l].ffn, &hf.weights.layers[l].ffn)
        else {
            panic!("layer {l} not MoE")
        };
        for e in 0..8 {
            for (a, b) in [
                (&m.experts[e].gate, &h.experts[e].gate),
                (&m.experts[e].down, &h.experts[e].down),
            ] {
                let (x, y) = (a.to_f32(), b.to_f32());
                let amax = y.iter().fold(0f32, |s, v| s.max(v.abs()));
                let err = x
                    .iter()
                    .zip(&y)
                    .fold(0f32, |s, (p, q)| s.max((p - q).abs()));
                // Q4_0's step is amax/8 per block (error ≤ a step); Q8_0's amax/127.
                let bound = if a.dtype == DType::Q8_0 {
                    amax / 100.0
                } else {
                    amax / 6.0
                };
                assert!(err <= bound, "layer {l} expert {e}: err {err} > {bound}");
                assert_eq!(a.dtype == DType::Q8_0, upgraded.contains(&(l, e)));
            }
        }
    }
    let (min, med, top1) = quality(&out, &r);
    println!(
        "planned: cosine min {min:.4} median {med:.4} top-1 {top1}/16 (q4_0 median {q4_med:.4})"
    );
    assert!(min >= 0.5 && med >= q4_med - 0.02);

    // A damaged group key is a clear error naming it, never a panic.
    let f = moela::format::gguf::GgufFile::open(&out).unwrap();
    let key = moela::convert::expert_group_key(upgraded[0].0);
    for (tag, bad) in [
        ("short", GgufArray::U32(vec![0; 7])),
        ("gap", GgufArray::U32(vec![0, 2, 0, 0, 0, 0, 0, 0])),
        ("type", GgufArray::String(vec!["x".into(); 8])),
    ] {
        let meta: Vec<(String, GgufValue)> = f
            .metadata
            .iter()
            .map(|(k, v)| {
                let v = if *k == key {
                    GgufValue::Array(bad.clone())
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect();
        let specs: Vec<GgufTensorSpec> = f
            .tensors
            .iter()
            .map(|t| GgufTensorSpec {
                name: t.name.clone(),
                dims: t.dims.clone(),
                ggml_type: t.ggml_type,
            })
            .collect();
        let path = dir.join(format!("bad-{tag}.gguf"));
        write_gguf_file(&path, &meta, &specs, 32, |i, w| {
            w.write_all(f.tensor_data(&f.tensors[i]))
                .map_err(|e| moela::Error::io(&path, e))
        })
        .unwrap();
        let e = Model::load(&path).err().expect("must fail").to_string();
        assert!(e.contains(&key), "{tag}: {e}");
    }

    // Too small a target is a clear error.
    let opts = ConvertOptions {
        base: Base::Uniform(DType::Q4_0),
        expert: None,
        profile: Some((profile(), q4_size / 2)),
    };
    let e = convert_with(&fixture(), &dir.join("small.gguf"), &opts, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("too small"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
