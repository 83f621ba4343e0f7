//! DeepSeek-V3's multi-token-prediction (MTP) module (src/model/deepseek.rs `mtp_forward`,
//! `Session::mtp_draft`, `--spec mtp`), on tests/fixtures/v3_mtp: the v3 fixture's trunk plus a
//! random MTP block, with the module's logits computed in torch by tools/gen_mtp_fixtures.py
//! (transformers' DeepseekV3DecoderLayer and RMSNorm and DeepSeek's formula).
//!
//! Tolerances (those of the golden tests for F32 weights): max |Δ| ≤ 1e-3 against the torch
//! reference and the same top-1 token on every row, from the HF directory (bf16 weights read
//! exactly) and from the F32 GGUF `moela convert` writes (llama.cpp's nextn layout), on the
//! absorbed and the expanded attention paths. Measured: see the test output (≈1e-5).
//!
//! Also: the trunk of a file with the block decodes bit-identically to the same trunk without
//! it; drafts made one position at a time through the module's own latent cache equal the
//! reference's argmax; greedy speculative decoding with MTP drafts equals plain greedy for
//! draft lengths 1, 2, 3 and 5 (drafts are rejected on these random weights, so the rollback
//! runs), with the module enabled before the prompt or late; a drafter that runs the module
//! but proposes a known continuation with planted errors (drafts accepted and rejected) sees
//! the module's draft equal a fresh run over the whole context at every step; `--spec mtp` on
//! a model without the module is a clear error.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use moela::attention::mla::AttnPath;
use moela::format::gguf::GgufFile;
use moela::sampler::Sampler;
use moela::session::{mtp_sequence_logits, sequence_logits};
use moela::speculative::{self, SpecMode, Speculator};
use moela::tensor::DType;
use moela::{Model, Session, SessionParams};
mod common;
use common::{fixture, fixture_tokens};

const TOL: f32 = 1e-3;

fn reference() -> (Vec<u32>, Vec<f32>, usize) {
    let (logits, rows, vocab) =
        moela::npy::read_f32(&fixture("v3_mtp").join("mtp_logits.npy")).unwrap();
    let tokens = fixture_tokens("v3_mtp");
    assert_eq!(rows, tokens.len() - 1);
    (tokens, logits, vocab)
}

/// Fixture `name` converted to an F32 GGUF by `moela convert` (once per test process).
fn converted(name: &str) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let d = std::env::temp_dir().join(format!("moela-mtp-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let out = d.join(format!("{name}-f32.gguf"));
    if !out.exists() {
        moela::convert::convert_hf_to_gguf(&fixture(name), &out, DType::F32, &mut |_| {}).unwrap();
    }
    out
}

fn gguf_path() -> PathBuf {
    converted("v3_mtp")
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn argmaxes(v: &[f32], vocab: usize) -> Vec<u32> {
    v.chunks(vocab).map(moela::sampler::argmax).collect()
}

fn params(path: AttnPath) -> SessionParams {
    SessionParams {
        attn_path: path,
        ..Default::default()
    }
}

#[test]
fn mtp_logits_match_torch_reference() {
    let (tokens, want, vocab) = reference();
    for (label, path) in [
        ("HF", fixture("v3_mtp")),
        ("GGUF F32 (moela convert)", gguf_path()),
    ] {
        let model = Arc::new(Model::load(&path).unwrap());
        assert!(model.weights.mtp.is_some(), "{label}: no MTP module loaded");
        assert_eq!(
            model.config.n_layers, 4,
            "{label}: the MTP block is not a trunk layer"
        );
        for attn in [AttnPath::Auto, AttnPath::Absorbed, AttnPath::Expanded] {
            let got = mtp_sequence_logits(model.clone(), &tokens, &params(attn)).unwrap();
            let d = max_abs_diff(&got, &want);
            println!("{label} {attn:?}: MTP logits max|Δ| vs torch {d:.2e}");
            assert!(d <= TOL, "{label} {attn:?}: MTP logits differ by {d}");
            assert_eq!(
                argmaxes(&got, vocab),
                argmaxes(&want, vocab),
                "{label} {attn:?}: top-1"
            );
        }
    }
}

/// `moela convert` writes llama.cpp's layout: block_count counts the block,
/// nextn_predict_layers = 1, the nextn tensors under blk.{N}; the module's own head is kept,
/// and no embed_tokens is written where the checkpoint has none.
#[test]
fn convert_writes_llama_cpp_nextn_layout() {
    let f = GgufFile::open(&gguf_path()).unwrap();
    assert_eq!(f.get("deepseek2.block_count").unwrap().as_u32(), Some(5));
    assert_eq!(
        f.get("deepseek2.nextn_predict_layers").unwrap().as_u32(),
        Some(1)
    );
    let names: Vec<&str> = f.tensors.iter().map(|t| t.name.as_str()).collect();
    for n in [
        "blk.4.nextn.eh_proj.weight",
        "blk.4.nextn.enorm.weight",
        "blk.4.nextn.hnorm.weight",
        "blk.4.nextn.shared_head_norm.weight",
        "blk.4.nextn.shared_head_head.weight",
        "blk.4.attn_q_a.weight",
        "blk.4.ffn_gate_exps.weight",
        "blk.4.exp_probs_b.bias",
    ] {
        assert!(names.contains(&n), "{n} missing");
    }
    assert!(!names.contains(&"blk.4.nextn.embed_tokens.weight"));
    let eh = f
        .tensors
        .iter()
        .find(|t| t.name == "blk.4.nextn.eh_proj.weight")
        .unwrap();
    // ggml order: ne0 = 2 * n_embd (the input), ne1 = n_embd.
    assert_eq!(eh.dims, vec![128, 64]);
}

/// The block is never run as a trunk layer: the trunk's logits are those of the v3 fixture
/// (the same trunk without the block), bit for bit, from HF and from GGUF (both converted).
#[test]
fn trunk_with_mtp_block_decodes_as_without() {
    let tokens = fixture_tokens("v3");
    let p = SessionParams::default();
    for (with, without) in [
        (fixture("v3_mtp"), fixture("v3")),
        (gguf_path(), converted("v3")),
    ] {
        let plain = Arc::new(Model::load(&without).unwrap());
        let want = sequence_logits(plain, &tokens, 5, &p).unwrap();
        let model = Arc::new(Model::load(&with).unwrap());
        let got = sequence_logits(model, &tokens, 5, &p).unwrap();
        let d = max_abs_diff(&got, &want);
        assert_eq!(d, 0.0, "{}: trunk logits moved by {d}", with.display());
    }
}

/// Drafting position by position through the module's own latent cache gives the reference's
/// argmax at each position (the cache rows written across calls are the batch's).
#[test]
fn incremental_drafts_follow_the_reference() {
    let (tokens, want, vocab) = reference();
    let want = argmaxes(&want, vocab);
    for path in [fixture("v3_mtp"), gguf_path()] {
        let model = Arc::new(Model::load(&path).unwrap());
        let mut s = Session::new(model, &SessionParams::default()).unwrap();
        assert!(s.has_mtp());
        s.enable_mtp().unwrap();
        s.eval(&tokens[..5], false).unwrap();
        for k in 5..tokens.len() {
            let mut out = Vec::new();
            s.mtp_draft(tokens[k], 1, &mut out).unwrap();
            assert_eq!(out, vec![want[k - 1]], "draft after position {k}");
            s.eval(&[tokens[k]], false).unwrap();
        }
        // After a rollback of several tokens the pairs are redone from the kept hidden state.
        s.truncate(9);
        s.eval(&tokens[9..12], false).unwrap();
        let mut out = Vec::new();
        s.mtp_draft(tokens[12], 3, &mut out).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], want[11], "draft after rollback");
    }
}

/// Greedy generation of `n` tokens after `prompt`, drafted by `spec` when given (readied
/// before the prompt when `prepare`, as the CLI does).
fn greedy_run(
    model: &Arc<Model>,
    prompt: &[u32],
    n: usize,
    mut spec: Option<&mut Speculator>,
    prepare: bool,
) -> Vec<u32> {
    let mut s = Session::new(model.clone(), &SessionParams::default()).unwrap();
    if let (Some(sp), true) = (spec.as_deref_mut(), prepare) {
        sp.prepare(&mut s).unwrap();
    }
    s.eval(prompt, false).unwrap();
    let mut hist = prompt.to_vec();
    let mut sampler = Sampler::greedy();
    speculative::generate(&mut s, &mut sampler, spec, &mut hist, n, &[], &mut |_| true).unwrap();
    hist[prompt.len()..].to_vec()
}

fn plain_greedy(model: &Arc<Model>, prompt: &[u32], n: usize) -> Vec<u32> {
    greedy_run(model, prompt, n, None, false)
}

#[test]
fn greedy_mtp_speculation_equals_plain_greedy() {
    let tokens = fixture_tokens("v3_mtp");
    let n = 40;
    for path in [fixture("v3_mtp"), gguf_path()] {
        let model = Arc::new(Model::load(&path).unwrap());
        for prompt_len in [1, 6] {
            let prompt = &tokens[..prompt_len];
            let want = plain_greedy(&model, prompt, n);
            // prepare() before the prompt (as the CLI does), or not at all: the first draft
            // then enables the module late (no drafts until the next verified token).
            for (draft, prepare) in [(1, true), (2, true), (3, false), (5, true)] {
                let drafter = SpecMode::Mtp.drafter_for(&model).unwrap().unwrap();
                let mut spec = Speculator::new(drafter, draft).unwrap();
                let got = greedy_run(&model, prompt, n, Some(&mut spec), prepare);
                let st = spec.stats();
                assert_eq!(
                    &got[..],
                    &want[..],
                    "{} prompt {prompt_len} draft {draft}",
                    path.display()
                );
                assert!(st.drafted > 0, "nothing drafted");
                println!(
                    "{} prompt {prompt_len} draft {draft}: acceptance {:.2}, {:.2} tokens/pass",
                    path.file_name().unwrap().to_string_lossy(),
                    st.acceptance_rate(),
                    st.tokens_per_pass()
                );
            }
        }
    }
}

/// The default model's trained module (models/README.md, "MTP module"): greedy speculative
/// output equals plain greedy output for drafts 1-3, on a held-out Bible verse (validation
/// document 122, Numbers 6, never trained on), and the module drafts the trunk's tokens far more
/// often than a random one would (measured: see the output; a random module: ~0-5%).
#[test]
fn default_model_trained_mtp_drafts_and_keeps_greedy_output() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/moela-tiny-v3.gguf");
    let model = Arc::new(Model::load(&path).unwrap());
    assert!(
        model.weights.mtp.is_some(),
        "the default model has no MTP module"
    );
    let tok = model.tokenizer.as_ref().unwrap();
    let prompt = tok.encode(
        "And the LORD spake unto Moses, saying, Speak unto the children of Israel, and say unto them,",
        tok.add_bos(),
        false,
    );
    let n = 48;
    let want = plain_greedy(&model, &prompt, n);
    for draft in [1, 2, 3] {
        let drafter = SpecMode::Mtp.drafter_for(&model).unwrap().unwrap();
        let mut spec = Speculator::new(drafter, draft).unwrap();
        let got = greedy_run(&model, &prompt, n, Some(&mut spec), true);
        assert_eq!(got, want, "draft {draft}");
        let st = spec.stats();
        println!(
            "default model draft {draft}: acceptance {:.2}, {:.2} tokens/pass",
            st.acceptance_rate(),
            st.tokens_per_pass()
        );
        assert!(
            st.acceptance_rate() > 0.3,
            "draft {draft}: acceptance {:.2}",
            st.acceptance_rate()
        );
    }
}

#[test]
fn spec_mtp_without_module_is_a_clear_error() {
    let model = Model::load(fixture("v3")).unwrap();
    assert!(model.weights.mtp.is_none());
    let err = SpecMode::Mtp.drafter_for(&model).err().unwrap().to_string();
    assert!(err.contains("multi-token-prediction"), "{err}");
    let model = Arc::new(model);
    let mut s = Session::new(model.clone(), &SessionParams::default()).unwrap();
    s.eval(&[1, 2], false).unwrap();
    assert!(!s.has_mtp());
    assert!(s.enable_mtp().is_err());
    assert!(s.mtp_draft(3, 2, &mut Vec::new()).is_err());
    assert!(mtp_sequence_logits(model, &[1, 2, 3], &SessionParams::default()).is_err());
    // The other modes still work on it.
    assert!(SpecMode::Lookup
        .drafter_for(&Model::load(fixture("v3")).unwrap())
        .is_ok());
}

/// Drafts the known greedy continuation with every `wrong`-th token changed (so that drafts
/// are accepted and rejected), while running the MTP module as `--spec mtp` does, and checks
/// that each of its first drafts equals the argmax of the module run afresh over the whole
/// context: the module's latent cache and hidden states stay in step with accepted and
/// rejected tokens.
struct CheckedOracle {
    model: Arc<Model>,
    want: Vec<u32>,
    prompt_len: usize,
    wrong: usize,
    checked: usize,
}

impl speculative::Drafter for CheckedOracle {
    fn draft(&mut self, _: &[u32], _: usize, _: &mut Vec<u32>) {}

    fn prepare(&mut self, session: &mut Session) -> moela::Result<()> {
        session.enable_mtp()
    }

    fn draft_in(
        &mut self,
        session: &mut Session,
        context: &[u32],
        max: usize,
        out: &mut Vec<u32>,
    ) -> moela::Result<()> {
        let mut mine = Vec::new();
        session.mtp_draft(*context.last().unwrap(), 2, &mut mine)?;
        let v = self.model.config.vocab_size;
        let fresh = mtp_sequence_logits(self.model.clone(), context, &SessionParams::default())?;
        let last = &fresh[fresh.len() - v..];
        assert_eq!(mine[0], moela::sampler::argmax(last), "context {context:?}");
        self.checked += 1;
        let at = context.len() - self.prompt_len;
        for i in at..(at + max).min(self.want.len()) {
            let t = self.want[i];
            out.push(if i % self.wrong == self.wrong - 1 {
                (t + 1) % v as u32
            } else {
                t
            });
        }
        Ok(())
    }
}

#[test]
fn mtp_state_follows_accepted_and_rejected_drafts() {
    let tokens = fixture_tokens("v3_mtp");
    let model = Arc::new(Model::load(fixture("v3_mtp")).unwrap());
    let prompt = &tokens[..4];
    let n = 30;
    let want = plain_greedy(&model, prompt, n + 8);
    for (draft, wrong) in [(3, 3), (4, 5), (2, 7)] {
        let oracle = CheckedOracle {
            model: model.clone(),
            want: want.clone(),
            prompt_len: prompt.len(),
            wrong,
            checked: 0,
        };
        let mut spec = Speculator::new(Box::new(oracle), draft).unwrap();
        let got = greedy_run(&model, prompt, n, Some(&mut spec), true);
        assert_eq!(&got[..], &want[..n]);
        let st = spec.stats();
        assert!(st.accepted > 0 && st.accepted < st.drafted, "{st:?}");
        println!("draft {draft}, every {wrong}th wrong: {st:?}");
    }
}

/// Under an expert budget the trunk's routed experts go through the expert store; the MTP
/// layer's stay in the mapping. The MTP logits and the greedy speculative output are those of
/// the unbudgeted model.
#[test]
fn mtp_under_an_expert_budget() {
    use moela::model::ModelParams;
    use moela::moe::experts::{ExpertBudget, ExpertParams};
    let (tokens, want, _) = reference();
    let path = gguf_path();
    let params = ModelParams {
        experts: ExpertParams {
            budget: ExpertBudget::Fraction(0.3),
            prefetch: true,
            profile: None,
            io_limit: None,
            page_cache: false,
        },
        ..Default::default()
    };
    let model = Arc::new(Model::load_with(&path, &params).unwrap());
    assert!(model.experts.is_some());
    let got = mtp_sequence_logits(model.clone(), &tokens, &SessionParams::default()).unwrap();
    let d = max_abs_diff(&got, &want);
    assert!(d <= TOL, "budgeted: MTP logits differ by {d}");
    let plain = plain_greedy(&Arc::new(Model::load(&path).unwrap()), &tokens[..3], 20);
    let mut spec = Speculator::new(SpecMode::Mtp.drafter_for(&model).unwrap().unwrap(), 3).unwrap();
    let mut s = Session::new(model, &SessionParams::default()).unwrap();
    spec.prepare(&mut s).unwrap();
    s.eval(&tokens[..3], false).unwrap();
    let mut hist = tokens[..3].to_vec();
    speculative::generate(
        &mut s,
        &mut Sampler::greedy(),
        Some(&mut spec),
        &mut hist,
        20,
        &[],
        &mut |_| true,
    )
    .unwrap();
    assert_eq!(&hist[3..], &plain[..]);
}

/// A seeded sampled run with MTP drafts is reproducible (the speculative-sampling rule itself
/// is tested for distributions in tests/speculative.rs; MTP drafts are deterministic like the
/// drafters there).
#[test]
fn sampled_mtp_run_is_reproducible() {
    let tokens = fixture_tokens("v3_mtp");
    let model = Arc::new(Model::load(fixture("v3_mtp")).unwrap());
    let run = |seed: u64| {
        let mut sampler = Sampler::new(moela::sampler::SamplerParams {
            temperature: 0.7,
            seed,
            ..Default::default()
        })
        .unwrap();
        let mut spec =
            Speculator::new(SpecMode::Mtp.drafter_for(&model).unwrap().unwrap(), 2).unwrap();
        let mut s = Session::new(model.clone(), &SessionParams::default()).unwrap();
        spec.prepare(&mut s).unwrap();
        s.eval(&tokens[..4], false).unwrap();
        let mut hist = tokens[..4].to_vec();
        speculative::generate(
            &mut s,
            &mut sampler,
            Some(&mut spec),
            &mut hist,
            30,
            &[],
            &mut |_| true,
        )
        .unwrap();
        hist
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}
