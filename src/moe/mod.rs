//! DeepSeekMoE: routing tokens to experts, and where the routed experts' weights live.
pub mod cache;
pub mod experts;
pub mod profile;
pub mod prune;
pub mod router;
