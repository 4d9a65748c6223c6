#!/usr/bin/env python3
"""Every training rule of skbnn on the same data with the same budget: one
command, one table (test accuracy, seconds per epoch, measured training
memory), the PyTorch DFA / DRTP peers, the targets and the three findings of
Crulis et al. (arXiv 2408.04460).

Rules: the local rule (``LocalBinaryClassifier``), binary error propagation
(``BEPClassifier``), and ``LowMemBNNClassifier`` with ``algorithm`` backprop
(STE), DFA, DRTP, HSIC and SigpropTL.  MLP rows run every LowMem rule in both
steps (``training='standard'`` float32 and ``'low_memory'``); conv rows run
backprop in both steps and DFA, DRTP, HSIC, SigpropTL in the low-memory step
(the default) only, because the standard conv step costs 1.2-1.7x more time.
The local rule and BEP are MLP-only ("n/a" on conv rows).  Everything is
declared in ``NETWORKS``, ``DATASETS``, ``METHODS``, ``SECTIONS`` and
``TARGETS`` below; a network whose preset the installed package lacks (an
older skbnn without ``'binarynet_residual'``, BinaryNet with real-valued
shortcuts) is reported as an error row ("preset not available").

Sections (``--sections mlp,cnn,peers,memory``; all by default), 3 seeds
(``--seeds``; seed s = data split s and ``random_state=s``), one thread per
run, ``--jobs`` runs at a time in separate processes (default 2):

mlp
    MLP 700-500-300-200 and MLP 784-256x4-10 (hidden (256, 256, 256, 256)),
    both with batch norm (every LowMem block has it; Local and BEP have none),
    on Fashion-MNIST (the first 10,000 images of the benchmarks' 50,000 / 10,000
    split, ``_common.fmnist_splits``; scored on the official 10,000 test images)
    and on Random Prototypes (``_common.prototypes_splits``: 10,000 train, 2,000
    test; LowMem and PyTorch read them zero-padded to 1,008 features, see
    ``PROTOTYPES_PADDED``).  6 epochs, batch 100, every estimator's defaults
    otherwise: Adam at 1e-3 for LowMem (with ``lr_schedule='constant'``: the
    default plateau patience of 50 epochs never fires within 6, and the PyTorch
    peers run a constant rate), the local rule's paper group sizes, BEP with the
    divisor of each width nearest its default group size 15.  No early
    stopping, the last epoch's model is scored; nothing is chosen on test
    accuracy.  About 70 min at the rates of a quick run on the 2-core
    development machine with another process busy (1.4 CPUs), about half that
    on idle cores.
cnn
    CNV, BinaryNet with shortcuts ('binarynet_residual') and without
    ('binarynet') on Fashion-MNIST scaled to [-1, 1] and padded to 1x32x32
    (``bench_conv.fmnist_rows``), Adam, batch 100, constant rate.  CNV: the
    first 2,000 training images, 2 epochs, the first 5,000 test images;
    BinaryNet (both variants): the first 400 images, 2 epochs, the first 1,000
    test images.  Small budgets, so the conv accuracies are far from converged:
    on the shared 2-core development machine (another process using 1.3-1.4
    CPUs) one BinaryNet epoch of all six rules cost 16-31 min per 1,000 images
    and seed (HSIC a third of it), CNV 3-5 min.  About 35-70 min there, 20-40
    min more for 'binarynet_residual' (run this section alone).
peers
    PyTorch backprop, DFA and DRTP (``_torch_rules.py``: the network, init,
    Adam, batch and epochs of skbnn's standard step, and its gradient
    cancellation where ``|V| >= 1`` instead of the authors' clipping, which
    ``_torch_rules.py`` offers too) on MLP 700-500-300-200 and
    784-256x4-10 on Fashion-MNIST with the mlp section's budget; the gap
    skbnn (standard step) - PyTorch per rule.  About 7 min with the mlp section
    (its standard-step runs are shared), about 15 min alone.
memory
    Measured peak training memory (``measure_memory=True``: state held + peak
    transient of a one-batch ``partial_fit`` call, tracemalloc, the largest of
    the calls after the initialising one) at batch 100 on random inputs of each
    table row's shape, plus CNV on 3x32x32 in both steps for every rule (the
    memory targets).  Local and BEP through the same probe
    (``skbnn._memory_probe.traced_call``) with their fitted arrays as state.
    The PyTorch peers' memory is not measured (tracemalloc does not see
    torch's allocator, and the existing peers have no memory measurement).
    About 5 min.

``--quick``: 1 seed, 1 epoch, 1,000 MLP images, 200 CNV / 100 BinaryNet
images, 1,000 / 200 / 100 test images, one measured memory call: a few
minutes; it also prints how long the full sections would take at the rates
it measured.  When the Fashion-MNIST files are missing (or with
``--synthetic``) the Fashion-MNIST rows use Random Prototypes instead (1,000
bits for the MLPs; 1,024 bits shaped 1x32x32 for the conv nets), and the
output says so.  Seconds per epoch come from runs sharing the machine with
another run; on a busy machine they are noisy.

    python3 benchmarks/compare_rules.py                  # full run (by sections)
    python3 benchmarks/compare_rules.py --quick          # minutes
    python3 benchmarks/compare_rules.py --sections memory

Writes ``comparison.json``, ``comparison.md`` and ``comparison_accuracy_memory.png`` to
``--out`` (default ``benchmarks/results/rules/``, ``--quick``:
``benchmarks/results/rules_quick/``).  Results are always regenerated.
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import time  # noqa: E402

import numpy as np  # noqa: E402

import _common  # noqa: E402
import _torch_rules  # noqa: E402
from bench_conv import error_text, failed, fmnist_rows, guarded, log  # noqa: E402
from bench_lowmem import scaled  # noqa: E402

MIB = 2.0 ** 20
N_CLASSES = 10
BATCH = 100
# LowMemBNNClassifier's real-input first layer takes a slow path when the
# number of features is not a multiple of 16 (measured here: one epoch of
# 784-256x4-10 over 1,000 samples, 3.0 s at 1,000 features against 0.4 s at
# 1,008 or 992).  LowMem and PyTorch therefore read Random Prototypes' 1,000
# +/-1 bits padded with 8 zero features: the products, batch norm and output
# are those of the 1,000 bits (a zero input adds nothing), only fan_in-based
# constants (Glorot limit, the low-memory 1/sqrt(fan_in)) change by 0.4 %.
# Local and BEP read the 1,000 bits as they are.
PROTOTYPES_PADDED = 1008

# ------------------------------------------------------------------ config
NETWORKS = {
    "mlp700": {"label": "MLP 700-500-300-200", "hidden": (700, 500, 300, 200)},
    "mlp256x4": {"label": "MLP 784-256x4-10", "hidden": (256, 256, 256, 256)},
    "cnv": {"label": "CNV", "architecture": "cnv"},
    "binarynet_residual": {"label": "BinaryNet + shortcuts",
                           "architecture": "binarynet_residual"},
    "binarynet": {"label": "BinaryNet, no shortcuts", "architecture": "binarynet"},
}
# input_shape None: an MLP input; 'fallback': the data set used without Fashion-MNIST
DATASETS = {
    "fmnist": {"label": "Fashion-MNIST", "input_shape": None, "fallback": "prototypes"},
    "prototypes": {"label": "Random Prototypes", "input_shape": None},
    "fmnist32": {"label": "Fashion-MNIST 1x32x32", "input_shape": (1, 32, 32),
                 "fallback": "prototypes32"},
    "prototypes32": {"label": "Random Prototypes 1x32x32", "input_shape": (1, 32, 32)},
    "cifar_shape": {"label": "random 3x32x32", "input_shape": (3, 32, 32)},
}
LOCAL_RULES = ("drtp", "hsic", "sigprop")  # the layer-local rules of the paper's finding 3
STEPS = {"standard": "standard", "low_memory": "low-memory"}
RULE_LABELS = {"local": "local rule", "bep": "BEP", "backprop": "backprop (STE)",
               "dfa": "DFA", "drtp": "DRTP", "hsic": "HSIC", "sigprop": "SigpropTL"}
METHODS = {"local": {"estimator": "local", "rule": "local", "training": None},
           "bep": {"estimator": "bep", "rule": "bep", "training": None}}
for _rule in ("backprop", "dfa", "drtp", "hsic", "sigprop"):
    for _training in ("standard", "low_memory"):
        METHODS[f"{_rule}_{_training}"] = {"estimator": "lowmem", "rule": _rule,
                                           "training": _training}
MLP_ONLY = ("local", "bep")
CNN_METHODS = ("backprop_standard", "backprop_low_memory", "dfa_low_memory",
               "drtp_low_memory", "hsic_low_memory", "sigprop_low_memory")
LOWMEM_METHODS = tuple(m for m in METHODS if METHODS[m]["estimator"] == "lowmem")

SECTIONS = {
    "mlp": {"networks": ("mlp700", "mlp256x4"), "datasets": ("fmnist", "prototypes"),
            "methods": tuple(METHODS),
            "budget": {"train_subset": {"fmnist": 10000, "prototypes": None}, "epochs": 6,
                       "eval_subset": None}},
    "cnn": {"networks": ("cnv", "binarynet_residual", "binarynet"), "datasets": ("fmnist32",),
            "methods": CNN_METHODS,
            "budget": {"cnv": {"train_subset": 2000, "epochs": 2, "eval_subset": 5000},
                       "binarynet_residual": {"train_subset": 400, "epochs": 2,
                                              "eval_subset": 1000},
                       "binarynet": {"train_subset": 400, "epochs": 2, "eval_subset": 1000}}},
    "peers": {"configs": (("mlp700", "fmnist"), ("mlp256x4", "fmnist")),
              "rules": _torch_rules.RULES},
    "memory": {"calls": 2,
               "targets": (("cnv", "cifar_shape", LOWMEM_METHODS),
                           ("mlp256x4", "fmnist", LOWMEM_METHODS))},
}
QUICK = {"mlp": {"train_subset": 1000, "epochs": 1, "eval_subset": 1000},
         "cnn": {"cnv": {"train_subset": 200, "epochs": 1, "eval_subset": 200},
                 "binarynet_residual": {"train_subset": 100, "epochs": 1, "eval_subset": 100},
                 "binarynet": {"train_subset": 100, "epochs": 1, "eval_subset": 100}},
         "memory_calls": 1, "seeds": (0,)}
SEEDS = (0, 1, 2)
FULL_JOBS = 2  # the default --jobs

# accuracy in points, memory as ratios; judged on the means over seeds
TARGETS = {
    "peer_gap": {"rules": ("dfa", "drtp"), "config": ("mlp700", "fmnist"), "max_abs": 1.0},
    "dfa_vs_backprop": {"config": ("mlp700", "fmnist"), "max_points": 1.0},
    "drtp_accuracy": {"config": ("mlp700", "fmnist"), "min_percent": 80.0},
    "cnv_standard_memory": {"network": "cnv", "input": "cifar_shape", "training": "standard",
                            "max_ratio": {"drtp": 0.6, "hsic": 1.0, "sigprop": 1.0},
                            "strict": {"drtp": False, "hsic": True, "sigprop": True}},
    "local_rules_memory": {"settings": (("cnv", "cifar_shape", "low_memory"),
                                        ("mlp256x4", "fmnist", "standard"),
                                        ("mlp256x4", "fmnist", "low_memory")),
                           "rules": LOCAL_RULES, "max_ratio": 1.0},
}


# ------------------------------------------------------------------ data
_DATA_CACHE = {}


def fmnist_available(synthetic):
    """Whether the Fashion-MNIST files load (never installs anything)."""
    if synthetic:
        return False
    if "fmnist" not in _DATA_CACHE:
        _DATA_CACHE["fmnist"] = _common.load_fmnist(try_install=False, verbose=False)
    return _DATA_CACHE["fmnist"] is not None


def resolve_dataset(name, synthetic):
    """The data set a row actually uses (its fallback without Fashion-MNIST)."""
    spec = DATASETS[name]
    if "fallback" in spec and not fmnist_available(synthetic):
        return spec["fallback"]
    return name


def prototypes32_splits(seed):
    """Random Prototypes of 1,024 bits as 1x32x32 images: the conv fallback
    (12,000 samples, flip 0.44, ``random_state=42``; the last 2,000 of the
    seed's permutation test)."""
    from skbnn.datasets import make_random_prototypes

    X, y = make_random_prototypes(12000, 1024, 10, 0.44, random_state=42)
    perm = _common.shuffled_indices(len(y), seed)
    tr, te = perm[:10000], perm[10000:]
    return {"X_train": X[tr], "y_train": y[tr], "X_test": X[te], "y_test": y[te]}


def load_split(dataset, seed, n_train, n_eval):
    """``(X_train, y_train, X_test, y_test)`` in the data set's raw form
    (uint8 pixels, +/-1 int8 bits, or float32 padded-image rows)."""
    if dataset in ("fmnist", "fmnist32"):
        s = _common.fmnist_splits(_DATA_CACHE["fmnist"], seed)
        Xtr, ytr, Xte, yte = s["X_train"], s["y_train"], s["X_test"], s["y_test"]
    elif dataset == "prototypes":
        s = _common.prototypes_splits(seed)
        Xtr, ytr, Xte, yte = s["X_train"], s["y_train"], s["X_heldout"], s["y_heldout"]
    elif dataset == "prototypes32":
        s = prototypes32_splits(seed)
        Xtr, ytr, Xte, yte = s["X_train"], s["y_train"], s["X_test"], s["y_test"]
    else:
        raise ValueError(f"no training data for {dataset!r}")
    Xtr, ytr = Xtr[:n_train], ytr[:n_train]
    Xte, yte = Xte[:n_eval], yte[:n_eval]
    if dataset == "fmnist32":
        Xtr, Xte = fmnist_rows(Xtr), fmnist_rows(Xte)
    return Xtr, ytr, Xte, yte


def real_input(dataset, X):
    """The float32 input LowMem and PyTorch read: pixels in [-1, 1], bits as
    +/-1; Random Prototypes' 1,000 features padded with zeros to
    ``PROTOTYPES_PADDED`` (see there)."""
    if dataset == "fmnist":
        return scaled(X)
    X = np.ascontiguousarray(X, dtype=np.float32)
    if dataset == "prototypes" and X.shape[1] < PROTOTYPES_PADDED:
        X = np.pad(X, ((0, 0), (0, PROTOTYPES_PADDED - X.shape[1])))
    return X


# ------------------------------------------------------------------ estimators
def preset_missing(network):
    """Error text when ``network`` is a preset the installed skbnn lacks."""
    arch = NETWORKS[network].get("architecture")
    if not isinstance(arch, str):
        return None
    try:
        from skbnn._architecture import PRESETS
    except ImportError:
        return None
    if arch in PRESETS:
        return None
    return (f"preset not available: the installed skbnn has no {arch!r} architecture "
            f"(it has {', '.join(map(repr, PRESETS))})")


def make_estimator(method, network, dataset, epochs, seed, **extra):
    """The estimator of one table row (unfitted)."""
    from skbnn import BEPClassifier, LocalBinaryClassifier, LowMemBNNClassifier
    from skbnn._base import nearest_divisor

    m, net = METHODS[method], NETWORKS[network]
    bits_input = DATASETS[dataset]["input_shape"] is None and dataset != "fmnist"
    binarize = None if bits_input else "global_median"
    if m["estimator"] == "local":
        return LocalBinaryClassifier(hidden_layer_sizes=net["hidden"], batch_size=BATCH,
                                     max_iter=epochs, binarize_input=binarize,
                                     random_state=seed, n_jobs=1, **extra)
    if m["estimator"] == "bep":
        groups = tuple(nearest_divisor(k, 15) for k in net["hidden"])
        return BEPClassifier(hidden_layer_sizes=net["hidden"], group_size=groups,
                             max_iter=epochs, binarize_input=binarize, random_state=seed,
                             n_jobs=1, **extra)
    conv = {}
    if "architecture" in net:
        conv = {"architecture": net["architecture"],
                "input_shape": DATASETS[dataset]["input_shape"]}
    else:
        conv = {"hidden_layer_sizes": net["hidden"]}
    return LowMemBNNClassifier(training=m["training"], algorithm=m["rule"], solver="adam",
                               batch_size=BATCH, max_iter=epochs, lr_schedule="constant",
                               random_state=seed, n_jobs=1, **conv, **extra)


def estimator_input(method, dataset, X):
    """What ``fit`` gets: raw pixels / bits for Local and BEP, floats for LowMem."""
    if METHODS[method]["estimator"] in ("local", "bep"):
        return X
    return real_input(dataset, X)


# ------------------------------------------------------------------ jobs
def run_job(job):
    """One training run (in a worker process): fit, score, time.

    ``job``: ``kind`` ('skbnn' or 'torch'), ``network``, ``dataset`` (already
    resolved), ``method`` (or the torch ``rule``), ``seed``, ``budget``
    (``train_subset``, ``epochs``, ``eval_subset``) and ``synthetic``.
    """
    t_start = time.perf_counter()
    fmnist_available(job["synthetic"])  # loads the files once per process
    b = job["budget"]
    Xtr, ytr, Xte, yte = load_split(job["dataset"], job["seed"], b["train_subset"],
                                    b["eval_subset"])
    out = dict(job, n_train=len(ytr), n_eval=len(yte))
    if job["kind"] == "torch":
        def train():
            r = _torch_rules.train_torch_rule(
                real_input(job["dataset"], Xtr), ytr, [(real_input(job["dataset"], Xte), yte)],
                job["rule"], NETWORKS[job["network"]]["hidden"], batch_size=BATCH,
                epochs=b["epochs"], seed=job["seed"], n_threads=1)
            return {"test": r["accuracies"][0], "epochs": len(r["s_per_epoch"]),
                    "fit_s": float(sum(r["s_per_epoch"])),
                    "s_per_epoch": float(np.median(r["s_per_epoch"])),
                    "loss_curve": r["loss_curve"], "torch_version": r["torch_version"]}
    else:
        def train():
            clf = make_estimator(job["method"], job["network"], job["dataset"], b["epochs"],
                                 job["seed"])
            t0 = time.perf_counter()
            clf.fit(estimator_input(job["method"], job["dataset"], Xtr), ytr)
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            acc = float(clf.score(estimator_input(job["method"], job["dataset"], Xte), yte))
            n_iter = int(getattr(clf, "n_iter_", b["epochs"]) or b["epochs"])
            return {"test": acc, "epochs": n_iter, "fit_s": fit_s,
                    "s_per_epoch": fit_s / max(1, n_iter), "eval_s": time.perf_counter() - t0,
                    "loss_curve": [float(v) for v in getattr(clf, "loss_curve_", [])]}
    missing = preset_missing(job["network"])
    label = f"{job['network']} {job['dataset']} {job.get('method') or 'torch ' + job['rule']} " \
            f"seed {job['seed']}"
    res = {"error": missing} if missing else guarded(label, train)
    out.update(res, wall_s=time.perf_counter() - t_start)
    if not failed(out):
        log(f"[{label}] test {100 * out['test']:.2f} %, {out['s_per_epoch']:.2f} s/epoch")
    return out


def plan_jobs(args):
    """Every training run of the chosen sections (deduplicated), longest first."""
    jobs, seen = [], set()

    def add(kind, network, dataset, method_or_rule, budget):
        for seed in args.seeds:
            key = (kind, network, dataset, method_or_rule, seed)
            if key in seen:
                continue
            seen.add(key)
            job = {"kind": kind, "network": network, "dataset": resolve_dataset(dataset,
                   args.synthetic), "table_dataset": dataset, "seed": seed, "budget": dict(budget),
                   "synthetic": args.synthetic}
            job["method" if kind == "skbnn" else "rule"] = method_or_rule
            jobs.append(job)

    for section in ("cnn", "mlp", "peers"):
        if section not in args.sections:
            continue
        for network, dataset, method in section_rows(section, args):
            if method in MLP_ONLY and "architecture" in NETWORKS[network]:
                continue
            add("skbnn", network, dataset, method, budget_for(network, args))
        if section == "peers":
            for network, dataset in SECTIONS["peers"]["configs"]:
                if network not in args.networks:
                    continue
                for rule in SECTIONS["peers"]["rules"]:
                    if f"{rule}_standard" in args.methods and _torch_rules.torch_available():
                        add("torch", network, dataset, rule, budget_for(network, args))
    return jobs


def section_rows(section, args):
    """``(network, dataset, method)`` of a section's table rows (peers: the
    skbnn standard-step runs its gaps need)."""
    if section == "peers":
        return [(n, d, f"{r}_standard") for n, d in SECTIONS["peers"]["configs"]
                for r in SECTIONS["peers"]["rules"]
                if n in args.networks and f"{r}_standard" in args.methods]
    spec = SECTIONS[section]
    methods = MLP_ONLY + spec["methods"] if section == "cnn" else spec["methods"]  # n/a rows
    return [(n, d, m) for n in spec["networks"] if n in args.networks
            for d in spec["datasets"] for m in methods if m in args.methods]


def budget_for(network, args):
    """``train_subset``, ``epochs``, ``eval_subset`` of a network's runs."""
    conv = "architecture" in NETWORKS[network]
    if args.quick:
        return dict(QUICK["cnn"].get(network, QUICK["cnn"]["cnv"]) if conv else QUICK["mlp"])
    if conv:
        return dict(SECTIONS["cnn"]["budget"].get(network, SECTIONS["cnn"]["budget"]["cnv"]))
    b = SECTIONS["mlp"]["budget"]
    return {"train_subset": None, "epochs": b["epochs"], "eval_subset": b["eval_subset"],
            "per_dataset_train_subset": b["train_subset"]}


def finalise_budget(job):
    """The MLP budget's training subset depends on the data set."""
    per = job["budget"].pop("per_dataset_train_subset", None)
    if per is not None:
        job["budget"]["train_subset"] = per.get(job["table_dataset"])
    return job


def run_jobs(jobs, n_jobs):
    """Run the jobs, ``n_jobs`` processes at a time (inline for 1)."""
    jobs = [finalise_budget(j) for j in jobs]
    if n_jobs <= 1:
        return [run_job(j) for j in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=n_jobs,
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_job, j) for j in jobs]
        results = []
        for j, f in zip(jobs, futures):
            try:
                results.append(f.result())
            except Exception as exc:  # a crashed worker (e.g. killed for memory)
                results.append(dict(j, error=error_text(exc)))
    return results


def job_order(job):
    """Longest runs first (BinaryNet, then CNV, then the MLPs)."""
    return {"binarynet_residual": 0, "binarynet": 1, "cnv": 2}.get(job["network"], 3)


# ------------------------------------------------------------------ memory
def array_bytes(obj, depth=0):
    """Bytes of the ndarrays in ``obj`` (lists, tuples, dicts, one level of objects)."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(array_bytes(v, depth) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(array_bytes(v, depth) for v in obj)
    if depth < 2 and hasattr(obj, "__dict__") and not isinstance(obj, type):
        return sum(array_bytes(v, depth + 1) for v in vars(obj).values())
    return 0


def state_bytes(clf):
    """The fitted arrays an estimator holds (attributes ending in '_')."""
    return sum(array_bytes(v) for k, v in vars(clf).items() if k.endswith("_"))


def random_batch(method, dataset, rng):
    """One random batch of the row's input form (memory does not depend on values)."""
    shape = DATASETS[dataset]["input_shape"]
    n_features = int(np.prod(shape)) if shape else (784 if dataset == "fmnist" else 1000)
    y = np.arange(BATCH) % N_CLASSES
    if METHODS[method]["estimator"] == "lowmem":
        if dataset == "prototypes":
            n_features = PROTOTYPES_PADDED
        return rng.uniform(-1, 1, (BATCH, n_features)).astype(np.float32), y
    if dataset == "fmnist":
        return rng.integers(0, 256, (BATCH, n_features), dtype=np.uint8), y
    return (2 * rng.integers(0, 2, (BATCH, n_features)) - 1).astype(np.int8), y


def measure_row(network, dataset, method, calls, seed=0):
    """Measured peak of one-batch ``partial_fit`` calls (batch 100) after the
    initialising one: LowMem through ``measure_memory=True``, Local and BEP
    through the same tracemalloc probe with their fitted arrays as state."""
    from skbnn._memory_probe import traced_call

    X, y = random_batch(method, dataset, np.random.default_rng(seed))
    lowmem = METHODS[method]["estimator"] == "lowmem"
    extra = {"measure_memory": True} if lowmem else {}
    clf = make_estimator(method, network, dataset, 1, seed, **extra)
    t0 = time.perf_counter()
    clf.partial_fit(X, y, classes=np.arange(N_CLASSES))
    peaks = []
    for _ in range(calls):
        if lowmem:
            clf.partial_fit(X, y)
            peaks.append(clf.memory_measured_["peak_bytes"])
        else:
            with traced_call(state_bytes(clf)) as m:
                clf.partial_fit(X, y)
            peaks.append(m["peak_bytes"])
    row = {"network": network, "dataset": dataset, "method": method, "batch": BATCH,
           "peak_mib": max(peaks) / MIB, "calls": calls,
           "seconds_per_call": (time.perf_counter() - t0) / (calls + 1)}
    if lowmem:
        row["model_mib"] = clf.memory_model_["total"]["mib"]
    return row


def memory_plan(args):
    """``(network, dataset, method)`` to measure: every table row of the chosen
    training sections (all when none is chosen) and the target settings."""
    plan = []
    train_sections = [s for s in ("mlp", "cnn") if s in args.sections] or ["mlp", "cnn"]
    for section in train_sections:
        for network, dataset, method in section_rows(section, args):
            if method in MLP_ONLY and "architecture" in NETWORKS[network]:
                continue
            plan.append((network, resolve_dataset(dataset, args.synthetic), method))
    for network, dataset, methods in SECTIONS["memory"]["targets"]:
        if network in args.networks:
            plan += [(network, dataset, m) for m in methods if m in args.methods]
    return list(dict.fromkeys(plan))


def memory_section(args):
    """All memory rows; a preset the package lacks gives error rows."""
    from bench_conv import warm_up

    guarded("memory warm-up", warm_up)
    rows = []
    for network, dataset, method in memory_plan(args):
        label = f"memory {network} {dataset} {method}"
        missing = preset_missing(network)
        row = ({"error": missing} if missing else
               guarded(label, measure_row, network, dataset, method, args.memory_calls))
        row = dict(row, network=network, dataset=dataset, method=method)
        if not failed(row):
            log(f"[{label}] {row['peak_mib']:.2f} MiB ({row['seconds_per_call']:.1f} s/call)")
        rows.append(row)
    return rows


# ------------------------------------------------------------------ summary
def mean_sd(values, scale=1.0, digits=2):
    """'m ± sd' (population sd, as ``_common.stats``) or 'm' for one value."""
    s = _common.stats(values)
    if s is None:
        return None, "—"
    m, sd = scale * s["mean"], scale * s["std"]
    return s, (f"{m:.{digits}f} ± {sd:.{digits}f}" if s["n"] > 1 else f"{m:.{digits}f}")


def summarise(res, args):
    """The table rows: one per (network, data set, method) over seeds."""
    runs, memory = res.get("runs", []), res.get("memory", [])
    rows = []
    for section in ("mlp", "cnn"):
        if section not in args.sections:
            continue
        for network, dataset, method in section_rows(section, args):
            m = METHODS[method]
            row = {"section": section, "network": network, "dataset": dataset,
                   "used_dataset": resolve_dataset(dataset, args.synthetic), "method": method,
                   "rule": m["rule"], "training": m["training"]}
            if method in MLP_ONLY and "architecture" in NETWORKS[network]:
                row["status"] = "n/a (MLP-only rule)"
                rows.append(row)
                continue
            mine = [r for r in runs if r["kind"] == "skbnn" and r["network"] == network
                    and r["table_dataset"] == dataset and r["method"] == method]
            ok = [r for r in mine if not failed(r)]
            errors = sorted({r["error"] for r in mine if failed(r) and r.get("error")})
            row["accuracy"] = _common.stats([100 * r["test"] for r in ok])
            row["s_per_epoch"] = _common.stats([r["s_per_epoch"] for r in ok])
            row["n_train"] = ok[0]["n_train"] if ok else None
            row["seeds"] = [r["seed"] for r in ok]
            mr = next((r for r in memory if (r["network"], r["dataset"], r["method"])
                       == (network, row["used_dataset"], method)), None)
            row["memory_mib"] = None if failed(mr) else mr["peak_mib"]
            if mr is not None and failed(mr):
                errors.append(mr["error"])
            if errors:
                row["status"] = "error: " + "; ".join(dict.fromkeys(errors))
            rows.append(row)
    return rows


def peer_rows(res, args):
    """skbnn standard step against the PyTorch peer, per configuration and rule."""
    out = []
    runs = res.get("runs", [])
    for network, dataset in SECTIONS["peers"]["configs"]:
        for rule in SECTIONS["peers"]["rules"]:
            torch_runs = {r["seed"]: r for r in runs if r["kind"] == "torch"
                          and r["network"] == network and r["table_dataset"] == dataset
                          and r["rule"] == rule and not failed(r)}
            sk_runs = {r["seed"]: r for r in runs if r["kind"] == "skbnn"
                       and r["network"] == network and r["table_dataset"] == dataset
                       and r["method"] == f"{rule}_standard" and not failed(r)}
            if not torch_runs and not sk_runs:
                continue
            seeds = sorted(set(torch_runs) & set(sk_runs))
            row = {"network": network, "dataset": dataset, "rule": rule,
                   "skbnn": _common.stats([100 * sk_runs[s]["test"] for s in sk_runs]),
                   "torch": _common.stats([100 * torch_runs[s]["test"] for s in torch_runs]),
                   "torch_s_per_epoch": _common.stats([r["s_per_epoch"]
                                                       for r in torch_runs.values()]),
                   "paired_seeds": seeds}
            if seeds:
                d = [100 * (sk_runs[s]["test"] - torch_runs[s]["test"]) for s in seeds]
                row["gap"] = float(np.mean(d))
                row["gap_text"] = _common.paired_difference(
                    [100 * torch_runs[s]["test"] for s in seeds],
                    [100 * sk_runs[s]["test"] for s in seeds])
            out.append(row)
    return out


def find_row(rows, **kw):
    for r in rows:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def acc_mean(rows, network, dataset, method):
    r = find_row(rows, network=network, dataset=dataset, method=method)
    return None if r is None or not r.get("accuracy") else r["accuracy"]["mean"]


def mem_peak(memory, network, dataset, method):
    r = next((m for m in memory if (m["network"], m["dataset"], m["method"])
              == (network, dataset, method)), None)
    return None if failed(r) else r["peak_mib"]


def check_targets(res, args):
    """``[check, measured, target, status]`` rows."""
    rows, table, memory, peers = [], res["table"], res.get("memory", []), res["peers"]

    def status(ok, accuracy=True):
        if ok is None:
            return "not measured"
        if accuracy and args.quick:
            return "n/a (quick run)"
        if accuracy and res["fallback"]:
            return "n/a (no Fashion-MNIST)"
        return "PASS" if ok else "FAIL"

    t = TARGETS["peer_gap"]
    for rule in t["rules"]:
        p = next((p for p in peers if (p["network"], p["dataset"]) == t["config"]
                  and p["rule"] == rule), None)
        gap = None if p is None else p.get("gap")
        rows.append([f"{RULE_LABELS[rule]} skbnn − PyTorch, {NETWORKS[t['config'][0]]['label']} "
                     f"{DATASETS[t['config'][1]]['label']} (standard step)",
                     "—" if gap is None else f"{gap:+.2f} points",
                     f"|gap| ≤ {t['max_abs']} point",
                     status(None if gap is None else abs(gap) <= t["max_abs"])])
    net, ds = TARGETS["dfa_vs_backprop"]["config"]
    for training in STEPS:
        bp, dfa = (acc_mean(table, net, ds, f"{r}_{training}") for r in ("backprop", "dfa"))
        ok = None if bp is None or dfa is None else bp - dfa <= TARGETS["dfa_vs_backprop"][
            "max_points"]
        rows.append([f"backprop − DFA, {NETWORKS[net]['label']} {DATASETS[ds]['label']}, "
                     f"{STEPS[training]}",
                     "—" if ok is None else f"{bp - dfa:+.2f} points ({bp:.2f} / {dfa:.2f} %)",
                     f"≤ {TARGETS['dfa_vs_backprop']['max_points']} point", status(ok)])
    net, ds = TARGETS["drtp_accuracy"]["config"]
    for training in STEPS:
        a = acc_mean(table, net, ds, f"drtp_{training}")
        rows.append([f"DRTP accuracy, {NETWORKS[net]['label']} {DATASETS[ds]['label']}, "
                     f"{STEPS[training]}", "—" if a is None else f"{a:.2f} %",
                     f"> {TARGETS['drtp_accuracy']['min_percent']} %",
                     status(None if a is None else a > TARGETS["drtp_accuracy"]["min_percent"])])
    t = TARGETS["cnv_standard_memory"]
    bp = mem_peak(memory, t["network"], t["input"], f"backprop_{t['training']}")
    for rule, ratio in t["max_ratio"].items():
        m = mem_peak(memory, t["network"], t["input"], f"{rule}_{t['training']}")
        ok = None if bp is None or m is None else (
            m < ratio * bp if t["strict"][rule] else m <= ratio * bp)
        rows.append([f"memory {RULE_LABELS[rule]} / backprop, CNV 3x32x32 standard, B = 100",
                     "—" if ok is None else f"{m / bp:.2f}× ({m:.1f} / {bp:.1f} MiB)",
                     f"{'<' if t['strict'][rule] else '≤'} {ratio}×", status(ok, False)])
    t = TARGETS["local_rules_memory"]
    for network, dataset, training in t["settings"]:
        bp = mem_peak(memory, network, dataset, f"backprop_{training}")
        for rule in t["rules"]:
            m = mem_peak(memory, network, dataset, f"{rule}_{training}")
            ok = None if bp is None or m is None else m <= t["max_ratio"] * bp
            rows.append([f"memory {RULE_LABELS[rule]} / backprop, {NETWORKS[network]['label']} "
                         f"{DATASETS[dataset]['label']}, {STEPS[training]}, B = 100",
                         "—" if ok is None else f"{m / bp:.2f}× ({m:.2f} / {bp:.2f} MiB)",
                         f"≤ {t['max_ratio']}×", status(ok, False)])
    return rows


def findings(res):
    """The paper's three findings from the table: ``[{finding, verdict, evidence}]``."""
    table, out = res["table"], []
    conv_rules = [METHODS[m]["rule"] for m in CNN_METHODS if m.endswith("low_memory")]
    step = "low_memory"  # every conv rule ran the low-memory step

    def acc(network, rule):
        return acc_mean(table, network, "fmnist32", f"{rule}_{step}")

    res_acc = {r: acc("binarynet_residual", r) for r in conv_rules}
    plain_acc = {r: acc("binarynet", r) for r in conv_rules}
    # (1)
    if all(v is None for v in res_acc.values()):
        err = find_row(table, network="binarynet_residual", method=f"backprop_{step}")
        why = (err or {}).get("status", "no runs")
        out.append({"finding": "(1) BP is the most accurate with skip connections",
                    "verdict": "not tested", "evidence": f"BinaryNet + shortcuts: {why}"})
    else:
        have = {r: v for r, v in res_acc.items() if v is not None}
        best = max(have, key=have.get)
        out.append({"finding": "(1) BP is the most accurate with skip connections",
                    "verdict": "replicated" if best == "backprop" else "not replicated",
                    "evidence": "BinaryNet + shortcuts, low-memory step, test %: " + ", ".join(
                        f"{RULE_LABELS[r]} {v:.2f}" for r, v in have.items())})
    # (2)
    parts = []
    drops = {r: res_acc[r] - plain_acc[r] for r in conv_rules
             if res_acc.get(r) is not None and plain_acc.get(r) is not None}
    if drops:
        parts.append("accuracy lost without shortcuts (points): " + ", ".join(
            f"{RULE_LABELS[r]} {d:+.2f}" for r, d in drops.items()))
    else:
        parts.append("the drop cannot be computed (no BinaryNet + shortcuts runs)")
    overtakes = []
    for network in ("binarynet", "cnv"):
        bp, dfa = acc(network, "backprop"), acc(network, "dfa")
        if bp is not None and dfa is not None:
            overtakes.append(dfa > bp)
            parts.append(f"{NETWORKS[network]['label']}: DFA {dfa:.2f} % vs BP {bp:.2f} %")
    if drops:
        hurt_most = max(drops, key=drops.get) == "backprop"
        overtaken = any(overtakes)
        verdict = ("replicated" if hurt_most and overtaken else
                   "partly replicated" if hurt_most or overtaken else "not replicated")
    elif overtakes:
        verdict = ("not tested without shortcuts to remove; DFA overtaking BP: "
                   + ("replicated" if any(overtakes) else "not replicated"))
    else:
        verdict = "not tested"
    out.append({"finding": "(2) removing skips hurts BP most and DFA can overtake it",
                "verdict": verdict, "evidence": "; ".join(parts)})
    # (3)
    memory = res.get("memory", [])
    evidence, per_rule = [], {}
    for row in table:
        if row.get("rule") not in LOCAL_RULES or not row.get("accuracy"):
            continue
        bp = find_row(table, network=row["network"], dataset=row["dataset"],
                      method=f"backprop_{row['training']}")
        if not bp or not bp.get("accuracy"):
            continue
        c = per_rule.setdefault(row["rule"], {"memory": [0, 0], "time": [0, 0], "acc": [0, 0]})
        if row.get("memory_mib") is not None and bp.get("memory_mib") is not None:
            c["memory"][0] += row["memory_mib"] < bp["memory_mib"]
            c["memory"][1] += 1
        c["time"][0] += row["s_per_epoch"]["mean"] < bp["s_per_epoch"]["mean"]
        c["time"][1] += 1
        c["acc"][0] += row["accuracy"]["mean"] < bp["accuracy"]["mean"]
        c["acc"][1] += 1
    for network, dataset, training in (("cnv", "cifar_shape", "standard"),
                                       ("cnv", "cifar_shape", "low_memory")):
        bpm = mem_peak(memory, network, dataset, f"backprop_{training}")
        for rule in LOCAL_RULES:
            m = mem_peak(memory, network, dataset, f"{rule}_{training}")
            if bpm is not None and m is not None:
                c = per_rule.setdefault(rule, {"memory": [0, 0], "time": [0, 0],
                                               "acc": [0, 0]})
                c["memory"][0] += m < bpm
                c["memory"][1] += 1
    all_hold = bool(per_rule)
    for rule, c in per_rule.items():
        evidence.append(f"{RULE_LABELS[rule]}: less memory {c['memory'][0]}/{c['memory'][1]}, "
                        f"less time {c['time'][0]}/{c['time'][1]}, lower accuracy "
                        f"{c['acc'][0]}/{c['acc'][1]}")
        all_hold &= all(v[0] == v[1] and v[1] > 0 for v in c.values())
    any_hold = any(v[0] > 0 for c in per_rule.values() for v in c.values())
    out.append({"finding": "(3) DRTP, HSIC, SigpropTL need less memory and time than BP, "
                           "at an accuracy cost",
                "verdict": ("not tested" if not per_rule else "replicated" if all_hold else
                            "partly replicated" if any_hold else "not replicated"),
                "evidence": "comparisons with backprop of the same network, data and step "
                            "(memory also CNV 3x32x32): " + "; ".join(evidence)})
    return out


# ------------------------------------------------------------------ time estimate
def estimate_full_times(res, args):
    """Minutes each full section would take at the rates this run measured
    (seconds per training sample and epoch, per scored sample), for the full
    budgets, 3 seeds, ``FULL_JOBS`` runs at a time (the default ``--jobs``)."""
    full = {}
    runs = [r for r in res.get("runs", []) if not failed(r)]

    def rate(kind, network, dataset, key):
        rs = [r for r in runs if r["kind"] == kind and r["network"] == network
              and r["table_dataset"] == dataset and (r.get("method") or r.get("rule")) == key]
        if not rs:
            return None
        r = rs[0]
        train = r["fit_s"] / (r["n_train"] * max(1, r["epochs"]))
        ev = r.get("eval_s", 0.0) / max(1, r["n_eval"])
        return train, ev

    n_full = {"fmnist": 50000, "prototypes": 10000, "fmnist32": 50000}
    n_eval_full = {"fmnist": 10000, "prototypes": 2000, "fmnist32": 10000}
    fake = type("A", (), {})()
    fake.quick, fake.networks, fake.methods = False, tuple(NETWORKS), tuple(METHODS)
    for section in ("mlp", "cnn", "peers"):
        total, missing = 0.0, []
        rows = section_rows(section, fake)
        items = [("skbnn", n, d, m) for n, d, m in rows
                 if not (m in MLP_ONLY and "architecture" in NETWORKS[n])]
        if section == "peers":
            items = [("torch", n, d, r) for n, d in SECTIONS["peers"]["configs"]
                     for r in SECTIONS["peers"]["rules"]]
        for kind, network, dataset, key in items:
            b = finalise_budget({"budget": budget_for(network, fake), "table_dataset": dataset})[
                "budget"]
            rt = rate(kind, network, dataset, key)
            if rt is None:
                missing.append(f"{network}/{dataset}/{key}")
                continue
            n = b["train_subset"] or n_full[dataset]
            ne = b["eval_subset"] or n_eval_full[dataset]
            total += len(SEEDS) * (rt[0] * n * b["epochs"] + rt[1] * ne)
        if section == "peers":
            section = "peers (PyTorch runs; the skbnn runs are the mlp section's)"
        full[section] = {"minutes": total / 60 / FULL_JOBS if len(missing) < len(items)
                         else None, "unmeasured": missing}
    mem_wall = res.get("memory_wall_s")
    if mem_wall is not None:
        full["memory"] = {"minutes": mem_wall / 60 * (SECTIONS["memory"]["calls"] + 1)
                          / (args.memory_calls + 1), "unmeasured": []}
    return full


# ------------------------------------------------------------------ output
def plot(table, memory, path):
    """Accuracy against measured memory, one marker per rule, one panel per
    network and data set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    panels = list(dict.fromkeys((r["network"], r["dataset"]) for r in table
                                if r.get("accuracy") and r.get("memory_mib") is not None))
    if not panels:
        return None
    markers = {"local": "P", "bep": "X", "backprop": "o", "dfa": "s", "drtp": "^",
               "hsic": "D", "sigprop": "v"}
    colors = {"standard": "tab:red", "low_memory": "tab:blue", None: "tab:green"}
    ncol = min(3, len(panels))
    nrow = (len(panels) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 3.9 * nrow), squeeze=False)
    for ax, (network, dataset) in zip(axes.flat, panels):
        for r in table:
            if (r["network"], r["dataset"]) != (network, dataset) or not r.get("accuracy") \
                    or r.get("memory_mib") is None:
                continue
            a = r["accuracy"]
            ax.errorbar([r["memory_mib"]], [a["mean"]], yerr=[a["std"]],
                        marker=markers[r["rule"]], color=colors[r["training"]],
                        linestyle="none", markersize=7, capsize=2)
        used = next(r["used_dataset"] for r in table if (r["network"], r["dataset"])
                    == (network, dataset))
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.ScalarFormatter())  # plain numbers, log axis
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_title(f"{NETWORKS[network]['label']}, {data_label(dataset, used)}", fontsize=8)
        ax.set_xlabel("measured training memory, batch 100 (MiB)", fontsize=8)
        ax.set_ylabel("test accuracy (%)", fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], marker=mk, color="gray", linestyle="none",
                          label=RULE_LABELS[rule]) for rule, mk in markers.items()]
    handles += [plt.Line2D([], [], marker="o", color=c, linestyle="none",
                           label={"standard": "standard step", "low_memory": "low-memory step",
                                  None: "own rule (Local, BEP)"}[k])
                for k, c in colors.items()]
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=8)
    fig.tight_layout(rect=(0, 0.08 if nrow > 1 else 0.14, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def data_label(dataset, used):
    """The data set a row ran on, naming the one it stands in for."""
    if used == dataset:
        return DATASETS[dataset]["label"]
    return f"{DATASETS[used]['label']} (for {DATASETS[dataset]['label']})"


def fmt(x, spec=".2f"):
    return "—" if x is None else format(x, spec)


def budget_lines(res, args):
    """How much each training section ran."""
    lines = []
    for section in ("mlp", "cnn"):
        if section not in args.sections:
            continue
        for network in SECTIONS[section]["networks"]:
            if network not in args.networks:
                continue
            for dataset in SECTIONS[section]["datasets"]:
                b = finalise_budget({"budget": budget_for(network, args),
                                     "table_dataset": dataset})["budget"]
                used = resolve_dataset(dataset, args.synthetic)
                lines.append([section, NETWORKS[network]["label"], data_label(dataset, used),
                              b["train_subset"] or "all", b["epochs"],
                              b["eval_subset"] or "all", len(args.seeds)])
    return lines


def render_markdown(res, args):
    title = "# Every training rule, same data, same budget"
    lines = [title + (" (quick run)" if args.quick else ""), "",
             _common.machine_summary_md(res["machine"]), ""]
    if res["fallback"]:
        lines += [f"**Fashion-MNIST not used** ({res['fallback']}): its rows ran on Random "
                  "Prototypes instead (1,000 bits for the MLPs, 1,024 bits as 1x32x32 images "
                  "for the conv nets).", ""]
    if args.quick:
        lines += ["Quick run: tiny subsets, one seed, one epoch. It checks that the command "
                  "works; its accuracies are not the comparison, and accuracy targets are not "
                  "judged.", ""]
    bl = budget_lines(res, args)
    if bl:
        lines += ["## Budget", "", "Adam (1e-3, constant) for every LowMem rule, batch 100, "
                  "one thread per run; Local and BEP with their defaults and the same epochs; "
                  "test = the official Fashion-MNIST test set (its first *n* images where "
                  "shown) or the Random Prototypes test split.", "",
                  _common.markdown_table(["section", "network", "data", "training images",
                                          "epochs", "test images", "seeds"], bl, "lllrrrr"), ""]
    if res["table"]:
        rows = []
        for r in res["table"]:
            step = STEPS.get(r["training"], "—")
            if r.get("status", "").startswith("n/a"):
                rows.append([NETWORKS[r["network"]]["label"],
                             data_label(r["dataset"], r["used_dataset"]), RULE_LABELS[r["rule"]],
                             step, "n/a", "n/a", "n/a", ""])
                continue
            acc = "—" if not r.get("accuracy") else mean_sd(r["accuracy"]["values"])[1]
            spe = "—" if not r.get("s_per_epoch") else mean_sd(r["s_per_epoch"]["values"])[1]
            rows.append([NETWORKS[r["network"]]["label"],
                         data_label(r["dataset"], r["used_dataset"]),
                         RULE_LABELS[r["rule"]], step, acc, spe, fmt(r.get("memory_mib")),
                         r.get("status", "")])
        lines += ["## Results", "",
                  "Test accuracy mean ± sd over seeds; seconds per epoch (fit time / epochs, "
                  f"{args.jobs} runs at a time on the machine); memory = measured peak of a "
                  "training step at batch 100 (memory section, random inputs of the row's "
                  "shape).", "",
                  _common.markdown_table(["network", "data", "rule", "step", "test %",
                                          "s/epoch", "memory MiB", "note"], rows,
                                         "llllrrrl"), ""]
    if res["peers"]:
        rows = []
        for p in res["peers"]:
            rows.append([NETWORKS[p["network"]]["label"],
                         data_label(p["dataset"], resolve_dataset(p["dataset"], args.synthetic)),
                         RULE_LABELS[p["rule"]],
                         mean_sd(p["skbnn"]["values"])[1] if p["skbnn"] else "—",
                         mean_sd(p["torch"]["values"])[1] if p["torch"] else "—",
                         p.get("gap_text", "—"),
                         mean_sd(p["torch_s_per_epoch"]["values"])[1]
                         if p["torch_s_per_epoch"] else "—"])
        lines += ["## PyTorch peers (fidelity)", "",
                  "skbnn's standard step against `_torch_rules.py` (the same network, Glorot "
                  "init, Adam 1e-3, batch 100, epochs, gradient cancellation at |V| >= 1; its "
                  "own N(0, 1) feedback draws); gap = "
                  "skbnn − PyTorch, paired by seed (± its standard error).", "",
                  _common.markdown_table(["network", "data", "rule", "skbnn %", "PyTorch %",
                                          "gap (points)", "PyTorch s/epoch"], rows,
                                         "lllrrrr"), ""]
    mem = [m for m in res.get("memory", []) if m["dataset"] == "cifar_shape"]
    if mem:
        rows = [[NETWORKS[m["network"]]["label"], RULE_LABELS[METHODS[m["method"]]["rule"]],
                 STEPS[METHODS[m["method"]]["training"]],
                 f"error: {m['error']}" if failed(m) else fmt(m["peak_mib"]),
                 "" if failed(m) else fmt(m.get("model_mib"))] for m in mem]
        lines += ["## Memory on 3x32x32 (batch 100)", "",
                  _common.markdown_table(["network", "rule", "step", "measured MiB",
                                          "memory_model_ MiB"], rows, "lllrr"), ""]
    lines += ["## Targets", "", _common.markdown_table(
        ["check", "measured", "target", "status"], res["targets"], "lrrl"), ""]
    lines += ["## The paper's findings (Crulis et al. 2024), from this table", ""]
    for f in res["findings"]:
        ev = f["evidence"]
        lines += [f"- **{f['finding']}**: {f['verdict']}. {ev[:1].upper() + ev[1:]}."]
    lines += ["", "Nothing was tuned to produce or avoid them: every rule runs the "
              "package's defaults and the budget above.", ""]
    est = res.get("full_time_estimate")
    if est:
        rows = [[s, fmt(v.get("minutes"), ".1f"),
                 "section not run" if v.get("minutes") is None else
                 ", ".join(v["unmeasured"]) if v.get("unmeasured") else ""]
                for s, v in est.items() if v]
        lines += ["## Estimated full-run time per section", "",
                  f"From this run's measured seconds per training sample and epoch (and per "
                  f"scored sample; this run had {args.jobs} at a time), scaled to the full "
                  f"budgets, {len(SEEDS)} seeds, {FULL_JOBS} runs at a time; setup costs of "
                  "tiny runs make it conservative, a busy machine makes it optimistic.", "",
                  _common.markdown_table(["section", "minutes", "not measured here"], rows,
                                         "lrl"), ""]
    if res.get("plot"):
        lines += [f"![accuracy vs memory]({os.path.basename(res['plot'])})", ""]
    cpu = res.get("cpu_use_during_run", {})
    if cpu.get("other_processes_cpus") is not None:
        lines += [f"Other processes used {cpu['other_processes_cpus']:.2f} CPUs on average "
                  f"during the run ({cpu['wall_s'] / 60:.1f} min); seconds per epoch suffer "
                  "when that is high."]
    return "\n".join(lines) + "\n"


def parse_args(argv):
    parser = _common.make_parser(__doc__, "1 seed, 1 epoch, tiny subsets (a few minutes)")
    parser.add_argument("--sections", default="mlp,cnn,peers,memory",
                        help="comma list of mlp, cnn, peers, memory (default: all)")
    parser.add_argument("--seeds", default=None, help="comma list (default 0,1,2; quick 0)")
    parser.add_argument("--jobs", type=int, default=FULL_JOBS,
                        help="runs at a time, one process and one thread each (default 2)")
    parser.add_argument("--networks", default=",".join(NETWORKS),
                        help=f"comma subset of {', '.join(NETWORKS)}")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma subset of {', '.join(METHODS)}")
    parser.add_argument("--memory-calls", type=int, default=None,
                        help="measured partial_fit calls after the first (default 2, quick 1)")
    parser.add_argument("--synthetic", action="store_true",
                        help="use Random Prototypes in place of Fashion-MNIST")
    parser.set_defaults(out=None)
    args = parser.parse_args(argv)
    args.sections = _common.parse_list(args.sections)
    for name, chosen, allowed in (("sections", args.sections, ("mlp", "cnn", "peers", "memory")),
                                  ("networks", _common.parse_list(args.networks), NETWORKS),
                                  ("methods", _common.parse_list(args.methods), METHODS)):
        unknown = set(chosen) - set(allowed)
        if unknown:
            parser.error(f"--{name}: unknown {sorted(unknown)}; choose from {list(allowed)}")
    args.networks = tuple(_common.parse_list(args.networks))
    args.methods = tuple(_common.parse_list(args.methods))
    args.seeds = (tuple(_common.parse_list(args.seeds, int)) if args.seeds
                  else QUICK["seeds"] if args.quick else SEEDS)
    args.memory_calls = args.memory_calls or (QUICK["memory_calls"] if args.quick
                                              else SECTIONS["memory"]["calls"])
    if args.out is None:
        args.out = str(_common.DEFAULT_OUT / ("rules_quick" if args.quick else "rules"))
    return args


def main(argv=None):
    args = parse_args(argv)
    out = _common.Path(args.out)
    os.makedirs(out, exist_ok=True)
    fallback = None
    if args.synthetic:
        fallback = "--synthetic"
    elif not fmnist_available(False):
        fallback = "the Fashion-MNIST files are missing"
    if fallback:
        log(f"Fashion-MNIST rows use Random Prototypes ({fallback})")
    res = {"machine": _common.machine_info(), "args": vars(args), "fallback": fallback,
           "config": {"networks": NETWORKS, "datasets": DATASETS, "methods": METHODS,
                      "sections": SECTIONS, "quick": QUICK, "targets": TARGETS},
           "torch": _torch_rules.torch_available()}
    if "peers" in args.sections and not res["torch"]:
        log("PyTorch is not installed: no peers")
    with _common.CpuMonitor() as monitor:
        jobs = sorted(plan_jobs(args), key=job_order)
        t0 = time.perf_counter()
        res["runs"] = run_jobs(jobs, args.jobs) if jobs else []
        res["training_wall_s"] = time.perf_counter() - t0
        if "memory" in args.sections:
            t0 = time.perf_counter()
            res["memory"] = memory_section(args)
            res["memory_wall_s"] = time.perf_counter() - t0
    res["cpu_use_during_run"] = monitor.as_dict()
    res["table"] = summarise(res, args)
    res["peers"] = peer_rows(res, args) if "peers" in args.sections else []
    res["targets"] = check_targets(res, args)
    res["findings"] = findings(res)
    res["full_time_estimate"] = estimate_full_times(res, args)
    try:
        res["plot"] = plot(res["table"], res.get("memory", []),
                           out / "comparison_accuracy_memory.png")
    except ImportError:
        res["plot"] = None
        log("matplotlib missing: no plot")
    _common.write_json(out / "comparison.json", res)
    md = render_markdown(res, args)
    _common.write_markdown(out / "comparison.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
