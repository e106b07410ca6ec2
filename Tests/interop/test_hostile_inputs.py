"""Hostile and mistaken inputs (the reliability issue's cases): each is refused with a code,
allocates little, and changes no file the command reads. Models are built here with `onnx`."""
import hashlib
import io
import os
import struct
import subprocess
import zlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from conftest import BINARY, ROOT, quantkit

FASHION = os.path.join(ROOT, "Tests", "fixtures", "fashion_cnn.onnx")


def relu_model(path, shape, opset=17):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return str(path)


def digest(paths):
    return {str(p): hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths}


def run_measured(*args):
    """Runs quantkit under GNU time; returns (result without time's line, peak resident MB)."""
    r = subprocess.run(["/usr/bin/time", "-f", "%M", BINARY, *args], capture_output=True, text=True)
    lines = r.stderr.rstrip("\n").split("\n")
    kb = int(lines[-1])
    return subprocess.CompletedProcess(r.args, r.returncode, r.stdout, "\n".join(lines[:-1]) + "\n"), kb / 1024


def refused(r, code):
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert r.stderr.startswith(f"error: {code} "), r.stderr[-2000:]


def png_header_only(path, width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b""))


def jpeg_declaring(path, width, height):
    b = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(b, "JPEG")
    d = bytearray(b.getvalue())
    sof = d.find(b"\xff\xc0")
    d[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(d))


def test_decompression_bombs_are_refused_from_the_header_qk2115(tmp_path):
    model = relu_model(tmp_path / "m.onnx", [1, 3, 32, 32])
    for name, make in [("jpeg", lambda p: jpeg_declaring(p / "b.jpg", 65500, 65500)),
                       ("png", lambda p: png_header_only(p / "b.png", 20000, 20000))]:
        folder = tmp_path / name
        folder.mkdir()
        make(folder)
        r, mb = run_measured("quantize", model, "--input", f"x={folder}", "-o", str(tmp_path / "q.onnx"))
        refused(r, "QK2115")
        assert "the image header declares" in r.stderr and "--max-image-pixels" in r.stderr
        assert mb < 1024, f"{name}: {mb:.0f} MB"
    # The limit is an option: a tiny one refuses an ordinary photo, the default takes it.
    folder = tmp_path / "ok"
    folder.mkdir()
    Image.new("RGB", (40, 30), (1, 2, 3)).save(folder / "a.png")
    refused(quantkit("quantize", model, "--input", f"x={folder}", "--max-image-pixels", "100", "-o", str(tmp_path / "q.onnx"),
                     "--no-analysis", check=False), "QK2115")
    quantkit("quantize", model, "--input", f"x={folder}", "-o", str(tmp_path / "q.onnx"), "--no-analysis")


def test_declared_shapes_too_large_or_overflowing_are_qk2115(tmp_path):
    for shape in ([1, 3, 100000, 100000], [2 ** 62, 3, 8, 8]):
        model = relu_model(tmp_path / "m.onnx", shape)
        r, mb = run_measured("quantize", model, "--input", "x=random", "-o", str(tmp_path / "q.onnx"))
        refused(r, "QK2115")
        assert mb < 1024
    model = relu_model(tmp_path / "img.onnx", [1, 3, 32, 32])
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    refused(quantkit("quantize", model, "--input", f"x={folder}", "--size", "100000x100000", "-o", str(tmp_path / "q.onnx"),
                     check=False), "QK2115")


def test_bad_npy_files_are_coded_in_run_and_quantize_qk2108(tmp_path):
    model = relu_model(tmp_path / "m.onnx", [1, 3, 4, 4])
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4611686018427387904), }"
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    (tmp_path / "huge.npy").write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\0" * 16)
    np.save(tmp_path / "void.npy", np.zeros((1, 3, 4, 4), dtype="V2"))  # how numpy stores bfloat16
    np.save(tmp_path / "ok.npy", np.ones((1, 3, 4, 4), np.float32))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "ok.npy").read_bytes()[:150])
    for name, words in [("huge", "too large to exist"), ("void", "unsupported dtype '|V2'"), ("cut", "needs 192")]:
        r = quantkit("run", model, "--input", f"x={tmp_path / (name + '.npy')}", check=False)
        refused(r, "QK2108")
        assert words in r.stderr, r.stderr


def test_run_output_dir_that_is_a_file_is_qk1010(tmp_path):
    model = relu_model(tmp_path / "m.onnx", [1, 4])
    np.save(tmp_path / "x.npy", np.ones((1, 4), np.float32))
    refused(quantkit("run", model, "--input", f"x={tmp_path / 'x.npy'}", "--output-dir", str(tmp_path / "x.npy"), check=False), "QK1010")


def test_truncated_jpeg_is_qk2108_not_gray_rows(tmp_path):
    model = relu_model(tmp_path / "m.onnx", [1, 3, 32, 32])
    folder = tmp_path / "imgs"
    folder.mkdir()
    b = io.BytesIO()
    Image.effect_noise((256, 256), 64).convert("RGB").save(b, "JPEG", quality=95)
    (folder / "t.jpg").write_bytes(b.getvalue()[:len(b.getvalue()) // 3])
    r = quantkit("quantize", model, "--input", f"x={folder}", "-o", str(tmp_path / "q.onnx"), check=False)
    refused(r, "QK2108")
    assert "Premature end of JPEG file" in r.stderr


def test_repeated_input_and_zero_bins_are_refused(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    np.save(data / "0.npy", np.random.rand(1, 1, 28, 28).astype(np.float32))
    refused(quantkit("quantize", FASHION, "--input", f"image={data}", "--input", f"image={data}", "-o", str(tmp_path / "q.onnx"),
                     check=False), "QK2101")
    # bins 0 crashed the histogram with minmax (histograms are kept for every method).
    r = quantkit("quantize", FASHION, "--input", f"image={data}", "--bins", "0", "--method", "minmax", "-o", str(tmp_path / "q.onnx"),
                 check=False)
    refused(r, "QK7004")
    refused(quantkit("calibrate", FASHION, "--input", f"image={data}", "--bins", "4000000000", "--stats-out", str(tmp_path / "s.json"),
                     check=False), "QK7004")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_outputs_never_replace_what_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.onnx").write_bytes(open(FASHION, "rb").read())
    (tmp_path / "data").mkdir()
    for i in range(2):
        np.save(tmp_path / "data" / f"{i}.npy", np.random.rand(1, 1, 28, 28).astype(np.float32))
    (tmp_path / "list.txt").write_text("data/0.npy\ndata/1.npy\n")
    os.symlink("m.onnx", tmp_path / "link.onnx")
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "r.onnx").write_bytes(open(FASHION, "rb").read())
    os.symlink("real", tmp_path / "dirlink")
    for side in ("o.qparams.json", "o.report.json"):
        (tmp_path / side).write_bytes(open(FASHION, "rb").read())
    config = tmp_path / "c.json"
    config.write_text('{"model_parameters": {"onnx_model": "m.onnx"},'
                      ' "calibration_parameters": {"calibration_step": 1, "input_parametres": [{"input_name": "image", "random": true}]}}')
    watched = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()]
    before = digest(watched)
    cases = [
        ("quantize", "link.onnx", "--input", "image=data", "-o", "m.onnx"),
        ("quantize", "dirlink/r.onnx", "--input", "image=data", "-o", "real/r.onnx"),
        ("quantize", "m.onnx", "--input", "image=data", "-o", "q.onnx", "--stats-out", "m.onnx"),
        ("quantize", "m.onnx", "--input", "image=data", "-o", "data/0.npy"),
        ("quantize", "m.onnx", "--input", "image=list.txt", "-o", "list.txt"),
        ("calibrate", "m.onnx", "--input", "image=list.txt", "--stats-out", "list.txt"),
        ("calibrate", "m.onnx", "--input", "image=data", "--stats-out", "data/1.npy"),
        ("quantize", "o.qparams.json", "--input", "image=data", "-o", "o.onnx"),
        ("quantize", "o.report.json", "--input", "image=data", "-o", "o.onnx"),
        ("quantize", "-c", "c.json", "-o", "c.json"),
    ]
    for args in cases:
        r = quantkit(*args, check=False)
        refused(r, "QK7001")
    assert digest(watched) == before
    assert not any(p.name.startswith(".") for p in tmp_path.rglob("*")), "a temporary file was left behind"


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path):
    model = relu_model(tmp_path / "m.onnx", [1, 4])
    dead = tmp_path / ".m.q.onnx.tmp-999999999-7"  # no such process
    live = tmp_path / f".m.q.onnx.tmp-{os.getpid()}-7"  # this test runs: kept
    dead.write_bytes(b"partial")
    live.write_bytes(b"partial")
    quantkit("quantize", model, "--input", "x=random", "--no-analysis")
    assert not dead.exists() and live.exists()
    assert (tmp_path / "m.q.onnx").exists() and (tmp_path / "m.qparams.json").exists()


def test_external_data_linked_outside_the_model_folder_is_qk1008(tmp_path):
    inside = tmp_path / "model"
    inside.mkdir()
    w = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y], [w])
    path = str(inside / "m.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path,
              save_as_external_data=True, location="m.data", size_threshold=0)
    assert quantkit("inspect", path).returncode == 0
    outside = tmp_path / "elsewhere.data"
    os.replace(inside / "m.data", outside)
    for target in (str(outside), "/etc/passwd"):
        if os.path.lexists(inside / "m.data"):
            os.remove(inside / "m.data")
        os.symlink(target, inside / "m.data")
        r = quantkit("inspect", path, check=False)
        refused(r, "QK1008")
        assert "is a link to" in r.stderr


def two_input_model(path):
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    g = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "g", [a, b], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return str(path)


def test_list_files_crlf_and_extra_columns(tmp_path):
    model = two_input_model(tmp_path / "two.onnx")
    for i in range(3):
        np.save(tmp_path / f"{i}.npy", np.random.rand(1, 4).astype(np.float32))
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(b"0.npy;1.npy\r\n1.npy;2.npy\r\n")
    r = quantkit("quantize", model, "--list", str(crlf), "-o", str(tmp_path / "q.onnx"), "--no-analysis")
    assert r.stdout.startswith("calibrated 2 items in 2 batches"), r.stdout  # read as one line before: QK2109
    three = tmp_path / "three.txt"
    three.write_text("0.npy;1.npy;2.npy\n1.npy;2.npy;0.npy\n")
    r = quantkit("quantize", model, "--list", str(three), "-o", str(tmp_path / "q3.onnx"), check=False)
    refused(r, "QK2113")
    assert "lines hold 3 files but 2 model input(s) read the list" in r.stderr


def test_configuration_syntax_and_values_name_the_key(tmp_path):
    model = two_input_model(tmp_path / "two.onnx")
    inputs = '"input_parametres": [{"input_name": "a", "random": true}, {"input_name": "b", "random": true}]'

    def config(name, calibration, model_extra=""):
        p = tmp_path / name
        p.write_text('{"model_parameters": {"onnx_model": "%s"%s}, "calibration_parameters": {%s}}' % (model, model_extra, calibration))
        return str(p)
    r = quantkit("quantize", "-c", config("comma.json", inputs, ","), "-o", str(tmp_path / "q.onnx"), check=False)
    refused(r, "QK7006")
    assert "a comma before a closing bracket or brace at line 1" in r.stderr
    r = quantkit("quantize", "-c", config("step.json", '"calibration_step": 2.5, ' + inputs), "-o", str(tmp_path / "q.onnx"), check=False)
    refused(r, "QK7004")
    assert r.stderr.startswith("error: QK7004 calibration_parameters.calibration_step is 2.5;"), r.stderr
    r = quantkit("quantize", "-c", config("seed.json", '"seed": -3, ' + inputs), "-o", str(tmp_path / "q.onnx"), check=False)
    assert r.stderr.startswith("error: QK7004 calibration_parameters.seed is -3;"), r.stderr
    toml = tmp_path / "c.toml"
    toml.write_text(f'[parse]\nmodel = "{model}"\n[quantize]\nsaturation = "percentile"\npercentile = nan\n')
    r = quantkit("quantize", "-c", str(toml), "-o", str(tmp_path / "q.onnx"), check=False)
    refused(r, "QK7004")
    assert r.stderr.startswith("error: QK7004 quantize.percentile is nan; expected a finite number"), r.stderr
    assert not (tmp_path / "q.onnx").exists()


def test_model_values_that_size_huge_outputs_are_refused_qk3006(tmp_path):
    one = tmp_path / "one.npy"
    np.save(one, np.ones(1, np.float32))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    shape = numpy_helper.from_array(np.array([100000, 100000, 100], np.int64), "s")
    cos = helper.make_graph([helper.make_node("ConstantOfShape", ["s"], ["c"]), helper.make_node("Add", ["x", "c"], ["y"])], "g", [x], [y], [shape])
    scalars = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in [("s", 0), ("l", 1e30), ("d", 1)]]
    rng = helper.make_graph([helper.make_node("Range", ["s", "l", "d"], ["r"]), helper.make_node("Add", ["x", "r"], ["y"])], "g", [x], [y], scalars)
    for name, g in [("cos", cos), ("range", rng)]:
        path = str(tmp_path / f"{name}.onnx")
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
        r, mb = run_measured("run", path, "--input", f"x={one}")
        refused(r, "QK3006")
        assert mb < 1024, f"{name}: {mb:.0f} MB"
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [100000, 1])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 100000])
    path = str(tmp_path / "bcast.onnx")
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "g", [a, b], [y]),
                                opset_imports=[helper.make_opsetid("", 17)]), path)
    np.save(tmp_path / "a.npy", np.ones((100000, 1), np.float32))
    np.save(tmp_path / "b.npy", np.ones((1, 100000), np.float32))
    r, mb = run_measured("run", path, "--input", f"a={tmp_path / 'a.npy'}", "--input", f"b={tmp_path / 'b.npy'}")
    refused(r, "QK3004")
    assert "exceeds 2^31 elements" in r.stderr and mb < 1024


def test_tensor_file_whose_dims_claim_memory_without_data_is_qk1103(tmp_path):
    t = TensorProto()
    t.dims.extend([3, 3, 26, 134746144])
    t.data_type = TensorProto.FLOAT
    (tmp_path / "x.pb").write_bytes(t.SerializeToString())
    model = relu_model(tmp_path / "m.onnx", [3, 3, 26, 134746144])
    r, mb = run_measured("run", model, "--input", f"x={tmp_path / 'x.pb'}")
    refused(r, "QK1103")
    assert "has 0 values for" in r.stderr and mb < 1024
