"""The executor runs MiniLM-L3 (sentence embeddings: Gather, MatMul, LayerNormalization, Softmax,
Erf, masks) like ONNX Runtime, on a padded batch of two token sequences.

Our side runs `quantkit run MODEL --input name=file.npy ... --output-dir DIR`, which writes each
model output as DIR/<output name>.npy (see conftest.npy_name).
"""
import os

import numpy as np
import onnxruntime as ort
import pytest

from conftest import npy_name, CACHE, quantkit

MODEL = os.path.join(CACHE, "models", "minilm_l3.onnx")


def cosine(a, b):
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return 1.0 if na == 0 and nb == 0 else float(a @ b / (na * nb))


@pytest.mark.skipif(not os.path.exists(MODEL), reason="minilm_l3.onnx is not in .cache/models")
def test_minilm_matches_onnxruntime(tmp_path):
    rng = np.random.default_rng(0)
    seq = 24
    # [CLS] tokens [SEP], the second sentence shorter and padded with 0 / mask 0.
    ids = rng.integers(1000, 30000, size=(2, seq)).astype(np.int64)
    ids[:, 0] = 101
    ids[0, -1] = 102
    ids[1, 15] = 102
    ids[1, 16:] = 0
    mask = np.ones((2, seq), np.int64)
    mask[1, 16:] = 0
    feeds = {"input_ids": ids, "attention_mask": mask}
    session = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    ref = dict(zip(names, session.run(names, feeds)))
    args = ["run", MODEL]
    for name, value in feeds.items():
        path = tmp_path / f"{name}.npy"
        np.save(path, value)
        args += ["--input", f"{name}={path}"]
    out = tmp_path / "out"
    quantkit(*args, "--output-dir", str(out))
    for name in names:
        ours = np.load(out / npy_name(name))
        want = ref[name]
        assert ours.shape == want.shape and ours.dtype == want.dtype, f"{name}: {ours.dtype}{ours.shape} vs {want.dtype}{want.shape}"
        if want.dtype.kind in "iub":
            assert np.array_equal(ours, want), name
        else:
            err = float(np.max(np.abs(ours - want)))
            print(f"{name}: cosine {cosine(ours, want):.8f}, max-abs error {err:.3g}")
            assert cosine(ours, want) > 0.99999, f"{name}: cosine {cosine(ours, want)}, max-abs error {err}"
