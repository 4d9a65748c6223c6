"""Kernel-path selection (``SKBNN_ISA``), thread counts and ``show_config``."""
import os
import sys

from . import _kernels

ISA_NAMES = _kernels.ISA_NAMES


def _select_isa_from_env():
    """Pick the kernel path once at import: ``SKBNN_ISA`` or the best one."""
    requested = os.environ.get("SKBNN_ISA", "").strip().lower()
    if requested in ("", "auto"):
        _kernels.set_isa(_kernels.best_isa())
        return
    if requested not in ISA_NAMES:
        raise ValueError(
            f"SKBNN_ISA={requested!r} is not a kernel path; "
            f"expected one of {', '.join(ISA_NAMES)} (or 'auto')")
    if not _kernels.cpu_supports(requested):
        raise ValueError(
            f"SKBNN_ISA={requested!r} is not supported by this CPU; "
            f"it supports: {', '.join(_kernels.available_isas())}")
    _kernels.set_isa(requested)


def _cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def effective_n_threads(n_jobs):
    """Threads for a kernel call: ``None`` -> 1, ``-1`` -> all available,
    ``-k`` -> all but ``k - 1``, ``k > 0`` -> ``k``.

    "All available" is OpenMP's default (which honours ``OMP_NUM_THREADS``
    and ``threadpoolctl`` limits) capped by the CPUs this process may use.
    Without OpenMP every call is sequential.
    """
    if not _kernels.openmp_enabled():
        return 1
    if n_jobs is None:
        return 1
    available = max(1, min(_kernels.omp_max_threads(), _cpu_count()))
    if n_jobs < 0:
        return max(1, available + 1 + n_jobs)
    return int(n_jobs)


def get_config():
    """Kernel configuration as a dict (see :func:`show_config`)."""
    return {
        "kernel_path": _kernels.get_isa(),
        "best_kernel_path": _kernels.best_isa(),
        "cpu_supports": {name: _kernels.cpu_supports(name) for name in ISA_NAMES},
        "SKBNN_ISA": os.environ.get("SKBNN_ISA"),
        "openmp": _kernels.openmp_enabled(),
        "max_threads": effective_n_threads(-1),
    }


def show_config(file=None):
    """Print the kernel path in use, what the CPU supports, OpenMP and threads.

    Parameters
    ----------
    file : file-like, default=sys.stdout
        Where to print.
    """
    cfg = get_config()
    file = sys.stdout if file is None else file
    support = ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in cfg["cpu_supports"].items())
    print(f"skbnn kernel path : {cfg['kernel_path']}"
          f" (best available: {cfg['best_kernel_path']}; SKBNN_ISA={cfg['SKBNN_ISA']})",
          file=file)
    print(f"CPU supports      : {support}", file=file)
    print(f"OpenMP            : {'on' if cfg['openmp'] else 'off'}", file=file)
    print(f"threads (n_jobs=-1): {cfg['max_threads']} (estimators default to 1)", file=file)


_select_isa_from_env()
