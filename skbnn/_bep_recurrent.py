"""BEPRecurrentClassifier: binary recurrent networks trained end to end by
Binary Error Propagation Through Time (BEP-TT).

Colombo, Pittorino, Zambon, Baldassi, Roveri & Alippi, "BEP: A Binary Error
Propagation Algorithm for Binary Neural Networks Training", arXiv 2512.04189
(ICLR 2026), §3.5.

The recurrent network is BEP's two-layer network unrolled in time: the
recurrent layer reads the concatenation ``[a_t, s_{t-1}]`` (``W_xs`` and
``W_ss`` are the column blocks of one :class:`~skbnn._engine.BinaryLayer`)
and the readout layer reads ``s_T``.  Everything that is BEP and not time --
prototypes, trigger, gated back-projection, CP step, reinforcement, group
schedule -- is :class:`~skbnn.BEPClassifier`'s code, inherited unchanged.
"""
import math

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import check_is_fitted

from . import _kernels
from ._base import check_choice, check_int
from ._bep import BEPClassifier, _BEPState, trigger_mask
from ._engine import (BatchUpdates, BinaryLayer, CPStep, class_scores, n_words,
                      pack_pm1_rows)
from .preprocessing import make_input_binarizer

__all__ = ["BEPRecurrentClassifier"]


def concat_bits(a, n_a, b, n_b):
    """Packed rows ``[a, b]``: the ``n_a`` bits of ``a`` followed by the
    ``n_b`` bits of ``b`` (both zero past their length, so the result is too)."""
    n, wb = a.shape[0], b.shape[1]
    out = np.zeros((n, n_words(n_a + n_b)), dtype=np.uint64)
    out[:, :a.shape[1]] = a
    w0, off = divmod(n_a, 64)
    if off == 0:
        out[:, w0:w0 + wb] = b
    else:
        out[:, w0:w0 + wb] |= b << np.uint64(off)
        carry = out.shape[1] - (w0 + 1)  # words that receive the high bits
        out[:, w0 + 1:] |= (b >> np.uint64(64 - off))[:, :carry]
    return out


class _SeriesEncoder:
    """The fixed input layer: per-channel binarisation of every time step
    (the binariser of ``binarize_input``, fitted on all time steps of a
    channel), then the fixed random +/-1 expansion ``a_t = sign(E b_t)``.

    ``pack`` turns flattened series (n, n_channels * n_timepoints),
    channel-major, into packed inputs (n, n_timepoints, ceil(Kx / 64)).
    """

    def __init__(self, binarizer, n_channels, n_timepoints, expansion_size, seed):
        self.binarizer = binarizer
        self.n_channels = n_channels
        self.n_timepoints = n_timepoints
        self.expansion_size = expansion_size
        self.seed = seed

    def _steps(self, X):
        """(n * T, C) rows, one per (series, time step)."""
        n = X.shape[0]
        X = np.asarray(X).reshape(n, self.n_channels, self.n_timepoints)
        return np.ascontiguousarray(X.transpose(0, 2, 1)).reshape(-1, self.n_channels)

    def fit(self, X):
        self.binarizer.fit(self._steps(X))
        self.thresholds_ = self.binarizer.thresholds_
        n_bits = self.binarizer.n_output_bits_
        if self.expansion_size is None:
            self.expansion_ = None
        else:
            rng = np.random.default_rng(self.seed)
            self.expansion_ = rng.choice(np.array([-1, 1], dtype=np.int8),
                                         size=(self.expansion_size, n_bits))
            self._expansion_rows = pack_pm1_rows(self.expansion_)
        self._n_bits = n_bits
        return self

    @property
    def n_output_bits_(self):
        """Kx: input bits per time step."""
        return self._n_bits if self.expansion_ is None else self.expansion_.shape[0]

    def pack(self, X, n_threads=1):
        bits = self.binarizer.pack(self._steps(X), n_threads)
        if self.expansion_ is not None:
            # sign(E b) with sign(0) = +1 (the paper does not give the form)
            bits = _kernels.bgemm_sign(bits, self._expansion_rows, self._n_bits, n_threads)
        return bits.reshape(X.shape[0], self.n_timepoints, bits.shape[1])


class BEPRecurrentClassifier(BEPClassifier):
    """Binary recurrent network trained by BEP through time (BEP-TT).

    A sequence classifier whose weights, activations, errors and updates
    are all binary or small integers.  Every time step ``x_t`` (one value
    per channel) is binarised per channel (a quantile thermometer code by
    default) and mapped by a fixed random +/-1 matrix ``E`` to
    ``a_t = sign(E b_t)`` (``expansion_size`` bits).  The binary state
    evolves as

    ``s_t = sign(W_xs a_t + W_ss s_{t-1})``,  ``s_y = sign(W_sy s_T)``,

    and the logits are ``P s_y`` with fixed +/-1 class prototypes ``P`` (a
    binary equiangular frame).  ``W = sign(H)`` of int16 hidden weights;
    ``W_xs`` and ``W_ss`` are the two column blocks of one recurrent layer
    over ``[a_t, s_{t-1}]``.

    A sequence triggers learning when its correct logit beats the best
    other one by less than ``robustness * output_size``.  Its desired
    states travel backward through time:
    ``s*_T = sign(W_sy^T (g_y * P[y]))`` and
    ``s*_t = sign(W_ss^T (g_{t+1} * s*_{t+1}))`` for the last
    ``backward_horizon`` steps, where the gate passes only neurons with
    ``|z| <= gate_threshold * fan_in``.  One neuron selection per sequence
    and group of ``group_size`` state neurons, shared by all time steps
    (``rnn_mask``), then the update ``H[j] += 2 sum_t s*_{t,j} [a_t, s_{t-1}]``
    summed over time and over the batch from the pre-update weights,
    saturated once; the readout learns as BEP's last layer.  Then CP+R
    reinforcement, and the group sizes grow when the monitored error stalls,
    exactly as in :class:`BEPClassifier`.

    Parameters
    ----------
    state_size : int, default=1035
        ``Ks``: binary state neurons (the paper's UCR setting).
    output_size : int, default=1035
        ``Ky``: binary readout neurons, compared with the class prototypes.
    expansion_size : int or None, default=1035
        ``Kx``: bits of the fixed random +/-1 expansion of each binarised
        time step; None feeds the binarised time step itself.
    backward_horizon : int or None, default=None
        Time steps that receive a desired state and enter the update sums
        (the last ones); None (or more than the series length) is full
        back-propagation through time, 1 trains ``W_xs``/``W_ss`` from the
        last step only.
    rnn_mask : {'sum', 'last', 'any'}, default='sum'
        How the one neuron selection per sequence is chosen over time: the
        stability ``sum_t s*_{t,j} z_{t,j}`` summed over the horizon is
        "wrong" when negative, smallest ``|sum|`` per group wins; 'last':
        from the last step's ``z_T`` and ``s*_T`` as in BEPClassifier;
        'any': wrong at any step, the smallest ``|z_{t,j}|`` over its wrong
        steps wins.
    initial_state : {'ones', 'random'}, default='ones'
        ``s_0``: all +1, or a fixed random +/-1 vector drawn at fit
        (``initial_state_``).
    window_length : int or None, default=None
        Read only the last ``window_length`` time steps of every series
        (the paper's last window).  None: all time steps of an array; for a
        list of variable-length series, the length of the shortest
        training series.  Series shorter than the window (in a list) are
        padded at the front with copies of their first time step.
    robustness : float, default=0.5
        Trigger margin ``r``: a sequence updates the network when its
        correct logit minus the best other logit is below
        ``r * output_size``.
    gate_threshold : float, default=0.05
        Gate ``nu``: the error passes backward only through neurons with
        ``|z| <= nu * fan_in``; the fan-in of a state neuron is
        ``Kx + Ks`` (the paper's ``nu K_l`` is written for the MLP).  0.05
        is the paper's UCR value; its S-MNIST ablation prefers 0.01 for
        long horizons.
    strict_ties : bool, default=False
        False: a tie in a back-projection carries no signal (any value is
        optimal at a tie, paper Prop. 1): that neuron keeps its activation
        as target and passes nothing to the step below.  True gives +1 (the
        paper's letter, BEPClassifier's default); through time it biases the
        desired states toward +1 and can drive the state into an
        input-independent all-(+1) attractor (see the user guide).
    reinforcement_prob : float, default=0.5
        Base reinforcement probability ``p_r``.
    reinforcement_norm : {'fan_in', 'width'}, default='fan_in'
        ``K`` in ``sqrt(2 / (pi K))``: fan-in (``Kx + Ks`` for the recurrent
        layer, ``Ks`` for the readout) or layer width.
    group_size : int or tuple of int, default=15
        Initial group size ``gamma`` of the state and the readout layer
        (one int for both, or a pair); must divide ``state_size`` and
        ``output_size``.
    group_schedule : {'validation', 'train'} or None, default='validation'
        What the group-size schedule monitors (see BEPClassifier).
    group_patience : int, default=5
        Epochs without improvement before the group sizes step up.
    validation_fraction : float, default=0.1
        Hold-out of the group schedule and of ``early_stopping``.
    weight_clip : int or None, default=None
        Clip hidden weights to ``[-c, c]``; None keeps the int16 range.
    init_std : float, default=64.0
        Standard deviation of ``trunc(Normal(0, init_std**2))`` hidden
        weights.
    odd_init : bool, default=True
        Make the initial hidden weights odd so they never reach 0.
    prototypes : {'bef', 'random'}, default='bef'
        Class prototypes: binary equiangular frame or random +/-1 rows.
    bef_alpha : float, default=1.0
        Weight of the variance term of the frame objective.
    bef_max_iter : int or None, default=None
        Bit-flip proposals of the frame; None = ``100 * C * output_size``.
    binarize_input : {'thermometer', 'auto', 'median', 'global_median'}, int or None, \
            default='thermometer'
        Per-channel binarisation of a time step, thresholds learned on all
        time steps of the training series: 'thermometer' with
        ``n_thermometer_bits`` bits per channel (the paper's distributive
        thermometer), an int b for b bits, 'auto' for
        ``min(32, max(1, ceil(256 / n_channels)))`` bits, 'median' one bit
        per channel, 'global_median' one median for all channels, None for
        values that are already +/-1 or 0/1.
    n_thermometer_bits : int, default=20
        Thermometer bits per channel (paper grid 1, 10, 20, 50, 100).
    thermometer : {'quantile', 'uniform'}, default='quantile'
        Threshold placement: distributive (quantiles) or evenly spaced.
    batch_size : int or 'auto', default='auto'
        Sequences per mini-batch; 'auto' = ``ceil(n_samples / 10)`` (ten
        batches per epoch, the paper's UCR setting).
    max_iter : int, default=50
        Epochs of ``fit``.
    shuffle : bool, default=True
        Reshuffle the training data every epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, expansion, prototypes, the validation split,
        shuffling and reinforcement.
    verbose : int, default=0
        Print one line per epoch.
    warm_start : bool, default=False
        Continue from the previous fit instead of starting again.
    early_stopping : bool, default=False
        Track the validation accuracy, stop after ``n_iter_no_change``
        epochs without improvement and restore the best weights.
    n_iter_no_change : int or None, default=None
        Epochs without improvement before stopping; None trains all epochs.
    tol : float, default=1e-4
        Minimum improvement for ``n_iter_no_change``.
    n_jobs : int or None, default=None
        Threads of the kernels (None = 1, -1 = all).  Results do not depend
        on it.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    n_channels_ : int
        Channels of the training series.
    n_timepoints_ : int
        Time steps the network reads (the window).
    n_features_in_ : int
        ``n_channels_ * n_timepoints_``: the columns of the flattened,
        channel-major layout (for 2-D input, the time points).
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Column names, when a 2-D DataFrame with string column names is fitted.
    hidden_weights_ : list of two ndarray of int16
        ``[H_xs H_ss]`` of shape (Ks, Kx + Ks) (input columns first) and
        ``H_sy`` of shape (Ky, Ks).
    packed_weights_ : list of two ndarray of uint64
        Packed ``sign(hidden_weights_)`` (bit 1 = +1): the inference weights.
    prototypes_ : ndarray of int8, shape (n_classes, output_size)
        Fixed +/-1 class prototypes.
    initial_state_ : ndarray of int8, shape (state_size,)
        ``s_0``.
    expansion_ : ndarray of int8, shape (expansion_size, ``n_channels_`` * bits) or None
        The fixed +/-1 expansion matrix ``E``.
    group_sizes_ : tuple of int
        Current group sizes of the state and the readout layer.
    binarizer_ : object
        The fitted input encoder (binarisation and expansion).
    binarizer_thresholds_ : ndarray of shape (``n_channels_``, bits_per_channel)
        Thresholds of the per-channel binarisation.
    temperature_ : float
        Logit scale of ``predict_proba``: ``output_size / 8``.
    n_iter_ : int
        Epochs run (``partial_fit`` calls count one each).
    t_ : int
        Training sequences seen.
    loss_curve_ : list of float
        On-the-fly training error of every epoch.
    validation_scores_ : list of float
        Validation accuracy per epoch (when a hold-out is used).
    best_validation_score_ : float
        Best validation accuracy (with ``early_stopping``).
    best_loss_ : float or None
        Lowest training error (None with ``early_stopping``).

    Notes
    -----
    Input layouts: a 3-D array ``(n_cases, n_channels, n_timepoints)``
    (aeon's layout), a 2-D array ``(n_cases, n_timepoints)`` read as
    univariate series (this is what scikit-learn's tools pass), or a list of
    2-D arrays ``(n_channels, n_timepoints_i)`` of varying lengths (aeon's
    unequal-length layout), reduced to their last ``window_length`` steps.
    Arrays at predict time must have the fitted number of channels, and
    the fitted number of time points (at least ``window_length`` when it is
    set).

    Readings of what the paper's recurrent section leaves open, all
    defaults:

    - One selection per sequence (the paper shares the masks over time
      without saying how they are chosen), shared by all time steps and by
      ``W_xs`` and ``W_ss`` (they are one layer over ``[a_t, s_{t-1}]``),
      chosen from the stability summed over the horizon
      (``rnn_mask='sum'``); a summed stability of exactly 0 is not wrong.
    - The gate of a state neuron is ``|z| <= nu (Kx + Ks)``, its fan-in
      (Eq. 5's ``nu K_l`` is written for the MLP).
    - The readout update carries the factor 2 like every CP step (the
      paper prints it without, most likely a typo).
    - ``s_0`` is all +1 (``initial_state='ones'``); the paper gives none.
    - The expansion (form not given) is a fixed random +/-1 matrix
      followed by sign (sign(0) = +1), drawn from the seed and never
      trained.
    - Every desired state comes from the pre-update weights; a sequence
      whose gate closes at some step sends no signal to earlier steps (those
      steps are skipped), as BEPClassifier's layers below a closed gate.
    - A tie in a back-projection carries no signal
      (``strict_ties=False``, unlike BEPClassifier): through time, ties read
      as +1 bias every desired state toward +1 and can lock the state in an
      input-independent attractor.
    - ``backward_horizon = k`` gives desired states to the last ``k`` steps
      (``k - 1`` back-projections through ``W_ss``), which alone enter the
      mask and the update sums.
    - The rest (trigger, mask winner, reinforcement, prototypes, group
      schedule) as in :class:`BEPClassifier`.

    Examples
    --------
    >>> import numpy as np
    >>> from skbnn import BEPRecurrentClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 2, 12))            # (n_cases, n_channels, n_timepoints)
    >>> y = (X[:, 0, -4:].mean(axis=1) > 0).astype(int)
    >>> clf = BEPRecurrentClassifier(state_size=105, output_size=105, expansion_size=64,
    ...                              max_iter=20, random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.8
    True
    """

    # what _batch_updates reads besides the parameters (data-parallel workers)
    _compute_attributes = BEPClassifier._compute_attributes + ("initial_state_",)

    def __init__(self, state_size=1035, output_size=1035, expansion_size=1035,
                 backward_horizon=None, rnn_mask="sum", initial_state="ones",
                 window_length=None, robustness=0.5, gate_threshold=0.05, strict_ties=False,
                 reinforcement_prob=0.5, reinforcement_norm="fan_in", group_size=15,
                 group_schedule="validation", group_patience=5, validation_fraction=0.1,
                 weight_clip=None, init_std=64.0, odd_init=True, prototypes="bef",
                 bef_alpha=1.0, bef_max_iter=None, binarize_input="thermometer",
                 n_thermometer_bits=20, thermometer="quantile", batch_size="auto",
                 max_iter=50, shuffle=True, random_state=None, verbose=0, warm_start=False,
                 early_stopping=False, n_iter_no_change=None, tol=1e-4, n_jobs=None):
        self.state_size = state_size
        self.output_size = output_size
        self.expansion_size = expansion_size
        self.backward_horizon = backward_horizon
        self.rnn_mask = rnn_mask
        self.initial_state = initial_state
        self.window_length = window_length
        self.robustness = robustness
        self.gate_threshold = gate_threshold
        self.strict_ties = strict_ties
        self.reinforcement_prob = reinforcement_prob
        self.reinforcement_norm = reinforcement_norm
        self.group_size = group_size
        self.group_schedule = group_schedule
        self.group_patience = group_patience
        self.validation_fraction = validation_fraction
        self.weight_clip = weight_clip
        self.init_std = init_std
        self.odd_init = odd_init
        self.prototypes = prototypes
        self.bef_alpha = bef_alpha
        self.bef_max_iter = bef_max_iter
        self.binarize_input = binarize_input
        self.n_thermometer_bits = n_thermometer_bits
        self.thermometer = thermometer
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.early_stopping = early_stopping
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.n_jobs = n_jobs

    # ------------------------------------------------------------ parameters
    @property
    def hidden_layer_sizes(self):
        """Widths of the two trained layers, ``(state_size, output_size)``
        (read-only): what the shared BEP machinery -- parameter checks, group
        sizes, weight initialisation -- calls the hidden layers."""
        check_int("state_size", self.state_size, min_value=1)
        check_int("output_size", self.output_size, min_value=1)
        return (self.state_size, self.output_size)

    def _validate_rule_params(self):
        check_int("expansion_size", self.expansion_size, min_value=1, allow_none=True)
        check_int("backward_horizon", self.backward_horizon, min_value=1, allow_none=True)
        check_choice("rnn_mask", self.rnn_mask, ("sum", "last", "any"))
        check_choice("initial_state", self.initial_state, ("ones", "random"))
        check_int("window_length", self.window_length, min_value=1, allow_none=True)
        super()._validate_rule_params()

    def _auto_batch_size_for(self, n_samples):
        return max(1, math.ceil(n_samples / 10))  # ten batches per epoch (paper, UCR)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags

    def _layer_fan_ins(self, n_input_bits):
        # the recurrent layer reads [a_t, s_{t-1}] (see _init_model)
        return (n_input_bits + self.state_size, self.state_size)

    def _input_row_bytes(self, n_input_bits):
        # the memory guard's size of one encoded sequence: a packed row per step
        return self.n_timepoints_ * super()._input_row_bytes(n_input_bits)

    # ------------------------------------------------------------ input layouts
    def _fit(self, X, y):
        self._validate_params()
        warm = self.warm_start and hasattr(self, "classes_")
        return super()._fit(self._flatten_series(X, reset=not warm), y)

    def _partial_fit(self, X, y, classes):
        self._validate_params()
        return super()._partial_fit(self._flatten_series(X, reset=not hasattr(self, "classes_")),
                                    y, classes)

    def _scores(self, X):
        check_is_fitted(self)
        return super()._scores(self._flatten_series(X, reset=False))

    def _flatten_series(self, X, reset):
        """Series in any accepted layout -> the 2-D channel-major layout
        (n, n_channels * n_timepoints) the base class validates; 2-D input
        passes through (univariate, possibly a DataFrame).  Sets
        ``n_channels_`` when ``reset``."""
        if sp.issparse(X):
            return X  # validate_data refuses it with its usual message
        window = self.window_length
        if isinstance(X, (list, tuple)):
            if len(X) == 0:
                raise ValueError("X is an empty list: no series to fit or predict")
            if np.ndim(X[0]) == 2:
                return self._stack_series(X, reset)
        if not hasattr(X, "ndim"):  # nested lists, array-likes
            try:
                X = np.asarray(X)
            except ValueError as exc:  # ragged nesting
                raise ValueError(
                    "X must be 2-D (n_cases, n_timepoints), 3-D (n_cases, n_channels, "
                    "n_timepoints) or a list of 2-D (n_channels, n_timepoints) arrays") from exc
        ndim = X.ndim
        if ndim == 3:
            X = np.asarray(X)
            n, c, t = X.shape
            self._check_channels(c, reset, "a 3-D array")
            if window is None:
                window = t if reset else self.n_timepoints_
                if t != window:
                    raise ValueError(
                        f"X has {t} time points, but {type(self).__name__} was fitted on "
                        f"{window}; set window_length to read the last steps of longer series")
            elif t < window:
                raise ValueError(f"X has {t} time points, fewer than window_length={window}")
            return X[:, :, t - window:].reshape(n, c * window)
        if ndim == 2:
            self._check_channels(1, reset, "a 2-D array (univariate series)")
            if window is not None:
                t = X.shape[1]
                if t < window:
                    raise ValueError(
                        f"X has {t} time points, fewer than window_length={window}")
                X = X.iloc[:, t - window:] if hasattr(X, "iloc") else np.asarray(X)[:, t - window:]
            return X
        if ndim > 3:
            raise ValueError(
                "X must be 2-D (n_cases, n_timepoints), 3-D (n_cases, n_channels, "
                f"n_timepoints) or a list of 2-D (n_channels, n_timepoints) arrays; got a "
                f"{ndim}-D array")
        return X  # 0-D / 1-D: validate_data raises its usual "Expected 2D array"

    def _check_channels(self, n_channels, reset, what):
        if reset:
            self.n_channels_ = n_channels
        elif n_channels != self.n_channels_:
            raise ValueError(
                f"X is {what} with {n_channels} channel(s), but {type(self).__name__} was "
                f"fitted on {self.n_channels_}; pass (n_cases, {self.n_channels_}, "
                "n_timepoints) series")

    def _stack_series(self, X, reset):
        """A list of (n_channels, n_timepoints_i) series -> their last windows,
        flattened; shorter series are front-padded with their first step."""
        series = [np.asarray(s) for s in X]
        for i, s in enumerate(series):
            if s.ndim != 2:
                raise ValueError(f"series {i} of X is {s.ndim}-D; every series must be 2-D "
                                 "(n_channels, n_timepoints)")
            if s.shape[1] == 0:
                raise ValueError(f"series {i} of X has no time points")
            if s.shape[0] != series[0].shape[0]:
                raise ValueError(f"series {i} of X has {s.shape[0]} channels, series 0 has "
                                 f"{series[0].shape[0]}")
        c = series[0].shape[0]
        self._check_channels(c, reset, "a list of series")
        window = self.window_length
        if window is None:
            window = min(s.shape[1] for s in series) if reset else self.n_timepoints_
        out = [s[:, -window:] if s.shape[1] >= window
               else np.concatenate([np.repeat(s[:, :1], window - s.shape[1], axis=1), s],
                                   axis=1)
               for s in series]
        return np.stack(out).reshape(len(out), c * window)

    def _make_input_encoder(self, X):
        """The fixed input layer (binarisation per channel + expansion); X is
        the validated flattened training data."""
        self.n_timepoints_ = X.shape[1] // self.n_channels_
        steps = X.reshape(-1, self.n_channels_, self.n_timepoints_).transpose(0, 2, 1)
        binarizer = make_input_binarizer(
            self.binarize_input, self.n_channels_, self.n_thermometer_bits, self.thermometer,
            X=np.ascontiguousarray(steps).reshape(-1, self.n_channels_))
        return _SeriesEncoder(binarizer, self.n_channels_, self.n_timepoints_,
                              self.expansion_size, seed=[self._seed, 3])

    # ------------------------------------------------------------ model
    def _init_model(self, n_input_bits, n_classes, rng):
        # one recurrent layer over [a_t, s_{t-1}]: fan-in Kx + Ks
        super()._init_model(n_input_bits + self.state_size, n_classes, rng)
        if self.initial_state == "ones":
            self.initial_state_ = np.ones(self.state_size, dtype=np.int8)
        else:
            self.initial_state_ = rng.choice(np.array([-1, 1], dtype=np.int8),
                                             size=self.state_size)
        self.expansion_ = self.binarizer_.expansion_

    def _unroll(self, A, n_in, n_state, step):
        """Run the recurrence over packed inputs A (n, T, words(n_in)) from
        ``s_0``: ``step(t, u_t)`` maps the packed ``[a_t, s_{t-1}]`` to the
        packed s_t.  Returns s_T."""
        s = np.repeat(pack_pm1_rows(self.initial_state_[None, :]), A.shape[0], axis=0)
        for t in range(A.shape[1]):
            s = step(t, concat_bits(np.ascontiguousarray(A[:, t]), n_in, s, n_state))
        return s

    def _scores_from_packed(self, A, n_threads):
        (n_state, n_rec), (n_out, _) = (h.shape for h in self.hidden_weights_)
        w_rec, w_out = self.packed_weights_
        s = self._unroll(A, n_rec - n_state, n_state,
                         lambda t, u: _kernels.bgemm_sign(u, w_rec, n_rec, n_threads))
        s_y = _kernels.bgemm_sign(s, w_out, n_state, n_threads)
        return class_scores(s_y, self._inference_rows(), n_out, n_threads)

    # ------------------------------------------------------------ training
    def _batch_updates(self, state, A, y, n_threads):
        """BEP-TT on a batch of sequences, every desired state from the
        pre-update weights: forward through time, trigger, desired states
        back through the readout and the state columns (BEPClassifier's
        ``_desired_activations`` on the network unrolled over the horizon),
        the shared per-sequence selection, and the CP steps."""
        rec, readout = state.layers
        n, T = A.shape[0], A.shape[1]
        U = np.empty((T, n, n_words(rec.n_in)), dtype=np.uint64)   # [a_t, s_{t-1}]
        Z = np.empty((T, n, rec.n_out), dtype=np.int32)             # z_t

        def step(t, u):
            U[t] = u
            Z[t] = rec.forward(u, n_threads)
            return _kernels.pack_sign_int32(Z[t])

        s_last = self._unroll(A, rec.n_in - rec.n_out, rec.n_out, step)
        z_y = readout.forward(s_last, n_threads)
        scores = class_scores(_kernels.pack_sign_int32(z_y), state.prototype_rows,
                              readout.n_out, n_threads)
        pred, trigger = trigger_mask(scores, y, self.robustness * readout.n_out)
        n_correct = int(np.count_nonzero(pred == y))
        if not trigger.any():
            return BatchUpdates(n_correct, [None, None])
        idx = np.flatnonzero(trigger)
        k = T if self.backward_horizon is None else min(self.backward_horizon, T)
        n_x = rec.n_in - rec.n_out
        # seen from the step below, the recurrent layer back-projects through
        # the state columns of [W_xs W_ss] only, with the gate of its full
        # fan-in Kx + Ks
        link = BinaryLayer.backward_view(rec.packed_t[n_x:], rec.n_in, rec.n_out)
        unrolled = _BEPState([link] * k + [readout], state.prototype_rows)
        zs = [Z[t][idx] for t in range(T - k, T)]
        targets = self._desired_activations(unrolled, zs + [z_y[idx]], y[idx], n_threads)
        top, _ = targets[-1]
        readout_step = CPStep(readout.select(z_y[idx], top, self.group_sizes_[1],
                                             zero_is_wrong=True, n_threads=n_threads),
                              top, s_last[idx])
        inputs = [U[t][idx] for t in range(T - k, T)]
        return BatchUpdates(n_correct, [self._recurrent_step(rec, targets[:-1], zs, inputs,
                                                             n_threads),
                                        readout_step])

    def _recurrent_step(self, rec, targets, zs, inputs, n_threads):
        """The CP step of ``[W_xs W_ss]``: one selection per sequence (rows of
        ``zs``) over the horizon's steps, replicated over the steps where the
        sequence still carries a signal, so that the kernel sums
        ``2 s*_{t,j} [a_t, s_{t-1}]`` over time and batch and saturates once."""
        m, k = len(zs[0]), len(zs)
        live = np.ones((m, k), dtype=bool)  # steps below a closed gate carry nothing
        for l, (_, alive) in enumerate(targets):
            if alive is not None:
                live[:, l] = alive.astype(bool)
        g = self.group_sizes_[0]
        active = np.ascontiguousarray(live[:, -1]).view(np.uint8)
        if self.rnn_mask == "last":
            selected = rec.select(zs[-1], targets[-1][0], g, active=active,
                                  zero_is_wrong=True, n_threads=n_threads)
        else:
            stability = self._mask_stability(targets, zs, live, rec.n_out)
            ones = pack_pm1_rows(np.ones((m, rec.n_out), dtype=np.int8))
            # wrong = negative stability, winner = smallest |stability| per group
            selected = rec.select(stability, ones, g, active=active, zero_is_wrong=True,
                                  n_threads=n_threads)
        rows = [np.flatnonzero(live[:, l]) for l in range(k)]
        return CPStep(np.concatenate([selected[r] for r in rows]),
                      np.concatenate([t[r] for (t, _), r in zip(targets, rows)]),
                      np.concatenate([u[r] for u, r in zip(inputs, rows)])).compact()

    def _mask_stability(self, targets, zs, live, width):
        """int32 per (sequence, neuron) whose negative entries are the wrong
        neurons and whose |value| orders them (smallest = easiest):
        'sum': ``sum_t s*_{t,j} z_{t,j}``; 'any': ``-(1 + min |z_{t,j}|)``
        over the wrong steps, +1 if none."""
        m = len(zs[0])
        if self.rnn_mask == "sum":  # |sum| <= T (Kx + Ks): int32 is exact
            total = np.zeros((m, width), dtype=np.int32)
            for (t, _), z, ok in zip(targets, zs, live.T):
                term = _kernels.unpack_pm1(t, width) * z
                if not ok.all():
                    term[~ok] = 0
                total += term
            return total
        big = np.iinfo(np.int32).max
        easiest = np.full((m, width), big, dtype=np.int64)
        for (t, _), z, ok in zip(targets, zs, live.T):
            wrong = ((z >= 0) != (_kernels.unpack_pm1(t, width) > 0)) & ok[:, None]
            easiest = np.minimum(easiest, np.where(wrong, np.abs(z), big))
        return np.where(easiest < big, -(easiest + 1), 1).astype(np.int32)
