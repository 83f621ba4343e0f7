/* AArch64 NEON + dot-product extension (ARMv8.2-A dotprod: sdot), built with
 * -march=armv8.2-a+dotprod and called only when the CPU reports it. */
#include "moela_kernels.h"

#include <arm_neon.h>
#include <string.h>

static inline float f16_at(const uint8_t *p) {
    __fp16 h;
    memcpy(&h, p, 2);
    return (float)h;
}

float mk_vec_dot_q8_0_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (size_t i = 0; i < n / 32; i++, b += 34, qs += 32) {
        const int8_t *q = (const int8_t *)(b + 2);
        int32x4_t p = vdotq_s32(vdupq_n_s32(0), vld1q_s8(q), vld1q_s8(qs));
        p = vdotq_s32(p, vld1q_s8(q + 16), vld1q_s8(qs + 16));
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(p), f16_at(b) * d[i]);
    }
    return vaddvq_f32(acc);
}

float mk_vec_dot_q4_0_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s) {
    const uint8_t *b = (const uint8_t *)w;
    float32x4_t acc = vdupq_n_f32(0.0f);
    float corr = 0.0f;
    for (size_t i = 0; i < n / 32; i++, b += 18, qs += 32) {
        uint8x16_t raw = vld1q_u8(b + 2);
        int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(raw, vdupq_n_u8(0x0f)));
        int8x16_t hi = vreinterpretq_s8_u8(vshrq_n_u8(raw, 4));
        int32x4_t p = vdotq_s32(vdupq_n_s32(0), lo, vld1q_s8(qs));
        p = vdotq_s32(p, hi, vld1q_s8(qs + 16));
        float sc = f16_at(b) * d[i];
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(p), sc);
        corr += sc * (float)s[i];
    }
    return vaddvq_f32(acc) - 8.0f * corr;
}

/* ---- K-quants ---- */

static inline void k_unpack(const uint8_t *s, uint8_t sc[8], uint8_t m[8]) {
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 0x0f) | ((s[j] >> 6) << 4);
        m[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
}

/* Σ a·b over 16 int8 pairs as 4 int32 lanes (sdot). */
static inline int32x4_t kdot(int8x16_t a, int8x16_t b) { return vdotq_s32(vdupq_n_s32(0), a, b); }

/* Bit j of each byte of qh, moved to bit 4 (Q5_K's fifth bit of sub-block j). */
static inline uint8x16_t k_hbit(uint8x16_t qh, int j) {
    return vshlq_n_u8(vandq_u8(vshlq_u8(qh, vdupq_n_s8((int8_t)-j)), vdupq_n_u8(1)), 4);
}

/* Q4_K (five = 0) or Q5_K: per sub-block the integer Σ q·qx times its 6-bit scale (exact),
 * times d·dx; the mins as 8 lanes of dx · dmin · (m·s) per super-block. */
static inline float dot_q45_k_dotprod(size_t n, const uint8_t *b, const int8_t *qs, const float *dx,
                                  const int32_t *s, int five) {
    const size_t bb = five ? 176 : 144;
    float32x4_t acc = vdupq_n_f32(0.0f), accm = vdupq_n_f32(0.0f);
    for (size_t sb = 0; sb < n / 256; sb++, b += bb, qs += 256, dx += 8, s += 8) {
        uint8_t sc[8], m[8];
        k_unpack(b + 4, sc, m);
        float d = f16_at(b), dmin = f16_at(b + 2);
        uint16x8_t m16 = vmovl_u8(vld1_u8(m));
        int32x4_t ms0 = vmulq_s32(vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(m16))), vld1q_s32(s));
        int32x4_t ms1 = vmulq_s32(vreinterpretq_s32_u32(vmovl_u16(vget_high_u16(m16))), vld1q_s32(s + 4));
        accm = vmlaq_f32(accm, vcvtq_f32_s32(ms0), vmulq_n_f32(vld1q_f32(dx), dmin));
        accm = vmlaq_f32(accm, vcvtq_f32_s32(ms1), vmulq_n_f32(vld1q_f32(dx + 4), dmin));
        const uint8_t *q = b + (five ? 48 : 16);
        uint8x16_t qh0 = vdupq_n_u8(0), qh1 = vdupq_n_u8(0);
        if (five) {
            qh0 = vld1q_u8(b + 16);
            qh1 = vld1q_u8(b + 32);
        }
        for (int j = 0; j < 8; j++) {
            uint8x16_t r0 = vld1q_u8(q + 32 * (j / 2)), r1 = vld1q_u8(q + 32 * (j / 2) + 16);
            if (j % 2) {
                r0 = vshrq_n_u8(r0, 4);
                r1 = vshrq_n_u8(r1, 4);
            } else {
                r0 = vandq_u8(r0, vdupq_n_u8(0x0f));
                r1 = vandq_u8(r1, vdupq_n_u8(0x0f));
            }
            if (five) {
                r0 = vorrq_u8(r0, k_hbit(qh0, j));
                r1 = vorrq_u8(r1, k_hbit(qh1, j));
            }
            int32x4_t p = vaddq_s32(kdot(vreinterpretq_s8_u8(r0), vld1q_s8(qs + 32 * j)),
                                    kdot(vreinterpretq_s8_u8(r1), vld1q_s8(qs + 32 * j + 16)));
            p = vmulq_n_s32(p, sc[j]);
            acc = vmlaq_n_f32(acc, vcvtq_f32_s32(p), d * dx[j]);
        }
    }
    return vaddvq_f32(acc) - vaddvq_f32(accm);
}

float mk_vec_dot_q4_k_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s) {
    return dot_q45_k_dotprod(n, (const uint8_t *)w, qs, d, s, 0);
}

float mk_vec_dot_q5_k_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s) {
    return dot_q45_k_dotprod(n, (const uint8_t *)w, qs, d, s, 1);
}

/* Q6_K: codes minus 32 as signed bytes; each 16-element sub-block's integer sum times its int8
 * scale (exact), the two of an activation block added, times d·dx. */
float mk_vec_dot_q6_k_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *dx,
                               const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    const uint8x16_t m4 = vdupq_n_u8(0x0f), m2 = vdupq_n_u8(3);
    const int8x16_t off = vdupq_n_s8(32);
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (size_t sb = 0; sb < n / 256; sb++, b += 210) {
        float d = f16_at(b + 208);
        const int8_t *sc = (const int8_t *)(b + 192);
        for (int h = 0; h < 2; h++, qs += 128, dx += 4) {
            for (int g = 0; g < 4; g++) {
                int32x4_t p = vdupq_n_s32(0);
                for (int k = 0; k < 2; k++) { /* the two 16-element sub-blocks */
                    uint8x16_t ql = vld1q_u8(b + 64 * h + 32 * (g % 2) + 16 * k);
                    uint8x16_t qh = vld1q_u8(b + 128 + 32 * h + 16 * k);
                    uint8x16_t lo = g < 2 ? vandq_u8(ql, m4) : vshrq_n_u8(ql, 4);
                    uint8x16_t hi = vandq_u8(vshlq_u8(qh, vdupq_n_s8((int8_t)(-2 * g))), m2);
                    int8x16_t q = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo, vshlq_n_u8(hi, 4))), off);
                    p = vmlaq_n_s32(p, kdot(q, vld1q_s8(qs + 32 * g + 16 * k)), sc[8 * h + 2 * g + k]);
                }
                acc = vmlaq_n_f32(acc, vcvtq_f32_s32(p), d * dx[g]);
            }
        }
    }
    return vaddvq_f32(acc);
}

/* ---- Q2_K and Q3_K (layouts in moela_kernels.h) ---- */

/* Q2_K: per 16-element half of an activation block, Σq·qx (codes 0..3) times the 4-bit scale
 * and Σqx times the 4-bit min, exact in int32; then dx · (d · Σ - dmin · Σ). */
float mk_vec_dot_q2_k_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *dx,
                                 const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    const uint8x16_t m2 = vdupq_n_u8(3);
    float32x4_t acc = vdupq_n_f32(0.0f), accm = vdupq_n_f32(0.0f);
    for (size_t sb = 0; sb < n / 256; sb++, b += 84) {
        const float d = f16_at(b + 80), dmin = f16_at(b + 82);
        for (int j = 0; j < 8; j++, qs += 32, dx++) {
            const int h = j / 4, g = j % 4;
            int32x4_t p = vdupq_n_s32(0), pm = vdupq_n_s32(0);
            for (int k = 0; k < 2; k++) {
                uint8x16_t ql = vld1q_u8(b + 16 + 32 * h + 16 * k);
                int8x16_t q = vreinterpretq_s8_u8(vandq_u8(vshlq_u8(ql, vdupq_n_s8((int8_t)(-2 * g))), m2));
                int8x16_t x = vld1q_s8(qs + 16 * k);
                const uint8_t sm = b[2 * j + k];
                p = vmlaq_n_s32(p, kdot(q, x), sm & 0x0f);
                pm = vmlaq_n_s32(pm, vpaddlq_s16(vpaddlq_s8(x)), sm >> 4);
            }
            acc = vmlaq_n_f32(acc, vcvtq_f32_s32(p), d * dx[0]);
            accm = vmlaq_n_f32(accm, vcvtq_f32_s32(pm), dmin * dx[0]);
        }
    }
    return vaddvq_f32(acc) - vaddvq_f32(accm);
}

/* Q3_K: codes (third bit from hmask) minus 4 as signed bytes; each 16-element half's integer
 * sum times its signed 6-bit scale (exact), the two halves added, times d·dx. */
float mk_vec_dot_q3_k_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *dx,
                                 const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    const uint8x16_t m2 = vdupq_n_u8(3), one = vdupq_n_u8(1);
    const int8x16_t four = vdupq_n_s8(4);
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (size_t sb = 0; sb < n / 256; sb++, b += 110) {
        const float d = f16_at(b + 108);
        const uint8_t *sp = b + 96;
        int sc[16];
        for (int i = 0; i < 16; i++) {
            int lo = (sp[i % 8] >> (4 * (i / 8))) & 0x0f, hi = (sp[8 + i % 4] >> (2 * (i / 4))) & 3;
            sc[i] = (lo | (hi << 4)) - 32;
        }
        for (int j = 0; j < 8; j++, qs += 32, dx++) {
            const int h = j / 4, g = j % 4;
            int32x4_t p = vdupq_n_s32(0);
            for (int k = 0; k < 2; k++) {
                uint8x16_t ql = vld1q_u8(b + 32 + 32 * h + 16 * k);
                uint8x16_t hm = vld1q_u8(b + 16 * k);
                uint8x16_t lo = vandq_u8(vshlq_u8(ql, vdupq_n_s8((int8_t)(-2 * g))), m2);
                uint8x16_t hi = vandq_u8(vshlq_u8(hm, vdupq_n_s8((int8_t)(-j))), one);
                int8x16_t q = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo, vshlq_n_u8(hi, 2))), four);
                p = vmlaq_n_s32(p, kdot(q, vld1q_s8(qs + 16 * k)), sc[2 * j + k]);
            }
            acc = vmlaq_n_f32(acc, vcvtq_f32_s32(p), d * dx[0]);
        }
    }
    return vaddvq_f32(acc);
}

/* ---- Q4_1, Q5_0, Q5_1, IQ4_NL, IQ4_XS (layouts in moela_kernels.h) ----
 * One loop for every type: a 32-element block is decoded to signed bytes v in element order
 * (elements 0-15 in lo, 16-31 in hi) with x = f·v + m: the codes for Q4_1/Q5_1, codes - 16 for
 * Q5_0, codebook values for IQ4; then Σ v·qx in int32 and dx·(f·Σ + m·s). */

enum { LX_Q4_1, LX_Q5_0, LX_Q5_1, LX_IQ4_NL, LX_IQ4_XS };

/* Fifth bits of 16 elements (qh bits 0-15 from lo16) as 0x10 per byte. */
static inline uint8x16_t lx_hbits(uint32_t lo16) {
    static const uint8_t bits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    uint8x16_t v = vcombine_u8(vdup_n_u8((uint8_t)(lo16 & 0xff)), vdup_n_u8((uint8_t)((lo16 >> 8) & 0xff)));
    return vandq_u8(vtstq_u8(v, vld1q_u8(bits)), vdupq_n_u8(0x10));
}

static inline __attribute__((always_inline)) void lx_block(int type, const uint8_t *w, size_t j,
                                                          int8x16_t *lo, int8x16_t *hi, float *f,
                                                          float *m) {
    static const int8_t kvalues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                       1,    13,   25,  38,  53,  69,  89,  113};
    const uint8_t *b, *q;
    uint32_t qh = 0;
    *m = 0.0f;
    switch (type) {
    case LX_Q4_1: b = w + 20 * j; q = b + 4; *m = f16_at(b + 2); *f = f16_at(b); break;
    case LX_Q5_0: b = w + 22 * j; q = b + 6; memcpy(&qh, b + 2, 4); *f = f16_at(b); break;
    case LX_Q5_1: b = w + 24 * j; q = b + 8; memcpy(&qh, b + 4, 4); *m = f16_at(b + 2); *f = f16_at(b); break;
    case LX_IQ4_NL: b = w + 18 * j; q = b + 2; *f = f16_at(b); break;
    default: {
        b = w + 136 * (j / 8);
        const int i = (int)(j % 8);
        uint16_t h;
        memcpy(&h, b + 2, 2);
        int ls = ((b[4 + i / 2] >> (4 * (i % 2))) & 0x0f) | (((h >> (2 * i)) & 3) << 4);
        *f = f16_at(b) * (float)(ls - 32);
        q = b + 8 + 16 * i;
    }
    }
    uint8x16_t raw = vld1q_u8(q);
    uint8x16_t l = vandq_u8(raw, vdupq_n_u8(0x0f)), h = vshrq_n_u8(raw, 4);
    if (type == LX_IQ4_NL || type == LX_IQ4_XS) {
        int8x16_t kv = vld1q_s8(kvalues);
        *lo = vqtbl1q_s8(kv, l);
        *hi = vqtbl1q_s8(kv, h);
        return;
    }
    if (type == LX_Q5_0 || type == LX_Q5_1) {
        l = vorrq_u8(l, lx_hbits(qh));
        h = vorrq_u8(h, lx_hbits(qh >> 16));
    }
    *lo = vreinterpretq_s8_u8(l);
    *hi = vreinterpretq_s8_u8(h);
    if (type == LX_Q5_0) {
        *lo = vsubq_s8(*lo, vdupq_n_s8(16));
        *hi = vsubq_s8(*hi, vdupq_n_s8(16));
    }
}

static inline __attribute__((always_inline)) float lx_dot_dotprod(int type, size_t n, const void *w,
                                                              const int8_t *qs, const float *dx,
                                                              const int32_t *s) {
    const uint8_t *b = (const uint8_t *)w;
    float32x4_t acc = vdupq_n_f32(0.0f);
    float corr = 0.0f;
    for (size_t i = 0; i < n / 32; i++) {
        int8x16_t lo, hi;
        float f, m;
        lx_block(type, b, i, &lo, &hi, &f, &m);
        const int8_t *x = qs + 32 * i;
        int32x4_t p = vdotq_s32(vdotq_s32(vdupq_n_s32(0), lo, vld1q_s8(x)), hi, vld1q_s8(x + 16));
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(p), f * dx[i]);
        if (type == LX_Q4_1 || type == LX_Q5_1) corr += m * dx[i] * (float)s[i];
    }
    return vaddvq_f32(acc) + corr;
}

float mk_vec_dot_q4_1_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s) {
    return lx_dot_dotprod(LX_Q4_1, n, w, qs, d, s);
}
float mk_vec_dot_q5_0_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s) {
    return lx_dot_dotprod(LX_Q5_0, n, w, qs, d, s);
}
float mk_vec_dot_q5_1_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s) {
    return lx_dot_dotprod(LX_Q5_1, n, w, qs, d, s);
}
float mk_vec_dot_iq4_nl_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s) {
    return lx_dot_dotprod(LX_IQ4_NL, n, w, qs, d, s);
}
float mk_vec_dot_iq4_xs_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s) {
    return lx_dot_dotprod(LX_IQ4_XS, n, w, qs, d, s);
}
