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

/* Dot product of one stored weight row with an f32 activation vector. */
float mk_vec_dot_f32_f32_generic(size_t n, const float *w, const float *x);
float mk_vec_dot_f16_f32_generic(size_t n, const uint16_t *w, const float *x);
float mk_vec_dot_bf16_f32_generic(size_t n, const uint16_t *w, const float *x);
float mk_vec_dot_q8_0_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_q4_0_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_q4_k_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_q5_k_f32_generic(size_t n, const void *w, const float *x);
float mk_vec_dot_q6_k_f32_generic(size_t n, const void *w, const float *x);

/* 8-bit activations ("q8a"): a row of n floats (n a multiple of 32) quantized once per
 * matrix-vector product, per block of 32: qs[n] int8 with x ≈ d[b] * qs, d[n/32] f32 scales
 * (amax/127, so qs never holds -128) and s[n/32] = Σ qs of the block (Q4_0's -8 offset). */
void mk_quantize_row_q8a_generic(size_t n, const float *x, int8_t *qs, float *d, int32_t *s);

/* Weight row × q8a activations. Integer block sums are exact; the float result differs
 * from the generic one only by summation order. */
float mk_vec_dot_q8_0_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_q4_0_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
/* K-quants × q8a: sub-block j of super-block b is activation block 8b+j (Q4_K/Q5_K apply the
 * mins as dmin·m·s); Q6_K's 16-element sub-blocks are summed separately inside the kernel. */
float mk_vec_dot_q4_k_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_q5_k_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);
float mk_vec_dot_q6_k_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s);

/* x86-64: AVX2 + FMA + F16C (csrc/x86/avx2.c). */
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

/* IEEE half / bfloat16 bits to f32. */
float mk_f16_to_f32(uint16_t h);
float mk_bf16_to_f32(uint16_t h);

#ifdef __cplusplus
}
#endif

#endif
