#!/usr/bin/env python3
"""PyTorch peers of ``LowMemBNNClassifier(training='standard', algorithm=...)``
for backprop, DFA and DRTP: the fidelity check of ``compare_rules.py``.

The network, initialisation, optimiser and training loop are those of the
existing STE binary MLP peer (``_torch_bnn._build``: float32 latent weights,
``sign(V)`` with an identity gradient, Glorot-uniform init, ``BatchNorm1d(eps=1e-4, momentum=0.1,
affine=False)`` plus a learnable bias after every dense layer, sign
activations with the straight-through gradient where ``|x| <= 1``, the first
layer reading the real input, the last block's BN output as logits, mean
cross-entropy, Adam 1e-3, batch 100).  Only what reaches each hidden
activation changes, as in ``skbnn/_rules.py`` and the authors' code
(BenCrulis/binary_nn_extended, ``binary_nn/algorithms/dfa.py`` and
``drtp.py``, whose hooks replace the gradient of every weight layer's input).
Latent weights (``weights``): ``'cancel'`` (default) zeroes their gradient
where ``|V| >= 1`` and never clips, as skbnn's step does
(``clip_weights=False``, gradient cancellation always on); ``'clip'`` clips
``V`` to [-1, 1] after each step without cancellation, as the authors' code
and ``_torch_bnn`` do.  What reaches each hidden activation:

* ``'backprop'``: autograd through the whole network;
* ``'dfa'``: hidden activation ``l`` (the input of weight layer ``l + 1``)
  receives ``e B_l`` with ``e = dL/dlogits = (softmax - onehot) / B``;
* ``'drtp'``: it receives ``t B_l`` with ``t = onehot - 1/C`` (the authors'
  ``DRTPFast``: the target itself, no ``1/B``, as skbnn).

``B_l`` has shape ``(C, width_l)``, N(0, 1) entries, fixed (drawn once from
``numpy.random.default_rng(seed)``; skbnn draws its own from another stream,
so the matrices differ, their distribution does not).  Blocks are detached
from each other under DFA and DRTP: the signal goes through the block's STE
mask and batch-norm backward to its weights and bias; the output block
trains on the cross-entropy.  Weights are updated once per batch, which for
DRTP equals skbnn's update during the forward pass (a block's output is
computed before its update either way).

torch is optional: this module imports without it.

    python3 benchmarks/_torch_rules.py --quick    # load_digits, seconds
"""
import time

import numpy as np

import _torch_bnn
import _torch_cnn

__all__ = ["RULES", "torch_available", "train_torch_rule"]

RULES = ("backprop", "dfa", "drtp")
WEIGHTS = ("cancel", "clip")
torch_available = _torch_bnn.torch_available
_EVAL_CHUNK = 2048


def _forward(model, x, act_sign, weight_sign, detach):
    """Logits and the hidden activations (``detach``: each block reads the
    previous block's output without a gradient path)."""
    from torch.nn import functional as F

    acts = []
    last = len(model.weights) - 1
    for i, (v, bn, b) in enumerate(zip(model.weights, model.bns, model.biases)):
        x = bn(F.linear(x, weight_sign.apply(v))) + b
        if i < last:
            x = act_sign.apply(x)
            acts.append(x)
            if detach:
                x = x.detach()
    return x, acts


def train_torch_rule(X_train, y_train, X_eval_list, rule="dfa",
                     hidden_layer_sizes=(700, 500, 300, 200), batch_size=100, epochs=5,
                     learning_rate=1e-3, seed=0, n_threads=1, weights="cancel"):
    """Train the STE binary MLP with ``rule`` and score it.

    Parameters
    ----------
    X_train : ndarray (n_samples, n_features)
        Real-valued inputs (e.g. pixels scaled to [-1, 1]).
    y_train : ndarray (n_samples,)
        Labels.
    X_eval_list : list of (X, y)
        Sets scored after training (eval mode, running BN statistics).
    rule : {'backprop', 'dfa', 'drtp'}
        The training rule.
    hidden_layer_sizes, batch_size, epochs, learning_rate, seed, n_threads
        As ``_torch_bnn.train_torch_bnn``.
    weights : {'cancel', 'clip'}, default='cancel'
        Gradient cancellation where ``|V| >= 1`` without clipping (skbnn),
        or clipping to [-1, 1] after each step (the authors' code).

    Returns
    -------
    result : dict
        ``s_per_epoch``, ``cpu_s_per_epoch``, ``accuracies``, ``loss_curve``,
        ``torch_version``, ``rule``.
    """
    import torch
    from torch.nn import functional as F

    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    X_train = np.ascontiguousarray(X_train, dtype=np.float32)
    classes, y_idx = np.unique(np.asarray(y_train), return_inverse=True)
    n_samples, n_features = X_train.shape
    n_classes = len(classes)
    hidden = tuple(int(h) for h in hidden_layer_sizes)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(int(n_threads))
    try:
        torch.manual_seed(seed)
        model = _torch_bnn._build(n_features, hidden, n_classes)  # the peer's init
        _, weight_sign, act_sign = _torch_cnn.sign_functions()   # the peers' STE signs
        rng = np.random.default_rng(seed)
        feedback = [torch.from_numpy(rng.standard_normal((n_classes, w), dtype=np.float32))
                    for w in hidden]
        try:
            optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, fused=True)
        except (RuntimeError, TypeError, ValueError):
            optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
        shuffler = torch.Generator().manual_seed(seed)
        X_t = torch.from_numpy(X_train)
        y_t = torch.from_numpy(y_idx.astype(np.int64))
        eye = torch.eye(n_classes)
        s_per_epoch, cpu_s_per_epoch, loss_curve = [], [], []
        model.train()
        for _ in range(int(epochs)):
            t0, c0 = time.perf_counter(), time.process_time()
            perm = torch.randperm(n_samples, generator=shuffler)
            loss_sum, n_seen = 0.0, 0
            for start in range(0, n_samples, batch_size):
                idx = perm[start:start + batch_size]
                if len(idx) < 2:
                    break
                yb = y_t[idx]
                logits, acts = _forward(model, X_t[idx], act_sign, weight_sign,
                                        detach=rule != "backprop")
                loss = F.cross_entropy(logits, yb)
                optimizer.zero_grad(set_to_none=False)
                if rule == "backprop":
                    loss.backward()
                else:
                    onehot = eye[yb]
                    if rule == "dfa":  # dL/dlogits of the mean cross-entropy
                        signal = (torch.softmax(logits.detach(), dim=1) - onehot) / len(idx)
                    else:  # DRTPFast: onehot - mean over classes, no 1/B
                        signal = onehot - onehot.mean(dim=1, keepdim=True)
                    torch.autograd.backward([loss, *acts],
                                            [torch.ones(()), *[signal @ B for B in feedback]])
                if weights == "cancel":
                    with torch.no_grad():
                        for v in model.weights:
                            v.grad.masked_fill_(v.abs() >= 1, 0.0)
                optimizer.step()
                if weights == "clip":
                    model.clip_()
                loss_sum += float(loss.detach()) * len(idx)
                n_seen += len(idx)
            s_per_epoch.append(time.perf_counter() - t0)
            cpu_s_per_epoch.append(time.process_time() - c0)
            loss_curve.append(loss_sum / max(1, n_seen))
        accuracies = []
        model.eval()
        with torch.no_grad():
            for X_eval, y_eval in X_eval_list:
                X_e = torch.from_numpy(np.ascontiguousarray(X_eval, dtype=np.float32))
                pred = torch.cat([_forward(model, X_e[i:i + _EVAL_CHUNK], act_sign, weight_sign,
                                           detach=True)[0].argmax(dim=1)
                                  for i in range(0, len(X_e), _EVAL_CHUNK)])
                accuracies.append(float(np.mean(classes[pred.numpy()] == np.asarray(y_eval))))
    finally:
        torch.set_num_threads(previous_threads)
    return {"rule": rule, "weights": weights, "s_per_epoch": s_per_epoch,
            "cpu_s_per_epoch": cpu_s_per_epoch,
            "accuracies": accuracies, "loss_curve": loss_curve,
            "torch_version": torch.__version__}


def _main():
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="load_digits (seconds)")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    if not torch_available():
        print("PyTorch is not installed", file=sys.stderr)
        return 1
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 8.0 - 1.0).astype(np.float32)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    for rule in RULES:
        for weights in WEIGHTS:
            r = train_torch_rule(X_tr, y_tr, [(X_te, y_te)], rule, (128, 128),
                                 epochs=args.epochs, seed=0, weights=weights)
            print(f"{rule} ({weights}): test {100 * r['accuracies'][0]:.2f} %, "
                  f"{np.median(r['s_per_epoch']):.3f} s/epoch")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
