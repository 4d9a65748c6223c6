"""Small estimators and data shared by the robustness tests (fuzzing,
threads, resources, persistence): every test there runs on tiny models so
the whole set stays within seconds."""
import pickle

import numpy as np
from sklearn.datasets import load_digits

from skbnn import BEPClassifier, LocalBinaryClassifier, LowMemBNNClassifier, _kernels

TINY = {
    LocalBinaryClassifier: dict(hidden_layer_sizes=(35, 35), group_size=7, max_iter=3),
    BEPClassifier: dict(hidden_layer_sizes=(35, 35), group_size=7, max_iter=3),
    LowMemBNNClassifier: dict(hidden_layer_sizes=(32, 32), max_iter=3),
}
ESTIMATORS = list(TINY)


def tiny(cls, **params):
    """A small, seeded instance of ``cls``."""
    return cls(**{**TINY[cls], "random_state": 0, **params})


def digits(n=300):
    """The first ``n`` digits, scaled to [0, 1] (float64), and their labels."""
    X, y = load_digits(return_X_y=True)
    return X[:n] / 16.0, y[:n]


def state_bytes(est):
    """The estimator's complete state as bytes (equal bytes: equal estimator;
    unequal bytes can still be equal state: see :func:`same_state`)."""
    return pickle.dumps(est, protocol=pickle.HIGHEST_PROTOCOL)


def same_state(a, b):
    """Whether two objects hold the same state: arrays by dtype, shape and
    bits, containers and objects with a ``__dict__`` recursively (pickle
    bytes also depend on which equal strings are the same object)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return (a.dtype == b.dtype and a.shape == b.shape
                and a.tobytes() == b.tobytes())
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_state(x, z) for x, z in zip(a, b))
    if hasattr(a, "__dict__") and not isinstance(a, type):
        return same_state(vars(a), vars(b))
    return a == b or (a != a and b != b)  # NaN == NaN here


def model_arrays(est):
    """Every array that defines a fitted model."""
    if hasattr(est, "hidden_weights_"):
        return list(est.hidden_weights_) + list(est.packed_weights_)
    return [a for s in est.layers_ for _, a in sorted(s.items()) if a is not None]


def fits_on_every_isa(fit):
    """``fit(n_jobs)`` on every kernel path of this CPU with 1 and 2 threads:
    a list of ``(isa, n_jobs, fitted)``; the kernel path is restored after."""
    previous = _kernels.get_isa()
    fitted = []
    try:
        for isa in _kernels.available_isas():
            _kernels.set_isa(isa)
            for n_jobs in (1, 2):
                fitted.append((isa, n_jobs, fit(n_jobs)))
    finally:
        _kernels.set_isa(previous)
    return fitted


def assert_same_fits(fitted, arrays):
    """Every ``(isa, n_jobs, clf)`` of :func:`fits_on_every_isa` has the first
    one's ``loss_curve_`` and, bit for bit, its ``arrays(clf)``."""
    _, _, first = fitted[0]
    for isa, n_jobs, clf in fitted[1:]:
        assert clf.loss_curve_ == first.loss_curve_, (isa, n_jobs)
        for a, b in zip(arrays(first), arrays(clf)):
            np.testing.assert_array_equal(a, b, err_msg=f"{isa} n_jobs={n_jobs}")
