/* Helpers shared by the kernel sources (not part of the kernel API). */
#ifndef SKBNN_KERNEL_COMMON_H
#define SKBNN_KERNEL_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* x86 builds carry SIMD paths in functions with target attributes */
#if defined(__x86_64__) || defined(__i386__)
#define SKBNN_X86 1
#include <immintrin.h>
#else
#define SKBNN_X86 0
#endif

#define WORDS(bits) (((bits) + 63) / 64)

/* Threads for a parallel region: below ~64k elementary operations the fork
 * and join cost more than they save (and oversubscribed cores make them
 * far worse), so small calls run on the calling thread.  Results never
 * depend on it: every split is static and by output rows. */
#define SKBNN_MIN_PARALLEL_WORK 65536.0

static inline int team(double work, int n_threads)
{
    return work >= SKBNN_MIN_PARALLEL_WORK ? n_threads : 1;
}

static inline uint64_t tail_mask(size_t n) /* low n bits (n in 1..64) */
{
    return n >= 64 ? ~0ULL : ((1ULL << n) - 1ULL);
}

/* exact float32 value of an IEEE binary16 pattern (portable; the F16C and
 * _Float16 paths give the same values) */
static inline float skbnn_h2f_exact(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    union { float f; uint32_t u; } r;
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24, exact in float32 (no loop) */
        r.f = (float)mant * 0x1p-24f;
        r.u |= sign;
    } else if (exp == 31) {
        r.u = sign | 0x7f800000u | (mant << 13) | (mant ? 0x400000u : 0u);
    } else {
        r.u = sign | ((exp + 112u) << 23) | (mant << 13);
    }
    return r.f;
}

#endif
