"""Running a model many times must not grow memory (issue 3).

`quantkit bench` reports the process's peak resident set after one warm-up run and N timed
runs of the same model. If any run left something behind (a tensor kept alive, a kernel
cache growing per run), the peak after 40 runs would exceed the peak after 3 by at least
37 times the leak: a single leaked intermediate tensor of these models is >= 0.25 MB, so
37 runs leak >= 9 MB, above the 4 MB allowance for allocator noise.
"""
import os

import pytest

from conftest import BINARY, CACHE, quantkit_json

MODELS = {
    "efficientnet_lite0": ["--dim", "2=224", "--dim", "3=224"],
    "ppocrv4_rec": ["--dim", "2=48", "--dim", "3=320"],
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_repeated_runs_do_not_grow_memory(name):
    path = os.path.join(CACHE, "models", name + ".onnx")
    if not os.path.exists(path) or not os.path.exists(BINARY):
        pytest.skip("model or release binary missing")

    def peak(iterations):
        return quantkit_json("bench", path, "--batch", "1", "--threads", "2", "--iterations", str(iterations),
                             *MODELS[name])["peak_rss_mb"]

    few, many = peak(3), peak(40)
    assert many - few < 4.0, f"peak RSS {few:.1f} MB after 3 runs but {many:.1f} MB after 40"
