"""Honest verification (issue #20): a summary that never calls a broken model healthy.

- A YOLO-style head (one Concat joins 0-320 pixel boxes and 0-1 sigmoid scores into the graph
  output) keeps its scores with defaults: the Concat's inputs keep their own scales and the
  Concat runs float. With one shared scale (--concat-split-ratio 0, what hardware that cannot
  requantize needs) every score collapses: QK5003 heads the warnings, and the analysis, whose
  whole-output cosine stays ~1, names the score slice (QK6006) and says NOT OK.
- The `integer` line counts the Conv/MatMul/Gemm ONNX Runtime runs as integer kernels, and
  QK5004 says when most of the model will run float.
"""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from conftest import npy_folder, optimized_ops, quantkit

INTEGER_OPS = {"QLinearConv", "QLinearMatMul", "QGemm", "MatMulIntegerToFloat", "ConvInteger", "MatMulInteger", "QLinearConvTranspose"}


def yolo_head(tmp_path):
    """Conv features -> boxes = sigmoid(4 channels) * 320, scores = sigmoid(4 channels);
    y = Concat(boxes, scores) on axis 1: [1, 8, 256], as YOLOv8's output0."""
    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 256])
    i64 = lambda v, n: numpy_helper.from_array(np.array(v, np.int64), n)
    nodes = [helper.make_node("Conv", ["x", "w"], ["f"], pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["f", "shape"], ["fr"]),
             helper.make_node("Slice", ["fr", "s0", "e0", "ax"], ["braw"]),
             helper.make_node("Slice", ["fr", "e0", "e1", "ax"], ["craw"]),
             helper.make_node("Sigmoid", ["braw"], ["bs"]),
             helper.make_node("Mul", ["bs", "k"], ["boxes"]),
             helper.make_node("Sigmoid", ["craw"], ["scores"]),
             helper.make_node("Concat", ["boxes", "scores"], ["y"], axis=1, name="head_concat")]
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w"), i64([1, 8, 256], "shape"),
             i64([0], "s0"), i64([4], "e0"), i64([8], "e1"), i64([1], "ax"), numpy_helper.from_array(np.array(320.0, np.float32), "k")]
    path = str(tmp_path / "head.onnx")
    onnx.save(helper.make_model(helper.make_graph(nodes, "head", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    data = npy_folder(tmp_path / "d", [rng.uniform(0, 1, (1, 3, 16, 16)).astype(np.float32) for i in range(8)])
    return path, data


def lines(r, prefix):
    return [l for l in r.stdout.splitlines() if l.startswith(prefix)]


def score_error(float_path, quant_path, data):
    x = np.load(data / "000.npy")
    f = ort.InferenceSession(float_path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    q = ort.InferenceSession(quant_path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    return float(np.abs(q[:, 4:] - f[:, 4:]).max())


def test_yolo_head_keeps_its_scores_with_defaults(tmp_path):
    path, data = yolo_head(tmp_path)
    out = str(tmp_path / "q.onnx")
    r = quantkit("quantize", path, "--input", f"x={data}", "-o", out)
    warnings = lines(r, "warning")
    assert not any("QK5003" in w for w in warnings), r.stdout
    assert any("Concat 'head_concat' joins inputs whose ranges differ" in w and "runs float" in w for w in warnings), r.stdout
    assert lines(r, "verdict")[0].startswith("verdict    OK"), r.stdout
    # The scores' step is 1/255 of [0, 1] (not 320/255): ONNX Runtime's scores stay within a few steps.
    assert score_error(path, out, data) < 0.02
    # The output's worst slice is the score channels, measured and fine.
    assert "worst slice axis 1 channels 4-7" in lines(r, "output")[0], r.stdout


def test_one_shared_concat_scale_collapses_the_scores_and_the_summary_says_so(tmp_path):
    path, data = yolo_head(tmp_path)
    out = str(tmp_path / "q.onnx")
    # The plain recipe (no repair), so that what the summary says about it can be checked.
    r = quantkit("quantize", path, "--input", f"x={data}", "-o", out, "--concat-split-ratio", "0", "--target", "none")
    warnings = lines(r, "warning")
    assert warnings and warnings[0].startswith("warning    QK5003 error: "), r.stdout
    assert "'scores'" in warnings[0] and "'boxes'" not in warnings[0]
    # The whole output looks healthy; its score slice does not.
    out_line = lines(r, "output")[0]
    cosine = float(out_line.split("cosine ")[1].split(";")[0].split(",")[0])
    assert cosine > 0.999, out_line
    findings = lines(r, "finding")
    assert len(findings) == 1 and "QK6006 error: output 'y'" in findings[0] and "axis 1 channels 4-7" in findings[0], r.stdout
    assert lines(r, "verdict")[0].startswith("verdict    NOT OK: 2 error-level finding(s) (QK5003, QK6006)"), r.stdout
    assert score_error(path, out, data) > 0.3
    report = open(str(tmp_path / "q.report.md")).read()
    assert report.index("## Findings") < report.index("## Model outputs")
    assert "QK5003 error" in report and "QK6006 error" in report
    html = open(str(tmp_path / "q.report.html")).read()
    assert "<div class=finding><b>QK5003 error" in html


def test_concat_split_ratio_is_checked(tmp_path):
    path, data = yolo_head(tmp_path)
    r = quantkit("quantize", path, "--input", f"x={data}", "--concat-split-ratio", "0.5", check=False)
    assert r.returncode != 0 and "QK7004" in r.stderr and "--concat-split-ratio" in r.stderr


def three_matmuls(tmp_path):
    """x -> MatMul -> Relu -> MatMul -> Relu -> MatMul -> y (constant weights)."""
    rng = np.random.default_rng(1)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 16])
    nodes, inits, prev = [], [], "x"
    for k in range(3):
        inits.append(numpy_helper.from_array(rng.normal(0, 0.3, (16, 16)).astype(np.float32), f"w{k}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{k}"], [f"m{k}"], name=f"mm{k}"))
        if k < 2:
            nodes.append(helper.make_node("Relu", [f"m{k}"], [f"r{k}"]))
            prev = f"r{k}"
    nodes[-1].output[0] = "y"
    path = str(tmp_path / "mlp.onnx")
    onnx.save(helper.make_model(helper.make_graph(nodes, "mlp", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    data = npy_folder(tmp_path / "d", [rng.normal(0, 1, (4, 16)).astype(np.float32) for i in range(4)])
    return path, data


def integer_line(r):
    line = lines(r, "integer")[0]
    words = line.split()
    return int(words[1]), int(words[3]), line


def test_integer_count_matches_onnx_runtime_and_mostly_float_is_qk5004(tmp_path):
    path, data = three_matmuls(tmp_path)
    out = str(tmp_path / "q.onnx")
    r = quantkit("quantize", path, "--input", f"x={data}", "-o", out, "--no-analysis")
    k, n, _ = integer_line(r)
    assert (k, n) == (3, 3)
    assert sum(o in INTEGER_OPS for o in optimized_ops(out, tmp_path)) == 3
    assert not any("QK5004" in w for w in lines(r, "warning"))
    # Two of three kept float: the summary says 1 of 3 and QK5004 heads the warnings.
    out2 = str(tmp_path / "q2.onnx")
    r = quantkit("quantize", path, "--input", f"x={data}", "-o", out2, "--no-analysis", "--exclude-node", "mm0", "--exclude-node", "mm1")
    k, n, line = integer_line(r)
    assert (k, n) == (1, 3), line
    assert "float: 'mm0', 'mm1' (kept float: no quantized input)" in line
    os.makedirs(tmp_path / "o2", exist_ok=True)
    assert sum(o in INTEGER_OPS for o in optimized_ops(out2, tmp_path / "o2")) == 1
    warnings = lines(r, "warning")
    assert warnings[0].startswith("warning    QK5004 error: only 1 of 3 Conv/MatMul/Gemm"), r.stdout


def test_unnamed_nodes_are_named_after_their_outputs_and_bias_correction_runs(tmp_path):
    # Two depthwise Convs without names (CenterFace's export names no node): depthwise bias
    # correction keyed them by name and crashed; preparation names them Conv_<output>.
    rng = np.random.default_rng(3)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["a"], group=4, pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["ar"]),
             helper.make_node("Conv", ["ar", "w2", "b2"], ["c"], pads=[0, 0, 0, 0]),
             helper.make_node("Conv", ["c", "w3", "b3"], ["y"], group=8, pads=[1, 1, 1, 1])]
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, s).astype(np.float32), n) for n, s in
             [("w1", (4, 1, 3, 3)), ("b1", (4,)), ("w2", (8, 4, 1, 1)), ("b2", (8,)), ("w3", (8, 1, 3, 3)), ("b3", (8,))]]
    path = str(tmp_path / "unnamed.onnx")
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    data = npy_folder(tmp_path / "d", [rng.normal(0, 1, (1, 4, 8, 8)).astype(np.float32) for i in range(4)])
    out = str(tmp_path / "q.onnx")
    r = quantkit("quantize", path, "--input", f"x={data}", "-o", out, "--no-analysis")
    assert "4 unnamed or same-named nodes named (OPTYPE_OUTPUT)" in r.stdout
    q = onnx.load(out)
    convs = sorted(n.name for n in q.graph.node if n.op_type == "Conv")
    assert convs == ["Conv_a", "Conv_c", "Conv_y"]
    # The names work as any other: an exclusion keeps that Conv float.
    r = quantkit("quantize", path, "--input", f"x={data}", "-o", out, "--no-analysis", "--exclude-node", "Conv_c")
    k, n, line = integer_line(r)
    assert (k, n) == (2, 3) and "'Conv_c'" in line, line


def test_a_constant_zero_tensor_is_not_reported_clipped(tmp_path):
    # YOLOv8 exports add ConstantOfShape zeros into their anchor grids: range [0, 0] has nothing
    # to clip, and the clipping warning said 100%.
    # A symbolic batch keeps the zeros computed at run time (not folded into a constant).
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("ConstantOfShape", ["s"], ["z"], value=numpy_helper.from_array(np.array([0.0], np.float32))),
             helper.make_node("Add", ["x", "z"], ["a"]), helper.make_node("MatMul", ["a", "w"], ["y"])]
    w = numpy_helper.from_array(np.random.default_rng(0).normal(0, 1, (16, 16)).astype(np.float32), "w")
    path = str(tmp_path / "z.onnx")
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w]), opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    data = npy_folder(tmp_path / "d", [np.random.default_rng(i).normal(0, 1, (1, 16)).astype(np.float32) for i in range(4)])
    for method in ("mse", "default"):
        r = quantkit("quantize", path, "--input", f"x={data}", "-o", str(tmp_path / "q.onnx"), "--no-analysis", "--method", method)
        assert "clip more than 1%" not in r.stdout, r.stdout
        assert json.load(open(tmp_path / "q.qparams.json"))["tensors"]["z"]["threshold"] == [0, 0]


def test_a_softmax_written_out_as_exp_over_its_sum_gets_top1_agreement(tmp_path):
    # Magika's export computes softmax as Exp(x) / ReduceSum(Exp(x)): its output is class scores.
    rng = np.random.default_rng(5)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["logits"]), helper.make_node("Exp", ["logits"], ["e"]),
             helper.make_node("ReduceSum", ["e", "ax"], ["s"], keepdims=1), helper.make_node("Div", ["e", "s"], ["probs"])]
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (16, 10)).astype(np.float32), "w"), numpy_helper.from_array(np.array([1], np.int64), "ax")]
    path = str(tmp_path / "sm.onnx")
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    data = npy_folder(tmp_path / "d", [rng.normal(0, 1, (4, 16)).astype(np.float32) for i in range(8)])
    r = quantkit("quantize", path, "--input", f"x={data}", "-o", str(tmp_path / "q.onnx"))
    assert "top-1 agreement" in lines(r, "output")[0], r.stdout


def test_a_matmul_bias_add_becomes_qgemm_unless_the_add_is_kept_float(tmp_path):
    # ONNX Runtime fuses a float-output MatMul and the Add of its bias into a Gemm: with a float
    # bias that Gemm runs float; QuantKit gives the bias an int32 DequantizeLinear, so it is QGemm.
    rng = np.random.default_rng(7)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"), helper.make_node("Add", ["m", "b"], ["a"], name="bias_add"),
             helper.make_node("Softmax", ["a"], ["y"])]
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (16, 8)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(0, 1, (8,)).astype(np.float32), "b")]
    path = str(tmp_path / "head.onnx")
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    data = npy_folder(tmp_path / "d", [rng.normal(0, 1, (4, 16)).astype(np.float32) for i in range(4)])
    for k, (extra, expected) in enumerate([([], 1), (["--exclude-node", "bias_add"], 0)]):
        out = str(tmp_path / f"q{k}.onnx")
        r = quantkit("quantize", path, "--input", f"x={data}", "-o", out, "--no-analysis", *extra)
        got, n, line = integer_line(r)
        os.makedirs(tmp_path / f"o{k}", exist_ok=True)
        ops = optimized_ops(out, tmp_path / f"o{k}")
        assert (got, n) == (expected, 1) and sum(o in INTEGER_OPS for o in ops) == expected, (line, ops)
    assert "fuses it with the Add of float bias 'b' into a Gemm" in line


def test_the_default_loop_repairs_collapsed_scores(tmp_path):
    """The same one-scale head with the default verify-and-repair: the loop finds the op whose
    8-bit output collapses the scores and raises it, and ONNX Runtime's scores come back."""
    path, data = yolo_head(tmp_path)
    out = str(tmp_path / "q.onnx")
    # The head has one Conv, which the repair costs: allowed with --min-integer-share 0.
    r = quantkit("quantize", path, "--input", f"x={data}", "-o", out, "--concat-split-ratio", "0", "--min-integer-share", "0")
    assert "missed; tuning" in r.stdout, r.stdout
    repaired = lines(r, "repaired")
    assert repaired and repaired[0].startswith("repaired   1 op raised to int16:"), r.stdout
    assert score_error(path, out, data) < 0.05
    # The scores are fine now; the one Conv, whose output shares the 16-bit scale, runs float in
    # ONNX Runtime, and the verdict says so (QK5004) rather than OK.
    assert "QK6006" not in lines(r, "verdict")[0] and "QK5004" in lines(r, "verdict")[0], r.stdout
