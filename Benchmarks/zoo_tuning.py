"""The tuning loop on the model zoo (issue #21): QuantKit's plain recipe against the loop to an
output-cosine target, each on the zoo's calibration data, measured on its held-out evaluation
split with the zoo's task metric in ONNX Runtime.

    bash scripts/fetch-models.sh && bash scripts/export-efficientnet.sh && bash scripts/fetch-zoo.sh
    swift build -c release
    .venv/bin/python Benchmarks/zoo_tuning.py [--models a b ...] [--target cosine=0.995] [--markdown] [--json FILE]

Per model two runs of `quantkit quantize MODEL --input NAME=DIR ...` (the analysis on, as a user
runs it): `--target none` (the plain recipe, verified only) and `--target TARGET` (the loop).
Columns: the task metric against float (zoo.py's definitions) for both; the loop's target
value before and after (worst output cosine, output slices included, on the analysis data:
the first 16 calibration items); the rounds it spent and the ops it raised; the share of
Conv/MatMul/Gemm that ONNX Runtime's optimized graph runs as integer kernels; wall time of
both runs and their ratio (the issue's bar: tuning costs at most 10x one plain run).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quantize_vs_ort as qv  # noqa: E402
import zoo  # noqa: E402

OUT = os.path.join(zoo.ROOT, "out", "zoo_tuning")
HEAD = ["model", "metric (eval n)", "plain", "tuned", "target before -> after", "rounds", "raised", "int kernels plain / tuned",
        "seconds plain / tuned (ratio)"]


def run(m, qk, folder, target, env, tag):
    calib = os.path.join(folder, "calib")
    out = os.path.join(OUT, f"{m.name}.{tag}.q.onnx")
    cmd = [qk, "quantize", m.path, *[a for n in m.inputs for a in ("--input", f"{n}={os.path.join(calib, n)}")], "-o", out, "--target", target]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    with open(os.path.join(OUT, f"{m.name}.{tag}.log"), "w") as f:
        f.write(p.stdout + p.stderr)
    if p.returncode != 0:
        raise RuntimeError(f"quantkit exited {p.returncode}: {p.stderr.strip()[-300:]}")
    report = json.load(open(os.path.join(OUT, f"{m.name}.{tag}.report.json")))
    return out, wall, report, p.stdout


def worst_cosine(report):
    vals = []
    for o in report["outputs"]:
        mt = o["metrics"]
        vals.append(mt["cosine"])
        vals += [s["cosine"] for s in mt.get("slices") or []]
    return min(vals)


def bench(m, qk, target, env):
    folder = zoo.prepare(m)
    ev = zoo.load_items(os.path.join(folder, "eval"))
    f = zoo.evaluate(m, m.path, ev)
    row = {"model": m.name, "metric": m.metric, "n_eval": len(ev)}
    for tag, t in (("plain", "none"), ("tuned", target)):
        path, wall, report, stdout = run(m, qk, folder, t, env, tag)
        v, text = zoo.compare(m, f, zoo.evaluate(m, path, ev))
        ints, floats = qv.fusion(path)
        row[tag] = {"metric": v, "text": text, "seconds": wall, "int": ints, "kernels": ints + floats, "cosine": worst_cosine(report)}
        tu = report.get("tuning")
        if tag == "tuned":
            if tu:
                chosen = tu["rounds"][tu["chosen"]]
                row[tag].update(rounds=len(tu["rounds"]) - 1, met=tu["met"], raised=chosen["raised"], change=chosen["change"],
                                before=tu["rounds"][0]["value"], after=chosen["value"])
            else:
                met = re.search(r"^target .*: ([-0-9.e]+), met", stdout, re.M)
                row[tag].update(rounds=0, met=bool(met), raised=[], change="", before=float(met.group(1)) if met else None,
                                after=float(met.group(1)) if met else None)
    return row


def cells(r):
    p, t = r["plain"], r["tuned"]
    ba = f"{t['before']:.4f} -> {t['after']:.4f}" + ("" if t["met"] else " (missed)") if t.get("before") is not None else "-"
    return [r["model"], f"{r['metric']} ({r['n_eval']})", p["text"], t["text"], ba, str(t.get("rounds", 0)), t.get("change", "")[:90] or "none",
            f"{p['int']}/{p['kernels']} / {t['int']}/{t['kernels']}", f"{p['seconds']:.1f} / {t['seconds']:.1f} ({t['seconds'] / p['seconds']:.1f}x)"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [m.name for m in zoo.ZOO]
    ap.add_argument("--models", nargs="+", default=names, choices=names)
    ap.add_argument("--target", default="cosine=0.995")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--quantkit", help="QuantKit binary (default: a copy of .build/release/quantkit)")
    a = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    qk = a.quantkit
    if not qk:
        qk = "/tmp/quantkit-zoo-tuning"
        shutil.copy2(os.path.join(zoo.ROOT, ".build", "release", "quantkit"), qk + ".tmp")
        os.replace(qk + ".tmp", qk)
    zoo.load_vocabularies()
    env = dict(os.environ)
    env.setdefault("OPENBLAS_CORETYPE", subprocess.run(["bash", os.path.join(zoo.ROOT, "scripts", "openblas-coretype.sh")],
                                                       capture_output=True, text=True).stdout.strip())
    zoo.print_row(HEAD, a.markdown)
    if a.markdown:
        print("|" + "---|" * len(HEAD))
    rows = []
    for m in [m for m in zoo.ZOO if m.name in a.models]:
        try:
            r = bench(m, qk, a.target, env)
        except Exception as e:
            print(f"  {m.name}: failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            continue
        rows.append(r)
        zoo.print_row(cells(r), a.markdown)
        if a.json:
            with open(a.json, "w") as fh:
                json.dump(rows, fh, indent=1, default=float)


if __name__ == "__main__":
    main()
