"""The QDQ rewrite produces models that onnx.checker accepts and that ONNX Runtime fuses into
integer kernels, with outputs close to the float model. Ranges come from a tensor,min,max CSV
computed with ONNX Runtime, so this checks the rewrite independently of our executor."""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import npy_folder, quantkit, optimized_ops


def small_cnn(opset=17, rng=np.random.default_rng(0)):
    """x[N,3,16,16] ─ Conv(8)+BN ─ Relu ─ MaxPool ─ Conv(16) ─ Clip(0,6) ─ Concat(skip) ─ GAP ─ Flatten ─ Gemm(10) ─ y"""
    def init(name, *shape, scale=0.3):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)
    inits = [
        init("W1", 8, 3, 3, 3), init("B1", 8),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, 8).astype(np.float32), "gamma"),
        init("beta", 8), init("mean", 8, scale=0.1),
        numpy_helper.from_array(rng.uniform(0.5, 2, 8).astype(np.float32), "var"),
        init("W2", 16, 8, 3, 3), init("B2", 16),
        init("W3", 10, 24), init("B3", 10),
    ]
    clip = []
    if opset >= 11:
        inits += [numpy_helper.from_array(np.array(0, np.float32), "zero"), numpy_helper.from_array(np.array(6, np.float32), "six")]
        clip = [helper.make_node("Clip", ["c2", "zero", "six"], ["r2"], name="clip")]
    else:
        clip = [helper.make_node("Clip", ["c2"], ["r2"], name="clip", min=0.0, max=6.0)]
    nodes = [
        helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["bn1"], name="bn1"),
        helper.make_node("Relu", ["bn1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "W2", "B2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        *clip,
        helper.make_node("Concat", ["r2", "p1"], ["cat"], name="concat", axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "W3", "B3"], ["y"], name="fc", transB=1),
    ]
    g = helper.make_graph(nodes, "small_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def ranges_csv(model, inputs, path):
    """Min/max of every float tensor over `inputs`, computed by ONNX Runtime."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    names = [o for n in m.graph.node for o in n.output]
    del m.graph.output[:]
    for n in ["x"] + names:
        m.graph.output.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {"x": inputs})
    with open(path, "w") as f:
        f.write("tensor,min,max\n")
        for n, v in zip(["x"] + names, outs):
            f.write(f"{n},{float(v.min())},{float(v.max())}\n")


@pytest.mark.parametrize("opset", [11, 13, 17])
def test_small_cnn_quantizes_fuses_and_agrees(tmp_path, opset):
    rng = np.random.default_rng(1)
    model = small_cnn(opset)
    src = str(tmp_path / "cnn.onnx")
    onnx.save(model, src)
    calib = rng.standard_normal((32, 3, 16, 16)).astype(np.float32)
    ranges_csv(model, calib, str(tmp_path / "ranges.csv"))
    r = quantkit("quantize", src, "--stats", str(tmp_path / "ranges.csv"))
    out = str(tmp_path / "cnn.q.onnx")
    assert os.path.exists(out) and os.path.exists(str(tmp_path / "cnn.qparams.json")), r.stdout
    assert "1 BatchNorms folded" in r.stdout
    q = onnx.load(out)
    onnx.checker.check_model(q)
    # No float weights left: every Conv/Gemm weight input comes from a DequantizeLinear.
    producers = {o: n for n in q.graph.node for o in n.output}
    for n in q.graph.node:
        if n.op_type in ("Conv", "Gemm"):
            for i in n.input[:3]:
                assert producers[i].op_type == "DequantizeLinear", (n.name, i)
    inits = {t.name: t for t in q.graph.initializer}
    assert all(t.data_type != TensorProto.FLOAT or len(t.dims) <= 1 for t in inits.values()), "float weight left"
    assert q.graph.output[0].name == "y"
    # The graph output stays float: the logits Gemm writes it directly (ONNX Runtime: QGemm with
    # a float output), without a Q/DQ pair that would put the logits on 256 steps.
    assert producers["y"].op_type == "Gemm"
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] == "y" for n in q.graph.node)
    # ONNX Runtime fuses Conv and Gemm into integer kernels.
    ops = optimized_ops(out, tmp_path)
    assert ops.count("QLinearConv") == 2, ops
    assert "Conv" not in ops and "Gemm" not in ops, ops
    # Outputs agree with the float model on new data.
    test = rng.standard_normal((16, 3, 16, 16)).astype(np.float32)
    f = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, {"x": test})[0]
    g = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, {"x": test})[0]
    cos = float((f * g).sum() / np.linalg.norm(f) / np.linalg.norm(g))
    assert cos > 0.99, cos
    assert (f.argmax(1) == g.argmax(1)).mean() >= 0.75
    params = json.load(open(str(tmp_path / "cnn.qparams.json")))["tensors"]
    assert params["W1_bnfolded"]["role"] == "weight" and len(params["W1_bnfolded"]["scale"]) == 8
    assert "y" not in params


def test_quantize_is_deterministic_and_never_overwrites_input(tmp_path):
    model = small_cnn(17)
    src = str(tmp_path / "cnn.onnx")
    onnx.save(model, src)
    ranges_csv(model, np.random.default_rng(2).standard_normal((4, 3, 16, 16)).astype(np.float32), str(tmp_path / "r.csv"))
    quantkit("quantize", src, "--stats", str(tmp_path / "r.csv"), "-o", str(tmp_path / "a.onnx"))
    quantkit("quantize", src, "--stats", str(tmp_path / "r.csv"), "-o", str(tmp_path / "b.onnx"))
    assert open(tmp_path / "a.onnx", "rb").read() == open(tmp_path / "b.onnx", "rb").read()
    assert open(tmp_path / "a.qparams.json").read() == open(tmp_path / "b.qparams.json").read()
    before = open(src, "rb").read()
    r = quantkit("quantize", src, "--stats", str(tmp_path / "r.csv"), "-o", src, check=False)
    assert r.returncode == 2 and "QK7001" in r.stderr
    assert open(src, "rb").read() == before


@pytest.mark.parametrize("settings", [[], ["--exclude-node", "conv2"], ["--subgraph", "p1:r2:bits=16"], ["--activations", "s8"]])
def test_calibration_observes_only_what_it_quantizes_and_gives_the_same_model(tmp_path, settings):
    """Without --stats-out, calibration keeps statistics only of the tensors the rewrite asks
    ranges for (the summary says how many); the model and record are byte-identical to those
    quantized from complete statistics (--stats-out), whose file holds every float tensor."""
    src = str(tmp_path / "cnn.onnx")
    onnx.save(small_cnn(17), src)
    rng = np.random.default_rng(5)
    calib = npy_folder(tmp_path / "calib", [rng.standard_normal((1, 3, 16, 16)).astype(np.float32) for _ in range(8)])
    common = ["--input", f"x={calib}", "--batch", "4", "--no-analysis"]
    part = quantkit("quantize", src, *common, *settings, "-o", str(tmp_path / "part.onnx"))
    full = quantkit("quantize", src, *common, *settings, "-o", str(tmp_path / "full.onnx"), "--stats-out", str(tmp_path / "s.json"))
    assert open(tmp_path / "part.onnx", "rb").read() == open(tmp_path / "full.onnx", "rb").read()
    assert open(tmp_path / "part.qparams.json").read() == open(tmp_path / "full.qparams.json").read()
    observed = int(part.stdout.split("(statistics of the ")[1].split(" tensors")[0])
    complete = len(json.load(open(tmp_path / "s.json"))["tensors"])
    assert 0 < observed < complete == 11, (observed, complete)
    assert "statistics of the" not in full.stdout


def test_truncate_and_exclusions_keep_float(tmp_path):
    model = small_cnn(17)
    src = str(tmp_path / "cnn.onnx")
    onnx.save(model, src)
    ranges_csv(model, np.random.default_rng(3).standard_normal((4, 3, 16, 16)).astype(np.float32), str(tmp_path / "r.csv"))
    quantkit("quantize", src, "--stats", str(tmp_path / "r.csv"), "--truncate", "cat", "--exclude-node", "conv1", "-o", str(tmp_path / "t.onnx"))
    q = onnx.load(str(tmp_path / "t.onnx"))
    producers = {o: n for n in q.graph.node for o in n.output}
    fc = next(n for n in q.graph.node if n.name == "fc")
    conv1 = next(n for n in q.graph.node if n.name == "conv1")
    assert producers.get(fc.input[1]) is None, "fc after the cut keeps float weights"
    assert producers.get(conv1.input[1]) is None, "excluded conv1 keeps float weights"
    conv2 = next(n for n in q.graph.node if n.name == "conv2")
    assert producers[conv2.input[1]].op_type == "DequantizeLinear"
    r = quantkit("quantize", src, "--stats", str(tmp_path / "r.csv"), "--truncate", "nope", "-o", str(tmp_path / "u.onnx"), check=False)
    assert r.returncode == 2 and "QK5001" in r.stderr and "nope" in r.stderr
    r = quantkit("quantize", src, "--stats", str(tmp_path / "r.csv"), "--truncate", "y", "-o", str(tmp_path / "u.onnx"), check=False)
    assert r.returncode == 2 and "QK5002" in r.stderr
    # 'r2' does not separate the graph: the Concat after it also reads 'p1' through the skip path.
    r = quantkit("quantize", src, "--stats", str(tmp_path / "r.csv"), "--truncate", "r2", "-o", str(tmp_path / "u.onnx"), check=False)
    assert r.returncode == 2 and "QK5002" in r.stderr and "'p1'" in r.stderr and "concat" in r.stderr, r.stderr
    assert not os.path.exists(str(tmp_path / "u.onnx"))


def test_a_conv_kept_float_between_quantized_tensors_runs_float_in_onnxruntime(tmp_path):
    # conv2 reads a quantized tensor and its output (through the Clip) is quantized for the
    # Concat: ONNX Runtime 1.20+ would quantize such a Conv's float weight itself and fuse it
    # into QLinearConv, unless its input DequantizeLinear is outside its rules.
    model = small_cnn(17, rng=np.random.default_rng(4))
    src = str(tmp_path / "cnn.onnx")
    onnx.save(model, src)
    rng = np.random.default_rng(5)
    ranges_csv(model, rng.standard_normal((8, 3, 16, 16)).astype(np.float32), str(tmp_path / "r.csv"))
    out = str(tmp_path / "k.onnx")
    quantkit("quantize", src, "--stats", str(tmp_path / "r.csv"), "--exclude-node", "conv2", "-o", out)
    q = onnx.load(out)
    onnx.checker.check_model(q)
    producers = {o: n for n in q.graph.node for o in n.output}
    conv2 = next(n for n in q.graph.node if n.name == "conv2")
    assert producers.get(conv2.input[1]) is None, "excluded conv2 keeps its float weight"
    dq = producers[conv2.input[0]]
    assert dq.op_type == "DequantizeLinear" and producers[dq.input[0]].op_type == "QuantizeLinear"
    ops = optimized_ops(out, tmp_path)
    assert ops.count("QLinearConv") == 1 and ops.count("Conv") + ops.count("FusedConv") == 1, ops
    # ONNX Runtime's optimized run equals the graph run literally (float conv2).
    x = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    literal = ort.SessionOptions()
    literal.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    a = ort.InferenceSession(out, literal, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    b = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.abs(a - b).max() < 1e-3 * np.abs(a).max(), np.abs(a - b).max()
    # Below opset 13 DequantizeLinear has no axis: ONNX Runtime's com.microsoft one does.
    onnx.save(small_cnn(11, rng=np.random.default_rng(4)), str(tmp_path / "cnn11.onnx"))
    out11 = str(tmp_path / "k11.onnx")
    quantkit("quantize", str(tmp_path / "cnn11.onnx"), "--stats", str(tmp_path / "r.csv"), "--exclude-node", "conv2", "-o", out11)
    q11 = onnx.load(out11)
    onnx.checker.check_model(q11)
    producers = {o: n for n in q11.graph.node for o in n.output}
    conv2 = next(n for n in q11.graph.node if n.name == "conv2")
    assert producers[conv2.input[0]].domain == "com.microsoft"
    a = ort.InferenceSession(out11, literal, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    b = ort.InferenceSession(out11, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.abs(a - b).max() < 1e-3 * np.abs(a).max(), np.abs(a - b).max()
    # A statistics file without data: the model is written and the analysis skipped, not an error
    # (data options alone, like --batch, configure no source).
    r = quantkit("quantize", src, "--stats", str(tmp_path / "r.csv"), "--batch", "2", "-o", str(tmp_path / "s.onnx"))
    assert "analysis   skipped" in r.stdout and os.path.exists(str(tmp_path / "s.onnx")), r.stdout + r.stderr


def small_ffn_block(rng=np.random.default_rng(3)):
    """x[N,6,16] ─ LayerNorm ─ ln ─┬─ MatMul(W1) ─ h ─ Erf ─ e ─ MatMul(W2) ─ d ─┐
                                  └──────────────────────────────────────── Add ─ r ─ LayerNorm ─ y
    A transformer's FFN with its residual: LayerNorm, Erf and the residual Add run float."""
    inits = [numpy_helper.from_array(np.ones(16, np.float32), "g"), numpy_helper.from_array(np.zeros(16, np.float32), "b"),
             numpy_helper.from_array((rng.standard_normal((16, 32)) * 0.3).astype(np.float32), "W1"),
             numpy_helper.from_array((rng.standard_normal((32, 16)) * 0.3).astype(np.float32), "W2")]
    nodes = [
        helper.make_node("LayerNormalization", ["x", "g", "b"], ["ln"], name="ln1", axis=-1),
        helper.make_node("MatMul", ["ln", "W1"], ["h"], name="up"),
        helper.make_node("Erf", ["h"], ["e"], name="erf"),
        helper.make_node("MatMul", ["e", "W2"], ["d"], name="down"),
        helper.make_node("Add", ["d", "ln"], ["r"], name="residual"),
        helper.make_node("LayerNormalization", ["r", "g", "b"], ["y"], name="ln2", axis=-1),
    ]
    g = helper.make_graph(nodes, "ffn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6, 16])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_float_readers_read_float_and_matmul_before_float_ops_keeps_a_float_output(tmp_path):
    rng = np.random.default_rng(4)
    model = small_ffn_block()
    src = str(tmp_path / "ffn.onnx")
    onnx.save(model, src)
    ranges_csv(model, rng.standard_normal((16, 6, 16)).astype(np.float32) * 3, str(tmp_path / "r.csv"))
    quantkit("quantize", src, "--stats", str(tmp_path / "r.csv"), "--no-analysis")
    q = onnx.load(str(tmp_path / "ffn.q.onnx"))
    onnx.checker.check_model(q)
    producers = {o: n for n in q.graph.node for o in n.output}
    node = {n.name: n for n in q.graph.node}
    # The MatMuls read quantized activations and weights ...
    for name in ("up", "down"):
        assert all(producers[i].op_type == "DequantizeLinear" for i in node[name].input), name
    # ... but their outputs go straight to the float ops (no Q/DQ), and the residual Add reads the
    # float LayerNorm output itself, not its dequantized copy.
    assert node["erf"].input[0] == "h" and producers["h"].op_type == "MatMul"
    assert node["residual"].input == ["d", "ln"], list(node["residual"].input)
    assert producers["ln"].op_type == "LayerNormalization"
    # ONNX Runtime runs both MatMuls as MatMulIntegerToFloat.
    ops = optimized_ops(str(tmp_path / "ffn.q.onnx"), tmp_path)
    assert ops.count("MatMulIntegerToFloat") == 2 and "MatMul" not in ops, ops
    test = rng.standard_normal((8, 6, 16)).astype(np.float32) * 3
    f = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, {"x": test})[0]
    g = ort.InferenceSession(str(tmp_path / "ffn.q.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": test})[0]
    cos = float((f * g).sum() / np.linalg.norm(f) / np.linalg.norm(g))
    assert cos > 0.999, cos


def test_gptq_weight_rounding_lowers_the_layer_output_error(tmp_path):
    """Calibration on smooth images (neighbouring pixels correlated, as in photos):
    --weight-rounding gptq (error-compensated rounding) must give the first conv (BatchNorm folded, input exact) an
    output error E||(W - W_q) x||^2 over the calibration patches at least 20% below --weight-rounding
    nearest, while both models pass the checker and fuse the same."""
    rng = np.random.default_rng(5)
    low = rng.standard_normal((24, 3, 4, 4)).astype(np.float32)
    calib_x = np.repeat(np.repeat(low, 4, axis=2), 4, axis=3) + 0.05 * rng.standard_normal((24, 3, 16, 16)).astype(np.float32)
    model = small_cnn(17)
    src = str(tmp_path / "cnn.onnx")
    onnx.save(model, src)
    calib = tmp_path / "calib"
    calib.mkdir()
    for i, x in enumerate(calib_x):
        np.save(calib / f"{i:03d}.npy", x[None])
    # im2col patches of conv1 (3x3, pads 1) in (channel, kh, kw) order, and its BN-folded weight.
    xp = np.pad(calib_x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    patches = np.stack([xp[:, :, i:i + 16, j:j + 16] for i in range(3) for j in range(3)], 2).transpose(1, 2, 0, 3, 4).reshape(27, -1)
    w = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    folded = (w["W1"] * (w["gamma"] / np.sqrt(w["var"] + 1e-5))[:, None, None, None]).reshape(8, -1)
    err = {}
    for mode in ("gptq", "nearest"):
        out = str(tmp_path / f"{mode}.onnx")
        quantkit("quantize", src, "--input", f"x={calib}", "--batch", "8", "--weight-rounding", mode, "--no-analysis", "-o", out)
        q = onnx.load(out)
        onnx.checker.check_model(q)
        assert optimized_ops(out, tmp_path).count("QLinearConv") == 2
        params = json.load(open(str(tmp_path / f"{mode}.qparams.json")))["tensors"]
        assert params["W1_bnfolded"]["method"] == ("minmax+gptq" if mode == "gptq" else "minmax")
        qi = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
        wq = qi["W1_bnfolded_quantized"].astype(np.float32).reshape(8, -1) * qi["W1_bnfolded_scale"][:, None]
        err[mode] = float((((folded - wq) @ patches) ** 2).mean())
    assert err["gptq"] < 0.8 * err["nearest"], err


def test_gptq_and_bias_correction_with_a_statistics_file_read_the_data_or_refuse(tmp_path):
    """With --stats, ranges come from the file, but GPTQ and bias correction still need the data:
    given --input too they run on it (the record says so); without it the command fails with
    QK7007 instead of silently rounding to nearest."""
    rng = np.random.default_rng(11)
    src = str(tmp_path / "cnn.onnx")
    onnx.save(small_cnn(17), src)
    calib = npy_folder(tmp_path / "calib", [rng.standard_normal((1, 3, 16, 16)).astype(np.float32) for _ in range(16)])
    stats = str(tmp_path / "stats.json")
    quantkit("calibrate", src, "--input", f"x={calib}", "--stats-out", stats, "--quiet")
    out = str(tmp_path / "g.onnx")
    quantkit("quantize", src, "--stats", stats, "--input", f"x={calib}", "--weight-rounding", "gptq", "--bias-correction", "all",
             "--no-analysis", "--quiet", "-o", out)
    params = json.load(open(str(tmp_path / "g.qparams.json")))["tensors"]
    assert params["W1_bnfolded"]["method"] == "minmax+gptq"
    assert params["conv1_bias_bnfolded"]["method"] == "s_input*s_weight+bias_correction"
    for flag in (["--weight-rounding", "gptq"], ["--bias-correction", "all"]):
        r = quantkit("quantize", src, "--stats", stats, *flag, "--quiet", "-o", str(tmp_path / "n.onnx"), check=False)
        assert r.returncode == 2 and "QK7007" in r.stderr and flag[0] in r.stderr, r.stderr
        assert not os.path.exists(str(tmp_path / "n.onnx"))


def test_subgraph_settings_bits_method_and_float(tmp_path):
    """--subgraph IN:OUT:SETTING (XQuant custom_setting) for the region conv2 between p1 and c2:
    bits=16 gives its input and output uint16 parameters (com.microsoft Q/DQ below opset 21)
    and so do the tensors sharing one scale with them (r1 through MaxPool, cat through Concat),
    with a warning naming them; method=minmax changes the region's range method only; float
    keeps conv2's weights float. Every model passes onnx.checker and runs in ONNX Runtime."""
    model = small_cnn(17)
    src = str(tmp_path / "cnn.onnx")
    onnx.save(model, src)
    x = np.random.default_rng(8).standard_normal((16, 3, 16, 16)).astype(np.float32)
    np.save(str(tmp_path / "x.npy"), x)
    f = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    def quantize(tag, *extra):
        out = str(tmp_path / f"{tag}.onnx")
        r = quantkit("quantize", src, "--input", f"x={tmp_path / 'x.npy'}", "--batch", "8", "-o", out, "--no-analysis", *extra)
        q = onnx.load(out)
        onnx.checker.check_model(q)
        y = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        assert float((f * y).sum() / np.linalg.norm(f) / np.linalg.norm(y)) > 0.99, tag
        return r, q, json.load(open(str(tmp_path / f"{tag}.qparams.json")))["tensors"]

    _, _, base = quantize("base")
    r, q, p16 = quantize("b16", "--subgraph", "p1:c2:bits=16")
    assert {t: p16[t]["dtype"] for t in ("p1", "r2", "r1", "cat", "x", "gap")} == {
        "p1": "uint16", "r2": "uint16", "r1": "uint16", "cat": "uint16", "x": "uint8", "gap": "uint8"}
    assert "'cat', 'r1' outside the region also get uint16" in r.stdout, r.stdout
    assert base["p1"]["scale"][0] / p16["p1"]["scale"][0] > 200  # 65,535 steps instead of 255
    q_of_p1 = next(n for n in q.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "p1")
    assert q_of_p1.domain == "com.microsoft"

    _, _, pm = quantize("minmax", "--subgraph", "p1:c2:method=minmax")
    assert pm["p1"]["method"] == "minmax" and pm["r2"]["method"] == "minmax"
    assert pm["x"]["method"] == base["x"]["method"] != "minmax"

    _, q, _ = quantize("float", "--subgraph", "p1:c2:float")
    producers = {o: n for n in q.graph.node for o in n.output}
    conv2 = next(n for n in q.graph.node if n.name == "conv2")
    assert conv2.input[1] not in producers and conv2.input[1] in {t.name for t in q.graph.initializer}
    conv1 = next(n for n in q.graph.node if n.name == "conv1")
    assert producers[conv1.input[1]].op_type == "DequantizeLinear"


def test_report_advice_for_16_bit_is_a_working_subgraph_setting(tmp_path):
    """The report's "what to try" for a marked op names its own region; that setting runs and
    gives the op's input 16-bit parameters."""
    src = str(tmp_path / "cnn.onnx")
    onnx.save(small_cnn(17), src)
    np.save(str(tmp_path / "x.npy"), np.random.default_rng(9).standard_normal((8, 3, 16, 16)).astype(np.float32))
    # A tiny SNR threshold marks every op.
    quantkit("quantize", src, "--input", f"x={tmp_path / 'x.npy'}", "--batch", "8", "--snr-warning", "1e-9", "--quiet")
    rep = json.load(open(str(tmp_path / "cnn.report.json")))
    conv2 = next(l for l in rep["layers"] if l["node"] == "conv2")
    setting = next(a for a in conv2["advice"] if "--subgraph" in a).split("--subgraph ")[1].rstrip(")")
    assert setting == "p1:r2:bits=16", conv2["advice"]
    quantkit("quantize", src, "--input", f"x={tmp_path / 'x.npy'}", "--batch", "8", "--no-analysis", "-o", str(tmp_path / "a.onnx"),
             "--subgraph", setting)
    assert json.load(open(str(tmp_path / "a.qparams.json")))["tensors"]["p1"]["dtype"] == "uint16"


def test_a_range_method_that_clips_far_is_warned_about(tmp_path):
    """KL (TensorRT's entropy search) clips a Relu6-style output with a saturation spike far below
    its maximum; quantize says so first, naming the tensors, and the default method does not."""
    src = str(tmp_path / "cnn.onnx")
    onnx.save(small_cnn(17, np.random.default_rng(0)), src)
    rng = np.random.default_rng(0)
    x = ((rng.integers(0, 256, (16, 3, 16, 16)) - 127) / 128).astype(np.float32)
    x[:, :, :4] = 1.0  # a saturated image region
    np.save(str(tmp_path / "x.npy"), x)
    args = ("quantize", src, "--input", f"x={tmp_path / 'x.npy'}", "--batch", "8", "-o", str(tmp_path / "q.onnx"), "--no-analysis")
    r = quantkit(*args, "--method", "kl")
    first = next(l for l in r.stdout.splitlines() if l.startswith("warning"))
    assert "clip more than 1% of their calibration values far" in first and "'r2'" in first and "(kl)" in first, r.stdout
    assert "--method mse" in first
    record = json.load(open(str(tmp_path / "q.qparams.json")))
    assert any("'r2'" in w for w in record["warnings"])
    assert "clip more than" not in quantkit(*args).stdout


def test_bias_correction_removes_the_mean_shift_of_weight_rounding(tmp_path):
    """x with a large mean through Conv → Gemm: rounding the weights shifts each output channel by
    (W_q − W)·E[x]. With --bias-correction the corrected biases (recorded as such) remove that
    shift: the mean output error over the data drops several-fold, measured in ONNX Runtime."""
    rng = np.random.default_rng(11)
    inits = [numpy_helper.from_array((rng.standard_normal((16, 8, 3, 3)) * 0.2).astype(np.float32), "W1"),
             numpy_helper.from_array(np.zeros(16, np.float32), "B1"),
             numpy_helper.from_array((rng.standard_normal((10, 16)) * 0.2).astype(np.float32), "W2"),
             numpy_helper.from_array(np.zeros(10, np.float32), "B2")]
    nodes = [helper.make_node("Conv", ["x", "W1", "B1"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "W2", "B2"], ["y"], name="fc", transB=1)]
    g = helper.make_graph(nodes, "shift", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 12, 12])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    src = str(tmp_path / "m.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), src)
    x = (rng.standard_normal((32, 8, 12, 12)) * 0.3 + 3.0).astype(np.float32)  # mean 3: a large E[x]
    np.save(str(tmp_path / "x.npy"), x)
    f = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    shift = {}
    for tag, extra in (("plain", []), ("corrected", ["--bias-correction", "all"])):
        out = str(tmp_path / f"{tag}.onnx")
        quantkit("quantize", src, "--input", f"x={tmp_path / 'x.npy'}", "--batch", "8", "-o", out, "--no-analysis", *extra)
        y = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        shift[tag] = float(np.abs((y - f).mean(0)).mean())
        methods = {t: p["method"] for t, p in json.load(open(str(tmp_path / f"{tag}.qparams.json")))["tensors"].items()}
        assert (methods["B1"] == "s_input*s_weight+bias_correction") == (tag == "corrected"), methods
        assert (methods["B2"] == "s_input*s_weight+bias_correction") == (tag == "corrected"), methods
    assert shift["corrected"] < shift["plain"] / 3, shift


def test_default_bias_correction_covers_depthwise_convs_only(tmp_path):
    """The default corrects the biases of grouped (depthwise) Convs, whose 9 weights per channel
    shift its mean output by (W_q − W)·E[x] without averaging out, and leaves the Gemm's alone;
    `--bias-correction off` corrects none. With a statistics file and no data it is skipped with
    a warning (the model is still written)."""
    rng = np.random.default_rng(13)
    inits = [numpy_helper.from_array((rng.standard_normal((8, 1, 3, 3)) * 0.3).astype(np.float32), "Wd"),
             numpy_helper.from_array(np.zeros(8, np.float32), "Bd"),
             numpy_helper.from_array((rng.standard_normal((10, 8)) * 0.2).astype(np.float32), "W2"),
             numpy_helper.from_array(np.zeros(10, np.float32), "B2")]
    nodes = [helper.make_node("Conv", ["x", "Wd", "Bd"], ["c"], name="dw", pads=[1, 1, 1, 1], group=8),
             helper.make_node("GlobalAveragePool", ["c"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "W2", "B2"], ["y"], name="fc", transB=1)]
    g = helper.make_graph(nodes, "dw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 12, 12])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10]),
                           helper.make_tensor_value_info("c", TensorProto.FLOAT, None)], inits)
    src = str(tmp_path / "m.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), src)
    x = (rng.standard_normal((32, 8, 12, 12)) * 0.3 + 3.0).astype(np.float32)
    np.save(str(tmp_path / "x.npy"), x)
    fc = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(["c"], {"x": x})[0]
    shift = {}
    for tag, extra, corrected in (("off", ["--bias-correction", "off"], set()), ("default", [], {"Bd"}), ("all", ["--bias-correction", "all"], {"Bd", "B2"})):
        out = str(tmp_path / f"{tag}.onnx")
        quantkit("quantize", src, "--input", f"x={tmp_path / 'x.npy'}", "--batch", "8", "-o", out, "--no-analysis", *extra)
        c = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(["c"], {"x": x})[0]
        shift[tag] = float(np.abs((c - fc).mean((0, 2, 3))).mean())
        methods = {t: p["method"] for t, p in json.load(open(str(tmp_path / f"{tag}.qparams.json")))["tensors"].items()}
        assert {b for b in ("Bd", "B2") if methods[b].endswith("+bias_correction")} == corrected, (tag, methods)
    assert shift["default"] < shift["off"] / 3, shift
    # A statistics file alone: the model is written, uncorrected, with a warning.
    stats = str(tmp_path / "stats.json")
    quantkit("calibrate", src, "--input", f"x={tmp_path / 'x.npy'}", "--stats-out", stats, "--quiet")
    r = quantkit("quantize", src, "--stats", stats, "-o", str(tmp_path / "s.onnx"), "--no-analysis")
    assert "bias correction of the grouped (depthwise) Convs skipped" in r.stdout, r.stdout
    assert not json.load(open(str(tmp_path / "s.qparams.json")))["tensors"]["Bd"]["method"].endswith("+bias_correction")


def test_channels_with_negligible_weights_are_summarised_in_one_warning(tmp_path):
    """Two Convs, each with one channel whose weights are ~0 and whose bias is large (what
    BatchNorm folding leaves of a switched-off channel): one summary warning for both, the bias
    stays exact, and the model still matches float."""
    rng = np.random.default_rng(12)
    w1 = (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32)
    w1[2] = 1e-12
    w2 = (rng.standard_normal((4, 4, 1, 1)) * 0.3).astype(np.float32)
    w2[0] = -1e-12
    b = np.array([0.1, -0.2, 5.0, 0.3], np.float32)
    inits = [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(b, "B1"), numpy_helper.from_array(w2, "W2"),
             numpy_helper.from_array(b[::-1].copy(), "B2")]
    nodes = [helper.make_node("Conv", ["x", "W1", "B1"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c", "W2", "B2"], ["y"], name="conv2")]
    g = helper.make_graph(nodes, "dead", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    src = str(tmp_path / "m.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), src)
    x = rng.standard_normal((8, 3, 8, 8)).astype(np.float32)
    np.save(str(tmp_path / "x.npy"), x)
    r = quantkit("quantize", src, "--input", f"x={tmp_path / 'x.npy'}", "--batch", "8", "-o", str(tmp_path / "q.onnx"), "--no-analysis")
    lines = [l for l in r.stdout.splitlines() if "negligible weights" in l]
    assert len(lines) == 1 and "2 channel(s) in 2 node(s)" in lines[0] and "'conv1' 1" in lines[0], r.stdout
    f = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    q = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert float((f * q).sum() / np.linalg.norm(f) / np.linalg.norm(q)) > 0.99


def test_exclusions_that_match_no_node_are_named(tmp_path):
    """A misspelt --exclude-node (or one preparation folded away) and an absent op type are named
    in a warning; the real one still keeps its Conv float."""
    model = small_cnn(17, rng=np.random.default_rng(6))
    src = str(tmp_path / "cnn.onnx")
    onnx.save(model, src)
    ranges_csv(model, np.random.default_rng(7).standard_normal((8, 3, 16, 16)).astype(np.float32), str(tmp_path / "r.csv"))
    out = str(tmp_path / "x.onnx")
    r = quantkit("quantize", src, "--stats", str(tmp_path / "r.csv"), "--exclude-node", "conv2", "--exclude-node", "conv_2",
                 "--exclude-op-type", "LSTM", "-o", out)
    assert "exclude_nodes: 'conv_2' match no node" in r.stdout, r.stdout
    assert "exclude_op_types: 'LSTM' match no node" in r.stdout, r.stdout
    producers = {o: n for n in onnx.load(out).graph.node for o in n.output}
    conv2 = next(n for n in onnx.load(out).graph.node if n.name == "conv2")
    assert producers.get(conv2.input[1]) is None


def test_hardswish_gate_stays_float_and_se_gate_is_quantized(tmp_path):
    """x * HardSigmoid(x) (torch's nn.Hardswish below opset 14) is hard-swish: its gate stays
    float even with a range for it, so ONNX Runtime computes DQ(x) -> HardSigmoid -> Mul -> Q.
    A squeeze-excitation gate, y * HardSigmoid(pool(y)), multiplies another tensor and stays
    quantized."""
    rng = np.random.default_rng(8)
    inits = [numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.5).astype(np.float32), "w1"),
             numpy_helper.from_array((rng.standard_normal((8, 8, 1, 1)) * 0.5).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("HardSigmoid", ["c1"], ["gate"], name="hs", alpha=1 / 6, beta=0.5),
             helper.make_node("Mul", ["c1", "gate"], ["h"], name="hswish"),
             helper.make_node("GlobalAveragePool", ["h"], ["p"], name="pool"),
             helper.make_node("Conv", ["p", "w2"], ["e"], name="conv2"),
             helper.make_node("HardSigmoid", ["e"], ["se"], name="se_gate", alpha=0.2, beta=0.5),
             helper.make_node("Mul", ["h", "se"], ["y"], name="se_mul")]
    g = helper.make_graph(nodes, "hswish", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    src = str(tmp_path / "hs.onnx")
    onnx.save(model, src)
    ranges_csv(model, rng.standard_normal((8, 3, 8, 8)).astype(np.float32), str(tmp_path / "r.csv"))
    out = str(tmp_path / "hs.q.onnx")
    quantkit("quantize", src, "--stats", str(tmp_path / "r.csv"), "-o", out)
    q = onnx.load(out)
    quantized = {n.input[0] for n in q.graph.node if n.op_type == "QuantizeLinear"}
    assert "gate" not in quantized and "h" in quantized and "se" in quantized, quantized
    mul = next(n for n in q.graph.node if n.name == "hswish")
    assert "gate" in mul.input


def test_a_detector_with_non_max_suppression_inside_calibrates_and_quantizes(tmp_path):
    """Conv heads -> boxes [1, 64, 4] and scores [1, 2, 64] -> NonMaxSuppression -> indices: the
    executor runs NMS during calibration (QK3001 before), the Convs are quantized, and ONNX
    Runtime's selection on the quantized model keeps the float model's boxes."""
    rng = np.random.default_rng(3)
    f = lambda name, a: numpy_helper.from_array(np.asarray(a, np.float32), name)
    i64 = lambda name, a: numpy_helper.from_array(np.asarray(a, np.int64), name)
    inits = [f("Wb", rng.standard_normal((4, 3, 3, 3)) * 0.5), f("Ws", rng.standard_normal((2, 3, 3, 3)) * 0.5),
             i64("bshape", [1, 4, 64]), i64("sshape", [1, 2, 64]), i64("maxb", [5]), f("iou", [0.5]), f("sth", [0.3])]
    nodes = [
        helper.make_node("Conv", ["x", "Wb"], ["cb"], name="box_head", pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["cb", "bshape"], ["b3"], name="rb"),
        helper.make_node("Transpose", ["b3"], ["boxes"], name="tb", perm=[0, 2, 1]),
        helper.make_node("Conv", ["x", "Ws"], ["cs"], name="score_head", pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["cs", "sshape"], ["s3"], name="rs"),
        helper.make_node("Sigmoid", ["s3"], ["scores"], name="sig"),
        helper.make_node("NonMaxSuppression", ["boxes", "scores", "maxb", "iou", "sth"], ["sel"], name="nms", center_point_box=1),
    ]
    g = helper.make_graph(nodes, "det", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("sel", TensorProto.INT64, [None, 3]),
                           helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2, 64])], inits)
    src = str(tmp_path / "det.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), src)
    xs = [rng.standard_normal((1, 3, 8, 8)).astype(np.float32) for _ in range(8)]
    calib = npy_folder(tmp_path / "calib", xs)
    q = str(tmp_path / "q.onnx")
    quantkit("quantize", src, "--input", f"x={calib}", "-o", q, "--no-analysis")
    onnx.checker.check_model(onnx.load(q))
    params = json.load(open(str(tmp_path / "q.qparams.json")))["tensors"]
    assert "Wb" in params and "Ws" in params
    fs = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    qs = ort.InferenceSession(q, providers=["CPUExecutionProvider"])
    same = 0
    for x in xs:
        a, b = fs.run(["sel"], {"x": x})[0], qs.run(["sel"], {"x": x})[0]
        assert a.shape[1] == 3 and len(a) > 0
        same += len({tuple(r) for r in a} & {tuple(r) for r in b}) / len(a)
    assert same / len(xs) > 0.8, same / len(xs)
