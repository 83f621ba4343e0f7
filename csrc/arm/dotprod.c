/* AArch64 NEON + dot-product extension (ARMv8.2-A dotprod: sdot), built with
 * -march=armv8.2-a+dotprod and called only when the CPU reports it.
 *
 * Shape of the decode kernels (issue 16): several blocks in flight (four Q8_0/Q4_0 blocks, or
 * the eight sub-blocks of a K-quant super-block, each its own sdot chain), their int32 lanes
 * folded by pairwise adds into one vector of per-block sums, the integer scales (K-quants) and
 * the float scales then applied to four blocks per instruction, and a prefetch a few hundred
 * bytes ahead. Remainders (fewer than four Q8_0/Q4_0 blocks) run after the hot loop. */
#include "moela_kernels.h"

#include <arm_neon.h>
#include <string.h>

static inline float f16_at(const uint8_t *p) {
    __fp16 h;
    memcpy(&h, p, 2);
    return (float)h;
}

/* The f16 scales of four blocks `stride` bytes apart, as f32. */
static inline float32x4_t f16x4_at(const uint8_t *p, size_t stride) {
    uint16_t h[4];
    for (int k = 0; k < 4; k++) memcpy(&h[k], p + k * stride, 2);
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h)));
}

/* Σ a·b over 16 int8 pairs as 4 int32 lanes (sdot). */
static inline int32x4_t kdot(int8x16_t a, int8x16_t b) { return vdotq_s32(vdupq_n_s32(0), a, b); }

/* The four lane sums of p0..p3 as one vector [Σp0, Σp1, Σp2, Σp3]. */
static inline int32x4_t hsum4(int32x4_t p0, int32x4_t p1, int32x4_t p2, int32x4_t p3) {
    return vpaddq_s32(vpaddq_s32(p0, p1), vpaddq_s32(p2, p3));
}

/* Software prefetch of the weight stream, PF_DIST bytes ahead, one line per 64 bytes a step
 * consumes (the x86 kernels' distance; not tuned on ARM hardware). */
#define PF_DIST 2048
#define PREFETCH_STEP(p, bytes)                                                                 \
    do {                                                                                        \
        for (int pf_ = 0; pf_ < (bytes); pf_ += 64) __builtin_prefetch((p) + PF_DIST + pf_);    \
    } while (0)

float mk_vec_dot_q8_0_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    const size_t nb = n / 32;
    float32x4_t acc = vdupq_n_f32(0.0f);
    size_t i = 0;
    for (; i + 4 <= nb; i += 4, b += 4 * 34, qs += 128) {
        PREFETCH_STEP(b, 4 * 34);
        int32x4_t p[4];
        for (int k = 0; k < 4; k++) {
            const int8_t *q = (const int8_t *)(b + 34 * k + 2);
            p[k] = vdotq_s32(kdot(vld1q_s8(q), vld1q_s8(qs + 32 * k)), vld1q_s8(q + 16),
                             vld1q_s8(qs + 32 * k + 16));
        }
        float32x4_t sc = vmulq_f32(f16x4_at(b, 34), vld1q_f32(d + i));
        acc = vfmaq_f32(acc, vcvtq_f32_s32(hsum4(p[0], p[1], p[2], p[3])), sc);
    }
    float sum = vaddvq_f32(acc);
    for (; i < nb; i++, b += 34, qs += 32) {
        const int8_t *q = (const int8_t *)(b + 2);
        int32x4_t p = vdotq_s32(kdot(vld1q_s8(q), vld1q_s8(qs)), vld1q_s8(q + 16), vld1q_s8(qs + 16));
        sum += (float)vaddvq_s32(p) * (f16_at(b) * d[i]);
    }
    return sum;
}

/* Q4_0: the codes stay unsigned (0..15); the -8 offset comes off the four block sums at once
 * as 8·s (s = Σ of the activation block). */
float mk_vec_dot_q4_0_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s) {
    const uint8_t *b = (const uint8_t *)w;
    const size_t nb = n / 32;
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    float32x4_t acc = vdupq_n_f32(0.0f);
    size_t i = 0;
    for (; i + 4 <= nb; i += 4, b += 4 * 18, qs += 128) {
        PREFETCH_STEP(b, 4 * 18);
        int32x4_t p[4];
        for (int k = 0; k < 4; k++) {
            uint8x16_t raw = vld1q_u8(b + 18 * k + 2);
            p[k] = vdotq_s32(kdot(vreinterpretq_s8_u8(vandq_u8(raw, m4)), vld1q_s8(qs + 32 * k)),
                             vreinterpretq_s8_u8(vshrq_n_u8(raw, 4)), vld1q_s8(qs + 32 * k + 16));
        }
        int32x4_t sum4 = vsubq_s32(hsum4(p[0], p[1], p[2], p[3]), vshlq_n_s32(vld1q_s32(s + i), 3));
        acc = vfmaq_f32(acc, vcvtq_f32_s32(sum4), vmulq_f32(f16x4_at(b, 18), vld1q_f32(d + i)));
    }
    float sum = vaddvq_f32(acc);
    for (; i < nb; i++, b += 18, qs += 32) {
        uint8x16_t raw = vld1q_u8(b + 2);
        int32x4_t p = vdotq_s32(kdot(vreinterpretq_s8_u8(vandq_u8(raw, m4)), vld1q_s8(qs)),
                                vreinterpretq_s8_u8(vshrq_n_u8(raw, 4)), vld1q_s8(qs + 16));
        sum += (float)(vaddvq_s32(p) - 8 * s[i]) * (f16_at(b) * d[i]);
    }
    return sum;
}

/* ---- K-quants ---- */

/* The eight 6-bit scales and mins of a Q4_K/Q5_K super-block (12 packed bytes at p; 16 bytes
 * are read, all inside the super-block) as one vector: bytes 0..7 = sc[0..8], 8..15 = m[0..8].
 * sc[j], m[j] for j < 4 are the low 6 bits of bytes j, j+4; for j >= 4 the low / high nibble
 * of byte j+4 with the top two bits of byte j-4 / j above it. */
static inline uint8x16_t k_scales_mins(const uint8_t *p) {
    const uint8x16_t v = vld1q_u8(p);
    const int8x16_t shift = {0, 0, 0, 0, -4, -4, -4, -4, 0, 0, 0, 0, 0, 0, 0, 0};
    uint8x16_t lo = vandq_u8(v, vdupq_n_u8(0x3f));                   /* sc0-3 | m0-3 */
    uint8x16_t b8 = vreinterpretq_u8_u32(vdupq_laneq_u32(vreinterpretq_u32_u8(v), 2));
    uint8x16_t hi = vorrq_u8(vandq_u8(vshlq_u8(b8, shift), vdupq_n_u8(0x0f)),
                             vandq_u8(vshrq_n_u8(v, 2), vdupq_n_u8(0x30))); /* sc4-7 | m4-7 */
    return vreinterpretq_u8_u32(vzip1q_u32(vreinterpretq_u32_u8(lo), vreinterpretq_u32_u8(hi)));
}

/* Bit j of each byte of qh at bit 4, all other bits 0 (even j: to be OR-ed into a low nibble)
 * or bit j at bit 4 above garbage in bits 0..3 (odd j: sri replaces bits 0..3). */
#define HB_EVEN(qh, j) vshrq_n_u8(vshlq_n_u8(qh, 7 - (j)), 7)
#define HB_ODD(qh, j) vshrq_n_u8(vshlq_n_u8(qh, 7 - (j)), 3)

/* Sub-blocks 2i (low nibbles) and 2i+1 (high nibbles) of a Q4_K/Q5_K super-block: their sdot
 * sums with activation blocks 2i, 2i+1 into p[2i], p[2i+1]. */
#define Q45_PAIR(i)                                                                             \
    do {                                                                                        \
        uint8x16_t r0 = vld1q_u8(q + 32 * (i)), r1 = vld1q_u8(q + 32 * (i) + 16);               \
        uint8x16_t a0, a1, b0, b1;                                                              \
        if (five) {                                                                             \
            a0 = vsliq_n_u8(r0, HB_EVEN(qh0, 2 * (i)), 4);                                      \
            a1 = vsliq_n_u8(r1, HB_EVEN(qh1, 2 * (i)), 4);                                      \
            b0 = vsriq_n_u8(HB_ODD(qh0, 2 * (i) + 1), r0, 4);                                   \
            b1 = vsriq_n_u8(HB_ODD(qh1, 2 * (i) + 1), r1, 4);                                   \
        } else {                                                                                \
            a0 = vandq_u8(r0, m4);                                                              \
            a1 = vandq_u8(r1, m4);                                                              \
            b0 = vshrq_n_u8(r0, 4);                                                             \
            b1 = vshrq_n_u8(r1, 4);                                                             \
        }                                                                                       \
        const int8_t *x = qs + 64 * (i);                                                        \
        p[2 * (i)] = vdotq_s32(kdot(vreinterpretq_s8_u8(a0), vld1q_s8(x)),                       \
                               vreinterpretq_s8_u8(a1), vld1q_s8(x + 16));                      \
        p[2 * (i) + 1] = vdotq_s32(kdot(vreinterpretq_s8_u8(b0), vld1q_s8(x + 32)),              \
                                   vreinterpretq_s8_u8(b1), vld1q_s8(x + 48));                  \
    } while (0)

/* Q4_K (five = 0) or Q5_K, one super-block per step: the eight sub-block sums Σq·qx (sdot,
 * codes unsigned) folded into two vectors, times the 6-bit scales (exact int32); the mins as
 * m·s (exact); then per sub-block dx · (d·Σ - dmin·m·s), four sub-blocks per instruction. */
static inline __attribute__((always_inline)) float dot_q45_k_dotprod(size_t n, const uint8_t *b,
                                                                    const int8_t *qs,
                                                                    const float *dx,
                                                                    const int32_t *s,
                                                                    const int five) {
    const size_t bb = five ? 176 : 144;
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
    for (size_t sb = 0; sb < n / 256; sb++, b += bb, qs += 256, dx += 8, s += 8) {
        PREFETCH_STEP(b, (int)bb);
        const uint8_t *q = b + (five ? 48 : 16);
        uint8x16_t qh0 = vdupq_n_u8(0), qh1 = vdupq_n_u8(0);
        if (five) {
            qh0 = vld1q_u8(b + 16);
            qh1 = vld1q_u8(b + 32);
        }
        int32x4_t p[8];
        Q45_PAIR(0);
        Q45_PAIR(1);
        Q45_PAIR(2);
        Q45_PAIR(3);
        const uint8x16_t sm = k_scales_mins(b + 4);
        const uint16x8_t sc16 = vmovl_u8(vget_low_u8(sm)), m16 = vmovl_high_u8(sm);
        int32x4_t i0 = vmulq_s32(hsum4(p[0], p[1], p[2], p[3]),
                                 vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(sc16))));
        int32x4_t i1 = vmulq_s32(hsum4(p[4], p[5], p[6], p[7]),
                                 vreinterpretq_s32_u32(vmovl_high_u16(sc16)));
        int32x4_t ms0 = vmulq_s32(vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(m16))), vld1q_s32(s));
        int32x4_t ms1 = vmulq_s32(vreinterpretq_s32_u32(vmovl_high_u16(m16)), vld1q_s32(s + 4));
        uint32_t dd_bits;
        memcpy(&dd_bits, b, 4);
        const float32x4_t dd = vcvt_f32_f16(vreinterpret_f16_u32(vdup_n_u32(dd_bits))); /* d, dmin */
        float32x4_t t0 = vmulq_laneq_f32(vcvtq_f32_s32(i0), dd, 0);
        float32x4_t t1 = vmulq_laneq_f32(vcvtq_f32_s32(i1), dd, 0);
        t0 = vfmsq_laneq_f32(t0, vcvtq_f32_s32(ms0), dd, 1);
        t1 = vfmsq_laneq_f32(t1, vcvtq_f32_s32(ms1), dd, 1);
        acc0 = vfmaq_f32(acc0, t0, vld1q_f32(dx));
        acc1 = vfmaq_f32(acc1, t1, vld1q_f32(dx + 4));
    }
    return vaddvq_f32(vaddq_f32(acc0, acc1));
}

float mk_vec_dot_q4_k_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s) {
    return dot_q45_k_dotprod(n, (const uint8_t *)w, qs, d, s, 0);
}

float mk_vec_dot_q5_k_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s) {
    return dot_q45_k_dotprod(n, (const uint8_t *)w, qs, d, s, 1);
}

/* Q6_K, one super-block per step: the 6-bit codes built with shift-and-insert (sli/sri) and
 * moved to -32..31; sixteen sdot sums, one per 16-element sub-block, folded into four vectors
 * in scale order, times the int8 scales (exact int32), the two halves of each activation block
 * added pairwise, then dx · d, four blocks per instruction. */
float mk_vec_dot_q6_k_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *dx,
                                  const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    const uint8x16_t m3f = vdupq_n_u8(0x3f), m30 = vdupq_n_u8(0x30);
    const int8x16_t off = vdupq_n_s8(32);
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
    for (size_t sb = 0; sb < n / 256; sb++, b += 210, qs += 256, dx += 8) {
        PREFETCH_STEP(b, 210);
        int32x4_t t[4];
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b + 64 * h, *qhp = b + 128 + 32 * h;
            const int8_t *x = qs + 128 * h;
            int32x4_t p[8]; /* 2·g + k: group g (activation block 4h + g), half k */
            for (int k = 0; k < 2; k++) {
                const uint8x16_t l0 = vld1q_u8(ql + 16 * k), l1 = vld1q_u8(ql + 32 + 16 * k);
                const uint8x16_t qh = vld1q_u8(qhp + 16 * k), qh2 = vshrq_n_u8(qh, 2);
                const int8x16_t c0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(vsliq_n_u8(l0, qh, 4), m3f)), off);
                const int8x16_t c1 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(vsliq_n_u8(l1, qh2, 4), m3f)), off);
                const int8x16_t c2 = vsubq_s8(vreinterpretq_s8_u8(vsriq_n_u8(vandq_u8(qh, m30), l0, 4)), off);
                const int8x16_t c3 = vsubq_s8(vreinterpretq_s8_u8(vsriq_n_u8(vandq_u8(qh2, m30), l1, 4)), off);
                p[0 + k] = kdot(c0, vld1q_s8(x + 16 * k));
                p[2 + k] = kdot(c1, vld1q_s8(x + 32 + 16 * k));
                p[4 + k] = kdot(c2, vld1q_s8(x + 64 + 16 * k));
                p[6 + k] = kdot(c3, vld1q_s8(x + 96 + 16 * k));
            }
            t[2 * h] = hsum4(p[0], p[1], p[2], p[3]);
            t[2 * h + 1] = hsum4(p[4], p[5], p[6], p[7]);
        }
        const int8x16_t sc = vld1q_s8((const int8_t *)(b + 192));
        const int16x8_t s0 = vmovl_s8(vget_low_s8(sc)), s1 = vmovl_high_s8(sc);
        t[0] = vmulq_s32(t[0], vmovl_s16(vget_low_s16(s0)));
        t[1] = vmulq_s32(t[1], vmovl_high_s16(s0));
        t[2] = vmulq_s32(t[2], vmovl_s16(vget_low_s16(s1)));
        t[3] = vmulq_s32(t[3], vmovl_high_s16(s1));
        const float d = f16_at(b + 208);
        acc0 = vfmaq_f32(acc0, vcvtq_f32_s32(vpaddq_s32(t[0], t[1])), vmulq_n_f32(vld1q_f32(dx), d));
        acc1 = vfmaq_f32(acc1, vcvtq_f32_s32(vpaddq_s32(t[2], t[3])), vmulq_n_f32(vld1q_f32(dx + 4), d));
    }
    return vaddvq_f32(vaddq_f32(acc0, acc1));
}

/* ---- Q2_K and Q3_K (layouts in moela_kernels.h) ---- */

/* x >> n for a constant n, n = 0 allowed. */
#define SHR_U8(x, n) ((n) ? vshrq_n_u8((x), (n) ? (n) : 1) : (x))

/* The sixteen half-block sums p[2j + k] (activation block j, half k) folded into four vectors
 * in scale order, times the scales sc[0..16] (int8, sign- or zero-extended by the caller into
 * four int32 vectors), the halves of each block added: [blocks 0..3], [blocks 4..7]. */
static inline void fold_halves(const int32x4_t p[16], const int32x4_t sc[4], int32x4_t out[2]) {
    int32x4_t t[4];
    for (int q = 0; q < 4; q++)
        t[q] = vmulq_s32(hsum4(p[4 * q], p[4 * q + 1], p[4 * q + 2], p[4 * q + 3]), sc[q]);
    out[0] = vpaddq_s32(t[0], t[1]);
    out[1] = vpaddq_s32(t[2], t[3]);
}

/* Q2_K, one super-block per step: codes (0..3) by shift and mask, sixteen sdot sums of
 * 16-element halves folded and scaled by the 4-bit scales (exact int32). The mins need each
 * half's Σx: the first half's by sdot with ones, the second's as the block sum s minus it, so
 * Σ m·X = m_odd·s + (m_even - m_odd)·X_first. Then dx · (d·Σ - dmin·Σ), four blocks per
 * instruction. */
float mk_vec_dot_q2_k_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *dx,
                                  const int32_t *s) {
    const uint8_t *b = (const uint8_t *)w;
    const uint8x16_t m3 = vdupq_n_u8(3), m4 = vdupq_n_u8(0x0f);
    const int8x16_t ones = vdupq_n_s8(1);
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
    for (size_t sb = 0; sb < n / 256; sb++, b += 84, qs += 256, dx += 8, s += 8) {
        PREFETCH_STEP(b, 84);
        const uint8x16_t q0 = vld1q_u8(b + 16), q1 = vld1q_u8(b + 32), q2 = vld1q_u8(b + 48),
                         q3 = vld1q_u8(b + 64);
        int32x4_t p[16], x0[8];
#define Q2_BLOCK(j)                                                                             \
    do {                                                                                        \
        const uint8x16_t c0 = vandq_u8(SHR_U8((j) < 4 ? q0 : q2, 2 * ((j) % 4)), m3);            \
        const uint8x16_t c1 = vandq_u8(SHR_U8((j) < 4 ? q1 : q3, 2 * ((j) % 4)), m3);            \
        const int8x16_t xa = vld1q_s8(qs + 32 * (j)), xb = vld1q_s8(qs + 32 * (j) + 16);         \
        p[2 * (j)] = kdot(vreinterpretq_s8_u8(c0), xa);                                          \
        p[2 * (j) + 1] = kdot(vreinterpretq_s8_u8(c1), xb);                                      \
        x0[(j)] = kdot(ones, xa);                                                               \
    } while (0)
        Q2_BLOCK(0);
        Q2_BLOCK(1);
        Q2_BLOCK(2);
        Q2_BLOCK(3);
        Q2_BLOCK(4);
        Q2_BLOCK(5);
        Q2_BLOCK(6);
        Q2_BLOCK(7);
#undef Q2_BLOCK
        const uint8x16_t sm = vld1q_u8(b);
        const uint8x16_t sc8 = vandq_u8(sm, m4), m8 = vshrq_n_u8(sm, 4);
        const uint16x8_t sc_lo = vmovl_u8(vget_low_u8(sc8)), sc_hi = vmovl_high_u8(sc8);
        const int32x4_t sc[4] = {vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(sc_lo))),
                                 vreinterpretq_s32_u32(vmovl_high_u16(sc_lo)),
                                 vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(sc_hi))),
                                 vreinterpretq_s32_u32(vmovl_high_u16(sc_hi))};
        int32x4_t a[2];
        fold_halves(p, sc, a);
        /* mins of the even (first) and odd (second) halves, blocks 0..7 */
        const uint16x8_t me = vmovl_u8(vget_low_u8(vuzp1q_u8(m8, m8)));
        const uint16x8_t mo = vmovl_u8(vget_low_u8(vuzp2q_u8(m8, m8)));
        const int32x4_t me0 = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(me)));
        const int32x4_t me1 = vreinterpretq_s32_u32(vmovl_high_u16(me));
        const int32x4_t mo0 = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(mo)));
        const int32x4_t mo1 = vreinterpretq_s32_u32(vmovl_high_u16(mo));
        const int32x4_t xf0 = hsum4(x0[0], x0[1], x0[2], x0[3]), xf1 = hsum4(x0[4], x0[5], x0[6], x0[7]);
        const int32x4_t mn0 = vmlaq_s32(vmulq_s32(mo0, vld1q_s32(s)), vsubq_s32(me0, mo0), xf0);
        const int32x4_t mn1 = vmlaq_s32(vmulq_s32(mo1, vld1q_s32(s + 4)), vsubq_s32(me1, mo1), xf1);
        uint32_t dd_bits;
        memcpy(&dd_bits, b + 80, 4);
        const float32x4_t dd = vcvt_f32_f16(vreinterpret_f16_u32(vdup_n_u32(dd_bits))); /* d, dmin */
        float32x4_t t0 = vmulq_laneq_f32(vcvtq_f32_s32(a[0]), dd, 0);
        float32x4_t t1 = vmulq_laneq_f32(vcvtq_f32_s32(a[1]), dd, 0);
        t0 = vfmsq_laneq_f32(t0, vcvtq_f32_s32(mn0), dd, 1);
        t1 = vfmsq_laneq_f32(t1, vcvtq_f32_s32(mn1), dd, 1);
        acc0 = vfmaq_f32(acc0, t0, vld1q_f32(dx));
        acc1 = vfmaq_f32(acc1, t1, vld1q_f32(dx + 4));
    }
    return vaddvq_f32(vaddq_f32(acc0, acc1));
}

/* Q3_K, one super-block per step: code = (2-bit code | hmask bit << 2) - 4 by shift-and-insert,
 * sixteen sdot sums of 16-element halves folded and scaled by the signed 6-bit scales (exact
 * int32; decoded with two table lookups), then dx · d, four blocks per instruction. */
float mk_vec_dot_q3_k_q8a_dotprod(size_t n, const void *w, const int8_t *qs, const float *dx,
                                  const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    const uint8x16_t m7 = vdupq_n_u8(7), m4 = vdupq_n_u8(0x0f);
    const int8x16_t four = vdupq_n_s8(4), off = vdupq_n_s8(32);
    /* the 12 scale bytes sit at v[2..14] of the 16 bytes loaded from b + 94 (inside the
     * super-block): low nibbles of scale i from byte i % 8 (shifted 4·(i / 8)), high bits from
     * byte 8 + i % 4 (shifted 2·(i / 4)) */
    const uint8x16_t lo_idx = {2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5, 6, 7, 8, 9};
    const uint8x16_t hi_idx = {10, 11, 12, 13, 10, 11, 12, 13, 10, 11, 12, 13, 10, 11, 12, 13};
    const int8x16_t lo_sh = {0, 0, 0, 0, 0, 0, 0, 0, -4, -4, -4, -4, -4, -4, -4, -4};
    const int8x16_t hi_sh = {4, 4, 4, 4, 2, 2, 2, 2, 0, 0, 0, 0, -2, -2, -2, -2};
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = vdupq_n_f32(0.0f);
    for (size_t sb = 0; sb < n / 256; sb++, b += 110, qs += 256, dx += 8) {
        PREFETCH_STEP(b, 110);
        const uint8x16_t hm[2] = {vld1q_u8(b), vld1q_u8(b + 16)};
        const uint8x16_t ql[4] = {vld1q_u8(b + 32), vld1q_u8(b + 48), vld1q_u8(b + 64), vld1q_u8(b + 80)};
        int32x4_t p[16];
#define Q3_BLOCK(j)                                                                             \
    do {                                                                                        \
        for (int k = 0; k < 2; k++) {                                                           \
            const uint8x16_t lo = SHR_U8(ql[2 * ((j) / 4) + k], 2 * ((j) % 4));                  \
            const uint8x16_t c = vandq_u8(vsliq_n_u8(lo, SHR_U8(hm[k], (j)), 2), m7);            \
            p[2 * (j) + k] = kdot(vsubq_s8(vreinterpretq_s8_u8(c), four), vld1q_s8(qs + 32 * (j) + 16 * k)); \
        }                                                                                       \
    } while (0)
        Q3_BLOCK(0);
        Q3_BLOCK(1);
        Q3_BLOCK(2);
        Q3_BLOCK(3);
        Q3_BLOCK(4);
        Q3_BLOCK(5);
        Q3_BLOCK(6);
        Q3_BLOCK(7);
#undef Q3_BLOCK
        const uint8x16_t v = vld1q_u8(b + 94);
        const uint8x16_t lo = vandq_u8(vshlq_u8(vqtbl1q_u8(v, lo_idx), lo_sh), m4);
        const uint8x16_t hi = vandq_u8(vshlq_u8(vqtbl1q_u8(v, hi_idx), hi_sh), vdupq_n_u8(0x30));
        const int8x16_t sc8 = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo, hi)), off);
        const int16x8_t sl = vmovl_s8(vget_low_s8(sc8)), sh = vmovl_high_s8(sc8);
        const int32x4_t sc[4] = {vmovl_s16(vget_low_s16(sl)), vmovl_high_s16(sl),
                                 vmovl_s16(vget_low_s16(sh)), vmovl_high_s16(sh)};
        int32x4_t a[2];
        fold_halves(p, sc, a);
        const float d = f16_at(b + 108);
        acc0 = vfmaq_f32(acc0, vcvtq_f32_s32(a[0]), vmulq_n_f32(vld1q_f32(dx), d));
        acc1 = vfmaq_f32(acc1, vcvtq_f32_s32(a[1]), vmulq_n_f32(vld1q_f32(dx + 4), d));
    }
    return vaddvq_f32(vaddq_f32(acc0, acc1));
}

/* ---- Q4_1, Q5_0, Q5_1, IQ4_NL, IQ4_XS: the block decoder is shared with the other ARM file. */
#include "legacy_blocks.h"

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
