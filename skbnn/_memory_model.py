"""Modelled training memory of LowMemBNNClassifier.

Pure Python: the paper's accounting (Wang et al., arXiv 2102.04270, §4 and
Table 2) turned into element counts times bit widths, for the 'standard'
step (Algorithm 1, float32 everywhere) and the 'low_memory' step
(Algorithm 2, the paper's "proposed" types).  The numbers are a model of
what must be stored, not a measurement: persistent variables are summed over
all layers, transient ones (∂X/Y and ∂Y) count only the largest layer.
Element counts come from :func:`plan_counts` for any network plan of
:func:`skbnn._architecture.build_plan` (convolutional or MLP), or from
:func:`mlp_counts` for an MLP.
"""
from collections import OrderedDict
from numbers import Integral

from ._architecture import build_plan

__all__ = [
    "VARIABLES",
    "TRAININGS",
    "SOLVERS",
    "ALGORITHMS",
    "mlp_counts",
    "plan_counts",
    "type_table",
    "memory_model",
    "format_memory_table",
]

MIB = 2 ** 20

# name -> (display label, persistent?), in the row order of the paper's Table 2
# (STE masks are not a Table 2 row; they sit just before the pooling masks).
VARIABLES = OrderedDict([
    ("X", ("X (layer inputs)", True)),
    ("dX_Y", ("dX, Y (shared)", False)),
    ("bn_stats", ("BN mu, psi", True)),
    ("dY", ("dY", False)),
    ("W", ("W (latent weights)", True)),
    ("dW", ("dW", True)),
    ("beta", ("beta, dbeta", True)),
    ("momenta", ("momenta", True)),
    ("ste_masks", ("STE masks", True)),
    ("pooling_masks", ("pooling masks", True)),
    ("feedback", ("B (feedback matrix in use)", False)),
    ("kernels", ("K, L (HSIC kernel matrices)", False)),
    ("dW_layer", ("dW (float, one layer)", False)),
    ("residual_bits", ("BN output signs (residual)", True)),
    ("shortcut", ("x, BN + x (shortcut)", False)),
    ("dshortcut", ("dS (shortcut gradient)", False)),
])

# Bits per element (Wang et al., Table 2).  The standard step keeps even its
# 0/1 STE and pooling masks as float32, as the C++ vanilla baseline does.
# The feedback matrices of DFA / DRTP / SigProp, HSIC's kernel matrices and
# SigProp's ternary weight gradient of one layer are float32 in both.
_TYPE_TABLES = {
    "standard": dict.fromkeys(VARIABLES, 32),
    "low_memory": {
        "X": 1, "dX_Y": 16, "bn_stats": 16, "dY": 16, "W": 16, "dW": 1,
        "beta": 16, "momenta": 16, "ste_masks": 1, "pooling_masks": 1, "feedback": 32,
        "kernels": 32, "dW_layer": 32,
        # residual blocks: the signs of each batch-norm output (no longer
        # those of the sum the next layer reads), the real-valued shortcut
        # input and sum (float32), the shortcut's gradient (as dY)
        "residual_bits": 1, "shortcut": 32, "dshortcut": 16,
    },
}
ALGORITHMS = ("backprop", "dfa", "drtp", "hsic", "sigprop")
_FEEDBACK_RULES = ("dfa", "drtp")   # fixed feedback matrices of the hidden activations
_LOCAL_RULES = ("drtp", "hsic", "sigprop")   # each block updated during a forward pass
_SHORTCUT_GRADIENT_RULES = ("backprop", "dfa")   # a shortcut carries a gradient down
TRAININGS = tuple(_TYPE_TABLES)

# Per optimiser: momenta per weight, and whether a latent weight
# row is counted.  Bop keeps no latent weight, and its binary weights are not
# counted, as in the paper's Table 5.
_SOLVERS = {"adam": (2, True), "sgd": (1, True), "bop": (1, False)}
SOLVERS = tuple(_SOLVERS)

_DTYPE_BITS = {"float32": 32, "float16": 16, "bfloat16": 16, "int16": 16, "int8": 8,
               "uint8": 8, "bool": 1}
_DEFAULT_DTYPE = {32: "float32", 16: "float16", 8: "int8", 1: "bool"}
_COUNT_KEYS = ("weights", "inputs_per_sample", "bn_channels", "max_width")
_RESIDUAL_KEYS = ("residual_activations_per_sample", "shortcut_per_sample",
                  "shortcut_gradient_per_sample")
_LIST_KEYS = ("feedback_widths", "block_inputs_per_sample", "block_activations_per_sample",
              "pool_inputs_per_sample")


def _check_positive_int(name, value, min_value=1):
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < min_value:
        raise ValueError(f"{name} must be >= {min_value}, got {value}")
    return int(value)


def _check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; "
                         f"got {value!r}")


def mlp_counts(n_features, hidden_layer_sizes, n_classes):
    """Element counts of the memory model for a binary MLP.

    Every layer is a binary dense layer followed by batch normalisation:
    ``n_features -> hidden_layer_sizes... -> n_classes``.  A thin wrapper of
    :func:`plan_counts` on the MLP plan of
    :func:`skbnn._architecture.build_plan`.

    Parameters
    ----------
    n_features : int
        Input dimension n_0.
    hidden_layer_sizes : int or sequence of int
        Hidden widths (may be empty).
    n_classes : int
        Width of the last layer.

    Returns
    -------
    counts : dict
        ``weights`` (S = sum n_{l-1} n_l), ``inputs_per_sample``
        (I = sum n_{l-1}), ``bn_channels`` (Cbn = sum n_l), ``max_width``
        (Mx = max n_l), ``pooling_inputs_per_sample`` (0: no pooling in an
        MLP) and ``layers``, the list of ``(fan_in, fan_out)``.
    """
    if isinstance(hidden_layer_sizes, Integral):
        hidden_layer_sizes = [hidden_layer_sizes]
    n_features = _check_positive_int("n_features", n_features)
    hidden = [_check_positive_int("hidden_layer_sizes[%d]" % i, h)
              for i, h in enumerate(hidden_layer_sizes)]
    n_classes = _check_positive_int("n_classes", n_classes)
    return plan_counts(build_plan(None, None, n_features, n_classes, hidden))


def plan_counts(plan):
    """Element counts of any network plan (conv or MLP), per the paper's Table 2.

    Wang et al. (arXiv 2102.04270), Table 2, counts the layer inputs X of
    every layer, one batch-norm mean and scale per channel, and the pooling
    masks at the resolution of each pool's input; the transient dX / Y and dY
    are sized by the largest layer output.

    Parameters
    ----------
    plan : list of LayerSpec
        A :func:`skbnn._architecture.build_plan` result.

    Returns
    -------
    counts : dict
        ``weights``
            Sum of the binary weights of the conv and dense layers.
        ``inputs_per_sample``
            Sum over conv and dense layers of the elements of their input,
            the first layer's (real-valued) input included.
        ``bn_channels``
            Sum of the output channels (filters / units) of the conv and dense
            layers: batch norm keeps one mean and one scale per channel.
        ``max_width``
            Largest per-sample output of a conv or dense layer (a conv
            output is counted before any pooling).
        ``pooling_inputs_per_sample``
            Sum of the input elements of the pool steps (one mask bit each).
        ``layers``
            ``(fan_in, units)`` of every conv and dense layer; for an MLP the
            ``(n_{l-1}, n_l)`` pairs.
        ``feedback_widths``
            Width of every hidden activation (input features of a dense
            layer, input channels of a convolution, every weight layer but
            the first): the columns of the DFA / DRTP feedback matrices.
        ``block_inputs_per_sample``, ``block_activations_per_sample``, ``pool_inputs_per_sample``
            The per-layer terms of ``inputs_per_sample``, of the STE masks
            (each non-output weight layer's units, or sign inputs for a
            convolutional plan) and of ``pooling_inputs_per_sample``: a
            layer-local rule keeps the records of about one block at a time.
        ``activations_per_sample`` (convolutional plans only)
            Elements that every sign activation reads, at the resolution of
            the batch norm before it (after a 'before_bn' pool, the pooled
            map; otherwise the conv output); the output layer has no sign.
            :func:`memory_model` sizes the STE masks by it.  MLP plans leave
            it out, so their STE row stays B x ``bn_channels`` (which counts
            the output layer's n_classes too) and their figures do not move.
        ``residual_activations_per_sample``, ``shortcut_per_sample``, ``shortcut_gradient_per_sample``
            Residual blocks (left out without them): the batch-norm outputs of all of
            them (the low-memory step keeps one more sign bit each: the
            proposed backward reads the signs of the batch-norm output,
            the next layer those of the sum), and the largest block's
            transient real-valued tensors: its input ``x`` and the sum
            (plus a scratch of the sum's size for its STE mask when the
            sum is itself the next block's ``x``), and the gradient the
            shortcut carries (the sum's size).
    """
    weight_layers = [s for s in plan if s.kind in ("conv", "dense")]
    if not weight_layers:
        raise ValueError("plan has no conv or dense layer (see build_plan)")

    def size(shape):
        n = 1
        for d in shape:
            n *= d
        return n

    counts = {
        "weights": sum(s.n_weights for s in weight_layers),
        "inputs_per_sample": sum(size(s.in_shape) for s in weight_layers),
        "bn_channels": sum(s.units for s in weight_layers),
        "max_width": max(size(s.out_shape) for s in weight_layers),
        "pooling_inputs_per_sample": sum(size(s.in_shape) for s in plan if s.kind == "pool"),
        "layers": [(s.fan_in, s.units) for s in weight_layers],
        "feedback_widths": [s.in_shape[0] for s in weight_layers[1:]],
        "block_inputs_per_sample": [size(s.in_shape) for s in weight_layers],
        "block_activations_per_sample": [s.units for s in weight_layers],
        "pool_inputs_per_sample": [size(s.in_shape) for s in plan if s.kind == "pool"],
    }
    if any(s.kind == "conv" for s in plan):
        # a sign reads the batch-norm output of each non-output weight layer:
        # at the conv resolution, or at the pooled one when a 'before_bn'
        # pool sits between the conv and its batch norm
        blocks = []
        for i, s in enumerate(plan):
            if s.kind not in ("conv", "dense") or s.output:
                continue
            nxt = plan[i + 1] if i + 1 < len(plan) else None
            before_bn = nxt is not None and nxt.kind == "pool" and nxt.position == "before_bn"
            blocks.append(size(nxt.out_shape if before_bn else s.out_shape))
        counts["activations_per_sample"] = sum(blocks)
        counts["block_activations_per_sample"] = blocks or [0]
    outs, real = [], []
    for i, s in enumerate(plan):
        if not s.residual:
            continue
        nxt = plan[i + 1]
        out = size(nxt.out_shape if nxt.kind == "pool" else s.out_shape)
        chained = next(r for r in plan[i + 1:] if r.kind in ("conv", "dense")).residual
        outs.append(out)
        real.append(size(s.in_shape) + out * (2 if chained else 1))
    if outs:
        counts["residual_activations_per_sample"] = sum(outs)
        counts["shortcut_per_sample"] = max(real)
        counts["shortcut_gradient_per_sample"] = max(outs)
    return counts


def _resolve_bits(name, value):
    """(bits, dtype) of one override: an int bit width or a dtype name."""
    if isinstance(value, str):
        _check_choice(f"bits[{name!r}]", value, tuple(_DTYPE_BITS))
        return _DTYPE_BITS[value], value
    bits = _check_positive_int(f"bits[{name!r}]", value)
    return bits, _DEFAULT_DTYPE.get(bits, f"{bits}-bit")


def type_table(training="low_memory", bits=None):
    """Bits and dtype name of every variable for one training mode.

    Parameters
    ----------
    training : {'low_memory', 'standard'}
        'standard' is float32 everywhere (Algorithm 1); 'low_memory' uses the
        paper's proposed types (bool X, dW and masks; float16 otherwise).
    bits : dict, optional
        Overrides, variable name (a key of ``VARIABLES``) -> bit width (int)
        or dtype name ('float32', 'float16', 'bool', ...).  Used for the
        ablation rows of the paper's Table 5.

    Returns
    -------
    table : OrderedDict
        Variable name -> ``(bits, dtype)``.
    """
    _check_choice("training", training, TRAININGS)
    table = OrderedDict((name, (b, _DEFAULT_DTYPE[b]))
                        for name, b in _TYPE_TABLES[training].items())
    for name, value in (bits or {}).items():
        _check_choice("bits key", name, tuple(VARIABLES))
        table[name] = _resolve_bits(name, value)
    return table


def _check_counts(counts):
    missing = [k for k in _COUNT_KEYS if k not in counts]
    if missing:
        raise ValueError(f"counts lacks {', '.join(missing)} (see plan_counts)")
    checked = {k: _check_positive_int(f"counts[{k!r}]", counts[k], 0) for k in _COUNT_KEYS}
    checked["pooling_inputs_per_sample"] = _check_positive_int(
        "counts['pooling_inputs_per_sample']", counts.get("pooling_inputs_per_sample", 0), 0)
    if counts.get("activations_per_sample") is not None:
        checked["activations_per_sample"] = _check_positive_int(
            "counts['activations_per_sample']", counts["activations_per_sample"], 0)
    for key in _RESIDUAL_KEYS:
        checked[key] = _check_positive_int(f"counts[{key!r}]", counts.get(key, 0), 0)
    for key in _LIST_KEYS:   # optional per-layer terms (the rules' rows)
        if counts.get(key) is not None:
            checked[key] = [_check_positive_int(f"counts[{key!r}][{i}]", v, 0)
                            for i, v in enumerate(counts[key])]
    if counts.get("layers") is not None:
        checked["layers"] = [tuple(pair) for pair in counts["layers"]]
    return checked


def _local_records(counts):
    """Per-sample records of a layer-local rule (DRTP, HSIC), which updates each
    block during the forward pass: at most two consecutive layer inputs
    (the block's own and the activation it feeds), one block's STE masks
    and one pool's masks.  None without the per-layer counts."""
    inputs = counts.get("block_inputs_per_sample")
    if not inputs:
        return None
    pairs = [a + b for a, b in zip(inputs, inputs[1:])] or inputs
    pools = counts.get("pool_inputs_per_sample") or [0]
    return max(pairs), max(counts["block_activations_per_sample"]), max(pools)


def _elements(counts, batch_size, solver, count_ste_masks, algorithm="backprop",
              standard=False):
    """Element count per variable; None for rows that do not apply."""
    S, I = counts["weights"], counts["inputs_per_sample"]
    C, Mx = counts["bn_channels"], counts["max_width"]
    P = counts["pooling_inputs_per_sample"]
    # one mask bit per sign input; without a count of them (an MLP), one per
    # batch-norm channel, the rule the recorded MLP figures were made with
    A = counts.get("activations_per_sample", C)
    local = _local_records(counts) if algorithm in _LOCAL_RULES else None
    if local is not None:
        I, A, P = local
    n_classes = counts["layers"][-1][1] if counts.get("layers") else 0
    # the feedback matrices are regenerated from a seed when read: one at a time
    feedback = n_classes * max(counts.get("feedback_widths") or [0])
    sigprop = algorithm == "sigprop"
    inputs = counts.get("block_inputs_per_sample") or [0]
    if sigprop:   # F projects the error to the input
        feedback = n_classes * inputs[0]
    rows = batch_size
    # SigProp's second pass keeps a block's signs of the clean and of the
    # perturbed batch (their pre-activations one half at a time)
    x_rows = 2 * batch_size if sigprop else batch_size
    # HSIC's kernel rows of one chunk of samples (16 KiB of float32 gradient)
    chunk = max(1, min(batch_size, 4096 // max(1, Mx)))
    n_momenta, latent = _SOLVERS[solver]
    R = counts["residual_activations_per_sample"]
    R_max = counts["shortcut_gradient_per_sample"]   # the largest residual block's output
    return {
        "X": x_rows * I,
        "dX_Y": rows * Mx,           # transient: largest layer only
        "bn_stats": 2 * C,           # mu and psi per channel
        "dY": rows * Mx,             # transient: largest layer only
        "W": S if latent else None,
        "dW": S,
        "beta": 2 * C,               # beta and its gradient
        "momenta": n_momenta * S,
        # SigProp's passes have no backward through the signs: no masks
        "ste_masks": rows * A if count_ste_masks and not sigprop else None,
        "pooling_masks": rows * P if P else None,
        "feedback": (feedback if (algorithm in _FEEDBACK_RULES or sigprop) and feedback
                     else None),
        # HSIC: rows of the kernel of z, of the centred target kernel and
        # of the gradient weights for one chunk of samples (transient)
        "kernels": 3 * batch_size * chunk if algorithm == "hsic" else None,
        # SigProp: the weight gradient of one layer as float32 -1/0/+1 (a
        # sign bit cannot say "no change"; an upper bound in the low-memory
        # step, which takes a dense layer's a block of units at a time)
        "dW_layer": (max(f * u for f, u in counts["layers"])
                     if sigprop and counts.get("layers") else None),
        # residual blocks; the standard step keeps every batch-norm output as
        # float32 anyway (no extra record), the low-memory one a sign bit of
        # each for the backward (SigProp has none).  A local rule keeps about one block's; the shortcut gradient
        # only crosses blocks under backprop and DFA.
        "residual_bits": (rows * (R if local is None else R_max)
                          if R and not standard and not sigprop else None),
        "shortcut": x_rows * counts["shortcut_per_sample"] or None,
        "dshortcut": (rows * R_max
                      if algorithm in _SHORTCUT_GRADIENT_RULES else 0) or None,
    }


def memory_model(counts, batch_size, training="low_memory", solver="adam", bits=None,
                 count_ste_masks=True, algorithm="backprop"):
    """Modelled training memory per variable (Wang et al., §4 and Table 2).

    Parameters
    ----------
    counts : dict
        Element counts as returned by :func:`plan_counts` or
        :func:`mlp_counts` (``weights``, ``inputs_per_sample``,
        ``bn_channels``, ``max_width`` and optionally
        ``pooling_inputs_per_sample`` and ``activations_per_sample``).
    batch_size : int
        Samples per training step, B >= 1.
    training : {'low_memory', 'standard'}, default='low_memory'
        Type table (see :func:`type_table`).
    solver : {'adam', 'sgd', 'bop'}, default='adam'
        Adam counts W + dW + 2 momenta, SGD-momentum W + dW + 1 momentum,
        Bop dW + 1 momentum (no latent weight row).
    bits : dict, optional
        Per-variable bit-width overrides (see :func:`type_table`).
    count_ste_masks : bool, default=True
        Count the sign-activation STE masks: B x ``activations_per_sample``
        when the counts hold it (convolutional plans), else B x Cbn.  The
        paper's Table 2 does not count them; its MLP figure of Table 4 does.
    algorithm : {'backprop', 'dfa', 'drtp', 'hsic', 'sigprop'}, default='backprop'
        The learning rule.  'dfa' and 'drtp' add the float32 feedback
        matrix in use (regenerated from a seed when read: n_classes x the
        widest hidden activation, from ``feedback_widths`` and ``layers``);
        'drtp', 'hsic' and 'sigprop' update each block during a forward
        pass, so X, the STE masks and the pooling masks count about one
        block (two consecutive layer inputs, the largest block's masks, the
        largest pool's masks) when the counts hold the per-layer terms of
        :func:`plan_counts`; 'hsic' adds the float32 rows of its three
        B x B kernel matrices for one chunk of samples; 'sigprop' keeps a
        block's signs of the clean and the perturbed batch (X and the
        shortcut tensors count 2B samples, its workspace B, and no STE
        masks), adds its float32 input projection (n_classes x the first
        layer's input) and the float32 weight gradient of its largest
        layer.
        Counts of a plan with residual blocks (``plan_counts``'s
        ``residual_activations_per_sample``, ...) add, in the low-memory
        step, one sign bit per residual batch-norm output (about one block's
        under a local rule); in both steps, the transient float32 shortcut
        input and sum of the largest residual block and, under 'backprop'
        and 'dfa' (the rules whose shortcut carries a gradient down), the
        gradient it carries, typed as dY.

    Returns
    -------
    model : OrderedDict
        One entry per counted variable, in Table 2 order, each a dict with
        ``label``, ``dtype``, ``bits``, ``elements``, ``bytes`` (exact,
        possibly fractional: elements x bits / 8), ``mib`` and
        ``persistent``; then ``total`` (dict with ``bytes`` and ``mib``),
        ``persistent_bytes`` and ``transient_bytes``.  Rows that do not apply
        (W for Bop, STE masks when not counted, pooling masks of an MLP) are
        left out.
    """
    counts = _check_counts(counts)
    batch_size = _check_positive_int("batch_size", batch_size)
    _check_choice("solver", solver, SOLVERS)
    _check_choice("algorithm", algorithm, ALGORITHMS)
    if not isinstance(count_ste_masks, bool):
        raise TypeError(f"count_ste_masks must be a bool, got {count_ste_masks!r}")
    table = type_table(training, bits)
    elements = _elements(counts, batch_size, solver, count_ste_masks, algorithm,
                         standard=training == "standard")

    model = OrderedDict()
    totals = {True: 0.0, False: 0.0}
    for name, (label, persistent) in VARIABLES.items():
        n = elements[name]
        if n is None:
            continue
        b, dtype = table[name]
        nbytes = n * b / 8
        totals[persistent] += nbytes
        model[name] = {"label": label, "dtype": dtype, "bits": b, "elements": n,
                       "bytes": nbytes, "mib": nbytes / MIB, "persistent": persistent}
    total = totals[True] + totals[False]
    model["total"] = {"bytes": total, "mib": total / MIB}
    model["persistent_bytes"] = totals[True]
    model["transient_bytes"] = totals[False]
    return model


def format_memory_table(model):
    """Plain-text table of a :func:`memory_model` result.

    Parameters
    ----------
    model : dict
        Output of :func:`memory_model`.

    Returns
    -------
    text : str
        One line per variable (variable, dtype, bits, elements, bytes, MiB,
        lifetime), then the total and the persistent / transient split.
        Bytes are rounded up to whole bytes for display only.
    """
    rows = [(v["label"], v["dtype"], str(v["bits"]), f"{v['elements']:,}",
             f"{-(-v['bytes'] // 1):,.0f}", f"{v['mib']:.2f}",
             "persistent" if v["persistent"] else "transient")
            for v in model.values() if isinstance(v, dict) and "dtype" in v]
    total = model["total"]
    rows.append(("total", "", "", "", f"{-(-total['bytes'] // 1):,.0f}",
                 f"{total['mib']:.2f}", ""))
    header = ("variable", "dtype", "bits", "elements", "bytes", "MiB", "lifetime")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    # text columns left-aligned, numeric columns right-aligned
    align = "<<>>>><"

    def line(cells):
        return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [line(header), rule] + [line(r) for r in rows[:-1]] + [rule, line(rows[-1])]
    out.append(f"persistent {model['persistent_bytes'] / MIB:.2f} MiB, "
               f"transient {model['transient_bytes'] / MIB:.2f} MiB")
    return "\n".join(out)
