//! Checkpoint formats: GGUF (read + write), safetensors (single and sharded) and the HF config.
pub mod gguf;
pub mod hf_config;
pub mod safetensors;
