//! FP8 E4M3 ("e4m3fn", as in DeepSeek-V3/R1's official safetensors) and its 2-D block scales.
//!
//! An e4m3fn byte is 1 sign bit, 4 exponent bits (bias 7) and 3 mantissa bits. Exponent 0 is
//! subnormal (`m/8 · 2^-6`); there are no infinities, and only `S.1111.111` (0x7f, 0xff) is NaN,
//! so `S.1111.110` = ±448 is the largest finite value. Decoding goes through a 256-entry table
//! built at compile time from the bit pattern alone (exact: every e4m3 value is an f32).
//!
//! DeepSeek stores a weight `W` [rows, cols] as fp8 plus `scale_inv` [⌈rows/BR⌉, ⌈cols/BC⌉]
//! in f32 (BR = BC = 128), and `W[r, c] = fp8[r, c] · scale_inv[r / BR, c / BC]`. The row
//! functions here take one weight row and the scale row of its row block (little-endian f32
//! bytes, as they lie in the mapping) and dequantize per column block inside the loop: no
//! temporary row, no allocation. This is a Rust kernel (no C/SIMD version yet).

/// f32 bits of e4m3fn byte `b`, computed with integer operations only (so usable in const).
const fn e4m3_bits(b: u8) -> u32 {
    let sign = ((b >> 7) as u32) << 31;
    let e = ((b >> 3) & 0x0f) as u32;
    let m = (b & 0x07) as u32;
    if e == 0x0f && m == 0x07 {
        return sign | 0x7fc0_0000; // NaN (quiet), keeps the sign
    }
    if e == 0 {
        if m == 0 {
            return sign; // ±0
        }
        // Subnormal m/8 · 2^-6 = m · 2^-9: normalise m into 1.xxx.
        let mut mm = m;
        let mut exp: i32 = -9;
        while mm < 8 {
            mm <<= 1;
            exp -= 1;
        }
        // now mm in 8..16 means value = (mm/8) · 2^(exp+3)
        let fe = (exp + 3 + 127) as u32;
        return sign | (fe << 23) | ((mm & 7) << 20);
    }
    sign | ((e + 127 - 7) << 23) | (m << 20)
}

const fn build_lut() -> [f32; 256] {
    let mut t = [0.0f32; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = f32::from_bits(e4m3_bits(i as u8));
        i += 1;
    }
    t
}

/// e4m3fn byte → f32, for every byte.
pub static E4M3_TO_F32: [f32; 256] = build_lut();

/// Decodes one e4m3fn byte.
#[inline(always)]
pub fn e4m3_to_f32(b: u8) -> f32 {
    E4M3_TO_F32[b as usize]
}

/// 2^120 = 2^(127 − 7): moves an e4m3 exponent (bias 7) into f32's (bias 127).
const REBIAS: f32 = f32::from_bits((127 + 120) << 23);

/// Decodes one e4m3fn byte arithmetically (what the kernels use: no table gather, so the
/// compiler can vectorise it). The 7 magnitude bits placed at f32 bits 20..27 form an f32 whose
/// value is the e4m3 value × 2^-120 — for normals and, as f32 subnormals, for e4m3 subnormals
/// too — so one exact multiplication by 2^120 finishes the job; 0x7f/0xff become NaN.
#[inline(always)]
pub fn decode(b: u8) -> f32 {
    let b = b as u32;
    let v = f32::from_bits(((b & 0x80) << 24) | ((b & 0x7f) << 20)) * REBIAS;
    if b & 0x7f == 0x7f {
        f32::NAN
    } else {
        v
    }
}

/// Encodes `x` as the nearest e4m3fn value (ties to even mantissa), saturating to ±448; NaN
/// stays NaN. Used by tests and by writers; the kernels only decode.
pub fn f32_to_e4m3(x: f32) -> u8 {
    if x.is_nan() {
        return 0x7f;
    }
    let sign = if x.is_sign_negative() { 0x80u8 } else { 0 };
    let a = x.abs();
    // Positive codes 0x00..=0x7e are increasing in value: pick the closest, even on ties.
    let mut best = 0u8;
    let mut best_err = f32::INFINITY;
    for code in 0u8..=0x7e {
        let err = (E4M3_TO_F32[code as usize] - a).abs();
        if err < best_err || (err == best_err && code & 1 == 0) {
            best = code;
            best_err = err;
        }
    }
    sign | best
}

#[inline(always)]
fn scale_at(scales: &[u8], blk: usize) -> f32 {
    match scales.get(blk * 4..blk * 4 + 4) {
        Some(s) => f32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0.0, // unreachable for validated views
    }
}

const LANES: usize = 8;

/// Unscaled dot product of e4m3 bytes with `x` (same length).
#[inline(always)]
fn dot_block(bytes: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let bc = bytes.chunks_exact(LANES);
    let xc = x.chunks_exact(LANES);
    let (bt, xt) = (bc.remainder(), xc.remainder());
    for (b, x) in bc.zip(xc) {
        for j in 0..LANES {
            acc[j] += decode(b[j]) * x[j];
        }
    }
    let mut tail = 0.0;
    for (&b, &x) in bt.iter().zip(xt) {
        tail += decode(b) * x;
    }
    acc.iter().sum::<f32>() + tail
}

/// `Σ_c W[r, c] · x[c]` for one row: `bytes` the row's e4m3 values, `scales` the f32 scale row
/// of its row block (⌈len/block_cols⌉ values, little-endian bytes).
#[inline]
pub fn dot_scaled(bytes: &[u8], scales: &[u8], block_cols: usize, x: &[f32]) -> f32 {
    let mut sum = 0.0f32;
    for (blk, (b, x)) in bytes
        .chunks(block_cols)
        .zip(x.chunks(block_cols))
        .enumerate()
    {
        sum += scale_at(scales, blk) * dot_block(b, x);
    }
    sum
}

/// Decodes one scaled row into `out`.
pub fn dequantize_scaled(bytes: &[u8], scales: &[u8], block_cols: usize, out: &mut [f32]) {
    for (blk, (b, o)) in bytes
        .chunks(block_cols)
        .zip(out.chunks_mut(block_cols))
        .enumerate()
    {
        let s = scale_at(scales, blk);
        for (o, &b) in o.iter_mut().zip(b) {
            *o = decode(b) * s;
        }
    }
}

/// `y += a · W[r, :]` for one scaled row.
pub fn axpy_scaled(bytes: &[u8], scales: &[u8], block_cols: usize, a: f32, y: &mut [f32]) {
    for (blk, (b, y)) in bytes
        .chunks(block_cols)
        .zip(y.chunks_mut(block_cols))
        .enumerate()
    {
        let s = a * scale_at(scales, blk);
        for (y, &b) in y.iter_mut().zip(b) {
            *y += decode(b) * s;
        }
    }
}

/// Dot product of two f32 slices (same length), in independent lanes.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for j in 0..LANES {
            acc[j] += x[j] * y[j];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Unscaled row functions (a bare F8_E4M3 tensor without block scales).
pub fn dot(bytes: &[u8], x: &[f32]) -> f32 {
    dot_block(bytes, x)
}

pub fn dequantize(bytes: &[u8], out: &mut [f32]) {
    for (o, &b) in out.iter_mut().zip(bytes) {
        *o = E4M3_TO_F32[b as usize];
    }
}

pub fn axpy(bytes: &[u8], a: f32, y: &mut [f32]) {
    for (y, &b) in y.iter_mut().zip(bytes) {
        *y += E4M3_TO_F32[b as usize] * a;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference decode straight from the e4m3fn definition, in f64.
    fn reference(b: u8) -> f64 {
        let s = if b & 0x80 != 0 { -1.0 } else { 1.0 };
        let e = ((b >> 3) & 0x0f) as i32;
        let m = (b & 7) as f64;
        if e == 15 && m == 7.0 {
            return f64::NAN;
        }
        if e == 0 {
            s * m / 8.0 * 2f64.powi(-6)
        } else {
            s * (1.0 + m / 8.0) * 2f64.powi(e - 7)
        }
    }

    #[test]
    fn table_matches_definition() {
        for b in 0..=255u8 {
            let want = reference(b);
            let got = e4m3_to_f32(b);
            if want.is_nan() {
                assert!(got.is_nan(), "byte {b:#04x}");
            } else {
                assert_eq!(got as f64, want, "byte {b:#04x}");
            }
        }
        // Landmarks of the format: max 448, min normal 2^-6, min subnormal 2^-9, -0.
        assert_eq!(e4m3_to_f32(0x7e), 448.0);
        assert_eq!(e4m3_to_f32(0xfe), -448.0);
        assert_eq!(e4m3_to_f32(0x08), 2f32.powi(-6));
        assert_eq!(e4m3_to_f32(0x01), 2f32.powi(-9));
        assert_eq!(e4m3_to_f32(0x80).to_bits(), (-0.0f32).to_bits());
        assert!(e4m3_to_f32(0x7f).is_nan() && e4m3_to_f32(0xff).is_nan());
        // 0x78 (exp 15, m 0) is a finite 256, not infinity as in IEEE-style e4m3.
        assert_eq!(e4m3_to_f32(0x78), 256.0);
    }

    #[test]
    fn arithmetic_decode_equals_table() {
        for b in 0..=255u8 {
            let (t, d) = (e4m3_to_f32(b), decode(b));
            assert!(
                t.to_bits() == d.to_bits() || (t.is_nan() && d.is_nan()),
                "byte {b:#04x}: {t} vs {d}"
            );
        }
    }

    #[test]
    fn encode_round_trips_and_rounds() {
        for b in 0..=255u8 {
            if b & 0x7f == 0x7f {
                continue;
            }
            assert_eq!(f32_to_e4m3(e4m3_to_f32(b)), b, "byte {b:#04x}");
        }
        assert_eq!(f32_to_e4m3(1000.0), 0x7e);
        assert_eq!(f32_to_e4m3(-1000.0), 0xfe);
        // 1.0625 is halfway between 1.0 (0x38) and 1.125 (0x39): ties to even → 0x38.
        assert_eq!(f32_to_e4m3(1.0625), 0x38);
        assert_eq!(f32_to_e4m3(1.07), 0x39);
    }

    #[test]
    fn scaled_row_ops_agree() {
        // 300 columns in blocks of 128: two whole blocks and a partial one of 44.
        let n = 300;
        let bytes: Vec<u8> = (0..n).map(|i| ((i * 37 + 11) % 256) as u8 & 0xf7).collect();
        let sc = [0.5f32, -2.0, 0.125];
        let scales: Vec<u8> = sc.iter().flat_map(|s| s.to_le_bytes()).collect();
        let x: Vec<f32> = (0..n).map(|i| ((i % 7) as f32 - 3.0) * 0.25).collect();
        let mut w = vec![0.0; n];
        dequantize_scaled(&bytes, &scales, 128, &mut w);
        for i in 0..n {
            assert_eq!(w[i], e4m3_to_f32(bytes[i]) * sc[i / 128]);
        }
        let want: f64 = w.iter().zip(&x).map(|(&a, &b)| a as f64 * b as f64).sum();
        let got = dot_scaled(&bytes, &scales, 128, &x);
        let mag: f64 = w.iter().zip(&x).map(|(&a, &b)| (a * b).abs() as f64).sum();
        assert!((got as f64 - want).abs() <= 1e-6 * mag, "{got} vs {want}");
        let mut y = vec![1.0; n];
        axpy_scaled(&bytes, &scales, 128, 2.0, &mut y);
        for i in 0..n {
            assert_eq!(y[i], 1.0 + 2.0 * w[i]);
        }
    }
}
