#!/usr/bin/env python3
"""Time the official PyTorch DiT and DiT-ToCa code on random weights (see tools/gpu/README.md).

The official code is not part of this repository: --dit-dir is a checkout of facebookresearch/DiT
(models.py, diffusion/) and --toca-dir the DiT-ToCa folder of Shenyi-Z/ToCa (models.py, diffusion/,
cache_functions/). Both define top-level modules named `models` and `diffusion`, so each system runs
in its own subprocess (this script re-invoked with --worker), which also frees the GPU between them.

Each system samples --num images with DDIM (`diffusion.ddim_sample_loop`, `create_diffusion(str(steps))`,
i.e. the reference respacing of 1000 steps) through `model.forward_with_cfg` at CFG scale --cfg, as
the official sample.py scripts do, in batches of --batch images (2×batch rows with the CFG copies).
Timing: --warmup untimed batches, then every batch timed on its own (CUDA synchronised). "steady"
is (time of all --num images − time of the first timed batch) / (num − first batch's images), the
same definition as runbench's steady_ms_per_image; wall_s is the time of all --num images.

One JSON object per system is written, one per line, to --out (and printed).

CPU smoke run (seconds):
  python3 tools/gpu/official_bench.py --dit-dir .gpu/official/DiT --toca-dir .gpu/official/ToCa/DiT-ToCa \
      --model DiT-S/2 --image-size 64 --num 4 --batch 2 --steps 5 --out /tmp/official.jsonl
"""
import argparse
import contextlib
import io
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback

SYSTEMS = {
    # name: (family, method, which directory)
    "official-dit": ("official", "none", "dit_dir"),
    "official-toca": ("official", "toca", "toca_dir"),
}
ALIASES = {"dit": "official-dit", "toca": "official-toca"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dit-dir", default=".gpu/official/DiT", help="checkout of facebookresearch/DiT (models.py, diffusion/)")
    p.add_argument("--toca-dir", default=".gpu/official/ToCa/DiT-ToCa", help="the DiT-ToCa folder of Shenyi-Z/ToCa")
    p.add_argument("--systems", default="dit,toca", help="comma-separated: dit (official DiT), toca (official DiT-ToCa)")
    p.add_argument("--out", required=True, help="JSON-lines result file (overwritten)")
    p.add_argument("--model", default="DiT-XL/2", help="DiT_models key, e.g. DiT-XL/2, DiT-S/2")
    p.add_argument("--image-size", type=int, default=256, help="pixels; the latent is image-size/8 square, 4 channels")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--num", type=int, default=80, help="images timed")
    p.add_argument("--batch", type=int, default=16, help="images per batch (2×batch rows with CFG)")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps (create_diffusion(str(steps)))")
    p.add_argument("--cfg", type=float, default=1.5, help="classifier-free guidance scale (forward_with_cfg)")
    p.add_argument("--tf32", dest="tf32", action="store_true", default=True,
                   help="allow TF32 matmuls/convolutions as sample.py does (default)")
    p.add_argument("--no-tf32", dest="tf32", action="store_false", help="strict FP32")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up batches before timing")
    p.add_argument("--seed", type=int, default=0, help="weights, noise and labels")
    p.add_argument("--init-std", type=float, default=0.02,
                   help="std of the normal noise put into the zero-initialised linears (adaLN modulation, final layer)")
    p.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cuda or cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    # DiT-ToCa's DDIM-50 setting (README "DDIM-50 Steps": --fresh-threshold 3 --fresh-ratio 0.07
    # --ratio-scheduler ToCa-ddim50 --cache-type attention --force-fresh global --soft-fresh-weight 0.25).
    p.add_argument("--toca-N", type=int, default=3, help="ToCa fresh_threshold N")
    p.add_argument("--toca-ratio", type=float, default=0.07, help="ToCa fresh_ratio")
    p.add_argument("--toca-scheduler", default="ToCa-ddim50", help="ToCa ratio_scheduler")
    p.add_argument("--toca-cache-type", default="attention", help="ToCa cache_type (token score)")
    p.add_argument("--toca-soft-fresh-weight", type=float, default=0.25)
    p.add_argument("--flops", dest="flops", action="store_true", default=True,
                   help="count FLOPs with DiT-ToCa's own counter (test_FLOPs) on one extra 1-image run (default)")
    p.add_argument("--no-flops", dest="flops", action="store_false")
    p.add_argument("--timeout", type=float, default=600, help="seconds per system (its subprocess is killed after)")
    p.add_argument("--worker", default="", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def read_commit(d):
    """The commit the staged folder came from: a COMMIT file (written by stage_official.sh) or git."""
    for cand in (os.path.join(d, "COMMIT"), os.path.join(os.path.dirname(os.path.abspath(d)), "COMMIT")):
        if os.path.isfile(cand):
            with open(cand) as f:
                return f.read().strip()
    try:
        return subprocess.run(["git", "-C", d, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10).stdout.strip() or None
    except Exception:
        return None


# ----------------------------------------------------------------------------------------------
# worker: one system in this process
# ----------------------------------------------------------------------------------------------

def worker(args, name):
    family, method, dir_attr = SYSTEMS[name]
    code_dir = os.path.abspath(getattr(args, dir_attr))
    rec = {"system": name, "family": family, "method": method, "code_dir": code_dir, "commit": read_commit(code_dir)}
    try:
        import torch
    except ImportError as e:
        raise SystemExit(f"official_bench: PyTorch is not installed ({e}); install torch to run the official code")
    try:
        import timm  # noqa: F401  (the official models.py imports timm.models.vision_transformer)
        import timm.models.vision_transformer  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"official_bench: the official DiT code needs timm (pip install timm; DiT-ToCa needs timm>=0.9 "
                         f"for timm.layers), and it could not be imported: {e}")
    need = ["models.py", "diffusion/__init__.py"] + (["cache_functions/__init__.py"] if method == "toca" else [])
    missing = [f for f in need if not os.path.isfile(os.path.join(code_dir, f))]
    if missing:
        raise SystemExit(f"official_bench: {code_dir} lacks {', '.join(missing)} (stage it with make gpu-stage-official)")
    sys.path.insert(0, code_dir)
    from models import DiT_models  # the official code
    from diffusion import create_diffusion
    import models as official_models

    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.set_grad_enabled(False)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    rec.update(device=device, device_name=torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
               torch=torch.__version__, timm=sys.modules["timm"].__version__, python=platform.python_version(),
               tf32=bool(args.tf32) if cuda else None, model=args.model, image_size=args.image_size,
               steps=args.steps, cfg=args.cfg, seed=args.seed, sampler="ddim")

    if args.model not in DiT_models:
        raise SystemExit(f"official_bench: --model {args.model}: not in the official DiT_models ({', '.join(DiT_models)})")
    if args.cfg <= 1:
        raise SystemExit("official_bench: --cfg must be > 1 (forward_with_cfg doubles the batch as sample.py does)")
    latent = args.image_size // 8

    # Random weights: the official init (xavier, sin-cos pos_embed, N(0, 0.02) embeddings), then
    # the zero-initialised linears get N(0, init_std) so the blocks' outputs and tokens differ.
    torch.manual_seed(args.seed)
    model = DiT_models[args.model](input_size=latent, num_classes=args.num_classes)
    zeroed = [b.adaLN_modulation[-1] for b in model.blocks] + [model.final_layer.adaLN_modulation[-1], model.final_layer.linear]
    for lin in zeroed:
        torch.nn.init.normal_(lin.weight, std=args.init_std)
        torch.nn.init.normal_(lin.bias, std=args.init_std)
    model = model.to(device).eval()
    rec["params_count"] = sum(p.numel() for p in model.parameters())
    grid = latent // model.patch_size
    if method == "toca" and (grid % 2 or grid < 2):
        raise SystemExit(f"official_bench: DiT-ToCa's spatial bonus needs an even token grid; {args.model} at "
                         f"{args.image_size}px has {grid}×{grid} tokens (try DiT-S/2 --image-size 64)")
    diffusion = create_diffusion(str(args.steps))

    extra = {}
    if method == "toca":
        # model_kwargs as DiT-ToCa's sample.py sets them (cache_init reads them).
        extra = dict(cache_type=args.toca_cache_type, fresh_ratio=args.toca_ratio, force_fresh="global",
                     fresh_threshold=args.toca_N, ratio_scheduler=args.toca_scheduler,
                     soft_fresh_weight=args.toca_soft_fresh_weight, test_FLOPs=False)
        rec["params"] = {"N": args.toca_N, "ratio": args.toca_ratio, "scheduler": args.toca_scheduler,
                         "cache_type": args.toca_cache_type, "soft_fresh_weight": args.toca_soft_fresh_weight}
    else:
        rec["params"] = {}

    def sample(z, y, **over):
        """One batch through the official sampler, as sample.py: CFG doubling, DDIM loop, drop null half."""
        n = z.shape[0]
        z2 = torch.cat([z, z], 0)
        y2 = torch.cat([y, torch.full((n,), args.num_classes, device=y.device, dtype=y.dtype)], 0)
        kw = dict(y=y2, cfg_scale=args.cfg, **extra)
        kw.update(over)
        out = diffusion.ddim_sample_loop(model.forward_with_cfg, z2.shape, z2, clip_denoised=False,
                                         model_kwargs=kw, progress=False, device=device)
        return out.chunk(2, dim=0)[0]

    gen = torch.Generator().manual_seed(args.seed + 1)
    sizes = [min(args.batch, args.num - i) for i in range(0, args.num, args.batch)]
    batches = [(torch.randn(b, 4, latent, latent, generator=gen).to(device),
                torch.randint(0, args.num_classes, (b,), generator=gen).to(device)) for b in sizes]

    t0 = time.perf_counter()
    for _ in range(args.warmup):
        sample(*batches[0])
    sync()
    rec["warmup_s"] = time.perf_counter() - t0
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    times = []
    last = None
    for z, y in batches:
        sync()
        t = time.perf_counter()
        last = sample(z, y)
        sync()
        times.append(time.perf_counter() - t)
        print(f"[{name}] batch of {z.shape[0]}: {times[-1]:.3f} s", file=sys.stderr, flush=True)
    total = sum(times)
    rec.update(images=args.num, batch=args.batch, batch_s=[round(t, 4) for t in times], first_batch_s=times[0],
               wall_s=total)
    if len(times) > 1:
        rec["steady_ms_per_image"] = (total - times[0]) / (args.num - sizes[0]) * 1e3
    else:
        rec["steady_ms_per_image"] = times[0] / sizes[0] * 1e3
        rec["steady_note"] = "a single batch: steady = that batch"
    rec["images_per_s"] = 1e3 / rec["steady_ms_per_image"]
    rec["finite"] = bool(torch.isfinite(last).all().item())
    rec["sample_std"] = float(last.float().std().item())
    if cuda:
        rec["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30

    if args.flops:
        try:
            rec.update(count_flops(args, name, method, code_dir, official_models, sample, batches, extra))
        except Exception as e:  # FLOPs are a side result: keep the timing
            rec["flops_error"] = f"{type(e).__name__}: {e}"
    return rec


def count_flops(args, name, method, code_dir, official_models, sample, batches, extra):
    """FLOPs with DiT-ToCa's own counter (test_FLOPs=True; it prints "X TFLOPs" after the loop) on a
    1-image batch, scaled to --num images. Only the ToCa code has a counter: the official-toca worker
    also counts the same code with every step forced 'full' (cal_type patched), the uncached model
    under the same counting rules; the parent gives that number to the official-dit row."""
    if method != "toca":
        return {}
    z, y = batches[0]
    z, y = z[:1], y[:1]

    def run(**over):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            sample(z, y, test_FLOPs=True, **over)
        m = re.search(r"([0-9.eE+-]+)\s*TFLOPs", buf.getvalue())
        if not m:
            raise RuntimeError(f"no 'TFLOPs' line from the DiT-ToCa counter (got {buf.getvalue()[-200:]!r})")
        return float(m.group(1)) * 1e12

    per_image = run()
    orig = official_models.cal_type
    official_models.cal_type = lambda cache_dic, current: current.__setitem__("type", "full")
    try:
        per_image_full = run()
    finally:
        official_models.cal_type = orig
    return {"flops": per_image * args.num, "flops_per_image": per_image, "flops_uncached": per_image_full * args.num,
            "flops_counter": "DiT-ToCa test_FLOPs (blocks only; both CFG rows; uncached = every step forced full)"}


# ----------------------------------------------------------------------------------------------
# parent: one subprocess per system
# ----------------------------------------------------------------------------------------------

def main():
    args = parse_args()
    if args.worker:
        rc = 0
        try:
            rec = worker(args, args.worker)
        except SystemExit as e:
            if not isinstance(e.code, str):
                raise
            print(e.code, file=sys.stderr)
            rec, rc = {"error": e.code}, 1
        except Exception as e:
            traceback.print_exc()
            rec, rc = {"error": f"{type(e).__name__}: {e}"[:500]}, 1
        with open(args.worker_out, "w") as f:
            json.dump(rec, f)
        return rc

    names = []
    for s in args.systems.split(","):
        s = s.strip()
        if not s:
            continue
        s = ALIASES.get(s, s)
        if s not in SYSTEMS:
            raise SystemExit(f"official_bench: --systems: unknown {s!r} (dit, toca)")
        names.append(s)
    if args.num < 1 or args.batch < 1:
        raise SystemExit("official_bench: --num and --batch must be ≥ 1")

    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    recs = []
    rc = 0
    me = os.path.abspath(__file__)
    for name in names:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tf:
            wout = tf.name
        cmd = [sys.executable, me] + sys.argv[1:] + ["--worker", name, "--worker-out", wout]
        print(f"official_bench: {name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        t = time.perf_counter()
        err = None
        rec = None
        try:
            # The worker's output goes to our stderr: our stdout holds only the JSON lines.
            p = subprocess.run(cmd, timeout=args.timeout, stdout=sys.stderr, stderr=sys.stderr)
            try:
                with open(wout) as f:
                    rec = json.load(f)
            except Exception as e:
                rec = {"error": f"exit {p.returncode}, no result ({e})"}
            if "error" in rec:
                err, rec = rec["error"], None
        except subprocess.TimeoutExpired:
            err = f"timed out after {args.timeout:.0f} s"
        try:
            os.unlink(wout)
        except OSError:
            pass
        if rec is None:
            family, method, _ = SYSTEMS[name]
            rec = {"system": name, "family": family, "method": method, "error": err}
            rc = 1
        rec["process_s"] = time.perf_counter() - t
        recs.append(rec)

    # The official DiT row's FLOPs come from the ToCa counter with every step full (same rules).
    by = {r["system"]: r for r in recs}
    dit, toca = by.get("official-dit"), by.get("official-toca")
    if dit and toca and "error" not in dit and "flops_uncached" in toca and "flops" not in dit:
        dit["flops"] = toca["flops_uncached"] / toca["images"] * dit["images"]
        dit["flops_counter"] = "DiT-ToCa test_FLOPs with every step full (from the official-toca run)"

    with open(args.out, "w") as f:
        for r in recs:
            line = json.dumps(r, sort_keys=True)
            f.write(line + "\n")
            print(line, flush=True)
    return rc


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit:
        raise
    except Exception:
        traceback.print_exc()
        sys.exit(1)
