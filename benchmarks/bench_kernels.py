#!/usr/bin/env python3
"""Binary GEMM throughput of skbnn's XNOR/popcount kernels on every SIMD path.

For every kernel path the CPU supports (``skbnn._kernels.available_isas()``)
and the shapes M x N x K = 256 x 256 x 4096 and 1000 x 525 x 784 (a 525-wide
layer on a batch of 1000 FMNIST images), it times, single-threaded:

* ``bgemm``      -- int32 pre-activations ``K - 2 popcount(a XOR b)``;
* ``bgemm_sign`` -- the fused form that writes packed sign bits;

next to NumPy float32 matmul of the very same +/-1 matrices (M x K @ K x N,
BLAS limited to one thread), and against the physical limit
``f * W * min(P_valu / u, P_popcnt)`` per core, for an inner step
``c += popcount(a XOR b)`` on W-bit vectors: f the clock, u the vector
µops per W bits, P_valu the vector ALU pipes that run them, P_popcnt the
pipes that run the vector popcount.
The best path is also timed with ``n_threads=2``.

Packing section: float32/float64 (and int8, for reference) +/-1 rows of
4096 features to packed bits, single-threaded, on every path --
``pack_threshold`` with the sign binariser's threshold 0 and ``pack_binary``
-- in G values/s, against NumPy's ``np.packbits(X > 0, axis=1,
bitorder='little')`` on the same array in the same run; then
``LocalBinaryClassifier.predict`` on float32 against int8 copies of the same
+/-1 rows (4096 input features, hidden layers of 4096 and of 256 units, one
thread, best path).

    python3 benchmarks/bench_kernels.py            # full run
    python3 benchmarks/bench_kernels.py --quick    # a few seconds
    python3 benchmarks/bench_kernels.py --sections packing --quick

Writes ``<out>/kernels.json`` (raw numbers + machine info) and
``<out>/kernels.md``, and prints the table.
"""
import os

# single-threaded BLAS: must be set before NumPy is imported
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import _common  # noqa: E402
from skbnn import _kernels  # noqa: E402

SHAPES = ((256, 256, 4096), (1000, 525, 784))
PACK_SHAPE = (256, 4096)                 # rows x features of the packing timings
PREDICT_FEATURES, PREDICT_ROWS = 4096, 1024
PREDICT_HIDDEN = (4096, 256)             # one hidden layer of each width

# Physical-limit parameters per kernel path:
# peak binary MAC/s = f * W * min(P_valu / u, P_popcnt).  The pipe counts are
# AMD Zen 5 figures (the CPU the kernels were first measured on); other CPUs
# differ (Zen 4 splits 512-bit ops over 256-bit units; Ice Lake and Sapphire
# Rapids run the zmm VPOPCNTQ on one port).
ISA_LIMITS = {
    "avx512": {"W": 512, "u": 3, "P_valu": 4, "P_popcnt": 2,
               "note": "VPXORQ + VPOPCNTQ + VPADDQ per zmm (u = 3), 4 vector ALU pipes, "
                       "2 VPOPCNTQ pipes"},
    "avx2": {"W": 256, "u": 8, "P_valu": 4, "P_popcnt": None,
             "note": "Mula nibble LUT: XOR, shift, 2 AND, 2 VPSHUFB, add, widen: u ~ 8 on "
                     "4 vector ALU pipes (no vector popcount)"},
    "popcnt": {"W": 64, "u": 3, "P_valu": 4, "P_popcnt": 1,
               "note": "scalar POPCNT at 1 per cycle (Intel port 1); Zen cores issue "
                       "POPCNT on more ALUs, so the true limit there is higher"},
    "generic": {"W": 64, "u": 14, "P_valu": 4, "P_popcnt": None,
                "note": "portable SWAR popcount (~12 ops) + XOR + ADD on 4 scalar ALUs: "
                        "a rough figure"},
}


def bits_per_cycle(isa):
    p = ISA_LIMITS[isa]
    per_vec = p["P_valu"] / p["u"]
    if p["P_popcnt"] is not None:
        per_vec = min(per_vec, p["P_popcnt"])
    return p["W"] * per_vec


def random_packed(rng, rows, n_bits):
    """Random packed +/-1 rows with zero padding bits past ``n_bits``."""
    words = (n_bits + 63) // 64
    P = rng.integers(0, np.iinfo(np.uint64).max, size=(rows, words), dtype=np.uint64,
                     endpoint=True)
    if n_bits % 64:
        P[:, -1] &= np.uint64((1 << (n_bits % 64)) - 1)
    return P


def check_consistency(A, B, K, Af, Bf, isas):
    """All paths agree with each other and with the float32 product."""
    ref = (Af @ Bf).astype(np.int64)
    ok = True
    for isa in isas:
        _kernels.set_isa(isa)
        Z = _kernels.bgemm(A, B, K, 1)
        S = _kernels.bgemm_sign(A, B, K, 1)
        ok &= bool(np.array_equal(Z, ref))
        ok &= bool(np.array_equal(S, _kernels.pack_sign_int32(Z)))
    return ok


def bench_packing(isas, repeats, min_time):
    """Single-threaded packing throughput (values/s) of +/-1 rows per path and
    dtype, with NumPy's packbits of ``X > 0`` on the same array as the baseline."""
    n, f = PACK_SHAPE
    pm1 = np.random.default_rng(1).choice(np.array([-1, 1], dtype=np.int8), size=(n, f))
    inputs = {"float32": pm1.astype(np.float32), "float64": pm1.astype(np.float64),
              "int8": pm1}
    thr = np.zeros((f, 1))
    res = {"rows": n, "features": f, "threshold": 0.0, "strict": True, "numpy": {},
           "isas": {}, "consistent": True}
    for name, X in inputs.items():
        t = _common.time_call(lambda: np.packbits(X > 0, axis=1, bitorder="little"), repeats,
                              min_time=min_time)
        res["numpy"][name] = dict(t, values_per_s=n * f / t["best"])
    want = np.packbits(pm1 > 0, axis=1, bitorder="little")
    for isa in isas:
        _kernels.set_isa(isa)
        entry = {}
        for name, X in inputs.items():
            for kernel, fn in (("pack_threshold", lambda: _kernels.pack_threshold(X, thr, True, 1)),
                               ("pack_binary", lambda: _kernels.pack_binary(X, 1)[0])):
                res["consistent"] &= bool(np.array_equal(fn().view(np.uint8), want))
                t = _common.time_call(fn, repeats, min_time=min_time)
                rate = n * f / t["best"]
                entry[f"{kernel}/{name}"] = dict(
                    t, values_per_s=rate, vs_numpy=rate / res["numpy"][name]["values_per_s"])
        res["isas"][isa] = entry
    return res


def bench_predict(isa, repeats):
    """``predict`` on float32 vs int8 copies of the same +/-1 rows, one
    thread; the two are timed alternately (a busy machine slows both alike)."""
    from skbnn import LocalBinaryClassifier

    rng = np.random.default_rng(2)
    f, n = PREDICT_FEATURES, PREDICT_ROWS
    X_train = rng.choice(np.array([-1, 1], dtype=np.int8), size=(128, f))
    y_train = rng.integers(0, 2, 128)
    X8 = rng.choice(np.array([-1, 1], dtype=np.int8), size=(n, f))
    inputs = {"int8": X8, "float32": X8.astype(np.float32)}
    res = {"isa": isa, "rows": n, "features": f, "models": []}
    for hidden in PREDICT_HIDDEN:
        clf = LocalBinaryClassifier(hidden_layer_sizes=(hidden,), max_iter=1, random_state=0,
                                    n_jobs=1).fit(X_train, y_train)
        same = bool(np.array_equal(clf.predict(X8), clf.predict(inputs["float32"])))
        samples = {k: [] for k in inputs}
        for _ in range(max(3, repeats)):
            for k, X in inputs.items():
                t0 = time.perf_counter()
                clf.predict(X)
                samples[k].append(time.perf_counter() - t0)
        best = {k: float(min(v)) for k, v in samples.items()}
        res["models"].append({"estimator": "LocalBinaryClassifier", "hidden": hidden,
                              "binarizer": type(clf.binarizer_).__name__,
                              "same_predictions": same, "samples": samples,
                              "best_s": best, "float32_vs_int8": best["float32"] / best["int8"]})
    return res


def main(argv=None):
    parser = _common.make_parser(__doc__, "same shapes, fewer repeats and shorter samples (a few seconds)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed samples per measurement (default 15, quick 5)")
    parser.add_argument("--min-time", type=float, default=None,
                        help="seconds per timed sample (default 0.1, quick 0.02)")
    parser.add_argument("--freq-ghz", type=float, default=None,
                        help="clock for the physical limit (default: measured with a "
                             "dependent-add timing loop, else /proc/cpuinfo)")
    parser.add_argument("--attempts", type=int, default=None,
                        help="spaced attempts of each 2-thread measurement, best kept "
                             "(default 5, quick 3)")
    parser.add_argument("--isas", default=None,
                        help="comma list of kernel paths (default: all available)")
    parser.add_argument("--sections", default="gemm,packing",
                        help="comma list of sections to run: gemm, packing (default: both)")
    args = parser.parse_args(argv)
    sections = set(_common.parse_list(args.sections))
    if not sections or sections - {"gemm", "packing"}:
        parser.error(f"--sections takes gemm and/or packing, got {args.sections!r}")
    repeats = args.repeats or (5 if args.quick else 15)
    args.attempts = args.attempts or (3 if args.quick else 5)
    min_time = args.min_time if args.min_time is not None else (0.02 if args.quick else 0.1)

    t_start = time.perf_counter()
    info = _common.machine_info()
    original_isa = _kernels.get_isa()
    available = _kernels.available_isas()
    isas = _common.parse_list(args.isas) if args.isas else available
    for isa in isas:
        if isa not in available:
            parser.error(f"kernel path {isa!r} not available on this CPU: {available}")
    best_isa = isas[-1]  # available_isas() is ordered slowest first
    freq = _common.estimate_cpu_freq(args.freq_ghz, quick=args.quick)
    f = freq["hz"]
    n_cores = min(2, info["n_cpus_affinity"] or 1)

    results = {"machine": info, "clock": freq, "quick": args.quick, "repeats": repeats,
               "min_time_per_sample": min_time, "original_isa": original_isa,
               "limits": {isa: dict(ISA_LIMITS[isa], bits_per_cycle=bits_per_cycle(isa),
                                    peak_mac_per_s=(f * bits_per_cycle(isa) if f else None))
                          for isa in isas},
               "shapes": []}
    rng = np.random.default_rng(0)
    run_monitor = _common.CpuMonitor().__enter__()
    try:
        with _common.blas_single_thread() as blas_note:
            results["numpy_threading"] = blas_note
            for M, N, K in (SHAPES if "gemm" in sections else ()):
                macs = M * N * K
                A, B = random_packed(rng, M, K), random_packed(rng, N, K)
                Af = _kernels.unpack_pm1(A, K).astype(np.float32)        # M x K
                Bf = np.ascontiguousarray(_kernels.unpack_pm1(B, K).T, dtype=np.float32)  # K x N
                shape = {"M": M, "N": N, "K": K, "macs": macs,
                         "consistent": check_consistency(A, B, K, Af, Bf, isas)}
                t = _common.time_call(lambda: Af @ Bf, repeats, min_time=min_time)
                shape["numpy_float32"] = dict(t, mac_per_s=macs / t["best"],
                                              mac_per_s_median=macs / t["median"])
                np_rate = macs / t["best"]
                shape["isas"] = {}
                for isa in isas:
                    _kernels.set_isa(isa)
                    entry = {}
                    for name, fn in (("bgemm", _kernels.bgemm),
                                     ("bgemm_sign", _kernels.bgemm_sign)):
                        t = _common.time_call(lambda: fn(A, B, K, 1), repeats,
                                              min_time=min_time)
                        rate = macs / t["best"]
                        peak = f * bits_per_cycle(isa) if f else None
                        entry[name] = dict(t, mac_per_s=rate, mac_per_s_median=macs / t["median"],
                                           bits_per_cycle=(rate / f if f else None),
                                           vs_numpy=rate / np_rate,
                                           pct_of_limit=(100 * rate / peak if peak else None))
                    shape["isas"][isa] = entry
                # two threads on the best path: on a 2-CPU machine any other busy
                # process stalls one of the two threads for a scheduler slice per
                # call, so take several spaced attempts and keep the best
                _kernels.set_isa(best_isa)
                entry = {}
                for name, fn in (("bgemm", _kernels.bgemm), ("bgemm_sign", _kernels.bgemm_sign)):
                    attempts = []
                    for attempt in range(args.attempts):
                        if attempt:
                            time.sleep(0.25)
                        with _common.CpuMonitor() as mon:
                            t = _common.time_call(lambda: fn(A, B, K, 2), repeats,
                                                  min_time=min_time, warmup=3)
                        attempts.append(dict(t, cpu=mon.as_dict()))
                    t = min(attempts, key=lambda a: a["best"])
                    t = dict(t, attempts=attempts)
                    rate = macs / t["best"]
                    one = shape["isas"][best_isa][name]["mac_per_s"]
                    peak = n_cores * f * bits_per_cycle(best_isa) if f else None
                    entry[name] = dict(t, mac_per_s=rate, mac_per_s_median=macs / t["median"],
                                       speedup_vs_1_thread=rate / one, vs_numpy=rate / np_rate,
                                       pct_of_limit=(100 * rate / peak if peak else None))
                shape["two_threads"] = {"isa": best_isa, "n_threads": 2, **entry}
                results["shapes"].append(shape)
            if "packing" in sections:
                results["packing"] = bench_packing(isas, repeats, min_time)
                _kernels.set_isa(best_isa)
                results["predict"] = bench_predict(best_isa, repeats)
    finally:
        _kernels.set_isa(original_isa)
    run_monitor.__exit__(None, None, None)
    results["cpu_use_during_run"] = run_monitor.as_dict()
    results["restored_isa"] = _kernels.get_isa()
    results["load_average_end"] = _common._load_average()
    results["elapsed_s"] = time.perf_counter() - t_start

    md = render_markdown(results, isas, best_isa)
    out = os.path.abspath(args.out)
    _common.write_json(os.path.join(out, "kernels.json"), results)
    _common.write_markdown(os.path.join(out, "kernels.md"), md)
    print(md)
    print(f"\nwrote {os.path.join(out, 'kernels.json')} and kernels.md "
          f"({results['elapsed_s']:.1f} s)", file=sys.stderr)
    return results


def _pct(x):
    if x is None:
        return "n/a"
    return f"{x:.0f} %" + (" †" if x > 100 else "")


def _contention_note(res):
    other = res["cpu_use_during_run"]["other_processes_cpus"]
    worst = [a["cpu"]["other_processes_cpus"] for sh in res["shapes"]
             for k in ("bgemm", "bgemm_sign") for a in sh["two_threads"][k]["attempts"]]
    worst = [w for w in worst if w is not None]
    slow = any(sh["two_threads"][k]["speedup_vs_1_thread"] < 1.0
               for sh in res["shapes"] for k in ("bgemm", "bgemm_sign"))
    text = (f"- Other processes used {other:.2f} CPUs on average during the run"
            if other is not None else "- CPU use of other processes unknown")
    if worst:
        text += (f" ({min(worst):.2f}–{max(worst):.2f} CPUs during the 2-thread attempts, "
                 "best attempt kept)")
    text += (f"; load average start {res['machine']['load_average']}, end "
             f"{res['load_average_end']}.")
    if slow:
        text += (" **2 threads slower than 1: the second core was busy with another process "
                 "(each call then waits a scheduler slice for its stalled thread); re-run "
                 "on an idle machine.**")
    return text


def render_markdown(res, isas, best_isa):
    f = res["clock"]["hz"]
    lines = [f"# skbnn binary GEMM kernels{' (quick run)' if res['quick'] else ''}", "",
             _common.machine_summary_md(res["machine"]), "",
             f"Single thread unless noted; best of {res['repeats']} samples "
             f"(>= {res['min_time_per_sample']} s each); T = 1e12 binary multiply-accumulates "
             "per second (one MAC = one bit of `popcount(a XOR b)`). NumPy float32 matmul of "
             f"the same +/-1 matrices, BLAS limited to one thread "
             f"({res['numpy_threading']}).", ""]
    headers = ["path", "M×N×K", "bgemm T MAC/s", "bits/cycle", "× numpy f32",
               "% of limit", "bgemm_sign T MAC/s", "× numpy f32", "% of limit"]
    rows = []
    for sh in res["shapes"]:
        dims = f"{sh['M']}×{sh['N']}×{sh['K']}"
        npf = sh["numpy_float32"]
        rows.append(["numpy float32", dims, f"{npf['mac_per_s'] / 1e12:.3f}",
                     f"{npf['mac_per_s'] / f:.1f}" if f else "n/a", "1.0", "", "", "", ""])
        for isa in isas:
            e = sh["isas"][isa]
            b, s = e["bgemm"], e["bgemm_sign"]
            rows.append([isa, dims, f"{b['mac_per_s'] / 1e12:.3f}",
                         f"{b['bits_per_cycle']:.0f}" if f else "n/a",
                         f"{b['vs_numpy']:.1f}", _pct(b["pct_of_limit"]),
                         f"{s['mac_per_s'] / 1e12:.3f}", f"{s['vs_numpy']:.1f}",
                         _pct(s["pct_of_limit"])])
        t2 = sh["two_threads"]
        b, s = t2["bgemm"], t2["bgemm_sign"]
        rows.append([f"{best_isa}, 2 threads", dims, f"{b['mac_per_s'] / 1e12:.3f}",
                     f"×{b['speedup_vs_1_thread']:.2f} vs 1 thr", f"{b['vs_numpy']:.1f}",
                     _pct(b["pct_of_limit"]), f"{s['mac_per_s'] / 1e12:.3f}",
                     f"{s['vs_numpy']:.1f}", _pct(s["pct_of_limit"])])
    lines.append(_common.markdown_table(headers, rows, align="llrrrrrrr"))
    clock = res["clock"]
    lines += ["", "**Physical limit (an estimate, not a measurement):** "
              "peak binary MAC/s per core = f · W · min(P_valu / u, P_popcnt) "
              "for an XOR + POPCNT + ADD inner step on W-bit vectors (u vector µops per "
              "W bits, P_valu vector ALU pipes, P_popcnt vector-popcount pipes); "
              "2-thread rows use twice the one-core limit.",
              f"- f = {f / 1e9:.2f} GHz from {clock['method']}" if f else "- f unknown",
              f"  (/proc/cpuinfo 'cpu MHz' = {clock['cpuinfo_hz'] / 1e9:.3f} GHz, the nominal "
              "clock seen by the guest; the timing loop measures the clock while busy)"
              if clock.get("cpuinfo_hz") else ""]
    for isa in isas:
        p = res["limits"][isa]
        pp = "-" if p["P_popcnt"] is None else p["P_popcnt"]
        peak = p["peak_mac_per_s"]
        lines.append(f"- {isa}: W = {p['W']}, u = {p['u']}, P_valu = {p['P_valu']}, "
                     f"P_popcnt = {pp} → {p['bits_per_cycle']:.0f} bits/cycle"
                     + (f" = {peak / 1e12:.2f} T MAC/s" if peak else "") + f" ({p['note']})")
    if any(e[k]["pct_of_limit"] and e[k]["pct_of_limit"] > 100
           for sh in res["shapes"] for e in list(sh["isas"].values()) + [sh["two_threads"]]
           for k in ("bgemm", "bgemm_sign")):
        lines.append("- † above 100 %: the limit model is too low for this CPU or f is "
                     "underestimated (e.g. the scalar row assumes 1 POPCNT per cycle, the Intel "
                     "figure; AMD Zen issues scalar POPCNT on several ALUs).")
    lines += ["- Pipe counts are AMD Zen 5 figures; on other CPUs the percentages are only "
              "indicative. Every call includes the kernel's own B-panel repacking and the "
              "output allocation.",
              "- Consistency check (every path equals the float32 product, `bgemm_sign` equals "
              "the packed sign of `bgemm`): "
              + ", ".join(f"{s['M']}×{s['N']}×{s['K']} {'ok' if s['consistent'] else 'FAILED'}"
                          for s in res["shapes"]),
              _contention_note(res)]
    if "packing" in res:
        lines += [""] + render_packing(res["packing"], res["predict"])
    return "\n".join(line for line in lines if line is not None) + "\n"


def render_packing(pk, pr):
    lines = ["## Packing float input", "",
             f"{pk['rows']} × {pk['features']} +/-1 values per call, one thread, best of the "
             "samples; G = 1e9 values/s.  `pack_threshold`: the sign binariser (threshold 0, "
             "strict); `pack_binary`: `x > 0` plus the set of values present.  NumPy: "
             "`np.packbits(X > 0, axis=1, bitorder='little')` on the same array.", ""]
    headers = ["path", "dtype", "pack_threshold G/s", "× numpy", "pack_binary G/s", "× numpy"]
    rows = []
    for name, t in pk["numpy"].items():
        rows.append(["numpy packbits", name, f"{t['values_per_s'] / 1e9:.2f}", "1.0", "", ""])
    for isa, entry in pk["isas"].items():
        for name in pk["numpy"]:
            a, b = entry[f"pack_threshold/{name}"], entry[f"pack_binary/{name}"]
            rows.append([isa, name, f"{a['values_per_s'] / 1e9:.2f}", f"{a['vs_numpy']:.1f}",
                         f"{b['values_per_s'] / 1e9:.2f}", f"{b['vs_numpy']:.1f}"])
    lines.append(_common.markdown_table(headers, rows, align="llrrrr"))
    lines += ["", f"- Bits equal NumPy's on every path and dtype: "
              f"{'yes' if pk['consistent'] else '**NO**'}", "",
              f"`predict` ({pr['isa']}, one thread, {pr['rows']} rows × {pr['features']} "
              "+/-1 features, float32 and int8 timed alternately):", ""]
    rows = [[m["estimator"], f"{pr['features']}→{m['hidden']}", m["binarizer"],
             f"{m['best_s']['int8'] * 1e3:.1f}", f"{m['best_s']['float32'] * 1e3:.1f}",
             f"{m['float32_vs_int8']:.2f}", "yes" if m["same_predictions"] else "**NO**"]
            for m in pr["models"]]
    lines.append(_common.markdown_table(
        ["estimator", "layers", "binariser", "int8 ms", "float32 ms", "float32 / int8",
         "same labels"], rows, align="lllrrrl"))
    return lines


if __name__ == "__main__":
    main()
