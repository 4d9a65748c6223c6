"""Shared helpers of the skbnn benchmark scripts (not part of the package).

* :func:`machine_info` -- CPU, library versions, ``skbnn.get_config()``,
  thread settings, date and the exact command line, for the JSON files.
* :func:`write_json`, :func:`write_markdown`, :func:`markdown_table`.
* :func:`time_call` -- best / median of repeated calls (``time.perf_counter``).
* :func:`estimate_cpu_freq` -- clock for the physical-limit formula
  ``f * W * min(P_valu / u, P_popcnt)`` of ``bench_kernels.py``.
* :func:`load_fmnist`, :func:`fmnist_splits`, :func:`prototypes_splits` --
  the papers' data splits (the local-rule code's); :func:`shuffled_indices` -- the
  run's row order (NumPy permutation, or the local-rule code's own shuffle).

Import this module only after the thread environment variables are set
(each script does ``os.environ.setdefault(...)`` before any other import).
"""
import contextlib
import ctypes
import datetime
import json
import os
import platform
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results"


def set_single_thread_env():
    """Single-threaded BLAS/OpenMP unless the caller already chose: must run
    before NumPy is imported (the scripts call it at their very top)."""
    for var in THREAD_ENV_VARS:
        os.environ.setdefault(var, "1")


# ---------------------------------------------------------------- machine info
def _cpuinfo():
    """First processor block of /proc/cpuinfo as a dict (Linux only)."""
    info = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.split("\n\n")[0].splitlines():
        if ":" in line:
            key, _, value = line.partition(":")
            info[key.strip()] = value.strip()
    return info


def cpu_model():
    info = _cpuinfo()
    return info.get("model name") or platform.processor() or platform.machine()


def cpuinfo_mhz():
    """'cpu MHz' of /proc/cpuinfo (under a hypervisor: usually the nominal
    TSC clock, not the boost clock the core really runs at), or None."""
    try:
        return float(_cpuinfo().get("cpu MHz"))
    except (TypeError, ValueError):
        return None


def _git_state():
    try:
        head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return {"commit": head or None, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def _load_average():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info():
    """Everything needed to interpret a benchmark number later."""
    import sklearn
    import skbnn

    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    wanted = ("popcnt", "avx2", "avx512f", "avx512bw", "avx512_vpopcntdq",
              "avx512_bitalg", "hypervisor")
    try:
        n_affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n_affinity = None
    try:
        import threadpoolctl
        tp_version = threadpoolctl.__version__
        pools = [{k: p.get(k) for k in ("user_api", "internal_api", "num_threads",
                                         "prefix", "version", "architecture")}
                 for p in threadpoolctl.threadpool_info()]
    except ImportError:
        tp_version, pools = None, None
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command_line": shlex.join([sys.executable] + sys.argv),
        "cwd": os.getcwd(),
        "cpu_model": cpu_model(),
        "cpu_family": info.get("cpu family"),
        "cpu_model_number": info.get("model"),
        "cpu_stepping": info.get("stepping"),
        "cpuinfo_mhz": cpuinfo_mhz(),
        "cpu_flags": {f: (f in flags) for f in wanted},
        "cache_size": info.get("cache size"),
        "n_cpus": os.cpu_count(),
        "n_cpus_affinity": n_affinity,
        "load_average": _load_average(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "threadpoolctl": tp_version,
        "skbnn": getattr(skbnn, "__version__", None),
        "skbnn_config": skbnn.get_config(),
        "thread_env": {v: os.environ.get(v) for v in THREAD_ENV_VARS + ("SKBNN_ISA",)},
        "threadpools": pools,
        "git": _git_state(),
    }


# ---------------------------------------------------------------- output
def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path, data):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    return path


def write_markdown(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n")
    return path


def markdown_table(headers, rows, align=None):
    """GitHub Markdown table; ``align`` is a string of 'l'/'r' per column
    (default: first column left, the rest right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    cells = [[str(c) for c in row] for row in rows]
    sep = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def machine_summary_md(info):
    cfg = info["skbnn_config"]
    return "\n".join([
        f"- date: {info['date']}",
        f"- command: `{info['command_line']}`",
        f"- CPU: {info['cpu_model']} (family {info['cpu_family']}, model "
        f"{info['cpu_model_number']}), {info['n_cpus_affinity']} usable CPUs, "
        f"/proc/cpuinfo {info['cpuinfo_mhz']} MHz, "
        f"hypervisor: {'yes' if info['cpu_flags'].get('hypervisor') else 'no'}",
        f"- load average at start: {info['load_average']}",
        f"- skbnn {info['skbnn']} kernel path {cfg['kernel_path']} (best "
        f"{cfg['best_kernel_path']}), OpenMP {'on' if cfg['openmp'] else 'off'}; "
        f"numpy {info['numpy']}, scikit-learn {info['sklearn']}, "
        f"threadpoolctl {info['threadpoolctl']}, Python {info['python']}",
        "- thread env: " + ", ".join(f"{k}={v}" for k, v in info["thread_env"].items()),
        f"- git: {info['git']['commit']}{' (dirty tree)' if info['git']['dirty'] else ''}",
    ])


# ---------------------------------------------------------------- timing
def time_call(fn, repeats=5, number=None, min_time=0.0, warmup=1):
    """Time ``fn()`` with ``time.perf_counter``.

    ``number`` calls make one sample (when None: doubled from 1 until one
    sample lasts at least ``min_time`` seconds, like ``timeit.autorange``);
    ``repeats`` samples are taken after ``warmup`` untimed calls.  Returns
    per-call seconds: ``best`` (minimum), ``median``, all ``samples``, and
    ``number``.
    """
    for _ in range(warmup):
        fn()
    if number is None:
        number = 1
        while True:
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            if time.perf_counter() - t0 >= min_time or number >= 1 << 20:
                break
            number *= 2
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number)
    return {"best": float(min(samples)), "median": float(np.median(samples)),
            "samples": [float(s) for s in samples], "number": int(number)}


def _system_busy_seconds():
    """Busy CPU seconds of the whole machine since boot (/proc/stat), or None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    ticks = [int(x) for x in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    steal = ticks[7] if len(ticks) > 7 else 0
    guest = sum(ticks[8:10]) if len(ticks) > 9 else 0  # already counted in user/nice
    busy = sum(ticks) - idle - steal - guest
    return busy / os.sysconf("SC_CLK_TCK")


class CpuMonitor:
    """How much CPU *other* processes used while a block ran: machine busy
    time (/proc/stat) minus this process's CPU time, per wall second.  On a
    2-CPU machine shared with another benchmark, a value near 1 means the
    other process held a whole core (multi-threaded timings then suffer)."""

    def __enter__(self):
        self._busy0 = _system_busy_seconds()
        t = os.times()  # children: waited-for subprocesses (apt-get, cc) count as own
        self._own0 = t.user + t.system + t.children_user + t.children_system
        self._wall0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self._wall0
        busy1 = _system_busy_seconds()
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system - self._own0
        if self._busy0 is None or busy1 is None or wall <= 0:
            self.other_cpus = None
        else:
            # /proc/stat ticks are coarse (10 ms): clamp tiny negatives
            self.other_cpus = max(0.0, (busy1 - self._busy0 - own) / wall)
        self.own_cpus = own / wall if wall > 0 else None
        self.wall = wall
        return False

    def as_dict(self):
        return {"wall_s": self.wall, "own_cpus": self.own_cpus,
                "other_processes_cpus": self.other_cpus}


# ---------------------------------------------------------------- clock
_CHAIN_C = r"""
#include <stdint.h>
/* n iterations of 64 dependent 1-cycle integer adds: about 64*n cycles */
uint64_t add_chain(uint64_t n, uint64_t x)
{
    for (uint64_t i = 0; i < n; i++) {
#if defined(__x86_64__) || defined(__i386__)
#define A1 "add $1, %0\n\t"
#elif defined(__aarch64__)
#define A1 "add %0, %0, #1\n\t"
#else
#error "no inline asm for this architecture"
#endif
#define A8 A1 A1 A1 A1 A1 A1 A1 A1
        __asm__ volatile(A8 A8 A8 A8 A8 A8 A8 A8 : "+r"(x));
    }
    return x;
}
"""


def _chain_clock(repeats=31, target_cycles=1e7):
    """Core clock from a dependent chain of 1-cycle integer adds, compiled
    with the system C compiler and called through ctypes; None if no
    compiler or no supported architecture."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return None, "no C compiler found"
    with tempfile.TemporaryDirectory(prefix="skbnn_clock_") as tmp:
        src, lib = Path(tmp) / "chain.c", Path(tmp) / "chain.so"
        src.write_text(_CHAIN_C)
        proc = subprocess.run([cc, "-O1", "-shared", "-fPIC", "-o", str(lib), str(src)],
                              capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            return None, f"compile failed: {proc.stderr.strip()[:200]}"
        fn = ctypes.CDLL(str(lib)).add_chain
        fn.argtypes = (ctypes.c_uint64, ctypes.c_uint64)
        fn.restype = ctypes.c_uint64
        n = int(target_cycles // 64)
        fn(4 * n, 0)  # warm up (and let the clock ramp)
        best = min(time_call(lambda: fn(n, 0), repeats=repeats, number=1, warmup=1)["samples"])
    return 64.0 * n / best, f"dependent 1-cycle add chain ({cc}, {64 * n:.0f} adds, best of {repeats})"


def estimate_cpu_freq(override_ghz=None, quick=False):
    """Clock f (Hz) for the physical-limit formula, and how it was obtained.

    Order: ``override_ghz`` if given; else a timing loop (a chain of
    dependent 1-cycle adds: cycles = adds, so adds/second = clock while the
    loop runs, i.e. the boost clock under load); else /proc/cpuinfo
    'cpu MHz' (under a hypervisor usually the nominal clock, which
    underestimates a boosting core).  Every available value is returned.
    """
    result = {"cpuinfo_hz": (cpuinfo_mhz() or 0) * 1e6 or None}
    # short samples (~2.5 ms), many of them: on a shared machine the best one
    # is likely not preempted
    chain_hz, chain_note = _chain_clock(repeats=21 if quick else 51)
    result["timing_loop_hz"] = chain_hz
    result["timing_loop_method"] = chain_note
    if override_ghz:
        result["hz"], result["method"] = override_ghz * 1e9, "--freq-ghz override"
    elif chain_hz:
        result["hz"], result["method"] = chain_hz, "timing loop: " + chain_note
    elif result["cpuinfo_hz"]:
        result["hz"], result["method"] = result["cpuinfo_hz"], "/proc/cpuinfo 'cpu MHz'"
    else:
        result["hz"], result["method"] = None, "unknown"
    return result


# ---------------------------------------------------------------- data sets
FMNIST_HELD_OUT = 10_000
PROTOTYPES_TEST = 2_000


def load_fmnist(try_install=True, verbose=True):
    """``skbnn.datasets.load_fashion_mnist()``; when the files are missing and
    this process runs as root, try ``apt-get install -y dataset-fashion-mnist``
    once and retry.  Returns the Bunch, or None (with a message) if the data
    set stays unavailable."""
    from skbnn.datasets import load_fashion_mnist

    try:
        return load_fashion_mnist()
    except FileNotFoundError as exc:
        first_error = exc
    if not try_install:
        if verbose:
            print(f"Fashion-MNIST not available: {first_error}", file=sys.stderr)
        return None
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    apt = shutil.which("apt-get")
    if not (is_root and apt):
        if verbose:
            print("Fashion-MNIST files missing and cannot install them "
                  f"({'not root' if not is_root else 'no apt-get'}): skipping. "
                  "Install with `apt-get install -y dataset-fashion-mnist`.", file=sys.stderr)
        return None
    if verbose:
        print("Fashion-MNIST missing: running apt-get install -y dataset-fashion-mnist ...",
              file=sys.stderr)
    try:
        # wait for the dpkg lock (another apt may be installing it right now)
        proc = subprocess.run([apt, "install", "-y", "-o", "DPkg::Lock::Timeout=300",
                               "dataset-fashion-mnist"],
                              capture_output=True, text=True, timeout=900)
        if proc.returncode != 0 and verbose:
            print(f"apt-get failed ({proc.returncode}): {proc.stderr.strip()[-500:]}",
                  file=sys.stderr)
    except (OSError, subprocess.SubprocessError) as exc:
        if verbose:
            print(f"apt-get could not run: {exc}", file=sys.stderr)
    try:
        return load_fashion_mnist()
    except FileNotFoundError as exc:
        if verbose:
            print(f"Fashion-MNIST still not available, skipping: {exc}", file=sys.stderr)
        return None


SPLITS = ("permutation", "reference")


def shuffled_indices(n, seed, split="permutation"):
    """The order a run's split takes rows in: ``np.random.default_rng(seed)
    .permutation(n)`` (``'permutation'``, what every recorded result before
    the option used), or the local-rule code's ``random.seed(seed);
    random.shuffle(list(range(n)))`` (``'reference'``,
    ``lucacolombo97/BNN_Anon`` ``src/train.py`` and ``src/dataset/utils.py``:
    the first call on the freshly seeded Python generator), which with the
    paper's seeds 42..51 gives the paper's own held-out splits."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if split == "reference":
        order = list(range(n))
        random.Random(seed).shuffle(order)
        return np.asarray(order, dtype=np.intp)
    return np.random.default_rng(seed).permutation(n)


def fmnist_splits(data, seed, split="permutation"):
    """The local-rule paper's split: the 60k official
    training images shuffled (:func:`shuffled_indices`); the LAST 10,000 are
    the held-out split, the first 50,000 train.  The official test set is
    returned unchanged.  Pixels stay uint8: binarisation ('global_median')
    happens inside the estimator, on the training part only (the paper took
    the median before splitting; for Fashion-MNIST both medians are 0)."""
    n = len(data.y_train)
    perm = shuffled_indices(n, seed, split)
    tr, ho = perm[:n - FMNIST_HELD_OUT], perm[n - FMNIST_HELD_OUT:]
    return {"X_train": data.X_train[tr], "y_train": data.y_train[tr],
            "X_heldout": data.X_train[ho], "y_heldout": data.y_train[ho],
            "X_test": data.X_test, "y_test": data.y_test}


def prototypes_splits(seed, split="permutation"):
    """Random Prototypes as in the local-rule paper: the fixed data set
    ``make_random_prototypes(12000, 1000, 10, 0.44, random_state=42)`` (row
    for row the local-rule code's), shuffled with the run seed; the last
    2,000 are the test split, the first 10,000 train.  Features are +/-1
    int8 (not re-binarised)."""
    from skbnn.datasets import make_random_prototypes

    X, y = make_random_prototypes(12000, 1000, 10, 0.44, random_state=42)
    n = len(y)
    perm = shuffled_indices(n, seed, split)
    tr, te = perm[:n - PROTOTYPES_TEST], perm[n - PROTOTYPES_TEST:]
    return {"X_train": X[tr], "y_train": y[tr], "X_heldout": X[te], "y_heldout": y[te],
            "X_test": None, "y_test": None}


def prototypes_bep_splits(seed, split="permutation"):
    """Random Prototypes as in the BEP paper (§4.1): 1000 bits, 10
    classes, flip probability 0.46, 20,000 train / 3,000 test, generated by the
    local-rule recipe with ``random_state=42`` and shuffled with the run seed
    (the last 3,000 are the test split)."""
    from skbnn.datasets import make_random_prototypes

    X, y = make_random_prototypes(23000, 1000, 10, 0.46, random_state=42)
    perm = shuffled_indices(len(y), seed, split)
    tr, te = perm[:20000], perm[20000:]
    return {"X_train": X[tr], "y_train": y[tr], "X_heldout": X[te], "y_heldout": y[te],
            "X_test": None, "y_test": None}


def load_dataset(name, seed, data_cache, split="permutation"):
    """Splits of data set ``name`` for run ``seed`` (Fashion-MNIST loaded once
    into ``data_cache``); None when Fashion-MNIST is unavailable.  ``split``:
    see :func:`shuffled_indices`."""
    if name == "fmnist":
        if "fmnist" not in data_cache:
            data_cache["fmnist"] = load_fmnist()
        if data_cache["fmnist"] is None:
            return None
        return fmnist_splits(data_cache["fmnist"], seed, split)
    if name == "prototypes_bep":
        return prototypes_bep_splits(seed, split)
    return prototypes_splits(seed, split)


def training_split(name, seed, data_cache, subset=None):
    """``(X_train, y_train)`` of data set ``name`` for run ``seed`` (its first
    ``subset`` rows when given), or None when the data set is unavailable."""
    data = load_dataset(name, seed, data_cache)
    if data is None:
        return None
    X, y = data["X_train"], data["y_train"]
    return (X[:subset], y[:subset]) if subset else (X, y)


def mlp_inputs(name, X):
    """Float inputs of the MLP baseline: FMNIST pixels scaled to [0, 1];
    Prototypes as +/-1.  float32, which MLPClassifier keeps (its fastest
    setting, so the speed ratio is conservative)."""
    if X is None:
        return None
    X = X.astype(np.float32)
    return X / 255.0 if name == "fmnist" else X


def stats(values):
    """mean/std/min/max/n of the non-None values (None when empty)."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()),
            "max": float(a.max()), "n": int(a.size), "values": a.tolist()}


def parse_list(text, cast=str):
    """'a,b,c' -> [cast(a), cast(b), cast(c)] (empty items dropped)."""
    return [cast(t.strip()) for t in str(text).split(",") if t.strip()]


def paired_difference(base, other):
    """'+d ± se' of the paired differences ``other - base`` (se of their
    mean, ddof=1; just '+d' for one pair)."""
    d = np.asarray(other, dtype=float) - np.asarray(base, dtype=float)
    if len(d) < 2:
        return f"{d.mean():+.2f}"
    return f"{d.mean():+.2f} ± {d.std(ddof=1) / np.sqrt(len(d)):.2f}"


def parse_configs(text):
    """'dataset:L:K,...' -> [(dataset, L, K), ...]."""
    out = []
    for item in parse_list(text):
        name, depth, width = item.split(":")
        out.append((name, int(depth), int(width)))
    return out


def fmt_si(x, unit="", digits=3):
    """1.234e12 -> '1.23 T' (engineering prefixes)."""
    if x is None or not np.isfinite(x):
        return "n/a"
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.{digits}g} {prefix}{unit}"
    return f"{x:.{digits}g} {unit}".rstrip()


@contextlib.contextmanager
def blas_single_thread():
    """One BLAS thread for NumPy matmul and MLPClassifier (threadpoolctl when
    importable; the env vars the scripts set at their top cover the other
    case).  skbnn's OpenMP kernels get explicit thread counts instead."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield "env OPENBLAS_NUM_THREADS/OMP_NUM_THREADS/MKL_NUM_THREADS=1"
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield "threadpoolctl.threadpool_limits(1, user_api='blas') + env vars = 1"


def make_parser(doc, quick_help):
    """Argument parser with the options every benchmark shares."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--out", default=str(DEFAULT_OUT),
                        help="output directory (default: benchmarks/results)")
    return parser


def add_split_argument(parser):
    """``--split``: how a run's seed orders the rows (:func:`shuffled_indices`)."""
    parser.add_argument("--split", choices=SPLITS, default="permutation",
                        help="row order of each run's split: 'permutation' (NumPy, default) "
                             "or 'reference' (the local-rule code's Python shuffle: with "
                             "seeds 42..51 the paper's own held-out splits)")
