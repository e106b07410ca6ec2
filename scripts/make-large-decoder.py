"""Writes a decoder-style model whose weights are over 2 GB, with external data, for the
large-model check of issue 24 (not committed; 2.28 GB in .cache/large: over the 2 GiB a protobuf can hold):

    .venv/bin/python scripts/make-large-decoder.py .cache/large [--width 2048 --layers 17]

The graph is the fixture's block structure reduced to what carries the weight: x [batch, seq,
width] -> per layer LayerNormalization -> MatMul [width, 4·width] -> Gelu written as
x·Sigmoid(1.702x) -> MatMul [4·width, width] -> residual Add, then a LayerNormalization and a head
MatMul [width, 256]. Weights are random (seeded, scaled 1/√fan-in so that activations stay in
range). Each tensor is generated and appended to the data file on its own, so writing the model
needs the memory of one tensor, not of all of them.
"""
import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=17)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(a.folder, exist_ok=True)
    model_path = os.path.join(a.folder, "large_decoder.onnx")
    data_name = "large_decoder.onnx.data"
    d, rng = a.width, np.random.default_rng(a.seed)
    inits, nodes = [], []
    with open(os.path.join(a.folder, data_name), "wb") as data:
        def external(name, array):
            array = np.ascontiguousarray(array, dtype=np.float32)
            offset = data.tell()
            data.write(array.tobytes())
            t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(array.shape))
            t.data_location = TensorProto.EXTERNAL
            for k, v in (("location", data_name), ("offset", str(offset)), ("length", str(array.nbytes))):
                e = t.external_data.add()
                e.key, e.value = k, v
            inits.append(t)

        def weight(name, k, n):
            # Generated in slices of rows: one tensor's memory at most.
            w = np.empty((k, n), np.float32)
            for r in range(0, k, 256):
                w[r:r + 256] = rng.standard_normal((min(256, k - r), n), dtype=np.float32) / np.sqrt(k)
            external(name, w)

        x = "x"
        for i in range(a.layers):
            inits.append(helper.make_tensor(f"ln{i}.g", TensorProto.FLOAT, [d], np.ones(d, np.float32)))
            inits.append(helper.make_tensor(f"ln{i}.b", TensorProto.FLOAT, [d], np.zeros(d, np.float32)))
            weight(f"fc{i}.w", d, 4 * d)
            weight(f"out{i}.w", 4 * d, d)
            nodes += [
                helper.make_node("LayerNormalization", [x, f"ln{i}.g", f"ln{i}.b"], [f"h{i}"], name=f"ln{i}", axis=-1),
                helper.make_node("MatMul", [f"h{i}", f"fc{i}.w"], [f"f{i}"], name=f"fc{i}"),
                helper.make_node("Mul", [f"f{i}", "k1702"], [f"fs{i}"], name=f"gelu_scale{i}"),
                helper.make_node("Sigmoid", [f"fs{i}"], [f"sg{i}"], name=f"gelu_sigmoid{i}"),
                helper.make_node("Mul", [f"f{i}", f"sg{i}"], [f"g{i}"], name=f"gelu{i}"),
                helper.make_node("MatMul", [f"g{i}", f"out{i}.w"], [f"o{i}"], name=f"out{i}"),
                helper.make_node("Add", [x, f"o{i}"], [f"r{i}"], name=f"residual{i}"),
            ]
            x = f"r{i}"
        inits.append(helper.make_tensor("k1702", TensorProto.FLOAT, [], [1.702]))
        inits.append(helper.make_tensor("lnf.g", TensorProto.FLOAT, [d], np.ones(d, np.float32)))
        inits.append(helper.make_tensor("lnf.b", TensorProto.FLOAT, [d], np.zeros(d, np.float32)))
        weight("head.w", d, 256)
        nodes += [helper.make_node("LayerNormalization", [x, "lnf.g", "lnf.b"], ["hf"], name="lnf", axis=-1),
                  helper.make_node("MatMul", ["hf", "head.w"], ["logits"], name="head")]
    g = helper.make_graph(nodes, "large_decoder", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", d])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "sequence", 256])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, model_path)
    size = os.path.getsize(os.path.join(a.folder, data_name))
    print(f"wrote {model_path} with {size / 2**30:.2f} GiB of external data")


if __name__ == "__main__":
    main()
