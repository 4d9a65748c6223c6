/* skbnn hidden-field kernel: exact int16 x (+/-1 bits) products.
 *
 *   F[m, j] = sum_i H[j, i] * a_mi,   a_mi = +1 where bit i of A[m] is set, else -1
 *
 * BEP's selection='hidden' (hidden stability) ranks neurons by this field
 * instead of the visible z = sign(H) a.  Each block of samples is expanded
 * once into int16 +/-1 rows (zero past K), then every neuron's row is
 * multiplied by pairwise int16 products widened to int32 (PMADDWD), so the
 * result is the exact integer on every path: |F| <= 32767 K < 2^31 for
 * K <= 65536 (the caller checks).  Work is split by sample blocks with a
 * static schedule; integer sums do not depend on the split.
 */
#include "bnn_kernels.h"
#include "kernel_common.h"

#include <stdlib.h>
#include <string.h>

#define FIELD_ROWS 4 /* samples per block: each weight row is read once per block */
#define FIELD_PAD 32 /* expanded rows are padded to whole 512-bit vectors */

typedef void (*field_block_fn)(const int16_t *H, size_t N, size_t K, const int16_t *S,
                               size_t ks, int mr, int32_t *F, size_t ldf);

/* ---- portable: plain integer loop --------------------------------------- */
static void field_block_portable(const int16_t *H, size_t N, size_t K, const int16_t *S,
                                 size_t ks, int mr, int32_t *F, size_t ldf)
{
    for (size_t j = 0; j < N; j++) {
        const int16_t *h = H + j * K;
        for (int r = 0; r < mr; r++) {
            const int16_t *s = S + (size_t)r * ks;
            int32_t acc = 0;
            for (size_t i = 0; i < K; i++) acc += (int32_t)h[i] * (int32_t)s[i];
            F[(size_t)r * ldf + j] = acc;
        }
    }
}

#if SKBNN_X86
/* ---- AVX2: 16 int16 products per VPMADDWD ------------------------------- */
__attribute__((target("avx2"))) static void
field_block_avx2(const int16_t *H, size_t N, size_t K, const int16_t *S, size_t ks, int mr,
                 int32_t *F, size_t ldf)
{
    const size_t kv = K - K % 16;
    for (size_t j = 0; j < N; j++) {
        const int16_t *h = H + j * K;
        __m256i acc[FIELD_ROWS];
        for (int r = 0; r < mr; r++) acc[r] = _mm256_setzero_si256();
        for (size_t i = 0; i < kv; i += 16) {
            const __m256i hv = _mm256_loadu_si256((const __m256i *)(h + i));
            for (int r = 0; r < mr; r++)
                acc[r] = _mm256_add_epi32(
                    acc[r], _mm256_madd_epi16(
                                hv, _mm256_load_si256((const __m256i *)(S + (size_t)r * ks + i))));
        }
        for (int r = 0; r < mr; r++) {
            int32_t t[8];
            _mm256_storeu_si256((__m256i *)t, acc[r]);
            int32_t sum = t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
            const int16_t *s = S + (size_t)r * ks;
            for (size_t i = kv; i < K; i++) sum += (int32_t)h[i] * (int32_t)s[i];
            F[(size_t)r * ldf + j] = sum;
        }
    }
}

/* ---- AVX-512BW: 32 int16 products per VPMADDWD, masked tail load ------- */
__attribute__((target("avx512f,avx512bw"))) static void
field_block_avx512(const int16_t *H, size_t N, size_t K, const int16_t *S, size_t ks, int mr,
                   int32_t *F, size_t ldf)
{
    const size_t kv = K - K % 32;
    const __mmask32 tail = (__mmask32)((1ULL << (K % 32)) - 1ULL);
    for (size_t j = 0; j < N; j++) {
        const int16_t *h = H + j * K;
        __m512i acc[FIELD_ROWS];
        for (int r = 0; r < mr; r++) acc[r] = _mm512_setzero_si512();
        for (size_t i = 0; i < kv; i += 32) {
            const __m512i hv = _mm512_loadu_si512((const void *)(h + i));
            for (int r = 0; r < mr; r++)
                acc[r] = _mm512_add_epi32(
                    acc[r], _mm512_madd_epi16(
                                hv, _mm512_load_si512((const void *)(S + (size_t)r * ks + i))));
        }
        if (tail) { /* the rows' padding is 0, H is read only up to K */
            const __m512i hv = _mm512_maskz_loadu_epi16(tail, (const void *)(h + kv));
            for (int r = 0; r < mr; r++)
                acc[r] = _mm512_add_epi32(
                    acc[r], _mm512_madd_epi16(
                                hv, _mm512_load_si512((const void *)(S + (size_t)r * ks + kv))));
        }
        for (int r = 0; r < mr; r++) F[(size_t)r * ldf + j] = _mm512_reduce_add_epi32(acc[r]);
    }
}
#endif

static field_block_fn field_block_for_isa(void)
{
#if SKBNN_X86
    switch (skbnn_get_isa()) {
    case SKBNN_ISA_AVX512: return field_block_avx512;
    case SKBNN_ISA_AVX2: return field_block_avx2;
    default: break;
    }
#endif
    return field_block_portable;
}

/* byte b -> its 8 bits as int16 +/-1 (bit 0 first), a constant table */
#define PM1(b, i) (((b) >> (i)) & 1 ? 1 : -1)
#define B8(b) {PM1(b, 0), PM1(b, 1), PM1(b, 2), PM1(b, 3), PM1(b, 4), PM1(b, 5), PM1(b, 6), PM1(b, 7)}
#define B32(b) B8(b), B8((b) + 1), B8((b) + 2), B8((b) + 3), B8((b) + 4), B8((b) + 5), \
    B8((b) + 6), B8((b) + 7), B8((b) + 8), B8((b) + 9), B8((b) + 10), B8((b) + 11),   \
    B8((b) + 12), B8((b) + 13), B8((b) + 14), B8((b) + 15), B8((b) + 16), B8((b) + 17), \
    B8((b) + 18), B8((b) + 19), B8((b) + 20), B8((b) + 21), B8((b) + 22), B8((b) + 23), \
    B8((b) + 24), B8((b) + 25), B8((b) + 26), B8((b) + 27), B8((b) + 28), B8((b) + 29), \
    B8((b) + 30), B8((b) + 31)
static const int16_t g_pm1_of_byte[256][8] = {B32(0),   B32(32),  B32(64),  B32(96),
                                              B32(128), B32(160), B32(192), B32(224)};

/* +/-1 int16 row of the bits of a (K bits, little-endian words), zero up
 * to ks: whole bytes through the table, the last partial byte bit by bit */
static void expand_pm1(const uint64_t *a, size_t K, int16_t *s, size_t ks)
{
    const uint8_t *bytes = (const uint8_t *)a;
    const size_t full = K / 8;
    for (size_t q = 0; q < full; q++) memcpy(s + 8 * q, g_pm1_of_byte[bytes[q]], 16);
    for (size_t i = 8 * full; i < K; i++) s[i] = (int16_t)(((bytes[i >> 3] >> (i & 7)) & 1) ? 1 : -1);
    memset(s + K, 0, (ks - K) * sizeof(int16_t));
}

int skbnn_hidden_field(const int16_t *H, size_t N, size_t K, const uint64_t *A, size_t M,
                       int32_t *F, int n_threads)
{
    if (M == 0 || N == 0) return 0;
    if (K == 0) {
        memset(F, 0, M * N * sizeof(int32_t));
        return 0;
    }
    const field_block_fn block = field_block_for_isa();
    const size_t wK = WORDS(K), ks = (K + FIELD_PAD - 1) / FIELD_PAD * FIELD_PAD;
    const long nblocks = (long)((M + FIELD_ROWS - 1) / FIELD_ROWS);
    int failed = 0;
    n_threads = team((double)M * (double)N * (double)K, n_threads);
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
    {
        /* 64-byte aligned scratch of FIELD_ROWS expanded rows */
        uint8_t *raw = (uint8_t *)malloc(FIELD_ROWS * ks * sizeof(int16_t) + 64);
        int16_t *S = raw ? (int16_t *)(raw + (64 - ((uintptr_t)raw & 63u)) % 64) : NULL;
        if (!raw) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (long b = 0; b < nblocks; b++) {
            if (!S) continue;
            const size_t m0 = (size_t)b * FIELD_ROWS;
            const int mr = (int)(M - m0 < FIELD_ROWS ? M - m0 : FIELD_ROWS);
            for (int r = 0; r < mr; r++) expand_pm1(A + (m0 + (size_t)r) * wK, K, S + (size_t)r * ks, ks);
            block(H, N, K, S, ks, mr, F + m0 * N, N);
        }
        free(raw);
    }
    return failed ? -1 : 0;
}
