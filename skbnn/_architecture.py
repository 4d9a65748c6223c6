"""Network architectures of LowMemBNNClassifier: validation and shape plans.

Pure Python (no NumPy, no scikit-learn).  A network is an optional
convolutional part, then a dense part, then the output dense layer to
``n_classes``.  Every conv and dense layer is followed by batch normalisation
and the sign activation, except the output layer (batch normalisation, then
softmax).  The first weight layer reads the real-valued input (it is not
binarised) unless the caller says otherwise.

An architecture is one of

* ``None``: a multilayer perceptron, dense layers of ``hidden_layer_sizes``
  widths on the flat input ``(n_features,)``;
* a preset name, ``'cnv'``, ``'binarynet'`` or ``'binarynet_residual'`` (see
  :data:`PRESETS`);
* a list (or tuple) of plain tuples, one per layer::

      ("conv", filters)                          # 3x3, padding 'same'
      ("conv", filters, kernel_size)             # padding 'same'
      ("conv", filters, kernel_size, padding)    # 'same' or 'valid'
      ("conv", filters, kernel_size, padding, "residual")
      ("pool",)                                  # 2x2 max pool, 'after_sign'
      ("pool", position)                         # 'after_sign' or 'before_bn'
      ("dense", units)

  Convolutions are square, stride 1; 'same' pads ``(k - 1) // 2`` zeros on
  each side and needs an odd ``k``.  Pooling is 2x2 max pooling with stride 2
  (an odd map loses its last row / column).  A pool sits in one of two places
  in its block:

  - ``'after_sign'`` pools the sign bits of the preceding conv block
    (conv -> batch norm -> sign -> pool: the FINN / CNV order);
  - ``'before_bn'`` pools the conv pre-activations, before batch norm
    (conv -> pool -> batch norm -> sign: the BinaryNet order), so it must
    directly follow a conv layer.

  A conv marked ``"residual"`` gets a real-valued shortcut (Bi-Real-Net,
  Liu et al. 2018; the skip connections compared by Crulis et al., arXiv
  2408.04460): its block output is ``BN(conv(sign(x))) + x``, with ``x``
  the real-valued output of the previous block (its batch-norm output, or
  its sum if it is residual too, before the sign), and the next sign reads
  the sum.  Its input and output shapes must match (``filters`` equal to
  the input channels, no shrinking 'valid' padding), and it must read the
  output of a conv block directly: not the network's input, nor an
  'after_sign' pool (whose input has no real value of the right shape).
  Followed by a ``('pool', 'before_bn')`` (conv -> pool -> batch norm ->
  sign), the shortcut is Bi-Real-Net's downsampling one, a 2x2 average
  pool of ``x`` (stride 2, floor like the max pool), added after the batch
  norm: ``BN(pool(conv(sign(x)))) + avgpool(x)``.

  The output layer is appended by :func:`build_plan`, and a flatten step is
  inserted between the last conv / pool and the first dense layer.  When an
  architecture is given, ``hidden_layer_sizes`` is ignored.
"""
import math
from dataclasses import dataclass
from numbers import Integral

__all__ = [
    "LayerSpec",
    "PRESETS",
    "resolve_input_shape",
    "build_plan",
    "is_convolutional",
]

KINDS = ("conv", "pool", "dense")
PADDINGS = ("same", "valid")
POOL_POSITIONS = ("after_sign", "before_bn")
DEFAULT_KERNEL_SIZE = 3
DEFAULT_PADDING = "same"
DEFAULT_POOL_POSITION = "after_sign"


class _ArchitectureTypeError(TypeError, ValueError):
    """A wrongly typed architecture or layer entry.

    Both a TypeError (the package's convention for a wrong type) and a
    ValueError (scikit-learn's convention for a bad parameter value, which
    is what a caller validating ``architecture`` catches)."""


@dataclass(frozen=True)
class LayerSpec:
    """One step of a network plan (see :func:`build_plan`).

    Attributes
    ----------
    kind : {'conv', 'pool', 'flatten', 'dense'}
    in_shape, out_shape : tuple of int
        ``(C, H, W)`` for feature maps, ``(F,)`` for vectors, per sample.
    units : int
        Filters of a conv layer, units of a dense layer (0 otherwise).
    kernel_size : int
        Conv only (0 otherwise).
    padding : str
        Conv only: 'same' or 'valid' ('' otherwise).
    pad : int
        Conv only: zeros added on each side of the map, ``(k - 1) // 2`` for
        'same', 0 for 'valid'.
    position : str
        Pool only: 'after_sign' (pools the sign bits of the preceding block,
        FINN / CNV order) or 'before_bn' (pools the conv pre-activations
        before batch norm, BinaryNet order); '' otherwise.
    real_input : bool
        The weight layer that reads the real-valued input.
    residual : bool
        Conv only: the block adds its real-valued input to its batch-norm
        output (see the module docstring).
    output : bool
        The last dense layer (to ``n_classes``): batch norm then softmax, no
        sign.
    """

    kind: str
    in_shape: tuple
    out_shape: tuple
    units: int = 0
    kernel_size: int = 0
    padding: str = ""
    pad: int = 0
    position: str = ""
    real_input: bool = False
    residual: bool = False
    output: bool = False

    @property
    def fan_in(self):
        """Inputs of one output unit: k*k*C_in (conv), F (dense), else 0."""
        if self.kind == "conv":
            return self.kernel_size * self.kernel_size * self.in_shape[0]
        if self.kind == "dense":
            return self.in_shape[0]
        return 0

    @property
    def n_weights(self):
        """Binary weights of the layer: fan_in * units (0 for pool / flatten)."""
        return self.fan_in * self.units


# The two convolutional networks of Wang et al., "Enabling Binary Neural
# Network Training on the Edge" (arXiv 2102.04270), as built by the authors'
# model_architectures.py (training_emulation_on_gpu/).  The output layer is
# appended by build_plan.
#
# 'cnv' (the FINN CNV network): 3x3 VALID convs; each pool follows the sign
#     activation of the preceding conv, i.e. pools sign bits.  On 3x32x32 the
#     conv maps are 30, 28 (pool 14), 12, 10 (pool 5), 3, 1.
# 'binarynet' (Courbariaux et al.'s BinaryNet): 3x3 SAME convs; each pool
#     sits between a conv and its batch norm, i.e. pools pre-activations.
#     On 3x32x32 the maps are 32, 32 (pool 16), 16, 16 (pool 8), 8, 8 (pool 4).
# 'binarynet_residual': the same network with a real-valued shortcut on every
#     conv whose input and output channel counts match (the second of each
#     pair; those followed by a 'before_bn' pool take Bi-Real-Net's 2x2
#     average-pool shortcut).  'binarynet' is its variant without shortcuts.
PRESETS = {
    "cnv": [
        ("conv", 64, 3, "valid"), ("conv", 64, 3, "valid"), ("pool", "after_sign"),
        ("conv", 128, 3, "valid"), ("conv", 128, 3, "valid"), ("pool", "after_sign"),
        ("conv", 256, 3, "valid"), ("conv", 256, 3, "valid"),
        ("dense", 512), ("dense", 512),
    ],
    "binarynet": [
        ("conv", 128, 3, "same"), ("conv", 128, 3, "same"), ("pool", "before_bn"),
        ("conv", 256, 3, "same"), ("conv", 256, 3, "same"), ("pool", "before_bn"),
        ("conv", 512, 3, "same"), ("conv", 512, 3, "same"), ("pool", "before_bn"),
        ("dense", 1024), ("dense", 1024),
    ],
}
PRESETS["binarynet_residual"] = [
    ("conv", 128, 3, "same"), ("conv", 128, 3, "same", "residual"), ("pool", "before_bn"),
    ("conv", 256, 3, "same"), ("conv", 256, 3, "same", "residual"), ("pool", "before_bn"),
    ("conv", 512, 3, "same"), ("conv", 512, 3, "same", "residual"), ("pool", "before_bn"),
    ("dense", 1024), ("dense", 1024),
]


# ------------------------------------------------------------------ helpers
def _is_int(value):
    return isinstance(value, Integral) and not isinstance(value, bool)


def _positive_int(where, name, value):
    if not _is_int(value):
        raise _ArchitectureTypeError(f"{where}: {name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{where}: {name} must be >= 1, got {value}")
    return int(value)


def _check_top_int(name, value):
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def _where(label, index, entry):
    """How an error names a layer: its index in the user's list, or in the
    preset it comes from, and the tuple itself."""
    if label.startswith("'"):
        return f"layer {index} {entry!r} of preset {label}"
    return f"{label}[{index}] {entry!r}"


def _normalise_entry(label, index, entry):
    """``(kind, a, b, c)`` for one layer tuple: ('conv', filters, k, padding,
    residual), ('pool', position), ('dense', units)."""
    where = _where(label, index, entry)
    if not isinstance(entry, (tuple, list)):
        raise _ArchitectureTypeError(
            f"{where}: each layer must be a tuple such as ('conv', 64), ('pool',) or "
            f"('dense', 256), got {type(entry).__name__}")
    if len(entry) == 0:
        raise ValueError(f"{where}: empty layer tuple; expected ('conv', filters, ...), "
                         "('pool', ...) or ('dense', units)")
    kind = entry[0]
    if kind == "flatten":
        raise ValueError(f"{where}: 'flatten' is inserted automatically between the last "
                         "conv / pool layer and the first dense layer; remove it")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"{where}: unknown layer kind {kind!r}; expected one of "
                         f"{', '.join(map(repr, KINDS))}")
    args = tuple(entry[1:])
    if kind == "conv":
        if not 1 <= len(args) <= 4:
            raise ValueError(f"{where}: a conv layer is ('conv', filters), ('conv', filters, "
                             "kernel_size), ('conv', filters, kernel_size, padding) or "
                             "('conv', filters, kernel_size, padding, 'residual'); got "
                             f"{len(entry)} items")
        if len(args) == 4 and args[3] != "residual":
            raise ValueError(f"{where}: a conv layer is ('conv', filters[, kernel_size[, "
                             "padding[, 'residual']]]): its fifth item can only be "
                             f"'residual', got {args[3]!r}")
        filters = _positive_int(where, "filters", args[0])
        k = _positive_int(where, "kernel_size",
                          args[1] if len(args) > 1 else DEFAULT_KERNEL_SIZE)
        padding = args[2] if len(args) > 2 else DEFAULT_PADDING
        if not isinstance(padding, str) or padding not in PADDINGS:
            raise ValueError(f"{where}: padding must be 'same' or 'valid', got {padding!r}")
        if padding == "same" and k % 2 == 0:
            raise ValueError(f"{where}: padding 'same' with an even kernel_size ({k}) is not "
                             "supported (it would need uneven padding); use an odd "
                             "kernel_size or padding 'valid'")
        return ("conv", filters, k, padding, len(args) == 4)
    if kind == "pool":
        if len(args) > 1:
            raise ValueError(f"{where}: a pool layer is ('pool',) or ('pool', position); got "
                             f"{len(entry)} items (pooling is always 2x2, stride 2)")
        position = args[0] if args else DEFAULT_POOL_POSITION
        if not isinstance(position, str) or position not in POOL_POSITIONS:
            raise ValueError(f"{where}: pool position must be 'after_sign' or 'before_bn', "
                             f"got {position!r}")
        return ("pool", position)
    if len(args) != 1:
        raise ValueError(f"{where}: a dense layer is ('dense', units); got a tuple of "
                         f"length {len(entry)}")
    return ("dense", _positive_int(where, "units", args[0]))


def _normalise(architecture):
    """``(label, raw, entries)``: the user's (or preset's) layer tuples and
    their normalised forms; ``(label, None, None)`` for an MLP."""
    if architecture is None:
        return "hidden_layer_sizes", None, None
    if isinstance(architecture, str):
        if architecture not in PRESETS:
            raise ValueError(f"unknown architecture preset {architecture!r}; expected one of "
                             f"{', '.join(map(repr, PRESETS))}, a list of layer tuples or "
                             "None")
        label, entries = repr(architecture), PRESETS[architecture]
    elif isinstance(architecture, (list, tuple)):
        if architecture and isinstance(architecture[0], str):
            raise _ArchitectureTypeError(
                f"architecture must be a list of layer tuples, got the single tuple "
                f"{architecture!r}; write [{architecture!r}]")
        label, entries = "architecture", architecture
    else:
        raise _ArchitectureTypeError(
            f"architecture must be None, {', '.join(map(repr, PRESETS))} or a list of layer "
            f"tuples, got {type(architecture).__name__} {architecture!r}")
    raw = list(entries)
    return label, raw, [_normalise_entry(label, i, e) for i, e in enumerate(raw)]


def _hidden_sizes(hidden_layer_sizes):
    sizes = hidden_layer_sizes
    if _is_int(sizes):
        sizes = (sizes,)
    if sizes is None or isinstance(sizes, str):
        raise TypeError("hidden_layer_sizes must be an int or a sequence of ints, got "
                        f"{hidden_layer_sizes!r}")
    try:
        sizes = tuple(sizes)
    except TypeError:
        raise TypeError("hidden_layer_sizes must be an int or a sequence of ints, got "
                        f"{hidden_layer_sizes!r}") from None
    return [_check_top_int(f"hidden_layer_sizes[{i}]", h) for i, h in enumerate(sizes)]


def _check_input_shape(input_shape, n_features, lengths):
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) not in lengths:
        form = "(C, H, W)" if lengths == (3,) else "(C, H, W) or (n_features,)"
        raise ValueError(f"input_shape must be a tuple {form}, got {input_shape!r}")
    shape = []
    for i, d in enumerate(input_shape):
        if not _is_int(d):
            raise _ArchitectureTypeError(
                f"input_shape[{i}] must be an int, got {d!r} in {input_shape!r}")
        if d < 1 and d != -1:
            raise ValueError(f"input_shape[{i}] must be >= 1 (or -1: inferred), got {d} in "
                             f"{input_shape!r}")
        shape.append(int(d))
    if shape.count(-1) > 1:
        raise ValueError(f"input_shape may infer one dimension (-1), got {input_shape!r}")
    if -1 in shape:
        # as NumPy's reshape: the one -1 entry takes what n_features leaves
        known = -math.prod(shape)
        if n_features % known:
            raise ValueError(f"input_shape {tuple(input_shape)} cannot hold n_features = "
                             f"{n_features}: {n_features} is not a multiple of {known}")
        shape[shape.index(-1)] = n_features // known
    size = math.prod(shape)
    if size != n_features:
        raise ValueError(f"input_shape {tuple(shape)} holds {' * '.join(map(str, shape))} = "
                         f"{size} values per sample, but X has n_features = {n_features}")
    return tuple(shape)


def _check_residual(where, previous, in_shape, out_shape):
    """A residual conv adds its real-valued input to its output: it needs a
    conv block's output as input (``previous``: the kind of the previous
    entry, 'pool' for an 'after_sign' pool, 'before_bn' for the other), and
    the same shape out as in."""
    if previous is None:
        raise ValueError(f"{where}: a residual conv cannot be the first layer: its input "
                         "is the network's raw input, not the real-valued output of a "
                         "block, so there is no shortcut to add")
    if previous not in ("conv", "before_bn"):
        raise ValueError(f"{where}: a residual conv must directly follow a conv block (a "
                         "conv, or a conv and its 'before_bn' pool): after an "
                         "'after_sign' pool there is no real-valued map to add")
    if in_shape != out_shape:
        raise ValueError(f"{where}: a residual conv must keep its input shape "
                         f"{in_shape}, got {out_shape}: use filters = {in_shape[0]} "
                         "input channels and padding 'same'")


# ---------------------------------------------------------------- public API
def is_convolutional(architecture):
    """Whether ``architecture`` has at least one conv layer.

    Validates the architecture (same errors as :func:`build_plan`'s syntax
    checks); ``None`` (an MLP) and all-dense lists are not convolutional.
    """
    _, _, entries = _normalise(architecture)
    return entries is not None and any(e[0] == "conv" for e in entries)


def resolve_input_shape(architecture, input_shape, n_features):
    """Per-sample input shape the network reads.

    Parameters
    ----------
    architecture : None, str or list of tuple
        See the module docstring.
    input_shape : tuple of int or None
        ``(C, H, W)``; the product must equal ``n_features``.
    n_features : int
        Features per sample of X (a flattened image is read C, H, W order,
        channel first).

    Returns
    -------
    shape : tuple of int
        ``(n_features,)`` for an architecture without conv layers (a given
        ``input_shape`` is checked, then the input is treated as flat).  For a
        convolutional one, ``input_shape`` itself, or, when it is None, the
        square single-channel image ``(1, s, s)`` with ``s * s == n_features``.

    Raises
    ------
    ValueError
        ``C * H * W != n_features``, a malformed ``input_shape``, or no
        ``input_shape`` for a convolutional architecture when ``n_features``
        is not a perfect square.
    """
    n_features = _check_top_int("n_features", n_features)
    if not is_convolutional(architecture):
        if input_shape is not None:
            _check_input_shape(input_shape, n_features, (1, 3))
        return (n_features,)
    if input_shape is not None:
        return _check_input_shape(input_shape, n_features, (3,))
    side = math.isqrt(n_features)
    if side * side != n_features:
        raise ValueError(f"n_features = {n_features} is not a perfect square, so the image "
                         "shape of a convolutional architecture cannot be inferred; pass "
                         "input_shape=(C, H, W)")
    return (1, side, side)


def build_plan(architecture, input_shape, n_features, n_classes, hidden_layer_sizes=(),
               real_input=True):
    """Validated layer-by-layer plan of a network, shapes included.

    Parameters
    ----------
    architecture : None, str or list of tuple
        See the module docstring.  None builds an MLP of
        ``hidden_layer_sizes``; otherwise ``hidden_layer_sizes`` is ignored.
    input_shape : tuple of int or None
        See :func:`resolve_input_shape`.
    n_features : int
        Features per sample.
    n_classes : int
        Units of the output layer.
    hidden_layer_sizes : int or sequence of int, default=()
        Hidden widths of an MLP (``architecture=None``); may be empty.
    real_input : bool, default=True
        Mark the first weight layer (conv or dense) as reading the
        real-valued input.

    Returns
    -------
    plan : list of LayerSpec
        Conv and pool steps, a 'flatten' step after the last conv / pool (if
        any), the dense layers, then the output dense layer
        (``output=True``).  Conv out = ``(filters, H + 2 pad - k + 1,
        W + 2 pad - k + 1)``; pool out = ``(C, H // 2, W // 2)``; flatten out =
        ``(C * H * W,)``; dense out = ``(units,)``.

    Raises
    ------
    ValueError
        With the layer index and the problem: unknown kinds, malformed
        tuples, non-positive sizes, bad padding or pool position, even
        kernel with 'same', conv / pool after a dense layer, a pool not after
        a conv (or pool), a 'before_bn' pool not directly after a conv, a
        kernel larger than its input map, a map pooled (or convolved) to
        nothing, unknown presets, ``C * H * W != n_features``.
    TypeError
        Non-int sizes (the errors for wrongly typed architectures and layer
        tuples are both TypeError and ValueError).
    """
    label, raw, entries = _normalise(architecture)
    n_features = _check_top_int("n_features", n_features)
    n_classes = _check_top_int("n_classes", n_classes)
    if not isinstance(real_input, bool):
        raise TypeError(f"real_input must be a bool, got {real_input!r}")
    if entries is None:
        entries = raw = [("dense", h) for h in _hidden_sizes(hidden_layer_sizes)]
    shape = resolve_input_shape(architecture, input_shape, n_features)

    plan = []
    first_weight = [real_input]  # consumed by the first conv / dense layer

    def take_real_input():
        flag, first_weight[0] = first_weight[0], False
        return flag

    def flatten(shape):
        if len(shape) == 3:
            flat = (shape[0] * shape[1] * shape[2],)
            plan.append(LayerSpec("flatten", shape, flat))
            return flat
        return shape

    previous = None  # kind of the previous user entry
    block_end = None  # how it ends a block: its kind, 'before_bn' for such a pool
    seen_dense = False
    for i, entry in enumerate(entries):
        kind = entry[0]
        where = _where(label, i, raw[i])
        if kind in ("conv", "pool") and seen_dense:
            raise ValueError(f"{where}: a {kind} layer after a dense layer; conv and pool "
                             "layers must all come before the dense layers")
        if kind == "conv":
            _, filters, k, padding, residual = entry
            C, H, W = shape
            if k > H or k > W:
                raise ValueError(f"{where}: kernel_size {k} is larger than its {H}x{W} input "
                                 "map")
            pad = (k - 1) // 2 if padding == "same" else 0
            out = (filters, H + 2 * pad - k + 1, W + 2 * pad - k + 1)
            if out[1] < 1 or out[2] < 1:  # unreachable with k <= H, W; kept as a guard
                raise ValueError(f"{where}: the conv shrinks its {H}x{W} input map to nothing")
            if residual:
                _check_residual(where, block_end, shape, out)
            plan.append(LayerSpec("conv", shape, out, units=filters, kernel_size=k,
                                  padding=padding, pad=pad, real_input=take_real_input(),
                                  residual=residual))
            shape = out
        elif kind == "pool":
            _, position = entry
            if previous not in ("conv", "pool"):
                raise ValueError(f"{where}: a pool layer must follow a conv layer (or another "
                                 "pool)")
            if position == "before_bn" and previous != "conv":
                raise ValueError(f"{where}: a 'before_bn' pool pools a conv layer's "
                                 "pre-activations, so it must directly follow a conv layer")
            C, H, W = shape
            if H // 2 < 1 or W // 2 < 1:
                raise ValueError(f"{where}: 2x2 pooling shrinks its {H}x{W} map to nothing "
                                 f"({H // 2}x{W // 2})")
            out = (C, H // 2, W // 2)
            plan.append(LayerSpec("pool", shape, out, position=position))
            shape = out
        else:
            shape = flatten(shape)
            units = entry[1]
            plan.append(LayerSpec("dense", shape, (units,), units=units,
                                  real_input=take_real_input()))
            shape = (units,)
            seen_dense = True
        previous = kind
        block_end = "before_bn" if entry == ("pool", "before_bn") else kind
    shape = flatten(shape)
    plan.append(LayerSpec("dense", shape, (n_classes,), units=n_classes,
                          real_input=take_real_input(), output=True))
    return plan
