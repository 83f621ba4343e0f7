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
