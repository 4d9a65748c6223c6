#!/usr/bin/env python3
"""Which stability should pick BEP's winner neuron: visible or hidden?

The paper (§3.3) says the winner is the wrong neuron "easiest to
correct based on its pre-activation", then "smallest signed stability
a* H_{l,j}".  ``BEPClassifier`` takes the visible reading (wrong: a* z < 0
with z = W a; winner: smallest |z|), as the local-rule code does; a
third-party re-implementation (``TheoCoombes/Brute``) takes the hidden one
(wrong: a* (H a) < 0; winner: smallest |H a|).  This study trains both on a
validation split (the last 10 % of each benchmark training split; held-out
and test splits unused) with the BEPClassifier defaults otherwise (group
size: the divisor of K nearest 15), 50 epochs, one thread.  The hidden
reading is the package option ``selection='hidden'`` (exact int16 fields).

    python3 benchmarks/study_bep_selection.py --seeds 0,1,2   # about 15 minutes
    python3 benchmarks/study_bep_selection.py --quick          # seconds
    python3 benchmarks/study_bep_selection.py --tuning benchmarks/results/\
        bep_tuning_selection/bep_tuning.json --configs fmnist:5:255 --seeds 0,1
                                    # from the tuned parameters instead of the defaults

Writes ``<out>/bep_selection.json`` and ``<out>/bep_selection.md``.
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

import _common  # noqa: E402
from bench_bep import BEP_DEFAULTS, DATASETS  # noqa: E402
from study_bep_gate import validation_score  # noqa: E402

CONFIGS = [("prototypes_bep", 3, 35), ("fmnist", 5, 255), ("prototypes_bep", 2, 35),
           ("fmnist", 2, 35), ("prototypes_bep", 2, 525)]
QUICK_CONFIGS = [("prototypes_bep", 2, 35)]
VARIANTS = {"visible (default)": "visible", "hidden": "hidden"}


def base_params(tuning, name, depth, width):
    """The configuration's validation-tuned parameters (none: the defaults)."""
    if tuning is None:
        return {}
    return dict(tuning[f"{name}:{depth}:{width}"]["best"]["params"])


def main(argv=None):
    parser = _common.make_parser(__doc__, "one small configuration, 3 epochs")
    parser.add_argument("--seeds", default="0", help="comma list of seeds (default 0)")
    parser.add_argument("--tuning", default=None,
                        help="a tune_bep.py JSON: start from each configuration's "
                             "best.params instead of the defaults")
    parser.add_argument("--configs", default=None,
                        help="comma list of dataset:L:K (default: the five of the docstring)")
    args = parser.parse_args(argv)
    seeds = _common.parse_list(args.seeds, int)
    configs = QUICK_CONFIGS if args.quick else CONFIGS
    if args.configs:
        configs = _common.parse_configs(args.configs)
    epochs, subset = (3, 3000) if args.quick else (50, None)
    tuning = (json.loads(_common.Path(args.tuning).read_text())["entries"]
              if args.tuning else None)
    cache, rows = {}, []
    for name, depth, width in configs:
        scores = {v: [] for v in VARIANTS}
        for seed in seeds:
            for v, selection in VARIANTS.items():
                params = {**base_params(tuning, name, depth, width), "selection": selection}
                nu = params.pop("gate_threshold", BEP_DEFAULTS["gate_threshold"])
                s = validation_score(name, depth, width, nu, seed, epochs, cache, subset,
                                     params=params)
                if s is not None:
                    scores[v].append(s)
        print(f"[{name} L={depth} K={width}] " + ", ".join(
            f"{k}: {100 * np.mean(s):.2f}" for k, s in scores.items() if s),
            file=sys.stderr, flush=True)
        rows.append({"dataset": name, "depth": depth, "width": width, "scores": scores})
    res = {"machine": _common.machine_info(), "args": vars(args), "epochs": epochs,
           "variants": list(VARIANTS), "rows": rows}
    out = _common.Path(args.out)
    _common.write_json(out / "bep_selection.json", res)
    names = list(VARIANTS)
    table = []
    for r in rows:
        if not all(r["scores"][n] for n in names):
            continue
        base, other = (100 * np.array(r["scores"][n]) for n in names)
        table.append([DATASETS[r["dataset"]], r["depth"], r["width"]]
                     + [f"{100 * np.mean(r['scores'][n]):.2f}" for n in names]
                     + [_common.paired_difference(base, other)])
    md = "\n\n".join([
        f"# BEPClassifier: winner by visible or hidden stability"
        f"{' (quick run)' if args.quick else ''}",
        _common.machine_summary_md(res["machine"]),
        f"Validation accuracy % (the last 10 % of each training split; held-out and test "
        f"splits unused), mean over seeds {seeds}; "
        + (f"the tuned parameters of `{args.tuning}` otherwise, " if args.tuning
           else "BEPClassifier defaults otherwise, ") +
        f"{epochs} epochs, one thread.  The difference is paired (± its standard error).",
        _common.markdown_table(["data set", "L", "K"] + names + ["hidden − visible"], table)])
    _common.write_markdown(out / "bep_selection.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
