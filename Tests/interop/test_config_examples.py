"""The example configurations run from the repository root as the README shows, and XQuant's
documented sample configuration runs unchanged on its own folder layout; ONNX Runtime is the
referee for the written models."""
import glob
import os
import shutil
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import BINARY, CACHE, ROOT

EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "*.json")) + glob.glob(os.path.join(ROOT, "examples", "*.toml")))


def model_of(example):
    name = os.path.splitext(os.path.basename(example))[0].replace("_random", "")
    return os.path.join(CACHE, "models", name + ".onnx")


@pytest.mark.parametrize("example", EXAMPLES, ids=os.path.basename)
def test_example_runs_from_the_repository_root(example, tmp_path):
    if not os.path.exists(model_of(example)):
        pytest.skip("model not fetched")
    out = str(tmp_path / "q.onnx")
    r = subprocess.run([BINARY, "quantize", "-c", os.path.relpath(example, ROOT), "-o", out, "--quiet"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "calibrated" in r.stdout
    m = onnx.load(out)
    onnx.checker.check_model(m)
    # silero VAD computes inside If branches: the Q/DQ are in the branch calibration took.
    def all_nodes(g):
        for n in g.node:
            yield n
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    yield from all_nodes(a.g)
    assert any(n.op_type == "QuantizeLinear" for n in (all_nodes(m.graph) if "silero" in example else m.graph.node))
    ort.InferenceSession(out, providers=["CPUExecutionProvider"])


def test_efficientnet_example_agrees_with_the_float_model(tmp_path):
    model = os.path.join(CACHE, "models", "efficientnet_lite0.onnx")
    if not os.path.exists(model):
        pytest.skip("model not fetched")
    out = str(tmp_path / "q.onnx")
    r = subprocess.run([BINARY, "quantize", "-c", "examples/efficientnet_lite0.json", "-o", out, "--quiet"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "calibrated 20 items in 5 batches" in r.stdout
    x = np.random.default_rng(0).standard_normal((4, 3, 224, 224)).astype(np.float32)
    f = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    q = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert (f.argmax(1) == q.argmax(1)).mean() >= 0.75


def xquant_sample_layout(tmp_path):
    """Builds XQuant's documented layout in `tmp_path` (resnet50/inference.onnx with input
    'inputs', dataset/data/Imagenet/calib_list.txt of 3 photos, inference.json copied)."""
    model = os.path.join(CACHE, "models", "efficientnet_lite0.onnx")
    photos = sorted(glob.glob(os.path.join(CACHE, "data", "foolbox", "imagenet_*.jpg")))
    if not os.path.exists(model) or not photos:
        pytest.skip("model or photos not fetched")
    m = onnx.load(model)
    old = m.graph.input[0].name
    m.graph.input[0].name = "inputs"
    for n in m.graph.node:
        n.input[:] = ["inputs" if i == old else i for i in n.input]
    os.makedirs(tmp_path / "resnet50")
    onnx.save(m, str(tmp_path / "resnet50" / "inference.onnx"))
    calib = tmp_path / "dataset" / "data" / "Imagenet"
    os.makedirs(calib / "Calib")
    for p in photos[:3]:
        shutil.copy(p, calib / "Calib")
    (calib / "calib_list.txt").write_text("".join(f"Calib/{os.path.basename(p)}\n" for p in photos[:3]))
    shutil.copy(os.path.join(ROOT, "examples", "xquant_sample", "inference.json"), tmp_path / "inference.json")


def test_xquant_documented_sample_runs_unchanged(tmp_path):
    """examples/xquant_sample/inference.json as XQuant documents it: resnet50/inference.onnx with
    input 'inputs', dataset/data/Imagenet/calib_list.txt, output resnet50/inference.q.onnx."""
    xquant_sample_layout(tmp_path)
    r = subprocess.run([BINARY, "quantize", "-c", "inference.json", "--quiet"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "calibrated 3 items in 3 batches" in r.stdout
    assert "calibration_device" in r.stdout  # "cuda" is reported, not silently ignored
    out = tmp_path / "resnet50" / "inference.q.onnx"
    assert out.exists() and (tmp_path / "resnet50" / "inference.qparams.json").exists()
    onnx.checker.check_model(onnx.load(str(out)))
    ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
