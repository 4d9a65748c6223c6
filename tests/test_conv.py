"""LowMemBNNClassifier with convolutional architectures: one training step
against a plain-NumPy reference (tests/reference_conv.py, itself checked by
finite differences), learning, determinism across kernel paths and thread
counts, the image API, persistence, scikit-learn workflows and bad input."""
import pickle

import numpy as np
import pytest
from conftest import assert_same_on_every_path
from reference_conv import step as reference_step
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skbnn import LowMemBNNClassifier
from skbnn._architecture import build_plan

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# two small networks: pools after the sign (CNV's order) and before the
# batch norm (BinaryNet's order), 'same' and 'valid' padding, kernels 1/3/5,
# channel counts that are not multiples of 64, a dense layer after flatten
ARCHS = {
    "after_sign": [("conv", 3, 3, "same"), ("pool",), ("conv", 5, 3, "valid"), ("dense", 6)],
    "before_bn": [("conv", 4, 5, "same"), ("conv", 67, 1, "valid"), ("pool", "before_bn"),
                  ("dense", 5)],
}
SHAPE = (2, 6, 6)


def _images(n=24, shape=SHAPE, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n,) + shape)
    X.flat[0] = 0.99   # largest magnitude in (0.5, 1]: the input scale is 1
    y = np.arange(n) % n_classes
    return X, y


def _one_step(arch, training, lr, **kw):
    X, y = _images()
    clf = LowMemBNNClassifier(architecture=arch, input_shape=SHAPE, training=training,
                              solver="sgd", learning_rate_init=lr, batch_size=len(y),
                              shuffle=False, lr_schedule="constant", random_state=3, **kw)
    clf.partial_fit(X.reshape(len(y), -1), y, classes=[0, 1, 2])
    return clf, X, y


# ---------------------------------------------------------------- reference
@pytest.mark.parametrize("name", sorted(ARCHS))
def test_reference_gradients_match_finite_differences(name):
    X, y = _images(n=6)
    plan = build_plan(ARCHS[name], SHAPE, int(np.prod(SHAPE)), 3)
    rng = np.random.default_rng(1)
    Vs = [rng.normal(0, 0.5, size=(s.units, s.fan_in)) for s in plan
          if s.kind in ("conv", "dense")]
    bs = [rng.normal(0, 0.1, size=V.shape[0]) for V in Vs]
    loss, dVs, dbs = reference_step(X, y, plan, Vs, bs, binary=False)
    h = 1e-6
    for params, grads in ((Vs, dVs), (bs, dbs)):
        for P, G in zip(params, grads):
            for idx in [tuple(rng.integers(0, d) for d in P.shape) for _ in range(4)]:
                old = P[idx]
                P[idx] = old + h
                up = reference_step(X, y, plan, Vs, bs, binary=False)[0]
                P[idx] = old - h
                down = reference_step(X, y, plan, Vs, bs, binary=False)[0]
                P[idx] = old
                assert abs((up - down) / (2 * h) - G[idx]) <= 1e-5 + 1e-4 * abs(G[idx])


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_standard_step_matches_reference(name, isa):
    """The first SGD step moves each latent weight by -lr * gradient (no
    momentum yet), so the gradient is read off the weights."""
    arch = ARCHS[name]
    start, X, y = _one_step(arch, "standard", 1e-30)   # same init, no visible move
    clf, _, _ = _one_step(arch, "standard", 1.0)
    V0 = [np.asarray(v, np.float64).T for v in start.coefs_]
    got = [(a - np.asarray(b, np.float64).T) for a, b in zip(V0, clf.coefs_)]
    got_b = [-np.asarray(b, np.float64) for b in clf.bn_bias_]
    plan = clf.layer_plan_
    _, dVs, dbs = reference_step(X, y, plan, V0, [np.zeros(len(b)) for b in got_b])
    for V, g, want in zip(V0, got, dVs):
        live = np.abs(V) < 1          # gradient cancellation
        scale = np.abs(want).max()
        np.testing.assert_allclose(g[live], want[live], rtol=1e-3, atol=1e-4 * scale)
    for g, want in zip(got_b, dbs):
        np.testing.assert_allclose(g, want, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_low_memory_bit_gradients_match_reference_signs(name, isa):
    """With the l2 batch-norm backward the low-memory step's 1-bit weight
    gradients are the signs of the reference's gradients (Adam's first step
    moves every live weight by -lr * sign)."""
    arch = ARCHS[name]
    kw = dict(bn_backward="l2", grad_format="float32", state_dtype="float32",
              rounding="nearest")
    X, y = _images()
    fits = []
    for lr in (1e-30, 1e-2):
        clf = LowMemBNNClassifier(architecture=arch, input_shape=SHAPE, solver="adam",
                                  learning_rate_init=lr, batch_size=len(y), shuffle=False,
                                  lr_schedule="constant", random_state=3, **kw)
        fits.append(clf.partial_fit(X.reshape(len(y), -1), y, classes=[0, 1, 2]))
    V0 = [np.asarray(v, np.float64).T for v in fits[0].coefs_]
    _, dVs, _ = reference_step(X, y, fits[1].layer_plan_, V0,
                               [np.zeros(len(b)) for b in fits[1].bn_bias_])
    for V, V1, want in zip(V0, fits[1].coefs_, dVs):
        moved = V - np.asarray(V1, np.float64).T
        clear = (np.abs(V) < 1) & (np.abs(want) > 1e-3 * np.abs(want).max())
        assert clear.sum() > 0.5 * V.size
        np.testing.assert_array_equal(np.sign(moved[clear]), np.sign(want[clear]))


# ---------------------------------------------------------------- learning
def _digits():
    X, y = load_digits(return_X_y=True)
    X = X / 8.0 - 1.0
    return train_test_split(X, y, test_size=300, random_state=0)


@pytest.mark.parametrize("training", ["low_memory", "standard"])
def test_learns_digits(training):
    X_tr, X_te, y_tr, y_te = _digits()
    clf = LowMemBNNClassifier(architecture=[("conv", 16), ("pool",), ("conv", 32),
                                            ("pool", "before_bn"), ("dense", 64)],
                              training=training, max_iter=20, batch_size=32, random_state=0)
    clf.fit(X_tr, y_tr)
    assert clf.layer_plan_[0].in_shape == (1, 8, 8)   # inferred square image
    assert clf.score(X_te, y_te) > 0.8


def test_four_dimensional_input_is_the_flattened_image():
    X, y = _images(n=30)
    kw = dict(architecture=ARCHS["after_sign"], input_shape=SHAPE, max_iter=2, random_state=0)
    a = LowMemBNNClassifier(**kw).fit(X, y)
    b = LowMemBNNClassifier(**kw).fit(X.reshape(len(y), -1), y)
    for u, v in zip(a.coefs_, b.coefs_):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(a.decision_function(X), b.decision_function(X.reshape(30, -1)))
    assert a.n_features_in_ == int(np.prod(SHAPE))


# ---------------------------------------------------------------- determinism
def _coef_bytes(clf):
    return [np.asarray(c).tobytes() for c in clf.coefs_] + \
           [np.asarray(b).tobytes() for b in clf.bn_bias_]


@pytest.mark.parametrize("training", ["low_memory", "standard"])
@pytest.mark.parametrize("name", sorted(ARCHS))
def test_same_model_on_every_path_and_thread_count(training, name):
    X, y = _images(n=40)

    def model_bytes(n_jobs):
        clf = LowMemBNNClassifier(architecture=ARCHS[name], input_shape=SHAPE,
                                  training=training, batch_size=16, max_iter=2,
                                  random_state=5, n_jobs=n_jobs)
        return _coef_bytes(clf.fit(X, y))
    assert_same_on_every_path(model_bytes, (1, 2, 3))


# ---------------------------------------------------------------- workflows
def test_pickle_round_trip():
    X, y = _images(n=30)
    clf = LowMemBNNClassifier(architecture=ARCHS["before_bn"], input_shape=SHAPE, max_iter=2,
                              random_state=0).fit(X, y)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clf.predict_proba(X), again.predict_proba(X))
    again.partial_fit(X, y)   # and it keeps training


def test_pipeline_and_grid_search_over_architectures():
    X_tr, X_te, y_tr, y_te = _digits()
    pipe = make_pipeline(FunctionTransformer(),
                         LowMemBNNClassifier(max_iter=10, batch_size=32, random_state=0))
    grid = {"lowmembnnclassifier__architecture": [[("conv", 8), ("pool",), ("dense", 32)],
                                                  [("conv", 8, 3, "valid"), ("dense", 32)]]}
    search = GridSearchCV(pipe, grid, cv=2).fit(X_tr[:400], y_tr[:400])
    assert search.best_params_["lowmembnnclassifier__architecture"] in \
        grid["lowmembnnclassifier__architecture"]
    assert search.score(X_te, y_te) > 0.5


def test_streaming_keeps_memory_flat():
    X, y = _images(n=64)
    clf = LowMemBNNClassifier(architecture=ARCHS["after_sign"], input_shape=SHAPE,
                              batch_size=16, random_state=0, measure_memory=True)
    peaks = []
    for i in range(12):
        part = slice(16 * (i % 4), 16 * (i % 4) + 16)
        clf.partial_fit(X[part], y[part], classes=[0, 1, 2])
        peaks.append(clf.memory_measured_["peak_bytes"])
    assert max(peaks[2:]) - min(peaks[2:]) < 4096
    report = clf.memory_report()
    assert report["measured"]["peak_bytes"] == peaks[-1]
    assert "pooling masks" in report["table"]


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kw,n_features,match", [
    (dict(architecture=[("conv", 4)], input_shape=(2, 3, 3)), 20, "n_features"),
    (dict(architecture=[("conv", 4)]), 20, "perfect square"),
    (dict(architecture=[("conv", 4, 7, "valid")]), 16, "larger"),
    (dict(architecture=[("dense", 4), ("conv", 4)]), 16, "dense"),
    (dict(architecture=[("conv", 4, 3, "valid"), ("pool",), ("pool",)]), 16, "nothing|zero"),
    (dict(architecture=[("convolution", 4)]), 16, "kind|unknown"),
    (dict(architecture=[("conv", 0)]), 16, ">= 1|positive"),
    (dict(architecture="resnet"), 16, "resnet"),
    (dict(architecture=[("conv", 4)], binarize_input="median"), 16, "binarize_input"),
    (dict(architecture=[("conv", 4)], input_shape=(1, 4, 4)), 25, "n_features"),
])
def test_bad_architectures_are_refused(kw, n_features, match):
    X = np.random.default_rng(0).normal(size=(10, n_features))
    y = np.arange(10) % 2
    with pytest.raises(ValueError, match=match):
        LowMemBNNClassifier(max_iter=1, **kw).fit(X, y)


def test_four_dimensional_input_must_match_input_shape():
    X, y = _images(n=10)
    clf = LowMemBNNClassifier(architecture=ARCHS["after_sign"], input_shape=(2, 3, 12))
    with pytest.raises(ValueError, match="input_shape"):
        clf.fit(X, y)


# ---------------------------------------------------------------- workspace
@pytest.mark.parametrize("grow", [True, False])
@pytest.mark.parametrize("offset", [0, 8, "end"])
def test_workspace_streams_in_place_over_chunks(grow, offset):
    """An output that does not fit beside its input is written over it,
    chunk by chunk in the safe order, and equals the out-of-place result."""
    from skbnn._layers import Workspace
    n, d_in, d_out = 9, (3 if grow else 5), (5 if grow else 3)
    size = n * max(d_in, d_out) * 4
    if offset == "end":                    # input at the end: moved to the front first
        ws = Workspace(n, size)
        offset = size - n * d_in * 4
    else:
        ws = Workspace(n, offset + size)
    ws.CHUNK_BYTES = 2 * d_in * 4          # two samples per chunk
    src = ws.view(offset, n, d_in, np.float32)
    src[...] = np.arange(n * d_in, dtype=np.float32).reshape(n, d_in)
    want = np.tile(src, (1, 2))[:, :d_out] * 2

    def op(rows, s0, s1, out):
        out[...] = np.tile(rows, (1, 2))[:, :d_out] * 2
    got = ws.apply(src, n, n, d_out, np.float32, op)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("scale", [0.5, 2.0 ** -7, 4.0])
def test_scale_inplace_matches_numpy_float16(scale, monkeypatch):
    """The blocked float16 scaling of the real first layer gives NumPy's
    float16 product bit for bit (normals, subnormals, infinities, overflow)."""
    import skbnn._layers as layers
    monkeypatch.setattr(layers, "_SCALE_BLOCK", 1000)   # several blocks and a ragged one
    rng = np.random.default_rng(0)
    Z = (rng.standard_normal((517, 9)) * 10.0 ** rng.integers(-7, 5, (517, 9))).astype(np.float16)
    Z[0, :3] = [np.inf, -np.inf, 65504]
    with np.errstate(over="ignore"):
        want = Z * np.float16(scale)
    got = layers.scale_inplace(Z.copy(), scale)
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))
