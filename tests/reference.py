"""Plain-NumPy references of the kernels and of one LocalBinaryClassifier
training step (and of one BEPClassifier step), written from the papers and
the readings documented in the estimators' docstrings, not from the C code."""
import math

import numpy as np


def sign(x):
    """sign with sign(0) = +1, as int64 +/-1."""
    return np.where(np.asarray(x) >= 0, 1, -1).astype(np.int64)


def weights(H, ternary=False):
    """Visible weights of hidden weights H: sign(H) with sign(0) = +1, or the
    reference code's sign(0) = 0 when ``ternary``."""
    return np.sign(np.asarray(H)).astype(np.int64) if ternary else sign(H)


def pack(pm1):
    """Pack a +/-1 (or bool) matrix row by row, bit 1 = +1, little-endian."""
    pm1 = np.atleast_2d(pm1)
    n, k = pm1.shape
    words = (k + 63) // 64
    bits = np.zeros((n, words * 64), dtype=np.uint8)
    bits[:, :k] = pm1 > 0
    out = np.packbits(bits, axis=1, bitorder="little")  # byte i holds bits 8i..8i+7
    return np.ascontiguousarray(out).view("<u8").astype(np.uint64).reshape(n, words)


def unpack(packed, k):
    n = packed.shape[0]
    b = np.unpackbits(packed.astype("<u8").view(np.uint8).reshape(n, -1), axis=1,
                      bitorder="little")
    return np.where(b[:, :k] > 0, 1, -1).astype(np.int64)


def select_easiest(z, t, g, zero_is_wrong, active=None):
    """Per sample and block of g neurons, the wrong neuron with smallest |z|."""
    m, k = z.shape
    out = -np.ones((m, k // g), dtype=np.int64)
    for i in range(m):
        if active is not None and not active[i]:
            continue
        for q in range(k // g):
            best, best_abs = -1, None
            for j in range(q * g, (q + 1) * g):
                wrong = (sign(z[i, j]) != t[i, j]) if zero_is_wrong else (t[i, j] * z[i, j] < 0)
                if wrong and (best_abs is None or abs(z[i, j]) < best_abs):
                    best, best_abs = j, abs(z[i, j])
            out[i, q] = best
    return out


def cp_update(H, selected, t, a, clip):
    """H[j] += 2 t_mj a_m for all selected (m, j), from pre-update H, clipped."""
    delta = np.zeros(H.shape, dtype=np.int64)
    for m in range(selected.shape[0]):
        for j in selected[m]:
            if j >= 0:
                delta[j] += 2 * t[m, j] * a[m]
    return np.clip(H.astype(np.int64) + delta, -clip, clip)


def reinforce(H, p, seed, stream, clip, uniform, keep_zero=False):
    """h += 2 sign(h) at geometric-skip sites of the row streams; ``uniform``
    is the kernel's documented counter-based draw (seed, stream, row, index).
    ``keep_zero``: sign(0) = 0, a 0 stays 0 (and is not counted)."""
    H = H.astype(np.int64).copy()
    count = 0
    if p <= 0:
        return H, count
    k, n = H.shape
    for j in range(k):
        i, draw = 0, 0
        while True:
            if p < 1:
                u = uniform(seed, stream, j, draw) + 2.0 ** -53  # kernel draws from (0, 1]
                draw += 1
                gap = math.floor(math.log(u) / math.log1p(-p))
                if gap >= n - i:
                    break
                i += gap
            if not (keep_zero and H[j, i] == 0):
                H[j, i] = np.clip(H[j, i] + (2 if H[j, i] >= 0 else -2), -clip, clip)
                count += 1
            i += 1
            if i >= n:
                break
    return H, count


def local_batch_step(Hs, Ps, a0, y, robustness, group_sizes, p_reinf, seed, stream0, clip,
                     uniform, ternary=False, zero_act=False):
    """One LocalBinaryClassifier mini-batch: forward, local class scores,
    erroneous samples, easiest wrong neuron per group, +/-2 steps, then
    reinforcement.

    Hs: hidden weights per layer; Ps: +/-1 classifiers (K_l x C_out), C_out = 1
    for binary problems; a0: +/-1 inputs; y: class indices; ``ternary``:
    weights sign(H) with sign(0) = 0; ``zero_act``: activations sign(z) with
    sign(0) = 0 (such a neuron is never wrong: the strict t z < 0, and a 0
    input moves no weight).  Returns the new weights and the number of
    correct last-layer predictions (pre-update)."""
    a, new_H, n_correct = a0.astype(np.int64), [], 0
    for l, (H, P) in enumerate(zip(Hs, Ps)):
        k = H.shape[0]
        z = a @ weights(H, ternary).T
        a_next = np.sign(z).astype(np.int64) if zero_act else sign(z)
        s = a_next @ P.astype(np.int64)
        thr = math.floor(robustness * k)
        if P.shape[1] == 1:
            pred = (s[:, 0] > 0).astype(int)
            err = (pred != y) | (np.abs(s[:, 0]) < thr)
            t = P[:, 0][None, :] * np.where(y == 1, 1, -1)[:, None]
        else:
            pred = np.argmax(s, axis=1)
            top = np.sort(s, axis=1)
            err = (pred != y) | (top[:, -1] - top[:, -2] < thr)
            t = P[:, y].T
        if l == len(Hs) - 1:
            n_correct = int(np.sum(pred == y))
        H = H.astype(np.int64)
        if err.any():
            sel = select_easiest(z, t, group_sizes[l], False, err)
            H = cp_update(H, sel, t, a, clip)
            H, _ = reinforce(H, p_reinf[l], seed, stream0 + l, clip, uniform, ternary)
        new_H.append(H)
        a = a_next
    return new_H, n_correct


def bep_batch_step(Hs, P, a0, y, robustness, gate_threshold, group_sizes, p_reinf, seed,
                   stream0, clip, uniform, strict_ties=True, ternary=False, hidden=False,
                   zero_act=False):
    """One BEPClassifier mini-batch (paper Eqs. 1, 5, 7 and 9) with the
    documented readings:
    trigger ``correct - best other < r K_L``; a*_L = P[y];
    a*_l = sign(W_{l+1}^T (g * a*_{l+1})) with g = |z_{l+1}| <= nu * fan_in and
    ties -> +1 (``strict_ties``) or else "no signal": a tied neuron's target is
    the sign of its ranking field (its activation; ``hidden``: sign(H a)), so
    it is never selected, and its gate stays closed for the layer below; samples whose gate closes every neuron skip the layers below;
    wrong = (a != a*), winner = smallest |z| (``hidden``: the same on the
    hidden field H a instead of z); ``ternary``: weights sign(H) with
    sign(0) = 0; ``zero_act``: activations sign(z) with sign(0) = 0 (a 0
    input moves no weight; a neuron at z = 0 is wrong whatever its target,
    unless it is a tie without signal, and ranks first).  Returns the new
    weights and the number of correct predictions (pre-update)."""
    acts, zs = [a0.astype(np.int64)], []
    for H in Hs:
        zs.append(acts[-1] @ weights(H, ternary).T)
        acts.append(np.sign(zs[-1]) if zero_act else sign(zs[-1]))
    s = acts[-1] @ P.astype(np.int64).T
    rows = np.arange(len(y))
    pred = np.argmax(s, axis=1)
    n_correct = int(np.sum(pred == y))
    others = s.copy()
    others[rows, y] = np.iinfo(np.int64).min
    trig = s[rows, y] - others.max(axis=1) < robustness * Hs[-1].shape[0]
    if not trig.any():
        return [H.astype(np.int64) for H in Hs], n_correct
    T = np.flatnonzero(trig)
    L = len(Hs)
    targets, alives = [None] * L, [None] * L
    targets[-1] = P[y[T]].astype(np.int64)
    alive = np.ones(len(T), dtype=bool)
    alives[-1] = alive.copy()
    tie = np.zeros_like(targets[-1], dtype=bool)
    # the stabilities the winners are ranked by; a tie without signal takes their sign
    fields = [acts[l][T] @ H.astype(np.int64).T if hidden else zs[l][T]
              for l, H in enumerate(Hs)]
    if zero_act:  # a neuron at z = 0 ranks first
        fields = [np.where(zs[l][T] == 0, 0, f) for l, f in enumerate(fields)]
    ties = [np.zeros(t.shape, dtype=bool) for t in [zs[l][T] for l in range(L)]]
    for l in range(L - 2, -1, -1):
        W_up = weights(Hs[l + 1], ternary)
        g = (np.abs(zs[l + 1][T]) <= gate_threshold * W_up.shape[1]) & ~tie
        v = (g * targets[l + 1]) @ W_up
        tie = np.zeros(v.shape, dtype=bool) if strict_ties else v == 0
        ties[l] = tie
        targets[l] = np.where(tie, sign(fields[l]), sign(v))
        alive = alive & g.any(axis=1)
        alives[l] = alive.copy()
    new_H = []
    for l, H in enumerate(Hs):
        pick = targets[l]
        if zero_act:  # z = 0 (not a silent tie) is wrong for either target
            pick = np.where((zs[l][T] == 0) & ~ties[l], -1, pick)
        sel = select_easiest(fields[l], pick, group_sizes[l], True, alives[l])
        H = cp_update(H.astype(np.int64), sel, targets[l], acts[l][T], clip)
        H, _ = reinforce(H, p_reinf[l], seed, stream0 + l, clip, uniform, ternary)
        new_H.append(H)
    return new_H, n_correct
