//! One error type for the whole crate. Every message names the file and, where there is one,
//! the tensor or key involved, so a user can tell what is wrong without a debugger.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not what it claims to be: bad magic, truncated, offsets out of range...
    #[error("{}: malformed file: {msg}", path.display())]
    Format { path: PathBuf, msg: String },
    /// A tensor stored in a type moela cannot compute with.
    #[error("{}: tensor '{tensor}' has type {dtype}, which moela does not support (supported: {})", path.display(), crate::tensor::dtype::supported_names())]
    UnsupportedType {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },
    /// A well-formed file describing something moela does not run (another architecture...).
    #[error("{}: unsupported: {msg}", path.display())]
    Unsupported { path: PathBuf, msg: String },
    #[error("{}: missing tensor '{name}'", path.display())]
    MissingTensor { path: PathBuf, name: String },
    #[error("{}: tensor '{name}' has shape {got:?}, expected {expected:?}", path.display())]
    Shape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// A missing or invalid hyper-parameter.
    #[error("{}: config key '{key}': {msg}", path.display())]
    Config {
        path: PathBuf,
        key: String,
        msg: String,
    },
    #[error("invalid argument: {0}")]
    InvalidArg(String),
    #[error("token id {token} is out of range (vocabulary size {n_vocab})")]
    TokenOutOfRange { token: u32, n_vocab: usize },
    /// The session's context cannot hold the tokens. The message says how to make it larger
    /// in each front end, and the model's trained length (the most that makes sense).
    #[error("context full: {needed} positions needed, the context holds {n_ctx}; a larger context is set with -c/--ctx (CLI), moela_session_params.n_ctx (C), Session(n_ctx=...) (Python) or SessionParams::n_ctx (Rust), up to the model's trained context length of {n_ctx_train}")]
    ContextFull {
        needed: usize,
        n_ctx: usize,
        /// The model's trained context length (`max_position_embeddings`).
        n_ctx_train: usize,
    },
    #[error("out of memory: cannot allocate {bytes} bytes for {what}")]
    OutOfMemory { what: String, bytes: usize },
    /// A saved session state that is intact but does not fit the session it is loaded into:
    /// saved from another model or with another KV cache type.
    #[error("session state mismatch: {0}")]
    StateMismatch(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            msg: msg.into(),
        }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn config(path: impl Into<PathBuf>, key: &str, msg: impl Into<String>) -> Self {
        Error::Config {
            path: path.into(),
            key: key.to_string(),
            msg: msg.into(),
        }
    }
}
