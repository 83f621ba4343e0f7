//! Offline expert pruning (`moela prune`, src/prune.rs, src/moe/prune.rs; docs/PRUNING.md).
//!
//! The exact check of the slicing: a pruned file's logits equal, bit for bit, those of the
//! original model run with the dropped experts masked out of routing
//! (`Session::set_expert_mask`), on the v2 (softmax, group-limited), v2_lite (softmax,
//! greedy) and v3 (sigmoid, noaux_tc, groups) fixtures converted to GGUF. The pruned files
//! have llama.cpp's layout (tools/check_gguf_layout.py --pruned, with gguf-py, when python3
//! has it; the expert count and shapes are also checked here in Rust).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use moela::format::gguf::{write_gguf_file, GgufFile, GgufValue};
use moela::moe::prune::{self as mp, Method};
use moela::moe::router::{ExpertMask, ExpertSkip};
use moela::tensor::DType;
use moela::{Model, Session, SessionParams};
mod common;
use common::{fixture, fixture_tokens as tokens};

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("moela-prune-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn convert(name: &str, dtype: DType, dir: &Path) -> PathBuf {
    let out = dir.join(format!("{name}-{}.gguf", dtype.name()));
    moela::convert::convert_hf_to_gguf(&fixture(name), &out, dtype, &mut |_| {}).unwrap();
    out
}

/// A copy of `src` with other routing groups (`expert_group_count`, `expert_group_used_count`).
fn regroup(src: &Path, out: &Path, n_group: u32, topk_group: u32) -> PathBuf {
    let g = GgufFile::open(src).unwrap();
    let mut meta = g.metadata.clone();
    for (k, v) in meta.iter_mut() {
        if k.ends_with(".expert_group_count") {
            *v = GgufValue::U32(n_group);
        } else if k.ends_with(".expert_group_used_count") {
            *v = GgufValue::U32(topk_group);
        }
    }
    let specs: Vec<_> = g
        .tensors
        .iter()
        .map(|t| moela::format::gguf::GgufTensorSpec {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ggml_type: t.ggml_type,
        })
        .collect();
    write_gguf_file(out, &meta, &specs, g.alignment, |i, w| {
        w.write_all(g.tensor_data(&g.tensors[i]))
            .map_err(|e| moela::Error::io(out, e))
    })
    .unwrap();
    out.to_path_buf()
}

/// Logits of every token (the first 5 as a batch, the rest one at a time).
fn logits(model: &Arc<Model>, toks: &[u32], mask: Option<ExpertMask>, top_k: usize) -> Vec<f32> {
    let p = SessionParams {
        n_ctx: toks.len(),
        expert_skip: ExpertSkip {
            min_weight: 0.0,
            top_k,
        },
        ..Default::default()
    };
    let mut s = Session::new(model.clone(), &p).unwrap();
    s.set_expert_mask(mask).unwrap();
    let mut rows = s.eval(&toks[..5], true).unwrap().to_vec();
    for &t in &toks[5..] {
        rows.extend_from_slice(s.eval(&[t], false).unwrap());
    }
    rows
}

fn moe_layers(model: &Model) -> Vec<usize> {
    let cfg = &model.config;
    (0..cfg.n_layers).filter(|&l| cfg.is_moe_layer(l)).collect()
}

/// Prunes `file` to `kept` (the same ids in every MoE layer, shifted by the layer so that
/// layers differ), checks the layout, and compares its logits with the masked original.
/// Returns the pruned file.
fn prune_and_compare(
    tag: &str,
    fixture_name: &str,
    file: &Path,
    kept: &[usize],
    used_after: usize,
    dir: &Path,
) -> PathBuf {
    let model = Arc::new(Model::load(file).unwrap());
    let plan: Vec<(usize, Vec<usize>)> = moe_layers(&model)
        .iter()
        .map(|&l| (l, kept.to_vec()))
        .collect();
    prune_plan_and_compare(tag, fixture_name, file, &plan, used_after, dir, true)
}

/// [`prune_and_compare`] with its own kept experts per layer; `layout` checks the header
/// against the input's and llama.cpp's layout (not for grouped-expert files).
fn prune_plan_and_compare(
    tag: &str,
    fixture_name: &str,
    file: &Path,
    plan: &[(usize, Vec<usize>)],
    used_after: usize,
    dir: &Path,
    layout: bool,
) -> PathBuf {
    let model = Arc::new(Model::load(file).unwrap());
    let ne = model.config.moe.n_routed_experts;
    let k = model.config.moe.experts_per_tok;
    let kept = &plan[0].1;
    let out = dir.join(format!("{tag}-pruned.gguf"));
    let summary = moela::prune::prune_gguf(file, &out, plan, &mut |_| {}).unwrap();
    assert_eq!(summary.experts_after, kept.len(), "{tag}");
    assert_eq!(summary.used_after, used_after, "{tag}");
    assert!(summary.file_bytes < summary.input_bytes, "{tag}");

    // Rust check of the header: expert_count, expert_used_count, sliced shapes.
    let g = GgufFile::open(&out).unwrap();
    let u = |k: &str| g.get(&format!("deepseek2.{k}")).unwrap().as_u64().unwrap() as usize;
    assert_eq!(u("expert_count"), kept.len(), "{tag}");
    assert_eq!(u("expert_used_count"), used_after, "{tag}");
    if layout {
        check_layout(tag, fixture_name, file, &g, ne, kept.len(), used_after);
    }

    // The exact check: pruned logits == the original's with the others masked out.
    let pruned = Arc::new(Model::load(&out).unwrap());
    let toks = tokens(fixture_name);
    let mut mask = ExpertMask::new();
    for (l, ids) in plan {
        mask.keep_only(*l, ne, ids);
    }
    let skip_k = if used_after < k { used_after } else { 0 };
    let want = logits(&model, &toks, Some(mask), skip_k);
    let got = logits(&pruned, &toks, None, 0);
    let max = want
        .iter()
        .zip(&got)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        want.iter()
            .zip(&got)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "{tag}: pruned logits differ from the masked original (max |diff| {max})"
    );
    // And masking changed something (the check is not vacuous).
    let full = logits(&model, &toks, None, 0);
    assert_ne!(full, want, "{tag}: masking changed nothing");
    out
}

/// The pruned header `g` against the input `file`: sliced tensors have `keep` experts, every
/// other tensor is byte-identical; then gguf-py's check.
fn check_layout(
    tag: &str,
    fixture_name: &str,
    file: &Path,
    g: &GgufFile,
    ne: usize,
    keep: usize,
    used_after: usize,
) {
    let orig = GgufFile::open(file).unwrap();
    for t in &g.tensors {
        let o = orig.tensor(&t.name).unwrap();
        let sliced = t.name.contains("_exps.")
            || t.name.ends_with("ffn_gate_inp.weight")
            || t.name.ends_with("exp_probs_b.bias");
        let mut want = o.dims.clone();
        if sliced {
            assert_eq!(*want.last().unwrap(), ne as u64, "{tag} {}", t.name);
            *want.last_mut().unwrap() = keep as u64;
        } else {
            assert_eq!(g.tensor_data(t), orig.tensor_data(o), "{tag} {}", t.name);
        }
        assert_eq!(t.dims, want, "{tag} {}", t.name);
        assert_eq!(t.ggml_type, o.ggml_type, "{tag} {}", t.name);
    }
    assert_eq!(g.tensors.len(), orig.tensors.len(), "{tag}");
    gguf_py_check(&g.path, fixture_name, keep, used_after);
}

/// tools/check_gguf_layout.py --pruned: llama.cpp's key types and tensor set with gguf-py.
/// Skipped (with a message) when python3 or its gguf package is missing.
fn gguf_py_check(file: &Path, fixture_name: &str, experts: usize, used: usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let probe = Command::new("python3").args(["-c", "import gguf"]).output();
    if !matches!(&probe, Ok(o) if o.status.success()) {
        eprintln!("SKIPPED gguf-py layout check: python3 with the gguf package is needed");
        return;
    }
    let out = Command::new("python3")
        .arg(root.join("tools/check_gguf_layout.py"))
        .arg("--pruned")
        .arg(file)
        .args(["--fixture", fixture_name])
        .args(["--experts", &experts.to_string()])
        .args(["--used", &used.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check_gguf_layout.py --pruned {}: {}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pruned_files_equal_masked_routing() {
    let dir = tmpdir("exact");
    // v2_lite: softmax, greedy, 8 experts, top-2; f32 and q8_0 (block rows copied as bytes).
    for dt in [DType::F32, DType::Q8_0] {
        let f = convert("v2_lite", dt, &dir);
        let tag = format!("v2_lite-{}", dt.name());
        prune_and_compare(&tag, "v2_lite", &f, &[1, 2, 4, 7], 2, &dir);
        prune_and_compare(
            &format!("{tag}-5"),
            "v2_lite",
            &f,
            &[0, 3, 4, 5, 6],
            2,
            &dir,
        );
    }
    // v2: softmax, group-limited (4 groups of 2, best 2 groups), top-3. Keeping one expert
    // per group leaves 2 reachable experts: the pruned file's top-k is clamped to 2, which
    // equals the original with --expert-top-k 2 and the mask (V2 without norm_topk_prob keeps
    // the weights).
    let f = convert("v2", DType::F32, &dir);
    prune_and_compare("v2", "v2", &f, &[1, 2, 5, 6], 2, &dir);
    // v3: sigmoid, noaux_tc, 4 groups of 2, best 2 groups, top-2. A group ranked by its two
    // best experts cannot keep fewer than 2, so the fixture's own grouping admits no pruning
    // (checked in `refuses_invalid_keeps`); regrouped to 2 groups of 4 (best 1) it keeps 2 of
    // each group, and with one group (no group limit) 5 of 8.
    let f = convert("v3", DType::F32, &dir);
    let g2 = regroup(&f, &dir.join("v3-g2.gguf"), 2, 1);
    prune_and_compare("v3-g2", "v3", &g2, &[0, 3, 5, 6], 2, &dir);
    let g1 = regroup(&f, &dir.join("v3-g1.gguf"), 1, 1);
    prune_and_compare("v3-g1", "v3", &g1, &[0, 2, 3, 6, 7], 2, &dir);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn refuses_invalid_keeps() {
    let dir = tmpdir("refuse");
    let f = convert("v3", DType::F32, &dir);
    let model = Model::load(&f).unwrap();
    let layers = moe_layers(&model);
    let plan = |ids: &[usize]| -> Vec<(usize, Vec<usize>)> {
        layers.iter().map(|&l| (l, ids.to_vec())).collect()
    };
    let out = dir.join("out.gguf");
    // One expert per noaux_tc group: refused.
    let e = moela::prune::prune_gguf(&f, &out, &plan(&[0, 2, 4, 6]), &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("routing group"), "{e}");
    // Unequal groups: refused.
    let e =
        moela::prune::prune_gguf(&f, &out, &plan(&[0, 1, 2, 3, 4, 6]), &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("routing group"), "{e}");
    // Unsorted or out-of-range ids, a missing layer.
    assert!(moela::prune::prune_gguf(&f, &out, &plan(&[1, 0]), &mut |_| {}).is_err());
    assert!(moela::prune::prune_gguf(&f, &out, &plan(&[0, 9]), &mut |_| {}).is_err());
    assert!(moela::prune::prune_gguf(&f, &out, &plan(&[0, 1])[..1], &mut |_| {}).is_err());
    assert!(!out.exists());
    // The keep-count rules.
    assert!(mp::check_keep(4, 8, 4, 2).is_err());
    assert!(mp::check_keep(6, 8, 4, 1).is_err());
    assert!(mp::check_keep(8, 8, 4, 2).is_ok());
    std::fs::remove_dir_all(&dir).ok();
}

/// Calibration records per-expert counts equal to `moela profile`'s, and REAP sums that are
/// positive exactly where an expert was used; the chosen experts are the best scores per group.
#[test]
fn calibration_statistics() {
    let dir = tmpdir("calib");
    let f = regroup(
        &convert("v3", DType::F32, &dir),
        &dir.join("v3-g2.gguf"),
        2,
        1,
    );
    let model = Arc::new(Model::load(&f).unwrap());
    let toks = tokens("v3");
    let stats = mp::calibrate(model.clone(), &toks, 0, 4).unwrap();
    let mut s = Session::new(model.clone(), &SessionParams::default()).unwrap();
    s.record_profile("v3");
    for c in toks.chunks(4) {
        s.eval(c, false).unwrap();
    }
    let profile = s.take_profile().unwrap();
    assert_eq!(stats.layers.len(), profile.layers.len());
    for (ls, lp) in stats.layers.iter().zip(&profile.layers) {
        assert_eq!(ls.layer, lp.layer);
        assert_eq!(ls.count, lp.counts);
        for (&c, &r) in ls.count.iter().zip(&ls.reap_sum) {
            assert_eq!(c > 0, r > 0.0, "{ls:?}");
        }
        // Every token chose top-k experts, whose normalised gates sum to 1: the REAP sums
        // weigh output norms by shares of one per token.
        assert_eq!(ls.count.iter().sum::<u64>(), 2 * toks.len() as u64);
    }
    for method in [Method::Reap, Method::Frequency] {
        let kept = mp::choose_kept(&stats, method, 4, 2);
        for ((l, ids), (l2, sc)) in kept.iter().zip(stats.scores(method)) {
            assert_eq!(*l, l2);
            assert_eq!(ids.len(), 4);
            // Two per group, each at least as good as the dropped ones of its group.
            for g in 0..2 {
                let grp: Vec<usize> = (4 * g..4 * g + 4).collect();
                let k: Vec<usize> = grp.iter().copied().filter(|e| ids.contains(e)).collect();
                assert_eq!(k.len(), 2);
                for &d in grp.iter().filter(|e| !ids.contains(e)) {
                    assert!(k.iter().all(|&e| sc[e] >= sc[d]));
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// moela's grouped-expert files (docs/FORMAT.md §8): each type group's stack is sliced, a
/// group that keeps nothing disappears (and with it the layer's key when one group is left).
#[test]
fn grouped_expert_files() {
    use moela::convert::{convert_with, expert_group_key, ConvertOptions};
    use moela::moe::profile::ExpertProfile;
    use moela::quant_policy::Base;
    let dir = tmpdir("grouped");
    let lo = dir.join("q4_0.gguf");
    moela::convert::convert_hf_to_gguf(&fixture("v3"), &lo, DType::Q4_0, &mut |_| {}).unwrap();
    let q4 = std::fs::metadata(&lo).unwrap().len();
    // Experts 0..3 hot; room for a few of them at Q8_0 (as tests/quant_mix.rs).
    let mut p = ExpertProfile::new("v3", 4, 8, &[1, 2, 3]);
    for l in 1..4 {
        for e in 0..4 {
            for _ in 0..(40 - 10 * e + l) {
                p.record(l, e);
            }
        }
    }
    let split = dir.join("split.gguf");
    let opts = ConvertOptions {
        base: Base::Uniform(DType::Q4_0),
        expert: None,
        profile: Some((p, q4 + 60_000)),
    };
    convert_with(&fixture("v3"), &split, &opts, &mut |_| {}).unwrap();
    // One routing group, so that any 4 experts may stay.
    let file = regroup(&split, &dir.join("split-g1.gguf"), 1, 1);
    let f = GgufFile::open(&file).unwrap();
    let groups: Vec<(usize, Vec<u32>)> = (1..4)
        .filter_map(|l| {
            let v = f.get(&expert_group_key(l))?.as_u32_array()?.into_owned();
            Some((l, v))
        })
        .collect();
    assert!(!groups.is_empty(), "the planner split no layer");
    // The first split layer drops every expert of its smallest group (so that group
    // disappears and the others are renumbered); the other layers keep a mix.
    let (first, g0) = &groups[0];
    let n_groups = *g0.iter().max().unwrap() + 1;
    let smallest = (0..n_groups)
        .min_by_key(|&x| g0.iter().filter(|&&y| y == x).count())
        .unwrap();
    let first_kept: Vec<usize> = (0..8).filter(|&e| g0[e] != smallest).take(4).collect();
    assert_eq!(first_kept.len(), 4);
    let plan: Vec<(usize, Vec<usize>)> = (1..4)
        .map(|l| {
            let ids = if l == *first {
                first_kept.clone()
            } else {
                vec![0, 1, 6, 7]
            };
            (l, ids)
        })
        .collect();
    eprintln!("expert groups {groups:?}, kept {plan:?}");
    let out = prune_plan_and_compare("grouped", "v3", &file, &plan, 2, &dir, false);
    let g = GgufFile::open(&out).unwrap();
    for (l, old) in &groups {
        let ids = &plan.iter().find(|(x, _)| x == l).unwrap().1;
        let mut kept_groups: Vec<u32> = ids.iter().map(|&e| old[e]).collect();
        kept_groups.sort_unstable();
        kept_groups.dedup();
        let n = kept_groups.len();
        match g.get(&expert_group_key(*l)) {
            None => assert_eq!(n, 1, "layer {l}"),
            Some(v) => {
                let v = v.as_u32_array().unwrap();
                assert_eq!(v.len(), 4, "layer {l}");
                assert_eq!(*v.iter().max().unwrap() as usize + 1, n, "layer {l}");
            }
        }
        for x in 1..n + 1 {
            let t = g.tensor(&format!("blk.{l}.ffn_up_exps.g{x}.weight"));
            assert_eq!(t.is_some(), x < n, "layer {l} group {x}");
        }
    }
    assert!(
        groups.iter().any(|(l, _)| l == first),
        "the first split layer was checked"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The command line on the default model: `--keep 75%` of 16 experts in 4 groups keeps 12,
/// the summary table is printed, the model's MTP block is left out (with a message), and keeps
/// that would leave a noaux_tc group with one expert are refused with a message.
#[test]
fn command_line_on_the_default_model() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = root.join("models/moela-tiny-v3.gguf");
    let dir = tmpdir("cli");
    let text = dir.join("calib.txt");
    std::fs::write(
        &text,
        "In the beginning God created the heaven and the earth. And the earth was without \
         form, and void; and darkness was upon the face of the deep.\n",
    )
    .unwrap();
    let out = dir.join("p.gguf");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_moela"))
            .args(["-t", "1", "prune", "-m"])
            .arg(&model)
            .arg("-f")
            .arg(&text)
            .arg("-o")
            .arg(&out)
            .args(args)
            .output()
            .unwrap()
    };
    for method in ["reap", "frequency"] {
        let o = run(&["--keep", "75%", "--method", method]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        assert!(err.contains("| layer | kept experts |"), "{err}");
        let g = GgufFile::open(&out).unwrap();
        assert_eq!(
            g.get("deepseek2.expert_count").unwrap().as_u64(),
            Some(12),
            "{err}"
        );
        let m = Model::load(&out).unwrap();
        assert_eq!(m.config.moe.n_routed_experts, 12);
        // The default model's MTP block (layer 6) is left out: its experts are not calibrated.
        assert!(
            err.contains("multi-token-prediction block (layer 6) is left out"),
            "{err}"
        );
        assert_eq!(g.get("deepseek2.block_count").unwrap().as_u64(), Some(6));
        assert!(g.get("deepseek2.nextn_predict_layers").is_none());
        assert!(g.tensors.iter().all(|t| !t.name.starts_with("blk.6.")));
        assert!(m.weights.mtp.is_none());
    }
    let o = run(&["--keep", "25%"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("per routing group"));
    let o = run(&["--keep", "75%", "--method", "random"]);
    assert!(!o.status.success());
    std::fs::remove_dir_all(&dir).ok();
}

/// `prune_model` on a Hugging Face directory (converted to a temporary GGUF, which is removed)
/// equals slicing the converted file by hand; on a GGUF with `--type` the pruned file is
/// requantized.
#[test]
fn hugging_face_input_and_type() {
    use moela::prune::{prune_model, Keep, PruneOptions};
    use moela::quant_policy::Base;
    let dir = tmpdir("hf");
    let toks = tokens("v2_lite");
    let opts = PruneOptions {
        keep: Keep::Percent(50.0),
        method: Method::Reap,
        dtype: Some(Base::Uniform(DType::F32)),
        n_ctx: 0,
        batch: 4,
    };
    let out = dir.join("hf-pruned.gguf");
    let r = prune_model(&fixture("v2_lite"), &out, &toks, &opts, &mut |_| {}).unwrap();
    assert_eq!(r.keep, 4);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("hf-pruned.gguf")]);
    // The same experts sliced from the converted file, and the masked model.
    let f = convert("v2_lite", DType::F32, &dir);
    let plan = r.kept.clone();
    let by_hand = dir.join("by-hand.gguf");
    moela::prune::prune_gguf(&f, &by_hand, &plan, &mut |_| {}).unwrap();
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&by_hand).unwrap()
    );
    prune_plan_and_compare("hf", "v2_lite", &f, &plan, 2, &dir, true);

    // A GGUF input with a type: pruned, then requantized; the same experts kept.
    let out = dir.join("q8.gguf");
    let opts = PruneOptions {
        dtype: Some(Base::Uniform(DType::Q8_0)),
        ..opts
    };
    let r2 = prune_model(&f, &out, &toks, &opts, &mut |_| {}).unwrap();
    assert_eq!(r2.kept, r.kept);
    let g = GgufFile::open(&out).unwrap();
    let t = g.tensor("blk.1.ffn_up_exps.weight").unwrap();
    assert_eq!(t.dtype(), Some(DType::Q8_0));
    assert_eq!(t.dims[2], 4);
    assert!(Model::load(&out).is_ok());
    assert!(!dir.join("q8.gguf.pruned.tmp").exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn keep_arguments() {
    use moela::prune::Keep;
    assert_eq!(Keep::parse(Some("50%"), None).unwrap(), Keep::Percent(50.0));
    assert_eq!(Keep::parse(Some("8"), None).unwrap(), Keep::Count(8));
    assert_eq!(
        Keep::parse(None, Some("1MB")).unwrap(),
        Keep::TargetSize(1_000_000)
    );
    for bad in [Some("0%"), Some("101%"), Some("x"), Some("-1")] {
        assert!(Keep::parse(bad, None).is_err(), "{bad:?}");
    }
    assert!(Keep::parse(None, None).is_err());
    assert!(Keep::parse(Some("8"), Some("1MB")).is_err());
}
