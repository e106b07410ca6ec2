"""silero VAD quantized: agreement of the speech decisions with the float model on real sound.

    bash scripts/fetch-models.sh && swift build -c release
    OPENBLAS_CORETYPE=SkylakeX .venv/bin/python Benchmarks/silero_vad.py [--clips 120]

Sound: Tux Paint's spoken stamp descriptions (speech) and its stamp sound effects (other),
fetched by fetch-models.sh into .cache/data/sounds; a seeded choice of half speech, half other,
resampled to 16 kHz. Each clip is streamed the way silero's own wrapper does: 512-sample chunks
with 64 samples of context and the recurrent state carried from chunk to chunk.

Calibration (both tools): every 3rd chunk of every 4th clip with the state the float model
carried into it (`--list` of input/state/sr .npy files); evaluation on the other clips, each
model streaming with its own state. Metrics against the float model: share of chunks with the
same decision (probability > 0.5), mean and largest |probability difference|.

Rows: QuantKit defaults; the two settings the analysis report advises for the layers it marks
bad by themselves (16-bit activations for the STFT and first encoder Conv region, or those two
Convs float); `--auto-keep-float 2`, which finds and keeps those two float itself from the
analysis (on all calibration chunks; its time includes both analyses); QuantKit with every
activation 16-bit; ONNX Runtime's quantize_static (QDQ,
per channel, MinMax) on the same calibration items.
"""
import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_data as bd  # noqa: E402

Q = os.path.join(bd.ROOT, ".build", "release", "quantkit")
FLOAT = os.path.join(bd.MODELS, "silero_vad.onnx")
SOUNDS = os.path.join(bd.CACHE, "data", "sounds")
B = "If_0_then_branch__Inline_0__"  # the 16 kHz branch


def load(path):
    import soundfile as sf
    a, sr = sf.read(path, dtype="float32", always_2d=True)
    a = a.mean(1)
    n = int(len(a) * 16000 / sr)
    return np.interp(np.linspace(0, len(a) - 1, n), np.arange(len(a)), a).astype(np.float32)


def stream(session, clip, record=None):
    state = np.zeros((2, 1, 128), np.float32)
    context = np.zeros((1, 64), np.float32)
    sr = np.array(16000, np.int64)
    probs = []
    for i in range(0, len(clip) - 511, 512):
        x = np.concatenate([context, clip[None, i:i + 512]], 1)
        if record is not None:
            record.append((x, state))
        p, state = session.run(None, {"input": x, "state": state, "sr": sr})
        context = x[:, -64:]
        probs.append(float(p[0, 0]))
    return np.array(probs)


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


ORT_CHILD = r"""
import sys, numpy as np
from onnxruntime.quantization import quantize_static, CalibrationDataReader, QuantFormat, QuantType, CalibrationMethod
model, out, listing = sys.argv[1:4]
items = [dict(zip(("input", "state", "sr"), (np.load(p) for p in line.strip().split(";")))) for line in open(listing) if line.strip()]
class Reader(CalibrationDataReader):
    def __init__(self): self.it = iter(items)
    def get_next(self): return next(self.it, None)
quantize_static(model, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=120, help="clips in all (half speech, half other)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    speech = sorted(glob.glob(os.path.join(SOUNDS, "speech", "*.ogg")))
    other = sorted(glob.glob(os.path.join(SOUNDS, "other", "*.ogg")))
    if not speech or not other:
        sys.exit("no sounds: run scripts/fetch-models.sh")
    half = args.clips // 2
    paths = list(rng.permutation(speech)[:half]) + list(rng.permutation(other)[:half])
    clips = [load(p) for p in paths]
    work = tempfile.mkdtemp(prefix="qk-vad-")
    fs = session(FLOAT)
    calib_clips = set(range(0, len(clips), 4))
    ref, calib = [], []
    for k, c in enumerate(clips):
        rec = [] if k in calib_clips else None
        ref.append(stream(fs, c, rec))
        if rec:
            calib += rec[::3]
    folder = os.path.join(work, "calib")
    os.makedirs(folder)
    listing = os.path.join(work, "calib.txt")
    with open(listing, "w") as f:
        for i, (x, st) in enumerate(calib):
            names = [os.path.join(folder, f"{i:04d}_{n}.npy") for n in ("input", "state", "sr")]
            for n, a in zip(names, (x, st, np.array(16000, np.int64))):
                np.save(n, a)
            f.write(";".join(names) + "\n")
    evaluate = [k for k in range(len(clips)) if k not in calib_clips]
    seconds = sum(len(clips[k]) for k in evaluate) / 16000
    rate = lambda ks: float(np.mean(np.concatenate([ref[k] for k in ks]) > 0.5))  # noqa: E731
    print(f"{len(clips)} clips ({sum(map(len, clips)) / 16000:.0f} s); calibration {len(calib)} chunks from {len(calib_clips)} clips; "
          f"evaluation {len(evaluate)} clips ({seconds:.0f} s); float says speech in {rate([k for k in evaluate if k < half]):.3f} "
          f"of the speech clips' chunks, {rate([k for k in evaluate if k >= half]):.3f} of the others'\n")
    qk = [Q, "quantize", FLOAT, "--list", listing, "--no-analysis", "--quiet"]
    variants = [
        ("QuantKit (default)", qk, []),
        ("QuantKit, report advice: 16-bit STFT + encoder 0", qk, ["--subgraph", f"{B}/stft/Unsqueeze_output_0:{B}/encoder/0/activation/Relu_output_0:bits=16"]),
        ("QuantKit, report advice: STFT + encoder 0 float", qk, ["--exclude-node", f"{B}/stft/Conv", "--exclude-node", f"{B}/encoder/0/reparam_conv/Conv"]),
        ("QuantKit --auto-keep-float 2 (applies that advice itself)", [a for a in qk if a != "--no-analysis"], ["--auto-keep-float", "2", "--analysis-samples", "0"]),
        ("QuantKit --activations u16", qk, ["--activations", "u16"]),
        ("ORT quantize_static MinMax", None, []),
    ]
    print("| model | decision agreement | mean abs prob. diff | max abs prob. diff | QLinearConv | quantize time s | ORT ms/chunk |")
    print("|---|---|---|---|---|---|---|")
    longest = max(evaluate, key=lambda k: len(clips[k]))

    def latency(s):
        """ms per chunk streaming the longest evaluation clip (one thread), after one warm-up pass."""
        stream(s, clips[longest])
        t0 = time.perf_counter()
        chunks = len(stream(s, clips[longest]))
        return (time.perf_counter() - t0) / chunks * 1e3

    print(f"| float | 1 | 0 | 0 | 0 | | {latency(fs):.3f} |")
    for i, (label, cmd, extra) in enumerate(variants):
        out = os.path.join(work, f"v{i}.onnx")
        t0 = time.perf_counter()
        if cmd is None:
            r = subprocess.run([sys.executable, "-c", ORT_CHILD, FLOAT, out, listing], capture_output=True, text=True)
        else:
            r = subprocess.run(cmd + ["-o", out] + extra, capture_output=True, text=True)
        took = time.perf_counter() - t0
        if r.returncode != 0:
            print(f"| {label} | failed: {r.stderr.strip().splitlines()[-1][:120]} | | | | | |")
            continue
        s = session(out)
        same, n, diffs = 0, 0, []
        for k in evaluate:
            p = stream(s, clips[k])
            same += int(((p > 0.5) == (ref[k] > 0.5)).sum())
            n += len(p)
            diffs.append(np.abs(p - ref[k]))
        d = np.concatenate(diffs)
        print(f"| {label} | {same / n:.4f} | {d.mean():.4f} | {d.max():.3f} | {count_fused(out)} | {took:.1f} | {latency(s):.3f} |",
              flush=True)


def count_fused(path):
    return bd.optimized_ops(path).count("QLinearConv")


if __name__ == "__main__":
    main()
