//! The low-bit GGUF types of llama.cpp's i-quant family and friends, read-only: IQ2_XXS,
//! IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M (codebook quants), TQ1_0, TQ2_0 (ternary),
//! MXFP4 (OCP microscaling FP4), NVFP4 (NVIDIA's FP4 with E4M3 scales) and Q1_0, Q2_0 (1- and
//! 2-bit codes with one f16 scale). moela loads and computes with them; it does not write them.
//!
//! Layouts (all little-endian bytes; `d` an f16 unless said otherwise; 256-element
//! super-blocks except MXFP4's, NVFP4's, Q1_0's and Q2_0's blocks). "Sign byte" `s` gives the signs of 8 values
//! (bit j set: value j negative); "7 sign bits" `k` stand for the sign byte `KSIGNS[k]` (the 8th
//! sign makes the count of minus signs even). Grids are in [`super::iquant_grids`].
//! * `IQ2_XXS`, 66 bytes: `d`, then 8 groups of 32 elements in 8 bytes each: 4 grid indices
//!   (bytes) into `IQ2XXS_GRID` (8 values each), then a u32 whose bits 7l..7l+7 are the 7 sign
//!   bits of grid row l and bits 28..32 the scale `ls`: `x = d·(0.5 + ls)·0.25 · g · ±1`.
//! * `IQ2_XS`, 74 bytes: `d`, 32 × u16 (bits 0..9 an index into `IQ2XS_GRID`, bits 9..16 its 7
//!   sign bits), 8 bytes of 4-bit scales (low nibble first), one per 16 elements:
//!   `x = d·(0.5 + ls)·0.25 · g · ±1`.
//! * `IQ2_S`, 82 bytes: `d`, 32 index low bytes, 32 sign bytes, 8 bytes of index high bits (2
//!   bits per index, low bits first), 8 bytes of 4-bit scales per 16 elements; grid
//!   `IQ2S_GRID` (1024 rows); `x` as IQ2_XS.
//! * `IQ3_XXS`, 98 bytes: `d`, 64 indices (bytes) into `IQ3XXS_GRID` (4 values each), then 8
//!   u32, one per 32 elements, with 4 × 7 sign bits (one per 8 elements) and the scale in bits
//!   28..32: `x = d·(0.5 + ls)·0.5 · g · ±1`.
//! * `IQ3_S`, 110 bytes: `d`, 64 index low bytes, 8 bytes of index 9th bits (bit i%8 of byte
//!   i/8), 32 sign bytes, 4 bytes of 4-bit scales (one per 32 elements); grid `IQ3S_GRID`
//!   (512 rows of 4): `x = d·(1 + 2·ls) · g · ±1`.
//! * `IQ1_S`, 50 bytes: `d`, 32 index low bytes, 8 × u16 (one per 32 elements: bits 3l..3l+3
//!   are the high bits of index l, bits 12..15 the scale, bit 15 the sign of the delta);
//!   grid `IQ1S_GRID` (2048 rows of 8 values in {-1, 0, 1}): `x = d·(2·ls + 1) · (g ± 0.125)`.
//! * `IQ1_M`, 56 bytes: 32 index low bytes, 16 bytes `qh` (a nibble per index, low first: bits
//!   0..3 the index high bits, bit 3 the delta's sign), 4 × u16 scales: bits 3k..3k+3 of u16 j
//!   are the scale of 16-element group 4j+k, and the top nibbles of the four (first u16's
//!   lowest) form the f16 `d`: `x = d·(2·ls + 1) · (g ± 0.125)`.
//! * `TQ1_0`, 54 bytes: 48 bytes of base-3 digits, 4 bytes more, f16 `d` last. A byte `b`
//!   holds 5 (the last 4 bytes: 4) ternary digits, digit m being `((b·3^m mod 256)·3) >> 8`;
//!   element order: digit m of bytes 0..32 is elements 32m.., of bytes 32..48 elements
//!   160 + 16m.., of bytes 48..52 elements 240 + 4m..: `x = d·(digit - 1)`.
//! * `TQ2_0`, 66 bytes: 64 bytes of 2-bit codes, f16 `d` last: element 128c + 32l + j is bits
//!   2l..2l+2 of byte 32c + j: `x = d·(q - 1)`.
//! * `MXFP4`, 17 bytes per 32 elements: an E8M0 exponent `e`, then 16 bytes of nibbles (element
//!   j low, j + 16 high) indexing the doubled E2M1 values {0, 1, 2, 3, 4, 6, 8, 12, -0, -1, ...}:
//!   `x = 2^(e-128) · v` (half the E8M0 scale, as ggml stores doubled values).
//! * `NVFP4`, 36 bytes per 64 elements: 4 unsigned E4M3 scale bytes (one per 16 elements),
//!   then 32 nibble bytes; byte 8s + j holds element 16s + j (low) and 16s + 8 + j (high),
//!   indexing the MXFP4 values: `x = ue4m3(s)/2 · v`. `ue4m3(b)` (bit 7 ignored) is
//!   `2^(e-7)·(1 + m/8)` for exponent bits `e = b>>3 & 15` ≥ 1, `m/512` for `e = 0`, and 0
//!   for the bytes 0x00 and 0x7F (E4M3's NaN; 0xFF still decodes to 480, as in ggml).
//! * `Q1_0`, 18 bytes per 128 elements: `d`, then 16 bytes of sign bits (bit j%8 of byte
//!   j/8): `x = d` when set, `-d` when clear.
//! * `Q2_0`, 18 bytes per 64 elements: `d`, then 16 bytes of 2-bit codes (bits 2(j%4).. of
//!   byte j/4): `x = (q - 1)·d`, so codes 0..3 are -1, 0, 1, 2.
//!
//! Dequantization multiplies in the same order as gguf-py (`gguf.quants`) and ggml's C
//! dequantizers, so it is bit-exact with them (checked against fixtures from
//! tools/gen_iquant_fixtures.py; Q1_0 and Q2_0 against ggml's C, gguf-py has none for them).

// Fixed-size arrays indexed in constant-bound loops (see quant.rs).
#![allow(clippy::needless_range_loop)]

use super::iquant_grids::{
    IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KSIGNS,
};
use super::kquant::QK_K;
use super::quant::f16_bits_to_f32;
use super::DType;

/// Elements per MXFP4 block.
pub(crate) const QK_MXFP4: usize = 32;

/// Elements per NVFP4 block (four 16-element scale groups).
pub(crate) const QK_NVFP4: usize = 64;
/// Elements per Q1_0 block.
pub(crate) const QK1_0: usize = 128;
/// Elements per Q2_0 block.
pub(crate) const QK2_0: usize = 64;

/// The types of this module: (type, ggml id, elements per block, bytes per block, name).
pub const TYPES: [(DType, u32, usize, usize, &str); 13] = [
    (DType::IQ2_XXS, 16, QK_K, 66, "iq2_xxs"),
    (DType::IQ2_XS, 17, QK_K, 74, "iq2_xs"),
    (DType::IQ3_XXS, 18, QK_K, 98, "iq3_xxs"),
    (DType::IQ1_S, 19, QK_K, 50, "iq1_s"),
    (DType::IQ3_S, 21, QK_K, 110, "iq3_s"),
    (DType::IQ2_S, 22, QK_K, 82, "iq2_s"),
    (DType::IQ1_M, 29, QK_K, 56, "iq1_m"),
    (DType::TQ1_0, 34, QK_K, 54, "tq1_0"),
    (DType::TQ2_0, 35, QK_K, 66, "tq2_0"),
    (DType::MXFP4, 39, QK_MXFP4, 17, "mxfp4"),
    (DType::NVFP4, 40, QK_NVFP4, 36, "nvfp4"),
    (DType::Q1_0, 41, QK1_0, 18, "q1_0"),
    (DType::Q2_0, 42, QK2_0, 18, "q2_0"),
];

fn info(dtype: DType) -> (u32, usize, usize, &'static str) {
    for (d, id, bs, bb, name) in TYPES {
        if d == dtype {
            return (id, bs, bb, name);
        }
    }
    unreachable!("{dtype:?} is not an i-quant type")
}

/// ggml type id of one of this module's types.
pub fn ggml_type(dtype: DType) -> u32 {
    info(dtype).0
}
/// Elements per block.
pub fn block_size(dtype: DType) -> usize {
    info(dtype).1
}
/// Bytes per block.
pub fn block_bytes(dtype: DType) -> usize {
    info(dtype).2
}
/// Lower-case name, as llama.cpp spells it.
pub fn name(dtype: DType) -> &'static str {
    info(dtype).3
}

#[inline(always)]
fn f16_at(b: &[u8], at: usize) -> f32 {
    f16_bits_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

#[inline(always)]
fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

#[inline(always)]
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline(always)]
fn sign(signs: u8, j: usize) -> f32 {
    if signs >> j & 1 != 0 {
        -1.0
    } else {
        1.0
    }
}

/// `out[j] = db · grid value j · sign j` for the 8 values of a 64-bit grid row.
#[inline(always)]
fn put8(out: &mut [f32], db: f32, row: u64, signs: u8) {
    let g = row.to_le_bytes();
    for j in 0..8 {
        out[j] = db * g[j] as f32 * sign(signs, j);
    }
}

/// As [`put8`] for a 4-value (32-bit) grid row and signs `j0..j0+4` of the sign byte.
#[inline(always)]
fn put4(out: &mut [f32], db: f32, row: u32, signs: u8, j0: usize) {
    let g = row.to_le_bytes();
    for j in 0..4 {
        out[j] = db * g[j] as f32 * sign(signs, j0 + j);
    }
}

/// IQ1 grid row plus delta, scaled: `dl · (g + delta)`.
#[inline(always)]
fn put_iq1(out: &mut [f32], dl: f32, row: u64, delta: f32) {
    let g = row.to_le_bytes();
    for j in 0..8 {
        out[j] = dl * (g[j] as i8 as f32 + delta);
    }
}

const IQ1_DELTA: f32 = 0.125;

/// Doubled E2M1 values of MXFP4 (ggml's `kvalues_mxfp4`).
pub const MXFP4_VALUES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// Half the E8M0 scale `2^(e - 127)`, exactly (subnormal for e < 2).
#[inline(always)]
pub fn e8m0_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        (e as u32 - 1) << 23
    };
    f32::from_bits(bits)
}

/// Half the unsigned E4M3 scale of NVFP4 (ggml's `ggml_ue4m3_to_fp32`), exactly: bit 7 is
/// ignored but for 0xFF, whose twin 0x7F (E4M3's NaN) gives 0, as does 0x00.
#[inline(always)]
pub fn ue4m3_half(b: u8) -> f32 {
    if b == 0 || b == 0x7F {
        return 0.0;
    }
    let (e, m) = ((b >> 3 & 15) as u32, (b & 7) as u32);
    if e == 0 {
        // m·2^-9 / 2, exact.
        m as f32 * (1.0 / 1024.0)
    } else {
        // (1 + m/8)·2^(e-7) / 2 = (1 + m/8)·2^(e-8): biased exponent e - 8 + 127.
        f32::from_bits((e + 119) << 23 | m << 20)
    }
}

/// Decodes one block of `dtype` (`b`: `block_bytes` bytes) into `out` (`block_size` floats).
pub fn dequantize_block(dtype: DType, b: &[u8], out: &mut [f32]) {
    match dtype {
        DType::IQ2_XXS => {
            let d = f16_at(b, 0);
            for ib in 0..8 {
                let q = &b[2 + 8 * ib..10 + 8 * ib];
                let aux = u32_at(q, 4);
                let db = d * (0.5 + (aux >> 28) as f32) * 0.25;
                for l in 0..4 {
                    let signs = KSIGNS[(aux >> (7 * l) & 127) as usize];
                    let at = 32 * ib + 8 * l;
                    put8(&mut out[at..at + 8], db, IQ2XXS_GRID[q[l] as usize], signs);
                }
            }
        }
        DType::IQ2_XS => {
            let d = f16_at(b, 0);
            let scales = &b[66..74];
            for k in 0..32 {
                let q = u16_at(b, 2 + 2 * k);
                let ls = scales[k / 4] >> (4 * (k / 2 % 2)) & 15;
                let db = d * (0.5 + ls as f32) * 0.25;
                let signs = KSIGNS[(q >> 9) as usize];
                put8(
                    &mut out[8 * k..8 * k + 8],
                    db,
                    IQ2XS_GRID[(q & 511) as usize],
                    signs,
                );
            }
        }
        DType::IQ2_S => {
            let d = f16_at(b, 0);
            let (qs, signs, qh, scales) = (&b[2..34], &b[34..66], &b[66..74], &b[74..82]);
            for k in 0..32 {
                let idx = qs[k] as usize | ((qh[k / 4] >> (2 * (k % 4)) & 3) as usize) << 8;
                let ls = scales[k / 4] >> (4 * (k / 2 % 2)) & 15;
                let db = d * (0.5 + ls as f32) * 0.25;
                put8(&mut out[8 * k..8 * k + 8], db, IQ2S_GRID[idx], signs[k]);
            }
        }
        DType::IQ3_XXS => {
            let d = f16_at(b, 0);
            let qs = &b[2..66];
            for ib in 0..8 {
                let aux = u32_at(b, 66 + 4 * ib);
                let db = d * (0.5 + (aux >> 28) as f32) * 0.5;
                for l in 0..4 {
                    let signs = KSIGNS[(aux >> (7 * l) & 127) as usize];
                    let at = 32 * ib + 8 * l;
                    let (g0, g1) = (qs[8 * ib + 2 * l], qs[8 * ib + 2 * l + 1]);
                    put4(&mut out[at..at + 4], db, IQ3XXS_GRID[g0 as usize], signs, 0);
                    put4(
                        &mut out[at + 4..at + 8],
                        db,
                        IQ3XXS_GRID[g1 as usize],
                        signs,
                        4,
                    );
                }
            }
        }
        DType::IQ3_S => {
            let d = f16_at(b, 0);
            let (qs, qh, signs, scales) = (&b[2..66], &b[66..74], &b[74..106], &b[106..110]);
            for ib in 0..8 {
                let ls = scales[ib / 2] >> (4 * (ib % 2)) & 15;
                let db = d * (1 + 2 * ls) as f32;
                for k in 8 * ib..8 * ib + 8 {
                    let idx = qs[k] as usize | ((qh[k / 8] >> (k % 8) & 1) as usize) << 8;
                    let (s, j0) = (signs[k / 2], 4 * (k % 2));
                    put4(&mut out[4 * k..4 * k + 4], db, IQ3S_GRID[idx], s, j0);
                }
            }
        }
        DType::IQ1_S => {
            let d = f16_at(b, 0);
            let qs = &b[2..34];
            for ib in 0..8 {
                let h = u16_at(b, 34 + 2 * ib);
                let dl = d * (2 * (h >> 12 & 7) + 1) as f32;
                let delta = if h & 0x8000 != 0 {
                    -IQ1_DELTA
                } else {
                    IQ1_DELTA
                };
                for l in 0..4 {
                    let idx = qs[4 * ib + l] as usize | ((h >> (3 * l) & 7) as usize) << 8;
                    let at = 32 * ib + 8 * l;
                    put_iq1(&mut out[at..at + 8], dl, IQ1S_GRID[idx], delta);
                }
            }
        }
        DType::IQ1_M => {
            let (qs, qh) = (&b[0..32], &b[32..48]);
            let sc = [u16_at(b, 48), u16_at(b, 50), u16_at(b, 52), u16_at(b, 54)];
            let d = f16_bits_to_f32(
                (sc[0] >> 12) | (sc[1] >> 8 & 0x00f0) | (sc[2] >> 4 & 0x0f00) | (sc[3] & 0xf000),
            );
            for k in 0..32 {
                let g = k / 2; // 16-element group
                let ls = sc[g / 4] >> (3 * (g % 4)) & 7;
                let dl = d * (2 * ls + 1) as f32;
                let h = qh[k / 2] >> (4 * (k % 2));
                let idx = qs[k] as usize | ((h & 7) as usize) << 8;
                let delta = if h & 8 != 0 { -IQ1_DELTA } else { IQ1_DELTA };
                put_iq1(&mut out[8 * k..8 * k + 8], dl, IQ1S_GRID[idx], delta);
            }
        }
        DType::TQ1_0 => {
            let d = f16_at(b, 52);
            const POW3: [u8; 5] = [1, 3, 9, 27, 81];
            let digit = |byte: u8, m: usize| -> f32 {
                let q = byte.wrapping_mul(POW3[m]);
                (((q as u16 * 3) >> 8) as i8 - 1) as f32
            };
            for m in 0..5 {
                for j in 0..32 {
                    out[32 * m + j] = d * digit(b[j], m);
                }
                for j in 0..16 {
                    out[160 + 16 * m + j] = d * digit(b[32 + j], m);
                }
            }
            for m in 0..4 {
                for j in 0..4 {
                    out[240 + 4 * m + j] = d * digit(b[48 + j], m);
                }
            }
        }
        DType::TQ2_0 => {
            let d = f16_at(b, 64);
            for c in 0..2 {
                for l in 0..4 {
                    for j in 0..32 {
                        let q = (b[32 * c + j] >> (2 * l) & 3) as i8 - 1;
                        out[128 * c + 32 * l + j] = d * q as f32;
                    }
                }
            }
        }
        DType::MXFP4 => {
            let d = e8m0_half(b[0]);
            for j in 0..16 {
                let q = b[1 + j];
                out[j] = d * MXFP4_VALUES[(q & 15) as usize] as f32;
                out[j + 16] = d * MXFP4_VALUES[(q >> 4) as usize] as f32;
            }
        }
        DType::NVFP4 => {
            for s in 0..4 {
                let d = ue4m3_half(b[s]);
                for j in 0..8 {
                    let q = b[4 + 8 * s + j];
                    out[16 * s + j] = d * MXFP4_VALUES[(q & 15) as usize] as f32;
                    out[16 * s + 8 + j] = d * MXFP4_VALUES[(q >> 4) as usize] as f32;
                }
            }
        }
        DType::Q1_0 => {
            let d = f16_at(b, 0);
            for j in 0..QK1_0 {
                out[j] = if b[2 + j / 8] >> (j % 8) & 1 != 0 {
                    d
                } else {
                    -d
                };
            }
        }
        DType::Q2_0 => {
            let d = f16_at(b, 0);
            for j in 0..QK2_0 {
                let q = (b[2 + j / 4] >> (2 * (j % 4)) & 3) as i32 - 1;
                out[j] = q as f32 * d;
            }
        }
        _ => unreachable!("{dtype:?} is not an i-quant type"),
    }
}

/// Decodes one stored row (the module preconditions of `quant.rs`: whole blocks only).
pub fn dequantize_row(dtype: DType, bytes: &[u8], out: &mut [f32]) {
    let (_, bs, bb, _) = info(dtype);
    for (o, b) in out.chunks_exact_mut(bs).zip(bytes.chunks_exact(bb)) {
        dequantize_block(dtype, b, o);
    }
}

/// Dot product of one stored row with `x`, block by block through a stack buffer.
pub fn dot_row(dtype: DType, bytes: &[u8], x: &[f32]) -> f32 {
    let (_, bs, bb, _) = info(dtype);
    let mut buf = [0f32; QK_K];
    let mut acc = [0f32; 8];
    for (xb, b) in x.chunks_exact(bs).zip(bytes.chunks_exact(bb)) {
        let buf = &mut buf[..bs];
        dequantize_block(dtype, b, buf);
        for (w, v) in buf.chunks_exact(8).zip(xb.chunks_exact(8)) {
            for l in 0..8 {
                acc[l] += w[l] * v[l];
            }
        }
    }
    acc.iter().sum()
}

/// `y += a · row` for one stored row.
pub fn axpy_row(dtype: DType, bytes: &[u8], a: f32, y: &mut [f32]) {
    let (_, bs, bb, _) = info(dtype);
    let mut buf = [0f32; QK_K];
    for (yb, b) in y.chunks_exact_mut(bs).zip(bytes.chunks_exact(bb)) {
        let buf = &mut buf[..bs];
        dequantize_block(dtype, b, buf);
        for (o, w) in yb.iter_mut().zip(buf.iter()) {
            *o += a * w;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::quant;

    /// Random valid blocks of `dtype` for `n` elements (random bytes are valid blocks of every
    /// type here) with every block's scale set to `scale` (MXFP4: the nearest power of two,
    /// clamped to the finite exponents).
    pub(crate) fn random_row(dtype: DType, n: usize, seed: u64, scale: f32) -> Vec<u8> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut bytes: Vec<u8> = (0..dtype.bytes_for(n).unwrap())
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as u8
            })
            .collect();
        let h = half::f16::from_f32(scale).to_bits();
        for b in bytes.chunks_mut(dtype.block_bytes()) {
            match dtype {
                DType::IQ1_M => {
                    for k in 0..4 {
                        let at = 49 + 2 * k;
                        b[at] = (b[at] & 0x0f) | ((((h >> (4 * k)) & 0xf) as u8) << 4);
                    }
                }
                DType::MXFP4 => {
                    b[0] = if scale == 0.0 {
                        0
                    } else {
                        (128.0 + scale.abs().log2().round()).clamp(0.0, 250.0) as u8
                    }
                }
                DType::NVFP4 => {
                    // The nearest UE4M3 byte to 2·scale, clamped to the finite range.
                    let t = (2.0 * scale.abs()).clamp(0.0, 448.0);
                    let best = (0u8..0x7F)
                        .min_by(|&x, &y| {
                            let (a, c) = (ue4m3_half(x) * 2.0 - t, ue4m3_half(y) * 2.0 - t);
                            a.abs().total_cmp(&c.abs())
                        })
                        .unwrap();
                    b[..4].fill(best);
                }
                DType::TQ1_0 => b[52..54].copy_from_slice(&h.to_le_bytes()),
                DType::TQ2_0 => b[64..66].copy_from_slice(&h.to_le_bytes()),
                _ => b[0..2].copy_from_slice(&h.to_le_bytes()),
            }
        }
        bytes
    }

    /// Uniform values in [-scale, scale), deterministic (xorshift).
    fn noise(seed: u64, n: usize, scale: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    fn dequantized(dtype: DType, row: &[u8], n: usize) -> Vec<f32> {
        let mut v = vec![0f32; n];
        quant::dequantize_row(dtype, row, &mut v);
        v
    }

    /// The q8a kernels (generic and every ISA set's) against the dequantized row:
    /// * the q8a product approximates the f32 one within the activation rounding
    ///   (|x - d·q| ≤ d/2 per element, so |Σ w·x - Σ w·d·q| ≤ Σ |w|·d/2);
    /// * every set's kernel equals the generic one up to float summation order: the integer
    ///   group sums are exact, so the bound is 1e-5 × Σ|w·d·q| (the magnitude of what is
    ///   summed).
    ///
    /// Rows of 1 to 5 blocks (MXFP4: 1 to 17), scales tiny, normal, huge and zero.
    #[test]
    fn q8a_kernels_match_dequantized_rows() {
        use crate::kernels::{available, generic, Q8Acts, QK};
        let sets = available();
        let mut acts = Q8Acts::default();
        for (t, _, bs, _, nm) in TYPES {
            let counts: &[usize] = if bs == QK {
                &[1, 2, 3, 8, 17]
            } else {
                &[1, 2, 5]
            };
            for &blocks in counts {
                let n = blocks * bs;
                for (seed, scale) in [(3u64, 0.01f32), (4, 1e-4), (5, 30.0), (6, 0.0)] {
                    let x = noise(seed, n, 1.7);
                    acts.quantize(&x, n);
                    let row = random_row(t, n, seed + 100, scale);
                    let w = dequantized(t, &row, n);
                    let exact = quant::dot_row(t, &row, &x);
                    let xa: Vec<f32> = (0..n).map(|i| acts.qs[i] as f32 * acts.d[i / QK]).collect();
                    let round: f32 = (0..n).map(|i| w[i].abs() * acts.d[i / QK] / 2.0).sum();
                    let mag: f32 = (0..n).map(|i| (w[i] * xa[i]).abs()).sum();
                    let want = acts.dot(generic(), t, &row, 0);
                    let tol = round * 1.01 + 1e-5 * mag + f32::MIN_POSITIVE;
                    assert!(
                        (want - exact).abs() <= tol,
                        "{nm} n={n} scale={scale}: q8a {want} vs f32 {exact} (bound {tol})"
                    );
                    for k in &sets {
                        let got = acts.dot(k, t, &row, 0);
                        assert!(
                            (got - want).abs() <= 1e-5 * mag + f32::MIN_POSITIVE,
                            "{} {nm} n={n} scale={scale}: {got} vs generic {want}",
                            k.name
                        );
                    }
                }
            }
        }
    }

    /// Rows quantized by llama.cpp's `llama-quantize` (tools/gen_iquant_llamacpp_fixtures.py:
    /// 32 rows of a kq-fixture matrix per type) decode to the original weights within each
    /// type's quantization error. Relative RMS error measured with gguf-py's dequantizer when
    /// the fixtures were made: IQ2_XXS 0.344, IQ2_XS 0.297, IQ2_S 0.246, IQ3_XXS 0.183, IQ3_S
    /// 0.138, IQ1_S 0.483, IQ1_M 0.450, TQ1_0 0.811, TQ2_0 0.811 (ternary codes on non-ternary
    /// weights), MXFP4 0.107, Q1_0 0.604, Q2_0 0.723 (measured with ggml's C dequantizer:
    /// gguf-py has none for them); bound: that + 0.005 (a misread layout gives ~1.4). The
    /// ternary types and Q2_0 are also checked element by element: llama.cpp's quantizer rounds
    /// x/d with d the block's largest magnitude, so every value is within d/2 of the original
    /// (plus d's f16 rounding). Q1_0 stores the sign of x (+ for x ≥ 0) and d = the block's
    /// mean |x|, so every value is ±that mean, its sign that of the original.
    #[test]
    fn reads_llama_quantize_rows() {
        for (t, nm, measured) in [
            (DType::IQ2_XXS, "iq2_xxs", 0.344),
            (DType::IQ2_XS, "iq2_xs", 0.297),
            (DType::IQ2_S, "iq2_s", 0.246),
            (DType::IQ3_XXS, "iq3_xxs", 0.183),
            (DType::IQ3_S, "iq3_s", 0.138),
            (DType::IQ1_S, "iq1_s", 0.483),
            (DType::IQ1_M, "iq1_m", 0.450),
            (DType::TQ1_0, "tq1_0", 0.811),
            (DType::TQ2_0, "tq2_0", 0.811),
            (DType::MXFP4, "mxfp4", 0.107),
            (DType::Q1_0, "q1_0", 0.604),
            (DType::Q2_0, "q2_0", 0.723),
        ] {
            let info = String::from_utf8(fixture(&format!("llamacpp/{nm}.txt"))).unwrap();
            let f: Vec<&str> = info.split_whitespace().collect();
            let (cols, rows): (usize, usize) = (f[1].parse().unwrap(), f[2].parse().unwrap());
            let blocks = fixture(&format!("llamacpp/{nm}.blocks"));
            let orig: Vec<f32> = fixture(&format!("llamacpp/{nm}.f32"))
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            assert_eq!(orig.len(), cols * rows, "{nm}");
            assert_eq!(t.bytes_for(cols * rows), Some(blocks.len()), "{nm}");
            let got = dequantized(t, &blocks, cols * rows);
            let (mut se, mut ss) = (0f64, 0f64);
            for (a, b) in got.iter().zip(&orig) {
                se += (*a as f64 - *b as f64).powi(2);
                ss += (*b as f64).powi(2);
            }
            let rel = (se / ss).sqrt();
            println!("{nm} ({}): relative RMS error {rel:.4}", f[0]);
            assert!(rel <= measured + 0.005, "{nm}: relative RMS error {rel}");
            if t == DType::Q1_0 {
                for (g, o) in got.chunks(QK1_0).zip(orig.chunks(QK1_0)) {
                    let mean = o.iter().map(|v| v.abs()).sum::<f32>() / QK1_0 as f32;
                    for (a, b) in g.iter().zip(o) {
                        assert_eq!(*a >= 0.0, *b >= 0.0, "{nm}: {a} vs {b}");
                        assert!((a.abs() - mean).abs() <= mean * 1e-3, "{nm}: {a} vs {mean}");
                    }
                }
            }
            if matches!(t, DType::TQ1_0 | DType::TQ2_0 | DType::Q2_0) {
                for (g, o) in got.chunks(t.block_size()).zip(orig.chunks(t.block_size())) {
                    let d = o.iter().fold(0f32, |m, v| m.max(v.abs()));
                    for (a, b) in g.iter().zip(o) {
                        assert!((a - b).abs() <= d / 2.0 * 1.002, "{nm}: {a} vs {b} (d {d})");
                    }
                }
            }
        }
    }

    fn fixture(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/iquants")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// Layout constants agree with the DType wiring and with gguf-py's GGML_QUANT_SIZES
    /// (block size, type size) for these ids, as printed by gguf 0.19.0.
    #[test]
    fn layouts() {
        for (d, id, bs, bb, nm) in TYPES {
            assert_eq!(d.ggml_type(), id);
            assert_eq!(d.block_size(), bs);
            assert_eq!(d.block_bytes(), bb);
            assert_eq!(d.name(), nm);
            assert!(d.is_quantized() && !d.is_k_quant());
            assert_eq!(DType::from_ggml_type(id), Some(d));
            assert_eq!(
                crate::tensor::dtype::ggml_type_name(id).split(' ').next(),
                Some(&*nm.to_uppercase())
            );
        }
        assert_eq!(KSIGNS[0], 0);
        assert_eq!(KSIGNS[1], 0x81);
        assert_eq!(KSIGNS[127], 0xff);
        assert_eq!(e8m0_half(0).to_bits(), 0x0020_0000);
        assert_eq!(e8m0_half(1), 2f32.powi(-127));
        assert_eq!(e8m0_half(128), 1.0);
        assert_eq!(e8m0_half(255), 2f32.powi(127));
        assert_eq!(ue4m3_half(0x38), 0.5); // e 7, m 0: 1.0, halved
        assert_eq!(ue4m3_half(0x01), 2f32.powi(-10));
        assert_eq!(ue4m3_half(0x7E), 224.0); // 448, E4M3's largest, halved
        assert_eq!(ue4m3_half(0x7F), 0.0);
        assert_eq!(ue4m3_half(0xFF), 240.0);
        assert_eq!(ue4m3_half(0xB8), 0.5);
    }

    /// Random blocks dequantized by gguf-py (tools/gen_iquant_fixtures.py; Q1_0 and Q2_0, which
    /// gguf-py lacks, by ggml's C `to_float`): ours give the same bits; dot_row, axpy_row and the C reference kernel's f32 dot product agree with the
    /// dequantized row (dot products within 1e-5 of Σ|w·x|, float summation order).
    #[test]
    fn dequantize_matches_gguf_py() {
        for (t, _, bs, bb, nm) in TYPES {
            let blocks = fixture(&format!("{nm}.blocks"));
            let want: Vec<f32> = fixture(&format!("{nm}.f32"))
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            assert!(!blocks.is_empty());
            assert_eq!(blocks.len() / bb * bs, want.len(), "{nm}");
            let mut got = vec![0f32; want.len()];
            quant::dequantize_row(t, &blocks, &mut got);
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "{nm} element {i}: {a} vs gguf-py {b}"
                );
            }
            // dot and axpy on the blocks without infinities (MXFP4's largest exponents).
            let (mut blocks_f, mut want_f) = (Vec::new(), Vec::new());
            for (b, w) in blocks.chunks_exact(bb).zip(want.chunks_exact(bs)) {
                if w.iter().all(|v| v.is_finite()) {
                    blocks_f.extend_from_slice(b);
                    want_f.extend_from_slice(w);
                }
            }
            assert!(want_f.len() * 2 >= want.len(), "{nm}");
            let (blocks, want) = (blocks_f, want_f);
            let x: Vec<f32> = (0..want.len())
                .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 300.0)
                .collect();
            let exact: f64 = want
                .iter()
                .zip(&x)
                .map(|(w, v)| *w as f64 * *v as f64)
                .sum();
            let mag: f64 = want
                .iter()
                .zip(&x)
                .map(|(w, v)| (*w as f64 * *v as f64).abs())
                .sum();
            let got = quant::dot_row(t, &blocks, &x) as f64;
            assert!(
                (got - exact).abs() <= 1e-5 * mag,
                "{nm}: dot {got} vs {exact}"
            );
            let c = crate::kernels::vec_dot_generic(t, &blocks, &x).unwrap() as f64;
            assert!(
                (c - exact).abs() <= 1e-5 * mag,
                "{nm}: C dot {c} vs {exact}"
            );
            let mut y = x.clone();
            quant::axpy_row(t, &blocks, -0.5, &mut y);
            for i in 0..y.len() {
                assert_eq!(y[i], x[i] + -0.5 * want[i], "{nm} axpy {i}");
            }
        }
    }
}
