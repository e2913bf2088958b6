#!/usr/bin/env python3
"""Markdown table of a GPU check: tools/gpu/table.py RESULTS.jsonl [--title T] [--note LINE]...

RESULTS.jsonl holds one JSON object per system (written by tools/gpu/check.sh): cachebench rows are
runbench's --timing-json objects (method, images, batch, compile_s, steady_ms_per_image, wall_s,
overhead_pct, flops) plus system/family/label; official rows come from official_bench.py. A row
with "error" is shown as failed. Speedups are within a family: cachebench methods against
cachebench none, official DiT-ToCa against official DiT.
"""
import argparse
import json
import math
import sys

CACHEBENCH_ORDER = ["none", "fora", "deltadit", "toca", "duca", "taylorseer", "vae"]
OFFICIAL_ORDER = ["official-dit", "official-toca"]


def num(v):
    """v as a finite float, or None."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def fmt(v, spec):
    f = num(v)
    return "—" if f is None else format(f, spec)


def label(r):
    if r.get("label"):
        return r["label"]
    s = r.get("system", "?")
    if s == "official-dit":
        return "official DiT (PyTorch)"
    if s == "official-toca":
        p = r.get("params") or {}
        extra = f" N={p['N']} ratio={p['ratio']}" if "N" in p and "ratio" in p else ""
        return f"official DiT-ToCa (PyTorch){extra}"
    return f"cachebench {s}"


def table(recs):
    by = {}
    for r in recs:
        by[r.get("system", "?")] = r  # a later line for the same system wins
    order = [s for s in CACHEBENCH_ORDER if s in by] + [s for s in OFFICIAL_ORDER if s in by]
    order += [s for s in by if s not in order]
    base = {"cachebench": by.get("none"), "official": by.get("official-dit")}

    lines = ["| system | ms/image (steady) | compile s | realized speedup | FLOPs speedup | policy overhead % |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for s in order:
        r = by[s]
        if r.get("error"):
            msg = str(r["error"]).replace("|", "\\|").replace("\n", " ")[:200]
            lines.append(f"| {label(r)} | FAILED: {msg} | | | | |")
            continue
        fam = r.get("family", "cachebench")
        b = base.get(fam)
        ok_b = b is not None and not b.get("error")
        ms = num(r.get("steady_ms_per_image"))
        speed = flops_speed = None
        if ok_b and ms:
            bms = num(b.get("steady_ms_per_image"))
            speed = bms / ms if bms else None
            bf, f = num(b.get("flops")), num(r.get("flops"))
            # FLOPs are compared per image (a run may time another number of images).
            bi, i = num(b.get("images")), num(r.get("images"))
            if bf and f and bi and i:
                flops_speed = (bf / bi) / (f / i)
        if fam == "official":
            compile_s = fmt(r.get("warmup_s"), ".1f") + " †"
        else:
            compile_s = fmt(r.get("compile_s"), ".1f")
        over = fmt(r.get("overhead_pct"), ".1f") if fam != "official" else "—"
        lines.append(f"| {label(r)} | {fmt(ms, '.1f')} | {compile_s} | {fmt(speed, '.2f')}"
                     f"{'×' if speed is not None else ''} | {fmt(flops_speed, '.2f')}{'×' if flops_speed is not None else ''} | {over} |")
    return lines, by


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--title", default="GPU check")
    ap.add_argument("--note", action="append", default=[], help="line printed under the title (repeatable)")
    a = ap.parse_args()
    recs = []
    try:
        with open(a.results) as f:
            for i, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    recs.append(json.loads(line))
                except json.JSONDecodeError as e:
                    recs.append({"system": f"line {i}", "error": f"bad JSON: {e}"})
    except FileNotFoundError:
        pass
    out = [f"# {a.title}", ""] + [n + "  " for n in a.note] + [""]
    if not recs:
        out.append("No results.")
        print("\n".join(out))
        return 0
    lines, by = table(recs)
    out += lines
    out += ["",
            "steady = (time of all images − time of the first batch) / (images − first batch's images); "
            "compile s = runbench's graph compilation; † official rows: the untimed warm-up batch (eager PyTorch, nothing compiled). "
            "Realized speedup = the family's uncached ms/image ÷ this row's (cachebench methods vs cachebench none, "
            "official DiT-ToCa vs official DiT); FLOPs speedup = uncached FLOPs ÷ this row's, per image "
            "(official rows: DiT-ToCa's own test_FLOPs counter, blocks only, uncached = every step forced full)."]
    for r in recs:
        if not r.get("error") and num(r.get("decode_images_per_s")):
            out += ["", f"Stages ({label(r)}): sampling {1e3 / num(r.get('steady_ms_per_image')):.2f} images/s (steady), "
                        f"VAE decoding {num(r.get('decode_images_per_s')):.2f} images/s (SD v1 decoder, batch {r.get('batch')})."]
    cb, od = by.get("none"), by.get("official-dit")
    if cb and od and not cb.get("error") and not od.get("error"):
        cms, oms = num(cb.get("steady_ms_per_image")), num(od.get("steady_ms_per_image"))
        if cms and oms:
            out += ["", f"Uncached, steady: cachebench none {1e3 / cms:.2f} images/s, official DiT {1e3 / oms:.2f} images/s: "
                        f"cachebench is {oms / cms:.2f}× the official PyTorch code's throughput"
                        f"{' (TF32 allowed in PyTorch)' if od.get('tf32') else ''}."]
    else:
        out += ["", "Uncached comparison unavailable (cachebench none or official DiT missing or failed)."]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
