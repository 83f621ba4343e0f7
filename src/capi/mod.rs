//! The stable C ABI: the only place in moela with `extern "C"`.
//!
//! cbindgen turns this module into `include/moela.h` (`tools/gen_header.sh`; the test command
//! regenerates it and fails if the committed copy differs). `docs/C_API.md` is the user guide.
//!
//! Rules every export follows:
//! - it runs inside one panic boundary ([`error::guard`]): a Rust panic becomes
//!   `MOELA_STATUS_PANIC` and a message, never an unwind into C;
//! - a NULL for any pointer argument gives `MOELA_STATUS_NULL_ARG`, except for `_free`
//!   functions, where NULL is a no-op;
//! - a fallible function returns a [`moela_status`] and writes its results through
//!   out-pointers; the message of a failure is available from `moela_last_error()` on the
//!   same thread;
//! - what C hands in is never trusted: flags, enum-like values and struct sizes are integers
//!   checked before use, strings are checked for UTF-8 where UTF-8 is required;
//! - numbers are never renumbered and a released signature never changes: a change is a new
//!   function, and the old one is deprecated for a release before it goes.

// The exported names are C's (`moela_model`, `MOELA_STATUS_OK`), so that the generated header
// reads as a C API.
#![allow(non_camel_case_types)]

// The header follows this order (cbindgen keeps source order); blank lines keep rustfmt
// from sorting the modules.
pub mod error;

pub mod version;

pub mod runtime;

pub mod params;

pub mod model;

pub mod session;

pub mod sampling;

pub mod text;

pub mod generate;

pub use error::moela_status;
