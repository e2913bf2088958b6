#!/usr/bin/env bash
# Slurm job-array template for cachebench: one array task per shard of an experiment, then one
# dependent job that merges the shard databases and computes the metrics (FID needs all samples).
#
#   experiments/slurm_array.sh EXPERIMENT.toml [SHARDS]     submit the array and the merge job
#
# Run it from the repository root (or set RUNBENCH). Edit the #SBATCH lines for your cluster;
# everything else comes from the environment:
#   RUNBENCH        runbench binary built with XLA (make gpu-build)   default bin/runbench-xla
#   GOMLX_BACKEND   backend                                            default xla:cuda
#   CACHEBENCH_WEIGHTS, CACHEBENCH_INCEPTION, CACHEBENCH_REFS: the paths the shipped experiments use
#   RESULTS         output folder (samples and databases)   default results/EXPERIMENT-NAME
#   EXTRA           more `runbench run` flags, e.g. "--samples 1000"
# Task I writes RESULTS/results-shard-I-of-N.db; the merge job writes RESULTS/results.db. A task that is preempted, cancelled or requeued resumes
# where it stopped: rerunning a shard is always safe, finished configurations are skipped.
#
#SBATCH --job-name=cachebench
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=24:00:00
#SBATCH --output=logs/%x-%A_%a.out
#SBATCH --requeue
#SBATCH --signal=B:INT@300
# --signal: 5 minutes before the time limit Slurm sends SIGINT to runbench (the script execs
# it), which finishes the batch in flight, commits it and exits; requeue or resubmit to go on.
set -euo pipefail

RUNBENCH=${RUNBENCH:-bin/runbench-xla}
export GOMLX_BACKEND=${GOMLX_BACKEND:-xla:cuda}
export GOMLX_NO_AUTO_INSTALL=1

if [[ -z "${SLURM_ARRAY_TASK_ID:-}" && -z "${CACHEBENCH_MERGE:-}" ]]; then
	# Submitting: the array, then the merge once every task succeeded.
	EXPERIMENT=${1:?usage: $0 EXPERIMENT.toml [SHARDS]}
	SHARDS=${2:-8}
	RESULTS=${RESULTS:-results/$(basename "$EXPERIMENT" .toml)}
	mkdir -p logs "$RESULTS"
	# Validate before queueing anything: every problem of the file, with its line.
	"$RUNBENCH" run "$EXPERIMENT" --list ${EXTRA:-} >/dev/null
	array=$(sbatch --parsable --array=0-$((SHARDS - 1)) --export=ALL,EXPERIMENT="$EXPERIMENT",SHARDS="$SHARDS",RESULTS="$RESULTS" "$0")
	merge=$(sbatch --parsable --dependency=afterok:"$array" --job-name=cachebench-merge --time=04:00:00 \
		--export=ALL,CACHEBENCH_MERGE=1,EXPERIMENT="$EXPERIMENT",SHARDS="$SHARDS",RESULTS="$RESULTS" "$0")
	echo "submitted array $array ($SHARDS shards of $EXPERIMENT) and merge job $merge (results in $RESULTS)"
	exit 0
fi

EXPERIMENT=${EXPERIMENT:?EXPERIMENT is set by the submitting call}
SHARDS=${SHARDS:?SHARDS is set by the submitting call}
RESULTS=${RESULTS:?RESULTS is set by the submitting call}

if [[ -n "${CACHEBENCH_MERGE:-}" ]]; then
	shards=()
	for i in $(seq 0 $((SHARDS - 1))); do shards+=("$RESULTS/results-shard-$i-of-$SHARDS.db"); done
	exec "$RUNBENCH" merge "$RESULTS/results.db" "${shards[@]}" --metrics "$EXPERIMENT"
fi

exec "$RUNBENCH" run "$EXPERIMENT" --shard "$SLURM_ARRAY_TASK_ID/$SHARDS" --out "$RESULTS" ${EXTRA:-}
