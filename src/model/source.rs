//! One index over the tensors of a checkpoint, whatever its format: names → typed views over
//! the mapping, with shape checks that name the file and the tensor.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::gguf::GgufFile;
use crate::format::hf_config::Fp8Quant;
use crate::format::safetensors::HfCheckpoint;
use crate::tensor::dtype::ggml_type_name;
use crate::tensor::view::Backing;
use crate::tensor::{DType, TensorView};

/// A tensor as stored: row-major shape (outermost first, PyTorch order), type, bytes.
#[derive(Clone, Debug)]
pub struct RawTensor {
    pub name: String,
    pub shape: Vec<usize>,
    /// The element type, or the stored type's name when moela cannot compute with it.
    pub dtype: std::result::Result<DType, String>,
    pub backing: Backing,
    pub range: Range<usize>,
}

impl RawTensor {
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn n_bytes(&self) -> usize {
        self.range.len()
    }
    pub fn type_name(&self) -> String {
        match &self.dtype {
            Ok(d) => d.name().to_uppercase(),
            Err(s) => s.clone(),
        }
    }
}

/// All tensors of one checkpoint, by name.
pub struct TensorIndex {
    pub path: PathBuf,
    /// In file order (for `inspect`).
    pub tensors: Vec<RawTensor>,
    by_name: HashMap<String, usize>,
    /// Block shape of FP8 weights' `_scale_inv` grids (HF FP8 checkpoints).
    fp8_block: (usize, usize),
    /// GGUF layers whose routed experts are split into groups by type: layer → group of each
    /// expert (`moela.blk.N.expert_group`, docs/FORMAT.md §8). Malformed values are kept as
    /// None and reported by the loader.
    pub expert_groups: HashMap<usize, Option<Vec<u32>>>,
}

impl TensorIndex {
    fn new(path: PathBuf, tensors: Vec<RawTensor>) -> Self {
        let by_name = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        TensorIndex {
            path,
            tensors,
            by_name,
            fp8_block: (128, 128),
            expert_groups: HashMap::new(),
        }
    }

    pub fn from_gguf(file: &GgufFile) -> Self {
        let backing = Backing::Map(file.map.clone());
        let tensors = file
            .tensors
            .iter()
            .map(|t| RawTensor {
                name: t.name.clone(),
                // GGUF lists ne[0] (the innermost dimension) first.
                shape: t.dims.iter().rev().map(|&d| d as usize).collect(),
                dtype: DType::from_ggml_type(t.ggml_type)
                    .ok_or_else(|| ggml_type_name(t.ggml_type)),
                backing: backing.clone(),
                range: t.data.clone(),
            })
            .collect();
        let mut ix = TensorIndex::new(file.path.clone(), tensors);
        for (k, v) in &file.metadata {
            let layer = k
                .strip_prefix("moela.blk.")
                .and_then(|r| r.strip_suffix(".expert_group"))
                .and_then(|l| l.parse::<usize>().ok());
            if let Some(l) = layer {
                let groups = match v {
                    crate::format::gguf::GgufValue::Array(a) => a.as_u32s().map(|c| c.into_owned()),
                    _ => None,
                };
                ix.expert_groups.insert(l, groups);
            }
        }
        ix
    }

    /// An HF checkpoint's tensors; `fp8` is its `quantization_config` (block scale shape).
    pub fn from_hf(ckpt: &HfCheckpoint, fp8: Option<Fp8Quant>) -> Self {
        let mut tensors = Vec::new();
        for f in &ckpt.files {
            let backing = Backing::Map(f.map.clone());
            for t in &f.tensors {
                let dtype = match t.dtype.as_str() {
                    "F32" => Ok(DType::F32),
                    "F16" => Ok(DType::F16),
                    "BF16" => Ok(DType::BF16),
                    "F8_E4M3" => Ok(DType::F8E4M3),
                    other => Err(other.to_string()),
                };
                tensors.push(RawTensor {
                    name: t.name.clone(),
                    shape: t.shape.clone(),
                    dtype,
                    backing: backing.clone(),
                    range: t.data.clone(),
                });
            }
        }
        let mut ix = TensorIndex::new(ckpt.dir.clone(), tensors);
        if let Some(q) = fp8 {
            ix.fp8_block = q.block;
        }
        ix
    }

    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    pub fn raw(&self, name: &str) -> Option<&RawTensor> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// Tensor `name`, which must have exactly `shape` (row-major), as a matrix of
    /// `product(shape[..n-1])` rows × `shape[n-1]` columns.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<TensorView> {
        let t = self.raw(name).ok_or_else(|| Error::MissingTensor {
            path: self.path.clone(),
            name: name.to_string(),
        })?;
        // A 1-D tensor may be stored as [1, n] by some writers; compare without leading 1s.
        let strip = |s: &[usize]| -> Vec<usize> {
            let first = s
                .iter()
                .position(|&d| d != 1)
                .unwrap_or(s.len().saturating_sub(1));
            s[first..].to_vec()
        };
        if strip(&t.shape) != strip(shape) {
            return Err(Error::Shape {
                path: self.path.clone(),
                name: name.to_string(),
                expected: shape.to_vec(),
                got: t.shape.clone(),
            });
        }
        let dtype = t.dtype.clone().map_err(|ty| Error::UnsupportedType {
            path: self.path.clone(),
            tensor: name.to_string(),
            dtype: ty,
        })?;
        let cols = *shape.last().unwrap_or(&1);
        let rows = shape[..shape.len().saturating_sub(1)].iter().product();
        let view = TensorView::new(dtype, rows, cols, t.backing.clone(), t.range.clone())
            .ok_or_else(|| {
            Error::format(
                &self.path,
                format!(
                    "tensor '{name}': {} bytes do not hold a {:?} {} tensor (rows must be whole blocks)",
                    t.range.len(),
                    shape,
                    dtype.name()
                ),
            )
            })?;
        if dtype == DType::F8E4M3 {
            return self.attach_fp8_scales(name, view);
        }
        Ok(view)
    }

    /// DeepSeek's FP8 layout: weight `name` has an F32 companion `<name>_scale_inv` with one
    /// scale per `fp8_block` block (edge blocks may be partial).
    fn attach_fp8_scales(&self, name: &str, view: TensorView) -> Result<TensorView> {
        let sname = format!("{name}_scale_inv");
        let (br, bc) = self.fp8_block;
        let grid = [view.rows.div_ceil(br), view.cols.div_ceil(bc)];
        if !self.contains(&sname) {
            return Err(Error::format(
                &self.path,
                format!("tensor '{name}' is F8_E4M3 but its block scales '{sname}' are missing"),
            ));
        }
        let scales = self.get(&sname, &grid)?;
        if scales.dtype != DType::F32 {
            return Err(Error::format(
                &self.path,
                format!("tensor '{sname}' must be F32, is {}", scales.dtype.name()),
            ));
        }
        view.with_block_scales(&scales, (br, bc)).ok_or_else(|| {
            Error::format(
                &self.path,
                format!("tensor '{sname}' does not fit '{name}'"),
            )
        })
    }

    /// Like [`get`](Self::get), but a missing tensor is `Ok(None)`.
    pub fn get_opt(&self, name: &str, shape: &[usize]) -> Result<Option<TensorView>> {
        if self.contains(name) {
            self.get(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<TensorIndex>();
    f::<Arc<TensorIndex>>();
}
