"""Real-valued kernels (float16 storage, float x bits products, optimiser
sweeps) on every SIMD path against float32 NumPy references that add in the
same order, so the comparison is exact."""
import numpy as np
import pytest
from reference import pack, unpack

from skbnn import _kernels

F32 = np.float32


# ------------------------------------------------------------------ float16
def test_f16_to_f32_every_pattern(isa):
    h = np.arange(2**16, dtype=np.uint16)
    got = _kernels.f16_to_f32(h)
    want = h.view(np.float16).astype(np.float32)
    nan = np.isnan(want)
    np.testing.assert_array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))
    assert np.isnan(got[nan]).all()


def test_f32_to_f16_rounds_to_nearest_even(isa):
    rng = np.random.default_rng(0)
    x = np.concatenate([
        rng.normal(size=5000) * 10.0 ** rng.integers(-9, 6, size=5000),  # incl. subnormals
        [0.0, -0.0, 65504.0, 65519.0, 65520.0, 1e6, -1e6, np.inf, -np.inf, 6e-8, 3e-8, 2.9e-8],
        # exact ties between two halves: must go to the even one
        (np.arange(1, 2000) + 0.5) * 2.0**-10,
    ]).astype(np.float32)
    got = _kernels.f32_to_f16(x)
    with np.errstate(over="ignore"):  # NumPy warns on the values that become inf
        want = x.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(_kernels.f32_to_f16(np.array([np.nan], F32)).view(np.float16)).all()


# ------------------------------------------------------------------ products
def ordered_sum(terms):
    """sum over axis 1 in index order, in float32 (cumsum is sequential)."""
    return np.cumsum(terms, axis=1, dtype=F32)[:, -1, :]


def fma32(a, b, c):
    """float32 fused multiply-add, correctly rounded: a*b is exact in float64,
    TwoSum keeps the error of the float64 sum, and a float64 sum that lands
    exactly between two float32 values is resolved by the sign of that
    error (the only case where rounding twice could differ)."""
    p = a.astype(np.float64) * b.astype(np.float64)
    c64 = c.astype(np.float64)
    s = p + c64
    bb = s - p
    err = (p - (s - bb)) + (c64 - bb)
    r = s.astype(F32)
    r64 = r.astype(np.float64)
    other = np.where(s > r64, np.nextafter(r, F32(np.inf)), np.nextafter(r, F32(-np.inf)))
    o64 = other.astype(np.float64)
    tie = (s != r64) & (np.abs(s - r64) == np.abs(o64 - s))
    return np.where(tie & (np.sign(err) == np.sign(o64 - r64)), other, r)


def fma_sum(A, B):
    """``A @ B`` as the kernels compute it: one fused multiply-add per term,
    in order k, from 0."""
    acc = np.zeros((A.shape[0], B.shape[1]), F32)
    for k in range(A.shape[1]):
        acc = fma32(A[:, k, None], B[None, k, :], acc)
    return acc


def signed_sum(A, S):
    """The kernels' signed sum ``sum_k A[m, k] S[k, n]`` (S = +-1): ``2 P - T``
    with P the ordered float32 sum of A over the k where S = +1 and T the
    ordered sum of all of A."""
    P = ordered_sum(A[:, :, None] * (S[None] > 0).astype(F32))
    T = np.cumsum(A, axis=1, dtype=F32)[:, -1][:, None]
    return (P + P) - T


SHAPES = [(1, 1, 1), (5, 63, 64), (7, 64, 65), (3, 100, 130), (9, 17, 257), (4, 1, 3)]


@pytest.mark.parametrize("M,K,N", SHAPES)
def test_fsgemm_matches_ordered_reference(M, K, N, isa):
    rng = np.random.default_rng(M * 1000 + K + N)
    A = rng.normal(size=(M, K)).astype(F32)
    S = rng.choice([-1, 1], size=(K, N))
    Bt = pack(S)
    Bt.setflags(write=False)
    want = signed_sum(A, S)
    got = _kernels.fsgemm(A, Bt, N)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(unpack(_kernels.fsgemm(A, Bt, N, sign=True), N),
                                  np.where(want >= 0, 1, -1))
    keep = rng.random((M, N)) < 0.5
    np.testing.assert_array_equal(_kernels.fsgemm(A, Bt, N, mask=pack(keep)),
                                  np.where(keep, want, 0))


@pytest.mark.parametrize("M,K,N", SHAPES)
def test_fgemm_matches_ordered_reference(M, K, N, isa):
    rng = np.random.default_rng(M * 1000 + K + N + 1)
    A = rng.normal(size=(M, K)).astype(F32)
    B = rng.normal(size=(K, N)).astype(F32)
    want = fma_sum(A, B)
    np.testing.assert_array_equal(_kernels.fgemm(A, B), want)
    np.testing.assert_allclose(want, A.astype(np.float64) @ B, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(unpack(_kernels.fgemm(A, B, sign=True), N),
                                  np.where(want >= 0, 1, -1))


def dot_reference(X, S):
    """The dot-form kernel's order: 16 lanes (lane l takes k = 16c + l in
    order c; padding lanes read 0), P = the lane sums of X where S = +1, T =
    the lane sums of all of X, q = (P + P) - T, then the tree (l, l+8),
    (l, l+4), (l, l+2), (0, 1)."""
    M, K = X.shape
    kp = -(-K // 16) * 16
    Xp = np.zeros((M, kp), F32)
    Xp[:, :K] = X
    Sp = -np.ones((S.shape[0], kp))
    Sp[:, :K] = S
    pos = np.where(Sp[None] > 0, Xp[:, None, :], F32(0)).astype(F32)
    P = np.cumsum(pos.reshape(M, S.shape[0], kp // 16, 16), axis=2, dtype=F32)[:, :, -1, :]
    T = np.cumsum(Xp.reshape(M, kp // 16, 16), axis=1, dtype=F32)[:, -1, :]
    p = (P + P) - T[:, None, :]
    for h in (8, 4, 2, 1):
        p = p[..., :h] + p[..., h:2 * h]
    return p[..., 0]


@pytest.mark.parametrize("M,K,N", SHAPES + [(6, 784, 9), (4, 16, 4)])
def test_fdot_bits_matches_lane_order_reference(M, K, N, isa):
    rng = np.random.default_rng(M + 7 * K + N)
    X = rng.normal(size=(M, K)).astype(F32)
    S = rng.choice([-1, 1], size=(N, K))
    W = pack(S)
    W.setflags(write=False)
    want = dot_reference(X, S)
    np.testing.assert_array_equal(_kernels.fdot_bits(X, W), want)
    out = np.full((M, N), np.nan, F32)
    assert _kernels.fdot_bits(X, W, out=out, n_threads=2) is out
    np.testing.assert_array_equal(out, want)
    with pytest.raises(ValueError, match="words"):
        _kernels.fdot_bits(X, np.zeros((N, W.shape[1] + 1), np.uint64))


@pytest.mark.parametrize("M,K,N", [(5, 63, 64), (9, 17, 257), (3, 100, 130)])
def test_products_read_half_and_transposed_operands(M, K, N, isa):
    """float16 left operands (read exactly), transposed in place, float16 out."""
    rng = np.random.default_rng(K * N)
    A = rng.normal(size=(M, K)).astype(np.float16)
    At = np.ascontiguousarray(A.T)
    S = rng.choice([-1, 1], size=(K, N))
    Bt = pack(S)
    B = rng.normal(size=(K, N)).astype(F32)
    A32 = A.astype(F32)
    want_s = signed_sum(A32, S)
    want_g = fma_sum(A32, B)
    for op, kw in ((A, {}), (At, {"transpose_a": True})):
        np.testing.assert_array_equal(_kernels.fsgemm(op, Bt, N, **kw), want_s)
        np.testing.assert_array_equal(_kernels.fgemm(op, B, **kw), want_g)
        out = np.empty((M, N), np.float16)
        keep = rng.random((M, N)) < 0.5
        _kernels.fsgemm(op, Bt, N, mask=pack(keep), out=out, **kw)
        np.testing.assert_array_equal(out, np.where(keep, want_s, 0).astype(np.float16))
        _kernels.fgemm(op, B, out=out, **kw)
        np.testing.assert_array_equal(out, want_g.astype(np.float16))
    # a block of columns of a wider array, read transposed in place
    wide = np.zeros((K, M + 7), np.float16)
    wide[:, 3:3 + M] = At
    block = wide[:, 3:3 + M]
    assert not block.flags.c_contiguous
    for kw in ({}, {"n_threads": 2}):
        np.testing.assert_array_equal(
            _kernels.fsgemm(block, Bt, N, transpose_a=True, **kw), want_s)
        np.testing.assert_array_equal(_kernels.fgemm(block, B, transpose_a=True, **kw), want_g)
    with pytest.raises(ValueError, match="C-contiguous"):   # only read transposed
        _kernels.fgemm(np.ascontiguousarray(wide.T)[3:3 + M].T.T[:, ::2], B[: (K + 1) // 2])
    with pytest.raises(ValueError, match="out must be"):
        _kernels.fsgemm(A, Bt, N, out=np.empty((M, N + 1), F32))
    with pytest.raises(ValueError, match="sign"):
        _kernels.fgemm(A, B, sign=True, out=np.empty((M, N), F32))
    with pytest.raises(TypeError, match="float32 or float16"):
        _kernels.fsgemm(A.astype(np.float64), Bt, N)


def test_bgemm_into_out():
    rng = np.random.default_rng(3)
    A, B = pack(rng.choice([-1, 1], (7, 70))), pack(rng.choice([-1, 1], (5, 70)))
    out = np.empty((7, 5), np.int32)
    assert _kernels.bgemm(A, B, 70, out=out) is out
    np.testing.assert_array_equal(out, _kernels.bgemm(A, B, 70))
    with pytest.raises(ValueError, match="out must be"):
        _kernels.bgemm(A, B, 70, out=np.empty((7, 5), np.int64))


def test_products_do_not_depend_on_threads(isa):
    rng = np.random.default_rng(5)
    A = rng.normal(size=(67, 300)).astype(F32)
    Bt = pack(rng.choice([-1, 1], size=(300, 200)))
    B = rng.normal(size=(300, 200)).astype(F32)
    for n_threads in (2, 3):
        np.testing.assert_array_equal(_kernels.fsgemm(A, Bt, 200, n_threads=n_threads),
                                      _kernels.fsgemm(A, Bt, 200))
        np.testing.assert_array_equal(_kernels.fgemm(A, B, sign=True, n_threads=n_threads),
                                      _kernels.fgemm(A, B, sign=True))


def test_product_shape_errors():
    A = np.zeros((2, 3), F32)
    with pytest.raises(ValueError, match="Bt must have shape"):
        _kernels.fsgemm(A, np.zeros((4, 1), np.uint64), 10)
    with pytest.raises(ValueError, match="mask"):
        _kernels.fsgemm(A, np.zeros((3, 1), np.uint64), 10, mask=np.zeros((3, 1), np.uint64))
    with pytest.raises(ValueError, match="inner dimensions"):
        _kernels.fgemm(A, np.zeros((4, 2), F32))


# ------------------------------------ ragged shapes: K % 16, odd rows/columns
def on_portable(fn):
    """``fn()`` on the portable path (the reference every SIMD path matches)."""
    previous = _kernels.get_isa()
    _kernels.set_isa(_kernels.ISA_NAMES[0])  # the portable path
    try:
        return fn()
    finally:
        _kernels.set_isa(previous)


RAGGED_K = [1, 15, 17, 31, 33, 63, 65, 1000, 1001]


@pytest.mark.parametrize("K", RAGGED_K)
@pytest.mark.parametrize("M,N", [(1, 1), (2, 3), (3, 2), (5, 7), (8, 9)])
def test_fdot_bits_ragged_k_and_tiles(M, K, N, isa):
    """K not a multiple of 16 and tiles cut by odd M / N: every path gives
    the portable path's bits (the lane-order reference), close to float64."""
    rng = np.random.default_rng(M * 100003 + K * 101 + N)
    X = rng.normal(size=(M, K)).astype(F32)
    S = rng.choice([-1, 1], size=(N, K))
    W = pack(S)
    want = dot_reference(X, S)
    got = _kernels.fdot_bits(X, W)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, on_portable(lambda: _kernels.fdot_bits(X, W)))
    np.testing.assert_allclose(got, X.astype(np.float64) @ S.T, rtol=1e-4,
                               atol=1e-5 * np.sqrt(K))
    np.testing.assert_array_equal(_kernels.fdot_bits(X, W, n_threads=3), want)


def test_fdot_bits_ragged_k_ignores_stray_padding_bits(isa):
    """Bits past K in the last word (not written by pack) change nothing:
    padding lanes read 0 on every path."""
    rng = np.random.default_rng(11)
    for K in (1, 17, 1000):
        X = rng.normal(size=(5, K)).astype(F32)
        S = rng.choice([-1, 1], size=(3, K))
        W = pack(S)
        Wd = W.copy()
        if K % 64:
            Wd[:, -1] |= ~np.uint64((1 << (K % 64)) - 1)
        np.testing.assert_array_equal(_kernels.fdot_bits(X, Wd), dot_reference(X, S))


@pytest.mark.parametrize("M,K,N", [(1, 1, 1), (3, 5, 17), (5, 17, 40), (7, 33, 100),
                                   (6, 15, 1000), (2, 9, 1001), (5, 100, 95), (3, 64, 31)])
def test_fgemm_ragged_rows_and_columns(M, K, N, isa):
    """Row blocks of 1-3 rows and column blocks of fewer than 64 columns
    (float32 and float16 left operands, in place and transposed)."""
    rng = np.random.default_rng(M * 7919 + K * 31 + N)
    A = rng.normal(size=(M, K)).astype(F32)
    B = rng.normal(size=(K, N)).astype(F32)
    want = fma_sum(A, B)
    np.testing.assert_allclose(want, A.astype(np.float64) @ B, rtol=1e-4, atol=1e-4)
    Ah = A.astype(np.float16)
    want_h = fma_sum(Ah.astype(F32), B)
    for op, kw, w in ((A, {}, want), (np.ascontiguousarray(A.T), {"transpose_a": True}, want),
                      (Ah, {}, want_h),
                      (np.ascontiguousarray(Ah.T), {"transpose_a": True}, want_h)):
        got = _kernels.fgemm(op, B, **kw)
        np.testing.assert_array_equal(got, w)
        np.testing.assert_array_equal(got, on_portable(lambda: _kernels.fgemm(op, B, **kw)))
        np.testing.assert_array_equal(unpack(_kernels.fgemm(op, B, sign=True, **kw), N),
                                      np.where(w >= 0, 1, -1))
        out = np.empty((M, N), np.float16)
        _kernels.fgemm(op, B, out=out, n_threads=2, **kw)
        np.testing.assert_array_equal(out, w.astype(np.float16))


@pytest.mark.parametrize("M,K,N", [(1, 1, 1), (3, 5, 17), (5, 17, 40), (7, 33, 100),
                                   (6, 15, 1000), (2, 9, 1001), (9, 1000, 65)])
def test_fsgemm_ragged_rows_and_columns(M, K, N, isa):
    rng = np.random.default_rng(M * 7907 + K * 37 + N)
    A = rng.normal(size=(M, K)).astype(F32)
    S = rng.choice([-1, 1], size=(K, N))
    Bt = pack(S)
    want = signed_sum(A, S)
    np.testing.assert_allclose(want, A.astype(np.float64) @ S, rtol=1e-4,
                               atol=1e-5 * np.sqrt(K))
    keep = rng.random((M, N)) < 0.5
    for op, kw in ((A, {}), (np.ascontiguousarray(A.T), {"transpose_a": True})):
        got = _kernels.fsgemm(op, Bt, N, **kw)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got, on_portable(lambda: _kernels.fsgemm(op, Bt, N, **kw)))
        np.testing.assert_array_equal(_kernels.fsgemm(op, Bt, N, mask=pack(keep), n_threads=3,
                                                      **kw), np.where(keep, want, 0))
        np.testing.assert_array_equal(unpack(_kernels.fsgemm(op, Bt, N, sign=True, **kw), N),
                                      np.where(want >= 0, 1, -1))


# ------------------------------------------------------------------ optimisers
HYPER = (1e-3, 0.9, 0.999, 1e-8, 0.9, 1e-4)


def fmix32(h):
    """murmur3's 32-bit finaliser on uint32 arrays."""
    h = np.asarray(h, dtype=np.uint64) & 0xFFFFFFFF
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h


GOLDEN = 0x9E3779B1


def sr_uniforms(round_key, array, shape):
    """The documented draws of stochastic rounding: array 0 = V, 1 = M1, 2 = M2."""
    lo, hi = round_key & 0xFFFFFFFF, round_key >> 32
    key = fmix32(lo ^ int(fmix32((hi + (array + 1) * GOLDEN) & 0xFFFFFFFF)))
    rows = np.arange(shape[0], dtype=np.uint64)
    row_key = fmix32(key ^ fmix32(rows ^ fmix32(GOLDEN)))
    cols = np.arange(shape[1], dtype=np.uint64)
    r = fmix32(row_key[:, None] + cols[None, :] * GOLDEN)
    return (r >> 8).astype(np.float64) * 2.0**-24


def stochastic_half(x, u):
    """float32 -> float16 rounding the magnitude up with probability
    (|x| - lo) / (hi - lo), lo and hi the float16 neighbours of |x|."""
    a = np.abs(x.astype(np.float64))
    with np.errstate(over="ignore"):
        lo = np.minimum(a, 65504.0).astype(np.float16)
    lo = np.where(lo.astype(np.float64) > a, np.nextafter(lo, np.float16(0)), lo)
    with np.errstate(over="ignore"):
        hi = np.nextafter(lo, np.float16(np.inf))
    # past the largest finite half, inf is reached as if it were 2**16
    hi64 = np.where(np.isinf(hi), 65536.0, hi.astype(np.float64))
    with np.errstate(invalid="ignore"):
        frac = (a - lo.astype(np.float64)) / (hi64 - lo.astype(np.float64))
    mag = np.where(u < frac, hi, lo)
    return np.where(np.signbit(x), -mag, mag).astype(np.float16)


def reference_step(solver, half, V, M1, M2, gbits, gfloat, gscale, hyper, clip, packed,
                   round_key=None):
    """The documented update in float32 NumPy, state rounded once when stored
    (to nearest even, or stochastically with ``round_key``)."""
    lr, b1, b2, eps, mom, tau = (F32(h) for h in hyper)
    n_in = M1.shape[1]
    if gbits is not None:
        g = np.where(unpack(gbits, n_in) > 0, F32(gscale), -F32(gscale)).astype(F32)
    else:
        g = gfloat * F32(gscale)
    m1 = M1.astype(F32)

    def store(x, array):
        if not half:
            return x.astype(F32)
        if round_key is None:
            return x.astype(np.float16)
        return stochastic_half(x, sr_uniforms(round_key, array, x.shape))
    if solver == "bop":
        m1 = (F32(1) - lr) * m1 + lr * g
        w_pos = unpack(packed, n_in) > 0
        flip = (np.abs(m1) > tau) & ((m1 >= 0) == w_pos)
        return None, store(m1, 1), None, pack(np.where(w_pos ^ flip, 1, -1))
    v = V.astype(F32)
    g = np.where(np.abs(v) >= 1, F32(0), g)
    if solver == "adam":
        # float16 state keeps sqrt(m2), the gradient's running RMS
        m2 = M2.astype(F32)
        m2 = b2 * (m2 * m2 if half else m2) + (F32(1) - b2) * (g * g)
        m1 = b1 * m1 + (F32(1) - b1) * g
        rms = np.sqrt(m2)
        v = v - lr * m1 / (rms + eps)
        if half:
            m2 = rms
    else:
        m1 = mom * m1 - lr * g
        m2 = None
        v = v + m1
    if clip:
        v = np.clip(v, F32(-1), F32(1))
    v = store(v, 0)
    return v, store(m1, 1), None if m2 is None else store(m2, 2), pack(np.where(v >= 0, 1, -1))


@pytest.mark.parametrize("solver", ["adam", "sgd", "bop"])
@pytest.mark.parametrize("half", [True, False])
@pytest.mark.parametrize("use_bits", [True, False])
@pytest.mark.parametrize("n_out,n_in", [(3, 1), (5, 64), (4, 130)])
@pytest.mark.parametrize("round_key", [None, 0, 2**64 - 12345])
def test_optimizer_step_matches_reference(solver, half, use_bits, n_out, n_in, round_key, isa):
    rng = np.random.default_rng(n_out * n_in + len(solver))
    dtype = np.float16 if half else F32
    V = rng.uniform(-1.2, 1.2, size=(n_out, n_in)).astype(dtype)
    V[0, 0] = 1.0  # exactly at the cancellation edge
    M1 = (rng.normal(size=(n_out, n_in)) * 1e-3).astype(dtype)
    M2 = (rng.random((n_out, n_in)) * 1e-4).astype(dtype)
    if solver == "bop":
        packed = pack(rng.choice([-1, 1], size=(n_out, n_in)))
    else:
        packed = pack(np.where(V.astype(F32) >= 0, 1, -1))
    gbits = pack(rng.choice([-1, 1], size=(n_out, n_in))) if use_bits else None
    gfloat = None if use_bits else rng.normal(size=(n_out, n_in)).astype(F32)
    gscale = 1 / np.sqrt(n_in) if use_bits else 1.0
    for clip in (False, True):
        want = reference_step(solver, half, V, M1, M2, gbits, gfloat, gscale, HYPER, clip,
                              packed, round_key)
        st = [None if a is None else a.copy() for a in (V, M1, M2)]
        got_packed = packed.copy()
        flips = _kernels.optimizer_step(solver, st[0], st[1], st[2], gbits, gfloat, gscale,
                                        HYPER, clip, got_packed, round_key=round_key)
        np.testing.assert_array_equal(got_packed, want[3])
        assert flips == int(np.count_nonzero(unpack(got_packed, n_in) != unpack(packed, n_in)))
        for got, ref in zip(st, want[:3]):
            if ref is not None:
                np.testing.assert_array_equal(got.view(np.uint8), ref.view(np.uint8))


def test_stochastic_rounding_is_unbiased_and_exact_on_halves(isa):
    """Adam steps far below half an ulp: nearest-even keeps V, stochastic
    rounding moves it by the step on average; values already float16 stay."""
    n_out, n_in = 64, 1000
    V = np.full((n_out, n_in), 0.3, dtype=np.float16)  # ulp 2**-12 ~ 2.4e-4
    M1 = np.zeros_like(V)
    M2 = np.zeros_like(V)
    gbits = pack(np.ones((n_out, n_in)))
    hyper = (2e-5, 0.9, 0.999, 1e-8, 0.9, 0.0)  # first Adam step: V -= lr * sqrt(1000)
    packed = pack(np.ones((n_out, n_in)))
    nearest = [a.copy() for a in (V, M1, M2)]
    _kernels.optimizer_step("adam", *nearest, gbits, None, 1.0, hyper, False, packed.copy())
    np.testing.assert_array_equal(nearest[0], V)  # the whole step is lost
    sr = [a.copy() for a in (V, M1, M2)]
    _kernels.optimizer_step("adam", *sr, gbits, None, 1.0, hyper, False, packed.copy(),
                            round_key=7)
    step = float(V[0, 0]) - sr[0].astype(np.float64).mean()
    want = float(np.float32(2e-5) * np.float32(0.1) / np.sqrt(np.float32(0.001)))
    assert set(np.unique(sr[0]).tolist()) <= {np.float16(0.3), np.nextafter(np.float16(0.3), 0)}
    assert abs(step - want) < 0.02 * want  # 64000 draws: ~0.3 % standard error
    # a value that float16 represents exactly is never moved by the rounding
    zero = [np.full((2, 64), 0.25, np.float16), np.zeros((2, 64), np.float16),
            np.zeros((2, 64), np.float16)]
    _kernels.optimizer_step("adam", *zero, pack(np.ones((2, 64))), None, 1.0,
                            (0.0, 0.9, 0.999, 1e-8, 0.9, 0.0), False, pack(np.ones((2, 64))),
                            round_key=3)
    assert (zero[0] == np.float16(0.25)).all()
    with pytest.raises(ValueError, match="round_key"):
        _kernels.optimizer_step("adam", *sr, gbits, None, 1.0, hyper, False, packed,
                                round_key=-1)


def test_stochastic_rounding_special_values(isa):
    """SGD from V = 0 stores V = M1 = x exactly: zeros, subnormals, the
    overflow range and infinities are rounded as the reference says."""
    x = np.array([0.0, -1e-30, 1e-8, -3e-7, 6.1e-5, 0.3, -0.7, 65504.0, 65510.0, 65530.0,
                  -65535.0, 65536.0, 1e9, np.inf, -np.inf, 2.0**-24, 2.0**-25], F32)
    x = np.tile(x, 8)  # several draws per value, blocks of 64 and a tail
    shape = (2, x.size // 2)
    for key in (1, 2**63 + 5):
        V, M1 = np.zeros(shape, np.float16), np.zeros(shape, np.float16)
        packed = pack(np.ones(shape))
        _kernels.optimizer_step("sgd", V, M1, None, None, -x.reshape(shape), 1.0,
                                (1.0, 0.9, 0.999, 1e-8, 0.9, 0.0), False, packed,
                                round_key=key)
        want_v = stochastic_half(x.reshape(shape), sr_uniforms(key, 0, shape))
        want_m = stochastic_half(x.reshape(shape), sr_uniforms(key, 1, shape))
        np.testing.assert_array_equal(V.view(np.uint16), want_v.view(np.uint16))
        np.testing.assert_array_equal(M1.view(np.uint16), want_m.view(np.uint16))
    assert np.isinf(V.ravel()[x.ravel() >= 65536]).all()


def test_optimizer_step_threads_and_errors(isa):
    rng = np.random.default_rng(9)
    V = rng.uniform(-1, 1, size=(300, 300)).astype(np.float16)
    M1 = np.zeros_like(V)
    M2 = np.zeros_like(V)
    gbits = pack(rng.choice([-1, 1], size=V.shape))
    results = []
    for n_threads in (1, 2):
        st = [V.copy(), M1.copy(), M2.copy()]
        packed = pack(np.where(V.astype(F32) >= 0, 1, -1))
        _kernels.optimizer_step("adam", *st, gbits, None, 0.05, HYPER, False, packed,
                                round_key=99, n_threads=n_threads)
        results.append((st, packed))
    for a, b in zip(results[0][0] + [results[0][1]], results[1][0] + [results[1][1]]):
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))
    packed = pack(np.ones(V.shape))
    with pytest.raises(ValueError, match="solver"):
        _kernels.optimizer_step("rmsprop", V, M1, M2, gbits, None, 1.0, HYPER, False, packed)
    with pytest.raises(ValueError, match="exactly one"):
        _kernels.optimizer_step("adam", V, M1, M2, None, None, 1.0, HYPER, False, packed)
    with pytest.raises(TypeError, match="float16"):
        _kernels.optimizer_step("adam", V, M1, M2.astype(F32), gbits, None, 1.0, HYPER, False,
                                packed)
