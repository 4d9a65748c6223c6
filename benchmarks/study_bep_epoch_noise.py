#!/usr/bin/env python3
"""How much does BEP's accuracy move from one epoch to the next, by width?

Our held-out figures at width 35 sit 2-3 points under the paper's Fig. 2
while the width-525 ones match it.  The paper does not say how the figure is
read (last epoch or best epoch) nor which split drove its tuning and its
group-size schedule.  Reading a noisy curve at its best epoch,
or choosing among settings on the split that is then reported, adds roughly
the curve's epoch-to-epoch spread.  This study measures that spread on
validation data only: per configuration, the tuned parameters (``--tuning``,
plus ``--tuned-set``) are trained with ``early_stopping=True`` on the training
split, so the estimator holds out its own stratified 10 % and records the
validation accuracy of every epoch (``validation_scores_``; all 50 epochs
run).  Held-out and test splits are never used.

Reported per configuration (mean over seeds): the last epoch's validation
accuracy, the best epoch's, their difference, and the standard deviation of
the last ten epochs.

    python3 benchmarks/study_bep_epoch_noise.py            # a few minutes
    python3 benchmarks/study_bep_epoch_noise.py --quick    # seconds

Writes ``<out>/bep_epoch_noise.json`` and ``.md``.
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import _common  # noqa: E402
from bench_bep import DATASETS, parse_overrides, tuned_params  # noqa: E402
from skbnn import BEPClassifier  # noqa: E402

DEFAULT_TUNING = _common.DEFAULT_OUT / "bep_tuning.json"
DEFAULT_CONFIGS = ("prototypes_bep:2:35,prototypes_bep:3:35,prototypes_bep:2:525,"
                   "prototypes_bep:3:525,fmnist:2:35,fmnist:2:525")
TAIL = 10  # epochs whose spread is reported


def validation_curve(name, depth, width, params, seed, epochs, cache, subset=None):
    """Per-epoch validation accuracies (%) of one fit on the training split."""
    split = _common.training_split(name, seed, cache, subset)
    if split is None:
        return None
    X, y = split
    est = BEPClassifier(hidden_layer_sizes=(width,) * depth, max_iter=epochs,
                        binarize_input="global_median" if name == "fmnist" else None,
                        random_state=seed, early_stopping=True, **params)
    est.fit(X, y)
    return [100 * s for s in est.validation_scores_]


def summarise(curves):
    """Mean over seeds of last, best, best - last and the tail's spread."""
    c = np.asarray(curves)
    tail = c[:, -min(TAIL, c.shape[1]):]
    return {"last": float(c[:, -1].mean()), "best": float(c.max(1).mean()),
            "best_minus_last": float((c.max(1) - c[:, -1]).mean()),
            "tail_std": float(tail.std(1).mean())}


def main(argv=None):
    parser = _common.make_parser(__doc__, "two small configurations, 2 seeds, 4 epochs")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="comma list of dataset:L:K")
    parser.add_argument("--tuning", default=str(DEFAULT_TUNING))
    parser.add_argument("--tuned-set", default=None, metavar="KEY=VALUE,...",
                        help="parameters set on top of every tuned configuration")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=50)
    args = parser.parse_args(argv)
    configs = _common.parse_configs(args.configs)
    seeds = _common.parse_list(args.seeds, int)
    subset = None
    if args.quick:
        configs, seeds, args.epochs, subset = configs[:2], seeds[:2], 4, 3000
    entries = json.loads(_common.Path(args.tuning).read_text())["entries"]
    extra = parse_overrides(args.tuned_set)
    t0, rows, cache = time.perf_counter(), [], {}
    for name, depth, width in configs:
        key = f"{name}:{depth}:{width}"
        if key not in entries:
            print(f"no tuning entry for {key}: skipped", file=sys.stderr)
            continue
        params = tuned_params({**entries[key]["best"]["params"], **extra}, width)
        curves = []
        for seed in seeds:
            curve = validation_curve(name, depth, width, params, seed, args.epochs, cache,
                                     subset)
            if curve is None:
                break
            curves.append(curve)
            print(f"  {key} seed {seed}: last {curve[-1]:.2f}, best {max(curve):.2f}",
                  flush=True)
        if curves:
            rows.append({"config": key, "params": params, "curves": curves,
                         **summarise(curves)})
    res = {"machine": _common.machine_info(), "args": vars(args), "rows": rows,
           "wall_s": time.perf_counter() - t0}
    out = _common.Path(args.out)
    _common.write_json(out / "bep_epoch_noise.json", res)
    table = []
    for r in rows:
        name, depth, width = r["config"].split(":")
        table.append([DATASETS[name], depth, width, len(r["curves"]), f"{r['last']:.2f}",
                      f"{r['best']:.2f}", f"{r['best_minus_last']:+.2f}",
                      f"{r['tail_std']:.2f}"])
    md = "\n\n".join([
        "# BEP: epoch-to-epoch spread of the validation accuracy"
        + (" (quick run)" if args.quick else ""),
        _common.machine_summary_md(res["machine"]),
        f"Tuned parameters of `{args.tuning}`"
        + (f" with `{args.tuned_set}`" if args.tuned_set else "")
        + f", {args.epochs} epochs, one thread, seeds {seeds}.  Each fit holds out a "
        "stratified 10 % of the training split (`early_stopping=True`, all epochs run) "
        "and records its accuracy after every epoch; held-out and test splits unused.  "
        f"Means over seeds: last epoch, best epoch, best − last, and the standard deviation "
        f"of the last {TAIL} epochs.",
        _common.markdown_table(["data set", "L", "K", "runs", "last %", "best %",
                                "best − last", f"std, last {TAIL}"], table)])
    _common.write_markdown(out / "bep_epoch_noise.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
