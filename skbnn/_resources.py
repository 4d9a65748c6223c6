"""Training-memory guard: the ceiling a fit may use (``SKBNN_MAX_MEMORY``,
else the machine's or the container's memory) and the checks the estimators
run before allocating a model."""
import functools
import os
import re

MEMORY_LIMIT_ENV = "SKBNN_MAX_MEMORY"
FALLBACK_LIMIT = 64 * 2**30  # when the machine's memory cannot be read
# dot products are int32 (|z| <= fan-in); widths and fan-ins must fit
MAX_FAN_IN = 2**31 - 1
UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def format_bytes(n):
    """``n`` bytes in the largest binary unit below it, e.g. '3.2 GiB'."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


@functools.cache
def physical_memory():
    """Memory this process may use: physical RAM, lowered to the cgroup
    limit when one is set (containers); None when unknown.  Read once: a
    stream of partial_fit calls must not reread /sys files every call."""
    total = None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and (total is None or int(text) < total):  # "max" = no limit
            total = int(text)
    return total if total and total > 0 else None


def memory_limit():
    """Training-memory ceiling in bytes (None = no limit).

    ``SKBNN_MAX_MEMORY`` sets it: bytes, or a number with a binary suffix
    (``'512M'``, ``'8GiB'``, ``'1.5T'``), or ``'none'`` to turn the guard
    off; by default it is the memory of the machine (or the cgroup limit),
    64 GiB when that cannot be read.  The variable is read at every fit, so
    it can be changed at run time; the machine's memory once per process.
    """
    text = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if not text:
        return physical_memory() or FALLBACK_LIMIT
    if text.lower() in ("none", "off", "inf", "unlimited"):
        return None
    m = re.fullmatch(r"(\d+(?:\.\d*)?)\s*([kKmMgGtT]?)(?:i?[bB])?", text)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"{MEMORY_LIMIT_ENV}={text!r} is not a size: use bytes, a number with "
                         "a K/M/G/T suffix (e.g. '8G') or 'none'")
    return int(float(m.group(1)) * UNITS[m.group(2).lower()])
