"""Shared fixtures: run kernel-level tests on every SIMD path of this CPU."""
import os

# scikit-learn's array-API common check runs only with this set before scipy loads
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import pytest  # noqa: E402

from skbnn import _kernels  # noqa: E402

ISAS = _kernels.available_isas()


@pytest.fixture(params=ISAS)
def isa(request):
    """Select one kernel path for the test, restore the previous one after."""
    previous = _kernels.get_isa()
    _kernels.set_isa(request.param)
    yield request.param
    _kernels.set_isa(previous)
