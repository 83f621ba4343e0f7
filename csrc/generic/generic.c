/* Portable scalar reference kernels (see moela_kernels.h). Written for clarity, not speed:
 * every SIMD kernel is tested against these. */
#include "moela_kernels.h"

#include <math.h>
#include <string.h>

float mk_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {
            /* Subnormal: normalise the mantissa. */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while ((man & 0x400u) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float mk_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static uint16_t read_u16le(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}

/* Float rows are read element by element with memcpy: they need no alignment. */
static float f32_at(const uint8_t *p) {
    float f;
    memcpy(&f, p, sizeof f);
    return f;
}

float mk_vec_dot_f32_f32_generic(size_t n, const void *w, const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) sum += f32_at(b + 4 * i) * x[i];
    return sum;
}

float mk_vec_dot_f16_f32_generic(size_t n, const void *w, const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) sum += mk_f16_to_f32(read_u16le(b + 2 * i)) * x[i];
    return sum;
}

float mk_vec_dot_bf16_f32_generic(size_t n, const void *w, const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) sum += mk_bf16_to_f32(read_u16le(b + 2 * i)) * x[i];
    return sum;
}

float mk_vec_dot_q8_0_f32_generic(size_t n, const void *w, const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    float sum = 0.0f;
    for (size_t blk = 0; blk < n / 32; blk++, b += 34, x += 32) {
        float d = mk_f16_to_f32(read_u16le(b));
        const int8_t *q = (const int8_t *)(b + 2);
        float s = 0.0f;
        for (int j = 0; j < 32; j++) s += (float)q[j] * x[j];
        sum += d * s;
    }
    return sum;
}

float mk_vec_dot_q4_0_f32_generic(size_t n, const void *w, const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    float sum = 0.0f;
    for (size_t blk = 0; blk < n / 32; blk++, b += 18, x += 32) {
        float d = mk_f16_to_f32(read_u16le(b));
        const uint8_t *q = b + 2;
        float s = 0.0f;
        for (int j = 0; j < 16; j++) {
            s += (float)((int)(q[j] & 0x0f) - 8) * x[j];
            s += (float)((int)(q[j] >> 4) - 8) * x[j + 16];
        }
        sum += d * s;
    }
    return sum;
}

void mk_quantize_row_q8a_generic(size_t n, const float *x, int8_t *qs, float *d, int32_t *s) {
    for (size_t b = 0; b < n / 32; b++, x += 32, qs += 32) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) {
            float a = fabsf(x[j]);
            if (a > amax) amax = a;
        }
        float scale = amax / 127.0f;
        float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < 32; j++) {
            /* Round half away from zero (= lroundf) without a libm call: clamp first (NaN
             * goes to -127 like before), then truncate and correct by the exact remainder. */
            float v = x[j] * inv;
            if (!(v > -127.0f)) v = -127.0f;
            if (v > 127.0f) v = 127.0f;
            int q = (int)v;
            float rem = v - (float)q;
            if (rem >= 0.5f) q++;
            if (rem <= -0.5f) q--;
            qs[j] = (int8_t)q;
            sum += (int32_t)q;
        }
        d[b] = scale;
        s[b] = sum;
    }
}

float mk_vec_dot_q8_0_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    float sum = 0.0f;
    for (size_t blk = 0; blk < n / 32; blk++, b += 34, qs += 32) {
        const int8_t *q = (const int8_t *)(b + 2);
        int32_t isum = 0;
        for (int j = 0; j < 32; j++) isum += (int32_t)q[j] * qs[j];
        sum += mk_f16_to_f32(read_u16le(b)) * d[blk] * (float)isum;
    }
    return sum;
}

float mk_vec_dot_q4_0_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s) {
    const uint8_t *b = (const uint8_t *)w;
    float sum = 0.0f;
    for (size_t blk = 0; blk < n / 32; blk++, b += 18, qs += 32) {
        const uint8_t *q = b + 2;
        int32_t isum = 0;
        for (int j = 0; j < 16; j++) {
            isum += (int32_t)(q[j] & 0x0f) * qs[j];
            isum += (int32_t)(q[j] >> 4) * qs[j + 16];
        }
        isum -= 8 * s[blk];
        sum += mk_f16_to_f32(read_u16le(b)) * d[blk] * (float)isum;
    }
    return sum;
}

/* Reference GEMMs: every (row, token) pair through the one-row kernel, so the ISA versions
 * are checked against exactly the generic dot products. */
typedef float (*q8a_dot_fn)(size_t, const void *, const int8_t *, const float *, const int32_t *);

static void gemm_by_rows(q8a_dot_fn dot, size_t n, size_t nrows, const void *w,
                         size_t row_bytes, size_t ntok, const int8_t *qs, const float *d,
                         const int32_t *s, float *out, size_t ldo) {
    const size_t nb = n / 32;
    for (size_t r = 0; r < nrows; r++) {
        const uint8_t *row = (const uint8_t *)w + r * row_bytes;
        for (size_t t = 0; t < ntok; t++)
            out[t * ldo + r] = dot(n, row, qs + t * n, d + t * nb, s + t * nb);
    }
}

#define GENERIC_GEMM(T)                                                                       \
    void mk_gemm_##T##_q8a_generic(size_t n, size_t nrows, const void *w, size_t row_bytes,  \
                                   size_t ntok, const int8_t *qs, const float *d,            \
                                   const int32_t *s, float *out, size_t ldo) {               \
        gemm_by_rows(mk_vec_dot_##T##_q8a_generic, n, nrows, w, row_bytes, ntok, qs, d, s,   \
                     out, ldo);                                                               \
    }
GENERIC_GEMM(q8_0)
GENERIC_GEMM(q4_0)
GENERIC_GEMM(q4_k)
GENERIC_GEMM(q5_k)
GENERIC_GEMM(q6_k)

/* ---- K-quants (256-element super-blocks; layouts in moela_kernels.h) ---- */

/* 6-bit scale and min of sub-block j (0..8) from the 12 packed bytes. */
static void k_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Code (0..15 or 0..31) of element l of sub-block j of a Q4_K (qh NULL) / Q5_K super-block. */
static int k_code45(const uint8_t *qs, const uint8_t *qh, int j, int l) {
    int q = (qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 0x0f;
    if (qh) q |= ((qh[l] >> j) & 1) << 4;
    return q;
}

/* Code (0..63) of element e of a Q6_K super-block. */
static int k_code6(const uint8_t *b, int e) {
    int h = e / 128, g = (e % 128) / 32, l = e % 32;
    int ql = b[64 * h + 32 * (g % 2) + l];
    int lo = g < 2 ? (ql & 0x0f) : (ql >> 4);
    return lo | (((b[128 + 32 * h + l] >> (2 * g)) & 3) << 4);
}

static float dot_q45_k_f32(size_t n, const uint8_t *b, const float *x, int five) {
    const size_t bb = five ? 176 : 144;
    float sum = 0.0f;
    for (size_t sb = 0; sb < n / 256; sb++, b += bb, x += 256) {
        float d = mk_f16_to_f32(read_u16le(b)), dmin = mk_f16_to_f32(read_u16le(b + 2));
        const uint8_t *qh = five ? b + 16 : NULL;
        const uint8_t *qs = five ? b + 48 : b + 16;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            k_scale_min(b + 4, j, &sc, &m);
            float ds = d * (float)sc, dm = dmin * (float)m;
            for (int l = 0; l < 32; l++) sum += (ds * (float)k_code45(qs, qh, j, l) - dm) * x[32 * j + l];
        }
    }
    return sum;
}

float mk_vec_dot_q4_k_f32_generic(size_t n, const void *w, const float *x) {
    return dot_q45_k_f32(n, (const uint8_t *)w, x, 0);
}

float mk_vec_dot_q5_k_f32_generic(size_t n, const void *w, const float *x) {
    return dot_q45_k_f32(n, (const uint8_t *)w, x, 1);
}

float mk_vec_dot_q6_k_f32_generic(size_t n, const void *w, const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    float sum = 0.0f;
    for (size_t sb = 0; sb < n / 256; sb++, b += 210, x += 256) {
        float d = mk_f16_to_f32(read_u16le(b + 208));
        for (int e = 0; e < 256; e++) {
            float ds = d * (float)(int8_t)b[192 + e / 16];
            sum += ds * (float)(k_code6(b, e) - 32) * x[e];
        }
    }
    return sum;
}

/* Q4_K / Q5_K × q8a: sub-block j of super-block sb lines up with activation block 8·sb + j, so
 * Σ (d·sc·q - dmin·m)·x = dx · (d · sc·Σq·qx - dmin · m·s). */
static float dot_q45_k_q8a(size_t n, const uint8_t *b, const int8_t *qs, const float *dx,
                           const int32_t *s, int five) {
    const size_t bb = five ? 176 : 144;
    float sum = 0.0f;
    for (size_t sb = 0; sb < n / 256; sb++, b += bb) {
        float d = mk_f16_to_f32(read_u16le(b)), dmin = mk_f16_to_f32(read_u16le(b + 2));
        const uint8_t *qh = five ? b + 16 : NULL;
        const uint8_t *q = five ? b + 48 : b + 16;
        for (int j = 0; j < 8; j++, qs += 32) {
            int sc, m;
            k_scale_min(b + 4, j, &sc, &m);
            const uint8_t *c = q + 32 * (j / 2);
            const int shift = 4 * (j % 2);
            int32_t isum = 0;
            if (qh) {
                for (int l = 0; l < 32; l++)
                    isum += (((c[l] >> shift) & 0x0f) | (((qh[l] >> j) & 1) << 4)) * qs[l];
            } else {
                for (int l = 0; l < 32; l++) isum += ((c[l] >> shift) & 0x0f) * qs[l];
            }
            size_t blk = 8 * sb + (size_t)j;
            sum += dx[blk] * (d * (float)(sc * isum) - dmin * (float)(m * s[blk]));
        }
    }
    return sum;
}

float mk_vec_dot_q4_k_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s) {
    return dot_q45_k_q8a(n, (const uint8_t *)w, qs, d, s, 0);
}

float mk_vec_dot_q5_k_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s) {
    return dot_q45_k_q8a(n, (const uint8_t *)w, qs, d, s, 1);
}

/* Q6_K × q8a: per activation block of 32, the two 16-element sub-blocks' integer sums of
 * (q-32)·qx, weighted by their int8 scales (exact in int32), times d · dx. */
float mk_vec_dot_q6_k_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *dx,
                                  const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    float sum = 0.0f;
    for (size_t sb = 0; sb < n / 256; sb++, b += 210) {
        float d = mk_f16_to_f32(read_u16le(b + 208));
        const int8_t *sc = (const int8_t *)(b + 192);
        for (int j = 0; j < 8; j++, qs += 32) {
            /* Activation block j is group g = j % 4 of half h = j / 4 (see k_code6). */
            const uint8_t *ql = b + 64 * (j / 4) + 32 * (j % 2), *qh = b + 128 + 32 * (j / 4);
            const int lshift = (j % 4) < 2 ? 0 : 4, hshift = 2 * (j % 4);
            int32_t isum[2] = {0, 0};
            for (int k = 0; k < 2; k++) {
                int32_t acc = 0;
                for (int l = 16 * k; l < 16 * k + 16; l++) {
                    int q = ((ql[l] >> lshift) & 0x0f) | (((qh[l] >> hshift) & 3) << 4);
                    acc += (q - 32) * qs[l];
                }
                isum[k] = acc;
            }
            sum += dx[8 * sb + (size_t)j] * (d * (float)(sc[2 * j] * isum[0] + sc[2 * j + 1] * isum[1]));
        }
    }
    return sum;
}

void mk_group_q8a_generic(size_t n, const int8_t *qs, const float *d, const int32_t *s,
                          int8_t *gqs, float *gd, int32_t *gs) {
    for (size_t g = 0; g < n / 128; g++) {
        for (int k = 0; k < 4; k++) {
            const size_t blk = 4 * g + (size_t)k;
            for (int j = 0; j < 16; j++) {
                gqs[128 * g + 16 * k + j] = qs[32 * blk + j];
                gqs[128 * g + 64 + 16 * k + j] = qs[32 * blk + 16 + j];
            }
            for (int l = 0; l < 4; l++) {
                gd[16 * g + 4 * k + l] = d[blk];
                gs[16 * g + 4 * k + l] = -2 * s[blk];
            }
        }
    }
}

void mk_mla_scores_f32_generic(size_t nq, size_t row, const float *q, size_t nrows,
                               const float *c, float scale, float *out, size_t out_stride) {
    for (size_t h = 0; h < nq; h++)
        for (size_t j = 0; j < nrows; j++) {
            float sum = 0.0f;
            for (size_t d = 0; d < row; d++) sum += q[h * row + d] * c[j * row + d];
            out[h * out_stride + j] = sum * scale;
        }
}

void mk_mla_scores_f16_generic(size_t nq, size_t row, const float *q, size_t nrows,
                               const uint16_t *c, float scale, float *out, size_t out_stride) {
    for (size_t h = 0; h < nq; h++)
        for (size_t j = 0; j < nrows; j++) {
            float sum = 0.0f;
            for (size_t d = 0; d < row; d++)
                sum += q[h * row + d] * mk_f16_to_f32(c[j * row + d]);
            out[h * out_stride + j] = sum * scale;
        }
}

void mk_mla_accum_f32_generic(size_t nq, size_t dim, size_t row, const float *p,
                              size_t p_stride, size_t nrows, const float *c, float *acc) {
    for (size_t h = 0; h < nq; h++)
        for (size_t j = 0; j < nrows; j++) {
            const float w = p[h * p_stride + j];
            for (size_t d = 0; d < dim; d++) acc[h * dim + d] += w * c[j * row + d];
        }
}

void mk_mla_accum_f16_generic(size_t nq, size_t dim, size_t row, const float *p,
                              size_t p_stride, size_t nrows, const uint16_t *c, float *acc) {
    for (size_t h = 0; h < nq; h++)
        for (size_t j = 0; j < nrows; j++) {
            const float w = p[h * p_stride + j];
            for (size_t d = 0; d < dim; d++) acc[h * dim + d] += w * mk_f16_to_f32(c[j * row + d]);
        }
}

void mk_tile_q8a_generic(size_t n, const int8_t *qs, const float *d, const int32_t *s,
                         int8_t *tqs, float *td, int32_t *ts) {
    for (size_t k = 0; k < n / 512; k++) {
        for (int l = 0; l < 16; l++) {
            const size_t blk = 16 * k + (size_t)l;
            for (int u = 0; u < 8; u++)
                for (int i = 0; i < 4; i++) {
                    const int e = u < 4 ? 4 * u + i : 16 + 4 * (u - 4) + i;
                    tqs[512 * k + 64 * u + 4 * l + i] = qs[32 * blk + e];
                }
            td[blk] = d[blk];
            ts[blk] = -8 * s[blk];
        }
    }
}

/* ---- Q2_K and Q3_K (layouts in moela_kernels.h) ---- */

/* 2-bit code of element e of a super-block's 64 bytes qs. */
static int k_low2(const uint8_t *qs, int e) {
    return (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
}

/* Signed 6-bit scale i (0..16) of a Q3_K super-block from its 12 packed bytes. */
static int k_q3_scale(const uint8_t *s, int i) {
    int lo = (s[i % 8] >> (4 * (i / 8))) & 0x0f;
    int hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* Signed code (-4..3) of element e of a Q3_K super-block. */
static int k_code3(const uint8_t *b, int e) {
    int high = (b[e % 32] >> (e / 32)) & 1;
    return k_low2(b + 32, e) - (high ? 0 : 4);
}

float mk_vec_dot_q2_k_f32_generic(size_t n, const void *w, const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    float sum = 0.0f;
    for (size_t sb = 0; sb < n / 256; sb++, b += 84, x += 256) {
        float d = mk_f16_to_f32(read_u16le(b + 80)), dmin = mk_f16_to_f32(read_u16le(b + 82));
        for (int e = 0; e < 256; e++) {
            float ds = d * (float)(b[e / 16] & 0x0f), dm = dmin * (float)(b[e / 16] >> 4);
            sum += (ds * (float)k_low2(b + 16, e) - dm) * x[e];
        }
    }
    return sum;
}

float mk_vec_dot_q3_k_f32_generic(size_t n, const void *w, const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    float sum = 0.0f;
    for (size_t sb = 0; sb < n / 256; sb++, b += 110, x += 256) {
        float d = mk_f16_to_f32(read_u16le(b + 108));
        for (int e = 0; e < 256; e++) {
            float ds = d * (float)k_q3_scale(b + 96, e / 16);
            sum += ds * (float)k_code3(b, e) * x[e];
        }
    }
    return sum;
}

/* Q2_K × q8a: per activation block j of a super-block, the two 16-element halves' integer sums
 * Σq·qx and Σqx times their 4-bit scales and mins (exact in int32), then
 * dx · (d · Σsc·Σq·qx - dmin · Σm·Σqx). */
float mk_vec_dot_q2_k_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *dx,
                                  const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    float sum = 0.0f;
    for (size_t sb = 0; sb < n / 256; sb++, b += 84) {
        float d = mk_f16_to_f32(read_u16le(b + 80)), dmin = mk_f16_to_f32(read_u16le(b + 82));
        for (int j = 0; j < 8; j++, qs += 32) {
            int32_t isq = 0, ism = 0;
            for (int k = 0; k < 2; k++) {
                int32_t aq = 0, ax = 0;
                for (int l = 16 * k; l < 16 * k + 16; l++) {
                    aq += k_low2(b + 16, 32 * j + l) * qs[l];
                    ax += qs[l];
                }
                isq += (b[2 * j + k] & 0x0f) * aq;
                ism += (b[2 * j + k] >> 4) * ax;
            }
            sum += dx[8 * sb + (size_t)j] * (d * (float)isq - dmin * (float)ism);
        }
    }
    return sum;
}

/* Q3_K × q8a: per activation block, the two halves' integer sums of q·qx times their signed
 * scales (exact in int32), times d · dx. */
float mk_vec_dot_q3_k_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *dx,
                                  const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    float sum = 0.0f;
    for (size_t sb = 0; sb < n / 256; sb++, b += 110) {
        float d = mk_f16_to_f32(read_u16le(b + 108));
        for (int j = 0; j < 8; j++, qs += 32) {
            int32_t isum = 0;
            for (int k = 0; k < 2; k++) {
                int32_t acc = 0;
                for (int l = 16 * k; l < 16 * k + 16; l++) acc += k_code3(b, 32 * j + l) * qs[l];
                isum += k_q3_scale(b + 96, 2 * j + k) * acc;
            }
            sum += dx[8 * sb + (size_t)j] * (d * (float)isum);
        }
    }
    return sum;
}

/* ---- Float weights, four activation rows (the reference: four one-row products) ---- */

void mk_vec_dot4_f32_f32_generic(size_t n, const void *w, const float *x, float *out) {
    for (int r = 0; r < 4; r++) out[r] = mk_vec_dot_f32_f32_generic(n, w, x + (size_t)r * n);
}

void mk_vec_dot4_f16_f32_generic(size_t n, const void *w, const float *x, float *out) {
    for (int r = 0; r < 4; r++) out[r] = mk_vec_dot_f16_f32_generic(n, w, x + (size_t)r * n);
}

void mk_vec_dot4_bf16_f32_generic(size_t n, const void *w, const float *x, float *out) {
    for (int r = 0; r < 4; r++) out[r] = mk_vec_dot_bf16_f32_generic(n, w, x + (size_t)r * n);
}

/* ---- Q4_1, Q5_0, Q5_1 (32-element blocks) and IQ4_NL / IQ4_XS (the kvalues_iq4nl codebook);
 * layouts in moela_kernels.h. ---- */

static const int8_t mk_kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};

static uint32_t read_u32le(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Code of element i (0..32) of a 32-element block: nibble from q (16 bytes), fifth bit from qh. */
static int legacy_code(const uint8_t *q, uint32_t qh, int i) {
    int c = i < 16 ? (q[i] & 0x0f) : (q[i - 16] >> 4);
    return c | (int)(((qh >> i) & 1u) << 4);
}

/* Q4_1 (bb 20, no qh), Q5_0 (22, qh, offset -16), Q5_1 (24, qh) against f32 activations. */
static float dot_legacy_f32(size_t n, const uint8_t *b, const float *x, int type) {
    const size_t bb = type == 1 ? 20 : type == 2 ? 22 : 24;
    float sum = 0.0f;
    for (size_t blk = 0; blk < n / 32; blk++, b += bb, x += 32) {
        float d = mk_f16_to_f32(read_u16le(b));
        float m = type == 2 ? 0.0f : mk_f16_to_f32(read_u16le(b + 2));
        uint32_t qh = type == 1 ? 0 : read_u32le(b + (type == 2 ? 2 : 4));
        const uint8_t *q = b + bb - 16;
        for (int i = 0; i < 32; i++) {
            int c = legacy_code(q, qh, i);
            float v = type == 2 ? d * (float)(c - 16) : d * (float)c + m;
            sum += v * x[i];
        }
    }
    return sum;
}

float mk_vec_dot_q4_1_f32_generic(size_t n, const void *w, const float *x) {
    return dot_legacy_f32(n, (const uint8_t *)w, x, 1);
}
float mk_vec_dot_q5_0_f32_generic(size_t n, const void *w, const float *x) {
    return dot_legacy_f32(n, (const uint8_t *)w, x, 2);
}
float mk_vec_dot_q5_1_f32_generic(size_t n, const void *w, const float *x) {
    return dot_legacy_f32(n, (const uint8_t *)w, x, 3);
}

/* Against q8a: Σ (d·q + m)·x = dx·(d·Σq·qx + m·s); Q5_0: dx·d·(Σq·qx - 16·s). */
static float dot_legacy_q8a(size_t n, const uint8_t *b, const int8_t *qs, const float *dx,
                            const int32_t *s, int type) {
    const size_t bb = type == 1 ? 20 : type == 2 ? 22 : 24;
    float sum = 0.0f;
    for (size_t blk = 0; blk < n / 32; blk++, b += bb, qs += 32) {
        float d = mk_f16_to_f32(read_u16le(b));
        uint32_t qh = type == 1 ? 0 : read_u32le(b + (type == 2 ? 2 : 4));
        const uint8_t *q = b + bb - 16;
        int32_t isum = 0;
        for (int i = 0; i < 32; i++) isum += legacy_code(q, qh, i) * qs[i];
        if (type == 2) {
            sum += dx[blk] * (d * (float)(isum - 16 * s[blk]));
        } else {
            float m = mk_f16_to_f32(read_u16le(b + 2));
            sum += dx[blk] * (d * (float)isum + m * (float)s[blk]);
        }
    }
    return sum;
}

float mk_vec_dot_q4_1_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s) {
    return dot_legacy_q8a(n, (const uint8_t *)w, qs, d, s, 1);
}
float mk_vec_dot_q5_0_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s) {
    return dot_legacy_q8a(n, (const uint8_t *)w, qs, d, s, 2);
}
float mk_vec_dot_q5_1_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *d,
                                  const int32_t *s) {
    return dot_legacy_q8a(n, (const uint8_t *)w, qs, d, s, 3);
}

/* Codebook value of element i of 16 nibble bytes q. */
static int iq4_value(const uint8_t *q, int i) {
    return mk_kvalues_iq4nl[i < 16 ? (q[i] & 0x0f) : (q[i - 16] >> 4)];
}

/* 6-bit scale (0..63; factor ls - 32) of IQ4_XS sub-block i. */
static int iq4_xs_scale(const uint8_t *b, int i) {
    return ((b[4 + i / 2] >> (4 * (i % 2))) & 0x0f) | (((read_u16le(b + 2) >> (2 * i)) & 3) << 4);
}

float mk_vec_dot_iq4_nl_f32_generic(size_t n, const void *w, const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    float sum = 0.0f;
    for (size_t blk = 0; blk < n / 32; blk++, b += 18, x += 32) {
        float d = mk_f16_to_f32(read_u16le(b));
        for (int i = 0; i < 32; i++) sum += d * (float)iq4_value(b + 2, i) * x[i];
    }
    return sum;
}

float mk_vec_dot_iq4_xs_f32_generic(size_t n, const void *w, const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    float sum = 0.0f;
    for (size_t sb = 0; sb < n / 256; sb++, b += 136) {
        float d = mk_f16_to_f32(read_u16le(b));
        for (int j = 0; j < 8; j++, x += 32) {
            float dl = d * (float)(iq4_xs_scale(b, j) - 32);
            for (int i = 0; i < 32; i++) sum += dl * (float)iq4_value(b + 8 + 16 * j, i) * x[i];
        }
    }
    return sum;
}

float mk_vec_dot_iq4_nl_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *dx,
                                    const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    float sum = 0.0f;
    for (size_t blk = 0; blk < n / 32; blk++, b += 18, qs += 32) {
        int32_t isum = 0;
        for (int i = 0; i < 32; i++) isum += iq4_value(b + 2, i) * qs[i];
        sum += dx[blk] * (mk_f16_to_f32(read_u16le(b)) * (float)isum);
    }
    return sum;
}

/* IQ4_XS × q8a: sub-block j of super-block sb is activation block 8·sb + j; (ls-32)·Σv·qx is
 * exact in int32 (≤ 32 · 32 · 127 · 127). */
float mk_vec_dot_iq4_xs_q8a_generic(size_t n, const void *w, const int8_t *qs, const float *dx,
                                    const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    float sum = 0.0f;
    for (size_t sb = 0; sb < n / 256; sb++, b += 136) {
        float d = mk_f16_to_f32(read_u16le(b));
        for (int j = 0; j < 8; j++, qs += 32) {
            int32_t isum = 0;
            for (int i = 0; i < 32; i++) isum += iq4_value(b + 8 + 16 * j, i) * qs[i];
            sum += dx[8 * sb + (size_t)j] * (d * (float)((iq4_xs_scale(b, j) - 32) * isum));
        }
    }
    return sum;
}
