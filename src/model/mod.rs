//! A loaded checkpoint: config, tensor index and per-layer weight views.

pub mod deepseek;
pub mod gguf_names;
pub mod source;
pub mod tokenizer_gguf;
pub mod weights;

use std::path::{Path, PathBuf};

use crate::config::DeepSeekConfig;
use crate::error::{Error, Result};
use crate::format::{gguf::GgufFile, hf_config, safetensors::HfCheckpoint};
use crate::moe::experts::{ExpertParams, ExpertStats, ExpertStore, SourceFile};
use crate::tokenizer::Tokenizer;
use source::TensorIndex;
use weights::Weights;

/// The on-disk format a model came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceFormat {
    Gguf,
    HfSafetensors,
}

/// Opens `path` again to watch the length of the file mapped from it (`map_len` bytes).
fn watch(path: &Path, map_len: usize) -> Result<(PathBuf, std::fs::File, u64)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len != map_len as u64 {
        return Err(Error::format(
            path,
            format!("the file changed on disk while loading ({map_len} bytes mapped, {len} now)"),
        ));
    }
    Ok((path.to_path_buf(), file, len))
}

/// Refuses, with a message saying what a model path must be, a path that is neither a
/// regular file nor a directory (a device such as /dev/null, a FIFO, a socket), and a
/// directory without config.json (pointing at the .gguf files it holds, if any).
fn check_model_path(path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    const WHAT: &str =
        "a model is a .gguf file or a Hugging Face model directory (with config.json)";
    if meta.is_file() {
        return Ok(());
    }
    if !meta.is_dir() {
        return Err(Error::InvalidArg(format!(
            "{}: is {}, not a regular file or a directory; {WHAT}",
            path.display(),
            special_file_kind(&meta.file_type())
        )));
    }
    if path.join("config.json").exists() {
        return Ok(());
    }
    let mut ggufs: Vec<String> = std::fs::read_dir(path)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".gguf"))
                .collect()
        })
        .unwrap_or_default();
    ggufs.sort();
    Err(Error::InvalidArg(if ggufs.is_empty() {
        format!(
            "{}: this directory holds neither config.json nor a .gguf file; {WHAT}",
            path.display()
        )
    } else {
        format!(
            "{}: this directory has no config.json, so it is not a Hugging Face model; it holds {}: pass that file instead",
            path.display(),
            ggufs
                .iter()
                .take(3)
                .map(|n| path.join(n).display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }))
}

/// What kind of special file this is, in words.
#[cfg(unix)]
fn special_file_kind(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn special_file_kind(_: &std::fs::FileType) -> &'static str {
    "a special file"
}

/// Options of [`Model::load_with`].
#[derive(Clone, Debug, Default)]
pub struct ModelParams {
    /// Where routed experts live: by default in the file mapping like every weight; with a
    /// budget, in a bounded cache (docs/OFFLOADING.md).
    pub experts: ExpertParams,
    /// Keep every weight in the file mapping, in the file's layout. By default, where the
    /// kernel set computes a type faster on rows interleaved by eight (AVX2: Q4_0, Q5_0, Q4_K,
    /// Q5_K, Q6_K, Q4_1, Q5_1, Q2_K, Q3_K, IQ4_NL, IQ4_XS), those matrices are interleaved into memory at load and their pages of the mapping
    /// released (routed experts only without an expert budget): a load that reads them all, for faster
    /// decode and prefill. Not when the copies would take more than 3/4 of the memory
    /// available (a model larger than memory keeps streaming through the page cache).
    /// `MOELA_REPACK=0` in the environment does the same as setting this.
    pub keep_file_layout: bool,
}

impl ModelParams {
    /// Whether the loader interleaves weights (see [`Self::keep_file_layout`]).
    fn interleave_x8(&self) -> bool {
        !self.keep_file_layout && std::env::var("MOELA_REPACK").as_deref() != Ok("0")
    }
}

/// The memory the kernel says is available for new allocations without swapping
/// (`MemAvailable` of /proc/meminfo), None where it does not say.
pub(crate) fn mem_available() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: usize = info
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    kb.checked_mul(1024)
}

/// The mapping of `path` as a source of expert reads.
fn source(path: &Path, map: &memmap2::Mmap) -> Result<SourceFile> {
    Ok(SourceFile {
        path: path.to_path_buf(),
        file: std::fs::File::open(path).map_err(|e| Error::io(path, e))?,
        map_base: map.as_ptr() as usize,
        map_len: map.len(),
    })
}

/// An immutable, loaded model. `Send + Sync`: share one between threads, give each thread its
/// own [`crate::Session`].
pub struct Model {
    pub config: DeepSeekConfig,
    pub weights: Weights,
    pub tensors: TensorIndex,
    pub format: SourceFormat,
    pub path: PathBuf,
    /// GGUF metadata, kept for `inspect` (None for HF directories).
    pub gguf: Option<GgufFile>,
    /// The tokenizer the checkpoint carries (GGUF `tokenizer.ggml.*`, or `tokenizer.json`
    /// beside an HF `config.json`); None when it has none: token ids still work.
    pub tokenizer: Option<Tokenizer>,
    /// Every memory-mapped file: its path, an open handle to the same inode and the length
    /// it had when mapped (see [`Model::check_files`]).
    mapped: Vec<(PathBuf, std::fs::File, u64)>,
    /// The routed-expert cache when the model runs under an expert budget.
    pub experts: Option<ExpertStore>,
    /// [`Model::fingerprint`], computed on first use.
    fingerprint: std::sync::OnceLock<u64>,
    /// The token trie and grammar compiler of constrained decoding, built on first use.
    #[cfg_attr(not(feature = "constrain"), allow(dead_code))]
    pub(crate) grammar_env: crate::constrain::ModelGrammarEnv,
    /// Bytes of weights interleaved by eight rows into memory at load (0: every weight is in
    /// the file mapping; see [`ModelParams::keep_file_layout`]).
    pub interleaved_bytes: usize,
}

impl Model {
    /// Opens a `.gguf` file or a Hugging Face directory (`config.json` + safetensors).
    /// Reads headers only; weights stay in the mapping until used.
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        Model::load_with(path, &ModelParams::default())
    }

    /// [`load`](Self::load) with options (an expert budget).
    pub fn load_with(path: impl AsRef<Path>, params: &ModelParams) -> Result<Model> {
        let path = path.as_ref();
        let k = |cfg: &DeepSeekConfig| cfg.moe.experts_per_tok;
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        check_model_path(path, &meta)?;
        if meta.is_dir() {
            let cfg = hf_config::read_config(&path.join("config.json"))?;
            let ckpt = HfCheckpoint::open_dir(path)?;
            let fp8 = hf_config::read_quantization(&path.join("config.json"))?;
            let tensors = TensorIndex::from_hf(&ckpt, fp8);
            let weights = Weights::from_hf(&tensors, &cfg)?;
            let mapped = ckpt
                .files
                .iter()
                .map(|f| watch(&f.path, f.map.len()))
                .collect::<Result<_>>()?;
            let tokenizer = if path.join("tokenizer.json").is_file() {
                Some(Tokenizer::from_hf_path(path)?)
            } else {
                None
            };
            let sources = ckpt
                .files
                .iter()
                .map(|f| source(&f.path, &f.map))
                .collect::<Result<_>>()?;
            let experts = ExpertStore::new(&weights, sources, k(&cfg), &params.experts)?;
            Ok(Model {
                config: cfg,
                weights,
                tensors,
                format: SourceFormat::HfSafetensors,
                path: path.to_path_buf(),
                gguf: None,
                tokenizer,
                mapped,
                experts,
                fingerprint: Default::default(),
                grammar_env: Default::default(),
                interleaved_bytes: 0,
            })
        } else {
            let file = GgufFile::open(path)?;
            let tensors = TensorIndex::from_gguf(&file);
            let cfg = gguf_names::config_from_gguf(&file, &tensors)?;
            let mut weights = Weights::from_gguf(&tensors, &cfg)?;
            let tokenizer = tokenizer_gguf::tokenizer_from_gguf(&file)?;
            let experts = ExpertStore::new(
                &weights,
                vec![source(path, &file.map)?],
                k(&cfg),
                &params.experts,
            )?;
            let mut interleaved_bytes = 0;
            if params.interleave_x8() {
                // After the store, which reads routed experts from the mapping's offsets. At
                // most 3/4 of the memory available now: a model that only fits by streaming
                // through the page cache stays in the mapping.
                let k = crate::kernels::active();
                let max = mem_available().map_or(usize::MAX, |m| m / 4 * 3);
                interleaved_bytes =
                    weights.interleave_x8(experts.is_none(), |d| k.wants_x8(d), max);
            }
            Ok(Model {
                config: cfg,
                weights,
                tensors,
                format: SourceFormat::Gguf,
                path: path.to_path_buf(),
                mapped: vec![watch(path, file.map.len())?],
                gguf: Some(file),
                tokenizer,
                experts,
                fingerprint: Default::default(),
                grammar_env: Default::default(),
                interleaved_bytes,
            })
        }
    }

    /// A 64-bit hash identifying what a saved session state depends on: the tensor layout
    /// (every tensor's name, stored type, shape and byte range, in file order), the
    /// hyper-parameters and the tokenizer (tokens, types, merges, special ids, pre-tokenizer;
    /// not the chat template). Two loads of the same file give the same value; a state saved
    /// on one model is refused by a model with another fingerprint
    /// ([`crate::Session::load_state`]). Computed once, on first use.
    pub fn fingerprint(&self) -> u64 {
        *self.fingerprint.get_or_init(|| {
            let mut d: Vec<u8> = Vec::new();
            let mut put = |b: &[u8]| {
                d.extend_from_slice(&(b.len() as u64).to_le_bytes());
                d.extend_from_slice(b);
            };
            put(b"moela model fingerprint v1");
            put(format!("{:?}", self.config).as_bytes());
            for t in &self.tensors.tensors {
                put(t.name.as_bytes());
                put(t.type_name().as_bytes());
                put(format!("{:?} {:?}", t.shape, t.range).as_bytes());
            }
            match &self.tokenizer {
                None => put(b"no tokenizer"),
                Some(tok) => {
                    let parts = tok.to_parts();
                    put(format!(
                        "{} {:?} {} {:?} {:?} {:?} {} {}",
                        parts.tokens.len(),
                        parts.token_types,
                        parts.merges.len(),
                        parts.bos,
                        parts.eos,
                        parts.pad,
                        parts.add_bos,
                        parts.pre
                    )
                    .as_bytes());
                    for t in parts.tokens.iter().chain(&parts.merges) {
                        put(t.as_bytes());
                    }
                }
            }
            crate::session::hash::xxh64(&d, 0)
        })
    }

    /// Checks that every file the model maps still has the length it had when loaded.
    ///
    /// Weights are read straight from the memory mapping, so a model file must not be
    /// modified or truncated while a model is loaded from it: reading a page past the new end
    /// of a truncated file kills the process with SIGBUS, and rewritten bytes show through as
    /// silently changed weights. [`crate::Session::new`] and every [`crate::Session::eval`]
    /// call this, so a file truncated (or extended, as by an in-place rewrite) between calls
    /// gives a clear [`Error::Format`] instead. It cannot catch a change during an eval, nor a
    /// same-length rewrite: replace model files by renaming a new file over the old one or by
    /// deleting it first (the mapping keeps the old inode, and this check follows it), never
    /// by writing in place.
    pub fn check_files(&self) -> Result<()> {
        for (path, file, len) in &self.mapped {
            // The handle's metadata is the mapped inode's, even if the path has since been
            // renamed over or deleted (both harmless to the mapping).
            let now = file.metadata().map_err(|e| Error::io(path, e))?.len();
            if now != *len {
                return Err(Error::format(
                    path,
                    format!(
                        "the file changed on disk while loaded ({len} bytes when mapped, {now} \
                         now); model files must not be modified while in use: reload the model"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Counters of the routed-expert cache (`enabled` false, with the routed-expert bytes,
    /// when the model runs without an expert budget).
    pub fn expert_stats(&self) -> ExpertStats {
        match &self.experts {
            Some(s) => s.stats(),
            None => {
                let routed = crate::moe::experts::routed_expert_bytes(&self.weights);
                ExpertStats {
                    routed_expert_bytes: routed,
                    resident_bytes: routed,
                    ..Default::default()
                }
            }
        }
    }

    /// Bytes of every weight that stays resident whatever the expert budget: all tensors but
    /// the routed experts.
    pub fn resident_weight_bytes(&self) -> u64 {
        let all: u64 = self
            .tensors
            .tensors
            .iter()
            .map(|t| t.n_bytes() as u64)
            .sum();
        all.saturating_sub(crate::moe::experts::routed_expert_bytes(&self.weights))
    }

    /// Bytes of the tensors one decoded token reads (attention, dense/shared FFNs, the
    /// chosen routed experts, one embedding row and the head), for bandwidth estimates.
    pub fn active_bytes_per_token(&self) -> u64 {
        self.active_bytes_per_token_with(self.config.moe.experts_per_tok as f64)
    }

    /// [`active_bytes_per_token`](Self::active_bytes_per_token) when a token uses
    /// `experts_per_layer` routed experts per MoE layer on average (fewer than the model's
    /// top-k with run-time expert skipping; see [`crate::Session::expert_uses`]).
    pub fn active_bytes_per_token_with(&self, experts_per_layer: f64) -> u64 {
        let w = &self.weights;
        let mut routed = 0.0f64;
        let mut total = (w.embed.row_bytes() + w.norm.n_bytes() + w.lm_head.n_bytes()) as u64;
        for layer in &w.layers {
            let a = &layer.attn;
            let mut b = layer.attn_norm.n_bytes() + layer.ffn_norm.n_bytes();
            b += match &a.q {
                weights::QWeights::Direct { q } => q.n_bytes(),
                weights::QWeights::LoRA { q_a, norm, q_b } => {
                    q_a.n_bytes() + norm.n_bytes() + q_b.n_bytes()
                }
            };
            b += a.kv_a.n_bytes() + a.kv_a_norm.n_bytes() + a.o.n_bytes();
            b += a
                .k_up
                .iter()
                .chain(&a.v_up)
                .map(|p| p.stored.n_bytes())
                .sum::<usize>();
            let mlp_bytes = |m: &weights::Mlp| m.gate.n_bytes() + m.up.n_bytes() + m.down.n_bytes();
            b += match &layer.ffn {
                weights::Ffn::Dense(m) => mlp_bytes(m),
                weights::Ffn::Moe(moe) => {
                    let per_expert = moe.experts.first().map(mlp_bytes).unwrap_or(0);
                    routed += per_expert as f64 * experts_per_layer;
                    moe.router.n_bytes() + moe.shared.as_ref().map(mlp_bytes).unwrap_or(0)
                }
            };
            total += b as u64;
        }
        total + routed.round() as u64
    }
}
