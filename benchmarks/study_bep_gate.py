#!/usr/bin/env python3
"""Should BEP's gate scale with the fan-in or with its square root?

``BEPClassifier`` opens the gate of neuron ``j`` when ``|z_j| <= nu * K``
(a fraction of the fan-in ``K``).  Pre-activations of random +/-1 weights
spread as ``sqrt(K)``, so a fixed fraction is a wide gate for wide layers and
a narrow one for narrow layers.  This study compares, on a validation split
(the last 10 % of each benchmark training split; the held-out and test splits
are never read), the default ``nu`` against ``nu = c / sqrt(K)``, i.e. a gate
of ``c * sqrt(K)``, for the configurations whose targets are hardest:
Fashion-MNIST L = 2, 3 at K = 525, L = 2 at K = 35, L = 5 at K = 255 and
Random Prototypes (p = 0.46) L = 3 at K = 35 and L = 2 at K = 525.  Every
other parameter is the BEPClassifier default (group size: the divisor of K
nearest 15), 50 epochs, one thread.

    python3 benchmarks/study_bep_gate.py --seeds 0,1,2   # about 15 minutes
    python3 benchmarks/study_bep_gate.py --quick          # seconds

Writes ``<out>/bep_gate.json`` and ``<out>/bep_gate.md``.
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import sys  # noqa: E402

import numpy as np  # noqa: E402

import _common  # noqa: E402
from bench_bep import BEP_DEFAULTS, DATASETS, bep_group_size  # noqa: E402
from skbnn import BEPClassifier  # noqa: E402

CONFIGS = [("fmnist", 2, 525), ("fmnist", 3, 525), ("fmnist", 2, 35), ("fmnist", 5, 255),
           ("prototypes_bep", 3, 35), ("prototypes_bep", 2, 525)]
QUICK_CONFIGS = [("prototypes_bep", 2, 35)]


def gate_fraction(variant, width):
    """``nu`` of a variant: ``('fraction', nu)`` or ``('sqrt', c)`` -> c / sqrt(K)."""
    kind, value = variant
    return value if kind == "fraction" else value / np.sqrt(width)


def label(variant):
    kind, value = variant
    return f"nu = {value:g}" if kind == "fraction" else f"c = {value:g} (nu = c/sqrt(K))"


def validation_score(name, depth, width, nu, seed, epochs, cache, subset=None, params=None):
    """Validation accuracy of a BEPClassifier (defaults, gate ``nu``, then
    ``params``) trained on the first 90 % of the benchmark training split."""
    split = _common.training_split(name, seed, cache, subset)
    if split is None:
        return None
    X, y = split
    n_val = len(y) // 10
    est = BEPClassifier(hidden_layer_sizes=(width,) * depth, group_size=bep_group_size(width),
                        gate_threshold=float(nu), max_iter=epochs, random_state=seed,
                        binarize_input="global_median" if name == "fmnist" else None)
    est.set_params(**(params or {}))
    est.fit(X[:-n_val], y[:-n_val])
    return float(est.score(X[-n_val:], y[-n_val:]))


def main(argv=None):
    parser = _common.make_parser(__doc__, "one small configuration, 3 epochs")
    parser.add_argument("--seeds", default="0", help="comma list of seeds (default 0)")
    parser.add_argument("--scales", default="1.9",
                        help="comma list of c for the sqrt(K) gate (default 1.9)")
    args = parser.parse_args(argv)
    seeds = _common.parse_list(args.seeds, int)
    variants = [("fraction", BEP_DEFAULTS["gate_threshold"])] + [
        ("sqrt", c) for c in _common.parse_list(args.scales, float)]
    configs = QUICK_CONFIGS if args.quick else CONFIGS
    epochs, subset = (3, 3000) if args.quick else (50, None)
    cache, rows = {}, []
    for name, depth, width in configs:
        scores = {label(v): [] for v in variants}
        for seed in seeds:
            for v in variants:
                s = validation_score(name, depth, width, gate_fraction(v, width), seed, epochs,
                                     cache, subset)
                if s is not None:
                    scores[label(v)].append(s)
        print(f"[{name} L={depth} K={width}] " + ", ".join(
            f"{k}: {100 * np.mean(s):.2f}" for k, s in scores.items() if s),
            file=sys.stderr, flush=True)
        rows.append({"dataset": name, "depth": depth, "width": width, "scores": scores})
    res = {"machine": _common.machine_info(), "args": vars(args), "epochs": epochs,
           "variants": [label(v) for v in variants], "rows": rows}
    out = _common.Path(args.out)
    _common.write_json(out / "bep_gate.json", res)
    names = res["variants"]
    table = []
    for r in rows:
        if not all(r["scores"][n] for n in names):
            continue
        base = np.array(r["scores"][names[0]])
        cells = [f"{100 * np.mean(r['scores'][n]):.2f}" for n in names]
        diffs = [f"{100 * np.mean(np.array(r['scores'][n]) - base):+.2f}" for n in names[1:]]
        table.append([DATASETS[r["dataset"]], r["depth"], r["width"]] + cells + diffs)
    md = "\n\n".join([
        f"# BEPClassifier: gate as a fraction of the fan-in or of its square root"
        f"{' (quick run)' if args.quick else ''}",
        _common.machine_summary_md(res["machine"]),
        f"Validation accuracy % (the last 10 % of each training split; held-out and test "
        f"splits unused), mean over seeds {seeds}; BEPClassifier defaults otherwise, "
        f"{epochs} epochs, one thread.  Differences are paired against the default gate.",
        _common.markdown_table(["data set", "L", "K"] + names
                               + [f"{n} − default" for n in names[1:]], table)])
    _common.write_markdown(out / "bep_gate.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
