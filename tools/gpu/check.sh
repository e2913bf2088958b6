#!/usr/bin/env bash
# tools/gpu/check.sh — the one-call GPU check (tools/gpu/README.md). Runs on a CUDA machine, in the
# repository root, with .gpu/runbench-xla.gz and .gpu/official/ staged by `make gpu-check`:
#   1. every cachebench method on DiT-XL/2 256px random weights, DDIM-50, CFG 1.5, through the XLA
#      (CUDA PJRT) binary, each with `runbench sample ... --timing-json`;
#   2. the official PyTorch DiT and DiT-ToCa on the same setting (tools/gpu/official_bench.py);
#   3. a Markdown table: $OUT/gpu-check.md (also printed).
# Results: $OUT/results.jsonl (one JSON object per system), $OUT/gpu-check.md, $OUT/check.log.
#
# Environment (all optional):
#   OUT=out/gpu-check  NUM=48  BATCH=16  STEPS=50  CFG=1.5  PRESET=DiT-XL/2  IMAGE_SIZE=256
#   SYSTEMS="none official fora deltadit toca duca taylorseer vae"   run order (the table has its own; vae = none
#                      plus SD's VAE decoder with random weights: the decoding stage's images/s)
#   BUDGET_S=540       seconds for the whole script: a system not started with MIN_LEFT_S (45) left is skipped
#   RUN_TIMEOUT=200    seconds per runbench run;  OFFICIAL_TIMEOUT=240 seconds for both official systems
#   TF32=1             PyTorch TF32 as the official sample.py (0: strict FP32)
#   CB_TF32=0          1: cachebench's XLA dot products in TF32 too (backend "xla:<plugin>,tf32"); 0: float32
#   PJRT_PLUGIN=...    the CUDA PJRT plugin (default: jax_plugins/xla_cuda*/xla_cuda_plugin.so in site-packages)
#   BIN_GZ=.gpu/runbench-xla.gz  DIT_DIR=.gpu/official/DiT  TOCA_DIR=.gpu/official/ToCa/DiT-ToCa  PYTHON=python3
#   WORK=<temp dir>    samples, per-run logs and timing JSONs
#   DRY=1              print the commands, run nothing (then the table of whatever $OUT/results.jsonl holds)
#   TABLE_ONLY=1       only rebuild $OUT/gpu-check.md from $OUT/results.jsonl
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1

OUT=${OUT:-out/gpu-check}
NUM=${NUM:-48}
BATCH=${BATCH:-16}
STEPS=${STEPS:-50}
CFG=${CFG:-1.5}
PRESET=${PRESET:-DiT-XL/2}
IMAGE_SIZE=${IMAGE_SIZE:-256}
SYSTEMS=${SYSTEMS:-none official fora deltadit toca duca taylorseer vae}
BUDGET_S=${BUDGET_S:-540}
MIN_LEFT_S=${MIN_LEFT_S:-45}
RUN_TIMEOUT=${RUN_TIMEOUT:-200}
OFFICIAL_TIMEOUT=${OFFICIAL_TIMEOUT:-240}
TF32=${TF32:-1}
CB_TF32=${CB_TF32:-0}
BIN_GZ=${BIN_GZ:-.gpu/runbench-xla.gz}
DIT_DIR=${DIT_DIR:-.gpu/official/DiT}
TOCA_DIR=${TOCA_DIR:-.gpu/official/ToCa/DiT-ToCa}
PY=${PYTHON:-python3}
DRY=${DRY:-0}
TABLE_ONLY=${TABLE_ONLY:-0}

mkdir -p "$OUT" || exit 1
RESULTS=$OUT/results.jsonl
TABLE=$OUT/gpu-check.md

# method NAME: runbench's flags for a cachebench system.
method() {
	case $1 in
	none) echo "--method none" ;;
	fora) echo "--method fora --param N=3" ;;
	deltadit) echo "--method deltadit --param N=2" ;;
	toca) echo "--method toca --param N=3 --param ratio=0.07" ;;
	duca) echo "--method duca --param N=3 --param ratio=0.05" ;;
	taylorseer) echo "--method taylorseer --param N=3 --param order=2" ;;
	vae) echo "--method none --vae random:sd --vae-batch $BATCH" ;; # the decoding stage: SD's VAE, random weights
	*) return 1 ;;
	esac
}

make_table() {
	local notes=(--note "$PRESET ${IMAGE_SIZE}px random weights, DDIM-$STEPS, CFG $CFG, $NUM images in batches of $BATCH (steady = minus the first batch)"
		--note "precision: official PyTorch $([ "$TF32" = 1 ] && echo "TF32 allowed (as its sample.py)" || echo "strict FP32"), cachebench XLA $([ "$CB_TF32" = 1 ] && echo "TF32 dot products" || echo "float32 (XLA's default dot precision)")")
	[ -n "${GPU_NAME:-}" ] && notes+=(--note "GPU: $GPU_NAME")
	[ -n "${VERSIONS:-}" ] && notes+=(--note "$VERSIONS")
	"$PY" tools/gpu/table.py "$RESULTS" --title "cachebench GPU check" "${notes[@]}" >"$TABLE" || return 1
	echo
	cat "$TABLE"
}

if [ "$TABLE_ONLY" = 1 ]; then
	make_table
	exit
fi

# Everything from here on also goes to $OUT/check.log.
exec > >(tee "$OUT/check.log") 2>&1
[ "$DRY" = 1 ] || : >"$RESULTS"
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")}
mkdir -p "$WORK"
echo "gpu-check: OUT=$OUT WORK=$WORK NUM=$NUM BATCH=$BATCH STEPS=$STEPS CFG=$CFG PRESET=$PRESET IMAGE_SIZE=$IMAGE_SIZE BUDGET_S=$BUDGET_S"

run() { # run CMD...: prints it; runs it unless DRY=1
	echo "+ $*"
	[ "$DRY" = 1 ] && return 0
	"$@"
}

# error_row SYSTEM FAMILY MESSAGE: appends a failed row (LABEL, if set, names the row).
error_row() {
	"$PY" -c 'import json,sys
r = {"system": sys.argv[1], "family": sys.argv[2], "error": sys.argv[3]}
if sys.argv[4]:
    r["label"] = sys.argv[4]
print(json.dumps(r, sort_keys=True))' "$1" "$2" "$3" "${LABEL:-}" >>"$RESULTS"
	echo "gpu-check: $1: FAILED: $3"
}

# label NAME FLAGS: the table's name of a cachebench system.
label() {
	local w l="cachebench $1"
	for w in $2; do case $w in *=*) l="$l $w" ;; esac; done
	echo "$l"
}

# left: seconds of the budget left.
left() { echo $((BUDGET_S - SECONDS)); }

# --- environment -------------------------------------------------------------------------------
export GOMLX_NO_AUTO_INSTALL=1 GOPJR_CUDA_CHECKS=0
export XLA_FLAGS=${XLA_FLAGS:---xla_gpu_cuda_data_dir=/usr/local/cuda}
export PYTHONUNBUFFERED=1
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
echo "GPU: ${GPU_NAME:-none found (nvidia-smi)}"
VERSIONS=$("$PY" -c 'import sys, importlib
v = ["python " + sys.version.split()[0]]
for m in ("torch", "timm", "jax"):
    try:
        v.append(m + " " + importlib.import_module(m).__version__)
    except Exception as e:
        v.append(m + " missing")
print(", ".join(v))' 2>/dev/null)
echo "versions: $VERSIONS"

P=${PJRT_PLUGIN:-$("$PY" - <<'EOF' 2>/dev/null
import glob, os, site, sys
dirs = []
try:
    dirs += site.getsitepackages()
except Exception:
    pass
dirs += [site.getusersitepackages()] + sys.path
for d in dirs:
    found = sorted(glob.glob(os.path.join(d, "jax_plugins", "xla_cuda*", "xla_cuda_plugin.so")), reverse=True)
    if found:
        print(found[0])
        break
EOF
)}
echo "PJRT plugin: ${P:-not found}"

RB=$WORK/rb
CB_ERR=
if [ "$DRY" = 1 ]; then
	echo "+ gunzip -c $BIN_GZ > $RB && chmod +x $RB"
elif [ ! -f "$BIN_GZ" ]; then
	CB_ERR="$BIN_GZ missing (make gpu-pack, and carry .gpu)"
elif ! gunzip -c "$BIN_GZ" >"$RB" || ! chmod +x "$RB"; then
	CB_ERR="cannot unpack $BIN_GZ"
elif [ -z "$P" ] || [ ! -f "$P" ]; then
	CB_ERR="no CUDA PJRT plugin (set PJRT_PLUGIN=/path/to/xla_cuda_plugin.so)"
elif ! "$RB" sample --help 2>&1 | grep -q -- '--timing-json'; then
	CB_ERR="this runbench has no sample --timing-json flag (rebuild: make gpu-pack)"
fi
[ -n "$CB_ERR" ] && echo "gpu-check: cachebench runs cannot start: $CB_ERR"

# --- one cachebench system ---------------------------------------------------------------------
cachebench() {
	local name=$1 flags t rc LABEL
	flags=$(method "$name") || { error_row "$name" cachebench "unknown system $name"; return; }
	LABEL=$(label "$name" "$flags")
	if [ -n "$CB_ERR" ]; then error_row "$name" cachebench "$CB_ERR"; return; fi
	if [ "$(left)" -lt "$MIN_LEFT_S" ]; then error_row "$name" cachebench "skipped: budget ($BUDGET_S s) spent"; return; fi
	t=$(left); [ "$t" -gt "$RUN_TIMEOUT" ] && t=$RUN_TIMEOUT
	local json=$WORK/$name.json log=$WORK/$name.log
	rm -rf "$json" "$WORK/samples/$name"
	echo
	echo "=== cachebench $name ($flags), timeout ${t}s"
	local cmd
	# shellcheck disable=SC2206 # flags are words
	cmd=(timeout -k 10 "$t" "$RB" sample --backend "xla:$P$([ "$CB_TF32" = 1 ] && echo ,tf32)" --preset "$PRESET" --image-size "$IMAGE_SIZE"
		--num "$NUM" --batch "$BATCH" --steps "$STEPS" --cfg "$CFG" --record off $flags
		--out-dir "$WORK/samples/$name" --timing-json "$json")
	echo "+ ${cmd[*]} >$log 2>&1"
	[ "$DRY" = 1 ] && return
	"${cmd[@]}" >"$log" 2>&1
	rc=$?
	tr '\r' '\n' <"$log" | grep -v '^\s*$' | grep -v 'sampling' | tail -n 12
	if [ $rc -ne 0 ] || [ ! -s "$json" ]; then
		local why="exit $rc"
		[ $rc -eq 124 ] || [ $rc -eq 137 ] && why="timed out after ${t}s"
		[ $rc -eq 0 ] && why="no timing JSON written"
		local last
		last=$(tr '\r' '\n' <"$log" | grep -v '^\s*$' | grep -iv 'sampling' | tail -n 1 | cut -c1-200)
		error_row "$name" cachebench "$why${last:+: $last}"
		return
	fi
	"$PY" - "$json" "$name" "$flags" "$LABEL" >>"$RESULTS" <<'EOF' || error_row "$name" cachebench "bad timing JSON"
import json, sys
path, name, flags, label = sys.argv[1:5]
with open(path) as f:
    r = json.load(f)
need = ["method", "images", "batch", "compile_s", "steady_ms_per_image", "wall_s", "overhead_pct", "flops"]
missing = [k for k in need if k not in r]
if missing:
    r["warning"] = "timing JSON lacks " + ", ".join(missing)
    print("gpu-check: " + name + ": " + r["warning"], file=sys.stderr)
r.update(system=name, family="cachebench", flags=flags, label=label)
print(json.dumps(r, sort_keys=True))
EOF
	echo "gpu-check: $name: $(tail -n 1 "$RESULTS" | "$PY" -c 'import json,sys; r=json.load(sys.stdin); print("steady %s ms/image, compile %s s, wall %s s" % (r.get("steady_ms_per_image"), r.get("compile_s"), r.get("wall_s")))' 2>/dev/null)"
}

# --- the official PyTorch code -----------------------------------------------------------------
official() {
	local t rc
	if [ "$(left)" -lt "$MIN_LEFT_S" ]; then
		error_row official-dit official "skipped: budget ($BUDGET_S s) spent"
		error_row official-toca official "skipped: budget ($BUDGET_S s) spent"
		return
	fi
	t=$(left); [ "$t" -gt "$OFFICIAL_TIMEOUT" ] && t=$OFFICIAL_TIMEOUT
	local tf=--tf32
	[ "$TF32" = 1 ] || tf=--no-tf32
	echo
	echo "=== official PyTorch DiT and DiT-ToCa, timeout ${t}s"
	rm -f "$WORK/official.jsonl"
	# Each system gets at most 60% of the time (a hang in the first leaves time for the second).
	run timeout -k 10 "$t" "$PY" tools/gpu/official_bench.py --dit-dir "$DIT_DIR" --toca-dir "$TOCA_DIR" \
		--model "$PRESET" --image-size "$IMAGE_SIZE" --num "$NUM" --batch "$BATCH" --steps "$STEPS" --cfg "$CFG" $tf \
		--timeout $((t * 6 / 10)) --out "$WORK/official.jsonl"
	rc=$?
	[ "$DRY" = 1 ] && return
	local s
	for s in official-dit official-toca; do
		if grep -q "\"system\": \"$s\"" "$WORK/official.jsonl" 2>/dev/null; then
			grep "\"system\": \"$s\"" "$WORK/official.jsonl" >>"$RESULTS"
		else
			error_row "$s" official "official_bench.py exit $rc, no result (see check.log)"
		fi
	done
}

for s in $SYSTEMS; do
	case $s in
	official) official ;;
	*) cachebench "$s" ;;
	esac
done

echo
echo "gpu-check: $SECONDS s; results in $RESULTS"
make_table
if [ "$DRY" != 1 ] && grep -q '"error"' "$RESULTS"; then
	echo "gpu-check: some systems failed (rows marked FAILED)"
	exit 1
fi
