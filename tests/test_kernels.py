"""Every kernel on every SIMD path of this CPU against plain NumPy, on awkward
shapes and read-only inputs."""
import numpy as np
import pytest
from reference import cp_update, pack, reinforce, select_easiest, sign

from skbnn import _kernels

KS = [1, 63, 64, 65, 1000, 4097]
BATCHES = [1, 257]


def readonly(a):
    a = np.array(a)
    a.setflags(write=False)
    return a


def rand_pm1(rng, *shape):
    return rng.choice(np.array([-1, 1]), size=shape)


# ---------------------------------------------------------------- packing
@pytest.mark.parametrize("k", KS)
def test_pack_threshold_matches_reference(k, isa):
    rng = np.random.default_rng(k)
    X = rng.normal(size=(7, k))
    thr = rng.normal(size=(k, 1))
    for strict in (True, False):
        got = _kernels.pack_threshold(readonly(X), readonly(thr), strict)
        want = pack(np.where(X > thr.T if strict else X >= thr.T, 1, -1))
        np.testing.assert_array_equal(got, want)
        # tail bits beyond k are zero
        assert got[:, -1].tolist() == (want[:, -1]).tolist()


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint8, np.int64])
def test_pack_threshold_dtypes_and_thermometer(dtype):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 50, size=(9, 13)).astype(dtype)
    thr = np.sort(rng.uniform(0, 50, size=(13, 3)), axis=1)
    got = _kernels.pack_threshold(X, thr, False)
    bits = (X.astype(float)[:, :, None] >= thr[None]).reshape(9, 39)
    np.testing.assert_array_equal(got, pack(np.where(bits, 1, -1)))


def test_sign_packing_and_unpack_roundtrip():
    rng = np.random.default_rng(1)
    Z = rng.integers(-3, 4, size=(5, 130)).astype(np.int32)
    np.testing.assert_array_equal(_kernels.pack_sign_int32(Z), pack(sign(Z)))
    H = Z.astype(np.int16)
    np.testing.assert_array_equal(_kernels.pack_sign_int16(readonly(H)), pack(sign(H)))
    np.testing.assert_array_equal(_kernels.unpack_pm1(pack(sign(Z)), 130), sign(Z))
    with pytest.raises(ValueError, match="n_bits"):
        _kernels.unpack_pm1(pack(sign(Z)), 200)


@pytest.mark.parametrize("shape", [(1, 1), (5, 64), (70, 3), (130, 129)])
def test_transpose_bits(shape):
    rng = np.random.default_rng(2)
    M = rand_pm1(rng, *shape)
    np.testing.assert_array_equal(_kernels.transpose_bits(pack(M), shape[1]), pack(M.T))


# ---------------------------------------------------------------- products
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("m", BATCHES)
def test_bgemm_matches_numpy(k, m, isa):
    rng = np.random.default_rng(k * 1000 + m)
    n = 13 if k > 1000 else 37  # 37: panels of 8 with a ragged tail
    A, B = rand_pm1(rng, m, k), rand_pm1(rng, n, k)
    Ap, Bp = readonly(pack(A)), readonly(pack(B))
    want = A @ B.T
    np.testing.assert_array_equal(_kernels.bgemm(Ap, Bp, k), want)
    np.testing.assert_array_equal(_kernels.bgemm_sign(Ap, Bp, k), pack(sign(want)))


def test_threaded_kernels_identical(isa):
    """Every OpenMP kernel, on shapes above the parallel threshold (64k
    elementary operations), gives the same bits with 1, 2 and 3 threads."""
    rng = np.random.default_rng(5)
    A, B = rand_pm1(rng, 257, 300), rand_pm1(rng, 75, 300)
    G = pack(np.where(rng.random((257, 300)) < 0.3, 1, -1))
    X = rng.choice(np.array([-1, 1], dtype=np.int8), size=(600, 300))
    Z = rng.integers(-50, 50, size=(300, 525)).astype(np.int32)
    T = pack(rand_pm1(rng, 300, 525))
    H0 = np.clip(2 * rng.integers(-3, 3, size=(525, 300)) + 1, -9, 9).astype(np.int16)
    sel = np.sort(rng.integers(-1, 525, size=(300, 5)), axis=1).astype(np.int32)
    inputs = pack(rand_pm1(rng, 300, 300))

    def run(n):
        H = H0.copy()
        Wp = _kernels.pack_sign_int16(H)
        WT = _kernels.transpose_bits(Wp, 300)
        flips = _kernels.cpr_update(H, Wp, WT, sel, T, inputs, 9, n)
        sites = _kernels.reinforce(H, 0.05, 7, 1, 9, n)
        return [_kernels.bgemm(pack(A), pack(B), 300, n),
                _kernels.bgemm_sign(pack(A), pack(B), 300, n),
                _kernels.bgemm_masked(pack(A), G, pack(B), 300, n),
                _kernels.pack_binary(X, n)[0],
                _kernels.pack_threshold(X, np.zeros((300, 1)), True, n),
                _kernels.select_easiest(Z, T, 105, True, None, n),
                _kernels.hidden_field(H0, inputs, n),
                H, Wp, WT, np.array([flips, sites])]

    want = run(1)
    np.testing.assert_array_equal(want[0], A @ B.T)
    for n in (2, 3):
        for got, ref in zip(run(n), want):
            np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("m", BATCHES)
def test_bgemm_masked_matches_numpy(k, m, isa):
    """Gated back-projection sum_{i in G} a_i b_i, and its sign with ties -> +1."""
    rng = np.random.default_rng(k * 7 + m)
    n = 13 if k > 1000 else 37
    A, B = rand_pm1(rng, m, k), rand_pm1(rng, n, k)
    G = rng.random((m, k)) < rng.choice([0.0, 0.03, 0.5, 1.0], size=(m, 1))
    want = (A * G) @ B.T
    Ap, Gp, Bp = readonly(pack(A)), readonly(pack(np.where(G, 1, -1))), readonly(pack(B))
    for n_threads in (1, 2):
        np.testing.assert_array_equal(_kernels.bgemm_masked(Ap, Gp, Bp, k, n_threads), want)
        np.testing.assert_array_equal(_kernels.bgemm_masked_sign(Ap, Gp, Bp, k, n_threads),
                                      pack(sign(want)))


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("m", BATCHES)
def test_hidden_field_matches_numpy(k, m, isa):
    """Exact int16 x +/-1 fields H a, at the int16 extremes too, read-only
    operands, 1 and 2 threads; padding bits of the inputs are ignored."""
    rng = np.random.default_rng(k * 11 + m)
    n = 13 if k > 1000 else 37
    A = rand_pm1(rng, m, k)
    H = rng.integers(-32768, 32768, size=(n, k)).astype(np.int16)
    H[0] = 32767
    H[-1] = -32768
    want = A @ H.astype(np.int64).T
    Ap, Hr = pack(A), readonly(H)
    if k % 64:
        Ap[:, -1] |= np.uint64(1) << np.uint64(63)  # dirty padding: not read
    for n_threads in (1, 2):
        np.testing.assert_array_equal(_kernels.hidden_field(Hr, readonly(Ap), n_threads), want)


def test_hidden_field_checks_shapes():
    H = np.ones((3, 70), dtype=np.int16)
    with pytest.raises(ValueError, match="words per row"):
        _kernels.hidden_field(H, np.zeros((2, 1), dtype=np.uint64))
    with pytest.raises(ValueError, match="fan-in of at most 65536"):
        _kernels.hidden_field(np.ones((1, 65537), dtype=np.int16),
                              np.zeros((1, 1025), dtype=np.uint64))
    assert _kernels.hidden_field(H, np.zeros((0, 2), dtype=np.uint64)).shape == (0, 3)


def test_bgemm_masked_checks_mask():
    a = np.zeros((2, 2), dtype=np.uint64)
    with pytest.raises(ValueError, match="mask shape"):
        _kernels.bgemm_masked(a, np.zeros((3, 2), dtype=np.uint64), a, 128)
    g = np.full((2, 2), 2**63, dtype=np.uint64)
    with pytest.raises(ValueError, match="padding"):
        _kernels.bgemm_masked_sign(a, g, a, 100)


def test_bgemm_checks_shapes():
    a = np.zeros((2, 2), dtype=np.uint64)
    with pytest.raises(ValueError, match="width"):
        _kernels.bgemm(a, np.zeros((2, 3), dtype=np.uint64), 128)
    with pytest.raises(ValueError, match="n_bits"):
        _kernels.bgemm(a, a, 300)


def test_popcount_every_path(isa):
    rng = np.random.default_rng(3)
    for n in (0, 1, 7, 8, 9, 33):
        words = rng.integers(0, 2**63, size=n, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        want = int(np.unpackbits(words.view(np.uint8)).sum()) if n else 0
        assert _kernels.popcount(readonly(words)) == want


# ---------------------------------------------------------------- CP+R
@pytest.mark.parametrize("zero_is_wrong", [False, True])
@pytest.mark.parametrize("k,g", [(6, 3), (65, 13), (130, 65), (7, 1), (525, 105), (48, 48)])
def test_select_easiest(k, g, zero_is_wrong, isa):
    rng = np.random.default_rng(k + g)
    m = 9
    z = rng.integers(-3, 4, size=(m, k)).astype(np.int32)  # many ties and zeros
    t = rand_pm1(rng, m, k)
    active = rng.random(m) < 0.7
    got = _kernels.select_easiest(readonly(z), readonly(pack(t)), g, zero_is_wrong,
                                  readonly(active.astype(np.uint8)))
    np.testing.assert_array_equal(got, select_easiest(z, t, g, zero_is_wrong, active))
    with pytest.raises(ValueError, match="divide"):
        _kernels.select_easiest(z, pack(t), k + 1, zero_is_wrong)


@pytest.mark.parametrize("n_in,n_out", [(1, 3), (63, 10), (65, 70), (300, 129)])
@pytest.mark.parametrize("clip", [5, 32767])
def test_cpr_update_matches_reference(n_in, n_out, clip, isa):
    rng = np.random.default_rng(n_in * n_out + clip)
    m = 300  # > 255 contributions per row exercises the counter flush
    H = np.clip(2 * rng.integers(-4, 4, size=(n_out, n_in)) + 1, -clip, clip).astype(np.int16)
    a = rand_pm1(rng, m, n_in)
    t = rand_pm1(rng, m, n_out)
    sel = np.where(rng.random((m, n_out)) < 0.5, np.arange(n_out)[None, :], -1)
    want = cp_update(H, sel, t, a, clip)
    packed = _kernels.pack_sign_int16(H)
    packed_t = _kernels.transpose_bits(packed, n_in)
    Hk = H.copy()
    flips = _kernels.cpr_update(Hk, packed, packed_t, readonly(sel.astype(np.int32)),
                                readonly(pack(t)), readonly(pack(a)), clip)
    np.testing.assert_array_equal(Hk, want)
    np.testing.assert_array_equal(packed, pack(sign(want)))
    np.testing.assert_array_equal(packed_t, pack(sign(want).T))
    assert flips == int(np.sum(sign(want) != sign(H)))


@pytest.mark.parametrize("m", [40, 600])  # byte counters direct / flushed (> 255 per row)
@pytest.mark.parametrize("n_in,n_out", [(1, 3), (65, 70), (300, 129)])
def test_cpr_update_with_zero_inputs(m, n_in, n_out, isa):
    """Ternary inputs (sign plane + nonzero mask): a 0 input leaves its weight."""
    rng = np.random.default_rng(m + n_in)
    H = (2 * rng.integers(-40, 40, size=(n_out, n_in)) + 1).astype(np.int16)
    a = rand_pm1(rng, m, n_in) * (rng.random((m, n_in)) < 0.6)
    t = rand_pm1(rng, m, n_out)
    sel = np.where(rng.random((m, n_out)) < 0.7, np.arange(n_out)[None, :], -1)
    want = cp_update(H, sel, t, a, 32767)
    packed = _kernels.pack_sign_int16(H)
    packed_t = _kernels.transpose_bits(packed, n_in)
    Hk = H.copy()
    _kernels.cpr_update(Hk, packed, packed_t, sel.astype(np.int32), pack(t), pack(a),
                        32767, 1, readonly(pack(np.where(a != 0, 1, -1))))
    np.testing.assert_array_equal(Hk, want)
    np.testing.assert_array_equal(packed, pack(sign(want)))
    np.testing.assert_array_equal(packed_t, pack(sign(want).T))
    with pytest.raises(ValueError, match="input_mask"):
        _kernels.cpr_update(Hk, packed, packed_t, sel.astype(np.int32), pack(t), pack(a),
                            32767, 1, np.zeros((m + 1, packed.shape[1]), np.uint64))


def test_cpr_update_int16_saturation():
    H = np.array([[32765, -32765]], dtype=np.int16)
    a = np.array([[1, -1]] * 3)
    t = np.ones((3, 1), dtype=int)
    sel = np.zeros((3, 1), dtype=np.int32)
    _kernels.cpr_update(H, _kernels.pack_sign_int16(H), None, sel, pack(t), pack(a), 32767)
    assert H.tolist() == [[32767, -32767]]


@pytest.mark.parametrize("p", [0.0, 0.013, 0.3, 1.0])
def test_reinforce_matches_reference_stream(p):
    rng = np.random.default_rng(7)
    H = (2 * rng.integers(-10, 10, size=(17, 70)) + 1).astype(np.int16)
    H[0, :3] = [32767, -32767, 32765]
    want, want_count = reinforce(H, p, 12345, 99, 32767, _kernels.uniform)
    got = H.copy()
    count = _kernels.reinforce(got, p, 12345, 99, 32767)
    np.testing.assert_array_equal(got, want)
    assert count == want_count
    assert np.all(sign(got) == sign(H))  # reinforcement never flips a sign


@pytest.mark.parametrize("p", [0.3, 1.0])
def test_reinforce_keep_zero_leaves_pruned_weights(p, isa):
    """Ternary weights (sign(0) = 0): a sampled 0 stays 0 and is not counted;
    every other site follows the same stream as the binary rule."""
    rng = np.random.default_rng(8)
    H = rng.integers(-6, 7, size=(13, 90)).astype(np.int16)
    H[:, ::5] = 0
    want, want_count = reinforce(H, p, 777, 5, 32767, _kernels.uniform, keep_zero=True)
    got = H.copy()
    count = _kernels.reinforce(got, p, 777, 5, 32767, keep_zero=True)
    np.testing.assert_array_equal(got, want)
    assert count == want_count
    np.testing.assert_array_equal(got == 0, H == 0)
    binary = H.copy()
    _kernels.reinforce(binary, p, 777, 5, 32767)
    np.testing.assert_array_equal(got[H != 0], binary[H != 0])


def test_reinforce_rate_and_threads():
    H = np.ones((400, 500), dtype=np.int16)
    counts = []
    for n_threads in (1, 2):
        Hk = H.copy()
        counts.append(_kernels.reinforce(Hk, 0.02, 1, 2, 32767, n_threads))
        if n_threads == 1:
            first = Hk
        else:
            np.testing.assert_array_equal(Hk, first)
    assert counts[0] == counts[1]
    rate = counts[0] / H.size
    assert abs(rate - 0.02) < 0.002  # 200k Bernoulli(0.02) sites: sd 3e-4


def test_reinforce_streams_differ():
    a, b = np.ones((50, 50), np.int16), np.ones((50, 50), np.int16)
    _kernels.reinforce(a, 0.1, 1, 1, 32767)
    _kernels.reinforce(b, 0.1, 1, 2, 32767)
    assert not np.array_equal(a, b)


def test_isa_selection_errors():
    with pytest.raises(ValueError, match="unknown kernel path"):
        _kernels.set_isa("sse9")
    assert "generic" in _kernels.available_isas()


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("f", [5, 64, 130])
def test_pack_threshold_bytes_fast_path(dtype, f, isa):
    """Byte inputs take an integer-threshold path: same bits as the float rule,
    including thresholds outside the type's range and exact integer ties."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(f)
    X = rng.integers(info.min, info.max + 1, size=(11, f)).astype(dtype)
    thr = rng.uniform(info.min - 40, info.max + 40, size=(f, 1))
    thr[::3, 0] = np.round(thr[::3, 0])  # integer thresholds: strict vs non-strict differ
    thr[:2, 0] = [info.min - 1000.0, info.max + 1000.0]
    for strict in (True, False):
        got = _kernels.pack_threshold(X, thr, strict)
        want = pack(np.where(X > thr.T if strict else X >= thr.T, 1, -1))
        np.testing.assert_array_equal(got, want)


def _value_kinds(X):
    """Reference of the kinds bit set: 1 = -1, 2 = 0, 4 = +1, 8 = other."""
    X = np.asarray(X, dtype=float)
    return (int(np.any(X == -1)) | int(np.any(X == 0)) << 1 | int(np.any(X == 1)) << 2
            | int(np.any(~np.isin(X, [-1, 0, 1]))) << 3)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.float64, np.float32, np.int64])
@pytest.mark.parametrize("f", KS)
def test_pack_binary_matches_reference(dtype, f, isa):
    rng = np.random.default_rng(f)
    values = [0, 1] if dtype == np.uint8 else [-1, 1]
    X = rng.choice(np.array(values), size=(9, f)).astype(dtype)
    got, kinds = _kernels.pack_binary(readonly(X))
    np.testing.assert_array_equal(got, pack(np.where(X > 0, 1, -1)))
    assert kinds == _value_kinds(X)
    # one foreign value anywhere (here: the last entry, in the row tail) is reported
    for bad in ([2, 0.5, np.nan, -2] if dtype in (np.float64, np.float32) else [2, 7]):
        Y = X.copy()
        Y[-1, -1] = bad
        _, kinds = _kernels.pack_binary(Y)
        assert kinds & _kernels.VALUE_OTHER
        assert kinds == _value_kinds(Y) or np.isnan(bad)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_pack_binary_mixed_values_and_threads(n_threads, isa):
    rng = np.random.default_rng(3)
    X = rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=(257, 130))
    got, kinds = _kernels.pack_binary(X, n_threads)
    np.testing.assert_array_equal(got, pack(np.where(X > 0, 1, -1)))
    assert kinds == 7
    empty, kinds = _kernels.pack_binary(np.zeros((0, 5), dtype=np.int8))
    assert empty.shape == (0, 1) and kinds == 0


def test_bgemm_refuses_dirty_padding():
    a = np.full((1, 1), 2**40, dtype=np.uint64)  # bit 40 set past n_bits = 10
    with pytest.raises(ValueError, match="padding"):
        _kernels.bgemm(a, np.zeros((1, 1), dtype=np.uint64), 10)


# ------------------------------------------- float packing: SIMD against portable
FLOAT_FEATURES = [1, 7, 8, 15, 31, 33, 63, 64, 65, 100, 129, 257]
SPECIALS = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1.0, -1.0]


def _portable(fn, *args):
    """``fn(*args)`` on the portable path (the reference every path must equal)."""
    previous = _kernels.get_isa()
    _kernels.set_isa("generic")
    try:
        return fn(*args)
    finally:
        _kernels.set_isa(previous)


def _threshold_reference(X, thr, strict):
    """NumPy: bit j*b + k is X[:, j] > thr[j, k] (>= when not strict), compared
    in float64 as the portable loop does."""
    n, f = X.shape
    Xd = X.astype(np.float64)[:, :, None]
    bits = (Xd > thr[None] if strict else Xd >= thr[None]).reshape(n, f * thr.shape[1])
    if n == 0:
        return np.zeros((0, (f * thr.shape[1] + 63) // 64), dtype=np.uint64)
    return pack(np.where(bits, 1, -1))


def _awkward_floats(rng, dtype, n, f):
    """Normal values with NaN, infinities, signed zeros, +/-1 and exact
    threshold values sprinkled over the row body and the row tail."""
    X = rng.normal(size=(n, f))
    mask = rng.random((n, f))
    specials = rng.choice(np.array(SPECIALS), size=(n, f))
    X = np.where(mask < 0.3, specials, X)
    return X.astype(dtype)


def _awkward_thresholds(rng, dtype, f):
    """Per-feature thresholds: zeros (both signs), NaN, infinities, values
    beyond float32's range, below its smallest subnormal, and float64 values
    just off a float32 value (where a float32 comparison must round the
    threshold the right way)."""
    t = rng.normal(size=f)
    base = rng.normal(size=f).astype(np.float32).astype(np.float64)
    choices = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e300, -1e300, 1e-50, -1e-50,
                        3.5e38, -3.5e38, 1.0, -1.0])
    kind = rng.integers(0, 4, size=f)
    t = np.where(kind == 0, rng.choice(choices, size=f), t)
    t = np.where(kind == 1, np.nextafter(base, np.inf), t)  # just above a float32
    t = np.where(kind == 2, np.nextafter(base, -np.inf), t)  # just below a float32
    return t.reshape(f, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("f", FLOAT_FEATURES)
def test_pack_threshold_float_matches_portable_and_numpy(dtype, f, isa):
    """b == 1 on floats: every path gives the portable path's bits and NumPy's,
    bit for bit, with NaN, infinities, -0.0 and values exactly at the
    threshold (including float32 values that equal a float64 threshold only
    after rounding), strict and not, per-feature and uniform thresholds."""
    rng = np.random.default_rng(f)
    for n in (0, 1, 5):
        X = _awkward_floats(rng, dtype, n, f)
        thr = _awkward_thresholds(rng, dtype, f)
        if n:  # some values exactly at their threshold (representable in dtype)
            at = rng.random(f) < 0.3
            with np.errstate(over="ignore"):  # 1e300 -> inf in float32
                X[0, at] = thr[at, 0].astype(dtype)
        for t in (thr, np.zeros((f, 1)), np.full((f, 1), -0.0), np.full((f, 1), 0.5),
                  np.full((f, 1), np.nan), np.full((f, 1), 1e-50)):
            for strict in (True, False):
                got = _kernels.pack_threshold(readonly(X), readonly(t), strict)
                want = _threshold_reference(X, t, strict)
                np.testing.assert_array_equal(got, want)
                np.testing.assert_array_equal(
                    got, _portable(_kernels.pack_threshold, X, t, strict))
                checked, nonfinite = _kernels.pack_threshold_checked(X, t, strict)
                np.testing.assert_array_equal(checked, want)
                if nonfinite is not None:
                    assert nonfinite == bool(n and not np.isfinite(X).all())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pack_threshold_float32_rounding_at_threshold(dtype, isa):
    """Every float32 neighbour of thresholds that are not float32 values:
    the float32 compare must use the float32 just below (strict) or above
    (non-strict) the threshold, never the nearest one."""
    rng = np.random.default_rng(11)
    base = rng.normal(size=70).astype(np.float32)
    thr = np.concatenate([np.nextafter(base.astype(np.float64), np.inf),
                          np.nextafter(base.astype(np.float64), -np.inf)])[:, None]
    f = thr.shape[0]
    steps = [np.nextafter(base, np.float32(np.inf)), base, np.nextafter(base, np.float32(-np.inf))]
    X = np.stack([np.concatenate([s, s]) for s in steps]).astype(dtype)
    for strict in (True, False):
        got = _kernels.pack_threshold(X, thr, strict)
        np.testing.assert_array_equal(got, _threshold_reference(X, thr, strict))
        assert got.shape == (3, (f + 63) // 64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8, np.int8, np.int64])
def test_pack_threshold_thermometer_every_path(dtype, isa):
    """b > 1 (thermometer codes) stays on the scalar loop: still the NumPy bits."""
    rng = np.random.default_rng(4)
    X = rng.integers(0, 50, size=(9, 67)).astype(dtype)
    if dtype in (np.float32, np.float64):
        X[0, :5] = [np.nan, np.inf, -np.inf, -0.0, 0.0]
    thr = np.sort(rng.uniform(0, 50, size=(67, 3)), axis=1)
    thr[1] = 7.0  # ties
    for strict in (True, False):
        got = _kernels.pack_threshold(X, thr, strict)
        np.testing.assert_array_equal(got, _threshold_reference(X, thr, strict))
        np.testing.assert_array_equal(got, _portable(_kernels.pack_threshold, X, thr, strict))
        checked, nonfinite = _kernels.pack_threshold_checked(X, thr, strict)
        np.testing.assert_array_equal(checked, got)
        assert nonfinite is (None if dtype in (np.float32, np.float64) else False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pack_threshold_float_views(dtype, isa):
    """Row views, a view at an odd byte offset (realigned by the wrapper) and
    non-contiguous input (refused by the wrapper; as_kernel_input copies it)."""
    rng = np.random.default_rng(9)
    X = _awkward_floats(rng, dtype, 12, 131)
    thr = _awkward_thresholds(rng, dtype, 131)
    want = _threshold_reference(X, thr, True)
    np.testing.assert_array_equal(_kernels.pack_threshold(X[3:7], thr, True), want[3:7])
    np.testing.assert_array_equal(_kernels.pack_threshold(X[5:6], thr, True), want[5:6])
    raw = bytearray(X.nbytes + 1)
    odd = np.frombuffer(raw, dtype=dtype, count=X.size, offset=1).reshape(X.shape)
    odd[...] = X
    np.testing.assert_array_equal(_kernels.pack_threshold(readonly(odd), thr, True), want)
    with pytest.raises(ValueError):
        _kernels.pack_threshold(X[:, ::2], thr[::2].copy(), True)
    strided = np.ascontiguousarray(X[:, ::2])
    np.testing.assert_array_equal(_kernels.pack_threshold(strided, thr[::2].copy(), True),
                                  _threshold_reference(strided, thr[::2], True))


def _float_kinds(X):
    X = np.asarray(X, dtype=np.float64)
    known = (X == -1) | (X == 0) | (X == 1)
    return (int(np.any(X == -1)) | int(np.any(X == 0)) << 1 | int(np.any(X == 1)) << 2
            | int(np.any(~known)) << 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("f", FLOAT_FEATURES)
def test_pack_binary_float_matches_portable_and_numpy(dtype, f, isa):
    """pack_binary on floats: bits x > 0 and the exact kinds set (-0.0 is 0;
    NaN, infinities, 2 and 0.5 are "other") wherever the odd value sits."""
    rng = np.random.default_rng(100 + f)
    for values in ([-1.0, 1.0], [0.0, 1.0], [-1.0, 0.0, -0.0, 1.0], [1.0], [-0.0]):
        for n in (0, 1, 4):
            X = rng.choice(np.array(values), size=(n, f)).astype(dtype)
            got, kinds = _kernels.pack_binary(readonly(X))
            want = pack(np.where(X > 0, 1, -1)) if n else np.zeros((0, (f + 63) // 64))
            np.testing.assert_array_equal(got, want)
            assert kinds == _float_kinds(X) == _portable(_kernels.pack_binary, X)[1]
    X = rng.choice(np.array([-1.0, 1.0]), size=(3, f)).astype(dtype)
    for bad in (np.nan, np.inf, -np.inf, 2.0, 0.5, -0.5, 1e-45):
        for pos in {0, f // 2, f - 1}:
            Y = X.copy()
            Y[1, pos] = bad
            got, kinds = _kernels.pack_binary(Y)
            np.testing.assert_array_equal(got, pack(np.where(Y > 0, 1, -1)))
            assert kinds == _float_kinds(Y) == _portable(_kernels.pack_binary, Y)[1]
            np.testing.assert_array_equal(got, _portable(_kernels.pack_binary, Y)[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_packing_threads_identical(dtype, isa):
    """1, 2 and 3 threads give the same bytes (shapes above the parallel
    threshold) and the same kinds / non-finite reports."""
    rng = np.random.default_rng(21)
    X = _awkward_floats(rng, dtype, 301, 257)
    thr = _awkward_thresholds(rng, dtype, 257)
    B = rng.choice(np.array([-1.0, 0.0, 1.0]), size=(301, 257)).astype(dtype)

    def run(n):
        return [_kernels.pack_threshold(X, thr, True, n),
                _kernels.pack_threshold(X, np.zeros((257, 1)), False, n),
                _kernels.pack_threshold_checked(X, thr, False, n),
                _kernels.pack_binary(B, n)]

    want = run(1)
    np.testing.assert_array_equal(want[0], _threshold_reference(X, thr, True))
    for n in (2, 3):
        got = run(n)
        for g, w in zip(got[:2], want[:2]):
            np.testing.assert_array_equal(g, w)
        for g, w in zip(got[2:], want[2:]):
            np.testing.assert_array_equal(g[0], w[0])
            assert g[1] == w[1]
