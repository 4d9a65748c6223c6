#!/usr/bin/env python3
"""LocalBinaryClassifier against the local-rule paper and scikit-learn's MLP.

For each data set (Fashion-MNIST and Random Prototypes, with the paper's
splits, ``_common.fmnist_splits`` and ``prototypes_splits``), width K (two
hidden layers K_K, paper group size) and seed, it trains
``LocalBinaryClassifier(hidden_layer_sizes=(K, K),
group_size=gamma(K), robustness=0.25, reinforcement_prob=0.5,
batch_size=100, max_iter=50)`` single-threaded and reports held-out accuracy
(and official-test accuracy for FMNIST), seconds per epoch, prediction
throughput with 1 and 2 threads and the model size; next to it,
``sklearn.neural_network.MLPClassifier`` with the same hidden layers, batch
size and number of epochs on the same data (float inputs, one BLAS thread):
accuracy, seconds per epoch and the speed ratio.  Paper targets are printed
next to the results.

    python3 benchmarks/bench_local.py                      # full: 50 epochs
    python3 benchmarks/bench_local.py --quick              # < 60 s
    python3 benchmarks/bench_local.py --widths 35,135,525 --seeds 42,43,44

Writes ``<out>/local.json`` (raw numbers + machine info) and
``<out>/local.md``, and prints the tables.
"""
import os

# single-threaded BLAS for the MLP baseline: must be set before NumPy is imported
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import contextlib  # noqa: E402
import io  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402

import _common  # noqa: E402
from skbnn import LocalBinaryClassifier  # noqa: E402
from skbnn._local import auto_group_size  # noqa: E402

PAPER_EPOCHS = 50
FULL_TRAIN = {"fmnist": 50_000, "prototypes": 10_000}
# the paper's equal-memory results, K_K, test % after epoch 50, mean ± std over 10 runs
PAPER_ACCURACY = {
    "fmnist": {35: (82.25, 0.51), 75: (84.66, 0.32), 135: (85.68, 0.34),
               255: (86.22, 0.34), 525: (86.64, 0.29)},
    "prototypes": {35: (79.10, 1.27), 75: (87.65, 0.56), 135: (92.25, 0.45),
                   255: (93.60, 0.67), 525: (94.84, 0.56)},
}
# acceptance targets (width 525, the paper's configuration)
TARGET_ACCURACY = {"fmnist": 86.6, "prototypes": 94.8}
TARGET_S_PER_EPOCH = 0.35
TARGET_SPEEDUP_VS_MLP = 10.0
TARGET_PREDICT_RATE = 2e6
TARGET_WIDTH = 525
DATASET_NAMES = {"fmnist": "Fashion-MNIST", "prototypes": "Random Prototypes"}


def inference_bytes(clf):
    """Packed sign weights of every layer + the last classifier as bits."""
    k_last, c_out = clf.classifiers_[-1].shape
    return (sum(int(w.nbytes) for w in clf.packed_weights_)
            + int(math.ceil(k_last * c_out / 8)))


def run_one(name, width, seed, args, data_cache, blas_note):
    data = _common.load_dataset(name, seed, data_cache, args.split)
    if data is None:
        return None
    X_tr, y_tr = data["X_train"], data["y_train"]
    n_full = len(y_tr)
    if args.train_subset and n_full > args.train_subset:
        X_tr, y_tr = X_tr[:args.train_subset], y_tr[:args.train_subset]
    X_ho, y_ho = data["X_heldout"], data["y_heldout"]
    X_te, y_te = data["X_test"], data["y_test"]
    gamma = auto_group_size(width)
    params = dict(hidden_layer_sizes=(width, width), group_size=gamma, robustness=0.25,
                  reinforcement_prob=0.5, batch_size=100, max_iter=args.epochs,
                  random_state=seed,
                  binarize_input="global_median" if name == "fmnist" else None, n_jobs=1)
    rec = {"dataset": name, "width": width, "group_size": gamma, "seed": seed,
           "n_train": len(y_tr), "n_train_full": n_full, "n_heldout": len(y_ho),
           "n_test": None if y_te is None else len(y_te), "lbc_params": params}

    # ---- LocalBinaryClassifier, one thread
    # verbose=1 prints one line per epoch with its time: captured, parsed
    # into per-epoch seconds (setup excluded, 10 ms resolution) for the JSON
    clf = LocalBinaryClassifier(**params, verbose=1)
    log = io.StringIO()
    with _common.CpuMonitor() as mon, contextlib.redirect_stdout(log):
        t0 = time.perf_counter()
        clf.fit(X_tr, y_tr)
        fit_s = time.perf_counter() - t0
    epoch_s = [float(m) for m in re.findall(r", ([0-9.]+) s$", log.getvalue(), re.M)]
    rec["lbc"] = {
        "fit_s": fit_s, "n_iter": clf.n_iter_, "s_per_epoch": fit_s / clf.n_iter_,
        "cpu_during_fit": mon.as_dict(),
        "epoch_s_verbose": epoch_s,
        "median_epoch_s_verbose": float(np.median(epoch_s)) if epoch_s else None,
        "loss_curve": [float(x) for x in clf.loss_curve_],
        "heldout_accuracy": float(clf.score(X_ho, y_ho)),
        "test_accuracy": None if y_te is None else float(clf.score(X_te, y_te)),
        "train_accuracy": float(clf.score(X_tr, y_tr)),
        "inference_bytes": inference_bytes(clf),
        "packed_weights_bytes": sum(int(w.nbytes) for w in clf.packed_weights_),
        "hidden_weights_bytes": sum(int(h.nbytes) for h in clf.hidden_weights_),
        "classifiers_int8_bytes": sum(int(p.nbytes) for p in clf.classifiers_),
        "predict": {},
    }
    for n_jobs in (1, 2):
        clf.set_params(n_jobs=n_jobs, verbose=0)
        with _common.CpuMonitor() as mon:
            t = _common.time_call(lambda: clf.predict(X_ho), repeats=args.predict_repeats,
                                  min_time=args.predict_min_time, warmup=1)
        rec["lbc"]["predict"][f"n_jobs={n_jobs}"] = dict(
            t, samples_per_s=len(y_ho) / t["best"],
            samples_per_s_median=len(y_ho) / t["median"], cpu=mon.as_dict())
    clf.set_params(n_jobs=1, verbose=0)

    # ---- MLPClassifier, one BLAS thread, same data and epochs
    if args.mlp_epochs > 0:
        Xm_tr, Xm_ho, Xm_te = (_common.mlp_inputs(name, X) for X in (X_tr, X_ho, X_te))
        mlp = MLPClassifier(hidden_layer_sizes=(width, width), batch_size=100,
                            max_iter=args.mlp_epochs, random_state=seed, early_stopping=False)
        with _common.blas_single_thread(), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            with _common.CpuMonitor() as mon:
                t0 = time.perf_counter()
                mlp.fit(Xm_tr, y_tr)
                mfit_s = time.perf_counter() - t0
            t = _common.time_call(lambda: mlp.predict(Xm_ho), repeats=args.predict_repeats,
                                  min_time=args.predict_min_time, warmup=1)
            rec["mlp"] = {
                "params": mlp.get_params(), "blas_threads": blas_note,
                "input_dtype": str(Xm_tr.dtype),
                "fit_s": mfit_s, "n_iter": mlp.n_iter_, "s_per_epoch": mfit_s / mlp.n_iter_,
                "cpu_during_fit": mon.as_dict(),
                "loss_curve": [float(x) for x in mlp.loss_curve_],
                "heldout_accuracy": float(mlp.score(Xm_ho, y_ho)),
                "test_accuracy": None if y_te is None else float(mlp.score(Xm_te, y_te)),
                "weights_bytes": sum(int(a.nbytes) for a in mlp.coefs_ + mlp.intercepts_),
                "weights_dtype": str(mlp.coefs_[0].dtype),
                "predict_1_thread": dict(t, samples_per_s=len(y_ho) / t["best"]),
            }
        rec["speed_ratio_mlp_over_lbc"] = (rec["mlp"]["s_per_epoch"]
                                           / rec["lbc"]["s_per_epoch"])
    else:
        rec["mlp"], rec["speed_ratio_mlp_over_lbc"] = None, None
    lb = rec["lbc"]
    print(f"[{name} K={width} seed={seed}] held-out {100 * lb['heldout_accuracy']:.2f} %, "
          f"{lb['s_per_epoch']:.3f} s/epoch, predict "
          f"{lb['predict']['n_jobs=1']['samples_per_s']:.3g}/s"
          + (f"; MLP {100 * rec['mlp']['heldout_accuracy']:.2f} %, "
             f"{rec['mlp']['s_per_epoch']:.3f} s/epoch" if rec["mlp"] else ""),
          file=sys.stderr, flush=True)
    return rec


# ---------------------------------------------------------------- summary
def summarize(runs):
    get = {
        "heldout_accuracy": lambda r: r["lbc"]["heldout_accuracy"],
        "test_accuracy": lambda r: r["lbc"]["test_accuracy"],
        "s_per_epoch": lambda r: r["lbc"]["s_per_epoch"],
        "predict_1": lambda r: r["lbc"]["predict"]["n_jobs=1"]["samples_per_s"],
        "predict_2": lambda r: r["lbc"]["predict"]["n_jobs=2"]["samples_per_s"],
        "inference_bytes": lambda r: r["lbc"]["inference_bytes"],
        "hidden_weights_bytes": lambda r: r["lbc"]["hidden_weights_bytes"],
        "mlp_heldout_accuracy": lambda r: r["mlp"] and r["mlp"]["heldout_accuracy"],
        "mlp_test_accuracy": lambda r: r["mlp"] and r["mlp"]["test_accuracy"],
        "mlp_s_per_epoch": lambda r: r["mlp"] and r["mlp"]["s_per_epoch"],
        "mlp_weights_bytes": lambda r: r["mlp"] and r["mlp"]["weights_bytes"],
        "speed_ratio": lambda r: r["speed_ratio_mlp_over_lbc"],
    }
    groups = {}
    for r in runs:
        groups.setdefault((r["dataset"], r["width"]), []).append(r)
    out = []
    for (name, width), rs in groups.items():
        s = {"dataset": name, "width": width, "group_size": rs[0]["group_size"],
             "n_train": rs[0]["n_train"], "n_train_full": rs[0]["n_train_full"],
             "epochs": rs[0]["lbc"]["n_iter"],
             "mlp_epochs": rs[0]["mlp"]["n_iter"] if rs[0]["mlp"] else None,
             "seeds": [r["seed"] for r in rs]}
        for key, fn in get.items():
            s[key] = _common.stats([fn(r) for r in rs])
        out.append(s)
    return out


def _fmt(st, scale=1.0, digits=2, fmt=None):
    if st is None:
        return "—"
    f = fmt or (lambda v: f"{v * scale:.{digits}f}")
    return f(st["mean"]) + (f" ± {f(st['std'])}" if st["n"] > 1 else "")


def _rate(v):
    return f"{v / 1e6:.2f} M"


def _bytes(v):
    return f"{v / 1024:.0f} KiB" if v < 1024 ** 2 else f"{v / 1024 ** 2:.2f} MiB"


def targets(summary):
    """Rows (dataset, width, quantity, measured, target, paper, status)."""
    rows = []
    for s in summary:
        name, width = s["dataset"], s["width"]
        full = s["n_train"] == FULL_TRAIN[name]
        paper_setting = full and s["epochs"] == PAPER_EPOCHS
        why = [] if paper_setting else [
            f"{s['epochs']} epochs" if s["epochs"] != PAPER_EPOCHS else None,
            f"{s['n_train']} of {FULL_TRAIN[name]} train" if not full else None]
        why = ", ".join(w for w in why if w)
        ref = PAPER_ACCURACY[name].get(width)
        ref_txt = f"{ref[0]:.2f} ± {ref[1]:.2f}" if ref else "—"
        acc = s["heldout_accuracy"]["mean"] * 100
        if width == TARGET_WIDTH:
            tgt = TARGET_ACCURACY[name]
            status = ("PASS" if acc >= tgt else "FAIL") if paper_setting else f"n/a ({why})"
            rows.append([DATASET_NAMES[name], width, "held-out accuracy %",
                         _fmt(s["heldout_accuracy"], 100), f"≥ {tgt}", ref_txt, status])
        elif ref:
            rows.append([DATASET_NAMES[name], width, "held-out accuracy %",
                         _fmt(s["heldout_accuracy"], 100), "—", ref_txt,
                         f"{acc - ref[0]:+.2f} vs paper" + (f" ({why})" if why else "")])
        if width != TARGET_WIDTH:
            continue
        spe = s["s_per_epoch"]["mean"]
        rows.append([DATASET_NAMES[name], width, "s / epoch (1 thread)",
                     _fmt(s["s_per_epoch"], digits=3), f"≤ {TARGET_S_PER_EPOCH}", "—",
                     ("PASS" if spe <= TARGET_S_PER_EPOCH else "FAIL") if full
                     else f"n/a ({s['n_train']} of {FULL_TRAIN[name]} train)"])
        if s["speed_ratio"]:
            ratio = s["speed_ratio"]["mean"]
            rows.append([DATASET_NAMES[name], width, "speed vs MLP (s/epoch ratio)",
                         _fmt(s["speed_ratio"], digits=1) + "×", f"≥ {TARGET_SPEEDUP_VS_MLP:g}×",
                         "—", "PASS" if ratio >= TARGET_SPEEDUP_VS_MLP else "FAIL"])
        for key, label in (("predict_1", "predict samples/s (n_jobs=1)"),
                           ("predict_2", "predict samples/s (n_jobs=2)")):
            rate = s[key]["mean"]
            rows.append([DATASET_NAMES[name], width, label, _fmt(s[key], fmt=_rate),
                         f"≥ {TARGET_PREDICT_RATE / 1e6:g} M", "—",
                         "PASS" if rate >= TARGET_PREDICT_RATE else "FAIL"])
    return rows


def render_markdown(res):
    summary = res["summary"]
    lines = [f"# LocalBinaryClassifier benchmark{' (quick run)' if res['quick'] else ''}", "",
             _common.machine_summary_md(res["machine"]), "",
             "LocalBinaryClassifier: two hidden layers K_K, group size γ(K) (paper values), "
             "r = 0.25, p0 = 0.5, batch 100, n_jobs=1 for fit; s/epoch = fit time / n_iter_ "
             "(includes input binarisation and packing). MLPClassifier: same hidden layers, "
             "batch 100, adam defaults, one BLAS thread, float32 inputs "
             "(FMNIST /255, Prototypes ±1). Predict throughput over the held-out split, "
             f"best of {res['args']['predict_repeats']}. Accuracies in %, mean ± std "
             "(numpy std, ddof=0) over seeds when several.", ""]
    headers = ["data set", "K_K (γ)", "train n", "epochs (MLP)", "held-out %", "official test %",
               "s/epoch", "predict/s 1 thr", "predict/s 2 thr", "inference size",
               "H (training) size", "MLP held-out %", "MLP test %", "MLP s/epoch",
               "MLP ÷ ours (s/epoch)"]
    rows = []
    for s in summary:
        rows.append([DATASET_NAMES[s["dataset"]], f"{s['width']}_{s['width']} ({s['group_size']})",
                     s["n_train"], f"{s['epochs']} ({s['mlp_epochs'] or '—'})",
                     _fmt(s["heldout_accuracy"], 100), _fmt(s["test_accuracy"], 100),
                     _fmt(s["s_per_epoch"], digits=3), _fmt(s["predict_1"], fmt=_rate),
                     _fmt(s["predict_2"], fmt=_rate),
                     _fmt(s["inference_bytes"], fmt=_bytes),
                     _fmt(s["hidden_weights_bytes"], fmt=_bytes),
                     _fmt(s["mlp_heldout_accuracy"], 100), _fmt(s["mlp_test_accuracy"], 100),
                     _fmt(s["mlp_s_per_epoch"], digits=3),
                     _fmt(s["speed_ratio"], digits=1)])
    if not rows:
        lines.append("**No results** (every requested data set was skipped).")
    else:
        lines.append(_common.markdown_table(headers, rows, align="ll" + "r" * 13))
        mlp_sizes = ", ".join(f"{DATASET_NAMES[s['dataset']]} {s['width']}: "
                              + _fmt(s["mlp_weights_bytes"], fmt=_bytes)
                              for s in summary if s["mlp_weights_bytes"])
        lines += ["", "Inference size = packed sign weights of all layers + last classifier "
                  "(K × classes bits); H = int16 hidden weights (training state only)."
                  + (f" MLP weights (float32, same as its inputs): {mlp_sizes}."
                     if mlp_sizes else ""), ""]
    trows = targets(summary)
    if trows:
        lines += ["## Paper targets", "",
                  _common.markdown_table(["data set", "K", "quantity", "measured", "target",
                                          "paper (10 runs)", "status"], trows,
                                         align="lrlrrrl"),
                  "", "Accuracy targets apply to the paper setting only (width 525, 50 epochs, "
                  "full training split; paper: seeds 42..51, last-epoch test accuracy on the "
                  "held-out split; it binarised before splitting, here the median is learned "
                  "on the training split). The s/epoch target applies to the full training "
                  "split. Row order of the splits: "
                  + ("the local-rule code's own shuffle (`--split reference`), so seeds "
                     "42..51 are the paper's held-out splits."
                     if res["args"].get("split") == "reference" else
                     "NumPy permutation of the run seed (`--split permutation`).")]
    if res["skipped"]:
        lines += [""] + [f"- skipped {k}: {v}" for k, v in res["skipped"].items()]
    other = res["cpu_use_during_run"]["other_processes_cpus"]
    if other is not None:
        lines += ["", f"Other processes used {other:.2f} CPUs on average during the run "
                  f"(load average at end {res['load_average_end']}); n_jobs=2 numbers "
                  "suffer most when that is high."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = _common.make_parser(__doc__, "3 epochs, MLP 1 epoch, 10,000-sample training subset (< 60 s)")
    parser.add_argument("--datasets", default="fmnist,prototypes",
                        help="comma list of fmnist, prototypes (default both)")
    parser.add_argument("--seeds", default="0",
                        help="comma list of run seeds (split shuffle and random_state); "
                             "mean ± std when several (the paper used 42..51)")
    parser.add_argument("--widths", default="525",
                        help="comma list of hidden widths K (two layers K_K); group size "
                             "from the paper's table (35->35, 135->45, 525->105, ...)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="LocalBinaryClassifier epochs (default 50, quick 3)")
    parser.add_argument("--mlp-epochs", type=int, default=None,
                        help="MLPClassifier epochs (default: same as --epochs, quick 1; "
                             "0 skips the MLP)")
    parser.add_argument("--train-subset", type=int, default=None,
                        help="use only the first n training samples (default: all; quick 10000)")
    parser.add_argument("--predict-repeats", type=int, default=3,
                        help="timed predict samples, best kept (default 3)")
    _common.add_split_argument(parser)
    args = parser.parse_args(argv)

    datasets = _common.parse_list(args.datasets)
    for d in datasets:
        if d not in FULL_TRAIN:
            parser.error(f"unknown data set {d!r}; choose from {', '.join(FULL_TRAIN)}")
    seeds = _common.parse_list(args.seeds, int)
    widths = _common.parse_list(args.widths, int)
    if args.epochs is None:
        args.epochs = 3 if args.quick else PAPER_EPOCHS
    if args.mlp_epochs is None:
        args.mlp_epochs = 1 if args.quick else args.epochs
    if args.train_subset is None and args.quick:
        args.train_subset = 10_000
    args.predict_min_time = 0.02 if args.quick else 0.2

    t_start = time.perf_counter()
    res = {"machine": _common.machine_info(), "quick": args.quick, "args": vars(args),
           "datasets": datasets, "seeds": seeds, "widths": widths, "runs": [], "skipped": {},
           "paper_accuracy": {k: {str(w): v for w, v in d.items()}
                              for k, d in PAPER_ACCURACY.items()},
           "targets": {"accuracy_width_525": TARGET_ACCURACY,
                       "s_per_epoch": TARGET_S_PER_EPOCH,
                       "speedup_vs_mlp": TARGET_SPEEDUP_VS_MLP,
                       "predict_samples_per_s": TARGET_PREDICT_RATE}}
    data_cache = {}
    with _common.blas_single_thread() as blas_note, _common.CpuMonitor() as mon:
        for name in datasets:
            for width in widths:
                for seed in seeds:
                    rec = run_one(name, width, seed, args, data_cache, blas_note)
                    if rec is None:
                        res["skipped"][name] = ("Fashion-MNIST files not found and not "
                                                "installable (apt-get install -y "
                                                "dataset-fashion-mnist)")
                        print(f"skipping {name}: data set not available", file=sys.stderr)
                        break
                    res["runs"].append(rec)
                if name in res["skipped"]:
                    break
    res["cpu_use_during_run"] = mon.as_dict()
    res["load_average_end"] = _common._load_average()
    res["summary"] = summarize(res["runs"])
    res["elapsed_s"] = time.perf_counter() - t_start

    md = render_markdown(res)
    out = os.path.abspath(args.out)
    _common.write_json(os.path.join(out, "local.json"), res)
    _common.write_markdown(os.path.join(out, "local.md"), md)
    print(md)
    print(f"wrote {os.path.join(out, 'local.json')} and local.md ({res['elapsed_s']:.1f} s)",
          file=sys.stderr)
    return res


if __name__ == "__main__":
    main()
