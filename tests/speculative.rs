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
//!   (sqrt(2 p (1-p) / N), p the pooled frequency, plus 1/N); over long runs (40 runs of 128
//!   tokens per mode, temperature 1, top-k 5) permutation tests of the total-variation
//!   distance between the pooled frequencies and of the rate of tokens prompt lookup would
//!   have drafted (false failure ≤ 0.1%);
//! - the acceptance rule itself: draft-or-resample outcomes on fixed logits follow the
//!   sampler's distribution within a Bretagnolle–Huber–Carol L1 bound (false failure ≤ 1e-8);
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
        ("kq", DType::Q5_K),
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

/// The outcome distribution of one speculative-sampling step, at the rule level: the draft
/// `d` if [`Sampler::accept_draft`] keeps it, else [`Sampler::sample_excluding`]`(d)` (what
/// [`Speculator::step`] does over two steps), must be the sampler's target distribution p
/// (softmax of logits / temperature over the top-k tokens, less those under min_p × the most
/// likely one, renormalised), whatever the draft: likely, unlikely, or outside the support.
///
/// Bound: with N independent outcomes over k categories and p̂ their frequencies,
/// ‖p̂ − p‖₁ = 2 max over subsets A of (p̂(A) − p(A)); Hoeffding gives each of the 2^k
/// subsets P(p̂(A) − p(A) ≥ ε/2) ≤ exp(−N ε²/2), so P(‖p̂ − p‖₁ ≥ ε) ≤ 2^k exp(−N ε²/2)
/// (the Bretagnolle–Huber–Carol inequality). ε is set so that this is δ = 1e-9 per case
/// (k = 8, N = 200,000: ε ≈ 0.016); the acceptance frequency alone must be within
/// sqrt(ln(2/δ) / 2N) ≈ 0.0073 of p(d) (Hoeffding, also δ). Over the 6 cases × 2 checks a
/// correct rule fails with probability below 1.2e-8 (the seeds are fixed, so the test is
/// deterministic). A rule that resamples from the full p after a rejection would put
/// p(d) + (1 − p(d)) p(d) on the draft: off by ≥ 0.2 in L1 for every draft here with p ≥ 0.1.
#[test]
fn accept_draft_outcomes_follow_the_target_distribution() {
    let logits = [2.0f32, 1.5, 1.1, 0.3, -0.4, -1.0, 0.9, -2.5];
    let k = logits.len();
    let n = 200_000usize;
    let delta = 1e-9f64;
    let eps_l1 = (2.0 * (k as f64 * 2f64.ln() + (1.0 / delta).ln()) / n as f64).sqrt();
    let eps_acc = ((2.0 / delta).ln() / (2.0 * n as f64)).sqrt();
    // (temperature, top_k, min_p), all with top_p 1 and no repetition penalty.
    for (case, (temperature, top_k, min_p)) in [(1.0f32, 0usize, 0.0f32), (0.7, 5, 0.1)]
        .into_iter()
        .enumerate()
    {
        // The target: the sampler's filters, in f64.
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        if top_k > 0 {
            order.truncate(top_k);
        }
        let w: Vec<f64> = order
            .iter()
            .map(|&t| (((logits[t] - logits[order[0]]) / temperature) as f64).exp())
            .collect();
        let mut p = vec![0.0f64; k];
        let kept: Vec<(usize, f64)> = order
            .iter()
            .zip(&w)
            .filter(|&(_, &x)| x >= min_p as f64 * w[0])
            .map(|(&t, &x)| (t, x))
            .collect();
        let sum: f64 = kept.iter().map(|x| x.1).sum();
        for (t, x) in kept {
            p[t] = x / sum;
        }
        // The most likely token, a middling one, and the least likely (outside the support
        // of the second case).
        for draft in [0u32, 2, 7] {
            let mut smp = Sampler::new(SamplerParams {
                temperature,
                top_k,
                top_p: 1.0,
                min_p,
                repeat_penalty: 1.0,
                seed: 1000 * case as u64 + draft as u64,
            })
            .unwrap();
            let mut counts = vec![0u64; k];
            let mut accepted = 0u64;
            for _ in 0..n {
                let t = if smp.accept_draft(&logits, &[], draft) {
                    accepted += 1;
                    draft
                } else {
                    smp.sample_excluding(&logits, &[], draft)
                };
                counts[t as usize] += 1;
            }
            let l1: f64 = counts
                .iter()
                .zip(&p)
                .map(|(&c, &q)| (c as f64 / n as f64 - q).abs())
                .sum();
            let acc = accepted as f64 / n as f64;
            println!(
                "case {case} draft {draft}: L1 {l1:.4} (bound {eps_l1:.4}), accepted {acc:.4} \
                 vs p {:.4} (bound {eps_acc:.4})",
                p[draft as usize]
            );
            assert!(
                l1 < eps_l1,
                "case {case}, draft {draft}: {counts:?} vs {p:?}"
            );
            assert!(
                (acc - p[draft as usize]).abs() < eps_acc,
                "case {case}, draft {draft}: accepted {acc} vs {}",
                p[draft as usize]
            );
        }
    }
}

/// SplitMix64: the permutations of the test below, from a fixed seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Token frequencies over long sampled runs (temperature 1, top-k 5, the default top-p and
/// min-p) on the default model: speculative decoding with prompt lookup against plain
/// sampling. Top-k 5 makes lookup's drafts likely enough that a broken rule shows.
///
/// The tokens of one run depend on each other, so the unit of the test is the run: R runs
/// of L tokens per mode, each from its own seed (distinct between modes), are independent,
/// and if speculation leaves the distribution of a run unchanged the 2R runs are
/// exchangeable. Two statistics of the two groups of runs:
/// - the total-variation distance between their pooled token frequencies (the 32 most
///   frequent tokens, and the rest as one category);
/// - the difference of their mean rates of tokens that prompt lookup would have drafted (a
///   broken acceptance rule shifts mass exactly there: resampling from the full distribution
///   after a rejection, say, puts p(d) + (1 − p(d)) p(d) on the draft d).
///
/// Each one's p-value is taken against P random relabellings of the runs into two groups of
/// R (a permutation test): p = (1 + #{relabelled ≥ observed}) / (1 + P). Under
/// exchangeability P(p ≤ a) ≤ a exactly, whatever the dependence inside a run and however
/// few tokens each vocabulary entry gets. Each is checked at a = 0.0005 (P = 3999), so a
/// correct implementation fails with probability at most 0.1% over the choice of seeds
/// (fixed here, so the test is deterministic). R = 40, L = 128. With the resampling bug above
/// planted, the lookup statistic's p-value was 0.00025 (the smallest possible) on these
/// seeds, so the test fails; the frequency distance alone did not see it (p 0.56).
#[test]
fn long_sampled_runs_match_plain_sampling_token_frequencies() {
    let (model, prompt) = default_model();
    let (runs, len, perms, alpha) = (40usize, 128usize, 3999usize, 0.0005f64);
    let v = model.config.vocab_size;
    let sampler = |seed: u64| {
        Sampler::new(SamplerParams {
            temperature: 1.0,
            top_k: 5,
            seed,
            ..Default::default()
        })
        .unwrap()
    };
    // counts[r]: run r's token counts; follows[r]: how many of its tokens prompt lookup
    // would have drafted; runs 0..R plain, R..2R speculative.
    let mut counts: Vec<Vec<u32>> = Vec::new();
    let mut follows: Vec<f64> = Vec::new();
    let mut stats = SpecStats::default();
    let start = std::time::Instant::now();
    for mode in 0..2 {
        let mut s = Session::new(model.clone(), &SessionParams::default()).unwrap();
        let mut spec = Speculator::new(Box::new(PromptLookup::default()), 4).unwrap();
        for r in 0..runs as u64 {
            s.truncate(0);
            s.eval(&prompt, false).unwrap();
            let mut hist = prompt.clone();
            let mut smp = sampler(5000 + 1000 * mode as u64 + r);
            let sp = if mode == 1 { Some(&mut spec) } else { None };
            let n = speculative::generate(&mut s, &mut smp, sp, &mut hist, len, &[], &mut |_| true)
                .unwrap();
            assert_eq!(n, len);
            let mut c = vec![0u32; v];
            let mut hits = 0;
            for i in prompt.len()..hist.len() {
                c[hist[i] as usize] += 1;
                if lookup_draft(&hist[..i]) == Some(hist[i]) {
                    hits += 1;
                }
            }
            counts.push(c);
            follows.push(hits as f64);
        }
        if mode == 1 {
            stats = spec.stats();
        }
    }
    println!(
        "{} tokens per mode in {:.1} s; speculative: {stats:?}",
        runs * len,
        start.elapsed().as_secs_f64()
    );
    assert!(stats.accepted > 0 && stats.accepted < stats.drafted);
    // The categories: the TOP most frequent tokens of both modes together, and the rest as
    // one (chosen from the pooled counts, which no relabelling changes, so the test stays
    // exact). Over the whole vocabulary the distance is mostly the noise of tokens seen once
    // or twice.
    const TOP: usize = 32;
    let pooled: Vec<u64> = (0..v)
        .map(|t| counts.iter().map(|c| c[t] as u64).sum())
        .collect();
    let mut seen: Vec<usize> = (0..v).filter(|&t| pooled[t] > 0).collect();
    seen.sort_by(|&a, &b| pooled[b].cmp(&pooled[a]).then(a.cmp(&b)));
    let distinct = seen.len();
    seen.truncate(TOP);
    let rows: Vec<Vec<f64>> = counts
        .iter()
        .map(|c| {
            let mut row: Vec<f64> = seen.iter().map(|&t| c[t] as f64).collect();
            row.push(len as f64 - row.iter().sum::<f64>());
            row
        })
        .collect();
    let total = (runs * len) as f64;
    let mut all = vec![0.0f64; rows[0].len()];
    for row in &rows {
        for (x, y) in all.iter_mut().zip(row) {
            *x += y;
        }
    }
    let all_follows: f64 = follows.iter().sum();
    // Both statistics for "group a = these runs, group b = the others" (R runs each).
    let stats_of = |group_a: &[usize]| {
        let mut a = vec![0.0f64; all.len()];
        let mut fa = 0.0;
        for &r in group_a {
            for (x, y) in a.iter_mut().zip(&rows[r]) {
                *x += y;
            }
            fa += follows[r];
        }
        let tv = 0.5
            * a.iter()
                .zip(&all)
                .map(|(&x, &y)| (x - (y - x)).abs() / total)
                .sum::<f64>();
        (tv, (fa - (all_follows - fa)).abs() / total)
    };
    let plain: Vec<usize> = (0..runs).collect();
    let (tv, follow) = stats_of(&plain);
    let mut rng = SplitMix(0x5EED);
    let mut idx: Vec<usize> = (0..2 * runs).collect();
    let (mut tv_at_least, mut follow_at_least) = (0, 0);
    for _ in 0..perms {
        for i in (1..idx.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            idx.swap(i, j);
        }
        let (t, f) = stats_of(&idx[..runs]);
        tv_at_least += (t >= tv) as usize;
        follow_at_least += (f >= follow) as usize;
    }
    let p_tv = (1 + tv_at_least) as f64 / (1 + perms) as f64;
    let p_follow = (1 + follow_at_least) as f64 / (1 + perms) as f64;
    println!(
        "total variation {tv:.4} over the {TOP} most frequent of {distinct} distinct tokens \
         and the rest: p-value {p_tv:.4}; lookup-draft rate differs by {follow:.4}: p-value \
         {p_follow:.4}"
    );
    assert!(
        p_tv > alpha,
        "speculative sampling's token frequencies differ from plain sampling's: total \
         variation {tv:.4}, p-value {p_tv} <= {alpha}"
    );
    assert!(
        p_follow > alpha,
        "speculative sampling follows prompt lookup's drafts more or less often than plain \
         sampling: rates differ by {follow:.4}, p-value {p_follow} <= {alpha}"
    );
}

/// Prompt lookup's first draft after `context`.
fn lookup_draft(context: &[u32]) -> Option<u32> {
    let mut out = Vec::new();
    PromptLookup::default().draft(context, 1, &mut out);
    out.first().copied()
}
