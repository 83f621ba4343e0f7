/* AArch64 NEON + dotprod + i8mm kernels (built with -march=armv8.2-a+dotprod+i8mm; called only
 * when the CPU has FEAT_I8MM). smmla multiplies a 2×8 int8 matrix by an 8×2 one into a 2×2
 * int32 tile: with 8 values of two weight rows as the first operand and the same 8 positions
 * of two tokens' activations as the second, one instruction adds 8 elements of four dot
 * products. Same contracts as the generic GEMMs in moela_kernels.h: the integer block sums are
 * exact (Q4_0 codes are shifted to -8..7 before the multiply, so the sums equal the generic
 * Σq·x - 8·s), and the float results differ from the generic ones only in rounding order. */
#include "moela_kernels.h"

#include <arm_neon.h>
#include <string.h>

static inline float f16_at(const uint8_t *p) {
    __fp16 h;
    memcpy(&h, p, 2);
    return (float)h;
}

enum { WQ8_0, WQ4_0 };

/* The 32 signed values of one weight block: v[0] = elements 0..15, v[1] = 16..31. */
static inline __attribute__((always_inline)) void wblock(int t, const uint8_t *blk, int8x16_t v[2]) {
    if (t == WQ8_0) {
        v[0] = vld1q_s8((const int8_t *)(blk + 2));
        v[1] = vld1q_s8((const int8_t *)(blk + 18));
        return;
    }
    uint8x16_t raw = vld1q_u8(blk + 2);
    const int8x16_t eight = vdupq_n_s8(8);
    v[0] = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(raw, vdupq_n_u8(0x0f))), eight);
    v[1] = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(raw, 4)), eight);
}

/* Two 16-value vectors interleaved 8 at a time: out[0] = a[0..8] ‖ b[0..8] and
 * out[1] = a[8..16] ‖ b[8..16] (smmla's 2×8 operand layout). */
static inline void zip8(int8x16_t a, int8x16_t b, int8x16_t out[2]) {
    int64x2_t a64 = vreinterpretq_s64_s8(a), b64 = vreinterpretq_s64_s8(b);
    out[0] = vreinterpretq_s8_s64(vzip1q_s64(a64, b64));
    out[1] = vreinterpretq_s8_s64(vzip2q_s64(a64, b64));
}

/* One tile of 2·RP weight rows (w[0..2RP]) × 2·TP tokens (xq/xd[0..2TP]): acc[i][j] lanes are
 * (row 2i, token 2j), (2i, 2j+1), (2i+1, 2j), (2i+1, 2j+1). Each weight block is unpacked
 * once for all the tile's tokens and each activation block loaded once for all its rows. */
static inline __attribute__((always_inline)) void tile(int t, int RP, int TP, size_t nb,
                                                       const uint8_t *const *w,
                                                       const int8_t *const *xq,
                                                       const float *const *xd,
                                                       float32x4_t acc[2][2]) {
    const size_t bb = t == WQ8_0 ? 34 : 18;
    for (int i = 0; i < RP; i++)
        for (int j = 0; j < TP; j++) acc[i][j] = vdupq_n_f32(0.0f);
    for (size_t b = 0; b < nb; b++) {
        int8x16_t a[2][4];
        float32x4_t dw[2];
        for (int i = 0; i < RP; i++) {
            const uint8_t *b0 = w[2 * i] + b * bb, *b1 = w[2 * i + 1] + b * bb;
            int8x16_t v0[2], v1[2];
            wblock(t, b0, v0);
            wblock(t, b1, v1);
            zip8(v0[0], v1[0], &a[i][0]);
            zip8(v0[1], v1[1], &a[i][2]);
            dw[i] = vcombine_f32(vdup_n_f32(f16_at(b0)), vdup_n_f32(f16_at(b1)));
        }
        for (int j = 0; j < TP; j++) {
            const int8_t *x0 = xq[2 * j] + 32 * b, *x1 = xq[2 * j + 1] + 32 * b;
            int8x16_t bx[4];
            zip8(vld1q_s8(x0), vld1q_s8(x1), &bx[0]);
            zip8(vld1q_s8(x0 + 16), vld1q_s8(x1 + 16), &bx[2]);
            float32x2_t d2 = vset_lane_f32(xd[2 * j + 1][b], vdup_n_f32(xd[2 * j][b]), 1);
            float32x4_t dx = vcombine_f32(d2, d2);
            for (int i = 0; i < RP; i++) {
                int32x4_t s = vmmlaq_s32(vdupq_n_s32(0), a[i][0], bx[0]);
                s = vmmlaq_s32(s, a[i][1], bx[1]);
                s = vmmlaq_s32(s, a[i][2], bx[2]);
                s = vmmlaq_s32(s, a[i][3], bx[3]);
                acc[i][j] = vfmaq_f32(acc[i][j], vcvtq_f32_s32(s), vmulq_f32(dw[i], dx));
            }
        }
    }
}

/* Tiles of up to 4 rows × 4 tokens. A tile with an odd count repeats its last row or token in
 * the unused slot and does not store that slot's results. */
static inline __attribute__((always_inline)) void gemm_i8mm(int t, size_t n, size_t nrows,
                                                            const void *w, size_t row_bytes,
                                                            size_t ntok, const int8_t *qs,
                                                            const float *d, float *out,
                                                            size_t ldo) {
    const size_t nb = n / 32;
    const uint8_t *wb = (const uint8_t *)w;
    for (size_t r = 0; r < nrows;) {
        const size_t rl = nrows - r, nr = rl >= 4 ? 4 : rl;
        const int rp = nr >= 3 ? 2 : 1;
        const uint8_t *wp[4];
        for (size_t i = 0; i < 4; i++) wp[i] = wb + (r + (i < nr ? i : nr - 1)) * row_bytes;
        for (size_t tt = 0; tt < ntok;) {
            const size_t tl = ntok - tt, nt = tl >= 4 ? 4 : tl;
            const int tp = nt >= 3 ? 2 : 1;
            const int8_t *xq[4];
            const float *xd[4];
            for (size_t j = 0; j < 4; j++) {
                size_t tok = tt + (j < nt ? j : nt - 1);
                xq[j] = qs + tok * n;
                xd[j] = d + tok * nb;
            }
            float32x4_t acc[2][2];
            if (rp == 2 && tp == 2)
                tile(t, 2, 2, nb, wp, xq, xd, acc);
            else if (rp == 2)
                tile(t, 2, 1, nb, wp, xq, xd, acc);
            else if (tp == 2)
                tile(t, 1, 2, nb, wp, xq, xd, acc);
            else
                tile(t, 1, 1, nb, wp, xq, xd, acc);
            for (int i = 0; i < rp; i++)
                for (int j = 0; j < tp; j++) {
                    float v[4];
                    vst1q_f32(v, acc[i][j]);
                    for (size_t l = 0; l < 4; l++) {
                        size_t ri = 2 * (size_t)i + l / 2, tj = 2 * (size_t)j + l % 2;
                        if (ri < nr && tj < nt) out[(tt + tj) * ldo + r + ri] = v[l];
                    }
                }
            tt += nt;
        }
        r += nr;
    }
}

void mk_gemm_q8_0_q8a_i8mm(size_t n, size_t nrows, const void *w, size_t row_bytes, size_t ntok,
                           const int8_t *qs, const float *d, const int32_t *s, float *out,
                           size_t ldo) {
    (void)s;
    gemm_i8mm(WQ8_0, n, nrows, w, row_bytes, ntok, qs, d, out, ldo);
}

void mk_gemm_q4_0_q8a_i8mm(size_t n, size_t nrows, const void *w, size_t row_bytes, size_t ntok,
                           const int8_t *qs, const float *d, const int32_t *s, float *out,
                           size_t ldo) {
    (void)s;
    gemm_i8mm(WQ4_0, n, nrows, w, row_bytes, ntok, qs, d, out, ldo);
}
