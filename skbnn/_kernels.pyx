# cython: language_level=3
"""Thin Cython layer over the C kernels in ``_csrc/bnn_kernels.c``.

Every input is a ``const`` typed memoryview (read-only and memmapped arrays
work), every call releases the GIL, and outputs are allocated here as NumPy
arrays.  No NumPy C-API is used, so NumPy is a run-time dependency only.
"""
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc
from libc.stdint cimport (int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint64_t,
                          uintptr_t)

import numpy as np

cdef extern from "bnn_kernels.h" nogil:
    int SKBNN_ISA_GENERIC, SKBNN_ISA_POPCNT, SKBNN_ISA_AVX2, SKBNN_ISA_AVX512
    int skbnn_cpu_supports(int isa)
    int skbnn_best_isa()
    int skbnn_set_isa(int isa)
    int skbnn_get_isa()
    int skbnn_openmp_enabled()
    int skbnn_omp_max_threads()
    void skbnn_pack_threshold_f64(const double *X, size_t n, size_t f, const double *thr,
                                  size_t b, int strict, uint64_t *out, size_t out_words,
                                  int n_threads)
    void skbnn_pack_threshold_f32(const float *X, size_t n, size_t f, const double *thr,
                                  size_t b, int strict, uint64_t *out, size_t out_words,
                                  int n_threads)
    int skbnn_pack_threshold_f64_checked(const double *X, size_t n, size_t f,
                                         const double *thr, size_t b, int strict,
                                         uint64_t *out, size_t out_words, int n_threads)
    int skbnn_pack_threshold_f32_checked(const float *X, size_t n, size_t f,
                                         const double *thr, size_t b, int strict,
                                         uint64_t *out, size_t out_words, int n_threads)
    void skbnn_pack_threshold_u8(const uint8_t *X, size_t n, size_t f, const double *thr,
                                 size_t b, int strict, uint64_t *out, size_t out_words,
                                 int n_threads)
    void skbnn_pack_threshold_i8(const int8_t *X, size_t n, size_t f, const double *thr,
                                 size_t b, int strict, uint64_t *out, size_t out_words,
                                 int n_threads)
    void skbnn_pack_threshold_i64(const int64_t *X, size_t n, size_t f, const double *thr,
                                  size_t b, int strict, uint64_t *out, size_t out_words,
                                  int n_threads)
    unsigned skbnn_pack_binary_f64(const double *X, size_t n, size_t f, uint64_t *out,
                                   size_t out_words, int n_threads)
    unsigned skbnn_pack_binary_f32(const float *X, size_t n, size_t f, uint64_t *out,
                                   size_t out_words, int n_threads)
    unsigned skbnn_pack_binary_u8(const uint8_t *X, size_t n, size_t f, uint64_t *out,
                                  size_t out_words, int n_threads)
    unsigned skbnn_pack_binary_i8(const int8_t *X, size_t n, size_t f, uint64_t *out,
                                  size_t out_words, int n_threads)
    unsigned skbnn_pack_binary_i64(const int64_t *X, size_t n, size_t f, uint64_t *out,
                                   size_t out_words, int n_threads)
    void skbnn_pack_sign_i32(const int32_t *Z, size_t n, size_t k, uint64_t *out,
                             size_t out_words)
    void skbnn_pack_sign_i16(const int16_t *H, size_t n, size_t k, uint64_t *out,
                             size_t out_words)
    void skbnn_unpack_pm1(const uint64_t *P, size_t n, size_t words, size_t nbits,
                          int8_t *out)
    void skbnn_transpose_bits(const uint64_t *P, size_t n, size_t k, uint64_t *T)
    uint64_t skbnn_popcount(const uint64_t *a, size_t nw)
    int skbnn_bgemm(const uint64_t *A, size_t M, const uint64_t *B, size_t N, size_t nw,
                    int64_t K, int32_t *Z, int n_threads)
    int skbnn_bgemm_sign(const uint64_t *A, size_t M, const uint64_t *B, size_t N,
                         size_t nw, int64_t K, uint64_t *S, int n_threads)
    int skbnn_bgemm_masked(const uint64_t *A, const uint64_t *G, size_t M, const uint64_t *B,
                           size_t N, size_t nw, int32_t *Z, int n_threads)
    int skbnn_bgemm_masked_sign(const uint64_t *A, const uint64_t *G, size_t M,
                                const uint64_t *B, size_t N, size_t nw, uint64_t *S,
                                int n_threads)
    int skbnn_hidden_field(const int16_t *H, size_t N, size_t K, const uint64_t *A, size_t M,
                           int32_t *F, int n_threads)
    void skbnn_select_easiest(const int32_t *Z, size_t M, size_t K, const uint64_t *T,
                              const uint8_t *active, size_t g, int zero_is_wrong,
                              int32_t *out, int n_threads)
    int64_t skbnn_cpr_update(int16_t *H, uint64_t *Wp, uint64_t *WT, size_t K, size_t N,
                             const int32_t *sel, size_t M, size_t G, const uint64_t *T,
                             const uint64_t *A, const uint64_t *Am, int clip, int n_threads)
    int64_t skbnn_reinforce(int16_t *H, size_t K, size_t N, double p, uint64_t seed,
                            uint64_t stream, int clip, int keep_zero, int n_threads)
    double skbnn_uniform(uint64_t seed, uint64_t stream, uint64_t row, uint64_t index)
    void skbnn_f16_to_f32(const uint16_t *inp, float *out, size_t n)
    void skbnn_f32_to_f16(const float *inp, uint16_t *out, size_t n)
    void skbnn_set_allocator(void *(*alloc)(size_t) noexcept nogil,
                             void (*release)(void *) noexcept nogil)
    ctypedef struct skbnn_fview:
        const void *p
        int half
        size_t rs, ks
    void skbnn_fsgemm(skbnn_fview A, size_t M, size_t K, const uint64_t *Bt, size_t N,
                      void *C, int chalf, uint64_t *S, const uint64_t *mask, int n_threads)
    void skbnn_fgemm(skbnn_fview A, size_t M, size_t K, const float *B, size_t N, void *C,
                     int chalf, uint64_t *S, int n_threads)
    void skbnn_fdot_bits(const float *X, size_t M, size_t K, const uint64_t *W, size_t N,
                         float *C, int n_threads)
    void skbnn_bn_forward(const void *Z, int z_int, size_t B, size_t n, const float *bias,
                          int l2, float eps, float psi_floor, int round_half, float *mu,
                          float *psi, uint64_t *bits, uint64_t *mask, uint64_t *pre_bits,
                          float *omega, int omega_pre_bias, float *A_out, int n_threads)
    void skbnn_bn_backward_bits(void *G, int half, size_t B, size_t n, const float *psi,
                                const uint64_t *bits, const float *omega, float *G_b,
                                int n_threads)
    int skbnn_bn_stats_add(const void *Z, int z_int, size_t B, size_t n, int mode,
                           const float *mu, float *acc, int n_threads)
    void skbnn_bn_apply(const void *Z, int z_int, size_t B, size_t n, const float *mu,
                        const float *psi, const float *bias, uint64_t *bits, float *A_out,
                        int n_threads)
    int SKBNN_SOLVER_ADAM, SKBNN_SOLVER_SGD, SKBNN_SOLVER_BOP
    int64_t skbnn_optimizer_step(int solver, int half, void *V, void *M1, void *M2,
                                 const uint64_t *gbits, const float *gfloat, float gscale,
                                 size_t n_out, size_t n_in, const float *hp, int flags,
                                 uint64_t round_key, uint64_t *Wp, int n_threads)


ISA_NAMES = ("generic", "popcnt", "avx2", "avx512")

# kernel scratch through Python's raw allocator: tracemalloc sees it (one
# hook for every kernel source, the convolution kernels included)
skbnn_set_allocator(PyMem_RawMalloc, PyMem_RawFree)


# ---------------------------------------------------------------- dispatch
def cpu_supports(str isa):
    """Whether this CPU (and OS) can run the named kernel path."""
    return bool(skbnn_cpu_supports(_isa_index(isa)))


def best_isa():
    """Name of the fastest kernel path this CPU supports."""
    return ISA_NAMES[skbnn_best_isa()]


def set_isa(str isa):
    """Select the kernel path used by every later call (process-wide)."""
    cdef int idx = _isa_index(isa)
    if skbnn_set_isa(idx) != 0:
        raise ValueError(
            f"kernel path {isa!r} is not supported by this CPU; "
            f"available: {available_isas()}")


def get_isa():
    """Name of the kernel path in use."""
    return ISA_NAMES[skbnn_get_isa()]


def available_isas():
    """Kernel paths this CPU supports, slowest first."""
    return [name for i, name in enumerate(ISA_NAMES) if skbnn_cpu_supports(i)]


def openmp_enabled():
    """Whether the extension was compiled with OpenMP."""
    return bool(skbnn_openmp_enabled())


def omp_max_threads():
    """OpenMP's default thread count (1 without OpenMP)."""
    return skbnn_omp_max_threads()


cdef int _isa_index(str isa) except -1:
    if isa not in ISA_NAMES:
        raise ValueError(f"unknown kernel path {isa!r}; expected one of {ISA_NAMES}")
    return ISA_NAMES.index(isa)


cdef inline size_t _words(size_t bits) noexcept nogil:
    return (bits + 63) // 64


cdef inline bint _misaligned_at(const void *p, size_t itemsize, Py_ssize_t n) noexcept:
    return n > 0 and (<uintptr_t>p) % itemsize != 0


cdef object _realign(object view):
    """An aligned C-contiguous copy of a read-only input whose elements are not
    at multiples of their size (a view of a byte buffer at an odd offset, as
    dask can deliver): C requires aligned elements, and the vectoriser's
    aligned loads would fault on them.  Rare, so a copy costs nothing in
    practice; outputs are refused instead (see :func:`_aligned`)."""
    return np.require(np.asarray(view), requirements=["C", "A"])


cdef int _aligned(const void *p, size_t itemsize, Py_ssize_t n, str name) except -1:
    """Refuse an output or in-place buffer whose elements are not at
    multiples of their size (inputs are copied: :func:`_realign`)."""
    if n > 0 and (<uintptr_t>p) % itemsize:
        raise _misaligned(name, itemsize)
    return 0


cdef object _misaligned(str name, size_t itemsize):
    return ValueError(f"{name} is not aligned to its {itemsize}-byte elements (a view of a "
                      f"byte buffer at an odd offset?); copy it with "
                      f"np.require({name}, requirements='A')")


# ---------------------------------------------------------------- packing
ctypedef fused pack_input_t:
    double
    float
    uint8_t
    int8_t
    int64_t


def pack_threshold(const pack_input_t[:, ::1] X not None,
                   const double[:, ::1] thresholds not None,
                   bint strict, int n_threads=1):
    """Threshold and bit-pack ``X``: bit ``j*b + k`` is ``X[:, j] > thr[j, k]``
    (``>=`` when ``strict`` is False); returns ``(n, ceil(f*b/64))`` uint64."""
    cdef size_t n = X.shape[0], f = X.shape[1], b = thresholds.shape[1]
    if <size_t>thresholds.shape[0] != f:
        raise ValueError("thresholds must have one row per feature")
    if _misaligned_at(&X[0, 0], sizeof(pack_input_t), X.shape[0] * X.shape[1]):
        X = _realign(X)
    if _misaligned_at(&thresholds[0, 0], sizeof(double), thresholds.shape[0] * b):
        thresholds = _realign(thresholds)
    cdef size_t ow = _words(f * b)
    out = np.zeros((n, ow), dtype=np.uint64)
    cdef uint64_t[:, ::1] o = out
    if n == 0 or ow == 0:
        return out
    with nogil:
        if pack_input_t is double:
            skbnn_pack_threshold_f64(&X[0, 0], n, f, &thresholds[0, 0], b, strict, &o[0, 0],
                                     ow, n_threads)
        elif pack_input_t is float:
            skbnn_pack_threshold_f32(&X[0, 0], n, f, &thresholds[0, 0], b, strict, &o[0, 0],
                                     ow, n_threads)
        elif pack_input_t is int8_t:
            skbnn_pack_threshold_i8(&X[0, 0], n, f, &thresholds[0, 0], b, strict, &o[0, 0],
                                    ow, n_threads)
        elif pack_input_t is uint8_t:
            skbnn_pack_threshold_u8(&X[0, 0], n, f, &thresholds[0, 0], b, strict, &o[0, 0],
                                    ow, n_threads)
        else:
            skbnn_pack_threshold_i64(&X[0, 0], n, f, &thresholds[0, 0], b, strict, &o[0, 0],
                                     ow, n_threads)
    return out


def pack_threshold_checked(const pack_input_t[:, ::1] X not None,
                           const double[:, ::1] thresholds not None,
                           bint strict, int n_threads=1):
    """:func:`pack_threshold` that also tells whether ``X`` holds a NaN or an
    infinity, found in the same pass where the kernel path can: returns
    ``(packed, nonfinite)`` with ``nonfinite`` True or False, or None when
    this call did not look (float input on the portable path or with several
    thresholds per feature: the caller checks ``X`` itself).  Integer input
    is finite: False."""
    cdef size_t n = X.shape[0], f = X.shape[1], b = thresholds.shape[1], ow
    cdef int rc = 0
    cdef uint64_t[:, ::1] o
    if pack_input_t is double or pack_input_t is float:
        if <size_t>thresholds.shape[0] != f:
            raise ValueError("thresholds must have one row per feature")
        if _misaligned_at(&X[0, 0], sizeof(pack_input_t), X.shape[0] * X.shape[1]):
            X = _realign(X)
        if _misaligned_at(&thresholds[0, 0], sizeof(double), thresholds.shape[0] * b):
            thresholds = _realign(thresholds)
        ow = _words(f * b)
        out = np.zeros((n, ow), dtype=np.uint64)
        o = out
        if n == 0 or f == 0:
            return out, False
        if ow == 0:  # b == 0: no bits, and no pass over X
            return out, None
        with nogil:
            if pack_input_t is double:
                rc = skbnn_pack_threshold_f64_checked(&X[0, 0], n, f, &thresholds[0, 0], b,
                                                      strict, &o[0, 0], ow, n_threads)
            else:
                rc = skbnn_pack_threshold_f32_checked(&X[0, 0], n, f, &thresholds[0, 0], b,
                                                      strict, &o[0, 0], ow, n_threads)
        return out, (None if rc < 0 else bool(rc))
    else:
        return pack_threshold(X, thresholds, strict, n_threads), False


VALUE_NEG_ONE, VALUE_ZERO, VALUE_POS_ONE, VALUE_OTHER = 1, 2, 4, 8


def pack_binary(const pack_input_t[:, ::1] X not None, int n_threads=1):
    """Pack already-binary ``X`` (+/-1 or 0/1): bit ``j`` is ``X[:, j] > 0``.

    Returns ``(packed, kinds)``: the ``(n, ceil(f/64))`` uint64 bits and the bit
    set of the values present, ``VALUE_NEG_ONE`` (-1), ``VALUE_ZERO``,
    ``VALUE_POS_ONE`` (+1) and ``VALUE_OTHER`` (anything else, NaN included),
    gathered in the same pass so the caller can refuse other input."""
    cdef size_t n = X.shape[0], f = X.shape[1]
    cdef size_t ow = _words(f)
    cdef unsigned kinds = 0
    if _misaligned_at(&X[0, 0], sizeof(pack_input_t), X.shape[0] * X.shape[1]):
        X = _realign(X)
    out = np.zeros((n, ow), dtype=np.uint64)
    cdef uint64_t[:, ::1] o = out
    if n == 0 or ow == 0:
        return out, 0
    with nogil:
        if pack_input_t is double:
            kinds = skbnn_pack_binary_f64(&X[0, 0], n, f, &o[0, 0], ow, n_threads)
        elif pack_input_t is float:
            kinds = skbnn_pack_binary_f32(&X[0, 0], n, f, &o[0, 0], ow, n_threads)
        elif pack_input_t is int8_t:
            kinds = skbnn_pack_binary_i8(&X[0, 0], n, f, &o[0, 0], ow, n_threads)
        elif pack_input_t is uint8_t:
            kinds = skbnn_pack_binary_u8(&X[0, 0], n, f, &o[0, 0], ow, n_threads)
        else:
            kinds = skbnn_pack_binary_i64(&X[0, 0], n, f, &o[0, 0], ow, n_threads)
    return out, kinds


def pack_sign_int32(const int32_t[:, ::1] Z not None):
    """Packed sign bits of an int32 matrix (z >= 0 -> bit 1)."""
    cdef size_t n = Z.shape[0], k = Z.shape[1], ow = _words(k)
    if _misaligned_at(&Z[0, 0], 4, Z.shape[0] * Z.shape[1]):
        Z = _realign(Z)
    out = np.zeros((n, ow), dtype=np.uint64)
    cdef uint64_t[:, ::1] o = out
    if n and ow:
        with nogil:
            skbnn_pack_sign_i32(&Z[0, 0], n, k, &o[0, 0], ow)
    return out


def pack_sign_int16(const int16_t[:, ::1] H not None):
    """Packed sign bits of int16 rows (h >= 0 -> bit 1): the weights sign(H)."""
    cdef size_t n = H.shape[0], k = H.shape[1], ow = _words(k)
    if _misaligned_at(&H[0, 0], 2, H.shape[0] * H.shape[1]):
        H = _realign(H)
    out = np.zeros((n, ow), dtype=np.uint64)
    cdef uint64_t[:, ::1] o = out
    if n and ow:
        with nogil:
            skbnn_pack_sign_i16(&H[0, 0], n, k, &o[0, 0], ow)
    return out


def unpack_pm1(const uint64_t[:, ::1] P not None, Py_ssize_t n_bits):
    """Unpack bit rows into an int8 matrix of +/-1 with ``n_bits`` columns."""
    cdef size_t n = P.shape[0], words = P.shape[1]
    if _misaligned_at(&P[0, 0], 8, P.shape[0] * P.shape[1]):
        P = _realign(P)
    if n_bits < 0 or _words(n_bits) > words:
        raise ValueError(f"n_bits={n_bits} does not fit in {words} words per row")
    out = np.empty((n, n_bits), dtype=np.int8)
    cdef int8_t[:, ::1] o = out
    if n and n_bits:
        with nogil:
            skbnn_unpack_pm1(&P[0, 0], n, words, n_bits, &o[0, 0])
    return out


def transpose_bits(const uint64_t[:, ::1] P not None, Py_ssize_t n_bits):
    """Transpose a packed (n, n_bits) bit matrix into (n_bits, ceil(n/64))."""
    cdef size_t n = P.shape[0]
    if _misaligned_at(&P[0, 0], 8, P.shape[0] * P.shape[1]):
        P = _realign(P)
    if n_bits < 0 or _words(n_bits) != <size_t>P.shape[1]:
        raise ValueError("n_bits does not match the packed width")
    if not _tail_is_clear(P, n_bits):
        raise ValueError(f"packed rows have non-zero padding bits past n_bits={n_bits}")
    out = np.zeros((n_bits, _words(n)), dtype=np.uint64)
    cdef uint64_t[:, ::1] o = out
    if n and n_bits:
        with nogil:
            skbnn_transpose_bits(&P[0, 0], n, n_bits, &o[0, 0])
    return out


# ---------------------------------------------------------------- products
def popcount(const uint64_t[::1] a not None):
    """Total number of set bits, on the selected kernel path."""
    cdef uint64_t r = 0
    if _misaligned_at(&a[0], 8, a.shape[0]):
        a = _realign(a)
    if a.shape[0]:
        with nogil:
            r = skbnn_popcount(&a[0], a.shape[0])
    return int(r)


cdef bint _tail_is_clear(const uint64_t[:, ::1] P, Py_ssize_t n_bits) noexcept nogil:
    """Padding bits past n_bits must be zero: the products count them."""
    cdef Py_ssize_t i, tail = n_bits % 64
    if tail == 0 or P.shape[1] == 0:
        return True
    for i in range(P.shape[0]):
        if P[i, P.shape[1] - 1] >> tail:
            return False
    return True


cdef _check_operands(const uint64_t[:, ::1] A, const uint64_t[:, ::1] B, Py_ssize_t n_bits):
    if A.shape[1] != B.shape[1]:
        raise ValueError(
            f"packed operands differ in width: {A.shape[1]} vs {B.shape[1]} words")
    if n_bits < 0 or <Py_ssize_t>_words(n_bits) != A.shape[1]:
        raise ValueError(f"n_bits={n_bits} does not match {A.shape[1]} words per row")
    if not (_tail_is_clear(A, n_bits) and _tail_is_clear(B, n_bits)):
        raise ValueError(f"packed operands have non-zero padding bits past n_bits={n_bits}")


def bgemm(const uint64_t[:, ::1] A not None, const uint64_t[:, ::1] B not None, Py_ssize_t n_bits,
          int n_threads=1, out=None):
    """Integer pre-activations ``Z[m, j] = n_bits - 2 popcount(A[m] ^ B[j])``
    (written into ``out``, an int32 ``(M, N)`` array, when given)."""
    if _misaligned_at(&A[0, 0], 8, A.shape[0] * A.shape[1]):
        A = _realign(A)
    if _misaligned_at(&B[0, 0], 8, B.shape[0] * B.shape[1]):
        B = _realign(B)
    _check_operands(A, B, n_bits)
    cdef size_t M = A.shape[0], N = B.shape[0], nw = A.shape[1]
    if out is None:
        result = np.empty((M, N), dtype=np.int32)
    elif (not isinstance(out, np.ndarray) or out.dtype != np.int32
            or out.shape != (M, N) or not out.flags.c_contiguous):
        raise ValueError(f"out must be a C-contiguous int32 ({M}, {N}) array")
    else:
        result = out
    cdef int32_t[:, ::1] Z = result
    _aligned(&Z[0, 0], 4, Z.shape[0] * Z.shape[1], "out")
    cdef int rc = 0
    if M and N:
        if nw == 0:
            Z[:, :] = 0
            return result
        with nogil:
            rc = skbnn_bgemm(&A[0, 0], M, &B[0, 0], N, nw, n_bits, &Z[0, 0], n_threads)
        if rc != 0:
            raise MemoryError("bgemm: out of memory")
    return result


def bgemm_sign(const uint64_t[:, ::1] A not None, const uint64_t[:, ::1] B not None,
               Py_ssize_t n_bits,
               int n_threads=1):
    """Packed signs of ``A @ B.T`` (z >= 0 -> bit 1), fused: no int matrix."""
    if _misaligned_at(&A[0, 0], 8, A.shape[0] * A.shape[1]):
        A = _realign(A)
    if _misaligned_at(&B[0, 0], 8, B.shape[0] * B.shape[1]):
        B = _realign(B)
    _check_operands(A, B, n_bits)
    cdef size_t M = A.shape[0], N = B.shape[0], nw = A.shape[1]
    out = np.zeros((M, _words(N)), dtype=np.uint64)
    cdef uint64_t[:, ::1] S = out
    cdef int rc = 0
    if M and N:
        if nw == 0:  # empty dot products are 0, and sign(0) = +1
            return pack_sign_int32(np.zeros((M, N), dtype=np.int32))
        with nogil:
            rc = skbnn_bgemm_sign(&A[0, 0], M, &B[0, 0], N, nw, n_bits, &S[0, 0], n_threads)
        if rc != 0:
            raise MemoryError("bgemm_sign: out of memory")
    return out


cdef _check_mask(const uint64_t[:, ::1] A, const uint64_t[:, ::1] G, Py_ssize_t n_bits):
    if G.shape[0] != A.shape[0] or G.shape[1] != A.shape[1]:
        raise ValueError(f"mask shape {(G.shape[0], G.shape[1])} differs from the packed "
                         f"operand's {(A.shape[0], A.shape[1])}")
    if not _tail_is_clear(G, n_bits):
        raise ValueError(f"mask has non-zero padding bits past n_bits={n_bits}")


def bgemm_masked(const uint64_t[:, ::1] A not None, const uint64_t[:, ::1] G not None,
                 const uint64_t[:, ::1] B not None, Py_ssize_t n_bits, int n_threads=1):
    """Gated products: ``Z[m, j] = sum_{i: G[m]_i = 1} (+1 if A[m]_i == B[j]_i else -1)``,
    i.e. ``popcount(G[m]) - 2 popcount((A[m] ^ B[j]) & G[m])`` (BEP's back-projection
    ``W.T (g * a*)`` when ``B`` is the packed transpose of ``W``)."""
    if _misaligned_at(&A[0, 0], 8, A.shape[0] * A.shape[1]):
        A = _realign(A)
    if _misaligned_at(&B[0, 0], 8, B.shape[0] * B.shape[1]):
        B = _realign(B)
    _check_operands(A, B, n_bits)
    if _misaligned_at(&G[0, 0], 8, G.shape[0] * G.shape[1]):
        G = _realign(G)
    _check_mask(A, G, n_bits)
    cdef size_t M = A.shape[0], N = B.shape[0], nw = A.shape[1]
    out = np.zeros((M, N), dtype=np.int32)
    cdef int32_t[:, ::1] Z = out
    cdef int rc = 0
    if M and N and nw:
        with nogil:
            rc = skbnn_bgemm_masked(&A[0, 0], &G[0, 0], M, &B[0, 0], N, nw, &Z[0, 0],
                                    n_threads)
        if rc != 0:
            raise MemoryError("bgemm_masked: out of memory")
    return out


def bgemm_masked_sign(const uint64_t[:, ::1] A not None, const uint64_t[:, ::1] G not None,
                      const uint64_t[:, ::1] B not None, Py_ssize_t n_bits,
                      int n_threads=1):
    """Packed signs of :func:`bgemm_masked` (z >= 0 -> bit 1, so ties give +1)."""
    if _misaligned_at(&A[0, 0], 8, A.shape[0] * A.shape[1]):
        A = _realign(A)
    if _misaligned_at(&B[0, 0], 8, B.shape[0] * B.shape[1]):
        B = _realign(B)
    _check_operands(A, B, n_bits)
    if _misaligned_at(&G[0, 0], 8, G.shape[0] * G.shape[1]):
        G = _realign(G)
    _check_mask(A, G, n_bits)
    cdef size_t M = A.shape[0], N = B.shape[0], nw = A.shape[1]
    out = np.zeros((M, _words(N)), dtype=np.uint64)
    cdef uint64_t[:, ::1] S = out
    cdef int rc = 0
    if M and N:
        if nw == 0:
            return pack_sign_int32(np.zeros((M, N), dtype=np.int32))
        with nogil:
            rc = skbnn_bgemm_masked_sign(&A[0, 0], &G[0, 0], M, &B[0, 0], N, nw, &S[0, 0],
                                         n_threads)
        if rc != 0:
            raise MemoryError("bgemm_masked_sign: out of memory")
    return out


MAX_FIELD_FAN_IN = 65536  # 32767 * fan-in must fit an int32


def hidden_field(const int16_t[:, ::1] H not None, const uint64_t[:, ::1] A not None,
                 int n_threads=1):
    """Exact hidden fields ``F[m, j] = sum_i H[j, i] a_mi`` of int16 weights
    ``H`` (n_out, n_in) and packed +/-1 inputs ``A`` (M, ceil(n_in/64)):
    int32 (M, n_out).  Padding bits of ``A`` are ignored."""
    cdef size_t N = H.shape[0], K = H.shape[1], M = A.shape[0]
    if <size_t>A.shape[1] != _words(K):
        raise ValueError(f"packed inputs have {A.shape[1]} words per row, the weights' "
                         f"fan-in {K} needs {_words(K)}")
    if K > MAX_FIELD_FAN_IN:
        raise ValueError(f"hidden fields need a fan-in of at most {MAX_FIELD_FAN_IN} "
                         f"(int32 sums), got {K}")
    if _misaligned_at(&H[0, 0], sizeof(int16_t), H.shape[0] * H.shape[1]):
        H = _realign(H)
    if _misaligned_at(&A[0, 0], 8, A.shape[0] * A.shape[1]):
        A = _realign(A)
    out = np.zeros((M, N), dtype=np.int32)
    cdef int32_t[:, ::1] F = out
    cdef int rc = 0
    if M and N and K:
        with nogil:
            rc = skbnn_hidden_field(&H[0, 0], N, K, &A[0, 0], M, &F[0, 0], n_threads)
        if rc != 0:
            raise MemoryError("hidden_field: out of memory")
    return out


# ---------------------------------------------------------------- CP+R
def select_easiest(const int32_t[:, ::1] Z not None, const uint64_t[:, ::1] targets not None,
                   Py_ssize_t group_size, bint zero_is_wrong, const uint8_t[::1] active=None,
                   int n_threads=1):
    """Per sample and group of ``group_size`` neurons, the wrong neuron with the
    smallest |z| (lowest index on ties) or -1; returns ``(M, K // group_size)``."""
    cdef size_t M = Z.shape[0], K = Z.shape[1]
    if group_size <= 0 or K % group_size:
        raise ValueError(f"group_size={group_size} must divide the width {K}")
    if <size_t>targets.shape[0] != M or <size_t>targets.shape[1] != _words(K):
        raise ValueError("targets must be packed (n_samples, ceil(width/64))")
    if active is not None and <size_t>active.shape[0] != M:
        raise ValueError("active must have one flag per sample")
    if _misaligned_at(&Z[0, 0], 4, Z.shape[0] * Z.shape[1]):
        Z = _realign(Z)
    if _misaligned_at(&targets[0, 0], 8, targets.shape[0] * targets.shape[1]):
        targets = _realign(targets)
    cdef size_t G = K // group_size
    out = np.full((M, G), -1, dtype=np.int32)
    cdef int32_t[:, ::1] o = out
    cdef const uint8_t *act = NULL
    if active is not None and M:
        act = &active[0]
    if M and G:
        with nogil:
            skbnn_select_easiest(&Z[0, 0], M, K, &targets[0, 0], act, group_size,
                                 zero_is_wrong, &o[0, 0], n_threads)
    return out


def cpr_update(int16_t[:, ::1] H not None, uint64_t[:, ::1] packed not None,
               uint64_t[:, ::1] packed_t, const int32_t[:, ::1] selected not None,
               const uint64_t[:, ::1] targets not None, const uint64_t[:, ::1] inputs not None,
               int clip, int n_threads=1, const uint64_t[:, ::1] input_mask=None):
    """Apply ``H[j] += 2 t_mj a_m`` for every selected (m, j), all from the
    pre-update weights, saturated to [-clip, clip]; repack the changed rows of
    ``packed`` and bits of ``packed_t`` (may be None).  ``input_mask`` (packed
    like ``inputs``) marks the nonzero inputs of ternary activations: where
    its bit is clear ``a_mi = 0`` and the weight does not move.  Returns
    sign flips."""
    cdef size_t K = H.shape[0], N = H.shape[1], M = selected.shape[0]
    cdef size_t G = selected.shape[1]
    if <size_t>packed.shape[0] != K or <size_t>packed.shape[1] != _words(N):
        raise ValueError("packed weights do not match the hidden weights")
    if packed_t is not None and (<size_t>packed_t.shape[0] != N
                                 or <size_t>packed_t.shape[1] != _words(K)):
        raise ValueError("packed transpose does not match the hidden weights")
    if <size_t>targets.shape[0] != M or <size_t>targets.shape[1] != _words(K):
        raise ValueError("targets must be packed (n_samples, ceil(n_out/64))")
    if <size_t>inputs.shape[0] != M or <size_t>inputs.shape[1] != _words(N):
        raise ValueError("inputs must be packed (n_samples, ceil(n_in/64))")
    if input_mask is not None and (input_mask.shape[0] != inputs.shape[0]
                                   or input_mask.shape[1] != inputs.shape[1]):
        raise ValueError("input_mask must have the shape of inputs")
    if clip < 1 or clip > 32767:
        raise ValueError("clip must be in [1, 32767]")
    _aligned(&H[0, 0], 2, H.shape[0] * H.shape[1], "H")
    _aligned(&packed[0, 0], 8, packed.shape[0] * packed.shape[1], "packed")
    if packed_t is not None:
        _aligned(&packed_t[0, 0], 8, packed_t.shape[0] * packed_t.shape[1], "packed_t")
    if _misaligned_at(&selected[0, 0], 4, selected.shape[0] * selected.shape[1]):
        selected = _realign(selected)
    if _misaligned_at(&targets[0, 0], 8, targets.shape[0] * targets.shape[1]):
        targets = _realign(targets)
    if _misaligned_at(&inputs[0, 0], 8, inputs.shape[0] * inputs.shape[1]):
        inputs = _realign(inputs)
    cdef const uint64_t *pm = NULL
    if input_mask is not None:
        if _misaligned_at(&input_mask[0, 0], 8, input_mask.shape[0] * input_mask.shape[1]):
            input_mask = _realign(input_mask)
        if M and N:
            pm = &input_mask[0, 0]
    cdef uint64_t *pt = NULL
    if packed_t is not None and N and K:
        pt = &packed_t[0, 0]
    cdef int64_t flips = 0
    if M == 0 or G == 0 or K == 0 or N == 0:
        return 0
    with nogil:
        flips = skbnn_cpr_update(&H[0, 0], &packed[0, 0], pt, K, N, &selected[0, 0], M, G,
                                 &targets[0, 0], &inputs[0, 0], pm, clip, n_threads)
    if flips < 0:
        raise MemoryError("cpr_update: out of memory")
    return flips


def reinforce(int16_t[:, ::1] H not None, double p, uint64_t seed, uint64_t stream, int clip,
              int n_threads=1, bint keep_zero=False):
    """``h += 2 sign(h)`` at sites drawn with probability ``p`` (geometric skips,
    counter-based stream keyed by seed, stream and row).  ``keep_zero`` takes
    sign(0) = 0 (ternary weights: a 0 stays 0), else sign(0) = +1.  Returns
    the number of changed sites."""
    if not (0.0 <= p <= 1.0):
        raise ValueError("p must be a probability")
    if clip < 1 or clip > 32767:
        raise ValueError("clip must be in [1, 32767]")
    cdef size_t K = H.shape[0], N = H.shape[1]
    cdef int64_t count = 0
    _aligned(&H[0, 0], 2, H.shape[0] * H.shape[1], "H")
    if K and N:
        with nogil:
            count = skbnn_reinforce(&H[0, 0], K, N, p, seed, stream, clip, keep_zero,
                                    n_threads)
    return count


def uniform(uint64_t seed, uint64_t stream, uint64_t row, uint64_t index):
    """The ``index``-th uniform draw of a row's counter-based stream (tests)."""
    return skbnn_uniform(seed, stream, row, index)


# ---------------------------------------------------------------- prototypes
def bef_flips(int8_t[:, ::1] P not None, const int32_t[::1] rows not None,
              const int32_t[::1] cols not None,
              double alpha):
    """Greedy single-bit flips toward a binary equiangular frame (BEP App. C).

    Minimises ``J = sum_{i<j} <p_i, p_j> + alpha * Var_{i<j}(<p_i, p_j>)`` over
    the +/-1 rows of ``P`` (modified in place): proposal ``t`` flips
    ``P[rows[t], cols[t]]`` and is kept only when ``J`` decreases.  The
    proposals are drawn by the caller, so the result is a pure function of them.
    Returns the number of accepted flips.
    """
    cdef Py_ssize_t C = P.shape[0], D = P.shape[1], T = rows.shape[0]
    if cols.shape[0] != T:
        raise ValueError("rows and cols must have the same length")
    if _misaligned_at(&rows[0], 4, T):
        rows = _realign(rows)
    if _misaligned_at(&cols[0], 4, T):
        cols = _realign(cols)
    if C < 2 or D == 0 or T == 0:
        return 0
    cdef Py_ssize_t t, i, j, k, n_pairs = C * (C - 1) // 2
    for t in range(T):
        if not (0 <= rows[t] < C and 0 <= cols[t] < D):
            raise ValueError("proposal index out of range")
    gram_arr = np.zeros((C, C), dtype=np.int64)
    cdef int64_t[:, ::1] gram = gram_arr
    cdef int64_t s = 0, q = 0, ds, dq, d, accepted = 0
    cdef double m = <double>n_pairs, j_old, j_new
    with nogil:
        for i in range(C):
            for j in range(i + 1, C):
                d = 0
                for k in range(D):
                    d += P[i, k] * P[j, k]
                gram[i, j] = d
                gram[j, i] = d
                s += d
                q += d * d
        for t in range(T):
            i = rows[t]
            k = cols[t]
            ds = 0
            dq = 0
            for j in range(C):
                if j != i:
                    d = -2 * P[i, k] * P[j, k]
                    ds += d
                    dq += 2 * gram[i, j] * d + d * d
            j_old = s + alpha * (q / m - (s / m) * (s / m))
            j_new = (s + ds) + alpha * ((q + dq) / m - ((s + ds) / m) * ((s + ds) / m))
            if j_new < j_old:
                for j in range(C):
                    if j != i:
                        d = -2 * P[i, k] * P[j, k]
                        gram[i, j] += d
                        gram[j, i] += d
                P[i, k] = -P[i, k]
                s += ds
                q += dq
                accepted += 1
    return accepted


# ---------------------------------------------------------------- real-valued
def f16_to_f32(const uint16_t[::1] h not None):
    """float32 values of IEEE half-precision bit patterns (exact)."""
    if _misaligned_at(&h[0], 2, h.shape[0]):
        h = _realign(h)
    out = np.empty(h.shape[0], dtype=np.float32)
    cdef float[::1] o = out
    if h.shape[0]:
        with nogil:
            skbnn_f16_to_f32(&h[0], &o[0], h.shape[0])
    return out


def f32_to_f16(const float[::1] x not None):
    """IEEE half-precision bit patterns (uint16) of float32 values, rounded to
    nearest even."""
    if _misaligned_at(&x[0], 4, x.shape[0]):
        x = _realign(x)
    out = np.empty(x.shape[0], dtype=np.uint16)
    cdef uint16_t[::1] o = out
    if x.shape[0]:
        with nogil:
            skbnn_f32_to_f16(&x[0], &o[0], x.shape[0])
    return out


cdef const void *_data_ptr(object arr) except NULL:
    """Address of a non-empty C-contiguous, aligned array (read-only allowed)."""
    if not arr.flags.aligned:
        raise _misaligned("the float array", arr.dtype.itemsize)
    cdef const uint8_t[::1] raw = arr.reshape(-1).view(np.uint8)
    return <const void *>&raw[0]


cdef skbnn_fview _float_view(object A, bint transposed, str name) except *:
    """Strided view of a 2-D C-contiguous float32/float16 array (or its
    transpose).  Read transposed, ``A`` may also be a block of columns of a
    C-contiguous array (its rows strided, its elements contiguous): the
    kernels step through k by the row stride."""
    if not isinstance(A, np.ndarray) or A.ndim != 2 or A.dtype not in (np.float32, np.float16):
        raise TypeError(f"{name} must be a 2-D float32 or float16 array")
    cdef Py_ssize_t item = A.dtype.itemsize
    cdef bint columns = (transposed and A.strides[1] == item and A.strides[0] % item == 0
                         and A.strides[0] >= A.shape[1] * item)
    if not (A.flags.c_contiguous or columns):
        raise ValueError(f"{name} must be C-contiguous")
    cdef skbnn_fview v
    v.half = A.dtype == np.float16
    if A.size and not A.flags.aligned:
        raise _misaligned(name, item)
    # the address itself (a block of columns has no contiguous flat view)
    v.p = <const void *><uintptr_t>A.__array_interface__["data"][0] if A.size else NULL
    if transposed:
        v.rs, v.ks = 1, (A.strides[0] // item if A.shape[0] > 1 else A.shape[1])
    else:
        v.rs, v.ks = A.shape[1], 1
    return v


cdef object _float_out(object out, size_t M, size_t N, bint sign, bint allow_half=True):
    """The output array: packed signs, a new float32 matrix or the caller's
    C-contiguous writable float32 (or float16 when ``allow_half``) ``out``."""
    if sign:
        if out is not None:
            raise ValueError("out cannot be combined with sign=True")
        return np.zeros((M, _words(N)), dtype=np.uint64)
    if out is None:
        return np.zeros((M, N), dtype=np.float32)
    dtypes = (np.float32, np.float16) if allow_half else (np.float32,)
    if (not isinstance(out, np.ndarray) or out.shape != (M, N) or out.dtype not in dtypes
            or not out.flags.c_contiguous or not out.flags.writeable):
        kinds = "float32/float16" if allow_half else "float32"
        raise ValueError(f"out must be a writable C-contiguous {kinds} ({M}, {N}) array")
    return out


cdef object _empty_sums(object result, size_t M, size_t N, bint sign):
    """An inner dimension of 0: every sum is 0 (sign +1)."""
    if sign:
        result[...] = pack_sign_int32(np.zeros((M, N), dtype=np.int32))
    else:
        result[...] = 0
    return result


cdef int _out_pointers(object result, bint sign, void **C, uint64_t **S,
                       int *chalf) except -1:
    """Where a float product writes: packed signs ``S`` or floats ``C``
    (float16 when ``chalf``)."""
    cdef uint64_t[:, ::1] Sv
    C[0], S[0], chalf[0] = NULL, NULL, 0
    if sign:
        Sv = result
        S[0] = &Sv[0, 0]
    else:
        C[0] = <void *>_data_ptr(result)
        chalf[0] = result.dtype == np.float16
    return 0


def fsgemm(A, const uint64_t[:, ::1] Bt not None, Py_ssize_t n_bits,
           const uint64_t[:, ::1] mask=None,
           bint sign=False, out=None, bint transpose_a=False, int n_threads=1):
    """Float rows times packed signs: ``C[m, n] = sum_k A[m, k] s(Bt[k], n)``.

    ``A``: float32 or float16 ``(M, K)``, or with ``transpose_a`` the
    transpose of a ``(K, M)`` array (read in place).  ``Bt`` holds one packed
    row per k (``(K, ceil(n_bits/64))``).  Returns the ``(M, n_bits)`` matrix
    (float32, or written into ``out``, float32 or float16; zero where ``mask``
    has a 0 bit), or with ``sign=True`` only its packed signs
    ``(M, ceil(n_bits/64))`` (``C >= 0``).  Sums run in float32 in order k.
    """
    if isinstance(A, np.ndarray) and not A.flags.aligned:
        A = _realign(A)
    cdef skbnn_fview v = _float_view(A, transpose_a, "A")
    cdef size_t M = A.shape[1] if transpose_a else A.shape[0]
    cdef size_t K = A.shape[0] if transpose_a else A.shape[1]
    cdef size_t N = n_bits
    if n_bits < 0:
        raise ValueError("n_bits must be >= 0")
    if <size_t>Bt.shape[0] != K or <size_t>Bt.shape[1] != _words(N):
        raise ValueError(f"Bt must have shape ({K}, {_words(N)}), got "
                         f"({Bt.shape[0]}, {Bt.shape[1]})")
    if mask is not None and (<size_t>mask.shape[0] != M or <size_t>mask.shape[1] != _words(N)):
        raise ValueError("mask must be packed (M, ceil(n_bits/64))")
    if _misaligned_at(&Bt[0, 0], 8, Bt.shape[0] * Bt.shape[1]):
        Bt = _realign(Bt)
    if mask is not None and _misaligned_at(&mask[0, 0], 8, mask.shape[0] * mask.shape[1]):
        mask = _realign(mask)
    result = _float_out(out, M, N, sign)
    if M == 0 or N == 0:
        return result
    if K == 0:
        return _empty_sums(result, M, N, sign)
    cdef const uint64_t *mk = &mask[0, 0] if mask is not None else NULL
    cdef void *C
    cdef uint64_t *S
    cdef int chalf
    _out_pointers(result, sign, &C, &S, &chalf)
    with nogil:
        skbnn_fsgemm(v, M, K, &Bt[0, 0], N, C, chalf, S, mk, n_threads)
    return result


def fgemm(A, const float[:, ::1] B not None, bint sign=False, out=None, bint transpose_a=False,
          int n_threads=1):
    """Float product ``A @ B``, one float32 fused multiply-add per term in
    order k, or its packed signs; ``A``, ``out`` and ``transpose_a`` as in
    :func:`fsgemm`."""
    if isinstance(A, np.ndarray) and not A.flags.aligned:
        A = _realign(A)
    cdef skbnn_fview v = _float_view(A, transpose_a, "A")
    cdef size_t M = A.shape[1] if transpose_a else A.shape[0]
    cdef size_t K = A.shape[0] if transpose_a else A.shape[1]
    cdef size_t N = B.shape[1]
    if <size_t>B.shape[0] != K:
        raise ValueError(f"inner dimensions differ: {K} and {B.shape[0]}")
    if _misaligned_at(&B[0, 0], 4, B.shape[0] * B.shape[1]):
        B = _realign(B)
    result = _float_out(out, M, N, sign)
    if M == 0 or N == 0:
        return result
    if K == 0:
        return _empty_sums(result, M, N, sign)
    cdef void *C
    cdef uint64_t *S
    cdef int chalf
    _out_pointers(result, sign, &C, &S, &chalf)
    with nogil:
        skbnn_fgemm(v, M, K, &B[0, 0], N, C, chalf, S, n_threads)
    return result


def fdot_bits(const float[:, ::1] X not None, const uint64_t[:, ::1] W not None, out=None,
              int n_threads=1):
    """Float rows dotted with packed sign rows: ``C[m, j] = sum_k X[m, k]
    s(W[j], k)`` (``W``: ``(N, ceil(K/64))``), float32 ``(M, N)``, written
    into ``out`` when given.  Sixteen partial sums in a fixed order, so every
    ISA path and thread count gives the same bits."""
    cdef size_t M = X.shape[0], K = X.shape[1], N = W.shape[0]
    if <size_t>W.shape[1] != _words(K):
        raise ValueError(f"W must have {_words(K)} words per row, got {W.shape[1]}")
    if _misaligned_at(&X[0, 0], 4, X.shape[0] * X.shape[1]):
        X = _realign(X)
    if _misaligned_at(&W[0, 0], 8, W.shape[0] * W.shape[1]):
        W = _realign(W)
    result = _float_out(out, M, N, False, allow_half=False)
    if M == 0 or N == 0:
        return result
    if K == 0:
        return _empty_sums(result, M, N, False)
    cdef float[:, ::1] C = result
    with nogil:
        skbnn_fdot_bits(&X[0, 0], M, K, &W[0, 0], N, &C[0, 0], n_threads)
    return result


# Z's element type for skbnn_bn_forward (SKBNN_Z_FLOAT32, _INT32, _INT16, _FLOAT16)
_BN_Z_KINDS = {np.dtype(np.float32): 0, np.dtype(np.int32): 1, np.dtype(np.int16): 2,
               np.dtype(np.float16): 3}


def bn_forward(Z, const float[::1] bias not None, bint l2, float eps, float psi_floor,
               bint round_half, float[::1] mu not None, float[::1] psi not None,
               uint64_t[:, ::1] bits not None, uint64_t[:, ::1] mask=None,
               uint64_t[:, ::1] pre_bits=None, float[::1] omega=None, bint omega_pre_bias=False,
               float[:, ::1] A_out=None, int n_threads=1):
    """Training-time batch-norm epilogue over ``Z`` (``(B, n)`` int32, int16,
    float32 or float16, C-contiguous; int16 and float16 give the results of
    int32 and float32 holding the same values): batch ``mu``, ``psi`` (l1 mean absolute deviation
    floored at ``psi_floor``, or l2 ``sqrt(var + eps)``; float16-rounded with
    ``round_half``) and the output ``A = (Z - mu) / psi + bias`` kept as
    packed signs ``bits``, optionally with the packed STE mask ``|A| <= 1``,
    the packed signs of ``A - bias`` (``pre_bits``), ``omega = mean |A|`` (of
    ``A - bias`` with ``omega_pre_bias``) and ``A`` itself (``A_out``, which
    may be ``Z`` when float32).  All outputs are written in place.
    """
    Z = _bn_z(Z)
    cdef size_t B = Z.shape[0], n = Z.shape[1], wn = _words(n)
    if <size_t>bias.shape[0] != n or <size_t>mu.shape[0] != n or <size_t>psi.shape[0] != n:
        raise ValueError("bias, mu and psi must have one entry per channel")
    for name, arr in (("bits", bits), ("mask", mask), ("pre_bits", pre_bits)):
        if arr is not None and (arr.shape[0] != B or arr.shape[1] != wn):
            raise ValueError(f"{name} must have shape ({B}, {wn})")
    if omega is not None and <size_t>omega.shape[0] != n:
        raise ValueError("omega must have one entry per channel")
    if A_out is not None and (<size_t>A_out.shape[0] != B or <size_t>A_out.shape[1] != n):
        raise ValueError(f"A_out must have shape ({B}, {n})")
    if _misaligned_at(&bias[0], 4, bias.shape[0]):
        bias = _realign(bias)
    _aligned(&mu[0], 4, mu.shape[0], "mu")
    _aligned(&psi[0], 4, psi.shape[0], "psi")
    _aligned(&bits[0, 0], 8, bits.shape[0] * bits.shape[1], "bits")
    if mask is not None:
        _aligned(&mask[0, 0], 8, mask.shape[0] * mask.shape[1], "mask")
    if pre_bits is not None:
        _aligned(&pre_bits[0, 0], 8, pre_bits.shape[0] * pre_bits.shape[1], "pre_bits")
    if omega is not None:
        _aligned(&omega[0], 4, omega.shape[0], "omega")
    if A_out is not None:
        _aligned(&A_out[0, 0], 4, A_out.shape[0] * A_out.shape[1], "A_out")
    if B == 0 or n == 0:
        return
    cdef const void *pz = _data_ptr(Z)
    cdef int z_int = _BN_Z_KINDS[Z.dtype]
    cdef uint64_t *pm = &mask[0, 0] if mask is not None else NULL
    cdef uint64_t *pp = &pre_bits[0, 0] if pre_bits is not None else NULL
    cdef float *po = &omega[0] if omega is not None else NULL
    cdef float *pa = &A_out[0, 0] if A_out is not None else NULL
    with nogil:
        skbnn_bn_forward(pz, z_int, B, n, &bias[0], l2, eps, psi_floor, round_half, &mu[0],
                         &psi[0], &bits[0, 0], pm, pp, po, omega_pre_bias, pa, n_threads)


def _bn_z(Z):
    """``Z`` checked as batch-norm pre-activations (aligned: a copy if not)."""
    if (not isinstance(Z, np.ndarray) or Z.ndim != 2 or Z.dtype not in _BN_Z_KINDS
            or not Z.flags.c_contiguous):
        raise TypeError("Z must be a 2-D C-contiguous int32 or float32 (or int16 or float16) "
                        "array")
    return Z if Z.flags.aligned else _realign(Z)


_BN_STAT_MODES = {"sum": 0, "l1": 1, "l2": 2}


def bn_stats_add(Z, str mode, const float[::1] mu not None, float[::1] acc not None,
                 int n_threads=1):
    """``acc[c] +=`` the sum over the rows of ``Z`` (as in :func:`bn_forward`)
    of ``z`` (``mode='sum'``), ``|z - mu[c]|`` ('l1') or ``(z - mu[c])^2``
    ('l2'): the statistics of one part of a batch normalised as one, formed
    exactly as :func:`bn_forward` forms a batch's sums and then added."""
    Z = _bn_z(Z)
    if mode not in _BN_STAT_MODES:
        raise ValueError(f"mode must be one of {sorted(_BN_STAT_MODES)}, got {mode!r}")
    cdef size_t B = Z.shape[0], n = Z.shape[1]
    if <size_t>mu.shape[0] != n or <size_t>acc.shape[0] != n:
        raise ValueError("mu and acc must have one entry per channel")
    _aligned(&mu[0], 4, mu.shape[0], "mu")
    _aligned(&acc[0], 4, acc.shape[0], "acc")
    if B == 0 or n == 0:
        return
    cdef const void *pz = _data_ptr(Z)
    cdef int z_int = _BN_Z_KINDS[Z.dtype], m = _BN_STAT_MODES[mode], rc
    with nogil:
        rc = skbnn_bn_stats_add(pz, z_int, B, n, m, &mu[0], &acc[0], n_threads)
    if rc != 0:
        raise MemoryError("bn_stats_add: no memory for the per-channel sums")


def bn_apply(Z, const float[::1] mu not None, const float[::1] psi not None,
             const float[::1] bias not None, uint64_t[:, ::1] bits not None,
             float[:, ::1] A_out=None, int n_threads=1):
    """The output pass of :func:`bn_forward` with given ``mu`` and ``psi``:
    the packed signs of ``A = (Z - mu) / psi + bias`` into ``bits`` and,
    when given, ``A`` into ``A_out`` (which may be ``Z`` when float32)."""
    Z = _bn_z(Z)
    cdef size_t B = Z.shape[0], n = Z.shape[1], wn = _words(n)
    for name, arr in (("mu", mu), ("psi", psi), ("bias", bias)):
        if <size_t>arr.shape[0] != n:
            raise ValueError(f"{name} must have one entry per channel")
    if <size_t>bits.shape[0] != B or <size_t>bits.shape[1] != wn:
        raise ValueError(f"bits must have shape ({B}, {wn})")
    if A_out is not None and (<size_t>A_out.shape[0] != B or <size_t>A_out.shape[1] != n):
        raise ValueError(f"A_out must have shape ({B}, {n})")
    if _misaligned_at(&mu[0], 4, mu.shape[0]):
        mu = _realign(mu)
    if _misaligned_at(&psi[0], 4, psi.shape[0]):
        psi = _realign(psi)
    if _misaligned_at(&bias[0], 4, bias.shape[0]):
        bias = _realign(bias)
    _aligned(&bits[0, 0], 8, bits.shape[0] * bits.shape[1], "bits")
    if A_out is not None:
        _aligned(&A_out[0, 0], 4, A_out.shape[0] * A_out.shape[1], "A_out")
    if B == 0 or n == 0:
        return
    cdef const void *pz = _data_ptr(Z)
    cdef int z_int = _BN_Z_KINDS[Z.dtype]
    cdef float *pa = &A_out[0, 0] if A_out is not None else NULL
    with nogil:
        skbnn_bn_apply(pz, z_int, B, n, &mu[0], &psi[0], &bias[0], &bits[0, 0], pa, n_threads)


def bn_backward_bits(G, const float[::1] psi not None, const uint64_t[:, ::1] bits not None,
                     const float[::1] omega not None, float[::1] G_b not None,
                     int n_threads=1):
    """Batch-norm backward on bits, in place: ``G`` (``(B, n)`` float16 or
    float32) holds dL/dA and receives dL/dZ = ``(v - mean v) - mean(v s omega) s``
    with ``v = G / psi`` and ``s = +-1`` from ``bits``; ``G_b`` receives the
    column sums of the incoming ``G`` (the bias gradient)."""
    if (not isinstance(G, np.ndarray) or G.ndim != 2 or G.dtype not in (np.float16, np.float32)
            or not G.flags.c_contiguous or not G.flags.writeable):
        raise TypeError("G must be a writable 2-D C-contiguous float16 or float32 array")
    cdef size_t B = G.shape[0], n = G.shape[1]
    if (<size_t>psi.shape[0] != n or <size_t>omega.shape[0] != n
            or <size_t>G_b.shape[0] != n):
        raise ValueError("psi, omega and G_b must have one entry per channel")
    if <size_t>bits.shape[0] != B or <size_t>bits.shape[1] != _words(n):
        raise ValueError(f"bits must have shape ({B}, {_words(n)})")
    if _misaligned_at(&psi[0], 4, psi.shape[0]):
        psi = _realign(psi)
    if _misaligned_at(&omega[0], 4, omega.shape[0]):
        omega = _realign(omega)
    if _misaligned_at(&bits[0, 0], 8, bits.shape[0] * bits.shape[1]):
        bits = _realign(bits)
    _aligned(&G_b[0], 4, G_b.shape[0], "G_b")
    if B == 0 or n == 0:
        return
    cdef void *pg = <void *>_data_ptr(G)
    cdef int half = G.dtype == np.float16
    with nogil:
        skbnn_bn_backward_bits(pg, half, B, n, &psi[0], &bits[0, 0], &omega[0], &G_b[0],
                               n_threads)


SOLVERS = {"adam": 0, "sgd": 1, "bop": 2}


cdef void *_state_ptr(object arr, bint half, tuple shape, str name) except? NULL:
    """Pointer to a C-contiguous, aligned, writable float16/float32 state
    array (updated in place, so never copied); NULL when it is empty."""
    cdef uint16_t[:, ::1] h
    cdef float[:, ::1] f
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(arr).__name__}")
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
    if arr.dtype != (np.float16 if half else np.float32):
        raise TypeError(f"{name} must be {'float16' if half else 'float32'} like M1, "
                        f"got {arr.dtype}")
    if half:
        h = arr.view(np.uint16)  # refuses read-only and non-contiguous arrays
        if arr.size == 0:
            return NULL
        _aligned(&h[0, 0], 2, arr.size, name)
        return <void *>&h[0, 0]
    f = arr
    if arr.size == 0:
        return NULL
    _aligned(&f[0, 0], 4, arr.size, name)
    return <void *>&f[0, 0]


def optimizer_step(str solver, V, M1, M2, const uint64_t[:, ::1] gbits,
                   const float[:, ::1] gfloat, float gscale, hyper, bint clip_weights,
                   uint64_t[:, ::1] packed, bint cancel=True, round_key=None,
                   int n_threads=1):
    """One optimiser step over a layer's latent weights (neuron-major, in place).

    ``V``, ``M1``, ``M2``: float16 or float32 arrays ``(n_out, n_in)`` (``V``
    and ``M2`` may be None where the solver has none: Bop keeps the weights
    as the bits of ``packed``, SGD has one moment).  The gradient is
    ``+-gscale`` from the bits ``gbits`` or ``gfloat * gscale`` (exactly one
    of them), zeroed where ``|V| >= 1`` when ``cancel`` (gradient
    cancellation: latent weights, not biases).  ``hyper`` = (lr, beta_1, beta_2,
    epsilon, momentum, threshold).  ``packed`` receives the new weight signs.
    ``round_key``: None rounds float16 stores to nearest even; an integer
    in [0, 2**64) rounds them stochastically, each element's draw a hash of
    the key and its (row, column), so results do not depend on the path or
    the thread count.  Returns the number of sign flips.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {sorted(SOLVERS)}, got {solver!r}")
    cdef int s = SOLVERS[solver]
    cdef size_t n_out = packed.shape[0], n_in
    if not isinstance(M1, np.ndarray) or M1.ndim != 2:
        raise TypeError("M1 must be a 2-D NumPy array (the first moment)")
    if M1.dtype not in (np.float16, np.float32):
        raise TypeError(f"the optimizer state must be float16 or float32, got {M1.dtype}")
    n_in = M1.shape[1]
    shape = (n_out, n_in)
    if <size_t>packed.shape[1] != _words(n_in):
        raise ValueError("packed weights do not match the state")
    if packed.shape[0] and packed.shape[1]:
        _aligned(&packed[0, 0], 8, packed.shape[0] * packed.shape[1], "packed")
    cdef bint half = M1.dtype == np.float16
    cdef void *pv = NULL
    cdef void *p1 = _state_ptr(M1, half, shape, "M1")
    cdef void *p2 = NULL
    if s != SKBNN_SOLVER_BOP:
        pv = _state_ptr(V, half, shape, "V")
    if s == SKBNN_SOLVER_ADAM:
        p2 = _state_ptr(M2, half, shape, "M2")
    if (gbits is None) == (gfloat is None):
        raise ValueError("give exactly one of gbits and gfloat")
    cdef const uint64_t *gb = NULL
    cdef const float *gf = NULL
    if gbits is not None:
        if <size_t>gbits.shape[0] != n_out or <size_t>gbits.shape[1] != _words(n_in):
            raise ValueError("gbits does not match the weights")
        if n_out and n_in:
            if _misaligned_at(&gbits[0, 0], 8, gbits.shape[0] * gbits.shape[1]):
                gbits = _realign(gbits)
            gb = &gbits[0, 0]
    else:
        if <size_t>gfloat.shape[0] != n_out or <size_t>gfloat.shape[1] != n_in:
            raise ValueError("gfloat does not match the weights")
        if n_out and n_in:
            if _misaligned_at(&gfloat[0, 0], 4, gfloat.shape[0] * gfloat.shape[1]):
                gfloat = _realign(gfloat)
            gf = &gfloat[0, 0]
    hp_arr = np.asarray(hyper, dtype=np.float32)
    if hp_arr.shape != (6,):
        raise ValueError("hyper must hold 6 values")
    cdef float[::1] hp = hp_arr
    cdef int64_t flips = 0
    cdef uint64_t key = 0
    cdef int flags = (1 if clip_weights else 0) | (2 if cancel else 0)
    if round_key is not None:
        if not 0 <= round_key < 2**64:
            raise ValueError(f"round_key must be in [0, 2**64), got {round_key}")
        key = round_key
        flags |= 4
    if n_out == 0 or n_in == 0:
        return 0
    with nogil:
        flips = skbnn_optimizer_step(s, half, pv, p1, p2, gb, gf, gscale, n_out, n_in, &hp[0],
                                     flags, key, &packed[0, 0], n_threads)
    return flips


# ---------------------------------------------------------------- convolutions
cdef extern from "bnn_kernels.h" nogil:
    int SKBNN_DT_INT16, SKBNN_DT_INT32, SKBNN_DT_FLOAT16, SKBNN_DT_FLOAT32
    int skbnn_conv2d_bits(const uint64_t *X, size_t n, size_t H, size_t W, size_t C,
                          const uint64_t *Wp, size_t Cout, size_t k, size_t pad, void *out,
                          int out16, int n_threads)
    int skbnn_conv2d_real(const float *X, size_t n, size_t H, size_t W, size_t C,
                          const uint64_t *Wp, size_t Cout, size_t k, size_t pad, void *out,
                          int out_half, int n_threads)
    int skbnn_conv2d_input_grad(const void *G, int g_half, size_t n, size_t H, size_t W,
                                size_t C, const uint64_t *Wp, size_t Cout, size_t k,
                                size_t pad, void *out, int out_half, const uint64_t *mask,
                                int n_threads)
    int skbnn_conv2d_weight_grad(const void *G, int g_half, const void *X, int x_bits,
                                 size_t n, size_t H, size_t W, size_t C, size_t Cout, size_t k,
                                 size_t pad, float *dW, uint64_t *Sbits, int n_threads)
    void skbnn_maxpool2x2_bits(const uint64_t *X, size_t n, size_t H, size_t W, size_t C,
                               uint64_t *out, uint64_t *argmax, int n_threads)
    void skbnn_maxpool2x2(const void *X, int dtype, size_t n, size_t H, size_t W, size_t C,
                          void *out, uint64_t *argmax, int n_threads)
    void skbnn_maxpool2x2_backward(const void *G, int g_half, const uint64_t *argmax,
                                   const uint64_t *mask, size_t n, size_t H, size_t W,
                                   size_t C, void *out, int out_half, int n_threads)
    void skbnn_flatten_bits(const uint64_t *X, size_t n, size_t P, size_t C, uint64_t *out,
                            int n_threads)


MAX_INT16_CONV_FAN_IN = 32767  # |sum| <= k*k*C must fit an int16 output


cdef int _check_threads(int n_threads) except -1:
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    return 0


cdef int _check_map(Py_ssize_t n, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C) except -1:
    if n < 0:
        raise ValueError(f"n (samples) must be >= 0, got {n}")
    if H < 1 or W < 1:
        raise ValueError(f"the map must be at least 1 x 1 pixels, got H={H}, W={W}")
    if C < 1:
        raise ValueError(f"C (channels) must be >= 1, got {C}")
    return 0


cdef tuple _conv_geometry(Py_ssize_t n, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,
                          Py_ssize_t k, Py_ssize_t pad):
    """Validate a convolution's geometry; returns (Ho, Wo)."""
    _check_map(n, H, W, C)
    if k < 1:
        raise ValueError(f"kernel size k must be >= 1, got {k}")
    if pad < 0 or pad >= k:
        raise ValueError(f"pad must be in [0, k - 1] = [0, {k - 1}], got {pad}")
    cdef Py_ssize_t Ho = H + 2 * pad - k + 1, Wo = W + 2 * pad - k + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"a {k} x {k} kernel does not fit the {H} x {W} map padded by {pad}")
    return Ho, Wo


cdef int _check_rows(Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t want_rows,
                     Py_ssize_t want_cols, str name, str what) except -1:
    if rows != want_rows or cols != want_cols:
        raise ValueError(f"{name} must have shape ({want_rows}, {want_cols}) ({what}), got "
                         f"({rows}, {cols})")
    return 0


cdef str _dtype_names(tuple dtypes):
    names = [np.dtype(d).name for d in dtypes]  # (no negative indices: wraparound is off)
    last = len(names) - 1
    return names[0] if last == 0 else ", ".join(names[:last]) + " or " + names[last]


cdef object _map_input(object A, str name, tuple dtypes, Py_ssize_t rows, Py_ssize_t cols,
                       str what):
    """A 2-D C-contiguous input of one of ``dtypes`` and shape (rows, cols),
    realigned if its elements are misaligned (read-only arrays are fine)."""
    if not isinstance(A, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(A).__name__}")
    if A.dtype not in dtypes:
        raise TypeError(f"{name} must be {_dtype_names(dtypes)}, got {A.dtype}")
    if A.ndim != 2:
        raise ValueError(f"{name} must be 2-D ({what}), got {A.ndim}-D")
    _check_rows(A.shape[0], A.shape[1], rows, cols, name, what)
    if not A.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not A.flags.aligned:
        A = _realign(A)
    return A


cdef object _map_output(object out, str name, tuple dtypes, Py_ssize_t rows, Py_ssize_t cols,
                        object default, tuple inputs):
    """The caller's writable C-contiguous aligned ``out`` (one of ``dtypes``,
    shape (rows, cols), not overlapping the inputs) or a new array."""
    if out is None:
        return np.empty((rows, cols), dtype=default)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(out).__name__}")
    if out.dtype not in dtypes:
        raise TypeError(f"{name} must be {_dtype_names(dtypes)}, got {out.dtype}")
    if out.shape != (rows, cols):
        raise ValueError(f"{name} must have shape ({rows}, {cols}), got {out.shape}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"{name} must be a writable C-contiguous array")
    if not out.flags.aligned:
        raise _misaligned(name, out.dtype.itemsize)
    for arr in inputs:
        if arr is not None and np.may_share_memory(out, arr):
            raise ValueError(f"{name} must not overlap the inputs")
    return out


cdef object _packed_input(object A, str name, Py_ssize_t rows, Py_ssize_t cols, str what):
    return _map_input(A, name, (np.uint64,), rows, cols, what)


cdef object _conv_weights(object Wp, Py_ssize_t KK):
    """The packed weights of a convolution with fan-in ``KK = k*k*C``:
    uint64 ``(Cout, ceil(KK/64))``, Cout read from the array."""
    if not isinstance(Wp, np.ndarray) or Wp.ndim != 2:
        raise TypeError("Wp must be a 2-D uint64 NumPy array")
    return _packed_input(Wp, "Wp", Wp.shape[0], _words(KK), "Cout rows of ceil(k*k*C/64) words")


def conv2d_bits(X, Py_ssize_t n, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C, Wp,
                Py_ssize_t k, Py_ssize_t pad, out=None, int n_threads=1):
    """Exact binary convolution of packed NHWC maps (stride 1, zero padding).

    ``X``: uint64 ``(n*H*W, ceil(C/64))`` (bit c of row ``(s*H + y)*W + x``
    = channel c, 1 = +1); ``Wp``: uint64 ``(Cout, ceil(k*k*C/64))`` (bit
    ``(ky*k + kx)*C + c``, tail bits 0).  Returns ``(n*Ho*Wo, Cout)`` int32
    (or writes ``out``, int32 or int16) with ``out[(s,oy,ox), o]`` = the sum
    of ``x * w`` over the taps whose input pixel ``(oy+ky-pad, ox+kx-pad)``
    lies inside the map: a padded tap contributes 0.  int16 needs
    ``k*k*C <= 32767``.
    """
    _check_threads(n_threads)
    Ho, Wo = _conv_geometry(n, H, W, C, k, pad)
    cdef Py_ssize_t KK = k * k * C
    X = _packed_input(X, "X", n * H * W, _words(C), "n*H*W rows of ceil(C/64) words")
    Wp = _conv_weights(Wp, KK)
    cdef Py_ssize_t Cout = Wp.shape[0]
    cdef const uint64_t[:, ::1] xv = X
    cdef const uint64_t[:, ::1] wv = Wp
    if not _tail_is_clear(wv, KK):
        raise ValueError(f"Wp has non-zero padding bits past k*k*C={KK}")
    result = _map_output(out, "out", (np.int32, np.int16), n * Ho * Wo, Cout, np.int32,
                         (X, Wp))
    cdef int out16 = result.dtype == np.int16
    if out16 and KK > MAX_INT16_CONV_FAN_IN:
        raise ValueError(f"int16 output needs k*k*C <= {MAX_INT16_CONV_FAN_IN} (sums could "
                         f"overflow), got {KK}; use int32")
    if result.size == 0:
        return result
    cdef void *po = <void *>_data_ptr(result)
    cdef int rc
    with nogil:
        rc = skbnn_conv2d_bits(&xv[0, 0], n, H, W, C, &wv[0, 0], Cout, k, pad, po, out16,
                               n_threads)
    if rc != 0:
        raise MemoryError("conv2d_bits: out of memory")
    return result


def conv2d_real(X, Py_ssize_t n, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C, Wp,
                Py_ssize_t k, Py_ssize_t pad, out=None, int n_threads=1):
    """Convolution of a real-valued NHWC map with +/-1 weights (stride 1,
    exact zero padding): ``X`` float32 ``(n*H*W, C)``, ``Wp`` as in
    :func:`conv2d_bits`.  Returns float32 ``(n*Ho*Wo, Cout)`` (or writes
    ``out``, float32 or float16 rounded to nearest even).

    Summation order (the same bits on every ISA path and thread count):
    each entry is one float32 chain from +0.0 over the pixel's ``k*k*C``
    im2col entries ``j = (ky, kx, c)`` in ascending order (tap-major,
    channel-minor), adding ``x_j * w[o, j]`` (exact: ``w = +/-1``; padded
    taps are 0 and change nothing); float16 output rounds the float32 sum
    once."""
    _check_threads(n_threads)
    Ho, Wo = _conv_geometry(n, H, W, C, k, pad)
    cdef Py_ssize_t KK = k * k * C
    X = _map_input(X, "X", (np.float32,), n * H * W, C, "n*H*W rows of C channels")
    Wp = _conv_weights(Wp, KK)
    cdef Py_ssize_t Cout = Wp.shape[0]
    result = _map_output(out, "out", (np.float32, np.float16), n * Ho * Wo, Cout, np.float32,
                         (X, Wp))
    if result.size == 0:
        return result
    cdef const float[:, ::1] xv = X
    cdef const uint64_t[:, ::1] wv = Wp
    cdef void *po = <void *>_data_ptr(result)
    cdef int half = result.dtype == np.float16
    cdef int rc
    with nogil:
        rc = skbnn_conv2d_real(&xv[0, 0], n, H, W, C, &wv[0, 0], Cout, k, pad, po, half,
                               n_threads)
    if rc != 0:
        raise MemoryError("conv2d_real: out of memory")
    return result


def conv2d_input_grad(G, Py_ssize_t n, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C, Wp,
                      Py_ssize_t k, Py_ssize_t pad, out=None, mask=None, int n_threads=1):
    """Gradient of :func:`conv2d_bits` / :func:`conv2d_real` with respect to
    the input map.

    ``G``: float16 or float32 ``(n*Ho*Wo, Cout)`` (dL/d output), ``Wp`` the
    layer's packed weights.  Returns float32 ``(n*H*W, C)`` (or writes
    ``out``, float32 or float16 rounded to nearest even), zero where the
    optional packed ``mask`` ``(n*H*W, ceil(C/64))`` has a 0 bit.

    Summation order (the same bits on every ISA path and thread count):
    ``dX[(s,iy,ix), c]`` is one float32 chain from +0.0 over the taps
    ``(ky, kx)`` in row-major order and, within a tap, ``o = 0 .. Cout-1``,
    adding ``G[(s, iy-ky+pad, ix-kx+pad), o] * w[o, (ky,kx,c)]`` (exact:
    ``w = +/-1``; float16 ``G`` is converted exactly) where that output
    pixel exists (other taps contribute nothing); then the mask, then one
    rounding to float16 for a float16 ``out``."""
    _check_threads(n_threads)
    Ho, Wo = _conv_geometry(n, H, W, C, k, pad)
    cdef Py_ssize_t KK = k * k * C
    Wp = _conv_weights(Wp, KK)
    cdef Py_ssize_t Cout = Wp.shape[0]
    G = _map_input(G, "G", (np.float32, np.float16), n * Ho * Wo, Cout,
                   "n*Ho*Wo rows of Cout channels")
    if mask is not None:
        mask = _packed_input(mask, "mask", n * H * W, _words(C),
                             "n*H*W rows of ceil(C/64) words")
    result = _map_output(out, "out", (np.float32, np.float16), n * H * W, C, np.float32,
                         (G, Wp, mask))
    if result.size == 0:
        return result
    cdef const uint64_t[:, ::1] wv = Wp
    cdef const uint64_t[:, ::1] mv
    cdef const uint64_t *pm = NULL
    if mask is not None:
        mv = mask
        pm = &mv[0, 0]
    cdef const void *pg = _data_ptr(G) if G.size else NULL
    cdef int g_half = G.dtype == np.float16
    cdef void *po = <void *>_data_ptr(result)
    cdef int half = result.dtype == np.float16
    cdef const uint64_t *pw = &wv[0, 0] if Wp.size else NULL
    cdef int rc
    with nogil:
        rc = skbnn_conv2d_input_grad(pg, g_half, n, H, W, C, pw, Cout, k, pad, po, half, pm,
                                     n_threads)
    if rc != 0:
        raise MemoryError("conv2d_input_grad: out of memory")
    return result


def conv2d_weight_grad(G, X, Py_ssize_t n, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,
                       Py_ssize_t k, Py_ssize_t pad, bint sign=False, int n_threads=1):
    """Gradient of a convolution with respect to its (latent) weights.

    ``G``: float16 or float32 ``(n*Ho*Wo, Cout)``; ``X``: the layer input,
    packed uint64 ``(n*H*W, ceil(C/64))`` (binary layer) or float32
    ``(n*H*W, C)`` (real first layer).  Returns float32 ``(Cout, k*k*C)``
    ``dW[o, (ky,kx,c)] = sum over output pixels r of G[r, o] x[tap]``
    (padded taps contribute 0), or with ``sign=True`` only its packed signs
    ``(Cout, ceil(k*k*C/64))`` (``dW >= 0`` -> 1).

    Summation order (the same bits on every ISA path and thread count):
    each ``dW[o, j]`` is one float32 chain from +0.0 over the output rows
    ``r = (s, oy, ox)`` in ascending order (all samples), adding
    ``G[r, o] * x[r, j]``: packed X gives ``x = +/-1`` (exact products;
    padded taps 0 change nothing), float X one fused multiply-add per term
    (a single rounding, the same on every path).  The sign form packs
    ``dW >= 0`` of that float32 sum.  Scratch stays at about 1.5 MiB
    whatever ``n`` and the layer size (blocks of output channels and of
    columns, chunks of rows).
    """
    _check_threads(n_threads)
    Ho, Wo = _conv_geometry(n, H, W, C, k, pad)
    cdef Py_ssize_t KK = k * k * C
    if not isinstance(G, np.ndarray) or G.ndim != 2:
        raise TypeError("G must be a 2-D float16 or float32 NumPy array")
    cdef Py_ssize_t Cout = G.shape[1]
    G = _map_input(G, "G", (np.float32, np.float16), n * Ho * Wo, Cout,
                   "n*Ho*Wo rows of Cout channels")
    if not isinstance(X, np.ndarray):
        raise TypeError(f"X must be a NumPy array, got {type(X).__name__}")
    cdef int x_bits = X.dtype == np.uint64
    if x_bits:
        X = _packed_input(X, "X", n * H * W, _words(C), "n*H*W rows of ceil(C/64) words")
    else:
        X = _map_input(X, "X", (np.float32, np.uint64), n * H * W, C,
                       "n*H*W rows of C channels")
    if sign:
        result = np.zeros((Cout, _words(KK)), dtype=np.uint64)
    else:
        result = np.zeros((Cout, KK), dtype=np.float32)
    if Cout == 0:
        return result
    cdef const void *pg = _data_ptr(G) if G.size else NULL
    cdef const void *px = _data_ptr(X) if X.size else NULL
    cdef int g_half = G.dtype == np.float16
    cdef float *pd = NULL
    cdef uint64_t *ps = NULL
    if sign:
        ps = <uint64_t *>_data_ptr(result)
    else:
        pd = <float *>_data_ptr(result)
    cdef int rc
    with nogil:
        rc = skbnn_conv2d_weight_grad(pg, g_half, px, x_bits, n, H, W, C, Cout, k, pad, pd,
                                      ps, n_threads)
    if rc != 0:
        raise MemoryError("conv2d_weight_grad: out of memory")
    return result


_POOL_DTYPES = {np.dtype(np.int16): 0, np.dtype(np.int32): 1, np.dtype(np.float16): 2,
                np.dtype(np.float32): 3}


def maxpool2x2(X, Py_ssize_t n, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C, int n_threads=1):
    """2x2 max pooling, stride 2, ``Ho = H // 2``, ``Wo = W // 2`` (odd sizes
    drop the last row / column).

    ``X`` packed uint64 ``(n*H*W, ceil(C/64))``: returns ``(out, argmax)``
    with ``out`` packed ``(n*Ho*Wo, ceil(C/64))`` = OR of the window's bits.
    ``X`` int16, int32, float16 or float32 ``(n*H*W, C)``: ``out`` of the same
    dtype ``(n*Ho*Wo, C)`` (float16 compared as floats).  ``argmax``: packed
    ``(n*H*W, ceil(C/64))``, the bit of the FIRST window position, in the order
    (0,0), (0,1), (1,0), (1,1), holding the maximum (for bits: the first +1,
    or (0,0) when all four are -1); 0 outside every window."""
    _check_threads(n_threads)
    _check_map(n, H, W, C)
    cdef Py_ssize_t Ho = H // 2, Wo = W // 2, wc = _words(C)
    if not isinstance(X, np.ndarray):
        raise TypeError(f"X must be a NumPy array, got {type(X).__name__}")
    cdef int bits = X.dtype == np.uint64
    if bits:
        X = _packed_input(X, "X", n * H * W, wc, "n*H*W rows of ceil(C/64) words")
        out = np.empty((n * Ho * Wo, wc), dtype=np.uint64)
    else:
        X = _map_input(X, "X", (np.uint64, np.int16, np.int32, np.float16, np.float32),
                       n * H * W, C, "n*H*W rows of C channels")
        out = np.empty((n * Ho * Wo, C), dtype=X.dtype)
    argmax = np.empty((n * H * W, wc), dtype=np.uint64)
    if n == 0:
        return out, argmax
    cdef const void *px = _data_ptr(X)
    cdef void *po = <void *>_data_ptr(out) if out.size else NULL
    cdef uint64_t *pa = <uint64_t *>_data_ptr(argmax)
    cdef int dt = 0 if bits else _POOL_DTYPES[X.dtype]
    with nogil:
        if bits:
            skbnn_maxpool2x2_bits(<const uint64_t *>px, n, H, W, C, <uint64_t *>po, pa,
                                  n_threads)
        else:
            skbnn_maxpool2x2(px, dt, n, H, W, C, po, pa, n_threads)
    return out, argmax


def maxpool2x2_backward(G, argmax, Py_ssize_t n, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,
                        out=None, mask=None, int n_threads=1):
    """Backward of :func:`maxpool2x2`: ``G`` float16 or float32
    ``(n*Ho*Wo, C)``, ``argmax`` as returned by it; returns ``(n*H*W, C)``
    (dtype of ``G``, or writes ``out``, float16 or float32) with ``out[r, c]``
    = ``G[window of r, c]`` where the argmax bit (and the packed ``mask``
    bit, when given) of ``(r, c)`` is 1, else 0."""
    _check_threads(n_threads)
    _check_map(n, H, W, C)
    cdef Py_ssize_t Ho = H // 2, Wo = W // 2, wc = _words(C)
    G = _map_input(G, "G", (np.float32, np.float16), n * Ho * Wo, C,
                   "n*(H//2)*(W//2) rows of C channels")
    argmax = _packed_input(argmax, "argmax", n * H * W, wc, "n*H*W rows of ceil(C/64) words")
    if mask is not None:
        mask = _packed_input(mask, "mask", n * H * W, wc, "n*H*W rows of ceil(C/64) words")
    result = _map_output(out, "out", (np.float32, np.float16), n * H * W, C, G.dtype,
                         (G, argmax, mask))
    if result.size == 0:
        return result
    cdef const void *pg = _data_ptr(G) if G.size else NULL
    cdef const uint64_t *pa = <const uint64_t *>_data_ptr(argmax)
    cdef const uint64_t *pm = <const uint64_t *>_data_ptr(mask) if mask is not None else NULL
    cdef int g_half = G.dtype == np.float16
    cdef int o_half = result.dtype == np.float16
    cdef void *po = <void *>_data_ptr(result)
    with nogil:
        skbnn_maxpool2x2_backward(pg, g_half, pa, pm, n, H, W, C, po, o_half, n_threads)
    return result


def flatten_bits(X, Py_ssize_t n, Py_ssize_t P, Py_ssize_t C):
    """Concatenate each sample's P packed pixels: ``X`` uint64
    ``(n*P, ceil(C/64))`` -> ``(n, ceil(P*C/64))`` with bit ``p*C + c`` of
    row s = channel c of pixel p; tail bits 0 (padding bits of ``X`` are
    ignored)."""
    if n < 0 or P < 1 or C < 1:
        raise ValueError(f"need n >= 0, P >= 1 and C >= 1, got n={n}, P={P}, C={C}")
    X = _packed_input(X, "X", n * P, _words(C), "n*P rows of ceil(C/64) words")
    out = np.empty((n, _words(P * C)), dtype=np.uint64)
    if n == 0:
        return out
    cdef const uint64_t *px = <const uint64_t *>_data_ptr(X)
    cdef uint64_t *po = <uint64_t *>_data_ptr(out)
    with nogil:
        skbnn_flatten_bits(px, n, P, C, po, 1)
    return out
