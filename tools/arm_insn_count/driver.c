/* Driver of tools/arm_insn_count/count.py: calls one quantized kernel once, after a setup that
 * does not depend on the size, on `units` units (32-element blocks for Q8_0/Q4_0, 256-element
 * super-blocks for the K-quants); GEMMs take `rows` weight rows and `toks` tokens.
 * Usage: driver KERNEL UNITS [ROWS TOKS]. With -DGGML, the same for ggml's vec_dot kernels
 * (llama.cpp's ggml-cpu/arch/arm/quants.c, compiled outside moela by count.py), where the
 * fourth argument is ggml's nrc (1: one row, 2: its 2×2 i8mm path). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXU 64
static uint8_t w[16 * 292 * MAXU];
static int8_t qs[64 * 256 * MAXU];
static float d[64 * 8 * MAXU];
static int32_t s[64 * 8 * MAXU];
static float out[64 * 64];
volatile float sink;

#ifdef GGML
typedef void (*vd)(int, float *, size_t, const void *, size_t, const void *, size_t, int);
#define DECL(t) void ggml_vec_dot_##t(int, float *, size_t, const void *, size_t, const void *, size_t, int);
DECL(q4_0_q8_0)
DECL(q8_0_q8_0)
DECL(q4_K_q8_K)
DECL(q5_K_q8_K)
DECL(q6_K_q8_K)
DECL(q2_K_q8_K)
DECL(q3_K_q8_K)
/* symbols quants.c refers to outside the kernels measured */
float ggml_table_f32_ue4m3[256];
void quantize_row_q8_K_ref(const float *x, void *y, int64_t k) { (void)x, (void)y, (void)k; }
struct k { const char *name; vd f; int k; size_t wb, ab; };
static const struct k ks[] = {
    {"q4_0", ggml_vec_dot_q4_0_q8_0, 0, 18, 34}, {"q8_0", ggml_vec_dot_q8_0_q8_0, 0, 34, 34},
    {"q4_k", ggml_vec_dot_q4_K_q8_K, 1, 144, 292}, {"q5_k", ggml_vec_dot_q5_K_q8_K, 1, 176, 292},
    {"q6_k", ggml_vec_dot_q6_K_q8_K, 1, 210, 292}, {"q2_k", ggml_vec_dot_q2_K_q8_K, 1, 84, 292},
    {"q3_k", ggml_vec_dot_q3_K_q8_K, 1, 110, 292},
};
#else
#include "moela_kernels.h"
typedef float (*dot_fn)(size_t, const void *, const int8_t *, const float *, const int32_t *);
typedef void (*gemm_fn)(size_t, size_t, const void *, size_t, size_t, const int8_t *, const float *,
                        const int32_t *, float *, size_t);
struct k { const char *name; dot_fn dot; gemm_fn gemm; int k; size_t wb; };
#define D(T, K, B, ISA) {#T "_" #ISA, mk_vec_dot_##T##_q8a_##ISA, 0, K, B}
#define DOTS(ISA) D(q8_0, 0, 34, ISA), D(q4_0, 0, 18, ISA), D(q4_k, 1, 144, ISA), \
                  D(q5_k, 1, 176, ISA), D(q6_k, 1, 210, ISA), D(q2_k, 1, 84, ISA), D(q3_k, 1, 110, ISA)
#define G(T, K, B) {#T "_i8mm", 0, mk_gemm_##T##_q8a_i8mm, K, B}
static const struct k ks[] = {
    DOTS(generic), DOTS(neon), DOTS(dotprod),
    G(q8_0, 0, 34), G(q4_0, 0, 18), G(q4_k, 1, 144), G(q5_k, 1, 176), G(q6_k, 1, 210),
};
#endif

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const size_t units = (size_t)atoi(argv[2]);
    const size_t a3 = argc > 3 ? (size_t)atoi(argv[3]) : 1, a4 = argc > 4 ? (size_t)atoi(argv[4]) : 1;
    if (units > MAXU || a3 > 64 || a4 > 64) return 2;
    uint32_t r = 12345;
    for (size_t i = 0; i < sizeof w; i++) {
        r = r * 1103515245u + 12345u;
        w[i] = (uint8_t)(r >> 16);
        if (i % 2) w[i] = 0x20 | (w[i] & 0x0f); /* every aligned 16-bit word a normal f16 */
    }
    for (size_t i = 0; i < sizeof qs; i++) {
        r = r * 1103515245u + 12345u;
        qs[i] = (int8_t)((r >> 16) % 255 - 127);
    }
    for (size_t i = 0; i < sizeof d / sizeof *d; i++) d[i] = 0.01f, s[i] = (int32_t)(i % 100);
    for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
        if (strcmp(ks[i].name, argv[1])) continue;
        const size_t n = (ks[i].k ? 256 : 32) * units;
#ifdef GGML
        ks[i].f((int)n, out, 4, w, ks[i].wb * units, qs, ks[i].ab * units, (int)a3);
        sink = out[0];
#else
        if (ks[i].dot)
            sink = ks[i].dot(n, w, qs, d, s);
        else {
            ks[i].gemm(n, a3, w, ks[i].wb * units, a4, qs, d, s, out, a3);
            sink = out[0];
        }
#endif
        return 0;
    }
    return 1;
}
