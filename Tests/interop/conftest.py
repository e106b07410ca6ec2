"""Shared fixtures for the interop tests: the onnx/onnxruntime referees check QuantKit's output.

The README's test command (scripts/test.sh) builds the release binary and fills .cache first.
"""
import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(ROOT, ".cache")
BINARY = os.path.join(ROOT, ".build", "release", "quantkit")


def quantkit(*args, check=True):
    r = subprocess.run([BINARY, *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"quantkit {' '.join(args)} exited {r.returncode}: {r.stderr}")
    return r


def npy_name(output):
    """The file `quantkit run` writes for an output: characters other than letters, digits,
    '_', '-' and '.' become '_'."""
    import re
    return re.sub(r"[^A-Za-z0-9_.-]", "_", output) + ".npy"


def npy_folder(folder, arrays):
    """Writes each array as folder/NNN.npy (a calibration folder for --input NAME=folder)."""
    import numpy as np
    folder.mkdir()
    for i, a in enumerate(arrays):
        np.save(folder / f"{i:03d}.npy", a)
    return folder


def optimized_ops(path, tmp_path=None):
    """Op types (a list, in order) of ONNX Runtime's optimized graph of the model at `path` (CPU
    provider, extended optimizations: the QDQ fusions), saved beside it or in `tmp_path`."""
    import onnx
    import onnxruntime as ort
    out = str(tmp_path / "optimized.onnx") if tmp_path is not None else str(path) + ".ort.onnx"
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = out
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(out).graph.node]


def quantkit_json(*args):
    return json.loads(quantkit(*args).stdout)


def real_models():
    d = os.path.join(CACHE, "models")
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".onnx")) if os.path.isdir(d) else []


def suite_models(suite):
    d = os.path.join(CACHE, "onnx-tests", suite)
    if not os.path.isdir(d):
        return []
    return sorted(os.path.join(d, c, "model.onnx") for c in os.listdir(d) if os.path.isfile(os.path.join(d, c, "model.onnx")))


@pytest.fixture(scope="session", autouse=True)
def built():
    assert os.access(BINARY, os.X_OK), "build first: swift build -c release (scripts/test.sh does)"
