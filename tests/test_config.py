"""Kernel-path selection, SKBNN_ISA and show_config."""
import io
import os
import subprocess
import sys

import pytest

import skbnn
from skbnn import _kernels


def run_python(code, **env):
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full_env, timeout=120)


@pytest.mark.parametrize("isa", _kernels.available_isas())
def test_skbnn_isa_forces_path(isa):
    r = run_python("import skbnn; print(skbnn.get_config()['kernel_path'])", SKBNN_ISA=isa)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == isa


def test_skbnn_isa_refuses_unknown_and_unsupported():
    r = run_python("import skbnn", SKBNN_ISA="sse9")
    assert r.returncode != 0 and "not a kernel path" in r.stderr
    missing = [i for i in _kernels.ISA_NAMES if not _kernels.cpu_supports(i)]
    if missing:
        r = run_python("import skbnn", SKBNN_ISA=missing[0])
        assert r.returncode != 0 and "not supported by this CPU" in r.stderr


def test_default_is_best_path_and_show_config():
    out = io.StringIO()
    skbnn.show_config(file=out)
    text = out.getvalue()
    assert f"kernel path : {_kernels.best_isa()}" in text or os.environ.get("SKBNN_ISA")
    assert "CPU supports" in text and "OpenMP" in text and "threads" in text
    cfg = skbnn.get_config()
    assert cfg["cpu_supports"]["generic"] is True
    assert cfg["max_threads"] >= 1
