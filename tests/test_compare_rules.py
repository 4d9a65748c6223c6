"""Smoke test of ``benchmarks/compare_rules.py --quick`` on a tiny
configuration: Random Prototypes in place of Fashion-MNIST (``--synthetic``,
so the Fashion-MNIST files are not needed), one MLP and a missing preset."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "compare_rules.py"

pytest.importorskip("matplotlib")

# The hardening stage preloads libasan for the package's kernels; under that
# preload, importing matplotlib.pyplot (which this harness test's child
# process does) aborts in ASan's own interceptor check ("real___cxa_throw !=
# 0"), outside this package.  The normal test stage runs it.
pytestmark = pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                                reason="matplotlib.pyplot aborts at import under the ASan "
                                       "preload")


def test_compare_rules_quick(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    cmd = [sys.executable, str(SCRIPT), "--quick", "--synthetic", "--jobs", "1",
           "--sections", "mlp,cnn,memory", "--networks", "mlp256x4,binarynet_residual",
           "--methods", "local,backprop_low_memory,drtp_low_memory", "--out", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env,
                          cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    res = json.loads((tmp_path / "comparison.json").read_text())
    assert res["fallback"] == "--synthetic"
    md = (tmp_path / "comparison.md").read_text()
    assert "Fashion-MNIST not used" in md and "(quick run)" in md
    rows = {(r["network"], r["dataset"], r["method"]): r for r in res["table"]}
    for dataset in ("fmnist", "prototypes"):
        for method in ("local", "backprop_low_memory", "drtp_low_memory"):
            row = rows[("mlp256x4", dataset, method)]
            assert row["used_dataset"] == "prototypes"
            assert 0 <= row["accuracy"]["mean"] <= 100
            assert row["memory_mib"] > 0
    from skbnn._architecture import PRESETS

    residual = rows[("binarynet_residual", "fmnist32", "backprop_low_memory")]
    if "binarynet_residual" not in PRESETS:
        assert residual["status"].startswith("error: preset not available")
    assert rows[("binarynet_residual", "fmnist32", "local")]["status"].startswith("n/a")
    assert (tmp_path / "comparison_accuracy_memory.png").stat().st_size > 0
    statuses = [t[3] for t in res["targets"]]
    assert "PASS" in statuses or "FAIL" in statuses  # the MLP memory targets are judged
    assert all(s in ("PASS", "FAIL", "not measured", "n/a (quick run)") for s in statuses)
