/* Portable reference kernels of the load-only low-bit types (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS,
 * IQ3_S, IQ1_S, IQ1_M, TQ1_0, TQ2_0, MXFP4, NVFP4, Q1_0, Q2_0; layouts in src/tensor/iquant.rs). Written for
 * clarity: each block is decoded into integer codes and one float scale per 16 elements
 * (x = scale · code), then multiplied group by group. IQ1's fractional delta (±1/8) becomes an
 * integer by counting in eighths: code = 8·g ± 1, scale = d·(2·ls + 1)/8. */
#include "fp4.h"
#include "iquant_grids.h"
#include "moela_kernels.h"

#include <string.h>

static uint16_t u16le(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t u32le(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static float f16le(const uint8_t *p) {
    return mk_f16_to_f32(u16le(p));
}

/* Byte j of a grid row, and the signed value `byte · (bit j of signs ? -1 : 1)`. */
static int grid_byte(uint64_t row, int j) {
    return (int)((row >> (8 * j)) & 0xff);
}

static int8_t signed_code(int v, uint8_t signs, int j) {
    return (int8_t)((signs >> j) & 1 ? -v : v);
}

typedef void (*decode_fn)(const uint8_t *b, int8_t *code, float *sc);

static void decode_iq2_xxs(const uint8_t *b, int8_t *code, float *sc) {
    float d = f16le(b);
    for (int ib = 0; ib < 8; ib++) {
        const uint8_t *q = b + 2 + 8 * ib;
        uint32_t aux = u32le(q + 4);
        float db = d * (0.5f + (float)(aux >> 28)) * 0.25f;
        sc[2 * ib] = sc[2 * ib + 1] = db;
        for (int l = 0; l < 4; l++) {
            uint8_t signs = mk_ksigns[(aux >> (7 * l)) & 127];
            uint64_t row = mk_iq2xxs_grid[q[l]];
            for (int j = 0; j < 8; j++)
                code[32 * ib + 8 * l + j] = signed_code(grid_byte(row, j), signs, j);
        }
    }
}

static void decode_iq2_xs(const uint8_t *b, int8_t *code, float *sc) {
    float d = f16le(b);
    for (int g = 0; g < 16; g++) {
        int ls = (b[66 + g / 2] >> (4 * (g % 2))) & 15;
        sc[g] = d * (0.5f + (float)ls) * 0.25f;
    }
    for (int k = 0; k < 32; k++) {
        uint16_t q = u16le(b + 2 + 2 * k);
        uint8_t signs = mk_ksigns[q >> 9];
        uint64_t row = mk_iq2xs_grid[q & 511];
        for (int j = 0; j < 8; j++) code[8 * k + j] = signed_code(grid_byte(row, j), signs, j);
    }
}

static void decode_iq2_s(const uint8_t *b, int8_t *code, float *sc) {
    float d = f16le(b);
    const uint8_t *qs = b + 2, *signs = b + 34, *qh = b + 66, *scales = b + 74;
    for (int g = 0; g < 16; g++) {
        int ls = (scales[g / 2] >> (4 * (g % 2))) & 15;
        sc[g] = d * (0.5f + (float)ls) * 0.25f;
    }
    for (int k = 0; k < 32; k++) {
        int idx = qs[k] | (((qh[k / 4] >> (2 * (k % 4))) & 3) << 8);
        uint64_t row = mk_iq2s_grid[idx];
        for (int j = 0; j < 8; j++) code[8 * k + j] = signed_code(grid_byte(row, j), signs[k], j);
    }
}

static void decode_iq3_xxs(const uint8_t *b, int8_t *code, float *sc) {
    float d = f16le(b);
    const uint8_t *qs = b + 2;
    for (int ib = 0; ib < 8; ib++) {
        uint32_t aux = u32le(b + 66 + 4 * ib);
        float db = d * (0.5f + (float)(aux >> 28)) * 0.5f;
        sc[2 * ib] = sc[2 * ib + 1] = db;
        for (int l = 0; l < 4; l++) {
            uint8_t signs = mk_ksigns[(aux >> (7 * l)) & 127];
            uint64_t row = (uint64_t)mk_iq3xxs_grid[qs[8 * ib + 2 * l]] |
                           ((uint64_t)mk_iq3xxs_grid[qs[8 * ib + 2 * l + 1]] << 32);
            for (int j = 0; j < 8; j++)
                code[32 * ib + 8 * l + j] = signed_code(grid_byte(row, j), signs, j);
        }
    }
}

static void decode_iq3_s(const uint8_t *b, int8_t *code, float *sc) {
    float d = f16le(b);
    const uint8_t *qs = b + 2, *qh = b + 66, *signs = b + 74, *scales = b + 106;
    for (int ib = 0; ib < 8; ib++) {
        int ls = (scales[ib / 2] >> (4 * (ib % 2))) & 15;
        sc[2 * ib] = sc[2 * ib + 1] = d * (float)(1 + 2 * ls);
    }
    for (int k = 0; k < 64; k++) {
        int idx = qs[k] | (((qh[k / 8] >> (k % 8)) & 1) << 8);
        uint64_t row = mk_iq3s_grid[idx];
        for (int j = 0; j < 4; j++)
            code[4 * k + j] = signed_code(grid_byte(row, j), signs[k / 2], 4 * (k % 2) + j);
    }
}

/* IQ1: 8 grid values in {-1, 0, 1} plus delta (bit set: -1/8), in eighths. */
static void iq1_codes(int8_t *code, int idx, int neg_delta) {
    uint64_t row = mk_iq1s_grid[idx];
    for (int j = 0; j < 8; j++)
        code[j] = (int8_t)(8 * (int8_t)grid_byte(row, j) + (neg_delta ? -1 : 1));
}

static void decode_iq1_s(const uint8_t *b, int8_t *code, float *sc) {
    float d = f16le(b);
    const uint8_t *qs = b + 2;
    for (int ib = 0; ib < 8; ib++) {
        uint16_t h = u16le(b + 34 + 2 * ib);
        sc[2 * ib] = sc[2 * ib + 1] = d * (float)(2 * ((h >> 12) & 7) + 1) * 0.125f;
        for (int l = 0; l < 4; l++)
            iq1_codes(code + 32 * ib + 8 * l, qs[4 * ib + l] | (((h >> (3 * l)) & 7) << 8),
                      h & 0x8000);
    }
}

static void decode_iq1_m(const uint8_t *b, int8_t *code, float *sc) {
    const uint8_t *qs = b, *qh = b + 32;
    uint16_t s[4] = {u16le(b + 48), u16le(b + 50), u16le(b + 52), u16le(b + 54)};
    float d = mk_f16_to_f32((uint16_t)((s[0] >> 12) | ((s[1] >> 8) & 0x00f0) |
                                       ((s[2] >> 4) & 0x0f00) | (s[3] & 0xf000)));
    for (int g = 0; g < 16; g++) {
        int ls = (s[g / 4] >> (3 * (g % 4))) & 7;
        sc[g] = d * (float)(2 * ls + 1) * 0.125f;
    }
    for (int k = 0; k < 32; k++) {
        int h = (qh[k / 2] >> (4 * (k % 2))) & 15;
        iq1_codes(code + 8 * k, qs[k] | ((h & 7) << 8), h & 8);
    }
}

static int8_t ternary_digit(uint8_t byte, int m) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    uint8_t q = (uint8_t)(byte * pow3[m]);
    return (int8_t)(((q * 3) >> 8) - 1);
}

static void decode_tq1_0(const uint8_t *b, int8_t *code, float *sc) {
    float d = f16le(b + 52);
    for (int g = 0; g < 16; g++) sc[g] = d;
    for (int m = 0; m < 5; m++) {
        for (int j = 0; j < 32; j++) code[32 * m + j] = ternary_digit(b[j], m);
        for (int j = 0; j < 16; j++) code[160 + 16 * m + j] = ternary_digit(b[32 + j], m);
    }
    for (int m = 0; m < 4; m++)
        for (int j = 0; j < 4; j++) code[240 + 4 * m + j] = ternary_digit(b[48 + j], m);
}

static void decode_tq2_0(const uint8_t *b, int8_t *code, float *sc) {
    float d = f16le(b + 64);
    for (int g = 0; g < 16; g++) sc[g] = d;
    for (int c = 0; c < 2; c++)
        for (int l = 0; l < 4; l++)
            for (int j = 0; j < 32; j++)
                code[128 * c + 32 * l + j] = (int8_t)(((b[32 * c + j] >> (2 * l)) & 3) - 1);
}

/* 32-element blocks: two scale groups. */
static void decode_mxfp4(const uint8_t *b, int8_t *code, float *sc) {
    const int8_t *values = mk_e2m1_doubled();
    uint32_t bits = b[0] < 2 ? 0x00200000u << b[0] : (uint32_t)(b[0] - 1) << 23;
    float d;
    memcpy(&d, &bits, sizeof d);
    sc[0] = sc[1] = d;
    for (int j = 0; j < 16; j++) {
        code[j] = values[b[1 + j] & 15];
        code[j + 16] = values[b[1 + j] >> 4];
    }
}

/* 64-element blocks: four 16-element groups, each with its own scale. */
static void decode_nvfp4(const uint8_t *b, int8_t *code, float *sc) {
    const int8_t *values = mk_e2m1_doubled();
    for (int s = 0; s < 4; s++) {
        sc[s] = mk_ue4m3_half(b[s]);
        for (int j = 0; j < 8; j++) {
            code[16 * s + j] = values[b[4 + 8 * s + j] & 15];
            code[16 * s + 8 + j] = values[b[4 + 8 * s + j] >> 4];
        }
    }
}

/* 128-element blocks of sign bits: x = ±d. */
static void decode_q1_0(const uint8_t *b, int8_t *code, float *sc) {
    float d = f16le(b);
    for (int g = 0; g < 8; g++) sc[g] = d;
    for (int j = 0; j < 128; j++) code[j] = ((b[2 + j / 8] >> (j % 8)) & 1) ? 1 : -1;
}

/* 64-element blocks of 2-bit codes: x = (q - 1)·d. */
static void decode_q2_0(const uint8_t *b, int8_t *code, float *sc) {
    float d = f16le(b);
    for (int g = 0; g < 4; g++) sc[g] = d;
    for (int j = 0; j < 64; j++) code[j] = (int8_t)(((b[2 + j / 4] >> (2 * (j % 4))) & 3) - 1);
}

/* Row kernels over decoded blocks of `bsize` elements and `bbytes` bytes. */
static float dot_f32(decode_fn decode, size_t bsize, size_t bbytes, size_t n, const void *w,
                     const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    int8_t code[256];
    float sc[16];
    float sum = 0.0f;
    for (size_t blk = 0; blk < n / bsize; blk++, b += bbytes) {
        decode(b, code, sc);
        for (size_t g = 0; g < bsize / 16; g++, x += 16) {
            float s = 0.0f;
            for (int j = 0; j < 16; j++) s += (float)code[16 * g + j] * x[j];
            sum += sc[g] * s;
        }
    }
    return sum;
}

static float dot_q8a(decode_fn decode, size_t bsize, size_t bbytes, size_t n, const void *w,
                     const int8_t *qs, const float *dx) {
    const uint8_t *b = (const uint8_t *)w;
    int8_t code[256];
    float sc[16];
    float sum = 0.0f;
    for (size_t blk = 0; blk < n / bsize; blk++, b += bbytes) {
        decode(b, code, sc);
        for (size_t g = 0; g < bsize / 16; g++, qs += 16) {
            int32_t isum = 0;
            for (int j = 0; j < 16; j++) isum += (int32_t)code[16 * g + j] * qs[j];
            sum += sc[g] * dx[(blk * bsize + 16 * g) / 32] * (float)isum;
        }
    }
    return sum;
}

#define IQ_KERNELS(name, bsize, bbytes)                                                        \
    float mk_vec_dot_##name##_f32_generic(size_t n, const void *w, const float *x) {         \
        return dot_f32(decode_##name, bsize, bbytes, n, w, x);                                \
    }                                                                                          \
    float mk_vec_dot_##name##_q8a_generic(size_t n, const void *w, const int8_t *qs,          \
                                          const float *d, const int32_t *s) {                 \
        (void)s;                                                                               \
        return dot_q8a(decode_##name, bsize, bbytes, n, w, qs, d);                            \
    }

IQ_KERNELS(iq2_xxs, 256, 66)
IQ_KERNELS(iq2_xs, 256, 74)
IQ_KERNELS(iq2_s, 256, 82)
IQ_KERNELS(iq3_xxs, 256, 98)
IQ_KERNELS(iq3_s, 256, 110)
IQ_KERNELS(iq1_s, 256, 50)
IQ_KERNELS(iq1_m, 256, 56)
IQ_KERNELS(tq1_0, 256, 54)
IQ_KERNELS(tq2_0, 256, 66)
IQ_KERNELS(mxfp4, 32, 17)
IQ_KERNELS(nvfp4, 64, 36)
IQ_KERNELS(q1_0, 128, 18)
IQ_KERNELS(q2_0, 64, 18)
