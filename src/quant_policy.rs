//! Which type each tensor gets when `moela convert` writes a GGUF: one type for everything,
//! a llama.cpp-style mix, a separate type for routed experts, or per-expert types chosen from
//! an expert-use profile within a target file size.
//!
//! **Mixes** (`--quant q4_k_m` …; table [`MIXES`]). Our version of llama.cpp's
//! `llama_tensor_get_type` rules, restated for DeepSeek's MLA tensor names (llama.cpp's
//! `attn_v`/`attn_k` rules never match them):
//! - `output.weight` gets the mix's `output` type (llama.cpp: Q6_K for the K mixes);
//! - `ffn_down`, `ffn_down_shexp` and `ffn_down_exps` get the `high` type in the layers where
//!   [`use_more_bits`] holds (the first and last eighth of the layers and every third layer
//!   between: llama.cpp's Q4_K_M rule for `ffn_down`);
//! - `attn_v_b` (MLA's value up-projection, the counterpart of `attn_v`) gets `high` in the same
//!   layers, and `attn_kv_a_mqa` / `attn_k_b` (the latent and key projections every head reads;
//!   together about 1% of a DeepSeek-V3 layer) get `high` in every layer — our addition;
//! - everything else (including `token_embd`) gets `low`.
//!
//! A mix is offered only when all its types exist in [`DType`] (looked up by name), so `q4_k_m`
//! and `q5_k_m` appear by themselves once Q4_K/Q5_K/Q6_K are added as DTypes named `q4_k`,
//! `q5_k`, `q6_k`; `q4_0_m` (Q4_0 with Q8_0 for the sensitive tensors) works with today's types.
//!
//! The low-bit mixes follow the same rules with llama.cpp's types for them: `q3_k_m` (llama.cpp
//! Q3_K_M: Q3_K bulk, Q4_K for `ffn_down`/`attn_v`, Q6_K output) and `q2_k_m`, llama.cpp's
//! "Q2_K" file type (Q2_K bulk, Q3_K for `ffn_down`/`attn_v`, Q6_K output). It is named
//! `q2_k_m` because `q2_k` names the uniform type (`--type q2_k` stores every matrix as Q2_K,
//! like `--type q4_k` is llama.cpp's Q4_K_S). Simplifications against llama.cpp, stated: its
//! Q2_K gives every `ffn_down` Q3_K and its Q3_K_M every `ffn_down` Q4_K (Q5_K in the first
//! sixteenth of the layers), while ours use `high` only in the [`use_more_bits`] layers, as for
//! the 4-bit mixes; its MoE special cases (`attn_output` Q5_K with 8+ experts) are not copied.
//!
//! `iq4_xs_m` is llama.cpp's IQ4_XS file type without an importance matrix: IQ4_XS bulk, Q5_K
//! for the sensitive tensors, Q6_K output.
//!
//! Whatever the choice, 1-D tensors and the router stay F32 (as llama.cpp keeps them) and a
//! tensor whose rows are not whole blocks of the chosen type gets [`fit`]'s fallback.

use std::collections::{BinaryHeap, HashMap};

use crate::error::{Error, Result};
use crate::moe::profile::ExpertProfile;
use crate::tensor::DType;

/// A llama.cpp-style mix: type names for the bulk, the sensitive tensors and the output head.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    pub name: &'static str,
    pub low: &'static str,
    pub high: &'static str,
    pub output: &'static str,
    /// llama.cpp's `llama_ftype` for `general.file_type`.
    pub file_type: u32,
}

/// The mixes moela knows. The K variants are the single place where K-quant types plug in.
pub const MIXES: [Mix; 6] = [
    Mix {
        name: "q4_k_m",
        low: "q4_k",
        high: "q6_k",
        output: "q6_k",
        file_type: 15,
    },
    Mix {
        name: "q5_k_m",
        low: "q5_k",
        high: "q6_k",
        output: "q6_k",
        file_type: 17,
    },
    Mix {
        name: "q3_k_m",
        low: "q3_k",
        high: "q4_k",
        output: "q6_k",
        file_type: 12, // LLAMA_FTYPE_MOSTLY_Q3_K_M
    },
    Mix {
        name: "q2_k_m",
        low: "q2_k",
        high: "q3_k",
        output: "q6_k",
        file_type: 10, // LLAMA_FTYPE_MOSTLY_Q2_K
    },
    Mix {
        // llama.cpp's IQ4_XS without an importance matrix: IQ4_XS bulk (IQ4_NL where rows are
        // not whole super-blocks), Q5_K for the sensitive tensors (llama.cpp: ffn_down of the
        // first eighth of the layers, attn_v), Q6_K output. Named `iq4_xs_m` because `iq4_xs`
        // names the uniform type (as `q2_k_m` / `q2_k`).
        name: "iq4_xs_m",
        low: "iq4_xs",
        high: "q5_k",
        output: "q6_k",
        file_type: 30, // LLAMA_FTYPE_MOSTLY_IQ4_XS
    },
    Mix {
        name: "q4_0_m",
        low: "q4_0",
        high: "q8_0",
        output: "q8_0",
        // llama.cpp has no such ftype: "mostly Q4_0".
        file_type: 2,
    },
];

/// The mixes whose types all exist in this build.
pub fn available_mixes() -> Vec<&'static Mix> {
    MIXES
        .iter()
        .filter(|m| {
            [m.low, m.high, m.output]
                .iter()
                .all(|t| DType::from_name(t).is_some())
        })
        .collect()
}

/// The base choice of `--quant`: one type for all, or a mix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Base {
    Uniform(DType),
    Mix {
        name: &'static str,
        low: DType,
        high: DType,
        output: DType,
        file_type: u32,
    },
}

impl Base {
    /// Parses a `--quant`/`--type` value: a GGUF type name or an available mix.
    pub fn parse(s: &str) -> Result<Base> {
        let s = s.to_ascii_lowercase();
        if let Some(d) = DType::from_name(&s) {
            return Ok(Base::Uniform(d));
        }
        let ty = |n: &str| DType::from_name(n);
        if let Some(m) = MIXES.iter().find(|m| m.name == s) {
            if let (Some(low), Some(high), Some(output)) = (ty(m.low), ty(m.high), ty(m.output)) {
                return Ok(Base::Mix {
                    name: m.name,
                    low,
                    high,
                    output,
                    file_type: m.file_type,
                });
            }
            return Err(Error::InvalidArg(format!(
                "--quant {s}: this build has no {}/{} type",
                m.low, m.high
            )));
        }
        let types: Vec<&str> = DType::ALL.iter().map(|d| d.name()).collect();
        let mixes: Vec<&str> = available_mixes().iter().map(|m| m.name).collect();
        Err(Error::InvalidArg(format!(
            "--quant {s}: expected a type ({}) or a mix ({})",
            types.join(", "),
            mixes.join(", ")
        )))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Base::Uniform(d) => d.name(),
            Base::Mix { name, .. } => name,
        }
    }
}

/// llama.cpp's layer rule for "more bits": the first and last eighth of the layers, and every
/// third layer in between.
pub fn use_more_bits(layer: usize, n_layers: usize) -> bool {
    let (i, n) = (layer as i64, n_layers as i64);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// Bits per weight of a type.
pub fn bits_per_weight(d: DType) -> f64 {
    8.0 * d.block_bytes() as f64 / d.block_size() as f64
}

/// The type actually stored for rows of `cols` elements when `want` is asked for: `want` if
/// its blocks tile the row, else llama.cpp's fallback (`tensor_type_fallback` in
/// llama-quant.cpp): Q2_K/Q3_K → Q4_0, Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, IQ4_XS →
/// IQ4_NL; F16 when the fallback does not tile the row either (or for a 32-element type).
pub fn fit(want: DType, cols: usize) -> DType {
    if cols % want.block_size() == 0 {
        return want;
    }
    let fallback = match want {
        DType::Q2_K | DType::Q3_K => DType::Q4_0,
        DType::Q4_K => DType::Q5_0,
        DType::Q5_K => DType::Q5_1,
        DType::Q6_K => DType::Q8_0,
        DType::IQ4_XS => DType::IQ4_NL,
        _ => DType::F16,
    };
    if cols % fallback.block_size() == 0 {
        fallback
    } else {
        DType::F16
    }
}

/// What a GGUF tensor is, for the policy and the summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    TokenEmbd,
    Output,
    /// Norms, biases: 1-D.
    Vector,
    Router,
    AttnQ,
    AttnKvA,
    AttnKB,
    AttnVB,
    AttnOutput,
    FfnGateUp,
    FfnDown,
    ShexpGateUp,
    ShexpDown,
    ExpsGateUp,
    ExpsDown,
}

impl Class {
    /// The class and layer of a GGUF tensor name (as [`crate::convert`] writes them).
    pub fn of(name: &str) -> (Class, Option<usize>) {
        let layer = name
            .strip_prefix("blk.")
            .and_then(|r| r.split('.').next())
            .and_then(|l| l.parse().ok());
        let has = |s: &str| name.contains(s);
        let c = if name == "token_embd.weight" || has(".nextn.embed_tokens") {
            Class::TokenEmbd
        } else if name == "output.weight" || has(".nextn.shared_head_head") {
            Class::Output
        } else if has("_norm.")
            || has(".nextn.enorm")
            || has(".nextn.hnorm")
            || name.ends_with(".bias")
        {
            Class::Vector
        } else if has("ffn_gate_inp") {
            Class::Router
        } else if has("attn_q") {
            Class::AttnQ
        } else if has("attn_kv_a_mqa") {
            Class::AttnKvA
        } else if has("attn_k_b") {
            Class::AttnKB
        } else if has("attn_v_b") {
            Class::AttnVB
        } else if has("attn_output") {
            Class::AttnOutput
        } else if has("ffn_down_exps") {
            Class::ExpsDown
        } else if has("_exps") {
            Class::ExpsGateUp
        } else if has("ffn_down_shexp") {
            Class::ShexpDown
        } else if has("_shexp") {
            Class::ShexpGateUp
        } else if has("ffn_down") {
            Class::FfnDown
        } else {
            Class::FfnGateUp
        };
        (c, layer)
    }

    pub fn label(self) -> &'static str {
        match self {
            Class::TokenEmbd => "token_embd",
            Class::Output => "output",
            Class::Vector => "norms/biases",
            Class::Router => "router",
            Class::AttnQ => "attn_q*",
            Class::AttnKvA => "attn_kv_a_mqa",
            Class::AttnKB => "attn_k_b",
            Class::AttnVB => "attn_v_b",
            Class::AttnOutput => "attn_output",
            Class::FfnGateUp => "ffn_gate/up (dense)",
            Class::FfnDown => "ffn_down (dense)",
            Class::ShexpGateUp => "ffn_gate/up_shexp",
            Class::ShexpDown => "ffn_down_shexp",
            Class::ExpsGateUp => "ffn_gate/up_exps",
            Class::ExpsDown => "ffn_down_exps",
        }
    }

    pub fn is_routed_expert(self) -> bool {
        matches!(self, Class::ExpsGateUp | Class::ExpsDown)
    }
}

/// Per-expert types of the MoE layers (from a profile and a size budget).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExpertPlan {
    /// layer → the type of each routed expert.
    pub layers: HashMap<usize, Vec<DType>>,
}

/// The whole choice for one conversion.
#[derive(Clone, Debug)]
pub struct Policy {
    pub base: Base,
    /// `--expert-quant`: the type of routed experts (overrides the base for them).
    pub expert: Option<DType>,
    /// Per-expert types (overrides both for routed experts).
    pub plan: Option<ExpertPlan>,
    pub n_layers: usize,
}

impl Policy {
    pub fn new(base: Base, n_layers: usize) -> Policy {
        Policy {
            base,
            expert: None,
            plan: None,
            n_layers,
        }
    }

    /// The type asked for tensor `name` of row-major `shape`, before [`fit`]. For routed
    /// expert tensors of a planned layer use [`Policy::expert_type`].
    pub fn wanted(&self, name: &str, shape: &[usize]) -> DType {
        let (class, layer) = Class::of(name);
        if shape.len() == 1 || class == Class::Vector || class == Class::Router {
            return DType::F32;
        }
        if class.is_routed_expert() {
            if let Some(t) = self.expert {
                return t;
            }
        }
        match self.base {
            Base::Uniform(d) => d,
            Base::Mix {
                low, high, output, ..
            } => {
                let more = layer.is_some_and(|l| use_more_bits(l, self.n_layers));
                match class {
                    Class::Output => output,
                    Class::FfnDown | Class::ShexpDown | Class::ExpsDown | Class::AttnVB if more => {
                        high
                    }
                    Class::AttnKvA | Class::AttnKB => high,
                    _ => low,
                }
            }
        }
    }

    /// The stored type of tensor `name` (`wanted`, then `fit` to its rows).
    pub fn tensor_type(&self, name: &str, shape: &[usize]) -> DType {
        let want = self.wanted(name, shape);
        if want == DType::F32 {
            return want;
        }
        fit(want, *shape.last().unwrap_or(&1))
    }

    /// The planned type of routed expert `expert` of `layer`, if a plan covers it.
    pub fn expert_type(&self, layer: usize, expert: usize) -> Option<DType> {
        self.plan.as_ref()?.layers.get(&layer)?.get(expert).copied()
    }
}

/// The types the size planner moves experts between: every GGUF quant type with at least the
/// floor's bits, cheapest first (one per bit width: the later-listed type wins a tie, so a
/// K-quant replaces the legacy type of the same size once it exists).
pub fn ladder(floor: DType) -> Vec<DType> {
    let mut by_bits: Vec<DType> = Vec::new();
    for d in DType::ALL {
        // The row fallbacks (Q4_1, Q5_0, Q5_1) and the IQ4 codebooks are not rungs: the
        // K-quant of the same size is the better choice for whole super-blocks.
        let rung = !matches!(
            d,
            DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::IQ4_NL | DType::IQ4_XS
        );
        if !rung || !d.is_quantized() || bits_per_weight(d) < bits_per_weight(floor) {
            continue;
        }
        if let Some(same) = by_bits
            .iter_mut()
            .find(|x| bits_per_weight(**x) == bits_per_weight(d))
        {
            *same = d;
        } else {
            by_bits.push(d);
        }
    }
    by_bits.sort_by(|a, b| bits_per_weight(*a).total_cmp(&bits_per_weight(*b)));
    by_bits
}

/// Candidate upgrade in the greedy planner (max-heap by usage per byte).
#[derive(PartialEq)]
struct Upgrade {
    gain: f64,
    count: u64,
    layer: usize,
    expert: usize,
    level: usize,
    cost: u64,
}
impl Eq for Upgrade {}
impl PartialOrd for Upgrade {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Upgrade {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // Higher gain first; then hotter; then lower layer/expert (deterministic).
        self.gain
            .total_cmp(&o.gain)
            .then(self.count.cmp(&o.count))
            .then(o.layer.cmp(&self.layer))
            .then(o.expert.cmp(&self.expert))
    }
}

/// Chooses a type per routed expert so that the file fits in `target` bytes: every expert
/// starts at `ladder[0]`; then, greedily, the upgrade (one ladder step of one expert) with the
/// most profile uses per extra byte is applied while the total stays within the target (cold
/// experts — zero uses — are upgraded last, only with room to spare). `fixed` is the size of
/// everything but the routed experts; `expert_bytes(layer, type)` the bytes of one expert
/// (gate + up + down) of `layer` at that type. Errors when even the cheapest choice does not fit.
pub fn plan_experts(
    profile: &ExpertProfile,
    moe_layers: &[usize],
    n_experts: usize,
    ladder: &[DType],
    fixed: u64,
    target: u64,
    expert_bytes: &dyn Fn(usize, DType) -> u64,
) -> Result<ExpertPlan> {
    let Some(&lowest) = ladder.first() else {
        return Err(Error::InvalidArg("no expert types to choose from".into()));
    };
    if profile.n_routed_experts != n_experts {
        return Err(Error::InvalidArg(format!(
            "expert profile has {} experts per layer, the model {n_experts}",
            profile.n_routed_experts
        )));
    }
    let mut total = fixed;
    for &l in moe_layers {
        if profile.counts(l).is_none() {
            return Err(Error::InvalidArg(format!(
                "expert profile has no counts for MoE layer {l}"
            )));
        }
        total += n_experts as u64 * expert_bytes(l, lowest);
    }
    if total > target {
        return Err(Error::InvalidArg(format!(
            "--target-size {target} bytes is too small: the smallest choice (all experts {}) \
             needs {total} bytes",
            lowest.name()
        )));
    }
    let mut level: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut heap = BinaryHeap::new();
    let push = |heap: &mut BinaryHeap<Upgrade>, l: usize, e: usize, lv: usize, count: u64| {
        if lv + 1 < ladder.len() {
            let cost = expert_bytes(l, ladder[lv + 1]).saturating_sub(expert_bytes(l, ladder[lv]));
            heap.push(Upgrade {
                gain: count as f64 / cost.max(1) as f64,
                count,
                layer: l,
                expert: e,
                level: lv,
                cost,
            });
        }
    };
    for &l in moe_layers {
        level.insert(l, vec![0; n_experts]);
        let counts = profile.counts(l).unwrap_or(&[]);
        for e in 0..n_experts {
            push(&mut heap, l, e, 0, counts.get(e).copied().unwrap_or(0));
        }
    }
    while let Some(u) = heap.pop() {
        if total + u.cost > target {
            continue; // does not fit; a cheaper step elsewhere still might
        }
        total += u.cost;
        if let Some(v) = level.get_mut(&u.layer) {
            v[u.expert] = u.level + 1;
        }
        push(&mut heap, u.layer, u.expert, u.level + 1, u.count);
    }
    Ok(ExpertPlan {
        layers: level
            .into_iter()
            .map(|(l, v)| (l, v.into_iter().map(|i| ladder[i]).collect()))
            .collect(),
    })
}

/// Parses a size like `6GB`, `512MB`, `1.5GiB`, `123456` (bytes). Decimal units are powers of
/// 1000, binary ones (`KiB`, `MiB`, `GiB`) powers of 1024.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| Error::InvalidArg(format!("size {s:?}: expected e.g. 6GB or 500MiB")))?;
    let mul: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(Error::InvalidArg(format!(
                "size {s:?}: unknown unit {unit:?}"
            )))
        }
    };
    Ok((n * mul) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix() -> Policy {
        Policy::new(Base::parse("q4_0_m").unwrap(), 16)
    }

    #[test]
    fn parse_types_and_mixes() {
        assert_eq!(Base::parse("Q8_0").unwrap(), Base::Uniform(DType::Q8_0));
        assert!(matches!(
            Base::parse("q4_0_m").unwrap(),
            Base::Mix {
                low: DType::Q4_0,
                ..
            }
        ));
        let e = Base::parse("q3_x").unwrap_err().to_string();
        assert!(e.contains("q4_0_m") && e.contains("q8_0"), "{e}");
        // The K mixes are offered exactly when their types exist.
        let k = DType::from_name("q4_k").is_some() && DType::from_name("q6_k").is_some();
        assert_eq!(Base::parse("q4_k_m").is_ok(), k);
        assert_eq!(available_mixes().iter().any(|m| m.name == "q4_k_m"), k);
        // `q2_k` is the uniform type; the llama.cpp "Q2_K" mix is `q2_k_m`.
        assert_eq!(Base::parse("q2_k").unwrap(), Base::Uniform(DType::Q2_K));
        assert_eq!(Base::parse("Q3_K").unwrap(), Base::Uniform(DType::Q3_K));
        for t in [
            DType::Q4_1,
            DType::Q5_0,
            DType::Q5_1,
            DType::IQ4_NL,
            DType::IQ4_XS,
        ] {
            assert_eq!(Base::parse(t.name()).unwrap(), Base::Uniform(t));
        }
        for (name, low, high, ft) in [
            ("q3_k_m", DType::Q3_K, DType::Q4_K, 12),
            ("q2_k_m", DType::Q2_K, DType::Q3_K, 10),
            ("iq4_xs_m", DType::IQ4_XS, DType::Q5_K, 30),
        ] {
            assert_eq!(
                Base::parse(name).unwrap(),
                Base::Mix {
                    name,
                    low,
                    high,
                    output: DType::Q6_K,
                    file_type: ft
                }
            );
        }
    }

    /// The low-bit mixes on DeepSeek's tensor names (16 layers; more-bits layers 0, 1, 4, 7,
    /// 10, 13, 14, 15), 256-wide rows, and 2-/3-bit rows that are not whole super-blocks fall
    /// back to the smallest 32-element type with at least their bits (Q4_0).
    #[test]
    fn low_bit_mixes_assign_types_by_tensor() {
        let p = Policy::new(Base::parse("q2_k_m").unwrap(), 16);
        let t = |n: &str| p.tensor_type(n, &[64, 256]);
        assert_eq!(t("output.weight"), DType::Q6_K);
        assert_eq!(t("token_embd.weight"), DType::Q2_K);
        assert_eq!(t("blk.0.ffn_down_exps.weight"), DType::Q3_K);
        assert_eq!(t("blk.2.ffn_down_exps.weight"), DType::Q2_K);
        assert_eq!(t("blk.7.attn_v_b.weight"), DType::Q3_K);
        assert_eq!(t("blk.8.attn_kv_a_mqa.weight"), DType::Q3_K);
        assert_eq!(t("blk.8.attn_k_b.weight"), DType::Q3_K);
        assert_eq!(t("blk.8.attn_q_b.weight"), DType::Q2_K);
        assert_eq!(t("blk.8.ffn_up_exps.weight"), DType::Q2_K);
        assert_eq!(t("blk.8.ffn_gate_inp.weight"), DType::F32);
        assert_eq!(
            p.tensor_type("blk.8.ffn_up_exps.weight", &[64, 96]),
            DType::Q4_0
        );
        let p = Policy::new(Base::parse("q3_k_m").unwrap(), 16);
        let t = |n: &str| p.tensor_type(n, &[64, 256]);
        assert_eq!(t("output.weight"), DType::Q6_K);
        assert_eq!(t("blk.13.ffn_down_shexp.weight"), DType::Q4_K);
        assert_eq!(t("blk.12.ffn_down_shexp.weight"), DType::Q3_K);
        assert_eq!(t("blk.3.attn_k_b.weight"), DType::Q4_K);
        assert_eq!(t("blk.3.attn_output.weight"), DType::Q3_K);
        assert_eq!(
            p.tensor_type("blk.3.attn_output.weight", &[64, 96]),
            DType::Q4_0
        );
    }

    #[test]
    fn more_bits_layers() {
        // 16 layers: 0,1 and 14,15, and (i-2) % 3 == 2 → 4, 7, 10, 13.
        let v: Vec<usize> = (0..16).filter(|&i| use_more_bits(i, 16)).collect();
        assert_eq!(v, vec![0, 1, 4, 7, 10, 13, 14, 15]);
    }

    #[test]
    fn mix_assigns_types_by_tensor() {
        let p = mix();
        let t = |n: &str| p.tensor_type(n, &[64, 256]);
        assert_eq!(t("output.weight"), DType::Q8_0);
        assert_eq!(t("token_embd.weight"), DType::Q4_0);
        assert_eq!(t("blk.0.ffn_down_exps.weight"), DType::Q8_0);
        assert_eq!(t("blk.2.ffn_down_exps.weight"), DType::Q4_0);
        assert_eq!(t("blk.4.ffn_down_shexp.weight"), DType::Q8_0);
        assert_eq!(t("blk.5.ffn_down.weight"), DType::Q4_0);
        assert_eq!(t("blk.7.attn_v_b.weight"), DType::Q8_0);
        assert_eq!(t("blk.8.attn_v_b.weight"), DType::Q4_0);
        assert_eq!(t("blk.8.attn_kv_a_mqa.weight"), DType::Q8_0);
        assert_eq!(t("blk.8.attn_k_b.weight"), DType::Q8_0);
        assert_eq!(t("blk.8.attn_q_b.weight"), DType::Q4_0);
        assert_eq!(t("blk.8.ffn_gate_exps.weight"), DType::Q4_0);
        assert_eq!(t("blk.8.ffn_gate_inp.weight"), DType::F32);
        assert_eq!(p.tensor_type("blk.8.attn_norm.weight", &[256]), DType::F32);
        // Rows that are not whole blocks fall back.
        assert_eq!(
            p.tensor_type("blk.8.attn_q_b.weight", &[64, 48]),
            DType::F16
        );
        assert_eq!(
            p.tensor_type("blk.8.attn_q_b.weight", &[64, 16]),
            DType::F16
        );
    }

    #[test]
    fn expert_quant_overrides_experts_only() {
        let mut p = Policy::new(Base::Uniform(DType::Q8_0), 4);
        p.expert = Some(DType::Q4_0);
        assert_eq!(
            p.tensor_type("blk.1.ffn_up_exps.weight", &[8, 64, 64]),
            DType::Q4_0
        );
        assert_eq!(
            p.tensor_type("blk.1.ffn_down_exps.weight", &[8, 64, 64]),
            DType::Q4_0
        );
        assert_eq!(
            p.tensor_type("blk.1.ffn_up_shexp.weight", &[64, 64]),
            DType::Q8_0
        );
        assert_eq!(
            p.tensor_type("blk.1.attn_output.weight", &[64, 64]),
            DType::Q8_0
        );
    }

    #[test]
    fn fit_falls_back_to_tiling_types() {
        assert_eq!(fit(DType::Q4_0, 64), DType::Q4_0);
        assert_eq!(fit(DType::Q4_0, 48), DType::F16);
        assert_eq!(fit(DType::F16, 3), DType::F16);
        // llama.cpp's fallbacks for rows that are not whole 256-element super-blocks
        // (V2-Lite's 1408-wide expert down projections, attn_k_b rows of 128).
        assert_eq!(fit(DType::Q4_K, 1408), DType::Q5_0);
        assert_eq!(fit(DType::Q5_K, 1408), DType::Q5_1);
        assert_eq!(fit(DType::Q6_K, 1408), DType::Q8_0);
        assert_eq!(fit(DType::Q3_K, 1408), DType::Q4_0);
        assert_eq!(fit(DType::Q2_K, 128), DType::Q4_0);
        assert_eq!(fit(DType::IQ4_XS, 1408), DType::IQ4_NL);
        assert_eq!(fit(DType::IQ4_XS, 512), DType::IQ4_XS);
        assert_eq!(fit(DType::Q4_K, 48), DType::F16);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("6GB").unwrap(), 6_000_000_000);
        assert_eq!(parse_size("1.5 MiB").unwrap(), 1_572_864);
        assert_eq!(parse_size("1234").unwrap(), 1234);
        assert!(parse_size("6 parsecs").is_err());
        assert!(parse_size("GB").is_err());
    }

    /// 2 MoE layers × 4 experts; an expert costs 100 bytes at Q4_0 and 180 at Q8_0 (ratios as
    /// the real types), fixed part 1000 bytes.
    fn toy_plan(target: u64) -> Result<ExpertPlan> {
        let mut prof = ExpertProfile::new("toy", 3, 4, &[1, 2]);
        for (l, e, n) in [(1, 2, 50), (1, 0, 10), (2, 3, 40), (2, 1, 5)] {
            for _ in 0..n {
                prof.record(l, e);
            }
        }
        let bytes = |_: usize, d: DType| if d == DType::Q4_0 { 100 } else { 180 };
        plan_experts(
            &prof,
            &[1, 2],
            4,
            &[DType::Q4_0, DType::Q8_0],
            1000,
            target,
            &bytes,
        )
    }

    #[test]
    fn planner_respects_target_and_prefers_hot_experts() {
        use DType::{Q4_0 as L, Q8_0 as H};
        // With the K-quants, Q4_K takes Q4_0's place (same 4.5 bits per weight).
        assert_eq!(
            ladder(DType::Q4_0),
            vec![DType::Q4_K, DType::Q5_K, DType::Q6_K, H]
        );
        assert_eq!(ladder(DType::Q6_K), vec![DType::Q6_K, H]);
        // Minimum: 1000 + 8 × 100 = 1800.
        assert!(toy_plan(1799).is_err());
        let p = toy_plan(1800).unwrap();
        assert_eq!(p.layers[&1], vec![L; 4]);
        // Room for two upgrades (80 each): the two hottest, (1,2) and (2,3).
        let p = toy_plan(1800 + 160 + 79).unwrap();
        assert_eq!(p.layers[&1], vec![L, L, H, L]);
        assert_eq!(p.layers[&2], vec![L, L, L, H]);
        // Three: then (1,0) with 10 uses beats (2,1) with 5.
        let p = toy_plan(1800 + 240).unwrap();
        assert_eq!(p.layers[&1], vec![H, L, H, L]);
        assert_eq!(p.layers[&2], vec![L, L, L, H]);
        // Everything fits: all high, cold experts included.
        let p = toy_plan(10_000).unwrap();
        assert_eq!(p.layers[&2], vec![H; 4]);
        // Wrong profile shapes are errors.
        let prof = ExpertProfile::new("toy", 3, 5, &[1, 2]);
        assert!(plan_experts(&prof, &[1, 2], 4, &[L, H], 0, 1 << 20, &|_, _| 1).is_err());
        let prof = ExpertProfile::new("toy", 3, 4, &[1]);
        assert!(plan_experts(&prof, &[1, 2], 4, &[L, H], 0, 1 << 20, &|_, _| 1).is_err());
    }
}
