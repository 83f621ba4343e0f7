//! Per-layer handles into the mapping. Nothing here reads a weight byte: every field is a view.

use crate::config::{DeepSeekConfig, QProj};
use crate::error::Result;
use crate::model::source::TensorIndex;
use crate::tensor::{DType, TensorView};

/// A SwiGLU feed-forward block: `down(silu(gate x) * up x)`.
#[derive(Clone, Debug)]
pub struct Mlp {
    /// [inter, hidden]
    pub gate: TensorView,
    /// [inter, hidden]
    pub up: TensorView,
    /// [hidden, inter]
    pub down: TensorView,
}

impl Mlp {
    pub fn inter(&self) -> usize {
        self.gate.rows
    }
}

#[derive(Clone, Debug)]
pub enum QWeights {
    /// [n_heads*qk_head_dim, hidden]
    Direct { q: TensorView },
    /// q_a: [rank, hidden], norm: [rank], q_b: [n_heads*qk_head_dim, rank]
    LoRA {
        q_a: TensorView,
        norm: TensorView,
        q_b: TensorView,
    },
}

/// One head's slice of an MLA up-projection (`W_UK` [qk_nope, kv_lora] or `W_UV`
/// [v_head, kv_lora]). HF stores both inside `kv_b_proj`; llama.cpp's GGUF stores `W_UK`
/// transposed (`attn_k_b`, [kv_lora, qk_nope] per head) so that the absorbed decode is a plain
/// matvec. `stored` holds `M` itself, or `Mᵀ` when `transposed`.
#[derive(Clone, Debug)]
pub struct HeadProj {
    pub stored: TensorView,
    pub transposed: bool,
}

impl HeadProj {
    /// `out = M x` (x: kv_lora → out: head dim).
    pub fn apply(&self, x: &[f32], out: &mut [f32]) {
        if self.transposed {
            self.stored.matvec_t(x, out)
        } else {
            self.stored.matvec(x, out)
        }
    }
    /// `out[t] = M x[t]` for `n` latents stored back to back (`out` is `[n, head dim]`).
    pub fn apply_batch(&self, x: &[f32], n: usize, out: &mut [f32]) {
        if self.transposed {
            self.stored.matmul_t(x, n, out)
        } else {
            self.stored.matmul(x, n, out)
        }
    }
    /// `out[t] = Mᵀ x[t]` for `n` inputs of head dim stored back to back (`out` is
    /// `[n, kv_lora]`).
    pub fn apply_t_batch(&self, x: &[f32], n: usize, out: &mut [f32]) {
        if self.transposed {
            self.stored.matmul(x, n, out)
        } else {
            self.stored.matmul_t(x, n, out)
        }
    }
    /// `out = Mᵀ x` (x: head dim → out: kv_lora).
    pub fn apply_t(&self, x: &[f32], out: &mut [f32]) {
        if self.transposed {
            self.stored.matvec(x, out)
        } else {
            self.stored.matvec_t(x, out)
        }
    }
}

#[derive(Clone, Debug)]
pub struct Attention {
    pub q: QWeights,
    /// [kv_lora + qk_rope, hidden]: the latent and the shared RoPE key.
    pub kv_a: TensorView,
    /// [kv_lora]
    pub kv_a_norm: TensorView,
    /// Per head: W_UK [qk_nope, kv_lora].
    pub k_up: Vec<HeadProj>,
    /// Per head: W_UV [v_head, kv_lora].
    pub v_up: Vec<HeadProj>,
    /// [hidden, n_heads*v_head]
    pub o: TensorView,
}

#[derive(Clone, Debug)]
pub struct Moe {
    /// [n_routed, hidden]
    pub router: TensorView,
    /// [n_routed]: V3's e_score_correction_bias (noaux_tc).
    pub score_bias: Option<Vec<f32>>,
    pub experts: Vec<Mlp>,
    /// All shared experts as one MLP of n_shared × moe_intermediate_size.
    pub shared: Option<Mlp>,
}

#[derive(Clone, Debug)]
pub enum Ffn {
    Dense(Mlp),
    Moe(Moe),
}

#[derive(Clone, Debug)]
pub struct Layer {
    pub attn_norm: TensorView,
    pub attn: Attention,
    pub ffn_norm: TensorView,
    pub ffn: Ffn,
}

/// DeepSeek-V3's multi-token-prediction (MTP) module (the technical report's §2.2): from the
/// trunk's last hidden state `h_i` (before the final norm) and the token `t_{i+1}`,
/// `x = eh_proj(concat(enorm(embed(t_{i+1})), hnorm(h_i)))`, one full decoder layer over `x`
/// (its own latent cache), then `head(head_norm(x))`: logits for `t_{i+2}`. Stored as the block
/// after the trunk's last (HF `model.layers.{num_hidden_layers}.*`, GGUF `blk.{n}.*` with the
/// `nextn.*` tensors of llama.cpp's layout).
#[derive(Clone, Debug)]
pub struct Mtp {
    /// [hidden, 2*hidden]: the embedding half first, then the hidden-state half.
    pub eh_proj: TensorView,
    /// [hidden]
    pub enorm: TensorView,
    /// [hidden]
    pub hnorm: TensorView,
    /// [hidden]: `shared_head.norm` (the trunk's final norm when a GGUF file omits it).
    pub head_norm: TensorView,
    /// [vocab, hidden]: the module's own embedding table, None to share the trunk's.
    pub embed: Option<TensorView>,
    /// [vocab, hidden]: the module's own output head, None to share the trunk's.
    pub head: Option<TensorView>,
    /// The decoder layer (MLA + MoE or dense FFN) of the block.
    pub layer: Layer,
}

#[derive(Clone, Debug)]
pub struct Weights {
    /// [vocab, hidden]
    pub embed: TensorView,
    pub layers: Vec<Layer>,
    /// [hidden]
    pub norm: TensorView,
    /// [vocab, hidden]
    pub lm_head: TensorView,
    /// The multi-token-prediction module, when the checkpoint has one (only the first of
    /// several is loaded).
    pub mtp: Option<Mtp>,
}

impl Weights {
    /// The embedding table the MTP module reads (its own or the trunk's).
    pub fn mtp_embed(&self) -> Option<&TensorView> {
        self.mtp
            .as_ref()
            .map(|m| m.embed.as_ref().unwrap_or(&self.embed))
    }

    /// The output head the MTP module uses (its own or the trunk's).
    pub fn mtp_head(&self) -> Option<&TensorView> {
        self.mtp
            .as_ref()
            .map(|m| m.head.as_ref().unwrap_or(&self.lm_head))
    }
}

impl Weights {
    /// Interleaves every matrix of a type `wanted` accepts (see [`crate::tensor::interleave`])
    /// that the model only multiplies with (attention projections
    /// but the per-head up-projections, dense and shared FFNs, the output head, and the routed
    /// experts when `routed`) by eight rows into memory ([`crate::tensor::interleave`]), and
    /// releases their pages of the file mapping. Returns the bytes interleaved. The embedding
    /// table (read by rows), norms and router stay in the mapping.
    /// Nothing is interleaved (0 is returned) when the copies would take more than
    /// `max_bytes`: the mapping's pages can be evicted under memory pressure, the copies
    /// cannot.
    pub fn interleave_x8(
        &mut self,
        routed: bool,
        wanted: impl Fn(DType) -> bool + Sync,
        max_bytes: usize,
    ) -> usize {
        use rayon::prelude::*;
        let mut views: Vec<&mut TensorView> = Vec::new();
        let mtp_layer = self.mtp.as_mut().map(|m| {
            views.push(&mut m.eh_proj);
            if let Some(head) = &mut m.head {
                views.push(head);
            }
            &mut m.layer
        });
        for layer in self.layers.iter_mut().chain(mtp_layer) {
            let a = &mut layer.attn;
            match &mut a.q {
                QWeights::Direct { q } => views.push(q),
                QWeights::LoRA { q_a, q_b, .. } => {
                    views.push(q_a);
                    views.push(q_b);
                }
            }
            views.push(&mut a.kv_a);
            views.push(&mut a.o);
            match &mut layer.ffn {
                Ffn::Dense(m) => views.extend([&mut m.gate, &mut m.up, &mut m.down]),
                Ffn::Moe(moe) => {
                    if let Some(m) = &mut moe.shared {
                        views.extend([&mut m.gate, &mut m.up, &mut m.down]);
                    }
                    if routed {
                        for m in &mut moe.experts {
                            views.extend([&mut m.gate, &mut m.up, &mut m.down]);
                        }
                    }
                }
            }
        }
        views.push(&mut self.lm_head);
        views.retain(|v| {
            wanted(v.dtype)
                && crate::tensor::interleave::has_layout(v.dtype)
                && v.rows % crate::tensor::interleave::GROUP == 0
                && !v.is_interleaved()
                && !v.is_block_scaled()
        });
        let total: usize = views.iter().map(|v| v.n_bytes()).sum();
        if total > max_bytes {
            return 0;
        }
        views
            .into_par_iter()
            .map(|v| match v.interleaved() {
                Some(x) => {
                    v.release_mapped_pages();
                    *v = x;
                    v.n_bytes()
                }
                None => 0,
            })
            .sum()
    }
}

/// The names of one checkpoint layout (HF or GGUF); shapes are row-major.
trait Layout {
    fn embed(&self) -> String;
    fn norm(&self) -> String;
    fn lm_head(&self) -> String;
    fn layer(&self, l: usize, what: &str) -> String;
    /// The name of an MTP-only tensor of block `l`.
    fn mtp(&self, l: usize, what: MtpPart) -> String;
}

/// The tensors an MTP block has beyond a decoder layer's.
#[derive(Clone, Copy)]
enum MtpPart {
    EhProj,
    Enorm,
    Hnorm,
    HeadNorm,
    Embed,
    Head,
}

struct HfLayout;
impl Layout for HfLayout {
    fn embed(&self) -> String {
        "model.embed_tokens.weight".into()
    }
    fn norm(&self) -> String {
        "model.norm.weight".into()
    }
    fn lm_head(&self) -> String {
        "lm_head.weight".into()
    }
    fn layer(&self, l: usize, what: &str) -> String {
        format!("model.layers.{l}.{what}")
    }
    fn mtp(&self, l: usize, what: MtpPart) -> String {
        let w = match what {
            MtpPart::EhProj => "eh_proj",
            MtpPart::Enorm => "enorm",
            MtpPart::Hnorm => "hnorm",
            MtpPart::HeadNorm => "shared_head.norm",
            MtpPart::Embed => "embed_tokens",
            MtpPart::Head => "shared_head.head",
        };
        format!("model.layers.{l}.{w}.weight")
    }
}

struct GgufLayout;
impl Layout for GgufLayout {
    fn embed(&self) -> String {
        "token_embd.weight".into()
    }
    fn norm(&self) -> String {
        "output_norm.weight".into()
    }
    fn lm_head(&self) -> String {
        "output.weight".into()
    }
    fn layer(&self, l: usize, what: &str) -> String {
        format!("blk.{l}.{what}")
    }
    fn mtp(&self, l: usize, what: MtpPart) -> String {
        let w = match what {
            MtpPart::EhProj => "eh_proj",
            MtpPart::Enorm => "enorm",
            MtpPart::Hnorm => "hnorm",
            MtpPart::HeadNorm => "shared_head_norm",
            MtpPart::Embed => "embed_tokens",
            MtpPart::Head => "shared_head_head",
        };
        format!("blk.{l}.nextn.{w}.weight")
    }
}

fn load_common(
    ix: &TensorIndex,
    cfg: &DeepSeekConfig,
    names: &dyn Layout,
    layer: impl Fn(usize) -> Result<Layer>,
) -> Result<Weights> {
    let (v, h) = (cfg.vocab_size, cfg.hidden_size);
    let embed = ix.get(&names.embed(), &[v, h])?;
    let lm_head = match ix.get_opt(&names.lm_head(), &[v, h])? {
        Some(t) => t,
        // Tied embeddings: llama.cpp omits `output.weight` then.
        None => embed.clone(),
    };
    let norm = ix.get(&names.norm(), &[h])?;
    // The MTP block follows the trunk's last layer; its `eh_proj` marks it.
    let n = cfg.n_layers;
    let mtp = if ix.contains(&names.mtp(n, MtpPart::EhProj)) {
        let get = |p: MtpPart, shape: &[usize]| ix.get(&names.mtp(n, p), shape);
        let opt = |p: MtpPart, shape: &[usize]| ix.get_opt(&names.mtp(n, p), shape);
        Some(Mtp {
            eh_proj: get(MtpPart::EhProj, &[h, 2 * h])?,
            enorm: get(MtpPart::Enorm, &[h])?,
            hnorm: get(MtpPart::Hnorm, &[h])?,
            head_norm: opt(MtpPart::HeadNorm, &[h])?.unwrap_or_else(|| norm.clone()),
            embed: opt(MtpPart::Embed, &[v, h])?,
            head: opt(MtpPart::Head, &[v, h])?,
            layer: layer(n)?,
        })
    } else {
        None
    };
    Ok(Weights {
        embed,
        layers: (0..cfg.n_layers).map(&layer).collect::<Result<_>>()?,
        norm,
        lm_head,
        mtp,
    })
}

/// Splits a per-head stacked matrix into one [`HeadProj`] per head.
fn per_head(
    t: &TensorView,
    n_heads: usize,
    rows: usize,
    offset: usize,
    stride: usize,
    transposed: bool,
) -> Vec<HeadProj> {
    (0..n_heads)
        .map(|hd| HeadProj {
            // In range: the caller checked the full tensor shape.
            stored: t
                .rows_view(hd * stride + offset, rows)
                .expect("head rows within tensor"),
            transposed,
        })
        .collect()
}

fn slice_experts(t: &TensorView, n: usize, rows: usize) -> Vec<TensorView> {
    (0..n)
        .map(|e| {
            t.rows_view(e * rows, rows)
                .expect("expert rows within tensor")
        })
        .collect()
}

/// Routed experts of a layer stored in groups by type (moela's extension, docs/FORMAT.md §8):
/// group g's experts, in ascending id order, are stacked in `blk.N.ffn_*_exps[.gG].weight`
/// (no suffix for group 0); `groups[e]` is expert e's group.
fn grouped_experts(
    ix: &TensorIndex,
    layer: usize,
    groups: Option<&[u32]>,
    ne: usize,
    inter: usize,
    h: usize,
) -> Result<Vec<Mlp>> {
    let key = format!("moela.blk.{layer}.expert_group");
    let bad = |msg: String| crate::error::Error::format(&ix.path, format!("{key}: {msg}"));
    let groups = groups.ok_or_else(|| bad("not an array of unsigned integers".into()))?;
    if groups.len() != ne {
        return Err(bad(format!("{} entries for {ne} experts", groups.len())));
    }
    let n_groups = groups.iter().map(|&g| g as usize + 1).max().unwrap_or(0);
    if let Some(g) = (0..n_groups).find(|&g| !groups.iter().any(|&x| x as usize == g)) {
        return Err(bad(format!("group {g} has no experts")));
    }
    let mut experts: Vec<Option<Mlp>> = vec![None; ne];
    for g in 0..n_groups {
        let members: Vec<usize> = (0..ne).filter(|&e| groups[e] as usize == g).collect();
        let n = members.len();
        let name = |what: &str| {
            let base = format!("blk.{layer}.{what}");
            if g == 0 {
                format!("{base}.weight")
            } else {
                format!("{base}.g{g}.weight")
            }
        };
        let gate = ix.get(&name("ffn_gate_exps"), &[n, inter, h])?;
        let up = ix.get(&name("ffn_up_exps"), &[n, inter, h])?;
        let down = ix.get(&name("ffn_down_exps"), &[n, h, inter])?;
        for (((e, gate), up), down) in members
            .iter()
            .zip(slice_experts(&gate, n, inter))
            .zip(slice_experts(&up, n, inter))
            .zip(slice_experts(&down, n, h))
        {
            experts[*e] = Some(Mlp { gate, up, down });
        }
    }
    // Every expert is in exactly one non-empty group, so all are filled.
    experts
        .into_iter()
        .map(|m| m.ok_or_else(|| bad("an expert has no group".into())))
        .collect()
}

impl Weights {
    /// Hugging Face layout: DeepSeek's own names, one tensor per expert, kv_b not split.
    pub fn from_hf(ix: &TensorIndex, cfg: &DeepSeekConfig) -> Result<Weights> {
        let n = &HfLayout;
        let h = cfg.hidden_size;
        let nh = cfg.n_heads;
        let (nope, rope, vd, kvl) = (
            cfg.qk_nope_head_dim,
            cfg.qk_rope_head_dim,
            cfg.v_head_dim,
            cfg.kv_lora_rank,
        );
        let mlp = |prefix: String, inter: usize| -> Result<Mlp> {
            Ok(Mlp {
                gate: ix.get(&format!("{prefix}.gate_proj.weight"), &[inter, h])?,
                up: ix.get(&format!("{prefix}.up_proj.weight"), &[inter, h])?,
                down: ix.get(&format!("{prefix}.down_proj.weight"), &[h, inter])?,
            })
        };
        load_common(ix, cfg, n, |l| {
            let p = |w: &str| n.layer(l, w);
            let q = match cfg.q_proj {
                QProj::Direct => QWeights::Direct {
                    q: ix.get(&p("self_attn.q_proj.weight"), &[nh * (nope + rope), h])?,
                },
                QProj::LoRA { rank } => QWeights::LoRA {
                    q_a: ix.get(&p("self_attn.q_a_proj.weight"), &[rank, h])?,
                    norm: ix.get(&p("self_attn.q_a_layernorm.weight"), &[rank])?,
                    q_b: ix.get(&p("self_attn.q_b_proj.weight"), &[nh * (nope + rope), rank])?,
                },
            };
            let kv_b = ix.get(&p("self_attn.kv_b_proj.weight"), &[nh * (nope + vd), kvl])?;
            let attn = Attention {
                q,
                kv_a: ix.get(&p("self_attn.kv_a_proj_with_mqa.weight"), &[kvl + rope, h])?,
                kv_a_norm: ix.get(&p("self_attn.kv_a_layernorm.weight"), &[kvl])?,
                k_up: per_head(&kv_b, nh, nope, 0, nope + vd, false),
                v_up: per_head(&kv_b, nh, vd, nope, nope + vd, false),
                o: ix.get(&p("self_attn.o_proj.weight"), &[h, nh * vd])?,
            };
            let ffn = if cfg.is_moe_layer(l) {
                let m = &cfg.moe;
                let inter = cfg.moe_intermediate_size;
                Ffn::Moe(Moe {
                    router: ix.get(&p("mlp.gate.weight"), &[m.n_routed_experts, h])?,
                    score_bias: ix
                        .get_opt(
                            &p("mlp.gate.e_score_correction_bias"),
                            &[m.n_routed_experts],
                        )?
                        .map(|t| t.to_f32()),
                    experts: (0..m.n_routed_experts)
                        .map(|e| mlp(p(&format!("mlp.experts.{e}")), inter))
                        .collect::<Result<_>>()?,
                    shared: if m.n_shared_experts > 0 {
                        Some(mlp(p("mlp.shared_experts"), inter * m.n_shared_experts)?)
                    } else {
                        None
                    },
                })
            } else {
                Ffn::Dense(mlp(p("mlp"), cfg.intermediate_size)?)
            };
            Ok(Layer {
                attn_norm: ix.get(&p("input_layernorm.weight"), &[h])?,
                attn,
                ffn_norm: ix.get(&p("post_attention_layernorm.weight"), &[h])?,
                ffn,
            })
        })
    }

    /// llama.cpp's GGUF layout (see docs/FORMAT.md): stacked experts, kv_b split into
    /// `attn_k_b` (W_UK transposed per head) and `attn_v_b`, or an unsplit `attn_kv_b` in
    /// files from older converters.
    pub fn from_gguf(ix: &TensorIndex, cfg: &DeepSeekConfig) -> Result<Weights> {
        let n = &GgufLayout;
        let h = cfg.hidden_size;
        let nh = cfg.n_heads;
        let (nope, rope, vd, kvl) = (
            cfg.qk_nope_head_dim,
            cfg.qk_rope_head_dim,
            cfg.v_head_dim,
            cfg.kv_lora_rank,
        );
        load_common(ix, cfg, n, |l| {
            let p = |w: &str| n.layer(l, w);
            let q = match cfg.q_proj {
                QProj::Direct => QWeights::Direct {
                    q: ix.get(&p("attn_q.weight"), &[nh * (nope + rope), h])?,
                },
                QProj::LoRA { rank } => QWeights::LoRA {
                    q_a: ix.get(&p("attn_q_a.weight"), &[rank, h])?,
                    norm: ix.get(&p("attn_q_a_norm.weight"), &[rank])?,
                    q_b: ix.get(&p("attn_q_b.weight"), &[nh * (nope + rope), rank])?,
                },
            };
            let (k_up, v_up) = if ix.contains(&p("attn_k_b.weight")) {
                let k_b = ix.get(&p("attn_k_b.weight"), &[nh, kvl, nope])?;
                let v_b = ix.get(&p("attn_v_b.weight"), &[nh, vd, kvl])?;
                (
                    per_head(&k_b, nh, kvl, 0, kvl, true),
                    per_head(&v_b, nh, vd, 0, vd, false),
                )
            } else {
                let kv_b = ix.get(&p("attn_kv_b.weight"), &[nh * (nope + vd), kvl])?;
                (
                    per_head(&kv_b, nh, nope, 0, nope + vd, false),
                    per_head(&kv_b, nh, vd, nope, nope + vd, false),
                )
            };
            let attn = Attention {
                q,
                kv_a: ix.get(&p("attn_kv_a_mqa.weight"), &[kvl + rope, h])?,
                kv_a_norm: ix.get(&p("attn_kv_a_norm.weight"), &[kvl])?,
                k_up,
                v_up,
                o: ix.get(&p("attn_output.weight"), &[h, nh * vd])?,
            };
            let ffn = if cfg.is_moe_layer(l) {
                let m = &cfg.moe;
                let (ne, inter) = (m.n_routed_experts, cfg.moe_intermediate_size);
                let experts = match ix.expert_groups.get(&l) {
                    None => {
                        let gate = ix.get(&p("ffn_gate_exps.weight"), &[ne, inter, h])?;
                        let up = ix.get(&p("ffn_up_exps.weight"), &[ne, inter, h])?;
                        let down = ix.get(&p("ffn_down_exps.weight"), &[ne, h, inter])?;
                        slice_experts(&gate, ne, inter)
                            .into_iter()
                            .zip(slice_experts(&up, ne, inter))
                            .zip(slice_experts(&down, ne, h))
                            .map(|((gate, up), down)| Mlp { gate, up, down })
                            .collect()
                    }
                    Some(groups) => grouped_experts(ix, l, groups.as_deref(), ne, inter, h)?,
                };
                let sh = inter * m.n_shared_experts;
                Ffn::Moe(Moe {
                    router: ix.get(&p("ffn_gate_inp.weight"), &[ne, h])?,
                    score_bias: ix
                        .get_opt(&p("exp_probs_b.bias"), &[ne])?
                        .map(|t| t.to_f32()),
                    experts,
                    shared: if m.n_shared_experts > 0 {
                        Some(Mlp {
                            gate: ix.get(&p("ffn_gate_shexp.weight"), &[sh, h])?,
                            up: ix.get(&p("ffn_up_shexp.weight"), &[sh, h])?,
                            down: ix.get(&p("ffn_down_shexp.weight"), &[h, sh])?,
                        })
                    } else {
                        None
                    },
                })
            } else {
                let inter = cfg.intermediate_size;
                Ffn::Dense(Mlp {
                    gate: ix.get(&p("ffn_gate.weight"), &[inter, h])?,
                    up: ix.get(&p("ffn_up.weight"), &[inter, h])?,
                    down: ix.get(&p("ffn_down.weight"), &[h, inter])?,
                })
            };
            Ok(Layer {
                attn_norm: ix.get(&p("attn_norm.weight"), &[h])?,
                attn,
                ffn_norm: ix.get(&p("ffn_norm.weight"), &[h])?,
                ffn,
            })
        })
    }
}
