"""Writes examples/data/silero: 16 calibration chunks of real speech for silero VAD, each with the
recurrent state the float model carries into it, as silero's own wrapper streams audio (512 new
samples plus 64 of context, 16 kHz).

    bash scripts/fetch-models.sh && .venv/bin/python scripts/make-silero-example.py

Sound: 4 of Tux Paint's spoken stamp descriptions (fetched into .cache/data/sounds/speech), the
4th, 8th, ... chunk of each. ONNX Runtime runs the float model to produce the states (a fixture
builder, not part of the product). The files are committed; examples/silero_vad.json lists them.
"""
import glob
import os

import numpy as np
import onnxruntime as ort
import soundfile as sf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "examples", "data", "silero")
CLIPS = ["animals_amphibians_frog_desc.ogg", "food_fruit_apple_fuji_desc_fr.ogg", "animals_mammals_bears_bear_desc.ogg",
         "animals_birds_owl_desc_ru.ogg"]


def load(path):
    a, sr = sf.read(path, dtype="float32", always_2d=True)
    a = a.mean(1)
    n = int(len(a) * 16000 / sr)
    return np.interp(np.linspace(0, len(a) - 1, n), np.arange(len(a)), a).astype(np.float32)


def main():
    speech = os.path.join(ROOT, ".cache", "data", "sounds", "speech")
    have = {os.path.basename(p) for p in glob.glob(os.path.join(speech, "*.ogg"))}
    missing = [c for c in CLIPS if c not in have]
    if missing:
        raise SystemExit(f"missing {missing} in {speech}: run scripts/fetch-models.sh")
    clips = CLIPS
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(os.path.join(ROOT, ".cache", "models", "silero_vad.onnx"), so, providers=["CPUExecutionProvider"])
    for f in glob.glob(os.path.join(OUT, "*.npy")) + glob.glob(os.path.join(OUT, "*.txt")):
        os.remove(f)
    os.makedirs(OUT, exist_ok=True)
    sr = np.array(16000, np.int64)
    np.save(os.path.join(OUT, "sr.npy"), sr)
    k = 0
    for name in clips:
        audio = load(os.path.join(speech, name))
        state = np.zeros((2, 1, 128), np.float32)
        context = np.zeros((1, 64), np.float32)
        taken = 0
        for j, i in enumerate(range(0, len(audio) - 511, 512)):
            x = np.concatenate([context, audio[None, i:i + 512]], 1)
            if j % 4 == 3 and taken < 4:
                np.save(os.path.join(OUT, f"input_{k}.npy"), x)
                np.save(os.path.join(OUT, f"state_{k}.npy"), state)
                k += 1
                taken += 1
            _, state = s.run(None, {"input": x, "state": state, "sr": sr})
            context = x[:, -64:]
    for what in ("input", "state"):
        with open(os.path.join(OUT, f"{what}.txt"), "w") as f:
            f.write("".join(f"{what}_{i}.npy\n" for i in range(k)))  # relative to the list file
    print(f"wrote {k} chunks from {', '.join(clips)} to {OUT}")


if __name__ == "__main__":
    main()
