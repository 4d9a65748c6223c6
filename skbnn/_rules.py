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

- :class:`HSIC` (HSIC bottleneck): the gradient of the local loss
  ``HSIC(z, z) - gamma HSIC(y, z)`` at the activation ``z`` itself, from
  ``z`` and the target only; like DRTP it is known before the output.
- :class:`SigpropTL` (PEPITA-style signal propagation): no backward pass;
  a second forward pass on the input perturbed by the projected output
  error, each hidden weight layer learning from the change of its block's
  signs.

``B_l`` is a fixed random ``(C, width)`` matrix per hidden activation (one
column per feature of a vector, per channel of a map, whose pixels share
it).  The rules follow B. Crulis et al. (arXiv 2408.04460) and the
authors' PyTorch code (BenCrulis/binary_nn_extended): N(0, 1) feedback, the
centred one-hot target of its fast DRTP, the cosine kernels and biased
estimator of its HSIC, the two passes of its PEPITA-style SigProp.
Nothing here knows scikit-learn.

Residual blocks (a conv whose block output is ``BN(conv(sign x)) + x``,
:mod:`skbnn._architecture`): a rule's signal reaches the block's output
(the sum; through the STE mask of its signs) exactly as it reaches any
block output.  What the shortcut carries down to ``x`` follows the
authors' code.  Their DFA replaces, in a backward hook, the gradient of the
input of every linear / conv module with ``e B_l`` and lets autograd do the
rest, so at a residual block the gradient of ``x`` is its own projected
signal (past its STE mask) plus the gradient of the block's sum coming down
the shortcut: :class:`Backprop` and :class:`DFA` carry it, from block to
block.  Their fast DRTP and their HSIC inject the signal (``t B_l``, the
HSIC loss's gradient) at the input of every weight module and of every
residual module and then detach that input, so the sum's gradient stops at
the shortcut and never reaches the block below: :class:`DRTP` and
:class:`HSIC` (local, each block updated in the forward pass before the
next exists) carry nothing down it.  :class:`SigpropTL` has no backward
pass: a residual block learns, as any block, from the change of its own
signs, those of the sum.
"""
import numpy as np

from . import _kernels
from ._engine import sample_rows
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
        The rule reads fixed random feedback matrices
        (:meth:`draw_feedback`).
    feedback_kind : str or None
        What they project to: 'hidden' (one per hidden activation, DFA and
        DRTP share them) or 'input' (SigProp).
    two_pass : bool
        No backward pass: the stack runs an inference forward, then a
        second, paired forward pass that updates the weights
        (:class:`SigpropTL`).
    """

    backpropagates = False
    local = False
    uses_feedback = False
    two_pass = False
    feedback_kind = None

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
    feedback_kind = "hidden"

    def __init__(self, feedback):
        self.feedback = feedback
        self._signal = None

    @staticmethod
    def draw_feedback(plan, n_classes, seed):
        """The matrices ``B_l``: N(0, 1), ``(n_classes, width_l)`` per hidden
        activation (:func:`feedback_widths`)."""
        return FeedbackMatrices(seed, [(n_classes, w) for w in feedback_widths(plan)])

    def hidden_gradient(self, layer, act, ctx):
        B_l, s = self.feedback[layer.index - 1], self._signal

        def rows(s0, s1, out):
            if out.shape[1] == 1:   # a vector: straight into the gradient
                _kernels.fgemm(s[s0:s1], B_l, out=out.reshape(s1 - s0, -1),
                               n_threads=ctx.n_threads)
            else:                   # one value per channel, shared by the pixels
                out[...] = _kernels.fgemm(s[s0:s1], B_l, n_threads=ctx.n_threads)[:, None, :]
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
        self._signal = centred_target(y, n_classes)


def centred_target(y, n_classes):
    """``onehot - 1/C``, float32 ``(B, C)``: each row of the one-hot target
    minus its mean (the authors' ``signal -= signal.mean(1)``)."""
    t = np.full((len(y), n_classes), -1.0 / n_classes, dtype=F32)
    t[np.arange(len(y)), y] += F32(1)
    return t


def centred_target_kernel_rows(y, n_classes, s0, s1):
    """Rows ``s0:s1`` of ``H L H``, ``L`` the cosine kernel of the centred
    one-hot targets (float32), without forming ``L``.  ``L = a E + b`` with
    ``E_ij = [y_i = y_j]``, ``a = C / (C - 1)`` and ``b = -1 / (C - 1)``
    (1 within a class, ``-1/(C-1)`` across); centring removes ``b``, and
    ``H E H`` has entries ``E_ij - p_{y_i} - p_{y_j} + sum_c p_c^2`` with
    ``p_c`` the fraction of the batch in class ``c``."""
    y = np.asarray(y)
    p = np.bincount(y, minlength=n_classes) / len(y)
    py = p[y].astype(F32)
    L = (y[s0:s1, None] == y[None, :]).astype(F32)
    L -= py[s0:s1, None]
    L -= py[None, :]
    L += F32((p * p).sum())
    L *= F32(n_classes / (n_classes - 1))
    return L


def hsic_weight_rows(K_rows, first, r, L_rows, gamma, dim):
    """Rows ``first:first + m`` of the ``(B, B)`` matrix ``W`` with
    ``dLoss/dz = W z`` for ``B`` samples ``z`` of ``dim`` values +-1,
    ``Loss = HSIC(K, K) - gamma HSIC(L, K)``, from the same rows of ``K``
    and of ``L_c`` and the column means ``r`` of ``K``.

    ``K = z z^T / dim`` is the cosine kernel of +-1 rows (``|z|^2 = dim``),
    ``L_c = H L H`` the centred target kernel.  With the biased estimator
    ``HSIC(A, B) = tr(A H B H) / B^2`` the loss's gradient in ``K`` is ``M =
    (2 H K H - gamma L_c) / B^2``; through ``K = zh zh^T``, ``zh = z / |z|``
    (the normalisation is differentiated too, as autograd does):
    ``dLoss/dz_i = (2 / dim) (sum_j M_ij z_j - (sum_j M_ij K_ij) z_i)``.
    Each row needs only its own row of ``K`` and ``L_c``, so the rule
    builds ``W`` a block of rows at a time.
    """
    m, B = K_rows.shape
    W = K_rows - r[first:first + m, None]                  # rows of H K H
    W -= r[None, :]
    W += r.mean(dtype=F32)
    W *= F32(2)
    W -= F32(gamma) * L_rows
    W /= F32(B * B)                                         # rows of M
    # the normalisation's term (evaluated before the diagonal changes)
    W[np.arange(m), first + np.arange(m)] -= np.einsum("ij,ij->i", W, K_rows, dtype=F32)
    W *= F32(2.0 / dim)
    return W


def hsic_weights(K, L_c, gamma, dim):
    """The whole ``(B, B)`` matrix of :func:`hsic_weight_rows`."""
    return hsic_weight_rows(K, 0, K.mean(axis=0, dtype=F32), L_c, gamma, dim)


_KERNEL_BLOCK_BYTES = 1 << 12   # int32 kernel rows per block of the column sums


class HSIC(LearningRule):
    """HSIC bottleneck (Ma et al. 2020; Crulis et al. 2024, the authors'
    ``binary_nn/algorithms/hsic.py``): the input ``z`` of every weight layer
    but the first (the +-1 activation, one row of ``pixels x channels``
    values per sample) receives the gradient of the local loss ``HSIC(z, z)
    - gamma HSIC(y, z)``, cosine-similarity kernels on ``z`` and on the
    centred one-hot target, the biased estimator ``tr(K H L H) / B^2`` (their
    ``estimate_hsic(mode='biased')``).  It reaches the preceding block only
    (the stack updates each block during the forward pass); the output layer
    trains on the cross-entropy.

    No ``B x B`` matrix is held whole: the column means of ``K`` come from
    exact integer sums over blocks of rows, then each chunk of samples gets
    its rows of ``K``, ``L_c`` and ``W`` and its gradient rows.

    Parameters
    ----------
    gamma : float
        Weight of the target term (the authors' default 2).
    """

    local = True

    def __init__(self, gamma=2.0):
        self.gamma = gamma
        self._y = None

    def begin_batch(self, y, n_classes):
        self._y, self._n_classes = np.asarray(y), n_classes

    def hidden_gradient(self, layer, act, ctx):
        n, width = act.n, act.channels
        per = act.rows // n
        dim = per * width
        Z = sample_rows(act.data, n, per, width)        # packed +-1, one row per sample
        # z_i.z_j = dim - 2 popcount(z_i ^ z_j): exact integers, so the
        # column sums are exact whatever the blocks
        total = np.zeros(n, np.int64)
        step = max(1, _KERNEL_BLOCK_BYTES // (4 * n))
        for s0 in range(0, n, step):
            total += _kernels.bgemm(Z[s0:s0 + step], Z, dim, ctx.n_threads).sum(
                axis=0, dtype=np.int64)
        r = (total / (n * dim)).astype(F32)

        def rows(s0, s1, out):
            K = _kernels.bgemm(Z[s0:s1], Z, dim, ctx.n_threads).astype(F32)
            K /= F32(dim)
            L = centred_target_kernel_rows(self._y, self._n_classes, s0, s1)
            W = hsic_weight_rows(K, s0, r, L, self.gamma, dim)
            _kernels.fsgemm(W, Z, dim, out=out.reshape(s1 - s0, dim), n_threads=ctx.n_threads)
        return layer.gradient_from_signal(act, rows, ctx)

    def end_batch(self):
        self._y = None


class SigpropTL(LearningRule):
    """Signal propagation with the output error fed to the input, PEPITA
    style (Dellaferrera & Kreiman 2022; Crulis et al. 2024, the authors'
    ``binary_nn/algorithms/pepita.py``).

    Pass 1 is the inference forward (running batch-norm statistics, the
    authors' ``model.eval()``); its output error ``e = dL/dlogits`` trains
    the output block through that pass.  A fixed ``F`` of shape ``(C,
    input size)``, kaiming-normal with fan-in (N(0, 1/input size)), gives
    the perturbation ``e F`` of the network's input.  Pass 2 runs the clean
    and the perturbed batch together through the training forward (batch
    statistics over both, no gradients); for every hidden weight layer
    followed by its sign, ``err = h - h_err`` of the block's clean and
    perturbed signs (pass 2) and ``dW = err^T x_in / k`` with ``x_in`` the
    layer's clean input (pass 2) and ``k`` the spatial size of ``h`` (1 for
    vectors).  Hidden batch-norm biases receive no gradient (the authors'
    hooks set only the weight layer's).

    The authors concatenate the two batches "to avoid storing the
    activations" and run ``2B`` samples at once.  The stack keeps their
    joint statistics with one half's pre-activations in the workspace at a
    time: the joint mean, the joint deviation, then each half's signs
    (:meth:`LayerStack._paired_update`).  The low-memory step computes each
    half's twice, trading two more products per layer for a workspace of
    ``B`` samples; the standard step keeps a copy of the first half's.

    Parameters
    ----------
    feedback : sequence of one ndarray
        ``[F]``, float32 ``(n_classes, input size)`` (input in C, H, W
        order; :class:`FeedbackMatrices`).
    """

    uses_feedback = True
    feedback_kind = "input"
    two_pass = True

    def __init__(self, feedback):
        self.feedback = feedback
        self._error = self._shift = None

    @staticmethod
    def draw_feedback(plan, n_classes, seed):
        """``[F]``: N(0, 1/D) entries, ``D`` the input size (kaiming normal,
        fan-in, linear gain, as the authors' ``_init_bw``)."""
        D = int(np.prod(plan[0].in_shape))
        return FeedbackMatrices(seed, [(n_classes, D)], scale=1.0 / np.sqrt(D))

    def output_error(self, error):
        self._error = np.ascontiguousarray(error, dtype=F32)

    def perturbed_input(self, A, scale):
        """The batch ``A`` (float32 rows as encoded; the network reads
        ``scale * A``) perturbed by ``e F``: ``A + e F / scale``."""
        P = _kernels.fgemm(self._error, self.feedback[0])
        P /= F32(scale)
        P += A
        return P

    def shift_preactivations(self, layer, Z, ctx):
        """``Z += e (F sign(W)^T)``: a dense first layer's pre-activations of
        the clean batch become those of the perturbed one (the layer reads
        ``scale * A``, so ``scale * (A + e F / scale) W^T = Z + e F W^T``),
        in blocks of rows."""
        if self._shift is None:   # once per batch: the weights change after both halves
            FW = np.empty((self._error.shape[1], layer.n_out), F32)
            for r0, F in self.feedback.row_blocks(0, 1):   # one row of F at a time
                _kernels.fdot_bits(F, layer.s["packed"], out=FW[r0:r0 + 1],
                                   n_threads=ctx.n_threads)
            self._shift = FW
        FW = self._shift
        step = max(1, _ERROR_BLOCK_BYTES // (4 * Z.shape[1]))
        for r0 in range(0, Z.shape[0], step):
            Z[r0:r0 + step] += _kernels.fgemm(self._error[r0:r0 + step], FW)

    def drop_shift(self):
        """The first layer's halves are done: free ``F sign(W)^T``."""
        self._shift = None

    def block_error(self, clean, perturbed, ctx):
        """``(h - h_err) / k`` of a block's signs on the clean and on the
        perturbed batch: rows of the step's gradient type at the front of
        the workspace, filled in blocks of rows (float16 in the low-memory
        step holds ``+-2 / k`` rounded, the same value in every nonzero
        entry of a layer, so the signs of the ternary weight gradient it
        gives do not change)."""
        per, width = clean.rows // clean.n, clean.channels
        G = ctx.ws.front(clean.rows, width, ctx.config.grad_dtype)
        step = max(1, _ERROR_BLOCK_BYTES // (4 * width))
        for r0 in range(0, clean.rows, step):
            g = G[r0:r0 + step]
            d = _kernels.unpack_pm1(clean.data[r0:r0 + step], width)   # int8 +-1
            d -= _kernels.unpack_pm1(perturbed.data[r0:r0 + step], width)
            e = d.astype(F32)
            if per > 1:
                e *= F32(1.0 / per)
            g[...] = e
        return G

    def end_batch(self):
        self._error = self._shift = None


_ERROR_BLOCK_BYTES = 1 << 14   # float32 rows of SigProp's temporaries at a time


RULES = {"backprop": Backprop, "dfa": DFA, "drtp": DRTP, "hsic": HSIC, "sigprop": SigpropTL}


def make_rule(name, feedback=None, hsic_gamma=2.0):
    """The rule ``name`` (a key of :data:`RULES`) with its feedback matrices
    (DFA, DRTP) or its ``gamma`` (HSIC)."""
    cls = RULES[name]
    if cls.uses_feedback:
        return cls(feedback)
    return cls(hsic_gamma) if cls is HSIC else cls()


class FeedbackMatrices:
    """Fixed random feedback matrices, regenerated whenever one is read
    instead of stored: matrix ``i`` is ``scale`` times standard-normal
    float32 values of shape ``shapes[i]`` drawn by a NumPy generator seeded
    with ``(*seed, i)``.  The model keeps the seed, not the matrices, so the
    rules that read them cost no persistent memory (only the one matrix in
    use, for the moment it is used); a draw of a few thousand values per
    layer and batch is cheap next to the products it feeds.  A sequence:
    ``len``, indexing and iteration give the matrices.

    Parameters
    ----------
    seed : tuple of int
        Seed of the draws (matrix ``i`` uses ``(*seed, i)``).
    shapes : list of tuple of int
        The ``(rows, columns)`` of each matrix.
    scale : float, default=1.0
        Multiplies every entry (after the float32 draw).
    """

    def __init__(self, seed, shapes, scale=1.0):
        self.seed = tuple(int(v) for v in seed)
        self.shapes = [tuple(int(d) for d in shape) for shape in shapes]
        self.scale = float(scale)

    def __len__(self):
        return len(self.shapes)

    def __getitem__(self, i):
        if not -len(self) <= i < len(self):
            raise IndexError("feedback matrix index out of range")
        i %= len(self)
        return next(self.row_blocks(i, self.shapes[i][0]))[1]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def row_blocks(self, i, rows):
        """Matrix ``i`` as consecutive blocks of ``rows`` rows ``(r0,
        block)``: the values of ``self[i]`` (a generator's stream is the
        same drawn whole or in pieces) without the whole matrix at once."""
        n, m = self.shapes[i]
        rng = np.random.default_rng([*self.seed, i])
        for r0 in range(0, n, rows):
            block = rng.standard_normal((min(rows, n - r0), m), dtype=F32)
            if self.scale != 1.0:
                block *= F32(self.scale)
            yield r0, block

    def __repr__(self):
        return f"FeedbackMatrices(seed={self.seed}, shapes={self.shapes}, scale={self.scale:g})"

    @property
    def largest_nbytes(self):
        """Bytes of the largest matrix: what reading one costs."""
        return max((4 * r * c for r, c in self.shapes), default=0)


def feedback_widths(plan):
    """Width of every hidden activation, in order: the input features of a
    dense layer, the input channels of a convolution (``in_shape[0]`` of
    each weight layer but the first)."""
    return [s.in_shape[0] for s in plan if s.kind in ("conv", "dense")][1:]

