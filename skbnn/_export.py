"""Export a fitted skbnn classifier as dependency-free C99 source.

:func:`export_c` writes ``<prefix>.h`` and ``<prefix>.c``: the packed
weights, the folded per-neuron thresholds and the input binariser as
``const`` arrays, and a ``predict`` / ``scores`` pair that reproduces the
estimator's ``predict`` bit for bit (no heap, no libm, only ``<stdint.h>``
and ``<stddef.h>``; 32-bit words, so 32-bit targets run it natively).

The C side uses 32-bit words: bit ``k`` of a vector is bit ``k % 32`` of
word ``k / 32`` (the little-endian halves of the estimators' 64-bit words),
and every row is padded with zero bits to a whole word.  A ternary vector
(``sign(0) = 0`` weights or activations) travels as its sign plane
(``v >= 0``) and a nonzero plane (``v != 0``).
"""
import os
import re

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._latent import F32, PSI_FLOOR
from .preprocessing import RealInput, _ThresholdBinarizer

__all__ = ["export_c"]

_C_KEYWORDS = frozenset("""
    auto break case char const continue default do double else enum extern float for goto
    if inline int long register restrict return short signed sizeof static struct switch
    typedef union unsigned void volatile while _Bool _Complex _Imaginary""".split())


# ---------------------------------------------------------------- public entry
def export_c(estimator, directory, prefix="skbnn_model"):
    """Write a fitted classifier as a C99 header and source file.

    The generated code reproduces ``estimator.predict`` exactly: the same
    input thresholds, the same integer XNOR/popcount products, batch norm
    folded into one integer threshold per binary neuron (found by
    evaluating the estimator's float32 formula at every reachable integer
    pre-activation), the float32 operations of a real-valued first layer
    and of batch-norm logits in the estimator's order, and the first
    maximum on ties.  It needs no heap, no libm and nothing beyond
    ``<stdint.h>`` and ``<stddef.h>``; scratch lives on the stack.

    Parameters
    ----------
    estimator : LocalBinaryClassifier, BEPClassifier, BEPRecurrentClassifier \
            or LowMemBNNClassifier
        A fitted classifier.  ``LowMemBNNClassifier`` must be an MLP
        (``architecture=None`` or only dense layers).
    directory : str or path-like
        An existing directory; the files are written there (it is not
        created: a missing directory raises ``FileNotFoundError``, as
        ``open`` would).
    prefix : str, default='skbnn_model'
        File names ``<prefix>.h`` / ``<prefix>.c`` and the prefix of the C
        symbols (``<prefix>_predict``, ``<prefix>_scores``,
        ``<prefix>_classes``) and of the macros (upper case); must be a C
        identifier.

    Returns
    -------
    paths : tuple of str
        The header and source paths.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        The estimator is not fitted.
    ValueError
        ``prefix`` is not a C identifier, or the estimator (or one of its
        options, e.g. a convolutional ``architecture``) is not supported.
    FileNotFoundError
        ``directory`` does not exist.

    Notes
    -----
    The C API (see the generated header): ``int <prefix>_predict(const
    float *x)`` returns the index into ``classes_`` of one sample of
    ``<PREFIX>_N_INPUTS`` floats (a ``BEPRecurrentClassifier`` reads one
    whole series, channel-major: ``x[c * T + t]``), and
    ``<prefix>_scores(x, scores)`` writes the ``<PREFIX>_N_SCORES`` class
    scores (``int32_t``; ``float`` logits for ``LowMemBNNClassifier``).
    Compile without ``-ffast-math``: the float paths rely on IEEE
    float32 arithmetic in the written order.

    Examples
    --------
    >>> import tempfile
    >>> from sklearn.datasets import load_digits
    >>> from skbnn import LocalBinaryClassifier, export_c
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = LocalBinaryClassifier((35,), max_iter=2, random_state=0).fit(X, y)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     header, source = export_c(clf, d, prefix="digits")
    """
    check_is_fitted(estimator)
    _check_prefix(prefix)
    model = _describe(estimator)
    header, source = _render(model, prefix)
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"export_c: no such directory: {directory!r}")
    paths = (os.path.join(directory, prefix + ".h"), os.path.join(directory, prefix + ".c"))
    for path, text in zip(paths, (header, source)):
        with open(path, "w", encoding="ascii") as f:
            f.write(text)
    return paths


def _check_prefix(prefix):
    if (not isinstance(prefix, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", prefix)
            or prefix in _C_KEYWORDS):
        raise ValueError(f"prefix must be a C identifier (letters, digits, '_', not starting "
                         f"with a digit, not a C keyword), got {prefix!r}")


# ---------------------------------------------------------------- bit helpers
def _pack32(bits):
    """Boolean rows -> uint32 words (bit k = word k // 32, bit k % 32), each
    row zero-padded to a whole word."""
    bits = np.atleast_2d(np.asarray(bits, dtype=bool))
    rows, n = bits.shape
    words = max(1, (n + 31) // 32)
    padded = np.zeros((rows, words * 32), dtype=bool)
    padded[:, :n] = bits
    return np.packbits(padded, axis=1, bitorder="little").view("<u4").reshape(rows, words)


def _unpack64(packed, n_bits):
    """The estimators' packed uint64 rows -> boolean rows of ``n_bits``."""
    raw = np.ascontiguousarray(packed, dtype="<u8").view(np.uint8)
    return np.unpackbits(raw, axis=1, count=n_bits, bitorder="little").astype(bool)


# ---------------------------------------------------------------- model description
class _Layer:
    """One binary layer of the export: sign plane ``w`` (and nonzero plane
    ``w_nz`` of ternary weights) as boolean rows, thresholds ``thr`` (None =
    ``z >= 0``), ``ternary_out``: emit ``z != 0`` too (sign(0) = 0)."""

    def __init__(self, w, w_nz=None, thr=None, ternary_out=False):
        self.w, self.w_nz, self.thr, self.ternary_out = w, w_nz, thr, ternary_out
        self.n_out, self.n_in = w.shape


def _input_thresholds(binarizer):
    """Per-bit float32 thresholds ``t'`` with ``x >= t'`` for every float32
    ``x`` exactly when the estimator's ``(double) x > t`` (strict binarisers)
    or ``(double) x >= t`` holds: a float comparison on the device (no
    double arithmetic on single-precision FPUs)."""
    if not isinstance(binarizer, _ThresholdBinarizer) or isinstance(binarizer, RealInput):
        raise ValueError(f"export_c does not support the input encoder "
                         f"{type(binarizer).__name__}")
    t = np.asarray(binarizer.thresholds_, dtype=np.float64).reshape(-1)
    with np.errstate(over="ignore"):
        near = t.astype(F32)
    if binarizer._strict:
        # x > t  <=>  x > down(t)  <=>  x >= next float above down(t)
        down = np.where(near.astype(np.float64) > t, np.nextafter(near, F32(-np.inf)), near)
        return np.nextafter(down, F32(np.inf)).astype(F32)
    # x >= t  <=>  x >= up(t)
    return np.where(near.astype(np.float64) < t, np.nextafter(near, F32(np.inf)),
                    near).astype(F32)


def _bn_float(Z, mean, scale, bias):
    """The estimators' inference batch norm in float32 (BatchNorm.infer)."""
    Z = np.asarray(Z, dtype=F32)
    Z = np.array(np.broadcast_to(Z, np.broadcast_shapes(Z.shape, np.shape(mean))), dtype=F32)
    Z -= mean
    Z /= np.maximum(scale, F32(PSI_FLOOR))
    Z += bias
    return Z


def fold_bn_threshold(fan_in, mean, scale, bias):
    """Integer thresholds ``T_j`` with ``BN(z)_j >= 0  <=>  z >= T_j`` for
    every integer ``z`` in ``[-fan_in, fan_in]`` (the reachable range of a
    binary product), where ``BN`` is the float32 inference batch norm.

    Each float32 step (minus a constant, over a positive constant, plus a
    constant) is monotone, so the set is an up-set; it is found by
    evaluating the exact float32 formula at every reachable ``z`` and
    checked to be one.  ``fan_in + 1`` means never, ``-fan_in`` always.
    """
    mean, scale, bias = (np.asarray(a, dtype=F32) for a in (mean, scale, bias))
    z = np.arange(-fan_in, fan_in + 1, dtype=np.int64)
    on = _bn_float(z[:, None].astype(F32), mean[None, :], scale[None, :], bias[None, :]) >= 0
    first = np.where(on.any(axis=0), np.argmax(on, axis=0), len(z))
    thr = np.where(first < len(z), z[np.minimum(first, len(z) - 1)], fan_in + 1)
    expected = z[:, None] >= thr[None, :]
    if not np.array_equal(on, expected):   # only non-finite statistics get here
        bad = int(np.flatnonzero((on != expected).any(axis=0))[0])
        raise ValueError(f"export_c: the batch norm of neuron {bad} is not monotone in its "
                         "input (non-finite running statistics?); it cannot be folded")
    return thr.astype(np.int64)


def _describe(est):
    """A plain description of the fitted network (dict) for the renderer."""
    name = type(est).__name__
    if name == "BEPRecurrentClassifier":
        return _describe_recurrent(est)
    if name in ("LocalBinaryClassifier", "BEPClassifier"):
        return _describe_cpr(est)
    if name == "LowMemBNNClassifier":
        return _describe_lowmem(est)
    raise ValueError(f"export_c does not support {name}; it exports LocalBinaryClassifier, "
                     "BEPClassifier, BEPRecurrentClassifier and LowMemBNNClassifier (MLP)")


def _cpr_layers(est, hidden, packed):
    """Binary hidden layers of the CP+R estimators: sign(H) (sign(0) = +1, or
    0 for ternary weights), activations sign(z) >= 0 (or ternary)."""
    layers = []
    for h, p in zip(hidden, packed):
        h = np.asarray(h)
        w = _unpack64(p, h.shape[1])
        w_nz = (h != 0) if est._ternary else None
        layers.append(_Layer(w, w_nz, None, est._ternary_activations))
    return layers


def _describe_cpr(est):
    layers = _cpr_layers(est, est.hidden_weights_, est.packed_weights_)
    if type(est).__name__ == "LocalBinaryClassifier":
        readout = np.asarray(est.classifiers_[-1]).T >= 0   # (C_out, K)
    else:
        readout = np.asarray(est.prototypes_) >= 0          # (C, K)
    return {"kind": "cpr", "estimator": type(est).__name__, "classes": est.classes_,
            "n_inputs": int(est.n_features_in_), "input": _input_thresholds(est.binarizer_),
            "bits_per_feature": int(est.binarizer_.thresholds_.shape[1]),
            "layers": layers, "readout": readout, "score_type": "int32_t"}


def _describe_recurrent(est):
    enc = est.binarizer_
    binarizer = enc.binarizer
    (n_state, n_rec), (n_out, _) = (np.asarray(h).shape for h in est.hidden_weights_)
    rec, out = _cpr_layers(est, est.hidden_weights_, est.packed_weights_)
    expansion = None
    if enc.expansion_ is not None:
        expansion = _Layer(np.asarray(enc.expansion_) >= 0)
    return {"kind": "recurrent", "estimator": type(est).__name__, "classes": est.classes_,
            "n_inputs": int(est.n_features_in_), "n_channels": int(est.n_channels_),
            "n_timepoints": int(est.n_timepoints_), "input": _input_thresholds(binarizer),
            "bits_per_feature": int(binarizer.thresholds_.shape[1]),
            "expansion": expansion, "n_x": n_rec - n_state, "recurrent": rec, "output": out,
            "initial_state": np.asarray(est.initial_state_) >= 0,
            "readout": np.asarray(est.prototypes_) >= 0, "score_type": "int32_t"}


def _describe_lowmem(est):
    plan = est.layer_plan_
    if any(spec.kind != "dense" for spec in plan):
        kinds = sorted({spec.kind for spec in plan if spec.kind != "dense"})
        raise ValueError(
            f"export_c supports LowMemBNNClassifier MLPs only; architecture="
            f"{est.architecture!r} has {'/'.join(kinds)} layers, which are not supported yet")
    real = isinstance(est.binarizer_, RealInput)
    scale = float(getattr(est.binarizer_, "scale_", 1.0)) if real else 1.0
    dense = []
    for spec, s in zip(plan, est.layers_):
        stats = [np.asarray(s[k]).astype(F32) for k in ("running_mean", "running_scale",
                                                         "bias")]
        w = _unpack64(s["packed"], spec.fan_in)
        entry = {"w": w, "real": spec.real_input, "output": spec.output,
                 "mean": stats[0], "psi": np.maximum(stats[1], F32(PSI_FLOOR)),
                 "bias": stats[2]}
        if not spec.real_input and not spec.output:
            entry["layer"] = _Layer(w, None, fold_bn_threshold(spec.fan_in, *stats))
        dense.append(entry)
    model = {"kind": "lowmem", "estimator": type(est).__name__, "classes": est.classes_,
             "n_inputs": int(est.n_features_in_), "dense": dense, "input_scale": scale,
             "score_type": "float"}
    if not real:
        model["input"] = _input_thresholds(est.binarizer_)
        model["bits_per_feature"] = int(est.binarizer_.thresholds_.shape[1])
    return model


# ---------------------------------------------------------------- C rendering
_RUNTIME = {
    "popcount": """
/* population count of a 32-bit word: the compiler's builtin where the
 * target has an instruction for it, else the portable SWAR form */
static int skbnn_popcount(uint32_t v)
{
#if defined(__GNUC__) && !defined(SKBNN_PORTABLE_POPCOUNT) && \\
    (defined(__POPCNT__) || defined(__aarch64__) || defined(__ARM_FEATURE_SVE))
    return __builtin_popcountl((unsigned long)v);
#else
    v = v - ((v >> 1) & 0x55555555u);
    v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
    v = (v + (v >> 4)) & 0x0f0f0f0fu;
    return (int)((v * 0x01010101u) >> 24);
#endif
}
""",
    "set_bit": """
static void skbnn_set_bit(uint32_t *v, int i, int on)
{
    const uint32_t m = (uint32_t)1u << (i & 31);
    if (on) v[i >> 5] |= m;
    else v[i >> 5] &= ~m;
}
""",
    "clear": """
static void skbnn_clear(uint32_t *v, int n_bits)
{
    int i;
    for (i = 0; i < (n_bits + 31) >> 5; i++) v[i] = 0u;
}
""",
    "dot": """
/* <a, w> of +-1 vectors (bit 1 = +1), or of ternary ones when a nonzero
 * plane is given (NULL: every element is nonzero); padding bits are 0 */
static int32_t skbnn_dot(const uint32_t *a, const uint32_t *a_nz, const uint32_t *w,
                         const uint32_t *w_nz, int words, int n_bits)
{
    int32_t agree = 0, live = 0;
    int i;
    if (a_nz == NULL && w_nz == NULL) {
        for (i = 0; i < words; i++) agree += skbnn_popcount(a[i] ^ w[i]);
        return (int32_t)n_bits - 2 * agree;
    }
    for (i = 0; i < words; i++) {
        const uint32_t m = (a_nz ? a_nz[i] : 0xffffffffu) & (w_nz ? w_nz[i] : 0xffffffffu);
        live += skbnn_popcount(m);
        agree += skbnn_popcount(~(a[i] ^ w[i]) & m);
    }
    return 2 * agree - live;
}
""",
    "layer": """
/* out_j = [z_j >= thr_j] (thr NULL: 0) of z = W in; out_nz_j = [z_j != 0]
 * for ternary activations (sign(0) = 0) */
static void skbnn_layer(const uint32_t *in, const uint32_t *in_nz, int n_in,
                        const uint32_t *w, const uint32_t *w_nz, int n_out,
                        const int32_t *thr, uint32_t *out, uint32_t *out_nz)
{
    const int words = (n_in + 31) >> 5;
    int j;
    for (j = 0; j < n_out; j++) {
        const size_t row = (size_t)j * (size_t)words;
        const int32_t z = skbnn_dot(in, in_nz, w + row, w_nz ? w_nz + row : NULL, words, n_in);
        skbnn_set_bit(out, j, z >= (thr ? thr[j] : 0));
        if (out_nz) skbnn_set_bit(out_nz, j, z != 0);
    }
}
""",
    "binarize": """
/* input bit j*b + k = [x[j*stride] >= thr[j*b + k]] */
static void skbnn_binarize(const float *x, int stride, int n_features, int b,
                           const float *thr, uint32_t *out)
{
    int j, k;
    for (j = 0; j < n_features; j++) {
        const float v = x[(size_t)j * (size_t)stride];
        for (k = 0; k < b; k++) skbnn_set_bit(out, j * b + k, v >= thr[j * b + k]);
    }
}
""",
    "copy_bits": """
static void skbnn_copy_bits(uint32_t *dst, int offset, const uint32_t *src, int n_bits)
{
    int i;
    for (i = 0; i < n_bits; i++) skbnn_set_bit(dst, offset + i, (int)((src[i >> 5] >> (i & 31)) & 1u));
}
""",
    "dot_real": """
/* sum_k x_k s(w_k), s = +-1, as the estimator's kernel computes it: 16
 * lanes (lane l takes k = 16c + l, padding reads 0), P sums x where the bit
 * is 1, T sums all x, then (P + P) - T per lane and the tree (l, l+8),
 * (l, l+4), (l, l+2), (0, 1).  One rounding per statement. */
static float skbnn_dot_real(const float *x, const uint32_t *w, int n)
{
    float p[16], t[16];
    int c, l, h;
    for (l = 0; l < 16; l++) { p[l] = 0.0f; t[l] = 0.0f; }
    for (c = 0; c * 16 < n; c++) {
        const uint32_t bits = w[c >> 1] >> (16 * (c & 1));
        for (l = 0; l < 16; l++) {
            const int k = c * 16 + l;
            const float v = k < n ? x[k] : 0.0f;
            t[l] = t[l] + v;
            if ((bits >> l) & 1u) p[l] = p[l] + v;
        }
    }
    for (l = 0; l < 16; l++) { const float d = p[l] + p[l]; p[l] = d - t[l]; }
    for (h = 8; h >= 1; h /= 2)
        for (l = 0; l < h; l++) p[l] = p[l] + p[l + h];
    return p[0];
}
""",
    "bn": """
/* the inference batch norm in float32: ((z - mean) / psi) + bias */
static float skbnn_bn(float z, float mean, float psi, float bias)
{
    z = z - mean;
    z = z / psi;
    z = z + bias;
    return z;
}
""",
}
# what each runtime piece calls
_DEPENDS = {"dot": ["popcount"], "layer": ["dot", "set_bit"], "binarize": ["set_bit"],
            "copy_bits": ["set_bit"]}
_ORDER = ["popcount", "set_bit", "clear", "dot", "layer", "binarize", "copy_bits", "dot_real",
          "bn"]


class _Emitter:
    """Collects the const arrays (with their byte counts) and the runtime
    pieces the generated functions use."""

    def __init__(self):
        self.arrays, self.nbytes, self.used = [], {}, set()
        self.stack = 0   # bytes of the scratch buffers the body declares

    def use(self, *pieces):
        for piece in pieces:
            if piece not in self.used:
                self.used.add(piece)
                self.use(*_DEPENDS.get(piece, []))

    def array(self, name, ctype, values, what):
        values = np.asarray(values).reshape(-1)
        if ctype == "uint32_t":
            items = [f"0x{int(v):08x}u" for v in values]
            per = 8
        elif ctype == "float":
            items = [_float_literal(v) for v in values]
            per = 4
        else:
            items = [str(int(v)) for v in values]
            per = 12
        lines = [", ".join(items[i:i + per]) for i in range(0, len(items), per)]
        body = ",\n    ".join(lines) if lines else "0"
        size = max(1, len(values))
        self.arrays.append(f"static const {ctype} {name}[{size}] = {{\n    {body}\n}};\n")
        item = {"uint32_t": 4, "float": 4, "int32_t": 4, "int16_t": 2}[ctype]
        self.nbytes[what] = self.nbytes.get(what, 0) + item * len(values)
        return name

    def runtime(self):
        return "".join(_RUNTIME[p] for p in _ORDER if p in self.used)


def _float_literal(v):
    v = float(F32(v))
    if np.isinf(v):
        return "SKBNN_INF" if v > 0 else "(-SKBNN_INF)"
    if v == 0.0:
        return "-0.0f" if np.signbit(v) else "0.0f"
    mantissa, exponent = float(v).hex().split("p")
    return f"{mantissa.rstrip('0').rstrip('.')}p{exponent}f"   # exact: C99 hex float


def _thr_array(em, name, thr):
    """int32 thresholds, or NULL when all are 0 (no array)."""
    if thr is None or not np.any(thr):
        return "NULL"
    return em.array(name, "int32_t", thr, "thresholds")


def _layer_arrays(em, layer, name):
    w = em.array(f"{name}_w", "uint32_t", _pack32(layer.w), "weights")
    w_nz = ("NULL" if layer.w_nz is None
            else em.array(f"{name}_wnz", "uint32_t", _pack32(layer.w_nz), "weights"))
    return w, w_nz, _thr_array(em, f"{name}_thr", layer.thr)


def _words(n_bits):
    return max(1, (n_bits + 31) // 32)


def _emit_cpr_body(m, em):
    """Body of ``scores`` for Local / BEP: binarise, the binary layers
    (ping-pong buffers), then the readout products."""
    em.use("binarize", "layer", "clear")
    layers = m["layers"]
    n_bits = m["input"].size
    widths = [n_bits] + [layer.n_out for layer in layers]
    mw = max(_words(n) for n in widths)
    ternary = any(layer.ternary_out for layer in layers)
    thr = em.array("in_thr", "float", m["input"], "input thresholds")
    lines = [f"    uint32_t buf[2][{mw}];"]
    em.stack += 8 * mw
    if ternary:
        lines.append(f"    uint32_t nz[2][{mw}];")
        em.stack += 8 * mw
    lines += [f"    skbnn_clear(buf[0], {n_bits});",
              f"    skbnn_binarize(x, 1, {m['n_inputs']}, {m['bits_per_feature']}, {thr}, buf[0]);"]
    cur, cur_nz = 0, "NULL"
    for i, layer in enumerate(layers):
        w, w_nz, t = _layer_arrays(em, layer, f"l{i}")
        nxt = 1 - cur
        out_nz = f"nz[{nxt}]" if layer.ternary_out else "NULL"
        lines.append(f"    skbnn_clear(buf[{nxt}], {layer.n_out});")
        if layer.ternary_out:
            lines.append(f"    skbnn_clear(nz[{nxt}], {layer.n_out});")
        lines.append(f"    skbnn_layer(buf[{cur}], {cur_nz}, {layer.n_in}, {w}, {w_nz}, "
                     f"{layer.n_out}, {t}, buf[{nxt}], {out_nz});")
        cur, cur_nz = nxt, out_nz
    lines += _readout_lines(em, m["readout"], f"buf[{cur}]", cur_nz)
    return lines


def _readout_lines(em, readout, a, a_nz):
    n_scores, k = readout.shape
    rows = em.array("readout", "uint32_t", _pack32(readout), "readout")
    return [f"    for (c = 0; c < {n_scores}; c++)",
            f"        scores[c] = skbnn_dot({a}, {a_nz}, {rows} + (size_t)c * {_words(k)}u, "
            f"NULL, {_words(k)}, {k});"]


def _emit_recurrent_body(m, em):
    """Body of ``scores`` for BEPRecurrentClassifier: per time step binarise
    the channels, expand, then s_t = sign(W [a_t, s_{t-1}]); readout."""
    em.use("binarize", "layer", "clear", "copy_bits")
    C, T, b = m["n_channels"], m["n_timepoints"], m["bits_per_feature"]
    n_bits, n_x = C * b, m["n_x"]
    rec, out = m["recurrent"], m["output"]
    n_s, n_y = rec.n_out, out.n_out
    thr = em.array("in_thr", "float", m["input"], "input thresholds")
    s0 = em.array("s0", "uint32_t", _pack32(m["initial_state"]), "initial state")
    rw, rnz, rt = _layer_arrays(em, rec, "rec")
    ow, onz, ot = _layer_arrays(em, out, "out")
    ternary = rec.ternary_out or out.ternary_out
    if ternary:  # BEPRecurrentClassifier has no ternary options; refuse if one appears
        raise ValueError("export_c: ternary activations of BEPRecurrentClassifier "
                         "are not supported")
    em.stack += 4 * sum(_words(k) for k in (n_bits, n_x, n_x + n_s, n_s, n_y))
    lines = [f"    uint32_t b[{_words(n_bits)}], a[{_words(n_x)}], u[{_words(n_x + n_s)}], "
             f"s[{_words(n_s)}], y[{_words(n_y)}];",
             "    int t;",
             f"    skbnn_clear(u, {n_x + n_s});",
             f"    for (t = 0; t < {_words(n_s)}; t++) s[t] = {s0}[t];",
             f"    skbnn_copy_bits(u, {n_x}, s, {n_s});",
             f"    for (t = 0; t < {T}; t++) {{"]
    if m["expansion"] is not None:
        e = m["expansion"]
        ew = em.array("expansion", "uint32_t", _pack32(e.w), "weights")
        lines += [f"        skbnn_clear(b, {n_bits});",
                  f"        skbnn_binarize(x + t, {T}, {C}, {b}, {thr}, b);",
                  f"        skbnn_clear(a, {n_x});",
                  f"        skbnn_layer(b, NULL, {n_bits}, {ew}, NULL, {n_x}, NULL, a, NULL);"]
    else:
        lines += [f"        skbnn_clear(a, {n_x});",
                  f"        skbnn_binarize(x + t, {T}, {C}, {b}, {thr}, a);",
                  "        (void)b;"]
    lines += [f"        skbnn_copy_bits(u, 0, a, {n_x});",
              f"        skbnn_clear(s, {n_s});",
              f"        skbnn_layer(u, NULL, {n_x + n_s}, {rw}, {rnz}, {n_s}, {rt}, s, NULL);",
              f"        skbnn_copy_bits(u, {n_x}, s, {n_s});",
              "    }",
              f"    skbnn_clear(y, {n_y});",
              f"    skbnn_layer(s, NULL, {n_s}, {ow}, {onz}, {n_y}, {ot}, y, NULL);"]
    lines += _readout_lines(em, m["readout"], "y", "NULL")
    return lines


def _emit_lowmem_body(m, em):
    """Body of ``scores`` for a LowMemBNNClassifier MLP: a real-valued first
    layer (float dot, input scale, float batch norm) or binarised input,
    binary hidden layers with folded thresholds, float batch-norm logits."""
    dense = m["dense"]
    widths = [d["w"].shape[0] for d in dense[:-1]]
    lines = []
    if "input" in m:
        em.use("binarize", "clear")
        n_bits = m["input"].size
        widths.append(n_bits)
    mw = max(_words(n) for n in widths) if widths else 1
    lines += [f"    uint32_t buf[2][{mw}];", "    int j;"]
    em.stack += 8 * mw
    cur = 0
    if "input" in m:
        thr = em.array("in_thr", "float", m["input"], "input thresholds")
        lines += [f"    skbnn_clear(buf[0], {n_bits});",
                  f"    skbnn_binarize(x, 1, {m['n_inputs']}, {m['bits_per_feature']}, {thr}, "
                  "buf[0]);"]
    for i, d in enumerate(dense):
        n_out, n_in = d["w"].shape
        name = f"l{i}"
        if d["real"]:
            em.use("dot_real", "bn")
            if not d["output"]:
                em.use("set_bit", "clear")
            w = em.array(f"{name}_w", "uint32_t", _pack32(d["w"]), "weights")
            bn = [em.array(f"{name}_{k}", "float", d[k], "batch norm")
                  for k in ("mean", "psi", "bias")]
            scale = "" if m["input_scale"] == 1.0 else \
                f"\n        z = z * {_float_literal(m['input_scale'])};"
            target = ("scores[j] = z;" if d["output"] else
                      f"skbnn_set_bit(buf[{1 - cur}], j, z >= 0.0f);")
            if not d["output"]:
                lines.append(f"    skbnn_clear(buf[{1 - cur}], {n_out});")
            lines += [f"    for (j = 0; j < {n_out}; j++) {{",
                      f"        float z = skbnn_dot_real(x, {w} + (size_t)j * {_words(n_in)}u, "
                      f"{n_in});{scale}",
                      f"        z = skbnn_bn(z, {bn[0]}[j], {bn[1]}[j], {bn[2]}[j]);",
                      f"        {target}",
                      "    }"]
        elif d["output"]:
            em.use("dot", "bn")
            w = em.array(f"{name}_w", "uint32_t", _pack32(d["w"]), "weights")
            bn = [em.array(f"{name}_{k}", "float", d[k], "batch norm")
                  for k in ("mean", "psi", "bias")]
            lines += [f"    for (j = 0; j < {n_out}; j++) {{",
                      f"        const int32_t z = skbnn_dot(buf[{cur}], NULL, {w} + (size_t)j * "
                      f"{_words(n_in)}u, NULL, {_words(n_in)}, {n_in});",
                      f"        scores[j] = skbnn_bn((float)z, {bn[0]}[j], {bn[1]}[j], "
                      f"{bn[2]}[j]);",
                      "    }"]
        else:
            em.use("layer", "clear")
            w, w_nz, t = _layer_arrays(em, d["layer"], name)
            lines += [f"    skbnn_clear(buf[{1 - cur}], {n_out});",
                      f"    skbnn_layer(buf[{cur}], NULL, {n_in}, {w}, {w_nz}, {n_out}, {t}, "
                      f"buf[{1 - cur}], NULL);"]
        if not d["output"]:
            cur = 1 - cur
    if not widths:   # one real-input layer: no bit buffer is read
        lines.insert(1, "    (void)buf;")
    return lines


def _class_lines(classes):
    """The class list as comment lines, and whether labels fit a C integer array."""
    classes = np.asarray(classes)
    is_int = classes.dtype.kind in "iu" and (classes.size == 0 or int(classes.max()) < 2**63)
    text = [str(int(c)) if is_int else repr(c.item() if hasattr(c, "item") else c)
            for c in classes]
    text = [t.replace("*/", "* /") for t in text]
    lines = [f" *   {i}: {t}" for i, t in enumerate(text)]
    return lines, is_int


def _render(m, prefix):
    em = _Emitter()
    body = {"cpr": _emit_cpr_body, "recurrent": _emit_recurrent_body,
            "lowmem": _emit_lowmem_body}[m["kind"]](m, em)
    score_t = m["score_type"]
    n_classes = len(m["classes"])
    n_scores = (m["readout"].shape[0] if "readout" in m else m["dense"][-1]["w"].shape[0])
    upper = prefix.upper()
    class_lines, int_labels = _class_lines(m["classes"])
    labels_decl = ""
    if int_labels:
        wide = np.any(np.abs(np.asarray(m["classes"]).astype(np.float64)) >= 2**31 - 1)
        label_t = "int64_t" if wide else "int32_t"
        labels = ", ".join(str(int(c)) + ("LL" if wide else "") for c in m["classes"])
        labels_decl = f"const {label_t} {prefix}_classes[{n_classes}] = {{{labels}}};\n"
    const_bytes = sum(em.nbytes.values())
    if int_labels:
        const_bytes_labels = n_classes * (8 if wide else 4)
    else:
        const_bytes_labels = 0
    predict_rule = ("scores[0] > 0 (one +/-1 output: index 1 when positive)"
                    if n_scores == 1 else "the first maximum of the scores")
    series = ""
    if m["kind"] == "recurrent":
        series = (f" * One call classifies one whole series of {m['n_channels']} channel(s) x "
                  f"{m['n_timepoints']} time steps,\n * channel-major: x[c * "
                  f"{m['n_timepoints']} + t] (the last window the estimator reads).\n")
    breakdown = "\n".join(f" *   {k}: {v} bytes" for k, v in em.nbytes.items())
    header = f"""/* {prefix}.h -- generated by skbnn.export_c from a fitted {m['estimator']}.
 *
 * Plain C99: no heap, no libm, only <stdint.h> and <stddef.h>.  Compile
 * {prefix}.c with any C99 compiler (without -ffast-math: float paths rely
 * on IEEE float32 arithmetic in the written order); the results equal the
 * estimator's predict() exactly.
 *
 * Input: {upper}_N_INPUTS = {m['n_inputs']} floats per call (the columns of X).
{series} *
 * Classes ({n_classes}; predict returns an index into this list, the estimator's classes_):
{chr(10).join(class_lines)}
 *
 * Memory: {const_bytes + const_bytes_labels} bytes of const data (flash/ROM):
{breakdown}
 *   class labels: {const_bytes_labels} bytes
 * Scratch: about {em.stack + 4 * n_scores} bytes of buffers on the stack (predict), no static
 * or heap memory.
 */
#ifndef {upper}_H
#define {upper}_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

#define {upper}_N_INPUTS {m['n_inputs']}
#define {upper}_N_CLASSES {n_classes}
#define {upper}_N_SCORES {n_scores}
#define {upper}_CONST_BYTES {const_bytes + const_bytes_labels}
#define {upper}_STACK_BYTES {em.stack + 4 * n_scores}

"""
    if int_labels:
        header += (f"/* the class labels (classes_): label = {prefix}_classes[{prefix}_predict(x)] */\n"
                   f"extern const {label_t} {prefix}_classes[{n_classes}];\n\n")
    header += f"""/* Index into the class list (0 .. {upper}_N_CLASSES - 1) of the sample x
 * ({upper}_N_INPUTS floats): {predict_rule}. */
int {prefix}_predict(const float *x);

/* The {upper}_N_SCORES class scores of x ({score_t}), what predict compares:
 * {_score_doc(m, n_scores)} */
void {prefix}_scores(const float *x, {score_t} *scores);

#ifdef __cplusplus
}}
#endif

#endif /* {upper}_H */
"""
    if n_scores == 1:
        decide = f"    {prefix}_scores(x, scores);\n    return scores[0] > 0 ? 1 : 0;"
    else:   # the first maximum, as numpy.argmax
        decide = (f"    int c, best = 0;\n    {prefix}_scores(x, scores);\n"
                  f"    for (c = 1; c < {n_scores}; c++)\n"
                  "        if (scores[c] > scores[best]) best = c;\n"
                  "    return best;")
    uses_c = m["kind"] in ("cpr", "recurrent")
    source = f"""/* {prefix}.c -- generated by skbnn.export_c from a fitted {m['estimator']}; see {prefix}.h. */
#include <stddef.h>
#include <stdint.h>

#include "{prefix}.h"

#define SKBNN_INF (1e30f * 1e30f)

{labels_decl}
{"".join(em.arrays)}{em.runtime()}
void {prefix}_scores(const float *x, {score_t} *scores)
{{
{"    int c;" + chr(10) if uses_c else ""}{chr(10).join(body)}
}}

int {prefix}_predict(const float *x)
{{
    {score_t} scores[{n_scores}];
{decide}
}}
"""
    return header, source


def _score_doc(m, n_scores):
    if m["kind"] == "lowmem":
        return "the logits of the last batch norm (decision_function)."
    if n_scores == 1:
        return "the one +/-1 readout score (decision_function)."
    return "integer readout scores <a, P_c> (decision_function, one per class)."
