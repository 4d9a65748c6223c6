/* skbnn real-valued kernels: float x bits products, float16 storage and the
 * optimiser sweeps of latent-weight training (LowMemBNNClassifier).
 *
 * Determinism: every output element is owned by one thread and accumulated
 * in a fixed order (k = 0, 1, ...) with the same IEEE operations on every
 * path: separate multiply and add where the code writes them (the build
 * uses -ffp-contract=off, so the compiler never fuses them) and explicit
 * fused multiply-adds in the float GEMM (fmaf on the portable path, FMA
 * instructions on the SIMD paths: one rounding either way).  The SIMD
 * paths, the portable path and every thread count give bit-identical
 * results.
 */
#include "bnn_kernels.h"
#include "kernel_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if SKBNN_X86
#include <cpuid.h>
#endif

/* ------------------------------------------------------------------------ */
/* float16 <-> float32 (round to nearest even), portable and F16C           */
/* ------------------------------------------------------------------------ */
typedef union { float f; uint32_t u; } fbits;

static inline uint16_t f2h_soft(float f)
{
    fbits x = {f};
    const uint32_t sign = x.u & 0x80000000u;
    x.u ^= sign;
    uint32_t o;
    if (x.u >= (143u << 23)) { /* >= 65536 (rounds to inf), inf or NaN */
        o = x.u > 0x7f800000u ? (0x7e00u | ((x.u >> 13) & 0x3ffu)) : 0x7c00u;
    } else if (x.u < (113u << 23)) { /* half subnormal or zero: let the FPU round */
        const fbits magic = {.u = 126u << 23};
        x.f += magic.f;
        o = x.u - magic.u;
    } else {
        const uint32_t odd = (x.u >> 13) & 1u;
        x.u += ((uint32_t)(15 - 127) << 23) + 0xfffu + odd;
        o = x.u >> 13;
    }
    return (uint16_t)(o | (sign >> 16));
}

/* float32 -> float16 rounding toward zero (finite overflow -> largest finite) */
static inline uint16_t f2h_rtz_soft(float f)
{
    fbits x = {f};
    const uint32_t sign = x.u & 0x80000000u;
    x.u ^= sign;
    uint32_t o;
    if (x.u >= 0x7f800000u) /* inf or NaN, as the nearest-even conversion */
        o = x.u > 0x7f800000u ? (0x7e00u | ((x.u >> 13) & 0x3ffu)) : 0x7c00u;
    else if (x.u >= (143u << 23)) /* >= 65536 */
        o = 0x7bffu;
    else if (x.u < (113u << 23)) /* half subnormal: x * 2^24 < 1024 is exact; truncate */
        o = (uint32_t)(x.f * 0x1p24f);
    else
        o = (x.u - (112u << 23)) >> 13;
    return (uint16_t)(o | (sign >> 16));
}

/* Stochastic rounding (Gupta et al. 2015) of float32 to float16: round the
 * magnitude up with probability frac = (|x| - lo) / (hi - lo), lo = |x|
 * rounded toward zero, hi the next float16 up.  frac is exact in float32
 * (Sterbenz subtraction, division by a power of two), u has 24 bits, so
 * every path computes the same bits.  Used for the float16 optimiser state:
 * steps far below half an ulp (Adam's ~1e-4 on weights of ~0.1) still move
 * a weight on average, where round-to-nearest would discard them. */
static inline float sr_uniform(uint32_t r) { return (float)(r >> 8) * 0x1p-24f; }

static inline uint16_t f2h_sr_soft(float f, uint32_t r)
{
    const uint16_t lo = f2h_rtz_soft(fabsf(f));
    /* above the largest finite half the next value is inf, reached as if it
     * were 65536 (2^16, the overflow point): large values still overflow */
    const float flo = skbnn_h2f_exact(lo), fhi = fminf(skbnn_h2f_exact((uint16_t)(lo + 1u)), 65536.0f);
    const float frac = (fabsf(f) - flo) / (fhi - flo);
    const uint16_t mag = (uint16_t)(lo + (sr_uniform(r) < frac));
    return (uint16_t)(mag | (signbit(f) ? 0x8000u : 0u));
}

/* Counter-based random bits for stochastic rounding: murmur3's finaliser of
 * a per-row key plus the column, so each weight's draw depends only on
 * (seed, step, layer, array, row, column): identical on every path and
 * thread count, with no generator state to keep. */
static inline uint32_t fmix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

#define SR_GOLDEN 0x9e3779b1u
static inline uint32_t sr_bits(uint32_t row_key, size_t col)
{
    return fmix32(row_key + (uint32_t)col * SR_GOLDEN);
}

static void h2f_portable(const uint16_t *in, float *out, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = skbnn_h2f_exact(in[i]);
}

static void f2h_portable(const float *in, uint16_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = f2h_soft(in[i]);
}

#if SKBNN_X86
#define T_F16C __attribute__((target("avx,f16c")))
T_F16C static void h2f_f16c(const uint16_t *in, float *out, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(in + i))));
    for (; i < n; i++) out[i] = skbnn_h2f_exact(in[i]);
}

T_F16C static void f2h_f16c(const float *in, uint16_t *out, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(out + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) out[i] = f2h_soft(in[i]);
}

static int cpu_has_fma(void) /* FMA3: ecx bit 12 of leaf 1 (with OS-saved YMM) */
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c & (1u << 12)) && (c & (1u << 27));
}

static int cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    /* F16C (ecx bit 29) needs AVX with OS-saved YMM state (OSXSAVE, bit 27) */
    return (c & (1u << 29)) && (c & (1u << 28)) && (c & (1u << 27));
}
#endif

typedef void (*h2f_fn)(const uint16_t *, float *, size_t);
typedef void (*f2h_fn)(const float *, uint16_t *, size_t);

/* F16C on the AVX2 and AVX-512 paths (exact conversions: same results) */
static int use_f16c(void)
{
#if SKBNN_X86
    /* probed once; relaxed atomics: threads racing on the first call all
       store the same value, without a data race */
    static int has = -1;
    int h = __atomic_load_n(&has, __ATOMIC_RELAXED);
    if (h < 0) {
        h = cpu_has_f16c();
        __atomic_store_n(&has, h, __ATOMIC_RELAXED);
    }
    return h && skbnn_get_isa() >= SKBNN_ISA_AVX2;
#else
    return 0;
#endif
}

static h2f_fn pick_h2f(void)
{
#if SKBNN_X86
    if (use_f16c()) return h2f_f16c;
#endif
    return h2f_portable;
}

static f2h_fn pick_f2h(void)
{
#if SKBNN_X86
    if (use_f16c()) return f2h_f16c;
#endif
    return f2h_portable;
}

void skbnn_f16_to_f32(const uint16_t *in, float *out, size_t n) { pick_h2f()(in, out, n); }
int skbnn_use_f16c(void) { return use_f16c(); }
void skbnn_f32_to_f16(const float *in, uint16_t *out, size_t n) { pick_f2h()(in, out, n); }

/* ------------------------------------------------------------------------ */
/* products with one float operand                                           */
/*   bits operand ("signed sum"): C[m, n] = sum_k A[m, k] * s(Bt[k] bit n)    */
/*   float operand ("gemm")     : C[m, n] = sum_k A[m, k] * B[k, n]           */
/* A row block of MR rows times one 64-column block: acc[MR][64] floats.     */
/* The left operand is a strided float32 or float16 view (skbnn_fview), so   */
/* the backward pass reads dZ (float16 in flight) and its transpose in place. */
/* ------------------------------------------------------------------------ */
#define MR 4


static inline float load_a_soft(const skbnn_fview *A, size_t idx)
{
    return A->half ? skbnn_h2f_exact(((const uint16_t *)A->p)[idx]) : ((const float *)A->p)[idx];
}

/* epilogue: floats or halves (0 where the mask bit is 0), or packed signs */
static inline void emit_block(float acc[MR][64], int mr, size_t m0, size_t wb, size_t N,
                              void *C, int chalf, uint64_t *S, const uint64_t *mask)
{
    const size_t wn = WORDS(N), n0 = wb * 64, nc = N - n0 < 64 ? N - n0 : 64;
    for (int r = 0; r < mr; r++) {
        const size_t m = m0 + (size_t)r;
        if (S) {
            uint64_t w = 0;
            for (size_t l = 0; l < nc; l++) w |= (uint64_t)(acc[r][l] >= 0.0f) << l;
            S[m * wn + wb] = w;
            continue;
        }
        const uint64_t keep = mask ? mask[m * wn + wb] : ~0ULL;
        /* convert or copy first, then zero what the mask drops (no scalar
         * stores read back by vector loads: those stall store forwarding) */
        if (chalf) {
            uint16_t *h = (uint16_t *)C + m * N + n0;
            pick_f2h()(acc[r], h, nc);
            if (~keep) for (size_t l = 0; l < nc; l++) if (!((keep >> l) & 1u)) h[l] = 0;
        } else {
            float *c = (float *)C + m * N + n0;
            memcpy(c, acc[r], nc * sizeof(float));
            if (~keep) for (size_t l = 0; l < nc; l++) if (!((keep >> l) & 1u)) c[l] = 0.0f;
        }
    }
}

/* Signed sums as 2 P - T: P = sum of A[m, k] over the k whose bit is 1, T =
 * sum of all A[m, k], both in order k (one masked add per lane instead of a
 * sign select and an add); every path computes exactly this. */
static void ssum_block_portable(const skbnn_fview *A, size_t m0, int mr, size_t K,
                                const uint64_t *Bt, size_t wn, size_t wb, float acc[MR][64])
{
    float T[MR] = {0};
    for (int r = 0; r < mr; r++)
        for (int l = 0; l < 64; l++) acc[r][l] = 0.0f;
    for (size_t k = 0; k < K; k++) {
        const uint64_t w = Bt[k * wn + wb];
        for (int r = 0; r < mr; r++) {
            const float a = load_a_soft(A, (m0 + (size_t)r) * A->rs + k * A->ks);
            T[r] += a;
            for (int l = 0; l < 64; l++)
                if ((w >> l) & 1u) acc[r][l] += a;
        }
    }
    for (int r = 0; r < mr; r++)
        for (int l = 0; l < 64; l++) acc[r][l] = (acc[r][l] + acc[r][l]) - T[r];
}

static void gemm_block_portable(const skbnn_fview *A, size_t m0, int mr, size_t K,
                                const float *B, size_t N, size_t wb, float acc[MR][64])
{
    const size_t n0 = wb * 64, nc = N - n0 < 64 ? N - n0 : 64;
    for (int r = 0; r < mr; r++)
        for (int l = 0; l < 64; l++) acc[r][l] = 0.0f;
    for (size_t k = 0; k < K; k++) {
        const float *b = B + k * N + n0;
        for (int r = 0; r < mr; r++) {
            const float a = load_a_soft(A, (m0 + (size_t)r) * A->rs + k * A->ks);
            for (size_t l = 0; l < nc; l++) acc[r][l] = fmaf(a, b[l], acc[r][l]);
        }
    }
}

#if SKBNN_X86
#define T_AVX2F __attribute__((target("avx2,f16c")))
#define T_AVX512F __attribute__((target("avx512f,f16c")))
#define T_AVX2FMA __attribute__((target("avx2,fma,f16c")))
/* The SIMD block kernels read a float32 left operand with unit column
 * stride (run_blocks converts float16 or strided row blocks first); any
 * other view takes the portable loop.  The view's fields are held in locals
 * (the build allows aliasing, so the compiler would reload them through the
 * pointer) and the row loops have constant trip counts so that the
 * accumulators stay in registers. */
#define A_LOCALS(A)                                                                         \
    const float *const a_f = (const float *)(A)->p;                                         \
    const size_t a_rs = (A)->rs
#define A_AT(m, k) (a_f[(m) * a_rs + (k)])
#define SIMD_VIEW_OK(A) (!(A)->half && (A)->ks == 1)

/* AVX2 has 16 ymm registers: the 4 x 64 block runs as 2-row x 32-column
 * tiles (8 accumulators), the same operations per element as the other
 * paths.  A ragged row block (mr < 4) ends with a 1-row tile; a ragged
 * column block (nc < 64, gemm) loads B with lane masks and skips the
 * 32-column halves past nc: the lanes past nc are never emitted. */
#define INLINE_ALWAYS __attribute__((always_inline)) inline

/* rows r0 .. r0+nrow-1 (nrow in 1..2, a constant after inlining), one
 * 32-column half */
T_AVX2F static INLINE_ALWAYS void ssum_rows_avx2(const int nrow, const float *a_f, size_t a_rs,
                                                 size_t m0, int r0, int half, size_t K,
                                                 const uint64_t *Bt, size_t wn, size_t wb,
                                                 float T[MR], float acc[MR][64])
{
    const __m256i bitsel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    __m256 v[2][4];
    float t[2] = {T[r0], nrow > 1 ? T[r0 + 1] : 0.0f}; /* in registers */
    for (int i = 0; i < 2; i++)
        for (int q = 0; q < 4; q++) v[i][q] = _mm256_setzero_ps();
    for (size_t k = 0; k < K; k++) {
        const uint64_t w = Bt[k * wn + wb] >> (32 * half);
        __m256 sel[4];
        for (int q = 0; q < 4; q++) {
            const __m256i byte = _mm256_set1_epi32((int)((w >> (8 * q)) & 0xffu));
            sel[q] = _mm256_castsi256_ps(
                _mm256_cmpeq_epi32(_mm256_and_si256(byte, bitsel), bitsel));
        }
        for (int i = 0; i < nrow; i++) {
            const float as = a_f[(m0 + (size_t)(r0 + i)) * a_rs + k];
            const __m256 a = _mm256_set1_ps(as);
            if (half == 0) t[i] += as;
            for (int q = 0; q < 4; q++)  /* adding +0.0 where the bit is 0 */
                v[i][q] = _mm256_add_ps(v[i][q], _mm256_and_ps(a, sel[q]));
        }
    }
    for (int i = 0; i < nrow; i++) {
        T[r0 + i] = t[i];
        const __m256 tv = _mm256_set1_ps(t[i]);
        for (int q = 0; q < 4; q++)
            _mm256_storeu_ps(&acc[r0 + i][32 * half + 8 * q],
                             _mm256_sub_ps(_mm256_add_ps(v[i][q], v[i][q]), tv));
    }
}

T_AVX2F static void ssum_block_avx2(const skbnn_fview *A, size_t m0, int mr, size_t K,
                                    const uint64_t *Bt, size_t wn, size_t wb,
                                    float acc[MR][64])
{
    if (!SIMD_VIEW_OK(A)) { /* other view: the portable loop (same operations) */
        ssum_block_portable(A, m0, mr, K, Bt, wn, wb, acc);
        return;
    }
    A_LOCALS(A);
    float T[MR] = {0};
    for (int half = 0; half < 2; half++) {
        int r0 = 0;
        for (; r0 + 2 <= mr; r0 += 2)
            ssum_rows_avx2(2, a_f, a_rs, m0, r0, half, K, Bt, wn, wb, T, acc);
        if (r0 < mr) ssum_rows_avx2(1, a_f, a_rs, m0, r0, half, K, Bt, wn, wb, T, acc);
    }
}

/* rows r0 .. r0+nrow-1 (nrow in 1..2), one 32-column half; ragged: load B
 * under the lane masks lm (columns past nc read 0) */
T_AVX2FMA static INLINE_ALWAYS void gemm_rows_avx2(const int nrow, const int ragged,
                                                   const float *a_f, size_t a_rs, size_t m0,
                                                   int r0, int half, size_t K, const float *B,
                                                   size_t N, size_t n0, const __m256i lm[4],
                                                   float acc[MR][64])
{
    __m256 v[2][4];
    for (int i = 0; i < 2; i++)
        for (int q = 0; q < 4; q++) v[i][q] = _mm256_setzero_ps();
    for (size_t k = 0; k < K; k++) {
        const float *b = B + k * N + n0 + 32 * half;
        __m256 bv[4];
        for (int q = 0; q < 4; q++)
            bv[q] = ragged ? _mm256_maskload_ps(b + 8 * q, lm[q]) : _mm256_loadu_ps(b + 8 * q);
        for (int i = 0; i < nrow; i++) {
            const __m256 a = _mm256_set1_ps(a_f[(m0 + (size_t)(r0 + i)) * a_rs + k]);
            for (int q = 0; q < 4; q++) v[i][q] = _mm256_fmadd_ps(a, bv[q], v[i][q]);
        }
    }
    for (int i = 0; i < nrow; i++)
        for (int q = 0; q < 4; q++) _mm256_storeu_ps(&acc[r0 + i][32 * half + 8 * q], v[i][q]);
}

T_AVX2FMA static void gemm_block_avx2(const skbnn_fview *A, size_t m0, int mr, size_t K,
                                      const float *B, size_t N, size_t wb, float acc[MR][64])
{
    if (!SIMD_VIEW_OK(A)) { /* other view: the portable loop (same operations) */
        gemm_block_portable(A, m0, mr, K, B, N, wb, acc);
        return;
    }
    A_LOCALS(A);
    const size_t n0 = wb * 64, nc = N - n0 < 64 ? N - n0 : 64;
    for (int half = 0; half < 2; half++) {
        const size_t lo = 32 * (size_t)half;
        if (nc <= lo) break; /* nothing of this half is emitted */
        const size_t live = nc - lo; /* columns of this half, >= 32: all */
        __m256i lm[4];
        for (int q = 0; q < 4; q++)
            lm[q] = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(live > 32 ? 32 : live)),
                                       _mm256_add_epi32(_mm256_set1_epi32(8 * q),
                                                        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
        int r0 = 0;
        if (live >= 32) {
            for (; r0 + 2 <= mr; r0 += 2)
                gemm_rows_avx2(2, 0, a_f, a_rs, m0, r0, half, K, B, N, n0, lm, acc);
            if (r0 < mr) gemm_rows_avx2(1, 0, a_f, a_rs, m0, r0, half, K, B, N, n0, lm, acc);
        } else {
            for (; r0 + 2 <= mr; r0 += 2)
                gemm_rows_avx2(2, 1, a_f, a_rs, m0, r0, half, K, B, N, n0, lm, acc);
            if (r0 < mr) gemm_rows_avx2(1, 1, a_f, a_rs, m0, r0, half, K, B, N, n0, lm, acc);
        }
    }
}

T_AVX512F static void ssum_block_avx512(const skbnn_fview *A, size_t m0, int mr, size_t K,
                                        const uint64_t *Bt, size_t wn, size_t wb,
                                        float acc[MR][64])
{
    if (mr != MR || !SIMD_VIEW_OK(A)) { /* ragged row block or other view: the
                                         * portable loop (same operations) */
        ssum_block_portable(A, m0, mr, K, Bt, wn, wb, acc);
        return;
    }
    A_LOCALS(A);
    __m512 v[MR][4];
    float T[MR] = {0};
    for (int r = 0; r < MR; r++)
        for (int q = 0; q < 4; q++) v[r][q] = _mm512_setzero_ps();
    for (size_t k = 0; k < K; k++) {
        const uint64_t w = Bt[k * wn + wb];
        const __mmask16 m0_ = (__mmask16)w, m1 = (__mmask16)(w >> 16),
                        m2 = (__mmask16)(w >> 32), m3 = (__mmask16)(w >> 48);
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) {
            const float as = A_AT(m0 + (size_t)r, k);
            const __m512 a = _mm512_set1_ps(as);
            T[r] += as;
            v[r][0] = _mm512_mask_add_ps(v[r][0], m0_, v[r][0], a);
            v[r][1] = _mm512_mask_add_ps(v[r][1], m1, v[r][1], a);
            v[r][2] = _mm512_mask_add_ps(v[r][2], m2, v[r][2], a);
            v[r][3] = _mm512_mask_add_ps(v[r][3], m3, v[r][3], a);
        }
    }
    for (int r = 0; r < MR; r++) {
        const __m512 t = _mm512_set1_ps(T[r]);
        for (int q = 0; q < 4; q++)
            _mm512_storeu_ps(&acc[r][16 * q], _mm512_sub_ps(_mm512_add_ps(v[r][q], v[r][q]), t));
    }
}

T_AVX512F static void gemm_block_avx512(const skbnn_fview *A, size_t m0, int mr, size_t K,
                                        const float *B, size_t N, size_t wb, float acc[MR][64])
{
    if (mr != MR || !SIMD_VIEW_OK(A)) { /* ragged row block or other view: the
                                         * portable loop (same operations) */
        gemm_block_portable(A, m0, mr, K, B, N, wb, acc);
        return;
    }
    A_LOCALS(A);
    const size_t n0 = wb * 64, nc = N - n0 < 64 ? N - n0 : 64;
    __mmask16 lm[4];
    for (int q = 0; q < 4; q++) {
        const size_t lo = (size_t)q * 16;
        const size_t n = nc > lo ? (nc - lo > 16 ? 16 : nc - lo) : 0;
        lm[q] = (__mmask16)((1u << n) - 1u);
    }
    __m512 v[MR][4];
    for (int r = 0; r < MR; r++)
        for (int q = 0; q < 4; q++) v[r][q] = _mm512_setzero_ps();
    for (size_t k = 0; k < K; k++) {
        const float *b = B + k * N + n0;
        __m512 bv[4];
        for (int q = 0; q < 4; q++) bv[q] = _mm512_maskz_loadu_ps(lm[q], b + 16 * q);
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) {
            const __m512 a = _mm512_set1_ps(A_AT(m0 + (size_t)r, k));
            for (int q = 0; q < 4; q++) v[r][q] = _mm512_fmadd_ps(a, bv[q], v[r][q]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int q = 0; q < 4; q++) _mm512_storeu_ps(&acc[r][16 * q], v[r][q]);
}
#endif

typedef void (*ssum_fn)(const skbnn_fview *, size_t, int, size_t, const uint64_t *, size_t,
                        size_t, float[MR][64]);
typedef void (*gemm_fn)(const skbnn_fview *, size_t, int, size_t, const float *, size_t,
                        size_t, float[MR][64]);

static ssum_fn pick_ssum(void)
{
#if SKBNN_X86
    if (skbnn_get_isa() == SKBNN_ISA_AVX512) return ssum_block_avx512;
    if (skbnn_get_isa() == SKBNN_ISA_AVX2) return ssum_block_avx2;
#endif
    return ssum_block_portable;
}

static gemm_fn pick_gemm(void)
{
#if SKBNN_X86
    if (skbnn_get_isa() == SKBNN_ISA_AVX512) return gemm_block_avx512;
    if (skbnn_get_isa() == SKBNN_ISA_AVX2 && cpu_has_fma()) return gemm_block_avx2;
#endif
    return gemm_block_portable;
}

/* A row block of the left operand as contiguous float32 (MR x K), when it
 * is float16 or strided: converted once per row block instead of once per
 * 64-column block, and read with unit stride by the block kernels. */
#define PACK_A_MAX 2048

static skbnn_fview row_block_view(const skbnn_fview *A, size_t m0, int mr, size_t K,
                                  float *buf, uint16_t *hbuf, size_t *m_off)
{
    if ((!A->half && A->ks == 1) || K > PACK_A_MAX) {
        *m_off = m0;
        return *A;
    }
    if (A->half) { /* gather the halves, then one vector conversion */
        uint16_t *h = hbuf;
        const uint16_t *src = (const uint16_t *)A->p;
        for (int r = 0; r < mr; r++)
            for (size_t k = 0; k < K; k++)
                h[(size_t)r * K + k] = src[(m0 + (size_t)r) * A->rs + k * A->ks];
        pick_h2f()(h, buf, (size_t)mr * K);
    } else {
        for (int r = 0; r < mr; r++)
            for (size_t k = 0; k < K; k++)
                buf[(size_t)r * K + k] = load_a_soft(A, (m0 + (size_t)r) * A->rs + k * A->ks);
    }
    const skbnn_fview v = {buf, 0, K, 1};
    *m_off = 0;
    return v;
}

/* Row blocks of MR rows x 64-column blocks, one thread per row block.  The
 * right operand is packed signs (Bt != NULL) or floats (B). */
static void run_blocks(skbnn_fview A, size_t M, size_t K, const uint64_t *Bt, const float *B,
                       size_t N, void *C, int chalf, uint64_t *S, const uint64_t *mask,
                       int n_threads)
{
    const size_t wn = WORDS(N), nblk = (M + MR - 1) / MR;
    const ssum_fn ssum = Bt ? pick_ssum() : NULL;
    const gemm_fn gemm = Bt ? NULL : pick_gemm();
    (void)pick_f2h(); /* settle the converter before the threads start */
    n_threads = team((double)M * (double)K * (double)N, n_threads);
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1)
    for (long bi = 0; bi < (long)nblk; bi++) {
        const size_t m0 = (size_t)bi * MR;
        const int mr = (int)(M - m0 < MR ? M - m0 : MR);
        float acc[MR][64], abuf[MR * PACK_A_MAX];
        uint16_t hbuf[MR * PACK_A_MAX];
        size_t mo;
        const skbnn_fview a = row_block_view(&A, m0, mr, K, abuf, hbuf, &mo);
        for (size_t wb = 0; wb < wn; wb++) {
            if (ssum) ssum(&a, mo, mr, K, Bt, wn, wb, acc);
            else gemm(&a, mo, mr, K, B, N, wb, acc);
            emit_block(acc, mr, m0, wb, N, C, chalf, S, mask);
        }
    }
}

void skbnn_fsgemm(skbnn_fview A, size_t M, size_t K, const uint64_t *Bt, size_t N, void *C,
                  int chalf, uint64_t *S, const uint64_t *mask, int n_threads)
{
    run_blocks(A, M, K, Bt, NULL, N, C, chalf, S, mask, n_threads);
}

void skbnn_fgemm(skbnn_fview A, size_t M, size_t K, const float *B, size_t N, void *C,
                 int chalf, uint64_t *S, int n_threads)
{
    run_blocks(A, M, K, NULL, B, N, C, chalf, S, NULL, n_threads);
}

/* ------------------------------------------------------------------------ */
/* dot form: C[m, j] = sum_k X[m, k] * s(W[j] bit k), W neuron-major packed  */
/* (the real-input forward reads the layer's own bits, no transposed copy). */
/* As 2 P - T in 16 lanes (lane l takes k = 16c + l, in order c; padding    */
/* lanes read 0): P sums X where the bit is 1, T sums all of X; then        */
/* q = (P + P) - T per lane and the tree ((l, l+8), (l, l+4), (l, l+2),     */
/* (0, 1)).  Every path computes exactly this.                               */
/* ------------------------------------------------------------------------ */
static inline float reduce16(float p[16])
{
    for (int h = 8; h >= 1; h /= 2)
        for (int l = 0; l < h; l++) p[l] = p[l] + p[l + h];
    return p[0];
}

static float dot_bits_portable(const float *x, const uint64_t *w, size_t K)
{
    float p[16] = {0}, t[16] = {0};
    for (size_t c = 0; c * 16 < K; c++) {
        const uint64_t bits = w[c / 4] >> (16 * (c % 4));
        for (int l = 0; l < 16; l++) {
            const size_t k = c * 16 + (size_t)l;
            const float v = k < K ? x[k] : 0.0f;
            t[l] += v;
            if ((bits >> l) & 1u) p[l] += v;
        }
    }
    for (int l = 0; l < 16; l++) p[l] = (p[l] + p[l]) - t[l];
    return reduce16(p);
}

/* Tiles of TM samples x TN neurons share the loads: independent chains. */
static void dot_tile_portable(const float *X, size_t K, size_t m0, int mr, const uint64_t *W,
                              size_t wk, size_t j0, int nr, float *C, size_t N)
{
    for (int r = 0; r < mr; r++)
        for (int q = 0; q < nr; q++)
            C[(m0 + (size_t)r) * N + j0 + (size_t)q] =
                dot_bits_portable(X + (m0 + (size_t)r) * K, W + (j0 + (size_t)q) * wk, K);
}

#if SKBNN_X86
#define TM2 2
#define TN2 2
/* One 16-lane chunk of the dot form for a tm x tn tile (tm, tn in 1..2,
 * constants after inlining): a0/a1 are lanes 0-7 / 8-15 of each row's
 * chunk (padding lanes past K read 0, as on the portable path). */
T_AVX2F static INLINE_ALWAYS void dot_chunk_avx2(const int tm, const int tn, size_t c,
                                                 const uint64_t *W, size_t wk, size_t j0,
                                                 const __m256 a0[TM2], const __m256 a1[TM2],
                                                 __m256 lo[TM2][TN2], __m256 hi[TM2][TN2],
                                                 __m256 tlo[TM2], __m256 thi[TM2])
{
    const __m256i bitsel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    __m256 s0[TN2], s1[TN2];
    for (int q = 0; q < tn; q++) {
        const uint64_t bits = W[(j0 + (size_t)q) * wk + c / 4] >> (16 * (c % 4));
        s0[q] = _mm256_castsi256_ps(_mm256_cmpeq_epi32(
            _mm256_and_si256(_mm256_set1_epi32((int)(bits & 0xffu)), bitsel), bitsel));
        s1[q] = _mm256_castsi256_ps(_mm256_cmpeq_epi32(
            _mm256_and_si256(_mm256_set1_epi32((int)((bits >> 8) & 0xffu)), bitsel), bitsel));
    }
    for (int r = 0; r < tm; r++) {
        tlo[r] = _mm256_add_ps(tlo[r], a0[r]);
        thi[r] = _mm256_add_ps(thi[r], a1[r]);
        for (int q = 0; q < tn; q++) { /* adding +0.0 where the bit is 0 */
            lo[r][q] = _mm256_add_ps(lo[r][q], _mm256_and_ps(a0[r], s0[q]));
            hi[r][q] = _mm256_add_ps(hi[r][q], _mm256_and_ps(a1[r], s1[q]));
        }
    }
}

/* A tm x tn tile (constants after inlining).  The full chunks load 16
 * floats; a last partial chunk (K % 16 != 0) loads its live lanes with a
 * mask and reads 0 in the others: the portable lane assignment, padding
 * included, so the results stay bit-identical. */
T_AVX2F static INLINE_ALWAYS void dot_tile_avx2_body(const int tm, const int tn, const float *X,
                                                     size_t K, size_t m0, const uint64_t *W,
                                                     size_t wk, size_t j0, float *C, size_t N)
{
    const __m256 z = _mm256_setzero_ps();
    __m256 lo[TM2][TN2], hi[TM2][TN2], tlo[TM2], thi[TM2], a0[TM2], a1[TM2];
    for (int r = 0; r < TM2; r++) {
        tlo[r] = thi[r] = a0[r] = a1[r] = z;
        for (int q = 0; q < TN2; q++) lo[r][q] = hi[r][q] = z;
    }
    const size_t kfull = K / 16;
    for (size_t c = 0; c < kfull; c++) {
        for (int r = 0; r < tm; r++) {
            const float *x = X + (m0 + (size_t)r) * K + c * 16;
            a0[r] = _mm256_loadu_ps(x);
            a1[r] = _mm256_loadu_ps(x + 8);
        }
        dot_chunk_avx2(tm, tn, c, W, wk, j0, a0, a1, lo, hi, tlo, thi);
    }
    if (K % 16) {
        const __m256i left = _mm256_set1_epi32((int)(K % 16));
        const __m256i m_lo = _mm256_cmpgt_epi32(left, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        const __m256i m_hi =
            _mm256_cmpgt_epi32(left, _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15));
        for (int r = 0; r < tm; r++) {
            const float *x = X + (m0 + (size_t)r) * K + kfull * 16;
            a0[r] = _mm256_maskload_ps(x, m_lo);
            a1[r] = _mm256_maskload_ps(x + 8, m_hi);
        }
        dot_chunk_avx2(tm, tn, kfull, W, wk, j0, a0, a1, lo, hi, tlo, thi);
    }
    for (int r = 0; r < tm; r++)
        for (int q = 0; q < tn; q++) {
            float p[16];
            _mm256_storeu_ps(p, _mm256_sub_ps(_mm256_add_ps(lo[r][q], lo[r][q]), tlo[r]));
            _mm256_storeu_ps(p + 8, _mm256_sub_ps(_mm256_add_ps(hi[r][q], hi[r][q]), thi[r]));
            C[(m0 + (size_t)r) * N + j0 + (size_t)q] = reduce16(p);
        }
}

T_AVX2F static void dot_tile_avx2(const float *X, size_t K, size_t m0, int mr,
                                  const uint64_t *W, size_t wk, size_t j0, int nr, float *C,
                                  size_t N)
{
    /* every tile shape (mr, nr in 1..2) and every K on the SIMD path */
    if (mr >= TM2 && nr >= TN2) dot_tile_avx2_body(2, 2, X, K, m0, W, wk, j0, C, N);
    else if (mr >= TM2) dot_tile_avx2_body(2, 1, X, K, m0, W, wk, j0, C, N);
    else if (nr >= TN2) dot_tile_avx2_body(1, 2, X, K, m0, W, wk, j0, C, N);
    else dot_tile_avx2_body(1, 1, X, K, m0, W, wk, j0, C, N);
}

#define TM5 4
#define TN5 4
T_AVX512F static void dot_tile_avx512(const float *X, size_t K, size_t m0, int mr,
                                      const uint64_t *W, size_t wk, size_t j0, int nr, float *C,
                                      size_t N)
{
    if (mr < TM5 || nr < TN5) { /* ragged tile: portable (same operations) */
        dot_tile_portable(X, K, m0, mr, W, wk, j0, nr, C, N);
        return;
    }
    __m512 acc[TM5][TN5], tot[TM5];
    for (int r = 0; r < TM5; r++) {
        tot[r] = _mm512_setzero_ps();
        for (int q = 0; q < TN5; q++) acc[r][q] = _mm512_setzero_ps();
    }
    for (size_t c = 0; c * 16 < K; c++) {
        const size_t left = K - c * 16;
        const __mmask16 live = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
        __mmask16 bits[TN5];
        for (int q = 0; q < TN5; q++)
            bits[q] = (__mmask16)(W[(j0 + (size_t)q) * wk + c / 4] >> (16 * (c % 4)));
        for (int r = 0; r < TM5; r++) {
            const __m512 a = _mm512_maskz_loadu_ps(live, X + (m0 + (size_t)r) * K + c * 16);
            tot[r] = _mm512_add_ps(tot[r], a);
            for (int q = 0; q < TN5; q++)
                acc[r][q] = _mm512_mask_add_ps(acc[r][q], bits[q], acc[r][q], a);
        }
    }
    for (int r = 0; r < TM5; r++)
        for (int q = 0; q < TN5; q++) {
            float p[16];
            _mm512_storeu_ps(p, _mm512_sub_ps(_mm512_add_ps(acc[r][q], acc[r][q]), tot[r]));
            C[(m0 + (size_t)r) * N + j0 + (size_t)q] = reduce16(p);
        }
}
#endif

typedef void (*dot_tile_fn)(const float *, size_t, size_t, int, const uint64_t *, size_t, size_t,
                            int, float *, size_t);

void skbnn_fdot_bits(const float *X, size_t M, size_t K, const uint64_t *W, size_t N, float *C,
                     int n_threads)
{
    dot_tile_fn tile = dot_tile_portable;
    size_t tm = 4, tn = 4;
#if SKBNN_X86
    if (skbnn_get_isa() == SKBNN_ISA_AVX512) tile = dot_tile_avx512;
    else if (skbnn_get_isa() == SKBNN_ISA_AVX2) { tile = dot_tile_avx2; tm = TM2; tn = TN2; }
#endif
    const size_t wk = WORDS(K), nbm = (M + tm - 1) / tm;
    n_threads = team((double)M * (double)K * (double)N, n_threads);
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1)
    for (long bm = 0; bm < (long)nbm; bm++) {
        const size_t m0 = (size_t)bm * tm;
        const int mr = (int)(M - m0 < tm ? M - m0 : tm);
        for (size_t j0 = 0; j0 < N; j0 += tn)
            tile(X, K, m0, mr, W, wk, j0, (int)(N - j0 < tn ? N - j0 : tn), C, N);
    }
}

/* ------------------------------------------------------------------------ */
/* optimiser sweep over one layer (neuron-major rows), 64 weights at a time  */
/* ------------------------------------------------------------------------ */
static inline void load_chunk(const void *p, int half, size_t off, size_t n, float *out,
                              h2f_fn h2f)
{
    if (half) h2f((const uint16_t *)p + off, out, n);
    else memcpy(out, (const float *)p + off, n * sizeof(float));
}

/* sr: NULL for round-to-nearest-even, else the row key of stochastic
 * rounding; col = the column of in[0] */
static inline void store_chunk(void *p, int half, size_t off, size_t n, const float *in,
                               f2h_fn f2h, const uint32_t *sr, size_t col)
{
    if (!half) {
        memcpy((float *)p + off, in, n * sizeof(float));
    } else if (sr) {
        uint16_t *h = (uint16_t *)p + off;
        for (size_t l = 0; l < n; l++) h[l] = f2h_sr_soft(in[l], sr_bits(*sr, col + l));
    } else {
        f2h(in, (uint16_t *)p + off, n);
    }
}

/* sign bit of a stored latent weight: V >= 0 -> 1 (so -0 counts as +1) */
static inline uint64_t stored_sign(const void *V, int half, size_t idx, float v)
{
    if (half) {
        const uint16_t h = ((const uint16_t *)V)[idx];
        return !(h & 0x8000u) || !(h & 0x7fffu);
    }
    return v >= 0.0f;
}

/* Step constants, computed once so every path uses the same float values.
 * With half (float16 state) Adam's second-moment array holds sqrt(m2), the
 * gradient's running RMS: m2 itself, (1 - beta_2) g^2 added each step,
 * underflows float16 for |g| below about 1e-2 (bias gradients are often far
 * smaller), and m1 / sqrt(m2) then takes steps of lr * m1 / eps. */
typedef struct {
    int solver, half, cancel, clip, stochastic;
    float lr, b1, b2, c1, c2, eps, mom, tau, one_m_lr;
    uint32_t keys[3]; /* stochastic rounding: V, M1, M2 */
} step_consts;

/* The row keys of stochastic rounding (V, M1, M2) for row j, or NULL. */
static inline const uint32_t *row_keys(const step_consts *c, size_t j, uint32_t rk[3])
{
    if (!c->stochastic || !c->half) return NULL;
    const uint32_t jm = fmix32((uint32_t)j ^ fmix32((uint32_t)((uint64_t)j >> 32) + SR_GOLDEN));
    for (int a = 0; a < 3; a++) rk[a] = fmix32(c->keys[a] ^ jm);
    return rk;
}

/* One block of n <= 64 weights at offset off, scalar (the reference order of
 * operations every SIMD path reproduces lane by lane). */
static uint64_t step_block_portable(const step_consts *c, void *V, void *M1, void *M2,
                                    size_t off, size_t n, const float *g, uint64_t old,
                                    h2f_fn h2f, f2h_fn f2h, const uint32_t *rk, size_t col)
{
    float v[64], m1[64], m2[64];
    uint64_t bits = 0;
    load_chunk(M1, c->half, off, n, m1, h2f);
    if (c->solver == SKBNN_SOLVER_BOP) { /* binary weights are the bits themselves */
        for (size_t l = 0; l < n; l++) {
            m1[l] = c->one_m_lr * m1[l] + c->lr * g[l];
            const uint64_t w_pos = (old >> l) & 1u;
            const uint64_t flip = fabsf(m1[l]) > c->tau && ((m1[l] >= 0.0f) == (w_pos != 0));
            bits |= (w_pos ^ flip) << l;
        }
    } else {
        load_chunk(V, c->half, off, n, v, h2f);
        if (c->solver == SKBNN_SOLVER_ADAM) load_chunk(M2, c->half, off, n, m2, h2f);
        for (size_t l = 0; l < n; l++) {
            /* gradient cancellation: no push beyond |V| >= 1 */
            const float gl = c->cancel && fabsf(v[l]) >= 1.0f ? 0.0f : g[l];
            if (c->solver == SKBNN_SOLVER_ADAM) {
                /* float16 state holds sqrt(m2) (see step_consts.half) */
                const float m2o = c->half ? m2[l] * m2[l] : m2[l];
                const float m2n = c->b2 * m2o + c->c2 * (gl * gl);
                const float rms = sqrtf(m2n);
                m1[l] = c->b1 * m1[l] + c->c1 * gl;
                m2[l] = c->half ? rms : m2n;
                v[l] = v[l] - c->lr * m1[l] / (rms + c->eps);
            } else { /* SGD with momentum */
                m1[l] = c->mom * m1[l] - c->lr * gl;
                v[l] = v[l] + m1[l];
            }
            if (c->clip) v[l] = v[l] > 1.0f ? 1.0f : (v[l] < -1.0f ? -1.0f : v[l]);
        }
        store_chunk(V, c->half, off, n, v, f2h, rk ? rk + 0 : NULL, col);
        if (c->solver == SKBNN_SOLVER_ADAM)
            store_chunk(M2, c->half, off, n, m2, f2h, rk ? rk + 2 : NULL, col);
        for (size_t l = 0; l < n; l++) bits |= stored_sign(V, c->half, off + l, v[l]) << l;
    }
    store_chunk(M1, c->half, off, n, m1, f2h, rk ? rk + 1 : NULL, col);
    return bits;
}

#if SKBNN_X86
/* 16 lanes; the same IEEE operations as the scalar block, in the same order */
T_AVX512F static inline __m512 ld16(const void *p, int half, size_t off)
{
    if (half) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)p + off)));
    return _mm512_loadu_ps((const float *)p + off);
}

T_AVX512F static inline __m512i fmix32_x16(__m512i h)
{
    h = _mm512_xor_si512(h, _mm512_srli_epi32(h, 16));
    h = _mm512_mullo_epi32(h, _mm512_set1_epi32((int)0x85ebca6bu));
    h = _mm512_xor_si512(h, _mm512_srli_epi32(h, 13));
    h = _mm512_mullo_epi32(h, _mm512_set1_epi32((int)0xc2b2ae35u));
    return _mm512_xor_si512(h, _mm512_srli_epi32(h, 16));
}

/* f2h_sr_soft on 16 lanes (columns col .. col+15 of the row keyed rk) */
T_AVX512F static inline __m256i f2h_sr_x16(__m512 x, uint32_t rk, size_t col)
{
    const __m512i cols = _mm512_add_epi32(_mm512_set1_epi32((int)(uint32_t)col),
                                          _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                                                            11, 12, 13, 14, 15));
    const __m512i r = fmix32_x16(_mm512_add_epi32(
        _mm512_set1_epi32((int)rk), _mm512_mullo_epi32(cols, _mm512_set1_epi32((int)SR_GOLDEN))));
    const __m512 u = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(r, 8)),
                                   _mm512_set1_ps(0x1p-24f));
    const __m512i xi = _mm512_castps_si512(x);
    const __m512 ax = _mm512_castsi512_ps(_mm512_and_si512(xi, _mm512_set1_epi32(0x7fffffff)));
    const __m256i lo = _mm512_cvtps_ph(ax, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m512 flo = _mm512_cvtph_ps(lo);
    const __m512 fhi = _mm512_min_ps(_mm512_cvtph_ps(_mm256_add_epi16(lo, _mm256_set1_epi16(1))),
                                     _mm512_set1_ps(65536.0f)); /* NaN -> 65536, as fminf */
    const __m512 frac = _mm512_div_ps(_mm512_sub_ps(ax, flo), _mm512_sub_ps(fhi, flo));
    const __mmask16 up = _mm512_cmp_ps_mask(u, frac, _CMP_LT_OQ);
    const __m256i inc = _mm512_cvtepi32_epi16(_mm512_maskz_set1_epi32(up, 1));
    const __m256i sign = _mm512_cvtepi32_epi16(
        _mm512_slli_epi32(_mm512_srli_epi32(xi, 31), 15));
    return _mm256_or_si256(_mm256_add_epi16(lo, inc), sign);
}

/* store; returns the stored value as float (rounded when half: nearest even,
 * or stochastic with row key *sr for columns col ..) */
T_AVX512F static inline __m512 st16(void *p, int half, size_t off, __m512 x, const uint32_t *sr,
                                    size_t col)
{
    if (!half) {
        _mm512_storeu_ps((float *)p + off, x);
        return x;
    }
    const __m256i h = sr ? f2h_sr_x16(x, *sr, col)
                         : _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_storeu_si256((__m256i *)((uint16_t *)p + off), h);
    return _mm512_cvtph_ps(h);
}

T_AVX512F static uint64_t step_block64_avx512(const step_consts *c, void *V, void *M1, void *M2,
                                              size_t off, uint64_t gw, const float *gf,
                                              float gscale, uint64_t old, const uint32_t *rk,
                                              size_t col0)
{
    const __m512 gs = _mm512_set1_ps(gscale), ngs = _mm512_set1_ps(-gscale);
    const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f),
                 mone = _mm512_set1_ps(-1.0f);
    const __m512i absmask = _mm512_set1_epi32(0x7fffffff);
    uint64_t bits = 0;
    for (int q = 0; q < 4; q++) {
        const size_t o = off + 16 * (size_t)q, col = col0 + 16 * (size_t)q;
        /* the gradient straight from its bits or floats (no staging array) */
        __m512 gv = gf ? _mm512_mul_ps(_mm512_loadu_ps(gf + 16 * q), gs)
                       : _mm512_mask_blend_ps((__mmask16)(gw >> (16 * q)), ngs, gs);
        __m512 m1 = ld16(M1, c->half, o);
        if (c->solver == SKBNN_SOLVER_BOP) {
            m1 = _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(c->one_m_lr), m1),
                               _mm512_mul_ps(_mm512_set1_ps(c->lr), gv));
            const __mmask16 w = (__mmask16)(old >> (16 * q));
            const __m512 a = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(m1), absmask));
            const __mmask16 big = _mm512_cmp_ps_mask(a, _mm512_set1_ps(c->tau), _CMP_GT_OQ);
            const __mmask16 pos = _mm512_cmp_ps_mask(m1, zero, _CMP_GE_OQ);
            const __mmask16 flip = (__mmask16)(big & (__mmask16)~(pos ^ w));
            bits |= (uint64_t)(uint16_t)(w ^ flip) << (16 * q);
        } else {
            __m512 v = ld16(V, c->half, o);
            if (c->cancel) {
                const __m512 a = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), absmask));
                gv = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, one, _CMP_LT_OQ), gv);
            }
            if (c->solver == SKBNN_SOLVER_ADAM) {
                __m512 m2 = ld16(M2, c->half, o);
                if (c->half) m2 = _mm512_mul_ps(m2, m2);   /* stored as sqrt(m2) */
                m1 = _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(c->b1), m1),
                                   _mm512_mul_ps(_mm512_set1_ps(c->c1), gv));
                m2 = _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(c->b2), m2),
                                   _mm512_mul_ps(_mm512_set1_ps(c->c2), _mm512_mul_ps(gv, gv)));
                const __m512 rms = _mm512_sqrt_ps(m2);
                const __m512 den = _mm512_add_ps(rms, _mm512_set1_ps(c->eps));
                v = _mm512_sub_ps(v, _mm512_div_ps(_mm512_mul_ps(_mm512_set1_ps(c->lr), m1), den));
                st16(M2, c->half, o, c->half ? rms : m2, rk ? rk + 2 : NULL, col);
            } else {
                m1 = _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(c->mom), m1),
                                   _mm512_mul_ps(_mm512_set1_ps(c->lr), gv));
                v = _mm512_add_ps(v, m1);
            }
            if (c->clip) v = _mm512_min_ps(_mm512_max_ps(v, mone), one);
            const __m512 vs = st16(V, c->half, o, v, rk, col);
            bits |= (uint64_t)_mm512_cmp_ps_mask(vs, zero, _CMP_GE_OQ) << (16 * q);
        }
        st16(M1, c->half, o, m1, rk ? rk + 1 : NULL, col);
    }
    return bits;
}

/* 8 lanes */
T_AVX2F static inline __m256 ld8(const void *p, int half, size_t off)
{
    if (half) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + off)));
    return _mm256_loadu_ps((const float *)p + off);
}

T_AVX2F static inline __m256i fmix32_x8(__m256i h)
{
    h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
    h = _mm256_mullo_epi32(h, _mm256_set1_epi32((int)0x85ebca6bu));
    h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 13));
    h = _mm256_mullo_epi32(h, _mm256_set1_epi32((int)0xc2b2ae35u));
    return _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
}

/* 0/1 (or any < 2^16) int32 lanes to 8 uint16 */
T_AVX2F static inline __m128i narrow16_x8(__m256i v)
{
    return _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
}

/* f2h_sr_soft on 8 lanes (columns col .. col+7 of the row keyed rk) */
T_AVX2F static inline __m128i f2h_sr_x8(__m256 x, uint32_t rk, size_t col)
{
    const __m256i cols = _mm256_add_epi32(_mm256_set1_epi32((int)(uint32_t)col),
                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256i r = fmix32_x8(_mm256_add_epi32(
        _mm256_set1_epi32((int)rk), _mm256_mullo_epi32(cols, _mm256_set1_epi32((int)SR_GOLDEN))));
    const __m256 u = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(r, 8)),
                                   _mm256_set1_ps(0x1p-24f));
    const __m256i xi = _mm256_castps_si256(x);
    const __m256 ax = _mm256_castsi256_ps(_mm256_and_si256(xi, _mm256_set1_epi32(0x7fffffff)));
    const __m128i lo = _mm256_cvtps_ph(ax, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 flo = _mm256_cvtph_ps(lo);
    const __m256 fhi = _mm256_min_ps(_mm256_cvtph_ps(_mm_add_epi16(lo, _mm_set1_epi16(1))),
                                     _mm256_set1_ps(65536.0f)); /* NaN -> 65536, as fminf */
    const __m256 frac = _mm256_div_ps(_mm256_sub_ps(ax, flo), _mm256_sub_ps(fhi, flo));
    const __m256i up = _mm256_srli_epi32(_mm256_castps_si256(_mm256_cmp_ps(u, frac, _CMP_LT_OQ)),
                                         31);
    const __m128i sign = _mm_slli_epi16(narrow16_x8(_mm256_srli_epi32(xi, 31)), 15);
    return _mm_or_si128(_mm_add_epi16(lo, narrow16_x8(up)), sign);
}

T_AVX2F static inline __m256 st8(void *p, int half, size_t off, __m256 x, const uint32_t *sr,
                                 size_t col)
{
    if (!half) {
        _mm256_storeu_ps((float *)p + off, x);
        return x;
    }
    const __m128i h = sr ? f2h_sr_x8(x, *sr, col)
                         : _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128((__m128i *)((uint16_t *)p + off), h);
    return _mm256_cvtph_ps(h);
}

T_AVX2F static uint64_t step_block64_avx2(const step_consts *c, void *V, void *M1, void *M2,
                                          size_t off, uint64_t gw, const float *gf, float gscale,
                                          uint64_t old, const uint32_t *rk, size_t col0)
{
    const __m256 gs = _mm256_set1_ps(gscale), ngs = _mm256_set1_ps(-gscale);
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f),
                 mone = _mm256_set1_ps(-1.0f);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i bitsel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    uint64_t bits = 0;
    for (int q = 0; q < 8; q++) {
        const size_t o = off + 8 * (size_t)q, col = col0 + 8 * (size_t)q;
        __m256 gv;
        if (gf) {
            gv = _mm256_mul_ps(_mm256_loadu_ps(gf + 8 * q), gs);
        } else {
            const __m256 sel = _mm256_castsi256_ps(_mm256_cmpeq_epi32(
                _mm256_and_si256(_mm256_set1_epi32((int)((gw >> (8 * q)) & 0xffu)), bitsel),
                bitsel));
            gv = _mm256_blendv_ps(ngs, gs, sel);
        }
        __m256 m1 = ld8(M1, c->half, o);
        if (c->solver == SKBNN_SOLVER_BOP) {
            m1 = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(c->one_m_lr), m1),
                               _mm256_mul_ps(_mm256_set1_ps(c->lr), gv));
            const unsigned w = (unsigned)(old >> (8 * q)) & 0xffu;
            const __m256 wv = _mm256_castsi256_ps(_mm256_cmpeq_epi32(
                _mm256_and_si256(_mm256_set1_epi32((int)w), bitsel), bitsel));
            const __m256 big = _mm256_cmp_ps(_mm256_and_ps(m1, absmask), _mm256_set1_ps(c->tau),
                                             _CMP_GT_OQ);
            const __m256 pos = _mm256_cmp_ps(m1, zero, _CMP_GE_OQ);
            const __m256 flip = _mm256_andnot_ps(_mm256_xor_ps(pos, wv), big);
            bits |= (uint64_t)(unsigned)_mm256_movemask_ps(_mm256_xor_ps(wv, flip)) << (8 * q);
        } else {
            __m256 v = ld8(V, c->half, o);
            if (c->cancel)
                gv = _mm256_and_ps(gv, _mm256_cmp_ps(_mm256_and_ps(v, absmask), one, _CMP_LT_OQ));
            if (c->solver == SKBNN_SOLVER_ADAM) {
                __m256 m2 = ld8(M2, c->half, o);
                if (c->half) m2 = _mm256_mul_ps(m2, m2);   /* stored as sqrt(m2) */
                m1 = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(c->b1), m1),
                                   _mm256_mul_ps(_mm256_set1_ps(c->c1), gv));
                m2 = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(c->b2), m2),
                                   _mm256_mul_ps(_mm256_set1_ps(c->c2), _mm256_mul_ps(gv, gv)));
                const __m256 rms = _mm256_sqrt_ps(m2);
                const __m256 den = _mm256_add_ps(rms, _mm256_set1_ps(c->eps));
                v = _mm256_sub_ps(v, _mm256_div_ps(_mm256_mul_ps(_mm256_set1_ps(c->lr), m1), den));
                st8(M2, c->half, o, c->half ? rms : m2, rk ? rk + 2 : NULL, col);
            } else {
                m1 = _mm256_sub_ps(_mm256_mul_ps(_mm256_set1_ps(c->mom), m1),
                                   _mm256_mul_ps(_mm256_set1_ps(c->lr), gv));
                v = _mm256_add_ps(v, m1);
            }
            if (c->clip) v = _mm256_min_ps(_mm256_max_ps(v, mone), one);
            const __m256 vs = st8(V, c->half, o, v, rk, col);
            bits |= (uint64_t)(unsigned)_mm256_movemask_ps(_mm256_cmp_ps(vs, zero, _CMP_GE_OQ))
                    << (8 * q);
        }
        st8(M1, c->half, o, m1, rk ? rk + 1 : NULL, col);
    }
    return bits;
}
#endif

typedef uint64_t (*block64_fn)(const step_consts *, void *, void *, void *, size_t, uint64_t,
                               const float *, float, uint64_t, const uint32_t *, size_t);

int64_t skbnn_optimizer_step(int solver, int half, void *V, void *M1, void *M2,
                             const uint64_t *gbits, const float *gfloat, float gscale,
                             size_t n_out, size_t n_in, const float *hp, int flags,
                             uint64_t round_key, uint64_t *Wp, int n_threads)
{
    const size_t wn = WORDS(n_in);
    step_consts c = {
        .solver = solver, .half = half, .cancel = (flags & SKBNN_STEP_CANCEL) != 0,
        .clip = (flags & SKBNN_STEP_CLIP) != 0,
        .stochastic = (flags & SKBNN_STEP_STOCHASTIC) != 0, .lr = hp[0], .b1 = hp[1],
        .b2 = hp[2], .c1 = 1.0f - hp[1], .c2 = 1.0f - hp[2], .eps = hp[3], .mom = hp[4],
        .tau = hp[5], .one_m_lr = 1.0f - hp[0]};
    for (uint32_t a = 0; a < 3; a++) /* one independent stream per stored array */
        c.keys[a] = fmix32((uint32_t)round_key ^
                           fmix32((uint32_t)(round_key >> 32) + (a + 1u) * SR_GOLDEN));
    const h2f_fn h2f = pick_h2f();
    const f2h_fn f2h = pick_f2h();
    block64_fn block64 = NULL; /* SIMD for full 64-weight blocks (F16C when half) */
#if SKBNN_X86
    if (!half || use_f16c()) {
        if (skbnn_get_isa() == SKBNN_ISA_AVX512) block64 = step_block64_avx512;
        else if (skbnn_get_isa() == SKBNN_ISA_AVX2) block64 = step_block64_avx2;
    }
#endif
    int64_t flips = 0;
    n_threads = team((double)n_out * (double)n_in * 8.0, n_threads);
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1) \
    reduction(+ : flips)
    for (long jj = 0; jj < (long)n_out; jj++) {
        const size_t j = (size_t)jj;
        float g[64];
        uint32_t rk_buf[3];
        const uint32_t *rk = row_keys(&c, j, rk_buf);
        for (size_t wb = 0; wb < wn; wb++) {
            const size_t off = j * n_in + wb * 64;
            const size_t n = n_in - wb * 64 < 64 ? n_in - wb * 64 : 64;
            const uint64_t old = Wp[j * wn + wb];
            uint64_t bits;
            if (block64 && n == 64) {
                bits = block64(&c, V, M1, M2, off, gbits ? gbits[j * wn + wb] : 0,
                               gbits ? NULL : gfloat + off, gscale, old, rk, wb * 64);
            } else {
                if (gbits) {
                    const uint64_t gw = gbits[j * wn + wb];
                    for (size_t l = 0; l < n; l++) g[l] = ((gw >> l) & 1u) ? gscale : -gscale;
                } else {
                    for (size_t l = 0; l < n; l++) g[l] = gfloat[off + l] * gscale;
                }
                bits = step_block_portable(&c, V, M1, M2, off, n, g, old, h2f, f2h, rk,
                                           wb * 64);
            }
            bits &= tail_mask(n);
            flips += (int64_t)__builtin_popcountll(bits ^ old);
            Wp[j * wn + wb] = bits;
        }
    }
    return flips;
}
