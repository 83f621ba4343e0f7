//! Q4_0 interleaved by eight rows ("x8"): the layout the AVX2 decode and prefill kernels read
//! fastest (`mk_vec_dot_x8_q4_0_q8a_avx2`, `mk_gemm_x8_q4_0_q8a_avx2`).
//!
//! For each group of 8 rows and each 32-element block, 144 bytes: the 8 rows' f16 scales, then
//! four 32-byte vectors, vector v holding bytes 4v..4v+3 of each row's 16 nibble bytes (row r
//! at 4r..4r+3). A group of 8 rows takes exactly the bytes of its 8 rows (8 × 18 per block), so
//! byte offsets of whole groups, and of sub-views that start and end on a group, are the same
//! as in the file's layout. The model loader writes it (see [`crate::model::Model::load_with`]):
//! one row then spans the whole group, so the kernel computes 8 rows per pass with one row per
//! 32-bit lane and no horizontal sums.

/// Rows per group.
pub const GROUP: usize = 8;
const BLOCK: usize = 18;
const X8_BLOCK: usize = GROUP * BLOCK;

/// `src` (whole Q4_0 rows of `cols` elements, a multiple of [`GROUP`] rows) in the x8 layout.
pub fn interleave_q4_0(cols: usize, src: &[u8]) -> Vec<u8> {
    let nb = cols / 32;
    let group_bytes = GROUP * nb * BLOCK;
    debug_assert!(cols % 32 == 0 && src.len() % group_bytes == 0);
    let mut out = vec![0u8; src.len()];
    for (g, dst) in src
        .chunks_exact(group_bytes)
        .zip(out.chunks_exact_mut(group_bytes))
    {
        for (j, blk) in dst.chunks_exact_mut(X8_BLOCK).enumerate() {
            for r in 0..GROUP {
                let b = &g[r * nb * BLOCK + j * BLOCK..][..BLOCK];
                blk[2 * r..2 * r + 2].copy_from_slice(&b[..2]);
                for v in 0..4 {
                    let at = 16 + 32 * v + 4 * r;
                    blk[at..at + 4].copy_from_slice(&b[2 + 4 * v..6 + 4 * v]);
                }
            }
        }
    }
    out
}

/// Row `r` (0..8) of one x8 group (`group`: the group's bytes) in the file's layout.
pub fn deinterleave_row_q4_0(cols: usize, group: &[u8], r: usize, out: &mut [u8]) {
    let nb = cols / 32;
    for (blk, b) in group
        .chunks_exact(X8_BLOCK)
        .zip(out.chunks_exact_mut(BLOCK))
        .take(nb)
    {
        b[..2].copy_from_slice(&blk[2 * r..2 * r + 2]);
        for v in 0..4 {
            let at = 16 + 32 * v + 4 * r;
            b[2 + 4 * v..6 + 4 * v].copy_from_slice(&blk[at..at + 4]);
        }
    }
}

/// `src` (whole x8 groups) back in the file's layout.
pub fn deinterleave_q4_0(cols: usize, src: &[u8]) -> Vec<u8> {
    let rb = cols / 32 * BLOCK;
    let mut out = vec![0u8; src.len()];
    for (g, dst) in src
        .chunks_exact(GROUP * rb)
        .zip(out.chunks_exact_mut(GROUP * rb))
    {
        for (r, row) in dst.chunks_exact_mut(rb).enumerate() {
            deinterleave_row_q4_0(cols, g, r, row);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let cols = 96; // 3 blocks
        let rb = cols / 32 * BLOCK;
        let src: Vec<u8> = (0..16 * rb).map(|i| (i * 37 % 251) as u8).collect();
        let x8 = interleave_q4_0(cols, &src);
        assert_eq!(x8.len(), src.len());
        assert_eq!(deinterleave_q4_0(cols, &x8), src);
        // Group 1, block 2, row 5: scale at 2·5, nibble bytes 4..8 in vector 1 at 16+32+20.
        let (g, j, r) = (1, 2, 5);
        let blk = &x8[g * 8 * rb + j * X8_BLOCK..][..X8_BLOCK];
        let row = &src[(8 * g + r) * rb + j * BLOCK..][..BLOCK];
        assert_eq!(&blk[10..12], &row[..2]);
        assert_eq!(&blk[16 + 32 + 20..16 + 32 + 24], &row[6..10]);
    }
}
