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
 * Binary convolution: im2col of bounded chunks of output rows and the
 * dispatched binary GEMM (skbnn_bgemm) with a border correction.
 *
 * Float products (real-input convolution, input and weight gradients): a
 * direct convolution on a register-blocked float micro-kernel (FMR rows x
 * NR columns of float32 accumulators, NR = 16 on the portable and AVX2
 * paths, 32 on the AVX-512 path; the AVX2 and AVX-512 kernels are one
 * macro text).  The real-input forward and the input gradient expand the
 * +/-1 weights to float +-1.0 panels (blocks of bounded size, rebuilt per
 * band of pixels when the whole panel would be large); the input gradient
 * reads G's rows in place through per-tap row pointers.  The weight
 * gradient expands the input's im2col rows to floats and transposes G's
 * rows, chunk by chunk.
 * Every output element is one float32 chain in a fixed, documented order
 * (see each kernel); a chain split over blocks is stored and reloaded as
 * float32, which does not change it, so the blocking, the tile shape, the
 * ISA path and the thread count never change a bit.  With +/-1 (or 0)
 * factors every product is exact, so a fused multiply-add and a separate
 * multiply and add give the same bits; the real-input weight gradient (two
 * real factors) uses one fused multiply-add per term on every path (fmaf on
 * the portable path, FMA instructions on the SIMD paths).  A chain starts
 * at +0.0 and is therefore never -0.0, so adding a +-0.0 product (a padded
 * tap, a zero row of a tile's padding) never changes it: skipped and
 * zero-filled taps give the same bits.
 *
 * Scratch: every kernel's scratch is bounded by about 1.5 MiB whatever the
 * layer and batch sizes (bands of pixels, blocks of output channels and of
 * weight panels; never proportional to n; the float kernels add about
 * 0.25 MiB per extra thread), allocated outside parallel regions through
 * skbnn_scratch_alloc (the allocator installed with skbnn_set_allocator:
 * the extension installs Python's raw allocator, so tracemalloc sees it).
 * Threads: each output element is owned by one thread (the float kernels
 * give each thread whole bands of pixels, or whole tiles of output
 * channels for the weight gradient, and synchronise only after building a
 * shared panel).
 */
#include "bnn_kernels.h"
#include "kernel_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* scratch target per chunk of conv2d_bits: about 1 MiB stays in L2 */
#define CHUNK_BYTES ((size_t)1 << 20)

/* ------------------------------------------------------------------------ */
/* scratch                                                                   */
/* ------------------------------------------------------------------------ */
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
    uint8_t *p = (uint8_t *)skbnn_scratch_alloc((bytes ? bytes : 1) + 64);
    if (!p) {
        s->failed = 1;
        return NULL;
    }
    s->base[s->n++] = p;
    return p + (64 - ((uintptr_t)p & 63u)) % 64;
}

static void release_all(scratch_t *s)
{
    for (int i = 0; i < s->n; i++) skbnn_scratch_free(s->base[i]);
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

/* Classes of equal tap intervals along one axis: coordinate t (0 <= t <
 * count) uses the kernel offsets [max(0, a0 + step t), min(k - 1, b0 + step
 * t)]; cls[t] gets its class, lo / hi the class intervals.  Returns the
 * number of classes (at most 2k + 1). */
static size_t interval_classes(size_t count, long step, long a0, long b0, size_t k, int *cls,
                               int *lo, int *hi)
{
    size_t nc = 0;
    for (size_t t = 0; t < count; t++) {
        const long l = a0 + step * (long)t, h = b0 + step * (long)t;
        const int a = (int)(l > 0 ? l : 0), b = (int)(h < (long)k - 1 ? h : (long)k - 1);
        size_t c = 0;
        while (c < nc && !(lo[c] == a && hi[c] == b)) c++;
        if (c == nc) {
            lo[nc] = a;
            hi[nc] = b;
            nc++;
        }
        cls[t] = (int)c;
    }
    return nc;
}

/* Output coordinate o reads the input rows o - pad + [0, k), in bounds for
 * the offsets [pad - o, nin - 1 + pad - o]. */
static size_t axis_classes(size_t nout, size_t nin, size_t k, size_t pad, int *cls, int *lo,
                           int *hi)
{
    return interval_classes(nout, -1, (long)pad, (long)nin - 1 + (long)pad, k, cls, lo, hi);
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
    /* blocks of output channels: skbnn_bgemm copies its right operand into
     * panels, so at most about 512 KiB of weights go to one call */
    size_t ob = ((size_t)512 << 10) / (g.wk * sizeof(uint64_t));
    ob = ob >= Cout ? Cout : max_z(64, ob - ob % 64);
    const int direct = !out16 && ob == Cout; /* bgemm writes out's rows */
    const size_t CH = chunk_rows(g.wk * 8 + (direct ? 0 : ob * 4), rows);
    uint64_t *A = (uint64_t *)take(&sc, CH * g.wk * sizeof(uint64_t));
    int32_t *Zs = direct ? NULL : (int32_t *)take(&sc, CH * ob * sizeof(int32_t));
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
        for (size_t o0 = 0; o0 < Cout; o0 += ob) {
            const size_t nb = min_z(ob, Cout - o0);
            int32_t *Z = direct ? (int32_t *)out + r0 * Cout : Zs;
            if (skbnn_bgemm(A, m, Wp + o0 * g.wk, nb, g.wk, (int64_t)g.KK, Z, n_threads))
                goto oom;
            nt = team((double)m * (double)nb * 2.0, n_threads);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
            for (long i = 0; i < (long)m; i++) {
                const size_t r = r0 + (size_t)i, p = r % HW;
                const size_t cl = pix_class(&b, p / g.Wo, p % g.Wo);
                int32_t *z = Z + (size_t)i * nb;
                if (b.noob[cl]) {
                    const int32_t *cv = corr + cl * Cout + o0;
                    for (size_t o = 0; o < nb; o++) z[o] -= cv[o];
                }
                if (out16) {
                    int16_t *d = (int16_t *)out + r * Cout + o0;
                    for (size_t o = 0; o < nb; o++) d[o] = (int16_t)z[o];
                } else if (!direct) {
                    memcpy((int32_t *)out + r * Cout + o0, z, nb * sizeof(int32_t));
                }
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
/* float engine: register-blocked micro-kernels                              */
/* ------------------------------------------------------------------------ */
#define FMR 6                            /* rows of a micro-tile */
#define MAXSEG 16                        /* segments (taps) per micro-kernel call */
#define BAND_BYTES ((size_t)1 << 20)     /* a band's accumulators, rows and index */
#define BPANEL_BYTES ((size_t)256 << 10) /* one block of a +-1 weight panel */
#define BALL_BYTES ((size_t)640 << 10)   /* a whole +-1 panel, built once per call */
#define NB_MAX 512                       /* columns of one panel block */
#define WG_ACC_BYTES ((size_t)640 << 10) /* weight gradient: accumulators of a block */
#define WG_G_BYTES ((size_t)512 << 10)   /* weight gradient: G's chunk transposed */
#define WG_JB_MAX 256                    /* weight gradient: columns j of a block */

/* A segment: kc consecutive terms of the chains of the FMR rows of a tile;
 * term kk adds a[i][kk * as] * b[kk * ldb + j] to element (i, j). */
typedef struct {
    const float *a[FMR];
    const float *b;
    size_t kc;
} fseg;

/* C[i][j] (an FMR x NR tile, rows ldc apart) = (load ? C[i][j] : +0.0) plus
 * the terms of the segments, segment after segment, each in order kk. */
typedef void (*fmk_fn)(const fseg *seg, int nseg, size_t as, size_t ldb, float *C, size_t ldc,
                       int load);

/* a K-block of the input gradient (see there) */
typedef struct {
    size_t t0, ntap, o0, olen;
} kblock;

typedef void (*dxpack_fn)(const uint64_t *, size_t, size_t, size_t, const kblock *, size_t,
                          size_t, size_t, float *);
typedef void (*wgrow_fn)(const geom *, const void *, int, size_t, size_t, size_t, float *);
typedef void (*gtpack_fn)(const void *, int, size_t, size_t, size_t, size_t, size_t, size_t,
                          size_t, float *);

/* one path's micro-kernel and the builders of its operands (the builders
 * write the same floats on every path, only faster on the SIMD ones) */
typedef struct {
    fmk_fn mk;
    size_t nr;        /* NR: columns of a tile */
    dxpack_fn dxpack; /* +-1 panel blocks of the input gradient */
    wgrow_fn wgrow;   /* im2col rows of the weight gradient as floats */
    gtpack_fn gtpack; /* G's chunks transposed, for the weight gradient */
} fengine;

static inline size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

/* Portable tiles, NR = 16.  With +-1 (or 0) factors every product is exact:
 * a multiply and an add round once, like the fused instruction. */
static void mk_portable(const fseg *seg, int nseg, size_t as, size_t ldb, float *C, size_t ldc,
                        int load)
{
    float acc[FMR][16];
    for (int i = 0; i < FMR; i++)
        for (int j = 0; j < 16; j++) acc[i][j] = load ? C[(size_t)i * ldc + (size_t)j] : 0.0f;
    for (int s = 0; s < nseg; s++) {
        const float *b = seg[s].b;
        for (size_t kk = 0, off = 0; kk < seg[s].kc; kk++, off += as, b += ldb)
            for (int i = 0; i < FMR; i++) {
                const float a = seg[s].a[i][off];
                for (int j = 0; j < 16; j++) acc[i][j] = acc[i][j] + a * b[j];
            }
    }
    for (int i = 0; i < FMR; i++)
        for (int j = 0; j < 16; j++) C[(size_t)i * ldc + (size_t)j] = acc[i][j];
}

/* two real factors: one fused multiply-add per term (fmaf, correctly
 * rounded: the same bits as the FMA instructions of the SIMD paths) */
static void mk_portable_fma(const fseg *seg, int nseg, size_t as, size_t ldb, float *C,
                            size_t ldc, int load)
{
    float acc[FMR][16];
    for (int i = 0; i < FMR; i++)
        for (int j = 0; j < 16; j++) acc[i][j] = load ? C[(size_t)i * ldc + (size_t)j] : 0.0f;
    for (int s = 0; s < nseg; s++) {
        const float *b = seg[s].b;
        for (size_t kk = 0, off = 0; kk < seg[s].kc; kk++, off += as, b += ldb)
            for (int i = 0; i < FMR; i++) {
                const float a = seg[s].a[i][off];
                for (int j = 0; j < 16; j++) acc[i][j] = fmaf(a, b[j], acc[i][j]);
            }
    }
    for (int i = 0; i < FMR; i++)
        for (int j = 0; j < 16; j++) C[(size_t)i * ldc + (size_t)j] = acc[i][j];
}

#if SKBNN_X86
/* SIMD tiles: FMR rows x 2 vectors (NR = 2 VW), 12 accumulators, one fused
 * multiply-add per term and element.  The AVX2 and AVX-512 kernels are the
 * same text (these macros) on vectors of 8 and 16 floats. */
#define FMK_STEP(VT, VW, LD, BC, FMADD, off)                                                 \
    do {                                                                                     \
        const VT b0 = LD(b), b1 = LD(b + VW);                                                \
        VT a = BC(a0 + (off));                                                               \
        c00 = FMADD(a, b0, c00), c01 = FMADD(a, b1, c01);                                    \
        a = BC(a1 + (off));                                                                  \
        c10 = FMADD(a, b0, c10), c11 = FMADD(a, b1, c11);                                    \
        a = BC(a2 + (off));                                                                  \
        c20 = FMADD(a, b0, c20), c21 = FMADD(a, b1, c21);                                    \
        a = BC(a3 + (off));                                                                  \
        c30 = FMADD(a, b0, c30), c31 = FMADD(a, b1, c31);                                    \
        a = BC(a4 + (off));                                                                  \
        c40 = FMADD(a, b0, c40), c41 = FMADD(a, b1, c41);                                    \
        a = BC(a5 + (off));                                                                  \
        c50 = FMADD(a, b0, c50), c51 = FMADD(a, b1, c51);                                    \
    } while (0)

#define FMK_DEFINE(NAME, TGT, VT, VW, LD, ST, ZERO, BC, FMADD)                                \
    TGT static void NAME(const fseg *seg, int nseg, size_t as, size_t ldb, float *C,         \
                         size_t ldc, int load)                                               \
    {                                                                                        \
        VT c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;                       \
        if (load) {                                                                          \
            c00 = LD(C), c01 = LD(C + VW);                                                   \
            c10 = LD(C + ldc), c11 = LD(C + ldc + VW);                                       \
            c20 = LD(C + 2 * ldc), c21 = LD(C + 2 * ldc + VW);                               \
            c30 = LD(C + 3 * ldc), c31 = LD(C + 3 * ldc + VW);                               \
            c40 = LD(C + 4 * ldc), c41 = LD(C + 4 * ldc + VW);                               \
            c50 = LD(C + 5 * ldc), c51 = LD(C + 5 * ldc + VW);                               \
        } else {                                                                             \
            c00 = c01 = c10 = c11 = c20 = c21 = ZERO();                                      \
            c30 = c31 = c40 = c41 = c50 = c51 = ZERO();                                      \
        }                                                                                    \
        for (int s = 0; s < nseg; s++) {                                                     \
            const float *a0 = seg[s].a[0], *a1 = seg[s].a[1], *a2 = seg[s].a[2];             \
            const float *a3 = seg[s].a[3], *a4 = seg[s].a[4], *a5 = seg[s].a[5];             \
            const float *b = seg[s].b;                                                       \
            const size_t kc = seg[s].kc;                                                     \
            if (as == 1) { /* one index for the six rows */                                 \
                for (size_t kk = 0; kk < kc; kk++, b += ldb)                                 \
                    FMK_STEP(VT, VW, LD, BC, FMADD, kk);                                     \
            } else {                                                                         \
                size_t off = 0;                                                              \
                for (size_t kk = 0; kk < kc; kk++, off += as, b += ldb)                      \
                    FMK_STEP(VT, VW, LD, BC, FMADD, off);                                    \
            }                                                                                \
        }                                                                                    \
        ST(C, c00), ST(C + VW, c01);                                                         \
        ST(C + ldc, c10), ST(C + ldc + VW, c11);                                             \
        ST(C + 2 * ldc, c20), ST(C + 2 * ldc + VW, c21);                                     \
        ST(C + 3 * ldc, c30), ST(C + 3 * ldc + VW, c31);                                     \
        ST(C + 4 * ldc, c40), ST(C + 4 * ldc + VW, c41);                                     \
        ST(C + 5 * ldc, c50), ST(C + 5 * ldc + VW, c51);                                     \
    }

#define T_AVX2 __attribute__((target("avx2")))
#define T_AVX2FMA __attribute__((target("avx2,fma")))
#define T_AVX2F16 __attribute__((target("avx2,f16c")))
#define T_AVX512F __attribute__((target("avx512f")))
#define BC512(p) _mm512_set1_ps(*(p))
FMK_DEFINE(mk_avx2, T_AVX2FMA, __m256, 8, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_setzero_ps,
           _mm256_broadcast_ss, _mm256_fmadd_ps)
FMK_DEFINE(mk_avx512, T_AVX512F, __m512, 16, _mm512_loadu_ps, _mm512_storeu_ps,
           _mm512_setzero_ps, BC512, _mm512_fmadd_ps)

static int cpu_fma(void)
{
#if defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("fma") != 0;
#else
    return 0;
#endif
}
#endif

/* ------------------------------------------------------------------------ */
/* +-1 floats from bits                                                      */
/* ------------------------------------------------------------------------ */
#define PM_(v, i) ((((v) >> (i)) & 1) ? 1.0f : -1.0f)
#define PM8(v) {PM_(v, 0), PM_(v, 1), PM_(v, 2), PM_(v, 3), PM_(v, 4), PM_(v, 5), PM_(v, 6), PM_(v, 7)}
#define PM8x8(h)                                                                             \
    PM8(8 * (h)), PM8(8 * (h) + 1), PM8(8 * (h) + 2), PM8(8 * (h) + 3), PM8(8 * (h) + 4),    \
        PM8(8 * (h) + 5), PM8(8 * (h) + 6), PM8(8 * (h) + 7)
/* PM_LUT[v][l] = +1.0 where bit l of v is 1, else -1.0 (8 KiB) */
static const float PM_LUT[256][8] = {
    PM8x8(0),  PM8x8(1),  PM8x8(2),  PM8x8(3),  PM8x8(4),  PM8x8(5),  PM8x8(6),  PM8x8(7),
    PM8x8(8),  PM8x8(9),  PM8x8(10), PM8x8(11), PM8x8(12), PM8x8(13), PM8x8(14), PM8x8(15),
    PM8x8(16), PM8x8(17), PM8x8(18), PM8x8(19), PM8x8(20), PM8x8(21), PM8x8(22), PM8x8(23),
    PM8x8(24), PM8x8(25), PM8x8(26), PM8x8(27), PM8x8(28), PM8x8(29), PM8x8(30), PM8x8(31)};

/* bits [off, off + nb) of a packed row (nb in 0..64), bit off first */
static inline uint64_t get_bits(const uint64_t *row, size_t off, size_t nb)
{
    if (nb == 0) return 0;
    const size_t w = off >> 6, sh = off & 63u;
    uint64_t v = row[w] >> sh;
    if (sh && sh + nb > 64) v |= row[w + 1] << (64u - sh);
    return v & tail_mask(nb);
}

/* 8 floats: +1.0 where bit l of byte is 1, -1.0 where it is 0 */
static inline void expand8_portable(unsigned byte, float *dst)
{
    memcpy(dst, PM_LUT[byte & 0xffu], 8 * sizeof(float));
}

#if SKBNN_X86
T_AVX2 static inline void expand8_avx2(unsigned byte, float *dst)
{
    _mm256_storeu_ps(dst, _mm256_loadu_ps(PM_LUT[byte & 0xffu]));
}
#endif

/* dst[0..len): +1.0 where the bit is 1, -1.0 where it is 0 for the first nv
 * entries, 0.0 after (nv <= len <= 64) */
#define EXPAND_RUN_DEFINE(NAME, TGT, EXPAND8)                                                 \
    TGT static inline void NAME(uint64_t bits, size_t nv, size_t len, float *dst)            \
    {                                                                                        \
        size_t l = 0;                                                                        \
        for (; l + 8 <= nv; l += 8) EXPAND8((unsigned)(bits >> l) & 0xffu, dst + l);         \
        for (; l < nv; l++) dst[l] = ((bits >> l) & 1u) ? 1.0f : -1.0f;                      \
        for (; l < len; l++) dst[l] = 0.0f;                                                  \
    }
#define T_NONE
EXPAND_RUN_DEFINE(expand_run_portable, T_NONE, expand8_portable)
#if SKBNN_X86
EXPAND_RUN_DEFINE(expand_run_avx2, T_AVX2, expand8_avx2)
#endif

/* ------------------------------------------------------------------------ */
/* operand builders                                                          */
/* ------------------------------------------------------------------------ */
/* Input gradient: panel block of K-block b (terms (t, o), t in [t0, t0 +
 * ntap), o in [o0, o0 + olen)), column tiles [q0, q1), tile q at (q - qoff):
 * B[(q - qoff)][kk][l] = w[o] bit t*C + q*NR + l as +-1.0 (0.0 past C).
 * Tile by tile: contiguous stores, the block's weight rows stay in L1. */
#define DX_PACK_DEFINE(NAME, TGT, RUN)                                                        \
    TGT static void NAME(const uint64_t *Wp, size_t wk, size_t C, size_t nr, const kblock *b, \
                         size_t q0, size_t q1, size_t qoff, float *B)                         \
    {                                                                                        \
        const size_t kl = b->ntap * b->olen;                                                 \
        for (size_t q = q0; q < q1; q++) {                                                   \
            const size_t c0 = q * nr, nv = c0 < C ? min_z(nr, C - c0) : 0;                   \
            float *d = B + (q - qoff) * kl * nr;                                             \
            for (size_t tt = 0; tt < b->ntap; tt++) {                                        \
                const size_t off = (b->t0 + tt) * C + c0;                                    \
                const uint64_t *row = Wp + b->o0 * wk;                                       \
                for (size_t oo = 0; oo < b->olen; oo++, row += wk, d += nr)                  \
                    RUN(get_bits(row, off, nv), nv, nr, d);                                  \
            }                                                                                \
        }                                                                                    \
    }
DX_PACK_DEFINE(dx_pack_portable, T_NONE, expand_run_portable)
#if SKBNN_X86
DX_PACK_DEFINE(dx_pack_avx2, T_AVX2, expand_run_avx2)
#endif

/* short runs (a few channels) copied inline, long ones by memcpy */
static inline void copy_f(float *d, const float *src, size_t n)
{
    if (n > 32) {
        memcpy(d, src, n * sizeof(float));
        return;
    }
    for (size_t i = 0; i < n; i++) d[i] = src[i];
}

static inline void zero_f(float *d, size_t n)
{
    for (size_t i = 0; i < n; i++) d[i] = 0.0f;
}

/* float im2col row of output pixel (s, oy, ox): tap t's C values at t*C,
 * padded taps 0.0, zeros from KK to ld */
static void im2col_f(const float *X, const geom *g, size_t s, size_t oy, size_t ox, float *dst,
                     size_t ld)
{
    const size_t k = g->k, C = g->C;
    const long pad = (long)g->pad;
    for (size_t ky = 0; ky < k; ky++) {
        const long iy = (long)oy + (long)ky - pad;
        float *d = dst + ky * k * C;
        const long ix0 = (long)ox - pad;
        if (iy < 0 || iy >= (long)g->H) {
            zero_f(d, k * C);
            continue;
        }
        const float *row = X + ((s * g->H + (size_t)iy) * g->W) * C;
        if (ix0 >= 0 && ix0 + (long)k <= (long)g->W) {
            copy_f(d, row + (size_t)ix0 * C, k * C);
            continue;
        }
        for (size_t kx = 0; kx < k; kx++) {
            const long ix = ix0 + (long)kx;
            if (ix < 0 || ix >= (long)g->W) zero_f(d + kx * C, C);
            else copy_f(d + kx * C, row + (size_t)ix * C, C);
        }
    }
    zero_f(dst + g->KK, ld - g->KK);
}

/* Weight gradient: entries [j0, j0 + jw) of output row r's im2col row as
 * floats (+-1.0 from bits or the float32 input, 0.0 on padded taps and past
 * K) */
#define WG_ROW_DEFINE(NAME, TGT, RUN)                                                         \
    TGT static void NAME(const geom *g, const void *X, int x_bits, size_t r, size_t j0,       \
                         size_t jw, float *dst)                                              \
    {                                                                                        \
        const size_t HWo = g->Ho * g->Wo, s = r / HWo, p = r % HWo;                          \
        const size_t oy = p / g->Wo, ox = p % g->Wo, C = g->C, KK = g->KK, k = g->k;         \
        if (!x_bits && j0 == 0 && jw >= KK) { /* the whole row */                            \
            im2col_f((const float *)X, g, s, oy, ox, dst, jw);                               \
            return;                                                                          \
        }                                                                                    \
        size_t jj = 0;                                                                       \
        while (jj < jw) {                                                                    \
            const size_t j = j0 + jj;                                                        \
            if (j >= KK) {                                                                   \
                zero_f(dst + jj, jw - jj);                                                   \
                break;                                                                       \
            }                                                                                \
            const size_t t = j / C, c = j % C, len = min_z(C - c, jw - jj);                  \
            const long iy = (long)oy + (long)(t / k) - (long)g->pad;                         \
            const long ix = (long)ox + (long)(t % k) - (long)g->pad;                         \
            if (iy < 0 || iy >= (long)g->H || ix < 0 || ix >= (long)g->W) {                  \
                zero_f(dst + jj, len);                                                       \
            } else {                                                                         \
                const size_t row = (s * g->H + (size_t)iy) * g->W + (size_t)ix;              \
                if (x_bits) {                                                                \
                    const uint64_t *xr = (const uint64_t *)X + row * g->wc;                  \
                    for (size_t d = 0; d < len; d += 64) {                                   \
                        const size_t nb = min_z(64, len - d);                                \
                        RUN(get_bits(xr, c + d, nb), nb, nb, dst + jj + d);                  \
                    }                                                                        \
                } else {                                                                     \
                    copy_f(dst + jj, (const float *)X + row * C + c, len);                   \
                }                                                                            \
            }                                                                                \
            jj += len;                                                                       \
        }                                                                                    \
    }
WG_ROW_DEFINE(wg_row_portable, T_NONE, expand_run_portable)
#if SKBNN_X86
WG_ROW_DEFINE(wg_row_avx2, T_AVX2, expand_run_avx2)
#endif

/* Weight gradient: Gt[o * ldt + rr] = G[(r0 + rr) * Cout + o] as float32 for
 * o in [oa, ob), rr < m: the chunk's G transposed, so that a tile's FMR
 * channels are FMR unit-stride streams */
static inline float g_at(const void *G, int g_half, size_t i)
{
    return g_half ? skbnn_h2f_exact(((const uint16_t *)G)[i]) : ((const float *)G)[i];
}

static void gt_pack_portable(const void *G, int g_half, size_t r0, size_t rr0, size_t m,
                             size_t Cout, size_t oa, size_t ob, size_t ldt, float *Gt)
{
    for (size_t rr = rr0; rr < m; rr++)
        for (size_t o = oa; o < ob; o++) Gt[o * ldt + rr] = g_at(G, g_half, (r0 + rr) * Cout + o);
}

#if SKBNN_X86
/* 8 x 8 blocks: 8 rows of 8 channels loaded (converted: exact), transposed
 * in registers, stored as 8 runs of 8 rows; ragged edges portable */
T_AVX2F16 static void gt_pack_avx2(const void *G, int g_half, size_t r0, size_t rr0, size_t m,
                                   size_t Cout, size_t oa, size_t ob, size_t ldt, float *Gt)
{
    size_t o0 = oa;
    for (; o0 + 8 <= ob; o0 += 8) {
        size_t rr = rr0;
        for (; rr + 8 <= m; rr += 8) {
            __m256 v[8], t[8];
            for (int i = 0; i < 8; i++) {
                const size_t at = (r0 + rr + (size_t)i) * Cout + o0;
                v[i] = g_half ? _mm256_cvtph_ps(_mm_loadu_si128(
                                    (const __m128i *)((const uint16_t *)G + at)))
                              : _mm256_loadu_ps((const float *)G + at);
            }
            for (int i = 0; i < 8; i += 2) {
                t[i] = _mm256_unpacklo_ps(v[i], v[i + 1]);
                t[i + 1] = _mm256_unpackhi_ps(v[i], v[i + 1]);
            }
            for (int i = 0; i < 8; i += 4) {
                v[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
                v[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
                v[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
                v[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
            }
            for (int i = 0; i < 4; i++) {
                t[i] = _mm256_permute2f128_ps(v[i], v[i + 4], 0x20);
                t[i + 4] = _mm256_permute2f128_ps(v[i], v[i + 4], 0x31);
            }
            for (int j = 0; j < 8; j++) /* t[j]: channel o0 + j of the 8 rows */
                _mm256_storeu_ps(Gt + (o0 + (size_t)j) * ldt + rr, t[j]);
        }
        gt_pack_portable(G, g_half, r0, rr, m, Cout, o0, o0 + 8, ldt, Gt);
    }
    gt_pack_portable(G, g_half, r0, rr0, m, Cout, o0, ob, ldt, Gt);
}
#endif

/* The micro-kernel and builders of the selected path; need_fma: the factors
 * are both real (the portable path then needs fmaf). */
static fengine pick_engine(int need_fma)
{
    fengine e;
    e.mk = need_fma ? mk_portable_fma : mk_portable;
    e.nr = 16;
    e.dxpack = dx_pack_portable;
    e.wgrow = wg_row_portable;
    e.gtpack = gt_pack_portable;
#if SKBNN_X86
    const int isa = skbnn_get_isa();
    if (isa >= SKBNN_ISA_AVX2) { /* the same floats, faster */
        e.dxpack = dx_pack_avx2;
        e.wgrow = wg_row_avx2;
        if (skbnn_use_f16c()) e.gtpack = gt_pack_avx2;
    }
    if (isa == SKBNN_ISA_AVX512) {
        e.mk = mk_avx512;
        e.nr = 32;
    } else if (isa == SKBNN_ISA_AVX2 && cpu_fma()) {
        e.mk = mk_avx2;
    }
#endif
    return e;
}

/* threads for a float kernel (1 without OpenMP: no per-thread scratch) */
static inline int fteam(double work, int n_threads)
{
#ifdef _OPENMP
    return team(work, n_threads);
#else
    (void)work;
    (void)n_threads;
    return 1;
#endif
}

/* this thread's index and the team's size */
static inline void thread_of(size_t *t, size_t *nt)
{
#ifdef _OPENMP
    *t = (size_t)omp_get_thread_num();
    *nt = (size_t)omp_get_num_threads();
#else
    *t = 0;
    *nt = 1;
#endif
}

/* this thread's share [lo, hi) of total items (static, contiguous) */
static inline void my_range(size_t total, size_t *lo, size_t *hi)
{
    size_t t, nt;
    thread_of(&t, &nt);
    *lo = total * t / nt;
    *hi = total * (t + 1) / nt;
}

/* ------------------------------------------------------------------------ */
/* real-input convolution                                                    */
/* ------------------------------------------------------------------------ */
/* out[r, o] = one float32 chain per entry from +0.0 over j = (ky, kx, c)
 * ascending of x_j * w[o, j] (x_j: output pixel r's im2col row, 0.0 on
 * padded taps; exact products).  Bands of output rows: im2col A (rows x K)
 * and accumulators (rows x ldc, or out's rows themselves for whole float32
 * tiles); the panel P[j][o] = w[o] bit j as +-1.0 (0.0 for the padding
 * columns o >= Cout) in blocks of K-range x NB_MAX columns, tile-major
 * ([column tile][j][NR]), built once per call when small.  Threads own
 * bands (each its own band scratch, sized so that the total stays about
 * BAND_BYTES). */
/* row jj (weight bit j) of a panel block of kl rows, column tiles [q0, q1):
 * tile q at B + (q - qoff)*kl*NR */
static void real_pack(const uint64_t *Wp, size_t wk, size_t Cout, size_t nr, size_t j, size_t kl,
                      size_t jj, size_t q0, size_t q1, size_t qoff, float *B)
{
    const size_t w = j >> 6, sh = j & 63u;
    for (size_t q = q0; q < q1; q++) {
        float *d = B + ((q - qoff) * kl + jj) * nr;
        for (size_t l = 0; l < nr; l++) {
            const size_t o = q * nr + l;
            d[l] = o < Cout ? (((Wp[o * wk + w] >> sh) & 1u) ? 1.0f : -1.0f) : 0.0f;
        }
    }
}

int skbnn_conv2d_real(const float *X, size_t n, size_t H, size_t W, size_t C,
                      const uint64_t *Wp, size_t Cout, size_t k, size_t pad, void *out,
                      int out_half, int n_threads)
{
    const geom g = make_geom(n, H, W, C, k, pad);
    const size_t rows = n * g.Ho * g.Wo, KK = g.KK, HW = g.Ho * g.Wo;
    if (rows == 0 || Cout == 0) return 0;
    const fengine e = pick_engine(0);
    const size_t nr = e.nr, ldc = round_up(Cout, nr), nq = ldc / nr;
    const size_t ncb = min_z(ldc, NB_MAX), qcb = ncb / nr; /* columns per panel block */
    const size_t kcb = min_z(KK, max_z(64, BPANEL_BYTES / (ncb * sizeof(float))));
    const size_t nkb = (KK + kcb - 1) / kcb;
    const int ball = KK * ldc * sizeof(float) <= BALL_BYTES;
    const int direct = !out_half && ldc == Cout; /* whole tiles written in place */
    int nt = fteam((double)rows * (double)KK * (double)Cout, n_threads);
    size_t P = BAND_BYTES / (size_t)nt / ((KK + ldc) * sizeof(float)); /* rows per band */
    P = max_z(FMR, P - P % FMR);
    P = min_z(P, round_up(rows, FMR));
    const size_t nband = (rows + P - 1) / P;
    nt = (int)min_z((size_t)nt, nband);
    const size_t bsz = ball ? 0 : kcb * ncb; /* a thread's own panel block */
    scratch_t sc = {{0}, 0, 0};
    float *A = (float *)take(&sc, (size_t)nt * P * KK * sizeof(float));
    float *acc = (float *)take(&sc, (size_t)nt * P * ldc * sizeof(float));
    float *B = (float *)take(&sc, (ball ? KK * ldc : (size_t)nt * bsz) * sizeof(float));
    if (sc.failed) {
        release_all(&sc);
        return -1;
    }
    (void)skbnn_use_f16c(); /* settle the converter before threads start */
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        size_t tid, nth, ba, bb;
        thread_of(&tid, &nth);
        if (ball)
            for (size_t kb = 0; kb < nkb; kb++) {
                const size_t ks = kb * kcb, kl = min_z(kcb, KK - ks);
#pragma omp for schedule(static)
                for (long jj = 0; jj < (long)kl; jj++)
                    real_pack(Wp, g.wk, Cout, nr, ks + (size_t)jj, kl, (size_t)jj, 0, nq, 0,
                              B + ks * ldc);
            }
        float *At = A + tid * P * KK, *acct = acc + tid * P * ldc, *Bt = B + tid * bsz;
        my_range(nband, &ba, &bb); /* this thread's bands of rows */
        for (size_t band = ba; band < bb; band++) {
            const size_t r0 = band * P, m = min_z(P, rows - r0), npt = (m + FMR - 1) / FMR;
            for (size_t i = 0; i < npt * FMR; i++) {
                float *a = At + i * KK;
                if (i >= m) {
                    zero_f(a, KK);
                    continue;
                }
                const size_t r = r0 + i, sm = r / HW, p = r % HW;
                im2col_f(X, &g, sm, p / g.Wo, p % g.Wo, a, KK);
            }
            for (size_t kb = 0; kb < nkb; kb++) {
                const size_t ks = kb * kcb, kl = min_z(kcb, KK - ks);
                for (size_t q0 = 0; q0 < nq; q0 += qcb) {
                    const size_t q1 = min_z(nq, q0 + qcb);
                    const float *Bb = B + ks * ldc;
                    size_t qoff = 0;
                    if (!ball) {
                        for (size_t jj = 0; jj < kl; jj++)
                            real_pack(Wp, g.wk, Cout, nr, ks + jj, kl, jj, q0, q1, q0, Bt);
                        Bb = Bt;
                        qoff = q0;
                    }
                    for (size_t pt = 0; pt < npt; pt++) {
                        fseg sg;
                        for (int i = 0; i < FMR; i++)
                            sg.a[i] = At + (pt * FMR + (size_t)i) * KK + ks;
                        sg.b = Bb + (q0 - qoff) * kl * nr;
                        sg.kc = kl;
                        const int here = direct && (pt + 1) * FMR <= m;
                        float *ct = here ? (float *)out + (r0 + pt * FMR) * Cout
                                         : acct + pt * FMR * ldc;
                        const size_t ldt = here ? Cout : ldc;
                        for (size_t q = q0; q < q1; q++, sg.b += kl * nr)
                            e.mk(&sg, 1, 1, nr, ct + q * nr, ldt, kb > 0);
                    }
                }
            }
            for (size_t i = direct ? m - m % FMR : 0; i < m; i++) { /* the rest of the rows */
                const float *a = acct + i * ldc;
                const size_t r = r0 + i;
                if (out_half) skbnn_f32_to_f16(a, (uint16_t *)out + r * Cout, Cout);
                else memcpy((float *)out + r * Cout, a, Cout * sizeof(float));
            }
        }
    }
    release_all(&sc);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* gradient with respect to the input                                        */
/* ------------------------------------------------------------------------ */
/* dX[(s,iy,ix), c] = one float32 chain from +0.0 over the taps (ky, kx) in
 * row-major order and, within a tap, o = 0 .. Cout-1, of the exact products
 * G[(s, iy-ky+pad, ix-kx+pad), o] * w[o, (ky,kx,c)]; a tap whose output
 * pixel lies outside the output map contributes nothing.  Then the mask,
 * then the store (float16: rounded to nearest even once).
 *
 * Bands of dX pixels (whole samples, or bands of rows of one sample) with
 * float32 accumulators (pixels x ldc); the band's pixels are sorted by
 * border class (the set of taps that reach them), so that the FMR pixels of
 * a tile mostly share their taps and a tap none of them has is skipped; an
 * index gives each (pixel, tap)'s G row (-1: none).  G's rows are read in
 * place (float32) or converted once per band (float16).  The chains' terms
 * (t, o) are cut into K-blocks (whole taps, or ranges of o of one tap),
 * each with a +-1 panel block P[(t, o)][c] = w[o] bit t*C + c ([column
 * tile][term][NR], 0.0 past C), built once per call when the whole panel is
 * small (shared), else per band.  Threads own bands (each its own band
 * scratch, sized so that the total stays about BAND_BYTES, and its own
 * panel block when blocks are rebuilt). */
static size_t dx_kblocks(size_t taps, size_t Cout, size_t kcb, kblock *kb)
{
    size_t nb = 0;
    if (Cout >= kcb) { /* ranges of o of one tap, of balanced lengths */
        const size_t nch = (Cout + kcb - 1) / kcb, oc = (Cout + nch - 1) / nch;
        for (size_t t = 0; t < taps; t++)
            for (size_t o0 = 0; o0 < Cout; o0 += oc) {
                if (kb) {
                    kb[nb].t0 = t;
                    kb[nb].ntap = 1;
                    kb[nb].o0 = o0;
                    kb[nb].olen = min_z(oc, Cout - o0);
                }
                nb++;
            }
    } else { /* groups of whole taps */
        const size_t tpb = max_z(1, min_z(MAXSEG, kcb / Cout));
        for (size_t t0 = 0; t0 < taps; t0 += tpb) {
            if (kb) {
                kb[nb].t0 = t0;
                kb[nb].ntap = min_z(tpb, taps - t0);
                kb[nb].o0 = 0;
                kb[nb].olen = Cout;
            }
            nb++;
        }
    }
    return nb;
}

/* Border classes of the input gradient along one axis: input coordinate i
 * receives the kernel offsets [i + pad - (nout - 1), i + pad] (outputs
 * i - ky + pad in range). */
static size_t dx_axis(size_t nin, size_t nout, size_t k, size_t pad, int *cls, int *lo, int *hi)
{
    return interval_classes(nin, 1, (long)pad - ((long)nout - 1), (long)pad, k, cls, lo, hi);
}

int skbnn_conv2d_input_grad(const void *G, int g_half, size_t n, size_t H, size_t W,
                            size_t C, const uint64_t *Wp, size_t Cout, size_t k, size_t pad,
                            void *out, int out_half, const uint64_t *mask, int n_threads)
{
    const geom g = make_geom(n, H, W, C, k, pad);
    const size_t HWin = H * W, HWo = g.Ho * g.Wo, taps = g.taps;
    if (n == 0 || HWin == 0 || C == 0) return 0;
    if (Cout == 0 || HWo == 0) { /* no output pixels or channels: dX = 0 */
        memset(out, 0, n * HWin * C * (out_half ? sizeof(uint16_t) : sizeof(float)));
        return 0;
    }
    const fengine e = pick_engine(0);
    const size_t nr = e.nr, ldc = round_up(C, nr), nq = ldc / nr;
    const size_t ncb = min_z(ldc, NB_MAX), qcb = ncb / nr;
    const size_t kcb = min_z(1024, max_z(64, BPANEL_BYTES / (ncb * sizeof(float))));
    const size_t KT = taps * Cout;
    const int ball = KT * ldc * sizeof(float) <= BALL_BYTES;
    int nt = fteam((double)n * (double)HWo * (double)KT * (double)C, n_threads);
    /* bands: whole samples, or rows of one sample; a thread's band scratch
     * is BAND_BYTES / threads */
    const size_t budget = BAND_BYTES / (size_t)nt;
    const size_t per_pix = ldc * sizeof(float) + taps * sizeof(int32_t) + sizeof(uint32_t);
    const size_t per_grow = g_half ? Cout * sizeof(float) : 0;
    const size_t per_sample = HWin * per_pix + HWo * per_grow;
    size_t S, R;
    if (per_sample <= budget) {
        S = min_z(n, budget / per_sample);
        R = H;
    } else {
        const size_t halo = min_z(budget / 2, (k - 1) * g.Wo * per_grow);
        S = 1;
        R = min_z(H, max_z(1, (budget - halo) / (W * per_pix + g.Wo * per_grow)));
    }
    const size_t nsb = (n + S - 1) / S, nrb = (H + R - 1) / R, nband = nsb * nrb;
    nt = (int)min_z((size_t)nt, nband);
    const size_t Ppad = round_up(S * R * W, FMR);
    const size_t Gmax = R == H ? S * HWo : min_z(g.Ho, R + k - 1) * g.Wo;
    scratch_t sc = {{0}, 0, 0};
    const size_t nkb = dx_kblocks(taps, Cout, kcb, NULL);
    const size_t T = (size_t)nt;
    kblock *kbs = (kblock *)take(&sc, nkb * sizeof(kblock));
    float *acc = (float *)take(&sc, T * Ppad * ldc * sizeof(float));
    int32_t *idx = (int32_t *)take(&sc, T * Ppad * taps * sizeof(int32_t));
    uint32_t *perm = (uint32_t *)take(&sc, T * Ppad * sizeof(uint32_t));
    float *Gf = g_half ? (float *)take(&sc, T * Gmax * Cout * sizeof(float)) : NULL;
    float *zeros = (float *)take(&sc, Cout * sizeof(float));
    const size_t cap = 2 * k + 2;
    int *ycl = (int *)take(&sc, (H + W + 4 * cap) * sizeof(int));
    if (sc.failed) goto oom;
    int *xcl = ycl + H, *ylo = xcl + W, *yhi = ylo + cap, *xlo = yhi + cap, *xhi = xlo + cap;
    const size_t ncy = dx_axis(H, g.Ho, k, pad, ycl, ylo, yhi);
    const size_t ncx = dx_axis(W, g.Wo, k, pad, xcl, xlo, xhi), ncls = ncy * ncx;
    size_t *cstart = (size_t *)take(&sc, T * (ncls + 1) * sizeof(size_t));
    dx_kblocks(taps, Cout, kcb, kbs);
    size_t blk = 0; /* floats of the largest panel block */
    for (size_t b = 0; b < nkb; b++) blk = max_z(blk, kbs[b].ntap * kbs[b].olen * ncb);
    float *B = (float *)take(&sc, (ball ? KT * ldc : T * blk) * sizeof(float));
    if (sc.failed) goto oom;
    memset(zeros, 0, Cout * sizeof(float));
    (void)skbnn_use_f16c();
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        size_t tid, nth, ba, bb;
        thread_of(&tid, &nth);
        if (ball) { /* the whole panel, shared: built together */
#pragma omp for schedule(static)
            for (long bq = 0; bq < (long)(nkb * nq); bq++) {
                const kblock *kb = &kbs[(size_t)bq / nq];
                const size_t q = (size_t)bq % nq, ks = kb->t0 * Cout + kb->o0;
                e.dxpack(Wp, g.wk, C, nr, kb, q, q + 1, 0, B + ks * ldc);
            }
        }
        float *acct = acc + tid * Ppad * ldc, *Gft = Gf ? Gf + tid * Gmax * Cout : NULL;
        float *Bt = ball ? NULL : B + tid * blk;
        int32_t *idxt = idx + tid * Ppad * taps;
        uint32_t *permt = perm + tid * Ppad;
        size_t *cst = cstart + tid * (ncls + 1);
        my_range(nband, &ba, &bb); /* this thread's bands */
        for (size_t band = ba; band < bb; band++) {
            const size_t s0 = band / nrb * S, iy0 = band % nrb * R;
            const size_t Sb = min_z(S, n - s0), iy1 = min_z(H, iy0 + R), nrow = iy1 - iy0;
            const size_t P = Sb * nrow * W, npt = (P + FMR - 1) / FMR;
            const long lo_l = (long)iy0 - (long)(k - 1) + (long)pad;
            const long hi_l = (long)iy1 - 1 + (long)pad;
            const size_t oy_lo = (size_t)(lo_l > 0 ? lo_l : 0);
            const size_t oy_hi = (size_t)(hi_l < (long)g.Ho - 1 ? hi_l : (long)g.Ho - 1);
            const size_t noy = oy_hi - oy_lo + 1; /* >= 1: every input row is reached */
            const size_t grow0 = s0 * HWo + oy_lo * g.Wo, gcnt = Sb * noy * g.Wo;
            const float *gb = (const float *)G + grow0 * Cout;
            if (g_half) {
                skbnn_f16_to_f32((const uint16_t *)G + grow0 * Cout, Gft, gcnt * Cout);
                gb = Gft;
            }
            /* the band's pixels sorted by border class (a stable counting
             * sort): a tile's pixels then mostly share their taps */
            for (size_t c = 0; c <= ncls; c++) cst[c] = 0;
            for (size_t p = 0; p < P; p++) {
                const size_t rem = p % (nrow * W), iy = iy0 + rem / W, ix = rem % W;
                cst[(size_t)ycl[iy] * ncx + (size_t)xcl[ix] + 1]++;
            }
            for (size_t c = 0; c < ncls; c++) cst[c + 1] += cst[c];
            for (size_t p = 0; p < P; p++) {
                const size_t rem = p % (nrow * W), iy = iy0 + rem / W, ix = rem % W;
                permt[cst[(size_t)ycl[iy] * ncx + (size_t)xcl[ix]]++] = (uint32_t)p;
            }
            for (size_t sl = 0; sl < npt * FMR; sl++) {
                int32_t *ix_t = idxt + sl * taps;
                if (sl >= P) {
                    for (size_t t = 0; t < taps; t++) ix_t[t] = -1;
                    continue;
                }
                const size_t p = permt[sl];
                const size_t ls = p / (nrow * W), rem = p % (nrow * W);
                const long iy = (long)(iy0 + rem / W), ix = (long)(rem % W);
                for (size_t ky = 0; ky < k; ky++)
                    for (size_t kx = 0; kx < k; kx++) {
                        const long oy = iy - (long)ky + (long)pad;
                        const long ox = ix - (long)kx + (long)pad;
                        ix_t[ky * k + kx] =
                            oy < 0 || oy >= (long)g.Ho || ox < 0 || ox >= (long)g.Wo
                                ? -1
                                : (int32_t)((ls * noy + (size_t)oy - oy_lo) * g.Wo + (size_t)ox);
                    }
            }
            for (size_t b = 0; b < nkb; b++) {
                const kblock *kb = &kbs[b];
                const size_t kl = kb->ntap * kb->olen, ks = kb->t0 * Cout + kb->o0;
                for (size_t q0 = 0; q0 < nq; q0 += qcb) {
                    const size_t q1 = min_z(nq, q0 + qcb);
                    const float *Bb = B + ks * ldc;
                    size_t qoff = 0;
                    if (!ball) { /* this thread's own copy of the block */
                        e.dxpack(Wp, g.wk, C, nr, kb, q0, q1, q0, Bt);
                        Bb = Bt;
                        qoff = q0;
                    }
                    for (size_t pt = 0; pt < npt; pt++) {
                        fseg sg[MAXSEG];
                        int ns = 0;
                        for (size_t tt = 0; tt < kb->ntap; tt++) {
                            const int32_t *ixp = idxt + pt * FMR * taps + kb->t0 + tt;
                            int any = 0;
                            for (int i = 0; i < FMR; i++) {
                                const int32_t v = ixp[(size_t)i * taps];
                                any |= v >= 0;
                                sg[ns].a[i] = v >= 0 ? gb + (size_t)v * Cout + kb->o0 : zeros;
                            }
                            if (!any) continue; /* +-0.0 terms only: a no-op */
                            sg[ns].b = Bb + (q0 - qoff) * kl * nr + tt * kb->olen * nr;
                            sg[ns].kc = kb->olen;
                            ns++;
                        }
                        float *ct = acct + pt * FMR * ldc;
                        for (size_t q = q0; q < q1; q++) { /* the next column tile */
                            e.mk(sg, ns, 1, nr, ct + q * nr, ldc, b > 0);
                            for (int i = 0; i < ns; i++) sg[i].b += kl * nr;
                        }
                    }
                }
            }
            const size_t rbase = (s0 * H + iy0) * W; /* mask and store */
            for (size_t sl = 0; sl < P; sl++) {
                float *a = acct + sl * ldc;
                const size_t r = rbase + permt[sl];
                if (mask) {
                    const uint64_t *mk = mask + r * g.wc;
                    for (size_t c = 0; c < C; c++)
                        if (!((mk[c >> 6] >> (c & 63u)) & 1u)) a[c] = 0.0f;
                }
                if (out_half) skbnn_f32_to_f16(a, (uint16_t *)out + r * C, C);
                else memcpy((float *)out + r * C, a, C * sizeof(float));
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
/* gradient with respect to the weights                                      */
/* ------------------------------------------------------------------------ */
/* dW[o, j] = one float32 chain from +0.0 over the output rows r = (s, oy, ox)
 * in ascending order of G[r, o] * x[r, j], x[r, j] the im2col entry j =
 * (ky, kx, c) of output pixel r: +-1 from the packed bits (exact products)
 * or the float32 input (one fused multiply-add per term, a single
 * rounding), 0 on padded taps.
 *
 * Blocks of JB columns j (a multiple of 64) with float32 accumulators
 * (Cout x JB, rows padded to a multiple of FMR); chunks of output rows in
 * order: the chunk's im2col rows as floats (row-major, ldb apart) and its G
 * transposed to float32 (Gt, channel-major); tiles of FMR channels o x NR
 * columns j.  At the end of a block its floats are copied to dW and / or
 * its signs packed (dW >= 0 -> 1).  Threads own tiles of channels for the
 * whole call (their accumulators and Gt rows) and expand the im2col rows
 * each for itself: no synchronisation. */
int skbnn_conv2d_weight_grad(const void *G, int g_half, const void *X, int x_bits, size_t n,
                             size_t H, size_t W, size_t C, size_t Cout, size_t k, size_t pad,
                             float *dW, uint64_t *Sbits, int n_threads)
{
    const geom g = make_geom(n, H, W, C, k, pad);
    const size_t HWo = g.Ho * g.Wo, KK = g.KK, rows = n * HWo, wk = g.wk;
    if (Cout == 0 || KK == 0) return 0;
    if (rows == 0) { /* no terms: dW = 0, signs +1 */
        if (dW) memset(dW, 0, Cout * KK * sizeof(float));
        if (Sbits)
            for (size_t o = 0; o < Cout; o++)
                for (size_t w = 0; w < wk; w++)
                    Sbits[o * wk + w] = tail_mask(min_z(64, KK - 64 * w));
        return 0;
    }
    const fengine e = pick_engine(!x_bits);
    const size_t nr = e.nr, Cp = round_up(Cout, FMR), nto = Cp / FMR;
    /* JB <= WG_JB_MAX keeps the chunks of rows long (RC >= ~200) */
    size_t JB = min_z(WG_JB_MAX, WG_ACC_BYTES / (Cp * sizeof(float)));
    JB = min_z(max_z(64, JB - JB % 64), round_up(KK, 64));
    const size_t jbp = round_up(min_z(JB, KK), nr);
    const size_t ldb = jbp + (jbp >= 64 ? 16 : 0); /* off power-of-two strides */
    size_t RC = min_z(BPANEL_BYTES / (ldb * sizeof(float)), WG_G_BYTES / (Cp * sizeof(float)));
    RC = min_z(round_up(rows, 8), min_z(1024, max_z(16, RC - RC % 8)));
    const size_t ldt = RC + 16; /* off power-of-two strides */
    int nt = fteam((double)rows * (double)KK * (double)Cout, n_threads);
    nt = (int)min_z((size_t)nt, nto);
    scratch_t sc = {{0}, 0, 0};
    float *acc = (float *)take(&sc, Cp * JB * sizeof(float));
    float *Bc = (float *)take(&sc, (size_t)nt * RC * ldb * sizeof(float)); /* one per thread */
    float *Gt = (float *)take(&sc, Cp * ldt * sizeof(float));
    if (sc.failed) {
        release_all(&sc);
        return -1;
    }
    memset(Gt, 0, Cp * ldt * sizeof(float)); /* the padding channels stay 0 */
    (void)skbnn_use_f16c();
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        size_t tid, nth, lo, hi;
        thread_of(&tid, &nth);
        my_range(nto, &lo, &hi); /* this thread's channel tiles */
        float *Bt = Bc + tid * RC * ldb;
        const size_t oa = min_z(Cout, lo * FMR), ob = min_z(Cout, hi * FMR);
        if (lo < hi)
            for (size_t j0 = 0; j0 < KK; j0 += JB) {
                const size_t jn = min_z(JB, KK - j0), nqj = (jn + nr - 1) / nr;
                for (size_t r0 = 0; r0 < rows; r0 += RC) {
                    const size_t m = min_z(RC, rows - r0);
                    for (size_t i = 0; i < m; i++)
                        e.wgrow(&g, X, x_bits, r0 + i, j0, nqj * nr, Bt + i * ldb);
                    e.gtpack(G, g_half, r0, 0, m, Cout, oa, ob, ldt, Gt);
                    for (size_t q = 0; q < nqj; q++)
                        for (size_t ot = lo; ot < hi; ot++) {
                            fseg sg;
                            for (int i = 0; i < FMR; i++)
                                sg.a[i] = Gt + (ot * FMR + (size_t)i) * ldt;
                            sg.b = Bt + q * nr;
                            sg.kc = m;
                            e.mk(&sg, 1, 1, ldb, acc + ot * FMR * JB + q * nr, JB, r0 > 0);
                        }
                }
                for (size_t o = oa; o < ob; o++) {
                    const float *a = acc + o * JB;
                    if (dW) memcpy(dW + o * KK + j0, a, jn * sizeof(float));
                    if (Sbits)
                        for (size_t w0 = 0; w0 < jn; w0 += 64) {
                            const size_t nc = min_z(64, jn - w0);
                            uint64_t bits = 0;
                            for (size_t l = 0; l < nc; l++)
                                bits |= (uint64_t)(a[w0 + l] >= 0.0f) << l;
                            Sbits[o * wk + (j0 + w0) / 64] = bits;
                        }
                }
            }
    }
    release_all(&sc);
    return 0;
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

/* The first window position holding the maximum: strict > keeps the first
 * (as floats for float16: -0 ties +0, a NaN never replaces the running
 * maximum).  Branch-free selects; the stored value is the element itself.
 * KEY converts an element to its comparable value. */
#define KEY_ID(e) (e)
#define KEY_F16(e) skbnn_h2f_exact(e)
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
