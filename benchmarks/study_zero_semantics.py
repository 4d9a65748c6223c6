"""Does sign(0) = 0 explain the local rule's gap to the paper?  A plain-NumPy
implementation of the LocalBinaryClassifier training step,
independent of the package's kernels, with a switch for the sign(0)
semantics (docs/benchmarks.rst summarises the result).

Modes
-----
binary            odd H init (2*floor(h/2)+1), a = +1 if z >= 0 else -1,
                  P = sign(trunc(N(0,64^2))) with 0 -> +1 (clean +-1).
ternary           reference semantics: H = trunc(N(0,64^2)) (np.trunc), W = sign(H)
                  (0 stays 0), a = sign(z) (0 stays 0), P = sign(trunc(N(0,64^2)))
                  (~1.25 % zeros), targets may be 0.
ternary_act_only  like binary (odd init, clean P) but a = sign(z) with 0 kept.
ternary_w_only    like binary but H = trunc(N(0,64^2)): W = sign(H) may be 0.
ternary_p_only    like binary but P keeps its zeros.

Common: wrong neuron iff t*z < 0 strictly; sample erroneous iff
argmax(s) != y or top1 - top2 < floor(r*K); per block of gamma consecutive
neurons pick the wrong neuron with smallest |z| (ties: lowest index); summed
+-2 update from the pre-update H; reinforcement H += 2 sign(H) on every entry
with prob p = p0 sqrt(1-A_prev) sqrt(2/(pi N_l)) only if the layer had an
erroneous sample; layer l+1 gets layer l's pre-update activations.

All three modes consume identical random draws for a given seed (same normal
draws for H and P, same shuffles, same reinforcement stream), so the modes
are paired comparisons.

Usage (one run per call; the published table ran every mode over seeds
42..51 on Prototypes and 42..49 on Fashion-MNIST, 50 epochs, one thread):
  python benchmarks/study_zero_semantics.py --dataset prototypes --mode ternary \
        --seed 42 --out /tmp/zero/prototypes_ternary_42.json
  python benchmarks/study_zero_semantics.py --quick     # 2 epochs, Prototypes, all modes
  python benchmarks/study_zero_semantics.py --dataset prototypes --mode ternary \
        --width 35 --gamma 35 --seed 42 --out /tmp/zero35/prototypes_ternary_42.json
Summary of the published runs: benchmarks/results/zero_semantics.{json,md} (525_525)
and benchmarks/results/zero_semantics_k35.md (35_35).
"""
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse
import json
import time

import numpy as np

MODES = ("binary", "ternary", "ternary_act_only", "ternary_w_only", "ternary_p_only")


# ------------------------------------------------------------------ data
def prototypes_data(seed):
    from skbnn.datasets import make_random_prototypes

    X, y = make_random_prototypes(12000, 1000, 10, 0.44, random_state=42)
    perm = np.random.default_rng(seed).permutation(len(y))
    tr, te = perm[:10000], perm[10000:]
    X = X.astype(np.float32)
    return {"X_train": X[tr], "y_train": y[tr], "X_test": X[te], "y_test": y[te]}


def fmnist_data(seed):
    from skbnn.datasets import load_fashion_mnist

    d = load_fashion_mnist()
    Xtr = d.X_train.reshape(len(d.y_train), -1)
    med = np.median(Xtr)  # one global median over all 60k training pixels
    Xb = np.where(Xtr > med, 1.0, -1.0).astype(np.float32)
    Xo = np.where(d.X_test.reshape(len(d.y_test), -1) > med, 1.0, -1.0).astype(np.float32)
    n = len(d.y_train)
    perm = np.random.default_rng(seed).permutation(n)
    tr, te = perm[:n - 10000], perm[n - 10000:]
    return {"X_train": Xb[tr], "y_train": d.y_train[tr], "X_test": Xb[te],
            "y_test": d.y_train[te], "X_official": Xo, "y_official": d.y_test,
            "median": float(med)}


# ------------------------------------------------------------------ model
class Net:
    def __init__(self, n_in, widths, n_classes, gammas, mode, seed, r=0.25, p0=0.5):
        ternary_h = mode in ("ternary", "ternary_w_only")
        ternary_p = mode in ("ternary", "ternary_p_only")
        assert mode in MODES
        self.mode = mode
        self.widths = list(widths)
        self.gammas = list(gammas)
        self.C = n_classes
        self.r, self.p0 = r, p0
        rng = np.random.default_rng([seed, 1])  # init stream (identical across modes)
        self.H, self.P = [], []
        fan = n_in
        for K in widths:
            h = np.trunc(rng.normal(0.0, 64.0, size=(K, fan))).astype(np.int64)
            pr = np.sign(np.trunc(rng.normal(0.0, 64.0, size=(K, n_classes)))).astype(np.int64)
            H = h if ternary_h else 2 * np.floor_divide(h, 2) + 1  # odd: never 0
            P = pr if ternary_p else np.where(pr == 0, 1, pr)     # clean +-1
            self.H.append(H.astype(np.int32))
            self.P.append(P.astype(np.float32))
            fan = K
        self.fanin = [n_in] + self.widths[:-1]

    def act(self, z):
        if self.mode not in ("ternary", "ternary_act_only"):
            return np.where(z >= 0, np.float32(1), np.float32(-1))
        return np.sign(z)  # 0 stays 0

    def W(self, l):
        return np.sign(self.H[l]).astype(np.float32)

    def predict_scores(self, X, bs=2000):
        out = []
        Ws = [self.W(l) for l in range(len(self.H))]
        for i in range(0, len(X), bs):
            a = X[i:i + bs]
            for l in range(len(self.H)):
                a = self.act(a @ Ws[l].T)
            out.append(a @ self.P[-1])
        return np.concatenate(out)

    def accuracy(self, X, y):
        return float(np.mean(np.argmax(self.predict_scores(X), axis=1) == y))


def reinforce(H, p, rng):
    """Every entry independently with prob p: H += 2 sign(H). Exact Bernoulli
    sampling via Binomial count + uniform subset without replacement."""
    n = H.size
    k = rng.binomial(n, p)
    if k == 0:
        return 0
    idx = rng.choice(n, size=k, replace=False, shuffle=False)
    flat = H.reshape(-1)
    flat[idx] += 2 * np.sign(flat[idx])
    return k


def train_epoch(net, X, y, A_prev, rng_shuffle, rng_reinf, stats, bs=100):
    n = len(y)
    perm = rng_shuffle.permutation(n)
    correct = 0
    L = len(net.H)
    for b0 in range(0, n, bs):
        idx = perm[b0:b0 + bs]
        a = X[idx]
        yb = y[idx]
        nb = len(idx)
        for l in range(L):
            H = net.H[l]
            K, N = H.shape
            g = net.gammas[l]
            P = net.P[l]
            W = np.sign(H).astype(np.float32)
            z = a @ W.T                                   # (nb, K), exact ints
            a_new = net.act(z)
            s = a_new @ P                                 # (nb, C)
            pred = np.argmax(s, axis=1)                   # ties -> lowest index
            ss = np.sort(s, axis=1)
            gap = ss[:, -1] - ss[:, -2]
            err = (pred != yb) | (gap < np.floor(net.r * K))
            if l == L - 1:
                correct += int(np.sum(pred == yb))
            stats["z0"][l] += int(np.count_nonzero(z == 0))
            stats["zn"][l] += z.size
            stats["err"][l] += int(err.sum())
            if err.any():
                T = P[:, yb].T                            # (nb, K) targets in {-1,0,+1}
                wrong = (T * z) < 0
                key = np.where(wrong, np.abs(z), np.float32(np.inf)).reshape(nb, K // g, g)
                j = np.argmin(key, axis=2)                # first min -> lowest index
                kmin = np.take_along_axis(key, j[..., None], axis=2)[..., 0]
                valid = np.isfinite(kmin) & err[:, None]
                M = np.zeros((nb, K // g, g), dtype=np.float32)
                np.put_along_axis(M, j[..., None], valid[..., None].astype(np.float32), axis=2)
                M = M.reshape(nb, K)
                stats["sel"][l] += int(M.sum())
                delta = 2.0 * ((T * M).T @ a)             # (K, N), from pre-update H
                H += delta.astype(np.int32)
                p = net.p0 * np.sqrt(1.0 - A_prev) * np.sqrt(2.0 / (np.pi * N))
                stats["reinf"][l] += reinforce(H, p, rng_reinf)
            a = a_new                                     # pre-update activations forward
    return correct / n


def run(dataset, mode, seed, epochs, curve_epochs=None, verbose=True, width=525, gamma=105):
    t_load = time.perf_counter()
    data = prototypes_data(seed) if dataset == "prototypes" else fmnist_data(seed)
    t_load = time.perf_counter() - t_load
    X, y = data["X_train"], data["y_train"]
    widths, gammas = [width, width], [gamma, gamma]
    net = Net(X.shape[1], widths, 10, gammas, mode, seed)
    L = len(widths)
    info = {"dataset": dataset, "mode": mode, "seed": seed, "epochs": epochs,
            "arch": f"{width}_{width}", "gamma": gamma, "r": 0.25, "p0": 0.5, "bs": 100,
            "n_train": int(len(y)), "n_test": int(len(data["y_test"])),
            "load_s": t_load,
            "P_zero_frac": [float(np.mean(P == 0)) for P in net.P],
            "H_zero_frac_init": [float(np.mean(H == 0)) for H in net.H]}
    rng_shuffle = np.random.default_rng([seed, 2])
    rng_reinf = np.random.default_rng([seed, 3])
    A_prev = 0.0
    hist = []
    for ep in range(1, epochs + 1):
        stats = {k: [0] * L for k in ("z0", "zn", "err", "sel", "reinf")}
        t0 = time.perf_counter()
        A = train_epoch(net, X, y, A_prev, rng_shuffle, rng_reinf, stats)
        t_train = time.perf_counter() - t0
        t1 = time.perf_counter()
        rec = {"epoch": ep, "train_acc_onfly": A,
               "test_acc": net.accuracy(data["X_test"], data["y_test"]),
               "train_time_s": t_train,
               "z_zero_frac": [stats["z0"][l] / stats["zn"][l] for l in range(L)],
               "err_samples": stats["err"], "selected": stats["sel"],
               "reinforced": stats["reinf"],
               "H_zero_frac": [float(np.mean(H == 0)) for H in net.H],
               "H_absmax": [int(np.abs(H).max()) for H in net.H]}
        if "X_official" in data:
            rec["official_test_acc"] = net.accuracy(data["X_official"], data["y_official"])
        rec["eval_time_s"] = time.perf_counter() - t1
        hist.append(rec)
        A_prev = A
        if verbose:
            print(f"[{dataset} {mode} s{seed}] ep {ep:2d} train(on-fly) {100*A:.2f} "
                  f"test {100*rec['test_acc']:.2f}"
                  + (f" official {100*rec['official_test_acc']:.2f}" if "official_test_acc" in rec else "")
                  + f" z0 {['%.4f' % v for v in rec['z_zero_frac']]}"
                  f" H0 {['%.5f' % v for v in rec['H_zero_frac']]}"
                  f" t {t_train:.2f}s", flush=True)
    info["history"] = hist
    info["final_test_acc"] = hist[-1]["test_acc"]
    info["final_train_acc_onfly"] = hist[-1]["train_acc_onfly"]
    info["final_train_acc_eval"] = net.accuracy(X, y)
    if "X_official" in data:
        info["final_official_test_acc"] = hist[-1]["official_test_acc"]
    # zero activation fraction of the final model on the training data
    a = X
    zf = []
    for l in range(L):
        z = a @ net.W(l).T
        zf.append(float(np.mean(z == 0)))
        a = net.act(z)
    info["final_model_z_zero_frac_train"] = zf
    info["mean_epoch_train_time_s"] = float(np.mean([h["train_time_s"] for h in hist]))
    info["H_percentiles_final"] = [
        {q: float(np.percentile(np.abs(H), q)) for q in (50, 99, 100)} for H in net.H]
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: every mode on Prototypes, seed 42, 2 epochs")
    ap.add_argument("--dataset", choices=("prototypes", "fmnist"))
    ap.add_argument("--mode", choices=MODES)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--out", help="JSON file of the run")
    ap.add_argument("--width", type=int, default=525, help="K of both hidden layers")
    ap.add_argument("--gamma", type=int, default=105, help="group size (divides --width)")
    a = ap.parse_args()
    if a.quick:
        jobs = [("prototypes", m, a.seed, 2, None) for m in MODES]
    elif a.dataset and a.mode and a.out:
        jobs = [(a.dataset, a.mode, a.seed, a.epochs, a.out)]
    else:
        ap.error("give --quick, or --dataset, --mode and --out")
    for dataset, mode, seed, epochs, out in jobs:
        t0 = time.perf_counter()
        info = run(dataset, mode, seed, epochs, width=a.width, gamma=a.gamma)
        info["wall_s"] = time.perf_counter() - t0
        info["numpy"] = np.__version__
        info["thread_env"] = {v: os.environ.get(v)
                              for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
        if out:
            os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
            with open(out, "w") as f:
                json.dump(info, f, indent=1)
        print(f"DONE {dataset} {mode} s{seed}: test {100*info['final_test_acc']:.2f} "
              f"train(eval) {100*info['final_train_acc_eval']:.2f} wall {info['wall_s']:.1f}s",
              flush=True)


if __name__ == "__main__":
    main()
