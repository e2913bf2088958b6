#!/usr/bin/env python3
"""Time the PyTorch forward of the embedded default's Fashion-MNIST DiT (tools/train_dit.py's
model class with assets/fmnist_dit.safetensors) on the same rows as Go's
BenchmarkFMNISTVsTorch, so that the two per-row times come from one run on one machine.

Usage: python3 tools/bench_torch_dit.py --rows 250 --iters 10 [--threads 1]
Prints one line: `torch_us_per_row=<float> rows=<n> iters=<n> threads=<n>`.
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fmnist_common import load_safetensors  # noqa: E402
from train_dit import REPO, from_weights  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=250)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--weights", default=os.path.join(REPO, "assets", "fmnist_dit.safetensors"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = from_weights(load_safetensors(args.weights))
    model.eval()
    # The same rows as the Go benchmark: zero images, t = 10·i mod 1000, y = i mod 11.
    n = args.rows
    x = torch.zeros(n, 1, 32, 32)
    t = torch.tensor([10 * i % 1000 for i in range(n)], dtype=torch.int64)
    y = torch.tensor([i % 11 for i in range(n)], dtype=torch.int64)
    with torch.no_grad():
        for _ in range(args.warmup):
            model(x, t, y)
        t0 = time.perf_counter()
        for _ in range(args.iters):
            model(x, t, y)
        dt = time.perf_counter() - t0
    print(f"torch_us_per_row={dt / args.iters / n * 1e6:.3f} rows={n} iters={args.iters} threads={args.threads}")


if __name__ == "__main__":
    main()
