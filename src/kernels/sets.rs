//! The kernel sets: which C kernels each ISA provides, what this CPU can run, and the one in
//! use (`MOELA_KERNELS` or the best).

use std::sync::OnceLock;

use super::float::{FloatKernels, FLOAT_GENERIC};
use super::mla::{MlaKernels, MLA_GENERIC};
use super::quant::{Dot4Q8g, DotQ8g, DotX8, DotX8Multi, GemmX8, QuantTable, QuantizeQ8a};
#[cfg(target_arch = "x86_64")]
use super::quant::{DotQ8a, GemmQ8a, Rows4Q8a};
use super::{bindings, DType};

/// One ISA's kernels.
#[derive(Clone, Copy, Debug)]
pub struct KernelSet {
    pub name: &'static str,
    /// Quantized weights against q8a activations, per weight type.
    pub(super) quant: QuantTable,
    /// Q4_0 against grouped activations (one row, four rows), where the ISA has them: the
    /// activations then also carry the q8g arrays ([`super::Q8Acts::group`]).
    pub(super) q4_0_grouped: Option<(DotQ8g, Dot4Q8g)>,
    /// Q4_0, Q5_0, Q4_K, Q5_K, Q6_K, Q4_1, Q5_1, Q2_K, Q3_K, IQ4_NL and IQ4_XS interleaved by eight rows (decode, GEMM), where the
    /// set is faster on that layout than on the file's: the loader then interleaves those
    /// weights (src/tensor/interleave.rs).
    pub(super) x8: X8Kernels,
    pub(super) mla: MlaKernels,
    /// F32/F16/BF16 weights.
    pub(super) float: FloatKernels,
    /// q8a quantization of activation rows (bit-identical in every set).
    pub(super) quantize: QuantizeQ8a,
}

impl KernelSet {
    /// Whether the loader should interleave weights of `dtype` by eight rows for this set.
    pub fn wants_x8(&self, dtype: DType) -> bool {
        self.x8(dtype).is_some()
    }

    /// The several-token x8 decode kernel for `dtype`, if the set has one.
    pub(super) fn x8_multi(&self, dtype: DType) -> Option<DotX8Multi> {
        match dtype {
            DType::Q4_0 => self.x8.q4_0_multi,
            DType::Q5_0 => self.x8.q5_0_multi,
            DType::Q4_K => self.x8.q4_k_multi,
            DType::Q5_K => self.x8.q5_k_multi,
            DType::Q6_K => self.x8.q6_k_multi,
            DType::Q4_1 => self.x8.q4_1_multi,
            DType::Q5_1 => self.x8.q5_1_multi,
            DType::IQ4_NL => self.x8.iq4_nl_multi,
            DType::IQ4_XS => self.x8.iq4_xs_multi,
            DType::Q2_K => self.x8.q2_k_multi,
            DType::Q3_K => self.x8.q3_k_multi,
            _ => None,
        }
    }

    /// The x8 kernels (decode, GEMM) for `dtype`, if the set has them.
    pub(super) fn x8(&self, dtype: DType) -> Option<(DotX8, GemmX8)> {
        match dtype {
            DType::Q4_0 => self.x8.q4_0,
            DType::Q5_0 => self.x8.q5_0,
            DType::Q4_K => self.x8.q4_k,
            DType::Q5_K => self.x8.q5_k,
            DType::Q6_K => self.x8.q6_k,
            DType::Q4_1 => self.x8.q4_1,
            DType::Q5_1 => self.x8.q5_1,
            DType::IQ4_NL => self.x8.iq4_nl,
            DType::IQ4_XS => self.x8.iq4_xs,
            DType::Q2_K => self.x8.q2_k,
            DType::Q3_K => self.x8.q3_k,
            _ => None,
        }
    }

    /// Whether this set reads the grouped (q8g) activation arrays, which `Q8Acts::quantize`
    /// then fills.
    pub fn wants_groups(&self) -> bool {
        self.q4_0_grouped.is_some() || self.quant.reads_tiles()
    }
}

/// The interleaved-by-eight kernels of a set, per type that has the layout.
#[derive(Clone, Copy, Debug)]
pub(super) struct X8Kernels {
    pub q4_0: Option<(DotX8, GemmX8)>,
    pub q5_0: Option<(DotX8, GemmX8)>,
    pub q4_k: Option<(DotX8, GemmX8)>,
    pub q5_k: Option<(DotX8, GemmX8)>,
    pub q6_k: Option<(DotX8, GemmX8)>,
    pub iq4_nl: Option<(DotX8, GemmX8)>,
    pub iq4_xs: Option<(DotX8, GemmX8)>,
    /// The decode kernels for a few tokens at once, bit-identical to one at a time.
    pub q4_0_multi: Option<DotX8Multi>,
    pub q5_0_multi: Option<DotX8Multi>,
    pub q4_k_multi: Option<DotX8Multi>,
    pub q5_k_multi: Option<DotX8Multi>,
    pub q6_k_multi: Option<DotX8Multi>,
    pub q4_1: Option<(DotX8, GemmX8)>,
    pub q5_1: Option<(DotX8, GemmX8)>,
    pub q4_1_multi: Option<DotX8Multi>,
    pub q5_1_multi: Option<DotX8Multi>,
    pub iq4_nl_multi: Option<DotX8Multi>,
    pub iq4_xs_multi: Option<DotX8Multi>,
    pub q2_k: Option<(DotX8, GemmX8)>,
    pub q2_k_multi: Option<DotX8Multi>,
    pub q3_k: Option<(DotX8, GemmX8)>,
    pub q3_k_multi: Option<DotX8Multi>,
}

/// The portable C kernels, which every other set falls back to type by type.
pub fn generic() -> &'static KernelSet {
    static GENERIC: OnceLock<KernelSet> = OnceLock::new();
    GENERIC.get_or_init(|| KernelSet {
        name: "generic",
        quant: QuantTable::generic(),
        q4_0_grouped: None,
        x8: X8Kernels {
            q4_0: None,
            q5_0: None,
            q4_k: None,
            q5_k: None,
            q6_k: None,
            iq4_nl: None,
            iq4_xs: None,
            q4_0_multi: None,
            q5_0_multi: None,
            q4_k_multi: None,
            q5_k_multi: None,
            q6_k_multi: None,
            q4_1: None,
            q5_1: None,
            q4_1_multi: None,
            q5_1_multi: None,
            iq4_nl_multi: None,
            iq4_xs_multi: None,
            q2_k: None,
            q2_k_multi: None,
            q3_k: None,
            q3_k_multi: None,
        },
        mla: MLA_GENERIC,
        float: FLOAT_GENERIC,
        quantize: bindings::mk_quantize_row_q8a_generic,
    })
}

/// Every kernel set this CPU can run, best last.
pub fn available() -> Vec<KernelSet> {
    let generic = *generic();
    #[allow(unused_mut)]
    let mut sets = vec![generic];
    #[cfg(target_arch = "x86_64")]
    {
        use bindings as b;
        if is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
        {
            // AVX2 kernels the AVX-512 sets use as well: the i-quants have no AVX-512 versions,
            // the Q5_0/IQ4_NL four-row decode kernels and the legacy/IQ4 GEMMs beat the AVX-512 one- and
            // four-row kernels (Q5_0 decode 16.5 vs 13.9 GB/s, prefill 48 vs 29 GMAC/s, one
            // thread, docs/PERFORMANCE.md).
            let shared_dot: [(DType, DotQ8a); 13] = [
                (DType::TQ1_0, b::mk_vec_dot_tq1_0_q8a_avx2),
                (DType::TQ2_0, b::mk_vec_dot_tq2_0_q8a_avx2),
                (DType::IQ2_XXS, b::mk_vec_dot_iq2_xxs_q8a_avx2),
                (DType::IQ3_XXS, b::mk_vec_dot_iq3_xxs_q8a_avx2),
                (DType::IQ2_XS, b::mk_vec_dot_iq2_xs_q8a_avx2),
                (DType::IQ2_S, b::mk_vec_dot_iq2_s_q8a_avx2),
                (DType::IQ3_S, b::mk_vec_dot_iq3_s_q8a_avx2),
                (DType::IQ1_S, b::mk_vec_dot_iq1_s_q8a_avx2),
                (DType::IQ1_M, b::mk_vec_dot_iq1_m_q8a_avx2),
                (DType::MXFP4, b::mk_vec_dot_mxfp4_q8a_avx2),
                (DType::NVFP4, b::mk_vec_dot_nvfp4_q8a_avx2),
                (DType::Q1_0, b::mk_vec_dot_q1_0_q8a_avx2),
                (DType::Q2_0, b::mk_vec_dot_q2_0_q8a_avx2),
            ];
            let shared_rows4: [(DType, Rows4Q8a); 2] = [
                (DType::Q5_0, b::mk_vec_dot_rows4_q5_0_q8a_avx2),
                (DType::IQ4_NL, b::mk_vec_dot_rows4_iq4_nl_q8a_avx2),
            ];
            let shared_gemm: [(DType, GemmQ8a); 5] = [
                (DType::Q5_0, b::mk_gemm_q5_0_q8a_avx2),
                (DType::IQ4_NL, b::mk_gemm_iq4_nl_q8a_avx2),
                (DType::Q4_1, b::mk_gemm_q4_1_q8a_avx2),
                (DType::Q5_1, b::mk_gemm_q5_1_q8a_avx2),
                (DType::IQ4_XS, b::mk_gemm_iq4_xs_q8a_avx2),
            ];
            // The codebook i-quants' prefill: each row unpacked once for 64 tokens (the decode
            // kernels spend most of their time on the grid and sign lookups).
            let iquant_gemm: [(DType, GemmQ8a); 7] = [
                (DType::IQ2_XXS, b::mk_gemm_iq2_xxs_q8a_avx2),
                (DType::IQ3_XXS, b::mk_gemm_iq3_xxs_q8a_avx2),
                (DType::IQ2_XS, b::mk_gemm_iq2_xs_q8a_avx2),
                (DType::IQ2_S, b::mk_gemm_iq2_s_q8a_avx2),
                (DType::IQ3_S, b::mk_gemm_iq3_s_q8a_avx2),
                (DType::IQ1_S, b::mk_gemm_iq1_s_q8a_avx2),
                (DType::IQ1_M, b::mk_gemm_iq1_m_q8a_avx2),
            ];
            let avx2 = KernelSet {
                name: "avx2",
                quantize: b::mk_quantize_row_q8a_avx2,
                // The AVX-512 sets start from `generic` and take only the shared ones.
                quant: generic
                    .quant
                    .dot(&[
                        (DType::Q8_0, b::mk_vec_dot_q8_0_q8a_avx2),
                        (DType::Q4_0, b::mk_vec_dot_q4_0_q8a_avx2),
                        (DType::Q4_K, b::mk_vec_dot_q4_k_q8a_avx2),
                        (DType::Q5_K, b::mk_vec_dot_q5_k_q8a_avx2),
                        (DType::Q6_K, b::mk_vec_dot_q6_k_q8a_avx2),
                        (DType::Q2_K, b::mk_vec_dot_q2_k_q8a_avx2),
                        (DType::Q3_K, b::mk_vec_dot_q3_k_q8a_avx2),
                        (DType::Q4_1, b::mk_vec_dot_q4_1_q8a_avx2),
                        (DType::Q5_0, b::mk_vec_dot_q5_0_q8a_avx2),
                        (DType::Q5_1, b::mk_vec_dot_q5_1_q8a_avx2),
                        (DType::IQ4_NL, b::mk_vec_dot_iq4_nl_q8a_avx2),
                        (DType::IQ4_XS, b::mk_vec_dot_iq4_xs_q8a_avx2),
                    ])
                    .dot(&shared_dot)
                    .rows4(&[
                        (DType::Q4_0, b::mk_vec_dot_rows4_q4_0_q8a_avx2),
                        (DType::Q8_0, b::mk_vec_dot_rows4_q8_0_q8a_avx2),
                    ])
                    .rows4(&shared_rows4)
                    .gemm_q8a(&shared_gemm)
                    .gemm_q8a(&iquant_gemm)
                    .gemm_q8a(&[
                        (DType::Q4_0, b::mk_gemm_q4_0_q8a_avx2),
                        (DType::Q8_0, b::mk_gemm_q8_0_q8a_avx2),
                        (DType::Q4_K, b::mk_gemm_q4_k_q8a_avx2),
                        (DType::Q5_K, b::mk_gemm_q5_k_q8a_avx2),
                        (DType::Q6_K, b::mk_gemm_q6_k_q8a_avx2),
                    ]),
                mla: MlaKernels {
                    scores_f32: b::mk_mla_scores_f32_avx2,
                    scores_f16: b::mk_mla_scores_f16_avx2,
                    accum_f32: b::mk_mla_accum_f32_avx2,
                    accum_f16: b::mk_mla_accum_f16_avx2,
                },
                float: FloatKernels {
                    dot: [
                        b::mk_vec_dot_f32_f32_avx2,
                        b::mk_vec_dot_f16_f32_avx2,
                        b::mk_vec_dot_bf16_f32_avx2,
                    ],
                    dot4: [
                        b::mk_vec_dot4_f32_f32_avx2,
                        b::mk_vec_dot4_f16_f32_avx2,
                        b::mk_vec_dot4_bf16_f32_avx2,
                    ],
                },
                // Q4_0 and Q4_K interleaved by eight rows: the one-row and four-row kernels on
                // the file's layout reach 16.7 / 11.9 GB/s per thread in L2 and 71% / 74% of
                // the read bandwidth on two threads (AMD EPYC Zen 3), the x8 kernels 2.0 /
                // 2.2 times that in L2; Q5_0 and Q6_K (a Q4_K_M file's expert downs and
                // output head) 2.0 / 1.7 times (docs/PERFORMANCE.md).
                x8: X8Kernels {
                    q4_0: Some((b::mk_vec_dot_x8_q4_0_q8a_avx2, b::mk_gemm_x8_q4_0_q8a_avx2)),
                    q5_0: Some((b::mk_vec_dot_x8_q5_0_q8a_avx2, b::mk_gemm_x8_q5_0_q8a_avx2)),
                    q4_k: Some((b::mk_vec_dot_x8_q4_k_q8a_avx2, b::mk_gemm_x8_q4_k_q8a_avx2)),
                    q5_k: Some((b::mk_vec_dot_x8_q5_k_q8a_avx2, b::mk_gemm_x8_q5_k_q8a_avx2)),
                    q6_k: Some((b::mk_vec_dot_x8_q6_k_q8a_avx2, b::mk_gemm_x8_q6_k_q8a_avx2)),
                    q4_0_multi: Some(b::mk_vec_dot_x8_q4_0_q8a_multi_avx2),
                    q5_0_multi: Some(b::mk_vec_dot_x8_q5_0_q8a_multi_avx2),
                    q4_k_multi: Some(b::mk_vec_dot_x8_q4_k_q8a_multi_avx2),
                    q5_k_multi: Some(b::mk_vec_dot_x8_q5_k_q8a_multi_avx2),
                    q6_k_multi: Some(b::mk_vec_dot_x8_q6_k_q8a_multi_avx2),
                    q4_1: Some((b::mk_vec_dot_x8_q4_1_q8a_avx2, b::mk_gemm_x8_q4_1_q8a_avx2)),
                    q5_1: Some((b::mk_vec_dot_x8_q5_1_q8a_avx2, b::mk_gemm_x8_q5_1_q8a_avx2)),
                    q4_1_multi: Some(b::mk_vec_dot_x8_q4_1_q8a_multi_avx2),
                    q5_1_multi: Some(b::mk_vec_dot_x8_q5_1_q8a_multi_avx2),
                    iq4_nl: Some((
                        b::mk_vec_dot_x8_iq4_nl_q8a_avx2,
                        b::mk_gemm_x8_iq4_nl_q8a_avx2,
                    )),
                    iq4_xs: Some((
                        b::mk_vec_dot_x8_iq4_xs_q8a_avx2,
                        b::mk_gemm_x8_iq4_xs_q8a_avx2,
                    )),
                    iq4_nl_multi: Some(b::mk_vec_dot_x8_iq4_nl_q8a_multi_avx2),
                    iq4_xs_multi: Some(b::mk_vec_dot_x8_iq4_xs_q8a_multi_avx2),
                    q2_k: Some((b::mk_vec_dot_x8_q2_k_q8a_avx2, b::mk_gemm_x8_q2_k_q8a_avx2)),
                    q2_k_multi: Some(b::mk_vec_dot_x8_q2_k_q8a_multi_avx2),
                    q3_k: Some((b::mk_vec_dot_x8_q3_k_q8a_avx2, b::mk_gemm_x8_q3_k_q8a_avx2)),
                    q3_k_multi: Some(b::mk_vec_dot_x8_q3_k_q8a_multi_avx2),
                },
                ..generic
            };
            sets.push(avx2);
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("avx512vnni")
            {
                let avx512 = KernelSet {
                    name: "avx512",
                    quant: generic
                        .quant
                        .dot(&[
                            (DType::Q8_0, b::mk_vec_dot_q8_0_q8a_avx512),
                            (DType::Q4_0, b::mk_vec_dot_q4_0_q8a_avx512),
                            (DType::Q4_K, b::mk_vec_dot_q4_k_q8a_avx512),
                            (DType::Q5_K, b::mk_vec_dot_q5_k_q8a_avx512),
                            (DType::Q6_K, b::mk_vec_dot_q6_k_q8a_avx512),
                            (DType::Q2_K, b::mk_vec_dot_q2_k_q8a_avx512),
                            (DType::Q3_K, b::mk_vec_dot_q3_k_q8a_avx512),
                            (DType::Q4_1, b::mk_vec_dot_q4_1_q8a_avx512),
                            (DType::Q5_0, b::mk_vec_dot_q5_0_q8a_avx512),
                            (DType::Q5_1, b::mk_vec_dot_q5_1_q8a_avx512),
                            (DType::IQ4_NL, b::mk_vec_dot_iq4_nl_q8a_avx512),
                            (DType::IQ4_XS, b::mk_vec_dot_iq4_xs_q8a_avx512),
                        ])
                        .dot(&shared_dot)
                        .dot4(&[
                            (DType::Q8_0, b::mk_vec_dot4_q8_0_q8a_avx512),
                            (DType::Q4_0, b::mk_vec_dot4_q4_0_q8a_avx512),
                            (DType::Q4_K, b::mk_vec_dot4_q4_k_q8a_avx512),
                            (DType::Q5_K, b::mk_vec_dot4_q5_k_q8a_avx512),
                            (DType::Q6_K, b::mk_vec_dot4_q6_k_q8a_avx512),
                            (DType::Q2_K, b::mk_vec_dot4_q2_k_q8a_avx512),
                            (DType::Q3_K, b::mk_vec_dot4_q3_k_q8a_avx512),
                            (DType::Q4_1, b::mk_vec_dot4_q4_1_q8a_avx512),
                            (DType::Q5_0, b::mk_vec_dot4_q5_0_q8a_avx512),
                            (DType::Q5_1, b::mk_vec_dot4_q5_1_q8a_avx512),
                            (DType::IQ4_NL, b::mk_vec_dot4_iq4_nl_q8a_avx512),
                            (DType::IQ4_XS, b::mk_vec_dot4_iq4_xs_q8a_avx512),
                        ])
                        .rows4(&shared_rows4)
                        .gemm_q8a(&shared_gemm)
                        .gemm_q8a(&iquant_gemm),
                    mla: MlaKernels {
                        scores_f32: b::mk_mla_scores_f32_avx512,
                        scores_f16: b::mk_mla_scores_f16_avx512,
                        accum_f32: b::mk_mla_accum_f32_avx512,
                        accum_f16: b::mk_mla_accum_f16_avx512,
                    },
                    float: FloatKernels {
                        dot: [
                            b::mk_vec_dot_f32_f32_avx512,
                            b::mk_vec_dot_f16_f32_avx512,
                            b::mk_vec_dot_bf16_f32_avx512,
                        ],
                        dot4: [
                            b::mk_vec_dot4_f32_f32_avx512,
                            b::mk_vec_dot4_f16_f32_avx512,
                            b::mk_vec_dot4_bf16_f32_avx512,
                        ],
                    },
                    quantize: b::mk_quantize_row_q8a_avx512,
                    ..generic
                };
                sets.push(avx512);
                if is_x86_feature_detected!("avx512vbmi") {
                    sets.push(KernelSet {
                        name: "avx512vbmi",
                        quant: avx512.quant.gemm_q8g(&[
                            (DType::Q4_0, b::mk_gemm_q4_0_q8g_avx512vbmi),
                            (DType::Q8_0, b::mk_gemm_q8_0_q8g_avx512vbmi),
                            (DType::Q4_K, b::mk_gemm_q4_k_q8g_avx512vbmi),
                            (DType::Q5_K, b::mk_gemm_q5_k_q8g_avx512vbmi),
                            (DType::Q6_K, b::mk_gemm_q6_k_q8g_avx512vbmi),
                        ]),
                        q4_0_grouped: Some((
                            b::mk_vec_dot_q4_0_q8g_avx512vbmi,
                            b::mk_vec_dot4_q4_0_q8g_avx512vbmi,
                        )),
                        ..avx512
                    });
                }
            }
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        use bindings as b;
        let neon = KernelSet {
            name: "neon",
            quant: generic.quant.dot(&[
                (DType::Q8_0, b::mk_vec_dot_q8_0_q8a_neon),
                (DType::Q4_0, b::mk_vec_dot_q4_0_q8a_neon),
                (DType::Q4_K, b::mk_vec_dot_q4_k_q8a_neon),
                (DType::Q5_K, b::mk_vec_dot_q5_k_q8a_neon),
                (DType::Q6_K, b::mk_vec_dot_q6_k_q8a_neon),
                (DType::Q2_K, b::mk_vec_dot_q2_k_q8a_neon),
                (DType::Q3_K, b::mk_vec_dot_q3_k_q8a_neon),
                (DType::Q4_1, b::mk_vec_dot_q4_1_q8a_neon),
                (DType::Q5_0, b::mk_vec_dot_q5_0_q8a_neon),
                (DType::Q5_1, b::mk_vec_dot_q5_1_q8a_neon),
                (DType::IQ4_NL, b::mk_vec_dot_iq4_nl_q8a_neon),
                (DType::IQ4_XS, b::mk_vec_dot_iq4_xs_q8a_neon),
                (DType::IQ2_XXS, b::mk_vec_dot_iq2_xxs_q8a_neon),
                (DType::IQ3_XXS, b::mk_vec_dot_iq3_xxs_q8a_neon),
                (DType::IQ1_S, b::mk_vec_dot_iq1_s_q8a_neon),
                (DType::TQ1_0, b::mk_vec_dot_tq1_0_q8a_neon),
                (DType::TQ2_0, b::mk_vec_dot_tq2_0_q8a_neon),
                (DType::IQ2_XS, b::mk_vec_dot_iq2_xs_q8a_neon),
                (DType::IQ2_S, b::mk_vec_dot_iq2_s_q8a_neon),
                (DType::IQ3_S, b::mk_vec_dot_iq3_s_q8a_neon),
                (DType::IQ1_M, b::mk_vec_dot_iq1_m_q8a_neon),
                (DType::MXFP4, b::mk_vec_dot_mxfp4_q8a_neon),
                (DType::NVFP4, b::mk_vec_dot_nvfp4_q8a_neon),
                (DType::Q1_0, b::mk_vec_dot_q1_0_q8a_neon),
                (DType::Q2_0, b::mk_vec_dot_q2_0_q8a_neon),
            ]),
            mla: MlaKernels {
                scores_f32: b::mk_mla_scores_f32_neon,
                scores_f16: b::mk_mla_scores_f16_neon,
                accum_f32: b::mk_mla_accum_f32_neon,
                accum_f16: b::mk_mla_accum_f16_neon,
            },
            float: FloatKernels {
                dot: [
                    b::mk_vec_dot_f32_f32_neon,
                    b::mk_vec_dot_f16_f32_neon,
                    b::mk_vec_dot_bf16_f32_neon,
                ],
                dot4: [
                    b::mk_vec_dot4_f32_f32_neon,
                    b::mk_vec_dot4_f16_f32_neon,
                    b::mk_vec_dot4_bf16_f32_neon,
                ],
            },
            ..generic
        };
        sets.push(neon);
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            let dotprod = KernelSet {
                name: "dotprod",
                quant: neon.quant.dot(&[
                    (DType::Q8_0, b::mk_vec_dot_q8_0_q8a_dotprod),
                    (DType::Q4_0, b::mk_vec_dot_q4_0_q8a_dotprod),
                    (DType::Q4_K, b::mk_vec_dot_q4_k_q8a_dotprod),
                    (DType::Q5_K, b::mk_vec_dot_q5_k_q8a_dotprod),
                    (DType::Q6_K, b::mk_vec_dot_q6_k_q8a_dotprod),
                    (DType::Q2_K, b::mk_vec_dot_q2_k_q8a_dotprod),
                    (DType::Q3_K, b::mk_vec_dot_q3_k_q8a_dotprod),
                    (DType::Q4_1, b::mk_vec_dot_q4_1_q8a_dotprod),
                    (DType::Q5_0, b::mk_vec_dot_q5_0_q8a_dotprod),
                    (DType::Q5_1, b::mk_vec_dot_q5_1_q8a_dotprod),
                    (DType::IQ4_NL, b::mk_vec_dot_iq4_nl_q8a_dotprod),
                    (DType::IQ4_XS, b::mk_vec_dot_iq4_xs_q8a_dotprod),
                    (DType::IQ2_XXS, b::mk_vec_dot_iq2_xxs_q8a_dotprod),
                    (DType::IQ3_XXS, b::mk_vec_dot_iq3_xxs_q8a_dotprod),
                    (DType::IQ1_S, b::mk_vec_dot_iq1_s_q8a_dotprod),
                    (DType::TQ1_0, b::mk_vec_dot_tq1_0_q8a_dotprod),
                    (DType::TQ2_0, b::mk_vec_dot_tq2_0_q8a_dotprod),
                    (DType::IQ2_XS, b::mk_vec_dot_iq2_xs_q8a_dotprod),
                    (DType::IQ2_S, b::mk_vec_dot_iq2_s_q8a_dotprod),
                    (DType::IQ3_S, b::mk_vec_dot_iq3_s_q8a_dotprod),
                    (DType::IQ1_M, b::mk_vec_dot_iq1_m_q8a_dotprod),
                    (DType::MXFP4, b::mk_vec_dot_mxfp4_q8a_dotprod),
                    (DType::NVFP4, b::mk_vec_dot_nvfp4_q8a_dotprod),
                    (DType::Q1_0, b::mk_vec_dot_q1_0_q8a_dotprod),
                    (DType::Q2_0, b::mk_vec_dot_q2_0_q8a_dotprod),
                ]),
                ..neon
            };
            sets.push(dotprod);
            // The smmla prefill GEMMs (csrc/arm/i8mm.c, built for dotprod + i8mm).
            if std::arch::is_aarch64_feature_detected!("i8mm") {
                sets.push(KernelSet {
                    name: "i8mm",
                    quant: dotprod.quant.gemm_q8a(&[
                        (DType::Q8_0, b::mk_gemm_q8_0_q8a_i8mm),
                        (DType::Q4_0, b::mk_gemm_q4_0_q8a_i8mm),
                        (DType::Q4_K, b::mk_gemm_q4_k_q8a_i8mm),
                        (DType::Q5_K, b::mk_gemm_q5_k_q8a_i8mm),
                        (DType::Q6_K, b::mk_gemm_q6_k_q8a_i8mm),
                    ]),
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
        let best = *sets.last().unwrap_or(generic());
        match std::env::var("MOELA_KERNELS") {
            Ok(want) => match sets.iter().find(|s| s.name == want) {
                Some(s) => *s,
                None => {
                    let names: Vec<_> = sets.iter().map(|s| s.name).collect();
                    eprintln!("moela: MOELA_KERNELS={want} is not available here ({names:?}); using the best");
                    best
                }
            },
            Err(_) => best,
        }
    })
}
