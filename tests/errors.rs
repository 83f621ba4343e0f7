//! Every kind of bad input gives an `Err` whose message names the file and the tensor or
//! key, never a panic.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use moela::{Error, Model, Session, SessionParams};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("moela-errors-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A copy of a fixture directory whose config.json is edited by `edit`.
fn with_config(name: &str, tag: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let src = fixture(name);
    let dst = tmpdir(tag);
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dst.join("config.json")).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(
        dst.join("config.json"),
        serde_json::to_string(&cfg).unwrap(),
    )
    .unwrap();
    dst
}

/// Rewrites model.safetensors of `dir`, keeping tensors for which `keep` returns Some(new
/// dtype, new bytes).
fn rewrite_safetensors(
    dir: &Path,
    mut keep: impl FnMut(&str, &str, &[u8]) -> Option<(String, Vec<u8>)>,
) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut out_header = serde_json::Map::new();
    let mut out_data = Vec::new();
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let offs = info["data_offsets"].as_array().unwrap();
        let (b, e) = (
            offs[0].as_u64().unwrap() as usize,
            offs[1].as_u64().unwrap() as usize,
        );
        if let Some((dtype, raw)) = keep(&name, info["dtype"].as_str().unwrap(), &data[b..e]) {
            let start = out_data.len();
            out_data.extend_from_slice(&raw);
            out_header.insert(
                name,
                serde_json::json!({"dtype": dtype, "shape": info["shape"], "data_offsets": [start, out_data.len()]}),
            );
        }
    }
    let h = serde_json::to_vec(&out_header).unwrap();
    let mut file = (h.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&h);
    file.extend_from_slice(&out_data);
    std::fs::write(path, file).unwrap();
}

fn load_err(path: &Path) -> String {
    match Model::load(path) {
        Ok(_) => panic!("{} loaded but should not", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_file_is_io_error() {
    let e = load_err(Path::new("/nonexistent/model.gguf"));
    assert!(e.contains("/nonexistent/model.gguf"), "{e}");
}

#[test]
fn unknown_architecture_is_unsupported() {
    let d = with_config("v2_lite", "arch", |c| {
        c["model_type"] = "llama".into();
        c["architectures"] = serde_json::json!(["LlamaForCausalLM"]);
    });
    let e = load_err(&d);
    assert!(
        e.contains("config.json") && e.contains("llama") && e.contains("not a DeepSeek"),
        "{e}"
    );
}

#[test]
fn missing_config_key_is_named() {
    let d = with_config("v2_lite", "key", |c| {
        c.as_object_mut().unwrap().remove("kv_lora_rank");
    });
    let e = load_err(&d);
    assert!(
        e.contains("config.json") && e.contains("'kv_lora_rank'") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn invalid_json_is_format_error() {
    let d = with_config("v2_lite", "json", |_| {});
    std::fs::write(d.join("config.json"), "{ not json").unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("config.json") && e.contains("invalid JSON"),
        "{e}"
    );
}

#[test]
fn inconsistent_config_is_rejected() {
    let d = with_config("v2_lite", "topk", |c| c["num_experts_per_tok"] = 99.into());
    let e = load_err(&d);
    assert!(e.contains("num_experts_per_tok 99"), "{e}");
}

#[test]
fn wrong_shape_names_tensor() {
    // A config that disagrees with the weights: every projection has the wrong shape.
    let d = with_config("v2_lite", "shape", |c| c["kv_lora_rank"] = 64.into());
    let e = load_err(&d);
    assert!(
        e.contains("model.layers.0.self_attn.")
            && e.contains("has shape")
            && e.contains("expected"),
        "{e}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let d = with_config("v2_lite", "missing", |_| {});
    rewrite_safetensors(&d, |name, dtype, raw| {
        (name != "model.layers.1.self_attn.o_proj.weight")
            .then(|| (dtype.to_string(), raw.to_vec()))
    });
    let e = load_err(&d);
    assert!(
        e.contains("missing tensor 'model.layers.1.self_attn.o_proj.weight'"),
        "{e}"
    );
    assert!(e.contains(&d.display().to_string()), "{e}");
}

#[test]
fn unsupported_type_names_tensor_and_type() {
    let d = with_config("v2_lite", "dtype", |_| {});
    rewrite_safetensors(&d, |name, dtype, raw| {
        if name == "model.layers.0.mlp.up_proj.weight" {
            // Same byte count, as 32-bit integers.
            Some(("I32".into(), raw.to_vec()))
        } else {
            Some((dtype.to_string(), raw.to_vec()))
        }
    });
    let e = load_err(&d);
    assert!(
        e.contains("model.layers.0.mlp.up_proj.weight")
            && e.contains("I32")
            && e.contains("not support"),
        "{e}"
    );
}

#[test]
fn truncated_safetensors_is_format_error() {
    let d = with_config("v2_lite", "trunc", |_| {});
    let p = d.join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    for cut in [0, 4, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let e = load_err(&d);
        assert!(e.contains("model.safetensors"), "cut {cut}: {e}");
    }
}

#[test]
fn truncated_gguf_is_format_error() {
    let d = tmpdir("gguf");
    let p = d.join("m.gguf");
    moela::convert::convert_hf_to_gguf(
        &fixture("v2_lite"),
        &p,
        moela::tensor::DType::F16,
        &mut |_| {},
    )
    .unwrap();
    let bytes = std::fs::read(&p).unwrap();
    // Every prefix up to the first kilobyte lands inside the header; later ones cut tensor data.
    let cuts: Vec<usize> = (0..1024)
        .step_by(7)
        .chain([bytes.len() / 2, bytes.len() - 1])
        .collect();
    for cut in cuts {
        let q = d.join("cut.gguf");
        std::fs::write(&q, &bytes[..cut]).unwrap();
        let e = load_err(&q);
        assert!(
            e.contains("cut.gguf") && e.contains("malformed"),
            "cut {cut}: {e}"
        );
    }
}

#[test]
fn gguf_of_another_architecture_is_unsupported() {
    use moela::format::gguf::{write_gguf_file, GgufValue};
    let d = tmpdir("arch-gguf");
    let p = d.join("llama.gguf");
    let meta = vec![(
        "general.architecture".to_string(),
        GgufValue::String("llama".into()),
    )];
    write_gguf_file(&p, &meta, &[], 32, |_, _| Ok(())).unwrap();
    let e = load_err(&p);
    assert!(
        e.contains("llama.gguf") && e.contains("\"llama\"") && e.contains("deepseek2"),
        "{e}"
    );
}

#[test]
fn out_of_range_token_and_context_overflow() {
    let model = Arc::new(Model::load(fixture("v2_lite")).unwrap());
    let vocab = model.config.vocab_size as u32;
    let mut s = Session::new(
        model,
        &SessionParams {
            n_ctx: 4,
            ..Default::default()
        },
    )
    .unwrap();
    match s.eval(&[1, vocab], false) {
        Err(Error::TokenOutOfRange { token, .. }) => assert_eq!(token, vocab),
        other => panic!("expected TokenOutOfRange, got {:?}", other.map(|_| ())),
    }
    assert_eq!(
        s.position(),
        0,
        "a rejected batch leaves the session as it was"
    );
    s.eval(&[1, 2, 3], false).unwrap();
    let e = s.eval(&[4, 5], false).unwrap_err();
    assert!(
        matches!(
            e,
            Error::ContextFull {
                needed: 5,
                n_ctx: 4,
                n_ctx_train: 128
            }
        ),
        "{e}"
    );
    // The message says how to make the context larger, and how large it may be.
    let msg = e.to_string();
    for want in [
        "context full: 5 positions needed, the context holds 4",
        "-c/--ctx",
        "moela_session_params.n_ctx",
        "trained context length of 128",
    ] {
        assert!(msg.contains(want), "{msg} lacks {want}");
    }
    s.eval(&[4], false).unwrap();
    s.reset();
    s.eval(&[1, 2, 3, 4], false).unwrap();
    assert!(s.eval(&[], false).is_err());
}

#[test]
fn unknown_gguf_tensor_type_names_tensor_and_type() {
    use moela::format::gguf::{write_gguf_file, GgufFile, GgufTensorSpec};
    let d = tmpdir("qtype");
    let src = d.join("f32.gguf");
    moela::convert::convert_hf_to_gguf(
        &fixture("v2_lite"),
        &src,
        moela::tensor::DType::F32,
        &mut |_| {},
    )
    .unwrap();
    let f = GgufFile::open(&src).unwrap();
    // Re-write the file with one matrix declared as Q8_1 (ggml type 9: 32 elements in 40 bytes,
    // a ggml activation type no weight file holds, which moela does not read).
    let target = "blk.0.ffn_up.weight";
    let specs: Vec<GgufTensorSpec> = f
        .tensors
        .iter()
        .map(|t| GgufTensorSpec {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ggml_type: if t.name == target { 9 } else { t.ggml_type },
        })
        .collect();
    let out = d.join("q8_1.gguf");
    write_gguf_file(&out, &f.metadata, &specs, 32, |i, w| {
        let t = &f.tensors[i];
        let bytes = if t.name == target {
            vec![0u8; (t.n_elements() / 32 * 40) as usize]
        } else {
            f.tensor_data(t).to_vec()
        };
        w.write_all(&bytes)
            .map_err(|e| Error::InvalidArg(e.to_string()))
    })
    .unwrap();
    let e = load_err(&out);
    assert!(
        e.contains("q8_1.gguf") && e.contains(target) && e.contains("Q8_1"),
        "{e}"
    );
}

#[test]
fn gguf_missing_tensor_and_missing_key() {
    use moela::format::gguf::{write_gguf_file, GgufFile, GgufTensorSpec};
    let d = tmpdir("gguf-missing");
    let src = d.join("f32.gguf");
    moela::convert::convert_hf_to_gguf(
        &fixture("v3"),
        &src,
        moela::tensor::DType::F32,
        &mut |_| {},
    )
    .unwrap();
    let f = GgufFile::open(&src).unwrap();
    let rewrite = |path: &Path, drop_tensor: &str, drop_key: &str| {
        let keep: Vec<usize> = (0..f.tensors.len())
            .filter(|&i| f.tensors[i].name != drop_tensor)
            .collect();
        let specs: Vec<GgufTensorSpec> = keep
            .iter()
            .map(|&i| GgufTensorSpec {
                name: f.tensors[i].name.clone(),
                dims: f.tensors[i].dims.clone(),
                ggml_type: f.tensors[i].ggml_type,
            })
            .collect();
        let meta: Vec<_> = f
            .metadata
            .iter()
            .filter(|(k, _)| k != drop_key)
            .cloned()
            .collect();
        write_gguf_file(path, &meta, &specs, 32, |j, w| {
            w.write_all(f.tensor_data(&f.tensors[keep[j]]))
                .map_err(|e| Error::InvalidArg(e.to_string()))
        })
        .unwrap();
    };
    let p = d.join("no-tensor.gguf");
    rewrite(&p, "blk.2.ffn_down_exps.weight", "");
    let e = load_err(&p);
    assert!(
        e.contains("no-tensor.gguf") && e.contains("missing tensor 'blk.2.ffn_down_exps.weight'"),
        "{e}"
    );
    let p = d.join("no-key.gguf");
    rewrite(&p, "", "deepseek2.attention.kv_lora_rank");
    let e = load_err(&p);
    assert!(
        e.contains("no-key.gguf")
            && e.contains("deepseek2.attention.kv_lora_rank")
            && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn prompt_longer_than_the_context_is_rejected_before_any_work() {
    let model = Arc::new(Model::load(fixture("v2_lite")).unwrap());
    let mut s = Session::new(
        model,
        &SessionParams {
            n_ctx: 8,
            ..Default::default()
        },
    )
    .unwrap();
    let first = s.eval(&[1, 2], false).unwrap().to_vec();
    // A huge batch: refused at once (no forward pass over a million tokens), session intact.
    let huge = vec![1u32; 1 << 20];
    let t0 = std::time::Instant::now();
    let e = s.eval(&huge, true).unwrap_err();
    assert!(t0.elapsed().as_millis() < 500, "{:?}", t0.elapsed());
    assert!(
        matches!(e, Error::ContextFull { needed, n_ctx: 8, .. } if needed == 2 + (1 << 20)),
        "{e}"
    );
    assert_eq!(s.position(), 2);
    assert_eq!(s.logits().unwrap(), &first[..]);
    // Fill exactly, overflow by one, reset, reuse.
    s.eval(&[3; 6], false).unwrap();
    assert!(matches!(
        s.eval(&[4], false),
        Err(Error::ContextFull {
            needed: 9,
            n_ctx: 8,
            ..
        })
    ));
    s.reset();
    assert_eq!(s.eval(&[1, 2], false).unwrap(), &first[..]);
}

#[test]
fn special_files_and_directories_without_a_model_say_what_a_model_is() {
    let e = load_err(Path::new("/dev/null"));
    assert_eq!(
        e,
        "invalid argument: /dev/null: is a character device, not a regular file or a directory; a model is a .gguf file or a Hugging Face model directory (with config.json)"
    );
    let d = tmpdir("empty-dir");
    let e = load_err(&d);
    assert!(
        e.contains("this directory holds neither config.json nor a .gguf file"),
        "{e}"
    );
    assert!(!e.contains("config.json: No such file"), "{e}");
    std::fs::copy(fixture("v3/llamacpp-f16.gguf"), d.join("model-f16.gguf")).unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("has no config.json") && e.contains("model-f16.gguf: pass that file instead"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// The CLI's exit status and stderr for `args` (with `stdin` as its input).
fn cli(args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_moela"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The CLI may exit before it reads its input (a refused setting): ignore a closed pipe.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_refuses_bad_settings_with_their_range() {
    let gguf = fixture("v3/llamacpp-f16.gguf");
    let m = gguf.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["-t", "100000", "run", "-m", m, "--tokens", "1"], "error: -t/--threads is 100000: must be 1 ..= 512"),
        (&["-t", "0", "run", "-m", m, "--tokens", "1"], "error: -t/--threads is 0: must be 1 ..= 512"),
        (&["-t", "-1", "run", "-m", m, "--tokens", "1"], "error: -t/--threads is -1: must be 1 ..= 512"),
        (&["run", "-m", m, "--tokens", "1", "--temp", "-1"], "--temp is -1: must be finite and >= 0 (0 = greedy)"),
        (&["run", "-m", m, "--tokens", "1", "--temp", "NaN"], "--temp is NaN: must be finite and >= 0 (0 = greedy)"),
        (&["run", "-m", m, "--tokens", "1", "--temp", "inf"], "--temp is inf: must be finite and >= 0 (0 = greedy)"),
        (&["run", "-m", m, "--tokens", "1", "--top-p", "1.5"], "--top-p is 1.5: must be in (0, 1] (1 = off)"),
        (&["run", "-m", m, "--tokens", "1", "--top-p", "-0.5"], "--top-p is -0.5: must be in (0, 1] (1 = off)"),
        (&["run", "-m", m, "--tokens", "1", "--min-p", "1.5"], "--min-p is 1.5: must be in [0, 1] (0 = off)"),
        (&["run", "-m", m, "--tokens", "1", "--repeat-penalty", "0"], "--repeat-penalty is 0: must be finite and > 0 (1 = off)"),
        (&["run", "-m", m, "--tokens", "1", "--repeat-penalty", "-2"], "--repeat-penalty is -2: must be finite and > 0 (1 = off)"),
        (&["run", "-m", m, "--tokens", "1", "--top-k", "-3"], "--top-k is -3: must be >= 0 (0 = all tokens)"),
        (&["chat", "-m", m, "--temp", "-0.5"], "--temp is -0.5: must be finite and >= 0 (0 = greedy)"),
        (&["run", "-m", m, "--tokens", "1", "-c", "100000"], "-c/--ctx is 100000: must be at most 640, the context length"),
        (&["run", "-m", m, "--tokens", "1,2,3,4,5,6", "-c", "4"], "context full: 6 positions needed, the context holds 4; a larger context is set with -c/--ctx (CLI)"),
        (&["bench", "-m", m, "-r", "0"], "invalid value '0' for '--repetitions <REPETITIONS>': must be a whole number >= 1"),
        (&["run", "-m", "/dev/null", "--tokens", "1"], "/dev/null: is a character device, not a regular file or a directory"),
    ];
    for (args, want) in cases {
        let t = std::time::Instant::now();
        let (ok, _, err) = cli(args, "");
        assert!(!ok, "{args:?} succeeded");
        assert!(
            err.contains(want),
            "{args:?}: stderr {err:?} lacks {want:?}"
        );
        assert!(!err.contains("unexpected argument"), "{args:?}: {err}");
        assert!(
            t.elapsed().as_secs() < 30,
            "{args:?} took {:?}",
            t.elapsed()
        );
    }
    // The edges of the ranges are accepted.
    let (ok, _, err) = cli(
        &[
            "-t", "1", "run", "-m", m, "--tokens", "1", "-n", "2", "--temp", "0", "--top-p", "1",
            "--min-p", "0", "--top-k", "0", "-c", "640",
        ],
        "",
    );
    assert!(ok, "{err}");
}

#[test]
fn chat_exits_on_slash_exit_and_ends_the_line_on_eof() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/moela-tiny-v3.gguf");
    if !model.is_file() {
        return;
    }
    let m = model.to_str().unwrap();
    for quit in ["/exit\n", "/quit\n", "  /exit  \n"] {
        let (ok, out, err) = cli(&["chat", "-m", m, "-n", "4", "--temp", "0"], quit);
        assert!(ok, "{err}");
        // Nothing went to the model: no answer, no speed report.
        assert!(out.is_empty(), "{quit:?}: {out:?}");
        assert!(!err.contains("prefill"), "{quit:?}: {err}");
    }
    // End of input (Ctrl-D) after one turn: the "> " prompt line is ended.
    let (ok, out, err) = cli(&["chat", "-m", m, "-n", "4", "--temp", "0"], "hello\n");
    assert!(ok, "{err}");
    assert!(!out.is_empty());
    assert!(err.ends_with("> \n"), "{err:?}");
}
