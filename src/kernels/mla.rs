//! The MLA decode-attention kernels (scores of query rows against cached latent rows, and the
//! attention-weighted sum of those rows), for f32 and f16 caches.

use super::{bindings, KernelSet};

type MlaScores32 =
    unsafe extern "C" fn(usize, usize, *const f32, usize, *const f32, f32, *mut f32, usize);
type MlaScores16 =
    unsafe extern "C" fn(usize, usize, *const f32, usize, *const u16, f32, *mut f32, usize);
type MlaAccum32 =
    unsafe extern "C" fn(usize, usize, usize, *const f32, usize, usize, *const f32, *mut f32);
type MlaAccum16 =
    unsafe extern "C" fn(usize, usize, usize, *const f32, usize, usize, *const u16, *mut f32);

/// The MLA decode-attention kernels of one ISA (see csrc/include/moela_kernels.h).
#[derive(Clone, Copy, Debug)]
pub(super) struct MlaKernels {
    pub scores_f32: MlaScores32,
    pub scores_f16: MlaScores16,
    pub accum_f32: MlaAccum32,
    pub accum_f16: MlaAccum16,
}

pub(super) const MLA_GENERIC: MlaKernels = MlaKernels {
    scores_f32: bindings::mk_mla_scores_f32_generic,
    scores_f16: bindings::mk_mla_scores_f16_generic,
    accum_f32: bindings::mk_mla_accum_f32_generic,
    accum_f16: bindings::mk_mla_accum_f16_generic,
};

/// Cached positions of one layer (rows of c_kv ‖ k_pe), as the cache stores them.
#[derive(Clone, Copy, Debug)]
pub enum CacheRows<'a> {
    F32(&'a [f32]),
    /// IEEE half bits.
    F16(&'a [u16]),
}

impl CacheRows<'_> {
    fn len(&self) -> usize {
        match self {
            CacheRows::F32(c) => c.len(),
            CacheRows::F16(c) => c.len(),
        }
    }

    /// Rows `j0..j1` (of `row` values each).
    pub fn rows(&self, j0: usize, j1: usize, row: usize) -> Self {
        match *self {
            CacheRows::F32(c) => CacheRows::F32(&c[j0 * row..j1 * row]),
            CacheRows::F16(c) => CacheRows::F16(&c[j0 * row..j1 * row]),
        }
    }

    /// The same rows starting at column `d` (for a slice of the row's dims).
    pub fn from_col(&self, d: usize) -> Self {
        match *self {
            CacheRows::F32(c) => CacheRows::F32(&c[d..]),
            CacheRows::F16(c) => CacheRows::F16(&c[d..]),
        }
    }
}

impl KernelSet {
    /// `out[h*out_stride + j] = scale · q[h]·c[j]` for `nq` query rows of `row` values against
    /// `nrows` cached rows (MLA decode scores).
    #[allow(clippy::too_many_arguments)]
    pub fn mla_scores(
        &self,
        nq: usize,
        row: usize,
        q: &[f32],
        c: CacheRows,
        nrows: usize,
        scale: f32,
        out: &mut [f32],
        out_stride: usize,
    ) {
        assert!(q.len() >= nq * row && c.len() >= nrows * row && nrows <= out_stride);
        assert!(nq == 0 || out.len() >= (nq - 1) * out_stride + nrows);
        // SAFETY: the asserts above bound every index the kernel touches: q[h*row + d],
        // c[j*row + d] and out[h*out_stride + j] for h < nq, j < nrows, d < row.
        unsafe {
            match c {
                CacheRows::F32(c) => (self.mla.scores_f32)(
                    nq,
                    row,
                    q.as_ptr(),
                    nrows,
                    c.as_ptr(),
                    scale,
                    out.as_mut_ptr(),
                    out_stride,
                ),
                CacheRows::F16(c) => (self.mla.scores_f16)(
                    nq,
                    row,
                    q.as_ptr(),
                    nrows,
                    c.as_ptr(),
                    scale,
                    out.as_mut_ptr(),
                    out_stride,
                ),
            }
        }
    }

    /// `acc[h*dim + d] += Σ_j p[h*p_stride + j] · c[j*row + d]` for `d < dim` over `nrows`
    /// cached rows (MLA decode: the attention-weighted latents).
    #[allow(clippy::too_many_arguments)]
    pub fn mla_accum(
        &self,
        nq: usize,
        dim: usize,
        row: usize,
        p: &[f32],
        p_stride: usize,
        c: CacheRows,
        nrows: usize,
        acc: &mut [f32],
    ) {
        assert!(dim <= row && nrows <= p_stride && acc.len() >= nq * dim);
        assert!(nq == 0 || p.len() >= (nq - 1) * p_stride + nrows);
        assert!(nrows == 0 || c.len() >= (nrows - 1) * row + dim);
        // SAFETY: the asserts bound every index: p[h*p_stride + j], c[j*row + d] (d < dim)
        // and acc[h*dim + d] for h < nq, j < nrows.
        unsafe {
            match c {
                CacheRows::F32(c) => (self.mla.accum_f32)(
                    nq,
                    dim,
                    row,
                    p.as_ptr(),
                    p_stride,
                    nrows,
                    c.as_ptr(),
                    acc.as_mut_ptr(),
                ),
                CacheRows::F16(c) => (self.mla.accum_f16)(
                    nq,
                    dim,
                    row,
                    p.as_ptr(),
                    p_stride,
                    nrows,
                    c.as_ptr(),
                    acc.as_mut_ptr(),
                ),
            }
        }
    }
}
