"""Peak memory and time of calibration with 100 vs 1,000 images: QuantKit vs ONNX Runtime.

Run from the repository root after `swift build -c release`, scripts/fetch-models.sh and
scripts/export-efficientnet.sh:

    .venv/bin/python Benchmarks/calibration_memory.py [--counts 100 1000] [--limit-gb 16]

Model: EfficientNet-Lite0. Images: 224x224 crops (centre, top-left, bottom-right of the shorter-
side-256 resize) of the photos in .cache/data/photos, written once as JPEG files to
.cache/bench/calib_memory/ (1,107 crops; the first N are used). Both tools decode and preprocess
the JPEGs themselves one batch at a time (batch 4: ORT's histogram calibrators need equal batches, 100 and 1,000 divide by 4): QuantKit with `--preset PT_IMAGENET`, ONNX
Runtime's calibrator through a CalibrationDataReader that opens each file with Pillow when asked.
  QuantKit  `quantkit calibrate MODEL --input input=LIST --preset PT_IMAGENET --batch 4
            --method M --stats-out S` (one pass collects min/max, moments and both histograms;
            M picks the ranges written)
  ORT       onnxruntime.quantization.calibrate.create_calibrator(MODEL, calibrate_method=M)
            then collect_data(reader) and compute_data() (what quantize_static does)
Each run is its own process under /usr/bin/time -v; a watchdog stops a run whose resident memory
passes --limit-gb (reported as "> limit").
"""
import argparse
import glob
import os
import subprocess
import sys
import tempfile
import threading
import time

from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_data as bd  # noqa: E402

MODEL = os.path.join(bd.MODELS, "efficientnet_lite0.onnx")
BINARY = os.path.join(bd.ROOT, ".build", "release", "quantkit")
FOLDER = os.path.join(bd.BENCH, "calib_memory")

ORT_CHILD = r"""
import sys, numpy as np
from PIL import Image
from onnxruntime.quantization.calibrate import create_calibrator, CalibrationMethod, CalibrationDataReader
model, lst, method, aug = sys.argv[1:5]
files = [l.strip() for l in open(lst) if l.strip()]
MEAN = np.array([0.485, 0.456, 0.406], np.float32); STD = np.array([0.229, 0.224, 0.225], np.float32)
class Reader(CalibrationDataReader):
    def __init__(self): self.i = 0
    def get_next(self):
        if self.i >= len(files): return None
        batch = files[self.i:self.i + 4]; self.i += 4
        x = np.stack([((np.asarray(Image.open(f).convert("RGB"), np.float32) / 255 - MEAN) / STD).transpose(2, 0, 1) for f in batch])
        return {"input": x}
c = create_calibrator(model, augmented_model_path=aug, calibrate_method=getattr(CalibrationMethod, method))
c.collect_data(Reader())
r = c.compute_data()
print(len(r.data) if hasattr(r, "data") else len(r))
"""


def crops():
    """1,107 JPEG crops of 224x224 (three per photo), made once."""
    if not os.path.isdir(FOLDER):
        tmp = FOLDER + ".tmp"
        os.makedirs(tmp, exist_ok=True)
        for k, p in enumerate(sorted(glob.glob(os.path.join(bd.CACHE, "data", "photos", "*")))):
            img = Image.open(p).convert("RGB")
            w, h = img.size
            s = 256 / min(w, h)
            img = img.resize((max(224, round(w * s)), max(224, round(h * s))), Image.BILINEAR)
            w, h = img.size
            for j, (x, y) in enumerate([((w - 224) // 2, (h - 224) // 2), (0, 0), (w - 224, h - 224)]):
                img.crop((x, y, x + 224, y + 224)).save(os.path.join(tmp, f"{k:04d}_{j}.jpg"), quality=92)
        os.replace(tmp, FOLDER)
    return sorted(glob.glob(os.path.join(FOLDER, "*.jpg")))


def run(cmd, limit_mb, env):
    """(seconds, peak RSS MiB, stopped?) of cmd, killed when its RSS passes limit_mb."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        t0 = time.perf_counter()
        p = subprocess.Popen(["/usr/bin/time", "-v", "-o", tf.name, *cmd], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, env=env)
        stopped = []

        def watch():
            while p.poll() is None:
                for pid in os.listdir("/proc"):
                    if not pid.isdigit():
                        continue
                    try:
                        with open(f"/proc/{pid}/stat") as f:
                            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                        if ppid != p.pid:
                            continue
                        with open(f"/proc/{pid}/status") as f:
                            rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
                        if rss / 1024 > limit_mb:
                            stopped.append(rss)
                            os.kill(int(pid), 9)
                    except (OSError, StopIteration, ValueError, IndexError):
                        pass
                time.sleep(0.2)
        t = threading.Thread(target=watch)
        t.start()
        _, err = p.communicate()
        t.join()
        wall = time.perf_counter() - t0
        text = tf.read()
    import re
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if p.returncode != 0 and not stopped:
        raise RuntimeError(f"{cmd[0]} exited {p.returncode}: {err[-1500:]}")
    return wall, (int(m.group(1)) / 1024 if m else float("nan")), bool(stopped)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", nargs="+", type=int, default=[100, 1000])
    ap.add_argument("--methods", nargs="+", default=["MinMax", "Entropy", "Percentile"])
    ap.add_argument("--limit-gb", type=float, default=16)
    args = ap.parse_args()
    env = dict(os.environ)
    env.setdefault("OPENBLAS_CORETYPE", subprocess.run(["bash", os.path.join(bd.ROOT, "scripts", "openblas-coretype.sh")],
                                                       capture_output=True, text=True).stdout.strip())
    files = crops()
    ours = {"MinMax": "minmax", "Entropy": "kl", "Percentile": "percentile"}
    limit = args.limit_gb * 1024
    print("| method | images | QuantKit s | QuantKit peak MB | ORT s | ORT peak MB |")
    print("|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as d:
        for m in args.methods:
            for n in args.counts:
                lst = os.path.join(d, f"list{n}.txt")
                with open(lst, "w") as f:
                    f.write("\n".join(files[:n]) + "\n")
                qs, qm, qstop = run([BINARY, "calibrate", MODEL, "--input", f"input={lst}", "--preset", "PT_IMAGENET",
                                     "--batch", "4", "--method", ours[m], "--stats-out", os.path.join(d, "s.json"), "--quiet"],
                                    limit, env)
                try:
                    os_, om, ostop = run([sys.executable, "-c", ORT_CHILD, MODEL, lst, m, os.path.join(d, "aug.onnx")], limit, env)
                except RuntimeError as e:
                    print(f"  ORT {m} {n} failed: {str(e)[-300:]}", file=sys.stderr)
                    os_, om, ostop = float("nan"), float("nan"), False
                fmt = lambda s, mb, stop: (f"{s:.1f}", f"> {limit:.0f} (stopped)" if stop else f"{mb:.0f}")
                a, b = fmt(qs, qm, qstop), fmt(os_, om, ostop)
                print(f"| {m} | {n} | {a[0]} | {a[1]} | {b[0]} | {b[1]} |", flush=True)


if __name__ == "__main__":
    main()
