//! Safe wrappers over the C kernels in csrc/, a dispatch table filled once from CPU feature
//! detection, and the thread pool the matrix products run on. One file per kernel family:
//! `quant` (quantized weights against q8a activations: one-row, four-row, GEMM), `float`
//! (F32/F16/BF16 weights), `mla` (decode attention over the latent cache), `acts` (the
//! quantized activations they read); `sets` says which ISA provides which kernel.
//!
//! Quantized weights (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K-Q6_K, IQ4_NL, IQ4_XS) are multiplied with activations quantized
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

mod acts;
pub mod aligned;
mod float;
mod mla;
mod quant;
pub use quant::dot_x8_tokens;
mod sets;

pub use acts::Q8Acts;
pub use float::float_index;
pub use mla::CacheRows;
pub use sets::{active, available, generic, KernelSet};

#[cfg(test)]
use quant::QuantizeQ8a;

use crate::error::{Error, Result};
use crate::tensor::DType;

/// Elements per quantization block (the weights' and the activations').
pub use crate::tensor::quant::QK;

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
            DType::Q2_K => bindings::mk_vec_dot_q2_k_f32_generic(n, w.cast(), x.as_ptr()),
            DType::Q3_K => bindings::mk_vec_dot_q3_k_f32_generic(n, w.cast(), x.as_ptr()),
            DType::Q4_1 => bindings::mk_vec_dot_q4_1_f32_generic(n, w.cast(), x.as_ptr()),
            DType::Q5_0 => bindings::mk_vec_dot_q5_0_f32_generic(n, w.cast(), x.as_ptr()),
            DType::Q5_1 => bindings::mk_vec_dot_q5_1_f32_generic(n, w.cast(), x.as_ptr()),
            DType::IQ4_NL => bindings::mk_vec_dot_iq4_nl_f32_generic(n, w.cast(), x.as_ptr()),
            DType::IQ4_XS => bindings::mk_vec_dot_iq4_xs_f32_generic(n, w.cast(), x.as_ptr()),
            DType::F32 => bindings::mk_vec_dot_f32_f32_generic(n, w.cast(), x.as_ptr()),
            DType::F16 => bindings::mk_vec_dot_f16_f32_generic(n, w.cast(), x.as_ptr()),
            DType::BF16 => bindings::mk_vec_dot_bf16_f32_generic(n, w.cast(), x.as_ptr()),
            DType::F8E4M3 => 0.0, // returned above
            DType::IQ2_XXS => bindings::mk_vec_dot_iq2_xxs_f32_generic(n, w.cast(), x.as_ptr()),
            DType::IQ2_XS => bindings::mk_vec_dot_iq2_xs_f32_generic(n, w.cast(), x.as_ptr()),
            DType::IQ2_S => bindings::mk_vec_dot_iq2_s_f32_generic(n, w.cast(), x.as_ptr()),
            DType::IQ3_XXS => bindings::mk_vec_dot_iq3_xxs_f32_generic(n, w.cast(), x.as_ptr()),
            DType::IQ3_S => bindings::mk_vec_dot_iq3_s_f32_generic(n, w.cast(), x.as_ptr()),
            DType::IQ1_S => bindings::mk_vec_dot_iq1_s_f32_generic(n, w.cast(), x.as_ptr()),
            DType::IQ1_M => bindings::mk_vec_dot_iq1_m_f32_generic(n, w.cast(), x.as_ptr()),
            DType::TQ1_0 => bindings::mk_vec_dot_tq1_0_f32_generic(n, w.cast(), x.as_ptr()),
            DType::TQ2_0 => bindings::mk_vec_dot_tq2_0_f32_generic(n, w.cast(), x.as_ptr()),
            DType::MXFP4 => bindings::mk_vec_dot_mxfp4_f32_generic(n, w.cast(), x.as_ptr()),
            DType::NVFP4 => bindings::mk_vec_dot_nvfp4_f32_generic(n, w.cast(), x.as_ptr()),
            DType::Q1_0 => bindings::mk_vec_dot_q1_0_f32_generic(n, w.cast(), x.as_ptr()),
            DType::Q2_0 => bindings::mk_vec_dot_q2_0_f32_generic(n, w.cast(), x.as_ptr()),
        })
    }
}

#[cfg(test)]
mod test_util {
    /// A deterministic pseudo-random stream (xorshift), enough for test inputs.
    pub fn noise(seed: u64, n: usize, scale: f32) -> Vec<f32> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
