//! A GGUF that keeps DeepSeek-V3's multi-token-prediction (MTP) block, as llama.cpp's converter
//! writes it (`deepseek2.nextn_predict_layers` = 1, the block counted in `block_count`, its
//! tensors under `blk.{N}.` with the extra `nextn.*` ones), decodes exactly as the same file
//! without the block: the block is a draft head, never a trunk layer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use moela::format::gguf::{write_gguf_file, GgufFile, GgufTensorSpec, GgufValue};
use moela::session::sequence_logits;
use moela::tensor::DType;
use moela::{Model, SessionParams};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Copies `src` to `dst` with an MTP block appended: block N (= the trunk's layer count) is a
/// copy of the last trunk layer with its inputs perturbed, plus the nextn tensors of llama.cpp's
/// layout, and the metadata says so.
fn add_mtp_block(src: &Path, dst: &Path) {
    let f = GgufFile::open(src).unwrap();
    let arch = "deepseek2";
    let n = f
        .get(&format!("{arch}.block_count"))
        .and_then(|v| v.as_u32())
        .unwrap() as usize;
    let e = f
        .get(&format!("{arch}.embedding_length"))
        .and_then(|v| v.as_u32())
        .unwrap() as u64;
    let mut meta = f.metadata.clone();
    for (k, v) in meta.iter_mut() {
        if *k == format!("{arch}.block_count") {
            *v = GgufValue::U32(n as u32 + 1);
        }
    }
    meta.push((format!("{arch}.nextn_predict_layers"), GgufValue::U32(1)));
    let last = format!("blk.{}.", n - 1);
    // (spec, source bytes): every tensor, the last layer again as block n, then the nextn ones.
    let mut specs: Vec<GgufTensorSpec> = Vec::new();
    let mut data: Vec<Vec<u8>> = Vec::new();
    for t in &f.tensors {
        specs.push(GgufTensorSpec {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ggml_type: t.ggml_type,
        });
        data.push(f.tensor_data(t).to_vec());
    }
    for t in f.tensors.iter().filter(|t| t.name.starts_with(&last)) {
        specs.push(GgufTensorSpec {
            name: t.name.replacen(&last, &format!("blk.{n}."), 1),
            dims: t.dims.clone(),
            ggml_type: t.ggml_type,
        });
        data.push(f.tensor_data(t).to_vec());
    }
    let f32s = |v: Vec<f32>| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    for (name, dims, bytes) in [
        (
            "nextn.eh_proj.weight",
            vec![2 * e, e],
            f32s(
                (0..2 * e * e)
                    .map(|i| ((i % 7) as f32 - 3.0) * 0.01)
                    .collect(),
            ),
        ),
        ("nextn.enorm.weight", vec![e], f32s(vec![1.0; e as usize])),
        ("nextn.hnorm.weight", vec![e], f32s(vec![1.0; e as usize])),
        (
            "nextn.shared_head_norm.weight",
            vec![e],
            f32s(vec![1.0; e as usize]),
        ),
    ] {
        specs.push(GgufTensorSpec {
            name: format!("blk.{n}.{name}"),
            dims,
            ggml_type: DType::F32.ggml_type(),
        });
        data.push(bytes);
    }
    write_gguf_file(dst, &meta, &specs, f.alignment, |i, w| {
        w.write_all(&data[i])
            .map_err(|e| moela::Error::io(Path::new("mtp"), e))
    })
    .unwrap();
}

#[test]
fn mtp_block_is_not_run_as_a_trunk_layer() {
    let dir = std::env::temp_dir().join(format!("moela-mtp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["v3", "v3_dense2"] {
        let plain = dir.join(format!("{name}.gguf"));
        moela::convert::convert_hf_to_gguf(&fixture(name), &plain, DType::F32, &mut |_| {})
            .unwrap();
        let mtp = dir.join(format!("{name}-mtp.gguf"));
        add_mtp_block(&plain, &mtp);

        let a = Arc::new(Model::load(&plain).unwrap());
        let b = Arc::new(Model::load(&mtp).unwrap());
        assert_eq!(a.config.n_layers, b.config.n_layers, "{name}: trunk layers");
        let tokens: Vec<u32> = (0..12u32)
            .map(|i| (i * 37 + 5) % a.config.vocab_size as u32)
            .collect();
        let p = SessionParams::default();
        for prefill in [tokens.len(), 5] {
            let la = sequence_logits(a.clone(), &tokens, prefill, &p).unwrap();
            let lb = sequence_logits(b.clone(), &tokens, prefill, &p).unwrap();
            assert!(
                la == lb,
                "{name} (prefill {prefill}): logits differ with the MTP block present"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A file whose nextn count leaves no trunk layer is an error naming the key.
#[test]
fn nextn_count_must_leave_trunk_layers() {
    let dir = std::env::temp_dir().join(format!("moela-mtp-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = dir.join("v3.gguf");
    moela::convert::convert_hf_to_gguf(&fixture("v3"), &plain, DType::F32, &mut |_| {}).unwrap();
    let f = GgufFile::open(&plain).unwrap();
    let mut meta = f.metadata.clone();
    meta.push((
        "deepseek2.nextn_predict_layers".to_string(),
        GgufValue::U32(4),
    ));
    let specs: Vec<GgufTensorSpec> = f
        .tensors
        .iter()
        .map(|t| GgufTensorSpec {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ggml_type: t.ggml_type,
        })
        .collect();
    let bad = dir.join("bad.gguf");
    write_gguf_file(&bad, &meta, &specs, f.alignment, |i, w| {
        w.write_all(f.tensor_data(&f.tensors[i]))
            .map_err(|e| moela::Error::io(Path::new("bad"), e))
    })
    .unwrap();
    let err = Model::load(&bad).err().expect("must not load").to_string();
    assert!(err.contains("nextn_predict_layers"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
