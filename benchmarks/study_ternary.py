#!/usr/bin/env python3
"""Ternary weights (``ternary_weights=True``) against {-1, +1} weights, paired.

For each (data set, L, K) of the BEP paper's Fig. 2 that the issues target,
and each seed, it trains ``BEPClassifier`` (defaults, and the per-configuration
``best.params`` of ``benchmarks/results/bep_tuning.json`` when present) and
``LocalBinaryClassifier`` (paper group sizes) twice with the same seed,
split and random draws: once with binary weights (``odd_init=True``, the
default) and once with the reference code's ternary reading
(``odd_init=False, ternary_weights=True``: the truncated-normal draws keep
their mixed parity, even hidden weights can reach 0 and sign(0) = 0).  Data
and splits as ``bench_bep.py`` (Fashion-MNIST 50k/10k from the official
training set, global median; Random Prototypes p = 0.46, 20k/3k); held-out
accuracy, one thread, 50 epochs.

    python3 benchmarks/study_ternary.py                # the K = 35 targets and FMNIST K = 525
    python3 benchmarks/study_ternary.py --quick        # 3 epochs, 5,000 samples, one seed

``--activations`` adds ``ternary_activations=True`` to the ternary arm: the
reference code's reading of both weights and activations (sign(0) = 0).

Writes ``<out>/ternary.json`` and ``<out>/ternary.md``.
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import _common  # noqa: E402
from bench_bep import (DATASETS, DEFAULT_TUNING, PAPER, PAPER_WIDTHS, TARGETS,  # noqa: E402
                       bep_group_size, load_tuning, tuned_params)
from skbnn import BEPClassifier, LocalBinaryClassifier  # noqa: E402
from skbnn._local import auto_group_size  # noqa: E402

DEFAULT_CONFIGS = "fmnist:2:35,fmnist:3:35,prototypes_bep:2:35,prototypes_bep:3:35,fmnist:2:525"
TERNARY = {"odd_init": False, "ternary_weights": True}


# the local-rule paper's equal-memory results (10 runs): K = 35, 75, 135, 255, 525
LOCAL_PAPER = {"prototypes": [79.10, 87.65, 92.25, 93.60, 94.84]}
# LocalBinaryClassifier issue targets (local-rule paper setting)
LOCAL_TARGETS = {("fmnist", 2, 525): 86.6, ("prototypes", 2, 525): 94.8}
LABELS = {**DATASETS, "prototypes": "Random Prototypes (p=0.44, local rule)"}
METHODS = ("bep", "bep_tuned", "local")


def methods_for(name, depth, width, tuning, methods=METHODS):
    """(method, estimator class, parameters) of one configuration."""
    out = []
    if "bep" in methods:
        out.append(("BEP defaults", BEPClassifier, {"group_size": bep_group_size(width)}))
    best = tuning.get((name, depth, width))
    if "bep_tuned" in methods and best is not None:
        out.append(("BEP tuned", BEPClassifier, tuned_params(best, width)))
    if "local" in methods:
        out.append(("Local", LocalBinaryClassifier, {"group_size": auto_group_size(width)}))
    return out


def run(args):
    tuning = load_tuning(args.tuning)
    configs = _common.parse_configs(args.configs)
    seeds = _common.parse_list(args.seeds, int)
    cache, rows = {}, []
    ternary = {**TERNARY, "ternary_activations": True} if args.activations else TERNARY
    for name, depth, width in configs:
        for method, cls, params in methods_for(name, depth, width, tuning, args.methods):
            for seed in seeds:
                data = _common.load_dataset(name, seed, cache, args.split)
                if data is None:
                    print(f"{name} unavailable: skipped", file=sys.stderr)
                    break
                if args.train_subset:
                    data = dict(data, X_train=data["X_train"][:args.train_subset],
                                y_train=data["y_train"][:args.train_subset])
                rec = {"dataset": name, "depth": depth, "width": width, "method": method,
                       "seed": seed}
                for mode, extra in (("binary", {}), ("ternary", ternary)):
                    est = cls(hidden_layer_sizes=(width,) * depth, max_iter=args.epochs,
                              binarize_input="global_median" if name == "fmnist" else None,
                              random_state=seed, **{**params, **extra})
                    t0 = time.perf_counter()
                    est.fit(data["X_train"], data["y_train"])
                    fit_s = time.perf_counter() - t0
                    zeros = float(np.mean([np.mean(h == 0) for h in est.hidden_weights_]))
                    rec[mode] = {"heldout_accuracy": float(est.score(data["X_heldout"],
                                                                     data["y_heldout"])),
                                 "s_per_epoch": fit_s / est.n_iter_, "zero_fraction": zeros}
                print(f"[{name} L={depth} K={width} {method} seed={seed}] binary "
                      f"{100 * rec['binary']['heldout_accuracy']:.2f} %, ternary "
                      f"{100 * rec['ternary']['heldout_accuracy']:.2f} % "
                      f"({100 * rec['ternary']['zero_fraction']:.2f} % zero weights)",
                      flush=True)
                rows.append(rec)
    return rows


def summarise(rows, full):
    groups = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["depth"], r["width"], r["method"]), []).append(r)
    table = []
    for (name, depth, width, method), rs in groups.items():
        b = np.array([r["binary"]["heldout_accuracy"] for r in rs]) * 100
        t = np.array([r["ternary"]["heldout_accuracy"] for r in rs]) * 100
        pk = PAPER_WIDTHS.index(width) if width in PAPER_WIDTHS else None
        if name in LOCAL_PAPER:  # the local rule's own data set: its paper, L = 2
            paper = LOCAL_PAPER[name] if method == "Local" and depth == 2 else None
        else:
            paper = PAPER.get((name, depth), (None, None))[1 if method == "Local" else 0]
        ref = f"{paper[pk]:.2f}" if paper and pk is not None else "—"
        target = (LOCAL_TARGETS if method == "Local" else TARGETS).get((name, depth, width))
        status = "—"
        if target is not None:
            status = (("PASS" if t.mean() >= target else "FAIL") if full else "n/a") + \
                f" (≥ {target})"
        zeros = np.mean([r["ternary"]["zero_fraction"] for r in rs]) * 100
        speed = (np.mean([r["ternary"]["s_per_epoch"] for r in rs])
                 / np.mean([r["binary"]["s_per_epoch"] for r in rs]))
        table.append([LABELS[name], depth, width, method, len(rs),
                      f"{b.mean():.2f} ± {b.std():.2f}", f"{t.mean():.2f} ± {t.std():.2f}",
                      _common.paired_difference(b, t), ref,
                      status, f"{zeros:.2f}",
                      f"{speed:.2f}×"])
    return table


def main(argv=None):
    parser = _common.make_parser(__doc__, "3 epochs, 5,000 training samples, one seed, "
                                          "Random Prototypes L = 2 K = 35 only")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS,
                        help="comma list of dataset:L:K (default: %(default)s)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma list of bep, bep_tuned, local (default: all)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=None, help="default 50 (quick 3)")
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--tuning", default=str(DEFAULT_TUNING))
    parser.add_argument("--activations", action="store_true",
                        help="the ternary arm also takes ternary_activations=True")
    _common.add_split_argument(parser)
    args = parser.parse_args(argv)
    args.methods = _common.parse_list(args.methods)
    if args.quick:
        args.epochs = args.epochs or 3
        args.train_subset = args.train_subset or 5000
        args.seeds = "0"
        if args.configs == DEFAULT_CONFIGS:
            args.configs = "prototypes_bep:2:35"
    args.epochs = args.epochs or 50
    full = args.epochs == 50 and not args.train_subset
    t0 = time.perf_counter()
    rows = run(args)
    res = {"machine": _common.machine_info(), "quick": args.quick, "args": vars(args),
           "runs": rows, "wall_s": time.perf_counter() - t0}
    table = summarise(rows, full)
    md = [f"# Ternary against binary weights{' (quick run)' if args.quick else ''}", "",
          _common.machine_summary_md(res["machine"]), "",
          f"Held-out accuracy %, {args.epochs} epochs, one thread, seeds {args.seeds} "
          "(mean ± std; the paired difference ternary − binary ± its standard error). "
          "Binary: the default `odd_init=True`; ternary: `odd_init=False, "
          "ternary_weights=True`"
          + (", ternary_activations=True" if args.activations else "")
          + " (sign(0) = 0, the reference code's reading). Same seed, "
          f"split ({args.split} row order) and draws in both. \"zero %\": hidden weights at 0 after training "
          "(ternary); \"time\": ternary ÷ binary seconds per epoch. \"paper\": the BEP "
          "paper's Fig. 2 (BEP and its local-rule line), or the local-rule paper on its "
          "own Random Prototypes (p = 0.44). The target column applies to the ternary "
          "mean (BEP issue targets; Local at K = 525: the LocalBinaryClassifier issue's).",
          "",
          _common.markdown_table(
              ["data set", "L", "K", "method", "runs", "binary %", "ternary %",
               "ternary − binary", "paper", "target", "zero %", "time"], table,
              align="llrlrrrrrlrr")]
    os.makedirs(args.out, exist_ok=True)
    _common.write_json(os.path.join(args.out, "ternary.json"), res)
    _common.write_markdown(os.path.join(args.out, "ternary.md"), "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
