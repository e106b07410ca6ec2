"""Trains the decoder fixture of issue 24 and exports it to ONNX twice (run in the torch venv):

    bash scripts/export-efficientnet.sh                  # makes .cache/torch-venv once
    .cache/torch-venv/bin/python scripts/train-gpt-fixture.py Tests/fixtures/gpt

A byte-level GPT (3 layers, 4 heads, width 96, context 128; pre-LayerNorm blocks of causal
self-attention and a GELU MLP; learned positions) trained with torch on the CPU on the license
texts of Debian's base-files package (/usr/share/common-licenses): the first 90 % of each file
is training text, the last 10 % is held out (FOLDER/heldout.txt, written beside the models).

Writes, into FOLDER:
- gpt.onnx: input_ids [batch, seq] (int64) -> logits [batch, seq, 256], no cache;
- gpt_kv.onnx: input_ids [batch, seq] and per layer past_key_L / past_value_L
  [batch, 4, past, 24] -> logits and present_key_L / present_value_L [batch, 4, past + seq, 24],
  as decoders are deployed (a prefill with past = 0, then one token per step);
- train.json: the seed, steps, losses, the held-out perplexity of the model and of a unigram
  baseline;
- reference.npz: torch's logits for the first 96 held-out bytes (Tests/interop/test_decoder.py
  holds ONNX Runtime's to them).

Deterministic for a given torch build (seeded, one thread). About four minutes on two cores.
"""
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

WIDTH, LAYERS, HEADS, CONTEXT, VOCAB = 96, 3, 4, 128, 256
SEED, STEPS, BATCH, LR = 0, 1500, 32, 3e-3
LICENSES = "/usr/share/common-licenses"


def corpus():
    train, held = bytearray(), bytearray()
    for name in sorted(os.listdir(LICENSES)):
        path = os.path.join(LICENSES, name)
        if os.path.islink(path) or not os.path.isfile(path):
            continue  # GPL -> GPL-3 and the like: each text once
        data = open(path, "rb").read()
        cut = int(len(data) * 0.9)
        train += data[:cut]
        held += data[cut:]
    return bytes(train), bytes(held)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(WIDTH, 3 * WIDTH)
        self.proj = nn.Linear(WIDTH, WIDTH)

    def forward(self, x, past_k=None, past_v=None):
        b, t, _ = x.shape
        hd = WIDTH // HEADS
        q, k, v = self.qkv(x).split(WIDTH, dim=2)
        q = q.view(b, t, HEADS, hd).transpose(1, 2)
        k = k.view(b, t, HEADS, hd).transpose(1, 2)
        v = v.view(b, t, HEADS, hd).transpose(1, 2)
        if past_k is not None:
            k = torch.cat([past_k, k], dim=2)
            v = torch.cat([past_v, v], dim=2)
        total = k.shape[2]
        past = total - t
        scores = torch.matmul(q, k.transpose(2, 3)) * (1.0 / math.sqrt(hd))
        # Query i (at position past + i) sees keys 0 ... past + i.
        allowed = torch.arange(total, device=x.device)[None, :] <= (torch.arange(t, device=x.device)[:, None] + past)
        scores = scores.masked_fill(~allowed, float("-inf"))
        y = torch.matmul(F.softmax(scores, dim=-1), v)
        y = y.transpose(1, 2).reshape(b, t, WIDTH)
        return self.proj(y), k, v


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(WIDTH)
        self.attn = Attention()
        self.ln2 = nn.LayerNorm(WIDTH)
        self.fc = nn.Linear(WIDTH, 4 * WIDTH)
        self.out = nn.Linear(4 * WIDTH, WIDTH)

    def forward(self, x, past_k=None, past_v=None):
        a, k, v = self.attn(self.ln1(x), past_k, past_v)
        x = x + a
        x = x + self.out(F.gelu(self.fc(self.ln2(x))))
        return x, k, v


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, WIDTH)
        self.pos = nn.Embedding(CONTEXT, WIDTH)
        self.blocks = nn.ModuleList([Block() for _ in range(LAYERS)])
        self.ln = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, VOCAB, bias=False)

    def forward(self, ids, past=None):
        t = ids.shape[1]
        start = 0 if past is None else past[0].shape[2]
        x = self.tok(ids) + self.pos(torch.arange(start, start + t, device=ids.device))[None]
        present = []
        for i, blk in enumerate(self.blocks):
            x, k, v = blk(x, None if past is None else past[2 * i], None if past is None else past[2 * i + 1])
            present += [k, v]
        return self.head(self.ln(x)), present


class NoCache(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, ids):
        return self.m(ids)[0]


class WithCache(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, ids, *past):
        logits, present = self.m(ids, list(past))
        return (logits, *present)


def perplexity(model, data, window=CONTEXT):
    """Held-out perplexity over non-overlapping windows (each predicts its tokens after the first)."""
    x = torch.tensor(list(data), dtype=torch.long)
    n = (len(x) - 1) // window
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, n, 16):
            idx = [x[j * window:(j + 1) * window + 1] for j in range(i, min(n, i + 16))]
            b = torch.stack(idx)
            logits = model(b[:, :-1])[0]
            total += F.cross_entropy(logits.reshape(-1, VOCAB), b[:, 1:].reshape(-1), reduction="sum").item()
            count += b[:, 1:].numel()
    return math.exp(total / count)


def unigram_perplexity(train, held):
    counts = torch.bincount(torch.tensor(list(train)), minlength=VOCAB).double() + 1
    p = counts / counts.sum()
    h = torch.tensor(list(held))
    return math.exp(-torch.log(p[h]).mean().item())


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    train, held = corpus()
    data = torch.tensor(list(train), dtype=torch.long)
    model = GPT()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=STEPS, pct_start=0.1)
    g = torch.Generator().manual_seed(SEED)
    t0, losses = time.time(), []
    for step in range(STEPS):
        starts = torch.randint(0, len(data) - CONTEXT - 1, (BATCH,), generator=g)
        b = torch.stack([data[s:s + CONTEXT + 1] for s in starts])
        logits = model(b[:, :-1])[0]
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), b[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == STEPS - 1:
            losses.append([step, round(loss.item(), 4)])
            print(f"step {step} loss {loss.item():.3f} ({time.time() - t0:.0f} s)", flush=True)
    model.eval()
    ppl, uni = perplexity(model, held), unigram_perplexity(train, held)
    print(f"held-out perplexity {ppl:.3f}, unigram {uni:.3f}")
    open(os.path.join(out, "heldout.txt"), "wb").write(held)

    ids = torch.tensor([list(b"This License applies to any program")], dtype=torch.long)
    hd = WIDTH // HEADS
    with torch.no_grad():
        torch.onnx.export(NoCache(model), (ids,), os.path.join(out, "gpt.onnx"), input_names=["input_ids"], output_names=["logits"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"}},
                          opset_version=17, dynamo=False, do_constant_folding=True)
        past = [torch.zeros(1, HEADS, 3, hd) for _ in range(2 * LAYERS)]
        names_in = ["input_ids"] + [f"past_{kv}_{i}" for i in range(LAYERS) for kv in ("key", "value")]
        names_out = ["logits"] + [f"present_{kv}_{i}" for i in range(LAYERS) for kv in ("key", "value")]
        axes = {"input_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"}}
        for n in names_in[1:]:
            axes[n] = {0: "batch", 2: "past_sequence"}
        for n in names_out[1:]:
            axes[n] = {0: "batch", 2: "total_sequence"}
        torch.onnx.export(WithCache(model), (ids, *past), os.path.join(out, "gpt_kv.onnx"), input_names=names_in, output_names=names_out,
                          dynamic_axes=axes, opset_version=17, dynamo=False, do_constant_folding=True)
    report = {"seed": SEED, "steps": STEPS, "batch": BATCH, "context": CONTEXT, "width": WIDTH, "layers": LAYERS, "heads": HEADS,
              "parameters": sum(p.numel() for p in model.parameters()), "losses": losses,
              "heldout_bytes": len(held), "train_bytes": len(train),
              "heldout_perplexity": round(ppl, 4), "unigram_perplexity": round(uni, 4), "seconds": round(time.time() - t0, 1),
              "torch": torch.__version__}
    # torch's logits for the first 96 held-out bytes, for the tests to hold ONNX Runtime to.
    import numpy as np
    probe = torch.tensor([list(held[:96])], dtype=torch.long)
    with torch.no_grad():
        ref = model(probe)[0].numpy()
    np.savez(os.path.join(out, "reference.npz"), input_ids=probe.numpy(), logits=ref)
    json.dump(report, open(os.path.join(out, "train.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
