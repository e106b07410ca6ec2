"""--auto-subset N: calibration on N items chosen to cover the data's spread, listed beside it."""
import json

import numpy as np

from conftest import npy_folder, quantkit
from test_tuning import fragile_model


def test_auto_subset_lists_the_outlying_items_and_calibrates_on_them(tmp_path):
    model = tmp_path / "m.onnx"
    fragile_model(model)
    rng = np.random.default_rng(1)
    items = [rng.normal(0, 1, (1, 4, 8, 8)).astype(np.float32) for _ in range(40)]
    outliers = [5, 17, 29, 38]
    for k in outliers:
        items[k] *= 8  # four items far from the bulk: a random 8 of 40 would mostly miss them
    folder = npy_folder(tmp_path / "calib", items)
    out = tmp_path / "m.q.onnx"
    r = quantkit("quantize", str(model), "--input", f"x={folder}", "-o", str(out), "--auto-subset", "8", "--target", "none",
                 "--method", "minmax")
    listed = tmp_path / "calib_auto.txt"
    assert f"calibrating on 8 of 40 items chosen to cover the data's spread: {listed}" in r.stdout, r.stdout
    chosen = [line for line in listed.read_text().splitlines() if line]
    assert len(chosen) == 8 and len(set(chosen)) == 8
    assert all(f"{k:03d}.npy" in " ".join(chosen) for k in outliers), chosen
    # Calibration ran on them: the input's range (minmax) covers the outliers.
    x = json.load(open(tmp_path / "m.qparams.json"))["tensors"]["x"]
    assert x["threshold"][1] >= max(float(items[k].max()) for k in outliers) * 0.999, x
    # Asking for as many items as there are uses them all and writes no list.
    r = quantkit("quantize", str(model), "--input", f"x={folder}", "-o", str(out), "--auto-subset", "40", "--target", "none")
    assert "not more than --auto-subset: all are used" in r.stdout, r.stdout


def test_auto_subset_refuses_random_data(tmp_path):
    model = tmp_path / "m.onnx"
    fragile_model(model)
    r = quantkit("quantize", str(model), "--input", "x=random", "-o", str(tmp_path / "q.onnx"), "--auto-subset", "4", "--target", "none",
                 check=False)
    assert r.returncode != 0 and "QK2117" in r.stderr, r.stderr
