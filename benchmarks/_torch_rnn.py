#!/usr/bin/env python3
"""PyTorch peer of ``BEPRecurrentClassifier``: the same binary RNN trained
with straight-through gradients (fully binary QAT, no batch norm).

The "QAT w/o BN" baseline of the BEP paper's Table 1 (Larq there), written
the usual way in PyTorch for a scale comparison in the same run: the same
inputs, widths and fixed class prototypes as the BEP model, float32 latent
weights, autograd through every time step (full BPTT) and ``torch.optim.Adam``.

Model
-----
* inputs: the +/-1 bits ``a_t`` of the BEP model's own encoder
  (``binarizer_.pack``: per-channel binarisation and the fixed expansion),
  so both learners see the same sequences;
* ``s_t = sign(W_rec [a_t, s_{t-1}])``, ``s_0 = +1``, and
  ``s_y = sign(W_sy s_T)`` with ``W = sign(V)`` of float32 latent weights
  ``V`` (Glorot-uniform init, identity gradient, clipped to [-1, 1] after
  each step: BinaryNet);
* activations: sign forward; backward the hardtanh straight-through
  gradient of ``z / sqrt(fan_in)``.  A positive scale before a sign does not
  change the forward pass, so inference stays fully binary; it only puts the
  gradient window ``|z| <= sqrt(fan_in)`` where pre-activations live
  (without it, or batch norm, almost no gradient passes);
* logits ``P s_y / (Ky / 8)`` with BEP's fixed prototypes ``P`` (BEP's
  ``predict_proba`` temperature); mean cross-entropy; Adam, lr 1e-3.

torch is optional: this module imports without it; :func:`torch_available`
(shared with ``_torch_bnn``) says whether :func:`train_torch_rnn` can run.
"""
import math
import time

import numpy as np

from _torch_bnn import sign_functions, torch_available

__all__ = ["torch_available", "train_torch_rnn"]

_EVAL_CHUNK = 2048


def _build(n_inputs, state_size, output_size, prototypes):
    import torch
    from torch import nn

    ste_limit = float(np.nextafter(np.float32(1), np.float32(2)))

    _sign, _WeightSign = sign_functions()

    class _ActSign(torch.autograd.Function):
        """sign(z) forward; hardtanh STE on z * scale backward."""

        @staticmethod
        def forward(ctx, z, scale):
            ctx.save_for_backward(z)
            ctx.scale = scale
            return _sign(z)

        @staticmethod
        def backward(ctx, grad):
            (z,) = ctx.saved_tensors
            g = torch.ops.aten.hardtanh_backward(grad, z * ctx.scale, -ste_limit, ste_limit)
            return g * ctx.scale, None

    class BinaryRNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.n_rec = n_inputs + state_size
            self.w_rec = nn.Parameter(torch.empty(state_size, self.n_rec))
            self.w_out = nn.Parameter(torch.empty(output_size, state_size))
            nn.init.xavier_uniform_(self.w_rec)
            nn.init.xavier_uniform_(self.w_out)
            self.register_buffer("prototypes", torch.as_tensor(prototypes, dtype=torch.float32))
            self.temperature = output_size / 8.0

        def forward(self, a):  # a: (n, T, Kx) of +/-1
            w_rec, w_out = _WeightSign.apply(self.w_rec), _WeightSign.apply(self.w_out)
            s = a.new_ones((a.shape[0], w_rec.shape[0]))
            for t in range(a.shape[1]):
                z = torch.cat([a[:, t], s], dim=1) @ w_rec.T
                s = _ActSign.apply(z, 1.0 / math.sqrt(self.n_rec))
            s_y = _ActSign.apply(s @ w_out.T, 1.0 / math.sqrt(w_out.shape[1]))
            return (s_y @ self.prototypes.T) / self.temperature

        @torch.no_grad()
        def clip_(self):
            self.w_rec.clamp_(-1.0, 1.0)
            self.w_out.clamp_(-1.0, 1.0)

    return BinaryRNN()


def train_torch_rnn(A_train, y_train, evals, state_size, output_size, prototypes,
                    batch_size=100, epochs=50, learning_rate=1e-3, seed=0, n_threads=1):
    """Train the STE binary RNN with PyTorch on the CPU and evaluate it.

    Parameters
    ----------
    A_train : ndarray of shape (n_samples, n_timepoints, n_inputs)
        +/-1 input bits per time step (e.g. the BEP encoder's output
        unpacked).
    y_train : ndarray of shape (n_samples,)
        Class indices in ``range(len(prototypes))``.
    evals : list of (A, y) pairs
        Sets scored after training.
    state_size, output_size : int
        ``Ks`` and ``Ky``.
    prototypes : ndarray of shape (n_classes, output_size)
        Fixed +/-1 class prototypes (BEP's ``prototypes_``).
    batch_size : int, default=100
        Mini-batch size.
    epochs : int, default=50
        Passes over the training data.
    learning_rate : float, default=1e-3
        Adam step size.
    seed : int, default=0
        ``torch.manual_seed`` and the shuffling generator.
    n_threads : int, default=1
        ``torch.set_num_threads`` during this call (restored afterwards).

    Returns
    -------
    result : dict
        ``s_per_epoch`` (wall seconds of each epoch's training loop),
        ``cpu_s_per_epoch``, ``accuracies`` (one per pair of ``evals``),
        ``loss_curve``, ``torch_version``, ``n_threads``.
    """
    import torch
    from torch.nn import functional as F

    A_train = np.ascontiguousarray(A_train, dtype=np.float32)
    n = len(A_train)
    previous = torch.get_num_threads()
    torch.set_num_threads(int(n_threads))
    try:
        torch.manual_seed(seed)
        model = _build(A_train.shape[2], state_size, output_size, prototypes)
        try:
            optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, fused=True)
        except (RuntimeError, TypeError, ValueError):
            optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
        shuffler = torch.Generator().manual_seed(seed)
        X_t = torch.from_numpy(A_train)
        y_t = torch.from_numpy(np.asarray(y_train, dtype=np.int64))
        s_per_epoch, cpu_per_epoch, losses = [], [], []
        model.train()
        for _ in range(int(epochs)):
            t0, c0 = time.perf_counter(), time.process_time()
            perm = torch.randperm(n, generator=shuffler)
            total = 0.0
            for start in range(0, n, batch_size):
                idx = perm[start:start + batch_size]
                loss = F.cross_entropy(model(X_t[idx]), y_t[idx])
                optimizer.zero_grad(set_to_none=False)
                loss.backward()
                optimizer.step()
                model.clip_()
                total += float(loss.detach()) * len(idx)
            s_per_epoch.append(time.perf_counter() - t0)
            cpu_per_epoch.append(time.process_time() - c0)
            losses.append(total / n)
        used = torch.get_num_threads()
        model.eval()
        accuracies = []
        with torch.no_grad():
            for A, y in evals:
                A = torch.from_numpy(np.ascontiguousarray(A, dtype=np.float32))
                pred = torch.cat([model(A[i:i + _EVAL_CHUNK]).argmax(dim=1)
                                  for i in range(0, len(A), _EVAL_CHUNK)])
                accuracies.append(float(np.mean(pred.numpy() == np.asarray(y))))
    finally:
        torch.set_num_threads(previous)
    return {"s_per_epoch": s_per_epoch, "cpu_s_per_epoch": cpu_per_epoch,
            "accuracies": accuracies, "loss_curve": losses, "torch_version": torch.__version__,
            "n_threads": used}
