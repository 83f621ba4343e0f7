/* Every ISA kernel of this architecture against the generic one, as a standalone C program:
 * tools/test.sh runs it natively on x86-64 and, cross-compiled with aarch64-linux-gnu-gcc,
 * under qemu-aarch64 for the NEON kernels. Random rows of 1..40 blocks (odd counts hit the
 * tails), scales from 1e-6 to 3e4, Q8_0 rows holding -128. The integer block sums are exact,
 * so results may differ only by float summation order: |a - b| ≤ 1e-5 · Σ|w·x|.
 * K-quants (Q4_K, Q5_K, Q6_K): random super-blocks (every scale, min and code bit pattern,
 * Q6_K scales including -128) of 1..12 super-blocks at the same scales; the bound uses the
 * magnitude of the terms the kernels add (|d·sc·q| + |dmin·m| per element for Q4_K/Q5_K,
 * |d·sc|·64 for Q6_K, whose kernels may sum q·x and 32·x separately). Q2_K and Q3_K the same
 * way (test_low_k: terms |d·sc|·3 + |dmin·m| and |d·sc|·8; four-row AVX-512 kernels too).
 * Q4_1, Q5_0, Q5_1, IQ4_NL, IQ4_XS likewise (test_legacy: random blocks, terms |f|·48 + |m|
 * for the legacy types, |f|·127 for IQ4 with f = d or d·(ls-32)).
 * Prints "N passed, M failed". */
#define _DEFAULT_SOURCE /* mmap, MAP_ANONYMOUS (guard pages) */
#include "moela_kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef float (*dot_fn)(size_t, const void *, const int8_t *, const float *, const int32_t *);
struct kernel {
    const char *name;
    dot_fn q8_0, q4_0, q4_k, q5_k, q6_k;
    int available;
};

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static uint16_t f32_to_f16_bits(float f) {
    /* Round-to-nearest conversion good enough for test scales (normal range only). */
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    int32_t exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
    uint32_t man = x & 0x7fffffu;
    if (exp <= 0) return (uint16_t)sign;
    if (exp >= 31) return (uint16_t)(sign | 0x7bff);
    uint32_t h = sign | ((uint32_t)exp << 10) | (man >> 13);
    if (man & 0x1000u) h++;
    return (uint16_t)h;
}

static void make_rows(size_t n, float scale, uint8_t *q8, uint8_t *q4) {
    for (size_t b = 0; b < n / 32; b++) {
        float v[32], amax = 0.0f;
        for (int j = 0; j < 32; j++) {
            v[j] = frand() * scale;
            if (fabsf(v[j]) > amax) amax = fabsf(v[j]);
        }
        uint16_t d8 = f32_to_f16_bits(amax / 127.0f), d4 = f32_to_f16_bits(-amax / 8.0f);
        memcpy(q8 + 34 * b, &d8, 2);
        memcpy(q4 + 18 * b, &d4, 2);
        for (int j = 0; j < 32; j++) {
            long q = lroundf(amax > 0 ? v[j] / amax * 127.0f : 0.0f);
            q8[34 * b + 2 + j] = (uint8_t)(int8_t)q;
        }
        if (b == 0) q8[2] = 0x80; /* -128, the extreme a file may hold */
        for (int j = 0; j < 16; j++)
            q4[18 * b + 2 + j] = (uint8_t)((rng >> (j % 60)) & 0xff);
        frand();
    }
}

/* A row of `sbs` random K-quant super-blocks of type t (0 Q4_K, 1 Q5_K, 2 Q6_K): random bytes
 * everywhere except the f16 super-scales, which follow `scale`. wm[e] gets the magnitude of
 * element e's terms (see the header comment). */
static void make_k_row(int t, size_t sbs, float scale, uint8_t *row, float *wm) {
    const size_t bb = t == 0 ? 144 : t == 1 ? 176 : 210;
    for (size_t sb = 0; sb < sbs; sb++) {
        uint8_t *b = row + bb * sb;
        for (size_t i = 0; i < bb; i++) {
            frand();
            b[i] = (uint8_t)(rng >> 24);
        }
        uint16_t d = f32_to_f16_bits(frand() * scale / 63.0f), dm = f32_to_f16_bits(frand() * scale / 63.0f);
        float df = mk_f16_to_f32(d), dmf = mk_f16_to_f32(dm);
        float *w = wm + 256 * sb;
        if (t == 2) {
            memcpy(b + 208, &d, 2);
            if (sb == 0) b[192] = 0x80; /* scale -128 */
            for (int e = 0; e < 256; e++) w[e] = fabsf(df * (float)(int8_t)b[192 + e / 16]) * 64.0f;
        } else {
            memcpy(b, &d, 2);
            memcpy(b + 2, &dm, 2);
            const uint8_t *sc = b + 4;
            for (int j = 0; j < 8; j++) {
                int s6 = j < 4 ? sc[j] & 63 : (sc[j + 4] & 0x0f) | ((sc[j - 4] >> 6) << 4);
                int m6 = j < 4 ? sc[j + 4] & 63 : (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4);
                for (int l = 0; l < 32; l++) w[32 * j + l] = fabsf(df) * (float)s6 * 31.0f + fabsf(dmf) * (float)m6;
            }
        }
    }
}

#if defined(__x86_64__)
/* The grouped-activation (q8g) Q4_0 kernels against the generic q8a one: one row and four
 * rows, block counts that give whole groups, partial trailing groups and none. */
static void test_q8g(int *passed, int *failed) {
    if (!(__builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512vnni") &&
          __builtin_cpu_supports("avx512bw"))) {
        printf("kernel avx512vbmi: not on this CPU\n");
        return;
    }
    const float scales[] = {1.0f, 1e-6f, 3e4f, 0.0f};
    for (size_t blocks = 1; blocks <= 70; blocks++) {
        size_t n = 32 * blocks;
        float *x = malloc(4 * n * sizeof *x), *d = malloc(4 * blocks * sizeof *d);
        float *gd = malloc(4 * n / 8 * sizeof *gd);
        int8_t *qs = malloc(4 * n), *gqs = malloc(4 * n);
        int32_t *s = malloc(4 * blocks * sizeof *s), *gs = malloc(4 * n / 8 * sizeof *gs);
        int8_t *tqs = malloc(4 * n);
        float *td = malloc(4 * blocks * sizeof *td);
        int32_t *ts = malloc(4 * blocks * sizeof *ts);
        uint8_t *q8 = malloc(34 * blocks), *q4 = malloc(18 * blocks);
        for (int si = 0; si < 4; si++) {
            for (size_t i = 0; i < 4 * n; i++) x[i] = frand() * (scales[si] > 0 ? scales[si] : 1.0f);
            make_rows(n, scales[si], q8, q4);
            for (int r = 0; r < 4; r++) {
                mk_quantize_row_q8a_generic(n, x + r * n, qs + r * n, d + r * blocks, s + r * blocks);
                mk_group_q8a_generic(n, qs + r * n, d + r * blocks, s + r * blocks, gqs + r * n,
                                     gd + r * n / 8, gs + r * n / 8);
                mk_tile_q8a_generic(n, qs + r * n, d + r * blocks, s + r * blocks, tqs + r * n,
                                    td + r * blocks, ts + r * blocks);
            }
            struct mk_q8g g = {qs, d, s, gqs, gd, gs, tqs, td, ts};
            float four[4];
            mk_vec_dot4_q4_0_q8g_avx512vbmi(n, q4, &g, four);
            for (int r = 0; r < 4; r++) {
                const int8_t *q = qs + r * n;
                const float *dr = d + r * blocks;
                float mag = 0;
                for (size_t b = 0; b < blocks; b++) {
                    float dw = mk_f16_to_f32((uint16_t)(q4[18 * b] | q4[18 * b + 1] << 8));
                    for (int j = 0; j < 32; j++) mag += fabsf(dw * 8.0f * dr[b] * q[32 * b + j]) * 2.0f;
                }
                float ref = mk_vec_dot_q4_0_q8a_generic(n, q4, q, dr, s + r * blocks);
                struct mk_q8g gr = {q, dr, s + r * blocks, gqs + r * n, gd + r * n / 8, gs + r * n / 8,
                                    tqs + r * n, td + r * blocks, ts + r * blocks};
                float one = mk_vec_dot_q4_0_q8g_avx512vbmi(n, q4, &gr);
                int ok1 = fabsf(one - ref) <= 1e-5f * mag + 1e-30f;
                int ok4 = fabsf(four[r] - ref) <= 1e-5f * mag + 1e-30f;
                *passed += ok1 + ok4;
                *failed += !ok1 + !ok4;
                if (!ok1) printf("FAIL avx512vbmi q4_0 q8g n=%zu scale=%g: %g vs %g\n", n, scales[si], one, ref);
                if (!ok4) printf("FAIL avx512vbmi dot4 q4_0 q8g n=%zu row %d scale=%g: %g vs %g\n", n, r, scales[si], four[r], ref);
            }
        }
        free(x), free(d), free(gd), free(qs), free(gqs), free(s), free(gs), free(q8), free(q4);
        free(tqs), free(td), free(ts);
    }
    printf("kernel avx512vbmi: tested\n");
}

/* The Q4_0 GEMM (two weight rows × all tokens) against the generic GEMM: row counts that are
 * odd and even, token counts around the 64-token pass, block counts with whole tiles, tile +
 * group tails and partial groups. Bound as for the one-row kernels. */
static void test_gemm_q8g(int *passed, int *failed) {
    if (!(__builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512vnni") &&
          __builtin_cpu_supports("avx512bw")))
        return;
    const size_t block_counts[] = {1, 3, 4, 5, 8, 16, 17, 20, 24, 44, 45, 64};
    const size_t tok_counts[] = {4, 5, 63, 64, 65, 130};
    const size_t row_counts[] = {1, 2, 3, 6};
    const float scales[] = {1.0f, 1e-6f, 3e4f};
    for (size_t bi = 0; bi < sizeof block_counts / sizeof *block_counts; bi++) {
        const size_t blocks = block_counts[bi], n = 32 * blocks, maxt = 130, maxr = 6;
        float *x = malloc(maxt * n * sizeof *x), *d = malloc(maxt * blocks * sizeof *d);
        float *gd = malloc(maxt * n / 8 * sizeof *gd), *td = malloc(maxt * blocks * sizeof *td);
        int8_t *qs = malloc(maxt * n), *gqs = malloc(maxt * n), *tqs = malloc(maxt * n);
        int32_t *s = malloc(maxt * blocks * sizeof *s), *gs = malloc(maxt * n / 8 * sizeof *gs);
        int32_t *ts = malloc(maxt * blocks * sizeof *ts);
        uint8_t *q8 = malloc(maxr * 34 * blocks), *q4 = malloc(maxr * 18 * blocks);
        uint8_t *qk = malloc(maxr * 27 * blocks); /* Q4_K / Q5_K / Q6_K: 144 / 176 / 210 bytes per 8 blocks */
        float *wm = malloc(maxr * n * sizeof *wm);
        float *got = malloc(maxt * (maxr + 1) * sizeof *got), *want = malloc(maxt * (maxr + 1) * sizeof *want);
        for (int si = 0; si < 3; si++) {
            for (size_t i = 0; i < maxt * n; i++) x[i] = frand() * scales[si];
            for (size_t r = 0; r < maxr; r++)
                make_rows(n, scales[si], q8 + r * 34 * blocks, q4 + r * 18 * blocks);

            for (size_t r = 0; r < maxr; r++) /* -128 values in the Q8_0 rows */
                if (blocks > 1) q8[r * 34 * blocks + 34 + 2 + r] = 0x80;
            for (size_t t = 0; t < maxt; t++) {
                mk_quantize_row_q8a_generic(n, x + t * n, qs + t * n, d + t * blocks, s + t * blocks);
                mk_group_q8a_generic(n, qs + t * n, d + t * blocks, s + t * blocks, gqs + t * n,
                                     gd + t * n / 8, gs + t * n / 8);
                mk_tile_q8a_generic(n, qs + t * n, d + t * blocks, s + t * blocks, tqs + t * n,
                                    td + t * blocks, ts + t * blocks);
            }
            struct mk_q8g g = {qs, d, s, gqs, gd, gs, tqs, td, ts};
            for (int q8w = 0; q8w < 5; q8w++) /* Q4_0, Q8_0, Q4_K, Q5_K, Q6_K */
            if (q8w < 2 || blocks % 8 == 0)
            for (size_t ti = 0; ti < sizeof tok_counts / sizeof *tok_counts; ti++) {
                for (size_t ri = 0; ri < sizeof row_counts / sizeof *row_counts; ri++) {
                    const size_t ntok = tok_counts[ti], nrows = row_counts[ri], ldo = nrows + 1;
                    for (size_t i = 0; i < maxt * (maxr + 1); i++) got[i] = want[i] = -7.0f;
                    if (q8w >= 2) {
                        const size_t kb = q8w == 2 ? 144 : q8w == 3 ? 176 : 210; /* per 8 blocks */
                        if (ti == 0 && ri == 0)
                            for (size_t r = 0; r < maxr; r++)
                                make_k_row(q8w - 2, blocks / 8, scales[si], qk + r * kb * blocks / 8, wm + r * n);
                        if (q8w == 4) {
                            mk_gemm_q6_k_q8g_avx512vbmi(n, nrows, qk, kb * blocks / 8, ntok, &g, got, ldo);
                            mk_gemm_q6_k_q8a_generic(n, nrows, qk, kb * blocks / 8, ntok, qs, d, s, want, ldo);
                        } else if (q8w == 2) {
                            mk_gemm_q4_k_q8g_avx512vbmi(n, nrows, qk, kb * blocks / 8, ntok, &g, got, ldo);
                            mk_gemm_q4_k_q8a_generic(n, nrows, qk, kb * blocks / 8, ntok, qs, d, s, want, ldo);
                        } else {
                            mk_gemm_q5_k_q8g_avx512vbmi(n, nrows, qk, kb * blocks / 8, ntok, &g, got, ldo);
                            mk_gemm_q5_k_q8a_generic(n, nrows, qk, kb * blocks / 8, ntok, qs, d, s, want, ldo);
                        }
                    } else if (q8w) {
                        mk_gemm_q8_0_q8g_avx512vbmi(n, nrows, q8, 34 * blocks, ntok, &g, got, ldo);
                        mk_gemm_q8_0_q8a_generic(n, nrows, q8, 34 * blocks, ntok, qs, d, s, want, ldo);
                    } else {
                        mk_gemm_q4_0_q8g_avx512vbmi(n, nrows, q4, 18 * blocks, ntok, &g, got, ldo);
                        mk_gemm_q4_0_q8a_generic(n, nrows, q4, 18 * blocks, ntok, qs, d, s, want, ldo);
                    }
                    int bad = 0;
                    for (size_t t = 0; t < ntok; t++) {
                        for (size_t r = 0; r < ldo; r++) {
                            size_t o = t * ldo + r;
                            if (r == nrows) { /* padding column: untouched */
                                bad += got[o] != -7.0f;
                                continue;
                            }
                            const size_t bb = q8w == 1 ? 34 : 18;
                            const uint8_t *w = (q8w == 1 ? q8 : q4) + r * bb * blocks;
                            float mag = 0;
                            if (q8w >= 2)
                                for (size_t e = 0; e < n; e++)
                                    mag += wm[r * n + e] * fabsf(d[t * blocks + e / 32] * qs[t * n + e]);
                            for (size_t b = 0; q8w < 2 && b < blocks; b++) {
                                float dw = mk_f16_to_f32((uint16_t)(w[bb * b] | w[bb * b + 1] << 8));
                                for (int j = 0; j < 32; j++)
                                    mag += fabsf(dw * (q8w == 1 ? 128.0f : 8.0f) * d[t * blocks + b] * qs[t * n + 32 * b + j]) * 2.0f;
                            }
                            if (!(fabsf(got[o] - want[o]) <= 1e-5f * mag + 1e-30f)) {
                                if (!bad) printf("FAIL avx512vbmi gemm %s n=%zu rows=%zu tok=%zu (%zu,%zu): %g vs %g\n",
                                                 q8w == 4 ? "q6_k" : q8w == 3 ? "q5_k" : q8w == 2 ? "q4_k" : q8w ? "q8_0" : "q4_0", n, nrows, ntok, r, t, got[o], want[o]);
                                bad++;
                            }
                        }
                    }
                    *passed += !bad;
                    *failed += !!bad;
                }
            }
        }
        free(x), free(d), free(gd), free(td), free(qs), free(gqs), free(tqs), free(s), free(gs);
        free(ts), free(q8), free(q4), free(got), free(want), free(qk), free(wm);
    }
    printf("kernel avx512vbmi gemm: tested\n");
}
#endif

/* MLA decode attention kernels against the generic ones: head counts that fill and miss the
 * head tiles, rows and dims with vector tails, f32 and f16 caches, and the shapes the model
 * passes (4 heads of the v3 fixture, a full 256-position chunk: several row blocks of the
 * sums). Bound: 1e-5 · Σ|terms|. */
typedef void (*scores32_fn)(size_t, size_t, const float *, size_t, const float *, float, float *, size_t);
typedef void (*scores16_fn)(size_t, size_t, const float *, size_t, const uint16_t *, float, float *, size_t);
typedef void (*accum32_fn)(size_t, size_t, size_t, const float *, size_t, size_t, const float *, float *);
typedef void (*accum16_fn)(size_t, size_t, size_t, const float *, size_t, size_t, const uint16_t *, float *);
struct mla_kernel {
    const char *name;
    scores32_fn s32;
    scores16_fn s16;
    accum32_fn a32;
    accum16_fn a16;
    int available;
};

static void test_mla(const struct mla_kernel *ks, int nk, int *passed, int *failed) {
    const size_t nqs[] = {1, 3, 4, 8, 9, 16}, rows[] = {48, 96, 100, 576}, nrs[] = {1, 5, 37, 130, 256};
    for (size_t a = 0; a < 6; a++)
        for (size_t b = 0; b < 4; b++)
            for (size_t e = 0; e < 5; e++) {
                size_t nq = nqs[a], row = rows[b], nr = nrs[e], dim = row - row / 9;
                float *q = malloc(nq * row * sizeof *q), *c = malloc(nr * row * sizeof *c);
                uint16_t *c16 = malloc(nr * row * sizeof *c16);
                float *p = malloc(nq * (nr + 3) * sizeof *p), *c16f = malloc(nr * row * sizeof *c16f);
                float *ref = malloc(nq * (nr + 3) * sizeof *ref), *got = malloc(nq * (nr + 3) * sizeof *got);
                float *racc = malloc(nq * dim * sizeof *racc), *gacc = malloc(nq * dim * sizeof *gacc);
                for (size_t i = 0; i < nq * row; i++) q[i] = frand();
                for (size_t i = 0; i < nr * row; i++) {
                    c[i] = frand() * 3.0f;
                    c16[i] = f32_to_f16_bits(c[i]);
                    c16f[i] = mk_f16_to_f32(c16[i]);
                }
                for (size_t i = 0; i < nq * (nr + 3); i++) p[i] = frand() * 0.5f + 0.5f;
                for (int k = 0; k < nk; k++) {
                    if (!ks[k].available) continue;
                    for (int half = 0; half < 2; half++) {
                        const float *cf = half ? c16f : c;
                        /* scores */
                        if (half) {
                            mk_mla_scores_f16_generic(nq, row, q, nr, c16, 0.7f, ref, nr + 3);
                            ks[k].s16(nq, row, q, nr, c16, 0.7f, got, nr + 3);
                        } else {
                            mk_mla_scores_f32_generic(nq, row, q, nr, c, 0.7f, ref, nr + 3);
                            ks[k].s32(nq, row, q, nr, c, 0.7f, got, nr + 3);
                        }
                        for (size_t h = 0; h < nq; h++)
                            for (size_t j = 0; j < nr; j++) {
                                float mag = 0;
                                for (size_t d = 0; d < row; d++) mag += fabsf(q[h * row + d] * cf[j * row + d]);
                                float r = ref[h * (nr + 3) + j], g = got[h * (nr + 3) + j];
                                int ok = fabsf(r - g) <= 1e-5f * mag * 0.7f + 1e-30f;
                                *passed += ok;
                                *failed += !ok;
                                if (!ok) printf("FAIL %s mla scores f%d nq=%zu row=%zu nr=%zu h=%zu j=%zu: %g vs %g\n", ks[k].name, half ? 16 : 32, nq, row, nr, h, j, g, r);
                            }
                        /* accum, onto a non-zero start */
                        for (size_t i = 0; i < nq * dim; i++) racc[i] = gacc[i] = (float)(i % 7) - 3.0f;
                        if (half) {
                            mk_mla_accum_f16_generic(nq, dim, row, p, nr + 3, nr, c16, racc);
                            ks[k].a16(nq, dim, row, p, nr + 3, nr, c16, gacc);
                        } else {
                            mk_mla_accum_f32_generic(nq, dim, row, p, nr + 3, nr, c, racc);
                            ks[k].a32(nq, dim, row, p, nr + 3, nr, c, gacc);
                        }
                        for (size_t h = 0; h < nq; h++)
                            for (size_t d = 0; d < dim; d++) {
                                float mag = 3.0f;
                                for (size_t j = 0; j < nr; j++) mag += fabsf(p[h * (nr + 3) + j] * cf[j * row + d]);
                                float r = racc[h * dim + d], g = gacc[h * dim + d];
                                int ok = fabsf(r - g) <= 1e-5f * mag;
                                *passed += ok;
                                *failed += !ok;
                                if (!ok) printf("FAIL %s mla accum f%d nq=%zu dim=%zu nr=%zu h=%zu d=%zu: %g vs %g\n", ks[k].name, half ? 16 : 32, nq, dim, nr, h, d, g, r);
                            }
                    }
                }
                free(q), free(c), free(c16), free(p), free(c16f), free(ref), free(got), free(racc), free(gacc);
            }
    for (int k = 0; k < nk; k++) printf("mla kernels %s: %s\n", ks[k].name, ks[k].available ? "tested" : "not on this CPU");
}


/* Float-weight kernels (F32, F16, BF16; one row and four rows) against the generic ones:
 * every n from 1 to 70 and larger ones with every tail, rows at byte offsets 0..3 (mmap rows
 * need not be aligned), each row and activation block ending right before a PROT_NONE page
 * (a kernel reading past its data crashes), random bit patterns (F16 subnormals, 65504, BF16
 * exponents ±40, zeros) and activation scales 1e-3..3e4. Only the float summation order may
 * differ: |a - b| ≤ 1e-5 · Σ|w·x| (the rounding error of either order is at most about
 * sqrt(n)·2^-24 · Σ|w·x| for such data, below the bound for every n tested). */
typedef float (*fdot_fn)(size_t, const void *, const float *);
typedef void (*fdot4_fn)(size_t, const void *, const float *, float *);
struct float_kernel {
    const char *name;
    fdot_fn dot[3];
    fdot4_fn dot4[3];
    int available;
};

/* The end of `bytes` usable bytes followed by an inaccessible page. */
static uint8_t *guarded_end(size_t bytes) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE), len = (bytes + page - 1) / page * page;
    uint8_t *m = mmap(NULL, len + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED || mprotect(m + len, page, PROT_NONE) != 0) {
        printf("FAIL cannot map guard pages\n");
        exit(1);
    }
    return m + len;
}

static float wval(int t, const uint8_t *p) {
    uint16_t h = (uint16_t)(p[0] | p[1] << 8);
    if (t == 1) return mk_f16_to_f32(h);
    if (t == 2) return mk_bf16_to_f32(h);
    float f;
    memcpy(&f, p, 4);
    return f;
}

static void test_float(const struct float_kernel *ks, int nk, int *passed, int *failed) {
    const char *tname[3] = {"f32", "f16", "bf16"};
    const size_t big[] = {127, 128, 129, 255, 1000, 2048, 4099};
    const float xscales[] = {1.0f, 1e-3f, 3e4f};
    const size_t maxn = 4099;
    uint8_t *wend = guarded_end(maxn * 4 + 3);
    float *xend = (float *)guarded_end(4 * maxn * sizeof(float));
    for (size_t c = 0; c < 70 + sizeof big / sizeof big[0]; c++) {
        size_t n = c < 70 ? c + 1 : big[c - 70];
        float *x = xend - 4 * n;
        for (int t = 0; t < 3; t++) {
            size_t es = t == 0 ? 4 : 2;
            uint8_t *w = wend - n * es, *src = malloc(n * es);
            for (size_t i = 0; i < n; i++) {
                frand();
                uint32_t r = (uint32_t)(rng >> 20);
                if (t == 0) {
                    float f = frand() * (i % 7 == 0 ? 1e3f : 1.0f);
                    memcpy(src + 4 * i, &f, 4);
                } else {
                    uint16_t h;
                    if (t == 1) {
                        h = (uint16_t)(r & 0xffff);
                        if (((h >> 10) & 0x1f) == 0x1f) h = (uint16_t)((h & 0x8000) | 0x7bff); /* 65504 */
                    } else {
                        int e = 127 + (int)(r % 81) - 40;
                        h = (uint16_t)(((r >> 8) & 0x8000) | (uint32_t)e << 7 | ((r >> 16) & 0x7f));
                        if (i % 13 == 5) h = (uint16_t)((r >> 8) & 0x807f); /* zero or subnormal */
                    }
                    memcpy(src + 2 * i, &h, 2);
                }
            }
            for (int si = 0; si < 3; si++) {
                for (size_t i = 0; i < 4 * n; i++) x[i] = frand() * xscales[si];
                /* The row ending at the guard page, then misaligned in the heap. */
                for (int place = 0; place < 2; place++) {
                    uint8_t *row = w;
                    uint8_t *al = NULL;
                    if (place == 1) {
                        al = malloc(n * es + 8);
                        row = al + 1 + (c % 3); /* misaligned by 1..3 bytes */
                    }
                    memcpy(row, src, n * es);
                    float mag[4] = {0, 0, 0, 0}, ref[4], four[4];
                    for (int r = 0; r < 4; r++) {
                        for (size_t i = 0; i < n; i++) mag[r] += fabsf(wval(t, src + es * i) * x[r * n + i]);
                        ref[r] = ks[0].dot[t](n, row, x + r * n);
                    }
                    for (int k = 0; k < nk; k++) {
                        if (!ks[k].available) continue;
                        float one = ks[k].dot[t](n, row, x + 3 * n);
                        ks[k].dot4[t](n, row, x, four);
                        int ok1 = fabsf(one - ref[3]) <= 1e-5f * mag[3] + 1e-30f;
                        *passed += ok1;
                        *failed += !ok1;
                        if (!ok1) printf("FAIL %s dot %s n=%zu place=%d: %g vs %g\n", ks[k].name, tname[t], n, place, one, ref[3]);
                        for (int r = 0; r < 4; r++) {
                            int ok = fabsf(four[r] - ref[r]) <= 1e-5f * mag[r] + 1e-30f;
                            *passed += ok;
                            *failed += !ok;
                            if (!ok) printf("FAIL %s dot4 %s n=%zu place=%d row %d: %g vs %g\n", ks[k].name, tname[t], n, place, r, four[r], ref[r]);
                        }
                    }
                    free(al);
                }
            }
            free(src);
        }
    }
    for (int k = 0; k < nk; k++) printf("float kernels %s: %s\n", ks[k].name, ks[k].available ? "tested" : "not on this CPU");
}


#if defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1 << 13)
#endif
#endif
typedef void (*gemm_q8a_fn)(size_t, size_t, const void *, size_t, size_t, const int8_t *,
                            const float *, const int32_t *, float *, size_t);
/* An ISA's q8a GEMMs (Q8_0, Q4_0: AVX2, i8mm) against the generic GEMMs: row and token counts that fill
 * the 4×4 tiles and leave every tail (1..3 rows or tokens), block counts 1..64, scales 1e-6..3e4,
 * Q8_0 rows holding -128, and an "exact" mode where every scale is 1 and the values are the
 * extremes (-128 weights, ±127 activations; Q4_0 codes 0 and 15): there all float arithmetic is
 * on integers below 2^24, so the results must be equal, which checks the integer sums exactly.
 * Otherwise the bound is that of the one-row kernels (1e-5 · Σ|terms|). The column past nrows
 * (ldo = nrows + 1) must stay untouched. */
static void test_gemm_q8a(const char *name, gemm_q8a_fn gemm_q8_0, gemm_q8a_fn gemm_q4_0, int available,
                          int *passed, int *failed) {
    if (!available) {
        printf("kernel %s gemm: not on this CPU\n", name);
        return;
    }
    const size_t block_counts[] = {1, 2, 3, 5, 8, 17, 64};
    const size_t tok_counts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 63, 64, 65};
    const size_t row_counts[] = {1, 2, 3, 4, 5, 6, 7, 9};
    const float scales[] = {1.0f, 1e-6f, 3e4f, 0.0f}; /* 0: the exact mode */
    const size_t maxt = 65, maxr = 9;
    for (size_t bi = 0; bi < sizeof block_counts / sizeof *block_counts; bi++) {
        const size_t blocks = block_counts[bi], n = 32 * blocks;
        float *x = malloc(maxt * n * sizeof *x), *d = malloc(maxt * blocks * sizeof *d);
        int8_t *qs = malloc(maxt * n);
        int32_t *s = malloc(maxt * blocks * sizeof *s);
        uint8_t *q8 = malloc(maxr * 34 * blocks), *q4 = malloc(maxr * 18 * blocks);
        float *got = malloc(maxt * (maxr + 1) * sizeof *got), *want = malloc(maxt * (maxr + 1) * sizeof *want);
        for (int si = 0; si < 4; si++) {
            const int exact = scales[si] == 0.0f;
            if (exact && blocks > 17) continue; /* sums must stay below 2^24 */
            for (size_t r = 0; r < maxr; r++) make_rows(n, exact ? 1.0f : scales[si], q8 + r * 34 * blocks, q4 + r * 18 * blocks);
            for (size_t t = 0; t < maxt; t++) {
                for (size_t i = 0; i < n; i++) x[t * n + i] = frand() * (exact ? 1.0f : scales[si]);
                mk_quantize_row_q8a_generic(n, x + t * n, qs + t * n, d + t * blocks, s + t * blocks);
            }
            if (exact) {
                const uint16_t one = 0x3c00;
                for (size_t r = 0; r < maxr; r++)
                    for (size_t b = 0; b < blocks; b++) {
                        uint8_t *b8 = q8 + (r * blocks + b) * 34, *b4 = q4 + (r * blocks + b) * 18;
                        memcpy(b8, &one, 2);
                        memcpy(b4, &one, 2);
                        memset(b8 + 2, 0x80, 32);
                        for (int j = 0; j < 16; j++) b4[2 + j] = (uint8_t)((r + b + j) % 3 ? 0xf0 : 0x0f);
                    }
                for (size_t t = 0; t < maxt; t++) {
                    for (size_t b = 0; b < blocks; b++) {
                        int32_t sum = 0;
                        for (int j = 0; j < 32; j++) {
                            int8_t v = (t + b + (size_t)j) % 4 ? 127 : -127;
                            qs[t * n + 32 * b + j] = v;
                            sum += v;
                        }
                        d[t * blocks + b] = 1.0f;
                        s[t * blocks + b] = sum;
                    }
                }
            }
            for (int ty = 0; ty < 2; ty++) {
                const uint8_t *wq = ty == 0 ? q8 : q4;
                const size_t bb = ty == 0 ? 34 : 18;
                for (size_t ti = 0; ti < sizeof tok_counts / sizeof *tok_counts; ti++)
                    for (size_t ri = 0; ri < sizeof row_counts / sizeof *row_counts; ri++) {
                        const size_t ntok = tok_counts[ti], nrows = row_counts[ri], ldo = nrows + 1;
                        for (size_t i = 0; i < maxt * (maxr + 1); i++) got[i] = want[i] = -7.0f;
                        if (ty == 0) {
                            gemm_q8_0(n, nrows, wq, bb * blocks, ntok, qs, d, s, got, ldo);
                            mk_gemm_q8_0_q8a_generic(n, nrows, wq, bb * blocks, ntok, qs, d, s, want, ldo);
                        } else {
                            gemm_q4_0(n, nrows, wq, bb * blocks, ntok, qs, d, s, got, ldo);
                            mk_gemm_q4_0_q8a_generic(n, nrows, wq, bb * blocks, ntok, qs, d, s, want, ldo);
                        }
                        int bad = 0;
                        for (size_t t = 0; t < ntok; t++)
                            for (size_t r = 0; r < ldo; r++) {
                                size_t o = t * ldo + r;
                                if (r == nrows) {
                                    bad += got[o] != -7.0f;
                                    continue;
                                }
                                const uint8_t *w = wq + r * bb * blocks;
                                float mag = 0;
                                for (size_t b = 0; b < blocks; b++) {
                                    const uint8_t *blk = w + b * bb;
                                    float dw = mk_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8));
                                    for (int j = 0; j < 32; j++) {
                                        float wv = ty == 0 ? (float)(int8_t)blk[2 + j] : 8.0f;
                                        mag += fabsf(dw * wv * d[t * blocks + b] * qs[t * n + 32 * b + j]);
                                    }
                                }
                                int ok = exact ? got[o] == want[o] : fabsf(got[o] - want[o]) <= 1e-5f * mag + 1e-30f;
                                if (!ok) {
                                    if (!bad)
                                        printf("FAIL %s gemm %s n=%zu rows=%zu tok=%zu (%zu,%zu) scale=%g: %g vs %g\n",
                                               name, ty ? "q4_0" : "q8_0", n, nrows, ntok, r, t, scales[si], got[o], want[o]);
                                    bad++;
                                }
                            }
                        *passed += !bad;
                        *failed += !!bad;
                    }
            }
        }
        free(x), free(d), free(qs), free(s), free(q8), free(q4), free(got), free(want);
    }
    printf("kernel %s gemm: tested\n", name);
}

/* An ISA's K-quant q8a GEMMs (Q4_K, Q5_K, Q6_K: AVX2) against the generic GEMMs: random raw
 * super-blocks (make_k_row: every scale, min and code bit pattern, Q6_K scale -128), 1..5
 * super-blocks, row counts 1..9 (odd rows pair with themselves), token counts around the
 * 64-token slice, scales 1e-6..3e4. Bound as for the one-row kernels (1e-5 · Σ|terms|, terms
 * from make_k_row); the column past nrows (ldo = nrows + 1) must stay untouched. */
__attribute__((unused)) static void test_kgemm_q8a(const char *name, const gemm_q8a_fn gemm[3], int available, int *passed,
                           int *failed) {
    if (!available) {
        printf("kernel %s k-quant gemm: not on this CPU\n", name);
        return;
    }
    static const char *tname[3] = {"q4_k", "q5_k", "q6_k"};
    static const gemm_q8a_fn ref[3] = {mk_gemm_q4_k_q8a_generic, mk_gemm_q5_k_q8a_generic,
                                       mk_gemm_q6_k_q8a_generic};
    const size_t tok_counts[] = {1, 2, 3, 4, 5, 9, 63, 64, 65, 130};
    const size_t row_counts[] = {1, 2, 3, 4, 5, 6, 7, 9};
    const float scales[] = {1.0f, 1e-6f, 3e4f};
    const size_t maxt = 130, maxr = 9;
    /* 17 and 33: more than one 8-super-block chunk of the i8mm GEMMs' unpacked rows. */
    const size_t sb_counts[] = {1, 2, 3, 4, 5, 17, 33};
    for (size_t bi = 0; bi < sizeof sb_counts / sizeof *sb_counts; bi++) {
        const size_t sbs = sb_counts[bi], n = 256 * sbs, blocks = n / 32;
        float *x = malloc(maxt * n * sizeof *x), *d = malloc(maxt * blocks * sizeof *d);
        int8_t *qs = malloc(maxt * n);
        int32_t *s = malloc(maxt * blocks * sizeof *s);
        uint8_t *qk = malloc(maxr * 210 * sbs);
        float *wm = malloc(maxr * n * sizeof *wm);
        float *got = malloc(maxt * (maxr + 1) * sizeof *got), *want = malloc(maxt * (maxr + 1) * sizeof *want);
        for (int si = 0; si < 3; si++) {
            for (size_t t = 0; t < maxt; t++) {
                for (size_t i = 0; i < n; i++) x[t * n + i] = frand() * scales[si];
                mk_quantize_row_q8a_generic(n, x + t * n, qs + t * n, d + t * blocks, s + t * blocks);
            }
            for (int ty = 0; ty < 3; ty++) {
                const size_t rb = (ty == 0 ? 144 : ty == 1 ? 176 : 210) * sbs;
                for (size_t r = 0; r < maxr; r++) make_k_row(ty, sbs, scales[si], qk + r * rb, wm + r * n);
                for (size_t ti = 0; ti < sizeof tok_counts / sizeof *tok_counts; ti++)
                    for (size_t ri = 0; ri < sizeof row_counts / sizeof *row_counts; ri++) {
                        const size_t ntok = tok_counts[ti], nrows = row_counts[ri], ldo = nrows + 1;
                        if (sbs > 5 && ntok > 9) continue; /* long rows: the tails only */
                        for (size_t i = 0; i < maxt * (maxr + 1); i++) got[i] = want[i] = -7.0f;
                        gemm[ty](n, nrows, qk, rb, ntok, qs, d, s, got, ldo);
                        ref[ty](n, nrows, qk, rb, ntok, qs, d, s, want, ldo);
                        int bad = 0;
                        for (size_t t = 0; t < ntok; t++)
                            for (size_t r = 0; r < ldo; r++) {
                                const size_t o = t * ldo + r;
                                if (r == nrows) {
                                    bad += got[o] != -7.0f;
                                    continue;
                                }
                                float mag = 0;
                                for (size_t e = 0; e < n; e++)
                                    mag += wm[r * n + e] * fabsf(d[t * blocks + e / 32] * qs[t * n + e]);
                                if (!(fabsf(got[o] - want[o]) <= 1e-5f * mag + 1e-30f)) {
                                    if (!bad)
                                        printf("FAIL %s gemm %s n=%zu rows=%zu tok=%zu (%zu,%zu) scale=%g: %g vs %g\n",
                                               name, tname[ty], n, nrows, ntok, r, t, scales[si], got[o], want[o]);
                                    bad++;
                                }
                            }
                        *passed += !bad;
                        *failed += !!bad;
                    }
            }
        }
        free(x), free(d), free(qs), free(s), free(qk), free(wm), free(got), free(want);
    }
    printf("kernel %s k-quant gemm: tested\n", name);
}

typedef void (*rows4_fn)(size_t, const void *, size_t, const int8_t *, const float *, const int32_t *,
                         float *);
/* An ISA's four-row decode kernels (Q8_0, Q4_0 rows at a stride, one activation row: AVX2)
 * against four generic one-row products: 1..40 blocks (odd counts hit the single-block tail),
 * rows with padding between them (row_bytes > the row), scales 1e-6..3e4, Q8_0 rows holding
 * -128, and the exact mode of test_gemm_q8a (unit scales, extreme values: results equal).
 * Bound otherwise 1e-5 · Σ|terms| as for the one-row kernels. */
__attribute__((unused)) static void test_rows4(const char *name, rows4_fn q8_0, rows4_fn q4_0, int available,
                                               int *passed, int *failed) {
    if (!available) {
        printf("kernel %s four-row decode: not on this CPU\n", name);
        return;
    }
    const float scales[] = {1.0f, 1e-6f, 3e4f, 0.0f};
    for (size_t blocks = 1; blocks <= 40; blocks++) {
        const size_t n = 32 * blocks, pad = 5, rb8 = 34 * blocks + pad, rb4 = 18 * blocks + pad;
        float *x = malloc(n * sizeof *x), *d = malloc(blocks * sizeof *d);
        int8_t *qs = malloc(n);
        int32_t *s = malloc(blocks * sizeof *s);
        uint8_t *q8 = malloc(4 * rb8), *q4 = malloc(4 * rb4);
        for (int si = 0; si < 4; si++) {
            const int exact = scales[si] == 0.0f;
            if (exact && blocks > 17) continue; /* sums must stay below 2^24 */
            for (size_t i = 0; i < n; i++) x[i] = frand() * (exact ? 1.0f : scales[si]);
            mk_quantize_row_q8a_generic(n, x, qs, d, s);
            for (int r = 0; r < 4; r++) make_rows(n, exact ? 1.0f : scales[si], q8 + r * rb8, q4 + r * rb4);
            if (exact) {
                const uint16_t one = 0x3c00;
                for (int r = 0; r < 4; r++)
                    for (size_t b = 0; b < blocks; b++) {
                        uint8_t *b8 = q8 + r * rb8 + b * 34, *b4 = q4 + r * rb4 + b * 18;
                        memcpy(b8, &one, 2);
                        memcpy(b4, &one, 2);
                        memset(b8 + 2, 0x80, 32);
                        for (int j = 0; j < 16; j++) b4[2 + j] = (uint8_t)((r + b + j) % 3 ? 0xf0 : 0x0f);
                    }
                for (size_t b = 0; b < blocks; b++) {
                    int32_t sum = 0;
                    for (int j = 0; j < 32; j++) {
                        const int8_t v = (b + (size_t)j) % 4 ? 127 : -127;
                        qs[32 * b + j] = v;
                        sum += v;
                    }
                    d[b] = 1.0f;
                    s[b] = sum;
                }
            }
            float g8[4], g4[4];
            q8_0(n, q8, rb8, qs, d, s, g8);
            q4_0(n, q4, rb4, qs, d, s, g4);
            for (int r = 0; r < 4; r++) {
                const uint8_t *w8 = q8 + r * rb8, *w4 = q4 + r * rb4;
                float mag8 = 0, mag4 = 0;
                for (size_t b = 0; b < blocks; b++) {
                    float dw8 = mk_f16_to_f32((uint16_t)(w8[34 * b] | w8[34 * b + 1] << 8));
                    float dw4 = mk_f16_to_f32((uint16_t)(w4[18 * b] | w4[18 * b + 1] << 8));
                    for (int j = 0; j < 32; j++) {
                        mag8 += fabsf(dw8 * (int8_t)w8[34 * b + 2 + j] * d[b] * qs[32 * b + j]);
                        mag4 += fabsf(dw4 * 8.0f * d[b] * qs[32 * b + j]) * 2.0f;
                    }
                }
                const float r8 = mk_vec_dot_q8_0_q8a_generic(n, w8, qs, d, s);
                const float r4 = mk_vec_dot_q4_0_q8a_generic(n, w4, qs, d, s);
                const int ok8 = exact ? g8[r] == r8 : fabsf(g8[r] - r8) <= 1e-5f * mag8 + 1e-30f;
                const int ok4 = exact ? g4[r] == r4 : fabsf(g4[r] - r4) <= 1e-5f * mag4 + 1e-30f;
                *passed += ok8 + ok4;
                *failed += !ok8 + !ok4;
                if (!ok8) printf("FAIL %s rows4 q8_0 n=%zu row %d scale=%g: %g vs %g\n", name, n, r, scales[si], g8[r], r8);
                if (!ok4) printf("FAIL %s rows4 q4_0 n=%zu row %d scale=%g: %g vs %g\n", name, n, r, scales[si], g4[r], r4);
            }
        }
        free(x), free(d), free(qs), free(s), free(q8), free(q4);
    }
    printf("kernel %s four-row decode: tested\n", name);
}

#if defined(__x86_64__)

#if defined(__x86_64__)
/* The AVX-512 four-row K-quant kernels against four one-row generic ones: random super-blocks
 * (every scale/min/code pattern), 1 to 6 super-blocks, four different activation rows. */
static void test_k_dot4(int *passed, int *failed) {
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512vnni"))) {
        printf("kernel avx512 dot4 k-quants: not on this CPU\n");
        return;
    }
    typedef void (*dot4_fn)(size_t, const void *, const int8_t *, const float *, const int32_t *,
                            float *);
    const dot4_fn f4[3] = {mk_vec_dot4_q4_k_q8a_avx512, mk_vec_dot4_q5_k_q8a_avx512,
                           mk_vec_dot4_q6_k_q8a_avx512};
    const dot_fn ref[3] = {mk_vec_dot_q4_k_q8a_generic, mk_vec_dot_q5_k_q8a_generic,
                           mk_vec_dot_q6_k_q8a_generic};
    for (size_t sbs = 1; sbs <= 6; sbs++) {
        size_t n = 256 * sbs, blocks = n / 32;
        float *x = malloc(4 * n * sizeof *x), *d = malloc(4 * blocks * sizeof *d);
        float *wm = malloc(n * sizeof *wm);
        int8_t *qs = malloc(4 * n);
        int32_t *s = malloc(4 * blocks * sizeof *s);
        uint8_t *row = malloc(210 * sbs);
        for (size_t r = 0; r < 4; r++) {
            for (size_t i = 0; i < n; i++) x[r * n + i] = frand() * (float)(r + 1);
            mk_quantize_row_q8a_generic(n, x + r * n, qs + r * n, d + r * blocks, s + r * blocks);
        }
        for (int t = 0; t < 3; t++) {
            make_k_row(t, sbs, 1.0f, row, wm);
            float out[4];
            f4[t](n, row, qs, d, s, out);
            for (size_t r = 0; r < 4; r++) {
                float mag = 0;
                for (size_t i = 0; i < n; i++)
                    mag += wm[i] * fabsf(d[r * blocks + i / 32] * qs[r * n + i]);
                float want = ref[t](n, row, qs + r * n, d + r * blocks, s + r * blocks);
                int ok = fabsf(out[r] - want) <= 1e-5f * mag + 1e-30f;
                *passed += ok;
                *failed += !ok;
                if (!ok) printf("FAIL avx512 dot4 k-quant %d n=%zu row %zu: %g vs %g\n", t, n, r, out[r], want);
            }
        }
        free(x), free(d), free(wm), free(qs), free(s), free(row);
    }
    printf("kernel avx512 dot4 k-quants: tested\n");
}
#endif

typedef void (*quantize_fn)(size_t n, const float *x, int8_t *qs, float *d, int32_t *s);

/* AVX2 and AVX-512 q8a quantization must equal the generic one bit for bit (the kernels'
 * integer results depend on it): random rows, halves that round, NaN, infinities, zeros, tiny
 * values. */
static void test_quantize_with(const char *name, quantize_fn f, int *passed, int *failed) {
    const size_t n = 32 * 64;
    float *x = malloc(n * sizeof *x), *d0 = malloc(n / 32 * sizeof *d0), *d1 = malloc(n / 32 * sizeof *d1);
    int8_t *q0 = malloc(n), *q1 = malloc(n);
    int32_t *s0 = malloc(n / 32 * sizeof *s0), *s1 = malloc(n / 32 * sizeof *s1);
    for (int round = 0; round < 50; round++) {
        for (size_t i = 0; i < n; i++) {
            float v = frand() * (round % 5 == 0 ? 1e-30f : round % 5 == 1 ? 3e4f : 1.0f);
            if (round % 7 == 3 && i % 32 == 5) v = 127.0f * 0.5f / 63.5f * (float)(i % 9) - 2.0f;
            x[i] = v;
        }
        if (round == 10) x[3] = NAN;
        if (round == 11) x[40] = INFINITY, x[41] = -INFINITY;
        if (round == 12) for (size_t i = 0; i < 32; i++) x[i] = (i % 2) ? -0.0f : 0.0f;
        if (round == 13) for (size_t i = 0; i < 32; i++) x[i] = (float)i - 15.5f; /* exact halves */
        mk_quantize_row_q8a_generic(n, x, q0, d0, s0);
        f(n, x, q1, d1, s1);
        int ok = memcmp(q0, q1, n) == 0 && memcmp(d0, d1, n / 32 * sizeof *d0) == 0 &&
                 memcmp(s0, s1, n / 32 * sizeof *s0) == 0;
        *passed += ok;
        *failed += !ok;
        if (!ok) printf("FAIL %s quantize round %d\n", name, round);
    }
    free(x), free(d0), free(d1), free(q0), free(q1), free(s0), free(s1);
    printf("quantize %s: tested\n", name);
}

static void test_quantize(int *passed, int *failed) {
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        test_quantize_with("avx2", mk_quantize_row_q8a_avx2, passed, failed);
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"))
        test_quantize_with("avx512", mk_quantize_row_q8a_avx512, passed, failed);
}
#endif

static void test_low_k(int *passed, int *failed);
static void test_legacy(int *passed, int *failed);
#if defined(__x86_64__)
static void test_legacy_rows4_gemm(int available, int *passed, int *failed);
static void test_x8_q4_0(int available, int *passed, int *failed);
static void test_x8_q4_k(int available, int *passed, int *failed);
static void test_x8_q5_0_q6_k(int available, int *passed, int *failed);
static void test_x8_iq4(int available, int *passed, int *failed);
static void test_x8_multi(int available, int *passed, int *failed);
static void test_x8_q4_1_q5_1(int available, int *passed, int *failed);
static void test_x8_q2_k(int available, int *passed, int *failed);
static void test_x8_q3_k(int available, int *passed, int *failed);
#endif

int main(void) {
    struct kernel ks[] = {
#if defined(__x86_64__)
        {"avx2", mk_vec_dot_q8_0_q8a_avx2, mk_vec_dot_q4_0_q8a_avx2, mk_vec_dot_q4_k_q8a_avx2,
         mk_vec_dot_q5_k_q8a_avx2, mk_vec_dot_q6_k_q8a_avx2, __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c")},
        {"avx512", mk_vec_dot_q8_0_q8a_avx512, mk_vec_dot_q4_0_q8a_avx512,
         mk_vec_dot_q4_k_q8a_avx512, mk_vec_dot_q5_k_q8a_avx512, mk_vec_dot_q6_k_q8a_avx512,
         __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vnni")},
#elif defined(__aarch64__)
        {"neon", mk_vec_dot_q8_0_q8a_neon, mk_vec_dot_q4_0_q8a_neon, mk_vec_dot_q4_k_q8a_neon,
         mk_vec_dot_q5_k_q8a_neon, mk_vec_dot_q6_k_q8a_neon, 1},
        {"dotprod", mk_vec_dot_q8_0_q8a_dotprod, mk_vec_dot_q4_0_q8a_dotprod,
         mk_vec_dot_q4_k_q8a_dotprod, mk_vec_dot_q5_k_q8a_dotprod, mk_vec_dot_q6_k_q8a_dotprod, 1},
#endif
    };
    int nk = (int)(sizeof ks / sizeof ks[0]), passed = 0, failed = 0;
    const float scales[] = {1.0f, 1e-6f, 3e4f, 0.0f};
    for (size_t blocks = 1; blocks <= 40; blocks++) {
        size_t n = 32 * blocks;
        float *x = malloc(n * sizeof *x), *d = malloc(blocks * sizeof *d);
        int8_t *qs = malloc(n);
        int32_t *s = malloc(blocks * sizeof *s);
        uint8_t *q8 = malloc(34 * blocks), *q4 = malloc(18 * blocks);
        for (int si = 0; si < 4; si++) {
            for (size_t i = 0; i < n; i++) x[i] = frand() * (scales[si] > 0 ? scales[si] : 1.0f);
            mk_quantize_row_q8a_generic(n, x, qs, d, s);
            make_rows(n, scales[si], q8, q4);
            float mag8 = 0, mag4 = 0;
            for (size_t b = 0; b < blocks; b++) {
                float dw8 = mk_f16_to_f32((uint16_t)(q8[34 * b] | q8[34 * b + 1] << 8));
                float dw4 = mk_f16_to_f32((uint16_t)(q4[18 * b] | q4[18 * b + 1] << 8));
                for (int j = 0; j < 32; j++) {
                    mag8 += fabsf(dw8 * (int8_t)q8[34 * b + 2 + j] * d[b] * qs[32 * b + j]);
                    mag4 += fabsf(dw4 * 8.0f * d[b] * qs[32 * b + j]) * 2.0f;
                }
            }
            float r8 = mk_vec_dot_q8_0_q8a_generic(n, q8, qs, d, s);
            float r4 = mk_vec_dot_q4_0_q8a_generic(n, q4, qs, d, s);
            for (int k = 0; k < nk; k++) {
                if (!ks[k].available) continue;
                float g8 = ks[k].q8_0(n, q8, qs, d, s), g4 = ks[k].q4_0(n, q4, qs, d, s);
                int ok8 = fabsf(g8 - r8) <= 1e-5f * mag8 + 1e-30f;
                int ok4 = fabsf(g4 - r4) <= 1e-5f * mag4 + 1e-30f;
                passed += ok8 + ok4;
                failed += !ok8 + !ok4;
                if (!ok8) printf("FAIL %s q8_0 n=%zu scale=%g: %g vs %g\n", ks[k].name, n, scales[si], g8, r8);
                if (!ok4) printf("FAIL %s q4_0 n=%zu scale=%g: %g vs %g\n", ks[k].name, n, scales[si], g4, r4);
            }
        }
        free(x), free(d), free(qs), free(s), free(q8), free(q4);
    }
    /* K-quants. */
    const dot_fn kref[3] = {mk_vec_dot_q4_k_q8a_generic, mk_vec_dot_q5_k_q8a_generic,
                            mk_vec_dot_q6_k_q8a_generic};
    const char *kname[3] = {"q4_k", "q5_k", "q6_k"};
    const size_t kbytes[3] = {144, 176, 210};
    for (size_t sbs = 1; sbs <= 12; sbs++) {
        size_t n = 256 * sbs, blocks = n / 32;
        float *x = malloc(n * sizeof *x), *d = malloc(blocks * sizeof *d), *wm = malloc(n * sizeof *wm);
        int8_t *qs = malloc(n);
        int32_t *s = malloc(blocks * sizeof *s);
        uint8_t *row = malloc(210 * sbs);
        for (int si = 0; si < 4; si++) {
            for (size_t i = 0; i < n; i++) x[i] = frand() * (scales[si] > 0 ? scales[si] : 1.0f);
            mk_quantize_row_q8a_generic(n, x, qs, d, s);
            for (int t = 0; t < 3; t++) {
                make_k_row(t, sbs, scales[si], row, wm);
                float mag = 0;
                for (size_t i = 0; i < n; i++) mag += wm[i] * fabsf(d[i / 32] * qs[i]);
                float r = kref[t](n, row, qs, d, s);
                for (int k = 0; k < nk; k++) {
                    if (!ks[k].available) continue;
                    dot_fn f = t == 0 ? ks[k].q4_k : t == 1 ? ks[k].q5_k : ks[k].q6_k;
                    float g = f(n, row, qs, d, s);
                    int ok = fabsf(g - r) <= 1e-5f * mag + 1e-30f;
                    passed += ok;
                    failed += !ok;
                    if (!ok) printf("FAIL %s %s n=%zu scale=%g: %g vs %g\n", ks[k].name, kname[t], n, scales[si], g, r);
                }
            }
            (void)kbytes;
        }
        free(x), free(d), free(wm), free(qs), free(s), free(row);
    }
    test_low_k(&passed, &failed);
    test_legacy(&passed, &failed);
#if defined(__x86_64__)
    test_q8g(&passed, &failed);
    test_gemm_q8g(&passed, &failed);
    test_k_dot4(&passed, &failed);
    test_quantize(&passed, &failed);
    struct mla_kernel mk[] = {
        {"avx2", mk_mla_scores_f32_avx2, mk_mla_scores_f16_avx2, mk_mla_accum_f32_avx2,
         mk_mla_accum_f16_avx2, ks[0].available},
        {"avx512", mk_mla_scores_f32_avx512, mk_mla_scores_f16_avx512, mk_mla_accum_f32_avx512,
         mk_mla_accum_f16_avx512, ks[1].available},
    };
    test_mla(mk, 2, &passed, &failed);
    test_gemm_q8a("avx2", mk_gemm_q8_0_q8a_avx2, mk_gemm_q4_0_q8a_avx2, ks[0].available, &passed, &failed);
    const gemm_q8a_fn kgemm_avx2[3] = {mk_gemm_q4_k_q8a_avx2, mk_gemm_q5_k_q8a_avx2, mk_gemm_q6_k_q8a_avx2};
    test_kgemm_q8a("avx2", kgemm_avx2, ks[0].available, &passed, &failed);
    test_rows4("avx2", mk_vec_dot_rows4_q8_0_q8a_avx2, mk_vec_dot_rows4_q4_0_q8a_avx2, ks[0].available, &passed,
               &failed);
    test_legacy_rows4_gemm(ks[0].available, &passed, &failed);
    test_x8_q4_0(ks[0].available, &passed, &failed);
    test_x8_q4_k(ks[0].available, &passed, &failed);
    test_x8_q5_0_q6_k(ks[0].available, &passed, &failed);
    test_x8_iq4(ks[0].available, &passed, &failed);
    test_x8_multi(ks[0].available, &passed, &failed);
    test_x8_q4_1_q5_1(ks[0].available, &passed, &failed);
    test_x8_q2_k(ks[0].available, &passed, &failed);
    test_x8_q3_k(ks[0].available, &passed, &failed);
    struct float_kernel fk[] = {
        {"generic", {mk_vec_dot_f32_f32_generic, mk_vec_dot_f16_f32_generic, mk_vec_dot_bf16_f32_generic},
         {mk_vec_dot4_f32_f32_generic, mk_vec_dot4_f16_f32_generic, mk_vec_dot4_bf16_f32_generic}, 1},
        {"avx2", {mk_vec_dot_f32_f32_avx2, mk_vec_dot_f16_f32_avx2, mk_vec_dot_bf16_f32_avx2},
         {mk_vec_dot4_f32_f32_avx2, mk_vec_dot4_f16_f32_avx2, mk_vec_dot4_bf16_f32_avx2}, ks[0].available},
        {"avx512", {mk_vec_dot_f32_f32_avx512, mk_vec_dot_f16_f32_avx512, mk_vec_dot_bf16_f32_avx512},
         {mk_vec_dot4_f32_f32_avx512, mk_vec_dot4_f16_f32_avx512, mk_vec_dot4_bf16_f32_avx512}, ks[1].available},
    };
    test_float(fk, 3, &passed, &failed);
#elif defined(__aarch64__)
    struct mla_kernel mk[] = {
        {"neon", mk_mla_scores_f32_neon, mk_mla_scores_f16_neon, mk_mla_accum_f32_neon,
         mk_mla_accum_f16_neon, 1},
    };
    test_mla(mk, 1, &passed, &failed);
    struct float_kernel fk[] = {
        {"generic", {mk_vec_dot_f32_f32_generic, mk_vec_dot_f16_f32_generic, mk_vec_dot_bf16_f32_generic},
         {mk_vec_dot4_f32_f32_generic, mk_vec_dot4_f16_f32_generic, mk_vec_dot4_bf16_f32_generic}, 1},
        {"neon", {mk_vec_dot_f32_f32_neon, mk_vec_dot_f16_f32_neon, mk_vec_dot_bf16_f32_neon},
         {mk_vec_dot4_f32_f32_neon, mk_vec_dot4_f16_f32_neon, mk_vec_dot4_bf16_f32_neon}, 1},
    };
    test_float(fk, 2, &passed, &failed);
    test_gemm_q8a("i8mm", mk_gemm_q8_0_q8a_i8mm, mk_gemm_q4_0_q8a_i8mm,
                  (getauxval(AT_HWCAP2) & HWCAP2_I8MM) != 0, &passed, &failed);
    const gemm_q8a_fn kgemm_i8mm[3] = {mk_gemm_q4_k_q8a_i8mm, mk_gemm_q5_k_q8a_i8mm, mk_gemm_q6_k_q8a_i8mm};
    test_kgemm_q8a("i8mm", kgemm_i8mm, (getauxval(AT_HWCAP2) & HWCAP2_I8MM) != 0, &passed, &failed);
#endif
    for (int k = 0; k < nk; k++) printf("kernel %s: %s\n", ks[k].name, ks[k].available ? "tested" : "not on this CPU");
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}

/* ---- Q2_K and Q3_K ---- */

struct low_k_kernel {
    const char *name;
    dot_fn q2_k, q3_k;
    /* Four rows at once (NULL where the ISA has none). */
    void (*q2_k4)(size_t, const void *, const int8_t *, const float *, const int32_t *, float *);
    void (*q3_k4)(size_t, const void *, const int8_t *, const float *, const int32_t *, float *);
    int available;
};

/* A row of `sbs` random Q2_K (t = 0) or Q3_K (t = 1) super-blocks: random bytes except the f16
 * super-scales, which follow `scale`; the first super-block's Q3_K scales 0 and 8 are -32.
 * wm[e] gets the magnitude of element e's terms. */
static void make_low_k_row(int t, size_t sbs, float scale, uint8_t *row, float *wm) {
    const size_t bb = t == 0 ? 84 : 110;
    for (size_t sb = 0; sb < sbs; sb++) {
        uint8_t *b = row + bb * sb;
        for (size_t i = 0; i < bb; i++) {
            frand();
            b[i] = (uint8_t)(rng >> 24);
        }
        uint16_t d = f32_to_f16_bits(frand() * scale / 15.0f), dm = f32_to_f16_bits(frand() * scale / 15.0f);
        float df = mk_f16_to_f32(d), dmf = mk_f16_to_f32(dm);
        float *w = wm + 256 * sb;
        if (t == 0) {
            memcpy(b + 80, &d, 2);
            memcpy(b + 82, &dm, 2);
            for (int e = 0; e < 256; e++)
                w[e] = fabsf(df) * (float)(b[e / 16] & 15) * 3.0f + fabsf(dmf) * (float)(b[e / 16] >> 4);
        } else {
            memcpy(b + 108, &d, 2);
            if (sb == 0) b[96] = 0, b[104] &= 0xfc;
            const uint8_t *sp = b + 96;
            for (int e = 0; e < 256; e++) {
                int i = e / 16, lo = (sp[i % 8] >> (4 * (i / 8))) & 0x0f, hi = (sp[8 + i % 4] >> (2 * (i / 4))) & 3;
                w[e] = fabsf(df * (float)((lo | (hi << 4)) - 32)) * 8.0f;
            }
        }
    }
}

static void test_low_k(int *passed, int *failed) {
    struct low_k_kernel ks[] = {
#if defined(__x86_64__)
        {"avx2", mk_vec_dot_q2_k_q8a_avx2, mk_vec_dot_q3_k_q8a_avx2, NULL, NULL,
         __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")},
        {"avx512", mk_vec_dot_q2_k_q8a_avx512, mk_vec_dot_q3_k_q8a_avx512, mk_vec_dot4_q2_k_q8a_avx512,
         mk_vec_dot4_q3_k_q8a_avx512,
         __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vnni")},
#elif defined(__aarch64__)
        {"neon", mk_vec_dot_q2_k_q8a_neon, mk_vec_dot_q3_k_q8a_neon, NULL, NULL, 1},
        {"dotprod", mk_vec_dot_q2_k_q8a_dotprod, mk_vec_dot_q3_k_q8a_dotprod, NULL, NULL, 1},
#endif
    };
    const int nk = (int)(sizeof ks / sizeof ks[0]);
    const dot_fn ref[2] = {mk_vec_dot_q2_k_q8a_generic, mk_vec_dot_q3_k_q8a_generic};
    const char *name[2] = {"q2_k", "q3_k"};
    const float scales[] = {1.0f, 1e-6f, 3e4f, 0.0f};
    for (size_t sbs = 1; sbs <= 12; sbs++) {
        const size_t n = 256 * sbs, blocks = n / 32;
        float *x = malloc(4 * n * sizeof *x), *d = malloc(4 * blocks * sizeof *d), *wm = malloc(n * sizeof *wm);
        int8_t *qs = malloc(4 * n);
        int32_t *s = malloc(4 * blocks * sizeof *s);
        uint8_t *row = malloc(110 * sbs);
        for (int si = 0; si < 4; si++) {
            for (size_t i = 0; i < 4 * n; i++) x[i] = frand() * (scales[si] > 0 ? scales[si] : 1.0f);
            mk_quantize_row_q8a_generic(4 * n, x, qs, d, s);
            for (int t = 0; t < 2; t++) {
                make_low_k_row(t, sbs, scales[si], row, wm);
                float mag[4], r[4];
                for (int a = 0; a < 4; a++) {
                    mag[a] = 0;
                    for (size_t i = 0; i < n; i++) mag[a] += wm[i] * fabsf(d[a * blocks + i / 32] * qs[a * n + i]);
                    r[a] = ref[t](n, row, qs + a * n, d + a * blocks, s + a * blocks);
                }
                for (int k = 0; k < nk; k++) {
                    if (!ks[k].available) continue;
                    float g = (t == 0 ? ks[k].q2_k : ks[k].q3_k)(n, row, qs, d, s);
                    int ok = fabsf(g - r[0]) <= 1e-5f * mag[0] + 1e-30f;
                    *passed += ok;
                    *failed += !ok;
                    if (!ok) printf("FAIL %s %s n=%zu scale=%g: %g vs %g\n", ks[k].name, name[t], n, scales[si], g, r[0]);
                    void (*f4)(size_t, const void *, const int8_t *, const float *, const int32_t *, float *) =
                        t == 0 ? ks[k].q2_k4 : ks[k].q3_k4;
                    if (!f4) continue;
                    float g4[4];
                    f4(n, row, qs, d, s, g4);
                    for (int a = 0; a < 4; a++) {
                        ok = fabsf(g4[a] - r[a]) <= 1e-5f * mag[a] + 1e-30f;
                        *passed += ok;
                        *failed += !ok;
                        if (!ok)
                            printf("FAIL %s four-row %s n=%zu scale=%g row %d: %g vs %g\n", ks[k].name, name[t], n,
                                   scales[si], a, g4[a], r[a]);
                    }
                }
            }
        }
        free(x), free(d), free(wm), free(qs), free(s), free(row);
    }
}

/* ---- Q4_1, Q5_0, Q5_1, IQ4_NL, IQ4_XS ---- */

typedef void (*dot4_fn)(size_t, const void *, const int8_t *, const float *, const int32_t *, float *);

struct legacy_kernel {
    const char *name;
    dot_fn dot[5];
    dot4_fn dot4[5]; /* NULL where the ISA has none */
    int available;
};

/* A row of `blocks` random blocks of type t (0 Q4_1, 1 Q5_0, 2 Q5_1, 3 IQ4_NL: 32 elements;
 * 4 IQ4_XS: 256 elements per block): random bytes except the f16 scale and min, which follow
 * `scale`. wm[e] gets the magnitude of element e's terms. */
static void make_legacy_row(int t, size_t blocks, float scale, uint8_t *row, float *wm) {
    static const size_t bb[5] = {20, 22, 24, 18, 136};
    const size_t be = t == 4 ? 256 : 32;
    for (size_t blk = 0; blk < blocks; blk++) {
        uint8_t *b = row + bb[t] * blk;
        for (size_t i = 0; i < bb[t]; i++) {
            frand();
            b[i] = (uint8_t)(rng >> 24);
        }
        uint16_t d = f32_to_f16_bits(frand() * scale / 15.0f), m = f32_to_f16_bits(frand() * scale);
        memcpy(b, &d, 2);
        if (t == 0 || t == 2) memcpy(b + 2, &m, 2);
        float df = mk_f16_to_f32(d), mf = (t == 0 || t == 2) ? mk_f16_to_f32(m) : 0.0f;
        for (size_t e = 0; e < be; e++) {
            float f = df;
            if (t == 4) {
                int i = (int)(e / 32), h = b[2] | (b[3] << 8);
                int ls = ((b[4 + i / 2] >> (4 * (i % 2))) & 0x0f) | (((h >> (2 * i)) & 3) << 4);
                f = df * (float)(ls - 32);
            }
            wm[be * blk + e] = t >= 3 ? fabsf(f) * 127.0f : fabsf(f) * 48.0f + fabsf(mf);
        }
    }
}

static void test_legacy(int *passed, int *failed) {
    struct legacy_kernel ks[] = {
#if defined(__x86_64__)
        {"avx2",
         {mk_vec_dot_q4_1_q8a_avx2, mk_vec_dot_q5_0_q8a_avx2, mk_vec_dot_q5_1_q8a_avx2,
          mk_vec_dot_iq4_nl_q8a_avx2, mk_vec_dot_iq4_xs_q8a_avx2},
         {NULL, NULL, NULL, NULL, NULL},
         __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")},
        {"avx512",
         {mk_vec_dot_q4_1_q8a_avx512, mk_vec_dot_q5_0_q8a_avx512, mk_vec_dot_q5_1_q8a_avx512,
          mk_vec_dot_iq4_nl_q8a_avx512, mk_vec_dot_iq4_xs_q8a_avx512},
         {mk_vec_dot4_q4_1_q8a_avx512, mk_vec_dot4_q5_0_q8a_avx512, mk_vec_dot4_q5_1_q8a_avx512,
          mk_vec_dot4_iq4_nl_q8a_avx512, mk_vec_dot4_iq4_xs_q8a_avx512},
         __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vnni")},
#elif defined(__aarch64__)
        {"neon",
         {mk_vec_dot_q4_1_q8a_neon, mk_vec_dot_q5_0_q8a_neon, mk_vec_dot_q5_1_q8a_neon,
          mk_vec_dot_iq4_nl_q8a_neon, mk_vec_dot_iq4_xs_q8a_neon},
         {NULL, NULL, NULL, NULL, NULL}, 1},
        {"dotprod",
         {mk_vec_dot_q4_1_q8a_dotprod, mk_vec_dot_q5_0_q8a_dotprod, mk_vec_dot_q5_1_q8a_dotprod,
          mk_vec_dot_iq4_nl_q8a_dotprod, mk_vec_dot_iq4_xs_q8a_dotprod},
         {NULL, NULL, NULL, NULL, NULL}, 1},
#endif
    };
    const int nk = (int)(sizeof ks / sizeof ks[0]);
    const dot_fn ref[5] = {mk_vec_dot_q4_1_q8a_generic, mk_vec_dot_q5_0_q8a_generic,
                           mk_vec_dot_q5_1_q8a_generic, mk_vec_dot_iq4_nl_q8a_generic,
                           mk_vec_dot_iq4_xs_q8a_generic};
    const char *name[5] = {"q4_1", "q5_0", "q5_1", "iq4_nl", "iq4_xs"};
    const float scales[] = {1.0f, 1e-6f, 3e4f, 0.0f};
    for (int t = 0; t < 5; t++) {
        const size_t be = t == 4 ? 256 : 32, maxb = t == 4 ? 9 : 40;
        for (size_t nbk = 1; nbk <= maxb; nbk++) {
            const size_t n = be * nbk, blocks = n / 32;
            float *x = malloc(4 * n * sizeof *x), *d = malloc(4 * blocks * sizeof *d), *wm = malloc(n * sizeof *wm);
            int8_t *qs = malloc(4 * n);
            int32_t *s = malloc(4 * blocks * sizeof *s);
            uint8_t *row = malloc(136 * nbk + 24 * nbk);
            for (int si = 0; si < 4; si++) {
                for (size_t i = 0; i < 4 * n; i++) x[i] = frand() * (scales[si] > 0 ? scales[si] : 1.0f);
                mk_quantize_row_q8a_generic(4 * n, x, qs, d, s);
                make_legacy_row(t, nbk, scales[si], row, wm);
                float mag[4], r[4];
                for (int a = 0; a < 4; a++) {
                    mag[a] = 0;
                    for (size_t i = 0; i < n; i++) mag[a] += wm[i] * fabsf(d[a * blocks + i / 32] * qs[a * n + i]);
                    r[a] = ref[t](n, row, qs + a * n, d + a * blocks, s + a * blocks);
                }
                for (int k = 0; k < nk; k++) {
                    if (!ks[k].available) continue;
                    float g = ks[k].dot[t](n, row, qs, d, s);
                    int ok = fabsf(g - r[0]) <= 1e-5f * mag[0] + 1e-30f;
                    *passed += ok;
                    *failed += !ok;
                    if (!ok) printf("FAIL %s %s n=%zu scale=%g: %g vs %g\n", ks[k].name, name[t], n, scales[si], g, r[0]);
                    if (!ks[k].dot4[t]) continue;
                    float g4[4];
                    ks[k].dot4[t](n, row, qs, d, s, g4);
                    for (int a = 0; a < 4; a++) {
                        ok = fabsf(g4[a] - r[a]) <= 1e-5f * mag[a] + 1e-30f;
                        *passed += ok;
                        *failed += !ok;
                        if (!ok)
                            printf("FAIL %s four-row %s n=%zu scale=%g row %d: %g vs %g\n", ks[k].name, name[t], n,
                                   scales[si], a, g4[a], r[a]);
                    }
                }
            }
            free(x), free(d), free(wm), free(qs), free(s), free(row);
        }
    }
}

#if defined(__x86_64__)
/* The AVX2 four-row decode kernels (Q5_0, IQ4_NL) and GEMMs (Q4_1, Q5_0, Q5_1, IQ4_NL,
 * IQ4_XS: the types of make_legacy_row) against the generic one-row kernel, row by row and
 * token by token: 1..40 block units (32 elements, 256 for IQ4_XS), rows at a padded stride,
 * 1..9 rows, 1..65 tokens (the 64-token slices and their tails), scales 1e-6..3e4 (1 also with
 * unit weight and activation scales and mins of 1, where every sum is an integer below 2^24
 * and the results must be equal). Bound otherwise 1e-5 · Σ|terms|. The GEMM's column past
 * nrows (ldo = nrows + 1) must stay untouched. */
static void test_legacy_rows4_gemm(int available, int *passed, int *failed) {
    if (!available) {
        printf("kernel avx2 legacy/iq4 four-row and gemm: not on this CPU\n");
        return;
    }
    const size_t bb[5] = {20, 22, 24, 18, 136};
    const rows4_fn r4[5] = {NULL, mk_vec_dot_rows4_q5_0_q8a_avx2, NULL, mk_vec_dot_rows4_iq4_nl_q8a_avx2, NULL};
    const gemm_q8a_fn gm[5] = {mk_gemm_q4_1_q8a_avx2, mk_gemm_q5_0_q8a_avx2, mk_gemm_q5_1_q8a_avx2,
                               mk_gemm_iq4_nl_q8a_avx2, mk_gemm_iq4_xs_q8a_avx2};
    const dot_fn ref[5] = {mk_vec_dot_q4_1_q8a_generic, mk_vec_dot_q5_0_q8a_generic, mk_vec_dot_q5_1_q8a_generic,
                           mk_vec_dot_iq4_nl_q8a_generic, mk_vec_dot_iq4_xs_q8a_generic};
    const char *name[5] = {"q4_1", "q5_0", "q5_1", "iq4_nl", "iq4_xs"};
    const float scales[] = {1.0f, 1e-6f, 3e4f, 0.0f}; /* 0: the exact mode */
    const size_t tok_counts[] = {1, 2, 3, 5, 64, 65};
    const size_t row_counts[] = {1, 2, 3, 4, 5, 9};
    const size_t maxt = 65, maxr = 9, pad = 5;
    for (int ty = 0; ty < 5; ty++)
        for (size_t units = 1; units <= (ty == 4 ? 6 : 40); units++) {
            const size_t n = (ty == 4 ? 256 : 32) * units, blocks = n / 32, rb = bb[ty] * units + pad;
            float *x = malloc(maxt * n * sizeof *x), *d = malloc(maxt * blocks * sizeof *d);
            float *wm = malloc(maxr * n * sizeof *wm);
            int8_t *qs = malloc(maxt * n);
            int32_t *s = malloc(maxt * blocks * sizeof *s);
            uint8_t *w = malloc(maxr * rb);
            float *got = malloc(maxt * (maxr + 1) * sizeof *got);
            for (int si = 0; si < 4; si++) {
                const int exact = scales[si] == 0.0f;
                if (exact && (blocks > 17 || ty == 4)) continue; /* IQ4_XS: (ls-32)·Σ passes 2^24 */
                for (size_t i = 0; i < maxt * n; i++) x[i] = frand() * (exact ? 1.0f : scales[si]);
                for (size_t t = 0; t < maxt; t++)
                    mk_quantize_row_q8a_generic(n, x + t * n, qs + t * n, d + t * blocks, s + t * blocks);
                for (size_t r = 0; r < maxr; r++) {
                    make_legacy_row(ty, units, exact ? 1.0f : scales[si], w + r * rb, wm + r * n);
                    if (exact) {
                        const uint16_t one = 0x3c00;
                        for (size_t b = 0; b < units; b++) {
                            memcpy(w + r * rb + b * bb[ty], &one, 2);
                            if (ty == 0 || ty == 2) memcpy(w + r * rb + b * bb[ty] + 2, &one, 2);
                        }
                    }
                }
                if (exact)
                    for (size_t b = 0; b < maxt * blocks; b++) d[b] = 1.0f;
                /* four-row decode: rows 0..3 and 5..8 */
                for (size_t r0 = 0; r4[ty] && r0 <= 5; r0 += 5) {
                    float g[4];
                    r4[ty](n, w + r0 * rb, rb, qs, d, s, g);
                    for (int r = 0; r < 4; r++) {
                        const float want = ref[ty](n, w + (r0 + r) * rb, qs, d, s);
                        float mag = 0;
                        for (size_t i = 0; i < n; i++)
                            mag += (exact ? 127.0f : wm[(r0 + r) * n + i]) * fabsf(d[i / 32] * qs[i]);
                        const int ok = exact ? g[r] == want : fabsf(g[r] - want) <= 1e-5f * mag + 1e-30f;
                        *passed += ok;
                        *failed += !ok;
                        if (!ok)
                            printf("FAIL avx2 rows4 %s n=%zu row %zu scale=%g: %g vs %g\n", name[ty], n, r0 + r,
                                   scales[si], g[r], want);
                    }
                }
                for (size_t ti = 0; ti < sizeof tok_counts / sizeof *tok_counts; ti++)
                    for (size_t ri = 0; ri < sizeof row_counts / sizeof *row_counts; ri++) {
                        const size_t ntok = tok_counts[ti], nrows = row_counts[ri], ldo = nrows + 1;
                        for (size_t i = 0; i < maxt * (maxr + 1); i++) got[i] = -7.0f;
                        gm[ty](n, nrows, w, rb, ntok, qs, d, s, got, ldo);
                        int bad = 0;
                        for (size_t t = 0; t < ntok; t++)
                            for (size_t r = 0; r < ldo; r++) {
                                const float gv = got[t * ldo + r];
                                if (r == nrows) {
                                    bad += gv != -7.0f;
                                    continue;
                                }
                                const float want = ref[ty](n, w + r * rb, qs + t * n, d + t * blocks, s + t * blocks);
                                float mag = 0;
                                for (size_t i = 0; i < n; i++)
                                    mag += (exact ? 255.0f : wm[r * n + i]) * fabsf(d[t * blocks + i / 32] * qs[t * n + i]);
                                const int ok = exact ? gv == want : fabsf(gv - want) <= 1e-5f * mag + 1e-30f;
                                if (!ok && !bad)
                                    printf("FAIL avx2 gemm %s n=%zu rows=%zu tok=%zu (%zu,%zu) scale=%g: %g vs %g\n",
                                           name[ty], n, nrows, ntok, r, t, scales[si], gv, want);
                                bad += !ok;
                            }
                        *passed += !bad;
                        *failed += !!bad;
                    }
            }
            free(x), free(d), free(wm), free(qs), free(s), free(w), free(got);
        }
    printf("kernel avx2 legacy/iq4 four-row and gemm: tested\n");
}

/* Q4_0 interleaved by eight rows (the layout of mk_vec_dot_x8_q4_0_q8a_avx2, written here as
 * the loader writes it) against the generic one-row kernel on the original rows: 1..70 blocks,
 * 1..3 groups, 1..65 tokens, scales 1e-6..3e4 (bound 1e-5 · Σ|terms|) and the exact mode (unit
 * scales: integer sums, equal results). */
static void test_x8_q4_0(int available, int *passed, int *failed) {
    if (!available) {
        printf("kernel avx2 q4_0 x8: not on this CPU\n");
        return;
    }
    const size_t block_counts[] = {1, 2, 3, 7, 17, 64, 70};
    const size_t tok_counts[] = {1, 4, 5, 64, 65};
    const float scales[] = {1.0f, 1e-6f, 3e4f, 0.0f};
    const size_t maxt = 65, maxg = 3;
    for (size_t bi = 0; bi < sizeof block_counts / sizeof *block_counts; bi++) {
        const size_t blocks = block_counts[bi], n = 32 * blocks, rb = 18 * blocks;
        float *x = malloc(maxt * n * sizeof *x), *d = malloc(maxt * blocks * sizeof *d);
        int8_t *qs = malloc(maxt * n);
        int32_t *s = malloc(maxt * blocks * sizeof *s);
        uint8_t *q8 = malloc(8 * maxg * 34 * blocks), *q4 = malloc(8 * maxg * rb), *x8 = malloc(8 * maxg * rb);
        float *got = malloc(maxt * (8 * maxg + 1) * sizeof *got);
        for (int si = 0; si < 4; si++) {
            const int exact = scales[si] == 0.0f;
            if (exact && blocks > 17) continue;
            make_rows(8 * maxg * n, exact ? 1.0f : scales[si], q8, q4); /* rows back to back */
            if (exact)
                for (size_t b = 0; b < 8 * maxg * blocks; b++) {
                    const uint16_t one = 0x3c00;
                    memcpy(q4 + 18 * b, &one, 2);
                }
            for (size_t t = 0; t < maxt; t++) {
                for (size_t i = 0; i < n; i++) x[t * n + i] = frand() * (exact ? 1.0f : scales[si]);
                mk_quantize_row_q8a_generic(n, x + t * n, qs + t * n, d + t * blocks, s + t * blocks);
                if (exact)
                    for (size_t b = 0; b < blocks; b++) d[t * blocks + b] = 1.0f;
            }
            for (size_t g = 0; g < maxg; g++) /* the interleaving */
                for (size_t j = 0; j < blocks; j++) {
                    uint8_t *dst = x8 + g * 8 * rb + j * 144;
                    for (int r = 0; r < 8; r++) {
                        const uint8_t *src = q4 + (8 * g + r) * rb + 18 * j;
                        memcpy(dst + 2 * r, src, 2);
                        for (int v = 0; v < 4; v++) memcpy(dst + 16 + 32 * v + 4 * r, src + 2 + 4 * v, 4);
                    }
                }
            for (size_t ti = 0; ti < sizeof tok_counts / sizeof *tok_counts; ti++)
                for (size_t ng = 1; ng <= maxg; ng++) {
                    const size_t ntok = tok_counts[ti], nrows = 8 * ng, ldo = nrows + 1;
                    for (size_t i = 0; i < maxt * (8 * maxg + 1); i++) got[i] = -7.0f;
                    int bad = 0;
                    for (int pass = 0; pass < 2; pass++) { /* 0: decode per token, 1: GEMM */
                        if (pass == 0)
                            for (size_t t = 0; t < ntok; t++)
                                for (size_t g = 0; g < ng; g++)
                                    mk_vec_dot_x8_q4_0_q8a_avx2(n, x8 + g * 8 * rb, qs + t * n, d + t * blocks,
                                                                s + t * blocks, got + t * ldo + 8 * g);
                        else
                            mk_gemm_x8_q4_0_q8a_avx2(n, ng, x8, ntok, qs, d, s, got, ldo);
                        for (size_t t = 0; t < ntok; t++)
                            for (size_t r = 0; r < nrows; r++) {
                                const float gv = got[t * ldo + r];
                                const float want = mk_vec_dot_q4_0_q8a_generic(n, q4 + r * rb, qs + t * n,
                                                                               d + t * blocks, s + t * blocks);
                                float mag = 0;
                                for (size_t i = 0; i < n; i++)
                                    mag += 8.0f * fabsf(mk_f16_to_f32((uint16_t)(q4[r * rb + 18 * (i / 32)] |
                                                                                 q4[r * rb + 18 * (i / 32) + 1] << 8))) *
                                           fabsf(d[t * blocks + i / 32] * qs[t * n + i]);
                                const int ok = exact ? gv == want : fabsf(gv - want) <= 1e-5f * mag + 1e-30f;
                                if (!ok && !bad)
                                    printf("FAIL avx2 x8 %s q4_0 n=%zu groups=%zu tok=%zu (%zu,%zu) scale=%g: %g vs %g\n",
                                           pass ? "gemm" : "decode", n, ng, ntok, r, t, scales[si], gv, want);
                                bad += !ok;
                            }
                        for (size_t t = 0; t < ntok; t++) bad += got[t * ldo + nrows] != -7.0f;
                    }
                    *passed += !bad;
                    *failed += !!bad;
                }
        }
        free(x), free(d), free(qs), free(s), free(q8), free(q4), free(x8), free(got);
    }
    printf("kernel avx2 q4_0 x8: tested\n");
}

/* Q4_K and Q5_K interleaved by eight rows (layouts of mk_vec_dot_x8_q4_k_q8a_avx2 and
 * mk_vec_dot_x8_q5_k_q8a_avx2, written here as the loader writes them) against the generic
 * one-row kernels on the original rows: 1..5 super-blocks, 1..2 groups, 1..65 tokens, scales
 * 1e-6..3e4; bound 1e-5 · Σ|terms| (wm from make_k_row). */
static void test_x8_q4_k(int available, int *passed, int *failed) {
    if (!available) {
        printf("kernel avx2 q4_k/q5_k x8: not on this CPU\n");
        return;
    }
    for (int five = 0; five < 2; five++) {
        const size_t bb = five ? 176 : 144, gbb = five ? 1408 : 1152;
        const size_t sb_counts[] = {1, 2, 5};
        const size_t tok_counts[] = {1, 4, 5, 65};
        const float scales[] = {1.0f, 1e-6f, 3e4f};
        const size_t maxt = 65, maxg = 2;
        for (size_t bi = 0; bi < sizeof sb_counts / sizeof *sb_counts; bi++) {
            const size_t sbs = sb_counts[bi], n = 256 * sbs, blocks = n / 32, rb = bb * sbs;
            float *x = malloc(maxt * n * sizeof *x), *d = malloc(maxt * blocks * sizeof *d);
            int8_t *qs = malloc(maxt * n);
            int32_t *s = malloc(maxt * blocks * sizeof *s);
            uint8_t *qk = malloc(8 * maxg * rb), *x8 = malloc(8 * maxg * rb);
            float *wm = malloc(8 * maxg * n * sizeof *wm);
            float *got = malloc(maxt * (8 * maxg + 1) * sizeof *got);
            for (int si = 0; si < 3; si++) {
                for (size_t r = 0; r < 8 * maxg; r++) make_k_row(five, sbs, scales[si], qk + r * rb, wm + r * n);
                for (size_t t = 0; t < maxt; t++) {
                    for (size_t i = 0; i < n; i++) x[t * n + i] = frand() * scales[si];
                    mk_quantize_row_q8a_generic(n, x + t * n, qs + t * n, d + t * blocks, s + t * blocks);
                }
                for (size_t g = 0; g < maxg; g++)
                    for (size_t j = 0; j < sbs; j++) {
                        uint8_t *dst = x8 + g * 8 * rb + j * gbb;
                        memset(dst + 96, 0, 32);
                        for (int r = 0; r < 8; r++) {
                            const uint8_t *b = qk + (8 * g + r) * rb + bb * j, *k = b + 4;
                            memcpy(dst + 2 * r, b, 2);
                            memcpy(dst + 16 + 2 * r, b + 2, 2);
                            for (int i = 0; i < 8; i++) {
                                int sc, m;
                                if (i < 4) {
                                    sc = k[i] & 63;
                                    m = k[i + 4] & 63;
                                } else {
                                    sc = (k[i + 4] & 0x0f) | ((k[i - 4] >> 6) << 4);
                                    m = (k[i + 4] >> 4) | ((k[i] >> 6) << 4);
                                }
                                dst[32 + 8 * i + r] = (uint8_t)(sc | (m >> 4) << 6);
                                dst[96 + 4 * i + r / 2] |= (uint8_t)((m & 15) << (4 * (r % 2)));
                            }
                            for (int c = 0; c < 4; c++)
                                for (int v = 0; v < 8; v++)
                                    memcpy(dst + 128 + 256 * c + 32 * v + 4 * r, b + (five ? 48 : 16) + 32 * c + 4 * v, 4);
                            if (five) /* qh: vector v = bytes 4v..4v+3 of each row's 32 */
                                for (int v = 0; v < 8; v++) memcpy(dst + 1152 + 32 * v + 4 * r, b + 16 + 4 * v, 4);
                        }
                    }
                for (size_t ti = 0; ti < sizeof tok_counts / sizeof *tok_counts; ti++)
                    for (size_t ng = 1; ng <= maxg; ng++) {
                        const size_t ntok = tok_counts[ti], nrows = 8 * ng, ldo = nrows + 1;
                        int bad = 0;
                        for (int pass = 0; pass < 2; pass++) {
                            for (size_t i = 0; i < maxt * (8 * maxg + 1); i++) got[i] = -7.0f;
                            if (pass == 0)
                                for (size_t t = 0; t < ntok; t++)
                                    for (size_t g = 0; g < ng; g++)
                                        (five ? mk_vec_dot_x8_q5_k_q8a_avx2 : mk_vec_dot_x8_q4_k_q8a_avx2)(
                                            n, x8 + g * 8 * rb, qs + t * n, d + t * blocks, s + t * blocks,
                                            got + t * ldo + 8 * g);
                            else
                                (five ? mk_gemm_x8_q5_k_q8a_avx2 : mk_gemm_x8_q4_k_q8a_avx2)(n, ng, x8, ntok, qs, d, s,
                                                                                         got, ldo);
                            for (size_t t = 0; t < ntok; t++) {
                                for (size_t r = 0; r < nrows; r++) {
                                    const float gv = got[t * ldo + r];
                                    const float want = (five ? mk_vec_dot_q5_k_q8a_generic : mk_vec_dot_q4_k_q8a_generic)(
                                        n, qk + r * rb, qs + t * n, d + t * blocks, s + t * blocks);
                                    float mag = 0;
                                    for (size_t i = 0; i < n; i++)
                                        mag += wm[r * n + i] * fabsf(d[t * blocks + i / 32] * qs[t * n + i]);
                                    const int ok = fabsf(gv - want) <= 1e-5f * mag + 1e-30f;
                                    if (!ok && !bad)
                                        printf("FAIL avx2 x8 %s %s n=%zu groups=%zu tok=%zu (%zu,%zu) scale=%g: %g vs %g\n",
                                               pass ? "gemm" : "decode", five ? "q5_k" : "q4_k", n, ng, ntok, r, t,
                                               scales[si], gv, want);
                                    bad += !ok;
                                }
                                bad += got[t * ldo + nrows] != -7.0f;
                            }
                        }
                        *passed += !bad;
                        *failed += !!bad;
                    }
            }
            free(x), free(d), free(qs), free(s), free(qk), free(x8), free(wm), free(got);
        }
    }
    printf("kernel avx2 q4_k/q5_k x8: tested\n");
}

/* Rows of Q5_0 (22-byte blocks) or Q6_K (210-byte super-blocks) interleaved by eight as the
 * loader does (layouts in csrc/x86/avx2.c): `rows` holds 8·ng rows of rb bytes. */
static void x8_interleave_q5_0_q6_k(int q6, size_t ng, size_t rb, const uint8_t *rows, uint8_t *x8) {
    const size_t bb = q6 ? 210 : 22, gbb = 8 * bb, units = rb / bb;
    for (size_t g = 0; g < ng; g++)
        for (size_t j = 0; j < units; j++) {
            uint8_t *dst = x8 + g * 8 * rb + j * gbb;
            for (int r = 0; r < 8; r++) {
                const uint8_t *b = rows + (8 * g + r) * rb + bb * j;
                if (!q6) {
                    uint32_t qh;
                    memcpy(&qh, b + 2, 4);
                    memcpy(dst + 2 * r, b, 2);
                    for (int k = 0; k < 4; k++) {
                        uint8_t t = 0;
                        for (int c = 0; c < 8; c++) t |= (uint8_t)(((qh >> (4 * c + k)) & 1u) << c);
                        dst[16 + 4 * r + k] = t;
                    }
                    for (int v = 0; v < 4; v++) memcpy(dst + 48 + 32 * v + 4 * r, b + 6 + 4 * v, 4);
                } else {
                    memcpy(dst + 2 * r, b + 208, 2);
                    for (int i = 0; i < 8; i++) memcpy(dst + 16 + 16 * i + 2 * r, b + 192 + 2 * i, 2);
                    for (int h = 0; h < 2; h++)
                        for (int v = 0; v < 8; v++) {
                            uint8_t *o = dst + 144 + 768 * h + 32 * v + 4 * r;
                            memcpy(o, b + 64 * h + 4 * v, 4);
                            memcpy(o + 256, b + 64 * h + 32 + 4 * v, 4);
                            memcpy(o + 512, b + 128 + 32 * h + 4 * v, 4);
                        }
                }
            }
        }
}

/* Q5_0 and Q6_K interleaved by eight rows against the generic one-row kernels on the original
 * rows (decode per token and GEMM): Q5_0 1..70 blocks, Q6_K 1..5 super-blocks, 1..3 groups,
 * 1..65 tokens, scales 1e-6..3e4; bound 1e-5 · Σ|terms| (wm of make_legacy_row / make_k_row),
 * and for Q5_0 also the exact mode (unit scales: integer sums, equal results). */
static void test_x8_q5_0_q6_k(int available, int *passed, int *failed) {
    if (!available) {
        printf("kernel avx2 q5_0/q6_k x8: not on this CPU\n");
        return;
    }
    const size_t tok_counts[] = {1, 4, 5, 64, 65};
    const float scales[] = {1.0f, 1e-6f, 3e4f, 0.0f};
    const size_t maxt = 65, maxg = 3;
    for (int q6 = 0; q6 < 2; q6++) {
        const size_t q5_units[] = {1, 2, 3, 7, 17, 64, 70}, q6_units[] = {1, 2, 5};
        const size_t nu = q6 ? 3 : 7;
        for (size_t ui = 0; ui < nu; ui++) {
            const size_t units = q6 ? q6_units[ui] : q5_units[ui];
            const size_t n = (q6 ? 256 : 32) * units, blocks = n / 32, rb = (q6 ? 210 : 22) * units;
            float *x = malloc(maxt * n * sizeof *x), *d = malloc(maxt * blocks * sizeof *d);
            int8_t *qs = malloc(maxt * n);
            int32_t *s = malloc(maxt * blocks * sizeof *s);
            uint8_t *w = malloc(8 * maxg * rb), *x8 = malloc(8 * maxg * rb);
            float *wm = malloc(8 * maxg * n * sizeof *wm);
            float *got = malloc(maxt * (8 * maxg + 1) * sizeof *got);
            for (int si = 0; si < 4; si++) {
                const int exact = scales[si] == 0.0f;
                if (exact && (q6 || blocks > 17)) continue;
                for (size_t r = 0; r < 8 * maxg; r++) {
                    if (q6) make_k_row(2, units, scales[si], w + r * rb, wm + r * n);
                    else make_legacy_row(1, units, exact ? 1.0f : scales[si], w + r * rb, wm + r * n);
                    if (exact)
                        for (size_t b = 0; b < units; b++) {
                            const uint16_t one = 0x3c00;
                            memcpy(w + r * rb + 22 * b, &one, 2);
                        }
                }
                for (size_t t = 0; t < maxt; t++) {
                    for (size_t i = 0; i < n; i++) x[t * n + i] = frand() * (exact ? 1.0f : scales[si]);
                    mk_quantize_row_q8a_generic(n, x + t * n, qs + t * n, d + t * blocks, s + t * blocks);
                    if (exact)
                        for (size_t b = 0; b < blocks; b++) d[t * blocks + b] = 1.0f;
                }
                x8_interleave_q5_0_q6_k(q6, maxg, rb, w, x8);
                for (size_t ti = 0; ti < sizeof tok_counts / sizeof *tok_counts; ti++)
                    for (size_t ng = 1; ng <= maxg; ng++) {
                        const size_t ntok = tok_counts[ti], nrows = 8 * ng, ldo = nrows + 1;
                        int bad = 0;
                        for (int pass = 0; pass < 2; pass++) { /* 0: decode per token, 1: GEMM */
                            for (size_t i = 0; i < maxt * (8 * maxg + 1); i++) got[i] = -7.0f;
                            if (pass == 0)
                                for (size_t t = 0; t < ntok; t++)
                                    for (size_t g = 0; g < ng; g++)
                                        (q6 ? mk_vec_dot_x8_q6_k_q8a_avx2 : mk_vec_dot_x8_q5_0_q8a_avx2)(
                                            n, x8 + g * 8 * rb, qs + t * n, d + t * blocks, s + t * blocks,
                                            got + t * ldo + 8 * g);
                            else
                                (q6 ? mk_gemm_x8_q6_k_q8a_avx2 : mk_gemm_x8_q5_0_q8a_avx2)(n, ng, x8, ntok, qs, d,
                                                                                           s, got, ldo);
                            for (size_t t = 0; t < ntok; t++) {
                                for (size_t r = 0; r < nrows; r++) {
                                    const float gv = got[t * ldo + r];
                                    const float want =
                                        (q6 ? mk_vec_dot_q6_k_q8a_generic : mk_vec_dot_q5_0_q8a_generic)(
                                            n, w + r * rb, qs + t * n, d + t * blocks, s + t * blocks);
                                    float mag = 0;
                                    for (size_t i = 0; i < n; i++)
                                        mag += (exact ? 127.0f : wm[r * n + i]) * fabsf(d[t * blocks + i / 32] * qs[t * n + i]);
                                    const int ok = exact ? gv == want : fabsf(gv - want) <= 1e-5f * mag + 1e-30f;
                                    if (!ok && !bad)
                                        printf("FAIL avx2 x8 %s %s n=%zu groups=%zu tok=%zu (%zu,%zu) scale=%g: %g vs %g\n",
                                               pass ? "gemm" : "decode", q6 ? "q6_k" : "q5_0", n, ng, ntok, r, t,
                                               scales[si], gv, want);
                                    bad += !ok;
                                }
                                bad += got[t * ldo + nrows] != -7.0f;
                            }
                        }
                        *passed += !bad;
                        *failed += !!bad;
                    }
            }
            free(x), free(d), free(qs), free(s), free(w), free(x8), free(wm), free(got);
        }
    }
    printf("kernel avx2 q5_0/q6_k x8: tested\n");
}

/* Rows of IQ4_NL (18-byte blocks) or IQ4_XS (136-byte super-blocks) interleaved by eight as the
 * loader does (layouts in csrc/x86/avx2.c): `rows` holds 8·ng rows of rb bytes. */
static void x8_interleave_iq4(int xs, size_t ng, size_t rb, const uint8_t *rows, uint8_t *x8) {
    const size_t bb = xs ? 136 : 18, gbb = 8 * bb, units = rb / bb;
    for (size_t g = 0; g < ng; g++)
        for (size_t j = 0; j < units; j++) {
            uint8_t *dst = x8 + g * 8 * rb + j * gbb;
            if (xs) memset(dst + 16, 0, 48);
            for (int r = 0; r < 8; r++) {
                const uint8_t *b = rows + (8 * g + r) * rb + bb * j;
                memcpy(dst + 2 * r, b, 2);
                if (!xs) {
                    for (int v = 0; v < 4; v++) memcpy(dst + 16 + 32 * v + 4 * r, b + 2 + 4 * v, 4);
                    continue;
                }
                const int h = b[2] | (b[3] << 8);
                for (int i = 0; i < 8; i++) {
                    dst[16 + 4 * i + r / 2] |= (uint8_t)(((b[4 + i / 2] >> (4 * (i % 2))) & 15) << (4 * (r % 2)));
                    dst[48 + 2 * i + r / 4] |= (uint8_t)(((h >> (2 * i)) & 3) << (2 * (r % 4)));
                    for (int v = 0; v < 4; v++) memcpy(dst + 64 + 128 * i + 32 * v + 4 * r, b + 8 + 16 * i + 4 * v, 4);
                }
            }
        }
}

/* IQ4_NL and IQ4_XS interleaved by eight rows against the generic one-row kernels on the
 * original rows (decode per token and GEMM): IQ4_NL 1..70 blocks, IQ4_XS 1..5 super-blocks,
 * 1..3 groups, 1..65 tokens, scales 1e-6..3e4; bound 1e-5 · Σ|terms| (wm of make_legacy_row),
 * and for IQ4_NL also the exact mode (unit scales: integer sums, equal results). */
static void test_x8_iq4(int available, int *passed, int *failed) {
    if (!available) {
        printf("kernel avx2 iq4_nl/iq4_xs x8: not on this CPU\n");
        return;
    }
    const size_t tok_counts[] = {1, 4, 5, 64, 65};
    const float scales[] = {1.0f, 1e-6f, 3e4f, 0.0f};
    const size_t maxt = 65, maxg = 3;
    for (int xs = 0; xs < 2; xs++) {
        const size_t nl_units[] = {1, 2, 3, 7, 17, 64, 70}, xs_units[] = {1, 2, 5};
        const size_t nu = xs ? 3 : 7;
        for (size_t ui = 0; ui < nu; ui++) {
            const size_t units = xs ? xs_units[ui] : nl_units[ui];
            const size_t n = (xs ? 256 : 32) * units, blocks = n / 32, rb = (xs ? 136 : 18) * units;
            float *x = malloc(maxt * n * sizeof *x), *d = malloc(maxt * blocks * sizeof *d);
            int8_t *qs = malloc(maxt * n);
            int32_t *s = malloc(maxt * blocks * sizeof *s);
            uint8_t *w = malloc(8 * maxg * rb), *x8 = malloc(8 * maxg * rb);
            float *wm = malloc(8 * maxg * n * sizeof *wm);
            float *got = malloc(maxt * (8 * maxg + 1) * sizeof *got);
            for (int si = 0; si < 4; si++) {
                const int exact = scales[si] == 0.0f;
                if (exact && (xs || blocks > 17)) continue;
                for (size_t r = 0; r < 8 * maxg; r++) {
                    make_legacy_row(xs ? 4 : 3, units, exact ? 1.0f : scales[si], w + r * rb, wm + r * n);
                    if (exact)
                        for (size_t b = 0; b < units; b++) {
                            const uint16_t one = 0x3c00;
                            memcpy(w + r * rb + 18 * b, &one, 2);
                        }
                }
                for (size_t t = 0; t < maxt; t++) {
                    for (size_t i = 0; i < n; i++) x[t * n + i] = frand() * (exact ? 1.0f : scales[si]);
                    mk_quantize_row_q8a_generic(n, x + t * n, qs + t * n, d + t * blocks, s + t * blocks);
                    if (exact)
                        for (size_t b = 0; b < blocks; b++) d[t * blocks + b] = 1.0f;
                }
                x8_interleave_iq4(xs, maxg, rb, w, x8);
                for (size_t ti = 0; ti < sizeof tok_counts / sizeof *tok_counts; ti++)
                    for (size_t ng = 1; ng <= maxg; ng++) {
                        const size_t ntok = tok_counts[ti], nrows = 8 * ng, ldo = nrows + 1;
                        int bad = 0;
                        for (int pass = 0; pass < 2; pass++) { /* 0: decode per token, 1: GEMM */
                            for (size_t i = 0; i < maxt * (8 * maxg + 1); i++) got[i] = -7.0f;
                            if (pass == 0)
                                for (size_t t = 0; t < ntok; t++)
                                    for (size_t g = 0; g < ng; g++)
                                        (xs ? mk_vec_dot_x8_iq4_xs_q8a_avx2 : mk_vec_dot_x8_iq4_nl_q8a_avx2)(
                                            n, x8 + g * 8 * rb, qs + t * n, d + t * blocks, s + t * blocks,
                                            got + t * ldo + 8 * g);
                            else
                                (xs ? mk_gemm_x8_iq4_xs_q8a_avx2 : mk_gemm_x8_iq4_nl_q8a_avx2)(n, ng, x8, ntok, qs,
                                                                                              d, s, got, ldo);
                            for (size_t t = 0; t < ntok; t++) {
                                for (size_t r = 0; r < nrows; r++) {
                                    const float gv = got[t * ldo + r];
                                    const float want =
                                        (xs ? mk_vec_dot_iq4_xs_q8a_generic : mk_vec_dot_iq4_nl_q8a_generic)(
                                            n, w + r * rb, qs + t * n, d + t * blocks, s + t * blocks);
                                    float mag = 0;
                                    for (size_t i = 0; i < n; i++)
                                        mag += (exact ? 127.0f : wm[r * n + i]) * fabsf(d[t * blocks + i / 32] * qs[t * n + i]);
                                    const int ok = exact ? gv == want : fabsf(gv - want) <= 1e-5f * mag + 1e-30f;
                                    if (!ok && !bad)
                                        printf("FAIL avx2 x8 %s %s n=%zu groups=%zu tok=%zu (%zu,%zu) scale=%g: %g vs %g\n",
                                               pass ? "gemm" : "decode", xs ? "iq4_xs" : "iq4_nl", n, ng, ntok, r, t,
                                               scales[si], gv, want);
                                    bad += !ok;
                                }
                                bad += got[t * ldo + nrows] != -7.0f;
                            }
                        }
                        *passed += !bad;
                        *failed += !!bad;
                    }
            }
            free(x), free(d), free(qs), free(s), free(w), free(x8), free(wm), free(got);
        }
    }
    printf("kernel avx2 iq4_nl/iq4_xs x8: tested\n");
}

/* The several-token x8 decode kernels give, token by token, exactly the one-token kernels'
 * bits (what speculative verification relies on): random groups (small f16 scales), 1..8
 * tokens, Q4_0, Q4_K, Q5_0, Q6_K, Q4_1, Q5_1, Q5_K, IQ4_NL, IQ4_XS and Q3_K, compared with memcmp. */
static void test_x8_multi(int available, int *passed, int *failed) {
    if (!available) {
        printf("kernel avx2 x8 multi-token: not on this CPU\n");
        return;
    }
    const size_t n = 512, nb = n / 32, gb = 8 * 210 * (n / 256); /* ≥ every type's group */
    uint8_t *w = malloc(gb);
    int8_t *qs = malloc(8 * n);
    float *x = malloc(n * sizeof *x), *d = malloc(8 * nb * sizeof *d);
    int32_t *s = malloc(8 * nb * sizeof *s);
    for (int rep = 0; rep < 20; rep++) {
        for (size_t i = 0; i < gb; i++) {
            frand();
            w[i] = (uint8_t)(rng >> 24);
        }
        for (size_t i = 0; i < gb; i += 2) w[i + 1] &= 0x3b; /* every u16 a small finite f16 */
        for (size_t t = 0; t < 8; t++) {
            for (size_t i = 0; i < n; i++) x[i] = frand() * (rep % 3 ? 1.0f : 1e3f);
            mk_quantize_row_q8a_generic(n, x, qs + t * n, d + t * nb, s + t * nb);
        }
        const int8_t *qp[8];
        const float *dp[8];
        const int32_t *sp[8];
        for (int t = 0; t < 8; t++) qp[t] = qs + t * n, dp[t] = d + t * nb, sp[t] = s + t * nb;
        typedef void (*x8_fn)(size_t, const void *, const int8_t *, const float *, const int32_t *, float *);
        typedef void (*x8m_fn)(size_t, const void *, size_t, const int8_t *const *, const float *const *,
                               const int32_t *const *, float *, size_t);
        const x8_fn one_fn[10] = {mk_vec_dot_x8_q4_0_q8a_avx2, mk_vec_dot_x8_q4_k_q8a_avx2, mk_vec_dot_x8_q5_0_q8a_avx2,
                                 mk_vec_dot_x8_q6_k_q8a_avx2, mk_vec_dot_x8_q4_1_q8a_avx2, mk_vec_dot_x8_q5_1_q8a_avx2,
                                 mk_vec_dot_x8_q5_k_q8a_avx2, mk_vec_dot_x8_iq4_nl_q8a_avx2, mk_vec_dot_x8_iq4_xs_q8a_avx2,
                                  mk_vec_dot_x8_q3_k_q8a_avx2};
        const x8m_fn multi_fn[10] = {mk_vec_dot_x8_q4_0_q8a_multi_avx2, mk_vec_dot_x8_q4_k_q8a_multi_avx2,
                                    mk_vec_dot_x8_q5_0_q8a_multi_avx2, mk_vec_dot_x8_q6_k_q8a_multi_avx2,
                                    mk_vec_dot_x8_q4_1_q8a_multi_avx2, mk_vec_dot_x8_q5_1_q8a_multi_avx2,
                                    mk_vec_dot_x8_q5_k_q8a_multi_avx2, mk_vec_dot_x8_iq4_nl_q8a_multi_avx2,
                                    mk_vec_dot_x8_iq4_xs_q8a_multi_avx2, mk_vec_dot_x8_q3_k_q8a_multi_avx2};
        const char *names[10] = {"q4_0", "q4_k", "q5_0", "q6_k", "q4_1", "q5_1", "q5_k", "iq4_nl", "iq4_xs", "q3_k"};
        for (int ty = 0; ty < 10; ty++)
            for (size_t ntok = 1; ntok <= 8; ntok++) {
                float one[8 * 8], multi[8 * 8];
                for (size_t t = 0; t < ntok; t++) one_fn[ty](n, w, qp[t], dp[t], sp[t], one + 8 * t);
                multi_fn[ty](n, w, ntok, qp, dp, sp, multi, 8);
                const int ok = memcmp(one, multi, 8 * ntok * sizeof(float)) == 0;
                *passed += ok;
                *failed += !ok;
                if (!ok) printf("FAIL avx2 x8 multi %s ntok=%zu rep=%d\n", names[ty], ntok, rep);
            }
    }
    free(w), free(qs), free(x), free(d), free(s);
    printf("kernel avx2 x8 multi-token: tested\n");
}

/* Q4_1 (20-byte blocks) and Q5_1 (24) interleaved by eight rows as the loader does (layouts in
 * csrc/x86/avx2.c): per block the rows' d, their m, Q5_1's fifth bits transposed as Q5_0 x8,
 * then the Q4_0 x8 nibble vectors. */
static void x8_interleave_q4_1_q5_1(int five, size_t ng, size_t rb, const uint8_t *rows, uint8_t *x8) {
    const size_t bb = five ? 24 : 20, gbb = 8 * bb, nib = five ? 64 : 32, qs = bb - 16;
    for (size_t g = 0; g < ng; g++)
        for (size_t j = 0; j < rb / bb; j++) {
            uint8_t *dst = x8 + g * 8 * rb + j * gbb;
            for (int r = 0; r < 8; r++) {
                const uint8_t *b = rows + (8 * g + r) * rb + bb * j;
                memcpy(dst + 2 * r, b, 2);
                memcpy(dst + 16 + 2 * r, b + 2, 2);
                if (five) {
                    uint32_t qh;
                    memcpy(&qh, b + 4, 4);
                    for (int k = 0; k < 4; k++) {
                        uint8_t t = 0;
                        for (int c = 0; c < 8; c++) t |= (uint8_t)(((qh >> (4 * c + k)) & 1u) << c);
                        dst[32 + 4 * r + k] = t;
                    }
                }
                for (int v = 0; v < 4; v++) memcpy(dst + nib + 32 * v + 4 * r, b + qs + 4 * v, 4);
            }
        }
}

/* Q4_1 and Q5_1 x8 against the generic one-row kernels on the original rows (decode per token
 * and GEMM): 1..70 blocks, 1..3 groups, 1..65 tokens, scales 1e-6..3e4; bound 1e-5 · Σ|terms|
 * (wm of make_legacy_row: |d|·48 + |m| per element). */
static void test_x8_q4_1_q5_1(int available, int *passed, int *failed) {
    if (!available) {
        printf("kernel avx2 q4_1/q5_1 x8: not on this CPU\n");
        return;
    }
    const size_t tok_counts[] = {1, 4, 5, 64, 65}, block_counts[] = {1, 2, 3, 7, 17, 64, 70};
    const float scales[] = {1.0f, 1e-6f, 3e4f};
    const size_t maxt = 65, maxg = 3;
    for (int five = 0; five < 2; five++)
        for (size_t bi = 0; bi < sizeof block_counts / sizeof *block_counts; bi++) {
            const size_t blocks = block_counts[bi], n = 32 * blocks, rb = (five ? 24 : 20) * blocks;
            float *x = malloc(maxt * n * sizeof *x), *d = malloc(maxt * blocks * sizeof *d);
            int8_t *qs = malloc(maxt * n);
            int32_t *s = malloc(maxt * blocks * sizeof *s);
            uint8_t *w = malloc(8 * maxg * rb), *x8 = malloc(8 * maxg * rb);
            float *wm = malloc(8 * maxg * n * sizeof *wm);
            float *got = malloc(maxt * (8 * maxg + 1) * sizeof *got);
            for (int si = 0; si < 3; si++) {
                for (size_t r = 0; r < 8 * maxg; r++) make_legacy_row(five ? 2 : 0, blocks, scales[si], w + r * rb, wm + r * n);
                for (size_t t = 0; t < maxt; t++) {
                    for (size_t i = 0; i < n; i++) x[t * n + i] = frand() * scales[si];
                    mk_quantize_row_q8a_generic(n, x + t * n, qs + t * n, d + t * blocks, s + t * blocks);
                }
                x8_interleave_q4_1_q5_1(five, maxg, rb, w, x8);
                for (size_t ti = 0; ti < sizeof tok_counts / sizeof *tok_counts; ti++)
                    for (size_t ng = 1; ng <= maxg; ng++) {
                        const size_t ntok = tok_counts[ti], nrows = 8 * ng, ldo = nrows + 1;
                        int bad = 0;
                        for (int pass = 0; pass < 2; pass++) { /* 0: decode per token, 1: GEMM */
                            for (size_t i = 0; i < maxt * (8 * maxg + 1); i++) got[i] = -7.0f;
                            if (pass == 0)
                                for (size_t t = 0; t < ntok; t++)
                                    for (size_t g = 0; g < ng; g++)
                                        (five ? mk_vec_dot_x8_q5_1_q8a_avx2 : mk_vec_dot_x8_q4_1_q8a_avx2)(
                                            n, x8 + g * 8 * rb, qs + t * n, d + t * blocks, s + t * blocks,
                                            got + t * ldo + 8 * g);
                            else
                                (five ? mk_gemm_x8_q5_1_q8a_avx2 : mk_gemm_x8_q4_1_q8a_avx2)(n, ng, x8, ntok, qs, d, s,
                                                                                             got, ldo);
                            for (size_t t = 0; t < ntok; t++) {
                                for (size_t r = 0; r < nrows; r++) {
                                    const float gv = got[t * ldo + r];
                                    const float want = (five ? mk_vec_dot_q5_1_q8a_generic : mk_vec_dot_q4_1_q8a_generic)(
                                        n, w + r * rb, qs + t * n, d + t * blocks, s + t * blocks);
                                    float mag = 0;
                                    for (size_t i = 0; i < n; i++)
                                        mag += wm[r * n + i] * fabsf(d[t * blocks + i / 32] * qs[t * n + i]);
                                    const int ok = fabsf(gv - want) <= 1e-5f * mag + 1e-30f;
                                    if (!ok && !bad)
                                        printf("FAIL avx2 x8 %s %s n=%zu groups=%zu tok=%zu (%zu,%zu) scale=%g: %g vs %g\n",
                                               pass ? "gemm" : "decode", five ? "q5_1" : "q4_1", n, ng, ntok, r, t,
                                               scales[si], gv, want);
                                    bad += !ok;
                                }
                                bad += got[t * ldo + nrows] != -7.0f;
                            }
                        }
                        *passed += !bad;
                        *failed += !!bad;
                    }
            }
            free(x), free(d), free(qs), free(s), free(w), free(x8), free(wm), free(got);
        }
    printf("kernel avx2 q4_1/q5_1 x8: tested\n");
}

/* Q2_K (84-byte super-blocks) interleaved by eight rows as the loader does (layout in
 * csrc/x86/avx2.c): per super-block the rows' d, dmin, scale/min byte pairs per activation block,
 * then per half the code bytes as 4-bytes-per-row vectors. */
static void x8_interleave_q2_k(size_t ng, size_t rb, const uint8_t *rows, uint8_t *x8) {
    for (size_t g = 0; g < ng; g++)
        for (size_t j = 0; j < rb / 84; j++) {
            uint8_t *dst = x8 + g * 8 * rb + j * 672;
            for (int r = 0; r < 8; r++) {
                const uint8_t *b = rows + (8 * g + r) * rb + 84 * j;
                memcpy(dst + 2 * r, b + 80, 2);
                memcpy(dst + 16 + 2 * r, b + 82, 2);
                for (int i = 0; i < 8; i++) memcpy(dst + 32 + 16 * i + 2 * r, b + 2 * i, 2);
                for (int h = 0; h < 2; h++)
                    for (int v = 0; v < 8; v++) memcpy(dst + 160 + 256 * h + 32 * v + 4 * r, b + 16 + 32 * h + 4 * v, 4);
            }
        }
}

/* Q2_K interleaved by eight rows against the generic one-row kernel on the original rows
 * (decode per token and GEMM; 1..5 super-blocks, 1..3 groups, 1..65 tokens, scales 1e-6..3e4,
 * bound 1e-5 · Σ|d·sc·3 + dmin·m|·|x|), and the multi-token kernel against the one-token one
 * (memcmp, 1..8 tokens). */
static void test_x8_q2_k(int available, int *passed, int *failed) {
    if (!available) {
        printf("kernel avx2 q2_k x8: not on this CPU\n");
        return;
    }
    const size_t tok_counts[] = {1, 4, 5, 64, 65}, units_list[] = {1, 2, 5};
    const float scales[] = {1.0f, 1e-6f, 3e4f};
    const size_t maxt = 65, maxg = 3;
    for (size_t ui = 0; ui < 3; ui++) {
        const size_t units = units_list[ui], n = 256 * units, blocks = n / 32, rb = 84 * units;
        float *x = malloc(maxt * n * sizeof *x), *d = malloc(maxt * blocks * sizeof *d);
        int8_t *qs = malloc(maxt * n);
        int32_t *s = malloc(maxt * blocks * sizeof *s);
        uint8_t *w = malloc(8 * maxg * rb), *x8 = malloc(8 * maxg * rb);
        float *wm = malloc(8 * maxg * n * sizeof *wm);
        float *got = malloc(maxt * (8 * maxg + 1) * sizeof *got);
        for (int si = 0; si < 3; si++) {
            for (size_t r = 0; r < 8 * maxg; r++)
                for (size_t sb = 0; sb < units; sb++) {
                    uint8_t *b = w + r * rb + 84 * sb;
                    for (int i = 0; i < 84; i++) {
                        frand();
                        b[i] = (uint8_t)(rng >> 24);
                    }
                    if (sb == 0 && r == 0) b[0] = b[1] = 0xff; /* scale and min 15 */
                    const uint16_t dh = f32_to_f16_bits(frand() * scales[si] / 15.0f);
                    const uint16_t mh = f32_to_f16_bits(frand() * scales[si] / 15.0f);
                    memcpy(b + 80, &dh, 2);
                    memcpy(b + 82, &mh, 2);
                    const float df = fabsf(mk_f16_to_f32(dh)), mf = fabsf(mk_f16_to_f32(mh));
                    for (int e = 0; e < 256; e++)
                        wm[r * n + 256 * sb + e] = df * (float)(b[e / 16] & 15) * 3.0f + mf * (float)(b[e / 16] >> 4);
                }
            for (size_t t = 0; t < maxt; t++) {
                for (size_t i = 0; i < n; i++) x[t * n + i] = frand() * scales[si];
                mk_quantize_row_q8a_generic(n, x + t * n, qs + t * n, d + t * blocks, s + t * blocks);
            }
            x8_interleave_q2_k(maxg, rb, w, x8);
            for (size_t ti = 0; ti < sizeof tok_counts / sizeof *tok_counts; ti++)
                for (size_t ng = 1; ng <= maxg; ng++) {
                    const size_t ntok = tok_counts[ti], nrows = 8 * ng, ldo = nrows + 1;
                    int bad = 0;
                    for (int pass = 0; pass < 2; pass++) { /* 0: decode per token, 1: GEMM */
                        for (size_t i = 0; i < maxt * (8 * maxg + 1); i++) got[i] = -7.0f;
                        if (pass == 0)
                            for (size_t t = 0; t < ntok; t++)
                                for (size_t g = 0; g < ng; g++)
                                    mk_vec_dot_x8_q2_k_q8a_avx2(n, x8 + g * 8 * rb, qs + t * n, d + t * blocks,
                                                                s + t * blocks, got + t * ldo + 8 * g);
                        else
                            mk_gemm_x8_q2_k_q8a_avx2(n, ng, x8, ntok, qs, d, s, got, ldo);
                        for (size_t t = 0; t < ntok; t++) {
                            for (size_t r = 0; r < nrows; r++) {
                                const float gv = got[t * ldo + r];
                                const float want = mk_vec_dot_q2_k_q8a_generic(n, w + r * rb, qs + t * n,
                                                                               d + t * blocks, s + t * blocks);
                                float mag = 0;
                                for (size_t i = 0; i < n; i++)
                                    mag += wm[r * n + i] * fabsf(d[t * blocks + i / 32] * qs[t * n + i]);
                                const int ok = fabsf(gv - want) <= 1e-5f * mag + 1e-30f;
                                if (!ok && !bad)
                                    printf("FAIL avx2 x8 %s q2_k n=%zu groups=%zu tok=%zu (%zu,%zu) scale=%g: %g vs %g\n",
                                           pass ? "gemm" : "decode", n, ng, ntok, r, t, scales[si], gv, want);
                                bad += !ok;
                            }
                            bad += got[t * ldo + nrows] != -7.0f;
                        }
                    }
                    *passed += !bad;
                    *failed += !!bad;
                }
            for (size_t g = 0; g < maxg; g++) {
                const int8_t *qp[8];
                const float *dp[8];
                const int32_t *sp[8];
                for (int t = 0; t < 8; t++) qp[t] = qs + t * n, dp[t] = d + t * blocks, sp[t] = s + t * blocks;
                for (size_t ntok = 1; ntok <= 8; ntok++) {
                    float one[8 * 8], multi[8 * 8];
                    for (size_t t = 0; t < ntok; t++)
                        mk_vec_dot_x8_q2_k_q8a_avx2(n, x8 + g * 8 * rb, qp[t], dp[t], sp[t], one + 8 * t);
                    mk_vec_dot_x8_q2_k_q8a_multi_avx2(n, x8 + g * 8 * rb, ntok, qp, dp, sp, multi, 8);
                    const int ok = memcmp(one, multi, 8 * ntok * sizeof(float)) == 0;
                    *passed += ok;
                    *failed += !ok;
                    if (!ok) printf("FAIL avx2 x8 multi q2_k n=%zu ntok=%zu\n", n, ntok);
                }
            }
        }
        free(x), free(d), free(qs), free(s), free(w), free(x8), free(wm), free(got);
    }
    printf("kernel avx2 q2_k x8: tested\n");
}

/* Rows of Q3_K (110-byte super-blocks) interleaved by eight as the loader does (layout in
 * csrc/x86/avx2.c): per super-block the rows' d, the low nibbles of the scales per block pair
 * and their high 2 bits per half (one byte per row and scale of a block), the two qs chunks and
 * the hmask as 4-bytes-per-row vectors. */
static void x8_interleave_q3_k(size_t ng, size_t rb, const uint8_t *rows, uint8_t *x8) {
    const size_t units = rb / 110;
    for (size_t g = 0; g < ng; g++)
        for (size_t u = 0; u < units; u++) {
            uint8_t *dst = x8 + g * 8 * rb + u * 880;
            memset(dst, 0, 880);
            for (int r = 0; r < 8; r++) {
                const uint8_t *b = rows + (8 * g + r) * rb + 110 * u, *sp = b + 96;
                memcpy(dst + 2 * r, b + 108, 2);
                int sc[16];
                for (int i = 0; i < 16; i++)
                    sc[i] = ((sp[i % 8] >> (4 * (i / 8))) & 15) | (((sp[8 + i % 4] >> (2 * (i / 4))) & 3) << 4);
                for (int i = 0; i < 16; i++) { /* scale i: block j = i / 2, c = i % 2 */
                    const int j = i / 2, c = i % 2;
                    dst[16 + 16 * (j / 2) + 2 * r + c] |= (uint8_t)((sc[i] & 15) << (4 * (j % 2)));
                    dst[80 + 16 * (j / 4) + 2 * r + c] |= (uint8_t)((sc[i] >> 4) << (2 * (j % 4)));
                }
                for (int v = 0; v < 8; v++) {
                    memcpy(dst + 112 + 32 * v + 4 * r, b + 32 + 4 * v, 4);
                    memcpy(dst + 368 + 32 * v + 4 * r, b + 64 + 4 * v, 4);
                    for (int k = 0; k < 4; k++) { /* hmask bit j at bit {2,3,6,7,0,1,4,5}[j] */
                        static const int pos[8] = {2, 3, 6, 7, 0, 1, 4, 5};
                        uint8_t m = 0;
                        for (int j = 0; j < 8; j++) m |= (uint8_t)(((b[4 * v + k] >> j) & 1) << pos[j]);
                        dst[624 + 32 * v + 4 * r + k] = m;
                    }
                }
            }
        }
}

/* Q3_K interleaved by eight rows against the generic one-row kernel on the original rows
 * (decode per token and GEMM): 1..5 super-blocks, 1..3 groups, 1..65 tokens, scales
 * 1e-6..3e4; bound 1e-5 · Σ|terms| (wm of make_low_k_row). */
static void test_x8_q3_k(int available, int *passed, int *failed) {
    if (!available) {
        printf("kernel avx2 q3_k x8: not on this CPU\n");
        return;
    }
    const size_t tok_counts[] = {1, 4, 5, 64, 65}, units_list[] = {1, 2, 5};
    const float scales[] = {1.0f, 1e-6f, 3e4f};
    const size_t maxt = 65, maxg = 3;
    for (size_t ui = 0; ui < 3; ui++) {
        const size_t units = units_list[ui], n = 256 * units, blocks = n / 32, rb = 110 * units;
        float *x = malloc(maxt * n * sizeof *x), *d = malloc(maxt * blocks * sizeof *d);
        int8_t *qs = malloc(maxt * n);
        int32_t *s = malloc(maxt * blocks * sizeof *s);
        uint8_t *w = malloc(8 * maxg * rb), *x8 = malloc(8 * maxg * rb);
        float *wm = malloc(8 * maxg * n * sizeof *wm);
        float *got = malloc(maxt * (8 * maxg + 1) * sizeof *got);
        for (int si = 0; si < 3; si++) {
            for (size_t r = 0; r < 8 * maxg; r++) make_low_k_row(1, units, scales[si], w + r * rb, wm + r * n);
            for (size_t t = 0; t < maxt; t++) {
                for (size_t i = 0; i < n; i++) x[t * n + i] = frand() * scales[si];
                mk_quantize_row_q8a_generic(n, x + t * n, qs + t * n, d + t * blocks, s + t * blocks);
            }
            x8_interleave_q3_k(maxg, rb, w, x8);
            for (size_t ti = 0; ti < sizeof tok_counts / sizeof *tok_counts; ti++)
                for (size_t ng = 1; ng <= maxg; ng++) {
                    const size_t ntok = tok_counts[ti], nrows = 8 * ng, ldo = nrows + 1;
                    int bad = 0;
                    for (int pass = 0; pass < 2; pass++) { /* 0: decode per token, 1: GEMM */
                        for (size_t i = 0; i < maxt * (8 * maxg + 1); i++) got[i] = -7.0f;
                        if (pass == 0)
                            for (size_t t = 0; t < ntok; t++)
                                for (size_t g = 0; g < ng; g++)
                                    mk_vec_dot_x8_q3_k_q8a_avx2(n, x8 + g * 8 * rb, qs + t * n, d + t * blocks,
                                                                s + t * blocks, got + t * ldo + 8 * g);
                        else
                            mk_gemm_x8_q3_k_q8a_avx2(n, ng, x8, ntok, qs, d, s, got, ldo);
                        for (size_t t = 0; t < ntok; t++) {
                            for (size_t r = 0; r < nrows; r++) {
                                const float gv = got[t * ldo + r];
                                const float want = mk_vec_dot_q3_k_q8a_generic(n, w + r * rb, qs + t * n,
                                                                               d + t * blocks, s + t * blocks);
                                float mag = 0;
                                for (size_t i = 0; i < n; i++)
                                    mag += wm[r * n + i] * fabsf(d[t * blocks + i / 32] * qs[t * n + i]);
                                const int ok = fabsf(gv - want) <= 1e-5f * mag + 1e-30f;
                                if (!ok && !bad)
                                    printf("FAIL avx2 x8 %s q3_k n=%zu groups=%zu tok=%zu (%zu,%zu) scale=%g: %g vs %g\n",
                                           pass ? "gemm" : "decode", n, ng, ntok, r, t, scales[si], gv, want);
                                bad += !ok;
                            }
                            bad += got[t * ldo + nrows] != -7.0f;
                        }
                    }
                    *passed += !bad;
                    *failed += !!bad;
                }
        }
        free(x), free(d), free(qs), free(s), free(w), free(x8), free(wm), free(got);
    }
    printf("kernel avx2 q3_k x8: tested\n");
}
#endif
