"""Calibration memory must not grow with the number of batches (issue 5).

The statistics kept per tensor have a fixed size, and every batch runs the same tensors, so
the peak resident set of `quantkit calibrate` over 40 batches must stay within 10% of the
peak over 4 (the issue's target for 100 vs 1,000 images; docs/BENCHMARKS.md measures that
on JPEG files). Random data keeps the test independent of the benchmark images.
"""
import os
import subprocess

import pytest

from conftest import BINARY, CACHE

MODEL = os.path.join(CACHE, "models", "efficientnet_lite0.onnx")


def peak_mb(tmp_path, batches):
    p = subprocess.Popen([BINARY, "calibrate", MODEL, "--input", "input=random", "--random-items", str(4 * batches),
                          "--batch", "4", "--threads", "2", "--stats-out", str(tmp_path / f"s{batches}.json"), "--quiet"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    err = p.stderr.read().decode()
    p.stderr.close()
    assert os.waitstatus_to_exitcode(status) == 0, err
    return usage.ru_maxrss / 1024


def test_calibration_peak_memory_does_not_grow_with_batches(tmp_path):
    if not os.path.exists(MODEL) or not os.path.exists(BINARY):
        pytest.skip("model or release binary missing")
    few, many = peak_mb(tmp_path, 4), peak_mb(tmp_path, 40)
    assert many < 1.10 * few, f"peak RSS {few:.0f} MB over 4 batches but {many:.0f} MB over 40"
