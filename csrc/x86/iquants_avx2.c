/* AVX2 one-row kernels of low-bit types (layouts in src/tensor/iquant.rs) against q8a
 * activations. Integer block sums are exact; results differ from the generic kernels
 * (csrc/generic/iquants.c) only by float summation order. */
#include "../generic/iquant_grids.h"
#include "moela_kernels.h"

#include <immintrin.h>
#include <string.h>

static uint32_t u32le(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static float f16le(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return _cvtsh_ss(h);
}

/* TQ2_0: 64 bytes of 2-bit codes (element 128c + 32l + j: bits 2l.. of byte 32c + j), f16 d
 * last; x = d·(code - 1), so a block's sum is Σ code·q - s. */
float mk_vec_dot_tq2_0_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *dx,
                                const int32_t *s) {
    const uint8_t *b = (const uint8_t *)w;
    const __m256i three = _mm256_set1_epi8(3);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc = _mm256_setzero_ps();
    float acc_s = 0.0f;
    for (size_t sb = 0; sb < n / 256; sb++, b += 66) {
        float d = f16le(b + 64);
        for (int c = 0; c < 2; c++) {
            __m256i bytes = _mm256_loadu_si256((const __m256i *)(b + 32 * c));
            for (int l = 0; l < 4; l++, qs += 32) {
                size_t blk = 8 * sb + 4 * c + l;
                __m256i code = _mm256_and_si256(_mm256_srli_epi16(bytes, 2 * l), three);
                __m256i q = _mm256_loadu_si256((const __m256i *)qs);
                __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(code, q), ones);
                float scale = d * dx[blk];
                acc = _mm256_fmadd_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(p), acc);
                acc_s -= scale * (float)s[blk];
            }
        }
    }
    return hsum_ps(acc) + acc_s;
}

/* 32 bytes of 0xff (negative) or 0x00 from 4 sign bytes (byte 8l + j: bit j of byte l). */
static __m256i expand_signs(uint32_t signs4) {
    const __m256i spread = _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL,
                                             0x0101010101010101LL, 0x0000000000000000LL);
    const __m256i bits = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)signs4), spread);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bits), bits);
}

/* IQ2_XXS: per 32 elements 4 grid indices (bytes) and a u32 with 4 × 7 sign bits and the
 * 4-bit scale; x = d·(0.5 + ls)·0.25 · grid · sign. */
float mk_vec_dot_iq2_xxs_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *dx,
                                  const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i one8 = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    for (size_t sb = 0; sb < n / 256; sb++, b += 66) {
        float d = f16le(b);
        for (int ib = 0; ib < 8; ib++, qs += 32) {
            const uint8_t *g = b + 2 + 8 * ib;
            uint32_t aux = u32le(g + 4);
            __m256i grid = _mm256_set_epi64x(
                (long long)mk_iq2xxs_grid[g[3]], (long long)mk_iq2xxs_grid[g[2]],
                (long long)mk_iq2xxs_grid[g[1]], (long long)mk_iq2xxs_grid[g[0]]);
            uint32_t signs4 = (uint32_t)mk_ksigns[aux & 127] |
                              ((uint32_t)mk_ksigns[(aux >> 7) & 127] << 8) |
                              ((uint32_t)mk_ksigns[(aux >> 14) & 127] << 16) |
                              ((uint32_t)mk_ksigns[(aux >> 21) & 127] << 24);
            __m256i sign = _mm256_or_si256(expand_signs(signs4), one8); /* -1 or +1 */
            __m256i q = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)qs), sign);
            __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(grid, q), ones);
            float db = d * (0.5f + (float)(aux >> 28)) * 0.25f;
            acc = _mm256_fmadd_ps(_mm256_set1_ps(db * dx[8 * sb + ib]), _mm256_cvtepi32_ps(p),
                                  acc);
        }
    }
    return hsum_ps(acc);
}
