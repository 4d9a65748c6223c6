"""Batch-norm kernels of latent-weight training against float32 NumPy
references with the same operations in the same order (exact), on every
SIMD path and thread count."""
import numpy as np
import pytest
from reference import pack, unpack

from skbnn import _kernels

F32 = np.float32
SHAPES = [(1, 1), (7, 5), (33, 130), (100, 256), (4, 64)]


def seq_mean(x):
    """Column means: float32 sums over rows in order, divided by the count."""
    return np.cumsum(x, axis=0, dtype=F32)[-1] / F32(x.shape[0])


def half(x):
    return np.asarray(x, F32).astype(np.float16).astype(F32)


def bn_forward_reference(Z, bias, l2, round_half, pre_bias):
    Z = Z.astype(F32)
    mu = seq_mean(Z)
    mu = half(mu) if round_half else mu
    d = Z - mu
    if l2:
        psi = np.sqrt(seq_mean(d * d) + F32(1e-4))
    else:
        psi = np.maximum(seq_mean(np.abs(d)), F32(1e-5))
    psi = half(psi) if round_half else psi
    pre = d / psi
    A = pre + bias
    omega = seq_mean(np.abs(pre if pre_bias else A))
    return mu, psi, A, pre, half(omega) if round_half else omega


@pytest.mark.parametrize("B,n", SHAPES)
@pytest.mark.parametrize("z_int", [True, False])
@pytest.mark.parametrize("l2,round_half,pre_bias", [(False, True, False), (True, False, True),
                                                    (False, False, True)])
def test_bn_forward_matches_reference(B, n, z_int, l2, round_half, pre_bias, isa):
    rng = np.random.default_rng(B * 31 + n)
    Z = (rng.integers(-n, n + 1, size=(B, n)).astype(np.int32) if z_int
         else rng.normal(size=(B, n)).astype(F32))
    bias = rng.normal(scale=0.3, size=n).astype(F32)
    mu_w, psi_w, A_w, pre_w, om_w = bn_forward_reference(Z, bias, l2, round_half, pre_bias)
    wn = -(-n // 64)
    for n_threads in (1, 2):
        mu, psi, om = np.empty(n, F32), np.empty(n, F32), np.empty(n, F32)
        bits, mask, pre_bits = (np.empty((B, wn), np.uint64) for _ in range(3))
        A = np.empty((B, n), F32)
        _kernels.bn_forward(Z, bias, l2, 1e-4, 1e-5, round_half, mu, psi, bits, mask, pre_bits,
                            om, pre_bias, A, n_threads)
        np.testing.assert_array_equal(mu, mu_w)
        np.testing.assert_array_equal(psi, psi_w)
        np.testing.assert_array_equal(A, A_w)
        np.testing.assert_array_equal(om, om_w)
        np.testing.assert_array_equal(unpack(bits, n), np.where(A_w >= 0, 1, -1))
        np.testing.assert_array_equal(unpack(mask, n), np.where(np.abs(A_w) <= 1, 1, -1))
        np.testing.assert_array_equal(unpack(pre_bits, n), np.where(pre_w >= 0, 1, -1))
    # outputs are optional; A may overwrite a float Z in place
    bits2 = np.empty((B, wn), np.uint64)
    if not z_int:
        Zc = Z.copy()
        _kernels.bn_forward(Zc, bias, l2, 1e-4, 1e-5, round_half, mu, psi, bits2, A_out=Zc)
        np.testing.assert_array_equal(Zc, A_w)
        np.testing.assert_array_equal(bits2, bits)


def bn_forward_outputs(Z, l2, round_half, pre_bias, bias, n_threads):
    B, n = Z.shape
    wn = -(-n // 64)
    mu, psi, om = np.empty(n, F32), np.empty(n, F32), np.empty(n, F32)
    bits, mask, pre_bits = (np.empty((B, wn), np.uint64) for _ in range(3))
    A = np.empty((B, n), F32)
    _kernels.bn_forward(Z, bias, l2, 1e-4, 1e-5, round_half, mu, psi, bits, mask, pre_bits,
                        om, pre_bias, A, n_threads)
    return mu, psi, om, bits, mask, pre_bits, A


@pytest.mark.parametrize("B,n", SHAPES)
@pytest.mark.parametrize("narrow,wide", [(np.int16, np.int32), (np.float16, np.float32)])
def test_bn_forward_narrow_z_equals_wide(B, n, narrow, wide, isa):
    """int16 / float16 Z give exactly the int32 / float32 results of the same
    values (float16 read as its exact float32 value)."""
    rng = np.random.default_rng(B * 7 + n)
    if narrow is np.int16:
        Z = rng.integers(-32768, 32768, size=(B, n)) // rng.choice([1, 100, 1000], size=(1, n))
        Z = Z.astype(np.int16)
    else:
        Z = (rng.normal(size=(B, n)) * 10.0 ** rng.integers(-6, 4, size=(1, n))).astype(np.float16)
        Z.flat[:3] = [65504.0, -6e-8, 0.0][:Z.size]  # largest finite, subnormal, zero
    Z.setflags(write=False)
    bias = rng.normal(scale=0.3, size=n).astype(F32)
    for l2, round_half, pre_bias in [(False, True, False), (True, False, True),
                                     (False, False, True)]:
        want = bn_forward_outputs(Z.astype(wide), l2, round_half, pre_bias, bias, 1)
        for n_threads in (1, 2):
            got = bn_forward_outputs(Z, l2, round_half, pre_bias, bias, n_threads)
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w)


# large enough for a team of threads: channel units for the sums, row blocks
# for the outputs, partial 8-channel groups and words, and (backward) more
# than one block of 1024 channels
BIG_SHAPES = [(3000, 64), (1100, 72), (517, 100), (300, 200), (40, 1100)]
MODES = [(False, True, False), (True, False, True), (False, False, True)]


def big_z(rng, B, n, dtype):
    if dtype in (np.int16, np.int32):
        return rng.integers(-3 * n, 3 * n + 1, size=(B, n)).astype(dtype)
    return (rng.normal(size=(B, n)) * 10.0 ** rng.integers(-2, 3, size=(1, n))).astype(dtype)


@pytest.mark.parametrize("B,n", BIG_SHAPES)
@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float16, np.float32])
def test_bn_forward_big_shapes(B, n, dtype, isa):
    rng = np.random.default_rng(B + 3 * n)
    Z = big_z(rng, B, n, dtype)
    bias = rng.normal(scale=0.3, size=n).astype(F32)
    for l2, round_half, pre_bias in MODES:
        mu_w, psi_w, A_w, pre_w, om_w = bn_forward_reference(Z, bias, l2, round_half, pre_bias)
        for n_threads in (1, 2):
            mu, psi, om, bits, mask, pre_bits, A = bn_forward_outputs(Z, l2, round_half, pre_bias,
                                                                      bias, n_threads)
            np.testing.assert_array_equal(mu, mu_w)
            np.testing.assert_array_equal(psi, psi_w)
            np.testing.assert_array_equal(A, A_w)
            np.testing.assert_array_equal(om, om_w)
            np.testing.assert_array_equal(unpack(bits, n), np.where(A_w >= 0, 1, -1))
            np.testing.assert_array_equal(unpack(mask, n), np.where(np.abs(A_w) <= 1, 1, -1))
            np.testing.assert_array_equal(unpack(pre_bits, n), np.where(pre_w >= 0, 1, -1))
            if dtype is np.float32:  # A written over Z, without the other outputs
                Zc, bits2 = Z.copy(), np.empty_like(bits)
                _kernels.bn_forward(Zc, bias, l2, 1e-4, 1e-5, round_half, mu, psi, bits2,
                                    omega=om, omega_pre_bias=pre_bias, A_out=Zc,
                                    n_threads=n_threads)
                np.testing.assert_array_equal(Zc, A_w)
                np.testing.assert_array_equal(om, om_w)
                np.testing.assert_array_equal(bits2, bits)


def special_values(rng, shape, dtype):
    """Random values with zeros of both signs, infinities and NaNs of both signs."""
    x = rng.normal(size=shape).astype(dtype)
    flat = x.reshape(-1)
    idx = rng.permutation(flat.size)
    for value, chunk in zip([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan],
                            np.array_split(idx[:60], 6)):
        flat[chunk] = value
    return x


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_bn_kernels_thread_counts_give_the_same_bytes(dtype, isa):
    """With infinities and NaNs (whose signs and payloads the reference
    comparisons do not see) every thread count gives the same bytes."""
    rng = np.random.default_rng(5)
    B, n = 2000, 72
    Z = special_values(rng, (B, n), dtype)
    bias = rng.normal(scale=0.3, size=n).astype(F32)
    psi = (np.abs(rng.normal(size=n)) + 0.1).astype(F32)
    psi[:3] = [0.0, -1.0, np.inf]
    omega = np.abs(rng.normal(size=n)).astype(F32)
    bits = pack(rng.choice([-1, 1], size=(B, n)))
    runs = []
    with np.errstate(all="ignore"):
        for n_threads in (1, 2, 3):
            fwd = bn_forward_outputs(Z, False, True, True, bias, n_threads)
            G, G_b = special_values(rng, (B, n), dtype), np.empty(n, F32)
            if n_threads > 1:
                G = runs[0][1].copy()
            G0 = G.copy()
            _kernels.bn_backward_bits(G, psi, bits, omega, G_b, n_threads)
            runs.append((fwd, G0, G, G_b))
    for fwd, G0, G, G_b in runs[1:]:
        for got, want in zip(fwd, runs[0][0]):
            assert got.tobytes() == want.tobytes()
        assert G.tobytes() == runs[0][2].tobytes()
        assert G_b.tobytes() == runs[0][3].tobytes()


def test_bn_forward_rejects_bad_shapes():
    Z = np.zeros((4, 10), np.int32)
    v = np.zeros(10, F32)
    bits = np.zeros((4, 1), np.uint64)
    with pytest.raises(TypeError, match="int32 or float32"):
        _kernels.bn_forward(Z.astype(np.int64), v, False, 0, 0, False, v, v, bits)
    with pytest.raises(TypeError, match="int16 or float16"):
        _kernels.bn_forward(Z.astype(np.int8), v, False, 0, 0, False, v, v, bits)
    with pytest.raises(ValueError, match="one entry per channel"):
        _kernels.bn_forward(Z, v[:5], False, 0, 0, False, v, v, bits)
    with pytest.raises(ValueError, match="bits must have shape"):
        _kernels.bn_forward(Z, v, False, 0, 0, False, v, v, bits[:2])
    with pytest.raises(ValueError, match="A_out"):
        _kernels.bn_forward(Z, v, False, 0, 0, False, v, v, bits, A_out=np.zeros((4, 9), F32))


def bn_backward_reference(G, psi, S, omega):
    g = G.astype(F32)
    v = g / psi
    mv = np.cumsum(v, axis=0, dtype=F32)[-1] / F32(len(g))
    mvs = np.cumsum((v * S) * omega, axis=0, dtype=F32)[-1] / F32(len(g))
    return (v - mv) - mvs * S, np.cumsum(g, axis=0, dtype=F32)[-1]


@pytest.mark.parametrize("B,n", SHAPES)
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_bn_backward_bits_matches_reference(B, n, dtype, isa):
    rng = np.random.default_rng(B + 17 * n)
    G0 = (rng.normal(scale=0.01, size=(B, n))).astype(dtype)
    psi = (np.abs(rng.normal(size=n)) + 0.1).astype(F32)
    omega = np.abs(rng.normal(size=n)).astype(F32)
    S = rng.choice([-1, 1], size=(B, n)).astype(F32)
    want, want_b = bn_backward_reference(G0, psi, S, omega)
    for n_threads in (1, 2):
        G, G_b = G0.copy(), np.empty(n, F32)
        _kernels.bn_backward_bits(G, psi, pack(S), omega, G_b, n_threads)
        np.testing.assert_array_equal(G, want.astype(dtype))
        np.testing.assert_array_equal(G_b, want_b)


@pytest.mark.parametrize("B,n", BIG_SHAPES)
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_bn_backward_bits_big_shapes(B, n, dtype, isa):
    rng = np.random.default_rng(2 * B + n)
    G0 = (rng.normal(scale=0.01, size=(B, n))).astype(dtype)
    psi = (np.abs(rng.normal(size=n)) + 0.1).astype(F32)
    omega = np.abs(rng.normal(size=n)).astype(F32)
    S = rng.choice([-1, 1], size=(B, n)).astype(F32)
    want, want_b = bn_backward_reference(G0, psi, S, omega)
    for n_threads in (1, 2):
        G, G_b = G0.copy(), np.empty(n, F32)
        _kernels.bn_backward_bits(G, psi, pack(S), omega, G_b, n_threads)
        np.testing.assert_array_equal(G, want.astype(dtype))
        np.testing.assert_array_equal(G_b, want_b)


def test_bn_backward_bits_rejects_bad_input():
    v = np.ones(8, F32)
    bits = np.zeros((3, 1), np.uint64)
    with pytest.raises(TypeError, match="writable"):
        G = np.zeros((3, 8), F32)
        G.setflags(write=False)
        _kernels.bn_backward_bits(G, v, bits, v, v.copy())
    with pytest.raises(TypeError, match="float16 or float32"):
        _kernels.bn_backward_bits(np.zeros((3, 8)), v, bits, v, v.copy())
    with pytest.raises(ValueError, match="bits must have shape"):
        _kernels.bn_backward_bits(np.zeros((4, 8), F32), v, bits, v, v.copy())


def seq_sum(x):
    """Column sums: float32 over rows in order."""
    return np.cumsum(x, axis=0, dtype=F32)[-1]


@pytest.mark.parametrize("B,n", SHAPES)
@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float16, np.float32])
def test_bn_stats_add_and_apply_match_reference(B, n, dtype, isa):
    """Two halves normalised as one batch: each half's sums formed in row
    order then added; the output pass with the given statistics gives the
    signs and A of ``(Z - mu) / psi + bias``, on every path and thread
    count."""
    rng = np.random.default_rng(B * 7 + n)
    halves = [(rng.integers(-n, n + 1, size=(B, n)) if np.dtype(dtype).kind == "i"
               else rng.normal(size=(B, n))).astype(dtype) for _ in range(2)]
    bias = rng.normal(scale=0.3, size=n).astype(F32)
    f = [h.astype(F32) for h in halves]
    mu_w = (seq_sum(f[0]) + seq_sum(f[1])) / F32(2 * B)
    l1_w = seq_sum(np.abs(f[1] - mu_w)) + seq_sum(np.abs(f[0] - mu_w))
    l2_w = seq_sum((f[1] - mu_w) ** 2) + seq_sum((f[0] - mu_w) ** 2)
    psi = np.maximum(l1_w / F32(2 * B), F32(1e-5))
    wn = -(-n // 64)
    for n_threads in (1, 2):
        acc = np.zeros(n, F32)
        for h in halves:
            _kernels.bn_stats_add(h, "sum", np.zeros(n, F32), acc, n_threads)
        mu = acc / F32(2 * B)
        np.testing.assert_array_equal(mu, mu_w)
        for mode, want in (("l1", l1_w), ("l2", l2_w)):
            dev = np.zeros(n, F32)
            _kernels.bn_stats_add(halves[1], mode, mu, dev, n_threads)
            _kernels.bn_stats_add(halves[0], mode, mu, dev, n_threads)
            np.testing.assert_array_equal(dev, want)
        for h, fh in zip(halves, f):
            A_w = (fh - mu) / psi + bias
            bits, A = np.empty((B, wn), np.uint64), np.empty((B, n), F32)
            _kernels.bn_apply(h, mu, psi, bias, bits, A, n_threads)
            np.testing.assert_array_equal(A, A_w)
            np.testing.assert_array_equal(unpack(bits, n), np.where(A_w >= 0, 1, -1))
            bits2 = np.empty((B, wn), np.uint64)
            _kernels.bn_apply(h, mu, psi, bias, bits2, n_threads=n_threads)
            np.testing.assert_array_equal(bits2, bits)


def test_bn_stats_of_one_part_equal_bn_forward():
    """One part holding the whole batch gives bn_forward's own statistics,
    and bn_apply with them its outputs."""
    rng = np.random.default_rng(3)
    Z = rng.integers(-50, 51, size=(60, 70)).astype(np.int16)
    bias = rng.normal(scale=0.3, size=70).astype(F32)
    mu, psi, om, bits, mask, pre_bits, A = bn_forward_outputs(Z, False, False, False, bias, 1)
    acc = np.zeros(70, F32)
    _kernels.bn_stats_add(Z, "sum", acc, acc)
    np.testing.assert_array_equal(acc / F32(60), mu)
    dev = np.zeros(70, F32)
    _kernels.bn_stats_add(Z, "l1", mu, dev)
    np.testing.assert_array_equal(np.maximum(dev / F32(60), F32(1e-5)), psi)
    bits2, A2 = np.empty_like(bits), np.empty_like(A)
    _kernels.bn_apply(Z, mu, psi, bias, bits2, A2)
    np.testing.assert_array_equal(bits2, bits)
    np.testing.assert_array_equal(A2, A)


def test_bn_stats_add_and_apply_reject_bad_input():
    Z = np.zeros((4, 10), np.int32)
    v = np.zeros(10, F32)
    bits = np.zeros((4, 1), np.uint64)
    with pytest.raises(TypeError, match="int32 or float32"):
        _kernels.bn_stats_add(Z.astype(np.int64), "sum", v, v.copy())
    with pytest.raises(ValueError, match="mode must be"):
        _kernels.bn_stats_add(Z, "l3", v, v.copy())
    with pytest.raises(ValueError, match="one entry per channel"):
        _kernels.bn_stats_add(Z, "sum", v, v[:3].copy())
    with pytest.raises(ValueError, match="one entry per channel"):
        _kernels.bn_apply(Z, v, v[:5], v, bits)
    with pytest.raises(ValueError, match="bits must have shape"):
        _kernels.bn_apply(Z, v, v, v, bits[:2])
    with pytest.raises(ValueError, match="A_out"):
        _kernels.bn_apply(Z, v, v, v, bits, np.zeros((4, 9), F32))
