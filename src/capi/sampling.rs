//! `moela_sampler`: choosing the next token (greedy or seeded random with filters).

use std::ffi::c_char;

use super::error::{guard, guard_value, not_null, Failure};
use super::generate::sample_failure;
use super::model::{model_ref, moela_model};
use super::moela_status;
use super::params::{moela_sampling_params, read_struct, sampler_params};
use super::session::{moela_session, session_ref};
use super::text::c_str;
use crate::constrain::{Constraint, Grammar, Syntax};
use crate::sampler::Sampler;

/// A token chooser with its own random stream: used by one thread at a time. Opaque.
pub struct moela_sampler {
    pub(crate) sampler: Sampler,
}

/// Borrows a sampler handle mutably.
///
/// # Safety
/// `sampler` is NULL or a live handle not used by another thread during the call.
pub(crate) unsafe fn sampler_mut<'a>(
    func: &str,
    sampler: *mut moela_sampler,
) -> Result<&'a mut moela_sampler, Failure> {
    not_null!(func, sampler);
    // SAFETY: non-NULL live handle used by this thread only (the caller's contract).
    Ok(unsafe { &mut *sampler })
}

/// Creates a sampler.
///
/// - `params`: from `moela_sampling_default_params()`, borrowed for the call.
/// - `out_sampler`: receives the sampler (ownership transferred: free it with
///   `moela_sampler_free`), or NULL on failure.
///
/// Returns `MOELA_STATUS_INVALID_ARG` for out-of-range params, naming the field, its value
/// and the accepted range (NaN or infinite values; temperature < 0; top_p outside (0, 1];
/// min_p outside [0, 1]; repeat_penalty <= 0).
///
/// # Safety
/// Each pointer is NULL or valid as described.
#[no_mangle]
pub unsafe extern "C" fn moela_sampler_new(
    params: *const moela_sampling_params,
    out_sampler: *mut *mut moela_sampler,
) -> moela_status {
    const F: &str = "moela_sampler_new";
    guard(F, || {
        not_null!(F, out_sampler);
        // SAFETY: non-NULL and writable (the caller's contract).
        unsafe { *out_sampler = std::ptr::null_mut() };
        // SAFETY: the caller's contract.
        let p = unsafe { read_struct(F, "params", params) }?;
        let sp = sampler_params(F, &p)?;
        let handle = Box::new(moela_sampler {
            sampler: Sampler::new(sp).map_err(|e| Failure::invalid(format!("{F}: {e}")))?,
        });
        // SAFETY: as above.
        unsafe { *out_sampler = Box::into_raw(handle) };
        Ok(())
    })
}

/// Frees a sampler. NULL is a no-op. Ownership of `sampler` is transferred.
///
/// # Safety
/// `sampler` is NULL or a live handle not freed yet and not in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn moela_sampler_free(sampler: *mut moela_sampler) {
    guard_value("moela_sampler_free", (), || {
        if !sampler.is_null() {
            // SAFETY: a live handle from Box::into_raw in moela_sampler_new, freed once.
            drop(unsafe { Box::from_raw(sampler) });
        }
    })
}

/// Restarts the sampler's random stream from its seed, and its constraint (when it has one)
/// from the start of its grammar.
///
/// # Safety
/// `sampler` is NULL or a live handle not used by another thread during the call.
#[no_mangle]
pub unsafe extern "C" fn moela_sampler_reset(sampler: *mut moela_sampler) -> moela_status {
    const F: &str = "moela_sampler_reset";
    guard(F, || {
        // SAFETY: the caller's contract.
        let s = unsafe { sampler_mut(F, sampler) }?;
        s.sampler.reset();
        Ok(())
    })
}

/// Chooses the next token from the session's last logits; the session's tokens feed the
/// repetition penalty. The session is not changed: evaluate the token to continue.
///
/// With a constraint, the token is one the grammar allows and it advances the constraint.
///
/// Returns `MOELA_STATUS_INVALID_ARG` when the session has no logits yet, or when a
/// constraint allows no token of the vocabulary (the message says so).
///
/// # Safety
/// `session` and `sampler` are NULL or live handles not used by other threads during the
/// call; `out_token` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn moela_sample(
    session: *const moela_session,
    sampler: *mut moela_sampler,
    out_token: *mut u32,
) -> moela_status {
    const F: &str = "moela_sample";
    guard(F, || {
        // SAFETY: the caller's contract.
        let s = unsafe { session_ref(F, session) }?;
        // SAFETY: the caller's contract.
        let smp = unsafe { sampler_mut(F, sampler) }?;
        not_null!(F, out_token);
        let logits = s.last_logits(F)?;
        let tok = smp
            .sampler
            .sample(logits, &s.history)
            .map_err(|e| sample_failure(F, e))?;
        // SAFETY: non-NULL and writable (the caller's contract).
        unsafe { *out_token = tok };
        Ok(())
    })
}

/// Chooses a token from caller-provided logits (for logits the caller changed). With a
/// constraint, `n_logits` must be the model's vocabulary size and the token advances the
/// constraint (as `moela_sample`).
///
/// - `logits`: `n_logits` floats (n_logits > 0), borrowed; the result is an index into them.
/// - `history`: `n_history` earlier tokens for the repetition penalty, borrowed; may be NULL
///   when `n_history` is 0.
///
/// # Safety
/// `sampler` is NULL or a live handle not used by another thread; `logits` is NULL or points
/// to `n_logits` readable floats; `history` is NULL or points to `n_history` readable ids;
/// `out_token` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn moela_sample_logits(
    sampler: *mut moela_sampler,
    logits: *const f32,
    n_logits: usize,
    history: *const u32,
    n_history: usize,
    out_token: *mut u32,
) -> moela_status {
    const F: &str = "moela_sample_logits";
    guard(F, || {
        // SAFETY: the caller's contract.
        let smp = unsafe { sampler_mut(F, sampler) }?;
        not_null!(F, logits, out_token);
        if n_logits == 0 || n_logits > u32::MAX as usize {
            return Err(Failure::invalid(format!(
                "{F}: n_logits is {n_logits} (must be 1 .. 2^32-1)"
            )));
        }
        let hist: &[u32] = if n_history == 0 {
            &[]
        } else {
            not_null!(F, history);
            // SAFETY: non-NULL with n_history readable ids (the caller's contract).
            unsafe { std::slice::from_raw_parts(history, n_history) }
        };
        // SAFETY: non-NULL with n_logits readable floats (the caller's contract).
        let l = unsafe { std::slice::from_raw_parts(logits, n_logits) };
        let tok = smp
            .sampler
            .sample(l, hist)
            .map_err(|e| sample_failure(F, e))?;
        // SAFETY: non-NULL and writable (the caller's contract).
        unsafe { *out_token = tok };
        Ok(())
    })
}

/// Compiles a constraint and installs it (replacing any earlier one).
fn set_constraint(
    func: &str,
    smp: &mut moela_sampler,
    model: &moela_model,
    grammar: Grammar,
) -> Result<(), Failure> {
    let c = Constraint::new(&model.model, &grammar).map_err(|e| sample_failure(func, e))?;
    smp.sampler.set_constraint(Some(c));
    Ok(())
}

/// Constrains the sampler's output to JSON that validates against a JSON Schema: every token
/// it chooses afterwards (`moela_sample`, `moela_sample_logits`, `moela_generate*`) is one the
/// schema allows, and `moela_generate*` stop when the JSON value is complete. The grammar
/// engine is llguidance (docs/CONSTRAINED.md lists the supported schema keywords).
///
/// - `model`: the model whose vocabulary the sampler's tokens come from, borrowed for the
///   call (the first constraint of a model builds its token trie, then it is reused).
/// - `schema`: the schema as NUL-terminated JSON text, borrowed for the call.
///
/// Returns `MOELA_STATUS_INVALID_ARG` when the schema is not JSON or not a schema llguidance
/// accepts (`moela_last_error()` says why and where), or when the model has no tokenizer or no
/// end-of-sequence token; `MOELA_STATUS_INVALID_UTF8`; `MOELA_STATUS_UNSUPPORTED` when moela was
/// built without the `constrain` feature. On failure the sampler keeps its earlier constraint.
///
/// # Safety
/// `sampler` is NULL or a live handle not used by another thread; `model` is NULL or a live
/// handle; `schema` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn moela_sampler_set_json_schema(
    sampler: *mut moela_sampler,
    model: *const moela_model,
    schema: *const c_char,
) -> moela_status {
    const F: &str = "moela_sampler_set_json_schema";
    guard(F, || {
        // SAFETY: the caller's contract.
        let smp = unsafe { sampler_mut(F, sampler) }?;
        // SAFETY: the caller's contract.
        let m = unsafe { model_ref(F, model) }?;
        // SAFETY: the caller's contract.
        let text = unsafe { c_str(F, "schema", schema) }?;
        set_constraint(F, smp, m, Grammar::json_schema(text))
    })
}

/// Constrains the sampler's output to a grammar (as `moela_sampler_set_json_schema`).
///
/// - `syntax`: NUL-terminated, one of "gbnf" (llama.cpp's GBNF: `root ::= ...`), "lark"
///   (llguidance's Lark dialect: `start: ...`), "regex" (the whole output matches it) or
///   "json_schema"; borrowed for the call.
/// - `grammar`: the grammar text, NUL-terminated, borrowed for the call.
///
/// Returns `MOELA_STATUS_INVALID_ARG` for an unknown syntax or a grammar that does not parse
/// (`moela_last_error()` says why and where), and as `moela_sampler_set_json_schema`.
///
/// # Safety
/// `sampler` is NULL or a live handle not used by another thread; `model` is NULL or a live
/// handle; `syntax` and `grammar` are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn moela_sampler_set_grammar(
    sampler: *mut moela_sampler,
    model: *const moela_model,
    syntax: *const c_char,
    grammar: *const c_char,
) -> moela_status {
    const F: &str = "moela_sampler_set_grammar";
    guard(F, || {
        // SAFETY: the caller's contract.
        let smp = unsafe { sampler_mut(F, sampler) }?;
        // SAFETY: the caller's contract.
        let m = unsafe { model_ref(F, model) }?;
        // SAFETY: the caller's contract.
        let syntax = unsafe { c_str(F, "syntax", syntax) }?;
        // SAFETY: the caller's contract.
        let text = unsafe { c_str(F, "grammar", grammar) }?;
        let syntax = Syntax::parse(syntax).map_err(|e| sample_failure(F, e))?;
        set_constraint(F, smp, m, Grammar::new(syntax, text))
    })
}

/// Removes the sampler's constraint (no-op without one).
///
/// # Safety
/// `sampler` is NULL or a live handle not used by another thread during the call.
#[no_mangle]
pub unsafe extern "C" fn moela_sampler_clear_constraint(
    sampler: *mut moela_sampler,
) -> moela_status {
    const F: &str = "moela_sampler_clear_constraint";
    guard(F, || {
        // SAFETY: the caller's contract.
        let smp = unsafe { sampler_mut(F, sampler) }?;
        smp.sampler.set_constraint(None);
        Ok(())
    })
}

/// Whether the sampler's constrained output is complete: `*out_finished` = 1 when its grammar
/// has matched and allows nothing more than the end of the sequence, else 0 (always 0 without
/// a constraint). For callers that run their own loop with `moela_sample`.
///
/// # Safety
/// `sampler` is NULL or a live handle not used by another thread; `out_finished` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn moela_sampler_is_finished(
    sampler: *const moela_sampler,
    out_finished: *mut i32,
) -> moela_status {
    const F: &str = "moela_sampler_is_finished";
    guard(F, || {
        not_null!(F, sampler, out_finished);
        // SAFETY: non-NULL live handle, not mutated during the call (the caller's contract).
        let smp = unsafe { &*sampler };
        // SAFETY: non-NULL and writable (the caller's contract).
        unsafe { *out_finished = i32::from(smp.sampler.is_finished()) };
        Ok(())
    })
}
