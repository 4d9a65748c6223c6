"""Measured training memory: tracemalloc around one fit / partial_fit call.

Every training buffer of the latent-weight engine is a NumPy array or comes
from Python's raw allocator (kernel scratch), so tracemalloc sees all of it.
"""
import contextlib
import tracemalloc

MIB = 2.0 ** 20


@contextlib.contextmanager
def traced_call(persistent_before):
    """Measure the memory of the enclosed call.

    Starts tracemalloc if it is not running (and stops it afterwards); resets
    its peak.  Yields a dict that is filled when the block ends:
    ``transient_peak_bytes`` (traced peak during the call above the traced
    memory at its start), ``retained_bytes`` (traced growth kept after the
    call), ``persistent_before_bytes`` and ``peak_bytes`` =
    ``persistent_before + transient_peak`` (the training footprint of the
    call: the state the estimator already held plus everything the call
    allocated at its worst moment).
    """
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    result = {}
    try:
        yield result
    finally:
        current, peak = tracemalloc.get_traced_memory()
        if started:
            tracemalloc.stop()
        transient = max(0, peak - start)
        result.update(persistent_before_bytes=int(persistent_before),
                      transient_peak_bytes=int(transient),
                      retained_bytes=int(current - start),
                      peak_bytes=int(persistent_before + transient))
