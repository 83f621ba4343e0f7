//! DeepSeekMoE: routing tokens to experts.
pub mod profile;
pub mod router;
