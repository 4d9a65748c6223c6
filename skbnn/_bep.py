"""BEPClassifier: Binary Error Propagation.

Colombo, Pittorino, Zambon, Baldassi, Roveri & Alippi, "BEP: A Binary Error
Propagation Algorithm for Binary Neural Networks Training", arXiv 2512.04189
(ICLR 2026): the feed-forward network (the recurrent BEP-TT variant is
:class:`~skbnn.BEPRecurrentClassifier`).
"""
import math
from dataclasses import dataclass

import numpy as np

from . import _kernels
from ._base import (BaseBinaryClassifier, check_bool, check_choice, check_int,
                    check_layer_sizes, check_real, resolve_group_sizes)
from ._cpr import CPRTrainingMixin
from ._engine import (BatchUpdates, CPStep, class_scores, pack_pm1_rows, sign_activations,
                      step_inputs, take_rows)


def next_divisor(width, group_size):
    """The smallest divisor of ``width`` larger than ``group_size`` (or
    ``width`` itself once reached): one step of the group-size schedule."""
    for d in range(group_size + 1, width + 1):
        if width % d == 0:
            return d
    return width


def bef_prototypes(n_classes, width, alpha, n_iter, rng):
    """Binary equiangular frame: ``n_classes`` +/-1 rows of length ``width``
    from random rows improved by ``n_iter`` greedy single-bit flips that lower
    ``sum_{i<j} <p_i, p_j> + alpha * Var_{i<j} <p_i, p_j>`` (paper App. C)."""
    P = rng.choice(np.array([-1, 1], dtype=np.int8), size=(n_classes, width))
    rows = rng.integers(0, n_classes, size=n_iter, dtype=np.int32)
    cols = rng.integers(0, width, size=n_iter, dtype=np.int32)
    _kernels.bef_flips(P, rows, cols, float(alpha))
    return P


def trigger_mask(scores, y, threshold):
    """BEP's trigger (paper Eq. 1): correct logit minus the best other logit
    below ``threshold``; also returns the predictions (ties -> lowest index)."""
    n = len(y)
    rows = np.arange(n)
    correct = scores[rows, y].astype(np.int64)
    others = scores.astype(np.int64)
    others[rows, y] = np.iinfo(np.int64).min
    return np.argmax(scores, axis=1), correct - others.max(axis=1) < threshold


@dataclass
class _BEPState:
    """Transient training state rebuilt at the start of every fit call."""

    layers: list        # BinaryLayer per hidden layer, with packed transposes
    prototype_rows: np.ndarray  # packed prototypes (C x words(K_L))

    def forward_view(self):
        """What computing a batch's updates reads: no hidden weights."""
        return _BEPState([layer.forward_view() for layer in self.layers], self.prototype_rows)


class BEPClassifier(CPRTrainingMixin, BaseBinaryClassifier):
    """Binary MLP trained by Binary Error Propagation (BEP).

    Every layer holds int16 hidden weights ``H_l``; the forward pass uses
    only ``W_l = sign(H_l)`` and ``a_l = sign(W_l a_{l-1})`` (XNOR/popcount,
    sign(0) = +1).  The logits are ``P a_L`` with fixed +/-1 class prototypes
    ``P`` (a binary equiangular frame).  A sample triggers learning when its
    correct logit beats the best other one by less than ``robustness * K_L``.
    Its binary error signal starts at the desired last activation
    ``a*_L = P[y]`` and travels backward through the visible weights:
    ``a*_l = sign(W_{l+1}^T (g_{l+1} * a*_{l+1}))`` where the gate
    ``g_{l+1}`` passes only neurons with ``|z_{l+1}| <= gate_threshold *
    K_l`` (the binary analogue of the derivative of a saturating
    activation).  Every layer then updates, per triggering sample and per
    group of ``group_size`` neurons, the wrong neuron (``a_j != a*_j``) with
    the smallest ``|z_j|`` by ``H[j] += 2 a*_j a_{l-1}`` (summed over the
    batch from the pre-update weights, saturated), and reinforces every
    hidden weight ``h += 2 sign(h)`` with probability ``reinforcement_prob *
    sqrt(E_prev) * sqrt(2 / (pi K))``.  The group sizes grow to the next
    divisor of the width when the monitored error stops improving.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(525, 525)
        Widths ``K_l`` of the trainable binary layers (the paper's widths
        35, 75, 135, 255, 525 are odd, so hidden pre-activations never tie).
    robustness : float, default=0.5
        Trigger margin ``r``: a sample updates the network when its correct
        logit minus the best other logit is below ``r * K_L``.
    gate_threshold : float, default=0.25
        Gate ``nu``: the error signal passes backward only through neurons
        with ``|z| <= nu * fan_in``; 1.0 disables gating.  The default is
        the value with the smallest mean loss over the validation tuning of
        all 21 Fig. 2 configurations (benchmarks/results/bep_tuning.md; the
        paper's recurrent value 0.05 starves narrow layers of signal).
    strict_ties : bool, default=True
        True keeps the letter of the paper: a tie in the gated
        back-projection ``W^T (g * a*)`` gives +1 (better on the validation
        tuning of both data sets).  False: such a coordinate carries no
        signal (any value is optimal at a tie, paper Prop. 1), so that
        neuron's target is the sign of the stability it is ranked by (its
        activation, or ``H a`` with ``selection='hidden'``): it is never
        selected, and its gate stays closed for the layer below.
    selection : {'visible', 'hidden'}, default='visible'
        Which stability picks a group's winner (paper §3.3 words it two
        ways).  'visible': wrong means ``a_j != a*_j`` and the winner has
        the smallest visible ``|z_j|``, ``z = sign(H) a`` (the local-rule
        code's "easiest to correct").  'hidden': the same test and ranking
        on the exact hidden field ``H a`` (the paper's "stability a* H"
        wording, read as a re-implementation does); it costs an int16
        product per layer and batch, and data-parallel workers then receive
        the hidden weights.  Helps deep or narrow networks on the
        validation studies, hurts shallow narrow ones (benchmarks page).
    reinforcement_prob : float, default=0.5
        Base reinforcement probability ``p_r``.
    reinforcement_norm : {'fan_in', 'width'}, default='fan_in'
        ``K`` in ``sqrt(2 / (pi K))``: the fan-in (CP+R theory and the
        local-rule code) or the layer width (the paper's literal ``K_l``).
    group_size : int or tuple of int, default=15
        Initial neurons per group ``gamma_l``; must divide each width.
    group_schedule : {'validation', 'train'} or None, default='validation'
        What the group-size schedule monitors: the error on a stratified
        hold-out of ``validation_fraction`` (falls back to the training
        error when the data is too small for a split or in
        ``partial_fit``), the training error, or None for fixed groups.
    group_patience : int, default=5
        Epochs without improvement of the monitored error before every
        layer's group size steps to the next divisor of its width.
    validation_fraction : float, default=0.1
        Size of the hold-out used by ``group_schedule='validation'`` and
        ``early_stopping``.
    weight_clip : int or None, default=None
        Clip hidden weights to ``[-c, c]``; None keeps the int16 range with
        saturation (the paper's 16-bit hidden weights).
    init_std : float, default=64.0
        Standard deviation of the hidden-weight initialisation
        ``trunc(Normal(0, init_std**2))`` (the local-rule code's; BEP does
        not state one).
    odd_init : bool, default=True
        Make the initial hidden weights odd so they never reach 0.
    ternary_weights : bool, default=False
        Weights ``sign(H)`` with ``sign(0) = 0`` (the reading of the group's
        reference code) instead of the paper's ``sign(0) = +1``: hidden
        weights at 0 drop out of the forward products and of the
        back-projection, and reinforcement keeps them at 0.  Requires
        ``odd_init=False``; activations and desired activations stay +/-1;
        forward and backward products run over two bit planes.  Worth up to
        a few points in narrow networks (benchmarks page, ternary study).
    ternary_activations : bool, default=False
        Hidden activations ``sign(z)`` with ``sign(0) = 0`` (the reference
        code's ``cupy.sign``) instead of the paper's ``sign(0) = +1``: a
        neuron at ``z = 0`` outputs 0, drops out of the next layer's product,
        the logits and the update of the layer above, and counts as wrong
        whatever its target (``|z| = 0``, the easiest).  Frequent in narrow
        layers with ternary weights; every product then runs over two
        activation planes.
    prototypes : {'bef', 'random'}, default='bef'
        Class prototypes: a binary equiangular frame (the paper's choice)
        or plain random +/-1 rows.
    bef_alpha : float, default=1.0
        Weight of the variance term of the frame objective.
    bef_max_iter : int or None, default=None
        Greedy bit-flip proposals of the frame; None = ``100 * C * K_L``.
    binarize_input : {'auto', 'median', 'global_median', 'thermometer'}, int or None, \
            default='auto'
        How ``X`` becomes +/-1 bits (thresholds learned in fit): 'auto' is
        a quantile thermometer with ``min(32, max(1, ceil(256/n_features)))``
        bits per feature (1 bit = per-feature median, the paper's code for
        images); 'median' per feature; 'global_median' one median for all
        features (the Fashion-MNIST recipe); 'thermometer' with
        ``n_thermometer_bits``; an int b for a b-bit thermometer; None for
        data that is already +/-1 or 0/1 (refuses anything else).  'auto'
        uses data that already holds only +/-1 or only 0/1 as it is.
    n_thermometer_bits : int, default=32
        Bits per feature of ``binarize_input='thermometer'``.
    thermometer : {'quantile', 'uniform'}, default='quantile'
        Threshold placement of thermometer codes: distributive (quantiles,
        the paper) or evenly spaced between the minimum and maximum.
    batch_size : int or 'auto', default='auto'
        Mini-batch size ('auto' = 100).
    max_iter : int, default=50
        Epochs of ``fit``.
    shuffle : bool, default=True
        Reshuffle the training data every epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, prototypes, the validation split, shuffling
        and reinforcement.
    verbose : int, default=0
        Print one line per epoch (epoch, training error, validation score,
        seconds).
    warm_start : bool, default=False
        Continue from the previous fit instead of starting again.
    early_stopping : bool, default=False
        Track the validation accuracy on the hold-out, stop after
        ``n_iter_no_change`` epochs without an improvement of ``tol`` (if
        set) and restore the best weights.
    n_iter_no_change : int or None, default=None
        Epochs without improvement before stopping; None trains all
        ``max_iter`` epochs.
    tol : float, default=1e-4
        Minimum improvement for ``n_iter_no_change``.
    n_jobs : int or None, default=None
        Threads of the kernels (None = 1, -1 = all available).  Results do
        not depend on it.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    n_features_in_ : int
        Number of features seen in fit.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Feature names, when X is a DataFrame with string column names.
    hidden_weights_ : list of ndarray of int16, shape (K_l, K_{l-1})
        Hidden weights, one row per neuron.
    packed_weights_ : list of ndarray of uint64, shape (K_l, ceil(K_{l-1}/64))
        Packed ``sign(hidden_weights_)`` (bit 1 = +1): the inference weights.
        The packed transposes of the backward pass are scratch state rebuilt
        at the start of every fit call.
    prototypes_ : ndarray of int8, shape (n_classes, K_L)
        Fixed +/-1 class prototypes; logits are ``prototypes_ @ a_L``.
    group_sizes_ : tuple of int
        Current group size of each layer (the schedule moves it).
    binarizer_ : transformer
        The fitted input binariser.
    binarizer_thresholds_ : ndarray of shape (``n_features_in_``, bits_per_feature)
        Its thresholds.
    temperature_ : float
        Logit scale of ``predict_proba``: ``K_L / 8``.
    n_iter_ : int
        Epochs run (``partial_fit`` calls count one each).
    t_ : int
        Training samples seen.
    loss_curve_ : list of float
        On-the-fly training error of every epoch (the last 1000 epochs:
        streaming with partial_fit keeps bounded memory).
    validation_scores_ : list of float
        Validation accuracy per epoch (when a hold-out is used).
    best_validation_score_ : float
        Best validation accuracy (with ``early_stopping``).
    best_loss_ : float or None
        Lowest training error (None with ``early_stopping``).

    Notes
    -----
    Readings of the details the paper leaves open or words two ways, all
    defaults:

    - A neuron is wrong when its activation differs from its target
      (``a_j != a*_j``, so ``z = 0`` with target -1 counts, with ``|z| = 0``
      the easiest), and the winner of a group has the smallest visible
      ``|z|``, "easiest to correct" (paper §3.3; the local-rule code
      requires ``a*_j z_j < 0`` strictly); ties go to the lowest index.
      ``selection='hidden'`` applies the same test and ranking to ``H a``.
    - Reinforcement uses the fan-in, as CP+R theory and the local-rule code
      do (the paper writes the width ``K_l``); ``E_prev`` (undefined in the
      paper) is the previous epoch's on-the-fly training error, 1 before
      the first epoch (in ``partial_fit`` the previous call's).  It runs
      once per mini-batch and layer when the batch has a triggering sample.
    - Every desired activation is computed from the pre-update weights
      before any layer changes (the paper says "pre-update" only for the
      update, Eq. 9).  Back-projection ties give +1 (paper §3.1); a sample
      whose gate closes every neuron of a layer sends no signal below it:
      the lower layers skip it (the paper is silent; the letter of Eq. 7
      would send all +1).  The gate only filters the backward signal
      (Eqs. 5-7), not which neurons update.
    - Group schedule: the monitored error (validation when a hold-out
      exists, else training) must improve within ``group_patience`` epochs
      or every layer's group size steps to its next divisor together
      (patience, metric and layer coupling are not given in the paper).
      With the default ``validation_fraction=0.1`` the network trains on
      90 % of the data passed to ``fit``.
    - The triggering margin is ``correct - best other < r * K_L`` (paper
      Eq. 1, real-valued threshold).
    - Prototypes: a greedy bit-flip binary equiangular frame with
      ``alpha = 1`` and ``100 * C * K_L`` proposals (not given in the
      paper).  Hidden weights start as the local-rule code's
      ``trunc(Normal(0, 64**2))``, made odd (the paper gives no
      initialisation).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.model_selection import train_test_split
    >>> from skbnn import BEPClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> X_tr, X_te, y_tr, y_te = train_test_split(X, y, random_state=0)
    >>> clf = BEPClassifier(max_iter=10, random_state=0).fit(X_tr, y_tr)
    >>> clf.score(X_te, y_te) > 0.85
    True
    """

    _model_attributes = ("hidden_weights_", "packed_weights_", "group_sizes_")

    def __init__(self, hidden_layer_sizes=(525, 525), robustness=0.5, gate_threshold=0.25,
                 strict_ties=True, selection="visible", reinforcement_prob=0.5,
                 reinforcement_norm="fan_in", group_size=15,
                 group_schedule="validation", group_patience=5, validation_fraction=0.1,
                 weight_clip=None, init_std=64.0, odd_init=True,
                 ternary_weights=False, ternary_activations=False, prototypes="bef",
                 bef_alpha=1.0, bef_max_iter=None, binarize_input="auto",
                 n_thermometer_bits=32, thermometer="quantile", batch_size="auto", max_iter=50,
                 shuffle=True, random_state=None, verbose=0, warm_start=False,
                 early_stopping=False, n_iter_no_change=None, tol=1e-4, n_jobs=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.robustness = robustness
        self.gate_threshold = gate_threshold
        self.strict_ties = strict_ties
        self.selection = selection
        self.reinforcement_prob = reinforcement_prob
        self.reinforcement_norm = reinforcement_norm
        self.group_size = group_size
        self.group_schedule = group_schedule
        self.group_patience = group_patience
        self.validation_fraction = validation_fraction
        self.weight_clip = weight_clip
        self.init_std = init_std
        self.odd_init = odd_init
        self.ternary_weights = ternary_weights
        self.ternary_activations = ternary_activations
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
    def _validate_rule_params(self):
        widths = check_layer_sizes(self.hidden_layer_sizes)
        resolve_group_sizes(self.group_size, widths)
        check_real("robustness", self.robustness, 0.0)
        check_real("gate_threshold", self.gate_threshold, 0.0, 1.0)
        check_bool("strict_ties", self.strict_ties)
        check_choice("selection", self._selection, ("visible", "hidden"))
        check_real("reinforcement_prob", self.reinforcement_prob, 0.0)
        check_choice("reinforcement_norm", self.reinforcement_norm, ("fan_in", "width"))
        check_choice("group_schedule", self.group_schedule, ("validation", "train", None))
        check_int("group_patience", self.group_patience, min_value=1)
        self._validate_hidden_weight_params()
        check_choice("prototypes", self.prototypes, ("bef", "random"))
        check_real("bef_alpha", self.bef_alpha, 0.0)
        check_int("bef_max_iter", self.bef_max_iter, min_value=0, allow_none=True)
        check_choice("thermometer", self.thermometer, ("quantile", "uniform"))

    @property
    def _selection(self):
        """The winner's stability (estimators without a ``selection``
        parameter, the recurrent one, use the visible reading)."""
        return getattr(self, "selection", "visible")

    def _uses_validation_split(self):
        return self.early_stopping or self.group_schedule == "validation"

    # ------------------------------------------------------------ model
    def _init_model(self, n_input_bits, n_classes, rng):
        widths = check_layer_sizes(self.hidden_layer_sizes)
        self.group_sizes_ = resolve_group_sizes(self.group_size, widths)
        fan_ins = (n_input_bits,) + widths[:-1]
        self.hidden_weights_ = [self._new_hidden_weights(k, n, rng)
                                for k, n in zip(widths, fan_ins)]
        self.packed_weights_ = [_kernels.pack_sign_int16(h) for h in self.hidden_weights_]
        if self.prototypes == "bef":
            n_iter = (100 * n_classes * widths[-1] if self.bef_max_iter is None
                      else self.bef_max_iter)
            self.prototypes_ = bef_prototypes(n_classes, widths[-1], self.bef_alpha, n_iter,
                                              rng)
        else:
            self.prototypes_ = rng.choice(np.array([-1, 1], dtype=np.int8),
                                          size=(n_classes, widths[-1]))
        self.temperature_ = widths[-1] / 8.0
        self._schedule_best = math.inf
        self._schedule_wait = 0

    def _training_state(self):
        layers = self._engine_layers(with_transpose=True)
        fan_in = max(layer.n_in for layer in layers)
        if self._selection == "hidden" and fan_in > _kernels.MAX_FIELD_FAN_IN:
            raise ValueError(
                f"selection='hidden' needs fan-ins of at most {_kernels.MAX_FIELD_FAN_IN} "
                f"(exact int32 hidden fields); this network has {fan_in}: use "
                f"selection='visible' or fewer input bits")
        return _BEPState(layers=layers, prototype_rows=self._inference_rows())

    def _inference_rows(self):
        return pack_pm1_rows(self.prototypes_)

    # ------------------------------------------------------------ training
    # a batch = _batch_updates (from the pre-update weights) + _apply_updates;
    # CPRTrainingMixin._train_batch runs them, skbnn.distributed shards the first
    def _batch_updates(self, state, A, y, n_threads):
        """The batch's CP step of every layer for its triggering samples
        (all None when no sample triggers), every desired activation from
        the pre-update weights, as in backpropagation."""
        layers, n_layers = state.layers, len(state.layers)
        zero_act = self._ternary_activations
        # forward, keeping every layer's input and pre-activation
        inputs, zs, a = [], [], A
        for layer in layers:
            z = layer.forward(a, n_threads)
            inputs.append(a)
            zs.append(z)
            a = sign_activations(z, zero_act, n_threads)
        k_last = layers[-1].n_out
        scores = class_scores(a, state.prototype_rows, k_last, n_threads)
        pred, trigger = trigger_mask(scores, y, self.robustness * k_last)
        n_correct = int(np.count_nonzero(pred == y))
        if not trigger.any():
            return BatchUpdates(n_correct, [None] * n_layers)
        idx = np.flatnonzero(trigger)
        zs = [z[idx] for z in zs]
        inputs = [take_rows(a, idx) for a in inputs]
        # the stability a group's winner is ranked by (``selection``); a neuron
        # whose activation is 0 ranks first (|field| = 0)
        fields = zs
        if self._selection == "hidden":
            fields = [layer.hidden_field(a, n_threads) for layer, a in zip(layers, inputs)]
            if zero_act:  # fresh arrays: zeroed in place
                for z, f in zip(zs, fields):
                    f[z == 0] = 0
        ties = [None] * n_layers
        targets = self._desired_activations(state, zs, y[idx], n_threads, fields, ties)
        steps = []
        for l, layer in enumerate(layers):
            target, alive = targets[l]
            pick = target
            if zero_act:  # an activation at 0 is wrong whatever its target
                zero = zs[l] == 0 if ties[l] is None else (zs[l] == 0) & ~ties[l]
                if zero.any():  # select against -1 there (a 0 field reads as +1)
                    pick = target & ~_kernels.pack_binary(zero.view(np.uint8), n_threads)[0]
            selected = layer.select(fields[l], pick, self.group_sizes_[l],
                                    active=alive, zero_is_wrong=True, n_threads=n_threads)
            steps.append(CPStep(selected, target, *step_inputs(inputs[l])))
        return BatchUpdates(n_correct, steps)

    def _worker_copy(self, state):
        # hidden selection ranks by H a: the workers need the hidden weights
        replica, view = super()._worker_copy(state)
        return replica, (state if self._selection == "hidden" else view)

    def _apply_updates(self, state, updates, n_threads):
        """CP step then reinforcement of every layer (stream: batch and layer)
        when the batch had a triggering sample."""
        fan_in = self.reinforcement_norm == "fan_in"
        norms = [layer.n_in if fan_in else layer.n_out for layer in state.layers]
        self._apply_layer_steps(state.layers, updates.steps, norms, n_threads)

    def _desired_activations(self, state, zs, y, n_threads, fields=None, ties=None):
        """Packed ``a*_l`` of every layer for the triggering samples, from the
        pre-update weights, with the per-sample flags of who still carries a
        signal (None = everyone).  ``zs`` open the gates; a tie that carries
        no signal (``strict_ties=False``) takes the sign of ``fields`` (the
        stabilities the selection ranks by; default ``zs``), so it is never
        selected; ``ties`` (a list, optional) receives each layer's tie mask."""
        fields = zs if fields is None else fields
        layers = state.layers
        target = state.prototype_rows[y]
        alive = tie = None
        out = [None] * len(layers)
        out[-1] = (target, alive)
        for l in range(len(layers) - 2, -1, -1):
            upper = layers[l + 1]
            open_ = np.abs(zs[l + 1]) <= self.gate_threshold * upper.n_in
            if tie is not None:
                open_ &= ~tie
            gate, _ = _kernels.pack_binary(open_.view(np.uint8), n_threads)
            if self.strict_ties:
                target = upper.back_project_sign(target, gate, n_threads)
            else:
                v = upper.back_project(target, gate, n_threads)
                tie = v == 0
                if ties is not None:
                    ties[l] = tie
                want = np.where(tie, fields[l] >= 0, v > 0)
                target, _ = _kernels.pack_binary(want.view(np.uint8), n_threads)
            carries = open_.any(axis=1)
            if not carries.all():  # a closed gate sends nothing further down
                alive = carries if alive is None else alive & carries
            out[l] = (target, None if alive is None else alive.view(np.uint8))
        return out

    def _end_epoch(self, state, train_error, val_score):
        """Group-size schedule: step every layer to its next divisor when the
        monitored error has not improved for ``group_patience`` epochs."""
        if self.group_schedule is None:
            return
        use_val = self.group_schedule == "validation" and val_score is not None
        monitored = 1.0 - val_score if use_val else train_error
        if monitored < self._schedule_best:
            self._schedule_best, self._schedule_wait = monitored, 0
            return
        self._schedule_wait += 1
        if self._schedule_wait >= self.group_patience:
            widths = [layer.n_out for layer in state.layers]
            self.group_sizes_ = tuple(next_divisor(k, g)
                                      for k, g in zip(widths, self.group_sizes_))
            self._schedule_wait = 0
            if self.verbose:
                print(f"Group sizes -> {self.group_sizes_}")
