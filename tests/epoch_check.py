"""Shared check of the CP+R estimators against their NumPy references: the
reference continues training from a fitted estimator for one epoch, batch by
batch, and must land on the estimator's own next epoch bit for bit."""
import numpy as np
import pytest
from reference import sign, unpack

from skbnn._engine import reinforcement_probability


def assert_next_epoch_matches(clf, X, y, batch_step, batch_size):
    """``batch_step(Hs, X_batch, y_batch_idx, p, stream) -> (Hs, n_correct)``
    is the reference's step; ``clf`` was fitted without shuffling on ``(X, y)``
    in batches of ``batch_size`` and is trained one more epoch (warm start)."""
    Hs = [h.copy() for h in clf.hidden_weights_]
    y_idx = np.searchsorted(clf.classes_, y)
    error, batches = clf.loss_curve_[-1], clf._batches_seen
    n_correct = 0
    for b, start in enumerate(range(0, len(y), batch_size)):
        p = [reinforcement_probability(clf.reinforcement_prob, error, h.shape[1]) for h in Hs]
        Hs, c = batch_step(Hs, X[start:start + batch_size], y_idx[start:start + batch_size], p,
                           (batches + b) * len(Hs))
        n_correct += c
    clf.set_params(warm_start=True).fit(X, y)
    for h_ref, h, packed in zip(Hs, clf.hidden_weights_, clf.packed_weights_):
        np.testing.assert_array_equal(h, h_ref)
        np.testing.assert_array_equal(unpack(packed, h.shape[1]), sign(h_ref))
    assert clf.loss_curve_[-1] == pytest.approx(1 - n_correct / len(y))
