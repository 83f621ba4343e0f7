//! Safe wrappers over the C kernels in csrc/, a dispatch table filled once from CPU feature
//! detection, and the thread pool the matrix products run on.
//!
//! Quantized weights (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K) are multiplied with activations quantized
//! once per input row to 8 bits ([`Q8Acts`], the "q8a" layout of csrc/include/moela_kernels.h),
//! so the inner loop is an integer dot product; F32/F16/BF16 weights multiply the f32
//! activations directly. `MOELA_KERNELS=generic|avx2|avx512|avx512vbmi|neon|dotprod|i8mm`
//! forces a kernel set (the golden tests run with each one the machine supports).

#[cfg(not(feature = "bindgen"))]
#[allow(non_camel_case_types, dead_code, clippy::all)]
mod bindings;
#[cfg(feature = "bindgen")]
#[allow(non_camel_case_types, dead_code, clippy::all)]
mod bindings {
    include!(env!("MOELA_GENERATED_BINDINGS"));
}

pub mod aligned;

use aligned::AlignedVec;
use std::ffi::c_void;
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::tensor::DType;

/// Elements per quantization block (the weights' and the activations').
pub use crate::tensor::quant::QK;

type DotQ8a = unsafe extern "C" fn(usize, *const c_void, *const i8, *const f32, *const i32) -> f32;
type Dot4Q8a =
    unsafe extern "C" fn(usize, *const c_void, *const i8, *const f32, *const i32, *mut f32);
type DotQ8g = unsafe extern "C" fn(usize, *const c_void, *const bindings::mk_q8g) -> f32;
type DotF = unsafe extern "C" fn(usize, *const c_void, *const f32) -> f32;
type Dot4F = unsafe extern "C" fn(usize, *const c_void, *const f32, *mut f32);

/// One ISA's float-weight kernels (f32 activations), indexed by [`float_index`]: one row, and
/// one weight row against four activation rows (prefill).
#[derive(Clone, Copy, Debug)]
struct FloatKernels {
    dot: [DotF; 3],
    dot4: [Dot4F; 3],
}

const FLOAT_GENERIC: FloatKernels = FloatKernels {
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
type Dot4Q8g = unsafe extern "C" fn(usize, *const c_void, *const bindings::mk_q8g, *mut f32);
/// Prefill GEMM against q8a rows: (n, nrows, w, row_bytes, ntok, qs, d, s, out, ldo).
type GemmQ8a = unsafe extern "C" fn(
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
type GemmQ8g = unsafe extern "C" fn(
    usize,
    usize,
    *const c_void,
    usize,
    usize,
    *const bindings::mk_q8g,
    *mut f32,
    usize,
);

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
struct MlaKernels {
    scores_f32: MlaScores32,
    scores_f16: MlaScores16,
    accum_f32: MlaAccum32,
    accum_f16: MlaAccum16,
}

const MLA_GENERIC: MlaKernels = MlaKernels {
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

/// One ISA's kernels.
#[derive(Clone, Copy, Debug)]
pub struct KernelSet {
    pub name: &'static str,
    dot_q8_0: DotQ8a,
    dot_q4_0: DotQ8a,
    dot_q4_k: DotQ8a,
    dot_q5_k: DotQ8a,
    dot_q6_k: DotQ8a,
    /// Four activation rows per weight row (prefill), where the ISA has them.
    dot4: Option<Dot4>,
    /// Q4_0 against grouped activations (one row, four rows), where the ISA has them: the
    /// activations then also carry the q8g arrays ([`Q8Acts::group`]).
    q4_0_grouped: Option<(DotQ8g, Dot4Q8g)>,
    /// Q4_0 and Q8_0 GEMMs against grouped, tiled activations (prefill), where the ISA has
    /// them.
    gemm_q8g: Option<(GemmQ8g, GemmQ8g)>,
    /// Q8_0 / Q4_0 GEMMs against plain q8a activations (prefill), where the ISA has them.
    gemm: Option<GemmSet>,
    mla: MlaKernels,
    /// F32/F16/BF16 weights.
    float: FloatKernels,
    /// q8a quantization of activation rows (bit-identical in every set).
    quantize: QuantizeQ8a,
}

/// One ISA's four-row kernels, per weight type.
#[derive(Clone, Copy, Debug)]
struct Dot4 {
    q8_0: Dot4Q8a,
    q4_0: Dot4Q8a,
    q4_k: Dot4Q8a,
    q5_k: Dot4Q8a,
    q6_k: Dot4Q8a,
}

/// One ISA's prefill GEMMs against plain q8a activations.
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)] // only the aarch64 i8mm set fills it
struct GemmSet {
    q8_0: GemmQ8a,
    q4_0: GemmQ8a,
}

type QuantizeQ8a = unsafe extern "C" fn(usize, *const f32, *mut i8, *mut f32, *mut i32);

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

    /// Whether this set reads grouped activations for Q4_0 weights.
    pub fn wants_groups(&self) -> bool {
        self.q4_0_grouped.is_some()
    }
}

const GENERIC: KernelSet = KernelSet {
    name: "generic",
    dot_q8_0: bindings::mk_vec_dot_q8_0_q8a_generic,
    dot_q4_0: bindings::mk_vec_dot_q4_0_q8a_generic,
    dot_q4_k: bindings::mk_vec_dot_q4_k_q8a_generic,
    dot_q5_k: bindings::mk_vec_dot_q5_k_q8a_generic,
    dot_q6_k: bindings::mk_vec_dot_q6_k_q8a_generic,
    dot4: None,
    q4_0_grouped: None,
    gemm_q8g: None,
    gemm: None,
    mla: MLA_GENERIC,
    float: FLOAT_GENERIC,
    quantize: bindings::mk_quantize_row_q8a_generic,
};

/// Every kernel set this CPU can run, best last.
pub fn available() -> Vec<KernelSet> {
    #[allow(unused_mut)]
    let mut sets = vec![GENERIC];
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
        {
            sets.push(KernelSet {
                name: "avx2",
                dot_q8_0: bindings::mk_vec_dot_q8_0_q8a_avx2,
                dot_q4_0: bindings::mk_vec_dot_q4_0_q8a_avx2,
                dot_q4_k: bindings::mk_vec_dot_q4_k_q8a_avx2,
                dot_q5_k: bindings::mk_vec_dot_q5_k_q8a_avx2,
                dot_q6_k: bindings::mk_vec_dot_q6_k_q8a_avx2,
                dot4: None,
                q4_0_grouped: None,
                gemm_q8g: None,
                gemm: None,
                mla: MlaKernels {
                    scores_f32: bindings::mk_mla_scores_f32_avx2,
                    scores_f16: bindings::mk_mla_scores_f16_avx2,
                    accum_f32: bindings::mk_mla_accum_f32_avx2,
                    accum_f16: bindings::mk_mla_accum_f16_avx2,
                },
                float: FloatKernels {
                    dot: [
                        bindings::mk_vec_dot_f32_f32_avx2,
                        bindings::mk_vec_dot_f16_f32_avx2,
                        bindings::mk_vec_dot_bf16_f32_avx2,
                    ],
                    dot4: [
                        bindings::mk_vec_dot4_f32_f32_avx2,
                        bindings::mk_vec_dot4_f16_f32_avx2,
                        bindings::mk_vec_dot4_bf16_f32_avx2,
                    ],
                },
                quantize: bindings::mk_quantize_row_q8a_generic,
            });
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("avx512vnni")
            {
                let avx512 = KernelSet {
                    name: "avx512",
                    dot_q8_0: bindings::mk_vec_dot_q8_0_q8a_avx512,
                    dot_q4_0: bindings::mk_vec_dot_q4_0_q8a_avx512,
                    dot_q4_k: bindings::mk_vec_dot_q4_k_q8a_avx512,
                    dot_q5_k: bindings::mk_vec_dot_q5_k_q8a_avx512,
                    dot_q6_k: bindings::mk_vec_dot_q6_k_q8a_avx512,
                    dot4: Some(Dot4 {
                        q8_0: bindings::mk_vec_dot4_q8_0_q8a_avx512,
                        q4_0: bindings::mk_vec_dot4_q4_0_q8a_avx512,
                        q4_k: bindings::mk_vec_dot4_q4_k_q8a_avx512,
                        q5_k: bindings::mk_vec_dot4_q5_k_q8a_avx512,
                        q6_k: bindings::mk_vec_dot4_q6_k_q8a_avx512,
                    }),
                    q4_0_grouped: None,
                    gemm_q8g: None,
                    gemm: None,
                    mla: MlaKernels {
                        scores_f32: bindings::mk_mla_scores_f32_avx512,
                        scores_f16: bindings::mk_mla_scores_f16_avx512,
                        accum_f32: bindings::mk_mla_accum_f32_avx512,
                        accum_f16: bindings::mk_mla_accum_f16_avx512,
                    },
                    float: FloatKernels {
                        dot: [
                            bindings::mk_vec_dot_f32_f32_avx512,
                            bindings::mk_vec_dot_f16_f32_avx512,
                            bindings::mk_vec_dot_bf16_f32_avx512,
                        ],
                        dot4: [
                            bindings::mk_vec_dot4_f32_f32_avx512,
                            bindings::mk_vec_dot4_f16_f32_avx512,
                            bindings::mk_vec_dot4_bf16_f32_avx512,
                        ],
                    },
                    quantize: bindings::mk_quantize_row_q8a_avx512,
                };
                sets.push(avx512);
                if is_x86_feature_detected!("avx512vbmi") {
                    sets.push(KernelSet {
                        name: "avx512vbmi",
                        q4_0_grouped: Some((
                            bindings::mk_vec_dot_q4_0_q8g_avx512vbmi,
                            bindings::mk_vec_dot4_q4_0_q8g_avx512vbmi,
                        )),
                        gemm_q8g: Some((
                            bindings::mk_gemm_q4_0_q8g_avx512vbmi,
                            bindings::mk_gemm_q8_0_q8g_avx512vbmi,
                        )),
                        ..avx512
                    });
                }
            }
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        const MLA_NEON: MlaKernels = MlaKernels {
            scores_f32: bindings::mk_mla_scores_f32_neon,
            scores_f16: bindings::mk_mla_scores_f16_neon,
            accum_f32: bindings::mk_mla_accum_f32_neon,
            accum_f16: bindings::mk_mla_accum_f16_neon,
        };
        const FLOAT_NEON: FloatKernels = FloatKernels {
            dot: [
                bindings::mk_vec_dot_f32_f32_neon,
                bindings::mk_vec_dot_f16_f32_neon,
                bindings::mk_vec_dot_bf16_f32_neon,
            ],
            dot4: [
                bindings::mk_vec_dot4_f32_f32_neon,
                bindings::mk_vec_dot4_f16_f32_neon,
                bindings::mk_vec_dot4_bf16_f32_neon,
            ],
        };
        sets.push(KernelSet {
            name: "neon",
            dot_q8_0: bindings::mk_vec_dot_q8_0_q8a_neon,
            dot_q4_0: bindings::mk_vec_dot_q4_0_q8a_neon,
            dot_q4_k: bindings::mk_vec_dot_q4_k_q8a_neon,
            dot_q5_k: bindings::mk_vec_dot_q5_k_q8a_neon,
            dot_q6_k: bindings::mk_vec_dot_q6_k_q8a_neon,
            dot4: None,
            q4_0_grouped: None,
            gemm_q8g: None,
            gemm: None,
            mla: MLA_NEON,
            float: FLOAT_NEON,
            quantize: bindings::mk_quantize_row_q8a_generic,
        });
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            let dotprod = KernelSet {
                name: "dotprod",
                dot_q8_0: bindings::mk_vec_dot_q8_0_q8a_dotprod,
                dot_q4_0: bindings::mk_vec_dot_q4_0_q8a_dotprod,
                dot_q4_k: bindings::mk_vec_dot_q4_k_q8a_dotprod,
                dot_q5_k: bindings::mk_vec_dot_q5_k_q8a_dotprod,
                dot_q6_k: bindings::mk_vec_dot_q6_k_q8a_dotprod,
                dot4: None,
                q4_0_grouped: None,
                gemm_q8g: None,
                gemm: None,
                mla: MLA_NEON,
                float: FLOAT_NEON,
                quantize: bindings::mk_quantize_row_q8a_generic,
            };
            sets.push(dotprod);
            // The smmla prefill GEMMs (csrc/arm/i8mm.c, built for dotprod + i8mm).
            if std::arch::is_aarch64_feature_detected!("i8mm") {
                sets.push(KernelSet {
                    name: "i8mm",
                    gemm: Some(GemmSet {
                        q8_0: bindings::mk_gemm_q8_0_q8a_i8mm,
                        q4_0: bindings::mk_gemm_q4_0_q8a_i8mm,
                    }),
                    ..dotprod
                });
            }
        }
    }
    sets
}

/// The kernel set in use: `MOELA_KERNELS` if it names an available set, else the best.
pub fn active() -> &'static KernelSet {
    static ACTIVE: OnceLock<KernelSet> = OnceLock::new();
    ACTIVE.get_or_init(|| {
        let sets = available();
        match std::env::var("MOELA_KERNELS") {
            Ok(want) => match sets.iter().find(|s| s.name == want) {
                Some(s) => *s,
                None => {
                    let names: Vec<_> = sets.iter().map(|s| s.name).collect();
                    eprintln!("moela: MOELA_KERNELS={want} is not available here ({names:?}); using the best");
                    *sets.last().unwrap_or(&GENERIC)
                }
            },
            Err(_) => *sets.last().unwrap_or(&GENERIC),
        }
    })
}

/// A row (or rows) of activations quantized to 8 bits per block of 32 (64-byte aligned
/// arrays: the kernels read them with 64-byte loads).
#[derive(Default, Debug, Clone)]
pub struct Q8Acts {
    pub qs: AlignedVec<i8>,
    pub d: AlignedVec<f32>,
    pub s: AlignedVec<i32>,
    /// Elements per row.
    pub n: usize,
    /// The q8g arrays (see csrc/include/moela_kernels.h), filled by [`Q8Acts::group`]:
    /// `n` values and `n/8` scales and offsets per row.
    pub gqs: AlignedVec<i8>,
    pub gd: AlignedVec<f32>,
    pub gs: AlignedVec<i32>,
    /// The q8g tile arrays (16 blocks per tile): `n` values and `n/32` scales and offsets per
    /// row.
    pub tqs: AlignedVec<i8>,
    pub td: AlignedVec<f32>,
    pub ts: AlignedVec<i32>,
    /// Whether the q8g arrays match the current rows.
    pub grouped: bool,
}

impl Q8Acts {
    /// Quantizes `rows` rows of `n` values (`x.len() == rows * n`, `n` a multiple of 32).
    pub fn quantize(&mut self, x: &[f32], n: usize) {
        debug_assert!(n % QK == 0 && x.len() % n == 0);
        let nb = x.len() / QK;
        self.n = n;
        self.qs.resize(x.len(), 0);
        self.d.resize(nb, 0.0);
        self.s.resize(nb, 0);
        // SAFETY: the three buffers were just sized for x.len() values and x.len()/32 blocks,
        // which is exactly what the kernel writes; x holds x.len() floats.
        unsafe {
            (active().quantize)(
                x.len(),
                x.as_ptr(),
                self.qs.as_mut_ptr(),
                self.d.as_mut_ptr(),
                self.s.as_mut_ptr(),
            )
        }
        self.grouped = false;
        if active().wants_groups() {
            self.group();
        }
    }

    /// Fills the q8g arrays from the plain ones (done by `quantize` when the active kernel
    /// set reads them).
    pub fn group(&mut self) {
        let n = self.n;
        let rows = self.qs.len().checked_div(n).unwrap_or(0);
        self.gqs.resize(rows * n, 0);
        self.gd.resize(rows * n / 8, 0.0);
        self.gs.resize(rows * n / 8, 0);
        // Tiles feed only the four-row kernel: a single input (decode) skips them.
        let tiled = rows >= 4;
        let tile_rows = if tiled { rows } else { 0 };
        self.tqs.resize(tile_rows * n, 0);
        self.td.resize(tile_rows * n / QK, 0.0);
        self.ts.resize(tile_rows * n / QK, 0);
        for r in 0..rows {
            let (b0, b1) = (r * n / QK, (r + 1) * n / QK);
            let (g0, g1) = (r * n / 8, (r + 1) * n / 8);
            // SAFETY: row r's plain arrays hold n values and n/32 blocks and its grouped
            // arrays n values and n/8 lanes (sized just above), which is what it touches.
            unsafe {
                bindings::mk_group_q8a_generic(
                    n,
                    self.qs[r * n..(r + 1) * n].as_ptr(),
                    self.d[b0..b1].as_ptr(),
                    self.s[b0..b1].as_ptr(),
                    self.gqs[r * n..(r + 1) * n].as_mut_ptr(),
                    self.gd[g0..g1].as_mut_ptr(),
                    self.gs[g0..g1].as_mut_ptr(),
                )
            }
            if !tiled {
                continue;
            }
            // SAFETY: as above, for row r's tile arrays (n values, n/32 blocks).
            unsafe {
                bindings::mk_tile_q8a_generic(
                    n,
                    self.qs[r * n..(r + 1) * n].as_ptr(),
                    self.d[b0..b1].as_ptr(),
                    self.s[b0..b1].as_ptr(),
                    self.tqs[r * n..(r + 1) * n].as_mut_ptr(),
                    self.td[b0..b1].as_mut_ptr(),
                    self.ts[b0..b1].as_mut_ptr(),
                )
            }
        }
        self.grouped = true;
    }

    /// The q8g pointers of activation row `t` (only valid while `self` is borrowed).
    fn q8g_row(&self, t: usize) -> bindings::mk_q8g {
        let (n, b0, g0) = (self.n, t * self.n / QK, t * self.n / 8);
        bindings::mk_q8g {
            qs: self.qs[t * n..].as_ptr(),
            d: self.d[b0..].as_ptr(),
            s: self.s[b0..].as_ptr(),
            gqs: self.gqs[t * n..].as_ptr(),
            gd: self.gd[g0..].as_ptr(),
            gs: self.gs[g0..].as_ptr(),
            // Empty (never read) when fewer than four rows were quantized: only the
            // four-row kernel reads tiles.
            tqs: self.tqs.as_ptr().wrapping_add(t * n),
            td: self.td.as_ptr().wrapping_add(b0),
            ts: self.ts.as_ptr().wrapping_add(b0),
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
        let f = match dtype {
            DType::Q8_0 => k.dot_q8_0,
            DType::Q4_K => k.dot_q4_k,
            DType::Q5_K => k.dot_q5_k,
            DType::Q6_K => k.dot_q6_k,
            _ => k.dot_q4_0,
        };
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
        for (o, row) in out.iter_mut().zip(rows.chunks_exact(rb)) {
            *o = self.dot(k, dtype, row, 0);
        }
    }

    /// Activation rows held.
    pub fn rows(&self) -> usize {
        self.qs.len().checked_div(self.n).unwrap_or(0)
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
        let grouped = match (dtype, k.gemm_q8g) {
            (DType::Q4_0, Some((g, _))) | (DType::Q8_0, Some((_, g))) => Some(g),
            _ => None,
        };
        if let (Some(g), true, true) = (grouped, self.grouped, ntok >= 4) {
            let x = self.q8g_row(0);
            // SAFETY: `rows` holds nrows whole rows of dtype (asserted), `x` points at all ntok
            // activation rows' plain, grouped and tile arrays (ntok >= 4, so `group` built
            // the tiles), and the caller vouches for out[t*ldo + r].
            unsafe { g(n, nrows, rows.as_ptr().cast(), rb, ntok, &x, out, ldo) };
            return true;
        }
        let f = match (k.gemm, dtype) {
            (Some(g), DType::Q8_0) => g.q8_0,
            (Some(g), DType::Q4_0) => g.q4_0,
            _ => return false,
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
        match k.dot4 {
            Some(k4) if count == 4 && dtype.is_quantized() => {
                let n = self.n;
                let f = match dtype {
                    DType::Q8_0 => k4.q8_0,
                    DType::Q4_K => k4.q4_k,
                    DType::Q5_K => k4.q5_k,
                    DType::Q6_K => k4.q6_k,
                    _ => k4.q4_0,
                };
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

/// Sets the number of worker threads (once, before the first parallel product; later calls
/// are ignored). Default: the machine's available parallelism.
pub fn set_threads(n: usize) -> Result<()> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("moela-worker-{i}"))
        .build_global()
        .map_err(|e| Error::InvalidArg(format!("thread pool: {e}")))
}

/// Worker threads in use.
pub fn threads() -> usize {
    rayon::current_num_threads()
}

/// Dot product of one stored row (`bytes`, GGUF layout of `dtype`) with `x`, computed by the
/// portable C reference kernel on f32 activations.
pub fn vec_dot_generic(dtype: DType, bytes: &[u8], x: &[f32]) -> Result<f32> {
    let n = x.len();
    if dtype.bytes_for(n) != Some(bytes.len()) {
        return Err(Error::InvalidArg(format!(
            "vec_dot: {} bytes is not a {}-element {} row",
            bytes.len(),
            n,
            dtype.name()
        )));
    }
    if dtype == DType::F8E4M3 {
        return Err(Error::InvalidArg(
            "vec_dot: F8E4M3 has no C kernel (it is computed in Rust, tensor::fp8)".into(),
        ));
    }
    let w = bytes.as_ptr();
    // SAFETY: the length check above guarantees `bytes` holds exactly one row of `n`
    // elements of `dtype` and `x` holds `n` floats, and the kernels read only that much.
    // Every kernel reads its row bytewise or with unaligned loads (no alignment needed).
    unsafe {
        Ok(match dtype {
            DType::Q8_0 => bindings::mk_vec_dot_q8_0_f32_generic(n, w.cast(), x.as_ptr()),
            DType::Q4_0 => bindings::mk_vec_dot_q4_0_f32_generic(n, w.cast(), x.as_ptr()),
            DType::Q4_K => bindings::mk_vec_dot_q4_k_f32_generic(n, w.cast(), x.as_ptr()),
            DType::Q5_K => bindings::mk_vec_dot_q5_k_f32_generic(n, w.cast(), x.as_ptr()),
            DType::Q6_K => bindings::mk_vec_dot_q6_k_f32_generic(n, w.cast(), x.as_ptr()),
            DType::F32 => bindings::mk_vec_dot_f32_f32_generic(n, w.cast(), x.as_ptr()),
            DType::F16 => bindings::mk_vec_dot_f16_f32_generic(n, w.cast(), x.as_ptr()),
            DType::BF16 => bindings::mk_vec_dot_bf16_f32_generic(n, w.cast(), x.as_ptr()),
            DType::F8E4M3 => 0.0, // returned above
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::quant;

    /// A deterministic pseudo-random stream (xorshift), enough for test inputs.
    fn noise(seed: u64, n: usize, scale: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
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
                    let reference = acts.dot(&GENERIC, dtype, &row, 0);
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
                        let reference = acts.dot(&GENERIC, dtype, &row, 0);
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
            for &dtype in [DType::Q8_0, DType::Q4_0].iter().chain(k_too) {
                let w = noise(12, n, 1.0);
                let mut row = vec![0u8; dtype.bytes_for(n).unwrap()];
                quant::quantize_row(dtype, &w, &mut row).unwrap();
                for k in available() {
                    let got = acts.dot_upto4(&k, dtype, &row, 0, 4);
                    for (r, g) in got.iter().enumerate() {
                        let want = acts.dot(&GENERIC, dtype, &row, r);
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
                    GENERIC.dot_rows_f(dtype, &rows[r * rb..], &x[t * n..(t + 1) * n], &mut o);
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

    /// Every set's prefill GEMM (where it has one for the type) against the generic one-row
    /// kernel: row and token counts that fill and miss the tiles, block counts with and
    /// without whole tiles; the column past the rows stays untouched. Bound as in
    /// `four_row_kernels_match_generic` (integer sums exact, float summation order).
    #[test]
    fn gemm_kernels_match_generic() {
        let mut acts = Q8Acts::default();
        let nrows = 7;
        for blocks in [1usize, 3, 16, 17] {
            let n = blocks * QK;
            for ntok in [2usize, 3, 4, 5, 9, 65] {
                let x = noise(40 + ntok as u64, ntok * n, 2.0);
                acts.quantize(&x, n);
                acts.group();
                for dtype in [DType::Q8_0, DType::Q4_0] {
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
                                    acts.dot(&GENERIC, dtype, &rows[r * rb..(r + 1) * rb], t);
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
        let want = run(GENERIC.quantize);
        for k in available() {
            assert!(run(k.quantize) == want, "{}", k.name);
        }
    }

    #[test]
    fn rejects_bad_lengths() {
        assert!(vec_dot_generic(DType::Q8_0, &[0u8; 33], &[0.0; 32]).is_err());
    }

    #[test]
    fn f16_conversion_matches_half() {
        for bits in [
            0u16, 1, 0x03ff, 0x0400, 0x3c00, 0xbc00, 0x7bff, 0x7c00, 0xfc00, 0x8001,
        ] {
            // SAFETY: pure function of its argument.
            let c = unsafe { bindings::mk_f16_to_f32(bits) };
            assert_eq!(
                c.to_bits(),
                half::f16::from_bits(bits).to_f32().to_bits(),
                "{bits:#x}"
            );
        }
    }
}
