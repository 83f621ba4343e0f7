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

/* One tile of 2·RP weight rows × 2·TP tokens (xq/xd[0..2TP], at the chunk's first block) over
 * nb blocks: acc[i][j] lanes are (row 2i, token 2j), (2i, 2j+1), (2i+1, 2j), (2i+1, 2j+1).
 * wz[b][i] holds block b of row pair i already unpacked and zipped into smmla operands and
 * dw[b][i] its scales [d(2i), d(2i), d(2i+1), d(2i+1)], so the weights cost loads only. */
static inline __attribute__((always_inline)) void tile(int RP, int TP, size_t nb,
                                                       const int8x16_t (*wz)[2][4],
                                                       const float32x4_t (*dw)[2],
                                                       const int8_t *const *xq,
                                                       const float *const *xd,
                                                       float32x4_t acc[2][2]) {
    for (int i = 0; i < RP; i++)
        for (int j = 0; j < TP; j++) acc[i][j] = vdupq_n_f32(0.0f);
    for (size_t b = 0; b < nb; b++) {
        for (int j = 0; j < TP; j++) {
            const int8_t *x0 = xq[2 * j] + 32 * b, *x1 = xq[2 * j + 1] + 32 * b;
            int8x16_t bx[4];
            zip8(vld1q_s8(x0), vld1q_s8(x1), &bx[0]);
            zip8(vld1q_s8(x0 + 16), vld1q_s8(x1 + 16), &bx[2]);
            float32x2_t d2 = vset_lane_f32(xd[2 * j + 1][b], vdup_n_f32(xd[2 * j][b]), 1);
            float32x4_t dx = vcombine_f32(d2, d2);
            for (int i = 0; i < RP; i++) {
                const int8x16_t *a = wz[b][i];
                int32x4_t s = vmmlaq_s32(vdupq_n_s32(0), a[0], bx[0]);
                s = vmmlaq_s32(s, a[1], bx[1]);
                s = vmmlaq_s32(s, a[2], bx[2]);
                s = vmmlaq_s32(s, a[3], bx[3]);
                acc[i][j] = vfmaq_f32(acc[i][j], vcvtq_f32_s32(s), vmulq_f32(dw[b][i], dx));
            }
        }
    }
}

#define QC 64 /* blocks per chunk of unpacked rows: 8 KiB of operands + 2 KiB of scales */

/* Groups of up to 4 rows; per group and chunk of QC blocks the rows are unpacked once, then
 * tiles of up to 4 tokens stream past them (a chunk's partial sums are added into `out`, the
 * first chunk stores). A tile with an odd count repeats its last row or token in the unused
 * slot and does not store that slot's results. */
static inline __attribute__((always_inline)) void gemm_i8mm(int t, size_t n, size_t nrows,
                                                            const void *w, size_t row_bytes,
                                                            size_t ntok, const int8_t *qs,
                                                            const float *d, float *out,
                                                            size_t ldo) {
    const size_t nb = n / 32, bb = t == WQ8_0 ? 34 : 18;
    const uint8_t *wb = (const uint8_t *)w;
    int8x16_t wz[QC][2][4];
    float32x4_t dw[QC][2];
    for (size_t r = 0; r < nrows;) {
        const size_t rl = nrows - r, nr = rl >= 4 ? 4 : rl;
        const int rp = nr >= 3 ? 2 : 1;
        const uint8_t *wp[4];
        for (size_t i = 0; i < 4; i++) wp[i] = wb + (r + (i < nr ? i : nr - 1)) * row_bytes;
        for (size_t c0 = 0; c0 < nb; c0 += QC) {
            const size_t nc = nb - c0 < QC ? nb - c0 : QC;
            for (size_t b = 0; b < nc; b++)
                for (int i = 0; i < rp; i++) {
                    const uint8_t *b0 = wp[2 * i] + (c0 + b) * bb, *b1 = wp[2 * i + 1] + (c0 + b) * bb;
                    int8x16_t v0[2], v1[2];
                    wblock(t, b0, v0);
                    wblock(t, b1, v1);
                    zip8(v0[0], v1[0], &wz[b][i][0]);
                    zip8(v0[1], v1[1], &wz[b][i][2]);
                    dw[b][i] = vcombine_f32(vdup_n_f32(f16_at(b0)), vdup_n_f32(f16_at(b1)));
                }
            for (size_t tt = 0; tt < ntok;) {
                const size_t tl = ntok - tt, nt = tl >= 4 ? 4 : tl;
                const int tp = nt >= 3 ? 2 : 1;
                const int8_t *xq[4];
                const float *xd[4];
                for (size_t j = 0; j < 4; j++) {
                    size_t tok = tt + (j < nt ? j : nt - 1);
                    xq[j] = qs + tok * n + 32 * c0;
                    xd[j] = d + tok * nb + c0;
                }
                float32x4_t acc[2][2];
                if (rp == 2 && tp == 2)
                    tile(2, 2, nc, wz, dw, xq, xd, acc);
                else if (rp == 2)
                    tile(2, 1, nc, wz, dw, xq, xd, acc);
                else if (tp == 2)
                    tile(1, 2, nc, wz, dw, xq, xd, acc);
                else
                    tile(1, 1, nc, wz, dw, xq, xd, acc);
                for (int i = 0; i < rp; i++)
                    for (int j = 0; j < tp; j++) {
                        float v[4];
                        vst1q_f32(v, acc[i][j]);
                        for (size_t l = 0; l < 4; l++) {
                            size_t ri = 2 * (size_t)i + l / 2, tj = 2 * (size_t)j + l % 2;
                            if (ri < nr && tj < nt) {
                                float *o = &out[(tt + tj) * ldo + r + ri];
                                *o = c0 ? *o + v[l] : v[l];
                            }
                        }
                    }
                tt += nt;
            }
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

/* ---- K-quant GEMMs (Q4_K, Q5_K, Q6_K × q8a) ----
 *
 * Same tiles (2·RP rows × 2·TP tokens, smmla on 8-value slices of one 32-element sub-block),
 * one sub-block per step. For a group of four rows and a chunk of KC super-blocks, the codes
 * are unpacked once into smmla operands (row pairs zipped 8 values at a time, 8 KiB on the
 * stack) and the per-row scales decoded once into "pair" vectors in the lane order of a tile,
 * [row 2i, row 2i, row 2i+1, row 2i+1]; every token tile then only loads them:
 * Q4_K/Q5_K: a = d·sc, m = dmin·m (float); a tile adds dx · (a·Σq·x - m·s).
 * Q6_K: the int8 scales of the two 16-element halves (int32) and d; the halves are summed by
 * separate smmla chains, scaled in int32 (exact) and added, then times d·dx.
 * The chunk's partial sums are added into `out` (the first chunk stores). */

enum { WQ4_K = 2, WQ5_K, WQ6_K };

#define KC 8 /* super-blocks per chunk of unpacked rows: 8 KiB of codes + 4 KiB of scales */

struct kpair {
    float32x4_t a, m; /* Q6_K: the two halves' int32 scales, bit-cast */
};

/* Lanes j of two rows' vectors r0, r1 (eight values each, as two vectors) as pair vectors
 * out[j] = [r0[j], r0[j], r1[j], r1[j]]. */
static inline void pair_up(const float32x4_t r0[2], const float32x4_t r1[2], float32x4_t out[8]) {
    for (int h = 0; h < 2; h++) {
        float32x4_t z1 = vzip1q_f32(r0[h], r1[h]), z2 = vzip2q_f32(r0[h], r1[h]);
        out[4 * h] = vzip1q_f32(z1, z1);
        out[4 * h + 1] = vzip2q_f32(z1, z1);
        out[4 * h + 2] = vzip1q_f32(z2, z2);
        out[4 * h + 3] = vzip2q_f32(z2, z2);
    }
}

/* Per-row scales of one super-block: Q4_K/Q5_K a = d·sc[0..8], m = dmin·m[0..8]; Q6_K
 * a = even-half scales sc[2j], m = odd-half scales sc[2j+1] (int32, bit-cast), *d = d. */
static inline __attribute__((always_inline)) void krow(int t, const uint8_t *blk, float32x4_t a[2],
                                                       float32x4_t m[2], float *d) {
    if (t == WQ6_K) {
        const int8x16_t sc = vld1q_s8((const int8_t *)(blk + 192));
        const int16x8_t s0 = vmovl_s8(vget_low_s8(sc)), s1 = vmovl_high_s8(sc);
        const int32x4_t w0 = vmovl_s16(vget_low_s16(s0)), w1 = vmovl_high_s16(s0);
        const int32x4_t w2 = vmovl_s16(vget_low_s16(s1)), w3 = vmovl_high_s16(s1);
        a[0] = vreinterpretq_f32_s32(vuzp1q_s32(w0, w1));
        a[1] = vreinterpretq_f32_s32(vuzp1q_s32(w2, w3));
        m[0] = vreinterpretq_f32_s32(vuzp2q_s32(w0, w1));
        m[1] = vreinterpretq_f32_s32(vuzp2q_s32(w2, w3));
        *d = f16_at(blk + 208);
        return;
    }
    /* the 12 packed bytes of 6-bit scales and mins, as in dotprod.c */
    const uint8x16_t v = vld1q_u8(blk + 4);
    const int8x16_t shift = {0, 0, 0, 0, -4, -4, -4, -4, 0, 0, 0, 0, 0, 0, 0, 0};
    const uint8x16_t lo = vandq_u8(v, vdupq_n_u8(0x3f));
    const uint8x16_t b8 = vreinterpretq_u8_u32(vdupq_laneq_u32(vreinterpretq_u32_u8(v), 2));
    const uint8x16_t hi = vorrq_u8(vandq_u8(vshlq_u8(b8, shift), vdupq_n_u8(0x0f)),
                                   vandq_u8(vshrq_n_u8(v, 2), vdupq_n_u8(0x30)));
    const uint8x16_t sm =
        vreinterpretq_u8_u32(vzip1q_u32(vreinterpretq_u32_u8(lo), vreinterpretq_u32_u8(hi)));
    const uint16x8_t sc16 = vmovl_u8(vget_low_u8(sm)), m16 = vmovl_high_u8(sm);
    const float dd = f16_at(blk), dmin = f16_at(blk + 2);
    a[0] = vmulq_n_f32(vcvtq_f32_u32(vmovl_u16(vget_low_u16(sc16))), dd);
    a[1] = vmulq_n_f32(vcvtq_f32_u32(vmovl_high_u16(sc16)), dd);
    m[0] = vmulq_n_f32(vcvtq_f32_u32(vmovl_u16(vget_low_u16(m16))), dmin);
    m[1] = vmulq_n_f32(vcvtq_f32_u32(vmovl_high_u16(m16)), dmin);
    *d = 0.0f;
}

/* The 32 signed values of sub-block j of a K-quant super-block: v[0] = elements 0..15,
 * v[1] = 16..31 (Q4_K/Q5_K codes unsigned, Q6_K codes - 32). Branch-free in j: the nibble is
 * chosen by a shift by vector (0 or -4) and a mask. */
static inline __attribute__((always_inline)) void kblock(int t, const uint8_t *blk, int j,
                                                         int8x16_t v[2]) {
    if (t == WQ6_K) {
        const int h = j / 4, g = j % 4;
        const uint8_t *ql = blk + 64 * h + 32 * (g % 2), *qh = blk + 128 + 32 * h;
        const int8x16_t lsh = vdupq_n_s8((int8_t)(-4 * (g / 2))); /* low or high nibble */
        const int8x16_t hsh = vdupq_n_s8((int8_t)(4 - 2 * g));    /* bits 2g, 2g+1 to 4, 5 */
        for (int k = 0; k < 2; k++) {
            uint8x16_t l = vandq_u8(vshlq_u8(vld1q_u8(ql + 16 * k), lsh), vdupq_n_u8(0x0f));
            uint8x16_t hb = vandq_u8(vshlq_u8(vld1q_u8(qh + 16 * k), hsh), vdupq_n_u8(0x30));
            v[k] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(l, hb)), vdupq_n_s8(32));
        }
        return;
    }
    const uint8_t *q = blk + (t == WQ5_K ? 48 : 16) + 32 * (j / 2);
    const int8x16_t lsh = vdupq_n_s8((int8_t)(-4 * (j % 2)));
    const int8x16_t hsh = vdupq_n_s8((int8_t)(4 - j)); /* Q5_K: bit j to 4 */
    for (int k = 0; k < 2; k++) {
        uint8x16_t r = vandq_u8(vshlq_u8(vld1q_u8(q + 16 * k), lsh), vdupq_n_u8(0x0f));
        if (t == WQ5_K)
            r = vorrq_u8(r, vandq_u8(vshlq_u8(vld1q_u8(blk + 16 + 16 * k), hsh), vdupq_n_u8(0x10)));
        v[k] = vreinterpretq_s8_u8(r);
    }
}

/* One tile over nsb super-blocks: xq/xd/xs[0..2TP] tokens (at the chunk's first super-block),
 * wz[sb][j][i] the unpacked, zipped sub-block j of row pair i, ps[sb][i][j] / pd[sb][i] its
 * pair scales. */
static inline __attribute__((always_inline)) void ktile(int t, int RP, int TP, size_t nsb,
                                                        const int8x16_t (*wz)[8][2][4],
                                                        const int8_t *const *xq,
                                                        const float *const *xd,
                                                        const int32_t *const *xs,
                                                        const struct kpair (*ps)[2][8],
                                                        const float32x4_t (*pd)[2],
                                                        float32x4_t acc[2][2]) {
    for (int i = 0; i < RP; i++)
        for (int j = 0; j < TP; j++) acc[i][j] = vdupq_n_f32(0.0f);
    for (size_t sb = 0; sb < nsb; sb++) {
        for (int j = 0; j < 8; j++) {
            const size_t blk = 8 * sb + (size_t)j;
            for (int u = 0; u < TP; u++) {
                const int8_t *x0 = xq[2 * u] + 32 * blk, *x1 = xq[2 * u + 1] + 32 * blk;
                int8x16_t bx[4];
                zip8(vld1q_s8(x0), vld1q_s8(x1), &bx[0]);
                zip8(vld1q_s8(x0 + 16), vld1q_s8(x1 + 16), &bx[2]);
                const float32x2_t d2 = vset_lane_f32(xd[2 * u + 1][blk], vdup_n_f32(xd[2 * u][blk]), 1);
                const float32x4_t dx = vcombine_f32(d2, d2);
                float32x4_t sx = vdupq_n_f32(0.0f);
                if (t != WQ6_K) {
                    const int32x2_t s2 = vset_lane_s32(xs[2 * u + 1][blk], vdup_n_s32(xs[2 * u][blk]), 1);
                    sx = vcvtq_f32_s32(vcombine_s32(s2, s2));
                }
                for (int i = 0; i < RP; i++) {
                    const int8x16_t *a = wz[sb][j][i];
                    const struct kpair *p = &ps[sb][i][j];
                    if (t == WQ6_K) {
                        int32x4_t s0 = vmmlaq_s32(vmmlaq_s32(vdupq_n_s32(0), a[0], bx[0]), a[1], bx[1]);
                        int32x4_t s1 = vmmlaq_s32(vmmlaq_s32(vdupq_n_s32(0), a[2], bx[2]), a[3], bx[3]);
                        int32x4_t sum = vmlaq_s32(vmulq_s32(s0, vreinterpretq_s32_f32(p->a)), s1,
                                                  vreinterpretq_s32_f32(p->m));
                        acc[i][u] = vfmaq_f32(acc[i][u], vcvtq_f32_s32(sum), vmulq_f32(pd[sb][i], dx));
                    } else {
                        int32x4_t sum = vmmlaq_s32(vdupq_n_s32(0), a[0], bx[0]);
                        sum = vmmlaq_s32(sum, a[1], bx[1]);
                        sum = vmmlaq_s32(sum, a[2], bx[2]);
                        sum = vmmlaq_s32(sum, a[3], bx[3]);
                        float32x4_t v = vmulq_f32(vcvtq_f32_s32(sum), p->a);
                        v = vfmsq_f32(v, p->m, sx);
                        acc[i][u] = vfmaq_f32(acc[i][u], v, dx);
                    }
                }
            }
        }
    }
}

static inline __attribute__((always_inline)) void kgemm_i8mm(int t, size_t n, size_t nrows,
                                                             const void *w, size_t row_bytes,
                                                             size_t ntok, const int8_t *qs,
                                                             const float *d, const int32_t *s,
                                                             float *out, size_t ldo) {
    const size_t nb = n / 32, nsb = n / 256;
    const size_t bb = t == WQ4_K ? 144 : t == WQ5_K ? 176 : 210;
    const uint8_t *wb = (const uint8_t *)w;
    if (ntok <= 2) {
        /* Too few tokens to pay for the unpacking (qemu instruction counts: Q5_K/Q6_K 22-24
         * per block and token-row at 2 tokens against 19 for the one-row dotprod kernels). */
        float (*dot)(size_t, const void *, const int8_t *, const float *, const int32_t *) =
            t == WQ4_K   ? mk_vec_dot_q4_k_q8a_dotprod
            : t == WQ5_K ? mk_vec_dot_q5_k_q8a_dotprod
                         : mk_vec_dot_q6_k_q8a_dotprod;
        for (size_t r = 0; r < nrows; r++)
            for (size_t tt = 0; tt < ntok; tt++)
                out[tt * ldo + r] = dot(n, wb + r * row_bytes, qs + tt * n, d + tt * nb, s + tt * nb);
        return;
    }
    struct kpair ps[KC][2][8];
    float32x4_t pd[KC][2];
    int8x16_t wz[KC][8][2][4];
    for (size_t r = 0; r < nrows;) {
        const size_t rl = nrows - r, nr = rl >= 4 ? 4 : rl;
        const int rp = nr >= 3 ? 2 : 1;
        const uint8_t *wp[4];
        for (size_t i = 0; i < 4; i++) wp[i] = wb + (r + (i < nr ? i : nr - 1)) * row_bytes;
        for (size_t c0 = 0; c0 < nsb; c0 += KC) {
            const size_t nc = nsb - c0 < KC ? nsb - c0 : KC;
            for (size_t sb = 0; sb < nc; sb++)
                for (int i = 0; i < rp; i++) {
                    float32x4_t a0[2], m0[2], a1[2], m1[2], pa[8], pm[8];
                    float d0, d1;
                    krow(t, wp[2 * i] + (c0 + sb) * bb, a0, m0, &d0);
                    krow(t, wp[2 * i + 1] + (c0 + sb) * bb, a1, m1, &d1);
                    pair_up(a0, a1, pa);
                    pair_up(m0, m1, pm);
                    for (int j = 0; j < 8; j++) ps[sb][i][j] = (struct kpair){pa[j], pm[j]};
                    pd[sb][i] = vcombine_f32(vdup_n_f32(d0), vdup_n_f32(d1));
                    for (int j = 0; j < 8; j++) {
                        int8x16_t v0[2], v1[2];
                        kblock(t, wp[2 * i] + (c0 + sb) * bb, j, v0);
                        kblock(t, wp[2 * i + 1] + (c0 + sb) * bb, j, v1);
                        zip8(v0[0], v1[0], &wz[sb][j][i][0]);
                        zip8(v0[1], v1[1], &wz[sb][j][i][2]);
                    }
                }
            for (size_t tt = 0; tt < ntok;) {
                const size_t tl = ntok - tt, nt = tl >= 4 ? 4 : tl;
                const int tp = nt >= 3 ? 2 : 1;
                const int8_t *xq[4];
                const float *xd[4];
                const int32_t *xs[4];
                for (size_t j = 0; j < 4; j++) {
                    size_t tok = tt + (j < nt ? j : nt - 1);
                    xq[j] = qs + tok * n + 256 * c0;
                    xd[j] = d + tok * nb + 8 * c0;
                    xs[j] = s + tok * nb + 8 * c0;
                }
                float32x4_t acc[2][2];
                if (rp == 2 && tp == 2)
                    ktile(t, 2, 2, nc, wz, xq, xd, xs, ps, pd, acc);
                else if (rp == 2)
                    ktile(t, 2, 1, nc, wz, xq, xd, xs, ps, pd, acc);
                else if (tp == 2)
                    ktile(t, 1, 2, nc, wz, xq, xd, xs, ps, pd, acc);
                else
                    ktile(t, 1, 1, nc, wz, xq, xd, xs, ps, pd, acc);
                for (int i = 0; i < rp; i++)
                    for (int j = 0; j < tp; j++) {
                        float v[4];
                        vst1q_f32(v, acc[i][j]);
                        for (size_t l = 0; l < 4; l++) {
                            size_t ri = 2 * (size_t)i + l / 2, tj = 2 * (size_t)j + l % 2;
                            if (ri < nr && tj < nt) {
                                float *o = &out[(tt + tj) * ldo + r + ri];
                                *o = c0 ? *o + v[l] : v[l];
                            }
                        }
                    }
                tt += nt;
            }
        }
        r += nr;
    }
}

void mk_gemm_q4_k_q8a_i8mm(size_t n, size_t nrows, const void *w, size_t row_bytes, size_t ntok,
                           const int8_t *qs, const float *d, const int32_t *s, float *out,
                           size_t ldo) {
    kgemm_i8mm(WQ4_K, n, nrows, w, row_bytes, ntok, qs, d, s, out, ldo);
}

void mk_gemm_q5_k_q8a_i8mm(size_t n, size_t nrows, const void *w, size_t row_bytes, size_t ntok,
                           const int8_t *qs, const float *d, const int32_t *s, float *out,
                           size_t ldo) {
    kgemm_i8mm(WQ5_K, n, nrows, w, row_bytes, ntok, qs, d, s, out, ldo);
}

void mk_gemm_q6_k_q8a_i8mm(size_t n, size_t nrows, const void *w, size_t row_bytes, size_t ntok,
                           const int8_t *qs, const float *d, const int32_t *s, float *out,
                           size_t ldo) {
    (void)s;
    kgemm_i8mm(WQ6_K, n, nrows, w, row_bytes, ntok, qs, d, s, out, ldo);
}
