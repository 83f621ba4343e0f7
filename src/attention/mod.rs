//! Multi-head latent attention and its compressed KV cache.
pub mod kv_cache;
pub mod mla;
