/* The block decoder shared by csrc/arm/neon.c and csrc/arm/dotprod.c for Q4_1, Q5_0, Q5_1,
 * IQ4_NL and IQ4_XS (plain NEON: both files may use it). Included inside those files after
 * their f16 helpers, which it calls. */
#ifndef MOELA_ARM_LEGACY_BLOCKS_H
#define MOELA_ARM_LEGACY_BLOCKS_H

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

#endif
