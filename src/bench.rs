//! `moela bench`: prefill and decode speed, load time, memory, and decode speed as a fraction
//! of the memory-bandwidth limit (bytes of weights one decoded token reads ÷ measured read
//! bandwidth), in the manner of llama-bench.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;

use crate::error::Result;
use crate::model::{Model, ModelParams};
use crate::moe::experts::ExpertStats;
use crate::sampler::Sampler;
use crate::session::{Session, SessionParams};
use crate::speculative::{self, SpecMode, Speculator};

#[derive(Clone, Debug)]
pub struct BenchParams {
    /// Prompt tokens evaluated as one batch (0 = skip prefill).
    pub n_prompt: usize,
    /// Tokens decoded one at a time (0 = skip decode).
    pub n_gen: usize,
    /// Tokens already in the context before decoding.
    pub depth: usize,
    pub repetitions: usize,
    /// How the model is loaded (expert budget, profile, prefetch, I/O limit).
    pub model: ModelParams,
    /// KV cache element type.
    pub kv_type: crate::attention::kv_cache::KvType,
    /// Also measure greedy speculative decoding with this drafter (`Off`: not).
    pub spec: SpecMode,
    /// Most draft tokens per verification pass.
    pub draft: usize,
    /// The prompt of the speculative measurement, as text (None: 16 pseudo-random tokens
    /// repeated 4 times).
    pub spec_prompt: Option<String>,
    /// Run-time expert skipping of the measured session.
    pub expert_skip: crate::moe::router::ExpertSkip,
    /// Most tokens per forward pass ([`crate::Session::set_max_batch`]).
    pub max_batch: usize,
}

/// Greedy speculative decoding of `n_gen` tokens against plain greedy decoding, after the same
/// prompt, alternating the two in each repetition.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SpecBench {
    pub mode: String,
    pub draft: usize,
    pub prompt_tokens: usize,
    pub acceptance_rate: f64,
    pub tokens_per_pass: f64,
    pub tok_s: f64,
    pub tok_s_sd: f64,
    pub plain_tok_s: f64,
    pub plain_tok_s_sd: f64,
    /// Whether both produced the same tokens in every repetition.
    pub identical: bool,
    /// Time of one verification pass over `draft + 1` tokens ÷ time of one one-token step,
    /// at the context length after the prompt.
    pub verify_cost: f64,
    /// With `--spec mtp`: time of drafting `draft` tokens with the MTP module (one new pair,
    /// then the chained steps) ÷ time of one one-token step.
    pub draft_cost: Option<f64>,
    /// With `--spec mtp`: the decode speed relative to plain decoding that `verify_cost` and
    /// `draft_cost` give at DeepSeek's reported 85% acceptance of each drafted token
    /// (expected tokens per pass `(1 - 0.85^(k+1)) / (1 - 0.85)` ÷ the cost of a pass).
    pub speedup_at_85: Option<f64>,
}

/// Mean and standard deviation of repeated measurements.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Stat {
    pub mean: f64,
    pub sd: f64,
}

impl Stat {
    fn of(v: &[f64]) -> Stat {
        if v.is_empty() {
            return Stat::default();
        }
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64;
        Stat {
            mean,
            sd: var.sqrt(),
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchResult {
    pub model: String,
    pub threads: usize,
    pub kernels: String,
    pub n_prompt: usize,
    pub n_gen: usize,
    pub depth: usize,
    pub load_s: f64,
    pub rss_after_load_bytes: u64,
    pub rss_bytes: u64,
    pub rss_peak_bytes: u64,
    pub pp_tok_s: f64,
    pub pp_tok_s_sd: f64,
    pub tg_tok_s: f64,
    pub tg_tok_s_sd: f64,
    /// Weight bytes one decoded token reads, with the routed experts it used on average
    /// (fewer than the model's top-k with expert skipping).
    pub active_bytes_per_token: u64,
    /// The same with the model's own top-k.
    pub model_active_bytes_per_token: u64,
    /// Routed experts a decoded token used per MoE layer, on average (the model's top-k
    /// without expert skipping; 0 when nothing was decoded).
    pub experts_per_token_layer: f64,
    pub kv_bytes_per_token: u64,
    /// 0 when not measured.
    pub mem_bw_bytes_s: f64,
    /// tg_tok_s × active bytes ÷ bandwidth (0 when bandwidth was not measured).
    pub tg_bw_fraction: f64,
    /// Bytes of every weight but the routed experts (always resident).
    pub resident_weight_bytes: u64,
    /// Bytes of the KV cache of the session.
    pub kv_bytes: u64,
    pub prefetch: bool,
    /// The simulated storage speed of expert reads, bytes/s (0 = none).
    pub io_limit_bytes_s: f64,
    /// The expert cache over the decode phases (`enabled` false without a budget).
    pub expert_cache: ExpertStats,
    /// Decode phases, budgeted path: expert bytes read per decoded token, and the share of
    /// the decode time the computation waited on expert reads (0 without a budget).
    pub expert_bytes_read_per_token: f64,
    pub io_wait_share: f64,
    /// The speculative-decoding measurement, when asked for.
    pub spec: Option<SpecBench>,
}

/// Resident set size now and at its peak, from /proc/self/status (0 where unavailable).
pub fn rss_bytes() -> (u64, u64) {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else {
        return (0, 0);
    };
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Read bandwidth of this machine with the current worker threads: the best of a few passes
/// summing a 1 GiB buffer (larger than any cache) split across the threads.
pub fn measure_mem_bw() -> f64 {
    let n = (1usize << 30) / 8;
    let buf: Vec<u64> = (0..n as u64).collect();
    let chunk = n.div_ceil(rayon::current_num_threads() * 8);
    let mut best = 0.0f64;
    for _ in 0..5 {
        let t = Instant::now();
        let s: u64 = buf
            .par_chunks(chunk)
            .map(|c| c.iter().fold(0u64, |a, &b| a.wrapping_add(b)))
            .reduce(|| 0, |a, b| a.wrapping_add(b));
        let dt = t.elapsed().as_secs_f64();
        std::hint::black_box(s);
        best = best.max((n * 8) as f64 / dt);
    }
    best
}

/// Deterministic token ids in `1..vocab` (a weak LCG is enough to touch varied experts).
fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            1 + ((s >> 33) as usize % (vocab - 1)) as u32
        })
        .collect()
}

impl BenchResult {
    /// Adds a measured read bandwidth and the decode fraction of its limit.
    pub fn with_mem_bw(mut self, bw: f64) -> Self {
        self.mem_bw_bytes_s = bw;
        self.tg_bw_fraction = if bw > 0.0 {
            self.tg_tok_s * self.active_bytes_per_token as f64 / bw
        } else {
            0.0
        };
        self
    }
}

/// Runs the benchmark. Memory figures are taken before any bandwidth measurement, whose
/// 1 GiB buffer would otherwise count in the peak.
pub fn run(path: &Path, p: &BenchParams, progress: &mut dyn FnMut(&str)) -> Result<BenchResult> {
    let t = Instant::now();
    let model = Arc::new(Model::load_with(path, &p.model)?);
    if let Some(store) = &model.experts {
        store.warm_pinned()?;
    }
    let load_s = t.elapsed().as_secs_f64();
    // Before measuring anything: `--spec mtp` needs the module.
    p.spec.drafter_for(&model)?;
    let (rss_after_load, _) = rss_bytes();
    let cfg = model.config.clone();
    let spec_prompt: Vec<u32> = match (&p.spec_prompt, p.spec) {
        (_, SpecMode::Off) => Vec::new(),
        (Some(text), _) => {
            let tok = model.tokenizer.as_ref().ok_or_else(|| {
                crate::Error::InvalidArg("--spec-prompt: this model has no tokenizer".into())
            })?;
            tok.encode(text, tok.add_bos(), false)
        }
        (None, _) => tokens(16, cfg.vocab_size, 77).repeat(4),
    };
    let n_ctx = (p.depth + p.n_prompt.max(p.n_gen) + 1)
        .max(spec_prompt.len() + p.n_gen + p.draft + 2)
        .max(16);
    let params = SessionParams {
        n_ctx,
        kv_type: p.kv_type,
        expert_skip: p.expert_skip,
        ..Default::default()
    };
    let mut session = Session::new(model.clone(), &params)?;
    session.set_max_batch(p.max_batch);
    let (mut pp, mut tg) = (Vec::new(), Vec::new());
    let mut cache = ExpertStats::default();
    let (mut uses, mut token_layers) = (0u64, 0u64);
    let (mut decode_s, mut decoded) = (0.0f64, 0u64);
    for rep in 0..p.repetitions.max(1) {
        if p.n_prompt > 0 {
            session.reset();
            let toks = tokens(p.n_prompt, cfg.vocab_size, rep as u64);
            crate::stage_times::reset();
            let t = Instant::now();
            session.eval(&toks, false)?;
            pp.push(p.n_prompt as f64 / t.elapsed().as_secs_f64());
            progress(&format!(
                "rep {rep}: prefill {} tokens: {:.2} tok/s",
                p.n_prompt,
                pp[pp.len() - 1]
            ));
            if crate::stage_times::enabled() {
                progress(&crate::stage_times::report(p.n_prompt));
            }
        }
        if p.n_gen > 0 {
            session.reset();
            if p.depth > 0 {
                session.eval(&tokens(p.depth, cfg.vocab_size, 1000 + rep as u64), false)?;
            }
            let toks = tokens(p.n_gen, cfg.vocab_size, 2000 + rep as u64);
            let before = model.expert_stats();
            crate::stage_times::reset();
            session.reset_expert_uses();
            let t = Instant::now();
            for &tok in &toks {
                session.eval(&[tok], false)?;
            }
            let dt = t.elapsed().as_secs_f64();
            tg.push(p.n_gen as f64 / dt);
            (decode_s, decoded) = (decode_s + dt, decoded + p.n_gen as u64);
            let (u, tl) = session.expert_uses();
            (uses, token_layers) = (uses + u, token_layers + tl);
            cache.add_since(&model.expert_stats(), &before);
            progress(&format!(
                "rep {rep}: decode {} tokens at depth {}: {:.2} tok/s",
                p.n_gen,
                p.depth,
                tg[tg.len() - 1]
            ));
            if crate::stage_times::enabled() {
                progress(&crate::stage_times::report(p.n_gen));
            }
        }
    }
    let spec = match p.spec.drafter_for(&model)? {
        Some(_) if p.n_gen > 0 && !spec_prompt.is_empty() => {
            Some(bench_spec(&mut session, p, &spec_prompt, progress)?)
        }
        _ => None,
    };
    let (pp, tg) = (Stat::of(&pp), Stat::of(&tg));
    let model_active = model.active_bytes_per_token();
    let experts_per_token_layer = if token_layers > 0 {
        uses as f64 / token_layers as f64
    } else {
        0.0
    };
    let active = if token_layers > 0 && p.expert_skip.is_active(cfg.moe.experts_per_tok) {
        model.active_bytes_per_token_with(experts_per_token_layer)
    } else {
        model_active
    };
    let (rss, peak) = rss_bytes();
    Ok(BenchResult {
        model: path.display().to_string(),
        threads: crate::kernels::threads(),
        kernels: crate::kernels::active().name.to_string(),
        n_prompt: p.n_prompt,
        n_gen: p.n_gen,
        depth: p.depth,
        load_s,
        rss_after_load_bytes: rss_after_load,
        rss_bytes: rss,
        rss_peak_bytes: peak,
        pp_tok_s: pp.mean,
        pp_tok_s_sd: pp.sd,
        tg_tok_s: tg.mean,
        tg_tok_s_sd: tg.sd,
        active_bytes_per_token: active,
        model_active_bytes_per_token: model_active,
        experts_per_token_layer,
        kv_bytes_per_token: crate::attention::kv_cache::KvCache::bytes_per_token(
            params.kv_type,
            cfg.n_layers,
            cfg.kv_cache_row(),
        ) as u64,
        mem_bw_bytes_s: 0.0,
        tg_bw_fraction: 0.0,
        resident_weight_bytes: model.resident_weight_bytes(),
        kv_bytes: crate::attention::kv_cache::KvCache::bytes_per_token(
            params.kv_type,
            cfg.n_layers,
            cfg.kv_cache_row(),
        ) as u64
            * n_ctx as u64,
        prefetch: p.model.experts.prefetch
            && model.experts.as_ref().is_some_and(|s| s.prefetch_enabled()),
        io_limit_bytes_s: p.model.experts.io_limit.unwrap_or(0.0),
        expert_cache: {
            // The configuration and levels as of now, the counters of the decode phases.
            let now = model.expert_stats();
            ExpertStats {
                hits: cache.hits,
                misses: cache.misses,
                prefetches: cache.prefetches,
                prefetch_hits: cache.prefetch_hits,
                predicted: cache.predicted,
                predicted_layer_uses: cache.predicted_layer_uses,
                predicted_used: cache.predicted_used,
                bytes_read: cache.bytes_read,
                io_wait_ns: cache.io_wait_ns,
                page_cache_uses: cache.page_cache_uses,
                page_cache_skipped_reads: cache.page_cache_skipped_reads,
                ..now
            }
        },
        expert_bytes_read_per_token: if decoded > 0 {
            cache.bytes_read as f64 / decoded as f64
        } else {
            0.0
        },
        io_wait_share: if decode_s > 0.0 {
            cache.io_wait_ns as f64 / 1e9 / decode_s
        } else {
            0.0
        },
        spec,
    })
}

/// The speculative measurement (see [`SpecBench`]).
fn bench_spec(
    session: &mut Session,
    p: &BenchParams,
    prompt: &[u32],
    progress: &mut dyn FnMut(&str),
) -> Result<SpecBench> {
    let (mut plain, mut fast) = (Vec::new(), Vec::new());
    let mut identical = true;
    let mut stats = speculative::SpecStats::default();
    for rep in 0..p.repetitions.max(1) {
        let mut outs = Vec::new();
        for use_spec in [false, true] {
            session.reset();
            let mut spec = match p.spec.drafter_for(session.model())? {
                Some(d) if use_spec => Some(Speculator::new(d, p.draft)?),
                _ => None,
            };
            if let Some(sp) = spec.as_mut() {
                sp.prepare(session)?;
            }
            session.eval(prompt, false)?;
            let mut history = prompt.to_vec();
            let mut sampler = Sampler::greedy();
            let t = Instant::now();
            speculative::generate(
                session,
                &mut sampler,
                spec.as_mut(),
                &mut history,
                p.n_gen,
                &[],
                &mut |_| true,
            )?;
            let tok_s = p.n_gen as f64 / t.elapsed().as_secs_f64();
            if let Some(sp) = &spec {
                let s = sp.stats();
                stats.passes += s.passes;
                stats.drafted += s.drafted;
                stats.accepted += s.accepted;
                stats.emitted += s.emitted;
                fast.push(tok_s);
            } else {
                plain.push(tok_s);
            }
            outs.push(history);
        }
        identical &= outs[0] == outs[1];
        progress(&format!(
            "rep {rep}: greedy {} tokens: plain {:.2} tok/s, speculative {:.2} tok/s",
            p.n_gen,
            plain[plain.len() - 1],
            fast[fast.len() - 1]
        ));
    }
    // One verification pass of draft+1 tokens against one-token steps, at the same position
    // (rolled back after each).
    session.reset();
    session.eval(prompt, false)?;
    let pos = session.position();
    let batch = tokens(p.draft + 1, session.model().config.vocab_size, 99);
    let reps = 16;
    let (mut one, mut pass) = (f64::MAX, f64::MAX);
    for _ in 0..reps {
        let t = Instant::now();
        session.eval(&batch[..1], false)?;
        one = one.min(t.elapsed().as_secs_f64());
        session.truncate(pos);
        let t = Instant::now();
        session.verify(&batch)?;
        pass = pass.min(t.elapsed().as_secs_f64());
        session.truncate(pos);
    }
    // With MTP: one draft of `draft` tokens (the module's cache filled up to here first).
    let mut draft_cost = None;
    if p.spec == SpecMode::Mtp {
        session.reset();
        session.enable_mtp()?;
        session.eval(prompt, false)?;
        let mut out = Vec::new();
        session.mtp_draft(batch[0], p.draft, &mut out)?;
        let mut best = f64::MAX;
        for _ in 0..reps {
            out.clear();
            let t = Instant::now();
            session.mtp_draft(batch[0], p.draft, &mut out)?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        draft_cost = Some(best / one);
    }
    let speedup_at_85 = draft_cost.map(|d| {
        let a: f64 = 0.85;
        let tokens = (1.0 - a.powi(p.draft as i32 + 1)) / (1.0 - a);
        tokens / (pass / one + d)
    });
    let (plain, fast) = (Stat::of(&plain), Stat::of(&fast));
    Ok(SpecBench {
        mode: format!("{:?}", p.spec).to_lowercase(),
        draft: p.draft,
        prompt_tokens: prompt.len(),
        acceptance_rate: stats.acceptance_rate(),
        tokens_per_pass: stats.tokens_per_pass(),
        tok_s: fast.mean,
        tok_s_sd: fast.sd,
        plain_tok_s: plain.mean,
        plain_tok_s_sd: plain.sd,
        identical,
        verify_cost: pass / one,
        draft_cost,
        speedup_at_85,
    })
}
