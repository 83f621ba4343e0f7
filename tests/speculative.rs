//! Speculative decoding (src/speculative.rs) gives plain decoding's output:
//! - the logits of every row of a verification pass are bit-identical to one-token decoding's
//!   (F32/F16 safetensors and GGUF fixtures, block-scaled FP8, Q8_0/Q4_0/Q4_K conversions, the
//!   default model; several batch sizes, after rollbacks);
//! - greedy speculative output equals plain greedy output token for token, for draft lengths
//!   1, 2, 4 and 7, on prompts with repetition where drafts are both accepted and rejected
//!   (the KV rollback runs);
//! - sampled runs are reproducible from the seed, and the sampled tokens' frequencies equal
//!   plain sampling's: over 1000 seeds on the default model, each token's frequency at each of
//!   the first 4 generated positions differs by at most 5 standard errors of the difference
//!   (sqrt(2 p (1-p) / N), p the pooled frequency, plus 1/N);
//! - a recorded expert profile counts only the kept tokens.
//!
//! Run under every kernel set (MOELA_KERNELS=generic, avx2, ...).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use moela::sampler::{Sampler, SamplerParams};
use moela::speculative::{self, Drafter, PromptLookup, SpecStats, Speculator};
use moela::tensor::DType;
use moela::{Model, Session, SessionParams};
mod common;
use common::{fixture, fixture_tokens};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tmpdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("moela-spec-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The models: (label, model, prompt tokens).
fn models() -> Vec<(String, Arc<Model>, Vec<u32>)> {
    let dir = tmpdir();
    let mut out = Vec::new();
    let mut add = |label: String, path: &Path, tokens: Vec<u32>| {
        out.push((label, Arc::new(Model::load(path).unwrap()), tokens));
    };
    for name in ["v2_lite", "v3", "v3_dense2", "v3_fp8"] {
        add(name.into(), &fixture(name), fixture_tokens(name));
    }
    add(
        "v3 llamacpp-f16.gguf".into(),
        &fixture("v3").join("llamacpp-f16.gguf"),
        fixture_tokens("v3"),
    );
    for (name, dtype) in [
        ("v3", DType::Q8_0),
        ("v2_lite", DType::Q4_0),
        ("kq", DType::Q4_K),
        // Interleaved by eight on AVX2 too (their several-token x8 kernels).
        ("v2_lite", DType::Q5_0),
        ("kq", DType::Q6_K),
    ] {
        let path = dir.join(format!("{name}-{}.gguf", dtype.name()));
        moela::convert::convert_hf_to_gguf(&fixture(name), &path, dtype, &mut |_| {}).unwrap();
        add(
            format!("{name} {}", dtype.name()),
            &path,
            fixture_tokens(name),
        );
    }
    let default = root().join("models/moela-tiny-v3.gguf");
    let model = Model::load(&default).unwrap();
    let tok = model.tokenizer.as_ref().unwrap();
    let prompt = tok.encode(GOD_SAID, tok.add_bos(), false);
    add("default model".into(), &default, prompt);
    out
}

/// A prompt on which the default model repeats itself.
const GOD_SAID: &str = "And God said, Let there be light: and there was light. \
And God said, Let there be light: and there was light. And God said,";

/// Proposes a known continuation of `prompt_len` tokens, with every `wrong`-th proposed token
/// (counted from the start of the continuation) replaced by another one: drafts are then
/// accepted and rejected on every model.
struct Oracle {
    want: Vec<u32>,
    prompt_len: usize,
    wrong: usize,
    vocab: u32,
}

impl Drafter for Oracle {
    fn draft(&mut self, context: &[u32], max: usize, out: &mut Vec<u32>) {
        let at = context.len() - self.prompt_len;
        for i in at..(at + max).min(self.want.len()) {
            let t = self.want[i];
            out.push(if i % self.wrong == self.wrong - 1 {
                (t + 1) % self.vocab
            } else {
                t
            });
        }
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn verification_rows_are_bit_identical_to_decode() {
    for (label, model, tokens) in models() {
        let v = model.config.vocab_size;
        let mut s = Session::new(model.clone(), &SessionParams::default()).unwrap();
        let p = 4;
        s.eval(&tokens[..p], false).unwrap();
        // One token at a time: the reference rows.
        let rest = &tokens[p..];
        let mut want = Vec::new();
        for &t in rest {
            want.extend_from_slice(s.eval(&[t], false).unwrap());
        }
        // Verification passes of 1..=8 tokens from position p, rolled back each time, then a
        // pass at a later position after a partial rollback.
        for n in 1..=8.min(rest.len()) {
            s.truncate(p);
            let got = s.verify(&rest[..n]).unwrap().to_vec();
            assert_eq!(
                bits(&got),
                bits(&want[..n * v]),
                "{label}: verification of {n} tokens"
            );
            assert_eq!(s.position(), p + n);
        }
        s.truncate(p + 2);
        assert_eq!(
            bits(s.logits().unwrap()),
            bits(&want[v..2 * v]),
            "{label}: logits after rollback"
        );
        let n = 5.min(rest.len() - 2);
        let got = s.verify(&rest[2..2 + n]).unwrap().to_vec();
        assert_eq!(
            bits(&got),
            bits(&want[2 * v..(2 + n) * v]),
            "{label}: verification after rollback"
        );
        println!("{label}: verification rows bit-identical");
    }
}

/// `n` tokens greedily, one evaluation per token (the reference).
fn plain_greedy(model: &Arc<Model>, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut s = Session::new(model.clone(), &SessionParams::default()).unwrap();
    let mut sampler = Sampler::greedy();
    let mut logits = s.eval(prompt, false).unwrap().to_vec();
    let mut hist = prompt.to_vec();
    let mut out = Vec::new();
    for _ in 0..n {
        let t = sampler.sample(&logits, &hist).unwrap();
        out.push(t);
        hist.push(t);
        logits = s.eval(&[t], false).unwrap().to_vec();
    }
    out
}

fn spec_run(
    model: &Arc<Model>,
    prompt: &[u32],
    n: usize,
    draft: usize,
    sampler: &mut Sampler,
) -> (Vec<u32>, SpecStats, Session) {
    spec_run_with(
        model,
        prompt,
        n,
        draft,
        sampler,
        Box::new(PromptLookup::default()),
    )
}

fn spec_run_with(
    model: &Arc<Model>,
    prompt: &[u32],
    n: usize,
    draft: usize,
    sampler: &mut Sampler,
    drafter: Box<dyn Drafter>,
) -> (Vec<u32>, SpecStats, Session) {
    let mut s = Session::new(model.clone(), &SessionParams::default()).unwrap();
    s.eval(prompt, false).unwrap();
    let mut spec = Speculator::new(drafter, draft).unwrap();
    let mut hist = prompt.to_vec();
    let got = speculative::generate(
        &mut s,
        sampler,
        Some(&mut spec),
        &mut hist,
        n,
        &[],
        &mut |_| true,
    )
    .unwrap();
    assert_eq!(got, n);
    assert_eq!(s.position(), hist.len(), "the session holds the history");
    (hist[prompt.len()..].to_vec(), spec.stats(), s)
}

#[test]
fn greedy_speculative_output_equals_plain_greedy() {
    let n = 40;
    for (label, model, tokens) in models() {
        // A prompt that repeats itself, so lookup has material from the start.
        let mut prompt = tokens[..6.min(tokens.len())].to_vec();
        prompt = prompt.repeat(3);
        if label == "default model" {
            prompt = tokens.clone();
        }
        let want = plain_greedy(&model, &prompt, n);
        let vocab = model.config.vocab_size as u32;
        for draft in [1, 2, 4, 7] {
            // Prompt lookup (its drafts on random-weight models are mostly rejected).
            let (got, st, _) = spec_run(&model, &prompt, n, draft, &mut Sampler::greedy());
            assert_eq!(got, want, "{label}: lookup, draft {draft}");
            println!(
                "{label}: lookup draft {draft}: {} passes, {} of {} drafts accepted",
                st.passes, st.accepted, st.drafted
            );
            // The known continuation with every third drafted token wrong.
            let oracle = Oracle {
                want: want.clone(),
                prompt_len: prompt.len(),
                wrong: 3,
                vocab,
            };
            let (got, st, _) = spec_run_with(
                &model,
                &prompt,
                n,
                draft,
                &mut Sampler::greedy(),
                Box::new(oracle),
            );
            assert_eq!(got, want, "{label}: oracle, draft {draft}");
            assert!(st.accepted > 0, "{label}: no draft accepted");
            assert!(
                st.accepted < st.drafted,
                "{label}: no draft rejected (the rollback did not run)"
            );
        }
    }
}

fn default_model() -> (Arc<Model>, Vec<u32>) {
    let model = Arc::new(Model::load(root().join("models/moela-tiny-v3.gguf")).unwrap());
    let tok = model.tokenizer.as_ref().unwrap();
    let prompt = tok.encode(GOD_SAID, tok.add_bos(), false);
    (model, prompt)
}

fn sampler(seed: u64) -> Sampler {
    Sampler::new(SamplerParams {
        temperature: 0.8,
        seed,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn seeded_sampled_speculative_run_is_reproducible() {
    let (model, prompt) = default_model();
    let (mut accepted, mut drafted) = (0, 0);
    for seed in 1..=4 {
        let (a, st, _) = spec_run(&model, &prompt, 32, 4, &mut sampler(seed));
        let (b, st2, _) = spec_run(&model, &prompt, 32, 4, &mut sampler(seed));
        assert_eq!(a, b, "seed {seed}");
        assert_eq!(st, st2);
        accepted += st.accepted;
        drafted += st.drafted;
    }
    assert!(
        accepted > 0 && accepted < drafted,
        "{accepted} of {drafted}"
    );
}

#[test]
fn sampled_token_frequencies_match_plain_sampling() {
    let (model, prompt) = default_model();
    let (runs, len) = (1000usize, 4usize);
    let v = model.config.vocab_size;
    // One session per mode: the prompt but its last token is evaluated once; each run rolls
    // back to there and evaluates the last token (one decode step) for its logits.
    let last = prompt.len() - 1;
    let mut counts = [vec![vec![0u32; v]; len], vec![vec![0u32; v]; len]];
    let mut stats = SpecStats::default();
    for (mode, c) in counts.iter_mut().enumerate() {
        let mut s = Session::new(model.clone(), &SessionParams::default()).unwrap();
        s.eval(&prompt[..last], false).unwrap();
        let mut spec = Speculator::new(Box::new(PromptLookup::default()), 3).unwrap();
        for seed in 0..runs as u64 {
            s.truncate(last);
            s.eval(&prompt[last..], false).unwrap();
            let mut hist = prompt.clone();
            let mut smp = sampler(1000 + seed);
            let sp = if mode == 1 { Some(&mut spec) } else { None };
            speculative::generate(&mut s, &mut smp, sp, &mut hist, len, &[], &mut |_| true)
                .unwrap();
            for (i, &t) in hist[prompt.len()..].iter().enumerate() {
                c[i][t as usize] += 1;
            }
        }
        if mode == 1 {
            stats = spec.stats();
        }
    }
    println!("speculative: {stats:?}");
    assert!(stats.accepted > 0 && stats.accepted < stats.drafted);
    let n = runs as f64;
    let mut worst = 0.0f64;
    let [plain, spec] = &counts;
    for (i, (pc, sc)) in plain.iter().zip(spec).enumerate() {
        for (t, (&ca, &cb)) in pc.iter().zip(sc).enumerate() {
            let (a, b) = (ca as f64 / n, cb as f64 / n);
            let p = (a + b) / 2.0;
            let bound = 5.0 * (2.0 * p * (1.0 - p) / n).sqrt() + 1.0 / n;
            worst = worst.max((a - b).abs() / bound);
            assert!(
                (a - b).abs() <= bound,
                "position {i} token {t}: plain {a} vs speculative {b} (bound {bound})"
            );
        }
    }
    println!("largest difference: {worst:.2} of the bound");
}

#[test]
fn profile_counts_only_kept_tokens() {
    let (model, prompt) = default_model();
    let n = 24;
    let want = plain_greedy(&model, &prompt, n);
    let profile_of = |spec: bool| {
        let mut s = Session::new(model.clone(), &SessionParams::default()).unwrap();
        s.record_profile("test");
        s.eval(&prompt, false).unwrap();
        let mut hist = prompt.clone();
        let mut sp = Speculator::new(Box::new(PromptLookup::default()), 4).unwrap();
        speculative::generate(
            &mut s,
            &mut Sampler::greedy(),
            spec.then_some(&mut sp),
            &mut hist,
            n,
            &[],
            &mut |_| true,
        )
        .unwrap();
        assert_eq!(&hist[prompt.len()..], &want[..]);
        if spec {
            assert!(sp.stats().accepted < sp.stats().drafted);
        }
        s.take_profile().unwrap()
    };
    assert_eq!(profile_of(true), profile_of(false));
}
