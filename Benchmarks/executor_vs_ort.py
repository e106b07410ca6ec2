"""Float throughput of QuantKit's executor against ONNX Runtime on the same models.

Run from the repository root after `swift build -c release` (and scripts/export-efficientnet.sh):

    .venv/bin/python Benchmarks/executor_vs_ort.py [--batches 1 8] [--threads 2] [--iterations 10]
        [--models efficientnet_lite0 ppocrv4_rec] [--markdown]

Each side runs in its own process (so peak RSS is its own): ONNX Runtime with
intra_op_num_threads=THREADS (default graph optimizations), and `quantkit bench` with
--threads THREADS. Both warm up once, then time ITERATIONS runs on random inputs of the same
shape. OPENBLAS_CORETYPE is set for both from scripts/openblas-coretype.sh (Debian's OpenBLAS
does not detect Zen 4/5 otherwise). With --rounds R both sides run R times, alternating, and
each keeps its fastest round; the last line prints the 1-minute load average (other jobs).

With --cpu-time the table shows CPU time (user + system) per image instead of wall time:
each side's process CPU time with ITERATIONS timed runs minus that of a process doing only the
load and warm-up, divided by ITERATIONS and the batch. Other jobs on the machine disturb it
much less than wall time; use it with --threads 1 (worker threads that spin count as CPU).
"""
import argparse
import json
import os
import resource
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, ".cache")
BINARY = os.path.join(ROOT, ".build", "release", "quantkit")

# name -> (path, fixed dimensions by index besides the batch)
MODELS = {
    "efficientnet_lite0": (os.path.join(CACHE, "models", "efficientnet_lite0.onnx"), {2: 224, 3: 224}),
    "ppocrv4_rec": (os.path.join(CACHE, "models", "ppocrv4_rec.onnx"), {2: 48, 3: 320}),
    # Conv-only stand-in written by Benchmarks/conv_standin.py (same Conv layers, no glue ops).
    "efficientnet_lite0_convs": (os.path.join(CACHE, "models", "bench_effnet_convs.onnx"), {2: 224, 3: 224}),
}

ORT_CHILD = r"""
import json, resource, sys, time
import numpy as np
import onnxruntime as ort
path, batch, threads, iters, dims = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
rng = np.random.default_rng(1)
feeds = {}
for i in s.get_inputs():
    shape = []
    for k, d in enumerate(i.shape):
        if isinstance(d, int) and d > 0: shape.append(d)
        elif str(k) in dims: shape.append(dims[str(k)])
        elif k == 0: shape.append(batch)
        else: shape.append(224 if len(i.shape) == 4 else 1)
    feeds[i.name] = rng.uniform(-1, 1, shape).astype(np.float32)
s.run(None, feeds)
times = []
for _ in range(iters):
    t0 = time.perf_counter(); s.run(None, feeds); times.append((time.perf_counter() - t0) * 1e3)
print(json.dumps({"mean_ms": sum(times) / max(len(times), 1), "min_ms": min(times, default=0),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def coretype():
    try:
        return subprocess.run(["bash", os.path.join(ROOT, "scripts", "openblas-coretype.sh")],
                              capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def child_cpu_seconds():
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def run_json(cmd, env):
    before = child_cpu_seconds()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        return None, (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["cpu_s"] = child_cpu_seconds() - before
    return out, None


def run_cpu(make_cmd, iterations, env):
    """Milliseconds of CPU per timed run: a run with `iterations` minus a run with none."""
    full, err = run_json(make_cmd(iterations), env)
    base, err0 = run_json(make_cmd(0), env)
    if not full or not base:
        return None, err or err0
    full["mean_ms"] = max(0.0, full["cpu_s"] - base["cpu_s"]) * 1e3 / iterations
    return full, None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["efficientnet_lite0", "ppocrv4_rec"], choices=sorted(MODELS))
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1,
                    help="run both sides this many times, alternating, and keep each side's fastest round "
                         "(for machines shared with other jobs)")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--cpu-time", action="store_true", help="compare CPU time per image instead of wall time")
    ap.add_argument("--binary", default=BINARY, help="quantkit executable to measure (default: this checkout's release build)")
    args = ap.parse_args()

    env = dict(os.environ)
    ct = coretype()
    if ct:
        env["OPENBLAS_CORETYPE"] = ct
    rows = []
    for name in args.models:
        path, dims = MODELS[name]
        if not os.path.exists(path):
            print(f"skip {name}: {path} is missing", file=sys.stderr)
            continue
        for batch in args.batches:
            def qk_cmd(iters):
                cmd = [args.binary, "bench", path, "--batch", str(batch), "--threads", str(args.threads),
                       "--iterations", str(iters)]
                for k, v in dims.items():
                    cmd += ["--dim", f"{k}={v}"]
                return cmd

            def ort_cmd(iters):
                return [sys.executable, "-c", ORT_CHILD, path, str(batch), str(args.threads), str(iters), json.dumps(dims)]

            ort_res = qk_res = ort_err = qk_err = None
            for _ in range(max(1, args.rounds)):
                if args.cpu_time:
                    o, ort_err = run_cpu(ort_cmd, args.iterations, env)
                    q, qk_err = run_cpu(qk_cmd, args.iterations, env)
                else:
                    o, ort_err = run_json(ort_cmd(args.iterations), env)
                    q, qk_err = run_json(qk_cmd(args.iterations), env)
                if o and (ort_res is None or o["mean_ms"] < ort_res["mean_ms"]):
                    ort_res = o
                if q and (qk_res is None or q["mean_ms"] < qk_res["mean_ms"]):
                    qk_res = q
            row = {"model": name, "batch": batch}
            if ort_res:
                row["ort_ms"] = ort_res["mean_ms"] / batch
                row["ort_rss"] = ort_res["peak_rss_mb"]
            if qk_res:
                row["qk_ms"] = qk_res["mean_ms"] / batch
                row["qk_rss"] = qk_res["peak_rss_mb"]
            row["error"] = qk_err or ort_err
            rows.append(row)

    def fmt(v, f="{:.2f}"):
        return f.format(v) if v is not None else "n/a"

    unit = "CPU ms/img" if args.cpu_time else "ms/img"
    header = ["model", "batch", "ORT " + unit, "QuantKit " + unit, "ORT/QuantKit", "ORT peak MB", "QuantKit peak MB"]
    lines = []
    for r in rows:
        ratio = r["ort_ms"] / r["qk_ms"] if "ort_ms" in r and "qk_ms" in r else None
        lines.append([r["model"], str(r["batch"]), fmt(r.get("ort_ms")), fmt(r.get("qk_ms")), fmt(ratio),
                      fmt(r.get("ort_rss"), "{:.0f}"), fmt(r.get("qk_rss"), "{:.0f}")])
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for line in lines:
            print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(header)]
        print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        for line in lines:
            print("  ".join(c.ljust(w) for c, w in zip(line, widths)))
    for r in rows:
        if r["error"]:
            print(f"note: {r['model']} batch {r['batch']}: {r['error'][:300]}", file=sys.stderr)
    print(f"threads={args.threads} iterations={args.iterations} rounds={args.rounds} cpu_time={args.cpu_time} "
          f"OPENBLAS_CORETYPE={env.get('OPENBLAS_CORETYPE', '')} load average at end={os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
