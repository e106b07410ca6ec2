"""Writes a Conv-only stand-in of a CNN: its Conv layers (same weights, groups, strides and
kernel sizes) chained with SAME padding, ending in GlobalAveragePool, with a
symbolic batch. It uses only operators of the convolution/pooling families, so the executor's
convolution throughput can be compared with ONNX Runtime's before every operator exists; it
is not numerically the model (residual adds, Pad and the Clip activations are left out).

    .venv/bin/python Benchmarks/conv_standin.py .cache/models/efficientnet_lite0.onnx /tmp/effnet_convs.onnx
"""
import sys

import onnx
from onnx import helper, numpy_helper


def main(src, dst):
    m = onnx.load(src)
    init = {i.name: i for i in m.graph.initializer}
    nodes, inits = [], []
    prev, channels = "input", 3
    size = None
    for k, node in enumerate(n for n in m.graph.node if n.op_type == "Conv"):
        w = init[node.input[1]]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        group = attrs.get("group", 1)
        if w.dims[1] * group != channels:
            continue  # not on the main chain
        wname = f"w{k}"
        inits.append(numpy_helper.from_array(numpy_helper.to_array(w), wname))
        ins = [prev, wname]
        if len(node.input) > 2 and node.input[2] in init:
            inits.append(numpy_helper.from_array(numpy_helper.to_array(init[node.input[2]]), f"b{k}"))
            ins.append(f"b{k}")
        out = f"c{k}"
        nodes.append(helper.make_node("Conv", ins, [out], group=group, strides=attrs.get("strides", [1, 1]),
                                      kernel_shape=list(w.dims[2:]), auto_pad="SAME_UPPER"))
        prev, channels = out, w.dims[0]
    nodes.append(helper.make_node("GlobalAveragePool", [prev], ["output"]))
    g = helper.make_graph(nodes, "conv_standin",
                          [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["batch", 3, 224, 224])],
                          [helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # loadable by older ONNX Runtime releases too
    onnx.save(model, dst)
    print(f"{dst}: {sum(1 for n in nodes if n.op_type == 'Conv')} Conv layers")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
