/* moela compute kernels: one signature family, one implementation per ISA.
 *
 * Every kernel exists as `<name>_generic` (csrc/generic/, portable scalar C, always built:
 * the oracle of every kernel test). ISA versions (`_avx2`, `_avx512`, `_neon`, ...) are added
 * one file per ISA and chosen at run time by the Rust dispatch table.
 *
 * Weight rows use the GGUF block layouts: Q8_0 = 32 x (f16 scale, 32 x int8);
 * Q4_0 = 32 x (f16 scale, 16 bytes: element j low nibble, element j+16 high nibble, q-8).
 * K-quants (256-element super-blocks, see src/tensor/kquant.rs): Q4_K = 144 bytes (f16 d,
 * f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles; eight sub-blocks of 32,
 * x = d·sc·q - dmin·m); Q5_K = 176 bytes (as Q4_K with 32 bytes of 5th bits before the
 * nibbles); Q6_K = 210 bytes (128 bytes low nibbles, 64 bytes 2-bit highs, 16 int8 scales of
 * 16-element sub-blocks, f16 d; x = d·sc·(q-32)).
 * Pointers to quantized rows need no alignment. `n` is the row length in elements and is a
 * multiple of 32 for Q8_0/Q4_0 and of 256 for the K-quants.
 */
#ifndef MOELA_KERNELS_H
#define MOELA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Dot product of one stored weight row with an f32 activation vector. Float rows (F32, F16 =
 * IEEE half bits, BF16 = bfloat16 bits, little-endian) need no alignment and may have any
 * length n. */
float mk_vec_dot_f32_f32_generic(size_t n, const void *weight_row, const float *acts);
float mk_vec_dot_f16_f32_generic(size_t n, const void *weight_row, const float *acts);
float mk_vec_dot_bf16_f32_generic(size_t n, const void *weight_row, const float *acts);
float mk_vec_dot_q8_0_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_q4_0_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_q4_k_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_q5_k_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_q6_k_f32_generic(size_t n, const void *w, const float *x);

/* 8-bit activations ("q8a"): a row of n floats (n a multiple of 32) quantized once per
 * matrix-vector product, per block of 32: qs[n] int8 with x ≈ d[b] * qs, d[n/32] f32 scales
 * (amax/127, so qs never holds -128) and s[n/32] = Σ qs of the block (Q4_0's -8 offset). */
void mk_quantize_row_q8a_generic(size_t n, const float *x, int8_t *qs, float *d, int32_t *s);

/* Grouped q8a ("q8g"), for kernels that unpack four Q4_0 blocks into one 512-bit register.
 * A row keeps its plain q8a arrays (qs, d, s) and adds, for each full group g of 4 blocks
 * (blocks 4g..4g+3): gqs[128g .. 128g+64] = the first 16 values of each of the 4 blocks,
 * gqs[128g+64 .. 128g+128] = their last 16 values; gd[16g + l] = d of block 4g + l/4 and
 * gs[16g + l] = -2·s of block 4g + l/4 (a block's four lanes add up to Q4_0's -8·s). A
 * trailing partial group is read from the plain arrays. Row r of a batch starts at
 * qs/gqs + r*n, d/s + r*n/32 and gd/gs + r*n/8. */
struct mk_q8g {
    const int8_t *qs;
    const float *d;
    const int32_t *s;
    const int8_t *gqs;
    const float *gd;
    const int32_t *gs;
    /* Tiles of 16 blocks (512 values; the four-row kernel), for each full tile k of a row:
     * tqs[512k + 64u + 4l + i] = value e of block 16k + l, where e = 4u + i for steps u < 4
     * and e = 16 + 4(u-4) + i for steps u >= 4 (lane l of step u meets the weights' nibbles
     * of that block after a 4x4 dword transpose); td[16k + l] = d and ts[16k + l] = -8·s of
     * block 16k + l. Row r starts at tqs + r*n and td/ts + r*n/32. */
    const int8_t *tqs;
    const float *td;
    const int32_t *ts;
};

/* Fills the grouped arrays of one row from its plain q8a arrays (gqs: n values; gd, gs:
 * n/8 values each). */
void mk_group_q8a_generic(size_t n, const int8_t *qs, const float *d, const int32_t *s,
                          int8_t *gqs, float *gd, int32_t *gs);
/* Fills the tile arrays of one row (tqs: n values; td, ts: n/32 values each). */
void mk_tile_q8a_generic(size_t n, const int8_t *qs, const float *d, const int32_t *s,
                         int8_t *tqs, float *td, int32_t *ts);

/* Weight row × q8a activations. Integer block sums are exact; the float result differs
 * from the generic one only by summation order. */
float mk_vec_dot_q8_0_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_q4_0_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
/* Prefill GEMM: out[t*ldo + r] = w_r · x_t for r < nrows, t < ntok. w: nrows stored rows of
 * n elements (n a multiple of 32), row_bytes apart; x: ntok q8a rows back to back (qs: n
 * values per row; d, s: n/32 per row). The generic versions are the reference of the ISA
 * ones (each weight row reused across tokens from registers/cache). */
void mk_gemm_q8_0_q8a_generic(size_t n, size_t nrows, const void *w, size_t row_bytes,
                              size_t ntok, const int8_t *qs, const float *d, const int32_t *s,
                              float *out, size_t ldo);
void mk_gemm_q4_0_q8a_generic(size_t n, size_t nrows, const void *w, size_t row_bytes,
                              size_t ntok, const int8_t *qs, const float *d, const int32_t *s,
                              float *out, size_t ldo);
void mk_gemm_q4_k_q8a_generic(size_t n, size_t nrows, const void *w, size_t row_bytes,
                              size_t ntok, const int8_t *qs, const float *d, const int32_t *s,
                              float *out, size_t ldo);
void mk_gemm_q5_k_q8a_generic(size_t n, size_t nrows, const void *w, size_t row_bytes,
                              size_t ntok, const int8_t *qs, const float *d, const int32_t *s,
                              float *out, size_t ldo);
void mk_gemm_q6_k_q8a_generic(size_t n, size_t nrows, const void *w, size_t row_bytes,
                              size_t ntok, const int8_t *qs, const float *d, const int32_t *s,
                              float *out, size_t ldo);
/* K-quants × q8a: sub-block j of super-block b is activation block 8b+j (Q4_K/Q5_K apply the
 * mins as dmin·m·s); Q6_K's 16-element sub-blocks are summed separately inside the kernel. */
float mk_vec_dot_q4_k_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_q5_k_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_q6_k_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);

/* x86-64: AVX2 + FMA + F16C (csrc/x86/avx2.c). */
/* q8a quantization with AVX2, bit-identical to mk_quantize_row_q8a_generic. */
void mk_quantize_row_q8a_avx2(size_t n, const float *x, int8_t *qs, float *d, int32_t *s);
float mk_vec_dot_q8_0_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s);
float mk_vec_dot_q4_0_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s);
float mk_vec_dot_q4_k_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s);
float mk_vec_dot_q5_k_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s);
float mk_vec_dot_q6_k_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s);
/* Decode: four weight rows (row i at w + i·row_bytes) against one q8a activation row;
 * out[i] = row i · x (as the one-row kernel computes it, up to float summation order). */
void mk_vec_dot_rows4_q4_0_q8a_avx2(size_t n, const void *w, size_t row_bytes, const int8_t *qs,
                                    const float *d, const int32_t *s, float *out);
void mk_vec_dot_rows4_q8_0_q8a_avx2(size_t n, const void *w, size_t row_bytes, const int8_t *qs,
                                    const float *d, const int32_t *s, float *out);
void mk_vec_dot_rows4_q5_0_q8a_avx2(size_t n, const void *w, size_t row_bytes, const int8_t *qs,
                                    const float *d, const int32_t *s, float *out);
void mk_vec_dot_rows4_iq4_nl_q8a_avx2(size_t n, const void *w, size_t row_bytes, const int8_t *qs,
                                      const float *d, const int32_t *s, float *out);
/* Prefill GEMMs (contract of mk_gemm_*_q8a_generic): tiles of 8 weight rows × one 32-element
 * block decoded and transposed once (lane r = row r), every token streamed past them; the
 * last nrows % 8 rows and batches under 4 tokens in tiles of 2 rows × 4 blocks. */
void mk_gemm_q4_0_q8a_avx2(size_t n, size_t nrows, const void *w, size_t row_bytes, size_t ntok,
                           const int8_t *qs, const float *d, const int32_t *s, float *out,
                           size_t ldo);
void mk_gemm_q8_0_q8a_avx2(size_t n, size_t nrows, const void *w, size_t row_bytes, size_t ntok,
                           const int8_t *qs, const float *d, const int32_t *s, float *out,
                           size_t ldo);
void mk_gemm_q5_0_q8a_avx2(size_t n, size_t nrows, const void *w, size_t row_bytes, size_t ntok,
                           const int8_t *qs, const float *d, const int32_t *s, float *out,
                           size_t ldo);
void mk_gemm_iq4_nl_q8a_avx2(size_t n, size_t nrows, const void *w, size_t row_bytes, size_t ntok,
                             const int8_t *qs, const float *d, const int32_t *s, float *out,
                             size_t ldo);
/* And for Q4_1, Q5_1 (their mins added as m·dx·Σx) and IQ4_XS (n a multiple of 256). */
void mk_gemm_q4_1_q8a_avx2(size_t n, size_t nrows, const void *w, size_t row_bytes, size_t ntok,
                           const int8_t *qs, const float *d, const int32_t *s, float *out,
                           size_t ldo);
void mk_gemm_q5_1_q8a_avx2(size_t n, size_t nrows, const void *w, size_t row_bytes, size_t ntok,
                           const int8_t *qs, const float *d, const int32_t *s, float *out,
                           size_t ldo);
void mk_gemm_iq4_xs_q8a_avx2(size_t n, size_t nrows, const void *w, size_t row_bytes, size_t ntok,
                             const int8_t *qs, const float *d, const int32_t *s, float *out,
                             size_t ldo);
/* Q4_0 interleaved by eight rows ("x8": per block, the 8 rows' f16 scales, then four 32-byte
 * vectors, vector v holding bytes 4v..4v+3 of each row's 16 nibble bytes, row r at bytes
 * 4r..4r+3; src/tensor/interleave.rs writes it). Decode: the 8 rows of one group against one
 * activation row (out[0..8]). GEMM: ngroups consecutive groups (8·ngroups rows) against ntok
 * activation rows, row r of the result at out[t·ldo + r]. */
void mk_vec_dot_x8_q4_0_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out);
void mk_gemm_x8_q4_0_q8a_avx2(size_t n, size_t ngroups, const void *w, size_t ntok, const int8_t *qs,
                              const float *d, const int32_t *s, float *out, size_t ldo);
/* Q4_K interleaved by eight rows (x8; per super-block of the 8 rows: their d, dmin, 6-bit
 * scales and mins repacked for vector loads, then per 32-byte chunk of nibbles the same
 * 4-bytes-per-row vectors as Q4_0 x8; layout in csrc/x86/avx2.c and src/tensor/interleave.rs),
 * same contracts as the Q4_0 x8 kernels. */
void mk_vec_dot_x8_q4_k_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out);
void mk_gemm_x8_q4_k_q8a_avx2(size_t n, size_t ngroups, const void *w, size_t ntok, const int8_t *qs,
                              const float *d, const int32_t *s, float *out, size_t ldo);
/* The x8 decode kernels for ntok ≤ 8 activation rows at once (speculative verification),
 * token t's arrays at qs[t], d[t], s[t] and its 8 results at out[t·ldo]: bit-identical, token
 * by token, to the one-token kernels (same float operations in the same order). */
void mk_vec_dot_x8_q4_0_q8a_multi_avx2(size_t n, const void *w, size_t ntok, const int8_t *const *qs,
                                       const float *const *d, const int32_t *const *s, float *out,
                                       size_t ldo);
void mk_vec_dot_x8_q4_k_q8a_multi_avx2(size_t n, const void *w, size_t ntok, const int8_t *const *qs,
                                       const float *const *d, const int32_t *const *s, float *out,
                                       size_t ldo);
/* Q5_K interleaved by eight rows (x8; per super-block of the 8 rows: Q4_K x8's 1152 bytes, then
 * their qh as eight 4-bytes-per-row vectors; layout in csrc/x86/avx2.c and
 * src/tensor/interleave.rs), the same three contracts as the Q4_0 x8 kernels. */
void mk_vec_dot_x8_q5_k_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out);
void mk_gemm_x8_q5_k_q8a_avx2(size_t n, size_t ngroups, const void *w, size_t ntok, const int8_t *qs,
                              const float *d, const int32_t *s, float *out, size_t ldo);
void mk_vec_dot_x8_q5_k_q8a_multi_avx2(size_t n, const void *w, size_t ntok, const int8_t *const *qs,
                                       const float *const *d, const int32_t *const *s, float *out,
                                       size_t ldo);
/* Q5_0 and Q6_K interleaved by eight rows (x8; Q5_0: per block the 8 rows' scales, their
 * fifth bits transposed per lane and the Q4_0 x8 nibble vectors; Q6_K: per super-block the
 * rows' d, the int8 sub-block scales as one int16 pair per row and activation block, then per
 * 128-element half the ql and qh chunks as 4-bytes-per-row vectors; layouts in csrc/x86/avx2.c
 * and src/tensor/interleave.rs), the same three contracts as the Q4_0 x8 kernels. */
void mk_vec_dot_x8_q5_0_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out);
void mk_gemm_x8_q5_0_q8a_avx2(size_t n, size_t ngroups, const void *w, size_t ntok, const int8_t *qs,
                              const float *d, const int32_t *s, float *out, size_t ldo);
void mk_vec_dot_x8_q5_0_q8a_multi_avx2(size_t n, const void *w, size_t ntok, const int8_t *const *qs,
                                       const float *const *d, const int32_t *const *s, float *out,
                                       size_t ldo);
void mk_vec_dot_x8_q6_k_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out);
void mk_gemm_x8_q6_k_q8a_avx2(size_t n, size_t ngroups, const void *w, size_t ntok, const int8_t *qs,
                              const float *d, const int32_t *s, float *out, size_t ldo);
void mk_vec_dot_x8_q6_k_q8a_multi_avx2(size_t n, const void *w, size_t ntok, const int8_t *const *qs,
                                       const float *const *d, const int32_t *const *s, float *out,
                                       size_t ldo);
/* Q4_1 and Q5_1 interleaved by eight rows (x8; per block the 8 rows' d, their m, then Q5_1's
 * fifth bits as Q5_0 x8 and the Q4_0 x8 nibble vectors; layouts in csrc/x86/avx2.c and
 * src/tensor/interleave.rs), the same three contracts as the Q4_0 x8 kernels. */
void mk_vec_dot_x8_q4_1_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out);
void mk_gemm_x8_q4_1_q8a_avx2(size_t n, size_t ngroups, const void *w, size_t ntok, const int8_t *qs,
                              const float *d, const int32_t *s, float *out, size_t ldo);
void mk_vec_dot_x8_q4_1_q8a_multi_avx2(size_t n, const void *w, size_t ntok, const int8_t *const *qs,
                                       const float *const *d, const int32_t *const *s, float *out,
                                       size_t ldo);
void mk_vec_dot_x8_q5_1_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out);
void mk_gemm_x8_q5_1_q8a_avx2(size_t n, size_t ngroups, const void *w, size_t ntok, const int8_t *qs,
                              const float *d, const int32_t *s, float *out, size_t ldo);
void mk_vec_dot_x8_q5_1_q8a_multi_avx2(size_t n, const void *w, size_t ntok, const int8_t *const *qs,
                                       const float *const *d, const int32_t *const *s, float *out,
                                       size_t ldo);
/* IQ4_NL and IQ4_XS interleaved by eight rows (x8; IQ4_NL: Q4_0's x8 layout; IQ4_XS: per
 * super-block the rows' d, their 6-bit sub-block scales as 32 bytes of low nibbles and 16 of
 * 2-bit highs, then per sub-block Q4_0 x8's four nibble vectors; layouts in csrc/x86/avx2.c and
 * src/tensor/interleave.rs), the same three contracts as the Q4_0 x8 kernels (s unused). */
void mk_vec_dot_x8_iq4_nl_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                   const int32_t *s, float *out);
void mk_gemm_x8_iq4_nl_q8a_avx2(size_t n, size_t ngroups, const void *w, size_t ntok, const int8_t *qs,
                                const float *d, const int32_t *s, float *out, size_t ldo);
void mk_vec_dot_x8_iq4_nl_q8a_multi_avx2(size_t n, const void *w, size_t ntok, const int8_t *const *qs,
                                         const float *const *d, const int32_t *const *s, float *out,
                                         size_t ldo);
void mk_vec_dot_x8_iq4_xs_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                   const int32_t *s, float *out);
void mk_gemm_x8_iq4_xs_q8a_avx2(size_t n, size_t ngroups, const void *w, size_t ntok, const int8_t *qs,
                                const float *d, const int32_t *s, float *out, size_t ldo);
void mk_vec_dot_x8_iq4_xs_q8a_multi_avx2(size_t n, const void *w, size_t ntok, const int8_t *const *qs,
                                         const float *const *d, const int32_t *const *s, float *out,
                                         size_t ldo);
/* Q2_K interleaved by eight rows (x8; per super-block the 8 rows' d, their dmin, the scale/min
 * bytes as one int16 pair per row and activation block, then per 128-element half the code
 * bytes as 4-bytes-per-row vectors; layout in csrc/x86/avx2.c and src/tensor/interleave.rs),
 * the same three contracts as the Q4_0 x8 kernels. */
void mk_vec_dot_x8_q2_k_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out);
void mk_gemm_x8_q2_k_q8a_avx2(size_t n, size_t ngroups, const void *w, size_t ntok, const int8_t *qs,
                              const float *d, const int32_t *s, float *out, size_t ldo);
void mk_vec_dot_x8_q2_k_q8a_multi_avx2(size_t n, const void *w, size_t ntok, const int8_t *const *qs,
                                       const float *const *d, const int32_t *const *s, float *out,
                                       size_t ldo);
/* Q3_K interleaved by eight rows (x8; per super-block the rows' d, the low nibbles and high 2
 * bits of their 6-bit scales, then the qs chunks and the hmask as 4-bytes-per-row vectors;
 * layout in csrc/x86/avx2.c and src/tensor/interleave.rs), the same three contracts as the Q4_0
 * x8 kernels. */
void mk_vec_dot_x8_q3_k_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out);
void mk_gemm_x8_q3_k_q8a_avx2(size_t n, size_t ngroups, const void *w, size_t ntok, const int8_t *qs,
                              const float *d, const int32_t *s, float *out, size_t ldo);
void mk_vec_dot_x8_q3_k_q8a_multi_avx2(size_t n, const void *w, size_t ntok, const int8_t *const *qs,
                                       const float *const *d, const int32_t *const *s, float *out,
                                       size_t ldo);
/* And for Q4_K / Q5_K / Q6_K weights (n a multiple of 256; the small tiles: 2 weight rows ×
 * half a super-block). */
void mk_gemm_q4_k_q8a_avx2(size_t n, size_t nrows, const void *w, size_t row_bytes, size_t ntok,
                           const int8_t *qs, const float *d, const int32_t *s, float *out,
                           size_t ldo);
void mk_gemm_q5_k_q8a_avx2(size_t n, size_t nrows, const void *w, size_t row_bytes, size_t ntok,
                           const int8_t *qs, const float *d, const int32_t *s, float *out,
                           size_t ldo);
void mk_gemm_q6_k_q8a_avx2(size_t n, size_t nrows, const void *w, size_t row_bytes, size_t ntok,
                           const int8_t *qs, const float *d, const int32_t *s, float *out,
                           size_t ldo);

/* x86-64: AVX-512 F/BW/VL/DQ + VNNI (csrc/x86/avx512.c). */
float mk_vec_dot_q8_0_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s);
float mk_vec_dot_q4_0_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s);
float mk_vec_dot_q4_k_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s);
float mk_vec_dot_q5_k_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s);
float mk_vec_dot_q6_k_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s);

/* q8a quantization with AVX-512, bit-identical to mk_quantize_row_q8a_generic. */
void mk_quantize_row_q8a_avx512(size_t n, const float *x, int8_t *qs, float *d, int32_t *s);

/* Four activation rows at once (prefill): row r of the activations starts at qs + r*n,
 * d + r*n/32 and s + r*n/32; out[r] = dot of the weight row with activation row r. Each
 * weight block is loaded once for the four rows. */
void mk_vec_dot4_q8_0_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out);
void mk_vec_dot4_q4_0_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out);
void mk_vec_dot4_q4_k_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out);
void mk_vec_dot4_q5_k_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out);
void mk_vec_dot4_q6_k_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out);

/* x86-64: AVX-512 VBMI + VNNI (csrc/x86/avx512vbmi.c): Q4_0 × q8g, one row and four rows
 * (out[r] for activation row r). */
float mk_vec_dot_q4_0_q8g_avx512vbmi(size_t n, const void *w, const struct mk_q8g *x);
void mk_vec_dot4_q4_0_q8g_avx512vbmi(size_t n, const void *w, const struct mk_q8g *x,
                                     float *out);
/* Q4_0 prefill GEMM against q8g activations with tiles (ntok >= 4 rows grouped and tiled;
 * x describes activation row 0, row t starts at the offsets given with struct mk_q8g):
 * out[t*ldo + r] = w_r · x_t. Two weight rows at a time are unpacked once per tile into
 * registers and applied to every token, so the unpacking and the activation loads are
 * shared. */
void mk_gemm_q4_0_q8g_avx512vbmi(size_t n, size_t nrows, const void *w, size_t row_bytes,
                                 size_t ntok, const struct mk_q8g *x, float *out, size_t ldo);
/* The same for Q8_0 weights (blocks gathered into the tile layout, sign bit flipped). */
void mk_gemm_q8_0_q8g_avx512vbmi(size_t n, size_t nrows, const void *w, size_t row_bytes,
                                 size_t ntok, const struct mk_q8g *x, float *out, size_t ldo);
/* And for Q4_K / Q5_K / Q6_K weights (n a multiple of 256; tiles of two super-blocks, a last single
 * super-block through the one-row kernel). */
void mk_gemm_q4_k_q8g_avx512vbmi(size_t n, size_t nrows, const void *w, size_t row_bytes,
                                 size_t ntok, const struct mk_q8g *x, float *out, size_t ldo);
void mk_gemm_q5_k_q8g_avx512vbmi(size_t n, size_t nrows, const void *w, size_t row_bytes,
                                 size_t ntok, const struct mk_q8g *x, float *out, size_t ldo);
void mk_gemm_q6_k_q8g_avx512vbmi(size_t n, size_t nrows, const void *w, size_t row_bytes,
                                 size_t ntok, const struct mk_q8g *x, float *out, size_t ldo);

/* Float weights (F32, F16, BF16) × f32 activations, every ISA (the `_generic` one-row kernels
 * are declared at the top). One row: the dot product of n elements (any n; the row needs no
 * alignment). Four rows (prefill): activation row r starts at x + r*n and out[r] = w · row r,
 * each weight vector loaded and widened once for the four. Results differ from the generic
 * (sequential) sum only by float summation order; F16/BF16 are widened exactly (no bf16
 * arithmetic on the activations). The dotprod set reuses the NEON ones. */
void mk_vec_dot4_f32_f32_generic(size_t n, const void *w, const float *x, float *out);
void mk_vec_dot4_f16_f32_generic(size_t n, const void *w, const float *x, float *out);
void mk_vec_dot4_bf16_f32_generic(size_t n, const void *w, const float *x, float *out);
float mk_vec_dot_f32_f32_avx2(size_t n, const void *weight_row, const float *acts);
float mk_vec_dot_f16_f32_avx2(size_t n, const void *weight_row, const float *acts);
float mk_vec_dot_bf16_f32_avx2(size_t n, const void *weight_row, const float *acts);
void mk_vec_dot4_f32_f32_avx2(size_t n, const void *w, const float *x, float *out);
void mk_vec_dot4_f16_f32_avx2(size_t n, const void *w, const float *x, float *out);
void mk_vec_dot4_bf16_f32_avx2(size_t n, const void *w, const float *x, float *out);
float mk_vec_dot_f32_f32_avx512(size_t n, const void *weight_row, const float *acts);
float mk_vec_dot_f16_f32_avx512(size_t n, const void *weight_row, const float *acts);
float mk_vec_dot_bf16_f32_avx512(size_t n, const void *weight_row, const float *acts);
void mk_vec_dot4_f32_f32_avx512(size_t n, const void *w, const float *x, float *out);
void mk_vec_dot4_f16_f32_avx512(size_t n, const void *w, const float *x, float *out);
void mk_vec_dot4_bf16_f32_avx512(size_t n, const void *w, const float *x, float *out);
float mk_vec_dot_f32_f32_neon(size_t n, const void *weight_row, const float *acts);
float mk_vec_dot_f16_f32_neon(size_t n, const void *weight_row, const float *acts);
float mk_vec_dot_bf16_f32_neon(size_t n, const void *weight_row, const float *acts);
void mk_vec_dot4_f32_f32_neon(size_t n, const void *w, const float *x, float *out);
void mk_vec_dot4_f16_f32_neon(size_t n, const void *w, const float *x, float *out);
void mk_vec_dot4_bf16_f32_neon(size_t n, const void *w, const float *x, float *out);

/* AArch64: NEON + dotprod + i8mm (csrc/arm/i8mm.c): the prefill GEMMs (contract of
 * mk_gemm_*_q8a_generic) with smmla on tiles of 4 weight rows × 4 tokens. */
void mk_gemm_q8_0_q8a_i8mm(size_t n, size_t nrows, const void *w, size_t row_bytes,
                           size_t ntok, const int8_t *qs, const float *d, const int32_t *s,
                           float *out, size_t ldo);
void mk_gemm_q4_0_q8a_i8mm(size_t n, size_t nrows, const void *w, size_t row_bytes,
                           size_t ntok, const int8_t *qs, const float *d, const int32_t *s,
                           float *out, size_t ldo);
/* The K-quants (n a multiple of 256), same tiles; each sub-block's row scales are decoded once
 * per group of 4 rows and reused by every token tile. */
void mk_gemm_q4_k_q8a_i8mm(size_t n, size_t nrows, const void *w, size_t row_bytes,
                           size_t ntok, const int8_t *qs, const float *d, const int32_t *s,
                           float *out, size_t ldo);
void mk_gemm_q5_k_q8a_i8mm(size_t n, size_t nrows, const void *w, size_t row_bytes,
                           size_t ntok, const int8_t *qs, const float *d, const int32_t *s,
                           float *out, size_t ldo);
void mk_gemm_q6_k_q8a_i8mm(size_t n, size_t nrows, const void *w, size_t row_bytes,
                           size_t ntok, const int8_t *qs, const float *d, const int32_t *s,
                           float *out, size_t ldo);

/* AArch64: NEON (csrc/arm/neon.c) and NEON + dotprod (csrc/arm/dotprod.c). */
float mk_vec_dot_q8_0_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s);
float mk_vec_dot_q4_0_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s);
float mk_vec_dot_q4_k_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s);
float mk_vec_dot_q5_k_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s);
float mk_vec_dot_q6_k_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s);
float mk_vec_dot_q8_0_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_q4_0_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_q4_k_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_q5_k_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_q6_k_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);

/* MLA decode attention over the latent cache (absorbed form): each cached position is a row
 * of `row` values (c_kv ‖ k_pe, f32 or IEEE half bits), and each head's query was projected
 * into the same space (q_lat ‖ q_pe, `row` floats per head, heads back to back).
 * scores: out[h*out_stride + j] = scale · Σ_{d<row} q[h*row + d] · c[j*row + d]
 *         for h < nq, j < nrows.
 * accum:  acc[h*dim + d] += Σ_{j<nrows} p[h*p_stride + j] · c[j*row + d]  for d < dim ≤ row.
 * Every ISA file has all four; results differ from generic only by float summation order. */
void mk_mla_scores_f32_generic(size_t nq, size_t row, const float *q, size_t nrows,
                               const float *c, float scale, float *out, size_t out_stride);
void mk_mla_scores_f16_generic(size_t nq, size_t row, const float *q, size_t nrows,
                               const uint16_t *c, float scale, float *out, size_t out_stride);
void mk_mla_accum_f32_generic(size_t nq, size_t dim, size_t row, const float *p,
                              size_t p_stride, size_t nrows, const float *c, float *acc);
void mk_mla_accum_f16_generic(size_t nq, size_t dim, size_t row, const float *p,
                              size_t p_stride, size_t nrows, const uint16_t *c, float *acc);
void mk_mla_scores_f32_avx2(size_t nq, size_t row, const float *q, size_t nrows,
                              const float *c, float scale, float *out, size_t out_stride);
void mk_mla_scores_f16_avx2(size_t nq, size_t row, const float *q, size_t nrows,
                              const uint16_t *c, float scale, float *out, size_t out_stride);
void mk_mla_accum_f32_avx2(size_t nq, size_t dim, size_t row, const float *p,
                             size_t p_stride, size_t nrows, const float *c, float *acc);
void mk_mla_accum_f16_avx2(size_t nq, size_t dim, size_t row, const float *p,
                             size_t p_stride, size_t nrows, const uint16_t *c, float *acc);
void mk_mla_scores_f32_avx512(size_t nq, size_t row, const float *q, size_t nrows,
                              const float *c, float scale, float *out, size_t out_stride);
void mk_mla_scores_f16_avx512(size_t nq, size_t row, const float *q, size_t nrows,
                              const uint16_t *c, float scale, float *out, size_t out_stride);
void mk_mla_accum_f32_avx512(size_t nq, size_t dim, size_t row, const float *p,
                             size_t p_stride, size_t nrows, const float *c, float *acc);
void mk_mla_accum_f16_avx512(size_t nq, size_t dim, size_t row, const float *p,
                             size_t p_stride, size_t nrows, const uint16_t *c, float *acc);
void mk_mla_scores_f32_neon(size_t nq, size_t row, const float *q, size_t nrows,
                              const float *c, float scale, float *out, size_t out_stride);
void mk_mla_scores_f16_neon(size_t nq, size_t row, const float *q, size_t nrows,
                              const uint16_t *c, float scale, float *out, size_t out_stride);
void mk_mla_accum_f32_neon(size_t nq, size_t dim, size_t row, const float *p,
                             size_t p_stride, size_t nrows, const float *c, float *acc);
void mk_mla_accum_f16_neon(size_t nq, size_t dim, size_t row, const float *p,
                             size_t p_stride, size_t nrows, const uint16_t *c, float *acc);

/* IEEE half / bfloat16 bits to f32. */
float mk_f16_to_f32(uint16_t h);
float mk_bf16_to_f32(uint16_t h);

/* ---- Q2_K and Q3_K (256-element super-blocks of 16 sub-blocks of 16; see
 * src/tensor/kquant.rs). Element e = 128h + 32g + l has the 2-bit code (qs[32h + l] >> 2g) & 3
 * and sub-block e/16. Q2_K = 84 bytes: 16 bytes scales (low nibble sc, high nibble m), 64
 * bytes qs, f16 d, f16 dmin; x = d·sc·q - dmin·m. Q3_K = 110 bytes: 32 bytes hmask, 64 bytes
 * qs, 12 bytes of 6-bit scales (sc - 32), f16 d; q = code - 4 when bit e/32 of hmask[e%32] is
 * 0, else code; x = d·sc·q. Against q8a, activation block 8b + j covers sub-blocks 2j, 2j+1
 * of super-block b (half-block sums are computed inside the kernels). ---- */
float mk_vec_dot_q2_k_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_q3_k_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_q2_k_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_q3_k_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_q2_k_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s);
float mk_vec_dot_q3_k_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s);
float mk_vec_dot_q2_k_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s);
float mk_vec_dot_q3_k_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s);
void mk_vec_dot4_q2_k_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out);
void mk_vec_dot4_q3_k_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out);
float mk_vec_dot_q2_k_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s);
float mk_vec_dot_q3_k_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s);
float mk_vec_dot_q2_k_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_q3_k_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);


/* Load-only low-bit types (csrc/generic/iquants.c; layouts in src/tensor/iquant.rs): IQ2_XXS
 * (66 bytes), IQ2_XS (74), IQ2_S (82), IQ3_XXS (98), IQ3_S (110), IQ1_S (50), IQ1_M (56),
 * TQ1_0 (54), TQ2_0 (66) per 256 elements (n a multiple of 256); MXFP4 17 bytes per 32,
 * NVFP4 36 per 64, Q1_0 18 per 128, Q2_0 18 per 64.
 * Codebook types index the grids of csrc/generic/iquant_grids.h. Against f32 and against q8a
 * activations (s unused: every type's codes are signed). */
float mk_vec_dot_iq2_xxs_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_iq2_xs_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_iq2_s_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_iq3_xxs_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_iq3_s_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_iq1_s_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_iq1_m_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_tq1_0_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_tq2_0_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_mxfp4_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_nvfp4_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_q1_0_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_q2_0_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_iq2_xxs_q8a_generic(size_t n, const void *w, const int8_t *qs,
                                     const float *d, const int32_t *s);
float mk_vec_dot_iq2_xs_q8a_generic(size_t n, const void *w, const int8_t *qs,
                                    const float *d, const int32_t *s);
float mk_vec_dot_iq2_s_q8a_generic(size_t n, const void *w, const int8_t *qs,
                                   const float *d, const int32_t *s);
float mk_vec_dot_iq3_xxs_q8a_generic(size_t n, const void *w, const int8_t *qs,
                                     const float *d, const int32_t *s);
float mk_vec_dot_iq3_s_q8a_generic(size_t n, const void *w, const int8_t *qs,
                                   const float *d, const int32_t *s);
float mk_vec_dot_iq1_s_q8a_generic(size_t n, const void *w, const int8_t *qs,
                                   const float *d, const int32_t *s);
float mk_vec_dot_iq1_m_q8a_generic(size_t n, const void *w, const int8_t *qs,
                                   const float *d, const int32_t *s);
float mk_vec_dot_tq1_0_q8a_generic(size_t n, const void *w, const int8_t *qs,
                                   const float *d, const int32_t *s);
float mk_vec_dot_tq2_0_q8a_generic(size_t n, const void *w, const int8_t *qs,
                                   const float *d, const int32_t *s);
float mk_vec_dot_mxfp4_q8a_generic(size_t n, const void *w, const int8_t *qs,
                                   const float *d, const int32_t *s);
float mk_vec_dot_nvfp4_q8a_generic(size_t n, const void *w, const int8_t *qs,
                                   const float *d, const int32_t *s);
float mk_vec_dot_q1_0_q8a_generic(size_t n, const void *w, const int8_t *qs,
                                  const float *d, const int32_t *s);
float mk_vec_dot_q2_0_q8a_generic(size_t n, const void *w, const int8_t *qs,
                                  const float *d, const int32_t *s);
/* x86-64 AVX2 + FMA + F16C versions (csrc/x86/iquants_avx2.c). */
float mk_vec_dot_tq1_0_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                const int32_t *s);
float mk_vec_dot_tq2_0_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                const int32_t *s);
float mk_vec_dot_iq2_xxs_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_iq3_xxs_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_iq2_xs_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_iq2_s_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_iq3_s_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_iq1_s_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_iq1_m_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_mxfp4_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_nvfp4_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                const int32_t *s);
float mk_vec_dot_q1_0_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s);
float mk_vec_dot_q2_0_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s);
/* Prefill GEMMs of the codebook i-quants (csrc/x86/iquants_avx2.c): out[t*ldo + r] = row r
 * (nrows rows of n elements, row_bytes apart) · activation row t (ntok q8a rows), each row
 * unpacked once per 64 tokens; results as the one-row kernels' up to float summation order. */
void mk_gemm_iq2_xxs_q8a_avx2(size_t n, size_t nrows, const void *w, size_t row_bytes, size_t ntok,
                           const int8_t *qs, const float *d, const int32_t *s, float *out, size_t ldo);
void mk_gemm_iq3_xxs_q8a_avx2(size_t n, size_t nrows, const void *w, size_t row_bytes, size_t ntok,
                           const int8_t *qs, const float *d, const int32_t *s, float *out, size_t ldo);
void mk_gemm_iq2_xs_q8a_avx2(size_t n, size_t nrows, const void *w, size_t row_bytes, size_t ntok,
                           const int8_t *qs, const float *d, const int32_t *s, float *out, size_t ldo);
void mk_gemm_iq2_s_q8a_avx2(size_t n, size_t nrows, const void *w, size_t row_bytes, size_t ntok,
                           const int8_t *qs, const float *d, const int32_t *s, float *out, size_t ldo);
void mk_gemm_iq3_s_q8a_avx2(size_t n, size_t nrows, const void *w, size_t row_bytes, size_t ntok,
                           const int8_t *qs, const float *d, const int32_t *s, float *out, size_t ldo);
void mk_gemm_iq1_s_q8a_avx2(size_t n, size_t nrows, const void *w, size_t row_bytes, size_t ntok,
                           const int8_t *qs, const float *d, const int32_t *s, float *out, size_t ldo);
void mk_gemm_iq1_m_q8a_avx2(size_t n, size_t nrows, const void *w, size_t row_bytes, size_t ntok,
                           const int8_t *qs, const float *d, const int32_t *s, float *out, size_t ldo);
/* AArch64 NEON + dotprod versions (csrc/arm/iquants_dotprod.c). */
float mk_vec_dot_iq2_xxs_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                     const int32_t *s);
float mk_vec_dot_iq3_xxs_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                     const int32_t *s);
float mk_vec_dot_iq1_s_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                     const int32_t *s);
float mk_vec_dot_tq1_0_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                     const int32_t *s);
float mk_vec_dot_tq2_0_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                     const int32_t *s);
float mk_vec_dot_iq2_xs_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                     const int32_t *s);
float mk_vec_dot_iq2_s_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                     const int32_t *s);
float mk_vec_dot_iq3_s_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                     const int32_t *s);
float mk_vec_dot_iq1_m_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                     const int32_t *s);
float mk_vec_dot_mxfp4_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                     const int32_t *s);
float mk_vec_dot_nvfp4_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                   const int32_t *s);
float mk_vec_dot_q1_0_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_q2_0_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
/* The same for AArch64 without dotprod (csrc/arm/iquants_neon.c: sdot emulated). */
float mk_vec_dot_iq2_xxs_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_iq3_xxs_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_iq1_s_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                                const int32_t *s);
float mk_vec_dot_tq1_0_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                                const int32_t *s);
float mk_vec_dot_tq2_0_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                                const int32_t *s);
float mk_vec_dot_iq2_xs_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s);
float mk_vec_dot_iq2_s_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                                const int32_t *s);
float mk_vec_dot_iq3_s_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                                const int32_t *s);
float mk_vec_dot_iq1_m_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                                const int32_t *s);
float mk_vec_dot_mxfp4_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                                const int32_t *s);
float mk_vec_dot_nvfp4_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                                const int32_t *s);
float mk_vec_dot_q1_0_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s);
float mk_vec_dot_q2_0_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s);
/* ---- Q4_1, Q5_0, Q5_1 (32-element blocks; byte j of the 16 nibble bytes holds element j low,
 * j+16 high, as Q4_0; the fifth bits are a little-endian u32 qh, bit i for element i).
 * Q4_1 = 20 bytes: f16 d, f16 m, 16 bytes nibbles; x = d·q + m. Q5_0 = 22 bytes: f16 d, qh,
 * nibbles; x = d·(q - 16). Q5_1 = 24 bytes: f16 d, f16 m, qh, nibbles; x = d·q + m.
 * IQ4_NL = 18 bytes: f16 d, 16 bytes nibbles (as Q4_0); x = d·kvalues[q] with the table
 * kvalues_iq4nl = {-127,-104,-83,-65,-49,-35,-22,-10,1,13,25,38,53,69,89,113}. IQ4_XS = 136
 * bytes per 256: f16 d, u16 scales_h, 4 bytes scales_l, 128 bytes nibbles; sub-block i of 32
 * has ls = (scales_l[i/2] >> 4(i%2)) & 15 | ((scales_h >> 2i) & 3) << 4 and its nibbles at
 * 16i (an IQ4_NL block's layout); x = d·(ls-32)·kvalues[q]. Against q8a, activation block b
 * is weight block b (IQ4_XS: sub-block j of super-block sb is block 8sb+j). ---- */
float mk_vec_dot_q4_1_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_q5_0_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_q5_1_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_iq4_nl_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_iq4_xs_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_q4_1_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_q5_0_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_q5_1_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_iq4_nl_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *d,
                                    const int32_t *s);
float mk_vec_dot_iq4_xs_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *d,
                                    const int32_t *s);
float mk_vec_dot_q4_1_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s);
float mk_vec_dot_q5_0_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s);
float mk_vec_dot_q5_1_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s);
float mk_vec_dot_iq4_nl_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s);
float mk_vec_dot_iq4_xs_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s);
float mk_vec_dot_q4_1_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s);
float mk_vec_dot_q5_0_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s);
float mk_vec_dot_q5_1_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s);
float mk_vec_dot_iq4_nl_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                   const int32_t *s);
float mk_vec_dot_iq4_xs_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                   const int32_t *s);
float mk_vec_dot_q4_1_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s);
float mk_vec_dot_q5_0_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s);
float mk_vec_dot_q5_1_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s);
float mk_vec_dot_iq4_nl_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s);
float mk_vec_dot_iq4_xs_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s);
float mk_vec_dot_q4_1_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_q5_0_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_q5_1_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_iq4_nl_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                    const int32_t *s);
float mk_vec_dot_iq4_xs_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                    const int32_t *s);
void mk_vec_dot4_q4_1_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out);
void mk_vec_dot4_q5_0_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out);
void mk_vec_dot4_q5_1_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out);
void mk_vec_dot4_iq4_nl_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                   const int32_t *s, float *out);
void mk_vec_dot4_iq4_xs_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                   const int32_t *s, float *out);

#ifdef __cplusplus
}
#endif

#endif
