/* The ISA kernels of the low-bit types (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M,
 * TQ1_0, TQ2_0, MXFP4, NVFP4, Q1_0, Q2_0; csrc/x86/iquants_avx2.c, csrc/arm/iquants_dotprod.c, csrc/arm/iquants_neon.c) against the generic ones
 * (csrc/generic/iquants.c), as a standalone C program: tools/test.sh runs it natively on
 * x86-64 and, cross-compiled, under qemu-aarch64 -cpu max. Rows of 1..9 super-blocks (MXFP4:
 * 1..40 blocks; NVFP4, Q2_0: 1..20; Q1_0: 1..10) of random bytes (every index, sign, scale and
 * delta pattern is a valid block) with f16 scales (MXFP4: E8M0 exponents; NVFP4: random UE4M3
 * bytes, every third block 0x7F, 0xFF, 0x80, 0x07, and all four zero for scale 0) around 1, 1e-3, 30 and zero, each row ending at an
 * inaccessible page. Integer block sums are exact, so results may differ only by float
 * summation order: |a - b| ≤ 1e-5 · Σ kmax·|d|·|dx·q| with kmax the type's largest
 * |weight / d|. Prints "N passed, M failed". */
#define _DEFAULT_SOURCE /* mmap, MAP_ANONYMOUS (guard pages) */
#include "moela_kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef float (*dot_fn)(size_t, const void *, const int8_t *, const float *, const int32_t *);

enum { IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M, TQ1_0, TQ2_0, MXFP4, NVFP4, Q1_0, Q2_0, NTYPES };

static const struct {
    const char *name;
    size_t be, bb;
    int dpos; /* byte offset of the f16 d; -1: IQ1_M (spread over the scales), -2: MXFP4,
                 -3: NVFP4 */
    float kmax;
    dot_fn ref;
} types[NTYPES] = {
    {"iq2_xxs", 256, 66, 0, 15.5f * 0.25f * 43.0f, mk_vec_dot_iq2_xxs_q8a_generic},
    {"iq2_xs", 256, 74, 0, 15.5f * 0.25f * 43.0f, mk_vec_dot_iq2_xs_q8a_generic},
    {"iq2_s", 256, 82, 0, 15.5f * 0.25f * 43.0f, mk_vec_dot_iq2_s_q8a_generic},
    {"iq3_xxs", 256, 98, 0, 15.5f * 0.5f * 62.0f, mk_vec_dot_iq3_xxs_q8a_generic},
    {"iq3_s", 256, 110, 0, 31.0f * 15.0f, mk_vec_dot_iq3_s_q8a_generic},
    {"iq1_s", 256, 50, 0, 15.0f * 1.125f, mk_vec_dot_iq1_s_q8a_generic},
    {"iq1_m", 256, 56, -1, 15.0f * 1.125f, mk_vec_dot_iq1_m_q8a_generic},
    {"tq1_0", 256, 54, 52, 1.0f, mk_vec_dot_tq1_0_q8a_generic},
    {"tq2_0", 256, 66, 64, 2.0f, mk_vec_dot_tq2_0_q8a_generic},
    {"mxfp4", 32, 17, -2, 12.0f, mk_vec_dot_mxfp4_q8a_generic},
    {"nvfp4", 64, 36, -3, 12.0f * 240.0f, mk_vec_dot_nvfp4_q8a_generic},
    {"q1_0", 128, 18, 0, 1.0f, mk_vec_dot_q1_0_q8a_generic},
    {"q2_0", 64, 18, 0, 2.0f, mk_vec_dot_q2_0_q8a_generic},
};

struct kernel {
    const char *set;
    int type;
    dot_fn f;
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

/* Random blocks of type t with scales around `scale`; dabs[blk] gets each block's |d|. */
static void make_row(int t, size_t blocks, float scale, uint8_t *row, float *dabs) {
    for (size_t blk = 0; blk < blocks; blk++) {
        uint8_t *b = row + types[t].bb * blk;
        for (size_t i = 0; i < types[t].bb; i++) {
            frand();
            b[i] = (uint8_t)(rng >> 24);
        }
        float v = scale * (0.5f + 0.5f * fabsf(frand())) * (frand() < 0 ? -1.0f : 1.0f);
        if (t == NVFP4) {
            /* Random scale bytes (their magnitude is in kmax, dabs 1), all zero for scale 0. */
            static const uint8_t special[4] = {0x7F, 0xFF, 0x80, 0x07}; /* 0, 240, 0, 7/1024 */
            if (blk % 3 == 1) memcpy(b, special, 4);
            if (scale == 0.0f) memset(b, 0, 4);
            dabs[blk] = 1.0f;
            continue;
        }
        if (t == MXFP4) {
            int e = scale == 0.0f ? 0 : (int)lroundf(128.0f + log2f(fabsf(v)));
            b[0] = (uint8_t)e;
            uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
            memcpy(&dabs[blk], &bits, 4);
            continue;
        }
        uint16_t h = f32_to_f16_bits(v);
        dabs[blk] = fabsf(mk_f16_to_f32(h));
        if (t == IQ1_M) {
            for (int k = 0; k < 4; k++)
                b[49 + 2 * k] = (uint8_t)((b[49 + 2 * k] & 0x0f) | (((h >> (4 * k)) & 15) << 4));
        } else {
            memcpy(b + types[t].dpos, &h, 2);
        }
    }
}

#if defined(__x86_64__)
typedef void (*gemm_fn)(size_t, size_t, const void *, size_t, size_t, const int8_t *, const float *,
                        const int32_t *, float *, size_t);

/* The AVX2 prefill GEMMs against the generic one-row kernel per (row, token): 5 rows of
 * 1, 3 and 9 super-blocks (9: past one unpacked chunk of 8), 1-130 tokens (past one slice of
 * 64, odd tails); rows end at a guard page, the column past the rows stays untouched. */
static void test_gemms(int *passed, int *failed) {
    static const struct { int type; gemm_fn f; } gs[] = {
        {IQ2_XXS, mk_gemm_iq2_xxs_q8a_avx2}, {IQ3_XXS, mk_gemm_iq3_xxs_q8a_avx2},
        {IQ2_XS, mk_gemm_iq2_xs_q8a_avx2},   {IQ2_S, mk_gemm_iq2_s_q8a_avx2},
        {IQ3_S, mk_gemm_iq3_s_q8a_avx2},     {IQ1_S, mk_gemm_iq1_s_q8a_avx2},
        {IQ1_M, mk_gemm_iq1_m_q8a_avx2},
    };
    const size_t nrows = 5, ldo = 6;
    for (size_t k = 0; k < sizeof gs / sizeof gs[0]; k++) {
        const int t = gs[k].type;
        static const size_t nsbs[] = {1, 3, 9}, ntoks[] = {1, 2, 3, 65, 130};
        for (size_t a = 0; a < 3; a++) {
            const size_t nsb = nsbs[a], n = 256 * nsb, rb = types[t].bb * nsb;
            uint8_t *end = guarded_end(nrows * rb), *w = end - nrows * rb;
            float *dabs = malloc(nrows * nsb * sizeof *dabs);
            for (size_t r = 0; r < nrows; r++) make_row(t, nsb, r == 3 ? 0.0f : 1.0f, w + r * rb, dabs + r * nsb);
            for (size_t b = 0; b < 5; b++) {
                const size_t ntok = ntoks[b], blocks = ntok * n / 32;
                float *x = malloc(ntok * n * sizeof *x), *d = malloc(blocks * sizeof *d);
                float *out = malloc(ntok * ldo * sizeof *out);
                int8_t *qs = malloc(ntok * n);
                int32_t *s = malloc(blocks * sizeof *s);
                for (size_t i = 0; i < ntok * n; i++) x[i] = frand() * 1.7f;
                for (size_t tk = 0; tk < ntok; tk++)
                    mk_quantize_row_q8a_generic(n, x + tk * n, qs + tk * n, d + tk * n / 32, s + tk * n / 32);
                for (size_t i = 0; i < ntok * ldo; i++) out[i] = -7.0f;
                gs[k].f(n, nrows, w, rb, ntok, qs, d, s, out, ldo);
                int ok = 1;
                for (size_t tk = 0; tk < ntok; tk++) {
                    const int8_t *q = qs + tk * n;
                    const float *dt = d + tk * n / 32;
                    const int32_t *st = s + tk * n / 32;
                    ok &= out[tk * ldo + nrows] == -7.0f;
                    for (size_t r = 0; r < nrows; r++) {
                        float mag = 0;
                        for (size_t i = 0; i < n; i++)
                            mag += types[t].kmax * dabs[r * nsb + i / 256] * fabsf(dt[i / 32] * q[i]);
                        const float want = types[t].ref(n, w + r * rb, q, dt, st), got = out[tk * ldo + r];
                        if (!(fabsf(got - want) <= 1e-5f * mag + 1e-30f)) {
                            if (ok) printf("FAIL gemm avx2 %s n=%zu ntok=%zu (%zu,%zu): %g vs %g\n", types[t].name, n,
                                           ntok, r, tk, got, want);
                            ok = 0;
                        }
                    }
                }
                *passed += ok;
                *failed += !ok;
                free(x), free(d), free(out), free(qs), free(s);
            }
            size_t page = (size_t)sysconf(_SC_PAGESIZE), len = (nrows * rb + page - 1) / page * page;
            munmap(end - len, len + page);
            free(dabs);
        }
        printf("gemm avx2 %s: tested\n", types[t].name);
    }
}
#endif

int main(void) {
    struct kernel ks[] = {
#if defined(__x86_64__)
        {"avx2", TQ2_0, mk_vec_dot_tq2_0_q8a_avx2},
        {"avx2", TQ1_0, mk_vec_dot_tq1_0_q8a_avx2},
        {"avx2", IQ2_XXS, mk_vec_dot_iq2_xxs_q8a_avx2},
        {"avx2", IQ3_XXS, mk_vec_dot_iq3_xxs_q8a_avx2},
        {"avx2", IQ2_XS, mk_vec_dot_iq2_xs_q8a_avx2},
        {"avx2", IQ2_S, mk_vec_dot_iq2_s_q8a_avx2},
        {"avx2", IQ3_S, mk_vec_dot_iq3_s_q8a_avx2},
        {"avx2", IQ1_S, mk_vec_dot_iq1_s_q8a_avx2},
        {"avx2", IQ1_M, mk_vec_dot_iq1_m_q8a_avx2},
        {"avx2", MXFP4, mk_vec_dot_mxfp4_q8a_avx2},
        {"avx2", NVFP4, mk_vec_dot_nvfp4_q8a_avx2},
        {"avx2", Q1_0, mk_vec_dot_q1_0_q8a_avx2},
        {"avx2", Q2_0, mk_vec_dot_q2_0_q8a_avx2},
#elif defined(__aarch64__)
        {"dotprod", IQ2_XXS, mk_vec_dot_iq2_xxs_q8a_dotprod},
        {"dotprod", IQ3_XXS, mk_vec_dot_iq3_xxs_q8a_dotprod},
        {"dotprod", IQ1_S, mk_vec_dot_iq1_s_q8a_dotprod},
        {"dotprod", TQ2_0, mk_vec_dot_tq2_0_q8a_dotprod},
        {"dotprod", TQ1_0, mk_vec_dot_tq1_0_q8a_dotprod},
        {"dotprod", IQ2_XS, mk_vec_dot_iq2_xs_q8a_dotprod},
        {"dotprod", IQ2_S, mk_vec_dot_iq2_s_q8a_dotprod},
        {"dotprod", IQ3_S, mk_vec_dot_iq3_s_q8a_dotprod},
        {"dotprod", IQ1_M, mk_vec_dot_iq1_m_q8a_dotprod},
        {"dotprod", MXFP4, mk_vec_dot_mxfp4_q8a_dotprod},
        {"dotprod", NVFP4, mk_vec_dot_nvfp4_q8a_dotprod},
        {"dotprod", Q1_0, mk_vec_dot_q1_0_q8a_dotprod},
        {"dotprod", Q2_0, mk_vec_dot_q2_0_q8a_dotprod},
        {"neon", IQ2_XXS, mk_vec_dot_iq2_xxs_q8a_neon},
        {"neon", IQ3_XXS, mk_vec_dot_iq3_xxs_q8a_neon},
        {"neon", IQ1_S, mk_vec_dot_iq1_s_q8a_neon},
        {"neon", TQ2_0, mk_vec_dot_tq2_0_q8a_neon},
        {"neon", TQ1_0, mk_vec_dot_tq1_0_q8a_neon},
        {"neon", IQ2_XS, mk_vec_dot_iq2_xs_q8a_neon},
        {"neon", IQ2_S, mk_vec_dot_iq2_s_q8a_neon},
        {"neon", IQ3_S, mk_vec_dot_iq3_s_q8a_neon},
        {"neon", IQ1_M, mk_vec_dot_iq1_m_q8a_neon},
        {"neon", MXFP4, mk_vec_dot_mxfp4_q8a_neon},
        {"neon", NVFP4, mk_vec_dot_nvfp4_q8a_neon},
        {"neon", Q1_0, mk_vec_dot_q1_0_q8a_neon},
        {"neon", Q2_0, mk_vec_dot_q2_0_q8a_neon},
#endif
    };
    const int nk = (int)(sizeof ks / sizeof ks[0]);
#if defined(__x86_64__)
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
          __builtin_cpu_supports("f16c"))) {
        printf("kernel avx2: not on this CPU\n0 passed, 0 failed\n");
        return 0;
    }
#endif
    int passed = 0, failed = 0;
    const float scales[] = {1.0f, 1e-3f, 30.0f, 0.0f};
    for (int k = 0; k < nk; k++) {
        const int t = ks[k].type;
        const size_t be = types[t].be, maxb = be == 32 ? 40 : be == 64 ? 20 : be == 128 ? 10 : 9;
        for (size_t nbk = 1; nbk <= maxb; nbk++) {
            const size_t n = be * nbk, blocks = n / 32, bytes = types[t].bb * nbk;
            float *x = malloc(n * sizeof *x), *d = malloc(blocks * sizeof *d), *dabs = malloc(nbk * sizeof *dabs);
            int8_t *qs = malloc(n);
            int32_t *s = malloc(blocks * sizeof *s);
            uint8_t *end = guarded_end(bytes), *row = end - bytes;
            for (int si = 0; si < 4; si++) {
                for (size_t i = 0; i < n; i++) x[i] = frand() * 1.7f;
                mk_quantize_row_q8a_generic(n, x, qs, d, s);
                make_row(t, nbk, scales[si], row, dabs);
                float mag = 0;
                for (size_t i = 0; i < n; i++) mag += types[t].kmax * dabs[i / be] * fabsf(d[i / 32] * qs[i]);
                float r = types[t].ref(n, row, qs, d, s), g = ks[k].f(n, row, qs, d, s);
                int ok = fabsf(g - r) <= 1e-5f * mag + 1e-30f;
                passed += ok;
                failed += !ok;
                if (!ok)
                    printf("FAIL %s %s n=%zu scale=%g: %g vs generic %g (mag %g)\n", ks[k].set, types[t].name,
                           n, scales[si], g, r, mag);
            }
            size_t page = (size_t)sysconf(_SC_PAGESIZE);
            munmap(end - (bytes + page - 1) / page * page, (bytes + page - 1) / page * page + page);
            free(x), free(d), free(dabs), free(qs), free(s);
        }
    }
    for (int k = 0; k < nk; k++) printf("kernel %s %s: tested\n", ks[k].set, types[ks[k].type].name);
#if defined(__x86_64__)
    test_gemms(&passed, &failed);
#endif
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
