//! IQ4_NL and IQ4_XS: 4-bit codes indexing a fixed non-linear table of 16 values
//! ([`KVALUES`], ggml's `kvalues_iq4nl`), which puts more levels near zero where weights are
//! dense. Block layouts, dequantization bit-exact with ggml and gguf-py, and quantizers that
//! need no importance matrix.
//!
//! Layouts (ggml's `block_iq4_nl`, `block_iq4_xs`; little-endian bytes):
//! * `IQ4_NL`, 18 bytes per 32 elements: f16 `d`, 16 bytes of nibbles (byte `j`: element `j`
//!   low, element `j + 16` high, as Q4_0); `x = d * KVALUES[q]`.
//! * `IQ4_XS`, 136 bytes per 256 elements: f16 `d`, u16 `scales_h`, 4 bytes `scales_l`, 128
//!   bytes of nibbles. Sub-block `i` (0..8) of 32 elements has the 6-bit scale
//!   `ls = (scales_l[i / 2] >> 4 (i % 2)) & 15 | ((scales_h >> 2i) & 3) << 4` and its nibbles in
//!   bytes `16i..16i + 16` (laid out as an IQ4_NL block); `x = (d * (ls - 32)) * KVALUES[q]`.
//!
//! Quantizers (moela's own, after the format's description): per 32-element block, weights
//! `w = x²` (what llama.cpp uses without an importance matrix), codes chosen as the nearest
//! table value to `x / d` for a few candidate scales `d` around `max / KVALUES[0]`, and for
//! each candidate the least-squares scale `Σ w q x / Σ w q²`; the candidate with the smallest
//! weighted error wins. IQ4_XS then quantizes the eight sub-block scales to 6 bits (-32..=31)
//! against `d = -max_scale / 32` (the largest scale lands exactly on -32) and re-picks the codes
//! for the scale actually stored.

// Fixed-size arrays indexed in constant-bound loops (see quant.rs).
#![allow(clippy::needless_range_loop)]

use half::f16;

use super::dtype::DType;
use super::kquant::QK_K;
use super::quant::{f16_bits_to_f32, QK};

/// ggml's `kvalues_iq4nl`: the 16 code values, ascending.
pub const KVALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

pub(crate) const IQ4_NL_BYTES: usize = 18;
pub(crate) const IQ4_XS_BYTES: usize = 136;

/// One `IQ4_NL` block as ggml declares it (layout documentation; the code works on bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockIq4Nl {
    pub d: f16,
    pub qs: [u8; QK / 2],
}

/// One `IQ4_XS` super-block as ggml declares it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockIq4Xs {
    pub d: f16,
    pub scales_h: u16,
    pub scales_l: [u8; QK_K / 64],
    pub qs: [u8; QK_K / 2],
}

const _: () = assert!(std::mem::size_of::<BlockIq4Nl>() == IQ4_NL_BYTES);
const _: () = assert!(std::mem::size_of::<BlockIq4Xs>() == IQ4_XS_BYTES);

#[inline(always)]
fn f16_at(b: &[u8], at: usize) -> f32 {
    f16_bits_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// The 6-bit scale (0..=63, stored as `ls`; the factor is `ls - 32`) of IQ4_XS sub-block `i`.
#[inline(always)]
pub fn xs_scale(b: &[u8], i: usize) -> i32 {
    let h = u16::from_le_bytes([b[2], b[3]]);
    let lo = (b[4 + i / 2] >> (4 * (i % 2))) & 0x0f;
    (lo as i32) | ((((h >> (2 * i)) & 3) as i32) << 4)
}

/// 32 elements from 16 nibble bytes with factor `d`.
#[inline(always)]
fn decode32(d: f32, qs: &[u8], y: &mut [f32]) {
    for j in 0..QK / 2 {
        y[j] = d * KVALUES[(qs[j] & 0x0f) as usize] as f32;
        y[j + QK / 2] = d * KVALUES[(qs[j] >> 4) as usize] as f32;
    }
}

/// Decodes one block (IQ4_NL: 32 elements; IQ4_XS: 256) into `y`.
#[inline(always)]
pub fn dequantize_block(dtype: DType, b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    if dtype == DType::IQ4_NL {
        decode32(d, &b[2..18], y);
    } else {
        for i in 0..QK_K / QK {
            let dl = d * (xs_scale(b, i) - 32) as f32;
            decode32(
                dl,
                &b[8 + 16 * i..8 + 16 * i + 16],
                &mut y[QK * i..QK * i + QK],
            );
        }
    }
}

/// Index of the table value nearest to `v` (the lower one on ties).
#[inline]
fn nearest(v: f32) -> u8 {
    if v.is_nan() || v <= KVALUES[0] as f32 {
        return 0;
    }
    if v >= KVALUES[15] as f32 {
        return 15;
    }
    // First value >= v; v lies between it and the one before.
    let hi = KVALUES.iter().position(|&k| k as f32 >= v).unwrap_or(15);
    let (a, b) = (KVALUES[hi - 1] as f32, KVALUES[hi] as f32);
    if v - a <= b - v {
        (hi - 1) as u8
    } else {
        hi as u8
    }
}

/// Candidate scales tried around `max / KVALUES[0]`: inverse scales `(t + KVALUES[0]) / max`
/// for t in -NTRY..=NTRY.
const NTRY: i32 = 7;

/// The best scale for one 32-element block (0 for an all-zero block), and its codes.
fn best_scale(x: &[f32]) -> (f32, [u8; QK]) {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    let mut codes = [0u8; QK];
    if amax.is_nan() || amax < 1e-15 {
        return (0.0, codes);
    }
    let fit = |id: f32, codes: &mut [u8; QK]| {
        let (mut sqx, mut sq2) = (0f32, 0f32);
        for (c, &v) in codes.iter_mut().zip(x) {
            *c = nearest(id * v);
            let q = KVALUES[*c as usize] as f32;
            let w = v * v;
            sqx += w * q * v;
            sq2 += w * q * q;
        }
        (sqx, sq2)
    };
    // The plain scale: the largest element maps onto the table's end (-127).
    let (sqx, sq2) = fit(KVALUES[0] as f32 / max, &mut codes);
    let (mut d, mut best) = if sq2 > 0.0 {
        (sqx / sq2, sqx * sqx / sq2)
    } else {
        (max / KVALUES[0] as f32, 0.0)
    };
    let mut trial = [0u8; QK];
    for t in -NTRY..=NTRY {
        let (sqx, sq2) = fit((t as f32 + KVALUES[0] as f32) / max, &mut trial);
        // Maximizing (Σwqx)²/Σwq² minimizes the weighted squared error at the optimal scale.
        if sq2 > 0.0 && sqx * sqx > best * sq2 {
            d = sqx / sq2;
            best = sqx * sqx / sq2;
            codes = trial;
        }
    }
    (d, codes)
}

/// Codes of a block for the stored scale `d` (all zero when `d` is 0).
fn codes_for(d: f32, x: &[f32], qs: &mut [u8]) {
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for j in 0..QK / 2 {
        let lo = nearest(id * x[j]);
        let hi = nearest(id * x[j + QK / 2]);
        qs[j] = lo | (hi << 4);
    }
}

/// Encodes one block (IQ4_NL: 32 values into 18 bytes; IQ4_XS: 256 values into 136 bytes).
pub fn quantize_block(dtype: DType, x: &[f32], out: &mut [u8]) {
    if dtype == DType::IQ4_NL {
        let (d, _) = best_scale(x);
        let dh = f16::from_f32(d);
        out[0..2].copy_from_slice(&dh.to_bits().to_le_bytes());
        codes_for(dh.to_f32(), x, &mut out[2..18]);
        return;
    }
    let mut scales = [0f32; QK_K / QK];
    let (mut amax, mut max_scale) = (0f32, 0f32);
    for (i, s) in scales.iter_mut().enumerate() {
        *s = best_scale(&x[QK * i..QK * i + QK]).0;
        if s.abs() > amax {
            amax = s.abs();
            max_scale = *s;
        }
    }
    let dh = f16::from_f32(-max_scale / 32.0);
    let d = dh.to_f32();
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out[0..2].copy_from_slice(&dh.to_bits().to_le_bytes());
    let mut scales_h = 0u16;
    out[4..8].fill(0);
    for i in 0..QK_K / QK {
        let l = ((id * scales[i]).round() as i32).clamp(-32, 31);
        let ls = (l + 32) as u8;
        out[4 + i / 2] |= (ls & 0x0f) << (4 * (i % 2));
        scales_h |= ((ls >> 4) as u16) << (2 * i);
        codes_for(
            d * l as f32,
            &x[QK * i..QK * i + QK],
            &mut out[8 + 16 * i..8 + 16 * i + 16],
        );
    }
    out[2..4].copy_from_slice(&scales_h.to_le_bytes());
}

/// Elements per stored block of `dtype`.
fn block_elems(dtype: DType) -> usize {
    if dtype == DType::IQ4_NL {
        QK
    } else {
        QK_K
    }
}

/// Encodes a row (`x.len()` a multiple of the block size, `out` its `bytes_for`).
pub fn quantize_row(dtype: DType, x: &[f32], out: &mut [u8]) {
    let be = block_elems(dtype);
    for (o, xb) in out
        .chunks_exact_mut(dtype.block_bytes())
        .zip(x.chunks_exact(be))
    {
        quantize_block(dtype, xb, o);
    }
}

/// Decodes a row.
pub fn dequantize_row(dtype: DType, bytes: &[u8], out: &mut [f32]) {
    let be = block_elems(dtype);
    for (ob, b) in out
        .chunks_exact_mut(be)
        .zip(bytes.chunks_exact(dtype.block_bytes()))
    {
        dequantize_block(dtype, b, ob);
    }
}

/// Lanes of the running sums.
const LANES: usize = 8;

/// Dot product of a stored row with `x` (blocks decoded on the stack, 8 lanes).
pub fn dot_row(dtype: DType, bytes: &[u8], x: &[f32]) -> f32 {
    let be = block_elems(dtype);
    let mut acc = [0f32; LANES];
    let mut w = [0f32; QK_K];
    for (b, xv) in bytes
        .chunks_exact(dtype.block_bytes())
        .zip(x.chunks_exact(be))
    {
        dequantize_block(dtype, b, &mut w[..be]);
        for k in 0..be / LANES {
            for l in 0..LANES {
                acc[l] += w[k * LANES + l] * xv[k * LANES + l];
            }
        }
    }
    acc.iter().sum()
}

/// `y += a * row`.
pub fn axpy_row(dtype: DType, bytes: &[u8], a: f32, y: &mut [f32]) {
    let be = block_elems(dtype);
    let mut w = [0f32; QK_K];
    for (yb, b) in y
        .chunks_exact_mut(be)
        .zip(bytes.chunks_exact(dtype.block_bytes()))
    {
        dequantize_block(dtype, b, &mut w[..be]);
        for (o, v) in yb.iter_mut().zip(&w[..be]) {
            *o += a * v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_value() {
        for (i, &k) in KVALUES.iter().enumerate() {
            assert_eq!(nearest(k as f32), i as u8);
        }
        assert_eq!(nearest(-1000.0), 0);
        assert_eq!(nearest(1000.0), 15);
        assert_eq!(nearest(f32::NAN), 0);
        assert_eq!(nearest(-4.5), 7); // between -10 and 1: nearer to 1 (5.5 vs 5.5 -> lower)
        assert_eq!(nearest(-4.4), 8);
        assert_eq!(nearest(100.0), 14);
    }

    #[test]
    fn table_values_round_trip() {
        // A block made of table values times a power of two is reproduced exactly.
        let x: Vec<f32> = (0..32).map(|i| KVALUES[i % 16] as f32 * 0.25).collect();
        let mut b = [0u8; IQ4_NL_BYTES];
        quantize_block(DType::IQ4_NL, &x, &mut b);
        let mut y = [0f32; 32];
        dequantize_block(DType::IQ4_NL, &b, &mut y);
        assert_eq!(&y[..], &x[..]);
        // All zero.
        quantize_block(DType::IQ4_NL, &[0.0; 32], &mut b);
        dequantize_block(DType::IQ4_NL, &b, &mut y);
        assert_eq!(y, [0.0; 32]);
        let mut b = [0u8; IQ4_XS_BYTES];
        quantize_block(DType::IQ4_XS, &[0.0; 256], &mut b);
        let mut y = [1f32; 256];
        dequantize_block(DType::IQ4_XS, &b, &mut y);
        assert_eq!(y, [0.0; 256]);
    }
}
