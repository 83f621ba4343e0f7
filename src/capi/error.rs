//! Status codes, the thread-local last-error message and the panic boundary.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::Error;

/// What a fallible moela function returns. The values are part of the ABI: they are never
/// renumbered, and new ones are only ever added at the end. Unknown values (from a newer
/// library) should be treated as a generic failure; `moela_status_string()` names every
/// value, and `moela_last_error()` has the details of the last failure on the calling thread.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum moela_status {
    /// Success.
    MOELA_STATUS_OK = 0,
    /// A required pointer argument was NULL.
    MOELA_STATUS_NULL_ARG = 1,
    /// The file system refused: missing file, permission denied, read error.
    MOELA_STATUS_IO = 2,
    /// The model file is malformed: bad magic, truncated, a missing tensor, a wrong shape, an
    /// invalid hyper-parameter.
    MOELA_STATUS_BAD_FORMAT = 3,
    /// Valid input that moela does not handle: another architecture, an unsupported tensor
    /// type, a feature this build does not have.
    MOELA_STATUS_UNSUPPORTED = 4,
    /// An allocation failed (for example a KV cache too large for the machine).
    MOELA_STATUS_OUT_OF_MEMORY = 5,
    /// The session's context has no room for the tokens.
    MOELA_STATUS_CONTEXT_FULL = 6,
    /// An argument has an invalid value (bad struct_size, unknown flag, empty batch...).
    MOELA_STATUS_INVALID_ARG = 7,
    /// The caller's callback asked to stop.
    MOELA_STATUS_CANCELLED = 8,
    /// An internal error (a bug in moela): the object involved should be freed.
    MOELA_STATUS_PANIC = 9,
    /// The caller's buffer is too small; the needed size was written to the size out-pointer.
    MOELA_STATUS_BUFFER_TOO_SMALL = 10,
    /// A token id is not below the model's vocabulary size.
    MOELA_STATUS_TOKEN_OUT_OF_RANGE = 11,
    /// A string that must be UTF-8 is not.
    MOELA_STATUS_INVALID_UTF8 = 12,
    /// The session is in use by another call (another thread, or a callback of a generate
    /// call on the same session): the call did nothing and the session is intact. A session
    /// is used by one thread at a time.
    MOELA_STATUS_BUSY = 13,
    /// A saved session state that does not fit the session it is loaded into: saved from
    /// another model or with another KV cache type (`moela_session_load`). A state too long
    /// for the session's context gives `MOELA_STATUS_CONTEXT_FULL`; a truncated or corrupt
    /// one `MOELA_STATUS_BAD_FORMAT`.
    MOELA_STATUS_STATE_MISMATCH = 14,
}

use moela_status::*;

impl moela_status {
    /// Every status, in value order (for tests and `moela_status_string`).
    pub const ALL: [moela_status; 15] = [
        MOELA_STATUS_OK,
        MOELA_STATUS_NULL_ARG,
        MOELA_STATUS_IO,
        MOELA_STATUS_BAD_FORMAT,
        MOELA_STATUS_UNSUPPORTED,
        MOELA_STATUS_OUT_OF_MEMORY,
        MOELA_STATUS_CONTEXT_FULL,
        MOELA_STATUS_INVALID_ARG,
        MOELA_STATUS_CANCELLED,
        MOELA_STATUS_PANIC,
        MOELA_STATUS_BUFFER_TOO_SMALL,
        MOELA_STATUS_TOKEN_OUT_OF_RANGE,
        MOELA_STATUS_INVALID_UTF8,
        MOELA_STATUS_BUSY,
        MOELA_STATUS_STATE_MISMATCH,
    ];

    /// A short, static description (what `moela_status_string` returns).
    pub fn describe(self) -> &'static CStr {
        match self {
            MOELA_STATUS_OK => cs(b"ok\0"),
            MOELA_STATUS_NULL_ARG => cs(b"a required pointer argument is NULL\0"),
            MOELA_STATUS_IO => cs(b"input/output error\0"),
            MOELA_STATUS_BAD_FORMAT => cs(b"malformed model file\0"),
            MOELA_STATUS_UNSUPPORTED => cs(b"unsupported\0"),
            MOELA_STATUS_OUT_OF_MEMORY => cs(b"out of memory\0"),
            MOELA_STATUS_CONTEXT_FULL => cs(b"context full\0"),
            MOELA_STATUS_INVALID_ARG => cs(b"invalid argument\0"),
            MOELA_STATUS_CANCELLED => cs(b"cancelled by the caller\0"),
            MOELA_STATUS_PANIC => cs(b"internal error (a bug in moela)\0"),
            MOELA_STATUS_BUFFER_TOO_SMALL => cs(b"buffer too small\0"),
            MOELA_STATUS_TOKEN_OUT_OF_RANGE => cs(b"token id out of range\0"),
            MOELA_STATUS_INVALID_UTF8 => cs(b"invalid UTF-8\0"),
            MOELA_STATUS_BUSY => cs(b"session in use by another call\0"),
            MOELA_STATUS_STATE_MISMATCH => {
                cs(b"saved session state of another model or cache type\0")
            }
        }
    }
}

/// A static C string from a byte literal ending in NUL (cbindgen 0.24 cannot parse `c""`).
pub(crate) const fn cs(bytes: &'static [u8]) -> &'static CStr {
    match CStr::from_bytes_with_nul(bytes) {
        Ok(s) => s,
        Err(_) => panic!("not a NUL-terminated string"),
    }
}

/// A failed call: the status to return and the message for `moela_last_error()`.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: moela_status,
    pub msg: String,
}

impl Failure {
    pub fn new(status: moela_status, msg: impl Into<String>) -> Failure {
        Failure {
            status,
            msg: msg.into(),
        }
    }
    pub fn null(func: &str, arg: &str) -> Failure {
        Failure::new(MOELA_STATUS_NULL_ARG, format!("{func}: '{arg}' is NULL"))
    }
    pub fn invalid(msg: impl Into<String>) -> Failure {
        Failure::new(MOELA_STATUS_INVALID_ARG, msg)
    }
}

/// Every variant of the crate's error maps to one status. The match has no wildcard on
/// purpose: `Error` is `#[non_exhaustive]` for other crates only, so a new variant fails to
/// compile here until it has a status.
pub(crate) fn status_of(e: &Error) -> moela_status {
    match e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::OutOfMemory => {
            MOELA_STATUS_OUT_OF_MEMORY
        }
        Error::Io { .. } => MOELA_STATUS_IO,
        Error::Format { .. } => MOELA_STATUS_BAD_FORMAT,
        Error::UnsupportedType { .. } => MOELA_STATUS_UNSUPPORTED,
        Error::Unsupported { .. } => MOELA_STATUS_UNSUPPORTED,
        Error::MissingTensor { .. } => MOELA_STATUS_BAD_FORMAT,
        Error::Shape { .. } => MOELA_STATUS_BAD_FORMAT,
        Error::Config { .. } => MOELA_STATUS_BAD_FORMAT,
        Error::InvalidArg(_) => MOELA_STATUS_INVALID_ARG,
        Error::TokenOutOfRange { .. } => MOELA_STATUS_TOKEN_OUT_OF_RANGE,
        Error::ContextFull { .. } => MOELA_STATUS_CONTEXT_FULL,
        Error::OutOfMemory { .. } => MOELA_STATUS_OUT_OF_MEMORY,
        Error::StateMismatch(_) => MOELA_STATUS_STATE_MISMATCH,
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::new(status_of(&e), e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Stores `msg` as this thread's last error (interior NULs become spaces).
pub(crate) fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    // During thread teardown the slot may be gone; the message is then dropped.
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = c);
}

/// This thread's last error message (for Rust tests).
#[cfg(test)]
pub(crate) fn last_error_string() -> String {
    LAST_ERROR
        .try_with(|slot| slot.borrow().to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

/// The panic boundary of every status-returning export: runs `f`, turns its failure into a
/// status plus this thread's last error, and a panic into `MOELA_STATUS_PANIC`.
pub(crate) fn guard(func: &str, f: impl FnOnce() -> Result<(), Failure>) -> moela_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => MOELA_STATUS_OK,
        Ok(Err(fail)) => {
            // Every message names the function that failed.
            if fail.msg.starts_with(func) {
                set_last_error(&fail.msg);
            } else {
                set_last_error(&format!("{func}: {}", fail.msg));
            }
            fail.status
        }
        Err(payload) => {
            set_last_error(&format!(
                "{func}: internal error (panic: {}); please report it",
                panic_message(payload.as_ref())
            ));
            MOELA_STATUS_PANIC
        }
    }
}

/// The panic boundary of exports that return a value rather than a status (`_free`,
/// version and message getters): a panic gives `fallback`.
pub(crate) fn guard_value<T>(func: &str, fallback: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            set_last_error(&format!(
                "{func}: internal error (panic: {}); please report it",
                panic_message(payload.as_ref())
            ));
            fallback
        }
    }
}

/// Returns `Err(NULL_ARG)` naming the function and argument when `$p` is NULL.
macro_rules! not_null {
    ($func:expr, $($p:ident),+) => {
        $(
            if $p.is_null() {
                return Err($crate::capi::error::Failure::null($func, stringify!($p)));
            }
        )+
    };
}
pub(crate) use not_null;

/// A static description of `status` (a `moela_status` value), e.g. "context full". Never NULL;
/// unknown values give "unknown status". The string is static: do not free it.
///
/// Thread-safe.
#[no_mangle]
pub extern "C" fn moela_status_string(status: i32) -> *const c_char {
    guard_value(
        "moela_status_string",
        cs(b"unknown status\0").as_ptr(),
        || {
            moela_status::ALL
                .iter()
                .find(|s| **s as i32 == status)
                .map(|s| s.describe())
                .unwrap_or(cs(b"unknown status\0"))
                .as_ptr()
        },
    )
}

/// The message of the last failed call on the calling thread (UTF-8, NUL-terminated), or ""
/// if none failed yet. Successful calls leave it unchanged. Borrowed: valid until the next
/// failing moela call on the same thread; copy it to keep it. Never NULL.
#[no_mangle]
pub extern "C" fn moela_last_error() -> *const c_char {
    guard_value("moela_last_error", cs(b"\0").as_ptr(), || {
        LAST_ERROR
            .try_with(|slot| slot.borrow().as_ptr())
            .unwrap_or(cs(b"\0").as_ptr())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_stable() {
        // The ABI: these numbers are never changed.
        for (i, s) in moela_status::ALL.iter().enumerate() {
            assert_eq!(*s as i32, i as i32);
        }
        assert_eq!(MOELA_STATUS_PANIC as i32, 9);
        assert_eq!(MOELA_STATUS_INVALID_UTF8 as i32, 12);
        assert_eq!(MOELA_STATUS_BUSY as i32, 13);
        assert_eq!(MOELA_STATUS_STATE_MISMATCH as i32, 14);
    }

    #[test]
    fn every_status_has_a_distinct_string() {
        let mut seen = std::collections::HashSet::new();
        for s in moela_status::ALL {
            // SAFETY: moela_status_string returns a static NUL-terminated string.
            let text = unsafe { CStr::from_ptr(moela_status_string(s as i32)) };
            assert!(seen.insert(text.to_owned()), "{s:?}");
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(moela_status_string(-5)) };
        assert_eq!(unknown, cs(b"unknown status\0"));
    }

    #[test]
    fn panic_becomes_status_and_message() {
        let st = guard("moela_test", || panic!("boom {}", 42));
        assert_eq!(st, MOELA_STATUS_PANIC);
        let msg = last_error_string();
        assert!(
            msg.contains("moela_test") && msg.contains("boom 42"),
            "{msg}"
        );
        let v = guard_value("moela_test", 7, || -> i32 { panic!("x") });
        assert_eq!(v, 7);
    }

    #[test]
    fn failure_sets_message_success_keeps_it() {
        let st = guard("f", || Err(Failure::invalid("bad \0 value")));
        assert_eq!(st, MOELA_STATUS_INVALID_ARG);
        assert_eq!(last_error_string(), "f: bad   value");
        assert_eq!(guard("f", || Ok(())), MOELA_STATUS_OK);
        assert_eq!(last_error_string(), "f: bad   value");
        guard("f", || Err(Failure::invalid("f: named")));
        assert_eq!(last_error_string(), "f: named");
    }

    #[test]
    fn last_error_is_per_thread() {
        set_last_error("main thread");
        std::thread::spawn(|| {
            assert_eq!(last_error_string(), "");
            set_last_error("other");
        })
        .join()
        .unwrap();
        assert_eq!(last_error_string(), "main thread");
    }

    #[test]
    fn errors_map_to_statuses() {
        let io = Error::io(
            "x",
            std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        );
        assert_eq!(status_of(&io), MOELA_STATUS_IO);
        let oom = Error::io(
            "x",
            std::io::Error::new(std::io::ErrorKind::OutOfMemory, "oom"),
        );
        assert_eq!(status_of(&oom), MOELA_STATUS_OUT_OF_MEMORY);
        assert_eq!(
            status_of(&Error::format("x", "bad")),
            MOELA_STATUS_BAD_FORMAT
        );
        assert_eq!(
            status_of(&Error::ContextFull {
                needed: 3,
                n_ctx: 2,
                n_ctx_train: 4
            }),
            MOELA_STATUS_CONTEXT_FULL
        );
        assert_eq!(
            status_of(&Error::TokenOutOfRange {
                token: 9,
                n_vocab: 2
            }),
            MOELA_STATUS_TOKEN_OUT_OF_RANGE
        );
    }
}
