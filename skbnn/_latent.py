"""Latent-weight engine: binary dense layers trained by straight-through
gradients (LowMemBNNClassifier; lowmem.md §3-4, §11).

A :class:`LatentLayer` holds one binary dense layer followed by batch
normalisation with a bias and no scale: the latent weights ``V`` (neuron
major, ``n_out x n_in``; float16 in the low-memory step, float32 in the
standard one; none for Bop, whose weights are the packed bits), the packed
signs used by every product, the optimiser state, the bias and the running
statistics.

A training step shares one :class:`Workspace` (batch x widest layer x 4
bytes): the forward product writes the layer's pre-activations there and the
fused batch-norm epilogue (``bn_forward``) turns them into what the backward
pass needs — the packed signs of the output (the next layer's input bits),
the packed STE mask and per-channel float16 statistics; the float output
only for the l1/l2 backward, the standard step and the logits.  The
backward pass then uses the workspace as two gradient slots (float16 in the
low-memory step): ``bn_backward_bits`` in place, ``dA = dZ sign(V)^T`` into
the other slot, and the weight gradient read from dZ transposed in place,
emitted as packed signs (low memory) or float32 (standard).  The optimiser
sweep updates the state and the packed signs in one pass.  Nothing here
knows scikit-learn.
"""
import math
from dataclasses import dataclass

import numpy as np

from . import _kernels
from ._engine import n_words

F32 = np.float32
PSI_FLOOR = 1e-5   # lowmem.md §10.14
BN_EPS = 1e-4      # standard (l2) BN, Keras BatchNormalization


def glorot_uniform(n_in, n_out, rng):
    """Glorot & Bengio (2010) uniform, drawn (n_in, n_out) as scikit-learn's MLP."""
    limit = math.sqrt(6.0 / (n_in + n_out))
    return rng.uniform(-limit, limit, size=(n_in, n_out))


def normal_fan_in(n_in, n_out, rng):
    """Normal(0, 1 / fan_in): the authors' code."""
    return rng.normal(0.0, 1.0 / math.sqrt(n_in), size=(n_in, n_out))


INITS = {"glorot_uniform": glorot_uniform, "normal_fan_in": normal_fan_in}


def quantize_pow2(G, bias=8):
    """Signed powers of two with a 4-bit exponent (lowmem.md §4.3): per
    tensor ``b = bias - round(log2 max|G|)``; zeros stay 0."""
    amax = float(np.max(np.abs(G))) if G.size else 0.0
    if amax == 0.0:
        return G
    b = bias - round(math.log2(amax))
    with np.errstate(divide="ignore"):
        e = np.clip(np.round(np.log2(np.abs(G) * 2.0 ** b)), -8, 7)
    return np.where(G == 0, 0.0, np.sign(G) * 2.0 ** e * 2.0 ** (-b)).astype(F32)


@dataclass
class Hyper:
    """Optimiser settings shared by every layer."""

    solver: str
    lr: float
    beta_1: float
    beta_2: float
    epsilon: float
    momentum: float
    bop_threshold: float
    clip_weights: bool
    round_seed: object = None  # None: float16 stores round to nearest even; int: stochastically


@dataclass
class StepConfig:
    """What one training step keeps and in which types (lowmem.md §5.2).

    ``standard``: Algorithm 1's float32 records (the float BN output, the
    float +/-1 layer inputs and float 0/1 STE masks) and float weight
    gradients; otherwise Algorithm 2's bits.  ``half``: float16 storage of
    the state and statistics.  ``grad_dtype``: storage of the activation
    gradients in flight; ``pow2_bias`` (or None) quantises them to powers of
    two.  ``kind``: the BN backward ('proposed', 'l1', 'l2').
    """

    standard: bool
    half: bool
    kind: str
    pre_bias: bool
    grad_dtype: type
    pow2_bias: object
    bn_momentum: float


class Workspace:
    """The one transient buffer of a step (lowmem.md §11, "Buffers"): the
    pre-activations Z of the layer being computed in the forward pass, then
    two ping-pong slots for dL/dA and dL/dZ in the backward pass.  Sized
    ``batch x widest layer``; a NumPy array, so tracemalloc sees it."""

    def __init__(self, batch, widths, grad_dtype):
        self.batch, self.width = batch, max(widths)
        self.grad_dtype = np.dtype(grad_dtype)
        self.slot = batch * self.width * self.grad_dtype.itemsize
        self.raw = np.empty(max(batch * self.width * 4, 2 * self.slot), dtype=np.uint8)

    def fits(self, batch):
        return batch <= self.batch

    def z(self, rows, cols, dtype):
        """Pre-activation buffer (int32 or float32)."""
        return self.raw[:rows * cols * 4].view(dtype).reshape(rows, cols)

    def grad(self, slot, rows, cols):
        """Gradient slot 0 or 1."""
        start = slot * self.slot
        end = start + rows * cols * self.grad_dtype.itemsize
        return self.raw[start:end].view(self.grad_dtype).reshape(rows, cols)


class LatentLayer:
    """One binary dense layer + bias-only batch norm, trained by STE.

    Parameters
    ----------
    state : dict
        The layer's arrays (updated in place): ``V`` (or None for Bop),
        ``packed``, ``m1``, ``m2``, ``bias``, ``bias_m1``, ``bias_m2``,
        ``running_mean``, ``running_scale``.
    half : bool
        float16 storage (the low-memory step) instead of float32.
    real_input : bool
        The layer reads float inputs (the first layer without binarisation).
    index : int, default=0
        Position in the network (keys the stochastic-rounding draws).
    input_scale : float, default=1.0
        Power of two the layer's float inputs are multiplied by
        (:class:`~skbnn.preprocessing.RealInput`'s ``scale_``), applied to the
        pre-activations and the float weight gradient instead of to a copy of
        the batch: the same bits, no extra memory.
    """

    def __init__(self, state, half, real_input, index=0, input_scale=1.0):
        self.s = state
        self.half = half
        self.real_input = real_input
        self.index = index
        self.input_scale = F32(input_scale)
        self.n_out = state["packed"].shape[0]
        self.n_in = state["m1"].shape[1]

    # ------------------------------------------------------------ forward
    def preactivations(self, inputs, n_threads, out=None):
        """``Z = A sign(V)``: float inputs x bits (float32), or popcount of
        packed bits (int32); written into ``out`` when given."""
        if self.real_input:
            Z = _kernels.fdot_bits(inputs, self.s["packed"], out=out, n_threads=n_threads)
            if self.input_scale != 1:
                Z *= self.input_scale
            return Z
        return _kernels.bgemm(inputs, self.s["packed"], self.n_in, n_threads, out=out)

    def forward_train(self, inputs, ws, cfg, last, n_threads):
        """Forward of one layer in training: product into the workspace, then
        the fused BN epilogue.  Returns the record the backward pass needs
        (lowmem.md §3-4): ``bits`` (signs of the output: the next layer's
        input), ``mask`` (packed STE mask, hidden layers), ``psi``, and
        ``bn_bits`` + ``omega`` (the 'proposed' backward) or ``out`` (the
        float BN output: l1/l2 backward, standard step, logits)."""
        B, n, wn = inputs.shape[0], self.n_out, n_words(self.n_out)
        Z = self.preactivations(
            inputs, n_threads, out=ws.z(B, n, F32 if self.real_input else np.int32))
        proposed = cfg.kind == "proposed"
        rec = {
            "input": inputs, "psi": np.empty(n, F32),
            "bits": np.empty((B, wn), dtype=np.uint64),
            "mask": None if last else np.empty((B, wn), dtype=np.uint64),
            "omega": np.empty(n, F32) if proposed else None,
            "out": np.empty((B, n), F32) if last or cfg.standard or not proposed else None,
        }
        pre_bits = np.empty((B, wn), dtype=np.uint64) if proposed and cfg.pre_bias else None
        rec["bn_bits"] = pre_bits if pre_bits is not None else rec["bits"]
        mu = np.empty(n, F32)
        _kernels.bn_forward(Z, self.s["bias"].astype(F32), cfg.kind == "l2", BN_EPS,
                            PSI_FLOOR, self.half, mu, rec["psi"], rec["bits"], rec["mask"],
                            pre_bits, rec["omega"], cfg.pre_bias, rec["out"], n_threads)
        keep = F32(cfg.bn_momentum)
        for name, batch in (("running_mean", mu), ("running_scale", rec["psi"])):
            run = self.s[name]
            new = keep * run.astype(F32) + (F32(1) - keep) * batch
            if not np.isfinite(new.astype(run.dtype)).all():
                # e.g. a partial_fit batch far larger than the data the input
                # scale was fitted on: refuse rather than store infinities
                raise ValueError(
                    f"the batch-norm statistics of layer {self.index} overflow "
                    f"{run.dtype} (|value| > {float(np.finfo(run.dtype).max):g}): the inputs "
                    "are far larger than those of the first fit call; rescale X")
            run[...] = new
        return rec

    def bn_inference(self, Z):
        """BN with the running statistics (no batch dependence)."""
        Z = Z.astype(F32, copy=False)
        Z -= self.s["running_mean"].astype(F32)
        Z /= np.maximum(self.s["running_scale"].astype(F32), F32(PSI_FLOOR))
        Z += self.s["bias"].astype(F32)
        return Z

    # ------------------------------------------------------------ backward
    def bn_gradient(self, G, rec, cfg, n_threads):
        """dL/dZ from dL/dA, written over ``G``; returns the bias gradient."""
        if cfg.kind == "proposed":
            G_b = np.empty(self.n_out, F32)
            _kernels.bn_backward_bits(G, rec["psi"], rec["bn_bits"], rec["omega"], G_b,
                                      n_threads)
        else:
            G32 = G.astype(F32, copy=False)
            G_b = G32.sum(axis=0, dtype=F32)
            G[...] = bn_backward(G32, rec["psi"], None, None, rec["out"],
                                 self.s["bias"].astype(F32), cfg.kind)
        if cfg.pow2_bias is not None:
            G[...] = quantize_pow2(G, cfg.pow2_bias)
        return G_b

    def input_gradient(self, G_Z, input_mask, out, n_threads):
        """``dA = dZ sign(V)^T`` into ``out``, zero outside the input's packed
        STE mask (None: no mask)."""
        return _kernels.fsgemm(G_Z, self.s["packed"], self.n_in, mask=input_mask, out=out,
                               n_threads=n_threads)

    def weight_gradient(self, G_Z, inputs, as_bits, n_threads):
        """``dV = A^T dZ`` neuron-major, reading dZ transposed in place: packed
        signs (``as_bits``) or float32; ``inputs`` are packed bits or floats."""
        if inputs.dtype == np.uint64:
            return _kernels.fsgemm(G_Z, inputs, self.n_in, sign=as_bits, transpose_a=True,
                                   n_threads=n_threads)
        grad = _kernels.fgemm(G_Z, inputs, sign=as_bits, transpose_a=True, n_threads=n_threads)
        if not as_bits and self.input_scale != 1:
            grad *= self.input_scale  # signs do not change with a positive scale
        return grad

    # ------------------------------------------------------------ update
    def step(self, grad, as_bits, G_b, hp, t, grad_scale, n_threads):
        """One optimiser step of weights and bias; returns the sign flips."""
        s = self.s
        flips = _kernels.optimizer_step(
            hp.solver, s["V"], s["m1"], s["m2"], grad if as_bits else None,
            None if as_bits else grad, grad_scale, _step_hyper(hp, hp.solver, hp.lr, t),
            hp.clip_weights, s["packed"], cancel=True,
            round_key=round_key(hp.round_seed, t, self.index, 0), n_threads=n_threads)
        # the bias: never cancelled; Bop's bias uses Adam at 1e-3 (lowmem.md §7)
        bop = hp.solver == "bop"
        bias_solver, bias_lr = ("adam", 1e-3) if bop else (hp.solver, hp.lr)
        dummy = np.zeros((1, n_words(self.n_out)), dtype=np.uint64)
        _kernels.optimizer_step(
            bias_solver, s["bias"][None], s["bias_m1"][None], s["bias_m2"][None], None,
            np.ascontiguousarray(G_b, dtype=F32)[None], 1.0,
            _step_hyper(hp, bias_solver, bias_lr, t), False, dummy, cancel=False,
            round_key=round_key(hp.round_seed, t, self.index, 1))
        return flips


_M64 = (1 << 64) - 1


def round_key(seed, t, layer, part):
    """64-bit key of the stochastic-rounding draws of one step of one layer's
    weights (part 0) or bias (part 1): splitmix64 of the four, so every step
    draws afresh; None when rounding to nearest."""
    if seed is None:
        return None
    x = (seed * 0x9E3779B97F4A7C15 + t * 0xBF58476D1CE4E5B9 + layer * 0x94D049BB133111EB
         + part) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _step_hyper(hp, solver, lr, t):
    """Kernel hyper-parameters of step ``t``; Adam's rate is bias-corrected."""
    if solver == "adam":
        lr = lr * math.sqrt(1.0 - hp.beta_2 ** t) / (1.0 - hp.beta_1 ** t)
    return (lr, hp.beta_1, hp.beta_2, hp.epsilon, hp.momentum, hp.bop_threshold)


def bn_backward(G, psi, bits, omega, A, bias, kind):
    """dL/dZ of bias-only BN from dL/dA (lowmem.md §3 step 6, §4 B1-B2).

    ``kind``: 'l2' exact gradient with ``N = A - b``; 'l1' Eq. 1 with the
    float output ``A``; 'proposed' B2 with the sign bits (as +/-1 floats)
    and ``omega``.
    """
    v = G / psi
    centred = v - v.mean(axis=0, dtype=F32)
    if kind == "l2":
        N = A - bias
        return centred - (v * N).mean(axis=0, dtype=F32) * N
    if kind == "l1":
        s = np.where(A >= 0, F32(1), F32(-1))
        return centred - (v * A).mean(axis=0, dtype=F32) * s
    return centred - (v * bits * omega).mean(axis=0, dtype=F32) * bits


def softmax_xent(logits, y):
    """Mean cross-entropy and its gradient ``(softmax - onehot) / B``."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss_sum = float(-np.log(np.maximum(p[rows, y], 1e-30)).sum())
    p[rows, y] -= 1.0
    p /= len(y)
    return loss_sum, p.astype(F32)
