"""Memory model of LowMemBNNClassifier: calibration against Wang et al.,
"Enabling Binary Neural Network Training on the Edge" (arXiv 2102.04270),
Tables 2, 4 and 5.  Every expected number is either printed in the paper or
derived by hand in a comment, never copied from this module's output."""
import pytest

from skbnn._architecture import build_plan
from skbnn._memory_model import (VARIABLES, format_memory_table, memory_model, mlp_counts,
                                 plan_counts, type_table)

# BinaryNet on CIFAR-10 (3x32x32, 10 classes): the counts behind the paper's Table 2
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
def test_type_tables_match_paper():
    std, low = type_table("standard"), type_table("low_memory")
    assert all(b == (32, "float32") for b in std.values())
    assert {k: b for k, (b, _) in low.items()} == {
        "X": 1, "dX_Y": 16, "bn_stats": 16, "dY": 16, "W": 16, "dW": 1, "beta": 16,
        "momenta": 16, "ste_masks": 1, "pooling_masks": 1,
        "feedback": 32,   # DFA / DRTP's matrices, not a paper variable
        "kernels": 32,    # HSIC's B x B matrices, neither
        "dW_layer": 32,   # SigProp's ternary gradient of one layer, neither
        "residual_bits": 1, "shortcut": 32, "dshortcut": 16}   # residual blocks
    assert low["dW"] == (1, "bool") and low["W"] == (16, "float16")
    assert type_table("standard", {"dW": "bool", "dY": 16})["dW"] == (1, "bool")
    assert type_table("standard", {"dY": 16})["dY"] == (16, "float16")


@pytest.mark.parametrize("training,solver,bits_per_weight", [
    # per-weight training state: W + dW + momenta (the Bop binary weight is
    # not counted, as in the paper's Table 5)
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
    # the paper's Table 2: the weight gradient drops from 53.49 MiB to 1.67 MiB
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
    # the weight-state rows (W + dW + momenta): 399,872 weights x 128 and 49 bits
    for model, state in ((std, 6.10), (low, 2.34)):
        assert sum(model[k]["mib"] for k in ("W", "dW", "momenta")) == pytest.approx(
            state, abs=0.005)


def test_mnist_mlp_defaults_count_ste_masks():
    counts = mlp_counts(*MNIST_MLP)
    assert mib(counts, training="standard") == pytest.approx(7.40, abs=0.01)
    assert mib(counts) == pytest.approx(2.48, abs=0.01)
    assert memory_model(counts, 100)["ste_masks"]["dtype"] == "bool"


def test_reduction_grows_with_batch_size():
    """The activation side shrinks more than the weight side, so the
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


# ------------------------------------------------- counts of network plans
@pytest.mark.parametrize("n_features,hidden,n_classes", [
    MNIST_MLP, (5, (), 3), (5, 4, 3), (7, [3, 9, 2], 2)])
def test_mlp_plan_counts_equal_mlp_counts(n_features, hidden, n_classes):
    counts = plan_counts(build_plan(None, None, n_features, n_classes, hidden))
    assert counts == mlp_counts(n_features, hidden, n_classes)
    # an MLP plan has no activation count: its STE row keeps B x bn_channels
    assert "activations_per_sample" not in counts
    sizes = [hidden] if isinstance(hidden, int) else list(hidden)
    listed = plan_counts(build_plan([("dense", h) for h in sizes], None, n_features, n_classes))
    assert listed == counts


def test_plan_counts_binarynet_reproduces_table2_counts():
    counts = plan_counts(build_plan("binarynet", (3, 32, 32), 3072, 10))
    # the hand counts above, worked per layer:
    #   weights 27*128 + 9*128*128 + 9*128*256 + 9*256*256 + 9*256*512
    #           + 9*512*512 + 8192*1024 + 1024*1024 + 1024*10 = 14,022,016
    #   inputs  3*32*32 + 128*32*32 + 128*16*16 + 256*16*16 + 256*8*8
    #           + 512*8*8 + 8192 + 1024 + 1024 = 291,840 (the image included)
    #   widest  128*32*32 = 131,072 (conv 1 and 2, conv 2 before its pool)
    #   BN      128+128+256+256+512+512+1024+1024+10 = 3,850
    #   pooling 128*32*32 + 256*16*16 + 512*8*8 = 229,376
    assert {k: counts[k] for k in BINARYNET} == BINARYNET
    # every pool precedes batch norm, so the signs read 128*32*32 (conv 1),
    # 128*16*16 (conv 2, pooled), 256*16*16, 256*8*8 (pooled), 512*8*8,
    # 512*4*4 (pooled), 1024, 1024 (no sign on the output layer) = 288,768
    assert counts["activations_per_sample"] == 288_768
    assert counts["layers"][:2] == [(27, 128), (1152, 128)]
    assert counts["layers"][-3:] == [(8192, 1024), (1024, 1024), (1024, 10)]
    for training in ("standard", "low_memory"):
        for solver in ("adam", "sgd", "bop"):
            a = memory_model(counts, 100, training=training, solver=solver,
                             count_ste_masks=False)
            b = memory_model(BINARYNET, 100, training=training, solver=solver,
                             count_ste_masks=False)
            assert a == b


# CNV on 3x32x32 (the paper's CIFAR-10 CNV, Table 4), worked by hand.  Maps:
# 3x32x32 -conv-> 64x30x30 -conv-> 64x28x28 -pool-> 64x14x14 -conv->
# 128x12x12 -conv-> 128x10x10 -pool-> 128x5x5 -conv-> 256x3x3 -conv->
# 256x1x1 -flatten-> 256 -> 512 -> 512 -> 10.
#   weights 27*64 + 9*64*64 + 9*64*128 + 9*128*128 + 9*128*256 + 9*256*256
#           + 256*512 + 512*512 + 512*10
#         = 1,728 + 36,864 + 73,728 + 147,456 + 294,912 + 589,824
#           + 131,072 + 262,144 + 5,120 = 1,542,848
#   inputs  3*32*32 + 64*30*30 + 64*14*14 + 128*12*12 + 128*5*5 + 256*3*3
#           + 256 + 512 + 512
#         = 3,072 + 57,600 + 12,544 + 18,432 + 3,200 + 2,304 + 256 + 512 + 512
#         = 98,432
#   widest  64*30*30 = 57,600
#   BN      64+64+128+128+256+256+512+512+10 = 1,930
#   pooling 64*28*28 + 128*10*10 = 50,176 + 12,800 = 62,976
#   signs   (both pools come after the sign, so every sign reads its conv's
#           full map) 57,600 + 50,176 + 18,432 + 12,800 + 2,304 + 256 + 512
#           + 512 = 142,592
CNV = {"weights": 1_542_848, "inputs_per_sample": 98_432, "max_width": 57_600,
       "bn_channels": 1_930, "pooling_inputs_per_sample": 62_976,
       "activations_per_sample": 142_592}


def test_plan_counts_cnv():
    counts = plan_counts(build_plan("cnv", (3, 32, 32), 3072, 10))
    per_layer = ("layers", "feedback_widths", "block_inputs_per_sample",
                 "block_activations_per_sample", "pool_inputs_per_sample")
    assert {k: v for k, v in counts.items() if k not in per_layer} == CNV
    assert sum(counts["block_inputs_per_sample"]) == CNV["inputs_per_sample"]
    assert sum(counts["block_activations_per_sample"]) == CNV["activations_per_sample"]
    assert sum(counts["pool_inputs_per_sample"]) == CNV["pooling_inputs_per_sample"]
    # the inputs of layers 2-9: conv channels, then the flattened 256x1x1 map
    assert counts["feedback_widths"] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert counts["layers"] == [(27, 64), (576, 64), (576, 128), (1152, 128), (1152, 256),
                                (2304, 256), (256, 512), (512, 512), (512, 10)]
    # a single-channel image changes only the first layer: 9*64 weights, 1024
    # inputs
    gray = plan_counts(build_plan("cnv", (1, 32, 32), 1024, 10))
    assert gray["weights"] == CNV["weights"] - 2 * 9 * 64
    assert gray["inputs_per_sample"] == CNV["inputs_per_sample"] - 2 * 1024
    assert gray["activations_per_sample"] == CNV["activations_per_sample"]


# Adam at B = 100 without STE masks, in bytes:
#   standard (float32 everywhere): X 100*98,432*4 = 39,372,800;
#     dX/Y and dY 2 * 100*57,600*4 = 46,080,000; mu/psi and beta/dbeta
#     2 * 2*1,930*4 = 30,880; W, dW and two momenta 4 * 1,542,848*4 =
#     24,685,568; pooling masks 100*62,976*4 = 25,190,400;
#     total 135,359,648 B = 129.09 MiB
#   proposed: X 1,230,400 (bool); dX/Y and dY 2 * 11,520,000 (float16);
#     mu/psi and beta 2 * 7,720; W 3,085,696 (float16); dW 192,856 (bool);
#     momenta 6,171,392 (float16); pooling masks 787,200 (bool);
#     total 34,522,984 B = 32.92 MiB
# SGD drops one momentum (1,542,848 x 32 bits = 5.89 MiB standard, x 16 bits =
# 2.94 MiB proposed), Bop the latent W as well (the same amounts again).
# The STE masks add B x 142,592 elements: 54.39 MiB at float32, 1.70 MiB as
# bool.
CNV_FIGURES = {  # solver: (standard, proposed) MiB
    "adam": (129.09, 32.92), "sgd": (123.20, 29.98), "bop": (117.32, 27.04)}
CNV_STE = (54.39, 1.70)
# BinaryNet: the no-STE figures are the Table 2 / Table 5 rules above; its
# STE masks add B x 288,768 elements: 110.16 MiB at float32, 3.44 MiB as bool.
BINARYNET_STE = (110.16, 3.44)


@pytest.mark.parametrize("solver", ["adam", "sgd", "bop"])
@pytest.mark.parametrize("count_ste_masks", [False, True])
def test_cnv_figures(solver, count_ste_masks):
    counts = plan_counts(build_plan("cnv", (3, 32, 32), 3072, 10))
    for col, training in enumerate(("standard", "low_memory")):
        expected = CNV_FIGURES[solver][col] + (CNV_STE[col] if count_ste_masks else 0)
        got = mib(counts, training=training, solver=solver, count_ste_masks=count_ste_masks)
        assert got == pytest.approx(expected, abs=0.01)


def test_cnv_against_table4():
    """The paper's Table 4 prints 134.05 MiB (standard) and 32.16 MiB
    (proposed) for CNV with Adam at B = 100; the Table 2 rules on the
    authors' topology give 129.09 and 32.92, within 4 %.  The paper does not
    itemise the CNV figure, so the gap cannot be assigned to a row."""
    counts = plan_counts(build_plan("cnv", (3, 32, 32), 3072, 10))
    std = mib(counts, training="standard", count_ste_masks=False)
    low = mib(counts, training="low_memory", count_ste_masks=False)
    assert std == pytest.approx(134.05, rel=0.04)
    assert low == pytest.approx(32.16, rel=0.04)
    assert std == pytest.approx(135_359_648 / 2 ** 20)
    assert low == pytest.approx(34_522_984 / 2 ** 20)


@pytest.mark.parametrize("name,per_sample,extra", [
    ("cnv", CNV["activations_per_sample"], CNV_STE),
    ("binarynet", 288_768, BINARYNET_STE)])
def test_ste_masks_of_conv_plans_count_sign_inputs(name, per_sample, extra):
    counts = plan_counts(build_plan(name, (3, 32, 32), 3072, 10))
    for col, training in enumerate(("standard", "low_memory")):
        with_ste = memory_model(counts, 100, training=training)
        without = memory_model(counts, 100, training=training, count_ste_masks=False)
        assert with_ste["ste_masks"]["elements"] == 100 * per_sample
        assert with_ste["total"]["mib"] - without["total"]["mib"] == pytest.approx(
            extra[col], abs=0.005)
    # the MLP rule (B x bn_channels) applies when the count is absent
    legacy = {k: v for k, v in counts.items() if k != "activations_per_sample"}
    assert memory_model(legacy, 100)["ste_masks"]["elements"] == 100 * counts["bn_channels"]


def test_plan_counts_small_conv_net():
    # 1x6x6 -conv 2 (3x3 same)-> 2x6x6 -pool before BN-> 2x3x3 -conv 4 (3x3
    # valid)-> 4x1x1 -flatten-> 4 -dense-> 3 -output-> 2
    plan = build_plan([("conv", 2), ("pool", "before_bn"), ("conv", 4, 3, "valid"),
                       ("dense", 3)], (1, 6, 6), 36, 2)
    counts = plan_counts(plan)
    assert counts == {
        "weights": 9 * 2 + 18 * 4 + 4 * 3 + 3 * 2,
        "inputs_per_sample": 36 + 18 + 4 + 3,
        "bn_channels": 2 + 4 + 3 + 2,
        "max_width": 72,
        "pooling_inputs_per_sample": 72,
        "activations_per_sample": 18 + 4 + 3,
        "layers": [(9, 2), (18, 4), (4, 3), (3, 2)],
        # per layer, for the rules other than backprop
        "feedback_widths": [2, 4, 3],
        "block_inputs_per_sample": [36, 18, 4, 3],
        "block_activations_per_sample": [18, 4, 3],
        "pool_inputs_per_sample": [72],
    }


def test_plan_counts_rejects_empty_plan_and_bad_activation_counts():
    with pytest.raises(ValueError, match="plan has no conv or dense layer"):
        plan_counts([])
    counts = dict(CNV)
    counts["activations_per_sample"] = -1
    with pytest.raises(ValueError, match=r"counts\['activations_per_sample'\] must be >= 0"):
        memory_model(counts, 10)
    counts["activations_per_sample"] = 1.5
    with pytest.raises(TypeError):
        memory_model(counts, 10)


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
