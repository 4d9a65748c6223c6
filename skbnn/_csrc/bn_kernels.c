/* skbnn batch-norm kernels of latent-weight training (LowMemBNNClassifier).
 *
 * The forward epilogue turns the transient pre-activations Z of a batch into
 * what the low-memory step keeps: packed output signs (the next layer's
 * input bits), packed STE masks and per-channel float16 statistics; the
 * float BN output is written only when a caller asks for it (standard step,
 * l1/l2 backward, logits).  The backward works on bits and per-channel
 * scalars in place of dL/dA.
 *
 * Determinism: every per-channel sum runs over the batch in order on one
 * thread, with separate IEEE operations (no FMA: -ffp-contract=off); the
 * SIMD paths compute 8 channels side by side with the same operations as
 * the portable code.  Threads split the channels for the sums and the rows
 * for the element-wise passes, so thread counts and ISA paths agree bit for
 * bit.
 */
#include "bnn_kernels.h"
#include "kernel_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))

/* float16 <-> float32 one value at a time, written so that the compiler
 * turns them into F16C conversions inside the AVX2 functions (and a
 * correctly rounded software conversion elsewhere). */
#if defined(__FLT16_MAX__)
static inline float skbnn_h2f_inline(uint16_t h)
{
    _Float16 x;
    memcpy(&x, &h, sizeof x);
    return (float)x;
}

static inline uint16_t skbnn_f2h_inline(float f)
{
    const _Float16 x = (_Float16)f;
    uint16_t h;
    memcpy(&h, &x, sizeof h);
    return h;
}
#else
static inline float skbnn_h2f_inline(uint16_t h) { return skbnn_h2f_exact(h); }

static inline uint16_t skbnn_f2h_inline(float f)
{
    uint16_t h;
    skbnn_f32_to_f16(&f, &h, 1);
    return h;
}
#endif

static inline size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

/* rows per block of the SIMD passes: a block of a few hundred channels
 * stays in L1/L2 while it is read once per group of channels */
#define BN_ROWS 128

/* x rounded to float16 precision and back (round to nearest even) */
static inline void round_half_inplace(float *x, size_t n)
{
    uint16_t h[64];
    for (size_t i = 0; i < n; i += 64) {
        const size_t c = n - i < 64 ? n - i : 64;
        skbnn_f32_to_f16(x + i, h, c);
        skbnn_f16_to_f32(h, x + i, c);
    }
}

/* Threads of the enclosing parallel region (1 outside OpenMP builds). */
static inline int team_size(void)
{
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

/* Work units of a team of threads, split statically: the per-channel sums
 * of BN_UNIT channels (each sum over all the rows, whole on one thread, so
 * a layer of 64 channels still has two units) and the element-wise passes
 * over blocks of rows (two or more per thread, at most 4 * BN_ROWS rows).
 * No unit's result depends on the thread that computes it. */
#define BN_UNIT 32

static inline size_t row_unit(size_t B)
{
    const size_t T = (size_t)team_size(), r = (B + 2 * T - 1) / (2 * T);
    return r < 16 ? 16 : r > 4 * BN_ROWS ? 4 * BN_ROWS : r;
}

#if SKBNN_X86
#define BN_AVX2 __attribute__((target("avx2,f16c")))
/* AVX2 with F16C; the AVX-512 setting runs these too (one SIMD path to
 * keep bit-identical to the portable one) */
static int bn_use_avx2(void)
{
    const int isa = skbnn_get_isa();
    return skbnn_use_f16c() && (isa == SKBNN_ISA_AVX2 || isa == SKBNN_ISA_AVX512);
}
#else
static int bn_use_avx2(void) { return 0; }
#endif

/* Dispatch of a runtime element type to a call with a constant one, so each
 * always-inline body is compiled once per type. */
#define BN_Z_SWITCH(z_int, CALL)                                                           \
    switch (z_int) {                                                                       \
    case SKBNN_Z_INT32: CALL(SKBNN_Z_INT32); break;                                        \
    case SKBNN_Z_INT16: CALL(SKBNN_Z_INT16); break;                                        \
    case SKBNN_Z_FLOAT16: CALL(SKBNN_Z_FLOAT16); break;                                    \
    default: CALL(SKBNN_Z_FLOAT32); break;                                                 \
    }

/* ======================================================================== */
/* forward                                                                  */
/* ======================================================================== */

/* the per-channel sums of the forward: the summand of channel c */
enum { ST_SUM, ST_L1, ST_L2, ST_OM_PRE, ST_OM_A };

/* one Z element as float32 (int16 and float16 values convert exactly, so
 * they give the results of the int32 / float32 Z holding the same values) */
INLINE float z_get(const void *Z, int z_int, size_t i)
{
    switch (z_int) {
    case SKBNN_Z_INT32: return (float)((const int32_t *)Z)[i];
    case SKBNN_Z_INT16: return (float)((const int16_t *)Z)[i];
    case SKBNN_Z_FLOAT16: return skbnn_h2f_exact(((const uint16_t *)Z)[i]);
    default: return ((const float *)Z)[i];
    }
}

INLINE float st_term(float z, int mode, const float *m, const float *p, const float *bias,
                     size_t c)
{
    if (mode == ST_SUM) return z;
    const float d = z - m[c];
    if (mode == ST_L1) return fabsf(d);
    if (mode == ST_L2) return d * d;
    const float pre = d / p[c];
    return mode == ST_OM_PRE ? fabsf(pre) : fabsf(pre + bias[c]);
}

/* acc[c] += the summands of rows r0..r1-1 in order, channels [lo, hi) */
INLINE void stat_rows(const void *Z, int z_int, size_t n, size_t r0, size_t r1, size_t lo,
                      size_t hi, int mode, const float *m, const float *p, const float *bias,
                      float *acc)
{
    for (size_t b = r0; b < r1; b++)
        for (size_t c = lo; c < hi; c++)
            acc[c] += st_term(z_get(Z, z_int, b * n + c), mode, m, p, bias, c);
}

/* acc[c] = sum over b in order of the summand, channels [lo, hi) */
INLINE void stat_portable_t(const void *Z, int z_int, size_t B, size_t n, size_t lo, size_t hi,
                            int mode, const float *m, const float *p, const float *bias,
                            float *acc)
{
    for (size_t c = lo; c < hi; c++) acc[c] = 0.0f;
    stat_rows(Z, z_int, n, 0, B, lo, hi, mode, m, p, bias, acc);
}

/* Output pass of one row over channels [c, ce) of the word starting at c0:
 * sign, mask and pre-bias sign bits, A if asked for, and with om_mode
 * ST_OM_PRE / ST_OM_A (constant; else ST_SUM) the omega summand added to
 * om[c] (a single thread passing over all rows in order).  A may alias a
 * float32 Z: the span is read before it is written.  Separate loops over
 * the span, so that the arithmetic vectorises. */
INLINE void out_scalar(const void *Z, int z_int, size_t off, size_t c, size_t ce, size_t c0,
                       const float *m, const float *p, const float *bias, float *A,
                       int om_mode, float *om, uint64_t *sb, uint64_t *mb, uint64_t *pb)
{
    float pre[64], a[64];
    const size_t k = c - c0, nc = ce - c;
    for (size_t l = 0; l < nc; l++) {
        pre[l] = (z_get(Z, z_int, off + c + l) - m[c + l]) / p[c + l];
        a[l] = pre[l] + bias[c + l];
    }
    for (size_t l = 0; l < nc; l++) {
        *sb |= (uint64_t)(a[l] >= 0.0f) << (k + l);
        *mb |= (uint64_t)(fabsf(a[l]) <= 1.0f) << (k + l);
        *pb |= (uint64_t)(pre[l] >= 0.0f) << (k + l);
    }
    if (om_mode != ST_SUM)
        for (size_t l = 0; l < nc; l++) om[c + l] += fabsf(om_mode == ST_OM_PRE ? pre[l] : a[l]);
    if (A) memcpy(A + off + c, a, nc * sizeof(float));
}

typedef void (*stat_fn)(const void *Z, int z_int, size_t B, size_t n, size_t lo, size_t hi,
                        int mode, const float *m, const float *p, const float *bias,
                        float *acc);
typedef void (*out_fn)(const void *Z, int z_int, size_t n, size_t b0, size_t b1,
                       const float *m, const float *p, const float *bias, uint64_t *bits,
                       uint64_t *mask, uint64_t *pre_bits, float *A, int om_mode, float *om);

static void stat_portable(const void *Z, int z_int, size_t B, size_t n, size_t lo, size_t hi,
                          int mode, const float *m, const float *p, const float *bias,
                          float *acc)
{
#define BN_CALL(T)                                                                         \
    switch (mode) {                                                                        \
    case ST_SUM: stat_portable_t(Z, T, B, n, lo, hi, ST_SUM, m, p, bias, acc); break;      \
    case ST_L1: stat_portable_t(Z, T, B, n, lo, hi, ST_L1, m, p, bias, acc); break;        \
    case ST_L2: stat_portable_t(Z, T, B, n, lo, hi, ST_L2, m, p, bias, acc); break;        \
    case ST_OM_PRE: stat_portable_t(Z, T, B, n, lo, hi, ST_OM_PRE, m, p, bias, acc); break; \
    default: stat_portable_t(Z, T, B, n, lo, hi, ST_OM_A, m, p, bias, acc); break;         \
    }
    BN_Z_SWITCH(z_int, BN_CALL)
#undef BN_CALL
}

INLINE void out_portable_t(const void *Z, int z_int, size_t n, size_t b0, size_t b1,
                           const float *m, const float *p, const float *bias, uint64_t *bits,
                           uint64_t *mask, uint64_t *pre_bits, float *A, int om_mode,
                           float *om)
{
    const size_t wn = WORDS(n);
    for (size_t b = b0; b < b1; b++)
        for (size_t w = 0; w < wn; w++) {
            uint64_t sb = 0, mb = 0, pb = 0;
            out_scalar(Z, z_int, b * n, 64 * w, min_size(n, 64 * w + 64), 64 * w, m, p, bias,
                       A, om_mode, om, &sb, &mb, &pb);
            bits[b * wn + w] = sb;
            if (mask) mask[b * wn + w] = mb;
            if (pre_bits) pre_bits[b * wn + w] = pb;
        }
}

static void out_portable(const void *Z, int z_int, size_t n, size_t b0, size_t b1,
                         const float *m, const float *p, const float *bias, uint64_t *bits,
                         uint64_t *mask, uint64_t *pre_bits, float *A, int om_mode, float *om)
{
#define BN_CALL(T)                                                                         \
    switch (om_mode) {                                                                     \
    case ST_OM_PRE:                                                                        \
        out_portable_t(Z, T, n, b0, b1, m, p, bias, bits, mask, pre_bits, A, ST_OM_PRE, om); \
        break;                                                                             \
    case ST_OM_A:                                                                          \
        out_portable_t(Z, T, n, b0, b1, m, p, bias, bits, mask, pre_bits, A, ST_OM_A, om); \
        break;                                                                             \
    default:                                                                               \
        out_portable_t(Z, T, n, b0, b1, m, p, bias, bits, mask, pre_bits, A, ST_SUM, om);  \
    }
    BN_Z_SWITCH(z_int, BN_CALL)
#undef BN_CALL
}

#if SKBNN_X86
/* 8 Z elements as float32 (exact conversions, as z_get) */
BN_AVX2 INLINE __m256 z_get8(const void *Z, int z_int, size_t i)
{
    switch (z_int) {
    case SKBNN_Z_INT32:
        return _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)((const int32_t *)Z + i)));
    case SKBNN_Z_INT16:
        return _mm256_cvtepi32_ps(
            _mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)((const int16_t *)Z + i))));
    case SKBNN_Z_FLOAT16:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)Z + i)));
    default: return _mm256_loadu_ps((const float *)Z + i);
    }
}

BN_AVX2 INLINE __m256 abs8(__m256 x) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x); }

/* st_term on channels c..c+7 */
BN_AVX2 INLINE __m256 st_term8(__m256 z, int mode, const float *m, const float *p,
                               const float *bias, size_t c)
{
    if (mode == ST_SUM) return z;
    const __m256 d = _mm256_sub_ps(z, _mm256_loadu_ps(m + c));
    if (mode == ST_L1) return abs8(d);
    if (mode == ST_L2) return _mm256_mul_ps(d, d);
    const __m256 pre = _mm256_div_ps(d, _mm256_loadu_ps(p + c));
    return mode == ST_OM_PRE ? abs8(pre) : abs8(_mm256_add_ps(pre, _mm256_loadu_ps(bias + c)));
}

/* stat_rows on K (constant) groups of 8 channels from c, the accumulators
 * in registers over the rows */
BN_AVX2 INLINE void stat_avx2_k(const void *Z, int z_int, size_t n, size_t r0, size_t r1,
                                size_t c, int K, int mode, const float *m, const float *p,
                                const float *bias, float *acc)
{
    __m256 s[8];
    for (int k = 0; k < K; k++) s[k] = _mm256_loadu_ps(acc + c + 8 * k);
    for (size_t b = r0; b < r1; b++)
        for (int k = 0; k < K; k++) {
            const size_t ck = c + 8 * (size_t)k;
            const __m256 z = z_get8(Z, z_int, b * n + ck);
            s[k] = _mm256_add_ps(s[k], st_term8(z, mode, m, p, bias, ck));
        }
    for (int k = 0; k < K; k++) _mm256_storeu_ps(acc + c + 8 * k, s[k]);
}

/* Blocks of BN_ROWS rows, each over all the channels in groups of up to 64:
 * Z is read once, in order, however many groups there are. */
BN_AVX2 INLINE void stat_avx2_t(const void *Z, int z_int, size_t B, size_t n, size_t lo,
                                size_t hi, int mode, const float *m, const float *p,
                                const float *bias, float *acc)
{
    for (size_t c = lo; c < hi; c++) acc[c] = 0.0f;
    for (size_t r0 = 0; r0 < B; r0 += BN_ROWS) {
        const size_t r1 = min_size(B, r0 + BN_ROWS);
        size_t c = lo;
        for (; c + 64 <= hi; c += 64) stat_avx2_k(Z, z_int, n, r0, r1, c, 8, mode, m, p, bias, acc);
        if (c + 32 <= hi) {
            stat_avx2_k(Z, z_int, n, r0, r1, c, 4, mode, m, p, bias, acc);
            c += 32;
        }
        if (c + 16 <= hi) {
            stat_avx2_k(Z, z_int, n, r0, r1, c, 2, mode, m, p, bias, acc);
            c += 16;
        }
        if (c + 8 <= hi) {
            stat_avx2_k(Z, z_int, n, r0, r1, c, 1, mode, m, p, bias, acc);
            c += 8;
        }
        stat_rows(Z, z_int, n, r0, r1, c, hi, mode, m, p, bias, acc); /* last < 8 channels */
    }
}

BN_AVX2 static void stat_avx2(const void *Z, int z_int, size_t B, size_t n, size_t lo,
                              size_t hi, int mode, const float *m, const float *p,
                              const float *bias, float *acc)
{
#define BN_CALL(T)                                                                         \
    switch (mode) {                                                                        \
    case ST_SUM: stat_avx2_t(Z, T, B, n, lo, hi, ST_SUM, m, p, bias, acc); break;          \
    case ST_L1: stat_avx2_t(Z, T, B, n, lo, hi, ST_L1, m, p, bias, acc); break;            \
    case ST_L2: stat_avx2_t(Z, T, B, n, lo, hi, ST_L2, m, p, bias, acc); break;            \
    case ST_OM_PRE: stat_avx2_t(Z, T, B, n, lo, hi, ST_OM_PRE, m, p, bias, acc); break;    \
    default: stat_avx2_t(Z, T, B, n, lo, hi, ST_OM_A, m, p, bias, acc); break;             \
    }
    BN_Z_SWITCH(z_int, BN_CALL)
#undef BN_CALL
}

/* out_scalar on channels c..c+7 into bits l..l+7; with om_mode the omega
 * summand is added to *o */
BN_AVX2 INLINE void out8(const void *Z, int z_int, size_t off, size_t c, unsigned l,
                         const float *m, const float *p, const float *bias, float *A,
                         int om_mode, __m256 *o, uint64_t *sb, uint64_t *mb, uint64_t *pb)
{
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
    const __m256 d = _mm256_sub_ps(z_get8(Z, z_int, off + c), _mm256_loadu_ps(m + c));
    const __m256 pre = _mm256_div_ps(d, _mm256_loadu_ps(p + c));
    const __m256 a = _mm256_add_ps(pre, _mm256_loadu_ps(bias + c));
    /* ordered comparisons: NaN gives 0 bits, as the scalar >= and <= */
    *sb |= (uint64_t)(unsigned)_mm256_movemask_ps(_mm256_cmp_ps(a, zero, _CMP_GE_OQ)) << l;
    *mb |= (uint64_t)(unsigned)_mm256_movemask_ps(_mm256_cmp_ps(abs8(a), one, _CMP_LE_OQ)) << l;
    *pb |= (uint64_t)(unsigned)_mm256_movemask_ps(_mm256_cmp_ps(pre, zero, _CMP_GE_OQ)) << l;
    if (om_mode != ST_SUM) *o = _mm256_add_ps(*o, abs8(om_mode == ST_OM_PRE ? pre : a));
    if (A) _mm256_storeu_ps(A + off + c, a);
}

/* Rows of BN_ROWS at a time, word by word: a full word keeps its 8 omega
 * accumulators in registers over the block (the sums still run over the
 * rows in order) while the block's Z stays in cache for the next word.
 * Without omega the last blocks go first: the sums left them in cache. */

BN_AVX2 INLINE void out_avx2_t(const void *Z, int z_int, size_t n, size_t b0, size_t b1,
                               const float *m, const float *p, const float *bias,
                               uint64_t *bits, uint64_t *mask, uint64_t *pre_bits, float *A,
                               int om_mode, float *om)
{
    const size_t wn = WORDS(n), nblk = (b1 - b0 + BN_ROWS - 1) / BN_ROWS;
    for (size_t i = 0; i < nblk; i++) {
        const size_t r0 = b0 + BN_ROWS * (om_mode == ST_SUM ? nblk - 1 - i : i);
        const size_t r1 = min_size(b1, r0 + BN_ROWS);
        for (size_t w = 0; w < wn; w++) {
            const size_t c0 = 64 * w, ce = min_size(n, c0 + 64);
            if (ce - c0 == 64) {
                __m256 o[8];
                if (om_mode != ST_SUM)
                    for (unsigned k = 0; k < 8; k++) o[k] = _mm256_loadu_ps(om + c0 + 8 * k);
                for (size_t b = r0; b < r1; b++) {
                    uint64_t sb = 0, mb = 0, pb = 0;
#pragma GCC unroll 8
                    for (unsigned k = 0; k < 8; k++)
                        out8(Z, z_int, b * n, c0 + 8 * k, 8 * k, m, p, bias, A, om_mode, &o[k],
                             &sb, &mb, &pb);
                    bits[b * wn + w] = sb;
                    if (mask) mask[b * wn + w] = mb;
                    if (pre_bits) pre_bits[b * wn + w] = pb;
                }
                if (om_mode != ST_SUM)
                    for (unsigned k = 0; k < 8; k++) _mm256_storeu_ps(om + c0 + 8 * k, o[k]);
            } else { /* the last, partial word: omega accumulated in memory */
                for (size_t b = r0; b < r1; b++) {
                    uint64_t sb = 0, mb = 0, pb = 0;
                    size_t c = c0;
                    for (; c + 8 <= ce; c += 8) {
                        __m256 o = _mm256_setzero_ps();
                        if (om_mode != ST_SUM) o = _mm256_loadu_ps(om + c);
                        out8(Z, z_int, b * n, c, (unsigned)(c - c0), m, p, bias, A, om_mode, &o,
                             &sb, &mb, &pb);
                        if (om_mode != ST_SUM) _mm256_storeu_ps(om + c, o);
                    }
                    out_scalar(Z, z_int, b * n, c, ce, c0, m, p, bias, A, om_mode, om, &sb, &mb,
                               &pb);
                    bits[b * wn + w] = sb;
                    if (mask) mask[b * wn + w] = mb;
                    if (pre_bits) pre_bits[b * wn + w] = pb;
                }
            }
        }
    }
}

BN_AVX2 static void out_avx2(const void *Z, int z_int, size_t n, size_t b0, size_t b1,
                             const float *m, const float *p, const float *bias, uint64_t *bits,
                             uint64_t *mask, uint64_t *pre_bits, float *A, int om_mode,
                             float *om)
{
#define BN_CALL(T)                                                                         \
    switch (om_mode) {                                                                     \
    case ST_OM_PRE:                                                                        \
        out_avx2_t(Z, T, n, b0, b1, m, p, bias, bits, mask, pre_bits, A, ST_OM_PRE, om);   \
        break;                                                                             \
    case ST_OM_A:                                                                          \
        out_avx2_t(Z, T, n, b0, b1, m, p, bias, bits, mask, pre_bits, A, ST_OM_A, om);     \
        break;                                                                             \
    default:                                                                               \
        out_avx2_t(Z, T, n, b0, b1, m, p, bias, bits, mask, pre_bits, A, ST_SUM, om);      \
    }
    BN_Z_SWITCH(z_int, BN_CALL)
#undef BN_CALL
}
#endif

/* mu, psi and (with om_mode) omega of channels [lo, hi), summed straight
 * into those outputs */
static void fwd_stats(stat_fn stat, const void *Z, int z_int, size_t B, size_t n, size_t lo,
                      size_t hi, const float *bias, int l2, float eps, float psi_floor,
                      int round_half, float *mu, float *psi, int om_mode, float *omega)
{
    const float fb = (float)B;
    stat(Z, z_int, B, n, lo, hi, ST_SUM, mu, psi, bias, mu);
    for (size_t c = lo; c < hi; c++) mu[c] = mu[c] / fb;
    if (round_half) round_half_inplace(mu + lo, hi - lo);
    stat(Z, z_int, B, n, lo, hi, l2 ? ST_L2 : ST_L1, mu, psi, bias, psi);
    for (size_t c = lo; c < hi; c++) {
        const float q = psi[c] / fb;
        psi[c] = l2 ? sqrtf(q + eps) : (q > psi_floor ? q : psi_floor);
    }
    if (round_half) round_half_inplace(psi + lo, hi - lo);
    if (om_mode != ST_SUM) stat(Z, z_int, B, n, lo, hi, om_mode, mu, psi, bias, omega);
}

static void omega_mean(size_t B, size_t lo, size_t hi, int round_half, float *omega)
{
    for (size_t c = lo; c < hi; c++) omega[c] = omega[c] / (float)B;
    if (round_half) round_half_inplace(omega + lo, hi - lo);
}

/* A team first shares out the channels for the sums, then, after the
 * barrier that ends that loop (A_out may be Z: every read of Z for the sums
 * comes first), the rows; the last rows go first, the sums left them in
 * cache.  A single thread sums omega in its output pass instead (one pass
 * over Z and one division per element fewer). */
void skbnn_bn_forward(const void *Z, int z_int, size_t B, size_t n, const float *bias, int l2,
                      float eps, float psi_floor, int round_half, float *mu, float *psi,
                      uint64_t *bits, uint64_t *mask, uint64_t *pre_bits, float *omega,
                      int omega_pre_bias, float *A_out, int n_threads)
{
    const int om_mode = omega ? (omega_pre_bias ? ST_OM_PRE : ST_OM_A) : ST_SUM;
    const long nu = (long)((n + BN_UNIT - 1) / BN_UNIT);
    stat_fn stat = stat_portable;
    out_fn out = out_portable;
#if SKBNN_X86
    if (bn_use_avx2()) {
        stat = stat_avx2;
        out = out_avx2;
    }
#endif
    n_threads = team((double)B * (double)n * 8.0, n_threads);
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
    {
        if (team_size() == 1) {
            fwd_stats(stat, Z, z_int, B, n, 0, n, bias, l2, eps, psi_floor, round_half, mu, psi,
                      ST_SUM, NULL);
            if (omega) memset(omega, 0, n * sizeof(float));
            out(Z, z_int, n, 0, B, mu, psi, bias, bits, mask, pre_bits, A_out, om_mode, omega);
            if (omega) omega_mean(B, 0, n, round_half, omega);
        } else {
#pragma omp for schedule(static)
            for (long u = 0; u < nu; u++) {
                const size_t lo = (size_t)u * BN_UNIT, hi = min_size(n, lo + BN_UNIT);
                fwd_stats(stat, Z, z_int, B, n, lo, hi, bias, l2, eps, psi_floor, round_half, mu,
                          psi, om_mode, omega);
                if (omega) omega_mean(B, lo, hi, round_half, omega);
            }
            const size_t ru = row_unit(B);
            const long nr = (long)((B + ru - 1) / ru);
#pragma omp for schedule(static) nowait /* the end of the region waits */
            for (long i = 0; i < nr; i++) {
                const size_t b0 = (size_t)(nr - 1 - i) * ru;
                out(Z, z_int, n, b0, min_size(B, b0 + ru), mu, psi, bias, bits, mask, pre_bits,
                    A_out, ST_SUM, NULL);
            }
        }
    }
}

/* The two halves of a batch normalised as one (a two-pass rule's second
 * pass holds one half's pre-activations at a time): the statistics of each
 * half added up, then the output of each with the joint ones. */

/* acc[c] += the sum over the rows of Z in order of channel c's summand (mode
 * 0: z, 1: |z - mu|, 2: (z - mu)^2): the half's sum formed as
 * skbnn_bn_forward forms a batch's, then added. */
int skbnn_bn_stats_add(const void *Z, int z_int, size_t B, size_t n, int mode, const float *mu,
                       float *acc, int n_threads)
{
    const int st = mode == 0 ? ST_SUM : mode == 1 ? ST_L1 : ST_L2;
    const long nu = (long)((n + BN_UNIT - 1) / BN_UNIT);
    stat_fn stat = stat_portable;
#if SKBNN_X86
    if (bn_use_avx2()) stat = stat_avx2;
#endif
    float *part = (float *)malloc((n ? n : 1) * sizeof(float));
    if (!part) return -1;
    n_threads = team((double)B * (double)n * 4.0, n_threads);
#pragma omp parallel for num_threads(n_threads) if (n_threads > 1) schedule(static)
    for (long u = 0; u < nu; u++) {
        const size_t lo = (size_t)u * BN_UNIT, hi = min_size(n, lo + BN_UNIT);
        stat(Z, z_int, B, n, lo, hi, st, mu, NULL, NULL, part);
        for (size_t c = lo; c < hi; c++) acc[c] += part[c];
    }
    free(part);
    return 0;
}

/* The output pass of skbnn_bn_forward with given mu and psi: the packed
 * signs of A = (Z - mu) / psi + bias and, if asked for, A (may alias a
 * float32 Z). */
void skbnn_bn_apply(const void *Z, int z_int, size_t B, size_t n, const float *mu,
                    const float *psi, const float *bias, uint64_t *bits, float *A_out,
                    int n_threads)
{
    out_fn out = out_portable;
#if SKBNN_X86
    if (bn_use_avx2()) out = out_avx2;
#endif
    n_threads = team((double)B * (double)n * 4.0, n_threads);
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
    {
        const size_t ru = row_unit(B);
        const long nr = (long)((B + ru - 1) / ru);
#pragma omp for schedule(static)
        for (long i = 0; i < nr; i++) {
            const size_t b0 = (size_t)i * ru;
            out(Z, z_int, n, b0, min_size(B, b0 + ru), mu, psi, bias, bits, NULL, NULL, A_out,
                ST_SUM, NULL);
        }
    }
}

/* ======================================================================== */
/* backward                                                                 */
/* ======================================================================== */

/* Channels per block of the backward: the per-channel means of a block live
 * on the stack while its rows are rewritten. */
#define BN_BLOCK 1024

INLINE float g_get(const void *G, int half, size_t i)
{
    return half ? skbnn_h2f_inline(((const uint16_t *)G)[i]) : ((const float *)G)[i];
}

INLINE float sign_pm1(uint64_t word, size_t c) /* +-1 from bit c % 64 */
{
    return (float)(int)((word >> (c % 64)) & 1u) * 2.0f - 1.0f;
}

INLINE void signs64(uint64_t word, float *s) /* sign_pm1 of all 64 bits */
{
    for (unsigned l = 0; l < 64; l++) s[l] = sign_pm1(word, l);
}

/* sums over rows r0..r1-1 in order added for channels [lo, hi): gb += g,
 * sv += v, svs += (v s) omega with v = g / psi; sv and svs are indexed from
 * c0 */
INLINE void bstat_rows(const void *G, int half, size_t n, size_t r0, size_t r1, size_t lo,
                       size_t hi, const float *psi, const uint64_t *bits, const float *omega,
                       float *gb, float *sv, float *svs, size_t c0)
{
    const size_t wn = WORDS(n);
    float s[64];
    for (size_t b = r0; b < r1; b++)
        for (size_t c = lo; c < hi;) { /* a word of bits at a time */
            const size_t w = c / 64, ce = min_size(hi, 64 * w + 64);
            signs64(bits[b * wn + w], s);
            for (; c < ce; c++) {
                const float g = g_get(G, half, b * n + c);
                const float v = g / psi[c];
                gb[c] += g;
                sv[c - c0] += v;
                svs[c - c0] += (v * s[c - 64 * w]) * omega[c];
            }
        }
}

INLINE void bstat_zero(size_t lo, size_t hi, float *gb, float *sv, float *svs, size_t c0)
{
    for (size_t c = lo; c < hi; c++) gb[c] = sv[c - c0] = svs[c - c0] = 0.0f;
}

/* G = (G / psi - mean v) - mean(v s omega) s on row b, channels [c, ce) */
INLINE void brow_scalar(void *G, int half, size_t off, size_t c, size_t ce, const float *psi,
                        const uint64_t *brow, const float *mv, const float *mvs, size_t c0)
{
    float s[64];
    while (c < ce) { /* a word of bits at a time */
        const size_t w = c / 64, we = min_size(ce, 64 * w + 64);
        signs64(brow[w], s);
        for (; c < we; c++) {
            const float r =
                (g_get(G, half, off + c) / psi[c] - mv[c - c0]) - mvs[c - c0] * s[c - 64 * w];
            if (half)
                ((uint16_t *)G)[off + c] = skbnn_f2h_inline(r);
            else
                ((float *)G)[off + c] = r;
        }
    }
}

typedef void (*bstat_fn)(const void *G, int half, size_t B, size_t n, size_t lo, size_t hi,
                         const float *psi, const uint64_t *bits, const float *omega, float *gb,
                         float *sv, float *svs, size_t c0);
typedef void (*brows_fn)(void *G, int half, size_t n, size_t b0, size_t b1, size_t c0,
                         size_t c1, const float *psi, const uint64_t *bits, const float *mv,
                         const float *mvs);

static void bstat_portable(const void *G, int half, size_t B, size_t n, size_t lo, size_t hi,
                           const float *psi, const uint64_t *bits, const float *omega,
                           float *gb, float *sv, float *svs, size_t c0)
{
    bstat_zero(lo, hi, gb, sv, svs, c0);
    if (half)
        bstat_rows(G, 1, n, 0, B, lo, hi, psi, bits, omega, gb, sv, svs, c0);
    else
        bstat_rows(G, 0, n, 0, B, lo, hi, psi, bits, omega, gb, sv, svs, c0);
}

static void brows_portable(void *G, int half, size_t n, size_t b0, size_t b1, size_t c0,
                           size_t c1, const float *psi, const uint64_t *bits, const float *mv,
                           const float *mvs)
{
    const size_t wn = WORDS(n);
    for (size_t b = b1; b-- > b0;) /* last rows first: the sums left them in cache */
        if (half)
            brow_scalar(G, 1, b * n, c0, c1, psi, bits + b * wn, mv, mvs, c0);
        else
            brow_scalar(G, 0, b * n, c0, c1, psi, bits + b * wn, mv, mvs, c0);
}

#if SKBNN_X86
BN_AVX2 INLINE __m256 g_get8(const void *G, int half, size_t i)
{
    return half ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)G + i)))
                : _mm256_loadu_ps((const float *)G + i);
}

/* The bits of channels c..c+7 (c a multiple of 8) in the sign bits of 8
 * lanes, for blends: the row's 32-bit word holding them (little-endian)
 * broadcast and shifted lane by lane. */
BN_AVX2 INLINE __m256i bit_shifts(size_t c)
{
    return _mm256_sub_epi32(_mm256_setr_epi32(31, 30, 29, 28, 27, 26, 25, 24),
                            _mm256_set1_epi32((int)(c % 32)));
}

BN_AVX2 INLINE __m256 sign_lanes(const uint64_t *brow, size_t c, __m256i shifts)
{
    uint32_t x;
    memcpy(&x, (const char *)brow + c / 32 * 4, sizeof x);
    return _mm256_castsi256_ps(_mm256_sllv_epi32(_mm256_set1_epi32((int)x), shifts));
}

/* K (constant, <= 4) groups of 8 channels from c with the 3K accumulators
 * in registers; s = +-1 is selected by the bit, then multiplied as in
 * sign_pm1's use */
BN_AVX2 INLINE void bstat_avx2_k(const void *G, int half, size_t n, size_t r0, size_t r1,
                                 size_t c, int K, const float *psi, const uint64_t *bits,
                                 const float *omega, float *gb, float *sv, float *svs, size_t c0)
{
    const size_t wn = WORDS(n);
    const __m256 plus = _mm256_set1_ps(1.0f), minus = _mm256_set1_ps(-1.0f);
    __m256 ag[4], av[4], avs[4];
    __m256i sh[4];
    for (int k = 0; k < K; k++) {
        ag[k] = _mm256_loadu_ps(gb + c + 8 * k);
        av[k] = _mm256_loadu_ps(sv + c - c0 + 8 * k);
        avs[k] = _mm256_loadu_ps(svs + c - c0 + 8 * k);
        sh[k] = bit_shifts(c + 8 * (size_t)k);
    }
    for (size_t b = r0; b < r1; b++)
        for (int k = 0; k < K; k++) {
            const size_t ck = c + 8 * (size_t)k;
            const __m256 g = g_get8(G, half, b * n + ck);
            const __m256 v = _mm256_div_ps(g, _mm256_loadu_ps(psi + ck));
            const __m256 sg = _mm256_blendv_ps(minus, plus, sign_lanes(bits + b * wn, ck, sh[k]));
            ag[k] = _mm256_add_ps(ag[k], g);
            av[k] = _mm256_add_ps(av[k], v);
            avs[k] = _mm256_add_ps(avs[k], _mm256_mul_ps(_mm256_mul_ps(v, sg),
                                                         _mm256_loadu_ps(omega + ck)));
        }
    for (int k = 0; k < K; k++) {
        _mm256_storeu_ps(gb + c + 8 * k, ag[k]);
        _mm256_storeu_ps(sv + c - c0 + 8 * k, av[k]);
        _mm256_storeu_ps(svs + c - c0 + 8 * k, avs[k]);
    }
}

BN_AVX2 INLINE void bstat_avx2_t(const void *G, int half, size_t B, size_t n, size_t lo,
                                 size_t hi, const float *psi, const uint64_t *bits,
                                 const float *omega, float *gb, float *sv, float *svs,
                                 size_t c0)
{
    bstat_zero(lo, hi, gb, sv, svs, c0);
    for (size_t r0 = 0; r0 < B; r0 += BN_ROWS) {
        const size_t r1 = min_size(B, r0 + BN_ROWS);
        size_t c = lo;
        for (; c + 32 <= hi; c += 32)
            bstat_avx2_k(G, half, n, r0, r1, c, 4, psi, bits, omega, gb, sv, svs, c0);
        if (c + 16 <= hi) {
            bstat_avx2_k(G, half, n, r0, r1, c, 2, psi, bits, omega, gb, sv, svs, c0);
            c += 16;
        }
        if (c + 8 <= hi) {
            bstat_avx2_k(G, half, n, r0, r1, c, 1, psi, bits, omega, gb, sv, svs, c0);
            c += 8;
        }
        bstat_rows(G, half, n, r0, r1, c, hi, psi, bits, omega, gb, sv, svs, c0);
    }
}

BN_AVX2 static void bstat_avx2(const void *G, int half, size_t B, size_t n, size_t lo,
                               size_t hi, const float *psi, const uint64_t *bits,
                               const float *omega, float *gb, float *sv, float *svs, size_t c0)
{
    if (half)
        bstat_avx2_t(G, 1, B, n, lo, hi, psi, bits, omega, gb, sv, svs, c0);
    else
        bstat_avx2_t(G, 0, B, n, lo, hi, psi, bits, omega, gb, sv, svs, c0);
}

/* brow_scalar on channels c..c+7 (a true product by s, not a negation:
 * the sign of a NaN stays that of the product) */
BN_AVX2 INLINE void brow8(void *G, int half, size_t off, size_t c, const float *psi,
                          const uint64_t *brow, const float *mv, const float *mvs, size_t c0,
                          __m256i shifts)
{
    const __m256 sg = _mm256_blendv_ps(_mm256_set1_ps(-1.0f), _mm256_set1_ps(1.0f),
                                       sign_lanes(brow, c, shifts));
    const __m256 v = _mm256_div_ps(g_get8(G, half, off + c), _mm256_loadu_ps(psi + c));
    const __m256 r = _mm256_sub_ps(_mm256_sub_ps(v, _mm256_loadu_ps(mv + c - c0)),
                                   _mm256_mul_ps(_mm256_loadu_ps(mvs + c - c0), sg));
    if (half)
        _mm_storeu_si128((__m128i *)((uint16_t *)G + off + c),
                         _mm256_cvtps_ph(r, _MM_FROUND_TO_NEAREST_INT));
    else
        _mm256_storeu_ps((float *)G + off + c, r);
}

BN_AVX2 INLINE void brows_avx2_t(void *G, int half, size_t n, size_t b0, size_t b1, size_t c0,
                                 size_t c1, const float *psi, const uint64_t *bits,
                                 const float *mv, const float *mvs)
{
    const size_t wn = WORDS(n);
    for (size_t b = b1; b-- > b0;) { /* last rows first: the sums left them in cache */
        const size_t off = b * n;
        const uint64_t *brow = bits + b * wn;
        size_t c = c0;
        for (; c + 32 <= c1; c += 32) /* c % 32 == 0: constant shifts */
#pragma GCC unroll 4
            for (unsigned k = 0; k < 4; k++)
                brow8(G, half, off, c + 8 * k, psi, brow, mv, mvs, c0, bit_shifts(8 * k));
        for (; c + 8 <= c1; c += 8)
            brow8(G, half, off, c, psi, brow, mv, mvs, c0, bit_shifts(c));
        brow_scalar(G, half, off, c, c1, psi, brow, mv, mvs, c0);
    }
}

BN_AVX2 static void brows_avx2(void *G, int half, size_t n, size_t b0, size_t b1, size_t c0,
                               size_t c1, const float *psi, const uint64_t *bits,
                               const float *mv, const float *mvs)
{
    if (half)
        brows_avx2_t(G, 1, n, b0, b1, c0, c1, psi, bits, mv, mvs);
    else
        brows_avx2_t(G, 0, n, b0, b1, c0, c1, psi, bits, mv, mvs);
}
#endif

/* Per block of channels: the sums, then, after the barrier that ends that
 * loop, the rewrite of G, last rows first (as the forward). */
void skbnn_bn_backward_bits(void *G, int half, size_t B, size_t n, const float *psi,
                            const uint64_t *bits, const float *omega, float *G_b,
                            int n_threads)
{
    const float fb = (float)B;
    float mv[BN_BLOCK], mvs[BN_BLOCK];
    bstat_fn bstat = bstat_portable;
    brows_fn brows = brows_portable;
#if SKBNN_X86
    if (bn_use_avx2()) {
        bstat = bstat_avx2;
        brows = brows_avx2;
    }
#endif
    n_threads = team((double)B * (double)n * 8.0, n_threads);
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
    {
        /* one thread: its sums in one call, a row block at a time over all
         * the channels, so G is read once in order */
        const size_t unit = team_size() == 1 ? BN_BLOCK : BN_UNIT, ru = row_unit(B);
        const long nr = (long)((B + ru - 1) / ru);
        for (size_t c0 = 0; c0 < n; c0 += BN_BLOCK) {
            const size_t c1 = min_size(n, c0 + BN_BLOCK);
            const long nu = (long)((c1 - c0 + unit - 1) / unit);
#pragma omp for schedule(static)
            for (long u = 0; u < nu; u++) {
                const size_t lo = c0 + (size_t)u * unit, hi = min_size(c1, lo + unit);
                bstat(G, half, B, n, lo, hi, psi, bits, omega, G_b, mv, mvs, c0);
                for (size_t c = lo - c0; c < hi - c0; c++) {
                    mv[c] = mv[c] / fb;
                    mvs[c] = mvs[c] / fb;
                }
            }
#pragma omp for schedule(static) nowait
            for (long i = 0; i < nr; i++) {
                const size_t b0 = (size_t)(nr - 1 - i) * ru;
                brows(G, half, n, b0, min_size(B, b0 + ru), c0, c1, psi, bits, mv, mvs);
            }
            if (c1 < n) { /* mv and mvs are reused by the next block */
#pragma omp barrier
            }
        }
    }
}
