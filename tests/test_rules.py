"""LowMemBNNClassifier's learning rules ('backprop', 'dfa', 'drtp',
'hsic', 'sigprop'): one step against the plain-NumPy references (MLP:
tests/reference_lowmem.py, conv: tests/reference_conv.py) on every kernel
path, determinism, the independence of the output of the local rules, the
feedback matrices, HSIC's gradient against finite differences, parameter
checks, learning and the memory model."""
import copy
import pickle

import numpy as np
import pytest
from conftest import assert_same_on_every_path
from reference_conv import sigprop_step as conv_sigprop_step
from reference_conv import step as conv_reference_step
from reference_lowmem import (backward, forward, hsic_gradient, hsic_loss, rule_signal,
                              sigprop_gradients)
from sklearn.datasets import load_digits

from skbnn import LowMemBNNClassifier
from skbnn._engine import pack_pm1_rows
from skbnn._rules import (FeedbackMatrices, centred_target, centred_target_kernel_rows,
                          hsic_weight_rows, hsic_weights)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

RULES = ("dfa", "drtp", "hsic", "sigprop")
FEEDBACK_RULES = ("dfa", "drtp")     # one matrix per hidden activation
CONV_ARCHS = {   # the two pooling orders, 'same' and 'valid', a dense layer after flatten
    "after_sign": [("conv", 3, 3, "same"), ("pool",), ("conv", 5, 3, "valid"), ("dense", 6)],
    "before_bn": [("conv", 4, 3, "same"), ("conv", 67, 1, "valid"), ("pool", "before_bn"),
                  ("dense", 5)],
}
SHAPE = (2, 6, 6)


def _vectors(n=40, d=12, c=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, d))
    X[0, 0] = 0.99   # largest magnitude in (0.5, 1]: the input scale is 1
    y = np.arange(n) % c
    return X, y


def _images(n=24, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n,) + SHAPE)
    X.flat[0] = 0.99
    return X.reshape(n, -1), np.arange(n) % 3


def _first_step(algorithm, training, solver, lr, X, y, **kw):
    """The model after one full-batch step (and the initial one, lr ~ 0)."""
    fits = []
    for rate in (1e-30, lr):
        clf = LowMemBNNClassifier(algorithm=algorithm, training=training, solver=solver,
                                  learning_rate_init=rate, batch_size=len(y), shuffle=False,
                                  lr_schedule="constant", random_state=3, **kw)
        fits.append(clf.partial_fit(X, y, classes=[0, 1, 2]))
    return fits


def _f64(arrays):
    return [np.asarray(a, np.float64) for a in arrays]


def _check_float_step(start, clf, dVs, dbs):
    """SGD's first step moves a live weight by -lr * gradient, lr = 1."""
    for V, V1, want in zip(_f64(start.coefs_), _f64(clf.coefs_), dVs):
        live = np.abs(V) < 1
        np.testing.assert_allclose((V - V1)[live], want[live], rtol=1e-3,
                                   atol=1e-4 * np.abs(want).max())
    for b, want in zip(_f64(clf.bn_bias_), dbs):
        np.testing.assert_allclose(-b, want, rtol=1e-3, atol=1e-6 * max(1, np.abs(want).max()))


def _check_sign_step(start, clf, dVs):
    """Adam's first step moves a live weight by -lr * sign(gradient)."""
    for V, V1, want in zip(_f64(start.coefs_), _f64(clf.coefs_), dVs):
        clear = (np.abs(V) < 1) & (np.abs(want) > 1e-3 * np.abs(want).max())
        assert clear.sum() > 0.5 * V.size
        np.testing.assert_array_equal(np.sign(V - V1)[clear], np.sign(want[clear]))


def _check_ternary_step(start, clf, dVs):
    """Adam's first step on SigProp's -1/0/+1 low-memory gradient: a live
    weight moves by -lr * sign(gradient), not at all where it is 0 (the
    hidden layers have some change to learn from)."""
    moved = []
    for V, V1, want in zip(_f64(start.coefs_), _f64(clf.coefs_), dVs):
        live = np.abs(V) < 1
        clear = live & ((want == 0) | (np.abs(want) > 1e-3 * np.abs(want).max()))
        assert clear.sum() > 0.9 * live.sum()
        np.testing.assert_array_equal(np.sign(V - V1)[clear], np.sign(want[clear]))
        moved.append((want[clear] != 0).sum())
    assert sum(moved[:-1]) > 0.05 * sum(V.size for V in dVs[:-1])


_LOW_EXACT = dict(grad_format="float32", state_dtype="float32", rounding="nearest")


# ---------------------------------------------------------------- MLP reference
def _mlp_reference(start, X, y, training, algorithm):
    Vs = _f64(start.coefs_)                      # (n_in, n_out) as the reference
    bs = [np.zeros(V.shape[1]) for V in Vs]
    if algorithm == "sigprop":
        return sigprop_gradients(X, y, Vs, bs, _f64(start.feedback_)[0], training)
    cache = forward(X, Vs, bs, training)
    feedback = None if start.feedback_ is None else _f64(start.feedback_)
    grads = backward(cache, y, training, algorithm=algorithm, feedback=feedback)
    return [g["G_V"] for g in grads["layers"]], [g["G_b"] for g in grads["layers"]]


@pytest.mark.parametrize("algorithm", RULES)
def test_mlp_standard_step_matches_reference(algorithm, isa):
    X, y = _vectors()
    start, clf = _first_step(algorithm, "standard", "sgd", 1.0, X, y,
                             hidden_layer_sizes=(16, 8))
    dVs, dbs = _mlp_reference(start, X, y, "standard", algorithm)
    _check_float_step(start, clf, dVs, dbs)


@pytest.mark.parametrize("algorithm", RULES)
def test_mlp_low_memory_step_matches_reference_signs(algorithm, isa):
    """The proposed batch-norm backward, 1-bit weight gradients."""
    X, y = _vectors()
    start, clf = _first_step(algorithm, "low_memory", "adam", 1e-2, X, y,
                             hidden_layer_sizes=(16, 8), **_LOW_EXACT)
    dVs, _ = _mlp_reference(start, X, y, "low_memory", algorithm)
    (_check_ternary_step if algorithm == "sigprop" else _check_sign_step)(start, clf, dVs)


def test_reference_rules_differ_from_backprop():
    """The references' DFA / DRTP hidden gradients are not backprop's (the
    output layer's are)."""
    X, y = _vectors()
    rng = np.random.default_rng(0)
    Vs = [rng.uniform(-0.5, 0.5, (12, 16)), rng.uniform(-0.5, 0.5, (16, 3))]
    bs = [np.zeros(16), np.zeros(3)]
    cache = forward(X, Vs, bs, "standard")
    bp = backward(cache, y, "standard")["layers"]
    for algorithm in ("dfa", "drtp", "hsic"):    # HSIC ignores the feedback
        got = backward(cache, y, "standard", algorithm=algorithm,
                       feedback=[rng.standard_normal((3, 16))])["layers"]
        np.testing.assert_array_equal(got[1]["G_V"], bp[1]["G_V"])
        assert not np.allclose(got[0]["G_V"], bp[0]["G_V"])
    assert rule_signal("drtp", bp[1]["G_Z"], y).sum(axis=1) == pytest.approx(0)


# ---------------------------------------------------------------- conv reference
def _conv_reference(start, X, y, algorithm):
    plan = start.layer_plan_
    V0 = [V.T for V in _f64(start.coefs_)]      # (filters, k*k*C_in)
    images = X.reshape((len(y),) + SHAPE)
    biases = [np.zeros(V.shape[0]) for V in V0]
    if algorithm == "sigprop":
        dVs, dbs = conv_sigprop_step(images, y, plan, V0, biases, _f64(start.feedback_)[0])
        return [g.T for g in dVs], dbs
    if algorithm == "hsic":
        def hidden(x):
            return hsic_gradient(x.reshape(len(y), -1), y, 3).reshape(x.shape)
        _, dVs, dbs = conv_reference_step(images, y, plan, V0, biases, hidden=hidden)
        return [g.T for g in dVs], dbs
    signal = {"dfa": lambda G: G,
              "drtp": lambda G: rule_signal("drtp", G, y)}[algorithm]
    _, dVs, dbs = conv_reference_step(images, y, plan, V0, biases,
                                      signal=signal, feedback=_f64(start.feedback_))
    return [g.T for g in dVs], dbs


@pytest.mark.parametrize("name", sorted(CONV_ARCHS))
@pytest.mark.parametrize("algorithm", RULES)
def test_conv_standard_step_matches_reference(algorithm, name, isa):
    X, y = _images()
    start, clf = _first_step(algorithm, "standard", "sgd", 1.0, X, y,
                             architecture=CONV_ARCHS[name], input_shape=SHAPE)
    dVs, dbs = _conv_reference(start, X, y, algorithm)
    _check_float_step(start, clf, dVs, dbs)


@pytest.mark.parametrize("name", sorted(CONV_ARCHS))
@pytest.mark.parametrize("algorithm", RULES)
def test_conv_low_memory_step_matches_reference_signs(algorithm, name, isa):
    """With the l2 batch-norm backward of the reference: 1-bit weight
    gradients, bit masks, float16 pre-activations."""
    X, y = _images()
    start, clf = _first_step(algorithm, "low_memory", "adam", 1e-2, X, y,
                             architecture=CONV_ARCHS[name], input_shape=SHAPE,
                             bn_backward="l2", **_LOW_EXACT)
    dVs, _ = _conv_reference(start, X, y, algorithm)
    (_check_ternary_step if algorithm == "sigprop" else _check_sign_step)(start, clf, dVs)


# ---------------------------------------------------------------- determinism
def _model_bytes(clf, X):
    return ([np.asarray(c).tobytes() for c in clf.coefs_]
            + [np.asarray(b).tobytes() for b in clf.bn_bias_]
            + [clf.decision_function(X).tobytes()])


@pytest.mark.parametrize("training", ["low_memory", "standard"])
@pytest.mark.parametrize("algorithm", RULES)
def test_same_model_on_every_path_and_thread_count(algorithm, training):
    X, y = _images(n=40)
    for arch in (CONV_ARCHS["after_sign"], None):
        def model_bytes(n_jobs):
            clf = LowMemBNNClassifier((24, 16), architecture=arch, input_shape=SHAPE,
                                      algorithm=algorithm, training=training,
                                      batch_size=16, max_iter=2, random_state=5,
                                      n_jobs=n_jobs).fit(X, y)
            return _model_bytes(clf, X)
        assert_same_on_every_path(model_bytes)


def test_feedback_is_fixed_per_random_state():
    X, y = _vectors()
    kw = dict(hidden_layer_sizes=(16, 8), algorithm="dfa", max_iter=2)
    a = LowMemBNNClassifier(random_state=0, **kw).fit(X, y)
    b = LowMemBNNClassifier(random_state=0, **kw).fit(X, y)
    assert [B.shape for B in a.feedback_] == [(3, 16), (3, 8)]
    assert all(B.dtype == np.float32 for B in a.feedback_)
    for u, v in zip(a.feedback_, b.feedback_):
        np.testing.assert_array_equal(u, v)
    kept = [B.copy() for B in a.feedback_]
    a.partial_fit(X, y)
    for u, v in zip(kept, a.feedback_):
        np.testing.assert_array_equal(u, v)
    c = LowMemBNNClassifier(random_state=1, **kw).fit(X, y)
    assert not np.array_equal(c.feedback_[0], a.feedback_[0])
    # the initial weights do not depend on the rule
    d = LowMemBNNClassifier((16, 8), max_iter=1, learning_rate_init=1e-30, random_state=0)
    e = LowMemBNNClassifier((16, 8), max_iter=1, learning_rate_init=1e-30, random_state=0,
                            algorithm="drtp")
    assert d.fit(X, y).feedback_ is None
    np.testing.assert_array_equal(d.coefs_[0], e.fit(X, y).coefs_[0])
    # a conv activation: one column per channel; after flatten: per feature
    conv = LowMemBNNClassifier(architecture=CONV_ARCHS["after_sign"], input_shape=SHAPE,
                               algorithm="drtp", max_iter=1).fit(*_images())
    assert [B.shape for B in conv.feedback_] == [(3, 3), (3, 5 * 1 * 1), (3, 6)]


def test_feedback_is_regenerated_not_stored():
    """The model keeps the seed of its feedback matrices: they are the same
    on every read and after pickling, each N(0, 1) (DFA) or N(0, 1/D)
    (SigProp), and the state the estimator holds has no row for them."""
    X, y = _vectors()
    a = LowMemBNNClassifier((16, 8), algorithm="drtp", max_iter=1, random_state=0).fit(X, y)
    fb = a.feedback_
    assert isinstance(fb, FeedbackMatrices) and len(fb) == 2
    np.testing.assert_array_equal(fb[0], fb[0])
    np.testing.assert_array_equal(fb[-1], fb[1])
    with pytest.raises(IndexError):
        fb[2]
    back = pickle.loads(pickle.dumps(a))
    for u, v in zip(back.feedback_, fb):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(back.predict(X), a.predict(X))
    assert not any("feedback" in name for name in a.memory_report()["state"])
    for rows in (1, 3, 10):
        np.testing.assert_array_equal(
            np.vstack([b for _, b in fb.row_blocks(1, rows)]), fb[1])
    big = FeedbackMatrices((3, 4), [(10, 4000)], scale=0.5)[0]
    assert abs(big.std() - 0.5) < 0.01 and abs(big.mean()) < 0.01
    assert FeedbackMatrices((3, 4), [(10, 4000)]).largest_nbytes == 160000


def test_warm_start_from_backprop_draws_the_feedback():
    X, y = _vectors()
    kw = dict(hidden_layer_sizes=(8,), max_iter=1, random_state=0)
    direct = LowMemBNNClassifier(algorithm="dfa", **kw).fit(X, y)
    warm = LowMemBNNClassifier(warm_start=True, **kw).fit(X, y)
    warm.set_params(algorithm="dfa").fit(X, y)
    np.testing.assert_array_equal(warm.feedback_[0], direct.feedback_[0])


# ---------------------------------------------------------------- local rules are output-free
@pytest.mark.parametrize("training", ["low_memory", "standard"])
@pytest.mark.parametrize("arch", [None, CONV_ARCHS["before_bn"]])
def test_local_hidden_updates_ignore_the_output(arch, training):
    """Flipping the output layer's weights changes no hidden update under
    DRTP and HSIC; under DFA (whose signal is the output error) it does."""
    X, y = _images(n=32)
    for algorithm, same in (("drtp", True), ("hsic", True), ("dfa", False)):
        a = LowMemBNNClassifier((16, 8), architecture=arch, input_shape=SHAPE,
                                algorithm=algorithm, training=training, batch_size=32,
                                shuffle=False, random_state=0)
        a.partial_fit(X, y, classes=[0, 1, 2])
        b = copy.deepcopy(a)
        out = b.layers_[-1]
        out["V"][...] = -out["V"]
        out["packed"][...] = pack_pm1_rows(out["V"])
        a.partial_fit(X, y)
        b.partial_fit(X, y)
        hidden = [np.array_equal(u, v) for u, v in zip(a.coefs_[:-1], b.coefs_[:-1])]
        hidden += [np.array_equal(u, v) for u, v in zip(a.bn_bias_[:-1], b.bn_bias_[:-1])]
        assert all(hidden) if same else not all(hidden)
        assert not np.array_equal(a.coefs_[-1], -b.coefs_[-1])   # the output layer trained


# ---------------------------------------------------------------- parameters
@pytest.mark.parametrize("value,error", [
    ("DFA", ValueError), ("HSIC", ValueError), ("", ValueError),
    (1, TypeError), (None, TypeError), (["dfa"], TypeError),
])
def test_bad_algorithm(value, error):
    X, y = _vectors()
    with pytest.raises(error, match="algorithm"):
        LowMemBNNClassifier(algorithm=value).fit(X, y)


# ---------------------------------------------------------------- learning
@pytest.mark.parametrize("training", ["low_memory", "standard"])
@pytest.mark.parametrize("algorithm", RULES)
def test_learns_digits(algorithm, training):
    """Well above chance (0.1).  SigProp's hidden updates come from sign
    flips under a small perturbation, and on this task it stays near what
    its output layer learns over the initial hidden layers (user guide)."""
    X, y = load_digits(return_X_y=True)
    X = X / 8 - 1
    sigprop = algorithm == "sigprop"
    clf = LowMemBNNClassifier((128, 128), algorithm=algorithm, training=training,
                              max_iter=20 if sigprop else 10, random_state=0).fit(X, y)
    assert clf.score(X, y) > (0.5 if sigprop else 0.7)
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]


# ---------------------------------------------------------------- memory
def test_memory_model_counts_the_rules():
    X, y = _vectors()
    models = {}
    for algorithm in ("backprop",) + RULES:
        clf = LowMemBNNClassifier((32, 32, 32, 32), algorithm=algorithm, max_iter=1,
                                  random_state=0).fit(X, y)
        models[algorithm] = clf.memory_model_
        report = clf.memory_report()
        assert ("feedback" in report["table"]) == (algorithm in FEEDBACK_RULES + ("sigprop",))
        assert ("HSIC kernel" in report["table"]) == (algorithm == "hsic")
    assert "feedback" not in models["backprop"]
    # SigProp: F projects to the 12 inputs; a block's signs of both halves
    # of its second pass, the workspace of one half, no STE masks
    assert models["sigprop"]["feedback"]["elements"] == 3 * 12
    assert models["sigprop"]["X"]["elements"] == 2 * models["drtp"]["X"]["elements"]
    assert models["sigprop"]["dY"] == models["drtp"]["dY"]
    assert "ste_masks" not in models["sigprop"]
    assert models["sigprop"]["dW_layer"]["elements"] == 32 * 32
    assert "dW_layer" not in models["drtp"]
    # HSIC: rows of three float32 B x B matrices for one chunk of samples
    # (16 KiB of float32 gradient: 4096 / 32 = 128 rows, at most B = 100)
    assert models["hsic"]["kernels"]["elements"] == 3 * 100 * 100
    assert models["hsic"]["X"] == models["drtp"]["X"]
    for algorithm in FEEDBACK_RULES:   # one matrix in use (regenerated), the widest
        assert models[algorithm]["feedback"]["elements"] == 3 * 32
        assert models[algorithm]["feedback"]["bits"] == 32
        assert not models[algorithm]["feedback"]["persistent"]
    # DRTP holds the inputs of two consecutive layers, not of all five
    assert models["drtp"]["X"]["elements"] < models["dfa"]["X"]["elements"]
    assert models["dfa"]["X"] == models["backprop"]["X"]


# ---------------------------------------------------------------- HSIC's gradient
def _authors_hsic(A, B):
    """The authors' ``estimate_hsic(mode='biased')``, written with means."""
    a, b = A.mean(axis=0), B.mean(axis=0)
    return (A * B).mean() - 2 * (a * b).mean() + a.mean() * b.mean()


@pytest.mark.parametrize("gamma", [2.0, 0.5])
def test_hsic_gradient_matches_finite_differences(gamma):
    """The reference gradient equals central differences of the loss at +-1
    activations (the cosine kernel is smooth there), and the package's
    ``dLoss/dz = W z`` equals it."""
    rng = np.random.default_rng(0)
    B, D, C = 12, 20, 4
    z = np.where(rng.random((B, D)) < 0.5, -1.0, 1.0)
    y = np.arange(B) % C
    K = z @ z.T / D
    L = cosine_kernel(centred_target(y, C))
    np.testing.assert_allclose(_authors_hsic(K, L), np.trace(
        K @ (np.eye(B) - 1 / B) @ L @ (np.eye(B) - 1 / B)) / B ** 2, rtol=1e-5)
    want = hsic_gradient(z, y, C, gamma)
    h, fd = 1e-5, np.empty_like(z)
    for i in range(B):
        for j in range(D):
            up, down = z.copy(), z.copy()
            up[i, j] += h
            down[i, j] -= h
            fd[i, j] = (hsic_loss(up, y, C, gamma) - hsic_loss(down, y, C, gamma)) / (2 * h)
    np.testing.assert_allclose(want, fd, rtol=1e-5, atol=1e-7 * np.abs(fd).max())
    W = hsic_weights(K.astype(np.float32), double_centre(L), gamma, D)
    assert W.dtype == np.float32
    np.testing.assert_allclose(W.astype(np.float64) @ z, want, rtol=1e-4,
                               atol=1e-5 * np.abs(want).max())


def double_centre(K):
    """``H K H``, ``H = I - 11^T / B`` (float32)."""
    r = K.mean(axis=0, dtype=np.float32)
    return K - r[:, None] - r[None, :] + r.mean(dtype=np.float32)


def cosine_kernel(X):
    """``a.b / (|a| |b|)`` between the rows of ``X`` (the authors' kernel)."""
    X = np.asarray(X, dtype=np.float64)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    return Xn @ Xn.T


@pytest.mark.parametrize("C", [2, 3, 10])
def test_centred_target_kernel_rows_match_the_cosine_kernel(C):
    """The closed form of ``H L H`` equals double-centring the cosine kernel
    of the centred one-hot targets, row block by row block."""
    rng = np.random.default_rng(C)
    y = rng.integers(0, C, 23)
    want = double_centre(cosine_kernel(centred_target(y, C)))
    got = np.vstack([centred_target_kernel_rows(y, C, s0, min(23, s0 + 5))
                     for s0 in range(0, 23, 5)])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_hsic_weight_rows_in_blocks_equal_the_whole():
    rng = np.random.default_rng(1)
    B, D, C = 17, 40, 3
    z = np.where(rng.random((B, D)) < 0.5, -1.0, 1.0)
    y = np.arange(B) % C
    K = (z @ z.T / D).astype(np.float32)
    L = centred_target_kernel_rows(y, C, 0, B)
    whole = hsic_weights(K, L, 2.0, D)
    r = K.mean(axis=0, dtype=np.float32)
    blocks = np.vstack([hsic_weight_rows(K[s0:s0 + 4], s0, r, L[s0:s0 + 4], 2.0, D)
                        for s0 in range(0, B, 4)])
    np.testing.assert_array_equal(blocks, whole)


def test_hsic_target_kernel_is_the_class_agreement():
    """Cosine kernel of the centred one-hot target: 1 within a class, -1/(C-1)
    across (float32)."""
    y = np.array([0, 1, 2, 0, 3])
    L = cosine_kernel(centred_target(y, 4))
    want = np.where(y[:, None] == y[None, :], 1.0, -1 / 3)
    np.testing.assert_allclose(L, want, atol=1e-6)


@pytest.mark.parametrize("value,error", [
    (-0.1, ValueError), (float("nan"), TypeError), (float("inf"), TypeError),
    ("2", TypeError), (None, TypeError), (True, TypeError),
])
def test_bad_hsic_gamma(value, error):
    X, y = _vectors()
    with pytest.raises(error, match="hsic_gamma"):
        LowMemBNNClassifier(algorithm="hsic", hsic_gamma=value).fit(X, y)


def test_hsic_gamma_changes_the_hidden_updates_only():
    """gamma weighs the target term: it changes the hidden layers' update,
    not the output layer's (the cross-entropy), and no feedback is drawn."""
    X, y = _vectors()
    kw = dict(hidden_layer_sizes=(16, 8), algorithm="hsic", batch_size=40, shuffle=False,
              random_state=0, max_iter=1)
    a = LowMemBNNClassifier(hsic_gamma=2.0, **kw).fit(X, y)
    b = LowMemBNNClassifier(hsic_gamma=0.5, **kw).fit(X, y)
    assert a.feedback_ is None
    assert not np.array_equal(a.coefs_[1], b.coefs_[1])
    np.testing.assert_array_equal(a.coefs_[-1], b.coefs_[-1])


# ---------------------------------------------------------------- SigProp
def test_sigprop_input_projection():
    """F: (n_classes, input size), N(0, 1/input size) (kaiming normal, fan-in),
    fixed per random_state, redrawn on a warm start from DFA (and back)."""
    X, y = load_digits(return_X_y=True)
    kw = dict(hidden_layer_sizes=(16,), max_iter=1, random_state=0)
    clf = LowMemBNNClassifier(algorithm="sigprop", **kw).fit(X / 8 - 1, y)
    (F,) = clf.feedback_
    assert F.shape == (10, 64) and F.dtype == np.float32
    assert 0.8 / 8 < F.std() < 1.2 / 8
    again = LowMemBNNClassifier(algorithm="sigprop", **kw).fit(X / 8 - 1, y)
    np.testing.assert_array_equal(again.feedback_[0], F)
    warm = LowMemBNNClassifier(algorithm="dfa", warm_start=True, **kw).fit(X / 8 - 1, y)
    warm.set_params(algorithm="sigprop").fit(X / 8 - 1, y)
    np.testing.assert_array_equal(warm.feedback_[0], F)
    warm.set_params(algorithm="drtp").fit(X / 8 - 1, y)
    assert [B.shape for B in warm.feedback_] == [(10, 16)]


def test_sigprop_hidden_biases_stay():
    """Only the weight layers of hidden blocks learn (the authors' hooks set
    no batch-norm gradient); the output block's bias learns."""
    X, y = _vectors()
    clf = LowMemBNNClassifier((16, 8), algorithm="sigprop", max_iter=3,
                              random_state=0).fit(X, y)
    assert all(not np.any(b) for b in clf.bn_bias_[:-1])
    assert np.any(clf.bn_bias_[-1])


def test_sigprop_needs_the_real_input():
    X, y = _vectors()
    with pytest.raises(ValueError, match="binarize_input"):
        LowMemBNNClassifier(algorithm="sigprop", binarize_input="median").fit(X, y)


@pytest.mark.parametrize("training", ["low_memory", "standard"])
def test_sigprop_first_pass_chunks_do_not_matter(training, monkeypatch):
    """The inference pass runs in chunks of samples: any chunking, the same
    model."""
    from skbnn import _layers
    X, y = _images(n=40)
    kw = dict(architecture=CONV_ARCHS["before_bn"], input_shape=SHAPE, algorithm="sigprop",
              training=training, batch_size=40, max_iter=2, random_state=0)
    whole = LowMemBNNClassifier(**kw).fit(X, y)
    monkeypatch.setattr(_layers, "INFERENCE_CHUNK_BYTES", 1)   # one sample at a time
    chunked = LowMemBNNClassifier(**kw).fit(X, y)
    assert _model_bytes(whole, X) == _model_bytes(chunked, X)
