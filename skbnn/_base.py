"""Shared scikit-learn machinery of the skbnn classifiers.

:class:`BaseBinaryClassifier` owns everything that is not a learning rule:
parameter checks shared by all estimators, ``validate_data``, ``classes_``,
input binarisation, ``fit`` / ``partial_fit`` bookkeeping, shuffled epochs
in mini-batches, early stopping, ``verbose`` lines, the seeded random
streams and the prediction methods.  A subclass supplies the model through
five hooks: ``_validate_rule_params``, ``_init_model``, ``_training_state``,
``_train_batch`` and ``_inference_rows`` (plus optional ``_end_epoch``
and ``_finish_training``).
"""
import contextlib
import copy
import inspect
import math
import time
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import assert_all_finite, check_random_state
from sklearn.utils._param_validation import validate_parameter_constraints
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _kernels
from ._config import effective_n_threads
from ._engine import INT16_MAX, BinaryLayer, class_scores, init_hidden_weights, ternary_planes
from ._persistence import UNKNOWN_VERSION, realigned, skbnn_version
from ._resources import MAX_FAN_IN, MEMORY_LIMIT_ENV, format_bytes, memory_limit
from .exceptions import InconsistentSkbnnVersionWarning
from .preprocessing import RealInput, make_input_binarizer

# rows per chunk at predict time: bounds the packed and integer scratch
_PREDICT_CHUNK = 8192


# loss_curve_ keeps the most recent epochs only, so that an endless stream of
# partial_fit calls (one epoch each) does not grow memory
LOSS_CURVE_LIMIT = 1000

class _CallGuard:
    """What an exception inside one fit / partial_fit call must undo.

    ``saved``: the attribute dict before the call (a shallow copy: enough
    while the call only rebinds attributes); ``in_place``: the call has
    started updating arrays of the previous model in place; ``backup``: deep
    copies of the fitted attributes taken just before that, when the
    estimator keeps them (``_rollback_copy``).
    """

    __slots__ = ("saved", "in_place", "backup")

    def __init__(self, saved):
        self.saved = saved
        self.in_place = False
        self.backup = None


def check_int(name, value, min_value=None, max_value=None, allow_none=False):
    """Raise TypeError/ValueError unless ``value`` is an int in range."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if min_value is not None and value < min_value:
        raise ValueError(f"{name} must be >= {min_value}, got {value}")
    if max_value is not None and value > max_value:
        raise ValueError(f"{name} must be <= {max_value}, got {value}")


def check_real(name, value, min_value=None, max_value=None, include_min=True):
    """Raise TypeError/ValueError unless ``value`` is a finite real in range."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite real number, got {value!r}")
    if min_value is not None and (value < min_value or (not include_min and value == min_value)):
        op = ">=" if include_min else ">"
        raise ValueError(f"{name} must be {op} {min_value}, got {value}")
    if max_value is not None and value > max_value:
        raise ValueError(f"{name} must be <= {max_value}, got {value}")


def check_bool(name, value):
    """Raise TypeError unless ``value`` is a bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")


def check_choice(name, value, allowed):
    """Raise ValueError unless ``value`` is one of ``allowed`` (strings or None)."""
    if not any(value is a or (isinstance(value, str) and value == a) for a in allowed):
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def nearest_divisor(width, target):
    """The divisor of ``width`` nearest ``target`` (ties: the smaller one)."""
    # divisors in pairs up to sqrt(width): O(sqrt) even for absurd widths,
    # which must reach the memory guard quickly
    divisors = set()
    for d in range(1, math.isqrt(width) + 1):
        if width % d == 0:
            divisors.update((d, width // d))
    return min(divisors, key=lambda d: (abs(d - target), d))


def check_layer_sizes(hidden_layer_sizes):
    """Validated tuple of positive hidden widths (an int means one layer)."""
    sizes = hidden_layer_sizes
    if isinstance(sizes, Integral) and not isinstance(sizes, bool):
        sizes = (sizes,)
    try:
        sizes = tuple(sizes)
    except TypeError:
        raise TypeError(
            f"hidden_layer_sizes must be an int or a sequence of ints, got {hidden_layer_sizes!r}"
        ) from None
    if len(sizes) == 0:
        raise ValueError("hidden_layer_sizes must contain at least one layer")
    for k in sizes:
        check_int("hidden_layer_sizes entries", k, min_value=1)
    return tuple(int(k) for k in sizes)


def resolve_group_sizes(group_size, widths, auto=None):
    """Per-layer group sizes from an int, a per-layer sequence or (when the
    estimator has an ``auto`` rule) 'auto'; each must divide its layer's width."""
    if isinstance(group_size, str):
        if group_size != "auto" or auto is None:
            raise ValueError(f"group_size must be 'auto', an int or a tuple, got {group_size!r}")
        sizes = [auto(k) for k in widths]
    elif isinstance(group_size, Integral) and not isinstance(group_size, bool):
        sizes = [group_size] * len(widths)
    else:
        try:
            sizes = list(group_size)
        except TypeError:
            raise TypeError(
                f"group_size must be 'auto', an int or a tuple, got {group_size!r}") from None
        if len(sizes) != len(widths):
            raise ValueError(f"group_size has {len(sizes)} entries for {len(widths)} layers")
    for g, k in zip(sizes, widths):
        check_int("group_size", g, min_value=1)
        if k % g:
            raise ValueError(f"group_size={g} does not divide the layer width {k}")
    return tuple(int(g) for g in sizes)



class BaseBinaryClassifier(ClassifierMixin, BaseEstimator):
    """Base of the skbnn classifiers (not for direct use)."""

    # fitted attributes that define the model (snapshot for early stopping)
    _model_attributes = ("hidden_weights_", "packed_weights_")

    # ------------------------------------------------------------ validation
    def _validate_common_params(self):
        check_layer_sizes(self.hidden_layer_sizes)
        if self.batch_size != "auto":
            check_int("batch_size", self.batch_size, min_value=1)
        check_int("max_iter", self.max_iter, min_value=1)
        check_int("verbose", int(self.verbose) if isinstance(self.verbose, bool) else self.verbose,
                  min_value=0)
        for name in ("shuffle", "warm_start", "early_stopping"):
            check_bool(name, getattr(self, name))
        check_real("validation_fraction", self.validation_fraction, 0.0, 1.0, include_min=False)
        if self.validation_fraction >= 1.0:
            raise ValueError("validation_fraction must be < 1")
        check_int("n_iter_no_change", self.n_iter_no_change, min_value=1, allow_none=True)
        check_real("tol", self.tol, 0.0)
        check_int("n_thermometer_bits", self.n_thermometer_bits, min_value=1, max_value=1024)
        if self.n_jobs is not None:
            check_int("n_jobs", self.n_jobs)
            if self.n_jobs == 0:
                raise ValueError("n_jobs == 0 has no meaning; use None, -1 or a positive int")
        check_random_state(self.random_state)

    def _validate_params(self):
        # parameters declared in scikit-learn's form (``_parameter_constraints``,
        # possibly a subset) first: its InvalidParameterError is both a
        # ValueError and a TypeError and names the parameter
        constraints = getattr(self, "_parameter_constraints", None)
        if constraints:
            validate_parameter_constraints(
                constraints, {name: getattr(self, name) for name in constraints},
                caller_name=type(self).__name__)
        self._validate_common_params()
        self._validate_rule_params()
        # fail early on a bad binarize_input value (binariser built in fit)
        make_input_binarizer(self.binarize_input, 1, self.n_thermometer_bits,
                             getattr(self, "thermometer", "quantile"))

    def _validate_rule_params(self):
        """Subclass hook: check the learning rule's parameters."""

    def _validate_hidden_weight_params(self):
        """Parameters of int16 hidden weights (``weight_clip``, ``init_std``,
        ``odd_init``, ``ternary_weights``) and ``ternary_activations``, for
        the CP+R estimators."""
        check_int("weight_clip", self.weight_clip, 1, INT16_MAX, allow_none=True)
        check_real("init_std", self.init_std, 0.0)
        check_bool("odd_init", self.odd_init)
        if hasattr(self, "ternary_weights"):
            check_bool("ternary_weights", self.ternary_weights)
            if self.ternary_weights and self.odd_init:
                raise ValueError(
                    "ternary_weights=True needs odd_init=False: odd hidden weights move "
                    "in steps of 2 and never reach 0, so no weight would ever be 0")
        if hasattr(self, "ternary_activations"):
            check_bool("ternary_activations", self.ternary_activations)

    @property
    def _ternary(self):
        """Weights are sign(H) with sign(0) = 0 (estimators without the
        ``ternary_weights`` parameter are binary only)."""
        return bool(getattr(self, "ternary_weights", False))

    @property
    def _ternary_activations(self):
        """Hidden activations are sign(z) with sign(0) = 0 (estimators without
        the ``ternary_activations`` parameter use sign(0) = +1)."""
        return bool(getattr(self, "ternary_activations", False))

    @property
    def _clip(self):
        """Saturation bound of the hidden weights."""
        return INT16_MAX if self.weight_clip is None else int(self.weight_clip)

    def _new_hidden_weights(self, n_out, n_in, rng):
        """int16 hidden weights of one layer drawn from ``rng``."""
        return init_hidden_weights(n_out, n_in, self.init_std, self.odd_init, self._clip, rng)

    def _engine_layers(self, with_transpose=False):
        """Engine layers over the fitted hidden and packed weights.  The
        engine updates in place, so the (writable) arrays it holds become the
        fitted attributes."""
        layers = [BinaryLayer(h, p, with_transpose, self._ternary)
                  for h, p in zip(self.hidden_weights_, self.packed_weights_)]
        self.hidden_weights_ = [layer.hidden for layer in layers]
        self.packed_weights_ = [layer.packed for layer in layers]
        return layers

    def _make_input_encoder(self, X):
        """Unfitted transformer whose ``pack`` turns X into the training
        representation (packed bits here; a subclass may keep floats)."""
        return make_input_binarizer(self.binarize_input, X.shape[1], self.n_thermometer_bits,
                                    getattr(self, "thermometer", "quantile"), X=X)

    def _uses_validation_split(self):
        """Subclass hook: whether fit holds out a validation split."""
        return self.early_stopping

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        return tags

    # ------------------------------------------------------------ helpers
    @property
    def _n_threads(self):
        return effective_n_threads(self.n_jobs)

    _auto_batch_size = 100

    def _auto_batch_size_for(self, n_samples):
        """Subclass hook: the mini-batch size of ``batch_size='auto'`` for an
        epoch over ``n_samples`` samples (``_auto_batch_size`` by default)."""
        return self._auto_batch_size

    def _batch_size_for(self, n_samples):
        bs = (self._auto_batch_size_for(n_samples) if self.batch_size == "auto"
              else self.batch_size)
        return max(1, min(bs, n_samples))

    def _label_indices(self, y):
        """Map labels to indices of ``classes_``; refuse unknown labels."""
        idx = np.searchsorted(self.classes_, y)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        bad = self.classes_[idx] != y
        if np.any(bad):
            unknown = np.unique(np.asarray(y)[bad])
            raise ValueError(
                f"y contains labels not in classes_ {list(self.classes_)}: {list(unknown[:10])}")
        return idx.astype(np.intp)

    def _reset(self, X, classes):
        """Start a new model: classes, seed, binariser and initial weights."""
        self.classes_ = classes
        rng = check_random_state(self.random_state)
        # one 63-bit seed; every later stream (init, shuffling, reinforcement)
        # derives from it, so partial_fit continues and pickles carry it
        self._seed = int(rng.randint(0, 2**62, dtype=np.int64)) * 2 + 1
        self._batches_seen = 0
        self._prev_train_error = None
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self.validation_scores_ = []
        self.binarizer_ = self._make_input_encoder(X)
        self.binarizer_.fit(X)
        self.binarizer_thresholds_ = self.binarizer_.thresholds_
        # refuse an absurd model before a single weight is allocated
        self._check_training_memory(X.shape[0], self.binarizer_.n_output_bits_, len(classes),
                                    held=X.nbytes)
        init_rng = np.random.default_rng([self._seed, 0])
        self._init_model(self.binarizer_.n_output_bits_, len(classes), init_rng)

    # ------------------------------------------------------------ resource guard
    def _state_bytes_per_weight(self):
        """Bytes of training state held per weight (subclass hook): here the
        CP+R rules' int16 hidden weight, packed sign and packed transpose
        (and the H > 0 plane and its transpose of ternary weights)."""
        return 2.5 if self._ternary else 2.25

    def _layer_fan_ins(self, n_input_bits):
        """Fan-in of every hidden layer (subclass hook: a recurrent layer also
        reads its own state)."""
        return (n_input_bits,) + check_layer_sizes(self.hidden_layer_sizes)[:-1]

    def _input_row_bytes(self, n_input_bits):
        """Bytes of one training sample after encoding (packed bits, or float32
        rows when the first layer reads real values)."""
        if isinstance(getattr(self, "binarizer_", None), RealInput):
            return 4 * n_input_bits
        return 8 * ((n_input_bits + 63) // 64)

    def _training_bytes(self, n_samples, n_input_bits, n_classes):
        """Estimated bytes of a fit: model state, one mini-batch of
        activations and scratch, and the encoded training set (twice: the
        shuffled batches and the validation split gather copies)."""
        widths = check_layer_sizes(self.hidden_layer_sizes)
        fan_ins = self._layer_fan_ins(n_input_bits)
        n_weights = sum(k * n for k, n in zip(widths, fan_ins)) + widths[-1] * n_classes
        batch = self._batch_size_for(max(1, n_samples))
        widest = max(widths + (n_classes,))
        activations = batch * (widest * 16 + sum(8 * ((k + 63) // 64) for k in widths) * 4)
        inputs = 2 * n_samples * self._input_row_bytes(n_input_bits)
        return int(n_weights * self._state_bytes_per_weight() + activations + inputs)

    def _check_training_memory(self, n_samples, n_input_bits, n_classes=None, held=0):
        """Refuse, with a ValueError naming the size, a fit whose estimated
        memory (plus ``held`` bytes already allocated for it, the validated
        input) exceeds :func:`memory_limit`, or widths past the kernels'
        int32 range; ``n_classes=None``: a call continuing a fitted model
        (only its input is new)."""
        widths = check_layer_sizes(self.hidden_layer_sizes)
        for name, k in (("input bits", n_input_bits), ("hidden width", max(widths))):
            if k > MAX_FAN_IN:
                raise ValueError(
                    f"{type(self).__name__}: {k:,} {name} exceed the kernels' int32 range "
                    f"(at most {MAX_FAN_IN:,})")
        limit = memory_limit()
        if n_classes is None:
            need = 2 * n_samples * self._input_row_bytes(n_input_bits)
            what = f"the encoded input of {n_samples:,} samples"
        else:
            need = self._training_bytes(n_samples, n_input_bits, n_classes) + held
            what = (f"a network of {n_input_bits:,} inputs, hidden widths "
                    f"{tuple(widths)} and {n_classes} classes on {n_samples:,} samples")
        if limit is not None and need > limit:
            raise ValueError(
                f"{type(self).__name__}: training {what} needs about {format_bytes(need)} "
                f"({need:,} bytes), above the memory limit of {format_bytes(limit)}; "
                f"use smaller hidden_layer_sizes, fewer input bits or fewer samples per "
                f"call, or raise the limit with the environment variable "
                f"{MEMORY_LIMIT_ENV} (e.g. {MEMORY_LIMIT_ENV}=64G, or 'none')")

    def _check_continuing_input(self, X):
        """Subclass hook: refuse (ValueError), before anything changes, the
        validated ``X`` of a call continuing a fitted model that the model
        cannot train on; no check by default."""

    # ------------------------------------------------------------ exception safety
    # An exception in a call that continues a model in place (warm_start fit,
    # partial_fit after the first call) cannot be undone by rebinding
    # attributes: the kernels have updated the previous model's arrays.  With
    # _rollback_copy the call first deep-copies the fitted state (one extra
    # model in memory during the call) and restores it; without it (the
    # default: no extra memory, LowMem's footprint promise) the estimator is
    # left cleanly unfitted.  Either way never half-updated.
    _rollback_copy = False

    def _guarded(self, method, *args):
        """Run ``method`` (a fit or partial_fit) inside :meth:`_call_context`;
        on any exception (``KeyboardInterrupt`` included) leave the estimator
        as it was, or cleanly unfitted when the call had already started to
        update the previous model in place (see :meth:`_begin_in_place_updates`)."""
        with self._call_context():
            guard = _CallGuard(dict(self.__dict__))
            self.__dict__["_call_guard"] = guard
            try:
                return method(*args)
            except BaseException:
                self._undo_call(guard)
                raise
            finally:
                self.__dict__.pop("_call_guard", None)

    def _is_config_attribute(self, name):
        """Parameters and scikit-learn's own configuration: not fitted state."""
        return (name in self._get_param_names() or name.startswith("_sklearn")
                or name.startswith("_metadata_request"))

    def _begin_in_place_updates(self):
        """Mark the point where the call starts updating the previous model's
        arrays in place: from here an exception restores the copies (with
        ``_rollback_copy``) or unfits the estimator."""
        guard = self.__dict__.get("_call_guard")
        if guard is None or guard.in_place:
            return
        if self._rollback_copy:  # one deepcopy: arrays shared between attributes stay shared
            guard.backup = copy.deepcopy({k: v for k, v in guard.saved.items()
                                          if not self._is_config_attribute(k)})
        guard.in_place = True  # after the copy: an interrupt during it restores `saved`

    def _undo_call(self, guard):
        if guard.in_place and guard.backup is None:
            state = {k: v for k, v in guard.saved.items() if self._is_config_attribute(k)}
        else:
            state = dict(guard.saved)
            state.update(guard.backup or {})
        self.__dict__.clear()
        self.__dict__.update(state)

    # ------------------------------------------------------------ persistence
    def __getstate__(self):
        """Pickled state: the attributes plus the skbnn version (as
        scikit-learn records its own), checked by :meth:`__setstate__`."""
        state = dict(super().__getstate__())  # a copy: never add to the live __dict__
        state.pop("_call_guard", None)  # e.g. pickled to a dask worker mid-fit
        state["_skbnn_version"] = skbnn_version()
        return state

    def __setstate__(self, state):
        state = dict(state)
        version = state.pop("_skbnn_version", UNKNOWN_VERSION)
        if version != skbnn_version():
            warnings.warn(InconsistentSkbnnVersionWarning(
                estimator_name=type(self).__name__, current_skbnn_version=skbnn_version(),
                original_skbnn_version=version))
        # a parameter added since the pickle was written takes its default,
        # which is the behaviour the model was trained with
        for name, param in inspect.signature(type(self).__init__).parameters.items():
            if name != "self" and name not in state:
                state[name] = param.default
        super().__setstate__(realigned(state))

    def _call_context(self):
        """Subclass hook: a context manager around every fit / partial_fit
        call (e.g. LowMem's memory measurement)."""
        return contextlib.nullcontext()

    # ------------------------------------------------------------ fit
    def fit(self, X, y):
        """Train the network for ``max_iter`` epochs (or until early stopping).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; binarised according to ``binarize_input``.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._guarded(self._fit, X, y)

    def _fit(self, X, y):
        self._validate_params()
        warm = self.warm_start and hasattr(self, "classes_")
        X, y = validate_data(self, X, y, dtype="numeric", reset=not warm)
        check_classification_targets(y)
        if warm:
            y_idx = self._label_indices(y)
            self._check_training_memory(X.shape[0], self.binarizer_.n_output_bits_)
            self._check_continuing_input(X)
        else:
            classes = np.unique(y)
            self._check_n_classes(classes)
            self._reset(X, classes)
            y_idx = np.searchsorted(self.classes_, y).astype(np.intp)
        n_threads = self._n_threads
        A = self.binarizer_.pack(X, n_threads)
        A_train, y_train, A_val, y_val = self._split_validation(A, y_idx)
        if warm:
            self._begin_in_place_updates()
        state = self._training_state()
        self._run_epochs(state, A_train, y_train, A_val, y_val, n_threads)
        return self

    def _check_n_classes(self, classes):
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes; "
                f"got {len(classes)} class ({classes[:1].tolist()})")

    def _split_validation(self, A, y_idx):
        """Stratified hold-out of ``validation_fraction`` when used."""
        if not self._uses_validation_split():
            return A, y_idx, None, None
        n = len(y_idx)
        n_val = int(math.ceil(self.validation_fraction * n))
        n_classes = len(self.classes_)
        if n_val < 2 or n - n_val < 1 or (n_val < n_classes):
            if self.early_stopping:
                raise ValueError(
                    f"the validation split of early_stopping would hold {n_val} of {n} "
                    "samples; it needs at least 2 and one per class. Use more data, a larger "
                    "validation_fraction or early_stopping=False")
            return A, y_idx, None, None
        seed = np.random.default_rng([self._seed, 1]).integers(2**31 - 1)
        idx = np.arange(n)
        try:
            tr, va = train_test_split(idx, test_size=n_val, random_state=int(seed),
                                      stratify=y_idx)
        except ValueError:  # a class too small to stratify
            tr, va = train_test_split(idx, test_size=n_val, random_state=int(seed))
        return A[tr], y_idx[tr], A[va], y_idx[va]

    def _run_epochs(self, state, A, y, A_val, y_val, n_threads):
        """``max_iter`` shuffled epochs with the stopping rules of MLPClassifier:
        validation accuracy when ``early_stopping`` (best weights restored),
        else training error when ``n_iter_no_change`` is set."""
        best_score, best_loss, no_improve, best_model = -np.inf, np.inf, 0, None
        stopped = False
        for _ in range(self.max_iter):
            tic = time.perf_counter()
            train_error = self._run_epoch(state, A, y, n_threads)
            val_score = None
            if A_val is not None:
                val_score = float(np.mean(self._predict_indices(A_val, n_threads) == y_val))
                self.validation_scores_.append(val_score)
            self._end_epoch(state, train_error, val_score)
            if self.verbose:
                val_txt = "" if val_score is None else f", validation score {val_score:.4f}"
                print(f"Epoch {self.n_iter_}: training error {train_error:.4f}{val_txt}, "
                      f"{time.perf_counter() - tic:.2f} s")
            if self.early_stopping:
                if val_score > best_score + self.tol:
                    best_score, no_improve = val_score, 0
                    best_model = self._snapshot(state)
                else:
                    no_improve += 1
            elif self.n_iter_no_change is not None:
                if train_error < best_loss - self.tol:
                    best_loss, no_improve = train_error, 0
                else:
                    no_improve += 1
            if self.n_iter_no_change is not None and no_improve >= self.n_iter_no_change:
                stopped = True
                if self.verbose:
                    print(f"No improvement for {self.n_iter_no_change} epochs: stopping.")
                break
        self._finish_training(state)
        if self.early_stopping:
            self.best_validation_score_ = float(best_score)
            self.best_loss_ = None
            if best_model is not None:
                self._restore(best_model)
        else:
            self.best_loss_ = float(min(self.loss_curve_))
        if self.n_iter_no_change is not None and not stopped:
            warnings.warn(
                f"{type(self).__name__}: maximum iterations ({self.max_iter}) reached and the "
                "optimization hasn't converged yet.", ConvergenceWarning)

    def _run_epoch(self, state, A, y, n_threads):
        """One pass in shuffled mini-batches; returns the on-the-fly training
        error (of the predictions made before each batch's update)."""
        n = len(y)
        if self.shuffle:
            order = np.random.default_rng([self._seed, 2, self.n_iter_]).permutation(n)
        else:
            order = np.arange(n)
        bs = self._batch_size_for(n)
        correct = 0
        for start in range(0, n, bs):
            if n <= bs:  # one batch: its sample order does not matter, no gathered copy
                correct += self._train_batch(state, A, y, n_threads)
            else:
                idx = order[start:start + bs]
                correct += self._train_batch(state, A[idx], y[idx], n_threads)
            self._batches_seen += 1
        train_error = 1.0 - correct / n
        self.n_iter_ += 1
        self.t_ += n
        self.loss_curve_.append(self._epoch_loss(state, train_error))
        if len(self.loss_curve_) > LOSS_CURVE_LIMIT:  # streaming: bounded memory
            del self.loss_curve_[:-LOSS_CURVE_LIMIT]
        self._prev_train_error = train_error
        return train_error

    def _snapshot(self, state):
        self._finish_training(state)
        return {name: copy.deepcopy(getattr(self, name)) for name in self._model_attributes}

    def _restore(self, snapshot):
        for name, value in snapshot.items():
            setattr(self, name, value)

    # ------------------------------------------------------------ partial_fit
    def partial_fit(self, X, y, classes=None):
        """One epoch over ``(X, y)`` in mini-batches (for data streams).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A chunk of training data.
        y : array-like of shape (n_samples,)
            Its labels; need not contain every class.
        classes : array-like of shape (n_classes,), default=None
            All classes of the stream; required on the first call, optional
            (but must match ``classes_``) later.

        Returns
        -------
        self : object
            The updated estimator.
        """
        return self._guarded(self._partial_fit, X, y, classes)

    def _partial_fit(self, X, y, classes):
        self._validate_params()
        if self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True; "
                             "hold out validation data yourself when streaming")
        first = not hasattr(self, "classes_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        X, y = validate_data(self, X, y, dtype="numeric", reset=first)
        check_classification_targets(y)
        if first:
            all_classes = unique_labels(classes)
            self._check_n_classes(all_classes)
            self._reset(X, all_classes)
            y_idx = self._label_indices(y)  # unknown labels: _guarded undoes the reset
        else:
            if classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
                raise ValueError(
                    f"classes={list(unique_labels(classes))} differs from the classes of the "
                    f"first partial_fit call {list(self.classes_)}")
            y_idx = self._label_indices(y)
            self._check_training_memory(X.shape[0], self.binarizer_.n_output_bits_)
            self._check_continuing_input(X)
        n_threads = self._n_threads
        A = self.binarizer_.pack(X, n_threads)
        if not first:
            self._begin_in_place_updates()
        state = self._training_state()
        error = self._run_epoch(state, A, y_idx, n_threads)
        self._end_epoch(state, error, None)
        self._finish_training(state)
        return self

    # ------------------------------------------------------------ hooks
    def _epoch_loss(self, state, train_error):
        """Subclass hook: the value recorded in ``loss_curve_`` for an epoch
        (the on-the-fly training error by default)."""
        return train_error

    def _end_epoch(self, state, train_error, val_score):
        """Subclass hook after every epoch (schedules)."""

    def _finish_training(self, state):
        """Subclass hook: write transient training state back to attributes."""

    # ------------------------------------------------------------ predict
    def _scores(self, X):
        """Integer class scores of every sample, computed in chunks.

        Float input is checked for NaN and infinities by the packing kernel
        itself where the binariser and kernel path allow it (one pass over
        ``X`` instead of two); otherwise, and to raise scikit-learn's usual
        error when it found one, by scikit-learn's check."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype="numeric", reset=False, ensure_all_finite=False)
        fused = X.dtype.kind == "f" and getattr(self.binarizer_, "checks_finite", False)
        if X.dtype.kind in "fc" and not fused:
            self._assert_all_finite(X)
        n_threads = self._n_threads
        parts = []
        for i in range(0, X.shape[0], _PREDICT_CHUNK):
            chunk = X[i:i + _PREDICT_CHUNK]
            if fused:
                A, nonfinite = self.binarizer_.pack_checked(chunk, n_threads)
                if nonfinite is not False:  # found one, or not looked (portable path)
                    self._assert_all_finite(chunk)
            else:
                A = self.binarizer_.pack(chunk, n_threads)
            parts.append(self._scores_from_packed(A, n_threads))
        return np.concatenate(parts) if parts else np.zeros((0, 1), dtype=np.int32)

    def _assert_all_finite(self, X):
        """scikit-learn's NaN / infinity check and error of ``validate_data``."""
        assert_all_finite(X, allow_nan=False, estimator_name=type(self).__name__,
                          input_name="X")

    @staticmethod
    def _indices_from_scores(scores):
        if scores.shape[1] == 1:  # single +/-1 output: s > 0 -> classes_[1]
            return (scores[:, 0] > 0).astype(np.intp)
        return np.argmax(scores, axis=1)  # ties -> lowest class index

    def _scores_from_packed(self, A, n_threads):
        """Logits of packed inputs: every layer's fused sign product, then the
        fixed readout rows of ``_inference_rows``."""
        a = A
        if self._ternary_activations:  # two planes per activation: z >= 0, z > 0
            for h, w in zip(self.hidden_weights_, self.packed_weights_):
                z = BinaryLayer(h, w, ternary=self._ternary).forward(a, n_threads)
                a = ternary_planes(z, n_threads)
        elif self._ternary:  # the H > 0 planes come from the hidden weights
            for h, w in zip(self.hidden_weights_, self.packed_weights_):
                a = BinaryLayer(h, w, ternary=True).forward_sign(a, n_threads)
        else:
            for w, h in zip(self.packed_weights_, self.hidden_weights_):
                a = _kernels.bgemm_sign(a, w, h.shape[1], n_threads)
        return class_scores(a, self._inference_rows(), self.hidden_weights_[-1].shape[0],
                            n_threads)

    def _inference_rows(self):
        """Subclass hook: packed readout rows (C_out x words(K_L))."""
        raise NotImplementedError

    def _predict_indices(self, A, n_threads):
        return self._indices_from_scores(self._scores_from_packed(A, n_threads))

    def decision_function(self, X):
        """Integer logits of the last layer's fixed readout.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            Binary problems: one score, positive means ``classes_[1]``.
            Otherwise one integer score per class; the argmax is the
            prediction (ties go to the lowest class index).
        """
        check_is_fitted(self)
        s = self._scores(X)
        if s.shape[1] == 1:
            return s[:, 0]
        if s.shape[1] == 2:
            return s[:, 1] - s[:, 0]
        return s

    def predict(self, X):
        """Predicted class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        y : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        check_is_fitted(self)
        indices = self._indices_from_scores(self._scores(X))
        return self.classes_[indices]

    def predict_proba(self, X):
        """Class probabilities: softmax of the logits divided by ``temperature_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Rows sum to 1; columns follow ``classes_``.
        """
        check_is_fitted(self)
        s = self._scores(X).astype(np.float64)
        if s.shape[1] == 1:  # +/-1 output: the two logits are -s and +s
            s = np.hstack([-s, s])
        z = s / self.temperature_
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))
