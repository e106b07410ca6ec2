"""Task metric of one model on one split, for quantkit's `--eval-command` (Benchmarks/tune_task_metric.py).

The split is a folder of .npy files that tune_task_metric.py writes once; this script only loads
them and runs ONNX Runtime (CPU, 2 threads), so each call is one short process. The metric is
printed last on the last stdout line, as quantkit reads it:

    .venv/bin/python Benchmarks/eval_task.py agreement DIR MODEL   # DIR/x.npy [N,3,224,224], DIR/ref.npy float top-1
    .venv/bin/python Benchmarks/eval_task.py exact DIR MODEL       # DIR/NNNN.npy lines, DIR/labels.json, DIR/chars.json
"""
import glob
import json
import os
import sys

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_data import ctc_decode  # noqa: E402


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def top1(s, x, batch=16):
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i:i + batch]})[0].argmax(1) for i in range(0, len(x), batch)])


def agreement(model, folder):
    """Share of items whose top-1 class equals the float model's (DIR/ref.npy)."""
    x = np.load(os.path.join(folder, "x.npy"))
    ref = np.load(os.path.join(folder, "ref.npy"))
    return float(np.mean(top1(session(model), x) == ref))


def exact(model, folder):
    """Share of text lines whose greedy CTC decoding equals the rendered text."""
    labels = json.load(open(os.path.join(folder, "labels.json")))
    chars = json.load(open(os.path.join(folder, "chars.json")))
    files = sorted(glob.glob(os.path.join(folder, "[0-9]*.npy")))
    assert len(files) == len(labels), (len(files), len(labels))
    s = session(model)
    name = s.get_inputs()[0].name
    hits = sum(ctc_decode(s.run(None, {name: np.load(p)})[0], chars)[0] == t for p, t in zip(files, labels))
    return hits / len(labels)


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("agreement", "exact"):
        sys.exit(__doc__)
    kind, folder, model = sys.argv[1:]
    value = (agreement if kind == "agreement" else exact)(model, folder)
    print(f"{kind} {value:.6f}")


if __name__ == "__main__":
    main()
