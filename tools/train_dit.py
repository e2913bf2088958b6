#!/usr/bin/env python3
"""Train the tiny class-conditional DiT of cachebench's embedded default on Fashion-MNIST.

The model is a plain-PyTorch copy of the reference DiT (facebookresearch/DiT models.py): patch
embed conv, fixed 2-D sin-cos pos_embed, timestep embedder (256 sinusoidal features, cos first,
MLP), label table with a null row (class dropout 0.1), adaLN-Zero blocks (fused qkv, LayerNorm
without affine, eps 1e-6, GELU tanh), final layer, learn_sigma=True, with the reference's
initialisation. The loss is the reference's hybrid loss (guided_diffusion training_losses with
LossType.RESCALED_MSE and ModelVarType.LEARNED_RANGE, 1000 linear-beta steps): MSE on eps plus
the VLB term (in bits/dim) for the learned-range variance with the model's mean detached.

Usage:
  python3 tools/train_dit.py --steps 10000 --threads 1 [--deadline-min M] [--resume] [--init W.safetensors]
  (every ~5 min: checkpoint to --ckpt and export of the EMA weights to --out)
  python3 tools/train_dit.py --init W.safetensors --depth 6 --grow 0,-,1,2,-,3 ...   # deepen a trained model
  python3 tools/train_dit.py --golden IN OUT       # write forward inputs IN and PyTorch outputs OUT
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fmnist_common import (load_fmnist, to_model_space, save_safetensors, load_safetensors,  # noqa: E402
                           export, save_grid)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# ---------------------------------------------------------------- model (reference DiT)


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden, freq=256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(freq, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.freq = freq

    @staticmethod
    def timestep_embedding(t, dim, max_period=10000):
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, t):
        return self.mlp(self.timestep_embedding(t, self.freq))


class LabelEmbedder(nn.Module):
    def __init__(self, num_classes, hidden, dropout_prob):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), hidden)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    def forward(self, labels, train):
        if train and self.dropout_prob > 0:
            drop = torch.rand(labels.shape[0]) < self.dropout_prob
            labels = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        return self.embedding_table(labels)


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    def __init__(self, hidden, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden, heads)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden, int(hidden * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden, bias=True))

    def forward(self, x, c):
        sm, scm, gm, sp, scp, gp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gm.unsqueeze(1) * self.attn(modulate(self.norm1(x), sm, scm))
        x = x + gp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), sp, scp))
        return x


class FinalLayer(nn.Module):
    def __init__(self, hidden, patch, out_ch):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden, patch * patch * out_ch, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden, bias=True))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class PatchEmbed(nn.Module):
    def __init__(self, patch, in_ch, hidden):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, hidden, kernel_size=patch, stride=patch, bias=True)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, N, D], token n = i*grid + j


def get_1d_sincos(embed_dim, pos):
    omega = np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000 ** omega
    out = np.einsum("m,d->md", pos.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def get_2d_sincos_pos_embed(embed_dim, grid_size):
    # identical to the reference: grid = meshgrid(grid_w, grid_h); first half encodes grid[0]
    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.meshgrid(grid_w, grid_h)  # here w goes first
    grid = np.stack(grid, axis=0).reshape([2, 1, grid_size, grid_size])
    emb_h = get_1d_sincos(embed_dim // 2, grid[0])
    emb_w = get_1d_sincos(embed_dim // 2, grid[1])
    return np.concatenate([emb_h, emb_w], axis=1)


class DiT(nn.Module):
    def __init__(self, input_size=32, patch_size=4, in_channels=1, hidden_size=48, depth=4,
                 num_heads=3, mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=10, learn_sigma=True):
        super().__init__()
        self.learn_sigma = learn_sigma
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.patch_size = patch_size
        self.num_heads = num_heads
        self.x_embedder = PatchEmbed(patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        self.num_patches = (input_size // patch_size) ** 2
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, hidden_size), requires_grad=False)
        self.blocks = nn.ModuleList([DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self):
        def _basic_init(m):
            if isinstance(m, nn.Linear):
                torch.nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
        self.apply(_basic_init)
        pe = get_2d_sincos_pos_embed(self.pos_embed.shape[-1], int(self.num_patches ** 0.5))
        self.pos_embed.data.copy_(torch.from_numpy(pe).float().unsqueeze(0))
        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view([w.shape[0], -1]))
        nn.init.constant_(self.x_embedder.proj.bias, 0)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.constant_(block.adaLN_modulation[-1].weight, 0)
            nn.init.constant_(block.adaLN_modulation[-1].bias, 0)
        nn.init.constant_(self.final_layer.adaLN_modulation[-1].weight, 0)
        nn.init.constant_(self.final_layer.adaLN_modulation[-1].bias, 0)
        nn.init.constant_(self.final_layer.linear.weight, 0)
        nn.init.constant_(self.final_layer.linear.bias, 0)

    def unpatchify(self, x):
        c, p = self.out_channels, self.patch_size
        h = w = int(x.shape[1] ** 0.5)
        x = x.reshape(x.shape[0], h, w, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], c, h * p, h * p)

    def forward(self, x, t, y):
        x = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y, self.training)
        for block in self.blocks:
            x = block(x, c)
        return self.unpatchify(self.final_layer(x, c))

    def forward_with_cfg(self, x, t, y, cfg_scale):
        half = x[: len(x) // 2]
        combined = torch.cat([half, half], dim=0)
        out = self.forward(combined, t, y)
        eps, rest = out[:, :3], out[:, 3:]
        cond, uncond = torch.split(eps, len(eps) // 2, dim=0)
        h = uncond + cfg_scale * (cond - uncond)
        return torch.cat([torch.cat([h, h], dim=0), rest], dim=1)


def block_ids(sd):
    """The block indices a state dict holds, in order, as strings ("0", "1", ...)."""
    return sorted({k.split(".")[1] for k in sd if k.startswith("blocks.")}, key=int)


def from_weights(sd, heads=3):
    """The DiT whose shapes the state dict sd holds (hidden from the patch embed, depth from the
    block count), with sd loaded; heads is not in the file, as for the Go loader."""
    depth = len(block_ids(sd))
    model = DiT(hidden_size=sd["x_embedder.proj.weight"].shape[0], depth=depth, num_heads=heads)
    model.load_state_dict(sd)
    return model


# ---------------------------------------------------------------- diffusion losses (ADM / DiT)


class Diffusion:
    def __init__(self, T=1000):
        betas = np.linspace(1e-4, 0.02, T, dtype=np.float64)
        self.T = T
        ac = np.cumprod(1.0 - betas)
        acp = np.append(1.0, ac[:-1])
        self.betas = betas
        self.sqrt_ac = np.sqrt(ac)
        self.sqrt_1mac = np.sqrt(1.0 - ac)
        self.sqrt_recip_ac = np.sqrt(1.0 / ac)
        self.sqrt_recipm1_ac = np.sqrt(1.0 / ac - 1)
        pv = betas * (1.0 - acp) / (1.0 - ac)
        self.post_logvar_clipped = np.log(np.append(pv[1], pv[1:]))
        self.post_c1 = betas * np.sqrt(acp) / (1.0 - ac)
        self.post_c2 = (1.0 - acp) * np.sqrt(1.0 - betas) / (1.0 - ac)
        self.log_betas = np.log(betas)

    @staticmethod
    def _ex(arr, t, ndim=4):
        v = torch.from_numpy(arr)[t].float()
        return v.view(-1, *([1] * (ndim - 1)))

    def q_sample(self, x0, t, noise):
        return self._ex(self.sqrt_ac, t) * x0 + self._ex(self.sqrt_1mac, t) * noise

    def q_posterior(self, x0, xt, t):
        mean = self._ex(self.post_c1, t) * x0 + self._ex(self.post_c2, t) * xt
        return mean, self._ex(self.post_logvar_clipped, t)

    def p_mean_logvar(self, out, xt, t):
        eps, v = out.chunk(2, dim=1)
        min_log = self._ex(self.post_logvar_clipped, t)
        max_log = self._ex(self.log_betas, t)
        frac = (v + 1) / 2
        logvar = frac * max_log + (1 - frac) * min_log
        x0 = self._ex(self.sqrt_recip_ac, t) * xt - self._ex(self.sqrt_recipm1_ac, t) * eps
        mean, _ = self.q_posterior(x0, xt, t)
        return mean, logvar

    def training_losses(self, model, x0, y):
        B = x0.shape[0]
        t = torch.randint(0, self.T, (B,))
        noise = torch.randn_like(x0)
        xt = self.q_sample(x0, t, noise)
        out = model(xt, t, y)
        eps, v = out.chunk(2, dim=1)
        mse = ((noise - eps) ** 2).mean(dim=(1, 2, 3))
        frozen = torch.cat([eps.detach(), v], dim=1)  # VLB trains only the variance
        true_mean, true_logvar = self.q_posterior(x0, xt, t)
        mean, logvar = self.p_mean_logvar(frozen, xt, t)
        kl = normal_kl(true_mean, true_logvar, mean, logvar).mean(dim=(1, 2, 3)) / math.log(2.0)
        nll = -discretized_gaussian_log_likelihood(x0, mean, 0.5 * logvar).mean(dim=(1, 2, 3)) / math.log(2.0)
        vb = torch.where(t == 0, nll, kl) * (self.T / 1000.0)  # RESCALED_MSE factor (=1 here)
        return (mse + vb).mean(), mse.mean(), vb.mean()


def normal_kl(m1, lv1, m2, lv2):
    return 0.5 * (-1.0 + lv2 - lv1 + torch.exp(lv1 - lv2) + ((m1 - m2) ** 2) * torch.exp(-lv2))


def approx_standard_normal_cdf(x):
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


def discretized_gaussian_log_likelihood(x, means, log_scales):
    centered = x - means
    inv = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv * (centered + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    cdf_delta = cdf_plus - cdf_min
    return torch.where(x < -0.999, log_cdf_plus,
                       torch.where(x > 0.999, log_one_minus_cdf_min, torch.log(cdf_delta.clamp(min=1e-12))))


# ---------------------------------------------------------------- training




def lr_at(step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    if args.schedule == "constant":
        return args.lr
    p = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * p))


def grow(old, fresh, spec):
    """Deepen a trained DiT: spec lists, for each new block, the old block it takes ("-" = a new one).

    A new block keeps its fresh initialisation, whose zero adaLN-Zero modulation makes it the
    identity, so the grown model starts with the trained model's outputs exactly.
    """
    src = spec.split(",")
    depth, have = len(block_ids(fresh)), block_ids(old)
    bad = [x for x in src if x != "-" and x not in have]
    if len(src) != depth or bad:
        raise SystemExit(f"--grow {spec}: want {depth} entries (--depth), each '-' or an old block "
                         f"of {','.join(have)}" + (f"; not blocks: {','.join(bad)}" if bad else ""))
    sd = {k: v for k, v in old.items() if not k.startswith("blocks.")}
    for i, s in enumerate(src):
        for k, v in fresh.items():
            if not k.startswith(f"blocks.{i}."):
                continue
            sd[k] = v.clone() if s == "-" else old["blocks." + s + k[len(f"blocks.{i}"):]]
    missing = set(fresh) - set(sd)
    if missing:
        raise SystemExit(f"--grow {spec}: the grown model lacks {sorted(missing)[:4]}")
    return sd


def train(args):
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    xs, ys = load_fmnist("train")
    X = to_model_space(xs)
    Y = torch.from_numpy(ys)
    model = DiT(hidden_size=args.hidden, depth=args.depth, num_heads=args.heads)
    ema = DiT(hidden_size=args.hidden, depth=args.depth, num_heads=args.heads)
    ema.load_state_dict(model.state_dict())
    ema.eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    diff = Diffusion()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0)
    nparam = sum(p.numel() for p in params)
    print(f"trainable params {nparam}", flush=True)
    step = 0
    if args.init:
        # Stage 2: continue from exported (EMA) weights with a fresh optimiser and lr schedule.
        sd = load_safetensors(args.init)
        if args.grow:
            sd = grow(sd, model.state_dict(), args.grow)
        model.load_state_dict(sd); ema.load_state_dict(sd)
        print(f"initialised model and EMA from {args.init}", flush=True)
    if args.resume and os.path.exists(args.ckpt):
        ck = torch.load(args.ckpt)
        model.load_state_dict(ck["model"]); ema.load_state_dict(ck["ema"]); opt.load_state_dict(ck["opt"])
        step = ck["step"]
        torch.set_rng_state(ck["rng"])
    log = open(args.log, "a" if args.resume else "w")
    if not args.resume:
        log.write(f"# train_dit.py seed={args.seed} batch={args.batch} lr={args.lr} min_lr={args.min_lr} warmup={args.warmup} "
                  f"schedule={args.schedule} steps={args.steps} ema={args.ema} params={nparam} init={args.init or '-'}\n"
                  f"# step loss mse vb lr seconds\n")
    t0 = time.time()
    last_ck = t0
    run_l = run_m = run_v = 0.0
    n_run = 0
    N = X.shape[0]
    perm = torch.randperm(N)
    pos = 0
    model.train()
    stopped = "steps"
    while step < args.steps:
        if pos + args.batch > N:
            perm = torch.randperm(N); pos = 0
        idx = perm[pos:pos + args.batch]; pos += args.batch
        x0, y = X[idx], Y[idx]
        if args.hflip:
            flip = torch.rand(x0.shape[0]) < 0.5
            x0 = torch.where(flip.view(-1, 1, 1, 1), x0.flip(3), x0)
        lr = lr_at(step, args)
        for g in opt.param_groups:
            g["lr"] = lr
        loss, mse, vb = diff.training_losses(model, x0, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(args.ema).add_(pm.detach(), alpha=1 - args.ema)
        step += 1
        run_l += loss.item(); run_m += mse.item(); run_v += vb.item(); n_run += 1
        now = time.time()
        if step % args.log_every == 0:
            log.write(f"{step} {run_l / n_run:.5f} {run_m / n_run:.5f} {run_v / n_run:.5f} {lr:.2e} {now - t0:.1f}\n")
            log.flush()
            print(f"step {step} loss {run_l / n_run:.4f} mse {run_m / n_run:.4f} vb {run_v / n_run:.4f} "
                  f"lr {lr:.2e} {now - t0:.0f}s", flush=True)
            run_l = run_m = run_v = 0.0; n_run = 0
        deadline = args.deadline_min > 0 and now - t0 > args.deadline_min * 60
        if now - last_ck > args.ckpt_every or step == args.steps or deadline:
            torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                        "step": step, "rng": torch.get_rng_state(), "args": vars(args)}, args.ckpt)
            export(ema, args.out, {"step": step, "seed": args.seed, "train_seconds": f"{now - t0:.0f}",
                                   "config": f"DiT in32 p4 C1 D{args.hidden} depth{args.depth} heads{args.heads} mlp4 classes10 learn_sigma"})
            last_ck = now
            print(f"checkpoint at step {step} -> {args.ckpt}, {args.out}", flush=True)
        if deadline:
            stopped = "deadline"
            break
    log.write(f"# finished: {step} steps in {time.time() - t0:.0f} s (stopped by {stopped})\n")
    log.close()


def golden(args):
    """Write forward inputs (x, t, y, x_cfg, t_cfg, y_cfg) and the PyTorch EMA model's outputs."""
    torch.manual_seed(123)
    model = from_weights(load_safetensors(args.out), args.heads)
    model.eval()
    x = torch.randn(4, 1, 32, 32)
    t = torch.tensor([999, 500, 37, 0], dtype=torch.int64)
    y = torch.tensor([0, 3, 9, 10], dtype=torch.int64)
    xc = torch.randn(4, 1, 32, 32)
    xc[2:] = xc[:2]
    tc = torch.tensor([750, 20, 750, 20], dtype=torch.int64)
    yc = torch.tensor([7, 2, 10, 10], dtype=torch.int64)
    with torch.no_grad():
        out = model(x, t, y)
        outc = model.forward_with_cfg(xc, tc, yc, 4.0)
    save_safetensors(args.golden[0], {"x": x, "t": t, "y": y, "x_cfg": xc, "t_cfg": tc, "y_cfg": yc})
    save_safetensors(args.golden[1], {"out": out, "out_cfg": outc})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=9000)
    ap.add_argument("--batch", type=int, default=192)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--schedule", choices=["cosine", "constant"], default="cosine")
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hflip", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--ckpt-every", type=float, default=300.0, help="seconds")
    ap.add_argument("--deadline-min", type=float, default=0, help="stop after this many minutes")
    ap.add_argument("--ckpt", default="/tmp/fmnist_dit_ckpt.pt")
    ap.add_argument("--log", default=os.path.join(HERE, "train_dit.log"))
    ap.add_argument("--out", default=os.path.join(REPO, "assets", "fmnist_dit.safetensors"))
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--init", default="", help="start model and EMA from these safetensors weights (fresh optimiser)")
    ap.add_argument("--hidden", type=int, default=48)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--heads", type=int, default=3)
    ap.add_argument("--grow", default="", help="with --init: old block per new block, e.g. 0,1,-,2,3,- ('-' = new identity block)")
    ap.add_argument("--bench", type=int, default=0, help="time this many steps and exit")
    ap.add_argument("--golden", nargs=2, metavar=("IN", "OUT"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.golden:
        return golden(args)
    if args.bench:
        torch.manual_seed(0)
        model = DiT(hidden_size=args.hidden, depth=args.depth, num_heads=args.heads); diff = Diffusion()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        X = torch.randn(args.batch, 1, 32, 32); Y = torch.randint(0, 10, (args.batch,))
        for i in range(args.bench + 3):
            if i == 3:
                t0 = time.time()
            loss, _, _ = diff.training_losses(model, X, Y)
            opt.zero_grad(); loss.backward(); opt.step()
        print(f"{(time.time() - t0) / args.bench:.3f} s/step at batch {args.batch}")
        return
    train(args)


if __name__ == "__main__":
    main()
