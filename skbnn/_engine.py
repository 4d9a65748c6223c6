"""Binary-layer engine shared by every skbnn estimator.

A :class:`BinaryLayer` owns one fully connected layer's training state:
int16 hidden weights ``H`` (n_out x n_in, row = neuron), the packed visible
weights ``sign(H)`` (bit 1 = +1, sign(0) = +1) and, when a learning rule
propagates errors backward, the packed transpose.  A ternary layer (the
reference codes' ``sign(0) = 0``: a hidden weight at 0 is a pruned
connection) also keeps the plane ``H > 0``: with ``U = [H >= 0]`` and
``V = [H > 0]`` read as +/-1, ``sign(H) = (U + V) / 2``, so every ternary
product is the half-sum of two binary XNOR/popcount products.  The
learning rules only decide *which* neurons move toward *which* target; the
engine does the forward products, the clipped-perceptron (CP) step,
reinforcement (R) and keeps the packed copies in sync.  No scikit-learn in
here.

A CP+R batch is split in two (see :class:`BatchUpdates`): what the batch
asks of every layer, computed from the pre-update weights (a
:class:`CPStep` per layer), then applying it.  Because the CP step of a
batch is a sum of integer contributions saturated once, the steps of the
disjoint shards of a batch, concatenated, are exactly the step of the whole
batch; :mod:`skbnn.distributed` relies on that.
"""
import math
from dataclasses import dataclass

import numpy as np

from . import _kernels
from .preprocessing import as_kernel_input

INT16_MAX = 32767


def n_words(n_bits):
    """uint64 words holding ``n_bits`` packed bits."""
    return (n_bits + 63) // 64


def init_hidden_weights(n_out, n_in, init_std, odd, clip, rng):
    """int16 hidden weights drawn as ``trunc(Normal(0, init_std**2))``.

    With ``odd`` every value becomes ``2*floor(h/2) + 1`` so that, moving in
    steps of +/-2, it never reaches 0 and ``sign(H)`` never ties.  Values are
    clipped to ``[-clip, clip]``.
    """
    h = np.trunc(rng.normal(0.0, init_std, size=(n_out, n_in)))
    if odd:
        h = 2.0 * np.floor(h / 2.0) + 1.0
    return np.clip(h, -clip, clip).astype(np.int16)


class BinaryLayer:
    """One binary fully connected layer over NumPy-held state.

    Parameters
    ----------
    hidden : ndarray of int16, shape (n_out, n_in)
        Hidden integer weights; updated in place (copied first when it is
        read-only, e.g. after loading a memmapped pickle).
    packed : ndarray of uint64, shape (n_out, ceil(n_in / 64)), optional
        Packed ``sign(hidden)``; rebuilt when omitted.
    with_transpose : bool, default=False
        Also keep the packed transpose (n_in, ceil(n_out / 64)) in sync,
        for rules that project targets backward through ``W.T``.
    ternary : bool, default=False
        Weights are ``sign(H)`` with ``sign(0) = 0``: also keep the packed
        plane ``H > 0`` (and its transpose) in sync.
    """

    def __init__(self, hidden, packed=None, with_transpose=False, ternary=False):
        self.hidden = _writable(hidden, np.int16)
        self.n_out, self.n_in = self.hidden.shape
        if packed is None:
            packed = _kernels.pack_sign_int16(self.hidden)
        self.packed = _writable(packed, np.uint64)
        self.packed_t = (_kernels.transpose_bits(self.packed, self.n_in)
                         if with_transpose else None)
        self.packed_pos = self.packed_pos_t = None
        if ternary:
            self.packed_pos = positive_plane(self.hidden)
            if with_transpose:
                self.packed_pos_t = _kernels.transpose_bits(self.packed_pos, self.n_in)

    @property
    def ternary(self):
        return self.packed_pos is not None

    @property
    def nbytes(self):
        """Bytes of the arrays this layer (or view) holds."""
        return sum(a.nbytes for a in (self.hidden, self.packed, self.packed_t, self.packed_pos,
                                      self.packed_pos_t) if a is not None)

    def forward(self, inputs, n_threads=1):
        """Integer pre-activations ``z = W a`` for packed inputs (n, n_words(n_in)),
        or for ternary inputs given as their two planes (:func:`ternary_planes`)."""
        if isinstance(inputs, tuple):  # a = (U + V) / 2 over the planes z >= 0, z > 0
            return half_sum(self.forward(inputs[0], n_threads),
                            self.forward(inputs[1], n_threads))
        z = _kernels.bgemm(inputs, self.packed, self.n_in, n_threads)
        if self.ternary:
            z = half_sum(z, _kernels.bgemm(inputs, self.packed_pos, self.n_in, n_threads))
        return z

    def forward_sign(self, inputs, n_threads=1):
        """Packed ``sign(W a)`` (sign(0) = +1) without an integer matrix when
        the weights are binary (inference)."""
        if self.ternary:
            return _kernels.pack_sign_int32(self.forward(inputs, n_threads))
        return _kernels.bgemm_sign(inputs, self.packed, self.n_in, n_threads)

    def hidden_field(self, inputs, n_threads=1):
        """Exact hidden fields ``H a`` (int32, n x n_out) for packed inputs:
        the pre-activation the hidden weights would give, which a hidden
        stability ranks neurons by (needs the hidden weights)."""
        self._check_trainable()
        if isinstance(inputs, tuple):  # ternary inputs: half-sum over the two planes
            return half_sum(_kernels.hidden_field(self.hidden, inputs[0], n_threads),
                            _kernels.hidden_field(self.hidden, inputs[1], n_threads))
        return _kernels.hidden_field(self.hidden, inputs, n_threads)

    def back_project(self, targets, gate, n_threads=1):
        """``W.T (g * t)`` per sample for packed targets and gates
        (n, n_words(n_out)): integer sums over the neurons the gate lets
        through (needs the transpose)."""
        v = _kernels.bgemm_masked(targets, gate, self.packed_t, self.n_out, n_threads)
        if self.ternary:
            v = half_sum(v, _kernels.bgemm_masked(targets, gate, self.packed_pos_t, self.n_out,
                                                  n_threads))
        return v

    def back_project_sign(self, targets, gate, n_threads=1):
        """Packed ``sign(W.T (g * t))`` (ties -> +1), without an integer
        matrix when the weights are binary."""
        if self.ternary:
            return _kernels.pack_sign_int32(self.back_project(targets, gate, n_threads))
        return _kernels.bgemm_masked_sign(targets, gate, self.packed_t, self.n_out, n_threads)

    def select(self, z, targets, group_size, active=None, zero_is_wrong=False, n_threads=1):
        """Per sample and block of ``group_size`` neurons, the wrong neuron with
        the smallest |z| (see :func:`skbnn._kernels.select_easiest`)."""
        return _kernels.select_easiest(z, targets, group_size, zero_is_wrong, active,
                                       n_threads)

    def update(self, selected, targets, inputs, clip=INT16_MAX, n_threads=1, input_mask=None):
        """CP step of a batch, from the pre-update weights:
        ``H[j] += 2 t_mj a_m`` for every selected (m, j), saturated at ``clip``
        (``input_mask``: ternary inputs, 0 where its bit is clear).

        Returns the number of visible-weight sign flips.
        """
        self._check_trainable()
        flips = _kernels.cpr_update(self.hidden, self.packed, self.packed_t, selected,
                                    targets, inputs, clip, n_threads, input_mask)
        if self.ternary:
            self._sync_positive_plane(selected)
        return flips

    def apply(self, step, clip=INT16_MAX, n_threads=1):
        """Apply a :class:`CPStep` (see :meth:`update`); returns the sign flips."""
        return self.update(step.selected, step.targets, step.inputs, clip, n_threads,
                           step.input_mask)

    def reinforce(self, prob, seed, stream, clip=INT16_MAX, n_threads=1):
        """``h += 2 sign(h)`` at each site with probability ``prob`` (signs never
        change, so the packed copies stay valid).  Returns the site count."""
        self._check_trainable()
        return _kernels.reinforce(self.hidden, prob, seed, stream, clip, n_threads,
                                  keep_zero=self.ternary)

    def forward_view(self):
        """This layer without its hidden weights: the packed weights (and
        transpose) only.

        Enough to compute a batch's :class:`CPStep` (forward, selection,
        back-projection) but not to apply one; it is what a data-parallel
        worker receives every batch (1 bit per weight instead of 16).  The
        arrays are shared, not copied.
        """
        view = object.__new__(BinaryLayer)
        view.hidden = None
        view.n_out, view.n_in = self.n_out, self.n_in
        view.packed, view.packed_t = self.packed, self.packed_t
        view.packed_pos, view.packed_pos_t = self.packed_pos, self.packed_pos_t
        return view

    @classmethod
    def backward_view(cls, packed_t, n_in, n_out):
        """A binary layer known only by rows of its packed transpose: enough
        to back-project targets through them (``n_in``: the fan-in the gate
        uses, which may exceed ``packed_t``'s rows, e.g. the state columns of
        a recurrent layer), not to compute forward or train."""
        view = object.__new__(cls)
        view.hidden = view.packed = view.packed_pos = view.packed_pos_t = None
        view.packed_t, view.n_in, view.n_out = packed_t, n_in, n_out
        return view

    def _sync_positive_plane(self, selected):
        """Repack ``H > 0`` for the rows a CP step touched (only they can
        reach or leave 0), and its transpose when kept."""
        rows = np.unique(selected[selected >= 0])
        if rows.size == 0:
            return
        self.packed_pos[rows] = positive_plane(self.hidden[rows])
        if self.packed_pos_t is not None:
            self.packed_pos_t = _kernels.transpose_bits(self.packed_pos, self.n_in)

    def _check_trainable(self):
        if self.hidden is None:
            raise RuntimeError("this BinaryLayer is a forward-only view (no hidden weights)")


@dataclass
class CPStep:
    """Operands of one layer's clipped-perceptron step for a batch or a shard.

    Sample ``m`` moves neuron ``j = selected[m, q]`` (when ``j >= 0``) by
    ``2 t_mj a_m``, with ``t_mj`` bit ``j`` of ``targets[m]`` and ``a_m`` the
    packed ``inputs[m]``.  :meth:`BinaryLayer.apply` adds every contribution
    to the pre-update weights in int32 and saturates once, so the result
    depends only on the set of contributions, not on their order: the steps
    of disjoint shards of a batch, concatenated (:meth:`concatenate`), give
    the step of the whole batch bit for bit.

    Attributes
    ----------
    selected : ndarray of int32, shape (M, n_out // group_size)
        Selected neuron per sample and group, -1 for none.
    targets : ndarray of uint64, shape (M, ceil(n_out / 64))
        Packed desired signs of the layer's neurons per sample.
    inputs : ndarray of uint64, shape (M, ceil(n_in / 64))
        Packed inputs of the layer per sample (their signs).
    input_mask : ndarray of uint64 like ``inputs``, or None
        Ternary inputs: bit clear where ``a_mi = 0`` (no contribution);
        None when every input is +/-1.
    """

    selected: np.ndarray
    targets: np.ndarray
    inputs: np.ndarray
    input_mask: np.ndarray = None

    def _arrays(self):
        return (self.selected, self.targets, self.inputs) + (
            () if self.input_mask is None else (self.input_mask,))

    def compact(self):
        """The same step without the samples that select no neuron (they add
        nothing): what a data-parallel worker sends back."""
        keep = (self.selected >= 0).any(axis=1)
        if keep.all():
            return self
        return CPStep(*(a[keep] for a in self._arrays()))

    @classmethod
    def concatenate(cls, steps):
        """One step holding the contributions of all ``steps`` (same layer)."""
        steps = list(steps)
        if len(steps) == 1:
            return steps[0]
        return cls(*(np.ascontiguousarray(np.concatenate(parts))
                     for parts in zip(*(s._arrays() for s in steps))))

    @property
    def nbytes(self):
        return sum(a.nbytes for a in self._arrays())


@dataclass
class BatchUpdates:
    """What one batch (or shard of a batch) asks of the model, computed from
    the pre-update weights: the rule's "compute" half of a CP+R batch.

    Attributes
    ----------
    n_correct : int
        Samples the network predicted correctly before the update (the
        on-the-fly training accuracy counts them).
    steps : list of CPStep or None
        One entry per trained weight matrix, in an order the rule defines;
        None means the batch had no erroneous sample for that matrix: no
        update and no reinforcement.
    """

    n_correct: int
    steps: list

    def compact(self):
        """Drop the samples that contribute nothing from every step."""
        return BatchUpdates(self.n_correct,
                            [None if s is None else s.compact() for s in self.steps])

    @classmethod
    def merge(cls, parts):
        """The updates of a batch from those of its disjoint shards: correct
        counts add up, steps concatenate, and a matrix is updated (and
        reinforced) when any shard asks for it."""
        parts = list(parts)
        steps = []
        for column in zip(*(p.steps for p in parts)):
            present = [s for s in column if s is not None]
            steps.append(CPStep.concatenate(present) if present else None)
        return cls(sum(p.n_correct for p in parts), steps)

    @property
    def nbytes(self):
        return sum(s.nbytes for s in self.steps if s is not None)


def reinforcement_probability(base_prob, error, fan_in):
    """CP+R rate ``p0 * sqrt(error) * sqrt(2 / (pi * fan_in))`` (Baldassi 2009:
    the rate must stay below ~sqrt(2/(pi N)); sqrt(error) anneals it)."""
    return float(min(1.0, base_prob * math.sqrt(max(0.0, error))
                     * math.sqrt(2.0 / (math.pi * fan_in))))


def positive_plane(values, n_threads=1):
    """Packed ``x > 0`` of integer rows (hidden weights or pre-activations):
    with the sign plane ``x >= 0`` it encodes ternary values (module
    docstring)."""
    return _kernels.pack_binary(np.ascontiguousarray(values > 0).view(np.uint8), n_threads)[0]


def ternary_planes(z, n_threads=1):
    """Activations ``sign(z)`` with sign(0) = 0 as two packed planes
    ``(z >= 0, z > 0)``: read as +/-1 their half-sum is the activation, so
    every product with them is the half-sum of two binary products; the
    first is also the sign of each nonzero activation."""
    return _kernels.pack_sign_int32(z), positive_plane(z, n_threads)


def sign_activations(z, zero=False, n_threads=1):
    """Packed activations ``sign(z)`` of pre-activations: one plane with
    sign(0) = +1, or with ``zero`` the two :func:`ternary_planes` of
    sign(0) = 0."""
    return ternary_planes(z, n_threads) if zero else _kernels.pack_sign_int32(z)


def step_inputs(inputs):
    """``(inputs, input_mask)`` of a CP step: ternary planes become their
    sign plane and the mask of nonzero activations (the planes agree there)."""
    if not isinstance(inputs, tuple):
        return inputs, None
    return inputs[0], ~(inputs[0] ^ inputs[1])


def take_rows(inputs, rows):
    """Rows of packed inputs, or of both planes of ternary ones."""
    if isinstance(inputs, tuple):
        return tuple(p[rows] for p in inputs)
    return inputs[rows]


def half_sum(z_sign, z_pos):
    """Ternary product from the products with the two planes: both have the
    parity of the operand length, so their half-sum is exact."""
    z_sign += z_pos
    z_sign >>= 1
    return z_sign


def pack_pm1_rows(M):
    """Pack a +/-1 (or any signed) matrix row by row: bit = (value >= 0).
    float32/float64/int8 rows are read in place (no float64 copy); float16
    rows are widened to float32 a block of about 4 MiB at a time."""
    M = np.asarray(M)
    thr = np.zeros((M.shape[1], 1))
    if M.dtype == np.float16 and M.ndim == 2 and M.shape[0] > 1:
        rows = max(1, (1 << 20) // max(1, M.shape[1]))
        out = np.empty((M.shape[0], n_words(M.shape[1])), dtype=np.uint64)
        for r0 in range(0, M.shape[0], rows):
            out[r0:r0 + rows] = _kernels.pack_threshold(
                np.ascontiguousarray(M[r0:r0 + rows], dtype=np.float32), thr, False)
        return out
    return _kernels.pack_threshold(as_kernel_input(M), thr, False)


def sample_rows(a, n, P, C):
    """Each sample's ``P`` rows of ``C`` columns (a map's NHWC pixels) as one
    row of ``P*C`` (column ``p*C + c``): packed bits are repacked unless
    ``C`` is a multiple of 64, float rows are a free reshape."""
    if a.dtype == np.uint64:
        if C % 64 == 0:
            return a.reshape(n, -1)
        return _kernels.flatten_bits(a, n, P, C)
    return a.reshape(n, P * C)


def class_scores(activations, class_rows, n_bits, n_threads=1):
    """Integer scores ``<a, row_c>`` of packed activations (or ternary planes)
    against packed class rows (a fixed classifier or prototypes)."""
    if isinstance(activations, tuple):
        return half_sum(*(_kernels.bgemm(p, class_rows, n_bits, n_threads)
                          for p in activations))
    return _kernels.bgemm(activations, class_rows, n_bits, n_threads)


def _writable(a, dtype):
    a = np.asarray(a)
    if a.dtype != dtype or not a.flags.c_contiguous or not a.flags.writeable:
        a = np.array(a, dtype=dtype, order="C", copy=True)
    return a
