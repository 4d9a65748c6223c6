"""Thread safety.  The kernels release the GIL, so Python threads really run
them concurrently: ``predict`` from 4 threads on one fitted estimator equals
the single-threaded result (and changes nothing), and distinct estimators
fitted in parallel threads equal the same fits run one after another."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from robustness import ESTIMATORS, digits, model_arrays, same_state, tiny

from skbnn import _kernels

N_THREADS = 4


def run_together(calls):
    """Run the callables in as many threads, released together; their results."""
    barrier = threading.Barrier(len(calls))

    def start(call):
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(start, calls))


@pytest.mark.parametrize("n_jobs", [None, 2])
@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_concurrent_predict_equals_single_thread(cls, n_jobs):
    X, y = digits(600)
    clf = tiny(cls, n_jobs=n_jobs).fit(X, y)
    snapshot = tiny(cls, n_jobs=n_jobs).fit(X, y)
    methods = ("predict", "predict_proba", "decision_function")
    want = {m: getattr(clf, m)(X) for m in methods}
    chunks = [X, X[::2], X[1::3], X[::-1]]  # every thread its own input as well
    for method in methods:
        calls = [lambda m=method: getattr(clf, m)(X) for _ in range(N_THREADS)]
        calls += [lambda m=method, c=c: getattr(clf, m)(c) for c in chunks]
        results = run_together(calls)
        for got in results[:N_THREADS]:
            np.testing.assert_array_equal(got, want[method])
        for got, c in zip(results[N_THREADS:], chunks):
            np.testing.assert_array_equal(got, getattr(snapshot, method)(c))
    assert same_state(clf, snapshot)  # prediction changed nothing


def test_parallel_fits_of_distinct_estimators():
    """Eight estimators (every class, two seeds) fitted and then streamed with
    partial_fit in 4 threads: the same models as sequential runs."""
    X, y = digits(400)
    specs = [(cls, seed) for cls in ESTIMATORS for seed in (0, 1)] + [(ESTIMATORS[0], 2)]

    def train(cls, seed):
        clf = tiny(cls, random_state=seed, n_jobs=2 if seed else None).fit(X, y)
        clf.partial_fit(X[:100], y[:100])
        return clf

    sequential = [train(cls, seed) for cls, seed in specs]
    with ThreadPoolExecutor(N_THREADS) as pool:
        parallel = list(pool.map(lambda spec: train(*spec), specs))
    for a, b in zip(sequential, parallel):
        for u, v in zip(model_arrays(a), model_arrays(b)):
            np.testing.assert_array_equal(u, v)
        assert a.loss_curve_ == b.loss_curve_
        np.testing.assert_array_equal(a.predict(X), b.predict(X))


def _longest_stall(work):
    """Run ``work`` in a thread while this thread keeps stamping the clock;
    returns (longest gap between stamps, duration of ``work``)."""
    done = threading.Event()
    span = {}

    def worker():
        tic = time.perf_counter()
        work()
        span["t"] = time.perf_counter() - tic
        done.set()

    t = threading.Thread(target=worker)
    last = time.perf_counter()
    longest = 0.0
    t.start()
    while not done.is_set():
        now = time.perf_counter()
        longest = max(longest, now - last)
        last = now
    t.join()
    return longest, span["t"]


def _calibrated(make_work):
    """``make_work(size)`` for the smallest doubling size whose one call takes
    at least 0.15 s."""
    size = 64
    while True:
        work = make_work(size)
        tic = time.perf_counter()
        work()
        if time.perf_counter() - tic > 0.15 or size > 2**22:
            return work
        size *= 2


def _bgemm_work(words):
    A = np.full((256, words), 0x5A5A5A5A5A5A5A5A, dtype=np.uint64)  # the cost is data-blind
    return lambda: _kernels.bgemm(A, A, 64 * words)


def _fsgemm_work(k):
    F = np.full((64, k), 0.5, dtype=np.float32)
    Bt = np.full((k, 8), 0x5A5A5A5A5A5A5A5A, dtype=np.uint64)
    return lambda: _kernels.fsgemm(F, Bt, 512)


# the work grows along the inner dimension: outputs stay small
KERNELS = {"bgemm": _bgemm_work, "fsgemm": _fsgemm_work}


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_kernels_release_the_gil(kernel):
    """While one thread is inside a long kernel call (0.15-0.3 s), another
    keeps running Python code: holding the GIL would stall it for the whole
    call, releasing it only for a switch interval or two (the margin is for
    a busy machine)."""
    work = _calibrated(KERNELS[kernel])
    stall, duration = _longest_stall(work)
    assert duration > 0.05  # long enough to tell (a busy machine can halve it)
    assert stall < 0.5 * duration, (stall, duration)
