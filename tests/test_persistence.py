"""Persistence: pickles round-trip across processes (and kernel paths), joblib
memory-mapped loading works for prediction and further training, and a pickle
written by another skbnn version warns (scikit-learn's
``InconsistentVersionWarning`` behaviour)."""
import copy
import json
import os
import pickle
import subprocess
import sys
import warnings

import joblib
import numpy as np
import pytest
from robustness import ESTIMATORS, digits, model_arrays, same_state, tiny
from sklearn.exceptions import InconsistentVersionWarning

import skbnn
from skbnn import _kernels
from skbnn.exceptions import InconsistentSkbnnVersionWarning

TESTS = os.path.dirname(os.path.abspath(__file__))

# fits the tiny estimators, pickles them to argv[1] with their predictions on
# the data; or (argv[2] == "load") loads argv[1] and writes its predictions
CHILD = """
import json, pickle, sys, warnings
sys.path.insert(0, {tests!r})
warnings.simplefilter("error")  # a version warning here would be a bug
from robustness import ESTIMATORS, digits, tiny
import skbnn
X, y = digits()
path, mode = sys.argv[1], sys.argv[2]
if mode == "fit":
    models = [tiny(cls).fit(X, y) for cls in ESTIMATORS]
    with open(path, "wb") as f:
        pickle.dump(models, f)
else:
    with open(path, "rb") as f:
        models = pickle.load(f)
print(json.dumps({{"isa": skbnn.get_config()["kernel_path"],
                  "pred": [m.predict(X).tolist() for m in models],
                  "proba": [m.predict_proba(X[:20]).tolist() for m in models]}}))
""".format(tests=TESTS)


def run_child(path, mode, **env):
    r = subprocess.run([sys.executable, "-c", CHILD, str(path), mode], capture_output=True,
                       text=True, env={**os.environ, **env}, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_pickles_round_trip_across_processes(tmp_path):
    """Fitted in a child process, loaded here (and the other way round, in a
    child forced to the portable kernel path): identical predictions, and
    identical to the same fit done here (training is deterministic)."""
    X, y = digits()
    child = run_child(tmp_path / "child.pkl", "fit")
    with open(tmp_path / "child.pkl", "rb") as f, warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = pickle.load(f)
    here = [tiny(cls).fit(X, y) for cls in ESTIMATORS]
    for model, fresh, pred, proba in zip(loaded, here, child["pred"], child["proba"]):
        np.testing.assert_array_equal(model.predict(X), pred)
        np.testing.assert_allclose(model.predict_proba(X[:20]), proba, rtol=0, atol=1e-12)
        assert same_state(model, fresh)

    with open(tmp_path / "parent.pkl", "wb") as f:
        pickle.dump(here, f)
    other = "generic" if _kernels.get_isa() != "generic" else _kernels.available_isas()[-1]
    child = run_child(tmp_path / "parent.pkl", "load", SKBNN_ISA=other)
    assert child["isa"] == other
    for model, pred in zip(here, child["pred"]):
        np.testing.assert_array_equal(model.predict(X), pred)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_joblib_memmap_predicts_and_trains(cls, tmp_path):
    """joblib's read-only memory-mapped arrays: prediction reads them in
    place, partial_fit trains on copies, the file stays untouched."""
    X, y = digits()
    clf = tiny(cls).fit(X, y)
    path = tmp_path / "model.joblib"
    joblib.dump(clf, path)
    loaded = joblib.load(path, mmap_mode="r")
    assert any(isinstance(a, np.memmap) for a in model_arrays(loaded))
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    loaded.partial_fit(X, y)
    clf.partial_fit(X, y)
    for a, b in zip(model_arrays(loaded), model_arrays(clf)):
        np.testing.assert_array_equal(a, b)
    reread = joblib.load(path)
    np.testing.assert_array_equal(reread.predict(X), tiny(cls).fit(X, y).predict(X))


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_pickle_records_the_skbnn_version(cls):
    X, y = digits(100)
    for clf in (tiny(cls), tiny(cls).fit(X, y)):
        state = clf.__getstate__()
        assert state["_skbnn_version"] == skbnn.__version__
        assert "_skbnn_version" not in vars(clf)  # the live object is not changed
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            restored = pickle.loads(pickle.dumps(clf))
            copy.deepcopy(clf)
        assert "_skbnn_version" not in vars(restored)
        assert same_state(restored, clf)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_pickle_from_another_version_warns(cls, monkeypatch):
    X, y = digits(100)
    clf = tiny(cls).fit(X, y)
    monkeypatch.setattr(skbnn, "__version__", "0.0.1")
    old = pickle.dumps(clf)
    monkeypatch.undo()
    with pytest.warns(InconsistentVersionWarning,
                      match=f"{cls.__name__} from skbnn version 0.0.1 when using version "
                            f"{skbnn.__version__}") as record:
        restored = pickle.loads(old)
    w = record[0].message
    assert isinstance(w, InconsistentSkbnnVersionWarning)
    assert (w.original_skbnn_version, w.current_skbnn_version) == ("0.0.1", skbnn.__version__)
    np.testing.assert_array_equal(restored.predict(X), clf.predict(X))  # still usable

    # a pickle without the field (written before versions were recorded)
    state = clf.__getstate__()
    del state["_skbnn_version"]
    blank = cls.__new__(cls)
    with pytest.warns(InconsistentSkbnnVersionWarning, match="unknown"):
        blank.__setstate__(state)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_pickle_without_a_newer_parameter_takes_its_default(cls):
    """A pickle written before a parameter existed loads with that
    parameter at its default: every parameter still at its default is
    dropped from the state here, and must come back."""
    X, y = digits(100)
    clf = tiny(cls).fit(X, y)
    state = clf.__getstate__()
    dropped = [name for name, value in cls().get_params().items()
               if getattr(clf, name) == value]
    assert dropped
    for name in dropped:
        del state[name]
    restored = cls.__new__(cls)
    restored.__setstate__(state)
    assert restored.get_params() == clf.get_params()
    np.testing.assert_array_equal(restored.predict(X), clf.predict(X))


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_unpickling_from_misaligned_buffers(cls):
    """Pickle protocol 5 with out-of-band buffers that land at odd offsets
    (as dask can deliver them): the arrays are realigned on load, so the
    kernels (which refuse misaligned data) predict and train as before."""
    X, y = digits()
    clf = tiny(cls).fit(X, y)
    buffers = []
    data = pickle.dumps(clf, protocol=5, buffer_callback=buffers.append)
    odd = []
    for b in buffers:
        raw = b.raw()
        store = bytearray(raw.nbytes + 1)
        store[1:] = raw
        odd.append(memoryview(store)[1:])
    assert buffers
    restored = pickle.loads(data, buffers=odd)
    assert all(a.flags.aligned for a in model_arrays(restored))
    np.testing.assert_array_equal(restored.predict(X), clf.predict(X))
    restored.partial_fit(X, y)
    clf.partial_fit(X, y)
    assert same_state(restored, clf)
