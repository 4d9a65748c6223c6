"""BEPClassifier: the algorithm against a NumPy reference, the prototypes,
the group-size schedule, the gate and its parameters (shared behaviour:
test_estimators.py)."""
import numpy as np
import pytest
from epoch_check import assert_next_epoch_matches
from reference import bep_batch_step

from skbnn import BEPClassifier, _kernels
from skbnn._bep import bef_prototypes, next_divisor, trigger_mask
from skbnn._engine import init_hidden_weights


# ------------------------------------------------------------------ algorithm
@pytest.mark.parametrize("n_classes,widths,groups,gate", [
    (4, (7, 9), (7, 3), 0.3),        # odd widths
    (3, (6, 4), (3, 2), 0.05),       # even widths: z = 0 ties, gates closing entirely
    (2, (8, 5, 6), (4, 5, 3), 1.0),  # three layers, no gating
    (5, (10,), (5,), 0.1),           # one layer: no backward pass
])
@pytest.mark.parametrize("strict_ties", [False, True])
@pytest.mark.parametrize("ternary,selection,zero_act", [
    (False, "visible", False), (True, "visible", False), (False, "hidden", False),
    (True, "hidden", False), (True, "visible", True), (True, "hidden", True),
    (False, "visible", True)])
def test_training_epoch_matches_numpy_reference(n_classes, widths, groups, gate, strict_ties,
                                                ternary, selection, zero_act, isa):
    """An epoch of the estimator == the BEP step in NumPy: trigger, gated
    back-projection, masks, CP update and reinforcement from the documented
    counter-based stream; with ternary weights and activations (sign(0) =
    0) and with the winners ranked by the hidden field too."""
    rng = np.random.default_rng(len(widths) * 10 + n_classes)
    X = rng.choice([-1, 1], size=(64, 70))
    y = rng.integers(0, n_classes, size=64)
    y[:n_classes] = np.arange(n_classes)
    kw = dict(hidden_layer_sizes=widths, group_size=groups, binarize_input=None, batch_size=16,
              shuffle=False, random_state=3, robustness=0.5, gate_threshold=gate,
              reinforcement_prob=0.9, init_std=4.0, weight_clip=40, group_schedule=None,
              strict_ties=strict_ties, odd_init=not ternary, ternary_weights=ternary,
              selection=selection, ternary_activations=zero_act)
    clf = BEPClassifier(max_iter=1, **kw).fit(X, y)
    assert_next_epoch_matches(
        clf, X, y, lambda Hs, Xb, yb, p, stream: bep_batch_step(
            Hs, clf.prototypes_, Xb, yb, 0.5, gate, groups, p, clf._seed, stream, 40,
            _kernels.uniform, strict_ties, ternary, selection == "hidden", zero_act), 16)


def test_trigger_rule():
    scores = np.array([[5, 3, 1], [2, 4, 4], [0, 0, 9]], dtype=np.int32)
    pred, trig = trigger_mask(scores, np.array([0, 1, 2]), 2.5)
    np.testing.assert_array_equal(pred, [0, 1, 2])  # ties -> lowest index
    np.testing.assert_array_equal(trig, [True, True, False])  # margins 2, 0, 9


def test_reinforcement_norm_width_uses_layer_width(digits):
    """'width' divides by K_l instead of the fan-in: with p_r huge, every
    weight of both variants moves, but at different rates (layer 1)."""
    X_tr, _, y_tr, _ = digits
    kw = dict(hidden_layer_sizes=(35,), group_size=35, max_iter=1, random_state=0,
              group_schedule=None, reinforcement_prob=2.0)
    fan_in = BEPClassifier(**kw).fit(X_tr, y_tr)
    width = BEPClassifier(reinforcement_norm="width", **kw).fit(X_tr, y_tr)
    moved = [np.abs(c.hidden_weights_[0].astype(int)).sum() for c in (fan_in, width)]
    assert moved[1] > moved[0]  # sqrt(2/(pi 35)) > sqrt(2/(pi 64 * 32 bits))


# ------------------------------------------------------------------ prototypes
def test_bef_prototypes_are_balanced_and_deterministic():
    P = bef_prototypes(10, 525, 1.0, 100 * 10 * 525, np.random.default_rng(0))
    assert P.dtype == np.int8 and set(np.unique(P)) == {-1, 1}
    G = P.astype(int) @ P.T
    off = G[~np.eye(10, dtype=bool)]
    rnd = np.random.default_rng(0).choice([-1, 1], size=(10, 525))
    off_rnd = (rnd @ rnd.T)[~np.eye(10, dtype=bool)]
    # equiangular frame: near the simplex bound -K/(C-1) and far less spread than random
    assert abs(off.mean() + 525 / 9) < 2 and off.std() < off_rnd.std() / 4
    np.testing.assert_array_equal(P, bef_prototypes(10, 525, 1.0, 100 * 10 * 525,
                                                    np.random.default_rng(0)))
    two = bef_prototypes(2, 35, 1.0, 7000, np.random.default_rng(1))
    np.testing.assert_array_equal(two[0], -two[1])  # two classes: antipodal


def test_bef_flips_accepts_only_improvements():
    P = np.random.default_rng(2).choice(np.array([-1, 1], dtype=np.int8), size=(4, 33))

    def objective(M):
        g = (M.astype(int) @ M.T)[np.triu_indices(4, 1)]
        return g.sum() + 0.5 * g.var()

    before = objective(P)
    rows = np.random.default_rng(3).integers(0, 4, size=500, dtype=np.int32)
    cols = np.random.default_rng(4).integers(0, 33, size=500, dtype=np.int32)
    accepted = _kernels.bef_flips(P, rows, cols, 0.5)
    assert 0 < accepted < 500 and objective(P) < before
    with pytest.raises(ValueError, match="out of range"):
        _kernels.bef_flips(P, np.array([4], dtype=np.int32), np.array([0], dtype=np.int32), 1.0)


def test_prototype_options(digits):
    X_tr, X_te, y_tr, y_te = digits
    for kind in ("bef", "random"):
        clf = BEPClassifier(hidden_layer_sizes=(135,), group_size=15, prototypes=kind,
                            max_iter=10, random_state=0).fit(X_tr, y_tr)
        assert clf.prototypes_.shape == (10, 135)
        assert clf.score(X_te, y_te) > 0.8


# ------------------------------------------------------------------ schedule
def test_next_divisor():
    assert [next_divisor(525, g) for g in (15, 21, 25, 35, 525)] == [21, 25, 35, 75, 525]
    assert next_divisor(7, 1) == 7


def test_group_schedule_steps_after_patience(digits):
    X_tr, _, y_tr, _ = digits
    clf = BEPClassifier(hidden_layer_sizes=(36, 36), group_size=2, group_schedule="train",
                        group_patience=1, max_iter=1, random_state=0).fit(X_tr, y_tr)
    state = clf._training_state()
    clf._end_epoch(state, 1.0, None)  # no improvement over the first epoch's error
    assert clf.group_sizes_ == (3, 3)
    clf._end_epoch(state, 0.01, None)  # improvement: no step
    assert clf.group_sizes_ == (3, 3)
    for _ in range(20):
        clf._end_epoch(state, 0.9, None)
    assert clf.group_sizes_ == (36, 36)  # stays at the width


def test_group_schedule_uses_validation_split(digits):
    X_tr, _, y_tr, _ = digits
    clf = BEPClassifier(hidden_layer_sizes=(35,), group_size=5, group_patience=1, max_iter=12,
                        random_state=0).fit(X_tr, y_tr)
    assert len(clf.validation_scores_) == 12  # the hold-out of group_schedule='validation'
    assert clf.group_sizes_[0] in (5, 7, 35) and clf.group_sizes_ != (5,)
    fixed = BEPClassifier(hidden_layer_sizes=(35,), group_size=5, group_schedule=None,
                          max_iter=3, random_state=0).fit(X_tr, y_tr)
    assert fixed.group_sizes_ == (5,) and fixed.validation_scores_ == []
    # too little data for a split: the schedule falls back to the training error
    tiny = BEPClassifier(hidden_layer_sizes=(35,), group_size=5, max_iter=2,
                         random_state=0).fit(X_tr[:15], y_tr[:15])
    assert tiny.validation_scores_ == [] and tiny.t_ == 30


# ------------------------------------------------------------------ gate
def test_closed_gate_sends_no_signal(digits):
    """gate_threshold=0 opens only neurons with z = 0, which never happens with
    odd widths: the first layer receives no signal and keeps its initial
    weights (reinforcement off), while the last layer learns."""
    X_tr, _, y_tr, _ = digits
    clf = BEPClassifier(hidden_layer_sizes=(35, 35), group_size=7, gate_threshold=0.0,
                        reinforcement_prob=0.0, max_iter=2, random_state=0).fit(X_tr, y_tr)
    rng = np.random.default_rng([clf._seed, 0])  # the estimator's initialisation stream
    h0 = init_hidden_weights(35, clf.binarizer_.n_output_bits_, 64.0, True, 32767, rng)
    h1 = init_hidden_weights(35, 35, 64.0, True, 32767, rng)
    np.testing.assert_array_equal(clf.hidden_weights_[0], h0)
    assert not np.array_equal(clf.hidden_weights_[1], h1)


def test_fitted_attributes(digits):
    X_tr, _, y_tr, _ = digits
    clf = BEPClassifier(max_iter=2, random_state=0).fit(X_tr, y_tr)
    assert [h.shape for h in clf.hidden_weights_] == [(525, 256), (525, 525)]  # 4-bit codes
    assert all(h.dtype == np.int16 for h in clf.hidden_weights_)
    assert np.all(clf.hidden_weights_[1].astype(int) % 2 == 1)  # odd init, +/-2 steps
    assert clf.prototypes_.shape == (10, 525) and clf.temperature_ == 525 / 8


def test_binary_problem_uses_two_prototypes(digits):
    X_tr, X_te, y_tr, y_te = digits
    tr, te = y_tr < 2, y_te < 2
    clf = BEPClassifier(hidden_layer_sizes=(35,), group_size=7, max_iter=5,
                        random_state=0).fit(X_tr[tr], y_tr[tr])
    np.testing.assert_array_equal(clf.prototypes_[0], -clf.prototypes_[1])
    dec = clf.decision_function(X_te[te])
    assert dec.ndim == 1
    np.testing.assert_array_equal(clf.predict(X_te[te]), (dec > 0).astype(int))
    assert clf.score(X_te[te], y_te[te]) > 0.95


BAD_PARAMS = [
    (dict(gate_threshold=1.5), ValueError, "gate_threshold"),
    (dict(gate_threshold=-0.1), ValueError, "gate_threshold"),
    (dict(reinforcement_norm="rows"), ValueError, "reinforcement_norm"),
    (dict(group_schedule="test"), ValueError, "group_schedule"),
    (dict(group_patience=0), ValueError, "group_patience"),
    (dict(prototypes="hadamard"), ValueError, "prototypes"),
    (dict(bef_alpha=-1.0), ValueError, "bef_alpha"),
    (dict(bef_max_iter=-5), ValueError, "bef_max_iter"),
    (dict(thermometer="log"), ValueError, "thermometer"),
    (dict(selection="stable"), ValueError, "selection"),
    (dict(selection=None), ValueError, "selection"),
]


def test_hidden_selection_refuses_fan_ins_beyond_int32_fields(monkeypatch, digits):
    X_tr, _, y_tr, _ = digits
    monkeypatch.setattr(_kernels, "MAX_FIELD_FAN_IN", 63)  # digits: 64 input bits
    clf = BEPClassifier(hidden_layer_sizes=(35,), group_size=7, max_iter=1,
                        binarize_input="median", selection="hidden")
    with pytest.raises(ValueError, match="selection='hidden' needs fan-ins of at most 63"):
        clf.fit(X_tr, y_tr)
    clf.set_params(selection="visible").fit(X_tr, y_tr)


@pytest.mark.parametrize("params,error,match", BAD_PARAMS)
def test_bad_parameters(params, error, match, digits):
    X_tr, _, y_tr, _ = digits
    with pytest.raises(error, match=match):
        BEPClassifier(**{"hidden_layer_sizes": (35,), "group_size": 7, "max_iter": 1,
                         **params}).fit(X_tr, y_tr)
