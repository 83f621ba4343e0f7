//! DeepSeek's `config.json` → [`DeepSeekConfig`].
//!
//! Reads DeepSeek's own keys (V2 and V3 spellings) and both the classic `rope_scaling` and the
//! transformers-5 `rope_parameters` form. Missing keys take the defaults of DeepSeek's own
//! configuration classes (`configuration_deepseek.py`), not transformers' re-implementations.

use std::path::Path;

use serde_json::Value;

use crate::config::{DeepSeekConfig, Family, MoeRouting, QProj, Scoring, TopkMethod, Yarn};
use crate::error::{Error, Result};

/// Parses `config.json` at `path`.
pub fn read_config(path: &Path) -> Result<DeepSeekConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_config(&text, path)
}

struct Obj<'a> {
    v: &'a Value,
    path: &'a Path,
}

impl Obj<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.v.get(key).filter(|v| !v.is_null())
    }
    fn usize_opt(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|u| usize::try_from(u).ok())
                .map(Some)
                .ok_or_else(|| {
                    Error::config(
                        self.path,
                        key,
                        format!("expected a non-negative integer, got {v}"),
                    )
                }),
        }
    }
    fn usize(&self, key: &str) -> Result<usize> {
        self.usize_opt(key)?
            .ok_or_else(|| Error::config(self.path, key, "missing"))
    }
    fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        Ok(self.usize_opt(key)?.unwrap_or(default))
    }
    fn f32_opt(&self, key: &str) -> Result<Option<f32>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(|f| Some(f as f32)).ok_or_else(|| {
                Error::config(self.path, key, format!("expected a number, got {v}"))
            }),
        }
    }
    fn f32_or(&self, key: &str, default: f32) -> Result<f32> {
        Ok(self.f32_opt(key)?.unwrap_or(default))
    }
    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| {
                Error::config(self.path, key, format!("expected true or false, got {v}"))
            }),
        }
    }
    fn str_opt(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| {
                Error::config(self.path, key, format!("expected a string, got {v}"))
            }),
        }
    }
    /// A token id, or the first of a list of ids (some configs list several eos ids).
    fn token_id(&self, key: &str) -> Option<u32> {
        let v = self.get(key)?;
        let v = v.as_array().and_then(|a| a.first()).unwrap_or(v);
        v.as_u64().and_then(|u| u32::try_from(u).ok())
    }
}

/// DeepSeek's FP8 checkpoint layout, from `quantization_config` in `config.json`:
/// `{"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
/// "weight_block_size": [128, 128]}`. Quantized weights are F8_E4M3 with an F32
/// `<name>_scale_inv` of one value per block. (`activation_scheme` is not used: moela keeps
/// activations in f32 for FP8 weights.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fp8Quant {
    /// Rows × columns of one scale block.
    pub block: (usize, usize),
}

/// Reads the `quantization_config` of the `config.json` at `path`: None when there is none.
pub fn read_quantization(path: &Path) -> Result<Option<Fp8Quant>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_quantization(&text, path)
}

/// Parses `quantization_config` from the text of a `config.json`.
pub fn parse_quantization(text: &str, path: &Path) -> Result<Option<Fp8Quant>> {
    let root: Value = serde_json::from_str(text)
        .map_err(|e| Error::format(path, format!("invalid JSON: {e}")))?;
    let Some(q) = root.get("quantization_config").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let key = "quantization_config";
    let q = Obj { v: q, path };
    match q.str_opt("quant_method")? {
        Some("fp8") => {}
        other => {
            return Err(Error::Unsupported {
                path: path.into(),
                msg: format!(
                "quantization_config.quant_method {other:?}: moela reads only DeepSeek's \"fp8\""
            ),
            })
        }
    }
    if let Some(fmt) = q.str_opt("fmt")? {
        if fmt != "e4m3" {
            return Err(Error::Unsupported {
                path: path.into(),
                msg: format!("quantization_config.fmt {fmt:?}: only \"e4m3\" is supported"),
            });
        }
    }
    let block = match q.get("weight_block_size") {
        None => (128, 128),
        Some(v) => {
            let dims: Option<Vec<usize>> = v.as_array().map(|a| {
                a.iter()
                    .filter_map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                    .filter(|&d| d > 0)
                    .collect()
            });
            match dims.as_deref() {
                Some(&[r, c]) if v.as_array().map(|a| a.len()) == Some(2) => (r, c),
                _ => {
                    return Err(Error::config(
                        path,
                        key,
                        format!("weight_block_size must be two positive integers, got {v}"),
                    ))
                }
            }
        }
    };
    Ok(Some(Fp8Quant { block }))
}

/// Parses the text of a `config.json`; `path` is only used in error messages.
pub fn parse_config(text: &str, path: &Path) -> Result<DeepSeekConfig> {
    let root: Value = serde_json::from_str(text)
        .map_err(|e| Error::format(path, format!("invalid JSON: {e}")))?;
    if !root.is_object() {
        return Err(Error::format(path, "config.json is not a JSON object"));
    }
    let c = Obj { v: &root, path };

    let model_type = c.str_opt("model_type")?.unwrap_or("");
    let arch = c
        .get("architectures")
        .and_then(|a| a.as_array())
        .and_then(|a| a.first())
        .and_then(|a| a.as_str())
        .unwrap_or("");
    let family = match (model_type, arch) {
        ("deepseek_v2", _) | (_, "DeepseekV2ForCausalLM") => Family::V2,
        ("deepseek_v3" | "kimi_k2", _) | (_, "DeepseekV3ForCausalLM") => Family::V3,
        _ => {
            return Err(Error::Unsupported {
                path: path.into(),
                msg: format!(
                "model_type {model_type:?} / architecture {arch:?} is not a DeepSeek-V2/V3 model"
            ),
            })
        }
    };

    let hidden_size = c.usize("hidden_size")?;
    let n_heads = c.usize("num_attention_heads")?;
    let q_proj = match c.usize_opt("q_lora_rank")? {
        None | Some(0) => QProj::Direct,
        Some(rank) => QProj::LoRA { rank },
    };

    // Rope: DeepSeek's `rope_scaling`, or transformers-5's `rope_parameters` (which may also
    // carry rope_theta and uses `rope_type` for the type).
    let rope_obj = c.get("rope_scaling").or_else(|| c.get("rope_parameters"));
    let rope_theta = match c.f32_opt("rope_theta")? {
        Some(t) => t,
        None => match rope_obj {
            Some(r) => Obj { v: r, path }.f32_or("rope_theta", 10000.0)?,
            None => 10000.0,
        },
    };
    let yarn = match rope_obj {
        None => None,
        Some(r) if !r.is_object() => {
            return Err(Error::config(path, "rope_scaling", "expected an object"));
        }
        Some(r) => {
            let r = Obj { v: r, path };
            let ty = r
                .str_opt("type")?
                .or(r.str_opt("rope_type")?)
                .unwrap_or("default");
            match ty {
                "default" => None,
                "yarn" => Some(Yarn {
                    factor: r.f32_opt("factor")?.ok_or_else(|| {
                        Error::config(path, "rope_scaling.factor", "missing for yarn")
                    })?,
                    original_max_position_embeddings: r
                        .usize_or("original_max_position_embeddings", 4096)?,
                    beta_fast: r.f32_or("beta_fast", 32.0)?,
                    beta_slow: r.f32_or("beta_slow", 1.0)?,
                    mscale: r.f32_or("mscale", 1.0)?,
                    mscale_all_dim: r.f32_or("mscale_all_dim", 0.0)?,
                }),
                other => {
                    return Err(Error::config(
                        path,
                        "rope_scaling.type",
                        format!("rope scaling {other:?} is not supported (only yarn)"),
                    ))
                }
            }
        }
    };

    let n_routed_experts = c.usize_or("n_routed_experts", 0)?;
    let scoring = match c.str_opt("scoring_func")? {
        None => match family {
            Family::V2 => Scoring::Softmax,
            Family::V3 => Scoring::Sigmoid,
        },
        Some("softmax") => Scoring::Softmax,
        Some("sigmoid") => Scoring::Sigmoid,
        Some(other) => {
            return Err(Error::config(
                path,
                "scoring_func",
                format!("unknown scoring function {other:?}"),
            ))
        }
    };
    let topk_method = match c.str_opt("topk_method")? {
        None => match family {
            Family::V2 => TopkMethod::Greedy,
            Family::V3 => TopkMethod::NoauxTc,
        },
        // "gready" is the (misspelt) default of DeepSeek-V2's own config class.
        Some("greedy" | "gready") => TopkMethod::Greedy,
        Some("group_limited_greedy") => TopkMethod::GroupLimitedGreedy,
        Some("noaux_tc") => TopkMethod::NoauxTc,
        Some(other) => {
            return Err(Error::config(
                path,
                "topk_method",
                format!("unknown top-k method {other:?}"),
            ))
        }
    };
    let moe = MoeRouting {
        n_routed_experts,
        n_shared_experts: c.usize_or("n_shared_experts", 0)?,
        experts_per_tok: c.usize_or("num_experts_per_tok", 0)?,
        scoring,
        topk_method,
        n_group: c.usize_or("n_group", 1)?,
        topk_group: c.usize_or("topk_group", 1)?,
        norm_topk_prob: c.bool_or("norm_topk_prob", family == Family::V3)?,
        routed_scaling_factor: c.f32_or("routed_scaling_factor", 1.0)?,
        family,
    };

    let cfg = DeepSeekConfig {
        family,
        hidden_size,
        intermediate_size: c.usize_or("intermediate_size", 0)?,
        moe_intermediate_size: c.usize_or("moe_intermediate_size", 0)?,
        n_layers: c.usize("num_hidden_layers")?,
        n_heads,
        q_proj,
        kv_lora_rank: c.usize("kv_lora_rank")?,
        qk_nope_head_dim: c.usize("qk_nope_head_dim")?,
        qk_rope_head_dim: c.usize("qk_rope_head_dim")?,
        v_head_dim: c.usize("v_head_dim")?,
        vocab_size: c.usize("vocab_size")?,
        rms_norm_eps: c.f32_or("rms_norm_eps", 1e-6)?,
        rope_theta,
        yarn,
        max_position_embeddings: c.usize_or("max_position_embeddings", 4096)?,
        first_k_dense_replace: c.usize_or("first_k_dense_replace", 0)?,
        moe_layer_freq: c.usize_or("moe_layer_freq", 1)?,
        moe,
        bos_token_id: c.token_id("bos_token_id"),
        eos_token_id: c.token_id("eos_token_id"),
    };
    cfg.validate()
        .map_err(|msg| Error::config(path, "(consistency)", msg))?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantization_config() {
        let p = Path::new("config.json");
        assert_eq!(parse_quantization("{}", p).unwrap(), None);
        let ds = r#"{"quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
            "quant_method": "fp8", "weight_block_size": [128, 64]}}"#;
        assert_eq!(
            parse_quantization(ds, p).unwrap(),
            Some(Fp8Quant { block: (128, 64) })
        );
        let bad = [
            r#"{"quantization_config": {"quant_method": "gptq"}}"#,
            r#"{"quantization_config": {"quant_method": "fp8", "fmt": "e5m2"}}"#,
            r#"{"quantization_config": {"quant_method": "fp8", "weight_block_size": [0, 128]}}"#,
            r#"{"quantization_config": {"quant_method": "fp8", "weight_block_size": [128]}}"#,
        ];
        for b in bad {
            assert!(parse_quantization(b, p).is_err(), "{b}");
        }
    }
}
