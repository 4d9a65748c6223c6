"""Plain-NumPy reference of one standard training step of a small binary
convolutional network (float64, written from the definitions, no kernels).

The network follows LowMemBNNClassifier's conventions: NHWC maps; conv
weights ``V`` of shape ``(filters, k*k*C_in)`` with column ``(ky*k + kx)*C_in
+ c``; exact zero padding; batch norm with a bias and no scale, l2 (the
standard step, epsilon 1e-4, biased variance) per channel over
batch x pixels; sign (sign(0) = +1) with the straight-through gradient where
``|A| <= 1``; 2x2 max pooling (stride 2, floor; the gradient goes to the
first maximum of each window, in the order (0,0), (0,1), (1,0), (1,1)) after
the sign ('after_sign') or between a convolution and its batch norm
('before_bn'); flatten in NHWC order; the output layer's batch-norm output
are the logits of a mean softmax cross-entropy.

A residual conv (``spec.residual``) adds the previous block's real output
to its batch-norm output before the sign (an average-pooled one after a
'before_bn' pool).

``binary=False`` gives the float model of the same graph (latent weights
used as they are, identity activations, no STE mask): a smooth function
whose gradients the tests check by finite differences.
"""
import numpy as np

EPS = 1e-4
PSI_FLOOR = 1e-5


def sgn(x):
    return np.where(x >= 0, 1.0, -1.0)


def conv_forward(X, Wm, k, pad):
    """X (n, H, W, C); Wm (F, k*k*C) -> (n, Ho, Wo, F) with zero padding."""
    n, H, W, C = X.shape
    Xp = np.pad(X, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    Ho, Wo = H + 2 * pad - k + 1, W + 2 * pad - k + 1
    cols = np.empty((n, Ho, Wo, k * k * C))
    for ky in range(k):
        for kx in range(k):
            t = ky * k + kx
            cols[..., t * C:(t + 1) * C] = Xp[:, ky:ky + Ho, kx:kx + Wo, :]
    return cols @ Wm.T, cols


def conv_backward(G, cols, Wm, X_shape, k, pad):
    """dV (F, k*k*C) and dX (n, H, W, C) of :func:`conv_forward`."""
    n, H, W, C = X_shape
    Ho, Wo = G.shape[1], G.shape[2]
    dV = G.reshape(-1, G.shape[3]).T @ cols.reshape(-1, cols.shape[3])
    dcols = G @ Wm
    dXp = np.zeros((n, H + 2 * pad, W + 2 * pad, C))
    for ky in range(k):
        for kx in range(k):
            t = ky * k + kx
            dXp[:, ky:ky + Ho, kx:kx + Wo, :] += dcols[..., t * C:(t + 1) * C]
    return dV, dXp[:, pad:pad + H, pad:pad + W, :]


def pool_forward(X):
    """2x2 max pool (floor), first maximum of each window."""
    n, H, W, C = X.shape
    Ho, Wo = H // 2, W // 2
    win = X[:, :2 * Ho, :2 * Wo].reshape(n, Ho, 2, Wo, 2, C).transpose(0, 1, 3, 5, 2, 4)
    win = win.reshape(n, Ho, Wo, C, 4)
    arg = np.argmax(win, axis=-1)          # first maximum
    return np.take_along_axis(win, arg[..., None], -1)[..., 0], arg


def pool_backward(G, arg, X_shape):
    n, H, W, C = X_shape
    Ho, Wo = G.shape[1], G.shape[2]
    win = np.zeros((n, Ho, Wo, C, 4))
    np.put_along_axis(win, arg[..., None], G[..., None], -1)
    out = np.zeros(X_shape)
    out[:, :2 * Ho, :2 * Wo] = win.reshape(n, Ho, Wo, C, 2, 2).transpose(
        0, 1, 4, 2, 5, 3).reshape(n, 2 * Ho, 2 * Wo, C)
    return out


def bn_forward(Z, b, kind="l2"):
    """Batch norm per channel over every axis but the last: l2 (standard
    deviation), or the low-memory step's l1 (mean absolute deviation,
    floored at 1e-5) for ``kind='proposed'``."""
    axes = tuple(range(Z.ndim - 1))
    mu = Z.mean(axis=axes)
    if kind == "l2":
        psi = np.sqrt(((Z - mu) ** 2).mean(axis=axes) + EPS)
    else:
        psi = np.maximum(np.abs(Z - mu).mean(axis=axes), PSI_FLOOR)
    N = (Z - mu) / psi
    return N + b, (N, psi, N + b, kind)


def bn_backward(G, cache):
    """The exact l2 backward, or the low-memory step's proposed one from the
    signs of the output ``A`` and ``omega = mean |A|`` (Wang et al., B2)."""
    N, psi, A, kind = cache
    axes = tuple(range(G.ndim - 1))
    v = G / psi
    if kind == "l2":
        return v - v.mean(axis=axes) - (v * N).mean(axis=axes) * N, G.sum(axis=axes)
    bits, omega = sgn(A), np.abs(A).mean(axis=axes)
    return v - v.mean(axis=axes) - (v * bits * omega).mean(axis=axes) * bits, G.sum(axis=axes)


def avgpool(X):
    """2x2 average pool (floor) of NHWC maps: the downsampling shortcut."""
    n, H, W, C = X.shape
    Ho, Wo = H // 2, W // 2
    return X[:, :2 * Ho, :2 * Wo].reshape(n, Ho, 2, Wo, 2, C).mean(axis=(2, 4))


def avgpool_backward(G, X_shape):
    n, H, W, C = X_shape
    Ho, Wo = G.shape[1], G.shape[2]
    out = np.zeros(X_shape)
    out[:, :2 * Ho, :2 * Wo] = np.repeat(np.repeat(G, 2, axis=1), 2, axis=2) / 4
    return out


def step(images, y, plan, Vs, biases, binary=True, signal=None, feedback=None, hidden=None,
         bn="l2", carry_shortcut=True):
    """Loss and gradients of one batch.

    ``images`` (n, C, H, W); ``plan`` a list of LayerSpec (kind, kernel_size,
    pad, position, residual, output); ``Vs``/``biases`` per weight layer
    (float64).  ``signal``: None (backprop) or a function of the logits'
    gradient giving the per-sample signal (n, n_classes) of DFA / DRTP: the
    input of weight layer ``w >= 1`` then receives ``signal @ feedback[w -
    1]`` (broadcast over the pixels of a map) instead of its backpropagated
    gradient.  ``hidden``: None, or a function of the input ``x`` (NHWC or
    (n, F)) of weight layer ``w >= 1`` giving its gradient (HSIC), used
    instead likewise.  ``bn``: 'l2' or 'proposed' (l1 forward, the
    low-memory step's backward from the output's signs).

    A residual conv's block output is ``S = BN(conv(sgn x)) + x`` (``+
    avgpool(x)`` after a 'before_bn' pool), ``x`` the previous block's real
    output; the next sign reads ``S`` (STE mask ``|S| <= 1``).  Backward:
    the gradient of ``S`` also reaches ``x`` directly, past ``x``'s own STE
    mask (not with ``carry_shortcut=False``, the local rules' detached
    block inputs).  Returns ``(loss, dVs, dbs)``.
    """
    n = images.shape[0]
    a = np.transpose(images, (0, 2, 3, 1)).astype(np.float64)
    w_of = sgn if binary else (lambda v: v)
    tape, w, inputs = [], 0, []
    pending_pool = None
    real = x = None   # the real output of the last block; a residual block's x
    for i, spec in enumerate(plan):
        if spec.kind in ("conv", "dense"):
            inputs.append(a)
            x = real if spec.residual else None
        if spec.kind == "conv":
            Wm = w_of(Vs[w])
            Z, cols = conv_forward(a, Wm, spec.kernel_size, spec.pad)
            tape.append(("conv", w, cols, Wm, a.shape, spec))
            nxt = plan[i + 1] if i + 1 < len(plan) else None
            if nxt is not None and nxt.kind == "pool" and nxt.position == "before_bn":
                pending_pool = Z
                a = None
            else:
                a, real = _bn_sign(Z, w, biases, spec, tape, binary, bn, x)
            w += 1
        elif spec.kind == "pool" and spec.position == "before_bn":
            P, arg = pool_forward(pending_pool)
            tape.append(("pool", arg, pending_pool.shape))
            a, real = _bn_sign(P, w - 1, biases, spec, tape, binary, bn, x)
        elif spec.kind == "pool":
            P, arg = pool_forward(a)
            tape.append(("pool", arg, a.shape))
            a, real = P, None
        elif spec.kind == "flatten":
            tape.append(("flatten", a.shape))
            a = a.reshape(n, -1)
        else:  # dense
            Wm = w_of(Vs[w])
            Z = a @ Wm.T
            tape.append(("dense", w, a, Wm))
            a, real = _bn_sign(Z, w, biases, spec, tape, binary, bn, None)
            w += 1
    logits = a
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(n), y]).mean()
    G = (p - np.eye(logits.shape[1])[y]) / n
    s = None if signal is None else signal(G)
    dVs, dbs = [None] * len(Vs), [None] * len(biases)
    carry = {}   # weight layer -> the shortcut gradient waiting for its input x
    for entry in reversed(tape):
        kind = entry[0]
        if kind == "bn":
            _, wi, cache, mask, x = entry
            if mask is not None:
                G = G * mask
            if wi + 1 in carry:   # this block's output is the next block's x
                G = G + carry.pop(wi + 1)
            if x is not None and carry_shortcut:
                carry[wi] = G if x.shape == G.shape else avgpool_backward(G, x.shape)
            G, dbs[wi] = bn_backward(G, cache)
        elif kind == "pool":
            G = pool_backward(G, entry[1], entry[2])
        elif kind == "flatten":
            G = G.reshape(entry[1])
        elif kind == "dense":
            _, wi, x, Wm = entry
            dVs[wi] = G.T @ x
            G = G @ Wm
        else:
            _, wi, cols, Wm, shape, spec = entry
            dVs[wi], G = conv_backward(G, cols, Wm, shape, spec.kernel_size, spec.pad)
        if hidden is not None and kind in ("dense", "conv") and entry[1] > 0:
            G = hidden(inputs[entry[1]])
        elif s is not None and kind in ("dense", "conv") and entry[1] > 0:
            rows = s @ feedback[entry[1] - 1]        # (n, width of the input)
            G = np.broadcast_to(rows.reshape((n,) + (1,) * (G.ndim - 2) + (-1,)),
                                G.shape).copy()
    return loss, dVs, dbs


def _bn_sign(Z, w, biases, spec, tape, binary, kind="l2", x=None):
    """The block's output after its batch norm (and shortcut ``x``): the
    signs read by the next layer (the logits for the output layer) and the
    real value they are the signs of."""
    A, cache = bn_forward(Z, biases[w], kind)
    if x is not None:
        A = A + (x if x.shape == A.shape else avgpool(x))
    if spec.output:
        tape.append(("bn", w, cache, None, None))
        return A, A
    mask = (np.abs(A) <= 1).astype(float) if binary else None
    tape.append(("bn", w, cache, mask, x))
    return (sgn(A) if binary else A), A


def sigprop_step(images, y, plan, Vs, biases, F, scale=1.0):
    """Weight and bias gradients of one SigProp step (the authors'
    pepita.py) at a model's first step (running mean 0, scale 1).

    Pass 1: the inference forward (batch norm ``Z + b``); the output error
    ``e`` trains the output layer.  Pass 2: the images and the images plus
    ``e F / scale`` (flattened in C, H, W order) through the training
    forward (l2 batch statistics over both); every hidden weight layer gets
    ``err^T cols`` (the clean half) with ``err = (h - h_err) / k``, ``h``
    its block's signs and ``k`` their pixels, routed back through a
    'before_bn' pool's first maximum; a residual block's signs are those of
    its sum.  Returns ``(dVs, dbs)``.
    """
    n = images.shape[0]

    def run(a, train):
        blocks, w, pending, real = [], 0, None, None
        for i, spec in enumerate(plan):
            nxt = plan[i + 1] if i + 1 < len(plan) else None
            if spec.kind in ("conv", "dense"):
                Wm = sgn(Vs[w])
                if spec.kind == "conv":
                    Z, cols = conv_forward(a, Wm, spec.kernel_size, spec.pad)
                else:
                    Z, cols = a @ Wm.T, a
                blocks.append({"cols": cols, "spec": spec, "x": real if spec.residual else None})
                w += 1
                if nxt is not None and nxt.kind == "pool" and nxt.position == "before_bn":
                    pending = Z
                    continue
                a, real = bn(Z, w - 1, spec, train, blocks[-1])
            elif spec.kind == "pool" and spec.position == "before_bn":
                P, arg = pool_forward(pending)
                blocks[-1].update(arg=arg, pre_shape=pending.shape)
                a, real = bn(P, w - 1, blocks[-1]["spec"], train, blocks[-1])
            elif spec.kind == "pool":
                a, _ = pool_forward(a)
            elif spec.kind == "flatten":
                a = a.reshape(a.shape[0], -1)
        return a, blocks

    def bn(Z, w, spec, train, block):
        A = bn_forward(Z, biases[w])[0] if train else Z + biases[w]
        x = block["x"]
        if x is not None:   # a residual block's shortcut
            A = A + (x if x.shape == A.shape else avgpool(x))
        if spec.output:
            return A, A
        block["h"] = sgn(A)
        return block["h"], A

    a = np.transpose(images, (0, 2, 3, 1)).astype(np.float64)
    logits, blocks = run(a, False)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    e = (p - np.eye(logits.shape[1])[y]) / n
    dVs = [None] * len(blocks)
    dbs = [np.zeros(V.shape[0]) for V in Vs]
    dVs[-1], dbs[-1] = e.T @ blocks[-1]["cols"], e.sum(axis=0)
    flat = images.reshape(n, -1)
    pert = (flat + e @ F / scale).reshape(images.shape)
    _, blocks = run(np.transpose(np.concatenate([images, pert]), (0, 2, 3, 1)), True)
    for w, block in enumerate(blocks[:-1]):
        h = block["h"]
        err = (h[:n] - h[n:]) / (h.shape[1] * h.shape[2] if h.ndim == 4 else 1)
        if "arg" in block:
            err = pool_backward(err, block["arg"][:n], (n,) + block["pre_shape"][1:])
        cols = block["cols"][:n]
        dVs[w] = err.reshape(-1, err.shape[-1]).T @ cols.reshape(-1, cols.shape[-1])
    return dVs, dbs
