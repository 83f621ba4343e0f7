//! DeepSeekMoE: routing tokens to experts.
pub mod router;
