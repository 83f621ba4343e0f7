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

/* ---- K-quants: two 32-element sub-blocks per 512-bit register (vpdpbusd) ---- */

static inline void k_unpack(const uint8_t *s, uint8_t sc[8], uint8_t m[8]) {
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 0x0f) | ((s[j] >> 6) << 4);
        m[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
}

/* Q4_K (qh unused) or Q5_K. 32 bytes of nibbles hold sub-blocks 2i (low) and 2i+1 (high),
 * which are activation blocks 2i and 2i+1: one register, one vpdpbusd. The mins are one
 * 8-lane multiply-add per super-block: dx_j · dmin · (m_j · s_j). */
static inline float dot_q45_k_avx512(size_t n, const uint8_t *b, const int8_t *qs,
                                     const float *dx, const int32_t *s, int five) {
    const size_t bb = five ? 176 : 144;
    const __m256i m4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (size_t sb = 0; sb < n / 256; sb++, b += bb, qs += 256, dx += 8, s += 8) {
        uint8_t sc[8], m[8];
        k_unpack(b + 4, sc, m);
        float d = f16_at(b);
        __m256i mv = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)m));
        __m256i ms = _mm256_mullo_epi32(mv, _mm256_loadu_si256((const __m256i *)s));
        accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ms),
                               _mm256_mul_ps(_mm256_loadu_ps(dx), _mm256_set1_ps(f16_at(b + 2))), accm);
        const uint8_t *q = b + (five ? 48 : 16);
        __m256i qh = five ? _mm256_loadu_si256((const __m256i *)(b + 16)) : _mm256_setzero_si256();
        for (int i = 0; i < 4; i++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(q + 32 * i));
            __m256i lo = _mm256_and_si256(raw, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            if (five) {
                lo = _mm256_or_si256(
                    lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * i)), one), 4));
                hi = _mm256_or_si256(
                    hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * i + 1)), one), 4));
            }
            __m512i nib = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
            __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), nib,
                                            _mm512_loadu_si512((const void *)(qs + 64 * i)));
            /* The 6-bit scale joins the float factor (an int32 multiply costs more). */
            __m512 f = two_scales(d * (float)sc[2 * i] * dx[2 * i], d * (float)sc[2 * i + 1] * dx[2 * i + 1]);
            if (i % 2 == 0)
                acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), f, acc0);
            else
                acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), f, acc1);
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

/* The 6-bit codes (0..63) of half h (128 values) of a Q6_K super-block at b: out[0] holds
 * values 0-31 and 32-63 of the half, out[1] values 64-95 and 96-127 (low 4 bits from ql,
 * high 2 bits from qh). */
static inline void q6k_codes(const uint8_t *b, int h, __m256i m4, __m256i m2, __m512i out[2]) {
    __m256i l0 = _mm256_loadu_si256((const __m256i *)(b + 64 * h));
    __m256i l1 = _mm256_loadu_si256((const __m256i *)(b + 64 * h + 32));
    __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * h));
    __m256i c0 = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4));
    __m256i c1 = _mm256_or_si256(_mm256_and_si256(l1, m4),
                 _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4));
    __m256i c2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                 _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4));
    __m256i c3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                 _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4));
    out[0] = _mm512_inserti64x4(_mm512_castsi256_si512(c0), c1, 1);
    out[1] = _mm512_inserti64x4(_mm512_castsi256_si512(c2), c3, 1);
}

/* Q6_K: unsigned codes × qx with vpdpbusd, minus 32 · Σqx (a second vpdpbusd with a constant
 * 32), gives Σ (q-32)·qx per 4 elements; each 16-element sub-block is 4 lanes, multiplied by
 * its int8 scale in int32 (exact), then × d·dx per 32. */
float mk_vec_dot_q6_k_q8a_avx512(size_t n, const void *w, const int8_t *qs, const float *dx,
                                 const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(3);
    const __m512i c32 = _mm512_set1_epi8(32);
    /* Byte k of the index picks scale k/4: 4 lanes per 16-element sub-block. */
    const __m128i spread = _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (size_t sb = 0; sb < n / 256; sb++, b += 210) {
        float d = f16_at(b + 208);
        for (int h = 0; h < 2; h++, qs += 128, dx += 4) {
            __m512i codes[2];
            q6k_codes(b, h, m4, m2, codes);
            for (int k = 0; k < 2; k++) {
                __m512i x = _mm512_loadu_si512((const void *)(qs + 64 * k));
                __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes[k], x);
                p = _mm512_sub_epi32(p, _mm512_dpbusd_epi32(_mm512_setzero_si512(), c32, x));
                uint32_t sc4;
                memcpy(&sc4, b + 192 + 8 * h + 4 * k, 4);
                __m512i scv = _mm512_cvtepi8_epi32(_mm_shuffle_epi8(_mm_cvtsi32_si128((int)sc4), spread));
                p = _mm512_mullo_epi32(p, scv);
                __m512 f = two_scales(d * dx[2 * k], d * dx[2 * k + 1]);
                if (k == 0)
                    acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), f, acc0);
                else
                    acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), f, acc1);
            }
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

/* Four activation rows at once for the K-quants (prefill): the scales, mins and unpacked
 * codes of each super-block are built once and used for the four rows. Same arithmetic per
 * row as the one-row kernels above. */
static inline void dot4_q45_k_avx512(size_t n, const uint8_t *b, const int8_t *qs,
                                     const float *dx, const int32_t *s, float *out, int five) {
    const size_t bb = five ? 176 : 144, nb = n / 32;
    const __m256i m4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    __m256 accm[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                      _mm256_setzero_ps()};
    for (size_t sb = 0; sb < n / 256; sb++, b += bb) {
        uint8_t sc[8], m[8];
        k_unpack(b + 4, sc, m);
        const float d = f16_at(b);
        const __m256 dmin = _mm256_set1_ps(f16_at(b + 2));
        const __m256i mv = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)m));
        const uint8_t *q = b + (five ? 48 : 16);
        __m256i qh = five ? _mm256_loadu_si256((const __m256i *)(b + 16)) : _mm256_setzero_si256();
        __m512i nib[4];
        for (int i = 0; i < 4; i++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(q + 32 * i));
            __m256i lo = _mm256_and_si256(raw, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            if (five) {
                lo = _mm256_or_si256(
                    lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * i)), one), 4));
                hi = _mm256_or_si256(
                    hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * i + 1)), one), 4));
            }
            nib[i] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        }
        for (int r = 0; r < 4; r++) {
            const size_t o = r * nb + 8 * sb;
            const int8_t *x = qs + r * n + 256 * sb;
            __m256i ms = _mm256_mullo_epi32(mv, _mm256_loadu_si256((const __m256i *)(s + o)));
            accm[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_mul_ps(_mm256_loadu_ps(dx + o), dmin),
                                      accm[r]);
            for (int i = 0; i < 4; i++) {
                __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), nib[i],
                                                _mm512_loadu_si512((const void *)(x + 64 * i)));
                __m512 f = two_scales(d * (float)sc[2 * i] * dx[o + 2 * i],
                                      d * (float)sc[2 * i + 1] * dx[o + 2 * i + 1]);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), f, acc[r]);
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
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(3);
    const __m512i c32 = _mm512_set1_epi8(32);
    const __m128i spread = _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    for (size_t sb = 0; sb < n / 256; sb++, b += 210) {
        const float d = f16_at(b + 208);
        /* codes[2h + k]: activation blocks 4h + 2k and 4h + 2k + 1, with their scales. */
        __m512i codes[4], scv[4];
        for (int h = 0; h < 2; h++) {
            q6k_codes(b, h, m4, m2, codes + 2 * h);
            for (int k = 0; k < 2; k++) {
                uint32_t sc4;
                memcpy(&sc4, b + 192 + 8 * h + 4 * k, 4);
                scv[2 * h + k] = _mm512_cvtepi8_epi32(_mm_shuffle_epi8(_mm_cvtsi32_si128((int)sc4), spread));
            }
        }
        for (int r = 0; r < 4; r++) {
            const size_t o = r * nb + 8 * sb;
            const int8_t *x = qs + r * n + 256 * sb;
            for (int k = 0; k < 4; k++) {
                __m512i xv = _mm512_loadu_si512((const void *)(x + 64 * k));
                __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes[k], xv);
                p = _mm512_sub_epi32(p, _mm512_dpbusd_epi32(_mm512_setzero_si512(), c32, xv));
                p = _mm512_mullo_epi32(p, scv[k]);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p),
                                         two_scales(d * dx[o + 2 * k], d * dx[o + 2 * k + 1]), acc[r]);
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
