"""Shared fixtures: run kernel-level tests on every SIMD path of this CPU."""
import os

# scikit-learn's array-API common check runs only with this set before scipy loads
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import pytest  # noqa: E402

from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from skbnn import _kernels  # noqa: E402
from skbnn.datasets import make_random_prototypes  # noqa: E402

ISAS = _kernels.available_isas()


@pytest.fixture(params=ISAS)
def isa(request):
    """Select one kernel path for the test, restore the previous one after."""
    previous = _kernels.get_isa()
    _kernels.set_isa(request.param)
    yield request.param
    _kernels.set_isa(previous)


def assert_same_on_every_path(model_bytes, thread_counts=(1, 2)):
    """``model_bytes(n_jobs)`` (the bytes of a model fitted with ``n_jobs``
    threads) must be identical on every SIMD path of this CPU and for every
    thread count; the previous path is restored."""
    previous = _kernels.get_isa()
    results = []
    try:
        for path in ISAS:
            _kernels.set_isa(path)
            for n_jobs in thread_counts:
                results.append(((path, n_jobs), model_bytes(n_jobs)))
    finally:
        _kernels.set_isa(previous)
    (first_key, first), *rest = results
    for key, got in rest:
        assert got == first, f"path, threads {key} differ from {first_key}"


@pytest.fixture(scope="session")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, random_state=0)


@pytest.fixture(scope="session")
def prototypes():
    X, y = make_random_prototypes(1200, n_features=200, n_classes=4, flip_prob=0.3,
                                  random_state=0)
    return train_test_split(X, y, test_size=300, random_state=0)
