"""The decoder fixture and weight-only int4 (issue 24).

Tests/fixtures/gpt holds a byte-level GPT trained by scripts/train-gpt-fixture.py on Debian's
license texts, exported without a cache (gpt.onnx) and with past/present key-value tensors
(gpt_kv.onnx), the held-out text and torch's logits for its first 96 bytes. ONNX Runtime is the
referee: it runs both exports, the MatMulNBits models QuantKit writes, and its own
MatMulNBitsQuantizer for comparison."""
import json
import os
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import BINARY, ROOT

GPT = os.path.join(ROOT, "Tests", "fixtures", "gpt")
NOCACHE, KV = os.path.join(GPT, "gpt.onnx"), os.path.join(GPT, "gpt_kv.onnx")
HELD = open(os.path.join(GPT, "heldout.txt"), "rb").read()
TRAIN = json.load(open(os.path.join(GPT, "train.json")))
LICENSES = "/usr/share/common-licenses"


def session(path):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def perplexity(path, window=128):
    """Held-out perplexity over non-overlapping windows, as the training script measures it."""
    s = session(path)
    x = np.frombuffer(HELD, np.uint8).astype(np.int64)
    n = (len(x) - 1) // window
    total, count = 0.0, 0
    feeds = {i.name for i in s.get_inputs()}
    for i in range(0, n, 16):
        b = np.stack([x[j * window:(j + 1) * window + 1] for j in range(i, min(n, i + 16))])
        feed = {"input_ids": b[:, :-1]}
        for inp in s.get_inputs():
            if inp.name.startswith("past"):
                feed[inp.name] = np.zeros((len(b), 4, 0, 24), np.float32)
        logits = s.run(["logits"], {k: v for k, v in feed.items() if k in feeds})[0].astype(np.float64)
        logits -= logits.max(-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        total -= np.take_along_axis(logp, b[:, 1:, None], -1).sum()
        count += b[:, 1:].size
    return float(np.exp(total / count))


def training_windows(folder, count=32):
    """`count` windows of 128 bytes of the training text (the first 90 % of each license), as
    NNN.npy in `folder` (also Benchmarks/decoder_int4.py's calibration)."""
    train = b""
    for name in sorted(os.listdir(LICENSES)):
        p = os.path.join(LICENSES, name)
        if os.path.islink(p) or not os.path.isfile(p):
            continue
        d = open(p, "rb").read()
        train += d[:int(len(d) * 0.9)]
    rng = np.random.default_rng(1)
    for i in range(count):
        s = int(rng.integers(0, len(train) - 129))
        np.save(os.path.join(str(folder), f"{i:03d}.npy"), np.frombuffer(train[s:s + 128], np.uint8).astype(np.int64)[None])
    return str(folder)


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    return training_windows(tmp_path_factory.mktemp("gptcal"))


@pytest.fixture(scope="module")
def float_ppl():
    return perplexity(NOCACHE)


def test_the_fixture_learned_something(float_ppl):
    """Its held-out perplexity is far below a unigram model's, and ONNX Runtime's equals torch's."""
    assert float_ppl < 0.25 * TRAIN["unigram_perplexity"], (float_ppl, TRAIN)
    assert abs(float_ppl - TRAIN["heldout_perplexity"]) < 0.005 * TRAIN["heldout_perplexity"]


def test_onnxruntime_gives_torchs_logits():
    ref = np.load(os.path.join(GPT, "reference.npz"))
    ids, logits = ref["input_ids"], ref["logits"]
    a = session(NOCACHE).run(None, {"input_ids": ids})[0]
    assert np.abs(a - logits).max() < 1e-3
    s = session(KV)
    empty = {i.name: np.zeros((1, 4, 0, 24), np.float32) for i in s.get_inputs() if i.name != "input_ids"}
    b = s.run(["logits"], {"input_ids": ids, **empty})[0]
    assert np.abs(b - logits).max() < 1e-3


def decode(path, ids, prefill):
    """Logits of the KV export: a prefill of `prefill` tokens, then one token per step."""
    s = session(path)
    past_names = [i.name for i in s.get_inputs() if i.name != "input_ids"]
    present_names = [o.name for o in s.get_outputs() if o.name != "logits"]
    past = {n: np.zeros((1, 4, 0, 24), np.float32) for n in past_names}
    out = s.run(["logits"] + present_names, {"input_ids": ids[:, :prefill], **past})
    logits = [out[0]]
    for t in range(prefill, ids.shape[1]):
        past = dict(zip(past_names, out[1:]))
        out = s.run(["logits"] + present_names, {"input_ids": ids[:, t:t + 1], **past})
        logits.append(out[0])
    return np.concatenate(logits, axis=1)


def test_cache_decoding_equals_the_full_pass():
    ids = np.frombuffer(HELD[:80], np.uint8).astype(np.int64)[None]
    full = session(NOCACHE).run(None, {"input_ids": ids})[0]
    assert np.abs(decode(KV, ids, 64) - full).max() < 1e-3


def quantize(model, out, *args):
    r = subprocess.run([BINARY, "quantize", model, "-o", out, "--quiet", *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def ort_rtn(tmp_path_factory, ops):
    """The model and perplexity of ONNX Runtime's MatMulNBitsQuantizer (RTN, blocks of 32, zero
    points) quantizing `ops`."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    import logging
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    q = MatMulNBitsQuantizer(onnx.load(NOCACHE), block_size=32, is_symmetric=False, op_types_to_quantize=ops)
    q.process()
    out = str(tmp_path_factory.mktemp("ort") / "ort_rtn.onnx")
    q.model.save_model_to_file(out)
    return out, perplexity(out)


@pytest.fixture(scope="module")
def ort_rtn_ppl(tmp_path_factory):
    """ONNX Runtime's default: its MatMuls to MatMulNBits, embeddings float."""
    return ort_rtn(tmp_path_factory, ("MatMul",))[1]


@pytest.mark.parametrize("method", ["rtn", "gptq", "awq"])
def test_weight_only_int4(method, calibration, float_ppl, ort_rtn_ppl, tmp_path):
    """Every constant-weight MatMul becomes MatMulNBits (4 bits, blocks of 32, zero points), the
    embedding tables stay float; ONNX Runtime runs it within 10 % of float perplexity. RTN writes
    ONNX Runtime's RTN perplexity exactly; GPTQ beats it."""
    out = str(tmp_path / f"{method}.onnx")
    quantize(NOCACHE, out, "--weight-only", "int4", "--block-size", "32", "--method", method, "--input", f"input_ids={calibration}", "--no-analysis")
    m = onnx.load(out)
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("MatMulNBits") == 13 and "GatherBlockQuantized" not in ops, ops
    assert ops.count("Gather") == [n.op_type for n in onnx.load(NOCACHE).graph.node].count("Gather")
    assert all(n.domain == "com.microsoft" for n in m.graph.node if n.op_type == "MatMulNBits")
    assert os.path.getsize(out) < 0.4 * os.path.getsize(NOCACHE)
    ppl = perplexity(out)
    assert ppl < 1.10 * float_ppl, (ppl, float_ppl)
    theirs = ort_rtn_ppl
    if method == "rtn":
        assert abs(ppl - theirs) < 1e-4 * theirs, (ppl, theirs)
    if method == "gptq":
        assert ppl < theirs, (ppl, theirs)
    record = json.load(open(str(tmp_path / f"{method}.qparams.json")))
    assert len(record["layers"]) == 13 and record["weightOnly"]["rounding"] == method
    assert {l["op"] for l in record["layers"]} == {"MatMulNBits"}
    if method == "awq":
        assert record["awq"], record


def test_weight_only_decoder_with_cache(calibration, tmp_path):
    """The KV export calibrated on token sequences only (its past inputs start empty): decoding
    token by token in ONNX Runtime gives the quantized no-cache model's logits."""
    a, b = str(tmp_path / "kv.onnx"), str(tmp_path / "nocache.onnx")
    for model, out in [(KV, a), (NOCACHE, b)]:
        quantize(model, out, "--weight-only", "int4", "--method", "gptq", "--input", f"input_ids={calibration}", "--no-analysis")
    ids = np.frombuffer(HELD[100:180], np.uint8).astype(np.int64)[None]
    full = session(b).run(None, {"input_ids": ids})[0]
    assert np.abs(decode(a, ids, 48) - full).max() < 1e-3


@pytest.mark.parametrize("bits,mode", [("int4", "sym"), ("int4", "asym_u"), ("int8", "sym"), ("int8", "asym_u")])
def test_quantkit_runs_matmulnbits_as_onnxruntime(bits, mode, tmp_path):
    """QuantKit's executor (which the analysis uses) computes MatMulNBits and GatherBlockQuantized
    as ONNX Runtime does: int4 tables as int4 (symmetric) or uint4 with zero points, int8 as uint8
    with bits 8; blocks of 64 over a width of 96 leave a partial last block."""
    out = str(tmp_path / "q.onnx")
    quantize(NOCACHE, out, "--weight-only", bits, "--weight-mode", mode, "--block-size", "64", "--quantize-embeddings", "--no-analysis")
    assert [n.op_type for n in onnx.load(out).graph.node].count("GatherBlockQuantized") == 2
    ids = np.frombuffer(HELD[:64], np.uint8).astype(np.int64)[None]
    np.save(str(tmp_path / "ids.npy"), ids)
    r = subprocess.run([BINARY, "run", out, "--input", f"input_ids={tmp_path / 'ids.npy'}", "--output-dir", str(tmp_path / "run")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ours = np.load(str(tmp_path / "run" / "logits.npy"))
    theirs = session(out).run(None, {"input_ids": ids})[0]
    assert np.abs(ours - theirs).max() < 1e-3 * np.abs(theirs).max()


@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_hessians_in_bounded_passes(method, calibration, tmp_path):
    """With --hessian-memory 1 (MiB) the Hessians of the fixture's MatMuls do not fit one pass
    (a K of 384 alone takes 1.2 MiB): the data is read in several passes, and the model is the
    same, byte for byte."""
    one, many = str(tmp_path / "one.onnx"), str(tmp_path / "many.onnx")
    args = ["--weight-only", "int4", "--method", method, "--input", f"input_ids={calibration}", "--no-analysis"]
    quantize(NOCACHE, one, *args)
    r = subprocess.run([BINARY, "quantize", NOCACHE, "-o", many, "--hessian-memory", "1", *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "pass 7 of 7" in r.stderr + r.stdout
    assert open(one, "rb").read() == open(many, "rb").read()


def test_quantized_embeddings_as_onnxruntime(tmp_path, tmp_path_factory):
    """--quantize-embeddings: both embedding tables become GatherBlockQuantized too (uint4 with
    zero points, blocks of 32), and RTN gives the perplexity of ONNX Runtime's quantizer with
    Gather included, to the fourth decimal."""
    out = str(tmp_path / "q.onnx")
    quantize(NOCACHE, out, "--weight-only", "int4", "--block-size", "32", "--quantize-embeddings", "--no-analysis")
    m = onnx.load(out)
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("GatherBlockQuantized") == 2 and ops.count("MatMulNBits") == 13, ops
    assert ops.count("Gather") == [n.op_type for n in onnx.load(NOCACHE).graph.node].count("Gather") - 2
    tables = {n.input[0] for n in m.graph.node if n.op_type == "GatherBlockQuantized"}
    assert {t.data_type for t in m.graph.initializer if t.name in tables} == {onnx.TensorProto.UINT4}
    their_model, theirs = ort_rtn(tmp_path_factory, ("MatMul", "Gather"))
    assert [n.op_type for n in onnx.load(their_model).graph.node].count("GatherBlockQuantized") == 2
    ppl = perplexity(out)
    assert abs(ppl - theirs) < 1e-4 * theirs, (ppl, theirs)
    record = json.load(open(str(tmp_path / "q.qparams.json")))
    assert sorted(l["op"] for l in record["layers"]).count("GatherBlockQuantized") == 2


def test_weight_only_errors(tmp_path):
    out = str(tmp_path / "x.onnx")
    r = subprocess.run([BINARY, "quantize", NOCACHE, "-o", out, "--weight-only", "int3"], capture_output=True, text=True)
    assert r.returncode == 2 and "QK7004" in r.stderr and "int4" in r.stderr
    r = subprocess.run([BINARY, "quantize", NOCACHE, "-o", out, "--weight-only", "int4", "--method", "gptq"], capture_output=True, text=True)
    assert r.returncode == 2 and "QK7007" in r.stderr and "gptq" in r.stderr
    r = subprocess.run([BINARY, "quantize", NOCACHE, "-o", out, "--weight-only", "int4", "--block-size", "48"], capture_output=True, text=True)
    assert r.returncode == 2 and "QK7004" in r.stderr and "power of two" in r.stderr
    assert not os.path.exists(out)
