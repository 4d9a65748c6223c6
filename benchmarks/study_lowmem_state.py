#!/usr/bin/env python3
"""Where the low-memory step loses accuracy: float16 state against float32.

Trains LowMemBNNClassifier (784-256x4-10, Adam, batch 100, one thread) on
Fashion-MNIST with the recipe of bench_lowmem.py (40 epochs, best-validation
checkpoint on 10 % of the training part, plateau schedule with patience 5):

- the low-memory step with float16 state rounded to nearest (the paper's
  arithmetic) and stochastically (skbnn's default),
- the low-memory step with ``state_dtype='float32'`` (latent weights, Adam
  moments, batch-norm bias and running statistics in float32, everything else
  unchanged: the authors' Keras emulation),
- the standard step,

and reports held-out and official-test accuracy and the modelled memory.

    python3 benchmarks/study_lowmem_state.py            # about 6 minutes
    python3 benchmarks/study_lowmem_state.py --quick    # 2 epochs on 5,000 images

Writes ``<out>/lowmem_state.json`` and ``<out>/lowmem_state.md``.
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import sys  # noqa: E402
import time  # noqa: E402

import _common  # noqa: E402
from bench_lowmem import HIDDEN, scaled  # noqa: E402
from skbnn import LowMemBNNClassifier  # noqa: E402

VARIANTS = [("low_memory", {"rounding": "nearest"}), ("low_memory", {}),
            ("low_memory", {"state_dtype": "float32"}), ("standard", {})]


def main(argv=None):
    parser = _common.make_parser(__doc__, "2 epochs on 5,000 images")
    parser.add_argument("--epochs", type=int, default=None, help="default 40 (quick 2)")
    parser.add_argument("--lr-patience", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.epochs = args.epochs or (2 if args.quick else 40)
    data = _common.load_dataset("fmnist", args.seed, {})
    if data is None:
        return 1
    if args.quick:
        data = dict(data, X_train=data["X_train"][:5000], y_train=data["y_train"][:5000])
    X_tr, y_tr = scaled(data["X_train"]), data["y_train"]
    X_ho, X_te = scaled(data["X_heldout"]), scaled(data["X_test"])
    runs = []
    for training, extra in VARIANTS:
        clf = LowMemBNNClassifier(HIDDEN, training=training, max_iter=args.epochs,
                                  early_stopping=True, lr_patience=args.lr_patience,
                                  random_state=args.seed, **extra)
        t0 = time.perf_counter()
        clf.fit(X_tr, y_tr)
        runs.append({"training": training, "options": extra,
                     "heldout": float(clf.score(X_ho, data["y_heldout"])),
                     "test": float(clf.score(X_te, data["y_test"])),
                     "final_lr": clf.learning_rate_, "fit_s": time.perf_counter() - t0,
                     "model_mib": clf.memory_model_["total"]["mib"],
                     "state_mib": clf._state_bytes() / 2 ** 20})
        print(f"[{training} {extra}] held-out {100 * runs[-1]['heldout']:.2f} %",
              file=sys.stderr, flush=True)
    res = {"machine": _common.machine_info(), "args": vars(args), "runs": runs}
    out = _common.Path(args.out)
    _common.write_json(out / "lowmem_state.json", res)
    rows = [[r["training"], ", ".join(f"{k}={v!r}" for k, v in r["options"].items()) or
             "defaults", f"{100 * r['heldout']:.2f}", f"{100 * r['test']:.2f}",
             f"{r['final_lr']:.3g}", f"{r['state_mib']:.2f}", f"{r['model_mib']:.2f}"]
            for r in runs]
    md = "\n\n".join([
        f"# LowMemBNNClassifier: float16 state (nearest, stochastic) against float32"
        f"{' (quick run)' if args.quick else ''}",
        _common.machine_summary_md(res["machine"]),
        f"784-256x4-10, Adam, batch 100, {args.epochs} epochs, best-validation checkpoint "
        f"(10 %), plateau schedule (patience {args.lr_patience}), one thread; state MiB = "
        "the arrays held between calls, model MiB = the paper's accounting at batch 100.",
        _common.markdown_table(["training", "options", "held-out %", "test %", "final lr",
                                "state MiB", "model MiB"], rows, "llrrrrr")])
    _common.write_markdown(out / "lowmem_state.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
