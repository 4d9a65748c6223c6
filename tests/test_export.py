"""skbnn.export_c: the generated C reproduces predict() exactly.

Each model is exported, compiled with the host C compiler (``-std=c99
-Wall -Wextra -Werror -O2``) together with a small driver that reads
float32 samples from a file and prints the predicted index and the scores,
and both are compared with the estimator on >= 500 samples.
"""
import platform
import shutil
import subprocess

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_classification
from sklearn.exceptions import NotFittedError

from skbnn import (BEPClassifier, BEPRecurrentClassifier, LocalBinaryClassifier,
                   LowMemBNNClassifier, export_c)
from skbnn._export import _input_thresholds, fold_bn_threshold
from skbnn._latent import F32
from skbnn._layers import Act, BatchNorm, Sign
from skbnn.preprocessing import MedianBinarizer, ThermometerEncoder

CC = shutil.which("cc") or shutil.which("gcc")
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O2"]

DRIVER = r"""
#include <stdio.h>
#include "%(prefix)s.h"

int main(int argc, char **argv)
{
    float x[%(upper)s_N_INPUTS];
    %(score_t)s s[%(upper)s_N_SCORES];
    int c;
    FILE *f;
    if (argc < 2 || !(f = fopen(argv[1], "rb"))) return 2;
    while (fread(x, sizeof(float), %(upper)s_N_INPUTS, f) == %(upper)s_N_INPUTS) {
        printf("%%d", %(prefix)s_predict(x));
        %(prefix)s_scores(x, s);
        for (c = 0; c < %(upper)s_N_SCORES; c++) printf(" %(fmt)s", %(cast)ss[c]);
        printf("\n");
    }
    fclose(f);
    return 0;
}
"""


def _need_cc():
    if CC is None:
        pytest.skip("no C compiler (cc / gcc) on PATH")


def _build(est, tmp_path, prefix="model", flags=(), tag=""):
    """Export ``est``, compile it with the driver; returns the executable."""
    header, source = export_c(est, tmp_path, prefix=prefix)
    real = isinstance(est, LowMemBNNClassifier)
    driver = tmp_path / f"driver_{prefix}.c"
    driver.write_text(DRIVER % {"prefix": prefix, "upper": prefix.upper(),
                                "score_t": "float" if real else "int32_t",
                                "fmt": "%.9g" if real else "%ld",
                                "cast": "(double)" if real else "(long)"})
    exe = tmp_path / f"run_{prefix}{tag}"
    subprocess.run([CC, *CFLAGS, *flags, "-I", str(tmp_path), "-o", str(exe), str(driver),
                    source], check=True, capture_output=True, text=True)
    return exe


def _run(exe, X, tmp_path):
    data = tmp_path / "x.bin"
    np.ascontiguousarray(X, dtype=np.float32).tofile(data)
    out = subprocess.run([str(exe), str(data)], check=True, capture_output=True,
                         text=True).stdout.splitlines()
    rows = [line.split() for line in out]
    return (np.array([int(r[0]) for r in rows]),
            np.array([[float(v) for v in r[1:]] for r in rows]))


def _check(est, X, tmp_path, flags=(), tag=""):
    """C predictions and scores equal the estimator's on every sample."""
    _need_cc()
    exe = _build(est, tmp_path, flags=flags, tag=tag)
    idx, scores = _run(exe, X, tmp_path)
    expected = np.searchsorted(est.classes_, est.predict(X))
    assert len(idx) == len(X) >= 500
    np.testing.assert_array_equal(idx, expected)
    ref = est._scores(X)
    if isinstance(est, LowMemBNNClassifier):   # %.9g round-trips float32 exactly
        np.testing.assert_array_equal(scores.astype(F32), ref)
    else:
        np.testing.assert_array_equal(scores.astype(np.int64), ref)
    return idx


# ---------------------------------------------------------------- data and models
@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def tabular():
    X, y = make_classification(600, 20, n_informative=8, n_classes=2, random_state=0)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def series():
    rng = np.random.default_rng(0)
    n, C, T = 600, 2, 12
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, C, T))
    X[:, 0, :] += (y[:, None] - 1) * np.linspace(0, 1, T)
    return X.astype(np.float32), y


CPR_CASES = {
    "local": lambda: LocalBinaryClassifier((35, 35), max_iter=5, random_state=0),
    "local_thermometer": lambda: LocalBinaryClassifier((35,), max_iter=5, random_state=0,
                                                       binarize_input="thermometer",
                                                       n_thermometer_bits=3),
    "local_ternary": lambda: LocalBinaryClassifier((35,), max_iter=5, random_state=0,
                                                   odd_init=False, ternary_weights=True,
                                                   ternary_activations=True),
    "bep": lambda: BEPClassifier((45, 45), max_iter=5, random_state=0),
    "bep_ternary_act": lambda: BEPClassifier((45,), max_iter=5, random_state=0,
                                             ternary_activations=True),
}


@pytest.mark.parametrize("case", sorted(CPR_CASES))
def test_cpr_digits(case, digits, tmp_path):
    X, y = digits
    _check(CPR_CASES[case]().fit(X, y), X, tmp_path)


def test_local_binary_problem(tabular, tmp_path):
    """One +/-1 output (even width: zero scores happen and go to class 0)."""
    X, y = tabular
    est = LocalBinaryClassifier((36,), max_iter=5, random_state=0).fit(X, y)
    _check(est, X, tmp_path)


def test_local_prebinarized(tabular, tmp_path):
    X, y = tabular
    Xb = (X > 0).astype(np.float32)
    est = LocalBinaryClassifier((35,), max_iter=3, random_state=0,
                                binarize_input=None).fit(Xb, y)
    _check(est, Xb, tmp_path)


LOWMEM_CASES = {
    "real": dict(hidden_layer_sizes=(64, 32)),
    "real_standard": dict(hidden_layer_sizes=(64,), training="standard"),
    "thermometer": dict(hidden_layer_sizes=(64, 32), binarize_input="auto"),
    "global_median": dict(hidden_layer_sizes=(40,), binarize_input="global_median"),
    "dense_list": dict(architecture=[("dense", 48)]),
    "output_only": dict(architecture=[]),
}


@pytest.mark.parametrize("case", sorted(LOWMEM_CASES))
def test_lowmem_mlp_digits(case, digits, tmp_path):
    X, y = digits
    est = LowMemBNNClassifier(max_iter=10, random_state=0, **LOWMEM_CASES[case])
    if est.binarize_input is None:
        X = X / np.float32(8) - np.float32(1)
    _check(est.fit(X, y), X, tmp_path)


def test_lowmem_binary_problem(tabular, tmp_path):
    X, y = tabular
    _check(LowMemBNNClassifier((32,), max_iter=5, random_state=0).fit(X, y), X, tmp_path)


def test_lowmem_folds_nontrivial_thresholds(digits, tmp_path):
    """The binary hidden layers' thresholds are not all 0 (the fold is used)."""
    X, y = digits
    est = LowMemBNNClassifier((64, 32), max_iter=5, random_state=0,
                              binarize_input="auto").fit(X, y)
    _, source = export_c(est, tmp_path)
    assert "l1_thr" in open(source).read()


@pytest.mark.parametrize("expansion", [45, None])
def test_bep_recurrent(expansion, series, tmp_path):
    X, y = series
    est = BEPRecurrentClassifier(state_size=45, output_size=45, expansion_size=expansion,
                                 group_size=15, max_iter=3, random_state=0,
                                 initial_state="random" if expansion is None else "ones",
                                 binarize_input=4 if expansion is None else "thermometer")
    _check(est.fit(X, y), X, tmp_path)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 only flag")
def test_builtin_popcount_path(digits, tmp_path):
    """``-mpopcnt`` switches to the compiler builtin: same results."""
    X, y = digits
    est = LocalBinaryClassifier((35,), max_iter=3, random_state=0).fit(X, y)
    _check(est, X, tmp_path, flags=["-mpopcnt"], tag="popcnt")


# ---------------------------------------------------------------- 32-bit targets
def _m32_links(tmp_path):
    hello = tmp_path / "hello.c"
    hello.write_text("#include <stdio.h>\nint main(void){puts(\"hi\");return 0;}\n")
    try:
        subprocess.run([CC, "-m32", str(hello), "-o", str(tmp_path / "hello32")], check=True,
                       capture_output=True)
        return subprocess.run([str(tmp_path / "hello32")], capture_output=True).returncode == 0
    except (subprocess.CalledProcessError, OSError):
        return False


@pytest.fixture(scope="module")
def small_models(digits):
    X, y = digits
    return [LocalBinaryClassifier((35,), max_iter=3, random_state=0).fit(X, y),
            LowMemBNNClassifier((32,), max_iter=3, random_state=0).fit(X / 8 - 1, y)]


def test_m32_run(small_models, digits, tmp_path):
    """Built and run as a 32-bit program (i386: x87 float excess precision,
    32-bit longs), when the toolchain can link one."""
    _need_cc()
    if not _m32_links(tmp_path):
        pytest.skip("gcc -m32 cannot build and run a hello world here (no 32-bit C library)")
    X, _ = digits
    for est in small_models:
        Xe = X / 8 - 1 if isinstance(est, LowMemBNNClassifier) else X
        _check(est, Xe.astype(np.float32), tmp_path, flags=["-m32"], tag="32")


def test_m32_freestanding_compile(small_models, tmp_path):
    """The model compiles warning-free for a 32-bit freestanding target
    (only <stdint.h> / <stddef.h>, as on a microcontroller)."""
    _need_cc()
    probe = tmp_path / "probe.c"
    probe.write_text("#include <stdint.h>\nuint32_t f(uint32_t x) { return x + 1u; }\n")
    flags = ["-m32", "-ffreestanding", "-pedantic", *CFLAGS, "-c"]
    result = subprocess.run([CC, *flags, str(probe), "-o", str(tmp_path / "probe.o")],
                            capture_output=True, text=True)
    if result.returncode:
        pytest.skip(f"the compiler cannot target -m32: {result.stderr.strip()[:200]}")
    for i, est in enumerate(small_models):
        _, source = export_c(est, tmp_path, prefix=f"m{i}")
        result = subprocess.run([CC, *flags, source, "-o", str(tmp_path / f"m{i}.o")],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- the folds
@pytest.mark.parametrize("half", [False, True])
def test_fold_matches_batch_norm_exhaustively(half):
    """For every reachable integer z, ``z >= T`` equals the sign the
    estimator's BatchNorm.infer + Sign.infer give (float16 or float32
    statistics, boundaries placed on integers and half-integers)."""
    rng = np.random.default_rng(1)
    dtype = np.float16 if half else np.float32
    for fan_in in (1, 2, 7, 64, 301):
        n = 40
        mean = rng.normal(0, fan_in ** 0.5, n)
        mean[:10] = rng.integers(-fan_in, fan_in + 1, 10)      # boundary on an integer
        mean[10:15] = mean[10:15].round() + 0.5
        scale = np.abs(rng.normal(0, fan_in ** 0.5, n))
        scale[15:18] = 0.0                                     # the psi floor
        bias = rng.normal(0, 1, n)
        bias[:10] = 0.0
        bias[18:20] = [1e4, -1e4]                              # always / never on
        state = {"running_mean": mean.astype(dtype), "running_scale": scale.astype(dtype),
                 "bias": bias.astype(dtype)}
        thr = fold_bn_threshold(fan_in, *(state[k] for k in ("running_mean", "running_scale",
                                                             "bias")))
        z = np.arange(-fan_in, fan_in + 1)
        bn = BatchNorm(None, state, 0, sign=True)
        out = Sign().infer(bn.infer(Act(z[:, None].repeat(n, 1).astype(np.int32), (n,),
                                        len(z)), 1), 1).data
        bits = np.unpackbits(out.view(np.uint8), axis=1, count=n,
                             bitorder="little").astype(bool)
        np.testing.assert_array_equal(bits, z[:, None] >= thr[None, :])


@pytest.mark.parametrize("binarizer", [MedianBinarizer(), ThermometerEncoder(n_bits=5)])
def test_input_thresholds_are_exact(binarizer):
    """The float32 thresholds of the C side give the estimator's bits for
    float32 inputs next to every threshold."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(101, 6)) * 10.0 ** rng.integers(-3, 4, 6)
    binarizer.fit(X)
    t32 = _input_thresholds(binarizer).reshape(binarizer.thresholds_.shape)
    near = binarizer.thresholds_.astype(np.float32)
    probes = np.concatenate([near, np.nextafter(near, np.float32(np.inf)),
                             np.nextafter(near, np.float32(-np.inf))], axis=1)
    b = binarizer.thresholds_.shape[1]
    for p in range(probes.shape[1]):
        x = probes[:, p][None, :].astype(np.float32)
        expected = binarizer.transform(x)[0].reshape(-1, b) > 0
        got = x[0][:, None] >= t32
        np.testing.assert_array_equal(got, expected)


# ---------------------------------------------------------------- errors
def test_unfitted_raises(tmp_path):
    with pytest.raises(NotFittedError):
        export_c(LocalBinaryClassifier(), tmp_path)


@pytest.mark.parametrize("prefix", ["1model", "my-model", "", "int", "a b", None])
def test_bad_prefix(prefix, digits, tmp_path):
    X, y = digits
    est = LocalBinaryClassifier((15,), max_iter=1, random_state=0).fit(X[:200], y[:200])
    with pytest.raises(ValueError, match="prefix"):
        export_c(est, tmp_path, prefix=prefix)


def test_missing_directory(digits, tmp_path):
    X, y = digits
    est = LocalBinaryClassifier((15,), max_iter=1, random_state=0).fit(X[:200], y[:200])
    with pytest.raises(FileNotFoundError):
        export_c(est, tmp_path / "nope")


def test_conv_architecture_unsupported(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 64)).astype(np.float32)
    y = rng.integers(0, 2, 40)
    est = LowMemBNNClassifier(architecture=[("conv", 4), ("pool",), ("dense", 8)],
                              max_iter=1, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="architecture"):
        export_c(est, tmp_path)


def test_unsupported_estimator(tmp_path):
    from sklearn.linear_model import LogisticRegression
    X, y = make_classification(50, 4, random_state=0)
    with pytest.raises(ValueError, match="LogisticRegression"):
        export_c(LogisticRegression().fit(X, y), tmp_path)


def test_string_labels_are_comments(tmp_path, tabular):
    X, y = tabular
    labels = np.array(["no", "yes"])[y]
    est = LocalBinaryClassifier((35,), max_iter=2, random_state=0).fit(X, labels)
    header, _ = export_c(est, tmp_path)
    text = open(header).read()
    assert "'no'" in text and "'yes'" in text and "model_classes" not in text
    _check(est, X, tmp_path)
