#!/usr/bin/env python3
"""Writes the ONNX backend test suites of the installed `onnx` wheel into a cache folder.

- node/<case>/model.onnx + test_data_set_*/input_*.pb, output_*.pb for every case of
  onnx.backend.test.case.node.collect_testcases(), plus manifest.json with each case's
  rtol/atol and op type;
- light/<name>/model.onnx + test_data_set_0 for the light_* real architectures shipped in the
  wheel (inputs as the onnx runner makes them: arange(n)/n; reference outputs from the wheel).

Usage: gen-onnx-tests.py OUT_DIR   (skips the work when OUT_DIR/stamp matches these onnx, numpy and
ml_dtypes versions)
"""
import json
import os
import shutil
import sys

import warnings

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.test.case import node as node_cases


def write_value(path, value, vtype):
    if isinstance(value, (onnx.TensorProto, onnx.SequenceProto, onnx.MapProto, onnx.OptionalProto)):
        proto = value
    elif vtype.HasField("sequence_type"):
        proto = numpy_helper.from_list(value)
    elif vtype.HasField("map_type"):
        proto = numpy_helper.from_dict(value)
    elif vtype.HasField("optional_type"):
        proto = numpy_helper.from_optional(value)
    else:
        proto = numpy_helper.from_array(np.asarray(value))
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())


def gen_node(out):
    manifest = {}
    cases = node_cases.collect_testcases()
    for case in cases:
        d = os.path.join(out, "node", case.name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "model.onnx"), "wb") as f:
            f.write(case.model.SerializeToString())
        for k, (inputs, outputs) in enumerate(case.data_sets):
            ds = os.path.join(d, f"test_data_set_{k}")
            os.makedirs(ds, exist_ok=True)
            for j, v in enumerate(inputs):
                write_value(os.path.join(ds, f"input_{j}.pb"), v, case.model.graph.input[j].type)
            for j, v in enumerate(outputs):
                write_value(os.path.join(ds, f"output_{j}.pb"), v, case.model.graph.output[j].type)
        ops = sorted({(n.domain, n.op_type) for n in case.model.graph.node})
        manifest[case.name] = {
            "rtol": case.rtol,
            "atol": case.atol,
            "ops": [f"{d}::{o}" if d else o for d, o in ops],
            "opset": {o.domain: o.version for o in case.model.opset_import},
        }
    with open(os.path.join(out, "node", "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    return len(cases)


def gen_light(out):
    src = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    names = sorted(f[len("light_"):-len(".onnx")] for f in os.listdir(src) if f.endswith(".onnx"))
    for name in names:
        d = os.path.join(out, "light", name)
        ds = os.path.join(d, "test_data_set_0")
        os.makedirs(ds, exist_ok=True)
        model_path = os.path.join(src, f"light_{name}.onnx")
        shutil.copy(model_path, os.path.join(d, "model.onnx"))
        model = onnx.load(model_path)
        inits = {i.name for i in model.graph.initializer}
        k = 0
        for x in model.graph.input:
            if x.name in inits:
                continue
            shape = tuple(dd.dim_value if dd.HasField("dim_value") else 1 for dd in x.type.tensor_type.shape.dim)
            n = int(np.prod(shape))
            value = (np.arange(n).reshape(shape) / n).astype(np.float32)
            with open(os.path.join(ds, f"input_{k}.pb"), "wb") as f:
                f.write(numpy_helper.from_array(value).SerializeToString())
            k += 1
        for j in range(len(model.graph.output)):
            shutil.copy(os.path.join(src, f"light_{name}_output_{j}.pb"), os.path.join(ds, f"output_{j}.pb"))
    return len(names)


def main():
    warnings.simplefilter("ignore")
    out = sys.argv[1]
    stamp = os.path.join(out, "stamp")
    # The expected outputs are computed here by onnx's case code with numpy and ml_dtypes, so the
    # cache is as stale when either of those changes as when onnx does.
    import ml_dtypes

    want = f"onnx {onnx.__version__} numpy {np.__version__} ml_dtypes {ml_dtypes.__version__} v2"
    if os.path.exists(stamp) and open(stamp).read() == want:
        print(f"onnx tests: up to date in {out}")
        return
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    n = gen_node(out)
    m = gen_light(out)
    with open(stamp, "w") as f:
        f.write(want)
    print(f"onnx tests: wrote {n} node cases and {m} light models to {out}")


if __name__ == "__main__":
    main()
