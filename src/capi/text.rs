//! Text in and out: tokenize, token bytes, the streaming detokenizer, chat templates.
//!
//! Everything here goes through [`TextCodec`], the few tokenizer operations the C API needs,
//! so the C surface is fixed now and only [`codec`] changes when a model carries a tokenizer.
//! UTF-8 streaming ([`Utf8Stream`]) is done here, over the tokens' bytes.

use std::borrow::Cow;
use std::ffi::{c_char, CStr};
use std::sync::Arc;

use super::error::{guard, guard_value, not_null, Failure};
use super::model::{model_ref, moela_model};
use super::moela_status::{self, *};
use crate::model::Model;

/// `moela_tokenize` flags: put the model's BOS token first.
pub const MOELA_TOKENIZE_ADD_BOS: u32 = 1;
/// `moela_tokenize` flags: recognise special tokens written in the text (e.g. a chat
/// template's `<｜User｜>`); without it they are tokenized as plain text, so user input cannot
/// inject control tokens.
pub const MOELA_TOKENIZE_PARSE_SPECIAL: u32 = 1 << 1;
const TOKENIZE_FLAGS: u32 = MOELA_TOKENIZE_ADD_BOS | MOELA_TOKENIZE_PARSE_SPECIAL;

/// `moela_chat_apply_template` flags: end with the opening of an assistant turn, so that
/// generation continues as the assistant.
pub const MOELA_CHAT_ADD_GENERATION_PROMPT: u32 = 1;

/// One chat message for `moela_chat_apply_template`: NUL-terminated UTF-8 strings, borrowed
/// for the call. This struct never changes (it is used in arrays).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct moela_chat_message {
    /// "system", "user", "assistant" or "tool" (any other role is refused, not dropped).
    pub role: *const c_char,
    pub content: *const c_char,
}

/// A chat message, borrowed.
// Read only by TextCodec implementations, of which this build has only the tests' one.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChatMessageRef<'a> {
    pub role: &'a str,
    pub content: &'a str,
}

/// What the C API needs from a tokenizer.
pub(crate) trait TextCodec {
    fn encode(&self, text: &str, add_bos: bool, parse_special: bool) -> crate::Result<Vec<u32>>;
    /// The bytes of a token (possibly part of a UTF-8 character); None when out of range.
    fn token_bytes(&self, id: u32) -> Option<Cow<'_, [u8]>>;
    fn apply_chat_template(
        &self,
        messages: &[ChatMessageRef<'_>],
        add_generation_prompt: bool,
    ) -> crate::Result<String>;
}

impl TextCodec for crate::tokenizer::Tokenizer {
    fn encode(&self, text: &str, add_bos: bool, parse_special: bool) -> crate::Result<Vec<u32>> {
        Ok(crate::tokenizer::Tokenizer::encode(
            self,
            text,
            add_bos,
            parse_special,
        ))
    }
    fn token_bytes(&self, id: u32) -> Option<Cow<'_, [u8]>> {
        self.token_to_bytes(id).map(Cow::Borrowed)
    }
    fn apply_chat_template(
        &self,
        messages: &[ChatMessageRef<'_>],
        add_generation_prompt: bool,
    ) -> crate::Result<String> {
        let msgs: Vec<crate::tokenizer::ChatMessage> = messages
            .iter()
            .map(|m| crate::tokenizer::ChatMessage::new(m.role, m.content))
            .collect();
        crate::tokenizer::Tokenizer::apply_chat_template(self, &msgs, add_generation_prompt)
    }
}

/// The model's tokenizer; `MOELA_STATUS_UNSUPPORTED` when the file carries none (token ids
/// still work through moela_session_eval / moela_generate_tokens).
pub(crate) fn codec(model: &Model) -> Result<&dyn TextCodec, Failure> {
    match &model.tokenizer {
        Some(t) => Ok(t),
        None => Err(Failure::new(
            MOELA_STATUS_UNSUPPORTED,
            "this model has no tokenizer (no tokenizer.ggml.* metadata or tokenizer.json), so text functions are unavailable; use the token-id functions (moela_session_eval, moela_generate_tokens)",
        )),
    }
}

fn with_func(func: &str, mut f: Failure) -> Failure {
    f.msg = format!("{func}: {}", f.msg);
    f
}

/// A UTF-8 string from a pointer and a length; NULL is allowed when the length is 0.
///
/// # Safety
/// `text` is NULL or points to `len` readable bytes.
pub(crate) unsafe fn c_text<'a>(
    func: &str,
    arg: &str,
    text: *const c_char,
    len: usize,
) -> Result<&'a str, Failure> {
    let bytes: &[u8] = if len == 0 {
        &[]
    } else {
        if text.is_null() {
            return Err(Failure::null(func, arg));
        }
        // SAFETY: non-NULL with len readable bytes (the caller's contract).
        unsafe { std::slice::from_raw_parts(text.cast::<u8>(), len) }
    };
    std::str::from_utf8(bytes).map_err(|e| {
        Failure::new(
            MOELA_STATUS_INVALID_UTF8,
            format!("{func}: '{arg}' is not valid UTF-8 ({e})"),
        )
    })
}

/// A NUL-terminated UTF-8 string.
///
/// # Safety
/// `s` is NULL or NUL-terminated.
pub(crate) unsafe fn c_str<'a>(
    func: &str,
    arg: &str,
    s: *const c_char,
) -> Result<&'a str, Failure> {
    if s.is_null() {
        return Err(Failure::null(func, arg));
    }
    // SAFETY: non-NULL and NUL-terminated (the caller's contract).
    unsafe { CStr::from_ptr(s) }.to_str().map_err(|e| {
        Failure::new(
            MOELA_STATUS_INVALID_UTF8,
            format!("{func}: '{arg}' is not valid UTF-8 ({e})"),
        )
    })
}

/// Copies `bytes` and a NUL into a caller's buffer; `*n_bytes` = bytes.len() always.
///
/// # Safety
/// `buf` is NULL or points to `buf_size` writable bytes; `n_bytes` is non-NULL and writable.
unsafe fn copy_out(
    func: &str,
    bytes: &[u8],
    buf: *mut c_char,
    buf_size: usize,
    n_bytes: *mut usize,
) -> Result<(), Failure> {
    // SAFETY: the caller's contract.
    unsafe { *n_bytes = bytes.len() };
    if buf_size < bytes.len() + 1 {
        return Err(Failure::new(
            MOELA_STATUS_BUFFER_TOO_SMALL,
            format!(
                "{func}: the buffer holds {buf_size} bytes, {} are needed (with the NUL)",
                bytes.len() + 1
            ),
        ));
    }
    // buf_size >= 1 here, so the caller promised a buffer.
    not_null!(func, buf);
    // SAFETY: buf has buf_size >= len+1 writable bytes, distinct from moela's `bytes`.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), bytes.len());
        *buf.add(bytes.len()) = 0;
    }
    Ok(())
}

/// Incremental UTF-8 decoding of a byte stream: emits only whole characters, keeps an
/// incomplete tail for the next bytes, and turns invalid sequences into U+FFFD.
#[derive(Default, Debug)]
pub(crate) struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    pub fn push(&mut self, bytes: &[u8], out: &mut String) {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    out.push_str(s);
                    start = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(
                        std::str::from_utf8(&self.pending[start..start + valid])
                            .unwrap_or_default(),
                    );
                    start += valid;
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{FFFD}');
                            start += n;
                        }
                        // An incomplete character at the end: wait for more bytes.
                        None => break,
                    }
                }
            }
        }
        self.pending.drain(..start);
    }

    /// Emits whatever is left (an incomplete character becomes U+FFFD) and starts afresh.
    pub fn flush(&mut self, out: &mut String) {
        out.push_str(&String::from_utf8_lossy(&self.pending));
        self.pending.clear();
    }
}

pub(crate) fn token_bytes<'c>(
    codec: &'c dyn TextCodec,
    model: &Model,
    func: &str,
    id: u32,
) -> Result<Cow<'c, [u8]>, Failure> {
    codec.token_bytes(id).ok_or_else(|| {
        Failure::new(
            MOELA_STATUS_TOKEN_OUT_OF_RANGE,
            format!(
                "{func}: token id {id} is out of range (vocabulary size {})",
                model.config.vocab_size
            ),
        )
    })
}

/// Tokenizes, checking flags. Returns the ids.
pub(crate) fn tokenize_with(
    codec: &dyn TextCodec,
    func: &str,
    text: &str,
    flags: u32,
) -> Result<Vec<u32>, Failure> {
    if flags & !TOKENIZE_FLAGS != 0 {
        return Err(Failure::invalid(format!(
            "{func}: unknown flags {:#x}",
            flags & !TOKENIZE_FLAGS
        )));
    }
    codec
        .encode(
            text,
            flags & MOELA_TOKENIZE_ADD_BOS != 0,
            flags & MOELA_TOKENIZE_PARSE_SPECIAL != 0,
        )
        .map_err(|e| with_func(func, e.into()))
}

/// Turns text into token ids.
///
/// - `text`: `text_len` bytes of UTF-8 (no NUL needed), borrowed; may be NULL if
///   `text_len` is 0.
/// - `flags`: `MOELA_TOKENIZE_ADD_BOS`, `MOELA_TOKENIZE_PARSE_SPECIAL`.
/// - `tokens`: caller-owned room for `n_tokens_max` ids; may be NULL if `n_tokens_max` is 0
///   (to ask for the size).
/// - `n_tokens`: receives the number of ids, also when the buffer is too small
///   (`MOELA_STATUS_BUFFER_TOO_SMALL`, nothing written): call again with that much room.
///
/// Returns `MOELA_STATUS_INVALID_UTF8`, `MOELA_STATUS_UNSUPPORTED` (the model has no
/// tokenizer). Thread-safe (const handle).
///
/// # Safety
/// `model` is NULL or a live handle; `text` is NULL or has `text_len` readable bytes;
/// `tokens` is NULL or has room for `n_tokens_max` ids; `n_tokens` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn moela_tokenize(
    model: *const moela_model,
    text: *const c_char,
    text_len: usize,
    flags: u32,
    tokens: *mut u32,
    n_tokens_max: usize,
    n_tokens: *mut usize,
) -> moela_status {
    const F: &str = "moela_tokenize";
    guard(F, || {
        // SAFETY: the caller's contract.
        let m = unsafe { model_ref(F, model) }?;
        not_null!(F, n_tokens);
        // SAFETY: the caller's contract.
        let text = unsafe { c_text(F, "text", text, text_len) }?;
        let ids = tokenize_with(codec(&m.model)?, F, text, flags)?;
        // SAFETY: non-NULL and writable (the caller's contract).
        unsafe { *n_tokens = ids.len() };
        if ids.len() > n_tokens_max {
            return Err(Failure::new(
                MOELA_STATUS_BUFFER_TOO_SMALL,
                format!(
                    "{F}: the text has {} tokens, the buffer holds {n_tokens_max}",
                    ids.len()
                ),
            ));
        }
        if !ids.is_empty() {
            not_null!(F, tokens);
            // SAFETY: tokens has room for n_tokens_max >= ids.len() ids (the caller's
            // contract), distinct from `ids`.
            unsafe { std::ptr::copy_nonoverlapping(ids.as_ptr(), tokens, ids.len()) };
        }
        Ok(())
    })
}

/// The bytes of one token (which may be part of a UTF-8 character: for display, prefer the
/// detokenizer).
///
/// - `buf`: caller-owned, `buf_size` bytes; receives the bytes and a NUL. May be NULL if
///   `buf_size` is 0.
/// - `n_bytes`: receives the token's length without the NUL, also when the buffer is too
///   small (`MOELA_STATUS_BUFFER_TOO_SMALL`: it needs `*n_bytes + 1` bytes).
///
/// Returns `MOELA_STATUS_TOKEN_OUT_OF_RANGE`, `MOELA_STATUS_UNSUPPORTED` (no tokenizer).
/// Thread-safe (const handle).
///
/// # Safety
/// `model` is NULL or a live handle; `buf` is NULL or has `buf_size` writable bytes;
/// `n_bytes` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn moela_token_to_piece(
    model: *const moela_model,
    token: u32,
    buf: *mut c_char,
    buf_size: usize,
    n_bytes: *mut usize,
) -> moela_status {
    const F: &str = "moela_token_to_piece";
    guard(F, || {
        // SAFETY: the caller's contract.
        let m = unsafe { model_ref(F, model) }?;
        not_null!(F, n_bytes);
        let codec = codec(&m.model)?;
        let bytes = token_bytes(codec, &m.model, F, token)?;
        // SAFETY: the caller's contract on buf and n_bytes (non-NULL).
        unsafe { copy_out(F, &bytes, buf, buf_size, n_bytes) }
    })
}

/// Decodes token ids into `out` (UTF-8; invalid sequences become U+FFFD).
pub(crate) fn detokenize_with(
    codec: &dyn TextCodec,
    model: &Model,
    func: &str,
    ids: &[u32],
) -> Result<String, Failure> {
    let mut stream = Utf8Stream::default();
    let mut out = String::new();
    for &id in ids {
        stream.push(&token_bytes(codec, model, func, id)?, &mut out);
    }
    stream.flush(&mut out);
    Ok(out)
}

/// Turns token ids into text (UTF-8; bytes that do not form valid UTF-8 become U+FFFD).
///
/// - `tokens`: `n_tokens` ids, borrowed; may be NULL if `n_tokens` is 0.
/// - `buf`: caller-owned, `buf_size` bytes; receives the text and a NUL. May be NULL if
///   `buf_size` is 0.
/// - `n_bytes`: receives the text's length without the NUL, also when the buffer is too small
///   (`MOELA_STATUS_BUFFER_TOO_SMALL`: it needs `*n_bytes + 1` bytes).
///
/// Thread-safe (const handle).
///
/// # Safety
/// `model` is NULL or a live handle; `tokens` is NULL or has `n_tokens` readable ids; `buf`
/// is NULL or has `buf_size` writable bytes; `n_bytes` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn moela_detokenize(
    model: *const moela_model,
    tokens: *const u32,
    n_tokens: usize,
    buf: *mut c_char,
    buf_size: usize,
    n_bytes: *mut usize,
) -> moela_status {
    const F: &str = "moela_detokenize";
    guard(F, || {
        // SAFETY: the caller's contract.
        let m = unsafe { model_ref(F, model) }?;
        not_null!(F, n_bytes);
        let ids: &[u32] = if n_tokens == 0 {
            &[]
        } else {
            not_null!(F, tokens);
            // SAFETY: non-NULL with n_tokens readable ids (the caller's contract).
            unsafe { std::slice::from_raw_parts(tokens, n_tokens) }
        };
        let text = detokenize_with(codec(&m.model)?, &m.model, F, ids)?;
        // SAFETY: the caller's contract on buf and n_bytes (non-NULL).
        unsafe { copy_out(F, text.as_bytes(), buf, buf_size, n_bytes) }
    })
}

/// A streaming detokenizer: feed it token ids one by one and it gives back text that never
/// splits a UTF-8 character. Used by one thread at a time. Opaque.
pub struct moela_detokenizer {
    model: Arc<Model>,
    stream: Utf8Stream,
    /// The last piece, NUL-terminated (what the out-pointers borrow).
    piece: Vec<u8>,
}

impl moela_detokenizer {
    fn set_piece(&mut self, s: String) -> (*const c_char, usize) {
        let len = s.len();
        self.piece = s.into_bytes();
        self.piece.push(0);
        (self.piece.as_ptr().cast::<c_char>(), len)
    }
}

/// Creates a streaming detokenizer for `model` (borrowed: the detokenizer keeps what it
/// needs alive). `out_detokenizer` receives it (ownership transferred: free it with
/// `moela_detokenizer_free`), or NULL on failure.
///
/// Returns `MOELA_STATUS_UNSUPPORTED` when the model has no tokenizer.
///
/// # Safety
/// `model` is NULL or a live handle; `out_detokenizer` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn moela_detokenizer_new(
    model: *const moela_model,
    out_detokenizer: *mut *mut moela_detokenizer,
) -> moela_status {
    const F: &str = "moela_detokenizer_new";
    guard(F, || {
        not_null!(F, out_detokenizer);
        // SAFETY: non-NULL and writable (the caller's contract).
        unsafe { *out_detokenizer = std::ptr::null_mut() };
        // SAFETY: the caller's contract.
        let m = unsafe { model_ref(F, model) }?;
        codec(&m.model)?;
        let d = Box::new(moela_detokenizer {
            model: m.model.clone(),
            stream: Utf8Stream::default(),
            piece: vec![0],
        });
        // SAFETY: as above.
        unsafe { *out_detokenizer = Box::into_raw(d) };
        Ok(())
    })
}

/// Frees a detokenizer. NULL is a no-op. Ownership of `detokenizer` is transferred.
///
/// # Safety
/// `detokenizer` is NULL or a live handle not freed yet and not in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn moela_detokenizer_free(detokenizer: *mut moela_detokenizer) {
    guard_value("moela_detokenizer_free", (), || {
        if !detokenizer.is_null() {
            // SAFETY: a live handle from Box::into_raw in moela_detokenizer_new, freed once.
            drop(unsafe { Box::from_raw(detokenizer) });
        }
    })
}

/// Adds one token; `*out_text` / `*out_len` receive the text that is now complete (possibly
/// empty: a character may need the next token's bytes). The text is NUL-terminated UTF-8,
/// borrowed from the detokenizer: valid until its next call or its free.
///
/// Returns `MOELA_STATUS_TOKEN_OUT_OF_RANGE` (nothing is consumed).
///
/// # Safety
/// `detokenizer` is NULL or a live handle not used by another thread; `out_text` and
/// `out_len` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn moela_detokenizer_feed(
    detokenizer: *mut moela_detokenizer,
    token: u32,
    out_text: *mut *const c_char,
    out_len: *mut usize,
) -> moela_status {
    const F: &str = "moela_detokenizer_feed";
    guard(F, || {
        not_null!(F, detokenizer, out_text, out_len);
        // SAFETY: non-NULL live handle used by this thread only (the caller's contract).
        let d = unsafe { &mut *detokenizer };
        let model = d.model.clone();
        let codec = codec(&model)?;
        let bytes = token_bytes(codec, &model, F, token)?;
        let mut s = String::new();
        d.stream.push(&bytes, &mut s);
        let (p, n) = d.set_piece(s);
        // SAFETY: non-NULL and writable (the caller's contract).
        unsafe {
            *out_text = p;
            *out_len = n;
        }
        Ok(())
    })
}

/// Ends the stream: `*out_text` / `*out_len` receive what is left (an incomplete character
/// becomes U+FFFD), borrowed as in `moela_detokenizer_feed`. The detokenizer is then empty
/// and ready for a new stream.
///
/// # Safety
/// As `moela_detokenizer_feed`.
#[no_mangle]
pub unsafe extern "C" fn moela_detokenizer_flush(
    detokenizer: *mut moela_detokenizer,
    out_text: *mut *const c_char,
    out_len: *mut usize,
) -> moela_status {
    const F: &str = "moela_detokenizer_flush";
    guard(F, || {
        not_null!(F, detokenizer, out_text, out_len);
        // SAFETY: non-NULL live handle used by this thread only (the caller's contract).
        let d = unsafe { &mut *detokenizer };
        let mut s = String::new();
        d.stream.flush(&mut s);
        let (p, n) = d.set_piece(s);
        // SAFETY: non-NULL and writable (the caller's contract).
        unsafe {
            *out_text = p;
            *out_len = n;
        }
        Ok(())
    })
}

/// Renders a conversation with the model's chat template into a prompt (tokenize it with
/// `MOELA_TOKENIZE_PARSE_SPECIAL`, or pass it to `moela_generate` with
/// `MOELA_GENERATE_PARSE_SPECIAL`).
///
/// - `messages`: `n_messages` messages, borrowed; each role and content NUL-terminated UTF-8.
/// - `flags`: `MOELA_CHAT_ADD_GENERATION_PROMPT`.
/// - `buf`: caller-owned, `buf_size` bytes; receives the prompt and a NUL. May be NULL if
///   `buf_size` is 0.
/// - `n_bytes`: receives the prompt's length without the NUL, also when the buffer is too
///   small (`MOELA_STATUS_BUFFER_TOO_SMALL`: it needs `*n_bytes + 1` bytes).
///
/// A message whose role is not "system", "user", "assistant" or "tool" (or "tool" with a
/// DeepSeek-V2 model without its own template) returns `MOELA_STATUS_INVALID_ARG` naming
/// the message and its role, since the templates would drop its content silently.
///
/// Thread-safe (const handle).
///
/// # Safety
/// `model` is NULL or a live handle; `messages` is NULL or has `n_messages` readable entries
/// whose strings are NULL or NUL-terminated; `buf` is NULL or has `buf_size` writable bytes;
/// `n_bytes` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn moela_chat_apply_template(
    model: *const moela_model,
    messages: *const moela_chat_message,
    n_messages: usize,
    flags: u32,
    buf: *mut c_char,
    buf_size: usize,
    n_bytes: *mut usize,
) -> moela_status {
    const F: &str = "moela_chat_apply_template";
    guard(F, || {
        // SAFETY: the caller's contract.
        let m = unsafe { model_ref(F, model) }?;
        not_null!(F, n_bytes);
        if flags & !MOELA_CHAT_ADD_GENERATION_PROMPT != 0 {
            return Err(Failure::invalid(format!(
                "{F}: unknown flags {:#x}",
                flags & !MOELA_CHAT_ADD_GENERATION_PROMPT
            )));
        }
        let raw: &[moela_chat_message] = if n_messages == 0 {
            &[]
        } else {
            not_null!(F, messages);
            // SAFETY: non-NULL with n_messages readable entries (the caller's contract).
            unsafe { std::slice::from_raw_parts(messages, n_messages) }
        };
        let mut msgs = Vec::with_capacity(raw.len());
        for (i, msg) in raw.iter().enumerate() {
            // SAFETY: each string is NULL or NUL-terminated (the caller's contract).
            let role = unsafe { c_str(F, &format!("messages[{i}].role"), msg.role) }?;
            // SAFETY: as above.
            let content = unsafe { c_str(F, &format!("messages[{i}].content"), msg.content) }?;
            msgs.push(ChatMessageRef { role, content });
        }
        let text = codec(&m.model)?
            .apply_chat_template(&msgs, flags & MOELA_CHAT_ADD_GENERATION_PROMPT != 0)
            .map_err(|e| with_func(F, e.into()))?;
        // SAFETY: the caller's contract on buf and n_bytes (non-NULL).
        unsafe { copy_out(F, text.as_bytes(), buf, buf_size, n_bytes) }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A byte-level test codec: token i is byte i (for the 256-token fixtures).
    pub(crate) struct ByteCodec;

    impl TextCodec for ByteCodec {
        fn encode(&self, text: &str, add_bos: bool, _special: bool) -> crate::Result<Vec<u32>> {
            let mut v: Vec<u32> = if add_bos { vec![0] } else { vec![] };
            v.extend(text.bytes().map(u32::from));
            Ok(v)
        }
        fn token_bytes(&self, id: u32) -> Option<Cow<'_, [u8]>> {
            u8::try_from(id).ok().map(|b| Cow::Owned(vec![b]))
        }
        fn apply_chat_template(
            &self,
            messages: &[ChatMessageRef<'_>],
            add_generation_prompt: bool,
        ) -> crate::Result<String> {
            let mut s: String = messages
                .iter()
                .map(|m| format!("<{}>{}", m.role, m.content))
                .collect();
            if add_generation_prompt {
                s.push_str("<assistant>");
            }
            Ok(s)
        }
    }

    #[test]
    fn utf8_stream_never_splits_characters() {
        let text = "héllo, 世界 🦀!";
        let bytes = text.as_bytes();
        // Every split into single bytes, and into pairs.
        for chunk in [1, 2, 3] {
            let mut s = Utf8Stream::default();
            let mut out = String::new();
            for c in bytes.chunks(chunk) {
                let before = out.len();
                s.push(c, &mut out);
                assert!(out.is_char_boundary(before));
            }
            s.flush(&mut out);
            assert_eq!(out, text);
        }
    }

    #[test]
    fn utf8_stream_replaces_invalid_bytes() {
        let mut s = Utf8Stream::default();
        let mut out = String::new();
        s.push(b"a\xffb\xe4\xb8", &mut out);
        assert_eq!(out, "a\u{FFFD}b");
        s.flush(&mut out);
        assert_eq!(out, "a\u{FFFD}b\u{FFFD}");
    }

    #[test]
    fn tokenize_flags_and_detokenize() {
        let c = ByteCodec;
        assert_eq!(
            tokenize_with(&c, "f", "ab", MOELA_TOKENIZE_ADD_BOS).unwrap(),
            vec![0, 97, 98]
        );
        let e = tokenize_with(&c, "f", "ab", 8).unwrap_err();
        assert_eq!(e.status, MOELA_STATUS_INVALID_ARG);
    }

    #[test]
    fn copy_out_reports_size() {
        let mut buf = [0 as c_char; 4];
        let mut n = 0usize;
        // SAFETY: a 4-byte buffer and a valid n.
        let e = unsafe { copy_out("f", b"abcd", buf.as_mut_ptr(), 4, &mut n) }.unwrap_err();
        assert_eq!((e.status, n), (MOELA_STATUS_BUFFER_TOO_SMALL, 4));
        // SAFETY: as above.
        unsafe { copy_out("f", b"abc", buf.as_mut_ptr(), 4, &mut n) }.unwrap();
        assert_eq!(n, 3);
        assert_eq!(buf[3], 0);
        // SAFETY: size 0 needs no buffer.
        let e = unsafe { copy_out("f", b"", std::ptr::null_mut(), 0, &mut n) }.unwrap_err();
        assert_eq!((e.status, n), (MOELA_STATUS_BUFFER_TOO_SMALL, 0));
    }
}
