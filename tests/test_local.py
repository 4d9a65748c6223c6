"""LocalBinaryClassifier: the algorithm against a NumPy reference, its
parameters and its specific modes (shared behaviour: test_estimators.py)."""
import numpy as np
import pytest
from epoch_check import assert_next_epoch_matches
from reference import local_batch_step
from sklearn.datasets import load_digits

from skbnn import LocalBinaryClassifier, _kernels


# ------------------------------------------------------------------ algorithm
@pytest.mark.parametrize("ternary,zero_act", [(False, False), (True, False), (False, True),
                                               (True, True)])
@pytest.mark.parametrize("n_classes,widths,groups", [(4, (7, 9), (7, 3)), (2, (6, 5), (3, 5)),
                                                     (3, (10,), (5,)), (3, (8, 6), (4, 3))])
def test_training_epoch_matches_numpy_reference(n_classes, widths, groups, ternary, zero_act,
                                                isa):
    """Two epochs of the estimator == the plain-NumPy reference step,
    including reinforcement drawn from the documented counter-based stream;
    with ternary weights (sign(0) = 0, small init_std: many zeros) and with
    activations at 0 (even widths and fan-ins, where z = 0 occurs) too."""
    rng = np.random.default_rng(n_classes)
    X = rng.choice([-1, 1], size=(64, 70))
    y = rng.integers(0, n_classes, size=64)
    y[:n_classes] = np.arange(n_classes)
    kw = dict(hidden_layer_sizes=widths, group_size=groups, binarize_input=None, batch_size=16,
              shuffle=False, random_state=3, robustness=0.25, reinforcement_prob=0.9,
              init_std=4.0, weight_clip=40, odd_init=not ternary, ternary_weights=ternary,
              ternary_activations=zero_act)
    clf = LocalBinaryClassifier(max_iter=1, **kw).fit(X, y)
    Ps = clf.classifiers_
    # the reference continues for one epoch from the fitted state
    assert_next_epoch_matches(
        clf, X, y, lambda Hs, Xb, yb, p, stream: local_batch_step(
            Hs, Ps, Xb, yb, 0.25, groups, p, clf._seed, stream, 40, _kernels.uniform,
            ternary, zero_act), 16)
    if ternary:
        assert any(np.any(h == 0) for h in clf.hidden_weights_)


@pytest.mark.parametrize("ternary", [False, True])
def test_zero_activation_reference_discriminates(ternary):
    """The zero-activation cases above can fail: on those shapes z = 0
    occurs, and the sign(0) = +1 reference continues to other weights."""
    rng = np.random.default_rng(3)
    X = rng.choice([-1, 1], size=(64, 70))
    y = rng.integers(0, 3, size=64)
    y[:3] = np.arange(3)
    kw = dict(hidden_layer_sizes=(8, 6), group_size=(4, 3), binarize_input=None,
              batch_size=16, shuffle=False, random_state=3, robustness=0.25,
              reinforcement_prob=0.9, init_std=4.0, weight_clip=40, odd_init=not ternary,
              ternary_weights=ternary, ternary_activations=True)
    clf = LocalBinaryClassifier(max_iter=1, **kw).fit(X, y)
    H0 = clf.hidden_weights_[0].astype(np.int64)
    W0 = np.sign(H0) if ternary else np.where(H0 >= 0, 1, -1)
    assert (X @ W0.T == 0).any()  # activations at 0 do occur
    with pytest.raises(AssertionError):
        assert_next_epoch_matches(
            clf, X, y, lambda Hs, Xb, yb, p, stream: local_batch_step(
                Hs, clf.classifiers_, Xb, yb, 0.25, (4, 3), p, clf._seed, stream, 40,
                _kernels.uniform, ternary, zero_act=False), 16)


def test_hidden_weights_initialisation():
    clf = LocalBinaryClassifier(hidden_layer_sizes=(525, 35), max_iter=1, random_state=0,
                                reinforcement_prob=0.0).fit(*load_digits(return_X_y=True))
    h = clf.hidden_weights_[1].astype(int)
    assert h.dtype == int and np.all(h % 2 == 1)  # odd init, +/-2 steps: never 0
    assert clf.hidden_weights_[0].dtype == np.int16
    assert 40 < np.std(clf.hidden_weights_[1]) < 90
    assert clf.group_sizes_ == (105, 35)
    assert [c.shape for c in clf.classifiers_] == [(525, 10), (35, 10)]
    assert set(np.unique(clf.classifiers_[0])) == {-1, 1}


def test_proba_temperature(digits):
    X_tr, _, y_tr, _ = digits
    clf = LocalBinaryClassifier(max_iter=2, random_state=0).fit(X_tr, y_tr)
    assert clf.temperature_ == 525 / 8


def test_binary_single_output(digits):
    X_tr, X_te, y_tr, y_te = digits
    tr, te = y_tr < 2, y_te < 2
    labels = np.array(["zero", "one"])
    clf = LocalBinaryClassifier(hidden_layer_sizes=(36,), group_size=6, max_iter=5,
                                random_state=0).fit(X_tr[tr], labels[y_tr[tr]])
    assert [c.shape for c in clf.classifiers_] == [(36, 1)]
    dec = clf.decision_function(X_te[te])
    assert dec.ndim == 1
    np.testing.assert_array_equal(clf.predict(X_te[te]), clf.classes_[(dec > 0).astype(int)])
    assert clf.score(X_te[te], labels[y_te[te]]) > 0.95


def test_train_classifiers_ablation(digits):
    X_tr, X_te, y_tr, y_te = digits
    clf = LocalBinaryClassifier(train_classifiers=True, max_iter=8, random_state=0)
    clf.fit(X_tr, y_tr)
    assert clf.score(X_te, y_te) > 0.85
    P = clf.classifiers_[-1]
    np.testing.assert_array_equal(P, np.where(clf.classifier_hidden_weights_[-1].T >= 0, 1, -1))
