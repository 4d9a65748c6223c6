"""Layer-stack engine of latent-weight training (LowMemBNNClassifier).

A network is a list of layer objects run by a :class:`LayerStack`: binary
dense and binary 2-D convolution layers (``sign(V)`` of latent weights ``V``;
the first may read the real-valued input), batch normalisation with a bias
and no scale, sign with a straight-through (STE) mask, 2x2 max pooling and
flatten.  Each layer owns its state and offers ``forward`` (training: keeps
what its backward pass needs, in the types the step prescribes),
``backward`` (from the gradient of its output to that of its input, plus
its own parameter gradient), ``step`` (the optimiser update through the
shared kernels) and ``infer`` (prediction, running statistics).  Nothing
here knows scikit-learn; the estimator runs epochs.

Two steps (Wang et al., arXiv 2102.04270): ``standard`` (their Algorithm
1: float32 records of every layer, float weight gradients, exact l2 batch
norm) and the proposed low-memory step (Algorithm 2: activations, STE masks,
pooling masks and weight gradients as bits, l1 batch norm whose backward
needs only the output's sign bits and one magnitude per channel, float16
state and gradients).

A residual conv block (:mod:`skbnn._architecture`) ends with a
:class:`Shortcut` after its batch norm: the sum ``BN(...) + x`` of the
previous block's real output ``x`` (kept as float32 only until the sum
exists) is what its sign reads.  The low-memory step then keeps, besides
the sum's signs and STE mask, the sign bits of the batch-norm output itself
(its backward reads them and ``omega``, not the sum's), one bit per
activation; the shortcut's backward adds the sum's gradient to that of
``x`` (an identity, or an average-unpool after a 'before_bn' pool).

Data between layers are row arrays: a vector batch is ``(n, F)``, a feature
map ``(n*H*W, C)`` in NHWC order (row ``(s*H + y)*W + x``), so batch norm
over ``batch*H*W`` is a reduction over rows and the packed kernels see
ordinary rows of bits (bit 1 = +1, channel ``c`` = bit ``c``).
"""
import math

import numpy as np

from . import _kernels
from ._engine import n_words, pack_pm1_rows, sample_rows
from ._latent import BN_BLOCK_BYTES, BN_EPS, F32, PSI_FLOOR, bn_backward, quantize_pow2, round_key, step_hyper
from ._rules import Backprop


class Act:
    """An activation handed from one layer to the next in a training step.

    ``data``: float32 rows (the real input), packed uint64 rows (signs) or
    pre-activation rows (int16/int32/float16/float32); ``shape``: (C, H, W)
    or (F,); ``n``: samples.  ``mask``: the packed STE mask of these signs
    (low-memory step), applied by whichever layer computes their gradient;
    ``sign_f`` / ``mask_f``: Algorithm 1's float32 records (standard step).
    """

    __slots__ = ("data", "shape", "n", "mask", "sign_f", "mask_f")

    def __init__(self, data, shape, n, mask=None, sign_f=None, mask_f=None):
        self.data, self.shape, self.n = data, tuple(shape), n
        self.mask, self.sign_f, self.mask_f = mask, sign_f, mask_f

    @property
    def rows(self):
        return self.n * (self.shape[1] * self.shape[2] if len(self.shape) == 3 else 1)

    @property
    def channels(self):
        return self.shape[0]


class Workspace:
    """The one transient buffer of a step (a NumPy array, so tracemalloc
    sees it): the pre-activations of the layer being computed in the forward
    pass, the gradient in flight in the backward pass.

    It holds the largest single tensor of the batch, not two: an operation
    whose output does not fit beside its input runs in place, streaming over
    chunks of samples (each chunk's input copied to a small scratch first),
    in ascending sample order when an output sample is no larger than an
    input sample and in descending order otherwise, so an output chunk never
    overwrites an input sample still to be read.  Every kernel's result for
    one sample depends on that sample only, so the results do not depend on
    the chunking."""

    CHUNK_BYTES = 1 << 20   # the per-chunk input scratch

    def __init__(self, batch, nbytes):
        self.batch = batch
        self.raw = np.empty(max(int(nbytes), 64), dtype=np.uint8)
        self._base = self.raw.__array_interface__["data"][0]

    def fits(self, batch):
        return batch <= self.batch

    def view(self, start, rows, cols, dtype):
        dtype = np.dtype(dtype)
        end = start + rows * cols * dtype.itemsize
        if end > self.raw.nbytes:
            raise MemoryError(f"workspace of {self.raw.nbytes} bytes cannot hold a "
                              f"({rows}, {cols}) {dtype} tensor")   # sizing bug
        return self.raw[start:end].view(dtype).reshape(rows, cols)

    def front(self, rows, cols, dtype):
        """A tensor at the start of the buffer (pre-activations, the logits'
        gradient)."""
        return self.view(0, rows, cols, dtype)

    def _offset(self, a):
        return a.__array_interface__["data"][0] - self._base

    def apply(self, src, n, out_rows, out_cols, out_dtype, fn):
        """``fn(src_rows, s0, s1, out_rows)`` for samples ``s0:s1`` of ``src``
        (an array in this buffer, ``n`` samples of equal row counts), writing
        a new ``(out_rows, out_cols)`` tensor of the buffer; returns it."""
        out_dtype = np.dtype(out_dtype)
        nbytes = out_rows * out_cols * out_dtype.itemsize
        lo = self._offset(src)
        hi = lo + src.nbytes
        if nbytes <= lo:                       # room before the input
            out = self.view(0, out_rows, out_cols, out_dtype)
        elif self.raw.nbytes - hi >= nbytes:   # room after it: at the end, so
            # the next output finds room before this one
            out = self.view(self.raw.nbytes - nbytes, out_rows, out_cols, out_dtype)
        else:
            return self._stream(src, n, lo, out_rows, out_cols, out_dtype, fn)
        fn(src, 0, n, out)
        return out

    def _stream(self, src, n, lo, out_rows, out_cols, out_dtype, fn):
        in_rows, out_per = src.shape[0] // n, out_rows // n
        in_bytes = src.nbytes // n
        out_bytes = out_per * out_cols * out_dtype.itemsize
        if lo and lo + n * out_bytes > self.raw.nbytes:
            src = self._to_front(src, n)
            lo = 0
        out = self.view(lo, out_rows, out_cols, out_dtype)
        step = max(1, self.CHUNK_BYTES // max(1, in_bytes))
        starts = list(range(0, n, step))
        if out_bytes > in_bytes:
            starts.reverse()
        for s0 in starts:
            s1 = min(n, s0 + step)
            chunk = src[s0 * in_rows:s1 * in_rows].copy()
            fn(chunk, s0, s1, out[s0 * out_per:s1 * out_per])
        return out

    def _to_front(self, src, n):
        """Move ``src`` to offset 0 (ascending chunks: never overwrites what
        is still to be moved)."""
        flat = self.raw[:src.nbytes]
        raw_src = src.reshape(-1).view(np.uint8)
        step = max(1, min(self.CHUNK_BYTES, self._offset(src)))
        for a in range(0, src.nbytes, step):
            b = min(src.nbytes, a + step)
            flat[a:b] = raw_src[a:b]
        return self.view(0, src.shape[0], src.shape[1], src.dtype)


def take_record(layer, ctx):
    """A layer's forward record for its backward pass, released at once in
    the low-memory step; the standard step keeps every record until the
    update, as Algorithm 1's baseline does (the paper's Table 2 lifetimes)."""
    rec = layer.record
    if not ctx.config.standard:
        layer.record = None
    return rec


class StepContext:
    """What one training step shares: the step's types (``StepConfig``), the
    workspace, the optimiser settings and step count, the thread count and
    the learning rule (:mod:`skbnn._rules`; backprop by default)."""

    def __init__(self, config, workspace, hyper, t, n_threads, grad_scale, rule=None):
        self.config, self.ws, self.hyper, self.t = config, workspace, hyper, t
        self.n_threads, self.grad_scale = n_threads, grad_scale
        self.rule = Backprop() if rule is None else rule
        # False while a forward pass feeds no backward pass through the
        # batch norms (a two-pass rule's second pass): they keep only signs
        self.records = True


# ---------------------------------------------------------------- weight layers
class WeightLayer:
    """Binary weights ``sign(V)`` of latent weights (the state dict ``s``:
    ``V`` (None for Bop, whose weights are the packed bits), ``packed``,
    ``m1``, ``m2``; shape ``(units, fan_in)``), trained by straight-through
    gradients."""

    trainable = True
    shortcut = None   # the Shortcut of a residual conv

    def __init__(self, spec, state, index, input_scale=1.0):
        self.spec, self.s, self.index = spec, state, index
        self.real_input = spec.real_input
        self.first = index == 0          # no gradient for the network's input
        self.input_scale = F32(input_scale)
        self.n_out, self.n_in = spec.units, spec.fan_in
        self.record = None

    # the gradient of the latent weights: bits (low memory) or float32
    def _step_weights(self, grad, as_bits, ctx, scale=None, first_unit=0):
        """The optimiser step of units ``first_unit:first_unit + len(grad)``
        (all by default); a block after the first draws its stochastic
        rounding from its own key."""
        hp, s = ctx.hyper, self.s
        if scale is None:
            scale = ctx.grad_scale(self) if as_bits else 1.0
        u = slice(first_unit, first_unit + grad.shape[0])

        def rows(a):
            return None if a is None else a[u]
        _kernels.optimizer_step(
            hp.solver, rows(s["V"]), rows(s["m1"]), rows(s["m2"]), grad if as_bits else None,
            None if as_bits else grad, scale, step_hyper(hp, hp.solver, hp.lr, ctx.t),
            hp.clip_weights, s["packed"][u], cancel=True,
            round_key=round_key(hp.round_seed, ctx.t, self.index,
                                0 if first_unit == 0 else 1 + first_unit),
            n_threads=ctx.n_threads)

    def _input_gradient_mask(self, act, ctx):
        return None if ctx.config.standard else act.mask

    def _apply_float_mask(self, G, act, ctx):
        if ctx.config.standard and act.mask_f is not None:
            G *= act.mask_f.reshape(G.shape)
        if ctx.config.pow2_bias is not None:
            G[...] = quantize_pow2(G, ctx.config.pow2_bias)
        return G

    def _float_input(self, act, ctx):
        """The input the weight gradient reads: the real data, Algorithm 1's
        float record (standard), else the packed bits."""
        if ctx.config.standard and act.sign_f is not None:
            return act.sign_f
        return act.data   # also the network's (real or binarised) input

    def gradient_from_signal(self, act, signal, ctx):
        """The gradient at this layer's input ``act`` from a per-sample signal
        instead of this layer's input gradient (rules other than backprop):
        ``signal(s0, s1, out)`` writes the values of samples ``s0:s1`` into
        ``out``, a ``(s1 - s0, pixels, width)`` view of the gradient (a
        map's NHWC rows; one pixel for a vector), and the result goes
        through the input's STE mask as the input gradient would.  Written
        at the front of the workspace in chunks of samples, so that a rule's
        temporaries stay at the size of a chunk."""
        n, width = act.n, act.channels
        per = act.rows // n
        G = ctx.ws.front(act.rows, width, ctx.config.grad_dtype)
        mask = self._input_gradient_mask(act, ctx)
        step = max(1, _SIGNAL_CHUNK // (4 * per * width))
        for s0 in range(0, n, step):
            s1 = min(n, s0 + step)
            out = G[s0 * per:s1 * per]
            signal(s0, s1, out.reshape(s1 - s0, per, width))
            if mask is not None:
                out *= unpack_mask(mask[s0 * per:s1 * per], width)
        return self._apply_float_mask(G, act, ctx)


_SIGNAL_CHUNK = 1 << 14   # bytes of float32 signal per chunk (a rule's temporaries)


def sign_records(A):
    """Algorithm 1's float32 records of a sign activation: ``sgn(A)`` as +-1
    (sign(0) = +1) and the STE mask ``|A| <= 1`` as 0/1, filled in blocks of
    rows so that no full-size temporary exists beside them."""
    sign, mask = np.empty_like(A), np.empty_like(A)
    step = max(1, BN_BLOCK_BYTES // (4 * max(1, A.shape[1])))
    for r0 in range(0, A.shape[0], step):
        a, s = A[r0:r0 + step], sign[r0:r0 + step]
        np.greater_equal(a, F32(0), out=s)   # 1 / 0, then +-1 (-0.0 counts as +1)
        s *= F32(2)
        s -= F32(1)
        np.less_equal(np.abs(a), F32(1), out=mask[r0:r0 + step])
    return sign, mask


def _float_signs(bits, n_bits):
    """Packed signs as float32 +-1 (Algorithm 1's float input record)."""
    f = unpack_mask(bits, n_bits, F32)
    f *= F32(2)
    f -= F32(1)
    return f


def _half_round(x, half):
    """``x`` (float32) rounded to float16 precision when ``half``, as the
    batch-norm kernel rounds its statistics."""
    return x.astype(np.float16).astype(F32) if half else x


def unpack_mask(mask, n_bits, dtype=np.uint8):
    """Packed rows of bits (bit ``c`` of a row = column ``c``) as 0/1 of
    ``dtype``, unpacked in blocks of rows (no uint8 copy of the whole)."""
    mask = np.ascontiguousarray(mask)
    out = np.empty((mask.shape[0], n_bits), dtype=dtype)
    step = max(1, BN_BLOCK_BYTES // max(1, n_bits))
    for r0 in range(0, mask.shape[0], step):
        out[r0:r0 + step] = np.unpackbits(mask[r0:r0 + step].view(np.uint8), axis=1,
                                          count=n_bits, bitorder="little")
    return out


_SCALE_BLOCK = 1 << 16


def scale_inplace(Z, scale):
    """``Z *= scale`` in Z's dtype.  float16 goes through float32 blocks of
    64k values: the result of NumPy's float16 product (float32 product, one
    rounding), without its software arithmetic (80 ms on CNV's first-layer
    map of a batch of 100, against about 1 ms here)."""
    if scale == 1:
        return Z
    if Z.dtype != np.float16 or not Z.flags.c_contiguous:
        Z *= Z.dtype.type(scale)
        return Z
    h = Z.reshape(-1).view(np.uint16)
    for i in range(0, h.shape[0], _SCALE_BLOCK):
        f = _kernels.f16_to_f32(h[i:i + _SCALE_BLOCK])
        f *= F32(scale)
        h[i:i + _SCALE_BLOCK] = _kernels.f32_to_f16(f)
    return Z


class Dense(WeightLayer):
    """Binary dense layer: ``Z = A sign(V)^T`` (popcount of packed bits, or
    float inputs times bits for the real-input layer)."""

    def preactivations(self, inputs, n_threads, out=None):
        if self.real_input:
            Z = _kernels.fdot_bits(inputs, self.s["packed"], out=out, n_threads=n_threads)
            return scale_inplace(Z, self.input_scale)
        return _kernels.bgemm(inputs, self.s["packed"], self.n_in, n_threads, out=out)

    def forward(self, act, ctx):
        self.record = act
        n = act.n
        dtype = F32 if self.real_input else np.int32
        Z = self.preactivations(act.data, ctx.n_threads, out=ctx.ws.front(n, self.n_out, dtype))
        return Act(Z, (self.n_out,), n)

    def infer(self, act, n_threads):
        return Act(self.preactivations(act.data, n_threads), (self.n_out,), act.n)

    def backward(self, G, ctx, input_grad=True):
        """``G`` = dL/dZ; returns dL/dA of the input (None for the first
        layer or without ``input_grad``) and the weight gradient."""
        act = take_record(self, ctx)
        # the weight gradient first: the input gradient may overwrite G
        grad = self.weight_gradient(G, act, ctx, sign=not ctx.config.standard)
        G_in = None
        if input_grad and not self.first:
            mask = self._input_gradient_mask(act, ctx)

            def input_grad(G_rows, s0, s1, out):
                _kernels.fsgemm(G_rows, self.s["packed"], self.n_in,
                                mask=None if mask is None else mask[s0:s1], out=out,
                                n_threads=ctx.n_threads)
            G_in = ctx.ws.apply(G, act.n, act.n, self.n_in, G.dtype, input_grad)
            G_in = self._apply_float_mask(G_in, act, ctx)
        return G_in, grad


    def weight_gradient(self, G, act, ctx, sign):
        """``G^T A`` of the gradient ``G`` of the pre-activations (the
        columns of some units) and the input ``act``: float32 ``(units,
        fan_in)``, or its packed signs."""
        inputs = self._float_input(act, ctx)
        if inputs.dtype == np.uint64:
            return _kernels.fsgemm(G, inputs, self.n_in, sign=sign, transpose_a=True,
                                   n_threads=ctx.n_threads)
        grad = _kernels.fgemm(G, inputs, sign=sign, transpose_a=True, n_threads=ctx.n_threads)
        if not sign and self.real_input and self.input_scale != 1:
            grad *= self.input_scale   # signs do not change with a positive scale
        return grad


class Conv2D(WeightLayer):
    """Binary k x k convolution, stride 1, exact zero padding (a padded tap
    contributes 0, never +-1), on NHWC maps packed along channels.  The
    latent weights are ``(filters, k*k*C_in)`` with column ``(ky*k + kx)*C_in
    + c``."""

    def __init__(self, spec, state, index, input_scale=1.0):
        super().__init__(spec, state, index, input_scale)
        self.C, self.H, self.W = spec.in_shape
        self.k, self.pad = spec.kernel_size, spec.pad

    def _geometry(self, n):
        return n, self.H, self.W, self.C

    def _conv(self, X, n, out, n_threads):
        args = (X, n, self.H, self.W, self.C, self.s["packed"], self.k, self.pad)
        if self.real_input:
            Z = _kernels.conv2d_real(*args, out=out, n_threads=n_threads)
            return scale_inplace(Z, self.input_scale)
        return _kernels.conv2d_bits(*args, out=out, n_threads=n_threads)

    def _z_dtype(self, standard):
        """16 bits in the low-memory step (exact integers; float16 for the real
        input layer, the paper's Y type), 32 in the standard step."""
        if self.real_input:
            return F32 if standard else np.float16
        return np.int32 if standard else np.int16

    def forward(self, act, ctx):
        self.record = act
        n = act.n
        rows = n * self.spec.out_shape[1] * self.spec.out_shape[2]
        out = ctx.ws.front(rows, self.n_out, self._z_dtype(ctx.config.standard))
        Z = self._conv(act.data, n, out, ctx.n_threads)
        return Act(Z, self.spec.out_shape, n)

    def infer(self, act, n_threads):
        rows = act.n * self.spec.out_shape[1] * self.spec.out_shape[2]
        dtype = F32 if self.real_input else np.int32
        Z = self._conv(act.data, act.n, np.empty((rows, self.n_out), dtype), n_threads)
        return Act(Z, self.spec.out_shape, act.n)

    def weight_gradient(self, G, act, ctx, sign):
        """The weight gradient from ``G`` (rows of the output pixels, the
        columns of some filters) and the input ``act``: float32 ``(filters,
        k*k*C_in)``, or its packed signs."""
        grad = _kernels.conv2d_weight_grad(G, self._float_input(act, ctx), *self._geometry(act.n),
                                           self.k, self.pad, sign=sign, n_threads=ctx.n_threads)
        if not sign and self.real_input and self.input_scale != 1:
            grad *= self.input_scale
        return grad

    def backward(self, G, ctx, input_grad=True):
        act = take_record(self, ctx)
        # the weight gradient first: the input gradient may overwrite G
        grad = self.weight_gradient(G, act, ctx, sign=not ctx.config.standard)
        G_in = None
        if input_grad and not self.first:
            mask = self._input_gradient_mask(act, ctx)
            per = self.H * self.W

            def input_grad(G_rows, s0, s1, out):
                _kernels.conv2d_input_grad(
                    G_rows, *self._geometry(s1 - s0), self.s["packed"], self.k, self.pad,
                    out=out, mask=None if mask is None else mask[s0 * per:s1 * per],
                    n_threads=ctx.n_threads)
            G_in = ctx.ws.apply(G, act.n, act.rows, self.C, G.dtype, input_grad)
            G_in = self._apply_float_mask(G_in, act, ctx)
        return G_in, grad


# ---------------------------------------------------------------- batch norm and sign
class BatchNorm:
    """Batch normalisation with a bias and no scale, per channel over the
    batch (and every pixel of a map): l1 scale (mean absolute deviation) in
    the low-memory step, l2 (standard deviation) in the standard one.  Its
    state (``bias``, its moments, running statistics) lives in the weight
    layer's state dict.  ``sign`` tells whether a sign follows (hidden
    blocks) or the output are the logits."""

    trainable = True

    def __init__(self, spec, state, index, sign):
        self.spec, self.s, self.index, self.sign = spec, state, index, sign
        self.n = state["bias"].shape[0]
        self.record = None
        self.bias_grad = None
        self.keep_real = False   # set by the stack: a shortcut reads this output
        self.real = None
        self.real_pair = None    # the same, per half of a paired forward pass

    def forward(self, act, ctx):
        """Fused epilogue over the pre-activations: batch statistics and the
        output's packed signs, STE mask and float16 magnitude (low memory) or
        the float output (l1/l2 backward, standard step, logits).  Returns
        the packed signs as an :class:`Act` with ``mask`` (hidden blocks) or
        the float output (the logits, or a residual block's output before
        its :class:`Shortcut`, a scratch the shortcut may add into)."""
        cfg, Z = ctx.config, act.data
        rows, n = Z.shape
        wn = n_words(n)
        proposed = cfg.kind == "proposed"
        signs_out = self.sign and not self.spec.residual   # a sign reads this output
        keep = ctx.records or not self.sign   # False: no backward reads the records
        # the backward (l1 / l2, standard) or the logits read the float output
        keep_out = keep and (not self.sign or cfg.standard or not proposed)
        A = (np.empty((rows, n), F32) if keep_out or not signs_out or self.keep_real
             else None)
        rec = {
            "psi": np.empty(n, F32),
            "omega": np.empty(n, F32) if proposed and keep else None,
            "out": A if keep_out else None,
        }
        bits = np.empty((rows, wn), dtype=np.uint64)
        mask = np.empty((rows, wn), dtype=np.uint64) if signs_out and keep else None
        pre_bits = (np.empty((rows, wn), dtype=np.uint64)
                    if proposed and cfg.pre_bias and keep else None)
        # the signs of this output itself: with a shortcut they are not those
        # of the sum the next sign reads, one more bit per activation
        rec["bn_bits"] = pre_bits if pre_bits is not None else bits
        mu = np.empty(n, F32)
        _kernels.bn_forward(Z, self.s["bias"].astype(F32), cfg.kind == "l2", BN_EPS,
                            PSI_FLOOR, cfg.half, mu, rec["psi"], bits, mask,
                            pre_bits, rec["omega"], cfg.pre_bias, A, ctx.n_threads)
        self._update_running(mu, rec["psi"], cfg.bn_momentum)
        self.record = rec
        if self.keep_real:   # x of the shortcut of the next block
            self.real = A
        if not signs_out:
            if A is rec["out"] and self.sign:   # the backward reads it: a scratch to add into
                A = A.copy()
            return Act(A, act.shape, act.n)
        out = Act(bits, act.shape, act.n)
        out.mask = mask
        if cfg.standard:
            # Algorithm 1's float32 records: +-1 output and 0/1 STE mask
            if keep:
                out.sign_f, out.mask_f = sign_records(A)
            else:   # the next layer's float32 input record only
                out.sign_f = _float_signs(bits, n)
        return out

    def forward_pair(self, pre, ctx):
        """Training forward of a batch given as two halves normalised as one
        batch, recording nothing for a backward pass (a two-pass rule's
        second pass).  ``pre(h)`` gives half ``h``'s pre-activations (in
        the workspace: one half at a time, unless the caller keeps a
        copy): the joint mean sums both halves, the joint deviation sums
        the second (still there) then the first again, whose output
        follows, then the second's.  The sums run as :meth:`forward`'s, per half, then add.
        Returns the two outputs as :meth:`forward` would (packed signs, or
        the float output before a shortcut)."""
        cfg, n = ctx.config, self.n
        l2 = cfg.kind == "l2"
        bias = self.s["bias"].astype(F32)
        mu, acc = np.zeros(n, F32), np.zeros(n, F32)
        rows = 0
        for h in (0, 1):
            Z = pre(h).data
            _kernels.bn_stats_add(Z, "sum", mu, acc, ctx.n_threads)
            rows += Z.shape[0]
        mu = _half_round(acc / F32(rows), cfg.half)
        dev, mode = np.zeros(n, F32), "l2" if l2 else "l1"
        _kernels.bn_stats_add(Z, mode, mu, dev, ctx.n_threads)
        act = pre(0)
        _kernels.bn_stats_add(act.data, mode, mu, dev, ctx.n_threads)
        q = dev / F32(rows)
        psi = _half_round(np.sqrt(q + F32(BN_EPS)) if l2 else np.maximum(q, F32(PSI_FLOOR)),
                          cfg.half)
        self._update_running(mu, psi, cfg.bn_momentum)
        outs, reals = [], []
        for h in (0, 1):
            if h:
                act = pre(1)
            out, A = self._apply_stats(act, mu, psi, bias, ctx)
            outs.append(out)
            reals.append(A)
        if self.keep_real:
            self.real_pair = reals
        return outs

    def _apply_stats(self, act, mu, psi, bias, ctx):
        """The output of pre-activations ``act`` with given statistics: the
        packed signs (with Algorithm 1's float32 input record in the
        standard step) or the float output; and the float output when a
        shortcut reads it."""
        Z = act.data
        signs_out = self.sign and not self.spec.residual
        A = np.empty(Z.shape, F32) if not signs_out or self.keep_real else None
        bits = np.empty((Z.shape[0], n_words(self.n)), dtype=np.uint64)
        _kernels.bn_apply(Z, mu, psi, bias, bits, A, ctx.n_threads)
        if not signs_out:
            return Act(A, act.shape, act.n), A
        out = Act(bits, act.shape, act.n)
        if ctx.config.standard:
            out.sign_f = _float_signs(bits, self.n)
        return out, A

    def _update_running(self, mu, psi, momentum):
        keep = F32(momentum)
        for name, batch in (("running_mean", mu), ("running_scale", psi)):
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

    def infer(self, act, n_threads):
        Z = act.data.astype(F32, copy=False)
        if Z is act.data and not Z.flags.writeable:
            Z = Z.copy()
        Z -= self.s["running_mean"].astype(F32)
        Z /= np.maximum(self.s["running_scale"].astype(F32), F32(PSI_FLOOR))
        Z += self.s["bias"].astype(F32)
        if self.keep_real:
            self.real = Z
        return Act(Z, act.shape, act.n)

    def backward(self, G, ctx):
        """dL/dZ from dL/dA, written over ``G``; keeps the bias gradient."""
        rec = take_record(self, ctx)
        cfg = ctx.config
        if cfg.kind == "proposed":
            G_b = np.empty(self.n, F32)
            _kernels.bn_backward_bits(G, rec["psi"], rec["bn_bits"], rec["omega"], G_b,
                                      ctx.n_threads)
        else:
            G32 = G if G.dtype == F32 else G.astype(F32)
            G_b = G32.sum(axis=0, dtype=F32)
            bn_backward(G32, rec["psi"], rec["out"], self.s["bias"].astype(F32), cfg.kind)
            if G32 is not G:
                G[...] = G32
        if cfg.pow2_bias is not None:
            G[...] = quantize_pow2(G, cfg.pow2_bias)
        self.bias_grad = G_b
        return G

    def step(self, ctx):
        """The bias: never cancelled; Bop's bias uses Adam at 1e-3 (Bop has no
        rule for real-valued parameters)."""
        hp, s = ctx.hyper, self.s
        bias_solver, bias_lr = ("adam", 1e-3) if hp.solver == "bop" else (hp.solver, hp.lr)
        dummy = np.zeros((1, n_words(self.n)), dtype=np.uint64)
        _kernels.optimizer_step(
            bias_solver, s["bias"][None], s["bias_m1"][None], s["bias_m2"][None], None,
            np.ascontiguousarray(self.bias_grad, dtype=F32)[None], 1.0,
            step_hyper(hp, bias_solver, bias_lr, ctx.t), False, dummy, cancel=False,
            round_key=round_key(hp.round_seed, ctx.t, self.index, 1))
        self.bias_grad = None


class Shortcut:
    """The real-valued shortcut of a residual block (Bi-Real-Net): adds the
    block's real input ``x`` to its batch-norm output, ``S = BN(...) + x``,
    and emits the packed signs of ``S`` with the STE mask ``|S| <= 1`` (the
    next sign reads the sum).  ``x`` is the real output of the previous
    block, held by ``source`` (its :class:`BatchNorm` or :class:`Shortcut`,
    whose ``keep_real`` the stack sets) only until the sum exists; after a
    'before_bn' pool (``pooled``) it is added as its 2x2 average.

    Backward: the gradient of ``S`` goes on to the batch norm unchanged,
    and a copy (the shortcut's identity, or average-unpool, backward) waits
    in the record until the block's weight layer has the gradient of its
    input: :meth:`add_to_input_gradient` adds it there, past the STE mask
    of ``x``'s signs.  A local rule (DRTP, HSIC) keeps no copy: it updates
    the block below before this one's gradient exists."""

    trainable = False

    def __init__(self, spec, pooled):
        self.spec, self.pooled = spec, pooled
        self.source = None
        self.keep_real = False
        self.real = self.record = None
        self.real_pair = None

    def _windows(self, a):
        """The 2x2 windows of the pool of rows ``a`` at the input's
        resolution, a view ``(n, H/2, 2, W/2, 2, C)``."""
        C, H, W = self.spec.in_shape
        Ho, Wo = H // 2, W // 2
        return a.reshape(-1, H, W, C)[:, :2 * Ho, :2 * Wo].reshape(-1, Ho, 2, Wo, 2, C)

    def _add_x(self, A):
        x, self.source.real = self.source.real, None
        if self.pooled:
            w = self._windows(x)
            # a fixed order of the four terms: the same floats on every path
            x = w[:, :, 0, :, 0] + w[:, :, 0, :, 1] + w[:, :, 1, :, 0] + w[:, :, 1, :, 1]
            x *= F32(0.25)
            x = x.reshape(A.shape)
        A += x
        if self.keep_real:
            self.real = A
        return A

    def forward(self, act, ctx):
        S = self._add_x(act.data)
        out = Act(pack_pm1_rows(S), act.shape, act.n)
        if ctx.config.standard:
            out.sign_f, out.mask_f = sign_records(S)
        # the STE mask |S| <= 1 as the signs of 1 - |S|, over S unless it is
        # the next block's x
        T = np.abs(S, out=np.empty_like(S) if self.keep_real else S)
        out.mask = pack_pm1_rows(np.subtract(F32(1), T, out=T))
        return out

    def infer(self, act, n_threads):
        return Act(self._add_x(act.data), act.shape, act.n)

    def backward(self, G, ctx):
        if not ctx.rule.local:
            self.record = G.copy()
        return G

    def add_to_input_gradient(self, G, ctx):
        """``G``, the gradient of the block's input signs past their STE mask,
        plus the waiting shortcut gradient: the gradient of ``x``."""
        carry, self.record = self.record, None
        if self.pooled:   # the average's backward: a quarter to each of its four
            win = self._windows(G)
            carry = carry.reshape(win.shape[0], win.shape[1], 1, win.shape[3], 1, -1)
            carry *= carry.dtype.type(0.25)
            win += carry
        else:
            G += carry
        if ctx.config.pow2_bias is not None:
            G[...] = quantize_pow2(G, ctx.config.pow2_bias)
        return G


class Sign:
    """Sign activation (sign(0) = +1) with the straight-through gradient
    where ``|A| <= 1``.  The fused batch-norm epilogue emits the signs and
    the 1-bit mask; the mask travels with the signs (:class:`Act`) and is
    applied by the layer that computes their gradient, so the backward pass
    here has nothing left to do."""

    trainable = False

    def forward(self, act, ctx):
        return act

    def infer(self, act, n_threads):
        return Act(pack_pm1_rows(act.data), act.shape, act.n)

    def backward(self, G, ctx):
        return G


class MaxPool2D:
    """2x2 max pooling, stride 2 (floor on odd sizes).  ``position``:
    'after_sign' pools the signs of the preceding block (the max of +-1
    values is the OR of their bits; CNV's order in the authors' code);
    'before_bn' pools a convolution's pre-activations before its batch norm
    (BinaryNet's order).  The argmax mask is kept as bits in the low-memory
    step and as float32 0/1 in the standard one (the paper's Table 2)."""

    trainable = False

    def __init__(self, spec):
        self.spec = spec
        self.C, self.H, self.W = spec.in_shape
        self.record = None

    def forward(self, act, ctx):
        n, standard = act.n, ctx.config.standard
        data = act.sign_f if standard and act.sign_f is not None else act.data
        if self.spec.position == "before_bn":
            # pre-activations in the workspace: pooled there, argmax bits kept
            argmax = np.empty((data.shape[0], n_words(self.C)), dtype=np.uint64)
            per = self.H * self.W

            def pool(Z_rows, s0, s1, out):
                out[...], argmax[s0 * per:s1 * per] = _kernels.maxpool2x2(
                    Z_rows, s1 - s0, self.H, self.W, self.C, n_threads=ctx.n_threads)
            Ho, Wo = self.spec.out_shape[1:]
            out = ctx.ws.apply(data, n, n * Ho * Wo, self.C, data.dtype, pool)
        else:
            out, argmax = _kernels.maxpool2x2(data, n, self.H, self.W, self.C,
                                              n_threads=ctx.n_threads)
        res = Act(out, self.spec.out_shape, n)
        rec = {"in": act, "argmax": argmax}
        if standard:
            if self.spec.position == "after_sign":
                # the pooled float +-1 record, and its bits for the products;
                # the unpooled +-1 record is no layer's input (the unpool
                # needs only its STE mask): freed before the float argmax
                res.sign_f = out
                res.data = pack_pm1_rows(out)
                act.sign_f = data = None
            rec["argmax_f"] = unpack_mask(argmax, self.C, F32)
            rec["argmax"] = None
        self.record = rec
        return res

    def infer(self, act, n_threads):
        out, _ = _kernels.maxpool2x2(act.data, act.n, self.H, self.W, self.C,
                                     n_threads=n_threads)
        return Act(out, self.spec.out_shape, act.n)

    def backward(self, G, ctx):
        rec = take_record(self, ctx)
        return self.unpool(G, rec, rec["in"].n, ctx)

    def unpool(self, G, rec, n, ctx):
        """``G`` (the first ``n`` samples of the record ``rec``) routed to the
        argmax of each window (and through the STE mask of pooled signs)."""
        act = rec["in"]
        per, Ho, Wo = self.H * self.W, self.H // 2, self.W // 2
        if rec["argmax"] is not None:
            mask = act.mask if self.spec.position == "after_sign" else None

            def unpool(G_rows, s0, s1, out):
                _kernels.maxpool2x2_backward(
                    G_rows, rec["argmax"][s0 * per:s1 * per], s1 - s0, self.H, self.W, self.C,
                    out=out, mask=None if mask is None else mask[s0 * per:s1 * per],
                    n_threads=ctx.n_threads)
        else:   # standard step: Algorithm 1's float masks
            fmask = act.mask_f if self.spec.position == "after_sign" else None

            def unpool(G_rows, s0, s1, out):
                m = s1 - s0
                full = out.reshape(m, self.H, self.W, self.C)
                full[...] = 0
                win = full[:, :2 * Ho, :2 * Wo].reshape(m, Ho, 2, Wo, 2, self.C)
                win[...] = G_rows.reshape(m, Ho, 1, Wo, 1, self.C)
                out *= rec["argmax_f"][s0 * per:s1 * per]
                if fmask is not None:
                    out *= fmask[s0 * per:s1 * per]
        return ctx.ws.apply(G, n, n * per, self.C, G.dtype, unpool)


class Flatten:
    """A map's NHWC rows to one row per sample (bit or column ``p*C + c``);
    packed signs and their STE mask are repacked when ``C`` is not a
    multiple of 64, float rows are a free reshape."""

    trainable = False

    def __init__(self, spec):
        self.spec = spec
        self.C = spec.in_shape[0]
        self.P = spec.in_shape[1] * spec.in_shape[2]

    def _flat(self, a, n):
        return None if a is None else sample_rows(a, n, self.P, self.C)

    def forward(self, act, ctx):
        n = act.n
        return Act(self._flat(act.data, n), self.spec.out_shape, n,
                   mask=self._flat(act.mask, n), sign_f=self._flat(act.sign_f, n),
                   mask_f=self._flat(act.mask_f, n))

    def infer(self, act, n_threads):
        return Act(self._flat(act.data, act.n), self.spec.out_shape, act.n)

    def backward(self, G, ctx):
        return G.reshape(-1, self.C)


# ---------------------------------------------------------------- the stack
class LayerStack:
    """The layers of a network in order, built from a plan
    (:func:`skbnn._architecture.build_plan`) and the per-weight-layer state
    dicts.  Every conv and dense layer is followed by batch norm (then the
    :class:`Shortcut` of a residual conv), then sign except after the
    output layer; a pool or flatten sits where the plan puts it."""

    def __init__(self, plan, states, input_scale=1.0):
        self.plan = plan
        self.layers = []
        self.weight_layers = []
        w = 0
        block_out = None   # the layer holding the real output of the last block
        for spec in plan:
            if spec.kind in ("conv", "dense"):
                cls = Conv2D if spec.kind == "conv" else Dense
                layer = cls(spec, states[w], w, input_scale if spec.real_input else 1.0)
                self.layers.append(layer)
                self.weight_layers.append(layer)
                bn = BatchNorm(spec, states[w], w, sign=not spec.output)
                self.layers.append(bn)
                if spec.residual:
                    layer.shortcut = Shortcut(spec, pooled=False)
                    layer.shortcut.source = block_out
                    block_out.keep_real = True
                    self.layers.append(layer.shortcut)
                block_out = layer.shortcut or bn
                if not spec.output:
                    self.layers.append(Sign())
                w += 1
            elif spec.kind == "pool":
                pool = MaxPool2D(spec)
                if spec.position == "before_bn":
                    # between the conv and its batch norm
                    conv = self.weight_layers[-1]
                    self.layers.insert(self.layers.index(conv) + 1, pool)
                    if conv.shortcut is not None:
                        conv.shortcut.pooled = True
                else:
                    self.layers.append(pool)
            elif spec.kind == "flatten":
                self.layers.append(Flatten(spec))
            else:  # pragma: no cover - the plan is validated
                raise ValueError(f"unknown layer kind {spec.kind!r}")
        self.input_shape = plan[0].in_shape
        # where the output block starts: a local rule leaves only it to the
        # backward pass
        self._output_block = max(i for i, layer in enumerate(self.layers)
                                 if isinstance(layer, WeightLayer))

    # ------------------------------------------------------------ input
    def input_act(self, A):
        """The encoded batch as the first layer's input: float32 rows in C,
        H, W order become NHWC rows for a convolution (a reshape for one
        channel)."""
        n = A.shape[0]
        shape = self.input_shape
        if len(shape) == 3:
            C, H, W = shape
            if A.dtype == np.uint64:
                raise ValueError("convolutional networks read real-valued inputs")
            if C == 1:
                A = A.reshape(n * H * W, 1)
            else:
                A = np.ascontiguousarray(A.reshape(n, C, H, W).transpose(0, 2, 3, 1)
                                         ).reshape(n * H * W, C)
        return Act(A, shape, n)

    # ------------------------------------------------------------ training
    def workspace_bytes(self, batch, config):
        """Bytes of :class:`Workspace` for a batch: the largest pre-activation
        tensor or gradient of the network (gradients exist at every output
        and at every input but the data's)."""
        g_item = np.dtype(config.grad_dtype).itemsize
        nbytes = 0
        for i, spec in enumerate(self.plan):
            out = batch * int(np.prod(spec.out_shape))
            nbytes = max(nbytes, out * g_item)
            if i > 0:
                nbytes = max(nbytes, batch * int(np.prod(spec.in_shape)) * g_item)
            if spec.kind in ("conv", "dense"):
                z_item = 4 if (config.standard or spec.kind == "dense") else 2
                nbytes = max(nbytes, out * z_item)
        return nbytes

    def forward_train(self, A, ctx):
        """Forward pass of one batch; returns the float32 logits.  Under a
        local rule (DRTP) each block is updated as soon as the activation
        it feeds to the next weight layer exists, and its records are
        freed: the training memory of about one block.  A two-pass rule
        (SigProp) runs the inference forward here (:meth:`_inference_pass`)."""
        if ctx.rule.two_pass:
            return self._inference_pass(A, ctx)
        act = self.input_act(A)
        local, start = ctx.rule.local, 0
        for i, layer in enumerate(self.layers):
            if local and isinstance(layer, WeightLayer) and not layer.first:
                self._backward(self.layers[start:i], ctx.rule.hidden_gradient(layer, act, ctx),
                               ctx)
                act.mask = act.mask_f = None   # used: this layer needs only the signs
                start = i
            act = layer.forward(act, ctx)
        return act.data

    def backward_update(self, G_logits, ctx):
        """Backward pass from dL/dlogits, then the update (see
        :meth:`_backward`); under a local rule only the output block is
        left."""
        if ctx.rule.two_pass:
            self._paired_update(G_logits, ctx)
            return
        cfg = ctx.config
        B, n_cls = G_logits.shape
        G = ctx.ws.front(B, n_cls, cfg.grad_dtype)
        G[...] = G_logits
        if cfg.pow2_bias is not None:
            G[...] = quantize_pow2(G, cfg.pow2_bias)
        self._backward(self.layers[self._output_block if ctx.rule.local else 0:], G, ctx)

    def _backward(self, layers, G, ctx):
        """Backward pass of ``layers`` (consecutive, the first a weight
        layer) from the gradient ``G`` of the last one's output, layer by
        layer from the last, and their update.  The rule decides what
        reaches each hidden activation: the input gradient of the weight
        layer above (backprop) or its own signal (then no input gradient is
        computed).  In the low-memory step each weight layer is updated as
        soon as its 1-bit gradient exists (every gradient below it is
        computed before, from pre-update weights: the same result as the
        paper's separate update loop) and its record is released once used;
        the standard step keeps the float weight gradients of all layers
        until the update, as Algorithm 1's baseline does."""
        cfg, rule = ctx.config, ctx.rule
        pending = []
        for layer in reversed(layers):
            if isinstance(layer, WeightLayer):
                act = layer.record
                G, grad = layer.backward(G, ctx, input_grad=rule.backpropagates)
                if cfg.standard:
                    pending.append((layer, grad))
                else:
                    layer._step_weights(grad, True, ctx)
                del grad
                if G is None and not (layer.first or rule.local):
                    G = rule.hidden_gradient(layer, act, ctx)
                if G is not None and layer.shortcut is not None:
                    G = layer.shortcut.add_to_input_gradient(G, ctx)
                del act
            else:
                G = layer.backward(G, ctx)
                if isinstance(layer, BatchNorm) and not cfg.standard:
                    layer.step(ctx)
                elif isinstance(layer, BatchNorm):
                    pending.append((layer, None))
            if G is None:
                break
        for layer, grad in pending[::-1]:
            if grad is None:
                layer.step(ctx)
            else:
                layer._step_weights(grad, False, ctx)
        for layer in layers:
            layer.record = None

    # ------------------------------------------------------------ two-pass rules
    def _inference_pass(self, A, ctx):
        """First pass of a two-pass rule: the inference forward (running
        statistics, no records, nothing updated); keeps the batch and the
        output layer's input for :meth:`_paired_update`."""
        # samples are independent here: chunks whose two largest maps (a
        # layer's input and output) fit in a quarter of the workspace's size
        n = A.shape[0]
        budget = min(INFERENCE_CHUNK_BYTES, ctx.ws.raw.nbytes // 4)
        step = max(1, budget // (8 * self.max_elements()))
        logits, out_inputs = [], []
        for s0 in range(0, n, step):
            act = self.input_act(A[s0:s0 + step])
            for i, layer in enumerate(self.layers):
                if i == self._output_block:
                    out_inputs.append(act.data)
                act = layer.infer(act, ctx.n_threads)
            logits.append(act.data)
        out = self.layers[self._output_block]
        shape = out.spec.in_shape
        # the output batch norm's divisor as this pass used it (the second
        # pass updates the running statistics)
        bn = self.layers[self._output_block + 1]
        psi = np.maximum(bn.s["running_scale"].astype(F32), F32(PSI_FLOOR))
        self._first_pass = (A, Act(np.concatenate(out_inputs), shape, n), psi)
        return np.concatenate(logits)

    def _paired_update(self, G_logits, ctx):
        """Second pass of a two-pass rule and the update.  The batch and the
        rule's perturbed batch (:meth:`~skbnn._rules.SigpropTL.perturbed_input`)
        run through the training forward as two halves of one batch (joint
        batch statistics, running statistics updated once), block by block
        (:meth:`_paired_block`); each hidden weight layer is updated from
        its block's signs.  Hidden batch-norm biases keep their values.
        Then the output block is updated from ``G_logits`` through its
        inference-mode batch norm ``(Z - mean) / scale + b``, as the first
        pass computed it."""
        A, out_input, psi = self._first_pass
        self._first_pass = None
        standard = ctx.config.standard
        first = self.weight_layers[0]
        if isinstance(first, Dense):
            # linear in its input: the perturbed half's pre-activations are the
            # clean ones shifted (:meth:`~skbnn._rules.SigpropTL.shift_preactivations`),
            # so no perturbed batch exists
            halves = [self.input_act(A), None]
        else:
            halves = [self.input_act(A),
                      self.input_act(ctx.rule.perturbed_input(A, first.input_scale))]
        del A
        ctx.records = False
        starts = [i for i, layer in enumerate(self.layers) if isinstance(layer, WeightLayer)]
        for i, stop in zip(starts, starts[1:]):   # the hidden blocks
            halves = self._paired_block(self.layers[i:stop], halves, ctx)
        del halves
        for layer in self.layers:
            layer.record = None
        ctx.records = True
        # the output block, through the first pass's inference-mode batch norm
        out, bn = self.layers[self._output_block], self.layers[self._output_block + 1]
        grad = out.weight_gradient(np.ascontiguousarray(G_logits / psi, dtype=F32), out_input,
                                   ctx, sign=not standard)
        out._step_weights(grad, not standard, ctx)
        bn.bias_grad = G_logits.sum(axis=0, dtype=F32)
        bn.step(ctx)

    def _paired_block(self, block, halves, ctx):
        """One hidden block (``block``: its weight layer, a 'before_bn'
        pool, batch norm, shortcut, sign, pool, flatten) of the second
        pass on the clean and the perturbed half; updates its weight layer
        with ``dW = err^T x_in`` of the rule's block error (ternary in the
        low-memory step: a sign bit cannot say "no change") and returns the
        block's outputs for the next one."""
        weight, rest = block[0], list(block[1:])
        pool = rest.pop(0) if isinstance(rest[0], MaxPool2D) else None   # before_bn
        bn = rest.pop(0)
        pooled = [None]
        # the low-memory step recomputes each half's pre-activations when
        # they are read again (two more products per layer, a workspace of
        # B samples); the standard step keeps the first half's copy and the
        # second's in the workspace (the memory of 2B samples, no products)
        kept = [None, None]

        def pre(h):   # half h's pre-activations, in the workspace
            if kept[h] is not None:
                return kept[h]
            if halves[h] is None:   # the perturbed batch at a dense first layer
                z = weight.forward(halves[0], ctx)
                ctx.rule.shift_preactivations(weight, z.data, ctx)
            else:
                z = weight.forward(halves[h], ctx)
                if pool is not None:
                    z = pool.forward(z, ctx)
                    if h == 0:
                        pooled[0] = pool.record
            if ctx.config.standard:
                kept[h] = Act(z.data.copy(), z.shape, z.n) if h == 0 else z
            return z
        outs = bn.forward_pair(pre, ctx)
        if halves[1] is None:
            ctx.rule.drop_shift()
        signs = [None, None]
        for h in (0, 1):
            a = outs[h]
            for layer in rest:
                if isinstance(layer, Shortcut):   # x of this half
                    layer.source.real = layer.source.real_pair[h]
                a = layer.forward(a, ctx)
                if isinstance(layer, Shortcut) and layer.keep_real:
                    layer.real_pair = layer.real_pair or [None, None]
                    layer.real_pair[h], layer.real = layer.real, None
                if isinstance(layer, Sign):
                    signs[h] = a
            outs[h] = a
        for layer in rest:
            if isinstance(layer, Shortcut):
                layer.source.real_pair = None
        G = ctx.rule.block_error(signs[0], signs[1], ctx)
        del signs
        if pool is not None:
            G = pool.unpool(G, pooled[0], halves[0].n, ctx)
        # the low-memory step takes a dense layer's float gradient a block of
        # units at a time (a convolution's is small beside its maps, and
        # its gradient rows are too many to copy by columns)
        n_units = G.shape[1]
        step = (max(1, min(n_units, _TERNARY_BLOCK_BYTES // (4 * weight.n_in)))
                if isinstance(weight, Dense) and not ctx.config.standard else n_units)
        for u0 in range(0, n_units, step):
            G_u = G if step == n_units else G[:, u0:u0 + step]   # read in place
            grad = weight.weight_gradient(G_u, halves[0], ctx, sign=False)
            del G_u
            if not ctx.config.standard:
                np.sign(grad, out=grad)
            weight._step_weights(grad, False, ctx, scale=ctx.grad_scale(weight), first_unit=u0)
            del grad
        del G
        for layer in block:
            layer.record = None
        return outs

    # ------------------------------------------------------------ inference
    def logits(self, A, n_threads):
        """Float logits with every batch norm on its running statistics."""
        act = self.input_act(A)
        for layer in self.layers:
            act = layer.infer(act, n_threads)
        return act.data

    def max_elements(self):
        """Largest per-sample activation (sizes the prediction chunks)."""
        return max(int(np.prod(s.out_shape)) for s in self.plan)


INFERENCE_CHUNK_BYTES = 1 << 24  # at most, per two float32 maps of a two-pass rule's first pass
_TERNARY_BLOCK_BYTES = 1 << 15   # float32 weight gradient of a two-pass rule's units at a time


def weight_grad_scale(grad_scale, standard):
    """The attenuation of the 1-bit weight gradient: ``1/sqrt(fan_in)`` (the
    paper's section 5.2, fan-in ``k*k*C_in`` for a convolution), the authors'
    code's ``1/sqrt(fan_in * fan_out)``, or none."""
    def scale(layer):
        if standard or grad_scale == "none":
            return 1.0
        if grad_scale == "fan_in":
            return 1.0 / math.sqrt(layer.n_in)
        return 1.0 / math.sqrt(layer.n_in * layer.n_out)
    return scale
