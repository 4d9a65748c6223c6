"""LocalBinaryClassifier: local binary error signals from fixed random classifiers.

Colombo, Pittorino & Roveri, "Training Multi-Layer Binary Neural Networks
With (Random) Local Binary Error Signals", arXiv 2412.00119.
"""
import math
from dataclasses import dataclass, field

import numpy as np

from . import _kernels
from ._base import (BaseBinaryClassifier, check_bool, check_layer_sizes, check_real,
                    nearest_divisor, resolve_group_sizes)
from ._cpr import CPRTrainingMixin
from ._engine import (BatchUpdates, BinaryLayer, CPStep, class_scores, pack_pm1_rows,
                      sign_activations, step_inputs)

# group sizes tuned by the paper for its widths (its Fashion-MNIST and Random
# Prototypes values)
_PAPER_GROUP_SIZES = {15: 15, 35: 35, 55: 55, 75: 75, 135: 45, 255: 85, 525: 105,
                      1035: 115, 2025: 45, 4095: 65}


def auto_group_size(width):
    """Paper value for listed widths, else the divisor of ``width`` nearest
    ``width / 5`` (ties go to the smaller divisor)."""
    if width in _PAPER_GROUP_SIZES:
        return _PAPER_GROUP_SIZES[width]
    return nearest_divisor(width, width / 5)


@dataclass
class _LocalState:
    """Transient training state rebuilt at the start of every fit call."""

    layers: list
    class_rows: list        # packed readout rows per layer (C_out x words(K))
    classifier_layers: list = field(default_factory=list)  # train_classifiers=True

    def forward_view(self):
        """What computing a batch's updates reads: no hidden weights."""
        return _LocalState([layer.forward_view() for layer in self.layers], self.class_rows)


class LocalBinaryClassifier(CPRTrainingMixin, BaseBinaryClassifier):
    """Binary MLP trained layer by layer from random local binary error signals.

    Every hidden layer ``l`` has int16 hidden weights ``H_l``; the forward
    pass uses only ``W_l = sign(H_l)`` and ``a_l = sign(W_l a_{l-1})`` with
    XNOR/popcount kernels.  Each layer owns a fixed random +/-1 classifier
    ``P_l``; a sample is "erroneous" for layer ``l`` when ``P_l^T a_l``
    classifies it wrongly or with a gap between the two best scores below
    ``floor(robustness * K_l)``.  For such a sample the desired sign of neuron
    ``j`` is ``P_l[j, y]``; in every block of ``group_size`` neurons the wrong
    neuron with the smallest ``|z|`` moves by ``H[j] += 2 P_l[j, y] a_{l-1}``
    (clipped perceptron, summed over the batch from the pre-update weights),
    then every hidden weight is reinforced ``h += 2 sign(h)`` with
    probability ``reinforcement_prob * sqrt(1 - A_prev) * sqrt(2 / (pi N_l))``.
    There is no backward pass; prediction uses the last layer's classifier.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(525, 525)
        Widths ``K_l`` of the trainable binary layers (the paper uses odd
        widths, so hidden pre-activations never tie).
    group_size : 'auto', int or tuple of int, default='auto'
        Neurons per group ``gamma_l``; one neuron per group and erroneous
        sample is updated.  'auto' uses the paper's tuned values for its
        widths (35->35, 75->75, 135->45, 255->85, 525->105, 1035->115, ...)
        and otherwise the divisor of the width nearest ``width / 5``.  Must
        divide each width.
    robustness : float, default=0.25
        Margin ``r``: threshold ``floor(r * K_l)`` on the gap between the two
        largest class scores of a layer's classifier.
    reinforcement_prob : float, default=0.5
        Base reinforcement probability ``p0``.
    weight_clip : int or None, default=None
        Clip hidden weights to ``[-c, c]``; None keeps the int16 range with
        saturation (the paper's unbounded weights).
    init_std : float, default=64.0
        Standard deviation of the hidden-weight initialisation
        ``trunc(Normal(0, init_std**2))``.
    odd_init : bool, default=True
        Make the initial hidden weights odd (``2*floor(h/2)+1``) so they
        never reach 0 (the +/-2 steps keep the parity): every weight is a
        clean +/-1 bit.
    ternary_weights : bool, default=False
        Read the weights as ``sign(H)`` with ``sign(0) = 0``, as the authors'
        reference code does: a hidden weight at exactly 0 is a pruned
        connection, and reinforcement leaves it at 0.  Needs
        ``odd_init=False`` (odd hidden weights never reach 0); activations
        stay +/-1.  Every product then costs two XNOR/popcount passes.  It
        adds capacity to narrow layers (measured in the benchmarks page),
        not to wide ones.
    ternary_activations : bool, default=False
        Hidden activations ``sign(z)`` with sign(0) = 0, as the reference
        code's ``cupy.sign``: a neuron at ``z = 0`` outputs 0, so it drops
        out of the next layer's product and of its layer's class scores,
        and it moves no weight of the layer above.  Such a neuron is not
        "wrong" (the strict ``t * z < 0``).  Activations travel as two bit
        planes, so every product with them costs two passes.  With
        ``ternary_weights`` it is the reference code's reading, which
        reproduces the paper at width 35 (benchmarks page).
    train_classifiers : bool, default=False
        The paper's "train-out" ablation: the local classifiers are trained
        too (hidden weights, clipped perceptron on the correct class when
        its score has the wrong sign).
    binarize_input : {'auto', 'median', 'global_median', 'thermometer'}, int or None, \
            default='auto'
        How ``X`` becomes +/-1 bits (thresholds learned in fit): 'auto' is
        a quantile thermometer with ``min(32, max(1, ceil(256/n_features)))``
        bits per feature (1 bit = per-feature median, the paper's code for
        images); 'median' per feature; 'global_median' one median for all
        features (the papers' Fashion-MNIST recipe); 'thermometer' with
        ``n_thermometer_bits``; an int b for a b-bit thermometer; None for
        data that is already +/-1 or 0/1 (refuses anything else).  'auto'
        uses data that already holds only +/-1 or only 0/1 as it is.
    n_thermometer_bits : int, default=32
        Bits per feature of ``binarize_input='thermometer'`` (32 as in the
        local-rule paper's tabular experiments).
    batch_size : int or 'auto', default=100
        Mini-batch size ('auto' = 100).
    max_iter : int, default=50
        Epochs of ``fit``.
    shuffle : bool, default=True
        Reshuffle the training data every epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, classifiers, shuffling and reinforcement.
    verbose : int, default=0
        Print one line per epoch (epoch, training error, validation score,
        seconds).
    warm_start : bool, default=False
        Continue from the previous fit instead of starting again.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified), track the
        validation accuracy, stop after ``n_iter_no_change`` epochs without
        an improvement of ``tol`` (if set) and restore the best weights.
    validation_fraction : float, default=0.1
        Size of the early-stopping hold-out.
    n_iter_no_change : int or None, default=None
        Epochs without improvement (validation accuracy with early
        stopping, else training error) before stopping; None trains all
        ``max_iter`` epochs, as the paper does.
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
    hidden_weights_ : list of ndarray of int16, shape (K_l, N_l)
        Hidden weights, one row per neuron.
    packed_weights_ : list of ndarray of uint64, shape (K_l, ceil(N_l/64))
        Packed ``sign(hidden_weights_)`` (bit 1 = +1): the inference weights.
    classifiers_ : list of ndarray of int8, shape (K_l, C_out)
        Local +/-1 classifiers ``P_l``; ``C_out = 1`` for binary problems
        (one +/-1 output, as the reference code), else ``n_classes``.
    group_sizes_ : tuple of int
        Group size of each layer.
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
        On-the-fly training error of every epoch (``1 - A``; the last 1000
        epochs: streaming with partial_fit keeps bounded memory).
    validation_scores_ : list of float
        Validation accuracy per epoch (with ``early_stopping``).
    best_validation_score_ : float
        Best validation accuracy (with ``early_stopping``).
    best_loss_ : float or None
        Lowest training error (None with ``early_stopping``).

    Notes
    -----
    Readings of the details the paper leaves open (the authors' reference
    code and result files settle most of them), all defaults:

    - ``group_size`` is neurons per group (K/gamma groups); ties of the
      per-group argmin go to the lowest index.
    - The margin is ``floor(r * K_l)`` on the gap between the two largest
      scores, whichever classes they are; argmax ties go to the lowest
      class index.
    - Every layer decides from its own classifier which samples it trains
      on; layer ``l+1`` sees layer ``l``'s pre-update activations.
    - Reinforcement runs once per mini-batch over all weights of a layer
      that had an erroneous sample; ``A_prev`` is the previous epoch's
      on-the-fly training accuracy of the whole network (0 before the
      first epoch; in ``partial_fit`` the previous call's).
    - sign(0) = +1 everywhere by default, so every value is one bit:
      hidden weights start odd, ``z = 0`` activates +1, classifiers are
      clean +/-1;
      ``ternary_weights`` and ``ternary_activations`` take the reference
      code's sign(0) = 0 instead.  A neuron with ``z = 0`` is never "wrong"
      (the reference's strict ``t * z < 0``).
    - Hidden weights are int16 with saturation at +/-32767 (odd, so odd
      weights stay odd).
    - Binary problems use one +/-1 output as the reference code: the
      prediction is ``classes_[1]`` when the score is positive (a zero
      score, possible only with an even last width, goes to ``classes_[0]``
      so that ``decision_function > 0`` matches ``predict``).
    - Input thresholds are learned on the data given to ``fit`` (the papers
      computed the median before splitting off their test set).
    - Reinforcement sites are drawn by geometric skips from a counter-based
      stream keyed by (seed, batch, layer, row): the same distribution as
      one Bernoulli draw per weight, and independent of the thread count.
    - ``train_classifiers=True`` updates only the correct class's row of a
      layer's classifier (a ``+2 a`` step on its hidden weights) for
      erroneous samples whose correct-class score has the wrong sign; no
      reinforcement on classifier weights.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.model_selection import train_test_split
    >>> from skbnn import LocalBinaryClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> X_tr, X_te, y_tr, y_te = train_test_split(X, y, random_state=0)
    >>> clf = LocalBinaryClassifier(max_iter=10, random_state=0).fit(X_tr, y_tr)
    >>> clf.score(X_te, y_te) > 0.85
    True
    """

    _model_attributes = ("hidden_weights_", "packed_weights_", "classifiers_",
                         "classifier_hidden_weights_")

    def __init__(self, hidden_layer_sizes=(525, 525), group_size="auto", robustness=0.25,
                 reinforcement_prob=0.5, weight_clip=None, init_std=64.0, odd_init=True,
                 ternary_weights=False, ternary_activations=False, train_classifiers=False,
                 binarize_input="auto",
                 n_thermometer_bits=32, batch_size=100, max_iter=50, shuffle=True,
                 random_state=None, verbose=0,
                 warm_start=False, early_stopping=False, validation_fraction=0.1,
                 n_iter_no_change=None, tol=1e-4, n_jobs=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.group_size = group_size
        self.robustness = robustness
        self.reinforcement_prob = reinforcement_prob
        self.weight_clip = weight_clip
        self.init_std = init_std
        self.odd_init = odd_init
        self.ternary_weights = ternary_weights
        self.ternary_activations = ternary_activations
        self.train_classifiers = train_classifiers
        self.binarize_input = binarize_input
        self.n_thermometer_bits = n_thermometer_bits
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.n_jobs = n_jobs

    # ------------------------------------------------------------ parameters
    def _validate_rule_params(self):
        widths = check_layer_sizes(self.hidden_layer_sizes)
        resolve_group_sizes(self.group_size, widths, auto_group_size)
        check_real("robustness", self.robustness, 0.0)
        check_real("reinforcement_prob", self.reinforcement_prob, 0.0)
        self._validate_hidden_weight_params()
        check_bool("train_classifiers", self.train_classifiers)

    # ------------------------------------------------------------ model
    def _init_model(self, n_input_bits, n_classes, rng):
        widths = check_layer_sizes(self.hidden_layer_sizes)
        self.group_sizes_ = resolve_group_sizes(self.group_size, widths, auto_group_size)
        n_out = 1 if n_classes == 2 else n_classes
        fan_ins = (n_input_bits,) + widths[:-1]
        self.hidden_weights_, self.classifiers_ = [], []
        self.classifier_hidden_weights_ = [] if self.train_classifiers else None
        for k, n in zip(widths, fan_ins):
            self.hidden_weights_.append(self._new_hidden_weights(k, n, rng))
            if self.train_classifiers:
                hp = self._new_hidden_weights(n_out, k, rng)
                self.classifier_hidden_weights_.append(hp)
                self.classifiers_.append(np.where(hp.T >= 0, 1, -1).astype(np.int8))
            else:
                self.classifiers_.append(rng.choice(np.array([-1, 1], dtype=np.int8),
                                                    size=(k, n_out)))
        self.packed_weights_ = [_kernels.pack_sign_int16(h) for h in self.hidden_weights_]
        self.temperature_ = widths[-1] / 8.0

    def _training_state(self):
        state = _LocalState(layers=self._engine_layers(), class_rows=[])
        if self.train_classifiers:
            state.classifier_layers = [BinaryLayer(h) for h in self.classifier_hidden_weights_]
            self.classifier_hidden_weights_ = [c.hidden for c in state.classifier_layers]
            state.class_rows = [c.packed for c in state.classifier_layers]
        else:
            state.class_rows = [pack_pm1_rows(p.T) for p in self.classifiers_]
        return state

    def _finish_training(self, state):
        if self.train_classifiers:
            self.classifiers_ = [_kernels.unpack_pm1(c.packed, c.n_in).T.copy()
                                 for c in state.classifier_layers]

    def _target_rows(self, class_rows, width):
        """Packed desired hidden signs per class: ``P[:, c]``; with one +/-1
        output, class 0 wants ``-P`` and class 1 ``P``."""
        if class_rows.shape[0] > 1:
            return class_rows
        neg = ~class_rows
        if width % 64:
            neg[:, -1] &= np.uint64((1 << (width % 64)) - 1)
        return np.vstack([neg, class_rows])

    @staticmethod
    def _readout(scores, y, threshold):
        """Predictions and the erroneous-sample mask of one local classifier."""
        if scores.shape[1] == 1:
            s = scores[:, 0]
            pred = (s > 0).astype(np.intp)
            return pred, (pred != y) | (np.abs(s) < threshold)
        pred = np.argmax(scores, axis=1)
        top2 = np.partition(scores, -2, axis=1)[:, -2:]
        return pred, (pred != y) | (top2[:, 1] - top2[:, 0] < threshold)

    # ------------------------------------------------------------ training
    # a batch = _batch_updates (from the pre-update weights) + _apply_updates;
    # CPRTrainingMixin._train_batch runs them, skbnn.distributed shards the first
    def _batch_updates(self, state, A, y, n_threads):
        """The batch's CP steps: per hidden layer (then, with
        ``train_classifiers``, per local classifier) a :class:`CPStep` or None
        when no sample is erroneous for it.  Every layer sees the pre-update
        activations of the layer below, so nothing here changes."""
        n_layers = len(state.layers)
        steps = [None] * n_layers
        classifier_steps = [None] * n_layers if self.train_classifiers else []
        a, n_correct = A, 0
        for l, layer in enumerate(state.layers):
            k = layer.n_out
            z = layer.forward(a, n_threads)
            # pre-update activations go forward
            a_next = sign_activations(z, self._ternary_activations, n_threads)
            scores = class_scores(a_next, state.class_rows[l], k, n_threads)
            pred, err = self._readout(scores, y, math.floor(self.robustness * k))
            if l == n_layers - 1:
                n_correct = int(np.count_nonzero(pred == y))
            if err.any():
                targets = self._target_rows(state.class_rows[l], k)[y]
                selected = layer.select(z, targets, self.group_sizes_[l],
                                        active=err.view(np.uint8), n_threads=n_threads)
                steps[l] = CPStep(selected, targets, *step_inputs(a))
                if self.train_classifiers:
                    classifier_steps[l] = self._classifier_step(
                        state.class_rows[l].shape[0], scores, y, err, a_next)
            a = a_next
        return BatchUpdates(n_correct, steps + classifier_steps)

    def _apply_updates(self, state, updates, n_threads):
        """CP step then reinforcement of every layer with an erroneous sample
        (stream: batch and layer), then the classifiers' steps (no
        reinforcement)."""
        n_layers = len(state.layers)
        self._apply_layer_steps(state.layers, updates.steps[:n_layers],
                                [layer.n_in for layer in state.layers], n_threads)
        for classifier, step in zip(state.classifier_layers, updates.steps[n_layers:]):
            if step is not None:
                classifier.apply(step, self._clip, n_threads)

    @staticmethod
    def _classifier_step(n_out, scores, y, err, a):
        """Train-out ablation: raise the correct class's score where it has the
        wrong sign (one-hot targets; with one output the target is +/-1).
        None when no sample needs it."""
        n = len(y)
        if scores.shape[1] == 1:
            wrong = err & ((scores[:, 0] > 0) != (y == 1))
            selected = np.where(wrong, 0, -1).astype(np.int32).reshape(n, 1)
            targets = (y == 1).astype(np.uint64).reshape(n, 1)
        else:
            wrong = err & (scores[np.arange(n), y] < 0)
            selected = np.where(wrong, y, -1).astype(np.int32).reshape(n, 1)
            targets = pack_pm1_rows(np.ones((n, n_out), dtype=np.int8))
        return CPStep(selected, targets, *step_inputs(a)) if wrong.any() else None

    # ------------------------------------------------------------ inference
    def _inference_rows(self):
        # packed once per call from the int8 classifier: tiny (C x K bits)
        return pack_pm1_rows(self.classifiers_[-1].T)
