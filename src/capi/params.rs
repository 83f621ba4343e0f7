//! The versioned structs that cross the ABI (parameters in, info and statistics out), their
//! defaults, and the `struct_size` protocol.
//!
//! Every such struct starts with `uint32_t struct_size`. A struct only ever grows at its end,
//! so an older caller's smaller struct is a prefix of the current one: the library reads (or
//! writes) only the caller's `struct_size` bytes and uses defaults for the rest. A size that
//! is not the size of some release's struct (0, too big, in the middle of a field) is
//! `MOELA_STATUS_INVALID_ARG`.
//!
//! When a field is added, append it and add the new `size_of` to the struct's `SIZES` list
//! (keeping the old sizes), never reorder or remove.

use std::ffi::c_char;
use std::mem::size_of;

use super::error::Failure;
use super::moela_status::MOELA_STATUS_NULL_ARG;
use crate::attention::kv_cache::KvType;
use crate::attention::mla::AttnPath;
use crate::sampler::SamplerParams;
use crate::session::SessionParams;

/// Options of `moela_model_load`. Get one from `moela_model_default_params()`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct moela_model_params {
    /// `sizeof(moela_model_params)`, set by `moela_model_default_params()`.
    pub struct_size: u32,
    /// Bit set of `MOELA_MODEL_*` flags; 0 by default.
    pub flags: u32,
    /// Memory for routed experts, in bytes: they are read into a cache of this size and the
    /// rest stay on storage (docs/OFFLOADING.md). `MOELA_EXPERT_BUDGET_UNLIMITED` (the
    /// default) keeps every expert in the file mapping; 0 streams each expert through a
    /// single slot. Logits are the same at every budget.
    pub expert_budget_bytes: u64,
}

/// Options of `moela_session_new`. Get one from `moela_session_default_params()`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct moela_session_params {
    /// `sizeof(moela_session_params)`, set by `moela_session_default_params()`.
    pub struct_size: u32,
    /// Context length in tokens; 0 (the default) = the model's trained context, at most 4096.
    /// At most 2^24.
    pub n_ctx: u32,
    /// Element type of the KV cache: a `moela_kv_type` value (default `MOELA_KV_F32`).
    pub kv_type: u32,
    /// How attention is computed: a `moela_attn_path` value (default `MOELA_ATTN_AUTO`).
    pub attn_path: u32,
    /// Run-time expert skipping: drop a chosen routed expert whose normalised gate weight
    /// (its share of the raw router scores of the model's top-k experts) is below this, and
    /// renormalise the rest as the model's routing does (docs/PRUNING.md). In [0, 1); 0 (the
    /// default) = off. The first-choice expert is always kept.
    pub expert_min_weight: f32,
    /// Run-time expert skipping: use only the first `expert_top_k` experts the router
    /// chooses, 1 ..= the model's top-k (`moela_model_info.n_experts_used`); 0 (the
    /// default) = the model's top-k. A larger value makes `moela_session_new` return
    /// `MOELA_STATUS_INVALID_ARG`.
    pub expert_top_k: u32,
}

/// How the next token is chosen (`moela_sampler_new`). Get one from
/// `moela_sampling_default_params()`. Temperature 0 is greedy (argmax). A value outside its
/// range makes `moela_sampler_new` return `MOELA_STATUS_INVALID_ARG`
/// with a message naming the field, the value and the range, e.g. "moela_sampler_new:
/// temperature is NaN: must be finite and >= 0 (0 = greedy)". The defaults (also the CLI's
/// and Python's) are llama.cpp's: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05; the
/// examples ask for greedy (temperature 0) explicitly.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct moela_sampling_params {
    /// `sizeof(moela_sampling_params)`, set by `moela_sampling_default_params()`.
    pub struct_size: u32,
    /// 0 = greedy; default 0.8. Must be finite and >= 0 (a negative value is an error, not
    /// greedy).
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 = all; default 40.
    pub top_k: u32,
    /// Keep the smallest set whose probability reaches top_p, in (0, 1]; 1 = off; default 0.95.
    pub top_p: f32,
    /// Drop tokens less likely than min_p times the most likely one, in [0, 1]; 0 = off;
    /// default 0.05.
    pub min_p: f32,
    /// Above 1 penalises tokens already in the session (CTRL-style); 1 = off (the default).
    /// Must be finite and > 0.
    pub repeat_penalty: f32,
    /// Seed of the random stream: the same seed gives the same tokens on every machine.
    pub seed: u64,
}

/// Options of `moela_generate` and `moela_generate_tokens`. Get one from
/// `moela_generate_default_params()`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct moela_generate_params {
    /// `sizeof(moela_generate_params)`, set by `moela_generate_default_params()`.
    pub struct_size: u32,
    /// The most tokens to generate; default 128.
    pub max_tokens: u32,
    /// Bit set of `MOELA_GENERATE_*` flags; 0 by default.
    pub flags: u32,
    /// Speculative decoding: a `MOELA_SPEC_*` value; default `MOELA_SPEC_OFF`. The output is
    /// the same as without (token for token when greedy, the same distribution when
    /// sampling); not with a constrained sampler. `MOELA_SPEC_MTP` on a model without the
    /// module (`MOELA_MODEL_INFO_HAS_MTP`) is `MOELA_STATUS_UNSUPPORTED`. Counters:
    /// `moela_session_spec_stats`.
    pub spec_mode: u32,
    /// With speculative decoding, the most draft tokens one verification pass checks, 1 ..=
    /// `MOELA_SPEC_MAX_DRAFT`; default 4.
    pub max_draft: u32,
}

/// Counters of speculative decoding on a session (`moela_session_spec_stats`), added up
/// over its generate calls since it was created or reset. The caller passes
/// `sizeof(moela_spec_stats)`. Acceptance rate = `accepted / drafted`, tokens per pass =
/// `emitted / passes`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct moela_spec_stats {
    /// The size the caller passed (how much of the struct was written).
    pub struct_size: u32,
    /// The `MOELA_SPEC_*` mode of the session's last speculative generate call
    /// (`MOELA_SPEC_OFF` before any).
    pub spec_mode: u32,
    /// Verification passes (one batched evaluation each).
    pub passes: u64,
    /// Draft tokens proposed.
    pub drafted: u64,
    /// Draft tokens accepted (at most `drafted`).
    pub accepted: u64,
    /// Tokens the passes produced: each pass's first token plus its accepted drafts
    /// (`passes + accepted`, plus one for a token sampled when the context was full). It may
    /// exceed the tokens delivered: those a pass produced after an end-of-sequence token,
    /// `max_tokens` or a stopping callback are counted, then dropped from the session.
    pub emitted: u64,
}

/// What `moela_model_get_info` reports. The caller passes `sizeof(moela_model_info)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct moela_model_info {
    /// The size the caller passed (how much of the struct was written).
    pub struct_size: u32,
    /// Vocabulary size: valid token ids are 0 .. n_vocab-1.
    pub n_vocab: u32,
    /// The context length the model was trained for (`max_position_embeddings`).
    pub n_ctx_train: u32,
    /// Transformer layers.
    pub n_layers: u32,
    /// Layers with a dense FFN (the rest are MoE layers).
    pub n_dense_layers: u32,
    /// Hidden size.
    pub n_embd: u32,
    /// Attention heads.
    pub n_heads: u32,
    /// Rank of the compressed KV latent (MLA).
    pub kv_lora_rank: u32,
    /// Routed experts per MoE layer.
    pub n_experts: u32,
    /// Routed experts each token uses.
    pub n_experts_used: u32,
    /// Shared experts per MoE layer.
    pub n_shared_experts: u32,
    /// Beginning-of-sequence token, or -1 if the model has none.
    pub bos_token: i32,
    /// End-of-sequence token, or -1 if the model has none.
    pub eos_token: i32,
    /// Bit set of `MOELA_MODEL_INFO_*` flags.
    pub flags: u32,
    /// Parameters of the whole model.
    pub n_params: u64,
    /// Parameters one token uses (attention, dense and shared FFNs, the chosen routed experts,
    /// an embedding row, the head).
    pub n_params_active: u64,
    /// Bytes the KV cache takes per token of context with `MOELA_KV_F32` (half with F16).
    pub kv_bytes_per_token: u64,
    /// "deepseek_v2" or "deepseek_v3" (NUL-terminated).
    pub architecture: [c_char; 32],
}

/// Expert-cache statistics of a model (`moela_model_expert_cache_stats`). The caller passes
/// `sizeof(moela_expert_cache_stats)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct moela_expert_cache_stats {
    /// The size the caller passed (how much of the struct was written).
    pub struct_size: u32,
    /// Bit set of `MOELA_EXPERT_CACHE_*` flags. Without `MOELA_EXPERT_CACHE_ENABLED` every
    /// routed expert stays in the file mapping and the counters below are 0.
    pub flags: u32,
    /// The byte budget for resident routed experts (0 without `MOELA_EXPERT_CACHE_ENABLED`).
    pub budget_bytes: u64,
    /// Bytes of all routed experts of the model.
    pub routed_expert_bytes: u64,
    /// Bytes of routed experts resident now.
    pub resident_bytes: u64,
    /// Expert uses that found the expert resident.
    pub hits: u64,
    /// Expert uses that had to load it.
    pub misses: u64,
    /// Experts loaded ahead of use by prediction.
    pub prefetches: u64,
    /// Prefetched experts that were then used.
    pub prefetch_hits: u64,
    /// Bytes read from storage for experts.
    pub bytes_read: u64,
    /// Nanoseconds the computation waited for expert reads.
    pub io_wait_ns: u64,
    /// Cache slots (each holds one expert) and their size in bytes.
    pub n_slots: u64,
    pub slot_bytes: u64,
    /// Experts pinned from a profile.
    pub pinned_experts: u64,
    /// The most expert bytes resident at once.
    pub peak_resident_bytes: u64,
    /// Next-layer prediction: experts predicted, experts then used in the predicted layers,
    /// and the overlap (precision = overlap / predicted, recall = overlap / used).
    pub predicted: u64,
    pub predicted_layer_uses: u64,
    pub predicted_used: u64,
    /// Peak resident set of the whole process in bytes (0 where the OS does not say).
    pub rss_peak_bytes: u64,
}

/// Model load flags (`moela_model_params.flags`); unknown bits are
/// `MOELA_STATUS_INVALID_ARG`.
pub const MOELA_MODEL_FLAGS_NONE: u32 = 0;
/// `moela_model_params.flags`: with an expert budget, do not predict and read ahead the next
/// layer's experts.
pub const MOELA_MODEL_NO_PREFETCH: u32 = 1;
/// `moela_model_params.flags`: keep every weight in the file mapping, in the file's layout
/// (by default, on CPUs whose kernels are faster on it, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K, Q4_1, Q5_1, Q2_K, Q3_K, IQ4_NL and IQ4_XS
/// weights are interleaved into memory at load; same as `MOELA_REPACK=0` in the environment).
pub const MOELA_MODEL_KEEP_FILE_LAYOUT: u32 = 2;
/// `moela_model_params.flags`: with an expert budget, read every missed expert into the
/// budget's slots, even when the page cache holds it (by default such an expert runs straight
/// from the file mapping and its mapped pages count against the budget like a slot,
/// released least recently used first when the budget needs the room).
pub const MOELA_MODEL_EXPERTS_NO_PAGE_CACHE: u32 = 4;
pub(crate) const MODEL_FLAGS: u32 =
    MOELA_MODEL_NO_PREFETCH | MOELA_MODEL_KEEP_FILE_LAYOUT | MOELA_MODEL_EXPERTS_NO_PAGE_CACHE;
/// `moela_model_params.expert_budget_bytes`: no budget (the default).
pub const MOELA_EXPERT_BUDGET_UNLIMITED: u64 = u64::MAX;
/// `moela_model_params.expert_budget_bytes`: sized from the memory available at load: no
/// budget when the model fits in 3/4 of it, else what is left of that beside the other
/// weights (the CLI's `--expert-budget auto`).
pub const MOELA_EXPERT_BUDGET_AUTO: u64 = u64::MAX - 1;

/// `moela_model_info.flags`: the model has a tokenizer, so the text functions work.
pub const MOELA_MODEL_INFO_HAS_TOKENIZER: u32 = 1;
/// `moela_model_info.flags`: the model came from a GGUF file (otherwise a Hugging Face
/// directory).
pub const MOELA_MODEL_INFO_GGUF: u32 = 1 << 1;
/// `moela_model_info.flags`: the model has a multi-token-prediction module, so
/// `MOELA_SPEC_MTP` works.
pub const MOELA_MODEL_INFO_HAS_MTP: u32 = 1 << 2;

/// `moela_expert_cache_stats.flags`: routed experts live in a budgeted cache.
pub const MOELA_EXPERT_CACHE_ENABLED: u32 = 1;

/// `moela_generate_params.flags`: keep going after the end-of-sequence token.
pub const MOELA_GENERATE_IGNORE_EOS: u32 = 1;
/// `moela_generate_params.flags` (text prompts): put the BOS token before the prompt.
pub const MOELA_GENERATE_ADD_BOS: u32 = 1 << 1;
/// `moela_generate_params.flags` (text prompts): recognise special tokens written in the
/// prompt (as a chat template's output needs); otherwise they are plain text.
pub const MOELA_GENERATE_PARSE_SPECIAL: u32 = 1 << 2;
pub(crate) const GENERATE_FLAGS: u32 =
    MOELA_GENERATE_IGNORE_EOS | MOELA_GENERATE_ADD_BOS | MOELA_GENERATE_PARSE_SPECIAL;

/// `moela_generate_params.spec_mode`: plain decoding, one evaluation per token (the default).
pub const MOELA_SPEC_OFF: u32 = 0;
/// `moela_generate_params.spec_mode`: prompt lookup: drafts copied from earlier text of the
/// session that continues its last 1-3 tokens (any model).
pub const MOELA_SPEC_LOOKUP: u32 = 1;
/// `moela_generate_params.spec_mode`: drafts from the model's multi-token-prediction module
/// (DeepSeek-V3/R1 files that keep it: `MOELA_MODEL_INFO_HAS_MTP`).
pub const MOELA_SPEC_MTP: u32 = 2;
/// The largest `moela_generate_params.max_draft`.
pub const MOELA_SPEC_MAX_DRAFT: u32 = 64;

/// Element type of the KV cache (`moela_session_params.kv_type`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum moela_kv_type {
    MOELA_KV_F32 = 0,
    MOELA_KV_F16 = 1,
}

/// How attention is computed (`moela_session_params.attn_path`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum moela_attn_path {
    /// Expanded for batches of more than one token, absorbed for single-token decode.
    MOELA_ATTN_AUTO = 0,
    /// Always expand the latent to per-head keys and values.
    MOELA_ATTN_EXPANDED = 1,
    /// Always fold the up-projections into the query and output (MLA's absorbed form).
    MOELA_ATTN_ABSORBED = 2,
}

/// A struct of the ABI whose every field is valid for any bit pattern (integers, floats and
/// byte arrays only), so a prefix copied from C and completed with defaults is a valid value.
///
/// # Safety
/// Implement only for `#[repr(C)]` structs of integers, floats and arrays of them, whose
/// first field is `struct_size: u32`.
pub(crate) unsafe trait AbiStruct: Copy {
    /// C's name, for messages.
    const NAME: &'static str;
    /// `sizeof` of this struct in every release, oldest first; the last is the current one.
    const SIZES: &'static [usize];
    fn defaults() -> Self;
}

// SAFETY (all impls below): #[repr(C)] structs of u32/i32/u64/f32/[u8; N] fields that begin
// with `struct_size: u32`.
unsafe impl AbiStruct for moela_model_params {
    const NAME: &'static str = "moela_model_params";
    /// 0.1: struct_size and flags only.
    const SIZES: &'static [usize] = &[
        std::mem::offset_of!(moela_model_params, expert_budget_bytes),
        size_of::<Self>(),
    ];
    fn defaults() -> Self {
        moela_model_params {
            struct_size: size_of::<Self>() as u32,
            flags: MOELA_MODEL_FLAGS_NONE,
            expert_budget_bytes: MOELA_EXPERT_BUDGET_UNLIMITED,
        }
    }
}

// SAFETY: see above.
unsafe impl AbiStruct for moela_session_params {
    const NAME: &'static str = "moela_session_params";
    /// Before expert skipping: up to attn_path.
    const SIZES: &'static [usize] = &[
        std::mem::offset_of!(moela_session_params, expert_min_weight),
        size_of::<Self>(),
    ];
    fn defaults() -> Self {
        moela_session_params {
            struct_size: size_of::<Self>() as u32,
            n_ctx: 0,
            kv_type: moela_kv_type::MOELA_KV_F32 as u32,
            attn_path: moela_attn_path::MOELA_ATTN_AUTO as u32,
            expert_min_weight: 0.0,
            expert_top_k: 0,
        }
    }
}

// SAFETY: see above.
unsafe impl AbiStruct for moela_sampling_params {
    const NAME: &'static str = "moela_sampling_params";
    const SIZES: &'static [usize] = &[size_of::<Self>()];
    fn defaults() -> Self {
        let d = SamplerParams::default();
        moela_sampling_params {
            struct_size: size_of::<Self>() as u32,
            temperature: d.temperature,
            top_k: d.top_k as u32,
            top_p: d.top_p,
            min_p: d.min_p,
            repeat_penalty: d.repeat_penalty,
            seed: d.seed,
        }
    }
}

// SAFETY: see above.
unsafe impl AbiStruct for moela_generate_params {
    const NAME: &'static str = "moela_generate_params";
    /// 0.1: up to flags (before speculative decoding).
    const SIZES: &'static [usize] = &[
        std::mem::offset_of!(moela_generate_params, spec_mode),
        size_of::<Self>(),
    ];
    fn defaults() -> Self {
        moela_generate_params {
            struct_size: size_of::<Self>() as u32,
            max_tokens: 128,
            flags: 0,
            spec_mode: MOELA_SPEC_OFF,
            max_draft: 4,
        }
    }
}

// SAFETY: see above.
unsafe impl AbiStruct for moela_spec_stats {
    const NAME: &'static str = "moela_spec_stats";
    const SIZES: &'static [usize] = &[size_of::<Self>()];
    fn defaults() -> Self {
        moela_spec_stats {
            struct_size: size_of::<Self>() as u32,
            spec_mode: MOELA_SPEC_OFF,
            passes: 0,
            drafted: 0,
            accepted: 0,
            emitted: 0,
        }
    }
}

// SAFETY: see above.
unsafe impl AbiStruct for moela_model_info {
    const NAME: &'static str = "moela_model_info";
    const SIZES: &'static [usize] = &[size_of::<Self>()];
    fn defaults() -> Self {
        moela_model_info {
            struct_size: size_of::<Self>() as u32,
            n_vocab: 0,
            n_ctx_train: 0,
            n_layers: 0,
            n_dense_layers: 0,
            n_embd: 0,
            n_heads: 0,
            kv_lora_rank: 0,
            n_experts: 0,
            n_experts_used: 0,
            n_shared_experts: 0,
            bos_token: -1,
            eos_token: -1,
            flags: 0,
            n_params: 0,
            n_params_active: 0,
            kv_bytes_per_token: 0,
            architecture: [0; 32],
        }
    }
}

// SAFETY: see above.
unsafe impl AbiStruct for moela_expert_cache_stats {
    const NAME: &'static str = "moela_expert_cache_stats";
    /// 0.1: up to io_wait_ns.
    const SIZES: &'static [usize] = &[
        std::mem::offset_of!(moela_expert_cache_stats, n_slots),
        size_of::<Self>(),
    ];
    fn defaults() -> Self {
        moela_expert_cache_stats {
            struct_size: size_of::<Self>() as u32,
            flags: 0,
            budget_bytes: 0,
            routed_expert_bytes: 0,
            resident_bytes: 0,
            hits: 0,
            misses: 0,
            prefetches: 0,
            prefetch_hits: 0,
            bytes_read: 0,
            io_wait_ns: 0,
            n_slots: 0,
            slot_bytes: 0,
            pinned_experts: 0,
            peak_resident_bytes: 0,
            predicted: 0,
            predicted_layer_uses: 0,
            predicted_used: 0,
            rss_peak_bytes: 0,
        }
    }
}

fn check_size<T: AbiStruct>(func: &str, size: usize) -> Result<(), Failure> {
    if T::SIZES.contains(&size) {
        return Ok(());
    }
    let current = size_of::<T>();
    let why = if size == 0 {
        "0 (was the struct initialised? use the library's default-params function)".to_string()
    } else if size > current {
        format!("{size}, larger than this library's {current}: the program was built against a newer moela.h than the library it runs with")
    } else {
        format!("{size}, not the size of any release's {}", T::NAME)
    };
    Err(Failure::invalid(format!(
        "{func}: {}.struct_size is {why} (expected sizeof({}) = {current})",
        T::NAME,
        T::NAME
    )))
}

/// Reads a caller's struct: its first `struct_size` bytes over the defaults.
///
/// # Safety
/// `ptr` is NULL or points to a readable `T` of at least its own `struct_size` bytes (a
/// struct as declared by some release's header).
pub(crate) unsafe fn read_struct<T: AbiStruct>(
    func: &str,
    arg: &str,
    ptr: *const T,
) -> Result<T, Failure> {
    if ptr.is_null() {
        return Err(Failure::new(
            MOELA_STATUS_NULL_ARG,
            format!("{func}: '{arg}' is NULL"),
        ));
    }
    // SAFETY: every release's T starts with a u32 struct_size, and ptr is non-NULL and points
    // to such a struct (the caller's contract), so its first 4 bytes are readable and aligned.
    let size = unsafe { ptr.cast::<u32>().read() } as usize;
    check_size::<T>(func, size)?;
    let mut out = T::defaults();
    // SAFETY: the caller's struct has `size` readable bytes (it is a release's T, and size is
    // one of the known sizes), size <= size_of::<T>() so the copy fits `out`, the two do not
    // overlap (`out` is a local), and any bytes form valid fields (AbiStruct).
    unsafe {
        std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), (&mut out as *mut T).cast::<u8>(), size)
    };
    Ok(out)
}

/// Writes `value` into a caller's struct of `size` bytes (its first `size` bytes, with
/// `struct_size` = `size`).
///
/// # Safety
/// `ptr` is NULL or points to `size` writable bytes.
pub(crate) unsafe fn write_struct<T: AbiStruct>(
    func: &str,
    arg: &str,
    ptr: *mut T,
    size: usize,
    mut value: T,
) -> Result<(), Failure> {
    if ptr.is_null() {
        return Err(Failure::new(
            MOELA_STATUS_NULL_ARG,
            format!("{func}: '{arg}' is NULL"),
        ));
    }
    check_size::<T>(func, size)?;
    // SAFETY: `value` is a local T whose first field is a u32 (AbiStruct).
    unsafe { (&mut value as *mut T).cast::<u32>().write(size as u32) };
    // SAFETY: the caller provides `size` writable bytes at ptr; size <= size_of::<T>() so the
    // source has them too; a local and the caller's memory do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping((&value as *const T).cast::<u8>(), ptr.cast::<u8>(), size)
    };
    Ok(())
}

pub(crate) fn session_params(
    func: &str,
    p: &moela_session_params,
) -> Result<SessionParams, Failure> {
    let kv_type = match p.kv_type {
        x if x == moela_kv_type::MOELA_KV_F32 as u32 => KvType::F32,
        x if x == moela_kv_type::MOELA_KV_F16 as u32 => KvType::F16,
        x => {
            return Err(Failure::invalid(format!(
                "{func}: kv_type {x} is not a moela_kv_type"
            )))
        }
    };
    let attn_path = match p.attn_path {
        x if x == moela_attn_path::MOELA_ATTN_AUTO as u32 => AttnPath::Auto,
        x if x == moela_attn_path::MOELA_ATTN_EXPANDED as u32 => AttnPath::Expanded,
        x if x == moela_attn_path::MOELA_ATTN_ABSORBED as u32 => AttnPath::Absorbed,
        x => {
            return Err(Failure::invalid(format!(
                "{func}: attn_path {x} is not a moela_attn_path"
            )))
        }
    };
    let w = p.expert_min_weight;
    if !(0.0..1.0).contains(&w) {
        return Err(Failure::invalid(format!(
            "{func}: expert_min_weight is {w}: must be >= 0 and < 1 (0 = off)"
        )));
    }
    Ok(SessionParams {
        n_ctx: p.n_ctx as usize,
        kv_type,
        attn_path,
        expert_skip: crate::moe::router::ExpertSkip {
            min_weight: w,
            top_k: p.expert_top_k as usize,
        },
    })
}

pub(crate) fn sampler_params(
    func: &str,
    p: &moela_sampling_params,
) -> Result<SamplerParams, Failure> {
    let sp = SamplerParams {
        temperature: p.temperature,
        top_k: p.top_k as usize,
        top_p: p.top_p,
        min_p: p.min_p,
        repeat_penalty: p.repeat_penalty,
        seed: p.seed,
    };
    // The one check every front end shares (crate::sampler).
    sp.check()
        .map_err(|e| Failure::invalid(format!("{func}: {e}")))?;
    Ok(sp)
}

/// Fills `*params` with the defaults. `struct_size` is `sizeof(moela_model_params)` as the
/// caller sees it; it is stored in `params->struct_size`.
///
/// Returns `MOELA_STATUS_NULL_ARG` if params is NULL, `MOELA_STATUS_INVALID_ARG` if the size
/// is not one this library knows. Thread-safe.
///
/// # Safety
/// `params` is NULL or points to `struct_size` writable bytes (borrowed for the call).
#[no_mangle]
pub unsafe extern "C" fn moela_model_default_params(
    params: *mut moela_model_params,
    struct_size: usize,
) -> super::moela_status {
    const F: &str = "moela_model_default_params";
    // SAFETY: forwarded caller contract.
    super::error::guard(F, || unsafe {
        write_struct(
            F,
            "params",
            params,
            struct_size,
            moela_model_params::defaults(),
        )
    })
}

/// Fills `*params` with the defaults (see `moela_session_params`). `struct_size` is
/// `sizeof(moela_session_params)`.
///
/// Returns `MOELA_STATUS_NULL_ARG` if params is NULL, `MOELA_STATUS_INVALID_ARG` if the size
/// is not one this library knows. Thread-safe.
///
/// # Safety
/// `params` is NULL or points to `struct_size` writable bytes (borrowed for the call).
#[no_mangle]
pub unsafe extern "C" fn moela_session_default_params(
    params: *mut moela_session_params,
    struct_size: usize,
) -> super::moela_status {
    const F: &str = "moela_session_default_params";
    // SAFETY: forwarded caller contract.
    super::error::guard(F, || unsafe {
        write_struct(
            F,
            "params",
            params,
            struct_size,
            moela_session_params::defaults(),
        )
    })
}

/// Fills `*params` with the defaults (see `moela_sampling_params`). `struct_size` is
/// `sizeof(moela_sampling_params)`.
///
/// Returns `MOELA_STATUS_NULL_ARG` if params is NULL, `MOELA_STATUS_INVALID_ARG` if the size
/// is not one this library knows. Thread-safe.
///
/// # Safety
/// `params` is NULL or points to `struct_size` writable bytes (borrowed for the call).
#[no_mangle]
pub unsafe extern "C" fn moela_sampling_default_params(
    params: *mut moela_sampling_params,
    struct_size: usize,
) -> super::moela_status {
    const F: &str = "moela_sampling_default_params";
    // SAFETY: forwarded caller contract.
    super::error::guard(F, || unsafe {
        write_struct(
            F,
            "params",
            params,
            struct_size,
            moela_sampling_params::defaults(),
        )
    })
}

/// Fills `*params` with the defaults (see `moela_generate_params`). `struct_size` is
/// `sizeof(moela_generate_params)`.
///
/// Returns `MOELA_STATUS_NULL_ARG` if params is NULL, `MOELA_STATUS_INVALID_ARG` if the size
/// is not one this library knows. Thread-safe.
///
/// # Safety
/// `params` is NULL or points to `struct_size` writable bytes (borrowed for the call).
#[no_mangle]
pub unsafe extern "C" fn moela_generate_default_params(
    params: *mut moela_generate_params,
    struct_size: usize,
) -> super::moela_status {
    const F: &str = "moela_generate_default_params";
    // SAFETY: forwarded caller contract.
    super::error::guard(F, || unsafe {
        write_struct(
            F,
            "params",
            params,
            struct_size,
            moela_generate_params::defaults(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capi::moela_status::*;

    /// A struct with an older release's size, to test the prefix protocol.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq)]
    struct Grown {
        struct_size: u32,
        a: u32,
        b: u64,
    }
    // SAFETY: repr(C), integer fields, struct_size first.
    unsafe impl AbiStruct for Grown {
        const NAME: &'static str = "grown";
        const SIZES: &'static [usize] = &[8, 16];
        fn defaults() -> Self {
            Grown {
                struct_size: 16,
                a: 1,
                b: 2,
            }
        }
    }

    #[test]
    fn older_smaller_struct_reads_as_prefix() {
        // An "old release" caller: only struct_size and a.
        let old: [u32; 2] = [8, 77];
        // SAFETY: 8 readable bytes, u32-aligned.
        let got = unsafe { read_struct("f", "p", old.as_ptr().cast::<Grown>()) }.unwrap();
        assert_eq!(
            got,
            Grown {
                struct_size: 8,
                a: 77,
                b: 2
            }
        );
        let mut out: [u32; 2] = [0, 0];
        // SAFETY: 8 writable bytes.
        unsafe {
            write_struct(
                "f",
                "p",
                out.as_mut_ptr().cast::<Grown>(),
                8,
                Grown::defaults(),
            )
        }
        .unwrap();
        assert_eq!(out, [8, 1]);
    }

    #[test]
    fn bad_sizes_are_rejected() {
        for bad in [0u32, 4, 12, 24, u32::MAX] {
            let raw: [u32; 4] = [bad, 0, 0, 0];
            // SAFETY: 16 readable bytes; only struct_size is read for a rejected size.
            let err = unsafe { read_struct("f", "p", raw.as_ptr().cast::<Grown>()) }.unwrap_err();
            assert_eq!(err.status, MOELA_STATUS_INVALID_ARG, "{bad}");
            assert!(err.msg.contains("struct_size"), "{}", err.msg);
        }
        // SAFETY: NULL is checked first.
        let err = unsafe { read_struct::<Grown>("f", "p", std::ptr::null()) }.unwrap_err();
        assert_eq!(err.status, MOELA_STATUS_NULL_ARG);
    }

    #[test]
    fn defaults_round_trip() {
        let mut p = moela_sampling_params::defaults();
        p.struct_size = 0;
        // SAFETY: a whole struct.
        let st =
            unsafe { moela_sampling_default_params(&mut p, size_of::<moela_sampling_params>()) };
        assert_eq!(st, MOELA_STATUS_OK);
        assert_eq!(p, moela_sampling_params::defaults());
        let sp = sampler_params("f", &p).unwrap();
        assert_eq!(sp.top_k, 40);
        let mut s = moela_session_params::defaults();
        // SAFETY: a whole struct.
        let st = unsafe { moela_session_default_params(&mut s, 3) };
        assert_eq!(st, MOELA_STATUS_INVALID_ARG);
        s.kv_type = 9;
        assert!(session_params("f", &s).is_err());
    }
}
