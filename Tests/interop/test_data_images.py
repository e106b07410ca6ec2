"""QuantData's image decoding and preprocessing against Pillow and numpy references.

Decoded pixels must match Pillow within 1 level; resizes and the presets must match the numpy
reference of the same definition (data_reference.py) within 1e-4 on the foolbox ImageNet photos.
"""
import glob
import os

import numpy as np
import pytest
from PIL import Image

from conftest import CACHE
from data_reference import preprocess, preview, write_png16

PHOTOS = sorted(glob.glob(os.path.join(CACHE, "data", "foolbox", "imagenet_*.jpg")))


def decoded(path, h, w, gray=False):
    c = 1 if gray else 3
    out = preview("--shape", f"x=1,{c},{h},{w}", "--color", "gray" if gray else "rgb", "--resize", "nearest", inputs={"x": path})["x"]
    assert out.shape == (1, c, h, w) and out.dtype == np.float32
    return out[0].transpose(1, 2, 0)


def synthetic(h=37, w=53):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 5) % 256, (y * 7) % 256, (x * y) % 256], axis=2).astype(np.uint8)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "LA"])
def test_image_png_8bit_matches_pillow(tmp_path, mode):
    p = str(tmp_path / f"img_{mode}.png")
    src = Image.fromarray(synthetic())
    (src.convert(mode) if mode != "P" else src.quantize(64)).save(p)
    ref = np.asarray(Image.open(p).convert("RGB"), dtype=np.float32)
    got = decoded(p, *ref.shape[:2])
    assert np.abs(got - ref).max() <= 1
    if mode == "L":
        assert np.array_equal(decoded(p, *ref.shape[:2], gray=True)[:, :, 0], np.asarray(Image.open(p), dtype=np.float32))


def test_image_png_16bit_gray_and_rgb(tmp_path):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 65536, size=(9, 11), dtype=np.uint16)
    rgb = rng.integers(0, 65536, size=(9, 11, 3), dtype=np.uint16)
    write_png16(tmp_path / "g16.png", gray)
    write_png16(tmp_path / "rgb16.png", rgb)
    pil = np.asarray(Image.open(tmp_path / "g16.png"), dtype=np.float64) / 257
    assert np.abs(decoded(str(tmp_path / "g16.png"), 9, 11, gray=True)[:, :, 0] - pil).max() <= 1e-3
    pil_rgb = np.asarray(Image.open(tmp_path / "rgb16.png").convert("RGB"), dtype=np.float64)
    got = decoded(str(tmp_path / "rgb16.png"), 9, 11)
    assert np.abs(got - pil_rgb).max() <= 1
    assert np.abs(got - rgb / 257).max() <= 1e-3
    # 16-bit with alpha: alpha dropped, color not premultiplied, rescaled to 0-255.
    rgba = np.concatenate([rgb, rng.integers(0, 65536, size=(9, 11, 1), dtype=np.uint16)], axis=2)
    write_png16(tmp_path / "rgba16.png", rgba)
    assert np.abs(decoded(str(tmp_path / "rgba16.png"), 9, 11) - rgba[:, :, :3] / 257).max() <= 1


@pytest.mark.parametrize("mode", ["RGB", "P", "L", "RGBA"])
def test_image_bmp_matches_pillow(tmp_path, mode):
    p = str(tmp_path / f"img_{mode}.bmp")
    src = Image.fromarray(synthetic())
    (src.convert(mode) if mode != "P" else src.quantize(200)).save(p)
    ref = np.asarray(Image.open(p).convert("RGB"), dtype=np.float32)
    assert np.abs(decoded(p, *ref.shape[:2]) - ref).max() <= 1


@pytest.mark.parametrize("subsampling", [0, 2])
def test_image_jpeg_matches_pillow(tmp_path, subsampling):
    p = str(tmp_path / f"s{subsampling}.jpg")
    Image.fromarray(synthetic(64, 48)).save(p, quality=90, subsampling=subsampling)
    ref = np.asarray(Image.open(p).convert("RGB"), dtype=np.float32)
    assert np.abs(decoded(p, 64, 48) - ref).max() <= 1
    g = str(tmp_path / "gray.jpg")
    Image.fromarray(synthetic(64, 48)).convert("L").save(g, quality=85)
    assert np.abs(decoded(g, 64, 48, gray=True)[:, :, 0] - np.asarray(Image.open(g), dtype=np.float32)).max() <= 1


def test_image_real_photos_decode_like_pillow():
    assert len(PHOTOS) == 20, "the foolbox ImageNet samples are missing from .cache/data/foolbox"
    for p in PHOTOS[:6]:
        ref = np.asarray(Image.open(p).convert("RGB"), dtype=np.float32)
        assert np.abs(decoded(p, *ref.shape[:2]) - ref).max() <= 1, p


def lossless_photo(tmp_path, i):
    """A real photo as PNG, so the decode is exact and only preprocessing is compared."""
    rgb = np.asarray(Image.open(PHOTOS[i]).convert("RGB"))
    p = str(tmp_path / f"photo{i}.png")
    Image.fromarray(rgb).save(p)
    return p, rgb


@pytest.mark.parametrize("method", ["area", "bilinear", "nearest"])
@pytest.mark.parametrize("size", [(224, 224), (200, 300), (600, 700)])
def test_preprocess_resize_matches_numpy_reference(tmp_path, method, size):
    for i in (0, 10):  # 512x512 and 1024x683
        p, rgb = lossless_photo(tmp_path, i)
        got = preview("--shape", f"x=1,3,{size[0]},{size[1]}", "--color", "rgb", "--resize", method, inputs={"x": p})["x"][0]
        ref = preprocess(rgb, *size, method=method)
        assert np.abs(got - ref).max() < 1e-4, (PHOTOS[i], method, size)


@pytest.mark.parametrize("preset", ["IMAGENET", "PT_IMAGENET", "TF_LITE"])
def test_preprocess_presets_match_numpy_reference(tmp_path, preset):
    for i in (0, 3, 10):
        p, rgb = lossless_photo(tmp_path, i)
        got = preview("--shape", "x=1,3,224,224", "--preset", preset, inputs={"x": p})["x"][0]
        if preset == "IMAGENET":
            ref = preprocess(rgb, 224, 224, color="bgr", mean=(103.94, 116.78, 123.68), std=(57, 57, 57))
        elif preset == "TF_LITE":
            ref = preprocess(rgb, 224, 224, shorter=256, mean=(127, 127, 127), std=(128, 128, 128))
        else:
            ref = preprocess(rgb, 224, 224, shorter=256, scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
        assert np.abs(got - ref).max() < 1e-4, (PHOTOS[i], preset)


def test_preprocess_jpeg_batches_with_a_partial_last_batch_and_nhwc_uint8(tmp_path):
    with_list = tmp_path / "cal.txt"
    with_list.write_text("# photos\n" + "\n".join(PHOTOS[:5]) + "\n")
    from conftest import quantkit
    out = tmp_path / "out"
    r = quantkit("data-preview", "--input", f"x={with_list}", "--shape", "x=-1,32,32,3", "--dtype", "x=uint8",
                 "--color", "rgb", "--resize", "area", "--batch", "2", "--out", str(out))
    assert "3 batch(es), 5 item(s)" in r.stdout
    shapes = [np.load(out / f"batch_{b:05d}" / "x.npy").shape for b in range(3)]
    assert shapes == [(2, 32, 32, 3), (2, 32, 32, 3), (1, 32, 32, 3)]
    last = np.load(out / "batch_00002" / "x.npy")
    assert last.dtype == np.uint8
    ref = preprocess(np.asarray(Image.open(PHOTOS[4]).convert("RGB")), 32, 32, method="area").transpose(1, 2, 0)
    assert np.abs(last[0].astype(np.float64) - ref).max() <= 1.5  # JPEG decoders may differ by 1 level, plus rounding


def text_line(tmp_path, name, h, w):
    """A dark-on-light stripe image of h x w pixels (a text line's shape), as PNG."""
    rng = np.random.default_rng(h * 1000 + w)
    rgb = np.full((h, w, 3), 230, np.uint8)
    rgb[h // 4: 3 * h // 4, :: 3] = rng.integers(0, 60, (3 * h // 4 - h // 4, (w + 2) // 3, 3), dtype=np.uint8)
    p = str(tmp_path / name)
    Image.fromarray(rgb).save(p)
    return p, rgb


def test_size_with_a_zero_side_keeps_each_lines_aspect_ratio(tmp_path):
    # Text lines stored as they come (different widths) for an input [N, 3, H, W] with both sides
    # unknown: --size 48x0 gives each line height 48 and its natural width, like PaddleOCR.
    from conftest import quantkit
    d = tmp_path / "lines"
    d.mkdir()
    lines = [text_line(d, f"{i}.png", h, w) for i, (h, w) in enumerate([(24, 240), (40, 130), (32, 500)])]
    out = tmp_path / "out"
    quantkit("data-preview", "--input", f"x={d}", "--shape", "x=-1,3,-1,-1", "--color", "rgb", "--size", "48x0", "--out", str(out))
    for b, (p, rgb) in enumerate(lines):
        got = np.load(out / f"batch_{b:05d}" / "x.npy")[0]
        w = round(rgb.shape[1] * 48 / rgb.shape[0])
        assert got.shape == (3, 48, w)
        assert np.abs(got - preprocess(rgb, 48, w)).max() < 1e-4
    # A shape with one known side follows the image on the other without --size.
    r = quantkit("data-preview", "--input", f"x={d}", "--shape", "x=-1,3,48,-1", "--color", "rgb", "--dry-run")
    assert "batch 0: x float[1, 3, 48, 480]" in r.stdout, r.stdout


def test_text_lines_squeezed_or_center_cropped_are_qk2116(tmp_path):
    from conftest import quantkit
    d = tmp_path / "lines"
    d.mkdir()
    text_line(d, "0.png", 30, 400)
    text_line(d, "1.png", 30, 420)
    r = quantkit("data-preview", "--input", f"x={d}", "--shape", "x=-1,3,224,224", "--color", "rgb", "--dry-run")
    warnings = [l for l in r.stderr.splitlines() if "QK2116" in l]
    assert len(warnings) == 1, r.stderr  # once per input, not per image
    assert "(30x400) is resized to 224x224, stretching one side 13.3x" in warnings[0] and "--size 48x0" in warnings[0]
    r = quantkit("data-preview", "--input", f"x={d}", "--shape", "x=-1,3,224,224", "--preset", "TF_LITE", "--dry-run")
    assert "is center-cropped to 224x224 of 256x3413 after resizing: 7% of its longer side is kept" in r.stderr, r.stderr
    # Photos of ordinary shape pass without a warning.
    p, _ = lossless_photo(tmp_path, 10)
    r = quantkit("data-preview", "--input", f"x={p}", "--shape", "x=-1,3,224,224", "--preset", "TF_LITE", "--dry-run")
    assert "QK2116" not in r.stderr
    r = quantkit("data-preview", "--input", f"x={d}", "--shape", "x=-1,3,-1,-1", "--size", "0x0", "--dry-run", check=False)
    assert r.returncode != 0 and "QK2111" in r.stderr


def test_a_model_failing_on_a_batch_names_the_batch_its_files_and_the_data_warning(tmp_path):
    # The model reshapes its input to exactly 3x24x240 values: a 24x240 line squeezed to 224x224 fails.
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from conftest import quantkit
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, None, None])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 17280])
    g = helper.make_graph([helper.make_node("Reshape", ["x", "s"], ["r"]), helper.make_node("Relu", ["r"], ["y"])], "g", [x], [y],
                          [numpy_helper.from_array(np.array([1, 17280], np.int64), "s")])
    model = str(tmp_path / "m.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), model)
    d = tmp_path / "lines"
    d.mkdir()
    text_line(d, "0.png", 24, 240)
    r = quantkit("quantize", model, "--input", f"x={d}", "--size", "224x224", "--no-analysis", "-o", str(tmp_path / "q.onnx"), check=False)
    assert r.returncode != 0 and "QK3004" in r.stderr
    assert f"(calibration batch 1: x [1, 3, 224, 224], from x: '{d / '0.png'}')" in r.stderr, r.stderr
    assert "the data gave a warning first: QK2116" in r.stderr
    assert not os.path.exists(tmp_path / "q.onnx")
    # At its natural shape the same line calibrates.
    quantkit("quantize", model, "--input", f"x={d}", "--size", "24x0", "--no-analysis", "-o", str(tmp_path / "q.onnx"))
