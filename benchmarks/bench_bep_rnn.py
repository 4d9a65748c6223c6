#!/usr/bin/env python3
"""BEPRecurrentClassifier against the BEP paper's recurrent results (Table 1, Figs. 3 and 8).

1. **UCR targets** (paper Table 1 protocol): ItalyPowerDemand and
   JapaneseVowels from aeon's bundled copies (``pip install 'skbnn[timeseries]'``;
   skipped without aeon), official train and test sets merged, stratified
   3-fold cross-validation x 3 runs (run r: folds shuffled with seed r, model
   seed r), test accuracy of every fold.  The paper's setting: Ks = Ky =
   Kx = 1035, r = 0.5, p_r = 0.5, gamma0 = 15, nu = 0.05, 50 epochs, batch
   N/10, the last window of each series.  As the paper did, the window
   length and the thermometer bits are tuned per data set -- here per outer
   fold, on a stratified 25 % validation split of that fold's *training
   part* (the test fold is never seen), over the grid ``WINDOWS x BITS``;
   the chosen setting is then refitted on the whole training part.
2. **Sequential Fashion-MNIST** (image rows as 28 time steps of 28 pixels,
   one global median): accuracy on the official test set against the
   backward horizon 2 / 4 / 8 / 28, like the paper's S-MNIST ablation
   (Fig. 8).
3. **Time per epoch** of every fit, single-threaded, and, when torch is
   installed, the same models (same encoded inputs, widths and prototypes)
   trained by a PyTorch straight-through binary RNN (``_torch_rnn.py``) in
   the same run -- on the first fold of each UCR data set and on S-FMNIST.
4. **Plots**: accuracy vs backward horizon (S-FMNIST) and validation
   accuracy vs thermometer bits (from the UCR tuning grid, best window per
   bits value: the paper's Table 3).

    /tmp/aeonenv/bin/python benchmarks/bench_bep_rnn.py            # full, ~30 min on 2 cores
    /tmp/aeonenv/bin/python benchmarks/bench_bep_rnn.py --quick    # a few minutes

Writes ``<out>/bep_rnn.json``, ``<out>/bep_rnn.md`` and ``<out>/bep_rnn.png``
(copied to ``docs/images/bep_rnn.png``).  Timings are wall-clock on a shared
machine: noisy.
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from sklearn.model_selection import StratifiedKFold, train_test_split  # noqa: E402

import _common  # noqa: E402
from _torch_rnn import torch_available, train_torch_rnn  # noqa: E402
from skbnn import BEPRecurrentClassifier, _kernels  # noqa: E402

# paper Table 1 (test %, mean ± std): BEP, QAT without BN, QAT with BN
PAPER = {"ItalyPowerDemand": (94.65, 1.22, 83.18, 96.23),
         "JapaneseVowels": (95.47, 1.24, 84.06, 96.25)}
# tuning grid: the paper tuned the window length and the thermometer bits per data
# set (Table 3 lists bits 1, 10, 20, 50, 100); windows: the whole day / its last
# half for ItalyPowerDemand (24 steps), the last 8 / 16 frames for JapaneseVowels
# (7-29 frames, shorter series front-padded)
WINDOWS = {"ItalyPowerDemand": (12, 24), "JapaneseVowels": (8, 16)}
BITS = (1, 10, 20, 50, 100)
PAPER_SMNIST_HORIZON = {2: 54.5, 4: 66.8, 8: 72.9, 28: 92.9}  # Fig. 8 (digitised, S-MNIST)
PAPER_TABLE3_IPD = {1: 73.54, 10: 94.65, 20: 94.59, 50: 94.34, 100: 93.92}


def load_ucr(name):
    """Train and test merged, or None without aeon."""
    try:
        from aeon import datasets
    except ImportError:
        print("aeon missing: no UCR runs (pip install 'skbnn[timeseries]')", file=sys.stderr)
        return None
    loader = {"ItalyPowerDemand": datasets.load_italy_power_demand,
              "JapaneseVowels": datasets.load_japanese_vowels}[name]
    X1, y1 = loader(split="train")
    X2, y2 = loader(split="test")
    if isinstance(X1, np.ndarray) and isinstance(X2, np.ndarray):
        X = np.concatenate([X1, X2])
    else:  # unequal length: a list of (n_channels, n_timepoints_i) arrays
        X = list(X1) + list(X2)
    return X, np.concatenate([y1, y2])


def take(X, idx):
    return X[idx] if isinstance(X, np.ndarray) else [X[i] for i in idx]


def ucr_params(args, seed, window, bits):
    return dict(window_length=window, n_thermometer_bits=bits, max_iter=args.ucr_epochs,
                random_state=seed)


def fit_score(est, X_tr, y_tr, evals):
    t0 = time.perf_counter()
    c0 = time.process_time()
    est.fit(X_tr, y_tr)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"fit_s": wall, "s_per_epoch": wall / est.n_iter_, "cpu_s_per_epoch": cpu / est.n_iter_,
            "n_iter": int(est.n_iter_), "scores": [float(est.score(X, y)) for X, y in evals]}


def encoded_pm1(est, X):
    """The BEP model's own encoded inputs as +/-1 float32 (n, T, Kx)."""
    A = est.binarizer_.pack(np.asarray(est._flatten_series(X, reset=False)))
    n, T, w = A.shape
    bits = _kernels.unpack_pm1(A.reshape(n * T, w), est.binarizer_.n_output_bits_)
    return bits.reshape(n, T, -1).astype(np.float32)


def torch_peer(est, X_tr, y_tr, evals, epochs, batch_size, seed):
    """The same model (inputs, widths, prototypes) trained by the STE binary RNN."""
    idx = {c: i for i, c in enumerate(est.classes_)}
    y_idx = np.array([idx[v] for v in y_tr])
    res = train_torch_rnn(encoded_pm1(est, X_tr), y_idx,
                          [(encoded_pm1(est, X), np.array([idx[v] for v in y]))
                           for X, y in evals],
                          est.state_size, est.output_size, est.prototypes_,
                          batch_size=batch_size, epochs=epochs, seed=seed)
    res["s_per_epoch_median"] = float(np.median(res["s_per_epoch"]))
    return res


def run_ucr(name, args, use_torch):
    data = load_ucr(name)
    if data is None:
        return None
    X, y = data
    grid = [(w, b) for w in WINDOWS[name] for b in args.bits]
    folds = []
    for run in range(args.runs):
        skf = StratifiedKFold(args.folds, shuffle=True, random_state=run)
        for fold, (tr, te) in enumerate(skf.split(np.zeros(len(y)), y)):
            X_tr, y_tr, X_te, y_te = take(X, tr), y[tr], take(X, te), y[te]
            # tuning on the training part only (a stratified 25 % validation split)
            fit_i, val_i = train_test_split(np.arange(len(tr)), test_size=0.25, stratify=y_tr,
                                            random_state=100 * run + fold)
            tuning = []
            for window, bits in grid:
                rec = fit_score(BEPRecurrentClassifier(**ucr_params(args, run, window, bits)),
                                take(X_tr, fit_i), y_tr[fit_i], [(take(X_tr, val_i), y_tr[val_i])])
                tuning.append({"window_length": window, "n_thermometer_bits": bits,
                               "validation_accuracy": rec["scores"][0],
                               "s_per_epoch": rec["s_per_epoch"]})
            best = max(tuning, key=lambda r: r["validation_accuracy"])  # ties: first in grid
            est = BEPRecurrentClassifier(**ucr_params(args, run, best["window_length"],
                                                      best["n_thermometer_bits"]))
            final = fit_score(est, X_tr, y_tr, [(X_te, y_te)])
            rec = {"run": run, "fold": fold, "n_train": len(tr), "n_test": len(te),
                   "window_length": best["window_length"],
                   "n_thermometer_bits": best["n_thermometer_bits"],
                   "test_accuracy": final["scores"][0], "s_per_epoch": final["s_per_epoch"],
                   "cpu_s_per_epoch": final["cpu_s_per_epoch"], "tuning": tuning}
            if use_torch and run == 0 and fold == 0:
                rec["torch"] = torch_peer(est, X_tr, y_tr, [(X_te, y_te)], args.torch_epochs,
                                          est._batch_size_for(len(tr)), run)
                rec["torch"]["test_accuracy"] = rec["torch"]["accuracies"][0]
            folds.append(rec)
            print(f"[{name} run {run} fold {fold}] window {rec['window_length']}, "
                  f"{rec['n_thermometer_bits']} bits: test {100 * rec['test_accuracy']:.2f} % "
                  f"({rec['s_per_epoch']:.3f} s/epoch)"
                  + (f"; torch STE {100 * rec['torch']['test_accuracy']:.2f} % "
                     f"({rec['torch']['s_per_epoch_median']:.3f} s/epoch)"
                     if "torch" in rec else ""), file=sys.stderr, flush=True)
    acc = _common.stats([r["test_accuracy"] for r in folds])
    target = PAPER[name][0]
    return {"dataset": name, "n_series": len(y), "folds": folds, "test_accuracy": acc,
            "s_per_epoch": _common.stats([r["s_per_epoch"] for r in folds]),
            "target": target, "status": "PASS" if 100 * acc["mean"] >= target else "FAIL",
            "bits_curve": bits_curve(folds, args.bits)}


def bits_curve(folds, bits_values):
    """Mean over folds of the best validation accuracy over windows, per bits."""
    out = {}
    for b in bits_values:
        per_fold = [max(t["validation_accuracy"] for t in r["tuning"]
                        if t["n_thermometer_bits"] == b) for r in folds]
        out[b] = _common.stats(per_fold)
    return out


def sfmnist(args, use_torch):
    data = _common.load_fmnist()
    if data is None:
        return None
    n = min(args.sfmnist_train, len(data.y_train))
    perm = np.random.default_rng(0).permutation(len(data.y_train))[:n]

    def rows(X):  # (n, 784) -> (n, 28 channels = columns, 28 steps = rows)
        return X.reshape(-1, 28, 28).transpose(0, 2, 1)

    X_tr, y_tr = rows(data.X_train[perm]), data.y_train[perm]
    X_te, y_te = rows(data.X_test), data.y_test
    k = args.sfmnist_size
    out = {"n_train": n, "n_test": len(y_te), "epochs": args.sfmnist_epochs, "horizons": []}
    est = None
    for h in args.horizons:
        params = dict(state_size=k, output_size=k, expansion_size=args.sfmnist_expansion,
                      backward_horizon=h, binarize_input="global_median", batch_size=100,
                      gate_threshold=args.sfmnist_gate, max_iter=args.sfmnist_epochs,
                      random_state=0)
        est = BEPRecurrentClassifier(**params)
        rec = fit_score(est, X_tr, y_tr, [(X_te, y_te)])
        rec.update(horizon=h, params=params, test_accuracy=rec["scores"][0],
                   loss_curve=list(est.loss_curve_), group_sizes=list(est.group_sizes_))
        out["horizons"].append(rec)
        print(f"[S-FMNIST horizon {h}] test {100 * rec['test_accuracy']:.2f} % "
              f"({rec['s_per_epoch']:.2f} s/epoch)", file=sys.stderr, flush=True)
    if use_torch and est is not None:  # the full-horizon model (autograd is full BPTT)
        res = torch_peer(est, X_tr, y_tr, [(X_te, y_te)], args.sfmnist_epochs, 100, 0)
        res["test_accuracy"] = res["accuracies"][0]
        out["torch"] = res
        print(f"[S-FMNIST torch STE] test {100 * res['test_accuracy']:.2f} % "
              f"({res['s_per_epoch_median']:.2f} s/epoch)", file=sys.stderr, flush=True)
    return out


def plot(res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    sf = res.get("sfmnist")
    if sf:
        hs = [r["horizon"] for r in sf["horizons"]]
        ax.plot(hs, [100 * r["test_accuracy"] for r in sf["horizons"]], "o-", color="C0",
                label=f"S-FMNIST, skbnn (K = {res['args']['sfmnist_size']}, "
                      f"{sf['epochs']} epochs)")
        if sf.get("torch"):
            ax.axhline(100 * sf["torch"]["test_accuracy"], color="C2", ls="--",
                       label="S-FMNIST, torch STE (full BPTT)")
    ph = sorted(PAPER_SMNIST_HORIZON)
    ax.plot(ph, [PAPER_SMNIST_HORIZON[h] for h in ph], "s:", color="C1", alpha=0.6,
            label="S-MNIST, paper Fig. 8")
    ax.set_xscale("log", base=2)
    ax.set_xticks([2, 4, 8, 28], labels=["2", "4", "8", "28"])
    ax.set_xlabel("backward horizon (time steps)")
    ax.set_ylabel("test accuracy %")
    ax.set_title("Accuracy vs backward horizon")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1]
    for i, u in enumerate(res.get("ucr", [])):
        bs = sorted(u["bits_curve"])
        ax.plot(bs, [100 * u["bits_curve"][b]["mean"] for b in bs], "o-", color=f"C{i}",
                label=f"{u['dataset']}, skbnn (validation)")
    pb = sorted(PAPER_TABLE3_IPD)
    ax.plot(pb, [PAPER_TABLE3_IPD[b] for b in pb], "s:", color="C0", alpha=0.6,
            label="ItalyPowerDemand, paper Table 3")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xticks(pb, labels=[str(b) for b in pb])
    ax.set_xlabel("thermometer bits per channel")
    ax.set_ylabel("validation accuracy %")
    ax.set_title("Accuracy vs thermometer bits")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def _pm(st, scale=100, digits=2):
    if st is None:
        return "—"
    s = f"{scale * st['mean']:.{digits}f}"
    return s + (f" ± {scale * st['std']:.{digits}f}" if st["n"] > 1 else "")


def render_markdown(res):
    a = res["args"]
    lines = [f"# BEPRecurrentClassifier benchmark{' (quick run)' if res['quick'] else ''}", "",
             _common.machine_summary_md(res["machine"]), "",
             "Single-threaded (`n_jobs=None`, torch 1 thread); timings are wall-clock on a "
             "shared 2-core machine, so noisy.", ""]
    if res.get("ucr"):
        grids = ", ".join(f"{u['dataset']} {list(WINDOWS[u['dataset']])}" for u in res["ucr"])
        lines += ["## UCR targets (paper Table 1 protocol)", "",
                  f"Train + test merged, stratified {a['folds']}-fold CV × {a['runs']} runs, "
                  f"test accuracy %, mean ± std over the {a['folds'] * a['runs']} folds. "
                  "BEPRecurrentClassifier defaults (Ks = Ky = Kx = 1035, r = 0.5, p_r = 0.5, "
                  f"γ0 = 15, ν = 0.05, batch N/10, {a['ucr_epochs']} epochs); window length "
                  "and thermometer bits tuned per fold on a stratified 25 % validation split "
                  "of the training part only, grid windows × bits "
                  f"{grids} × {list(a['bits'])}.", ""]
        rows = []
        for u in res["ucr"]:
            p = PAPER[u["dataset"]]
            tr = [r for r in u["folds"] if "torch" in r]
            torch_txt = (f"{100 * tr[0]['torch']['test_accuracy']:.2f} (fold 1; "
                         f"{tr[0]['torch']['s_per_epoch_median']:.3f} s/epoch, BEP same fold "
                         f"{100 * tr[0]['test_accuracy']:.2f})" if tr else "—")
            rows.append([u["dataset"], u["n_series"], _pm(u["test_accuracy"]),
                         f"{p[0]} ± {p[1]}", f"≥ {u['target']}", u["status"], p[2], p[3],
                         f"{u['s_per_epoch']['mean']:.3f}", torch_txt])
        lines.append(_common.markdown_table(
            ["data set", "series", "BEP-TT skbnn %", "paper BEP %", "target", "status",
             "paper QAT w/o BN", "paper QAT w/ BN", "s/epoch", "torch STE binary RNN %"],
            rows, align="lrrrrlrrrl"))
        lines += ["", "Chosen (window, bits) per fold: " + "; ".join(
            f"{u['dataset']}: " + ", ".join(f"({r['window_length']}, {r['n_thermometer_bits']})"
                                            for r in u["folds"]) for u in res["ucr"]), ""]
        lines += ["### Validation accuracy vs thermometer bits (best window per value)", ""]
        rows = []
        for u in res["ucr"]:
            rows.append([u["dataset"]] + [_pm(u["bits_curve"][b]) for b in a["bits"]])
        rows.append(["ItalyPowerDemand, paper Table 3"]
                    + [str(PAPER_TABLE3_IPD.get(b, "—")) for b in a["bits"]])
        lines.append(_common.markdown_table(["data set"] + [f"{b} bits" for b in a["bits"]],
                                            rows))
        lines.append("")
    sf = res.get("sfmnist")
    if sf:
        lines += ["## Sequential Fashion-MNIST: accuracy vs backward horizon", "",
                  f"Rows as 28 time steps of 28 pixels (one global median), {sf['n_train']} "
                  f"training images (a fixed random subset of the 60k), the official "
                  f"{sf['n_test']} test images; Ks = Ky = {a['sfmnist_size']}, Kx = "
                  f"{a['sfmnist_expansion']}, ν = {a['sfmnist_gate']}, batch 100, "
                  f"{sf['epochs']} epochs, seed 0. The paper's Fig. 8 is S-MNIST (MNIST, "
                  "Ks = 1875, 50 epochs): its numbers show the trend, not a target.", ""]
        rows = [[r["horizon"], f"{100 * r['test_accuracy']:.2f}",
                 PAPER_SMNIST_HORIZON.get(r["horizon"], "—"), f"{r['s_per_epoch']:.2f}"]
                for r in sf["horizons"]]
        lines.append(_common.markdown_table(
            ["backward horizon", "test %", "paper S-MNIST %", "s/epoch"], rows))
        if sf.get("torch"):
            t = sf["torch"]
            lines += ["", f"PyTorch STE binary RNN, same model, full BPTT, {sf['epochs']} "
                      f"epochs: {100 * t['test_accuracy']:.2f} % test, "
                      f"{t['s_per_epoch_median']:.2f} s/epoch (torch {t['torch_version']}, "
                      f"{t['n_threads']} thread)."]
        lines.append("")
    if res.get("plot"):
        lines += [f"![accuracy vs backward horizon and thermometer bits]"
                  f"({os.path.basename(res['plot'])})", ""]
    lines += [f"Total wall time {res['wall_s'] / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = _common.make_parser(__doc__, "1 run x 3 folds, 10 epochs, bits 10 and 20, "
                                          "S-FMNIST 3000 images x 3 epochs")
    parser.add_argument("--datasets", default="ItalyPowerDemand,JapaneseVowels")
    parser.add_argument("--runs", type=int, default=None, help="default 3 (quick 1)")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--ucr-epochs", type=int, default=None, help="default 50 (quick 10)")
    parser.add_argument("--bits", default=None, help="default 1,10,20,50,100 (quick 10,20)")
    parser.add_argument("--no-sfmnist", action="store_true")
    parser.add_argument("--sfmnist-train", type=int, default=None,
                        help="training images (default 20000, quick 3000)")
    parser.add_argument("--sfmnist-epochs", type=int, default=None, help="default 20 (quick 3)")
    parser.add_argument("--sfmnist-size", type=int, default=525, help="Ks = Ky")
    parser.add_argument("--sfmnist-expansion", type=int, default=512, help="Kx")
    parser.add_argument("--sfmnist-gate", type=float, default=0.05)
    parser.add_argument("--horizons", default="2,4,8,28")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--torch-epochs", type=int, default=None,
                        help="epochs of the UCR torch peer (default: --ucr-epochs)")
    parser.add_argument("--docs-images", default=str(_common.REPO_ROOT / "docs" / "images"),
                        help="where the PNG is copied ('' = nowhere)")
    args = parser.parse_args(argv)
    q = args.quick
    args.runs = args.runs or (1 if q else 3)
    args.ucr_epochs = args.ucr_epochs or (10 if q else 50)
    args.torch_epochs = args.torch_epochs or args.ucr_epochs
    args.bits = _common.parse_list(args.bits or ("10,20" if q else ",".join(map(str, BITS))),
                                   int)
    args.sfmnist_train = args.sfmnist_train or (3000 if q else 20000)
    args.sfmnist_epochs = args.sfmnist_epochs or (3 if q else 20)
    args.horizons = _common.parse_list(args.horizons, int)
    use_torch = not args.no_torch and torch_available()
    if not args.no_torch and not use_torch:
        print("torch missing: no STE comparison", file=sys.stderr)

    res = {"machine": _common.machine_info(), "quick": q, "args": vars(args),
           "torch": use_torch, "ucr": []}
    t0 = time.perf_counter()
    for name in _common.parse_list(args.datasets):
        u = run_ucr(name, args, use_torch)
        if u is not None:
            res["ucr"].append(u)
    if not args.no_sfmnist:
        res["sfmnist"] = sfmnist(args, use_torch)
    res["wall_s"] = time.perf_counter() - t0
    os.makedirs(args.out, exist_ok=True)
    try:
        res["plot"] = plot(res, os.path.join(args.out, "bep_rnn.png"))
        if args.docs_images:
            os.makedirs(args.docs_images, exist_ok=True)
            shutil.copy(res["plot"], os.path.join(args.docs_images, "bep_rnn.png"))
    except ImportError:
        res["plot"] = None
        print("matplotlib missing: no plot (pip install -e '.[benchmarks]')", file=sys.stderr)
    md = render_markdown(res)
    _common.write_json(os.path.join(args.out, "bep_rnn.json"), res)
    _common.write_markdown(os.path.join(args.out, "bep_rnn.md"), md)
    print(md)


if __name__ == "__main__":
    main()
