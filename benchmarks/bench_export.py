#!/usr/bin/env python3
"""Sizes of models exported to C by ``skbnn.export_c``.

For the test-suite-sized models of ``tests/test_export.py`` (digits,
synthetic series) and a 784-525-525 LocalBinaryClassifier fitted on random
data (sizes do not depend on what it learned), it records:

* the const data of the export (``<PREFIX>_CONST_BYTES``: packed weights,
  thresholds, batch-norm constants, input thresholds, labels);
* the object size of ``<prefix>.c`` built by the host compiler with
  ``-Os -c`` (``size``: text + data, code included), when one exists;
* ``len(pickle.dumps(est))``, the Python model with its training state;
* the host time of one ``<prefix>_predict`` call (``-O2``), and that the C
  predictions equal ``predict`` on the samples timed.

    python3 benchmarks/bench_export.py --quick    # seconds; the sizes are the same

Writes ``<out>/export.json`` and ``<out>/export.md``, and prints the table.
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pickle  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import _common  # noqa: E402
from skbnn import (BEPClassifier, BEPRecurrentClassifier, LocalBinaryClassifier,  # noqa: E402
                   LowMemBNNClassifier, export_c)

CC = shutil.which("cc") or shutil.which("gcc")

DRIVER = r"""
#include <stdio.h>
#include <time.h>
#include "model.h"
static float xs[%(n)d][MODEL_N_INPUTS];
int main(void)
{
    FILE *f = fopen("x.bin", "rb");
    size_t i, n;
    int reps, r;
    volatile int sink = 0;
    clock_t t0;
    if (!f) return 2;
    n = fread(xs, sizeof(float) * MODEL_N_INPUTS, %(n)d, f);
    fclose(f);
    for (i = 0; i < n; i++) printf("%%d\n", model_predict(xs[i]));
    reps = %(reps)d;
    t0 = clock();
    for (r = 0; r < reps; r++)
        for (i = 0; i < n; i++) sink += model_predict(xs[i]);
    fprintf(stderr, "%%.9g\n", (double)(clock() - t0) / CLOCKS_PER_SEC / (double)(reps * n));
    return sink == -1;
}
"""


def models(quick):
    """(name, description, estimator, X, y) of every exported model."""
    epochs = 3 if quick else 10
    Xd, yd = load_digits(return_X_y=True)
    Xd = Xd.astype(np.float32)
    rng = np.random.default_rng(0)
    n, C, T = 600, 2, 12
    ys = rng.integers(0, 3, n)
    Xs = rng.normal(size=(n, C, T)).astype(np.float32)
    Xs[:, 0, :] += (ys[:, None] - 1) * np.linspace(0, 1, T, dtype=np.float32)
    Xr = rng.random((1000, 784), dtype=np.float32)
    yr = rng.integers(0, 10, 1000)
    return [
        ("local 64-35-35-10", "LocalBinaryClassifier((35, 35)), digits",
         LocalBinaryClassifier((35, 35), max_iter=epochs, random_state=0), Xd, yd),
        ("bep 64-45-45-10", "BEPClassifier((45, 45)), digits",
         BEPClassifier((45, 45), max_iter=epochs, random_state=0), Xd, yd),
        ("bep-rnn 2x12, Ks=Ky=Kx=45", "BEPRecurrentClassifier(45, 45, 45), synthetic series",
         BEPRecurrentClassifier(state_size=45, output_size=45, expansion_size=45,
                                group_size=15, max_iter=epochs, random_state=0), Xs, ys),
        ("lowmem 64-64-32-10 (real input)", "LowMemBNNClassifier((64, 32)), digits / 8 - 1",
         LowMemBNNClassifier((64, 32), max_iter=epochs, random_state=0), Xd / 8 - 1, yd),
        ("lowmem 64-64-32-10 (thermometer)",
         "LowMemBNNClassifier((64, 32), binarize_input='auto'), digits",
         LowMemBNNClassifier((64, 32), binarize_input="auto", max_iter=epochs,
                             random_state=0), Xd, yd),
        ("local 784-525-525-10", "LocalBinaryClassifier((525, 525)), random 784-d data",
         LocalBinaryClassifier((525, 525), max_iter=1, random_state=0), Xr, yr),
    ]


def object_bytes(source, work):
    """text + data of the object built with ``-Os -c`` (None without a compiler)."""
    if CC is None or shutil.which("size") is None:
        return None
    obj = work / "model_os.o"
    subprocess.run([CC, "-std=c99", "-Os", "-c", str(source), "-o", str(obj)], check=True)
    out = subprocess.run(["size", str(obj)], check=True, capture_output=True, text=True).stdout
    text, data = (int(v) for v in out.splitlines()[1].split()[:2])
    return text + data


def host_predict(est, X, work, quick):
    """(seconds per predict call, C predictions equal predict) on the host."""
    if CC is None:
        return None, None
    n = min(len(X), 500)
    Xn = np.ascontiguousarray(X[:n], dtype=np.float32)
    Xn.tofile(work / "x.bin")
    reps = 2 if quick else 20
    (work / "driver.c").write_text(DRIVER % {"n": n, "reps": reps})
    exe = work / "run"
    subprocess.run([CC, "-std=c99", "-O2", "-I", str(work), "-o", str(exe),
                    str(work / "driver.c"), str(work / "model.c")], check=True)
    res = subprocess.run([str(exe)], cwd=work, check=True, capture_output=True, text=True)
    got = np.array(res.stdout.split(), dtype=int)
    expected = np.searchsorted(est.classes_, est.predict(Xn))
    return float(res.stderr.strip()), bool(np.array_equal(got, expected))


def main(argv=None):
    parser = _common.make_parser(__doc__, "smaller training runs (the sizes are the same)")
    args = parser.parse_args(argv)
    info = _common.machine_info()
    rows, raw = [], []
    for name, what, est, X, y in models(args.quick):
        est.fit(X, y)
        with tempfile.TemporaryDirectory() as d:
            work = Path(d)
            header, source = export_c(est, work, prefix="model")
            const = int(re.search(r"MODEL_CONST_BYTES (\d+)", Path(header).read_text())[1])
            obj = object_bytes(source, work)
            seconds, equal = host_predict(est, X, work, args.quick)
        pickled = len(pickle.dumps(est))
        raw.append({"model": name, "estimator": what, "const_bytes": const,
                    "object_bytes_Os": obj, "pickle_bytes": pickled,
                    "predict_seconds": seconds, "c_equals_predict": equal})
        rows.append([name, f"{const:,}", "-" if obj is None else f"{obj:,}", f"{pickled:,}",
                     f"{pickled / const:.0f}x",
                     "-" if seconds is None else f"{seconds * 1e6:.1f}",
                     "-" if equal is None else ("yes" if equal else "NO")])
        print(rows[-1], flush=True)
    table = _common.markdown_table(
        ["model", "C const data (B)", "object -Os (B)", "pickle (B)", "pickle / const",
         "host us / predict", "C == predict"], rows)
    text = "\n".join([
        "# export_c: exported sizes", "",
        "C const data: the `<PREFIX>_CONST_BYTES` of the generated header (packed weights, "
        "folded thresholds, batch-norm constants, input thresholds, class labels). Object: "
        f"`{CC or 'cc'} -std=c99 -Os -c` of the generated source on the host, text + data "
        "(code included). Pickle: `len(pickle.dumps(est))` of the fitted estimator (with "
        "its training state: int16 hidden weights, latent weights and optimiser moments). "
        "Host time: one `predict` call of the `-O2` build, single sample, this machine "
        "(shared, busy: indicative only).", "",
        table, "", "## Machine", "", _common.machine_summary_md(info), ""])
    out = Path(args.out)
    _common.write_json(out / "export.json", {"machine": info, "results": raw,
                                             "quick": args.quick})
    _common.write_markdown(out / "export.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
