"""Input fuzzing (hypothesis): random dtypes (bool, int8 ... uint64, float16/32/64,
complex, object, str), shapes (0 rows, 0 columns, 1-D, 3-D), NaN/inf
positions, huge and subnormal values, non-contiguous, reversed and read-only
arrays, lists, sparse matrices and pandas DataFrames with odd column names.

Every call either works (with well-formed output) or raises ValueError or
TypeError with a message; nothing crashes, and no call changes a fitted
model it fails on (and predictions change nothing at all).  The kernels'
private API gets the same treatment with broken arguments.  Run under
AddressSanitizer/UBSan in CI (see docs/user_guide/robustness.rst).
"""
import copy
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from robustness import ESTIMATORS, digits, same_state, tiny

from skbnn import _kernels


FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
ACCEPTED = (ValueError, TypeError)
N_FEATURES = 64

DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64", "complex64", "complex128", "object", "str"]
SPECIALS = [np.nan, np.inf, -np.inf, -0.0, 5e-324, 1e300, -1e300, 3.5e38]
ODD_NAMES = [
    lambda f: list(range(f)),                                  # int names (ignored)
    lambda f: [f"x{i}" for i in range(f)],                     # plain strings
    lambda f: ["" if i % 2 else f"é{i}" for i in range(f)],    # empty, duplicate, unicode
    lambda f: [i if i % 2 else str(i) for i in range(f)],      # mixed types (refused)
    lambda f: [f"{'long' * 50}{i}" for i in range(f)],
    lambda f: [(i, "t") for i in range(f)],                    # tuples
    lambda f: [None] * f,
]


def tiny_fit(cls):
    """A fitted estimator on 200 digits (float64, 64 features)."""
    X, y = digits(200)
    return tiny(cls, hidden_layer_sizes=(14,), max_iter=1, batch_size=50).fit(X, y)


FITTED = {cls: tiny_fit(cls) for cls in ESTIMATORS}


@st.composite
def inputs(draw, n_features=N_FEATURES):
    """(X, description): an input of random type, shape, values and layout."""
    n = draw(st.sampled_from([0, 1, 2, 3, 17]))
    f = draw(st.sampled_from([n_features, n_features, n_features, 0, 1, n_features + 1]))
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1.0, 16.0, 1e6, 1e30]))
    base = rng.normal(size=(n, f)) * scale
    if draw(st.booleans()) and base.size:  # special values at random positions
        k = int(rng.integers(1, max(2, base.size // 4)))
        base.flat[rng.integers(0, base.size, size=k)] = rng.choice(SPECIALS, size=k)
    if dtype == "bool":
        X = base > 0
    elif dtype.startswith(("int", "uint")):
        info = np.iinfo(dtype)
        with np.errstate(invalid="ignore"):
            X = np.clip(np.nan_to_num(base), info.min, info.max).astype(dtype)
        if X.size:
            X.flat[::5] = rng.choice(np.array([info.min, info.max, 0, 1], dtype=dtype),
                                     size=X.flat[::5].shape)
    elif dtype == "object":
        kind = draw(st.sampled_from(["numbers", "numeric strings", "none", "words"]))
        X = base.astype(object)
        if kind == "numeric strings":
            X = np.vectorize(str, otypes=[object])(base) if base.size else X
        elif kind == "none" and X.size:
            X.flat[0] = None
        elif kind == "words" and X.size:
            X.flat[-1] = "seven"
    elif dtype == "str":
        X = base.astype(str)
    else:
        with np.errstate(over="ignore"):
            X = base.astype(dtype)
        if dtype.startswith("complex") and X.size:
            X.flat[0] += 1j
    shape = draw(st.sampled_from(["2d", "2d", "2d", "1d", "3d"]))
    if shape == "1d":
        X = X[:, 0] if f else X.reshape(-1)
    elif shape == "3d":
        X = X.reshape(n, f, 1)
    layout = draw(st.sampled_from(["C", "F", "strided", "reversed", "readonly", "misaligned"]))
    if X.ndim >= 2:
        if layout == "F":
            X = np.asfortranarray(X)
        elif layout == "strided":
            X = np.repeat(X, 2, axis=1)[:, ::2]
        elif layout == "reversed":
            X = X[::-1]
    if layout == "readonly":
        X = np.array(X)
        X.setflags(write=False)
    elif layout == "misaligned" and X.dtype.itemsize > 1 and X.dtype != object:
        # as deserialised from a byte buffer at an odd offset (dask does this)
        src = np.ascontiguousarray(X)
        raw = bytearray(src.nbytes + 1)
        X = np.frombuffer(raw, dtype=src.dtype, count=src.size, offset=1).reshape(src.shape)
        X[...] = src
    container = draw(st.sampled_from(["array", "array", "list", "dataframe", "sparse"]))
    if container == "list":
        X = X.tolist()
    elif container == "dataframe" and X.ndim == 2:
        names = draw(st.sampled_from(ODD_NAMES))(X.shape[1])
        X = pd.DataFrame(X, columns=pd.Index(names, dtype=object, tupleize_cols=False))
    elif container == "sparse" and X.ndim == 2 and X.dtype.kind in "biuf" and X.dtype != np.float16:
        X = sp.csr_matrix(X)
    return X, f"{container} {layout} {shape} {dtype} ({n}, {f})"


def n_rows(X):
    return X.shape[0] if hasattr(X, "shape") else len(X)


def call(fn, *args, **kwargs):
    """``fn(*args)``: its result, or the accepted exception (anything else fails)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # conversion and feature-name warnings are fine
        try:
            return fn(*args, **kwargs)
        except ACCEPTED as e:
            assert str(e).strip(), f"{type(e).__name__} without a message"
            return e


def check_outputs(clf, X, method, out):
    n = n_rows(X)
    if method == "predict":
        assert out.shape == (n,) and np.isin(out, clf.classes_).all()
    elif method == "predict_proba":
        assert out.shape == (n, len(clf.classes_)) and np.isfinite(out).all()
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)
    elif method == "decision_function":
        assert out.shape[0] == n and np.isfinite(out).all()


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
@FUZZ
@given(data=inputs())
def test_fuzz_predict(cls, data):
    X, what = data
    clf = FITTED[cls]
    snapshot = copy.deepcopy(clf)
    for method in ("predict", "predict_proba", "decision_function"):
        out = call(getattr(clf, method), X)
        if not isinstance(out, Exception):
            check_outputs(clf, X, method, out)
    assert same_state(clf, snapshot), what


LABELS = [np.arange, lambda n: np.arange(n) % 3, lambda n: np.array(["a", "b"] * n)[:n],
          lambda n: np.linspace(0, 1, n), lambda n: np.where(np.arange(n) % 2, np.nan, 1.0),
          lambda n: (np.arange(n) % 2).reshape(-1, 1), lambda n: np.zeros(n + 1)]


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
@FUZZ
@given(data=inputs(), labels=st.sampled_from(LABELS))
def test_fuzz_fit(cls, data, labels):
    X, what = data
    y = labels(n_rows(X))
    clf = tiny(cls, hidden_layer_sizes=(7,), group_size=7, max_iter=1) if cls is not \
        ESTIMATORS[-1] else tiny(cls, hidden_layer_sizes=(7,), max_iter=1)
    params = clf.get_params()
    out = call(clf.fit, X, y)
    if isinstance(out, Exception):
        assert set(vars(clf)) == set(params), what  # still unfitted
        return
    for method in ("predict", "predict_proba"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. LowMem's float16 statistics on huge X
            check_outputs(clf, X, method, getattr(clf, method)(X))


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
@FUZZ
@given(data=inputs(), labels=st.sampled_from(LABELS[1:]))
def test_fuzz_partial_fit(cls, data, labels):
    X, what = data
    clf = copy.deepcopy(FITTED[cls])
    before = copy.deepcopy(clf)
    out = call(clf.partial_fit, X, labels(n_rows(X)))
    if isinstance(out, Exception):
        assert same_state(clf, before), what
    else:
        assert clf.n_iter_ == before.n_iter_ + 1


# ------------------------------------------------------------------ kernel API
def _u64(*shape):
    return np.zeros(shape, dtype=np.uint64)


def _f32(*shape):
    return np.ones(shape, dtype=np.float32)


# valid calls of every kernel: (name, args)
KERNEL_CALLS = [
    ("pack_threshold", lambda: [np.ones((3, 5)), np.zeros((5, 2)), True]),
    ("pack_binary", lambda: [np.ones((3, 70), np.int8)]),
    ("pack_sign_int32", lambda: [np.ones((3, 70), np.int32)]),
    ("pack_sign_int16", lambda: [np.ones((3, 70), np.int16)]),
    ("unpack_pm1", lambda: [_u64(3, 2), 100]),
    ("transpose_bits", lambda: [_u64(3, 2), 100]),
    ("popcount", lambda: [_u64(9)]),
    ("bgemm", lambda: [_u64(3, 2), _u64(5, 2), 100]),
    ("bgemm_sign", lambda: [_u64(3, 2), _u64(5, 2), 100]),
    ("bgemm_masked", lambda: [_u64(3, 2), _u64(3, 2), _u64(5, 2), 100]),
    ("bgemm_masked_sign", lambda: [_u64(3, 2), _u64(3, 2), _u64(5, 2), 100]),
    ("hidden_field", lambda: [np.ones((5, 100), np.int16), _u64(3, 2)]),
    ("select_easiest", lambda: [np.ones((3, 70), np.int32), _u64(3, 2), 7, True,
                                np.ones(3, np.uint8)]),
    ("cpr_update", lambda: [np.ones((70, 10), np.int16), _u64(70, 1), _u64(10, 2),
                            np.zeros((3, 2), np.int32), _u64(3, 2), _u64(3, 1), 5]),
    ("reinforce", lambda: [np.ones((7, 10), np.int16), 0.5, 1, 2, 5]),
    ("bef_flips", lambda: [np.ones((3, 10), np.int8), np.zeros(4, np.int32),
                           np.zeros(4, np.int32), 0.5]),
    ("f16_to_f32", lambda: [np.zeros(10, np.uint16)]),
    ("f32_to_f16", lambda: [_f32(10)]),
    ("fsgemm", lambda: [_f32(3, 4), _u64(4, 2), 100]),
    ("fgemm", lambda: [_f32(3, 4), _f32(4, 5)]),
    ("fdot_bits", lambda: [_f32(3, 70), _u64(5, 2)]),
    ("bn_forward", lambda: [np.ones((4, 70), np.int32), _f32(70), False, 1e-4, 1e-5, True,
                            _f32(70), _f32(70), _u64(4, 2)]),
    ("bn_backward_bits", lambda: [_f32(4, 70), _f32(70), _u64(4, 2), _f32(70), _f32(70)]),
    ("optimizer_step", lambda: ["adam", _f32(4, 70), _f32(4, 70), _f32(4, 70), _u64(4, 2),
                                None, 1.0, (1e-3, 0.9, 0.999, 1e-8, 0.9, 1e-8), False,
                                _u64(4, 2)]),
]


def mutate(arg, how):
    """A broken version of one argument."""
    if how == "none":
        return None
    if how == "scalar":
        return 1.5
    if how == "string":
        return "x"
    if how == "huge int":
        return 2**70
    if how == "negative":
        return -(2**40)
    if not isinstance(arg, np.ndarray):
        return {"wrong dtype": np.float64(3.0), "transposed": (arg,), "empty": [],
                "readonly": 10**6, "1-D": -1, "3-D": np.nan}.get(how, arg)
    if how == "wrong dtype":
        return arg.astype(np.float64 if arg.dtype != np.float64 else np.int64)
    if how == "transposed":
        return arg.T if arg.ndim == 2 else arg[::2]
    if how == "empty":
        return arg[:0]
    if how == "readonly":
        arg = arg.copy()
        arg.setflags(write=False)
        return arg
    if how == "1-D":
        return arg.reshape(-1)
    return arg.reshape(arg.shape + (1,))  # 3-D


MUTATIONS = ["none", "scalar", "string", "huge int", "negative", "wrong dtype", "transposed",
             "empty", "readonly", "1-D", "3-D"]


@pytest.mark.parametrize("name,valid", KERNEL_CALLS, ids=[k for k, _ in KERNEL_CALLS])
@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_fuzz_kernel_arguments(name, valid, data):
    """Every kernel, every argument broken in turn: a result or
    ValueError/TypeError/OverflowError (an out-of-range integer), never a crash."""
    args = valid()
    getattr(_kernels, name)(*args)  # the valid call works
    i = data.draw(st.integers(0, len(args) - 1))
    args[i] = mutate(args[i], data.draw(st.sampled_from(MUTATIONS)))
    try:
        getattr(_kernels, name)(*args)
    except (ValueError, TypeError, OverflowError) as e:
        assert str(e).strip()


def misaligned(a):
    """A copy of ``a`` whose elements sit at an odd address (as a buffer
    deserialised at an odd offset)."""
    raw = bytearray(a.nbytes + 1)
    out = np.frombuffer(raw, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    out[...] = a
    return out


def _outputs(result, args):
    items = list(result) if isinstance(result, tuple) else [result]
    return items + [a for a in args if isinstance(a, np.ndarray)]  # in-place updates too


@pytest.mark.parametrize("name,valid", KERNEL_CALLS, ids=[k for k, _ in KERNEL_CALLS])
def test_kernels_on_misaligned_buffers(name, valid):
    """Misaligned inputs are computed on (through an aligned copy) with the
    same result; misaligned outputs and in-place arguments are refused with a
    ValueError -- never read or written misaligned."""
    rng = np.random.default_rng(0)
    for i, arg in enumerate(valid()):
        if not isinstance(arg, np.ndarray) or arg.dtype.itemsize == 1:
            continue
        args = valid()
        for a in args:  # random contents, same for both calls
            if isinstance(a, np.ndarray) and a.dtype.kind in "iu" and a.dtype.itemsize > 1:
                a[...] = rng.integers(0, 3, size=a.shape).astype(a.dtype)
        ref_args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        want = _outputs(getattr(_kernels, name)(*ref_args), ref_args)
        args[i] = misaligned(args[i])
        try:
            got = _outputs(getattr(_kernels, name)(*args), args)
        except ValueError as e:
            assert "aligned" in str(e)
            continue
        for g, w in zip(got, want):
            np.testing.assert_array_equal(np.asarray(g), np.asarray(w), err_msg=f"{name} {i}")
