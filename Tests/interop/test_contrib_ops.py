"""ONNX Runtime's contrib operators (com.microsoft), which its optimizers write into models: the
executor computes each like ONNX Runtime, and a transformer optimized by ONNX Runtime's own
optimizer (EmbedLayerNormalization, Attention, SkipLayerNormalization, BiasGelu) quantizes.

Each case is a one-node model run by `quantkit run` and by ONNX Runtime on the same random
inputs; outputs must agree to float32 rounding (max-abs error below 1e-4 of the output's scale).
"""
import collections
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from conftest import CACHE, npy_folder, npy_name, optimized_ops, quantkit

MS = "com.microsoft"
F = TensorProto.FLOAT
I32 = TensorProto.INT32


def model(op, inputs, outputs, attrs=None, inits=(), domain=MS, opset=17):
    """inputs/outputs: (name, elem type, shape) of the graph; inits: (name, array)."""
    node = helper.make_node(op, [i[0] for i in inputs] + [n for n, _ in inits], [o[0] for o in outputs], domain=domain, **(attrs or {}))
    graph = helper.make_graph([node], op,
                              [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                              [helper.make_tensor_value_info(n, t, None) for n, t, _ in outputs],
                              [onnx.numpy_helper.from_array(a, n) for n, a in inits])
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(MS, 1)] if domain == MS else [])
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def compare(tmp_path, m, feeds, node_inputs=None):
    """Runs `m` in ONNX Runtime and in QuantKit's executor; asserts every output agrees."""
    if node_inputs is not None:
        m.graph.node[0].input[:] = node_inputs
    path = tmp_path / "m.onnx"
    onnx.save(m, path)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the operator's own kernel
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in m.graph.output]
    want = dict(zip(names, session.run(names, feeds)))
    args = ["run", str(path)]
    for name, value in feeds.items():
        np.save(tmp_path / f"{name}.npy", value)
        args += ["--input", f"{name}={tmp_path / f'{name}.npy'}"]
    quantkit(*args, "--output-dir", str(tmp_path / "out"))
    compared = 0
    for name in names:
        if want[name] is None:  # an optional output ONNX Runtime's CPU kernel does not compute
            continue
        compared += 1
        ours = np.load(tmp_path / "out" / npy_name(name))
        assert ours.shape == want[name].shape, f"{name}: {ours.shape} vs {want[name].shape}"
        if want[name].dtype.kind in "iu":
            assert np.array_equal(ours, want[name]), f"{name}: {ours} vs {want[name]}"
        else:
            scale = max(1.0, float(np.abs(want[name]).max()))
            err = float(np.abs(ours.astype(np.float64) - want[name]).max())
            assert err < 1e-4 * scale, f"{name}: max-abs error {err}"
    assert compared > 0


rng = np.random.default_rng(7)


def r(*shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


@pytest.mark.parametrize("op,with_bias,attrs", [("Gelu", False, {}), ("BiasGelu", True, {}), ("FastGelu", True, {}),
                                                ("FastGelu", False, {}), ("QuickGelu", False, {"alpha": 1.5})])
def test_gelu_family(tmp_path, op, with_bias, attrs):
    x = r(2, 3, 8, scale=2)
    inits = [("bias", r(8))] if with_bias else []
    compare(tmp_path, model(op, [("x", F, [2, 3, 8])], [("y", F, None)], attrs, inits), {"x": x})


@pytest.mark.parametrize("simplified", [False, True])
@pytest.mark.parametrize("skip_shape", [[2, 5, 16], [5, 16]])
def test_skip_layer_normalization(tmp_path, simplified, skip_shape):
    op = "SkipSimplifiedLayerNormalization" if simplified else "SkipLayerNormalization"
    inits = [("gamma", r(16))] + ([] if simplified else [("beta", r(16))]) + [("bias", r(16))]
    outputs = [("y", F, None), ("mean", F, None), ("inv_std", F, None), ("sum", F, None)]
    m = model(op, [("x", F, [2, 5, 16]), ("skip", F, skip_shape)], outputs, {"epsilon": 1e-5}, inits)
    if simplified:
        m.graph.node[0].output[1] = ""  # SkipSimplifiedLayerNormalization has no mean
        del m.graph.output[1]
    compare(tmp_path, m, {"x": r(2, 5, 16, scale=3), "skip": r(*skip_shape)})


def test_simplified_layer_normalization(tmp_path):
    m = model("SimplifiedLayerNormalization", [("x", F, [3, 4, 12])], [("y", F, None), ("inv", F, None)],
              {"epsilon": 1e-6, "axis": -1}, [("scale", r(12))], domain="")
    compare(tmp_path, m, {"x": r(3, 4, 12)})


@pytest.mark.parametrize("with_mask", [True, False])
def test_embed_layer_normalization(tmp_path, with_mask):
    b, s, h = 2, 7, 16
    inputs = [("ids", I32, [b, s]), ("segments", I32, [b, s])] + ([("mask", I32, [b, s])] if with_mask else [])
    inits = [("word", r(50, h)), ("position", r(20, h)), ("segment", r(2, h)), ("gamma", r(h)), ("beta", r(h))]
    m = model("EmbedLayerNormalization", inputs, [("y", F, None), ("mask_index", I32, None), ("sum", F, None)], {"epsilon": 1e-12}, inits)
    m.graph.node[0].input[:] = ["ids", "segments", "word", "position", "segment", "gamma", "beta"] + (["mask"] if with_mask else [])
    mask = np.ones((b, s), np.int32)
    mask[1, 4:] = 0
    feeds = {"ids": rng.integers(0, 50, (b, s)).astype(np.int32), "segments": rng.integers(0, 2, (b, s)).astype(np.int32)}
    if with_mask:
        feeds["mask"] = mask
    compare(tmp_path, m, feeds)


ATTENTION_CASES = {
    "no mask": {},
    "end positions": {"mask": np.array([5, 3], np.int32)},
    "end and start positions": {"mask": np.array([5, 6, 1, 2], np.int32)},
    "raw 2-D mask": {"mask": np.array([[1, 1, 1, 0, 0, 1], [1, 1, 1, 1, 1, 0]], np.int32)},
    "raw 3-D mask": {"mask": (np.random.default_rng(1).random((2, 6, 6)) > 0.3).astype(np.int32)},
    "unidirectional": {"attrs": {"unidirectional": 1}},
    "scale and filter value": {"attrs": {"scale": 0.3, "mask_filter_value": -1e4}, "mask": np.array([4, 6], np.int32)},
    "attention bias": {"bias": (np.random.default_rng(2).standard_normal((1, 4, 6, 6)) * 2).astype(np.float32)},
    "qkv hidden sizes": {"attrs": {"qkv_hidden_sizes": [16, 16, 8]}},
    "past and present": {"past": True, "attrs": {"unidirectional": 1}},
}


@pytest.mark.parametrize("case", sorted(ATTENTION_CASES))
def test_attention(tmp_path, case):
    c = ATTENTION_CASES[case]
    b, s, hidden, heads = 2, 6, 12, 4
    sizes = c.get("attrs", {}).get("qkv_hidden_sizes", [16, 16, 16])
    attrs = {"num_heads": heads, **c.get("attrs", {})}
    inputs = [("x", F, [b, s, hidden])]
    node_inputs = ["x", "w", "bias_qkv", "", "", ""]
    feeds = {"x": r(b, s, hidden)}
    if "mask" in c:
        inputs.append(("mask", I32, list(c["mask"].shape)))
        node_inputs[3] = "mask"
        feeds["mask"] = c["mask"]
    outputs = [("y", F, None)]
    if c.get("past"):
        past = r(2, b, heads, 3, sizes[0] // heads)
        inputs.append(("past", F, list(past.shape)))
        node_inputs[4] = "past"
        feeds["past"] = past
        outputs.append(("present", F, None))
    if "bias" in c:
        inputs.append(("attention_bias", F, list(c["bias"].shape)))
        node_inputs[5] = "attention_bias"
        feeds["attention_bias"] = c["bias"]
    while node_inputs[-1] == "":
        node_inputs.pop()
    inits = [("w", r(hidden, sum(sizes), scale=0.5)), ("bias_qkv", r(sum(sizes), scale=0.1))]
    compare(tmp_path, model("Attention", inputs, outputs, attrs, inits), feeds, node_inputs=node_inputs)


MHA_CASES = {
    "plain": {},
    "bias": {"bias": True},
    "key padding mask 2-D": {"mask": np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], np.int32)},
    "key padding mask end positions": {"mask": np.array([4, 6], np.int32)},
    "attention bias": {"attention_bias": True},
    "unidirectional": {"attrs": {"unidirectional": 1}},
    "cross attention": {"kv": 4},
    "past and present": {"past": 3, "bias": True},
}


@pytest.mark.parametrize("case", sorted(MHA_CASES))
def test_multi_head_attention(tmp_path, case):
    c = MHA_CASES[case]
    b, s, heads, d = 2, 6, 2, 8
    kv = c.get("kv", s)
    feeds = {"q": r(b, s, heads * d), "k": r(b, kv, heads * d), "v": r(b, kv, heads * d)}
    node_inputs = ["q", "k", "v", "", "", "", "", ""]
    inits = []
    if c.get("bias"):
        inits.append(("bias", r(3 * heads * d, scale=0.2)))
        node_inputs[3] = "bias"
    if "mask" in c:
        feeds["mask"] = c["mask"]
        node_inputs[4] = "mask"
    total = kv + c.get("past", 0)
    if c.get("attention_bias"):
        feeds["attention_bias"] = r(1, heads, s, total)
        node_inputs[5] = "attention_bias"
    outputs = [("y", F, None)]
    if c.get("past"):
        feeds["past_key"], feeds["past_value"] = r(b, heads, c["past"], d), r(b, heads, c["past"], d)
        node_inputs[6:8] = ["past_key", "past_value"]
        outputs += [("present_key", F, None), ("present_value", F, None)]
    while node_inputs[-1] == "":
        node_inputs.pop()
    inputs = [(n, I32 if n == "mask" else F, list(a.shape)) for n, a in feeds.items()]
    m = model("MultiHeadAttention", inputs, outputs, {"num_heads": heads, **c.get("attrs", {})}, inits)
    compare(tmp_path, m, feeds, node_inputs=node_inputs)


@pytest.mark.parametrize("attrs", [{"alpha": 0.5}, {"transA": 1}, {"transB": 1, "alpha": 2.0}])
def test_fused_matmul(tmp_path, attrs):
    a = r(2, 5, 4) if attrs.get("transA") else r(2, 4, 5)
    b = r(3, 5) if attrs.get("transB") else r(5, 3)
    compare(tmp_path, model("FusedMatMul", [("a", F, list(a.shape)), ("b", F, list(b.shape))], [("y", F, None)], attrs), {"a": a, "b": b})


@pytest.mark.parametrize("activation,params,with_z", [("Relu", [], True), ("LeakyRelu", [0.2], False), ("Clip", [-0.5, 0.7], False),
                                                      ("HardSigmoid", [0.3, 0.4], True), ("Sigmoid", [], False)])
def test_fused_conv(tmp_path, activation, params, with_z):
    attrs = {"activation": activation, "pads": [1, 1, 1, 1]}
    if params:
        attrs["activation_params"] = params
    inputs = [("x", F, [1, 3, 6, 6])] + ([("z", F, [1, 4, 6, 6])] if with_z else [])
    m = model("FusedConv", inputs, [("y", F, None)], attrs, [("w", r(4, 3, 3, 3)), ("b", r(4))])
    feeds = {"x": r(1, 3, 6, 6)}
    if with_z:
        feeds["z"] = r(1, 4, 6, 6)
    compare(tmp_path, m, feeds, node_inputs=["x", "w", "b"] + (["z"] if with_z else []))


def test_fused_gemm(tmp_path):
    m = model("FusedGemm", [("a", F, [4, 6])], [("y", F, None)], {"activation": "LeakyRelu", "activation_alpha": 0.1, "transB": 1},
              [("b", r(5, 6)), ("c", r(5))])
    compare(tmp_path, m, {"a": r(4, 6)})


MINILM = os.path.join(CACHE, "models", "minilm_l3.onnx")


@pytest.mark.skipif(not os.path.exists(MINILM), reason="minilm_l3.onnx is not in .cache/models")
def test_minilm_optimized_by_onnxruntime_quantizes(tmp_path):
    """ONNX Runtime's transformer optimizer fuses MiniLM-L3 into EmbedLayerNormalization,
    Attention, SkipLayerNormalization and BiasGelu; QuantKit calibrates that model in its own
    executor, splits each Attention's Q/K/V projection out into MatMuls before
    MultiHeadAttention, and quantizes every MatMul, which ONNX Runtime then runs as integer
    kernels."""
    from onnxruntime.transformers import optimizer
    opt = optimizer.optimize_model(MINILM, model_type="bert", num_heads=12, hidden_size=384, opt_level=0)
    fused = tmp_path / "minilm_opt.onnx"
    opt.save_model_to_file(str(fused))
    ops = collections.Counter((n.domain, n.op_type) for n in onnx.load(fused).graph.node)
    assert ops[(MS, "Attention")] == 3 and ops[(MS, "SkipLayerNormalization")] == 6 and ops[(MS, "EmbedLayerNormalization")] == 1
    rng2 = np.random.default_rng(3)
    calib = tmp_path / "calib"
    calib.mkdir()
    lines = []
    for i in range(8):
        ids = rng2.integers(1000, 30000, (1, 32)).astype(np.int64)
        ids[0, 0], ids[0, 20] = 101, 102
        ids[0, 21:] = 0
        mask = (ids != 0).astype(np.int64)
        np.save(calib / f"{i}_ids.npy", ids)
        np.save(calib / f"{i}_mask.npy", mask)
        lines.append(f"{calib / f'{i}_ids.npy'};{calib / f'{i}_mask.npy'}")
    (tmp_path / "calib.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "q.onnx"
    quantkit("quantize", str(fused), "--list", str(tmp_path / "calib.txt"), "-o", str(out), "--no-analysis")
    onnx.checker.check_model(onnx.load(out), full_check=True)
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "ort.onnx")
    quantized = ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"])
    ort_ops = collections.Counter(n.op_type for n in onnx.load(tmp_path / "ort.onnx").graph.node)
    # 9 MatMuls of the model, and each Attention's Q/K/V projection split out of it (3 x 3).
    assert ort_ops["MatMulIntegerToFloat"] + ort_ops["QLinearMatMul"] == 18 and ort_ops["MatMul"] == 0, ort_ops
    assert ort_ops["MultiHeadAttention"] == 3 and ort_ops["Attention"] == 0, ort_ops
    ids = rng2.integers(1000, 30000, (4, 32)).astype(np.int64)
    ids[:, 0] = 101
    mask = np.ones_like(ids)
    mask[1, 12:], mask[3, 25:] = 0, 0
    ids[mask == 0] = 0
    feeds = {"input_ids": ids, "attention_mask": mask}
    name = opt.model.graph.output[-1].name
    f = ort.InferenceSession(str(fused), providers=["CPUExecutionProvider"]).run([name], feeds)[0]
    q = quantized.run([name], feeds)[0]
    cos = (f * q).sum(1) / np.linalg.norm(f, axis=1) / np.linalg.norm(q, axis=1)
    assert cos.min() > 0.99, cos
    # The split float model computes what ONNX Runtime's fused one does.
    split = tmp_path / "split.onnx"
    quantkit("convert", str(fused), str(split), "--prepare")
    s = ort.InferenceSession(str(split), providers=["CPUExecutionProvider"]).run([name], feeds)[0]
    assert float(np.abs(s - f).max()) < 1e-4, float(np.abs(s - f).max())


def test_onnxruntime_optimized_cnn_quantizes(tmp_path):
    """A CNN saved by ONNX Runtime's graph optimizer holds FusedConv (Conv + BatchNorm + Relu):
    preparation splits them back into Conv + Relu, so they quantize and run as QLinearConv."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / "fashion_ort.onnx")
    ort.InferenceSession(os.path.join(os.path.dirname(__file__), "..", "fixtures", "fashion_cnn.onnx"), so, providers=["CPUExecutionProvider"])
    src = tmp_path / "fashion_ort.onnx"
    assert collections.Counter(n.op_type for n in onnx.load(src).graph.node)["FusedConv"] == 3
    x = np.random.default_rng(5).random((48, 1, 28, 28), dtype=np.float32)
    calib = npy_folder(tmp_path / "calib", [x[i:i + 1] for i in range(32)])
    out = tmp_path / "q.onnx"
    r = quantkit("quantize", str(src), "--input", f"image={calib}", "-o", str(out), "--no-analysis")
    assert "3 ONNX Runtime FusedConv/FusedGemm/Attention split" in r.stdout
    m = onnx.load(out)
    onnx.checker.check_model(m, full_check=True)
    assert not any(n.domain == MS and n.op_type.startswith("Fused") for n in m.graph.node)
    ops = collections.Counter(optimized_ops(out))
    assert ops["QLinearConv"] == 3 and ops["QGemm"] == 1 and ops["FusedConv"] + ops["Conv"] == 0, ops
    f = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"image": x[32:]})[0]
    q = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"image": x[32:]})[0]
    cos = (f * q).sum(1) / np.linalg.norm(f, axis=1) / np.linalg.norm(q, axis=1)
    assert cos.min() > 0.99, cos


def test_fused_conv_with_sum_and_fused_gemm_split_and_quantize(tmp_path):
    """FusedConv with a Z (sum) input and a Clip, FusedGemm with LeakyRelu: split into standard
    nodes with the same float outputs, then quantized (QLinearConv, QGemm in ONNX Runtime)
    exactly as the same network written with standard nodes."""
    g = np.random.default_rng(11)
    weights = {"w1": g.standard_normal((4, 3, 3, 3)) * 0.3, "w2": g.standard_normal((4, 3, 1, 1)) * 0.3, "b1": g.standard_normal(4) * 0.1,
               "wg": g.standard_normal((6, 100)) * 0.1, "bg": g.standard_normal(6) * 0.1, "lo": np.array(0.0), "hi": np.array(2.0)}

    def save(nodes, path):
        graph = helper.make_graph(nodes, "fused", [helper.make_tensor_value_info("x", F, ["N", 3, 5, 5])],
                                  [helper.make_tensor_value_info("y", F, None)],
                                  [onnx.numpy_helper.from_array(a.astype(np.float32), n) for n, a in weights.items()])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)], ir_version=8), path)
    conv_z = helper.make_node("Conv", ["x", "w2"], ["z"], pads=[0, 0, 0, 0])
    save([conv_z, helper.make_node("FusedConv", ["x", "w1", "b1", "z"], ["c"], domain=MS, pads=[1, 1, 1, 1],
                                   activation="Clip", activation_params=[0.0, 2.0]),
          helper.make_node("Flatten", ["c"], ["flat"]),
          helper.make_node("FusedGemm", ["flat", "wg", "bg"], ["y"], domain=MS, transB=1, activation="LeakyRelu", activation_alpha=0.1)],
         tmp_path / "fused.onnx")
    save([conv_z, helper.make_node("Conv", ["x", "w1", "b1"], ["c0"], pads=[1, 1, 1, 1]), helper.make_node("Add", ["c0", "z"], ["c1"]),
          helper.make_node("Clip", ["c1", "lo", "hi"], ["c"]), helper.make_node("Flatten", ["c"], ["flat"]),
          helper.make_node("Gemm", ["flat", "wg", "bg"], ["g"], transB=1), helper.make_node("LeakyRelu", ["g"], ["y"], alpha=0.1)],
         tmp_path / "standard.onnx")
    x = g.standard_normal((40, 3, 5, 5)).astype(np.float32)
    calib = npy_folder(tmp_path / "calib", [x[i:i + 1] for i in range(24)])
    outputs = {}
    for name in ("fused", "standard"):
        out = tmp_path / f"{name}.q.onnx"
        r2 = quantkit("quantize", str(tmp_path / f"{name}.onnx"), "--input", f"x={calib}", "-o", str(out), "--no-analysis")
        assert ("2 ONNX Runtime FusedConv/FusedGemm/Attention split" in r2.stdout) == (name == "fused")
        ops = collections.Counter(optimized_ops(out))
        assert ops["QLinearConv"] == 2 and ops["QGemm"] == 1, ops
        outputs[name] = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x[24:]})[0]
    assert np.array_equal(outputs["fused"], outputs["standard"])
    # The split float model (`quantkit convert --prepare`) computes what the fused one does (run as
    # written: ONNX Runtime's own NCHWc rewrite of a FusedConv with a sum input fails on it).
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    f = ort.InferenceSession(str(tmp_path / "fused.onnx"), so, providers=["CPUExecutionProvider"]).run(None, {"x": x[24:]})[0]
    flat = tmp_path / "split.onnx"
    quantkit("convert", str(tmp_path / "fused.onnx"), str(flat), "--prepare")
    assert not any(n.op_type.startswith("Fused") for n in onnx.load(flat).graph.node)
    s = ort.InferenceSession(str(flat), providers=["CPUExecutionProvider"]).run(None, {"x": x[24:]})[0]
    assert float(np.abs(f - s).max()) < 1e-5
