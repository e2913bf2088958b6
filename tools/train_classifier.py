#!/usr/bin/env python3
"""Train the small Fashion-MNIST CNN whose 128-d penultimate features define FID-FMNIST.

Input: 32x32x1, the same preprocessing as the DiT (28x28 padded by 2 px with 0, then x/127.5-1),
so DiT samples in [-1, 1] (clipped) can be classified directly.

Writes (under assets/):
  fmnist_classifier.safetensors         weights (F32, PyTorch layouts, see the JSON)
  fmnist_classifier.json                exact architecture + test accuracy
  fmnist_test_stats.npz                 mu, sigma (float64) of the 10k test images' features
  fmnist_classifier_golden.safetensors  8 test images with their features and logits

Usage: python3 tools/train_classifier.py [--epochs 4] [--seed 0] [--threads 1]
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fmnist_common import load_fmnist, to_model_space, save_safetensors  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ASSETS = os.path.join(os.path.dirname(HERE), "assets")


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, stride=1, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=1, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, stride=1, padding=1)
        self.fc1 = nn.Linear(64 * 4 * 4, 128)
        self.fc2 = nn.Linear(128, 10)
        self.drop = nn.Dropout(0.3)

    def features(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # [B,16,16,16]
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # [B,32,8,8]
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)  # [B,64,4,4]
        x = x.flatten(1)                            # NCHW flatten: index c*16 + h*4 + w
        return self.fc1(x)                          # [B,128] penultimate features (pre-ReLU)

    def forward(self, x):
        f = self.features(x)
        return f, self.fc2(self.drop(F.relu(f)))


ARCH = {
    "name": "fmnist_cnn_v1",
    "input": {"shape": [1, 32, 32], "layout": "NCHW",
              "preprocessing": "Fashion-MNIST uint8 28x28 padded by 2 px on every side with 0, then x/127.5 - 1 "
                               "(range [-1, 1], background -1; identical to the DiT's data space). "
                               "DiT samples should be clipped to [-1, 1] before classification."},
    "layers": [
        {"op": "conv2d", "weight": "conv1.weight", "bias": "conv1.bias", "in": 1, "out": 16, "kernel": 3, "stride": 1, "padding": 1, "padding_mode": "zeros", "weight_layout": "[out, in, kh, kw], cross-correlation (PyTorch)"},
        {"op": "relu"},
        {"op": "maxpool2d", "kernel": 2, "stride": 2, "padding": 0, "out_shape": [16, 16, 16]},
        {"op": "conv2d", "weight": "conv2.weight", "bias": "conv2.bias", "in": 16, "out": 32, "kernel": 3, "stride": 1, "padding": 1, "padding_mode": "zeros"},
        {"op": "relu"},
        {"op": "maxpool2d", "kernel": 2, "stride": 2, "padding": 0, "out_shape": [32, 8, 8]},
        {"op": "conv2d", "weight": "conv3.weight", "bias": "conv3.bias", "in": 32, "out": 64, "kernel": 3, "stride": 1, "padding": 1, "padding_mode": "zeros"},
        {"op": "relu"},
        {"op": "maxpool2d", "kernel": 2, "stride": 2, "padding": 0, "out_shape": [64, 4, 4]},
        {"op": "flatten", "order": "NCHW: feature index = c*16 + h*4 + w", "out": 1024},
        {"op": "linear", "weight": "fc1.weight", "bias": "fc1.bias", "in": 1024, "out": 128, "weight_layout": "[out, in], y = x W^T + b", "note": "output of this layer (BEFORE the ReLU) = the 128-d penultimate features used for FID-FMNIST"},
        {"op": "relu"},
        {"op": "dropout", "p": 0.3, "note": "training only; identity at inference"},
        {"op": "linear", "weight": "fc2.weight", "bias": "fc2.bias", "in": 128, "out": 10, "note": "logits; argmax = class"},
    ],
    "features": "penultimate = fc1(...) before its ReLU, 128-d, float32 (pre-activation, so no dead/constant dimensions and a full-rank covariance)",
    "classes": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}


def write_golden(model, Xte, Yte, out_dir):
    """8 test images (0..7) with their features and logits, computed in eval mode."""
    model.eval()
    gx = Xte[:8].clone()
    with torch.no_grad():
        gf, gl = model(gx)
    save_safetensors(os.path.join(out_dir, "fmnist_classifier_golden.safetensors"),
                     {"x": gx, "labels": Yte[:8].clone(), "features": gf, "logits": gl},
                     {"note": "x = test images 0..7 in model space [-1,1], 32x32; labels I64; eval mode"})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out-dir", default=ASSETS)
    ap.add_argument("--golden-only", action="store_true",
                    help="reload the exported weights and only rewrite the golden file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.golden_only:
        from fmnist_common import load_safetensors
        xte, yte = load_fmnist("t10k")
        model = Classifier()
        model.load_state_dict(load_safetensors(os.path.join(args.out_dir, "fmnist_classifier.safetensors")))
        return write_golden(model, to_model_space(xte), torch.from_numpy(yte), args.out_dir)
    torch.manual_seed(args.seed)
    t0 = time.time()
    xtr, ytr = load_fmnist("train")
    xte, yte = load_fmnist("t10k")
    Xtr, Ytr = to_model_space(xtr), torch.from_numpy(ytr)
    Xte, Yte = to_model_space(xte), torch.from_numpy(yte)
    model = Classifier()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = len(Xtr) // args.batch
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr * 2, total_steps=total)
    log = open(os.path.join(HERE, "train_classifier.log"), "w")

    def evaluate():
        model.eval()
        feats, logits = [], []
        with torch.no_grad():
            for i in range(0, len(Xte), 1000):
                f, l = model(Xte[i:i + 1000])
                feats.append(f); logits.append(l)
        model.train()
        feats, logits = torch.cat(feats), torch.cat(logits)
        return feats, logits, (logits.argmax(1) == Yte).float().mean().item()

    step = 0
    for ep in range(args.epochs):
        perm = torch.randperm(len(Xtr))
        run = 0.0
        for i in range(steps_per_epoch):
            idx = perm[i * args.batch:(i + 1) * args.batch]
            _, logits = model(Xtr[idx])
            loss = F.cross_entropy(logits, Ytr[idx])
            opt.zero_grad(); loss.backward(); opt.step(); sched.step()
            run += loss.item(); step += 1
            if (i + 1) % 100 == 0:
                log.write(f"epoch {ep + 1} step {step} loss {run / 100:.4f} t {time.time() - t0:.0f}s\n"); log.flush()
                run = 0.0
        _, _, acc = evaluate()
        msg = f"epoch {ep + 1}: test accuracy {acc:.4f} ({time.time() - t0:.0f}s)"
        print(msg, flush=True); log.write(msg + "\n"); log.flush()
    feats, logits, acc = evaluate()
    model.eval()
    train_s = time.time() - t0
    sd = {k: v.float() for k, v in model.state_dict().items()}
    os.makedirs(args.out_dir, exist_ok=True)
    save_safetensors(os.path.join(args.out_dir, "fmnist_classifier.safetensors"), sd,
                     {"arch": ARCH["name"], "test_accuracy": f"{acc:.4f}", "seed": args.seed})
    f64 = feats.double().numpy()
    mu = f64.mean(axis=0)
    sigma = np.cov(f64, rowvar=False)
    np.savez(os.path.join(args.out_dir, "fmnist_test_stats.npz"), mu=mu, sigma=sigma)
    write_golden(model, Xte, Yte, args.out_dir)
    arch = dict(ARCH)
    arch.update({"test_accuracy": round(acc, 4), "train": {"epochs": args.epochs, "batch": args.batch,
                 "optimizer": "Adam", "lr_schedule": f"OneCycle max_lr {args.lr * 2}", "seed": args.seed,
                 "seconds": round(train_s)},
                 "stats": {"file": "fmnist_test_stats.npz", "n": len(Xte), "keys": "mu [128], sigma [128,128] float64 (np.cov, ddof=1)",
                           "dead_features": int((f64.std(axis=0) == 0).sum())},
                 "weights": {k: list(v.shape) for k, v in sd.items()}})
    with open(os.path.join(args.out_dir, "fmnist_classifier.json"), "w") as f:
        json.dump(arch, f, indent=1)
    msg = f"final test accuracy {acc:.4f}, {train_s:.0f}s, dead features {arch['stats']['dead_features']}"
    print(msg); log.write(msg + "\n"); log.close()


if __name__ == "__main__":
    main()
