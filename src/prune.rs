//! `moela prune`: writes a GGUF file with some routed experts of every MoE layer removed
//! (docs/PRUNING.md). Which experts stay is chosen by [`crate::moe::prune`]; this module only
//! slices the file. For each MoE layer `N` the router rows (`blk.N.ffn_gate_inp.weight`), the
//! noaux_tc bias (`blk.N.exp_probs_b.bias`) and the stacked expert tensors
//! (`blk.N.ffn_{gate,up,down}_exps.weight`, and the `.gG` groups of moela's grouped-expert
//! extension, docs/FORMAT.md §8) keep only the kept experts, in ascending id order; their bytes
//! are copied as they are. `{arch}.expert_count` becomes the kept count and
//! `{arch}.expert_used_count` is clamped to what routing can still choose. A multi-token-prediction
//! block (`{arch}.nextn_predict_layers`) is left out, `block_count` counting the trunk only: its
//! experts are not calibrated. Every other tensor and key is copied unchanged.

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::gguf::{write_gguf_file, GgufFile, GgufTensorSpec, GgufValue};
use crate::tensor::DType;

/// The experts kept in each MoE layer: `(layer, ascending expert ids)`, every MoE layer of the
/// file once, all with the same count.
pub type Kept = [(usize, Vec<usize>)];

/// What [`prune_gguf`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct PruneSummary {
    pub experts_before: usize,
    pub experts_after: usize,
    pub used_before: usize,
    pub used_after: usize,
    pub input_bytes: u64,
    pub file_bytes: u64,
}

/// How routing is configured in a GGUF file's metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoutingShape {
    pub n_experts: usize,
    pub used: usize,
    /// Routing groups (1 = none).
    pub n_group: usize,
    pub topk_group: usize,
    /// Sigmoid gating (noaux_tc): a group is ranked by its two best experts.
    pub sigmoid: bool,
}

impl RoutingShape {
    pub fn of(gguf: &GgufFile) -> Result<RoutingShape> {
        let arch = arch(gguf)?;
        let u = |k: &str, d: u64| -> u64 {
            gguf.get(&format!("{arch}.{k}"))
                .and_then(|v| v.as_u64())
                .unwrap_or(d)
        };
        let n_experts = u("expert_count", 0) as usize;
        if n_experts == 0 {
            return Err(Error::InvalidArg(format!(
                "{}: {arch}.expert_count is absent or 0: not a MoE model",
                gguf.path.display()
            )));
        }
        let n_group = (u("expert_group_count", 1) as usize).max(1);
        Ok(RoutingShape {
            n_experts,
            used: u("expert_used_count", 0) as usize,
            n_group,
            topk_group: (u("expert_group_used_count", 1) as usize).clamp(1, n_group),
            sigmoid: u("expert_gating_func", 1) == 2,
        })
    }

    /// The fewest experts a routing group may keep: 2 for sigmoid (noaux_tc) routing with
    /// groups, whose group score is the sum of the group's two best experts; else 1.
    pub fn min_per_group(&self) -> usize {
        if self.sigmoid && self.n_group > 1 {
            2
        } else {
            1
        }
    }

    /// The top-k a model keeping `keep` experts per layer can use: at most the experts in its
    /// `topk_group` best groups.
    pub fn used_after(&self, keep: usize) -> usize {
        let reachable = if self.n_group > 1 {
            self.topk_group * (keep / self.n_group)
        } else {
            keep
        };
        self.used.min(reachable)
    }
}

fn arch(gguf: &GgufFile) -> Result<String> {
    gguf.require("general.architecture")?
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Error::format(&gguf.path, "general.architecture is not a string"))
}

/// The layers of the file's multi-token-prediction block(s) (`{arch}.nextn_predict_layers`, the
/// last blocks of `block_count`; empty without). A pruned file leaves them out: their experts
/// were not calibrated (the MTP module does not run on the calibration text), so the pruned file
/// has no MTP module (`--spec mtp` is refused on it) and its trunk is the pruned trunk.
fn mtp_layers(gguf: &GgufFile) -> Result<std::ops::Range<usize>> {
    let arch = arch(gguf)?;
    let get = |k: &str| gguf.get(&format!("{arch}.{k}")).and_then(|v| v.as_u64());
    let n = get("block_count").unwrap_or(0) as usize;
    let k = (get("nextn_predict_layers").unwrap_or(0) as usize).min(n);
    Ok(n - k..n)
}

/// The block index of a `blk.N.*` tensor name.
fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// How a tensor is sliced: which of its outermost rows (experts) are kept.
fn slice_of(name: &str, kept: &Kept, groups: &[(usize, Vec<u32>)]) -> Option<Vec<usize>> {
    let rest = name.strip_prefix("blk.")?;
    let (layer, what) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let ids = &kept.iter().find(|(l, _)| *l == layer)?.1;
    match what {
        "ffn_gate_inp.weight" | "exp_probs_b.bias" => return Some(ids.clone()),
        _ => {}
    }
    for proj in ["ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"] {
        let Some(tail) = what.strip_prefix(proj) else {
            continue;
        };
        let group: u32 = match tail {
            ".weight" => 0,
            t => t
                .strip_prefix(".g")?
                .strip_suffix(".weight")?
                .parse()
                .ok()?,
        };
        return Some(match groups.iter().find(|(l, _)| *l == layer) {
            None if group == 0 => ids.clone(),
            None => return None,
            // Positions within the group's stack of the kept members.
            Some((_, g)) => {
                let members: Vec<usize> = (0..g.len()).filter(|&e| g[e] == group).collect();
                members
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| ids.contains(e))
                    .map(|(i, _)| i)
                    .collect()
            }
        });
    }
    None
}

/// The new name of a grouped expert tensor (groups renumbered over the non-empty ones), or
/// None when its group keeps no expert (the tensor is dropped).
fn renamed(name: &str, layer_groups: Option<(&[u32], &[usize])>) -> Option<String> {
    let Some((g, ids)) = layer_groups else {
        return Some(name.to_string());
    };
    let (stem, group) = match name.rsplit_once(".g") {
        Some((stem, tail)) if tail.ends_with(".weight") => {
            let n: u32 = tail.strip_suffix(".weight")?.parse().ok()?;
            (stem.to_string(), n)
        }
        _ => (name.strip_suffix(".weight")?.to_string(), 0),
    };
    let new = new_group_ids(g, ids);
    let ng = new[group as usize]?;
    Some(if ng == 0 {
        format!("{stem}.weight")
    } else {
        format!("{stem}.g{ng}.weight")
    })
}

/// For each old group: its new number (the non-empty groups renumbered in order), or None
/// when none of its experts is kept.
fn new_group_ids(g: &[u32], ids: &[usize]) -> Vec<Option<u32>> {
    let n = g.iter().map(|&x| x as usize + 1).max().unwrap_or(0);
    let mut next = 0;
    (0..n)
        .map(|grp| {
            if ids.iter().any(|&e| g[e] as usize == grp) {
                next += 1;
                Some(next - 1)
            } else {
                None
            }
        })
        .collect()
}

/// Grouped layers of the file: `(layer, group of each expert)` from `moela.blk.N.expert_group`.
fn expert_groups(gguf: &GgufFile) -> Vec<(usize, Vec<u32>)> {
    gguf.metadata
        .iter()
        .filter_map(|(k, v)| {
            let l: usize = k
                .strip_prefix("moela.blk.")?
                .strip_suffix(".expert_group")?
                .parse()
                .ok()?;
            Some((l, v.as_u32_array()?.into_owned()))
        })
        .collect()
}

/// The bytes a pruned file keeping `keep` experts per MoE layer would take, from the input's
/// header size and per-expert tensor sizes (grouped layers: their mean bytes per expert).
pub fn pruned_size(gguf: &GgufFile, keep: usize) -> Result<u64> {
    let shape = RoutingShape::of(gguf)?;
    let align = gguf.alignment.max(1);
    let mut total = gguf.data_offset;
    let mtp = mtp_layers(gguf)?;
    for t in &gguf.tensors {
        if layer_of(&t.name).is_some_and(|l| mtp.contains(&l)) {
            continue;
        }
        let bytes = t.data.len() as u64;
        let sliced = is_expert_tensor(&t.name);
        let b = if sliced {
            // Grouped stacks: scale by the share of all experts (approximate per group).
            bytes * keep as u64 / shape.n_experts as u64
        } else {
            bytes
        };
        total += b.div_ceil(align) * align;
    }
    Ok(total)
}

fn is_expert_tensor(name: &str) -> bool {
    name.starts_with("blk.")
        && (name.ends_with(".ffn_gate_inp.weight")
            || name.ends_with(".exp_probs_b.bias")
            || name.contains(".ffn_gate_exps.")
            || name.contains(".ffn_up_exps.")
            || name.contains(".ffn_down_exps."))
}

/// Writes `input` to `output` with only the `kept` experts of each MoE layer (see the module
/// documentation). `progress` receives one line per MoE layer.
pub fn prune_gguf(
    input: &Path,
    output: &Path,
    kept: &Kept,
    progress: &mut dyn FnMut(&str),
) -> Result<PruneSummary> {
    let invalid = |msg: String| Error::InvalidArg(format!("prune {}: {msg}", input.display()));
    if let (Ok(a), Ok(b)) = (std::fs::canonicalize(input), std::fs::canonicalize(output)) {
        if a == b {
            return Err(invalid("the output would overwrite the input".into()));
        }
    }
    let gguf = GgufFile::open(input)?;
    let arch = arch(&gguf)?;
    let shape = RoutingShape::of(&gguf)?;
    let ne = shape.n_experts;
    let keep = kept.first().map(|(_, k)| k.len()).unwrap_or(0);
    let mtp = mtp_layers(&gguf)?;
    // Every MoE layer (one with a router) of the trunk is listed once, with the same count of
    // valid ids.
    let moe_layers: Vec<usize> = gguf
        .tensors
        .iter()
        .filter_map(|t| {
            t.name
                .strip_prefix("blk.")?
                .strip_suffix(".ffn_gate_inp.weight")?
                .parse()
                .ok()
        })
        .filter(|l| !mtp.contains(l))
        .collect();
    for &l in &moe_layers {
        let Some((_, ids)) = kept.iter().find(|(k, _)| *k == l) else {
            return Err(invalid(format!("no kept experts given for MoE layer {l}")));
        };
        if ids.len() != keep || ids.windows(2).any(|w| w[0] >= w[1]) || ids.iter().any(|&e| e >= ne)
        {
            return Err(invalid(format!(
                "layer {l}: kept experts {ids:?} are not {keep} ascending ids below {ne}"
            )));
        }
        if shape.n_group > 1 {
            let per = ne / shape.n_group;
            for g in 0..shape.n_group {
                let n = ids.iter().filter(|&&e| e / per == g).count();
                if n * shape.n_group != keep || n < shape.min_per_group() {
                    return Err(invalid(format!(
                        "layer {l}: routing group {g} keeps {n} experts; every group must keep \
                         the same number (keep / n_group = {}), at least {}",
                        keep / shape.n_group,
                        shape.min_per_group()
                    )));
                }
            }
        }
    }
    if let Some((l, _)) = kept.iter().find(|(l, _)| !moe_layers.contains(l)) {
        return Err(invalid(format!("layer {l} is not a MoE layer of the file")));
    }
    if keep == 0 {
        return Err(invalid("no MoE layers to prune".into()));
    }
    let groups = expert_groups(&gguf);
    let used_after = shape.used_after(keep);

    let mut meta = gguf.metadata.clone();
    let set = |meta: &mut Vec<(String, GgufValue)>, key: &str, v: GgufValue| match meta
        .iter_mut()
        .find(|(k, _)| k == key)
    {
        Some((_, old)) => *old = v,
        None => meta.push((key.to_string(), v)),
    };
    set(
        &mut meta,
        &format!("{arch}.expert_count"),
        GgufValue::U32(keep as u32),
    );
    set(
        &mut meta,
        &format!("{arch}.expert_used_count"),
        GgufValue::U32(used_after as u32),
    );
    if !mtp.is_empty() {
        progress(&format!(
            "the multi-token-prediction block (layer {}) is left out: its experts were not \
             calibrated (the pruned file has no MTP module)",
            mtp.start
        ));
        set(
            &mut meta,
            &format!("{arch}.block_count"),
            GgufValue::U32(mtp.start as u32),
        );
        meta.retain(|(k, _)| *k != format!("{arch}.nextn_predict_layers"));
    }
    // Grouped layers: the kept experts' groups, renumbered; a layer left with one group is
    // plain again (no key).
    for (l, g) in &groups {
        let key = format!("moela.blk.{l}.expert_group");
        let Some((_, ids)) = kept.iter().find(|(k, _)| k == l) else {
            continue;
        };
        let new = new_group_ids(g, ids);
        let ng: Vec<u32> = ids
            .iter()
            .map(|&e| new[g[e] as usize].unwrap_or(0))
            .collect();
        if ng.iter().all(|&x| x == 0) {
            meta.retain(|(k, _)| *k != key);
        } else {
            let v = GgufValue::Array(crate::format::gguf::GgufArray::U32(ng));
            set(&mut meta, &key, v);
        }
    }

    // The tensors to write: (input index, rows kept or None for a plain copy, spec).
    let mut plan: Vec<(usize, Option<Vec<usize>>, GgufTensorSpec)> = Vec::new();
    for (i, t) in gguf.tensors.iter().enumerate() {
        if layer_of(&t.name).is_some_and(|l| mtp.contains(&l)) {
            continue;
        }
        let layer_groups = t
            .name
            .strip_prefix("blk.")
            .and_then(|r| r.split_once('.'))
            .and_then(|(l, _)| l.parse::<usize>().ok())
            .and_then(|l| {
                let g = &groups.iter().find(|(k, _)| *k == l)?.1;
                let ids = &kept.iter().find(|(k, _)| *k == l)?.1;
                Some((g.as_slice(), ids.as_slice()))
            });
        let rows = slice_of(&t.name, kept, &groups);
        let name =
            if rows.is_some() && !t.name.contains("gate_inp") && !t.name.contains("exp_probs_b") {
                match renamed(&t.name, layer_groups) {
                    Some(n) => n,
                    None => continue, // a group that keeps nothing
                }
            } else {
                t.name.clone()
            };
        let mut dims = t.dims.clone();
        if let Some(r) = &rows {
            if !t.size_known() || dims.is_empty() {
                return Err(invalid(format!(
                    "tensor {}: unknown size, cannot slice",
                    t.name
                )));
            }
            let outer = dims.len() - 1;
            let n_rows = dims[outer] as usize;
            if r.iter().any(|&x| x >= n_rows) {
                return Err(invalid(format!(
                    "tensor {} has {n_rows} experts, fewer than its layer's routing needs",
                    t.name
                )));
            }
            dims[outer] = r.len() as u64;
        }
        plan.push((
            i,
            rows,
            GgufTensorSpec {
                name,
                dims,
                ggml_type: t.ggml_type,
            },
        ));
    }
    let specs: Vec<GgufTensorSpec> = plan.iter().map(|p| p.2.clone()).collect();
    let mut last_layer = None;
    write_gguf_file(output, &meta, &specs, gguf.alignment, |i, w| {
        let (index, rows, spec) = &plan[i];
        let t = &gguf.tensors[*index];
        let data = gguf.tensor_data(t);
        let Some(rows) = rows else {
            return w.write_all(data).map_err(|e| Error::io(output, e));
        };
        let layer: usize = spec.name[4..]
            .split('.')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if last_layer != Some(layer) {
            last_layer = Some(layer);
            progress(&format!("layer {layer}: slicing to {keep} of {ne} experts"));
        }
        let n_rows = *t.dims.last().unwrap_or(&1) as usize;
        let per = data.len() / n_rows.max(1);
        for &r in rows {
            w.write_all(&data[r * per..(r + 1) * per])
                .map_err(|e| Error::io(output, e))?;
        }
        Ok(())
    })?;
    Ok(PruneSummary {
        experts_before: ne,
        experts_after: keep,
        used_before: shape.used,
        used_after,
        input_bytes: std::fs::metadata(input)
            .map_err(|e| Error::io(input, e))?
            .len(),
        file_bytes: std::fs::metadata(output)
            .map_err(|e| Error::io(output, e))?
            .len(),
    })
}

/// How many experts each MoE layer keeps (`--keep` / `--target-size`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Keep {
    /// A share of the experts in (0, 100], rounded to a multiple of the routing groups
    /// ([`crate::moe::prune::keep_for_percent`]).
    Percent(f64),
    /// A count, a multiple of the routing groups.
    Count(usize),
    /// The most experts (a multiple of the routing groups) whose file fits in these bytes.
    TargetSize(u64),
}

impl Keep {
    /// `--keep 50%`, `--keep 8` or `--target-size 4GB` (exactly one of the two).
    pub fn parse(keep: Option<&str>, target_size: Option<&str>) -> Result<Keep> {
        match (keep, target_size) {
            (Some(k), None) => match k.trim().strip_suffix('%') {
                Some(p) => p
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|p| *p > 0.0 && *p <= 100.0)
                    .map(Keep::Percent)
                    .ok_or_else(|| {
                        Error::InvalidArg(format!("--keep {k}: expected a share in (0, 100]%"))
                    }),
                None => k.trim().parse().map(Keep::Count).map_err(|_| {
                    Error::InvalidArg(format!("--keep {k}: expected a count (8) or a share (50%)"))
                }),
            },
            (None, Some(t)) => Ok(Keep::TargetSize(crate::quant_policy::parse_size(t)?)),
            _ => Err(Error::InvalidArg(
                "prune: give exactly one of --keep and --target-size".into(),
            )),
        }
    }

    /// The number of experts per MoE layer for the GGUF file `gguf`, checked against its
    /// routing groups.
    pub fn resolve(self, gguf: &GgufFile) -> Result<usize> {
        use crate::moe::prune::{check_keep, keep_for_percent};
        let shape = RoutingShape::of(gguf)?;
        let (ne, g, min) = (shape.n_experts, shape.n_group, shape.min_per_group());
        let keep = match self {
            Keep::Percent(p) => keep_for_percent(p, ne, g),
            Keep::Count(n) => n,
            Keep::TargetSize(target) => {
                let mut best = None;
                for k in (g * min..=ne).step_by(g) {
                    if pruned_size(gguf, k)? <= target {
                        best = Some(k);
                    }
                }
                best.ok_or_else(|| {
                    Error::InvalidArg(format!(
                        "--target-size {target} bytes: even {} experts per layer take {} bytes",
                        g * min,
                        pruned_size(gguf, g * min).unwrap_or(0)
                    ))
                })?
            }
        };
        check_keep(keep, ne, g, min)?;
        Ok(keep)
    }
}

/// What [`prune_model`] should do.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    pub keep: Keep,
    pub method: crate::moe::prune::Method,
    /// `--type`: a Hugging Face input is converted to this (default Q8_0) before slicing; a
    /// GGUF input is requantized to it after slicing (None: its types stay).
    pub dtype: Option<crate::quant_policy::Base>,
    /// Calibration windows (0: the model's context, at most 4096) and batch.
    pub n_ctx: usize,
    pub batch: usize,
}

/// What [`prune_model`] did.
#[derive(Clone, Debug)]
pub struct PruneReport {
    /// Experts kept per MoE layer, and which.
    pub keep: usize,
    pub kept: Vec<(usize, Vec<usize>)>,
    pub stats: crate::moe::prune::ExpertStats,
    pub summary: PruneSummary,
}

/// `moela prune`: calibrates on the tokens `ids` with the model at `input` (a GGUF file or a
/// Hugging Face directory), chooses the experts to keep and writes `output`. A Hugging Face
/// input is converted to a temporary GGUF next to `output` first (scores still come from the
/// input's own weights); `opts.dtype` on a GGUF input requantizes the pruned file.
pub fn prune_model(
    input: &Path,
    output: &Path,
    ids: &[u32],
    opts: &PruneOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<PruneReport> {
    use crate::convert::{convert_with, ConvertOptions};
    use crate::moe::prune::{calibrate, choose_kept};
    use crate::quant_policy::Base;
    if ids.is_empty() {
        return Err(Error::InvalidArg("prune: no calibration tokens".into()));
    }
    let tmp = |what: &str| {
        let mut name = output.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".{what}.tmp"));
        output.with_file_name(name)
    };
    let convert = |from: &Path, to: &Path, base: Base, progress: &mut dyn FnMut(&str)| {
        let o = ConvertOptions {
            base,
            expert: None,
            profile: None,
        };
        convert_with(from, to, &o, progress).map(|_| ())
    };
    let hf = input.is_dir();
    let tmp_in = hf.then(|| tmp("unpruned"));
    if let Some(t) = &tmp_in {
        progress(&format!(
            "converting {} to {} first",
            input.display(),
            t.display()
        ));
        convert(
            input,
            t,
            opts.dtype.unwrap_or(Base::Uniform(DType::Q8_0)),
            progress,
        )?;
    }
    let src = tmp_in.as_deref().unwrap_or(input);
    let result = (|| {
        let gguf = GgufFile::open(src)?;
        let n_group = RoutingShape::of(&gguf)?.n_group;
        let keep = opts.keep.resolve(&gguf)?;
        drop(gguf);
        let model = std::sync::Arc::new(crate::Model::load(input)?);
        let max = model.config.max_position_embeddings;
        if opts.n_ctx > max {
            return Err(Error::InvalidArg(format!(
                "prune: context {} is longer than the model's trained context ({max})",
                opts.n_ctx
            )));
        }
        let ne = model.config.moe.n_routed_experts;
        progress(&format!(
            "calibrating on {} tokens: keeping {keep} of {ne} experts per MoE layer by {}",
            ids.len(),
            opts.method.name()
        ));
        let stats = calibrate(model, ids, opts.n_ctx, opts.batch)?;
        let kept = choose_kept(&stats, opts.method, keep, n_group);
        for (l, k) in &kept {
            let dropped: Vec<usize> = (0..ne).filter(|e| !k.contains(e)).collect();
            progress(&format!("layer {l}: keep {k:?}, drop {dropped:?}"));
        }
        let post = if hf { None } else { opts.dtype };
        let sliced = if post.is_some() {
            tmp("pruned")
        } else {
            output.to_path_buf()
        };
        let mut summary = prune_gguf(src, &sliced, &kept, progress)?;
        if let Some(base) = post {
            let r = convert(&sliced, output, base, progress);
            let _ = std::fs::remove_file(&sliced);
            r?;
            summary.file_bytes = std::fs::metadata(output)
                .map_err(|e| Error::io(output, e))?
                .len();
        }
        Ok(PruneReport {
            keep,
            kept,
            stats,
            summary,
        })
    })();
    if let Some(t) = &tmp_in {
        let _ = std::fs::remove_file(t);
    }
    result
}
