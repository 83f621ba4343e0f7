//! `moela convert IN.gguf OUT.gguf`: requantizes a GGUF file by the same policy as the Hugging
//! Face path ([`crate::quant_policy`]). Tensors keep their names, shapes and order; a tensor whose
//! type does not change is copied byte for byte, any other is dequantized to f32 a chunk of rows
//! at a time (rows in parallel) and quantized to its new type. All metadata (tokenizer included)
//! is carried over, with `general.file_type` set for the new type.
//!
//! Memory stays bounded: the input is mapped, and at most [`CHUNK_F32_BYTES`] worth of rows is
//! held converted at once (a V2-Lite expert tensor is 738 MB as f32).

use std::io::Write;
use std::path::Path;

use rayon::prelude::*;

use crate::convert::{file_type, ConvertOptions, Summary, SummaryRow};
use crate::error::{Error, Result};
use crate::format::gguf::{write_gguf_file, GgufFile, GgufTensorSpec, GgufValue};
use crate::quant_policy::{Base, Class, Policy};
use crate::tensor::{dtype::ggml_type_name, quant, DType};

/// Rows converted per step: about this many bytes of them as f32.
const CHUNK_F32_BYTES: usize = 32 << 20;

/// What one output tensor is: the input tensor `index`, stored as `dtype`.
struct Plan {
    index: usize,
    from: DType,
    dtype: DType,
    /// Row-major shape.
    shape: Vec<usize>,
}

impl Plan {
    fn cols(&self) -> usize {
        *self.shape.last().unwrap_or(&1)
    }
    fn rows(&self) -> usize {
        self.shape[..self.shape.len().saturating_sub(1)]
            .iter()
            .product()
    }
}

/// Requantizes the GGUF file `input` into `output` as `opts` says; returns what was written.
/// `progress` receives one line per tensor.
pub fn requantize_gguf(
    input: &Path,
    output: &Path,
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Summary> {
    let invalid = |msg: String| Error::InvalidArg(format!("convert {}: {msg}", input.display()));
    if opts.profile.is_some() {
        return Err(invalid(
            "--expert-profile needs the Hugging Face directory as input (a GGUF input is \
             requantized tensor by tensor, without splitting expert stacks)"
                .into(),
        ));
    }
    if same_file(input, output) {
        return Err(invalid("the output would overwrite the input".into()));
    }
    let gguf = GgufFile::open(input)?;
    if let Some((k, _)) = gguf
        .metadata
        .iter()
        .find(|(k, _)| k.starts_with("moela.blk.") && k.ends_with(".expert_group"))
    {
        return Err(invalid(format!(
            "it uses moela's grouped-expert extension ({k}, docs/FORMAT.md §8), whose expert \
             stacks cannot be requantized as plain tensors; convert the Hugging Face directory \
             instead"
        )));
    }
    let arch = gguf
        .require("general.architecture")?
        .as_str()
        .ok_or_else(|| invalid("general.architecture is not a string".into()))?
        .to_string();
    let n_layers = gguf
        .require(&format!("{arch}.block_count"))?
        .as_u64()
        .ok_or_else(|| invalid(format!("{arch}.block_count is not an integer")))?
        as usize;

    let mut policy = Policy::new(opts.base, n_layers);
    policy.expert = opts.expert;
    let mut plans = Vec::with_capacity(gguf.tensors.len());
    for (index, t) in gguf.tensors.iter().enumerate() {
        let from = t.dtype().ok_or_else(|| {
            invalid(format!(
                "tensor {} has type {}, which moela cannot read (supported: {})",
                t.name,
                ggml_type_name(t.ggml_type),
                DType::ALL.map(|d| d.name()).join(", ")
            ))
        })?;
        let shape = t.shape();
        let dtype = policy.tensor_type(&t.name, &shape);
        plans.push(Plan {
            index,
            from,
            dtype,
            shape,
        });
    }

    let ft = match opts.base {
        Base::Uniform(d) => file_type(d),
        Base::Mix { file_type, .. } => file_type,
    };
    let mut meta = gguf.metadata.clone();
    set_meta(&mut meta, "general.file_type", GgufValue::U32(ft));
    set_meta(&mut meta, "general.quantization_version", GgufValue::U32(2));
    let specs: Vec<GgufTensorSpec> = plans
        .iter()
        .map(|p| GgufTensorSpec {
            name: gguf.tensors[p.index].name.clone(),
            dims: gguf.tensors[p.index].dims.clone(),
            ggml_type: p.dtype.ggml_type(),
        })
        .collect();
    let mut summary = summarize(&gguf, &plans);
    let total = plans.len();
    let mut buf = Vec::new();
    write_gguf_file(output, &meta, &specs, gguf.alignment, |i, w| {
        let p = &plans[i];
        let t = &gguf.tensors[p.index];
        let how = if p.from == p.dtype {
            "copied".to_string()
        } else {
            format!("from {}", p.from.name())
        };
        progress(&format!(
            "[{:>4}/{total}] {:<32} {:>5} {:?} {how}",
            i + 1,
            t.name,
            p.dtype.name(),
            p.shape
        ));
        let data = gguf.tensor_data(t);
        if p.from == p.dtype {
            return w.write_all(data).map_err(|e| Error::io(output, e));
        }
        convert_rows(p, data, w, &mut buf, output).map_err(|e| match e {
            Error::Io { .. } => e,
            e => invalid(format!("tensor {}: {e}", t.name)),
        })
    })?;
    summary.file_bytes = std::fs::metadata(output)
        .map_err(|e| Error::io(output, e))?
        .len();
    Ok(summary)
}

/// Writes tensor `p` (stored bytes `data`) as its new type to `w`, [`CHUNK_F32_BYTES`] of rows
/// at a time, the rows of a chunk in parallel. `buf` holds the converted chunk; `output` names
/// the destination in errors.
fn convert_rows(
    p: &Plan,
    data: &[u8],
    w: &mut dyn Write,
    buf: &mut Vec<u8>,
    output: &Path,
) -> Result<()> {
    let cols = p.cols();
    let bad_row = |d: DType| {
        Error::InvalidArg(format!(
            "rows of {cols} elements are not whole {} blocks",
            d.name()
        ))
    };
    let in_rb = p.from.bytes_for(cols).ok_or_else(|| bad_row(p.from))?;
    let out_rb = p.dtype.bytes_for(cols).ok_or_else(|| bad_row(p.dtype))?;
    let rows = p.rows();
    if data.len() != rows * in_rb {
        return Err(Error::InvalidArg(format!(
            "{} bytes of data for {rows} rows of {in_rb}",
            data.len()
        )));
    }
    let chunk = (CHUNK_F32_BYTES / (4 * cols).max(1)).max(1);
    for (src, r0) in data.chunks(chunk * in_rb).zip((0..rows).step_by(chunk)) {
        let n = (rows - r0).min(chunk);
        buf.resize(n * out_rb, 0);
        buf.par_chunks_mut(out_rb)
            .zip(src.par_chunks(in_rb))
            .try_for_each_init(
                || vec![0.0f32; cols],
                |row, (out, inp)| {
                    quant::dequantize_row(p.from, inp, row);
                    quant::quantize_row(p.dtype, row, out)
                },
            )?;
        w.write_all(buf).map_err(|e| Error::io(output, e))?;
    }
    Ok(())
}

/// Replaces the value of `key` in place, or appends it.
fn set_meta(meta: &mut Vec<(String, GgufValue)>, key: &str, v: GgufValue) {
    match meta.iter_mut().find(|(k, _)| k == key) {
        Some((_, old)) => *old = v,
        None => meta.push((key.to_string(), v)),
    }
}

/// Per class and type: tensors and bytes.
fn summarize(gguf: &GgufFile, plans: &[Plan]) -> Summary {
    let mut s = Summary::default();
    for p in plans {
        let class = Class::of(&gguf.tensors[p.index].name).0;
        let b = p.dtype.bytes_for(p.cols()).unwrap_or(0) as u64 * p.rows() as u64;
        match s
            .rows
            .iter_mut()
            .find(|r| r.class == class && r.dtype == p.dtype)
        {
            Some(r) => {
                r.tensors += 1;
                r.bytes += b;
            }
            None => s.rows.push(SummaryRow {
                class,
                dtype: p.dtype,
                tensors: 1,
                bytes: b,
            }),
        }
    }
    s.rows.sort_by(|a, b| {
        a.class
            .cmp(&b.class)
            .then(a.dtype.name().cmp(b.dtype.name()))
    });
    s
}

/// Whether `a` and `b` name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}
