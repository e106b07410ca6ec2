"""`quantkit inspect --json` agrees with what the `onnx` package reports, on every real model,
light architecture and node-suite model."""
import collections
import os

import numpy as np
import onnx
import pytest

from conftest import quantkit_json, real_models, suite_models


def onnx_summary(path):
    m = onnx.load(path, load_external_data=False)
    g = m.graph
    inits = {t.name for t in g.initializer}

    def value(v):
        if not v.type.HasField("tensor_type"):
            return None
        t = v.type.tensor_type
        shape = None
        if t.HasField("shape"):
            shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param if d.HasField("dim_param") else "?") for d in t.shape.dim]
        elem = onnx.TensorProto.DataType.Name(t.elem_type).lower() if t.elem_type else "?"
        return {"name": v.name, "type": elem, "shape": shape}

    def all_graphs(graph):
        yield graph
        for n in graph.node:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    yield from all_graphs(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sg in a.graphs:
                        yield from all_graphs(sg)

    def key(n):
        return n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"

    graphs = list(all_graphs(g))
    tensors = [t for gg in graphs for t in gg.initializer]
    return {
        "irVersion": m.ir_version,
        "opsets": [{"domain": o.domain, "version": o.version} for o in m.opset_import],
        "producerName": m.producer_name,
        "inputs": [value(v) for v in g.input if v.name not in inits],
        "outputs": [value(v) for v in g.output],
        "opCounts": dict(collections.Counter(key(n) for n in g.node)),
        "opCountsWithSubgraphs": dict(collections.Counter(key(n) for gg in graphs for n in gg.node)),
        "parameterCount": int(sum(np.prod(t.dims, dtype=np.int64) for t in tensors)),
        "initializerCount": len(tensors),
        "subgraphCount": len(graphs) - 1,
    }


def normalise(ours):
    def value(v):
        if "(" in v["type"]:  # sequence / map / optional: not a tensor
            return None
        return {"name": v["name"], "type": v["type"], "shape": v.get("shape")}

    out = {k: ours[k] for k in ("irVersion", "opsets", "producerName", "opCounts", "opCountsWithSubgraphs", "parameterCount", "initializerCount")}
    out["inputs"] = [value(v) for v in ours["inputs"]]
    out["outputs"] = [value(v) for v in ours["outputs"]]
    out["subgraphCount"] = len(ours["subgraphs"])
    return out


def compare(path):
    ours = normalise(quantkit_json("inspect", path, "--json"))
    assert ours == onnx_summary(path), path


@pytest.mark.parametrize("path", real_models(), ids=os.path.basename)
def test_real_models_match_onnx(path):
    compare(path)


@pytest.mark.parametrize("path", suite_models("light"), ids=lambda p: p.split("/")[-2])
def test_light_models_match_onnx(path):
    compare(path)


def test_every_node_suite_model_matches_onnx():
    paths = suite_models("node")
    assert len(paths) == 1884
    mismatched = []
    for p in paths:
        try:
            compare(p)
        except AssertionError as e:
            mismatched.append(f"{p}: {e}")
    assert not mismatched, "\n".join(mismatched[:10])
