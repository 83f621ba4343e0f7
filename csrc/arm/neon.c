/* AArch64 NEON kernels (baseline ARMv8-A: every AArch64 CPU has them). Same contracts as the
 * generic ones in moela_kernels.h. */
#include "moela_kernels.h"

#include <arm_neon.h>
#include <string.h>

static inline float f16_at(const uint8_t *p) {
    __fp16 h;
    memcpy(&h, p, 2);
    return (float)h;
}

/* Σ a[j]·b[j] over 16 int8 pairs as 4 int32 lanes; products ≤ 128·127, pairs fit int16. */
static inline int32x4_t dot16(int8x16_t a, int8x16_t b) {
    int16x8_t p = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    p = vmlal_s8(p, vget_high_s8(a), vget_high_s8(b));
    return vpaddlq_s16(p);
}

float mk_vec_dot_q8_0_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (size_t i = 0; i < n / 32; i++, b += 34, qs += 32) {
        const int8_t *q = (const int8_t *)(b + 2);
        int32x4_t p = vaddq_s32(dot16(vld1q_s8(q), vld1q_s8(qs)),
                                dot16(vld1q_s8(q + 16), vld1q_s8(qs + 16)));
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(p), f16_at(b) * d[i]);
    }
    return vaddvq_f32(acc);
}

float mk_vec_dot_q4_0_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s) {
    const uint8_t *b = (const uint8_t *)w;
    float32x4_t acc = vdupq_n_f32(0.0f);
    float corr = 0.0f;
    for (size_t i = 0; i < n / 32; i++, b += 18, qs += 32) {
        uint8x16_t raw = vld1q_u8(b + 2);
        int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(raw, vdupq_n_u8(0x0f)));
        int8x16_t hi = vreinterpretq_s8_u8(vshrq_n_u8(raw, 4));
        int32x4_t p = vaddq_s32(dot16(lo, vld1q_s8(qs)), dot16(hi, vld1q_s8(qs + 16)));
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

/* Bit j of each byte of qh, moved to bit 4 (Q5_K's fifth bit of sub-block j). */
static inline uint8x16_t k_hbit(uint8x16_t qh, int j) {
    return vshlq_n_u8(vandq_u8(vshlq_u8(qh, vdupq_n_s8((int8_t)-j)), vdupq_n_u8(1)), 4);
}

/* Q4_K (five = 0) or Q5_K: per sub-block the integer Σ q·qx times its 6-bit scale (exact),
 * times d·dx; the mins as 8 lanes of dx · dmin · (m·s) per super-block. */
static inline float dot_q45_k_neon(size_t n, const uint8_t *b, const int8_t *qs, const float *dx,
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
            int32x4_t p = vaddq_s32(dot16(vreinterpretq_s8_u8(r0), vld1q_s8(qs + 32 * j)),
                                    dot16(vreinterpretq_s8_u8(r1), vld1q_s8(qs + 32 * j + 16)));
            p = vmulq_n_s32(p, sc[j]);
            acc = vmlaq_n_f32(acc, vcvtq_f32_s32(p), d * dx[j]);
        }
    }
    return vaddvq_f32(acc) - vaddvq_f32(accm);
}

float mk_vec_dot_q4_k_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s) {
    return dot_q45_k_neon(n, (const uint8_t *)w, qs, d, s, 0);
}

float mk_vec_dot_q5_k_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s) {
    return dot_q45_k_neon(n, (const uint8_t *)w, qs, d, s, 1);
}

/* Q6_K: codes minus 32 as signed bytes; each 16-element sub-block's integer sum times its int8
 * scale (exact), the two of an activation block added, times d·dx. */
float mk_vec_dot_q6_k_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *dx,
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
                    p = vmlaq_n_s32(p, dot16(q, vld1q_s8(qs + 32 * g + 16 * k)), sc[8 * h + 2 * g + k]);
                }
                acc = vmlaq_n_f32(acc, vcvtq_f32_s32(p), d * dx[g]);
            }
        }
    }
    return vaddvq_f32(acc);
}

/* MLA decode attention (see moela_kernels.h): heads in tiles of up to 4, 4 lanes per step
 * (two accumulators per head), scalar tails. The dotprod set reuses these. */
static inline float32x4_t load4_f32(const float *p) { return vld1q_f32(p); }
static inline float32x4_t load4_f16(const uint16_t *p) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}
static inline float one_f32(const float *p) { return *p; }
static inline float one_f16(const uint16_t *p) { return mk_f16_to_f32(*p); }

#define MLA_SCORES_TILE(NAME, T, LOAD, ONE)                                                   \
    static inline __attribute__((always_inline)) void NAME(                                   \
        const int H, size_t row, const float *q, size_t nrows, const T *c, float scale,      \
        float *out, size_t out_stride) {                                                      \
        const size_t full = row - row % 8;                                                    \
        for (size_t j = 0; j < nrows; j++) {                                                  \
            const T *cj = c + j * row;                                                        \
            float32x4_t a0[4], a1[4];                                                         \
            for (int h = 0; h < H; h++) a0[h] = a1[h] = vdupq_n_f32(0.0f);                   \
            for (size_t d = 0; d < full; d += 8) {                                            \
                const float32x4_t c0 = LOAD(cj + d), c1 = LOAD(cj + d + 4);                   \
                for (int h = 0; h < H; h++) {                                                 \
                    a0[h] = vfmaq_f32(a0[h], vld1q_f32(q + h * row + d), c0);                 \
                    a1[h] = vfmaq_f32(a1[h], vld1q_f32(q + h * row + d + 4), c1);             \
                }                                                                             \
            }                                                                                 \
            for (int h = 0; h < H; h++) {                                                     \
                float sum = vaddvq_f32(vaddq_f32(a0[h], a1[h]));                              \
                for (size_t d = full; d < row; d++) sum += q[h * row + d] * ONE(cj + d);      \
                out[h * out_stride + j] = sum * scale;                                        \
            }                                                                                 \
        }                                                                                     \
    }
MLA_SCORES_TILE(scores_tile_f32, float, load4_f32, one_f32)
MLA_SCORES_TILE(scores_tile_f16, uint16_t, load4_f16, one_f16)

/* Rows per block of the weighted sums: the dims of a block of cached rows are swept while
 * they sit in L1/L2, instead of streaming every row once per 16- or 32-dim stripe. */
#define MLA_ROW_BLOCK 64

#define MLA_ACCUM_TILE(NAME, T, LOAD, ONE)                                                    \
    static inline __attribute__((always_inline)) void NAME(                                   \
        const int H, size_t dim, size_t row, const float *p, size_t p_stride, size_t nrows,   \
        const T *c, float *acc) {                                                             \
        const size_t full = dim - dim % 8;                                                    \
        for (size_t j0 = 0; j0 < nrows; j0 += MLA_ROW_BLOCK) {                                \
        const size_t j1 = nrows - j0 < MLA_ROW_BLOCK ? nrows : j0 + MLA_ROW_BLOCK;            \
        for (size_t d = 0; d < full; d += 8) {                                                \
            float32x4_t a0[4], a1[4];                                                         \
            for (int h = 0; h < H; h++) {                                                     \
                a0[h] = vld1q_f32(acc + h * dim + d);                                         \
                a1[h] = vld1q_f32(acc + h * dim + d + 4);                                     \
            }                                                                                 \
            for (size_t j = j0; j < j1; j++) {                                                \
                const float32x4_t c0 = LOAD(c + j * row + d), c1 = LOAD(c + j * row + d + 4); \
                for (int h = 0; h < H; h++) {                                                 \
                    const float w = p[h * p_stride + j];                                      \
                    a0[h] = vfmaq_n_f32(a0[h], c0, w);                                        \
                    a1[h] = vfmaq_n_f32(a1[h], c1, w);                                        \
                }                                                                             \
            }                                                                                 \
            for (int h = 0; h < H; h++) {                                                     \
                vst1q_f32(acc + h * dim + d, a0[h]);                                          \
                vst1q_f32(acc + h * dim + d + 4, a1[h]);                                      \
            }                                                                                 \
        }                                                                                     \
        }                                                                                 \
        for (int h = 0; h < H; h++)                                                           \
            for (size_t j = 0; j < nrows; j++)                                                \
                for (size_t d = full; d < dim; d++)                                           \
                    acc[h * dim + d] += p[h * p_stride + j] * ONE(c + j * row + d);           \
    }
MLA_ACCUM_TILE(accum_tile_f32, float, load4_f32, one_f32)
MLA_ACCUM_TILE(accum_tile_f16, uint16_t, load4_f16, one_f16)

void mk_mla_scores_f32_neon(size_t nq, size_t row, const float *q, size_t nrows,
                            const float *c, float scale, float *out, size_t out_stride) {
    size_t h = 0;
    for (; h + 4 <= nq; h += 4) scores_tile_f32(4, row, q + h * row, nrows, c, scale, out + h * out_stride, out_stride);
    for (; h < nq; h++) scores_tile_f32(1, row, q + h * row, nrows, c, scale, out + h * out_stride, out_stride);
}

void mk_mla_scores_f16_neon(size_t nq, size_t row, const float *q, size_t nrows,
                            const uint16_t *c, float scale, float *out, size_t out_stride) {
    size_t h = 0;
    for (; h + 4 <= nq; h += 4) scores_tile_f16(4, row, q + h * row, nrows, c, scale, out + h * out_stride, out_stride);
    for (; h < nq; h++) scores_tile_f16(1, row, q + h * row, nrows, c, scale, out + h * out_stride, out_stride);
}

void mk_mla_accum_f32_neon(size_t nq, size_t dim, size_t row, const float *p, size_t p_stride,
                           size_t nrows, const float *c, float *acc) {
    size_t h = 0;
    for (; h + 4 <= nq; h += 4) accum_tile_f32(4, dim, row, p + h * p_stride, p_stride, nrows, c, acc + h * dim);
    for (; h < nq; h++) accum_tile_f32(1, dim, row, p + h * p_stride, p_stride, nrows, c, acc + h * dim);
}

void mk_mla_accum_f16_neon(size_t nq, size_t dim, size_t row, const float *p, size_t p_stride,
                           size_t nrows, const uint16_t *c, float *acc) {
    size_t h = 0;
    for (; h + 4 <= nq; h += 4) accum_tile_f16(4, dim, row, p + h * p_stride, p_stride, nrows, c, acc + h * dim);
    for (; h < nq; h++) accum_tile_f16(1, dim, row, p + h * p_stride, p_stride, nrows, c, acc + h * dim);
}

/* ---- Q2_K and Q3_K (layouts in moela_kernels.h) ---- */

/* Q2_K: per 16-element half of an activation block, Σq·qx (codes 0..3) times the 4-bit scale
 * and Σqx times the 4-bit min, exact in int32; then dx · (d · Σ - dmin · Σ). */
float mk_vec_dot_q2_k_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *dx,
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
                p = vmlaq_n_s32(p, dot16(q, x), sm & 0x0f);
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
float mk_vec_dot_q3_k_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *dx,
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
                p = vmlaq_n_s32(p, dot16(q, vld1q_s8(qs + 16 * k)), sc[2 * j + k]);
            }
            acc = vmlaq_n_f32(acc, vcvtq_f32_s32(p), d * dx[0]);
        }
    }
    return vaddvq_f32(acc);
}

/* ---- Float weights (F32, F16, BF16) × f32 activations ----
 * One template per shape, instantiated per weight type (t is a constant after inlining).
 * Weight rows may be misaligned: they are loaded as bytes. F16 is widened with vcvt, BF16 by a
 * 16-bit shift (both exact). The last n % 8 elements are copied into zero-padded buffers, so
 * nothing past the row is read. */
enum { WF32, WF16, WBF16 };

/* Eight weights from p as two f32 vectors. */
static inline __attribute__((always_inline)) void wload8(int t, const uint8_t *p, float32x4_t v[2]) {
    if (t == WF32) {
        v[0] = vreinterpretq_f32_u8(vld1q_u8(p));
        v[1] = vreinterpretq_f32_u8(vld1q_u8(p + 16));
        return;
    }
    uint16x8_t h = vreinterpretq_u16_u8(vld1q_u8(p));
    if (t == WF16) {
        float16x8_t f = vreinterpretq_f16_u16(h);
        v[0] = vcvt_f32_f16(vget_low_f16(f));
        v[1] = vcvt_high_f32_f16(f);
    } else {
        v[0] = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16));
        v[1] = vreinterpretq_f32_u32(vshll_high_n_u16(h, 16));
    }
}

/* The last m < 8 weights and activations, zero-padded to 8. */
static inline __attribute__((always_inline)) void tail8(int t, const uint8_t *p, const float *x, size_t m,
                                                        float32x4_t wv[2], float32x4_t xv[2]) {
    uint8_t wb[32] = {0};
    float xb[8] = {0};
    memcpy(wb, p, m * (t == WF32 ? 4 : 2));
    memcpy(xb, x, m * sizeof *x);
    wload8(t, wb, wv);
    xv[0] = vld1q_f32(xb);
    xv[1] = vld1q_f32(xb + 4);
}

static inline __attribute__((always_inline)) float dot_float_neon(int t, size_t n, const void *w,
                                                                  const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    const size_t es = t == WF32 ? 4 : 2;
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    float32x4_t v[2], u[2];
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const uint8_t *p = b + i * es;
        __builtin_prefetch(p + 1024);
        wload8(t, p, v);
        wload8(t, p + 8 * es, u);
        a0 = vfmaq_f32(a0, v[0], vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, v[1], vld1q_f32(x + i + 4));
        a2 = vfmaq_f32(a2, u[0], vld1q_f32(x + i + 8));
        a3 = vfmaq_f32(a3, u[1], vld1q_f32(x + i + 12));
    }
    if (i + 8 <= n) {
        wload8(t, b + i * es, v);
        a0 = vfmaq_f32(a0, v[0], vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, v[1], vld1q_f32(x + i + 4));
        i += 8;
    }
    if (i < n) {
        tail8(t, b + i * es, x + i, n - i, v, u);
        a2 = vfmaq_f32(a2, v[0], u[0]);
        a3 = vfmaq_f32(a3, v[1], u[1]);
    }
    return vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
}

static inline __attribute__((always_inline)) void dot4_float_neon(int t, size_t n, const void *w,
                                                                  const float *x, float *out) {
    const uint8_t *b = (const uint8_t *)w;
    const size_t es = t == WF32 ? 4 : 2;
    float32x4_t acc[4][2], v[2], u[2];
    for (int r = 0; r < 4; r++) acc[r][0] = acc[r][1] = vdupq_n_f32(0.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        wload8(t, b + i * es, v);
        for (int r = 0; r < 4; r++) {
            acc[r][0] = vfmaq_f32(acc[r][0], v[0], vld1q_f32(x + r * n + i));
            acc[r][1] = vfmaq_f32(acc[r][1], v[1], vld1q_f32(x + r * n + i + 4));
        }
    }
    if (i < n) {
        for (int r = 0; r < 4; r++) {
            tail8(t, b + i * es, x + r * n + i, n - i, v, u);
            acc[r][0] = vfmaq_f32(acc[r][0], v[0], u[0]);
            acc[r][1] = vfmaq_f32(acc[r][1], v[1], u[1]);
        }
    }
    for (int r = 0; r < 4; r++) out[r] = vaddvq_f32(vaddq_f32(acc[r][0], acc[r][1]));
}

float mk_vec_dot_f32_f32_neon(size_t n, const void *w, const float *x) { return dot_float_neon(WF32, n, w, x); }
float mk_vec_dot_f16_f32_neon(size_t n, const void *w, const float *x) { return dot_float_neon(WF16, n, w, x); }
float mk_vec_dot_bf16_f32_neon(size_t n, const void *w, const float *x) { return dot_float_neon(WBF16, n, w, x); }
void mk_vec_dot4_f32_f32_neon(size_t n, const void *w, const float *x, float *out) { dot4_float_neon(WF32, n, w, x, out); }
void mk_vec_dot4_f16_f32_neon(size_t n, const void *w, const float *x, float *out) { dot4_float_neon(WF16, n, w, x, out); }
void mk_vec_dot4_bf16_f32_neon(size_t n, const void *w, const float *x, float *out) { dot4_float_neon(WBF16, n, w, x, out); }

/* ---- Q4_1, Q5_0, Q5_1, IQ4_NL, IQ4_XS: the block decoder is shared with the other ARM file. */
#include "legacy_blocks.h"

static inline __attribute__((always_inline)) float lx_dot_neon(int type, size_t n, const void *w,
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
        int32x4_t p = vaddq_s32(dot16(lo, vld1q_s8(x)), dot16(hi, vld1q_s8(x + 16)));
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(p), f * dx[i]);
        if (type == LX_Q4_1 || type == LX_Q5_1) corr += m * dx[i] * (float)s[i];
    }
    return vaddvq_f32(acc) + corr;
}

float mk_vec_dot_q4_1_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s) {
    return lx_dot_neon(LX_Q4_1, n, w, qs, d, s);
}
float mk_vec_dot_q5_0_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s) {
    return lx_dot_neon(LX_Q5_0, n, w, qs, d, s);
}
float mk_vec_dot_q5_1_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s) {
    return lx_dot_neon(LX_Q5_1, n, w, qs, d, s);
}
float mk_vec_dot_iq4_nl_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s) {
    return lx_dot_neon(LX_IQ4_NL, n, w, qs, d, s);
}
float mk_vec_dot_iq4_xs_q8a_neon(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s) {
    return lx_dot_neon(LX_IQ4_XS, n, w, qs, d, s);
}
