/* The FP4 pieces MXFP4 and NVFP4 share, for the generic and the NEON kernels: the E2M1 values
 * doubled (ggml's kvalues_mxfp4, so they are integers) and NVFP4's UE4M3 scale byte halved to
 * match. Static inline so each kernel file keeps its own copy (no call in the hot loop). */
#ifndef MOELA_FP4_H
#define MOELA_FP4_H

#include <stdint.h>
#include <string.h>

/* Doubled E2M1 values by nibble: 0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives, × 2. */
static inline const int8_t *mk_e2m1_doubled(void) {
    static const int8_t values[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
    return values;
}

/* NVFP4's scale byte, halved (the values are doubled): unsigned E4M3, bit 7 ignored but 0x7F
 * (E4M3's NaN) and 0x00 give 0. */
static inline float mk_ue4m3_half(uint8_t x) {
    if (x == 0 || x == 0x7F) return 0.0f;
    uint32_t e = (x >> 3) & 15, m = x & 7;
    if (e == 0) return (float)m * (1.0f / 1024.0f);
    uint32_t bits = ((e + 119) << 23) | (m << 20);
    float d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

#endif
