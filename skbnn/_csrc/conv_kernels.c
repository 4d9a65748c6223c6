/* skbnn convolution kernels: stride-1 2-D convolutions of NHWC feature maps
 * (binary and real input, +/-1 weights), their input and weight gradients,
 * 2x2 max pooling and flattening of packed maps.
 *
 * Layout: a map of n samples, H x W pixels, C channels is a 2-D row array
 * with n*H*W rows (row r = (s*H + y)*W + x) of C values or WORDS(C) packed
 * words (channel c = bit c).  A weight row o holds K = k*k*C bits, bit
 * j = (ky*k + kx)*C + c (tap-major, channel-minor), WORDS(K) words.  Output
 * maps have Ho = H + 2 pad - k + 1 rows and Wo = W + 2 pad - k + 1 columns;
 * padding is exact zero padding (a padded tap contributes nothing).
 *
 * Method: rows of output pixels are processed in chunks of a bounded number
 * of rows (scratch of about CHUNK_BYTES, independent of n): im2col of the
 * chunk, one call of the dispatched products (skbnn_bgemm, skbnn_fdot_bits,
 * skbnn_fsgemm, skbnn_fgemm, which parallelise inside), then an epilogue.
 * Chunks run one after the other; every parallel loop here gives each
 * output element to one thread, and every floating-point sum has a fixed
 * order (documented per kernel), so all thread counts and ISA paths agree
 * bit for bit.  Scratch is allocated outside parallel regions through the
 * allocator installed with skbnn_conv_set_allocator (the extension installs
 * Python's raw allocator, so tracemalloc sees it).
 */
#include "bnn_kernels.h"
#include "kernel_common.h"

#include <stdlib.h>
#include <string.h>

/* scratch target per chunk: about 1 MiB stays in L2 on most cores */
#define CHUNK_BYTES ((size_t)1 << 20)
/* samples per chunk of the weight gradient: a compile-time constant, so the
 * float summation order depends on the data and the shapes only */
#define WG_SAMPLES 8

/* ------------------------------------------------------------------------ */
/* scratch                                                                   */
/* ------------------------------------------------------------------------ */
static void *(*c_alloc)(size_t) = malloc;
static void (*c_free)(void *) = free;

void skbnn_conv_set_allocator(void *(*alloc)(size_t), void (*release)(void *))
{
    c_alloc = alloc ? alloc : malloc;
    c_free = release ? release : free;
}

/* Up to MAX_BUFS 64-byte aligned blocks released together. */
#define MAX_BUFS 12
typedef struct {
    void *base[MAX_BUFS];
    int n;
    int failed;
} scratch_t;

static void *take(scratch_t *s, size_t bytes)
{
    if (s->failed || s->n >= MAX_BUFS) {
        s->failed = 1;
        return NULL;
    }
    uint8_t *p = (uint8_t *)c_alloc((bytes ? bytes : 1) + 64);
    if (!p) {
        s->failed = 1;
        return NULL;
    }
    s->base[s->n++] = p;
    return p + (64 - ((uintptr_t)p & 63u)) % 64;
}

static void release_all(scratch_t *s)
{
    for (int i = 0; i < s->n; i++) c_free(s->base[i]);
    s->n = 0;
}

static inline size_t min_z(size_t a, size_t b) { return a < b ? a : b; }
static inline size_t max_z(size_t a, size_t b) { return a > b ? a : b; }

/* ------------------------------------------------------------------------ */
/* geometry and border classes                                               */
/* ------------------------------------------------------------------------ */
typedef struct {
    size_t n, H, W, C, k, pad, Ho, Wo, KK, wc, wk, taps;
} geom;

static geom make_geom(size_t n, size_t H, size_t W, size_t C, size_t k, size_t pad)
{
    geom g;
    g.n = n;
    g.H = H;
    g.W = W;
    g.C = C;
    g.k = k;
    g.pad = pad;
    g.Ho = H + 2 * pad - k + 1;
    g.Wo = W + 2 * pad - k + 1;
    g.taps = k * k;
    g.KK = g.taps * C;
    g.wc = WORDS(C);
    g.wk = WORDS(g.KK);
    return g;
}

/* An output coordinate's in-bounds taps along one axis are the interval
 * [lo, hi] of kernel offsets; output pixels are grouped by the pair of
 * intervals (a "border class"): at most 2k classes per axis.  Class tables
 * give, per (y class, x class), the list of out-of-bounds taps. */
typedef struct {
    int *ycls, *xcls;      /* class of each oy / ox */
    size_t ncy, ncx;
    int *lo_y, *hi_y, *lo_x, *hi_x;
    int *noob;             /* per (cy, cx): number of out-of-bounds taps */
    int *oob;              /* per (cy, cx): taps list (taps entries each) */
} borders;

static size_t axis_classes(size_t nout, size_t nin, size_t k, size_t pad, int *cls, int *lo,
                           int *hi)
{
    size_t nc = 0;
    for (size_t o = 0; o < nout; o++) {
        const long l = (long)pad - (long)o, h = (long)nin - 1 + (long)pad - (long)o;
        const int a = (int)(l > 0 ? l : 0), b = (int)(h < (long)k - 1 ? h : (long)k - 1);
        size_t c = 0;
        while (c < nc && !(lo[c] == a && hi[c] == b)) c++;
        if (c == nc) {
            lo[nc] = a;
            hi[nc] = b;
            nc++;
        }
        cls[o] = (int)c;
    }
    return nc;
}

static int make_borders(const geom *g, borders *b, scratch_t *s)
{
    const size_t cap = 2 * g->k + 2;
    b->ycls = (int *)take(s, g->Ho * sizeof(int));
    b->xcls = (int *)take(s, g->Wo * sizeof(int));
    b->lo_y = (int *)take(s, 4 * cap * sizeof(int));
    if (s->failed) return -1;
    b->hi_y = b->lo_y + cap;
    b->lo_x = b->hi_y + cap;
    b->hi_x = b->lo_x + cap;
    b->ncy = axis_classes(g->Ho, g->H, g->k, g->pad, b->ycls, b->lo_y, b->hi_y);
    b->ncx = axis_classes(g->Wo, g->W, g->k, g->pad, b->xcls, b->lo_x, b->hi_x);
    const size_t ncls = b->ncy * b->ncx;
    b->noob = (int *)take(s, ncls * sizeof(int));
    b->oob = (int *)take(s, ncls * g->taps * sizeof(int));
    if (s->failed) return -1;
    for (size_t cy = 0; cy < b->ncy; cy++)
        for (size_t cx = 0; cx < b->ncx; cx++) {
            const size_t cl = cy * b->ncx + cx;
            int cnt = 0;
            for (size_t ky = 0; ky < g->k; ky++)
                for (size_t kx = 0; kx < g->k; kx++) {
                    const int in = (int)ky >= b->lo_y[cy] && (int)ky <= b->hi_y[cy] &&
                                   (int)kx >= b->lo_x[cx] && (int)kx <= b->hi_x[cx];
                    if (!in) b->oob[cl * g->taps + (size_t)cnt++] = (int)(ky * g->k + kx);
                }
            b->noob[cl] = cnt;
        }
    return 0;
}

/* class of output pixel (oy, ox) */
static inline size_t pix_class(const borders *b, size_t oy, size_t ox)
{
    return (size_t)b->ycls[oy] * b->ncx + (size_t)b->xcls[ox];
}

/* ------------------------------------------------------------------------ */
/* bit helpers                                                               */
/* ------------------------------------------------------------------------ */
/* OR nbits bits of src (bit 0 first) into dst at bit offset off (the
 * destination bits are 0); bits of src past nbits are ignored. */
static inline void or_bits(uint64_t *dst, size_t off, const uint64_t *src, size_t nbits)
{
    uint64_t *d = dst + (off >> 6);
    const unsigned sh = (unsigned)(off & 63u);
    size_t i = 0;
    if (sh == 0) {
        for (; nbits >= 64; i++, nbits -= 64) d[i] = src[i];
        if (nbits) d[i] |= src[i] & tail_mask(nbits);
        return;
    }
    for (; nbits >= 64; i++, nbits -= 64) {
        const uint64_t w = src[i];
        d[i] |= w << sh;
        d[i + 1] |= w >> (64u - sh);
    }
    if (nbits) {
        const uint64_t w = src[i] & tail_mask(nbits);
        d[i] |= w << sh;
        if (sh + nbits > 64) d[i + 1] |= w >> (64u - sh);
    }
}

static inline void or_ones(uint64_t *dst, size_t off, size_t nbits)
{
    uint64_t *d = dst + (off >> 6);
    const unsigned sh = (unsigned)(off & 63u);
    size_t i = 0;
    for (; nbits >= 64; i++, nbits -= 64) {
        d[i] |= ~0ULL << sh;
        if (sh) d[i + 1] |= ~0ULL >> (64u - sh);
    }
    if (nbits) {
        const uint64_t w = tail_mask(nbits);
        d[i] |= w << sh;
        if (sh && sh + nbits > 64) d[i + 1] |= w >> (64u - sh);
    }
}

/* number of set bits in [off, off + nbits) of a packed row */
static inline int64_t count_range(const uint64_t *row, size_t off, size_t nbits)
{
    int64_t c = 0;
    while (nbits) {
        const size_t w = off >> 6, sh = off & 63u, take_n = min_z(64 - sh, nbits);
        c += __builtin_popcountll((row[w] >> sh) & tail_mask(take_n));
        off += take_n;
        nbits -= take_n;
    }
    return c;
}

/* ------------------------------------------------------------------------ */
/* im2col of one output pixel                                                */
/* ------------------------------------------------------------------------ */
/* packed: tap t's C bits at bit t*C; padded taps are +1 bits */
static void im2col_bits(const uint64_t *X, const geom *g, size_t s, size_t oy, size_t ox,
                        uint64_t *dst)
{
    const size_t k = g->k, C = g->C, wc = g->wc;
    const long pad = (long)g->pad;
    if (C % 64 == 0) { /* whole words per tap */
        for (size_t ky = 0; ky < k; ky++) {
            const long iy = (long)oy + (long)ky - pad;
            uint64_t *d = dst + ky * k * wc;
            const long ix0 = (long)ox - pad;
            if (iy < 0 || iy >= (long)g->H) {
                for (size_t i = 0; i < k * wc; i++) d[i] = ~0ULL;
                continue;
            }
            const uint64_t *row = X + ((s * g->H + (size_t)iy) * g->W) * wc;
            if (ix0 >= 0 && ix0 + (long)k <= (long)g->W) {
                memcpy(d, row + (size_t)ix0 * wc, k * wc * sizeof(uint64_t));
                continue;
            }
            for (size_t kx = 0; kx < k; kx++) {
                const long ix = ix0 + (long)kx;
                if (ix < 0 || ix >= (long)g->W)
                    for (size_t i = 0; i < wc; i++) d[kx * wc + i] = ~0ULL;
                else
                    memcpy(d + kx * wc, row + (size_t)ix * wc, wc * sizeof(uint64_t));
            }
        }
        return;
    }
    memset(dst, 0, g->wk * sizeof(uint64_t));
    for (size_t ky = 0; ky < k; ky++) {
        const long iy = (long)oy + (long)ky - pad;
        for (size_t kx = 0; kx < k; kx++) {
            const long ix = (long)ox + (long)kx - pad;
            const size_t off = (ky * k + kx) * C;
            if (iy < 0 || iy >= (long)g->H || ix < 0 || ix >= (long)g->W)
                or_ones(dst, off, C);
            else
                or_bits(dst, off, X + ((s * g->H + (size_t)iy) * g->W + (size_t)ix) * wc, C);
        }
    }
}

/* float: tap t's C values at t*C, padded taps 0.0, zeros from KK to ld */
static void im2col_float(const float *X, const geom *g, size_t s, size_t oy, size_t ox,
                         float *dst, size_t ld)
{
    const size_t k = g->k, C = g->C;
    const long pad = (long)g->pad;
    for (size_t ky = 0; ky < k; ky++) {
        const long iy = (long)oy + (long)ky - pad;
        float *d = dst + ky * k * C;
        const long ix0 = (long)ox - pad;
        if (iy < 0 || iy >= (long)g->H) {
            memset(d, 0, k * C * sizeof(float));
            continue;
        }
        const float *row = X + ((s * g->H + (size_t)iy) * g->W) * C;
        if (ix0 >= 0 && ix0 + (long)k <= (long)g->W) {
            memcpy(d, row + (size_t)ix0 * C, k * C * sizeof(float));
            continue;
        }
        for (size_t kx = 0; kx < k; kx++) {
            const long ix = ix0 + (long)kx;
            if (ix < 0 || ix >= (long)g->W)
                memset(d + kx * C, 0, C * sizeof(float));
            else
                memcpy(d + kx * C, row + (size_t)ix * C, C * sizeof(float));
        }
    }
    for (size_t j = g->KK; j < ld; j++) dst[j] = 0.0f;
}

/* rows per chunk: about CHUNK_BYTES of scratch, a multiple of 4, >= 4 */
static size_t chunk_rows(size_t row_bytes, size_t total)
{
    size_t r = CHUNK_BYTES / (row_bytes ? row_bytes : 1);
    r = max_z(4, r - r % 4);
    return min_z(r, max_z(total, 1));
}

/* ------------------------------------------------------------------------ */
/* binary convolution                                                        */
/* ------------------------------------------------------------------------ */
/* Exact: out = bgemm of the +1-padded im2col rows minus, for a border pixel,
 * the weight sums S[o, t] = sum_c w[o, t, c] of its out-of-bounds taps
 * (precomputed per border class: corr[class][o]). */
int skbnn_conv2d_bits(const uint64_t *X, size_t n, size_t H, size_t W, size_t C,
                      const uint64_t *Wp, size_t Cout, size_t k, size_t pad, void *out,
                      int out16, int n_threads)
{
    const geom g = make_geom(n, H, W, C, k, pad);
    const size_t rows = n * g.Ho * g.Wo;
    if (rows == 0 || Cout == 0) return 0;
    scratch_t sc = {{0}, 0, 0};
    borders b;
    if (make_borders(&g, &b, &sc)) goto oom;
    const size_t ncls = b.ncy * b.ncx;
    int32_t *corr = (int32_t *)take(&sc, ncls * Cout * sizeof(int32_t));
    int32_t *S = (int32_t *)take(&sc, Cout * g.taps * sizeof(int32_t));
    if (sc.failed) goto oom;
    for (size_t o = 0; o < Cout; o++)
        for (size_t t = 0; t < g.taps; t++)
            S[o * g.taps + t] = (int32_t)(2 * count_range(Wp + o * g.wk, t * C, C) - (int64_t)C);
    for (size_t cl = 0; cl < ncls; cl++)
        for (size_t o = 0; o < Cout; o++) {
            int32_t v = 0;
            for (int i = 0; i < b.noob[cl]; i++) v += S[o * g.taps + (size_t)b.oob[cl * g.taps + (size_t)i]];
            corr[cl * Cout + o] = v;
        }
    const size_t CH = chunk_rows(g.wk * 8 + (out16 ? Cout * 4 : 0), rows);
    uint64_t *A = (uint64_t *)take(&sc, CH * g.wk * sizeof(uint64_t));
    int32_t *Zs = out16 ? (int32_t *)take(&sc, CH * Cout * sizeof(int32_t)) : NULL;
    if (sc.failed) goto oom;
    const size_t HW = g.Ho * g.Wo;
    for (size_t r0 = 0; r0 < rows; r0 += CH) {
        const size_t m = min_z(CH, rows - r0);
        int nt = team((double)m * (double)g.taps * (double)g.wc * 8.0, n_threads);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
        for (long i = 0; i < (long)m; i++) {
            const size_t r = r0 + (size_t)i, s = r / HW, p = r % HW;
            im2col_bits(X, &g, s, p / g.Wo, p % g.Wo, A + (size_t)i * g.wk);
        }
        int32_t *Z = out16 ? Zs : (int32_t *)out + r0 * Cout;
        if (skbnn_bgemm(A, m, Wp, Cout, g.wk, (int64_t)g.KK, Z, n_threads)) goto oom;
        nt = team((double)m * (double)Cout * 2.0, n_threads);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
        for (long i = 0; i < (long)m; i++) {
            const size_t r = r0 + (size_t)i, p = r % HW;
            const size_t cl = pix_class(&b, p / g.Wo, p % g.Wo);
            int32_t *z = Z + (size_t)i * Cout;
            if (b.noob[cl]) {
                const int32_t *cv = corr + cl * Cout;
                for (size_t o = 0; o < Cout; o++) z[o] -= cv[o];
            }
            if (out16) {
                int16_t *d = (int16_t *)out + r * Cout;
                for (size_t o = 0; o < Cout; o++) d[o] = (int16_t)z[o];
            }
        }
    }
    release_all(&sc);
    return 0;
oom:
    release_all(&sc);
    return -1;
}

/* ------------------------------------------------------------------------ */
/* real-input convolution                                                    */
/* ------------------------------------------------------------------------ */
/* Rows of k*k*C floats (padded taps 0.0) zero-extended to a multiple of 16
 * (the dot kernel's lanes: the same sums as the unextended row, on the SIMD
 * path) dotted with the weight rows by skbnn_fdot_bits. */
int skbnn_conv2d_real(const float *X, size_t n, size_t H, size_t W, size_t C,
                      const uint64_t *Wp, size_t Cout, size_t k, size_t pad, void *out,
                      int out_half, int n_threads)
{
    const geom g = make_geom(n, H, W, C, k, pad);
    const size_t rows = n * g.Ho * g.Wo;
    if (rows == 0 || Cout == 0) return 0;
    const size_t K16 = (g.KK + 15) / 16 * 16; /* <= 64 WORDS(KK): same word count */
    scratch_t sc = {{0}, 0, 0};
    const size_t CH = chunk_rows(K16 * 4 + (out_half ? Cout * 4 : 0), rows);
    float *A = (float *)take(&sc, CH * K16 * sizeof(float));
    float *Cs = out_half ? (float *)take(&sc, CH * Cout * sizeof(float)) : NULL;
    if (sc.failed) {
        release_all(&sc);
        return -1;
    }
    (void)skbnn_use_f16c(); /* settle the converter before threads start */
    const size_t HW = g.Ho * g.Wo;
    for (size_t r0 = 0; r0 < rows; r0 += CH) {
        const size_t m = min_z(CH, rows - r0);
        int nt = team((double)m * (double)K16 * 4.0, n_threads);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
        for (long i = 0; i < (long)m; i++) {
            const size_t r = r0 + (size_t)i, s = r / HW, p = r % HW;
            im2col_float(X, &g, s, p / g.Wo, p % g.Wo, A + (size_t)i * K16, K16);
        }
        float *Cc = out_half ? Cs : (float *)out + r0 * Cout;
        skbnn_fdot_bits(A, m, K16, Wp, Cout, Cc, n_threads);
        if (out_half) {
            nt = team((double)m * (double)Cout * 4.0, n_threads);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
            for (long i = 0; i < (long)m; i++)
                skbnn_f32_to_f16(Cs + (size_t)i * Cout, (uint16_t *)out + (r0 + (size_t)i) * Cout,
                                 Cout);
        }
    }
    release_all(&sc);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* gradient with respect to the input                                        */
/* ------------------------------------------------------------------------ */
/* D[r, j] = sum_o G[r, o] w[o, j] (skbnn_fsgemm) for a chunk of output rows,
 * then col2im as a gather: dX[(s, iy, ix), c] += D[(s, oy, ox), (ky, kx, c)]
 * over the taps in order ky then kx (oy = iy - ky + pad, ox = ix - kx + pad).
 * Chunks are whole groups of samples or, for large maps, bands of output
 * rows of one sample taken from the bottom up, so that every dX element
 * still receives its taps in ascending order; float32 accumulators of the
 * chunk's samples, then the mask and the store. */
int skbnn_conv2d_input_grad(const void *G, int g_half, size_t n, size_t H, size_t W,
                            size_t C, const uint64_t *Wp, size_t Cout, size_t k, size_t pad,
                            void *out, int out_half, const uint64_t *mask, int n_threads)
{
    const geom g = make_geom(n, H, W, C, k, pad);
    const size_t HWin = H * W, HWo = g.Ho * g.Wo, KK = g.KK;
    if (n == 0 || HWin == 0 || C == 0) return 0;
    if (Cout == 0 || HWo == 0) { /* no output pixels or channels: dX = 0 */
        if (out_half) memset(out, 0, n * HWin * C * sizeof(uint16_t));
        else memset(out, 0, n * HWin * C * sizeof(float));
        return 0;
    }
    const size_t cap = max_z(g.Wo, CHUNK_BYTES / (KK * sizeof(float)));
    size_t S, band;
    if (cap >= HWo) {
        S = min_z(n, cap / HWo);
        band = g.Ho;
    } else {
        S = 1;
        band = max_z(1, cap / g.Wo);
    }
    scratch_t sc = {{0}, 0, 0};
    float *D = (float *)take(&sc, S * band * g.Wo * KK * sizeof(float));
    float *acc = (float *)take(&sc, S * HWin * C * sizeof(float));
    if (sc.failed) {
        release_all(&sc);
        return -1;
    }
    (void)skbnn_use_f16c();
    const size_t gsz = g_half ? sizeof(uint16_t) : sizeof(float);
    for (size_t s0 = 0; s0 < n; s0 += S) {
        const size_t Sg = min_z(S, n - s0);
        memset(acc, 0, Sg * HWin * C * sizeof(float));
        for (size_t oy1 = g.Ho; oy1 > 0;) {
            const size_t oy0 = oy1 > band ? oy1 - band : 0, nb = oy1 - oy0;
            const size_t row0 = (s0 * g.Ho + oy0) * g.Wo, M = Sg * nb * g.Wo;
            skbnn_fview v;
            v.p = (const uint8_t *)G + row0 * Cout * gsz;
            v.half = g_half;
            v.rs = Cout;
            v.ks = 1;
            skbnn_fsgemm(v, M, Cout, Wp, KK, D, 0, NULL, NULL, n_threads);
            /* input rows that receive taps from output rows [oy0, oy1) */
            const long lo = (long)oy0 - (long)pad, hi = (long)oy1 - 1 - (long)pad + (long)k - 1;
            const size_t iy_lo = (size_t)(lo > 0 ? lo : 0);
            const size_t iy_hi = (size_t)(hi < (long)H - 1 ? hi : (long)H - 1);
            if (hi >= 0 && iy_lo <= iy_hi) {
                const size_t nrow = iy_hi - iy_lo + 1, tasks = Sg * nrow;
                const int nt = team((double)tasks * (double)W * (double)g.taps * (double)C,
                                    n_threads);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
                for (long tsk = 0; tsk < (long)tasks; tsk++) {
                    const size_t ls = (size_t)tsk / nrow, iy = iy_lo + (size_t)tsk % nrow;
                    for (size_t ix = 0; ix < W; ix++) {
                        float *a = acc + ((ls * H + iy) * W + ix) * C;
                        for (size_t ky = 0; ky < k; ky++) {
                            const long oy = (long)iy - (long)ky + (long)pad;
                            if (oy < (long)oy0 || oy >= (long)oy1) continue;
                            for (size_t kx = 0; kx < k; kx++) {
                                const long ox = (long)ix - (long)kx + (long)pad;
                                if (ox < 0 || ox >= (long)g.Wo) continue;
                                const float *d = D + ((ls * nb + (size_t)oy - oy0) * g.Wo +
                                                      (size_t)ox) * KK + (ky * k + kx) * C;
                                for (size_t c = 0; c < C; c++) a[c] += d[c];
                            }
                        }
                    }
                }
            }
            oy1 = oy0;
        }
        /* mask and store the group's rows */
        const size_t nr = Sg * HWin, r0 = s0 * HWin;
        const int nt = team((double)nr * (double)C * 2.0, n_threads);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
        for (long i = 0; i < (long)nr; i++) {
            float *a = acc + (size_t)i * C;
            const size_t r = r0 + (size_t)i;
            if (mask) {
                const uint64_t *mk = mask + r * g.wc;
                for (size_t c = 0; c < C; c++)
                    if (!((mk[c >> 6] >> (c & 63u)) & 1u)) a[c] = 0.0f;
            }
            if (out_half) skbnn_f32_to_f16(a, (uint16_t *)out + r * C, C);
            else memcpy((float *)out + r * C, a, C * sizeof(float));
        }
    }
    release_all(&sc);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* gradient with respect to the weights                                      */
/* ------------------------------------------------------------------------ */
/* Chunks of WG_SAMPLES samples (the last may be shorter), in order.  Per
 * chunk, G's rows are transposed to float32 Gt (Cout x m) and
 *   bits : Cc = skbnn_fsgemm(Gt, im2col bits with +1 padding), i.e. per
 *          element (2 P - T) with P and T float32 sums over the chunk's rows
 *          in order; then Cc[o, (t, c)] - Bs[o, t], Bs the float32 sum (rows
 *          in order) of G[:, o] over the chunk rows whose tap t is padded;
 *   float: Cc = skbnn_fgemm(Gt, im2col floats with 0.0 padding), one fused
 *          multiply-add per row in order;
 * and dW = dW + chunk value, from dW = 0, chunk after chunk. */
int skbnn_conv2d_weight_grad(const void *G, int g_half, const void *X, int x_bits, size_t n,
                             size_t H, size_t W, size_t C, size_t Cout, size_t k, size_t pad,
                             float *dW, uint64_t *Sbits, int n_threads)
{
    const geom g = make_geom(n, H, W, C, k, pad);
    const size_t HWo = g.Ho * g.Wo, KK = g.KK, taps = g.taps;
    if (Cout == 0 || KK == 0) return 0;
    scratch_t sc = {{0}, 0, 0};
    float *acc = dW ? dW : (float *)take(&sc, Cout * KK * sizeof(float));
    if (sc.failed) goto oom;
    memset(acc, 0, Cout * KK * sizeof(float));
    const size_t mmax = min_z(WG_SAMPLES, max_z(n, 1)) * HWo;
    borders b = {0};
    const int border = x_bits && pad > 0;
    if (border && make_borders(&g, &b, &sc)) goto oom;
    if (n > 0 && HWo > 0) {
        float *Gt = (float *)take(&sc, Cout * mmax * sizeof(float));
        float *Gf = g_half ? (float *)take(&sc, mmax * Cout * sizeof(float)) : NULL;
        float *Cc = (float *)take(&sc, Cout * KK * sizeof(float));
        float *Bs = border ? (float *)take(&sc, Cout * taps * sizeof(float)) : NULL;
        uint64_t *Xb = x_bits ? (uint64_t *)take(&sc, mmax * g.wk * sizeof(uint64_t)) : NULL;
        float *Xf = x_bits ? NULL : (float *)take(&sc, mmax * KK * sizeof(float));
        if (sc.failed) goto oom;
        (void)skbnn_use_f16c();
        for (size_t s0 = 0; s0 < n; s0 += WG_SAMPLES) {
            const size_t ns = min_z(WG_SAMPLES, n - s0), m = ns * HWo, r0 = s0 * HWo;
            /* G rows as float32, transposed */
            const float *Gsrc = g_half ? Gf : (const float *)G + r0 * Cout;
            int nt;
            if (g_half) {
                nt = team((double)m * (double)Cout * 2.0, n_threads);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
                for (long i = 0; i < (long)m; i++)
                    skbnn_f16_to_f32((const uint16_t *)G + (r0 + (size_t)i) * Cout,
                                     Gf + (size_t)i * Cout, Cout);
            }
            const size_t nrb = (m + 31) / 32;
            nt = team((double)m * (double)Cout * 2.0, n_threads);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
            for (long rb = 0; rb < (long)nrb; rb++) {
                const size_t ra = (size_t)rb * 32, re = min_z(ra + 32, m);
                for (size_t o = 0; o < Cout; o++)
                    for (size_t r = ra; r < re; r++) Gt[o * m + r] = Gsrc[r * Cout + o];
            }
            /* im2col of the chunk */
            nt = team((double)m * (double)KK, n_threads);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
            for (long i = 0; i < (long)m; i++) {
                const size_t s = s0 + (size_t)i / HWo, p = (size_t)i % HWo;
                if (x_bits)
                    im2col_bits((const uint64_t *)X, &g, s, p / g.Wo, p % g.Wo,
                                Xb + (size_t)i * g.wk);
                else
                    im2col_float((const float *)X, &g, s, p / g.Wo, p % g.Wo,
                                 Xf + (size_t)i * KK, KK);
            }
            skbnn_fview v;
            v.p = Gt;
            v.half = 0;
            v.rs = m;
            v.ks = 1;
            if (x_bits) skbnn_fsgemm(v, Cout, m, Xb, KK, Cc, 0, NULL, NULL, n_threads);
            else skbnn_fgemm(v, Cout, m, Xf, KK, Cc, 0, NULL, n_threads);
            nt = team((double)Cout * (double)KK * 2.0 + (border ? (double)Cout * m : 0.0),
                      n_threads);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
            for (long oo = 0; oo < (long)Cout; oo++) {
                const size_t o = (size_t)oo;
                float *a = acc + o * KK;
                const float *cc = Cc + o * KK;
                if (border) {
                    float *bs = Bs + o * taps;
                    const float *gt = Gt + o * m;
                    for (size_t t = 0; t < taps; t++) bs[t] = 0.0f;
                    for (size_t i = 0; i < m; i++) {
                        const size_t p = i % HWo, cl = pix_class(&b, p / g.Wo, p % g.Wo);
                        for (int q = 0; q < b.noob[cl]; q++)
                            bs[b.oob[cl * taps + (size_t)q]] += gt[i];
                    }
                    for (size_t t = 0; t < taps; t++)
                        for (size_t c = 0; c < C; c++)
                            a[t * C + c] = a[t * C + c] + (cc[t * C + c] - bs[t]);
                } else {
                    for (size_t j = 0; j < KK; j++) a[j] = a[j] + cc[j];
                }
            }
        }
    }
    if (Sbits) {
        const size_t wk = g.wk;
        for (size_t o = 0; o < Cout; o++)
            for (size_t w = 0; w < wk; w++) {
                uint64_t bits = 0;
                const size_t c0 = w * 64, nc = min_z(64, KK - c0);
                for (size_t l = 0; l < nc; l++)
                    bits |= (uint64_t)(acc[o * KK + c0 + l] >= 0.0f) << l;
                Sbits[o * wk + w] = bits;
            }
    }
    release_all(&sc);
    return 0;
oom:
    release_all(&sc);
    return -1;
}

/* ------------------------------------------------------------------------ */
/* 2x2 max pooling, stride 2, floor                                          */
/* ------------------------------------------------------------------------ */
/* window positions in order (0,0), (0,1), (1,0), (1,1): input rows of output
 * pixel (s, oy, ox) */
static inline void window_rows(size_t s, size_t oy, size_t ox, size_t H, size_t W, size_t r[4])
{
    const size_t base = (s * H + 2 * oy) * W + 2 * ox;
    r[0] = base;
    r[1] = base + 1;
    r[2] = base + W;
    r[3] = base + W + 1;
}

/* zero the argmax rows outside every window of sample s (last row and
 * column of odd sizes) */
static void zero_uncovered(uint64_t *argmax, size_t s, size_t H, size_t W, size_t wc,
                           size_t Ho, size_t Wo)
{
    for (size_t y = 0; y < H; y++)
        for (size_t x = 0; x < W; x++)
            if (y >= 2 * Ho || x >= 2 * Wo)
                memset(argmax + ((s * H + y) * W + x) * wc, 0, wc * sizeof(uint64_t));
}

void skbnn_maxpool2x2_bits(const uint64_t *X, size_t n, size_t H, size_t W, size_t C,
                           uint64_t *out, uint64_t *argmax, int n_threads)
{
    const size_t Ho = H / 2, Wo = W / 2, wc = WORDS(C);
    n_threads = team((double)n * (double)H * (double)W * (double)wc * 4.0, n_threads);
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1)
    for (long ss = 0; ss < (long)n; ss++) {
        const size_t s = (size_t)ss;
        zero_uncovered(argmax, s, H, W, wc, Ho, Wo);
        for (size_t oy = 0; oy < Ho; oy++)
            for (size_t ox = 0; ox < Wo; ox++) {
                size_t r[4];
                window_rows(s, oy, ox, H, W, r);
                for (size_t w = 0; w < wc; w++) {
                    const uint64_t live = w + 1 == wc ? tail_mask(C - 64 * w) : ~0ULL;
                    const uint64_t a = X[r[0] * wc + w] & live, b = X[r[1] * wc + w] & live,
                                   c = X[r[2] * wc + w] & live, d = X[r[3] * wc + w] & live;
                    const uint64_t any = a | b | c | d;
                    out[((s * Ho + oy) * Wo + ox) * wc + w] = any;
                    argmax[r[0] * wc + w] = (a | ~any) & live;
                    argmax[r[1] * wc + w] = ~a & b;
                    argmax[r[2] * wc + w] = ~a & ~b & c;
                    argmax[r[3] * wc + w] = ~a & ~b & ~c & d;
                }
            }
    }
}

/* exact float32 value of an IEEE binary16 pattern (the pooling compares) */
static inline float h2f(uint16_t h)
{
    union { float f; uint32_t u; } r;
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0) {
        r.f = (float)mant * 0x1p-24f;
        r.u |= sign;
    } else if (exp == 31) {
        r.u = sign | 0x7f800000u | (mant << 13) | (mant ? 0x400000u : 0u);
    } else {
        r.u = sign | ((exp + 112u) << 23) | (mant << 13);
    }
    return r.f;
}

/* The first window position holding the maximum: strict > keeps the first
 * (as floats for float16: -0 ties +0, a NaN never replaces the running
 * maximum).  Branch-free selects; the stored value is the element itself.
 * KEY converts an element to its comparable value. */
#define KEY_ID(e) (e)
#define KEY_F16(e) h2f(e)
#define POOL_BODY(T, KT, KEY)                                                               \
    do {                                                                                    \
        const T *x0 = (const T *)X + r[0] * C, *x1 = (const T *)X + r[1] * C;               \
        const T *x2 = (const T *)X + r[2] * C, *x3 = (const T *)X + r[3] * C;               \
        T *y = (T *)out + orow * C;                                                         \
        for (size_t w = 0; w < wc; w++) {                                                   \
            const size_t c0 = 64 * w, nc = min_z(64, C - c0);                               \
            uint8_t pos[64];                                                                \
            for (size_t l = 0; l < nc; l++) {                                               \
                const size_t c = c0 + l;                                                    \
                T e = x0[c];                                                                \
                KT m = KEY(e);                                                              \
                uint8_t q = 0;                                                              \
                const KT k1 = KEY(x1[c]), k2 = KEY(x2[c]), k3 = KEY(x3[c]);                 \
                const int g1 = k1 > m;                                                      \
                m = g1 ? k1 : m;                                                            \
                e = g1 ? x1[c] : e;                                                         \
                q = g1 ? 1 : q;                                                             \
                const int g2 = k2 > m;                                                      \
                m = g2 ? k2 : m;                                                            \
                e = g2 ? x2[c] : e;                                                         \
                q = g2 ? 2 : q;                                                             \
                const int g3 = k3 > m;                                                      \
                e = g3 ? x3[c] : e;                                                         \
                q = g3 ? 3 : q;                                                             \
                y[c] = e;                                                                   \
                pos[l] = q;                                                                 \
            }                                                                               \
            uint64_t am[4] = {0, 0, 0, 0};                                                  \
            for (size_t l = 0; l < nc; l++) am[pos[l]] |= 1ULL << l;                        \
            for (int j = 0; j < 4; j++) argmax[r[j] * wc + w] = am[j];                      \
        }                                                                                   \
    } while (0)

void skbnn_maxpool2x2(const void *X, int dtype, size_t n, size_t H, size_t W, size_t C,
                      void *out, uint64_t *argmax, int n_threads)
{
    const size_t Ho = H / 2, Wo = W / 2, wc = WORDS(C);
    (void)skbnn_use_f16c();
    n_threads = team((double)n * (double)H * (double)W * (double)C * 2.0, n_threads);
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1)
    for (long ss = 0; ss < (long)n; ss++) {
        const size_t s = (size_t)ss;
        zero_uncovered(argmax, s, H, W, wc, Ho, Wo);
        for (size_t oy = 0; oy < Ho; oy++)
            for (size_t ox = 0; ox < Wo; ox++) {
                size_t r[4];
                window_rows(s, oy, ox, H, W, r);
                const size_t orow = (s * Ho + oy) * Wo + ox;
                switch (dtype) {
                case SKBNN_DT_INT16: POOL_BODY(int16_t, int16_t, KEY_ID); break;
                case SKBNN_DT_INT32: POOL_BODY(int32_t, int32_t, KEY_ID); break;
                case SKBNN_DT_FLOAT16: POOL_BODY(uint16_t, float, KEY_F16); break;
                default: POOL_BODY(float, float, KEY_ID); break;
                }
            }
    }
}

/* out[r, c] = G[window of r, c] where the argmax (and mask) bit is 1, else 0 */
void skbnn_maxpool2x2_backward(const void *G, int g_half, const uint64_t *argmax,
                               const uint64_t *mask, size_t n, size_t H, size_t W, size_t C,
                               void *out, int out_half, int n_threads)
{
    const size_t Ho = H / 2, Wo = W / 2, wc = WORDS(C);
    (void)skbnn_use_f16c();
    n_threads = team((double)n * (double)H * (double)W * (double)C * 2.0, n_threads);
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1)
    for (long rr = 0; rr < (long)(n * H); rr++) {
        const size_t s = (size_t)rr / H, iy = (size_t)rr % H;
        float buf[64], sel[64];
        for (size_t ix = 0; ix < W; ix++) {
            const size_t r = (s * H + iy) * W + ix;
            if (iy / 2 >= Ho || ix / 2 >= Wo) { /* outside every window */
                memset((uint8_t *)out + r * C * (out_half ? 2 : 4), 0, C * (out_half ? 2 : 4));
                continue;
            }
            const size_t gr = (s * Ho + iy / 2) * Wo + ix / 2;
            for (size_t w = 0; w < wc; w++) {
                const size_t c0 = 64 * w, nc = min_z(64, C - c0);
                uint64_t keep = argmax[r * wc + w];
                if (mask) keep &= mask[r * wc + w];
                if (g_half == out_half) { /* same type: copy the bits */
                    if (g_half) {
                        const uint16_t *g = (const uint16_t *)G + gr * C + c0;
                        uint16_t *o = (uint16_t *)out + r * C + c0;
                        for (size_t l = 0; l < nc; l++) o[l] = (keep >> l) & 1u ? g[l] : 0;
                    } else {
                        const float *g = (const float *)G + gr * C + c0;
                        float *o = (float *)out + r * C + c0;
                        for (size_t l = 0; l < nc; l++) o[l] = (keep >> l) & 1u ? g[l] : 0.0f;
                    }
                    continue;
                }
                if (g_half) skbnn_f16_to_f32((const uint16_t *)G + gr * C + c0, buf, nc);
                else memcpy(buf, (const float *)G + gr * C + c0, nc * sizeof(float));
                for (size_t l = 0; l < nc; l++) sel[l] = (keep >> l) & 1u ? buf[l] : 0.0f;
                if (out_half) skbnn_f32_to_f16(sel, (uint16_t *)out + r * C + c0, nc);
                else memcpy((float *)out + r * C + c0, sel, nc * sizeof(float));
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* flatten                                                                   */
/* ------------------------------------------------------------------------ */
void skbnn_flatten_bits(const uint64_t *X, size_t n, size_t P, size_t C, uint64_t *out,
                        int n_threads)
{
    const size_t wc = WORDS(C), wo = WORDS(P * C);
    n_threads = team((double)n * (double)P * (double)wc * 4.0, n_threads);
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1)
    for (long ss = 0; ss < (long)n; ss++) {
        const size_t s = (size_t)ss;
        uint64_t *d = out + s * wo;
        memset(d, 0, wo * sizeof(uint64_t));
        for (size_t p = 0; p < P; p++) or_bits(d, p * C, X + (s * P + p) * wc, C);
    }
}
