//! The generation loop: prompt in, one callback per token (or text piece) out.

use std::ffi::{c_char, c_void};

use super::error::{guard, not_null, Failure};
use super::moela_status::{self, *};
use super::params::{
    moela_generate_params, read_struct, GENERATE_FLAGS, MOELA_GENERATE_ADD_BOS,
    MOELA_GENERATE_IGNORE_EOS, MOELA_GENERATE_PARSE_SPECIAL, MOELA_SPEC_LOOKUP,
    MOELA_SPEC_MAX_DRAFT, MOELA_SPEC_MTP, MOELA_SPEC_OFF,
};
use super::sampling::{moela_sampler, sampler_mut};
use super::session::{moela_session, session_mut, SessionState};
use super::text::{self, c_text, TextCodec, Utf8Stream};
use crate::speculative::{SpecMode, Speculator};

/// Called with each generated token id and the caller's `user_data`. Return 0 to continue,
/// anything else to stop (`moela_generate_tokens` then returns `MOELA_STATUS_CANCELLED`).
/// It must not unwind (throw a C++ exception or longjmp) through moela.
pub type moela_token_callback =
    Option<unsafe extern "C" fn(token: u32, user_data: *mut c_void) -> i32>;

/// Called with each piece of generated text: `piece` is `piece_len` bytes of UTF-8 (never a
/// split character), NUL-terminated, borrowed only for the call. Return 0 to continue,
/// anything else to stop (`moela_generate` then returns `MOELA_STATUS_CANCELLED`). It must
/// not unwind (throw a C++ exception or longjmp) through moela.
pub type moela_piece_callback = Option<
    unsafe extern "C" fn(piece: *const c_char, piece_len: usize, user_data: *mut c_void) -> i32,
>;

/// Validated generation options.
pub(crate) struct GenOptions {
    pub max_tokens: usize,
    /// The token that ends generation (None with `MOELA_GENERATE_IGNORE_EOS`).
    pub eos: Option<u32>,
    /// Speculative decoding: the drafter and the most drafts per pass.
    pub spec: SpecMode,
    pub max_draft: usize,
}

pub(crate) fn gen_options(
    func: &str,
    p: &moela_generate_params,
    eos: Option<u32>,
) -> Result<GenOptions, Failure> {
    if p.flags & !GENERATE_FLAGS != 0 {
        return Err(Failure::invalid(format!(
            "{func}: unknown flags {:#x} in params.flags",
            p.flags & !GENERATE_FLAGS
        )));
    }
    let spec = match p.spec_mode {
        MOELA_SPEC_OFF => SpecMode::Off,
        MOELA_SPEC_LOOKUP => SpecMode::Lookup,
        MOELA_SPEC_MTP => SpecMode::Mtp,
        x => {
            return Err(Failure::invalid(format!(
                "{func}: params.spec_mode {x} is not a MOELA_SPEC_* value (0 off, 1 lookup, 2 mtp)"
            )))
        }
    };
    if spec != SpecMode::Off && !(1..=MOELA_SPEC_MAX_DRAFT).contains(&p.max_draft) {
        return Err(Failure::invalid(format!(
            "{func}: params.max_draft is {}: must be 1 ..= {MOELA_SPEC_MAX_DRAFT} with speculative \
             decoding",
            p.max_draft
        )));
    }
    Ok(GenOptions {
        max_tokens: p.max_tokens as usize,
        eos: eos.filter(|_| p.flags & MOELA_GENERATE_IGNORE_EOS == 0),
        spec,
        max_draft: p.max_draft as usize,
    })
}

/// The speculator of `opts` for the session (None when off): a clear failure for MTP on a
/// model without the module or with a constrained sampler, before anything is evaluated.
fn speculator(
    func: &str,
    s: &mut SessionState,
    smp: &moela_sampler,
    opts: &GenOptions,
) -> Result<Option<Speculator>, Failure> {
    if opts.spec == SpecMode::Off {
        return Ok(None);
    }
    if opts.spec == SpecMode::Mtp && s.model().weights.mtp.is_none() {
        return Err(Failure::new(
            MOELA_STATUS_UNSUPPORTED,
            format!(
                "{func}: params.spec_mode is MOELA_SPEC_MTP but this model has no \
                 multi-token-prediction (MTP) module (see MOELA_MODEL_INFO_HAS_MTP); use \
                 MOELA_SPEC_LOOKUP or MOELA_SPEC_OFF"
            ),
        ));
    }
    if smp.sampler.is_constrained() {
        return Err(Failure::invalid(format!(
            "{func}: speculative decoding (params.spec_mode) does not work with a constrained \
             sampler (JSON schema or grammar): use one or the other"
        )));
    }
    let drafter = opts.spec.drafter().expect("not off");
    let mut spec = Speculator::new(drafter, opts.max_draft).map_err(|e| sample_failure(func, e))?;
    // MTP keeps the trunk's hidden states from here on (the prompt's included).
    spec.prepare(&mut s.session)
        .map_err(|e| sample_failure(func, e))?;
    s.spec_mode = match opts.spec {
        SpecMode::Mtp => MOELA_SPEC_MTP,
        _ => MOELA_SPEC_LOOKUP,
    };
    Ok(Some(spec))
}

/// The loop every generate function shares. Evaluates `prompt` (may be empty when the
/// session already has logits), then up to `max_tokens` times: sample, hand the token to
/// `on_token` (with whether it ends generation as EOS; `false` from `on_token` stops with
/// CANCELLED), evaluate it. Every token `on_token` accepted is in the session afterwards, so
/// a later call continues the sequence.
pub(crate) fn generate_loop(
    func: &str,
    s: &mut SessionState,
    smp: &mut moela_sampler,
    prompt: &[u32],
    opts: &GenOptions,
    mut on_token: impl FnMut(u32, bool) -> Result<bool, Failure>,
) -> Result<(), Failure> {
    let spec = speculator(func, s, smp, opts)?;
    if prompt.is_empty() {
        s.last_logits(func)?;
    } else {
        s.eval(func, prompt, None)?;
    }
    if let Some(mut spec) = spec {
        let r = speculative_loop(func, s, smp, &mut spec, opts, &mut on_token);
        let (a, b) = (&mut s.spec_stats, spec.stats());
        a.passes += b.passes;
        a.drafted += b.drafted;
        a.accepted += b.accepted;
        a.emitted += b.emitted;
        return r;
    }
    for _ in 0..opts.max_tokens {
        let tok = smp
            .sampler
            .sample(s.last_logits(func)?, &s.history)
            .map_err(|e| sample_failure(func, e))?;
        let is_eos = Some(tok) == opts.eos;
        if !on_token(tok, is_eos)? {
            return Err(Failure::new(
                MOELA_STATUS_CANCELLED,
                format!("{func}: the callback stopped generation"),
            ));
        }
        s.eval(func, &[tok], None)?;
        // EOS, or a constraint (JSON schema / grammar) whose output is complete.
        if is_eos || smp.sampler.is_finished() {
            break;
        }
    }
    Ok(())
}

/// [`generate_loop`] with speculative decoding, with the same contract: each step samples a
/// token, drafts after it and verifies both in one pass (the session then holds the token and
/// the accepted drafts); the tokens go to `on_token` one by one, and at a stop (EOS,
/// `max_tokens`, a refusal) the session is rolled back to the tokens delivered and not
/// refused.
fn speculative_loop(
    func: &str,
    s: &mut SessionState,
    smp: &mut moela_sampler,
    spec: &mut Speculator,
    opts: &GenOptions,
    on_token: &mut impl FnMut(u32, bool) -> Result<bool, Failure>,
) -> Result<(), Failure> {
    // A draft rejected at the position after the last kept token is forgotten with this
    // speculator (a call that continues samples that position afresh): the output's
    // distribution stays plain sampling's, as the tokens a pass produced past a stop are
    // dropped too, whichever way the draft's test went.
    let mut left = opts.max_tokens;
    let mut buf = Vec::new();
    while left > 0 {
        let pos0 = s.session.position();
        buf.clear();
        spec.step(&mut s.session, &mut smp.sampler, &s.history, &mut buf)
            .map_err(|e| sample_failure(func, e))?;
        // With the context full the step evaluates nothing (its one token is unevaluated).
        let evaluated = s.session.position() - pos0;
        for (i, &tok) in buf.iter().enumerate() {
            let is_eos = Some(tok) == opts.eos;
            left -= 1;
            let keep = |s: &mut SessionState, n: usize| {
                s.session.truncate(pos0 + n);
                s.history.extend_from_slice(&buf[..n]);
            };
            // A refusal (or a failing callback) keeps the tokens before this one.
            let go = on_token(tok, is_eos);
            if !matches!(go, Ok(true)) {
                keep(s, i);
                restore_logits(func, s, pos0)?;
                return Err(go.err().unwrap_or_else(|| {
                    Failure::new(
                        MOELA_STATUS_CANCELLED,
                        format!("{func}: the callback stopped generation"),
                    )
                }));
            }
            if i >= evaluated {
                // The context is full (a step evaluates nothing only then): as the plain
                // loop, evaluating the token reports it.
                keep(s, i);
                let r = s.eval(func, &[tok], None);
                debug_assert!(r.is_err(), "the step found no room");
                return r;
            }
            if is_eos || left == 0 {
                keep(s, i + 1);
                return Ok(());
            }
        }
        s.history.extend_from_slice(&buf);
    }
    Ok(())
}

/// After a rollback to `pos0` (the pass's first token refused) the pass's logit rows are gone:
/// the last kept token is evaluated again for the logits after it (bit-identical), which the
/// plain loop leaves for a call that continues.
fn restore_logits(func: &str, s: &mut SessionState, pos0: usize) -> Result<(), Failure> {
    if s.session.logits().is_some() {
        return Ok(());
    }
    let last = *s.history.last().expect("a pass follows evaluated tokens");
    s.session.truncate(pos0 - 1);
    if let Err(e) = s.session.eval(&[last], false) {
        // The session no longer holds it.
        s.history.pop();
        return Err(sample_failure(func, e));
    }
    Ok(())
}

/// A sampling failure (only a constrained sampler fails) as the caller sees it.
pub(crate) fn sample_failure(func: &str, e: crate::Error) -> Failure {
    let mut f = Failure::from(e);
    f.msg = format!("{func}: {}", f.msg);
    f
}

/// Generates token ids: evaluates the prompt after what the session holds, then samples up to
/// `params->max_tokens` tokens, calling `callback(token, user_data)` for each and evaluating
/// it, until the model's end-of-sequence token (which is delivered and evaluated too) unless
/// `MOELA_GENERATE_IGNORE_EOS`.
///
/// - `prompt`: `n_prompt` ids, borrowed. May be empty (NULL, 0) to continue from the
///   session's last logits.
/// - `params`: from `moela_generate_default_params()`, borrowed.
/// - `user_data`: passed to the callback as is (borrowed; may be NULL).
///
/// With a constrained sampler (`moela_sampler_set_json_schema` / `moela_sampler_set_grammar`)
/// every token is one the grammar allows, and generation also ends when the grammar's output
/// is complete.
///
/// With `params->spec_mode` (speculative decoding, not with a constrained sampler) each
/// verification pass evaluates a sampled token and up to `params->max_draft` drafted ones in
/// one batch and keeps the drafts the sampler accepts: the tokens, the callbacks and the
/// session afterwards are as without (greedy: the same tokens; sampling: the same
/// distribution), faster when drafts are accepted. Counters: `moela_session_spec_stats`.
///
/// Returns `MOELA_STATUS_OK` at EOS, `max_tokens` or a complete constrained output,
/// `MOELA_STATUS_CANCELLED` when the callback stopped (the token it was given is not
/// evaluated), `MOELA_STATUS_CONTEXT_FULL` when the context filled up (the tokens delivered so
/// far stay valid), `MOELA_STATUS_INVALID_ARG` when a constraint allows no token of the
/// vocabulary or `params` are bad, `MOELA_STATUS_UNSUPPORTED` for `MOELA_SPEC_MTP` on a model
/// without the module. Every delivered and not refused token is in the session afterwards.
///
/// # Safety
/// `session` and `sampler` are NULL or live handles not used by other threads; `prompt` is
/// NULL or has `n_prompt` readable ids; `params` is NULL or a valid struct; `callback`, when
/// not NULL, is safe to call with `user_data`.
#[no_mangle]
pub unsafe extern "C" fn moela_generate_tokens(
    session: *mut moela_session,
    sampler: *mut moela_sampler,
    prompt: *const u32,
    n_prompt: usize,
    params: *const moela_generate_params,
    callback: moela_token_callback,
    user_data: *mut c_void,
) -> moela_status {
    const F: &str = "moela_generate_tokens";
    guard(F, || {
        // SAFETY: the caller's contract.
        let mut s = unsafe { session_mut(F, session) }?;
        // SAFETY: the caller's contract.
        let smp = unsafe { sampler_mut(F, sampler) }?;
        // SAFETY: the caller's contract.
        let p = unsafe { read_struct(F, "params", params) }?;
        let opts = gen_options(F, &p, s.model().config.eos_token_id)?;
        let Some(cb) = callback else {
            return Err(Failure::null(F, "callback"));
        };
        let prompt: &[u32] = if n_prompt == 0 {
            &[]
        } else {
            not_null!(F, prompt);
            // SAFETY: non-NULL with n_prompt readable ids (the caller's contract).
            unsafe { std::slice::from_raw_parts(prompt, n_prompt) }
        };
        generate_loop(F, &mut s, smp, prompt, &opts, |tok, _| {
            // SAFETY: the caller's contract on callback and user_data.
            Ok(unsafe { cb(tok, user_data) } == 0)
        })
    })
}

/// The text form of the loop: tokenizes `prompt`, streams text pieces to `on_piece` (which
/// returns whether to continue). The EOS token's text is not delivered.
pub(crate) fn generate_text(
    func: &str,
    codec: &dyn TextCodec,
    s: &mut SessionState,
    smp: &mut moela_sampler,
    prompt: &str,
    p: &moela_generate_params,
    mut on_piece: impl FnMut(&str) -> bool,
) -> Result<(), Failure> {
    let opts = gen_options(func, p, s.model().config.eos_token_id)?;
    let mut tflags = 0;
    if p.flags & MOELA_GENERATE_ADD_BOS != 0 {
        tflags |= text::MOELA_TOKENIZE_ADD_BOS;
    }
    if p.flags & MOELA_GENERATE_PARSE_SPECIAL != 0 {
        tflags |= text::MOELA_TOKENIZE_PARSE_SPECIAL;
    }
    let ids = text::tokenize_with(codec, func, prompt, tflags)?;
    let model = s.model().clone();
    let mut stream = Utf8Stream::default();
    let mut piece = String::new();
    generate_loop(func, s, smp, &ids, &opts, |tok, is_eos| {
        if is_eos {
            return Ok(true);
        }
        piece.clear();
        stream.push(&text::token_bytes(codec, &model, func, tok)?, &mut piece);
        Ok(piece.is_empty() || on_piece(&piece))
    })?;
    piece.clear();
    stream.flush(&mut piece);
    if !piece.is_empty() && !on_piece(&piece) {
        return Err(Failure::new(
            MOELA_STATUS_CANCELLED,
            format!("{func}: the callback stopped generation"),
        ));
    }
    Ok(())
}

/// Generates text: tokenizes `prompt` (with `MOELA_GENERATE_ADD_BOS` /
/// `MOELA_GENERATE_PARSE_SPECIAL` from `params->flags`), evaluates it after what the session
/// holds, then samples up to `params->max_tokens` tokens as `moela_generate_tokens` does,
/// calling `callback(piece, piece_len, user_data)` with the text as it completes (a piece
/// never splits a UTF-8 character; the end-of-sequence token's text is not delivered).
///
/// - `prompt`: `prompt_len` bytes of UTF-8, borrowed; may be NULL when `prompt_len` is 0
///   (continue from the session's last logits).
///
/// Returns as `moela_generate_tokens`, plus `MOELA_STATUS_INVALID_UTF8` and
/// `MOELA_STATUS_UNSUPPORTED` (the model has no tokenizer).
///
/// # Safety
/// `session` and `sampler` are NULL or live handles not used by other threads; `prompt` is
/// NULL or has `prompt_len` readable bytes; `params` is NULL or a valid struct; `callback`,
/// when not NULL, is safe to call with `user_data`.
#[no_mangle]
pub unsafe extern "C" fn moela_generate(
    session: *mut moela_session,
    sampler: *mut moela_sampler,
    prompt: *const c_char,
    prompt_len: usize,
    params: *const moela_generate_params,
    callback: moela_piece_callback,
    user_data: *mut c_void,
) -> moela_status {
    const F: &str = "moela_generate";
    guard(F, || {
        // SAFETY: the caller's contract.
        let mut s = unsafe { session_mut(F, session) }?;
        // SAFETY: the caller's contract.
        let smp = unsafe { sampler_mut(F, sampler) }?;
        // SAFETY: the caller's contract.
        let p = unsafe { read_struct(F, "params", params) }?;
        gen_options(F, &p, None)?;
        let Some(cb) = callback else {
            return Err(Failure::null(F, "callback"));
        };
        // SAFETY: the caller's contract.
        let prompt = unsafe { c_text(F, "prompt", prompt, prompt_len) }?;
        let model = s.model().clone();
        let codec = text::codec(&model)?;
        let mut cbuf = Vec::new();
        generate_text(F, codec, &mut s, smp, prompt, &p, |piece| {
            cbuf.clear();
            cbuf.extend_from_slice(piece.as_bytes());
            cbuf.push(0);
            // SAFETY: the caller's contract on callback and user_data; the piece is
            // NUL-terminated and lives through the call.
            unsafe { cb(cbuf.as_ptr().cast::<c_char>(), piece.len(), user_data) == 0 }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capi::params::{moela_sampling_params, AbiStruct};
    use crate::capi::text::tests::ByteCodec;
    use crate::sampler::Sampler;
    use crate::{Model, Session, SessionParams};
    use std::sync::Arc;

    fn fixture() -> Arc<Model> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v3");
        Arc::new(Model::load(p).unwrap())
    }

    fn session(model: &Arc<Model>, n_ctx: usize) -> SessionState {
        SessionState::new(
            Session::new(
                model.clone(),
                &SessionParams {
                    n_ctx,
                    ..Default::default()
                },
            )
            .unwrap(),
        )
    }

    fn greedy() -> moela_sampler {
        let mut p = moela_sampling_params::defaults();
        p.temperature = 0.0;
        let sp = crate::capi::params::sampler_params("t", &p).unwrap();
        moela_sampler {
            sampler: Sampler::new(sp).unwrap(),
        }
    }

    fn opts(max_tokens: usize) -> GenOptions {
        GenOptions {
            max_tokens,
            eos: None,
            spec: SpecMode::Off,
            max_draft: 4,
        }
    }

    #[test]
    fn loop_matches_plain_greedy_and_continues() {
        let model = fixture();
        // The reference: the CLI's loop.
        let mut plain = Session::new(model.clone(), &SessionParams::default()).unwrap();
        let mut sampler = Sampler::greedy();
        let mut hist = vec![3u32, 4, 5];
        let mut logits = plain.eval(&hist, false).unwrap().to_vec();
        let mut want = vec![];
        for _ in 0..8 {
            let t = sampler.sample(&logits, &hist).unwrap();
            want.push(t);
            hist.push(t);
            logits = plain.eval(&[t], false).unwrap().to_vec();
        }
        let mut s = session(&model, 0);
        let mut smp = greedy();
        let mut got = vec![];
        generate_loop("t", &mut s, &mut smp, &[3, 4, 5], &opts(5), |t, _| {
            got.push(t);
            Ok(true)
        })
        .unwrap();
        // Continue with an empty prompt.
        generate_loop("t", &mut s, &mut smp, &[], &opts(3), |t, _| {
            got.push(t);
            Ok(true)
        })
        .unwrap();
        assert_eq!(got, want);
        assert_eq!(s.session.position(), 3 + 8);
    }

    #[test]
    fn stop_and_context_full() {
        let model = fixture();
        let mut s = session(&model, 6);
        let mut smp = greedy();
        let mut n = 0;
        let e = generate_loop("t", &mut s, &mut smp, &[3, 4], &opts(10), |_, _| {
            n += 1;
            Ok(n < 2)
        })
        .unwrap_err();
        assert_eq!(e.status, MOELA_STATUS_CANCELLED);
        // The refused token was not evaluated.
        assert_eq!(s.session.position(), 3);
        let e = generate_loop("t", &mut s, &mut smp, &[], &opts(10), |_, _| Ok(true)).unwrap_err();
        assert_eq!(e.status, MOELA_STATUS_CONTEXT_FULL);
        assert_eq!(s.session.position(), 6);
        let mut fresh = session(&model, 6);
        let e =
            generate_loop("t", &mut fresh, &mut smp, &[], &opts(1), |_, _| Ok(true)).unwrap_err();
        assert_eq!(e.status, MOELA_STATUS_INVALID_ARG);
    }

    #[test]
    fn eos_ends_generation_after_being_delivered() {
        let model = fixture();
        // Find greedy's third token, then declare it the EOS.
        let mut s = session(&model, 0);
        let mut smp = greedy();
        let mut free = vec![];
        generate_loop("t", &mut s, &mut smp, &[7, 8], &opts(3), |t, _| {
            free.push(t);
            Ok(true)
        })
        .unwrap();
        let eos = free[2];
        let mut s = session(&model, 0);
        let mut seen = vec![];
        let o = GenOptions {
            eos: Some(eos),
            ..opts(10)
        };
        generate_loop("t", &mut s, &mut smp, &[7, 8], &o, |t, is_eos| {
            assert_eq!(is_eos, t == eos);
            seen.push(t);
            Ok(true)
        })
        .unwrap();
        let first = free.iter().position(|&t| t == eos).unwrap();
        assert_eq!(seen, free[..=first]);
        // The EOS was evaluated too.
        assert_eq!(s.session.position(), 2 + seen.len());
    }

    #[test]
    fn text_generation_streams_whole_characters() {
        let model = fixture();
        let mut s = session(&model, 0);
        let mut smp = greedy();
        let mut p = moela_generate_params::defaults();
        p.max_tokens = 12;
        p.flags = MOELA_GENERATE_IGNORE_EOS | MOELA_GENERATE_ADD_BOS;
        let mut pieces: Vec<String> = vec![];
        generate_text("t", &ByteCodec, &mut s, &mut smp, "é", &p, |piece| {
            pieces.push(piece.to_string());
            true
        })
        .unwrap();
        // BOS + 2 bytes of "é" + 12 generated.
        assert_eq!(s.session.position(), 15);
        let text: String = pieces.concat();
        let ids: Vec<u32> = s.history[3..].to_vec();
        let bytes: Vec<u8> = ids.iter().map(|&t| t as u8).collect();
        assert_eq!(text, String::from_utf8_lossy(&bytes));
        // Stop after the first piece.
        let mut s = session(&model, 0);
        let mut n = 0;
        let e = generate_text("t", &ByteCodec, &mut s, &mut smp, "ab", &p, |_| {
            n += 1;
            false
        })
        .unwrap_err();
        assert_eq!((e.status, n), (MOELA_STATUS_CANCELLED, 1));
    }

    /// A generate_loop run: (tokens delivered, failure status if any, session position).
    fn run(
        s: &mut SessionState,
        smp: &mut moela_sampler,
        prompt: &[u32],
        o: &GenOptions,
        stop_after: usize,
    ) -> (Vec<u32>, Option<moela_status>, usize) {
        let mut got = vec![];
        let r = generate_loop("t", s, smp, prompt, o, |t, _| {
            got.push(t);
            Ok(got.len() < stop_after)
        });
        (got, r.err().map(|f| f.status), s.session.position())
    }

    #[test]
    fn speculative_loop_keeps_the_plain_loop_contract() {
        let v3 = fixture();
        let mtp = Arc::new(
            Model::load(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v3_mtp"),
            )
            .unwrap(),
        );
        // Repetitive, so lookup drafts from the start.
        let prompt = [3u32, 4, 5, 3, 4, 5, 3, 4];
        let plain = opts(20);
        for (model, spec) in [
            (&v3, SpecMode::Lookup),
            (&mtp, SpecMode::Lookup),
            (&mtp, SpecMode::Mtp),
        ] {
            let (want, st, _) = run(&mut session(model, 0), &mut greedy(), &prompt, &plain, 99);
            assert_eq!((want.len(), st), (20, None));
            for max_draft in [1, 3, 6] {
                let o = GenOptions {
                    spec,
                    max_draft,
                    ..opts(12)
                };
                let label = format!("{spec:?} draft {max_draft}");
                // 12 tokens, then 8 more from the session's logits: plain greedy's 20.
                let mut s = session(model, 0);
                let mut smp = greedy();
                let (mut got, st, pos) = run(&mut s, &mut smp, &prompt, &o, 99);
                assert_eq!((st, pos), (None, prompt.len() + 12), "{label}");
                let (more, st, pos) = run(
                    &mut s,
                    &mut smp,
                    &[],
                    &GenOptions { max_tokens: 8, ..o },
                    99,
                );
                got.extend(more);
                assert_eq!((st, pos), (None, prompt.len() + 20), "{label}");
                assert_eq!(got, want, "{label}");
                assert_eq!(s.history.len(), pos);
                let c = s.spec_stats;
                assert!(c.passes > 0 && c.accepted <= c.drafted, "{label}: {c:?}");
                assert_eq!(c.emitted, c.passes + c.accepted, "{label}");
                assert!(c.emitted >= 20, "{label}: {c:?}");
                // Refusals at every offset: the refused token is not kept, and a call that
                // continues gives plain greedy's tokens (the logits survive a rollback).
                for stop in 1..=5 {
                    let mut s = session(model, 0);
                    let (got, st, pos) = run(&mut s, &mut smp, &prompt, &o, stop);
                    assert_eq!(st, Some(MOELA_STATUS_CANCELLED), "{label}");
                    assert_eq!((&got[..], pos), (&want[..stop], prompt.len() + stop - 1));
                    let (rest, st, _) = run(&mut s, &mut smp, &[], &o, 99);
                    assert_eq!(st, None, "{label}");
                    assert_eq!(
                        &rest[..],
                        &want[stop - 1..stop - 1 + 12],
                        "{label} stop {stop}"
                    );
                }
                // A failing callback (a text callback's decoding error) stops as a refusal.
                for fail_at in [1, 3] {
                    let mut s = session(model, 0);
                    let mut n = 0;
                    let e = generate_loop("t", &mut s, &mut smp, &prompt, &o, |_, _| {
                        n += 1;
                        if n == fail_at {
                            return Err(Failure::invalid("boom"));
                        }
                        Ok(true)
                    })
                    .unwrap_err();
                    assert_eq!(e.status, MOELA_STATUS_INVALID_ARG);
                    assert_eq!(s.session.position(), prompt.len() + fail_at - 1);
                    assert_eq!(s.history.len(), s.session.position());
                    let (rest, st, _) = run(&mut s, &mut smp, &[], &o, 99);
                    assert_eq!(st, None, "{label}");
                    assert_eq!(&rest[..], &want[fail_at - 1..fail_at - 1 + 12], "{label}");
                }
                // The end of the context: every token delivered, the last one unevaluated.
                let n_ctx = prompt.len() + 7;
                let mut s = session(model, n_ctx);
                let (got, st, pos) = run(&mut s, &mut smp, &prompt, &o, 99);
                assert_eq!(st, Some(MOELA_STATUS_CONTEXT_FULL), "{label}");
                assert_eq!((&got[..], pos), (&want[..8], n_ctx), "{label}");
                // An EOS ends generation after being delivered and evaluated.
                let eos = want[5];
                let first = want.iter().position(|&t| t == eos).unwrap();
                let mut s = session(model, 0);
                let (got, st, pos) = run(
                    &mut s,
                    &mut smp,
                    &prompt,
                    &GenOptions {
                        eos: Some(eos),
                        ..o
                    },
                    99,
                );
                assert_eq!(st, None);
                assert_eq!((&got[..], pos), (&want[..=first], prompt.len() + first + 1));
            }
        }
        // Bad settings fail before anything is evaluated.
        let mut s = session(&v3, 0);
        let mtp_opts = GenOptions {
            spec: SpecMode::Mtp,
            ..opts(4)
        };
        let (_, st, pos) = run(&mut s, &mut greedy(), &prompt, &mtp_opts, 99);
        assert_eq!((st, pos), (Some(MOELA_STATUS_UNSUPPORTED), 0));
        let mut p = moela_generate_params::defaults();
        p.spec_mode = 3;
        assert_eq!(
            gen_options("t", &p, None).err().unwrap().status,
            MOELA_STATUS_INVALID_ARG
        );
        p.spec_mode = MOELA_SPEC_LOOKUP;
        for bad in [0, MOELA_SPEC_MAX_DRAFT + 1] {
            p.max_draft = bad;
            assert_eq!(
                gen_options("t", &p, None).err().unwrap().status,
                MOELA_STATUS_INVALID_ARG
            );
        }
        // Off ignores max_draft (an old caller's struct has none).
        p.spec_mode = MOELA_SPEC_OFF;
        assert!(gen_options("t", &p, None).is_ok());
    }
}
