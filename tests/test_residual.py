"""Residual blocks of LowMemBNNClassifier (``('conv', f, k, padding,
'residual')``, Bi-Real-Net shortcuts): the plain-NumPy reference
(tests/reference_conv.py) checked by finite differences, one step of each
training mode and learning rule against it on every kernel path,
determinism over paths and thread counts, learning with fit and
partial_fit, persistence, validation, the preset and the memory model."""
import pickle

import numpy as np
import pytest
from conftest import assert_same_on_every_path
from reference_conv import avgpool, conv_forward, pool_forward, sigprop_step
from reference_conv import step as reference_step
from reference_lowmem import hsic_gradient, rule_signal
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from test_rules import (_LOW_EXACT, _check_float_step, _check_sign_step, _check_ternary_step,
                        _f64, _first_step, _model_bytes)

from skbnn import LowMemBNNClassifier, _kernels
from skbnn._architecture import PRESETS, build_plan
from skbnn._layers import LayerStack, Shortcut
from skbnn._memory_model import memory_model, plan_counts

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

SHAPE = (4, 6, 6)
# identity shortcut; and the downsampling one (conv -> pool -> BN + avgpool(x))
# followed by a second residual block reading the first one's sum
ARCHS = {
    "identity": [("conv", 4), ("conv", 4, 3, "same", "residual"), ("dense", 5)],
    "pooled": [("conv", 4), ("conv", 4, 3, "same", "residual"), ("pool", "before_bn"),
               ("conv", 4, 3, "same", "residual"), ("dense", 5)],
}
RULES = ("backprop", "dfa", "drtp", "hsic", "sigprop")


def _images(n=24, seed=0, shape=SHAPE):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n,) + shape)
    X.flat[0] = 0.99   # largest magnitude in (0.5, 1]: the input scale is 1
    return X.reshape(n, -1), np.arange(n) % 3


def _plan(name):
    return build_plan(ARCHS[name], SHAPE, int(np.prod(SHAPE)), 3)


# ---------------------------------------------------------------- the reference
def _random_net(plan, seed=1):
    rng = np.random.default_rng(seed)
    Vs = [rng.normal(0, 0.5, size=(s.units, s.fan_in)) for s in plan
          if s.kind in ("conv", "dense")]
    return rng, Vs, [rng.normal(0, 0.1, size=V.shape[0]) for V in Vs]


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_reference_gradients_match_finite_differences(name):
    """The float model of the graph (identity activations): the shortcut's
    gradient (identity or average-unpool, added to the input's) is what the
    loss does."""
    X, y = _images(n=6)
    images = X.reshape((6,) + SHAPE)
    plan = _plan(name)
    rng, Vs, bs = _random_net(plan)
    loss, dVs, dbs = reference_step(images, y, plan, Vs, bs, binary=False)
    h = 1e-6
    for params, grads in ((Vs, dVs), (bs, dbs)):
        for P, G in zip(params, grads):
            for idx in [tuple(rng.integers(0, d) for d in P.shape) for _ in range(5)]:
                old = P[idx]
                P[idx] = old + h
                up = reference_step(images, y, plan, Vs, bs, binary=False)[0]
                P[idx] = old - h
                down = reference_step(images, y, plan, Vs, bs, binary=False)[0]
                P[idx] = old
                assert abs((up - down) / (2 * h) - G[idx]) <= 1e-5 + 1e-4 * abs(G[idx])


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_shortcut_gradient_reaches_the_layers_below(name):
    """Without the carried shortcut gradient (the local rules' detached
    block inputs) the layers below a residual block get other gradients,
    the layers above the same."""
    X, y = _images(n=6)
    plan = _plan(name)
    _, Vs, bs = _random_net(plan)
    images = X.reshape((6,) + SHAPE)
    for binary in (False, True):
        full = reference_step(images, y, plan, Vs, bs, binary=binary)[1]
        cut = reference_step(images, y, plan, Vs, bs, binary=binary, carry_shortcut=False)[1]
        assert not np.allclose(full[0], cut[0])
        np.testing.assert_array_equal(full[-1], cut[-1])


def _reference(start, X, y, algorithm, bn="l2", shape=SHAPE):
    """The reference's weight and bias gradients of the first step of the
    model ``start`` (its initial weights, zero biases), (k*k*C_in, filters)."""
    plan = start.layer_plan_
    V0 = [V.T for V in _f64(start.coefs_)]
    images = X.reshape((len(y),) + shape)
    biases = [np.zeros(V.shape[0]) for V in V0]
    if algorithm == "sigprop":
        dVs, dbs = sigprop_step(images, y, plan, V0, biases, _f64(start.feedback_)[0])
        return [g.T for g in dVs], dbs
    kw = {}
    if algorithm == "hsic":
        kw["hidden"] = lambda x: hsic_gradient(x.reshape(len(y), -1), y, 3).reshape(x.shape)
    elif algorithm in ("dfa", "drtp"):
        kw["signal"] = (lambda G: G) if algorithm == "dfa" else (
            lambda G: rule_signal("drtp", G, y))
        kw["feedback"] = _f64(start.feedback_)
    # the local rules' block inputs are detached: no shortcut gradient crosses blocks
    _, dVs, dbs = reference_step(images, y, plan, V0, biases, bn=bn,
                                 carry_shortcut=algorithm in ("backprop", "dfa"), **kw)
    return [g.T for g in dVs], dbs


# SigProp runs no batch-norm backward: l2 only
@pytest.mark.parametrize("algorithm, bn", [(a, bn) for a in RULES for bn in ("l2", "proposed")
                                           if a != "sigprop" or bn == "l2"])
@pytest.mark.parametrize("name", sorted(ARCHS))
def test_standard_step_matches_reference(algorithm, name, bn, isa):
    """Float gradients; with the 'proposed' batch-norm backward (the
    low-memory step's, on bits) each residual block's backward reads the
    signs and ``omega`` of its batch-norm output, not of the sum."""
    X, y = _images()
    start, clf = _first_step(algorithm, "standard", "sgd", 1.0, X, y,
                             architecture=ARCHS[name], input_shape=SHAPE, bn_backward=bn)
    dVs, dbs = _reference(start, X, y, algorithm, bn=bn)
    _check_float_step(start, clf, dVs, dbs)


@pytest.mark.parametrize("training", ["standard", "low_memory"])
def test_odd_map_downsampling_shortcut_matches_reference(training, isa):
    """A 7x7 map: the pools (max and average) drop the last row and column,
    whose pixels get no shortcut gradient."""
    shape = (4, 7, 7)
    X, y = _images(shape=shape)
    if training == "standard":
        start, clf = _first_step("backprop", training, "sgd", 1.0, X, y,
                                 architecture=ARCHS["pooled"], input_shape=shape)
        dVs, dbs = _reference(start, X, y, "backprop", shape=shape)
        _check_float_step(start, clf, dVs, dbs)
    else:
        start, clf = _first_step("backprop", training, "adam", 1e-2, X, y,
                                 architecture=ARCHS["pooled"], input_shape=shape,
                                 bn_backward="l2", **_LOW_EXACT)
        _check_sign_step(start, clf, _reference(start, X, y, "backprop", shape=shape)[0])


@pytest.mark.parametrize("name", sorted(ARCHS))
@pytest.mark.parametrize("algorithm", RULES)
def test_low_memory_step_matches_reference_signs(algorithm, name, isa):
    """With the l2 batch-norm backward of the reference: 1-bit weight
    gradients, bit masks, float16 pre-activations, the shortcut's sum."""
    X, y = _images()
    start, clf = _first_step(algorithm, "low_memory", "adam", 1e-2, X, y,
                             architecture=ARCHS[name], input_shape=SHAPE,
                             bn_backward="l2", **_LOW_EXACT)
    dVs, _ = _reference(start, X, y, algorithm)
    (_check_ternary_step if algorithm == "sigprop" else _check_sign_step)(start, clf, dVs)


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_low_memory_proposed_step_matches_reference_signs(name, isa):
    """The paper's low-memory step itself (l1 forward, backward on the
    batch-norm output's bits and omega).  Its float16 first-layer
    pre-activations move the l1 statistics a little, and a sign of a
    batch-norm output near 0 then moves a whole channel's correction term:
    the signs of the smallest gradients may differ (as without shortcuts),
    the others must not."""
    X, y = _images()
    start, clf = _first_step("backprop", "low_memory", "adam", 1e-2, X, y,
                             architecture=ARCHS[name], input_shape=SHAPE, **_LOW_EXACT)
    dVs, _ = _reference(start, X, y, "backprop", bn="proposed")
    for V, V1, want in zip(_f64(start.coefs_), _f64(clf.coefs_), dVs):
        clear = (np.abs(V) < 1) & (np.abs(want) > 1e-3 * np.abs(want).max())
        bad = clear & (np.sign(V - V1) != np.sign(want))
        assert bad.sum() <= 0.02 * clear.sum()
        assert (np.abs(want[bad]) < 0.02 * np.abs(want).max()).all()


# ---------------------------------------------------------------- determinism
@pytest.mark.parametrize("training", ["low_memory", "standard"])
@pytest.mark.parametrize("algorithm", RULES)
def test_same_model_on_every_path_and_thread_count(algorithm, training):
    X, y = _images(n=40)

    def model_bytes(n_jobs):
        clf = LowMemBNNClassifier(architecture=ARCHS["pooled"], input_shape=SHAPE,
                                  algorithm=algorithm, training=training,
                                  batch_size=16, max_iter=2, random_state=5,
                                  n_jobs=n_jobs)
        return _model_bytes(clf.fit(X, y), X)
    assert_same_on_every_path(model_bytes)


# ---------------------------------------------------------------- learning, persistence
@pytest.mark.parametrize("training", ["low_memory", "standard"])
@pytest.mark.parametrize("algorithm", RULES)
def test_every_rule_trains_with_fit_and_partial_fit(algorithm, training):
    X, y = _images(n=60)
    clf = LowMemBNNClassifier(architecture=ARCHS["pooled"], input_shape=SHAPE,
                              algorithm=algorithm, training=training, batch_size=20,
                              max_iter=3, random_state=0)
    before = [np.array(c, copy=True) for c in clf.fit(X, y).coefs_]
    assert np.isfinite(clf.loss_curve_).all()
    clf.partial_fit(X, y)
    assert any(not np.array_equal(a, b) for a, b in zip(before, clf.coefs_))
    assert clf.predict(X).shape == (60,)
    fresh = LowMemBNNClassifier(architecture=ARCHS["identity"], input_shape=SHAPE,
                                algorithm=algorithm, training=training, batch_size=20,
                                random_state=0)
    fresh.partial_fit(X, y, classes=[0, 1, 2])
    assert np.isfinite(fresh.predict_proba(X)).all()


@pytest.mark.parametrize("training", ["low_memory", "standard"])
def test_learns_digits(training):
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X / 8.0 - 1.0, y, test_size=300,
                                              random_state=0)
    arch = [("conv", 16), ("conv", 16, 3, "same", "residual"), ("pool", "before_bn"),
            ("conv", 16, 3, "same", "residual"), ("dense", 64)]
    clf = LowMemBNNClassifier(architecture=arch, training=training, max_iter=10,
                              batch_size=32, random_state=0).fit(X_tr, y_tr)
    assert clf.score(X_te, y_te) > 0.9


def test_pickle_round_trip_and_inference_chunks():
    X, y = _images(n=30)
    clf = LowMemBNNClassifier(architecture=ARCHS["pooled"], input_shape=SHAPE, max_iter=2,
                              batch_size=10, random_state=0).fit(X, y)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clf.decision_function(X), again.decision_function(X))
    # training goes on identically from the pickled model
    clf.partial_fit(X, y)
    again.partial_fit(X, y)
    assert _model_bytes(clf, X) == _model_bytes(again, X)
    # samples are independent at inference: one at a time gives the same logits
    one = np.concatenate([clf.decision_function(X[i:i + 1]) for i in range(len(X))])
    np.testing.assert_array_equal(one, clf.decision_function(X))


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_inference_adds_the_shortcuts(name):
    """decision_function against a float64 recomputation of the inference
    graph from the fitted state (running statistics, binary weights)."""
    X, y = _images(n=20)
    clf = LowMemBNNClassifier(architecture=ARCHS[name], input_shape=SHAPE, max_iter=2,
                              batch_size=10, random_state=0).fit(X, y)
    a = np.transpose(X.reshape((20,) + SHAPE), (0, 2, 3, 1)) * clf.binarizer_.scale_
    states = iter(clf.layers_)
    real, plan = None, clf.layer_plan_
    for i, spec in enumerate(plan):
        if spec.kind in ("conv", "dense"):
            st = next(states)
            W = _kernels.unpack_pm1(st["packed"], spec.fan_in).astype(np.float64)
            Z = conv_forward(a, W, spec.kernel_size, spec.pad)[0] if spec.kind == "conv" \
                else a @ W.T
            x = real if spec.residual else None
            if i + 1 < len(plan) and plan[i + 1].position == "before_bn":
                Z = pool_forward(Z)[0]
            A = ((Z - st["running_mean"].astype(np.float64))
                 / np.maximum(st["running_scale"].astype(np.float64), 1e-5)
                 + st["bias"].astype(np.float64))
            if x is not None:
                A = A + (x if x.shape == A.shape else avgpool(x))
            real, a = A, (A if spec.output else np.where(A >= 0, 1.0, -1.0))
        elif spec.kind == "flatten":
            a = a.reshape(20, -1)
    np.testing.assert_allclose(clf.decision_function(X), a, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- validation, preset
@pytest.mark.parametrize("arch, match", [
    ([("conv", 4, 3, "same", "residual"), ("dense", 3)], r"architecture\[0\].*first layer"),
    ([("conv", 4), ("conv", 5, 3, "same", "residual")], r"architecture\[1\].*filters = 4"),
    ([("conv", 4), ("conv", 4, 3, "valid", "residual")], r"architecture\[1\].*keep its input"),
    ([("conv", 4), ("pool",), ("conv", 4, 3, "same", "residual")],
     r"architecture\[2\].*'after_sign' pool"),
    ([("conv", 4), ("conv", 4, 3, "same", "skip")], r"architecture\[1\].*'residual'"),
    ([("conv", 4), ("conv", 4, 3, "same", "residual", 1)], r"architecture\[1\].*items"),
])
def test_bad_residual_specs_are_refused(arch, match):
    X, y = _images(n=9)
    with pytest.raises(ValueError, match=match):
        build_plan(arch, SHAPE, X.shape[1], 3)
    with pytest.raises(ValueError, match=match):
        LowMemBNNClassifier(architecture=arch, input_shape=SHAPE, max_iter=1).fit(X, y)


def test_binarynet_residual_plan():
    plan = build_plan("binarynet_residual", (3, 32, 32), 3072, 10)
    plain = build_plan("binarynet", (3, 32, 32), 3072, 10)
    assert [s.out_shape for s in plan] == [s.out_shape for s in plain]
    convs = [s for s in plan if s.kind == "conv"]
    assert [s.residual for s in convs] == [False, True] * 3
    assert all(s.in_shape == s.out_shape for s in convs if s.residual)
    assert [s.out_shape for s in plan if s.kind == "pool"] == [(128, 16, 16), (256, 8, 8),
                                                                (512, 4, 4)]
    assert not any(s.residual for s in plain)
    assert "binarynet_residual" in PRESETS
    stack = LayerStack(plan, [_state(s) for s in plan if s.kind in ("conv", "dense")])
    pooled = [layer.pooled for layer in stack.layers if isinstance(layer, Shortcut)]
    assert pooled == [True, True, True]


def _state(spec):
    return {"bias": np.zeros(spec.units, np.float32)}


# ---------------------------------------------------------------- memory
def test_memory_model_counts_the_residual_bits():
    plan, plain = _plan("pooled"), build_plan(
        [("conv", 4), ("conv", 4), ("pool", "before_bn"), ("conv", 4), ("dense", 5)],
        SHAPE, int(np.prod(SHAPE)), 3)
    counts, base = plan_counts(plan), plan_counts(plain)
    # the batch-norm outputs of the two residual blocks: 4x3x3 each
    assert counts["residual_activations_per_sample"] == 2 * 36
    assert "residual_activations_per_sample" not in base
    # the first block: x (4x6x6), the sum (4x3x3) and its mask scratch (the
    # sum is the second block's x)
    assert counts["shortcut_per_sample"] == 144 + 2 * 36
    for training in ("low_memory", "standard"):
        for algorithm in RULES:
            m = memory_model(counts, 10, training=training, algorithm=algorithm)
            m0 = memory_model(base, 10, training=training, algorithm=algorithm)
            assert not {"residual_bits", "shortcut", "dshortcut"} & set(m0)
            # one more sign bit per residual batch-norm output (low memory; the
            # standard step keeps every float batch-norm output anyway)
            # (SigProp has no backward pass: no such record)
            if training == "low_memory" and algorithm != "sigprop":
                assert m["residual_bits"]["bits"] == 1
                assert m["residual_bits"]["elements"] == (
                    10 * 72 if algorithm in ("backprop", "dfa") else 10 * 36)
            else:
                assert "residual_bits" not in m
            rows = 20 if algorithm == "sigprop" else 10
            assert m["shortcut"]["elements"] == rows * 216
            assert m["shortcut"]["bits"] == 32 and not m["shortcut"]["persistent"]
            # only backprop and DFA carry a gradient down the shortcut
            assert ("dshortcut" in m) == (algorithm in ("backprop", "dfa"))
            assert m["total"]["bytes"] > m0["total"]["bytes"]


@pytest.mark.parametrize("training", ["low_memory", "standard"])
def test_measured_memory_of_residual_calls(training):
    """tracemalloc sees the step's records and transients (all NumPy
    arrays); nothing of a call outlives it (the shortcut inputs are
    released once added), and the model's residual rows are reported."""
    X, y = _images(n=40)
    clf = LowMemBNNClassifier(architecture=ARCHS["pooled"], input_shape=SHAPE,
                              training=training, batch_size=40, random_state=0,
                              measure_memory=True)
    for _ in range(3):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    m = clf.memory_measured_
    assert m["peak_bytes"] == m["persistent_before_bytes"] + m["transient_peak_bytes"]
    assert abs(m["retained_bytes"]) < 4096
    report = clf.memory_report()
    assert "shortcut" in report["model"] and "x, BN + x (shortcut)" in report["table"]
    assert ("residual_bits" in report["model"]) == (training == "low_memory")
