"""`kl` and `percentile` thresholds equal a numpy implementation of the same definitions
(RangeSelection's doc comments), computed from the |x| histogram the statistics file records."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from conftest import quantkit


def kl_threshold(counts, width, levels, stride=1):
    """Migacz 2017 as documented in RangeSelection.klThreshold (no smoothing)."""
    c = np.asarray(counts, dtype=np.float64)
    n = len(c)
    best, best_i = np.inf, n
    for i in range(levels, n + 1, stride):
        p = c[:i].copy()
        p[i - 1] += c[i:].sum()
        q = np.zeros(i)
        for g in range(levels):
            s, e = g * i // levels, (g + 1) * i // levels
            seg = c[s:e]
            nz = np.count_nonzero(seg)
            if nz:
                q[s:e] = np.where(seg != 0, seg.sum() / nz, 0)
        if p.sum() <= 0 or q.sum() <= 0:
            continue
        pn, qn = p / p.sum(), q / q.sum()
        mask = pn > 0
        if np.any(qn[mask] <= 0):
            continue
        kl = float(np.sum(pn[mask] * np.log(pn[mask] / qn[mask])))
        if kl < best:
            best, best_i = kl, i
    return best_i * width


def quantile(counts, lo, width, q):
    c = np.asarray(counts, dtype=np.float64)
    target = q * c.sum()
    acc = 0.0
    for i, v in enumerate(c):
        if acc + v >= target and v > 0:
            return lo + (i + (target - acc) / v) * width
        acc += v
    return lo + len(c) * width


@pytest.mark.parametrize("dist", ["laplace", "gaussian", "relu"])
def test_kl_and_percentile_match_numpy(tmp_path, dist):
    rng = np.random.default_rng(42)
    x = {"laplace": rng.laplace(size=(64, 4096)), "gaussian": rng.standard_normal((64, 4096)),
         "relu": np.maximum(rng.standard_normal((64, 4096)), 0)}[dist].astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    g = helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4096])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4096])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    for method, extra in (("kl", []), ("percentile", ["--percentile", "0.999"])):
        out = tmp_path / f"{method}.json"
        quantkit("calibrate", str(tmp_path / "m.onnx"), "--input", f"x={tmp_path / 'x.npy'}", "--batch", "64",
                 "--method", method, *extra, "--activations", "s8", "--quiet", "--stats-out", str(out))
        e = json.load(open(out))["tensors"]["x"]
        h = e["statistics"]["absHistogram"]
        width = 2.0 ** h["exponent"]
        assert h["first"] == 0
        if method == "kl":
            want = kl_threshold(h["counts"], width, levels=128)
        else:
            want = quantile(h["counts"], 0.0, width, 0.999)
        got = e["range"]["hi"]
        assert abs(got - min(want, float(np.abs(x).max()))) <= 1e-9 * max(1.0, want), (method, got, want)
        if dist != "relu":
            assert abs(e["range"]["lo"] + got) <= 1e-12
