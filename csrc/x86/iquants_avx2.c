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

/* The base-3 digit of every byte of q (a byte already multiplied by 3^m mod 256, as TQ1_0
 * stores digit m): (q·3) >> 8, i.e. [q ≥ 86] + [q ≥ 171], as bytes 0..2. */
static __m256i ternary_digits(__m256i q) {
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    const __m256i t1 = _mm256_set1_epi8((char)(85 ^ 0x80)), t2 = _mm256_set1_epi8((char)(170 ^ 0x80));
    __m256i qs = _mm256_xor_si256(q, flip); /* unsigned order as signed */
    return _mm256_sub_epi8(_mm256_setzero_si256(),
                           _mm256_add_epi8(_mm256_cmpgt_epi8(qs, t1), _mm256_cmpgt_epi8(qs, t2)));
}

/* x·3 per byte, mod 256. */
static __m256i times3(__m256i x) {
    return _mm256_add_epi8(_mm256_add_epi8(x, x), x);
}

/* TQ1_0: 48 bytes of five base-3 digits each (digit m of byte j < 32 is element 32m + j, of
 * byte 32 + j < 48 element 160 + 16m + j), 4 bytes of four digits (element 240 + 4m + j), f16 d
 * last; x = d·(digit - 1), so a 32-element block's sum is Σ digit·q - s. Digit m of a byte is
 * the top base-3 digit of byte·3^m mod 256: the powers come from adding a vector to itself. */
float mk_vec_dot_tq1_0_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *dx,
                                const int32_t *s) {
    const uint8_t *b = (const uint8_t *)w;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc = _mm256_setzero_ps();
    float acc_s = 0.0f;
    for (size_t sb = 0; sb < n / 256; sb++, b += 54) {
        const float d = f16le(b + 52);
        /* Blocks 0-4: digit m of bytes 0..31. Blocks 5-7: the 16 bytes 32..47 with their
         * digits (0,1), (2,3), then digit 4 beside the 4 qh bytes' digits 0-3. */
        __m256i q = _mm256_loadu_si256((const __m256i *)b);
        __m128i t = _mm_loadu_si128((const __m128i *)(b + 32));
        __m256i tail = _mm256_inserti128_si256(_mm256_castsi128_si256(t), t, 1);
        tail = _mm256_blend_epi32(tail, times3(tail), 0xf0); /* (t, 3t) */
        uint32_t h = u32le(b + 48);
        __m128i hv = _mm_set1_epi32((int)h);
        __m128i h3 = _mm_add_epi8(_mm_add_epi8(hv, hv), hv);
        __m128i h9 = _mm_add_epi8(_mm_add_epi8(h3, h3), h3);
        __m128i h27 = _mm_add_epi8(_mm_add_epi8(h9, h9), h9);
        __m128i hq = _mm_unpacklo_epi64(_mm_unpacklo_epi32(hv, h3), _mm_unpacklo_epi32(h9, h27));
        for (int blk8 = 0; blk8 < 8; blk8++, qs += 32) {
            __m256i digits;
            if (blk8 < 5) {
                digits = ternary_digits(q);
                q = times3(q);
            } else if (blk8 < 7) {
                digits = ternary_digits(tail);
                tail = times3(times3(tail));
            } else {
                /* tail is (81t, 243t) here: keep its low half, the qh digits above it. */
                digits = ternary_digits(
                    _mm256_inserti128_si256(tail, hq, 1));
            }
            const size_t blk = 8 * sb + (size_t)blk8;
            __m256i x = _mm256_loadu_si256((const __m256i *)qs);
            __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(digits, x), ones);
            float scale = d * dx[blk];
            acc = _mm256_fmadd_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(p), acc);
            acc_s -= scale * (float)s[blk];
        }
    }
    return hsum_ps(acc) + acc_s;
}

/* ---- The codebook i-quants: IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M ----
 * Each type gives two pieces, shared by its decode kernel and its prefill GEMM:
 * - T_factors(b, dx, lo, hi): the float factors of super-block b's 8 blocks, per 16-element
 *   half (lo: the block's first 16 elements, hi: the second; the same for types with one
 *   scale per 32), times dx[block] (the GEMM passes ones and multiplies per token);
 * - T_block(b, ib, mag, sgn): block ib's 32 weights as unsigned magnitudes (mag, ≤ 127) and
 *   ±1 sign bytes (sgn), so that Σ w·x = Σ maddubs(mag, sign(x, sgn)) exactly.
 * The block scales of a super-block are made in one vector, and IQ2_XXS/IQ2_XS/IQ3_XXS's
 * 7-bit sign fields come as ready ±1 bytes from mk_ksigns64. */

/* 32 bytes of -1 (bit set) or +1 from 4 sign bytes (byte 8l + j: bit j of byte l). */
static inline __attribute__((always_inline)) __m256i expand_signs_pm1(uint32_t signs4) {
    const __m256i spread = _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL,
                                             0x0101010101010101LL, 0x0000000000000000LL);
    const __m256i bits = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)signs4), spread);
    return _mm256_or_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, bits), bits), _mm256_set1_epi8(1));
}

/* ±1 bytes of four 7-bit ksigns fields (bits 7l..7l+6 of aux), field l in bytes 8l..8l+7. */
static inline __attribute__((always_inline)) __m256i ksigns_pm1(uint32_t aux) {
    return _mm256_set_epi64x((long long)mk_ksigns64[(aux >> 21) & 127], (long long)mk_ksigns64[(aux >> 14) & 127],
                             (long long)mk_ksigns64[(aux >> 7) & 127], (long long)mk_ksigns64[aux & 127]);
}

/* The 8 odd 32-bit words of 64 bytes at p (words 1, 3, ..., 15) in order: the aux words of
 * IQ2_XXS's 8-byte groups. */
static inline __attribute__((always_inline)) __m256i odd_words(const uint8_t *p) {
    const __m256 lo = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)p));
    const __m256 hi = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(p + 32)));
    /* (lo1 lo3 hi1 hi3 | lo5 lo7 hi5 hi7) → (lo1 lo3 lo5 lo7 hi1 hi3 hi5 hi7) */
    return _mm256_permute4x64_epi64(_mm256_castps_si256(_mm256_shuffle_ps(lo, hi, 0xdd)), 0xd8);
}

/* lo = hi = (ls · mul + add) · dmul · dx for the 8 blocks' integer scales ls. */
static inline __attribute__((always_inline)) void block_factors(__m256i ls, float mul, float add, float dmul,
                                                                const float *dx, float lo[8], float hi[8]) {
    const __m256 f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ls), _mm256_set1_ps(mul), _mm256_set1_ps(add));
    const __m256 v = _mm256_mul_ps(_mm256_mul_ps(f, _mm256_set1_ps(dmul)), _mm256_loadu_ps(dx));
    _mm256_storeu_ps(lo, v);
    _mm256_storeu_ps(hi, v);
}

/* Per 16-element half: lo/hi = (0.5 + nibble) · dmul · dx of 8 scale bytes (low nibble: the
 * block's first 16 elements, high: the second). */
static inline __attribute__((always_inline)) void nibble_factors(const uint8_t *sc, float dmul, const float *dx,
                                                                 float lo[8], float hi[8]) {
    const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)sc));
    const __m256 f = _mm256_mul_ps(_mm256_set1_ps(dmul), _mm256_loadu_ps(dx)), half = _mm256_set1_ps(0.5f);
    const __m256i m4 = _mm256_set1_epi32(15);
    _mm256_storeu_ps(lo, _mm256_mul_ps(_mm256_add_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v, m4)), half), f));
    _mm256_storeu_ps(hi, _mm256_mul_ps(_mm256_add_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v, 4)), half), f));
}

/* IQ2_XXS (66 bytes): f16 d, per 32 elements 4 grid indices (bytes) and a u32 with 4 × 7 sign
 * bits and the 4-bit scale; x = d·(0.5 + ls)·0.25 · grid · sign. */
static inline __attribute__((always_inline)) void iq2_xxs_factors(const uint8_t *b, const float *dx, float lo[8],
                                                                  float hi[8]) {
    block_factors(_mm256_srli_epi32(odd_words(b + 2), 28), 1.0f, 0.5f, f16le(b) * 0.25f, dx, lo, hi);
}
static inline __attribute__((always_inline)) void iq2_xxs_block(const uint8_t *b, int ib, __m256i *mag,
                                                                __m256i *sgn) {
    const uint8_t *g = b + 2 + 8 * ib;
    *mag = _mm256_set_epi64x((long long)mk_iq2xxs_grid[g[3]], (long long)mk_iq2xxs_grid[g[2]],
                             (long long)mk_iq2xxs_grid[g[1]], (long long)mk_iq2xxs_grid[g[0]]);
    *sgn = ksigns_pm1(u32le(g + 4));
}

/* IQ3_XXS (98 bytes): f16 d, per 32 elements 8 grid indices (4 values each), then per 32 a u32
 * with 4 × 7 sign bits and the scale; x = d·(0.5 + ls)·0.5 · grid · sign. */
static inline __attribute__((always_inline)) void iq3_xxs_factors(const uint8_t *b, const float *dx, float lo[8],
                                                                  float hi[8]) {
    block_factors(_mm256_srli_epi32(_mm256_loadu_si256((const __m256i *)(b + 66)), 28), 1.0f, 0.5f,
                  f16le(b) * 0.5f, dx, lo, hi);
}
static inline __attribute__((always_inline)) void iq3_xxs_block(const uint8_t *b, int ib, __m256i *mag,
                                                                __m256i *sgn) {
    const uint8_t *g = b + 2 + 8 * ib;
    *mag = _mm256_set_epi32((int)mk_iq3xxs_grid[g[7]], (int)mk_iq3xxs_grid[g[6]], (int)mk_iq3xxs_grid[g[5]],
                            (int)mk_iq3xxs_grid[g[4]], (int)mk_iq3xxs_grid[g[3]], (int)mk_iq3xxs_grid[g[2]],
                            (int)mk_iq3xxs_grid[g[1]], (int)mk_iq3xxs_grid[g[0]]);
    *sgn = ksigns_pm1(u32le(b + 66 + 4 * ib));
}

/* IQ2_XS (74 bytes): f16 d, 32 u16 (9-bit grid index, 7 sign bits), 4-bit scales per 16. */
static inline __attribute__((always_inline)) void iq2_xs_factors(const uint8_t *b, const float *dx, float lo[8],
                                                                 float hi[8]) {
    nibble_factors(b + 66, f16le(b) * 0.25f, dx, lo, hi);
}
static inline __attribute__((always_inline)) void iq2_xs_block(const uint8_t *b, int ib, __m256i *mag,
                                                               __m256i *sgn) {
    uint16_t q[4];
    memcpy(q, b + 2 + 8 * ib, sizeof q);
    *mag = _mm256_set_epi64x((long long)mk_iq2xs_grid[q[3] & 511], (long long)mk_iq2xs_grid[q[2] & 511],
                             (long long)mk_iq2xs_grid[q[1] & 511], (long long)mk_iq2xs_grid[q[0] & 511]);
    *sgn = _mm256_set_epi64x((long long)mk_ksigns64[q[3] >> 9], (long long)mk_ksigns64[q[2] >> 9],
                             (long long)mk_ksigns64[q[1] >> 9], (long long)mk_ksigns64[q[0] >> 9]);
}

/* IQ2_S (82 bytes): f16 d, 32 index low bytes, 32 sign bytes, 2 high index bits each (8
 * bytes), 4-bit scales per 16. */
static inline __attribute__((always_inline)) void iq2_s_factors(const uint8_t *b, const float *dx, float lo[8],
                                                                float hi[8]) {
    nibble_factors(b + 74, f16le(b) * 0.25f, dx, lo, hi);
}
static inline __attribute__((always_inline)) void iq2_s_block(const uint8_t *b, int ib, __m256i *mag,
                                                              __m256i *sgn) {
    const uint8_t *g = b + 2 + 4 * ib;
    const int h = b[66 + ib];
    *mag = _mm256_set_epi64x((long long)mk_iq2s_grid[g[3] | ((h << 2) & 0x300)],
                             (long long)mk_iq2s_grid[g[2] | ((h << 4) & 0x300)],
                             (long long)mk_iq2s_grid[g[1] | ((h << 6) & 0x300)],
                             (long long)mk_iq2s_grid[g[0] | ((h << 8) & 0x300)]);
    *sgn = expand_signs_pm1(u32le(b + 34 + 4 * ib));
}

/* IQ3_S (110 bytes): f16 d, 64 index low bytes, 8 bytes of 9th bits, 32 sign bytes, a 4-bit
 * scale per 32 (4 bytes, low nibble first); x = d·(1 + 2·ls) · grid · sign. */
static inline __attribute__((always_inline)) void iq3_s_factors(const uint8_t *b, const float *dx, float lo[8],
                                                                float hi[8]) {
    const __m256i shift = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    const __m256i ls =
        _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)u32le(b + 106)), shift), _mm256_set1_epi32(15));
    block_factors(ls, 2.0f, 1.0f, f16le(b), dx, lo, hi);
}
static inline __attribute__((always_inline)) void iq3_s_block(const uint8_t *b, int ib, __m256i *mag,
                                                              __m256i *sgn) {
    const uint8_t *g = b + 2 + 8 * ib;
    const int h = b[66 + ib];
    *mag = _mm256_set_epi32(
        (int)mk_iq3s_grid[g[7] | ((h << 1) & 0x100)], (int)mk_iq3s_grid[g[6] | ((h << 2) & 0x100)],
        (int)mk_iq3s_grid[g[5] | ((h << 3) & 0x100)], (int)mk_iq3s_grid[g[4] | ((h << 4) & 0x100)],
        (int)mk_iq3s_grid[g[3] | ((h << 5) & 0x100)], (int)mk_iq3s_grid[g[2] | ((h << 6) & 0x100)],
        (int)mk_iq3s_grid[g[1] | ((h << 7) & 0x100)], (int)mk_iq3s_grid[g[0] | ((h << 8) & 0x100)]);
    *sgn = expand_signs_pm1(u32le(b + 74 + 4 * ib));
}

/* IQ1 codes in eighths, 8·g + δ (g in {-1, 0, 1} from the grid, δ = ±1 per byte), as in the
 * generic kernel: |code| ≤ 9 and never 0, so the code is its own sign. */
static inline __attribute__((always_inline)) void iq1_codes(__m256i g, __m256i delta, __m256i *mag, __m256i *sgn) {
    const __m256i code = _mm256_add_epi8(_mm256_sign_epi8(_mm256_set1_epi8(8), g), delta);
    *mag = _mm256_abs_epi8(code);
    *sgn = code;
}

/* IQ1_S (50 bytes): f16 d, 32 index low bytes, per 32 elements a u16 with 4 × 3 high index
 * bits, the scale (bits 12-14) and the delta's sign (bit 15); x = d·(2·ls + 1) · (g ± 1/8). */
static inline __attribute__((always_inline)) void iq1_s_factors(const uint8_t *b, const float *dx, float lo[8],
                                                                float hi[8]) {
    const __m256i h8 = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(b + 34)));
    const __m256i ls = _mm256_and_si256(_mm256_srli_epi32(h8, 12), _mm256_set1_epi32(7));
    block_factors(ls, 2.0f, 1.0f, f16le(b) * 0.125f, dx, lo, hi);
}
static inline __attribute__((always_inline)) void iq1_s_block(const uint8_t *b, int ib, __m256i *mag,
                                                              __m256i *sgn) {
    const uint8_t *g = b + 2 + 4 * ib;
    uint16_t h;
    memcpy(&h, b + 34 + 2 * ib, sizeof h);
    const __m256i grid = _mm256_set_epi64x((long long)mk_iq1s_grid[g[3] | ((h >> 1) & 0x700)],
                                           (long long)mk_iq1s_grid[g[2] | ((h << 2) & 0x700)],
                                           (long long)mk_iq1s_grid[g[1] | ((h << 5) & 0x700)],
                                           (long long)mk_iq1s_grid[g[0] | ((h << 8) & 0x700)]);
    iq1_codes(grid, _mm256_set1_epi8(h & 0x8000 ? -1 : 1), mag, sgn);
}

/* IQ1_M (56 bytes): 32 index low bytes, a nibble per index (3 high bits, the delta's sign),
 * 3-bit scales per 16 elements in 4 u16 whose top nibbles also hold the f16 d. */
static inline __attribute__((always_inline)) void iq1_m_factors(const uint8_t *b, const float *dx, float lo[8],
                                                                float hi[8]) {
    uint16_t sc[4];
    memcpy(sc, b + 48, sizeof sc);
    const uint16_t dh = (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
    /* block ib's two 3-bit scales: bits 6·(ib % 2) and 6·(ib % 2) + 3 of u16 ib / 2 */
    const __m128i w4 = _mm_loadl_epi64((const __m128i *)(b + 48));
    const __m256i v = _mm256_srlv_epi32(_mm256_cvtepu16_epi32(_mm_unpacklo_epi16(w4, w4)),
                                        _mm256_setr_epi32(0, 6, 0, 6, 0, 6, 0, 6));
    const __m256i m3 = _mm256_set1_epi32(7);
    const __m256 f = _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(dh) * 0.125f), _mm256_loadu_ps(dx));
    const __m256 two = _mm256_set1_ps(2.0f), one = _mm256_set1_ps(1.0f);
    const __m256 l = _mm256_cvtepi32_ps(_mm256_and_si256(v, m3));
    const __m256 h = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(v, 3), m3));
    _mm256_storeu_ps(lo, _mm256_mul_ps(_mm256_fmadd_ps(l, two, one), f));
    _mm256_storeu_ps(hi, _mm256_mul_ps(_mm256_fmadd_ps(h, two, one), f));
}
static inline __attribute__((always_inline)) void iq1_m_block(const uint8_t *b, int ib, __m256i *mag,
                                                              __m256i *sgn) {
    static const long long pm[2] = {0x0101010101010101LL, -1LL}; /* δ bytes: +1, -1 */
    const uint8_t *g = b + 4 * ib;
    const int h0 = b[32 + 2 * ib], h1 = b[33 + 2 * ib];
    const __m256i grid = _mm256_set_epi64x((long long)mk_iq1s_grid[g[3] | ((h1 << 4) & 0x700)],
                                           (long long)mk_iq1s_grid[g[2] | ((h1 << 8) & 0x700)],
                                           (long long)mk_iq1s_grid[g[1] | ((h0 << 4) & 0x700)],
                                           (long long)mk_iq1s_grid[g[0] | ((h0 << 8) & 0x700)]);
    iq1_codes(grid, _mm256_set_epi64x(pm[(h1 >> 7) & 1], pm[(h1 >> 3) & 1], pm[(h0 >> 7) & 1], pm[(h0 >> 3) & 1]),
              mag, sgn);
}

/* lo in lanes 0-3, hi in lanes 4-7 (lanes 0-3 of a block's int32 sums cover its first 16
 * elements); one broadcast where the type has one scale per 32. */
static inline __attribute__((always_inline)) __m256 half_factors(int per16, const float *lo, const float *hi) {
    if (!per16) return _mm256_broadcast_ss(lo);
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_broadcast_ss(lo)), _mm_broadcast_ss(hi), 1);
}

static inline __attribute__((always_inline)) __m256i iq_isum(__m256i mag, __m256i sgn, const int8_t *x) {
    const __m256i q = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)x), sgn);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(mag, q), _mm256_set1_epi16(1));
}

/* Prefill: a row's super-blocks are unpacked IQ_GSB at a time (mag, sgn and the factor
 * vectors of their blocks, ~10 KB on the stack), then every token of a slice of IQ_GTOK meets
 * them two at a time: per token and block one vpsignb, vpmaddubsw, vpmaddwd, conversion and
 * FMA (the decode kernel spends ~20-30 operations a block on the lookups). */
#define IQ_GSB 8
#define IQ_GTOK 64

#define IQ_KERNELS(T, BYTES, PER16)                                                                           \
    float mk_vec_dot_##T##_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *dx,               \
                                    const int32_t *s) {                                                       \
        (void)s;                                                                                              \
        const uint8_t *b = (const uint8_t *)w;                                                                \
        __m256 acc = _mm256_setzero_ps();                                                                     \
        float lo[8], hi[8];                                                                                   \
        for (size_t sb = 0; sb < n / 256; sb++, b += BYTES, dx += 8) {                                        \
            T##_factors(b, dx, lo, hi);                                                                       \
            for (int ib = 0; ib < 8; ib++, qs += 32) {                                                        \
                __m256i mag, sgn;                                                                             \
                T##_block(b, ib, &mag, &sgn);                                                                 \
                acc = _mm256_fmadd_ps(half_factors(PER16, lo + ib, hi + ib),                                  \
                                      _mm256_cvtepi32_ps(iq_isum(mag, sgn, qs)), acc);                        \
            }                                                                                                 \
        }                                                                                                     \
        return hsum_ps(acc);                                                                                  \
    }                                                                                                         \
    void mk_gemm_##T##_q8a_avx2(size_t n, size_t nrows, const void *w, size_t row_bytes, size_t ntok,         \
                                const int8_t *qs, const float *d, const int32_t *s, float *out, size_t ldo) { \
        (void)s;                                                                                              \
        static const float ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};                                                \
        const size_t nb = n / 32, nsb = n / 256;                                                              \
        __m256i mag[8 * IQ_GSB], sgn[8 * IQ_GSB];                                                             \
        __m256 fac[8 * IQ_GSB], acc[IQ_GTOK];                                                                 \
        float lo[8], hi[8];                                                                                   \
        for (size_t r = 0; r < nrows; r++) {                                                                  \
            const uint8_t *row = (const uint8_t *)w + r * row_bytes;                                          \
            for (size_t t0 = 0; t0 < ntok; t0 += IQ_GTOK) {                                                   \
                const size_t tn = ntok - t0 < IQ_GTOK ? ntok - t0 : IQ_GTOK;                                  \
                for (size_t t = 0; t < tn; t++) acc[t] = _mm256_setzero_ps();                                 \
                for (size_t sb0 = 0; sb0 < nsb; sb0 += IQ_GSB) {                                              \
                    const size_t kn = 8 * (nsb - sb0 < IQ_GSB ? nsb - sb0 : IQ_GSB);                          \
                    for (size_t k = 0; k < kn; k += 8) {                                                      \
                        const uint8_t *b = row + (sb0 + k / 8) * BYTES;                                       \
                        T##_factors(b, ones, lo, hi);                                                         \
                        for (int ib = 0; ib < 8; ib++) {                                                      \
                            T##_block(b, ib, mag + k + ib, sgn + k + ib);                                     \
                            fac[k + ib] = half_factors(PER16, lo + ib, hi + ib);                              \
                        }                                                                                     \
                    }                                                                                         \
                    size_t t = 0;                                                                             \
                    for (; t + 2 <= tn; t += 2) {                                                             \
                        const int8_t *xa = qs + (t0 + t) * n + 256 * sb0, *xb = xa + n;                       \
                        const float *da = d + (t0 + t) * nb + 8 * sb0, *db = da + nb;                         \
                        __m256 a = acc[t], c = acc[t + 1];                                                    \
                        for (size_t k = 0; k < kn; k++) {                                                     \
                            a = _mm256_fmadd_ps(_mm256_mul_ps(fac[k], _mm256_broadcast_ss(da + k)),           \
                                                _mm256_cvtepi32_ps(iq_isum(mag[k], sgn[k], xa + 32 * k)), a); \
                            c = _mm256_fmadd_ps(_mm256_mul_ps(fac[k], _mm256_broadcast_ss(db + k)),           \
                                                _mm256_cvtepi32_ps(iq_isum(mag[k], sgn[k], xb + 32 * k)), c); \
                        }                                                                                     \
                        acc[t] = a;                                                                           \
                        acc[t + 1] = c;                                                                       \
                    }                                                                                         \
                    for (; t < tn; t++) {                                                                     \
                        const int8_t *xa = qs + (t0 + t) * n + 256 * sb0;                                     \
                        const float *da = d + (t0 + t) * nb + 8 * sb0;                                        \
                        __m256 a = acc[t];                                                                    \
                        for (size_t k = 0; k < kn; k++)                                                       \
                            a = _mm256_fmadd_ps(_mm256_mul_ps(fac[k], _mm256_broadcast_ss(da + k)),           \
                                                _mm256_cvtepi32_ps(iq_isum(mag[k], sgn[k], xa + 32 * k)), a); \
                        acc[t] = a;                                                                           \
                    }                                                                                         \
                }                                                                                             \
                for (size_t t = 0; t < tn; t++) out[(t0 + t) * ldo + r] = hsum_ps(acc[t]);                    \
            }                                                                                                 \
        }                                                                                                     \
    }

IQ_KERNELS(iq2_xxs, 66, 0)
IQ_KERNELS(iq3_xxs, 98, 0)
IQ_KERNELS(iq2_xs, 74, 1)
IQ_KERNELS(iq2_s, 82, 1)
IQ_KERNELS(iq3_s, 110, 0)
IQ_KERNELS(iq1_s, 50, 0)
IQ_KERNELS(iq1_m, 56, 1)

/* Σ w·q of 32 signed bytes (|w| ≤ 127, q in [-127, 127]) as 8 int32 lanes, lane k covering
 * bytes 4k..4k+3 (so lanes 0-3 are the first 16 elements, lanes 4-7 the second). */
static __m256i sdot32(__m256i w, __m256i q) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(q, w)),
                             _mm256_set1_epi16(1));
}

/* MXFP4: 32-element blocks of an E8M0 exponent and 16 nibble bytes (element j low, j + 16
 * high) indexing the doubled E2M1 values; x = 2^(e-128) · v. */
float mk_vec_dot_mxfp4_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *dx,
                                const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    const __m128i values = _mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);
    const __m128i m4 = _mm_set1_epi8(15);
    __m256 acc = _mm256_setzero_ps();
    for (size_t blk = 0; blk < n / 32; blk++, b += 17, qs += 32) {
        __m128i bytes = _mm_loadu_si128((const __m128i *)(b + 1));
        __m128i lo = _mm_shuffle_epi8(values, _mm_and_si128(bytes, m4));
        __m128i hi = _mm_shuffle_epi8(values, _mm_and_si128(_mm_srli_epi16(bytes, 4), m4));
        __m256i p = sdot32(_mm256_set_m128i(hi, lo), _mm256_loadu_si256((const __m256i *)qs));
        uint32_t bits = b[0] < 2 ? 0x00200000u << b[0] : (uint32_t)(b[0] - 1) << 23;
        float e;
        memcpy(&e, &bits, sizeof e);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(e * dx[blk]), _mm256_cvtepi32_ps(p), acc);
    }
    return hsum_ps(acc);
}

/* NVFP4's four UE4M3 scale bytes (a u32), halved, as csrc/generic/fp4.h's mk_ue4m3_half:
 * with b = byte & 0x7F, exponent bits e = b >> 3 ≥ 1 give the float bits (b + 8·119) << 20
 * (exponent e + 119, mantissa m << 20); e = 0 gives m / 1024; the byte 0x7F gives 0. */
static __m128 ue4m3_half4(uint32_t bytes) {
    __m128i b = _mm_and_si128(_mm_cvtepu8_epi32(_mm_cvtsi32_si128((int)bytes)), _mm_set1_epi32(0x7F));
    __m128 normal = _mm_castsi128_ps(_mm_slli_epi32(_mm_add_epi32(b, _mm_set1_epi32(8 * 119)), 20));
    __m128 sub = _mm_mul_ps(_mm_cvtepi32_ps(b), _mm_set1_ps(1.0f / 1024.0f));
    __m128 is_sub = _mm_castsi128_ps(_mm_cmplt_epi32(b, _mm_set1_epi32(8)));
    __m128 v = _mm_blendv_ps(normal, sub, is_sub);
    __m128i nan = _mm_cmpeq_epi32(_mm_cvtepu8_epi32(_mm_cvtsi32_si128((int)bytes)), _mm_set1_epi32(0x7F));
    return _mm_andnot_ps(_mm_castsi128_ps(nan), v);
}

/* NVFP4: 64-element blocks of 4 UE4M3 scale bytes (one per 16 elements) and 32 nibble bytes
 * (byte 8s + j: element 16s + j low, 16s + 8 + j high) indexing the doubled E2M1 values.
 * Per 32 elements: the 16 bytes of two sub-blocks give lo = values of the low nibbles and
 * hi = of the high ones; element order is lo[0..8] hi[0..8] lo[8..16] hi[8..16]. */
float mk_vec_dot_nvfp4_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *dx,
                                const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    const __m128i values = _mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);
    const __m128i m4 = _mm_set1_epi8(15);
    __m256 acc = _mm256_setzero_ps();
    const __m256i lo_pair = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    const __m256i hi_pair = _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3);
    for (size_t blk = 0; blk < n / 64; blk++, b += 36) {
        __m256 sc = _mm256_castps128_ps256(ue4m3_half4(u32le(b)));
        for (int h = 0; h < 2; h++, qs += 32) {
            __m128i bytes = _mm_loadu_si128((const __m128i *)(b + 4 + 16 * h));
            __m128i lo = _mm_shuffle_epi8(values, _mm_and_si128(bytes, m4));
            __m128i hi = _mm_shuffle_epi8(values, _mm_and_si128(_mm_srli_epi16(bytes, 4), m4));
            __m256i code = _mm256_set_m128i(_mm_unpackhi_epi64(lo, hi), _mm_unpacklo_epi64(lo, hi));
            __m256i p = sdot32(code, _mm256_loadu_si256((const __m256i *)qs));
            __m256 scale = _mm256_mul_ps(_mm256_permutevar8x32_ps(sc, h ? hi_pair : lo_pair),
                                         _mm256_set1_ps(dx[2 * blk + h]));
            acc = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(p), acc);
        }
    }
    return hsum_ps(acc);
}

/* Q1_0: 128-element blocks of an f16 d and 16 bytes of sign bits (element j: bit j%8 of
 * byte j/8; set: +d, clear: -d). Per 32 elements the 4 bytes are spread to one byte per
 * element, and the activations negated where the bit is clear. */
float mk_vec_dot_q1_0_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *dx,
                               const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                            2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    const __m256i one = _mm256_set1_epi8(1);
    const __m256i ones16 = _mm256_set1_epi16(1);
    __m256 acc = _mm256_setzero_ps();
    for (size_t blk = 0; blk < n / 128; blk++, b += 18) {
        __m256 d = _mm256_set1_ps(f16le(b));
        for (int k = 0; k < 4; k++, qs += 32) {
            __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)u32le(b + 2 + 4 * k)), spread);
            __m256i clear = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), _mm256_setzero_si256());
            __m256i sq = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)qs),
                                          _mm256_or_si256(clear, one));
            __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(one, sq), ones16);
            acc = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(dx[4 * blk + k])),
                                  _mm256_cvtepi32_ps(p), acc);
        }
    }
    return hsum_ps(acc);
}

/* Q2_0: 64-element blocks of an f16 d and 16 bytes of 2-bit codes (element j: bits 2(j%4)
 * of byte j/4); x = d·(code - 1), so a 32-element sum is Σ code·q - s. Per 32 elements (8
 * bytes), 32-bit lane t holds bytes 4(t/4).. shifted right by 2(t%4): its byte i is the
 * code of element 16(t/4) + 4i + t%4, a 4×4 transpose within each 16 that the activations
 * are shuffled by to match. */
float mk_vec_dot_q2_0_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *dx,
                               const int32_t *s) {
    const uint8_t *b = (const uint8_t *)w;
    const __m256i shifts = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    const __m256i transpose = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
                                               0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m256i three = _mm256_set1_epi8(3);
    const __m256i ones16 = _mm256_set1_epi16(1);
    __m256 acc = _mm256_setzero_ps();
    float acc_s = 0.0f;
    for (size_t blk = 0; blk < n / 64; blk++, b += 18) {
        float d = f16le(b);
        __m256i all = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(b + 2)));
        for (int h = 0; h < 2; h++, qs += 32) {
            const __m256i pick = _mm256_setr_epi32(2 * h, 2 * h, 2 * h, 2 * h, 2 * h + 1, 2 * h + 1,
                                                   2 * h + 1, 2 * h + 1);
            __m256i code = _mm256_and_si256(
                _mm256_srlv_epi32(_mm256_permutevar8x32_epi32(all, pick), shifts), three);
            __m256i q = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)qs), transpose);
            __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(code, q), ones16);
            float scale = d * dx[2 * blk + h];
            acc = _mm256_fmadd_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(p), acc);
            acc_s -= scale * (float)s[2 * blk + h];
        }
    }
    return hsum_ps(acc) + acc_s;
}
