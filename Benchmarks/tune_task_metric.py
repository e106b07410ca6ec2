"""The tuning loop driven by a task metric (`--target metric>=V --eval-command ...`), tuned on a
validation split and measured on a separate test split that the loop never sees.

Run from the repository root after `swift build -c release` and scripts/fetch-models.sh:

    OPENBLAS_CORETYPE=SkylakeX .venv/bin/python Benchmarks/tune_task_metric.py [--experiments efficientnet ocr] \\
        [--quantkit BIN] [--json FILE] [--tables FILE]

Two experiments, each `quantkit quantize MODEL --input NAME=DIR -o OUT` as a user runs it
(analysis on), plain (`--target none`) and tuned (`--target metric>=V --eval-command
'.venv/bin/python Benchmarks/eval_task.py KIND SPLIT_DIR {model}'`):

  EfficientNet-Lite0: calibration bench_data.efficientnet()'s set (every 6th photo and object);
      metric top-1 agreement with the float model (ONNX Runtime) on the held-out Tux Paint object
      photos; validation the even-indexed objects, test the odd-indexed. Tuned to metric>=0.99
      with the default 8 rounds, with --tune-rounds 16, and with --min-integer-share 0.9.
  PP-OCRv4 rec at natural widths (ocr_natural_width.py): calibration 32 lines (seed 11),
      validation 50 lines (seed 13), test 100 lines (seed 12); metric exact match (greedy CTC);
      target metric>=F-0.02 with F the float model's exact match on validation. Tuned with the
      default 8 rounds and with --tune-rounds 16.

The splits are written once as .npy files under out/tune_task/ (eval_task.py only loads them).
Columns: the metric on validation (what the loop saw) and on test; the loop's rounds and the ops
it raised (report.json "tuning", the chosen round); integer kernels (Conv/MatMul/Gemm run as
QLinearConv/QGemm/... in ONNX Runtime's optimized graph) of all such kernels; wall time of the
whole quantize run (calibration, analysis and every evaluation included).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_data as bd  # noqa: E402
import eval_task  # noqa: E402
import ocr_natural_width as onw  # noqa: E402
import quantize_vs_ort as qv  # noqa: E402

ROOT = bd.ROOT
OUT = os.path.join(ROOT, "out", "tune_task")
PY = os.path.join(ROOT, ".venv", "bin", "python")
EVAL = os.path.join(ROOT, "Benchmarks", "eval_task.py")


def rel(p):
    return os.path.relpath(p, ROOT)


def quantize(qk, model, inputs, tag, extra, env):
    out = os.path.join(OUT, f"{tag}.q.onnx")
    cmd = [qk, "quantize", model, *inputs, "-o", out, *extra]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    with open(os.path.join(OUT, f"{tag}.log"), "w") as f:
        f.write("$ " + " ".join(cmd) + "\n" + p.stdout + p.stderr)
    if p.returncode != 0:
        raise RuntimeError(f"quantkit exited {p.returncode}: {p.stderr.strip()[-600:]}")
    report = json.load(open(os.path.join(OUT, f"{tag}.report.json")))
    lines = [l for l in p.stdout.splitlines() if l.startswith(("target", "tune ", "repaired", "integer"))]
    return out, wall, report, lines


def run(qk, model, inputs, tag, extra, env, val_metric, test_metric):
    path, wall, report, lines = quantize(qk, model, inputs, tag, extra, env)
    ints, floats = qv.fusion(path)
    row = {"run": tag, "args": " ".join(extra), "val": val_metric(path), "test": test_metric(path), "int": ints,
           "kernels": ints + floats, "seconds": wall, "rounds": 0, "raised": [], "met": None, "summary": lines}
    tu = report.get("tuning")
    if tu:
        chosen = tu["rounds"][tu["chosen"]]
        row.update(rounds=len(tu["rounds"]) - 1, met=tu["met"], raised=chosen["raised"], change=chosen["change"],
                   loop_val=chosen["value"], first_val=tu["rounds"][0]["value"])
    else:
        met = re.search(r"^target .*: ([-0-9.e]+), met", "\n".join(lines), re.M)
        if met:
            row.update(met=True, loop_val=float(met.group(1)), first_val=float(met.group(1)))
    print(f"  {tag}: val {row['val']:.4f} test {row['test']:.4f} int {ints}/{ints + floats} rounds {row['rounds']} "
          f"raised {len(row['raised'])} {wall:.1f} s", file=sys.stderr, flush=True)
    for l in lines:
        print("    " + l, file=sys.stderr, flush=True)
    return row


def eval_cmd(kind, folder):
    return f"{rel(PY)} {rel(EVAL)} {kind} {rel(folder)} {{model}}"


def efficientnet(qk, env):
    model = os.path.join(bd.MODELS, "efficientnet_lite0.onnx")
    objects = bd.efficientnet()["objects"]
    val, test = objects[0::2], objects[1::2]
    s = eval_task.session(model)
    ref_val, ref_test = eval_task.top1(s, val), eval_task.top1(s, test)
    folder = os.path.join(OUT, "efficientnet_val")
    os.makedirs(folder, exist_ok=True)
    np.save(os.path.join(folder, "x.npy"), val)
    np.save(os.path.join(folder, "ref.npy"), ref_val)
    inputs = bd.calib_args("efficientnet_lite0", ["input"])
    tuned = ["--target", "metric>=0.99", "--eval-command", eval_cmd("agreement", folder)]
    runs = [("efficientnet.plain", ["--target", "none"]), ("efficientnet.tuned", tuned),
            ("efficientnet.tuned16", tuned + ["--tune-rounds", "16"]), ("efficientnet.share09", tuned + ["--min-integer-share", "0.9"])]
    agree_val = lambda p: eval_task.agreement(p, folder)  # noqa: E731
    agree_test = lambda p: float(np.mean(eval_task.top1(eval_task.session(p), test) == ref_test))  # noqa: E731
    rows = [run(qk, model, inputs, tag, extra, env, agree_val, agree_test) for tag, extra in runs]
    return {"name": f"EfficientNet-Lite0, top-1 agreement with float on objects (validation {len(val)}, test {len(test)})",
            "target": "metric>=0.99", "float": None, "rows": rows}


def write_lines(folder, xs, labels, chars=None):
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for i, x in enumerate(xs):
        np.save(os.path.join(folder, f"{i:04d}.npy"), x)
    if labels is not None:
        json.dump(labels, open(os.path.join(folder, "labels.json"), "w"))
        json.dump(chars, open(os.path.join(folder, "chars.json"), "w"))


def ocr(qk, env):
    model = onw.MODEL
    chars = bd.ocr_characters(model)
    calib, _ = onw.natural_lines(32, seed=11)
    vx, vl = onw.natural_lines(50, seed=13)
    tx, tl = onw.natural_lines(100, seed=12)
    cdir, vdir = os.path.join(OUT, "ocr_calib"), os.path.join(OUT, "ocr_val")
    write_lines(cdir, calib, None)
    write_lines(vdir, vx, vl, chars)
    f_val = eval_task.exact(model, vdir)
    f_test = onw.exact_match(model, tx, tl, chars)
    target = f"metric>={round(f_val - 0.02, 6)}"
    inputs = ["--input", f"x={cdir}"]
    tuned = ["--target", target, "--eval-command", eval_cmd("exact", vdir)]
    runs = [("ocr.plain", ["--target", "none"]), ("ocr.tuned", tuned), ("ocr.tuned16", tuned + ["--tune-rounds", "16"])]
    rows = [run(qk, model, inputs, tag, extra, env, lambda p: eval_task.exact(p, vdir), lambda p: onw.exact_match(p, tx, tl, chars))
            for tag, extra in runs]
    return {"name": f"PP-OCRv4 rec, natural widths, exact match (validation {len(vx)}, test {len(tx)})", "target": target,
            "float": (f_val, f_test), "rows": rows}


def table(exp):
    print(f"\n**{exp['name']}**, tuned target `{exp['target']}`\n")
    print("| run | options | validation | test | loop: first -> chosen (met) | rounds | ops raised | integer kernels | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    if exp["float"]:
        print(f"| float | | {exp['float'][0]:.4f} | {exp['float'][1]:.4f} | | | | | |")
    for r in exp["rows"]:
        loop = f"{r['first_val']:.4f} -> {r['loop_val']:.4f} ({'met' if r['met'] else 'missed'})" if "loop_val" in r else "-"
        opts = r["args"].replace(" --eval-command", "").split(" '")[0]
        opts = re.sub(r" \S*python \S+ \S+ \S+ \{model\}", "", opts)
        names = ", ".join(re.sub(r"^/_?|/(Conv|MatMul|Gemm)$", "", n) for n in r["raised"])
        raised = f"{len(r['raised'])} {r['change'].split(':')[0]} ({names})" if r["raised"] else "0"
        print(f"| {r['run']} | `{opts}` | {r['val']:.4f} | {r['test']:.4f} | {loop} | {r['rounds']} | {raised} | "
              f"{r['int']}/{r['kernels']} | {r['seconds']:.1f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiments", nargs="+", default=["efficientnet", "ocr"], choices=["efficientnet", "ocr"])
    ap.add_argument("--quantkit", help="QuantKit binary (default: a copy of .build/release/quantkit)")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--tables", help="only print the tables of a --json file written before")
    a = ap.parse_args()
    if a.tables:
        for e in json.load(open(a.tables)):
            table(e)
        return
    os.makedirs(OUT, exist_ok=True)
    qk = a.quantkit
    if not qk:
        qk = "/tmp/quantkit-tune-task"
        shutil.copy2(os.path.join(ROOT, ".build", "release", "quantkit"), qk + ".tmp")
        os.replace(qk + ".tmp", qk)
    env = dict(os.environ)
    env.setdefault("OPENBLAS_CORETYPE", subprocess.run(["bash", os.path.join(ROOT, "scripts", "openblas-coretype.sh")],
                                                       capture_output=True, text=True).stdout.strip())
    exps = []
    for name in a.experiments:
        exps.append({"efficientnet": efficientnet, "ocr": ocr}[name](qk, env))
        if a.json:
            with open(a.json, "w") as fh:
                json.dump(exps, fh, indent=1, default=float)
    for e in exps:
        table(e)


if __name__ == "__main__":
    main()
