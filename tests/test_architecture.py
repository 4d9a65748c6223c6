"""Architecture plans of LowMemBNNClassifier: the CNV and BinaryNet presets of
Wang et al., "Enabling Binary Neural Network Training on the Edge" (arXiv
2102.04270), user layer lists, input shapes and the validation errors.
Expected shapes are worked out by hand from the layer rules, never copied
from the module's output."""
import dataclasses

import pytest

from skbnn._architecture import (PRESETS, LayerSpec, build_plan, is_convolutional,
                                 resolve_input_shape)


def shapes(plan):
    return [(s.kind, s.in_shape, s.out_shape) for s in plan]


# ------------------------------------------------------------------ presets
# CNV: 3x3 valid convs shrink the map by 2, pools halve it (floor):
# 32 -> 30 -> 28 -> pool 14 -> 12 -> 10 -> pool 5 -> 3 -> 1
CNV_3x32 = [
    ("conv", (3, 32, 32), (64, 30, 30)),
    ("conv", (64, 30, 30), (64, 28, 28)),
    ("pool", (64, 28, 28), (64, 14, 14)),
    ("conv", (64, 14, 14), (128, 12, 12)),
    ("conv", (128, 12, 12), (128, 10, 10)),
    ("pool", (128, 10, 10), (128, 5, 5)),
    ("conv", (128, 5, 5), (256, 3, 3)),
    ("conv", (256, 3, 3), (256, 1, 1)),
    ("flatten", (256, 1, 1), (256,)),
    ("dense", (256,), (512,)),
    ("dense", (512,), (512,)),
    ("dense", (512,), (10,)),
]
# BinaryNet: 3x3 same convs keep the map, pools halve it: 32, 32 -> 16, 16, 16
# -> 8, 8, 8 -> 4; flatten 512 * 4 * 4 = 8192
BINARYNET_3x32 = [
    ("conv", (3, 32, 32), (128, 32, 32)),
    ("conv", (128, 32, 32), (128, 32, 32)),
    ("pool", (128, 32, 32), (128, 16, 16)),
    ("conv", (128, 16, 16), (256, 16, 16)),
    ("conv", (256, 16, 16), (256, 16, 16)),
    ("pool", (256, 16, 16), (256, 8, 8)),
    ("conv", (256, 8, 8), (512, 8, 8)),
    ("conv", (512, 8, 8), (512, 8, 8)),
    ("pool", (512, 8, 8), (512, 4, 4)),
    ("flatten", (512, 4, 4), (8192,)),
    ("dense", (8192,), (1024,)),
    ("dense", (1024,), (1024,)),
    ("dense", (1024,), (10,)),
]


def _with_channels(rows, c):
    """The same plan read from a c-channel image (only the first input changes)."""
    (kind, (_, h, w), out), rest = rows[0], rows[1:]
    return [(kind, (c, h, w), out)] + rest


@pytest.mark.parametrize("name,expected", [("cnv", CNV_3x32), ("binarynet", BINARYNET_3x32)])
@pytest.mark.parametrize("channels", [3, 1])
def test_preset_shapes(name, expected, channels):
    plan = build_plan(name, (channels, 32, 32), channels * 1024, 10)
    assert shapes(plan) == _with_channels(expected, channels)
    assert all(isinstance(s, LayerSpec) for s in plan)
    assert [s.real_input for s in plan] == [True] + [False] * (len(plan) - 1)
    assert [s.output for s in plan] == [False] * (len(plan) - 1) + [True]
    convs = [s for s in plan if s.kind == "conv"]
    assert {(s.kernel_size, s.padding, s.pad) for s in convs} == (
        {(3, "valid", 0)} if name == "cnv" else {(3, "same", 1)})
    # CNV pools the sign bits (FINN order), BinaryNet the pre-activations
    assert {s.position for s in plan if s.kind == "pool"} == (
        {"after_sign"} if name == "cnv" else {"before_bn"})
    assert plan[0].fan_in == 9 * channels
    assert plan[0].n_weights == 9 * channels * plan[0].units


def test_preset_tables():
    assert sorted(PRESETS) == ["binarynet", "binarynet_residual", "cnv"]
    assert [e[1] for e in PRESETS["cnv"] if e[0] in ("conv", "dense")] == [
        64, 64, 128, 128, 256, 256, 512, 512]
    assert [e[1] for e in PRESETS["binarynet"] if e[0] in ("conv", "dense")] == [
        128, 128, 256, 256, 512, 512, 1024, 1024]
    assert all(isinstance(e, tuple) for entries in PRESETS.values() for e in entries)


def test_preset_weight_count_binarynet():
    # 3*9*128 + 9*128*128 + 9*128*256 + 9*256*256 + 9*256*512 + 9*512*512
    # + 8192*1024 + 1024*1024 + 1024*10 = 14,022,016
    plan = build_plan("binarynet", (3, 32, 32), 3072, 10)
    assert sum(s.n_weights for s in plan) == 14_022_016


def test_cnv_needs_32_pixels():
    # on 28x28: 26, 24, pool 12, 10, 8, pool 4, 2, and the last 3x3 conv does
    # not fit its 2x2 map
    with pytest.raises(ValueError, match=r"layer 7 .* of preset 'cnv': kernel_size 3 is "
                                         r"larger than its 2x2 input map"):
        build_plan("cnv", None, 784, 10)


# ---------------------------------------------------------- MLP and lists
def test_mlp_plan():
    plan = build_plan(None, None, 784, 10, (256, 128))
    assert shapes(plan) == [("dense", (784,), (256,)), ("dense", (256,), (128,)),
                            ("dense", (128,), (10,))]
    assert [s.real_input for s in plan] == [True, False, False]
    assert [s.output for s in plan] == [False, False, True]
    assert [s.fan_in for s in plan] == [784, 256, 128]
    assert [s.n_weights for s in plan] == [784 * 256, 256 * 128, 1280]
    assert shapes(build_plan(None, None, 5, 3)) == [("dense", (5,), (3,))]
    assert shapes(build_plan(None, None, 5, 3, 4)) == [("dense", (5,), (4,)),
                                                       ("dense", (4,), (3,))]
    # an all-dense list is the same MLP; hidden_layer_sizes is then ignored
    assert build_plan([("dense", 256), ("dense", 128)], None, 784, 10, (7,)) == plan
    # the MLP reads the input flat even when an image shape is given
    assert build_plan(None, (1, 28, 28), 784, 10, (256, 128)) == plan


def test_real_input_flag():
    plan = build_plan([("conv", 8)], (1, 4, 4), 16, 2, real_input=False)
    assert not any(s.real_input for s in plan)
    only_output = build_plan(None, None, 6, 2)
    assert [s.real_input for s in only_output] == [True]
    assert not build_plan([], None, 6, 2, real_input=False)[0].real_input


def test_user_list_defaults_and_flatten():
    arch = [("conv", 4), ("conv", 6, 5, "valid"), ("pool",), ("conv", 2, 1), ("dense", 3)]
    plan = build_plan(arch, (2, 9, 7), 126, 5)
    assert shapes(plan) == [
        ("conv", (2, 9, 7), (4, 9, 7)),     # 3x3 'same' by default
        ("conv", (4, 9, 7), (6, 5, 3)),     # 5x5 valid
        ("pool", (6, 5, 3), (6, 2, 1)),     # odd maps lose a row / column
        ("conv", (6, 2, 1), (2, 2, 1)),     # 1x1 'same' (pad 0)
        ("flatten", (2, 2, 1), (4,)),
        ("dense", (4,), (3,)),
        ("dense", (3,), (5,)),
    ]
    conv0, conv1, pool = plan[:3]
    assert (conv0.kernel_size, conv0.padding, conv0.pad, conv0.units) == (3, "same", 1, 4)
    assert (conv1.kernel_size, conv1.padding, conv1.pad, conv1.fan_in) == (5, "valid", 0, 100)
    assert pool.position == "after_sign" and pool.units == pool.fan_in == pool.n_weights == 0
    assert plan[3].pad == 0
    # conv-only: flatten then the output layer
    assert shapes(build_plan([("conv", 2, 3, "valid")], (1, 3, 3), 9, 4)) == [
        ("conv", (1, 3, 3), (2, 1, 1)), ("flatten", (2, 1, 1), (2,)), ("dense", (2,), (4,))]
    # the same list as a tuple of list entries
    assert build_plan(tuple(list(e) for e in arch), (2, 9, 7), 126, 5) == plan


def test_pool_positions_and_chains():
    plan = build_plan([("conv", 3), ("pool", "before_bn"), ("pool", "after_sign"),
                       ("pool",)], (1, 8, 8), 64, 2)
    assert [(s.kind, s.position, s.out_shape) for s in plan[:4]] == [
        ("conv", "", (3, 8, 8)), ("pool", "before_bn", (3, 4, 4)),
        ("pool", "after_sign", (3, 2, 2)), ("pool", "after_sign", (3, 1, 1))]


def test_layer_spec_is_frozen_and_defaults():
    spec = LayerSpec("flatten", (2, 2, 2), (8,))
    assert (spec.units, spec.kernel_size, spec.padding, spec.pad, spec.position,
            spec.real_input, spec.output, spec.fan_in, spec.n_weights) == (
        0, 0, "", 0, "", False, False, 0, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.units = 3


def test_is_convolutional():
    assert is_convolutional("cnv") and is_convolutional("binarynet")
    assert is_convolutional([("conv", 4), ("dense", 2)])
    assert not is_convolutional(None)
    assert not is_convolutional([("dense", 4)])
    assert not is_convolutional([])
    with pytest.raises(ValueError, match="unknown architecture preset 'vgg'"):
        is_convolutional("vgg")


# ------------------------------------------------------------ input shapes
def test_resolve_input_shape():
    assert resolve_input_shape(None, None, 784) == (784,)
    assert resolve_input_shape(None, (1, 28, 28), 784) == (784,)
    assert resolve_input_shape([("dense", 3)], (784,), 784) == (784,)
    assert resolve_input_shape("cnv", (3, 32, 32), 3072) == (3, 32, 32)
    assert resolve_input_shape("cnv", [3, 32, 32], 3072) == (3, 32, 32)
    # square single-channel image inferred
    assert resolve_input_shape("cnv", None, 1024) == (1, 32, 32)
    assert resolve_input_shape([("conv", 2)], None, 784) == (1, 28, 28)
    assert resolve_input_shape([("conv", 2)], None, 1) == (1, 1, 1)
    plan = build_plan([("conv", 2)], None, 49, 3)
    assert plan[0].in_shape == (1, 7, 7)


@pytest.mark.parametrize("architecture,input_shape,n_features,match", [
    ("cnv", (3, 32, 32), 784, r"input_shape \(3, 32, 32\) holds 3 \* 32 \* 32 = 3072 values "
                              r"per sample, but X has n_features = 784"),
    (None, (1, 28, 28), 785, r"= 784 values per sample, but X has n_features = 785"),
    ("cnv", None, 3072, r"n_features = 3072 is not a perfect square.*pass input_shape"),
    ("cnv", (32, 32), 1024, r"input_shape must be a tuple \(C, H, W\)"),
    ("cnv", (3, 0, 32), 0 + 3072, r"input_shape\[1\] must be >= 1"),
    ("cnv", 1024, 1024, r"input_shape must be a tuple"),
])
def test_bad_input_shape(architecture, input_shape, n_features, match):
    with pytest.raises(ValueError, match=match):
        resolve_input_shape(architecture, input_shape, n_features)
    with pytest.raises(ValueError, match=match):
        build_plan(architecture, input_shape, n_features, 10)


def test_bad_input_shape_types():
    with pytest.raises(TypeError, match=r"input_shape\[0\] must be an int"):
        resolve_input_shape("cnv", (3.0, 32, 32), 3072)
    with pytest.raises(TypeError, match=r"input_shape\[0\] must be an int"):
        resolve_input_shape("cnv", (True, 32, 32), 1024)
    with pytest.raises(TypeError, match="n_features must be an int"):
        resolve_input_shape("cnv", None, 1024.0)


# -------------------------------------------------------------- bad layers
@pytest.mark.parametrize("architecture,match", [
    # unknown kinds and malformed tuples
    ([("conv", 4), ("norm", 3)], r"architecture\[1\] \('norm', 3\): unknown layer kind 'norm'"),
    ([("flatten",)], r"architecture\[0\] \('flatten',\): 'flatten' is inserted automatically"),
    ([()], r"architecture\[0\] \(\): empty layer tuple"),
    ([("conv",)], r"architecture\[0\] \('conv',\): a conv layer is"),
    ([("conv", 4, 3, "same", 1)], r"architecture\[0\] .*: a conv layer is"),
    ([("conv", 4), ("pool", "after_sign", 2)], r"architecture\[1\] .*: a pool layer is"),
    ([("dense",)], r"architecture\[0\] \('dense',\): a dense layer is \('dense', units\)"),
    ([("dense", 3, 4)], r"architecture\[0\] .*: a dense layer is"),
    # non-positive sizes
    ([("conv", 0)], r"architecture\[0\] \('conv', 0\): filters must be >= 1, got 0"),
    ([("conv", 4, -1, "valid")], r"architecture\[0\] .*: kernel_size must be >= 1, got -1"),
    ([("conv", 4), ("dense", 0)], r"architecture\[1\] \('dense', 0\): units must be >= 1"),
    # padding and kernel
    ([("conv", 4, 3, "full")], r"architecture\[0\] .*: padding must be 'same' or 'valid', "
                               r"got 'full'"),
    ([("conv", 4, 2)], r"architecture\[0\] \('conv', 4, 2\): padding 'same' with an even "
                       r"kernel_size \(2\) is not supported"),
    ([("conv", 4, 4, "same")], r"even kernel_size \(4\) is not supported"),
    ([("conv", 4, 9)], r"architecture\[0\] \('conv', 4, 9\): kernel_size 9 is larger than "
                       r"its 8x8 input map"),
    ([("conv", 4, 3, "valid"), ("conv", 4, 7, "valid")],
     r"architecture\[1\] .*: kernel_size 7 is larger than its 6x6 input map"),
    # order
    ([("dense", 8), ("conv", 4)], r"architecture\[1\] \('conv', 4\): a conv layer after a "
                                  r"dense layer"),
    ([("conv", 4), ("dense", 8), ("pool",)], r"architecture\[2\] \('pool',\): a pool layer "
                                             r"after a dense layer"),
    ([("pool",), ("conv", 4)], r"architecture\[0\] \('pool',\): a pool layer must follow a "
                               r"conv layer"),
    ([("conv", 4), ("pool", "sideways")], r"architecture\[1\] .*: pool position must be "
                                          r"'after_sign' or 'before_bn', got 'sideways'"),
    ([("conv", 4), ("pool",), ("pool", "before_bn")],
     r"architecture\[2\] \('pool', 'before_bn'\): a 'before_bn' pool .* must directly follow "
     r"a conv layer"),
    # maps pooled to nothing: 8 -> 4 -> 2 -> 1 -> (0)
    ([("conv", 4), ("pool",), ("pool",), ("pool",), ("pool",)],
     r"architecture\[4\] \('pool',\): 2x2 pooling shrinks its 1x1 map to nothing \(0x0\)"),
    # unknown presets
    ("vgg", r"unknown architecture preset 'vgg'; expected one of 'cnv', 'binarynet'"),
    ("CNV", r"unknown architecture preset 'CNV'"),
    ([(4, "conv")], r"architecture\[0\] \(4, 'conv'\): unknown layer kind 4"),
])
def test_bad_architectures(architecture, match):
    with pytest.raises(ValueError, match=match):
        build_plan(architecture, (1, 8, 8), 64, 10)


def test_pool_of_a_one_pixel_wide_map():
    with pytest.raises(ValueError, match=r"architecture\[1\] .*2x2 pooling shrinks its 4x1 "
                                         r"map to nothing \(2x0\)"):
        build_plan([("conv", 2, 1), ("pool",)], (1, 4, 1), 4, 2)


@pytest.mark.parametrize("architecture,match", [
    (5, r"architecture must be None, 'cnv', 'binarynet', 'binarynet_residual' or a list of "
        r"layer tuples, got int"),
    ({"conv": 4}, r"architecture must be None, .* got dict"),
    (("conv", 4), r"got the single tuple \('conv', 4\); write \[\('conv', 4\)\]"),
    ([("conv", 4), "pool"], r"architecture\[1\] 'pool': each layer must be a tuple"),
    ([("conv", 4.0)], r"architecture\[0\] \('conv', 4.0\): filters must be an int"),
    ([("conv", True)], r"architecture\[0\] \('conv', True\): filters must be an int"),
    ([("conv", "4")], r"filters must be an int, got '4'"),
    ([("conv", 4, 3.0)], r"kernel_size must be an int, got 3.0"),
    ([("dense", False)], r"architecture\[0\] \('dense', False\): units must be an int"),
])
def test_wrong_types(architecture, match):
    # wrongly typed layers raise an error that is both a TypeError and a
    # ValueError, so either kind of handler catches it
    with pytest.raises(TypeError, match=match):
        build_plan(architecture, (1, 8, 8), 64, 10)
    with pytest.raises(ValueError, match=match):
        build_plan(architecture, (1, 8, 8), 64, 10)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(n_classes=0), ValueError, "n_classes must be >= 1"),
    (dict(n_classes=2.0), TypeError, "n_classes must be an int"),
    (dict(n_features=0), ValueError, "n_features must be >= 1"),
    (dict(hidden_layer_sizes=(8, 0)), ValueError, r"hidden_layer_sizes\[1\] must be >= 1"),
    (dict(hidden_layer_sizes=(8, True)), TypeError, r"hidden_layer_sizes\[1\] must be an int"),
    (dict(hidden_layer_sizes="8"), TypeError, "hidden_layer_sizes must be an int or a "
                                              "sequence of ints"),
    (dict(real_input=1), TypeError, "real_input must be a bool"),
])
def test_bad_mlp_arguments(kwargs, exc, match):
    kw = dict(architecture=None, input_shape=None, n_features=16, n_classes=3)
    kw.update(kwargs)
    with pytest.raises(exc, match=match):
        build_plan(**kw)


def test_hidden_layer_sizes_ignored_with_architecture():
    # hidden widths are not even validated when an architecture is given
    plan = build_plan([("dense", 4)], None, 16, 3, hidden_layer_sizes=(0,))
    assert [s.units for s in plan] == [4, 3]


def test_presets_not_mutated():
    before = {k: list(v) for k, v in PRESETS.items()}
    build_plan("cnv", (3, 32, 32), 3072, 10)
    build_plan("binarynet", (1, 32, 32), 1024, 7)
    assert PRESETS == before
