"""Calibration and evaluation sets for the quantization benchmarks (Python is the referee here).

Each set is made once into .cache/bench/NAME/ and reused:
  calib/NNNN[_INPUT].npy   calibration items with a leading batch dimension of 1, read by both
                           QuantKit (--input NAME=DIR or a list file) and ONNX Runtime's quantizer
  eval.npz                 evaluation inputs (and labels where they exist)
Sources (all from DEVELOPERS.md's list, fetched by scripts/fetch-models.sh):
  fashion_cnn       Debian dataset-fashion-mnist: 256 training images to calibrate, the 10,000
                    test images (labelled) to evaluate
  efficientnet      ImageNet preprocessing (shorter side 256, centre crop 224, mean/std) of
                    .cache/data/photos: every 6th photo calibrates, the others (300+) measure
                    agreement; the 20 labelled foolbox ImageNet photos measure top-1
  ppocrv4_rec       text lines rendered with DejaVu fonts (labels known by construction),
                    preprocessed as RapidOCR does (height 48, width padded to 320, (x/255-0.5)/0.5)
  ppocrv4_det       pages of rendered text lines (ink boxes known by construction), normalized
                    as RapidOCR does (x/255, ImageNet mean/std): 32 calibrate, 150 evaluate
  minilm_l3         real English sentences (Debian's common licence texts), BERT WordPiece
                    tokenized with the uncased vocabulary, padded to 64 tokens
"""
import glob
import gzip
import os
import random
import re
import shutil
import struct
import tempfile

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, ".cache")
BENCH = os.path.join(CACHE, "bench")
MODELS = os.path.join(CACHE, "models")


def markdown_table(header, rows):
    """Prints a benchmark's table as Markdown, as docs/BENCHMARKS.md holds it."""
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")


def _idx(name):
    with gzip.open(os.path.join("/usr/share/datasets/fashion-mnist", name), "rb") as f:
        data = f.read()
    ndim = struct.unpack(">I", data[:4])[0] & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _write_calib(folder, items, input_names):
    """items: list of tuples (one array per input, each with batch dim 1). Atomic per set."""
    calib = os.path.join(folder, "calib")
    if os.path.isdir(calib):
        return
    tmp = calib + ".tmp"
    os.makedirs(tmp, exist_ok=True)
    for i, arrays in enumerate(items):
        for name, a in zip(input_names, arrays):
            suffix = "" if len(input_names) == 1 else "_" + name
            np.save(os.path.join(tmp, f"{i:04d}{suffix}.npy"), a)
    os.replace(tmp, calib)


def calib_args(name, input_names):
    """QuantKit --input/--list arguments for a set's calibration folder."""
    calib = os.path.join(BENCH, name, "calib")
    if len(input_names) == 1:
        return ["--input", f"{input_names[0]}={calib}"]
    lst = os.path.join(BENCH, name, "calib.txt")
    files = sorted(glob.glob(os.path.join(calib, f"*_{input_names[0]}.npy")))
    with open(lst, "w") as f:
        for p in files:
            stem = p[: -len(f"_{input_names[0]}.npy")]
            f.write(";".join(f"{stem}_{n}.npy" for n in input_names) + "\n")
    return ["--list", lst]


def calib_items(name, input_names):
    calib = os.path.join(BENCH, name, "calib")
    if len(input_names) == 1:
        files = sorted(glob.glob(os.path.join(calib, "*.npy")))
        return [{input_names[0]: np.load(p)} for p in files]
    first = sorted(glob.glob(os.path.join(calib, f"*_{input_names[0]}.npy")))
    out = []
    for p in first:
        stem = p[: -len(f"_{input_names[0]}.npy")]
        out.append({n: np.load(f"{stem}_{n}.npy") for n in input_names})
    return out


def ort_session(path, optimized=True, threads=2):
    """An ONNX Runtime CPU session with `threads` intra-op threads, warnings off; optimized=False
    runs the graph as written (ORT_DISABLE_ALL: no QDQ fusion, no constant folding)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    if not optimized:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def optimized_ops(path):
    """Op types in ONNX Runtime's optimized graph of the model at `path` (CPU provider, extended
    optimizations: the QDQ fusions), If/Loop/Scan bodies included."""
    import onnx
    import onnxruntime as ort
    with tempfile.TemporaryDirectory() as d:
        so = ort.SessionOptions()
        so.optimized_model_filepath = os.path.join(d, "opt.onnx")
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.log_severity_level = 3
        ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        graph = onnx.load(os.path.join(d, "opt.onnx")).graph

    def walk(g):
        for n in g.node:
            yield n.op_type
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    yield from walk(a.g)
    return list(walk(graph))


def _cached(name, make, version="1"):
    """The set `name` from .cache/bench/NAME, made (again) when missing or of another version."""
    folder = os.path.join(BENCH, name)
    path = os.path.join(folder, "eval.npz")
    stamp = os.path.join(folder, "VERSION")
    os.makedirs(folder, exist_ok=True)
    current = open(stamp).read().strip() if os.path.exists(stamp) else "1"
    if current != version or not os.path.exists(path) or not os.path.isdir(os.path.join(folder, "calib")):
        calib, ev, input_names = make()
        shutil.rmtree(os.path.join(folder, "calib"), ignore_errors=True)
        _write_calib(folder, calib, input_names)
        tmp = path + ".tmp.npz"
        np.savez(tmp, **ev)
        os.replace(tmp, path)
        with open(stamp, "w") as f:
            f.write(version + "\n")
    return dict(np.load(path))


# Fashion-MNIST ---------------------------------------------------------------------------------

def fashion():
    def make():
        xtr = _idx("train-images-idx3-ubyte.gz")
        rng = np.random.default_rng(0)
        pick = rng.choice(len(xtr), 256, replace=False)
        calib = [(xtr[i].astype(np.float32)[None, None] / 255,) for i in pick]
        x = _idx("t10k-images-idx3-ubyte.gz").astype(np.float32)[:, None] / 255
        y = _idx("t10k-labels-idx1-ubyte.gz").astype(np.int64)
        return calib, {"image": x, "labels": y}, ["image"]
    return _cached("fashion_cnn", make)


# ImageNet-style photos ---------------------------------------------------------------------------

# EfficientNet-Lite0's weights come from TensorFlow's EfficientNet-Lite, trained on RGB scaled to
# (x - 127) / 128 (the torchvision mean/std gives 16/20 instead of 17/20 on foolbox's photos and
# lower confidence): QuantKit's TF_LITE preset.
TF_MEAN, TF_STD = 127.0, 128.0


def _centre_crop(img, short=256, size=224):
    w, h = img.size
    s = short / min(w, h)
    img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def tf_lite_preprocess(img):
    a = (np.asarray(_centre_crop(img.convert("RGB")), np.float32) - TF_MEAN) / TF_STD
    return a.transpose(2, 0, 1)[None].copy()


def object_photo(path):
    """A cut-out photo (RGBA) centred on a white square with a 15 % margin."""
    im = Image.open(path).convert("RGBA")
    side = int(max(im.size) * 1.15)
    bg = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    bg.alpha_composite(im, ((side - im.size[0]) // 2, (side - im.size[1]) // 2))
    return bg.convert("RGB")


def efficientnet():
    """Calibration: every 6th photo of both unlabelled sets; agreement: the others of each set
    ('photos': opencv-doc + scikit-image pictures, many of them screenshots, charts and
    chessboards; 'objects': Tux Paint's real object photographs); top-1: foolbox's 20."""
    def make():
        photos = [tf_lite_preprocess(Image.open(p)) for p in sorted(glob.glob(os.path.join(CACHE, "data", "photos", "*")))]
        objects = [tf_lite_preprocess(object_photo(p)) for p in sorted(glob.glob(os.path.join(CACHE, "data", "objects", "*.png")))]
        calib = [(a,) for i, a in enumerate(photos) if i % 6 == 0] + [(a,) for i, a in enumerate(objects) if i % 6 == 0]
        agree = np.concatenate([a for i, a in enumerate(photos) if i % 6 != 0])
        agree_objects = np.concatenate([a for i, a in enumerate(objects) if i % 6 != 0])
        labelled = sorted(glob.glob(os.path.join(CACHE, "data", "foolbox", "imagenet_*.jpg")))
        x = np.concatenate([tf_lite_preprocess(Image.open(p)) for p in labelled])
        y = np.array([int(re.search(r"_(\d+)\.jpg$", p).group(1)) for p in labelled], np.int64)
        return calib, {"photos": agree, "objects": agree_objects, "imagenet": x, "labels": y}, ["input"]
    return _cached("efficientnet_lite0", make, version="tf_lite+objects")


# Rendered text for PP-OCRv4 rec -----------------------------------------------------------------

FONTS = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSansCondensed.ttf",
         "DejaVuSerifCondensed.ttf"]


def _font(name, size):
    for d in ["/usr/share/fonts/truetype/dejavu"]:
        p = os.path.join(d, name)
        if os.path.exists(p):
            return ImageFont.truetype(p, size)
    raise FileNotFoundError(f"{name}: install fonts-dejavu-core and fonts-dejavu-extra")


def _words():
    text = ""
    for name in ["GPL-3", "Apache-2.0", "MPL-2.0"]:
        with open(os.path.join("/usr/share/common-licenses", name), encoding="utf-8") as f:
            text += f.read()
    return sorted(set(w for w in re.findall(r"[A-Za-z]{3,12}", text)))


def render_line(text, font, rng):
    """A scanned-looking text crop: random paper and ink grey levels, margins, a slight blur,
    sensor noise and JPEG compression (so that the float model is not perfect either)."""
    from PIL import ImageFilter
    import io
    box = font.getbbox(text)
    mx, my = rng.randint(2, 12), rng.randint(2, 10)
    w, h = box[2] - box[0] + 2 * mx, box[3] - box[1] + 2 * my
    paper = rng.randint(150, 255)
    ink = rng.randint(0, max(0, paper - 130))
    img = Image.new("L", (w, h), paper)
    ImageDraw.Draw(img).text((mx - box[0], my - box[1]), text, font=font, fill=ink)
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 1.1)))
    a = np.asarray(img, np.float32) + np.random.default_rng(rng.randint(0, 2**31)).normal(0, rng.uniform(3, 12), (h, w))
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=rng.randint(30, 85))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def ocr_preprocess(img, height=48, width=320):
    """RapidOCR's rec preprocessing: resize to height 48 keeping the ratio (at most `width`),
    scale to [-1, 1], pad on the right with zeros to `width`."""
    w, h = img.size
    rw = min(width, int(np.ceil(height * w / h)))
    a = np.asarray(img.resize((rw, height), Image.BILINEAR), np.float32).transpose(2, 0, 1) / 255
    out = np.zeros((1, 3, height, width), np.float32)
    out[0, :, :, :rw] = (a - 0.5) / 0.5
    return out


def random_line(rng, words):
    """(text, rendered image) of one random line: 1-3 words, a word and a number, or digits, in
    a random DejaVu font and size."""
    kind = rng.random()
    if kind < 0.6:
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 3)))
    elif kind < 0.8:
        text = rng.choice(words) + " " + str(rng.randint(0, 99999))
    else:
        text = "".join(rng.choice("0123456789") for _ in range(rng.randint(4, 12)))
    font = _font(rng.choice(FONTS), rng.choice([18, 20, 24, 28, 32]))
    return text, render_line(text, font, rng)


def _ocr_samples(count, seed):
    rng = random.Random(seed)
    words = _words()
    xs, labels = [], []
    while len(xs) < count:
        text, img = random_line(rng, words)
        if img.size[0] / img.size[1] > 1.3 * 320 / 48:   # squeezed by more than 30%: skip
            continue
        xs.append(ocr_preprocess(img))
        labels.append(text)
    return xs, labels


def ppocr_rec():
    def make():
        calib, _ = _ocr_samples(64, seed=1)
        xs, labels = _ocr_samples(300, seed=2)
        return [(x,) for x in calib], {"x": np.concatenate(xs), "labels": np.array(labels)}, ["x"]
    return _cached("ppocrv4_rec", make)


def ocr_characters(model_path):
    import onnx
    m = onnx.load(model_path, load_external_data=False)
    chars = next(p.value for p in m.metadata_props if p.key == "character").split("\n")
    return ["<blank>"] + chars + [" "]


def ctc_decode(probs, chars):
    """Greedy CTC: argmax per step, merge repeats, drop blanks (index 0)."""
    out = []
    for seq in probs.argmax(-1):
        s, prev = [], -1
        for k in seq:
            if k != prev and k != 0:
                s.append(chars[k])
            prev = k
        out.append("".join(s).strip())
    return out


# Sentences for MiniLM --------------------------------------------------------------------------

class WordPiece:
    """BERT uncased tokenization: lower-case, strip accents, split on whitespace and punctuation,
    greedy longest-match WordPiece with '##' continuations (Devlin et al. 2019)."""

    def __init__(self, vocab_path):
        with open(vocab_path, encoding="utf-8") as f:
            self.vocab = {line.rstrip("\n"): i for i, line in enumerate(f)}

    def tokens(self, text):
        import unicodedata
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        words = re.findall(r"\w+|[^\w\s]", text)
        ids = []
        for w in words:
            start, pieces = 0, []
            while start < len(w):
                end = len(w)
                while end > start:
                    piece = ("##" if start else "") + w[start:end]
                    if piece in self.vocab:
                        pieces.append(self.vocab[piece])
                        break
                    end -= 1
                if end == start:
                    pieces = [self.vocab["[UNK]"]]
                    break
                start = end
            ids.extend(pieces)
        return ids

    def encode(self, text, length=64):
        ids = [self.vocab["[CLS]"]] + self.tokens(text)[: length - 2] + [self.vocab["[SEP]"]]
        mask = [1] * len(ids) + [0] * (length - len(ids))
        ids = ids + [self.vocab["[PAD]"]] * (length - len(ids))
        return np.array([ids], np.int64), np.array([mask], np.int64)


def sentences():
    text = ""
    for name in ["GPL-3", "Apache-2.0", "MPL-2.0", "LGPL-3", "Artistic"]:
        with open(os.path.join("/usr/share/common-licenses", name), encoding="utf-8") as f:
            text += " " + f.read()
    text = re.sub(r"\s+", " ", text)
    out = [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text)]
    return sorted(set(s for s in out if 30 <= len(s) <= 300 and re.search(r"[a-z]{3}", s)))


def minilm():
    def make():
        wp = WordPiece(os.path.join(MODELS, "minilm_vocab.txt"))
        sents = sentences()
        rng = random.Random(3)
        rng.shuffle(sents)
        enc = [wp.encode(s) for s in sents[:364]]
        calib = enc[:64]
        ids = np.concatenate([e[0] for e in enc[64:]])
        mask = np.concatenate([e[1] for e in enc[64:]])
        return calib, {"input_ids": ids, "attention_mask": mask}, ["input_ids", "attention_mask"]
    return _cached("minilm_l3", make)


# Rendered pages for PP-OCRv4 det ----------------------------------------------------------------

def det_page(rng, words, size=320):
    """A scanned-looking page of size x size with 3 to 8 lines of text at random places, sizes and
    grey levels (blur, noise, JPEG), and the lines' ink boxes [x0, y0, x1, y1] in pixels."""
    from PIL import ImageFilter
    import io
    paper = rng.randint(160, 255)
    img = Image.new("L", (size, size), paper)
    draw = ImageDraw.Draw(img)
    boxes = []
    y = rng.randint(4, 30)
    for _ in range(rng.randint(3, 8)):
        font = _font(rng.choice(FONTS), rng.choice([14, 16, 18, 22, 26, 30]))
        while True:
            text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 3)))
            if rng.random() < 0.3:
                text += " " + str(rng.randint(0, 9999))
            box = font.getbbox(text)
            if box[2] - box[0] <= size - 8:
                break
        h = box[3] - box[1]
        if y + h > size - 4:
            break
        x = rng.randint(4, size - 4 - (box[2] - box[0]))
        draw.text((x - box[0], y - box[1]), text, font=font, fill=rng.randint(0, max(0, paper - 110)))
        boxes.append([x, y, x + box[2] - box[0], y + h])
        y += h + rng.randint(10, 34)
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 0.9)))
    a = np.asarray(img, np.float32) + np.random.default_rng(rng.randint(0, 2**31)).normal(0, rng.uniform(2, 8), (size, size))
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=rng.randint(50, 90))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), boxes


def det_preprocess(img):
    """RapidOCR's det normalization: x/255, ImageNet mean/std, NCHW."""
    a = np.asarray(img, np.float32) / 255
    a = (a - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return a.transpose(2, 0, 1)[None].astype(np.float32)


def ppocr_det():
    def make():
        words = _words()
        rng = random.Random(11)
        calib = [(det_preprocess(det_page(rng, words)[0]),) for _ in range(32)]
        rng = random.Random(12)
        xs, boxes = [], np.full((150, 8, 4), -1, np.int32)
        for i in range(150):
            img, b = det_page(rng, words)
            xs.append(det_preprocess(img))
            boxes[i, :len(b)] = b
        return calib, {"x": np.concatenate(xs), "boxes": boxes}, ["x"]
    return _cached("ppocrv4_det", make)


def db_boxes(prob, thresh=0.3, box_thresh=0.5, unclip_ratio=1.6, min_size=3):
    """RapidOCR's DB post-processing of one [H, W] probability map, with axis-aligned boxes (the
    pages' lines are horizontal): connected regions of prob > thresh (8-connected), dropped when
    smaller than min_size or when their mean probability is below box_thresh, each box grown by
    area * unclip_ratio / perimeter on every side. Returns a list of [x0, y0, x1, y1]."""
    from collections import deque
    mask = prob > thresh
    seen = np.zeros_like(mask)
    h, w = mask.shape
    out = []
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        seen[y0, x0] = True
        queue, ys, xs = deque([(y0, x0)]), [], []
        while queue:
            y, x = queue.popleft()
            ys.append(y)
            xs.append(x)
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    v, u = y + dy, x + dx
                    if 0 <= v < h and 0 <= u < w and mask[v, u] and not seen[v, u]:
                        seen[v, u] = True
                        queue.append((v, u))
        bx0, by0, bx1, by1 = min(xs), min(ys), max(xs) + 1, max(ys) + 1
        if min(bx1 - bx0, by1 - by0) < min_size or prob[ys, xs].mean() < box_thresh:
            continue
        bw, bh = bx1 - bx0, by1 - by0
        d = bw * bh * unclip_ratio / (2 * (bw + bh))
        box = [max(0.0, bx0 - d), max(0.0, by0 - d), min(float(w), bx1 + d), min(float(h), by1 + d)]
        if min(box[2] - box[0], box[3] - box[1]) >= min_size + 2:
            out.append(box)
    return out


def box_iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_boxes(found, truth, iou=0.5):
    """Number of one-to-one matches with IoU >= iou (greedy, best IoU first)."""
    pairs = sorted(((box_iou(f, t), i, j) for i, f in enumerate(found) for j, t in enumerate(truth)), reverse=True)
    used_f, used_t, n = set(), set(), 0
    for v, i, j in pairs:
        if v < iou:
            break
        if i not in used_f and j not in used_t:
            used_f.add(i)
            used_t.add(j)
            n += 1
    return n
