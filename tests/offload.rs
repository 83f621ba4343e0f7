//! Expert offloading never changes results: on every fixture (GGUF and safetensors, V2 and
//! V3) and the default model, the logits under an expert budget of 0 experts (streaming
//! through one slot), 1 expert, half and all of the routed-expert bytes are bit-identical to
//! those of the unbudgeted model, with and without prefetching, in a batched prefill followed
//! by single-token decode. The cache's counters are checked for consistency on the way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use moela::model::weights::Ffn;
use moela::model::ModelParams;
use moela::moe::experts::{ExpertBudget, ExpertParams};
use moela::moe::profile::ExpertProfile;
use moela::session::sequence_logits;
use moela::{Model, SessionParams};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tokens(dir: &Path) -> (Vec<u32>, usize) {
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokens.json")).unwrap()).unwrap();
    let toks = t["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    (toks, t["prefill"].as_u64().unwrap() as usize)
}

fn with(budget: ExpertBudget, prefetch: bool, profile: Option<ExpertProfile>) -> ModelParams {
    ModelParams {
        experts: ExpertParams {
            budget,
            prefetch,
            profile,
            io_limit: None,
            // The slot path; the page-cache path has its own test.
            page_cache: false,
        },
        ..Default::default()
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Checks every budget against the unbudgeted model on `path`.
fn check(path: &Path, toks: &[u32], prefill: usize) {
    let params = SessionParams::default();
    let plain = Arc::new(Model::load(path).unwrap());
    assert!(plain.experts.is_none());
    let want = bits(&sequence_logits(plain.clone(), toks, prefill, &params).unwrap());

    let probe = Model::load_with(path, &with(ExpertBudget::Bytes(0), true, None)).unwrap();
    let st = probe.expert_stats();
    assert!(st.enabled && st.slot_bytes > 0 && st.n_slots == 1);
    let routed = st.routed_expert_bytes;
    assert_eq!(routed, plain.expert_stats().routed_expert_bytes);
    let one = st.slot_bytes;
    let c = &plain.config;
    let consecutive_moe = (1..c.n_layers).any(|l| c.is_moe_layer(l) && c.is_moe_layer(l - 1));

    // A profile recorded on the same tokens, for the pinned runs.
    let mut s = moela::Session::new(plain.clone(), &params).unwrap();
    s.record_profile("test");
    s.eval(toks, false).unwrap();
    let profile = s.take_profile().unwrap();

    let budgets = [
        ("0 experts", ExpertBudget::Bytes(0)),
        ("1 expert", ExpertBudget::Bytes(one)),
        ("half", ExpertBudget::Fraction(0.5)),
        ("all", ExpertBudget::Fraction(1.0)),
    ];
    for (name, budget) in budgets {
        for prefetch in [false, true] {
            for pinned in [false, true] {
                let p = with(budget, prefetch, pinned.then(|| profile.clone()));
                let m = Arc::new(Model::load_with(path, &p).unwrap());
                let store = m.experts.as_ref().unwrap();
                if pinned {
                    store.warm_pinned().unwrap();
                }
                let got = bits(&sequence_logits(m.clone(), toks, prefill, &params).unwrap());
                let what = format!(
                    "{} budget {name} prefetch {prefetch} pinned {pinned}",
                    path.display()
                );
                assert!(
                    got == want,
                    "{what}: logits differ from the unbudgeted model"
                );
                let st = m.expert_stats();
                let cap = budget.bytes(routed, 0).unwrap().max(one);
                assert!(
                    st.peak_resident_bytes <= cap && st.resident_bytes <= cap,
                    "{what}: resident {} / peak {} over the budget {cap}",
                    st.resident_bytes,
                    st.peak_resident_bytes
                );
                assert!(st.hits + st.misses > 0, "{what}: no expert use counted");
                assert!(st.prefetch_hits <= st.prefetches);
                assert!(st.predicted_used <= st.predicted.min(st.predicted_layer_uses));
                if !prefetch {
                    assert_eq!(st.predicted, 0, "{what}");
                } else if name == "all" && consecutive_moe {
                    // (Whether the I/O thread gets to a read before the computation does is
                    // timing; the prediction itself is not.)
                    assert!(st.predicted > 0, "{what}: {st:?}");
                }
                if name == "0 experts" {
                    assert!(st.misses > 0 && st.bytes_read > 0, "{what}");
                    assert_eq!(st.pinned_experts, 0);
                }
                if name == "all" && pinned {
                    assert!(st.pinned_experts > 0, "{what}: nothing pinned");
                }
            }
        }
    }
}

#[test]
fn gguf_fixtures_are_bit_identical_at_every_budget() {
    for (dir, file) in [
        ("v2_lite", "llamacpp-f32.gguf"),
        ("v3", "llamacpp-f16.gguf"),
    ] {
        let d = root().join("tests/fixtures").join(dir);
        let (t, p) = tokens(&d);
        check(&d.join(file), &t, p);
    }
}

#[test]
fn safetensors_fixtures_are_bit_identical_at_every_budget() {
    for dir in ["v2", "v2_lite", "v3", "v3_dense2"] {
        let d = root().join("tests/fixtures").join(dir);
        let (t, p) = tokens(&d);
        check(&d, &t, p);
    }
}

#[test]
fn default_model_is_bit_identical_at_every_budget() {
    let d = root().join("tests/fixtures/default_model");
    let (t, p) = tokens(&d);
    check(&root().join("models/moela-tiny-v3.gguf"), &t, p);
}

#[test]
fn concurrent_sessions_share_one_slot() {
    // Three threads decode through a store of a single slot, of three slots and of half the
    // experts: they take turns, none deadlocks, and all get the unbudgeted logits.
    let d = root().join("tests/fixtures/v2_lite");
    let (t, p) = tokens(&d);
    let path = d.join("llamacpp-f32.gguf");
    let want = bits(
        &sequence_logits(
            Arc::new(Model::load(&path).unwrap()),
            &t,
            p,
            &SessionParams::default(),
        )
        .unwrap(),
    );
    let one = Model::load_with(&path, &with(ExpertBudget::Bytes(0), true, None))
        .unwrap()
        .expert_stats()
        .slot_bytes;
    // One slot (no I/O threads); three (one more than a layer's experts: I/O threads, groups
    // competing for few slots); half.
    for budget in [
        ExpertBudget::Bytes(0),
        ExpertBudget::Bytes(3 * one),
        ExpertBudget::Fraction(0.5),
    ] {
        let m = Arc::new(Model::load_with(&path, &with(budget, true, None)).unwrap());
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let (m, t) = (m.clone(), t.clone());
                std::thread::spawn(move || {
                    bits(&sequence_logits(m, &t, p, &SessionParams::default()).unwrap())
                })
            })
            .collect();
        for h in handles {
            assert!(h.join().unwrap() == want, "{budget:?}");
        }
    }
}

#[test]
fn profile_shape_is_checked() {
    let path = root().join("tests/fixtures/v2_lite/llamacpp-f32.gguf");
    let bad = ExpertProfile::new("x", 99, 3, &[1]);
    let err = Model::load_with(&path, &with(ExpertBudget::Fraction(0.5), true, Some(bad)));
    assert!(err.is_err());
}

#[test]
fn cli_profile_and_budgeted_logits() {
    // `moela profile` writes a profile of the model's shape; `moela logits` with a budget and
    // that profile pinned writes the same bytes as without a budget.
    let exe = env!("CARGO_BIN_EXE_moela");
    let model = root().join("models/moela-tiny-v3.gguf");
    let dir = std::env::temp_dir().join(format!("moela-offload-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("text.txt");
    std::fs::write(
        &text,
        "Once upon a time there was a little robot who liked the sea.",
    )
    .unwrap();
    let prof = dir.join("experts.json");
    let ok = |args: &[&std::ffi::OsStr]| {
        let o = std::process::Command::new(exe).args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    ok(&[
        "profile".as_ref(),
        "-m".as_ref(),
        model.as_os_str(),
        "-f".as_ref(),
        text.as_os_str(),
        "-o".as_ref(),
        prof.as_os_str(),
    ]);
    let p = ExpertProfile::load(&prof).unwrap();
    let m = Model::load(&model).unwrap();
    p.check_shape(m.config.n_layers, m.config.moe.n_routed_experts)
        .unwrap();
    let k = m.config.moe.experts_per_tok as u64;
    let moe_layers = p.layers.len() as u64;
    // Every MoE layer chose k experts for every token.
    assert!(p.tokens > 0);
    for l in &p.layers {
        assert_eq!(
            l.counts.iter().sum::<u64>(),
            k * p.tokens,
            "layer {}",
            l.layer
        );
    }
    assert!(moe_layers > 0);
    let (a, b) = (dir.join("a.npy"), dir.join("b.npy"));
    let base = [
        "logits".as_ref(),
        "-m".as_ref(),
        model.as_os_str(),
        "--tokens".as_ref(),
        "5,6,7,8,9".as_ref(),
        "--prefill".as_ref(),
        "2".as_ref(),
        "--out".as_ref(),
    ];
    let mut args: Vec<&std::ffi::OsStr> = base.to_vec();
    args.push(a.as_os_str());
    ok(&args);
    let mut args: Vec<&std::ffi::OsStr> = base.to_vec();
    args.extend([
        b.as_os_str(),
        "--expert-budget".as_ref(),
        "40%".as_ref(),
        "--expert-profile".as_ref(),
        prof.as_os_str(),
    ]);
    ok(&args);
    assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn experts_from_the_page_cache_keep_the_bits_and_the_budget() {
    // The file was just read (the unbudgeted run), so the page cache holds it: misses run
    // straight from the mapping as far as the budget allows, and the logits do not change.
    let d = root().join("tests/fixtures/v2_lite");
    let (t, p) = tokens(&d);
    let path = d.join("llamacpp-f32.gguf");
    let params = SessionParams::default();
    let plain = Arc::new(Model::load(&path).unwrap());
    let want = bits(&sequence_logits(plain.clone(), &t, p, &params).unwrap());
    let one = plain.expert_stats().routed_expert_bytes / 64;
    for (budget, prefetch) in [
        (ExpertBudget::Fraction(0.5), false),
        (ExpertBudget::Fraction(0.5), true),
        (ExpertBudget::Fraction(1.0), true),
        (ExpertBudget::Bytes(0), false),
    ] {
        let mut mp = with(budget, prefetch, None);
        mp.experts.page_cache = true;
        let m = Arc::new(Model::load_with(&path, &mp).unwrap());
        let got = bits(&sequence_logits(m.clone(), &t, p, &params).unwrap());
        let st = m.expert_stats();
        let what = format!("{budget:?} prefetch {prefetch}: {st:?}");
        assert!(
            got == want,
            "{what}: logits differ from the unbudgeted model"
        );
        if st.budget_bytes < one {
            // Not even one expert fits beside nothing: every miss goes through the slot.
            assert_eq!(st.page_cache_uses, 0, "{what}");
            assert!(st.misses > 0, "{what}");
        } else {
            assert!(
                st.page_cache_uses > 0,
                "{what}: nothing ran from the page cache"
            );
            // What ran from the mapping was not read into a slot.
            assert!(
                st.bytes_read < st.routed_expert_bytes,
                "{what}: read more than every expert once"
            );
        }
    }
}

#[test]
fn parallel_misses_and_a_useless_prefetch_keep_the_bits() {
    // A cold store of half the experts: the first MoE layer's experts are all misses at once
    // (read in parallel by the I/O threads and the computation, run in groups as they
    // arrive). Before that, every MoE layer is "predicted" experts the run never chooses: the
    // reads that start are wasted, the rest is replaced by the first real prediction. The
    // logits are still those of the unbudgeted model.
    let d = root().join("tests/fixtures/v2_lite");
    let (t, _) = tokens(&d);
    // Few tokens, so that some experts go unused.
    let (t, p) = (&t[..4], 2);
    let path = d.join("llamacpp-f32.gguf");
    let params = SessionParams::default();
    let plain = Arc::new(Model::load(&path).unwrap());
    let want = bits(&sequence_logits(plain.clone(), t, p, &params).unwrap());
    // The experts the run chooses, per layer (same prefill/decode split as the run).
    let mut s = moela::Session::new(plain.clone(), &params).unwrap();
    s.record_profile("test");
    s.eval(&t[..p], false).unwrap();
    for &tok in &t[p..] {
        s.eval(&[tok], false).unwrap();
    }
    let profile = s.take_profile().unwrap();

    let m =
        Arc::new(Model::load_with(&path, &with(ExpertBudget::Fraction(0.5), true, None)).unwrap());
    let store = m.experts.as_ref().unwrap();
    assert!(store.prefetch_enabled());
    let mut wrong = 0;
    for (i, l) in profile.layers.iter().enumerate() {
        let unused: Vec<usize> = (0..l.counts.len()).filter(|&e| l.counts[e] == 0).collect();
        wrong += unused.len();
        store.prefetch(l.layer, &unused, i == 0);
    }
    assert!(
        wrong > 0,
        "every expert is used: the fixture cannot test a useless prefetch"
    );
    // Let some of the wrong reads land.
    let t0 = std::time::Instant::now();
    while m.expert_stats().prefetches == 0 && t0.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let got = bits(&sequence_logits(m.clone(), t, p, &params).unwrap());
    assert!(got == want, "logits differ from the unbudgeted model");
    let st = m.expert_stats();
    let first = &profile.layers[0];
    let first_used = first.counts.iter().filter(|&&c| c > 0).count() as u64;
    assert!(first_used > 1, "the first MoE layer uses one expert only");
    assert!(st.misses >= first_used, "{st:?}");
    assert!(
        st.prefetches > st.prefetch_hits,
        "no wasted read ahead: {st:?}"
    );

    // The store's own view: all of a layer's misses at once, acquired in groups, each
    // exactly once, with the bytes of the file.
    let l = first.layer;
    let Ffn::Moe(moe) = &plain.weights.layers[l].ffn else {
        panic!("layer {l} is not a MoE layer");
    };
    let cold = Model::load_with(&path, &with(ExpertBudget::Fraction(0.5), false, None)).unwrap();
    let store = cold.experts.as_ref().unwrap();
    let experts: Vec<usize> = (0..moe.experts.len()).step_by(2).collect();
    let mut got = Vec::new();
    let mut pending = store.begin_layer(l, &experts, &mut got).unwrap();
    assert!(got.is_empty() && pending == experts);
    let mut seen = Vec::new();
    while !pending.is_empty() {
        store.acquire_ready(l, &mut pending, &mut got).unwrap();
        assert!(!got.is_empty());
        for (e, g) in got.drain(..) {
            assert_eq!(g.gate.bytes(), moe.experts[e].gate.bytes());
            assert_eq!(g.up.bytes(), moe.experts[e].up.bytes());
            assert_eq!(g.down.bytes(), moe.experts[e].down.bytes());
            seen.push(e);
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, experts);
    let st = store.stats();
    assert_eq!(st.misses, experts.len() as u64);
    assert_eq!(st.hits, 0);
    // Again: all resident now, one group of hits.
    let pending = store.begin_layer(l, &experts, &mut got).unwrap();
    assert!(pending.is_empty() && got.len() == experts.len());
    assert_eq!(store.stats().hits, experts.len() as u64);
}
