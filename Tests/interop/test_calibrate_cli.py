"""`quantkit calibrate` end to end on a real model and real photos: statistics of two shards
merged equal the statistics of one pass, and the quantizer accepts the file."""
import glob
import json
import os

from conftest import CACHE, quantkit

MODEL = os.path.join(CACHE, "models", "ppocr_cls.onnx")
IMAGE_ARGS = ["--size", "48x192", "--scale", "0.00392156862745098", "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--color", "bgr"]


def write_list(path, files):
    with open(path, "w") as f:
        f.write("\n".join(files) + "\n")
    return str(path)


def test_shards_merge_into_the_one_pass_statistics(tmp_path):
    files = sorted(glob.glob(os.path.join(CACHE, "data", "foolbox", "imagenet_*.jpg")))
    assert len(files) == 20
    whole, a, b = (write_list(tmp_path / n, f) for n, f in (("all.txt", files), ("a.txt", files[:10]), ("b.txt", files[10:])))
    for name, lst in (("all", whole), ("a", a), ("b", b)):
        quantkit("calibrate", MODEL, "--input", f"x={lst}", *IMAGE_ARGS, "--batch", "5", "--method", "kl", "--quiet",
                 "--stats-out", str(tmp_path / f"{name}.json"))
    quantkit("calibrate", "--merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--method", "kl", "--quiet",
             "--stats-out", str(tmp_path / "merged.json"))
    one = json.load(open(tmp_path / "all.json"))
    merged = json.load(open(tmp_path / "merged.json"))
    assert one["samples"] == merged["samples"] == 20
    assert one["tensors"].keys() == merged["tensors"].keys() and len(one["tensors"]) > 100
    for name, e in one["tensors"].items():
        m = merged["tensors"][name]
        s, t = e["statistics"], m["statistics"]
        assert s["min"] == t["min"] and s["max"] == t["max"], name
        # Histograms merge exactly, so the chosen ranges are identical.
        assert s["histogram"] == t["histogram"] and s["absHistogram"] == t["absHistogram"], name
        assert e["range"] == m["range"], name
    r = quantkit("quantize", MODEL, "--stats", str(tmp_path / "merged.json"), "-o", str(tmp_path / "cls.q.onnx"))
    assert "quantized" in r.stdout and os.path.exists(tmp_path / "cls.qparams.json")


def test_calibrate_reports_bad_data_with_codes(tmp_path):
    r = quantkit("calibrate", MODEL, "--input", f"x={tmp_path}", *IMAGE_ARGS, "--stats-out", str(tmp_path / "s.json"), check=False)
    assert r.returncode == 2 and "QK2" in r.stderr and "finds 0 items" in r.stderr, r.stderr
    r = quantkit("calibrate", MODEL, "--input", "x=random", "--method", "bogus", "--stats-out", str(tmp_path / "s.json"), check=False)
    assert r.returncode == 2 and "QK7002" in r.stderr and "kl_v2" in r.stderr
