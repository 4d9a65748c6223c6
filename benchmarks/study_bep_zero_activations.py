#!/usr/bin/env python3
"""Would BEP's narrow networks gain from activations with sign(0) = 0?

The BEP paper fixes sign(0) = +1 (§3.1), but the group's reference
code for the local rule takes signs with ``cupy.sign``, where a neuron with
z = 0 outputs 0: it drops out of the next layer's product, of the logits and
of the update of the layer above (docs/benchmarks.rst, the zero-semantics
study).  With ternary weights z = 0 is frequent in narrow layers.  This
study trains a plain-NumPy BEP (independent of the package's kernels) in
two variants that differ only there, paired (same seed, split, prototypes,
initialisation, shuffles and reinforcement draws):

binary activations   a = +1 if z >= 0 else -1 (the package's reading)
zero activations     a = sign(z) with sign(0) = 0; a neuron at z = 0 is
                     wrong whatever its target (|z| = 0, the easiest)

Both use the configuration's tuned parameters (``--tuning``, the
validation-selected ``best.params`` of tune_bep.py; ternary weights when
chosen there), trained on the first 90 % of a stratified split of the
training data and scored on the other 10 % (held-out and test splits
unused).  The rest follows BEPClassifier: trigger ``correct - best other <
r K_L``, gated back-projection with ties carrying no signal
(``strict_ties=False``) or +1, samples whose gate closes skip the layers
below, per group the wrong neuron with the smallest |z|, summed +-2 update
from the pre-update weights saturated at +-32767, reinforcement with
probability ``p_r sqrt(E_prev) sqrt(2 / (pi fan_in))`` once per layer and
triggering batch, group sizes stepping to the next divisor when the
training error stalls for ``group_patience`` epochs.

    python3 benchmarks/study_bep_zero_activations.py --seeds 0,1,2,3,4   # minutes
    python3 benchmarks/study_bep_zero_activations.py --quick             # seconds
    python3 benchmarks/study_bep_zero_activations.py --package --seeds 0,1,2,3,4
        # the same comparison with BEPClassifier(ternary_activations=...)

Writes ``<out>/bep_zero_activations.json`` and ``.md``.
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import _common  # noqa: E402
from bench_bep import DATASETS  # noqa: E402
from tune_bep import score_config, validation_split  # noqa: E402
from skbnn._bep import bef_prototypes, next_divisor  # noqa: E402

DEFAULT_TUNING = _common.DEFAULT_OUT / "bep_tuning_selection" / "bep_tuning.json"
CONFIGS = [("prototypes_bep", 3, 35)]
VARIANTS = {"binary activations": False, "zero activations": True}


def pm1(z):
    return np.where(z >= 0, 1.0, -1.0)


def train_and_score(name, depth, width, params, seed, zero_act, epochs, subset=None,
                    package=False):
    """Validation accuracy of one NumPy BEP run (see the module docstring), or
    of ``BEPClassifier(ternary_activations=zero_act)`` with ``package``."""
    data = _common.load_dataset(name, seed, {})
    X_fit, y_fit, X_val, y_val = validation_split(data, seed)
    if subset:
        X_fit, y_fit = X_fit[:subset], y_fit[:subset]
    if package:
        split = (X_fit, y_fit, X_val, y_val)
        return score_config({**params, "ternary_activations": zero_act}, name, depth, width,
                            epochs, split, seed)["val_accuracy"]
    if name == "fmnist":  # 'global_median' of the training part, as the benchmarks
        med = np.median(X_fit)
        X_fit, X_val = np.where(X_fit > med, 1, -1), np.where(X_val > med, 1, -1)
    X_fit, X_val = X_fit.astype(np.float64), X_val.astype(np.float64)
    r, nu, p_r = params["robustness"], params["gate_threshold"], params["reinforcement_prob"]
    bs, patience = params["batch_size"], params["group_patience"]
    strict, ternary_w = params["strict_ties"], params.get("ternary_weights", False)
    gammas = [params["group_size"]] * depth
    schedule = params.get("group_schedule", "validation")
    rng = np.random.default_rng(seed)
    fan_ins = [X_fit.shape[1]] + [width] * (depth - 1)
    Hs = []
    for f in fan_ins:
        h = np.trunc(rng.normal(0.0, params["init_std"], size=(width, f)))
        Hs.append(np.clip(h if ternary_w else 2 * np.floor(h / 2) + 1, -32767, 32767))
    P = bef_prototypes(10, width, 1.0, 100 * 10 * width, rng).astype(np.float64)
    act = np.sign if zero_act else pm1
    weights = np.sign if ternary_w else pm1

    def forward(X):
        a, acts, zs = X, [X], []
        for H in Hs:
            z = a @ weights(H).T
            a = act(z)
            zs.append(z)
            acts.append(a)
        return acts, zs

    E, best, wait = 1.0, np.inf, 0
    for _ in range(epochs):
        order, correct = rng.permutation(len(y_fit)), 0
        for start in range(0, len(y_fit), bs):
            idx = order[start:start + bs]
            y = y_fit[idx]
            acts, zs = forward(X_fit[idx])
            s = acts[-1] @ P.T
            rows = np.arange(len(y))
            correct += int((s.argmax(1) == y).sum())
            others = s.copy()
            others[rows, y] = -np.inf
            T = np.flatnonzero(s[rows, y] - others.max(1) < r * width)
            if T.size == 0:
                continue
            targets, usable, alives = [None] * depth, [None] * depth, [None] * depth
            targets[-1] = P[y[T]]
            usable[-1] = np.ones_like(targets[-1], dtype=bool)
            alive = np.ones(T.size, dtype=bool)
            alives[-1], tie = alive, np.zeros_like(usable[-1])
            for l in range(depth - 2, -1, -1):
                W = weights(Hs[l + 1])
                gate = (np.abs(zs[l + 1][T]) <= nu * W.shape[1]) & ~tie
                v = (gate * targets[l + 1]) @ W
                tie = np.zeros(v.shape, dtype=bool) if strict else v == 0
                targets[l], usable[l] = pm1(v), ~tie
                alive = alive & gate.any(1)
                alives[l] = alive
            for l in range(depth):
                z, t = zs[l][T], targets[l]
                wrong = (pm1(z) != t) | (zero_act & (z == 0))
                wrong &= usable[l] & alives[l][:, None]
                g = gammas[l]
                score = np.where(wrong, np.abs(z), np.inf).reshape(T.size, width // g, g)
                pick = score.argmin(2)
                found = np.isfinite(np.take_along_axis(score, pick[..., None], 2)[..., 0])
                m_idx, grp = np.nonzero(found)
                j = grp * g + pick[m_idx, grp]
                D = np.zeros_like(Hs[l])
                np.add.at(D, j, 2 * t[m_idx, j][:, None] * acts[l][T][m_idx])
                H = np.clip(Hs[l] + D, -32767, 32767)
                p = p_r * np.sqrt(E) * np.sqrt(2.0 / (np.pi * H.shape[1]))
                hit = rng.random(H.shape) < p
                step = np.sign(H[hit]) if ternary_w else pm1(H[hit])
                H[hit] = np.clip(H[hit] + 2 * step, -32767, 32767)
                Hs[l] = H
        E = 1.0 - correct / len(y_fit)
        if schedule is not None:  # 'train' (or no hold-out here): the training error
            if E < best:
                best, wait = E, 0
            else:
                wait += 1
                if wait >= patience:
                    gammas, wait = [next_divisor(width, g) for g in gammas], 0
    acts, _ = forward(X_val)
    return float(((acts[-1] @ P.T).argmax(1) == y_val).mean())


def main(argv=None):
    parser = _common.make_parser(__doc__, "one configuration, 2 seeds, 3 epochs, 3000 samples")
    parser.add_argument("--seeds", default="0", help="comma list of seeds (default 0)")
    parser.add_argument("--configs", default=None,
                        help="comma list of dataset:L:K with a tuning entry "
                             "(default prototypes_bep:3:35)")
    parser.add_argument("--tuning", default=str(DEFAULT_TUNING))
    parser.add_argument("--package", action="store_true",
                        help="train BEPClassifier(ternary_activations=False/True) instead "
                             "of the NumPy model (same splits and parameters)")
    args = parser.parse_args(argv)
    seeds = _common.parse_list(args.seeds, int)
    configs = CONFIGS
    if args.configs:
        configs = _common.parse_configs(args.configs)
    epochs, subset = (3, 3000) if args.quick else (50, None)
    if args.quick:
        seeds = seeds if len(seeds) > 1 else [0, 1]
    tuning = json.loads(_common.Path(args.tuning).read_text())["entries"]
    t0, rows = time.perf_counter(), []
    for name, depth, width in configs:
        params = tuning[f"{name}:{depth}:{width}"]["best"]["params"]
        scores = {v: [] for v in VARIANTS}
        for seed in seeds:
            for v, zero_act in VARIANTS.items():
                scores[v].append(train_and_score(name, depth, width, params, seed, zero_act,
                                                 epochs, subset, args.package))
            print(f"[{name} L={depth} K={width} seed={seed}] " + ", ".join(
                f"{k}: {100 * s[-1]:.2f}" for k, s in scores.items()), file=sys.stderr,
                flush=True)
        rows.append({"dataset": name, "depth": depth, "width": width, "params": params,
                     "scores": scores})
    res = {"machine": _common.machine_info(), "args": vars(args), "epochs": epochs,
           "rows": rows, "wall_s": time.perf_counter() - t0}
    out = _common.Path(args.out)
    _common.write_json(out / "bep_zero_activations.json", res)
    names = list(VARIANTS)
    table = []
    for r in rows:
        base, other = (100 * np.array(r["scores"][n]) for n in names)
        table.append([DATASETS[r["dataset"]], r["depth"], r["width"], len(base),
                      f"{base.mean():.2f} ± {base.std():.2f}",
                      f"{other.mean():.2f} ± {other.std():.2f}",
                      _common.paired_difference(base, other)])
    md = "\n\n".join([
        f"# BEP ({'BEPClassifier' if args.package else 'NumPy'}): activations with "
        f"sign(0) = +1 or 0{' (quick run)' if args.quick else ''}",
        _common.machine_summary_md(res["machine"]),
        f"Validation accuracy % (stratified 10 % of each benchmark training split; held-out "
        f"and test splits unused), seeds {seeds}, {epochs} epochs, one thread; the tuned "
        f"parameters of `{args.tuning}`; mean ± std and the paired difference ± its "
        f"standard error.",
        _common.markdown_table(["data set", "L", "K", "runs"] + names + ["zero − binary"],
                               table)])
    _common.write_markdown(out / "bep_zero_activations.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
