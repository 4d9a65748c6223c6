"""Input binarisation: scikit-learn transformers producing +/-1 features.

The estimators reuse these transformers internally (``binarize_input``): the
thresholds are learned here, and both ``transform`` and the estimators'
bit-packed path apply them through the same packing kernel.
"""
import math
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _kernels

__all__ = ["MedianBinarizer", "ThermometerEncoder", "make_input_binarizer"]

# dtypes the packing kernel reads directly (anything else is converted once)
_KERNEL_DTYPES = (np.float64, np.float32, np.uint8, np.int8, np.int64)


def as_kernel_input(X):
    """C-contiguous array in a dtype the packing kernel reads without a copy
    when possible (uint8 images stay uint8: no float64 blow-up)."""
    X = np.asarray(X)
    if X.dtype == np.bool_:
        X = X.view(np.uint8)
    elif X.dtype == np.uint64:  # int64 would wrap values >= 2**63 to negatives
        X = X.astype(np.float64)
    elif X.dtype.kind in "iu" and X.dtype not in _KERNEL_DTYPES:
        X = X.astype(np.int64)
    elif X.dtype.kind == "f" and X.dtype not in _KERNEL_DTYPES:
        X = X.astype(np.float32 if X.dtype.itemsize < 4 else np.float64)
    # aligned too: a buffer deserialised at an odd offset (dask) is refused by the kernels
    return np.require(X, requirements=["C", "A"])


class _ThresholdBinarizer(TransformerMixin, BaseEstimator):
    """Shared machinery: learned ``thresholds_`` of shape (n_features, b);
    output bit ``j*b + k`` is +1 when ``X[:, j]`` passes ``thresholds_[j, k]``
    (strictly greater when ``_strict``, else greater or equal)."""

    _strict = False

    def fit(self, X, y=None):
        """Learn the thresholds from ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : None
            Ignored.

        Returns
        -------
        self : object
            Fitted transformer.
        """
        self._validate_params()
        X = validate_data(self, X, dtype="numeric", ensure_all_finite=True)
        self.thresholds_ = np.ascontiguousarray(self._fit_thresholds(X), dtype=np.float64)
        return self

    def _validate_params(self):
        """Check constructor arguments (done in fit, never in __init__)."""

    @property
    def n_output_bits_(self):
        """Number of +/-1 output features."""
        return int(self.thresholds_.size)

    def pack(self, X, n_threads=1):
        """Packed bits (n_samples, ceil(``n_output_bits_`` / 64)) of an already
        validated numeric ``X``: the estimators' path, no +/-1 matrix."""
        return _kernels.pack_threshold(as_kernel_input(X), self.thresholds_, self._strict,
                                       n_threads)

    # pack_checked finds NaN and infinities in the packing pass (estimators'
    # predict); False where pack reads X otherwise (RealInput) or refuses
    # such values with its own error first (_PrebinarizedInput)
    checks_finite = True

    def pack_checked(self, X, n_threads=1):
        """``(pack(X), nonfinite)``: ``nonfinite`` is True when ``X`` holds a
        NaN or an infinity, False when it does not, None when the kernel path
        did not look (portable path, several bits per feature: check ``X``)."""
        return _kernels.pack_threshold_checked(as_kernel_input(X), self.thresholds_,
                                               self._strict, n_threads)

    def _input_names(self, input_features):
        if input_features is not None:
            names = np.asarray(input_features, dtype=object)
            if len(names) != self.n_features_in_:
                raise ValueError("input_features does not match n_features_in_")
            return names
        if hasattr(self, "feature_names_in_"):
            return self.feature_names_in_
        return np.asarray([f"x{i}" for i in range(self.n_features_in_)], dtype=object)

    def transform(self, X):
        """Binarise ``X`` into +/-1 features.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to binarise.

        Returns
        -------
        X_bin : ndarray of shape (n_samples, ``n_output_bits_``), dtype int8
            +1 / -1 features.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype="numeric", ensure_all_finite=True, reset=False)
        return _kernels.unpack_pm1(self.pack(X), self.n_output_bits_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.transformer_tags.preserves_dtype = []  # output is always int8 +/-1
        return tags


class MedianBinarizer(_ThresholdBinarizer):
    """Binarise each feature at its median (or all features at one median).

    ``x > median`` gives +1, anything else -1 (strictly greater, as in the
    reference code of the binary-training papers).

    Parameters
    ----------
    global_median : bool, default=False
        If True, one median over all values of all features is used for
        every feature: the Fashion-MNIST recipe of the papers (one threshold
        for all pixels).  If False, one median per feature.

    Attributes
    ----------
    thresholds_ : ndarray of shape (``n_features_in_``, 1)
        The learned medians.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of features seen during fit (only for string column names).

    Examples
    --------
    >>> import numpy as np
    >>> from skbnn.preprocessing import MedianBinarizer
    >>> X = np.array([[0., 10.], [1., 20.], [2., 30.]])
    >>> MedianBinarizer().fit_transform(X)
    array([[-1, -1],
           [-1, -1],
           [ 1,  1]], dtype=int8)
    """

    _strict = True

    def __init__(self, global_median=False):
        self.global_median = global_median

    def _fit_thresholds(self, X):
        if self.global_median:
            return np.full((X.shape[1], 1), np.median(X), dtype=np.float64)
        return np.median(X, axis=0).reshape(-1, 1)

    def get_feature_names_out(self, input_features=None):
        """Output names: the input feature names (one bit per feature)."""
        check_is_fitted(self)
        return self._input_names(input_features)


class ThermometerEncoder(_ThresholdBinarizer):
    """Thermometer code: ``n_bits`` +/-1 features per input feature.

    Bit ``k`` of feature ``j`` is +1 when ``x_j >= t_jk``.  With
    ``method='quantile'`` (the "distributive" thermometer of Bacellar et al.,
    2024, used by the BEP paper) the thresholds are the empirical quantiles
    at ``k / (n_bits + 1)``, ``k = 1..n_bits``; with ``method='uniform'``
    they are evenly spaced between the feature's minimum and maximum.

    Parameters
    ----------
    n_bits : int, default=8
        Bits per feature (>= 1).
    method : {'quantile', 'uniform'}, default='quantile'
        How the thresholds are placed.

    Attributes
    ----------
    thresholds_ : ndarray of shape (``n_features_in_``, n_bits)
        Increasing thresholds per feature.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of features seen during fit (only for string column names).

    Examples
    --------
    >>> import numpy as np
    >>> from skbnn.preprocessing import ThermometerEncoder
    >>> X = np.arange(10, dtype=float).reshape(-1, 1)
    >>> ThermometerEncoder(n_bits=3).fit(X).transform([[0.], [5.], [9.]])
    array([[-1, -1, -1],
           [ 1,  1, -1],
           [ 1,  1,  1]], dtype=int8)
    """

    def __init__(self, n_bits=8, method="quantile"):
        self.n_bits = n_bits
        self.method = method

    def _validate_params(self):
        if isinstance(self.n_bits, bool) or not isinstance(self.n_bits, Integral):
            raise TypeError(f"n_bits must be an int, got {self.n_bits!r}")
        if self.n_bits < 1:
            raise ValueError(f"n_bits must be >= 1, got {self.n_bits}")
        if self.method not in ("quantile", "uniform"):
            raise ValueError(
                f"method must be 'quantile' or 'uniform', got {self.method!r}")

    def _fit_thresholds(self, X):
        levels = np.arange(1, self.n_bits + 1) / (self.n_bits + 1)
        if self.method == "quantile":
            return np.quantile(X, levels, axis=0).T
        lo, hi = X.min(axis=0), X.max(axis=0)
        return lo[:, None] + (hi - lo)[:, None] * levels[None, :]

    def get_feature_names_out(self, input_features=None):
        """Output names ``<feature>_ge_t<k>``, one per bit."""
        check_is_fitted(self)
        names = self._input_names(input_features)
        b = self.thresholds_.shape[1]
        return np.asarray([f"{n}_ge_t{k}" for n in names for k in range(b)], dtype=object)


class _PrebinarizedInput(_ThresholdBinarizer):
    """``binarize_input=None``: X must already be +/-1 or {0, 1} (0 -> -1)."""

    _strict = True
    checks_finite = False  # NaN must meet scikit-learn's check, not pack's refusal

    def _fit_thresholds(self, X):
        self.pack(X)  # refuses anything but +/-1 or 0/1
        return np.zeros((X.shape[1], 1))

    def pack(self, X, n_threads=1):
        """Packed bits of +/-1 or 0/1 ``X``, validated in the same pass."""
        packed, kinds = _kernels.pack_binary(as_kernel_input(X), n_threads)
        pm1 = not kinds & ~(_kernels.VALUE_NEG_ONE | _kernels.VALUE_POS_ONE)
        if not pm1 and kinds & ~(_kernels.VALUE_ZERO | _kernels.VALUE_POS_ONE):
            raise ValueError(
                "binarize_input=None requires X to hold only -1/+1 or only 0/1 values; "
                "use binarize_input='auto', 'median', 'global_median' or 'thermometer' "
                "for other data")
        return packed


class _BinaryInput(_ThresholdBinarizer):
    """``binarize_input='auto'`` on data that is already two-valued (+/-1 or
    0/1): one bit per feature, ``x > 0``.  (A median of such a column can
    equal its larger value, and ``x > median`` would then erase the feature.)"""

    _strict = True

    def _fit_thresholds(self, X):
        return np.zeros((X.shape[1], 1))


class RealInput(_ThresholdBinarizer):
    """No binarisation: the first layer reads real values (float32).

    ``pack`` returns the validated rows in float32.  ``scale_`` is the power
    of two that brings the training data's largest magnitude into (0.5, 1]
    (1 when it already is there, or when the data are all zero); the first
    layer multiplies its pre-activations by it, which is exactly the product
    of the scaled inputs (a power of two scales without rounding).  The
    layer's batch norm makes the network's function independent of that
    scale; it keeps the pre-activations and batch-norm statistics inside
    float16's range (|x| <= 65504) whatever the input's units.  ``thresholds_`` is
    an empty (n_features, 0) array so the estimators' attributes stay
    uniform.
    """

    checks_finite = False  # pack returns X itself, read by the first layer

    def _fit_thresholds(self, X):
        self.scale_ = input_scale(max_magnitude(X))
        return np.zeros((X.shape[1], 0))

    @property
    def n_output_bits_(self):
        return int(self.thresholds_.shape[0])

    def pack(self, X, n_threads=1):
        """float32, C-contiguous copy or view of ``X`` (the first layer applies
        ``scale_`` to its pre-activations: no scaled copy of the batch);
        refuses finite values beyond the float32 range (they would become
        infinities, and NaN in the layer's batch statistics)."""
        with np.errstate(over="ignore"):
            X32 = np.require(X, dtype=np.float32, requirements=["C", "A"])
        if X32.dtype != X.dtype and not np.isfinite(X32).all():
            raise ValueError(
                "X has values beyond the float32 range (|x| > 3.4e38), which the first "
                "layer reads as float32; rescale X (e.g. with a StandardScaler)")
        return X32


def max_magnitude(X):
    """``max |x|`` over ``X`` (0.0 when empty) without allocating ``|X|``: a
    training call's whole input would otherwise be copied once more."""
    if X.size == 0:
        return 0.0
    return max(float(X.max()), -float(X.min()))


def input_scale(peak):
    """The power of two ``2**-e`` with ``peak * 2**-e`` in (0.5, 1]; 1.0 for a
    zero or non-finite ``peak``."""
    if not (peak > 0 and math.isfinite(peak)):
        return 1.0
    mantissa, exponent = math.frexp(peak)  # peak = mantissa * 2**exponent, mantissa in [0.5, 1)
    if mantissa == 0.5:
        exponent -= 1
    return math.ldexp(1.0, -exponent)


def is_binary_input(X):
    """True when ``X`` holds only -1/+1 or only 0/1 values (one packing pass)."""
    _, kinds = _kernels.pack_binary(as_kernel_input(X))
    pm1 = _kernels.VALUE_NEG_ONE | _kernels.VALUE_POS_ONE
    zero_one = _kernels.VALUE_ZERO | _kernels.VALUE_POS_ONE
    return not kinds & ~pm1 or not kinds & ~zero_one


def auto_thermometer_bits(n_features):
    """Bits per feature of ``binarize_input='auto'``:
    ``min(32, max(1, ceil(256 / n_features)))``."""
    return int(min(32, max(1, math.ceil(256 / max(1, n_features)))))


def make_input_binarizer(binarize_input, n_features, n_thermometer_bits=8,
                         thermometer="quantile", X=None):
    """Unfitted binariser for an estimator's ``binarize_input`` setting.

    Parameters
    ----------
    binarize_input : {'auto', 'median', 'global_median', 'thermometer'}, int or None
        'auto': quantile thermometer with
        ``min(32, max(1, ceil(256 / n_features)))`` bits per feature, where
        one bit is the per-feature median; 'median': per-feature median;
        'global_median': one median for all features; 'thermometer':
        ``n_thermometer_bits`` bits; int b: b-bit thermometer; None: the
        input is already +/-1 or 0/1.
    n_features : int
        Number of input features (used by 'auto').
    n_thermometer_bits : int, default=8
        Bits per feature for 'thermometer'.
    thermometer : {'quantile', 'uniform'}, default='quantile'
        Threshold placement of thermometer codes.
    X : array-like of shape (n_samples, n_features), optional
        The training data.  With 'auto', data that already holds only
        +/-1 or only 0/1 values is used as it is (one bit per feature).

    Returns
    -------
    binarizer : transformer
        An unfitted transformer with a ``pack`` method.
    """
    if binarize_input is None:
        return _PrebinarizedInput()
    if isinstance(binarize_input, Integral) and not isinstance(binarize_input, bool):
        if binarize_input < 1:
            raise ValueError(f"binarize_input as an int must be >= 1, got {binarize_input}")
        bits = int(binarize_input)
    elif binarize_input == "auto":
        if X is not None and is_binary_input(X):
            return _BinaryInput()
        bits = auto_thermometer_bits(n_features)
    elif binarize_input == "median":
        return MedianBinarizer()
    elif binarize_input == "global_median":
        return MedianBinarizer(global_median=True)
    elif binarize_input == "thermometer":
        bits = n_thermometer_bits
    else:
        raise ValueError(
            "binarize_input must be 'auto', 'median', 'global_median', 'thermometer', "
            f"a positive int or None, got {binarize_input!r}")
    if bits == 1 and binarize_input == "auto":
        return MedianBinarizer()
    return ThermometerEncoder(n_bits=bits, method=thermometer)
