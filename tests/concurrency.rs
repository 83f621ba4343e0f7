//! One model shared by many threads, each with its own session, generating in parallel for a
//! bounded time: every output must equal the single-threaded one, token for token and logit
//! for logit. And the same seed gives the same tokens whatever the worker-thread count (child
//! processes, since the worker pool is process-wide). `tools/tsan.sh` runs this file under
//! ThreadSanitizer.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moela::sampler::{Sampler, SamplerParams};
use moela::{Model, Session, SessionParams};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Seconds each thread keeps generating (MOELA_STRESS_SECS, default 3).
fn budget() -> Duration {
    let s = std::env::var("MOELA_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    Duration::from_secs_f64(s)
}

#[derive(Debug, PartialEq)]
struct Output {
    tokens: Vec<u32>,
    /// Bit patterns of the logits after the last token.
    last_logits: Vec<u32>,
}

/// Prefill `prompt` as one batch, then sample `steps` tokens one at a time with a seeded
/// sampler (temperature 0.8, so the RNG stream matters too).
fn generate(model: &Arc<Model>, prompt: &[u32], steps: usize, seed: u64) -> Output {
    let mut s = Session::new(
        model.clone(),
        &SessionParams {
            n_ctx: prompt.len() + steps + 1,
            ..Default::default()
        },
    )
    .unwrap();
    let mut sampler = Sampler::new(SamplerParams {
        seed,
        ..Default::default()
    })
    .unwrap();
    let mut history = prompt.to_vec();
    let mut logits = s.eval(prompt, false).unwrap().to_vec();
    let mut tokens = Vec::new();
    for _ in 0..steps {
        let t = sampler.sample(&logits, &history).unwrap();
        tokens.push(t);
        history.push(t);
        logits = s.eval(&[t], false).unwrap().to_vec();
    }
    Output {
        tokens,
        last_logits: logits.iter().map(|x| x.to_bits()).collect(),
    }
}

fn prompts(vocab: usize) -> Vec<Vec<u32>> {
    (0..6u32)
        .map(|i| {
            (0..3 + i as usize)
                .map(|j| ((i as usize * 31 + j * 17 + 1) % vocab) as u32)
                .collect()
        })
        .collect()
}

fn stress(model_dir: &str, n_threads: usize) {
    let model = Arc::new(Model::load(fixture(model_dir)).unwrap());
    let ps = prompts(model.config.vocab_size);
    let steps = 12;
    let reference: Vec<Output> = ps
        .iter()
        .enumerate()
        .map(|(i, p)| generate(&model, p, steps, i as u64))
        .collect();
    let reference = Arc::new(reference);
    let deadline = Instant::now() + budget();
    let handles: Vec<_> = (0..n_threads)
        .map(|k| {
            let (model, ps, reference) = (model.clone(), ps.clone(), reference.clone());
            std::thread::spawn(move || {
                let mut runs = 0;
                // Each thread starts at a different prompt so different work overlaps.
                let mut i = k;
                loop {
                    let j = i % ps.len();
                    let out = generate(&model, &ps[j], steps, j as u64);
                    assert_eq!(out, reference[j], "thread {k}, prompt {j}, run {runs}");
                    runs += 1;
                    i += 1;
                    if Instant::now() >= deadline && runs >= 1 {
                        return runs;
                    }
                }
            })
        })
        .collect();
    let runs: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    eprintln!("{model_dir}: {n_threads} threads, runs per thread {runs:?}, all equal");
}

#[test]
fn parallel_sessions_match_single_threaded_v2_lite() {
    stress("v2_lite", 4);
}

#[test]
fn parallel_sessions_match_single_threaded_v3() {
    stress("v3", 3);
}

/// Run by `same_tokens_for_every_thread_count` in a child process: sets the worker count,
/// generates, prints the result. Does nothing in a normal run.
#[test]
fn child_generate() {
    let Ok(n) = std::env::var("MOELA_CHILD_THREADS") else {
        return;
    };
    moela::kernels::set_threads(n.parse().unwrap()).unwrap();
    let model = Arc::new(Model::load(fixture("v3")).unwrap());
    let ps = prompts(model.config.vocab_size);
    for (i, p) in ps.iter().enumerate() {
        let out = generate(&model, p, 12, 7 + i as u64);
        // FNV-1a of the logits' bits keeps the line short.
        let h = out.last_logits.iter().fold(0xcbf29ce484222325u64, |h, &b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        });
        println!("RESULT {i} {:?} {h:016x}", out.tokens);
    }
}

#[test]
fn same_tokens_for_every_thread_count() {
    if std::env::var("MOELA_CHILD_THREADS").is_ok() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let run = |n: usize| -> Vec<String> {
        let out = std::process::Command::new(&exe)
            .args([
                "--exact",
                "child_generate",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("MOELA_CHILD_THREADS", n.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "child with {n} threads: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            // The harness may print "test child_generate ... " on the same line.
            .filter_map(|l| l.find("RESULT ").map(|i| l[i..].to_string()))
            .collect();
        assert_eq!(lines.len(), 6, "child with {n} threads printed {lines:?}");
        lines
    };
    let one = run(1);
    for n in [2, 3, 5] {
        assert_eq!(run(n), one, "{n} worker threads differ from 1");
    }
    // And twice with the same count.
    assert_eq!(run(1), one);
}
