//! Float-weight kernels (F32, F16, BF16 weights against f32 activations).

use std::ffi::c_void;

use super::{bindings, KernelSet};
use crate::tensor::DType;

type DotF = unsafe extern "C" fn(usize, *const c_void, *const f32) -> f32;
type Dot4F = unsafe extern "C" fn(usize, *const c_void, *const f32, *mut f32);

/// One ISA's float-weight kernels (f32 activations), indexed by [`float_index`]: one row, and
/// one weight row against four activation rows (prefill).
#[derive(Clone, Copy, Debug)]
pub(super) struct FloatKernels {
    pub dot: [DotF; 3],
    pub dot4: [Dot4F; 3],
}

pub(super) const FLOAT_GENERIC: FloatKernels = FloatKernels {
    dot: [
        bindings::mk_vec_dot_f32_f32_generic,
        bindings::mk_vec_dot_f16_f32_generic,
        bindings::mk_vec_dot_bf16_f32_generic,
    ],
    dot4: [
        bindings::mk_vec_dot4_f32_f32_generic,
        bindings::mk_vec_dot4_f16_f32_generic,
        bindings::mk_vec_dot4_bf16_f32_generic,
    ],
};

/// The kernel slot of a float weight type (F32, F16, BF16); None for every other type (FP8
/// stays in Rust, tensor::fp8).
pub fn float_index(dtype: DType) -> Option<usize> {
    match dtype {
        DType::F32 => Some(0),
        DType::F16 => Some(1),
        DType::BF16 => Some(2),
        _ => None,
    }
}

impl KernelSet {
    /// `out[i]` = stored row i of `rows` (float type `dtype`, `x.len()` elements per row) · `x`,
    /// one kernel call per row without a per-row dispatch (decode).
    pub fn dot_rows_f(&self, dtype: DType, rows: &[u8], x: &[f32], out: &mut [f32]) {
        let n = x.len();
        let (Some(i), Some(rb)) = (float_index(dtype), dtype.bytes_for(n)) else {
            panic!("dot_rows_f: {} is not a float weight type", dtype.name());
        };
        assert!(rows.len() >= out.len() * rb);
        let f = self.float.dot[i];
        for (o, row) in out.iter_mut().zip(rows.chunks_exact(rb.max(1))) {
            // SAFETY: `row` holds one whole stored row of n elements of `dtype` (asserted
            // above; the kernels need no alignment) and `x` holds n floats.
            *o = unsafe { f(n, row.as_ptr().cast(), x.as_ptr()) };
        }
    }

    /// Stored float row `row` · activation rows `0..count` of `x` (`count` ≤ 4 rows of
    /// `x.len() / count` values back to back): the four-row kernel when `count` is 4.
    pub fn dot_upto4_f(&self, dtype: DType, row: &[u8], x: &[f32], count: usize) -> [f32; 4] {
        let mut out = [0.0f32; 4];
        assert!((1..=4).contains(&count) && x.len() % count == 0);
        let n = x.len() / count;
        let Some(i) = float_index(dtype) else {
            panic!("dot_upto4_f: {} is not a float weight type", dtype.name());
        };
        assert_eq!(dtype.bytes_for(n), Some(row.len()));
        if count == 4 {
            // SAFETY: `row` is one stored row of n elements (asserted), `x` holds 4 rows of n
            // floats back to back, as the kernel reads them, and `out` has room for 4 results.
            unsafe { (self.float.dot4[i])(n, row.as_ptr().cast(), x.as_ptr(), out.as_mut_ptr()) };
            return out;
        }
        for (o, xt) in out.iter_mut().zip(x.chunks_exact(n.max(1))) {
            // SAFETY: as above, for one activation row of n floats.
            *o = unsafe { (self.float.dot[i])(n, row.as_ptr().cast(), xt.as_ptr()) };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::{available, generic, test_util::noise};
    use crate::tensor::{quant, DType};

    /// Float-weight kernels (F32, F16, BF16) of every set against the generic ones, through
    /// the Rust entry points: every n from 1 to 70 and longer rows (all vector tails), rows
    /// at odd byte offsets (mmap rows need no alignment), one row at a time, blocks of rows,
    /// and 1 to 4 activation rows. Only the float summation order differs: bound
    /// 1e-5 · Σ|w·x| (the rounding error of either order is about sqrt(n)·2^-24 of that).
    #[test]
    fn float_kernels_match_generic() {
        let sets = available();
        let sizes: Vec<usize> = (1..=70).chain([127, 128, 255, 1000, 4099]).collect();
        for &n in &sizes {
            let x = noise(30 + n as u64, 4 * n, 3.0);
            let w = noise(31 + n as u64, 2 * n, 1.0);
            for dtype in [DType::F32, DType::F16, DType::BF16] {
                let rb = dtype.bytes_for(n).unwrap();
                // Two rows starting at byte 1 of the buffer.
                let mut buf = vec![0u8; 2 * rb + 1];
                for r in 0..2 {
                    let at = 1 + r * rb;
                    quant::quantize_row(dtype, &w[r * n..(r + 1) * n], &mut buf[at..at + rb])
                        .unwrap();
                }
                let rows = &buf[1..];
                let mut deq = vec![0.0f32; 2 * n];
                for r in 0..2 {
                    quant::dequantize_row(
                        dtype,
                        &rows[r * rb..(r + 1) * rb],
                        &mut deq[r * n..(r + 1) * n],
                    );
                }
                let mag = |r: usize, t: usize| -> f32 {
                    (0..n).map(|i| (deq[r * n + i] * x[t * n + i]).abs()).sum()
                };
                let want = |r: usize, t: usize| {
                    let mut o = [0.0f32];
                    generic().dot_rows_f(dtype, &rows[r * rb..], &x[t * n..(t + 1) * n], &mut o);
                    o[0]
                };
                for k in &sets {
                    let mut two = [0.0f32; 2];
                    k.dot_rows_f(dtype, rows, &x[..n], &mut two);
                    for (r, &got) in two.iter().enumerate() {
                        let (w0, m) = (want(r, 0), mag(r, 0));
                        assert!(
                            (got - w0).abs() <= 1e-5 * m,
                            "{} {dtype:?} n={n} row {r}: {got} vs {w0}",
                            k.name
                        );
                    }
                    for count in 1..=4 {
                        let got = k.dot_upto4_f(dtype, &rows[rb..], &x[..count * n], count);
                        for (t, &g) in got.iter().enumerate().take(count) {
                            let (w0, m) = (want(1, t), mag(1, t));
                            assert!(
                                (g - w0).abs() <= 1e-5 * m,
                                "{} {dtype:?} n={n} {count} rows, row {t}: {g} vs {w0}",
                                k.name
                            );
                        }
                    }
                }
            }
        }
    }
}
