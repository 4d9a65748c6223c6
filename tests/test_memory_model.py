"""Memory model of LowMemBNNClassifier: the calibration checks of lowmem.md
§6.3 (paper Tables 2, 4 and 5).  Every expected number is copied from the
spec text, never from this module's output."""
import pytest

from skbnn._memory_model import (VARIABLES, format_memory_table, memory_model, mlp_counts,
                                 type_table)

# BinaryNet, CIFAR-10 (lowmem.md §6.3)
BINARYNET = {"weights": 14_022_016, "inputs_per_sample": 291_840, "max_width": 131_072,
             "bn_channels": 3_850, "pooling_inputs_per_sample": 229_376}
MNIST_MLP = (784, (256, 256, 256, 256), 10)

# The paper prints the float32 pooling-mask row as 87.46 MiB, but
# B * 229,376 * 4 bytes = 87.50 MiB exactly; the 0.04 MiB gap reappears in
# every total that holds float pooling masks (standard 512.85 by the rules vs
# 512.81 printed) and shrinks with the mask width.  We assert the rules.
POOL_GAP_FLOAT32 = 87.50 - 87.46


def mib(counts, batch_size=100, **kw):
    return memory_model(counts, batch_size, **kw)["total"]["mib"]


# ------------------------------------------------------------------ counts
def test_mlp_counts_mnist():
    c = mlp_counts(*MNIST_MLP)
    assert c["weights"] == 399_872
    assert c["inputs_per_sample"] == 1_808
    assert c["bn_channels"] == 1_034
    assert c["max_width"] == 256
    assert c["pooling_inputs_per_sample"] == 0
    assert c["layers"] == [(784, 256), (256, 256), (256, 256), (256, 256), (256, 10)]


def test_mlp_counts_no_hidden_and_int_hidden():
    assert mlp_counts(5, (), 3)["layers"] == [(5, 3)]
    assert mlp_counts(5, 4, 3)["layers"] == [(5, 4), (4, 3)]


# ------------------------------------------------------------- type tables
def test_type_tables_match_spec():
    std, low = type_table("standard"), type_table("low_memory")
    assert all(b == (32, "float32") for b in std.values())
    assert {k: b for k, (b, _) in low.items()} == {
        "X": 1, "dX_Y": 16, "bn_stats": 16, "dY": 16, "W": 16, "dW": 1, "beta": 16,
        "momenta": 16, "ste_masks": 1, "pooling_masks": 1}
    assert low["dW"] == (1, "bool") and low["W"] == (16, "float16")
    assert type_table("standard", {"dW": "bool", "dY": 16})["dW"] == (1, "bool")
    assert type_table("standard", {"dY": 16})["dY"] == (16, "float16")


@pytest.mark.parametrize("training,solver,bits_per_weight", [
    # lowmem.md §5.2: per-weight training state (the Bop +1 binary weight is
    # not counted, §6.1 rule 3)
    ("low_memory", "adam", 49), ("low_memory", "sgd", 33), ("low_memory", "bop", 17),
    ("standard", "adam", 128), ("standard", "sgd", 96), ("standard", "bop", 64)])
def test_per_weight_state_bits(training, solver, bits_per_weight):
    counts = {"weights": 1, "inputs_per_sample": 0, "bn_channels": 0, "max_width": 0}
    model = memory_model(counts, 1, training=training, solver=solver)
    assert model["total"]["bytes"] * 8 == bits_per_weight
    assert ("W" in model) == (solver != "bop")


# ------------------------------------------------- paper Table 2 (BinaryNet)
# (variable, standard MiB, proposed MiB) as printed in Table 2, except the
# standard pooling masks: 87.50 by the rules, 87.46 printed.  The float16
# mu/psi and beta rows are 0.0147 MiB by the rules, printed 0.02 (half of the
# rounded 0.03), within the 0.05 MiB acceptance bound.
TABLE2 = [("X", 111.33, 3.48), ("dX_Y", 50.00, 25.00), ("bn_stats", 0.03, 0.02),
          ("dY", 50.00, 25.00), ("W", 53.49, 26.74), ("dW", 53.49, 1.67),
          ("beta", 0.03, 0.02), ("momenta", 106.98, 53.49), ("pooling_masks", 87.50, 2.73)]


@pytest.mark.parametrize("training,col", [("standard", 1), ("low_memory", 2)])
def test_table2_rows(training, col):
    model = memory_model(BINARYNET, 100, training=training, solver="adam",
                         count_ste_masks=False)
    rows = [name for name in model if name in VARIABLES]
    assert rows == [r[0] for r in TABLE2]
    for row in TABLE2:
        assert model[row[0]]["mib"] == pytest.approx(row[col], abs=0.01), row[0]


def test_table2_totals_and_types():
    std = memory_model(BINARYNET, 100, training="standard", count_ste_masks=False)
    low = memory_model(BINARYNET, 100, training="low_memory", count_ste_masks=False)
    assert std["total"]["mib"] == pytest.approx(512.81 + POOL_GAP_FLOAT32, abs=0.01)  # 512.85
    assert low["total"]["mib"] == pytest.approx(138.15, abs=0.01)
    assert std["pooling_masks"]["mib"] == pytest.approx(87.46, abs=0.05)
    assert std["total"]["mib"] == pytest.approx(512.81, abs=0.05)
    assert std["total"]["mib"] / low["total"]["mib"] == pytest.approx(3.71, abs=0.01)
    assert {low[k]["dtype"] for k in ("X", "dW", "pooling_masks")} == {"bool"}
    assert {low[k]["dtype"] for k in ("dX_Y", "dY", "W", "momenta")} == {"float16"}
    assert [k for k in low if k in VARIABLES and not low[k]["persistent"]] == ["dX_Y", "dY"]
    # transient rows count one instance of the largest layer: B * Mx elements
    assert low["dX_Y"]["elements"] == low["dY"]["elements"] == 100 * 131_072
    assert low["transient_bytes"] + low["persistent_bytes"] == low["total"]["bytes"]
    assert low["transient_bytes"] == pytest.approx(50.00 * 2 ** 20)
    # §4.2: the weight gradient drops from 53.49 MiB to 1.67 MiB
    assert std["dW"]["mib"] == pytest.approx(53.49, abs=0.005)
    assert low["dW"]["mib"] == pytest.approx(1.67, abs=0.005)


# ------------------------------------------------ paper Table 5 (ablation)
ALL_FLOAT16 = dict.fromkeys(VARIABLES, 16)
# Table 5 steps: (label, training, bits overrides, bits of the pooling masks).
# The "float16" step halves every variable (its Δ is 2.00×); the "bool ∂W"
# steps then binarise dW only; the ℓ1 BN step changes no storage.
STEPS = [("float32", "standard", None, 32),
         ("float16", "standard", ALL_FLOAT16, 16),
         ("bool dW, l2", "standard", dict(ALL_FLOAT16, dW=1), 16),
         ("bool dW, l1", "standard", dict(ALL_FLOAT16, dW=1), 16),
         ("proposed", "low_memory", None, 1)]
TABLE5 = {"adam": (512.81, 256.41, 231.33, 231.33, 138.15),
          "sgd": (459.32, 229.66, 204.58, 204.58, 109.20),
          "bop": (405.83, 202.92, 177.84, 177.84, 82.45)}


@pytest.mark.parametrize("solver", ["adam", "sgd", "bop"])
@pytest.mark.parametrize("step", range(5))
def test_table5_rows(solver, step):
    _, training, bits, pool_bits = STEPS[step]
    got = mib(BINARYNET, training=training, solver=solver, bits=bits, count_ste_masks=False)
    printed = TABLE5[solver][step]
    if solver != "adam" and step == 4:
        # SGD-momentum and Bop "proposed": the paper prints 109.20 and 82.45,
        # 2.2 MiB below its own accounting.  Adam's proposed row (138.15) is
        # reproduced exactly and these rows differ from it only by one float16
        # momentum (26.74 MiB) and, for Bop, the float16 W (26.74 MiB), so the
        # rules give 111.40 and 84.66; the printed gap is unexplained.
        assert got == pytest.approx({"sgd": 111.40, "bop": 84.66}[solver], abs=0.01)
        assert got - printed == pytest.approx(2.2, abs=0.02)
        return
    # every printed row is within 0.01 MiB once the pooling-mask gap of
    # Table 2 (0.04 MiB at float32, scaled to the mask width) is carried over
    expected = printed + POOL_GAP_FLOAT32 * pool_bits / 32
    assert got == pytest.approx(expected, abs=0.01)


# ------------------------------------------------------ MNIST MLP (Table 4)
@pytest.mark.parametrize("count_ste_masks,standard,proposed", [(False, 7.00, 2.46),
                                                               (True, 7.40, 2.48)])
def test_mnist_mlp(count_ste_masks, standard, proposed):
    counts = mlp_counts(*MNIST_MLP)
    std = memory_model(counts, 100, training="standard", count_ste_masks=count_ste_masks)
    low = memory_model(counts, 100, training="low_memory", count_ste_masks=count_ste_masks)
    assert std["total"]["mib"] == pytest.approx(standard, abs=0.01)
    assert low["total"]["mib"] == pytest.approx(proposed, abs=0.01)
    assert "pooling_masks" not in low
    assert ("ste_masks" in low) == count_ste_masks
    # §6.4: the weight-state rows (W + dW + momenta) are 6.10 and 2.34 MiB
    for model, state in ((std, 6.10), (low, 2.34)):
        assert sum(model[k]["mib"] for k in ("W", "dW", "momenta")) == pytest.approx(
            state, abs=0.005)


def test_mnist_mlp_defaults_count_ste_masks():
    counts = mlp_counts(*MNIST_MLP)
    assert mib(counts, training="standard") == pytest.approx(7.40, abs=0.01)
    assert mib(counts) == pytest.approx(2.48, abs=0.01)
    assert memory_model(counts, 100)["ste_masks"]["dtype"] == "bool"


def test_reduction_grows_with_batch_size():
    """The activation side shrinks more than the weight side (§6.4), so the
    standard / low-memory ratio grows with B."""
    counts = mlp_counts(*MNIST_MLP)
    ratios = [mib(counts, b, training="standard") / mib(counts, b) for b in (1, 10, 100, 1000)]
    assert all(a < b for a, b in zip(ratios, ratios[1:]))


def test_format_memory_table():
    model = memory_model(mlp_counts(*MNIST_MLP), 100, training="low_memory")
    text = format_memory_table(model)
    lines = text.splitlines()
    assert lines[0].split() == ["variable", "dtype", "bits", "elements", "bytes", "MiB",
                                "lifetime"]
    assert any(line.startswith("dW") and "bool" in line and "399,872" in line
               and "persistent" in line for line in lines)
    assert any(line.startswith("dY") and "transient" in line for line in lines)
    assert any(line.startswith("total") and line.split()[-1] == "2.48" for line in lines)


# ------------------------------------------------------------ bad arguments
@pytest.mark.parametrize("kwargs,match", [
    (dict(training="fast"), "training must be one of 'standard', 'low_memory'"),
    (dict(solver="rmsprop"), "solver must be one of 'adam', 'sgd', 'bop'"),
    (dict(batch_size=0), "batch_size must be >= 1"),
    (dict(batch_size=-5), "batch_size must be >= 1"),
    (dict(bits={"Z": 8}), "bits key must be one of"),
    (dict(bits={"dW": 0}), "must be >= 1"),
    (dict(bits={"dW": "float8"}), "must be one of"),
])
def test_bad_arguments(kwargs, match):
    kw = dict(counts=mlp_counts(*MNIST_MLP), batch_size=100)
    kw.update(kwargs)
    with pytest.raises(ValueError, match=match):
        memory_model(**kw)


def test_bad_types_and_counts():
    counts = mlp_counts(*MNIST_MLP)
    with pytest.raises(TypeError):
        memory_model(counts, 10.0)
    with pytest.raises(TypeError):
        memory_model(counts, True)
    with pytest.raises(ValueError, match="counts lacks max_width"):
        memory_model({k: v for k, v in counts.items() if k != "max_width"}, 10)
    with pytest.raises(ValueError, match="n_classes must be >= 1"):
        mlp_counts(784, (256,), 0)
    with pytest.raises(ValueError, match=r"hidden_layer_sizes\[1\] must be >= 1"):
        mlp_counts(784, (256, 0), 10)
