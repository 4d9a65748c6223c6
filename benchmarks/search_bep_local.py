#!/usr/bin/env python3
"""Local search around a tuned BEPClassifier setting, on validation splits.

tune_bep.py draws random points of a wide grid; once a configuration has a
good setting, a small full grid around it (a few parameters, a few values
each) is the cheaper way to refine it.  Every point is trained on the first
90 % of a stratified split of the training data and scored on the other
10 % (tune_bep.py's protocol; held-out and test splits unused), for every
seed, and the table is sorted by the mean.

    python3 benchmarks/search_bep_local.py --config fmnist:5:255 \\
        --tuning benchmarks/results/bep_tuning_selection/bep_tuning.json \\
        --base-set ternary_activations=true \\
        --grid "gate_threshold=0.1|0.25|0.5;group_size=15|51|85" --seeds 0,1
    python3 benchmarks/search_bep_local.py --quick

Writes ``<out>/bep_local_search.json`` and ``.md``.
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import itertools  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import _common  # noqa: E402
from bench_bep import parse_overrides, tuned_params  # noqa: E402
from tune_bep import score_config, validation_split  # noqa: E402

DEFAULT_TUNING = _common.DEFAULT_OUT / "bep_tuning_selection" / "bep_tuning.json"


def parse_grid(text):
    """'key=a|b;key2=c|d' -> {key: [a, b], key2: [c, d]} (values parsed as
    bench_bep.py --tuned-set does)."""
    grid = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, _, values = part.partition("=")
        grid[key.strip()] = [parse_overrides(f"k={v}")["k"] for v in values.split("|")]
    return grid


def main(argv=None):
    parser = _common.make_parser(__doc__, "Random Prototypes L2 K35, 2 points, 3 epochs")
    parser.add_argument("--config", default="prototypes_bep:3:35", help="dataset:L:K")
    parser.add_argument("--tuning", default=str(DEFAULT_TUNING))
    parser.add_argument("--base-set", default=None, metavar="KEY=VALUE,...",
                        help="parameters set on the tuned ones before the search")
    parser.add_argument("--grid", default="gate_threshold=0.25|0.5",
                        help="'key=v1|v2;key2=...': the full grid searched")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=50)
    args = parser.parse_args(argv)
    (name, depth, width), = _common.parse_configs(args.config)
    if args.quick:
        name, depth, width, args.epochs = "prototypes_bep", 2, 35, 3
    entries = json.loads(_common.Path(args.tuning).read_text())["entries"]
    key = f"{name}:{depth}:{width}"
    base = tuned_params(entries[key]["best"]["params"] if key in entries else {
        "group_size": 35}, width)
    base.update(parse_overrides(args.base_set))
    grid = parse_grid(args.grid)
    seeds = _common.parse_list(args.seeds, int)
    t0, points, cache = time.perf_counter(), [], {}
    for values in itertools.product(*grid.values()):
        change = dict(zip(grid, values))
        params = tuned_params({**base, **change}, width)
        scores = []
        for seed in seeds:
            data = _common.load_dataset(name, seed, cache)
            split = validation_split(data, seed)
            if args.quick:  # a small training part
                X_fit, y_fit, X_val, y_val = split
                split = (X_fit[:2000], y_fit[:2000], X_val, y_val)
            scores.append(score_config(params, name, depth, width, args.epochs, split,
                                       seed)["val_accuracy"])
        points.append({"change": change, "params": params, "scores": scores})
        print(f"  {change} -> " + " ".join(f"{100 * s:.2f}" for s in scores), flush=True)
    points.sort(key=lambda p: -np.mean(p["scores"]))
    res = {"machine": _common.machine_info(), "args": vars(args), "base": base,
           "points": points, "wall_s": time.perf_counter() - t0}
    out = _common.Path(args.out)
    _common.write_json(out / "bep_local_search.json", res)
    rows = [[", ".join(f"{k} {v}" for k, v in p["change"].items()),
             " ".join(f"{100 * s:.2f}" for s in p["scores"]),
             f"{100 * np.mean(p['scores']):.2f}"] for p in points]
    md = "\n\n".join([
        f"# BEPClassifier local search, {key}{' (quick run)' if args.quick else ''}",
        _common.machine_summary_md(res["machine"]),
        f"Validation accuracy % (stratified 10 % of the training split; held-out and test "
        f"splits unused), {args.epochs} epochs, one thread, seeds {seeds}.  Base: the tuned "
        f"parameters of `{args.tuning}`"
        + (f" with `{args.base_set}`" if args.base_set else "") + f": `{base}`.",
        _common.markdown_table(["change", "per seed", "mean"], rows)])
    _common.write_markdown(out / "bep_local_search.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
