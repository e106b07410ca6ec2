"""Writes examples/data/ocr: calibration images with text for the PP-OCR examples (det, rec, cls),
rendered with the DejaVu fonts from words of Debian's licence texts, as the benchmarks render
their text (Benchmarks/bench_data.py: paper and ink grey levels, blur, noise, JPEG).

    .venv/bin/python scripts/make-ocr-examples.py

- det/: 8 pages of 320x320 with 4 to 7 lines each at random places and sizes (PP-OCRv4 det finds
  text regions; on photos without text its output is all background).
- rec/: 16 single lines of 48x320: each line resized to height 48 keeping its aspect ratio and
  padded on the right with grey 128, which PaddleOCR's normalization (x/255 - 0.5)/0.5 maps to
  ~0, as RapidOCR pads its rec input with zeros.
- cls/: 16 lines of 48x192 made the same way, every other one turned by 180 degrees (the
  classifier tells 0 from 180 degrees).

The files are committed; examples/ppocrv4_det.json, ppocrv4_rec.json and ppocr_cls.toml read them.
"""
import os
import random
import sys

import numpy as np
from PIL import Image, ImageDraw

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "Benchmarks"))
import bench_data as bd  # noqa: E402

OUT = os.path.join(ROOT, "examples", "data", "ocr")


def line_text(rng, words, longest):
    while True:
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 3)))
        if rng.random() < 0.3:
            text += " " + str(rng.randint(0, 9999))
        if len(text) <= longest:
            return text


def padded_line(rng, words, width, longest, upside_down=False):
    """A rendered line (turned by 180 degrees if asked) resized to height 48, aspect kept, at
    most `width` wide, on grey 128 padding at the right."""
    font = bd._font(rng.choice(bd.FONTS), rng.choice([20, 24, 28, 32]))
    img = bd.render_line(line_text(rng, words, longest), font, rng)
    if upside_down:
        img = img.rotate(180)
    w, h = img.size
    rw = min(width, int(np.ceil(48 * w / h)))
    out = Image.new("RGB", (width, 48), (128, 128, 128))
    out.paste(img.resize((rw, 48), Image.BILINEAR), (0, 0))
    return out


def page(rng, words):
    """320x320 paper with 4-7 lines of text at random places, sizes and ink levels."""
    paper = rng.randint(170, 255)
    img = Image.new("L", (320, 320), paper)
    draw = ImageDraw.Draw(img)
    y = rng.randint(4, 30)
    for _ in range(rng.randint(4, 7)):
        font = bd._font(rng.choice(bd.FONTS), rng.choice([14, 18, 22, 26, 30]))
        text = line_text(rng, words, 24)
        box = font.getbbox(text)
        if y + box[3] - box[1] > 316:
            break
        x = rng.randint(2, max(2, 316 - (box[2] - box[0])))
        draw.text((x - box[0], y - box[1]), text, font=font, fill=rng.randint(0, max(0, paper - 120)))
        y += box[3] - box[1] + rng.randint(8, 30)
    a = np.asarray(img, np.float32) + np.random.default_rng(rng.randint(0, 2**31)).normal(0, rng.uniform(2, 8), img.size[::-1])
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).convert("RGB")


def main():
    rng = random.Random(7)
    words = bd._words()
    for sub in ("det", "rec", "cls"):
        os.makedirs(os.path.join(OUT, sub), exist_ok=True)
    for i in range(8):
        page(rng, words).save(os.path.join(OUT, "det", f"page{i:02d}.jpg"), quality=85)
    for i in range(16):
        padded_line(rng, words, 320, 30).save(os.path.join(OUT, "rec", f"line{i:02d}.jpg"), quality=90)
    for i in range(16):
        img = padded_line(rng, words, 192, 14, upside_down=i % 2 == 1)
        img.save(os.path.join(OUT, "cls", f"line{i:02d}.jpg"), quality=90)
    print(f"wrote 8 pages, 16 rec lines and 16 cls lines under {OUT}")


if __name__ == "__main__":
    main()
