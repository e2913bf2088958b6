# cachebench — see README.md. `make test` is what CI runs.
GO      ?= go
PKGS    := ./...
BIN     := bin/runbench

# The pure-Go backend's float32 SIMD kernels (third_party/README.md) need Go's simd experiment on
# amd64; without it the same code runs upstream GoMLX's scalar kernels (a forward of the embedded
# default's DiT 7× slower, docs/gomlx.md; same results to float32 rounding).
ifeq ($(shell $(GO) env GOARCH 2>/dev/null),amd64)
export GOEXPERIMENT ?= simd
endif

.PHONY: all build setup test bench bench-t2i bench-all bench-docs gobench lint fuzz gpu-build gpu-pack gpu-stage-official gpu-check clean docs-figures

all: build

build:
	$(GO) build -o $(BIN) ./cmd/runbench

# setup installs what the tests and the embedded default need (Debian/Ubuntu; skipped elsewhere).
setup:
	@if command -v apt-get >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq gcc dataset-fashion-mnist >/dev/null || \
		echo "setup: apt-get failed; install gcc (cgo, for SQLite) and dataset-fashion-mnist by hand"; \
	fi
	$(GO) mod download

test:
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 20m $(PKGS)

# bench is the embedded default: every method of the registry that applies to the tiny
# class-conditional Fashion-MNIST DiT (experiments/default.toml, 500 samples per configuration),
# FID-FMNIST, class accuracy, PSNR/SSIM against the uncached samples, the real-data floor, and the
# report in out/default/report. bench-t2i runs the text-to-image defaults: the tiny PixArt-α
# (experiments/default_pixart.toml) and the tiny Stable Diffusion UNet with DeepCache, ToMeSD and
# DaTo (experiments/default_unet.toml); bench-all runs both. The pure-Go backend runs these small
# models on about one core per process, so each sample range is split into BENCH_SHARDS processes
# (default: one per core), merged into one database before the metrics and the report. Shard i>0
# logs to OUT/shard-i.log; rerunning resumes. A quick look:
#   make bench BENCH_ARGS="--samples 16" BENCH_OUT=/tmp/bench16
BENCH_SHARDS     ?= $(shell nproc 2>/dev/null || echo 2)
BENCH_OUT        ?= out/default
BENCH_PIXART_OUT ?= out/default_pixart
BENCH_UNET_OUT   ?= out/default_unet
BENCH_ARGS       ?=

# bench_sweep runs experiment:out pairs ($(1)) sharded, merges, and writes each report.
define bench_sweep
	@n=$(BENCH_SHARDS); \
	for pair in $(1); do \
		exp=$${pair%%:*}; out=$${pair#*:}; run="$(BIN) run $$exp --out $$out $(BENCH_ARGS)"; mkdir -p $$out; \
		echo "make bench: $$exp → $$out"; \
		if [ "$$n" -le 1 ]; then \
			$$run || exit 1; \
		else \
			pids=; i=1; while [ $$i -lt $$n ]; do \
				$$run --shard $$i/$$n > $$out/shard-$$i.log 2>&1 & pids="$$pids $$!"; i=$$((i+1)); \
			done; \
			rc=0; $$run --shard 0/$$n || rc=1; \
			for p in $$pids; do wait $$p || rc=1; done; \
			if [ $$rc != 0 ]; then echo "make bench: a shard failed (logs: $$out/shard-*.log)"; exit 1; fi; \
			i=0; dbs=; while [ $$i -lt $$n ]; do dbs="$$dbs $$out/results-shard-$$i-of-$$n.db"; i=$$((i+1)); done; \
			$(BIN) merge $$out/results.db $$dbs --metrics $$exp || exit 1; \
		fi; \
		$(BIN) report $$out/results.db --out $$out/report || exit 1; \
	done
endef

bench: build
	$(call bench_sweep,experiments/default.toml:$(BENCH_OUT))
	@echo "real-data floor: 500 Fashion-MNIST training images against the same reference ($(BENCH_OUT)/report/floor.txt)"; \
	$(BIN) metrics --extractor fmnist --weights assets/fmnist_classifier.safetensors --ref assets/fmnist_test_stats.npz \
		--images fmnist:train:500 | tee $(BENCH_OUT)/report/floor.txt || echo "(no floor: install dataset-fashion-mnist, make setup)"
	@echo "make bench: report in $(BENCH_OUT)/report/report.md"

bench-t2i: build
	$(call bench_sweep,experiments/default_pixart.toml:$(BENCH_PIXART_OUT) experiments/default_unet.toml:$(BENCH_UNET_OUT))
	@echo "make bench-t2i: reports in $(BENCH_PIXART_OUT)/report/report.md and $(BENCH_UNET_OUT)/report/report.md"

bench-all: bench bench-t2i

# bench-docs copies the README's figures from the last make bench / bench-t2i reports (samples-K
# is the K-th configuration of experiments/default.toml beside none's: 6 toca N=3, 13 taylorseer N=5).
BENCH_FIG = $(BENCH_OUT)/report/figures/1-dit-*-learned-sigma
BENCH_UNET_FIG = $(BENCH_UNET_OUT)/report/figures/1-unet-model-channels-32-channel-mult-1-2-num-res-blocks-1-attention-resolutions-1-2-depth-1-context-32-4-heads-in-4-out-4-time-embedding-128-latent-4x16x16
bench-docs:
	cp $(BENCH_FIG)-fid-fmnist-vs-flops.png docs/bench/fid_fmnist_vs_flops.png
	cp $(BENCH_FIG)-psnr-vs-none-vs-latency.png docs/bench/psnr_vs_wallclock.png
	cp $(BENCH_FIG)-diag-mlp-error.png docs/bench/cache_error_per_call.png
	cp $(BENCH_FIG)-diag-accumulation.png docs/bench/state_deviation_per_call.png
	cp $(BENCH_FIG)-samples-6.png docs/bench/samples_toca_N3.png
	cp $(BENCH_FIG)-samples-13.png docs/bench/samples_taylorseer_N5.png
	if [ -d $(BENCH_UNET_OUT)/report ]; then \
		cp $(BENCH_UNET_FIG)-diag-dynamics.png docs/bench/unet_feature_dynamics.png; \
		cp $(BENCH_UNET_FIG)-psnr-vs-none-vs-flops.png docs/bench/unet_psnr_vs_flops.png; \
	fi

# gobench runs the Go benchmarks (timings are compared as ratios within one run).
gobench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m $(PKGS)

lint:
	@# third_party/gomlx is upstream's code as published (not all gofmt-clean); our files there are checked.
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^third_party/') $$(git ls-files 'third_party/gomlx/backends/simplego/*_f32*.go' third_party/gomlx/backends/simplego/reduce_fast.go third_party/gomlx/backends/simplego/layout_copy.go)); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# fuzz runs each reader's fuzz target briefly.
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzReadSafetensors -fuzztime 30s ./models/checkpoint/
	$(GO) test -run '^$$' -fuzz FuzzReadPT$$ -fuzztime 30s ./models/checkpoint/
	$(GO) test -run '^$$' -fuzz FuzzReadPTPickle -fuzztime 30s ./models/checkpoint/

# gpu-build makes the XLA (CUDA PJRT) binary; see README "GPU".
gpu-build:
	CGO_ENABLED=1 $(GO) build -tags xla -o bin/runbench-xla ./cmd/runbench

# gpu-check is the one-call GPU check (tools/gpu/README.md): every method and the official PyTorch
# DiT / DiT-ToCa on DiT-XL/2 256px random weights. It packs the stripped XLA binary into
# .gpu/runbench-xla.gz (gpu-pack), stages the official code into .gpu/official (gpu-stage-official:
# from OFFICIAL_DIT_SRC / OFFICIAL_TOCA_SRC, each a git checkout, a bare git dir or a plain folder,
# else a git clone; pinned commits in tools/gpu/stage_official.sh), then runs tools/gpu/check.sh
# here if nvidia-smi finds a GPU, or prints how to run it on a GPU machine. .gpu/ is git-ignored.
OFFICIAL_DIT_SRC  ?=
OFFICIAL_TOCA_SRC ?=
gpu-pack:
	mkdir -p .gpu
	CGO_ENABLED=1 $(GO) build -tags xla -ldflags "-s -w" -o .gpu/runbench-xla ./cmd/runbench
	gzip -9 -f .gpu/runbench-xla
	@ls -l .gpu/runbench-xla.gz

gpu-stage-official:
	OFFICIAL_DIT_SRC="$(OFFICIAL_DIT_SRC)" OFFICIAL_TOCA_SRC="$(OFFICIAL_TOCA_SRC)" bash tools/gpu/stage_official.sh .gpu/official

gpu-check: gpu-pack gpu-stage-official
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		bash tools/gpu/check.sh; \
	else \
		echo "gpu-check: no GPU here. On a CUDA machine with python3 (torch, timm) and the jax-cuda13 PJRT plugin,"; \
		echo "in a copy of this tree that holds .gpu/runbench-xla.gz and .gpu/official ($$(du -ch .gpu/runbench-xla.gz .gpu/official | tail -1 | cut -f1)), run:"; \
		echo "  bash tools/gpu/check.sh     # env: OUT=out/gpu-check NUM=48 BATCH=16 BUDGET_S=540 ...; results in OUT/gpu-check.md"; \
		echo "With the device tool: command 'bash tools/gpu/check.sh', carry [\".gpu/runbench-xla.gz\", \".gpu/official\"], timeout_s 600."; \
	fi

clean:
	rm -rf bin out

# docs-figures regenerates the diagnostics figures shown in the README (golden tiny model, ~1 min).
docs-figures: build
	rm -rf docs/figures /tmp/cachebench-docs && mkdir -p docs/figures
	$(BIN) sample --weights testdata/caching/weights.safetensors --heads 4 --sampler ddim --steps 50 --cfg 1.5 \
		--num 2 --batch 2 --method toca --param N=3 --record full --audit-samples 1 \
		--db /tmp/cachebench-docs/diag.db --out-dir /tmp/cachebench-docs/toca
	$(BIN) sample --weights testdata/caching/weights.safetensors --heads 4 --sampler ddim --steps 50 --cfg 1.5 \
		--num 2 --batch 2 --method fora --param N=3 --record light --audit-samples 1 \
		--db /tmp/cachebench-docs/diag.db --out-dir /tmp/cachebench-docs/fora
	$(BIN) inspect 1 2 --db /tmp/cachebench-docs/diag.db --plots docs/figures --format md
