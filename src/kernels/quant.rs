//! Quantized-weight kernels (Q8_0, Q4_0, the K-quants, ...) against q8a activations: one
//! table per kernel set, indexed by the weight type, with a one-row kernel for every type and
//! the four-row kernels and prefill GEMMs where the ISA has them. A type an ISA has no kernel
//! for runs the generic one, so adding a type takes one generic kernel and nothing else.

use std::ffi::c_void;

use super::{bindings, KernelSet, Q8Acts, QK};
use crate::tensor::DType;

pub(super) type DotQ8a =
    unsafe extern "C" fn(usize, *const c_void, *const i8, *const f32, *const i32) -> f32;
pub(super) type Dot4Q8a =
    unsafe extern "C" fn(usize, *const c_void, *const i8, *const f32, *const i32, *mut f32);
pub(super) type DotQ8g = unsafe extern "C" fn(usize, *const c_void, *const bindings::mk_q8g) -> f32;
pub(super) type Dot4Q8g =
    unsafe extern "C" fn(usize, *const c_void, *const bindings::mk_q8g, *mut f32);
/// Decode: four weight rows (row i at w + i·row_bytes) against one q8a activation row:
/// (n, w, row_bytes, qs, d, s, out[4]).
pub(super) type Rows4Q8a =
    unsafe extern "C" fn(usize, *const c_void, usize, *const i8, *const f32, *const i32, *mut f32);
/// Prefill GEMM against q8a rows: (n, nrows, w, row_bytes, ntok, qs, d, s, out, ldo).
pub(super) type GemmQ8a = unsafe extern "C" fn(
    usize,
    usize,
    *const c_void,
    usize,
    usize,
    *const i8,
    *const f32,
    *const i32,
    *mut f32,
    usize,
);
/// Prefill GEMM against grouped and tiled activations: (n, nrows, w, row_bytes, ntok, x, out,
/// ldo).
pub(super) type GemmQ8g = unsafe extern "C" fn(
    usize,
    usize,
    *const c_void,
    usize,
    usize,
    *const bindings::mk_q8g,
    *mut f32,
    usize,
);
/// Q4_0 interleaved by eight rows (src/tensor/interleave.rs) against one q8a row: (n, group,
/// qs, d, s, out[8]).
pub(super) type DotX8 =
    unsafe extern "C" fn(usize, *const c_void, *const i8, *const f32, *const i32, *mut f32);
/// The decode kernel for up to 8 activation rows, each its own arrays: (n, group, ntok,
/// qs[], d[], s[], out, ldo).
pub(super) type DotX8Multi = unsafe extern "C" fn(
    usize,
    *const c_void,
    usize,
    *const *const i8,
    *const *const f32,
    *const *const i32,
    *mut f32,
    usize,
);
/// The same as a GEMM: (n, ngroups, w, ntok, qs, d, s, out, ldo).
pub(super) type GemmX8 = unsafe extern "C" fn(
    usize,
    usize,
    *const c_void,
    usize,
    *const i8,
    *const f32,
    *const i32,
    *mut f32,
    usize,
);
pub(super) type QuantizeQ8a = unsafe extern "C" fn(usize, *const f32, *mut i8, *mut f32, *mut i32);

/// One weight type's kernels in one kernel set.
#[derive(Clone, Copy, Debug)]
pub(super) struct QuantKernels {
    /// One weight row against one activation row.
    pub dot: DotQ8a,
    /// One weight row against four activation rows (prefill).
    pub dot4: Option<Dot4Q8a>,
    /// Four consecutive weight rows against one activation row (decode's `dot_rows`).
    pub rows4: Option<Rows4Q8a>,
    /// Prefill GEMM against grouped, tiled activations (the VBMI layout).
    pub gemm_q8g: Option<GemmQ8g>,
    /// Prefill GEMM against plain q8a activations.
    pub gemm_q8a: Option<GemmQ8a>,
}

/// Slots of [`QuantTable`]: ggml type ids are small (under 48 today).
const SLOTS: usize = 48;

/// A kernel set's quantized-weight kernels, indexed by the weight type's ggml id.
#[derive(Clone, Copy, Debug)]
pub(super) struct QuantTable([Option<QuantKernels>; SLOTS]);

impl QuantTable {
    /// The portable C kernels: every quantized type moela reads has one.
    pub fn generic() -> Self {
        let mut t = QuantTable([None; SLOTS]);
        for (dtype, dot) in [
            (DType::Q8_0, bindings::mk_vec_dot_q8_0_q8a_generic as DotQ8a),
            (DType::Q4_0, bindings::mk_vec_dot_q4_0_q8a_generic),
            (DType::Q4_K, bindings::mk_vec_dot_q4_k_q8a_generic),
            (DType::Q5_K, bindings::mk_vec_dot_q5_k_q8a_generic),
            (DType::Q6_K, bindings::mk_vec_dot_q6_k_q8a_generic),
            (DType::Q2_K, bindings::mk_vec_dot_q2_k_q8a_generic),
            (DType::Q3_K, bindings::mk_vec_dot_q3_k_q8a_generic),
            (DType::IQ2_XXS, bindings::mk_vec_dot_iq2_xxs_q8a_generic),
            (DType::IQ2_XS, bindings::mk_vec_dot_iq2_xs_q8a_generic),
            (DType::IQ2_S, bindings::mk_vec_dot_iq2_s_q8a_generic),
            (DType::IQ3_XXS, bindings::mk_vec_dot_iq3_xxs_q8a_generic),
            (DType::IQ3_S, bindings::mk_vec_dot_iq3_s_q8a_generic),
            (DType::IQ1_S, bindings::mk_vec_dot_iq1_s_q8a_generic),
            (DType::IQ1_M, bindings::mk_vec_dot_iq1_m_q8a_generic),
            (DType::TQ1_0, bindings::mk_vec_dot_tq1_0_q8a_generic),
            (DType::TQ2_0, bindings::mk_vec_dot_tq2_0_q8a_generic),
            (DType::MXFP4, bindings::mk_vec_dot_mxfp4_q8a_generic),
            (DType::NVFP4, bindings::mk_vec_dot_nvfp4_q8a_generic),
            (DType::Q1_0, bindings::mk_vec_dot_q1_0_q8a_generic),
            (DType::Q2_0, bindings::mk_vec_dot_q2_0_q8a_generic),
            (DType::Q4_1, bindings::mk_vec_dot_q4_1_q8a_generic),
            (DType::Q5_0, bindings::mk_vec_dot_q5_0_q8a_generic),
            (DType::Q5_1, bindings::mk_vec_dot_q5_1_q8a_generic),
            (DType::IQ4_NL, bindings::mk_vec_dot_iq4_nl_q8a_generic),
            (DType::IQ4_XS, bindings::mk_vec_dot_iq4_xs_q8a_generic),
        ] {
            t.0[Self::slot(dtype).expect("a quantized ggml type")] = Some(QuantKernels {
                dot,
                dot4: None,
                rows4: None,
                gemm_q8g: None,
                gemm_q8a: None,
            });
        }
        t
    }

    fn slot(dtype: DType) -> Option<usize> {
        let i = dtype.ggml_type() as usize;
        (i < SLOTS).then_some(i)
    }

    /// The kernels for `dtype`, None for a type no set has a q8a kernel for (floats, FP8).
    #[inline]
    pub fn get(&self, dtype: DType) -> Option<&QuantKernels> {
        self.0.get(Self::slot(dtype)?)?.as_ref()
    }

    fn entry(&mut self, dtype: DType) -> &mut QuantKernels {
        let slot = Self::slot(dtype).expect("a quantized ggml type");
        self.0[slot]
            .as_mut()
            .unwrap_or_else(|| panic!("{} has no generic kernel to override", dtype.name()))
    }

    /// Replaces one-row kernels (the type keeps its other kernels).
    pub fn dot(mut self, kernels: &[(DType, DotQ8a)]) -> Self {
        for &(dtype, f) in kernels {
            self.entry(dtype).dot = f;
        }
        self
    }

    /// Adds four-row kernels.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // only AVX-512 has them
    pub fn dot4(mut self, kernels: &[(DType, Dot4Q8a)]) -> Self {
        for &(dtype, f) in kernels {
            self.entry(dtype).dot4 = Some(f);
        }
        self
    }

    /// Adds four-row decode kernels.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // only AVX2 has them
    pub fn rows4(mut self, kernels: &[(DType, Rows4Q8a)]) -> Self {
        for &(dtype, f) in kernels {
            self.entry(dtype).rows4 = Some(f);
        }
        self
    }

    /// Adds GEMMs against grouped, tiled activations.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // only AVX-512 VBMI has them
    pub fn gemm_q8g(mut self, kernels: &[(DType, GemmQ8g)]) -> Self {
        for &(dtype, f) in kernels {
            self.entry(dtype).gemm_q8g = Some(f);
        }
        self
    }

    /// Adds GEMMs against plain q8a activations.
    #[allow(dead_code)] // filled by the AVX2 and i8mm sets only
    pub fn gemm_q8a(mut self, kernels: &[(DType, GemmQ8a)]) -> Self {
        for &(dtype, f) in kernels {
            self.entry(dtype).gemm_q8a = Some(f);
        }
        self
    }

    /// Whether any type has a GEMM that reads the grouped, tiled activations.
    pub fn reads_tiles(&self) -> bool {
        self.0.iter().flatten().any(|k| k.gemm_q8g.is_some())
    }
}

impl KernelSet {
    /// The kernels for quantized weight type `dtype`.
    ///
    /// # Panics
    /// When `dtype` is not a quantized type moela computes with (the loader rejects those).
    #[inline]
    pub(super) fn quant(&self, dtype: DType) -> &QuantKernels {
        self.quant
            .get(dtype)
            .unwrap_or_else(|| panic!("no q8a kernel for {} weights", dtype.name()))
    }
}

/// `out[t * nrows + r]` = row r of `groups` (`dtype` interleaved by eight rows, `nrows`
/// of them, a multiple of 8) · activation row 0 of `acts[t]`, for every t (at most 8), each
/// bit-identical to [`Q8Acts::dot_x8`] of that token alone, the weights read once. Returns
/// false, writing nothing, where the set has no such kernel.
pub fn dot_x8_tokens(
    k: &KernelSet,
    dtype: DType,
    acts: &[Q8Acts],
    groups: &[u8],
    nrows: usize,
    out: &mut [f32],
) -> bool {
    use crate::tensor::interleave::GROUP;
    let Some(f) = k.x8_multi(dtype) else {
        return false;
    };
    let ntok = acts.len();
    let n = acts.first().map_or(0, |a| a.n);
    let gb = GROUP * dtype.bytes_for(n).unwrap_or(0);
    assert!(
        (1..=8).contains(&ntok)
            && gb > 0
            && nrows % GROUP == 0
            && groups.len() >= nrows / GROUP * gb
            && out.len() >= ntok * nrows
            && acts
                .iter()
                .all(|a| a.n == n && a.qs.len() >= n && a.d.len() >= n / QK && a.s.len() >= n / QK)
    );
    // The tokens' array pointers on the stack: this runs per 64-row block in verification.
    let (mut qs, mut d, mut s) = (
        [std::ptr::null(); 8],
        [std::ptr::null(); 8],
        [std::ptr::null(); 8],
    );
    for (t, a) in acts.iter().enumerate() {
        (qs[t], d[t], s[t]) = (a.qs.as_ptr(), a.d.as_ptr(), a.s.as_ptr());
    }
    for (gi, g) in groups.chunks_exact(gb).take(nrows / GROUP).enumerate() {
        // SAFETY: `g` is one whole group of n-element rows, each acts[t] holds n values and
        // n/32 blocks (asserted), and out[t*nrows + 8*gi .. +8] lies within `out` for every t
        // < ntok (out.len() >= ntok*nrows).
        unsafe {
            f(
                n,
                g.as_ptr().cast(),
                ntok,
                qs.as_ptr(),
                d.as_ptr(),
                s.as_ptr(),
                out.as_mut_ptr().add(GROUP * gi),
                nrows,
            )
        };
    }
    true
}

impl Q8Acts {
    /// `out[r]` = row r of `groups` (`dtype` interleaved by eight rows: whole groups of n
    /// elements, `out.len()` of them a multiple of 8) · activation row `t`: the set's x8
    /// kernel, or (a set without one) the groups put back in the file's layout first.
    pub fn dot_x8(&self, k: &KernelSet, dtype: DType, groups: &[u8], t: usize, out: &mut [f32]) {
        use crate::tensor::interleave::{deinterleave, GROUP};
        let n = self.n;
        let gb = GROUP * dtype.bytes_for(n).unwrap_or(0);
        assert!(gb > 0 && out.len() % GROUP == 0 && groups.len() >= out.len() / GROUP * gb);
        let Some((f, _)) = k.x8(dtype) else {
            let rows = deinterleave(dtype, n, &groups[..out.len() / GROUP * gb]);
            for (r, o) in out.iter_mut().enumerate() {
                *o = self.dot(k, dtype, &rows[r * gb / GROUP..(r + 1) * gb / GROUP], t);
            }
            return;
        };
        let (b0, b1) = (t * n / QK, (t + 1) * n / QK);
        let qs = &self.qs[t * n..(t + 1) * n];
        let (d, s) = (&self.d[b0..b1], &self.s[b0..b1]);
        for (o, g) in out.chunks_exact_mut(GROUP).zip(groups.chunks_exact(gb)) {
            // SAFETY: `g` is one whole x8 group of n-element rows (asserted above), qs/d/s are
            // activation row t's n values and n/32 blocks, and `o` holds the 8 results.
            unsafe {
                f(
                    n,
                    g.as_ptr().cast(),
                    qs.as_ptr(),
                    d.as_ptr(),
                    s.as_ptr(),
                    o.as_mut_ptr(),
                )
            };
        }
    }

    /// Rows of `groups` (`dtype` interleaved by eight rows, `nrows` a multiple of 8) with every
    /// activation row, written to `out[t*ldo + r]`: the set's x8 GEMM, or [`Self::dot_x8`]
    /// per row (a set without one).
    ///
    /// # Safety
    /// `out` must be valid for writes at `t*ldo + r` for every activation row t and r <
    /// nrows, and no other thread may access those elements during the call.
    pub unsafe fn gemm_x8(
        &self,
        k: &KernelSet,
        dtype: DType,
        groups: &[u8],
        nrows: usize,
        out: *mut f32,
        ldo: usize,
    ) {
        use crate::tensor::interleave::GROUP;
        let (n, ntok) = (self.n, self.rows());
        let gb = GROUP * dtype.bytes_for(n).unwrap_or(0);
        assert!(gb > 0 && nrows % GROUP == 0 && groups.len() >= nrows / GROUP * gb && nrows <= ldo);
        if let Some((_, g)) = k.x8(dtype) {
            // SAFETY: `groups` holds nrows/8 whole groups (asserted), qs/d/s hold ntok rows of
            // n values and n/32 blocks, and the caller vouches for out[t*ldo + r].
            unsafe {
                g(
                    n,
                    nrows / GROUP,
                    groups.as_ptr().cast(),
                    ntok,
                    self.qs.as_ptr(),
                    self.d.as_ptr(),
                    self.s.as_ptr(),
                    out,
                    ldo,
                )
            };
            return;
        }
        let mut vals = vec![0.0f32; nrows];
        for t in 0..ntok {
            self.dot_x8(k, dtype, groups, t, &mut vals);
            for (r, &v) in vals.iter().enumerate() {
                // SAFETY: the caller vouches for out[t*ldo + r], r < nrows.
                unsafe { *out.add(t * ldo + r) = v };
            }
        }
    }

    /// Dot product of one stored quantized row (Q8_0, Q4_0 or a K-quant) with activation
    /// row `t`.
    #[inline]
    pub fn dot(&self, k: &KernelSet, dtype: DType, row: &[u8], t: usize) -> f32 {
        let n = self.n;
        debug_assert_eq!(dtype.bytes_for(n), Some(row.len()));
        if let (DType::Q4_0, Some((g, _)), true) = (dtype, k.q4_0_grouped, self.grouped) {
            let x = self.q8g_row(t);
            // SAFETY: `row` is one stored Q4_0 row of n elements and `x` points at activation
            // row t's plain and grouped arrays (n values, n/32 blocks, n/8 lanes), which is
            // what the kernel reads.
            return unsafe { g(n, row.as_ptr().cast(), &x) };
        }
        let f = k.quant(dtype).dot;
        let (b0, b1) = (t * n / QK, (t + 1) * n / QK);
        let qs = &self.qs[t * n..(t + 1) * n];
        let (d, s) = (&self.d[b0..b1], &self.s[b0..b1]);
        // SAFETY: `row` is one stored row of n elements of `dtype` (its length is checked by
        // the caller's shape validation, asserted above), and qs/d/s are the n values and
        // n/32 blocks of activation row t; the kernel reads exactly that.
        unsafe { f(n, row.as_ptr().cast(), qs.as_ptr(), d.as_ptr(), s.as_ptr()) }
    }
}

impl Q8Acts {
    /// Single-input products of consecutive stored rows (`rows` holds whole rows of `dtype`
    /// with `n` elements each): `out[i]` = row i · activation row 0. One call per block of
    /// rows keeps the per-row dispatch out of decode's inner loop.
    pub fn dot_rows(&self, k: &KernelSet, dtype: DType, rows: &[u8], out: &mut [f32]) {
        let rb = dtype.bytes_for(self.n).unwrap_or(0);
        assert!(rb > 0 && rows.len() >= out.len() * rb);
        if let (DType::Q4_0, Some((g, _)), true) = (dtype, k.q4_0_grouped, self.grouped) {
            let x = self.q8g_row(0);
            for (o, row) in out.iter_mut().zip(rows.chunks_exact(rb)) {
                // SAFETY: `row` is one whole stored Q4_0 row of n elements (asserted above)
                // and `x` points at activation row 0's plain and grouped arrays.
                *o = unsafe { g(self.n, row.as_ptr().cast(), &x) };
            }
            return;
        }
        let q = k.quant(dtype);
        let (n, nb) = (self.n, self.n / QK);
        let (qs, d, s) = (&self.qs[..n], &self.d[..nb], &self.s[..nb]);
        let mut done = 0;
        if let Some(f4) = q.rows4 {
            done = out.len() - out.len() % 4;
            for (o, four) in out[..done]
                .chunks_exact_mut(4)
                .zip(rows.chunks_exact(4 * rb))
            {
                // SAFETY: `four` is four whole stored rows of n elements of `dtype`, rb bytes
                // apart (asserted above), qs/d/s are activation row 0's n values and n/32
                // blocks, and `o` has room for the 4 results.
                unsafe {
                    f4(
                        n,
                        four.as_ptr().cast(),
                        rb,
                        qs.as_ptr(),
                        d.as_ptr(),
                        s.as_ptr(),
                        o.as_mut_ptr(),
                    )
                };
            }
        }
        let f = q.dot;
        for (o, row) in out[done..]
            .iter_mut()
            .zip(rows[done * rb..].chunks_exact(rb))
        {
            // SAFETY: `row` is one whole stored row of n elements of `dtype` (asserted above)
            // and qs/d/s are activation row 0's n values and n/32 blocks.
            *o = unsafe { f(n, row.as_ptr().cast(), qs.as_ptr(), d.as_ptr(), s.as_ptr()) };
        }
    }

    /// Products of `nrows` consecutive stored rows (`rows`: whole rows of `dtype`, `n`
    /// elements each) with every activation row, written to `out[t*ldo + r]`, by the kernel
    /// set's prefill GEMM. Returns false, writing nothing, where the set has no GEMM for
    /// `dtype` or these activations lack the layout it reads (fewer than four rows).
    ///
    /// # Safety
    /// `out` must be valid for writes at `t*ldo + r` for every activation row t and r <
    /// nrows, and no other thread may access those elements during the call.
    pub unsafe fn gemm(
        &self,
        k: &KernelSet,
        dtype: DType,
        rows: &[u8],
        nrows: usize,
        out: *mut f32,
        ldo: usize,
    ) -> bool {
        let (n, ntok) = (self.n, self.rows());
        let rb = dtype.bytes_for(n).unwrap_or(0);
        assert!(rb > 0 && rows.len() >= nrows * rb && nrows <= ldo);
        let Some(q) = k.quant.get(dtype) else {
            return false;
        };
        if let (Some(g), true, true) = (q.gemm_q8g, self.grouped, ntok >= 4) {
            let x = self.q8g_row(0);
            // SAFETY: `rows` holds nrows whole rows of dtype (asserted), `x` points at all ntok
            // activation rows' plain, grouped and tile arrays (ntok >= 4, so `group` built
            // the tiles), and the caller vouches for out[t*ldo + r].
            unsafe { g(n, nrows, rows.as_ptr().cast(), rb, ntok, &x, out, ldo) };
            return true;
        }
        let Some(f) = q.gemm_q8a else {
            return false;
        };
        // SAFETY: as above, with the plain q8a arrays of ntok rows (n values, n/32 blocks
        // each).
        unsafe {
            f(
                n,
                nrows,
                rows.as_ptr().cast(),
                rb,
                ntok,
                self.qs.as_ptr(),
                self.d.as_ptr(),
                self.s.as_ptr(),
                out,
                ldo,
            )
        };
        true
    }

    /// Dot products of one stored row with activation rows `t0..t0+k` (k ≤ 4), four at a
    /// time where the kernel set has a four-row kernel.
    #[inline]
    pub fn dot_upto4(
        &self,
        k: &KernelSet,
        dtype: DType,
        row: &[u8],
        t0: usize,
        count: usize,
    ) -> [f32; 4] {
        let mut out = [0.0f32; 4];
        if let (DType::Q4_0, Some((_, g4)), true, 4) = (dtype, k.q4_0_grouped, self.grouped, count)
        {
            let x = self.q8g_row(t0);
            // SAFETY: activation rows t0..t0+4 exist (count == 4) and are laid out row after
            // row in the plain and grouped arrays as the kernel expects; `out` holds 4 values.
            unsafe { g4(self.n, row.as_ptr().cast(), &x, out.as_mut_ptr()) };
            return out;
        }
        match k.quant(dtype).dot4 {
            Some(f) if count == 4 => {
                let n = self.n;
                let b0 = t0 * n / QK;
                let qs = &self.qs[t0 * n..(t0 + 4) * n];
                let (d, s) = (&self.d[b0..b0 + 4 * n / QK], &self.s[b0..b0 + 4 * n / QK]);
                // SAFETY: as in `dot`, for four consecutive activation rows: qs holds 4n
                // values and d/s 4n/32 blocks, laid out row after row as the kernel expects;
                // `out` has room for the 4 results.
                unsafe {
                    f(
                        n,
                        row.as_ptr().cast(),
                        qs.as_ptr(),
                        d.as_ptr(),
                        s.as_ptr(),
                        out.as_mut_ptr(),
                    )
                };
            }
            _ => {
                for (i, o) in out.iter_mut().enumerate().take(count) {
                    *o = self.dot(k, dtype, row, t0 + i);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        active, available, generic, test_util::noise, vec_dot_generic, QuantizeQ8a,
    };
    use super::*;
    use crate::tensor::quant;

    /// Every set's one-row and four-row products of `row` against the generic ones (bound
    /// 1e-5 × the row's summed magnitudes `mags`, per activation row), and, for quantized
    /// (not raw) rows at scale 1, the generic q8a product against the f32 one within the
    /// activation rounding (|x - d·q| ≤ d/2 per element).
    #[allow(clippy::too_many_arguments)]
    fn check_every_set(
        sets: &[KernelSet],
        acts: &Q8Acts,
        dtype: DType,
        row: &[u8],
        mags: &[f32],
        x: &[f32],
        scale: f32,
        raw: bool,
    ) {
        let n = acts.n;
        let want: Vec<f32> = (0..4).map(|r| acts.dot(generic(), dtype, row, r)).collect();
        for k in sets {
            let got = acts.dot(k, dtype, row, 0);
            assert!(
                (got - want[0]).abs() <= 1e-5 * mags[0] + f32::MIN_POSITIVE,
                "{} {dtype:?} n={n} scale={scale} raw={raw}: {got} vs {}",
                k.name,
                want[0]
            );
            let got4 = acts.dot_upto4(k, dtype, row, 0, 4);
            for r in 0..4 {
                assert!(
                    (got4[r] - want[r]).abs() <= 1e-5 * mags[r] + f32::MIN_POSITIVE,
                    "{} four-row {dtype:?} n={n} scale={scale} raw={raw} row \
                     {r}: {} vs {}",
                    k.name,
                    got4[r],
                    want[r]
                );
            }
        }
        if scale == 1.0 && !raw {
            let exact = quant::dot_row(dtype, row, x);
            let mut deq = vec![0.0; n];
            quant::dequantize_row(dtype, row, &mut deq);
            let bound: f32 = (0..n).map(|i| deq[i].abs() * acts.d[i / QK] / 2.0).sum();
            assert!(
                (want[0] - exact).abs() <= bound * 1.01,
                "{dtype:?}: q8a {} vs f32 {exact} (bound {bound})",
                want[0]
            );
        }
    }

    /// The Rust row kernels used by the forward pass agree with the C reference kernels.
    #[test]
    fn rust_rows_match_c_generic() {
        let n = 256;
        let w = noise(1, n, 1.5);
        let x = noise(2, n, 1.1);
        for dtype in DType::ALL {
            let mut bytes = vec![0u8; dtype.bytes_for(n).unwrap()];
            quant::quantize_row(dtype, &w, &mut bytes).unwrap();
            let c = vec_dot_generic(dtype, &bytes, &x).unwrap();
            let r = quant::dot_row(dtype, &bytes, &x);
            let scale: f32 = x.iter().map(|v| v.abs()).sum::<f32>() * 2.0;
            assert!(
                (c - r).abs() <= 1e-5 * scale,
                "{dtype:?}: C {c} vs Rust {r}"
            );
        }
    }

    /// Every ISA kernel against the generic one: all block counts from 1 to 17 (odd counts hit
    /// the single-block tails), tiny and huge scales, and rows containing -128. The integer
    /// block sums are exact, so the only difference is float summation order: bound
    /// 1e-5 × Σ|block scale × block sum| (the magnitude of what is summed).
    #[test]
    fn isa_kernels_match_generic() {
        let sets = available();
        println!(
            "kernel sets here: {:?}",
            sets.iter().map(|s| s.name).collect::<Vec<_>>()
        );
        let mut acts = Q8Acts::default();
        for blocks in 1..=17 {
            let n = blocks * QK;
            for (seed, scale) in [(3u64, 1.0f32), (4, 1e-6), (5, 3e4), (6, 0.0)] {
                let x = noise(seed, n, scale.max(1e-30));
                acts.quantize(&x, n);
                acts.group(); // whatever MOELA_KERNELS says, so grouped kernels are tested too
                for dtype in [DType::Q8_0, DType::Q4_0] {
                    let w = noise(seed + 100, n, scale);
                    let mut row = vec![0u8; dtype.bytes_for(n).unwrap()];
                    quant::quantize_row(dtype, &w, &mut row).unwrap();
                    if dtype == DType::Q8_0 && blocks > 2 {
                        row[2] = 0x80; // -128 in the first block
                    }
                    let reference = acts.dot(generic(), dtype, &row, 0);
                    let mut deq = vec![0.0f32; n];
                    quant::dequantize_row(dtype, &row, &mut deq);
                    let mag: f32 = deq
                        .iter()
                        .zip(&x)
                        .map(|(a, b)| (a * b).abs())
                        .sum::<f32>()
                        .max(f32::MIN_POSITIVE);
                    for k in &sets {
                        let got = acts.dot(k, dtype, &row, 0);
                        assert!(
                            (got - reference).abs() <= 1e-5 * mag,
                            "{} {dtype:?} n={n} scale={scale}: {got} vs {reference}",
                            k.name
                        );
                    }
                }
            }
        }
    }

    /// The K-quant kernels of every ISA against the generic ones: 1 to 9 super-blocks, tiny,
    /// normal, huge and zero scales, quantized rows and raw random bytes (every scale/min/code
    /// pattern, Q6_K scale -128). Integer sub-block sums are exact in every kernel; the float
    /// parts may differ by summation order and by where the scales are multiplied in, so the
    /// bound is 1e-5 × Σ|terms| with |terms| per element = |x|·(|d·sc·q| + |dmin·m|) for
    /// Q4_K/Q5_K (the mins are summed apart from the codes) and |x|·|d·sc|·64 for Q6_K (a
    /// kernel may sum q·x and 32·x apart).
    #[test]
    fn k_quant_kernels_match_generic() {
        use crate::tensor::kquant::{scale_min, QK_K};
        let sets = available();
        let mut acts = Q8Acts::default();
        for sbs in 1..=9usize {
            let n = sbs * QK_K;
            for (seed, scale) in [(3u64, 1.0f32), (4, 1e-4), (5, 3e4), (6, 0.0)] {
                let x = noise(seed, n, scale.max(1e-30));
                acts.quantize(&x, n);
                let xa: Vec<f32> = (0..n)
                    .map(|i| (acts.qs[i] as f32 * acts.d[i / QK]).abs())
                    .collect();
                for dtype in [DType::Q4_K, DType::Q5_K, DType::Q6_K] {
                    for raw in [false, true] {
                        let mut row = vec![0u8; dtype.bytes_for(n).unwrap()];
                        if raw {
                            // Random bytes with sane f16 super-scales.
                            let r = noise(seed + 200, row.len(), 1.0);
                            for (b, v) in row.iter_mut().zip(&r) {
                                *b = ((v + 1.0) * 127.99) as u8;
                            }
                            for blk in row.chunks_mut(dtype.block_bytes()) {
                                let d = half::f16::from_f32(scale * 0.01).to_le_bytes();
                                let at = if dtype == DType::Q6_K { 208 } else { 0 };
                                blk[at..at + 2].copy_from_slice(&d);
                                if dtype != DType::Q6_K {
                                    let dm = half::f16::from_f32(scale * 0.02).to_le_bytes();
                                    blk[2..4].copy_from_slice(&dm);
                                } else {
                                    blk[192] = 0x80;
                                }
                            }
                        } else {
                            let w = noise(seed + 100, n, scale);
                            quant::quantize_row(dtype, &w, &mut row).unwrap();
                        }
                        let mut mag = 0f32;
                        for (sb, blk) in row.chunks(dtype.block_bytes()).enumerate() {
                            let f16 = |at: usize| {
                                half::f16::from_le_bytes([blk[at], blk[at + 1]]).to_f32()
                            };
                            for e in 0..QK_K {
                                let term = if dtype == DType::Q6_K {
                                    (f16(208) * (blk[192 + e / 16] as i8) as f32).abs() * 64.0
                                } else {
                                    let (sc, m) = scale_min(&blk[4..16], e / 32);
                                    (f16(0) * sc as f32).abs() * 31.0 + (f16(2) * m as f32).abs()
                                };
                                mag += term * xa[sb * QK_K + e];
                            }
                        }
                        let reference = acts.dot(generic(), dtype, &row, 0);
                        for k in &sets {
                            let got = acts.dot(k, dtype, &row, 0);
                            assert!(
                                (got - reference).abs() <= 1e-5 * mag + f32::MIN_POSITIVE,
                                "{} {dtype:?} n={n} scale={scale} raw={raw}: {got} vs {reference}",
                                k.name
                            );
                        }
                    }
                }
            }
        }
    }

    /// Four-row kernels against four one-row generic dot products, odd and even block counts.
    #[test]
    fn four_row_kernels_match_generic() {
        let mut acts = Q8Acts::default();
        for blocks in [1usize, 2, 3, 4, 7, 8, 9, 24, 64] {
            let n = blocks * QK;
            let x = noise(11 + blocks as u64, 4 * n, 2.0);
            acts.quantize(&x, n);
            acts.group();
            let k_too = if n % 256 == 0 {
                &[DType::Q4_K, DType::Q5_K, DType::Q6_K][..]
            } else {
                &[]
            };
            for &dtype in [DType::Q8_0, DType::Q4_0, DType::Q5_0, DType::IQ4_NL]
                .iter()
                .chain(k_too)
            {
                let w = noise(12, n, 1.0);
                let mut row = vec![0u8; dtype.bytes_for(n).unwrap()];
                quant::quantize_row(dtype, &w, &mut row).unwrap();
                for k in available() {
                    let got = acts.dot_upto4(&k, dtype, &row, 0, 4);
                    for (r, g) in got.iter().enumerate() {
                        let want = acts.dot(generic(), dtype, &row, r);
                        let mag: f32 =
                            x[r * n..(r + 1) * n].iter().map(|v| v.abs()).sum::<f32>() * 16.0;
                        assert!(
                            (g - want).abs() <= 1e-5 * mag,
                            "{} {dtype:?} n={n} row {r}: {g} vs {want}",
                            k.name
                        );
                    }
                }
            }
        }
    }

    /// Decode's block-of-rows entry point (`dot_rows`, which takes the four-row kernels where
    /// a set has them) against the generic one-row kernel: row counts with and without whole
    /// groups of four, odd and even block counts; nothing past `out` is written. Bound as in
    /// `four_row_kernels_match_generic`.
    #[test]
    fn dot_rows_match_generic() {
        let mut acts = Q8Acts::default();
        for blocks in [1usize, 2, 3, 8, 17, 64] {
            let n = blocks * QK;
            let x = noise(50 + blocks as u64, n, 2.0);
            acts.quantize(&x, n);
            acts.group();
            let mag: f32 = x.iter().map(|v| v.abs()).sum::<f32>() * 16.0;
            let k_too = if n % 256 == 0 {
                &[DType::Q4_K, DType::Q5_K, DType::Q6_K][..]
            } else {
                &[]
            };
            for &dtype in [DType::Q8_0, DType::Q4_0, DType::Q5_0, DType::IQ4_NL]
                .iter()
                .chain(k_too)
            {
                let rb = dtype.bytes_for(n).unwrap();
                let w = noise(51, 11 * n, 1.0);
                let mut rows = vec![0u8; 11 * rb];
                for r in 0..11 {
                    quant::quantize_row(
                        dtype,
                        &w[r * n..(r + 1) * n],
                        &mut rows[r * rb..(r + 1) * rb],
                    )
                    .unwrap();
                }
                for k in available() {
                    for nrows in [1usize, 3, 4, 5, 8, 11] {
                        let mut out = vec![-7.0f32; nrows + 1];
                        acts.dot_rows(&k, dtype, &rows[..nrows * rb], &mut out[..nrows]);
                        assert_eq!(out[nrows], -7.0, "{} wrote past the rows", k.name);
                        for r in 0..nrows {
                            let want = acts.dot(generic(), dtype, &rows[r * rb..(r + 1) * rb], 0);
                            assert!(
                                (out[r] - want).abs() <= 1e-5 * mag,
                                "{} {dtype:?} n={n} rows={nrows} row {r}: {} vs {want}",
                                k.name,
                                out[r]
                            );
                        }
                    }
                }
            }
        }
    }

    /// Every set's prefill GEMM (where it has one for the type) against the generic one-row
    /// kernel: row and token counts that fill and miss the tiles, block counts with and
    /// without whole tiles (the K-quants where n is a multiple of 256); the column past the
    /// rows stays untouched. Bound as in `four_row_kernels_match_generic` (integer sums exact,
    /// float summation order).
    #[test]
    fn gemm_kernels_match_generic() {
        let mut acts = Q8Acts::default();
        let nrows = 7;
        for blocks in [1usize, 3, 8, 16, 17, 24, 72] {
            let n = blocks * QK;
            for ntok in [2usize, 3, 4, 5, 9, 65] {
                let x = noise(40 + ntok as u64, ntok * n, 2.0);
                acts.quantize(&x, n);
                acts.group();
                // K-quants where n is whole super-blocks (72 blocks: more than one chunk of
                // the i8mm GEMMs' unpacked rows)
                let k_types: &[DType] = if blocks % 8 == 0 {
                    &[DType::Q4_K, DType::Q5_K, DType::Q6_K]
                } else {
                    &[]
                };
                for &dtype in [DType::Q8_0, DType::Q4_0, DType::Q5_0, DType::IQ4_NL]
                    .iter()
                    .chain(k_types)
                {
                    let w = noise(41, nrows * n, 1.0);
                    let rb = dtype.bytes_for(n).unwrap();
                    let mut rows = vec![0u8; nrows * rb];
                    for r in 0..nrows {
                        let (a, b) = (r * rb, (r + 1) * rb);
                        quant::quantize_row(dtype, &w[r * n..(r + 1) * n], &mut rows[a..b])
                            .unwrap();
                    }
                    for k in available() {
                        let ldo = nrows + 1;
                        let mut out = vec![-7.0f32; ntok * ldo];
                        // SAFETY: `out` holds ntok*ldo floats, so every t*ldo + r (r < nrows)
                        // is in bounds, and nothing else touches it.
                        let done =
                            unsafe { acts.gemm(&k, dtype, &rows, nrows, out.as_mut_ptr(), ldo) };
                        if !done {
                            continue;
                        }
                        for t in 0..ntok {
                            assert_eq!(
                                out[t * ldo + nrows],
                                -7.0,
                                "{} wrote past the rows",
                                k.name
                            );
                            let mag: f32 =
                                x[t * n..(t + 1) * n].iter().map(|v| v.abs()).sum::<f32>() * 16.0;
                            for r in 0..nrows {
                                let want =
                                    acts.dot(generic(), dtype, &rows[r * rb..(r + 1) * rb], t);
                                let got = out[t * ldo + r];
                                assert!(
                                    (got - want).abs() <= 1e-5 * mag,
                                    "{} {dtype:?} n={n} ntok={ntok} ({r},{t}): {got} vs {want}",
                                    k.name
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// The q8a dot product approximates the f32 one within the activation rounding
    /// (|x - d·q| ≤ d/2 per element).
    #[test]
    fn q8a_dot_close_to_f32() {
        let n = 512;
        let (w, x) = (noise(7, n, 1.0), noise(8, n, 2.0));
        let mut acts = Q8Acts::default();
        acts.quantize(&x, n);
        for dtype in [
            DType::Q8_0,
            DType::Q4_0,
            DType::Q4_K,
            DType::Q5_K,
            DType::Q6_K,
        ] {
            let mut row = vec![0u8; dtype.bytes_for(n).unwrap()];
            quant::quantize_row(dtype, &w, &mut row).unwrap();
            let exact = quant::dot_row(dtype, &row, &x);
            let mut deq = vec![0.0; n];
            quant::dequantize_row(dtype, &row, &mut deq);
            let bound: f32 = (0..n).map(|i| deq[i].abs() * acts.d[i / QK] / 2.0).sum();
            let got = acts.dot(active(), dtype, &row, 0);
            assert!(
                (got - exact).abs() <= bound * 1.01,
                "{dtype:?}: {got} vs {exact} (bound {bound})"
            );
        }
    }

    /// Q4_1, Q5_0, Q5_1, IQ4_NL and IQ4_XS kernels of every ISA (one row and four rows)
    /// against the generic one: 1 to 17 blocks (IQ4_XS: 1 to 9 super-blocks), tiny, normal,
    /// huge and zero scales, quantized rows and raw random bytes (every code, qh, min and
    /// IQ4_XS scale pattern), with sane f16 scales. Integer block sums are exact in every
    /// kernel; the float parts differ by summation order and by where the mins and Q5_0's -16
    /// offset are applied, so the bound is 1e-5 × Σ|terms| with |terms| per element =
    /// |x|·(|f|·48 + |m|) for the legacy types (f the block factor, m the min) and |x|·|f|·127
    /// for IQ4 (f = d or d·(ls-32)). Then the q8a product against the f32 one within the
    /// activation rounding (|x - d·q| ≤ d/2 per element).
    #[test]
    fn legacy_and_iq4_kernels_match_generic() {
        use crate::tensor::iq4::xs_scale;
        let sets = available();
        let mut acts = Q8Acts::default();
        for dtype in [
            DType::Q4_1,
            DType::Q5_0,
            DType::Q5_1,
            DType::IQ4_NL,
            DType::IQ4_XS,
        ] {
            let (bs, bb) = (dtype.block_size(), dtype.block_bytes());
            let max_blocks = if bs == 256 { 9 } else { 17 };
            for blocks in 1..=max_blocks {
                let n = blocks * bs;
                for (seed, scale) in [(3u64, 1.0f32), (4, 1e-4), (5, 3e4), (6, 0.0)] {
                    let x = noise(seed, 4 * n, scale.max(1e-30));
                    acts.quantize(&x, n);
                    for raw in [false, true] {
                        let mut row = vec![0u8; dtype.bytes_for(n).unwrap()];
                        if raw {
                            let r = noise(seed + 300, row.len(), 1.0);
                            for (b, v) in row.iter_mut().zip(&r) {
                                *b = ((v + 1.0) * 127.99) as u8;
                            }
                            for blk in row.chunks_mut(bb) {
                                let d = half::f16::from_f32(scale * 0.01).to_le_bytes();
                                blk[0..2].copy_from_slice(&d);
                                if matches!(dtype, DType::Q4_1 | DType::Q5_1) {
                                    let m = half::f16::from_f32(-scale * 0.2).to_le_bytes();
                                    blk[2..4].copy_from_slice(&m);
                                }
                            }
                        } else {
                            let w = noise(seed + 100, n, scale);
                            quant::quantize_row(dtype, &w, &mut row).unwrap();
                        }
                        let f16 = |blk: &[u8], at: usize| {
                            half::f16::from_le_bytes([blk[at], blk[at + 1]]).to_f32()
                        };
                        let mags: Vec<f32> = (0..4)
                            .map(|r| {
                                let mut mag = 0f32;
                                for e in 0..n {
                                    let blk = &row[(e / bs) * bb..(e / bs + 1) * bb];
                                    let i = r * n + e;
                                    let xa = (acts.qs[i] as f32 * acts.d[i / QK]).abs();
                                    let term = match dtype {
                                        DType::Q4_1 | DType::Q5_1 => {
                                            f16(blk, 0).abs() * 48.0 + f16(blk, 2).abs()
                                        }
                                        DType::Q5_0 => f16(blk, 0).abs() * 48.0,
                                        DType::IQ4_NL => f16(blk, 0).abs() * 127.0,
                                        _ => {
                                            let ls = xs_scale(blk, (e % 256) / 32) - 32;
                                            (f16(blk, 0) * ls as f32).abs() * 127.0
                                        }
                                    };
                                    mag += term * xa;
                                }
                                mag
                            })
                            .collect();
                        check_every_set(&sets, &acts, dtype, &row, &mags, &x[..n], scale, raw);
                    }
                }
            }
        }
    }

    /// Every set's q8a quantization equals the generic one bit for bit.
    #[test]
    fn quantization_is_identical_in_every_set() {
        let n = 32 * 40;
        let mut x = noise(21, n, 3.0);
        x[7] = f32::NAN;
        x[100] = f32::INFINITY;
        x[200..232]
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = i as f32 - 15.5);
        let run = |f: QuantizeQ8a| {
            let (mut q, mut d, mut s) = (vec![0i8; n], vec![0f32; n / QK], vec![0i32; n / QK]);
            // SAFETY: x holds n floats; q, d, s were sized for n values and n/32 blocks.
            unsafe {
                f(
                    n,
                    x.as_ptr(),
                    q.as_mut_ptr(),
                    d.as_mut_ptr(),
                    s.as_mut_ptr(),
                )
            };
            (q, d.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), s)
        };
        let want = run(generic().quantize);
        for k in available() {
            assert!(run(k.quantize) == want, "{}", k.name);
        }
    }

    #[test]
    fn rejects_bad_lengths() {
        assert!(vec_dot_generic(DType::Q8_0, &[0u8; 33], &[0.0; 32]).is_err());
    }

    /// Q2_K and Q3_K kernels of every ISA against the generic ones, as
    /// `k_quant_kernels_match_generic` does for the other K-quants (1 to 9 super-blocks; tiny,
    /// normal, huge and zero scales; quantized rows and raw random bytes, which cover every
    /// scale/min/code/hmask pattern, plus Q3_K scales of -32). Bound: 1e-5 × Σ|terms| with
    /// |terms| per element = |x|·(|d·sc|·3 + |dmin·m|) for Q2_K (codes and mins summed apart)
    /// and |x|·|d·sc|·8 for Q3_K (a kernel may sum code·x and 4·x apart). Then the four-row
    /// kernels against four one-row generic products (same bound per row), and the q8a product
    /// against the f32 one within the activation rounding (|x - d·q| ≤ d/2 per element).
    #[test]
    fn low_k_quant_kernels_match_generic() {
        use crate::tensor::kquant::{q3_scale, QK_K};
        let sets = available();
        let mut acts = Q8Acts::default();
        for sbs in 1..=9usize {
            let n = sbs * QK_K;
            for (seed, scale) in [(3u64, 1.0f32), (4, 1e-4), (5, 3e4), (6, 0.0)] {
                let x = noise(seed, 4 * n, scale.max(1e-30));
                acts.quantize(&x, n);
                for dtype in [DType::Q2_K, DType::Q3_K] {
                    for raw in [false, true] {
                        let mut row = vec![0u8; dtype.bytes_for(n).unwrap()];
                        if raw {
                            let r = noise(seed + 200, row.len(), 1.0);
                            for (b, v) in row.iter_mut().zip(&r) {
                                *b = ((v + 1.0) * 127.99) as u8;
                            }
                            for blk in row.chunks_mut(dtype.block_bytes()) {
                                let d = half::f16::from_f32(scale * 0.01).to_le_bytes();
                                if dtype == DType::Q2_K {
                                    blk[80..82].copy_from_slice(&d);
                                    let dm = half::f16::from_f32(scale * 0.02).to_le_bytes();
                                    blk[82..84].copy_from_slice(&dm);
                                } else {
                                    blk[108..110].copy_from_slice(&d);
                                    blk[96..100].fill(0); // low bits of scales 0-3, 8-11
                                    blk[104] = 0; // high bits of 0, 4, 8, 12: scales 0 and 8 are -32
                                }
                            }
                        } else {
                            let w = noise(seed + 100, n, scale);
                            quant::quantize_row(dtype, &w, &mut row).unwrap();
                        }
                        let bb = dtype.block_bytes();
                        let f16 = |blk: &[u8], at: usize| {
                            half::f16::from_le_bytes([blk[at], blk[at + 1]]).to_f32()
                        };
                        let term = |blk: &[u8], e: usize| {
                            if dtype == DType::Q2_K {
                                let sm = blk[e / 16];
                                (f16(blk, 80) * (sm & 15) as f32).abs() * 3.0
                                    + (f16(blk, 82) * (sm >> 4) as f32).abs()
                            } else {
                                (f16(blk, 108) * q3_scale(&blk[96..108], e / 16) as f32).abs() * 8.0
                            }
                        };
                        let mags: Vec<f32> = (0..4)
                            .map(|r| {
                                let mut mag = 0f32;
                                for (sb, blk) in row.chunks(bb).enumerate() {
                                    for e in 0..QK_K {
                                        let i = r * n + sb * QK_K + e;
                                        let xa = (acts.qs[i] as f32 * acts.d[i / QK]).abs();
                                        mag += term(blk, e) * xa;
                                    }
                                }
                                mag
                            })
                            .collect();
                        check_every_set(&sets, &acts, dtype, &row, &mags, &x[..n], scale, raw);
                    }
                }
            }
        }
    }
}
