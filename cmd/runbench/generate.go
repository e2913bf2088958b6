package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/harness"
	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/methods"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/dit"
)

// generate samples --num images through harness.Run: images to --out-dir, the run to SQLite; a
// rerun resumes at the first missing image.
func generate(ctx context.Context, cmd *cobra.Command, m *dit.Model, kind diffusion.Kind, sf sampleFlags, mf modelFlags) error {
	spec := m.Spec()
	var labels []int64
	if sf.labels != "" {
		var err error
		if labels, err = parseLabels(sf.labels, spec.NumClasses); err != nil {
			return err
		}
	}
	weightsHash := "random-seed-0"
	if mf.weights != "" {
		var err error
		if weightsHash, err = checkpoint.FileHash(mf.weights); err != nil {
			return err
		}
	}
	raw, err := methods.ParseParams(sf.params)
	if err != nil {
		return err
	}
	level, err := harness.ParseLevel(sf.record)
	if err != nil {
		return fmt.Errorf("--record: %w", err)
	}
	if sf.audit < 0 || sf.audit > sf.batch {
		return fmt.Errorf("--audit-samples %d: want 0..--batch (%d)", sf.audit, sf.batch)
	}
	backendCfg, _ := cmd.Flags().GetString("backend")
	dbPath := sf.db
	if dbPath == "" {
		dbPath = filepath.Join(sf.outDir, "runs.db")
	}
	if err := mkdirFor(dbPath); err != nil {
		return err
	}
	db, err := store.Open(dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	bar := progressbar.NewOptions(-1, progressbar.OptionSetWriter(cmd.ErrOrStderr()), progressbar.OptionSetDescription("sampling"),
		progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true))
	job := harness.Job{
		Config: harness.Config{Model: m.Config.String(), Weights: weightsHash, Method: sf.method, Sampler: string(kind), Steps: sf.steps,
			CFGScale: sf.cfg, Guide: sf.guide(), Seed: sf.seed, NumSamples: sf.numImages, Labels: labels, Backend: engine.Config(backendCfg)},
		RawParams: raw, Model: m, BatchSize: sf.batch, OutDir: sf.outDir, DB: db, Compare: sf.compare, GitRev: gitRev(),
		Record: level, Audit: sf.audit,
		Progress: func(done, total int) { bar.ChangeMax(total); _ = bar.Set(done) },
	}
	res, err := harness.Run(ctx, job)
	_ = bar.Finish()
	fmt.Fprintln(cmd.ErrOrStderr())
	if err != nil {
		if ctx.Err() != nil && res != nil {
			return fmt.Errorf("interrupted; finished batches are committed in %s (run %d), rerun the same command to resume", dbPath, res.Run.ID)
		}
		return err
	}
	if res.Done == 0 {
		fmt.Fprintf(cmd.OutOrStdout(), "run %d (%s): all %d images already done in %s\n", res.Run.ID, res.Run.ConfigHash[:12], sf.numImages, dbPath)
		return nil
	}
	fmt.Fprintf(cmd.OutOrStdout(), "run %d (%s): %d images to %s, recorded in %s (batch %d, %d graph families compiled)\n",
		res.Run.ID, res.Run.ConfigHash[:12], res.Done, sf.outDir, dbPath, sf.batch, m.GraphCount())
	res.Timing.Report(cmd.OutOrStdout(), sf.method, res.Base)
	return nil
}

// gitRev is the VCS revision stamped into the binary, if any.
func gitRev() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return ""
}

// mkdirFor creates the folder a file will be written to.
func mkdirFor(path string) error {
	if dir := filepath.Dir(path); dir != "." {
		return os.MkdirAll(dir, 0o755)
	}
	return nil
}
