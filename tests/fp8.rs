//! DeepSeek's FP8 layout (F8_E4M3 weights + F32 `weight_scale_inv` 128×128 block scales):
//! `tests/fixtures/v3_fp8` (tools/gen_fp8_fixtures.py) against transformers run on the
//! dequantized weights, and against moela's own GGUF conversions of it.
//!
//! Tolerances:
//! - FP8 directory vs transformers (f32, dequantized weights): max |Δ| ≤ 1e-3 (the
//!   dequantization is exact, so only f32 summation order differs; measured ~1e-5), top-1 equal
//!   at all 16 positions, full and incremental;
//! - FP8 → F32 GGUF (dequantized by the converter) vs the FP8 directory: max |Δ| ≤ 1e-4 (same
//!   values, different kernels);
//! - FP8 → BF16 GGUF: cosine ≥ 0.9999 per row; Q8_0: median cosine ≥ 0.999, every row ≥ 0.9,
//!   top-1 ≥ 14/16; Q4_0: cosine ≥ 0.5 per row (as tests/golden.rs).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use moela::session::sequence_logits;
use moela::tensor::DType;
use moela::{Model, SessionParams};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v3_fp8")
}

struct Reference {
    tokens: Vec<u32>,
    prefill: usize,
    full: Vec<f32>,
    incr: Vec<f32>,
    vocab: usize,
}

fn reference() -> Reference {
    let dir = fixture();
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokens.json")).unwrap()).unwrap();
    let tokens = t["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect::<Vec<_>>();
    let (full, _, vocab) = moela::npy::read_f32(&dir.join("logits_full.npy")).unwrap();
    let (incr, _, _) = moela::npy::read_f32(&dir.join("logits_incr.npy")).unwrap();
    Reference {
        tokens,
        prefill: t["prefill"].as_u64().unwrap() as usize,
        full,
        incr,
        vocab,
    }
}

fn top1(a: &[f32], b: &[f32], vocab: usize) -> usize {
    a.chunks(vocab)
        .zip(b.chunks(vocab))
        .filter(|(x, y)| moela::sampler::argmax(x) == moela::sampler::argmax(y))
        .count()
}

fn cosines(a: &[f32], b: &[f32], vocab: usize) -> Vec<f64> {
    let mut c: Vec<f64> = a
        .chunks(vocab)
        .zip(b.chunks(vocab))
        .map(|(x, y)| {
            let dot: f64 = x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum();
            let nx: f64 = x.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
            let ny: f64 = y.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
            dot / (nx * ny)
        })
        .collect();
    c.sort_by(|x, y| x.partial_cmp(y).unwrap());
    c
}

fn run(model: &Arc<Model>, r: &Reference, prefill: usize) -> Vec<f32> {
    sequence_logits(model.clone(), &r.tokens, prefill, &SessionParams::default()).unwrap()
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("moela-fp8-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn fp8_directory_matches_transformers_on_dequantized_weights() {
    let r = reference();
    let model = Arc::new(Model::load(fixture()).unwrap());
    // The quantized projections really are FP8 with block scales; the rest stays BF16.
    let l0 = &model.weights.layers[0];
    assert_eq!(l0.attn.o.dtype, DType::F8E4M3);
    assert!(l0.attn.o.is_block_scaled());
    assert_eq!(model.weights.embed.dtype, DType::BF16);
    let full = run(&model, &r, r.tokens.len());
    let incr = run(&model, &r, r.prefill);
    let (df, di) = (
        common::max_abs_diff(&full, &r.full),
        common::max_abs_diff(&incr, &r.incr),
    );
    println!("v3_fp8: max|Δ| full {df:.2e}, incremental {di:.2e}");
    assert!(df <= 1e-3, "full logits differ by {df}");
    assert!(di <= 1e-3, "incremental logits differ by {di}");
    assert_eq!(top1(&full, &r.full, r.vocab), r.tokens.len());
    assert_eq!(top1(&incr, &r.incr, r.vocab), r.tokens.len());
}

#[test]
fn fp8_converts_to_gguf() {
    let r = reference();
    let fp8 = Arc::new(Model::load(fixture()).unwrap());
    let direct = run(&fp8, &r, r.tokens.len());
    let dir = tmpdir("convert");
    // The K-quants need 256-wide rows (this fixture is 64 wide): see golden.rs's `kq` test;
    // the other quantized types are covered by golden.rs and kernel_sets.rs.
    for dtype in [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q8_0,
        DType::Q4_0,
    ] {
        let out = dir.join(format!("fp8-{}.gguf", dtype.name()));
        moela::convert::convert_hf_to_gguf(&fixture(), &out, dtype, &mut |_| {}).unwrap();
        let model = Arc::new(Model::load(&out).unwrap());
        let full = run(&model, &r, r.tokens.len());
        let c = cosines(&full, &r.full, r.vocab);
        let (min, median) = (c[0], c[c.len() / 2]);
        let t1 = top1(&full, &r.full, r.vocab);
        let d = common::max_abs_diff(&full, &r.full);
        println!(
            "fp8 -> {:>5}: max|Δ| {d:.2e}, cosine min {min:.6} median {median:.6}, top-1 {t1}/{}",
            dtype.name(),
            r.tokens.len()
        );
        match dtype {
            DType::F32 => {
                let same = common::max_abs_diff(&full, &direct);
                assert!(same <= 1e-4, "f32 GGUF vs FP8 directory differ by {same}");
                assert!(d <= 1e-3);
            }
            DType::F16 | DType::BF16 => assert!(min >= 0.9999, "{dtype:?}: cosine {min}"),
            DType::Q8_0 => {
                assert!(median >= 0.999, "q8_0: median cosine {median}");
                assert!(min >= 0.9, "q8_0: cosine {min}");
                assert!(t1 >= r.tokens.len() - 2, "q8_0: top-1 {t1}");
            }
            DType::Q4_0 => assert!(min >= 0.5, "q4_0: cosine {min}"),
            other => panic!("no threshold stated for {other:?}"),
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Copies the fixture to a temporary directory with `edit` applied to the safetensors header
/// text (edits must keep its length, so the data offsets stay valid).
fn edited_fixture(tag: &str, edit: impl Fn(&str) -> String) -> PathBuf {
    let dir = tmpdir(tag);
    for f in ["config.json", "tokens.json"] {
        std::fs::copy(fixture().join(f), dir.join(f)).unwrap();
    }
    let mut bytes = std::fs::read(fixture().join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap().to_string();
    let new = edit(&header);
    assert_eq!(new.len(), header.len());
    bytes[8..8 + n].copy_from_slice(new.as_bytes());
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    dir
}

#[test]
fn missing_or_mismatched_scales_are_clear_errors() {
    // The scales of one weight renamed away: the weight has none.
    let dir = edited_fixture("noscale", |h| {
        h.replace(
            "model.layers.0.self_attn.o_proj.weight_scale_inv",
            "model.layers.0.self_attn.o_proj.weight_scale_xxx",
        )
    });
    let e = Model::load(&dir).err().expect("must fail").to_string();
    assert!(
        e.contains("o_proj.weight") && e.contains("_scale_inv") && e.contains("missing"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();

    // A block size that does not fit the stored grids.
    let dir = tmpdir("block");
    for f in ["model.safetensors", "tokens.json"] {
        std::fs::copy(fixture().join(f), dir.join(f)).unwrap();
    }
    let cfg = std::fs::read_to_string(fixture().join("config.json")).unwrap();
    let cfg = cfg.replacen("128,\n      128", "64,\n      64", 1);
    assert!(
        cfg.contains("64,\n      64"),
        "fixture config layout changed"
    );
    std::fs::write(dir.join("config.json"), cfg).unwrap();
    let e = Model::load(&dir).err().expect("must fail").to_string();
    assert!(e.contains("_scale_inv") && e.contains("shape"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
