"""Graph preparation keeps the float semantics: ONNX Runtime gives the same outputs for the
original and the prepared real models."""
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import CACHE, quantkit

FEEDS = {
    "ppocr_cls.onnx": lambda r: {"x": r.standard_normal((2, 3, 48, 192)).astype(np.float32)},
    "ppocrv4_rec.onnx": lambda r: {"x": r.standard_normal((2, 3, 48, 320)).astype(np.float32)},
    "ppocrv4_det.onnx": lambda r: {"x": r.standard_normal((1, 3, 128, 160)).astype(np.float32)},
    "efficientnet_lite0.onnx": lambda r: {"input": r.standard_normal((2, 3, 224, 224)).astype(np.float32)},
    "minilm_l3.onnx": lambda r: {"input_ids": r.integers(100, 2000, (2, 12)).astype(np.int64), "attention_mask": np.ones((2, 12), np.int64)},
}


@pytest.mark.parametrize("name", sorted(FEEDS))
def test_prepared_model_computes_the_same(tmp_path, name):
    src = os.path.join(CACHE, "models", name)
    out = str(tmp_path / name)
    r = quantkit("convert", src, out, "--prepare")
    assert "prepared:" in r.stdout
    if name == "efficientnet_lite0.onnx":
        # TF-style "same" padding: 17 Pad nodes become the Convs' own pads.
        assert "17 Pads folded" in r.stdout, r.stdout
        assert not [n for n in onnx.load(out).graph.node if n.op_type == "Pad"]
    if name == "ppocrv4_rec.onnx":
        # PPLCNetV3's learnable affine blocks: Conv -> Mul -> Add after 28 Convs (56 folded into
        # them), scalar Mul -> Add before 12 pad-free Convs (24 folded into them); hard-swish is
        # written as Add, Clip, Mul, Div (28 times; opset 12, so x * HardSigmoid(x)).
        assert "80 constant Mul/Add folded into Convs, 28 hard-swish chains fused" in r.stdout, r.stdout
        ops = [n.op_type for n in onnx.load(out).graph.node]
        assert ops.count("Clip") == 0 and ops.count("HardSigmoid") == 30, ops
    feeds = FEEDS[name](np.random.default_rng(0))
    a = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, feeds)
    b = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, feeds)
    for x, y in zip(a, b):
        assert x.shape == y.shape
        if np.issubdtype(x.dtype, np.floating):
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-4)
        else:
            np.testing.assert_array_equal(x, y)


def test_zero_pads_fold_into_the_conv_and_others_stay(tmp_path):
    """Pad (zeros on H and W only, value 0) before a Conv with pads of its own becomes the Conv's
    summed pads; a Pad with value 1 and a Pad on the channel axis stay. Same outputs."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    inits = [w, numpy_helper.from_array(np.array([0, 0, 1, 2, 0, 0, 3, 0], np.int64), "p_hw"),
             numpy_helper.from_array(np.array([0, 1, 0, 0, 0, 1, 0, 0], np.int64), "p_c"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one"),
             numpy_helper.from_array(rng.standard_normal((4, 5, 3, 3)).astype(np.float32), "w5")]
    nodes = [helper.make_node("Pad", ["x", "p_hw"], ["a"], name="pad_zero"),
             helper.make_node("Conv", ["a", "w"], ["y1"], name="conv_a", pads=[1, 1, 1, 1]),
             helper.make_node("Pad", ["x", "p_hw", "one"], ["b"], name="pad_one"),
             helper.make_node("Conv", ["b", "w"], ["y2"], name="conv_b"),
             helper.make_node("Pad", ["x", "p_c"], ["c"], name="pad_channels"),
             helper.make_node("Conv", ["c", "w5"], ["y3"], name="conv_c")]
    g = helper.make_graph(nodes, "pads", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 9, 8])],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y1", "y2", "y3")], inits)
    src, out = str(tmp_path / "pads.onnx"), str(tmp_path / "pads.prepared.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), src)
    r = quantkit("convert", src, out, "--prepare")
    assert "1 Pads folded" in r.stdout, r.stdout
    m = onnx.load(out)
    assert sorted(n.name for n in m.graph.node if n.op_type == "Pad") == ["pad_channels", "pad_one"]
    conv_a = next(n for n in m.graph.node if n.name == "conv_a")
    assert conv_a.input[0] == "x" and list(next(a for a in conv_a.attribute if a.name == "pads").ints) == [2, 3, 4, 1]
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    a = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    b = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-5)


def _affine_graph(opset):
    """Conv/Mul/Add/Sub/Div patterns next to Convs, some foldable and some not, and a written-out
    hard-swish."""
    rng = np.random.default_rng(2)
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    inits = {"w": f(4, 3, 3, 3), "b": f(4), "w1x1": f(5, 3, 1, 1), "wg": f(6, 1, 3, 3),
             "per_channel": f(1, 4, 1, 1), "half": np.array(0.5, np.float32), "two": np.array([2.0], np.float32),
             "along_w": f(1, 1, 1, 6), "three": np.array(3.0, np.float32), "zero": np.array(0.0, np.float32),
             "six": np.array(6.0, np.float32), "gamma": rng.uniform(0.5, 1.5, 4).astype(np.float32), "beta": f(4),
             "mean": f(4), "var": rng.uniform(0.5, 2, 4).astype(np.float32)}
    nodes = [
        # folds: Conv -> Mul(per channel) -> Add(scalar), Add's output a graph output
        helper.make_node("Conv", ["x", "w", "b"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["per_channel", "c1"], ["m1"], name="mul1"),
        helper.make_node("Add", ["m1", "half"], ["y1"], name="add1"),
        # folds: Conv without bias -> Sub(x - c) -> Div(x / c)
        helper.make_node("Conv", ["x", "w"], ["c2"], name="conv2"),
        helper.make_node("Sub", ["c2", "half"], ["s2"], name="sub2"),
        helper.make_node("Div", ["s2", "two"], ["y2"], name="div2"),
        # stays: the Conv's output has a second reader (a graph output)
        helper.make_node("Conv", ["x", "w", "b"], ["y3a"], name="conv3"),
        helper.make_node("Mul", ["y3a", "two"], ["y3"], name="mul3"),
        # stays: c - Conv (the constant on the left of a Sub)
        helper.make_node("Conv", ["x", "w", "b"], ["c4"], name="conv4"),
        helper.make_node("Sub", ["half", "c4"], ["y4"], name="sub4"),
        # stays: a constant varying along the width
        helper.make_node("Conv", ["x", "w", "b"], ["c5"], name="conv5", pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["c5", "along_w"], ["y5"], name="mul5"),
        # folds into the pad-free 1x1 Conv after it: Mul then Add by scalars
        helper.make_node("Mul", ["x", "two"], ["m6"], name="mul6"),
        helper.make_node("Add", ["m6", "half"], ["a6"], name="add6"),
        helper.make_node("Conv", ["a6", "w1x1"], ["y6"], name="conv6"),
        # stays: the Conv after it pads (its zeros are not those of 2x + 0.5)
        helper.make_node("Add", ["x", "half"], ["a7"], name="add7"),
        helper.make_node("Conv", ["a7", "wg"], ["y7"], name="conv7", group=3, pads=[1, 1, 1, 1]),
        # folds: Conv -> Mul(scalar) -> BatchNormalization (the BN once the Mul is in the Conv)
        helper.make_node("Conv", ["x", "w", "b"], ["c9"], name="conv9"),
        helper.make_node("Mul", ["c9", "two"], ["m9"], name="mul9"),
        helper.make_node("BatchNormalization", ["m9", "gamma", "beta", "mean", "var"], ["y9"], name="bn9"),
        # hard-swish written out: x * Clip(x + 3, 0, 6) / 6
        helper.make_node("Add", ["three", "x"], ["h1"], name="hs_add"),
        helper.make_node("Clip", ["h1", "zero", "six"], ["h2"], name="hs_clip"),
        helper.make_node("Mul", ["h2", "x"], ["h3"], name="hs_mul"),
        helper.make_node("Div", ["h3", "six"], ["y8"], name="hs_div"),
    ]
    outputs = ["y1", "y2", "y3a", "y3", "y4", "y5", "y6", "y7", "y8", "y9"]
    g = helper.make_graph(nodes, "affine", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 6])],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


@pytest.mark.parametrize("opset", [13, 14])
def test_constant_arithmetic_folds_into_convs_and_hardswish_fuses(tmp_path, opset):
    src, out = str(tmp_path / "affine.onnx"), str(tmp_path / "affine.prepared.onnx")
    onnx.save(_affine_graph(opset), src)
    r = quantkit("convert", src, out, "--prepare")
    assert "1 BatchNorms" in r.stdout and "7 constant Mul/Add folded into Convs, 1 hard-swish chains fused" in r.stdout, r.stdout
    m = onnx.load(out)
    names = {n.name for n in m.graph.node}
    assert not names & {"mul1", "add1", "sub2", "div2", "mul6", "add6", "mul9", "bn9", "hs_add", "hs_clip", "hs_mul", "hs_div"}, names
    assert {"mul3", "sub4", "mul5", "add7"} <= names, names
    ops = [n.op_type for n in m.graph.node]
    assert ("HardSwish" in ops) == (opset >= 14) and ("HardSigmoid" in ops) == (opset < 14), ops
    assert next(n for n in m.graph.node if n.name == "conv6").input[0] == "x"
    x = np.random.default_rng(3).uniform(-5, 5, (2, 3, 8, 6)).astype(np.float32)
    a = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    b = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-5)


def test_hardswish_with_constants_of_higher_rank_is_left_alone(tmp_path):
    """x * Clip(x + 3, 0, 6) / 6 with the 3 and 6 stored as [1, 1, 1, 1] broadcasts a rank-2 x up
    to rank 4; a HardSwish(x) would not, so the chain stays as written."""
    one4 = lambda v, n: numpy_helper.from_array(np.full((1, 1, 1, 1), v, np.float32), n)  # noqa: E731
    inits = [one4(3.0, "three"), one4(6.0, "six"), numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
             numpy_helper.from_array(np.array(6.0, np.float32), "six0")]
    nodes = [helper.make_node("Add", ["x", "three"], ["a"]), helper.make_node("Clip", ["a", "zero", "six0"], ["c"]),
             helper.make_node("Mul", ["x", "c"], ["m"]), helper.make_node("Div", ["m", "six"], ["y"])]
    g = helper.make_graph(nodes, "hs4", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    src, out = str(tmp_path / "hs4.onnx"), str(tmp_path / "hs4.prepared.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)], ir_version=8), src)
    r = quantkit("convert", src, out, "--prepare")
    assert "0 hard-swish chains fused" in r.stdout, r.stdout
    x = np.random.default_rng(4).uniform(-5, 5, (2, 5)).astype(np.float32)
    a = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    b = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert a.shape == b.shape == (1, 1, 2, 5)
    np.testing.assert_allclose(a, b, rtol=1e-6)


def opset9_model():
    """x[1,2,6,6] through every operator whose signature changed between opsets 9 and 11:
    Slice-1, Clip-6, Pad-2 (constant with a value, and reflect), Upsample-9 (nearest, linear),
    TopK-1, Scatter-9; plus a Conv so that something is quantized."""
    f = lambda name, a: numpy_helper.from_array(np.asarray(a, np.float32), name)
    inits = [f("W", np.random.default_rng(1).standard_normal((3, 2, 3, 3)) * 0.3), f("B", [0.1, -0.2, 0.3]),
             f("up_scales", [1, 1, 2, 2]), numpy_helper.from_array(np.array([[0, 1]], np.int64), "idx"), f("upd", [[9, 8]])]
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c"], ["r"], name="clip", min=-0.5, max=1.5),
        helper.make_node("Slice", ["r"], ["s"], name="slice", starts=[1, 1], ends=[5, 100], axes=[2, 3]),
        helper.make_node("Pad", ["s"], ["p"], name="pad", pads=[0, 0, 1, 2, 0, 0, 2, 1], value=0.5),
        helper.make_node("Pad", ["s"], ["pr"], name="pad_reflect", mode="reflect", pads=[0, 0, 1, 1, 0, 0, 1, 1]),
        helper.make_node("Upsample", ["p", "up_scales"], ["un"], name="up_nearest", mode="nearest"),
        helper.make_node("Upsample", ["pr", "up_scales"], ["ul"], name="up_linear", mode="linear"),
        helper.make_node("Flatten", ["un"], ["fl"], name="flatten", axis=1),
        helper.make_node("TopK", ["fl"], ["tv", "ti"], name="topk", k=5),
        helper.make_node("Scatter", ["tv", "idx", "upd"], ["sc"], name="scatter", axis=1),
    ]
    g = helper.make_graph(nodes, "opset9", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 6])],
                          [helper.make_tensor_value_info("sc", TensorProto.FLOAT, [1, 5]), helper.make_tensor_value_info("ul", TensorProto.FLOAT, [1, 3, 12, 14]),
                           helper.make_tensor_value_info("ti", TensorProto.INT64, [1, 5])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 9)], ir_version=4)


def test_a_model_below_opset_10_is_raised_to_11_with_the_same_outputs(tmp_path):
    """Preparation raises opset 9 to 11 (Q/DQ and ONNX Runtime's fused kernels need 10+),
    rewriting the operators whose signature changed; ONNX Runtime computes the same outputs,
    and the quantized model passes the checker and loads."""
    src = str(tmp_path / "m9.onnx")
    onnx.save(opset9_model(), src)
    out = str(tmp_path / "m11.onnx")
    r = quantkit("convert", src, out, "--prepare")
    assert "opset 9 raised to 11" in r.stdout, r.stdout
    m = onnx.load(out)
    onnx.checker.check_model(m, full_check=True)
    assert [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] == [11]
    ops = {n.op_type for n in m.graph.node}
    assert "Upsample" not in ops and "Scatter" not in ops and {"Resize", "ScatterElements"} <= ops, ops
    assert not [a for n in m.graph.node if n.op_type != "Conv" for a in n.attribute if a.name in ("starts", "ends", "pads", "k", "min", "max", "scales")]
    x = {"x": np.random.default_rng(2).standard_normal((1, 2, 6, 6)).astype(np.float32)}
    a = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, x)
    b = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, x)
    for u, v in zip(a, b):
        assert u.shape == v.shape and np.allclose(u, v, atol=1e-6), (u, v)
    calib = tmp_path / "calib"
    calib.mkdir()
    np.save(str(calib / "0.npy"), x["x"])
    q = str(tmp_path / "q.onnx")
    r = quantkit("quantize", src, "--input", f"x={calib}", "-o", q, "--no-analysis")
    assert "opset 9 raised to 11" in r.stdout, r.stdout
    onnx.checker.check_model(onnx.load(q), full_check=True)
    ort.InferenceSession(q, providers=["CPUExecutionProvider"]).run(None, x)


def test_an_operator_the_opset_upgrade_cannot_rewrite_is_named(tmp_path):
    """An opset-9 Upsample with a mode Resize-11 cannot express fails with QK7009, naming the
    node and the fix; nothing is written."""
    g = helper.make_graph([helper.make_node("Upsample", ["x", "s"], ["y"], name="up", mode="cubic")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])],
                          [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "s")])
    src = str(tmp_path / "m.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 9)], ir_version=4), src)
    out = str(tmp_path / "o.onnx")
    r = quantkit("convert", src, out, "--prepare", check=False)
    assert r.returncode == 2 and "QK7009" in r.stderr and "Upsample 'up'" in r.stderr and "version_converter" in r.stderr, r.stderr
    assert not os.path.exists(out)


LIGHT = os.path.join(CACHE, "onnx-tests", "light")


@pytest.mark.parametrize("name", sorted(os.listdir(LIGHT)) if os.path.isdir(LIGHT) else [])
def test_light_models_below_opset_10_quantize_and_fuse(tmp_path, name):
    """The ONNX wheel's light_* architectures (opset 9, IR 3: initializers listed as inputs) are
    raised to opset 11 and IR 6; the QDQ model passes the full checker and ONNX Runtime turns
    every Conv/Gemm into an integer kernel (before: it did not load, Q/DQ not being opset 9 ops)."""
    src = os.path.join(LIGHT, name, "model.onnx")
    m = onnx.load(src)
    x = [i for i in m.graph.input if i.name not in {t.name for t in m.graph.initializer}][0]
    shape = [d.dim_value for d in x.type.tensor_type.shape.dim]
    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        np.save(str(calib / f"{k}.npy"), rng.standard_normal(shape).astype(np.float32))
    q = str(tmp_path / "q.onnx")
    r = quantkit("quantize", src, "--input", f"{x.name}={calib}", "-o", q, "--no-analysis")
    assert "raised to 11" in r.stdout, r.stdout
    qm = onnx.load(q)
    onnx.checker.check_model(qm, full_check=True)
    assert qm.ir_version >= 6
    opt = str(tmp_path / "opt.onnx")
    so = ort.SessionOptions()
    so.optimized_model_filepath = opt
    s = ort.InferenceSession(q, so, providers=["CPUExecutionProvider"])
    s.run(None, {x.name: rng.standard_normal(shape).astype(np.float32)})
    ops = [n.op_type for n in onnx.load(opt).graph.node]
    ints = sum(o in ("QLinearConv", "QGemm") for o in ops)
    floats = sum(o in ("Conv", "FusedConv", "Gemm", "FusedGemm") for o in ops)
    assert ints > 0 and ints >= 0.95 * (ints + floats), ops
