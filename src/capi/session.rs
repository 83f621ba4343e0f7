//! `moela_session`: one sequence's state (KV cache, position, logits) on a shared model.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

use super::error::{guard, guard_value, not_null, Failure};
use super::model::{model_ref, moela_model};
use super::moela_status::{self, *};
use super::params::{
    moela_session_params, moela_spec_stats, read_struct, session_params, write_struct, AbiStruct,
    MOELA_SPEC_OFF,
};
use crate::model::Model;
use crate::session::Session;
use crate::speculative::SpecStats;

/// One sequence being evaluated: used by one thread at a time, may move between threads.
/// Opaque.
///
/// Every call checks, atomically and without waiting, that no other call is using the
/// session: a call that finds it in use (by another thread, or by the generate call whose
/// callback is running) returns `MOELA_STATUS_BUSY` and changes nothing; calls taking a
/// `const` session may share it with each other. After an internal error during a call the
/// session refuses every call with `MOELA_STATUS_PANIC`: free it.
pub struct moela_session {
    // Non-const calls take the lock with `try_write`, const calls with `try_read`; nothing
    // ever waits for it. A panic while a write guard is held poisons it.
    state: RwLock<SessionState>,
}

/// What a session holds: the Rust session and its token history.
pub(crate) struct SessionState {
    pub(crate) session: Session,
    /// Every token evaluated since the last reset (feeds the repetition penalty).
    pub(crate) history: Vec<u32>,
    /// Speculative decoding's counters since the last reset, and the last mode used.
    pub(crate) spec_stats: SpecStats,
    pub(crate) spec_mode: u32,
}

impl SessionState {
    pub(crate) fn new(session: Session) -> SessionState {
        SessionState {
            session,
            history: Vec::new(),
            spec_stats: SpecStats::default(),
            spec_mode: MOELA_SPEC_OFF,
        }
    }

    pub(crate) fn model(&self) -> &Arc<Model> {
        self.session.model()
    }

    /// Evaluates `tokens` after those already seen; on success they join the history.
    pub(crate) fn eval(
        &mut self,
        func: &str,
        tokens: &[u32],
        all_logits: Option<&mut [f32]>,
    ) -> Result<(), Failure> {
        let r = self.session.eval(tokens, all_logits.is_some());
        let r = match (r, all_logits) {
            (Ok(rows), Some(out)) => {
                out[..rows.len()].copy_from_slice(rows);
                Ok(())
            }
            (Ok(_), None) => Ok(()),
            (Err(e), _) => Err(Failure::from(e)),
        };
        let r = r.map_err(|mut f| {
            f.msg = format!("{func}: {}", f.msg);
            f
        });
        if r.is_ok() {
            self.history.extend_from_slice(tokens);
        }
        r
    }

    pub(crate) fn last_logits(&self, func: &str) -> Result<&[f32], Failure> {
        self.session.logits().ok_or_else(|| {
            Failure::invalid(format!(
                "{func}: the session has no logits yet (evaluate tokens first)"
            ))
        })
    }
}

/// The failure of a call that found the session in use by another call.
fn busy(func: &str) -> Failure {
    Failure::new(
        MOELA_STATUS_BUSY,
        format!(
            "{func}: the session is in use by another call (another thread, or a callback of \
             a generate call on this session); a session is used by one thread at a time, \
             and it is unchanged"
        ),
    )
}

/// The failure of a call on a session that an internal error left inconsistent.
fn poisoned(func: &str) -> Failure {
    Failure::new(
        MOELA_STATUS_PANIC,
        format!("{func}: the session is unusable after an internal error; free it"),
    )
}

/// Takes a session handle for a non-const call: the state, locked for this call only.
///
/// # Safety
/// `session` is NULL or a live handle (not freed during the call).
pub(crate) unsafe fn session_mut<'a>(
    func: &str,
    session: *mut moela_session,
) -> Result<RwLockWriteGuard<'a, SessionState>, Failure> {
    not_null!(func, session);
    // SAFETY: non-NULL live handle (the caller's contract). Only a shared reference is made:
    // the lock decides who may change the state.
    let s = unsafe { &*session };
    match s.state.try_write() {
        Ok(g) => Ok(g),
        Err(TryLockError::WouldBlock) => Err(busy(func)),
        Err(TryLockError::Poisoned(_)) => Err(poisoned(func)),
    }
}

/// Takes a session handle for a const call: the state, read-locked for this call only (any
/// number of const calls may share it).
///
/// # Safety
/// `session` is NULL or a live handle (not freed during the call).
pub(crate) unsafe fn session_ref<'a>(
    func: &str,
    session: *const moela_session,
) -> Result<RwLockReadGuard<'a, SessionState>, Failure> {
    not_null!(func, session);
    // SAFETY: non-NULL live handle (the caller's contract).
    let s = unsafe { &*session };
    match s.state.try_read() {
        Ok(g) => Ok(g),
        Err(TryLockError::WouldBlock) => Err(busy(func)),
        Err(TryLockError::Poisoned(_)) => Err(poisoned(func)),
    }
}

/// Creates a session on `model`.
///
/// - `model`: borrowed; the session keeps the model's data alive on its own, so the model
///   handle may be freed before the session.
/// - `params`: from `moela_session_default_params()`, borrowed for the call.
/// - `out_session`: receives the new session (ownership transferred: free it with
///   `moela_session_free`), or NULL on failure.
///
/// Returns `MOELA_STATUS_OUT_OF_MEMORY` when the KV cache cannot be allocated,
/// `MOELA_STATUS_INVALID_ARG` for bad params.
///
/// # Safety
/// Each pointer is NULL or valid as described.
#[no_mangle]
pub unsafe extern "C" fn moela_session_new(
    model: *const moela_model,
    params: *const moela_session_params,
    out_session: *mut *mut moela_session,
) -> moela_status {
    const F: &str = "moela_session_new";
    guard(F, || {
        not_null!(F, out_session);
        // SAFETY: non-NULL and writable (the caller's contract).
        unsafe { *out_session = std::ptr::null_mut() };
        // SAFETY: the caller's contract.
        let m = unsafe { model_ref(F, model) }?;
        // SAFETY: the caller's contract.
        let p = unsafe { read_struct(F, "params", params) }?;
        let sp = session_params(F, &p)?;
        let session = Session::new(m.model.clone(), &sp).map_err(|e| {
            let mut f = Failure::from(e);
            f.msg = format!("{F}: {}", f.msg);
            f
        })?;
        let handle = Box::new(moela_session {
            state: RwLock::new(SessionState::new(session)),
        });
        // SAFETY: as above.
        unsafe { *out_session = Box::into_raw(handle) };
        Ok(())
    })
}

/// Speculative decoding's counters on `session` (see `moela_spec_stats`): the sums over its
/// generate calls with `moela_generate_params.spec_mode` other than `MOELA_SPEC_OFF` since
/// it was created or last reset (`moela_session_reset`). `struct_size` is
/// `sizeof(moela_spec_stats)`; `stats` is borrowed for the call.
///
/// # Safety
/// `session` is NULL or a live handle not mutated by another thread during the call;
/// `stats` is NULL or points to `struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn moela_session_spec_stats(
    session: *const moela_session,
    stats: *mut moela_spec_stats,
    struct_size: usize,
) -> moela_status {
    const F: &str = "moela_session_spec_stats";
    guard(F, || {
        // SAFETY: the caller's contract.
        let s = unsafe { session_ref(F, session) }?;
        let st = s.spec_stats;
        let value = moela_spec_stats {
            spec_mode: s.spec_mode,
            passes: st.passes,
            drafted: st.drafted,
            accepted: st.accepted,
            emitted: st.emitted,
            ..moela_spec_stats::defaults()
        };
        // SAFETY: the caller's contract.
        unsafe { write_struct(F, "stats", stats, struct_size, value) }
    })
}

/// Frees a session. NULL is a no-op. Ownership of `session` is transferred.
///
/// # Safety
/// `session` is NULL or a live handle not freed yet and not in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn moela_session_free(session: *mut moela_session) {
    guard_value("moela_session_free", (), || {
        if !session.is_null() {
            // SAFETY: a live handle from Box::into_raw in moela_session_new, freed once.
            drop(unsafe { Box::from_raw(session) });
        }
    })
}

/// Forgets the sequence (position 0, no logits, empty history) and keeps the allocated cache
/// for reuse.
///
/// # Safety
/// `session` is NULL or a live handle not used by another thread during the call.
#[no_mangle]
pub unsafe extern "C" fn moela_session_reset(session: *mut moela_session) -> moela_status {
    const F: &str = "moela_session_reset";
    guard(F, || {
        // SAFETY: the caller's contract.
        let mut s = unsafe { session_mut(F, session) }?;
        s.session.reset();
        s.history.clear();
        s.spec_stats = SpecStats::default();
        s.spec_mode = MOELA_SPEC_OFF;
        Ok(())
    })
}

/// Reads the caller's token array.
///
/// # Safety
/// `tokens` is NULL or points to `n_tokens` readable ids.
unsafe fn token_slice<'a>(
    func: &str,
    tokens: *const u32,
    n_tokens: usize,
) -> Result<&'a [u32], Failure> {
    not_null!(func, tokens);
    if n_tokens == 0 {
        return Err(Failure::invalid(format!("{func}: n_tokens is 0")));
    }
    // SAFETY: non-NULL and n_tokens readable ids (the caller's contract).
    Ok(unsafe { std::slice::from_raw_parts(tokens, n_tokens) })
}

/// Evaluates `n_tokens` token ids as one batch after those already in the session. Afterwards
/// `moela_session_logits` gives the logits after the last one.
///
/// - `tokens`: borrowed for the call; every id must be below `n_vocab`.
///
/// Returns `MOELA_STATUS_TOKEN_OUT_OF_RANGE` (bad id), `MOELA_STATUS_CONTEXT_FULL` (not
/// enough room left; see `moela_session_position`/`moela_session_n_ctx`),
/// `MOELA_STATUS_INVALID_ARG` (n_tokens 0). On any failure the session is unchanged.
///
/// # Safety
/// `session` is NULL or a live handle not used by another thread; `tokens` is NULL or points
/// to `n_tokens` readable ids.
#[no_mangle]
pub unsafe extern "C" fn moela_session_eval(
    session: *mut moela_session,
    tokens: *const u32,
    n_tokens: usize,
) -> moela_status {
    const F: &str = "moela_session_eval";
    guard(F, || {
        // SAFETY: the caller's contract.
        let mut s = unsafe { session_mut(F, session) }?;
        // SAFETY: the caller's contract.
        let toks = unsafe { token_slice(F, tokens, n_tokens) }?;
        s.eval(F, toks, None)
    })
}

/// Like `moela_session_eval`, and copies the logits after every token of the batch into
/// `logits` (row-major `[n_tokens][n_vocab]`), for scoring a text.
///
/// - `logits`: caller-owned, `n_logits` floats. If `n_logits < n_tokens * n_vocab` nothing is
///   evaluated, `MOELA_STATUS_BUFFER_TOO_SMALL` is returned and `*n_needed` (when not NULL)
///   receives `n_tokens * n_vocab`.
///
/// # Safety
/// As `moela_session_eval`; `logits` is NULL or points to `n_logits` writable floats;
/// `n_needed` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn moela_session_eval_all_logits(
    session: *mut moela_session,
    tokens: *const u32,
    n_tokens: usize,
    logits: *mut f32,
    n_logits: usize,
    n_needed: *mut usize,
) -> moela_status {
    const F: &str = "moela_session_eval_all_logits";
    guard(F, || {
        // SAFETY: the caller's contract.
        let mut s = unsafe { session_mut(F, session) }?;
        // SAFETY: the caller's contract.
        let toks = unsafe { token_slice(F, tokens, n_tokens) }?;
        not_null!(F, logits);
        let n_vocab = s.model().config.vocab_size;
        let need = n_tokens
            .checked_mul(n_vocab)
            .ok_or_else(|| Failure::invalid(format!("{F}: n_tokens {n_tokens} is too large")))?;
        if !n_needed.is_null() {
            // SAFETY: non-NULL and writable (the caller's contract).
            unsafe { *n_needed = need };
        }
        if n_logits < need {
            return Err(Failure::new(
                MOELA_STATUS_BUFFER_TOO_SMALL,
                format!("{F}: the logits buffer holds {n_logits} floats, {need} are needed"),
            ));
        }
        // SAFETY: non-NULL, n_logits writable floats (the caller's contract), not aliased by
        // anything moela owns.
        let out = unsafe { std::slice::from_raw_parts_mut(logits, n_logits) };
        s.eval(F, toks, Some(out))
    })
}

/// Copies the logits after the last evaluated token (`n_vocab` floats) into `logits`.
///
/// - `logits`: caller-owned, `n_logits` floats. With `n_logits < n_vocab`, returns
///   `MOELA_STATUS_BUFFER_TOO_SMALL` and copies nothing.
/// - `n_written`: when not NULL, receives `n_vocab` (also on `BUFFER_TOO_SMALL`).
///
/// Returns `MOELA_STATUS_INVALID_ARG` when nothing was evaluated since the last reset.
///
/// # Safety
/// `session` is NULL or a live handle not mutated by another thread during the call;
/// `logits` is NULL or points to `n_logits` writable floats; `n_written` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn moela_session_logits(
    session: *const moela_session,
    logits: *mut f32,
    n_logits: usize,
    n_written: *mut usize,
) -> moela_status {
    const F: &str = "moela_session_logits";
    guard(F, || {
        // SAFETY: the caller's contract.
        let s = unsafe { session_ref(F, session) }?;
        not_null!(F, logits);
        let n_vocab = s.model().config.vocab_size;
        if !n_written.is_null() {
            // SAFETY: non-NULL and writable (the caller's contract).
            unsafe { *n_written = n_vocab };
        }
        let src = s.last_logits(F)?;
        if n_logits < n_vocab {
            return Err(Failure::new(
                MOELA_STATUS_BUFFER_TOO_SMALL,
                format!("{F}: the buffer holds {n_logits} floats, the vocabulary has {n_vocab}"),
            ));
        }
        // SAFETY: non-NULL with n_logits >= n_vocab writable floats (the caller's contract);
        // src is moela's own buffer, so the two do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), logits, n_vocab) };
        Ok(())
    })
}

/// The number of tokens in the session (the next token's position).
///
/// # Safety
/// `session` is NULL or a live handle not mutated by another thread; `out_position` is NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn moela_session_position(
    session: *const moela_session,
    out_position: *mut u32,
) -> moela_status {
    const F: &str = "moela_session_position";
    guard(F, || {
        // SAFETY: the caller's contract.
        let s = unsafe { session_ref(F, session) }?;
        not_null!(F, out_position);
        // SAFETY: non-NULL and writable; positions are below 2^24 so the cast is exact.
        unsafe { *out_position = s.session.position() as u32 };
        Ok(())
    })
}

/// The session's context length: the most tokens it can hold.
///
/// # Safety
/// `session` is NULL or a live handle not mutated by another thread; `out_n_ctx` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn moela_session_n_ctx(
    session: *const moela_session,
    out_n_ctx: *mut u32,
) -> moela_status {
    const F: &str = "moela_session_n_ctx";
    guard(F, || {
        // SAFETY: the caller's contract.
        let s = unsafe { session_ref(F, session) }?;
        not_null!(F, out_n_ctx);
        // SAFETY: non-NULL and writable; n_ctx is at most 2^24 so the cast is exact.
        unsafe { *out_n_ctx = s.session.n_ctx() as u32 };
        Ok(())
    })
}

/// The failure of a state load or save, named after `func`.
fn state_failure(func: &str, e: crate::Error) -> Failure {
    let mut f = Failure::from(e);
    f.msg = format!("{func}: {}", f.msg);
    f
}

/// After a successful state load: the history is the loaded tokens.
fn loaded(s: &mut SessionState) {
    s.history = s.session.tokens().to_vec();
}

/// Saves the session's state (its tokens, the latent KV cache rows of every layer up to the
/// position and the last logits) to the file `path`, replaced atomically. Another session of
/// the same model, with the same `kv_type` and a context at least as long as the saved
/// tokens, continues from it exactly (`moela_session_load`). Size: 64 bytes + 4 per token +
/// 4 per vocabulary entry + per token n_layers × (kv_lora_rank + qk_rope_head_dim) × 4 (f32
/// cache) or × 2 (f16). The format is in docs/C_API.md ("Saved sessions").
///
/// - `path`: borrowed, NUL-terminated.
///
/// Returns `MOELA_STATUS_IO` when the file cannot be written.
///
/// # Safety
/// `session` is NULL or a live handle not mutated by another thread during the call; `path`
/// is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn moela_session_save(
    session: *const moela_session,
    path: *const std::ffi::c_char,
) -> moela_status {
    const F: &str = "moela_session_save";
    guard(F, || {
        // SAFETY: the caller's contract.
        let s = unsafe { session_ref(F, session) }?;
        not_null!(F, path);
        // SAFETY: non-NULL and NUL-terminated (the caller's contract).
        let p = unsafe { super::model::c_path(F, path) }?;
        s.session
            .save_state_file(&p)
            .map_err(|e| state_failure(F, e))
    })
}

/// Loads a state saved by `moela_session_save` (or `moela_session_save_buffer`) from the
/// file `path`, replacing the session's sequence and history: the session then continues
/// exactly as the saved one would have (the same logits, bit for bit; sampling can start at
/// once when the saved session had logits).
///
/// - `path`: borrowed, NUL-terminated.
///
/// Returns `MOELA_STATUS_STATE_MISMATCH` for a state of another model or another cache type,
/// `MOELA_STATUS_CONTEXT_FULL` when the session's context is shorter than the saved tokens,
/// `MOELA_STATUS_BAD_FORMAT` for a file that is not a state, truncated or corrupt (every
/// state carries checksums), `MOELA_STATUS_UNSUPPORTED` for another format version,
/// `MOELA_STATUS_IO` when the file cannot be read. On failure the session is unchanged.
///
/// # Safety
/// `session` is NULL or a live handle not used by another thread during the call; `path` is
/// NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn moela_session_load(
    session: *mut moela_session,
    path: *const std::ffi::c_char,
) -> moela_status {
    const F: &str = "moela_session_load";
    guard(F, || {
        // SAFETY: the caller's contract.
        let mut s = unsafe { session_mut(F, session) }?;
        not_null!(F, path);
        // SAFETY: non-NULL and NUL-terminated (the caller's contract).
        let p = unsafe { super::model::c_path(F, path) }?;
        s.session
            .load_state_file(&p)
            .map_err(|e| state_failure(F, e))?;
        loaded(&mut s);
        Ok(())
    })
}

/// Saves the session's state (as `moela_session_save`) into a caller-owned buffer.
///
/// - `buf`: caller-owned, `cap` bytes; may be NULL when `cap` is 0 (to ask for the size).
/// - `n_needed`: when not NULL, receives the state's size in bytes (also on
///   `BUFFER_TOO_SMALL`).
///
/// With `cap` smaller than the state, writes nothing and returns
/// `MOELA_STATUS_BUFFER_TOO_SMALL`: call once with `cap` 0 to learn the size.
///
/// # Safety
/// `session` is NULL or a live handle not mutated by another thread during the call; `buf`
/// is NULL or points to `cap` writable bytes; `n_needed` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn moela_session_save_buffer(
    session: *const moela_session,
    buf: *mut u8,
    cap: usize,
    n_needed: *mut usize,
) -> moela_status {
    const F: &str = "moela_session_save_buffer";
    guard(F, || {
        // SAFETY: the caller's contract.
        let s = unsafe { session_ref(F, session) }?;
        let need = s.session.state_size();
        if !n_needed.is_null() {
            // SAFETY: non-NULL and writable (the caller's contract).
            unsafe { *n_needed = need };
        }
        if cap < need {
            return Err(Failure::new(
                MOELA_STATUS_BUFFER_TOO_SMALL,
                format!("{F}: the buffer holds {cap} bytes, the state has {need}"),
            ));
        }
        not_null!(F, buf);
        // SAFETY: non-NULL with `cap` writable bytes (the caller's contract), not aliased by
        // anything moela owns.
        let out = unsafe { std::slice::from_raw_parts_mut(buf, cap) };
        s.session
            .save_state_to_slice(out)
            .map_err(|e| state_failure(F, e))?;
        Ok(())
    })
}

/// Loads a state (as `moela_session_load`) from the `len` bytes at `buf`, which must be
/// exactly one state as `moela_session_save_buffer` or `moela_session_save` wrote it.
///
/// - `buf`: borrowed for the call.
///
/// The same statuses as `moela_session_load` (no `IO`). On failure the session is unchanged.
///
/// # Safety
/// `session` is NULL or a live handle not used by another thread during the call; `buf` is
/// NULL or points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn moela_session_load_buffer(
    session: *mut moela_session,
    buf: *const u8,
    len: usize,
) -> moela_status {
    const F: &str = "moela_session_load_buffer";
    guard(F, || {
        // SAFETY: the caller's contract.
        let mut s = unsafe { session_mut(F, session) }?;
        not_null!(F, buf);
        // SAFETY: non-NULL with `len` readable bytes (the caller's contract).
        let bytes = unsafe { std::slice::from_raw_parts(buf, len) };
        s.session
            .load_state_bytes(bytes)
            .map_err(|e| state_failure(F, e))?;
        loaded(&mut s);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionParams;

    fn handle() -> *mut moela_session {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v3");
        let model = Arc::new(Model::load(p).unwrap());
        let params = SessionParams {
            n_ctx: 16,
            ..Default::default()
        };
        let session = Session::new(model, &params).unwrap();
        Box::into_raw(Box::new(moela_session {
            state: RwLock::new(SessionState::new(session)),
        }))
    }

    /// Calls from another thread while this one holds the session: (eval, position).
    fn other_thread(h: *mut moela_session) -> (moela_status, moela_status, String) {
        let addr = h as usize;
        std::thread::spawn(move || {
            let h = addr as *mut moela_session;
            let tokens = [1u32, 2];
            let mut pos = 0u32;
            // SAFETY: a live handle; the lock decides whether the calls may touch it.
            let e = unsafe { moela_session_eval(h, tokens.as_ptr(), tokens.len()) };
            let msg = crate::capi::error::last_error_string();
            // SAFETY: as above; `pos` is writable.
            let p = unsafe { moela_session_position(h, &mut pos) };
            (e, p, msg)
        })
        .join()
        .unwrap()
    }

    #[test]
    fn a_session_in_use_is_busy_not_broken() {
        let h = handle();
        {
            // SAFETY: a live handle.
            let held = unsafe { session_mut("test", h) }.unwrap();
            let (e, p, msg) = other_thread(h);
            assert_eq!((e, p), (MOELA_STATUS_BUSY, MOELA_STATUS_BUSY));
            assert!(
                msg.starts_with("moela_session_eval: the session is in use"),
                "{msg}"
            );
            assert_eq!(held.session.position(), 0);
        }
        // A const call shares the session with other const calls.
        {
            // SAFETY: a live handle.
            let _reader = unsafe { session_ref("test", h) }.unwrap();
            let mut pos = 7u32;
            // SAFETY: a live handle; `pos` is writable.
            assert_eq!(
                unsafe { moela_session_position(h, &mut pos) },
                MOELA_STATUS_OK
            );
            assert_eq!(pos, 0);
            assert_eq!(other_thread(h).0, MOELA_STATUS_BUSY);
        }
        // Released: the session works, it was never broken.
        let (e, p, _) = other_thread(h);
        assert_eq!((e, p), (MOELA_STATUS_OK, MOELA_STATUS_OK));
        // SAFETY: a live handle, freed once.
        unsafe { moela_session_free(h) };
    }

    #[test]
    fn a_panic_during_a_call_makes_the_session_unusable() {
        let h = handle();
        let r = std::panic::catch_unwind(|| {
            // SAFETY: a live handle.
            let _held = unsafe { session_mut("test", h) }.unwrap();
            panic!("boom");
        });
        assert!(r.is_err());
        let (e, p, msg) = other_thread(h);
        assert_eq!((e, p), (MOELA_STATUS_PANIC, MOELA_STATUS_PANIC));
        assert!(msg.contains("unusable after an internal error"), "{msg}");
        // SAFETY: a live handle, freed once.
        unsafe { moela_session_free(h) };
    }
}
