//! Typed, zero-copy views over checkpoint bytes.
//!
//! A [`TensorView`] is a 2-D matrix (`rows` × `cols`, row-major, PyTorch's `[out, in]` order)
//! whose bytes live in a memory mapping. Views are cheap to clone (an `Arc` and a range) and
//! sub-views (one expert of a stacked expert tensor, one head's rows) share the same bytes.

use std::ops::Range;
use std::sync::Arc;

use std::cell::{Cell, RefCell};

use memmap2::Mmap;
use rayon::prelude::*;

use crate::kernels::{self, Q8Acts};

use super::dtype::DType;
use super::interleave::GROUP;
use super::{fp8, quant};

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
    /// 2-D block scales (DeepSeek's FP8 `weight_scale_inv`); None for self-contained types.
    scales: Option<Arc<BlockScales>>,
    /// Where this view's first row lies in the tensor the scale grid describes (sub-views).
    scale_row0: usize,
    /// Rows interleaved by eight ([`super::interleave`]), in memory; the file's
    /// row-after-row layout when false.
    interleaved: bool,
}

/// The f32 scale grid of a block-scaled tensor: `[⌈R/block_rows⌉, ⌈C/block_cols⌉]` for the
/// whole stored tensor of R rows, kept in the mapping (read on use). Element (r, c) of the
/// tensor is `value · grid[r / block_rows][c / block_cols]`.
#[derive(Debug)]
struct BlockScales {
    backing: Backing,
    range: Range<usize>,
    grid_cols: usize,
    block_rows: usize,
    block_cols: usize,
}

impl BlockScales {
    /// The scale row (little-endian f32 bytes) of row `r` of the stored tensor.
    #[inline]
    fn row(&self, r: usize) -> &[u8] {
        let rb = self.grid_cols * 4;
        let g = r / self.block_rows;
        let start = self.range.start + g * rb;
        &self.backing.as_slice()[start..start + rb]
    }
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
            scales: None,
            scale_row0: 0,
            interleaved: false,
        })
    }

    /// Attaches 2-D block scales: `scales` is an F32 view of shape
    /// `[⌈rows/block.0⌉, ⌈cols/block.1⌉]` (partial blocks at the edges count as blocks).
    /// Returns None when the shapes disagree, the scales are not F32, or a block is empty.
    pub fn with_block_scales(
        mut self,
        scales: &TensorView,
        block: (usize, usize),
    ) -> Option<TensorView> {
        let (br, bc) = block;
        if br == 0
            || bc == 0
            || scales.dtype != DType::F32
            || scales.scales.is_some()
            || scales.rows != self.rows.div_ceil(br)
            || scales.cols != self.cols.div_ceil(bc)
        {
            return None;
        }
        self.scales = Some(Arc::new(BlockScales {
            backing: scales.backing.clone(),
            range: scales.range.clone(),
            grid_cols: scales.cols,
            block_rows: br,
            block_cols: bc,
        }));
        self.scale_row0 = 0;
        Some(self)
    }

    /// Whether the rows are interleaved by eight ([`super::interleave`]).
    pub fn is_interleaved(&self) -> bool {
        self.interleaved
    }

    /// This matrix interleaved by eight rows, in memory (None when its type has no such
    /// layout, its row count is not a multiple of eight, or it already is).
    pub fn interleaved(&self) -> Option<TensorView> {
        if !super::interleave::has_layout(self.dtype)
            || self.rows % GROUP != 0
            || self.rows == 0
            || self.interleaved
            || self.scales.is_some()
        {
            return None;
        }
        let bytes = super::interleave::interleave(self.dtype, self.cols, self.bytes())?;
        let len = bytes.len();
        Some(TensorView {
            dtype: self.dtype,
            rows: self.rows,
            cols: self.cols,
            backing: Backing::Owned(Arc::new(bytes)),
            range: 0..len,
            scales: None,
            scale_row0: 0,
            interleaved: true,
        })
    }

    /// Tells the kernel this view's pages of the file mapping are not needed (the whole pages
    /// inside its range; a no-op for bytes in memory), so they leave the process's resident
    /// set; a later read faults them in again from the file.
    pub fn release_mapped_pages(&self) {
        #[cfg(unix)]
        if let Backing::Map(m) = &self.backing {
            const PAGE: usize = 4096;
            let (start, end) = (
                self.range.start.next_multiple_of(PAGE),
                self.range.end / PAGE * PAGE,
            );
            if end > start {
                // SAFETY: the mapping is a read-only file mapping, so dropping its pages loses
                // nothing (they are read again from the file on the next access), and no
                // reference into it is invalidated: the bytes stay mapped and readable.
                let _ = unsafe {
                    m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
                };
            }
        }
    }

    /// Whether values need a block scale from outside the row (FP8 with `weight_scale_inv`).
    pub fn is_block_scaled(&self) -> bool {
        self.scales.is_some()
    }

    /// Dot product of stored row `r` (its bytes `row`) with `x`.
    #[inline]
    fn dot_row_at(&self, r: usize, row: &[u8], x: &[f32]) -> f32 {
        match &self.scales {
            Some(s) => fp8::dot_scaled(row, s.row(self.scale_row0 + r), s.block_cols, x),
            None => quant::dot_row(self.dtype, row, x),
        }
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
            scales: None,
            scale_row0: 0,
            interleaved: false,
        })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.backing.as_slice()[self.range.clone()]
    }

    /// The address of the memory mapping holding this view's bytes and their byte range in
    /// it (None for bytes in memory). A mapping covers its whole file, so the range is also
    /// the file offset.
    pub fn map_location(&self) -> Option<(usize, Range<usize>)> {
        match &self.backing {
            Backing::Map(m) => Some((m.as_ptr() as usize, self.range.clone())),
            Backing::Owned(_) => None,
        }
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

    /// The bytes of row `i` (in the file's layout: not for an interleaved view, whose rows
    /// span their group; [`row_f32`](Self::row_f32) reads those).
    #[inline]
    pub fn row(&self, i: usize) -> &[u8] {
        debug_assert!(!self.interleaved, "row() of an interleaved view");
        let rb = self.row_bytes();
        &self.bytes()[i * rb..(i + 1) * rb]
    }

    /// Rows `start..start+n` as a view of their own.
    /// An interleaved view splits only on whole groups of eight rows.
    pub fn rows_view(&self, start: usize, n: usize) -> Option<TensorView> {
        if start.checked_add(n)? > self.rows {
            return None;
        }
        if self.interleaved && (start % GROUP != 0 || n % GROUP != 0) {
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
            scales: self.scales.clone(),
            scale_row0: self.scale_row0 + start,
            interleaved: self.interleaved,
        })
    }

    /// The same bytes seen as `rows` × `cols` (same element count, whole blocks per row).
    /// Block-scaled views cannot be reshaped (the scale grid would not follow).
    pub fn reshape(&self, rows: usize, cols: usize) -> Option<TensorView> {
        if self.scales.is_some() || self.interleaved {
            return None;
        }
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
        if self.interleaved {
            let rb = self.row_bytes();
            let g = i / GROUP;
            let group = &self.bytes()[g * GROUP * rb..(g + 1) * GROUP * rb];
            let mut row = vec![0u8; rb];
            super::interleave::deinterleave_row(self.dtype, group, i % GROUP, &mut row);
            return quant::dequantize_row(self.dtype, &row, &mut out[..self.cols]);
        }
        match &self.scales {
            Some(s) => fp8::dequantize_scaled(
                self.row(i),
                s.row(self.scale_row0 + i),
                s.block_cols,
                &mut out[..self.cols],
            ),
            None => quant::dequantize_row(self.dtype, self.row(i), &mut out[..self.cols]),
        }
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
        self.matmul(x, 1, out)
    }

    /// `out = Wᵀ x` (`x.len() == rows`, `out.len() == cols`): accumulates scaled rows.
    pub fn matvec_t(&self, x: &[f32], out: &mut [f32]) {
        debug_assert!(!self.interleaved, "matvec_t of an interleaved view");
        debug_assert_eq!(x.len(), self.rows);
        debug_assert_eq!(out.len(), self.cols);
        out.fill(0.0);
        let rb = self.row_bytes();
        let bytes = self.bytes();
        for (r, &a) in x.iter().enumerate() {
            let row = &bytes[r * rb..(r + 1) * rb];
            match &self.scales {
                Some(s) => fp8::axpy_scaled(row, s.row(self.scale_row0 + r), s.block_cols, a, out),
                None => quant::axpy_row(self.dtype, row, a, out),
            }
        }
    }

    /// `out[t] = Wᵀ x[t]` for `n` inputs of `rows` values (`out` is `[n, cols]`): each stored
    /// row is widened once and accumulated into every output.
    pub fn matmul_t(&self, x: &[f32], n: usize, out: &mut [f32]) {
        debug_assert!(!self.interleaved, "matmul_t of an interleaved view");
        debug_assert_eq!(x.len(), n * self.rows);
        debug_assert_eq!(out.len(), n * self.cols);
        out.fill(0.0);
        let (rows, cols) = (self.rows, self.cols);
        ROW.with(|cell| {
            let mut fresh = Vec::new();
            let mut guard = cell.try_borrow_mut();
            let row: &mut Vec<f32> = match guard.as_mut() {
                Ok(r) => r,
                Err(_) => &mut fresh,
            };
            row.resize(cols, 0.0);
            for i in 0..rows {
                self.row_f32(i, row);
                for t in 0..n {
                    let a = x[t * rows + i];
                    for (o, &w) in out[t * cols..(t + 1) * cols].iter_mut().zip(row.iter()) {
                        *o += a * w;
                    }
                }
            }
        });
    }

    /// `out[t] = W x[t]` for `n` inputs stored back to back (`out` is `[n, rows]`). Rows are
    /// split across the worker threads; each weight row is loaded once and used for every
    /// input, which is what makes prefill cheaper per token than decode. Quantized weights
    /// multiply 8-bit activations ([`Q8Acts`]) with the best kernel set of the CPU.
    pub fn matmul(&self, x: &[f32], n: usize, out: &mut [f32]) {
        debug_assert_eq!(x.len(), n * self.cols);
        debug_assert_eq!(out.len(), n * self.rows);
        if let (Some(s), true) = (&self.scales, n > 1 && !per_token()) {
            // Block-scaled FP8 with several inputs: decode each row once per group of inputs.
            let cols = self.cols;
            return self.for_each_row(n, out, |r, row, t0, count| {
                let mut v = [0.0f32; 4];
                let scales = s.row(self.scale_row0 + r);
                let mut work = |w: &mut Vec<f32>| {
                    w.resize(cols, 0.0);
                    fp8::dequantize_scaled(row, scales, s.block_cols, w);
                    for (i, o) in v.iter_mut().enumerate().take(count) {
                        *o = fp8::dot_f32(w, &x[(t0 + i) * cols..(t0 + i + 1) * cols]);
                    }
                };
                FP8_ROW.with(|cell| match cell.try_borrow_mut() {
                    Ok(mut w) => work(&mut w),
                    Err(_) => work(&mut Vec::new()),
                });
                v
            });
        }
        // FP8 (and any block-scaled view) with one input: Rust rows (tensor::fp8).
        if !self.dtype.is_quantized() && (self.scales.is_some() || self.dtype == DType::F8E4M3) {
            let cols = self.cols;
            return self.for_each_row(n, out, |r, row, t0, count| {
                let mut v = [0.0f32; 4];
                for (i, o) in v.iter_mut().enumerate().take(count) {
                    *o = self.dot_row_at(r, row, &x[(t0 + i) * cols..(t0 + i + 1) * cols]);
                }
                v
            });
        }
        // Quantized weights: decode calls the kernel per block of rows, prefill the GEMM
        // where the kernel set has one (see `matmul_multi`). F32/F16/BF16 weights: the float
        // kernels, per block of rows (decode) or four inputs at a time (prefill).
        matmul_multi(&mut [MatJob { w: self, x, n, out }])
    }

    /// Rows `range` of a product over `n` inputs: `put(t * rows + r, value)` for each.
    fn rows_range(
        &self,
        range: Range<usize>,
        n: usize,
        put: &mut dyn FnMut(usize, f32),
        f: impl Fn(usize, &[u8], usize, usize) -> [f32; 4],
    ) {
        let (rows, rb) = (self.rows, self.row_bytes());
        let bytes = self.bytes();
        for r in range {
            let row = &bytes[r * rb..(r + 1) * rb];
            let mut t0 = 0;
            while t0 < n {
                let count = (n - t0).min(4);
                let v = f(r, row, t0, count);
                for (i, &val) in v.iter().enumerate().take(count) {
                    put((t0 + i) * rows + r, val);
                }
                t0 += count;
            }
        }
    }

    /// `out[t * rows + r]` for every row r and input t, where `f(r, row, t0, count)` returns the
    /// values for inputs `t0..t0+count` (count ≤ 4). Rows are split across threads when the
    /// product is big enough to pay for the hand-off.
    fn for_each_row(
        &self,
        n: usize,
        out: &mut [f32],
        f: impl Fn(usize, &[u8], usize, usize) -> [f32; 4] + Sync,
    ) {
        let rows = self.rows;
        let rb = self.row_bytes();
        let bytes = self.bytes();
        let threads = kernels::threads();
        let do_row = |r: usize, put: &mut dyn FnMut(usize, f32)| {
            let row = &bytes[r * rb..(r + 1) * rb];
            let mut t0 = 0;
            while t0 < n {
                let count = (n - t0).min(4);
                let v = f(r, row, t0, count);
                for (i, &val) in v.iter().enumerate().take(count) {
                    put((t0 + i) * rows + r, val);
                }
                t0 += count;
            }
        };
        if threads <= 1 || rows * self.cols * n < PARALLEL_MIN_WORK {
            for r in 0..rows {
                do_row(r, &mut |i, v| out[i] = v);
            }
            return;
        }
        let chunk = rows.div_ceil(threads * 4).max(8);
        let out_ptr = OutPtr(out.as_mut_ptr());
        (0..rows.div_ceil(chunk)).into_par_iter().for_each(|c| {
            let out_ptr = &out_ptr;
            for r in c * chunk..((c + 1) * chunk).min(rows) {
                // SAFETY: `out` has n*rows elements (asserted by callers' shapes) and every
                // index t*rows + r is written by exactly one chunk (the one holding row r), so
                // the writes are in bounds and disjoint; `out` outlives the parallel loop.
                do_row(r, &mut |i, v| unsafe { *out_ptr.0.add(i) = v });
            }
        });
    }
}

/// One product of [`matmul_multi`]: `out[t] = w x[t]` for the `n` inputs in `x` (`x` is
/// `[n, w.cols]`, `out` is `[n, w.rows]`).
pub struct MatJob<'a> {
    pub w: &'a TensorView,
    pub x: &'a [f32],
    pub n: usize,
    pub out: &'a mut [f32],
}

/// Several independent products in one parallel pass: the rows of all of them are split into
/// chunks that the worker threads share, so a MoE layer's experts cost one hand-off instead of
/// one per matrix (decode runs a dozen small matrices per layer). Inputs that are the same
/// slice are quantized once. Results equal calling [`TensorView::matmul`] on each job.
pub fn matmul_multi(jobs: &mut [MatJob]) {
    for j in jobs.iter() {
        debug_assert_eq!(j.x.len(), j.n * j.w.cols);
        debug_assert_eq!(j.out.len(), j.n * j.w.rows);
    }
    let k = kernels::active();
    // Per-token mode (speculative verification): every input row is its own one-token product,
    // with the decode kernels and its own quantized activations.
    let per_token = per_token() && jobs.iter().any(|j| j.n > 1);
    MULTI_ACTS.with(|cell| {
        let mut fresh = Vec::new();
        let mut guard = cell.try_borrow_mut();
        let pool: &mut Vec<Q8Acts> = match guard.as_mut() {
            Ok(p) => p,
            Err(_) => &mut fresh,
        };
        // acts[i]: index into `pool` of job i's quantized input (None: float or FP8 weights,
        // which read the f32 input); in per-token mode the first of its n one-row inputs.
        let mut acts: Vec<Option<usize>> = Vec::with_capacity(jobs.len());
        let mut inputs: Vec<(&[f32], usize)> = Vec::with_capacity(jobs.len());
        let mut used = 0;
        for i in 0..jobs.len() {
            if !jobs[i].w.dtype.is_quantized() {
                acts.push(None);
                continue;
            }
            let same = (0..i).find(|&p| {
                acts[p].is_some()
                    && std::ptr::eq(jobs[p].x, jobs[i].x)
                    && jobs[p].w.cols == jobs[i].w.cols
            });
            if let Some(p) = same {
                acts.push(acts[p]);
                continue;
            }
            let (x, cols) = (jobs[i].x, jobs[i].w.cols);
            acts.push(Some(used));
            if per_token {
                inputs.extend(x.chunks_exact(cols).map(|xt| (xt, cols)));
                used += jobs[i].n;
            } else {
                inputs.push((x, cols));
                used += 1;
            }
            while pool.len() < used {
                pool.push(Q8Acts::default());
            }
        }
        // Quantize the distinct inputs (in parallel when there is enough of them: prefill).
        let in_elems: usize = inputs.iter().map(|(x, _)| x.len()).sum();
        let tq = crate::stage_times::start();
        let quantize = |(a, &(x, cols)): (&mut Q8Acts, &(&[f32], usize))| a.quantize(x, cols);
        if kernels::threads() > 1 && used > 1 && in_elems >= PARALLEL_MIN_WORK {
            pool[..used].par_iter_mut().zip(&inputs).for_each(quantize);
        } else {
            pool[..used].iter_mut().zip(&inputs).for_each(quantize);
        }
        crate::stage_times::stop(crate::stage_times::Stage::Quantize, tq);
        let pool: &Vec<Q8Acts> = pool;
        let total: usize = jobs.iter().map(|j| j.w.rows * j.w.cols * j.n).sum();
        let threads = kernels::threads();
        // Work units: (job, first row, end row), about four per thread in all.
        let per_unit = total.div_ceil(threads * 4).max(PARALLEL_MIN_WORK / 4);
        let mut units = Vec::new();
        for (i, j) in jobs.iter().enumerate() {
            let work_per_row = (j.w.cols * j.n).max(1);
            // A multiple of eight rows, so that every unit starts on a multiple of four: the
            // decode kernels run rows in aligned groups of four (the four-row kernel) and only
            // the matrix's last rows%4 rows one at a time, so each row's value does not depend
            // on how the rows were split (thread count, the other jobs of the pass), and a
            // verification pass reproduces decode's bits.
            // Eight: an interleaved matrix is computed in whole groups of eight rows.
            let chunk = per_unit
                .div_ceil(work_per_row)
                .clamp(8, j.w.rows.max(8))
                .next_multiple_of(8);
            let mut r = 0;
            while r < j.w.rows {
                units.push((i, r, (r + chunk).min(j.w.rows)));
                r += chunk;
            }
        }
        // The inputs, then raw output pointers; `jobs` is not touched again, so nothing else
        // refers to the outputs while the units write them.
        let specs: Vec<(&TensorView, &[f32], usize)> =
            jobs.iter().map(|j| (j.w, j.x, j.n)).collect();
        let outs: Vec<OutPtr> = jobs
            .iter_mut()
            .map(|j| OutPtr(j.out.as_mut_ptr()))
            .collect();
        let run = |&(i, r0, r1): &(usize, usize, usize)| {
            let (w, x, n) = specs[i];
            let out = &outs[i];
            let put = &mut |idx: usize, v: f32| {
                // SAFETY: `idx` = t*rows + r < n*rows = the length of job i's output, and
                // each (job, row) belongs to exactly one unit, so writes are disjoint; the
                // outputs outlive this pass.
                unsafe { *out.0.add(idx) = v }
            };
            match acts[i] {
                Some(a) if n == 1 || per_token => {
                    // Decode: blocks of 64 rows (a multiple of eight, see the units). Several
                    // inputs in per-token mode: each block, still in cache, meets every input
                    // in turn.
                    let mut vals = [0.0f32; 64];
                    let mut multi = [0.0f32; 8 * 64];
                    let rb = w.row_bytes();
                    let mut r = r0;
                    while r < r1 {
                        let m = (r1 - r).min(vals.len());
                        let rows = &w.bytes()[r * rb..(r + m) * rb];
                        // Interleaved weights, several tokens: up to 8 at once through the
                        // kernel that reads each block once (same bits as one at a time).
                        let mut t0 = 0;
                        while w.interleaved && n > 1 && t0 < n {
                            let c = (n - t0).min(8);
                            let acts = &pool[a + t0..a + t0 + c];
                            if !kernels::dot_x8_tokens(k, w.dtype, acts, rows, m, &mut multi) {
                                break;
                            }
                            for t in 0..c {
                                for (i, &v) in multi[t * m..(t + 1) * m].iter().enumerate() {
                                    put((t0 + t) * w.rows + r + i, v);
                                }
                            }
                            t0 += c;
                        }
                        for t in t0..n {
                            if w.interleaved {
                                pool[a + t].dot_x8(k, w.dtype, rows, 0, &mut vals[..m]);
                            } else {
                                pool[a + t].dot_rows(k, w.dtype, rows, &mut vals[..m]);
                            }
                            for (i, &v) in vals[..m].iter().enumerate() {
                                put(t * w.rows + r + i, v);
                            }
                        }
                        r += m;
                    }
                }
                Some(a) if w.interleaved => {
                    let rb = w.row_bytes();
                    // SAFETY: rows r0..r1 (whole groups: units are multiples of eight rows and
                    // the matrix has a multiple of eight) of this job's output are written by
                    // this unit only, at t*rows + r < n*rows, and the output outlives the pass.
                    unsafe {
                        pool[a].gemm_x8(
                            k,
                            w.dtype,
                            &w.bytes()[r0 * rb..r1 * rb],
                            r1 - r0,
                            out.0.add(r0),
                            w.rows,
                        )
                    };
                }
                Some(a) => {
                    let q = &pool[a];
                    let rb = w.row_bytes();
                    // SAFETY: rows r0..r1 of this job's output are written by this unit only,
                    // at t*rows + r < n*rows (its length), and the output outlives the pass.
                    let done = unsafe {
                        q.gemm(
                            k,
                            w.dtype,
                            &w.bytes()[r0 * rb..r1 * rb],
                            r1 - r0,
                            out.0.add(r0),
                            w.rows,
                        )
                    };
                    if !done {
                        w.rows_range(r0..r1, n, put, |_, row, t0, c| {
                            q.dot_upto4(k, w.dtype, row, t0, c)
                        });
                    }
                }
                None if w.scales.is_none() && kernels::float_index(w.dtype).is_some() => {
                    let cols = w.cols;
                    if n == 1 || per_token {
                        let mut vals = [0.0f32; 64];
                        let rb = w.row_bytes();
                        let mut r = r0;
                        while r < r1 {
                            let m = (r1 - r).min(vals.len());
                            let rows = &w.bytes()[r * rb..(r + m) * rb];
                            for (t, xt) in x.chunks_exact(cols).enumerate() {
                                k.dot_rows_f(w.dtype, rows, xt, &mut vals[..m]);
                                for (i, &v) in vals[..m].iter().enumerate() {
                                    put(t * w.rows + r + i, v);
                                }
                            }
                            r += m;
                        }
                    } else {
                        w.rows_range(r0..r1, n, put, |_, row, t0, c| {
                            k.dot_upto4_f(w.dtype, row, &x[t0 * cols..(t0 + c) * cols], c)
                        });
                    }
                }
                None => {
                    let cols = w.cols;
                    w.rows_range(r0..r1, n, put, |r, row, t0, c| {
                        let mut v = [0.0f32; 4];
                        for (ti, o) in v.iter_mut().enumerate().take(c) {
                            let xt = &x[(t0 + ti) * cols..(t0 + ti + 1) * cols];
                            *o = w.dot_row_at(r, row, xt);
                        }
                        v
                    });
                }
            }
        };
        if threads <= 1 || total < PARALLEL_MIN_WORK || units.len() == 1 {
            units.iter().for_each(run);
        } else {
            units.par_iter().for_each(run);
        }
    });
}

/// Below this many multiply-adds a product runs on the calling thread.
const PARALLEL_MIN_WORK: usize = 1 << 16;

thread_local! {
    /// Whether products over several inputs started on this thread run as one-input products
    /// (see [`per_token_products`]).
    static PER_TOKEN: Cell<bool> = const { Cell::new(false) };
}

fn per_token() -> bool {
    PER_TOKEN.with(Cell::get)
}

/// Runs `f` with every product started on this thread ([`TensorView::matmul`],
/// [`matmul_multi`]) computing each of its inputs exactly as a one-input product (decode)
/// would: the same one-row (or aligned four-row) kernels, each input quantized on its own,
/// each block of weight rows meeting the inputs in turn while it is in cache. The results are
/// bit-identical to running the inputs one at a time; speculative verification relies on it.
/// Products started on other threads (inside a parallel loop of `f`) are not affected.
pub fn per_token_products<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            PER_TOKEN.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(PER_TOKEN.with(|c| c.replace(true)));
    f()
}

thread_local! {
    /// Each caller thread's quantized inputs for `matmul_multi`.
    static MULTI_ACTS: RefCell<Vec<Q8Acts>> = const { RefCell::new(Vec::new()) };
    /// Each thread's widened weight row for `matmul_t`.
    static ROW: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Each worker's decoded FP8 row for multi-input products.
    static FP8_ROW: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The output pointer shared by the row chunks of one product.
struct OutPtr(*mut f32);
// SAFETY: used only inside `for_each_row`, where each chunk writes a disjoint set of indices.
unsafe impl Sync for OutPtr {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Q4_0, Q5_0, Q4_K, Q5_K, Q6_K, Q4_1, Q5_1, Q2_K, Q3_K, IQ4_NL and IQ4_XS interleaved by eight rows: rows read back as the
    /// original's, and products (decode and GEMM, through the active set's x8 kernels, and
    /// through the fallback that de-interleaves for a set without them) agree with the file-layout matrix within float
    /// summation order: 1e-5 · Σ|w·x| per output (both multiply the same q8a activations).
    #[test]
    fn interleaved_products() {
        for (dtype, cols) in [
            (DType::Q4_0, 96),
            (DType::Q5_0, 96),
            (DType::Q4_K, 512),
            (DType::Q5_K, 512),
            (DType::Q6_K, 512),
            (DType::Q4_1, 96),
            (DType::Q5_1, 96),
            (DType::Q2_K, 512),
            (DType::IQ4_NL, 96),
            (DType::IQ4_XS, 512),
            (DType::Q3_K, 512),
        ] {
            interleaved_products_of(dtype, cols);
        }
    }

    fn interleaved_products_of(dtype: DType, cols: usize) {
        let rows = 48;
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect();
        let m = TensorView::from_f32(rows, cols, &w, dtype).unwrap();
        let x8 = m.interleaved().unwrap();
        assert!(x8.is_interleaved() && !m.is_interleaved());
        assert!(x8.interleaved().is_none(), "interleaving twice");
        assert!(
            m.rows_view(0, 12).unwrap().interleaved().is_none(),
            "12 rows"
        );
        assert!(x8.rows_view(8, 4).is_none() && x8.rows_view(4, 8).is_none());
        assert!(x8.reshape(rows * 2, cols / 2).is_none());
        assert_eq!(x8.to_f32(), m.to_f32());
        let sub = x8.rows_view(16, 24).unwrap();
        assert_eq!(sub.to_f32(), m.rows_view(16, 24).unwrap().to_f32());
        let dense = m.to_f32();
        for n in [1usize, 3, 4, 9, 70] {
            let x: Vec<f32> = (0..n * cols)
                .map(|i| ((i * 53 % 29) as f32 - 14.0) / 9.0)
                .collect();
            let mut want = vec![0.0; n * rows];
            m.matmul(&x, n, &mut want);
            let mut got = vec![0.0; n * rows];
            x8.matmul(&x, n, &mut got);
            let mut acts = Q8Acts::default();
            acts.quantize(&x, cols);
            let mut fallback = vec![0.0; n * rows];
            for t in 0..n {
                acts.dot_x8(
                    kernels::generic(),
                    dtype,
                    x8.bytes(),
                    t,
                    &mut fallback[t * rows..(t + 1) * rows],
                );
            }
            for t in 0..n {
                for r in 0..rows {
                    let mag: f32 = (0..cols)
                        .map(|c| (dense[r * cols + c] * x[t * cols + c]).abs())
                        .sum();
                    let (a, b, c) = (
                        got[t * rows + r],
                        want[t * rows + r],
                        fallback[t * rows + r],
                    );
                    assert!(
                        (a - b).abs() <= 1e-5 * mag + 1e-6 && (c - b).abs() <= 1e-5 * mag + 1e-6,
                        "{dtype:?} n={n} t={t} r={r}: x8 {a}, fallback {c}, file layout {b}"
                    );
                }
            }
        }
    }

    /// F32/F16/BF16 products through the C kernels (one input: the decode path of
    /// `matmul_multi`; several: four-row kernel plus 1..3-input tails) agree with the
    /// dequantized matrix within float summation order: 1e-5 · Σ|w·x| per output.
    #[test]
    fn float_weight_products() {
        let (rows, cols) = (37, 70);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect();
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let m = TensorView::from_f32(rows, cols, &w, dtype).unwrap();
            let dense = m.to_f32();
            for n in [1usize, 2, 4, 7, 9] {
                let x: Vec<f32> = (0..n * cols)
                    .map(|i| ((i * 53 % 29) as f32 - 14.0) / 9.0)
                    .collect();
                let mut y = vec![0.0; n * rows];
                m.matmul(&x, n, &mut y);
                let mut y2 = vec![0.0; n * rows];
                matmul_multi(&mut [MatJob {
                    w: &m,
                    x: &x,
                    n,
                    out: &mut y2,
                }]);
                for t in 0..n {
                    for r in 0..rows {
                        let (mut want, mut mag) = (0.0f64, 0.0f32);
                        for c in 0..cols {
                            let p = dense[r * cols + c] * x[t * cols + c];
                            want += p as f64;
                            mag += p.abs();
                        }
                        for got in [y[t * rows + r], y2[t * rows + r]] {
                            assert!(
                                (got as f64 - want).abs() <= 1e-5 * mag as f64,
                                "{dtype:?} n={n} t={t} r={r}: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// A 200×150 FP8 tensor with 128×128 block scales (partial blocks on both edges): every
    /// product and every sub-view agrees with the dequantized f32 matrix.
    #[test]
    fn block_scaled_fp8_views() {
        let (rows, cols) = (200, 150);
        let bytes: Vec<u8> = (0..rows * cols)
            .map(|i| ((i * 53 + 7) % 256) as u8 & 0xf7) // no NaN codes
            .collect();
        let grid = [0.5f32, 2.0, -0.25, 4.0];
        let sbytes: Vec<u8> = grid.iter().flat_map(|s| s.to_le_bytes()).collect();
        let w = TensorView::new(
            DType::F8E4M3,
            rows,
            cols,
            Backing::Owned(Arc::new(bytes.clone())),
            0..bytes.len(),
        )
        .unwrap();
        let s = TensorView::new(DType::F32, 2, 2, Backing::Owned(Arc::new(sbytes)), 0..16).unwrap();
        assert!(w.clone().with_block_scales(&s, (128, 64)).is_none());
        let w = w.with_block_scales(&s, (128, 128)).unwrap();
        let dense: Vec<f32> = (0..rows * cols)
            .map(|i| fp8::e4m3_to_f32(bytes[i]) * grid[(i / cols) / 128 * 2 + (i % cols) / 128])
            .collect();
        assert_eq!(w.to_f32(), dense);
        let x: Vec<f32> = (0..cols).map(|i| (i % 5) as f32 - 2.0).collect();
        let mut y = vec![0.0; rows];
        w.matvec(&x, &mut y);
        let xt: Vec<f32> = (0..rows).map(|i| (i % 3) as f32 - 1.0).collect();
        let mut yt = vec![0.0; cols];
        w.matvec_t(&xt, &mut yt);
        for r in 0..rows {
            let want: f32 = (0..cols).map(|c| dense[r * cols + c] * x[c]).sum();
            assert!((y[r] - want).abs() <= 1e-3 * want.abs().max(1.0), "row {r}");
        }
        for c in 0..cols {
            let want: f32 = (0..rows).map(|r| dense[r * cols + c] * xt[r]).sum();
            assert!(
                (yt[c] - want).abs() <= 1e-3 * want.abs().max(1.0),
                "col {c}"
            );
        }
        // Several inputs at once (the decoded-row path) agree with one at a time.
        let xs: Vec<f32> = (0..3 * cols).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let mut ys3 = vec![0.0; 3 * rows];
        w.matmul(&xs, 3, &mut ys3);
        for t in 0..3 {
            let mut one = vec![0.0; rows];
            w.matvec(&xs[t * cols..(t + 1) * cols], &mut one);
            for r in 0..rows {
                let d = (ys3[t * rows + r] - one[r]).abs();
                assert!(d <= 1e-4 * one[r].abs().max(1.0), "t {t} row {r}");
            }
        }
        // A sub-view straddling the row-block boundary keeps its rows' scales.
        let sub = w.rows_view(120, 20).unwrap();
        assert_eq!(sub.to_f32(), dense[120 * cols..140 * cols]);
        let mut ys = vec![0.0; 20];
        sub.matvec(&x, &mut ys);
        assert_eq!(ys, y[120..140]);
        assert!(w.reshape(cols, rows).is_none());
    }
}
