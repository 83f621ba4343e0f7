//! The `moela` command line: run, logits, inspect, convert.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, Subcommand};
use moela::attention::kv_cache::{KvCache, KvType};
use moela::config::{QProj, Scoring, TopkMethod};
use moela::constrain::{Constraint, Grammar, Syntax};
use moela::model::ModelParams;
use moela::moe::experts::{parse_rate, ExpertBudget, ExpertParams};
use moela::moe::profile::ExpertProfile;
use moela::moe::router::ExpertSkip;
use moela::sampler::{Sampler, SamplerParams};
use moela::speculative::{SpecMode, SpecStats, Speculator};
use moela::tensor::DType;
use moela::{Model, Session, SessionParams};

#[derive(Parser)]
#[command(
    name = "moela",
    version,
    about = "DeepSeek MoE + MLA models on the CPU"
)]
struct Cli {
    /// Worker threads, 1 ..= 512 (default: all available cores).
    #[arg(short = 't', long, global = true, allow_negative_numbers = true)]
    threads: Option<i64>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate text after a prompt and stream it, with tokens/s at the end.
    Run {
        /// A .gguf file or a Hugging Face model directory (default: models/moela-tiny-v3.gguf,
        /// the toy model trained here).
        #[arg(short, long)]
        model: Option<PathBuf>,
        /// Prompt text.
        #[arg(short = 'p', long, conflicts_with = "tokens")]
        prompt: Option<String>,
        /// Prompt token ids, comma-separated, instead of text.
        #[arg(long, value_delimiter = ',')]
        tokens: Option<Vec<u32>>,
        /// Recognise special tokens (e.g. <｜User｜>) written in the prompt text.
        #[arg(long)]
        special: bool,
        /// Print token ids instead of text.
        #[arg(long)]
        ids: bool,
        /// Tokens to generate.
        #[arg(short = 'n', long, default_value_t = 64)]
        n_predict: usize,
        #[command(flatten)]
        sampling: SamplingArgs,
        #[command(flatten)]
        spec: SpecArgs,
        #[command(flatten)]
        constrain: ConstrainArgs,
        /// Context length in tokens, at most the model's trained context length (0 = that
        /// length, capped at 4096).
        #[arg(short = 'c', long, default_value_t = 0)]
        ctx: usize,
        #[command(flatten)]
        experts: ExpertArgs,
        #[command(flatten)]
        skip: SkipArgs,
        /// Keep the session in FILE across runs: when FILE holds a saved session of this
        /// model, reuse the longest prefix of its tokens that the new prompt starts with
        /// (evaluating only the rest), and write the session back to FILE at the end.
        #[arg(long, value_name = "FILE")]
        prompt_cache: Option<PathBuf>,
    },
    /// Interactive multi-turn chat in the terminal, with the model's chat template.
    Chat {
        /// A .gguf file or a Hugging Face model directory (default: models/moela-tiny-v3.gguf,
        /// the toy model trained here).
        #[arg(short, long)]
        model: Option<PathBuf>,
        /// System prompt.
        #[arg(long)]
        system: Option<String>,
        /// Most tokens per answer.
        #[arg(short = 'n', long, default_value_t = 256)]
        n_predict: usize,
        #[command(flatten)]
        sampling: SamplingArgs,
        #[command(flatten)]
        spec: SpecArgs,
        #[command(flatten)]
        constrain: ConstrainArgs,
        /// Context length in tokens, at most the model's trained context length (0 = that
        /// length, capped at 4096).
        #[arg(short = 'c', long, default_value_t = 0)]
        ctx: usize,
        #[command(flatten)]
        experts: ExpertArgs,
        #[command(flatten)]
        skip: SkipArgs,
        /// Keep the session in FILE across runs: when FILE holds a saved session of this
        /// model, reuse the longest prefix of its tokens that the new prompt starts with
        /// (evaluating only the rest), and write the session back to FILE at the end.
        #[arg(long, value_name = "FILE")]
        prompt_cache: Option<PathBuf>,
    },
    /// Print the token ids of a whole file as one JSON array.
    Tokenize {
        /// A .gguf file, an HF model directory, or a tokenizer.json.
        #[arg(short, long)]
        model: PathBuf,
        #[arg(long)]
        file: PathBuf,
        /// Recognise special tokens written in the text.
        #[arg(long)]
        special: bool,
        /// Prepend the BOS token.
        #[arg(long)]
        bos: bool,
        /// JSON output (the only format; accepted for clarity).
        #[arg(long)]
        json: bool,
    },
    /// Write the logits of every token as a float32 .npy of shape [n_tokens, n_vocab].
    ///
    /// The first --prefill tokens (default: all) run as one batch; each later token runs alone
    /// through the KV cache. Row i is always the logits after token i.
    Logits {
        #[arg(short, long)]
        model: PathBuf,
        #[arg(long, value_delimiter = ',', required = true)]
        tokens: Vec<u32>,
        #[arg(long)]
        prefill: Option<usize>,
        #[arg(long)]
        out: PathBuf,
        /// KV cache element type: f32 or f16.
        #[arg(long, default_value = "f32")]
        kv_type: String,
        /// Attention path: auto, expanded or absorbed.
        #[arg(long, default_value = "auto")]
        attn: String,
        #[command(flatten)]
        experts: ExpertArgs,
        #[command(flatten)]
        skip: SkipArgs,
    },
    /// Record how often each routed expert is chosen on a text (a JSON expert profile, for
    /// --expert-profile).
    Profile {
        #[arg(short, long)]
        model: Option<PathBuf>,
        /// The text to run.
        #[arg(short = 'f', long)]
        file: PathBuf,
        /// The profile to write.
        #[arg(short = 'o', long)]
        out: PathBuf,
        /// Context window: the text runs in windows of this many tokens, at most the model's
        /// trained context length (0 = that length, capped at 4096).
        #[arg(short = 'c', long, default_value_t = 0)]
        ctx: usize,
        /// Tokens per batch.
        #[arg(short = 'b', long, default_value_t = 256)]
        batch: usize,
    },
    /// Remove routed experts: score every routed expert on a calibration text and write a
    /// GGUF file keeping the best-scoring ones of each MoE layer (docs/PRUNING.md).
    Prune {
        /// The .gguf file (or Hugging Face directory) to prune.
        #[arg(short, long)]
        model: Option<PathBuf>,
        /// The calibration text.
        #[arg(short = 'f', long)]
        file: PathBuf,
        /// Experts to keep per MoE layer: a share (50%) or a count (8); rounded to a multiple
        /// of the routing groups.
        #[arg(
            long,
            conflicts_with = "target_size",
            required_unless_present = "target_size"
        )]
        keep: Option<String>,
        /// Keep as many experts as fit in this file size (e.g. 4GB, 500MiB).
        #[arg(long)]
        target_size: Option<String>,
        /// How experts are scored: reap (gate weight × output norm) or frequency.
        #[arg(long, default_value = "reap")]
        method: String,
        /// Tensor type or mix (as `moela convert --type`): a Hugging Face input is converted
        /// to it (default q8_0) before slicing, a GGUF input requantized after (default: its
        /// types stay).
        #[arg(long = "type", visible_alias = "quant")]
        dtype: Option<String>,
        /// The .gguf file to write.
        #[arg(short = 'o', long)]
        out: PathBuf,
        /// Context window for the calibration text (0 = the model's, capped at 4096).
        #[arg(short = 'c', long, default_value_t = 0)]
        ctx: usize,
        /// Tokens per batch.
        #[arg(short = 'b', long, default_value_t = 256)]
        batch: usize,
    },
    /// Show the config, the tensors, parameter counts and KV-cache size.
    Inspect {
        #[arg(short, long)]
        model: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Measure prefill and decode speed, load time, memory, and decode as a fraction of the
    /// memory-bandwidth limit.
    Bench {
        #[arg(short, long)]
        model: Option<PathBuf>,
        /// Prompt tokens evaluated as one batch.
        #[arg(short = 'p', long, default_value_t = 512)]
        n_prompt: usize,
        /// Tokens decoded one at a time.
        #[arg(short = 'n', long, default_value_t = 128)]
        n_gen: usize,
        /// Decode after this many tokens already in the context.
        #[arg(short = 'd', long, default_value_t = 0)]
        depth: usize,
        /// Most tokens per forward pass: a longer prompt (or depth) runs in pieces of this
        /// many.
        #[arg(long, default_value_t = moela::session::DEFAULT_MAX_BATCH, value_parser = at_least_one)]
        max_batch: usize,
        /// Repetitions (mean ± sd), at least 1.
        #[arg(short = 'r', long, default_value_t = 3, value_parser = at_least_one)]
        repetitions: usize,
        /// Measure the machine's read bandwidth (alone when no model is given).
        #[arg(long)]
        mem_bw: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        experts: ExpertArgs,
        /// Throttle expert reads to this rate (e.g. 200MB/s) to simulate slow storage; needs
        /// --expert-budget.
        #[arg(long)]
        io_limit: Option<String>,
        /// KV cache element type: f32 or f16.
        #[arg(long, default_value = "f32")]
        kv_type: String,
        /// Also measure greedy speculative decoding of -n tokens against plain decoding:
        /// acceptance rate, tokens per verification pass, tok/s with and without, and the cost
        /// of one verification pass relative to a one-token step (off, lookup or mtp).
        #[arg(long, default_value = "off")]
        spec: String,
        /// Most draft tokens per verification pass (with --spec).
        #[arg(long, default_value_t = 4, value_parser = at_least_one)]
        draft: usize,
        /// The prompt of the --spec measurement (default: 16 pseudo-random tokens repeated 4
        /// times); needs a model with a tokenizer.
        #[arg(long)]
        spec_prompt: Option<String>,
        #[command(flatten)]
        skip: SkipArgs,
    },
    /// Perplexity of a model on a text file (windows of --ctx tokens; by default the second
    /// half of each window is scored, as llama-perplexity does; see src/eval.rs).
    Ppl {
        #[arg(short, long)]
        model: PathBuf,
        /// UTF-8 text file.
        #[arg(short = 'f', long)]
        file: PathBuf,
        #[command(flatten)]
        win: WindowArgs,
        #[command(flatten)]
        skip: SkipArgs,
    },
    /// KL divergence of a model's next-token distributions from a base model's (e.g. a
    /// quantized file against a higher-precision one), top-1 agreement and both perplexities,
    /// over the same windows as `ppl`.
    Kld {
        /// The reference model.
        #[arg(long)]
        base: PathBuf,
        /// The model measured against it.
        #[arg(short, long)]
        model: PathBuf,
        #[arg(short = 'f', long)]
        file: PathBuf,
        #[command(flatten)]
        win: WindowArgs,
        #[command(flatten)]
        skip: SkipArgs,
    },
    /// Convert a Hugging Face directory to GGUF (llama.cpp's deepseek2 layout), or requantize a
    /// GGUF file.
    Convert {
        /// The Hugging Face model directory, or a GGUF file to requantize.
        input: PathBuf,
        /// The .gguf file to write.
        output: PathBuf,
        /// Tensor type (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k,
        /// q6_k, iq4_nl, iq4_xs) or a mix (q4_k_m, q5_k_m, q3_k_m, q2_k_m, iq4_xs_m, q4_0_m):
        /// see src/quant_policy.rs.
        #[arg(long = "type", visible_alias = "quant", default_value = "q8_0")]
        dtype: String,
        /// Type of the routed experts (default: as --type). With --expert-profile: the lowest
        /// type an expert may get.
        #[arg(long)]
        expert_quant: Option<String>,
        /// Expert-use profile (from `moela profile`): hot experts get more bits within
        /// --target-size.
        #[arg(long, requires = "target_size")]
        expert_profile: Option<PathBuf>,
        /// File size to fill with --expert-profile (e.g. 6GB, 500MiB).
        #[arg(long, requires = "expert_profile")]
        target_size: Option<String>,
    },
    /// List the kernel sets this CPU can run, one per line, best last (the names
    /// MOELA_KERNELS takes).
    Kernels,
}

/// Where routed experts live (docs/OFFLOADING.md).
#[derive(clap::Args, Clone, Debug)]
struct ExpertArgs {
    /// Memory for routed experts: bytes (2GiB, 500MB), a share of the routed-expert bytes
    /// (25%), or auto (no budget when the model fits in 3/4 of the memory available, else
    /// what is left of that beside the other weights); unlimited by default (every expert
    /// stays in the file mapping).
    #[arg(long)]
    expert_budget: Option<String>,
    /// Pin the hottest experts of this profile (from `moela profile`) that fit the budget.
    #[arg(long)]
    expert_profile: Option<PathBuf>,
    /// Do not predict and read ahead the next layer's experts.
    #[arg(long)]
    no_prefetch: bool,
    /// With an expert budget, read every missed expert into the budget's slots, even when the
    /// page cache holds it (by default such an expert runs straight from the file mapping, its
    /// mapped pages counted against the budget like a slot)
    #[arg(long)]
    no_page_cache: bool,
    /// Keep every weight in the file mapping as the file lays it out (by default, with the
    /// AVX2 kernels, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K, Q4_1, Q5_1, Q2_K, Q3_K, IQ4_NL and IQ4_XS weights are interleaved by eight rows
    /// into memory at load; also MOELA_REPACK=0)
    #[arg(long)]
    keep_file_layout: bool,
}

impl ExpertArgs {
    fn params(&self, io_limit: Option<&str>) -> moela::Result<ModelParams> {
        let budget = match &self.expert_budget {
            Some(b) => ExpertBudget::parse(b)?,
            None => ExpertBudget::Unlimited,
        };
        if budget == ExpertBudget::Unlimited
            && (self.expert_profile.is_some() || io_limit.is_some())
        {
            return Err(moela::Error::InvalidArg(
                "--expert-profile and --io-limit need --expert-budget".into(),
            ));
        }
        Ok(ModelParams {
            experts: ExpertParams {
                budget,
                profile: match &self.expert_profile {
                    Some(p) => Some(ExpertProfile::load(p)?),
                    None => None,
                },
                prefetch: !self.no_prefetch,
                io_limit: io_limit.map(parse_rate).transpose()?,
                page_cache: !self.no_page_cache,
            },
            keep_file_layout: self.keep_file_layout,
        })
    }
}

/// Run-time expert skipping (src/moe/router.rs, docs/PRUNING.md).
#[derive(clap::Args, Clone, Debug)]
struct SkipArgs {
    /// Skip a chosen routed expert whose normalised gate weight (its share of the router
    /// scores of the model's top-k experts) is below this, in [0, 1); the rest are
    /// renormalised as the model's routing does. The first choice is always kept. (kld: the
    /// -m model only.)
    #[arg(long, allow_negative_numbers = true)]
    expert_min_weight: Option<f32>,
    /// Use only this many of the experts the router chooses, 1 ..= the model's top-k.
    /// (kld: the -m model only.)
    #[arg(long, allow_negative_numbers = true)]
    expert_top_k: Option<i64>,
}

impl SkipArgs {
    /// The skipping asked for, checked against `model` when given.
    fn skip(&self, model: Option<&Model>) -> moela::Result<ExpertSkip> {
        let top_k = match self.expert_top_k {
            None => 0,
            Some(k) if k >= 1 => k as usize,
            Some(k) => {
                return Err(moela::Error::InvalidArg(format!(
                    "--expert-top-k is {k}: must be at least 1 (and at most the model's top-k)"
                )))
            }
        };
        let min_weight = self.expert_min_weight.unwrap_or(0.0);
        if !(0.0..1.0).contains(&min_weight) {
            return Err(moela::Error::InvalidArg(format!(
                "--expert-min-weight is {min_weight}: must be >= 0 and < 1 (0 = off)"
            )));
        }
        let skip = ExpertSkip { min_weight, top_k };
        if let Some(m) = model {
            let k = m.config.moe.experts_per_tok;
            if top_k > k {
                return Err(moela::Error::InvalidArg(format!(
                    "--expert-top-k is {top_k}: must be at most the model's top-k, {k}"
                )));
            }
            skip.check(k)?;
        }
        Ok(skip)
    }
}

#[derive(clap::Args, Clone, Debug)]
struct WindowArgs {
    /// Tokens per window.
    #[arg(short = 'c', long, default_value_t = 512)]
    ctx: usize,
    /// Tokens between window starts (default: --ctx, non-overlapping windows).
    #[arg(long)]
    stride: Option<usize>,
    /// Score every prediction of each window, not only the second half.
    #[arg(long)]
    all: bool,
}

impl WindowArgs {
    fn spec(&self) -> moela::Result<moela::eval::WindowSpec> {
        moela::eval::WindowSpec::new(self.ctx, self.stride, self.all)
    }
}

/// The text of `file` as the token ids of `model`'s tokenizer, and the BOS to start windows
/// with (when the tokenizer adds one).
fn eval_tokens(model: &Model, file: &std::path::Path) -> moela::Result<(Vec<u32>, Option<u32>)> {
    let tok = model.tokenizer.as_ref().ok_or_else(|| {
        moela::Error::InvalidArg(format!(
            "{} carries no tokenizer; perplexity needs one",
            model.path.display()
        ))
    })?;
    let text = std::fs::read_to_string(file).map_err(|e| moela::Error::io(file, e))?;
    let ids = tok.encode(&text, false, false);
    let bos = if tok.add_bos() { tok.bos() } else { None };
    Ok((ids, bos))
}

/// Sampling settings. The defaults are the library's (`SamplerParams::default()`, also the C
/// API's and Python's); the C/Python examples and the C API test script ask for greedy.
/// Negative numbers are read as values, so that a bad one gets a message about its range.
/// Speculative decoding (src/speculative.rs).
#[derive(clap::Args, Clone, Debug)]
struct SpecArgs {
    /// Speculative decoding: off, lookup (drafts copied from earlier text that continues
    /// the last 1-3 tokens) or mtp (drafts from the model's multi-token-prediction module,
    /// DeepSeek-V3/R1 files that keep it); one batched pass verifies them. The output is the
    /// same as without (token for token when greedy, the same distribution when sampling).
    #[arg(long, default_value = "off")]
    spec: String,
    /// Most draft tokens per verification pass (with --spec lookup or mtp), >= 1.
    #[arg(long, default_value_t = 4, value_parser = at_least_one)]
    draft: usize,
}

impl SpecArgs {
    /// The speculator for `model` (an error for `--spec mtp` on a model without the module).
    fn speculator(&self, model: &moela::Model) -> moela::Result<Option<Speculator>> {
        match SpecMode::parse(&self.spec)?.drafter_for(model)? {
            Some(d) => Ok(Some(Speculator::new(d, self.draft)?)),
            None => Ok(None),
        }
    }
}

/// Constrained decoding (src/constrain): the output matches a JSON Schema or a grammar.
#[derive(clap::Args, Clone, Debug)]
struct ConstrainArgs {
    /// Constrain the output to JSON that validates against the JSON Schema in FILE (llguidance:
    /// docs/CONSTRAINED.md lists the supported keywords). Generation stops when the JSON value
    /// is complete. Not with --spec.
    #[arg(long, value_name = "FILE", conflicts_with = "grammar")]
    json_schema: Option<PathBuf>,
    /// Constrain the output to the grammar in FILE: llama.cpp's GBNF (`root ::= ...`; files
    /// ending in .gbnf, or any file with `::=`), llguidance's Lark dialect (`start: ...`; .lark)
    /// or a regular expression (.regex); --grammar-syntax overrides the guess. Generation stops
    /// when the grammar is complete. Not with --spec.
    #[arg(long, value_name = "FILE")]
    grammar: Option<PathBuf>,
    /// The syntax of the --grammar file: gbnf, lark or regex (default: from its name and text).
    #[arg(long, value_name = "SYNTAX", requires = "grammar")]
    grammar_syntax: Option<String>,
}

impl ConstrainArgs {
    /// The grammar the options name, read from its file (None without one).
    fn grammar(&self) -> moela::Result<Option<Grammar>> {
        let read = |f: &PathBuf| std::fs::read_to_string(f).map_err(|e| moela::Error::io(f, e));
        if let Some(f) = &self.json_schema {
            return Ok(Some(Grammar::json_schema(read(f)?)));
        }
        let Some(f) = &self.grammar else {
            return Ok(None);
        };
        let text = read(f)?;
        let syntax = match &self.grammar_syntax {
            Some(s) => Syntax::parse(s)
                .map_err(|e| moela::Error::InvalidArg(format!("--grammar-syntax: {e}")))?,
            None => match f.extension().and_then(|e| e.to_str()) {
                Some("gbnf") => Syntax::Gbnf,
                Some("lark") => Syntax::Lark,
                Some("regex") | Some("re") => Syntax::Regex,
                Some("json") => Syntax::JsonSchema,
                _ if text.contains("::=") => Syntax::Gbnf,
                _ => Syntax::Lark,
            },
        };
        Ok(Some(Grammar::new(syntax, text)))
    }

    /// Compiles the grammar for `model` and puts it on `sampler`; refuses it with `--spec`.
    fn apply(&self, model: &Model, sampler: &mut Sampler, spec: bool) -> moela::Result<()> {
        let Some(g) = self.grammar()? else {
            return Ok(());
        };
        if spec {
            return Err(moela::Error::InvalidArg(
                "--spec does not work with --json-schema or --grammar: use one or the other".into(),
            ));
        }
        let which = if self.json_schema.is_some() {
            "--json-schema"
        } else {
            "--grammar"
        };
        let c = Constraint::new(model, &g).map_err(|e| match e {
            moela::Error::InvalidArg(m) => moela::Error::InvalidArg(format!("{which}: {m}")),
            other => other,
        })?;
        sampler.set_constraint(Some(c));
        Ok(())
    }
}

#[derive(clap::Args, Clone, Debug)]
struct SamplingArgs {
    /// Sampling temperature, finite and >= 0; 0 = greedy.
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    temp: f32,
    /// Keep the k most likely tokens, >= 0; 0 = all.
    #[arg(long, default_value_t = 40, allow_negative_numbers = true)]
    top_k: i64,
    /// Keep the smallest set of tokens whose probability reaches this, in (0, 1]; 1 = off.
    #[arg(long, default_value_t = 0.95, allow_negative_numbers = true)]
    top_p: f32,
    /// Drop tokens less likely than this times the most likely one, in [0, 1]; 0 = off.
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true)]
    min_p: f32,
    /// Penalise tokens already in the text, finite and > 0; 1 = off.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    repeat_penalty: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl SamplingArgs {
    /// The sampler, or an error naming the option, its value and the accepted range (the
    /// ranges are the library's: `SamplerParams::check`).
    fn sampler(&self) -> moela::Result<Sampler> {
        let flag = |e: moela::sampler::BadSamplerParam| {
            let name = match e.field {
                "temperature" => "--temp",
                "top_k" => "--top-k",
                "top_p" => "--top-p",
                "min_p" => "--min-p",
                "repeat_penalty" => "--repeat-penalty",
                other => other,
            };
            moela::Error::InvalidArg(format!("{name} is {}: {}", e.value, e.range))
        };
        let params = SamplerParams {
            temperature: self.temp,
            top_k: SamplerParams::top_k_from_signed(self.top_k).map_err(flag)?,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            seed: self.seed,
        };
        params.check().map_err(flag)?;
        Sampler::new(params)
    }
}

/// A count that must be at least 1 (`bench -r`).
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("must be a whole number >= 1".into()),
    }
}

/// `-c`/`--ctx` checked against the model: at most its trained context length.
fn check_ctx(ctx: usize, model: &Model) -> moela::Result<()> {
    let train = model.config.max_position_embeddings;
    if ctx > train {
        return Err(moela::Error::InvalidArg(format!(
            "-c/--ctx is {ctx}: must be at most {train}, the context length {} was trained for (0 = {})",
            model.path.display(),
            train.clamp(1, 4096)
        )));
    }
    Ok(())
}

/// The model the README's first command runs: shipped in the repository (models/).
const DEFAULT_MODEL: &str = "models/moela-tiny-v3.gguf";

fn model_path(m: Option<PathBuf>) -> moela::Result<PathBuf> {
    if let Some(m) = m {
        return Ok(m);
    }
    let candidates = [
        PathBuf::from(DEFAULT_MODEL),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_MODEL),
    ];
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        moela::Error::InvalidArg(format!(
            "no -m given and the default model {DEFAULT_MODEL} is not here"
        ))
    })
}

/// Speed of one generation.
struct GenStats {
    prompt: usize,
    prefill_s: f64,
    generated: usize,
    decode_s: f64,
    /// Speculative decoding's counters for this generation.
    spec: Option<SpecStats>,
}

impl GenStats {
    fn report(&self) {
        eprintln!(
            "\nprefill {} tokens in {:.3} s ({:.1} tok/s); generated {} tokens in {:.3} s ({:.1} tok/s)",
            self.prompt,
            self.prefill_s,
            self.prompt as f64 / self.prefill_s.max(1e-9),
            self.generated,
            self.decode_s,
            self.generated as f64 / self.decode_s.max(1e-9)
        );
        if let Some(st) = &self.spec {
            eprintln!(
                "speculative: {} verification passes, {} of {} drafts accepted ({:.1}%), {:.2} tokens per pass",
                st.passes,
                st.accepted,
                st.drafted,
                100.0 * st.acceptance_rate(),
                st.tokens_per_pass()
            );
        }
    }
}

/// Evaluates `prompt` after what the session holds, then samples up to `n` tokens, calling
/// `on_token` with each; stops at `stop` tokens, a full context, or when `on_token` says so.
/// With `spec`, speculative decoding (same output).
#[allow(clippy::too_many_arguments)]
fn generate(
    session: &mut Session,
    sampler: &mut Sampler,
    spec: Option<&mut Speculator>,
    history: &mut Vec<u32>,
    prompt: &[u32],
    n: usize,
    stop: &[u32],
    on_token: &mut dyn FnMut(u32) -> bool,
) -> moela::Result<GenStats> {
    let t0 = Instant::now();
    session.eval(prompt, false)?;
    history.extend_from_slice(prompt);
    let prefill_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut spec = spec;
    let before = spec.as_ref().map(|s| s.stats());
    let generated = moela::speculative::generate(
        session,
        sampler,
        spec.as_deref_mut(),
        history,
        n,
        stop,
        on_token,
    )?;
    let decode_s = t1.elapsed().as_secs_f64();
    let spec = spec.zip(before).map(|(s, b)| {
        let a = s.stats();
        SpecStats {
            passes: a.passes - b.passes,
            drafted: a.drafted - b.drafted,
            accepted: a.accepted - b.accepted,
            emitted: a.emitted - b.emitted,
        }
    });
    Ok(GenStats {
        prompt: prompt.len(),
        prefill_s,
        generated,
        decode_s,
        spec,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(t) = cli.threads {
        // Checked before any thread starts (moela::threads, the C API's rule too).
        let n = match u64::try_from(t)
            .map_err(|_| format!("is {t}: must be 1 ..= {}", moela::threads::MAX_THREADS))
            .and_then(moela::threads::check_threads)
        {
            Ok(n) => n,
            Err(why) => {
                eprintln!("error: -t/--threads {why}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = moela::threads::set_threads(n) {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    match run(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &PathBuf) -> moela::Result<Arc<Model>> {
    load_with(path, &ModelParams::default())
}

/// Loads a model; with an expert budget, reads the pinned experts in and says how the
/// budget is used.
fn load_with(path: &PathBuf, params: &ModelParams) -> moela::Result<Arc<Model>> {
    let t = Instant::now();
    eprintln!("loading {}", path.display());
    let m = Model::load_with(path, params)?;
    if let Some(store) = &m.experts {
        store.warm_pinned()?;
    }
    eprintln!(
        "loaded {} in {:.3} s",
        path.display(),
        t.elapsed().as_secs_f64()
    );
    if m.interleaved_bytes > 0 {
        eprintln!(
            "{:.2} GB of weights interleaved by eight rows for the {} kernels \
             (--keep-file-layout keeps the file's layout)",
            m.interleaved_bytes as f64 / 1e9,
            moela::kernels::active().name
        );
    }
    let st = m.expert_stats();
    if st.enabled {
        eprintln!(
            "expert budget {:.1} MB of {:.1} MB routed experts: {} slots of {:.2} MB, {} pinned",
            st.budget_bytes as f64 / 1e6,
            st.routed_expert_bytes as f64 / 1e6,
            st.n_slots,
            st.slot_bytes as f64 / 1e6,
            st.pinned_experts
        );
    } else if params.experts.budget == ExpertBudget::Auto {
        eprintln!(
            "expert budget auto: the {:.1} GB of weights fit in the memory available, \
             every expert stays in the file mapping",
            m.resident_weight_bytes() as f64 / 1e9 + st.routed_expert_bytes as f64 / 1e9
        );
    }
    Ok(Arc::new(m))
}

fn run(cmd: Cmd) -> moela::Result<()> {
    match cmd {
        Cmd::Run {
            model,
            prompt,
            tokens,
            special,
            ids,
            n_predict,
            sampling,
            spec,
            constrain,
            ctx,
            experts,
            skip,
            prompt_cache,
        } => {
            let mut sampler = sampling.sampler()?;
            SpecMode::parse(&spec.spec)?;
            constrain.grammar()?;
            skip.skip(None)?;
            let model = load_with(&model_path(model)?, &experts.params(None)?)?;
            let mut spec = spec.speculator(&model)?;
            check_ctx(ctx, &model)?;
            constrain.apply(&model, &mut sampler, spec.is_some())?;
            let expert_skip = skip.skip(Some(&model))?;
            let keep = model.clone();
            let tok = keep.tokenizer.as_ref();
            let prompt_ids = match (&prompt, tokens) {
                (_, Some(t)) => t,
                (Some(text), None) => {
                    let t = tok.ok_or_else(|| {
                        moela::Error::InvalidArg(
                            "this model has no tokenizer: give --tokens".into(),
                        )
                    })?;
                    t.encode(text, t.add_bos(), special)
                }
                (None, None) => {
                    return Err(moela::Error::InvalidArg(
                        "give a prompt: -p TEXT or --tokens 1,2,3".into(),
                    ))
                }
            };
            if prompt_ids.is_empty() {
                return Err(moela::Error::InvalidArg("the prompt is empty".into()));
            }
            let stop: Vec<u32> = model
                .config
                .eos_token_id
                .into_iter()
                .chain(tok.and_then(|t| t.eos()))
                .collect();
            let mut session = Session::new(
                model,
                &SessionParams {
                    n_ctx: ctx,
                    expert_skip,
                    ..Default::default()
                },
            )?;
            if let Some(sp) = spec.as_mut() {
                sp.prepare(&mut session)?;
            }
            let reused = match &prompt_cache {
                Some(f) => reuse_prompt_cache(&mut session, f, &prompt_ids)?,
                None => 0,
            };
            let mut out = std::io::stdout().lock();
            let mut stream = moela::tokenizer::StreamDecoder::new();
            if let (Some(text), Some(_), false) = (&prompt, tok, ids) {
                write!(out, "{text}").ok();
            }
            let mut history = prompt_ids[..reused].to_vec();
            let stats = generate(
                &mut session,
                &mut sampler,
                spec.as_mut(),
                &mut history,
                &prompt_ids[reused..],
                n_predict,
                &stop,
                &mut |id| {
                    match (tok, ids) {
                        (Some(t), false) => {
                            if let Ok(piece) = stream.push(t, id) {
                                write!(out, "{piece}").ok();
                            }
                        }
                        _ => {
                            write!(out, "{id} ").ok();
                        }
                    }
                    out.flush().is_ok()
                },
            )?;
            write!(out, "{}", stream.flush()).ok();
            writeln!(out).ok();
            stats.report();
            if let Some(f) = &prompt_cache {
                save_prompt_cache(&session, f)?;
            }
            Ok(())
        }
        Cmd::Chat {
            model,
            system,
            n_predict,
            sampling,
            spec,
            constrain,
            ctx,
            experts,
            skip,
            prompt_cache,
        } => chat(
            model_path(model)?,
            &experts.params(None)?,
            system,
            n_predict,
            spec,
            &constrain,
            sampling,
            ctx,
            &skip,
            prompt_cache,
        ),
        Cmd::Tokenize {
            model,
            file,
            special,
            bos,
            json: _,
        } => {
            let t = load_tokenizer(&model)?;
            let text = std::fs::read_to_string(&file).map_err(|e| moela::Error::io(&file, e))?;
            let ids = t.encode(&text, bos, special);
            print_out(&format!(
                "{}\n",
                serde_json::to_string(&ids).unwrap_or_default()
            ));
            Ok(())
        }
        Cmd::Logits {
            model,
            tokens,
            prefill,
            out,
            kv_type,
            attn,
            experts,
            skip,
        } => {
            skip.skip(None)?;
            let model = load_with(&model, &experts.params(None)?)?;
            let expert_skip = skip.skip(Some(&model))?;
            let kv_type = parse_kv_type(&kv_type)?;
            let attn_path = match attn.as_str() {
                "auto" => moela::attention::mla::AttnPath::Auto,
                "expanded" => moela::attention::mla::AttnPath::Expanded,
                "absorbed" => moela::attention::mla::AttnPath::Absorbed,
                o => {
                    return Err(moela::Error::InvalidArg(format!(
                        "--attn {o}: expected auto, expanded or absorbed"
                    )))
                }
            };
            let n_vocab = model.config.vocab_size;
            let params = SessionParams {
                n_ctx: 0,
                kv_type,
                attn_path,
                expert_skip,
            };
            let rows = moela::session::sequence_logits(
                model,
                &tokens,
                prefill.unwrap_or(tokens.len()),
                &params,
            )?;
            moela::npy::write_f32(&out, &rows, tokens.len(), n_vocab)?;
            eprintln!("wrote {} [{} x {}]", out.display(), tokens.len(), n_vocab);
            Ok(())
        }
        Cmd::Profile {
            model,
            file,
            out,
            ctx,
            batch,
        } => profile(&model_path(model)?, &file, &out, ctx, batch),
        Cmd::Prune {
            model,
            file,
            keep,
            target_size,
            method,
            dtype,
            out,
            ctx,
            batch,
        } => prune(
            &model_path(model)?,
            &file,
            keep.as_deref(),
            target_size.as_deref(),
            &method,
            dtype.as_deref(),
            &out,
            ctx,
            batch,
        ),
        Cmd::Inspect { model, json } => inspect(&*load(&model)?, json),
        Cmd::Bench {
            model,
            n_prompt,
            n_gen,
            depth,
            max_batch,
            repetitions,
            mem_bw,
            json,
            experts,
            io_limit,
            kv_type,
            spec,
            draft,
            spec_prompt,
            skip,
        } => {
            let expert_skip = skip.skip(None)?;
            let Some(model) = model else {
                let bw = moela::bench::measure_mem_bw();
                if json {
                    print_out(&format!(
                        "{}\n",
                        serde_json::json!({"mem_bw_bytes_s": bw, "threads": moela::kernels::threads()})
                    ));
                } else {
                    print_out(&format!(
                        "read bandwidth: {:.2} GB/s with {} threads\n",
                        bw / 1e9,
                        moela::kernels::threads()
                    ));
                }
                return Ok(());
            };
            let p = moela::bench::BenchParams {
                n_prompt,
                n_gen,
                depth,
                repetitions,
                model: experts.params(io_limit.as_deref())?,
                kv_type: parse_kv_type(&kv_type)?,
                spec: SpecMode::parse(&spec)?,
                draft,
                spec_prompt,
                expert_skip,
                max_batch,
            };
            let mut r = moela::bench::run(&model, &p, &mut |l| eprintln!("{l}"))?;
            if mem_bw {
                r = r.with_mem_bw(moela::bench::measure_mem_bw());
            }
            if json {
                print_out(&format!(
                    "{}\n",
                    serde_json::to_string(&r).unwrap_or_default()
                ));
            } else {
                let gb = |b: f64| b / 1e9;
                let mut o = format!(
                    "model {} | {} threads, {} kernels\nload {:.3} s, RSS after load {:.1} MB, peak {:.1} MB\n",
                    r.model, r.threads, r.kernels, r.load_s,
                    r.rss_after_load_bytes as f64 / 1e6, r.rss_peak_bytes as f64 / 1e6
                );
                o += &format!(
                    "pp{}: {:.2} ± {:.2} tok/s\n",
                    r.n_prompt, r.pp_tok_s, r.pp_tok_s_sd
                );
                o += &format!(
                    "tg{} @ d{}: {:.2} ± {:.2} tok/s\n",
                    r.n_gen, r.depth, r.tg_tok_s, r.tg_tok_s_sd
                );
                o += &format!(
                    "weights read per token {:.3} GB, KV cache {} bytes/token\n",
                    gb(r.active_bytes_per_token as f64),
                    r.kv_bytes_per_token
                );
                if r.active_bytes_per_token != r.model_active_bytes_per_token {
                    o += &format!(
                        "expert skipping: {:.3} routed experts per token per MoE layer in decode; \
                         weights read per token {:.2} MB vs {:.2} MB at the model's top-k ({:.1}%)\n",
                        r.experts_per_token_layer,
                        r.active_bytes_per_token as f64 / 1e6,
                        r.model_active_bytes_per_token as f64 / 1e6,
                        100.0 * r.active_bytes_per_token as f64
                            / r.model_active_bytes_per_token.max(1) as f64
                    );
                }
                let c = &r.expert_cache;
                if c.enabled {
                    o += &format!(
                        "experts: budget {:.1} MB ({} slots), resident weights {:.1} MB; decode: hit rate {:.1}%, \
                         {:.1}% of uses from the page cache, {:.1} MB read ({:.1} MB/token), waited {:.3} s on I/O ({:.1}% of decode), \
                         prefetch precision {:.1}% ({} read ahead), \
                         next-layer prediction precision {:.1}% recall {:.1}%\n",
                        c.budget_bytes as f64 / 1e6,
                        c.n_slots,
                        r.resident_weight_bytes as f64 / 1e6,
                        100.0 * c.hit_rate(),
                        100.0 * c.page_cache_rate(),
                        c.bytes_read as f64 / 1e6,
                        r.expert_bytes_read_per_token / 1e6,
                        c.io_wait_ns as f64 / 1e9,
                        100.0 * r.io_wait_share,
                        100.0 * c.prefetch_precision(),
                        c.prefetches,
                        100.0 * c.prediction_precision(),
                        100.0 * c.prediction_recall()
                    );
                }
                if let Some(sp) = &r.spec {
                    o += &format!(
                        "speculative (greedy, draft {}, {} prompt tokens): acceptance {:.1}%, {:.2} tokens per pass, \
                         {:.2} ± {:.2} tok/s vs {:.2} ± {:.2} plain ({:.2}x), same tokens: {}; \
                         a pass of {} tokens costs {:.2}x a one-token step\n",
                        sp.draft,
                        sp.prompt_tokens,
                        100.0 * sp.acceptance_rate,
                        sp.tokens_per_pass,
                        sp.tok_s,
                        sp.tok_s_sd,
                        sp.plain_tok_s,
                        sp.plain_tok_s_sd,
                        sp.tok_s / sp.plain_tok_s.max(1e-9),
                        sp.identical,
                        sp.draft + 1,
                        sp.verify_cost
                    );
                    if let (Some(d), Some(x)) = (sp.draft_cost, sp.speedup_at_85) {
                        o += &format!(
                            "MTP: drafting {} tokens costs {:.2}x a one-token step; at DeepSeek's \
                             85% acceptance, decode would run at {:.2}x plain\n",
                            sp.draft, d, x
                        );
                    }
                }
                if r.mem_bw_bytes_s > 0.0 {
                    o += &format!(
                        "read bandwidth {:.2} GB/s → limit {:.2} tok/s; decode at {:.0}% of it\n",
                        gb(r.mem_bw_bytes_s),
                        r.mem_bw_bytes_s / r.active_bytes_per_token as f64,
                        100.0 * r.tg_bw_fraction
                    );
                }
                print_out(&o);
            }
            Ok(())
        }
        Cmd::Ppl {
            model,
            file,
            win,
            skip,
        } => {
            let spec = win.spec()?;
            skip.skip(None)?;
            let model = load(&model)?;
            let expert_skip = skip.skip(Some(&model))?;
            let (tokens, bos) = eval_tokens(&model, &file)?;
            eprintln!(
                "{} tokens, {} windows of {} (stride {}), scoring from window position {}",
                tokens.len(),
                spec.windows(tokens.len()).len(),
                spec.ctx,
                spec.stride,
                spec.first_scored()
            );
            let t = Instant::now();
            let nll = moela::eval::perplexity_of_skipping(
                &model,
                &tokens,
                bos,
                &spec,
                &expert_skip,
                &mut |i, n, m| {
                    let (p, _) = moela::eval::perplexity(m);
                    eprintln!("[{i}/{n}] ppl {p:.4}");
                },
            )?;
            let (p, se) = moela::eval::perplexity(&nll);
            println!(
                "PPL = {p:.4} +/- {se:.4} ({} tokens scored, mean NLL {:.5} nats, {:.1} s)",
                nll.n,
                nll.mean(),
                t.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Cmd::Kld {
            base,
            model,
            file,
            win,
            skip,
        } => {
            let spec = win.spec()?;
            skip.skip(None)?;
            let base_path = base;
            let base = load(&base_path)?;
            // The same file twice (expert skipping against the model itself): one mapping.
            let model = if model == base_path {
                base.clone()
            } else {
                load(&model)?
            };
            let expert_skip = skip.skip(Some(&model))?;
            let (tokens, bos) = eval_tokens(&base, &file)?;
            eprintln!(
                "{} tokens (base model's tokenizer), {} windows of {} (stride {})",
                tokens.len(),
                spec.windows(tokens.len()).len(),
                spec.ctx,
                spec.stride
            );
            let t = Instant::now();
            let s = moela::eval::kld_of_skipping(
                &base,
                &model,
                &tokens,
                bos,
                &spec,
                &expert_skip,
                &mut |i, n, s| {
                    eprintln!(
                        "[{i}/{n}] KLD {:.6}, top-1 {:.2}%",
                        s.kld.mean(),
                        100.0 * s.top1_fraction()
                    );
                },
            )?;
            let (pb, seb) = moela::eval::perplexity(&s.nll_base);
            let (pq, seq) = moela::eval::perplexity(&s.nll_q);
            println!("positions scored : {}", s.kld.n);
            println!(
                "mean KLD         : {:.6} +/- {:.6} nats",
                s.kld.mean(),
                s.kld.stderr()
            );
            println!(
                "top-1 agreement  : {:.2}% ({}/{})",
                100.0 * s.top1_fraction(),
                s.top1_same,
                s.kld.n
            );
            println!("PPL base         : {pb:.4} +/- {seb:.4}");
            println!("PPL model        : {pq:.4} +/- {seq:.4}");
            println!("time             : {:.1} s", t.elapsed().as_secs_f64());
            Ok(())
        }
        Cmd::Convert {
            input,
            output,
            dtype,
            expert_quant,
            expert_profile,
            target_size,
        } => {
            let expert = match expert_quant {
                None => None,
                Some(t) => Some(DType::from_name(&t).ok_or_else(|| {
                    moela::Error::InvalidArg(format!("--expert-quant {t}: not a GGUF type"))
                })?),
            };
            let profile = match (expert_profile, target_size) {
                (Some(p), Some(t)) => Some((
                    moela::moe::profile::ExpertProfile::load(&p)?,
                    moela::quant_policy::parse_size(&t)?,
                )),
                _ => None,
            };
            let opts = moela::convert::ConvertOptions {
                base: moela::quant_policy::Base::parse(&dtype)?,
                expert,
                profile,
            };
            let t = Instant::now();
            let summary = moela::convert::convert_with(&input, &output, &opts, &mut |line| {
                eprintln!("{line}")
            })?;
            eprintln!("{}", summary.table());
            let size = std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0);
            eprintln!(
                "wrote {} ({:.1} MB) in {:.1} s",
                output.display(),
                size as f64 / 1e6,
                t.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Cmd::Kernels => {
            for k in moela::kernels::available() {
                println!("{}", k.name);
            }
            Ok(())
        }
    }
}

/// `moela profile`: runs the text through the model in windows of the context, counting
/// each layer's expert choices.
fn profile(
    path: &PathBuf,
    file: &PathBuf,
    out: &std::path::Path,
    ctx: usize,
    batch: usize,
) -> moela::Result<()> {
    let model = load(path)?;
    check_ctx(ctx, &model)?;
    let tok = model.tokenizer.as_ref().ok_or_else(|| {
        moela::Error::InvalidArg("this model has no tokenizer, so it cannot read text".into())
    })?;
    let text = std::fs::read_to_string(file).map_err(|e| moela::Error::io(file, e))?;
    let ids = tok.encode(&text, false, false);
    if ids.is_empty() {
        return Err(moela::Error::InvalidArg(format!(
            "{}: no tokens",
            file.display()
        )));
    }
    let mut session = Session::new(
        model.clone(),
        &SessionParams {
            n_ctx: ctx,
            ..Default::default()
        },
    )?;
    session.record_profile(&path.display().to_string());
    let batch = batch.max(1);
    let t = Instant::now();
    for window in ids.chunks(session.n_ctx()) {
        session.reset();
        for chunk in window.chunks(batch) {
            session.eval(chunk, false)?;
        }
    }
    let mut p = session
        .take_profile()
        .ok_or_else(|| moela::Error::InvalidArg("no profile recorded".into()))?;
    p.tokens = ids.len() as u64;
    p.save(out)?;
    eprintln!(
        "profiled {} tokens in {:.1} s; wrote {}",
        ids.len(),
        t.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

/// `moela prune`: calibrates, chooses the experts to keep and writes the pruned file.
#[allow(clippy::too_many_arguments)]
fn prune(
    path: &std::path::Path,
    file: &std::path::Path,
    keep: Option<&str>,
    target_size: Option<&str>,
    method: &str,
    dtype: Option<&str>,
    out: &std::path::Path,
    ctx: usize,
    batch: usize,
) -> moela::Result<()> {
    use moela::moe::prune as mp;
    let opts = moela::prune::PruneOptions {
        keep: moela::prune::Keep::parse(keep, target_size)?,
        method: mp::Method::parse(method)?,
        dtype: dtype.map(moela::quant_policy::Base::parse).transpose()?,
        n_ctx: ctx,
        batch,
    };
    let tok = load_tokenizer(path)?;
    let text = std::fs::read_to_string(file).map_err(|e| moela::Error::io(file, e))?;
    let ids = tok.encode(&text, false, false);
    if ids.is_empty() {
        return Err(moela::Error::InvalidArg(format!(
            "{}: no tokens",
            file.display()
        )));
    }
    eprintln!("calibration text {}", file.display());
    let t = Instant::now();
    let r = moela::prune::prune_model(path, out, &ids, &opts, &mut |line| eprintln!("{line}"))?;
    let reap = r.stats.scores(mp::Method::Reap);
    eprintln!("\n| layer | kept experts | routings kept | REAP mass kept |");
    eprintln!("|---|---|---|---|");
    for ((l, ids), ls) in r.kept.iter().zip(&r.stats.layers) {
        let share = |v: &[f64]| {
            let all: f64 = v.iter().sum();
            let k: f64 = ids.iter().map(|&e| v[e]).sum();
            if all > 0.0 {
                100.0 * k / all
            } else {
                100.0
            }
        };
        let freq: Vec<f64> = ls.count.iter().map(|&c| c as f64).collect();
        let rs = &reap.iter().find(|(x, _)| x == l).expect("layer scored").1;
        eprintln!(
            "| {l} | {ids:?} | {:.1}% | {:.1}% |",
            share(&freq),
            share(rs)
        );
    }
    let s = &r.summary;
    eprintln!(
        "\nexperts per layer {} -> {}, top-k {} -> {}; wrote {} ({:.1} MB, unpruned {:.1} MB) in {:.1} s",
        s.experts_before,
        s.experts_after,
        s.used_before,
        s.used_after,
        out.display(),
        s.file_bytes as f64 / 1e6,
        s.input_bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A tokenizer from a GGUF file (its metadata only), an HF model directory or a tokenizer.json.
fn load_tokenizer(path: &std::path::Path) -> moela::Result<moela::tokenizer::Tokenizer> {
    if path.is_file() && path.extension().is_some_and(|e| e == "gguf") {
        let f = moela::format::gguf::GgufFile::open(path)?;
        return moela::model::tokenizer_gguf::tokenizer_from_gguf(&f)?.ok_or_else(|| {
            moela::Error::InvalidArg(format!("{} carries no tokenizer", path.display()))
        });
    }
    moela::tokenizer::Tokenizer::from_hf_path(path)
}

/// The interactive chat loop: each turn renders the whole conversation with the chat
/// template, evaluates only what the session does not hold yet, and streams the answer.
/// R1-style reasoning (`<think>…</think>`) is shown dimmed and left out of the history.
/// `--prompt-cache FILE` before a prompt: loads FILE into `session` when it exists and is a
/// saved session of this model, cache type and context, then keeps the longest prefix of its
/// tokens that `prompt` starts with (leaving at least one prompt token to evaluate, for the
/// logits). Returns how many prompt tokens are reused. A FILE that is not a moela session
/// state is an error (it would be overwritten); a state that does not fit is reported and
/// ignored.
fn reuse_prompt_cache(
    session: &mut Session,
    file: &std::path::Path,
    prompt: &[u32],
) -> moela::Result<usize> {
    if !file.exists() {
        eprintln!(
            "prompt cache: {} does not exist yet, it will be written",
            file.display()
        );
        return Ok(0);
    }
    if !moela::session::state::is_state_file(file)? {
        return Err(moela::Error::InvalidArg(format!(
            "--prompt-cache {}: the file exists and is not a moela session state (refusing to overwrite it)",
            file.display()
        )));
    }
    if let Err(e) = session.load_state_file(file) {
        eprintln!("prompt cache: not used ({e}); it will be overwritten");
        session.reset();
        return Ok(0);
    }
    let cached = session.tokens().len();
    let mut common = session
        .tokens()
        .iter()
        .zip(prompt)
        .take_while(|(a, b)| a == b)
        .count();
    if common == prompt.len() {
        common -= 1;
    }
    session.truncate(common);
    eprintln!(
        "prompt cache: reused {common} of {} prompt tokens ({cached} cached) from {}",
        prompt.len(),
        file.display()
    );
    Ok(common)
}

/// `--prompt-cache FILE` at the end: writes the session to FILE.
fn save_prompt_cache(session: &Session, file: &std::path::Path) -> moela::Result<()> {
    let t = Instant::now();
    session.save_state_file(file)?;
    eprintln!(
        "prompt cache: saved {} tokens ({} bytes) to {} in {:.3} s",
        session.position(),
        session.state_size(),
        file.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn chat(
    path: PathBuf,
    params: &ModelParams,
    system: Option<String>,
    n_predict: usize,
    spec: SpecArgs,
    constrain: &ConstrainArgs,
    sampling: SamplingArgs,
    ctx: usize,
    skip: &SkipArgs,
    prompt_cache: Option<PathBuf>,
) -> moela::Result<()> {
    use moela::tokenizer::{split_reasoning, ChatMessage, StreamDecoder};
    use std::io::BufRead;
    let mut sampler = sampling.sampler()?;
    SpecMode::parse(&spec.spec)?;
    constrain.grammar()?;
    skip.skip(None)?;
    let model = load_with(&path, params)?;
    let mut spec = spec.speculator(&model)?;
    check_ctx(ctx, &model)?;
    constrain.apply(&model, &mut sampler, spec.is_some())?;
    let expert_skip = skip.skip(Some(&model))?;
    let keep = model.clone();
    let tok = keep.tokenizer.as_ref().ok_or_else(|| {
        moela::Error::InvalidArg("this model has no tokenizer, so it cannot chat".into())
    })?;
    let stop: Vec<u32> = model
        .config
        .eos_token_id
        .into_iter()
        .chain(tok.eos())
        .collect();
    let mut session = Session::new(
        model,
        &SessionParams {
            n_ctx: ctx,
            expert_skip,
            ..Default::default()
        },
    )?;
    if let Some(sp) = spec.as_mut() {
        sp.prepare(&mut session)?;
    }
    let mut messages: Vec<ChatMessage> = system.into_iter().map(ChatMessage::system).collect();
    let mut held: Vec<u32> = Vec::new();
    // With --prompt-cache, the first turn reuses what FILE holds.
    let mut first_turn = prompt_cache.is_some();
    let stdin = std::io::stdin();
    let color = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none();
    eprintln!(
        "chat with {} (/exit, /quit, an empty line or Ctrl-D to quit)",
        path.display()
    );
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).unwrap_or(0) == 0 {
            // Ctrl-D (end of input): end the "> " line so the shell prompt starts on its own.
            eprintln!();
            break;
        }
        if is_quit(&line) {
            break;
        }
        messages.push(ChatMessage::user(line.trim_end_matches(['\n', '\r'])));
        // Control-token text typed by the user stays plain text.
        let ids = tok.encode_chat(&messages, true)?;
        if std::mem::take(&mut first_turn) {
            if let Some(f) = &prompt_cache {
                reuse_prompt_cache(&mut session, f, &ids)?;
                held = session.tokens().to_vec();
            }
        }
        // Reuse the cached prefix: roll the session back to where the rendering changed
        // earlier text, keeping at least one token to evaluate.
        let mut common = held.iter().zip(&ids).take_while(|(a, b)| a == b).count();
        if common == ids.len() {
            common -= 1;
        }
        if common < held.len() {
            session.truncate(common);
            held.truncate(common);
        }
        let new = ids[held.len()..].to_vec();
        let mut text = String::new();
        let mut stream = StreamDecoder::new().skip_special(true);
        let mut out = std::io::stdout().lock();
        // Each answer starts the constraint (--json-schema / --grammar) afresh.
        if let Some(c) = sampler.constraint_mut() {
            c.reset();
        }
        let stats = generate(
            &mut session,
            &mut sampler,
            spec.as_mut(),
            &mut held,
            &new,
            n_predict,
            &stop,
            &mut |id| {
                if let Ok(piece) = stream.push(tok, id) {
                    let before = text.contains("<think>") && !text.contains("</think>");
                    text.push_str(&piece);
                    let thinking = text.contains("<think>") && !text.contains("</think>");
                    if color && thinking && !before {
                        write!(out, "\x1b[2m").ok();
                    }
                    write!(out, "{piece}").ok();
                    if color && before && !thinking {
                        write!(out, "\x1b[0m").ok();
                    }
                }
                out.flush().is_ok()
            },
        )?;
        text.push_str(&stream.flush());
        writeln!(out, "{}", if color { "\x1b[0m" } else { "" }).ok();
        stats.report();
        let (_, answer) = split_reasoning(&text);
        messages.push(ChatMessage::assistant(answer.trim()));
    }
    if let Some(f) = &prompt_cache {
        save_prompt_cache(&session, f)?;
    }
    Ok(())
}

/// Whether a line typed in `moela chat` ends it: empty, `/exit` or `/quit` (never sent to
/// the model).
fn is_quit(line: &str) -> bool {
    matches!(line.trim(), "" | "/exit" | "/quit")
}

/// Prints to stdout; a closed pipe (`moela inspect | head`) ends the output quietly.
fn print_out(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn inspect(model: &Model, json: bool) -> moela::Result<()> {
    use std::fmt::Write as _;
    let c = &model.config;
    let (total, active) = c.parameter_counts();
    let kv_mla = KvCache::bytes_per_token(KvType::F32, c.n_layers, c.kv_cache_row());
    // Plain multi-head attention would cache full K (qk_head_dim) and V per head and layer.
    let kv_mha = c.n_layers * c.n_heads * (c.qk_head_dim() + c.v_head_dim) * 4;
    let q = match c.q_proj {
        QProj::Direct => "direct".to_string(),
        QProj::LoRA { rank } => format!("lora rank {rank}"),
    };
    let routing = format!(
        "{}/{}",
        match c.moe.scoring {
            Scoring::Softmax => "softmax",
            Scoring::Sigmoid => "sigmoid",
        },
        match c.moe.topk_method {
            TopkMethod::Greedy => "greedy",
            TopkMethod::GroupLimitedGreedy => "group_limited_greedy",
            TopkMethod::NoauxTc => "noaux_tc",
        }
    );
    if json {
        let tensors: Vec<serde_json::Value> = model
            .tensors
            .tensors
            .iter()
            .map(|t| serde_json::json!({"name": t.name, "type": t.type_name(), "shape": t.shape, "bytes": t.n_bytes()}))
            .collect();
        let v = serde_json::json!({
            "path": model.path.display().to_string(),
            "format": format!("{:?}", model.format),
            "config": format!("{:?}", c),
            "q_proj": q,
            "routing": routing,
            "n_params": total,
            "n_params_active": active,
            "active_bytes_per_token": model.active_bytes_per_token(),
            "kv_bytes_per_token_f32": kv_mla,
            "kv_bytes_per_token_mha_f32": kv_mha,
            "tensors": tensors,
        });
        print_out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&v).unwrap_or_default()
        ));
        return Ok(());
    }
    let mut o = String::new();
    let _ = writeln!(o, "model: {} ({:?})", model.path.display(), model.format);
    let _ = writeln!(o,
        "family {:?}: hidden {}, layers {} (first {} dense), heads {}, q {q}, kv_lora {}, qk {}+{} v {}",
        c.family, c.hidden_size, c.n_layers, c.first_k_dense_replace, c.n_heads, c.kv_lora_rank,
        c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim
    );
    let _ =
        writeln!(o,
        "moe: {} routed (top {}), {} shared, routing {routing}, groups {}/{}, norm {}, scale {}",
        c.moe.n_routed_experts,
        c.moe.experts_per_tok,
        c.moe.n_shared_experts,
        c.moe.topk_group,
        c.moe.n_group,
        c.moe.norm_topk_prob,
        c.moe.routed_scaling_factor
    );
    if let Some(m) = &model.weights.mtp {
        let _ = writeln!(
            o,
            "mtp: one multi-token-prediction block after the trunk (layer {}; own embedding: {}, \
             own head: {}); --spec mtp drafts with it",
            c.n_layers,
            m.embed.is_some(),
            m.head.is_some()
        );
    }
    let _ = writeln!(
        o,
        "vocab {}, rope theta {}, yarn {:?}",
        c.vocab_size, c.rope_theta, c.yarn
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<48} {:>6} {:>24} {:>14}",
        "tensor", "type", "shape", "bytes"
    );
    for t in &model.tensors.tensors {
        let _ = writeln!(
            o,
            "{:<48} {:>6} {:>24} {:>14}",
            t.name,
            t.type_name(),
            format!("{:?}", t.shape),
            t.n_bytes()
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "parameters: {total} total, {active} active per token");
    let _ = writeln!(
        o,
        "weight bytes read per token: {}",
        model.active_bytes_per_token()
    );
    let _ = writeln!(o,
        "KV cache per token (f32): {kv_mla} bytes with MLA vs {kv_mha} with plain MHA ({:.1}x smaller)",
        kv_mha as f64 / kv_mla as f64
    );
    print_out(&o);
    Ok(())
}

/// `--kv-type`: f32 or f16.
fn parse_kv_type(s: &str) -> moela::Result<KvType> {
    match s {
        "f32" => Ok(KvType::F32),
        "f16" => Ok(KvType::F16),
        o => Err(moela::Error::InvalidArg(format!(
            "--kv-type {o}: expected f32 or f16"
        ))),
    }
}
