/* AVX-512 (F, BW, VL, DQ) + VNNI kernels (built with those flags; called only when the CPU has
 * them). Two blocks per 512-bit register; vpdpbusd does the u8 × s8 products without
 * saturation. Same contracts as the generic ones in moela_kernels.h. */
#include "moela_kernels.h"

#include <immintrin.h>
#include <string.h>

static inline float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

static inline float hsum256(__m256 v) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* Lanes 0-7 = a, lanes 8-15 = b. */
static inline __m512 two_scales(float a, float b) {
    return _mm512_insertf32x8(_mm512_set1_ps(a), _mm256_set1_ps(b), 1);
}

static inline __m256i unpack_q4(const uint8_t *q) {
    __m128i raw = _mm_loadu_si128((const __m128i *)q);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

float mk_vec_dot_q8_0_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    __m512 acc = _mm512_setzero_ps();
    size_t nb = n / 32, i = 0;
    for (; i + 1 < nb; i += 2, b += 68) {
        /* software prefetch as in avx512vbmi.c: more DRAM lines in flight than the hardware
         * prefetchers keep for one stream */
        _mm_prefetch((const char *)b + 2048, _MM_HINT_T0);
        _mm_prefetch((const char *)b + 2048 + 64, _MM_HINT_T0);
        __m512i wv = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(b + 2))),
            _mm256_loadu_si256((const __m256i *)(b + 36)), 1);
        __m512i xv = _mm512_loadu_si512((const void *)(qs + 32 * i));
        /* |w| (as unsigned) × x with the sign of w moved onto x. */
        __mmask64 neg = _mm512_movepi8_mask(wv);
        __m512i xs = _mm512_mask_sub_epi8(xv, neg, _mm512_setzero_si512(), xv);
        __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(wv), xs);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p),
                              two_scales(f16_at(b) * d[i], f16_at(b + 34) * d[i + 1]), acc);
    }
    float sum = _mm512_reduce_add_ps(acc);
    for (; i < nb; i++, b += 34) {
        __m256i wv = _mm256_loadu_si256((const __m256i *)(b + 2));
        __m256i xv = _mm256_loadu_si256((const __m256i *)(qs + 32 * i));
        __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(wv),
                                        _mm256_sign_epi8(xv, wv));
        __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(f16_at(b) * d[i]));
        sum += hsum256(f);
    }
    return sum;
}

/* Lanes 0-7 = a, lanes 8-15 = b. */
static inline __m512i two_ints(int32_t a, int32_t b) {
    return _mm512_inserti32x8(_mm512_set1_epi32(a), _mm256_set1_epi32(b), 1);
}

/* Σ (q-8)·x over a block = Σ q·x - 8·s: subtracting s from each of the block's 8 int32 lanes
 * removes the offset inside the integer sum, so no scalar correction chain is needed. */
float mk_vec_dot_q4_0_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s) {
    const uint8_t *b = (const uint8_t *)w;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    size_t nb = n / 32, i = 0;
    for (; i + 3 < nb; i += 4, b += 72) {
        __m512i nib0 = _mm512_inserti64x4(_mm512_castsi256_si512(unpack_q4(b + 2)),
                                          unpack_q4(b + 20), 1);
        __m512i nib1 = _mm512_inserti64x4(_mm512_castsi256_si512(unpack_q4(b + 38)),
                                          unpack_q4(b + 56), 1);
        __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), nib0,
                                         _mm512_loadu_si512((const void *)(qs + 32 * i)));
        __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), nib1,
                                         _mm512_loadu_si512((const void *)(qs + 32 * i + 64)));
        p0 = _mm512_sub_epi32(p0, two_ints(s[i], s[i + 1]));
        p1 = _mm512_sub_epi32(p1, two_ints(s[i + 2], s[i + 3]));
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0),
                               two_scales(f16_at(b) * d[i], f16_at(b + 18) * d[i + 1]), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1),
                               two_scales(f16_at(b + 36) * d[i + 2], f16_at(b + 54) * d[i + 3]),
                               acc1);
    }
    for (; i + 1 < nb; i += 2, b += 36) {
        __m512i nib = _mm512_inserti64x4(_mm512_castsi256_si512(unpack_q4(b + 2)),
                                         unpack_q4(b + 20), 1);
        __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), nib,
                                        _mm512_loadu_si512((const void *)(qs + 32 * i)));
        p = _mm512_sub_epi32(p, two_ints(s[i], s[i + 1]));
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p),
                               two_scales(f16_at(b) * d[i], f16_at(b + 18) * d[i + 1]), acc0);
    }
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    for (; i < nb; i++, b += 18) {
        __m256i xv = _mm256_loadu_si256((const __m256i *)(qs + 32 * i));
        __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), unpack_q4(b + 2), xv);
        p = _mm256_sub_epi32(p, _mm256_set1_epi32(s[i]));
        __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(f16_at(b) * d[i]));
        sum += hsum256(f);
    }
    return sum;
}

/* Four activation rows at once (prefill): each weight block is loaded and unpacked once and
 * multiplied with the same block of 4 token rows. Token r's activations start at
 * qs + r*n, d + r*n/32, s + r*n/32. Writes out[0..4]. */
static inline float reduce_acc(__m512 a) { return _mm512_reduce_add_ps(a); }

void mk_vec_dot4_q4_0_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out) {
    const uint8_t *b = (const uint8_t *)w;
    const size_t nb = n / 32;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    size_t i = 0;
    for (; i + 1 < nb; i += 2, b += 36) {
        float dw0 = f16_at(b), dw1 = f16_at(b + 18);
        __m512i nib = _mm512_inserti64x4(_mm512_castsi256_si512(unpack_q4(b + 2)),
                                         unpack_q4(b + 20), 1);
        for (int r = 0; r < 4; r++) {
            const size_t o = r * nb + i;
            __m512i xv = _mm512_loadu_si512((const void *)(qs + r * n + 32 * i));
            __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), nib, xv);
            p = _mm512_sub_epi32(p, two_ints(s[o], s[o + 1]));
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), two_scales(dw0 * d[o], dw1 * d[o + 1]),
                                     acc[r]);
        }
    }
    for (int r = 0; r < 4; r++) {
        float sum = reduce_acc(acc[r]);
        if (i < nb) {
            /* odd block count: the last block through the one-row kernel */
            sum += mk_vec_dot_q4_0_q8a_avx512(32, b, qs + r * n + 32 * i, d + r * nb + i,
                                              s + r * nb + i);
        }
        out[r] = sum;
    }
}

void mk_vec_dot4_q8_0_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    const size_t nb = n / 32;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    size_t i = 0;
    for (; i + 1 < nb; i += 2, b += 68) {
        float dw0 = f16_at(b), dw1 = f16_at(b + 34);
        __m512i wv = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(b + 2))),
            _mm256_loadu_si256((const __m256i *)(b + 36)), 1);
        __mmask64 neg = _mm512_movepi8_mask(wv);
        __m512i aw = _mm512_abs_epi8(wv);
        for (int r = 0; r < 4; r++) {
            const size_t o = r * nb + i;
            __m512i xv = _mm512_loadu_si512((const void *)(qs + r * n + 32 * i));
            __m512i xs = _mm512_mask_sub_epi8(xv, neg, _mm512_setzero_si512(), xv);
            __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), aw, xs);
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), two_scales(dw0 * d[o], dw1 * d[o + 1]),
                                     acc[r]);
        }
    }
    for (int r = 0; r < 4; r++) {
        float sum = reduce_acc(acc[r]);
        if (i < nb) {
            sum += mk_vec_dot_q8_0_q8a_avx512(32, b, qs + r * n + 32 * i, d + r * nb + i,
                                              s + r * nb + i);
        }
        out[r] = sum;
    }
}

/* ---- K-quants: two 32-element sub-blocks per 512-bit register (vpdpbusd) ----
 * The per-sub-block float factors (d·sc_j·dx_j) of a super-block are built once as one vector
 * and spread to the lanes of each vpdpbusd result with one permute, so the float work per
 * 64 weights is permute + convert + fma; the weights are prefetched KQ_PF bytes ahead (as the
 * Q4_0/Q8_0 kernels do: the hardware prefetchers alone keep too few lines in flight). */

#define KQ_PF 2048

/* The 6-bit scales and mins of a Q4_K/Q5_K super-block (12 bytes at p) as two 8-byte
 * vectors: *sc = scales 0..7, *m = mins 0..7 (docs: sc_j = p[j] & 63, m_j = p[j+4] & 63 for
 * j < 4; for j ≥ 4 the low 4 bits come from p[j+4] and the high 2 bits from the top bits of
 * p[j-4] / p[j]). Done on 32-bit words, four bytes at a time. */
static inline void k_scales_mins(const uint8_t *p, __m128i *sc, __m128i *m) {
    uint32_t u0, u1, u2;
    memcpy(&u0, p, 4);
    memcpy(&u1, p + 4, 4);
    memcpy(&u2, p + 8, 4);
    const uint32_t lo6 = 0x3f3f3f3fu, lo4 = 0x0f0f0f0fu, lo2 = 0x03030303u;
    uint32_t sc_hi = (u2 & lo4) | (((u0 >> 6) & lo2) << 4);
    uint32_t m_hi = ((u2 >> 4) & lo4) | (((u1 >> 6) & lo2) << 4);
    *sc = _mm_setr_epi32((int)(u0 & lo6), (int)sc_hi, 0, 0);
    *m = _mm_setr_epi32((int)(u1 & lo6), (int)m_hi, 0, 0);
}

/* Lane l of permute index i picks factor 2i + l/8 (the sub-blocks of the i-th vpdpbusd). */
static const int32_t KQ_PAIR_INDEX[4][16] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},
    {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5},
    {6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7}};

/* Byte masks of Q5_K's fifth bits: for the codes of sub-blocks 2i (first 32 bytes) and 2i+1
 * (last 32), bit 2i resp. 2i+1 of qh. */
static inline __m512i q5_bit_mask(int i) {
    return _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * i))),
                              _mm256_set1_epi8((char)(1 << (2 * i + 1))), 1);
}

/* The codes of a Q4_K/Q5_K super-block at b as four registers: nib[i] = sub-block 2i (low
 * nibbles of 32 bytes) then 2i+1 (their high nibbles), each matching 64 activations. */
static inline void q45_codes(const uint8_t *b, int five, __m512i nib[4]) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const uint8_t *q = b + (five ? 48 : 16);
    for (int i = 0; i < 4; i += 2) {
        /* 64 bytes = the nibbles of sub-block pairs i and i+1 */
        __m512i raw = _mm512_loadu_si512((const void *)(q + 32 * i));
        __m512i lo = _mm512_and_si512(raw, m4);
        __m512i hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
        nib[i] = _mm512_shuffle_i64x2(lo, hi, 0x44);     /* lo[0:256], hi[0:256] */
        nib[i + 1] = _mm512_shuffle_i64x2(lo, hi, 0xee); /* lo[256:512], hi[256:512] */
    }
    if (five) {
        const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b + 16)));
        const __m512i bit5 = _mm512_set1_epi8(0x10);
        for (int i = 0; i < 4; i++)
            /* bit 4 of a nibble is clear: adding 16 sets it */
            nib[i] = _mm512_mask_add_epi8(nib[i], _mm512_test_epi8_mask(qh, q5_bit_mask(i)), nib[i],
                                          bit5);
    }
}

/* Q4_K (qh unused) or Q5_K: per super-block, factors f_j = d·sc_j·dx_j (8 lanes) and the mins
 * as one 8-lane multiply-add dmin·m_j·dx_j·s_j. */
static inline float dot_q45_k_avx512(size_t n, const uint8_t *b, const int8_t *qs,
                                     const float *dx, const int32_t *s, int five) {
    const size_t bb = five ? 176 : 144;
    __m512i pair_ix[4];
    for (int i = 0; i < 4; i++) pair_ix[i] = _mm512_loadu_si512((const void *)KQ_PAIR_INDEX[i]);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (size_t sb = 0; sb < n / 256; sb++, b += bb, qs += 256, dx += 8, s += 8) {
        _mm_prefetch((const char *)b + KQ_PF, _MM_HINT_T0);
        _mm_prefetch((const char *)b + KQ_PF + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)b + KQ_PF + 128, _MM_HINT_T0);
        __m128i sc8, m8;
        k_scales_mins(b + 4, &sc8, &m8);
        const __m256 dx8 = _mm256_loadu_ps(dx);
        const __m256 f8 = _mm256_mul_ps(
            _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sc8)), dx8),
            _mm256_set1_ps(f16_at(b)));
        /* m_j·s_j is exact in float (≤ 63 · 32·127) */
        const __m256 ms = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(m8)),
                                        _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)s)));
        accm = _mm256_fmadd_ps(ms, _mm256_mul_ps(dx8, _mm256_set1_ps(f16_at(b + 2))), accm);
        const __m512 f = _mm512_castps256_ps512(f8);
        __m512i nib[4];
        q45_codes(b, five, nib);
        for (int i = 0; i < 4; i++) {
            __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), nib[i],
                                            _mm512_loadu_si512((const void *)(qs + 64 * i)));
            __m512 fi = _mm512_permutexvar_ps(pair_ix[i], f);
            if (i % 2 == 0)
                acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), fi, acc0);
            else
                acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), fi, acc1);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) - hsum256(accm);
}

float mk_vec_dot_q4_k_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s) {
    return dot_q45_k_avx512(n, (const uint8_t *)w, qs, d, s, 0);
}

float mk_vec_dot_q5_k_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s) {
    return dot_q45_k_avx512(n, (const uint8_t *)w, qs, d, s, 1);
}

/* The 6-bit codes (0..63) of a Q6_K super-block at b: codes[2h] holds values 0-31 and 32-63
 * of half h (128 values), codes[2h+1] values 64-95 and 96-127. Low 4 bits from ql (64 bytes
 * per half: the low nibbles are values 0-63, the high ones 64-127), high 2 bits from the 32
 * qh bytes of the half (bits 2k..2k+1 for values 32k..32k+31), moved to bits 4-5 by one
 * 16-bit shift per register half (bytes never mix: the mask keeps bits 4-5 of each byte). */
static inline void q6k_codes(const uint8_t *b, __m512i codes[4]) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    /* 16-bit lane shift counts: low 256 bits / high 256 bits */
    const __m512i sh_lo = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i sh_hi = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    for (int h = 0; h < 2; h++) {
        __m512i l = _mm512_loadu_si512((const void *)(b + 64 * h));
        __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b + 128 + 32 * h)));
        codes[2 * h] = _mm512_or_si512(_mm512_and_si512(l, m4),
                                       _mm512_and_si512(_mm512_sllv_epi16(qh, sh_lo), m30));
        codes[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                           _mm512_and_si512(_mm512_srlv_epi16(qh, sh_hi), m30));
    }
}

/* Lane l of Q6_K index k (register k of a super-block, 64 values = 4 sub-blocks of 16):
 * scale 4k + l/4, and activation block 2k + l/8. */
static const int32_t Q6_SCALE_INDEX[4][16] = {
    {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3},
    {4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7},
    {8, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10, 10, 11, 11, 11, 11},
    {12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15}};

/* The float factors d·sc·dx of the four code registers of a Q6_K super-block at b whose
 * activation block scales are dx[0..8]. */
static inline void q6k_factors(const uint8_t *b, const float *dx, __m512 fac[4]) {
    const __m512 sc = _mm512_mul_ps(
        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 192)))),
        _mm512_set1_ps(f16_at(b + 208)));
    const __m512 d8 = _mm512_castps256_ps512(_mm256_loadu_ps(dx));
    for (int k = 0; k < 4; k++) {
        __m512i si = _mm512_loadu_si512((const void *)Q6_SCALE_INDEX[k]);
        __m512i di = _mm512_loadu_si512((const void *)KQ_PAIR_INDEX[k]);
        fac[k] = _mm512_mul_ps(_mm512_permutexvar_ps(si, sc), _mm512_permutexvar_ps(di, d8));
    }
}

/* Q6_K: unsigned codes × qx with vpdpbusd, minus 32 · Σqx (a second vpdpbusd with a constant
 * 32), gives Σ (q-32)·qx per 4 elements (exact); each lane then gets its float factor
 * d·sc·dx (a 16-element sub-block is 4 lanes). */
float mk_vec_dot_q6_k_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *dx,
                                 const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    const __m512i c32 = _mm512_set1_epi8(32);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (size_t sb = 0; sb < n / 256; sb++, b += 210, qs += 256, dx += 8) {
        _mm_prefetch((const char *)b + KQ_PF, _MM_HINT_T0);
        _mm_prefetch((const char *)b + KQ_PF + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)b + KQ_PF + 128, _MM_HINT_T0);
        _mm_prefetch((const char *)b + KQ_PF + 192, _MM_HINT_T0);
        __m512i codes[4];
        __m512 fac[4];
        q6k_codes(b, codes);
        q6k_factors(b, dx, fac);
        for (int k = 0; k < 4; k++) {
            __m512i x = _mm512_loadu_si512((const void *)(qs + 64 * k));
            __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes[k], x);
            p = _mm512_sub_epi32(p, _mm512_dpbusd_epi32(_mm512_setzero_si512(), c32, x));
            if (k % 2 == 0)
                acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), fac[k], acc0);
            else
                acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), fac[k], acc1);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

/* Four activation rows at once for the K-quants (prefill): the codes of each super-block are
 * unpacked once and used for the four rows; per row the same arithmetic as the one-row
 * kernels above. */
static inline void dot4_q45_k_avx512(size_t n, const uint8_t *b, const int8_t *qs,
                                     const float *dx, const int32_t *s, float *out, int five) {
    const size_t bb = five ? 176 : 144, nb = n / 32;
    __m512i pair_ix[4];
    for (int i = 0; i < 4; i++) pair_ix[i] = _mm512_loadu_si512((const void *)KQ_PAIR_INDEX[i]);
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    __m256 accm[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                      _mm256_setzero_ps()};
    for (size_t sb = 0; sb < n / 256; sb++, b += bb) {
        __m128i sc8, m8;
        k_scales_mins(b + 4, &sc8, &m8);
        const __m256 scf = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sc8)),
                                         _mm256_set1_ps(f16_at(b)));
        const __m256 mf = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(m8)),
                                        _mm256_set1_ps(f16_at(b + 2)));
        __m512i nib[4];
        q45_codes(b, five, nib);
        for (int r = 0; r < 4; r++) {
            const size_t o = r * nb + 8 * sb;
            const int8_t *x = qs + r * n + 256 * sb;
            const __m256 dx8 = _mm256_loadu_ps(dx + o);
            accm[r] = _mm256_fmadd_ps(
                _mm256_mul_ps(mf, dx8),
                _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(s + o))), accm[r]);
            const __m512 f = _mm512_castps256_ps512(_mm256_mul_ps(scf, dx8));
            for (int i = 0; i < 4; i++) {
                __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), nib[i],
                                                _mm512_loadu_si512((const void *)(x + 64 * i)));
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p),
                                         _mm512_permutexvar_ps(pair_ix[i], f), acc[r]);
            }
        }
    }
    for (int r = 0; r < 4; r++) out[r] = _mm512_reduce_add_ps(acc[r]) - hsum256(accm[r]);
}

void mk_vec_dot4_q4_k_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out) {
    dot4_q45_k_avx512(n, (const uint8_t *)w, qs, d, s, out, 0);
}

void mk_vec_dot4_q5_k_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out) {
    dot4_q45_k_avx512(n, (const uint8_t *)w, qs, d, s, out, 1);
}

void mk_vec_dot4_q6_k_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *dx,
                                 const int32_t *s, float *out) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    const size_t nb = n / 32;
    const __m512i c32 = _mm512_set1_epi8(32);
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    for (size_t sb = 0; sb < n / 256; sb++, b += 210) {
        __m512i codes[4];
        q6k_codes(b, codes);
        for (int r = 0; r < 4; r++) {
            const size_t o = r * nb + 8 * sb;
            const int8_t *x = qs + r * n + 256 * sb;
            __m512 fac[4];
            q6k_factors(b, dx + o, fac);
            for (int k = 0; k < 4; k++) {
                __m512i xv = _mm512_loadu_si512((const void *)(x + 64 * k));
                __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes[k], xv);
                p = _mm512_sub_epi32(p, _mm512_dpbusd_epi32(_mm512_setzero_si512(), c32, xv));
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), fac[k], acc[r]);
            }
        }
    }
    for (int r = 0; r < 4; r++) out[r] = _mm512_reduce_add_ps(acc[r]);
}

/* MLA decode attention (see moela_kernels.h). Heads go in tiles of up to 8 so their
 * accumulators stay in registers while each cache row is loaded once per tile; row and dim
 * tails use masked loads. */
static inline __m512 load16_f32(const float *p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
static inline __m512 load16_f16(const uint16_t *p, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}
static inline __mmask16 tail_mask(size_t left) {
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
}

#define MLA_SCORES_TILE(NAME, T, LOAD)                                                        \
    static inline __attribute__((always_inline)) void NAME(                                   \
        const int H, size_t row, const float *q, size_t nrows, const T *c, float scale,      \
        float *out, size_t out_stride) {                                                      \
        for (size_t j = 0; j < nrows; j++) {                                                  \
            const T *cj = c + j * row;                                                        \
            __m512 acc[8];                                                                    \
            for (int h = 0; h < H; h++) acc[h] = _mm512_setzero_ps();                         \
            for (size_t d = 0; d < row; d += 16) {                                            \
                const __mmask16 m = tail_mask(row - d);                                       \
                const __m512 cv = LOAD(cj + d, m);                                            \
                for (int h = 0; h < H; h++)                                                   \
                    acc[h] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + h * row + d), cv,   \
                                             acc[h]);                                         \
            }                                                                                 \
            for (int h = 0; h < H; h++) out[h * out_stride + j] = _mm512_reduce_add_ps(acc[h]) * scale; \
        }                                                                                     \
    }
MLA_SCORES_TILE(scores_tile_f32, float, load16_f32)
MLA_SCORES_TILE(scores_tile_f16, uint16_t, load16_f16)

/* Longest row whose query tile is copied to aligned memory (8 heads: 32 KiB of stack). */
#define MLA_QCOPY_MAX 1024

/* Sum of each of 16 vectors, as the 16 lanes of one (lane k = Σ v[k]): four levels that each
 * halve the lanes per sum by adding two permuted pairs (45 operations instead of 16 separate
 * reductions). HSUM_LO/HI[l] pick, for lanes per sum 16 >> l, the low/high half of each
 * sum's lanes of two sources (indices >= 16: the second). */
static const int32_t HSUM_LO[4][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23},
    {0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27},
    {0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29},
    {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30}};
static const int32_t HSUM_HI[4][16] = {
    {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31},
    {4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31},
    {2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31},
    {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31}};

static inline __m512 hsum16(__m512 v[16]) {
    for (int l = 0, m = 16; l < 4; l++, m /= 2) {
        const __m512i lo = _mm512_loadu_si512((const void *)HSUM_LO[l]);
        const __m512i hi = _mm512_loadu_si512((const void *)HSUM_HI[l]);
        for (int i = 0; i < m / 2; i++)
            v[i] = _mm512_add_ps(_mm512_permutex2var_ps(v[2 * i], lo, v[2 * i + 1]),
                                 _mm512_permutex2var_ps(v[2 * i], hi, v[2 * i + 1]));
    }
    return v[0];
}

/* Eight heads × two cached rows: each query load serves both rows, and the 16 sums are
 * reduced together (lane 2h + r = head h, row j + r). */
#define MLA_SCORES_PAIR(NAME, T, LOAD)                                                        \
    static inline __attribute__((always_inline)) void NAME(                                   \
        size_t row, const float *q, size_t nrows, const T *c, float scale, float *out,       \
        size_t out_stride) {                                                                  \
        const __m512 vscale = _mm512_set1_ps(scale);                                          \
        for (size_t j = 0; j + 2 <= nrows; j += 2) {                                          \
            const T *c0 = c + j * row, *c1 = c0 + row;                                        \
            __m512 acc[16];                                                                   \
            for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();                        \
            size_t d = 0;                                                                     \
            for (; d + 16 <= row; d += 16) {                                                  \
                const __m512 a = LOAD(c0 + d, 0xffff), b = LOAD(c1 + d, 0xffff);              \
                for (int h = 0; h < 8; h++) {                                                 \
                    const __m512 qv = _mm512_loadu_ps(q + h * row + d);                       \
                    acc[2 * h] = _mm512_fmadd_ps(qv, a, acc[2 * h]);                          \
                    acc[2 * h + 1] = _mm512_fmadd_ps(qv, b, acc[2 * h + 1]);                  \
                }                                                                             \
            }                                                                                 \
            if (d < row) {                                                                    \
                const __mmask16 m = tail_mask(row - d);                                       \
                const __m512 a = LOAD(c0 + d, m), b = LOAD(c1 + d, m);                        \
                for (int h = 0; h < 8; h++) {                                                 \
                    const __m512 qv = _mm512_maskz_loadu_ps(m, q + h * row + d);              \
                    acc[2 * h] = _mm512_fmadd_ps(qv, a, acc[2 * h]);                          \
                    acc[2 * h + 1] = _mm512_fmadd_ps(qv, b, acc[2 * h + 1]);                  \
                }                                                                             \
            }                                                                                 \
            /* a copy for the reduction, so that acc itself is never address-taken and   \
             * stays in registers through the loop above */                                   \
            __m512 red[16];                                                                   \
            for (int i = 0; i < 16; i++) red[i] = acc[i];                                     \
            float sums[16];                                                                   \
            _mm512_storeu_ps(sums, _mm512_mul_ps(hsum16(red), vscale));                       \
            for (int h = 0; h < 8; h++) {                                                     \
                out[h * out_stride + j] = sums[2 * h];                                        \
                out[h * out_stride + j + 1] = sums[2 * h + 1];                                \
            }                                                                                 \
        }                                                                                     \
    }
MLA_SCORES_PAIR(scores_pair_f32, float, load16_f32)
MLA_SCORES_PAIR(scores_pair_f16, uint16_t, load16_f16)

/* Rows per block of the weighted sums: the dims of a block of cached rows are swept while
 * they sit in L1/L2, instead of streaming every row once per 16- or 32-dim stripe. */
#define MLA_ROW_BLOCK 64

#define MLA_ACCUM_TILE(NAME, T, LOAD)                                                         \
    static inline __attribute__((always_inline)) void NAME(                                   \
        const int H, size_t dim, size_t row, const float *p, size_t p_stride, size_t nrows,   \
        const T *c, float *acc) {                                                             \
        for (size_t j0 = 0; j0 < nrows; j0 += MLA_ROW_BLOCK) {                                \
        const size_t j1 = nrows - j0 < MLA_ROW_BLOCK ? nrows : j0 + MLA_ROW_BLOCK;            \
        for (size_t d = 0; d < dim; d += 32) {                                                \
            const __mmask16 m0 = tail_mask(dim - d);                                          \
            const __mmask16 m1 = dim - d > 16 ? tail_mask(dim - d - 16) : (__mmask16)0;       \
            __m512 a0[8], a1[8];                                                              \
            for (int h = 0; h < H; h++) {                                                     \
                a0[h] = _mm512_maskz_loadu_ps(m0, acc + h * dim + d);                         \
                a1[h] = _mm512_maskz_loadu_ps(m1, acc + h * dim + d + 16);                    \
            }                                                                                 \
            for (size_t j = j0; j < j1; j++) {                                                \
                const __m512 c0 = LOAD(c + j * row + d, m0);                                  \
                const __m512 c1 = LOAD(c + j * row + d + 16, m1);                             \
                for (int h = 0; h < H; h++) {                                                 \
                    const __m512 w = _mm512_set1_ps(p[h * p_stride + j]);                     \
                    a0[h] = _mm512_fmadd_ps(w, c0, a0[h]);                                    \
                    a1[h] = _mm512_fmadd_ps(w, c1, a1[h]);                                    \
                }                                                                             \
            }                                                                                 \
            for (int h = 0; h < H; h++) {                                                     \
                _mm512_mask_storeu_ps(acc + h * dim + d, m0, a0[h]);                          \
                _mm512_mask_storeu_ps(acc + h * dim + d + 16, m1, a1[h]);                     \
            }                                                                                 \
        }                                                                                     \
        }                                                                                 \
    }
MLA_ACCUM_TILE(accum_tile_f32, float, load16_f32)
MLA_ACCUM_TILE(accum_tile_f16, uint16_t, load16_f16)

void mk_mla_scores_f32_avx512(size_t nq, size_t row, const float *q, size_t nrows,
                              const float *c, float scale, float *out, size_t out_stride) {
    size_t h = 0;
    /* The queries of a tile go through a 64-byte aligned copy: loads that split cache lines
     * halved the kernel's speed (the caller's buffers are only 16-byte aligned). */
    float qt[8 * MLA_QCOPY_MAX] __attribute__((aligned(64)));
    for (; h + 8 <= nq; h += 8) {
        const float *qh = q + h * row;
        if (row <= MLA_QCOPY_MAX) {
            memcpy(qt, qh, 8 * row * sizeof(float));
            qh = qt;
        }
        /* pairs of rows, then a last odd row */
        scores_pair_f32(row, qh, nrows, c, scale, out + h * out_stride, out_stride);
        if (nrows % 2)
            scores_tile_f32(8, row, qh, 1, c + (nrows - 1) * row, scale,
                            out + h * out_stride + nrows - 1, out_stride);
    }
    for (; h < nq; h++) scores_tile_f32(1, row, q + h * row, nrows, c, scale, out + h * out_stride, out_stride);
}

void mk_mla_scores_f16_avx512(size_t nq, size_t row, const float *q, size_t nrows,
                              const uint16_t *c, float scale, float *out, size_t out_stride) {
    size_t h = 0;
    /* The queries of a tile go through a 64-byte aligned copy: loads that split cache lines
     * halved the kernel's speed (the caller's buffers are only 16-byte aligned). */
    float qt[8 * MLA_QCOPY_MAX] __attribute__((aligned(64)));
    for (; h + 8 <= nq; h += 8) {
        const float *qh = q + h * row;
        if (row <= MLA_QCOPY_MAX) {
            memcpy(qt, qh, 8 * row * sizeof(float));
            qh = qt;
        }
        /* pairs of rows, then a last odd row */
        scores_pair_f16(row, qh, nrows, c, scale, out + h * out_stride, out_stride);
        if (nrows % 2)
            scores_tile_f16(8, row, qh, 1, c + (nrows - 1) * row, scale,
                            out + h * out_stride + nrows - 1, out_stride);
    }
    for (; h < nq; h++) scores_tile_f16(1, row, q + h * row, nrows, c, scale, out + h * out_stride, out_stride);
}

void mk_mla_accum_f32_avx512(size_t nq, size_t dim, size_t row, const float *p,
                             size_t p_stride, size_t nrows, const float *c, float *acc) {
    size_t h = 0;
    for (; h + 8 <= nq; h += 8) accum_tile_f32(8, dim, row, p + h * p_stride, p_stride, nrows, c, acc + h * dim);
    for (; h < nq; h++) accum_tile_f32(1, dim, row, p + h * p_stride, p_stride, nrows, c, acc + h * dim);
}

void mk_mla_accum_f16_avx512(size_t nq, size_t dim, size_t row, const float *p,
                             size_t p_stride, size_t nrows, const uint16_t *c, float *acc) {
    size_t h = 0;
    for (; h + 8 <= nq; h += 8) accum_tile_f16(8, dim, row, p + h * p_stride, p_stride, nrows, c, acc + h * dim);
    for (; h < nq; h++) accum_tile_f16(1, dim, row, p + h * p_stride, p_stride, nrows, c, acc + h * dim);
}

/* q8a quantization, bit-identical to the generic one: max |x| ignoring NaN (the operand order
 * of vmaxps keeps the running max when x is NaN), then the same IEEE operations per element,
 * rounding half away from zero by truncation plus the exact remainder. */
static inline __m512i quantize16(__m512 x, __m512 inv) {
    __m512 v = _mm512_mul_ps(x, inv);
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, lo, _CMP_GT_OQ), lo, v);
    v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, hi, _CMP_GT_OQ), v, hi);
    __m512i q = _mm512_cvttps_epi32(v);
    __m512 rem = _mm512_sub_ps(v, _mm512_cvtepi32_ps(q));
    const __m512i one = _mm512_set1_epi32(1);
    q = _mm512_mask_add_epi32(q, _mm512_cmp_ps_mask(rem, _mm512_set1_ps(0.5f), _CMP_GE_OQ), q, one);
    q = _mm512_mask_sub_epi32(q, _mm512_cmp_ps_mask(rem, _mm512_set1_ps(-0.5f), _CMP_LE_OQ), q, one);
    return q;
}

void mk_quantize_row_q8a_avx512(size_t n, const float *x, int8_t *qs, float *d, int32_t *s) {
    const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    for (size_t b = 0; b < n / 32; b++, x += 32, qs += 32) {
        __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
        __m512 m = _mm512_max_ps(_mm512_and_ps(x0, abs_mask), _mm512_setzero_ps());
        m = _mm512_max_ps(_mm512_and_ps(x1, abs_mask), m);
        float amax = _mm512_reduce_max_ps(m);
        float scale = amax / 127.0f;
        float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
        __m512 vinv = _mm512_set1_ps(inv);
        __m512i q0 = quantize16(x0, vinv), q1 = quantize16(x1, vinv);
        _mm_storeu_si128((__m128i *)qs, _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(qs + 16), _mm512_cvtepi32_epi8(q1));
        d[b] = scale;
        s[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    }
}

/* ---- Q2_K and Q3_K (layouts in moela_kernels.h) ----
 * A register holds two activation blocks (64 values); each 128-bit lane is one 16-element
 * sub-block. maddubs + madd with the sub-block's factor as int16 (picked from the 16 factor
 * bytes by vpshufb: lane i of quarter k takes byte 4k + i) give exact int32 sums already
 * scaled; then × d·dx (dx of the two blocks spread over 8 lanes each by vpermps). */

/* vpshufb control for quarter k: in lane i, every int16 is (byte 4k + i, zero). */
static inline __m512i lowk_ctrl(int k) {
    return _mm512_add_epi16(_mm512_set_epi64(0x8003800380038003ll, 0x8003800380038003ll, 0x8002800280028002ll,
                                             0x8002800280028002ll, 0x8001800180018001ll, 0x8001800180018001ll,
                                             0x8000800080008000ll, 0x8000800080008000ll),
                            _mm512_set1_epi16((short)(4 * k)));
}

/* Lanes 0-7 = v[2k], lanes 8-15 = v[2k+1]. */
static inline __m512 lowk_pair(__m512 v, int k) {
    return _mm512_permutexvar_ps(_mm512_set_epi32(2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1,
                                                  2 * k + 1, 2 * k + 1, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k,
                                                  2 * k),
                                 v);
}

/* The 2-bit codes of a super-block's 64 bytes qs as four quarters of 64 values. */
static inline void lowk_codes(const uint8_t *qs, __m512i out[4]) {
    const __m512i m2 = _mm512_set1_epi8(3);
    for (int h = 0; h < 2; h++) {
        __m256i ql = _mm256_loadu_si256((const __m256i *)(qs + 32 * h));
        __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(ql), _mm256_srli_epi16(ql, 2), 1);
        out[2 * h] = _mm512_and_si512(both, m2);
        out[2 * h + 1] = _mm512_and_si512(_mm512_srli_epi16(both, 4), m2);
    }
}

/* Q2_K super-block: codes, int16 scale and min vectors per quarter. */
static inline void q2k_prep(const uint8_t *b, __m512i codes[4], __m512i sc[4], __m512i m[4]) {
    lowk_codes(b + 16, codes);
    const __m512i raw = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)b));
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i scb = _mm512_and_si512(raw, m4), mb = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
    for (int k = 0; k < 4; k++) {
        sc[k] = _mm512_shuffle_epi8(scb, lowk_ctrl(k));
        m[k] = _mm512_shuffle_epi8(mb, lowk_ctrl(k));
    }
}

/* Q3_K super-block: codes 0..7 (third bit from hmask; the -4 is applied as 4·Σx) and the
 * signed int16 scale vectors per quarter. */
static inline void q3k_prep(const uint8_t *b, __m512i codes[4], __m512i sc[4]) {
    lowk_codes(b + 32, codes);
    const __m256i one = _mm256_set1_epi8(1);
    const __m256i hm = _mm256_loadu_si256((const __m256i *)b);
    for (int k = 0; k < 4; k++) {
        __m256i h0 = _mm256_and_si256(_mm256_srli_epi16(hm, 2 * k), one);
        __m256i h1 = _mm256_and_si256(_mm256_srli_epi16(hm, 2 * k + 1), one);
        __m512i hb = _mm512_inserti64x4(_mm512_castsi256_si512(h0), h1, 1);
        codes[k] = _mm512_or_si512(codes[k], _mm512_slli_epi16(hb, 2));
    }
    const uint8_t *sp = b + 96;
    uint64_t lo8;
    uint32_t hi4;
    memcpy(&lo8, sp, 8);
    memcpy(&hi4, sp + 8, 4);
    __m128i l = _mm_cvtsi64_si128((long long)lo8), h = _mm_cvtsi32_si128((int)hi4);
    __m128i lo = _mm_and_si128(_mm_unpacklo_epi64(l, _mm_srli_epi16(l, 4)), _mm_set1_epi8(0x0f));
    __m128i hv = _mm_unpacklo_epi64(_mm_unpacklo_epi32(h, _mm_srli_epi16(h, 2)),
                                    _mm_unpacklo_epi32(_mm_srli_epi16(h, 4), _mm_srli_epi16(h, 6)));
    __m128i sc8 = _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(_mm_and_si128(hv, _mm_set1_epi8(3)), 4)),
                               _mm_set1_epi8(32));
    const __m512i scb = _mm512_broadcast_i32x4(sc8);
    /* The control puts the byte in the high half of each int16; srai 8 sign-extends. */
    for (int k = 0; k < 4; k++)
        sc[k] = _mm512_srai_epi16(_mm512_shuffle_epi8(scb, _mm512_rol_epi32(lowk_ctrl(k), 8)), 8);
}

float mk_vec_dot_q2_k_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *dx,
                                 const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    const __m512i ones = _mm512_set1_epi8(1);
    __m512 acc = _mm512_setzero_ps(), accm = _mm512_setzero_ps();
    for (size_t sb = 0; sb < n / 256; sb++, b += 84, qs += 256, dx += 8) {
        __m512i codes[4], sc[4], m[4];
        q2k_prep(b, codes, sc, m);
        const __m512 x8 = _mm512_castps256_ps512(_mm256_loadu_ps(dx));
        const __m512 fd = _mm512_mul_ps(x8, _mm512_set1_ps(f16_at(b + 80)));
        const __m512 fm = _mm512_mul_ps(x8, _mm512_set1_ps(f16_at(b + 82)));
        for (int k = 0; k < 4; k++) {
            __m512i x = _mm512_loadu_si512((const void *)(qs + 64 * k));
            __m512i p = _mm512_madd_epi16(_mm512_maddubs_epi16(codes[k], x), sc[k]);
            __m512i pm = _mm512_madd_epi16(_mm512_maddubs_epi16(ones, x), m[k]);
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), lowk_pair(fd, k), acc);
            accm = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pm), lowk_pair(fm, k), accm);
        }
    }
    return _mm512_reduce_add_ps(acc) - _mm512_reduce_add_ps(accm);
}

float mk_vec_dot_q3_k_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *dx,
                                 const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    const __m512i four = _mm512_set1_epi8(4);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (size_t sb = 0; sb < n / 256; sb++, b += 110, qs += 256, dx += 8) {
        __m512i codes[4], sc[4];
        q3k_prep(b, codes, sc);
        const __m512 fd = _mm512_mul_ps(_mm512_castps256_ps512(_mm256_loadu_ps(dx)), _mm512_set1_ps(f16_at(b + 108)));
        for (int k = 0; k < 4; k++) {
            __m512i x = _mm512_loadu_si512((const void *)(qs + 64 * k));
            __m512i p = _mm512_sub_epi16(_mm512_maddubs_epi16(codes[k], x), _mm512_maddubs_epi16(four, x));
            p = _mm512_madd_epi16(p, sc[k]);
            if (k % 2 == 0) acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), lowk_pair(fd, k), acc0);
            else acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), lowk_pair(fd, k), acc1);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

/* Four activation rows (prefill): codes and factor vectors built once per super-block. */
void mk_vec_dot4_q2_k_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *dx,
                                 const int32_t *s, float *out) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    const size_t nb = n / 32;
    const __m512i ones = _mm512_set1_epi8(1);
    __m512 acc[4], accm[4];
    for (int r = 0; r < 4; r++) acc[r] = accm[r] = _mm512_setzero_ps();
    for (size_t sb = 0; sb < n / 256; sb++, b += 84) {
        __m512i codes[4], sc[4], m[4];
        q2k_prep(b, codes, sc, m);
        const __m512 d = _mm512_set1_ps(f16_at(b + 80)), dmin = _mm512_set1_ps(f16_at(b + 82));
        for (int r = 0; r < 4; r++) {
            const int8_t *x = qs + r * n + 256 * sb;
            const __m512 x8 = _mm512_castps256_ps512(_mm256_loadu_ps(dx + r * nb + 8 * sb));
            const __m512 fd = _mm512_mul_ps(x8, d), fm = _mm512_mul_ps(x8, dmin);
            for (int k = 0; k < 4; k++) {
                __m512i xv = _mm512_loadu_si512((const void *)(x + 64 * k));
                __m512i p = _mm512_madd_epi16(_mm512_maddubs_epi16(codes[k], xv), sc[k]);
                __m512i pm = _mm512_madd_epi16(_mm512_maddubs_epi16(ones, xv), m[k]);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), lowk_pair(fd, k), acc[r]);
                accm[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pm), lowk_pair(fm, k), accm[r]);
            }
        }
    }
    for (int r = 0; r < 4; r++) out[r] = _mm512_reduce_add_ps(acc[r]) - _mm512_reduce_add_ps(accm[r]);
}

void mk_vec_dot4_q3_k_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *dx,
                                 const int32_t *s, float *out) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    const size_t nb = n / 32;
    const __m512i four = _mm512_set1_epi8(4);
    __m512 acc[4];
    for (int r = 0; r < 4; r++) acc[r] = _mm512_setzero_ps();
    for (size_t sb = 0; sb < n / 256; sb++, b += 110) {
        __m512i codes[4], sc[4];
        q3k_prep(b, codes, sc);
        const __m512 d = _mm512_set1_ps(f16_at(b + 108));
        for (int r = 0; r < 4; r++) {
            const int8_t *x = qs + r * n + 256 * sb;
            const __m512 fd = _mm512_mul_ps(_mm512_castps256_ps512(_mm256_loadu_ps(dx + r * nb + 8 * sb)), d);
            for (int k = 0; k < 4; k++) {
                __m512i xv = _mm512_loadu_si512((const void *)(x + 64 * k));
                __m512i p = _mm512_sub_epi16(_mm512_maddubs_epi16(codes[k], xv), _mm512_maddubs_epi16(four, xv));
                p = _mm512_madd_epi16(p, sc[k]);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), lowk_pair(fd, k), acc[r]);
            }
        }
    }
    for (int r = 0; r < 4; r++) out[r] = _mm512_reduce_add_ps(acc[r]);
}

/* ---- Float weights (F32, F16, BF16) × f32 activations ----
 * One template per shape, instantiated per weight type (t is a constant after inlining).
 * Weight rows may be misaligned (unaligned loads); the last n % 16 elements use masked loads
 * (masked-off lanes are not read, so nothing past the row is touched). BF16 is widened exactly
 * by a shift rather than multiplied with vdpbf16ps: that instruction needs the activations
 * rounded to bf16 (8-bit mantissa, relative error up to 2^-9 per element), and splitting them
 * into two bf16 halves to stay accurate costs as many instructions as the widening. */
enum { WF32, WF16, WBF16 };

#define FLOAT_PREFETCH 2048 /* bytes ahead of the weights being read (decode streams rows) */

static inline __attribute__((always_inline)) __m512 wload16(int t, const uint8_t *p) {
    if (t == WF32) return _mm512_loadu_ps((const float *)p);
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    if (t == WF16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

static inline __attribute__((always_inline)) __m512 wload16_mask(int t, const uint8_t *p, __mmask16 k) {
    if (t == WF32) return _mm512_maskz_loadu_ps(k, (const float *)p);
    __m256i h = _mm256_maskz_loadu_epi16(k, p);
    if (t == WF16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

static inline __attribute__((always_inline)) float dot_float_avx512(int t, size_t n, const void *w,
                                                                    const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    const size_t es = t == WF32 ? 4 : 2;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        const uint8_t *p = b + i * es;
        for (size_t l = 0; l < 64 * es; l += 64) _mm_prefetch((const char *)p + FLOAT_PREFETCH + l, _MM_HINT_T0);
        a0 = _mm512_fmadd_ps(wload16(t, p), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(wload16(t, p + 16 * es), _mm512_loadu_ps(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(wload16(t, p + 32 * es), _mm512_loadu_ps(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(wload16(t, p + 48 * es), _mm512_loadu_ps(x + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(wload16(t, b + i * es), _mm512_loadu_ps(x + i), a0);
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        a1 = _mm512_fmadd_ps(wload16_mask(t, b + i * es, k), _mm512_maskz_loadu_ps(k, x + i), a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

static inline __attribute__((always_inline)) void dot4_float_avx512(int t, size_t n, const void *w,
                                                                    const float *x, float *out) {
    const uint8_t *b = (const uint8_t *)w;
    const size_t es = t == WF32 ? 4 : 2;
    __m512 acc[4][2];
    for (int r = 0; r < 4; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 w0 = wload16(t, b + i * es), w1 = wload16(t, b + (i + 16) * es);
        for (int r = 0; r < 4; r++) {
            acc[r][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + r * n + i), acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + r * n + i + 16), acc[r][1]);
        }
    }
    if (i + 16 <= n) {
        __m512 w0 = wload16(t, b + i * es);
        for (int r = 0; r < 4; r++) acc[r][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + r * n + i), acc[r][0]);
        i += 16;
    }
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        __m512 w0 = wload16_mask(t, b + i * es, k);
        for (int r = 0; r < 4; r++)
            acc[r][1] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(k, x + r * n + i), acc[r][1]);
    }
    for (int r = 0; r < 4; r++) out[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]));
}

float mk_vec_dot_f32_f32_avx512(size_t n, const void *w, const float *x) { return dot_float_avx512(WF32, n, w, x); }
float mk_vec_dot_f16_f32_avx512(size_t n, const void *w, const float *x) { return dot_float_avx512(WF16, n, w, x); }
float mk_vec_dot_bf16_f32_avx512(size_t n, const void *w, const float *x) { return dot_float_avx512(WBF16, n, w, x); }
void mk_vec_dot4_f32_f32_avx512(size_t n, const void *w, const float *x, float *out) { dot4_float_avx512(WF32, n, w, x, out); }
void mk_vec_dot4_f16_f32_avx512(size_t n, const void *w, const float *x, float *out) { dot4_float_avx512(WF16, n, w, x, out); }
void mk_vec_dot4_bf16_f32_avx512(size_t n, const void *w, const float *x, float *out) { dot4_float_avx512(WBF16, n, w, x, out); }

/* ---- Q4_1, Q5_0, Q5_1, IQ4_NL, IQ4_XS (layouts in moela_kernels.h) ----
 * One loop for every type, two 32-element blocks per 512-bit register: each block is decoded
 * to 32 unsigned bytes u in element order with x = f·(u - off) + m, where off is 0 (Q4_1,
 * Q5_1), 16 (Q5_0) or 128 (IQ4: the codebook shifted by +128 to 1..241, which vpdpbusd takes
 * as unsigned without saturating); Σ(u - off)·qx = Σu·qx - off·s stays in int32. */

enum { LX_Q4_1, LX_Q5_0, LX_Q5_1, LX_IQ4_NL, LX_IQ4_XS };

/* off / 8: subtracted from each of a block's 8 int32 lanes (8 lanes · off/8 · s = off · s). */
static inline int lx_off8(int type) {
    return type == LX_Q5_0 ? 2 : (type == LX_IQ4_NL || type == LX_IQ4_XS) ? 16 : 0;
}

/* The 32 fifth bits of qh as 0x10 in bytes 0..31 (byte i = element i). */
static inline __m256i lx_hbits(uint32_t qh) {
    return _mm256_maskz_mov_epi8((__mmask32)qh, _mm256_set1_epi8(0x10));
}

static inline uint32_t lx_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline __attribute__((always_inline)) __m256i lx_block(int type, const uint8_t *w,
                                                             size_t j, float *f, float *m) {
    /* kvalues_iq4nl + 128 */
    const __m256i kv = _mm256_setr_epi8(1, 24, 45, 63, 79, 93, 106, 118, (char)129, (char)141,
                                        (char)153, (char)166, (char)181, (char)197, (char)217,
                                        (char)241, 1, 24, 45, 63, 79, 93, 106, 118, (char)129,
                                        (char)141, (char)153, (char)166, (char)181, (char)197,
                                        (char)217, (char)241);
    const uint8_t *b;
    switch (type) {
    case LX_Q4_1:
        b = w + 20 * j;
        *f = f16_at(b);
        *m = f16_at(b + 2);
        return unpack_q4(b + 4);
    case LX_Q5_0:
        b = w + 22 * j;
        *f = f16_at(b);
        *m = 0.0f;
        return _mm256_or_si256(unpack_q4(b + 6), lx_hbits(lx_u32(b + 2)));
    case LX_Q5_1:
        b = w + 24 * j;
        *f = f16_at(b);
        *m = f16_at(b + 2);
        return _mm256_or_si256(unpack_q4(b + 8), lx_hbits(lx_u32(b + 4)));
    case LX_IQ4_NL:
        b = w + 18 * j;
        *f = f16_at(b);
        *m = 0.0f;
        return _mm256_shuffle_epi8(kv, unpack_q4(b + 2));
    default: {
        b = w + 136 * (j / 8);
        const int i = (int)(j % 8);
        uint16_t h;
        memcpy(&h, b + 2, 2);
        int ls = ((b[4 + i / 2] >> (4 * (i % 2))) & 0x0f) | (((h >> (2 * i)) & 3) << 4);
        *f = f16_at(b) * (float)(ls - 32);
        *m = 0.0f;
        return _mm256_shuffle_epi8(kv, unpack_q4(b + 8 + 16 * i));
    }
    }
}

static inline __attribute__((always_inline)) float lx_dot_avx512(int type, size_t n,
                                                                const void *w, const int8_t *qs,
                                                                const float *dx,
                                                                const int32_t *s) {
    const uint8_t *b = (const uint8_t *)w;
    const int off = lx_off8(type);
    const int mins = type == LX_Q4_1 || type == LX_Q5_1;
    __m512 acc = _mm512_setzero_ps();
    float corr = 0.0f; /* Σ dx·m·s (Q4_1/Q5_1) */
    size_t nb = n / 32, i = 0;
    for (; i + 1 < nb; i += 2) {
        float f0, m0, f1, m1;
        __m256i u0 = lx_block(type, b, i, &f0, &m0);
        __m256i u1 = lx_block(type, b, i + 1, &f1, &m1);
        __m512i u = _mm512_inserti64x4(_mm512_castsi256_si512(u0), u1, 1);
        __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u,
                                        _mm512_loadu_si512((const void *)(qs + 32 * i)));
        if (off) p = _mm512_sub_epi32(p, two_ints(off * s[i], off * s[i + 1]));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), two_scales(f0 * dx[i], f1 * dx[i + 1]), acc);
        if (mins) corr += m0 * dx[i] * (float)s[i] + m1 * dx[i + 1] * (float)s[i + 1];
    }
    float sum = _mm512_reduce_add_ps(acc);
    for (; i < nb; i++) {
        float f0, m0;
        __m256i u0 = lx_block(type, b, i, &f0, &m0);
        __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), u0,
                                        _mm256_loadu_si256((const __m256i *)(qs + 32 * i)));
        if (off) p = _mm256_sub_epi32(p, _mm256_set1_epi32(off * s[i]));
        sum += hsum256(_mm256_mul_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(f0 * dx[i])));
        if (mins) corr += m0 * dx[i] * (float)s[i];
    }
    return sum + corr;
}

/* Four activation rows (row r at qs + r·n, dx/s + r·n/32): each pair of weight blocks decoded
 * once for the four. */
static inline __attribute__((always_inline)) void lx_dot4_avx512(int type, size_t n,
                                                                const void *w, const int8_t *qs,
                                                                const float *dx,
                                                                const int32_t *s, float *out) {
    const uint8_t *b = (const uint8_t *)w;
    const int off = lx_off8(type);
    const int mins = type == LX_Q4_1 || type == LX_Q5_1;
    const size_t nb = n / 32;
    __m512 acc[4];
    float corr[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int r = 0; r < 4; r++) acc[r] = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 1 < nb; i += 2) {
        float f0, m0, f1, m1;
        __m256i u0 = lx_block(type, b, i, &f0, &m0);
        __m256i u1 = lx_block(type, b, i + 1, &f1, &m1);
        __m512i u = _mm512_inserti64x4(_mm512_castsi256_si512(u0), u1, 1);
        for (int r = 0; r < 4; r++) {
            const size_t k = r * nb + i;
            __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u,
                                            _mm512_loadu_si512((const void *)(qs + 32 * k)));
            if (off) p = _mm512_sub_epi32(p, two_ints(off * s[k], off * s[k + 1]));
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), two_scales(f0 * dx[k], f1 * dx[k + 1]),
                                     acc[r]);
            if (mins) corr[r] += m0 * dx[k] * (float)s[k] + m1 * dx[k + 1] * (float)s[k + 1];
        }
    }
    for (int r = 0; r < 4; r++) out[r] = _mm512_reduce_add_ps(acc[r]);
    for (; i < nb; i++) {
        float f0, m0;
        __m256i u0 = lx_block(type, b, i, &f0, &m0);
        for (int r = 0; r < 4; r++) {
            const size_t k = r * nb + i;
            __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), u0,
                                            _mm256_loadu_si256((const __m256i *)(qs + 32 * k)));
            if (off) p = _mm256_sub_epi32(p, _mm256_set1_epi32(off * s[k]));
            out[r] += hsum256(_mm256_mul_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(f0 * dx[k])));
            if (mins) corr[r] += m0 * dx[k] * (float)s[k];
        }
    }
    for (int r = 0; r < 4; r++) out[r] += corr[r];
}

#define LX_KERNELS(T, TYPE)                                                                    \
    float mk_vec_dot_##T##_q8a_avx512(size_t n, const void *w, const int8_t *qs,               \
                                      const float *d, const int32_t *s) {                      \
        return lx_dot_avx512(TYPE, n, w, qs, d, s);                                            \
    }                                                                                          \
    void mk_vec_dot4_##T##_q8a_avx512(size_t n, const void *w, const int8_t *qs,               \
                                      const float *d, const int32_t *s, float *out) {          \
        lx_dot4_avx512(TYPE, n, w, qs, d, s, out);                                             \
    }
LX_KERNELS(q4_1, LX_Q4_1)
LX_KERNELS(q5_0, LX_Q5_0)
LX_KERNELS(q5_1, LX_Q5_1)
LX_KERNELS(iq4_nl, LX_IQ4_NL)
LX_KERNELS(iq4_xs, LX_IQ4_XS)
