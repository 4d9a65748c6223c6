"""Self-checks of tests/reference_lowmem.py (the plain-NumPy reference of one
LowMemBNNClassifier step) against finite differences and against the
formulas of Wang et al. (Algorithms 1 and 2, Eq. 1) and of the optimisers,
re-derived here independently."""
import math

import numpy as np
import pytest

from reference_lowmem import (adam_step, backward, bop_step, forward, l1_bn_exact_grad,
                              sgd_step, sgn, train_step, weight_gradient_for_optimizer)

EPS = 1e-4        # Keras BatchNormalization epsilon (standard step)
FLOOR = 1e-5      # psi guard: the low-memory step divides by max(psi, FLOOR)
B, WIDTHS, C = 7, (5, 4, 3), 3


# ---------------------------------------------------------------- helpers

def make_problem(seed=0, B=B, widths=WIDTHS):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(B, widths[0]))
    Vs = [rng.uniform(-0.9, 0.9, size=(widths[i], widths[i + 1]))
          for i in range(len(widths) - 1)]
    biases = [rng.normal(scale=0.3, size=widths[i + 1]) for i in range(len(widths) - 1)]
    y = rng.integers(0, widths[-1], size=B)
    y[:widths[-1]] = np.arange(widths[-1])          # every class present
    return X, Vs, biases, y


def spec_bn(Z, b, training):
    """BN output straight from Algorithm 1 lines 5-7 / Algorithm 2 lines 5-7."""
    centred = Z - Z.mean(axis=0)
    if training == "standard":
        scale = np.sqrt(np.var(Z, axis=0) + EPS)
    else:
        scale = np.maximum(np.mean(np.abs(centred), axis=0), FLOOR)
    return centred / scale + b


def spec_logits(X, Vs, biases, training, float_model):
    h = X
    for i, (V, b) in enumerate(zip(Vs, biases)):
        inp = h if (i == 0 or float_model) else np.where(h >= 0, 1.0, -1.0)
        W = V if float_model else np.where(V >= 0, 1.0, -1.0)
        h = spec_bn(inp @ W, b, training)
    return h


def cross_entropy(logits, y):
    top = logits.max(axis=1)
    lse = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
    return float(np.mean(lse - logits[np.arange(len(y)), y]))


def central_diff(f, x, h=1e-6):
    """d f / d x by central differences; x is perturbed in place and restored."""
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        fp = f()
        x[idx] = old - h
        fm = f()
        x[idx] = old
        grad[idx] = (fp - fm) / (2 * h)
    return grad


def assert_fd(analytic, numeric):
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-9)


# ---------------------------------------------------------------- sgn, forward

def test_sgn_zero_is_plus_one():
    np.testing.assert_array_equal(sgn([-2.0, -1e-300, 0.0, -0.0, 3.0]), [-1, -1, 1, 1, 1])


@pytest.mark.parametrize("training", ["standard", "low_memory"])
@pytest.mark.parametrize("bn_stats", ["post_bias", "pre_bias"])
def test_forward_matches_spec(training, bn_stats):
    X, Vs, biases, _ = make_problem(1)
    cache = forward(X, Vs, biases, training, bn_stats=bn_stats)
    np.testing.assert_allclose(cache["logits"], spec_logits(X, Vs, biases, training, False),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cache["proba"].sum(axis=1), 1.0)
    L = cache["layers"]
    assert L[0]["A_hat"] is not None and np.array_equal(L[0]["A_hat"], X)   # real input
    for i, layer in enumerate(L):
        np.testing.assert_array_equal(layer["V_hat"], np.where(Vs[i] >= 0, 1, -1))
        N = layer["N"]
        np.testing.assert_allclose(N.mean(axis=0), 0, atol=1e-12)
        if training == "low_memory":
            np.testing.assert_allclose(np.abs(N).mean(axis=0), 1, rtol=1e-12)
        else:
            var = layer["Z"].var(axis=0)
            np.testing.assert_allclose((N ** 2).mean(axis=0), var / (var + EPS), rtol=1e-12)
        np.testing.assert_allclose(layer["A_next"], N + biases[i], rtol=1e-12, atol=1e-15)
        src = layer["A_next"] if bn_stats == "post_bias" else N
        np.testing.assert_array_equal(layer["bn_bits"], np.where(src >= 0, 1, -1))
        np.testing.assert_allclose(layer["omega"], np.abs(src).mean(axis=0), rtol=1e-12)
        np.testing.assert_array_equal(layer["ste_mask"], np.abs(layer["A_next"]) <= 1)
    # layer 2: +-1 inputs times +-1 weights -> integers of the parity of n_1
    Z2 = L[1]["Z"]
    np.testing.assert_array_equal(L[1]["A_hat"], np.where(L[0]["A_next"] >= 0, 1, -1))
    assert np.array_equal(Z2, np.round(Z2)) and np.all(np.abs(Z2) <= WIDTHS[1])
    assert np.all((Z2 - WIDTHS[1]) % 2 == 0)


# ---------------------------------------------------------------- float model: FD

@pytest.mark.parametrize("training,bn_backward", [("standard", None),
                                                  ("low_memory", "l1_exact")])
def test_float_model_gradients_match_finite_differences(training, bn_backward):
    X, Vs, biases, y = make_problem(2)

    def loss():
        return cross_entropy(spec_logits(X, Vs, biases, training, True), y)

    cache = forward(X, Vs, biases, training, float_model=True)
    out = backward(cache, y, training, bn_backward=bn_backward)
    assert out["loss"] == pytest.approx(loss(), rel=1e-12)
    for i, g in enumerate(out["layers"]):
        assert_fd(g["G_V"], central_diff(loss, Vs[i]))
        assert_fd(g["G_b"], central_diff(loss, biases[i]))
        np.testing.assert_array_equal(g["G_V_bits"], g["G_V"] >= 0)
    assert out["layers"][0]["G_A"] is None
    assert_fd(out["G_X"], central_diff(loss, X))
    # gradient w.r.t. the hidden BN output, i.e. the input of layer 2
    A2 = cache["layers"][0]["A_next"].copy()

    def loss_from_A2():
        return cross_entropy(spec_bn(A2 @ Vs[1], biases[1], training), y)

    assert_fd(out["layers"][1]["G_A"], central_diff(loss_from_A2, A2))


def test_l1_bn_exact_grad_matches_finite_differences():
    rng = np.random.default_rng(3)
    Z = rng.normal(size=(B, 4))
    Z[:, 3] = 0.7                     # constant channel: psi = 0 < floor
    G = rng.normal(size=(B, 4))
    b = rng.normal(size=4)

    def objective():
        return float(np.sum(G * spec_bn(Z, b, "low_memory")))

    assert_fd(l1_bn_exact_grad(G, Z, FLOOR), central_diff(objective, Z, h=1e-7))


def test_proposed_b2_equals_exact_when_its_approximations_hold():
    # Each channel of Z takes two values with equal counts: mean(s) = 0 and
    # N = s * omega with omega = mean|N| = 1, so Eq. 1 and Algorithm 2 line 12
    # are exact.
    rng = np.random.default_rng(4)
    s = np.array([1, -1, -1, 1, 1, -1, 1, -1], dtype=float)[:, None] * np.ones((1, 3))
    s[:, 1] = np.roll(s[:, 1], 1)
    X = 2.5 + s * np.array([0.5, 3.0, 1.25])
    V = np.eye(3) * 0.5                 # float_model: V_hat = V, so Z = X / 2
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    for bn_stats, bias in [("post_bias", np.zeros(3)), ("pre_bias", rng.normal(size=3))]:
        cache = forward(X, [V], [bias], "low_memory", bn_stats=bn_stats, float_model=True)
        np.testing.assert_allclose(cache["layers"][0]["Z"], X / 2, rtol=1e-15)
        layer = cache["layers"][0]
        np.testing.assert_allclose(layer["omega"], 1.0, rtol=1e-12)
        G_logits = backward(cache, y, "low_memory")["G_logits"]
        exact = l1_bn_exact_grad(G_logits, layer["Z"], FLOOR)
        for kind in ("proposed", "l1", "l1_exact"):
            G_Z = backward(cache, y, "low_memory", bn_backward=kind)["layers"][0]["G_Z"]
            np.testing.assert_allclose(G_Z, exact, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("bn_stats", ["post_bias", "pre_bias"])
def test_eq1_differs_from_exact_by_the_dropped_mean_of_s(bn_stats):
    # exact l1 BN: g - mean(g) - (s - mean(s)) mean(g N); Eq. 1 drops mean(s)
    # (and, post-bias, uses A = N + b in place of N: zero the bias for that).
    X, Vs, biases, y = make_problem(5)
    biases[-1] = np.zeros_like(biases[-1])
    cache = forward(X, Vs, biases, "low_memory", bn_stats=bn_stats, float_model=True)
    last = cache["layers"][-1]
    G = backward(cache, y, "low_memory")["G_logits"]
    N = (last["Z"] - last["Z"].mean(axis=0)) / np.abs(last["Z"] - last["Z"].mean(axis=0)).mean(0)
    g = G / np.abs(last["Z"] - last["Z"].mean(axis=0)).mean(axis=0)
    s = np.where(N >= 0, 1.0, -1.0)
    expected_gap = s.mean(axis=0) * (g * N).mean(axis=0)
    assert np.all(np.abs(expected_gap) > 1e-6)       # B odd: mean(s) != 0
    exact = backward(cache, y, "low_memory", bn_backward="l1_exact")["layers"][-1]["G_Z"]
    eq1 = backward(cache, y, "low_memory", bn_backward="l1")["layers"][-1]["G_Z"]
    np.testing.assert_allclose(exact - eq1, np.broadcast_to(expected_gap, eq1.shape),
                               rtol=1e-10, atol=1e-14)


# ---------------------------------------------------------------- binary model

@pytest.mark.parametrize("training", ["standard", "low_memory"])
def test_binary_last_layer_matches_finite_differences(training):
    X, Vs, biases, y = make_problem(7)
    cache = forward(X, Vs, biases, training)
    ZL = cache["layers"][-1]["Z"].copy()
    a = ZL - ZL.mean(axis=0)
    # integer Z can sit exactly on its mean, where |a| (l1 scale) has a kink;
    # seed 7 is chosen so that it does not
    assert np.min(np.abs(a)) > 1e-3

    def loss_from_Z():
        return cross_entropy(spec_bn(ZL, biases[-1], training), y)

    def loss():
        return cross_entropy(spec_logits(X, Vs, biases, training, False), y)

    out = backward(cache, y, training)
    assert out["loss"] == pytest.approx(loss(), rel=1e-12)
    assert_fd(out["layers"][-1]["G_b"], central_diff(loss, biases[-1]))
    exact = out if training == "standard" else backward(cache, y, training,
                                                        bn_backward="l1_exact")
    assert_fd(exact["layers"][-1]["G_Z"], central_diff(loss_from_Z, ZL))


@pytest.mark.parametrize("training", ["standard", "low_memory"])
@pytest.mark.parametrize("bn_stats", ["post_bias", "pre_bias"])
def test_binary_backward_follows_the_algorithm_lines(training, bn_stats):
    X, Vs, biases, y = make_problem(7)
    cache = forward(X, Vs, biases, training, bn_stats=bn_stats)
    out = backward(cache, y, training)
    L1, L2 = cache["layers"]
    g1, g2 = out["layers"]
    onehot = np.eye(C)[y]
    G_logits = (cache["proba"] - onehot) / B                        # mean loss
    np.testing.assert_allclose(out["G_logits"], G_logits, rtol=1e-12)

    # BN backward of the last layer, written from Algorithm 1 lines 10-12 /
    # Algorithm 2 lines 11-12
    Z = L2["Z"]
    centred = Z - Z.mean(axis=0)
    if training == "standard":
        psi = np.sqrt(centred.var(axis=0) + EPS)
        N = centred / psi
        v = G_logits / psi
        G_Z = v - v.mean(0) - (v * N).mean(0) * N
    else:
        psi = np.abs(centred).mean(axis=0)
        N = centred / psi
        src = N + biases[1] if bn_stats == "post_bias" else N
        bits, omega = np.where(src >= 0, 1.0, -1.0), np.abs(src).mean(axis=0)
        v = G_logits / psi
        G_Z = v - v.mean(0) - (v * bits * omega).mean(0) * bits
    np.testing.assert_allclose(g2["G_Z"], G_Z, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(g2["G_b"], G_logits.sum(axis=0), rtol=1e-12, atol=1e-15)

    # Algorithm 2 line 14 + STE mask: G_A_2 is zero exactly where |A_2| > 1
    A2 = L1["A_next"]
    outside = np.abs(A2) > 1
    assert outside.any() and (~outside).any()
    raw = g2["G_Z"] @ np.where(Vs[1] >= 0, 1.0, -1.0).T
    assert np.all(g2["G_A"][outside] == 0)
    np.testing.assert_allclose(g2["G_A"][~outside], raw[~outside], rtol=1e-12)
    np.testing.assert_allclose(g1["G_b"], g2["G_A"].sum(axis=0), rtol=1e-12, atol=1e-15)
    assert g1["G_A"] is None

    # Algorithm 2 lines 15-16: binary input for layer 2, the real X for layer 1
    for g, A_hat in ((g1, X), (g2, np.where(A2 >= 0, 1.0, -1.0))):
        G_V = A_hat.T @ g["G_Z"]
        np.testing.assert_allclose(g["G_V"], G_V, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(g["G_V_bits"], G_V >= 0)
        assert g["G_V"].dtype == np.float64 and g["G_V_bits"].dtype == bool


@pytest.mark.parametrize("training", ["standard", "low_memory"])
def test_zero_weight_gradient_gives_bit_one(training):
    # a zero input feature gives an exactly zero row of G_V_1; sgn(0) = +1
    X, Vs, biases, y = make_problem(9)
    X[:, 0] = 0.0
    g1 = backward(forward(X, Vs, biases, training), y, training)["layers"][0]
    np.testing.assert_array_equal(g1["G_V"][0], 0.0)
    assert g1["G_V_bits"][0].all() and not g1["G_V_bits"].all()


# ---------------------------------------------------------------- optimisers

def test_adam_step_by_hand():
    V, m, v = np.array([0.5, -0.2]), np.array([0.1, 0.0]), np.array([0.01, 0.0])
    g = np.array([0.2, -0.5])
    t, lr = 2, 0.01
    Vn, mn, vn = adam_step(V, m, v, g, t, lr)
    m_hand = [0.9 * 0.1 + 0.1 * 0.2, 0.1 * -0.5]                    # 0.11, -0.05
    v_hand = [0.999 * 0.01 + 0.001 * 0.04, 0.001 * 0.25]            # 0.01003, 0.00025
    rate = 0.01 * math.sqrt(1 - 0.999 ** 2) / (1 - 0.9 ** 2)
    V_hand = [0.5 - rate * 0.11 / (math.sqrt(0.01003) + 1e-8),
              -0.2 - rate * -0.05 / (math.sqrt(0.00025) + 1e-8)]
    np.testing.assert_allclose(mn, m_hand, rtol=1e-14)
    np.testing.assert_allclose(vn, v_hand, rtol=1e-14)
    np.testing.assert_allclose(Vn, V_hand, rtol=1e-14)
    # first step of Adam moves every weight by ~lr against the gradient sign
    V1, _, _ = adam_step(V, np.zeros(2), np.zeros(2), g, 1, lr)
    np.testing.assert_allclose(V1 - V, [-lr, lr], rtol=1e-5)
    # eps inside the sqrt (C++ form)
    V2, _, _ = adam_step(V, m, v, g, t, lr, eps_inside_sqrt=True)
    np.testing.assert_allclose(V2[0], 0.5 - rate * 0.11 / math.sqrt(0.01003 + 1e-8),
                               rtol=1e-14)


def test_sgd_step_by_hand():
    Vn, un = sgd_step(np.array([0.5]), np.array([0.1]), np.array([0.2]), 0.1, 0.9)
    np.testing.assert_allclose(un, [0.9 * 0.1 - 0.1 * 0.2])          # 0.07
    np.testing.assert_allclose(Vn, [0.57])


def test_bop_flips_only_where_the_rule_says():
    gamma, tau = 0.1, 0.05
    w = np.array([1.0, 1.0, -1.0, -1.0, 1.0, -1.0, 1.0])
    m = np.array([0.9, 0.9, -0.9, 0.9, 0.0, 0.0, 0.5])
    g = np.array([1.0, -1.0, -1.0, 1.0, 0.4, -0.4, -6.0])
    # m_new = 0.9 m + 0.1 g
    m_hand = np.array([0.91, 0.71, -0.91, 0.91, 0.04, -0.04, -0.15])
    # flip iff |m_new| > 0.05 and sign(m_new) == sign(w)
    w_hand = np.array([-1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0])
    wn, mn = bop_step(w, m, g, gamma, tau)
    np.testing.assert_allclose(mn, m_hand, rtol=1e-12)
    np.testing.assert_array_equal(wn, w_hand)


def test_weight_gradient_from_bits_and_cancellation():
    V = np.array([[0.5, -1.0, 1.0], [1.2, -0.99, 0.0]])
    bits = np.array([[True, False, True], [False, False, True]])
    r = 0.5                                                          # 1/sqrt(4)
    np.testing.assert_array_equal(weight_gradient_for_optimizer(bits, V, 4),
                                  [[r, 0, 0], [0, -r, r]])
    r = 1 / math.sqrt(6)
    np.testing.assert_allclose(weight_gradient_for_optimizer(bits, V, 4, "n_weights"),
                               [[r, 0, 0], [0, -r, r]], rtol=1e-15)
    np.testing.assert_array_equal(weight_gradient_for_optimizer(bits, V, 4, "none"),
                                  [[1, 0, 0], [0, -1, 1]])


# ---------------------------------------------------------------- whole step

def test_train_step_first_updates():
    X, Vs, biases, y = make_problem(8)
    Vs[0][0, 0], Vs[1][1, 2] = 1.5, -1.0                             # cancelled weights
    lr = 1e-3
    # low-memory + Adam: first step moves by ~lr against the gradient bit
    newV, newb, state, grads = train_step(X, y, [V.copy() for V in Vs], biases, None,
                                          "low_memory")
    assert state["t"] == 1
    for V, Vn, g in zip(Vs, newV, grads["layers"]):
        expected = np.where(np.abs(V) >= 1, 0.0, -lr * np.where(g["G_V_bits"], 1.0, -1.0))
        np.testing.assert_allclose(Vn - V, expected, rtol=1e-5, atol=1e-12)
    # standard + SGD: first step V <- V - lr G_V, cancelled where |V| >= 1
    newV, _, _, grads = train_step(X, y, Vs, biases, None, "standard", solver="sgd", lr=0.1)
    for V, Vn, g in zip(Vs, newV, grads["layers"]):
        expected = np.where(np.abs(V) >= 1, 0.0, -0.1 * g["G_V"])
        np.testing.assert_allclose(Vn - V, expected, rtol=1e-12, atol=1e-15)
    # low-memory + Bop on +-1 weights: m = gamma g, |m| > 1e-8, so every weight
    # whose sign equals the gradient bit's flips
    W = [np.where(V >= 0, 1.0, -1.0) for V in Vs]
    newW, _, _, grads = train_step(X, y, W, biases, None, "low_memory", solver="bop")
    for w, wn, g in zip(W, newW, grads["layers"]):
        flip = np.where(g["G_V_bits"], 1.0, -1.0) == w
        np.testing.assert_array_equal(wn, np.where(flip, -w, w))
