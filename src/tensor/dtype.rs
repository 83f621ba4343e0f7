//! Element types moela computes with, and their GGML/GGUF type ids and block geometry.

use super::iquant;

/// A tensor element type. Quantized types store blocks of `block_size()` elements in
/// `block_bytes()` bytes (the GGUF block layouts).
/// Variant names follow ggml's (`Q4_K`), which the file formats and users know them by.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_K,
    Q5_K,
    Q6_K,
    Q2_K,
    Q3_K,
    /// Legacy 32-element types: Q4_1 (scale + min), Q5_0, Q5_1 (5-bit codes).
    Q4_1,
    Q5_0,
    Q5_1,
    /// Non-linear 4-bit codebook (`kvalues_iq4nl`): 32-element blocks with one f16 scale.
    IQ4_NL,
    /// The same codebook in 256-element super-blocks with 6-bit sub-block scales.
    IQ4_XS,
    /// FP8 e4m3fn, 1 byte per element: DeepSeek-V3/R1's native safetensors weights (with
    /// 128×128 block scales held by the view, see `tensor::fp8`). Load-only: there is no GGUF
    /// type for it, so it is not in [`DType::ALL`] and not accepted as a conversion target.
    F8E4M3,
    // Load-only llama.cpp types (`tensor::iquant`): read and computed with, never written, so
    // not in `ALL` (found by `from_ggml_type` through [`DType::LOAD_ONLY`]).
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ3_S,
    IQ2_S,
    IQ1_M,
    TQ1_0,
    TQ2_0,
    MXFP4,
    NVFP4,
    Q1_0,
    Q2_0,
}

/// The names of every type moela reads (for error messages), comma-separated.
pub fn supported_names() -> String {
    let names: Vec<&str> = DType::ALL
        .iter()
        .chain(DType::LOAD_ONLY.iter())
        .map(|d| d.name())
        .collect();
    names.join(", ")
}

impl DType {
    /// The GGUF types (every type a file can store and `--type` can name).
    pub const ALL: [DType; 15] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q8_0,
        DType::Q4_0,
        DType::Q4_K,
        DType::Q5_K,
        DType::Q6_K,
        DType::Q2_K,
        DType::Q3_K,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::IQ4_NL,
        DType::IQ4_XS,
    ];

    /// GGUF types moela reads and computes with but cannot write (`tensor::iquant`): not
    /// conversion targets, so not in [`DType::ALL`].
    pub const LOAD_ONLY: [DType; 13] = [
        DType::IQ2_XXS,
        DType::IQ2_XS,
        DType::IQ3_XXS,
        DType::IQ1_S,
        DType::IQ3_S,
        DType::IQ2_S,
        DType::IQ1_M,
        DType::TQ1_0,
        DType::TQ2_0,
        DType::MXFP4,
        DType::NVFP4,
        DType::Q1_0,
        DType::Q2_0,
    ];

    /// The `ggml_type` id used in GGUF tensor infos ([`NO_GGML_TYPE`] for F8E4M3, which
    /// GGUF cannot store).
    pub fn ggml_type(self) -> u32 {
        match self {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::Q4_0 => 2,
            DType::Q8_0 => 8,
            DType::Q4_K => 12,
            DType::Q5_K => 13,
            DType::Q6_K => 14,
            DType::Q2_K => 10,
            DType::Q3_K => 11,
            DType::Q4_1 => 3,
            DType::Q5_0 => 6,
            DType::Q5_1 => 7,
            DType::IQ4_NL => 20,
            DType::IQ4_XS => 23,
            DType::BF16 => 30,
            DType::F8E4M3 => NO_GGML_TYPE,
            DType::IQ2_XXS
            | DType::IQ2_XS
            | DType::IQ3_XXS
            | DType::IQ1_S
            | DType::IQ3_S
            | DType::IQ2_S
            | DType::IQ1_M
            | DType::TQ1_0
            | DType::TQ2_0
            | DType::MXFP4
            | DType::NVFP4
            | DType::Q1_0
            | DType::Q2_0 => iquant::ggml_type(self),
        }
    }

    pub fn from_ggml_type(t: u32) -> Option<DType> {
        DType::ALL
            .into_iter()
            .chain(DType::LOAD_ONLY)
            .find(|d| d.ggml_type() == t)
    }

    pub fn block_size(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 | DType::F8E4M3 => 1,
            DType::Q8_0 | DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::IQ4_NL => {
                32
            }
            DType::Q4_K | DType::Q5_K | DType::Q6_K | DType::Q2_K | DType::Q3_K | DType::IQ4_XS => {
                256
            }
            DType::IQ2_XXS
            | DType::IQ2_XS
            | DType::IQ3_XXS
            | DType::IQ1_S
            | DType::IQ3_S
            | DType::IQ2_S
            | DType::IQ1_M
            | DType::TQ1_0
            | DType::TQ2_0
            | DType::MXFP4
            | DType::NVFP4
            | DType::Q1_0
            | DType::Q2_0 => iquant::block_size(self),
        }
    }

    pub fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q8_0 => 34,
            DType::Q4_0 => 18,
            DType::Q4_K => 144,
            DType::Q5_K => 176,
            DType::Q6_K => 210,
            DType::Q2_K => 84,
            DType::Q3_K => 110,
            DType::Q4_1 => 20,
            DType::Q5_0 => 22,
            DType::Q5_1 => 24,
            DType::IQ4_NL => 18,
            DType::IQ4_XS => 136,
            DType::F8E4M3 => 1,
            DType::IQ2_XXS
            | DType::IQ2_XS
            | DType::IQ3_XXS
            | DType::IQ1_S
            | DType::IQ3_S
            | DType::IQ2_S
            | DType::IQ1_M
            | DType::TQ1_0
            | DType::TQ2_0
            | DType::MXFP4
            | DType::NVFP4
            | DType::Q1_0
            | DType::Q2_0 => iquant::block_bytes(self),
        }
    }

    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// The GGUF K-quants: 256-element super-blocks of 32- or 16-element sub-blocks.
    pub fn is_k_quant(self) -> bool {
        matches!(
            self,
            DType::Q4_K | DType::Q5_K | DType::Q6_K | DType::Q2_K | DType::Q3_K
        )
    }

    /// Bytes of `n` elements, or None when `n` is not a whole number of blocks (or overflows).
    pub fn bytes_for(self, n: usize) -> Option<usize> {
        if n % self.block_size() != 0 {
            return None;
        }
        (n / self.block_size()).checked_mul(self.block_bytes())
    }

    /// Lower-case name as used on the command line and in llama.cpp ("q8_0").
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::Q8_0 => "q8_0",
            DType::Q4_0 => "q4_0",
            DType::Q4_K => "q4_k",
            DType::Q5_K => "q5_k",
            DType::Q6_K => "q6_k",
            DType::Q2_K => "q2_k",
            DType::Q3_K => "q3_k",
            DType::Q4_1 => "q4_1",
            DType::Q5_0 => "q5_0",
            DType::Q5_1 => "q5_1",
            DType::IQ4_NL => "iq4_nl",
            DType::IQ4_XS => "iq4_xs",
            DType::F8E4M3 => "f8_e4m3",
            DType::IQ2_XXS
            | DType::IQ2_XS
            | DType::IQ3_XXS
            | DType::IQ1_S
            | DType::IQ3_S
            | DType::IQ2_S
            | DType::IQ1_M
            | DType::TQ1_0
            | DType::TQ2_0
            | DType::MXFP4
            | DType::NVFP4
            | DType::Q1_0
            | DType::Q2_0 => iquant::name(self),
        }
    }

    pub fn from_name(s: &str) -> Option<DType> {
        let s = s.to_ascii_lowercase();
        DType::ALL.into_iter().find(|d| d.name() == s)
    }
}

/// Stands for "no ggml type" (never a valid id: ggml's ids are small).
pub const NO_GGML_TYPE: u32 = u32::MAX;

/// Human-readable name of any ggml type id, for error messages about types moela lacks.
pub fn ggml_type_name(t: u32) -> String {
    const NAMES: [&str; 43] = [
        "F32",
        "F16",
        "Q4_0",
        "Q4_1",
        "Q4_2",
        "Q4_3",
        "Q5_0",
        "Q5_1",
        "Q8_0",
        "Q8_1",
        "Q2_K",
        "Q3_K",
        "Q4_K",
        "Q5_K",
        "Q6_K",
        "Q8_K",
        "IQ2_XXS",
        "IQ2_XS",
        "IQ3_XXS",
        "IQ1_S",
        "IQ4_NL",
        "IQ3_S",
        "IQ2_S",
        "IQ4_XS",
        "I8",
        "I16",
        "I32",
        "I64",
        "F64",
        "IQ1_M",
        "BF16",
        "Q4_0_4_4",
        "Q4_0_4_8",
        "Q4_0_8_8",
        "TQ1_0",
        "TQ2_0",
        "IQ4_NL_4_4",
        "IQ4_NL_4_8",
        "IQ4_NL_8_8",
        "MXFP4",
        "NVFP4",
        "Q1_0",
        "Q2_0",
    ];
    match NAMES.get(t as usize) {
        Some(n) => format!("{n} (ggml type {t})"),
        None => format!("unknown ggml type {t}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ggml_ids_round_trip() {
        for d in DType::ALL {
            assert_eq!(DType::from_ggml_type(d.ggml_type()), Some(d));
            assert_eq!(DType::from_name(d.name()), Some(d));
        }
        assert_eq!(DType::from_ggml_type(9), None);
        assert_eq!(ggml_type_name(12), "Q4_K (ggml type 12)");
        // The K-quant ids and names are the GGUF ones.
        for (d, t) in [
            (DType::Q2_K, 10),
            (DType::Q3_K, 11),
            (DType::Q4_K, 12),
            (DType::Q5_K, 13),
            (DType::Q6_K, 14),
        ] {
            assert_eq!(d.ggml_type(), t);
            assert_eq!(
                ggml_type_name(t).split(' ').next(),
                Some(&*d.name().to_uppercase())
            );
        }
    }

    #[test]
    fn row_bytes() {
        assert_eq!(DType::Q8_0.bytes_for(64), Some(68));
        assert_eq!(DType::Q4_0.bytes_for(64), Some(36));
        assert_eq!(DType::Q4_0.bytes_for(63), None);
        assert_eq!(DType::BF16.bytes_for(3), Some(6));
        // gguf-py constants.py GGML_QUANT_SIZES: (256, 144), (256, 176), (256, 210),
        // Q2_K (256, 84), Q3_K (256, 110).
        assert_eq!(DType::Q2_K.bytes_for(512), Some(168));
        assert_eq!(DType::Q3_K.bytes_for(256), Some(110));
        assert_eq!(DType::Q4_K.bytes_for(512), Some(288));
        assert_eq!(DType::Q5_K.bytes_for(256), Some(176));
        assert_eq!(DType::Q6_K.bytes_for(256), Some(210));
        assert_eq!(DType::Q6_K.bytes_for(32), None);
        // gguf-py GGML_QUANT_SIZES: Q4_1 (32, 20), Q5_0 (32, 22), Q5_1 (32, 24),
        // IQ4_NL (32, 18), IQ4_XS (256, 136).
        assert_eq!(DType::Q4_1.bytes_for(64), Some(40));
        assert_eq!(DType::Q5_0.bytes_for(32), Some(22));
        assert_eq!(DType::Q5_1.bytes_for(32), Some(24));
        assert_eq!(DType::IQ4_NL.bytes_for(32), Some(18));
        assert_eq!(DType::IQ4_XS.bytes_for(512), Some(272));
        assert_eq!(DType::IQ4_XS.bytes_for(32), None);
        for (d, t) in [
            (DType::Q4_1, 3),
            (DType::Q5_0, 6),
            (DType::Q5_1, 7),
            (DType::IQ4_NL, 20),
            (DType::IQ4_XS, 23),
        ] {
            assert_eq!(d.ggml_type(), t);
            assert_eq!(
                ggml_type_name(t).split(' ').next(),
                Some(&*d.name().to_uppercase())
            );
        }
    }
}
