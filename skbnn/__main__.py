"""Main job: ``python -m skbnn`` trains every skbnn classifier
(LocalBinaryClassifier, BEPClassifier, LowMemBNNClassifier) on an embedded
default data set and reports accuracy, fit time, predict throughput, model
size, the measured training memory of LowMemBNNClassifier and the kernel
path.

Fashion-MNIST is used when its files are installed (Debian package
``dataset-fashion-mnist``); otherwise scikit-learn's bundled digits.
"""
import argparse
import sys
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from . import BEPClassifier, LocalBinaryClassifier, LowMemBNNClassifier, get_config
from .datasets import load_fashion_mnist


def load_default(name):
    """Train/test split of the chosen data set, its binarisation for the
    CP+R estimators and the scale that maps it to [-1, 1] for LowMem."""
    if name in ("auto", "fmnist"):
        try:
            data = load_fashion_mnist()
            return ("Fashion-MNIST (official 60k/10k split)", data.X_train, data.y_train,
                    data.X_test, data.y_test, "global_median", (525, 525), 127.5)
        except FileNotFoundError as exc:
            if name == "fmnist":
                raise SystemExit(str(exc)) from None
            print("Fashion-MNIST is not installed, so this demo uses scikit-learn's digits. "
                  "For Fashion-MNIST: `apt-get install -y dataset-fashion-mnist` (Debian; the "
                  "IDX files go to /usr/share/datasets/fashion-mnist/), then run this again.",
                  file=sys.stderr)
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    return ("digits (scikit-learn, 75/25 split)", X_tr, y_tr, X_te, y_te, "auto", (525, 525),
            8.0)


def model_bytes(clf):
    """Bytes of what inference needs: packed weights, then the readout bits
    (last local classifier or prototypes) and the input thresholds, or the
    batch-norm bias and running statistics."""
    packed = sum(w.nbytes for w in clf.packed_weights_)
    if isinstance(clf, LowMemBNNClassifier):
        return packed + sum(a.nbytes for arrays in (clf.bn_bias_, clf.bn_running_mean_,
                                                    clf.bn_running_scale_) for a in arrays)
    readout = clf.classifiers_[-1] if hasattr(clf, "classifiers_") else clf.prototypes_
    return packed + (readout.size + 7) // 8 + clf.binarizer_thresholds_.nbytes


def training_state_text(clf):
    if isinstance(clf, LowMemBNNClassifier):
        return f"{clf._state_bytes():,} bytes ({clf.training}, {clf.solver})"
    return f"{sum(h.nbytes for h in clf.hidden_weights_):,} bytes int16"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m skbnn", description=__doc__)
    parser.add_argument("--dataset", choices=["auto", "digits", "fmnist"], default="auto")
    parser.add_argument("--max-iter", type=int, default=None,
                        help="epochs (default: 50 on digits, 20 on Fashion-MNIST)")
    parser.add_argument("--n-jobs", type=int, default=None)
    parser.add_argument("--random-state", type=int, default=0)
    args = parser.parse_args(argv)

    name, X_tr, y_tr, X_te, y_te, binarize, sizes, scale = load_default(args.dataset)
    epochs = args.max_iter or (20 if name.startswith("Fashion") else 50)
    cfg = get_config()
    print(f"data set        : {name}: {len(X_tr)} train / {len(X_te)} test, "
          f"{X_tr.shape[1]} features, binarize_input={binarize!r} (CP+R estimators)")
    print(f"kernel path     : {cfg['kernel_path']} (OpenMP {'on' if cfg['openmp'] else 'off'})")
    common = dict(max_iter=epochs, random_state=args.random_state, n_jobs=args.n_jobs)
    # LowMem reads real values in [-1, 1] (float32: no converted copy inside)
    real = [(np.asarray(X, np.float32) / np.float32(scale) - np.float32(1)) for X in (X_tr, X_te)]
    runs = [(LocalBinaryClassifier(hidden_layer_sizes=sizes, binarize_input=binarize, **common),
             X_tr, X_te),
            (BEPClassifier(hidden_layer_sizes=sizes, binarize_input=binarize, **common),
             X_tr, X_te),
            (LowMemBNNClassifier(**common), *real)]
    for clf, A_tr, A_te in runs:
        tic = time.perf_counter()
        clf.fit(A_tr, y_tr)
        fit_s = time.perf_counter() - tic
        accuracy = float(np.mean(clf.predict(A_te) == y_te))
        tic = time.perf_counter()  # a second, warm call for the throughput
        clf.predict(A_te)
        predict_s = time.perf_counter() - tic
        shape = "-".join(map(str, clf.hidden_layer_sizes))
        detail = (f"group sizes {clf.group_sizes_}" if hasattr(clf, "group_sizes_")
                  else f"{clf.training} step, {clf.solver}, batch {clf._batch_size_for(10**9)}")
        print(f"\n{type(clf).__name__} {shape}, {epochs} epochs, {detail}, "
              f"threads {clf._n_threads}")
        print(f"  test accuracy : {accuracy:.4f}")
        print(f"  fit time      : {fit_s:.2f} s ({fit_s / clf.n_iter_:.3f} s/epoch)")
        print(f"  predict       : {len(A_te) / predict_s:,.0f} samples/s")
        print(f"  model size    : {model_bytes(clf):,} bytes packed for inference "
              f"(training state: {training_state_text(clf)})")
        if isinstance(clf, LowMemBNNClassifier):
            # one more streaming step, measured: state + peak transient
            clf.set_params(measure_memory=True).partial_fit(A_tr[:100], y_tr[:100])
            m = clf.memory_measured_
            print(f"  train memory  : {m['peak_bytes'] / 2**20:.3f} MiB measured for a "
                  f"partial_fit step of 100 samples (state {m['persistent_before_bytes'] / 2**20:.3f}"
                  f" + transient {m['transient_peak_bytes'] / 2**20:.3f} MiB; the paper's "
                  f"model: {clf.memory_model_['total']['mib']:.2f} MiB)")


if __name__ == "__main__":
    main()
