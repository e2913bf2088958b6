package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/experiments"
	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/runner"
)

func newMergeCmd() *cobra.Command {
	var metricsFrom string
	cmd := &cobra.Command{
		Use:   "merge OUT.db IN.db... [--metrics EXPERIMENT.toml]",
		Short: "Combine shard databases into one (refusing mismatched configurations); optionally compute metrics",
		Long: `Copies every run of each IN.db into OUT.db (created if absent), each input in one transaction.
Runs are matched by config hash; the same hash with a different configuration is refused, and so
is a sample index present in both files with a different output hash, label, noise seed or
features. A batch already present with identical samples is skipped, so merging a file twice
changes nothing. Runs that hold all their samples afterwards are marked done.

The result equals the unsharded run's file in everything results depend on (runbench's
ResultRows: runs, samples with their output hashes and features, covered sample ranges,
metrics, planned FLOPs); ids, times, timings and batch boundaries differ.

--metrics EXPERIMENT computes, for every complete run with stored features, the metrics of the
experiment's [metrics] section from those features (metrics that need all samples, such as FID,
are only meaningful after the merge), and psnr_vs_none / ssim_vs_none against the complete none
run whose configuration differs only in the method. Running ` + "`runbench run EXPERIMENT --db OUT.db`" + ` does the same.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, ins := args[0], args[1:]
			// Every input is checked before anything is written: a bad second shard must not
			// leave the first one merged into the output.
			for _, in := range ins {
				src, err := store.OpenReadOnly(in)
				if err != nil {
					return fmt.Errorf("merge: nothing written: %w", err)
				}
				src.Close()
				if a, errA := os.Stat(in); errA == nil {
					if b, errB := os.Stat(out); errB == nil && os.SameFile(a, b) {
						return fmt.Errorf("merge: nothing written: input %s is the output itself", in)
					}
				}
			}
			if err := mkdirFor(out); err != nil {
				return err
			}
			db, err := store.Open(out)
			if err != nil {
				return err
			}
			defer db.Close()
			for _, in := range ins {
				st, err := db.Merge(in)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %d runs (%d new), %d batches with %d samples copied, %d batches already present, %d metrics\n",
					in, st.Runs, st.NewRuns, st.Batches, st.Samples, st.Duplicates, st.Metrics)
			}
			runs, err := db.Runs()
			if err != nil {
				return err
			}
			done := 0
			for _, r := range runs {
				if r.Status == store.StatusDone {
					done++
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d runs, %d complete\n", out, len(runs), done)
			if metricsFrom == "" {
				return nil
			}
			return mergeMetrics(cmd, db, runs, metricsFrom)
		},
	}
	cmd.Flags().StringVar(&metricsFrom, "metrics", "", "experiment file whose [metrics] to compute for every complete run with stored features")
	return cmd
}

// mergeMetrics computes an experiment's metrics for every complete run of db with stored features.
func mergeMetrics(cmd *cobra.Command, db *store.DB, runs []store.Run, path string) error {
	e, err := loadExperiment(path, experiments.Overrides{MetricsOnly: true})
	if err != nil {
		return err
	}
	if e.Metrics == nil {
		return fmt.Errorf("--metrics %s: the file has no [metrics] section", path)
	}
	backend, _ := cmd.Flags().GetString("backend")
	if backend == "" {
		backend = e.Model.Backend
	}
	ex, spec, err := openMetrics(e.Metrics, engine.Config(backend))
	if err != nil {
		return err
	}
	n := 0
	for _, r := range runs {
		var c runner.Config
		if err := json.Unmarshal([]byte(r.ConfigJSON), &c); err != nil || c.Features == nil || r.Status != store.StatusDone {
			continue
		}
		if c.Features.Extractor != ex.ID() {
			fmt.Fprintf(cmd.ErrOrStderr(), "run %d (%s): features from %s, not %s; skipped\n", r.ID, short(r.ConfigHash), c.Features.Extractor, ex.ID())
			continue
		}
		ms, err := runner.EvaluateRun(db, r, *spec)
		if err != nil {
			return fmt.Errorf("run %d (%s): %w", r.ID, short(r.ConfigHash), err)
		}
		line := fmt.Sprintf("run %d (%s, %s)", r.ID, short(r.ConfigHash), r.Method)
		for _, m := range ms {
			line += fmt.Sprintf("  %s %.4f", m.Name, m.Value)
		}
		fmt.Fprintln(cmd.OutOrStdout(), line)
		n++
	}
	if n == 0 {
		fmt.Fprintln(cmd.ErrOrStderr(), "no complete run with stored features: nothing to compute (latent models store no features yet)")
	}
	if slices.Contains(spec.Names, "psnr_vs_none") || slices.Contains(spec.Names, "ssim_vs_none") {
		return runner.PairRuns(db, runs, func(f string, a ...any) { fmt.Fprintf(cmd.OutOrStdout(), f+"\n", a...) })
	}
	return nil
}
