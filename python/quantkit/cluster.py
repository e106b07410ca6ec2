"""Calibration sharded over a Ray cluster, then one merge and one quantization.

    python -m quantkit.cluster MODEL.onnx --input NAME=FOLDER_OR_LIST [--input ...] --shards 8 \\
        [--address auto] [--calibrate-arg=--method=kl ...] [-o OUT.onnx] [QUANTIZE OPTIONS after --]

1. The items of each input are listed as `quantkit` lists them (a folder: its supported files,
   recursively, sorted by relative path; a list file: its lines), and cut into `--shards`
   contiguous shards (on batch boundaries).
2. Each shard is a Ray task: `quantkit calibrate MODEL --input NAME=SHARD_LIST ... --stats-out`
   on whatever node Ray chooses; the task returns the statistics file's bytes.
3. The driver merges them (`quantkit calibrate --merge`): histograms, counts and sums merge
   exactly, so the merged file equals, byte for byte, one `quantkit calibrate` over all items
   (same batch size).
4. `quantkit quantize MODEL --stats MERGED ...` writes the model (the same model as from the
   one-pass statistics).

With `--trial ARGS` (repeat) or `--trials` (a default set: the default range method, percentile,
mse, minmax, cross-layer equalization, SmoothQuant auto), step 4 becomes independent tuning
trials, each a Ray task: `quantkit quantize MODEL --stats MERGED --input ... ARGS` into the work
folder, analysed on the same data. A trial whose options transform the float model before
calibration (`--equalize`, `--smoothquant`) calibrates on its own data instead of the merged
statistics. The driver prints every trial's verdict, worst output cosine (worst slice included),
lowest top-1 agreement and integer-kernel count, keeps the best (verdict OK first, then the worst
cosine, then top-1 agreement, then integer kernels) and writes it to `-o` with `quantkit quantize`
and the same options (the same model, byte for byte, as that trial's).

On a real cluster every node needs the quantkit package (the wheel) and the model and data at
the same paths (a shared file system); `--address` is Ray's (`auto` joins the cluster this
machine belongs to, `ray://HOST:10001` a remote one). Scheduling is Ray's own.
"""
import argparse
import os
import re
import shlex
import time
import subprocess
import sys
import tempfile

from ._api import QuantizeResult
from ._binary import binary_path
from ._run import Completed
from ._errors import QuantKitError

SUPPORTED = (".jpg", ".jpeg", ".png", ".bmp", ".npy", ".pb", ".raw", ".bin")


def items_of(path):
    """The item files of an input as quantkit lists them."""
    if os.path.isdir(path):
        found = []
        for root, _, files in os.walk(path):
            for f in files:
                if f.lower().endswith(SUPPORTED) and not f.startswith("."):
                    full = os.path.join(root, f)
                    found.append((os.path.relpath(full, path).encode(), full))
        return [full for _, full in sorted(found)]
    base = os.path.dirname(os.path.abspath(path))
    out = []
    for line in open(path):
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line if os.path.isabs(line) else os.path.join(base, line))
    return out


def shards(n_items, shards, batch):
    """Contiguous [lo, hi) ranges, cut on batch boundaries, none empty."""
    batches = (n_items + batch - 1) // batch
    k = max(1, min(shards, batches))
    cuts = [batches * i // k * batch for i in range(k + 1)]
    cuts[-1] = n_items
    return [(cuts[i], cuts[i + 1]) for i in range(k) if cuts[i] < cuts[i + 1]]


def calibrate_shard(model, lists, args, binary=None):
    """Runs `quantkit calibrate` on one shard (lists: {input: [files]}); returns the statistics."""
    binary = binary or binary_path()
    with tempfile.TemporaryDirectory(prefix="quantkit-shard-") as d:
        cmd = [binary, "calibrate", model, "--stats-out", os.path.join(d, "stats.json"), "--quiet"]
        for name, files in lists.items():
            lst = os.path.join(d, f"input{len(cmd)}.txt")
            with open(lst, "w") as f:
                f.write("".join(p + "\n" for p in files))
            cmd += ["--input", f"{name}={lst}"]
        r = subprocess.run(cmd + list(args), capture_output=True, text=True)
        if r.returncode != 0:
            raise QuantKitError.from_stderr(r.stderr, r.returncode)
        return open(os.path.join(d, "stats.json"), "rb").read()


DEFAULT_TRIALS = ([], ["--method", "percentile"], ["--method", "mse"], ["--method", "minmax"], ["--equalize"], ["--smoothquant", "auto"])


def score_of(report):
    """(worst output cosine, worst slice included; lowest top-1 agreement or None) of a JSON report."""
    cosines, top1 = [], []
    for o in report.get("outputs", []):
        m = o["metrics"]
        cosines.append(min([m["cosine"]] + [s["cosine"] for s in m.get("slices") or []]))
        if m.get("top1Agreement") is not None:
            top1.append(m["top1Agreement"])
    return (min(cosines) if cosines else None), (min(top1) if top1 else None)


def quantize_trial(model, stats, data_args, args, out, binary=None, calibrate_args=(), threads=1):
    """One tuning trial: `quantkit quantize` from the merged statistics (or, for options that
    transform the float model first, from the data) with `args`, analysed on the data. Returns
    what the driver ranks: verdict, worst cosine, top-1 agreement, integer kernels, seconds."""
    binary = binary or binary_path()
    t0 = time.perf_counter()
    own = any(a in ("--equalize", "--smoothquant") or a.startswith("--smoothquant=") for a in args)
    # As many threads as Ray gave the task; a trial that calibrates itself does it as the shards did.
    cmd = [binary, "quantize", model, "-o", out, "--threads", str(threads), *(list(calibrate_args) if own else ["--stats", stats]), *data_args, *args]
    r = subprocess.run(cmd, capture_output=True, text=True)
    result = {"args": list(args), "seconds": time.perf_counter() - t0, "own_calibration": own}
    if r.returncode != 0:
        result["error"] = str(QuantKitError.from_stderr(r.stderr, r.returncode))
        return result
    q = QuantizeResult(Completed(cmd, r.stdout, r.stderr, []))
    result["verdict"] = q.verdict or "?"
    integer = (q.summary.get("integer") or "").split()
    result["integer"] = (int(integer[0]), int(integer[2])) if len(integer) > 2 and integer[0].isdigit() else None
    if q.report is not None:
        result["cosine"], result["top1"] = score_of(q.report)
    return result


def rank_key(t):
    """Sort key, best first: verdict OK, worst cosine, top-1 agreement, integer kernels."""
    if "error" in t:
        return (1, 0, 0, 0, 0)
    return (0, 0 if str(t.get("verdict", "")).startswith("OK") else 1, -(t.get("cosine") or 0), -(t.get("top1") if t.get("top1") is not None else 1),
            -(t["integer"][0] if t.get("integer") else 0))


def tune(model, stats, inputs, trials, output, workdir, quantize_args=(), calibrate_args=(), trial_cpus=1):
    """Runs the trials as Ray tasks of `trial_cpus` CPUs each (Ray already initialized), writes
    the best to `output` and returns (trials in the given order, index of the best)."""
    import ray
    binary = binary_path()
    data_args = [a for name, path in inputs.items() for a in ("--input", f"{name}={path}")]
    task = ray.remote(num_cpus=trial_cpus)(quantize_trial)
    futures = [task.remote(model, stats, data_args, list(quantize_args) + list(t), os.path.join(workdir, f"trial{i:02d}", "model.onnx"), binary,
                           calibrate_args, trial_cpus)
               for i, t in enumerate(trials)]
    results = ray.get(futures)
    ok = [i for i, t in enumerate(results) if "error" not in t]
    if not ok:
        raise QuantKitError("QK6008", "every tuning trial failed: " + "; ".join(f"{shlex.join(t['args']) or 'defaults'}: {t['error']}" for t in results),
                            "check the trials' options and the data")
    best = min(ok, key=lambda i: (rank_key(results[i]), i))
    chosen = results[best]
    cmd = [binary, "quantize", model, "-o", output, "--quiet", *(list(calibrate_args) if chosen["own_calibration"] else ["--stats", stats]), *data_args,
           *chosen["args"]]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise QuantKitError.from_stderr(r.stderr, r.returncode)
    return results, best


def run(model, inputs, shards_wanted, output=None, calibrate_args=(), quantize_args=(), address=None, batch=1, workdir=None, trials=None,
        trial_cpus=1):
    """Calibrates `model` on `inputs` ({name: folder or list}) in shards on Ray, merges and
    quantizes (with `trials`, a list of option lists: the best of those trials, each a Ray task).
    Returns (merged statistics path, output model path, trial results or None, best index)."""
    import ray
    binary = binary_path()
    lists = {name: items_of(path) for name, path in inputs.items()}
    counts = {len(v) for v in lists.values()}
    if len(counts) != 1:
        raise QuantKitError("QK2106", f"calibration inputs have different numbers of items: {({k: len(v) for k, v in lists.items()})}",
                            "give every input the same number of files, in the same order")
    n = counts.pop()
    if n == 0:
        raise QuantKitError("QK2103", f"no calibration items in {inputs}", "point the inputs at folders or lists of supported files")
    parts = shards(n, shards_wanted, batch)
    workdir = workdir or tempfile.mkdtemp(prefix="quantkit-cluster-")
    os.makedirs(workdir, exist_ok=True)
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False, include_dashboard=False) if address else ray.init(log_to_driver=False, include_dashboard=False)
    task = ray.remote(num_cpus=1)(calibrate_shard)
    extra = list(calibrate_args) + (["--batch", str(batch)] if batch != 1 else [])
    futures = [task.remote(model, {k: v[lo:hi] for k, v in lists.items()}, extra) for lo, hi in parts]
    shard_files = []
    for i, data in enumerate(ray.get(futures)):
        path = os.path.join(workdir, f"shard{i:03d}.json")
        with open(path, "wb") as f:
            f.write(data)
        shard_files.append(path)
    merged = os.path.join(workdir, "merged.json")
    r = subprocess.run([binary, "calibrate", "--merge", *shard_files, "--stats-out", merged, "--quiet"], capture_output=True, text=True)
    if r.returncode != 0:
        raise QuantKitError.from_stderr(r.stderr, r.returncode)
    out, results, best = None, None, None
    if trials:
        if output is None:
            raise QuantKitError("QK7007", "tuning trials need an output model", "give -o OUT.onnx")
        results, best = tune(model, merged, inputs, trials, output, workdir, quantize_args, extra, trial_cpus)
        out = output
    elif output is not None:
        r = subprocess.run([binary, "quantize", model, "--stats", merged, "-o", output, "--quiet", *quantize_args], capture_output=True, text=True)
        if r.returncode != 0:
            raise QuantKitError.from_stderr(r.stderr, r.returncode)
        out = output
    return merged, out, results, best


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    quantize_args = []
    if "--" in argv:
        i = argv.index("--")
        argv, quantize_args = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(prog="python -m quantkit.cluster", description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--input", action="append", required=True, help="NAME=FOLDER_OR_LIST (repeat per model input)")
    ap.add_argument("--shards", type=int, required=True)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--address", default=None, help="Ray address (auto, ray://HOST:10001); default: a local Ray")
    ap.add_argument("--calibrate-arg", action="append", default=[], help="an option for every shard's `quantkit calibrate` (repeat)")
    ap.add_argument("--workdir", default=None, help="where the shards' statistics and the merged file go")
    ap.add_argument("-o", "--output", default=None, help="the quantized model (default: only the merged statistics)")
    ap.add_argument("--trial", action="append", default=[], help="options of one tuning trial, as one string after = (--trial=\"--method kl\"; repeat); the best trial is written to -o")
    ap.add_argument("--trial-cpus", type=int, default=1, help="CPUs (and quantkit threads) per trial task (default 1)")
    ap.add_argument("--trials", action="store_true", help="the default trials: range methods default, percentile, mse, minmax; --equalize; --smoothquant auto")
    a = ap.parse_args(argv)
    inputs = dict(x.split("=", 1) for x in a.input)
    trials = [shlex.split(t) for t in a.trial] + ([list(t) for t in DEFAULT_TRIALS] if a.trials else [])
    try:
        merged, out, results, best = run(a.model, inputs, a.shards, a.output, a.calibrate_arg, quantize_args, a.address, a.batch, a.workdir, trials,
                                         a.trial_cpus)
    except QuantKitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"statistics {merged}")
    if results:
        print("trial | options | verdict | worst cosine | top-1 agreement | integer kernels | seconds")
        for i, t in enumerate(results):
            opts = shlex.join(t["args"]) or "(defaults)"
            if "error" in t:
                print(f"{i} | {opts} | failed: {t['error'].replace('|', '/')} | - | - | - | {t['seconds']:.1f}")
                continue
            cos = f"{t['cosine']:.4f}" if t.get("cosine") is not None else "-"
            top1 = f"{t['top1']:.4f}" if t.get("top1") is not None else "-"
            integer = f"{t['integer'][0]} of {t['integer'][1]}" if t.get("integer") else "-"
            verdict = t.get("verdict", "?")
            codes = sorted(set(re.findall(r"QK\d{4}", verdict)))
            verdict = "OK" if verdict.startswith("OK") else ("NOT OK" + (f" ({', '.join(codes)})" if codes else ""))
            print(f"{i}{' *' if i == best else ''} | {opts} | {verdict} | {cos} | {top1} | {integer} | {t['seconds']:.1f}")
        print(f"chosen     trial {best} ({shlex.join(results[best]['args']) or 'defaults'})")
    if out:
        print(f"model      {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
