"""Ternary weights (``ternary_weights=True``): weights sign(H) with
sign(0) = 0, the authors' reference-code reading.  The training step
itself is checked against the NumPy references in test_local.py and
test_bep.py; here: inference, validation, determinism and persistence."""
import pickle

import numpy as np
import pytest
from robustness import assert_same_fits, fits_on_every_isa

from skbnn import BEPClassifier, LocalBinaryClassifier

TERNARY = dict(odd_init=False, ternary_weights=True, init_std=4.0)


def _make(cls, **kw):
    if cls is BEPClassifier:
        kw.setdefault("group_size", 5)
        kw.setdefault("group_schedule", None)
    return cls(**{**TERNARY, **kw})


def _readout(clf):
    """The last layer's readout as a (K_L, C_out) +/-1 matrix."""
    if isinstance(clf, LocalBinaryClassifier):
        return clf.classifiers_[-1].astype(np.int64)
    return clf.prototypes_.T.astype(np.int64)


@pytest.fixture(scope="module")
def bits():
    rng = np.random.default_rng(0)
    centers = rng.choice([-1, 1], size=(4, 70))
    y = rng.integers(0, 4, size=300)
    flip = rng.random((300, 70)) < 0.2
    return np.where(flip, -centers[y], centers[y]), y


@pytest.mark.parametrize("cls", [LocalBinaryClassifier, BEPClassifier])
def test_decision_function_is_the_ternary_network(cls, bits, isa):
    """Integer logits == a NumPy forward with weights sign(H), sign(0) = 0,
    and activations sign(z), sign(0) = +1, on every kernel path."""
    X, y = bits
    clf = _make(cls, hidden_layer_sizes=(45, 35), binarize_input=None, max_iter=3,
                random_state=0).fit(X, y)
    assert all(np.any(h == 0) for h in clf.hidden_weights_)  # some weights are pruned
    a = X.astype(np.int64)
    for h in clf.hidden_weights_:
        z = a @ np.sign(h.astype(np.int64)).T
        a = np.where(z >= 0, 1, -1)
    np.testing.assert_array_equal(clf.decision_function(X), a @ _readout(clf))
    assert clf.score(X, y) > 0.9


@pytest.mark.parametrize("cls", [LocalBinaryClassifier, BEPClassifier])
def test_zero_weights_change_the_model(cls, bits):
    """The same draws read as binary and as ternary weights give different
    networks (the pruned connections matter)."""
    X, y = bits
    kw = dict(hidden_layer_sizes=(45,), binarize_input=None, max_iter=2, random_state=0)
    binary = _make(cls, ternary_weights=False, **kw).fit(X, y)
    ternary = _make(cls, **kw).fit(X, y)
    assert not np.array_equal(binary.decision_function(X), ternary.decision_function(X))


@pytest.mark.parametrize("cls", [LocalBinaryClassifier, BEPClassifier])
def test_same_ternary_model_on_every_isa_and_thread_count(cls, bits):
    X, y = bits
    fitted = fits_on_every_isa(lambda n_jobs: _make(
        cls, hidden_layer_sizes=(45, 35), binarize_input=None, max_iter=2, random_state=3,
        n_jobs=n_jobs).fit(X, y))
    assert_same_fits(fitted, lambda c: list(c.hidden_weights_) + list(c.packed_weights_))


@pytest.mark.parametrize("cls", [LocalBinaryClassifier, BEPClassifier])
def test_pickle_and_partial_fit_keep_ternary_semantics(cls, bits):
    X, y = bits
    clf = _make(cls, hidden_layer_sizes=(45,), binarize_input=None, max_iter=2,
                random_state=0).fit(X, y)
    loaded = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(loaded.decision_function(X), clf.decision_function(X))
    stream = _make(cls, hidden_layer_sizes=(45,), binarize_input=None, random_state=0)
    for chunk in np.array_split(np.arange(len(y)), 3):
        stream.partial_fit(X[chunk], y[chunk], classes=np.unique(y))
    assert any(np.any(h == 0) for h in stream.hidden_weights_)


@pytest.mark.parametrize("cls", [LocalBinaryClassifier, BEPClassifier])
def test_ternary_parameter_validation(cls, bits):
    X, y = bits
    with pytest.raises(ValueError, match="odd_init=False"):
        cls(ternary_weights=True, hidden_layer_sizes=(35,), group_size=5).fit(X, y)
    with pytest.raises(TypeError, match="ternary_weights must be a bool"):
        cls(ternary_weights="yes", odd_init=False, hidden_layer_sizes=(35,),
            group_size=5).fit(X, y)


# ------------------------------------------------------------------ ternary activations
ZERO_ACT_FITS = {
    "bep": lambda **kw: BEPClassifier(group_schedule=None, **kw),
    "local": lambda **kw: LocalBinaryClassifier(**kw),
}


@pytest.mark.parametrize("method", list(ZERO_ACT_FITS))
@pytest.mark.parametrize("ternary_weights", [False, True])
def test_decision_function_with_zero_activations(method, ternary_weights, bits, isa):
    """``ternary_activations``: integer logits == a NumPy forward with
    activations sign(z), sign(0) = 0 (a neuron at 0 drops out of the next
    product and the logits), on every kernel path; even widths make zeros
    certain."""
    X, y = bits
    kw = dict(TERNARY) if ternary_weights else dict(init_std=4.0)
    clf = ZERO_ACT_FITS[method](hidden_layer_sizes=(46, 36), group_size=(23, 6),
                                binarize_input=None, max_iter=3, random_state=0,
                                ternary_activations=True, **kw).fit(X, y)
    a, zeros = X.astype(np.int64), 0
    for h in clf.hidden_weights_:
        w = np.sign(h.astype(np.int64)) if ternary_weights else np.where(h >= 0, 1, -1)
        z = a @ w.T
        a = np.sign(z)
        zeros += int(np.sum(a == 0))
    assert zeros > 0
    np.testing.assert_array_equal(clf.decision_function(X), a @ _readout(clf))
    assert clf.score(X, y) > 0.9


@pytest.mark.parametrize("cls", [BEPClassifier, LocalBinaryClassifier])
def test_zero_activations_change_the_model_and_are_deterministic(cls, bits):
    X, y = bits
    kw = dict(hidden_layer_sizes=(46, 36), group_size=(23, 6), binarize_input=None,
              max_iter=2, random_state=3, **TERNARY)
    plain = cls(**kw).fit(X, y)
    zero = cls(ternary_activations=True, **kw).fit(X, y)
    assert not all(np.array_equal(a, b)
                   for a, b in zip(plain.hidden_weights_, zero.hidden_weights_))
    fitted = fits_on_every_isa(lambda n_jobs: cls(
        ternary_activations=True, n_jobs=n_jobs, **kw).fit(X, y))
    assert_same_fits(fitted, lambda c: list(c.hidden_weights_) + list(c.packed_weights_))
    loaded = pickle.loads(pickle.dumps(zero))
    np.testing.assert_array_equal(loaded.decision_function(X), zero.decision_function(X))
    with pytest.raises(TypeError, match="ternary_activations must be a bool"):
        cls(ternary_activations=1, hidden_layer_sizes=(35,), group_size=5).fit(X, y)
