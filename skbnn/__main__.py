"""Main job: ``python -m skbnn`` trains every skbnn classifier
(LocalBinaryClassifier, BEPClassifier) on an embedded default data set and
reports accuracy, fit time, predict throughput, model size and kernel path.

Fashion-MNIST is used when its files are installed (Debian package
``dataset-fashion-mnist``); otherwise scikit-learn's bundled digits.
"""
import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from . import BEPClassifier, LocalBinaryClassifier, get_config
from .datasets import load_fashion_mnist


def load_default(name):
    """Train/test split of the chosen data set and its binarisation."""
    if name in ("auto", "fmnist"):
        try:
            data = load_fashion_mnist()
            return ("Fashion-MNIST (official 60k/10k split)", data.X_train, data.y_train,
                    data.X_test, data.y_test, "global_median", (525, 525))
        except FileNotFoundError as exc:
            if name == "fmnist":
                raise SystemExit(str(exc)) from None
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    return "digits (scikit-learn, 75/25 split)", X_tr, y_tr, X_te, y_te, "auto", (525, 525)


def model_bytes(clf):
    """Bytes of what inference needs: packed weights, the readout bits (last
    local classifier or prototypes) and the input thresholds."""
    packed = sum(w.nbytes for w in clf.packed_weights_)
    readout = clf.classifiers_[-1] if hasattr(clf, "classifiers_") else clf.prototypes_
    return packed + (readout.size + 7) // 8 + clf.binarizer_thresholds_.nbytes


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m skbnn", description=__doc__)
    parser.add_argument("--dataset", choices=["auto", "digits", "fmnist"], default="auto")
    parser.add_argument("--max-iter", type=int, default=None,
                        help="epochs (default: 50 on digits, 20 on Fashion-MNIST)")
    parser.add_argument("--n-jobs", type=int, default=None)
    parser.add_argument("--random-state", type=int, default=0)
    args = parser.parse_args(argv)

    name, X_tr, y_tr, X_te, y_te, binarize, sizes = load_default(args.dataset)
    epochs = args.max_iter or (20 if name.startswith("Fashion") else 50)
    cfg = get_config()
    print(f"data set        : {name}: {len(X_tr)} train / {len(X_te)} test, "
          f"{X_tr.shape[1]} features, binarize_input={binarize!r}")
    print(f"kernel path     : {cfg['kernel_path']} (OpenMP {'on' if cfg['openmp'] else 'off'})")
    common = dict(hidden_layer_sizes=sizes, binarize_input=binarize, max_iter=epochs,
                  random_state=args.random_state, n_jobs=args.n_jobs)
    for clf in (LocalBinaryClassifier(**common), BEPClassifier(**common)):
        tic = time.perf_counter()
        clf.fit(X_tr, y_tr)
        fit_s = time.perf_counter() - tic
        accuracy = float(np.mean(clf.predict(X_te) == y_te))
        tic = time.perf_counter()  # a second, warm call for the throughput
        clf.predict(X_te)
        predict_s = time.perf_counter() - tic
        print(f"\n{type(clf).__name__} {'-'.join(map(str, sizes))}, {epochs} epochs, "
              f"group sizes {clf.group_sizes_}, threads {clf._n_threads}")
        print(f"  test accuracy : {accuracy:.4f}")
        print(f"  fit time      : {fit_s:.2f} s ({fit_s / clf.n_iter_:.3f} s/epoch)")
        print(f"  predict       : {len(X_te) / predict_s:,.0f} samples/s")
        print(f"  model size    : {model_bytes(clf):,} bytes packed for inference "
              f"(training state: {sum(h.nbytes for h in clf.hidden_weights_):,} bytes int16)")


if __name__ == "__main__":
    main()
