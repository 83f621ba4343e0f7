//! Row kernels over stored tensor bytes: quantize, dequantize, dot product and axpy for every
//! [`DType`] moela computes with.
//!
//! All functions work on raw little-endian byte slices exactly as they lie in a GGUF or
//! safetensors file. A memory mapping gives no alignment guarantee beyond the file's own
//! layout, so nothing here casts pointers: scalars are assembled with `from_le_bytes`.
//!
//! Block layouts (identical to ggml's):
//! * `Q8_0`: 32 elements in 34 bytes: an f16 scale `d`, then 32 × i8 `q`; `x = d * q`.
//! * `Q4_0`: 32 elements in 18 bytes: an f16 scale `d`, then 16 bytes; byte `j` holds element
//!   `j` in its low nibble and element `j + 16` in its high nibble; `x = d * (q - 8)`.
//! * `Q4_K`, `Q5_K`, `Q6_K`: 256-element super-blocks, see [`crate::tensor::kquant`].
//! * `Q4_1`, `Q5_0`, `Q5_1`: see [`crate::tensor::legacy`]; `IQ4_NL`, `IQ4_XS`: see
//!   [`crate::tensor::iq4`].
//!
//! Preconditions shared by the row functions (checked with `debug_assert!` on the hot paths,
//! returned as [`Error::InvalidArg`] by [`quantize_row`]): the number of elements is a multiple
//! of `dtype.block_size()` and the byte slice holds exactly `dtype.bytes_for(n)` bytes. In a
//! release build a violated precondition never panics: the kernels process the whole blocks
//! both slices have in common and ignore the rest.

// The kernels index fixed-size arrays with constant-bound loops on purpose: that is the shape
// the compiler fully unrolls and vectorises, and every index is checked at compile time.
#![allow(clippy::needless_range_loop)]

use crate::error::{Error, Result};
use crate::tensor::dtype::DType;
use crate::tensor::{iq4, iquant, kquant, legacy};

use crate::tensor::fp8;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
use half::{bf16, f16};

/// Elements per `Q8_0` / `Q4_0` block.
pub const QK: usize = 32;

/// One `Q8_0` block as ggml declares it (`block_q8_0`). Documentation of the layout: the
/// functions below work on bytes, never on this struct.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; QK],
}

/// One `Q4_0` block as ggml declares it (`block_q4_0`). Documentation of the layout: the
/// functions below work on bytes, never on this struct.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; QK / 2],
}

const Q8_0_BYTES: usize = 34;
const Q4_0_BYTES: usize = 18;
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == Q8_0_BYTES);
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == Q4_0_BYTES);

/// Lanes of the partial-sum accumulators. Independent lanes let the compiler vectorise the
/// sums (floating-point addition is not reassociated otherwise).
const LANES: usize = 16;

/// IEEE binary16 bits to f32, exact for every input (normals, subnormals, ±0, ±inf; NaNs keep
/// sign and payload). Branch-free and cheap: used for block scales and row tails, while whole
/// f16 rows go through half's slice conversion (F16C / NEON when the CPU has it).
#[inline(always)]
pub fn f16_bits_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let sign = (h & 0x8000) << 16;
    let em = (h & 0x7fff) << 13;
    // Reinterpreting exponent+mantissa as an f32 biases the exponent by 127 - 15 = 112 too
    // little; multiplying by 2^112 fixes normals and (exactly) scales subnormals.
    let scaled = f32::from_bits(em) * f32::from_bits(0x7780_0000);
    // Exponent all ones (inf/NaN): keep the mantissa, saturate the exponent.
    let bits = if em >= (0x7c00 << 13) {
        em | 0x7f80_0000
    } else {
        scaled.to_bits()
    };
    f32::from_bits(bits | sign)
}

#[inline(always)]
fn bf16_bits_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

#[inline(always)]
fn scale_at(lo: u8, hi: u8) -> f32 {
    f16_bits_to_f32(u16::from_le_bytes([lo, hi]))
}

/// Sum of the lanes. A plain in-order sum: the shape of this final reduction steers how the
/// compiler vectorises the lane loops, and the in-order form is the one that gave full-width
/// vectors in measurements (a pairwise tree made it split lanes into shuffled pairs).
#[inline(always)]
fn hsum<const N: usize>(acc: [f32; N]) -> f32 {
    acc.iter().sum()
}

fn len_error(dtype: DType, n: usize, bytes: usize) -> Error {
    match dtype.bytes_for(n) {
        None => Error::InvalidArg(format!(
            "{}: row of {n} elements is not a whole number of {}-element blocks",
            dtype.name(),
            dtype.block_size()
        )),
        Some(want) => Error::InvalidArg(format!(
            "{}: row of {n} elements needs {want} bytes, buffer has {bytes}",
            dtype.name()
        )),
    }
}

#[inline(always)]
fn lengths_ok(dtype: DType, n: usize, bytes: usize) -> bool {
    dtype.bytes_for(n) == Some(bytes)
}

// ---------------------------------------------------------------------------------------------
// Quantize
// ---------------------------------------------------------------------------------------------

/// Encodes `x` as one stored row of `dtype` into `out`.
///
/// F16 and BF16 round to nearest, ties to even. Q8_0 and Q4_0 reproduce ggml's reference
/// quantizers (`quantize_row_q8_0_ref`, `quantize_row_q4_0_ref`) bit for bit, so the bytes equal
/// what llama.cpp and gguf-py write:
/// * Q8_0: `d = amax / 127`, `id = d != 0 ? 1/d : 0`, `q = round(x * id)` (half away from 0).
/// * Q4_0: `max` = the element of largest magnitude (first one on ties) with its sign,
///   `d = max / -8`, `id = d != 0 ? 1/d : 0`, `q = min(15, trunc(x * id + 8.5))`.
///
/// The scale is computed in f32 and only then stored as f16, as ggml does.
///
/// Errors with [`Error::InvalidArg`] unless `x.len()` is a multiple of the block size and
/// `out.len() == dtype.bytes_for(x.len())`.
pub fn quantize_row(dtype: DType, x: &[f32], out: &mut [u8]) -> Result<()> {
    if !lengths_ok(dtype, x.len(), out.len()) {
        return Err(len_error(dtype, x.len(), out.len()));
    }
    match dtype {
        DType::F32 => {
            for (o, v) in out.chunks_exact_mut(4).zip(x) {
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        DType::F16 => {
            for (o, v) in out.chunks_exact_mut(2).zip(x) {
                o.copy_from_slice(&f16::from_f32(*v).to_bits().to_le_bytes());
            }
        }
        DType::BF16 => {
            for (o, v) in out.chunks_exact_mut(2).zip(x) {
                o.copy_from_slice(&bf16::from_f32(*v).to_bits().to_le_bytes());
            }
        }
        DType::Q8_0 => {
            for (o, xb) in out.chunks_exact_mut(Q8_0_BYTES).zip(x.chunks_exact(QK)) {
                quantize_block_q8_0(xb, o);
            }
        }
        DType::Q4_0 => {
            for (o, xb) in out.chunks_exact_mut(Q4_0_BYTES).zip(x.chunks_exact(QK)) {
                quantize_block_q4_0(xb, o);
            }
        }
        DType::Q4_K | DType::Q5_K | DType::Q6_K | DType::Q2_K | DType::Q3_K => {
            kquant::quantize_row(dtype, x, out)
        }
        DType::Q4_1 | DType::Q5_0 | DType::Q5_1 => legacy::quantize_row(dtype, x, out),
        DType::IQ4_NL | DType::IQ4_XS => iq4::quantize_row(dtype, x, out),

        // Plain nearest-value encoding, without block scales (those belong to the view).
        DType::F8E4M3 => {
            for (o, v) in out.iter_mut().zip(x) {
                *o = fp8::f32_to_e4m3(*v);
            }
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
        | DType::Q2_0 => {
            return Err(Error::InvalidArg(format!(
                "{}: moela reads this type but cannot write it",
                dtype.name()
            )))
        }
    }
    Ok(())
}

/// C's `MAX(a, b)` macro (`a > b ? a : b`), including its NaN behaviour.
#[inline(always)]
fn c_max(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

fn quantize_block_q8_0(x: &[f32], out: &mut [u8]) {
    let amax = x.iter().fold(0.0f32, |m, v| c_max(m, v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let (dh, qs) = out.split_at_mut(2);
    dh.copy_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
    for (q, v) in qs.iter_mut().zip(x) {
        // f32::round rounds half away from zero, like C's roundf; `as` saturates like the
        // (in-range) C conversion.
        *q = ((v * id).round() as i8) as u8;
    }
}

fn quantize_block_q4_0(x: &[f32], out: &mut [u8]) {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let (dh, qs) = out.split_at_mut(2);
    dh.copy_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
    let (lo, hi) = x.split_at(QK / 2);
    for ((q, a), b) in qs.iter_mut().zip(lo).zip(hi) {
        // `as i8` truncates toward zero like C's (int8_t) cast.
        let q0 = ((a * id + 8.5) as i8).min(15) as u8 & 0x0f;
        let q1 = ((b * id + 8.5) as i8).min(15) as u8 & 0x0f;
        *q = q0 | (q1 << 4);
    }
}

// ---------------------------------------------------------------------------------------------
// Dequantize
// ---------------------------------------------------------------------------------------------

/// Decodes one stored row of `dtype` into `out` (`out.len()` elements from
/// `dtype.bytes_for(out.len())` bytes; see the module preconditions).
pub fn dequantize_row(dtype: DType, bytes: &[u8], out: &mut [f32]) {
    debug_assert!(
        lengths_ok(dtype, out.len(), bytes.len()),
        "{}",
        len_error(dtype, out.len(), bytes.len())
    );
    match dtype {
        DType::F32 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        DType::F16 => {
            let bc = bytes.chunks_exact(2 * F16_CHUNK);
            let bt = bc.remainder();
            let mut oc = out.chunks_exact_mut(F16_CHUNK);
            for (o, b) in (&mut oc).zip(bc) {
                if let Ok(o) = <&mut [f32; F16_CHUNK]>::try_from(o) {
                    f16_chunk_to_f32(b, o);
                }
            }
            for (o, b) in oc.into_remainder().iter_mut().zip(bt.chunks_exact(2)) {
                *o = f16_bits_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        DType::BF16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = bf16_bits_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        DType::Q8_0 => {
            for (ob, b) in out.chunks_exact_mut(QK).zip(bytes.chunks_exact(Q8_0_BYTES)) {
                let (Ok(ob), Ok(b)) = (
                    <&mut [f32; QK]>::try_from(ob),
                    <&[u8; Q8_0_BYTES]>::try_from(b),
                ) else {
                    continue; // unreachable: chunks_exact gives exact sizes
                };
                let d = scale_at(b[0], b[1]);
                for j in 0..QK {
                    ob[j] = d * (b[2 + j] as i8) as f32;
                }
            }
        }
        DType::Q4_0 => {
            for (ob, b) in out.chunks_exact_mut(QK).zip(bytes.chunks_exact(Q4_0_BYTES)) {
                let (Ok(ob), Ok(b)) = (
                    <&mut [f32; QK]>::try_from(ob),
                    <&[u8; Q4_0_BYTES]>::try_from(b),
                ) else {
                    continue;
                };
                let d = scale_at(b[0], b[1]);
                for j in 0..QK / 2 {
                    let q = b[2 + j];
                    ob[j] = d * ((q & 0x0f) as i32 - 8) as f32;
                    ob[j + QK / 2] = d * ((q >> 4) as i32 - 8) as f32;
                }
            }
        }
        DType::Q4_K | DType::Q5_K | DType::Q6_K | DType::Q2_K | DType::Q3_K => {
            kquant::dequantize_row(dtype, bytes, out)
        }
        DType::Q4_1 | DType::Q5_0 | DType::Q5_1 => legacy::dequantize_row(dtype, bytes, out),
        DType::IQ4_NL | DType::IQ4_XS => iq4::dequantize_row(dtype, bytes, out),

        DType::F8E4M3 => fp8::dequantize(bytes, out),
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
        | DType::Q2_0 => iquant::dequantize_row(dtype, bytes, out),
    }
}

// ---------------------------------------------------------------------------------------------
// Dot product
// ---------------------------------------------------------------------------------------------

/// The dot product of one stored row of `dtype` with `x` (`x.len()` elements; see the module
/// preconditions). Works block by block straight off the bytes: no temporary row, no
/// allocation. Quantized blocks are summed in f32 lanes and scaled once per block.
#[inline]
pub fn dot_row(dtype: DType, bytes: &[u8], x: &[f32]) -> f32 {
    debug_assert!(
        lengths_ok(dtype, x.len(), bytes.len()),
        "{}",
        len_error(dtype, x.len(), bytes.len())
    );
    match dtype {
        DType::F32 => dot_f32(bytes, x),
        DType::F16 => dot_f16(bytes, x),
        DType::BF16 => dot_bf16(bytes, x),
        DType::Q8_0 => dot_q8_0(bytes, x),
        DType::Q4_0 => dot_q4_0(bytes, x),
        DType::Q4_K | DType::Q5_K | DType::Q6_K | DType::Q2_K | DType::Q3_K => {
            kquant::dot_row(dtype, bytes, x)
        }
        DType::Q4_1 | DType::Q5_0 | DType::Q5_1 => legacy::dot_row(dtype, bytes, x),
        DType::IQ4_NL | DType::IQ4_XS => iq4::dot_row(dtype, bytes, x),

        DType::F8E4M3 => fp8::dot(bytes, x),
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
        | DType::Q2_0 => iquant::dot_row(dtype, bytes, x),
    }
}

fn dot_f32(bytes: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let bc = bytes.chunks_exact(4 * LANES);
    let xc = x.chunks_exact(LANES);
    let (bt, xt) = (bc.remainder(), xc.remainder());
    for (b, xv) in bc.zip(xc) {
        let (Ok(b), Ok(xv)) = (
            <&[u8; 4 * LANES]>::try_from(b),
            <&[f32; LANES]>::try_from(xv),
        ) else {
            continue; // unreachable: chunks_exact gives exact sizes
        };
        for l in 0..LANES {
            let v = f32::from_le_bytes([b[4 * l], b[4 * l + 1], b[4 * l + 2], b[4 * l + 3]]);
            acc[l] += v * xv[l];
        }
    }
    let mut sum = hsum(acc);
    for (b, xv) in bt.chunks_exact(4).zip(xt) {
        sum += f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * xv;
    }
    sum
}

/// Elements converted per step by the f16 kernels (stack buffers of this size).
const F16_CHUNK: usize = 64;

/// Converts `F16_CHUNK` little-endian f16 values with half's slice conversion (F16C / NEON
/// when the CPU has it, detected at run time).
#[inline(always)]
fn f16_chunk_to_f32(b: &[u8], out: &mut [f32; F16_CHUNK]) {
    let mut bits = [0u16; F16_CHUNK];
    for (h, p) in bits.iter_mut().zip(b.chunks_exact(2)) {
        *h = u16::from_le_bytes([p[0], p[1]]);
    }
    bits.reinterpret_cast::<f16>().convert_to_f32_slice(out);
}

fn dot_f16(bytes: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut buf = [0f32; F16_CHUNK];
    let bc = bytes.chunks_exact(2 * F16_CHUNK);
    let xc = x.chunks_exact(F16_CHUNK);
    let (bt, xt) = (bc.remainder(), xc.remainder());
    for (b, xv) in bc.zip(xc) {
        let Ok(xv) = <&[f32; F16_CHUNK]>::try_from(xv) else {
            continue;
        };
        f16_chunk_to_f32(b, &mut buf);
        for k in 0..F16_CHUNK / LANES {
            for l in 0..LANES {
                acc[l] += buf[k * LANES + l] * xv[k * LANES + l];
            }
        }
    }
    let mut sum = hsum(acc);
    for (b, xv) in bt.chunks_exact(2).zip(xt) {
        sum += f16_bits_to_f32(u16::from_le_bytes([b[0], b[1]])) * xv;
    }
    sum
}

fn dot_bf16(bytes: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let bc = bytes.chunks_exact(2 * LANES);
    let xc = x.chunks_exact(LANES);
    let (bt, xt) = (bc.remainder(), xc.remainder());
    for (b, xv) in bc.zip(xc) {
        let (Ok(b), Ok(xv)) = (
            <&[u8; 2 * LANES]>::try_from(b),
            <&[f32; LANES]>::try_from(xv),
        ) else {
            continue;
        };
        for l in 0..LANES {
            acc[l] += bf16_bits_to_f32(u16::from_le_bytes([b[2 * l], b[2 * l + 1]])) * xv[l];
        }
    }
    let mut sum = hsum(acc);
    for (b, xv) in bt.chunks_exact(2).zip(xt) {
        sum += bf16_bits_to_f32(u16::from_le_bytes([b[0], b[1]])) * xv;
    }
    sum
}

/// Lanes of the running sums of the quantized kernels.
const QLANES: usize = 8;

fn dot_q8_0(bytes: &[u8], x: &[f32]) -> f32 {
    // Per block: widen the 32 codes to f32 (through i16, a shape the compiler vectorises well
    // even on baseline x86-64), sum q * x into 8 lanes, then add d * lane into the running sums.
    let mut acc = [0f32; QLANES];
    for (b, xv) in bytes.chunks_exact(Q8_0_BYTES).zip(x.chunks_exact(QK)) {
        let Some((dh, qs)) = b.split_first_chunk::<2>() else {
            continue; // unreachable: chunks_exact gives exact sizes
        };
        let (Ok(qs), Ok(xv)) = (<&[u8; QK]>::try_from(qs), <&[f32; QK]>::try_from(xv)) else {
            continue;
        };
        let q = unpack_q8_0(qs);
        let mut blk = [0f32; QLANES];
        for k in 0..QK / QLANES {
            for l in 0..QLANES {
                blk[l] += q[k * QLANES + l] * xv[k * QLANES + l];
            }
        }
        let d = scale_at(dh[0], dh[1]);
        for l in 0..QLANES {
            acc[l] += d * blk[l];
        }
    }
    acc.iter().sum()
}

fn dot_q4_0(bytes: &[u8], x: &[f32]) -> f32 {
    // Same shape as Q8_0: unpack the nibbles to f32 codes, then 8 lanes per block.
    let mut acc = [0f32; QLANES];
    for (b, xv) in bytes.chunks_exact(Q4_0_BYTES).zip(x.chunks_exact(QK)) {
        let Some((dh, qs)) = b.split_first_chunk::<2>() else {
            continue;
        };
        let (Ok(qs), Ok(xv)) = (<&[u8; QK / 2]>::try_from(qs), <&[f32; QK]>::try_from(xv)) else {
            continue;
        };
        let q = unpack_q4_0(qs);
        let mut blk = [0f32; QLANES];
        for k in 0..QK / QLANES {
            for l in 0..QLANES {
                blk[l] += q[k * QLANES + l] * xv[k * QLANES + l];
            }
        }
        let d = scale_at(dh[0], dh[1]);
        for l in 0..QLANES {
            acc[l] += d * blk[l];
        }
    }
    hsum(acc)
}

/// The 32 codes of a Q4_0 block minus 8, as f32, in element order.
#[inline(always)]
fn unpack_q4_0(qs: &[u8; QK / 2]) -> [f32; QK] {
    let mut q = [0f32; QK];
    for j in 0..QK / 2 {
        q[j] = ((qs[j] & 0x0f) as i16 - 8) as f32;
        q[j + QK / 2] = ((qs[j] >> 4) as i16 - 8) as f32;
    }
    q
}

/// The 32 codes of a Q8_0 block as f32.
#[inline(always)]
fn unpack_q8_0(qs: &[u8; QK]) -> [f32; QK] {
    let mut q = [0f32; QK];
    for j in 0..QK {
        q[j] = (qs[j] as i8 as i16) as f32;
    }
    q
}

// ---------------------------------------------------------------------------------------------
// axpy
// ---------------------------------------------------------------------------------------------

/// `y += a * row`, where `row` is one stored row of `dtype` with `y.len()` elements (see the
/// module preconditions). Used for transposed matrix-vector products. For quantized types the
/// factor applied to `q` is `a * d`, computed once per block.
#[inline]
pub fn axpy_row(dtype: DType, bytes: &[u8], a: f32, y: &mut [f32]) {
    debug_assert!(
        lengths_ok(dtype, y.len(), bytes.len()),
        "{}",
        len_error(dtype, y.len(), bytes.len())
    );
    match dtype {
        DType::F32 => {
            for (o, b) in y.iter_mut().zip(bytes.chunks_exact(4)) {
                *o += a * f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        DType::F16 => {
            let mut buf = [0f32; F16_CHUNK];
            let bc = bytes.chunks_exact(2 * F16_CHUNK);
            let bt = bc.remainder();
            let mut yc = y.chunks_exact_mut(F16_CHUNK);
            for (yv, b) in (&mut yc).zip(bc) {
                f16_chunk_to_f32(b, &mut buf);
                for (o, v) in yv.iter_mut().zip(&buf) {
                    *o += a * v;
                }
            }
            for (o, b) in yc.into_remainder().iter_mut().zip(bt.chunks_exact(2)) {
                *o += a * f16_bits_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        DType::BF16 => {
            for (o, b) in y.iter_mut().zip(bytes.chunks_exact(2)) {
                *o += a * bf16_bits_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        DType::Q8_0 => axpy_q8_0(bytes, a, y),
        DType::Q4_0 => axpy_q4_0(bytes, a, y),
        DType::Q4_K | DType::Q5_K | DType::Q6_K | DType::Q2_K | DType::Q3_K => {
            kquant::axpy_row(dtype, bytes, a, y)
        }
        DType::Q4_1 | DType::Q5_0 | DType::Q5_1 => legacy::axpy_row(dtype, bytes, a, y),
        DType::IQ4_NL | DType::IQ4_XS => iq4::axpy_row(dtype, bytes, a, y),

        DType::F8E4M3 => fp8::axpy(bytes, a, y),
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
        | DType::Q2_0 => iquant::axpy_row(dtype, bytes, a, y),
    }
}

fn axpy_q8_0(bytes: &[u8], a: f32, y: &mut [f32]) {
    for (yb, b) in y.chunks_exact_mut(QK).zip(bytes.chunks_exact(Q8_0_BYTES)) {
        let Some((dh, qs)) = b.split_first_chunk::<2>() else {
            continue; // unreachable: chunks_exact gives exact sizes
        };
        let (Ok(qs), Ok(yb)) = (<&[u8; QK]>::try_from(qs), <&mut [f32; QK]>::try_from(yb)) else {
            continue;
        };
        // black_box: keeps LLVM from vectorising across blocks (the outer loop) with gathers,
        // which measured 3-5x slower than vectorising within the block.
        let ad = std::hint::black_box(a * scale_at(dh[0], dh[1]));
        let q = unpack_q8_0(qs);
        for j in 0..QK {
            yb[j] += ad * q[j];
        }
    }
}

fn axpy_q4_0(bytes: &[u8], a: f32, y: &mut [f32]) {
    for (yb, b) in y.chunks_exact_mut(QK).zip(bytes.chunks_exact(Q4_0_BYTES)) {
        let Some((dh, qs)) = b.split_first_chunk::<2>() else {
            continue;
        };
        let (Ok(qs), Ok(yb)) = (
            <&[u8; QK / 2]>::try_from(qs),
            <&mut [f32; QK]>::try_from(yb),
        ) else {
            continue;
        };
        // black_box: keeps LLVM from vectorising across blocks (the outer loop) with gathers,
        // which measured 3-5x slower than vectorising within the block.
        let ad = std::hint::black_box(a * scale_at(dh[0], dh[1]));
        let q = unpack_q4_0(qs);
        for j in 0..QK {
            yb[j] += ad * q[j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random numbers (xorshift), so tests need no extra crate.
    struct Rng(u64);
    impl Rng {
        fn next_u32(&mut self) -> u32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 32) as u32
        }
        /// Uniform in [-1, 1).
        fn unit(&mut self) -> f32 {
            (self.next_u32() >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        }
        fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
            (0..n).map(|_| self.unit() * scale).collect()
        }
    }

    fn quantize(dtype: DType, x: &[f32]) -> Vec<u8> {
        let mut out = vec![0u8; dtype.bytes_for(x.len()).unwrap()];
        quantize_row(dtype, x, &mut out).unwrap();
        out
    }

    fn dequantize(dtype: DType, bytes: &[u8], n: usize) -> Vec<f32> {
        let mut out = vec![0f32; n];
        dequantize_row(dtype, bytes, &mut out);
        out
    }

    #[test]
    fn f16_conversion_is_exact_for_all_bit_patterns() {
        for h in 0..=u16::MAX {
            let want = f16::from_bits(h).to_f32();
            let got = f16_bits_to_f32(h);
            if want.is_nan() {
                assert!(got.is_nan(), "{h:#06x}");
                // Payload and sign are kept (quiet bit as stored).
                assert_eq!(got.to_bits() & 0x803f_ffff, want.to_bits() & 0x803f_ffff);
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{h:#06x}");
            }
        }
    }

    #[test]
    fn f16_bf16_round_to_nearest_even() {
        // 1 + 2^-11 lies exactly halfway between 1 and the next f16 (1 + 2^-10): ties to even.
        let x = [
            1.0 + 2f32.powi(-11),
            1.0 + 3.0 * 2f32.powi(-11),
            65520.0,
            -0.0,
        ];
        let b = quantize(DType::F16, &x);
        assert_eq!(b, [0x00, 0x3c, 0x02, 0x3c, 0x00, 0x7c, 0x00, 0x80]);
        assert_eq!(
            dequantize(DType::F16, &b, 4),
            [1.0, 1.0 + 2f32.powi(-9), f32::INFINITY, -0.0]
        );
        // bf16: 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (down); 1 + 3*2^-8 up.
        let x = [1.0 + 2f32.powi(-8), 1.0 + 3.0 * 2f32.powi(-8), -2.5];
        let b = quantize(DType::BF16, &x);
        assert_eq!(b, [0x80, 0x3f, 0x82, 0x3f, 0x20, 0xc0]);
        assert_eq!(
            dequantize(DType::BF16, &b, 3),
            [1.0, 1.0 + 2f32.powi(-6), -2.5]
        );
        // Whole chunks and the tail of a longer f16 row agree with half's scalar conversion.
        let x: Vec<f32> = (0..100).map(|i| (i as f32 - 50.0) * 0.173).collect();
        let want: Vec<f32> = x.iter().map(|v| f16::from_f32(*v).to_f32()).collect();
        assert_eq!(dequantize(DType::F16, &quantize(DType::F16, &x), 100), want);
        let want: Vec<f32> = x.iter().map(|v| bf16::from_f32(*v).to_f32()).collect();
        assert_eq!(
            dequantize(DType::BF16, &quantize(DType::BF16, &x), 100),
            want
        );
        // f32 is a little-endian copy.
        let b = quantize(DType::F32, &[1.0, -2.0]);
        assert_eq!(b, [0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0]);
    }

    #[test]
    fn q8_0_known_block() {
        // Hand-computed: amax = 127 so d = 1.0 (f16 0x3c00) and q = round(x).
        let mut x = [0f32; 32];
        x[0] = 127.0;
        x[1] = -127.0;
        x[2] = 2.5; // half away from zero -> 3
        x[3] = -2.5; // -> -3
        x[4] = 0.49;
        x[5] = 1.5;
        let b = quantize(DType::Q8_0, &x);
        let mut want = vec![0x00, 0x3c, 127, 0x81, 3, 0xfd, 0, 2];
        want.resize(34, 0);
        assert_eq!(b, want);
        let y = dequantize(DType::Q8_0, &b, 32);
        assert_eq!(&y[..6], &[127.0, -127.0, 3.0, -3.0, 0.0, 2.0]);
        // All-zero block: d = 0 and every q = 0.
        assert_eq!(quantize(DType::Q8_0, &[0.0; 32]), vec![0u8; 34]);
    }

    #[test]
    fn q4_0_known_block() {
        // Hand-computed: max = -8 (largest magnitude, negative), d = -8 / -8 = 1.0, id = 1.
        // q = min(15, trunc(x + 8.5)).
        let mut x = [0f32; 32];
        x[0] = -8.0; // 0.5 -> 0
        x[1] = 7.0; // 15.5 -> 15
        x[16] = 7.9; // 16.4 -> 16 -> min 15
        x[17] = -0.6; // 7.9 -> 7
        x[2] = 0.4; // 8.9 -> 8
        x[18] = 1.0; // 9.5 -> 9
        let b = quantize(DType::Q4_0, &x);
        let mut want = vec![0x00, 0x3c, 0xf0, 0x7f, 0x98];
        want.resize(18, 0x88); // zeros encode as 8 in both nibbles
        assert_eq!(b, want);
        let y = dequantize(DType::Q4_0, &b, 32);
        assert_eq!(y[0], -8.0);
        assert_eq!(y[1], 7.0);
        assert_eq!(y[16], 7.0);
        assert_eq!(y[17], -1.0);
        assert_eq!(y[2], 0.0);
        assert_eq!(y[18], 1.0);
        // Positive max: d = max / -8 is negative.
        let mut x = [0f32; 32];
        x[5] = 4.0;
        let b = quantize(DType::Q4_0, &x);
        assert_eq!(&b[..2], &f16::from_f32(-0.5).to_bits().to_le_bytes());
        assert_eq!(dequantize(DType::Q4_0, &b, 32)[5], 4.0);
        // Magnitude tie: the first element wins (3 before -3), so d = 3 / -8 = -0.375.
        let mut x = [0f32; 32];
        x[0] = 3.0;
        x[1] = -3.0;
        let b = quantize(DType::Q4_0, &x);
        assert_eq!(&b[..2], &f16::from_f32(-0.375).to_bits().to_le_bytes());
        assert_eq!(b[2], 0x80); // element 0: trunc(-8 + 8.5) = 0; element 16: 8
        assert_eq!(b[3], 0x8f); // element 1: trunc(8 + 8.5) = 16, clamped to 15
    }

    // Reference bytes from gguf-py 0.19.0 (numpy 2.4.6), another implementation of ggml's
    // reference quantizers. Produced with:
    //
    // python3 -c "
    // import numpy as np, gguf
    // f = np.float32
    // x = (np.arange(64, dtype=f) * f(0.37) - f(11.3)) * np.where(np.arange(64) % 3 == 0, -1, 1).astype(f)
    // x = x.astype(f)
    // for t in (gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.Q4_0,
    //           gguf.GGMLQuantizationType.BF16, gguf.GGMLQuantizationType.F16):
    //     print(t.name, gguf.quants.quantize(x, t).tobytes().hex())
    // "
    fn gguf_py_input() -> Vec<f32> {
        (0..64)
            .map(|i| {
                let v = i as f32 * 0.37 - 11.3;
                if i % 3 == 0 {
                    -v
                } else {
                    v
                }
            })
            .collect()
    }
    const GGUF_PY_Q8_0: &str = "b22d7f8589739296669ea25aabaf4db7bb41c4c834d0d428dce11be9ed0ff5fa02020d2e06f60e11eb191ddf2529d33135c73c40bc484cb05458a46064986b6f8d777b81";
    const GGUF_PY_Q4_0: &str =
        "a6bdc0cf5fb1bf6fa2ae6e929d7d938d8c84013e48d7d939d7ea2ae6ea1bf5fb1bf4fc0c";

    const GGUF_PY_BF16: &str = "35412fc129c123411dc117c111410bc105c1ff40f3c0e7c0dc40d0c0c4c0b840acc0a0c0944089c07ac062404ac033c01b4003c0d7bfa83f71bf12bf4d3e2e3e0a3f69bfa43fd33f01c01940314048c06040784088c094409f40abc0b740c340cfc0db40e640f2c0fe4005410bc1114117411dc1234128412ec134413a4140c1";
    const GGUF_PY_F16: &str = "a64977c948c91849e9c8bac88a485bc82cc8f8479ac73bc7dc467dc61fc6c04561c503c5a44445c4cdc30f4352c294c1d7401ac0b8be3d3d85bb8fb866327131523848bb1f3d9a3e0ac0c840854143c20043bd433dc49c44fb445ac5b845174676c6d446334792c7f147284857c88648b648e5c81449444973c9a349d24901ca";

    fn hex(b: &[u8]) -> String {
        b.iter().map(|v| format!("{v:02x}")).collect()
    }

    #[test]
    fn matches_gguf_py_reference_quantizer() {
        let x = gguf_py_input();
        assert_eq!(hex(&quantize(DType::Q8_0, &x)), GGUF_PY_Q8_0);
        assert_eq!(hex(&quantize(DType::Q4_0, &x)), GGUF_PY_Q4_0);
        assert_eq!(hex(&quantize(DType::BF16, &x)), GGUF_PY_BF16);
        assert_eq!(hex(&quantize(DType::F16, &x)), GGUF_PY_F16);
    }

    /// Error bounds of a quantize -> dequantize round trip, per block, in terms of the scale
    /// `d` the quantizer computes in f32 and the scale `d16` it stores as f16 (rounding a
    /// subnormal f16 scale can be far from `d` in relative terms, so the bound uses both):
    /// * Q8_0: `d = amax/127`, `|x - x'| <= d/2 + 127 |d - d16|`.
    /// * Q4_0: `d = max/-8`, `|x - x'| <= |d|/2 + 8 |d - d16|`, except the elements whose code
    ///   would be 16 (x within |d|/2 of -max) that are clamped to 15: there `|d| + 8 |d - d16|`.
    /// * F16 / BF16: relative error <= 2^-11 / 2^-8 for normal numbers; f16 subnormals (below
    ///   2^-14) add an absolute error of up to 2^-25. F32 is exact.
    #[test]
    fn round_trip_error_bounds() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for scale in [1e-5f32, 1e-3, 1.0, 300.0] {
            let x = rng.vec(32 * 64, scale);
            // The K-quants' bounds are in kquant.rs, the other types' in `legacy_round_trip`.
            for dtype in [
                DType::F32,
                DType::F16,
                DType::BF16,
                DType::Q8_0,
                DType::Q4_0,
            ] {
                let bytes = quantize(dtype, &x);
                let y = dequantize(dtype, &bytes, x.len());
                let bb = dtype.block_bytes() * (32 / dtype.block_size());
                for ((xb, yb), b) in x.chunks(32).zip(y.chunks(32)).zip(bytes.chunks(bb)) {
                    let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let max = *xb.iter().find(|v| v.abs() == amax).unwrap();
                    let d16 = f16::from_le_bytes([b[0], b[1]]).to_f32();
                    for (a, b) in xb.iter().zip(yb) {
                        let err = (a - b).abs();
                        let bound = match dtype {
                            DType::F32 => 0.0,
                            DType::F16 => a.abs() * 2f32.powi(-11) + 2f32.powi(-25),
                            DType::BF16 => a.abs() * 2f32.powi(-8),
                            DType::Q8_0 => {
                                let d = amax / 127.0;
                                d / 2.0 + 127.0 * (d - d16).abs()
                            }
                            DType::Q4_0 => {
                                let d = max / -8.0;
                                let clamped = (a + max).abs() <= d.abs() / 2.0 * 1.0001;
                                let q = if clamped { d.abs() } else { d.abs() / 2.0 };
                                q + 8.0 * (d - d16).abs()
                            }
                            DType::Q4_K | DType::Q5_K | DType::Q6_K | DType::Q2_K | DType::Q3_K => {
                                unreachable!()
                            }

                            other => panic!("no error bound stated for {other:?}"),
                        };
                        assert!(
                            err <= bound * 1.0001,
                            "{dtype:?} scale {scale}: {a} -> {b} (err {err} > {bound})"
                        );
                    }
                }
            }
        }
    }

    /// Round-trip bounds of the legacy types and the IQ4 codebooks, per block:
    /// * Q4_1 / Q5_1: `d = (max - min) / 15 (31)`; `|x - x'| <= d/2 + top·|d - d16| + |min - m16|`
    ///   (top = 15 / 31: the largest code times the scale's rounding).
    /// * Q5_0: as Q4_0 with 16 levels each side: `d = max/-16`, `|d|/2 + 16 |d - d16|`, and
    ///   `|d| + ...` for the element at -max whose code 32 is clamped to 31.
    /// * IQ4_NL / IQ4_XS: no closed form (non-uniform levels); the RMS error per block must be
    ///   under 1/8 of the block's RMS (4-bit codes give about 1/10 on uniform noise).
    #[test]
    fn legacy_round_trip() {
        let mut rng = Rng(0x5151);
        for scale in [1e-3f32, 1.0, 300.0] {
            let x = rng.vec(256 * 8, scale);
            for dtype in [DType::Q4_1, DType::Q5_0, DType::Q5_1] {
                let bytes = quantize(dtype, &x);
                let y = dequantize(dtype, &bytes, x.len());
                let bb = dtype.block_bytes();
                for ((xb, yb), b) in x.chunks(32).zip(y.chunks(32)).zip(bytes.chunks(bb)) {
                    let min = xb.iter().fold(f32::MAX, |m, v| m.min(*v));
                    let max = xb.iter().fold(f32::MIN, |m, v| m.max(*v));
                    let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let smax = *xb.iter().find(|v| v.abs() == amax).unwrap();
                    let d16 = f16::from_le_bytes([b[0], b[1]]).to_f32();
                    let m16 = f16::from_le_bytes([b[2], b[3]]).to_f32();
                    for (a, v) in xb.iter().zip(yb) {
                        let err = (a - v).abs();
                        let bound = match dtype {
                            DType::Q5_0 => {
                                let d = smax / -16.0;
                                let clamped = (a + smax).abs() <= d.abs() / 2.0 * 1.0001;
                                let q = if clamped { d.abs() } else { d.abs() / 2.0 };
                                q + 16.0 * (d - d16).abs()
                            }
                            _ => {
                                let top = if dtype == DType::Q4_1 { 15.0 } else { 31.0 };
                                let d = (max - min) / top;
                                d / 2.0 + top * (d - d16).abs() + (min - m16).abs()
                            }
                        };
                        assert!(
                            err <= bound * 1.0001 + 1e-30,
                            "{dtype:?} scale {scale}: {a} -> {v} (err {err} > {bound})"
                        );
                    }
                }
            }
            for dtype in [DType::IQ4_NL, DType::IQ4_XS] {
                let y = dequantize(dtype, &quantize(dtype, &x), x.len());
                for (xb, yb) in x.chunks(32).zip(y.chunks(32)) {
                    let e2: f32 = xb.iter().zip(yb).map(|(a, b)| (a - b) * (a - b)).sum();
                    let x2: f32 = xb.iter().map(|a| a * a).sum();
                    assert!(
                        e2 <= x2 / 64.0,
                        "{dtype:?} scale {scale}: rms error {} vs rms {}",
                        (e2 / 32.0).sqrt(),
                        (x2 / 32.0).sqrt()
                    );
                }
            }
        }
    }

    #[test]
    fn quantize_rejects_bad_lengths() {
        let x = [0f32; 33];
        let mut out = [0u8; 34];
        let e = quantize_row(DType::Q8_0, &x, &mut out).unwrap_err();
        assert!(
            e.to_string()
                .contains("not a whole number of 32-element blocks"),
            "{e}"
        );
        let e = quantize_row(DType::Q4_0, &x[..32], &mut out).unwrap_err();
        assert!(
            e.to_string().contains("needs 18 bytes, buffer has 34"),
            "{e}"
        );
        let e = quantize_row(DType::F32, &x[..2], &mut out[..7]).unwrap_err();
        assert!(matches!(e, Error::InvalidArg(_)));
    }

    fn check_dot_and_axpy(dtype: DType, n: usize, rng: &mut Rng) {
        let w = rng.vec(n, 2.0);
        let x = rng.vec(n, 1.5);
        let bytes = quantize(dtype, &w);
        let deq = dequantize(dtype, &bytes, n);
        let want: f64 = deq.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
        let mag: f64 = deq
            .iter()
            .zip(&x)
            .map(|(a, b)| (*a as f64 * *b as f64).abs())
            .sum();
        let got = dot_row(dtype, &bytes, &x) as f64;
        assert!(
            (got - want).abs() <= 1e-5 * mag.max(1e-30),
            "{dtype:?} n={n}: dot {got} vs {want} (scale {mag})"
        );

        let a = -0.75f32;
        let y0 = rng.vec(n, 1.0);
        let mut y = y0.clone();
        axpy_row(dtype, &bytes, a, &mut y);
        for i in 0..n {
            let want = y0[i] as f64 + a as f64 * deq[i] as f64;
            let tol = 1e-6 * (y0[i].abs() as f64 + (a * deq[i]).abs() as f64) + 1e-30;
            assert!(
                (y[i] as f64 - want).abs() <= tol,
                "{dtype:?} n={n} i={i}: axpy {} vs {want}",
                y[i]
            );
        }
    }

    #[test]
    fn dot_and_axpy_match_dequantized_row() {
        let mut rng = Rng(12345);
        for dtype in DType::ALL {
            for blocks in [1usize, 2, 3, 7, 64] {
                check_dot_and_axpy(dtype, blocks * dtype.block_size().max(32), &mut rng);
            }
        }
        // Unquantized types at lengths that leave a tail after the 16-lane chunks.
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            for n in [1usize, 5, 15, 17, 31, 100] {
                check_dot_and_axpy(dtype, n, &mut rng);
            }
        }
    }

    #[test]
    fn kernels_read_unaligned_bytes() {
        let mut rng = Rng(777);
        let n = 768; // whole blocks of every type
        let x = rng.vec(n, 1.0);
        for dtype in DType::ALL {
            let bytes = quantize(dtype, &x);
            let mut shifted = vec![0u8; bytes.len() + 1];
            shifted[1..].copy_from_slice(&bytes);
            let row = &shifted[1..];
            assert_eq!(dequantize(dtype, row, n), dequantize(dtype, &bytes, n));
            assert_eq!(dot_row(dtype, row, &x), dot_row(dtype, &bytes, &x));
        }
    }

    #[test]
    fn empty_rows() {
        for dtype in DType::ALL {
            let mut out = [0u8; 0];
            quantize_row(dtype, &[], &mut out).unwrap();
            assert_eq!(dot_row(dtype, &[], &[]), 0.0);
            let mut y: [f32; 0] = [];
            axpy_row(dtype, &[], 1.0, &mut y);
            dequantize_row(dtype, &[], &mut y);
        }
    }
}
