//! Models stored in the load-only low-bit types (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S,
//! IQ1_M, TQ1_0, TQ2_0, MXFP4, NVFP4, Q1_0, Q2_0) load and run. moela cannot write these types, so the files are
//! built here: the 256-wide `kq` fixture is converted to F32, then every matrix whose rows are
//! whole blocks of the type (all but norms, routers and, for the 256-element types, the
//! 32-wide expert down projections) is replaced by random valid blocks of the type, scaled to
//! the original matrix's RMS. A second, F32 file holds exactly those blocks' dequantized values.
//! Both files hold the same weights, so their logits differ only by the 8-bit rounding of the
//! activations the quantized kernels multiply with (and by float summation order).
//!
//! Measured (1 - median row cosine / lowest row cosine / top-1 agreement of 16, the same for
//! the full prefill and prefill-then-decode): IQ2_XXS 7.3e-5 / 0.99984 / 16, IQ2_XS 9.1e-5 /
//! 0.9972 / 15, IQ3_XXS 8.4e-5 / 0.9979 / 16, IQ1_S 6.3e-5 / 0.99989 / 15, IQ3_S 8.3e-5 /
//! 0.99987 / 16, IQ2_S 7.2e-5 / 0.99986 / 16, IQ1_M 8.0e-5 / 0.99988 / 16, TQ1_0 5.7e-5 /
//! 0.99988 / 16, TQ2_0 1.3e-7 / 1.0 / 16 (its random codes have mean +1/2, so one direction
//! dominates every activation), MXFP4 4.5e-5 / 0.99993 / 16, NVFP4 7.3e-5 / 0.99990 / 16, Q1_0
//! 6.3e-5 / 0.99992 / 16, Q2_0 1.4e-7 / 1.0 / 16 (as TQ2_0). Thresholds: every row's cosine ≥ 0.99, median ≥ 0.999, top-1 ≥ 13 of 16 (a
//! near-tied routing decision or argmax may flip under the rounding), for both the full
//! prefill and a prefill-then-decode run.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use moela::format::gguf::{write_gguf_file, GgufFile, GgufTensorSpec};
use moela::session::sequence_logits;
use moela::tensor::{quant, DType};
use moela::{Model, SessionParams};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kq")
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("moela-iquant-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// xorshift, deterministic.
struct Rng(u64);
impl Rng {
    fn byte(&mut self) -> u8 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as u8
    }
}

/// Sets a block's scale to `v` (an f16 for every type but MXFP4, whose E8M0 exponent is
/// set to the power of two nearest `v`, and NVFP4, whose four UE4M3 bytes are set to the one
/// nearest `2v`, ggml halving it).
fn set_scale(dtype: DType, b: &mut [u8], v: f32) {
    let h = half::f16::from_f32(v).to_bits();
    match dtype {
        DType::IQ1_M => {
            // Top nibbles of the four u16 scale words (bytes 48..56), lowest first.
            for k in 0..4 {
                let at = 48 + 2 * k + 1;
                b[at] = (b[at] & 0x0f) | ((((h >> (4 * k)) & 0xf) as u8) << 4);
            }
        }
        DType::MXFP4 => b[0] = (128.0 + v.log2().round()).clamp(2.0, 254.0) as u8,
        DType::NVFP4 => {
            let t = 2.0 * v.abs();
            let best = (1u8..0x7F)
                .min_by(|&x, &y| (ue4m3(x) - t).abs().total_cmp(&(ue4m3(y) - t).abs()))
                .unwrap();
            b[..4].fill(best);
        }
        DType::TQ1_0 => b[52..54].copy_from_slice(&h.to_le_bytes()),
        DType::TQ2_0 => b[64..66].copy_from_slice(&h.to_le_bytes()),
        _ => b[0..2].copy_from_slice(&h.to_le_bytes()),
    }
}

/// Unsigned E4M3 (exponent bias 7, bytes below 0x7F).
fn ue4m3(x: u8) -> f32 {
    let (e, m) = ((x >> 3) as i32, (x & 7) as f32);
    if e == 0 {
        m / 512.0
    } else {
        (1.0 + m / 8.0) * 2f32.powi(e - 7)
    }
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt() as f32
}

/// Random valid blocks of `dtype` for `n` elements with RMS about `target`, and their values.
fn random_weights(dtype: DType, n: usize, target: f32, rng: &mut Rng) -> (Vec<u8>, Vec<f32>) {
    let mut bytes: Vec<u8> = (0..dtype.bytes_for(n).unwrap())
        .map(|_| rng.byte())
        .collect();
    let bb = dtype.block_bytes();
    for b in bytes.chunks_mut(bb) {
        set_scale(dtype, b, 1.0);
    }
    let mut vals = vec![0f32; n];
    quant::dequantize_row(dtype, &bytes, &mut vals);
    let unit = rms(&vals);
    for b in bytes.chunks_mut(bb) {
        set_scale(dtype, b, target / unit);
    }
    quant::dequantize_row(dtype, &bytes, &mut vals);
    (bytes, vals)
}

/// Writes `dtype.gguf` (random blocks of `dtype` where the rows allow) and `ref.gguf` (their
/// values in F32) from the F32 file `src`; returns the two paths and how many tensors are
/// in `dtype`.
fn build(src: &Path, dtype: DType, dir: &Path) -> (PathBuf, PathBuf, usize) {
    let f = GgufFile::open(src).unwrap();
    let mut rng = Rng(0x1234_5678_9abc_def1 ^ dtype.ggml_type() as u64);
    let (mut q_data, mut f_data, mut q_specs, mut f_specs) = (vec![], vec![], vec![], vec![]);
    let mut count = 0;
    for t in &f.tensors {
        assert_eq!(t.dtype(), Some(DType::F32), "{}", t.name);
        let data = f.tensor_data(t);
        let vals: Vec<f32> = data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let keep = t.dims.len() < 2
            || t.name.contains("norm")
            || t.name.contains("gate_inp")
            || t.dims[0] as usize % dtype.block_size() != 0;
        let (qb, fv, ty) = if keep {
            (data.to_vec(), vals, DType::F32)
        } else {
            count += 1;
            let (qb, fv) = random_weights(dtype, vals.len(), rms(&vals), &mut rng);
            (qb, fv, dtype)
        };
        let spec = |ty: DType| GgufTensorSpec {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ggml_type: ty.ggml_type(),
        };
        q_specs.push(spec(ty));
        f_specs.push(spec(DType::F32));
        q_data.push(qb);
        f_data.push(fv.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
    }
    let q_path = dir.join(format!("{}.gguf", dtype.name()));
    let f_path = dir.join(format!("{}-ref.gguf", dtype.name()));
    for (path, specs, data) in [(&q_path, &q_specs, &q_data), (&f_path, &f_specs, &f_data)] {
        write_gguf_file(path, &f.metadata, specs, f.alignment, |i, w| {
            w.write_all(&data[i])
                .map_err(|e| moela::Error::io(path.as_path(), e))
        })
        .unwrap();
    }
    (q_path, f_path, count)
}

fn tokens() -> Vec<u32> {
    common::fixture_tokens("kq")
}

fn cosines(a: &[f32], b: &[f32], vocab: usize) -> Vec<f64> {
    let mut c: Vec<f64> = a
        .chunks(vocab)
        .zip(b.chunks(vocab))
        .map(|(x, y)| {
            let dot: f64 = x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum();
            let n = |v: &[f32]| v.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
            dot / (n(x) * n(y))
        })
        .collect();
    c.sort_by(|a, b| a.partial_cmp(b).unwrap());
    c
}

#[test]
fn low_bit_models_match_their_f32_values() {
    let dir = tmpdir("model");
    let f32_path = dir.join("kq-f32.gguf");
    moela::convert::convert_hf_to_gguf(&fixture(), &f32_path, DType::F32, &mut |_| {}).unwrap();
    let tokens = tokens();
    let n = tokens.len();
    for dtype in DType::LOAD_ONLY {
        let (q_path, f_path, count) = build(&f32_path, dtype, &dir);
        // 256-element types: every matrix but the 32-wide expert down projections.
        assert!(count >= 8, "{}: only {count} tensors", dtype.name());
        let q = Arc::new(Model::load(&q_path).unwrap());
        let r = Arc::new(Model::load(&f_path).unwrap());
        let vocab = q.config.vocab_size;
        let p = SessionParams::default();
        for prefill in [n, n / 2] {
            let got = sequence_logits(q.clone(), &tokens, prefill, &p).unwrap();
            let want = sequence_logits(r.clone(), &tokens, prefill, &p).unwrap();
            assert!(got.iter().all(|v| v.is_finite()), "{}", dtype.name());
            let c = cosines(&got, &want, vocab);
            let top1 = got
                .chunks(vocab)
                .zip(want.chunks(vocab))
                .filter(|(a, b)| moela::sampler::argmax(a) == moela::sampler::argmax(b))
                .count();
            println!(
                "{:>7} ({count} tensors) prefill {prefill}: 1 - median cosine {:.2e}, min {:.6}, top-1 {top1}/{n}",
                dtype.name(),
                1.0 - c[c.len() / 2],
                c[0]
            );
            assert!(
                c[0] >= 0.99 && c[c.len() / 2] >= 0.999 && top1 >= 13,
                "{}: cosine min {} median {} top-1 {top1}",
                dtype.name(),
                c[0],
                c[c.len() / 2]
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
