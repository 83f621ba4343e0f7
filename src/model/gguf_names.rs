//! llama.cpp's `deepseek2` GGUF contract: metadata keys ↔ [`DeepSeekConfig`]. The full
//! contract, with tensor names and shapes, is written down in docs/FORMAT.md.

use crate::config::{DeepSeekConfig, Family, MoeRouting, QProj, Scoring, TopkMethod, Yarn};
use crate::error::{Error, Result};
use crate::format::gguf::{GgufFile, GgufValue};
use crate::model::source::TensorIndex;

pub const ARCH: &str = "deepseek2";

/// llama.cpp's `llama_expert_gating_func_type`.
pub const GATING_SOFTMAX: u32 = 1;
pub const GATING_SIGMOID: u32 = 2;

fn key(k: &str) -> String {
    format!("{ARCH}.{k}")
}

struct Meta<'a>(&'a GgufFile);

impl Meta<'_> {
    fn err(&self, k: &str, msg: impl Into<String>) -> Error {
        Error::config(&self.0.path, k, msg)
    }
    fn u32_opt(&self, k: &str) -> Result<Option<u32>> {
        match self.0.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_u32()
                .map(Some)
                .ok_or_else(|| self.err(k, "expected an unsigned integer")),
        }
    }
    fn usize(&self, k: &str) -> Result<usize> {
        self.u32_opt(k)?
            .map(|v| v as usize)
            .ok_or_else(|| self.err(k, "missing"))
    }
    fn usize_or(&self, k: &str, d: usize) -> Result<usize> {
        Ok(self.u32_opt(k)?.map(|v| v as usize).unwrap_or(d))
    }
    fn f32_opt(&self, k: &str) -> Result<Option<f32>> {
        match self.0.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_f32()
                .map(Some)
                .ok_or_else(|| self.err(k, "expected a float")),
        }
    }
    fn bool_or(&self, k: &str, d: bool) -> Result<bool> {
        match self.0.get(k) {
            None => Ok(d),
            Some(v) => v.as_bool().ok_or_else(|| self.err(k, "expected a bool")),
        }
    }
}

/// Reads the hyper-parameters from GGUF metadata. Whether q-LoRA is used is decided by the
/// tensors present (`blk.0.attn_q_a.weight`), never by the layer count.
pub fn config_from_gguf(f: &GgufFile, tensors: &TensorIndex) -> Result<DeepSeekConfig> {
    let m = Meta(f);
    let arch = f
        .get("general.architecture")
        .and_then(|v| v.as_str())
        .ok_or_else(|| m.err("general.architecture", "missing"))?;
    if arch != ARCH {
        return Err(Error::Unsupported {
            path: f.path.clone(),
            msg: format!("architecture {arch:?}; moela runs {ARCH:?} (DeepSeek-V2/V3 family)"),
        });
    }
    let hidden_size = m.usize(&key("embedding_length"))?;
    // llama.cpp counts DeepSeek-V3's multi-token-prediction blocks (the last
    // `nextn_predict_layers` of them) in block_count; they are draft heads, not trunk layers.
    let block_count = m.usize(&key("block_count"))?;
    let nextn = m.usize_or(&key("nextn_predict_layers"), 0)?;
    if nextn >= block_count {
        return Err(m.err(
            &key("nextn_predict_layers"),
            format!("{nextn} MTP blocks leave no trunk layer of the {block_count} blocks"),
        ));
    }
    let n_layers = block_count - nextn;
    let n_heads = m.usize(&key("attention.head_count"))?;
    let rope_dim = m.usize(&key("rope.dimension_count"))?;
    let kv_lora_rank = m.usize(&key("attention.kv_lora_rank"))?;
    // Current converters write the MLA cache row as key/value_length and the per-head sizes
    // as *_mla; older files only have the per-head sizes as key/value_length.
    let (k_head, v_head) = match m.u32_opt(&key("attention.key_length_mla"))? {
        Some(k) => (k as usize, m.usize(&key("attention.value_length_mla"))?),
        None => (
            m.usize(&key("attention.key_length"))?,
            m.usize(&key("attention.value_length"))?,
        ),
    };
    if k_head <= rope_dim {
        return Err(m.err(
            &key("attention.key_length_mla"),
            format!("per-head key length {k_head} must exceed the rope dimension {rope_dim}"),
        ));
    }
    let q_proj = match tensors.raw("blk.0.attn_q_a.weight") {
        Some(t) => {
            let rank = t.shape.first().copied().unwrap_or(0);
            if let Some(stated) = m.u32_opt(&key("attention.q_lora_rank"))? {
                if stated as usize != rank {
                    return Err(m.err(
                        &key("attention.q_lora_rank"),
                        format!("says {stated} but blk.0.attn_q_a.weight has {rank} rows"),
                    ));
                }
            }
            QProj::LoRA { rank }
        }
        None => QProj::Direct,
    };
    let vocab_size = match m.u32_opt(&key("vocab_size"))? {
        Some(v) => v as usize,
        None => tensors
            .raw("token_embd.weight")
            .and_then(|t| t.shape.first().copied())
            .ok_or_else(|| m.err(&key("vocab_size"), "missing, and no token_embd.weight"))?,
    };

    let yarn = match f.get(&key("rope.scaling.type")).and_then(|v| v.as_str()) {
        None | Some("none") => None,
        Some("yarn") => {
            // llama.cpp stores 0.1 × mscale_all_dim; DeepSeek's configs set mscale equal to
            // mscale_all_dim, which is what we assume for the cos/sin factor (then 1).
            let mult = m
                .f32_opt(&key("rope.scaling.yarn_log_multiplier"))?
                .unwrap_or(0.0);
            let mscale_all_dim = mult / 0.1;
            Some(Yarn {
                factor: m
                    .f32_opt(&key("rope.scaling.factor"))?
                    .ok_or_else(|| m.err(&key("rope.scaling.factor"), "missing for yarn"))?,
                original_max_position_embeddings: m
                    .usize(&key("rope.scaling.original_context_length"))?,
                beta_fast: m
                    .f32_opt(&key("rope.scaling.yarn_beta_fast"))?
                    .unwrap_or(32.0),
                beta_slow: m
                    .f32_opt(&key("rope.scaling.yarn_beta_slow"))?
                    .unwrap_or(1.0),
                mscale: mscale_all_dim,
                mscale_all_dim,
            })
        }
        Some(other) => {
            return Err(m.err(
                &key("rope.scaling.type"),
                format!("rope scaling {other:?} is not supported"),
            ))
        }
    };

    let gating = m
        .u32_opt(&key("expert_gating_func"))?
        .unwrap_or(GATING_SOFTMAX);
    let scoring = match gating {
        GATING_SOFTMAX => Scoring::Softmax,
        GATING_SIGMOID => Scoring::Sigmoid,
        g => {
            return Err(m.err(
                &key("expert_gating_func"),
                format!("unknown gating function {g}"),
            ))
        }
    };
    let n_group = m.usize_or(&key("expert_group_count"), 1)?.max(1);
    // The family is not stored; sigmoid gating is what distinguishes V3 from V2.
    let (family, topk_method) = match scoring {
        Scoring::Sigmoid => (Family::V3, TopkMethod::NoauxTc),
        Scoring::Softmax if n_group > 1 => (Family::V2, TopkMethod::GroupLimitedGreedy),
        Scoring::Softmax => (Family::V2, TopkMethod::Greedy),
    };
    let moe = MoeRouting {
        n_routed_experts: m.usize_or(&key("expert_count"), 0)?,
        n_shared_experts: m.usize_or(&key("expert_shared_count"), 0)?,
        experts_per_tok: m.usize_or(&key("expert_used_count"), 0)?,
        scoring,
        topk_method,
        n_group,
        topk_group: m.usize_or(&key("expert_group_used_count"), 1)?.max(1),
        norm_topk_prob: m.bool_or(&key("expert_weights_norm"), false)?,
        // Absent or 0 means "no scaling" to llama.cpp.
        routed_scaling_factor: match m.f32_opt(&key("expert_weights_scale"))? {
            Some(s) if s != 0.0 => s,
            _ => 1.0,
        },
        family,
    };
    let token_id = |k: &str| f.get(k).and_then(|v| v.as_u32());
    let cfg = DeepSeekConfig {
        family,
        hidden_size,
        intermediate_size: m.usize_or(&key("feed_forward_length"), 0)?,
        moe_intermediate_size: m.usize_or(&key("expert_feed_forward_length"), 0)?,
        n_layers,
        n_heads,
        q_proj,
        kv_lora_rank,
        qk_nope_head_dim: k_head - rope_dim,
        qk_rope_head_dim: rope_dim,
        v_head_dim: v_head,
        vocab_size,
        rms_norm_eps: m
            .f32_opt(&key("attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-6),
        rope_theta: m.f32_opt(&key("rope.freq_base"))?.unwrap_or(10000.0),
        yarn,
        max_position_embeddings: m.usize_or(&key("context_length"), 4096)?,
        first_k_dense_replace: m.usize_or(&key("leading_dense_block_count"), 0)?,
        moe_layer_freq: 1,
        moe,
        bos_token_id: token_id("tokenizer.ggml.bos_token_id"),
        eos_token_id: token_id("tokenizer.ggml.eos_token_id"),
    };
    cfg.validate()
        .map_err(|msg| Error::config(&f.path, "(consistency)", msg))?;
    Ok(cfg)
}

/// The `deepseek2.*` metadata for `cfg`, as llama.cpp's converter writes it (all integers u32,
/// floats f32).
pub fn config_to_gguf(cfg: &DeepSeekConfig) -> Vec<(String, GgufValue)> {
    let u = |v: usize| GgufValue::U32(v as u32);
    let mut kv = vec![
        (key("vocab_size"), u(cfg.vocab_size)),
        (key("context_length"), u(cfg.max_position_embeddings)),
        (key("embedding_length"), u(cfg.hidden_size)),
        (key("feed_forward_length"), u(cfg.intermediate_size)),
        (key("block_count"), u(cfg.n_layers)),
        (key("attention.head_count"), u(cfg.n_heads)),
        (key("attention.head_count_kv"), u(1)),
        (key("attention.key_length"), u(cfg.kv_cache_row())),
        (key("attention.value_length"), u(cfg.kv_lora_rank)),
        (key("attention.key_length_mla"), u(cfg.qk_head_dim())),
        (key("attention.value_length_mla"), u(cfg.v_head_dim)),
        (
            key("attention.layer_norm_rms_epsilon"),
            GgufValue::F32(cfg.rms_norm_eps),
        ),
        (key("attention.kv_lora_rank"), u(cfg.kv_lora_rank)),
        (key("rope.dimension_count"), u(cfg.qk_rope_head_dim)),
        (key("rope.freq_base"), GgufValue::F32(cfg.rope_theta)),
        (
            key("leading_dense_block_count"),
            u(cfg.first_k_dense_replace),
        ),
        (
            key("expert_feed_forward_length"),
            u(cfg.moe_intermediate_size),
        ),
        (key("expert_count"), u(cfg.moe.n_routed_experts)),
        (key("expert_shared_count"), u(cfg.moe.n_shared_experts)),
        (key("expert_used_count"), u(cfg.moe.experts_per_tok)),
        (
            key("expert_weights_scale"),
            GgufValue::F32(cfg.moe.routed_scaling_factor),
        ),
        (
            key("expert_weights_norm"),
            GgufValue::Bool(cfg.moe.norm_topk_prob),
        ),
        (
            key("expert_gating_func"),
            GgufValue::U32(match cfg.moe.scoring {
                Scoring::Softmax => GATING_SOFTMAX,
                Scoring::Sigmoid => GATING_SIGMOID,
            }),
        ),
    ];
    if cfg.moe.topk_method != TopkMethod::Greedy {
        kv.push((key("expert_group_count"), u(cfg.moe.n_group)));
        kv.push((key("expert_group_used_count"), u(cfg.moe.topk_group)));
    }
    if let QProj::LoRA { rank } = cfg.q_proj {
        kv.push((key("attention.q_lora_rank"), u(rank)));
    }
    if let Some(y) = cfg.yarn {
        kv.push((key("rope.scaling.type"), GgufValue::String("yarn".into())));
        kv.push((key("rope.scaling.factor"), GgufValue::F32(y.factor)));
        kv.push((
            key("rope.scaling.original_context_length"),
            u(y.original_max_position_embeddings),
        ));
        kv.push((
            key("rope.scaling.yarn_log_multiplier"),
            GgufValue::F32(0.1 * y.mscale_all_dim),
        ));
        kv.push((
            key("rope.scaling.yarn_beta_fast"),
            GgufValue::F32(y.beta_fast),
        ));
        kv.push((
            key("rope.scaling.yarn_beta_slow"),
            GgufValue::F32(y.beta_slow),
        ));
    }
    kv
}
