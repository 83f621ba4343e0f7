//! `moela convert`: a Hugging Face DeepSeek directory → a GGUF file in llama.cpp's `deepseek2`
//! layout (docs/FORMAT.md): experts stacked per layer, `kv_b_proj` split into `attn_k_b`
//! (W_UK transposed per head) and `attn_v_b`, 1-D tensors and the router kept in F32.
//! Tensors are converted row by row while streaming, so memory stays small for big models.
//! A GGUF input is requantized instead (`crate::requant`).

use std::path::Path;

use crate::config::{DeepSeekConfig, QProj};
use crate::error::{Error, Result};
use crate::format::gguf::{write_gguf_file, GgufArray, GgufTensorSpec, GgufValue};
use crate::model::gguf_names;
use crate::model::source::TensorIndex;
use crate::model::Model;
use crate::moe::profile::ExpertProfile;
use crate::quant_policy::{self, Base, Class, Policy};
use crate::tensor::{quant, DType, TensorView};

/// llama.cpp's `llama_ftype` for a whole-file type.
pub(crate) fn file_type(t: DType) -> u32 {
    match t {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::Q4_0 => 2,
        DType::Q8_0 => 7,
        // MOSTLY_Q2_K_S, MOSTLY_Q3_K_S, MOSTLY_Q4_K_S, MOSTLY_Q5_K_S, MOSTLY_Q6_K: every
        // matrix in that one type.
        DType::Q2_K => 21,
        DType::Q3_K => 11,
        DType::Q4_K => 14,
        DType::Q5_K => 16,
        DType::Q6_K => 18,
        DType::Q4_1 => 3,
        DType::Q5_0 => 8,
        DType::Q5_1 => 9,
        DType::IQ4_NL => 25,
        DType::IQ4_XS => 30,
        DType::BF16 => 32,
        // Not a GGUF type: never a conversion target (DType::from_name does not accept it).
        DType::F8E4M3 => 0,
        // Load-only types (never conversion targets): llama.cpp's MOSTLY_* ids for them.
        DType::IQ2_XXS => 19,
        DType::IQ2_XS => 20,
        DType::IQ3_XXS => 23,
        DType::IQ1_S => 24,
        DType::IQ3_S => 26,
        DType::IQ2_S => 28,
        DType::IQ1_M => 31,
        DType::TQ1_0 => 36,
        DType::TQ2_0 => 37,
        DType::MXFP4 => 38,
        DType::NVFP4 => 39,
        DType::Q1_0 => 40,
        DType::Q2_0 => 41,
    }
}

/// Where an output tensor's rows come from.
enum Src {
    /// One HF tensor, as is.
    Plain(String),
    /// Several HF tensors stacked (routed experts).
    Stack(Vec<String>),
    /// A stack of routed experts with the type the expert plan chose for them.
    Group(Vec<String>, DType),
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

/// The metadata key listing, for a layer whose routed experts are split by type, the group of
/// each expert (docs/FORMAT.md §8).
pub fn expert_group_key(layer: usize) -> String {
    format!("moela.blk.{layer}.expert_group")
}

/// The tensor name of group `g` of a stacked expert tensor (`base` = `blk.N.ffn_up_exps`).
pub fn expert_group_tensor(base: &str, g: usize) -> String {
    if g == 0 {
        format!("{base}.weight")
    } else {
        format!("{base}.g{g}.weight")
    }
}

/// Whether the HF checkpoint has DeepSeek-V3's multi-token-prediction block (its `eh_proj`
/// at layer `num_hidden_layers`).
fn has_mtp(cfg: &DeepSeekConfig, ix: &TensorIndex) -> bool {
    ix.contains(&format!("model.layers.{}.eh_proj.weight", cfg.n_layers))
}

/// The output tensors (types from `policy`) and, per layer with experts of several types, the
/// group of each expert.
fn plan(
    cfg: &DeepSeekConfig,
    ix: &TensorIndex,
    policy: &Policy,
) -> (Vec<Out>, Vec<(usize, Vec<u32>)>) {
    let mut groups_meta = Vec::new();
    let (h, nh) = (cfg.hidden_size, cfg.n_heads);
    let (dn, r, vd, l) = (
        cfg.qk_nope_head_dim,
        cfg.qk_rope_head_dim,
        cfg.v_head_dim,
        cfg.kv_lora_rank,
    );
    let mut outs = Vec::new();
    let mut push = |name: String, shape: Vec<usize>, src: Src| {
        let dtype = match &src {
            Src::Group(_, t) => quant_policy::fit(*t, *shape.last().unwrap_or(&1)),
            _ => policy.tensor_type(&name, &shape),
        };
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
    // The multi-token-prediction block, when the checkpoint has one, follows the trunk as one
    // more block with llama.cpp's `nextn.*` tensors (see [`has_mtp`]).
    let mtp = has_mtp(cfg, ix);
    for layer in 0..cfg.n_layers + mtp as usize {
        let hf = |w: &str| format!("model.layers.{layer}.{w}");
        let gg = |w: &str| format!("blk.{layer}.{w}");
        if layer == cfg.n_layers {
            // llama.cpp's names: blk.N.nextn.{eh_proj, enorm, hnorm, shared_head_norm} and,
            // when the checkpoint has its own copies, embed_tokens and shared_head_head.
            push(
                gg("nextn.eh_proj.weight"),
                vec![h, 2 * h],
                Src::Plain(hf("eh_proj.weight")),
            );
            push(
                gg("nextn.enorm.weight"),
                vec![h],
                Src::Plain(hf("enorm.weight")),
            );
            push(
                gg("nextn.hnorm.weight"),
                vec![h],
                Src::Plain(hf("hnorm.weight")),
            );
            push(
                gg("nextn.shared_head_norm.weight"),
                vec![h],
                Src::Plain(hf("shared_head.norm.weight")),
            );
            for (from, to) in [
                ("embed_tokens.weight", "nextn.embed_tokens.weight"),
                ("shared_head.head.weight", "nextn.shared_head_head.weight"),
            ] {
                if ix.contains(&hf(from)) {
                    push(gg(to), vec![cfg.vocab_size, h], Src::Plain(hf(from)));
                }
            }
        }
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
            // Experts grouped by planned type (one group, all experts, without a plan).
            let types: Vec<Option<DType>> = (0..ne).map(|e| policy.expert_type(layer, e)).collect();
            let mut kinds: Vec<Option<DType>> = types.clone();
            kinds.sort_by(|a, b| {
                let bits = |t: &Option<DType>| t.map_or(0.0, quant_policy::bits_per_weight);
                bits(a).total_cmp(&bits(b))
            });
            kinds.dedup();
            if kinds.len() > 1 {
                let group_of = types
                    .iter()
                    .map(|t| kinds.iter().position(|k| k == t).unwrap_or(0) as u32)
                    .collect();
                groups_meta.push((layer, group_of));
            }
            for (g, kind) in kinds.iter().enumerate() {
                let members: Vec<usize> = (0..ne).filter(|&e| types[e] == *kind).collect();
                let stack = |p: &str| {
                    let names = members
                        .iter()
                        .map(|e| hf(&format!("mlp.experts.{e}.{p}.weight")))
                        .collect();
                    match kind {
                        None => Src::Stack(names),
                        Some(t) => Src::Group(names, *t),
                    }
                };
                let n = members.len();
                for (what, shape, proj) in [
                    ("ffn_gate_exps", vec![n, inter, h], "gate_proj"),
                    ("ffn_down_exps", vec![n, h, inter], "down_proj"),
                    ("ffn_up_exps", vec![n, inter, h], "up_proj"),
                ] {
                    push(expert_group_tensor(&gg(what), g), shape, stack(proj));
                }
            }
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
    (outs, groups_meta)
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
        Src::Stack(names) | Src::Group(names, _) => {
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

/// What `moela convert` should write.
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// `--quant`/`--type`: a type for every tensor, or a mix.
    pub base: Base,
    /// `--expert-quant`: the type of routed experts (with a profile: the cheapest type the
    /// planner may give them).
    pub expert: Option<DType>,
    /// `--expert-profile` + `--target-size`: per-expert types within a file size.
    pub profile: Option<(ExpertProfile, u64)>,
}

impl ConvertOptions {
    pub fn uniform(t: DType) -> ConvertOptions {
        ConvertOptions {
            base: Base::Uniform(t),
            expert: None,
            profile: None,
        }
    }
}

/// One row of the end-of-conversion summary: tensors of one class stored as one type.
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryRow {
    pub class: Class,
    pub dtype: DType,
    pub tensors: usize,
    pub bytes: u64,
}

/// What was written.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub rows: Vec<SummaryRow>,
    /// Routed experts per type (with a plan; otherwise empty).
    pub experts_by_type: Vec<(DType, usize)>,
    pub file_bytes: u64,
}

impl Summary {
    /// A fixed-width table (class, type, tensors, MB).
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<22} {:>6} {:>8} {:>12}\n",
            "tensor class", "type", "tensors", "MB"
        );
        for r in &self.rows {
            s += &format!(
                "{:<22} {:>6} {:>8} {:>12.3}\n",
                r.class.label(),
                r.dtype.name(),
                r.tensors,
                r.bytes as f64 / 1e6
            );
        }
        for (t, n) in &self.experts_by_type {
            s += &format!("routed experts at {:<6}: {n}\n", t.name());
        }
        s += &format!("file: {:.3} MB", self.file_bytes as f64 / 1e6);
        s
    }
}

fn out_bytes(o: &Out) -> u64 {
    let cols = *o.shape.last().unwrap_or(&1);
    let rows: usize = o.shape[..o.shape.len() - 1].iter().product();
    o.dtype.bytes_for(cols).unwrap_or(0) as u64 * rows as u64
}

/// Bytes of the GGUF header for `meta` and tensor infos for `outs`, with every tensor's
/// alignment padding counted at its worst (an upper bound).
fn header_bytes(meta: &[(String, GgufValue)], outs: &[Out]) -> Result<u64> {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len() as u64;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    crate::format::gguf::write_gguf(&mut c, Path::new("header"), meta, &[], 32, |_, _| Ok(()))?;
    let infos: u64 = outs
        .iter()
        .map(|o| (8 + o.name.len() + 4 + 8 * o.shape.len() + 4 + 8 + 32) as u64)
        .sum();
    Ok(c.0 + infos + 32)
}

/// Converts the HF directory `input` into `output` with tensors of type `want` (where their
/// shape allows). `progress` receives one line per tensor.
pub fn convert_hf_to_gguf(
    input: &Path,
    output: &Path,
    want: DType,
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    convert_with(input, output, &ConvertOptions::uniform(want), progress).map(|_| ())
}

/// Converts `input` into `output` as `opts` says; returns what was chosen. `input` is a Hugging
/// Face directory, or a GGUF file to requantize ([`crate::requant`]).
pub fn convert_with(
    input: &Path,
    output: &Path,
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Summary> {
    if input.is_file() {
        return crate::requant::requantize_gguf(input, output, opts, progress);
    }
    let model = Model::load(input)?;
    if model.format != crate::model::SourceFormat::HfSafetensors {
        return Err(Error::InvalidArg(format!(
            "convert takes a Hugging Face directory; {} is already GGUF",
            input.display()
        )));
    }
    let cfg = &model.config;
    let mut policy = Policy::new(opts.base, cfg.n_layers);
    policy.expert = opts.expert;
    let ft = match opts.base {
        Base::Uniform(d) => file_type(d),
        Base::Mix { file_type, .. } => file_type,
    };
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
        ("general.file_type".to_string(), GgufValue::U32(ft)),
        (
            "general.quantization_version".to_string(),
            GgufValue::U32(2),
        ),
    ];
    meta.extend(gguf_names::config_to_gguf(cfg));
    if has_mtp(cfg, &model.tensors) {
        // llama.cpp counts the MTP block in block_count and names how many there are.
        for (k, v) in meta.iter_mut() {
            if k == &format!("{}.block_count", gguf_names::ARCH) {
                *v = GgufValue::U32(cfg.n_layers as u32 + 1);
            }
        }
        meta.push((
            format!("{}.nextn_predict_layers", gguf_names::ARCH),
            GgufValue::U32(1),
        ));
    }
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
    if let Some((profile, target)) = &opts.profile {
        // Size everything but the routed experts, then let the planner spend the rest.
        let (outs, _) = plan(cfg, &model.tensors, &policy);
        let moe_layers: Vec<usize> = (0..cfg.n_layers).filter(|&l| cfg.is_moe_layer(l)).collect();
        let ne = cfg.moe.n_routed_experts;
        let floor = opts.expert.unwrap_or(match opts.base {
            Base::Uniform(d) if d.is_quantized() => d,
            Base::Mix { low, .. } => low,
            _ => quant_policy::ladder(DType::Q4_0)[0],
        });
        let (h, inter) = (cfg.hidden_size, cfg.moe_intermediate_size);
        // Steps that store the same types for this model's expert rows are one step: a
        // K-quant whose super-blocks do not tile the rows is stored as its fallback type
        // (quant_policy::fit), and is named by it when both expert matrices fall back alike.
        let fits = |t: DType| (quant_policy::fit(t, h), quant_policy::fit(t, inter));
        let mut ladder: Vec<DType> = Vec::new();
        for t in quant_policy::ladder(floor) {
            // A K-quant whose super-blocks tile neither expert matrix would be stored as
            // llama.cpp's fallback (Q4_K → Q5_0, Q5_K → Q5_1): the planner's rungs there are
            // the smallest of Q4_0 / Q8_0 with at least its bits instead (Q4_K → Q4_0, Q5_K →
            // Q8_0), so its cheapest rung stays the floor's size and the steps stay few.
            let same_bits = [DType::Q4_0, DType::Q8_0]
                .into_iter()
                .find(|d| quant_policy::bits_per_weight(*d) >= quant_policy::bits_per_weight(t));
            let t = match (fits(t), same_bits) {
                ((a, b), Some(d)) if a != t && b != t => d,
                _ => t,
            };
            let (a, b) = fits(t);
            if !ladder.iter().any(|&x| fits(x) == (a, b)) {
                ladder.push(if a == b { a } else { t });
            }
        }
        let fixed: u64 = outs
            .iter()
            .filter(|o| !Class::of(&o.name).0.is_routed_expert())
            .map(out_bytes)
            .sum();
        // Header slack for the extra group tensors and keys a split layer adds.
        let slack = moe_layers.len() as u64 * (ladder.len() as u64 * 3 * 160 + 64 + 4 * ne as u64);
        let fixed = fixed + header_bytes(&meta, &outs)? + slack;
        let expert_bytes = |_: usize, t: DType| -> u64 {
            let gate_up = quant_policy::fit(t, h).bytes_for(h).unwrap_or(0) * inter * 2;
            let down = quant_policy::fit(t, inter).bytes_for(inter).unwrap_or(0) * h;
            (gate_up + down) as u64
        };
        let plan = quant_policy::plan_experts(
            profile,
            &moe_layers,
            ne,
            &ladder,
            fixed,
            *target,
            &expert_bytes,
        )?;
        for t in &ladder {
            let n: usize = plan.layers.values().flatten().filter(|x| *x == t).count();
            progress(&format!("expert plan: {n} routed experts at {}", t.name()));
        }
        policy.plan = Some(plan);
    }
    let (outs, groups) = plan(cfg, &model.tensors, &policy);
    for (layer, group_of) in &groups {
        meta.push((
            expert_group_key(*layer),
            GgufValue::Array(GgufArray::U32(group_of.clone())),
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
    let mut summary = Summary::default();
    for o in &outs {
        let class = Class::of(&o.name).0;
        let b = out_bytes(o);
        match summary
            .rows
            .iter_mut()
            .find(|r| r.class == class && r.dtype == o.dtype)
        {
            Some(r) => {
                r.tensors += 1;
                r.bytes += b;
            }
            None => summary.rows.push(SummaryRow {
                class,
                dtype: o.dtype,
                tensors: 1,
                bytes: b,
            }),
        }
    }
    summary.rows.sort_by(|a, b| {
        a.class
            .cmp(&b.class)
            .then(a.dtype.name().cmp(b.dtype.name()))
    });
    if let Some(p) = &policy.plan {
        for t in DType::ALL {
            let n = p.layers.values().flatten().filter(|x| **x == t).count();
            if n > 0 {
                summary.experts_by_type.push((t, n));
            }
        }
    }
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
    })?;
    summary.file_bytes = std::fs::metadata(output)
        .map_err(|e| Error::io(output, e))?
        .len();
    Ok(summary)
}
