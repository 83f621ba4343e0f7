//! `moela convert`: a Hugging Face DeepSeek directory → a GGUF file in llama.cpp's `deepseek2`
//! layout (docs/FORMAT.md): experts stacked per layer, `kv_b_proj` split into `attn_k_b`
//! (W_UK transposed per head) and `attn_v_b`, 1-D tensors and the router kept in F32.
//! Tensors are converted row by row while streaming, so memory stays small for big models.

use std::path::Path;

use crate::config::{DeepSeekConfig, QProj};
use crate::error::{Error, Result};
use crate::format::gguf::{write_gguf_file, GgufTensorSpec, GgufValue};
use crate::model::gguf_names;
use crate::model::source::TensorIndex;
use crate::model::Model;
use crate::tensor::{quant, DType, TensorView};

/// llama.cpp's `llama_ftype` for a whole-file type.
fn file_type(t: DType) -> u32 {
    match t {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::Q4_0 => 2,
        DType::Q8_0 => 7,
        DType::BF16 => 32,
        // Not a GGUF type: never a conversion target (DType::from_name does not accept it).
        DType::F8E4M3 => 0,
    }
}

/// Where an output tensor's rows come from.
enum Src {
    /// One HF tensor, as is.
    Plain(String),
    /// Several HF tensors stacked (routed experts).
    Stack(Vec<String>),
    /// `attn_k_b` of a layer: per head, W_UK transposed ([kv_lora, qk_nope]).
    KB(String),
    /// `attn_v_b` of a layer: per head, W_UV ([v_head, kv_lora]).
    VB(String),
}

struct Out {
    name: String,
    /// Row-major shape.
    shape: Vec<usize>,
    dtype: DType,
    src: Src,
}

/// Chooses the stored type: 1-D tensors and the router stay F32 (as llama.cpp keeps them);
/// rows that are not whole quant blocks fall back to F16.
fn pick_type(name: &str, shape: &[usize], want: DType) -> DType {
    if shape.len() == 1 || name.ends_with("ffn_gate_inp.weight") {
        return DType::F32;
    }
    let cols = *shape.last().unwrap_or(&1);
    if want.is_quantized() && cols % want.block_size() != 0 {
        return DType::F16;
    }
    want
}

fn plan(cfg: &DeepSeekConfig, ix: &TensorIndex, want: DType) -> Vec<Out> {
    let (h, nh) = (cfg.hidden_size, cfg.n_heads);
    let (dn, r, vd, l) = (
        cfg.qk_nope_head_dim,
        cfg.qk_rope_head_dim,
        cfg.v_head_dim,
        cfg.kv_lora_rank,
    );
    let mut outs = Vec::new();
    let mut push = |name: String, shape: Vec<usize>, src: Src| {
        let dtype = pick_type(&name, &shape, want);
        outs.push(Out {
            name,
            shape,
            dtype,
            src,
        });
    };
    let plain = |s: &str| Src::Plain(s.to_string());
    push(
        "token_embd.weight".into(),
        vec![cfg.vocab_size, h],
        plain("model.embed_tokens.weight"),
    );
    for layer in 0..cfg.n_layers {
        let hf = |w: &str| format!("model.layers.{layer}.{w}");
        let gg = |w: &str| format!("blk.{layer}.{w}");
        push(
            gg("attn_norm.weight"),
            vec![h],
            Src::Plain(hf("input_layernorm.weight")),
        );
        match cfg.q_proj {
            QProj::Direct => push(
                gg("attn_q.weight"),
                vec![nh * (dn + r), h],
                Src::Plain(hf("self_attn.q_proj.weight")),
            ),
            QProj::LoRA { rank } => {
                push(
                    gg("attn_q_a.weight"),
                    vec![rank, h],
                    Src::Plain(hf("self_attn.q_a_proj.weight")),
                );
                push(
                    gg("attn_q_a_norm.weight"),
                    vec![rank],
                    Src::Plain(hf("self_attn.q_a_layernorm.weight")),
                );
                push(
                    gg("attn_q_b.weight"),
                    vec![nh * (dn + r), rank],
                    Src::Plain(hf("self_attn.q_b_proj.weight")),
                );
            }
        }
        push(
            gg("attn_kv_a_mqa.weight"),
            vec![l + r, h],
            Src::Plain(hf("self_attn.kv_a_proj_with_mqa.weight")),
        );
        push(
            gg("attn_kv_a_norm.weight"),
            vec![l],
            Src::Plain(hf("self_attn.kv_a_layernorm.weight")),
        );
        // Only the split form: llama.cpp rejects files with tensors it does not use, and with
        // key_length_mla present it expects attn_k_b/attn_v_b, not attn_kv_b.
        push(
            gg("attn_k_b.weight"),
            vec![nh, l, dn],
            Src::KB(hf("self_attn.kv_b_proj.weight")),
        );
        push(
            gg("attn_v_b.weight"),
            vec![nh, vd, l],
            Src::VB(hf("self_attn.kv_b_proj.weight")),
        );
        push(
            gg("attn_output.weight"),
            vec![h, nh * vd],
            Src::Plain(hf("self_attn.o_proj.weight")),
        );
        push(
            gg("ffn_norm.weight"),
            vec![h],
            Src::Plain(hf("post_attention_layernorm.weight")),
        );
        if cfg.is_moe_layer(layer) {
            let m = &cfg.moe;
            let (ne, inter) = (m.n_routed_experts, cfg.moe_intermediate_size);
            push(
                gg("ffn_gate_inp.weight"),
                vec![ne, h],
                Src::Plain(hf("mlp.gate.weight")),
            );
            if ix.contains(&hf("mlp.gate.e_score_correction_bias")) {
                push(
                    gg("exp_probs_b.bias"),
                    vec![ne],
                    Src::Plain(hf("mlp.gate.e_score_correction_bias")),
                );
            }
            let stack = |p: &str| {
                Src::Stack(
                    (0..ne)
                        .map(|e| hf(&format!("mlp.experts.{e}.{p}.weight")))
                        .collect(),
                )
            };
            push(
                gg("ffn_gate_exps.weight"),
                vec![ne, inter, h],
                stack("gate_proj"),
            );
            push(
                gg("ffn_down_exps.weight"),
                vec![ne, h, inter],
                stack("down_proj"),
            );
            push(
                gg("ffn_up_exps.weight"),
                vec![ne, inter, h],
                stack("up_proj"),
            );
            if m.n_shared_experts > 0 {
                let sh = inter * m.n_shared_experts;
                push(
                    gg("ffn_gate_shexp.weight"),
                    vec![sh, h],
                    Src::Plain(hf("mlp.shared_experts.gate_proj.weight")),
                );
                push(
                    gg("ffn_down_shexp.weight"),
                    vec![h, sh],
                    Src::Plain(hf("mlp.shared_experts.down_proj.weight")),
                );
                push(
                    gg("ffn_up_shexp.weight"),
                    vec![sh, h],
                    Src::Plain(hf("mlp.shared_experts.up_proj.weight")),
                );
            }
        } else {
            let inter = cfg.intermediate_size;
            push(
                gg("ffn_gate.weight"),
                vec![inter, h],
                Src::Plain(hf("mlp.gate_proj.weight")),
            );
            push(
                gg("ffn_down.weight"),
                vec![h, inter],
                Src::Plain(hf("mlp.down_proj.weight")),
            );
            push(
                gg("ffn_up.weight"),
                vec![inter, h],
                Src::Plain(hf("mlp.up_proj.weight")),
            );
        }
    }
    push(
        "output_norm.weight".into(),
        vec![h],
        plain("model.norm.weight"),
    );
    if ix.contains("lm_head.weight") {
        push(
            "output.weight".into(),
            vec![cfg.vocab_size, h],
            plain("lm_head.weight"),
        );
    }
    outs
}

/// Streams the rows of `src` (as f32) into `emit`.
fn for_each_row(
    model: &Model,
    out: &Out,
    emit: &mut dyn FnMut(&[f32]) -> Result<()>,
) -> Result<()> {
    let ix = &model.tensors;
    let cfg = &model.config;
    let whole = |name: &str, shape: &[usize]| -> Result<TensorView> { ix.get(name, shape) };
    let mut row = Vec::new();
    let mut rows_of = |t: &TensorView, emit: &mut dyn FnMut(&[f32]) -> Result<()>| -> Result<()> {
        row.resize(t.cols, 0.0);
        for i in 0..t.rows {
            t.row_f32(i, &mut row);
            emit(&row)?;
        }
        Ok(())
    };
    match &out.src {
        Src::Plain(name) => rows_of(&whole(name, &out.shape)?, emit),
        Src::Stack(names) => {
            for n in names {
                rows_of(&whole(n, &out.shape[1..])?, emit)?;
            }
            Ok(())
        }
        Src::KB(name) | Src::VB(name) => {
            let (nh, dn, vd, l) = (
                cfg.n_heads,
                cfg.qk_nope_head_dim,
                cfg.v_head_dim,
                cfg.kv_lora_rank,
            );
            let kv_b = whole(name, &[nh * (dn + vd), l])?;
            let mut head = vec![0.0f32; (dn + vd) * l];
            for h in 0..nh {
                for i in 0..dn + vd {
                    kv_b.row_f32(h * (dn + vd) + i, &mut head[i * l..(i + 1) * l]);
                }
                if matches!(out.src, Src::KB(_)) {
                    // Row i of W_UKᵀ is column i of W_UK.
                    let mut col = vec![0.0f32; dn];
                    for i in 0..l {
                        for (j, c) in col.iter_mut().enumerate() {
                            *c = head[j * l + i];
                        }
                        emit(&col)?;
                    }
                } else {
                    for i in dn..dn + vd {
                        emit(&head[i * l..(i + 1) * l])?;
                    }
                }
            }
            Ok(())
        }
    }
}

/// Converts the HF directory `input` into `output` with tensors of type `want` (where their
/// shape allows). `progress` receives one line per tensor.
pub fn convert_hf_to_gguf(
    input: &Path,
    output: &Path,
    want: DType,
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    let model = Model::load(input)?;
    if model.format != crate::model::SourceFormat::HfSafetensors {
        return Err(Error::InvalidArg(format!(
            "convert takes a Hugging Face directory; {} is already GGUF",
            input.display()
        )));
    }
    let cfg = &model.config;
    let outs = plan(cfg, &model.tensors, want);
    let name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let mut meta = vec![
        (
            "general.architecture".to_string(),
            GgufValue::String(gguf_names::ARCH.into()),
        ),
        ("general.name".to_string(), GgufValue::String(name)),
        (
            "general.file_type".to_string(),
            GgufValue::U32(file_type(want)),
        ),
        (
            "general.quantization_version".to_string(),
            GgufValue::U32(2),
        ),
    ];
    meta.extend(gguf_names::config_to_gguf(cfg));
    if let Some(t) = &model.tokenizer {
        meta.extend(crate::model::tokenizer_gguf::tokenizer_to_gguf(
            t,
            cfg.vocab_size,
        ));
        progress(&format!(
            "tokenizer: {} tokens, pre-tokenizer {}",
            t.n_vocab(),
            t.pre_tokenizer().gguf_name()
        ));
    } else {
        // llama.cpp needs a tokenizer.ggml.model; "none" loads as a token-id-only model.
        meta.push((
            "tokenizer.ggml.model".to_string(),
            GgufValue::String("none".into()),
        ));
    }
    let specs: Vec<GgufTensorSpec> = outs
        .iter()
        .map(|o| GgufTensorSpec {
            name: o.name.clone(),
            dims: o.shape.iter().rev().map(|&d| d as u64).collect(),
            ggml_type: o.dtype.ggml_type(),
        })
        .collect();
    let total = outs.len();
    let mut buf = Vec::new();
    write_gguf_file(output, &meta, &specs, 32, |i, w| {
        let o = &outs[i];
        progress(&format!(
            "[{:>4}/{total}] {:<32} {:>5} {:?}",
            i + 1,
            o.name,
            o.dtype.name(),
            o.shape
        ));
        for_each_row(&model, o, &mut |row| {
            let nb = o.dtype.bytes_for(row.len()).unwrap_or(0);
            buf.resize(nb, 0);
            quant::quantize_row(o.dtype, row, &mut buf)?;
            w.write_all(&buf).map_err(|e| Error::io(output, e))
        })
    })
}
