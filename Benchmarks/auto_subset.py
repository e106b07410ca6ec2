"""Calibration subset selection (`quantkit quantize --auto-subset N`) against N items taken
uniformly at random from the same pool, on zoo models, by the zoo's task metric on held-out items.

    bash scripts/fetch-models.sh && bash scripts/export-efficientnet.sh && bash scripts/fetch-zoo.sh
    swift build -c release
    .venv/bin/python Benchmarks/auto_subset.py [--models efficientnet_lite0 oww_embedding] [--pool 500] [--subset 32]
                                               [--seeds 5] [--markdown] [--json FILE] [--quantkit PATH]

Per model (zoo.py's data, .cache/zoo/data/NAME): the pool is every calibration item plus the first
(POOL - n_calib) evaluation items (same index across inputs); the held-out set is the remaining
evaluation items. The pool is written as one list file per input (absolute .npy paths, one a line)
into out/auto_subset/NAME/pool/INPUT.txt. Runs, each `quantkit quantize MODEL --input NAME=LIST ...
-o OUT.q.onnx --target none --no-analysis` (every other setting default), timed:
  auto      `--auto-subset SUBSET` on the pool lists (QuantKit's k-center choice on per-item
            activation features; it writes pool/INPUT_auto.txt and calibrates on those items)
  random    SUBSET items drawn uniformly without replacement from the pool, seeds 0..SEEDS-1
            (random.Random(seed).sample; the same indices for every input)
  all       the whole pool (reference)
Columns: the task metric of each quantized model against the float model on the held-out items
(zoo.py's definitions: top-1 agreement, mean cosine, ...); random as mean +- sample std (min..max)
over seeds; wall seconds of the auto run against the mean of the random runs (and the all run).
A model with more than one input, or one that fails, falls back to the next of --fallback.
The QuantKit binary defaults to a copy of .build/release/quantkit in /tmp/quantkit-subset (so a
rebuild of .build does not change it mid-run).
"""
import argparse
import glob
import json
import os
import random
import shutil
import re
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zoo  # noqa: E402

OUT = os.path.join(zoo.ROOT, "out", "auto_subset")
HEAD = ["model", "metric (held-out n)", "auto-subset", "random mean ± std (min..max)", "all pool",
        "seconds auto / random mean / all"]


def write_list(path, files):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("".join(os.path.abspath(p) + "\n" for p in files))


def quantize(qk, m, lists, out, extra, env, log):
    """Runs one quantize; (wall seconds, stdout+stderr). lists: input -> list file."""
    cmd = [qk, "quantize", m.path, *[a for n in m.inputs for a in ("--input", f"{n}={lists[n]}")], "-o", out,
           "--target", "none", "--no-analysis", *extra]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    text = p.stdout + p.stderr
    with open(log, "w") as f:
        f.write(f"$ {' '.join(cmd)}\n{text}\nexit {p.returncode}\nwall {wall:.2f} s\n")
    if p.returncode != 0:
        raise RuntimeError(f"quantkit exited {p.returncode}: {text.strip()[-400:]}")
    return wall, text


def warnings_of(text):
    return [x.strip() for x in text.splitlines() if re.search(r"warn|QK\d{4}", x, re.I)]


def calibrated(text):
    c = re.search(r"^calibrated (\d+) items", text, re.M)
    return int(c.group(1)) if c else None


def bench(m, qk, pool_n, subset, seeds, env):
    if len(m.inputs) != 1:
        raise RuntimeError(f"{len(m.inputs)} inputs")
    folder = zoo.prepare(m)
    calib = {n: sorted(glob.glob(os.path.join(folder, "calib", n, "*.npy"))) for n in m.inputs}
    ev = {n: sorted(glob.glob(os.path.join(folder, "eval", n, "*.npy"))) for n in m.inputs}
    n_calib, n_eval = len(calib[m.inputs[0]]), len(ev[m.inputs[0]])
    extra_n = pool_n - n_calib
    if extra_n < 0 or extra_n >= n_eval:
        raise RuntimeError(f"a pool of {pool_n} does not fit {n_calib} calibration + {n_eval} evaluation items")
    pool = {n: calib[n] + ev[n][:extra_n] for n in m.inputs}
    held = [{n: np.load(ev[n][i]) for n in m.inputs} for i in range(extra_n, n_eval)]
    scratch = os.path.join(OUT, m.name)
    os.makedirs(scratch, exist_ok=True)
    pool_lists = {n: os.path.join(scratch, "pool", f"{n}.txt") for n in m.inputs}
    for n in m.inputs:
        write_list(pool_lists[n], pool[n])
    f = zoo.evaluate(m, m.path, held)
    row = {"model": m.name, "metric": m.metric, "n_held": len(held), "n_calib": n_calib, "pool": pool_n, "subset": subset,
           "warnings": {}, "runs": {}}

    def run(tag, lists, extra=()):
        out = os.path.join(scratch, f"{tag}.q.onnx")
        wall, text = quantize(qk, m, lists, out, list(extra), env, os.path.join(scratch, f"{tag}.log"))
        v, vt = zoo.compare(m, f, zoo.evaluate(m, out, held))
        row["runs"][tag] = {"metric": v, "text": vt, "seconds": wall, "calibrated": calibrated(text)}
        if warnings_of(text):
            row["warnings"][tag] = warnings_of(text)
        print(f"  {m.name} {tag}: {vt}, {wall:.1f} s, calibrated {calibrated(text)} items", file=sys.stderr, flush=True)
        return text

    # (a) auto-subset on the pool lists
    auto_lists = {n: os.path.join(scratch, "pool", f"{n}_auto.txt") for n in m.inputs}
    for p in auto_lists.values():
        if os.path.exists(p):
            os.remove(p)
    run("auto", pool_lists, ("--auto-subset", str(subset)))
    chosen = {}
    for n, p in auto_lists.items():
        if not os.path.exists(p):
            raise RuntimeError(f"--auto-subset wrote no {p}")
        lines = [x.strip() for x in open(p) if x.strip()]
        idx = {os.path.abspath(q): i for i, q in enumerate(pool[n])}
        missing = [x for x in lines if os.path.abspath(x) not in idx]
        if missing or len(lines) != subset:
            row["warnings"].setdefault("auto", []).append(f"{p}: {len(lines)} lines, {len(missing)} not in the pool")
        chosen[n] = sorted(idx[os.path.abspath(x)] for x in lines if os.path.abspath(x) in idx)
    ci = chosen[m.inputs[0]]
    row["auto_chosen"] = ci
    row["auto_from_calib"] = sum(i < n_calib for i in ci)

    # (b) random subsets, the same indices for every input
    for s in range(seeds):
        idx = random.Random(s).sample(range(pool_n), subset)
        lists = {n: os.path.join(scratch, f"random_s{s}", f"{n}.txt") for n in m.inputs}
        for n in m.inputs:
            write_list(lists[n], [pool[n][i] for i in idx])
        run(f"random_s{s}", lists)

    # (c) the whole pool
    run("all", pool_lists)
    return row


def cells(r):
    runs = r["runs"]
    rnd = [v for k, v in runs.items() if k.startswith("random_")]
    vals = np.array([v["metric"] for v in rnd])
    std = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    return [r["model"], f"{r['metric']} ({r['n_held']})", f"{runs['auto']['metric']:.4f}",
            f"{vals.mean():.4f} ± {std:.4f} ({vals.min():.4f}..{vals.max():.4f}, {len(vals)} seeds)",
            f"{runs['all']['metric']:.4f}",
            f"{runs['auto']['seconds']:.1f} / {np.mean([v['seconds'] for v in rnd]):.1f} / {runs['all']['seconds']:.1f}"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [m.name for m in zoo.ZOO]
    ap.add_argument("--models", nargs="+", default=["efficientnet_lite0", "oww_embedding"], choices=names)
    ap.add_argument("--fallback", nargs="*", default=["magika"], choices=names,
                    help="models tried, in order, in place of one that fails or has more than one input")
    ap.add_argument("--pool", type=int, default=500)
    ap.add_argument("--subset", type=int, default=32)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--quantkit", help="QuantKit binary (default: a copy of .build/release/quantkit in /tmp/quantkit-subset)")
    a = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    if not a.quantkit:
        a.quantkit = "/tmp/quantkit-subset"
        shutil.copy2(os.path.join(zoo.ROOT, ".build", "release", "quantkit"), a.quantkit + ".tmp")
        os.replace(a.quantkit + ".tmp", a.quantkit)
    zoo.load_vocabularies()
    env = dict(os.environ)
    env.setdefault("OPENBLAS_CORETYPE", subprocess.run(["bash", os.path.join(zoo.ROOT, "scripts", "openblas-coretype.sh")],
                                                       capture_output=True, text=True).stdout.strip())
    by_name = {m.name: m for m in zoo.ZOO}
    fallback = [n for n in a.fallback if n not in a.models]
    rows, failed = [], []
    queue = list(a.models)
    while queue:
        name = queue.pop(0)
        try:
            rows.append(bench(by_name[name], a.quantkit, a.pool, a.subset, a.seeds, env))
        except Exception as e:
            print(f"  {name}: failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            failed.append((name, f"{type(e).__name__}: {e}"))
            if fallback:
                queue.append(fallback.pop(0))
        if a.json:
            with open(a.json, "w") as fh:
                json.dump({"rows": rows, "failed": failed}, fh, indent=1, default=float)
    print(f"\nQuantKit {a.quantkit}: --auto-subset {a.subset} vs {a.seeds} random draws of {a.subset} from a pool of {a.pool} "
          f"(OPENBLAS_CORETYPE={env.get('OPENBLAS_CORETYPE')})\n")
    zoo.print_row(HEAD, a.markdown)
    if a.markdown:
        print("|" + "---|" * len(HEAD))
    for r in rows:
        zoo.print_row(cells(r), a.markdown)
    for r in rows:
        print(f"\n{r['model']}: auto-subset chose {len(r['auto_chosen'])} items, {r['auto_from_calib']} from the {r['n_calib']} "
              f"calibration items; calibrated items per run: "
              + ", ".join(f"{k} {v['calibrated']}" for k, v in r["runs"].items()))
        for tag, ws in r["warnings"].items():
            for w in ws:
                print(f"  warning ({tag}): {w}")
    for name, err in failed:
        print(f"\n{name}: failed: {err}")


if __name__ == "__main__":
    main()
