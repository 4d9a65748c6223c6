/* skbnn bit-packed kernels: plain C prototypes (no intrinsics here).
 *
 * Conventions (shared by every kernel):
 *   - a +/-1 value is one bit: bit 1 = +1, bit 0 = -1; sign(0) = +1;
 *   - vectors are packed little-endian into uint64 words, rows padded to a
 *     multiple of 64 bits with ZERO bits;
 *   - dot(a, w) over the true length K is K - 2 * popcount(a XOR w);
 *   - hidden weights are int16, kept in [-clip, clip] (clip <= 32767);
 *   - every kernel is deterministic and independent of the thread count:
 *     work is split by output rows with a static schedule.
 */
#ifndef SKBNN_BNN_KERNELS_H
#define SKBNN_BNN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

enum {
    SKBNN_ISA_GENERIC = 0,
    SKBNN_ISA_POPCNT = 1,
    SKBNN_ISA_AVX2 = 2,
    SKBNN_ISA_AVX512 = 3,
    SKBNN_N_ISA = 4
};

/* ---- dispatch and configuration ---------------------------------------- */
int skbnn_cpu_supports(int isa);   /* 1 when CPU and OS support the path */
int skbnn_best_isa(void);
int skbnn_set_isa(int isa);        /* 0 on success, -1 if unsupported */
int skbnn_get_isa(void);
int skbnn_openmp_enabled(void);
int skbnn_omp_max_threads(void);

/* ---- packing ------------------------------------------------------------ */
/* Binarise X (n x f, row-major) against thresholds thr (f x b): output bit
 * j*b + k of row i is (X[i,j] > thr[j,k]) if strict, else (X[i,j] >= thr[j,k]).
 * out: n x out_words, tail bits zeroed. */
void skbnn_pack_threshold_f64(const double *X, size_t n, size_t f, const double *thr,
                              size_t b, int strict, uint64_t *out, size_t out_words,
                              int n_threads);
void skbnn_pack_threshold_f32(const float *X, size_t n, size_t f, const double *thr,
                              size_t b, int strict, uint64_t *out, size_t out_words,
                              int n_threads);
void skbnn_pack_threshold_u8(const uint8_t *X, size_t n, size_t f, const double *thr,
                             size_t b, int strict, uint64_t *out, size_t out_words,
                             int n_threads);
void skbnn_pack_threshold_i8(const int8_t *X, size_t n, size_t f, const double *thr,
                             size_t b, int strict, uint64_t *out, size_t out_words,
                             int n_threads);
void skbnn_pack_threshold_i64(const int64_t *X, size_t n, size_t f, const double *thr,
                              size_t b, int strict, uint64_t *out, size_t out_words,
                              int n_threads);
/* The same bits; returns 1 when X holds a NaN or an infinity, 0 when it
 * does not, -1 when this call did not look (portable path, or b > 1): the
 * caller then checks X itself.  One pass over X for both. */
int skbnn_pack_threshold_f64_checked(const double *X, size_t n, size_t f, const double *thr,
                                     size_t b, int strict, uint64_t *out, size_t out_words,
                                     int n_threads);
int skbnn_pack_threshold_f32_checked(const float *X, size_t n, size_t f, const double *thr,
                                     size_t b, int strict, uint64_t *out, size_t out_words,
                                     int n_threads);
/* Already-binary X (n x f): output bit j of row i is X[i,j] > 0; returns the
 * bit set of the values present: 1 = -1, 2 = 0, 4 = +1, 8 = anything else
 * (NaN included), so the caller can refuse non-binary input. */
unsigned skbnn_pack_binary_f64(const double *X, size_t n, size_t f, uint64_t *out,
                               size_t out_words, int n_threads);
unsigned skbnn_pack_binary_f32(const float *X, size_t n, size_t f, uint64_t *out,
                               size_t out_words, int n_threads);
unsigned skbnn_pack_binary_u8(const uint8_t *X, size_t n, size_t f, uint64_t *out,
                              size_t out_words, int n_threads);
unsigned skbnn_pack_binary_i8(const int8_t *X, size_t n, size_t f, uint64_t *out,
                              size_t out_words, int n_threads);
unsigned skbnn_pack_binary_i64(const int64_t *X, size_t n, size_t f, uint64_t *out,
                               size_t out_words, int n_threads);
/* sign bits of an int32 matrix (z >= 0 -> 1), n x k -> n x words */
void skbnn_pack_sign_i32(const int32_t *Z, size_t n, size_t k, uint64_t *out,
                         size_t out_words);
/* sign bits of int16 rows (h >= 0 -> 1) */
void skbnn_pack_sign_i16(const int16_t *H, size_t n, size_t k, uint64_t *out,
                         size_t out_words);
/* bits -> int8 +/-1 */
void skbnn_unpack_pm1(const uint64_t *P, size_t n, size_t words, size_t nbits,
                      int8_t *out);
/* transpose a packed bit matrix: P (n x ceil(k/64)) -> T (k x ceil(n/64)) */
void skbnn_transpose_bits(const uint64_t *P, size_t n, size_t k, uint64_t *T);

/* ---- popcount ----------------------------------------------------------- */
uint64_t skbnn_popcount(const uint64_t *a, size_t nw);

/* ---- binary matrix products --------------------------------------------- */
/* Z[m, j] = K - 2 * popcount(A[m] XOR B[j]); A: M x nw, B: N x nw, Z: M x N */
int skbnn_bgemm(const uint64_t *A, size_t M, const uint64_t *B, size_t N, size_t nw,
                int64_t K, int32_t *Z, int n_threads);
/* fused: S = packed sign(Z) (z >= 0 -> 1), S: M x ceil(N/64), no int matrix */
int skbnn_bgemm_sign(const uint64_t *A, size_t M, const uint64_t *B, size_t N,
                     size_t nw, int64_t K, uint64_t *S, int n_threads);
/* masked (gated) products: Z[m, j] = sum over the bits i set in G[m] of
 * (+1 if A[m]_i == B[j]_i else -1) = popcount(G[m]) - 2 popcount((A[m] ^ B[j]) & G[m]);
 * G: M x nw like A.  The sign form writes bit 1 where Z >= 0 (ties -> +1). */
int skbnn_bgemm_masked(const uint64_t *A, const uint64_t *G, size_t M, const uint64_t *B,
                       size_t N, size_t nw, int32_t *Z, int n_threads);
int skbnn_bgemm_masked_sign(const uint64_t *A, const uint64_t *G, size_t M, const uint64_t *B,
                            size_t N, size_t nw, uint64_t *S, int n_threads);

/* Hidden fields (exact): F[m, j] = sum_i H[j, i] * a_mi with a_mi = +1 where
 * bit i of A[m] is set, else -1.  H: N x K int16 (row j = neuron), A: M x
 * ceil(K/64) packed, F: M x N int32; needs K <= 65536 (no int32 overflow).
 * Returns 0, or -1 on allocation failure. */
int skbnn_hidden_field(const int16_t *H, size_t N, size_t K, const uint64_t *A, size_t M,
                       int32_t *F, int n_threads);

/* ---- CP+R ---------------------------------------------------------------- */
/* Per sample m, per block of g consecutive neurons: the "wrong" neuron with
 * the smallest |z| (ties: lowest index), or -1.  Wrong means
 *   zero_is_wrong: bit(sign z) != target bit         (z = 0 counts as +1)
 *   otherwise    : target * z < 0 strictly.
 * Z: M x K; T: M x ceil(K/64) target bits; active: M flags (NULL = all);
 * out: M x (K/g). */
void skbnn_select_easiest(const int32_t *Z, size_t M, size_t K, const uint64_t *T,
                          const uint8_t *active, size_t g, int zero_is_wrong,
                          int32_t *out, int n_threads);

/* Apply the summed clipped-perceptron steps of a batch, all computed from
 * the pre-update weights: for every selected (m, j):
 *   H[j, :] += 2 * t_mj * a_m          (t_mj = target bit j of sample m)
 * saturated to [-clip, clip]; then repack the changed rows of Wp (K x wN)
 * and, when WT != NULL, flip the changed bits of the transpose WT (N x wK).
 * Am (may be NULL): M x ceil(N/64) mask of the nonzero inputs (ternary
 * activations, a_mi = 0 where the bit is clear: H[j, i] does not move).
 * sel: M x G neuron indices (-1 = none).  Returns the number of sign flips,
 * or -1 on allocation failure. */
int64_t skbnn_cpr_update(int16_t *H, uint64_t *Wp, uint64_t *WT, size_t K, size_t N,
                         const int32_t *sel, size_t M, size_t G, const uint64_t *T,
                         const uint64_t *A, const uint64_t *Am, int clip, int n_threads);

/* Reinforcement h += 2 * sign(h) (saturated to [-clip, clip]) at sites drawn
 * independently with probability p, sampled by geometric skips from a
 * counter-based stream keyed by (seed, stream, row).  Signs never change.
 * With keep_zero, sign(0) = 0: a site holding 0 (a pruned ternary weight)
 * stays 0; otherwise sign(0) = +1.  Returns the number of changed sites. */
int64_t skbnn_reinforce(int16_t *H, size_t K, size_t N, double p, uint64_t seed,
                        uint64_t stream, int clip, int keep_zero, int n_threads);

/* counter-based uniform in [0, 1) for tests of the stream */
double skbnn_uniform(uint64_t seed, uint64_t stream, uint64_t row, uint64_t index);

/* Allocator of the kernels' scratch outside parallel regions (default
 * malloc/free); the extension installs PyMem_RawMalloc/PyMem_RawFree.  One
 * hook for every kernel source: the others allocate through
 * skbnn_scratch_alloc / skbnn_scratch_free, which call the installed pair. */
void skbnn_set_allocator(void *(*alloc)(size_t), void (*release)(void *));
void *skbnn_scratch_alloc(size_t bytes);
void skbnn_scratch_free(void *p);

/* ---- real-valued kernels (real_kernels.c): latent-weight training -------- */
/* float16 storage is IEEE binary16 held in uint16; conversions round to
 * nearest even (F16C on the AVX2/AVX-512 paths, portable code otherwise). */
void skbnn_f16_to_f32(const uint16_t *in, float *out, size_t n);
void skbnn_f32_to_f16(const float *in, uint16_t *out, size_t n);
/* nonzero when the F16C conversions are in use (AVX2/AVX-512 paths) */
int skbnn_use_f16c(void);

/* A strided float32 or float16 (half != 0, IEEE binary16 in uint16) matrix:
 * element (m, k) at p[m * rs + k * ks]; a transpose is a swap of strides. */
typedef struct {
    const void *p;
    int half;
    size_t rs, ks;
} skbnn_fview;

/* Float rows times packed signs: C[m, n] = sum_k A[m, k] * s(Bt[k] bit n),
 * s = +1 for bit 1, -1 for bit 0; A: M x K view, Bt: K x WORDS(N).
 * Writes C (M x N, float32 or float16 when chalf; entries whose bit in mask
 * (M x WORDS(N)) is 0 are written as 0; mask may be NULL) or, when S != NULL,
 * only the packed signs S (M x WORDS(N), C >= 0 -> 1) without a float
 * matrix.  Every entry sums k = 0..K-1 in order in float32, so all paths and
 * thread counts agree bit for bit. */
void skbnn_fsgemm(skbnn_fview A, size_t M, size_t K, const uint64_t *Bt, size_t N, void *C,
                  int chalf, uint64_t *S, const uint64_t *mask, int n_threads);
/* Float product C = A B (A: M x K view, B: K x N float32 row-major), one
 * fused multiply-add per term in order k (fmaf / FMA instructions: a single
 * rounding on every path); C or packed signs S as for skbnn_fsgemm. */
void skbnn_fgemm(skbnn_fview A, size_t M, size_t K, const float *B, size_t N, void *C,
                 int chalf, uint64_t *S, int n_threads);

/* Dot form with the weights' own packed rows: C[m, j] = sum_k X[m, k] *
 * s(W[j] bit k); X: M x K float32, W: N x WORDS(K).  Computed as 2 P - T
 * (P: X summed where the bit is 1, T: all of X) in 16 lanes in a fixed
 * order, then a fixed reduction tree, on every path (deterministic). */
void skbnn_fdot_bits(const float *X, size_t M, size_t K, const uint64_t *W, size_t N, float *C,
                     int n_threads);

/* ---- batch-norm kernels of latent-weight training (bn_kernels.c) -------- */
/* Training-time BN epilogue over the transient Z (B x n; z_int selects the
 * element type: SKBNN_Z_FLOAT32 = 0, SKBNN_Z_INT32 = 1, SKBNN_Z_INT16 = 2,
 * SKBNN_Z_FLOAT16 = 3, every type read as its exact float32 value), channel m: mu = sum_b Z / B, psi = max(sum_b |Z - mu| / B,
 * psi_floor) (l2: sqrt(sum_b (Z - mu)^2 / B + eps)), both rounded to float16
 * when round_half; A = (Z - mu) / psi + bias.  Writes mu, psi; the packed
 * signs of A (bits, B x WORDS(n)); optionally the packed STE mask |A| <= 1,
 * the packed signs of the pre-bias value (pre_bits), omega = mean |A| (or of
 * the pre-bias value when omega_pre_bias; rounded to float16 when
 * round_half) and A itself as float32 (A_out, may alias a float Z).  Sums
 * run over b in order, each on one thread (threads split the channels for
 * the sums, the rows for the outputs): deterministic. */
enum { SKBNN_Z_FLOAT32 = 0, SKBNN_Z_INT32 = 1, SKBNN_Z_INT16 = 2, SKBNN_Z_FLOAT16 = 3 };
void skbnn_bn_forward(const void *Z, int z_int, size_t B, size_t n, const float *bias, int l2,
                      float eps, float psi_floor, int round_half, float *mu, float *psi,
                      uint64_t *bits, uint64_t *mask, uint64_t *pre_bits, float *omega,
                      int omega_pre_bias, float *A_out, int n_threads);
/* The halves of one batch-norm batch: acc += each channel's sum over the
 * rows of Z (mode 0: z, 1: |z - mu|, 2: (z - mu)^2), as skbnn_bn_forward sums
 * (-1, nothing added, when out of memory); then the output signs (and A)
 * with given mu and psi. */
int skbnn_bn_stats_add(const void *Z, int z_int, size_t B, size_t n, int mode, const float *mu,
                       float *acc, int n_threads);
void skbnn_bn_apply(const void *Z, int z_int, size_t B, size_t n, const float *mu,
                    const float *psi, const float *bias, uint64_t *bits, float *A_out,
                    int n_threads);
/* BN backward on bits (paper Algorithm 2, lines 11-13), in place: G (B x n,
 * float16 when half, else float32) holds dL/dA on entry and dL/dZ on exit:
 * v = G / psi; dZ = (v - mean(v)) - mean(v s omega) s with s = +-1 from bits;
 * G_b = sum_b G (the bias gradient, before the transform). */
void skbnn_bn_backward_bits(void *G, int half, size_t B, size_t n, const float *psi,
                            const uint64_t *bits, const float *omega, float *G_b,
                            int n_threads);

enum { SKBNN_SOLVER_ADAM = 0, SKBNN_SOLVER_SGD = 1, SKBNN_SOLVER_BOP = 2 };
enum { SKBNN_STEP_CLIP = 1, SKBNN_STEP_CANCEL = 2, SKBNN_STEP_STOCHASTIC = 4 };
/* One optimiser step over a layer, neuron-major (n_out rows of n_in).
 * half != 0: V, M1, M2 are float16 (uint16), else float32; arithmetic in
 * float32, each stored value rounded once.  Gradient per weight: +-gscale
 * from gbits (n_out x WORDS(n_in)) or gfloat * gscale (n_out x n_in); zero
 * where |V| >= 1 (gradient cancellation; not for Bop).
 * hp = {lr, beta_1, beta_2, epsilon, momentum, threshold}:
 *   Adam: M1 = b1 M1 + (1-b1) g; M2 = b2 M2 + (1-b2) g^2; V -= lr M1 / (sqrt(M2) + eps)
 *         (lr already bias-corrected by the caller);
 *   SGD : M1 = momentum M1 - lr g; V += M1;
 *   Bop : M1 = (1-lr) M1 + lr g; flip the weight bit where |M1| > threshold and
 *         sign(M1) == sign(w) (V and M2 unused: the weights are the bits).
 * SKBNN_STEP_CLIP in flags clips V to [-1, 1] after the step.  SKBNN_STEP_STOCHASTIC
 * (with half) rounds every stored float16 stochastically, the draws keyed by
 * round_key and each element's (row, column) only.  Wp (n_out x WORDS(n_in))
 * is rewritten with the signs of the stored V (V >= 0 -> 1).  Returns the
 * number of weight-sign flips. */
int64_t skbnn_optimizer_step(int solver, int half, void *V, void *M1, void *M2,
                             const uint64_t *gbits, const float *gfloat, float gscale,
                             size_t n_out, size_t n_in, const float *hp, int flags,
                             uint64_t round_key, uint64_t *Wp, int n_threads);

/* ---- convolution kernels (conv_kernels.c) -------------------------------- */
/* NHWC maps as 2-D row arrays: n*H*W rows (row (s*H + y)*W + x) of C values
 * or WORDS(C) packed words.  Stride-1 square kernels k, zero padding pad:
 * Ho = H + 2 pad - k + 1, Wo likewise.  Weight row o: K = k*k*C bits, bit
 * (ky*k + kx)*C + c, WORDS(K) words, tail bits 0.  Padded taps contribute
 * exactly 0.  Scratch is bounded (about 1.5 MiB whatever the layer and batch
 * sizes; the float kernels add about 0.25 MiB per extra thread) and comes
 * from the allocator installed with skbnn_set_allocator.  Results are
 * identical for every thread count and ISA path: each float entry is one
 * float32 chain from +0.0 in the order given below (a running sum is never
 * -0.0, so skipping a +-0.0 term changes nothing).  Functions returning int
 * give 0, or -1 on allocation failure. */
/* out[(s,oy,ox), o] = sum of x*w over in-bounds taps (exact integers);
 * out: int32 (out16 == 0) or int16 (needs k*k*C <= 32767). */
int skbnn_conv2d_bits(const uint64_t *X, size_t n, size_t H, size_t W, size_t C,
                      const uint64_t *Wp, size_t Cout, size_t k, size_t pad, void *out,
                      int out16, int n_threads);
/* X float32 (n*H*W x C); out float32 or float16 (out_half, nearest even):
 * out[r, o] = sum over j = (ky, kx, c) ascending of x_j * w[o, j] (x_j the
 * im2col entry of output pixel r, padded taps 0; exact products). */
int skbnn_conv2d_real(const float *X, size_t n, size_t H, size_t W, size_t C,
                      const uint64_t *Wp, size_t Cout, size_t k, size_t pad, void *out,
                      int out_half, int n_threads);
/* G (n*Ho*Wo x Cout, float16 when g_half) -> dX (n*H*W x C, float32 or
 * float16): dX[(s,iy,ix), c] = sum over the taps (ky, kx) in row-major
 * order and, within a tap, o ascending, of G[(s, iy-ky+pad, ix-kx+pad), o]
 * * w[o, (ky,kx,c)] (exact products) where that output pixel exists; zero
 * where mask (n*H*W x WORDS(C), may be NULL) has a 0 bit. */
int skbnn_conv2d_input_grad(const void *G, int g_half, size_t n, size_t H, size_t W,
                            size_t C, const uint64_t *Wp, size_t Cout, size_t k, size_t pad,
                            void *out, int out_half, const uint64_t *mask, int n_threads);
/* dW[o, (ky,kx,c)] = sum over the output rows r = (s, oy, ox) ascending of
 * G[r, o] * x at the tap's input pixel (0 when padded); X packed (x_bits:
 * exact products) or float32 (one fused multiply-add per term).  Writes dW
 * (Cout x K float32) when not NULL and/or the packed signs Sbits (Cout x
 * WORDS(K), dW >= 0 -> 1). */
int skbnn_conv2d_weight_grad(const void *G, int g_half, const void *X, int x_bits, size_t n,
                             size_t H, size_t W, size_t C, size_t Cout, size_t k, size_t pad,
                             float *dW, uint64_t *Sbits, int n_threads);
/* 2x2 max pooling, stride 2, Ho = H/2, Wo = W/2.  argmax (n*H*W x WORDS(C))
 * marks the first window position, in the order (0,0), (0,1), (1,0), (1,1),
 * holding the maximum; positions outside every window get 0. */
enum { SKBNN_DT_INT16 = 0, SKBNN_DT_INT32 = 1, SKBNN_DT_FLOAT16 = 2, SKBNN_DT_FLOAT32 = 3 };
/* packed: out = OR of the window (the max of +-1); argmax = the first +1, or
 * (0,0) when all four are -1 */
void skbnn_maxpool2x2_bits(const uint64_t *X, size_t n, size_t H, size_t W, size_t C,
                           uint64_t *out, uint64_t *argmax, int n_threads);
/* values of type dtype (SKBNN_DT_*, float16 compared as floats) */
void skbnn_maxpool2x2(const void *X, int dtype, size_t n, size_t H, size_t W, size_t C,
                      void *out, uint64_t *argmax, int n_threads);
/* out[r, c] = G[window of r, c] where the argmax bit (and the mask bit, when
 * mask != NULL) of (r, c) is 1, else 0; G and out float16 or float32 */
void skbnn_maxpool2x2_backward(const void *G, int g_half, const uint64_t *argmax,
                               const uint64_t *mask, size_t n, size_t H, size_t W, size_t C,
                               void *out, int out_half, int n_threads);
/* X (n*P x WORDS(C)) -> out (n x WORDS(P*C)): bit p*C + c of row s = bit c
 * of row s*P + p; tail bits 0 */
void skbnn_flatten_bits(const uint64_t *X, size_t n, size_t P, size_t C, uint64_t *out,
                        int n_threads);

#endif
