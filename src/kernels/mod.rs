//! Safe wrappers over the C kernels in csrc/. Today only the scalar `generic` family is built;
//! it is the oracle the Rust row functions ([`crate::tensor::quant`]) and future SIMD kernels
//! are tested against.

#[cfg(not(feature = "bindgen"))]
#[allow(non_camel_case_types, dead_code, clippy::all)]
mod bindings;
#[cfg(feature = "bindgen")]
#[allow(non_camel_case_types, dead_code, clippy::all)]
mod bindings {
    include!(env!("MOELA_GENERATED_BINDINGS"));
}

use crate::tensor::DType;

/// Dot product of one stored row (`bytes`, GGUF layout of `dtype`) with `x`, computed by the
/// portable C reference kernel.
pub fn vec_dot_generic(dtype: DType, bytes: &[u8], x: &[f32]) -> crate::Result<f32> {
    let n = x.len();
    if dtype.bytes_for(n) != Some(bytes.len()) {
        return Err(crate::Error::InvalidArg(format!(
            "vec_dot: {} bytes is not a {}-element {} row",
            bytes.len(),
            n,
            dtype.name()
        )));
    }
    let w = bytes.as_ptr();
    // SAFETY: the length check above guarantees `bytes` holds exactly one row of `n`
    // elements of `dtype` and `x` holds `n` floats, and the kernels read only that much.
    // Quantized rows are read bytewise (no alignment needed); F32/F16/BF16 rows are first
    // copied into properly aligned buffers of `n` elements.
    unsafe {
        Ok(match dtype {
            DType::Q8_0 => bindings::mk_vec_dot_q8_0_f32_generic(n, w.cast(), x.as_ptr()),
            DType::Q4_0 => bindings::mk_vec_dot_q4_0_f32_generic(n, w.cast(), x.as_ptr()),
            DType::F32 => {
                let row: Vec<f32> = bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                bindings::mk_vec_dot_f32_f32_generic(n, row.as_ptr(), x.as_ptr())
            }
            DType::F16 | DType::BF16 => {
                let row: Vec<u16> = bytes
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                if dtype == DType::F16 {
                    bindings::mk_vec_dot_f16_f32_generic(n, row.as_ptr(), x.as_ptr())
                } else {
                    bindings::mk_vec_dot_bf16_f32_generic(n, row.as_ptr(), x.as_ptr())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::quant;

    /// The Rust row kernels used by the forward pass agree with the C reference kernels.
    #[test]
    fn rust_rows_match_c_generic() {
        let n = 256;
        let w: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 113) as f32 / 37.0 - 1.5)
            .collect();
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 104729) % 97) as f32 / 41.0 - 1.1)
            .collect();
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
