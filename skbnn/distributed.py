"""Data-parallel training of the CP+R estimators on a dask cluster.

Needs the optional extra ``pip install 'skbnn[distributed]'`` (dask,
distributed, dask-ml); importing this module does not, only calling
:func:`fit_data_parallel` does.  The two other ways of scaling out need no
skbnn code at all (see the "Scaling out" page of the user guide):
``GridSearchCV(..., n_jobs=-1)`` under ``joblib.parallel_backend("dask")``,
and ``dask_ml.wrappers.Incremental`` feeding the chunks of a dask array to
``partial_fit``.

How a data-parallel batch runs
------------------------------
The CP step of a batch is a sum of integer contributions (``+/-2`` per
selected neuron and synapse) all computed from the pre-update weights and
saturated once, so it splits over disjoint shards of the batch without
changing a bit.  :func:`fit_data_parallel` runs the estimator's ordinary
``fit`` (validation split, shuffled epochs, schedules, early stopping and
every fitted attribute come from there) with batches of ``k * batch_size``
samples, ``k`` the number of workers.  For every batch the driver

1. sends each worker the packed sign weights (1 bit per weight; the int16
   hidden weights stay on the driver) and one contiguous shard of
   ``batch_size`` samples of the batch;
2. each worker computes its shard's :class:`~skbnn._engine.BatchUpdates`
   with the estimator's own ``_batch_updates`` (forward, readout, targets,
   selection: the "compute" half of the rule) and sends it back without the
   samples that select nothing;
3. the driver merges the shards (steps concatenated, correct counts added)
   and applies them with the estimator's own ``_apply_updates``: one
   ``cpr_update`` kernel call per layer sums every contribution in int32 and
   saturates once, then reinforcement draws from the stream of the batch
   number, exactly as ``fit`` does.

Hence with one worker the model is bit for bit the one ``fit`` gives with
the same ``batch_size``, and with ``k`` workers the one ``fit`` gives with
``batch_size = k * b`` (same seed).

What a worker returns
---------------------
Not dense int32 deltas (4 bytes per weight, ``4 * sum_l K_l N_l`` bytes per
shard and batch) but the operands of its CP step: per layer and per sample
that selects something, the selected neuron of every group (int32), the
packed targets and the packed inputs, i.e. ``4 G_l + 8 ceil(K_l/64) +
8 ceil(N_l/64)`` bytes.  The driver's ``cpr_update`` sums them exactly like
the deltas would sum (the result depends on the set of contributions, not
on their order), so the choice changes bytes, not results: for 784-2025-2025
with groups of 45, a shard of 1000 samples returns at most about 1.2 MB
against 22.8 MB of int32 deltas (11.4 MB even as int16; measured: 1.17 MB
on Fashion-MNIST, benchmarks/bench_distributed.py).  Deltas would be the
smaller message only past about 18,000 samples per shard for that model,
and they would add a K x N summation pass per worker to the driver's serial
work, which already bounds the speed-up.

Calls go to one dask actor per worker (``Client.submit(..., actor=True)``):
an actor method call travels client -> worker directly, about 2.5 ms per
round on loopback, where a task submitted through the scheduler costs about
13 ms per round (the client and scheduler batch their messages every 10 and
2-5 ms).  The batch is synchronous: every batch needs the weights its
predecessor produced.
"""
import contextlib
import time
from numbers import Integral

import numpy as np

from ._cpr import CPRTrainingMixin, data_parallel_scope
from ._engine import BatchUpdates, BinaryLayer

__all__ = ["fit_data_parallel"]


def fit_data_parallel(estimator, X, y, *, client=None, n_workers=None):
    """Fit a CP+R estimator with its batches split over dask workers.

    Equivalent to ``estimator.set_params(batch_size=k * b).fit(X, y)``
    (bit-identical hidden weights, same predictions and fitted attributes),
    where ``b`` is the estimator's ``batch_size`` and ``k = n_workers``: each
    worker computes the updates of one contiguous shard of ``b`` samples of
    every batch from the current weights, and the driver sums and applies
    them.  The estimator's parameters are left unchanged.

    Parameters
    ----------
    estimator : LocalBinaryClassifier or BEPClassifier
        The estimator to fit, in place (``warm_start`` is honoured).  Its
        ``batch_size`` is the shard of one worker.  ``n_jobs`` is resolved
        on each worker for its shard (``-1``: the threads OpenMP allows
        there, 1 under dask's default ``OMP_NUM_THREADS=1``) and on the
        driver for the update step, which runs while the workers wait.
    X : array-like of shape (n_samples, n_features)
        Training data (held by the driver; each batch's shards are sent
        packed, 1 bit per input bit).
    y : array-like of shape (n_samples,)
        Class labels.
    client : distributed.Client
        A connected client of the cluster whose workers compute the shards.
    n_workers : int or None, default=None
        Workers to use (the first ``n_workers`` by address); None uses every
        worker of the cluster.

    Returns
    -------
    estimator : object
        The fitted estimator.

    Raises
    ------
    TypeError
        If ``estimator`` is not a CP+R estimator (``LowMemBNNClassifier``
        trains with float gradient steps that do not sum: scale it out with
        ``GridSearchCV`` or ``Incremental``), ``client`` is not a
        ``distributed.Client`` or ``n_workers`` not an int.
    ValueError
        If ``client`` is missing or closed, the cluster has no worker, or
        ``n_workers`` is below 1 or above the number of workers.

    Notes
    -----
    Every batch costs a round trip to the workers, and applying the merged
    steps is the driver's alone: the speed-up is bounded by the share of
    ``fit`` spent applying (measured and discussed in the user guide's
    "Scaling out" page, with the worker memory setting that avoids a 1.4x
    slowdown under dask's default ``MALLOC_TRIM_THRESHOLD_``).

    Examples
    --------
    >>> from distributed import Client, LocalCluster  # doctest: +SKIP
    >>> from sklearn.datasets import load_digits
    >>> from skbnn import LocalBinaryClassifier
    >>> from skbnn.distributed import fit_data_parallel
    >>> X, y = load_digits(return_X_y=True)
    >>> with LocalCluster(n_workers=2, processes=True) as cluster, \\
    ...         Client(cluster) as client:  # doctest: +SKIP
    ...     clf = LocalBinaryClassifier(batch_size=50, max_iter=5, random_state=0)
    ...     fit_data_parallel(clf, X, y, client=client)  # batches of 2 x 50
    """
    _check_estimator(estimator)
    client = _check_client(client)
    with _shard_actors(client, _pick_workers(client, n_workers)) as actors:
        _fit_sharded(estimator, X, y, actors)
    return estimator


@contextlib.contextmanager
def _shard_actors(client, addresses):
    """One :class:`_ShardWorker` actor on each worker address, released on exit."""
    futures = [client.submit(_ShardWorker, actor=True, workers=[address],
                             allow_other_workers=False, pure=False)
               for address in addresses]
    try:
        yield [future.result() for future in futures]
    finally:
        for future in futures:  # the futures keep the actors alive
            future.release()


def _fit_sharded(estimator, X, y, shard_workers):
    """``estimator.fit(X, y)`` with every batch computed by ``shard_workers``
    (objects whose ``batch_updates(estimator, state, A, y)`` returns a future
    of the shard's :class:`~skbnn._engine.BatchUpdates`, e.g. dask actors of
    :class:`_ShardWorker`).  Returns the runner (its traffic counters)."""
    runner = _Runner(estimator, shard_workers)
    with data_parallel_scope(runner):
        estimator.fit(X, y)
    return runner


# ---------------------------------------------------------------- checks
def _check_estimator(estimator):
    if isinstance(estimator, type):
        raise TypeError(f"fit_data_parallel needs an estimator instance, got the class "
                        f"{estimator.__name__}")
    if not isinstance(estimator, CPRTrainingMixin):
        raise TypeError(
            "fit_data_parallel trains the CP+R estimators (LocalBinaryClassifier, "
            f"BEPClassifier), whose batch update is a sum of integer steps; got "
            f"{type(estimator).__name__}. Scale other estimators out with GridSearchCV "
            "under joblib.parallel_backend('dask') or dask_ml.wrappers.Incremental")


def _check_client(client):
    if client is None:
        raise ValueError("fit_data_parallel needs client=distributed.Client(...) connected "
                         "to the cluster whose workers compute the shards")
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise ImportError("fit_data_parallel needs dask.distributed: "
                          "pip install 'skbnn[distributed]'") from exc
    if not isinstance(client, Client):
        raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
    if client.status != "running":
        raise ValueError(f"the dask client is not running (status {client.status!r})")
    if client.asynchronous:
        raise ValueError("fit_data_parallel needs a synchronous Client")
    return client


def _pick_workers(client, n_workers):
    addresses = sorted(client.scheduler_info(n_workers=-1)["workers"])
    if not addresses:
        raise ValueError("the dask cluster has no worker")
    if n_workers is None:
        return addresses
    if isinstance(n_workers, bool) or not isinstance(n_workers, Integral):
        raise TypeError(f"n_workers must be an int or None, got {n_workers!r}")
    if not 1 <= n_workers <= len(addresses):
        raise ValueError(f"n_workers must be between 1 and the {len(addresses)} workers "
                         f"of the cluster, got {n_workers}")
    return addresses[:int(n_workers)]


# ---------------------------------------------------------------- runner
class _ShardWorker:
    """Dask actor on one worker: computes the updates of a shard."""

    def batch_updates(self, estimator, state, A, y):
        # threads resolved here, on the worker (its CPUs and OMP limits)
        return estimator._batch_updates(state, A, y, estimator._n_threads).compact()


class _Runner:
    """Computes the updates of ``estimator``'s batches on ``shard_workers``
    during one ``fit`` (see :func:`skbnn._cpr.data_parallel_scope`)."""

    def __init__(self, estimator, shard_workers):
        self.estimator = estimator
        self.shard_workers = list(shard_workers)
        self.n_workers = len(self.shard_workers)
        self.rounds = 0
        self.bytes_sent = 0      # packed weights, readout rows and shards, all workers
        self.bytes_received = 0  # the workers' compacted CP steps
        self.seconds_in_rounds = 0.0  # from sending the shards to holding every result

    def batch_updates(self, estimator, state, A, y, n_threads):
        """The merged updates of the batch ``(A, y)``: one contiguous shard
        per worker (of ``batch_size`` samples, fewer in the last batch)."""
        tic = time.perf_counter()
        replica, view = estimator._worker_copy(state)
        bounds = np.linspace(0, len(y), self.n_workers + 1).round().astype(np.intp)
        view_bytes = _state_nbytes(view)
        calls = []
        for worker, start, stop in zip(self.shard_workers, bounds[:-1], bounds[1:]):
            if stop > start:
                calls.append(worker.batch_updates(replica, view, A[start:stop], y[start:stop]))
                self.bytes_sent += view_bytes + A[start:stop].nbytes + y[start:stop].nbytes
        parts = [call.result() for call in calls]
        self.seconds_in_rounds += time.perf_counter() - tic
        self.rounds += 1
        self.bytes_received += sum(part.nbytes for part in parts)
        return BatchUpdates.merge(parts)


def _state_nbytes(state):
    """Bytes of the arrays a worker receives with a training-state view."""
    total = 0
    for value in vars(state).values():
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, np.ndarray):
                total += item.nbytes
            elif isinstance(item, BinaryLayer):
                total += item.nbytes  # packed planes (and hidden weights when shipped)
    return total
