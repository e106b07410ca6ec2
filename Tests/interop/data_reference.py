"""numpy references of QuantData's documented image definitions (see Sources/QuantData/Resize.swift
and ImagePreprocessing.swift), used by the test_data_* interop tests."""
import math
import os
import struct
import tempfile
import zlib

import numpy as np

from conftest import quantkit


def taps(n_in, n_out, method):
    """Row-stochastic (n_out, n_in) matrix of the 1-D resize taps."""
    s = n_in / n_out
    w = np.zeros((n_out, n_in))
    for d in range(n_out):
        if method == "nearest":
            w[d, min(int(math.floor(d * s)), n_in - 1)] = 1
        elif method == "bilinear":
            x = (d + 0.5) * s - 0.5
            x0 = math.floor(x)
            f = x - x0
            if x0 < 0:
                x0, f = 0, 0.0
            if x0 >= n_in - 1:
                x0, f = n_in - 1, 0.0
            w[d, x0] += 1 - f
            if f:
                w[d, x0 + 1] += f
        else:  # area: box [d*s, (d+1)*s) weighted by overlap
            lo, hi = d * s, (d + 1) * s
            for i in range(int(math.floor(lo)), min(int(math.ceil(hi)), n_in)):
                ov = min(i + 1, hi) - max(i, lo)
                if ov > 1e-12:
                    w[d, i] += ov / s
    return w


def resize(img, h, w, method, top=0, left=0, full=None):
    """Resizes HWC float64 `img` to `full` (default (h, w)) and returns the h x w window at (top, left)."""
    fh, fw = full or (h, w)
    wy = taps(img.shape[0], fh, method)[top:top + h]
    wx = taps(img.shape[1], fw, method)[left:left + w]
    out = np.tensordot(wy, img, axes=(1, 0))       # (h, W, C)
    out = np.tensordot(out, wx, axes=(1, 1))       # (h, C, w)
    return out.transpose(0, 2, 1)


def preprocess(rgb, h, w, color="rgb", method="bilinear", shorter=None, scale=1.0, mean=(), std=()):
    """The ImagePreprocessing pipeline on an RGB uint8 HWC array; returns CHW float64."""
    img = rgb.astype(np.float64)
    if color == "bgr":
        img = img[:, :, ::-1]
    elif color == "gray":
        img = (0.299 * img[:, :, 0] + 0.587 * img[:, :, 1] + 0.114 * img[:, :, 2])[:, :, None]
    if shorter is not None:
        ih, iw = img.shape[:2]
        if ih <= iw:
            rh, rw = shorter, iw * shorter // ih
        else:
            rh, rw = ih * shorter // iw, shorter
        out = resize(img, h, w, method, (rh - h) // 2, (rw - w) // 2, (rh, rw))
    else:
        out = resize(img, h, w, method)
    c = out.shape[2]
    mean = np.array(mean if mean else [0.0] * c).reshape(1, 1, -1)
    std = np.array(std if std else [1.0] * c).reshape(1, 1, -1)
    return ((out * scale - mean) / std).transpose(2, 0, 1)


def preview(*args, inputs):
    """Runs `quantkit data-preview` and returns batch 0's arrays by input name."""
    with tempfile.TemporaryDirectory() as out:
        cmd = ["data-preview"]
        for name, path in inputs.items():
            cmd += ["--input", f"{name}={path}"]
        quantkit(*cmd, *args, "--out", out)
        return {n: np.load(os.path.join(out, "batch_00000", n + ".npy")) for n in inputs}


def write_png16(path, arr):
    """Writes a 16-bit gray (H, W), RGB (H, W, 3) or RGBA (H, W, 4) PNG by hand (Pillow cannot write 16-bit color)."""
    h, w = arr.shape[:2]
    color = {2: 0, 3: {3: 2, 4: 6}.get(arr.shape[-1])}[arr.ndim]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
