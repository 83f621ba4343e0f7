//! `moela convert IN.gguf OUT.gguf` (src/requant.rs) on the 256-wide `kq` fixture, whose
//! matrices take the K-quants.
//!
//! - From an f32 GGUF the requantizer must write exactly the bytes converting the HF directory
//!   writes (same policy, same quantizers on the same f32 values, same metadata and layout) for
//!   uniform types and mixes; requantizing a file to its own type copies it unchanged.
//! - From a Q8_0 file (already rounded once) to Q4_K: every tensor's relative RMS error against
//!   the f32 weights at most 1.1 × that of the direct HF → Q4_K conversion + 0.005 (Q8_0 adds
//!   ~0.004 relative RMS in quadrature to Q4_K's ~0.07, which moves it by well under 0.001), and
//!   1-D tensors exact.
//! - Bad inputs are clear errors: moela's grouped-expert files, types moela cannot read,
//!   `--expert-profile`, an output that is the input.

use std::path::{Path, PathBuf};

use moela::convert::{convert_with, ConvertOptions};
use moela::format::gguf::{write_gguf_file, GgufFile, GgufTensorSpec, GgufValue};
use moela::quant_policy::Base;
use moela::tensor::{quant, DType};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kq")
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("moela-requant-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn opts(t: &str) -> ConvertOptions {
    ConvertOptions {
        base: Base::parse(t).unwrap(),
        expert: None,
        profile: None,
    }
}

fn convert(input: &Path, output: &Path, t: &str) -> moela::Result<moela::convert::Summary> {
    convert_with(input, output, &opts(t), &mut |_| {})
}

/// Every tensor of `path` as f32, by name.
fn tensors_f32(path: &Path) -> Vec<(String, DType, Vec<f32>)> {
    let g = GgufFile::open(path).unwrap();
    g.tensors
        .iter()
        .map(|t| {
            let d = t.dtype().unwrap();
            let mut v = vec![0.0f32; t.n_elements() as usize];
            let cols = t.dims[0] as usize;
            let rb = d.bytes_for(cols).unwrap();
            for (o, b) in v.chunks_mut(cols).zip(g.tensor_data(t).chunks(rb)) {
                quant::dequantize_row(d, b, o);
            }
            (t.name.clone(), d, v)
        })
        .collect()
}

fn rel_rms(a: &[f32], reference: &[f32]) -> f64 {
    let e: f64 = a
        .iter()
        .zip(reference)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let n: f64 = reference.iter().map(|y| (*y as f64).powi(2)).sum();
    (e / n.max(1e-30)).sqrt()
}

#[test]
fn requantized_f32_gguf_equals_direct_conversion() {
    let dir = tmpdir("same");
    // The file name becomes general.name: both paths must see the same one.
    let hf = dir.join("kq");
    std::fs::create_dir_all(&hf).unwrap();
    for f in std::fs::read_dir(fixture()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, hf.join(f.file_name().unwrap())).unwrap();
    }
    let f32_file = dir.join("kq-f32.gguf");
    convert(&hf, &f32_file, "f32").unwrap();
    for t in ["q8_0", "q4_0", "q4_k", "q6_k", "q4_k_m", "q5_k_m", "f16"] {
        let direct = dir.join(format!("direct-{t}.gguf"));
        let re = dir.join(format!("re-{t}.gguf"));
        let a = convert(&hf, &direct, t).unwrap();
        let mut lines = Vec::new();
        let b = convert_with(&f32_file, &re, &opts(t), &mut |l| lines.push(l.to_string())).unwrap();
        let (x, y) = (std::fs::read(&direct).unwrap(), std::fs::read(&re).unwrap());
        assert!(
            x == y,
            "{t}: requantized file differs from the direct conversion"
        );
        assert_eq!(a.rows, b.rows, "{t}: summaries differ");
        assert_eq!(a.file_bytes, b.file_bytes);
        assert_eq!(lines.len(), GgufFile::open(&re).unwrap().tensors.len());
        // The same type again: every tensor copied, the file unchanged.
        let again = dir.join(format!("again-{t}.gguf"));
        if Base::parse(t).is_ok_and(|b| matches!(b, Base::Uniform(_))) {
            let mut lines = Vec::new();
            convert_with(&re, &again, &opts(t), &mut |l| lines.push(l.to_string())).unwrap();
            assert!(lines.iter().all(|l| l.ends_with("copied")), "{lines:?}");
            assert!(
                std::fs::read(&again).unwrap() == y,
                "{t}: not copied unchanged"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn requantized_q8_0_gguf_is_within_the_type_error() {
    let dir = tmpdir("q8");
    let (f32_file, q8, direct, re) = (
        dir.join("f32.gguf"),
        dir.join("q8_0.gguf"),
        dir.join("direct-q4_k.gguf"),
        dir.join("re-q4_k.gguf"),
    );
    convert(&fixture(), &f32_file, "f32").unwrap();
    convert(&fixture(), &q8, "q8_0").unwrap();
    convert(&fixture(), &direct, "q4_k").unwrap();
    convert(&q8, &re, "q4_k").unwrap();
    let (orig, a, b) = (
        tensors_f32(&f32_file),
        tensors_f32(&direct),
        tensors_f32(&re),
    );
    assert_eq!(orig.len(), b.len());
    let mut k = 0;
    for ((o, a), b) in orig.iter().zip(&a).zip(&b) {
        assert_eq!(
            (&o.0, a.1),
            (&b.0, b.1),
            "names and types as the direct file"
        );
        if b.1 == DType::F32 {
            assert!(o.2 == b.2, "{}: 1-D tensors must be exact", o.0);
            continue;
        }
        let (ea, eb) = (rel_rms(&a.2, &o.2), rel_rms(&b.2, &o.2));
        assert!(
            eb <= 1.1 * ea + 0.005,
            "{} ({}): rel RMS {eb:.4} from Q8_0 vs {ea:.4} direct",
            o.0,
            b.1.name()
        );
        k += (b.1 == DType::Q4_K) as usize;
    }
    assert!(
        k >= 4,
        "only {k} Q4_K tensors: the fixture no longer tests the K-quants"
    );
    // Metadata carried over (file type aside).
    let (gq, gr) = (GgufFile::open(&q8).unwrap(), GgufFile::open(&re).unwrap());
    assert_eq!(gq.metadata.len(), gr.metadata.len());
    for ((k1, v1), (k2, v2)) in gq.metadata.iter().zip(&gr.metadata) {
        assert_eq!(k1, k2);
        if k1 == "general.file_type" {
            assert_eq!(v2, &GgufValue::U32(14)); // MOSTLY_Q4_K_S
        } else {
            assert_eq!(v1, v2, "{k1}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unsupported_inputs_are_clear_errors() {
    let dir = tmpdir("bad");
    let write = |name: &str, meta: Vec<(String, GgufValue)>, ggml_type: u32, bytes: usize| {
        let p = dir.join(name);
        let spec = GgufTensorSpec {
            name: "blk.0.ffn_up_exps.weight".into(),
            dims: vec![32, 2],
            ggml_type,
        };
        write_gguf_file(&p, &meta, &[spec], 32, |_, w| {
            w.write_all(&vec![0u8; bytes])
                .map_err(|e| moela::Error::io("x", e))
        })
        .unwrap();
        p
    };
    let base = || {
        vec![
            (
                "general.architecture".to_string(),
                GgufValue::String("deepseek2".into()),
            ),
            ("deepseek2.block_count".to_string(), GgufValue::U32(1)),
        ]
    };
    let err = |p: &Path, o: &ConvertOptions| {
        convert_with(p, &dir.join("out.gguf"), o, &mut |_| {})
            .unwrap_err()
            .to_string()
    };
    // A plain file converts.
    let ok = write("ok.gguf", base(), 0, 256);
    convert(&ok, &dir.join("out.gguf"), "q8_0").unwrap();

    let mut m = base();
    m.push((
        "moela.blk.0.expert_group".into(),
        GgufValue::Array(moela::format::gguf::GgufArray::U32(vec![0, 1])),
    ));
    let e = err(&write("grouped.gguf", m, 0, 256), &opts("q8_0"));
    assert!(e.contains("grouped-expert"), "{e}");

    // Q8_1 (ggml type 9, 40 bytes per 32 values): a layout GGUF knows, that moela cannot
    // decode (ggml uses it for activations; no weight file holds it).
    let e = err(&write("q8_1.gguf", base(), 9, 80), &opts("q8_0"));
    assert!(
        e.contains("cannot read") && e.contains("blk.0.ffn_up_exps"),
        "{e}"
    );

    let e = err(&write("noarch.gguf", vec![], 0, 256), &opts("q8_0"));
    assert!(e.contains("general.architecture"), "{e}");

    let mut o = opts("q8_0");
    o.profile = Some((
        moela::moe::profile::ExpertProfile::new("x", 1, 2, &[0]),
        1 << 20,
    ));
    assert!(err(&ok, &o).contains("--expert-profile"));

    let e = convert_with(&ok, &ok, &opts("q8_0"), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("overwrite"), "{e}");
    assert!(GgufFile::open(&ok).is_ok(), "the input must be untouched");
    let _ = std::fs::remove_dir_all(&dir);
}
