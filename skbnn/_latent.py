"""Primitives of latent-weight training shared by the layers of
:mod:`skbnn._layers`: weight initialisations, the optimiser settings and the
step's storage types, the power-of-two gradient format, the stochastic
rounding keys, the float batch-norm backward of the l1/l2 ablations, and
the softmax cross-entropy.  Nothing here knows scikit-learn.
"""
import math
from dataclasses import dataclass

import numpy as np

F32 = np.float32
PSI_FLOOR = 1e-5   # floor of the l1 batch-norm scale (a constant channel has psi = 0)
BN_EPS = 1e-4      # standard (l2) BN, Keras BatchNormalization


def glorot_uniform(n_in, n_out, rng, fan_out=None, rows=None):
    """Glorot & Bengio (2010) uniform, drawn (n_in, n_out) as scikit-learn's
    MLP; ``fan_out`` (default ``n_out``) is ``k*k*filters`` for a
    convolution, as in Keras, so its limit is ``sqrt(6 / (fan_in + fan_out))``.
    ``rows`` draws only the next that many input rows of the matrix."""
    limit = math.sqrt(6.0 / (n_in + (n_out if fan_out is None else fan_out)))
    return rng.uniform(-limit, limit, size=(n_in if rows is None else rows, n_out))


def normal_fan_in(n_in, n_out, rng, fan_out=None, rows=None):
    """Normal(0, 1 / fan_in): the authors' code.  ``rows`` as in
    :func:`glorot_uniform`."""
    return rng.normal(0.0, 1.0 / math.sqrt(n_in), size=(n_in if rows is None else rows, n_out))


INITS = {"glorot_uniform": glorot_uniform, "normal_fan_in": normal_fan_in}

_INIT_CHUNK = 1 << 20   # float64 values drawn at a time (8 MiB)


def init_latent(name, n_in, n_out, rng, dtype, fan_out=None):
    """The latent weights ``(n_out, n_in)`` in ``dtype``, drawn by the
    initialisation ``name`` as one ``(n_in, n_out)`` matrix, but in chunks
    of input rows: a generator's stream is the same drawn whole or in
    consecutive pieces, so the values are those of one draw while the
    transient float64 stays at 8 MiB (one float64 draw of BinaryNet's
    8192 x 1024 layer would be 64 MiB, more than its float16 state)."""
    V = np.empty((n_out, n_in), dtype=dtype)
    rows = max(1, _INIT_CHUNK // max(1, n_out))
    for i0 in range(0, n_in, rows):
        i1 = min(n_in, i0 + rows)
        V[:, i0:i1] = INITS[name](n_in, n_out, rng, fan_out=fan_out, rows=i1 - i0).T
    return V


def quantize_pow2(G, bias=8):
    """Signed powers of two with a 4-bit exponent (the power-of-two
    format of the authors' profiling code, an option): per
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
    """What one training step keeps and in which types (Wang et al., Table 2).

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


def step_hyper(hp, solver, lr, t):
    """Kernel hyper-parameters of step ``t``; Adam's rate is bias-corrected."""
    if solver == "adam":
        lr = lr * math.sqrt(1.0 - hp.beta_2 ** t) / (1.0 - hp.beta_1 ** t)
    return (lr, hp.beta_1, hp.beta_2, hp.epsilon, hp.momentum, hp.bop_threshold)


# rows per block of the in-place batch-norm backward: its temporaries stay
# near 1 MiB whatever the batch and map size
BN_BLOCK_BYTES = 1 << 20


def bn_backward(G, psi, A, bias, kind):
    """dL/dZ of bias-only BN from dL/dA, written over ``G`` (float32, C
    order; Wang et al., Algorithm 1 lines 10-12 and Eq. 1).

    ``kind``: 'l2' the exact gradient with ``N = A - b``; 'l1' Eq. 1 with
    the float output ``A`` and its signs.  With ``v = G / psi``:
    ``v - mean(v) - mean(v * N) * N`` ('l2'), ``v - mean(v) - mean(v * A) *
    sgn(A)`` ('l1').  Works over blocks of rows, so its temporaries are
    bounded (the records already hold one float map per layer); the means
    add block sums in row order.
    """
    rows, n = G.shape
    step = max(1, BN_BLOCK_BYTES // (4 * max(1, n)))
    sum_v, sum_vn = np.zeros(n, F32), np.zeros(n, F32)

    def factor(r0, r1):
        # N (l2) or A (l1) of rows r0:r1, the factor inside the second mean
        return A[r0:r1] - bias if kind == "l2" else A[r0:r1]

    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        v = G[r0:r1]
        v /= psi
        sum_v += v.sum(axis=0, dtype=F32)
        sum_vn += (v * factor(r0, r1)).sum(axis=0, dtype=F32)
    mean_v, mean_vn = sum_v / F32(rows), sum_vn / F32(rows)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        v = G[r0:r1]
        v -= mean_v
        f = factor(r0, r1)
        v -= mean_vn * (f if kind == "l2" else np.where(f >= 0, F32(1), F32(-1)))
    return G


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
