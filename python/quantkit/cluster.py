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

On a real cluster every node needs the quantkit package (the wheel) and the model and data at
the same paths (a shared file system); `--address` is Ray's (`auto` joins the cluster this
machine belongs to, `ray://HOST:10001` a remote one). Scheduling is Ray's own.
"""
import argparse
import os
import subprocess
import sys
import tempfile

from ._binary import binary_path
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


def run(model, inputs, shards_wanted, output=None, calibrate_args=(), quantize_args=(), address=None, batch=1, workdir=None):
    """Calibrates `model` on `inputs` ({name: folder or list}) in shards on Ray, merges and
    quantizes. Returns (merged statistics path, output model path)."""
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
    out = None
    if output is not None:
        r = subprocess.run([binary, "quantize", model, "--stats", merged, "-o", output, "--quiet", *quantize_args], capture_output=True, text=True)
        if r.returncode != 0:
            raise QuantKitError.from_stderr(r.stderr, r.returncode)
        out = output
    return merged, out


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
    a = ap.parse_args(argv)
    inputs = dict(x.split("=", 1) for x in a.input)
    try:
        merged, out = run(a.model, inputs, a.shards, a.output, a.calibrate_arg, quantize_args, a.address, a.batch, a.workdir)
    except QuantKitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"statistics {merged}")
    if out:
        print(f"model      {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
