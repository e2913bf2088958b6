#!/usr/bin/env python3
"""A quick PyTorch check of a DiT export's sample quality, independent of the Go harness.

Samples n images with DDIM (eta 0, uniform stride, CFG on ε with the null label 10) from fixed
noise and labels (torch generator, --seed), classifies them with the FID-FMNIST classifier and
prints FID-FMNIST against assets/fmnist_test_stats.npz split into its two terms (‖μ−μ_ref‖² and
the covariance term), the class accuracy and the feature covariance's trace (a diversity
measure). Its noise is not the Go harness's, so its FID differs from `runbench run` by the
sampling spread of 500 images (about ±10 here); compare weights or settings within this tool.

Usage: python3 tools/eval_dit.py W.safetensors [--cfg 3] [--n 500] [--steps 50] [--clip]
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fmnist_common import load_safetensors  # noqa: E402
from train_classifier import Classifier  # noqa: E402
from train_dit import REPO, Diffusion, from_weights  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("weights")
    ap.add_argument("--cfg", type=float, default=2.0)
    ap.add_argument("--clip", action="store_true", help="clip x0 to [-1, 1] at every step (ADM's clip_denoised)")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = from_weights(load_safetensors(a.weights)).eval()
    clf = Classifier()
    clf.load_state_dict(load_safetensors(os.path.join(REPO, "assets", "fmnist_classifier.safetensors")))
    clf.eval()
    ac = np.cumprod(1 - Diffusion().betas)
    ts = list(range(0, 1000, 1000 // a.steps))[::-1]
    g = torch.Generator().manual_seed(a.seed)
    x = torch.randn(a.n, 1, 32, 32, generator=g)
    y = torch.randint(0, 10, (a.n,), generator=g)
    feats, preds = [], []
    with torch.no_grad():
        for b in range(0, a.n, 100):
            xb, yb = x[b:b + 100], y[b:b + 100]
            B = len(xb)
            for i, t in enumerate(ts):
                out = model(torch.cat([xb, xb]), torch.full((2 * B,), t, dtype=torch.int64),
                            torch.cat([yb, torch.full_like(yb, 10)]))
                e = out[:, :1]
                eps = e[B:] + a.cfg * (e[:B] - e[B:])
                at, aprev = ac[t], (ac[ts[i + 1]] if i + 1 < len(ts) else 1.0)
                x0 = (xb - np.sqrt(1 - at) * eps) / np.sqrt(at)
                if a.clip:
                    x0 = x0.clamp(-1, 1)
                    eps = (xb - np.sqrt(at) * x0) / np.sqrt(1 - at)
                xb = np.sqrt(aprev) * x0 + np.sqrt(1 - aprev) * eps
            f, logits = clf(xb.clamp(-1, 1))
            feats.append(f.double().numpy())
            preds.append(logits.argmax(1).numpy())
    F = np.concatenate(feats)
    P = np.concatenate(preds)
    ref = np.load(os.path.join(REPO, "assets", "fmnist_test_stats.npz"))
    mu, sigma = F.mean(0), np.cov(F, rowvar=False)
    # Tr sqrt(Σ Σ_ref) from the eigenvalues of the product (real and ≥ 0 up to rounding).
    tr = np.sqrt(np.clip(np.linalg.eigvals(sigma @ ref["sigma"]).real, 0, None)).sum()
    mean_term = ((mu - ref["mu"]) ** 2).sum()
    cov_term = np.trace(sigma) + np.trace(ref["sigma"]) - 2 * tr
    print(f"{os.path.basename(a.weights)} ddim{a.steps} cfg {a.cfg} clip {a.clip} n {a.n}: "
          f"FID-FMNIST {mean_term + cov_term:.1f} (mean term {mean_term:.1f}, covariance term {cov_term:.1f}) "
          f"class acc {(P == y.numpy()).mean():.3f}, feature trace {np.trace(sigma):.0f} (test images {np.trace(ref['sigma']):.0f})")


if __name__ == "__main__":
    main()
