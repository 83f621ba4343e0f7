//! The legacy 32-element GGUF types Q4_1, Q5_0 and Q5_1 (llama.cpp's fallbacks in its K-quant
//! mixes for rows that are not whole 256-element super-blocks): block layouts, dequantization
//! bit-exact with ggml and gguf-py, and the reference quantizers.
//!
//! Layouts (ggml's `block_q4_1`, `block_q5_0`, `block_q5_1`; little-endian bytes). As in Q4_0,
//! byte `j` of the 16 nibble bytes holds element `j` in its low nibble and element `j + 16` in
//! its high nibble; Q5's fifth bits are a little-endian u32 `qh`, bit `i` for element `i`.
//! * `Q4_1`, 20 bytes: f16 `d`, f16 `m`, 16 nibble bytes; `x = d * q + m`, `q` in 0..=15.
//! * `Q5_0`, 22 bytes: f16 `d`, u32 `qh`, 16 nibble bytes; `x = d * (q - 16)`, `q` in 0..=31.
//! * `Q5_1`, 24 bytes: f16 `d`, f16 `m`, u32 `qh`, 16 nibble bytes; `x = d * q + m`.
//!
//! Dequantization multiplies and adds in f32 in that order (no fused multiply-add), as gguf-py
//! does, so the floats are bit-identical (checked against fixtures written by gguf-py). The
//! quantizers are the reference ones of ggml and gguf-py (round to nearest):
//! * Q4_1 / Q5_1: `d = (max - min) / 15` (`/ 31`), `id = d != 0 ? 1/d : 0`,
//!   `q = min(15 | 31, trunc((x - min) * id + 0.5))`, stored `d` and `m = min` as f16.
//! * Q5_0: `max` = the element of largest magnitude (first on ties) with its sign,
//!   `d = max / -16`, `q = min(31, trunc(x * id + 16.5))`.

// Fixed-size arrays indexed in constant-bound loops (see quant.rs).
#![allow(clippy::needless_range_loop)]

use half::f16;

use super::dtype::DType;
use super::quant::{f16_bits_to_f32, QK};

pub(crate) const Q4_1_BYTES: usize = 20;
pub(crate) const Q5_0_BYTES: usize = 22;
pub(crate) const Q5_1_BYTES: usize = 24;

/// One `Q4_1` block as ggml declares it (layout documentation; the code works on bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; QK / 2],
}

/// One `Q5_0` block as ggml declares it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5_0 {
    pub d: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}

/// One `Q5_1` block as ggml declares it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == Q4_1_BYTES);
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == Q5_0_BYTES);
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == Q5_1_BYTES);

#[inline(always)]
fn f16_at(b: &[u8], at: usize) -> f32 {
    f16_bits_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// The 32 codes of a block: nibbles from `qs`, fifth bits from `qh` (None for Q4_1).
#[inline(always)]
fn codes(qs: &[u8], qh: Option<u32>) -> [u8; QK] {
    let mut q = [0u8; QK];
    for j in 0..QK / 2 {
        q[j] = qs[j] & 0x0f;
        q[j + QK / 2] = qs[j] >> 4;
    }
    if let Some(h) = qh {
        for i in 0..QK {
            q[i] |= (((h >> i) & 1) as u8) << 4;
        }
    }
    q
}

/// Decodes one block (`b.len() == dtype.block_bytes()`) into `y`.
#[inline(always)]
pub fn dequantize_block(dtype: DType, b: &[u8], y: &mut [f32; QK]) {
    let qh = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    match dtype {
        DType::Q4_1 => {
            let (d, m) = (f16_at(b, 0), f16_at(b, 2));
            let q = codes(&b[4..20], None);
            for i in 0..QK {
                y[i] = d * q[i] as f32 + m;
            }
        }
        DType::Q5_0 => {
            let d = f16_at(b, 0);
            let q = codes(&b[6..22], Some(qh(2)));
            for i in 0..QK {
                y[i] = d * (q[i] as i32 - 16) as f32;
            }
        }
        _ => {
            let (d, m) = (f16_at(b, 0), f16_at(b, 2));
            let q = codes(&b[8..24], Some(qh(4)));
            for i in 0..QK {
                y[i] = d * q[i] as f32 + m;
            }
        }
    }
}

/// Packs 32 codes (0..=31) into the nibble bytes and, for the 5-bit types, returns `qh`.
fn pack(q: &[u8; QK], qs: &mut [u8]) -> u32 {
    let mut qh = 0u32;
    for j in 0..QK / 2 {
        qs[j] = (q[j] & 0x0f) | ((q[j + QK / 2] & 0x0f) << 4);
    }
    for i in 0..QK {
        qh |= (((q[i] >> 4) & 1) as u32) << i;
    }
    qh
}

/// Encodes one block of 32 values into `out` (`dtype.block_bytes()` bytes).
pub fn quantize_block(dtype: DType, x: &[f32], out: &mut [u8]) {
    let mut q = [0u8; QK];
    match dtype {
        DType::Q5_0 => {
            let (mut amax, mut max) = (0f32, 0f32);
            for &v in x {
                if amax < v.abs() {
                    amax = v.abs();
                    max = v;
                }
            }
            let d = max / -16.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            for (c, v) in q.iter_mut().zip(x) {
                // `as u8` saturates like numpy's clip after the truncation; never below 0.5.
                *c = ((v * id + 16.5) as u8).min(31);
            }
            out[0..2].copy_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
            let qh = pack(&q, &mut out[6..22]);
            out[2..6].copy_from_slice(&qh.to_le_bytes());
        }
        _ => {
            let five = dtype == DType::Q5_1;
            let (mut min, mut max) = (x[0], x[0]);
            for &v in &x[1..] {
                min = min.min(v);
                max = max.max(v);
            }
            let top = if five { 31u8 } else { 15 };
            let d = (max - min) / top as f32;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            for (c, v) in q.iter_mut().zip(x) {
                *c = (((v - min) * id + 0.5) as u8).min(top);
            }
            out[0..2].copy_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
            out[2..4].copy_from_slice(&f16::from_f32(min).to_bits().to_le_bytes());
            if five {
                let qh = pack(&q, &mut out[8..24]);
                out[4..8].copy_from_slice(&qh.to_le_bytes());
            } else {
                pack(&q, &mut out[4..20]);
            }
        }
    }
}

/// Encodes a row (`x.len()` a multiple of 32, `out` its `bytes_for`).
pub fn quantize_row(dtype: DType, x: &[f32], out: &mut [u8]) {
    for (o, xb) in out
        .chunks_exact_mut(dtype.block_bytes())
        .zip(x.chunks_exact(QK))
    {
        quantize_block(dtype, xb, o);
    }
}

/// Decodes a row.
pub fn dequantize_row(dtype: DType, bytes: &[u8], out: &mut [f32]) {
    for (ob, b) in out
        .chunks_exact_mut(QK)
        .zip(bytes.chunks_exact(dtype.block_bytes()))
    {
        if let Ok(ob) = <&mut [f32; QK]>::try_from(ob) {
            dequantize_block(dtype, b, ob);
        }
    }
}

/// Lanes of the running sums.
const LANES: usize = 8;

/// Dot product of a stored row with `x`: each block decoded to f32 on the stack, then summed
/// in 8 lanes.
pub fn dot_row(dtype: DType, bytes: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut w = [0f32; QK];
    for (b, xv) in bytes
        .chunks_exact(dtype.block_bytes())
        .zip(x.chunks_exact(QK))
    {
        dequantize_block(dtype, b, &mut w);
        for k in 0..QK / LANES {
            for l in 0..LANES {
                acc[l] += w[k * LANES + l] * xv[k * LANES + l];
            }
        }
    }
    acc.iter().sum()
}

/// `y += a * row`.
pub fn axpy_row(dtype: DType, bytes: &[u8], a: f32, y: &mut [f32]) {
    let mut w = [0f32; QK];
    for (yb, b) in y
        .chunks_exact_mut(QK)
        .zip(bytes.chunks_exact(dtype.block_bytes()))
    {
        dequantize_block(dtype, b, &mut w);
        for (o, v) in yb.iter_mut().zip(&w) {
            *o += a * v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(dtype: DType, x: &[f32]) -> Vec<u8> {
        let mut out = vec![0u8; dtype.bytes_for(x.len()).unwrap()];
        quantize_row(dtype, x, &mut out);
        out
    }

    fn dq(dtype: DType, b: &[u8], n: usize) -> Vec<f32> {
        let mut out = vec![0f32; n];
        dequantize_row(dtype, b, &mut out);
        out
    }

    #[test]
    fn known_blocks() {
        // Q4_1: values 0..15 step 1 plus an offset: d = 1, m = min, exact.
        let x: Vec<f32> = (0..32).map(|i| (i % 16) as f32 - 3.0).collect();
        let b = q(DType::Q4_1, &x);
        assert_eq!(&b[..4], &[0x00, 0x3c, 0x00, 0xc2]); // d = 1.0, m = -3.0
        assert_eq!(dq(DType::Q4_1, &b, 32), x);
        // Q5_1: 0..31 exact.
        let x: Vec<f32> = (0..32).map(|i| i as f32 * 0.5 + 1.0).collect();
        let b = q(DType::Q5_1, &x);
        assert_eq!(dq(DType::Q5_1, &b, 32), x);
        assert_eq!(u32::from_le_bytes([b[4], b[5], b[6], b[7]]), 0xffff_0000);
        // Q5_0: max = -16 so d = 1; x = q - 16 for integers in -16..=15.
        let x: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect();
        let b = q(DType::Q5_0, &x);
        assert_eq!(&b[..2], &[0x00, 0x3c]);
        assert_eq!(dq(DType::Q5_0, &b, 32), x);
        // All zero: d = 0, codes 16 for Q5_0 (bit 4 set everywhere).
        let b = q(DType::Q5_0, &[0.0; 32]);
        assert_eq!(&b[2..6], &[0xff; 4]);
        assert_eq!(dq(DType::Q5_0, &b, 32), vec![0.0; 32]);
    }

    fn fixture(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/legacy")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn floats(b: &[u8]) -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    /// Random blocks of all five types dequantized by gguf-py (tools/gen_legacy_fixtures.py):
    /// moela's Rust dequantization gives the same bits, and the C reference kernel's f32 dot
    /// product agrees with gguf-py's values within float summation error (1e-5 of Σ|w·x|).
    #[test]
    fn dequantize_matches_gguf_py() {
        for t in [
            DType::Q4_1,
            DType::Q5_0,
            DType::Q5_1,
            DType::IQ4_NL,
            DType::IQ4_XS,
        ] {
            let blocks = fixture(&format!("{}.blocks", t.name()));
            let want = floats(&fixture(&format!("{}.f32", t.name())));
            assert_eq!(blocks.len() / t.block_bytes() * t.block_size(), want.len());
            let mut got = vec![0f32; want.len()];
            crate::tensor::quant::dequantize_row(t, &blocks, &mut got);
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "{t:?} element {i}: {a} vs gguf-py {b}"
                );
            }
            let x: Vec<f32> = (0..want.len())
                .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 1.3)
                .collect();
            let c = crate::kernels::vec_dot_generic(t, &blocks, &x).unwrap() as f64;
            let r = crate::tensor::quant::dot_row(t, &blocks, &x) as f64;
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
            assert!((c - exact).abs() <= 1e-5 * mag, "{t:?}: C {c} vs {exact}");
            assert!(
                (r - exact).abs() <= 1e-5 * mag,
                "{t:?}: Rust {r} vs {exact}"
            );
        }
    }

    /// gguf-py's reference quantizers (tools/gen_legacy_fixtures.py: random, tiny, huge,
    /// zero, constant, evenly spaced, tied, one-signed blocks): moela writes the same bytes.
    #[test]
    fn quantize_matches_gguf_py() {
        let x = floats(&fixture("quant_input.f32"));
        for t in [DType::Q4_1, DType::Q5_0, DType::Q5_1] {
            let want = fixture(&format!("quant_{}.bin", t.name()));
            let got = q(t, &x);
            for (i, (a, b)) in got
                .chunks(t.block_bytes())
                .zip(want.chunks(t.block_bytes()))
                .enumerate()
            {
                assert_eq!(a, b, "{t:?} block {i}");
            }
            assert_eq!(got.len(), want.len());
        }
    }
}
