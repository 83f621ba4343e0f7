//! moela: DeepSeek-architecture MoE + MLA language models on the CPU, from memory-mapped GGUF
//! or Hugging Face safetensors checkpoints.
//!
//! ```no_run
//! use std::sync::Arc;
//! let model = Arc::new(moela::Model::load("model.gguf")?);
//! let mut session = moela::Session::new(model, &moela::SessionParams::default())?;
//! let logits = session.eval(&[1, 2, 3], false)?;
//! # Ok::<(), moela::Error>(())
//! ```

pub mod attention;
pub mod bench;
pub mod capi;
pub mod config;
pub mod constrain;
pub mod convert;
pub mod error;
pub mod eval;
pub mod format;
pub mod kernels;
pub mod model;
pub mod moe;
pub mod npy;
pub mod ops;
pub mod prune;
pub mod quant_policy;
pub mod requant;
pub mod sampler;
pub mod session;
pub mod speculative;
pub mod stage_times;
pub mod tensor;
pub mod threads;
pub mod tokenizer;

pub use config::DeepSeekConfig;
pub use error::{Error, Result};
pub use model::Model;
pub use session::{Session, SessionParams};
