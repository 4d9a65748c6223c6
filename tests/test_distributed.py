"""Scaling out on dask: hyper-parameter search through joblib's dask backend,
streaming through dask-ml's Incremental, and data-parallel CP+R training
(skbnn.distributed).

The sharding logic is first checked in-process, with workers that pickle
what a dask worker would receive and return, over many configurations;
then everything runs on one real ``distributed.LocalCluster`` (2 worker
processes on loopback) shared by the module."""
import pickle
import re
import subprocess
import sys
from concurrent.futures import Future
from pathlib import Path

import dask.array as da
import distributed
import joblib
import numpy as np
import pytest
from dask_ml import wrappers
from sklearn.base import clone
from sklearn.datasets import load_digits, make_classification
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV

from skbnn import BEPClassifier, LocalBinaryClassifier, LowMemBNNClassifier, _kernels
from skbnn._cpr import _RUNNER
from skbnn._engine import BatchUpdates, BinaryLayer, CPStep, init_hidden_weights
from skbnn.distributed import _fit_sharded, _ShardWorker, fit_data_parallel


@pytest.fixture(scope="module")
def digits_small():
    X, y = load_digits(return_X_y=True)
    return X[:600], y[:600]


# ------------------------------------------------------------------ engine
def _random_step(rng, M, K, N, g):
    selected = rng.integers(0, g, size=(M, K // g)).astype(np.int32) + np.arange(0, K, g)
    selected[rng.random(selected.shape) < 0.3] = -1
    selected[rng.random(M) < 0.2] = -1  # samples that select nothing
    targets = _kernels.pack_binary(rng.integers(0, 2, (M, K)).astype(np.uint8))[0]
    inputs = _kernels.pack_binary(rng.integers(0, 2, (M, N)).astype(np.uint8))[0]
    return CPStep(selected.astype(np.int32), targets, inputs)


def _numpy_cp(H, step, K, N, clip):
    """Reference: every contribution +2 t a from H, summed, saturated once."""
    t = _kernels.unpack_pm1(step.targets, K).astype(np.int64)
    a = _kernels.unpack_pm1(step.inputs, N).astype(np.int64)
    delta = np.zeros(H.shape, dtype=np.int64)
    for m, q in zip(*np.nonzero(step.selected >= 0)):
        j = step.selected[m, q]
        delta[j] += 2 * t[m, j] * a[m]
    return np.clip(H.astype(np.int64) + delta, -clip, clip).astype(np.int16)


@pytest.mark.parametrize("clip", [5, 32767])
def test_shard_steps_concatenated_equal_the_batch_step(clip):
    """Shards' CP steps, compacted and concatenated, move the weights exactly
    as the whole batch's step (sum once, saturate once) and as NumPy."""
    rng = np.random.default_rng(0)
    K, N, g, M = 70, 130, 7, 60
    H0 = init_hidden_weights(K, N, 4.0, True, clip, rng)
    step = _random_step(rng, M, K, N, g)
    shards = [CPStep(step.selected[a:b], step.targets[a:b], step.inputs[a:b]).compact()
              for a, b in ((0, 25), (25, 26), (26, 60))]
    merged = CPStep.concatenate(shards)
    assert merged.selected.shape[0] < M  # compaction dropped inert samples
    whole, sharded = BinaryLayer(H0.copy(), with_transpose=True), BinaryLayer(
        H0.copy(), with_transpose=True)
    whole.apply(step, clip)
    sharded.apply(merged, clip)
    want = _numpy_cp(H0, step, K, N, clip)
    for layer in (whole, sharded):
        np.testing.assert_array_equal(layer.hidden, want)
        np.testing.assert_array_equal(layer.packed, _kernels.pack_sign_int16(want))
        np.testing.assert_array_equal(layer.packed_t,
                                      _kernels.transpose_bits(layer.packed, N))
    if clip == 5:  # applying the shards one after the other saturates twice
        sequential = BinaryLayer(H0.copy())
        for shard in shards:
            sequential.apply(shard, clip)
        assert not np.array_equal(sequential.hidden, want)


def test_batch_updates_merge():
    rng = np.random.default_rng(1)
    s1, s2 = _random_step(rng, 5, 14, 20, 7), _random_step(rng, 3, 14, 20, 7)
    merged = BatchUpdates.merge([BatchUpdates(4, [s1, None, None]),
                                 BatchUpdates(2, [s2, s2, None])])
    assert merged.n_correct == 6 and merged.steps[2] is None  # nobody asked: no update
    np.testing.assert_array_equal(merged.steps[0].selected,
                                  np.vstack([s1.selected, s2.selected]))
    assert merged.steps[1] is s2
    assert merged.nbytes == merged.steps[0].nbytes + s2.nbytes


def test_forward_view_computes_but_cannot_train():
    rng = np.random.default_rng(2)
    layer = BinaryLayer(init_hidden_weights(35, 100, 64.0, True, 32767, rng),
                        with_transpose=True)
    view = pickle.loads(pickle.dumps(layer.forward_view()))
    assert view.hidden is None
    A = _kernels.pack_binary(rng.integers(0, 2, (8, 100)).astype(np.uint8))[0]
    np.testing.assert_array_equal(view.forward(A), layer.forward(A))
    np.testing.assert_array_equal(view.packed_t, layer.packed_t)
    with pytest.raises(RuntimeError, match="forward-only"):
        view.apply(_random_step(rng, 4, 35, 100, 7))
    with pytest.raises(RuntimeError, match="forward-only"):
        view.reinforce(0.5, 1, 0)


# ------------------------------------------------------------------ in-process shards
def _done(value):
    future = Future()
    future.set_result(value)
    return future


class _PicklingWorker:
    """A shard worker in this process that, like a dask worker, receives
    and returns pickled copies (so nothing is shared with the driver)."""

    def __init__(self):
        self.calls = 0

    def batch_updates(self, *args):
        self.calls += 1
        result = _ShardWorker().batch_updates(*pickle.loads(pickle.dumps(args)))
        return _done(pickle.loads(pickle.dumps(result)))


def _assert_same_fit(a, b, X):
    for name in ("hidden_weights_", "packed_weights_"):
        for u, v in zip(getattr(a, name), getattr(b, name)):
            np.testing.assert_array_equal(u, v)
    for name in ("classifiers_", "classifier_hidden_weights_", "prototypes_"):
        u, v = getattr(a, name, None), getattr(b, name, None)
        if isinstance(u, list):
            for p, q in zip(u, v):
                np.testing.assert_array_equal(p, q)
        elif u is not None:
            np.testing.assert_array_equal(u, v)
    for name in ("n_iter_", "t_", "_batches_seen", "loss_curve_", "validation_scores_",
                 "best_loss_", "group_sizes_"):
        assert getattr(a, name, None) == getattr(b, name, None), name
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


CONFIGS = {
    "local": LocalBinaryClassifier(hidden_layer_sizes=(45, 35), max_iter=3),
    "local-train-out-clip": LocalBinaryClassifier(
        hidden_layer_sizes=(35,), train_classifiers=True, weight_clip=9, init_std=4.0,
        max_iter=3),
    "local-early-stopping": LocalBinaryClassifier(
        hidden_layer_sizes=(45,), early_stopping=True, n_iter_no_change=2, max_iter=6,
        robustness=0.5),
    "bep-schedule": BEPClassifier(hidden_layer_sizes=(45, 35), group_size=5,
                                  group_patience=1, max_iter=5),
    "bep-loose-ties-clip": BEPClassifier(
        hidden_layer_sizes=(35, 35, 35), group_size=7, strict_ties=False, gate_threshold=0.1,
        weight_clip=9, init_std=4.0, reinforcement_norm="width", group_schedule="train",
        group_patience=1, max_iter=4),
    "local-ternary": LocalBinaryClassifier(hidden_layer_sizes=(45, 35), odd_init=False,
                                           ternary_weights=True, init_std=4.0, max_iter=3),
    "local-zero-activations": LocalBinaryClassifier(
        hidden_layer_sizes=(46, 36), group_size=(23, 6), odd_init=False, ternary_weights=True,
        ternary_activations=True, train_classifiers=True, init_std=4.0, max_iter=3),
    "bep-ternary-loose-ties": BEPClassifier(
        hidden_layer_sizes=(45, 35), group_size=5, odd_init=False, ternary_weights=True,
        init_std=4.0, strict_ties=False, group_schedule=None, max_iter=3),
    "bep-hidden-selection": BEPClassifier(hidden_layer_sizes=(45, 35), group_size=5,
                                          selection="hidden", init_std=4.0, max_iter=3),
    "bep-zero-activations": BEPClassifier(
        hidden_layer_sizes=(46, 36), group_size=(23, 6), odd_init=False, ternary_weights=True,
        ternary_activations=True, strict_ties=False, init_std=4.0, max_iter=3),
}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # early stopping
@pytest.mark.parametrize("n_workers", [1, 2, 3])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_sharded_fit_equals_fit_with_k_times_the_batch(config, n_workers, digits_small):
    X, y = digits_small
    est = clone(CONFIGS[config]).set_params(batch_size=40, random_state=0)
    workers = [_PicklingWorker() for _ in range(n_workers)]
    runner = _fit_sharded(est, X, y, workers)
    reference = clone(est).set_params(batch_size=40 * n_workers).fit(X, y)
    _assert_same_fit(est, reference, X)
    assert est.batch_size == 40  # parameters untouched
    assert all(w.calls == runner.rounds for w in workers) and runner.rounds > 0
    assert _RUNNER.get() is None


def test_sharded_fit_binary_problem_and_single_batch():
    """One +/-1 output (binary Local) and data smaller than one batch (fit
    takes its one-batch shortcut: the unshuffled set, split in shards)."""
    X, y = make_classification(70, n_features=12, random_state=0)
    for est in (LocalBinaryClassifier(hidden_layer_sizes=(15,), train_classifiers=True),
                BEPClassifier(hidden_layer_sizes=(15,), group_size=5)):
        est.set_params(batch_size=50, max_iter=3, random_state=1)
        _fit_sharded(est, X, y, [_PicklingWorker(), _PicklingWorker()])
        _assert_same_fit(est, clone(est).set_params(batch_size=100).fit(X, y), X)


def test_sharded_warm_start_continues_like_fit(digits_small):
    X, y = digits_small
    est = BEPClassifier(hidden_layer_sizes=(35,), group_size=5, batch_size=30, max_iter=2,
                        random_state=0, warm_start=True)
    reference = clone(est).set_params(batch_size=60)
    for _ in range(2):
        _fit_sharded(est, X, y, [_PicklingWorker(), _PicklingWorker()])
        reference.fit(X, y)
    _assert_same_fit(est, reference, X)
    est.fit(X, y)  # outside the scope: batches of 30 again
    assert est._batches_seen == reference._batches_seen + 2 * int(np.ceil(600 * 0.9 / 30))


def test_worker_failure_leaves_the_estimator_unchanged(digits_small):
    class Broken(_PicklingWorker):
        def batch_updates(self, *args):
            raise ConnectionError("worker lost")

    X, y = digits_small
    est = LocalBinaryClassifier(hidden_layer_sizes=(15,), max_iter=2, random_state=0)
    with pytest.raises(ConnectionError, match="worker lost"):
        _fit_sharded(est, X, y, [_PicklingWorker(), Broken()])
    assert not hasattr(est, "classes_") and _RUNNER.get() is None


# ------------------------------------------------------------------ on dask
@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster, \
            distributed.Client(cluster) as client:
        yield client


ESTIMATORS = {
    "local": LocalBinaryClassifier(hidden_layer_sizes=(35,), max_iter=2, random_state=0),
    "bep": BEPClassifier(hidden_layer_sizes=(35,), group_size=7, max_iter=2, random_state=0),
    "lowmem": LowMemBNNClassifier(hidden_layer_sizes=(32,), max_iter=2, random_state=0),
}
GRIDS = {"local": {"robustness": [0.0, 0.25, 0.5], "reinforcement_prob": [0.25, 0.5]},
         "bep": {"robustness": [0.25, 0.5], "gate_threshold": [0.1, 0.25, 1.0]},
         "lowmem": {"learning_rate_init": [1e-3, 1e-2], "batch_size": [32, 64, 128]}}


@pytest.mark.parametrize("search", ["grid", "randomized"])
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_search_on_dask_backend_matches_local_run(name, search, client, digits_small):
    X, y = digits_small

    def make():
        if search == "grid":
            return GridSearchCV(ESTIMATORS[name], GRIDS[name], cv=3, n_jobs=-1)
        return RandomizedSearchCV(ESTIMATORS[name], GRIDS[name], n_iter=4, cv=3, n_jobs=-1,
                                  random_state=0)

    local = make().set_params(n_jobs=None).fit(X, y)
    with distributed.get_task_stream(client) as tasks, joblib.parallel_backend("dask"):
        remote = make().fit(X, y)
    assert any("fit_and_score" in task["key"] for task in tasks.data)  # ran on the workers
    assert remote.best_params_ == local.best_params_
    assert remote.best_score_ == local.best_score_
    assert remote.cv_results_["params"] == local.cv_results_["params"]
    for key in ("mean_test_score", "std_test_score", "rank_test_score"):
        np.testing.assert_array_equal(remote.cv_results_[key], local.cv_results_[key])
    np.testing.assert_array_equal(remote.predict(X), local.predict(X))


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_incremental_matches_in_process_partial_fit_loop(name, client, digits_small):
    X, y = digits_small
    classes = np.unique(y)
    X_d, y_d = da.from_array(X, chunks=(150, -1)), da.from_array(y, chunks=150)
    assert X_d.numblocks[0] == 4
    for shuffle_blocks in (False, True):
        inc = wrappers.Incremental(ESTIMATORS[name], shuffle_blocks=shuffle_blocks,
                                   random_state=3).fit(X_d, y_d, classes=classes)
        order = list(range(4))
        if shuffle_blocks:  # dask-ml's block order: RandomState(random_state).shuffle
            np.random.RandomState(3).shuffle(order)
            assert order != sorted(order)
        loop = clone(ESTIMATORS[name])
        for i in order:
            loop.partial_fit(X[150 * i:150 * (i + 1)], y[150 * i:150 * (i + 1)],
                             classes=classes)
        assert inc.estimator_.n_iter_ == loop.n_iter_ == 4 and inc.estimator_.t_ == 600
        np.testing.assert_array_equal(inc.predict(X_d).compute(), loop.predict(X))
        np.testing.assert_array_equal(inc.predict_proba(X_d).compute(), loop.predict_proba(X))
        assert inc.score(X_d, y_d) == pytest.approx(loop.score(X, y))


@pytest.mark.parametrize("n_workers", [1, 2])
@pytest.mark.parametrize("name", ["local", "bep"])
def test_fit_data_parallel_on_dask_equals_fit(name, n_workers, client, digits_small):
    X, y = digits_small
    est = clone(ESTIMATORS[name]).set_params(batch_size=40, max_iter=3)
    assert fit_data_parallel(est, X, y, client=client, n_workers=n_workers) is est
    _assert_same_fit(est, clone(est).set_params(batch_size=40 * n_workers).fit(X, y), X)
    assert est.batch_size == 40 and _RUNNER.get() is None


def test_fit_data_parallel_uses_every_worker_by_default(client, digits_small):
    X, y = digits_small
    est = clone(ESTIMATORS["local"]).set_params(batch_size=50)
    fit_data_parallel(est, X, y, client=client)
    _assert_same_fit(est, clone(est).set_params(batch_size=100).fit(X, y), X)


def test_fit_data_parallel_bad_inputs(client, digits_small):
    X, y = digits_small
    est = clone(ESTIMATORS["local"])
    with pytest.raises(ValueError, match="needs client="):
        fit_data_parallel(est, X, y)
    with pytest.raises(TypeError, match="distributed.Client"):
        fit_data_parallel(est, X, y, client="tcp://127.0.0.1:8786")
    with pytest.raises(TypeError, match="LowMemBNNClassifier"):
        fit_data_parallel(ESTIMATORS["lowmem"], X, y, client=client)
    with pytest.raises(TypeError, match="instance"):
        fit_data_parallel(LocalBinaryClassifier, X, y, client=client)
    for bad in (0, 3, -1):
        with pytest.raises(ValueError, match="n_workers"):
            fit_data_parallel(est, X, y, client=client, n_workers=bad)
    for bad in (1.5, True, "2"):
        with pytest.raises(TypeError, match="n_workers"):
            fit_data_parallel(est, X, y, client=client, n_workers=bad)
    with pytest.raises(ValueError, match="classes_|class"):  # fit's own checks still apply
        fit_data_parallel(est, X, np.zeros(len(y)), client=client)
    assert not hasattr(est, "classes_") and _RUNNER.get() is None
    closed = distributed.Client(client.scheduler.address)
    closed.close()
    with pytest.raises(ValueError, match="not running"):
        fit_data_parallel(est, X, y, client=closed)


def test_scaling_out_page_code_runs():
    """The code blocks of docs/user_guide/scaling_out.rst, one after the other,
    run and print what the page says (in a fresh interpreter with its own
    cluster; ``-c`` as in an interactive session, see the page)."""
    page = Path(__file__).resolve().parent.parent / "docs" / "user_guide" / "scaling_out.rst"
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:(?:    .*)?\n)+)", page.read_text())
    code = "\n".join("\n".join(line[4:] for line in block.splitlines()) for block in blocks)
    assert "fit_data_parallel(" in code and "Incremental(" in code and "parallel_backend" in code
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-2:] == ["True", "True"]
