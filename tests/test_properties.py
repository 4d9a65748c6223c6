"""Property tests (hypothesis): every kernel, on every SIMD path of this CPU,
equals its NumPy reference for random shapes (0-size edges included), random
bit patterns (all-zero, all-one, sparse, dense, dirty padding) and integer
values at the saturation limits.  The exact float references (summation
order, fused multiply-adds) are the ones of ``test_real_kernels`` and
``test_bn_kernels``.

Examples are derandomised (fixed seed, no example database), so CI runs the
same cases every time; shapes stay small (the fixed-shape tests cover large
K and threads) so the whole module runs in seconds.
"""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from reference import cp_update, select_easiest
from test_bn_kernels import bn_backward_reference, bn_forward_reference
from test_real_kernels import HYPER, dot_reference, fma_sum, reference_step

from skbnn import _kernels

ISAS = _kernels.available_isas()
F32 = np.float32
I16 = np.iinfo(np.int16)
I32 = np.iinfo(np.int32)

PROPERTY = settings(max_examples=75, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def on_every_isa(call):
    """``call()`` on each kernel path; the results, keyed by path name."""
    previous = _kernels.get_isa()
    try:
        out = {}
        for isa in ISAS:
            _kernels.set_isa(isa)
            out[isa] = call()
        return out
    finally:
        _kernels.set_isa(previous)


def assert_every_isa(call, want, err=""):
    for isa, got in on_every_isa(call).items():
        if isinstance(want, tuple):
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w, err_msg=f"{isa} {err}")
        else:
            np.testing.assert_array_equal(got, want, err_msg=f"{isa} {err}")


def refused_on_every_isa(call, error=ValueError, match=None):
    for isa in ISAS:
        previous = _kernels.get_isa()
        _kernels.set_isa(isa)
        try:
            with pytest.raises(error, match=match):
                call()
        finally:
            _kernels.set_isa(previous)


# ------------------------------------------------------------------ bit helpers
def words(k):
    return (k + 63) // 64


def pack_bool(bits):
    """Pack a boolean (n, k) matrix, bit 1 = True, little-endian, zero padding."""
    n, k = bits.shape
    padded = np.zeros((n, words(k) * 64), dtype=np.uint8)
    padded[:, :k] = bits
    return np.packbits(padded, axis=1, bitorder="little").view("<u8").astype(np.uint64)


def unpack_bool(P, k):
    """The first k bits of each packed row as booleans."""
    n = P.shape[0]
    if n == 0 or P.shape[1] == 0:
        return np.zeros((n, k), dtype=bool)
    b = np.unpackbits(np.ascontiguousarray(P).astype("<u8").view(np.uint8).reshape(n, -1),
                      axis=1, bitorder="little")
    return b[:, :k].astype(bool)


def pm1(bits):
    return np.where(bits, 1, -1).astype(np.int64)


PATTERNS = ("random", "sparse", "dense", "zeros", "ones", "alternating")


@st.composite
def bit_matrices(draw, n, k):
    """Boolean (n, k) matrix in one of several bit patterns (a seed, not
    element-wise draws: fast, and the pattern is what matters)."""
    pattern = draw(st.sampled_from(PATTERNS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if pattern == "zeros":
        return np.zeros((n, k), dtype=bool)
    if pattern == "ones":
        return np.ones((n, k), dtype=bool)
    if pattern == "alternating":
        return (np.add.outer(np.arange(n), np.arange(k)) % 2).astype(bool)
    p = {"random": 0.5, "sparse": 0.03, "dense": 0.97}[pattern]
    return rng.random((n, k)) < p


def dims(lo=0, hi=9):
    return st.integers(lo, hi)


# K across word boundaries and the AVX-512 tail masks
BITS = st.one_of(st.integers(0, 3), st.sampled_from([63, 64, 65, 127, 128, 129, 191, 192]),
                 st.integers(0, 200))


def int16_values(rng, shape, clip):
    """int16 values in [-clip, clip], with many at and next to the limits."""
    v = rng.integers(-clip, clip + 1, size=shape)
    edge = rng.random(shape) < 0.3
    near = rng.choice(np.array([-clip, -clip + 1, -clip + 2, clip - 2, clip - 1, clip]),
                      size=shape)
    return np.clip(np.where(edge, near, v), -clip, clip).astype(np.int16)


# ------------------------------------------------------------------ packing
THRESHOLD_DTYPES = [np.float64, np.float32, np.uint8, np.int8, np.int64]


@PROPERTY
@given(dtype=st.sampled_from(THRESHOLD_DTYPES), n=dims(0, 6), f=dims(0, 70), b=dims(0, 3),
       strict=st.booleans(), seed=st.integers(0, 2**32 - 1), specials=st.booleans())
def test_pack_threshold_property(dtype, n, f, b, strict, seed, specials):
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        lo, hi = max(info.min, -2**60), min(info.max, 2**60)
        X = rng.integers(lo, hi, size=(n, f), endpoint=True).astype(dtype)
        X.flat[::3] = rng.choice(np.array([info.min, info.max, 0, 1, -1 if info.min else 0],
                                          dtype=dtype), size=X.flat[::3].shape)
        thr = rng.uniform(float(info.min) - 10, float(info.max) + 10, size=(f, b))
        thr[::2] = np.round(thr[::2])  # integer ties: strict and non-strict differ
    else:
        X = (rng.normal(size=(n, f)) * 10).astype(dtype)
        thr = rng.normal(size=(f, b)) * 10
        thr[::2] = X[0, ::2, None].astype(np.float64) if n and f else thr[::2]
    if specials and thr.size:
        thr.flat[rng.integers(0, thr.size, size=3)] = [np.nan, np.inf, -np.inf]
    if specials and X.size and X.dtype.kind == "f":
        X.flat[rng.integers(0, X.size, size=3)] = [np.nan, np.inf, -np.inf]
    Xd = X.astype(np.float64)[:, :, None]
    bits = (Xd > thr[None]) if strict else (Xd >= thr[None])
    want = pack_bool(bits.reshape(n, f * b))
    assert_every_isa(lambda: _kernels.pack_threshold(X, thr, strict), want)
    assert_every_isa(lambda: _kernels.pack_threshold(X, thr, strict, 2), want)
    if f:
        refused_on_every_isa(lambda: _kernels.pack_threshold(X, thr[:-1], strict),
                             match="one row per feature")


@PROPERTY
@given(dtype=st.sampled_from(THRESHOLD_DTYPES), n=dims(0, 6), f=dims(0, 140),
       seed=st.integers(0, 2**32 - 1), foreign=st.floats(0, 0.2))
def test_pack_binary_property(dtype, n, f, seed, foreign):
    rng = np.random.default_rng(seed)
    values = np.array([0, 1] if dtype == np.uint8 else [-1, 0, 1])
    X = rng.choice(values, size=(n, f)).astype(dtype)
    odd = rng.random((n, f)) < foreign
    if dtype == np.uint8:
        X[odd] = rng.integers(2, 256, size=int(odd.sum()))
    elif np.issubdtype(dtype, np.integer):
        X[odd] = rng.choice(np.array([-2, 2, np.iinfo(dtype).min, np.iinfo(dtype).max],
                                     dtype=dtype), size=int(odd.sum()))
    else:
        X[odd] = rng.choice(np.array([0.5, -2.0, np.nan, np.inf, -0.0]), size=int(odd.sum()))
    Xd = X.astype(np.float64)
    kinds = (int(np.any(Xd == -1)) | int(np.any(Xd == 0)) << 1 | int(np.any(Xd == 1)) << 2
             | int(np.any(~np.isin(Xd, [-1.0, 0.0, 1.0]))) << 3)
    want_bits = pack_bool(X > 0)
    for isa, (got, got_kinds) in on_every_isa(lambda: _kernels.pack_binary(X)).items():
        np.testing.assert_array_equal(got, want_bits, err_msg=isa)
        assert got_kinds == kinds, isa


@PROPERTY
@given(n=dims(0, 6), k=BITS, seed=st.integers(0, 2**32 - 1))
def test_pack_sign_and_unpack_property(n, k, seed):
    rng = np.random.default_rng(seed)
    Z = rng.integers(I32.min, I32.max, size=(n, k), endpoint=True, dtype=np.int64)
    Z.flat[::4] = rng.choice(np.array([I32.min, -1, 0, 1, I32.max]), size=Z.flat[::4].shape)
    Z = Z.astype(np.int32)
    H = int16_values(rng, (n, k), I16.max)
    H.flat[::5] = I16.min  # -32768: outside the clip range, still a sign
    assert_every_isa(lambda: _kernels.pack_sign_int32(Z), pack_bool(Z >= 0))
    assert_every_isa(lambda: _kernels.pack_sign_int16(H), pack_bool(H >= 0))
    # unpack reads only the first n_bits of each row: padding may hold anything
    P = rng.integers(0, 2**64, size=(n, words(k) + 1), dtype=np.uint64)
    n_bits = int(rng.integers(0, P.shape[1] * 64 + 1))
    assert_every_isa(lambda: _kernels.unpack_pm1(P, n_bits), pm1(unpack_bool(P, n_bits)))
    refused_on_every_isa(lambda: _kernels.unpack_pm1(P, P.shape[1] * 64 + 1), match="n_bits")
    refused_on_every_isa(lambda: _kernels.unpack_pm1(P, -1), match="n_bits")


@PROPERTY
@given(n=dims(0, 140), k=BITS, data=st.data())
def test_transpose_bits_property(n, k, data):
    bits = data.draw(bit_matrices(n, k))
    P = pack_bool(bits)
    assert_every_isa(lambda: _kernels.transpose_bits(P, k), pack_bool(bits.T))
    if n and k % 64:  # a set padding bit has no row in the transpose: refused
        dirty = P.copy()
        dirty[-1, -1] |= np.uint64(1) << np.uint64(63)
        refused_on_every_isa(lambda: _kernels.transpose_bits(dirty, k), match="padding")
    refused_on_every_isa(lambda: _kernels.transpose_bits(P, k + 64), match="n_bits")


@PROPERTY
@given(n=dims(0, 40), seed=st.integers(0, 2**32 - 1), pattern=st.sampled_from(PATTERNS))
def test_popcount_property(n, seed, pattern):
    rng = np.random.default_rng(seed)
    a = {"zeros": np.zeros(n, np.uint64), "ones": np.full(n, 2**64 - 1, np.uint64)}.get(
        pattern, rng.integers(0, 2**64, size=n, dtype=np.uint64))
    want = int(np.unpackbits(a.view(np.uint8)).sum()) if n else 0
    for isa, got in on_every_isa(lambda: _kernels.popcount(a)).items():
        assert got == want, isa


# ------------------------------------------------------------------ products
@PROPERTY
@given(m=dims(0, 9), n=dims(0, 20), k=BITS, data=st.data())
def test_bgemm_property(m, n, k, data):
    A, B = data.draw(bit_matrices(m, k)), data.draw(bit_matrices(n, k))
    Ap, Bp = pack_bool(A), pack_bool(B)
    Z = pm1(A) @ pm1(B).T
    assert_every_isa(lambda: _kernels.bgemm(Ap, Bp, k), Z.astype(np.int32))
    assert_every_isa(lambda: _kernels.bgemm_sign(Ap, Bp, k), pack_bool(Z >= 0))
    out = np.full((m, n), 7, np.int32)
    assert_every_isa(lambda: _kernels.bgemm(Ap, Bp, k, out=out), Z.astype(np.int32))
    if m and k % 64:
        dirty = Ap.copy()
        dirty[0, -1] |= np.uint64(1) << np.uint64(63)
        refused_on_every_isa(lambda: _kernels.bgemm(dirty, Bp, k), match="padding")
        refused_on_every_isa(lambda: _kernels.bgemm_sign(dirty, Bp, k), match="padding")
    refused_on_every_isa(lambda: _kernels.bgemm(Ap, Bp, k + 64), match="n_bits")


@PROPERTY
@given(m=dims(0, 9), n=dims(0, 20), k=BITS, data=st.data())
def test_bgemm_masked_property(m, n, k, data):
    A, B = data.draw(bit_matrices(m, k)), data.draw(bit_matrices(n, k))
    G = data.draw(bit_matrices(m, k))
    Ap, Bp, Gp = pack_bool(A), pack_bool(B), pack_bool(G)
    Z = (pm1(A) * G) @ pm1(B).T
    assert_every_isa(lambda: _kernels.bgemm_masked(Ap, Gp, Bp, k), Z.astype(np.int32))
    assert_every_isa(lambda: _kernels.bgemm_masked_sign(Ap, Gp, Bp, k), pack_bool(Z >= 0))
    if m and k % 64:
        dirty = Gp.copy()
        dirty[0, -1] |= np.uint64(1) << np.uint64(63)
        refused_on_every_isa(lambda: _kernels.bgemm_masked(Ap, dirty, Bp, k), match="padding")


@PROPERTY
@given(m=dims(0, 9), n=dims(0, 20), k=BITS, data=st.data())
def test_hidden_field_property(m, n, k, data):
    A = data.draw(bit_matrices(m, k))
    H = data.draw(hnp.arrays(np.int16, (n, k)))
    F = pm1(A) @ H.astype(np.int64).T
    assert_every_isa(lambda: _kernels.hidden_field(H, pack_bool(A)), F.astype(np.int32))


# ------------------------------------------------------------------ CP+R
@PROPERTY
@given(m=dims(0, 7), g=st.sampled_from([1, 2, 3, 5, 16, 17, 33]), groups=dims(0, 5),
       zero_is_wrong=st.booleans(), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_select_easiest_property(m, g, groups, zero_is_wrong, seed, data):
    k = g * groups
    rng = np.random.default_rng(seed)
    scale = data.draw(st.sampled_from([2, 50, I32.max]))
    z = rng.integers(-scale, scale, size=(m, k), endpoint=True).astype(np.int64)
    z.flat[::7] = 0  # ties and zeros
    if scale == I32.max:
        z.flat[3::11] = I32.min  # |z| = 2**31: still below the "no winner" key
    z = z.astype(np.int32)
    t = data.draw(bit_matrices(m, k))
    active = rng.random(m) < 0.8
    want = select_easiest(z.astype(np.int64), pm1(t), g, zero_is_wrong, active)
    assert_every_isa(lambda: _kernels.select_easiest(z, pack_bool(t), g, zero_is_wrong,
                                                     active.astype(np.uint8)),
                     want.astype(np.int32))
    if k:
        refused_on_every_isa(
            lambda: _kernels.select_easiest(z, pack_bool(t), k + 1, zero_is_wrong),
            match="divide")


@PROPERTY
@given(n_out=dims(0, 70), n_in=BITS,
       m=st.one_of(dims(0, 8), st.integers(256, 270)),  # > 255 per row: widened counters
       clip=st.sampled_from([1, 2, 3, 7, 32765, 32767]), seed=st.integers(0, 2**32 - 1),
       data=st.data())
def test_cpr_update_property(n_out, n_in, m, clip, seed, data):
    rng = np.random.default_rng(seed)
    H = int16_values(rng, (n_out, n_in), clip)
    a, t = data.draw(bit_matrices(m, n_in)), data.draw(bit_matrices(m, n_out))
    n_sel = int(rng.integers(0, 4))
    sel = rng.integers(-1, max(n_out, 1), size=(m, n_sel)).astype(np.int32)
    if n_out == 0:
        sel[...] = -1
    want = cp_update(H, sel, pm1(t), pm1(a), clip)
    old_signs = H >= 0

    def run():
        Hk = H.copy()
        Wp = pack_bool(old_signs)
        WT = pack_bool(old_signs.T)
        flips = _kernels.cpr_update(Hk, Wp, WT, sel, pack_bool(t), pack_bool(a), clip)
        return Hk, Wp, WT, flips

    new_signs = want >= 0
    assert_every_isa(run, (want.astype(np.int16), pack_bool(new_signs), pack_bool(new_signs.T),
                           np.int64(np.count_nonzero(new_signs != old_signs))))


def reinforce_reference(H, p, seed, stream, clip):
    """``reference.reinforce`` with the gap compared as a float before it is
    floored: a subnormal p gives gaps too large (or infinite) for an int."""
    H = H.astype(np.int64).copy()
    count = 0
    if not p > 0:
        return H, count
    log_q = math.log1p(-p) if p < 1 else 0.0
    for j in range(H.shape[0]):
        i, draw = 0, 0
        while i < H.shape[1]:
            if p < 1:
                u = _kernels.uniform(seed, stream, j, draw) + 2.0 ** -53  # in (0, 1]
                draw += 1
                gap = math.floor(math.log(u) / log_q) if math.log(u) / log_q < 2**62 else None
                if gap is None or gap >= H.shape[1] - i:
                    break
                i += gap
            H[j, i] = np.clip(H[j, i] + (2 if H[j, i] >= 0 else -2), -clip, clip)
            count += 1
            i += 1
    return H, count


@PROPERTY
@given(k=dims(0, 12), n=dims(0, 90), p=st.one_of(st.sampled_from([0.0, 1e-12, 1.0]),
                                                   st.floats(0, 1)),
       clip=st.sampled_from([1, 3, 32767]), seed=st.integers(0, 2**63), stream=dims(0, 99),
       data=st.data())
def test_reinforce_property(k, n, p, clip, seed, stream, data):
    H = int16_values(np.random.default_rng(seed % 2**32), (k, n), clip)
    H[H == 0] = 1  # hidden weights are odd in use; 0 counts as +
    want, count = reinforce_reference(H, p, seed, stream, clip)

    def run():
        Hk = H.copy()
        return Hk, _kernels.reinforce(Hk, p, seed, stream, clip)

    assert_every_isa(run, (want.astype(np.int16), count))
    assert np.all((want >= 0) == (H >= 0)) and np.abs(want).max(initial=0) <= clip
    refused_on_every_isa(lambda: _kernels.reinforce(H.copy(), 1.5, seed, stream, clip),
                         match="probability")
    refused_on_every_isa(lambda: _kernels.reinforce(H.copy(), p, seed, stream, 40000),
                         match="clip")


def bef_reference(P, rows, cols, alpha):
    """Greedy flips with the kernel's sums (integers) and objective formula."""
    P = P.astype(np.int64).copy()
    C = P.shape[0]
    m = C * (C - 1) // 2
    accepted = 0
    for i, k in zip(rows, cols):
        G = P @ P.T
        iu = np.triu_indices(C, 1)
        s, q = int(G[iu].sum()), int((G[iu] ** 2).sum())
        P[i, k] *= -1
        G2 = P @ P.T
        s2, q2 = int(G2[iu].sum()), int((G2[iu] ** 2).sum())
        j_old = s + alpha * (q / m - (s / m) * (s / m))
        j_new = s2 + alpha * (q2 / m - (s2 / m) * (s2 / m))
        if j_new < j_old:
            accepted += 1
        else:
            P[i, k] *= -1
    return P, accepted


@PROPERTY
@given(c=dims(2, 6), d=dims(1, 40), t=dims(0, 30), alpha=st.floats(0, 10),
       seed=st.integers(0, 2**32 - 1))
def test_bef_flips_property(c, d, t, alpha, seed):
    rng = np.random.default_rng(seed)
    P = rng.choice(np.array([-1, 1], dtype=np.int8), size=(c, d))
    rows = rng.integers(0, c, size=t).astype(np.int32)
    cols = rng.integers(0, d, size=t).astype(np.int32)
    want, accepted = bef_reference(P, rows, cols, alpha)
    Pk = P.copy()
    assert _kernels.bef_flips(Pk, rows, cols, alpha) == accepted
    np.testing.assert_array_equal(Pk, want)
    if t:
        bad = rows.copy()
        bad[0] = c
        with pytest.raises(ValueError, match="out of range"):
            _kernels.bef_flips(P.copy(), bad, cols, alpha)


# ------------------------------------------------------------------ real-valued
@PROPERTY
@given(n=dims(0, 300), seed=st.integers(0, 2**32 - 1))
def test_half_conversions_property(n, seed):
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**16, size=n).astype(np.uint16)
    want32 = h.view(np.float16).astype(F32)
    # any float32 bit pattern: NaNs, infinities, subnormals, exact halfway cases
    x = rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32).view(F32).copy()
    x[::3] = (rng.integers(-70000, 70000, size=x[::3].shape) + 0.5) * F32(2.0 ** -rng.integers(
        0, 30, size=x[::3].shape))
    with np.errstate(over="ignore", invalid="ignore"):
        want16 = x.astype(np.float16)
    for isa, (got32, got16) in on_every_isa(
            lambda: (_kernels.f16_to_f32(h), _kernels.f32_to_f16(x))).items():
        nan = np.isnan(want32)
        np.testing.assert_array_equal(np.isnan(got32), nan, err_msg=isa)
        np.testing.assert_array_equal(got32[~nan].view(np.uint32), want32[~nan].view(np.uint32),
                                      err_msg=isa)
        nan16 = np.isnan(want16)
        np.testing.assert_array_equal(np.isnan(got16.view(np.float16)), nan16, err_msg=isa)
        np.testing.assert_array_equal(got16[~nan16], want16[~nan16].view(np.uint16),
                                      err_msg=isa)


def signed_sum(A, S):
    """``sum_k A[m, k] S[k, n]`` as the kernel computes it: ``2 P - T``, P the
    float32 sum in order k of the A[m, k] whose S[k, n] = +1 (selected, not
    multiplied: an infinite term with S = -1 adds nothing to P), T of all."""
    P = np.cumsum(np.where(S[None] > 0, A[:, :, None], F32(0)), axis=1, dtype=F32)[:, -1, :]
    T = np.cumsum(A, axis=1, dtype=F32)[:, -1][:, None]
    return (P + P) - T


def float_matrix(rng, shape, wide):
    A = rng.normal(size=shape)
    if wide:  # magnitudes from 1e-30 to 1e30: overflow, cancellation, subnormal terms
        A *= 10.0 ** rng.integers(-30, 31, size=shape)
    return A.astype(F32)


@PROPERTY
@given(m=dims(0, 5), k=st.one_of(dims(0, 3), dims(0, 70)), n=BITS, half=st.booleans(),
       transposed=st.booleans(), wide=st.booleans(), seed=st.integers(0, 2**32 - 1),
       data=st.data())
def test_fsgemm_fgemm_property(m, k, n, half, transposed, wide, seed, data):
    rng = np.random.default_rng(seed)
    A = float_matrix(rng, (m, k), wide)
    if half:
        with np.errstate(over="ignore"):
            A = A.astype(np.float16)
    op = np.ascontiguousarray(A.T) if transposed else A
    S = data.draw(bit_matrices(k, n))
    keep = data.draw(bit_matrices(m, n))
    B = float_matrix(rng, (k, n), wide)
    A32 = A.astype(F32)
    with np.errstate(all="ignore"):
        want_s = signed_sum(A32, pm1(S)) if k else np.zeros((m, n), F32)
        want_g = fma_sum(A32, B) if k else np.zeros((m, n), F32)
    kw = {"transpose_a": transposed}
    with np.errstate(all="ignore"):
        assert_every_isa(lambda: _kernels.fsgemm(op, pack_bool(S), n, **kw), want_s)
        assert_every_isa(lambda: _kernels.fsgemm(op, pack_bool(S), n, sign=True, **kw),
                         pack_bool(want_s >= 0))
        assert_every_isa(lambda: _kernels.fsgemm(op, pack_bool(S), n, mask=pack_bool(keep), **kw),
                         np.where(keep, want_s, F32(0)))
        assert_every_isa(lambda: _kernels.fgemm(op, B, **kw), want_g)
        assert_every_isa(lambda: _kernels.fgemm(op, B, sign=True, **kw), pack_bool(want_g >= 0))


@PROPERTY
@given(m=dims(0, 5), k=st.one_of(dims(0, 40), BITS), n=dims(0, 12), wide=st.booleans(),
       seed=st.integers(0, 2**32 - 1), data=st.data())
def test_fdot_bits_property(m, k, n, wide, seed, data):
    rng = np.random.default_rng(seed)
    X = float_matrix(rng, (m, k), wide)
    S = data.draw(bit_matrices(n, k))
    with np.errstate(all="ignore"):
        want = dot_reference(X, pm1(S)) if k and n and m else np.zeros((m, n), F32)
        assert_every_isa(lambda: _kernels.fdot_bits(X, pack_bool(S)), want)


@PROPERTY
@given(b=dims(1, 40), n=st.one_of(dims(1, 10), BITS.filter(bool)), z_int=st.booleans(),
       mode=st.sampled_from([(False, True, False), (True, False, True), (False, False, True)]),
       seed=st.integers(0, 2**32 - 1))
def test_bn_forward_property(b, n, z_int, mode, seed):
    l2, round_half, pre_bias = mode
    rng = np.random.default_rng(seed)
    Z = (rng.integers(-n - 2, n + 3, size=(b, n)).astype(np.int32) if z_int
         else float_matrix(rng, (b, n), False))
    Z[:, ::5] = Z[:1, ::5]  # constant channels: the scale floor
    bias = rng.normal(scale=0.5, size=n).astype(F32)
    with np.errstate(all="ignore"):
        mu_w, psi_w, A_w, pre_w, om_w = bn_forward_reference(Z, bias, l2, round_half, pre_bias)
    wn = words(n)

    def run():
        mu, psi, om = np.empty(n, F32), np.empty(n, F32), np.empty(n, F32)
        bits, mask, pre = (np.empty((b, wn), np.uint64) for _ in range(3))
        A = np.empty((b, n), F32)
        _kernels.bn_forward(Z, bias, l2, 1e-4, 1e-5, round_half, mu, psi, bits, mask, pre, om,
                            pre_bias, A)
        return mu, psi, A, om, bits, mask, pre

    assert_every_isa(run, (mu_w, psi_w, A_w, om_w, pack_bool(A_w >= 0),
                           pack_bool(np.abs(A_w) <= 1), pack_bool(pre_w >= 0)))


@PROPERTY
@given(b=dims(1, 40), n=st.one_of(dims(1, 10), BITS.filter(bool)), half=st.booleans(),
       seed=st.integers(0, 2**32 - 1), data=st.data())
def test_bn_backward_bits_property(b, n, half, seed, data):
    rng = np.random.default_rng(seed)
    dtype = np.float16 if half else F32
    G0 = (rng.normal(scale=0.01, size=(b, n))).astype(dtype)
    psi = (np.abs(rng.normal(size=n)) + 1e-3).astype(F32)
    omega = np.abs(rng.normal(size=n)).astype(F32)
    S = data.draw(bit_matrices(b, n))
    with np.errstate(all="ignore"):
        want, want_b = bn_backward_reference(G0, psi, pm1(S).astype(F32), omega)

    def run():
        G, G_b = G0.copy(), np.empty(n, F32)
        _kernels.bn_backward_bits(G, psi, pack_bool(S), omega, G_b)
        return G, G_b

    with np.errstate(all="ignore"):
        assert_every_isa(run, (want.astype(dtype), want_b))


@PROPERTY
@given(solver=st.sampled_from(["adam", "sgd", "bop"]), half=st.booleans(),
       use_bits=st.booleans(), n_out=dims(1, 6), n_in=st.one_of(dims(1, 5), BITS.filter(bool)),
       clip=st.booleans(), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_optimizer_step_property(solver, half, use_bits, n_out, n_in, clip, seed, data):
    rng = np.random.default_rng(seed)
    dtype = np.float16 if half else F32
    V = rng.uniform(-1.2, 1.2, size=(n_out, n_in)).astype(dtype)
    V.flat[::4] = rng.choice(np.array([-1.0, 1.0, 0.0, -0.0]), size=V.flat[::4].shape)
    M1 = (rng.normal(size=(n_out, n_in)) * 1e-3).astype(dtype)
    M2 = (rng.random((n_out, n_in)) * 1e-4).astype(dtype)
    packed = (pack_bool(data.draw(bit_matrices(n_out, n_in))) if solver == "bop"
              else pack_bool(V.astype(F32) >= 0))
    gbits = pack_bool(data.draw(bit_matrices(n_out, n_in))) if use_bits else None
    gfloat = None if use_bits else rng.normal(size=(n_out, n_in)).astype(F32)
    gscale = 1 / math.sqrt(n_in) if use_bits else 1.0
    with np.errstate(all="ignore"):
        want = reference_step(solver, half, V, M1, M2, gbits, gfloat, gscale, HYPER, clip,
                              packed)

    def run():
        st_ = [None if a is None else a.copy() for a in (V, M1, M2)]
        out = packed.copy()
        _kernels.optimizer_step(solver, st_[0], st_[1], st_[2], gbits, gfloat, gscale, HYPER,
                                clip, out)
        return [a.view(np.uint8) for a, w in zip(st_, want[:3]) if w is not None] + [out]

    assert_every_isa(run, tuple(w.view(np.uint8) for w in want[:3] if w is not None)
                     + (want[3],))
