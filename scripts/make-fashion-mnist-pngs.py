#!/usr/bin/env python3
"""Writes the 10,000 Fashion-MNIST test images as 28x28 gray PNG files plus a labels file.

Source: Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist, idx format: a
big-endian header of magic, count, rows, cols, then uint8 pixels). Output:
.cache/data/fashion-mnist/test/00000.png ... 09999.png and labels.txt ("file label" per line).
Idempotent: does nothing when every file is already there. Run with .venv/bin/python (numpy, Pillow).
"""
import gzip
import os
import struct
import sys

import numpy as np
from PIL import Image

SRC = "/usr/share/datasets/fashion-mnist"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, ".cache", "data", "fashion-mnist", "test")


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    images = read_idx(os.path.join(SRC, "t10k-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(SRC, "t10k-labels-idx1-ubyte.gz"))
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    os.makedirs(OUT, exist_ok=True)
    labels_path = os.path.join(OUT, "labels.txt")
    names = [f"{i:05d}.png" for i in range(len(images))]
    if os.path.exists(labels_path) and all(os.path.exists(os.path.join(OUT, n)) for n in names):
        print(f"fashion-mnist: {len(names)} PNGs already in {OUT}")
        return 0
    for name, img in zip(names, images):
        Image.fromarray(img).save(os.path.join(OUT, name))
    tmp = labels_path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(f"{n} {int(l)}\n" for n, l in zip(names, labels))
    os.replace(tmp, labels_path)
    print(f"fashion-mnist: wrote {len(names)} PNGs and labels.txt to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
