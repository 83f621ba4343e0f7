/* AVX2 + FMA + F16C kernels (built with -mavx2 -mfma -mf16c; called only when the CPU has
 * them). Same contracts as the generic ones in moela_kernels.h. */
#include "moela_kernels.h"

#include <immintrin.h>
#include <string.h>

static inline float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Decode streams each weight row once: the one-row kernels keep four blocks in flight (four
 * independent accumulators), fold every integer correction into the int32 lanes before the
 * one int→float conversion per block, and prefetch ahead of the hardware prefetcher. */
#define Q_PREFETCH 1024 /* bytes ahead of the weights being read */

/* Σ w·x pairs of one Q8_0 block as 8 int32 lanes: |w| · sign(w)·x, unsigned × signed;
 * |w| ≤ 128 and |x| ≤ 127 never saturate the int16 pairs. */
static inline __m256i q8_0_block(const uint8_t *b, const int8_t *x) {
    const __m256i w = _mm256_loadu_si256((const __m256i *)(b + 2));
    const __m256i xv = _mm256_loadu_si256((const __m256i *)x);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(xv, w)),
                             _mm256_set1_epi16(1));
}

float mk_vec_dot_q8_0_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    const size_t nb = n / 32;
    size_t i = 0;
    for (; i + 4 <= nb; i += 4, b += 4 * 34) {
        _mm_prefetch((const char *)b + Q_PREFETCH, _MM_HINT_T0);
        _mm_prefetch((const char *)b + Q_PREFETCH + 64, _MM_HINT_T0);
        const int8_t *x = qs + 32 * i;
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q8_0_block(b, x)), _mm256_set1_ps(f16_at(b) * d[i]), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q8_0_block(b + 34, x + 32)),
                             _mm256_set1_ps(f16_at(b + 34) * d[i + 1]), a1);
        a2 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q8_0_block(b + 68, x + 64)),
                             _mm256_set1_ps(f16_at(b + 68) * d[i + 2]), a2);
        a3 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q8_0_block(b + 102, x + 96)),
                             _mm256_set1_ps(f16_at(b + 102) * d[i + 3]), a3);
    }
    for (; i < nb; i++, b += 34)
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q8_0_block(b, qs + 32 * i)), _mm256_set1_ps(f16_at(b) * d[i]), a0);
    return hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}

static inline __m256i unpack_q4(const uint8_t *q) {
    __m128i raw = _mm_loadu_si128((const __m128i *)q);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

/* The 32 fifth bits of qh as 0x10 in bytes 0..31 (byte i = element i). */
static inline __m256i lx_hbits(uint32_t qh) {
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL,
                                           0x0101010101010101LL, 0);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), shuf);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

static inline uint32_t lx_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Σ (q-8)·x of one Q4_0 block as 8 int32 lanes: nibbles 0..15 (unsigned) × x pairs (≤
 * 2·15·127, no saturation), minus the block's Σx once per lane (8 lanes: the -8 offset). */
static inline __m256i q4_0_block(const uint8_t *b, const int8_t *x, const int32_t *s) {
    const __m256i p = _mm256_madd_epi16(
        _mm256_maddubs_epi16(unpack_q4(b + 2), _mm256_loadu_si256((const __m256i *)x)), _mm256_set1_epi16(1));
    return _mm256_sub_epi32(p, _mm256_set1_epi32(*s));
}

float mk_vec_dot_q4_0_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s) {
    const uint8_t *b = (const uint8_t *)w;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    const size_t nb = n / 32;
    size_t i = 0;
    for (; i + 4 <= nb; i += 4, b += 4 * 18) {
        _mm_prefetch((const char *)b + Q_PREFETCH, _MM_HINT_T0);
        const int8_t *x = qs + 32 * i;
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q4_0_block(b, x, s + i)), _mm256_set1_ps(f16_at(b) * d[i]), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q4_0_block(b + 18, x + 32, s + i + 1)),
                             _mm256_set1_ps(f16_at(b + 18) * d[i + 1]), a1);
        a2 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q4_0_block(b + 36, x + 64, s + i + 2)),
                             _mm256_set1_ps(f16_at(b + 36) * d[i + 2]), a2);
        a3 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q4_0_block(b + 54, x + 96, s + i + 3)),
                             _mm256_set1_ps(f16_at(b + 54) * d[i + 3]), a3);
    }
    for (; i < nb; i++, b += 18)
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q4_0_block(b, qs + 32 * i, s + i)), _mm256_set1_ps(f16_at(b) * d[i]), a0);
    return hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}

/* Decode: four weight rows against one activation row (row i at w + i·row_bytes; out[0..4]).
 * The activation block is loaded once for the four rows and the per-block float work is done
 * once for all four: the rows' int16 pair sums are reduced together by horizontal adds into
 * one vector [row 0..3 | row 0..3] (low/high 128-bit halves = elements 0-15 / 16-31 of the
 * block); two blocks' halves are folded into [block j rows 0..3 | block j+1 rows 0..3], whose
 * eight weight scales come from one f16 conversion, so a pair of blocks costs one
 * conversion, one multiply and one FMA for four rows. Q4_0 nibbles come from one broadcast
 * load and one variable shift; its -8·Σx is subtracted from the folded int32 lanes.
 * Q8_0 uses the sign trick (|w|, sign(w)·x) and reduces in int32 (its pair sums need 16 bits). */
/* The block types of the four-row and GEMM kernels: unsigned codes with an offset (Q4_0:
 * q - 8, Q5_0: q - 16, subtracted as offset·Σx) or signed values (Q8_0 codes, IQ4_NL
 * codebook values: the sign trick). */
enum { R_Q8_0, R_Q4_0, R_Q5_0, R_IQ4_NL };
#define R_BS(t) ((t) == R_Q8_0 ? 34 : (t) == R_Q5_0 ? 22 : 18)
#define R_UNSIGNED(t) ((t) == R_Q4_0 || (t) == R_Q5_0)
#define R_OFFSET(t) ((t) == R_Q5_0 ? 16 : 8)

static inline __m256i iq4nl_values(__m256i u) {
    const __m256i kv = _mm256_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38,
                                        53, 69, 89, 113, -127, -104, -83, -65, -49, -35, -22,
                                        -10, 1, 13, 25, 38, 53, 69, 89, 113);
    return _mm256_shuffle_epi8(kv, u);
}

/* The 32 bytes of a block in element order: Q4_0/Q5_0 codes, Q8_0 codes, IQ4_NL values. */
static inline __attribute__((always_inline)) __m256i r_block(int t, const uint8_t *b) {
    switch (t) {
    case R_Q8_0: return _mm256_loadu_si256((const __m256i *)(b + 2));
    case R_Q4_0: return unpack_q4(b + 2);
    case R_Q5_0: return _mm256_or_si256(unpack_q4(b + 6), lx_hbits(lx_u32(b + 2)));
    default: return iq4nl_values(unpack_q4(b + 2));
    }
}

static inline __attribute__((always_inline)) __m256i rows4_block(int t, const uint8_t *const b[4],
                                                                 size_t off, __m256i xv) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i m[4];
    for (int r = 0; r < 4; r++) {
        if (R_UNSIGNED(t)) {
            const size_t q = t == R_Q5_0 ? 6 : 2;
            const __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(b[r] + off + q)));
            __m256i u = _mm256_and_si256(_mm256_srlv_epi64(raw, _mm256_set_epi64x(4, 4, 0, 0)),
                                         _mm256_set1_epi8(0x0f));
            if (t == R_Q5_0) u = _mm256_or_si256(u, lx_hbits(lx_u32(b[r] + off + 2)));
            m[r] = _mm256_maddubs_epi16(u, xv);
        } else {
            const __m256i wv = t == R_Q8_0 ? _mm256_loadu_si256((const __m256i *)(b[r] + off + 2))
                                           : iq4nl_values(unpack_q4(b[r] + off + 2));
            m[r] = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv)), ones);
        }
    }
    if (R_UNSIGNED(t)) /* pair sums ≤ 2·31·127: one more level fits int16 */
        return _mm256_hadd_epi32(_mm256_madd_epi16(_mm256_hadd_epi16(m[0], m[1]), ones),
                                 _mm256_madd_epi16(_mm256_hadd_epi16(m[2], m[3]), ones));
    return _mm256_hadd_epi32(_mm256_hadd_epi32(m[0], m[1]), _mm256_hadd_epi32(m[2], m[3]));
}

/* The f16 scales of block j of the four rows as 4 × uint16 in one 64-bit word. */
static inline uint64_t rows4_scales(const uint8_t *const b[4], size_t off) {
    uint16_t h[4];
    for (int r = 0; r < 4; r++) memcpy(&h[r], b[r] + off, 2);
    return (uint64_t)h[0] | (uint64_t)h[1] << 16 | (uint64_t)h[2] << 32 | (uint64_t)h[3] << 48;
}

#ifndef ROWS4_AHEAD
#define ROWS4_AHEAD 4 /* rows ahead of the first row being read */
#endif

static inline __attribute__((always_inline)) void dot_rows4_avx2(int t, size_t n, const void *w,
                                                                 size_t row_bytes, const int8_t *qs,
                                                                 const float *d, const int32_t *s,
                                                                 float *out) {
    const size_t bs = R_BS(t), nb = n / 32;
    const uint8_t *b[4];
    for (int r = 0; r < 4; r++) b[r] = (const uint8_t *)w + r * row_bytes;
    const __m256i lo4 = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + 2 <= nb; j += 2) {
        const size_t off = j * bs;
        /* The four rows are one contiguous span read at four points: prefetch the span of the
         * next four rows (the caller's rows are consecutive) at the rate this one is read. */
        for (size_t o = 0; o < 8 * bs; o += 64)
            _mm_prefetch((const char *)w + ROWS4_AHEAD * row_bytes + 4 * off + o, _MM_HINT_T0);
        const __m256i p0 = rows4_block(t, b, off, _mm256_loadu_si256((const __m256i *)(qs + 32 * j)));
        const __m256i p1 = rows4_block(t, b, off + bs, _mm256_loadu_si256((const __m256i *)(qs + 32 * j + 32)));
        /* [block j rows 0..3 | block j+1 rows 0..3], each the sum of its two halves */
        __m256i p = _mm256_add_epi32(_mm256_permute2x128_si256(p0, p1, 0x20), _mm256_permute2x128_si256(p0, p1, 0x31));
        if (R_UNSIGNED(t)) {
            const __m256i sv = _mm256_permutevar8x32_epi32(
                _mm256_castsi128_si256(_mm_loadl_epi64((const __m128i *)(s + j))), lo4);
            p = _mm256_sub_epi32(p, _mm256_mullo_epi32(sv, _mm256_set1_epi32(R_OFFSET(t))));
        }
        const __m128i h = _mm_set_epi64x((long long)rows4_scales(b, off + bs), (long long)rows4_scales(b, off));
        const __m256 dxv = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(d + j)))), lo4);
        const __m256 f = _mm256_mul_ps(_mm256_cvtph_ps(h), dxv);
        if (j & 2) acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), f, acc1);
        else acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), f, acc0);
    }
    __m128 r4 = _mm_add_ps(_mm256_castps256_ps128(_mm256_add_ps(acc0, acc1)),
                           _mm256_extractf128_ps(_mm256_add_ps(acc0, acc1), 1));
    if (j < nb) { /* an odd last block */
        const size_t off = j * bs;
        __m256i p = rows4_block(t, b, off, _mm256_loadu_si256((const __m256i *)(qs + 32 * j)));
        __m128i p4 = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
        if (R_UNSIGNED(t)) p4 = _mm_sub_epi32(p4, _mm_set1_epi32(R_OFFSET(t) * s[j]));
        const __m128 f = _mm_mul_ps(_mm_cvtph_ps(_mm_set_epi64x(0, (long long)rows4_scales(b, off))), _mm_set1_ps(d[j]));
        r4 = _mm_fmadd_ps(_mm_cvtepi32_ps(p4), f, r4);
    }
    _mm_storeu_ps(out, r4);
}

void mk_vec_dot_rows4_q4_0_q8a_avx2(size_t n, const void *w, size_t row_bytes, const int8_t *qs,
                                    const float *d, const int32_t *s, float *out) {
    dot_rows4_avx2(R_Q4_0, n, w, row_bytes, qs, d, s, out);
}

void mk_vec_dot_rows4_q8_0_q8a_avx2(size_t n, const void *w, size_t row_bytes, const int8_t *qs,
                                    const float *d, const int32_t *s, float *out) {
    dot_rows4_avx2(R_Q8_0, n, w, row_bytes, qs, d, s, out);
}

void mk_vec_dot_rows4_q5_0_q8a_avx2(size_t n, const void *w, size_t row_bytes, const int8_t *qs,
                                    const float *d, const int32_t *s, float *out) {
    dot_rows4_avx2(R_Q5_0, n, w, row_bytes, qs, d, s, out);
}

void mk_vec_dot_rows4_iq4_nl_q8a_avx2(size_t n, const void *w, size_t row_bytes, const int8_t *qs,
                                      const float *d, const int32_t *s, float *out) {
    dot_rows4_avx2(R_IQ4_NL, n, w, row_bytes, qs, d, s, out);
}

/* Prefill GEMM (contract of mk_gemm_*_q8a_generic), the structure of the VBMI one on 256 bits:
 * a tile of 2 weight rows × 4 blocks is unpacked once into 8 registers (unsigned codes for
 * Q4_0/Q5_0/Q4_1/Q5_1, signed codes or codebook values for Q8_0/IQ4_NL/IQ4_XS, whose |w| and
 * signs are taken per token) with its 8 factors (and Q4_1/Q5_1's 8 mins), and every token of
 * a 64-token slice streams past it: per row and block one vpmaddubsw + vpmaddwd, the integer
 * offset (Q4_0's -8·Σx, Q5_0's -16·Σx), one conversion and one FMA into the token's
 * accumulator for the row (kept in a stack tile, summed across lanes once per row at the
 * end). The mins' m·dx·Σx of the four blocks go into one more FMA per token and tile (lanes
 * 0-3 row 0, 4-7 row 1). */
#define GEMM_TOK 64

/* The GEMM's block types: R_* above plus these (all four-row kernels stay R_*-only). */
enum { G_Q4_1 = R_IQ4_NL + 1, G_Q5_1, G_IQ4_XS };
#define G_UNSIGNED(t) (R_UNSIGNED(t) || (t) == G_Q4_1 || (t) == G_Q5_1)
#define G_MINS(t) ((t) == G_Q4_1 || (t) == G_Q5_1)

/* The one-row legacy/IQ4 kernels' block decoder (defined with them below). */
enum { LX_Q4_1, LX_Q5_0, LX_Q5_1, LX_IQ4_NL, LX_IQ4_XS };
static inline __attribute__((always_inline)) __m256i lx_block(int type, const uint8_t *w,
                                                             size_t j, float *f, float *m);

/* Block j of a row: its 32 bytes in element order (as r_block), its factor and min. */
static inline __attribute__((always_inline)) __m256i g_block(int t, const uint8_t *row, size_t j,
                                                             float *f, float *m) {
    switch (t) {
    case G_Q4_1: return lx_block(LX_Q4_1, row, j, f, m);
    case G_Q5_1: return lx_block(LX_Q5_1, row, j, f, m);
    case G_IQ4_XS: return lx_block(LX_IQ4_XS, row, j, f, m);
    default: {
        const uint8_t *b = row + R_BS(t) * j;
        *f = f16_at(b);
        *m = 0.0f;
        return r_block(t, b);
    }
    }
}

/* Σ over one block's 32 pairs as 8 int32 lanes, the offset included. */
static inline __attribute__((always_inline)) __m256i g_isum(int t, __m256i wv, __m256i xv, int32_t sx) {
    const __m256i ones = _mm256_set1_epi16(1);
    if (!G_UNSIGNED(t))
        return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv)), ones);
    const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(wv, xv), ones);
    if (G_MINS(t)) return p;
    return _mm256_sub_epi32(p, _mm256_set1_epi32(R_OFFSET(t) / 8 * sx));
}

static inline __attribute__((always_inline)) void gemm_q8a_avx2(int ty, size_t n, size_t nrows,
                                                                const void *w, size_t row_bytes,
                                                                size_t ntok, const int8_t *qs,
                                                                const float *d, const int32_t *s,
                                                                float *out, size_t ldo) {
    const size_t nb = n / 32;
    __m256 acc[GEMM_TOK][2], accm[GEMM_TOK];
    for (size_t t0 = 0; t0 < ntok; t0 += GEMM_TOK) {
        const size_t tn = ntok - t0 < GEMM_TOK ? ntok - t0 : GEMM_TOK;
        for (size_t r = 0; r < nrows; r += 2) {
            /* An odd last row runs as a pair with itself (its result stored once). */
            const int two = r + 1 < nrows;
            const uint8_t *row[2] = {(const uint8_t *)w + r * row_bytes,
                                     (const uint8_t *)w + (r + two) * row_bytes};
            for (size_t t = 0; t < tn; t++) acc[t][0] = acc[t][1] = accm[t] = _mm256_setzero_ps();
            size_t k = 0;
            for (; k + 4 <= nb; k += 4) {
                __m256i wv[2][4];
                float ws[2][4], wm[2][4];
                for (int h = 0; h < 2; h++)
                    for (int j = 0; j < 4; j++) wv[h][j] = g_block(ty, row[h], k + j, &ws[h][j], &wm[h][j]);
                const __m256 mv = G_MINS(ty) ? _mm256_setr_ps(wm[0][0], wm[0][1], wm[0][2], wm[0][3], wm[1][0],
                                                              wm[1][1], wm[1][2], wm[1][3])
                                             : _mm256_setzero_ps();
                for (size_t t = 0; t < tn; t++) {
                    const size_t tt = t0 + t;
                    const int8_t *x = qs + tt * n + 32 * k;
                    const float *dx = d + tt * nb + k;
                    const int32_t *sx = s + tt * nb + k;
                    __m256 a0 = acc[t][0], a1 = acc[t][1];
                    for (int j = 0; j < 4; j++) {
                        const __m256i xv = _mm256_loadu_si256((const __m256i *)(x + 32 * j));
                        const __m256 dj = _mm256_broadcast_ss(dx + j);
                        const __m256i p0 = g_isum(ty, wv[0][j], xv, sx[j]);
                        const __m256i p1 = g_isum(ty, wv[1][j], xv, sx[j]);
                        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_mul_ps(dj, _mm256_set1_ps(ws[0][j])), a0);
                        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_mul_ps(dj, _mm256_set1_ps(ws[1][j])), a1);
                    }
                    acc[t][0] = a0;
                    acc[t][1] = a1;
                    if (G_MINS(ty)) { /* dx·Σx of the four blocks, for both rows */
                        const __m128 ds = _mm_mul_ps(_mm_loadu_ps(dx), _mm_cvtepi32_ps(_mm_loadu_si128((const __m128i *)sx)));
                        accm[t] = _mm256_fmadd_ps(mv, _mm256_set_m128(ds, ds), accm[t]);
                    }
                }
            }
            for (; k < nb; k++) /* blocks past the last full tile (never for IQ4_XS: 8 per row) */
                for (size_t t = 0; t < tn; t++) {
                    const size_t tt = t0 + t;
                    const __m256i xv = _mm256_loadu_si256((const __m256i *)(qs + tt * n + 32 * k));
                    for (int h = 0; h < 2; h++) {
                        float f, m;
                        const __m256i v = g_block(ty, row[h], k, &f, &m);
                        const __m256i p = g_isum(ty, v, xv, s[tt * nb + k]);
                        acc[t][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(f * d[tt * nb + k]), acc[t][h]);
                        if (G_MINS(ty)) /* m·dx·Σx spread over the 8 lanes (exact: /8) */
                            acc[t][h] = _mm256_fmadd_ps(_mm256_set1_ps(m * 0.125f),
                                                        _mm256_set1_ps(d[tt * nb + k] * (float)s[tt * nb + k]),
                                                        acc[t][h]);
                    }
                }
            for (size_t t = 0; t < tn; t++) {
                float m0 = 0.0f, m1 = 0.0f;
                if (G_MINS(ty)) {
                    __m128 lo = _mm256_castps256_ps128(accm[t]), hi = _mm256_extractf128_ps(accm[t], 1);
                    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
                    hi = _mm_add_ps(hi, _mm_movehl_ps(hi, hi));
                    m0 = _mm_cvtss_f32(_mm_add_ss(lo, _mm_movehdup_ps(lo)));
                    m1 = _mm_cvtss_f32(_mm_add_ss(hi, _mm_movehdup_ps(hi)));
                }
                out[(t0 + t) * ldo + r] = hsum256(acc[t][0]) + m0;
                if (two) out[(t0 + t) * ldo + r + 1] = hsum256(acc[t][1]) + m1;
            }
        }
    }
}

/* ---- K-quants ---- */

/* The eight 6-bit scales and mins of a Q4_K/Q5_K super-block from its 12 packed bytes. */
static inline void k_unpack(const uint8_t *s, uint8_t sc[8], uint8_t m[8]) {
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 0x0f) | ((s[j] >> 6) << 4);
        m[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
}

/* Σ_j dx_j · dmin · m_j · s_j over the 8 sub-blocks, as 8 lanes (added to acc). m_j·s_j is exact
 * in int32 (≤ 63 · 32 · 127). */
static inline __m256 k_mins(__m256 acc, const uint8_t m[8], const int32_t *s, const float *dx,
                            float dmin) {
    __m256i mv = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)m));
    __m256i ms = _mm256_mullo_epi32(mv, _mm256_loadu_si256((const __m256i *)s));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_mul_ps(_mm256_loadu_ps(dx), _mm256_set1_ps(dmin)),
                           acc);
}

/* Q4_K (qh NULL) or Q5_K: per 32 bytes of nibbles, sub-blocks 2i (low) and 2i+1 (high);
 * codes × qx pairs (≤ 2·31·127) then × the 6-bit scale in madd (exact), then × d·dx. */
static inline float dot_q45_k_avx2(size_t n, const uint8_t *b, const int8_t *qs, const float *dx,
                                   const int32_t *s, int five) {
    const size_t bb = five ? 176 : 144;
    const __m256i m4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (size_t sb = 0; sb < n / 256; sb++, b += bb, qs += 256, dx += 8, s += 8) {
        uint8_t sc[8], m[8];
        k_unpack(b + 4, sc, m);
        float d = f16_at(b);
        accm = k_mins(accm, m, s, dx, f16_at(b + 2));
        const uint8_t *q = b + (five ? 48 : 16);
        __m256i qh = five ? _mm256_loadu_si256((const __m256i *)(b + 16)) : _mm256_setzero_si256();
        for (int i = 0; i < 4; i++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(q + 32 * i));
            __m256i lo = _mm256_and_si256(raw, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            if (five) {
                lo = _mm256_or_si256(
                    lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * i)), one), 4));
                hi = _mm256_or_si256(
                    hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * i + 1)), one), 4));
            }
            __m256i x0 = _mm256_loadu_si256((const __m256i *)(qs + 64 * i));
            __m256i x1 = _mm256_loadu_si256((const __m256i *)(qs + 64 * i + 32));
            __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, x0), _mm256_set1_epi16(sc[2 * i]));
            __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x1), _mm256_set1_epi16(sc[2 * i + 1]));
            acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(d * dx[2 * i]), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(d * dx[2 * i + 1]), acc1);
        }
    }
    return hsum256(_mm256_add_ps(acc0, acc1)) - hsum256(accm);
}

float mk_vec_dot_q4_k_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s) {
    return dot_q45_k_avx2(n, (const uint8_t *)w, qs, d, s, 0);
}

float mk_vec_dot_q5_k_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s) {
    return dot_q45_k_avx2(n, (const uint8_t *)w, qs, d, s, 1);
}

/* Q6_K: codes minus 32 as signed bytes; |q|·(sign(q)·x) pairs (≤ 2·32·127), then madd with
 * the two 16-element sub-block scales (int16 lanes 0-7 = elements 0-15, 8-15 = 16-31). */
float mk_vec_dot_q6_k_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *dx,
                               const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(3),
                  off = _mm256_set1_epi8(32);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (size_t sb = 0; sb < n / 256; sb++, b += 210) {
        float d = f16_at(b + 208);
        const int8_t *sc = (const int8_t *)(b + 192);
        for (int h = 0; h < 2; h++, qs += 128, dx += 4) {
            __m256i l0 = _mm256_loadu_si256((const __m256i *)(b + 64 * h));
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(b + 64 * h + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * h));
            __m256i code[4] = {
                _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4)),
                _mm256_or_si256(_mm256_and_si256(l1, m4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4)),
            };
            for (int g = 0; g < 4; g++) {
                __m256i q = _mm256_sub_epi8(code[g], off);
                __m256i x = _mm256_loadu_si256((const __m256i *)(qs + 32 * g));
                __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q));
                const int k = 8 * h + 2 * g;
                __m256i scv = _mm256_set_m128i(_mm_set1_epi16(sc[k + 1]), _mm_set1_epi16(sc[k]));
                __m256i p32 = _mm256_madd_epi16(p, scv);
                if (g % 2 == 0)
                    acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), _mm256_set1_ps(d * dx[g]), acc0);
                else
                    acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), _mm256_set1_ps(d * dx[g]), acc1);
            }
        }
    }
    return hsum256(_mm256_add_ps(acc0, acc1));
}

/* K-quant prefill GEMMs (contract of mk_gemm_*_q8a_generic; n a multiple of 256): the
 * structure of the Q4_0 one. A tile is 2 weight rows × half a super-block (4 activation
 * blocks, 128 elements): its codes are unpacked once into 8 registers (Q4_K/Q5_K: unsigned
 * 4/5-bit codes; Q6_K: |q-32| with q-32 kept for the signs) with the sub-block scales as
 * int16 madd factors, then every token of a 64-token slice streams past it: per row and
 * block one vpmaddubsw (Q6_K: + vpsignb of x) and one vpmaddwd with the scale (exact in
 * int32), one conversion and one FMA by the block's dx; the four blocks' sum is scaled by
 * the row's d once (fma into the token's accumulator). Q4_K/Q5_K's mins go in once per
 * super-block and token: dmin·m (8 lanes, per row) × dx·s (8 lanes, per token, shared by
 * both rows). */
enum { GK_Q4, GK_Q5, GK_Q6 };

struct gk_tile {
    __m256i code[2][4], sgn[2][4], sc[2][4];
    __m256 d[2], mins[2]; /* d broadcast; dmin·m per sub-block (Q4_K/Q5_K, first half only) */
};

static inline __attribute__((always_inline)) void gk_unpack(int type, const uint8_t *b, int h, int r,
                                                            struct gk_tile *tl) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    if (type == GK_Q6) {
        const __m256i m2 = _mm256_set1_epi8(3), off = _mm256_set1_epi8(32);
        const __m256i l0 = _mm256_loadu_si256((const __m256i *)(b + 64 * h));
        const __m256i l1 = _mm256_loadu_si256((const __m256i *)(b + 64 * h + 32));
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * h));
        const __m256i c[4] = {
            _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4)),
            _mm256_or_si256(_mm256_and_si256(l1, m4),
                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                            _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4)),
        };
        const int8_t *sc = (const int8_t *)(b + 192);
        for (int g = 0; g < 4; g++) {
            const __m256i q = _mm256_sub_epi8(c[g], off);
            tl->sgn[r][g] = q;
            tl->code[r][g] = _mm256_sign_epi8(q, q);
            const int k = 8 * h + 2 * g;
            tl->sc[r][g] = _mm256_set_m128i(_mm_set1_epi16(sc[k + 1]), _mm_set1_epi16(sc[k]));
        }
        tl->d[r] = _mm256_set1_ps(f16_at(b + 208));
        return;
    }
    uint8_t sc[8], m[8];
    k_unpack(b + 4, sc, m);
    const uint8_t *q = b + (type == GK_Q5 ? 48 : 16) + 64 * h;
    const __m256i qh = type == GK_Q5 ? _mm256_loadu_si256((const __m256i *)(b + 16)) : _mm256_setzero_si256();
    const __m256i one = _mm256_set1_epi8(1);
    for (int i = 0; i < 2; i++) {
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(q + 32 * i));
        __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        if (type == GK_Q5) {
            const int j = 4 * h + 2 * i; /* sub-block of the low nibbles */
            lo = _mm256_or_si256(
                lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(j)), one), 4));
            hi = _mm256_or_si256(
                hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(j + 1)), one), 4));
        }
        tl->code[r][2 * i] = lo;
        tl->code[r][2 * i + 1] = hi;
    }
    for (int j = 0; j < 4; j++) tl->sc[r][j] = _mm256_set1_epi16(sc[4 * h + j]);
    tl->d[r] = _mm256_set1_ps(f16_at(b));
    if (h == 0)
        tl->mins[r] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)m))),
                                    _mm256_set1_ps(f16_at(b + 2)));
}

static inline __attribute__((always_inline)) void gemm_k_avx2(int type, size_t n, size_t nrows,
                                                              const void *w, size_t row_bytes,
                                                              size_t ntok, const int8_t *qs,
                                                              const float *d, const int32_t *s,
                                                              float *out, size_t ldo) {
    const size_t nb = n / 32, bb = type == GK_Q6 ? 210 : type == GK_Q5 ? 176 : 144;
    __m256 acc[GEMM_TOK][2];
    struct gk_tile tl;
    for (size_t t0 = 0; t0 < ntok; t0 += GEMM_TOK) {
        const size_t tn = ntok - t0 < GEMM_TOK ? ntok - t0 : GEMM_TOK;
        for (size_t r = 0; r < nrows; r += 2) {
            /* An odd last row runs as a pair with itself (its result stored once). */
            const int two = r + 1 < nrows;
            const uint8_t *row[2] = {(const uint8_t *)w + r * row_bytes,
                                     (const uint8_t *)w + (r + two) * row_bytes};
            for (size_t t = 0; t < tn; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
            for (size_t sb = 0; sb < n / 256; sb++)
                for (int h = 0; h < 2; h++) {
                    gk_unpack(type, row[0] + sb * bb, h, 0, &tl);
                    gk_unpack(type, row[1] + sb * bb, h, 1, &tl);
                    const size_t k = 8 * sb + 4 * h; /* first activation block of the tile */
                    for (size_t t = 0; t < tn; t++) {
                        const size_t tt = t0 + t;
                        const int8_t *x = qs + tt * n + 32 * k;
                        const float *dx = d + tt * nb + k;
                        __m256 f0 = _mm256_setzero_ps(), f1 = _mm256_setzero_ps();
                        for (int j = 0; j < 4; j++) {
                            const __m256i xv = _mm256_loadu_si256((const __m256i *)(x + 32 * j));
                            const __m256 dj = _mm256_broadcast_ss(dx + j);
                            __m256i p0, p1;
                            if (type == GK_Q6) {
                                p0 = _mm256_maddubs_epi16(tl.code[0][j], _mm256_sign_epi8(xv, tl.sgn[0][j]));
                                p1 = _mm256_maddubs_epi16(tl.code[1][j], _mm256_sign_epi8(xv, tl.sgn[1][j]));
                            } else {
                                p0 = _mm256_maddubs_epi16(tl.code[0][j], xv);
                                p1 = _mm256_maddubs_epi16(tl.code[1][j], xv);
                            }
                            p0 = _mm256_madd_epi16(p0, tl.sc[0][j]);
                            p1 = _mm256_madd_epi16(p1, tl.sc[1][j]);
                            f0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), dj, f0);
                            f1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), dj, f1);
                        }
                        __m256 a0 = _mm256_fmadd_ps(f0, tl.d[0], acc[t][0]);
                        __m256 a1 = _mm256_fmadd_ps(f1, tl.d[1], acc[t][1]);
                        if (type != GK_Q6 && h == 0) {
                            const __m256 dxs = _mm256_mul_ps(
                                _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(s + tt * nb + k))),
                                _mm256_loadu_ps(dx));
                            a0 = _mm256_fnmadd_ps(tl.mins[0], dxs, a0);
                            a1 = _mm256_fnmadd_ps(tl.mins[1], dxs, a1);
                        }
                        acc[t][0] = a0;
                        acc[t][1] = a1;
                    }
                }
            for (size_t t = 0; t < tn; t++) {
                out[(t0 + t) * ldo + r] = hsum256(acc[t][0]);
                if (two) out[(t0 + t) * ldo + r + 1] = hsum256(acc[t][1]);
            }
        }
    }
}

/* ---- Prefill GEMM, eight rows at a time ----
 * A tile is one 32-element block of 8 weight rows. Each row's 32 codes are decoded in element
 * order (as the kernels above do) and the 8 × 8 dwords are transposed, so that vector v holds
 * elements 4v..4v+3 of rows 0..7 (one row per 32-bit lane). A token then costs, per tile, 8
 * broadcasts of its own 4-byte groups and 8 vpmaddubsw whose int16 lanes can be summed before
 * one vpmaddwd (unsigned 4-bit codes: 8 products of ≤ 3810; 5-bit: 4; 6-bit signed Q6_K: 4;
 * 8-bit signed codes and IQ4 values: 1), then one conversion and one FMA with the 8 rows'
 * factors: lane r of the accumulator is row r, so no horizontal sums and a plain 8-float store
 * per token. The transposition is paid once per tile and the tile is reused by every token of
 * a 64-token slice. Mins (Q4_1/Q5_1: +m, Q4_K/Q5_K: -dmin·m) add one FMA with dx·Σx. */
enum { E_Q4_0, E_Q4_1, E_Q5_0, E_Q5_1, E_Q8_0, E_IQ4_NL, E_IQ4_XS, E_Q4_K, E_Q5_K, E_Q6_K };
#define E_SIGNED(t) ((t) == E_Q8_0 || (t) == E_IQ4_NL || (t) == E_IQ4_XS || (t) == E_Q6_K)
#define E_FIVE(t) ((t) == E_Q5_0 || (t) == E_Q5_1 || (t) == E_Q5_K)
#define E_MINS(t) ((t) == E_Q4_1 || (t) == E_Q5_1 || (t) == E_Q4_K || (t) == E_Q5_K)
#define E_OFFSET(t) ((t) == E_Q4_0 ? 8 : (t) == E_Q5_0 ? 16 : 0)
/* The R_* / G_* name of the same type (for r_block / g_block). */
#define E_R(t) ((t) == E_Q4_0 ? R_Q4_0 : (t) == E_Q8_0 ? R_Q8_0 : (t) == E_Q5_0 ? R_Q5_0 : R_IQ4_NL)
#define E_G(t) ((t) == E_Q4_1 ? G_Q4_1 : (t) == E_Q5_1 ? G_Q5_1 : G_IQ4_XS)

/* Block j of a row (bytes at `row`): 32 codes in element order, the factor of elements 0-15
 * (*f) and 16-31 (*f2: differs only for Q6_K) and the min (*m, signed as it is added). */
static inline __attribute__((always_inline)) __m256i e_codes(int t, const uint8_t *row, size_t j,
                                                             float *f, float *f2, float *m) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const uint8_t *b;
    *m = 0.0f;
    switch (t) {
    case E_Q4_0:
    case E_Q8_0:
    case E_Q5_0:
    case E_IQ4_NL:
        b = row + R_BS(E_R(t)) * j;
        *f = *f2 = f16_at(b);
        return r_block(E_R(t), b);
    case E_Q4_1:
    case E_Q5_1:
    case E_IQ4_XS: {
        float ff, mm;
        const __m256i v = g_block(E_G(t), row, j, &ff, &mm);
        *f = *f2 = ff;
        *m = mm;
        return v;
    }
    case E_Q4_K:
    case E_Q5_K: { /* factors and mins: from k_factors, once per super-block */
        const size_t bb = t == E_Q5_K ? 176 : 144;
        const int i = (int)(j % 8);
        b = row + bb * (j / 8);
        *f = *f2 = 0.0f;
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(b + (t == E_Q5_K ? 48 : 16) + 32 * (i / 2)));
        __m256i c = _mm256_and_si256(_mm256_srl_epi16(raw, _mm_cvtsi32_si128(4 * (i & 1))), m4);
        if (t == E_Q5_K) {
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 16));
            c = _mm256_or_si256(
                c, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(i)), _mm256_set1_epi8(1)), 4));
        }
        return c;
    }
    default: { /* Q6_K: 128 elements per half; block i of 8: ql/qh/scale positions */
        const int i = (int)(j % 8), h = i / 4, g = i % 4;
        b = row + 210 * (j / 8);
        const __m256i l = _mm256_loadu_si256((const __m256i *)(b + 64 * h + 32 * (g & 1)));
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * h));
        const __m256i lo = _mm256_and_si256(_mm256_srl_epi16(l, _mm_cvtsi32_si128(4 * (g / 2))), m4);
        const __m256i hi = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * g)), _mm256_set1_epi8(3));
        const int8_t *sc = (const int8_t *)(b + 192);
        const float d = f16_at(b + 208);
        *f = d * (float)sc[8 * h + 2 * g];
        *f2 = d * (float)sc[8 * h + 2 * g + 1];
        return _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)), _mm256_set1_epi8(32));
    }
    }
}

/* The factors d·sc and mins -dmin·m of the 8 sub-blocks of a Q4_K/Q5_K super-block. */
static inline void k_factors(const uint8_t *b, float f[8], float m[8]) {
    uint8_t sc[8], mn[8];
    k_unpack(b + 4, sc, mn);
    const float d = f16_at(b), dmin = f16_at(b + 2);
    for (int i = 0; i < 8; i++) {
        f[i] = d * (float)sc[i];
        m[i] = -dmin * (float)mn[i];
    }
}

/* R[r] = 8 dwords of row r → R[v] = dword v of rows 0..7 (lane r). */
static inline __attribute__((always_inline)) void transpose8_epi32(__m256i R[8]) {
    __m256i t[8], u[8];
    for (int p = 0; p < 4; p++) {
        t[2 * p] = _mm256_unpacklo_epi32(R[2 * p], R[2 * p + 1]);
        t[2 * p + 1] = _mm256_unpackhi_epi32(R[2 * p], R[2 * p + 1]);
    }
    for (int p = 0; p < 2; p++) { /* rows 4p..4p+3 */
        u[4 * p] = _mm256_unpacklo_epi64(t[4 * p], t[4 * p + 2]);
        u[4 * p + 1] = _mm256_unpackhi_epi64(t[4 * p], t[4 * p + 2]);
        u[4 * p + 2] = _mm256_unpacklo_epi64(t[4 * p + 1], t[4 * p + 3]);
        u[4 * p + 3] = _mm256_unpackhi_epi64(t[4 * p + 1], t[4 * p + 3]);
    }
    for (int v = 0; v < 4; v++) {
        R[v] = _mm256_permute2x128_si256(u[v], u[4 + v], 0x20);
        R[v + 4] = _mm256_permute2x128_si256(u[v], u[4 + v], 0x31);
    }
}

static inline __attribute__((always_inline)) void gemm8_avx2(int ty, size_t n, size_t nrows, const void *w,
                                                             size_t row_bytes, size_t ntok, const int8_t *qs,
                                                             const float *d, const int32_t *s, float *out,
                                                             size_t ldo) {
    const size_t nb = n / 32;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[GEMM_TOK];
    float kf[8][8], km[8][8]; /* Q4_K/Q5_K: the current super-block's factors per row */
    for (size_t t0 = 0; t0 < ntok; t0 += GEMM_TOK) {
        const size_t tn = ntok - t0 < GEMM_TOK ? ntok - t0 : GEMM_TOK;
        for (size_t r = 0; r + 8 <= nrows; r += 8) {
            const uint8_t *row = (const uint8_t *)w + r * row_bytes;
            for (size_t t = 0; t < tn; t++) acc[t] = _mm256_setzero_ps();
            for (size_t j = 0; j < nb; j++) {
                __m256i V[8], S[8];
                float f[8], f2[8], m[8];
                for (int q = 0; q < 8; q++) V[q] = e_codes(ty, row + q * row_bytes, j, &f[q], &f2[q], &m[q]);
                if (ty == E_Q4_K || ty == E_Q5_K) {
                    if (j % 8 == 0)
                        for (int q = 0; q < 8; q++)
                            k_factors(row + q * row_bytes + (ty == E_Q5_K ? 176 : 144) * (j / 8), kf[q], km[q]);
                    for (int q = 0; q < 8; q++) {
                        f[q] = f2[q] = kf[q][j % 8];
                        m[q] = km[q][j % 8];
                    }
                }
                transpose8_epi32(V);
                if (E_SIGNED(ty))
                    for (int v = 0; v < 8; v++) {
                        S[v] = V[v];
                        V[v] = _mm256_sign_epi8(V[v], V[v]);
                    }
                const __m256 fv = _mm256_loadu_ps(f), f2v = _mm256_loadu_ps(f2), mv = _mm256_loadu_ps(m);
                for (size_t t = 0; t < tn; t++) {
                    const size_t tt = t0 + t;
                    const uint8_t *x = (const uint8_t *)(qs + tt * n + 32 * j);
                    __m256i bx[8];
                    for (int v = 0; v < 8; v++) {
                        int32_t xv;
                        memcpy(&xv, x + 4 * v, 4);
                        bx[v] = _mm256_set1_epi32(xv);
                        if (E_SIGNED(ty)) bx[v] = _mm256_sign_epi8(bx[v], S[v]);
                    }
                    const __m256 dj = _mm256_broadcast_ss(d + tt * nb + j);
                    __m256 a = acc[t];
                    if (ty == E_Q6_K) { /* |q-32| ≤ 32: four products per int16 lane, per scale */
                        __m256i lo = _mm256_maddubs_epi16(V[0], bx[0]), hi = _mm256_maddubs_epi16(V[4], bx[4]);
                        for (int v = 1; v < 4; v++) {
                            lo = _mm256_add_epi16(lo, _mm256_maddubs_epi16(V[v], bx[v]));
                            hi = _mm256_add_epi16(hi, _mm256_maddubs_epi16(V[v + 4], bx[v + 4]));
                        }
                        a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(lo, ones)), _mm256_mul_ps(fv, dj), a);
                        a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(hi, ones)), _mm256_mul_ps(f2v, dj), a);
                    } else {
                        __m256i i32;
                        if (E_SIGNED(ty)) { /* products up to 2·127·127: widen each */
                            i32 = _mm256_madd_epi16(_mm256_maddubs_epi16(V[0], bx[0]), ones);
                            for (int v = 1; v < 8; v++)
                                i32 = _mm256_add_epi32(i32, _mm256_madd_epi16(_mm256_maddubs_epi16(V[v], bx[v]), ones));
                        } else if (E_FIVE(ty)) {
                            __m256i lo = _mm256_maddubs_epi16(V[0], bx[0]), hi = _mm256_maddubs_epi16(V[4], bx[4]);
                            for (int v = 1; v < 4; v++) {
                                lo = _mm256_add_epi16(lo, _mm256_maddubs_epi16(V[v], bx[v]));
                                hi = _mm256_add_epi16(hi, _mm256_maddubs_epi16(V[v + 4], bx[v + 4]));
                            }
                            i32 = _mm256_add_epi32(_mm256_madd_epi16(lo, ones), _mm256_madd_epi16(hi, ones));
                        } else {
                            __m256i p = _mm256_maddubs_epi16(V[0], bx[0]);
                            for (int v = 1; v < 8; v++) p = _mm256_add_epi16(p, _mm256_maddubs_epi16(V[v], bx[v]));
                            i32 = _mm256_madd_epi16(p, ones);
                        }
                        if (E_OFFSET(ty)) i32 = _mm256_sub_epi32(i32, _mm256_set1_epi32(E_OFFSET(ty) * s[tt * nb + j]));
                        a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), _mm256_mul_ps(fv, dj), a);
                    }
                    if (E_MINS(ty)) a = _mm256_fmadd_ps(mv, _mm256_mul_ps(dj, _mm256_set1_ps((float)s[tt * nb + j])), a);
                    acc[t] = a;
                }
            }
            for (size_t t = 0; t < tn; t++) _mm256_storeu_ps(out + (t0 + t) * ldo + r, acc[t]);
        }
    }
}

/* The exported GEMMs: whole groups of eight rows by gemm8_avx2, the last nrows % 8 rows (and
 * batches of fewer than GEMM8_MIN_TOK tokens, too few to pay for the transpositions) by the
 * two-row tiles above. */
#ifndef GEMM8_MIN_TOK
#define GEMM8_MIN_TOK 4
#endif
#define GEMM_AVX2(T, E, TAIL)                                                                   \
    void mk_gemm_##T##_q8a_avx2(size_t n, size_t nrows, const void *w, size_t row_bytes,         \
                                size_t ntok, const int8_t *qs, const float *d, const int32_t *s, \
                                float *out, size_t ldo) {                                        \
        const size_t r8 = ntok >= GEMM8_MIN_TOK ? nrows & ~(size_t)7 : 0;                       \
        gemm8_avx2(E, n, r8, w, row_bytes, ntok, qs, d, s, out, ldo);                            \
        if (r8 < nrows)                                                                          \
            TAIL(n, nrows - r8, (const uint8_t *)w + r8 * row_bytes, row_bytes, ntok, qs, d, s,  \
                 out + r8, ldo);                                                                 \
    }
#define GEMM_TAIL(T, KERNEL, TYPE)                                                              \
    static void gemm_tail_##T(size_t n, size_t nrows, const void *w, size_t row_bytes,          \
                              size_t ntok, const int8_t *qs, const float *d, const int32_t *s,   \
                              float *out, size_t ldo) {                                          \
        KERNEL(TYPE, n, nrows, w, row_bytes, ntok, qs, d, s, out, ldo);                          \
    }
GEMM_TAIL(q4_0, gemm_q8a_avx2, R_Q4_0)
GEMM_TAIL(q8_0, gemm_q8a_avx2, R_Q8_0)
GEMM_TAIL(q5_0, gemm_q8a_avx2, R_Q5_0)
GEMM_TAIL(iq4_nl, gemm_q8a_avx2, R_IQ4_NL)
GEMM_TAIL(q4_1, gemm_q8a_avx2, G_Q4_1)
GEMM_TAIL(q5_1, gemm_q8a_avx2, G_Q5_1)
GEMM_TAIL(iq4_xs, gemm_q8a_avx2, G_IQ4_XS)
GEMM_TAIL(q4_k, gemm_k_avx2, GK_Q4)
GEMM_TAIL(q5_k, gemm_k_avx2, GK_Q5)
GEMM_TAIL(q6_k, gemm_k_avx2, GK_Q6)
GEMM_AVX2(q4_0, E_Q4_0, gemm_tail_q4_0)
GEMM_AVX2(q8_0, E_Q8_0, gemm_tail_q8_0)
GEMM_AVX2(q5_0, E_Q5_0, gemm_tail_q5_0)
GEMM_AVX2(iq4_nl, E_IQ4_NL, gemm_tail_iq4_nl)
GEMM_AVX2(q4_1, E_Q4_1, gemm_tail_q4_1)
GEMM_AVX2(q5_1, E_Q5_1, gemm_tail_q5_1)
GEMM_AVX2(iq4_xs, E_IQ4_XS, gemm_tail_iq4_xs)
GEMM_AVX2(q4_k, E_Q4_K, gemm_tail_q4_k)
GEMM_AVX2(q5_k, E_Q5_K, gemm_tail_q5_k)
GEMM_AVX2(q6_k, E_Q6_K, gemm_tail_q6_k)

/* MLA decode attention (see moela_kernels.h): heads in tiles of up to 4, 8 lanes per step,
 * scalar tails. */
static inline __m256 load8_f32(const float *p) { return _mm256_loadu_ps(p); }
static inline __m256 load8_f16(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
static inline float one_f32(const float *p) { return *p; }
static inline float one_f16(const uint16_t *p) { return mk_f16_to_f32(*p); }

/* Two cached rows per pass: 2 × H independent FMA chains (8 for four heads, enough to cover
 * the FMA latency; one row gave 4), and each query load feeds two FMAs. */
#define MLA_SCORES_TILE(NAME, T, LOAD, ONE)                                                   \
    static inline __attribute__((always_inline)) void NAME(                                   \
        const int H, size_t row, const float *q, size_t nrows, const T *c, float scale,      \
        float *out, size_t out_stride) {                                                      \
        const size_t full = row - row % 8;                                                    \
        size_t j = 0;                                                                         \
        for (; j + 2 <= nrows; j += 2) {                                                      \
            const T *c0 = c + j * row, *c1 = c0 + row;                                        \
            __m256 a0[4], a1[4];                                                              \
            for (int h = 0; h < H; h++) a0[h] = a1[h] = _mm256_setzero_ps();                  \
            for (size_t d = 0; d < full; d += 8) {                                            \
                const __m256 v0 = LOAD(c0 + d), v1 = LOAD(c1 + d);                            \
                for (int h = 0; h < H; h++) {                                                 \
                    const __m256 qv = _mm256_loadu_ps(q + h * row + d);                       \
                    a0[h] = _mm256_fmadd_ps(qv, v0, a0[h]);                                   \
                    a1[h] = _mm256_fmadd_ps(qv, v1, a1[h]);                                   \
                }                                                                             \
            }                                                                                 \
            for (int h = 0; h < H; h++) {                                                     \
                float s0 = hsum256(a0[h]), s1 = hsum256(a1[h]);                               \
                for (size_t d = full; d < row; d++) {                                         \
                    s0 += q[h * row + d] * ONE(c0 + d);                                       \
                    s1 += q[h * row + d] * ONE(c1 + d);                                       \
                }                                                                             \
                out[h * out_stride + j] = s0 * scale;                                         \
                out[h * out_stride + j + 1] = s1 * scale;                                     \
            }                                                                                 \
        }                                                                                     \
        for (; j < nrows; j++) {                                                              \
            const T *cj = c + j * row;                                                        \
            __m256 acc[4];                                                                    \
            for (int h = 0; h < H; h++) acc[h] = _mm256_setzero_ps();                         \
            for (size_t d = 0; d < full; d += 8) {                                            \
                const __m256 cv = LOAD(cj + d);                                               \
                for (int h = 0; h < H; h++)                                                   \
                    acc[h] = _mm256_fmadd_ps(_mm256_loadu_ps(q + h * row + d), cv, acc[h]);   \
            }                                                                                 \
            for (int h = 0; h < H; h++) {                                                     \
                float sum = hsum256(acc[h]);                                                  \
                for (size_t d = full; d < row; d++) sum += q[h * row + d] * ONE(cj + d);      \
                out[h * out_stride + j] = sum * scale;                                        \
            }                                                                                 \
        }                                                                                     \
    }
MLA_SCORES_TILE(scores_tile_f32, float, load8_f32, one_f32)
MLA_SCORES_TILE(scores_tile_f16, uint16_t, load8_f16, one_f16)

/* Rows per block of the weighted sums: the dims of a block of cached rows are swept while
 * they sit in L1/L2, instead of streaming every row once per 16- or 32-dim stripe. */
#define MLA_ROW_BLOCK 64

#define MLA_ACCUM_TILE(NAME, T, LOAD, ONE)                                                    \
    static inline __attribute__((always_inline)) void NAME(                                   \
        const int H, size_t dim, size_t row, const float *p, size_t p_stride, size_t nrows,   \
        const T *c, float *acc) {                                                             \
        const size_t full = dim - dim % 16;                                                   \
        for (size_t j0 = 0; j0 < nrows; j0 += MLA_ROW_BLOCK) {                                \
        const size_t j1 = nrows - j0 < MLA_ROW_BLOCK ? nrows : j0 + MLA_ROW_BLOCK;            \
        for (size_t d = 0; d < full; d += 16) {                                               \
            __m256 a0[4], a1[4];                                                              \
            for (int h = 0; h < H; h++) {                                                     \
                a0[h] = _mm256_loadu_ps(acc + h * dim + d);                                   \
                a1[h] = _mm256_loadu_ps(acc + h * dim + d + 8);                               \
            }                                                                                 \
            for (size_t j = j0; j < j1; j++) {                                                \
                const __m256 c0 = LOAD(c + j * row + d), c1 = LOAD(c + j * row + d + 8);     \
                for (int h = 0; h < H; h++) {                                                 \
                    const __m256 w = _mm256_set1_ps(p[h * p_stride + j]);                     \
                    a0[h] = _mm256_fmadd_ps(w, c0, a0[h]);                                    \
                    a1[h] = _mm256_fmadd_ps(w, c1, a1[h]);                                    \
                }                                                                             \
            }                                                                                 \
            for (int h = 0; h < H; h++) {                                                     \
                _mm256_storeu_ps(acc + h * dim + d, a0[h]);                                   \
                _mm256_storeu_ps(acc + h * dim + d + 8, a1[h]);                               \
            }                                                                                 \
        }                                                                                     \
        }                                                                                 \
        for (int h = 0; h < H; h++)                                                           \
            for (size_t j = 0; j < nrows; j++)                                                \
                for (size_t d = full; d < dim; d++)                                           \
                    acc[h * dim + d] += p[h * p_stride + j] * ONE(c + j * row + d);           \
    }
MLA_ACCUM_TILE(accum_tile_f32, float, load8_f32, one_f32)
MLA_ACCUM_TILE(accum_tile_f16, uint16_t, load8_f16, one_f16)

void mk_mla_scores_f32_avx2(size_t nq, size_t row, const float *q, size_t nrows,
                            const float *c, float scale, float *out, size_t out_stride) {
    size_t h = 0;
    for (; h + 4 <= nq; h += 4) scores_tile_f32(4, row, q + h * row, nrows, c, scale, out + h * out_stride, out_stride);
    for (; h < nq; h++) scores_tile_f32(1, row, q + h * row, nrows, c, scale, out + h * out_stride, out_stride);
}

void mk_mla_scores_f16_avx2(size_t nq, size_t row, const float *q, size_t nrows,
                            const uint16_t *c, float scale, float *out, size_t out_stride) {
    size_t h = 0;
    for (; h + 4 <= nq; h += 4) scores_tile_f16(4, row, q + h * row, nrows, c, scale, out + h * out_stride, out_stride);
    for (; h < nq; h++) scores_tile_f16(1, row, q + h * row, nrows, c, scale, out + h * out_stride, out_stride);
}

void mk_mla_accum_f32_avx2(size_t nq, size_t dim, size_t row, const float *p, size_t p_stride,
                           size_t nrows, const float *c, float *acc) {
    size_t h = 0;
    for (; h + 4 <= nq; h += 4) accum_tile_f32(4, dim, row, p + h * p_stride, p_stride, nrows, c, acc + h * dim);
    for (; h < nq; h++) accum_tile_f32(1, dim, row, p + h * p_stride, p_stride, nrows, c, acc + h * dim);
}

void mk_mla_accum_f16_avx2(size_t nq, size_t dim, size_t row, const float *p, size_t p_stride,
                           size_t nrows, const uint16_t *c, float *acc) {
    size_t h = 0;
    for (; h + 4 <= nq; h += 4) accum_tile_f16(4, dim, row, p + h * p_stride, p_stride, nrows, c, acc + h * dim);
    for (; h < nq; h++) accum_tile_f16(1, dim, row, p + h * p_stride, p_stride, nrows, c, acc + h * dim);
}

/* ---- Q2_K and Q3_K (layouts in moela_kernels.h) ---- */

/* Q2_K: codes (0..3) × qx pairs with maddubs, madd with the 4-bit scales of the block's two
 * halves as int16 lanes (0-7: first half, 8-15: second); Σqx pairs (maddubs with ones) madd
 * with the two mins; both exact in int32, then × d·dx and dmin·dx. The int16 factor lanes
 * come from the 16 factor bytes by vpshufb: for block j the control puts byte 2j (low
 * 128-bit lane) / 2j+1 (high lane) in the low byte of every int16 and zero above; it starts
 * at (0, 1) and steps by 2 per block. */
float mk_vec_dot_q2_k_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *dx, const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    const __m256i m2 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi8(1);
    const __m256i ctrl0 = _mm256_set_m128i(_mm_set1_epi16((short)0x8001), _mm_set1_epi16((short)0x8000));
    const __m256i step = _mm256_set1_epi16(2);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (size_t sb = 0; sb < n / 256; sb++, b += 84) {
        const __m256 d = _mm256_set1_ps(f16_at(b + 80)), dmin = _mm256_set1_ps(f16_at(b + 82));
        const __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)b));
        const __m256i scb = _mm256_and_si256(raw, m4), mb = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        __m256i ctrl = ctrl0;
        for (int h = 0; h < 2; h++, qs += 128, dx += 4) {
            const __m256i ql = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * h));
            for (int g = 0; g < 4; g++) {
                __m256i q = _mm256_and_si256(_mm256_srli_epi16(ql, 2 * g), m2);
                __m256i x = _mm256_loadu_si256((const __m256i *)(qs + 32 * g));
                __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), _mm256_shuffle_epi8(scb, ctrl));
                __m256i pm = _mm256_madd_epi16(_mm256_maddubs_epi16(ones, x), _mm256_shuffle_epi8(mb, ctrl));
                ctrl = _mm256_add_epi16(ctrl, step);
                __m256 f = _mm256_broadcast_ss(dx + g);
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(d, f), acc);
                accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pm), _mm256_mul_ps(dmin, f), accm);
            }
        }
    }
    return hsum256(acc) - hsum256(accm);
}

/* Q3_K: codes (0..7, third bit from hmask) minus 4 as signed bytes; |q|·(sign(q)·x) pairs,
 * madd with the two signed scales of the block's halves (exact), then × d·dx. The scales are
 * unpacked to 16 int8 with a few vector ops, and picked per block by vpshufb as for Q2_K but
 * into the high byte of each int16 (srai 8 sign-extends). */
float mk_vec_dot_q3_k_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *dx, const int32_t *s) {
    (void)s;
    const uint8_t *b = (const uint8_t *)w;
    const __m256i m2 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1), four = _mm256_set1_epi8(4);
    const __m256i ctrl0 = _mm256_set_m128i(_mm_set1_epi16((short)0x0180), _mm_set1_epi16((short)0x0080));
    const __m256i step = _mm256_set1_epi16(0x0200);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (size_t sb = 0; sb < n / 256; sb++, b += 110) {
        const __m256 d = _mm256_set1_ps(f16_at(b + 108));
        /* The 16 scales: low nibbles from bytes 0-7 (scales 0-7) and their high nibbles
         * (scales 8-15); 2-bit highs from bytes 8-11. */
        const uint8_t *sp = b + 96;
        uint64_t lo8;
        uint32_t hi4;
        memcpy(&lo8, sp, 8);
        memcpy(&hi4, sp + 8, 4);
        __m128i l = _mm_cvtsi64_si128((long long)lo8);
        __m128i lo = _mm_and_si128(_mm_unpacklo_epi64(l, _mm_srli_epi16(l, 4)), _mm_set1_epi8(0x0f));
        __m128i h = _mm_cvtsi32_si128((int)hi4);
        /* scale i's high bits: byte 8 + i%4 >> 2(i/4): i = 4a + c -> (hi4 byte c) >> 2a */
        __m128i hv = _mm_unpacklo_epi64(_mm_unpacklo_epi32(h, _mm_srli_epi16(h, 2)),
                                        _mm_unpacklo_epi32(_mm_srli_epi16(h, 4), _mm_srli_epi16(h, 6)));
        hv = _mm_and_si128(hv, _mm_set1_epi8(3));
        __m128i sc8 = _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hv, 4)), _mm_set1_epi8(32));
        const __m256i scb = _mm256_broadcastsi128_si256(sc8);
        __m256i ctrl = ctrl0;
        const __m256i hm = _mm256_loadu_si256((const __m256i *)b);
        for (int hh = 0; hh < 2; hh++, qs += 128, dx += 4) {
            const __m256i ql = _mm256_loadu_si256((const __m256i *)(b + 32 + 32 * hh));
            for (int g = 0; g < 4; g++) {
                const int j = 4 * hh + g;
                __m256i lo2 = _mm256_and_si256(_mm256_srli_epi16(ql, 2 * g), m2);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(hm, j), one);
                __m256i q = _mm256_sub_epi8(_mm256_or_si256(lo2, _mm256_slli_epi16(hi, 2)), four);
                __m256i x = _mm256_loadu_si256((const __m256i *)(qs + 32 * g));
                __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q));
                p = _mm256_madd_epi16(p, _mm256_srai_epi16(_mm256_shuffle_epi8(scb, ctrl), 8));
                ctrl = _mm256_add_epi16(ctrl, step);
                __m256 f = _mm256_mul_ps(d, _mm256_broadcast_ss(dx + g));
                if (g % 2 == 0) acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), f, acc0);
                else acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), f, acc1);
            }
        }
    }
    return hsum256(_mm256_add_ps(acc0, acc1));
}

/* ---- Float weights (F32, F16, BF16) × f32 activations ----
 * One template per shape, instantiated per weight type (t is a constant after inlining).
 * Weight rows may be misaligned (unaligned loads); the last n % 8 elements go through masked
 * activation loads and a zero-padded copy of the weights, so nothing past the row is read. */
enum { WF32, WF16, WBF16 };

#define FLOAT_PREFETCH 2048 /* bytes ahead of the weights being read (decode streams rows) */

static inline __attribute__((always_inline)) __m256 wload8(int t, const uint8_t *p) {
    if (t == WF32) return _mm256_loadu_ps((const float *)p);
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (t == WF16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static inline __attribute__((always_inline)) __m256 wload8_tail(int t, const uint8_t *p, size_t m) {
    uint8_t buf[32] = {0};
    memcpy(buf, p, m * (t == WF32 ? 4 : 2));
    return wload8(t, buf);
}

static inline __m256 xload8_tail(const float *x, size_t m) {
    __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)m), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_maskload_ps(x, mask);
}

static inline __attribute__((always_inline)) float dot_float_avx2(int t, size_t n, const void *w,
                                                                  const float *x) {
    const uint8_t *b = (const uint8_t *)w;
    const size_t es = t == WF32 ? 4 : 2;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const uint8_t *p = b + i * es;
        for (size_t l = 0; l < 32 * es; l += 64) _mm_prefetch((const char *)p + FLOAT_PREFETCH + l, _MM_HINT_T0);
        a0 = _mm256_fmadd_ps(wload8(t, p), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(wload8(t, p + 8 * es), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(wload8(t, p + 16 * es), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(wload8(t, p + 24 * es), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(wload8(t, b + i * es), _mm256_loadu_ps(x + i), a0);
    if (i < n) a1 = _mm256_fmadd_ps(wload8_tail(t, b + i * es, n - i), xload8_tail(x + i, n - i), a1);
    return hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}

static inline __attribute__((always_inline)) void dot4_float_avx2(int t, size_t n, const void *w,
                                                                  const float *x, float *out) {
    const uint8_t *b = (const uint8_t *)w;
    const size_t es = t == WF32 ? 4 : 2;
    __m256 acc[4][2];
    for (int r = 0; r < 4; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 w0 = wload8(t, b + i * es), w1 = wload8(t, b + (i + 8) * es);
        for (int r = 0; r < 4; r++) {
            acc[r][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + r * n + i), acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + r * n + i + 8), acc[r][1]);
        }
    }
    if (i + 8 <= n) {
        __m256 w0 = wload8(t, b + i * es);
        for (int r = 0; r < 4; r++) acc[r][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + r * n + i), acc[r][0]);
        i += 8;
    }
    if (i < n) {
        __m256 w0 = wload8_tail(t, b + i * es, n - i);
        for (int r = 0; r < 4; r++) acc[r][1] = _mm256_fmadd_ps(w0, xload8_tail(x + r * n + i, n - i), acc[r][1]);
    }
    for (int r = 0; r < 4; r++) out[r] = hsum256(_mm256_add_ps(acc[r][0], acc[r][1]));
}

float mk_vec_dot_f32_f32_avx2(size_t n, const void *w, const float *x) { return dot_float_avx2(WF32, n, w, x); }
float mk_vec_dot_f16_f32_avx2(size_t n, const void *w, const float *x) { return dot_float_avx2(WF16, n, w, x); }
float mk_vec_dot_bf16_f32_avx2(size_t n, const void *w, const float *x) { return dot_float_avx2(WBF16, n, w, x); }
void mk_vec_dot4_f32_f32_avx2(size_t n, const void *w, const float *x, float *out) { dot4_float_avx2(WF32, n, w, x, out); }
void mk_vec_dot4_f16_f32_avx2(size_t n, const void *w, const float *x, float *out) { dot4_float_avx2(WF16, n, w, x, out); }
void mk_vec_dot4_bf16_f32_avx2(size_t n, const void *w, const float *x, float *out) { dot4_float_avx2(WBF16, n, w, x, out); }

/* ---- Q4_1, Q5_0, Q5_1, IQ4_NL, IQ4_XS (layouts in moela_kernels.h) ----
 * Every type goes through one loop over 32-element blocks: a block is decoded to 32 bytes in
 * element order, either unsigned codes (Q4_1/Q5_1: x = f·u + m; Q5_0: x = f·(u - 16)) or signed
 * codebook values (IQ4: x = f·v), then multiplied with the q8a block by maddubs. */

/* Block j of a row of `type`: its 32 bytes (codes or values), factor f and min m. */
static inline __attribute__((always_inline)) __m256i lx_block(int type, const uint8_t *w,
                                                             size_t j, float *f, float *m) {
    const __m256i kv = _mm256_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38,
                                        53, 69, 89, 113, -127, -104, -83, -65, -49, -35, -22,
                                        -10, 1, 13, 25, 38, 53, 69, 89, 113);
    const uint8_t *b;
    switch (type) {
    case LX_Q4_1:
        b = w + 20 * j;
        *f = f16_at(b);
        *m = f16_at(b + 2);
        return unpack_q4(b + 4);
    case LX_Q5_0:
        b = w + 22 * j;
        *f = f16_at(b);
        *m = 0.0f;
        return _mm256_or_si256(unpack_q4(b + 6), lx_hbits(lx_u32(b + 2)));
    case LX_Q5_1:
        b = w + 24 * j;
        *f = f16_at(b);
        *m = f16_at(b + 2);
        return _mm256_or_si256(unpack_q4(b + 8), lx_hbits(lx_u32(b + 4)));
    case LX_IQ4_NL:
        b = w + 18 * j;
        *f = f16_at(b);
        *m = 0.0f;
        return _mm256_shuffle_epi8(kv, unpack_q4(b + 2));
    default: {
        b = w + 136 * (j / 8);
        const int i = (int)(j % 8);
        uint16_t h;
        memcpy(&h, b + 2, 2);
        int ls = ((b[4 + i / 2] >> (4 * (i % 2))) & 0x0f) | (((h >> (2 * i)) & 3) << 4);
        *f = f16_at(b) * (float)(ls - 32);
        *m = 0.0f;
        return _mm256_shuffle_epi8(kv, unpack_q4(b + 8 + 16 * i));
    }
    }
}

/* Σ over the block's 32 pairs as 8 int32 lanes: unsigned codes (≤ 31: pairs ≤ 2·31·127 fit
 * int16) straight into maddubs; signed IQ4 values (|v| ≤ 127) with their sign moved onto x. */
static inline __attribute__((always_inline)) __m256i lx_isum(int type, __m256i v, __m256i x) {
    const __m256i ones = _mm256_set1_epi16(1);
    if (type == LX_IQ4_NL || type == LX_IQ4_XS)
        return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(v, v), _mm256_sign_epi8(x, v)),
                                 ones);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(v, x), ones);
}

static inline __attribute__((always_inline)) float lx_dot_avx2(int type, size_t n, const void *w,
                                                              const int8_t *qs, const float *dx,
                                                              const int32_t *s) {
    const uint8_t *b = (const uint8_t *)w;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float corr = 0.0f; /* Σ dx·(m·s - f·16·s): the mins and Q5_0's offset, once at the end */
    size_t nb = n / 32, i = 0;
    for (; i + 1 < nb; i += 2) {
        float f0, m0, f1, m1;
        __m256i v0 = lx_block(type, b, i, &f0, &m0);
        __m256i v1 = lx_block(type, b, i + 1, &f1, &m1);
        __m256i p0 = lx_isum(type, v0, _mm256_loadu_si256((const __m256i *)(qs + 32 * i)));
        __m256i p1 = lx_isum(type, v1, _mm256_loadu_si256((const __m256i *)(qs + 32 * i + 32)));
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(f0 * dx[i]), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(f1 * dx[i + 1]), acc1);
        if (type == LX_Q5_0)
            corr -= 16.0f * (f0 * dx[i] * (float)s[i] + f1 * dx[i + 1] * (float)s[i + 1]);
        if (type == LX_Q4_1 || type == LX_Q5_1)
            corr += m0 * dx[i] * (float)s[i] + m1 * dx[i + 1] * (float)s[i + 1];
    }
    for (; i < nb; i++) {
        float f0, m0;
        __m256i v0 = lx_block(type, b, i, &f0, &m0);
        __m256i p0 = lx_isum(type, v0, _mm256_loadu_si256((const __m256i *)(qs + 32 * i)));
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(f0 * dx[i]), acc0);
        if (type == LX_Q5_0) corr -= 16.0f * f0 * dx[i] * (float)s[i];
        if (type == LX_Q4_1 || type == LX_Q5_1) corr += m0 * dx[i] * (float)s[i];
    }
    return hsum256(_mm256_add_ps(acc0, acc1)) + corr;
}

float mk_vec_dot_q4_1_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s) {
    return lx_dot_avx2(LX_Q4_1, n, w, qs, d, s);
}
float mk_vec_dot_q5_0_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s) {
    return lx_dot_avx2(LX_Q5_0, n, w, qs, d, s);
}
float mk_vec_dot_q5_1_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                               const int32_t *s) {
    return lx_dot_avx2(LX_Q5_1, n, w, qs, d, s);
}
float mk_vec_dot_iq4_nl_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s) {
    return lx_dot_avx2(LX_IQ4_NL, n, w, qs, d, s);
}
float mk_vec_dot_iq4_xs_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s) {
    return lx_dot_avx2(LX_IQ4_XS, n, w, qs, d, s);
}

/* q8a quantization, bit-identical to mk_quantize_row_q8a_generic (the same steps as
 * mk_quantize_row_q8a_avx512): max |x| ignoring NaN (vmaxps returns its second operand, the
 * running max, when x is NaN), then the same IEEE operations per element, rounding half away
 * from zero by truncation plus the exact remainder. */
static inline __m256i q8a_quantize8(__m256 x, __m256 inv) {
    __m256 v = _mm256_mul_ps(x, inv);
    const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    v = _mm256_blendv_ps(lo, v, _mm256_cmp_ps(v, lo, _CMP_GT_OQ));
    v = _mm256_blendv_ps(v, hi, _mm256_cmp_ps(v, hi, _CMP_GT_OQ));
    __m256i q = _mm256_cvttps_epi32(v);
    __m256 rem = _mm256_sub_ps(v, _mm256_cvtepi32_ps(q));
    /* A true compare is all ones (-1): subtracting it adds one. */
    q = _mm256_sub_epi32(q, _mm256_castps_si256(_mm256_cmp_ps(rem, _mm256_set1_ps(0.5f), _CMP_GE_OQ)));
    q = _mm256_add_epi32(q, _mm256_castps_si256(_mm256_cmp_ps(rem, _mm256_set1_ps(-0.5f), _CMP_LE_OQ)));
    return q;
}

void mk_quantize_row_q8a_avx2(size_t n, const float *x, int8_t *qs, float *d, int32_t *s) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (size_t b = 0; b < n / 32; b++, x += 32, qs += 32) {
        __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8);
        __m256 x2 = _mm256_loadu_ps(x + 16), x3 = _mm256_loadu_ps(x + 24);
        __m256 m = _mm256_max_ps(_mm256_and_ps(x0, abs_mask), _mm256_setzero_ps());
        m = _mm256_max_ps(_mm256_and_ps(x1, abs_mask), m);
        m = _mm256_max_ps(_mm256_and_ps(x2, abs_mask), m);
        m = _mm256_max_ps(_mm256_and_ps(x3, abs_mask), m);
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        float scale = amax / 127.0f;
        float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
        __m256 vinv = _mm256_set1_ps(inv);
        __m256i q0 = q8a_quantize8(x0, vinv), q1 = q8a_quantize8(x1, vinv);
        __m256i q2 = q8a_quantize8(x2, vinv), q3 = q8a_quantize8(x3, vinv);
        /* int32 → int8 (all within ±127, so no saturation); packs work per 128-bit lane. */
        __m256i p01 = _mm256_packs_epi32(q0, q1), p23 = _mm256_packs_epi32(q2, q3);
        __m256i p = _mm256_packs_epi16(p01, p23);
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)qs, p);
        __m256i sum = _mm256_add_epi32(_mm256_add_epi32(q0, q1), _mm256_add_epi32(q2, q3));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        d[b] = scale;
        s[b] = _mm_cvtsi128_si32(s4);
    }
}

/* ---- Q4_0 interleaved by eight rows ("x8", made by the loader: src/tensor/interleave.rs) ----
 * Per group of 8 rows and per 32-element block, 144 bytes: the 8 rows' f16 scales, then four
 * 32-byte vectors, vector v holding bytes 4v..4v+3 of each row's 16 nibble bytes (row r at
 * bytes 4r..4r+3): low nibbles are elements 4v..4v+3, high nibbles 16+4v..16+4v+3. That is
 * the tile gemm8_avx2 builds by transposing, stored once, so decode reads it with 4 loads, 8
 * masks/shifts, 8 broadcasts of x and 8 vpmaddubsw summed in int16 (≤ 8 · 2 · 15 · 127) per 8
 * rows and block, and one conversion and one FMA with the 8 scales. */
#define X8_BS 144

static inline __attribute__((always_inline)) __m256i x8_block_isum(const uint8_t *g, const int8_t *x) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256i a = _mm256_setzero_si256();
    for (int v = 0; v < 4; v++) {
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(g + 16 + 32 * v));
        int32_t xl, xh;
        memcpy(&xl, x + 4 * v, 4);
        memcpy(&xh, x + 16 + 4 * v, 4);
        a = _mm256_add_epi16(a, _mm256_maddubs_epi16(_mm256_and_si256(raw, m4), _mm256_set1_epi32(xl)));
        a = _mm256_add_epi16(
            a, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4), _mm256_set1_epi32(xh)));
    }
    return _mm256_madd_epi16(a, _mm256_set1_epi16(1));
}

void mk_vec_dot_x8_q4_0_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out) {
    const uint8_t *g = (const uint8_t *)w;
    const size_t nb = n / 32;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (size_t j = 0; j < nb; j++, g += X8_BS) {
        _mm_prefetch((const char *)g + 1024, _MM_HINT_T0);
        _mm_prefetch((const char *)g + 1024 + 64, _MM_HINT_T0);
        const __m256i i32 = _mm256_sub_epi32(x8_block_isum(g, qs + 32 * j), _mm256_set1_epi32(8 * s[j]));
        const __m256 f = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g)), _mm256_broadcast_ss(d + j));
        if (j & 1) acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), f, acc1);
        else acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), f, acc0);
    }
    _mm256_storeu_ps(out, _mm256_add_ps(acc0, acc1));
}

/* ---- Q4_K interleaved by eight rows (x8; src/tensor/interleave.rs writes it) ----
 * Per group of 8 rows and per 256-element super-block, 1152 bytes (the 8 rows' own 8 × 144):
 *   [0, 16)    the rows' d (f16), [16, 32) their dmin (f16);
 *   [32, 96)   A[8i + r] = sc (6 bits) | (m >> 4) << 6, sub-block i, row r;
 *   [96, 128)  B[4i + r/2], nibble r % 2 = m & 15;
 *   [128, 1152) for each 32-byte chunk c of the rows' nibbles (sub-blocks 2c low, 2c+1 high),
 *              eight 32-byte vectors, vector v = bytes 4v..4v+3 of each row's chunk (row r
 *              at 4r..4r+3).
 * So a sub-block of 8 rows is 4 code loads, its 8 scales and mins a few vector operations, and
 * the products the same lane-per-row sums as x8 Q4_0 (codes ≤ 15: 8 vpmaddubsw in int16). */
#define X8K_BS 1152

/* Sub-block i's factors d·sc and mins dmin·m of the 8 rows (lanes). */
static inline __attribute__((always_inline)) void x8k_scales(const uint8_t *g, int i, __m256 d8, __m256 dmin8,
                                                             __m256 *f, __m256 *m) {
    const __m256i a = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(g + 32 + 8 * i)));
    int32_t bw;
    memcpy(&bw, g + 96 + 4 * i, 4);
    const __m256i lo = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(bw), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
                                        _mm256_set1_epi32(15));
    const __m256i sc = _mm256_and_si256(a, _mm256_set1_epi32(63));
    const __m256i mm = _mm256_or_si256(lo, _mm256_slli_epi32(_mm256_srli_epi32(a, 6), 4));
    *f = _mm256_mul_ps(d8, _mm256_cvtepi32_ps(sc));
    *m = _mm256_mul_ps(dmin8, _mm256_cvtepi32_ps(mm));
}

/* Σ over one sub-block's 32 codes (8 vectors, already masked) × activation block x, lanes = rows. */
static inline __attribute__((always_inline)) __m256i x8_isum8(const __m256i V[8], const uint8_t *x) {
    __m256i p = _mm256_setzero_si256();
    for (int v = 0; v < 8; v++) {
        int32_t xv;
        memcpy(&xv, x + 4 * v, 4);
        p = _mm256_add_epi16(p, _mm256_maddubs_epi16(V[v], _mm256_set1_epi32(xv)));
    }
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

void mk_vec_dot_x8_q4_k_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out) {
    const uint8_t *g = (const uint8_t *)w;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (size_t sb = 0; sb < n / 256; sb++, g += X8K_BS) {
        const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
        const __m256 dmin8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16)));
        for (int c = 0; c < 4; c++) {
            const uint8_t *q = g + 128 + 256 * c;
            _mm_prefetch((const char *)q + 1152, _MM_HINT_T0);
            _mm_prefetch((const char *)q + 1152 + 64, _MM_HINT_T0);
            _mm_prefetch((const char *)q + 1152 + 128, _MM_HINT_T0);
            _mm_prefetch((const char *)q + 1152 + 192, _MM_HINT_T0);
            __m256i L[8], H[8];
            for (int v = 0; v < 8; v++) {
                const __m256i raw = _mm256_loadu_si256((const __m256i *)(q + 32 * v));
                L[v] = _mm256_and_si256(raw, m4);
                H[v] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            }
            for (int h = 0; h < 2; h++) {
                const size_t j = 8 * sb + 2 * c + h; /* activation block */
                __m256 f, m;
                x8k_scales(g, 2 * c + h, d8, dmin8, &f, &m);
                const __m256i isum = x8_isum8(h ? H : L, (const uint8_t *)(qs + 32 * j));
                const __m256 dj = _mm256_broadcast_ss(d + j);
                __m256 a = h ? acc1 : acc0;
                a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(f, dj), a);
                a = _mm256_fnmadd_ps(m, _mm256_mul_ps(dj, _mm256_set1_ps((float)s[j])), a);
                if (h) acc1 = a;
                else acc0 = a;
            }
        }
    }
    _mm256_storeu_ps(out, _mm256_add_ps(acc0, acc1));
}

/* ---- x8 decode for a few tokens at once (speculative verification) ----
 * The decode kernels above for up to X8_MULTI_MAX activation rows (each its own q8a arrays),
 * the weights loaded and masked once per block for all of them. Every token's float work is
 * the one-token kernel's, in the same order (the integer sums are exact whatever their order),
 * so each token's 8 results are bit-identical to mk_vec_dot_x8_*_q8a_avx2's. */
#define X8_MULTI_MAX 8

void mk_vec_dot_x8_q4_0_q8a_multi_avx2(size_t n, const void *w, size_t ntok, const int8_t *const *qs,
                                       const float *const *d, const int32_t *const *s, float *out,
                                       size_t ldo) {
    const uint8_t *g = (const uint8_t *)w;
    const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    const size_t nt = ntok < X8_MULTI_MAX ? ntok : X8_MULTI_MAX, nb = n / 32;
    __m256 acc0[X8_MULTI_MAX], acc1[X8_MULTI_MAX];
    for (size_t t = 0; t < nt; t++) acc0[t] = acc1[t] = _mm256_setzero_ps();
    for (size_t j = 0; j < nb; j++, g += X8_BS) {
        __m256i V[8];
        for (int v = 0; v < 4; v++) {
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(g + 16 + 32 * v));
            V[v] = _mm256_and_si256(raw, m4);
            V[v + 4] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        }
        const __m256 sc = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
        for (size_t t = 0; t < nt; t++) {
            const uint8_t *x = (const uint8_t *)(qs[t] + 32 * j);
            __m256i p = _mm256_setzero_si256();
            for (int v = 0; v < 4; v++) {
                int32_t xl, xh;
                memcpy(&xl, x + 4 * v, 4);
                memcpy(&xh, x + 16 + 4 * v, 4);
                p = _mm256_add_epi16(p, _mm256_maddubs_epi16(V[v], _mm256_set1_epi32(xl)));
                p = _mm256_add_epi16(p, _mm256_maddubs_epi16(V[v + 4], _mm256_set1_epi32(xh)));
            }
            const __m256i i32 = _mm256_sub_epi32(_mm256_madd_epi16(p, ones), _mm256_set1_epi32(8 * s[t][j]));
            const __m256 f = _mm256_mul_ps(sc, _mm256_broadcast_ss(d[t] + j));
            if (j & 1) acc1[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), f, acc1[t]);
            else acc0[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), f, acc0[t]);
        }
    }
    for (size_t t = 0; t < nt; t++) _mm256_storeu_ps(out + t * ldo, _mm256_add_ps(acc0[t], acc1[t]));
}

void mk_vec_dot_x8_q4_k_q8a_multi_avx2(size_t n, const void *w, size_t ntok, const int8_t *const *qs,
                                       const float *const *d, const int32_t *const *s, float *out,
                                       size_t ldo) {
    const uint8_t *g = (const uint8_t *)w;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const size_t nt = ntok < X8_MULTI_MAX ? ntok : X8_MULTI_MAX;
    __m256 acc0[X8_MULTI_MAX], acc1[X8_MULTI_MAX];
    for (size_t t = 0; t < nt; t++) acc0[t] = acc1[t] = _mm256_setzero_ps();
    for (size_t sb = 0; sb < n / 256; sb++, g += X8K_BS) {
        const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
        const __m256 dmin8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16)));
        for (int c = 0; c < 4; c++) {
            const uint8_t *q = g + 128 + 256 * c;
            __m256i L[8], H[8];
            for (int v = 0; v < 8; v++) {
                const __m256i raw = _mm256_loadu_si256((const __m256i *)(q + 32 * v));
                L[v] = _mm256_and_si256(raw, m4);
                H[v] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            }
            for (int h = 0; h < 2; h++) {
                const size_t j = 8 * sb + 2 * c + h;
                __m256 f, m;
                x8k_scales(g, 2 * c + h, d8, dmin8, &f, &m);
                for (size_t t = 0; t < nt; t++) {
                    const __m256i isum = x8_isum8(h ? H : L, (const uint8_t *)(qs[t] + 32 * j));
                    const __m256 dj = _mm256_broadcast_ss(d[t] + j);
                    __m256 a = h ? acc1[t] : acc0[t];
                    a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(f, dj), a);
                    a = _mm256_fnmadd_ps(m, _mm256_mul_ps(dj, _mm256_set1_ps((float)s[t][j])), a);
                    if (h) acc1[t] = a;
                    else acc0[t] = a;
                }
            }
        }
    }
    for (size_t t = 0; t < nt; t++) _mm256_storeu_ps(out + t * ldo, _mm256_add_ps(acc0[t], acc1[t]));
}

/* ---- Q5_K interleaved by eight rows (x8; src/tensor/interleave.rs writes it) ----
 * Per group of 8 rows and per 256-element super-block, 1408 bytes (the 8 rows' own 8 × 176):
 *   [0, 1152)    as Q4_K x8: the rows' d, dmin, the repacked scales and mins (A, B), then per
 *                32-byte chunk c of nibbles (sub-blocks 2c low, 2c+1 high) eight vectors;
 *   [1152, 1408) the fifth bits: eight vectors, vector v = bytes 4v..4v+3 of each row's 32 qh
 *                bytes (row r at 4r..4r+3).
 * Bit i of qh byte k is the fifth bit of element k of sub-block i, and code vector v of any
 * sub-block holds elements 4v..4v+3 of every row, so its fifth bits are bit i of the same lane
 * bytes of qh vector v: one 16-bit shift (bit i to bit 4), a mask and an or per code vector,
 * the qh vector loaded once for a chunk's low and high sub-blocks. Codes ≤ 31: products sum in
 * int16 four at a time (≤ 4 · 2 · 31 · 127), the two halves widened apart; then the Q4_K x8
 * float work (d·sc, dmin·m per lane). */
#define X8_Q5_K_BS 1408

/* Bit i (0..7) of every byte of qh at bit 4, the rest cleared (i constant: immediate shifts). */
static inline __attribute__((always_inline)) __m256i x8_q5_k_fifth(__m256i qh, int i) {
    const __m256i t = i == 0   ? _mm256_slli_epi16(qh, 4)
                      : i == 1 ? _mm256_slli_epi16(qh, 3)
                      : i == 2 ? _mm256_slli_epi16(qh, 2)
                      : i == 3 ? _mm256_slli_epi16(qh, 1)
                      : i == 4 ? qh
                      : i == 5 ? _mm256_srli_epi16(qh, 1)
                      : i == 6 ? _mm256_srli_epi16(qh, 2)
                               : _mm256_srli_epi16(qh, 3);
    return _mm256_and_si256(t, _mm256_set1_epi8(0x10));
}

/* Sub-block i's 8 code vectors (0..31) of super-block g, lanes = rows. */
static inline __attribute__((always_inline)) void x8_q5_k_codes(const uint8_t *g, int i, __m256i V[8]) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const uint8_t *q = g + 128 + 256 * (i / 2);
#pragma GCC unroll 8
    for (int v = 0; v < 8; v++) {
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(q + 32 * v));
        const __m256i hb = _mm256_loadu_si256((const __m256i *)(g + 1152 + 32 * v));
        V[v] = _mm256_or_si256(_mm256_and_si256(i & 1 ? _mm256_srli_epi16(raw, 4) : raw, m4), x8_q5_k_fifth(hb, i));
    }
}

/* Σ over one sub-block's 32 codes (≤ 31) × activation block x, lanes = rows: two int16 sums of
 * four products, widened apart. */
static inline __attribute__((always_inline)) __m256i x8_q5_k_isum(const __m256i V[8], const uint8_t *x) {
    __m256i p0 = _mm256_setzero_si256(), p1 = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) {
        int32_t a, b;
        memcpy(&a, x + 4 * v, 4);
        memcpy(&b, x + 16 + 4 * v, 4);
        p0 = _mm256_add_epi16(p0, _mm256_maddubs_epi16(V[v], _mm256_set1_epi32(a)));
        p1 = _mm256_add_epi16(p1, _mm256_maddubs_epi16(V[v + 4], _mm256_set1_epi32(b)));
    }
    const __m256i ones = _mm256_set1_epi16(1);
    return _mm256_add_epi32(_mm256_madd_epi16(p0, ones), _mm256_madd_epi16(p1, ones));
}

/* One sub-block's float work for one token, in the order of the Q4_K x8 kernels. */
static inline __attribute__((always_inline)) __m256 x8_q5_k_acc(__m256 a, __m256i isum, __m256 f, __m256 m, float dj,
                                                                 int32_t sj) {
    const __m256 dv = _mm256_set1_ps(dj);
    a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(f, dv), a);
    return _mm256_fnmadd_ps(m, _mm256_mul_ps(dv, _mm256_set1_ps((float)sj)), a);
}

void mk_vec_dot_x8_q5_k_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out) {
    const uint8_t *g = (const uint8_t *)w;
    const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (size_t sb = 0; sb < n / 256; sb++, g += X8_Q5_K_BS) {
        const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
        const __m256 dmin8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16)));
        /* the next super-block: 22 lines, 5 or 6 per chunk */
        const char *pf = (const char *)g + X8_Q5_K_BS;
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            const uint8_t *q = g + 128 + 256 * c;
            _mm_prefetch(pf + 128 + 256 * c, _MM_HINT_T0);
            _mm_prefetch(pf + 128 + 256 * c + 64, _MM_HINT_T0);
            _mm_prefetch(pf + 128 + 256 * c + 128, _MM_HINT_T0);
            _mm_prefetch(pf + 128 + 256 * c + 192, _MM_HINT_T0);
            _mm_prefetch(pf + 1152 + 64 * c, _MM_HINT_T0);
            if (c < 2) _mm_prefetch(pf + 64 * c, _MM_HINT_T0);
            const size_t j = 8 * sb + 2 * c; /* activation blocks j (low nibbles), j + 1 (high) */
            const uint8_t *x0 = (const uint8_t *)(qs + 32 * j), *x1 = x0 + 32;
            __m256i pl0 = _mm256_setzero_si256(), pl1 = pl0, ph0 = pl0, ph1 = pl0;
#pragma GCC unroll 8
            for (int v = 0; v < 8; v++) {
                const __m256i raw = _mm256_loadu_si256((const __m256i *)(q + 32 * v));
                const __m256i hb = _mm256_loadu_si256((const __m256i *)(g + 1152 + 32 * v));
                const __m256i lo = _mm256_or_si256(_mm256_and_si256(raw, m4), x8_q5_k_fifth(hb, 2 * c));
                const __m256i hi =
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4), x8_q5_k_fifth(hb, 2 * c + 1));
                int32_t a, b;
                memcpy(&a, x0 + 4 * v, 4);
                memcpy(&b, x1 + 4 * v, 4);
                const __m256i pa = _mm256_maddubs_epi16(lo, _mm256_set1_epi32(a));
                const __m256i pb = _mm256_maddubs_epi16(hi, _mm256_set1_epi32(b));
                if (v < 4) pl0 = _mm256_add_epi16(pl0, pa), ph0 = _mm256_add_epi16(ph0, pb);
                else pl1 = _mm256_add_epi16(pl1, pa), ph1 = _mm256_add_epi16(ph1, pb);
            }
            const __m256i il = _mm256_add_epi32(_mm256_madd_epi16(pl0, ones), _mm256_madd_epi16(pl1, ones));
            const __m256i ih = _mm256_add_epi32(_mm256_madd_epi16(ph0, ones), _mm256_madd_epi16(ph1, ones));
            __m256 f, m;
            x8k_scales(g, 2 * c, d8, dmin8, &f, &m);
            acc0 = x8_q5_k_acc(acc0, il, f, m, d[j], s[j]);
            x8k_scales(g, 2 * c + 1, d8, dmin8, &f, &m);
            acc1 = x8_q5_k_acc(acc1, ih, f, m, d[j + 1], s[j + 1]);
        }
    }
    _mm256_storeu_ps(out, _mm256_add_ps(acc0, acc1));
}

void mk_vec_dot_x8_q5_k_q8a_multi_avx2(size_t n, const void *w, size_t ntok, const int8_t *const *qs,
                                       const float *const *d, const int32_t *const *s, float *out,
                                       size_t ldo) {
    const uint8_t *g = (const uint8_t *)w;
    const size_t nt = ntok < X8_MULTI_MAX ? ntok : X8_MULTI_MAX;
    __m256 acc0[X8_MULTI_MAX], acc1[X8_MULTI_MAX];
    for (size_t t = 0; t < nt; t++) acc0[t] = acc1[t] = _mm256_setzero_ps();
    for (size_t sb = 0; sb < n / 256; sb++, g += X8_Q5_K_BS) {
        const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
        const __m256 dmin8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16)));
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            const size_t j = 8 * sb + (size_t)i;
            __m256i V[8];
            x8_q5_k_codes(g, i, V);
            __m256 f, m;
            x8k_scales(g, i, d8, dmin8, &f, &m);
            for (size_t t = 0; t < nt; t++) {
                const __m256i isum = x8_q5_k_isum(V, (const uint8_t *)(qs[t] + 32 * j));
                if (i & 1) acc1[t] = x8_q5_k_acc(acc1[t], isum, f, m, d[t][j], s[t][j]);
                else acc0[t] = x8_q5_k_acc(acc0[t], isum, f, m, d[t][j], s[t][j]);
            }
        }
    }
    for (size_t t = 0; t < nt; t++) _mm256_storeu_ps(out + t * ldo, _mm256_add_ps(acc0[t], acc1[t]));
}

/* ---- Q5_0 interleaved by eight rows (x8; src/tensor/interleave.rs writes it) ----
 * Per group of 8 rows and per 32-element block, 176 bytes (the 8 rows' own 8 × 22):
 *   [0, 16)   the rows' f16 scales;
 *   [16, 48)  the fifth bits, row r's 32 bits at bytes 16+4r..16+4r+3 transposed so that bit c
 *             of byte k is the fifth bit of element 4c+k (code vector c below, lane byte k);
 *   [48, 176) the nibbles as Q4_0 x8: four vectors, v = bytes 4v..4v+3 of each row's 16.
 * Code vector c (elements 4c..4c+3 of every row: c < 4 the low nibbles of vector c, c ≥ 4 the
 * high nibbles of vector c-4) gets its fifth bits by one 16-bit shift (bit c to bit 4) and a
 * mask; codes 0..31 × x pairs (≤ 2·31·127) sum in int16 four at a time, and -16·Σx comes off
 * the block's int32 lanes. */
#define X8_Q5_0_BS 176

static inline __attribute__((always_inline)) void x8_q5_0_codes(const uint8_t *g, __m256i V[8]) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), b4 = _mm256_set1_epi8(0x10);
    const __m256i h = _mm256_loadu_si256((const __m256i *)(g + 16));
#pragma GCC unroll 4 /* v constant: immediate shifts */
    for (int v = 0; v < 4; v++) {
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(g + 48 + 32 * v));
        /* low nibbles: code vector v, fifth bit v → 4; high: vector v + 4, bit v + 4 → 4 */
        const __m256i hl = v == 0 ? _mm256_slli_epi16(h, 4)
                         : v == 1 ? _mm256_slli_epi16(h, 3)
                         : v == 2 ? _mm256_slli_epi16(h, 2)
                                  : _mm256_slli_epi16(h, 1);
        const __m256i hh = v == 0 ? h
                         : v == 1 ? _mm256_srli_epi16(h, 1)
                         : v == 2 ? _mm256_srli_epi16(h, 2)
                                  : _mm256_srli_epi16(h, 3);
        V[v] = _mm256_or_si256(_mm256_and_si256(raw, m4), _mm256_and_si256(hl, b4));
        V[v + 4] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4), _mm256_and_si256(hh, b4));
    }
}

/* Σ codes × x over one block (lanes = rows), minus 16·Σx. */
static inline __attribute__((always_inline)) __m256i x8_q5_0_isum(const __m256i V[8], const int8_t *x, int32_t s) {
    __m256i p0 = _mm256_setzero_si256(), p1 = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) {
        int32_t a, b;
        memcpy(&a, x + 4 * v, 4);
        memcpy(&b, x + 16 + 4 * v, 4);
        p0 = _mm256_add_epi16(p0, _mm256_maddubs_epi16(V[v], _mm256_set1_epi32(a)));
        p1 = _mm256_add_epi16(p1, _mm256_maddubs_epi16(V[v + 4], _mm256_set1_epi32(b)));
    }
    const __m256i ones = _mm256_set1_epi16(1);
    return _mm256_sub_epi32(_mm256_add_epi32(_mm256_madd_epi16(p0, ones), _mm256_madd_epi16(p1, ones)),
                            _mm256_set1_epi32(16 * s));
}

void mk_vec_dot_x8_q5_0_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out) {
    const uint8_t *g = (const uint8_t *)w;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (size_t j = 0; j < n / 32; j++, g += X8_Q5_0_BS) {
        _mm_prefetch((const char *)g + 1024, _MM_HINT_T0);
        _mm_prefetch((const char *)g + 1024 + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)g + 1024 + 128, _MM_HINT_T0);
        __m256i V[8];
        x8_q5_0_codes(g, V);
        const __m256i i32 = x8_q5_0_isum(V, qs + 32 * j, s[j]);
        const __m256 f = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g)), _mm256_broadcast_ss(d + j));
        if (j & 1) acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), f, acc1);
        else acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), f, acc0);
    }
    _mm256_storeu_ps(out, _mm256_add_ps(acc0, acc1));
}

void mk_vec_dot_x8_q5_0_q8a_multi_avx2(size_t n, const void *w, size_t ntok, const int8_t *const *qs,
                                       const float *const *d, const int32_t *const *s, float *out,
                                       size_t ldo) {
    const uint8_t *g = (const uint8_t *)w;
    const size_t nt = ntok < X8_MULTI_MAX ? ntok : X8_MULTI_MAX;
    __m256 acc0[X8_MULTI_MAX], acc1[X8_MULTI_MAX];
    for (size_t t = 0; t < nt; t++) acc0[t] = acc1[t] = _mm256_setzero_ps();
    for (size_t j = 0; j < n / 32; j++, g += X8_Q5_0_BS) {
        __m256i V[8];
        x8_q5_0_codes(g, V);
        const __m256 sc = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
        for (size_t t = 0; t < nt; t++) {
            const __m256i i32 = x8_q5_0_isum(V, qs[t] + 32 * j, s[t][j]);
            const __m256 f = _mm256_mul_ps(sc, _mm256_broadcast_ss(d[t] + j));
            if (j & 1) acc1[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), f, acc1[t]);
            else acc0[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), f, acc0[t]);
        }
    }
    for (size_t t = 0; t < nt; t++) _mm256_storeu_ps(out + t * ldo, _mm256_add_ps(acc0[t], acc1[t]));
}

/* ---- Q4_1 and Q5_1 interleaved by eight rows (x8; src/tensor/interleave.rs writes them) ----
 * Per group of 8 rows and per 32-element block (the 8 rows' own 8 × 20 and 8 × 24 bytes):
 *   Q4_1, 160 bytes: [0, 16) the rows' f16 d, [16, 32) their f16 m, [32, 160) the four nibble
 *         vectors of Q4_0 x8;
 *   Q5_1, 192 bytes: [0, 16) d, [16, 32) m, [32, 192) the fifth bits and nibbles exactly as
 *         Q5_0 x8's [16, 176).
 * x = d·q + m, so a block is d_x·(d·Σ q·x + m·Σx): the Q4_0 / Q5_0 x8 integer sums without an
 * offset (codes 0..15 eight pairs, 0..31 four pairs in int16) and the q8a block sum s, one
 * multiplication and one FMA more per block than Q4_0. */
#define X8_Q4_1_BS 160
#define X8_Q5_1_BS 192

/* Block j of one group for tokens 0..nt-1 (nt = 1: the one-token kernels, same float
 * operations per token in every caller, so the several-token results are the one-token bits). */
static inline __attribute__((always_inline)) void x8_q41_dec(int five, const uint8_t *g, size_t j, int par,
                                                             size_t nt, const int8_t *const *qs,
                                                             const float *const *d, const int32_t *const *s,
                                                             __m256 acc[2][X8_MULTI_MAX], int prefetch) {
    if (prefetch) {
        _mm_prefetch((const char *)g + 1024, _MM_HINT_T0);
        _mm_prefetch((const char *)g + 1024 + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)g + 1024 + 128, _MM_HINT_T0);
    }
    __m256i V[8];
    if (five) {
        x8_q5_0_codes(g + 16, V);
    } else {
        const __m256i m4 = _mm256_set1_epi8(0x0f);
        for (int v = 0; v < 4; v++) {
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(g + 32 + 32 * v));
            V[v] = _mm256_and_si256(raw, m4);
            V[v + 4] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        }
    }
    const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
    const __m256 m8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16)));
    for (size_t t = 0; t < nt; t++) {
        const int8_t *x = qs[t] + 32 * j;
        __m256i i32;
        if (five) {
            i32 = x8_q5_0_isum(V, x, 0);
        } else {
            __m256i p = _mm256_setzero_si256();
            for (int v = 0; v < 4; v++) {
                int32_t xl, xh;
                memcpy(&xl, x + 4 * v, 4);
                memcpy(&xh, x + 16 + 4 * v, 4);
                p = _mm256_add_epi16(p, _mm256_maddubs_epi16(V[v], _mm256_set1_epi32(xl)));
                p = _mm256_add_epi16(p, _mm256_maddubs_epi16(V[v + 4], _mm256_set1_epi32(xh)));
            }
            i32 = _mm256_madd_epi16(p, _mm256_set1_epi16(1));
        }
        /* d_x·(d·Σqx + m·Σx): the two nearly cancelling terms meet before they are scaled and
         * summed (as the file-layout kernels do), not apart in the accumulator */
        const __m256 b = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), d8, _mm256_mul_ps(m8, _mm256_set1_ps((float)s[t][j])));
        acc[par][t] = _mm256_fmadd_ps(b, _mm256_broadcast_ss(d[t] + j), acc[par][t]);
    }
}

static inline __attribute__((always_inline)) void x8_q41_run(int five, size_t n, const void *w, size_t nt,
                                                             const int8_t *const *qs, const float *const *d,
                                                             const int32_t *const *s, float *out, size_t ldo,
                                                             int prefetch) {
    const uint8_t *g = (const uint8_t *)w;
    const size_t bs = five ? X8_Q5_1_BS : X8_Q4_1_BS;
    __m256 acc[2][X8_MULTI_MAX];
    for (size_t t = 0; t < nt; t++) acc[0][t] = acc[1][t] = _mm256_setzero_ps();
    const size_t nb = n / 32;
    size_t j = 0;
    for (; j + 1 < nb; j += 2, g += 2 * bs) { /* the parity a constant: accumulators in registers */
        x8_q41_dec(five, g, j, 0, nt, qs, d, s, acc, prefetch);
        x8_q41_dec(five, g + bs, j + 1, 1, nt, qs, d, s, acc, prefetch);
    }
    if (j < nb) x8_q41_dec(five, g, j, 0, nt, qs, d, s, acc, prefetch);
    for (size_t t = 0; t < nt; t++) _mm256_storeu_ps(out + t * ldo, _mm256_add_ps(acc[0][t], acc[1][t]));
}

void mk_vec_dot_x8_q4_1_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out) {
    x8_q41_run(0, n, w, 1, &qs, &d, &s, out, 8, 1);
}

void mk_vec_dot_x8_q5_1_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out) {
    x8_q41_run(1, n, w, 1, &qs, &d, &s, out, 8, 1);
}

void mk_vec_dot_x8_q4_1_q8a_multi_avx2(size_t n, const void *w, size_t ntok, const int8_t *const *qs,
                                       const float *const *d, const int32_t *const *s, float *out,
                                       size_t ldo) {
    x8_q41_run(0, n, w, ntok < X8_MULTI_MAX ? ntok : X8_MULTI_MAX, qs, d, s, out, ldo, 0);
}

void mk_vec_dot_x8_q5_1_q8a_multi_avx2(size_t n, const void *w, size_t ntok, const int8_t *const *qs,
                                       const float *const *d, const int32_t *const *s, float *out,
                                       size_t ldo) {
    x8_q41_run(1, n, w, ntok < X8_MULTI_MAX ? ntok : X8_MULTI_MAX, qs, d, s, out, ldo, 0);
}

/* ---- IQ4_NL and IQ4_XS interleaved by eight rows (x8; src/tensor/interleave.rs writes them) ----
 * IQ4_NL: Q4_0's x8 layout (X8_BS = 144 bytes per block: the 8 rows' f16 d, four nibble
 * vectors). IQ4_XS, per group of 8 rows and per 256-element super-block, 1088 bytes (the 8
 * rows' own 8 × 136):
 *   [0, 16)    the rows' d (f16);
 *   [16, 48)   L[4i + r/2], nibble r % 2 = the low 4 bits of row r's 6-bit scale of sub-block i;
 *   [48, 64)   H[2i + r/4], bits 2(r % 4) and 2(r % 4) + 1 = its high 2 bits;
 *   [64, 1088) per sub-block i (32 elements) at 64 + 128i its nibbles as Q4_0 x8's four
 *              vectors, v = bytes 4v..4v+3 of each row's 16.
 * The nibbles become codebook values by vpshufb (|v| ≤ 127, and their magnitudes by a second
 * vpshufb), multiplied as |v| × sign(v)·x in vpmaddubsw (q8a codes are within ±127): a pair
 * reaches 2·127·127, so each vpmaddubsw is widened by its own vpmaddwd, against ones (IQ4_NL)
 * or the rows' ls - 32 as int16 pairs (IQ4_XS: the sub-block scale costs nothing, and the
 * block's int32 sum, ≤ 32·127·127·32 < 2^24, converts exactly). */
#define X8_IQ4_XS_BS 1088

/* The codebook values (W) and their magnitudes (A) of 4 nibble vectors at q: W[v] / W[v + 4]
 * the low / high nibbles of vector v. */
static inline __attribute__((always_inline)) void x8_iq4_codes(const uint8_t *q, __m256i W[8], __m256i A[8]) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i kv = _mm256_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
                                        -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);
    const __m256i ka = _mm256_setr_epi8(127, 104, 83, 65, 49, 35, 22, 10, 1, 13, 25, 38, 53, 69, 89, 113, 127, 104,
                                        83, 65, 49, 35, 22, 10, 1, 13, 25, 38, 53, 69, 89, 113);
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) {
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(q + 32 * v));
        const __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        W[v] = _mm256_shuffle_epi8(kv, lo);
        A[v] = _mm256_shuffle_epi8(ka, lo);
        W[v + 4] = _mm256_shuffle_epi8(kv, hi);
        A[v + 4] = _mm256_shuffle_epi8(ka, hi);
    }
}

/* Σ values × x over one 32-element block (lanes = rows), each pair sum times sc's int16. */
static inline __attribute__((always_inline)) __m256i x8_iq4_isum(const __m256i W[8], const __m256i A[8],
                                                                 const int8_t *x, __m256i sc) {
    __m256i p0 = _mm256_setzero_si256(), p1 = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) {
        int32_t a, b;
        memcpy(&a, x + 4 * v, 4);
        memcpy(&b, x + 16 + 4 * v, 4);
        p0 = _mm256_add_epi32(
            p0, _mm256_madd_epi16(_mm256_maddubs_epi16(A[v], _mm256_sign_epi8(_mm256_set1_epi32(a), W[v])), sc));
        p1 = _mm256_add_epi32(
            p1, _mm256_madd_epi16(_mm256_maddubs_epi16(A[v + 4], _mm256_sign_epi8(_mm256_set1_epi32(b), W[v + 4])), sc));
    }
    return _mm256_add_epi32(p0, p1);
}

/* IQ4_XS sub-block i's 8 scales ls - 32 (lanes = rows), each as two equal int16. */
static inline __attribute__((always_inline)) __m256i x8_iq4_xs_scales(const uint8_t *g, int i) {
    int32_t l;
    uint16_t h;
    memcpy(&l, g + 16 + 4 * i, 4);
    memcpy(&h, g + 48 + 2 * i, 2);
    const __m256i lo = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(l), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
                                        _mm256_set1_epi32(15));
    const __m256i hi = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(h), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)),
                                        _mm256_set1_epi32(3));
    const __m256i sc = _mm256_sub_epi32(_mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)), _mm256_set1_epi32(32));
    return _mm256_blend_epi16(sc, _mm256_slli_epi32(sc, 16), 0xaa);
}

/* One token's Σ over a block straight from its 4 nibble vectors at q (the one-token kernels:
 * each vector unpacked where it is used, no 16 live code registers). */
static inline __attribute__((always_inline)) __m256i x8_iq4_isum1(const uint8_t *q, const int8_t *x, __m256i sc) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i kv = _mm256_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
                                        -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);
    const __m256i ka = _mm256_setr_epi8(127, 104, 83, 65, 49, 35, 22, 10, 1, 13, 25, 38, 53, 69, 89, 113, 127, 104,
                                        83, 65, 49, 35, 22, 10, 1, 13, 25, 38, 53, 69, 89, 113);
    __m256i p0 = _mm256_setzero_si256(), p1 = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) {
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(q + 32 * v));
        const __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        int32_t a, b;
        memcpy(&a, x + 4 * v, 4);
        memcpy(&b, x + 16 + 4 * v, 4);
        const __m256i xa = _mm256_sign_epi8(_mm256_set1_epi32(a), _mm256_shuffle_epi8(kv, lo));
        const __m256i xb = _mm256_sign_epi8(_mm256_set1_epi32(b), _mm256_shuffle_epi8(kv, hi));
        p0 = _mm256_add_epi32(p0, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_shuffle_epi8(ka, lo), xa), sc));
        p1 = _mm256_add_epi32(p1, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_shuffle_epi8(ka, hi), xb), sc));
    }
    return _mm256_add_epi32(p0, p1);
}

/* Block j (nibble vectors at q, the rows' f16 d at d16, int16 scales sc) for tokens 0..nt-1,
 * into acc[t]. The integer sums are exact whichever way they are formed (one = 1: unpacked
 * per vector for one token), and every caller does the same float operations per token, so
 * the multi-token results are the one-token kernels' bits. */
static inline __attribute__((always_inline)) void x8_iq4_block(const uint8_t *q, const uint8_t *d16, __m256i sc,
                                                               size_t j, size_t nt, const int8_t *const *qs,
                                                               const float *const *d, __m256 *acc, int one) {
    const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)d16));
    if (one) {
        const __m256i i32 = x8_iq4_isum1(q, qs[0] + 32 * j, sc);
        acc[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), _mm256_mul_ps(d8, _mm256_broadcast_ss(d[0] + j)), acc[0]);
        return;
    }
    __m256i W[8], A[8];
    x8_iq4_codes(q, W, A);
    for (size_t t = 0; t < nt; t++) {
        const __m256i i32 = x8_iq4_isum(W, A, qs[t] + 32 * j, sc);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), _mm256_mul_ps(d8, _mm256_broadcast_ss(d[t] + j)), acc[t]);
    }
}

/* IQ4_NL x8 decode for tokens 0..nt-1 (one: the one-token kernel, nt = 1): acc0 takes the
 * even blocks, acc1 the odd ones. */
static inline __attribute__((always_inline)) void x8_iq4_nl_run(size_t n, const void *w, size_t nt,
                                                                const int8_t *const *qs, const float *const *d,
                                                                float *out, size_t ldo, int one) {
    const uint8_t *g = (const uint8_t *)w;
    const __m256i ones = _mm256_set1_epi16(1);
    const size_t nb = n / 32;
    __m256 acc0[X8_MULTI_MAX], acc1[X8_MULTI_MAX];
    for (size_t t = 0; t < nt; t++) acc0[t] = acc1[t] = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + 1 < nb; j += 2, g += 2 * X8_BS) {
        if (one) {
            _mm_prefetch((const char *)g + 1024, _MM_HINT_T0);
            _mm_prefetch((const char *)g + 1024 + 64, _MM_HINT_T0);
            _mm_prefetch((const char *)g + 1024 + 128, _MM_HINT_T0);
            _mm_prefetch((const char *)g + 1024 + 192, _MM_HINT_T0);
            _mm_prefetch((const char *)g + 1024 + 256, _MM_HINT_T0);
        }
        x8_iq4_block(g + 16, g, ones, j, nt, qs, d, acc0, one);
        x8_iq4_block(g + X8_BS + 16, g + X8_BS, ones, j + 1, nt, qs, d, acc1, one);
    }
    if (j < nb) x8_iq4_block(g + 16, g, ones, j, nt, qs, d, acc0, one);
    for (size_t t = 0; t < nt; t++) _mm256_storeu_ps(out + t * ldo, _mm256_add_ps(acc0[t], acc1[t]));
}

/* IQ4_XS x8 decode, the same way: sub-block i of each super-block into acc0 (i even) or acc1. */
static inline __attribute__((always_inline)) void x8_iq4_xs_run(size_t n, const void *w, size_t nt,
                                                                const int8_t *const *qs, const float *const *d,
                                                                float *out, size_t ldo, int one) {
    const uint8_t *g = (const uint8_t *)w;
    __m256 acc0[X8_MULTI_MAX], acc1[X8_MULTI_MAX];
    for (size_t t = 0; t < nt; t++) acc0[t] = acc1[t] = _mm256_setzero_ps();
    for (size_t sb = 0; sb < n / 256; sb++, g += X8_IQ4_XS_BS) {
#pragma GCC unroll 4
        for (int i = 0; i < 8; i += 2) {
            if (one) {
                const char *pf = (const char *)g + X8_IQ4_XS_BS + 136 * i;
                _mm_prefetch(pf, _MM_HINT_T0);
                _mm_prefetch(pf + 64, _MM_HINT_T0);
                _mm_prefetch(pf + 128, _MM_HINT_T0);
                _mm_prefetch(pf + 192, _MM_HINT_T0);
                _mm_prefetch(pf + 256, _MM_HINT_T0);
            }
            x8_iq4_block(g + 64 + 128 * i, g, x8_iq4_xs_scales(g, i), 8 * sb + i, nt, qs, d, acc0, one);
            x8_iq4_block(g + 64 + 128 * (i + 1), g, x8_iq4_xs_scales(g, i + 1), 8 * sb + i + 1, nt, qs, d, acc1,
                         one);
        }
    }
    for (size_t t = 0; t < nt; t++) _mm256_storeu_ps(out + t * ldo, _mm256_add_ps(acc0[t], acc1[t]));
}

void mk_vec_dot_x8_iq4_nl_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                   const int32_t *s, float *out) {
    (void)s;
    x8_iq4_nl_run(n, w, 1, &qs, &d, out, 8, 1);
}

void mk_vec_dot_x8_iq4_nl_q8a_multi_avx2(size_t n, const void *w, size_t ntok, const int8_t *const *qs,
                                         const float *const *d, const int32_t *const *s, float *out,
                                         size_t ldo) {
    (void)s;
    x8_iq4_nl_run(n, w, ntok < X8_MULTI_MAX ? ntok : X8_MULTI_MAX, qs, d, out, ldo, 0);
}

void mk_vec_dot_x8_iq4_xs_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                   const int32_t *s, float *out) {
    (void)s;
    x8_iq4_xs_run(n, w, 1, &qs, &d, out, 8, 1);
}

void mk_vec_dot_x8_iq4_xs_q8a_multi_avx2(size_t n, const void *w, size_t ntok, const int8_t *const *qs,
                                         const float *const *d, const int32_t *const *s, float *out,
                                         size_t ldo) {
    (void)s;
    x8_iq4_xs_run(n, w, ntok < X8_MULTI_MAX ? ntok : X8_MULTI_MAX, qs, d, out, ldo, 0);
}

/* ---- The x8 GEMMs (prefill): Q4_0, Q5_0, Q4_K, Q5_K, Q4_1, Q5_1, IQ4_NL, IQ4_XS (Q6_K, Q2_K, Q3_K: below) ----
 * A vector holds 4 rows × 2 tokens (lanes 0-3: rows 4h..4h+3 of the group × token a, lanes
 * 4-7: the same rows × token b), so both operands of every vpmaddubsw come whole: the weights
 * as the group's half h repeated in both 128-bit halves (one vbroadcasti128 and a mask per
 * code vector, unpacked once per block and kept in 8 registers), the activations from a tile
 * in which each block's 4-byte element groups are already repeated per lane (vpshufd once per
 * tile, not per weight group), read as memory operands. Per 4 rows × 2 tokens × block that
 * is 8 vpmaddubsw, 7 vpaddw, one vpmaddwd, the offset (Q4_0's 8·Σx, Q5_0's 16·Σx, lanes per
 * token, from the tile), one conversion and one FMA with the rows' scales × the tokens' d:
 * no broadcasts in the inner loop, half the instructions of one token at a time against 8
 * rows, whose broadcast operands cannot be folded. The caller's activation rows are n bytes
 * apart (2048 for V2-Lite's hidden size), so reading a block of every token straight from
 * them also fell into a few L1 sets; the tile is contiguous. Slices of XP_TOK tokens ×
 * XP_BLK blocks, the float accumulators of XP_GRP groups parked on the stack between tiles
 * (the sums are the same, in the same order, as the token-at-a-time kernels: bit-identical). */
#define XP_TOK 32 /* tokens per slice (16 pairs) */
#define XP_BLK 4  /* activation blocks per tile: 16 KiB of codes */
#define XP_GRP 32 /* 8-row groups per parked slice: 32 KiB of accumulators (stack: ~54 KiB in all) */

typedef struct {
    __m256i x[XP_BLK][XP_TOK / 2][8]; /* per block and pair: code vector v's elements, per lane */
    __m256i off[XP_BLK][XP_TOK / 2];  /* smul · Σx of the pair's tokens (lanes 0-3, 4-7) */
    __m256 d[XP_BLK][XP_TOK / 2];     /* their scales */
    __m256 ds[XP_BLK][XP_TOK / 2];    /* d · Σx (the K-quants' mins) */
} xp_tile;

/* Tokens t0..t0+tn-1 (a missing last token of a pair as zeros), blocks j0..j0+jn-1. */
static void xp_fill(xp_tile *T, size_t n, size_t t0, size_t tn, size_t j0, size_t jn, const int8_t *qs,
                    const float *d, const int32_t *s, int32_t smul) {
    const size_t nb = n / 32;
    for (size_t p = 0; 2 * p < tn; p++) {
        const size_t ta = t0 + 2 * p, tb = ta + 1;
        const int has_b = 2 * p + 1 < tn;
        for (size_t jj = 0; jj < jn; jj++) {
            const size_t j = j0 + jj;
            const int8_t *xa = qs + ta * n + 32 * j, *xb = qs + tb * n + 32 * j;
            const __m128i z = _mm_setzero_si128();
            const __m256i lo = _mm256_set_m128i(has_b ? _mm_loadu_si128((const __m128i *)xb) : z,
                                                 _mm_loadu_si128((const __m128i *)xa));
            const __m256i hi = _mm256_set_m128i(has_b ? _mm_loadu_si128((const __m128i *)(xb + 16)) : z,
                                                 _mm_loadu_si128((const __m128i *)(xa + 16)));
            __m256i *x = T->x[jj][p];
            x[0] = _mm256_shuffle_epi32(lo, 0x00);
            x[1] = _mm256_shuffle_epi32(lo, 0x55);
            x[2] = _mm256_shuffle_epi32(lo, 0xaa);
            x[3] = _mm256_shuffle_epi32(lo, 0xff);
            x[4] = _mm256_shuffle_epi32(hi, 0x00);
            x[5] = _mm256_shuffle_epi32(hi, 0x55);
            x[6] = _mm256_shuffle_epi32(hi, 0xaa);
            x[7] = _mm256_shuffle_epi32(hi, 0xff);
            const float da = d[ta * nb + j], db = has_b ? d[tb * nb + j] : 0.0f;
            const int32_t sa = s[ta * nb + j], sb = has_b ? s[tb * nb + j] : 0;
            T->off[jj][p] = _mm256_set_m128i(_mm_set1_epi32(smul * sb), _mm_set1_epi32(smul * sa));
            T->d[jj][p] = _mm256_set_m128(_mm_set1_ps(db), _mm_set1_ps(da));
            T->ds[jj][p] = _mm256_set_m128(_mm_set1_ps(db * (float)sb), _mm_set1_ps(da * (float)sa));
        }
    }
}

/* Σ codes × x over one block for 4 rows × 2 tokens: codes ≤ 15 (eight pairs ≤ 2·15·127 in
 * int16) or, wide, ≤ 31 (two int16 sums of four, widened apart). */
static inline __attribute__((always_inline)) __m256i xp_isum(const __m256i W[8], const __m256i *x, int wide) {
    const __m256i a = _mm256_add_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(W[0], x[0]), _mm256_maddubs_epi16(W[1], x[1])),
                                       _mm256_add_epi16(_mm256_maddubs_epi16(W[2], x[2]), _mm256_maddubs_epi16(W[3], x[3])));
    const __m256i b = _mm256_add_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(W[4], x[4]), _mm256_maddubs_epi16(W[5], x[5])),
                                       _mm256_add_epi16(_mm256_maddubs_epi16(W[6], x[6]), _mm256_maddubs_epi16(W[7], x[7])));
    const __m256i ones = _mm256_set1_epi16(1);
    if (wide) return _mm256_add_epi32(_mm256_madd_epi16(a, ones), _mm256_madd_epi16(b, ones));
    return _mm256_madd_epi16(_mm256_add_epi16(a, b), ones);
}

enum { XP_Q4_0, XP_Q5_0, XP_Q4_K, XP_Q5_K, XP_Q4_1, XP_Q5_1, XP_IQ4_NL, XP_IQ4_XS };

/* IQ4 (signed values): Σ |v| × sign(v)·x for 4 rows × 2 tokens, each vpmaddubsw widened by its
 * own vpmaddwd against sc (ones, or IQ4_XS's ls - 32 pairs of the half's rows). */
static inline __attribute__((always_inline)) __m256i xp_isum_signed(const __m256i W[8], const __m256i A[8],
                                                                    const __m256i *x, __m256i sc) {
    __m256i p0 = _mm256_setzero_si256(), p1 = _mm256_setzero_si256();
    for (int v = 0; v < 4; v++) {
        p0 = _mm256_add_epi32(p0, _mm256_madd_epi16(_mm256_maddubs_epi16(A[v], _mm256_sign_epi8(x[v], W[v])), sc));
        p1 = _mm256_add_epi32(
            p1, _mm256_madd_epi16(_mm256_maddubs_epi16(A[v + 4], _mm256_sign_epi8(x[v + 4], W[v + 4])), sc));
    }
    return _mm256_add_epi32(p0, p1);
}

/* IQ4_NL / IQ4_XS block j's values and magnitudes for rows 4h..4h+3 (in both halves). */
static inline __attribute__((always_inline)) void xp_iq4_codes(int ty, const uint8_t *g, size_t j, int h,
                                                               __m256i W[8], __m256i A[8]) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i kv = _mm256_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
                                        -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);
    const __m256i ka = _mm256_setr_epi8(127, 104, 83, 65, 49, 35, 22, 10, 1, 13, 25, 38, 53, 69, 89, 113, 127, 104,
                                        83, 65, 49, 35, 22, 10, 1, 13, 25, 38, 53, 69, 89, 113);
    const uint8_t *q = ty == XP_IQ4_XS ? g + 64 + 128 * (j % 8) : g + 16;
    for (int v = 0; v < 4; v++) {
        const __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(q + 32 * v + 16 * h)));
        const __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        W[v] = _mm256_shuffle_epi8(kv, lo);
        A[v] = _mm256_shuffle_epi8(ka, lo);
        W[v + 4] = _mm256_shuffle_epi8(kv, hi);
        A[v + 4] = _mm256_shuffle_epi8(ka, hi);
    }
}

/* Q5_K: the fifth bits of sub-block i (rows 4h..4h+3 in both halves) into the 8 code vectors:
 * bit i of qh vector v's bytes to bit 4 (one shift by a count known per block), mask, or. */
static inline __attribute__((always_inline)) void xp_q5_k_fifth(const uint8_t *g, int i, int h, __m256i W[8]) {
    const __m128i cnt = _mm_cvtsi32_si128(i < 4 ? 4 - i : i - 4);
    const __m256i b4 = _mm256_set1_epi8(0x10);
    for (int v = 0; v < 8; v++) {
        const __m256i hb = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(g + 1152 + 32 * v + 16 * h)));
        const __m256i t = i < 4 ? _mm256_sll_epi16(hb, cnt) : _mm256_srl_epi16(hb, cnt);
        W[v] = _mm256_or_si256(W[v], _mm256_and_si256(t, b4));
    }
}

/* Group gi's 8 code vectors of block j (lanes = its 8 rows) for the 128-bit-lane form: Q4_0,
 * Q4_K and Q5_K read each half straight (h ≥ 0: rows 4h..4h+3 in both halves); Q5_0 (h < 0)
 * all 8 rows, split by xp_half below. */
static inline __attribute__((always_inline)) void xp_codes(int ty, const uint8_t *g, size_t j, int h, __m256i W[8]) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    if (ty == XP_Q5_0) {
        x8_q5_0_codes(g, W);
        return;
    }
    if (ty == XP_Q4_0) {
        for (int v = 0; v < 4; v++) {
            const __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(g + 16 + 32 * v + 16 * h)));
            W[v] = _mm256_and_si256(raw, m4);
            W[v + 4] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        }
        return;
    }
    const int i = (int)(j % 8), c = i / 2; /* Q4_K: sub-block i, chunk c, low or high nibbles */
    for (int v = 0; v < 8; v++) {
        const __m256i raw =
            _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(g + 128 + 256 * c + 32 * v + 16 * h)));
        W[v] = _mm256_and_si256(i & 1 ? _mm256_srli_epi16(raw, 4) : raw, m4);
    }
    if (ty == XP_Q5_K) xp_q5_k_fifth(g, i, h, W);
}

static inline __attribute__((always_inline)) __m256 xp_half_ps(__m256 v, int h) {
    return h ? _mm256_permute2f128_ps(v, v, 0x11) : _mm256_permute2f128_ps(v, v, 0x00);
}

static inline __attribute__((always_inline)) void xp_gemm(int ty, size_t n, size_t ngroups, const void *w,
                                                          size_t ntok, const int8_t *qs, const float *d,
                                                          const int32_t *s, float *out, size_t ldo) {
    const size_t nb = n / 32;
    /* bytes per group and block (Q4_K: per super-block, 8 blocks) */
    const size_t gbytes = ty == XP_Q4_0 || ty == XP_IQ4_NL ? nb * X8_BS
                        : ty == XP_Q5_0                    ? nb * X8_Q5_0_BS
                        : ty == XP_Q4_1                    ? nb * X8_Q4_1_BS
                        : ty == XP_Q5_1                    ? nb * X8_Q5_1_BS
                        : ty == XP_Q5_K                    ? n / 256 * X8_Q5_K_BS
                        : ty == XP_IQ4_XS                  ? n / 256 * X8_IQ4_XS_BS
                                                           : n / 256 * X8K_BS;
    const int lmin = ty == XP_Q4_1 || ty == XP_Q5_1; /* Q4_1 / Q5_1: d_x·(d·Σqx + m·Σx), Σx in T.ds */
    const int kq = ty == XP_Q4_K || ty == XP_Q5_K, wide = ty == XP_Q5_0 || ty == XP_Q5_1 || ty == XP_Q5_K;
    xp_tile T;
    __m256 park[XP_GRP][2][XP_TOK / 2];
    for (size_t t0 = 0; t0 < ntok; t0 += XP_TOK) {
        const size_t tn = ntok - t0 < XP_TOK ? ntok - t0 : XP_TOK, np = (tn + 1) / 2;
        for (size_t g0 = 0; g0 < ngroups; g0 += XP_GRP) {
            const size_t gn = ngroups - g0 < XP_GRP ? ngroups - g0 : XP_GRP;
            for (size_t gg = 0; gg < gn; gg++)
                for (size_t p = 0; p < np; p++) park[gg][0][p] = park[gg][1][p] = _mm256_setzero_ps();
            for (size_t j0 = 0; j0 < nb; j0 += XP_BLK) {
                const size_t jn = nb - j0 < XP_BLK ? nb - j0 : XP_BLK;
                xp_fill(&T, n, t0, tn, j0, jn, qs, d, s, ty == XP_Q4_0 ? 8 : ty == XP_Q5_0 ? 16 : lmin ? 1 : 0);
                if (lmin) /* Q4_1 / Q5_1 take Σx itself as a float (the decode kernels' (float)s) */
                    for (size_t jj = 0; jj < jn; jj++)
                        for (size_t p = 0; p < np; p++) T.ds[jj][p] = _mm256_cvtepi32_ps(T.off[jj][p]);
                for (size_t gg = 0; gg < gn; gg++) {
                    const uint8_t *grp = (const uint8_t *)w + (g0 + gg) * gbytes;
                    for (size_t jj = 0; jj < jn; jj++) {
                        const size_t j = j0 + jj;
                        const uint8_t *g = ty == XP_Q4_0 || ty == XP_IQ4_NL ? grp + j * X8_BS
                                         : ty == XP_Q5_0                    ? grp + j * X8_Q5_0_BS
                                         : ty == XP_Q4_1                    ? grp + j * X8_Q4_1_BS
                                         : ty == XP_Q5_1                    ? grp + j * X8_Q5_1_BS
                                         : ty == XP_Q5_K                    ? grp + j / 8 * X8_Q5_K_BS
                                         : ty == XP_IQ4_XS                  ? grp + j / 8 * X8_IQ4_XS_BS
                                                                            : grp + j / 8 * X8K_BS;
                        /* the next group's weights for this block */
                        const char *pf = ty == XP_Q4_K    ? (const char *)g + gbytes + 144 * (j % 8)
                                       : ty == XP_Q5_K    ? (const char *)g + gbytes + 176 * (j % 8)
                                       : ty == XP_IQ4_XS ? (const char *)g + gbytes + 136 * (j % 8)
                                                         : (const char *)g + gbytes;
                        _mm_prefetch(pf, _MM_HINT_T0);
                        _mm_prefetch(pf + 64, _MM_HINT_T0);
                        _mm_prefetch(pf + 128, _MM_HINT_T0);
                        __m256 f8, m8 = _mm256_setzero_ps();
                        if (kq)
                            x8k_scales(g, (int)(j % 8), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g)),
                                       _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16))), &f8, &m8);
                        else
                            f8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
                        if (lmin) m8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16)));
                        if (ty == XP_IQ4_NL || ty == XP_IQ4_XS) {
                            const __m256i sc8 =
                                ty == XP_IQ4_XS ? x8_iq4_xs_scales(g, (int)(j % 8)) : _mm256_set1_epi16(1);
                            for (int h = 0; h < 2; h++) {
                                __m256i W[8], A[8];
                                xp_iq4_codes(ty, g, j, h, W, A);
                                const __m256i sc = h ? _mm256_permute2x128_si256(sc8, sc8, 0x11)
                                                     : _mm256_permute2x128_si256(sc8, sc8, 0x00);
                                const __m256 f = xp_half_ps(f8, h);
                                __m256 *acc = park[gg][h];
                                for (size_t p = 0; p < np; p++) {
                                    const __m256i isum = xp_isum_signed(W, A, T.x[jj][p], sc);
                                    acc[p] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(f, T.d[jj][p]), acc[p]);
                                }
                            }
                            continue;
                        }
                        __m256i V[8];
                        if (ty == XP_Q5_0) xp_codes(ty, g, j, -1, V);
                        if (ty == XP_Q5_1) x8_q5_0_codes(g + 16, V);
                        for (int h = 0; h < 2; h++) {
                            __m256i W[8];
                            if (ty == XP_Q4_1)
                                xp_codes(XP_Q4_0, g + 16, j, h, W); /* Q4_0's nibble vectors, 16 bytes on */
                            else if (ty == XP_Q5_0 || ty == XP_Q5_1)
                                for (int v = 0; v < 8; v++)
                                    W[v] = h ? _mm256_permute2x128_si256(V[v], V[v], 0x11)
                                             : _mm256_permute2x128_si256(V[v], V[v], 0x00);
                            else
                                xp_codes(ty, g, j, h, W);
                            const __m256 f = xp_half_ps(f8, h), m = xp_half_ps(m8, h);
                            __m256 *acc = park[gg][h];
                            for (size_t p = 0; p < np; p++) {
                                const __m256i isum = xp_isum(W, T.x[jj][p], wide);
                                if (lmin) {
                                    const __m256 b = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), f, _mm256_mul_ps(m, T.ds[jj][p]));
                                    acc[p] = _mm256_fmadd_ps(b, T.d[jj][p], acc[p]);
                                } else if (kq) {
                                    const __m256 a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(f, T.d[jj][p]), acc[p]);
                                    acc[p] = _mm256_fnmadd_ps(m, T.ds[jj][p], a);
                                } else {
                                    const __m256i i32 = _mm256_sub_epi32(isum, T.off[jj][p]);
                                    acc[p] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), _mm256_mul_ps(f, T.d[jj][p]), acc[p]);
                                }
                            }
                        }
                    }
                }
            }
            for (size_t gg = 0; gg < gn; gg++)
                for (int h = 0; h < 2; h++)
                    for (size_t p = 0; p < np; p++) {
                        float *o = out + (t0 + 2 * p) * ldo + 8 * (g0 + gg) + 4 * h;
                        _mm_storeu_ps(o, _mm256_castps256_ps128(park[gg][h][p]));
                        if (2 * p + 1 < tn) _mm_storeu_ps(o + ldo, _mm256_extractf128_ps(park[gg][h][p], 1));
                    }
        }
    }
}

/* The exported x8 GEMMs of the types above: xp_gemm with the type fixed. */
#define XP_GEMM_EXPORT(T, TY)                                                                       \
    void mk_gemm_x8_##T##_q8a_avx2(size_t n, size_t ngroups, const void *w, size_t ntok, const int8_t *qs, \
                                   const float *d, const int32_t *s, float *out, size_t ldo) {          \
        xp_gemm(TY, n, ngroups, w, ntok, qs, d, s, out, ldo);                                          \
    }
XP_GEMM_EXPORT(q4_0, XP_Q4_0)
XP_GEMM_EXPORT(q5_0, XP_Q5_0)
XP_GEMM_EXPORT(q4_k, XP_Q4_K)
XP_GEMM_EXPORT(q4_1, XP_Q4_1)
XP_GEMM_EXPORT(q5_1, XP_Q5_1)
XP_GEMM_EXPORT(q5_k, XP_Q5_K)
XP_GEMM_EXPORT(iq4_nl, XP_IQ4_NL)
XP_GEMM_EXPORT(iq4_xs, XP_IQ4_XS)

/* ---- Q6_K interleaved by eight rows (x8; src/tensor/interleave.rs writes it) ----
 * Per group of 8 rows and per 256-element super-block, 1680 bytes (the 8 rows' own 8 × 210):
 *   [0, 16)     the rows' d (f16);
 *   [16, 144)   the int8 sub-block scales, for activation block j at 16 + 16j: row r's scales
 *               2j and 2j+1 at bytes 2r and 2r+1 (one int16 pair per row once widened);
 *   [144, 1680) per half h (128 elements) 768 bytes at 144 + 768h: the rows' ql bytes
 *               64h..64h+31 and 64h+32..64h+63 (two chunks), then their qh bytes 32h..32h+31,
 *               each chunk as eight vectors, v = bytes 4v..4v+3 of each row's chunk.
 * Activation block j = 4h + q takes the low (q < 2) or high nibbles of ql chunk q % 2 and qh
 * bits 2q, 2q+1 as bits 4, 5: unsigned codes 0..63, whose x pairs (≤ 2·63·127) sum in int16
 * two at a time, meet the 16-element scales in vpmaddwd (exact in int32), and the -32 offset
 * comes off as 32·(sc_a·Σx_a + sc_b·Σx_b) over the block's two 16-element halves. */
#define X8_Q6_K_BS 1680

/* Block 4h + q's code vectors (q a constant where this is inlined: the shifts are immediates). */
static inline __attribute__((always_inline)) void x8_q6_k_codes(const uint8_t *g, int h, int q, __m256i V[8]) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x30);
    const uint8_t *ql = g + 144 + 768 * h + 256 * (q % 2), *qh = g + 144 + 768 * h + 512;
#pragma GCC unroll 8
    for (int v = 0; v < 8; v++) {
        const __m256i l = _mm256_loadu_si256((const __m256i *)(ql + 32 * v));
        const __m256i hb = _mm256_loadu_si256((const __m256i *)(qh + 32 * v));
        const __m256i lo = _mm256_and_si256(q < 2 ? l : _mm256_srli_epi16(l, 4), m4);
        const __m256i hi = q == 0 ? _mm256_slli_epi16(hb, 4)
                         : q == 1 ? _mm256_slli_epi16(hb, 2)
                         : q == 2 ? hb
                                  : _mm256_srli_epi16(hb, 2);
        V[v] = _mm256_or_si256(lo, _mm256_and_si256(hi, m2));
    }
}

/* Σ_16 x of the block's first half and (Σx - that) as one int16 pair (|Σ_16| ≤ 16·127). */
static inline __attribute__((always_inline)) int32_t x8_q6_k_xpair(const int8_t *x, int32_t s) {
    __m128i p = _mm_madd_epi16(_mm_maddubs_epi16(_mm_set1_epi8(1), _mm_loadu_si128((const __m128i *)x)),
                               _mm_set1_epi16(1));
    p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0x4e));
    p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0xb1));
    const int32_t a = _mm_cvtsi128_si32(p);
    return (int32_t)(((uint32_t)(s - a) << 16) | ((uint32_t)a & 0xffffu));
}

/* One block's int32 lanes Σ (q - 32)·x·sc; sab = the rows' (sc_a, sc_b) int16 pairs. */
static inline __attribute__((always_inline)) __m256i x8_q6_k_isum(const __m256i V[8], __m256i sab, const int8_t *x,
                                                                  int32_t s) {
    const __m256i dup_a = _mm256_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13, 0, 1, 0, 1, 4, 5, 4, 5,
                                           8, 9, 8, 9, 12, 13, 12, 13);
    const __m256i dup_b = _mm256_setr_epi8(2, 3, 2, 3, 6, 7, 6, 7, 10, 11, 10, 11, 14, 15, 14, 15, 2, 3, 2, 3, 6, 7,
                                           6, 7, 10, 11, 10, 11, 14, 15, 14, 15);
    const __m256i sa = _mm256_shuffle_epi8(sab, dup_a), sb = _mm256_shuffle_epi8(sab, dup_b);
    __m256i p[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        int32_t a, b;
        memcpy(&a, x + 8 * k, 4);
        memcpy(&b, x + 8 * k + 4, 4);
        p[k] = _mm256_add_epi16(_mm256_maddubs_epi16(V[2 * k], _mm256_set1_epi32(a)),
                                _mm256_maddubs_epi16(V[2 * k + 1], _mm256_set1_epi32(b)));
    }
    const __m256i sum = _mm256_add_epi32(_mm256_add_epi32(_mm256_madd_epi16(p[0], sa), _mm256_madd_epi16(p[1], sa)),
                                         _mm256_add_epi32(_mm256_madd_epi16(p[2], sb), _mm256_madd_epi16(p[3], sb)));
    const __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(sab, _mm256_set1_epi32(x8_q6_k_xpair(x, s))), 5);
    return _mm256_sub_epi32(sum, corr);
}

static inline __attribute__((always_inline)) __m256i x8_q6_k_scales(const uint8_t *g, int j) {
    return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(g + 16 + 16 * j)));
}

/* Decode of block 4h + q (q constant) for tokens 0..nt-1 (nt = 1: the one-token kernel): the
 * same float operations per token in every caller, so the multi-token results are the
 * one-token kernel's bits. acc[0][t] takes the even blocks, acc[1][t] the odd ones. */
static inline __attribute__((always_inline)) void x8_q6_k_dec(const uint8_t *g, int h, int q, size_t j, __m256 d8,
                                                              size_t nt, const int8_t *const *qs,
                                                              const float *const *d, const int32_t *const *s,
                                                              __m256 acc[2][X8_MULTI_MAX], int prefetch) {
    if (prefetch) {
        const char *pf = (const char *)g + X8_Q6_K_BS + 210 * (4 * h + q);
        _mm_prefetch(pf, _MM_HINT_T0);
        _mm_prefetch(pf + 64, _MM_HINT_T0);
        _mm_prefetch(pf + 128, _MM_HINT_T0);
        _mm_prefetch(pf + 192, _MM_HINT_T0);
    }
    __m256i V[8];
    x8_q6_k_codes(g, h, q, V);
    const __m256i sab = x8_q6_k_scales(g, 4 * h + q);
    for (size_t t = 0; t < nt; t++) {
        const __m256i i32 = x8_q6_k_isum(V, sab, qs[t] + 32 * j, s[t][j]);
        const __m256 f = _mm256_mul_ps(d8, _mm256_broadcast_ss(d[t] + j));
        acc[q & 1][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), f, acc[q & 1][t]);
    }
}

static inline __attribute__((always_inline)) void x8_q6_k_run(size_t n, const void *w, size_t nt,
                                                              const int8_t *const *qs, const float *const *d,
                                                              const int32_t *const *s, float *out, size_t ldo,
                                                              int prefetch) {
    const uint8_t *g = (const uint8_t *)w;
    __m256 acc[2][X8_MULTI_MAX];
    for (size_t t = 0; t < nt; t++) acc[0][t] = acc[1][t] = _mm256_setzero_ps();
    for (size_t sb = 0; sb < n / 256; sb++, g += X8_Q6_K_BS) {
        const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
        for (int h = 0; h < 2; h++) {
            const size_t j = 8 * sb + 4 * (size_t)h;
            x8_q6_k_dec(g, h, 0, j, d8, nt, qs, d, s, acc, prefetch);
            x8_q6_k_dec(g, h, 1, j + 1, d8, nt, qs, d, s, acc, prefetch);
            x8_q6_k_dec(g, h, 2, j + 2, d8, nt, qs, d, s, acc, prefetch);
            x8_q6_k_dec(g, h, 3, j + 3, d8, nt, qs, d, s, acc, prefetch);
        }
    }
    for (size_t t = 0; t < nt; t++) _mm256_storeu_ps(out + t * ldo, _mm256_add_ps(acc[0][t], acc[1][t]));
}

void mk_vec_dot_x8_q6_k_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out) {
    x8_q6_k_run(n, w, 1, &qs, &d, &s, out, 8, 1);
}

void mk_vec_dot_x8_q6_k_q8a_multi_avx2(size_t n, const void *w, size_t ntok, const int8_t *const *qs,
                                       const float *const *d, const int32_t *const *s, float *out,
                                       size_t ldo) {
    x8_q6_k_run(n, w, ntok < X8_MULTI_MAX ? ntok : X8_MULTI_MAX, qs, d, s, out, ldo, 0);
}

/* GEMM: block 4h + q (q constant) of one group against the tokens of one slice. Here the
 * codes are unpacked once for 64 tokens, so they go in as |q - 32| with the signs moved to x
 * (vpsignb per token) instead of the decode kernels' per-token Σ_16 x correction: four pairs
 * (≤ 2·32·127) sum in int16, one vpmaddwd per 16-element scale. */
static inline __attribute__((always_inline)) void x8_q6_k_gemm_block(const uint8_t *g, int h, int q, size_t j,
                                                                     size_t n, size_t nb, size_t t0, size_t tn,
                                                                     const int8_t *qs, const float *d,
                                                                     const int32_t *s, __m256 *acc) {
    (void)s;
    const __m256i dup_a = _mm256_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13, 0, 1, 0, 1, 4, 5, 4, 5,
                                           8, 9, 8, 9, 12, 13, 12, 13);
    const __m256i dup_b = _mm256_setr_epi8(2, 3, 2, 3, 6, 7, 6, 7, 10, 11, 10, 11, 14, 15, 14, 15, 2, 3, 2, 3, 6, 7,
                                           6, 7, 10, 11, 10, 11, 14, 15, 14, 15);
    const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
    __m256i V[8], A[8];
    x8_q6_k_codes(g, h, q, V);
#pragma GCC unroll 8
    for (int v = 0; v < 8; v++) {
        V[v] = _mm256_sub_epi8(V[v], _mm256_set1_epi8(32));
        A[v] = _mm256_sign_epi8(V[v], V[v]);
    }
    const __m256i sab = x8_q6_k_scales(g, 4 * h + q);
    const __m256i sa = _mm256_shuffle_epi8(sab, dup_a), sb = _mm256_shuffle_epi8(sab, dup_b);
    for (size_t t = 0; t < tn; t++) {
        const size_t tt = t0 + t;
        const int8_t *x = qs + tt * n + 32 * j;
        __m256i p0 = _mm256_setzero_si256(), p1 = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
            int32_t a, b;
            memcpy(&a, x + 4 * v, 4);
            memcpy(&b, x + 16 + 4 * v, 4);
            p0 = _mm256_add_epi16(p0, _mm256_maddubs_epi16(A[v], _mm256_sign_epi8(_mm256_set1_epi32(a), V[v])));
            p1 = _mm256_add_epi16(p1,
                                  _mm256_maddubs_epi16(A[v + 4], _mm256_sign_epi8(_mm256_set1_epi32(b), V[v + 4])));
        }
        const __m256i i32 = _mm256_add_epi32(_mm256_madd_epi16(p0, sa), _mm256_madd_epi16(p1, sb));
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), _mm256_mul_ps(d8, _mm256_broadcast_ss(d + tt * nb + j)),
                                 acc[t]);
    }
}

void mk_gemm_x8_q6_k_q8a_avx2(size_t n, size_t ngroups, const void *w, size_t ntok, const int8_t *qs,
                              const float *d, const int32_t *s, float *out, size_t ldo) {
    const size_t nb = n / 32;
    __m256 acc[GEMM_TOK];
    for (size_t t0 = 0; t0 < ntok; t0 += GEMM_TOK) {
        const size_t tn = ntok - t0 < GEMM_TOK ? ntok - t0 : GEMM_TOK;
        for (size_t gi = 0; gi < ngroups; gi++) {
            const uint8_t *grp = (const uint8_t *)w + gi * (n / 256) * X8_Q6_K_BS;
            for (size_t t = 0; t < tn; t++) acc[t] = _mm256_setzero_ps();
            for (size_t sb = 0; sb < n / 256; sb++) {
                const uint8_t *g = grp + sb * X8_Q6_K_BS;
                for (int h = 0; h < 2; h++) {
                    const size_t j = 8 * sb + 4 * (size_t)h;
                    x8_q6_k_gemm_block(g, h, 0, j, n, nb, t0, tn, qs, d, s, acc);
                    x8_q6_k_gemm_block(g, h, 1, j + 1, n, nb, t0, tn, qs, d, s, acc);
                    x8_q6_k_gemm_block(g, h, 2, j + 2, n, nb, t0, tn, qs, d, s, acc);
                    x8_q6_k_gemm_block(g, h, 3, j + 3, n, nb, t0, tn, qs, d, s, acc);
                }
            }
            for (size_t t = 0; t < tn; t++) _mm256_storeu_ps(out + (t0 + t) * ldo + 8 * gi, acc[t]);
        }
    }
}

/* ---- Q2_K interleaved by eight rows (x8; src/tensor/interleave.rs writes it) ----
 * Per group of 8 rows and per 256-element super-block, 672 bytes (the 8 rows' own 8 × 84):
 *   [0, 16)     the rows' d (f16);
 *   [16, 32)    their dmin (f16);
 *   [32, 160)   the scale/min bytes, for activation block j at 32 + 16j: row r's bytes 2j and
 *               2j+1 (sub-blocks 2j, 2j+1: low nibble scale, high nibble min) at 2r, 2r+1, so
 *               one 16-byte load and vpmovzxbw give one int16 pair per row;
 *   [160, 672)  per half h (128 elements) 256 bytes at 160 + 256h: the rows' code bytes
 *               32h..32h+31 as eight vectors, v = bytes 4v..4v+3 of each row's 32.
 * Activation block j = 4h + l takes bits 2l, 2l+1 of half h's vectors: code vector v holds
 * elements 4v..4v+3 of the block (codes 0..3, eight x products ≤ 8·3·128 sum in int16). Per
 * block and row, in int32 (exact): isq = sc_a·Σ_a q·x + sc_b·Σ_b q·x (one vpmaddwd per
 * 16-element half) and ism = m_a·Σ_a x + m_b·Σ_b x (one vpmaddwd against the activations'
 * Σ_16 x pair, shared by the rows), then dx · (d·isq - dmin·ism) as the file-layout kernels. */
#define X8_Q2_K_BS 672

/* Block 4h + l's code vectors (l a constant where this is inlined: the shift is an immediate). */
static inline __attribute__((always_inline)) void x8_q2_k_codes(const uint8_t *g, int h, int l, __m256i V[8]) {
    const __m256i m3 = _mm256_set1_epi8(3);
    const uint8_t *q = g + 160 + 256 * h;
#pragma GCC unroll 8
    for (int v = 0; v < 8; v++) {
        const __m256i c = _mm256_loadu_si256((const __m256i *)(q + 32 * v));
        V[v] = _mm256_and_si256(l == 0 ? c : _mm256_srli_epi16(c, 2 * l), m3);
    }
}

/* Block j's scales (sa: sc_a in both int16 of each row lane, sb: sc_b) and mins as (m_a, m_b)
 * int16 pairs. */
static inline __attribute__((always_inline)) void x8_q2_k_scales(const uint8_t *g, size_t j, __m256i *sa,
                                                                 __m256i *sb, __m256i *mab) {
    const __m256i dup_a = _mm256_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13, 0, 1, 0, 1, 4, 5, 4, 5,
                                           8, 9, 8, 9, 12, 13, 12, 13);
    const __m256i dup_b = _mm256_setr_epi8(2, 3, 2, 3, 6, 7, 6, 7, 10, 11, 10, 11, 14, 15, 14, 15, 2, 3, 2, 3, 6, 7,
                                           6, 7, 10, 11, 10, 11, 14, 15, 14, 15);
    const __m256i sm = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(g + 32 + 16 * j)));
    const __m256i sab = _mm256_and_si256(sm, _mm256_set1_epi16(0x0f));
    *sa = _mm256_shuffle_epi8(sab, dup_a);
    *sb = _mm256_shuffle_epi8(sab, dup_b);
    *mab = _mm256_srli_epi16(sm, 4);
}

/* The (Σ_16 x, Σ_16 x) int16 pairs of the 8 activation blocks of one super-block (x: its 256
 * codes), as x8_q6_k_xpair gives them one block at a time: eight vpmaddubsw/vpmaddwd against
 * ones, two rounds of vphaddd and a blend instead of a horizontal sum per block. */
static inline __attribute__((always_inline)) void x8_q2_k_xpairs(const int8_t *x, int32_t xp[8]) {
    const __m256i one8 = _mm256_set1_epi8(1), one16 = _mm256_set1_epi16(1);
    __m256i u[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++)
        u[j] = _mm256_madd_epi16(_mm256_maddubs_epi16(one8, _mm256_loadu_si256((const __m256i *)(x + 32 * j))),
                                 one16);
    /* Lanes 0-3 of u[j] sum to block j's first half, lanes 4-7 to its second. */
    const __m256i h0 = _mm256_hadd_epi32(_mm256_hadd_epi32(u[0], u[1]), _mm256_hadd_epi32(u[2], u[3]));
    const __m256i h1 = _mm256_hadd_epi32(_mm256_hadd_epi32(u[4], u[5]), _mm256_hadd_epi32(u[6], u[7]));
    const __m256i a = _mm256_permute2x128_si256(h0, h1, 0x20), b = _mm256_permute2x128_si256(h0, h1, 0x31);
    _mm256_storeu_si256((__m256i *)xp, _mm256_blend_epi16(a, _mm256_slli_epi32(b, 16), 0xaa));
}

/* One block's d·isq - dmin·ism per row lane for the activations x (xpair: their Σ_16 x pair). */
static inline __attribute__((always_inline)) __m256 x8_q2_k_block(const __m256i V[8], __m256i sa, __m256i sb,
                                                                  __m256i mab, __m256 d8, __m256 dmin8,
                                                                  const int8_t *x, int32_t xpair) {
    __m256i pa = _mm256_setzero_si256(), pb = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) {
        int32_t a, b;
        memcpy(&a, x + 4 * v, 4);
        memcpy(&b, x + 16 + 4 * v, 4);
        pa = _mm256_add_epi16(pa, _mm256_maddubs_epi16(V[v], _mm256_set1_epi32(a)));
        pb = _mm256_add_epi16(pb, _mm256_maddubs_epi16(V[v + 4], _mm256_set1_epi32(b)));
    }
    const __m256i isq = _mm256_add_epi32(_mm256_madd_epi16(pa, sa), _mm256_madd_epi16(pb, sb));
    const __m256i ism = _mm256_madd_epi16(mab, _mm256_set1_epi32(xpair));
    return _mm256_fmsub_ps(d8, _mm256_cvtepi32_ps(isq), _mm256_mul_ps(dmin8, _mm256_cvtepi32_ps(ism)));
}

/* Decode of block 4h + l (l constant) for tokens 0..nt-1 (nt = 1: the one-token kernel): the
 * same float operations per token in every caller, so the multi-token results are the
 * one-token kernel's bits. acc[0][t] takes the even blocks, acc[1][t] the odd ones. */
static inline __attribute__((always_inline)) void x8_q2_k_dec(const uint8_t *g, int h, int l, size_t j, __m256 d8,
                                                              __m256 dmin8, size_t nt, const int8_t *const *qs,
                                                              const float *const *d,
                                                              const int32_t xp[X8_MULTI_MAX][8],
                                                              __m256 acc[2][X8_MULTI_MAX], int prefetch) {
    if (prefetch) {
        const char *pf = (const char *)g + X8_Q2_K_BS + 84 * (4 * h + l);
        _mm_prefetch(pf, _MM_HINT_T0);
        _mm_prefetch(pf + 64, _MM_HINT_T0);
    }
    __m256i V[8], sa, sb, mab;
    x8_q2_k_codes(g, h, l, V);
    x8_q2_k_scales(g, (size_t)(4 * h + l), &sa, &sb, &mab);
    for (size_t t = 0; t < nt; t++) {
        const __m256 f = x8_q2_k_block(V, sa, sb, mab, d8, dmin8, qs[t] + 32 * j, xp[t][j % 8]);
        acc[l & 1][t] = _mm256_fmadd_ps(f, _mm256_broadcast_ss(d[t] + j), acc[l & 1][t]);
    }
}

static inline __attribute__((always_inline)) void x8_q2_k_run(size_t n, const void *w, size_t nt,
                                                              const int8_t *const *qs, const float *const *d,
                                                              const int32_t *const *s, float *out, size_t ldo,
                                                              int prefetch) {
    (void)s; /* the Σ_16 x pairs come from the codes themselves */
    const uint8_t *g = (const uint8_t *)w;
    __m256 acc[2][X8_MULTI_MAX];
    int32_t xp[X8_MULTI_MAX][8];
    for (size_t t = 0; t < nt; t++) acc[0][t] = acc[1][t] = _mm256_setzero_ps();
    for (size_t sb = 0; sb < n / 256; sb++, g += X8_Q2_K_BS) {
        const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
        const __m256 dmin8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16)));
        for (size_t t = 0; t < nt; t++) x8_q2_k_xpairs(qs[t] + 256 * sb, xp[t]);
        for (int h = 0; h < 2; h++) {
            const size_t j = 8 * sb + 4 * (size_t)h;
            x8_q2_k_dec(g, h, 0, j, d8, dmin8, nt, qs, d, xp, acc, prefetch);
            x8_q2_k_dec(g, h, 1, j + 1, d8, dmin8, nt, qs, d, xp, acc, prefetch);
            x8_q2_k_dec(g, h, 2, j + 2, d8, dmin8, nt, qs, d, xp, acc, prefetch);
            x8_q2_k_dec(g, h, 3, j + 3, d8, dmin8, nt, qs, d, xp, acc, prefetch);
        }
    }
    for (size_t t = 0; t < nt; t++) _mm256_storeu_ps(out + t * ldo, _mm256_add_ps(acc[0][t], acc[1][t]));
}

void mk_vec_dot_x8_q2_k_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out) {
    x8_q2_k_run(n, w, 1, &qs, &d, &s, out, 8, 1);
}

void mk_vec_dot_x8_q2_k_q8a_multi_avx2(size_t n, const void *w, size_t ntok, const int8_t *const *qs,
                                       const float *const *d, const int32_t *const *s, float *out,
                                       size_t ldo) {
    x8_q2_k_run(n, w, ntok < X8_MULTI_MAX ? ntok : X8_MULTI_MAX, qs, d, s, out, ldo, 0);
}

/* GEMM: block 4h + l (l constant) of one group against the tokens of one slice, the codes and
 * scales unpacked once for up to 64 tokens (xp: the tokens' Σ_16 x pairs of this super-block),
 * each token's block as in the decode kernels (the same integer sums and the same float
 * operations per block; one accumulator per token). */
static inline __attribute__((always_inline)) void x8_q2_k_gemm_block(const uint8_t *g, int h, int l, size_t j,
                                                                     size_t n, size_t nb, size_t t0, size_t tn,
                                                                     const int8_t *qs, const float *d,
                                                                     const int32_t xp[GEMM_TOK][8], __m256 *acc) {
    const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
    const __m256 dmin8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16)));
    __m256i V[8], sa, sb, mab;
    x8_q2_k_codes(g, h, l, V);
    x8_q2_k_scales(g, (size_t)(4 * h + l), &sa, &sb, &mab);
    for (size_t t = 0; t < tn; t++) {
        const size_t tt = t0 + t;
        const __m256 f = x8_q2_k_block(V, sa, sb, mab, d8, dmin8, qs + tt * n + 32 * j, xp[t][j % 8]);
        acc[t] = _mm256_fmadd_ps(f, _mm256_broadcast_ss(d + tt * nb + j), acc[t]);
    }
}

void mk_gemm_x8_q2_k_q8a_avx2(size_t n, size_t ngroups, const void *w, size_t ntok, const int8_t *qs,
                              const float *d, const int32_t *s, float *out, size_t ldo) {
    (void)s; /* the Σ_16 x pairs come from the codes themselves */
    const size_t nb = n / 32;
    __m256 acc[GEMM_TOK];
    int32_t xp[GEMM_TOK][8];
    for (size_t t0 = 0; t0 < ntok; t0 += GEMM_TOK) {
        const size_t tn = ntok - t0 < GEMM_TOK ? ntok - t0 : GEMM_TOK;
        for (size_t gi = 0; gi < ngroups; gi++) {
            const uint8_t *grp = (const uint8_t *)w + gi * (n / 256) * X8_Q2_K_BS;
            for (size_t t = 0; t < tn; t++) acc[t] = _mm256_setzero_ps();
            for (size_t sb = 0; sb < n / 256; sb++) {
                const uint8_t *g = grp + sb * X8_Q2_K_BS;
                for (size_t t = 0; t < tn; t++) x8_q2_k_xpairs(qs + (t0 + t) * n + 256 * sb, xp[t]);
                for (int h = 0; h < 2; h++) {
                    const size_t j = 8 * sb + 4 * (size_t)h;
                    x8_q2_k_gemm_block(g, h, 0, j, n, nb, t0, tn, qs, d, xp, acc);
                    x8_q2_k_gemm_block(g, h, 1, j + 1, n, nb, t0, tn, qs, d, xp, acc);
                    x8_q2_k_gemm_block(g, h, 2, j + 2, n, nb, t0, tn, qs, d, xp, acc);
                    x8_q2_k_gemm_block(g, h, 3, j + 3, n, nb, t0, tn, qs, d, xp, acc);
                }
            }
            for (size_t t = 0; t < tn; t++) _mm256_storeu_ps(out + (t0 + t) * ldo + 8 * gi, acc[t]);
        }
    }
}

/* ---- Q3_K interleaved by eight rows (x8; src/tensor/interleave.rs writes it) ----
 * Per group of 8 rows and per 256-element super-block, 880 bytes (the 8 rows' own 8 × 110):
 *   [0, 16)     the rows' d (f16);
 *   [16, 80)    the low 4 bits of the 6-bit sub-block scales (sc + 32, 0..63), 16 bytes per
 *               block pair p (activation blocks 2p, 2p+1) at 16 + 16p: byte 2r + c = row r's
 *               scale 4p + c (low nibble) and 4p + 2 + c (high nibble);
 *   [80, 112)   their high 2 bits, 16 bytes per half h at 80 + 16h: byte 2r + c, bits 2q, 2q+1
 *               = those of row r's scale 2(4h + q) + c;
 *   [112, 624)  per half h (128 elements) the rows' qs bytes 32h..32h+31 as eight vectors
 *               (v = bytes 4v..4v+3 of each row's chunk) at 112 + 256h;
 *   [624, 880)  the rows' hmask bytes as eight vectors likewise, each byte's bits reordered:
 *               the bit of block j (bit j in the file) at bit {2,3,6,7,0,1,4,5}[j].
 * Activation block j = 4h + q takes bits 2q, 2q+1 of qs chunk h and its hmask bit as bit 2
 * (x8_q3_k_pair: one mask of qs | hmask per two blocks, then a mask or shift per block):
 * unsigned codes 0..7 (the value is code - 4), whose x pairs sum in int16 four at a time per
 * 16-element half, meet the scales in vpmaddwd (exact in int32), and the -4 offset comes off as
 * 4·(sc_a·Σx_a + sc_b·Σx_b) (x8_q6_k_xpair). */
#define X8_Q3_K_BS 880

/* Code vector v of half h as two bytes per element: A = blocks 4h (bits 0..2) and 4h + 2 (bits
 * 4..6), B = blocks 4h + 1 and 4h + 3; the hmask's bit order (hmask bit j at bit
 * {2,3,6,7,0,1,4,5}[j]) puts each block's third bit above its two qs bits by one mask. */
static inline __attribute__((always_inline)) void x8_q3_k_pair(const uint8_t *g, int h, int v, __m256i *a,
                                                               __m256i *b) {
    const __m256i m33 = _mm256_set1_epi8(0x33), m44 = _mm256_set1_epi8(0x44);
    const __m256i l = _mm256_loadu_si256((const __m256i *)(g + 112 + 256 * h + 32 * v));
    const __m256i hb = _mm256_loadu_si256((const __m256i *)(g + 624 + 32 * v));
    *a = _mm256_or_si256(_mm256_and_si256(l, m33), _mm256_and_si256(h ? _mm256_slli_epi16(hb, 2) : hb, m44));
    *b = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l, 2), m33),
                         _mm256_and_si256(h ? _mm256_slli_epi16(hb, 1) : _mm256_srli_epi16(hb, 1), m44));
}

/* Block 4h + q's code (0..7) from its pair vector p (q constant). */
static inline __attribute__((always_inline)) __m256i x8_q3_k_code(__m256i p, int q) {
    return _mm256_and_si256(q < 2 ? p : _mm256_srli_epi16(p, 4), _mm256_set1_epi8(7));
}

/* Block 4h + q's code vectors (h, q constants where this is inlined). */
static inline __attribute__((always_inline)) void x8_q3_k_codes(const uint8_t *g, int h, int q, __m256i V[8]) {
#pragma GCC unroll 8
    for (int v = 0; v < 8; v++) {
        __m256i a, b;
        x8_q3_k_pair(g, h, v, &a, &b);
        V[v] = x8_q3_k_code(q % 2 ? b : a, q);
    }
}

/* Block j = 4h + q's scales (sc - 32) as one int16 pair (sc_2j, sc_2j+1) per row's 32-bit lane:
 * the low nibbles of block pair j/2 and the high bits of half h, each widened to int16 (the
 * same loads for the blocks that share them), then one shift or mask each. */
static inline __attribute__((always_inline)) __m256i x8_q3_k_scales(const uint8_t *g, int j) {
    const __m256i lo16 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(g + 16 + 16 * (j / 2))));
    const __m256i hi16 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(g + 80 + 16 * (j / 4))));
    const int q = j % 4;
    const __m256i lo = j % 2 ? _mm256_srli_epi16(lo16, 4) : _mm256_and_si256(lo16, _mm256_set1_epi16(15));
    const __m256i hs = q == 0 ? _mm256_slli_epi16(hi16, 4)
                     : q == 1 ? _mm256_slli_epi16(hi16, 2)
                     : q == 2 ? hi16
                              : _mm256_srli_epi16(hi16, 2);
    return _mm256_sub_epi16(_mm256_or_si256(lo, _mm256_and_si256(hs, _mm256_set1_epi16(0x30))),
                            _mm256_set1_epi16(32));
}

/* One block's int32 lanes Σ (q - 4)·x·sc; sab = the rows' (sc_a, sc_b) int16 pairs. */
static inline __attribute__((always_inline)) __m256i x8_q3_k_isum(const __m256i V[8], __m256i sab, const int8_t *x,
                                                                  int32_t s) {
    const __m256i dup_a = _mm256_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13, 0, 1, 0, 1, 4, 5, 4, 5,
                                           8, 9, 8, 9, 12, 13, 12, 13);
    const __m256i dup_b = _mm256_setr_epi8(2, 3, 2, 3, 6, 7, 6, 7, 10, 11, 10, 11, 14, 15, 14, 15, 2, 3, 2, 3, 6, 7,
                                           6, 7, 10, 11, 10, 11, 14, 15, 14, 15);
    const __m256i sa = _mm256_shuffle_epi8(sab, dup_a), sb = _mm256_shuffle_epi8(sab, dup_b);
    __m256i p[2];
#pragma GCC unroll 2
    for (int k = 0; k < 2; k++) {
        int32_t a[4];
        memcpy(a, x + 16 * k, 16);
        p[k] = _mm256_add_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(V[4 * k], _mm256_set1_epi32(a[0])),
                                                 _mm256_maddubs_epi16(V[4 * k + 1], _mm256_set1_epi32(a[1]))),
                                _mm256_add_epi16(_mm256_maddubs_epi16(V[4 * k + 2], _mm256_set1_epi32(a[2])),
                                                 _mm256_maddubs_epi16(V[4 * k + 3], _mm256_set1_epi32(a[3]))));
    }
    const __m256i sum = _mm256_add_epi32(_mm256_madd_epi16(p[0], sa), _mm256_madd_epi16(p[1], sb));
    const __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(sab, _mm256_set1_epi32(x8_q6_k_xpair(x, s))), 2);
    return _mm256_sub_epi32(sum, corr);
}

/* Decode of block 4h + q (h, q constant) for tokens 0..nt-1, as x8_q6_k_dec: the same float
 * operations per token in every caller (multi-token results are the one-token kernel's bits). */
static inline __attribute__((always_inline)) void x8_q3_k_dec(const uint8_t *g, const __m256i P[2][8], int h,
                                                              int q, size_t j, __m256 d8,
                                                              size_t nt, const int8_t *const *qs,
                                                              const float *const *d, const int32_t *const *s,
                                                              __m256 acc[2][X8_MULTI_MAX], int prefetch) {
    if (prefetch) {
        const char *pf = (const char *)g + X8_Q3_K_BS + 110 * (4 * h + q);
        _mm_prefetch(pf, _MM_HINT_T0);
        _mm_prefetch(pf + 64, _MM_HINT_T0);
    }
    __m256i V[8];
#pragma GCC unroll 8
    for (int v = 0; v < 8; v++) V[v] = x8_q3_k_code(P[q % 2][v], q);
    const __m256i sab = x8_q3_k_scales(g, 4 * h + q);
    for (size_t t = 0; t < nt; t++) {
        const __m256i i32 = x8_q3_k_isum(V, sab, qs[t] + 32 * j, s[t][j]);
        const __m256 f = _mm256_mul_ps(d8, _mm256_broadcast_ss(d[t] + j));
        acc[q & 1][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), f, acc[q & 1][t]);
    }
}

static inline __attribute__((always_inline)) void x8_q3_k_run(size_t n, const void *w, size_t nt,
                                                              const int8_t *const *qs, const float *const *d,
                                                              const int32_t *const *s, float *out, size_t ldo,
                                                              int prefetch) {
    const uint8_t *g = (const uint8_t *)w;
    __m256 acc[2][X8_MULTI_MAX];
    for (size_t t = 0; t < nt; t++) acc[0][t] = acc[1][t] = _mm256_setzero_ps();
    for (size_t sb = 0; sb < n / 256; sb++, g += X8_Q3_K_BS) {
        const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
        __m256i P[2][8]; /* one half's pair vectors, unpacked once for its four blocks */
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++) x8_q3_k_pair(g, 0, v, &P[0][v], &P[1][v]);
        x8_q3_k_dec(g, P, 0, 0, 8 * sb, d8, nt, qs, d, s, acc, prefetch);
        x8_q3_k_dec(g, P, 0, 1, 8 * sb + 1, d8, nt, qs, d, s, acc, prefetch);
        x8_q3_k_dec(g, P, 0, 2, 8 * sb + 2, d8, nt, qs, d, s, acc, prefetch);
        x8_q3_k_dec(g, P, 0, 3, 8 * sb + 3, d8, nt, qs, d, s, acc, prefetch);
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++) x8_q3_k_pair(g, 1, v, &P[0][v], &P[1][v]);
        x8_q3_k_dec(g, P, 1, 0, 8 * sb + 4, d8, nt, qs, d, s, acc, prefetch);
        x8_q3_k_dec(g, P, 1, 1, 8 * sb + 5, d8, nt, qs, d, s, acc, prefetch);
        x8_q3_k_dec(g, P, 1, 2, 8 * sb + 6, d8, nt, qs, d, s, acc, prefetch);
        x8_q3_k_dec(g, P, 1, 3, 8 * sb + 7, d8, nt, qs, d, s, acc, prefetch);
    }
    for (size_t t = 0; t < nt; t++) _mm256_storeu_ps(out + t * ldo, _mm256_add_ps(acc[0][t], acc[1][t]));
}

void mk_vec_dot_x8_q3_k_q8a_avx2(size_t n, const void *w, const int8_t *qs, const float *d,
                                 const int32_t *s, float *out) {
    x8_q3_k_run(n, w, 1, &qs, &d, &s, out, 8, 1);
}

void mk_vec_dot_x8_q3_k_q8a_multi_avx2(size_t n, const void *w, size_t ntok, const int8_t *const *qs,
                                       const float *const *d, const int32_t *const *s, float *out,
                                       size_t ldo) {
    x8_q3_k_run(n, w, ntok < X8_MULTI_MAX ? ntok : X8_MULTI_MAX, qs, d, s, out, ldo, 0);
}

/* GEMM: block 4h + q (constants) of one group against the tokens of one slice; as Q6_K's, the
 * codes unpacked once for the slice go in as |q - 4| with the signs moved to x (vpsignb per
 * token): four pairs (≤ 2·4·128) per 16-element half in int16, one vpmaddwd per scale. */
static inline __attribute__((always_inline)) void x8_q3_k_gemm_block(const uint8_t *g, int h, int q, size_t j,
                                                                     size_t n, size_t nb, size_t t0, size_t tn,
                                                                     const int8_t *qs, const float *d, __m256 *acc) {
    const __m256i dup_a = _mm256_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13, 0, 1, 0, 1, 4, 5, 4, 5,
                                           8, 9, 8, 9, 12, 13, 12, 13);
    const __m256i dup_b = _mm256_setr_epi8(2, 3, 2, 3, 6, 7, 6, 7, 10, 11, 10, 11, 14, 15, 14, 15, 2, 3, 2, 3, 6, 7,
                                           6, 7, 10, 11, 10, 11, 14, 15, 14, 15);
    const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g));
    __m256i V[8], A[8];
    x8_q3_k_codes(g, h, q, V);
#pragma GCC unroll 8
    for (int v = 0; v < 8; v++) {
        V[v] = _mm256_sub_epi8(V[v], _mm256_set1_epi8(4));
        A[v] = _mm256_sign_epi8(V[v], V[v]);
    }
    const __m256i sab = x8_q3_k_scales(g, 4 * h + q);
    const __m256i sa = _mm256_shuffle_epi8(sab, dup_a), sb = _mm256_shuffle_epi8(sab, dup_b);
    for (size_t t = 0; t < tn; t++) {
        const size_t tt = t0 + t;
        const int8_t *x = qs + tt * n + 32 * j;
        __m256i p0 = _mm256_setzero_si256(), p1 = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
            int32_t a, b;
            memcpy(&a, x + 4 * v, 4);
            memcpy(&b, x + 16 + 4 * v, 4);
            p0 = _mm256_add_epi16(p0, _mm256_maddubs_epi16(A[v], _mm256_sign_epi8(_mm256_set1_epi32(a), V[v])));
            p1 = _mm256_add_epi16(p1,
                                  _mm256_maddubs_epi16(A[v + 4], _mm256_sign_epi8(_mm256_set1_epi32(b), V[v + 4])));
        }
        const __m256i i32 = _mm256_add_epi32(_mm256_madd_epi16(p0, sa), _mm256_madd_epi16(p1, sb));
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), _mm256_mul_ps(d8, _mm256_broadcast_ss(d + tt * nb + j)),
                                 acc[t]);
    }
}

void mk_gemm_x8_q3_k_q8a_avx2(size_t n, size_t ngroups, const void *w, size_t ntok, const int8_t *qs,
                              const float *d, const int32_t *s, float *out, size_t ldo) {
    (void)s;
    const size_t nb = n / 32;
    __m256 acc[GEMM_TOK];
    for (size_t t0 = 0; t0 < ntok; t0 += GEMM_TOK) {
        const size_t tn = ntok - t0 < GEMM_TOK ? ntok - t0 : GEMM_TOK;
        for (size_t gi = 0; gi < ngroups; gi++) {
            const uint8_t *grp = (const uint8_t *)w + gi * (n / 256) * X8_Q3_K_BS;
            for (size_t t = 0; t < tn; t++) acc[t] = _mm256_setzero_ps();
            for (size_t sb = 0; sb < n / 256; sb++) {
                const uint8_t *g = grp + sb * X8_Q3_K_BS;
                const size_t j = 8 * sb;
                x8_q3_k_gemm_block(g, 0, 0, j, n, nb, t0, tn, qs, d, acc);
                x8_q3_k_gemm_block(g, 0, 1, j + 1, n, nb, t0, tn, qs, d, acc);
                x8_q3_k_gemm_block(g, 0, 2, j + 2, n, nb, t0, tn, qs, d, acc);
                x8_q3_k_gemm_block(g, 0, 3, j + 3, n, nb, t0, tn, qs, d, acc);
                x8_q3_k_gemm_block(g, 1, 0, j + 4, n, nb, t0, tn, qs, d, acc);
                x8_q3_k_gemm_block(g, 1, 1, j + 5, n, nb, t0, tn, qs, d, acc);
                x8_q3_k_gemm_block(g, 1, 2, j + 6, n, nb, t0, tn, qs, d, acc);
                x8_q3_k_gemm_block(g, 1, 3, j + 7, n, nb, t0, tn, qs, d, acc);
            }
            for (size_t t = 0; t < tn; t++) _mm256_storeu_ps(out + (t0 + t) * ldo + 8 * gi, acc[t]);
        }
    }
}
