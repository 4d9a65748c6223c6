"""LowMemBNNClassifier: training steps against the plain-NumPy reference
(tests/reference_lowmem.py), learning, options, memory model and measured
memory."""
import gc
import pickle
import tracemalloc

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
    if options.get("clip_weights"):  # else momentum may carry weights past +-1
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
    ("measure_memory", "yes"), ("state_dtype", "float64"),
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


# ------------------------------------------------------------------ measured memory
def _stream(clf, X, y, calls):
    for i in range(calls):
        clf.partial_fit(X, y, classes=np.unique(y) if i == 0 else None)
    return clf


@pytest.mark.parametrize("training,solver", [("low_memory", "adam"), ("low_memory", "bop"),
                                             ("standard", "adam")])
def test_measured_memory_of_a_streaming_call(training, solver):
    """State + transient of one-batch calls: the state is what the layers
    hold, and the low-memory transient stays within the one workspace (batch
    x widest layer x 4 bytes) plus the 1-bit records and small change."""
    B, widths = 64, (96, 96)
    X, y = _data(n=B, d=200, c=4)
    clf = _stream(LowMemBNNClassifier(widths, training=training, solver=solver,
                                      batch_size=B, random_state=0, measure_memory=True),
                  X, y, 3)
    m = clf.memory_measured_
    state = sum(r["bytes"] for r in clf.memory_report()["state"].values())
    assert m["persistent_before_bytes"] == state == clf._state_bytes()
    assert m["peak_bytes"] == state + m["transient_peak_bytes"]
    assert abs(m["retained_bytes"]) < 4096
    if training == "low_memory":
        workspace = B * max(widths) * 4
        assert m["transient_peak_bytes"] < workspace + 64 * 1024
    assert "Measured (tracemalloc" in clf.memory_report()["table"]
    assert not tracemalloc.is_tracing()  # started and stopped by the call


def test_streaming_call_makes_no_copy_of_its_float32_input():
    """A float32 batch is read in place: checking its magnitude against the
    first call's (real inputs) allocates nothing of the batch's size."""
    B, d = 64, 4000  # the batch: 1,000 KiB, far above the transient bound
    X, y = _data(n=B, d=d, c=4)
    clf = _stream(LowMemBNNClassifier((32,), batch_size=B, random_state=0,
                                      measure_memory=True), X, y, 2)
    assert clf.memory_measured_["transient_peak_bytes"] < B * 32 * 4 + 64 * 1024


def test_low_memory_uses_less_than_standard():
    X, y = _data(n=100, d=300, c=5)
    peaks = {}
    for training in ("low_memory", "standard"):
        clf = _stream(LowMemBNNClassifier((128, 128), training=training, batch_size=100,
                                          random_state=0, measure_memory=True), X, y, 2)
        peaks[training] = clf.memory_measured_["peak_bytes"]
    assert peaks["standard"] > 2.5 * peaks["low_memory"]


def test_streaming_memory_does_not_grow():
    """Hundreds of partial_fit calls: no growth beyond the bounded loss curve."""
    X, y = _data(n=20, d=30, c=3)
    clf = _stream(LowMemBNNClassifier((32,), batch_size=20, random_state=0), X, y, 5)
    tracemalloc.start()
    try:
        gc.collect()
        start = tracemalloc.get_traced_memory()[0]
        _stream(clf, X, y, 300)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert grown < 300 * 100  # loss_curve_ entries (bounded at 1000), nothing per batch


def test_loss_curve_is_bounded():
    from skbnn._base import LOSS_CURVE_LIMIT

    X, y = _data(n=10, d=5, c=2)
    clf = _stream(LowMemBNNClassifier((4,), batch_size=10, random_state=0), X, y,
                  LOSS_CURVE_LIMIT + 20)
    assert len(clf.loss_curve_) == LOSS_CURVE_LIMIT and clf.n_iter_ == LOSS_CURVE_LIMIT + 20


def test_measure_memory_keeps_a_running_trace():
    X, y = _data()
    tracemalloc.start()
    try:
        LowMemBNNClassifier((8,), max_iter=1, measure_memory=True).fit(X, y)
        assert tracemalloc.is_tracing()
    finally:
        tracemalloc.stop()


def test_float32_state_option(digits):
    """state_dtype='float32' (the authors' Keras emulation): float32 state,
    the rest of the low-memory step unchanged, accounted at 32 bits."""
    X, y = _data(n=60)
    clf = LowMemBNNClassifier((16,), state_dtype="float32", max_iter=2, random_state=0).fit(X, y)
    assert all(s["V"].dtype == np.float32 and s["m2"].dtype == np.float32 for s in clf.layers_)
    assert clf.memory_model_["W"]["bits"] == 32 and clf.memory_model_["dW"]["bits"] == 1
    half = LowMemBNNClassifier((16,), max_iter=2, random_state=0).fit(X, y)
    assert clf._state_bytes() > 1.9 * half._state_bytes() - 2 * sum(
        s["packed"].nbytes for s in half.layers_)
    X_tr, X_te, y_tr, y_te = digits
    clf = LowMemBNNClassifier((64,), state_dtype="float32", max_iter=10, random_state=0)
    assert clf.fit(X_tr / 8 - 1, y_tr).score(X_te / 8 - 1, y_te) > 0.85


@pytest.mark.parametrize("peak,scale", [(1.0, 1.0), (0.99, 1.0), (0.5, 2.0), (16.0, 1 / 16),
                                        (255.0, 1 / 256), (1e-6, 2.0**19), (0.0, 1.0)])
def test_input_scale_is_the_power_of_two_to_unit_range(peak, scale):
    from skbnn.preprocessing import input_scale
    assert input_scale(peak) == scale
    assert peak == 0 or 0.5 < peak * scale <= 1


@pytest.mark.parametrize("training", ["low_memory", "standard"])
def test_real_inputs_of_any_magnitude_train_the_same_model(training):
    """binarize_input=None: the first layer reads X times a fitted power of
    two, so X * 2**k gives the bit-identical model (batch norm makes the
    network scale-free) and large units no longer overflow the float16
    batch-norm statistics."""
    X, y = _data(n=90, d=12, c=3)
    kw = dict(hidden_layer_sizes=(16,), training=training, max_iter=3, random_state=0)
    ref = LowMemBNNClassifier(**kw).fit(X, y)
    for k in (-30, 20, 100):
        other = LowMemBNNClassifier(**kw).fit(np.ldexp(X.astype(np.float64), k), y)
        assert other.binarizer_.scale_ == ref.binarizer_.scale_ * 2.0**-k
        for a, b in zip(ref.layers_, other.layers_):
            for key in a:
                if a[key] is not None:
                    np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    big = LowMemBNNClassifier(**kw).fit(X * 3e6, y)
    assert all(np.isfinite(s["running_scale"].astype(np.float64)).all() for s in big.layers_)
    np.testing.assert_array_equal(big.predict(X * 3e6), ref.predict(X))


def test_overflowing_statistics_are_refused_not_stored():
    """A continuing call whose inputs dwarf the first call's is refused
    before anything changes; one that still overflows a batch's float16
    statistics (possible within the allowed growth on a very wide layer) is refused
    without storing infinities (the estimator is then unfitted, as after any
    exception during in-place training)."""
    X, y = _data(n=60)
    clf = LowMemBNNClassifier((16,), random_state=0).partial_fit(X, y, classes=[0, 1, 2])
    before = pickle.dumps(clf)
    with pytest.raises(ValueError, match="times the largest magnitude"):
        clf.partial_fit(X * 1e6, y)
    with pytest.raises(ValueError, match="times the largest magnitude"):
        clf.set_params(warm_start=True).fit(X * 1e6, y)
    assert pickle.dumps(clf.set_params(warm_start=False)) == before
    clf.partial_fit(X * 10, y)  # moderate growth trains
    clf._MAX_INPUT_GROWTH = 1e9  # as if a very wide layer let 1e6 through
    with pytest.raises(ValueError, match="batch-norm statistics of layer 0 overflow float16"):
        clf.partial_fit(X * 1e6, y)
    assert not hasattr(clf, "layers_")


@pytest.mark.parametrize("init", ["glorot_uniform", "normal_fan_in"])
def test_latent_init_in_chunks_equals_one_draw(init):
    """The chunked initialisation draws the very values of one (n_in, n_out)
    draw, and the float16 signs pack in blocks as the float32 matrix does."""
    from skbnn._engine import pack_pm1_rows
    from skbnn._latent import INITS, init_latent
    import skbnn._latent as latent
    n_in, n_out = 301, 7
    whole = INITS[init](n_in, n_out, np.random.default_rng(3), fan_out=63).T
    old = latent._INIT_CHUNK
    try:
        latent._INIT_CHUNK = 5 * n_out   # 61 chunks of 5 rows and a last one
        V = init_latent(init, n_in, n_out, np.random.default_rng(3), np.float16, fan_out=63)
    finally:
        latent._INIT_CHUNK = old
    np.testing.assert_array_equal(V, whole.astype(np.float16))
    tall = np.random.default_rng(4).standard_normal((70000, 20)).astype(np.float16)
    np.testing.assert_array_equal(pack_pm1_rows(tall), pack_pm1_rows(tall.astype(np.float32)))
