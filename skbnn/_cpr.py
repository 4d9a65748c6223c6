"""The batch step shared by the CP+R estimators (LocalBinaryClassifier, BEPClassifier).

A CP+R batch has two halves, each defined once by the learning rule:

1. ``_batch_updates(state, A, y, n_threads)`` returns a
   :class:`~skbnn._engine.BatchUpdates`: everything computed from the
   pre-update weights (forward pass, readout, targets, selection) and the
   count of correct predictions.  It changes nothing.
2. ``_apply_updates(state, updates, n_threads)`` applies it: per weight
   matrix the summed CP step saturated once, then reinforcement with the
   batch's random stream, reading the fit bookkeeping (``_seed``,
   ``_batches_seen``, ``_prev_train_error``).

``_train_batch`` (the base class's hook) runs one after the other.
:func:`skbnn.distributed.fit_data_parallel` runs the ordinary ``fit``
inside a :func:`data_parallel_scope`: the first half then runs on dask
workers for contiguous shards of the batch, their updates are merged
(:meth:`~skbnn._engine.BatchUpdates.merge`) and the same second half applies
them, so ``fit`` and the data-parallel fit share every line of the rule and
of the epoch bookkeeping.
"""
import contextlib
import contextvars

from sklearn.base import clone

from ._engine import reinforcement_probability

# the data-parallel runner of the fit in progress, if any (see skbnn.distributed)
_RUNNER = contextvars.ContextVar("skbnn_data_parallel_runner", default=None)


@contextlib.contextmanager
def data_parallel_scope(runner):
    """Within this block, ``runner.estimator``'s batches are computed by
    ``runner`` (an object with ``estimator``, ``n_workers`` and
    ``batch_updates(estimator, state, A, y, n_threads)``)."""
    token = _RUNNER.set(runner)
    try:
        yield runner
    finally:
        _RUNNER.reset(token)


class CPRTrainingMixin:
    """Mixin of the CP+R estimators (left of the base class): the batch step
    as compute + apply, and the hooks of data-parallel training."""

    # fitted attributes that ``_batch_updates`` reads (besides the parameters):
    # a worker's copy of the estimator carries them
    _compute_attributes = ("group_sizes_",)

    def _train_batch(self, state, A, y, n_threads):
        runner = self._data_parallel_runner()
        if runner is None:
            updates = self._batch_updates(state, A, y, n_threads)
        else:
            updates = runner.batch_updates(self, state, A, y, n_threads)
        self._apply_updates(state, updates, n_threads)
        return updates.n_correct

    def _apply_layer_steps(self, layers, steps, norms, n_threads):
        """CP step then reinforcement ``h += 2 sign(h)`` of every layer whose
        step is not None, with probability from ``reinforcement_prob``, the
        previous epoch's training error (1 in the first) and the layer's
        ``norms`` entry; each layer's random stream is keyed by the batch and
        the layer."""
        clip = self._clip
        error = 1.0 if self._prev_train_error is None else self._prev_train_error
        n_layers = len(layers)
        for l, (layer, step, norm) in enumerate(zip(layers, steps, norms)):
            if step is None:
                continue
            layer.apply(step, clip, n_threads)
            p = reinforcement_probability(self.reinforcement_prob, error, norm)
            layer.reinforce(p, self._seed, self._batches_seen * n_layers + l, clip, n_threads)

    def _batch_size_for(self, n_samples):
        # data-parallel: batch_size is each worker's shard, the batch is k of them
        bs = super()._batch_size_for(n_samples)
        runner = self._data_parallel_runner()
        return bs if runner is None else min(n_samples, runner.n_workers * bs)

    def _data_parallel_runner(self):
        runner = _RUNNER.get()
        return runner if runner is not None and runner.estimator is self else None

    def _worker_copy(self, state):
        """What a worker needs to compute the updates of a shard: an unfitted
        copy of the estimator with ``_compute_attributes`` set, and the
        training state without hidden weights (``state.forward_view()``).
        Both pickle small: parameters, packed weights and readout rows."""
        replica = clone(self)
        for name in self._compute_attributes:
            setattr(replica, name, getattr(self, name))
        return replica, state.forward_view()
