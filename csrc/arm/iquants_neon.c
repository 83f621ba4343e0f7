/* The low-bit one-row kernels of csrc/arm/iquants_dotprod.c for AArch64 CPUs without the
 * dotprod extension (Cortex-A53/A55 without it, A72, A73: Raspberry Pi 3 and 4), built with
 * plain -march=armv8-a: sdot is emulated by widening multiplies and pairwise adds, which give
 * the same int32 lane sums (every product here is at most 127 · 127 in magnitude, so the int16
 * pair sums cannot overflow), then the same float work. */
#include <arm_neon.h>

/* Lane i of acc plus Σ_{k<4} a[4i+k]·b[4i+k], as vdotq_s32 computes it. */
static inline int32x4_t sdot_neon(int32x4_t acc, int8x16_t a, int8x16_t b) {
    const int16x8_t pairs = vpaddq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b)), vmull_high_s8(a, b));
    return vaddq_s32(acc, vpaddlq_s16(pairs));
}

#define MK_SDOT sdot_neon
#define MK_IQ_FN(t) mk_vec_dot_##t##_q8a_neon
#include "iquants_dotprod.c"
