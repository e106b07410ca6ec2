#!/usr/bin/env python3
"""Trains the small Fashion-MNIST CNN committed as Tests/fixtures/fashion_cnn.onnx.

Run with the torch venv made by scripts/export-efficientnet.sh (.cache/torch-venv/bin/python).
Data: Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist, 60,000 training and
10,000 test images). The model takes float32 [N,1,28,28] pixels scaled to [0,1] (x/255) and
returns 10 class logits. Architecture: three Conv+BatchNorm+ReLU blocks (the BatchNorms are kept
in the export so that QuantKit's BN folding is exercised), max pooling, global average pooling and
one Gemm. Seeded and single-threaded, so a rerun gives the same weights on the same machine.
"""
import gzip
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn

SRC = "/usr/share/datasets/fashion-mnist"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "fixtures", "fashion_cnn.onnx")


def read_idx(name):
    with gzip.open(os.path.join(SRC, name), "rb") as f:
        data = f.read()
    ndim = struct.unpack(">I", data[:4])[0] & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


class FashionCNN(nn.Module):
    def __init__(self):
        super().__init__()
        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        self.features = nn.Sequential(
            *block(1, 16), nn.MaxPool2d(2),           # 14x14
            *block(16, 32), nn.MaxPool2d(2),          # 7x7
            *block(32, 64), nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(64, 10)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)   # OpenMP spinning makes 2 threads slower on a busy 2-core machine
    xtr = torch.from_numpy(read_idx("train-images-idx3-ubyte.gz").astype(np.float32) / 255).unsqueeze(1)
    ytr = torch.from_numpy(read_idx("train-labels-idx1-ubyte.gz").astype(np.int64))
    xte = torch.from_numpy(read_idx("t10k-images-idx3-ubyte.gz").astype(np.float32) / 255).unsqueeze(1)
    yte = torch.from_numpy(read_idx("t10k-labels-idx1-ubyte.gz").astype(np.int64))
    model = FashionCNN()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    epochs = int(os.environ.get("EPOCHS", "3"))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=4e-3, total_steps=epochs * (len(xtr) // 128 + 1))
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), 128):
            idx = perm[i:i + 128]
            loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            acc = sum((model(xte[i:i + 1000]).argmax(1) == yte[i:i + 1000]).sum().item() for i in range(0, 10000, 1000)) / 10000
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}, test top-1 {acc:.4f}", flush=True)
    model.eval()
    tmp = OUT + ".tmp"
    torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), tmp, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}}, opset_version=13, do_constant_folding=False,
                      dynamo=False)
    os.replace(tmp, OUT)
    print(f"wrote {OUT} (test top-1 {acc:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
