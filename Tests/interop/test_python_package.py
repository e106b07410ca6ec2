"""The Python package (issue 25), as the README's set-up installs it: the wheel built by
scripts/build-wheel.sh in the test venv, with the binary bundled.

- ONNX Runtime's `quantize_static`, imported from quantkit instead, writes the same bytes as the CLI
  given the same settings and the same arrays as .npy files (Fashion CNN, EfficientNet-Lite0,
  MiniLM-L3), and ONNX Runtime runs it;
- XQuant's entry points run its documented sample;
- `quantize()` returns the paths and the numbers of the run;
- errors arrive as QuantKitError with QuantKit's code;
- a reader of 1,000 items keeps memory flat (the feeds stream through a pipe)."""
import glob
import json
import gzip
import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import quantkit
from conftest import BINARY, CACHE, ROOT
from test_config_examples import xquant_sample_layout

FASHION = os.path.join(ROOT, "Tests", "fixtures", "fashion_cnn.onnx")
EFFICIENTNET = os.path.join(CACHE, "models", "efficientnet_lite0.onnx")
MINILM = os.path.join(CACHE, "models", "minilm_l3.onnx")


def fashion_items(count):
    with gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", "rb") as f:
        data = f.read()
    images = np.frombuffer(data, dtype=np.uint8, offset=16).reshape(-1, 28, 28)[:count]
    return [{"image": (im.astype(np.float32) / 255)[None, None]} for im in images]


def photo_items(count):
    from PIL import Image
    photos = sorted(glob.glob(os.path.join(CACHE, "data", "foolbox", "imagenet_*.jpg")))[:count]
    items = []
    for p in photos:
        im = np.asarray(Image.open(p).convert("RGB").resize((224, 224)), dtype=np.float32)
        items.append({"input": ((im - 127.5) / 127.5).transpose(2, 0, 1)[None].copy()})
    return items


def token_items():
    d = os.path.join(ROOT, "examples", "data", "minilm")
    return [{"input_ids": np.load(os.path.join(d, f"input_ids_{i}.npy")), "attention_mask": np.load(os.path.join(d, f"attention_mask_{i}.npy"))}
            for i in range(8)]


class Reader(quantkit.CalibrationDataReader):
    """A reader as ONNX Runtime's examples write them: get_next() until None."""

    def __init__(self, items):
        self.items = iter(items)

    def get_next(self):
        return next(self.items, None)


def as_folders(tmp_path, items):
    """Each input's arrays as NNN.npy files in a folder of its own: --input NAME=FOLDER."""
    args = []
    for name in items[0]:
        folder = tmp_path / ("npy_" + name)
        folder.mkdir()
        for i, feed in enumerate(items):
            np.save(folder / f"{i:03d}.npy", feed[name])
        args += ["--input", f"{name}={folder}"]
    return args


def need(path):
    if not os.path.exists(path):
        pytest.skip(f"{path} missing: run scripts/fetch-models.sh and scripts/export-efficientnet.sh")


def test_the_wheel_bundles_the_binary():
    """The installed package runs the binary inside the wheel, with the Swift runtime beside it."""
    path = quantkit.binary_path()
    assert path.endswith(os.path.join("site-packages", "quantkit", "bin", "quantkit")), path
    assert os.path.exists(os.path.join(os.path.dirname(path), "libswiftCore.so"))
    r = subprocess.run([sys.executable, "-m", "quantkit", "inspect", FASHION], capture_output=True, text=True)
    assert r.returncode == 0 and "ir_version" in r.stdout, r.stderr


# (model, items, quantize_static keyword arguments, the CLI options that say the same)
CASES = {
    "fashion_cnn": (FASHION, lambda: fashion_items(32), {},
                    ["--activations", "asym_s", "--weight-mode", "sym", "--no-per-channel-weights", "--method", "minmax"]),
    "efficientnet_lite0": (EFFICIENTNET, lambda: photo_items(8),
                           {"per_channel": True, "activation_type": quantkit.QuantType.QUInt8, "calibrate_method": quantkit.CalibrationMethod.Percentile},
                           ["--activations", "u8", "--weight-mode", "sym", "--method", "percentile", "--percentile", "0.99999"]),
    "minilm_l3": (MINILM, token_items, {"calibrate_method": quantkit.CalibrationMethod.Entropy, "extra_options": {"ActivationSymmetric": True}},
                  ["--activations", "s8", "--weight-mode", "sym", "--no-per-channel-weights", "--method", "entropy"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_quantize_static_drop_in_equals_the_cli(case, tmp_path):
    model, make, kwargs, cli_options = CASES[case]
    need(model)
    items = make()
    assert len(items) >= 8
    dropped = tmp_path / "dropin.onnx"
    quantkit.quantize_static(model, str(dropped), Reader(items), **kwargs)
    cli = tmp_path / "cli.onnx"
    r = subprocess.run([BINARY, "quantize", model, *as_folders(tmp_path, items), "-o", str(cli), "--no-analysis", "--quiet", *cli_options],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert dropped.read_bytes() == cli.read_bytes()
    # ONNX Runtime runs it and agrees with the float model on the first item.
    feed = items[0]
    f = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feed)[0].ravel()
    q = ort.InferenceSession(str(dropped), providers=["CPUExecutionProvider"]).run(None, feed)[0].ravel()
    assert np.dot(f, q) / (np.linalg.norm(f) * np.linalg.norm(q)) > 0.95


def test_quantize_static_qoperator_writes_the_deploy_model(tmp_path):
    out = tmp_path / "qop.onnx"
    quantkit.quantize_static(FASHION, str(out), Reader(fashion_items(16)), quant_format=quantkit.QuantFormat.QOperator)
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "QLinearConv" in ops and "Conv" not in ops, ops
    x = fashion_items(1)[0]
    y = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, x)[0]
    assert y.shape == (1, 10)


def test_strings_work_where_onnxruntime_is_absent(tmp_path):
    """The enums are accepted as their names too (the package's own enums when ONNX Runtime is
    not installed): the same call as with the members writes the same model."""
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    quantkit.quantize_static(FASHION, str(a), Reader(fashion_items(8)), activation_type="QUInt8", calibrate_method="MinMax", per_channel=True)
    quantkit.quantize_static(FASHION, str(b), fashion_items(8), activation_type=quantkit.QuantType.QUInt8, per_channel=True)
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("kwargs,named", [
    ({"calibrate_method": "Distribution"}, "calibrate_method=Distribution"),
    ({"weight_type": quantkit.QuantType.QInt16}, "weight_type=QInt16"),
    ({"activation_type": quantkit.QuantType.QUInt8, "extra_options": {"ActivationSymmetric": True}}, "ActivationSymmetric=True"),
    ({"extra_options": {"DedicatedQDQPair": True}}, "extra_options['DedicatedQDQPair']"),
    ({"calibrate_method": "Median"}, "calibrate_method='Median'"),
])
def test_what_has_no_equivalent_is_qk8002(kwargs, named, tmp_path):
    out = tmp_path / "x.onnx"
    with pytest.raises(quantkit.QuantKitError) as e:
        quantkit.quantize_static(FASHION, str(out), Reader(fashion_items(2)), **kwargs)
    assert e.value.code == "QK8002" and named in e.value.message, str(e.value)
    assert not out.exists()


def test_errors_carry_quantkits_code(tmp_path, monkeypatch):
    out = tmp_path / "x.onnx"
    # A feed naming an input the model does not have: the binary's QK2102.
    with pytest.raises(quantkit.QuantKitError) as e:
        quantkit.quantize_static(FASHION, str(out), [{"pixels": np.zeros((1, 1, 28, 28), np.float32)}])
    assert e.value.code == "QK2102" and "'pixels'" in e.value.message and e.value.fix
    # A reader that fails midway: its exception as QK8003, nothing written.
    def failing():
        yield fashion_items(1)[0]
        raise RuntimeError("disk gone")
    with pytest.raises(quantkit.QuantKitError) as e:
        quantkit.quantize_static(FASHION, str(out), failing)
    assert e.value.code == "QK8003" and "disk gone" in e.value.message
    # A feed that is not a dict of arrays.
    with pytest.raises(quantkit.QuantKitError) as e:
        quantkit.quantize_static(FASHION, str(out), [np.zeros((1, 1, 28, 28), np.float32)])
    assert e.value.code == "QK8003"
    with pytest.raises(quantkit.QuantKitError) as e:
        quantkit.quantize_static(FASHION, str(out), [{"image": np.array(["a"], dtype=object)}])
    assert e.value.code == "QK8003" and "dtype object" in e.value.message
    assert not out.exists() and not (tmp_path / "x.qparams.json").exists()
    # A binary that fails without a coded error (an internal failure): QK8004 with its exit status.
    monkeypatch.setenv("QUANTKIT_BINARY", "/bin/false")
    with pytest.raises(quantkit.QuantKitError) as e:
        quantkit.quantize_static(FASHION, str(out), fashion_items(1))
    assert e.value.code == "QK8004" and "status 1" in e.value.message
    monkeypatch.setenv("QUANTKIT_BINARY", str(tmp_path / "nothing"))
    with pytest.raises(quantkit.QuantKitError) as e:
        quantkit.quantize_static(FASHION, str(out), fashion_items(1))
    assert e.value.code == "QK8001"


def test_a_malformed_stream_is_qk2118(tmp_path):
    """The binary's side of the pipe: a stream cut inside a batch, or a batch missing an input."""
    def run(data):
        return subprocess.run([BINARY, "calibrate", FASHION, "--input-stream", "-", "--stats-out", str(tmp_path / "s.json"), "--quiet"],
                              input=data, capture_output=True)
    r = run(b"\x05\x00\x00\x00ima")
    assert r.returncode == 2 and b"QK2118" in r.stderr and b"ends inside" in r.stderr
    r = run(struct.pack("<I", 0))
    assert r.returncode == 2 and b"QK2118" in r.stderr and b"empty batch" in r.stderr
    assert not (tmp_path / "s.json").exists()


def test_quantize_returns_paths_and_numbers(tmp_path, capfd):
    out = tmp_path / "fashion.q.onnx"
    r = quantkit.quantize(FASHION, Reader(fashion_items(32)), output=str(out), analysis_samples=16, progress=True)
    assert r.model == str(out) and out.exists()
    assert os.path.exists(r.parameters) and os.path.exists(r.plan)
    assert set(r.reports) == {"md", "html", "json"} and all(os.path.exists(p) for p in r.reports.values())
    assert r.outputs["logits"]["cosine"] > 0.99 and r.outputs["logits"]["top1Agreement"] >= 0.9
    assert r.summary["integer"].startswith("4 of 4")
    # The verdict is the report's: NOT OK exactly when it has error-level findings.
    assert r.verdict.startswith("NOT OK") == any(" error: " in f or f.startswith("QK6006") for f in r.report["findings"]), (r.verdict, r.report["findings"])
    rows = r.plan_rows()
    assert rows and {"op_id", "node", "type", "dtype", "per", "saturation"} <= set(rows[0])
    # The bar was drawn (forced on: the test's stderr is not a terminal).
    assert "calibrate" in capfd.readouterr().err
    # The analysis replayed the stream's first 16 items: as many as the report says.
    assert r.report["samples"] == 16


def test_xquant_entry_points_run_the_documented_sample(tmp_path, monkeypatch):
    xquant_sample_layout(tmp_path)
    monkeypatch.chdir(tmp_path)
    r = quantkit.quantize_onnx_model("inference.json")
    assert r.model.endswith(os.path.join("resnet50", "inference.q.onnx")) and os.path.exists(r.model)
    ort.InferenceSession(r.model, providers=["CPUExecutionProvider"])
    # The same as a dict with the model and output given as XQuant's arguments.
    import json
    cfg = json.load(open("inference.json"))
    del cfg["model_parameters"]["onnx_model"]
    r2 = quantkit.quantize_onnx_model(cfg, model=onnx.load("resnet50/inference.onnx"), output=str(tmp_path / "dict.q.onnx"))
    assert os.path.exists(r2.model) and r2.model.endswith("dict.q.onnx")
    p = subprocess.run([sys.executable, "-m", "quantkit", "-c", "inference.json", "-i", "resnet50/inference.onnx", "-o", "cli.q.onnx", "--quiet"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert open(r.model, "rb").read() == open("cli.q.onnx", "rb").read()


MEMORY_PROBE = textwrap.dedent("""
    import resource, sys
    import numpy as np
    import quantkit
    n = int(sys.argv[1])
    def reader():
        rng = np.random.default_rng(0)
        for _ in range(n):
            yield {"input": rng.standard_normal((1, 3, 224, 224), dtype=np.float32)}
    quantkit.quantize_static(sys.argv[2], sys.argv[3], reader(), per_channel=True)
    # This process's own peak (VmHWM: ru_maxrss would carry pytest's peak across exec), and the
    # binary's (its ru_maxrss: its own peak, or this process's size when it was spawned, before
    # any item was made).
    own = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    print(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
""")


def test_a_reader_of_1000_items_keeps_memory_flat(tmp_path):
    """The peak memory of the Python process and of the binary over 1,000 items stays within 10 %
    of the peaks over 100: the feeds are streamed, not collected (1,000 items are 600 MB)."""
    need(EFFICIENTNET)

    def peaks(n):
        r = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(n), EFFICIENTNET, str(tmp_path / f"q{n}.onnx")], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        py, binary = map(int, r.stdout.split()[-2:])
        return py / 1024, binary / 1024

    few, many = peaks(100), peaks(1000)
    assert many[0] < 1.10 * few[0] + 10, f"Python peak {few[0]:.0f} MB over 100 items, {many[0]:.0f} MB over 1000"
    assert many[1] < 1.10 * few[1] + 10, f"quantkit peak {few[1]:.0f} MB over 100 items, {many[1]:.0f} MB over 1000"


def quantize_linear_parameters(path):
    """{tensor: (scale, zero point)} of every per-tensor QuantizeLinear in the model at `path`."""
    m = onnx.load(str(path))
    init = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
    return {n.input[0]: (float(init[n.input[1]]), int(init[n.input[2]])) for n in m.graph.node
            if n.op_type == "QuantizeLinear" and init[n.input[1]].size == 1}


def test_tensor_quant_overrides_export_to_onnxruntime(tmp_path):
    """A QuantKit run's parameters handed to ONNX Runtime's quantizer as TensorQuantOverrides:
    every activation both quantize gets QuantKit's scale and zero point there too."""
    from onnxruntime.quantization import quantize_static as ort_quantize_static
    items = fashion_items(16)
    ours = tmp_path / "qk.onnx"
    quantkit.quantize_static(FASHION, str(ours), Reader(items))
    overrides = quantkit.tensor_quant_overrides(str(tmp_path / "qk.qparams.json"), float_model=FASHION)
    assert overrides and all(isinstance(v[0]["quant_type"], quantkit.QuantType) for v in overrides.values())
    # Through a JSON file, as one team hands it to another.
    quantkit.save_tensor_quant_overrides(overrides, str(tmp_path / "overrides.json"))
    theirs = tmp_path / "ort.onnx"
    ort_quantize_static(FASHION, str(theirs), Reader(items),
                        extra_options={"TensorQuantOverrides": quantkit.load_tensor_quant_overrides(str(tmp_path / "overrides.json"))})
    a, b = quantize_linear_parameters(ours), quantize_linear_parameters(theirs)
    common = set(a) & set(b)
    assert len(common) >= 6, (sorted(a), sorted(b))
    for t in common:
        assert b[t][1] == a[t][1] and abs(b[t][0] - a[t][0]) <= 1e-7 * a[t][0], (t, a[t], b[t])


def test_tensor_quant_overrides_import_from_onnxruntime(tmp_path):
    """ONNX Runtime's overrides (rmin/rmax, scale/zero_point) given to QuantKit: the tensors get
    the same parameters as ONNX Runtime's quantizer gives them from the same overrides."""
    from onnxruntime.quantization import quantize_static as ort_quantize_static
    items = fashion_items(16)
    overrides = {"/features/features.6/Relu_output_0": [{"rmin": np.array(0.0, np.float32), "rmax": np.array(2.5, np.float32)}],
                 "/features/features.2/Relu_output_0": [{"quant_type": quantkit.QuantType.QUInt8, "scale": np.array(0.02, np.float32), "zero_point": np.array(0, np.uint8)}]}
    ours, theirs = tmp_path / "qk.onnx", tmp_path / "ort.onnx"
    quantkit.quantize_static(FASHION, str(ours), Reader(items), activation_type=quantkit.QuantType.QUInt8,
                             extra_options={"TensorQuantOverrides": overrides})
    ort_quantize_static(FASHION, str(theirs), Reader(items), activation_type=quantkit.QuantType.QUInt8,
                        extra_options={"TensorQuantOverrides": overrides})
    a, b = quantize_linear_parameters(ours), quantize_linear_parameters(theirs)
    for t in overrides:
        assert a[t][1] == b[t][1] and abs(a[t][0] - b[t][0]) <= 1e-6 * b[t][0], (t, a[t], b[t])
    assert abs(a["/features/features.6/Relu_output_0"][0] - 2.5 / 255) < 1e-9
    qparams = json.load(open(tmp_path / "qk.qparams.json"))["tensors"]
    assert qparams["/features/features.6/Relu_output_0"]["method"] == "TensorQuantOverrides"


@pytest.mark.parametrize("overrides,named", [
    ({"no_such_tensor": [{"rmin": 0.0, "rmax": 1.0}]}, "'no_such_tensor' is not in the model"),
    ({"/features/features.6/Relu_output_0": [{"quant_type": "QUInt16"}]}, "is QUInt16 but the run quantizes activations as int8"),
    ({"classifier.weight": [{"scale": 0.1, "zero_point": 0}]}, "weight 'classifier.weight' is given a scale"),
    ({"/features/features.6/Relu_output_0": [{"rmin": 2.0, "rmax": 1.0}]}, "rmin 2.0 is above rmax 1.0"),
    ({"/features/features.6/Relu_output_0": [{"convert": {"quant_type": "QUInt16"}}]}, "'convert' has no QuantKit equivalent"),
])
def test_tensor_quant_overrides_that_cannot_apply_are_qk7023(overrides, named, tmp_path):
    out = tmp_path / "x.onnx"
    with pytest.raises(quantkit.QuantKitError) as e:
        quantkit.quantize_static(FASHION, str(out), Reader(fashion_items(2)), extra_options={"TensorQuantOverrides": overrides})
    assert e.value.code == "QK7023" and named in e.value.message, str(e.value)
    assert not out.exists()
