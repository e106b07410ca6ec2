"""The executor runs silero VAD (If, LSTM, Conv, ...) like ONNX Runtime: 20 chunks of a synthetic
16 kHz (and 8 kHz) signal of voiced vowels and pauses, with the recurrent state
carried from chunk to chunk on each side independently, so errors would compound.

Our side runs `quantkit run MODEL --input name=file.npy ... --output-dir DIR`, which writes each
model output as DIR/<output name>.npy (see conftest.npy_name).
"""
import os

import numpy as np
import onnxruntime as ort
import pytest

from conftest import npy_name, CACHE, quantkit

MODEL = os.path.join(CACHE, "models", "silero_vad.onnx")
CHUNKS = 20


def speech_like_signal(sr, chunk, seed=0):
    """Two "words" of synthetic voiced speech (a 120 Hz +- 30 Hz glottal harmonic series shaped
    by the formants of the vowels /a/, /i/, /o/, changing every 1/6 s) separated by a pause,
    over a faint noise floor; peak 0.3."""
    rng = np.random.default_rng(seed)
    n = CHUNKS * chunk
    t = np.arange(n) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 2 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    vowels = [[(730, 90), (1090, 110), (2440, 170)], [(270, 60), (2290, 100), (3010, 150)], [(570, 80), (840, 90), (2410, 160)]]
    vowel = (t * 6).astype(int) % 3
    x = np.zeros(n)
    for k in range(1, 30):
        fk = k * f0
        amp = np.zeros(n)
        for v, formants in enumerate(vowels):
            a = sum(np.exp(-0.5 * ((fk - f) / bw) ** 2) / (1 + i) for i, (f, bw) in enumerate(formants))
            amp += np.where(vowel == v, a, 0)
        x += amp * (fk < sr / 2 - 300) * np.sin(k * phase)
    words = ((t > 0.0) & (t < 0.35)) | ((t > 0.45) & (t < 0.64))
    x = x * words + 0.002 * rng.standard_normal(n)
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def cosine(a, b):
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        return 1.0
    return float(a @ b / (na * nb))


def run_ours(tmp_path, feeds, step):
    """One chunk through `quantkit run`; returns the outputs by name."""
    d = tmp_path / f"chunk{step}"
    out = d / "out"
    d.mkdir()
    args = ["run", MODEL]
    for name, value in feeds.items():
        path = d / f"{name}.npy"
        np.save(path, value)
        args += ["--input", f"{name}={path}"]
    args += ["--output-dir", str(out)]
    quantkit(*args)
    return {name: np.load(out / npy_name(name)) for name in ("output", "stateN")}


@pytest.mark.skipif(not os.path.exists(MODEL), reason="silero_vad.onnx is not in .cache/models")
@pytest.mark.parametrize("sr,chunk", [(16000, 512), (8000, 256)])
def test_silero_vad_matches_onnxruntime(tmp_path, sr, chunk):
    signal = speech_like_signal(sr, chunk)
    session = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
    ort_state = np.zeros((2, 1, 128), np.float32)
    our_state = np.zeros((2, 1, 128), np.float32)
    ort_out, our_out = [], []
    state_cos, state_err = [], []
    for step in range(CHUNKS):
        x = signal[step * chunk:(step + 1) * chunk][None, :]
        sr_t = np.array(sr, dtype=np.int64)
        ref = session.run(["output", "stateN"], {"input": x, "state": ort_state, "sr": sr_t})
        ours = run_ours(tmp_path, {"input": x, "state": our_state, "sr": sr_t}, step)
        assert ours["output"].shape == ref[0].shape and ours["stateN"].shape == ref[1].shape
        ort_out.append(ref[0])
        our_out.append(ours["output"])
        state_cos.append(cosine(ours["stateN"], ref[1]))
        state_err.append(float(np.max(np.abs(ours["stateN"] - ref[1]))))
        ort_state, our_state = ref[1], ours["stateN"].astype(np.float32)
    ort_out, our_out = np.concatenate(ort_out), np.concatenate(our_out)
    out_err = float(np.max(np.abs(our_out - ort_out)))
    report = (f"sr {sr}: speech probabilities cosine {cosine(our_out, ort_out):.8f}, max-abs error {out_err:.3g}; "
              f"state cosine min {min(state_cos):.8f}, max-abs error {max(state_err):.3g}")
    print(report)
    # The probabilities must move, or their comparison says little.
    assert ort_out.max() - ort_out.min() > 0.01, f"the signal does not move the speech probability: {ort_out.ravel()}"
    assert out_err < 1e-4, report
    assert cosine(our_out, ort_out) > 0.99999, report
    assert min(state_cos) > 0.99999, report
