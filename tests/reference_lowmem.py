"""Plain-NumPy reference of one LowMemBNNClassifier training step, written from
Wang et al.'s Algorithms 1 (standard) and 2 (low memory), their Eq. 1 and
the documented readings, not from the optimised implementation.

Everything is float64 and unpacked (one array element per bit); the float16
storage and the bit packing of the real implementation are not emulated.
Layer l (1-based in the formulas) is index l-1 here.  Shapes:
X is (B, n_0), Vs[l] is (n_{l-1}, n_l) (rows = inputs), biases[l] is (n_l,).

Labels in the comments: F1-F6, B1-B6 and U1 are lines of Algorithm 2
(F1-F3 = lines 2-4, F4 = lines 5-6, F5 = line 7, F6 = line 8; Bk = line
10+k; U1 = line 18); "step k" is a step of Algorithm 1 (steps 1-3 = lines
2-4, step 4 = lines 5-7, step 5 = the sign's straight-through estimator,
step 6 = lines 10-12, steps 7-9 = lines 13-15).

Names:
- ``sgn``                           sign with sgn(0) = +1
- ``forward``                       forward pass with batch statistics (steps 1-5, F1-F6)
- ``l1_bn_exact_grad``              exact gradient of l1 BN w.r.t. Z
- ``bn_backward_grad``              one BN backward (l2 / l1 Eq. 1 / proposed B2 / l1_exact)
- ``backward``                      loss and backward pass (steps 6-9, B1-B6)
- ``cancel_gradient``               weight-gradient cancellation
- ``weight_gradient_for_optimizer`` +-1/sqrt(fan_in) from the bit, cancelled (U1)
- ``bit_gradient``                  the same without cancellation (Bop)
- ``adam_step``, ``sgd_step``, ``bop_step``   the three optimisers of Wang et al., Table 5
- ``train_step``                    forward + backward + update of one batch
"""
import numpy as np

TRAININGS = ("standard", "low_memory")
BN_STATS = ("post_bias", "pre_bias")
BN_BACKWARDS = ("l2", "l1", "proposed", "l1_exact")
GRAD_SCALES = ("fan_in", "n_weights", "none")


def sgn(x):
    """+1 where x >= 0, else -1 (float64); sgn(0) = +1 everywhere."""
    return np.where(np.asarray(x) >= 0, 1.0, -1.0)


# --------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------

def forward(X, Vs, biases, training, *, bn_stats="post_bias", eps=1e-4, psi_floor=1e-5,
            float_model=False):
    """Training-time forward pass (batch statistics) of the binary MLP.

    Returns a dict with keys
      'layers': list, one dict per layer with
          'A'       input A_l, float (B, n_{l-1}); layer 1: X
          'A_hat'   what multiplies the weights: the real input X for layer 1,
                    sgn(A_l) for l >= 2 (A_l itself when float_model)
          'V', 'V_hat'  latent weights and sgn(V) (V itself when float_model)
          'Z'       A_hat @ V_hat, (B, n_l)
          'mu'      per-channel batch mean of Z
          'psi'     per-channel batch scale: standard sqrt(var + eps) (population
                    variance, step 4, Keras eps); low_memory mean |Z - mu| (F4)
          'psi_div' the divisor actually used: psi (standard) or
                    max(psi, psi_floor) (low_memory, guards psi = 0)
          'N'       (Z - mu) / psi_div, normalised value before the bias
          'A_next'  BN output A_{l+1} = N + b (the logits for the last layer)
          'bn_bits' bits of the BN backward, for the last layer too:
                    sgn(A_next) ('post_bias', the paper) or sgn(N)
                    ('pre_bias', the authors' Keras emulation)
          'omega'   mean |A_next| ('post_bias') or mean |N| ('pre_bias') (F6)
          'ste_mask' bool 1{|A_next| <= 1} of the sign feeding the next layer
                    (all True when float_model; computed for the last layer too
                    but unused there, the logits go to the softmax)
      'logits', 'proba' (softmax of the logits), and the settings
      'training', 'bn_stats', 'eps', 'psi_floor', 'float_model'.
    """
    if training not in TRAININGS:
        raise ValueError(training)
    if bn_stats not in BN_STATS:
        raise ValueError(bn_stats)
    A = np.asarray(X, dtype=np.float64)
    layers = []
    for idx, (V, b) in enumerate(zip(Vs, biases)):
        V = np.asarray(V, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        if idx == 0 or float_model:
            A_hat = A                      # layer 1 takes the real input
        else:
            A_hat = sgn(A)                 # F1 / step 1
        V_hat = V if float_model else sgn(V)   # F2 / step 2
        Z = A_hat @ V_hat                  # F3 / step 3
        mu = Z.mean(axis=0)
        a = Z - mu
        if training == "standard":
            psi = np.sqrt((a ** 2).mean(axis=0) + eps)     # Keras BN, eps 1e-4
            psi_div = psi
        else:
            psi = np.abs(a).mean(axis=0)                   # l1: mean absolute deviation
            psi_div = np.maximum(psi, psi_floor)
        N = a / psi_div
        A_next = N + b                     # F5 / step 4
        if bn_stats == "post_bias":
            bn_bits = sgn(A_next)
            omega = np.abs(A_next).mean(axis=0)            # F6
        else:
            bn_bits = sgn(N)
            omega = np.abs(N).mean(axis=0)
        if float_model:
            ste_mask = np.ones(A_next.shape, dtype=bool)
        else:
            ste_mask = np.abs(A_next) <= 1.0
        layers.append(dict(A=A, A_hat=A_hat, V=V, V_hat=V_hat, Z=Z, mu=mu, psi=psi,
                           psi_div=psi_div, N=N, A_next=A_next, bn_bits=bn_bits,
                           omega=omega, ste_mask=ste_mask))
        A = A_next
    logits = A
    shifted = logits - logits.max(axis=1, keepdims=True)
    proba = np.exp(shifted)
    proba /= proba.sum(axis=1, keepdims=True)
    return dict(layers=layers, logits=logits, proba=proba, training=training,
                bn_stats=bn_stats, eps=eps, psi_floor=psi_floor, float_model=float_model)


# --------------------------------------------------------------------------
# BN backward
# --------------------------------------------------------------------------

def l1_bn_exact_grad(G_A, Z, psi_floor=1e-5):
    """Exact gradient w.r.t. Z of sum(G_A * A) for A = (Z - mu)/max(psi, floor) + b,
    psi = mean |Z - mu|:
        g - mean(g) - (s - mean(s)) * mean(g * N),  g = G_A/psi, s = sgn(Z - mu).
    In a channel where psi < psi_floor the divisor is the constant floor, so the
    psi term vanishes there: g - mean(g).
    """
    G_A = np.asarray(G_A, dtype=np.float64)
    Z = np.asarray(Z, dtype=np.float64)
    a = Z - Z.mean(axis=0)
    psi = np.abs(a).mean(axis=0)
    floored = psi < psi_floor
    psi_div = np.maximum(psi, psi_floor)
    N = a / psi_div
    s = sgn(a)
    g = G_A / psi_div
    psi_term = (s - s.mean(axis=0)) * (g * N).mean(axis=0)
    return g - g.mean(axis=0) - np.where(floored, 0.0, psi_term)


def bn_backward_grad(G_A, layer, kind, psi_floor=1e-5):
    """G_Z of one BN layer from the incoming G_A = G_{A_{l+1}} (B, n_l).

    kind:
      'l2'       v - mean(v) - mean(v*N)*N           (step 6, exact l2 on the pre-bias N)
      'l1'       v - mean(v) - mean(v*A)*sgn(A)      (paper Eq. 1; A and sgn(A)
                 taken from the same source as bn_stats: A_next for 'post_bias',
                 N for 'pre_bias')
      'proposed' v - mean(v) - mean(v*s*omega)*s     (B1-B2, s = bn_bits)
      'l1_exact' l1_bn_exact_grad (not a paper mode; for checks)
    with v = G_A / psi_div (B1).
    """
    G_A = np.asarray(G_A, dtype=np.float64)
    if kind == "l1_exact":
        return l1_bn_exact_grad(G_A, layer["Z"], psi_floor)
    v = G_A / layer["psi_div"]                           # B1 / step 6
    centred = v - v.mean(axis=0)
    if kind == "l2":
        N = layer["N"]
        return centred - (v * N).mean(axis=0) * N
    if kind == "l1":
        A = layer["l1_source"]
        return centred - (v * A).mean(axis=0) * sgn(A)
    if kind == "proposed":
        s = layer["bn_bits"]
        return centred - (v * s * layer["omega"]).mean(axis=0) * s   # B2
    raise ValueError(kind)


# --------------------------------------------------------------------------
# backward
# --------------------------------------------------------------------------

def rule_signal(algorithm, G_logits, y):
    """The per-sample signal projected to the hidden activations: None
    (backprop), the output error ``G_logits`` (DFA) or the centred one-hot
    target ``onehot - 1/C`` (DRTP); Crulis et al., arXiv 2408.04460."""
    if algorithm == "backprop":
        return None
    if algorithm == "dfa":
        return G_logits
    if algorithm == "drtp":
        B, C = G_logits.shape
        t = np.full((B, C), -1.0 / C)
        t[np.arange(B), y] += 1.0
        return t
    raise ValueError(algorithm)


def _cosine_kernel(X):
    norm = np.linalg.norm(X, axis=1, keepdims=True)
    norm = norm + 1e-6 * (norm <= 0)
    Xn = X / norm
    return Xn @ Xn.T


def _hsic_biased(A, B):
    """HSIC(A, B) = tr(A H B H) / m^2, H = I - 11^T/m, with explicit matrices."""
    m = A.shape[0]
    H = np.eye(m) - np.ones((m, m)) / m
    return np.trace(A @ H @ B @ H) / m ** 2


def _target_kernel(y, n_classes):
    t = np.eye(n_classes)[np.asarray(y)]
    return _cosine_kernel(t - t.mean(axis=1, keepdims=True))


def hsic_loss(z, y, n_classes, gamma=2.0):
    """The HSIC bottleneck's local loss ``HSIC(z, z) - gamma HSIC(y, z)`` of
    activations ``z`` (B, D), cosine kernels on ``z`` and on the centred
    one-hot target (Ma et al. 2020; Crulis et al., arXiv 2408.04460)."""
    K = _cosine_kernel(np.asarray(z, dtype=np.float64))
    return _hsic_biased(K, K) - gamma * _hsic_biased(_target_kernel(y, n_classes), K)


def hsic_gradient(z, y, n_classes, gamma=2.0):
    """d hsic_loss / dz by the chain rule through explicit matrices: the
    kernel's gradient ``G_K = (2 H K H - gamma H L H) / m^2``, then ``K =
    Zn Zn^T`` (``G_Zn = (G_K + G_K^T) Zn``), then the row normalisation
    ``Zn = Z / |Z|`` (``G_Z = (G_Zn - Zn <Zn, G_Zn>) / |Z|``)."""
    z = np.asarray(z, dtype=np.float64)
    m = z.shape[0]
    H = np.eye(m) - np.ones((m, m)) / m
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    Zn = z / norm
    K = Zn @ Zn.T
    G_K = (2 * H @ K @ H - gamma * H @ _target_kernel(y, n_classes) @ H) / m ** 2
    G_Zn = (G_K + G_K.T) @ Zn
    return (G_Zn - Zn * (Zn * G_Zn).sum(axis=1, keepdims=True)) / norm


def backward(cache, y, training, *, bn_backward=None, algorithm="backprop", feedback=None,
             hsic_gamma=2.0):
    """Loss and gradients of one batch, from ``forward``'s cache.

    algorithm: 'backprop', or 'dfa' / 'drtp' with ``feedback[l]`` (C,
    n_{l+1}), the fixed matrix of the input of layer l+1: that input's
    gradient is ``signal @ feedback[l]`` (see ``rule_signal``) times its STE
    mask instead of the backpropagated one (then 'G_A' and 'G_X' are None);
    'hsic': that input ``z`` receives ``hsic_gradient(z)`` times its mask.

    bn_backward: None -> 'l2' for training='standard', 'proposed' for
    'low_memory'; or one of 'l2', 'l1', 'proposed' (Table 5 ablation) or
    'l1_exact' (exact l1 BN gradient, only with training='low_memory').

    Returns a dict
      'loss'      mean softmax cross-entropy over the batch (Keras default)
      'G_logits'  (softmax - onehot) / B
      'G_X'       G_{Z_1} V_hat_1^T, gradient w.r.t. the real input (no mask)
      'layers'    one dict per layer with
          'G_Z'       (B, n_l)
          'G_b'       (n_l,) sum over the batch of the incoming G_{A_{l+1}} (step 7, B3)
          'G_A'       G_Z V_hat^T times the STE mask of the layer's input (B4);
                      None for layer 1
          'G_V'       A_hat^T G_Z, float64 (B5; layer 1 uses the real X)
          'G_V_bits'  G_V >= 0 (bool, B6; sgn(0) = +1)
    """
    if training != cache["training"]:
        raise ValueError("backward training=%r but forward ran %r"
                         % (training, cache["training"]))
    if bn_backward is None:
        bn_backward = "l2" if training == "standard" else "proposed"
    if bn_backward not in BN_BACKWARDS:
        raise ValueError(bn_backward)
    if bn_backward == "l1_exact" and training != "low_memory":
        raise ValueError("'l1_exact' needs the l1 forward (training='low_memory')")
    y = np.asarray(y, dtype=np.int64)
    layers = cache["layers"]
    logits, proba = cache["logits"], cache["proba"]
    B, C = logits.shape
    onehot = np.zeros((B, C))
    onehot[np.arange(B), y] = 1.0
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_proba = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_proba[np.arange(B), y].mean()
    G_logits = (proba - onehot) / B

    grads = [None] * len(layers)
    signal = None if algorithm == "hsic" else rule_signal(algorithm, G_logits, y)
    G = G_logits                                   # G_{A_{L+1}}
    G_X = None
    for idx in range(len(layers) - 1, -1, -1):
        layer = layers[idx]
        if bn_backward == "l1":
            layer = dict(layer, l1_source=(layer["A_next"] if cache["bn_stats"] == "post_bias"
                                           else layer["N"]))
        G_Z = bn_backward_grad(G, layer, bn_backward, cache["psi_floor"])
        G_b = G.sum(axis=0)                                          # B3
        G_V = layer["A_hat"].T @ G_Z                                 # B5
        G_V_bits = G_V >= 0                                          # B6
        G_in = G_Z @ layer["V_hat"].T                                # B4
        if idx == 0:
            G_A = None
            G_X = G_in if algorithm == "backprop" else None
        else:
            G_A = G_in * layers[idx - 1]["ste_mask"]                 # STE of A_l
        grads[idx] = dict(G_Z=G_Z, G_b=G_b, G_A=G_A, G_V=G_V, G_V_bits=G_V_bits)
        G = G_A
        if algorithm != "backprop" and idx > 0:      # the rule's signal, through the STE
            grads[idx]["G_A"] = None
            if algorithm == "hsic":
                G = hsic_gradient(layer["A_hat"], y, C, hsic_gamma)
            else:
                G = signal @ feedback[idx - 1]
            G = G * layers[idx - 1]["ste_mask"]
    return dict(loss=loss, G_logits=G_logits, G_X=G_X, layers=grads)


# --------------------------------------------------------------------------
# optimisers (Wang et al., Table 5: Adam, SGD with momentum, Bop)
# --------------------------------------------------------------------------

def cancel_gradient(g, V):
    """Weight-gradient cancellation: 0 where |V| >= 1 (Courbariaux & Bengio)."""
    return np.where(np.abs(np.asarray(V, dtype=np.float64)) >= 1.0, 0.0,
                    np.asarray(g, dtype=np.float64))


def weight_gradient_for_optimizer(G_V_bits, V, fan_in, grad_scale="fan_in"):
    """The g handed to Optimize in the proposed step (U1; fan-in as in the
    paper, total weight count as in the authors' code; cancelled):
    +-1/sqrt(fan_in) from the bit ('fan_in'), +-1/sqrt(V.size) ('n_weights')
    or +-1 ('none'); bit True -> +, False -> -; 0 where |V| >= 1."""
    return cancel_gradient(bit_gradient(G_V_bits, np.shape(V), fan_in, grad_scale), V)


def bit_gradient(G_V_bits, shape, fan_in, grad_scale="fan_in"):
    """+-scale from the bit, no cancellation (used as is by Bop, whose +-1
    weights have no latent value to cancel on)."""
    if grad_scale == "fan_in":
        scale = 1.0 / np.sqrt(fan_in)
    elif grad_scale == "n_weights":
        scale = 1.0 / np.sqrt(np.prod(shape))
    elif grad_scale == "none":
        scale = 1.0
    else:
        raise ValueError(grad_scale)
    return np.where(np.asarray(G_V_bits, dtype=bool), scale, -scale)


def adam_step(V, m, v, g, t, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-8, *,
              eps_inside_sqrt=False):
    """One Adam step; t >= 1 is the index of this step.
    Returns (V, m, v).  eps_inside_sqrt=True: m / sqrt(v + eps) (C++ form)."""
    g = np.asarray(g, dtype=np.float64)
    m = beta_1 * np.asarray(m, dtype=np.float64) + (1.0 - beta_1) * g
    v = beta_2 * np.asarray(v, dtype=np.float64) + (1.0 - beta_2) * g ** 2
    rate = lr * np.sqrt(1.0 - beta_2 ** t) / (1.0 - beta_1 ** t)
    denom = np.sqrt(v + epsilon) if eps_inside_sqrt else np.sqrt(v) + epsilon
    V = np.asarray(V, dtype=np.float64) - rate * m / denom
    return V, m, v


def sgd_step(V, u, g, lr, momentum=0.9):
    """SGD with momentum: u <- momentum*u - lr*g; V <- V + u.  Returns (V, u)."""
    u = momentum * np.asarray(u, dtype=np.float64) - lr * np.asarray(g, dtype=np.float64)
    V = np.asarray(V, dtype=np.float64) + u
    return V, u


def bop_step(w, m, g, gamma, threshold):
    """Bop (Helwegen et al.): m <- (1-gamma)*m + gamma*g; flip w where
    |m| > threshold and sgn(m) == sgn(w).  w is +-1.  Returns (w, m)."""
    m = (1.0 - gamma) * np.asarray(m, dtype=np.float64) + gamma * np.asarray(g, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    flip = (np.abs(m) > threshold) & (sgn(m) == sgn(w))
    return np.where(flip, -w, w), m


# --------------------------------------------------------------------------
# one full step
# --------------------------------------------------------------------------

def init_state(Vs, biases, solver):
    """Zero optimiser state: per weight/bias array Adam (m, v), SGD (u,) or Bop:
    (m,) for the weights and Adam (m, v) for the biases."""
    def zeros(arrays, n):
        return [tuple(np.zeros(np.shape(a)) for _ in range(n)) for a in arrays]
    if solver == "adam":
        return dict(t=0, V=zeros(Vs, 2), b=zeros(biases, 2))
    if solver == "sgd":
        return dict(t=0, V=zeros(Vs, 1), b=zeros(biases, 1))
    if solver == "bop":
        return dict(t=0, V=zeros(Vs, 1), b=zeros(biases, 2))
    raise ValueError(solver)


def train_step(X, y, Vs, biases, state, training, *, solver="adam", lr=None,
               beta_1=0.9, beta_2=0.999, epsilon=1e-8, momentum=0.9, bop_threshold=1e-8,
               bias_lr=None, grad_scale="fan_in", bn_stats="post_bias", bn_backward=None,
               eps=1e-4, psi_floor=1e-5, clip_weights=False):
    """forward + backward + update of one batch.  Returns (Vs, biases, state, grads).

    Weight gradient g: 'low_memory' -> weight_gradient_for_optimizer(bits)
    (+-1/sqrt(n_{l-1}), U1); 'standard' -> float G_V (step 9).  Both are
    cancelled where |V| >= 1, except with Bop, whose weights are the
    binary +-1 w themselves (no latent weights, no cancellation).  Biases use
    g = G_b with the same solver, except Bop: Adam with bias_lr (default 1e-3).
    lr None -> 1e-3 (adam, bop's gamma), 0.1 (sgd).  state None -> init_state.
    Running BN statistics and the learning-rate schedule are not part of this.
    """
    if lr is None:
        lr = 0.1 if solver == "sgd" else 1e-3
    if bias_lr is None:
        bias_lr = 1e-3 if solver == "bop" else lr
    if state is None:
        state = init_state(Vs, biases, solver)
    cache = forward(X, Vs, biases, training, bn_stats=bn_stats, eps=eps,
                    psi_floor=psi_floor)
    grads = backward(cache, y, training, bn_backward=bn_backward)
    t = state["t"] + 1
    new_Vs, new_bs, new_Vstate, new_bstate = [], [], [], []
    for V, b, g_l, sV, sb in zip(Vs, biases, grads["layers"], state["V"], state["b"]):
        V = np.asarray(V, dtype=np.float64)
        fan_in = V.shape[0]
        if training == "low_memory":
            g = bit_gradient(g_l["G_V_bits"], V.shape, fan_in, grad_scale)
        else:
            g = g_l["G_V"]
        if solver != "bop":
            g = cancel_gradient(g, V)
        if solver == "adam":
            V, m, v = adam_step(V, sV[0], sV[1], g, t, lr, beta_1, beta_2, epsilon)
            b, mb, vb = adam_step(b, sb[0], sb[1], g_l["G_b"], t, lr, beta_1, beta_2, epsilon)
            sV, sb = (m, v), (mb, vb)
        elif solver == "sgd":
            V, u = sgd_step(V, sV[0], g, lr, momentum)
            b, ub = sgd_step(b, sb[0], g_l["G_b"], lr, momentum)
            sV, sb = (u,), (ub,)
        elif solver == "bop":
            V, m = bop_step(V, sV[0], g, lr, bop_threshold)
            b, mb, vb = adam_step(b, sb[0], sb[1], g_l["G_b"], t, bias_lr, beta_1, beta_2,
                                  epsilon)
            sV, sb = (m,), (mb, vb)
        else:
            raise ValueError(solver)
        if clip_weights and solver != "bop":
            V = np.clip(V, -1.0, 1.0)
        new_Vs.append(V)
        new_bs.append(b)
        new_Vstate.append(sV)
        new_bstate.append(sb)
    return new_Vs, new_bs, dict(t=t, V=new_Vstate, b=new_bstate), grads


# --------------------------------------------------------------------------
# SigProp (PEPITA style)
# --------------------------------------------------------------------------

def sigprop_gradients(X, y, Vs, biases, F, training, *, running=None, scale=1.0,
                      psi_floor=1e-5):
    """Weight and bias gradients of one SigProp step (Crulis et al., arXiv
    2408.04460; the authors' pepita.py), float64.

    Pass 1: the inference forward, batch norm on the running statistics
    ``running[l] = (mean, scale)`` (default 0 and 1, a model's first step):
    ``A = (Z - mean) / max(scale, psi_floor) + b``; the output error ``e``
    trains the output layer through it (``G_V = A_hat^T (e / scale)``,
    ``G_b = sum e``).  Pass 2: ``forward`` (batch statistics) on ``X``
    stacked over ``X + e F / scale``; hidden layer ``l`` gets ``G_V =
    A_hat[:B]^T (h - h_err)`` with ``h = sgn(A_{l+1})`` of the clean and
    the perturbed half, ``G_b = 0``.  Returns ``(G_Vs, G_bs)``.
    """
    X = np.asarray(X, dtype=np.float64)
    B, L = X.shape[0], len(Vs)
    if running is None:
        running = [(np.zeros(np.shape(V)[1]), np.ones(np.shape(V)[1])) for V in Vs]
    A = X
    for idx, (V, b) in enumerate(zip(Vs, biases)):
        A_hat = A if idx == 0 else sgn(A)
        Z = A_hat @ sgn(V)
        mean, psi = running[idx]
        A = (Z - mean) / np.maximum(psi, psi_floor) + b
    logits = A
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    e = (p - np.eye(logits.shape[1])[np.asarray(y)]) / B
    G_Vs, G_bs = [None] * L, [np.zeros(np.shape(V)[1]) for V in Vs]
    G_Vs[-1] = A_hat.T @ (e / np.maximum(running[-1][1], psi_floor))
    G_bs[-1] = e.sum(axis=0)
    X2 = np.vstack([X, X + e @ np.asarray(F, dtype=np.float64) / scale])
    cache = forward(X2, Vs, biases, training)
    for idx in range(L - 1):
        layer = cache["layers"][idx]
        h = sgn(layer["A_next"])
        G_Vs[idx] = layer["A_hat"][:B].T @ (h[:B] - h[B:])
    return G_Vs, G_bs
