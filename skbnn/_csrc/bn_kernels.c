/* skbnn batch-norm kernels of latent-weight training (LowMemBNNClassifier).
 *
 * The forward epilogue turns the transient pre-activations Z of a batch into
 * what the low-memory step keeps (lowmem.md §11): packed output signs (the
 * next layer's input bits), packed STE masks and per-channel float16
 * statistics; the float BN output is written only when a caller asks for it
 * (standard step, l1/l2 backward, logits).  The backward works on bits and
 * per-channel scalars in place of dL/dA.
 *
 * Determinism: a thread owns a column of 64 channels; every per-channel sum
 * runs over the batch in order, with separate IEEE operations (no FMA:
 * -ffp-contract=off), so thread counts and ISA paths agree bit for bit.
 */
#include "bnn_kernels.h"
#include "kernel_common.h"

#include <math.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__FLT16_MAX__)
#define SKBNN_X86_F16 1
#else
#define SKBNN_X86_F16 0
#endif

/* float16 <-> float32 one value at a time, written so that the vectoriser
 * turns loops of them into F16C conversions inside the ISA wrappers (and a
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

/* one row of a 64-channel column of Z as float32 (z_int: SKBNN_Z_*; int16
 * and float16 values convert exactly, so they give the results of the
 * int32 / float32 Z holding the same values) */
static inline void load_z(const void *Z, int z_int, size_t off, size_t c, float *out)
{
    switch (z_int) {
    case SKBNN_Z_INT32: {
        const int32_t *z = (const int32_t *)Z + off;
        for (size_t l = 0; l < c; l++) out[l] = (float)z[l];
        break;
    }
    case SKBNN_Z_INT16: {
        const int16_t *z = (const int16_t *)Z + off;
        for (size_t l = 0; l < c; l++) out[l] = (float)z[l];
        break;
    }
    case SKBNN_Z_FLOAT16:
        skbnn_f16_to_f32((const uint16_t *)Z + off, out, c);
        break;
    default:
        memcpy(out, (const float *)Z + off, c * sizeof(float));
        break;
    }
}

void skbnn_bn_forward(const void *Z, int z_int, size_t B, size_t n, const float *bias, int l2,
                      float eps, float psi_floor, int round_half, float *mu, float *psi,
                      uint64_t *bits, uint64_t *mask, uint64_t *pre_bits, float *omega,
                      int omega_pre_bias, float *A_out, int n_threads)
{
    const size_t wn = WORDS(n);
    const float fb = (float)B;
    if (z_int == SKBNN_Z_FLOAT16) (void)skbnn_use_f16c(); /* settle the converter */
    n_threads = team((double)B * (double)n * 8.0, n_threads);
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1)
    for (long ww = 0; ww < (long)wn; ww++) {
        const size_t w = (size_t)ww, c0 = w * 64, c = n - c0 < 64 ? n - c0 : 64;
        float z[64], s[64], m[64], p[64], om[64];
        for (size_t l = 0; l < c; l++) s[l] = 0.0f;
        for (size_t b = 0; b < B; b++) {
            load_z(Z, z_int, b * n + c0, c, z);
            for (size_t l = 0; l < c; l++) s[l] += z[l];
        }
        for (size_t l = 0; l < c; l++) m[l] = s[l] / fb;
        if (round_half) round_half_inplace(m, c);
        for (size_t l = 0; l < c; l++) s[l] = 0.0f;
        for (size_t b = 0; b < B; b++) {
            load_z(Z, z_int, b * n + c0, c, z);
            for (size_t l = 0; l < c; l++) {
                const float d = z[l] - m[l];
                s[l] += l2 ? d * d : fabsf(d);
            }
        }
        for (size_t l = 0; l < c; l++) {
            const float q = s[l] / fb;
            p[l] = l2 ? sqrtf(q + eps) : (q > psi_floor ? q : psi_floor);
        }
        if (round_half) round_half_inplace(p, c);
        for (size_t l = 0; l < c; l++) om[l] = 0.0f;
        for (size_t b = 0; b < B; b++) {
            load_z(Z, z_int, b * n + c0, c, z);
            uint64_t sb = 0, mb = 0, pb = 0;
            for (size_t l = 0; l < c; l++) {
                const float pre = (z[l] - m[l]) / p[l];
                const float a = pre + bias[c0 + l];
                sb |= (uint64_t)(a >= 0.0f) << l;
                mb |= (uint64_t)(fabsf(a) <= 1.0f) << l;
                pb |= (uint64_t)(pre >= 0.0f) << l;
                om[l] += omega_pre_bias ? fabsf(pre) : fabsf(a);
                z[l] = a;
            }
            bits[b * wn + w] = sb;
            if (mask) mask[b * wn + w] = mb;
            if (pre_bits) pre_bits[b * wn + w] = pb;
            if (A_out) memcpy(A_out + b * n + c0, z, c * sizeof(float));
        }
        for (size_t l = 0; l < c; l++) {
            mu[c0 + l] = m[l];
            psi[c0 + l] = p[l];
            om[l] = om[l] / fb;
        }
        if (omega) {
            if (round_half) round_half_inplace(om, c);
            memcpy(omega + c0, om, c * sizeof(float));
        }
    }
}

/* The backward body works on one 64-channel column; it is inlined into one
 * wrapper per ISA (target attributes) so the element loops vectorise there.
 * Every loop is element-wise over channels, sums run over b per channel:
 * the same operations in the same order on every path. */
static inline __attribute__((always_inline)) void
bn_backward_column(void *G, int half, size_t B, size_t n, size_t w, const float *psi,
                   const uint64_t *bits, const float *omega, float *G_b)
{
    const size_t wn = WORDS(n), c0 = w * 64, c = n - c0 < 64 ? n - c0 : 64;
    const float fb = (float)B;
    float g[64], s[64], gb[64], sv[64], svs[64], ps[64], om[64];
    uint16_t h[64];
    for (size_t l = 0; l < 64; l++) {
        gb[l] = sv[l] = svs[l] = 0.0f;
        ps[l] = l < c ? psi[c0 + l] : 1.0f;
        om[l] = l < c ? omega[c0 + l] : 0.0f;
    }
    for (int pass = 0; pass < 2; pass++) {
        for (size_t b = 0; b < B; b++) {
            const size_t off = b * n + c0;
            if (half) {
                const uint16_t *src = (const uint16_t *)G + off;
                if (c < 64) { /* ragged last column: zero-padded copy */
                    memcpy(h, src, c * sizeof(uint16_t));
                    for (size_t l = c; l < 64; l++) h[l] = 0;
                    src = h;
                }
                for (size_t l = 0; l < 64; l++) g[l] = skbnn_h2f_inline(src[l]);
            } else {
                const float *src = (const float *)G + off;
                if (c < 64) {
                    memcpy(g, src, c * sizeof(float));
                    for (size_t l = c; l < 64; l++) g[l] = 0.0f;
                } else {
                    for (size_t l = 0; l < 64; l++) g[l] = src[l];
                }
            }
            const uint64_t sb = bits[b * wn + w];
            for (size_t l = 0; l < 64; l++) s[l] = (float)(int)((sb >> l) & 1u) * 2.0f - 1.0f;
            if (pass == 0) {
                for (size_t l = 0; l < 64; l++) {
                    const float v = g[l] / ps[l];
                    gb[l] += g[l];
                    sv[l] += v;
                    svs[l] += (v * s[l]) * om[l];
                }
            } else {
                for (size_t l = 0; l < 64; l++) g[l] = (g[l] / ps[l] - sv[l]) - svs[l] * s[l];
                if (half && c == 64) {
                    uint16_t *dst = (uint16_t *)G + off;
                    for (size_t l = 0; l < 64; l++) dst[l] = skbnn_f2h_inline(g[l]);
                } else if (half) {
                    for (size_t l = 0; l < 64; l++) h[l] = skbnn_f2h_inline(g[l]);
                    memcpy((uint16_t *)G + off, h, c * sizeof(uint16_t));
                } else {
                    memcpy((float *)G + off, g, c * sizeof(float));
                }
            }
        }
        if (pass == 0)
            for (size_t l = 0; l < 64; l++) {
                sv[l] = sv[l] / fb;
                svs[l] = svs[l] / fb;
            }
    }
    for (size_t l = 0; l < c; l++) G_b[c0 + l] = gb[l];
}
#define BN_BACKWARD_LOOP                                                                    \
    const size_t wn = WORDS(n);                                                             \
    n_threads = team((double)B * (double)n * 8.0, n_threads);                               \
    _Pragma("omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1)")  \
    for (long ww = 0; ww < (long)wn; ww++)                                                  \
        bn_backward_column(G, half, B, n, (size_t)ww, psi, bits, omega, G_b);

static void bn_backward_portable(void *G, int half, size_t B, size_t n, const float *psi,
                                 const uint64_t *bits, const float *omega, float *G_b,
                                 int n_threads)
{
    BN_BACKWARD_LOOP
}

#if SKBNN_X86_F16
__attribute__((target("avx2,f16c"))) static void
bn_backward_avx2(void *G, int half, size_t B, size_t n, const float *psi, const uint64_t *bits,
                 const float *omega, float *G_b, int n_threads)
{
    BN_BACKWARD_LOOP
}

__attribute__((target("avx512f,f16c"))) static void
bn_backward_avx512(void *G, int half, size_t B, size_t n, const float *psi,
                   const uint64_t *bits, const float *omega, float *G_b, int n_threads)
{
    BN_BACKWARD_LOOP
}
#endif

void skbnn_bn_backward_bits(void *G, int half, size_t B, size_t n, const float *psi,
                            const uint64_t *bits, const float *omega, float *G_b,
                            int n_threads)
{
#if SKBNN_X86_F16
    if (skbnn_use_f16c()) {
        if (skbnn_get_isa() == SKBNN_ISA_AVX512) {
            bn_backward_avx512(G, half, B, n, psi, bits, omega, G_b, n_threads);
            return;
        }
        if (skbnn_get_isa() == SKBNN_ISA_AVX2) {
            bn_backward_avx2(G, half, B, n, psi, bits, omega, G_b, n_threads);
            return;
        }
    }
#endif
    bn_backward_portable(G, half, B, n, psi, bits, omega, G_b, n_threads);
}
