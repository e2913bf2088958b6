#!/usr/bin/env python3
"""Train a tiny Stable-Diffusion-v1-style UNet (ldm UNetModel) on Fashion-MNIST "latents".

LATENT (a lossless, fixed "VAE"): the 32x32x1 image in model space (fmnist_common.to_model_space:
28x28 padded by 2 px with the background, x/127.5 - 1, range [-1, 1]) becomes a 4x16x16 latent by
a 2x2 space-to-depth:

    latent[c, i, j] = image[0, 2*i + c//2, 2*j + c%2]        c = 2*dy + dx, i, j in 0..15

and the decoder is its inverse (depth-to-space): image[0, 2*i + dy, 2*j + dx] = latent[2*dy + dx, i, j].
No scale factor (SD's 0.18215 is 1 here).

The model is a plain-PyTorch transcription of ldm's `UNetModel` (openaimodel.py) as Stable
Diffusion v1 configures it (use_spatial_transformer=True, legacy=False, fixed num_heads so
dim_head = ch // num_heads, no scale-shift norm, conv_resample), with ldm's state_dict key names
(input_blocks.*, middle_block.*, output_blocks.*, time_embed.*, out.*; no prefix):
  timestep_embedding (model_channels features, cos first) -> time_embed Linear-SiLU-Linear (4*mc);
  ResBlock: in_layers GN(32, eps 1e-5)-SiLU-conv3x3, emb_layers SiLU-Linear, out_layers
  GN-SiLU-Dropout-conv3x3 (zero init), skip 1x1 conv when channels change;
  SpatialTransformer: GN(32, eps 1e-6) -> proj_in 1x1 conv -> BasicTransformerBlock
  (x += attn1(LN x); x += attn2(LN x, context); x += GEGLU-FF(LN x), mult 4, exact gelu) ->
  proj_out 1x1 conv (zero init) + residual; CrossAttention to_q/k/v without bias, to_out.0 with;
  Downsample = conv3x3 stride 2 pad 1 (`op`); Upsample = nearest x2 then conv3x3 (`conv`);
  output blocks concatenate cat([h, hs.pop()]); out = GN-SiLU-conv3x3 (zero init).
Initialisation as ldm: PyTorch defaults, zero_module on the three zero-initialised convs.

Conditioning: context = tools/fmnist_text.encode(caption)[0], float32 [12, 32] (zero past the
words). The unconditional context is the encoding of the empty prompt: fmnist_text.encode("")
refuses a caption without words, and by the encoder's own rule (zero past the words) an empty
caption is all zeros, so the null context is zeros [12, 32] (SD: the encoding of "").
Classifier-free dropout 0.1 replaces the context by it. Training captions: the 4 templates of
tools/fmnist_text.py, drawn uniformly at random per sample (as tools/train_pixart.py).

Diffusion (ldm DDPM): 1000 steps, scaled-linear betas = linspace(sqrt(0.00085), sqrt(0.012),
1000)**2 in float64, alphas_cumprod in float64 then float32 (as ldm registers them), integer t
uniform in 0..999, eps prediction, plain MSE. Sampling: ldm's PLMSSampler (eta 0, uniform
ddim_timesteps range(0, 1000, 1000//S) + 1, first step with the extra model call, CFG batch
[uncond; cond], eps = eps_u + s*(eps_c - eps_u)).

Usage:
  python3 tools/train_unet.py --check-golden testdata/sd-unet    # transcription check
  python3 tools/train_unet.py --steps N --batch B --threads 1 [--deadline-min M] [--resume]
  python3 tools/train_unet.py --eval --cfg 7.5 3.0 [--eval-log]   # PLMS-20 samples -> classifier
      [--init-noise center+shift]   # diagnostic x_T (not ldm's): see tools/README.md section 4
  python3 tools/train_unet.py --golden testdata/unet/fmnist_unet_golden.safetensors
  python3 tools/train_unet.py --bench 10 --batch 64                 # time training steps
"""
import argparse
import hashlib
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

# the shipped configuration = the golden tiny UNet's (testdata/sd-unet/meta.json)
CONFIG = dict(image_size=16, in_channels=4, out_channels=4, model_channels=32, attention_resolutions=[1, 2],
              num_res_blocks=1, channel_mult=[1, 2], num_heads=4, transformer_depth=1, context_dim=32)


def config_str(c):
    return (f"ldm UNetModel image_size{c['image_size']} in{c['in_channels']} out{c['out_channels']} "
            f"model_channels{c['model_channels']} channel_mult{','.join(map(str, c['channel_mult']))} "
            f"num_res_blocks{c['num_res_blocks']} attention_resolutions{','.join(map(str, c['attention_resolutions']))} "
            f"num_heads{c['num_heads']} transformer_depth{c['transformer_depth']} context_dim{c['context_dim']} "
            f"use_spatial_transformer legacy=False context_len12 latent=space_to_depth2(32x32x1)")


# ---------------------------------------------------------------- latent


def space_to_depth(img):
    """[B,1,32,32] -> [B,4,16,16]: latent[c, i, j] = image[0, 2i + c//2, 2j + c%2]."""
    B, _, H, W = img.shape
    x = img.reshape(B, H // 2, 2, W // 2, 2)          # [B, i, dy, j, dx]
    return x.permute(0, 2, 4, 1, 3).reshape(B, 4, H // 2, W // 2)


def depth_to_space(lat):
    """[B,4,16,16] -> [B,1,32,32], the inverse of space_to_depth."""
    B, _, h, w = lat.shape
    x = lat.reshape(B, 2, 2, h, w)                     # [B, dy, dx, i, j]
    return x.permute(0, 3, 1, 4, 2).reshape(B, 1, 2 * h, 2 * w)


# ---------------------------------------------------------------- model (ldm UNetModel, SD v1 settings)


def timestep_embedding(timesteps, dim, max_period=10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float32) / half)
    args = timesteps[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class GroupNorm32(nn.GroupNorm):
    def forward(self, x):
        return super().forward(x.float()).type(x.dtype)


def normalization(ch):
    return GroupNorm32(32, ch)  # eps 1e-5


def zero_module(m):
    for p in m.parameters():
        p.detach().zero_()
    return m


class TimestepEmbedSequential(nn.Sequential):
    def forward(self, x, emb, context=None, trace=None, tag=None):
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context, trace, tag)
            else:
                x = layer(x)
        return x


class Upsample(nn.Module):
    def __init__(self, ch, out_ch=None):
        super().__init__()
        self.conv = nn.Conv2d(ch, out_ch or ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Downsample(nn.Module):
    def __init__(self, ch, out_ch=None):
        super().__init__()
        self.op = nn.Conv2d(ch, out_ch or ch, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class ResBlock(nn.Module):
    def __init__(self, ch, emb_ch, dropout, out_ch=None):
        super().__init__()
        out_ch = out_ch or ch
        self.in_layers = nn.Sequential(normalization(ch), nn.SiLU(), nn.Conv2d(ch, out_ch, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_ch, out_ch))
        self.out_layers = nn.Sequential(normalization(out_ch), nn.SiLU(), nn.Dropout(p=dropout),
                                        zero_module(nn.Conv2d(out_ch, out_ch, 3, padding=1)))
        self.skip_connection = nn.Identity() if out_ch == ch else nn.Conv2d(ch, out_ch, 1)

    def forward(self, x, emb):
        h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)
        while len(emb_out.shape) < len(h.shape):
            emb_out = emb_out[..., None]
        h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class CrossAttention(nn.Module):
    def __init__(self, query_dim, context_dim=None, heads=8, dim_head=64, dropout=0.0):
        super().__init__()
        inner = dim_head * heads
        context_dim = context_dim or query_dim
        self.scale = dim_head ** -0.5
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(dropout))

    def forward(self, x, context=None):
        h = self.heads
        q = self.to_q(x)
        context = x if context is None else context
        k, v = self.to_k(context), self.to_v(context)

        def split(t):  # 'b n (h d) -> (b h) n d'
            b, n, hd = t.shape
            return t.reshape(b, n, h, hd // h).permute(0, 2, 1, 3).reshape(b * h, n, hd // h)
        q, k, v = split(q), split(k), split(v)
        # ldm: sim = einsum("b i d, b j d -> b i j", q, k) * scale. The scale is applied to q
        # instead (same math, 1/32 of the multiplies at 256 tokens; --check-golden still passes).
        sim = torch.bmm(q * self.scale, k.transpose(1, 2))
        attn = sim.softmax(dim=-1)
        out = torch.bmm(attn, v)
        bh, n, d = out.shape
        out = out.reshape(bh // h, h, n, d).permute(0, 2, 1, 3).reshape(bh // h, n, h * d)
        return self.to_out(out)


class GEGLU(nn.Module):
    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x):
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim, mult=4, dropout=0.0):
        super().__init__()
        inner = int(dim * mult)
        self.net = nn.Sequential(GEGLU(dim, inner), nn.Dropout(dropout), nn.Linear(inner, dim))

    def forward(self, x):
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, n_heads, d_head, dropout=0.0, context_dim=None):
        super().__init__()
        self.attn1 = CrossAttention(dim, heads=n_heads, dim_head=d_head, dropout=dropout)
        self.ff = FeedForward(dim, dropout=dropout)
        self.attn2 = CrossAttention(dim, context_dim=context_dim, heads=n_heads, dim_head=d_head, dropout=dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x, context=None, trace=None, tag=None):
        a1 = self.attn1(self.norm1(x))
        x = a1 + x
        a2 = self.attn2(self.norm2(x), context=context)
        x = a2 + x
        if trace is not None and tag is not None:
            trace[tag + "_attn1"], trace[tag + "_attn2"] = a1, a2
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    def __init__(self, in_channels, n_heads, d_head, depth=1, dropout=0.0, context_dim=None):
        super().__init__()
        inner = n_heads * d_head
        self.norm = nn.GroupNorm(num_groups=32, num_channels=in_channels, eps=1e-6, affine=True)
        self.proj_in = nn.Conv2d(in_channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, n_heads, d_head, dropout=dropout, context_dim=context_dim) for _ in range(depth)])
        self.proj_out = zero_module(nn.Conv2d(inner, in_channels, 1))

    def forward(self, x, context=None, trace=None, tag=None):
        b, c, h, w = x.shape
        x_in = x
        x = self.proj_in(self.norm(x))
        x = x.permute(0, 2, 3, 1).reshape(b, h * w, -1)  # 'b c h w -> b (h w) c'
        for i, blk in enumerate(self.transformer_blocks):
            x = blk(x, context=context, trace=trace, tag=tag if i == 0 else None)
        x = x.reshape(b, h, w, -1).permute(0, 3, 1, 2)
        return self.proj_out(x) + x_in


class UNetModel(nn.Module):
    def __init__(self, image_size=16, in_channels=4, out_channels=4, model_channels=32, attention_resolutions=(1, 2),
                 num_res_blocks=1, channel_mult=(1, 2), num_heads=4, transformer_depth=1, context_dim=32,
                 dropout=0.0):
        super().__init__()
        self.model_channels = model_channels
        ted = model_channels * 4
        self.time_embed = nn.Sequential(nn.Linear(model_channels, ted), nn.SiLU(), nn.Linear(ted, ted))
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(in_channels, model_channels, 3, padding=1))])
        chans = [model_channels]
        ch, ds = model_channels, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock(ch, ted, dropout, out_ch=mult * model_channels)]
                ch = mult * model_channels
                if ds in attention_resolutions:
                    layers.append(SpatialTransformer(ch, num_heads, ch // num_heads, depth=transformer_depth,
                                                     context_dim=context_dim))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                chans.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch, ch)))
                chans.append(ch)
                ds *= 2
        self.middle_block = TimestepEmbedSequential(
            ResBlock(ch, ted, dropout),
            SpatialTransformer(ch, num_heads, ch // num_heads, depth=transformer_depth, context_dim=context_dim),
            ResBlock(ch, ted, dropout))
        self.output_blocks = nn.ModuleList([])
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                ich = chans.pop()
                layers = [ResBlock(ch + ich, ted, dropout, out_ch=model_channels * mult)]
                ch = model_channels * mult
                if ds in attention_resolutions:
                    layers.append(SpatialTransformer(ch, num_heads, ch // num_heads, depth=transformer_depth,
                                                     context_dim=context_dim))
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch, ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(normalization(ch), nn.SiLU(), zero_module(nn.Conv2d(model_channels, out_channels, 3, padding=1)))

    def forward(self, x, timesteps, context, trace=None):
        t_freq = timestep_embedding(timesteps, self.model_channels)
        emb = self.time_embed(t_freq)
        if trace is not None:
            trace["t_freq"], trace["t_emb"] = t_freq, emb
        hs = []
        h = x
        for i, m in enumerate(self.input_blocks):
            h = m(h, emb, context, trace, f"input_block_{i}")
            hs.append(h)
            if trace is not None:
                trace[f"input_block_{i}"] = h
        h = self.middle_block(h, emb, context, trace, "middle_block")
        if trace is not None:
            trace["middle_block"] = h
        for i, m in enumerate(self.output_blocks):
            h = torch.cat([h, hs.pop()], dim=1)
            h = m(h, emb, context, trace, f"output_block_{i}")
            if trace is not None:
                trace[f"output_block_{i}"] = h
        return self.out(h)


# ---------------------------------------------------------------- diffusion (ldm DDPM schedule, PLMS)


class LDMSchedule:
    def __init__(self, T=1000, linear_start=0.00085, linear_end=0.012):
        betas = np.linspace(linear_start ** 0.5, linear_end ** 0.5, T, dtype=np.float64) ** 2
        ac = np.cumprod(1.0 - betas, axis=0)
        self.T = T
        self.betas = torch.tensor(betas, dtype=torch.float32)
        self.alphas_cumprod = torch.tensor(ac, dtype=torch.float32)
        self.sqrt_ac = torch.tensor(np.sqrt(ac), dtype=torch.float32)
        self.sqrt_1m_ac = torch.tensor(np.sqrt(1.0 - ac), dtype=torch.float32)

    def q_sample(self, x0, t, noise):
        return self.sqrt_ac[t][:, None, None, None] * x0 + self.sqrt_1m_ac[t][:, None, None, None] * noise


def plms_sample(model, sch, x, cond, uncond, scale, steps=20, trace=None):
    """ldm PLMSSampler.sample with eta 0 and CFG (batch [uncond; cond]); returns the final latent."""
    c = sch.T // steps
    ddim_t = np.asarray(list(range(0, sch.T, c))) + 1
    ac = sch.alphas_cumprod
    alphas = ac[ddim_t].clone()
    alphas_prev = torch.tensor([ac[0].item()] + ac[ddim_t[:-1]].tolist(), dtype=torch.float32)
    sqrt_1m = torch.sqrt(1.0 - alphas)
    if trace is not None:
        trace.update(ddim_timesteps=torch.from_numpy(ddim_t).long(), ddim_alphas=alphas.double(),
                     ddim_alphas_prev=alphas_prev.double())
    B = x.shape[0]
    c_in = torch.cat([uncond, cond])
    ncall = [0]

    def model_out(x, t):
        x_in = torch.cat([x] * 2)
        t_in = torch.full((2 * B,), int(t), dtype=torch.long)
        raw = model(x_in, t_in, c_in)
        eu, ec = raw.chunk(2)
        e = eu + scale * (ec - eu)
        if trace is not None:
            k = ncall[0]
            trace.update({f"call_{k}_x_in": x_in, f"call_{k}_t": t_in, f"call_{k}_eps_raw": raw, f"call_{k}_eps_cfg": e})
        ncall[0] += 1
        return e

    def x_prev_pred_x0(x, e, index):
        a_t, a_prev, s1m = alphas[index], alphas_prev[index], sqrt_1m[index]
        pred_x0 = (x - s1m * e) / a_t.sqrt()
        dir_xt = (1.0 - a_prev - 0.0 ** 2).sqrt() * e
        return a_prev.sqrt() * pred_x0 + dir_xt, pred_x0

    time_range = np.flip(ddim_t)
    total = len(ddim_t)
    old_eps = []
    for i, step in enumerate(time_range):
        index = total - i - 1
        t_next = time_range[min(i + 1, len(time_range) - 1)]
        e_t = model_out(x, step)
        if len(old_eps) == 0:
            xp, _ = x_prev_pred_x0(x, e_t, index)
            e_next = model_out(xp, t_next)
            e_prime = (e_t + e_next) / 2
        elif len(old_eps) == 1:
            e_prime = (3 * e_t - old_eps[-1]) / 2
        elif len(old_eps) == 2:
            e_prime = (23 * e_t - 16 * old_eps[-1] + 5 * old_eps[-2]) / 12
        else:
            e_prime = (55 * e_t - 59 * old_eps[-1] + 37 * old_eps[-2] - 9 * old_eps[-3]) / 24
        x, pred_x0 = x_prev_pred_x0(x, e_prime, index)
        if trace is not None:
            trace[f"x_{i}"], trace[f"pred_x0_{i}"] = x, pred_x0
        old_eps.append(e_t)
        if len(old_eps) >= 4:
            old_eps.pop(0)
    return x


# ---------------------------------------------------------------- captions


def context_bank():
    """E [T, 10, 12, 32]: fmnist_text.encode of every (template, class) caption; texts [T][10]."""
    from fmnist_text import encode, caption, TEMPLATES, CLASSES
    E, texts = [], []
    for ti in range(len(TEMPLATES)):
        E.append(torch.stack([torch.from_numpy(np.asarray(encode(caption(c, ti))[0], dtype=np.float32))
                              for c in range(len(CLASSES))]))
        texts.append([caption(c, ti) for c in range(len(CLASSES))])
    return torch.stack(E), texts


def null_context():
    """The empty prompt's encoding: fmnist_text zero-fills past the words, so "" is all zeros."""
    from fmnist_text import MAX_LEN, WIDTH
    return torch.zeros(MAX_LEN, WIDTH, dtype=torch.float32)


# ---------------------------------------------------------------- training




def lr_at(step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    if args.min_lr < 0:
        return args.lr
    p = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * p))


def model_config(args):
    c = dict(CONFIG)
    c["model_channels"] = args.model_channels
    return c


def train(args):
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    cfg = model_config(args)
    E, _ = context_bank()
    nT = E.shape[0]
    null = null_context()
    xs, ys = load_fmnist("train")
    X = space_to_depth(to_model_space(xs))  # [N, 4, 16, 16]
    Y = torch.from_numpy(ys)
    model = UNetModel(**cfg)
    if args.init:
        model.load_state_dict(load_safetensors(args.init))
        print(f"initialised model and EMA from {args.init}", flush=True)
    ema = UNetModel(**cfg)
    ema.load_state_dict(model.state_dict())
    ema.eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    sch = LDMSchedule()
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.wd)
    nparam = sum(p.numel() for p in params)
    print(f"params {nparam}, {nT} templates, data {tuple(X.shape)}", flush=True)
    step = 0
    t_prev = 0.0
    if args.resume and os.path.exists(args.ckpt):
        ck = torch.load(args.ckpt)
        model.load_state_dict(ck["model"]); ema.load_state_dict(ck["ema"]); opt.load_state_dict(ck["opt"])
        step = ck["step"]
        t_prev = ck.get("seconds", 0.0)
        torch.set_rng_state(ck["rng"])
        print(f"resumed at step {step} ({t_prev:.0f} s)", flush=True)
    resumed = args.resume and step > 0
    log = open(args.log, "a" if resumed else "w")
    cmd = "python3 tools/train_unet.py " + " ".join(sys.argv[1:])
    if resumed:
        log.write(f"# resumed at step {step} ({t_prev:.0f} s): {cmd}\n")
    else:
        log.write(f"# command: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} {cmd}\n"
                  f"# train_unet.py seed={args.seed} batch={args.batch} lr={args.lr} min_lr={args.min_lr} "
                  f"warmup={args.warmup} schedule={'cosine' if args.min_lr >= 0 else 'constant'} steps={args.steps} "
                  f"ema={args.ema}(ldm LitEma warm-up min(ema,(1+n)/(10+n))) wd={args.wd} "
                  f"optimizer=AdamW(betas=0.9,0.999) params={nparam} templates={nT}(random per sample) "
                  f"cfg_dropout={args.cfg_dropout}(null context = zeros [12,32]) loss=mse(eps) "
                  f"init={args.init or 'ldm default'} T=1000 "
                  f"betas=scaled_linear(0.00085,0.012) torch={torch.__version__} config=[{config_str(cfg)}] "
                  f"threads={args.threads}\n"
                  f"# step loss(mean over the last {args.log_every} steps) lr seconds\n")
    t0 = time.time() - t_prev
    last_ck = time.time()
    run_l = 0.0
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
        x0, cls = X[idx], Y[idx]
        B = idx.shape[0]
        tpl = torch.randint(0, nT, (B,))
        ctx = E[tpl, cls]
        drop = torch.rand(B) < args.cfg_dropout
        ctx = torch.where(drop[:, None, None], null, ctx)
        t = torch.randint(0, sch.T, (B,))
        noise = torch.randn_like(x0)
        xt = sch.q_sample(x0, t, noise)
        lr = lr_at(step, args)
        for g in opt.param_groups:
            g["lr"] = lr
        loss = F.mse_loss(model(xt, t, ctx), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
        step += 1
        run_l += loss.item(); n_run += 1
        now = time.time()
        if step % args.log_every == 0:
            log.write(f"{step} {run_l / n_run:.5f} {lr:.2e} {now - t0:.1f}\n")
            log.flush()
            print(f"step {step} loss {run_l / n_run:.4f} lr {lr:.2e} {now - t0:.0f}s", flush=True)
            run_l = 0.0; n_run = 0
        deadline = args.deadline_min > 0 and now - t0 > args.deadline_min * 60
        if now - last_ck > args.ckpt_every or step == args.steps or deadline:
            torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                        "step": step, "seconds": now - t0, "rng": torch.get_rng_state(), "args": vars(args)},
                       args.ckpt)
            export(ema, args.out, {"step": step, "seed": args.seed, "train_seconds": f"{now - t0:.0f}",
                                   "config": config_str(cfg), "command": cmd,
                                   "latent": "latent[c,i,j] = image[0, 2i + c//2, 2j + c%2] (image 32x32 in [-1,1])",
                                   "null_context": "zeros [12,32]", "weights": "EMA"})
            last_ck = now
            print(f"checkpoint at step {step} -> {args.ckpt}, {args.out}", flush=True)
        if deadline:
            stopped = "deadline"
            break
    log.write(f"# finished: {step} steps ({step * args.batch} samples) in {time.time() - t0:.0f} s "
              f"(stopped by {stopped}); EMA weights exported to {os.path.relpath(args.out, REPO)}\n")
    log.close()


# ---------------------------------------------------------------- evaluation: prompt adherence


def load_model(path, args):
    model = UNetModel(**model_config(args))
    sd = load_safetensors(path)
    assert set(sd) == set(model.state_dict()), set(sd) ^ set(model.state_dict())
    model.load_state_dict(sd)
    model.eval()
    return model


def evaluate(args):
    from train_classifier import Classifier
    from fmnist_text import CLASSES, encode
    model = load_model(args.eval_weights or args.out, args)
    clf = Classifier()
    clf.load_state_dict(load_safetensors(os.path.join(REPO, "assets", "fmnist_classifier.safetensors")))
    clf.eval()
    sch = LDMSchedule()
    K = args.per_class
    cls = torch.arange(10).repeat_interleave(K)
    prompts = [f"a photo of a {CLASSES[c]}" for c in range(10)]
    E = torch.stack([torch.from_numpy(np.asarray(encode(p)[0], dtype=np.float32)) for p in prompts])
    cond = E[cls]
    uncond = null_context().expand(10 * K, -1, -1)
    mu = space_to_depth(to_model_space(load_fmnist("train")[0])).mean().item() if "shift" in args.init_noise else 0.0
    for scale in args.cfg:
        torch.manual_seed(args.eval_seed)
        x = torch.randn(10 * K, 4, 16, 16)
        # diagnostics only (not ldm's sampler): see "Known limitation" in tools/README.md
        if "center" in args.init_noise:  # remove each row's per-channel spatial mean of x_T
            x = x - x.mean(dim=(2, 3), keepdim=True)
        if "shift" in args.init_noise:   # add the training x_t mean at the first PLMS step
            x = x + sch.sqrt_ac[sch.T - sch.T // args.sample_steps + 1] * mu
        t1 = time.time()
        with torch.no_grad():
            out = []
            for a in range(0, 10 * K, 100):
                out.append(plms_sample(model, sch, x[a:a + 100], cond[a:a + 100], uncond[a:a + 100], scale,
                                       args.sample_steps))
            s = depth_to_space(torch.cat(out)).clamp(-1, 1)
            _, logits = clf(s)
        pred = logits.argmax(1)
        ok = (pred == cls).float()
        acc = ok.mean().item()
        per = [ok[cls == c].mean().item() for c in range(10)]
        noise = "x_T ~ N(0,1)" if args.init_noise == "plain" else \
            f"DIAGNOSTIC x_T = N(0,1) {args.init_noise}" + (f" (data mean {mu:.4f})" if "shift" in args.init_noise else "")
        line = (f"# eval: PLMS (ldm, eta 0) {args.sample_steps} steps, CFG {scale} (batch [uncond; cond], null context "
                f"zeros), {noise}, prompt 'a photo of a {{class}}', {K} samples per class (noise seed {args.eval_seed}), "
                f"depth-to-space, clipped, shipped classifier: class accuracy {acc:.3f}; per class "
                + " ".join(f"{CLASSES[c]}={per[c]:.2f}" for c in range(10))
                + f" ({time.time() - t1:.0f} s; weights {os.path.relpath(args.eval_weights or args.out, REPO)})")
        print(line, flush=True)
        if args.eval_log:
            with open(args.log, "a") as f:
                f.write(line + "\n")
        if args.eval_png:
            p = args.eval_png.replace(".png", f"_cfg{scale:g}.png")
            save_grid(s, K, p)
            print("wrote", p)




# ---------------------------------------------------------------- golden checks


def relerr(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp(min=1e-30)).item()


def check_golden(d):
    """Load the reference-implementation golden (ldm UNetModel + PLMSSampler, random weights) into
    this transcription; compare every forward intermediate, the schedule and the PLMS chain."""
    import json
    with open(os.path.join(d, "meta.json")) as f:
        meta = json.load(f)
    uc = meta["unet_config"]
    model = UNetModel(image_size=uc["image_size"], in_channels=uc["in_channels"], out_channels=uc["out_channels"],
                      model_channels=uc["model_channels"], attention_resolutions=uc["attention_resolutions"],
                      num_res_blocks=uc["num_res_blocks"], channel_mult=uc["channel_mult"], num_heads=uc["num_heads"],
                      transformer_depth=uc["transformer_depth"], context_dim=uc["context_dim"])
    sd = load_safetensors(os.path.join(d, "weights.safetensors"))
    ours = model.state_dict()
    assert set(ours) == set(sd), set(ours) ^ set(sd)
    for k, v in ours.items():
        assert tuple(v.shape) == tuple(sd[k].shape), (k, v.shape, sd[k].shape)
    model.load_state_dict(sd)
    model.eval()
    print(f"weights: {len(sd)} tensors, key names and shapes identical")
    ok = True
    g = load_safetensors(os.path.join(d, "forward.safetensors"))
    tr = {}
    with torch.no_grad():
        eps = model(g["x"], g["t"], g["context"], trace=tr)
    tr["eps"] = eps
    worst = 0.0
    for k in g:
        if k in ("x", "t", "context"):
            continue
        e = relerr(tr[k], g[k])
        good = e <= 1e-5
        ok &= good
        worst = max(worst, e)
        print(f"{k:22s} max|d|/max|golden| {e:.2e} {'ok' if good else 'FAIL'}")
    print(f"forward: worst {worst:.2e} (eps {relerr(tr['eps'], g['eps']):.2e}, max abs {(tr['eps'] - g['eps']).abs().max().item():.2e})")
    sch = LDMSchedule()
    s = load_safetensors(os.path.join(d, "schedule.safetensors"))
    for k, ours_v in [("betas", sch.betas), ("alphas_cumprod", sch.alphas_cumprod)]:
        e = (ours_v - s[k]).abs().max().item()
        ok &= e == 0.0
        print(f"schedule {k}: max abs {e:.1e} {'ok' if e == 0 else 'FAIL'}")
    p = load_safetensors(os.path.join(d, "plms.safetensors"))
    st = {}
    with torch.no_grad():
        fin = plms_sample(model, sch, p["x_T"], p["cond"], p["uncond"], meta["plms"]["cfg_scale"], meta["plms"]["steps"],
                          trace=st)
    st["final"] = fin
    worst = 0.0
    for k in p:
        if k in ("x_T", "cond", "uncond"):
            continue
        if k not in st:
            print(f"plms {k}: not produced FAIL"); ok = False; continue
        if st[k].dtype == torch.int64:
            e = float((st[k] != p[k]).any())
        else:
            e = relerr(st[k], p[k])
        good = e <= 1e-4
        ok &= good
        if not good:
            print(f"plms {k}: {e:.2e} FAIL")
        worst = max(worst, e)
    calls = len([k for k in st if k.endswith("_eps_raw")])
    print(f"plms: {calls} model calls (golden {meta['plms']['unet_calls']}), worst rel {worst:.2e} "
          f"(final {relerr(st['final'], p['final']):.2e})")
    ok &= calls == meta["plms"]["unet_calls"]
    print("golden check:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


def golden(args):
    """Forward inputs and the shipped weights' PyTorch output for the Go test."""
    from fmnist_text import encode
    wpath = args.out
    with open(wpath, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    model = load_model(wpath, args)
    torch.manual_seed(123)
    x = torch.randn(2, 4, 16, 16)
    t = torch.tensor([999, 37], dtype=torch.int64)
    cap = "a photo of a Sneaker"
    context = torch.stack([torch.from_numpy(np.asarray(encode(cap)[0], dtype=np.float32)), null_context()])
    with torch.no_grad():
        eps = model(x, t, context)
    meta = {"weights_sha256": sha, "weights": os.path.relpath(wpath, REPO), "config": config_str(model_config(args)),
            "context": f"row 0: fmnist_text.encode({cap!r}); row 1: the null context (zeros)",
            "note": "eps = UNetModel(x, t, context) of the shipped weights, float32, torch " + torch.__version__}
    for k, v in meta.items():
        print(f"{k}: {v}")
    os.makedirs(os.path.dirname(os.path.abspath(args.golden)), exist_ok=True)
    save_safetensors(args.golden, {"x": x, "t": t, "context": context, "eps": eps}, meta)
    print(f"wrote {args.golden}; eps std {eps.std().item():.3f}, max abs {eps.abs().max().item():.3f}")


def bench(args):
    torch.manual_seed(0)
    model = UNetModel(**model_config(args))
    sch = LDMSchedule()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    X = torch.randn(args.batch, 4, 16, 16)
    C = torch.randn(args.batch, 12, 32)
    for i in range(args.bench + 2):
        if i == 2:
            t0 = time.time()
        t = torch.randint(0, 1000, (args.batch,))
        n = torch.randn_like(X)
        loss = F.mse_loss(model(sch.q_sample(X, t, n), t, C), n)
        opt.zero_grad(); loss.backward(); opt.step()
    dt = (time.time() - t0) / args.bench
    print(f"{dt:.3f} s/step at batch {args.batch} ({args.batch / dt:.0f} samples/s), "
          f"params {sum(p.numel() for p in model.parameters())}, threads {torch.get_num_threads()}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr", type=float, default=2e-5, help="cosine floor; negative = constant lr")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--wd", type=float, default=0.0)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--cfg-dropout", type=float, default=0.1)
    ap.add_argument("--model-channels", type=int, default=32)
    ap.add_argument("--init", default="", help="start model and EMA from these weights (stage 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--ckpt-every", type=float, default=300.0, help="seconds")
    ap.add_argument("--deadline-min", type=float, default=0, help="stop after this many minutes")
    ap.add_argument("--ckpt", default="/tmp/fmnist_unet_ckpt.pt")
    ap.add_argument("--log", default=os.path.join(HERE, "train_unet.log"))
    ap.add_argument("--out", default=os.path.join(REPO, "assets", "fmnist_unet.safetensors"))
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--bench", type=int, default=0, help="time this many training steps (random data) and exit")
    ap.add_argument("--check-golden", metavar="DIR")
    ap.add_argument("--golden", metavar="OUT")
    ap.add_argument("--eval", action="store_true", help="PLMS samples per class, classified")
    ap.add_argument("--eval-after", action="store_true", help="run --eval (logged) after training")
    ap.add_argument("--eval-log", action="store_true", help="append the eval lines to --log")
    ap.add_argument("--eval-weights", default="", help="weights to evaluate (default --out)")
    ap.add_argument("--eval-png", default="", help="write the sample grids as PNG (suffix _cfg<s>)")
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--cfg", type=float, nargs="+", default=[7.5, 3.0])
    ap.add_argument("--sample-steps", type=int, default=20)
    ap.add_argument("--eval-seed", type=int, default=0)
    ap.add_argument("--init-noise", default="plain", choices=["plain", "shift", "center", "center+shift"],
                    help="diagnostic: x_T per-channel means removed (center) and/or shifted by the data mean")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.check_golden:
        return check_golden(args.check_golden)
    if args.golden:
        return golden(args)
    if args.eval:
        return evaluate(args)
    if args.bench:
        return bench(args)
    train(args)
    if args.eval_after:
        args.eval_log = True
        evaluate(args)


if __name__ == "__main__":
    sys.exit(main())
