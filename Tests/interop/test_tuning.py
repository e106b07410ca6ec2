"""The precision plan and the tuning loop, checked in ONNX Runtime: a model built here that one
8-bit tensor breaks is repaired by raising the fewest ops, a written plan fed back gives the same
model, and --strict fails (QK6007) when the target stays out of reach."""
import csv
import json

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from conftest import npy_folder, quantkit


def fragile_model(path):
    """x -> Conv a (1x1) -> Relu -> Conv b (1x1) -> y. Channel 0 of a's output is 400x the others,
    and b reads it with a tiny weight: on one shared 8-bit scale the other channels keep about
    one step, and y, which depends on them, is lost; on 16 bits they keep 256."""
    rng = np.random.default_rng(3)
    wa = rng.normal(0, 0.5, (4, 4, 1, 1)).astype(np.float32)
    wa[0] *= 400
    wb = rng.normal(0, 0.5, (3, 4, 1, 1)).astype(np.float32)
    wb[:, 0] *= 1e-3
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"], name="conv_a"),
             helper.make_node("Relu", ["a"], ["r"], name="relu_a"),
             helper.make_node("Conv", ["r", "wb"], ["y"], name="conv_b")]
    g = helper.make_graph(nodes, "fragile", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [numpy_helper.from_array(wa, "wa"), numpy_helper.from_array(wb, "wb")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))


def cosine(a, b):
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def ort_cosine(float_model, quantized_model, inputs):
    f = ort.InferenceSession(str(float_model), providers=["CPUExecutionProvider"])
    q = ort.InferenceSession(str(quantized_model), providers=["CPUExecutionProvider"])
    ys = [(f.run(None, {"x": x})[0], q.run(None, {"x": x})[0]) for x in inputs]
    return cosine(np.concatenate([a for a, _ in ys]), np.concatenate([b for _, b in ys]))


def setup(tmp_path):
    model = tmp_path / "fragile.onnx"
    fragile_model(model)
    rng = np.random.default_rng(0)
    data = [rng.normal(0, 1, (1, 4, 8, 8)).astype(np.float32) for _ in range(16)]
    folder = npy_folder(tmp_path / "calib", data)
    held_out = [rng.normal(0, 1, (1, 4, 8, 8)).astype(np.float32) for _ in range(8)]
    return model, folder, held_out


def plan_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_loop_repairs_a_fragile_model_with_the_fewest_ops(tmp_path):
    model, folder, held_out = setup(tmp_path)
    plain = quantkit("quantize", str(model), "--input", f"x={folder}", "-o", str(tmp_path / "plain.q.onnx"), "--target", "none")
    assert "repaired" not in plain.stdout
    plain_cos = ort_cosine(model, tmp_path / "plain.q.onnx", held_out)
    assert plain_cos < 0.99, plain_cos

    # Default: verify against output cosine 0.99; the repair would leave fewer than 80% of the two
    # integer kernels, so the plain plan stays and the summary says what the repair would cost.
    r = quantkit("quantize", str(model), "--input", f"x={folder}", "-o", str(tmp_path / "kept.q.onnx"))
    assert "missed; tuning" in r.stdout and "repaired   nothing" in r.stdout, r.stdout
    assert "integer kernels, under the 2 that --min-integer-share 0.8 keeps (--min-integer-share 0 allows it)" in r.stdout, r.stdout
    # Allowed to lose kernels, the loop repairs it.
    r = quantkit("quantize", str(model), "--input", f"x={folder}", "-o", str(tmp_path / "tuned.q.onnx"), "--min-integer-share", "0")
    assert "missed; tuning" in r.stdout and "repaired" in r.stdout, r.stdout
    tuned_cos = ort_cosine(model, tmp_path / "tuned.q.onnx", held_out)
    assert tuned_cos >= 0.99, (plain_cos, tuned_cos)
    rows = {row["node"]: row for row in plan_rows(tmp_path / "tuned.plan.csv")}
    raised = [n for n, row in rows.items() if row["dtype"] != "int8" and row["reason"] in ("", "plan")]
    assert len(raised) == 1, rows
    report = json.load(open(tmp_path / "tuned.report.json"))
    t = report["tuning"]
    assert t["met"] and t["rounds"][0]["change"] == "plain recipe" and not t["rounds"][0]["met"]
    assert t["rounds"][t["chosen"]]["raised"] == raised
    assert "## Tuning" in open(tmp_path / "tuned.report.md").read()


def test_written_plan_fed_back_gives_the_same_model(tmp_path):
    model, folder, _ = setup(tmp_path)
    stats = tmp_path / "s.json"
    quantkit("quantize", str(model), "--input", f"x={folder}", "-o", str(tmp_path / "a.q.onnx"), "--stats-out", str(stats))
    quantkit("quantize", str(model), "--stats", str(stats), "--plan", str(tmp_path / "a.plan.csv"), "-o", str(tmp_path / "b.q.onnx"))
    assert (tmp_path / "a.q.onnx").read_bytes() == (tmp_path / "b.q.onnx").read_bytes()
    assert (tmp_path / "a.plan.csv").read_bytes() == (tmp_path / "b.plan.csv").read_bytes()
    # The same plan through an Icraft-style configuration's mix_precision.
    cfg = tmp_path / "icraft.toml"
    cfg.write_text(f'[quantize]\nmodel = "{model}"\nstatistics = "{stats}"\nmix_precision = "{tmp_path / "a.plan.csv"}"\n'
                   f'output = "{tmp_path / "c.q.onnx"}"\nsaturation = "default"\nqdtype = "uint8"\n')
    quantkit("quantize", "-c", str(cfg))
    assert (tmp_path / "a.q.onnx").read_bytes() == (tmp_path / "c.q.onnx").read_bytes()


def test_strict_fails_when_the_target_stays_out_of_reach(tmp_path):
    model, folder, _ = setup(tmp_path)
    out = tmp_path / "s.q.onnx"
    r = quantkit("quantize", str(model), "--input", f"x={folder}", "-o", str(out), "--target", "cosine=0.99999", "--tune-rounds", "0",
                 "--strict", check=False)
    assert r.returncode != 0 and "QK6007" in r.stderr, (r.stdout, r.stderr)
    assert out.exists() and (tmp_path / "s.report.json").exists()
    # Without --strict the same run exits 0 and says the target was not met.
    r = quantkit("quantize", str(model), "--input", f"x={folder}", "-o", str(out), "--target", "cosine=0.99999", "--tune-rounds", "0")
    assert "target     not met" in r.stdout, r.stdout


def test_icraft_keys_and_the_flags_resolve_to_the_same_tuning(tmp_path):
    model, folder, _ = setup(tmp_path)

    def tuning(*args):
        return json.loads(quantkit("quantize", *args, "--print-config").stdout)["tuning"]
    flags = tuning(str(model), "--input", f"x={folder}", "--target", "cosine=0.995", "--priority", "accuracy", "--tune-rounds", "5",
                   "--tune-strategy", "cosine")
    cfg = tmp_path / "icraft.toml"
    cfg.write_text(f'[quantize]\nmodel = "{model}"\nforward_dir = "{folder}"\nmix_precision = "cosimilarity"\n'
                   '[AutoTune]\npriority = "accuracy"\nround_num = 5\ncos_targetvalue = 0.995\n')
    assert tuning("-c", str(cfg)) == flags
    # A plan named by mix_precision is the --plan of the flags.
    plan = tmp_path / "p.plan.csv"
    plan.write_text("node,dtype\nconv_b,int16\n")
    cfg.write_text(f'[quantize]\nmodel = "{model}"\nforward_dir = "{folder}"\nmix_precision = "{plan}"\n')
    resolved = json.loads(quantkit("quantize", "-c", str(cfg), "--print-config").stdout)
    assert resolved["plan"] == str(plan)
    # XQuant precision_level 2: the loop to cosine 0.995 with accuracy priority.
    xq = tmp_path / "x.json"
    xq.write_text(json.dumps({"model_parameters": {"onnx_model": str(model)},
                              "calibration_parameters": {"input_parametres": [{"input_name": "x", "data_list_path": str(folder)}]},
                              "quantization_parameters": {"precision_level": 2}}))
    t = json.loads(quantkit("quantize", "-c", str(xq), "--print-config").stdout)["tuning"]
    assert t["target"] == {"higherIsBetter": True, "metric": "cosine", "value": 0.995} and t["priority"] == "accuracy"
