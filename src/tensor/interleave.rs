//! Weights interleaved by eight rows ("x8"): the layouts the AVX2 decode and prefill kernels
//! read fastest (`mk_vec_dot_x8_*_q8a_avx2`, `mk_gemm_x8_*_q8a_avx2`), for Q4_0, Q5_0, Q4_K,
//! Q5_K, Q6_K, Q4_1, Q5_1, Q2_K, Q3_K, IQ4_NL and IQ4_XS.
//!
//! A group of 8 rows takes exactly the bytes of its 8 rows, block by block (Q4_0 and IQ4_NL: 8 ×
//! 18 bytes per 32 elements; Q5_0: 8 × 22; Q4_1: 8 × 20; Q5_1: 8 × 24; Q4_K: 8 × 144 per 256;
//! Q5_K: 8 × 176; Q6_K: 8 × 210; IQ4_XS: 8 × 136; Q3_K: 8 × 110; Q2_K: 8 × 84), so byte offsets of
//! whole groups, and of sub-views
//! that start and end on a group, are the same as in the file's layout. Within a block, the
//! rows' nibble bytes are dealt out 4 at a time, so that one 32-byte vector holds bytes
//! 4v..4v+3 of every row (row r at 4r..4r+3) and the kernel computes 8 rows per pass with one
//! row per 32-bit lane and no horizontal sums:
//! - Q4_0, per block (144 bytes): the 8 rows' f16 scales, then four vectors (v = 0..3 of the
//!   rows' 16 nibble bytes); IQ4_NL (the same block with codebook nibbles) the same;
//! - Q4_K, per super-block (1152 bytes): the rows' d (16 bytes), their dmin (16), the 6-bit
//!   scales and mins as `A[8i + r] = sc | (m >> 4) << 6` (64) and `B[4i + r/2]` nibble `r % 2` =
//!   `m & 15` (32) for sub-block i, then for each 32-byte chunk c of nibbles (sub-blocks 2c low,
//!   2c+1 high) eight vectors (v = 0..7);
//! - Q5_K, per super-block (1408 bytes): Q4_K's 1152 bytes as above (the rows' d, dmin, A, B
//!   and nibble vectors), then the rows' 32 qh bytes as eight vectors (v = 0..7: bytes
//!   4v..4v+3 of each row's qh). Bit i of qh byte k is the fifth bit of element k of sub-block
//!   i, and code vector v of a sub-block holds elements 4v..4v+3 of each row, so qh vector v
//!   has its fifth bits at bit i of the same lane bytes: one 16-bit shift (bit i to bit 4), a
//!   mask and an or per code vector;
//! - Q5_0, per block (176 bytes): the 8 rows' f16 scales, their fifth bits (32 bytes: row r's
//!   at 4r..4r+3, bit c of byte k = the fifth bit of element 4c + k, so that one 16-bit shift
//!   and a mask put code vector c's bits in place), then the four nibble vectors of Q4_0;
//! - Q6_K, per super-block (1680 bytes): the rows' d (16 bytes), the int8 sub-block scales (128:
//!   for activation block j, row r's scales 2j and 2j+1 at 16j + 2r), then per 128-element half
//!   h the rows' ql bytes 64h..64h+31, 64h+32..64h+63 and qh bytes 32h..32h+31 as three chunks
//!   of eight vectors (v = 0..7);
//! - Q4_1, per block (160 bytes): the rows' f16 d (16 bytes), their f16 m (16), then the four
//!   nibble vectors of Q4_0;
//! - Q5_1, per block (192 bytes): the rows' d (16 bytes), their m (16), then the fifth bits (32)
//!   and the four nibble vectors exactly as Q5_0's bytes 16..176.
//! - IQ4_XS, per super-block (1088 bytes): the rows' d (16 bytes), the low 4 bits of the 6-bit
//!   sub-block scales as `L[4i + r/2]` nibble `r % 2` (32), their high 2 bits as `H[2i + r/4]`
//!   bits `2(r % 4)`.. (16) for sub-block i (one 32-bit and one 16-bit load, a variable shift
//!   and a mask each give sub-block i's 8 scales one per lane), then per sub-block i (128 bytes
//!   at 64 + 128i) its nibbles as the four vectors of Q4_0 (v = bytes 4v..4v+3 of the rows' 16).
//! - Q3_K, per super-block (880 bytes): the rows' d (16 bytes), the low 4 bits of the 6-bit
//!   scales (`sc + 32`) as `L[16p + 2r + c]` = row r's scale `4p + c` (low nibble) and
//!   `4p + 2 + c` (high nibble) for block pair p (64), their high 2 bits as `H[16h + 2r + c]`
//!   bits `2q`.. = those of scale `2(4h + q) + c` (32), so that for activation block j = 4h + q
//!   one widening load of each (shared by the blocks of the pair / half), a shift or mask
//!   each and an or give one int16 pair (scales 2j, 2j+1) per row; then the rows' qs bytes
//!   32h..32h+31 for each half h as eight vectors (v = 0..7, 256 bytes at 112 + 256h) and
//!   their hmask bytes as eight vectors (at 624), each byte's bits reordered (the file's bit j
//!   at bit `[2, 3, 6, 7, 0, 1, 4, 5][j]`). Block 4h + q takes bits 2q, 2q+1 of qs vector v
//!   and its hmask bit as bit 2: one mask of `qs | hmask` (after a shift) gives blocks 4h and
//!   4h + 2 (or 4h + 1 and 4h + 3) at bits 0..2 and 4..6; unsigned codes 0..7, whose -4
//!   offset the kernels take off as 4·sc·Σ16x per 16-element half.
//!
//! - Q2_K, per super-block (672 bytes): the rows' d (16 bytes), their dmin (16), the scale/min
//!   bytes for activation block j (sub-blocks 2j, 2j+1) at 32 + 16j with row r's two at 2r, 2r+1
//!   (128: one load and a zero extension give one int16 pair per row), then per 128-element half
//!   h the rows' code bytes 32h..32h+31 as eight vectors (v = 0..7: bytes 4v..4v+3 of each row,
//!   256 bytes at 160 + 256h). Block j = 4h + l takes bits 2l, 2l+1, so code vector v of the
//!   block holds its elements 4v..4v+3 of each row.
//!
//! The model loader writes them (see [`crate::model::ModelParams::keep_file_layout`]).

use super::DType;

/// Rows per group.
pub const GROUP: usize = 8;

/// Whether `dtype` has an interleaved layout.
pub fn has_layout(dtype: DType) -> bool {
    matches!(
        dtype,
        DType::Q4_0
            | DType::Q5_0
            | DType::Q4_K
            | DType::Q5_K
            | DType::Q6_K
            | DType::Q4_1
            | DType::Q5_1
            | DType::IQ4_NL
            | DType::IQ4_XS
            | DType::Q2_K
            | DType::Q3_K
    )
}

/// `src` (whole rows of `cols` elements, a multiple of [`GROUP`] rows) interleaved; None for a
/// type without an interleaved layout or a shape that is not whole blocks and groups.
pub fn interleave(dtype: DType, cols: usize, src: &[u8]) -> Option<Vec<u8>> {
    let rb = dtype.bytes_for(cols)?;
    if !has_layout(dtype) || rb == 0 || src.len() % (GROUP * rb) != 0 {
        return None;
    }
    let mut out = vec![0u8; src.len()];
    for (g, dst) in src
        .chunks_exact(GROUP * rb)
        .zip(out.chunks_exact_mut(GROUP * rb))
    {
        for r in 0..GROUP {
            put_row(dtype, &g[r * rb..(r + 1) * rb], r, dst);
        }
    }
    Some(out)
}

/// `src` (whole interleaved groups) back in the file's layout.
pub fn deinterleave(dtype: DType, cols: usize, src: &[u8]) -> Vec<u8> {
    let rb = dtype.bytes_for(cols).unwrap_or(0);
    let mut out = vec![0u8; src.len()];
    if rb == 0 {
        return out;
    }
    for (g, dst) in src
        .chunks_exact(GROUP * rb)
        .zip(out.chunks_exact_mut(GROUP * rb))
    {
        for (r, row) in dst.chunks_exact_mut(rb).enumerate() {
            deinterleave_row(dtype, g, r, row);
        }
    }
    out
}

/// Row `r` (0..8) of one interleaved group in the file's layout (`out`: one row's bytes).
pub fn deinterleave_row(dtype: DType, group: &[u8], r: usize, out: &mut [u8]) {
    match dtype {
        DType::Q4_0 | DType::IQ4_NL => {
            for (blk, b) in group.chunks_exact(144).zip(out.chunks_exact_mut(18)) {
                b[..2].copy_from_slice(&blk[2 * r..2 * r + 2]);
                for v in 0..4 {
                    let at = 16 + 32 * v + 4 * r;
                    b[2 + 4 * v..6 + 4 * v].copy_from_slice(&blk[at..at + 4]);
                }
            }
        }
        DType::Q4_K => {
            for (blk, b) in group.chunks_exact(1152).zip(out.chunks_exact_mut(144)) {
                b[..2].copy_from_slice(&blk[2 * r..2 * r + 2]);
                b[2..4].copy_from_slice(&blk[16 + 2 * r..18 + 2 * r]);
                let mut sc = [0u8; 8];
                let mut m = [0u8; 8];
                for i in 0..8 {
                    let a = blk[32 + 8 * i + r];
                    sc[i] = a & 63;
                    m[i] = (a >> 6) << 4 | (blk[96 + 4 * i + r / 2] >> (4 * (r % 2))) & 15;
                }
                pack_k_scales(&sc, &m, &mut b[4..16]);
                for c in 0..4 {
                    for v in 0..8 {
                        let at = 128 + 256 * c + 32 * v + 4 * r;
                        b[16 + 32 * c + 4 * v..20 + 32 * c + 4 * v]
                            .copy_from_slice(&blk[at..at + 4]);
                    }
                }
            }
        }
        DType::Q5_K => {
            for (blk, b) in group.chunks_exact(1408).zip(out.chunks_exact_mut(176)) {
                let mut k4 = [0u8; 144];
                deinterleave_row(DType::Q4_K, &blk[..1152], r, &mut k4);
                b[..16].copy_from_slice(&k4[..16]);
                b[48..].copy_from_slice(&k4[16..]);
                for v in 0..8 {
                    let at = 1152 + 32 * v + 4 * r;
                    b[16 + 4 * v..20 + 4 * v].copy_from_slice(&blk[at..at + 4]);
                }
            }
        }
        DType::Q5_0 => {
            for (blk, b) in group.chunks_exact(176).zip(out.chunks_exact_mut(22)) {
                b[..2].copy_from_slice(&blk[2 * r..2 * r + 2]);
                let mut qh = 0u32;
                for k in 0..4 {
                    let t = blk[16 + 4 * r + k];
                    for c in 0..8 {
                        qh |= u32::from(t >> c & 1) << (4 * c + k);
                    }
                }
                b[2..6].copy_from_slice(&qh.to_le_bytes());
                for v in 0..4 {
                    let at = 48 + 32 * v + 4 * r;
                    b[6 + 4 * v..10 + 4 * v].copy_from_slice(&blk[at..at + 4]);
                }
            }
        }
        DType::Q6_K => {
            for (blk, b) in group.chunks_exact(1680).zip(out.chunks_exact_mut(210)) {
                b[208..210].copy_from_slice(&blk[2 * r..2 * r + 2]);
                for j in 0..8 {
                    let at = 16 + 16 * j + 2 * r;
                    b[192 + 2 * j..194 + 2 * j].copy_from_slice(&blk[at..at + 2]);
                }
                for (x8, at) in q6_k_pieces(r) {
                    b[at..at + 4].copy_from_slice(&blk[x8..x8 + 4]);
                }
            }
        }
        DType::Q4_1 | DType::Q5_1 => deinterleave_row_q4_1_q5_1(dtype, group, r, out),
        DType::Q2_K => {
            let pieces = q2_k_pieces(r);
            for (blk, b) in group.chunks_exact(672).zip(out.chunks_exact_mut(84)) {
                for &(x8, at, len) in &pieces {
                    b[at..at + len].copy_from_slice(&blk[x8..x8 + len]);
                }
            }
        }
        DType::IQ4_XS => {
            for (blk, b) in group.chunks_exact(1088).zip(out.chunks_exact_mut(136)) {
                b[..2].copy_from_slice(&blk[2 * r..2 * r + 2]);
                let (mut h, mut l) = (0u16, [0u8; 4]);
                for i in 0..8 {
                    let lo = blk[16 + 4 * i + r / 2] >> (4 * (r % 2)) & 15;
                    let hi = blk[48 + 2 * i + r / 4] >> (2 * (r % 4)) & 3;
                    l[i / 2] |= lo << (4 * (i % 2));
                    h |= u16::from(hi) << (2 * i);
                }
                b[2..4].copy_from_slice(&h.to_le_bytes());
                b[4..8].copy_from_slice(&l);
                for (x8, at) in iq4_xs_pieces(r) {
                    b[at..at + 4].copy_from_slice(&blk[x8..x8 + 4]);
                }
            }
        }
        DType::Q3_K => {
            for (blk, b) in group.chunks_exact(880).zip(out.chunks_exact_mut(110)) {
                b[108..110].copy_from_slice(&blk[2 * r..2 * r + 2]);
                let mut sc = [0u8; 16];
                for (i, x) in sc.iter_mut().enumerate() {
                    let (l, h) = q3_k_scale_at(i, r);
                    *x =
                        (blk[l] >> (4 * (i / 2 % 2))) & 15 | (blk[h] >> (2 * (i / 2 % 4)) & 3) << 4;
                }
                pack_q3_scales(&sc, &mut b[96..108]);
                for (x8, at) in q3_k_pieces(r) {
                    b[at..at + 4].copy_from_slice(&blk[x8..x8 + 4]);
                }
                for m in &mut b[..32] {
                    *m = q3_k_hmask_bits(*m, true);
                }
            }
        }
        _ => unreachable!("no interleaved layout for {}", dtype.name()),
    }
}

/// Row `r` of one Q4_1 / Q5_1 group in the file's layout: d, m, (Q5_1) the fifth bits as
/// Q5_0 x8 lays them out, the nibble vectors as Q4_0 x8.
fn deinterleave_row_q4_1_q5_1(dtype: DType, group: &[u8], r: usize, out: &mut [u8]) {
    let five = dtype == DType::Q5_1;
    let (bb, gb, nib) = if five { (24, 192, 64) } else { (20, 160, 32) };
    for (blk, b) in group.chunks_exact(gb).zip(out.chunks_exact_mut(bb)) {
        b[..2].copy_from_slice(&blk[2 * r..2 * r + 2]);
        b[2..4].copy_from_slice(&blk[16 + 2 * r..18 + 2 * r]);
        if five {
            let mut qh = 0u32;
            for k in 0..4 {
                let t = blk[32 + 4 * r + k];
                for c in 0..8 {
                    qh |= u32::from(t >> c & 1) << (4 * c + k);
                }
            }
            b[4..8].copy_from_slice(&qh.to_le_bytes());
        }
        let qs = bb - 16;
        for v in 0..4 {
            let at = nib + 32 * v + 4 * r;
            b[qs + 4 * v..qs + 4 + 4 * v].copy_from_slice(&blk[at..at + 4]);
        }
    }
}

/// Q6_K: row r's 4-byte pieces of ql and qh as (offset in the interleaved super-block, offset
/// in the row's own 210 bytes): per half h the chunks ql 64h.., ql 64h+32.. and qh 32h...
fn q6_k_pieces(r: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..2).flat_map(move |h| {
        (0..8).flat_map(move |v| {
            let x8 = 144 + 768 * h + 32 * v + 4 * r;
            [
                (x8, 64 * h + 4 * v),
                (x8 + 256, 64 * h + 32 + 4 * v),
                (x8 + 512, 128 + 32 * h + 4 * v),
            ]
        })
    })
}

/// Q2_K: row r's pieces as (offset in the interleaved super-block, offset in the row's own 84
/// bytes, length): d, dmin, per activation block j the scale bytes 2j, 2j+1, then per half h
/// and vector v the code bytes 16 + 32h + 4v..
fn q2_k_pieces(r: usize) -> [(usize, usize, usize); 26] {
    let mut p = [(0, 0, 0); 26];
    p[0] = (2 * r, 80, 2);
    p[1] = (16 + 2 * r, 82, 2);
    for j in 0..8 {
        p[2 + j] = (32 + 16 * j + 2 * r, 2 * j, 2);
    }
    for i in 0..16 {
        let (h, v) = (i / 8, i % 8);
        p[10 + i] = (160 + 256 * h + 32 * v + 4 * r, 16 + 32 * h + 4 * v, 4);
    }
    p
}

/// IQ4_XS: row r's 4-byte pieces of nibbles as (offset in the interleaved super-block, offset
/// in the row's own 136 bytes): per sub-block i the four vectors of Q4_0 x8.
fn iq4_xs_pieces(r: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..8)
        .flat_map(move |i| (0..4).map(move |v| (64 + 128 * i + 32 * v + 4 * r, 8 + 16 * i + 4 * v)))
}

/// Q3_K: row r's 4-byte pieces of qs and hmask as (offset in the interleaved super-block,
/// offset in the row's own 110 bytes): the two qs chunks, then the hmask.
fn q3_k_pieces(r: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..3).flat_map(move |c| {
        (0..8).map(move |v| {
            let row = if c < 2 { 32 + 32 * c + 4 * v } else { 4 * v };
            (112 + 256 * c + 32 * v + 4 * r, row)
        })
    })
}

/// Q3_K x8: the bytes of scale `i` of row `r` (low nibble, high 2 bits) in a super-block; the
/// nibble is `(i / 2) % 2`, the bit pair `(i / 2) % 4`.
fn q3_k_scale_at(i: usize, r: usize) -> (usize, usize) {
    let (j, c) = (i / 2, i % 2);
    (16 + 16 * (j / 2) + 2 * r + c, 80 + 16 * (j / 4) + 2 * r + c)
}

/// Q3_K x8's hmask byte order: the file's bit j at bit `Q3_K_HMASK_AT[j]` (`back`: the inverse).
fn q3_k_hmask_bits(m: u8, back: bool) -> u8 {
    const Q3_K_HMASK_AT: [u32; 8] = [2, 3, 6, 7, 0, 1, 4, 5];
    (0..8).fold(0u8, |o, j| {
        let (from, to) = if back {
            (Q3_K_HMASK_AT[j], j as u32)
        } else {
            (j as u32, Q3_K_HMASK_AT[j])
        };
        o | (m >> from & 1) << to
    })
}

/// The sixteen 6-bit Q3_K scales (`sc + 32`, 0..63) from their 12 packed bytes.
fn unpack_q3_scales(s: &[u8]) -> [u8; 16] {
    let mut u = [0u8; 16];
    for (i, x) in u.iter_mut().enumerate() {
        *x = (s[i % 8] >> (4 * (i / 8))) & 15 | ((s[8 + i % 4] >> (2 * (i / 4))) & 3) << 4;
    }
    u
}

/// The inverse of [`unpack_q3_scales`].
fn pack_q3_scales(u: &[u8; 16], s: &mut [u8]) {
    s[..12].fill(0);
    for (i, &x) in u.iter().enumerate() {
        s[i % 8] |= (x & 15) << (4 * (i / 8));
        s[8 + i % 4] |= (x >> 4 & 3) << (2 * (i / 4));
    }
}

/// Writes row `r`'s bytes (`row`, the file's layout) into its place in group `dst`.
fn put_row(dtype: DType, row: &[u8], r: usize, dst: &mut [u8]) {
    match dtype {
        DType::Q4_0 | DType::IQ4_NL => {
            for (b, blk) in row.chunks_exact(18).zip(dst.chunks_exact_mut(144)) {
                blk[2 * r..2 * r + 2].copy_from_slice(&b[..2]);
                for v in 0..4 {
                    let at = 16 + 32 * v + 4 * r;
                    blk[at..at + 4].copy_from_slice(&b[2 + 4 * v..6 + 4 * v]);
                }
            }
        }
        DType::Q4_K => {
            for (b, blk) in row.chunks_exact(144).zip(dst.chunks_exact_mut(1152)) {
                blk[2 * r..2 * r + 2].copy_from_slice(&b[..2]);
                blk[16 + 2 * r..18 + 2 * r].copy_from_slice(&b[2..4]);
                let (sc, m) = unpack_k_scales(&b[4..16]);
                for i in 0..8 {
                    blk[32 + 8 * i + r] = sc[i] | (m[i] >> 4) << 6;
                    let nib = &mut blk[96 + 4 * i + r / 2];
                    *nib = (*nib & !(15 << (4 * (r % 2)))) | (m[i] & 15) << (4 * (r % 2));
                }
                for c in 0..4 {
                    for v in 0..8 {
                        let at = 128 + 256 * c + 32 * v + 4 * r;
                        blk[at..at + 4]
                            .copy_from_slice(&b[16 + 32 * c + 4 * v..20 + 32 * c + 4 * v]);
                    }
                }
            }
        }
        DType::Q5_K => {
            // Q4_K's layout for the row without its qh, then the qh vectors.
            for (b, blk) in row.chunks_exact(176).zip(dst.chunks_exact_mut(1408)) {
                let mut k4 = [0u8; 144];
                k4[..16].copy_from_slice(&b[..16]);
                k4[16..].copy_from_slice(&b[48..]);
                put_row(DType::Q4_K, &k4, r, &mut blk[..1152]);
                for v in 0..8 {
                    let at = 1152 + 32 * v + 4 * r;
                    blk[at..at + 4].copy_from_slice(&b[16 + 4 * v..20 + 4 * v]);
                }
            }
        }
        DType::Q5_0 => {
            for (b, blk) in row.chunks_exact(22).zip(dst.chunks_exact_mut(176)) {
                blk[2 * r..2 * r + 2].copy_from_slice(&b[..2]);
                let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
                for k in 0..4 {
                    blk[16 + 4 * r + k] =
                        (0..8).fold(0u8, |t, c| t | ((qh >> (4 * c + k) & 1) as u8) << c);
                }
                for v in 0..4 {
                    let at = 48 + 32 * v + 4 * r;
                    blk[at..at + 4].copy_from_slice(&b[6 + 4 * v..10 + 4 * v]);
                }
            }
        }
        DType::Q6_K => {
            for (b, blk) in row.chunks_exact(210).zip(dst.chunks_exact_mut(1680)) {
                blk[2 * r..2 * r + 2].copy_from_slice(&b[208..210]);
                for j in 0..8 {
                    let at = 16 + 16 * j + 2 * r;
                    blk[at..at + 2].copy_from_slice(&b[192 + 2 * j..194 + 2 * j]);
                }
                for (x8, at) in q6_k_pieces(r) {
                    blk[x8..x8 + 4].copy_from_slice(&b[at..at + 4]);
                }
            }
        }
        DType::Q4_1 | DType::Q5_1 => {
            let five = dtype == DType::Q5_1;
            let (bb, gb, nib) = if five { (24, 192, 64) } else { (20, 160, 32) };
            for (b, blk) in row.chunks_exact(bb).zip(dst.chunks_exact_mut(gb)) {
                blk[2 * r..2 * r + 2].copy_from_slice(&b[..2]);
                blk[16 + 2 * r..18 + 2 * r].copy_from_slice(&b[2..4]);
                if five {
                    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
                    for k in 0..4 {
                        blk[32 + 4 * r + k] =
                            (0..8).fold(0u8, |t, c| t | ((qh >> (4 * c + k) & 1) as u8) << c);
                    }
                }
                let qs = bb - 16;
                for v in 0..4 {
                    let at = nib + 32 * v + 4 * r;
                    blk[at..at + 4].copy_from_slice(&b[qs + 4 * v..qs + 4 + 4 * v]);
                }
            }
        }
        DType::Q2_K => {
            let pieces = q2_k_pieces(r);
            for (b, blk) in row.chunks_exact(84).zip(dst.chunks_exact_mut(672)) {
                for &(x8, at, len) in &pieces {
                    blk[x8..x8 + len].copy_from_slice(&b[at..at + len]);
                }
            }
        }
        DType::IQ4_XS => {
            for (b, blk) in row.chunks_exact(136).zip(dst.chunks_exact_mut(1088)) {
                blk[2 * r..2 * r + 2].copy_from_slice(&b[..2]);
                let h = u16::from_le_bytes([b[2], b[3]]);
                for i in 0..8 {
                    let lo = b[4 + i / 2] >> (4 * (i % 2)) & 15;
                    let hi = (h >> (2 * i) & 3) as u8;
                    let l = &mut blk[16 + 4 * i + r / 2];
                    *l = (*l & !(15 << (4 * (r % 2)))) | lo << (4 * (r % 2));
                    let hb = &mut blk[48 + 2 * i + r / 4];
                    *hb = (*hb & !(3 << (2 * (r % 4)))) | hi << (2 * (r % 4));
                }
                for (x8, at) in iq4_xs_pieces(r) {
                    blk[x8..x8 + 4].copy_from_slice(&b[at..at + 4]);
                }
            }
        }
        DType::Q3_K => {
            for (b, blk) in row.chunks_exact(110).zip(dst.chunks_exact_mut(880)) {
                blk[2 * r..2 * r + 2].copy_from_slice(&b[108..110]);
                let u = unpack_q3_scales(&b[96..108]);
                for (i, &x) in u.iter().enumerate() {
                    let (l, h) = q3_k_scale_at(i, r);
                    let (ls, hs) = (4 * (i / 2 % 2), 2 * (i / 2 % 4));
                    blk[l] = (blk[l] & !(15 << ls)) | (x & 15) << ls;
                    blk[h] = (blk[h] & !(3 << hs)) | (x >> 4) << hs;
                }
                for (x8, at) in q3_k_pieces(r) {
                    blk[x8..x8 + 4].copy_from_slice(&b[at..at + 4]);
                }
                for v in 0..8 {
                    for m in &mut blk[624 + 32 * v + 4 * r..628 + 32 * v + 4 * r] {
                        *m = q3_k_hmask_bits(*m, false);
                    }
                }
            }
        }
        _ => unreachable!("no interleaved layout for {}", dtype.name()),
    }
}

/// The eight 6-bit scales and mins of a Q4_K/Q5_K super-block from its 12 packed bytes.
fn unpack_k_scales(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut m) = ([0u8; 8], [0u8; 8]);
    for j in 0..4 {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 0x0f) | ((s[j] >> 6) << 4);
        m[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
    (sc, m)
}

/// The inverse of [`unpack_k_scales`].
fn pack_k_scales(sc: &[u8; 8], m: &[u8; 8], s: &mut [u8]) {
    for j in 0..4 {
        s[j] = (sc[j] & 63) | (sc[j + 4] >> 4) << 6;
        s[j + 4] = (m[j] & 63) | (m[j + 4] >> 4) << 6;
        s[j + 8] = (sc[j + 4] & 15) | (m[j + 4] & 15) << 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        for (dtype, cols) in [
            (DType::Q4_0, 96),
            (DType::Q5_0, 96),
            (DType::Q4_K, 512),
            (DType::Q5_K, 512),
            (DType::Q6_K, 512),
            (DType::Q4_1, 96),
            (DType::Q5_1, 96),
            (DType::IQ4_NL, 96),
            (DType::IQ4_XS, 512),
            (DType::Q2_K, 512),
            (DType::Q3_K, 512),
        ] {
            let rb = dtype.bytes_for(cols).unwrap();
            let src: Vec<u8> = (0..16 * rb).map(|i| (i * 37 % 251) as u8).collect();
            let x8 = interleave(dtype, cols, &src).unwrap();
            assert_eq!(x8.len(), src.len());
            assert_eq!(deinterleave(dtype, cols, &x8), src, "{}", dtype.name());
        }
        assert!(interleave(DType::Q8_0, 32, &[0u8; 8 * 34]).is_none());
        assert!(interleave(DType::Q4_0, 32, &[0u8; 7 * 18]).is_none());
        // Q4_0, group 1, block 2, row 5: scale at 2·5, nibble bytes 4..8 in vector 1 at 16+32+20.
        let (cols, rb) = (96, 54);
        let src: Vec<u8> = (0..16 * rb).map(|i| (i * 37 % 251) as u8).collect();
        let x8 = interleave(DType::Q4_0, cols, &src).unwrap();
        let blk = &x8[8 * rb + 2 * 144..][..144];
        let row = &src[13 * rb + 2 * 18..][..18];
        assert_eq!(&blk[10..12], &row[..2]);
        assert_eq!(&blk[16 + 32 + 20..16 + 32 + 24], &row[6..10]);
        // Q5_0, group 1, block 1, row 3: fifth bit of element 4c + k at bit c of byte 16+12+k.
        let (cols, rb) = (64, 44);
        let src: Vec<u8> = (0..16 * rb).map(|i| (i * 37 % 251) as u8).collect();
        let x8 = interleave(DType::Q5_0, cols, &src).unwrap();
        let blk = &x8[8 * rb + 176..][..176];
        let row = &src[11 * rb + 22..][..22];
        let qh = u32::from_le_bytes(row[2..6].try_into().unwrap());
        for e in 0..32 {
            assert_eq!(
                blk[28 + e % 4] >> (e / 4) & 1,
                (qh >> e & 1) as u8,
                "element {e}"
            );
        }
        assert_eq!(&blk[48 + 64 + 12..48 + 64 + 16], &row[6 + 8..6 + 12]);
        // Q6_K, group 0, row 2: d, the scales of block 5, ql 96..100 (half 1, second chunk,
        // vector 0), qh 60..64 (half 1, vector 7).
        let rb = 210;
        let src: Vec<u8> = (0..8 * rb).map(|i| (i * 37 % 251) as u8).collect();
        let x8 = interleave(DType::Q6_K, 256, &src).unwrap();
        let row = &src[2 * rb..3 * rb];
        assert_eq!(&x8[4..6], &row[208..210]);
        assert_eq!(&x8[16 + 80 + 4..16 + 80 + 6], &row[202..204]);
        assert_eq!(
            &x8[144 + 768 + 256 + 8..144 + 768 + 256 + 12],
            &row[96..100]
        );
        assert_eq!(
            &x8[144 + 768 + 512 + 224 + 8..144 + 768 + 512 + 224 + 12],
            &row[188..192]
        );
        // Q4_1, group 1, block 2, row 6: d, m, nibble bytes 12..16 (vector 3).
        let (cols, rb) = (96, 60);
        let src: Vec<u8> = (0..16 * rb).map(|i| (i * 37 % 251) as u8).collect();
        let x8 = interleave(DType::Q4_1, cols, &src).unwrap();
        let blk = &x8[8 * rb + 2 * 160..][..160];
        let row = &src[14 * rb + 2 * 20..][..20];
        assert_eq!(&blk[12..14], &row[..2]);
        assert_eq!(&blk[28..30], &row[2..4]);
        assert_eq!(&blk[32 + 96 + 24..32 + 96 + 28], &row[16..20]);
        // Q5_1, group 0, block 1, row 3: d, m, fifth bit of element 4c + k at bit c of byte
        // 32+12+k, nibble bytes 4..8 (vector 1).
        let (cols, rb) = (64, 48);
        let src: Vec<u8> = (0..8 * rb).map(|i| (i * 37 % 251) as u8).collect();
        let x8 = interleave(DType::Q5_1, cols, &src).unwrap();
        let blk = &x8[192..384];
        let row = &src[3 * rb + 24..][..24];
        assert_eq!(&blk[6..8], &row[..2]);
        assert_eq!(&blk[22..24], &row[2..4]);
        let qh = u32::from_le_bytes(row[4..8].try_into().unwrap());
        for e in 0..32 {
            assert_eq!(
                blk[44 + e % 4] >> (e / 4) & 1,
                (qh >> e & 1) as u8,
                "element {e}"
            );
        }
        assert_eq!(&blk[64 + 32 + 12..64 + 32 + 16], &row[12..16]);
        // Q5_K, group 1, super-block 1, row 6: d, dmin, nibble bytes 100..104 (chunk 3, vector
        // 1), qh 20..24 (vector 5) and the fifth bit of element 4v + k of sub-block i at bit i of
        // byte 1152 + 32v + 4·6 + k.
        let (cols, rb) = (512, 352);
        let src: Vec<u8> = (0..16 * rb).map(|i| (i * 37 % 251) as u8).collect();
        let x8 = interleave(DType::Q5_K, cols, &src).unwrap();
        let blk = &x8[8 * rb + 1408..][..1408];
        let row = &src[14 * rb + 176..][..176];
        assert_eq!(&blk[12..14], &row[..2]);
        assert_eq!(&blk[28..30], &row[2..4]);
        assert_eq!(
            &blk[128 + 768 + 32 + 24..128 + 768 + 32 + 28],
            &row[48 + 100..48 + 104]
        );
        assert_eq!(&blk[1152 + 160 + 24..1152 + 160 + 28], &row[36..40]);
        for v in 0..8 {
            for k in 0..4 {
                assert_eq!(blk[1152 + 32 * v + 24 + k], row[16 + 4 * v + k]);
            }
        }
        // IQ4_XS, group 1, super-block 1, row 5: d, sub-block 3's scale (low 4 bits at nibble 1
        // of L[12 + 2], high 2 bits at bits 2..4 of H[6 + 1]), nibble bytes 4..8 of sub-block 6.
        let (cols, rb) = (512, 272);
        let src: Vec<u8> = (0..16 * rb).map(|i| (i * 37 % 251) as u8).collect();
        let x8 = interleave(DType::IQ4_XS, cols, &src).unwrap();
        let blk = &x8[8 * rb + 1088..][..1088];
        let row = &src[13 * rb + 136..][..136];
        assert_eq!(&blk[10..12], &row[..2]);
        let ls = super::super::iq4::xs_scale(row, 3) as u8;
        assert_eq!(blk[16 + 14] >> 4, ls & 15);
        assert_eq!(blk[48 + 7] >> 2 & 3, ls >> 4);
        assert_eq!(
            &blk[64 + 128 * 6 + 32 + 20..64 + 128 * 6 + 32 + 24],
            &row[8 + 96 + 4..8 + 96 + 8]
        );
    }

    /// Q2_K, group 1, super-block 1, row 6: d, dmin, block 5's scale/min bytes 10, 11, and code
    /// bytes 52..56 (half 1, vector 1).
    #[test]
    fn q2_k_layout() {
        let (cols, rb) = (512, 168);
        let src: Vec<u8> = (0..16 * rb).map(|i| (i * 37 % 251) as u8).collect();
        let x8 = interleave(DType::Q2_K, cols, &src).unwrap();
        let blk = &x8[8 * rb + 672..][..672];
        let row = &src[14 * rb + 84..][..84];
        assert_eq!(&blk[12..14], &row[80..82]);
        assert_eq!(&blk[28..30], &row[82..84]);
        assert_eq!(&blk[32 + 80 + 12..32 + 80 + 14], &row[10..12]);
        assert_eq!(&blk[160 + 256 + 32 + 24..160 + 256 + 32 + 28], &row[52..56]);
    }

    #[test]
    fn q3_k_layout() {
        // Group 1, super-block 1, row 5: d, the scales of block 6 (sub-blocks 12 and 13: low
        // nibbles of L[48 + 10] and L[48 + 11], high bits 4..6 of H[16 + 10] and H[16 + 11]), qs 40..44
        // (half 0, vector 2), qs 92..96 (half 1, vector 7), hmask 12..16 (vector 3, bits reordered).
        let (cols, rb) = (512, 220);
        let src: Vec<u8> = (0..16 * rb).map(|i| (i * 37 % 251) as u8).collect();
        let x8 = interleave(DType::Q3_K, cols, &src).unwrap();
        let blk = &x8[8 * rb + 880..][..880];
        let row = &src[13 * rb + 110..][..110];
        assert_eq!(&blk[10..12], &row[108..110]);
        let sc = |i| (super::super::kquant::q3_scale(&row[96..108], i) + 32) as u8;
        let (a, c) = (sc(12), sc(13));
        assert_eq!((blk[16 + 58] & 15, blk[16 + 59] & 15), (a & 15, c & 15));
        assert_eq!(
            (blk[80 + 26] >> 4 & 3, blk[80 + 27] >> 4 & 3),
            (a >> 4, c >> 4)
        );
        assert_eq!(&blk[112 + 64 + 20..112 + 64 + 24], &row[40..44]);
        assert_eq!(
            &blk[112 + 256 + 224 + 20..112 + 256 + 224 + 24],
            &row[92..96]
        );
        for k in 0..4 {
            for j in 0..8 {
                let at = [2, 3, 6, 7, 0, 1, 4, 5][j];
                assert_eq!(blk[624 + 96 + 20 + k] >> at & 1, row[12 + k] >> j & 1);
            }
        }
        for seed in 0..64u32 {
            let s: Vec<u8> = (0..12).map(|i| (seed * 97 + i * 53) as u8).collect();
            let mut back = [0u8; 12];
            pack_q3_scales(&unpack_q3_scales(&s), &mut back);
            assert_eq!(&back[..], &s[..]);
        }
    }

    #[test]
    fn k_scales_pack_round_trip() {
        for seed in 0..64u32 {
            let s: Vec<u8> = (0..12).map(|i| (seed * 97 + i * 53) as u8).collect();
            let (sc, m) = unpack_k_scales(&s);
            let mut back = [0u8; 12];
            pack_k_scales(&sc, &m, &mut back);
            assert_eq!(&back[..], &s[..]);
        }
    }
}
