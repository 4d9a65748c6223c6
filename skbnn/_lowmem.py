"""LowMemBNNClassifier: binary MLP trained with latent weights and
straight-through gradients, in the low-memory form of Wang et al.

E. Wang et al., "Enabling Binary Neural Network Training on the Edge",
arXiv 2102.04270.  ``training='standard'`` is the
Courbariaux & Bengio step (Algorithm 1), ``'low_memory'`` the paper's
proposed step (Algorithm 2).
"""
import contextlib
from dataclasses import dataclass

import numpy as np
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _kernels
from ._architecture import build_plan, is_convolutional, resolve_input_shape
from ._base import (BaseBinaryClassifier, check_bool, check_choice, check_int,
                    check_layer_sizes, check_real)
from ._engine import pack_pm1_rows
from ._latent import F32, INITS, Hyper, StepConfig, init_latent, softmax_xent
from ._layers import LayerStack, StepContext, Workspace, weight_grad_scale
from ._memory_model import MIB, format_memory_table, memory_model, plan_counts
from ._memory_probe import traced_call
from ._rules import RULES, make_rule
from .preprocessing import RealInput, make_input_binarizer, max_magnitude

_SOLVERS = ("adam", "sgd", "bop")
_FEEDBACK_STREAM = 4   # the seed stream of the DFA / DRTP feedback matrices


@dataclass
class _LowMemState:
    """Transient training state of one fit / partial_fit call."""

    stack: LayerStack
    hyper: Hyper
    config: StepConfig
    rule: object
    workspace: Workspace = None
    loss_sum: float = 0.0
    n_seen: int = 0


class LowMemBNNClassifier(BaseBinaryClassifier):
    """Binary MLP trained by straight-through gradients with low memory.

    Every dense layer uses binary weights ``sign(V)`` of latent weights
    ``V``; each is followed by batch normalisation with a bias and no scale,
    and hidden blocks end in ``sign`` (straight-through gradient where
    ``|A| <= 1``).  The last block's BN output are the logits of a softmax
    cross-entropy.  With ``training='low_memory'`` (the default, Algorithm
    2 of Wang et al.) BN uses the l1 scale (mean absolute deviation), its
    backward pass needs only the sign bits of its output and one magnitude
    per channel, activations are kept as bits, weight gradients as their
    signs scaled by ``1 / sqrt(fan_in)``, and latent weights, optimiser
    state, BN statistics and activation gradients are float16.  With
    ``training='standard'`` (Algorithm 1) everything is float32 with the
    exact l2 batch-norm gradient.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(256, 256, 256, 256)
        Hidden widths of the MLP (``architecture=None``).
    architecture : None, 'cnv', 'binarynet', 'binarynet_residual' or list of tuple, default=None
        None: the MLP of ``hidden_layer_sizes``.  'cnv' and 'binarynet': the
        convolutional networks of Wang et al.'s Tables 2-5 (from the
        authors' code): CNV = 3x3 'valid' convolutions 64, 64, pool, 128,
        128, pool, 256, 256, then dense 512, 512; BinaryNet = 3x3 'same'
        convolutions 128, 128, pool, 256, 256, pool, 512, 512, pool, then
        dense 1024, 1024.  'binarynet_residual': BinaryNet with a
        real-valued shortcut on each conv whose input and output channels
        match (the second of each pair).  Or a list of plain tuples:
        ``("conv", filters)``, ``("conv", filters, kernel_size)``,
        ``("conv", filters, kernel_size, padding)`` (defaults 3 and 'same';
        stride 1; odd kernels for 'same'), ``("conv", filters, kernel_size,
        padding, "residual")`` (a Bi-Real-Net block: its output is
        ``BN(conv(sign x)) + x``, ``x`` the previous conv block's real
        output; same shape in and out; followed by a ``("pool",
        "before_bn")``, ``BN(pool(conv(sign x))) + avgpool(x)`` with a 2x2
        average pool), ``("pool",)`` (2x2 max pool of the preceding block's
        signs, CNV's order) or ``("pool", "before_bn")`` (pooling the
        convolution's output before its batch norm, BinaryNet's order), and
        ``("dense", units)``.  Every conv and dense layer is followed by
        batch norm and sign; the output layer to the classes is appended.
    input_shape : tuple of int (C, H, W) or None, default=None
        Image shape of a convolutional architecture: ``X`` is 2-D
        ``(n_samples, C*H*W)``, each row an image flattened in C, H, W
        order (a 4-D ``(n_samples, C, H, W)`` array is accepted too).  One
        entry may be -1, inferred from ``n_features`` as in NumPy's
        ``reshape`` (e.g. ``(1, 1, -1)``: a one-row signal of any length).
        None: a square single-channel image when ``n_features`` is a
        perfect square, else a ``ValueError``.
    training : {'low_memory', 'standard'}, default='low_memory'
        The paper's proposed step or the standard BNN step.
    algorithm : {'backprop', 'dfa', 'drtp', 'hsic', 'sigprop'}, default='backprop'
        What gradient reaches each hidden block's output (the +-1
        activation read by the next weight layer), following Crulis et al.
        (arXiv 2408.04460): 'backprop' the input gradient of the layer
        above; 'dfa' (direct feedback alignment) ``e B_l``, ``e =
        (softmax - onehot) / B`` the output error; 'drtp' (direct random
        target projection) ``t B_l``, ``t = onehot - 1/C`` the centred
        target, independent of the output, so each block is updated during
        the forward pass and its records freed.  ``B_l`` are fixed N(0, 1)
        matrices (:attr:`feedback_`), one column per feature or per channel
        of a map (shared by its pixels).  'hsic' (HSIC bottleneck): the
        gradient at the activation ``z`` (all its values per sample) of the
        local loss ``HSIC(z, z) - hsic_gamma * HSIC(t, z)``, cosine kernels
        on ``z`` and ``t``, biased estimator ``tr(K H L H) / B^2``; local as
        DRTP, no feedback matrices.  'sigprop' (PEPITA-style signal
        propagation, no backward pass): an inference forward gives ``e``,
        which trains the output block; a second training forward runs the
        batch and the batch plus ``e F`` as one batch (``F`` fixed, see
        :attr:`feedback_`; joint batch statistics, one half's
        pre-activations in memory at a time), and each hidden weight layer gets ``dW = (h -
        h_err)^T x_in / k`` from its block's clean and perturbed signs
        (``k`` their pixels); the hidden batch-norm biases stay, the
        low-memory step's weight gradient is -1/0/+1 instead of a sign bit;
        needs ``binarize_input=None``.  Under every rule the signal then
        goes through the block's STE mask, pooling and batch-norm backward to
        its weight and bias gradients, both steps and every solver alike;
        the output layer receives ``e``.  See the user guide.
    hsic_gamma : float, default=2.0
        Weight (>= 0) of the target term of ``algorithm='hsic'`` (the
        authors' default); ignored by the other rules.
    solver : {'adam', 'sgd', 'bop'}, default='adam'
        Adam, SGD with momentum, or Bop (binary weights flipped by a
        float momentum; no latent weights; BN biases use Adam).
    learning_rate_init : float or None, default=None
        None = 1e-3 (Adam; Bop's adaptivity rate gamma) or 0.1 (SGD).
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam.
    momentum : float, default=0.9
        SGD momentum.
    bop_threshold : float, default=1e-8
        Bop's threshold tau.
    lr_schedule : {'plateau', 'constant'}, default='plateau'
        'plateau' halves the rate (``lr_decay``) after ``lr_patience``
        epochs without improvement of the validation accuracy (with
        ``early_stopping``) or else of the training accuracy.
    lr_decay : float, default=0.5
        Factor of the plateau schedule.
    lr_patience : int, default=50
        Epochs without improvement before the rate is decayed.
    grad_scale : {'fan_in', 'n_weights', 'none'}, default='fan_in'
        Low-memory weight-gradient attenuation: ``1/sqrt(fan_in)`` (paper),
        ``1/sqrt(fan_in * fan_out)`` (the authors' code) or none.
    bn_stats : {'post_bias', 'pre_bias'}, default='post_bias'
        Low-memory BN backward: sign bits and magnitude of the BN output
        after the bias (paper) or of the normalised value before it (the
        authors' Keras emulation; costs one more bit per activation).
    bn_backward : {'proposed', 'l1', 'l2'} or None, default=None
        Batch-norm backward (the ablation of the paper's Table 5): None =
        'proposed' for low memory, 'l2' (exact, l2 forward) for standard;
        'l1' = Eq. 1 with the float output (l1 forward).
    grad_format : {'float16', 'float32', 'pow2'}, default='float16'
        Activation gradients in flight in the low-memory step: rounded to
        float16, kept float32, or signed powers of two with a 4-bit exponent
        (``pow2_bias`` sets the per-tensor bias).  The standard step always
        keeps float32.
    pow2_bias : int, default=8
        Bias of the power-of-two gradient format.
    init : {'glorot_uniform', 'normal_fan_in'}, default='glorot_uniform'
        Latent-weight initialisation (paper; the authors' code).
    clip_weights : bool, default=False
        Also clip latent weights to [-1, 1] after each step (gradient
        cancellation is always on).
    binarize_input : None or the shared rule's values, default=None
        None: the first layer reads the real-valued input (float x bits
        products), times the power of two that brings the first call's
        largest magnitude into (0.5, 1] (``binarizer_.scale_``): its batch
        norm makes the model independent of the input's units, and the
        scale keeps the float16 statistics in range.  Any value of the shared rule ('auto', 'median',
        'global_median', 'thermometer', an int) binarises it and makes
        layer 1 a popcount layer too.
    n_thermometer_bits : int, default=32
        Bits per feature of ``binarize_input='thermometer'``.
    bn_momentum : float, default=0.9
        Running statistics: ``running = bn_momentum * running + (1 -
        bn_momentum) * batch``.
    batch_size : int or 'auto', default='auto'
        'auto' = 100 (Bop: 50).
    max_iter : int, default=100
        Epochs of ``fit``.
    shuffle, random_state, verbose, warm_start : as scikit-learn's MLP
        Reshuffle each epoch; seed of initialisation, split and shuffling;
        one line per epoch; continue from the previous fit.
    early_stopping : bool, default=False
        Hold out ``validation_fraction``, stop after ``n_iter_no_change``
        epochs without improvement (if set) and restore the best weights.
    validation_fraction : float, default=0.1
        Size of the hold-out.
    n_iter_no_change : int or None, default=None
        None trains all ``max_iter`` epochs.
    tol : float, default=1e-4
        Minimum improvement for ``n_iter_no_change``.
    n_jobs : int or None, default=None
        Kernel threads (None = 1); results do not depend on it.
    state_dtype : {'float16', 'float32'}, default='float16'
        Storage of the latent weights, optimiser moments, batch-norm bias and
        running statistics in the low-memory step: float16 (the paper) or
        float32 (the authors'
        Keras emulation, which keeps stock float32 Adam; twice the state
        memory).  The standard step is always float32.  In float16 Adam
        stores the square root of its second moment (the gradient's running
        RMS) in the same 16 bits: the moment itself, ``(1 - beta_2) g**2``
        per step, underflows float16 for the small gradients of batch-norm
        biases, and ``m1 / sqrt(m2)`` then takes huge steps.
    rounding : {'stochastic', 'nearest'}, default='stochastic'
        How the low-memory step rounds each float16 value it stores
        (latent weights, moments, bias).  'nearest' (nearest even) is the
        paper's arithmetic; it loses every update smaller than half a unit
        in the last place (Adam's steps of ~1e-4 on weights of ~0.1 once
        the plateau schedule has lowered the rate), which costs about 1.4
        points on Fashion-MNIST.  'stochastic' rounds up with probability
        equal to the distance from the float16 below in ulps, so such steps
        still move a weight on average (Gupta et al. 2015) and the
        low-memory step comes within half a point of the float32 step
        (user guide).  The draws are a hash of ``random_state``, the step,
        the layer and the element: no extra state or memory, the same bits
        on every kernel path and thread count.  No effect with
        ``state_dtype='float32'`` or the standard step.
    measure_memory : bool, default=False
        Run ``fit`` / ``partial_fit`` under ``tracemalloc`` (started and
        stopped here if not already running; its peak is reset) and record
        :attr:`memory_measured_`.  Slows training a little.

    Attributes
    ----------
    classes_, n_features_in_, feature_names_in_ : as scikit-learn
        Classes and input description.
    feedback_ : sequence of ndarray of float32, shape (n_classes, width_l), or None
        The fixed feedback matrices of ``algorithm='dfa'`` or ``'drtp'``, one
        per hidden activation from the first; for ``'sigprop'`` one matrix
        ``F`` of shape ``(n_classes, n_features_in_)``, N(0, 1 /
        ``n_features_in_``) (kaiming normal, fan-in); None for backprop and
        HSIC.  The model stores their seed, not the matrices: each is
        regenerated (standard normal float32, from a NumPy generator seeded
        by the model's seed and the matrix's index) whenever it is read,
        during training too, so they cost no memory between calls and one
        matrix while in use.  Indexing or iterating gives the arrays; a
        refit with the same ``random_state`` gives the same matrices; kept
        by ``partial_fit`` and ``warm_start`` (a warm start between
        'sigprop' and 'dfa' / 'drtp' draws the other kind).
    coefs_ : list of ndarray, shape (n_{l-1}, n_l)
        Latent weights per layer (float16 / float32; int8 +/-1 with Bop).
    packed_weights_ : list of ndarray of uint64, shape (n_l, ceil(n_{l-1}/64))
        Packed binary weights (bit 1 = +1), neuron-major.
    bn_bias_, bn_running_mean_, bn_running_scale_ : list of ndarray
        Batch-norm bias and running statistics per layer.
    optimizer_state_ : dict
        Step count ``t`` and the per-layer moments.
    binarizer_ : transformer
        The fitted input encoding (``RealInput`` with its ``scale_`` when
        ``binarize_input=None``).
    learning_rate_ : float
        Current learning rate (after the schedule).
    memory_model_ : dict
        The paper's memory accounting for this model and batch size
        (its section 4 and Table 2); see :meth:`memory_report`.
    memory_measured_ : dict
        With ``measure_memory=True``: the last call's ``peak_bytes`` (state
        held before the call + ``transient_peak_bytes``, the traced peak
        above the memory at the call's start), ``retained_bytes`` and
        ``persistent_before_bytes``.  Input conversions (e.g. float64 to
        float32) happen inside the call and are counted.
    n_iter_, t_, loss_curve_, validation_scores_ : as scikit-learn's MLP
        ``loss_curve_`` holds the mean training cross-entropy per epoch (the
        last 1000: streaming keeps bounded memory).

    Notes
    -----
    Memory: between calls the estimator holds only the model and optimiser
    state (:meth:`memory_report`, ``'state'``).  A low-memory step adds one
    workspace of batch x widest layer x 4 bytes (the pre-activations, then
    two float16 gradient slots) and per layer only bits (output signs, STE
    mask) and float16 per-channel statistics; each layer is updated as soon
    as its 1-bit weight gradient exists (every gradient uses pre-update
    weights, so this equals the paper's separate update loop).  The standard
    step keeps Algorithm 1's float32 records of every layer and the float
    weight gradients of all layers until the update, as the paper's
    baseline does.  Measured for 784-256x4-10 at batch 100 with Adam: 2.51
    MiB low-memory, 7.59 MiB standard (``benchmarks/bench_lowmem.py``).

    Readings of the paper's open points: weight-gradient
    attenuation by ``1/sqrt(fan_in)`` (``grad_scale``), batch-norm bits and
    magnitude after the bias (``bn_stats``), Glorot initialisation
    (``init``), gradient cancellation without an explicit clip
    (``clip_weights``), exact l2 batch norm in the standard step, the
    first layer reading the real input, sign(0) = +1, and the batch-norm
    scale floored at 1e-5.

    Determinism: every product, batch-norm reduction and optimiser sweep adds
    in a fixed order on every SIMD path, so a ``random_state`` gives
    bit-identical models on every path and for every ``n_jobs``.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.model_selection import train_test_split
    >>> from skbnn import LowMemBNNClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> X_tr, X_te, y_tr, y_te = train_test_split(X / 8 - 1, y, random_state=0)
    >>> clf = LowMemBNNClassifier((128, 128), max_iter=20, random_state=0)
    >>> clf.fit(X_tr, y_tr).score(X_te, y_te) > 0.85
    True
    """

    _model_attributes = ("layers_",)

    # scikit-learn's declarative checks (the other parameters use the
    # package's check_* helpers in _validate_rule_params)
    _parameter_constraints = {"algorithm": [StrOptions(set(RULES))]}

    def __init__(self, hidden_layer_sizes=(256, 256, 256, 256), architecture=None,
                 input_shape=None, training="low_memory", algorithm="backprop",
                 hsic_gamma=2.0, solver="adam", learning_rate_init=None, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, momentum=0.9, bop_threshold=1e-8, lr_schedule="plateau",
                 lr_decay=0.5, lr_patience=50, grad_scale="fan_in", bn_stats="post_bias",
                 bn_backward=None, grad_format="float16", pow2_bias=8, init="glorot_uniform",
                 clip_weights=False, binarize_input=None, n_thermometer_bits=32,
                 bn_momentum=0.9, batch_size="auto", max_iter=100, shuffle=True,
                 random_state=None, verbose=0, warm_start=False, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=None, tol=1e-4, n_jobs=None,
                 measure_memory=False, state_dtype="float16", rounding="stochastic"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.architecture = architecture
        self.input_shape = input_shape
        self.training = training
        self.algorithm = algorithm
        self.hsic_gamma = hsic_gamma
        self.solver = solver
        self.learning_rate_init = learning_rate_init
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.momentum = momentum
        self.bop_threshold = bop_threshold
        self.lr_schedule = lr_schedule
        self.lr_decay = lr_decay
        self.lr_patience = lr_patience
        self.grad_scale = grad_scale
        self.bn_stats = bn_stats
        self.bn_backward = bn_backward
        self.grad_format = grad_format
        self.pow2_bias = pow2_bias
        self.init = init
        self.clip_weights = clip_weights
        self.binarize_input = binarize_input
        self.n_thermometer_bits = n_thermometer_bits
        self.bn_momentum = bn_momentum
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
        self.measure_memory = measure_memory
        self.state_dtype = state_dtype
        self.rounding = rounding

    # ------------------------------------------------------------ parameters
    def _validate_rule_params(self):
        if not (self.architecture is None or isinstance(self.architecture, (str, list, tuple))):
            raise TypeError("architecture must be None, a preset name ('cnv', 'binarynet', "
                            "'binarynet_residual') or a list of "
                            f"layer tuples, got {self.architecture!r}")
        if self.input_shape is not None:
            shape = self.input_shape
            if (not isinstance(shape, (tuple, list)) or len(shape) != 3
                    or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                               for v in shape)):
                raise TypeError(f"input_shape must be None or a tuple (C, H, W) of ints, "
                                f"got {shape!r}")
            if any(v < 1 and v != -1 for v in shape) or list(shape).count(-1) > 1:
                raise ValueError("input_shape must hold positive sizes (one may be -1, "
                                 f"inferred from n_features), got {tuple(shape)!r}")
        if self.algorithm == "sigprop" and self.binarize_input is not None:
            raise ValueError("binarize_input must be None with algorithm='sigprop': it perturbs "
                             "the real-valued input")
        if (self.architecture is not None and self.binarize_input is not None
                and is_convolutional(self.architecture)):
            raise ValueError("binarize_input must be None with a convolutional architecture: "
                             "its first convolution reads the real-valued image")
        check_choice("training", self.training, ("low_memory", "standard"))
        check_choice("solver", self.solver, _SOLVERS)
        check_real("hsic_gamma", self.hsic_gamma, 0.0)
        if self.learning_rate_init is not None:
            check_real("learning_rate_init", self.learning_rate_init, 0.0, include_min=False)
        check_real("beta_1", self.beta_1, 0.0, 1.0)
        check_real("beta_2", self.beta_2, 0.0, 1.0)
        if self.beta_1 >= 1 or self.beta_2 >= 1:
            raise ValueError("beta_1 and beta_2 must be < 1")
        check_real("epsilon", self.epsilon, 0.0, include_min=False)
        check_real("momentum", self.momentum, 0.0, 1.0)
        check_real("bop_threshold", self.bop_threshold, 0.0)
        check_choice("lr_schedule", self.lr_schedule, ("plateau", "constant"))
        check_real("lr_decay", self.lr_decay, 0.0, 1.0, include_min=False)
        check_int("lr_patience", self.lr_patience, min_value=1)
        check_int("pow2_bias", self.pow2_bias, min_value=-64, max_value=64)
        check_choice("grad_scale", self.grad_scale, ("fan_in", "n_weights", "none"))
        check_choice("bn_stats", self.bn_stats, ("post_bias", "pre_bias"))
        if self.bn_backward is not None:
            check_choice("bn_backward", self.bn_backward, ("proposed", "l1", "l2"))
        check_choice("grad_format", self.grad_format, ("float16", "float32", "pow2"))
        check_choice("init", self.init, tuple(INITS))
        check_bool("clip_weights", self.clip_weights)
        check_real("bn_momentum", self.bn_momentum, 0.0, 1.0)
        check_bool("measure_memory", self.measure_memory)
        check_choice("state_dtype", self.state_dtype, ("float16", "float32"))
        check_choice("rounding", self.rounding, ("nearest", "stochastic"))

    @property
    def _auto_batch_size(self):
        return 50 if self.solver == "bop" else 100

    @property
    def _bn_kind(self):
        if self.bn_backward is not None:
            return self.bn_backward
        return "proposed" if self.training == "low_memory" else "l2"

    def _make_input_encoder(self, X):
        if self.binarize_input is None:
            return RealInput()
        return make_input_binarizer(self.binarize_input, X.shape[1], self.n_thermometer_bits,
                                    X=X)

    # ------------------------------------------------------------ model
    def _plan(self, n_inputs, n_classes):
        """The network's layers with their shapes (validates the architecture)."""
        shape = resolve_input_shape(self.architecture, self.input_shape, n_inputs)
        real = self.binarize_input is None
        return build_plan(self.architecture, shape, n_inputs, n_classes,
                          check_layer_sizes(self.hidden_layer_sizes), real_input=real)

    def _init_model(self, n_inputs, n_classes, rng):
        plan = self._plan(n_inputs, n_classes)
        half = self.training == "low_memory" and self.state_dtype == "float16"
        dtype = np.float16 if half else F32
        bop = self.solver == "bop"
        self.layers_ = []
        for spec in plan:
            if spec.kind not in ("conv", "dense"):
                continue
            n_in, n_out = spec.fan_in, spec.units
            fan_out = n_out * spec.kernel_size ** 2 if spec.kind == "conv" else n_out
            V = init_latent(self.init, n_in, n_out, rng, dtype, fan_out=fan_out)
            packed = pack_pm1_rows(V)
            self.layers_.append({
                "V": None if bop else V, "packed": packed,
                "m1": np.zeros((n_out, n_in), dtype=dtype),
                "m2": np.zeros((n_out, n_in), dtype=dtype) if self.solver == "adam" else None,
                "bias": np.zeros(n_out, dtype=dtype),
                "bias_m1": np.zeros(n_out, dtype=dtype), "bias_m2": np.zeros(n_out, dtype=dtype),
                "running_mean": np.zeros(n_out, dtype=dtype),
                "running_scale": np.ones(n_out, dtype=dtype),
            })
        self.layer_plan_ = plan
        self.optimizer_state_ = {"t": 0}
        self.learning_rate_ = float(self._lr_init)
        self.temperature_ = 1.0
        self._schedule_best, self._schedule_wait = -np.inf, 0
        self.feedback_ = None
        self.memory_model_ = self._memory_model(plan, self._batch_size_for(10**9))

    def _memory_model(self, plan, batch_size):
        half = self.training == "low_memory" and self.state_dtype == "float16"
        wide_state = ({"W": 32, "momenta": 32, "beta": 32}
                      if self.training == "low_memory" and not half else None)
        return memory_model(plan_counts(plan), batch_size, training=self.training,
                            solver=self.solver, bits=wide_state, algorithm=self.algorithm)

    def _training_bytes(self, n_samples, n_input_bits, n_classes):
        """The memory guard's estimate: the paper's accounting of this
        network at the training batch size (every layer's state and records)
        plus the encoded training set, twice (shuffled batches and the
        validation split gather copies)."""
        plan = self._plan(n_input_bits, n_classes)
        model = self._memory_model(plan, self._batch_size_for(max(1, n_samples)))
        inputs = 2 * n_samples * self._input_row_bytes(n_input_bits)
        return int(model["total"]["bytes"] + inputs)

    @property
    def _lr_init(self):
        if self.learning_rate_init is not None:
            return self.learning_rate_init
        return 0.1 if self.solver == "sgd" else 1e-3

    # inputs of a continuing call may reach this multiple of the first call's
    # largest magnitude: |z| <= 64 x fan-in stays within float16's 65504 for
    # the usual fan-ins (784: 50,176), with room since |z| is far below its bound
    _MAX_INPUT_GROWTH = 64.0

    def _check_continuing_input(self, X):
        if not isinstance(self.binarizer_, RealInput) or \
                self.layers_[0]["running_scale"].dtype != np.float16:
            return
        growth = max_magnitude(X) * self.binarizer_.scale_
        if growth > self._MAX_INPUT_GROWTH:
            raise ValueError(
                f"X reaches {growth:.3g} times the largest magnitude of the data the model "
                f"was first fitted on (at most {self._MAX_INPUT_GROWTH:g}): its first layer's "
                "float16 batch-norm statistics would overflow; rescale X as the first call's "
                "data, or refit")

    def _stack(self):
        """The layer stack over ``layers_``; the first layer reads real inputs
        times the input scale when ``binarize_input=None``."""
        real = isinstance(self.binarizer_, RealInput)
        scale = getattr(self.binarizer_, "scale_", 1.0) if real else 1.0
        return LayerStack(self.layer_plan_, self.layers_, input_scale=scale)

    def _training_state(self):
        for s in self.layers_:  # e.g. unpickled from read-only memory: train on copies
            for key, a in s.items():
                if isinstance(a, np.ndarray) and not (a.flags.writeable and a.flags.c_contiguous):
                    s[key] = np.array(a, order="C", copy=True)
        hyper = Hyper(self.solver, self.learning_rate_, self.beta_1, self.beta_2, self.epsilon,
                      self.momentum, self.bop_threshold, self.clip_weights,
                      round_seed=self._seed if self.rounding == "stochastic" else None)
        rule = RULES[self.algorithm]
        if rule.uses_feedback and (getattr(self, "feedback_", None) is None or getattr(
                self, "_feedback_kind", "hidden") != rule.feedback_kind):
            # first call, or a warm start from another rule: the same draw
            self.feedback_ = rule.draw_feedback(self.layer_plan_, len(self.classes_),
                                                (self._seed, _FEEDBACK_STREAM))
            self._feedback_kind = rule.feedback_kind
        return _LowMemState(stack=self._stack(), hyper=hyper, config=self._step_config(),
                            rule=make_rule(self.algorithm, self.feedback_, self.hsic_gamma))

    # ------------------------------------------------------------ fitted views
    @property
    def coefs_(self):
        """Latent weights per layer, (n_{l-1}, n_l); int8 +/-1 for Bop."""
        out = []
        for s in self.layers_:
            if s["V"] is None:
                n_in = s["m1"].shape[1]
                out.append(_kernels.unpack_pm1(s["packed"], n_in).T)
            else:
                out.append(s["V"].T)
        return out

    @property
    def packed_weights_(self):
        """Packed binary weights per layer, neuron-major."""
        return [s["packed"] for s in self.layers_]

    @property
    def bn_bias_(self):
        """Batch-norm bias per layer."""
        return [s["bias"] for s in self.layers_]

    @property
    def bn_running_mean_(self):
        """Running batch mean of the pre-activations per layer."""
        return [s["running_mean"] for s in self.layers_]

    @property
    def bn_running_scale_(self):
        """Running batch scale (l1 mean absolute deviation or l2 std) per layer."""
        return [s["running_scale"] for s in self.layers_]

    # ------------------------------------------------------------ training
    def _step_config(self):
        low = self.training == "low_memory"
        pow2 = low and self.grad_format == "pow2"
        return StepConfig(
            standard=not low, half=low, kind=self._bn_kind,
            pre_bias=self.bn_stats == "pre_bias" and self._bn_kind == "proposed",
            grad_dtype=np.float16 if low and self.grad_format == "float16" else F32,
            pow2_bias=self.pow2_bias if pow2 else None, bn_momentum=self.bn_momentum)

    def _train_batch(self, state, A, y, n_threads):
        """One step: the stack's forward pass, the softmax cross-entropy, then
        its backward pass and update (see :meth:`LayerStack.backward_update`
        for the lifetimes of each step)."""
        B, cfg = A.shape[0], state.config
        if state.workspace is None or not state.workspace.fits(B):
            state.workspace = Workspace(B, state.stack.workspace_bytes(B, cfg))
        ctx = StepContext(cfg, state.workspace, state.hyper, self.optimizer_state_["t"] + 1,
                          n_threads, weight_grad_scale(self.grad_scale, cfg.standard),
                          state.rule)
        state.rule.begin_batch(y, len(self.classes_))
        logits = state.stack.forward_train(A, ctx)
        n_correct = int(np.count_nonzero(np.argmax(logits, axis=1) == y))
        if not np.isfinite(logits).all():
            raise FloatingPointError(
                "LowMemBNNClassifier: training diverged (non-finite logits at step "
                f"{self.optimizer_state_['t'] + 1}); lower learning_rate_init")
        loss_sum, G = softmax_xent(logits, y)
        del logits
        state.loss_sum += loss_sum
        state.n_seen += len(y)
        self.optimizer_state_["t"] += 1
        state.rule.output_error(G)
        state.stack.backward_update(G, ctx)
        state.rule.end_batch()
        return n_correct

    def _epoch_loss(self, state, train_error):
        loss = state.loss_sum / max(1, state.n_seen)
        state.loss_sum, state.n_seen = 0.0, 0
        return loss

    def _end_epoch(self, state, train_error, val_score):
        """Plateau schedule on validation (else training) accuracy."""
        if self.lr_schedule != "plateau":
            return
        score = val_score if val_score is not None else 1.0 - train_error
        if score > self._schedule_best:
            self._schedule_best, self._schedule_wait = score, 0
            return
        self._schedule_wait += 1
        if self._schedule_wait >= self.lr_patience:
            self.learning_rate_ *= self.lr_decay
            state.hyper.lr = self.learning_rate_
            self._schedule_wait = 0
            if self.verbose:
                print(f"Learning rate -> {self.learning_rate_:.3g}")

    # ------------------------------------------------------------ inference
    def _scores_from_packed(self, A, n_threads):
        """Float logits: every layer with its running BN statistics."""
        return self._stack().logits(A, n_threads)

    # ------------------------------------------------------------ images
    def _as_rows(self, X):
        """A 4-D ``(n, C, H, W)`` image array as the 2-D rows scikit-learn
        validates (a view: C order is the flattening of the API)."""
        if hasattr(X, "ndim") and getattr(X, "ndim", 2) == 4:
            X = np.asarray(X)
            if self.input_shape is not None and tuple(X.shape[1:]) != tuple(self.input_shape):
                raise ValueError(f"X has images of shape {X.shape[1:]}, but input_shape is "
                                 f"{tuple(self.input_shape)}")
            return X.reshape(X.shape[0], -1)
        return X

    def _fit(self, X, y):
        return super()._fit(self._as_rows(X), y)

    def _partial_fit(self, X, y, classes):
        return super()._partial_fit(self._as_rows(X), y, classes)

    def _scores(self, X):
        """Logits in chunks sized so a chunk's widest activation stays near
        16 MiB (convolutional maps are large)."""
        check_is_fitted(self)
        X = self._as_rows(X)
        X = validate_data(self, X, dtype="numeric", reset=False)
        n_threads = self._n_threads
        widest = max(int(np.prod(s.out_shape)) for s in self.layer_plan_)
        chunk = int(max(1, min(8192, (16 << 20) // (4 * widest))))
        parts = [self._scores_from_packed(self.binarizer_.pack(X[i:i + chunk], n_threads),
                                          n_threads)
                 for i in range(0, X.shape[0], chunk)]
        return np.concatenate(parts) if parts else np.zeros((0, 1), dtype=F32)

    def decision_function(self, X):
        """Logits (the last BN output); binary problems: ``z_1 - z_0``."""
        return super().decision_function(X)

    # ------------------------------------------------------------ memory
    @contextlib.contextmanager
    def _call_context(self):
        """``measure_memory``: trace the call, record :attr:`memory_measured_`."""
        if not self.measure_memory:
            yield
            return
        with traced_call(self._state_bytes()) as measured:
            yield
        self.memory_measured_ = measured

    def _state_bytes_per_weight(self):
        # the memory guard's estimate: latent weight and optimiser moments
        # (float32 in the standard step or with state_dtype='float32'), the
        # packed sign, and the float32 weight gradient the standard step keeps
        wide = self.training == "standard" or self.state_dtype == "float32"
        arrays = {"adam": 3, "sgd": 2, "bop": 1}[self.solver]
        grads = 4 if self.training == "standard" else 0.125
        return arrays * (4 if wide else 2) + 0.125 + grads

    def _state_bytes(self):
        """Bytes of every array the estimator keeps between calls."""
        return sum(row["bytes"] for row in self._state_table().values())

    def memory_report(self):
        """Training memory of this model: the paper's accounting, the arrays
        actually held, and the measured peak of the last call.

        Returns
        -------
        report : dict
            ``model``: the paper's per-variable accounting (``memory_model_``:
            dtype, bits, elements, bytes, persistent or per-batch);
            ``state``: per variable the arrays this estimator holds between
            calls (dtype, bits per element, bytes, summed over layers);
            ``measured``: with ``measure_memory=True``, the tracemalloc
            figures of the last ``fit`` / ``partial_fit`` call
            (``peak_bytes`` = state held before the call + the call's peak
            transient allocation; see :attr:`memory_measured_`), else None;
            ``table``: all of it as text.
        """
        check_is_fitted(self)
        state = self._state_table()
        measured = getattr(self, "memory_measured_", None)
        lines = ["Modelled (the paper's accounting, its Table 2):",
                 format_memory_table(self.memory_model_), "",
                 "Held between calls (this estimator's arrays):"]
        for name, row in state.items():
            lines.append(f"  {name:<22s} {row['dtype']:<8s} {row['bits']:>2d} bits "
                         f"{row['bytes']:>12,d} B  {row['bytes'] / MIB:8.3f} MiB")
        total = sum(r["bytes"] for r in state.values())
        lines.append(f"  {'total':<22s} {'':<8s} {'':>7s} {total:>12,d} B  "
                     f"{total / MIB:8.3f} MiB")
        if measured is not None:
            lines += ["", "Measured (tracemalloc, last call): peak "
                      f"{measured['peak_bytes'] / MIB:.3f} MiB = state "
                      f"{measured['persistent_before_bytes'] / MIB:.3f} MiB + transient "
                      f"{measured['transient_peak_bytes'] / MIB:.3f} MiB"]
        return {"model": self.memory_model_, "state": state, "measured": measured,
                "table": "\n".join(lines)}

    _STATE_NAMES = {"V": "latent weights", "packed": "binary weights (packed)",
                    "m1": "first moment", "m2": "second moment", "bias": "BN bias",
                    "bias_m1": "BN bias moment 1", "bias_m2": "BN bias moment 2",
                    "running_mean": "BN running mean", "running_scale": "BN running scale"}

    def _state_table(self):
        table = {}
        for s in getattr(self, "layers_", []):
            for key, label in self._STATE_NAMES.items():
                a = s.get(key)
                if not isinstance(a, np.ndarray):
                    continue
                row = table.setdefault(label, {"dtype": str(a.dtype),
                                               "bits": a.dtype.itemsize * 8, "bytes": 0})
                row["bytes"] += int(a.nbytes)
        if "binary weights (packed)" in table:
            table["binary weights (packed)"]["bits"] = 1
        return table
