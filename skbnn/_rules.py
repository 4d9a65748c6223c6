"""Learning rules of the layer-stack engine (:mod:`skbnn._layers`): what
gradient reaches each hidden activation of a training step.

A hidden activation is the +-1 output of a block (weight layer, batch
norm, sign, optional pooling and flatten) as read by the next weight layer.
Whatever reaches it then runs through the same code under every rule: the
STE mask of the signs, pooling, batch-norm backward, the weight and bias
gradients and the optimiser step.  The output layer always receives the
true error ``e = dL/dlogits = (softmax - onehot) / B`` of the mean
cross-entropy.

- :class:`Backprop`: the input gradient of the weight layer above.
- :class:`DFA` (direct feedback alignment): ``e B_l``.
- :class:`DRTP` (direct random target projection): ``t B_l`` with the
  centred one-hot target ``t = onehot - 1/C``; it does not depend on the
  network's output, so each block can be updated during the forward pass.

``B_l`` is a fixed random ``(C, width)`` matrix per hidden activation (one
column per feature of a vector, per channel of a map, whose pixels share
it).  DFA and DRTP follow B. Crulis et al. (arXiv 2408.04460) and the
authors' PyTorch code (BenCrulis/binary_nn_extended): N(0, 1) feedback, the
centred one-hot target of its fast DRTP.  Nothing here knows scikit-learn.
"""
import numpy as np

from . import _kernels
from ._latent import F32


class LearningRule:
    """What reaches each hidden activation; subclasses set the attributes
    and override the hooks they need.

    Attributes
    ----------
    backpropagates : bool
        Each weight layer computes the gradient of its input (backprop);
        otherwise that computation is skipped and :meth:`hidden_gradient`
        supplies the gradient of every hidden activation.
    local : bool
        The signal of a hidden activation is known as soon as the
        activation is (it does not depend on later layers): the stack
        updates each block during the forward pass and frees its records.
    uses_feedback : bool
        The rule reads fixed random feedback matrices (:func:`draw_feedback`).
    """

    backpropagates = False
    local = False
    uses_feedback = False

    def begin_batch(self, y, n_classes):
        """Before the forward pass of a batch: ``y`` the class indices."""

    def output_error(self, error):
        """After the forward pass: ``error`` = dL/dlogits, float32 (B, C)."""

    def hidden_gradient(self, layer, act, ctx):
        """The gradient at ``act``, the input of weight layer ``layer`` (not
        the first), as a tensor of ``ctx.ws``."""
        raise NotImplementedError

    def end_batch(self):
        """After the update: drop the batch's state."""


class Backprop(LearningRule):
    """Backpropagation with straight-through estimators: every hidden
    activation receives the input gradient of the weight layer above."""

    backpropagates = True


class _Projection(LearningRule):
    """A per-sample signal ``s`` (B, C) projected to each hidden activation
    by its feedback matrix: ``s B_l``, broadcast over the pixels of a map."""

    uses_feedback = True

    def __init__(self, feedback):
        self.feedback = feedback
        self._signal = None

    def hidden_gradient(self, layer, act, ctx):
        B_l, s = self.feedback[layer.index - 1], self._signal

        def rows(s0, s1):
            return _kernels.fgemm(s[s0:s1], B_l, n_threads=ctx.n_threads)
        return layer.gradient_from_signal(act, rows, ctx)

    def end_batch(self):
        self._signal = None


class DFA(_Projection):
    """Direct feedback alignment (Nokland 2016; Crulis et al. 2024):
    hidden activation ``l`` receives ``e B_l``, ``e`` the output error."""

    def output_error(self, error):
        self._signal = np.ascontiguousarray(error, dtype=F32)


class DRTP(_Projection):
    """Direct random target projection (Frenkel et al. 2021; Crulis et al.
    2024): hidden activation ``l`` receives ``t B_l``, ``t = onehot - 1/C``
    the centred target, known before the forward pass (no 1/B: the authors'
    code feeds the target itself, not the gradient of a mean)."""

    local = True

    def begin_batch(self, y, n_classes):
        t = np.full((len(y), n_classes), -1.0 / n_classes, dtype=F32)
        t[np.arange(len(y)), y] += F32(1)
        self._signal = t


RULES = {"backprop": Backprop, "dfa": DFA, "drtp": DRTP}


def make_rule(name, feedback=None):
    """The rule ``name`` (a key of :data:`RULES`) with its feedback matrices."""
    cls = RULES[name]
    return cls(feedback) if cls.uses_feedback else cls()


def feedback_widths(plan):
    """Width of every hidden activation, in order: the input features of a
    dense layer, the input channels of a convolution (``in_shape[0]`` of
    each weight layer but the first)."""
    return [s.in_shape[0] for s in plan if s.kind in ("conv", "dense")][1:]


def draw_feedback(plan, n_classes, rng):
    """Fixed feedback matrices ``B_l``, float32 ``(n_classes, width_l)``,
    N(0, 1) entries drawn from ``rng`` in layer order."""
    return [rng.standard_normal((n_classes, w), dtype=F32) for w in feedback_widths(plan)]
