//! Every hyper-parameter of a DeepSeek-V2/V3-family model, with the variants as enums.
//!
//! The config is read from a HF `config.json` ([`crate::format::hf_config`]) or from GGUF
//! metadata ([`crate::model::gguf_names`]); nothing here is ever guessed from the layer count.

/// Which family's routing semantics apply (the two differ in how `routed_scaling_factor`
/// combines with `norm_topk_prob`, see [`MoeRouting::weights`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// DeepSeek-V2 / V2-Lite (HF `DeepseekV2ForCausalLM`).
    V2,
    /// DeepSeek-V3 / R1 / Kimi-K2 / Moonlight (HF `DeepseekV3ForCausalLM`).
    V3,
}

/// How queries are projected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QProj {
    /// One `[n_heads*qk_head_dim, hidden]` matrix (V2-Lite).
    Direct,
    /// `q_a` (hidden → rank) → RMSNorm → `q_b` (rank → heads), as in V2 and V3.
    LoRA { rank: usize },
}

/// Router score function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scoring {
    Softmax,
    Sigmoid,
}

/// Expert selection method (DeepSeek's `topk_method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopkMethod {
    /// Plain top-k over all experts.
    Greedy,
    /// V2: keep the `topk_group` groups with the highest max score, then top-k within them.
    GroupLimitedGreedy,
    /// V3: bias-corrected scores choose; a group's score is the sum of its best two.
    NoauxTc,
}

/// YaRN context extension, DeepSeek's parameterisation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Yarn {
    pub factor: f32,
    pub original_max_position_embeddings: usize,
    pub beta_fast: f32,
    pub beta_slow: f32,
    /// Scales cos/sin as `mscale(factor, mscale) / mscale(factor, mscale_all_dim)`.
    pub mscale: f32,
    /// Scales the softmax by `mscale(factor, mscale_all_dim)²`.
    pub mscale_all_dim: f32,
}

/// DeepSeek's `yarn_get_mscale`.
pub fn yarn_mscale(factor: f32, mscale: f32) -> f32 {
    if factor <= 1.0 {
        1.0
    } else {
        0.1 * mscale * factor.ln() + 1.0
    }
}

/// MoE routing hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MoeRouting {
    pub n_routed_experts: usize,
    pub n_shared_experts: usize,
    pub experts_per_tok: usize,
    pub scoring: Scoring,
    pub topk_method: TopkMethod,
    pub n_group: usize,
    pub topk_group: usize,
    pub norm_topk_prob: bool,
    pub routed_scaling_factor: f32,
    pub family: Family,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DeepSeekConfig {
    pub family: Family,
    pub hidden_size: usize,
    /// Intermediate size of the dense FFN layers.
    pub intermediate_size: usize,
    /// Intermediate size of one routed (and one shared) expert.
    pub moe_intermediate_size: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub q_proj: QProj,
    pub kv_lora_rank: usize,
    pub qk_nope_head_dim: usize,
    pub qk_rope_head_dim: usize,
    pub v_head_dim: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    pub yarn: Option<Yarn>,
    pub max_position_embeddings: usize,
    /// The first `first_k_dense_replace` layers use the dense FFN.
    pub first_k_dense_replace: usize,
    /// After those, every `moe_layer_freq`-th layer is MoE.
    pub moe_layer_freq: usize,
    pub moe: MoeRouting,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
}

impl DeepSeekConfig {
    pub fn qk_head_dim(&self) -> usize {
        self.qk_nope_head_dim + self.qk_rope_head_dim
    }

    /// One KV-cache row: the compressed latent and the shared RoPE key.
    pub fn kv_cache_row(&self) -> usize {
        self.kv_lora_rank + self.qk_rope_head_dim
    }

    pub fn is_moe_layer(&self, layer: usize) -> bool {
        self.moe.n_routed_experts > 0
            && layer >= self.first_k_dense_replace
            && layer % self.moe_layer_freq.max(1) == 0
    }

    /// DeepSeek's attention softmax scale: `qk_head_dim^-0.5`, times `mscale(factor,
    /// mscale_all_dim)²` under YaRN.
    pub fn softmax_scale(&self) -> f32 {
        let base = (self.qk_head_dim() as f32).powf(-0.5);
        match self.yarn {
            Some(y) if y.mscale_all_dim != 0.0 => {
                let m = yarn_mscale(y.factor, y.mscale_all_dim);
                base * m * m
            }
            _ => base,
        }
    }

    /// Checks the relations between hyper-parameters that the forward pass relies on.
    pub fn validate(&self) -> Result<(), String> {
        let nonzero = [
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.n_layers),
            ("num_attention_heads", self.n_heads),
            ("kv_lora_rank", self.kv_lora_rank),
            ("qk_rope_head_dim", self.qk_rope_head_dim),
            ("v_head_dim", self.v_head_dim),
            ("vocab_size", self.vocab_size),
        ];
        for (k, v) in nonzero {
            if v == 0 {
                return Err(format!("{k} must be > 0"));
            }
        }
        // Caps far above any real model keep every size product below 2^63, so a hostile
        // config cannot overflow shape arithmetic or ask for absurd allocations.
        let capped = [
            ("hidden_size", self.hidden_size, 1 << 20),
            ("intermediate_size", self.intermediate_size, 1 << 22),
            ("moe_intermediate_size", self.moe_intermediate_size, 1 << 22),
            ("num_hidden_layers", self.n_layers, 1 << 12),
            ("num_attention_heads", self.n_heads, 1 << 12),
            ("kv_lora_rank", self.kv_lora_rank, 1 << 16),
            ("qk_nope_head_dim", self.qk_nope_head_dim, 1 << 16),
            ("qk_rope_head_dim", self.qk_rope_head_dim, 1 << 16),
            ("v_head_dim", self.v_head_dim, 1 << 16),
            ("vocab_size", self.vocab_size, 1 << 24),
            ("n_routed_experts", self.moe.n_routed_experts, 1 << 14),
            ("n_shared_experts", self.moe.n_shared_experts, 1 << 8),
            ("n_group", self.moe.n_group, 1 << 14),
        ];
        for (k, v, cap) in capped {
            if v > cap {
                return Err(format!("{k} {v} is larger than {cap}"));
            }
        }
        if let QProj::LoRA { rank } = self.q_proj {
            if rank > 1 << 16 {
                return Err(format!("q_lora_rank {rank} is larger than {}", 1 << 16));
            }
        }
        if self.qk_rope_head_dim % 2 != 0 {
            return Err(format!(
                "qk_rope_head_dim {} must be even",
                self.qk_rope_head_dim
            ));
        }
        let m = &self.moe;
        if m.n_routed_experts > 0 {
            if m.experts_per_tok == 0 || m.experts_per_tok > m.n_routed_experts {
                return Err(format!(
                    "num_experts_per_tok {} must be in 1..={}",
                    m.experts_per_tok, m.n_routed_experts
                ));
            }
            if m.topk_method != TopkMethod::Greedy {
                if m.n_group == 0 || m.n_routed_experts % m.n_group != 0 {
                    return Err(format!(
                        "n_group {} must divide n_routed_experts {}",
                        m.n_group, m.n_routed_experts
                    ));
                }
                if m.topk_group == 0 || m.topk_group > m.n_group {
                    return Err(format!(
                        "topk_group {} must be in 1..={}",
                        m.topk_group, m.n_group
                    ));
                }
                let per_group = m.n_routed_experts / m.n_group;
                if m.topk_group * per_group < m.experts_per_tok {
                    return Err(
                        "topk_group groups hold fewer experts than num_experts_per_tok".into(),
                    );
                }
                if m.topk_method == TopkMethod::NoauxTc && per_group < 2 {
                    return Err("noaux_tc needs at least 2 experts per group".into());
                }
            }
            if self.moe_intermediate_size == 0 {
                return Err("moe_intermediate_size must be > 0".into());
            }
        }
        if self.first_k_dense_replace > 0 && self.intermediate_size == 0 {
            return Err("intermediate_size must be > 0 when there are dense layers".into());
        }
        if let Some(y) = self.yarn {
            if y.factor.is_nan() || y.factor <= 0.0 || y.original_max_position_embeddings == 0 {
                return Err(
                    "rope_scaling: factor and original_max_position_embeddings must be > 0".into(),
                );
            }
        }
        Ok(())
    }

    /// Parameters of the whole model, and of what one token touches (attention, dense and
    /// shared FFNs, `experts_per_tok` routed experts, embeddings row and the head).
    pub fn parameter_counts(&self) -> (u64, u64) {
        let h = self.hidden_size as u64;
        let nh = self.n_heads as u64;
        let qk = self.qk_head_dim() as u64;
        let q = match self.q_proj {
            QProj::Direct => h * nh * qk,
            QProj::LoRA { rank } => h * rank as u64 + rank as u64 + rank as u64 * nh * qk,
        };
        let kvl = self.kv_lora_rank as u64;
        let attn = q
            + h * (kvl + self.qk_rope_head_dim as u64)
            + kvl
            + kvl * nh * (self.qk_nope_head_dim + self.v_head_dim) as u64
            + nh * self.v_head_dim as u64 * h
            + 2 * h;
        let mlp = |inter: u64| 3 * h * inter;
        let expert = mlp(self.moe_intermediate_size as u64);
        let (mut total, mut active) = (0u64, 0u64);
        for l in 0..self.n_layers {
            total += attn;
            active += attn;
            if self.is_moe_layer(l) {
                let m = &self.moe;
                let router = h * m.n_routed_experts as u64;
                let shared = m.n_shared_experts as u64 * expert;
                total += router + shared + m.n_routed_experts as u64 * expert;
                active += router + shared + m.experts_per_tok as u64 * expert;
            } else {
                total += mlp(self.intermediate_size as u64);
                active += mlp(self.intermediate_size as u64);
            }
        }
        let v = self.vocab_size as u64;
        total += 2 * v * h + h;
        active += v * h + h + h;
        (total, active)
    }
}
