"""LowMemBNNClassifier: training steps against the plain-NumPy reference of
lowmem.md (tests/reference_lowmem.py), learning, options, memory model."""
import numpy as np
import pytest
from reference_lowmem import train_step

from skbnn import LowMemBNNClassifier


def _data(n=40, d=12, c=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.integers(0, c, size=n)
    y[:c] = np.arange(c)
    return X, y


def _reference_state(clf):
    """The estimator's optimiser state in the reference's layout (float64,
    (n_in, n_out) orientation)."""
    def f(a):
        return None if a is None else np.asarray(a, dtype=np.float64)
    V, b = [], []
    for s in clf.layers_:
        if clf.solver == "adam":
            V.append((f(s["m1"]).T, f(s["m2"]).T))
        else:
            V.append((f(s["m1"]).T,))
        b.append((f(s["bias_m1"]), f(s["bias_m2"])) if clf.solver in ("adam", "bop")
                 else (f(s["bias_m1"]),))
    return {"t": clf.optimizer_state_["t"], "V": V, "b": b}


@pytest.mark.parametrize("training,solver,atol,min_agree", [
    ("standard", "sgd", 1e-5, 1.0),
    ("standard", "adam", 1e-5, 1.0),
    ("low_memory", "adam", 2e-3, 0.97),   # float16 state, sign gradients
    ("low_memory", "sgd", 2e-3, 0.97),
])
def test_second_step_matches_reference(training, solver, atol, min_agree, isa):
    X, y = _data()
    clf = LowMemBNNClassifier((16, 8), training=training, solver=solver, batch_size=40,
                              shuffle=False, random_state=0, lr_schedule="constant")
    clf.partial_fit(X, y, classes=[0, 1, 2])   # step 1 from the initial weights
    Vs = [np.asarray(v, dtype=np.float64) for v in clf.coefs_]
    bs = [np.asarray(b, dtype=np.float64) for b in clf.bn_bias_]
    state = _reference_state(clf)
    new_Vs, new_bs, _, _ = train_step(X, y, Vs, bs, state, training, solver=solver)
    clf.partial_fit(X, y)                      # step 2
    for got, want in zip(clf.coefs_, new_Vs):
        close = np.isclose(np.asarray(got, dtype=np.float64), want, rtol=1e-3, atol=atol)
        assert close.mean() >= min_agree
    for got, want in zip(clf.bn_bias_, new_bs):
        np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=1e-2,
                                   atol=max(atol, 1e-4))


@pytest.mark.parametrize("solver", ["adam", "sgd", "bop"])
@pytest.mark.parametrize("training", ["low_memory", "standard"])
def test_learns_digits(training, solver, digits):
    X_tr, X_te, y_tr, y_te = digits
    clf = LowMemBNNClassifier((128, 128), training=training, solver=solver, max_iter=15,
                              random_state=0).fit(X_tr / 8 - 1, y_tr)
    assert clf.score(X_te / 8 - 1, y_te) > 0.85
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    dtype = np.float16 if training == "low_memory" else np.float32
    if solver == "bop":
        assert set(np.unique(clf.coefs_[0])) <= {-1, 1}
    else:
        assert clf.coefs_[0].dtype == dtype and clf.coefs_[0].shape == (64, 128)


@pytest.mark.parametrize("options", [
    dict(bn_stats="pre_bias"), dict(bn_backward="l1"), dict(bn_backward="l2"),
    dict(grad_format="float32"), dict(grad_format="pow2"), dict(grad_scale="n_weights"),
    dict(grad_scale="none"), dict(init="normal_fan_in"), dict(clip_weights=True),
    dict(binarize_input="median"),
])
def test_options_train(options, digits):
    X_tr, X_te, y_tr, y_te = digits
    clf = LowMemBNNClassifier((64, 64), max_iter=10, random_state=0, **options)
    assert clf.fit(X_tr / 8 - 1, y_tr).score(X_te / 8 - 1, y_te) > 0.7
    if options.get("clip_weights"):  # else momentum may carry weights past +-1 (§10.6)
        assert max(np.abs(c.astype(np.float32)).max() for c in clf.coefs_) <= 1.0


def test_plateau_schedule_halves_the_rate():
    X, y = _data(n=30)
    clf = LowMemBNNClassifier((8,), max_iter=12, lr_patience=1, random_state=0).fit(X, y)
    assert clf.learning_rate_ < 1e-3
    flat = LowMemBNNClassifier((8,), max_iter=12, lr_schedule="constant",
                               random_state=0).fit(X, y)
    assert flat.learning_rate_ == 1e-3


def test_bop_uses_batch_50_and_bits():
    X, y = _data(n=120)
    clf = LowMemBNNClassifier((8,), solver="bop", max_iter=1, random_state=0).fit(X, y)
    assert clf.optimizer_state_["t"] == 3  # 120 samples / 50
    assert clf.layers_[0]["V"] is None


def test_memory_model_attached():
    X, y = _data()
    clf = LowMemBNNClassifier((16, 16), max_iter=1, random_state=0).fit(X, y)
    report = clf.memory_report()
    assert report["model"]["W"]["bits"] == 16 and report["model"]["dW"]["bits"] == 1
    assert "total" in report["table"] or "Total" in report["table"]
    std = LowMemBNNClassifier((16, 16), training="standard", max_iter=1).fit(X, y)
    assert std.memory_model_["total"]["bytes"] > clf.memory_model_["total"]["bytes"]


@pytest.mark.parametrize("param,value", [
    ("training", "fast"), ("solver", "rmsprop"), ("grad_scale", 2), ("bn_stats", "x"),
    ("bn_backward", "l3"), ("grad_format", "int8"), ("init", "zeros"), ("lr_decay", 0.0),
    ("lr_patience", 0), ("learning_rate_init", -1.0), ("beta_1", 1.0), ("clip_weights", 1),
])
def test_bad_parameters(param, value):
    X, y = _data()
    with pytest.raises((ValueError, TypeError), match=param):
        LowMemBNNClassifier(**{param: value}).fit(X, y)


def test_divergence_is_reported():
    X, y = _data()
    with pytest.raises(FloatingPointError, match="diverged"):
        LowMemBNNClassifier((8,), solver="sgd", learning_rate_init=1e6, max_iter=50,
                            random_state=0).fit(X * 1e4, y)
