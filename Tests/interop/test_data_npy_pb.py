"""QuantData's .npy, raw and .pb readers against numpy and onnx.numpy_helper, the multi-input
MiniLM lists, and Python preprocessing functions, through `quantkit data-preview`."""
import os
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import CACHE, quantkit
from data_reference import preview

DTYPES = ["float32", "float16", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "bool"]
ONNX_NAMES = {"float32": "float32", "float64": "double"}


def sample(dtype, shape=(2, 3, 4)):
    rng = np.random.default_rng(1)
    if dtype == "bool":
        return rng.integers(0, 2, size=shape).astype(bool)
    if dtype.startswith("float"):
        return (rng.standard_normal(shape) * 100).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_npy_round_trips_every_dtype_and_order(tmp_path, dtype, order):
    a = np.asarray(sample(dtype), order=order)
    assert a.flags.f_contiguous == (order == "F")
    p = tmp_path / "a.npy"
    np.save(p, a)
    got = preview("--shape", "x=-1,3,4", "--dtype", f"x={ONNX_NAMES.get(dtype, dtype)}", inputs={"x": str(p)})["x"]
    assert got.dtype == a.dtype and got.shape == a.shape
    assert np.array_equal(got, a)


def test_npy_without_batch_dimension_and_big_endian(tmp_path):
    a = np.arange(12, dtype=">i4").reshape(3, 4)
    np.save(tmp_path / "be.npy", a)
    got = preview("--shape", "x=-1,3,4", "--dtype", "x=int32", inputs={"x": str(tmp_path / "be.npy")})["x"]
    assert got.shape == (1, 3, 4) and np.array_equal(got[0], a.astype("<i4"))


@pytest.mark.parametrize("dtype", ["float32", "float16", "float64", "int8", "uint8", "int32", "int64", "bool"])
def test_pb_matches_onnx_numpy_helper(tmp_path, dtype):
    a = sample(dtype, (1, 5, 3))
    p = tmp_path / "input_0.pb"
    p.write_bytes(numpy_helper.from_array(a, "x").SerializeToString())
    got = preview("--shape", "x=-1,5,3", "--dtype", f"x={ONNX_NAMES.get(dtype, dtype)}", inputs={"x": str(p)})["x"]
    ref = numpy_helper.to_array(onnx.load_tensor(str(p)))
    assert got.dtype == ref.dtype and np.array_equal(got, ref)


def test_raw_files_take_dtype_and_shape_from_config(tmp_path):
    a = np.arange(24, dtype=np.uint16).reshape(2, 3, 4)
    (tmp_path / "a.bin").write_bytes(a.tobytes())
    got = preview("--shape", "x=-1,3,4", "--raw-dtype", "x=uint16", inputs={"x": str(tmp_path / "a.bin")})["x"]
    assert got.dtype == np.float32 and np.array_equal(got, a.astype(np.float32))


def test_data_minilm_calibrates_from_two_lists(tmp_path):
    model = os.path.join(CACHE, "models", "minilm_l3.onnx")
    ids, mask = [], []
    for i in range(5):
        np.save(tmp_path / f"ids{i}.npy", np.arange(16, dtype=np.int64)[None] + 100 * i)
        np.save(tmp_path / f"mask{i}.npy", np.ones((1, 16), dtype=np.int32))
        ids.append(f"ids{i}.npy")
        mask.append(f"mask{i}.npy")
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    (tmp_path / "mask.txt").write_text("# masks\n" + "\n".join(mask) + "\n")
    out = tmp_path / "out"
    r = quantkit("data-preview", model, "--input", f"input_ids={tmp_path / 'ids.txt'}", "--input", f"attention_mask={tmp_path / 'mask.txt'}",
                 "--batch", "2", "--out", str(out))
    assert "3 batch(es), 5 item(s)" in r.stdout
    for b, rows in enumerate([2, 2, 1]):
        i = np.load(out / f"batch_{b:05d}" / "input_ids.npy")
        m = np.load(out / f"batch_{b:05d}" / "attention_mask.npy")
        assert i.dtype == np.int64 and m.dtype == np.int64 and i.shape == m.shape == (rows, 16)
    assert np.load(out / "batch_00002" / "input_ids.npy")[0, 0] == 400
    # The same pairs from one list of "ids;mask" lines.
    (tmp_path / "pairs.txt").write_text("".join(f"{a};{b}\n" for a, b in zip(ids, mask)))
    r = quantkit("data-preview", model, "--list", str(tmp_path / "pairs.txt"), "--batch", "4", "--dry-run")
    assert "input_ids int64[4, 16] attention_mask int64[4, 16]" in r.stdout


def test_preprocess_python_function_in_xquant_form(tmp_path):
    (tmp_path / "prep.py").write_text(
        "import numpy as np\n"
        "def preprocess_impl(path_list, input_parameters):\n"
        "    assert input_parameters['input_name'] == 'x' and input_parameters['mean_value'] == [1.0, 2.0, 3.0]\n"
        "    return np.stack([np.load(p) * 2 for p in path_list])\n")
    for i in range(3):
        np.save(tmp_path / f"{i}.npy", np.full((3, 2), i, dtype=np.float64))
    (tmp_path / "cal.txt").write_text("0.npy\n1.npy\n2.npy\n")
    out = tmp_path / "out"
    quantkit("data-preview", "--input", f"x={tmp_path / 'cal.txt'}", "--shape", "x=-1,3,2", "--mean", "1,2,3",
             "--preprocess", f"x={tmp_path / 'prep.py'}:preprocess_impl", "--python", sys.executable, "--batch", "2", "--out", str(out))
    b1 = np.load(out / "batch_00001" / "x.npy")
    assert b1.dtype == np.float32 and b1.shape == (1, 3, 2) and (b1 == 4).all()


def test_data_errors_reach_the_cli_with_codes(tmp_path):
    np.save(tmp_path / "big.npy", np.zeros((128, 3, 8, 8), dtype=np.float32))
    r = quantkit("data-preview", "--input", f"data={tmp_path / 'big.npy'}", "--shape", "data=1,3,8,8", "--dry-run", check=False)
    assert r.returncode == 2
    assert "QK2104 input 'data' expects shape [1,3,8,8] but calibration file" in r.stderr
    assert "make the batch dimension match or declare it symbolic" in r.stderr
    (tmp_path / "empty").mkdir()
    r = quantkit("data-preview", "--input", f"x={tmp_path / 'empty'}", "--shape", "x=1,3,8,8", "--dry-run", check=False)
    assert r.returncode == 2 and "QK2103 calibration input 'x' finds 0 items" in r.stderr


def test_data_random_inputs_and_json_config(tmp_path):
    model = os.path.join(CACHE, "models", "minilm_l3.onnx")
    r = quantkit("data-preview", model, "--input", "input_ids=random", "--input", "attention_mask=random",
                 "--dim", "sequence_length=7", "--random-items", "3", "--batch", "2", "--seed", "5", "--out", str(tmp_path / "a"))
    assert "2 batch(es), 3 item(s)" in r.stdout
    ids = np.load(tmp_path / "a" / "batch_00000" / "input_ids.npy")
    assert ids.dtype == np.int64 and ids.shape == (2, 7) and ids.min() >= -10 and ids.max() < 10
    # The same data set from a DatasetConfig JSON file gives the same bytes (seeded).
    (tmp_path / "cfg.json").write_text(
        '{"inputs": [{"name": "input_ids", "source": "random"}, {"name": "attention_mask", "source": "random"}],'
        ' "batchSize": 2, "seed": 5, "randomItems": 3, "symbolicDims": {"sequence_length": 7}}')
    quantkit("data-preview", model, "--config", str(tmp_path / "cfg.json"), "--out", str(tmp_path / "b"))
    assert np.array_equal(np.load(tmp_path / "b" / "batch_00000" / "input_ids.npy"), ids)
    assert np.array_equal(np.load(tmp_path / "b" / "batch_00001" / "attention_mask.npy"),
                          np.load(tmp_path / "a" / "batch_00001" / "attention_mask.npy"))
