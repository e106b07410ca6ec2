"""`quantkit analyze` and `export-all-outputs`: the report's metrics equal a numpy reference on
the same tensors (dumped with export-all-outputs and `quantkit run`), a QDQ model made by ONNX
Runtime's quantize_static is analyzed, ONNX Runtime loads the all-outputs model, the Markdown
tables are well-formed and the user metric is run on both models."""
import json
import os
import re
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from conftest import npy_name, quantkit
from test_quantize_qdq import small_cnn


def metrics(r, t):
    r = r.astype(np.float64).ravel()
    t = t.astype(np.float64).ravel()
    e = t - r
    snr = (e * e).sum() / (r * r).sum()
    return {"snr": snr, "cosine": (r * t).sum() / np.sqrt((r * r).sum() * (t * t).sum()), "mse": (e * e).mean(),
            "mae": np.abs(e).mean(), "relativeEuclidean": np.sqrt(snr), "maxAbsError": np.abs(e).max()}


def item_metrics(r, t):
    """Median and largest SNR of the items (first axis) on their own."""
    r = r.astype(np.float64).reshape(len(r), -1)
    e = t.astype(np.float64).reshape(len(t), -1) - r
    snrs = (e * e).sum(1) / (r * r).sum(1)
    return {"medianItemSNR": float(np.median(snrs)), "worstItemSNR": float(snrs.max())}


def setup_pair(tmp_path, n=8):
    src = str(tmp_path / "cnn.onnx")
    onnx.save(small_cnn(17), src)
    x = np.random.default_rng(3).standard_normal((n, 3, 16, 16)).astype(np.float32)
    np.save(str(tmp_path / "x.npy"), x)
    r = quantkit("quantize", src, "--input", f"x={tmp_path / 'x.npy'}", "--batch", str(n), "--quiet")
    return src, str(tmp_path / "cnn.q.onnx"), x, r


def run_all(model, x, tmp_path, tag, *run_flags):
    out = str(tmp_path / f"{tag}.all.onnx")
    quantkit("export-all-outputs", model, "-o", out)
    d = tmp_path / f"{tag}.out"
    quantkit("run", out, "--input", f"x={tmp_path / 'x.npy'}", "--output-dir", str(d), *run_flags)
    m = onnx.load(out)
    return m, {o.name: np.load(str(d / npy_name(o.name))) for o in m.graph.output}


def check(report_metrics, ref, what):
    for k, v in ref.items():
        assert np.isclose(report_metrics[k], v, rtol=1e-5, atol=1e-12), (what, k, report_metrics[k], v)


def test_metrics_equal_numpy_reference(tmp_path):
    src, qpath, x, r = setup_pair(tmp_path)
    assert "cnn.report.md" in r.stdout and "cnn.report.html" in r.stdout
    rep = json.load(open(str(tmp_path / "cnn.report.json")))
    assert rep["samples"] == 8 and len(rep["layers"]) >= 5
    _, fo = run_all(src, x, tmp_path, "float")
    # The graphwise pass runs DequantizeLinear → Conv → QuantizeLinear as integer QLinearConv.
    qm, qo = run_all(qpath, x, tmp_path, "quant", "--integer-conv")
    # The tensor a layer is measured on is its quantized value: the DequantizeLinear output.
    q_of = {n.input[0]: n.output[0] for n in qm.graph.node if n.op_type == "QuantizeLinear"}
    dq_of = {n.input[0]: n.output[0] for n in qm.graph.node if n.op_type == "DequantizeLinear"}
    checked = 0
    for layer in rep["layers"]:
        t = layer["tensor"]
        test = qo[dq_of[q_of[t]]] if t in q_of else qo[t]
        ref = fo[t] if t in fo else fo[dq_of[q_of[t]]]  # a graph output renamed by the rewrite (y_float -> Q/DQ -> y)
        check(layer["graphwise"], metrics(ref, test) | item_metrics(ref, test), layer["node"])
        checked += 1
    assert checked == len(rep["layers"])
    out = rep["outputs"][0]
    check(out["metrics"], metrics(fo["y"], qo["y"]) | item_metrics(fo["y"], qo["y"]), "output y")
    agree = (fo["y"].argmax(1) == qo["y"].argmax(1)).mean()
    assert np.isclose(out["metrics"]["top1Agreement"], agree)
    # Layerwise error of the first op equals its graphwise error (its input is the model input).
    first = rep["layers"][0]
    check(first["layerwise"], {k: first["graphwise"][k] for k in ("snr", "cosine", "mse")}, "first layer")


def test_export_all_outputs_loads_in_onnxruntime(tmp_path):
    src, qpath, x, _ = setup_pair(tmp_path)
    for path, tag in ((src, "float"), (qpath, "quant")):
        m, ours = run_all(path, x, tmp_path, tag)
        names = [o.name for o in m.graph.output]
        src_model = onnx.load(path)
        assert sorted(names) == sorted({o for n in src_model.graph.node for o in n.output if o})
        sess = ort.InferenceSession(str(tmp_path / f"{tag}.all.onnx"), providers=["CPUExecutionProvider"])
        theirs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"x": x})))
        assert set(theirs) == set(names)
        for n in names:
            if theirs[n].dtype == np.float32:
                assert np.allclose(ours[n], theirs[n], rtol=1e-3, atol=1e-3 * max(1.0, float(np.abs(theirs[n]).max()))), n


def test_onnxruntime_quantize_static_pair(tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    src = str(tmp_path / "cnn.onnx")
    onnx.save(small_cnn(17), src)
    x = np.random.default_rng(4).standard_normal((8, 3, 16, 16)).astype(np.float32)
    np.save(str(tmp_path / "x.npy"), x)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"x": x[i:i + 1]} for i in range(8)])

        def get_next(self):
            return next(self.items, None)

    ort_q = str(tmp_path / "cnn.ort.onnx")
    quantize_static(src, ort_q, Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    r = quantkit("analyze", src, ort_q, "--input", f"x={tmp_path / 'x.npy'}", "--batch", "4", "--report", str(tmp_path / "ortq"), "--quiet")
    rep = json.load(open(str(tmp_path / "ortq.json")))
    ops = {l["opType"] for l in rep["layers"]}
    assert {"Conv", "Gemm"} <= ops, ops
    assert rep["model"]["quantizedActivations"] >= 5
    assert all(l["layerwise"] is not None for l in rep["layers"])
    assert rep["outputs"][0]["metrics"]["cosine"] > 0.99, r.stdout
    # The simulation in QuantKit's executor agrees with ONNX Runtime on the same QDQ model.
    quantkit("run", ort_q, "--input", f"x={tmp_path / 'x.npy'}", "--output-dir", str(tmp_path / "sim"))
    ours = np.load(str(tmp_path / "sim" / "y.npy"))
    theirs = ort.InferenceSession(ort_q, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert metrics(theirs, ours)["cosine"] > 0.999


def table_blocks(md):
    blocks, cur = [], []
    for line in md.splitlines():
        if line.startswith("|"):
            cur.append(line)
        elif cur:
            blocks.append(cur)
            cur = []
    if cur:
        blocks.append(cur)
    return blocks


def cells(line):
    return len(re.split(r"(?<!\\)\|", line.strip())) - 2


def test_markdown_tables_are_well_formed(tmp_path):
    setup_pair(tmp_path)
    md = open(str(tmp_path / "cnn.report.md")).read()
    blocks = table_blocks(md)
    assert len(blocks) == 2
    for b in blocks:
        assert re.fullmatch(r"\|(---\|)+", b[1]), b[1]
        n = cells(b[0])
        assert all(cells(l) == n for l in b), [l for l in b if cells(l) != n]
        assert all(l.endswith("|") for l in b)
    rep = json.load(open(str(tmp_path / "cnn.report.json")))
    assert len(blocks[1]) == 2 + len(rep["layers"])


def test_eval_command_runs_on_both_models(tmp_path):
    src, qpath, x, _ = setup_pair(tmp_path)
    script = tmp_path / "ev.py"
    script.write_text(
        "import sys, numpy as np, onnxruntime as ort\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        "y = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider']).run(None, {'x': x})[0]\n"
        "print('noise'); print(f'score: {float(np.abs(y).mean()):.6f}')\n")
    r = quantkit("analyze", src, qpath, "--input", f"x={tmp_path / 'x.npy'}", "--eval-command", f"{sys.executable} {script} {{model}}",
                 "--report", str(tmp_path / "ev"), "--quiet")
    ev = json.load(open(str(tmp_path / "ev.json")))["evaluations"]
    assert len(ev) == 1, r.stdout
    sess = lambda p: float(np.abs(ort.InferenceSession(p, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]).mean())
    f, q = sess(src), sess(qpath)
    assert np.isclose(ev[0]["float"], f, atol=2e-6) and np.isclose(ev[0]["quantized"], q, atol=2e-6)
    assert np.isclose(ev[0]["quantizationLoss"], abs(q - f) / abs(f) * 100, rtol=1e-3, atol=1e-4)
    bad = quantkit("analyze", src, qpath, "--input", f"x={tmp_path / 'x.npy'}", "--eval-command", "echo no-number",
                   "--report", str(tmp_path / "bad"), "--quiet", check=False)
    assert bad.returncode == 2 and "QK6004" in bad.stderr
    assert not os.path.exists(str(tmp_path / "bad.json"))


def test_analysis_errors_have_codes(tmp_path):
    """QK6001 (output counts differ), QK6003 (eval command fails), QK6005 (bad labels file)."""
    src, qpath, x, _ = setup_pair(tmp_path)
    data = ["--input", f"x={tmp_path / 'x.npy'}", "--quiet"]
    # A "quantized" model with one output more than the float model.
    m = onnx.load(qpath)
    first = m.graph.output[0].name
    m.graph.node.append(helper.make_node("Identity", [first], ["extra"], name="extra"))
    m.graph.output.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, None))
    two = str(tmp_path / "two.onnx")
    onnx.save(m, two)
    r = quantkit("analyze", src, two, *data, "--report", str(tmp_path / "r1"), check=False)
    assert r.returncode == 2 and "QK6001" in r.stderr and "1 outputs" in r.stderr, r.stderr
    r = quantkit("analyze", src, qpath, *data, "--eval-command", "false {model}", "--report", str(tmp_path / "r2"), check=False)
    assert r.returncode == 2 and "QK6003" in r.stderr, r.stderr
    labels = tmp_path / "labels.txt"
    labels.write_text("this line has no class\n")
    r = quantkit("analyze", src, qpath, *data, "--labels", str(labels), "--report", str(tmp_path / "r3"), check=False)
    assert r.returncode == 2 and "QK6005" in r.stderr, r.stderr
    assert not any(os.path.exists(str(tmp_path / f"r{i}.json")) for i in (1, 2, 3))


def test_export_all_outputs_types_without_value_info_when_a_zero_input_run_fails(tmp_path):
    """A QDQ model without value_info whose spatial dimensions are symbolic: a run on zero inputs
    with every symbolic dimension set to 1 fails (3x3 Conv without padding), so the element types
    must come from the operators' type rules (uint8 from QuantizeLinear, int64 from Shape, bool
    from Equal, float from Conv and com.microsoft's DequantizeLinear); ONNX Runtime then runs the model and agrees with QuantKit."""
    w = np.random.default_rng(5).integers(-100, 100, (4, 3, 3, 3)).astype(np.int8)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w", "ws"], ["wd"]),
        helper.make_node("Conv", ["xd", "wd"], ["c"]),
        helper.make_node("Shape", ["c"], ["shape"]),
        helper.make_node("Equal", ["shape", "shape"], ["same"]),
        helper.make_node("Relu", ["c"], ["y"]),
        # Quantizers write per-axis DequantizeLinear in this domain for models below opset 13.
        helper.make_node("DequantizeLinear", ["w", "ws"], ["wd2"], domain="com.microsoft"),
    ]
    inits = [helper.make_tensor("s", TensorProto.FLOAT, [], [0.02]), helper.make_tensor("z", TensorProto.UINT8, [], [128]),
             helper.make_tensor("w", TensorProto.INT8, w.shape, w.ravel().tolist()), helper.make_tensor("ws", TensorProto.FLOAT, [], [0.01])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    src = str(tmp_path / "sym.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)], ir_version=8), src)
    out = str(tmp_path / "sym.all.onnx")
    r = quantkit("export-all-outputs", src, "-o", out)
    assert "left out" not in r.stdout, r.stdout
    m = onnx.load(out)
    types = {o.name: o.type.tensor_type.elem_type for o in m.graph.output}
    assert types == {"xq": TensorProto.UINT8, "xd": TensorProto.FLOAT, "wd": TensorProto.FLOAT, "c": TensorProto.FLOAT,
                     "shape": TensorProto.INT64, "same": TensorProto.BOOL, "y": TensorProto.FLOAT, "wd2": TensorProto.FLOAT}, types
    x = np.random.default_rng(6).standard_normal((2, 3, 9, 7)).astype(np.float32)
    np.save(str(tmp_path / "x.npy"), x)
    quantkit("run", out, "--input", f"x={tmp_path / 'x.npy'}", "--output-dir", str(tmp_path / "o"))
    theirs = dict(zip([o.name for o in m.graph.output], ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, {"x": x})))
    for name, t in theirs.items():
        ours = np.load(str(tmp_path / "o" / npy_name(name)))
        assert ours.dtype == t.dtype and np.allclose(ours, t, atol=1e-4), name


def test_integer_conv_run_equals_onnxruntime_fused(tmp_path):
    """`quantkit run --integer-conv` (the analysis's graphwise simulation) computes what ONNX
    Runtime's CPU provider computes for a QDQ model, QLinearConv integers included; node by
    node (as written) it differs where a Conv sum lies within an ulp of a rounding tie."""
    from test_quantize_qdq import small_cnn
    src = str(tmp_path / "cnn.onnx")
    # Its own weights seed: small_cnn's default generator is shared, so its weights would depend
    # on which tests ran before (and with some, this data has no rounding tie).
    onnx.save(small_cnn(17, rng=np.random.default_rng(2)), src)
    rng = np.random.default_rng(11)
    calib = rng.standard_normal((16, 3, 16, 16)).astype(np.float32)
    np.save(str(tmp_path / "calib.npy"), calib)
    quantkit("quantize", src, "--input", f"x={tmp_path / 'calib.npy'}", "--batch", "16", "--no-analysis", "--quiet")
    qpath = str(tmp_path / "cnn.q.onnx")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(qpath, so, providers=["CPUExecutionProvider"])
    # Many inputs whose pixels sit on a coarse grid: constant regions and repeated sums make
    # near-ties frequent. Whether a batch holds one depends on the ranges calibration chose, so
    # batches are drawn until one does (every batch must match with integer Convs).
    tie = False
    for k in range(8):
        x = (np.round(rng.standard_normal((512, 3, 16, 16)) * 2) / 2).astype(np.float32)
        np.save(str(tmp_path / "x.npy"), x)
        outs = {}
        for tag, flags in (("integer", ["--integer-conv"]), ("written", [])):
            d = tmp_path / f"{tag}{k}"
            quantkit("run", qpath, "--input", f"x={tmp_path / 'x.npy'}", "--output-dir", str(d), *flags)
            outs[tag] = np.load(str(d / "y.npy"))
        fused = session.run(None, {"x": x})[0]
        # The logits come from a float-output Gemm (QGemm in ONNX Runtime): equal up to float sums.
        step = np.abs(fused).max() / 1e5
        assert np.abs(outs["integer"] - fused).max() <= step
        if np.abs(outs["written"] - fused).max() > 100 * step:
            tie = True
            break
    assert tie, "no rounding tie in 8 batches: the test cannot tell the two apart"


def test_advice_for_an_op_fine_alone_names_the_op_to_fix(tmp_path):
    """An op marked only in the whole model (its layerwise error under the threshold) is traced
    to the first op above that is bad by itself, by name; when no op above is bad by itself the
    advice says the error accumulates and suggests rounding-aware weights."""
    src, qpath, x, _ = setup_pair(tmp_path)
    rep = json.load(open(str(tmp_path / "cnn.report.json")))
    # A layer is bad when its SNR over all items or on the median item is above the threshold.
    def err(m):
        return max(m["snr"], m.get("medianItemSNR") or 0)

    layers = [l for l in rep["layers"] if l["layerwise"] is not None]
    alone = sorted(err(l["layerwise"]) for l in layers)
    whole = max(err(l["graphwise"]) for l in layers)
    assert whole > alone[-1], "the whole model must be worse than every op alone for this test"

    printed = {}

    def analyze(threshold, tag):
        out = tmp_path / tag
        out.mkdir()
        r = quantkit("analyze", src, qpath, "--input", f"x={tmp_path / 'x.npy'}", "--snr-warning", repr(threshold),
                     "--cosine-warning", "0", "--report", str(out / "r"))
        printed[tag] = next(line for line in r.stdout.splitlines() if line.startswith("layers "))
        return json.load(open(str(out / "r.json")))["layers"]

    # Above every layerwise SNR, below the worst graphwise one: nothing is bad alone.
    marked = [l for l in analyze((alone[-1] + whole) / 2, "none") if l["marked"]]
    assert marked and all(any("accumulated" in a and "--weight-rounding gptq" in a for a in l["advice"]) for l in marked)
    assert f"{len(marked)} marked (none bad by itself: accumulated error)" in printed["none"], printed["none"]
    # Between two layerwise SNRs: the first op bad alone is named by the ops below it that are
    # fine alone but marked.
    t = (alone[-2] + alone[-1]) / 2 if alone[-2] < alone[-1] else alone[-1] * 0.999
    got = analyze(t, "some")
    first_bad = next(l["node"] for l in got if l["layerwise"] and err(l["layerwise"]) > t)
    traced = [l for l in got if l["marked"] and l["layerwise"] and err(l["layerwise"]) <= t
              and l["index"] > next(g["index"] for g in got if g["node"] == first_bad)]
    assert traced, "no op below the first bad one is marked while fine alone: the test checks nothing"
    for l in traced:
        assert any(f"`{first_bad}`" in a for a in l["advice"]), l["advice"]
    by_themselves = [l for l in got if l["marked"] and l["layerwise"] and err(l["layerwise"]) > t]
    assert f"({len(by_themselves)} bad by " in printed["some"] and first_bad in printed["some"], printed["some"]


def test_top1_agreement_only_for_score_outputs_and_mask_iou_for_maps(tmp_path):
    """Three outputs: per-step class scores from a Softmax [N, T, C] get a top-1 agreement; a
    state of the same rank from a Concat does not (silero VAD's LSTM state looked like scores);
    a sigmoid map [N, 1, H, W] gets a mask IoU and no top-1 agreement."""
    rng = np.random.default_rng(5)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["c", "shape"], ["r"]),
             helper.make_node("Softmax", ["r"], ["scores"], axis=-1),
             helper.make_node("Concat", ["r", "r"], ["state"], axis=0),
             helper.make_node("Conv", ["x", "w1"], ["m"], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["m"], ["map"])]
    inits = [onnx.numpy_helper.from_array(w, "w"), onnx.numpy_helper.from_array(np.array([0, 6, -1], np.int64), "shape"),
             onnx.numpy_helper.from_array(rng.standard_normal((1, 4, 3, 3)).astype(np.float32) * 3, "w1")]
    g = helper.make_graph(nodes, "outputs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4, 6, 6])],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("scores", "state", "map")], inits)
    src = str(tmp_path / "outs.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), src)
    np.save(str(tmp_path / "x.npy"), rng.standard_normal((8, 4, 6, 6)).astype(np.float32))
    r = quantkit("quantize", src, "--input", f"x={tmp_path / 'x.npy'}", "--batch", "8")
    rep = json.load(open(str(tmp_path / "outs.report.json")))
    by_name = {o["name"]: o["metrics"] for o in rep["outputs"]}
    assert by_name["scores"].get("top1Agreement") is not None, by_name["scores"]
    assert by_name["state"].get("top1Agreement") is None and by_name["state"].get("maskIoU") is None, by_name["state"]
    assert by_name["map"].get("top1Agreement") is None and 0 < by_name["map"]["maskIoU"] <= 1, by_name["map"]
    assert "mask IoU (> 0.5)" in r.stdout
