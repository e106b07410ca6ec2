"""The float executor agrees with ONNX Runtime on real models: PP-OCRv4 rec and EfficientNet-Lite0
(when scripts/export-efficientnet.sh has exported it); batches of 2 and 3 also check running
sample by sample. Both run the same seeded input; the executor's outputs come from `quantkit bench --input-npy ... --save-outputs DIR`."""
import json
import os

import numpy as np
import onnxruntime as ort
import pytest

from conftest import CACHE, quantkit

MODELS = [
    ("ppocrv4_rec.onnx", (1, 3, 48, 320)),
    # A batch of 3 runs the convolution part sample by sample (SampleSplit) on 2 threads.
    ("ppocrv4_rec.onnx", (3, 3, 48, 320)),
    ("efficientnet_lite0.onnx", (2, 3, 224, 224)),
    ("ppocrv4_det.onnx", (1, 3, 160, 224)),
    ("ppocr_cls.onnx", (2, 3, 48, 192)),
]


def executor_outputs(path, x, tmp_path):
    npy = tmp_path / "input.npy"
    np.save(npy, x)
    out_dir = tmp_path / "out"
    quantkit("bench", path, "--batch", str(x.shape[0]), "--threads", "2", "--iterations", "0",
             "--input-npy", str(npy), "--save-outputs", str(out_dir))
    index = json.loads((out_dir / "outputs.json").read_text())
    return {o["name"]: np.fromfile(out_dir / o["file"], dtype="<f4").reshape(o["shape"]) for o in index}


@pytest.mark.parametrize("name,shape", MODELS, ids=[f"{m[0]}-b{m[1][0]}" for m in MODELS])
def test_executor_matches_onnxruntime(name, shape, tmp_path):
    path = os.path.join(CACHE, "models", name)
    if not os.path.exists(path):
        pytest.fail(f"{name} is not in .cache/models: run scripts/test.sh (it fetches and exports the models)")
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {sess.get_inputs()[0].name: x})))
    got = executor_outputs(path, x, tmp_path)
    for out_name, w in want.items():
        g = got[out_name]
        assert g.shape == w.shape, f"{out_name}: shape {g.shape}, ONNX Runtime {w.shape}"
        a, b = g.astype(np.float64).ravel(), w.astype(np.float64).ravel()
        cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        max_abs = float(np.abs(a - b).max())
        print(f"{name} {out_name}: cosine {cosine:.8f}, max |error| {max_abs:.3g}")
        assert cosine > 0.99999, f"{out_name}: cosine {cosine}, max |error| {max_abs}"
