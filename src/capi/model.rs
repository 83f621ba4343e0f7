//! `moela_model`: load, free, describe.

use std::ffi::{c_char, CStr};
use std::path::PathBuf;
use std::sync::Arc;

use super::error::{guard, guard_value, not_null, Failure};
use super::params::{
    moela_expert_cache_stats, moela_model_info, moela_model_params, read_struct, write_struct,
    AbiStruct, MODEL_FLAGS, MOELA_EXPERT_BUDGET_AUTO, MOELA_EXPERT_BUDGET_UNLIMITED,
    MOELA_EXPERT_CACHE_ENABLED, MOELA_MODEL_EXPERTS_NO_PAGE_CACHE, MOELA_MODEL_INFO_GGUF,
    MOELA_MODEL_INFO_HAS_MTP, MOELA_MODEL_INFO_HAS_TOKENIZER, MOELA_MODEL_KEEP_FILE_LAYOUT,
    MOELA_MODEL_NO_PREFETCH,
};
use super::{moela_status, text};
use crate::attention::kv_cache::{KvCache, KvType};
use crate::config::Family;
use crate::model::{Model, ModelParams, SourceFormat};
use crate::moe::experts::{ExpertBudget, ExpertParams};

/// A loaded model: immutable, shared by any number of threads and sessions. Opaque.
pub struct moela_model {
    pub(crate) model: Arc<Model>,
}

/// A C path as a `PathBuf`: bytes on Unix, UTF-8 elsewhere.
///
/// # Safety
/// `path` points to a NUL-terminated string.
pub(crate) unsafe fn c_path(func: &str, path: *const c_char) -> Result<PathBuf, Failure> {
    // SAFETY: the caller's contract.
    let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let _ = func;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
    }
    #[cfg(not(unix))]
    {
        std::str::from_utf8(bytes).map(PathBuf::from).map_err(|_| {
            Failure::new(
                moela_status::MOELA_STATUS_INVALID_UTF8,
                format!("{func}: the path is not UTF-8"),
            )
        })
    }
}

/// Borrows the model behind a handle.
///
/// # Safety
/// `model` is NULL or a live handle from `moela_model_load`.
pub(crate) unsafe fn model_ref<'a>(
    func: &str,
    model: *const moela_model,
) -> Result<&'a moela_model, Failure> {
    not_null!(func, model);
    // SAFETY: non-NULL, and a live handle by the caller's contract.
    Ok(unsafe { &*model })
}

/// Loads a model: a `.gguf` file or a Hugging Face directory (`config.json` + safetensors).
/// Only headers are read; the weights stay memory-mapped until used.
///
/// - `path`: NUL-terminated file or directory path, borrowed for the call.
/// - `params`: from `moela_model_default_params()`, borrowed for the call.
/// - `out_model`: receives the new model (ownership transferred to the caller: free it with
///   `moela_model_free`), or NULL on failure.
///
/// Returns `MOELA_STATUS_IO` (missing file, permission), `MOELA_STATUS_BAD_FORMAT` (corrupt or
/// inconsistent file), `MOELA_STATUS_UNSUPPORTED` (another architecture, an unsupported tensor
/// type), `MOELA_STATUS_NULL_ARG`, `MOELA_STATUS_INVALID_ARG` (bad params).
///
/// # Safety
/// Each pointer is NULL or valid as described; `params` points to a struct of at least its
/// `struct_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn moela_model_load(
    path: *const c_char,
    params: *const moela_model_params,
    out_model: *mut *mut moela_model,
) -> moela_status {
    const F: &str = "moela_model_load";
    guard(F, || {
        not_null!(F, out_model);
        // SAFETY: non-NULL out-pointer, writable by the caller's contract.
        unsafe { *out_model = std::ptr::null_mut() };
        not_null!(F, path);
        // SAFETY: the caller's contract on params.
        let p = unsafe { read_struct(F, "params", params) }?;
        if p.flags & !MODEL_FLAGS != 0 {
            return Err(Failure::invalid(format!(
                "{F}: unknown flags {:#x} in params.flags",
                p.flags & !MODEL_FLAGS
            )));
        }
        // SAFETY: path is non-NULL and NUL-terminated by the caller's contract.
        let path = unsafe { c_path(F, path) }?;
        let params = ModelParams {
            experts: ExpertParams {
                budget: match p.expert_budget_bytes {
                    MOELA_EXPERT_BUDGET_UNLIMITED => ExpertBudget::Unlimited,
                    MOELA_EXPERT_BUDGET_AUTO => ExpertBudget::Auto,
                    b => ExpertBudget::Bytes(b),
                },
                prefetch: p.flags & MOELA_MODEL_NO_PREFETCH == 0,
                page_cache: p.flags & MOELA_MODEL_EXPERTS_NO_PAGE_CACHE == 0,
                ..Default::default()
            },
            keep_file_layout: p.flags & MOELA_MODEL_KEEP_FILE_LAYOUT != 0,
        };
        let model = Model::load_with(&path, &params)?;
        let handle = Box::new(moela_model {
            model: Arc::new(model),
        });
        // SAFETY: as above.
        unsafe { *out_model = Box::into_raw(handle) };
        Ok(())
    })
}

/// Frees a model handle. Sessions and detokenizers made from it keep what they need alive,
/// so it may be freed before them. NULL is a no-op. Ownership of `model` is transferred.
///
/// # Safety
/// `model` is NULL or a handle from `moela_model_load` not freed yet, and no other thread
/// uses this handle during or after the call.
#[no_mangle]
pub unsafe extern "C" fn moela_model_free(model: *mut moela_model) {
    guard_value("moela_model_free", (), || {
        if !model.is_null() {
            // SAFETY: a live handle from Box::into_raw in moela_model_load, freed once.
            drop(unsafe { Box::from_raw(model) });
        }
    })
}

pub(crate) fn model_info(m: &Model) -> moela_model_info {
    let c = &m.config;
    let (n_params, n_params_active) = c.parameter_counts();
    let mut info = moela_model_info::defaults();
    let u = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    let tok = |t: Option<u32>| t.and_then(|t| i32::try_from(t).ok()).unwrap_or(-1);
    info.n_vocab = u(c.vocab_size);
    info.n_ctx_train = u(c.max_position_embeddings);
    info.n_layers = u(c.n_layers);
    info.n_dense_layers = u((0..c.n_layers).filter(|&l| !c.is_moe_layer(l)).count());
    info.n_embd = u(c.hidden_size);
    info.n_heads = u(c.n_heads);
    info.kv_lora_rank = u(c.kv_lora_rank);
    info.n_experts = u(c.moe.n_routed_experts);
    info.n_experts_used = u(c.moe.experts_per_tok);
    info.n_shared_experts = u(c.moe.n_shared_experts);
    info.bos_token = tok(c.bos_token_id);
    info.eos_token = tok(c.eos_token_id);
    info.flags = 0;
    if text::codec(m).is_ok() {
        info.flags |= MOELA_MODEL_INFO_HAS_TOKENIZER;
    }
    if m.format == SourceFormat::Gguf {
        info.flags |= MOELA_MODEL_INFO_GGUF;
    }
    if m.weights.mtp.is_some() {
        info.flags |= MOELA_MODEL_INFO_HAS_MTP;
    }
    info.n_params = n_params;
    info.n_params_active = n_params_active;
    info.kv_bytes_per_token =
        KvCache::bytes_per_token(KvType::F32, c.n_layers, c.kv_cache_row()) as u64;
    let arch: &[u8] = match c.family {
        Family::V2 => b"deepseek_v2",
        Family::V3 => b"deepseek_v3",
    };
    for (dst, &b) in info.architecture.iter_mut().zip(arch) {
        *dst = b as c_char;
    }
    info
}

/// Describes the model: vocabulary and context sizes, architecture, layer and expert counts,
/// parameter counts. `struct_size` is `sizeof(moela_model_info)`; `info` is borrowed for the
/// call and receives the first `struct_size` bytes.
///
/// Thread-safe (const handle).
///
/// # Safety
/// `model` is NULL or a live handle; `info` is NULL or points to `struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn moela_model_get_info(
    model: *const moela_model,
    info: *mut moela_model_info,
    struct_size: usize,
) -> moela_status {
    const F: &str = "moela_model_get_info";
    guard(F, || {
        // SAFETY: the caller's contract.
        let m = unsafe { model_ref(F, model) }?;
        let value = model_info(&m.model);
        // SAFETY: the caller's contract on info.
        unsafe { write_struct(F, "info", info, struct_size, value) }
    })
}

/// Statistics of the model's routed-expert cache. `struct_size` is
/// `sizeof(moela_expert_cache_stats)`; `stats` is borrowed for the call.
///
/// Without an expert budget every routed expert stays in the file mapping: `flags` lacks
/// `MOELA_EXPERT_CACHE_ENABLED`, `routed_expert_bytes` and `resident_bytes` are the experts'
/// total size and the counters are 0. The counters add up over every session of the model
/// since it was loaded.
///
/// Thread-safe (const handle).
///
/// # Safety
/// `model` is NULL or a live handle; `stats` is NULL or points to `struct_size` writable
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn moela_model_expert_cache_stats(
    model: *const moela_model,
    stats: *mut moela_expert_cache_stats,
    struct_size: usize,
) -> moela_status {
    const F: &str = "moela_model_expert_cache_stats";
    guard(F, || {
        // SAFETY: the caller's contract.
        let m = unsafe { model_ref(F, model) }?;
        let s = m.model.expert_stats();
        let mut value = moela_expert_cache_stats::defaults();
        if s.enabled {
            value.flags |= MOELA_EXPERT_CACHE_ENABLED;
        }
        value.budget_bytes = s.budget_bytes;
        value.routed_expert_bytes = s.routed_expert_bytes;
        value.resident_bytes = s.resident_bytes;
        value.hits = s.hits;
        value.misses = s.misses;
        value.prefetches = s.prefetches;
        value.prefetch_hits = s.prefetch_hits;
        value.bytes_read = s.bytes_read;
        value.io_wait_ns = s.io_wait_ns;
        value.n_slots = s.n_slots;
        value.slot_bytes = s.slot_bytes;
        value.pinned_experts = s.pinned_experts;
        value.peak_resident_bytes = s.peak_resident_bytes;
        value.predicted = s.predicted;
        value.predicted_layer_uses = s.predicted_layer_uses;
        value.predicted_used = s.predicted_used;
        value.rss_peak_bytes = crate::bench::rss_bytes().1;
        // SAFETY: the caller's contract on stats.
        unsafe { write_struct(F, "stats", stats, struct_size, value) }
    })
}
