#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (scripts/fuzz.sh) into Tests/fuzz/seeds/<target>/:
small valid inputs of every reader, so that the fuzzer starts from the formats' structure.

Usage: .venv/bin/python scripts/make-fuzz-seeds.py   (the seeds are committed; rerun to change them)
"""
import io
import os
import shutil
import struct

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "Tests", "fuzz", "seeds")


def folder(target):
    d = os.path.join(OUT, target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def onnx_seeds():
    d = folder("onnx")
    f = TensorProto.FLOAT
    x = helper.make_tensor_value_info("x", f, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", f, None)
    w = numpy_helper.from_array(np.arange(8, dtype=np.float32).reshape(2, 1, 2, 2) / 8, "w")
    b = numpy_helper.from_array(np.array([0.5, -0.5], np.float32), "b")
    conv = helper.make_graph([helper.make_node("Conv", ["x", "w", "b"], ["c"], group=2, pads=[1, 1, 1, 1]),
                              helper.make_node("Relu", ["c"], ["r"]),
                              helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[2, 2])], "conv", [x], [y], [w, b])
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "shape")
    mm = numpy_helper.from_array(np.ones((32, 3), np.float32), "mm")
    gemm = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["flat"]),
                              helper.make_node("MatMul", ["flat", "mm"], ["m"]),
                              helper.make_node("Softmax", ["m"], ["y"], axis=-1)], "mlp", [x], [y], [shape, mm])
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    then = helper.make_graph([helper.make_node("Identity", ["x"], ["t"])], "then", [], [helper.make_tensor_value_info("t", f, None)])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [], [helper.make_tensor_value_info("e", f, None)])
    branch = helper.make_graph([helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other)], "if", [x, cond], [y])
    const = helper.make_graph([helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.array([2.0], np.float32))),
                               helper.make_node("Mul", ["x", "k"], ["y"])], "const", [x], [y])
    for name, g, opset in [("conv", conv, 17), ("mlp", gemm, 13), ("if", branch, 17), ("const", const, 9)]:
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]), os.path.join(d, name + ".onnx"))


def npy_seeds():
    d = folder("npy")
    np.save(os.path.join(d, "f32.npy"), np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2))
    np.save(os.path.join(d, "i64.npy"), np.array([[1, -2, 3]], np.int64))
    np.save(os.path.join(d, "fortran.npy"), np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)))
    np.save(os.path.join(d, "big_endian.npy"), np.arange(4, dtype=">f4"))
    np.save(os.path.join(d, "bool.npy"), np.array([True, False]))
    np.save(os.path.join(d, "scalar.npy"), np.float16(1.5))


def pb_seeds():
    d = folder("pb")
    for name, t in [("raw", numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "t")),
                    ("typed", helper.make_tensor("t", TensorProto.INT64, [3], [1, 2, 3])),
                    ("strings", helper.make_tensor("t", TensorProto.STRING, [2], [b"a", b"bc"])),
                    ("half", numpy_helper.from_array(np.ones(4, np.float16), "t"))]:
        with open(os.path.join(d, name + ".pb"), "wb") as out:
            out.write(t.SerializeToString())


def image_seeds():
    d = folder("image")
    rgb = Image.frombytes("RGB", (8, 6), bytes(range(144)))
    rgb.save(os.path.join(d, "rgb.jpg"), quality=90)
    rgb.convert("L").save(os.path.join(d, "gray.jpg"))
    rgb.save(os.path.join(d, "rgb.png"))
    rgb.convert("RGBA").save(os.path.join(d, "rgba.png"))
    rgb.convert("P").save(os.path.join(d, "palette.png"))
    Image.frombytes("I;16", (4, 4), bytes(range(32))).save(os.path.join(d, "gray16.png"))
    rgb.save(os.path.join(d, "rgb.bmp"))
    rgb.convert("P").save(os.path.join(d, "palette.bmp"))
    rgb.convert("1").save(os.path.join(d, "mono.bmp"))


def config_seeds():
    d = folder("json")
    for name in ("efficientnet_lite0.json", "minilm_l3_random.json", "ppocrv4_det.json"):
        shutil.copy(os.path.join(ROOT, "examples", name), d)
    shutil.copy(os.path.join(ROOT, "examples", "xquant_sample", "inference.json"), os.path.join(d, "xquant_inference.json")) \
        if os.path.exists(os.path.join(ROOT, "examples", "xquant_sample", "inference.json")) else None
    t = folder("toml")
    shutil.copy(os.path.join(ROOT, "examples", "ppocr_cls.toml"), t)


def list_seeds():
    d = folder("list")
    with open(os.path.join(d, "one.txt"), "w") as f:
        f.write("a.npy\n# comment\nsub/b.npy\n\n/abs/c.npy\n")
    with open(os.path.join(d, "shared.txt"), "wb") as f:
        f.write(b"a.npy;b.npy\r\nc.npy ; d.npy # x\n")


def plan_seeds():
    d = folder("plan")
    with open(os.path.join(d, "written.plan.csv"), "w") as f:
        f.write("op_id,node,type,dtype,per,saturation,value_range_in_bits,reason\n0,/Shape,Shape,fp32,,,,no quantized form\n"
                "1,/conv/Conv,Conv,int8,channel,default,,\n2,/conv2/Conv,Conv,int16,tensor,percentile(0.999),16,\n"
                "3,/relu/Relu,Relu,fp16,,,,plan\n4,/fc/Gemm,Gemm,bf16,,,,plan\n")
    with open(os.path.join(d, "icraft.csv"), "wb") as f:  # an Excel export: byte order mark, CRLF, Icraft's names
        f.write(b"\xef\xbb\xbfop_id,type,dtype,per,saturation,value_range_in_bits\r\n0,Conv,int16,tensor,kld,16\r\n2,Conv,float32,,,\r\n")
    with open(os.path.join(d, "quoted.csv"), "w") as f:
        f.write('node,dtype,reason\n"a,""b""",fp16,"why,\nnot"\nc1,int8,\n')


if __name__ == "__main__":
    onnx_seeds()
    npy_seeds()
    pb_seeds()
    image_seeds()
    config_seeds()
    list_seeds()
    plan_seeds()
    total = sum(len(fs) for _, _, fs in os.walk(OUT))
    print(f"wrote {total} seeds to {OUT}")
