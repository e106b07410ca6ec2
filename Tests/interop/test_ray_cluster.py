"""Sharded calibration on a local Ray cluster (issue 24): a head node and a worker node started
with `ray start` on this machine; `python -m quantkit.cluster` calibrates the shards as Ray tasks,
merges and quantizes. The merged statistics equal one `quantkit calibrate` over all the items,
byte for byte, and so does the quantized model."""
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import BINARY, ROOT
from test_python_package import FASHION, fashion_items

RAY = os.path.join(os.path.dirname(sys.executable), "ray")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not os.access(RAY, os.X_OK):
        pytest.skip("ray is not installed in the test venv (scripts/setup.sh installs it)")
    tmp = str(tmp_path_factory.mktemp("ray"))
    port = free_port()
    # A home of its own: a ~/.ray/auth_token left by an earlier local ray.init() would make the
    # worker's `ray start` fail authentication against this head.
    home = str(tmp_path_factory.mktemp("home"))
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", HOME=home)
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    head = subprocess.run([RAY, "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1", "--include-dashboard=false",
                           "--temp-dir", tmp, *common], capture_output=True, text=True, env=env)
    assert head.returncode == 0, head.stderr[-3000:]
    try:
        worker = subprocess.run([RAY, "start", "--address", f"127.0.0.1:{port}", "--node-ip-address", "127.0.0.1", *common],
                                capture_output=True, text=True, env=env)
        assert worker.returncode == 0, worker.stderr[-3000:]
        yield f"127.0.0.1:{port}", env
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, env=env)


def item_folder(tmp_path, n):
    """`n` Fashion-MNIST items as .npy files in a folder, as a user stores them."""
    folder = tmp_path / "items"
    folder.mkdir()
    for i, feed in enumerate(fashion_items(n)):
        np.save(folder / f"{i:03d}.npy", feed["image"])
    return folder


def test_sharded_calibration_equals_one_pass(cluster, tmp_path):
    cluster, env = cluster
    folder = item_folder(tmp_path, 40)
    one = str(tmp_path / "one.json")
    r = subprocess.run([BINARY, "calibrate", FASHION, "--input", f"image={folder}", "--stats-out", one, "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    work, out = str(tmp_path / "work"), str(tmp_path / "cluster.q.onnx")
    r = subprocess.run([sys.executable, "-m", "quantkit.cluster", FASHION, "--input", f"image={folder}", "--shards", "4", "--address", cluster,
                        "--workdir", work, "-o", out, "--", "--method", "kl"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    shards = sorted(f for f in os.listdir(work) if f.startswith("shard"))
    assert len(shards) == 4
    merged = os.path.join(work, "merged.json")
    assert open(merged, "rb").read() == open(one, "rb").read()
    ref = str(tmp_path / "one.q.onnx")
    r = subprocess.run([BINARY, "quantize", FASHION, "--stats", one, "-o", ref, "--quiet", "--method", "kl"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert open(out, "rb").read() == open(ref, "rb").read()


def test_shards_cut_on_batch_boundaries():
    from quantkit.cluster import shards
    assert shards(10, 4, 1) == [(0, 2), (2, 5), (5, 7), (7, 10)]
    assert shards(10, 3, 4) == [(0, 4), (4, 8), (8, 10)]
    assert shards(3, 8, 1) == [(0, 1), (1, 2), (2, 3)]


def test_tuning_trials_on_ray(cluster, tmp_path):
    """Independent tuning trials as Ray tasks: each quantizes from the merged statistics with its
    own options and is analysed; the driver keeps the best (verdict, then worst cosine) and writes
    the same model as that trial's options give by hand."""
    folder = item_folder(tmp_path, 24)
    work, out = str(tmp_path / "work"), str(tmp_path / "tuned.q.onnx")
    cluster, env = cluster
    trials = ["", "--method minmax", "--method percentile"]
    r = subprocess.run([sys.executable, "-m", "quantkit.cluster", FASHION, "--input", f"image={folder}", "--shards", "2", "--address", cluster,
                        "--workdir", work, "-o", out, *[f"--trial={t}" for t in trials]], capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [l.split(" | ") for l in r.stdout.splitlines() if l[:1].isdigit()]
    assert len(rows) == 3 and all(len(row) == 7 for row in rows), r.stdout
    for i in range(3):
        assert os.path.exists(os.path.join(work, f"trial{i:02d}", "model.onnx"))
    best = [i for i, row in enumerate(rows) if row[0].endswith("*")]
    assert len(best) == 1, r.stdout
    def key(row):
        return (0 if row[2].startswith("OK") else 1, -float(row[3]))
    assert key(rows[best[0]]) == min(key(row) for row in rows), r.stdout
    ref = str(tmp_path / "ref.q.onnx")
    chosen = trials[best[0]].split()
    r = subprocess.run([BINARY, "quantize", FASHION, "--stats", os.path.join(work, "merged.json"), "--input", f"image={folder}", "-o", ref, "--quiet",
                        *chosen], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert open(out, "rb").read() == open(ref, "rb").read()


def test_every_trial_failing_is_QK6008(cluster, tmp_path):
    """When no trial can quantize, the driver says so with QK6008 and each trial's error, and
    writes nothing."""
    cluster, env = cluster
    folder = item_folder(tmp_path, 4)
    out = str(tmp_path / "never.onnx")
    r = subprocess.run([sys.executable, "-m", "quantkit.cluster", FASHION, "--input", f"image={folder}", "--shards", "2", "--address", cluster,
                        "--workdir", str(tmp_path / "work"), "-o", out, "--trial=--method nosuch", "--trial=--weight-bits 1"],
                       capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 2, r.stdout + r.stderr[-2000:]
    assert "QK6008" in r.stderr and "nosuch" in r.stderr, r.stderr[-2000:]
    assert not os.path.exists(out)
