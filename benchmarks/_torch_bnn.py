#!/usr/bin/env python3
"""PyTorch peer of ``LowMemBNNClassifier``: a standard STE binary MLP.

The reference a benchmark compares skbnn against: the "standard" step
(Wang et al., Algorithm 1: Courbariaux & Bengio's BinaryNet recipe)
written the usual way in PyTorch, with float32 latent weights, float32
activations kept for autograd, and the stock ``torch.optim.Adam`` (its
fused CPU kernel).  It runs on the CPU with an explicit thread count; the
per-step overhead was trimmed where it cost nothing in fidelity (see the
comments), so that the comparison does not flatter skbnn.

Model (Wang et al.'s MNIST MLP recipe)
--------------------------------------
* every dense layer multiplies by ``sign(V)`` (sign(0) = +1) of float32
  latent weights ``V`` (Glorot-uniform init, no dense bias); the weight
  gradient passes straight through to ``V``, and ``V`` is clipped to
  [-1, 1] after each optimiser step (BinaryNet);
* after each dense layer ``BatchNorm1d(eps=1e-4, momentum=0.1, affine=False)``
  (torch momentum 0.1 = Keras momentum 0.9; exact l2 backward by autograd;
  torch's running variance is the unbiased one) plus a learnable
  per-channel bias, no scale (Algorithm 1 has none);
* hidden activations: sign with a straight-through gradient where
  ``|x| <= 1`` (hardtanh-style cancellation);
* the first layer takes the real-valued input; the last layer's BN output
  (bias included) are the logits; mean cross-entropy; Adam (lr 1e-3,
  torch defaults betas (0.9, 0.999), eps 1e-8) on ``V`` and the BN biases.

torch is optional: this module imports without it; :func:`torch_available`
says whether :func:`train_torch_bnn` can run.

    python3 benchmarks/_torch_bnn.py --quick     # load_digits, a few seconds
    python3 benchmarks/_torch_bnn.py             # Fashion-MNIST, 2 epochs
"""
import time

import numpy as np

__all__ = ["torch_available", "train_torch_bnn"]

_EVAL_CHUNK = 2048  # rows per inference call: bounds the memory of evaluation


def torch_available():
    """Whether PyTorch can be imported.

    Returns
    -------
    available : bool
        True when ``import torch`` succeeds.
    """
    import importlib

    try:
        importlib.import_module("torch")
    except Exception:  # a broken install (e.g. missing shared library) too
        return False
    return True


def sign_functions():
    """``(sign, WeightSign)``: sign with sign(0) = +1, and the autograd
    function applying it to latent weights with an identity gradient (torch
    imported lazily; shared with ``_torch_rnn``)."""
    import torch

    def sign(x):
        # +1 where x >= 0 (torch.sign(0) = 0 would not do: sign(0) = +1).  copysign
        # is several times faster here than torch.where on a bool mask; adding
        # +0.0 turns -0.0 into +0.0 so that -0.0 maps to +1 as well
        return torch.ones_like(x).copysign_(x + 0.0)

    class WeightSign(torch.autograd.Function):
        """sign(V) forward; identity gradient (V stays in [-1, 1] by clipping)."""

        @staticmethod
        def forward(ctx, v):
            return sign(v)

        @staticmethod
        def backward(ctx, grad):
            return grad

    return sign, WeightSign


def _build(n_features, hidden_layer_sizes, n_classes):
    """The model and its autograd helpers (torch imported lazily here).

    Parameters
    ----------
    n_features : int
        Input dimension.
    hidden_layer_sizes : tuple of int
        Hidden widths.
    n_classes : int
        Output width.

    Returns
    -------
    model : torch.nn.Module
        Initialised from torch's global RNG: seed before calling.
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    # float32 just above 1: hardtanh_backward passes min < x < max, the STE |x| <= 1
    ste_limit = float(np.nextafter(np.float32(1), np.float32(2)))

    _sign, _WeightSign = sign_functions()

    class _ActSign(torch.autograd.Function):
        """sign(x) forward; gradient passed where |x| <= 1, zero elsewhere."""

        @staticmethod
        def forward(ctx, x):
            # keep the float input, as a hardtanh STE does: the fused
            # hardtanh_backward kernel is much faster than building a bool mask
            ctx.save_for_backward(x)
            return _sign(x)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return torch.ops.aten.hardtanh_backward(grad, x, -ste_limit, ste_limit)

    class BinaryMLP(nn.Module):
        def __init__(self):
            super().__init__()
            sizes = [n_features, *hidden_layer_sizes, n_classes]
            self.weights = nn.ParameterList()
            self.bns = nn.ModuleList()
            self.biases = nn.ParameterList()
            for n_in, n_out in zip(sizes[:-1], sizes[1:]):
                v = torch.empty(n_out, n_in, dtype=torch.float32)
                nn.init.xavier_uniform_(v)  # Glorot & Bengio, limit sqrt(6/(in+out))
                self.weights.append(nn.Parameter(v))
                self.bns.append(nn.BatchNorm1d(n_out, eps=1e-4, momentum=0.1,
                                               affine=False))
                self.biases.append(nn.Parameter(torch.zeros(n_out)))

        def forward(self, x):
            last = len(self.weights) - 1
            for i, (v, bn, b) in enumerate(zip(self.weights, self.bns, self.biases)):
                x = bn(F.linear(x, _WeightSign.apply(v))) + b
                if i < last:
                    x = _ActSign.apply(x)
            return x

        @torch.no_grad()
        def clip_(self):
            for v in self.weights:
                v.clamp_(-1.0, 1.0)

    return BinaryMLP()


def _as_float32(X):
    return np.ascontiguousarray(X, dtype=np.float32)


def train_torch_bnn(X_train, y_train, X_eval_list, hidden_layer_sizes=(256, 256, 256, 256),
                    batch_size=100, epochs=5, learning_rate=1e-3, seed=0, n_threads=1):
    """Train the STE binary MLP with PyTorch on the CPU and evaluate it.

    Parameters
    ----------
    X_train : ndarray of shape (n_samples, n_features)
        Real-valued inputs (e.g. pixels scaled to [-1, 1]); converted once
        to float32 (zero-copy when already C-contiguous float32).
    y_train : ndarray of shape (n_samples,)
        Class labels (any sortable values; mapped to indices of their
        sorted unique values).
    X_eval_list : list of (X, y) pairs
        Sets scored after training, in eval mode (BN running statistics).
        Labels not seen in ``y_train`` count as errors.
    hidden_layer_sizes : tuple of int, default=(256, 256, 256, 256)
        Hidden widths (the paper's MNIST MLP: 784-256x4-10).
    batch_size : int, default=100
        Mini-batch size.  A trailing batch of one sample is skipped because
        training-mode BatchNorm is undefined for it.
    epochs : int, default=5
        Passes over the training data.
    learning_rate : float, default=1e-3
        Adam step size.
    seed : int, default=0
        ``torch.manual_seed`` (initialisation) and the per-epoch shuffling
        generator.
    n_threads : int, default=1
        ``torch.set_num_threads`` during this call (restored afterwards).

    Returns
    -------
    result : dict
        ``s_per_epoch`` (list of float: wall seconds of each epoch's
        training loop, ``time.perf_counter``; data conversion and
        evaluation excluded), ``cpu_s_per_epoch`` (the same span in
        process CPU seconds, ``time.process_time``: less sensitive to other
        jobs preempting a single-threaded run), ``accuracies`` (list of
        float, one per pair of ``X_eval_list``), ``loss_curve`` (mean
        training cross-entropy per epoch), ``torch_version``,
        ``n_threads`` (as reported by ``torch.get_num_threads()`` while
        training), ``n_parameters`` (latent weights + BN biases).
    """
    import torch
    from torch.nn import functional as F

    X_train = _as_float32(X_train)
    classes, y_idx = np.unique(np.asarray(y_train), return_inverse=True)
    n_samples, n_features = X_train.shape
    if len(y_idx) != n_samples:
        raise ValueError(f"X_train has {n_samples} rows but y_train {len(y_idx)} labels")
    batch_size = int(batch_size)
    if batch_size < 2:
        raise ValueError("batch_size must be >= 2 (training-mode BatchNorm)")

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(int(n_threads))
    try:
        torch.manual_seed(seed)
        model = _build(n_features, tuple(int(h) for h in hidden_layer_sizes), len(classes))
        try:
            # the fused CPU kernel: same update rule, ~3x faster than the loop
            optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, fused=True)
        except (RuntimeError, TypeError, ValueError):  # torch < 2.4 has no fused CPU Adam
            optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
        shuffler = torch.Generator().manual_seed(seed)

        # tensors built once, outside the timed loop
        X_t = torch.from_numpy(X_train)
        y_t = torch.from_numpy(y_idx.astype(np.int64))

        s_per_epoch, cpu_s_per_epoch, loss_curve = [], [], []
        model.train()
        for _ in range(int(epochs)):
            t0, c0 = time.perf_counter(), time.process_time()
            perm = torch.randperm(n_samples, generator=shuffler)
            loss_sum, n_seen = torch.zeros(()), 0
            for start in range(0, n_samples, batch_size):
                idx = perm[start:start + batch_size]
                if len(idx) < 2:
                    break
                logits = model(X_t[idx])
                loss = F.cross_entropy(logits, y_t[idx])
                # zeroing in place reuses the gradient buffers: measured a few % faster
                optimizer.zero_grad(set_to_none=False)
                loss.backward()
                optimizer.step()
                model.clip_()
                loss_sum += loss.detach() * len(idx)
                n_seen += len(idx)
            s_per_epoch.append(time.perf_counter() - t0)
            cpu_s_per_epoch.append(time.process_time() - c0)
            loss_curve.append(float(loss_sum) / n_seen)
        used_threads = torch.get_num_threads()

        accuracies = []
        model.eval()
        with torch.no_grad():
            for X_eval, y_eval in X_eval_list:
                X_e = torch.from_numpy(_as_float32(X_eval))
                pred = torch.cat([model(X_e[i:i + _EVAL_CHUNK]).argmax(dim=1)
                                  for i in range(0, len(X_e), _EVAL_CHUNK)])
                hits = classes[pred.numpy()] == np.asarray(y_eval)
                accuracies.append(float(np.mean(hits)))
    finally:
        torch.set_num_threads(previous_threads)

    return {
        "s_per_epoch": s_per_epoch,
        "cpu_s_per_epoch": cpu_s_per_epoch,
        "accuracies": accuracies,
        "loss_curve": loss_curve,
        "torch_version": torch.__version__,
        "n_threads": used_threads,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
    }


def _main():
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke test on sklearn load_digits (a few seconds)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="default: 20 with --quick, 2 on Fashion-MNIST")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if not torch_available():
        print("PyTorch is not installed: `pip install torch`", file=sys.stderr)
        return 1

    if args.quick:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        X, y = load_digits(return_X_y=True)
        X = (X / 16.0 * 2.0 - 1.0).astype(np.float32)  # 0..16 -> [-1, 1]
        X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y,
                                                  random_state=args.seed)
        name, evals = "load_digits (1347 train / 450 test)", [("test", X_te, y_te)]
        epochs = args.epochs or 20
    else:
        import _common

        data = _common.load_fmnist()
        if data is None:
            return 1
        split = _common.fmnist_splits(data, args.seed)

        def scale(X):
            return (X.astype(np.float32) / 255.0) * 2.0 - 1.0  # [-1, 1], the authors' recipe

        X_tr, y_tr = scale(split["X_train"]), split["y_train"]
        evals = [("held-out", scale(split["X_heldout"]), split["y_heldout"]),
                 ("official test", scale(split["X_test"]), split["y_test"])]
        name = f"Fashion-MNIST ({len(y_tr)} train, fmnist_splits seed {args.seed})"
        epochs = args.epochs or 2

    hidden = (256, 256, 256, 256)
    res = train_torch_bnn(X_tr, y_tr, [(X, y) for _, X, y in evals],
                          hidden_layer_sizes=hidden, batch_size=100, epochs=epochs,
                          seed=args.seed, n_threads=args.threads)
    print(f"torch {res['torch_version']}, {res['n_threads']} thread(s); {name}; "
          f"{X_tr.shape[1]}-{'x'.join(map(str, hidden))}-{len(np.unique(y_tr))}, "
          f"batch 100, {epochs} epochs")
    print("s/epoch: " + ", ".join(f"{s:.3f}" for s in res["s_per_epoch"])
          + f" (median {np.median(res['s_per_epoch']):.3f})")
    print("CPU s/epoch: " + ", ".join(f"{s:.3f}" for s in res["cpu_s_per_epoch"]))
    print("loss:    " + ", ".join(f"{v:.3f}" for v in res["loss_curve"]))
    for (label, _, _), acc in zip(evals, res["accuracies"]):
        print(f"{label} accuracy: {100 * acc:.2f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
