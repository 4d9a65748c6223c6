"""Resource guards and exception safety.

- Absurd sizes (``hidden_layer_sizes=(10**8,)``, huge inputs) are refused
  with a ValueError naming the size before the model is allocated; the limit
  is ``SKBNN_MAX_MEMORY`` (default: the machine's memory).
- An exception during ``fit`` / ``partial_fit`` -- a real asynchronous
  interrupt (SIGALRM raising ``KeyboardInterrupt``) or one raised between two
  kernels of a batch -- leaves the estimator as it was or cleanly unfitted,
  never half-updated.
"""
import pickle
import signal
import time
import tracemalloc

import numpy as np
import pytest
from robustness import ESTIMATORS, digits, model_arrays, same_state, state_bytes, tiny
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from skbnn import BEPClassifier, BEPRecurrentClassifier, LowMemBNNClassifier, _kernels
from skbnn._resources import MEMORY_LIMIT_ENV, memory_limit


@pytest.fixture(params=ESTIMATORS, ids=lambda c: c.__name__)
def cls(request):
    return request.param


# ------------------------------------------------------------------ memory guard
def _group(cls, width):
    return {} if cls is LowMemBNNClassifier else {"group_size": 5 if width % 5 == 0 else 1}


@pytest.mark.parametrize("width", [10**8, 2 * 10**9])
def test_absurd_width_refused_before_allocation(cls, width, monkeypatch):
    monkeypatch.delenv(MEMORY_LIMIT_ENV, raising=False)
    X, y = digits(200)
    clf = tiny(cls, hidden_layer_sizes=(width,), **_group(cls, width))
    before = state_bytes(clf)
    tracemalloc.start()
    tic = time.perf_counter()
    try:
        with pytest.raises(ValueError, match=r"needs about [\d.]+ [TG]iB .* SKBNN_MAX_MEMORY"):
            clf.fit(X, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20  # validation and binarisation only: no weights
    assert time.perf_counter() - tic < 5
    assert state_bytes(clf) == before  # still unfitted, parameters untouched


def test_limit_is_overridable(cls, monkeypatch):
    X, y = digits(200)
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "100K")
    assert memory_limit() == 100 * 1024
    with pytest.raises(ValueError, match="above the memory limit of 100.0 KiB"):
        tiny(cls).fit(X, y)
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "none")
    assert memory_limit() is None
    tiny(cls).fit(X, y)
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "1.5GiB")
    assert memory_limit() == int(1.5 * 2**30)
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "plenty")
    with pytest.raises(ValueError, match=MEMORY_LIMIT_ENV):
        tiny(cls).fit(X, y)


def test_continuing_calls_check_their_input(cls, monkeypatch):
    """partial_fit and warm-start fit only add input: that is checked too,
    before it is encoded, and a refused call leaves the model unchanged."""
    X, y = digits(200)
    clf = tiny(cls).partial_fit(X, y, classes=np.arange(10))
    before = state_bytes(clf)
    big = np.repeat(X, 20, axis=0)
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "64K")
    with pytest.raises(ValueError, match="encoded input of 4,000 samples"):
        clf.partial_fit(big, np.repeat(y, 20))
    with pytest.raises(ValueError, match="encoded input"):
        clf.set_params(warm_start=True).fit(big, np.repeat(y, 20))
    clf.set_params(warm_start=False)
    assert state_bytes(clf) == before


def test_estimate_counts_the_weights_the_fit_allocates(cls):
    """The guard's per-layer fan-ins are those of the weights a fit builds
    (with the recurrent layer's own state), so its estimate covers them."""
    X, y = digits(200)
    clf = tiny(cls).fit(X, y)
    n_bits = clf.binarizer_.n_output_bits_
    shapes = ([s["m1"].shape for s in clf.layers_[:-1]]
              if cls is LowMemBNNClassifier else [h.shape for h in clf.hidden_weights_])
    assert [n for _, n in shapes] == list(clf._layer_fan_ins(n_bits))
    held = sum(a.nbytes for a in model_arrays(clf))
    assert held <= clf._training_bytes(len(X), n_bits, len(clf.classes_))


def test_recurrent_estimate_includes_the_state_fan_in():
    series = np.random.default_rng(0).random((40, 2, 12))
    y = np.arange(40) % 2
    clf = BEPRecurrentClassifier(state_size=15, output_size=15, expansion_size=32,
                                 max_iter=1, random_state=0).fit(series, y)
    n_bits = clf.binarizer_.n_output_bits_
    assert [h.shape[1] for h in clf.hidden_weights_] == list(clf._layer_fan_ins(n_bits))
    assert clf._layer_fan_ins(n_bits)[0] == n_bits + 15


def test_widths_beyond_int32_refused(monkeypatch):
    """Dot products are int32: a fan-in of 2**31 is refused even without a
    memory limit."""
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "none")
    X, y = digits(50)
    with pytest.raises(ValueError, match="int32 range"):
        LowMemBNNClassifier(hidden_layer_sizes=(2**31,)).fit(X, y)


# ------------------------------------------------------------------ interrupts
class Interrupt:
    """Raise KeyboardInterrupt after the ``at``-th call of the state-changing
    kernels (so between two kernels of one batch), after the kernel ran."""

    KERNELS = ("cpr_update", "reinforce", "optimizer_step", "bn_forward")

    def __init__(self, monkeypatch, at):
        self.calls, self.at = 0, at
        for name in self.KERNELS:
            monkeypatch.setattr(_kernels, name, self._wrap(getattr(_kernels, name)))

    def _wrap(self, kernel):
        def wrapped(*args, **kwargs):
            result = kernel(*args, **kwargs)
            self.calls += 1
            if self.calls == self.at:
                raise KeyboardInterrupt
            return result
        return wrapped


def assert_unfitted(clf, params):
    with pytest.raises(NotFittedError):
        check_is_fitted(clf)
    assert set(vars(clf)) == set(params)  # no fitted leftovers
    assert clf.get_params() == params


@pytest.mark.parametrize("at", [1, 2, 7])
def test_interrupted_cold_fit_keeps_previous_model(cls, at, monkeypatch):
    """fit (no warm start) builds new arrays: an interrupt anywhere leaves
    the previous model exactly, or an unfitted estimator unfitted."""
    X, y = digits()
    fresh = tiny(cls)
    params = fresh.get_params()
    fitted = tiny(cls).fit(X, y)
    before = state_bytes(fitted)
    Interrupt(monkeypatch, at)
    with pytest.raises(KeyboardInterrupt):
        fresh.fit(X, y)
    assert_unfitted(fresh, params)
    Interrupt(monkeypatch, at)
    with pytest.raises(KeyboardInterrupt):
        fitted.fit(X[::-1], y[::-1])
    assert state_bytes(fitted) == before


@pytest.mark.parametrize("rollback", [False, True])
@pytest.mark.parametrize("at", [1, 3, 8])
@pytest.mark.parametrize("how", ["partial_fit", "warm_start"])
def test_interrupted_in_place_update(cls, at, how, rollback, monkeypatch):
    """A call that continues a model updates its arrays in place: an
    interrupt between two kernels leaves the estimator unfitted (default)
    or, when the class keeps a rollback copy, exactly as before the call;
    either way a later fit works as on a fresh estimator."""
    monkeypatch.setattr(cls, "_rollback_copy", rollback)
    X, y = digits()
    clf = tiny(cls).fit(X, y)
    params = clf.get_params()
    before = state_bytes(clf)
    Interrupt(monkeypatch, at)
    if how == "warm_start":
        clf.set_params(warm_start=True)
        params["warm_start"] = True
        before = state_bytes(clf)
    with pytest.raises(KeyboardInterrupt):
        if how == "partial_fit":
            clf.partial_fit(X, y)
        else:
            clf.fit(X, y)
    if rollback:
        assert state_bytes(clf) == before
    else:
        assert_unfitted(clf, params)
    monkeypatch.undo()
    clf.set_params(warm_start=False).fit(X, y)
    for a, b in zip(model_arrays(clf), model_arrays(tiny(cls).fit(X, y))):
        np.testing.assert_array_equal(a, b)


def test_interrupt_between_batches(cls, monkeypatch):
    """The same at a batch boundary (an exception from a learning-rule hook)."""
    X, y = digits()
    clf = tiny(cls, batch_size=50).fit(X, y)
    params = clf.get_params()
    original = cls._train_batch
    calls = []

    def interrupted(self, *args):
        calls.append(1)
        out = original(self, *args)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(cls, "_train_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        clf.partial_fit(X, y)
    assert_unfitted(clf, params)


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs SIGALRM")
def test_real_asynchronous_interrupts(cls):
    """SIGALRM at random moments of partial_fit calls raises KeyboardInterrupt
    wherever skbnn code is running (also just after a kernel returned).  The
    estimator is then unfitted (the call had begun updating it in place),
    exactly as before the call (the interrupt came before that), or -- when
    it landed after the update, on the way out -- exactly as after an
    uninterrupted call.  Never anything in between."""
    X, y = digits(600)
    rng = np.random.default_rng(0)
    armed = {"on": False, "fired": 0}

    def handler(signum, frame):
        # only inside skbnn: an interrupt in the test's own lines is ignored
        if armed["on"] and "skbnn" in frame.f_code.co_filename.replace("\\", "/").split("/"):
            armed["fired"] += 1
            raise KeyboardInterrupt

    clf = tiny(cls, batch_size=20).fit(X, y)
    durations = []
    for _ in range(3):
        tic = time.perf_counter()
        clf.partial_fit(X, y)
        durations.append(time.perf_counter() - tic)
    duration = min(durations)
    previous = signal.signal(signal.SIGALRM, handler)
    outcomes = {"unfitted": 0, "as before": 0, "as after": 0, "not interrupted": 0}
    try:
        for _ in range(40):  # until enough interrupts landed mid-update
            if outcomes["unfitted"] >= 4:
                break
            if not hasattr(clf, "classes_"):
                clf = tiny(cls, batch_size=20).fit(X, y)
            before = pickle.loads(state_bytes(clf))
            after = pickle.loads(state_bytes(clf)).partial_fit(X, y)
            fired = armed["fired"]
            armed["on"] = True
            signal.setitimer(signal.ITIMER_REAL, float(rng.uniform(0.02, 0.9)) * duration)
            try:
                clf.partial_fit(X, y)
            except KeyboardInterrupt:
                pass
            finally:
                armed["on"] = False
                signal.setitimer(signal.ITIMER_REAL, 0)
            if armed["fired"] == fired:
                outcomes["not interrupted"] += 1
                assert same_state(clf, after)
            elif not hasattr(clf, "classes_"):
                outcomes["unfitted"] += 1
                assert set(vars(clf)) == set(clf.get_params())
            elif same_state(clf, before):
                outcomes["as before"] += 1
            else:
                assert same_state(clf, after)
                outcomes["as after"] += 1
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert outcomes["unfitted"] >= 4, outcomes  # most interrupts land mid-update


def test_bep_rollback_copy_restores_group_schedule(monkeypatch):
    """Rolled-back state includes the learning-rule bookkeeping (BEP's
    group-size schedule, counters, the loss curve), not only the weights."""
    monkeypatch.setattr(BEPClassifier, "_rollback_copy", True)
    X, y = digits()
    clf = tiny(BEPClassifier).fit(X, y)
    curve, n_iter = list(clf.loss_curve_), clf.n_iter_
    Interrupt(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        clf.set_params(warm_start=True, max_iter=3).fit(X, y)
    assert clf.loss_curve_ == curve and clf.n_iter_ == n_iter
