#!/usr/bin/env python3
"""PyTorch peer of the convolutional ``LowMemBNNClassifier``: a standard STE
binary CNN.

The reference the convolutional benchmark compares skbnn against: the
standard binary-network training step (Courbariaux & Bengio's BinaryNet
recipe, the baseline of Wang et al., "Enabling Binary Neural Network
Training on the Edge", arXiv 2102.04270) written the usual way in PyTorch,
with float32 latent weights, float32 activations kept for autograd and the
stock ``torch.optim.Adam`` (its fused CPU kernel).  It follows the
conventions of the MLP peer ``_torch_bnn.py`` exactly and runs on the CPU
with an explicit thread count.

Model
-----
* every convolution and dense layer uses ``sign(V)`` (sign(0) = +1) of
  float32 latent weights ``V``: Glorot-uniform init (for a convolution
  fan_in = k*k*C_in and fan_out = k*k*C_out, as Keras and the authors), no
  bias; the weight gradient passes straight through to ``V``, and ``V`` is
  clipped to [-1, 1] after each optimiser step;
* after each layer ``BatchNorm2d`` / ``BatchNorm1d`` (eps 1e-4, momentum 0.1
  = Keras 0.9, affine=False; exact l2 backward by autograd) plus a learnable
  per-channel bias, no scale;
* hidden blocks end in sign with a straight-through gradient where
  ``|x| <= 1``; convolutions pad with zeros ('same') or not at all
  ('valid'); a 2x2 max pool either pools the sign output of its block
  (``("pool", "after_sign")``: conv-BN-sign-pool, the CNV/FINN order) or
  the convolution output before its batch norm (``("pool", "before_bn")``:
  conv-pool-BN-sign, the BinaryNet order);
* the first layer reads the real-valued input; inputs are (n, C, H, W) and
  are flattened in torch's order before the first dense layer; the output
  dense layer's BN output (bias included) are the logits; mean
  cross-entropy; Adam (lr 1e-3, betas (0.9, 0.999), eps 1e-8) on ``V`` and
  the BN biases; optionally the plateau schedule of the skbnn estimator
  (halve the rate after ``lr_patience`` epochs without a better validation,
  else training, accuracy) and its best-validation checkpoint.

Architectures are the plain-tuple lists of the skbnn estimator:
``("conv", filters[, kernel_size[, padding]])`` (defaults 3, 'same'),
``("pool",)`` = ``("pool", "after_sign")``, ``("pool", "before_bn")`` and
``("dense", units)``; the output layer is appended.  Presets:
``'cnv'`` and ``'binarynet'`` (:data:`PRESETS`).

torch is optional: this module imports without it; :func:`torch_available`
says whether :func:`train_torch_cnn` can run.

    python3 benchmarks/_torch_cnn.py --quick     # tiny random problem, seconds
    python3 benchmarks/_torch_cnn.py             # CNV on Fashion-MNIST 32x32, 1 epoch
"""
import copy
import time

import numpy as np
from _torch_bnn import torch_available  # noqa: F401  (re-exported for bench_conv)

__all__ = ["PRESETS", "torch_available", "parse_architecture", "build_torch_cnn",
           "train_torch_cnn", "fmnist_32x32"]

_EVAL_CHUNK = 500  # images per inference call: bounds the memory of evaluation

PRESETS = {
    # FINN's CNV: conv-BN-sign blocks, 2x2 max pool on the sign bits
    "cnv": [("conv", 64, 3, "valid"), ("conv", 64, 3, "valid"), ("pool", "after_sign"),
            ("conv", 128, 3, "valid"), ("conv", 128, 3, "valid"), ("pool", "after_sign"),
            ("conv", 256, 3, "valid"), ("conv", 256, 3, "valid"),
            ("dense", 512), ("dense", 512)],
    # Courbariaux et al.'s BinaryNet: conv-pool-BN-sign
    "binarynet": [("conv", 128), ("conv", 128), ("pool", "before_bn"),
                  ("conv", 256), ("conv", 256), ("pool", "before_bn"),
                  ("conv", 512), ("conv", 512), ("pool", "before_bn"),
                  ("dense", 1024), ("dense", 1024)],
}
POOL_MODES = ("after_sign", "before_bn")
PADDINGS = ("same", "valid")


# ------------------------------------------------------------ architecture
def parse_architecture(architecture, input_shape, n_classes):
    """Resolve an architecture into blocks with their shapes.

    Parameters
    ----------
    architecture : str or list of tuple
        A preset name (``'cnv'``, ``'binarynet'``) or a list of
        ``("conv", filters)``, ``("conv", filters, kernel_size)``,
        ``("conv", filters, kernel_size, padding)`` (defaults 3, 'same'),
        ``("pool",)``, ``("pool", "after_sign")``, ``("pool", "before_bn")``
        and ``("dense", units)``.  As in the skbnn estimator: a pool follows
        a convolution or another pool, a 'before_bn' pool directly follows
        a convolution, and no convolution or pool follows a dense layer.
    input_shape : tuple of int
        ``(C, H, W)`` of one input.
    n_classes : int
        Width of the appended output dense layer.

    Returns
    -------
    blocks : list of dict
        One per weight layer, in order: ``kind`` ('conv' or 'dense'),
        ``n_in`` / ``n_out`` (channels or units), ``kernel_size``,
        ``padding``, ``pools`` (the block's 2x2 pools in order: 'before_bn'
        first if any, then 'after_sign' ones), ``in_shape`` /
        ``out_shape`` (C, H, W of a convolution's input and of the block
        output, after its pools), ``output`` (True for the last).

    Raises
    ------
    ValueError
        For an unknown preset or layer, a misplaced pool, or a spatial size
        that drops below 1.
    """
    if isinstance(architecture, str):
        if architecture not in PRESETS:
            raise ValueError(f"unknown architecture {architecture!r}; "
                             f"presets: {sorted(PRESETS)}")
        architecture = PRESETS[architecture]
    c, h, w = (int(v) for v in input_shape)
    blocks, flat = [], None  # flat: features once a dense layer has been reached
    for layer in architecture:
        layer = tuple(layer)
        kind = layer[0] if layer else None
        if kind == "conv":
            if flat is not None:
                raise ValueError(f"{layer!r}: a convolution cannot follow a dense layer")
            filters = int(layer[1])
            k = int(layer[2]) if len(layer) > 2 else 3
            padding = layer[3] if len(layer) > 3 else "same"
            if padding not in PADDINGS or len(layer) > 4 or filters < 1 or k < 1:
                raise ValueError(f"bad convolution {layer!r}: ('conv', filters[, kernel_size"
                                 f"[, padding]]) with padding in {PADDINGS}")
            in_shape = (c, h, w)
            if padding == "valid":
                h, w = h - k + 1, w - k + 1
            elif k % 2 == 0:
                raise ValueError(f"{layer!r}: 'same' padding needs an odd kernel size")
            if h < 1 or w < 1:
                raise ValueError(f"{layer!r}: the feature map shrinks below 1x1")
            c = filters
            blocks.append({"kind": "conv", "n_in": in_shape[0], "n_out": c, "kernel_size": k,
                           "padding": padding, "pools": [], "in_shape": in_shape,
                           "out_shape": (c, h, w)})
        elif kind == "pool":
            mode = layer[1] if len(layer) > 1 else "after_sign"
            if mode not in POOL_MODES or len(layer) > 2:
                raise ValueError(f"bad pool {layer!r}: ('pool'[, mode]) with mode in {POOL_MODES}")
            if not blocks or blocks[-1]["kind"] != "conv" or flat is not None:
                raise ValueError(f"{layer!r} must follow a convolution or another pool")
            if mode == "before_bn" and blocks[-1]["pools"]:
                raise ValueError(f"{layer!r}: a 'before_bn' pool must directly follow a "
                                 "convolution")
            h, w = h // 2, w // 2
            if h < 1 or w < 1:
                raise ValueError(f"{layer!r}: the feature map shrinks below 1x1")
            blocks[-1]["pools"].append(mode)
            blocks[-1]["out_shape"] = (c, h, w)
        elif kind == "dense":
            units = int(layer[1])
            if len(layer) != 2 or units < 1:
                raise ValueError(f"bad dense layer {layer!r}: ('dense', units)")
            n_in = flat if flat is not None else c * h * w
            blocks.append({"kind": "dense", "n_in": n_in, "n_out": units, "pools": []})
            flat = units
        else:
            raise ValueError(f"unknown layer {layer!r}: 'conv', 'pool' or 'dense'")
    n_in = flat if flat is not None else c * h * w
    blocks.append({"kind": "dense", "n_in": n_in, "n_out": int(n_classes), "pools": []})
    for i, block in enumerate(blocks):
        block["output"] = i == len(blocks) - 1
    return blocks


def sign_functions():
    """``(sign, WeightSign, ActSign)``: the MLP peer's sign (sign(0) = +1)
    and weight sign (identity gradient), and the activation sign with the
    straight-through gradient where ``|x| <= 1`` (torch imported lazily)."""
    import torch

    from _torch_bnn import sign_functions as mlp_sign_functions

    sign, weight_sign = mlp_sign_functions()
    # float32 just above 1: hardtanh_backward passes min < x < max, the rule |x| <= 1
    ste_limit = float(np.nextafter(np.float32(1), np.float32(2)))

    class ActSign(torch.autograd.Function):
        """sign(x) forward; gradient passed where |x| <= 1, zero elsewhere."""

        @staticmethod
        def forward(ctx, x):
            # keep the float input, as a hardtanh STE does: the fused
            # hardtanh_backward kernel is faster than building a bool mask
            ctx.save_for_backward(x)
            return sign(x)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return torch.ops.aten.hardtanh_backward(grad, x, -ste_limit, ste_limit)

    return sign, weight_sign, ActSign


def build_torch_cnn(architecture, input_shape, n_classes, seed=0):
    """The straight-through binary CNN as a ``torch.nn.Module``.

    Parameters
    ----------
    architecture : str or list of tuple
        See :func:`parse_architecture`.
    input_shape : tuple of int
        ``(C, H, W)`` of one input.
    n_classes : int
        Number of logits.
    seed : int or None, default=0
        ``torch.manual_seed`` before the weights are drawn (None: the
        global generator as it stands).

    Returns
    -------
    model : torch.nn.Module
        ``model(x)`` maps float32 ``(n, C, H, W)`` to ``(n, n_classes)``
        logits; ``model.clip_()`` clips the latent weights to [-1, 1];
        ``model.blocks`` holds the resolved blocks.
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    blocks = parse_architecture(architecture, input_shape, n_classes)
    _, WeightSign, ActSign = sign_functions()
    if seed is not None:
        torch.manual_seed(seed)

    class BinaryCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = blocks
            self.weights = nn.ParameterList()
            self.bns = nn.ModuleList()
            self.biases = nn.ParameterList()
            for b in blocks:
                if b["kind"] == "conv":
                    k = b["kernel_size"]
                    v = torch.empty(b["n_out"], b["n_in"], k, k, dtype=torch.float32)
                    bn = nn.BatchNorm2d(b["n_out"], eps=1e-4, momentum=0.1, affine=False)
                    bias = torch.zeros(b["n_out"], 1, 1)
                else:
                    v = torch.empty(b["n_out"], b["n_in"], dtype=torch.float32)
                    bn = nn.BatchNorm1d(b["n_out"], eps=1e-4, momentum=0.1, affine=False)
                    bias = torch.zeros(b["n_out"])
                # torch's fans of a (Cout, Cin, k, k) tensor are k*k*Cin and
                # k*k*Cout: Keras' Glorot-uniform, limit sqrt(6 / (fan_in + fan_out))
                nn.init.xavier_uniform_(v)
                self.weights.append(nn.Parameter(v))
                self.bns.append(bn)
                self.biases.append(nn.Parameter(bias))

        def forward(self, x):
            for b, v, bn, bias in zip(self.blocks, self.weights, self.bns, self.biases):
                w = WeightSign.apply(v)
                if b["kind"] == "conv":
                    pad = b["kernel_size"] // 2 if b["padding"] == "same" else 0
                    x = F.conv2d(x, w, padding=pad)  # zero padding
                    if b["pools"][:1] == ["before_bn"]:
                        x = F.max_pool2d(x, 2)
                else:
                    if x.dim() > 2:
                        x = x.flatten(1)  # torch's (C, H, W) order
                    x = F.linear(x, w)
                x = bn(x) + bias
                if b["output"]:
                    return x
                x = ActSign.apply(x)
                for _ in range(b["pools"].count("after_sign")):
                    x = F.max_pool2d(x, 2)  # floor: an odd map loses its last row / column
            return x

        @torch.no_grad()
        def clip_(self):
            for v in self.weights:
                v.clamp_(-1.0, 1.0)

    return BinaryCNN()


# ------------------------------------------------------------ data
def fmnist_32x32(X):
    """Fashion-MNIST pixels as the convolutional benchmark feeds them.

    Parameters
    ----------
    X : ndarray of shape (n, 784) or (n, 28, 28), uint8
        Pixels 0..255.

    Returns
    -------
    images : ndarray of shape (n, 1, 32, 32), float32, C-contiguous
        Pixels scaled to [-1, 1] (``x / 127.5 - 1``) and padded by 2 pixels
        on every side with the background value -1.
    """
    X = np.asarray(X).reshape(-1, 28, 28)
    out = np.full((len(X), 1, 32, 32), -1.0, dtype=np.float32)
    out[:, 0, 2:30, 2:30] = X.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return out


def _as_images(X, input_shape):
    """float32 C-contiguous (n, C, H, W) from 2-D C-order rows or 4-D input."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    return X.reshape((len(X),) + tuple(int(v) for v in input_shape))


def _stratified_split(y_idx, fraction, seed):
    """Stratified hold-out indices ``(train, validation)`` (ceil of the fraction)."""
    from sklearn.model_selection import train_test_split

    n = len(y_idx)
    n_val = int(np.ceil(fraction * n))
    idx = np.arange(n)
    try:
        return train_test_split(idx, test_size=n_val, random_state=seed, stratify=y_idx)
    except ValueError:  # a class too small to stratify
        return train_test_split(idx, test_size=n_val, random_state=seed)


def _layout(x, channels_last):
    """``x`` in the memory format the model's convolutions run in."""
    import torch

    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _predict(model, X_t, channels_last, chunk=_EVAL_CHUNK):
    """Class indices of eval-mode inference in chunks (no autograd)."""
    import torch

    with torch.no_grad():
        return torch.cat([model(_layout(X_t[i:i + chunk], channels_last)).argmax(dim=1)
                          for i in range(0, len(X_t), chunk)]).numpy()


# ------------------------------------------------------------ training
def train_torch_cnn(X_train, y_train, X_eval_list, architecture="cnv", input_shape=(1, 32, 32),
                    epochs=5, batch_size=100, seed=0, n_threads=1, learning_rate=1e-3,
                    lr_patience=None, lr_decay=0.5, early_stopping=False,
                    validation_fraction=0.1, tol=1e-4, channels_last=True, verbose=False):
    """Train the STE binary CNN with PyTorch on the CPU and evaluate it.

    Parameters
    ----------
    X_train : ndarray of shape (n_samples, C*H*W) or (n_samples, C, H, W)
        Real-valued inputs (e.g. pixels scaled to [-1, 1]); 2-D rows are
        images flattened in C order.  Converted once to float32.
    y_train : ndarray of shape (n_samples,)
        Class labels (mapped to indices of their sorted unique values).
    X_eval_list : list of (X, y) pairs
        Sets scored after training, in eval mode (BN running statistics).
        Labels not seen in ``y_train`` count as errors.
    architecture : str or list of tuple, default='cnv'
        See :func:`parse_architecture`.
    input_shape : tuple of int, default=(1, 32, 32)
        ``(C, H, W)``.
    epochs : int, default=5
        Passes over the training data.
    batch_size : int, default=100
        Mini-batch size.  A trailing batch of one sample is skipped because
        training-mode BatchNorm is undefined for it.
    seed : int, default=0
        Initialisation (:func:`build_torch_cnn`), the per-epoch shuffling
        generator and the validation split.
    n_threads : int, default=1
        ``torch.set_num_threads`` during this call (restored afterwards).
    learning_rate : float, default=1e-3
        Initial Adam step size.
    lr_patience : int or None, default=None
        Plateau schedule as the skbnn estimator's: multiply the rate by
        ``lr_decay`` after ``lr_patience`` epochs without a better
        validation accuracy (with ``early_stopping``) or else training
        accuracy (of the predictions made before each batch's update).
        None keeps the rate constant.
    lr_decay : float, default=0.5
        Factor of the plateau schedule.
    early_stopping : bool, default=False
        Hold out a stratified ``validation_fraction`` of the training data,
        score it after every epoch and restore the weights and BN
        statistics of the best epoch (improvement > ``tol``) at the end.
        All ``epochs`` are trained.
    validation_fraction : float, default=0.1
        Size of that hold-out.
    tol : float, default=1e-4
        Minimum validation improvement for a new best checkpoint.
    channels_last : bool, default=True
        Run the convolutions in torch's channels-last (NHWC) memory format,
        oneDNN's native layout on the CPU (a few % faster than NCHW here;
        the arithmetic is the same).
    verbose : bool, default=False
        One line per epoch.

    Returns
    -------
    result : dict
        ``s_per_epoch`` (wall seconds of each epoch's training loop,
        ``time.perf_counter``; conversion, validation and evaluation
        excluded), ``cpu_s_per_epoch`` (the same span in process CPU
        seconds), ``accuracies`` (one per pair of ``X_eval_list``),
        ``loss_curve``, ``train_accuracy`` (on the fly, per epoch),
        ``validation_scores``, ``best_validation_score``, ``best_epoch``,
        ``learning_rates`` (the rate each epoch ran at), ``n_train``,
        ``torch_version``, ``n_threads`` (``torch.get_num_threads()`` while
        training), ``n_parameters`` (latent weights + BN biases).
    """
    import torch
    from torch.nn import functional as F

    X_train = _as_images(X_train, input_shape)
    classes, y_idx = np.unique(np.asarray(y_train), return_inverse=True)
    if len(y_idx) != len(X_train):
        raise ValueError(f"X_train has {len(X_train)} rows but y_train {len(y_idx)} labels")
    batch_size = int(batch_size)
    if batch_size < 2:
        raise ValueError("batch_size must be >= 2 (training-mode BatchNorm)")
    X_val = y_val = None
    if early_stopping:
        tr, va = _stratified_split(y_idx, validation_fraction, seed)
        X_train, y_idx, X_val, y_val = X_train[tr], y_idx[tr], X_train[va], y_idx[va]
    n_samples = len(X_train)

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(int(n_threads))
    try:
        model = build_torch_cnn(architecture, input_shape, len(classes), seed)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        try:
            # the fused CPU kernel: same update rule, faster than the loop
            optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, fused=True)
        except (RuntimeError, TypeError, ValueError):  # torch < 2.4 has no fused CPU Adam
            optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
        shuffler = torch.Generator().manual_seed(seed)
        X_t = torch.from_numpy(X_train)
        y_t = torch.from_numpy(y_idx.astype(np.int64))
        X_v = None if X_val is None else torch.from_numpy(np.ascontiguousarray(X_val))

        hist = {k: [] for k in ("s_per_epoch", "cpu_s_per_epoch", "loss_curve",
                                "train_accuracy", "validation_scores", "learning_rates")}
        lr, best_schedule, wait = float(learning_rate), -np.inf, 0
        best_val, best_epoch, best_state = -np.inf, None, None
        for epoch in range(int(epochs)):
            model.train()
            hist["learning_rates"].append(lr)
            t0, c0 = time.perf_counter(), time.process_time()
            perm = torch.randperm(n_samples, generator=shuffler)
            loss_sum, correct, n_seen = torch.zeros(()), torch.zeros((), dtype=torch.int64), 0
            for start in range(0, n_samples, batch_size):
                idx = perm[start:start + batch_size]
                if len(idx) < 2:
                    break
                yb = y_t[idx]
                logits = model(_layout(X_t[idx], channels_last))
                loss = F.cross_entropy(logits, yb)
                optimizer.zero_grad(set_to_none=False)
                loss.backward()
                optimizer.step()
                model.clip_()
                loss_sum += loss.detach() * len(idx)
                correct += (logits.detach().argmax(dim=1) == yb).sum()
                n_seen += len(idx)
            hist["s_per_epoch"].append(time.perf_counter() - t0)
            hist["cpu_s_per_epoch"].append(time.process_time() - c0)
            hist["loss_curve"].append(float(loss_sum) / n_seen)
            hist["train_accuracy"].append(int(correct) / n_seen)

            score = hist["train_accuracy"][-1]
            if X_v is not None:
                model.eval()
                score = float(np.mean(_predict(model, X_v, channels_last) == y_val))
                hist["validation_scores"].append(score)
                if score > best_val + tol:
                    best_val, best_epoch = score, epoch + 1
                    best_state = copy.deepcopy(model.state_dict())
            if lr_patience is not None:  # the estimator's plateau schedule
                if score > best_schedule:
                    best_schedule, wait = score, 0
                else:
                    wait += 1
                    if wait >= lr_patience:
                        lr *= lr_decay
                        wait = 0
                        for group in optimizer.param_groups:
                            group["lr"] = lr
            if verbose:
                val = "" if X_v is None else f", validation {100 * score:.2f} %"
                print(f"epoch {epoch + 1}: loss {hist['loss_curve'][-1]:.4f}, train "
                      f"{100 * hist['train_accuracy'][-1]:.2f} %{val}, lr {lr:.3g}, "
                      f"{hist['s_per_epoch'][-1]:.1f} s", flush=True)
        used_threads = torch.get_num_threads()
        if best_state is not None:
            model.load_state_dict(best_state)

        model.eval()
        accuracies = []
        for X_eval, y_eval in X_eval_list:
            pred = _predict(model, torch.from_numpy(_as_images(X_eval, input_shape)),
                            channels_last)
            accuracies.append(float(np.mean(classes[pred] == np.asarray(y_eval))))
    finally:
        torch.set_num_threads(previous_threads)

    return dict(hist, accuracies=accuracies, n_train=n_samples,
                best_validation_score=None if best_epoch is None else best_val,
                best_epoch=best_epoch, torch_version=torch.__version__,
                n_threads=used_threads,
                n_parameters=int(sum(p.numel() for p in model.parameters())))


# ------------------------------------------------------------ self-test
def _self_test():
    """Shape, convention and learning checks on a tiny random problem."""
    import torch

    sign, _, ActSign = sign_functions()
    z = torch.tensor([-2.0, -1.0, -0.0, 0.0, 0.5, 1.0, 1.5], requires_grad=True)
    assert sign(z.detach()).tolist() == [-1, -1, 1, 1, 1, 1, 1], "sign(0) must be +1"
    ActSign.apply(z).sum().backward()
    assert z.grad.tolist() == [0, 1, 1, 1, 1, 1, 0], "STE must pass where |x| <= 1"

    for bad in ([("pool",)], [("dense", 4), ("conv", 4)], [("dense", 4), ("pool",)],
                [("conv", 4), ("pool",), ("pool", "before_bn")], [("conv", 4, 2)],
                [("conv", 4, 9, "valid")], [("conv", 4, 3, "full")]):
        try:
            parse_architecture(bad, (1, 8, 8), 2)
        except ValueError:
            continue
        raise AssertionError(f"{bad} should be rejected")

    # binary weights and BN channels on 3x32x32 (BinaryNet: the paper's CIFAR-10 counts)
    expected = {"cnv": (1_542_848, 1_930), "binarynet": (14_022_016, 3_850)}
    for name, (n_weights, n_channels) in expected.items():
        in_shape = (3, 32, 32)
        model = build_torch_cnn(name, in_shape, 10, seed=0)
        n_w = sum(v.numel() for v in model.weights)
        n_b = sum(b.numel() for b in model.biases)
        print(f"{name}: {n_w:,} binary weights, {n_b:,} BN channels, blocks "
              + " ".join(f"{b['kind']}{b.get('out_shape', (b['n_out'],))}"
                         + "".join(f"+pool[{mode}]" for mode in b["pools"])
                         for b in model.blocks))
        assert (n_w, n_b) == (n_weights, n_channels), (name, n_w, n_b)
        conv = model.weights[1]
        fan_in, fan_out = conv.shape[1] * 9, conv.shape[0] * 9
        assert conv.abs().max() <= np.sqrt(6.0 / (fan_in + fan_out)) + 1e-7, "Glorot limit"
        model.train()
        out = model(torch.randn(4, *in_shape))
        assert out.shape == (4, 10)

    rng = np.random.default_rng(0)
    n, shape = 1200, (1, 12, 12)
    prototypes = np.where(rng.random((3,) + shape) < 0.5, -1.0, 1.0)
    y = rng.integers(0, 3, n)
    X = prototypes[y] * np.where(rng.random((n,) + shape) < 0.2, -1.0, 1.0)
    X = X.reshape(n, -1).astype(np.float32)  # 2-D rows in C order
    arch = [("conv", 32), ("pool", "after_sign"), ("conv", 32, 3, "valid"),
            ("pool", "before_bn"), ("dense", 64)]
    res = train_torch_cnn(X[:1000], y[:1000], [(X[1000:], y[1000:])], arch, shape,
                          epochs=6, batch_size=50, seed=0, lr_patience=1,
                          early_stopping=True, verbose=True)
    model = build_torch_cnn(arch, shape, 3, seed=0)
    print(f"tiny problem: {res['n_train']} train, held-out accuracy "
          f"{100 * res['accuracies'][0]:.1f} %, {np.mean(res['s_per_epoch']):.3f} s/epoch, "
          f"{res['n_parameters']} parameters")
    assert res["n_parameters"] == sum(p.numel() for p in model.parameters())
    assert res["accuracies"][0] > 0.6, "the tiny problem should be learned (chance 1/3)"
    return res


def _main():
    import argparse
    import os
    import sys

    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="self-test on a tiny random problem (seconds)")
    parser.add_argument("--architecture", default="cnv", choices=sorted(PRESETS))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-subset", type=int, default=None,
                        help="first N images of the 50,000 training split (default: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nchw", action="store_true",
                        help="NCHW convolutions instead of channels-last")
    parser.add_argument("--lr-patience", type=int, default=None,
                        help="plateau schedule patience (default: constant rate)")
    parser.add_argument("--early-stopping", action="store_true",
                        help="hold out 10 %% of the training images for the best-validation "
                             "checkpoint (and the plateau schedule)")
    args = parser.parse_args()

    if not torch_available():
        print("PyTorch is not installed: `pip install torch`", file=sys.stderr)
        return 1
    if args.quick:
        _self_test()
        print("self-test passed")
        return 0

    import _common

    data = _common.load_fmnist(try_install=False)
    if data is None:
        return 1
    split = _common.fmnist_splits(data, args.seed)
    n = args.train_subset or len(split["y_train"])
    X_tr, y_tr = fmnist_32x32(split["X_train"][:n]), split["y_train"][:n]
    evals = [("held-out", fmnist_32x32(split["X_heldout"]), split["y_heldout"]),
             ("official test", fmnist_32x32(split["X_test"]), split["y_test"])]
    res = train_torch_cnn(X_tr, y_tr, [(X, y) for _, X, y in evals], args.architecture,
                          (1, 32, 32), epochs=args.epochs, seed=args.seed,
                          n_threads=args.threads, lr_patience=args.lr_patience,
                          early_stopping=args.early_stopping, channels_last=not args.nchw,
                          verbose=True)
    print(f"torch {res['torch_version']}, {res['n_threads']} thread(s); {args.architecture} "
          f"on Fashion-MNIST 1x32x32, {res['n_train']} train, batch 100, {args.epochs} "
          f"epoch(s), best epoch {res['best_epoch']}")
    print("s/epoch: " + ", ".join(f"{s:.2f}" for s in res["s_per_epoch"])
          + " (CPU " + ", ".join(f"{s:.2f}" for s in res["cpu_s_per_epoch"]) + ")")
    for (label, _, _), acc in zip(evals, res["accuracies"]):
        print(f"{label} accuracy: {100 * acc:.2f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
