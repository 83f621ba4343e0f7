/* AArch64 NEON + dotprod (sdot) one-row kernels of low-bit types (layouts in
 * src/tensor/iquant.rs) against q8a activations, built with -march=armv8.2-a+dotprod and
 * called only when the CPU reports it. Codebook types: the grid rows of a 32-element block are
 * put together into two vectors (their values fit int8), the sign bits are applied to the
 * activations (negated where the bit is set), and two sdot give the block's integer sums; one
 * float FMA per block applies the scale. Integer block sums are exact, so results differ from
 * the generic kernels (csrc/generic/iquants.c) only by float summation order. */
#include "../generic/fp4.h"
#include "../generic/iquant_grids.h"
#include "moela_kernels.h"

#include <arm_neon.h>
#include <string.h>

/* csrc/arm/iquants_neon.c builds this file again for CPUs without dotprod, with MK_SDOT an
 * emulation (widening multiplies and pairwise adds: the same integer sums) and the _neon
 * names. */
#ifndef MK_SDOT
#define MK_SDOT vdotq_s32
#define MK_IQ_FN(t) mk_vec_dot_##t##_q8a_dotprod
#endif

static inline float f16_at(const uint8_t *p) {
    __fp16 h;
    memcpy(&h, p, 2);
    return (float)h;
}

static inline uint32_t u32le(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* 0xff in byte j of half m where bit j of sign byte sm is set (value negative). */
static inline uint8x16_t neg_mask(uint8_t s0, uint8_t s1) {
    static const uint8_t bits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    return vtstq_u8(vcombine_u8(vdup_n_u8(s0), vdup_n_u8(s1)), vld1q_u8(bits));
}

/* 16 activations with the signs of the mask applied. */
static inline int8x16_t signed_q(const int8_t *qs, uint8x16_t neg) {
    int8x16_t q = vld1q_s8(qs);
    return vbslq_s8(neg, vnegq_s8(q), q);
}

/* Σ a·b over 16 int8 pairs as 4 int32 lanes (sdot). */
static inline int32x4_t kdot(int8x16_t a, int8x16_t b) { return MK_SDOT(vdupq_n_s32(0), a, b); }

/* Two 64-bit grid rows as 16 int8 values. */
static inline int8x16_t rows2(uint64_t a, uint64_t b) {
    return vreinterpretq_s8_u64(vcombine_u64(vcreate_u64(a), vcreate_u64(b)));
}

/* Four 32-bit grid rows as 16 int8 values. */
static inline int8x16_t rows4(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
    uint32_t v[4] = {a, b, c, d};
    return vreinterpretq_s8_u32(vld1q_u32(v));
}

/* IQ2_XXS: per 32 elements 4 grid indices (bytes) and a u32 with 4 × 7 sign bits and the scale;
 * x = d·(0.5 + ls)·0.25 · grid · sign. */
float MK_IQ_FN(iq2_xxs)(size_t n, const void *w, const int8_t *qs, const float *dx,
                                     const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (size_t sb = 0; sb < n / 256; sb++, b += 66) {
        float d = f16_at(b) * 0.25f;
        for (int ib = 0; ib < 8; ib++, qs += 32) {
            const uint8_t *g = b + 2 + 8 * ib;
            uint32_t aux = u32le(g + 4);
            int8x16_t g0 = rows2(mk_iq2xxs_grid[g[0]], mk_iq2xxs_grid[g[1]]);
            int8x16_t g1 = rows2(mk_iq2xxs_grid[g[2]], mk_iq2xxs_grid[g[3]]);
            int8x16_t q0 = signed_q(qs, neg_mask(mk_ksigns[aux & 127], mk_ksigns[(aux >> 7) & 127]));
            int8x16_t q1 =
                signed_q(qs + 16, neg_mask(mk_ksigns[(aux >> 14) & 127], mk_ksigns[(aux >> 21) & 127]));
            int32x4_t p = MK_SDOT(MK_SDOT(vdupq_n_s32(0), g0, q0), g1, q1);
            float db = d * (0.5f + (float)(aux >> 28));
            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), db * dx[8 * sb + ib]);
        }
    }
    return vaddvq_f32(acc);
}

/* IQ3_XXS: per 32 elements 8 grid indices (4 values each) and a u32 with 4 × 7 sign bits and
 * the scale; x = d·(0.5 + ls)·0.5 · grid · sign. */
float MK_IQ_FN(iq3_xxs)(size_t n, const void *w, const int8_t *qs, const float *dx,
                                     const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (size_t sb = 0; sb < n / 256; sb++, b += 98) {
        float d = f16_at(b) * 0.5f;
        for (int ib = 0; ib < 8; ib++, qs += 32) {
            const uint8_t *g = b + 2 + 8 * ib;
            uint32_t aux = u32le(b + 66 + 4 * ib);
            int8x16_t g0 = rows4(mk_iq3xxs_grid[g[0]], mk_iq3xxs_grid[g[1]], mk_iq3xxs_grid[g[2]],
                                 mk_iq3xxs_grid[g[3]]);
            int8x16_t g1 = rows4(mk_iq3xxs_grid[g[4]], mk_iq3xxs_grid[g[5]], mk_iq3xxs_grid[g[6]],
                                 mk_iq3xxs_grid[g[7]]);
            int8x16_t q0 = signed_q(qs, neg_mask(mk_ksigns[aux & 127], mk_ksigns[(aux >> 7) & 127]));
            int8x16_t q1 =
                signed_q(qs + 16, neg_mask(mk_ksigns[(aux >> 14) & 127], mk_ksigns[(aux >> 21) & 127]));
            int32x4_t p = MK_SDOT(MK_SDOT(vdupq_n_s32(0), g0, q0), g1, q1);
            float db = d * (0.5f + (float)(aux >> 28));
            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), db * dx[8 * sb + ib]);
        }
    }
    return vaddvq_f32(acc);
}

/* IQ1_S: 32 index low bytes, per 32 elements a u16 with 4 × 3 high index bits, the scale and
 * the delta's sign; x = d·(2·ls + 1) · (g ± 1/8), computed in eighths: code = 8·g ± 1. */
float MK_IQ_FN(iq1_s)(size_t n, const void *w, const int8_t *qs, const float *dx,
                                   const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (size_t sb = 0; sb < n / 256; sb++, b += 50) {
        float d = f16_at(b) * 0.125f;
        const uint8_t *ql = b + 2;
        for (int ib = 0; ib < 8; ib++, qs += 32) {
            const uint8_t *g = ql + 4 * ib;
            uint16_t h;
            memcpy(&h, b + 34 + 2 * ib, sizeof h);
            int8x16_t delta = vdupq_n_s8(h & 0x8000 ? -1 : 1);
            int8x16_t g0 = rows2(mk_iq1s_grid[g[0] | ((h << 8) & 0x700)],
                                 mk_iq1s_grid[g[1] | ((h << 5) & 0x700)]);
            int8x16_t g1 = rows2(mk_iq1s_grid[g[2] | ((h << 2) & 0x700)],
                                 mk_iq1s_grid[g[3] | ((h >> 1) & 0x700)]);
            int8x16_t c0 = vaddq_s8(vshlq_n_s8(g0, 3), delta);
            int8x16_t c1 = vaddq_s8(vshlq_n_s8(g1, 3), delta);
            int32x4_t p = MK_SDOT(MK_SDOT(vdupq_n_s32(0), c0, vld1q_s8(qs)), c1, vld1q_s8(qs + 16));
            float dl = d * (float)(2 * ((h >> 12) & 7) + 1);
            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), dl * dx[8 * sb + ib]);
        }
    }
    return vaddvq_f32(acc);
}

/* TQ2_0: 64 bytes of 2-bit codes (element 128c + 32l + j: bits 2l.. of byte 32c + j), f16 d
 * last; x = d·(code - 1), so a block's sum is Σ code·q - s. */
float MK_IQ_FN(tq2_0)(size_t n, const void *w, const int8_t *qs, const float *dx,
                                   const int32_t *s) {
    const uint8_t *b = (const uint8_t *)w;
    const uint8x16_t three = vdupq_n_u8(3);
    float32x4_t acc = vdupq_n_f32(0.0f);
    float acc_s = 0.0f;
    for (size_t sb = 0; sb < n / 256; sb++, b += 66) {
        float d = f16_at(b + 64);
        for (int c = 0; c < 2; c++) {
            uint8x16_t lo = vld1q_u8(b + 32 * c), hi = vld1q_u8(b + 32 * c + 16);
            for (int l = 0; l < 4; l++, qs += 32) {
                size_t blk = 8 * sb + 4 * c + l;
                int8x16_t c0 = vreinterpretq_s8_u8(vandq_u8(lo, three));
                int8x16_t c1 = vreinterpretq_s8_u8(vandq_u8(hi, three));
                lo = vshrq_n_u8(lo, 2);
                hi = vshrq_n_u8(hi, 2);
                int32x4_t p = MK_SDOT(MK_SDOT(vdupq_n_s32(0), c0, vld1q_s8(qs)), c1, vld1q_s8(qs + 16));
                float scale = d * dx[blk];
                acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), scale);
                acc_s -= scale * (float)s[blk];
            }
        }
    }
    return vaddvq_f32(acc) + acc_s;
}

/* The top base-3 digit (q·3) >> 8 of every byte: [q ≥ 86] + [q ≥ 171]. */
static inline int8x16_t ternary_digits(uint8x16_t q) {
    return vreinterpretq_s8_u8(vaddq_u8(vshrq_n_u8(vcgeq_u8(q, vdupq_n_u8(86)), 7),
                                        vshrq_n_u8(vcgeq_u8(q, vdupq_n_u8(171)), 7)));
}

/* TQ1_0: 48 bytes of five base-3 digits (digit m of byte j < 32 is element 32m + j, of byte
 * 32 + j < 48 element 160 + 16m + j), 4 bytes of four (element 240 + 4m + j), f16 d last;
 * digit m of a byte is the top digit of byte·3^m mod 256 (vmulq_u8 wraps); x = d·(digit - 1),
 * so a block's sum is Σ digit·q - s. */
float MK_IQ_FN(tq1_0)(size_t n, const void *w, const int8_t *qs, const float *dx,
                                   const int32_t *s) {
    static const uint8_t hmul[16] = {1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27};
    const uint8_t *b = (const uint8_t *)w;
    const uint8x16_t three = vdupq_n_u8(3), hm = vld1q_u8(hmul);
    float32x4_t acc = vdupq_n_f32(0.0f);
    float acc_s = 0.0f;
    for (size_t sb = 0; sb < n / 256; sb++, b += 54) {
        const float d = f16_at(b + 52);
        uint8x16_t lo = vld1q_u8(b), hi = vld1q_u8(b + 16), t = vld1q_u8(b + 32);
        /* The 16 halves of the 8 blocks: bytes 0..31 by digit, then bytes 32..47 by digit,
         * then the qh bytes' 16 digits. */
        uint8x16_t half[16];
        for (int m = 0; m < 5; m++) {
            half[2 * m] = lo;
            half[2 * m + 1] = hi;
            lo = vmulq_u8(lo, three);
            hi = vmulq_u8(hi, three);
        }
        for (int m = 0; m < 5; m++) {
            half[10 + m] = t;
            t = vmulq_u8(t, three);
        }
        half[15] = vmulq_u8(vreinterpretq_u8_u32(vdupq_n_u32(u32le(b + 48))), hm);
        for (int blk8 = 0; blk8 < 8; blk8++, qs += 32) {
            const size_t blk = 8 * sb + (size_t)blk8;
            int32x4_t p = MK_SDOT(MK_SDOT(vdupq_n_s32(0), ternary_digits(half[2 * blk8]), vld1q_s8(qs)),
                                  ternary_digits(half[2 * blk8 + 1]), vld1q_s8(qs + 16));
            float scale = d * dx[blk];
            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), scale);
            acc_s -= scale * (float)s[blk];
        }
    }
    return vaddvq_f32(acc) + acc_s;
}

/* IQ2_XS: 32 u16 (9-bit grid index, 7 sign bits), 4-bit scales per 16 elements. */
float MK_IQ_FN(iq2_xs)(size_t n, const void *w, const int8_t *qs, const float *dx,
                                    const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (size_t sb = 0; sb < n / 256; sb++, b += 74) {
        float d = f16_at(b) * 0.25f;
        for (int ib = 0; ib < 8; ib++, qs += 32) {
            uint16_t q[4];
            memcpy(q, b + 2 + 8 * ib, sizeof q);
            int8x16_t g0 = rows2(mk_iq2xs_grid[q[0] & 511], mk_iq2xs_grid[q[1] & 511]);
            int8x16_t g1 = rows2(mk_iq2xs_grid[q[2] & 511], mk_iq2xs_grid[q[3] & 511]);
            int8x16_t q0 = signed_q(qs, neg_mask(mk_ksigns[q[0] >> 9], mk_ksigns[q[1] >> 9]));
            int8x16_t q1 = signed_q(qs + 16, neg_mask(mk_ksigns[q[2] >> 9], mk_ksigns[q[3] >> 9]));
            int32x4_t p0 = kdot(g0, q0), p1 = kdot(g1, q1);
            uint8_t sc = b[66 + ib];
            float db = d * dx[8 * sb + ib];
            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p0), db * (0.5f + (float)(sc & 15)));
            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p1), db * (0.5f + (float)(sc >> 4)));
        }
    }
    return vaddvq_f32(acc);
}

/* IQ2_S: 32 index low bytes, 32 sign bytes, 2 high index bits each, 4-bit scales per 16. */
float MK_IQ_FN(iq2_s)(size_t n, const void *w, const int8_t *qs, const float *dx,
                                   const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (size_t sb = 0; sb < n / 256; sb++, b += 82) {
        float d = f16_at(b) * 0.25f;
        const uint8_t *ql = b + 2, *signs = b + 34, *qh = b + 66, *scales = b + 74;
        for (int ib = 0; ib < 8; ib++, qs += 32) {
            const uint8_t *g = ql + 4 * ib, *sg = signs + 4 * ib;
            int h = qh[ib];
            int8x16_t g0 = rows2(mk_iq2s_grid[g[0] | ((h << 8) & 0x300)],
                                 mk_iq2s_grid[g[1] | ((h << 6) & 0x300)]);
            int8x16_t g1 = rows2(mk_iq2s_grid[g[2] | ((h << 4) & 0x300)],
                                 mk_iq2s_grid[g[3] | ((h << 2) & 0x300)]);
            int32x4_t p0 = kdot(g0, signed_q(qs, neg_mask(sg[0], sg[1])));
            int32x4_t p1 = kdot(g1, signed_q(qs + 16, neg_mask(sg[2], sg[3])));
            uint8_t sc = scales[ib];
            float db = d * dx[8 * sb + ib];
            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p0), db * (0.5f + (float)(sc & 15)));
            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p1), db * (0.5f + (float)(sc >> 4)));
        }
    }
    return vaddvq_f32(acc);
}

/* IQ3_S: 64 index low bytes, 9th bits, 32 sign bytes, a 4-bit scale per 32 elements;
 * x = d·(1 + 2·ls) · grid · sign. */
float MK_IQ_FN(iq3_s)(size_t n, const void *w, const int8_t *qs, const float *dx,
                                   const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (size_t sb = 0; sb < n / 256; sb++, b += 110) {
        float d = f16_at(b);
        const uint8_t *ql = b + 2, *qh = b + 66, *signs = b + 74, *scales = b + 106;
        for (int ib = 0; ib < 8; ib++, qs += 32) {
            const uint8_t *g = ql + 8 * ib, *sg = signs + 4 * ib;
            int h = qh[ib];
            int8x16_t g0 = rows4(mk_iq3s_grid[g[0] | ((h << 8) & 0x100)], mk_iq3s_grid[g[1] | ((h << 7) & 0x100)],
                                 mk_iq3s_grid[g[2] | ((h << 6) & 0x100)], mk_iq3s_grid[g[3] | ((h << 5) & 0x100)]);
            int8x16_t g1 = rows4(mk_iq3s_grid[g[4] | ((h << 4) & 0x100)], mk_iq3s_grid[g[5] | ((h << 3) & 0x100)],
                                 mk_iq3s_grid[g[6] | ((h << 2) & 0x100)], mk_iq3s_grid[g[7] | ((h << 1) & 0x100)]);
            int32x4_t p = MK_SDOT(kdot(g0, signed_q(qs, neg_mask(sg[0], sg[1]))), g1,
                                    signed_q(qs + 16, neg_mask(sg[2], sg[3])));
            int ls = (scales[ib / 2] >> (4 * (ib % 2))) & 15;
            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), d * (float)(1 + 2 * ls) * dx[8 * sb + ib]);
        }
    }
    return vaddvq_f32(acc);
}

/* IQ1_M: 32 index low bytes, a nibble per index (3 high bits, the delta's sign), 3-bit scales
 * per 16 elements whose u16s also hold the f16 d in their top nibbles; codes in eighths. */
float MK_IQ_FN(iq1_m)(size_t n, const void *w, const int8_t *qs, const float *dx,
                                   const int32_t *s) {
    (void)s;
    static const uint64_t pm[2] = {0x0101010101010101ULL, ~0ULL}; /* δ bytes: +1, -1 */
    const uint8_t *b = (const uint8_t *)w;
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (size_t sb = 0; sb < n / 256; sb++, b += 56) {
        uint16_t sc[4];
        memcpy(sc, b + 48, sizeof sc);
        uint16_t dh = (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) |
                                 (sc[3] & 0xf000));
        __fp16 dhf;
        memcpy(&dhf, &dh, 2);
        float d = (float)dhf * 0.125f;
        for (int ib = 0; ib < 8; ib++, qs += 32) {
            const uint8_t *g = b + 4 * ib;
            int h0 = b[32 + 2 * ib], h1 = b[33 + 2 * ib];
            int8x16_t g0 = rows2(mk_iq1s_grid[g[0] | ((h0 << 8) & 0x700)],
                                 mk_iq1s_grid[g[1] | ((h0 << 4) & 0x700)]);
            int8x16_t g1 = rows2(mk_iq1s_grid[g[2] | ((h1 << 8) & 0x700)],
                                 mk_iq1s_grid[g[3] | ((h1 << 4) & 0x700)]);
            int8x16_t d0 = rows2(pm[(h0 >> 3) & 1], pm[(h0 >> 7) & 1]);
            int8x16_t d1 = rows2(pm[(h1 >> 3) & 1], pm[(h1 >> 7) & 1]);
            int32x4_t p0 = kdot(vaddq_s8(vshlq_n_s8(g0, 3), d0), vld1q_s8(qs));
            int32x4_t p1 = kdot(vaddq_s8(vshlq_n_s8(g1, 3), d1), vld1q_s8(qs + 16));
            int lo = (sc[ib / 2] >> (6 * (ib % 2))) & 7, hi = (sc[ib / 2] >> (6 * (ib % 2) + 3)) & 7;
            float db = d * dx[8 * sb + ib];
            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p0), db * (float)(2 * lo + 1));
            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p1), db * (float)(2 * hi + 1));
        }
    }
    return vaddvq_f32(acc);
}

/* MXFP4: 32-element blocks of an E8M0 exponent and 16 nibble bytes (element j low, j + 16
 * high) indexing the doubled E2M1 values (tbl lookup); x = 2^(e-128) · v. */
float MK_IQ_FN(mxfp4)(size_t n, const void *w, const int8_t *qs, const float *dx,
                                   const int32_t *s) {
    (void)s;
    const int8x16_t tbl = vld1q_s8(mk_e2m1_doubled());
    const uint8x16_t m4 = vdupq_n_u8(15);
    const uint8_t *b = (const uint8_t *)w;
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (size_t blk = 0; blk < n / 32; blk++, b += 17, qs += 32) {
        uint8x16_t bytes = vld1q_u8(b + 1);
        int8x16_t lo = vqtbl1q_s8(tbl, vandq_u8(bytes, m4));
        int8x16_t hi = vqtbl1q_s8(tbl, vshrq_n_u8(bytes, 4));
        int32x4_t p = MK_SDOT(kdot(lo, vld1q_s8(qs)), hi, vld1q_s8(qs + 16));
        uint32_t bits = b[0] < 2 ? 0x00200000u << b[0] : (uint32_t)(b[0] - 1) << 23;
        float e;
        memcpy(&e, &bits, sizeof e);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), e * dx[blk]);
    }
    return vaddvq_f32(acc);
}

/* NVFP4: 64-element blocks of 4 UE4M3 scale bytes (one per 16 elements) and 32 nibble bytes
 * (byte 8s + j: element 16s + j low, 16s + 8 + j high) indexing the doubled E2M1 values;
 * a 16-element sub-block is the low halves of its 8 bytes' lookups, then the high ones. */
float MK_IQ_FN(nvfp4)(size_t n, const void *w, const int8_t *qs, const float *dx,
                      const int32_t *s) {
    (void)s;
    const int8x16_t tbl = vld1q_s8(mk_e2m1_doubled());
    const uint8x16_t m4 = vdupq_n_u8(15);
    const uint8_t *b = (const uint8_t *)w;
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (size_t blk = 0; blk < n / 64; blk++, b += 36) {
        for (int h = 0; h < 2; h++, qs += 32) {
            uint8x16_t bytes = vld1q_u8(b + 4 + 16 * h);
            int8x16_t lo = vqtbl1q_s8(tbl, vandq_u8(bytes, m4));
            int8x16_t hi = vqtbl1q_s8(tbl, vshrq_n_u8(bytes, 4));
            int32x4_t p0 = kdot(vcombine_s8(vget_low_s8(lo), vget_low_s8(hi)), vld1q_s8(qs));
            int32x4_t p1 = kdot(vcombine_s8(vget_high_s8(lo), vget_high_s8(hi)), vld1q_s8(qs + 16));
            float d = dx[2 * blk + h];
            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p0), mk_ue4m3_half(b[2 * h]) * d);
            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p1), mk_ue4m3_half(b[2 * h + 1]) * d);
        }
    }
    return vaddvq_f32(acc);
}

/* Q1_0: 128-element blocks of an f16 d and 16 bytes of sign bits (element j: bit j%8 of
 * byte j/8; set: +d, clear: -d): the bits become ±1 bytes (vtst, bit select). */
float MK_IQ_FN(q1_0)(size_t n, const void *w, const int8_t *qs, const float *dx,
                     const int32_t *s) {
    (void)s;
    static const uint8_t bits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t bitv = vld1q_u8(bits);
    const int8x16_t plus = vdupq_n_s8(1), minus = vdupq_n_s8(-1);
    const uint8_t *b = (const uint8_t *)w;
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (size_t blk = 0; blk < n / 128; blk++, b += 18) {
        float d = f16_at(b);
        for (int k = 0; k < 4; k++, qs += 32) {
            const uint8_t *m = b + 2 + 4 * k;
            uint8x16_t set0 = vtstq_u8(vcombine_u8(vdup_n_u8(m[0]), vdup_n_u8(m[1])), bitv);
            uint8x16_t set1 = vtstq_u8(vcombine_u8(vdup_n_u8(m[2]), vdup_n_u8(m[3])), bitv);
            int32x4_t p = MK_SDOT(kdot(vbslq_s8(set0, plus, minus), vld1q_s8(qs)),
                                  vbslq_s8(set1, plus, minus), vld1q_s8(qs + 16));
            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), d * dx[4 * blk + k]);
        }
    }
    return vaddvq_f32(acc);
}

/* Q2_0: 64-element blocks of an f16 d and 16 bytes of 2-bit codes (element j: bits 2(j%4) of
 * byte j/4); x = d·(code - 1): each byte is repeated 4 times (tbl) and shifted right by 0, 2,
 * 4, 6 (vshl by negative counts). */
float MK_IQ_FN(q2_0)(size_t n, const void *w, const int8_t *qs, const float *dx,
                     const int32_t *s) {
    (void)s;
    static const uint8_t rep[16] = {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3};
    static const int8_t shr[16] = {0, -2, -4, -6, 0, -2, -4, -6, 0, -2, -4, -6, 0, -2, -4, -6};
    const uint8x16_t idx0 = vld1q_u8(rep), idx1 = vaddq_u8(idx0, vdupq_n_u8(4));
    const int8x16_t shifts = vld1q_s8(shr);
    const uint8x16_t three = vdupq_n_u8(3);
    const int8x16_t one = vdupq_n_s8(1);
    const uint8_t *b = (const uint8_t *)w;
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (size_t blk = 0; blk < n / 64; blk++, b += 18) {
        float d = f16_at(b);
        for (int h = 0; h < 2; h++, qs += 32) {
            uint8x8_t v = vld1_u8(b + 2 + 8 * h);
            uint8x16_t vv = vcombine_u8(v, v);
            int8x16_t c0 = vsubq_s8(
                vreinterpretq_s8_u8(vandq_u8(vshlq_u8(vqtbl1q_u8(vv, idx0), shifts), three)), one);
            int8x16_t c1 = vsubq_s8(
                vreinterpretq_s8_u8(vandq_u8(vshlq_u8(vqtbl1q_u8(vv, idx1), shifts), three)), one);
            int32x4_t p = MK_SDOT(kdot(c0, vld1q_s8(qs)), c1, vld1q_s8(qs + 16));
            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), d * dx[2 * blk + h]);
        }
    }
    return vaddvq_f32(acc);
}
