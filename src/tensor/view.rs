//! Typed, zero-copy views over checkpoint bytes.
//!
//! A [`TensorView`] is a 2-D matrix (`rows` × `cols`, row-major, PyTorch's `[out, in]` order)
//! whose bytes live in a memory mapping. Views are cheap to clone (an `Arc` and a range) and
//! sub-views (one expert of a stacked expert tensor, one head's rows) share the same bytes.

use std::ops::Range;
use std::sync::Arc;

use memmap2::Mmap;

use super::dtype::DType;
use super::quant;

/// Where a tensor's bytes live.
#[derive(Clone, Debug)]
pub enum Backing {
    Map(Arc<Mmap>),
    Owned(Arc<Vec<u8>>),
}

impl Backing {
    fn as_slice(&self) -> &[u8] {
        match self {
            Backing::Map(m) => m,
            Backing::Owned(v) => v,
        }
    }
}

#[derive(Clone, Debug)]
pub struct TensorView {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    backing: Backing,
    range: Range<usize>,
}

impl TensorView {
    /// A view of `rows` × `cols` elements of `dtype` at `range` of `backing`.
    /// Returns None when the range does not match the shape or lies outside the backing.
    pub fn new(
        dtype: DType,
        rows: usize,
        cols: usize,
        backing: Backing,
        range: Range<usize>,
    ) -> Option<Self> {
        let row_bytes = dtype.bytes_for(cols)?;
        let len = row_bytes.checked_mul(rows)?;
        if range.end.checked_sub(range.start)? != len || range.end > backing.as_slice().len() {
            return None;
        }
        Some(TensorView {
            dtype,
            rows,
            cols,
            backing,
            range,
        })
    }

    /// An in-memory tensor (tests, converted data).
    pub fn from_f32(rows: usize, cols: usize, data: &[f32], dtype: DType) -> crate::Result<Self> {
        let n = rows * cols;
        if data.len() != n {
            return Err(crate::Error::InvalidArg(format!(
                "from_f32: {} values for a {rows}x{cols} tensor",
                data.len()
            )));
        }
        let row_bytes = dtype.bytes_for(cols).ok_or_else(|| {
            crate::Error::InvalidArg(format!(
                "{cols} columns is not a whole number of {} blocks",
                dtype.name()
            ))
        })?;
        let mut bytes = vec![0u8; row_bytes * rows];
        for r in 0..rows {
            quant::quantize_row(
                dtype,
                &data[r * cols..(r + 1) * cols],
                &mut bytes[r * row_bytes..(r + 1) * row_bytes],
            )?;
        }
        let len = bytes.len();
        Ok(TensorView {
            dtype,
            rows,
            cols,
            backing: Backing::Owned(Arc::new(bytes)),
            range: 0..len,
        })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.backing.as_slice()[self.range.clone()]
    }

    pub fn row_bytes(&self) -> usize {
        // Validated in `new`.
        self.dtype.bytes_for(self.cols).unwrap_or(0)
    }

    pub fn n_elements(&self) -> usize {
        self.rows * self.cols
    }

    pub fn n_bytes(&self) -> usize {
        self.range.len()
    }

    /// The bytes of row `i`.
    #[inline]
    pub fn row(&self, i: usize) -> &[u8] {
        let rb = self.row_bytes();
        &self.bytes()[i * rb..(i + 1) * rb]
    }

    /// Rows `start..start+n` as a view of their own.
    pub fn rows_view(&self, start: usize, n: usize) -> Option<TensorView> {
        if start.checked_add(n)? > self.rows {
            return None;
        }
        let rb = self.row_bytes();
        let begin = self.range.start + start * rb;
        Some(TensorView {
            dtype: self.dtype,
            rows: n,
            cols: self.cols,
            backing: self.backing.clone(),
            range: begin..begin + n * rb,
        })
    }

    /// The same bytes seen as `rows` × `cols` (same element count, whole blocks per row).
    pub fn reshape(&self, rows: usize, cols: usize) -> Option<TensorView> {
        TensorView::new(
            self.dtype,
            rows,
            cols,
            self.backing.clone(),
            self.range.clone(),
        )
    }

    /// Row `i` as f32.
    pub fn row_f32(&self, i: usize, out: &mut [f32]) {
        quant::dequantize_row(self.dtype, self.row(i), &mut out[..self.cols]);
    }

    /// All elements as f32 (for small tensors: norms, biases, tests).
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.n_elements()];
        for r in 0..self.rows {
            self.row_f32(r, &mut out[r * self.cols..(r + 1) * self.cols]);
        }
        out
    }

    /// `out = W x` for one input vector (`x.len() == cols`, `out.len() == rows`).
    pub fn matvec(&self, x: &[f32], out: &mut [f32]) {
        debug_assert_eq!(x.len(), self.cols);
        debug_assert_eq!(out.len(), self.rows);
        let rb = self.row_bytes();
        let bytes = self.bytes();
        for (r, o) in out.iter_mut().enumerate() {
            *o = quant::dot_row(self.dtype, &bytes[r * rb..(r + 1) * rb], x);
        }
    }

    /// `out = Wᵀ x` (`x.len() == rows`, `out.len() == cols`): accumulates scaled rows.
    pub fn matvec_t(&self, x: &[f32], out: &mut [f32]) {
        debug_assert_eq!(x.len(), self.rows);
        debug_assert_eq!(out.len(), self.cols);
        out.fill(0.0);
        let rb = self.row_bytes();
        let bytes = self.bytes();
        for (r, &a) in x.iter().enumerate() {
            quant::axpy_row(self.dtype, &bytes[r * rb..(r + 1) * rb], a, out);
        }
    }

    /// `out[t] = W x[t]` for `n` inputs stored back to back. Each weight row is loaded once
    /// and used for every input, which is what makes prefill cheaper per token than decode.
    pub fn matmul(&self, x: &[f32], n: usize, out: &mut [f32]) {
        debug_assert_eq!(x.len(), n * self.cols);
        debug_assert_eq!(out.len(), n * self.rows);
        if n == 1 {
            return self.matvec(x, out);
        }
        let rb = self.row_bytes();
        let bytes = self.bytes();
        for r in 0..self.rows {
            let row = &bytes[r * rb..(r + 1) * rb];
            for t in 0..n {
                out[t * self.rows + r] =
                    quant::dot_row(self.dtype, row, &x[t * self.cols..(t + 1) * self.cols]);
            }
        }
    }
}
