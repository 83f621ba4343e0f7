//! `moela_sampler`: choosing the next token (greedy or seeded random with filters).

use super::error::{guard, guard_value, not_null, Failure};
use super::moela_status;
use super::params::{moela_sampling_params, read_struct, sampler_params};
use super::session::{moela_session, session_ref};
use crate::sampler::{Sampler, SamplerParams};

/// A token chooser with its own random stream: used by one thread at a time. Opaque.
pub struct moela_sampler {
    pub(crate) sampler: Sampler,
    pub(crate) params: SamplerParams,
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
            sampler: Sampler::new(sp.clone()).map_err(|e| Failure::invalid(format!("{F}: {e}")))?,
            params: sp,
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

/// Restarts the sampler's random stream from its seed.
///
/// # Safety
/// `sampler` is NULL or a live handle not used by another thread during the call.
#[no_mangle]
pub unsafe extern "C" fn moela_sampler_reset(sampler: *mut moela_sampler) -> moela_status {
    const F: &str = "moela_sampler_reset";
    guard(F, || {
        // SAFETY: the caller's contract.
        let s = unsafe { sampler_mut(F, sampler) }?;
        s.sampler =
            Sampler::new(s.params.clone()).map_err(|e| Failure::invalid(format!("{F}: {e}")))?;
        Ok(())
    })
}

/// Chooses the next token from the session's last logits; the session's tokens feed the
/// repetition penalty. The session is not changed: evaluate the token to continue.
///
/// Returns `MOELA_STATUS_INVALID_ARG` when the session has no logits yet.
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
        let tok = smp.sampler.sample(logits, &s.history);
        // SAFETY: non-NULL and writable (the caller's contract).
        unsafe { *out_token = tok };
        Ok(())
    })
}

/// Chooses a token from caller-provided logits (for logits the caller changed, e.g. with a
/// grammar mask).
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
        let tok = smp.sampler.sample(l, hist);
        // SAFETY: non-NULL and writable (the caller's contract).
        unsafe { *out_token = tok };
        Ok(())
    })
}
