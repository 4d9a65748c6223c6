"""Binarisation transformers and the estimators' 'auto' rule."""
import numpy as np
import pytest
from sklearn.pipeline import make_pipeline

from skbnn import LocalBinaryClassifier, MedianBinarizer, ThermometerEncoder
from skbnn import _base as skbnn_base
from skbnn.preprocessing import _BinaryInput, auto_thermometer_bits, make_input_binarizer


def test_median_binarizer_per_feature_and_global():
    X = np.array([[0.0, 10.0], [1.0, 20.0], [2.0, 30.0], [3.0, 40.0]])
    np.testing.assert_array_equal(MedianBinarizer().fit(X).thresholds_.ravel(), [1.5, 25.0])
    g = MedianBinarizer(global_median=True).fit(X)
    np.testing.assert_array_equal(g.thresholds_.ravel(), [6.5, 6.5])
    np.testing.assert_array_equal(g.transform(X), np.where(X > 6.5, 1, -1))
    # strictly greater: the median itself maps to -1
    np.testing.assert_array_equal(MedianBinarizer().fit(X).transform([[1.5, 25.0]]), [[-1, -1]])


@pytest.mark.parametrize("method", ["quantile", "uniform"])
def test_thermometer_matches_numpy(method):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    enc = ThermometerEncoder(n_bits=5, method=method).fit(X)
    levels = np.arange(1, 6) / 6
    if method == "quantile":
        want = np.quantile(X, levels, axis=0).T
    else:
        lo, hi = X.min(0), X.max(0)
        want = lo[:, None] + (hi - lo)[:, None] * levels
    np.testing.assert_allclose(enc.thresholds_, want)
    Xt = enc.transform(X)
    np.testing.assert_array_equal(Xt, np.where(X[:, :, None] >= want[None], 1, -1).reshape(200, 15))
    assert Xt.dtype == np.int8
    assert list(enc.get_feature_names_out())[:2] == ["x0_ge_t0", "x0_ge_t1"]


def test_transformer_bad_params():
    X = np.ones((3, 2))
    with pytest.raises(ValueError, match="n_bits"):
        ThermometerEncoder(n_bits=0).fit(X)
    with pytest.raises(TypeError, match="n_bits"):
        ThermometerEncoder(n_bits=2.5).fit(X)
    with pytest.raises(ValueError, match="method"):
        ThermometerEncoder(method="log").fit(X)


@pytest.mark.parametrize("n_features,bits", [(1, 32), (2, 32), (8, 32), (9, 29), (64, 4),
                                             (256, 1), (784, 1)])
def test_auto_rule(n_features, bits):
    assert auto_thermometer_bits(n_features) == bits
    b = make_input_binarizer("auto", n_features)
    assert isinstance(b, MedianBinarizer if bits == 1 else ThermometerEncoder)


def test_estimator_binarize_input_options():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 4)), np.arange(60) % 2
    shapes = {"auto": (4, 32), "median": (4, 1), "global_median": (4, 1), "thermometer": (4, 3),
              5: (4, 5)}
    for option, shape in shapes.items():
        clf = LocalBinaryClassifier(binarize_input=option, n_thermometer_bits=3, max_iter=1,
                                    hidden_layer_sizes=(5,)).fit(X, y)
        assert clf.binarizer_thresholds_.shape == shape
    g = LocalBinaryClassifier(binarize_input="global_median", max_iter=1,
                              hidden_layer_sizes=(5,)).fit(X, y)
    assert np.all(g.binarizer_thresholds_ == np.median(X))


def test_transformer_in_pipeline_equals_internal_binarisation():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(80, 6)), np.arange(80) % 3
    kw = dict(hidden_layer_sizes=(9,), group_size=3, max_iter=3, random_state=0)
    internal = LocalBinaryClassifier(binarize_input=7, **kw).fit(X, y)
    pipe = make_pipeline(ThermometerEncoder(n_bits=7),
                         LocalBinaryClassifier(binarize_input=None, **kw)).fit(X, y)
    np.testing.assert_array_equal(internal.hidden_weights_[0], pipe[-1].hidden_weights_[0])
    np.testing.assert_array_equal(internal.predict(X), pipe.predict(X))


def test_uint8_input_is_not_converted_to_float():
    X = np.random.default_rng(2).integers(0, 255, size=(30, 300)).astype(np.uint8)
    enc = MedianBinarizer().fit(X)
    np.testing.assert_array_equal(enc.transform(X), np.where(X > enc.thresholds_.T, 1, -1))


@pytest.mark.parametrize("low", [-1, 0])
def test_auto_keeps_binary_input(low):
    # a +/-1 (or 0/1) column that is +1 in most rows has median +1, so the
    # median code would erase it; 'auto' must use binary data as it is
    rng = np.random.default_rng(3)
    X = np.where(rng.random((300, 300)) < 0.7, 1, low).astype(np.int8)
    y = (X[:, 0] > 0).astype(int)
    kw = dict(hidden_layer_sizes=(15,), max_iter=1, random_state=0)
    auto = LocalBinaryClassifier(binarize_input="auto", **kw).fit(X, y)
    exact = LocalBinaryClassifier(binarize_input=None, **kw).fit(X, y)
    np.testing.assert_array_equal(auto.hidden_weights_[0], exact.hidden_weights_[0])
    np.testing.assert_array_equal(auto.binarizer_.transform(X), np.where(X > 0, 1, -1))
    # the median rule on the same data really does erase features
    assert np.all(MedianBinarizer().fit_transform(X) == -1)
    # other values at predict time are thresholded at 0, not refused
    assert auto.predict(X.astype(float) * 0.5).shape == (300,)


def test_auto_on_non_binary_data_is_unchanged():
    X = np.array([[-1.0, 0.0, 1.0]] * 4 + [[1.0, 1.0, 1.0]])
    assert isinstance(make_input_binarizer("auto", 3, X=X), ThermometerEncoder)
    assert isinstance(make_input_binarizer("auto", 1, X=X[:, :1] > 0), _BinaryInput)
    assert isinstance(make_input_binarizer("auto", 3, X=np.ones((2, 3))), _BinaryInput)


@pytest.mark.parametrize("binarize_input", ["auto", "median", "thermometer", None])
def test_predict_float_input_fused_finite_check(binarize_input, isa, monkeypatch):
    """predict on float32/float64 +/-1 data equals predict on int8 on every
    path; a NaN or an infinity anywhere (body or tail of a row, first or
    later chunk) raises scikit-learn's error, whether the packing kernel
    found it or scikit-learn's check did."""
    monkeypatch.setattr(skbnn_base, "_PREDICT_CHUNK", 32)  # 80 rows: three chunks
    rng = np.random.default_rng(0)
    X = rng.choice(np.array([-1, 1], dtype=np.int8), size=(80, 70))
    y = rng.integers(0, 2, 80)
    clf = LocalBinaryClassifier(hidden_layer_sizes=(32,), max_iter=1, random_state=0,
                                binarize_input=binarize_input).fit(X, y)
    want = clf.predict(X)
    for dtype in (np.float32, np.float64):
        Xf = X.astype(dtype)
        np.testing.assert_array_equal(clf.predict(Xf), want)
        np.testing.assert_array_equal(clf.decision_function(Xf), clf.decision_function(X))
        for bad, word in ((np.nan, "NaN"), (np.inf, "infinity"), (-np.inf, "infinity")):
            for pos in ((0, 0), (40, 69), (79, 33)):
                Z = Xf.copy()
                Z[pos] = bad
                with pytest.raises(ValueError, match=word):
                    clf.predict(Z)


def test_pack_checked_reports_nonfinite():
    """pack_checked: the bits of pack, and a NaN / infinity report (None
    where the kernel did not look)."""
    X = np.array([[0.5, -1.0, 2.0], [np.nan, 1.0, 0.0]])
    for binarizer in (MedianBinarizer(), ThermometerEncoder(n_bits=3), _BinaryInput()):
        binarizer.fit(np.nan_to_num(X))
        packed, nonfinite = binarizer.pack_checked(X[:1])
        np.testing.assert_array_equal(packed, binarizer.pack(X[:1]))
        assert nonfinite in (False, None)
        assert binarizer.pack_checked(X)[1] in (True, None)
        assert binarizer.pack_checked(np.array([[1, -2, 3]]))[1] is False
