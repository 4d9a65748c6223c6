#!/usr/bin/env python3
"""Data-parallel CP+R training on dask workers against ordinary fit.

Starts a ``distributed.LocalCluster`` (2 worker processes, 1 thread each, on
loopback) and, for each estimator and model (LocalBinaryClassifier and
BEPClassifier, two hidden layers of width K) and per-worker batch b, times
in the same run:

- ``fit`` with ``batch_size = 2 b`` on one thread (the reference),
- ``fit`` with ``batch_size = 2 b`` on two OpenMP threads (``n_jobs=2``),
- ``skbnn.distributed.fit_data_parallel`` on the 2 workers with
  ``batch_size = b`` (same model as the reference, checked bit for bit),
- the same with ``n_jobs=-1``: the driver's update step on every core of
  this machine while the workers wait (the workers stay on one thread),
- the same on 1 worker with ``batch_size = 2 b`` (the transport's cost
  without any parallelism).

The speed-up on 2 workers is reference time / data-parallel time.  Also
reported: the driver's serial share (fit time outside the worker round
trips: the update step, reinforcement, bookkeeping) and the bytes sent to
and received from the workers per batch, against what dense int32 deltas
would weigh.  Data: Fashion-MNIST's 60,000 training images (1 bit per pixel)
when the files are available, else scikit-learn's digits.

    python3 benchmarks/bench_distributed.py            # full run (a few minutes)
    python3 benchmarks/bench_distributed.py --quick    # smoke test (< 60 s)

Writes ``<out>/distributed.json`` and ``<out>/distributed.md``.
"""
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.base import clone

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from skbnn import BEPClassifier, LocalBinaryClassifier  # noqa: E402
from skbnn.distributed import _fit_sharded, _pick_workers, _shard_actors  # noqa: E402

# OMP_NUM_THREADS is left alone here: n_jobs=None is one kernel thread
# anyway, and the n_jobs=-1 run lets the driver's update step use every
# core while the workers (dask sets OMP_NUM_THREADS=1 in them) use one each

LOCAL_GROUP = {525: 105, 2025: 45, 135: 45}  # the paper's group sizes
MMAP_THRESHOLD = 64 * 2**20


def load_data(quick):
    data = _common.load_fmnist(try_install=False, verbose=True)
    if data is not None:
        n = 6000 if quick else len(data.y_train)
        return "Fashion-MNIST", data.X_train[:n], data.y_train[:n]
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    return "digits", X, y


def make_estimator(kind, width, epochs):
    common = dict(hidden_layer_sizes=(width, width), max_iter=epochs, random_state=0)
    if kind == "Local":
        return LocalBinaryClassifier(group_size=LOCAL_GROUP.get(width, "auto"), **common)
    return BEPClassifier(**common)


class ApplyTimer:
    """Seconds spent in the estimator class's ``_apply_updates`` (the part of
    a batch the driver does alone) while the block runs."""

    def __init__(self, cls):
        self.cls, self.seconds = cls, 0.0

    def __enter__(self):
        self.original = original = self.cls.__dict__["_apply_updates"]

        def timed(est, *args):
            tic = time.perf_counter()
            try:
                return original(est, *args)
            finally:
                self.seconds += time.perf_counter() - tic

        self.cls._apply_updates = timed
        return self

    def __exit__(self, *exc):
        self.cls._apply_updates = self.original
        return False


def same_model(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a.hidden_weights_, b.hidden_weights_))


def run_config(client, kind, width, b, X, y, epochs, repeats):
    base = make_estimator(kind, width, epochs)
    addresses = _pick_workers(client, None)[:2]
    times = {"fit_1thread": [], "fit_2threads": [], "dp_2workers": [],
             "dp_2workers_driver_threads": [], "dp_1worker": []}
    runners = {}
    reference = dp = None
    apply_share = []
    for _ in range(repeats):
        est = clone(base).set_params(batch_size=2 * b)
        with ApplyTimer(type(est)) as timer:
            tic = time.perf_counter()
            reference = est.fit(X, y)
            times["fit_1thread"].append(time.perf_counter() - tic)
        apply_share.append(timer.seconds / times["fit_1thread"][-1])

        est = clone(base).set_params(batch_size=2 * b, n_jobs=2)
        tic = time.perf_counter()
        est.fit(X, y)
        times["fit_2threads"].append(time.perf_counter() - tic)
        assert same_model(est, reference)

        for label, n_workers, batch, n_jobs in (("dp_2workers", 2, b, None),
                                                ("dp_2workers_driver_threads", 2, b, -1),
                                                ("dp_1worker", 1, 2 * b, None)):
            est = clone(base).set_params(batch_size=batch, n_jobs=n_jobs)
            tic = time.perf_counter()  # fit_data_parallel's body, keeping the runner
            with _shard_actors(client, addresses[:n_workers]) as actors:
                runners[label] = _fit_sharded(est, X, y, actors)
            times[label].append(time.perf_counter() - tic)
            assert same_model(est, reference), f"{label} differs from fit"
            dp = est
    best = {k: float(min(v)) for k, v in times.items()}
    r2 = runners["dp_2workers"]
    shapes = [h.shape for h in reference.hidden_weights_]
    return {
        "estimator": kind, "width": width, "per_worker_batch": b, "global_batch": 2 * b,
        "epochs": epochs, "n_samples": len(y), "layer_shapes": shapes,
        "group_sizes": list(dp.group_sizes_), "rounds": r2.rounds,
        "seconds": best, "samples": {k: [float(t) for t in v] for k, v in times.items()},
        "speedup_2workers": best["fit_1thread"] / best["dp_2workers"],
        "speedup_2workers_driver_threads": (best["fit_1thread"]
                                            / best["dp_2workers_driver_threads"]),
        "speedup_2threads": best["fit_1thread"] / best["fit_2threads"],
        "overhead_1worker": best["dp_1worker"] / best["fit_1thread"],
        # share of fit (1 thread) in the apply step, which only the driver runs:
        # Amdahl's bound on the speed-up with k workers and free transport
        "fit_apply_share": float(np.median(apply_share)),
        "amdahl_bound_2workers": 1.0 / (np.median(apply_share)
                                        + (1 - np.median(apply_share)) / 2),
        "driver_serial_share_2workers": 1.0 - r2.seconds_in_rounds / times["dp_2workers"][-1],
        "ms_per_round_2workers": 1e3 * times["dp_2workers"][-1] / r2.rounds,
        "bytes_sent_per_worker_round": r2.bytes_sent / r2.rounds / 2,
        "bytes_received_per_worker_round": r2.bytes_received / r2.rounds / 2,
        "int32_deltas_bytes_per_worker_round": 4 * sum(k * n for k, n in shapes),
        "identical_to_fit": True,
        "train_accuracy": float(reference.score(X, y)),
    }


def render(res):
    lines = [f"# Data-parallel CP+R training on dask{' (quick run)' if res['quick'] else ''}",
             "", _common.machine_summary_md(res["machine"]), "",
             f"Data: {res['dataset']} ({res['n_samples']} training samples, "
             f"{res['epochs']} epochs). Cluster: distributed.LocalCluster, 2 worker "
             "processes x 1 thread on loopback, driver in this process. `fit` runs with "
             "`batch_size = 2b`; `fit_data_parallel` with `batch_size = b` per worker on 2 "
             "workers gives the same model bit for bit (checked), and with 1 worker runs "
             "batches of 2b. Workers start with MALLOC_MMAP_THRESHOLD_="
             f"{MMAP_THRESHOLD} (see the Scaling out guide). Times: best of "
             f"{res['repeats']}, whole fit (binarisation included). Other processes used "
             f"{res['other_cpus']:.2f} CPUs on average during the run.", ""]
    rows = []
    for r in res["results"]:
        s = r["seconds"]
        rows.append([
            r["estimator"], f"{r['width']}_{r['width']}", r["per_worker_batch"],
            f"{s['fit_1thread']:.2f}", f"{s['fit_2threads']:.2f}",
            f"{s['dp_2workers']:.2f}", f"{s['dp_2workers_driver_threads']:.2f}",
            f"{s['dp_1worker']:.2f}",
            f"**{r['speedup_2workers']:.2f}x**",
            f"{r['speedup_2workers_driver_threads']:.2f}x", f"{r['speedup_2threads']:.2f}x",
            f"{100 * r['fit_apply_share']:.0f} % ({r['amdahl_bound_2workers']:.2f}x)",
            f"{100 * r['driver_serial_share_2workers']:.0f} %",
            f"{r['ms_per_round_2workers']:.1f}",
            f"{r['bytes_sent_per_worker_round'] / 1e3:.0f} kB",
            f"{r['bytes_received_per_worker_round'] / 1e3:.0f} kB",
            f"{r['int32_deltas_bytes_per_worker_round'] / 1e6:.1f} MB"])
    lines.append(_common.markdown_table(
        ["estimator", "K_K", "b", "fit 1 thr (s)", "fit 2 thr (s)", "dp 2 workers (s)",
         "dp 2 workers, driver n_jobs=-1 (s)", "dp 1 worker (s)", "speed-up 2 workers",
         "speed-up 2 workers, driver n_jobs=-1", "speed-up 2 threads",
         "apply share of fit (bound)", "driver serial share", "ms / batch", "sent / worker / batch",
         "received / worker / batch", "int32 deltas would be"],
        rows, "lllrrrrrrrrrrrrrr"))
    lines += ["", "Speed-up 2 workers = fit 1 thread / dp 2 workers (same model; every "
              "process on one kernel thread). Driver n_jobs=-1: the estimator's n_jobs=-1 "
              f"gives the driver's update step {res['driver_threads']} threads (the workers "
              "stay on one: dask sets OMP_NUM_THREADS=1 in them), used while the workers "
              "wait. Apply share of fit = part of the 1-thread fit spent applying the "
              "merged CP steps and reinforcing (only the driver can do it); in brackets "
              "Amdahl's bound on the 2-worker speed-up with free transport. Driver "
              "serial share = part of the data-parallel fit spent outside the worker round "
              "trips (applying the merged CP steps, reinforcement, validation, bookkeeping): "
              "it bounds the speed-up (Amdahl). Sent = packed sign weights, readout rows and "
              "the packed shard; received = the shard's compacted CP-step operands; the last "
              "column is what dense int32 deltas of all hidden weights would weigh instead."]
    return "\n".join(lines)


def main():
    parser = _common.make_parser(__doc__, "smoke test: small data, one model, < 60 s")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default 2, quick 1)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repetitions, best kept (default 2, quick 1)")
    args = parser.parse_args()
    epochs = args.epochs or (1 if args.quick else 2)
    repeats = args.repeats or (1 if args.quick else 2)
    configs = ([("Local", 525, 500), ("BEP", 525, 500)] if args.quick else
               [(kind, width, 1000) for kind in ("Local", "BEP") for width in (525, 2025)]
               + [("Local", 2025, 250)])
    import dask
    import distributed

    dataset, X, y = load_data(args.quick)
    machine = _common.machine_info()
    results = []
    # dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also pins
    # glibc's mmap threshold at 128 KiB: every large temporary of a batch is
    # then fresh zeroed pages (about 1.4x slower batches, measured); the
    # setting recommended in docs/user_guide/scaling_out.rst restores reuse
    worker_env = {"distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD}
    with _common.CpuMonitor() as monitor, dask.config.set(worker_env), \
            distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                     host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster, \
            distributed.Client(cluster) as client:
        for kind, width, b in configs:
            r = run_config(client, kind, width, b, X, y, epochs, repeats)
            results.append(r)
            s = r["seconds"]
            print(f"{kind} {width}_{width} b={b}: fit {s['fit_1thread']:.2f} s, 2 threads "
                  f"{s['fit_2threads']:.2f} s, 2 workers {s['dp_2workers']:.2f} s "
                  f"(speed-up {r['speedup_2workers']:.2f}x, driver serial "
                  f"{100 * r['driver_serial_share_2workers']:.0f} %), driver n_jobs=-1 "
                  f"{s['dp_2workers_driver_threads']:.2f} s, 1 worker "
                  f"{s['dp_1worker']:.2f} s", flush=True)
    from skbnn._config import effective_n_threads

    res = {"machine": machine, "quick": args.quick, "dataset": dataset, "n_samples": len(y),
           "driver_threads": effective_n_threads(-1),
           "worker_env": {"MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD},
           "epochs": epochs, "repeats": repeats, "other_cpus": monitor.other_cpus or 0.0,
           "cpu_monitor": monitor.as_dict(), "results": results}
    out = Path(args.out)
    _common.write_json(out / "distributed.json", res)
    text = render(res)
    _common.write_markdown(out / "distributed.md", text)
    print(text)


if __name__ == "__main__":
    main()
