"""What pickling an estimator adds and checks: the skbnn version that
wrote it, and NumPy arrays the kernels can read after unpickling."""
import numpy as np
from sklearn.base import BaseEstimator


def skbnn_version():
    from . import __version__  # at call time: the package is fully imported

    return __version__


UNKNOWN_VERSION = "unknown (pickled before skbnn recorded its version)"


def realigned(value):
    """``value`` with every NumPy array that is not aligned to its element
    size replaced by an aligned copy, searching lists, tuples, dicts and
    nested estimators (changed in place); the same object when none is.
    Unpickling from out-of-band buffers (dask) can yield such arrays, which
    the kernels refuse."""
    if isinstance(value, np.ndarray):
        return value if value.flags.aligned else np.require(value, requirements="A")
    if isinstance(value, (list, tuple)):
        items = [realigned(v) for v in value]
        if all(a is b for a, b in zip(items, value)):
            return value
        return type(value)(items) if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        for k, v in value.items():
            new = realigned(v)
            if new is not v:
                value[k] = new
        return value
    if isinstance(value, BaseEstimator):
        realigned(vars(value))
    return value
