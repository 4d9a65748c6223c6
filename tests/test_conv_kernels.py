"""Convolution, pooling and flattening kernels against plain-NumPy float64
references written from the definitions (np.pad zero padding on +/-1 maps),
on every SIMD path: integer results exactly, float results within a tight
tolerance of the reference and bit-identical across ISA paths and thread
counts."""
import numpy as np
import pytest
from reference import pack, unpack

from skbnn import _kernels

F32, F64 = np.float32, np.float64
THREADS = (1, 2, 3)

# (n, H, W, C, Cout, k, pad): kernels 1, 3, 5 (and even 2, 4), both paddings,
# odd sizes, channel counts off and on multiples of 64, batches 1 and 3
CASES = [
    (1, 5, 5, 1, 3, 1, 0),
    (3, 7, 5, 3, 5, 3, 1),
    (3, 7, 5, 3, 5, 3, 0),
    (1, 9, 7, 65, 17, 5, 2),
    (3, 5, 9, 65, 6, 5, 0),
    (3, 6, 7, 64, 64, 3, 1),
    (1, 5, 5, 128, 9, 3, 0),
    (3, 3, 3, 130, 65, 3, 1),   # tiny map: every output pixel on the border
    (1, 7, 9, 130, 70, 1, 0),
    (3, 4, 6, 64, 8, 5, 2),     # kernel larger than the map's height
    (3, 6, 5, 3, 4, 2, 0),      # even kernel, valid
    (1, 6, 6, 65, 5, 4, 1),     # even kernel, padded
]
IDS = ["n{}_{}x{}_C{}_o{}_k{}_p{}".format(*c) for c in CASES]
# bands of 4 output rows in the input gradient (D of a sample > 1 MiB),
# several chunks in conv2d_real, threaded products
BIG = (2, 13, 13, 512, 8, 3, 1)
# two chunks of rows in conv2d_bits, the boundary inside a sample
BIG_BITS = (2, 23, 23, 1024, 4, 3, 1)
# more weights than one binary product takes at once: blocks of channels
WIDE_BITS = (2, 3, 4, 1024, 600, 3, 1)
# +/-1 panels too large to build once per call (rebuilt per band, in blocks
# of rows and of columns) and weight gradients in several column blocks
WIDE_REAL = (2, 4, 5, 512, 40, 3, 1)
WIDE_DX = [(2, 6, 5, 130, 160, 3, 1), (1, 4, 5, 600, 40, 3, 1)]
WIDE_DW = (10, 6, 6, 64, 600, 3, 1)


def out_size(H, W, k, pad):
    return H + 2 * pad - k + 1, W + 2 * pad - k + 1


def readonly(*arrays):
    for a in arrays:
        a.setflags(write=False)
    return arrays


def on_isa(isa, fn):
    """fn() computed on one kernel path (then the previous one is restored)."""
    previous = _kernels.get_isa()
    _kernels.set_isa(isa)
    try:
        return fn()
    finally:
        _kernels.set_isa(previous)


def same_bits(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


def make_problem(case, seed=0):
    n, H, W, C, Cout, k, pad = case
    rng = np.random.default_rng(seed + 7919 * sum(case))
    x = rng.choice([-1.0, 1.0], size=(n, H, W, C))
    w = rng.choice([-1.0, 1.0], size=(Cout, k, k, C))
    return rng, x, w


def pack_map(x):
    return pack(x.reshape(-1, x.shape[-1]))


def pack_w(w):
    return pack(w.reshape(w.shape[0], -1))


def padded(x, pad):
    return np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))


# ------------------------------------------------------------------ references
def conv_ref(x, w, pad):
    """out[(s,oy,ox), o] = sum_{ky,kx,c} xpad[s, oy+ky, ox+kx, c] w[o, ky, kx, c]."""
    n, H, W, C = x.shape
    Cout, k = w.shape[:2]
    Ho, Wo = out_size(H, W, k, pad)
    xp = padded(x.astype(F64), pad)
    out = np.zeros((n, Ho, Wo, Cout))
    for ky in range(k):
        for kx in range(k):
            out += np.einsum("syxc,oc->syxo", xp[:, ky:ky + Ho, kx:kx + Wo], w[:, ky, kx])
    return out.reshape(-1, Cout)


def input_grad_ref(g, w, n, H, W, pad):
    """dX = the transpose of the convolution applied to g, on the padded map
    then cropped (padded taps receive nothing that reaches dX)."""
    Cout, k, _, C = w.shape
    Ho, Wo = out_size(H, W, k, pad)
    g = g.astype(F64).reshape(n, Ho, Wo, Cout)
    dxp = np.zeros((n, H + 2 * pad, W + 2 * pad, C))
    for ky in range(k):
        for kx in range(k):
            dxp[:, ky:ky + Ho, kx:kx + Wo] += np.einsum("syxo,oc->syxc", g, w[:, ky, kx])
    return dxp[:, pad:pad + H, pad:pad + W].reshape(-1, C)


def weight_grad_ref(g, x, k, pad):
    """dW[o, (ky,kx,c)] = sum_{s,oy,ox} g[(s,oy,ox), o] xpad[s, oy+ky, ox+kx, c]."""
    n, H, W, C = x.shape
    Ho, Wo = out_size(H, W, k, pad)
    Cout = g.shape[1]
    g = g.astype(F64).reshape(n, Ho, Wo, Cout)
    xp = padded(x.astype(F64), pad)
    dw = np.zeros((Cout, k, k, C))
    for ky in range(k):
        for kx in range(k):
            dw[:, ky, kx] = np.einsum("syxo,syxc->oc", g, xp[:, ky:ky + Ho, kx:kx + Wo])
    return dw.reshape(Cout, -1)


def sum_bound(*factors):
    """A tolerance for float32 sums: a few ulps of the sum of |terms|."""
    return 1e-6 * np.prod(factors) + 1e-6


# ------------------------------------------------------------------ conv2d_bits
@pytest.mark.parametrize("case", CASES + [BIG, BIG_BITS, WIDE_BITS],
                         ids=IDS + ["big", "big_bits", "wide_bits"])
def test_conv2d_bits_exact(case, isa):
    n, H, W, C, Cout, k, pad = case
    _, x, w = make_problem(case)
    X, Wp = readonly(pack_map(x), pack_w(w))
    want = conv_ref(x, w, pad)
    got = _kernels.conv2d_bits(X, n, H, W, C, Wp, k, pad)
    assert got.dtype == np.int32 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    for n_threads in THREADS[1:]:
        np.testing.assert_array_equal(
            _kernels.conv2d_bits(X, n, H, W, C, Wp, k, pad, n_threads=n_threads), want)
    out = np.full(want.shape, 12345, np.int16)
    assert _kernels.conv2d_bits(X, n, H, W, C, Wp, k, pad, out=out, n_threads=2) is out
    np.testing.assert_array_equal(out, want)


def test_conv2d_bits_padding_is_exact_zero():
    """A 1x1 map with a 3x3 'same' kernel sees its centre tap only."""
    rng = np.random.default_rng(1)
    x = rng.choice([-1.0, 1.0], size=(4, 1, 1, 70))
    w = rng.choice([-1.0, 1.0], size=(5, 3, 3, 70))
    got = _kernels.conv2d_bits(pack_map(x), 4, 1, 1, 70, pack_w(w), 3, 1)
    np.testing.assert_array_equal(got, x.reshape(4, 70) @ w[:, 1, 1].T)


def test_conv2d_bits_refuses_int16_overflow():
    C, k = 1311, 5  # k*k*C = 32775 > 32767
    X = np.zeros((25, -(-C // 64)), np.uint64)
    Wp = np.zeros((2, -(-k * k * C // 64)), np.uint64)
    with pytest.raises(ValueError, match="int16 output needs k\\*k\\*C <= 32767"):
        _kernels.conv2d_bits(X, 1, 5, 5, C, Wp, k, 2, out=np.zeros((25, 2), np.int16))
    # int32 is fine and so is int16 at the limit
    assert _kernels.conv2d_bits(X, 1, 5, 5, C, Wp, k, 2).shape == (25, 2)


def test_conv2d_bits_rejects_bad_input():
    X = np.zeros((2 * 5 * 5, 1), np.uint64)
    Wp = np.zeros((4, 1), np.uint64)  # k*k*C = 27 bits
    ok = dict(n=2, H=5, W=5, C=3, k=3, pad=1)

    def call(X=X, Wp=Wp, out=None, **kw):
        args = dict(ok, **kw)
        return _kernels.conv2d_bits(X, args["n"], args["H"], args["W"], args["C"], Wp,
                                    args["k"], args["pad"], out=out)

    assert call().shape == (50, 4)
    with pytest.raises(ValueError, match="X must have shape \\(75, 1\\)"):
        call(n=3)
    with pytest.raises(TypeError, match="X must be uint64"):
        call(X=X.astype(np.int64))
    with pytest.raises(ValueError, match="Wp must have shape \\(4, 2\\)"):
        call(k=5, pad=2)
    with pytest.raises(ValueError, match="pad must be in"):
        call(pad=3)
    with pytest.raises(ValueError, match="does not fit"):
        call(H=2, pad=0)
    with pytest.raises(ValueError, match="padding bits"):
        call(Wp=np.full((4, 1), 1 << 40, np.uint64))
    with pytest.raises(TypeError, match="out must be int32 or int16"):
        call(out=np.zeros((50, 4), np.int64))
    with pytest.raises(ValueError, match="out must have shape"):
        call(out=np.zeros((50, 5), np.int32))
    with pytest.raises(ValueError, match="C-contiguous"):
        call(X=np.zeros((50, 2), np.uint64)[:, :1])
    with pytest.raises(ValueError, match="n_threads"):
        _kernels.conv2d_bits(X, 2, 5, 5, 3, Wp, 3, 1, n_threads=0)
    assert call(n=0, X=np.zeros((0, 1), np.uint64)).shape == (0, 4)


# ------------------------------------------------------------------ conv2d_real
@pytest.mark.parametrize("case", CASES + [BIG, WIDE_REAL], ids=IDS + ["big", "wide_real"])
def test_conv2d_real(case, isa):
    n, H, W, C, Cout, k, pad = case
    rng, _, w = make_problem(case)
    x = rng.normal(size=(n, H, W, C)).astype(F32)
    X, Wp = readonly(x.reshape(-1, C), pack_w(w))
    want = conv_ref(x, w, pad)
    got = _kernels.conv2d_real(X, n, H, W, C, Wp, k, pad)
    assert got.dtype == F32
    np.testing.assert_allclose(got, want, rtol=0, atol=sum_bound(k * k * C, 4))
    base = on_isa("generic", lambda: _kernels.conv2d_real(X, n, H, W, C, Wp, k, pad))
    same_bits(got, base)
    # the documented order: one float32 chain per entry over the im2col
    # columns (ky, kx, c) ascending, from +0.0
    same_bits(got, chains(im2col(x, k, pad), w.reshape(Cout, -1).T))
    for n_threads in THREADS[1:]:
        same_bits(_kernels.conv2d_real(X, n, H, W, C, Wp, k, pad, n_threads=n_threads), base)
    out = np.empty(want.shape, np.float16)
    _kernels.conv2d_real(X, n, H, W, C, Wp, k, pad, out=out, n_threads=2)
    same_bits(out, base.astype(np.float16))  # round to nearest even


def chains(A, B):
    """float32 (M, N): entry (m, n) = one float32 chain from +0.0 over k in
    order of A[m, k] * B[k, n] (exact products: B is +/-1 or 0)."""
    A, B = A.astype(F32), B.astype(F32)
    acc = np.zeros((A.shape[0], B.shape[1]), F32)
    for j in range(A.shape[1]):
        acc = acc + A[:, j:j + 1] * B[j]
    return acc


def im2col(x, k, pad):
    """(n*Ho*Wo, k*k*C) float32 rows, tap-major, padded taps 0."""
    n, H, W, C = x.shape
    Ho, Wo = out_size(H, W, k, pad)
    xp = padded(x, pad)
    cols = np.stack([xp[:, ky:ky + Ho, kx:kx + Wo] for ky in range(k) for kx in range(k)],
                    axis=3)
    return np.ascontiguousarray(cols.reshape(n * Ho * Wo, k * k * C), dtype=F32)


def test_conv2d_real_rejects_bad_input():
    X = np.zeros((50, 3), F32)
    Wp = np.zeros((4, 1), np.uint64)
    with pytest.raises(TypeError, match="X must be float32"):
        _kernels.conv2d_real(X.astype(F64), 2, 5, 5, 3, Wp, 3, 1)
    with pytest.raises(ValueError, match="X must have shape \\(50, 4\\)"):
        _kernels.conv2d_real(X, 2, 5, 5, 4, Wp, 3, 1)
    with pytest.raises(TypeError, match="out must be float32 or float16"):
        _kernels.conv2d_real(X, 2, 5, 5, 3, Wp, 3, 1, out=np.zeros((50, 4), F64))
    with pytest.raises(ValueError, match="writable"):
        ro = np.zeros((50, 4), F32)
        ro.setflags(write=False)
        _kernels.conv2d_real(X, 2, 5, 5, 3, Wp, 3, 1, out=ro)


# ------------------------------------------------------------------ input gradient
@pytest.mark.parametrize("case", CASES + [BIG] + WIDE_DX, ids=IDS + ["big", "wide_dx", "wider_dx"])
@pytest.mark.parametrize("gdtype", [F32, np.float16])
def test_conv2d_input_grad(case, gdtype, isa):
    n, H, W, C, Cout, k, pad = case
    rng, _, w = make_problem(case, seed=1)
    Ho, Wo = out_size(H, W, k, pad)
    g = rng.normal(size=(n * Ho * Wo, Cout)).astype(gdtype)
    keep = rng.random((n * H * W, C)) < 0.7
    G, Wp, M = readonly(g, pack_w(w), pack(keep))
    want = input_grad_ref(g, w, n, H, W, pad)
    got = _kernels.conv2d_input_grad(G, n, H, W, C, Wp, k, pad)
    assert got.dtype == F32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=sum_bound(k * k * Cout, 4))
    base = on_isa("generic", lambda: _kernels.conv2d_input_grad(G, n, H, W, C, Wp, k, pad))
    same_bits(got, base)
    for n_threads in THREADS[1:]:
        same_bits(_kernels.conv2d_input_grad(G, n, H, W, C, Wp, k, pad, n_threads=n_threads),
                  base)
    masked = _kernels.conv2d_input_grad(G, n, H, W, C, Wp, k, pad, mask=M, n_threads=2)
    same_bits(masked, np.where(keep, base, F32(0)))
    out = np.empty(want.shape, np.float16)
    assert _kernels.conv2d_input_grad(G, n, H, W, C, Wp, k, pad, out=out, mask=M) is out
    same_bits(out, np.where(keep, base, F32(0)).astype(np.float16))


def test_conv2d_input_grad_order():
    """One float32 chain per dX entry from +0.0: the taps (ky, kx) in
    row-major order and, within a tap, o ascending; taps whose output pixel
    is outside the map add nothing."""
    for n, H, W, C, Cout, k, pad in [(2, 5, 4, 3, 6, 3, 1), (2, 6, 5, 70, 9, 3, 0)]:
        rng = np.random.default_rng(5)
        w = rng.choice([-1.0, 1.0], size=(Cout, k, k, C))
        Ho, Wo = out_size(H, W, k, pad)
        g = (rng.normal(size=(n * Ho * Wo, Cout)) * 10.0 ** rng.integers(-3, 4, size=(1, Cout))
             ).astype(F32)
        gp = np.zeros((n, Ho + 2 * k, Wo + 2 * k, Cout), F32)  # zero G around the map
        gp[:, k:k + Ho, k:k + Wo] = g.reshape(n, Ho, Wo, Cout)
        want = np.zeros((n, H, W, C), F32)
        for ky in range(k):
            for kx in range(k):
                # output pixel (iy - ky + pad, ix - kx + pad) of every input pixel
                oy, ox = k + pad - ky, k + pad - kx
                G_t = gp[:, oy:oy + H, ox:ox + W]
                for o in range(Cout):
                    want = want + G_t[..., o:o + 1] * w[o, ky, kx].astype(F32)
        for isa in _kernels.available_isas():
            for n_threads in (1, 2):
                got = on_isa(isa, lambda: _kernels.conv2d_input_grad(
                    g, n, H, W, C, pack_w(w), k, pad, n_threads=n_threads))
                same_bits(got, want.reshape(-1, C))


def test_conv2d_input_grad_rejects_bad_input():
    Wp = np.zeros((4, 1), np.uint64)
    G = np.zeros((50, 4), F32)
    with pytest.raises(TypeError, match="G must be float32 or float16"):
        _kernels.conv2d_input_grad(G.astype(F64), 2, 5, 5, 3, Wp, 3, 1)
    with pytest.raises(ValueError, match="G must have shape \\(50, 4\\)"):
        _kernels.conv2d_input_grad(G[:40], 2, 5, 5, 3, Wp, 3, 1)
    with pytest.raises(ValueError, match="mask must have shape \\(50, 1\\)"):
        _kernels.conv2d_input_grad(G, 2, 5, 5, 3, Wp, 3, 1, mask=np.zeros((49, 1), np.uint64))
    with pytest.raises(ValueError, match="out must have shape \\(50, 3\\)"):
        _kernels.conv2d_input_grad(G, 2, 5, 5, 3, Wp, 3, 1, out=np.zeros((50, 4), F32))
    with pytest.raises(ValueError, match="overlap"):
        buf = np.zeros((50, 4), F32)
        _kernels.conv2d_input_grad(buf, 2, 5, 5, 3, Wp, 3, 1,
                                   out=buf.reshape(-1)[:150].reshape(50, 3))


# ------------------------------------------------------------------ weight gradient
WG_CASES = CASES + [(10, 4, 5, 65, 7, 3, 1), (10, 5, 4, 3, 9, 3, 0), WIDE_DW]  # chunks of rows
WG_IDS = IDS + ["n10_chunks_bits", "n10_chunks_float", "wide_dw"]


@pytest.mark.parametrize("case", WG_CASES, ids=WG_IDS)
@pytest.mark.parametrize("xkind", ["bits", "float"])
@pytest.mark.parametrize("gdtype", [F32, np.float16])
def test_conv2d_weight_grad(case, xkind, gdtype, isa):
    n, H, W, C, Cout, k, pad = case
    rng, x, _ = make_problem(case, seed=2)
    Ho, Wo = out_size(H, W, k, pad)
    if xkind == "float":
        x = rng.normal(size=x.shape).astype(F32)
        X = x.reshape(-1, C).copy()
    else:
        X = pack_map(x)
    g = rng.normal(size=(n * Ho * Wo, Cout)).astype(gdtype)
    G, X = readonly(g, X)
    want = weight_grad_ref(g, x, k, pad)
    got = _kernels.conv2d_weight_grad(G, X, n, H, W, C, k, pad)
    assert got.dtype == F32 and got.shape == (Cout, k * k * C)
    np.testing.assert_allclose(got, want, rtol=0, atol=sum_bound(n * Ho * Wo, 8))
    base = on_isa("generic", lambda: _kernels.conv2d_weight_grad(G, X, n, H, W, C, k, pad))
    same_bits(got, base)
    for n_threads in THREADS[1:]:
        same_bits(_kernels.conv2d_weight_grad(G, X, n, H, W, C, k, pad, n_threads=n_threads),
                  base)
    S = _kernels.conv2d_weight_grad(G, X, n, H, W, C, k, pad, sign=True, n_threads=2)
    assert S.dtype == np.uint64 and S.shape == (Cout, -(-k * k * C // 64))
    np.testing.assert_array_equal(S, pack(base >= 0))
    clear = np.abs(want) > 1e-4
    np.testing.assert_array_equal(unpack(S, k * k * C)[clear], np.where(want >= 0, 1, -1)[clear])


def test_conv2d_weight_grad_order():
    """Packed X: one float32 chain per dW entry from +0.0 over the output
    rows (s, oy, ox) in order of G[r, o] * x (x = +/-1, 0 on padded taps:
    exact products), whatever the ISA path and thread count."""
    for case in [(3, 5, 4, 3, 6, 3, 1), (2, 6, 5, 70, 9, 3, 0), (9, 4, 4, 64, 7, 3, 1)]:
        n, H, W, C, Cout, k, pad = case
        rng, x, _ = make_problem(case, seed=6)
        Ho, Wo = out_size(H, W, k, pad)
        for gdtype in (F32, np.float16):
            g = (rng.normal(size=(n * Ho * Wo, Cout))
                 * 10.0 ** rng.integers(-3, 4, size=(1, Cout))).astype(gdtype)
            want = chains(g.astype(F32).T, im2col(x, k, pad))
            for isa in _kernels.available_isas():
                for n_threads in (1, 2):
                    got = on_isa(isa, lambda: _kernels.conv2d_weight_grad(
                        g, pack_map(x), n, H, W, C, k, pad, n_threads=n_threads))
                    same_bits(got, want)


def test_conv2d_weight_grad_big(isa):
    n, H, W, C, Cout, k, pad = BIG
    rng, x, _ = make_problem(BIG, seed=3)
    Ho, Wo = out_size(H, W, k, pad)
    g = rng.normal(size=(n * Ho * Wo, Cout)).astype(F32)
    X = pack_map(x)
    got = _kernels.conv2d_weight_grad(g, X, n, H, W, C, k, pad, n_threads=2)
    np.testing.assert_allclose(got, weight_grad_ref(g, x, k, pad), rtol=0,
                               atol=sum_bound(n * Ho * Wo, 8))
    same_bits(got, on_isa("generic", lambda: _kernels.conv2d_weight_grad(g, X, n, H, W, C, k,
                                                                        pad)))


def test_conv2d_weight_grad_rejects_bad_input():
    G = np.zeros((50, 4), F32)
    X = np.zeros((50, 1), np.uint64)
    with pytest.raises(ValueError, match="G must have shape \\(18, 4\\)"):
        _kernels.conv2d_weight_grad(G, X, 2, 5, 5, 3, 3, 0)  # valid: 3 x 3 outputs
    with pytest.raises(TypeError, match="X must be float32 or uint64"):
        _kernels.conv2d_weight_grad(G, X.astype(np.int32), 2, 5, 5, 3, 3, 1)
    with pytest.raises(ValueError, match="X must have shape \\(50, 3\\)"):
        _kernels.conv2d_weight_grad(G, np.zeros((50, 4), F32), 2, 5, 5, 3, 3, 1)
    with pytest.raises(TypeError, match="G must be a 2-D"):
        _kernels.conv2d_weight_grad(G.reshape(-1), X, 2, 5, 5, 3, 3, 1)
    assert _kernels.conv2d_weight_grad(G, X, 2, 5, 5, 3, 3, 1).shape == (4, 27)


# ------------------------------------------------------------------ scratch
def test_scratch_is_bounded():
    """Each kernel's scratch (traced: Python's raw allocator) stays under
    2 MiB for a 512 -> 512 3x3 'same' layer on an 8x8 map at n = 32: the
    weight gradient's float accumulators and +/-1 panels are blocked and the
    input gradient runs in bands (on the best path of this CPU; the other
    paths block the same way, with tiles at most as wide)."""
    import tracemalloc
    n, H, W, C, Cout, k, pad = 32, 8, 8, 512, 512, 3, 1
    rng = np.random.default_rng(11)
    X = pack(rng.random((n * H * W, C)) < 0.5)
    Wp = pack(rng.random((Cout, k * k * C)) < 0.5)
    G16 = rng.normal(size=(n * H * W, Cout)).astype(np.float16)
    G32 = G16.astype(F32)
    Xf = rng.normal(size=(n * H * W, C)).astype(F32)
    outs = [np.empty((n * H * W, Cout), np.int16), np.empty((n * H * W, Cout), np.float16),
            np.empty((n * H * W, C), np.float16), np.empty((n * H * W, C), F32)]
    calls = {
        "conv2d_bits": lambda: _kernels.conv2d_bits(X, n, H, W, C, Wp, k, pad, out=outs[0]),
        "conv2d_real": lambda: _kernels.conv2d_real(Xf, n, H, W, C, Wp, k, pad, out=outs[1]),
        "conv2d_input_grad f16": lambda: _kernels.conv2d_input_grad(
            G16, n, H, W, C, Wp, k, pad, out=outs[2], mask=X),
        "conv2d_input_grad f32": lambda: _kernels.conv2d_input_grad(
            G32, n, H, W, C, Wp, k, pad, out=outs[3]),
        "conv2d_weight_grad sign": lambda: _kernels.conv2d_weight_grad(
            G16, X, n, H, W, C, k, pad, sign=True),
        "conv2d_weight_grad float": lambda: _kernels.conv2d_weight_grad(
            G32, X, n, H, W, C, k, pad),
        "conv2d_weight_grad real": lambda: _kernels.conv2d_weight_grad(
            G16, Xf, n, H, W, C, k, pad, sign=True),
    }
    for name, call in calls.items():
        call()  # any one-time set-up outside the measurement
        tracemalloc.start()
        try:
            start = tracemalloc.get_traced_memory()[0]
            result = call()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        fresh = 0 if any(result is o for o in outs) else result.nbytes  # a new result array
        scratch = peak - start - fresh
        assert scratch < 2 * 2 ** 20, f"{name}: {scratch / 2 ** 20:.2f} MiB of scratch"


# ------------------------------------------------------------------ max pooling
POOL_SHAPES = [(1, 2, 2, 1), (3, 5, 7, 3), (2, 4, 6, 64), (1, 7, 3, 65), (2, 3, 5, 130),
               (1, 1, 4, 5), (2, 6, 6, 128)]
POOL_IDS = ["n{}_{}x{}_C{}".format(*s) for s in POOL_SHAPES]


def windows(x):
    """(4, n, Ho, Wo, C) window values in the order (0,0), (0,1), (1,0), (1,1)."""
    n, H, W, C = x.shape
    Ho, Wo = H // 2, W // 2
    x = x[:, :2 * Ho, :2 * Wo]
    return np.stack([x[:, dy::2, dx::2] for dy in (0, 1) for dx in (0, 1)])


def argmax_ref(first, n, H, W, C):
    """Packed argmax map from the first-maximum window index (n, Ho, Wo, C)."""
    am = np.zeros((n, H, W, C), bool)
    Ho, Wo = H // 2, W // 2
    for q, (dy, dx) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        am[:, dy:2 * Ho:2, dx:2 * Wo:2][first == q] = True
    return am.reshape(-1, C)


@pytest.mark.parametrize("shape", POOL_SHAPES, ids=POOL_IDS)
def test_maxpool2x2_bits(shape, isa):
    n, H, W, C = shape
    rng = np.random.default_rng(sum(shape))
    # mostly -1 so that all-minus windows (argmax at (0,0)) are common
    x = np.where(rng.random((n, H, W, C)) < 0.3, 1.0, -1.0)
    X = pack_map(x)
    X[:, -1] |= ~np.uint64(0) << np.uint64(C % 64) if C % 64 else np.uint64(0)  # junk padding
    (X,) = readonly(X)
    win = windows(x)
    first = np.argmax(win, axis=0)  # first +1, or 0 when all are -1
    for n_threads in THREADS:
        out, am = _kernels.maxpool2x2(X, n, H, W, C, n_threads=n_threads)
        np.testing.assert_array_equal(out, pack(win.max(axis=0).reshape(-1, C)))
        np.testing.assert_array_equal(am, pack(argmax_ref(first, n, H, W, C)))


@pytest.mark.parametrize("shape", POOL_SHAPES, ids=POOL_IDS)
@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float16, F32])
def test_maxpool2x2_values(shape, dtype, isa):
    n, H, W, C = shape
    rng = np.random.default_rng(sum(shape) + 1)
    x = rng.integers(-3, 3, size=(n, H, W, C)).astype(dtype)  # many ties
    if np.dtype(dtype).kind == "f":
        x[rng.random(x.shape) < 0.2] = -0.0  # -0 ties with +0 (compared as floats)
        x = x * dtype(0.37)
    (X,) = readonly(x.reshape(-1, C))
    win = windows(x)
    first = np.argmax(win, axis=0)
    pick = np.take_along_axis(win, first[None], axis=0)[0]
    for n_threads in THREADS:
        out, am = _kernels.maxpool2x2(X, n, H, W, C, n_threads=n_threads)
        assert out.dtype == dtype
        same_bits(out, pick.reshape(-1, C))
        np.testing.assert_array_equal(am, pack(argmax_ref(first, n, H, W, C)))


@pytest.mark.parametrize("shape", POOL_SHAPES, ids=POOL_IDS)
@pytest.mark.parametrize("gdtype,odtype", [(F32, F32), (np.float16, np.float16),
                                           (np.float16, F32), (F32, np.float16)])
def test_maxpool2x2_backward(shape, gdtype, odtype, isa):
    n, H, W, C = shape
    rng = np.random.default_rng(sum(shape) + 2)
    x = rng.normal(size=(n, H, W, C)).astype(F32)
    _, am = _kernels.maxpool2x2(x.reshape(-1, C), n, H, W, C)
    Ho, Wo = H // 2, W // 2
    g = rng.normal(size=(n * Ho * Wo, C)).astype(gdtype)
    keep = rng.random((n * H * W, C)) < 0.6
    G, AM, M = readonly(g, am, pack(keep))
    up = np.zeros((n, H, W, C), F64)
    up[:, :2 * Ho, :2 * Wo] = np.repeat(np.repeat(g.astype(F64).reshape(n, Ho, Wo, C), 2,
                                                  axis=1), 2, axis=2)
    sel = unpack(am, C) > 0
    want = np.where(sel, up.reshape(-1, C), 0.0).astype(odtype)
    for n_threads in THREADS:
        out = np.full((n * H * W, C), 7, odtype)
        got = _kernels.maxpool2x2_backward(G, AM, n, H, W, C, out=out, n_threads=n_threads)
        assert got is out
        same_bits(got, want)
        same_bits(_kernels.maxpool2x2_backward(G, AM, n, H, W, C, mask=M, out=out.copy(),
                                               n_threads=n_threads),
                  np.where(keep, want, odtype(0)).astype(odtype))
    default = _kernels.maxpool2x2_backward(G, AM, n, H, W, C)
    assert default.dtype == gdtype


def test_maxpool_rejects_bad_input():
    X = np.zeros((2 * 4 * 4, 1), np.uint64)
    with pytest.raises(ValueError, match="X must have shape \\(40, 1\\)"):
        _kernels.maxpool2x2(X, 2, 4, 5, 3)
    with pytest.raises(TypeError, match="X must be uint64, int16, int32, float16 or float32"):
        _kernels.maxpool2x2(np.zeros((32, 3), F64), 2, 4, 4, 3)
    with pytest.raises(ValueError, match="C \\(channels\\)"):
        _kernels.maxpool2x2(X, 2, 4, 4, 0)
    G = np.zeros((8, 3), F32)
    with pytest.raises(ValueError, match="argmax must have shape \\(32, 1\\)"):
        _kernels.maxpool2x2_backward(G, X[:30], 2, 4, 4, 3)
    with pytest.raises(ValueError, match="G must have shape \\(8, 3\\)"):
        _kernels.maxpool2x2_backward(G[:7], X, 2, 4, 4, 3)
    with pytest.raises(TypeError, match="out must be float32 or float16"):
        _kernels.maxpool2x2_backward(G, X, 2, 4, 4, 3, out=np.zeros((32, 3), np.int32))


# ------------------------------------------------------------------ flatten
@pytest.mark.parametrize("n,P,C", [(1, 1, 1), (3, 9, 3), (2, 4, 64), (3, 5, 65), (2, 7, 130),
                                   (1, 25, 128), (3, 1, 200)])
def test_flatten_bits(n, P, C):
    rng = np.random.default_rng(n * P * C)
    x = rng.choice([-1, 1], size=(n, P, C))
    X = pack(x.reshape(-1, C))
    if C % 64:
        X[:, -1] |= ~np.uint64(0) << np.uint64(C % 64)  # padding bits are ignored
    (X,) = readonly(X)
    got = _kernels.flatten_bits(X, n, P, C)
    np.testing.assert_array_equal(got, pack(x.reshape(n, P * C)))
    with pytest.raises(ValueError, match="X must have shape"):
        _kernels.flatten_bits(X, n + 1, P, C)


# ------------------------------------------------------------------ alignment
def misaligned(a):
    """A copy of ``a`` whose elements sit at an odd byte offset."""
    buf = np.zeros(a.nbytes + 1, np.uint8)
    buf[1:] = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    out = np.frombuffer(buf, dtype=a.dtype, offset=1).reshape(a.shape)
    assert not out.flags.aligned
    return out


def test_misaligned_inputs_are_realigned():
    n, H, W, C, Cout, k, pad = case = (2, 5, 6, 65, 4, 3, 1)
    rng, x, w = make_problem(case, seed=4)
    Ho, Wo = out_size(H, W, k, pad)
    X, Wp = pack_map(x), pack_w(w)
    xf = rng.normal(size=(n * H * W, C)).astype(F32)
    g = rng.normal(size=(n * Ho * Wo, Cout)).astype(np.float16)
    np.testing.assert_array_equal(
        _kernels.conv2d_bits(misaligned(X), n, H, W, C, misaligned(Wp), k, pad),
        _kernels.conv2d_bits(X, n, H, W, C, Wp, k, pad))
    same_bits(_kernels.conv2d_real(misaligned(xf), n, H, W, C, misaligned(Wp), k, pad),
              _kernels.conv2d_real(xf, n, H, W, C, Wp, k, pad))
    same_bits(_kernels.conv2d_input_grad(misaligned(g), n, H, W, C, Wp, k, pad,
                                         mask=misaligned(X)),
              _kernels.conv2d_input_grad(g, n, H, W, C, Wp, k, pad, mask=X))
    same_bits(_kernels.conv2d_weight_grad(misaligned(g), misaligned(X), n, H, W, C, k, pad),
              _kernels.conv2d_weight_grad(g, X, n, H, W, C, k, pad))
    for a, b in zip(_kernels.maxpool2x2(misaligned(xf), n, H, W, C),
                    _kernels.maxpool2x2(xf, n, H, W, C)):
        same_bits(a, b)
    with pytest.raises(ValueError, match="not aligned"):
        _kernels.conv2d_bits(X, n, H, W, C, Wp, k, pad,
                             out=misaligned(np.zeros((n * Ho * Wo, Cout), np.int32)))
