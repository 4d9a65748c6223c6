/* skbnn bit-packed kernels.
 *
 * Compiled with the baseline flags of the platform only.  Wide instructions
 * appear solely inside functions carrying a `target` attribute; one of them
 * is chosen once at import (skbnn_set_isa) through a function-pointer table.
 * The matrix product works on a "panel" copy of the right operand: 8 neurons
 * interleaved word by word, so one SIMD lane holds one neuron and the
 * accumulators need no horizontal reduction (each lane is an output).
 */
#include "bnn_kernels.h"
#include "kernel_common.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h> /* part of the x86-64 baseline: no target attribute needed */
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "skbnn's packed layout assumes a little-endian CPU"
#endif

#define PANEL 8 /* neurons per panel */

static inline size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

/* ------------------------------------------------------------------------ */
/* portable popcount                                                         */
/* ------------------------------------------------------------------------ */
static inline uint64_t pop_portable(uint64_t x)
{
#if defined(__aarch64__)
    return (uint64_t)__builtin_popcountll(x); /* NEON cnt: always present */
#else
    x = x - ((x >> 1) & 0x5555555555555555ULL);
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
    return (x * 0x0101010101010101ULL) >> 56;
#endif
}

/* ------------------------------------------------------------------------ */
/* GEMM epilogue shared by the scalar and AVX2 paths                         */
/* mode 0: int32 z = K - 2 pop into out[col..]; mode 1: sign byte at col/8   */
/* ------------------------------------------------------------------------ */
static inline void emit_panel(const uint64_t pop[PANEL], int64_t K, int mode, void *out_row,
                              size_t col, size_t ncols)
{
    if (mode == 0) {
        int32_t *z = (int32_t *)out_row;
        size_t n = min_sz(PANEL, ncols - col);
        for (size_t l = 0; l < n; l++) z[col + l] = (int32_t)(K - 2 * (int64_t)pop[l]);
    } else {
        unsigned byte = 0;
        for (int l = 0; l < PANEL; l++) byte |= (unsigned)(2 * (int64_t)pop[l] <= K) << l;
        ((uint8_t *)out_row)[col / 8] = (uint8_t)byte;
    }
}

/* Row-block kernel type: rows [0, mr) of A (lda words apart) against all
 * np panels; writes row r of the output at out + r * ldo (bytes).
 * Masked form (G != NULL): counts popcount((a XOR b) AND g) with g the row of
 * G (lda words apart, like A) and uses Krow[r] = popcount(g) in place of K,
 * so z = Krow - 2 pop is the inner product over the bits where g is set. */
typedef void (*rowblock_fn)(const uint64_t *A, const uint64_t *G, size_t lda, int mr,
                            const uint64_t *Bp, size_t np, size_t nw, int64_t K,
                            const int64_t *Krow, int mode, uint8_t *out, size_t ldo,
                            size_t ncols);

#define ROW_K(r) (Krow ? Krow[r] : K)

/* ---- generic (SWAR / NEON cnt) ----------------------------------------- */
static void rowblock_generic(const uint64_t *A, const uint64_t *G, size_t lda, int mr,
                             const uint64_t *Bp, size_t np, size_t nw, int64_t K,
                             const int64_t *Krow, int mode, uint8_t *out, size_t ldo,
                             size_t ncols)
{
    for (int r = 0; r < mr; r++) {
        const uint64_t *a = A + (size_t)r * lda, *g = G ? G + (size_t)r * lda : NULL;
        for (size_t p = 0; p < np; p++) {
            const uint64_t *b = Bp + p * nw * PANEL;
            uint64_t acc[PANEL] = {0};
            for (size_t k = 0; k < nw; k++) {
                const uint64_t gk = g ? g[k] : ~0ULL;
                for (int l = 0; l < PANEL; l++)
                    acc[l] += pop_portable((a[k] ^ b[k * PANEL + l]) & gk);
            }
            emit_panel(acc, ROW_K(r), mode, out + (size_t)r * ldo, p * PANEL, ncols);
        }
    }
}

#if SKBNN_X86
/* ---- scalar POPCNT ------------------------------------------------------ */
__attribute__((target("popcnt"))) static void
rowblock_popcnt(const uint64_t *A, const uint64_t *G, size_t lda, int mr, const uint64_t *Bp,
                size_t np, size_t nw, int64_t K, const int64_t *Krow, int mode, uint8_t *out,
                size_t ldo, size_t ncols)
{
    for (int r = 0; r < mr; r++) {
        const uint64_t *a = A + (size_t)r * lda, *g = G ? G + (size_t)r * lda : NULL;
        for (size_t p = 0; p < np; p++) {
            const uint64_t *b = Bp + p * nw * PANEL;
            uint64_t acc[PANEL] = {0};
            for (size_t k = 0; k < nw; k++) {
                const uint64_t ak = a[k], gk = g ? g[k] : ~0ULL;
                for (int l = 0; l < PANEL; l++)
                    acc[l] += (uint64_t)__builtin_popcountll((ak ^ b[k * PANEL + l]) & gk);
            }
            emit_panel(acc, ROW_K(r), mode, out + (size_t)r * ldo, p * PANEL, ncols);
        }
    }
}

/* ---- AVX2: Mula nibble lookup, vpsadbw widening ------------------------- */
#define T_AVX2 __attribute__((target("avx2")))

static inline T_AVX2 __m256i pop256(__m256i x, __m256i lut, __m256i low)
{
    __m256i lo = _mm256_and_si256(x, low);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low);
    __m256i c = _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
    return _mm256_sad_epu8(c, _mm256_setzero_si256());
}

static inline __attribute__((always_inline)) T_AVX2 void
tile_avx2(const uint64_t *A, const uint64_t *G, size_t lda, const int MR, const uint64_t *b,
          size_t nw, int64_t K, const int64_t *Krow, int mode, uint8_t *out, size_t ldo,
          size_t col, size_t ncols)
{
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1,
                                         2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    __m256i acc[4][2];
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    for (size_t k = 0; k < nw; k++) {
        const __m256i b0 = _mm256_load_si256((const __m256i *)(b + k * PANEL));
        const __m256i b1 = _mm256_load_si256((const __m256i *)(b + k * PANEL + 4));
        for (int r = 0; r < MR; r++) {
            const __m256i a = _mm256_set1_epi64x((long long)A[(size_t)r * lda + k]);
            __m256i x0 = _mm256_xor_si256(a, b0), x1 = _mm256_xor_si256(a, b1);
            if (G) {
                const __m256i g = _mm256_set1_epi64x((long long)G[(size_t)r * lda + k]);
                x0 = _mm256_and_si256(x0, g);
                x1 = _mm256_and_si256(x1, g);
            }
            acc[r][0] = _mm256_add_epi64(acc[r][0], pop256(x0, lut, low));
            acc[r][1] = _mm256_add_epi64(acc[r][1], pop256(x1, lut, low));
        }
    }
    for (int r = 0; r < MR; r++) {
        uint64_t pop[PANEL];
        _mm256_storeu_si256((__m256i *)pop, acc[r][0]);
        _mm256_storeu_si256((__m256i *)(pop + 4), acc[r][1]);
        emit_panel(pop, ROW_K(r), mode, out + (size_t)r * ldo, col, ncols);
    }
}

/* G is passed on as a literal NULL in the unmasked calls so the always-inline
 * tiles compile without the mask. */
#define AVX2_TILES(GP)                                                                       \
    for (size_t p = 0; p < np; p++) {                                                        \
        const uint64_t *b = Bp + p * nw * PANEL;                                             \
        switch (mr) {                                                                        \
        case 4: tile_avx2(A, GP, lda, 4, b, nw, K, Krow, mode, out, ldo, p * PANEL, ncols); break; \
        case 3: tile_avx2(A, GP, lda, 3, b, nw, K, Krow, mode, out, ldo, p * PANEL, ncols); break; \
        case 2: tile_avx2(A, GP, lda, 2, b, nw, K, Krow, mode, out, ldo, p * PANEL, ncols); break; \
        default: tile_avx2(A, GP, lda, 1, b, nw, K, Krow, mode, out, ldo, p * PANEL, ncols); break; \
        }                                                                                    \
    }

T_AVX2 static void rowblock_avx2(const uint64_t *A, const uint64_t *G, size_t lda, int mr,
                                 const uint64_t *Bp, size_t np, size_t nw, int64_t K,
                                 const int64_t *Krow, int mode, uint8_t *out, size_t ldo,
                                 size_t ncols)
{
    if (G) {
        AVX2_TILES(G)
    } else {
        AVX2_TILES((const uint64_t *)NULL)
    }
}

/* ---- AVX-512 VPOPCNTDQ: 4 rows x 2 panels of zmm accumulators ----------- */
#define T_AVX512 __attribute__((target("avx512f,avx512bw,avx512vpopcntdq")))

static inline __attribute__((always_inline)) T_AVX512 void
tile_avx512(const uint64_t *A, const uint64_t *G, size_t lda, const int MR, const uint64_t *b,
            const int NP, size_t nw, int64_t K, const int64_t *Krow, int mode, uint8_t *out,
            size_t ldo, size_t col, size_t ncols)
{
    __m512i acc[4][2];
    for (int r = 0; r < MR; r++)
        for (int q = 0; q < NP; q++) acc[r][q] = _mm512_setzero_si512();
    const uint64_t *b1 = b + nw * PANEL;
    for (size_t k = 0; k < nw; k++) {
        __m512i bv[2];
        bv[0] = _mm512_load_si512((const void *)(b + k * PANEL));
        if (NP > 1) bv[1] = _mm512_load_si512((const void *)(b1 + k * PANEL));
        for (int r = 0; r < MR; r++) {
            const __m512i a = _mm512_set1_epi64((long long)A[(size_t)r * lda + k]);
            if (G) { /* one VPTERNLOGQ: (a ^ b) & g  (truth table 0x28) */
                const __m512i g = _mm512_set1_epi64((long long)G[(size_t)r * lda + k]);
                for (int q = 0; q < NP; q++)
                    acc[r][q] = _mm512_add_epi64(
                        acc[r][q], _mm512_popcnt_epi64(_mm512_ternarylogic_epi64(a, bv[q], g, 0x28)));
            } else {
                for (int q = 0; q < NP; q++)
                    acc[r][q] = _mm512_add_epi64(acc[r][q],
                                                 _mm512_popcnt_epi64(_mm512_xor_si512(a, bv[q])));
            }
        }
    }
    if (mode == 0) {
        for (int r = 0; r < MR; r++) {
            const __m512i kv = _mm512_set1_epi64(ROW_K(r));
            int32_t *z = (int32_t *)(out + (size_t)r * ldo);
            for (int q = 0; q < NP; q++) {
                const size_t c = col + (size_t)q * PANEL;
                const size_t n = min_sz(PANEL, ncols - c);
                const __mmask8 m = (__mmask8)((1u << n) - 1u);
                const __m512i zv = _mm512_sub_epi64(kv, _mm512_slli_epi64(acc[r][q], 1));
                _mm512_mask_cvtepi64_storeu_epi32(z + c, m, zv);
            }
        }
    } else {
        for (int r = 0; r < MR; r++) {
            const __m512i half = _mm512_set1_epi64(ROW_K(r) / 2); /* z >= 0 <=> pop <= K/2 */
            for (int q = 0; q < NP; q++)
                out[(size_t)r * ldo + col / 8 + q] =
                    (uint8_t)_mm512_cmple_epu64_mask(acc[r][q], half);
        }
    }
}

#define AVX512_PANELS(MRC, GP)                                                               \
    for (size_t p = 0; p < np; p += 2) {                                                     \
        if (np - p >= 2)                                                                     \
            tile_avx512(A, GP, lda, MRC, Bp + p * nw * PANEL, 2, nw, K, Krow, mode, out, ldo, \
                        p * PANEL, ncols);                                                   \
        else                                                                                 \
            tile_avx512(A, GP, lda, MRC, Bp + p * nw * PANEL, 1, nw, K, Krow, mode, out, ldo, \
                        p * PANEL, ncols);                                                   \
    }

#define AVX512_ROWS(GP)                                                                      \
    switch (mr) {                                                                            \
    case 4: AVX512_PANELS(4, GP); break;                                                     \
    case 3: AVX512_PANELS(3, GP); break;                                                     \
    case 2: AVX512_PANELS(2, GP); break;                                                     \
    default: AVX512_PANELS(1, GP); break;                                                    \
    }

T_AVX512 static void rowblock_avx512(const uint64_t *A, const uint64_t *G, size_t lda, int mr,
                                     const uint64_t *Bp, size_t np, size_t nw, int64_t K,
                                     const int64_t *Krow, int mode, uint8_t *out, size_t ldo,
                                     size_t ncols)
{
    if (G) {
        AVX512_ROWS(G)
    } else {
        AVX512_ROWS((const uint64_t *)NULL)
    }
}

/* ---- popcount of a word array per ISA (tests and small helpers) --------- */
__attribute__((target("popcnt"))) static uint64_t popcount_popcnt(const uint64_t *a, size_t n)
{
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++) s += (uint64_t)__builtin_popcountll(a[i]);
    return s;
}

T_AVX2 static uint64_t popcount_avx2(const uint64_t *a, size_t n)
{
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1,
                                         2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    __m256i acc = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        acc = _mm256_add_epi64(acc, pop256(_mm256_loadu_si256((const __m256i *)(a + i)), lut, low));
    uint64_t t[4];
    _mm256_storeu_si256((__m256i *)t, acc);
    uint64_t s = t[0] + t[1] + t[2] + t[3];
    for (; i < n; i++) s += pop_portable(a[i]);
    return s;
}

T_AVX512 static uint64_t popcount_avx512(const uint64_t *a, size_t n)
{
    __m512i acc = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_loadu_si512((const void *)(a + i))));
    if (i < n) {
        const __mmask8 m = (__mmask8)((1u << (n - i)) - 1u);
        acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_maskz_loadu_epi64(m, a + i)));
    }
    return (uint64_t)_mm512_reduce_add_epi64(acc);
}
#endif /* SKBNN_X86 */

static uint64_t popcount_generic(const uint64_t *a, size_t n)
{
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++) s += pop_portable(a[i]);
    return s;
}

/* ------------------------------------------------------------------------ */
/* dispatch                                                                  */
/* ------------------------------------------------------------------------ */
typedef uint64_t (*popcount_fn)(const uint64_t *, size_t);

static rowblock_fn g_rowblock = rowblock_generic;
static popcount_fn g_popcount = popcount_generic;
static int g_isa = SKBNN_ISA_GENERIC;

int skbnn_cpu_supports(int isa)
{
    switch (isa) {
    case SKBNN_ISA_GENERIC: return 1;
#if SKBNN_X86 && defined(__GNUC__)
    case SKBNN_ISA_POPCNT: __builtin_cpu_init(); return __builtin_cpu_supports("popcnt") != 0;
    case SKBNN_ISA_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") != 0 && __builtin_cpu_supports("popcnt") != 0;
    case SKBNN_ISA_AVX512:
        /* GCC >= 8 also checks that the OS saves the ZMM state (XCR0). */
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") != 0 &&
               __builtin_cpu_supports("avx512bw") != 0 &&
               __builtin_cpu_supports("avx512vpopcntdq") != 0;
#endif
    default: return 0;
    }
}

int skbnn_best_isa(void)
{
    for (int isa = SKBNN_N_ISA - 1; isa > 0; isa--)
        if (skbnn_cpu_supports(isa)) return isa;
    return SKBNN_ISA_GENERIC;
}

static void select_float_packers(int isa); /* packing section */

int skbnn_set_isa(int isa)
{
    if (isa < 0 || isa >= SKBNN_N_ISA || !skbnn_cpu_supports(isa)) return -1;
    select_float_packers(isa);
    switch (isa) {
#if SKBNN_X86
    case SKBNN_ISA_POPCNT: g_rowblock = rowblock_popcnt; g_popcount = popcount_popcnt; break;
    case SKBNN_ISA_AVX2: g_rowblock = rowblock_avx2; g_popcount = popcount_avx2; break;
    case SKBNN_ISA_AVX512: g_rowblock = rowblock_avx512; g_popcount = popcount_avx512; break;
#endif
    default: g_rowblock = rowblock_generic; g_popcount = popcount_generic; break;
    }
    g_isa = isa;
    return 0;
}

int skbnn_get_isa(void) { return g_isa; }

int skbnn_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int skbnn_omp_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

uint64_t skbnn_popcount(const uint64_t *a, size_t nw) { return g_popcount(a, nw); }

/* ------------------------------------------------------------------------ */
/* binary matrix products                                                    */
/* ------------------------------------------------------------------------ */
/* Interleave B (N x nw) into panels of 8 neurons: Bp[p][k][l] = B[8p + l][k],
 * zero for the padding neurons of the last panel. */
/* Scratch outside parallel regions goes through a settable allocator: the
 * extension installs PyMem_RawMalloc/PyMem_RawFree so tracemalloc sees it. */
static void *(*g_alloc)(size_t) = malloc;
static void (*g_free)(void *) = free;

void skbnn_set_allocator(void *(*alloc)(size_t), void (*release)(void *))
{
    g_alloc = alloc ? alloc : malloc;
    g_free = release ? release : free;
}

/* the installed allocator, for the other kernel sources (one hook for all) */
void *skbnn_scratch_alloc(size_t bytes) { return g_alloc(bytes ? bytes : 1); }
void skbnn_scratch_free(void *p)
{
    if (p) g_free(p);
}

/* 64-byte aligned block; *base is what to release with g_free */
static void *aligned_scratch(size_t bytes, void **base)
{
    uint8_t *p = (uint8_t *)g_alloc(bytes + 64);
    *base = p;
    if (!p) return NULL;
    return p + (64 - ((uintptr_t)p & 63u)) % 64;
}

/* Interleave B (N x nw) into panels of 8 neurons: Bp[p][k][l] = B[8p + l][k],
 * zero for the padding neurons of the last panel. */
static uint64_t *make_panels(const uint64_t *B, size_t N, size_t nw, size_t *np_out,
                             void **base)
{
    const size_t np = (N + PANEL - 1) / PANEL;
    const size_t bytes = np * nw * PANEL * sizeof(uint64_t);
    uint64_t *Bp = (uint64_t *)aligned_scratch(bytes ? bytes : 64, base);
    if (!Bp) return NULL;
    memset(Bp, 0, bytes);
    for (size_t j = 0; j < N; j++) {
        uint64_t *dst = Bp + (j / PANEL) * nw * PANEL + (j % PANEL);
        const uint64_t *src = B + j * nw;
        for (size_t k = 0; k < nw; k++) dst[k * PANEL] = src[k];
    }
    *np_out = np;
    return Bp;
}

#define ROW_BLOCK 4

static int bgemm_run(const uint64_t *A, const uint64_t *G, const int64_t *Krow, size_t M,
                     const uint64_t *B, size_t N, size_t nw, int64_t K, int mode, uint8_t *out,
                     size_t ldo, int n_threads)
{
    if (M == 0 || N == 0) return 0;
    size_t np;
    void *base;
    uint64_t *Bp = make_panels(B, N, nw, &np, &base);
    if (!Bp) return -1;
    const rowblock_fn kernel = g_rowblock;
    const long nblocks = (long)((M + ROW_BLOCK - 1) / ROW_BLOCK);
    n_threads = team((double)M * (double)np * (double)nw * PANEL, n_threads);
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1)
    for (long ib = 0; ib < nblocks; ib++) {
        const size_t m0 = (size_t)ib * ROW_BLOCK;
        const int mr = (int)min_sz(ROW_BLOCK, M - m0);
        kernel(A + m0 * nw, G ? G + m0 * nw : NULL, nw, mr, Bp, np, nw, K,
               Krow ? Krow + m0 : NULL, mode, out + m0 * ldo, ldo, N);
    }
    g_free(base);
    return 0;
}

int skbnn_bgemm(const uint64_t *A, size_t M, const uint64_t *B, size_t N, size_t nw, int64_t K,
                int32_t *Z, int n_threads)
{
    return bgemm_run(A, NULL, NULL, M, B, N, nw, K, 0, (uint8_t *)Z, N * sizeof(int32_t),
                     n_threads);
}

static int bgemm_sign_run(const uint64_t *A, const uint64_t *G, const int64_t *Krow, size_t M,
                          const uint64_t *B, size_t N, size_t nw, int64_t K, uint64_t *S,
                          int n_threads)
{
    const size_t wo = WORDS(N);
    if (M == 0 || N == 0) return 0;
    memset(S, 0, M * wo * sizeof(uint64_t));
    int rc = bgemm_run(A, G, Krow, M, B, N, nw, K, 1, (uint8_t *)S, wo * sizeof(uint64_t),
                       n_threads);
    if (N % 64) { /* the last panel wrote sign bits for padding neurons: clear them */
        const uint64_t mask = (1ULL << (N % 64)) - 1ULL;
        for (size_t m = 0; m < M; m++) S[m * wo + wo - 1] &= mask;
    }
    return rc;
}

int skbnn_bgemm_sign(const uint64_t *A, size_t M, const uint64_t *B, size_t N, size_t nw,
                     int64_t K, uint64_t *S, int n_threads)
{
    return bgemm_sign_run(A, NULL, NULL, M, B, N, nw, K, S, n_threads);
}

/* popcount of each mask row: the number of bits the masked product sums over */
static int64_t *mask_counts(const uint64_t *G, size_t M, size_t nw)
{
    int64_t *k = (int64_t *)malloc((M ? M : 1) * sizeof(int64_t));
    if (!k) return NULL;
    for (size_t m = 0; m < M; m++) k[m] = (int64_t)g_popcount(G + m * nw, nw);
    return k;
}

int skbnn_bgemm_masked(const uint64_t *A, const uint64_t *G, size_t M, const uint64_t *B,
                       size_t N, size_t nw, int32_t *Z, int n_threads)
{
    int64_t *krow = mask_counts(G, M, nw);
    if (!krow) return -1;
    int rc = bgemm_run(A, G, krow, M, B, N, nw, 0, 0, (uint8_t *)Z, N * sizeof(int32_t),
                       n_threads);
    free(krow);
    return rc;
}

int skbnn_bgemm_masked_sign(const uint64_t *A, const uint64_t *G, size_t M, const uint64_t *B,
                            size_t N, size_t nw, uint64_t *S, int n_threads)
{
    int64_t *krow = mask_counts(G, M, nw);
    if (!krow) return -1;
    int rc = bgemm_sign_run(A, G, krow, M, B, N, nw, 0, S, n_threads);
    free(krow);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* packing                                                                   */
/* ------------------------------------------------------------------------ */
#define DEFINE_PACK_THRESHOLD(NAME, T)                                                       \
    static void NAME(const T *X, size_t n, size_t f, const double *thr, size_t b, int strict,       \
              uint64_t *out, size_t out_words, int n_threads)                                \
    {                                                                                        \
        n_threads = team((double)n * (double)f * (double)b, n_threads);                          \
        _Pragma("omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1)") \
        for (long i = 0; i < (long)n; i++) {                                                 \
            const T *x = X + (size_t)i * f;                                                  \
            uint64_t *o = out + (size_t)i * out_words;                                       \
            if (b == 1) { /* the same compares, one word built in a register */             \
                for (size_t w = 0; w < out_words; w++) {                                     \
                    const size_t j0 = w * 64, j1 = min_sz(f, j0 + 64);                       \
                    uint64_t word = 0;                                                       \
                    if (strict)                                                              \
                        for (size_t j = j0; j < j1; j++)                                     \
                            word |= (uint64_t)((double)x[j] > thr[j]) << (j - j0);           \
                    else                                                                     \
                        for (size_t j = j0; j < j1; j++)                                     \
                            word |= (uint64_t)((double)x[j] >= thr[j]) << (j - j0);          \
                    o[w] = word;                                                             \
                }                                                                            \
                continue;                                                                    \
            }                                                                                \
            memset(o, 0, out_words * sizeof(uint64_t));                                      \
            size_t bit = 0;                                                                  \
            for (size_t j = 0; j < f; j++) {                                                 \
                const double v = (double)x[j];                                               \
                const double *t = thr + j * b;                                               \
                for (size_t k = 0; k < b; k++, bit++) {                                      \
                    const int on = strict ? (v > t[k]) : (v >= t[k]);                        \
                    o[bit >> 6] |= (uint64_t)on << (bit & 63);                               \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }

DEFINE_PACK_THRESHOLD(pack_threshold_f64_portable, double)
DEFINE_PACK_THRESHOLD(pack_threshold_f32_portable, float)
DEFINE_PACK_THRESHOLD(pack_threshold_u8_portable, uint8_t)

DEFINE_PACK_THRESHOLD(pack_threshold_i8_portable, int8_t)
DEFINE_PACK_THRESHOLD(pack_threshold_i64_portable, int64_t)

void skbnn_pack_threshold_i64(const int64_t *X, size_t n, size_t f, const double *thr, size_t b,
                              int strict, uint64_t *out, size_t out_words, int n_threads)
{
    pack_threshold_i64_portable(X, n, f, thr, b, strict, out, out_words, n_threads);
}

/* Byte input (uint8 images, int8 +/-1 data) with one threshold per feature:
 * compare bytes against integer thresholds, 16 features per SSE2 movemask.
 * For integer x: x > t <=> x >= floor(t) + 1 and x >= t <=> x >= ceil(t);
 * thresholds above the type's range never pass, below it always pass. */
#if SKBNN_X86
/* AVX-512BW: one 64-bit output word per compare mask of 64 bytes; the tail
 * uses a masked load (bytes past the row are never read). */
T_AVX512 static unsigned pack_binary_bytes_avx512(const uint8_t *X, int is_signed, size_t n,
                                                  size_t f, uint64_t *out, size_t out_words,
                                                  int n_threads)
{
    unsigned kinds = 0;
    n_threads = team((double)n * (double)f, n_threads);
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1) reduction(|:kinds)
    for (long i = 0; i < (long)n; i++) {
        const uint8_t *x = X + (size_t)i * f;
        uint64_t *o = out + (size_t)i * out_words;
        const __m512i one = _mm512_set1_epi8(1), minus_one = _mm512_set1_epi8(-1),
                      zero = _mm512_setzero_si512();
        uint64_t neg = 0, nul = 0, pos = 0, other = 0;
        for (size_t w = 0; w < out_words; w++) {
            const size_t left = f - w * 64;
            const __mmask64 valid = left >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << left) - 1);
            const __m512i v = _mm512_maskz_loadu_epi8(valid, x + w * 64);
            const __mmask64 p = _mm512_cmpeq_epi8_mask(v, one);
            const __mmask64 z = _mm512_cmpeq_epi8_mask(v, zero) & valid;
            const __mmask64 m = is_signed ? _mm512_cmpeq_epi8_mask(v, minus_one) : 0;
            /* bit = x > 0 for every value (not only +1), as on the other paths */
            o[w] = (is_signed ? _mm512_cmpgt_epi8_mask(v, zero) : _mm512_cmpneq_epi8_mask(v, zero))
                   & valid;
            pos |= p;
            nul |= z;
            neg |= m;
            other |= valid & ~(p | z | m);
        }
        kinds |= (neg ? 1u : 0u) | (nul ? 2u : 0u) | (pos ? 4u : 0u) | (other ? 8u : 0u);
    }
    return kinds;
}

/* AVX-512BW thresholded bytes: same integer thresholds as pack_bytes_sse2. */
T_AVX512 static void pack_bytes_avx512(const uint8_t *X, int is_signed, size_t n, size_t f,
                                       const uint8_t *t8, const uint8_t *ok, uint64_t *out,
                                       size_t out_words, int n_threads)
{
    n_threads = team((double)n * (double)f, n_threads);
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1)
    for (long i = 0; i < (long)n; i++) {
        const uint8_t *x = X + (size_t)i * f;
        uint64_t *o = out + (size_t)i * out_words;
        for (size_t w = 0; w < out_words; w++) {
            const size_t left = f - w * 64;
            const __mmask64 valid = left >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << left) - 1);
            const __m512i v = _mm512_maskz_loadu_epi8(valid, x + w * 64);
            const __m512i t = _mm512_maskz_loadu_epi8(valid, t8 + w * 64);
            const __mmask64 ge = is_signed ? _mm512_cmpge_epi8_mask(v, t)
                                           : _mm512_cmpge_epu8_mask(v, t);
            const __mmask64 okm = _mm512_test_epi8_mask(
                _mm512_maskz_loadu_epi8(valid, ok + w * 64), _mm512_set1_epi8(-1));
            o[w] = ge & okm & valid;
        }
    }
}
#endif

#if defined(__SSE2__)
static void pack_bytes_sse2(const uint8_t *X, int is_signed, size_t n, size_t f,
                            const uint8_t *t8, const uint8_t *ok, uint64_t *out,
                            size_t out_words, int n_threads)
{
    const size_t full = f / 64;
    n_threads = team((double)n * (double)f, n_threads);
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1)
    for (long i = 0; i < (long)n; i++) {
        const uint8_t *x = X + (size_t)i * f;
        uint64_t *o = out + (size_t)i * out_words;
        memset(o, 0, out_words * sizeof(uint64_t));
        for (size_t w = 0; w < full; w++) {
            uint64_t word = 0;
            for (int q = 0; q < 4; q++) {
                const size_t j = w * 64 + (size_t)q * 16;
                const __m128i xv = _mm_loadu_si128((const __m128i *)(x + j));
                const __m128i tv = _mm_loadu_si128((const __m128i *)(t8 + j));
                const __m128i ge = is_signed ? _mm_andnot_si128(_mm_cmpgt_epi8(tv, xv),
                                                                _mm_set1_epi8(-1))
                                             : _mm_cmpeq_epi8(_mm_max_epu8(xv, tv), xv);
                const __m128i on = _mm_and_si128(ge, _mm_loadu_si128((const __m128i *)(ok + j)));
                word |= (uint64_t)(uint32_t)_mm_movemask_epi8(on) << (16 * q);
            }
            o[w] = word;
        }
        for (size_t j = full * 64; j < f; j++) {
            const int ge = is_signed ? ((int8_t)x[j] >= (int8_t)t8[j]) : (x[j] >= t8[j]);
            o[j >> 6] |= (uint64_t)(ok[j] && ge) << (j & 63);
        }
    }
}
#endif

/* Byte input (uint8 images, int8 +/-1 data) with one threshold per feature,
 * on the SIMD path of the selected ISA (returns 0 on the portable path).
 * For integer x: x > t <=> x >= floor(t) + 1 and x >= t <=> x >= ceil(t);
 * thresholds above the type's range never pass, below it always pass. */
static int pack_bytes(const uint8_t *X, int is_signed, size_t n, size_t f, const double *thr,
                      int strict, uint64_t *out, size_t out_words, int n_threads)
{
#if SKBNN_X86 && defined(__SSE2__)
    if (g_isa == SKBNN_ISA_GENERIC) return 0;
    uint8_t *t8 = (uint8_t *)malloc(f), *ok = (uint8_t *)malloc(f);
    if (!t8 || !ok) {
        free(t8);
        free(ok);
        return 0;
    }
    const double lo = is_signed ? -128.0 : 0.0, hi = is_signed ? 127.0 : 255.0;
    for (size_t j = 0; j < f; j++) {
        const double tt = strict ? floor(thr[j]) + 1.0 : ceil(thr[j]);
        /* a NaN threshold never passes (x > NaN and x >= NaN are false) and must
         * not reach the integer conversion (undefined for NaN) */
        const int never = tt > hi || tt != tt;
        const double c = never ? hi : (tt < lo ? lo : tt);
        t8[j] = is_signed ? (uint8_t)(int8_t)c : (uint8_t)c;
        ok[j] = never ? 0x00 : 0xff;
    }
    if (g_isa == SKBNN_ISA_AVX512)
        pack_bytes_avx512(X, is_signed, n, f, t8, ok, out, out_words, n_threads);
    else
        pack_bytes_sse2(X, is_signed, n, f, t8, ok, out, out_words, n_threads);
    free(t8);
    free(ok);
    return 1;
#else
    (void)X; (void)is_signed; (void)n; (void)f; (void)thr; (void)strict; (void)out;
    (void)out_words; (void)n_threads;
    return 0;
#endif
}

void skbnn_pack_threshold_u8(const uint8_t *X, size_t n, size_t f, const double *thr, size_t b,
                             int strict, uint64_t *out, size_t out_words, int n_threads)
{
    if (b == 1 && pack_bytes(X, 0, n, f, thr, strict, out, out_words, n_threads)) return;
    pack_threshold_u8_portable(X, n, f, thr, b, strict, out, out_words, n_threads);
}

void skbnn_pack_threshold_i8(const int8_t *X, size_t n, size_t f, const double *thr, size_t b,
                             int strict, uint64_t *out, size_t out_words, int n_threads)
{
    if (b == 1 && pack_bytes((const uint8_t *)X, 1, n, f, thr, strict, out, out_words,
                                  n_threads))
        return;
    pack_threshold_i8_portable(X, n, f, thr, b, strict, out, out_words, n_threads);
}

/* Already-binary input (+/-1 or 0/1): bit = x > 0, and the bit set of the
 * values seen (1 = -1, 2 = 0, 4 = +1, 8 = anything else, NaN included), so
 * validation costs no extra pass over X. */
static inline unsigned value_kind_f64(double v)
{
    return v == -1.0 ? 1u : v == 0.0 ? 2u : v == 1.0 ? 4u : 8u;
}

#define DEFINE_PACK_BINARY(NAME, T)                                                          \
    static unsigned NAME(const T *X, size_t n, size_t f, uint64_t *out, size_t out_words,   \
                         int n_threads)                                                      \
    {                                                                                        \
        unsigned kinds = 0;                                                                  \
        n_threads = team((double)n * (double)f, n_threads);                                      \
        _Pragma("omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1) reduction(|:kinds)") \
        for (long i = 0; i < (long)n; i++) {                                                 \
            const T *x = X + (size_t)i * f;                                                  \
            uint64_t *o = out + (size_t)i * out_words;                                       \
            /* value_kind_f64 without branches: one flag per kind, OR-ed */                 \
            unsigned neg = 0, nul = 0, pos = 0, other = 0;                                   \
            for (size_t w = 0; w < out_words; w++) {                                         \
                const size_t j0 = w * 64, j1 = min_sz(f, j0 + 64);                           \
                uint64_t word = 0;                                                           \
                for (size_t j = j0; j < j1; j++) {                                           \
                    const double v = (double)x[j];                                           \
                    const unsigned m = v == -1.0, z = v == 0.0, p = v == 1.0;                \
                    neg |= m;                                                                \
                    nul |= z;                                                                \
                    pos |= p;                                                                \
                    other |= !(m | z | p);                                                   \
                    word |= (uint64_t)(x[j] > 0) << (j - j0);                                \
                }                                                                            \
                o[w] = word;                                                                 \
            }                                                                                \
            kinds |= neg | nul << 1 | pos << 2 | other << 3;                                 \
        }                                                                                    \
        return kinds;                                                                        \
    }

DEFINE_PACK_BINARY(pack_binary_f64_portable, double)
DEFINE_PACK_BINARY(pack_binary_f32_portable, float)
DEFINE_PACK_BINARY(pack_binary_u8_portable, uint8_t)
DEFINE_PACK_BINARY(pack_binary_i8_portable, int8_t)
DEFINE_PACK_BINARY(pack_binary_i64, int64_t)

/* Bytes, 16 per SSE2 step: bit = x > 0 and the kinds seen (anything but
 * -1/0/+1 is reported and refused by the caller). */
static int pack_binary_bytes_sse2(const uint8_t *X, int is_signed, size_t n, size_t f,
                                  uint64_t *out, size_t out_words, int n_threads,
                                  unsigned *kinds_out)
{
#if defined(__SSE2__)
    const size_t full = f / 16;
    unsigned kinds = 0;
    n_threads = team((double)n * (double)f, n_threads);
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1) reduction(|:kinds)
    for (long i = 0; i < (long)n; i++) {
        const uint8_t *x = X + (size_t)i * f;
        uint64_t *o = out + (size_t)i * out_words;
        memset(o, 0, out_words * sizeof(uint64_t));
        const __m128i one = _mm_set1_epi8(1), minus_one = _mm_set1_epi8(-1),
                      zero = _mm_setzero_si128();
        __m128i seen_neg = zero, seen_zero = zero, seen_pos = zero, seen_other = zero;
        for (size_t q = 0; q < full; q++) {
            const __m128i v = _mm_loadu_si128((const __m128i *)(x + 16 * q));
            const __m128i pos = _mm_cmpeq_epi8(v, one), nul = _mm_cmpeq_epi8(v, zero);
            const __m128i neg = is_signed ? _mm_cmpeq_epi8(v, minus_one) : zero;
            seen_neg = _mm_or_si128(seen_neg, neg);
            seen_zero = _mm_or_si128(seen_zero, nul);
            seen_pos = _mm_or_si128(seen_pos, pos);
            seen_other = _mm_or_si128(seen_other,
                                      _mm_andnot_si128(_mm_or_si128(_mm_or_si128(neg, nul), pos),
                                                       minus_one));
            /* bit = x > 0 for every value (not only +1), as on the other paths */
            const __m128i gt = is_signed ? _mm_cmpgt_epi8(v, zero)
                                         : _mm_andnot_si128(nul, minus_one);
            o[q >> 2] |= (uint64_t)(uint32_t)_mm_movemask_epi8(gt) << (16 * (q & 3));
        }
        unsigned k = (_mm_movemask_epi8(seen_neg) ? 1u : 0u) |
                     (_mm_movemask_epi8(seen_zero) ? 2u : 0u) |
                     (_mm_movemask_epi8(seen_pos) ? 4u : 0u) |
                     (_mm_movemask_epi8(seen_other) ? 8u : 0u);
        for (size_t j = full * 16; j < f; j++) {
            const double v = is_signed ? (double)(int8_t)x[j] : (double)x[j];
            k |= value_kind_f64(v);
            o[j >> 6] |= (uint64_t)(v > 0) << (j & 63);
        }
        kinds |= k;
    }
    *kinds_out = kinds;
    return 1;
#else
    (void)X; (void)is_signed; (void)n; (void)f; (void)out; (void)out_words; (void)n_threads;
    (void)kinds_out;
    return 0;
#endif
}

unsigned skbnn_pack_binary_i64(const int64_t *X, size_t n, size_t f, uint64_t *out,
                               size_t out_words, int n_threads)
{
    return pack_binary_i64(X, n, f, out, out_words, n_threads);
}

static unsigned pack_binary_bytes(const uint8_t *X, int is_signed, size_t n, size_t f,
                                  uint64_t *out, size_t out_words, int n_threads)
{
    unsigned kinds;
#if SKBNN_X86
    if (g_isa == SKBNN_ISA_AVX512)
        return pack_binary_bytes_avx512(X, is_signed, n, f, out, out_words, n_threads);
#endif
    if (g_isa != SKBNN_ISA_GENERIC &&
        pack_binary_bytes_sse2(X, is_signed, n, f, out, out_words, n_threads, &kinds))
        return kinds;
    return is_signed ? pack_binary_i8_portable((const int8_t *)X, n, f, out, out_words, n_threads)
                     : pack_binary_u8_portable(X, n, f, out, out_words, n_threads);
}

unsigned skbnn_pack_binary_u8(const uint8_t *X, size_t n, size_t f, uint64_t *out,
                              size_t out_words, int n_threads)
{
    return pack_binary_bytes(X, 0, n, f, out, out_words, n_threads);
}

unsigned skbnn_pack_binary_i8(const int8_t *X, size_t n, size_t f, uint64_t *out,
                              size_t out_words, int n_threads)
{
    return pack_binary_bytes((const uint8_t *)X, 1, n, f, out, out_words, n_threads);
}

/* ------------------------------------------------------------------------ */
/* float input: SIMD compare-and-pack                                        */
/* ------------------------------------------------------------------------ */
/* pack_threshold with one threshold per feature (b == 1: the sign and median
 * binarisers) and pack_binary, on float32/float64 rows: 64 features per
 * output word from vector compares (SSE2 on the popcnt path, AVX2, AVX-512F
 * compare masks), the row's last partial word partly in scalar code.  Every
 * path gives the bits of the portable loops above:
 *   - float64: the same IEEE comparisons x > t / x >= t (ordered and quiet:
 *     false when either side is NaN; -0.0 == 0.0; infinities compare as
 *     numbers);
 *   - float32 x against a float64 threshold t (the portable loop compares
 *     (double)x with t): compared in float32 with below(t), the largest
 *     float32 <= t, or above(t), the smallest float32 >= t.  No float32 lies
 *     strictly between below(t) and t nor between t and above(t), so for
 *     every float32 x (infinities included) x > t <=> x > below(t) and
 *     x >= t <=> x >= above(t); a NaN threshold stays NaN (never passes);
 *   - pack_binary: bit = x > 0 and the kinds of values seen, from compares
 *     with -1, 0 and +1 (exact in either width: NaN matches none, -0.0 is 0).
 * A row kernel writes the WORDS(f) words of one row; rows are split over
 * threads statically, as everywhere else.  Threshold row kernels also
 * return 1 when the row holds a NaN or an infinity (x - x is +0.0 for
 * every finite x and NaN otherwise; the differences are OR-ed bitwise), so
 * an estimator's input validation costs no second pass over X. */
typedef unsigned (*thr_row_f32_fn)(const float *x, const float *t, size_t f, int strict,
                                   int uniform, uint64_t *o);
typedef unsigned (*thr_row_f64_fn)(const double *x, const double *t, size_t f, int strict,
                                   int uniform, uint64_t *o);
typedef unsigned (*bin_row_f32_fn)(const float *x, size_t f, uint64_t *o);
typedef unsigned (*bin_row_f64_fn)(const double *x, size_t f, uint64_t *o);

/* NULL: the portable loops (generic path, or a CPU without these units) */
static thr_row_f32_fn g_thr_row_f32 = NULL;
static thr_row_f64_fn g_thr_row_f64 = NULL;
static bin_row_f32_fn g_bin_row_f32 = NULL;
static bin_row_f64_fn g_bin_row_f64 = NULL;

/* largest float32 <= t (-inf below the float32 range); NaN stays NaN */
static float float32_below(double t)
{
    if (t != t) return (float)t;
    if (t > (double)FLT_MAX) return t == INFINITY ? INFINITY : FLT_MAX;
    if (t < -(double)FLT_MAX) return -INFINITY;
    float r = (float)t; /* in range: rounded to nearest, finite */
    if ((double)r > t) r = nextafterf(r, -INFINITY);
    return r;
}

/* smallest float32 >= t */
static float float32_above(double t) { return -float32_below(-t); }

/* scalar bits of n (< 64) features: the rule the vector compares apply */
#define DEFINE_THR_TAIL(NAME, T)                                                             \
    static inline uint64_t NAME(const T *x, const T *t, size_t n, int strict, unsigned *bad) \
    {                                                                                        \
        uint64_t w = 0;                                                                      \
        for (size_t k = 0; k < n; k++) {                                                     \
            w |= (uint64_t)(strict ? x[k] > t[k] : x[k] >= t[k]) << k;                      \
            *bad |= !isfinite(x[k]);                                                         \
        }                                                                                    \
        return w;                                                                            \
    }
DEFINE_THR_TAIL(thr_tail_f32, float)
DEFINE_THR_TAIL(thr_tail_f64, double)

#define DEFINE_BIN_TAIL(NAME, T)                                                             \
    static inline uint64_t NAME(const T *x, size_t n, unsigned *kinds)                       \
    {                                                                                        \
        uint64_t w = 0;                                                                      \
        unsigned k = 0;                                                                      \
        for (size_t j = 0; j < n; j++) {                                                     \
            k |= value_kind_f64((double)x[j]);                                               \
            w |= (uint64_t)(x[j] > 0) << j;                                                  \
        }                                                                                    \
        *kinds |= k;                                                                         \
        return w;                                                                            \
    }
DEFINE_BIN_TAIL(bin_tail_f32, float)
DEFINE_BIN_TAIL(bin_tail_f64, double)

/* Row kernel of a STEP(x, t, strict) macro that returns the bits of VEC
 * features (VEC divides 64): full words in vector steps, then the last
 * word's whole steps and its scalar rest.  `strict` is a constant in each
 * of the two instantiations, so the compare is chosen outside the loops. */
#define THR_ROW_BODY(T, VEC, STEP, TAIL, NF_INIT, NF_FINISH)                                \
    {                                                                                        \
        NF_INIT                                                                              \
        unsigned bad = 0;                                                                    \
        const size_t full = f / 64;                                                          \
        for (size_t w = 0; w < full; w++) {                                                  \
            const T *xw = x + 64 * w, *tw = uniform ? t : t + 64 * w;                        \
            uint64_t word = 0;                                                               \
            for (int q = 0; q < 64 / (VEC); q++)                                             \
                word |= STEP(xw + (VEC) * q, tw + (VEC) * q, strict) << ((VEC) * q);         \
            o[w] = word;                                                                     \
        }                                                                                    \
        if (f % 64) {                                                                        \
            const T *xw = x + 64 * full, *tw = uniform ? t : t + 64 * full;                  \
            const size_t left = f % 64;                                                      \
            uint64_t word = 0;                                                               \
            size_t k = 0;                                                                    \
            for (; k + (VEC) <= left; k += (VEC)) word |= STEP(xw + k, tw + k, strict) << k; \
            o[full] = word | TAIL(xw + k, tw + k, left - k, strict, &bad) << k;              \
        }                                                                                    \
        NF_FINISH                                                                            \
        return bad;                                                                          \
    }

/* the four instantiations: strict or not, and `uniform` (one threshold for
 * every feature: t then holds 64 copies of it, read again for every word
 * and so always in L1) */
#define THR_ROW_DISPATCH(NAME)                                                               \
    {                                                                                        \
        if (strict)                                                                          \
            return uniform ? NAME##_body(x, t, f, 1, 1, o) : NAME##_body(x, t, f, 1, 0, o);  \
        return uniform ? NAME##_body(x, t, f, 0, 1, o) : NAME##_body(x, t, f, 0, 0, o);      \
    }

#define DEFINE_THR_ROW(NAME, ATTR, T, VEC, STEP, TAIL, NF_INIT, NF_FINISH)                  \
    static inline __attribute__((always_inline)) ATTR unsigned NAME##_body(                  \
        const T *x, const T *t, size_t f, const int strict, const int uniform, uint64_t *o)  \
        THR_ROW_BODY(T, VEC, STEP, TAIL, NF_INIT, NF_FINISH)                                 \
    ATTR static unsigned NAME(const T *x, const T *t, size_t f, int strict, int uniform,         \
                          uint64_t *o)                                                       \
        THR_ROW_DISPATCH(NAME)

/* pack_binary row of a BSTEP(x) macro returning VEC bits and OR-ing the
 * value kinds into the row's vector accumulators (declared by INIT,
 * reduced to the kinds bit set by FINISH). */
#define DEFINE_BIN_ROW(NAME, ATTR, T, VEC, INIT, BSTEP, FINISH, TAIL)                        \
    ATTR static unsigned NAME(const T *x, size_t f, uint64_t *o)                             \
    {                                                                                        \
        INIT                                                                                 \
        unsigned kinds = 0;                                                                  \
        const size_t full = f / 64;                                                          \
        for (size_t w = 0; w < full; w++) {                                                  \
            const T *xw = x + 64 * w;                                                        \
            uint64_t word = 0;                                                               \
            for (int q = 0; q < 64 / (VEC); q++) word |= BSTEP(xw + (VEC) * q) << ((VEC) * q); \
            o[w] = word;                                                                     \
        }                                                                                    \
        if (f % 64) {                                                                        \
            const T *xw = x + 64 * full;                                                     \
            const size_t left = f % 64;                                                      \
            uint64_t word = 0;                                                               \
            size_t k = 0;                                                                    \
            for (; k + (VEC) <= left; k += (VEC)) word |= BSTEP(xw + k) << k;                \
            o[full] = word | TAIL(xw + k, left - k, &kinds) << k;                            \
        }                                                                                    \
        FINISH                                                                               \
        return kinds;                                                                        \
    }

#if SKBNN_X86 && defined(__SSE2__)
/* ---- SSE2 (baseline of x86-64; the popcnt path) ----------------------- */
/* four 4-lane compare masks -> 16 bits, in feature order */
static inline uint64_t sse2_mask16(__m128 m0, __m128 m1, __m128 m2, __m128 m3)
{
    const __m128i a = _mm_packs_epi32(_mm_castps_si128(m0), _mm_castps_si128(m1));
    const __m128i b = _mm_packs_epi32(_mm_castps_si128(m2), _mm_castps_si128(m3));
    return (uint64_t)(uint32_t)_mm_movemask_epi8(_mm_packs_epi16(a, b));
}

/* two 2-lane double masks -> one 4-lane mask (low halves: each lane is 0 or ~0) */
static inline __m128 sse2_pair_pd(__m128d a, __m128d b)
{
    return _mm_shuffle_ps(_mm_castpd_ps(a), _mm_castpd_ps(b), _MM_SHUFFLE(2, 0, 2, 0));
}

static inline __m128 sse2_cmp_ps(const float *x, const float *t, int strict, __m128i *nf)
{
    const __m128 v = _mm_loadu_ps(x), tv = _mm_loadu_ps(t);
    *nf = _mm_or_si128(*nf, _mm_castps_si128(_mm_sub_ps(v, v)));
    return strict ? _mm_cmpgt_ps(v, tv) : _mm_cmpge_ps(v, tv);
}

static inline __m128 sse2_cmp2_pd(const double *x, const double *t, int strict, __m128i *nf)
{
    const __m128d a = _mm_loadu_pd(x), ta = _mm_loadu_pd(t);
    const __m128d b = _mm_loadu_pd(x + 2), tb = _mm_loadu_pd(t + 2);
    *nf = _mm_or_si128(*nf, _mm_castpd_si128(_mm_or_pd(_mm_sub_pd(a, a), _mm_sub_pd(b, b))));
    return strict ? sse2_pair_pd(_mm_cmpgt_pd(a, ta), _mm_cmpgt_pd(b, tb))
                  : sse2_pair_pd(_mm_cmpge_pd(a, ta), _mm_cmpge_pd(b, tb));
}

#define SSE2_THR_F32(x, t, s)                                                                \
    sse2_mask16(sse2_cmp_ps((x), (t), (s), &nf), sse2_cmp_ps((x) + 4, (t) + 4, (s), &nf),    \
                sse2_cmp_ps((x) + 8, (t) + 8, (s), &nf),                                     \
                sse2_cmp_ps((x) + 12, (t) + 12, (s), &nf))
#define SSE2_THR_F64(x, t, s)                                                                \
    sse2_mask16(sse2_cmp2_pd((x), (t), (s), &nf), sse2_cmp2_pd((x) + 4, (t) + 4, (s), &nf),  \
                sse2_cmp2_pd((x) + 8, (t) + 8, (s), &nf),                                    \
                sse2_cmp2_pd((x) + 12, (t) + 12, (s), &nf))
#define SSE2_NF_INIT __m128i nf = _mm_setzero_si128();
#define SSE2_NF_FINISH                                                                       \
    bad |= _mm_movemask_epi8(_mm_cmpeq_epi8(nf, _mm_setzero_si128())) != 0xffff;

DEFINE_THR_ROW(thr_row_f32_sse2, , float, 16, SSE2_THR_F32, thr_tail_f32, SSE2_NF_INIT,
               SSE2_NF_FINISH)
DEFINE_THR_ROW(thr_row_f64_sse2, , double, 16, SSE2_THR_F64, thr_tail_f64, SSE2_NF_INIT,
               SSE2_NF_FINISH)

/* pack_binary: kinds accumulate in 4-lane masks; `known` keeps the lanes that
 * were -1, 0 or +1 every time (a lane cleared once means "other") */
typedef struct {
    __m128 neg, nul, pos, known;
} sse2_kinds;

static inline __m128 sse2_bin4(__m128 v, sse2_kinds *k)
{
    const __m128 zero = _mm_setzero_ps();
    const __m128 n = _mm_cmpeq_ps(v, _mm_set1_ps(-1.0f)), z = _mm_cmpeq_ps(v, zero),
                 p = _mm_cmpeq_ps(v, _mm_set1_ps(1.0f));
    k->neg = _mm_or_ps(k->neg, n);
    k->nul = _mm_or_ps(k->nul, z);
    k->pos = _mm_or_ps(k->pos, p);
    k->known = _mm_and_ps(k->known, _mm_or_ps(_mm_or_ps(n, z), p));
    return _mm_cmpgt_ps(v, zero);
}

/* doubles: the kinds need no feature order, so the two halves' masks are
 * OR-ed (AND-ed for `known`) as they are; every 64-bit lane is 0 or ~0, so
 * its two float lanes agree */
static inline __m128 sse2_bin4_pd(const double *x, sse2_kinds *k)
{
    const __m128d a = _mm_loadu_pd(x), b = _mm_loadu_pd(x + 2), zero = _mm_setzero_pd(),
                  m1 = _mm_set1_pd(-1.0), p1 = _mm_set1_pd(1.0);
    const __m128d na = _mm_cmpeq_pd(a, m1), za = _mm_cmpeq_pd(a, zero), pa = _mm_cmpeq_pd(a, p1);
    const __m128d nb = _mm_cmpeq_pd(b, m1), zb = _mm_cmpeq_pd(b, zero), pb = _mm_cmpeq_pd(b, p1);
    k->neg = _mm_or_ps(k->neg, _mm_castpd_ps(_mm_or_pd(na, nb)));
    k->nul = _mm_or_ps(k->nul, _mm_castpd_ps(_mm_or_pd(za, zb)));
    k->pos = _mm_or_ps(k->pos, _mm_castpd_ps(_mm_or_pd(pa, pb)));
    k->known = _mm_and_ps(k->known, _mm_castpd_ps(_mm_and_pd(_mm_or_pd(_mm_or_pd(na, za), pa),
                                                             _mm_or_pd(_mm_or_pd(nb, zb), pb))));
    return sse2_pair_pd(_mm_cmpgt_pd(a, zero), _mm_cmpgt_pd(b, zero));
}

#define SSE2_BIN_INIT                                                                        \
    sse2_kinds acc = {_mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps(),                  \
                      _mm_castsi128_ps(_mm_set1_epi32(-1))};
#define SSE2_BIN_F32(x)                                                                      \
    sse2_mask16(sse2_bin4(_mm_loadu_ps(x), &acc), sse2_bin4(_mm_loadu_ps((x) + 4), &acc),    \
                sse2_bin4(_mm_loadu_ps((x) + 8), &acc), sse2_bin4(_mm_loadu_ps((x) + 12), &acc))
#define SSE2_BIN_F64(x)                                                                      \
    sse2_mask16(sse2_bin4_pd((x), &acc), sse2_bin4_pd((x) + 4, &acc),                        \
                sse2_bin4_pd((x) + 8, &acc), sse2_bin4_pd((x) + 12, &acc))
#define SSE2_BIN_FINISH                                                                      \
    kinds |= (_mm_movemask_ps(acc.neg) ? 1u : 0u) | (_mm_movemask_ps(acc.nul) ? 2u : 0u) |   \
             (_mm_movemask_ps(acc.pos) ? 4u : 0u) | (_mm_movemask_ps(acc.known) != 0xf ? 8u : 0u);

DEFINE_BIN_ROW(bin_row_f32_sse2, , float, 16, SSE2_BIN_INIT, SSE2_BIN_F32, SSE2_BIN_FINISH,
               bin_tail_f32)
DEFINE_BIN_ROW(bin_row_f64_sse2, , double, 16, SSE2_BIN_INIT, SSE2_BIN_F64, SSE2_BIN_FINISH,
               bin_tail_f64)
#endif /* SSE2 */

#if SKBNN_X86
/* ---- AVX2 ------------------------------------------------------------- */
/* four 8-lane masks -> 32 bits in feature order: the in-lane packs leave
 * 4-feature groups in the order m0 m1 m2 m3 | m0' m1' m2' m3' (' = high
 * lane); one cross-lane permute restores m0 m0' m1 m1' ... */
static inline T_AVX2 uint64_t avx2_mask32(__m256 m0, __m256 m1, __m256 m2, __m256 m3)
{
    const __m256i a = _mm256_packs_epi32(_mm256_castps_si256(m0), _mm256_castps_si256(m1));
    const __m256i b = _mm256_packs_epi32(_mm256_castps_si256(m2), _mm256_castps_si256(m3));
    const __m256i c = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(a, b),
                                                  _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    return (uint64_t)(uint32_t)_mm256_movemask_epi8(c);
}

/* two 4-lane double masks -> one 8-lane mask in feature order */
static inline T_AVX2 __m256 avx2_pair_pd(__m256d a, __m256d b)
{
    /* [a0 a1 b0 b1 | a2 a3 b2 b3] -> [a0 a1 a2 a3 | b0 b1 b2 b3] */
    const __m256 s = _mm256_shuffle_ps(_mm256_castpd_ps(a), _mm256_castpd_ps(b),
                                       _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(s), _MM_SHUFFLE(3, 1, 2, 0)));
}

static inline T_AVX2 __m256 avx2_cmp_ps(const float *x, const float *t, int strict, __m256 *nf)
{
    const __m256 v = _mm256_loadu_ps(x), tv = _mm256_loadu_ps(t);
    *nf = _mm256_or_ps(*nf, _mm256_sub_ps(v, v));
    return strict ? _mm256_cmp_ps(v, tv, _CMP_GT_OQ) : _mm256_cmp_ps(v, tv, _CMP_GE_OQ);
}

/* doubles: one movemask per compare (measured ~10 % faster here than
 * pairing the masks into the float32 packing above) */
static inline T_AVX2 uint64_t avx2_thr16_pd(const double *x, const double *t, int strict,
                                            __m256 *nf)
{
    uint64_t bits = 0;
    __m256d d = _mm256_setzero_pd();
    for (int q = 0; q < 4; q++) {
        const __m256d v = _mm256_loadu_pd(x + 4 * q), tv = _mm256_loadu_pd(t + 4 * q);
        d = _mm256_or_pd(d, _mm256_sub_pd(v, v));
        const __m256d m = strict ? _mm256_cmp_pd(v, tv, _CMP_GT_OQ) : _mm256_cmp_pd(v, tv, _CMP_GE_OQ);
        bits |= (uint64_t)(unsigned)_mm256_movemask_pd(m) << (4 * q);
    }
    *nf = _mm256_or_ps(*nf, _mm256_castpd_ps(d));
    return bits;
}

#define AVX2_THR_F32(x, t, s)                                                                \
    avx2_mask32(avx2_cmp_ps((x), (t), (s), &nf), avx2_cmp_ps((x) + 8, (t) + 8, (s), &nf),    \
                avx2_cmp_ps((x) + 16, (t) + 16, (s), &nf),                                   \
                avx2_cmp_ps((x) + 24, (t) + 24, (s), &nf))
#define AVX2_THR_F64(x, t, s) avx2_thr16_pd((x), (t), (s), &nf)
#define AVX2_NF_INIT __m256 nf = _mm256_setzero_ps();
#define AVX2_NF_FINISH                                                                       \
    bad |= !_mm256_testz_si256(_mm256_castps_si256(nf), _mm256_castps_si256(nf));

DEFINE_THR_ROW(thr_row_f32_avx2, T_AVX2, float, 32, AVX2_THR_F32, thr_tail_f32, AVX2_NF_INIT,
               AVX2_NF_FINISH)
DEFINE_THR_ROW(thr_row_f64_avx2, T_AVX2, double, 16, AVX2_THR_F64, thr_tail_f64, AVX2_NF_INIT,
               AVX2_NF_FINISH)

typedef struct {
    __m256 neg, nul, pos, known;
} avx2_kinds;

static inline T_AVX2 __m256 avx2_bin8(__m256 v, avx2_kinds *k)
{
    const __m256 zero = _mm256_setzero_ps();
    const __m256 n = _mm256_cmp_ps(v, _mm256_set1_ps(-1.0f), _CMP_EQ_OQ),
                 z = _mm256_cmp_ps(v, zero, _CMP_EQ_OQ),
                 p = _mm256_cmp_ps(v, _mm256_set1_ps(1.0f), _CMP_EQ_OQ);
    k->neg = _mm256_or_ps(k->neg, n);
    k->nul = _mm256_or_ps(k->nul, z);
    k->pos = _mm256_or_ps(k->pos, p);
    k->known = _mm256_and_ps(k->known, _mm256_or_ps(_mm256_or_ps(n, z), p));
    return _mm256_cmp_ps(v, zero, _CMP_GT_OQ);
}

/* doubles: kinds in lane order as they come (see sse2_bin4_pd) */
static inline T_AVX2 __m256 avx2_bin8_pd(const double *x, avx2_kinds *k)
{
    const __m256d a = _mm256_loadu_pd(x), b = _mm256_loadu_pd(x + 4),
                  zero = _mm256_setzero_pd(), m1 = _mm256_set1_pd(-1.0), p1 = _mm256_set1_pd(1.0);
    const __m256d na = _mm256_cmp_pd(a, m1, _CMP_EQ_OQ), za = _mm256_cmp_pd(a, zero, _CMP_EQ_OQ),
                  pa = _mm256_cmp_pd(a, p1, _CMP_EQ_OQ);
    const __m256d nb = _mm256_cmp_pd(b, m1, _CMP_EQ_OQ), zb = _mm256_cmp_pd(b, zero, _CMP_EQ_OQ),
                  pb = _mm256_cmp_pd(b, p1, _CMP_EQ_OQ);
    k->neg = _mm256_or_ps(k->neg, _mm256_castpd_ps(_mm256_or_pd(na, nb)));
    k->nul = _mm256_or_ps(k->nul, _mm256_castpd_ps(_mm256_or_pd(za, zb)));
    k->pos = _mm256_or_ps(k->pos, _mm256_castpd_ps(_mm256_or_pd(pa, pb)));
    k->known = _mm256_and_ps(
        k->known, _mm256_castpd_ps(_mm256_and_pd(_mm256_or_pd(_mm256_or_pd(na, za), pa),
                                                 _mm256_or_pd(_mm256_or_pd(nb, zb), pb))));
    return avx2_pair_pd(_mm256_cmp_pd(a, zero, _CMP_GT_OQ), _mm256_cmp_pd(b, zero, _CMP_GT_OQ));
}

#define AVX2_BIN_INIT                                                                        \
    avx2_kinds acc = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),         \
                      _mm256_castsi256_ps(_mm256_set1_epi32(-1))};
#define AVX2_BIN_F32(x)                                                                      \
    avx2_mask32(avx2_bin8(_mm256_loadu_ps(x), &acc), avx2_bin8(_mm256_loadu_ps((x) + 8), &acc), \
                avx2_bin8(_mm256_loadu_ps((x) + 16), &acc),                                  \
                avx2_bin8(_mm256_loadu_ps((x) + 24), &acc))
#define AVX2_BIN_F64(x)                                                                      \
    avx2_mask32(avx2_bin8_pd((x), &acc), avx2_bin8_pd((x) + 8, &acc),                        \
                avx2_bin8_pd((x) + 16, &acc), avx2_bin8_pd((x) + 24, &acc))
#define AVX2_BIN_FINISH                                                                      \
    kinds |= (_mm256_movemask_ps(acc.neg) ? 1u : 0u) | (_mm256_movemask_ps(acc.nul) ? 2u : 0u) | \
             (_mm256_movemask_ps(acc.pos) ? 4u : 0u) |                                       \
             (_mm256_movemask_ps(acc.known) != 0xff ? 8u : 0u);

DEFINE_BIN_ROW(bin_row_f32_avx2, T_AVX2, float, 32, AVX2_BIN_INIT, AVX2_BIN_F32,
               AVX2_BIN_FINISH, bin_tail_f32)
DEFINE_BIN_ROW(bin_row_f64_avx2, T_AVX2, double, 32, AVX2_BIN_INIT, AVX2_BIN_F64,
               AVX2_BIN_FINISH, bin_tail_f64)

/* ---- AVX-512F: compare masks are the bits; the last word masked loads --- */
/* bits of the VEC features at x (thresholds t); m = lanes inside the row */
static inline __attribute__((always_inline)) T_AVX512 __mmask16
avx512_thr_ps(const float *x, const float *t, __mmask16 m, int strict, __m512i *nf)
{
    const __m512 v = _mm512_maskz_loadu_ps(m, x), tv = _mm512_maskz_loadu_ps(m, t);
    *nf = _mm512_or_si512(*nf, _mm512_castps_si512(_mm512_sub_ps(v, v)));
    return (strict ? _mm512_cmp_ps_mask(v, tv, _CMP_GT_OQ) : _mm512_cmp_ps_mask(v, tv, _CMP_GE_OQ))
           & m;
}

static inline __attribute__((always_inline)) T_AVX512 __mmask8
avx512_thr_pd(const double *x, const double *t, __mmask8 m, int strict, __m512i *nf)
{
    const __m512d v = _mm512_maskz_loadu_pd(m, x), tv = _mm512_maskz_loadu_pd(m, t);
    *nf = _mm512_or_si512(*nf, _mm512_castpd_si512(_mm512_sub_pd(v, v)));
    return (strict ? _mm512_cmp_pd_mask(v, tv, _CMP_GT_OQ) : _mm512_cmp_pd_mask(v, tv, _CMP_GE_OQ))
           & m;
}

#define DEFINE_THR_ROW_AVX512(NAME, T, VEC, MASK_T, STEP)                                  \
    static inline __attribute__((always_inline)) T_AVX512 unsigned NAME##_body(              \
        const T *x, const T *t, size_t f, const int strict, const int uniform, uint64_t *o)  \
    {                                                                                        \
        __m512i nf = _mm512_setzero_si512();                                                 \
        const size_t full = f / 64;                                                          \
        const MASK_T all = (MASK_T)~0u;                                                      \
        for (size_t w = 0; w < full; w++) {                                                  \
            const T *xw = x + 64 * w, *tw = uniform ? t : t + 64 * w;                        \
            uint64_t word = 0;                                                               \
            for (int q = 0; q < 64 / (VEC); q++) {                                           \
                const size_t j = (size_t)(VEC) * q;                                          \
                word |= (uint64_t)STEP(xw + j, tw + j, all, strict, &nf) << j;               \
            }                                                                                \
            o[w] = word;                                                                     \
        }                                                                                    \
        if (f % 64) {                                                                        \
            const T *xw = x + 64 * full, *tw = uniform ? t : t + 64 * full;                  \
            const size_t left = f % 64;                                                      \
            uint64_t word = 0;                                                               \
            for (size_t k = 0; k < left; k += (VEC)) {                                       \
                const MASK_T m = left - k >= (VEC) ? all : (MASK_T)((1u << (left - k)) - 1u); \
                word |= (uint64_t)STEP(xw + k, tw + k, m, strict, &nf) << k;                 \
            }                                                                                \
            o[full] = word;                                                                  \
        }                                                                                    \
        return _mm512_test_epi64_mask(nf, nf) != 0;                                          \
    }                                                                                        \
    T_AVX512 static unsigned NAME(const T *x, const T *t, size_t f, int strict, int uniform, \
                              uint64_t *o)                                                   \
        THR_ROW_DISPATCH(NAME)

DEFINE_THR_ROW_AVX512(thr_row_f32_avx512, float, 16, __mmask16, avx512_thr_ps)
DEFINE_THR_ROW_AVX512(thr_row_f64_avx512, double, 8, __mmask8, avx512_thr_pd)

/* pack_binary step: bits x > 0 of the lanes in m; kinds OR-ed into
 * k[0..3] (-1, 0, +1, other) */
static inline __attribute__((always_inline)) T_AVX512 __mmask16
avx512_bin_ps(const float *x, __mmask16 m, __mmask16 k[4])
{
    const __m512 v = _mm512_maskz_loadu_ps(m, x), zero = _mm512_setzero_ps();
    const __mmask16 n = _mm512_cmp_ps_mask(v, _mm512_set1_ps(-1.0f), _CMP_EQ_OQ),
                    z = _mm512_cmp_ps_mask(v, zero, _CMP_EQ_OQ) & m,
                    p = _mm512_cmp_ps_mask(v, _mm512_set1_ps(1.0f), _CMP_EQ_OQ);
    k[0] |= n;
    k[1] |= z;
    k[2] |= p;
    k[3] |= (__mmask16)(m & ~(n | z | p));
    return _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ) & m;
}

static inline __attribute__((always_inline)) T_AVX512 __mmask8
avx512_bin_pd(const double *x, __mmask8 m, __mmask8 k[4])
{
    const __m512d v = _mm512_maskz_loadu_pd(m, x), zero = _mm512_setzero_pd();
    const __mmask8 n = _mm512_cmp_pd_mask(v, _mm512_set1_pd(-1.0), _CMP_EQ_OQ),
                   z = _mm512_cmp_pd_mask(v, zero, _CMP_EQ_OQ) & m,
                   p = _mm512_cmp_pd_mask(v, _mm512_set1_pd(1.0), _CMP_EQ_OQ);
    k[0] |= n;
    k[1] |= z;
    k[2] |= p;
    k[3] |= (__mmask8)(m & ~(n | z | p));
    return _mm512_cmp_pd_mask(v, zero, _CMP_GT_OQ) & m;
}

#define DEFINE_BIN_ROW_AVX512(NAME, T, VEC, MASK_T, STEP)                                  \
    T_AVX512 static unsigned NAME(const T *x, size_t f, uint64_t *o)                         \
    {                                                                                        \
        const MASK_T all = (MASK_T)~0u;                                                      \
        MASK_T k[4] = {0, 0, 0, 0};                                                          \
        const size_t full = f / 64;                                                          \
        for (size_t w = 0; w < full; w++) {                                                  \
            uint64_t word = 0;                                                               \
            for (int q = 0; q < 64 / (VEC); q++)                                             \
                word |= (uint64_t)STEP(x + 64 * w + (size_t)(VEC) * q, all, k) << ((VEC) * q); \
            o[w] = word;                                                                     \
        }                                                                                    \
        if (f % 64) {                                                                        \
            uint64_t word = 0;                                                               \
            for (size_t j = 64 * full; j < f; j += (VEC)) {                                  \
                const MASK_T m = f - j >= (VEC) ? all : (MASK_T)((1u << (f - j)) - 1u);      \
                word |= (uint64_t)STEP(x + j, m, k) << (j - 64 * full);                      \
            }                                                                                \
            o[full] = word;                                                                  \
        }                                                                                    \
        return (k[0] ? 1u : 0u) | (k[1] ? 2u : 0u) | (k[2] ? 4u : 0u) | (k[3] ? 8u : 0u);    \
    }

DEFINE_BIN_ROW_AVX512(bin_row_f32_avx512, float, 16, __mmask16, avx512_bin_ps)
DEFINE_BIN_ROW_AVX512(bin_row_f64_avx512, double, 8, __mmask8, avx512_bin_pd)
#endif /* SKBNN_X86 */

static void select_float_packers(int isa)
{
    g_thr_row_f32 = NULL;
    g_thr_row_f64 = NULL;
    g_bin_row_f32 = NULL;
    g_bin_row_f64 = NULL;
#if SKBNN_X86 && defined(__SSE2__)
    if (isa == SKBNN_ISA_POPCNT) {
        g_thr_row_f32 = thr_row_f32_sse2;
        g_thr_row_f64 = thr_row_f64_sse2;
        g_bin_row_f32 = bin_row_f32_sse2;
        g_bin_row_f64 = bin_row_f64_sse2;
    }
#endif
#if SKBNN_X86
    if (isa == SKBNN_ISA_AVX2) {
        g_thr_row_f32 = thr_row_f32_avx2;
        g_thr_row_f64 = thr_row_f64_avx2;
        g_bin_row_f32 = bin_row_f32_avx2;
        g_bin_row_f64 = bin_row_f64_avx2;
    } else if (isa == SKBNN_ISA_AVX512) {
        g_thr_row_f32 = thr_row_f32_avx512;
        g_thr_row_f64 = thr_row_f64_avx512;
        g_bin_row_f32 = bin_row_f32_avx512;
        g_bin_row_f64 = bin_row_f64_avx512;
    }
#endif
    (void)isa;
}

/* rows [0, n) through a row kernel; words past WORDS(f) (none from the
 * Python wrappers) are zeroed as on the portable path */
#define RUN_THR_ROWS(ROW, X, t, uniform)                                                     \
    do {                                                                                     \
        const size_t fw = WORDS(f);                                                          \
        n_threads = team((double)n * (double)f, n_threads);                                  \
        _Pragma("omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1) reduction(|:bad)") \
        for (long i = 0; i < (long)n; i++) {                                                 \
            uint64_t *o = out + (size_t)i * out_words;                                       \
            bad |= ROW((X) + (size_t)i * f, (t), f, strict, (uniform), o);                   \
            if (out_words > fw) memset(o + fw, 0, (out_words - fw) * sizeof(uint64_t));      \
        }                                                                                    \
    } while (0)

/* one threshold for every feature (bitwise: 0.0 and -0.0, or NaNs of
 * different payloads, count as different, which only costs speed) */
#define SAME_VALUES(t, f) (memcmp((t), (t) + 1, ((f) - 1) * sizeof(*(t))) == 0)

int skbnn_pack_threshold_f32_checked(const float *X, size_t n, size_t f, const double *thr,
                                     size_t b, int strict, uint64_t *out, size_t out_words,
                                     int n_threads)
{
    const thr_row_f32_fn row = g_thr_row_f32;
    if (b == 1 && row && f > 0 && out_words >= WORDS(f)) {
        const size_t nt = f > 64 ? f : 64;
        float *t = (float *)g_alloc(nt * sizeof(float));
        if (t) {
            unsigned bad = 0;
            for (size_t j = 0; j < f; j++)
                t[j] = strict ? float32_below(thr[j]) : float32_above(thr[j]);
            const int uniform = SAME_VALUES(thr, f);
            if (uniform)
                for (size_t j = 1; j < 64; j++) t[j] = t[0];
            RUN_THR_ROWS(row, X, t, uniform);
            g_free(t);
            return bad != 0;
        }
    }
    pack_threshold_f32_portable(X, n, f, thr, b, strict, out, out_words, n_threads);
    return -1;
}

int skbnn_pack_threshold_f64_checked(const double *X, size_t n, size_t f, const double *thr,
                                     size_t b, int strict, uint64_t *out, size_t out_words,
                                     int n_threads)
{
    const thr_row_f64_fn row = g_thr_row_f64;
    if (b == 1 && row && f > 0 && out_words >= WORDS(f)) {
        unsigned bad = 0;
        if (SAME_VALUES(thr, f)) {
            double t[64];
            for (size_t j = 0; j < 64; j++) t[j] = thr[0];
            RUN_THR_ROWS(row, X, t, 1);
        } else {
            RUN_THR_ROWS(row, X, thr, 0);
        }
        return bad != 0;
    }
    pack_threshold_f64_portable(X, n, f, thr, b, strict, out, out_words, n_threads);
    return -1;
}

void skbnn_pack_threshold_f32(const float *X, size_t n, size_t f, const double *thr, size_t b,
                              int strict, uint64_t *out, size_t out_words, int n_threads)
{
    (void)skbnn_pack_threshold_f32_checked(X, n, f, thr, b, strict, out, out_words, n_threads);
}

void skbnn_pack_threshold_f64(const double *X, size_t n, size_t f, const double *thr, size_t b,
                              int strict, uint64_t *out, size_t out_words, int n_threads)
{
    (void)skbnn_pack_threshold_f64_checked(X, n, f, thr, b, strict, out, out_words, n_threads);
}

#define RUN_BIN_ROWS(ROW, X)                                                                 \
    do {                                                                                     \
        const size_t fw = WORDS(f);                                                          \
        unsigned kinds = 0;                                                                  \
        n_threads = team((double)n * (double)f, n_threads);                                  \
        _Pragma("omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1) reduction(|:kinds)") \
        for (long i = 0; i < (long)n; i++) {                                                 \
            uint64_t *o = out + (size_t)i * out_words;                                       \
            kinds |= ROW((X) + (size_t)i * f, f, o);                                         \
            if (out_words > fw) memset(o + fw, 0, (out_words - fw) * sizeof(uint64_t));      \
        }                                                                                    \
        return kinds;                                                                        \
    } while (0)

unsigned skbnn_pack_binary_f64(const double *X, size_t n, size_t f, uint64_t *out,
                               size_t out_words, int n_threads)
{
    const bin_row_f64_fn row = g_bin_row_f64;
    if (row && f > 0 && out_words >= WORDS(f)) RUN_BIN_ROWS(row, X);
    return pack_binary_f64_portable(X, n, f, out, out_words, n_threads);
}

unsigned skbnn_pack_binary_f32(const float *X, size_t n, size_t f, uint64_t *out,
                               size_t out_words, int n_threads)
{
    const bin_row_f32_fn row = g_bin_row_f32;
    if (row && f > 0 && out_words >= WORDS(f)) RUN_BIN_ROWS(row, X);
    return pack_binary_f32_portable(X, n, f, out, out_words, n_threads);
}

#define DEFINE_PACK_SIGN(NAME, T)                                                            \
    void NAME(const T *Z, size_t n, size_t k, uint64_t *out, size_t out_words)               \
    {                                                                                        \
        for (size_t i = 0; i < n; i++) {                                                     \
            const T *z = Z + i * k;                                                          \
            uint64_t *o = out + i * out_words;                                               \
            for (size_t w = 0; w < out_words; w++) {                                         \
                const size_t j0 = w * 64, j1 = min_sz(k, j0 + 64);                           \
                uint64_t word = 0;                                                           \
                for (size_t j = j0; j < j1; j++) word |= (uint64_t)(z[j] >= 0) << (j - j0);  \
                o[w] = word;                                                                 \
            }                                                                                \
        }                                                                                    \
    }

DEFINE_PACK_SIGN(skbnn_pack_sign_i32, int32_t)
DEFINE_PACK_SIGN(pack_sign_i16_portable, int16_t)

/* sign bits of int16 rows: SSE2 packs 16 lanes per movemask on x86-64 */
void skbnn_pack_sign_i16(const int16_t *H, size_t n, size_t k, uint64_t *out, size_t out_words)
{
#if defined(__SSE2__)
    for (size_t r = 0; r < n; r++) {
        const int16_t *h = H + r * k;
        uint64_t *o = out + r * out_words;
        size_t w = 0;
        for (; (w + 1) * 64 <= k; w++) {
            uint64_t neg = 0;
            for (int q = 0; q < 4; q++) {
                const __m128i lo = _mm_loadu_si128((const __m128i *)(h + w * 64 + q * 16));
                const __m128i hi = _mm_loadu_si128((const __m128i *)(h + w * 64 + q * 16 + 8));
                neg |= (uint64_t)(uint32_t)_mm_movemask_epi8(_mm_packs_epi16(lo, hi)) << (16 * q);
            }
            o[w] = ~neg; /* bit 1 where h >= 0 */
        }
        if (w < out_words) pack_sign_i16_portable(h + w * 64, 1, k - w * 64, o + w, out_words - w);
    }
#else
    pack_sign_i16_portable(H, n, k, out, out_words);
#endif
}

void skbnn_unpack_pm1(const uint64_t *P, size_t n, size_t words, size_t nbits, int8_t *out)
{
    for (size_t i = 0; i < n; i++) {
        int8_t *o = out + i * nbits;
        for (size_t w = 0; w * 64 < nbits; w++) {
            /* one load per word: an int8 store may alias P, so indexing P per
             * bit reloaded it every time (10x slower) */
            const uint64_t v = P[i * words + w];
            const size_t m = nbits - w * 64 < 64 ? nbits - w * 64 : 64;
            for (size_t b = 0; b < m; b++) o[w * 64 + b] = (int8_t)((int)((v >> b) & 1u) * 2 - 1);
        }
    }
}

void skbnn_transpose_bits(const uint64_t *P, size_t n, size_t k, uint64_t *T)
{
    const size_t wk = WORDS(k), wn = WORDS(n);
    memset(T, 0, k * wn * sizeof(uint64_t));
    for (size_t i = 0; i < n; i++)
        for (size_t w = 0; w < wk; w++) {
            /* padding bits past k have no row in T: never let one index it */
            uint64_t d = P[i * wk + w] & (w + 1 == wk ? tail_mask(k - w * 64) : ~0ULL);
            while (d) {
                const size_t j = w * 64 + (size_t)__builtin_ctzll(d);
                T[j * wn + (i >> 6)] |= 1ULL << (i & 63);
                d &= d - 1;
            }
        }
}

/* ------------------------------------------------------------------------ */
/* CP+R: selection, batched update, reinforcement                            */
/* ------------------------------------------------------------------------ */
/* one sample: per block of g neurons the wrong neuron with the smallest |z| */
static void select_sample_generic(const int32_t *z, const uint64_t *t, size_t K, size_t g,
                                  int zero_is_wrong, int32_t *o)
{
    for (size_t q = 0; q < K / g; q++) {
        int32_t best = -1;
        int64_t best_abs = INT64_MAX;
        for (size_t j = q * g; j < (q + 1) * g; j++) {
            const int tb = (int)((t[j >> 6] >> (j & 63)) & 1ULL);
            const int32_t zj = z[j];
            const int wrong = zero_is_wrong ? ((zj >= 0) != tb) : (tb ? zj < 0 : zj > 0);
            const int64_t a = zj < 0 ? -(int64_t)zj : (int64_t)zj;
            if (wrong && a < best_abs) {
                best_abs = a;
                best = (int32_t)j;
            }
        }
        o[q] = best;
    }
}

#if SKBNN_X86
/* 16 target bits starting at bit j */
static inline uint32_t bits16(const uint64_t *t, size_t j, size_t wk)
{
    const size_t w = j >> 6, s = j & 63;
    uint64_t v = t[w] >> s;
    if (s > 48 && w + 1 < wk) v |= t[w + 1] << (64 - s);
    return (uint32_t)(v & 0xffffu);
}

/* 16 neurons from j (not past end): mask of the wrong ones, and |z| */
static inline __attribute__((always_inline)) T_AVX512 __mmask16
wrong16(const int32_t *z, const uint64_t *t, size_t wk, size_t j, size_t end, int zero_is_wrong,
        __m512i *absz)
{
    const size_t n = min_sz(16, end - j);
    const __mmask16 lm = (__mmask16)(n == 16 ? 0xffffu : ((1u << n) - 1u));
    const __m512i zv = _mm512_maskz_loadu_epi32(lm, z + j), zero = _mm512_setzero_si512();
    const uint32_t tb = bits16(t, j, wk);
    const uint32_t neg = _mm512_cmplt_epi32_mask(zv, zero);
    const uint32_t pos = _mm512_cmpgt_epi32_mask(zv, zero);
    *absz = _mm512_abs_epi32(zv);
    return (__mmask16)((zero_is_wrong ? ((~neg) ^ tb) : ((tb & neg) | (~tb & pos))) & lm);
}

/* AVX-512: keys |z| (wrong) or UINT32_MAX in 16 lanes, vector min, then the
 * first lane holding the minimum: the same answer as the scalar scan. */
T_AVX512 static void select_sample_avx512(const int32_t *z, const uint64_t *t, size_t K,
                                          size_t g, int zero_is_wrong, int32_t *o)
{
    const size_t wk = WORDS(K);
    const __m512i none = _mm512_set1_epi32(-1);
    for (size_t q = 0; q < K / g; q++) {
        const size_t end = (q + 1) * g;
        __m512i best = none;
        for (size_t j = q * g; j < end; j += 16) {
            __m512i absz;
            const __mmask16 wrong = wrong16(z, t, wk, j, end, zero_is_wrong, &absz);
            best = _mm512_min_epu32(best, _mm512_mask_blend_epi32(wrong, none, absz));
        }
        const uint32_t m = (uint32_t)_mm512_reduce_min_epu32(best);
        o[q] = -1;
        if (m == UINT32_MAX) continue;
        for (size_t j = q * g; j < end; j += 16) { /* first lane with key == m */
            __m512i absz;
            const __mmask16 wrong = wrong16(z, t, wk, j, end, zero_is_wrong, &absz);
            const uint32_t hit = wrong & _mm512_cmpeq_epi32_mask(absz, _mm512_set1_epi32((int)m));
            if (hit) {
                o[q] = (int32_t)(j + (size_t)__builtin_ctz(hit));
                break;
            }
        }
    }
}
#endif

void skbnn_select_easiest(const int32_t *Z, size_t M, size_t K, const uint64_t *T,
                          const uint8_t *active, size_t g, int zero_is_wrong, int32_t *out,
                          int n_threads)
{
    const size_t G = K / g, wk = WORDS(K);
    void (*select_sample)(const int32_t *, const uint64_t *, size_t, size_t, int, int32_t *) =
        select_sample_generic;
#if SKBNN_X86
    if (g_isa == SKBNN_ISA_AVX512) select_sample = select_sample_avx512;
#endif
    n_threads = team((double)M * (double)K, n_threads);
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1)
    for (long mi = 0; mi < (long)M; mi++) {
        const size_t m = (size_t)mi;
        int32_t *o = out + m * G;
        if (active && !active[m]) {
            for (size_t q = 0; q < G; q++) o[q] = -1;
            continue;
        }
        select_sample(Z + m * K, T + m * wk, K, g, zero_is_wrong, o);
    }
}

/* byte_lanes[v]: byte q of the result holds bit q of v (SWAR bit counters).
 * A compile-time table: a lazily filled one raced when two threads (the GIL
 * is released) ran their first CP step at the same time. */
#define BL1(v) ((uint64_t)((v) & 1u) | (uint64_t)(((v) >> 1) & 1u) << 8 |                   \
                (uint64_t)(((v) >> 2) & 1u) << 16 | (uint64_t)(((v) >> 3) & 1u) << 24 |      \
                (uint64_t)(((v) >> 4) & 1u) << 32 | (uint64_t)(((v) >> 5) & 1u) << 40 |      \
                (uint64_t)(((v) >> 6) & 1u) << 48 | (uint64_t)(((v) >> 7) & 1u) << 56)
#define BL4(v) BL1(v), BL1((v) + 1), BL1((v) + 2), BL1((v) + 3)
#define BL16(v) BL4(v), BL4((v) + 4), BL4((v) + 8), BL4((v) + 12)
#define BL64(v) BL16(v), BL16((v) + 16), BL16((v) + 32), BL16((v) + 48)
static const uint64_t byte_lanes[256] = {BL64(0u), BL64(64u), BL64(128u), BL64(192u)};
#undef BL64
#undef BL16
#undef BL4
#undef BL1

/* add the bits of x to 8 byte-counter words: byte b of c[q] counts bit 8q + b */
static inline void count_bits(uint64_t *c, uint64_t x)
{
    for (int q = 0; q < 8; q++) c[q] += byte_lanes[(x >> (8 * q)) & 0xffu];
}

static inline void flush_counters(uint64_t *cnt8, int32_t *acc, size_t n8)
{
    for (size_t idx = 0; idx < n8; idx++) {
        const uint64_t c = cnt8[idx];
        if (!c) continue;
        for (int q = 0; q < 8; q++) acc[idx * 8 + q] += (int32_t)((c >> (8 * q)) & 0xffu);
        cnt8[idx] = 0;
    }
}

int64_t skbnn_cpr_update(int16_t *H, uint64_t *Wp, uint64_t *WT, size_t K, size_t N,
                         const int32_t *sel, size_t M, size_t G, const uint64_t *T,
                         const uint64_t *A, const uint64_t *Am, int clip, int n_threads)
{
    const size_t wN = WORDS(N), wK = WORDS(K), nsel = M * G;
    int64_t flips = 0;
    int failed = 0;

    /* bucket the selected (sample, neuron) pairs by neuron, in sample order */
    int32_t *start = (int32_t *)calloc(K + 1, sizeof(int32_t));
    int32_t *fill = (int32_t *)malloc((K + 1) * sizeof(int32_t));
    int32_t *list = (int32_t *)malloc((nsel ? nsel : 1) * sizeof(int32_t));
    int32_t *rows = (int32_t *)malloc((K ? K : 1) * sizeof(int32_t));
    if (!start || !fill || !list || !rows) {
        free(start); free(fill); free(list); free(rows);
        return -1;
    }
    for (size_t i = 0; i < nsel; i++)
        if (sel[i] >= 0 && (size_t)sel[i] < K) start[sel[i] + 1]++;
    for (size_t j = 0; j < K; j++) start[j + 1] += start[j];
    memcpy(fill, start, (K + 1) * sizeof(int32_t));
    for (size_t m = 0; m < M; m++)
        for (size_t q = 0; q < G; q++) {
            const int32_t j = sel[m * G + q];
            if (j >= 0 && (size_t)j < K) list[fill[j]++] = (int32_t)m;
        }
    size_t ntouched = 0;
    for (size_t j = 0; j < K; j++)
        if (start[j + 1] > start[j]) rows[ntouched++] = (int32_t)j;

    uint64_t *diff = NULL;
    if (WT && ntouched) {
        diff = (uint64_t *)malloc(ntouched * wN * sizeof(uint64_t));
        if (!diff) failed = 1;
    }
    const int32_t hi = clip, lo = -clip;
    n_threads = team((double)nsel * (double)N, n_threads);

#pragma omp parallel num_threads(n_threads) if (n_threads > 1 && !failed) reduction(+ : flips)
    {
        uint64_t *cnt8 = (uint64_t *)calloc(wN * 8 + 1, sizeof(uint64_t));
        int32_t *acc = (int32_t *)malloc((wN * 64 + 1) * sizeof(int32_t));
        uint64_t *row_bits = (uint64_t *)malloc((wN + 1) * sizeof(uint64_t));
        /* with an input mask: per-position counts of the samples whose input is nonzero */
        uint64_t *cntm8 = Am ? (uint64_t *)calloc(wN * 8 + 1, sizeof(uint64_t)) : NULL;
        int32_t *accm = Am ? (int32_t *)malloc((wN * 64 + 1) * sizeof(int32_t)) : NULL;
        const int ok = cnt8 && acc && row_bits && (!Am || (cntm8 && accm)) && !failed;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (long r = 0; r < (long)ntouched; r++) {
            if (!ok) continue;
            const size_t j = (size_t)rows[r];
            const int32_t n = start[j + 1] - start[j];
            const int direct = n <= 255; /* byte lanes cannot overflow */
            if (!direct) {
                memset(acc, 0, wN * 64 * sizeof(int32_t));
                if (Am) memset(accm, 0, wN * 64 * sizeof(int32_t));
            }
            int pending = 0;
            for (int32_t s = start[j]; s < start[j + 1]; s++) {
                const size_t m = (size_t)list[s];
                const int tb = (int)((T[m * wK + (j >> 6)] >> (j & 63)) & 1ULL);
                const uint64_t *a = A + m * wN, *am = Am ? Am + m * wN : NULL;
                for (size_t w = 0; w < wN; w++) {
                    uint64_t v = tb ? a[w] : ~a[w]; /* bits where a_i == t_j */
                    if (am) { /* a zero input agrees with nothing and counts for nothing */
                        v &= am[w];
                        count_bits(cntm8 + w * 8, am[w]);
                    }
                    count_bits(cnt8 + w * 8, v);
                }
                if (!direct && ++pending == 255) {
                    flush_counters(cnt8, acc, wN * 8);
                    if (Am) flush_counters(cntm8, accm, wN * 8);
                    pending = 0;
                }
            }
            /* of the n_i samples with a nonzero input i (n without a mask), c_i
             * agreements move h by +2 each, n_i - c_i disagreements by -2 each */
            int16_t *h = H + j * N;
            int32_t flip = 0;
            if (direct) {
                const uint8_t *cb = (const uint8_t *)cnt8; /* byte i counts bit i */
                const uint8_t *nb = (const uint8_t *)cntm8;
                for (size_t i = 0; i < N; i++) {
                    const int32_t old = h[i];
                    int32_t v = old + 4 * (int32_t)cb[i] - 2 * (nb ? (int32_t)nb[i] : n);
                    v = v > hi ? hi : (v < lo ? lo : v);
                    h[i] = (int16_t)v;
                    flip |= old ^ v;
                }
                memset(cnt8, 0, wN * 8 * sizeof(uint64_t));
                if (Am) memset(cntm8, 0, wN * 8 * sizeof(uint64_t));
            } else {
                flush_counters(cnt8, acc, wN * 8);
                if (Am) flush_counters(cntm8, accm, wN * 8);
                for (size_t i = 0; i < N; i++) {
                    const int32_t old = h[i];
                    int32_t v = old + 2 * (2 * acc[i] - (accm ? accm[i] : n));
                    v = v > hi ? hi : (v < lo ? lo : v);
                    h[i] = (int16_t)v;
                    flip |= old ^ v;
                }
            }
            uint64_t *wrow = Wp + j * wN;
            if (flip < 0) { /* some h changed sign (sign bits of old and new differ) */
                skbnn_pack_sign_i16(h, 1, N, row_bits, wN);
                for (size_t w = 0; w < wN; w++) {
                    const uint64_t d = wrow[w] ^ row_bits[w];
                    flips += (int64_t)pop_portable(d);
                    if (diff) diff[(size_t)r * wN + w] = d;
                    wrow[w] = row_bits[w];
                }
            } else if (diff) {
                memset(diff + (size_t)r * wN, 0, wN * sizeof(uint64_t));
            }
        }
        free(cnt8);
        free(acc);
        free(row_bits);
        free(cntm8);
        free(accm);
    }

    if (diff && !failed) /* transpose: bit j of row i flips where H[j, i] changed sign */
        for (size_t r = 0; r < ntouched; r++) {
            const size_t j = (size_t)rows[r];
            for (size_t w = 0; w < wN; w++) {
                uint64_t d = diff[r * wN + w];
                while (d) {
                    const size_t i = w * 64 + (size_t)__builtin_ctzll(d);
                    WT[i * wK + (j >> 6)] ^= 1ULL << (j & 63);
                    d &= d - 1;
                }
            }
        }
    free(diff);
    free(start);
    free(fill);
    free(list);
    free(rows);
    return failed ? -1 : flips;
}

/* counter-based stream: SplitMix64 keyed by (seed, stream, row) */
static inline uint64_t mix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline uint64_t stream_key(uint64_t seed, uint64_t stream, uint64_t row)
{
    return mix64(mix64(mix64(seed) ^ stream) ^ row);
}

static inline double next_uniform(uint64_t *state) /* in (0, 1] */
{
    *state += 0x9E3779B97F4A7C15ULL;
    uint64_t z = *state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return ((double)(z >> 11) + 1.0) * (1.0 / 9007199254740992.0);
}

double skbnn_uniform(uint64_t seed, uint64_t stream, uint64_t row, uint64_t index)
{
    uint64_t st = stream_key(seed, stream, row);
    double u = 0.0;
    for (uint64_t i = 0; i <= index; i++) u = next_uniform(&st);
    return u - 1.0 / 9007199254740992.0; /* shift to [0, 1) */
}

int64_t skbnn_reinforce(int16_t *H, size_t K, size_t N, double p, uint64_t seed,
                        uint64_t stream, int clip, int keep_zero, int n_threads)
{
    if (!(p > 0.0) || N == 0) return 0;
    const int all = p >= 1.0;
    const double log_q = all ? 0.0 : log1p(-p);
    const int32_t hi = clip, lo = -clip;
    int64_t count = 0;
    n_threads = team((double)K * (64.0 + p * (double)N), n_threads);
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1) reduction(+ : count)
    for (long jr = 0; jr < (long)K; jr++) {
        int16_t *h = H + (size_t)jr * N;
        uint64_t st = stream_key(seed, stream, (uint64_t)jr);
        size_t i = 0;
        for (;;) {
            if (!all) { /* geometric skip: number of sites passed over */
                const double gap = floor(log(next_uniform(&st)) / log_q);
                if (gap >= (double)(N - i)) break;
                i += (size_t)gap;
            }
            if (!(keep_zero && h[i] == 0)) { /* sign(0) = 0: a pruned weight stays 0 */
                int32_t v = (int32_t)h[i] + (h[i] >= 0 ? 2 : -2);
                v = v > hi ? hi : (v < lo ? lo : v);
                h[i] = (int16_t)v;
                count++;
            }
            if (++i >= N) break;
        }
    }
    return count;
}
