"""Which range method holds across the zoo (issue #20): every zoo model (Benchmarks/zoo.py)
quantized by QuantKit with each range method from one complete statistics file, scored by the
model's task metric against the float model on its held-out evaluation split.

    bash scripts/fetch-models.sh && bash scripts/export-efficientnet.sh && bash scripts/fetch-zoo.sh
    swift build -c release
    .venv/bin/python Benchmarks/zoo_methods.py [--models a b ...] [--methods default minmax ...] [--markdown] [--json FILE]

Per model: `quantkit calibrate` once on the calibration split (all tensors observed), then
`quantkit quantize --stats FILE --input ... --method M --no-analysis` per method (the data is
given too, so that the default depthwise bias correction runs as it does by default). The last
columns name the best method and how far `default` is from it.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zoo  # noqa: E402

OUT = os.path.join(zoo.ROOT, "out", "zoo_methods")


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        lines = (r.stderr or r.stdout).strip().splitlines()
        raise RuntimeError((lines[-1][:200] if lines else "") or f"exit status {r.returncode}")
    return r.stdout


def main():
    names = [m.name for m in zoo.ZOO]
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=names, choices=names)
    ap.add_argument("--methods", nargs="+", default=["default", "minmax", "percentile", "mse", "kl"])
    ap.add_argument("--quantkit", default=os.path.join(zoo.ROOT, ".build", "release", "quantkit"))
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    qk = "/tmp/quantkit-zoo-methods"
    shutil.copy(a.quantkit, qk + ".tmp")
    os.replace(qk + ".tmp", qk)
    zoo.load_vocabularies()  # the OCR models' decoders (ppocrv4_rec, ddddocr_ocr) read them
    os.environ.setdefault("OPENBLAS_CORETYPE", subprocess.run(
        ["bash", os.path.join(zoo.ROOT, "scripts", "openblas-coretype.sh")], capture_output=True, text=True).stdout.strip())
    os.makedirs(OUT, exist_ok=True)
    rows = []

    def save():
        if a.json:
            with open(a.json, "w") as fh:
                json.dump(rows, fh, indent=1)
    for m in [m for m in zoo.ZOO if m.name in a.models]:
        row = {"model": m.name, "metric": m.metric, "methods": {}}
        try:
            folder = zoo.prepare(m)
            ev = zoo.load_items(os.path.join(folder, "eval"))
            f = zoo.evaluate(m, m.path, ev)
        except Exception as e:  # noqa: BLE001 - one failing model is a row, not a crash
            row["error"] = f"float evaluation failed: {type(e).__name__}: {e}"[:200]
            rows.append(row)
            save()
            print(f"{m.name}: {row['error']}", file=sys.stderr, flush=True)
            continue
        data = [x for n in m.inputs for x in ("--input", f"{n}={os.path.join(folder, 'calib', n)}")]
        stats = os.path.join(OUT, f"{m.name}.stats.json")
        try:
            run([qk, "calibrate", m.path, *data, "--stats-out", stats])
        except RuntimeError as e:
            row["error"] = f"calibrate failed: {e}"
            rows.append(row)
            save()
            print(f"{m.name}: calibrate failed: {e}", file=sys.stderr, flush=True)
            continue
        for meth in a.methods:
            out = os.path.join(OUT, f"{m.name}.{meth}.onnx")
            try:
                run([qk, "quantize", m.path, "--stats", stats, *data, "--method", meth, "--no-analysis", "-o", out])
                row["methods"][meth] = zoo.compare(m, f, zoo.evaluate(m, out, ev))[0]
            except Exception as e:  # noqa: BLE001 - one failing method is a cell, not a crash
                row["methods"][meth] = None
                row.setdefault("failures", {})[meth] = f"{type(e).__name__}: {e}"
                print(f"{m.name} {meth}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        rows.append(row)
        save()
        print(m.name, {k: (round(v, 4) if v is not None else None) for k, v in row["methods"].items()}, flush=True)
    save()
    head = ["model", "metric"] + a.methods + ["best", "default − best"]
    lines = []
    for r in rows:
        vals = r["methods"]
        ok = {k: v for k, v in vals.items() if v is not None}
        best = max(ok, key=ok.get) if ok else None
        gap = (ok["default"] - ok[best]) if best and "default" in ok else None
        lines.append([r["model"], r["metric"]] + [f"{vals[k]:.4f}" if vals.get(k) is not None else "failed" for k in a.methods]
                     + [best or r.get("error", "–"), f"{gap:+.4f}" if gap is not None else "–"])
    if a.markdown:
        print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
        for l in lines:
            print("| " + " | ".join(l) + " |")
    else:
        for l in [head] + lines:
            print("  ".join(f"{c:>14}" for c in l))


if __name__ == "__main__":
    main()
