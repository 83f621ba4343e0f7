/* AVX-512 VBMI + VNNI kernels for Q4_0 weights (built with those flags; called only when the
 * CPU has them). Four 18-byte Q4_0 blocks (72 bytes) are gathered into one register with a
 * single two-source byte permute (vpermt2b), which also lines up their four f16 scales, so a
 * group of 128 weights costs two permutes, two vpdpbusd and one fma. The activations come
 * pre-grouped ("q8g", see moela_kernels.h) so that the nibbles need no reordering: the low
 * nibbles of the four blocks meet the first halves of the four activation blocks. */
#include "moela_kernels.h"

#include <immintrin.h>

/* Software prefetch distance in bytes: one thread's stream from DRAM went from 8.2 to
 * 10.5-11.9 GB/s with 1-2 KiB (cargo bench --bench kernels); the hardware prefetchers alone
 * keep too few lines in flight. */
#define PF_DIST 2048

/* Byte j of the result: byte 2 + 18*(j/16) + j%16 of the 72-byte group (the 16 nibble bytes
 * of block j/16). */
static const uint8_t NIBBLE_INDEX[64] = {
    2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17,
    20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35,
    38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53,
    56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71};

/* Word l (l < 16) of the result: the f16 scale of block l/4 (bytes 18*(l/4), +1). */
static const uint8_t SCALE_INDEX[64] = {
    0,  1,  0,  1,  0,  1,  0,  1,  18, 19, 18, 19, 18, 19, 18, 19,
    36, 37, 36, 37, 36, 37, 36, 37, 54, 55, 54, 55, 54, 55, 54, 55};

/* Bytes 8g..8g+7 of the result: the four f16 scales of a group's blocks (words 4g..4g+3),
 * taken by a masked byte permute of group g's first 64 bytes. */
static const uint8_t SCALE16_INDEX[64] = {
    0, 1, 18, 19, 36, 37, 54, 55, 0, 1, 18, 19, 36, 37, 54, 55,
    0, 1, 18, 19, 36, 37, 54, 55, 0, 1, 18, 19, 36, 37, 54, 55,
    0, 1, 18, 19, 36, 37, 54, 55, 0, 1, 18, 19, 36, 37, 54, 55,
    0, 1, 18, 19, 36, 37, 54, 55, 0, 1, 18, 19, 36, 37, 54, 55};

/* Dword transpose of four packed groups P0..P3 (dword 4k+m = bytes 4m..4m+3 of block k):
 * T_LO/T_HI pick dword m = 0,1 / 2,3 of each block from two groups (indices >= 16 select the
 * second source): lanes [m0 of Pa blocks 0-3, m0 of Pb, m1 of Pa, m1 of Pb]. U_LO/U_HI then
 * join the halves of two such registers: W_m lane 4g + k = dword m of block k of group g. */
static const int32_t T_LO[16] = {0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29};
static const int32_t T_HI[16] = {2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31};
static const int32_t U_LO[16] = {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23};
static const int32_t U_HI[16] = {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31};

static inline __m512i load_index(const uint8_t *ix) {
    return _mm512_loadu_si512((const void *)ix);
}

/* Σ over one group of 4 blocks, as 16 float lanes (lanes 4k..4k+3 hold block k). */
static inline __m512 group_dot(__m512 acc, const uint8_t *b, const int8_t *gqs, const float *gd,
                               const int32_t *gs, __m512i nib_ix, __m512i sc_ix) {
    const __m512i lo_mask = _mm512_set1_epi8(0x0f);
    __m512i a = _mm512_loadu_si512((const void *)b);
    /* bytes 64..71 of the group; the rest of the register is never selected */
    __m512i c = _mm512_castsi128_si512(_mm_loadl_epi64((const __m128i *)(b + 64)));
    __m512i packed = _mm512_permutex2var_epi8(a, nib_ix, c);
    __m512i lo = _mm512_and_si512(packed, lo_mask);
    __m512i hi = _mm512_and_si512(_mm512_srli_epi16(packed, 4), lo_mask);
    /* start from -2s per lane: the four lanes of a block add up to Q4_0's -8·s */
    __m512i p = _mm512_loadu_si512((const void *)gs);
    p = _mm512_dpbusd_epi32(p, lo, _mm512_loadu_si512((const void *)gqs));
    p = _mm512_dpbusd_epi32(p, hi, _mm512_loadu_si512((const void *)(gqs + 64)));
    __m256i halves = _mm512_castsi512_si256(_mm512_permutexvar_epi8(sc_ix, a));
    __m512 scale = _mm512_mul_ps(_mm512_cvtph_ps(halves), _mm512_loadu_ps(gd));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), scale, acc);
}

float mk_vec_dot_q4_0_q8g_avx512vbmi(size_t n, const void *w, const struct mk_q8g *x) {
    const uint8_t *b = (const uint8_t *)w;
    const __m512i nib_ix = load_index(NIBBLE_INDEX), sc_ix = load_index(SCALE_INDEX);
    const size_t nb = n / 32, ng = nb / 4;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    size_t g = 0;
    for (; g + 1 < ng; g += 2, b += 144) {
        _mm_prefetch((const char *)b + PF_DIST, _MM_HINT_T0);
        _mm_prefetch((const char *)b + PF_DIST + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)b + PF_DIST + 128, _MM_HINT_T0);
        acc0 = group_dot(acc0, b, x->gqs + 128 * g, x->gd + 16 * g, x->gs + 16 * g, nib_ix,
                         sc_ix);
        acc1 = group_dot(acc1, b + 72, x->gqs + 128 * (g + 1), x->gd + 16 * (g + 1),
                         x->gs + 16 * (g + 1), nib_ix, sc_ix);
    }
    if (g < ng) {
        acc0 = group_dot(acc0, b, x->gqs + 128 * g, x->gd + 16 * g, x->gs + 16 * g, nib_ix,
                         sc_ix);
        b += 72;
        g++;
    }
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    const size_t done = 4 * ng;
    if (done < nb) {
        /* a partial trailing group: plain q8a */
        sum += mk_vec_dot_q4_0_q8a_avx512(32 * (nb - done), b, x->qs + 32 * done, x->d + done,
                                          x->s + done);
    }
    return sum;
}

/* Tile k (16 blocks, 288 bytes at b) of one weight row, unpacked for the tiled activations:
 * step[u] lane l = the four codes of block l that meet activation step u (u < 4: low
 * nibbles, u >= 4: high nibbles), *dw = the 16 block scales. */
static inline __attribute__((always_inline)) void unpack_tile(
    const uint8_t *b, __m512i nib_ix, __m512i sc16_ix, __m512i t_lo, __m512i t_hi,
    __m512i u_lo, __m512i u_hi, __m512i step[8], __m512 *dw) {
    const __m512i lo_mask = _mm512_set1_epi8(0x0f);
    __m512i pk[4];
    __m512i sc = _mm512_setzero_si512();
    for (int g = 0; g < 4; g++) {
        const uint8_t *bg = b + 72 * g;
        __m512i a = _mm512_loadu_si512((const void *)bg);
        __m512i c = _mm512_castsi128_si512(_mm_loadl_epi64((const __m128i *)(bg + 64)));
        pk[g] = _mm512_permutex2var_epi8(a, nib_ix, c);
        sc = _mm512_mask_permutexvar_epi8(sc, (__mmask64)0xffull << (8 * g), sc16_ix, a);
    }
    __m512i a01 = _mm512_permutex2var_epi32(pk[0], t_lo, pk[1]);
    __m512i a23 = _mm512_permutex2var_epi32(pk[0], t_hi, pk[1]);
    __m512i b01 = _mm512_permutex2var_epi32(pk[2], t_lo, pk[3]);
    __m512i b23 = _mm512_permutex2var_epi32(pk[2], t_hi, pk[3]);
    __m512i wm[4] = {_mm512_permutex2var_epi32(a01, u_lo, b01),
                     _mm512_permutex2var_epi32(a01, u_hi, b01),
                     _mm512_permutex2var_epi32(a23, u_lo, b23),
                     _mm512_permutex2var_epi32(a23, u_hi, b23)};
    for (int m = 0; m < 4; m++) {
        step[m] = _mm512_and_si512(wm[m], lo_mask);
        step[4 + m] = _mm512_and_si512(_mm512_srli_epi16(wm[m], 4), lo_mask);
    }
    *dw = _mm512_cvtph_ps(_mm512_castsi512_si256(sc));
}

/* Four activation rows (prefill): the group is loaded and unpacked once for all four. */
void mk_vec_dot4_q4_0_q8g_avx512vbmi(size_t n, const void *w, const struct mk_q8g *x,
                                     float *out) {
    const uint8_t *b = (const uint8_t *)w;
    const __m512i nib_ix = load_index(NIBBLE_INDEX), sc_ix = load_index(SCALE_INDEX);
    const __m512i lo_mask = _mm512_set1_epi8(0x0f);
    const size_t nb = n / 32, ng = nb / 4;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    /* Whole tiles of 16 blocks: after a dword transpose of four packed groups, lane l of
     * every register belongs to block l, so eight vpdpbusd sum all 512 products of a token
     * into one int32 per block and the float work is one convert and one fma per tile. */
    const __m512i sc16_ix = load_index(SCALE16_INDEX);
    const __m512i t_lo = _mm512_loadu_si512((const void *)T_LO), t_hi = _mm512_loadu_si512((const void *)T_HI);
    const __m512i u_lo = _mm512_loadu_si512((const void *)U_LO), u_hi = _mm512_loadu_si512((const void *)U_HI);
    const size_t nt = nb / 16;
    for (size_t k = 0; k < nt; k++, b += 288) {
        __m512i step[8];
        __m512 dw;
        unpack_tile(b, nib_ix, sc16_ix, t_lo, t_hi, u_lo, u_hi, step, &dw);
        for (int r = 0; r < 4; r++) {
            const int8_t *q = x->tqs + r * n + 512 * k;
            const size_t o = r * nb + 16 * k;
            __m512i p = _mm512_loadu_si512((const void *)(x->ts + o));
            for (int u = 0; u < 8; u++)
                p = _mm512_dpbusd_epi32(p, step[u], _mm512_loadu_si512((const void *)(q + 64 * u)));
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p),
                                     _mm512_mul_ps(dw, _mm512_loadu_ps(x->td + o)), acc[r]);
        }
    }
    for (size_t g = 4 * nt; g < ng; g++, b += 72) {
        __m512i a = _mm512_loadu_si512((const void *)b);
        __m512i c = _mm512_castsi128_si512(_mm_loadl_epi64((const __m128i *)(b + 64)));
        __m512i packed = _mm512_permutex2var_epi8(a, nib_ix, c);
        __m512i lo = _mm512_and_si512(packed, lo_mask);
        __m512i hi = _mm512_and_si512(_mm512_srli_epi16(packed, 4), lo_mask);
        __m512 dw = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi8(sc_ix, a)));
        for (int r = 0; r < 4; r++) {
            const int8_t *q = x->gqs + r * n + 128 * g;
            const size_t o = r * 4 * nb + 16 * g;
            __m512i p = _mm512_loadu_si512((const void *)(x->gs + o));
            p = _mm512_dpbusd_epi32(p, lo, _mm512_loadu_si512((const void *)q));
            p = _mm512_dpbusd_epi32(p, hi, _mm512_loadu_si512((const void *)(q + 64)));
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p),
                                     _mm512_mul_ps(dw, _mm512_loadu_ps(x->gd + o)), acc[r]);
        }
    }
    const size_t done = 4 * ng;
    for (int r = 0; r < 4; r++) {
        float sum = _mm512_reduce_add_ps(acc[r]);
        if (done < nb) {
            sum += mk_vec_dot_q4_0_q8a_avx512(32 * (nb - done), b, x->qs + r * n + 32 * done,
                                              x->d + r * nb + done, x->s + r * nb + done);
        }
        out[r] = sum;
    }
}

/* ---- Prefill GEMM: two weight rows × every token ---- */

/* Tokens per pass: their float accumulators (one 16-lane vector per token and weight row,
 * lane l = block l of a tile) fit an 8 KiB stack buffer that stays in L1. */
#define GEMM_TOKENS 64

/* Q8_0 weights meet the same tiled activations: step[u] lane l = bytes 4u..4u+3 of block l
 * (gathered from the 34-byte blocks), turned unsigned by flipping the sign bit (+128; the
 * activation side then starts from -128·s, 16 times the tiles' -8·s). */
static inline __attribute__((always_inline)) void unpack_tile_q8(const uint8_t *b,
                                                                  __m512i step[8], __m512 *dw) {
    const __m512i off = _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
        _mm512_set1_epi32(34));
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (int u = 0; u < 8; u++)
        step[u] = _mm512_xor_si512(_mm512_i32gather_epi32(off, b + 2 + 4 * u, 1), flip);
    /* the f16 scale is the low half of the dword at each block's start */
    *dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_i32gather_epi32(off, b, 1)));
}

/* A Q8_0 group of 4 blocks (136 bytes) for the grouped activations: lo lane 4k+m = bytes
 * 4m..4m+3 of block k, hi the same for bytes 16..31; dw lane 4k+m = scale of block k. */
static inline __attribute__((always_inline)) void unpack_group_q8(const uint8_t *b, __m512i *lo,
                                                                   __m512i *hi, __m512 *dw) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    __m512i lo_v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(b + 2)));
    __m512i hi_v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(b + 18)));
    lo_v = _mm512_inserti32x4(lo_v, _mm_loadu_si128((const __m128i *)(b + 36)), 1);
    hi_v = _mm512_inserti32x4(hi_v, _mm_loadu_si128((const __m128i *)(b + 52)), 1);
    lo_v = _mm512_inserti32x4(lo_v, _mm_loadu_si128((const __m128i *)(b + 70)), 2);
    hi_v = _mm512_inserti32x4(hi_v, _mm_loadu_si128((const __m128i *)(b + 86)), 2);
    lo_v = _mm512_inserti32x4(lo_v, _mm_loadu_si128((const __m128i *)(b + 104)), 3);
    hi_v = _mm512_inserti32x4(hi_v, _mm_loadu_si128((const __m128i *)(b + 120)), 3);
    *lo = _mm512_xor_si512(lo_v, flip);
    *hi = _mm512_xor_si512(hi_v, flip);
    const __m512i off = _mm512_set_epi32(102, 102, 102, 102, 68, 68, 68, 68, 34, 34, 34, 34, 0,
                                         0, 0, 0);
    *dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_i32gather_epi32(off, b, 1)));
}

/* Q4_K tiles are two super-blocks (16 sub-blocks of 32 = 16 activation blocks): step[u]
 * lane l = codes 4u..4u+3 of sub-block l (sub-block 2j: low nibbles of the 32-byte chunk j of
 * the codes, 2j+1: its high nibbles), *dsc = d·scale and *dmn = dmin·min per sub-block. */
static const int32_t Q4K_CHUNK[16] = {0, 0, 8, 8, 16, 16, 24, 24, 0, 0, 8, 8, 16, 16, 24, 24};
static const int32_t Q4K_SHIFT[16] = {0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4};

static inline float f16_at(const uint8_t *p) {
    return mk_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
}

/* Q5_K (five = 1, 176-byte super-blocks) adds the fifth bit of code e of sub-block j: bit j
 * of byte e of the 32 qh bytes that precede the nibbles. */
static const int32_t Q5K_QH[16] = {0, 0, 0, 0, 0, 0, 0, 0, 8, 8, 8, 8, 8, 8, 8, 8};
static const int32_t Q5K_BIT[16] = {0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7};

static inline __attribute__((always_inline)) void unpack_tile_q45k(const uint8_t *b,
                                                                    const int five,
                                                                    __m512i step[8],
                                                                    __m512 *dsc, __m512 *dmn) {
    const size_t bb = five ? 176 : 144, q0 = five ? 48 : 16;
    float fs[16], fm[16];
    for (int h = 0; h < 2; h++) {
        const uint8_t *sb = b + bb * h, *sc = sb + 4;
        const float d = f16_at(sb), dmin = f16_at(sb + 2);
        for (int j = 0; j < 8; j++) {
            int s, m;
            if (j < 4) {
                s = sc[j] & 63;
                m = sc[j + 4] & 63;
            } else {
                s = (sc[j + 4] & 0x0f) | ((sc[j - 4] >> 6) << 4);
                m = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4);
            }
            fs[8 * h + j] = d * (float)s;
            fm[8 * h + j] = dmin * (float)m;
        }
    }
    *dsc = _mm512_loadu_ps(fs);
    *dmn = _mm512_loadu_ps(fm);
    const __m512i a0 = _mm512_loadu_si512((const void *)(b + q0));
    const __m512i a1 = _mm512_loadu_si512((const void *)(b + q0 + 64));
    const __m512i b0 = _mm512_loadu_si512((const void *)(b + bb + q0));
    const __m512i b1 = _mm512_loadu_si512((const void *)(b + bb + q0 + 64));
    const __m512i chunk = _mm512_loadu_si512((const void *)Q4K_CHUNK);
    const __m512i shift = _mm512_loadu_si512((const void *)Q4K_SHIFT);
    const __m512i lo_mask = _mm512_set1_epi8(0x0f);
    __m512i qh = _mm512_setzero_si512(), qh_ix = qh, bit = qh;
    if (five) {
        qh = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(b + 16))),
            _mm256_loadu_si256((const __m256i *)(b + bb + 16)), 1);
        qh_ix = _mm512_loadu_si512((const void *)Q5K_QH);
        bit = _mm512_loadu_si512((const void *)Q5K_BIT);
    }
    for (int u = 0; u < 8; u++) {
        const __m512i ix = _mm512_add_epi32(chunk, _mm512_set1_epi32(u));
        __m512i v = _mm512_mask_blend_epi32((__mmask16)0xff00,
                                            _mm512_permutex2var_epi32(a0, ix, a1),
                                            _mm512_permutex2var_epi32(b0, ix, b1));
        step[u] = _mm512_and_si512(_mm512_srlv_epi32(v, shift), lo_mask);
        if (five) {
            /* dword u of the lane's qh, bit j of each byte moved to bit 4 */
            __m512i h = _mm512_permutexvar_epi32(_mm512_add_epi32(qh_ix, _mm512_set1_epi32(u)), qh);
            h = _mm512_and_si512(_mm512_srlv_epi32(h, bit), _mm512_set1_epi8(1));
            step[u] = _mm512_or_si512(step[u], _mm512_slli_epi32(h, 4));
        }
    }
}

/* Q6_K tiles (two 210-byte super-blocks): lane l = 32-element block j = l % 8 of super-block
 * l / 8, whose codes come from the low (j % 4 < 2) or high nibbles of ql bytes
 * 64(j/4) + 32(j%2) + e and bits 2(j%4) of qh byte 32(j/4) + e; each block has two int8
 * scales (elements 0-15: steps 0-3, 16-31: steps 4-7), so *dlo / *dhi = d·scale of each
 * half. Codes are 0..63 for q - 32. */
static const int32_t Q6K_QL[16] = {0, 8, 0, 8, 16, 24, 16, 24, 0, 8, 0, 8, 16, 24, 16, 24};
static const int32_t Q6K_NIB[16] = {0, 0, 4, 4, 0, 0, 4, 4, 0, 0, 4, 4, 0, 0, 4, 4};
static const int32_t Q6K_QH[16] = {0, 0, 0, 0, 8, 8, 8, 8, 0, 0, 0, 0, 8, 8, 8, 8};
static const int32_t Q6K_QHS[16] = {0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6};

static inline __attribute__((always_inline)) void unpack_tile_q6k(const uint8_t *b,
                                                                   __m512i step[8],
                                                                   __m512 *dlo, __m512 *dhi) {
    float fl[16], fh[16];
    for (int h = 0; h < 2; h++) {
        const uint8_t *sb = b + 210 * h;
        const float d = f16_at(sb + 208);
        for (int j = 0; j < 8; j++) {
            fl[8 * h + j] = d * (float)(int8_t)sb[192 + 2 * j];
            fh[8 * h + j] = d * (float)(int8_t)sb[193 + 2 * j];
        }
    }
    *dlo = _mm512_loadu_ps(fl);
    *dhi = _mm512_loadu_ps(fh);
    const __m512i a0 = _mm512_loadu_si512((const void *)b);
    const __m512i a1 = _mm512_loadu_si512((const void *)(b + 64));
    const __m512i b0 = _mm512_loadu_si512((const void *)(b + 210));
    const __m512i b1 = _mm512_loadu_si512((const void *)(b + 274));
    const __m512i ha = _mm512_loadu_si512((const void *)(b + 128));
    const __m512i hb = _mm512_loadu_si512((const void *)(b + 338));
    const __m512i ql_ix = _mm512_loadu_si512((const void *)Q6K_QL);
    const __m512i nib = _mm512_loadu_si512((const void *)Q6K_NIB);
    const __m512i qh_ix = _mm512_loadu_si512((const void *)Q6K_QH);
    const __m512i qhs = _mm512_loadu_si512((const void *)Q6K_QHS);
    for (int u = 0; u < 8; u++) {
        const __m512i du = _mm512_set1_epi32(u);
        const __m512i ix = _mm512_add_epi32(ql_ix, du), hx = _mm512_add_epi32(qh_ix, du);
        __m512i v = _mm512_mask_blend_epi32((__mmask16)0xff00,
                                            _mm512_permutex2var_epi32(a0, ix, a1),
                                            _mm512_permutex2var_epi32(b0, ix, b1));
        __m512i h = _mm512_mask_blend_epi32((__mmask16)0xff00, _mm512_permutexvar_epi32(hx, ha),
                                            _mm512_permutexvar_epi32(hx, hb));
        const __m512i lo = _mm512_and_si512(_mm512_srlv_epi32(v, nib), _mm512_set1_epi8(0x0f));
        const __m512i hi = _mm512_and_si512(_mm512_srlv_epi32(h, qhs), _mm512_set1_epi8(0x03));
        step[u] = _mm512_or_si512(lo, _mm512_slli_epi32(hi, 4));
    }
}

/* Rows r..r+R (R = 1 or 2) of Q4_0 (WT = 0), Q8_0 (WT = 1), Q4_K (WT = 2) Q5_K (WT = 3) or Q6_K (WT = 4)
 * weights, constants after inlining, × tokens t0..t0+tn (tn <= GEMM_TOKENS). */
static inline __attribute__((always_inline)) void gemm_rows(
    const int R, const int WT, size_t n, const uint8_t *const wr[2], size_t t0, size_t tn,
    const struct mk_q8g *x, float *out, size_t ldo, size_t r) {
    const int Q8 = WT == 1, QK = WT >= 2, FIVE = WT == 3, SIX = WT == 4;
    const size_t nb = n / 32, nt = nb / 16;
    /* K-quant rows end in whole super-blocks: a last half tile goes through the one-row
     * kernel instead of groups */
    const size_t ng = QK ? 4 * nt : nb / 4;
    const __m512i nib_ix = load_index(NIBBLE_INDEX), sc_ix = load_index(SCALE_INDEX);
    const __m512i sc16_ix = load_index(SCALE16_INDEX);
    const __m512i t_lo = _mm512_loadu_si512((const void *)T_LO);
    const __m512i t_hi = _mm512_loadu_si512((const void *)T_HI);
    const __m512i u_lo = _mm512_loadu_si512((const void *)U_LO);
    const __m512i u_hi = _mm512_loadu_si512((const void *)U_HI);
    const __m512i lo_mask = _mm512_set1_epi8(0x0f);
    /* token-major, so that the two rows' accumulators of a token are neighbours: row-major
     * arrays 4 KiB apart made every load alias the previous store (4K aliasing) */
    __m512 acc[GEMM_TOKENS][2];
    for (size_t t = 0; t < tn; t++)
        for (int i = 0; i < R; i++) acc[t][i] = _mm512_setzero_ps();
    for (size_t k = 0; k < nt; k++) {
        __m512i step[2][8];
        __m512 dw[2], dm[2];
        for (int i = 0; i < R; i++) {
            const size_t tile_bytes = Q8 ? 544 : FIVE ? 352 : SIX ? 420 : 288;
            const uint8_t *b = wr[i] + tile_bytes * k;
            for (size_t l = 0; l < tile_bytes; l += 64)
                _mm_prefetch((const char *)b + tile_bytes + l, _MM_HINT_T0);
            if (Q8)
                unpack_tile_q8(b, step[i], &dw[i]);
            else if (SIX)
                unpack_tile_q6k(b, step[i], &dw[i], &dm[i]);
            else if (QK)
                unpack_tile_q45k(b, FIVE, step[i], &dw[i], &dm[i]);
            else
                unpack_tile(b, nib_ix, sc16_ix, t_lo, t_hi, u_lo, u_hi, step[i], &dw[i]);
        }
        for (size_t t = 0; SIX && t < tn; t++) {
            /* Q6_K: codes q+32 against each half block, so each half starts from -32 × its
             * own activation sum (the first half summed here, the second = s minus it) */
            const size_t tt = t0 + t;
            const int8_t *q = x->tqs + tt * n + 512 * k;
            const size_t o = tt * nb + 16 * k;
            const __m512i ts = _mm512_loadu_si512((const void *)(x->ts + o));
            const __m512 td = _mm512_loadu_ps(x->td + o);
            __m512i a[8];
            for (int u = 0; u < 8; u++) a[u] = _mm512_loadu_si512((const void *)(q + 64 * u));
            const __m512i ones = _mm512_set1_epi8(1), zero = _mm512_setzero_si512();
            __m512i slo = zero;
            for (int u = 0; u < 4; u++) slo = _mm512_dpbusd_epi32(slo, ones, a[u]);
            const __m512i sall = _mm512_srai_epi32(_mm512_sub_epi32(zero, ts), 3);
            const __m512i ilo = _mm512_sub_epi32(zero, _mm512_slli_epi32(slo, 5));
            const __m512i ihi =
                _mm512_sub_epi32(zero, _mm512_slli_epi32(_mm512_sub_epi32(sall, slo), 5));
            for (int i = 0; i < R; i++) {
                __m512i plo = ilo, phi = ihi;
                for (int u = 0; u < 4; u++) {
                    plo = _mm512_dpbusd_epi32(plo, step[i][u], a[u]);
                    phi = _mm512_dpbusd_epi32(phi, step[i][u + 4], a[u + 4]);
                }
                acc[t][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(plo), _mm512_mul_ps(dw[i], td),
                                            acc[t][i]);
                acc[t][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(phi), _mm512_mul_ps(dm[i], td),
                                            acc[t][i]);
            }
        }
        for (size_t t = 0; !SIX && t < tn; t++) {
            const size_t tt = t0 + t;
            const int8_t *q = x->tqs + tt * n + 512 * k;
            const size_t o = tt * nb + 16 * k;
            __m512i ts = _mm512_loadu_si512((const void *)(x->ts + o));
            if (Q8) ts = _mm512_slli_epi32(ts, 4);
            const __m512 td = _mm512_loadu_ps(x->td + o);
            /* Q4_K: codes are unsigned and the mins are subtracted in floats: ts = -8·s, so
             * -dmin·m·d_x·s = dmin·m · (td·ts/8) */
            __m512 mts = _mm512_setzero_ps();
            if (QK) {
                mts = _mm512_mul_ps(_mm512_mul_ps(td, _mm512_cvtepi32_ps(ts)),
                                    _mm512_set1_ps(0.125f));
                ts = _mm512_setzero_si512();
            }
            __m512i p[2] = {ts, ts};
            for (int u = 0; u < 8; u++) {
                const __m512i a = _mm512_loadu_si512((const void *)(q + 64 * u));
                for (int i = 0; i < R; i++) p[i] = _mm512_dpbusd_epi32(p[i], step[i][u], a);
            }
            for (int i = 0; i < R; i++) {
                acc[t][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p[i]), _mm512_mul_ps(dw[i], td),
                                            acc[t][i]);
                if (QK) acc[t][i] = _mm512_fmadd_ps(dm[i], mts, acc[t][i]);
            }
        }
    }
    /* whole groups of 4 blocks after the tiles (lanes 4k..4k+3 = block k of the group) */
    for (size_t g = 4 * nt; g < ng; g++) {
        __m512i lo[2], hi[2];
        __m512 dw[2];
        for (int i = 0; i < R; i++) {
            if (Q8) {
                unpack_group_q8(wr[i] + 136 * g, &lo[i], &hi[i], &dw[i]);
                continue;
            }
            const uint8_t *b = wr[i] + 72 * g;
            __m512i a = _mm512_loadu_si512((const void *)b);
            __m512i c = _mm512_castsi128_si512(_mm_loadl_epi64((const __m128i *)(b + 64)));
            __m512i packed = _mm512_permutex2var_epi8(a, nib_ix, c);
            lo[i] = _mm512_and_si512(packed, lo_mask);
            hi[i] = _mm512_and_si512(_mm512_srli_epi16(packed, 4), lo_mask);
            dw[i] = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi8(sc_ix, a)));
        }
        for (size_t t = 0; t < tn; t++) {
            const size_t tt = t0 + t;
            const int8_t *q = x->gqs + tt * n + 128 * g;
            const size_t o = tt * 4 * nb + 16 * g;
            __m512i gs = _mm512_loadu_si512((const void *)(x->gs + o));
            if (Q8) gs = _mm512_slli_epi32(gs, 4);
            const __m512 gd = _mm512_loadu_ps(x->gd + o);
            const __m512i qa = _mm512_loadu_si512((const void *)q);
            const __m512i qb = _mm512_loadu_si512((const void *)(q + 64));
            for (int i = 0; i < R; i++) {
                __m512i p = _mm512_dpbusd_epi32(gs, lo[i], qa);
                p = _mm512_dpbusd_epi32(p, hi[i], qb);
                acc[t][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw[i], gd),
                                            acc[t][i]);
            }
        }
    }
    const size_t done = 4 * ng;
    for (size_t t = 0; t < tn; t++) {
        const size_t tt = t0 + t;
        for (int i = 0; i < R; i++) {
            float sum = _mm512_reduce_add_ps(acc[t][i]);
            if (done < nb) {
                /* a partial trailing group: plain q8a */
                sum += SIX ? mk_vec_dot_q6_k_q8a_avx512(32 * (nb - done), wr[i] + 210 * (done / 8),
                                                        x->qs + tt * n + 32 * done,
                                                        x->d + tt * nb + done,
                                                        x->s + tt * nb + done)
                     : FIVE ? mk_vec_dot_q5_k_q8a_avx512(32 * (nb - done), wr[i] + 176 * (done / 8),
                                                         x->qs + tt * n + 32 * done,
                                                         x->d + tt * nb + done,
                                                         x->s + tt * nb + done)
                     : QK ? mk_vec_dot_q4_k_q8a_avx512(32 * (nb - done), wr[i] + 144 * (done / 8),
                                                       x->qs + tt * n + 32 * done,
                                                       x->d + tt * nb + done,
                                                       x->s + tt * nb + done)
                     : Q8 ? mk_vec_dot_q8_0_q8a_avx512(32 * (nb - done), wr[i] + 34 * done,
                                                       x->qs + tt * n + 32 * done,
                                                       x->d + tt * nb + done,
                                                       x->s + tt * nb + done)
                          : mk_vec_dot_q4_0_q8a_avx512(32 * (nb - done), wr[i] + 18 * done,
                                                       x->qs + tt * n + 32 * done,
                                                       x->d + tt * nb + done,
                                                       x->s + tt * nb + done);
            }
            out[tt * ldo + r + i] = sum;
        }
    }
}

static inline __attribute__((always_inline)) void gemm(const int WT, size_t n, size_t nrows,
                                                       const void *w, size_t row_bytes,
                                                       size_t ntok, const struct mk_q8g *x,
                                                       float *out, size_t ldo) {
    const uint8_t *base = (const uint8_t *)w;
    for (size_t t0 = 0; t0 < ntok; t0 += GEMM_TOKENS) {
        const size_t tn = ntok - t0 < GEMM_TOKENS ? ntok - t0 : GEMM_TOKENS;
        size_t r = 0;
        for (; r + 2 <= nrows; r += 2) {
            const uint8_t *const wr[2] = {base + r * row_bytes, base + (r + 1) * row_bytes};
            gemm_rows(2, WT, n, wr, t0, tn, x, out, ldo, r);
        }
        if (r < nrows) {
            const uint8_t *const wr[2] = {base + r * row_bytes, base + r * row_bytes};
            gemm_rows(1, WT, n, wr, t0, tn, x, out, ldo, r);
        }
    }
}

void mk_gemm_q4_0_q8g_avx512vbmi(size_t n, size_t nrows, const void *w, size_t row_bytes,
                                 size_t ntok, const struct mk_q8g *x, float *out, size_t ldo) {
    gemm(0, n, nrows, w, row_bytes, ntok, x, out, ldo);
}

void mk_gemm_q8_0_q8g_avx512vbmi(size_t n, size_t nrows, const void *w, size_t row_bytes,
                                 size_t ntok, const struct mk_q8g *x, float *out, size_t ldo) {
    gemm(1, n, nrows, w, row_bytes, ntok, x, out, ldo);
}

void mk_gemm_q4_k_q8g_avx512vbmi(size_t n, size_t nrows, const void *w, size_t row_bytes,
                                 size_t ntok, const struct mk_q8g *x, float *out, size_t ldo) {
    gemm(2, n, nrows, w, row_bytes, ntok, x, out, ldo);
}

void mk_gemm_q5_k_q8g_avx512vbmi(size_t n, size_t nrows, const void *w, size_t row_bytes,
                                 size_t ntok, const struct mk_q8g *x, float *out, size_t ldo) {
    gemm(3, n, nrows, w, row_bytes, ntok, x, out, ldo);
}

void mk_gemm_q6_k_q8g_avx512vbmi(size_t n, size_t nrows, const void *w, size_t row_bytes,
                                 size_t ntok, const struct mk_q8g *x, float *out, size_t ldo) {
    gemm(4, n, nrows, w, row_bytes, ntok, x, out, ldo);
}
