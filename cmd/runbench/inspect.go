package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/reports/diag"
)

func newInspectCmd() *cobra.Command {
	var db, format, plots string
	var grid int
	cmd := &cobra.Command{
		Use:   "inspect RUN... --db DB [--format text|md|csv|json] [--plots DIR]",
		Short: "Summarise a run's recorded feature dynamics and cache error; draw its diagnostics",
		Long: `Per module kind: how many (call, block) pairs were computed or taken from the cache, the
tokens recomputed, and the percentiles of the relative L2 change since the previous call (dyn)
and of the error against a shadow full computation (err, on audited rows; recorded with
--audit-samples). RUN is a run id or a prefix of its config hash. --plots DIR writes, as PNG and
SVG: step × block heatmaps of dynamics and cache error, the deviation from the uncached
trajectory of every RUN on one axes, and the token-refresh map (with --record full).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if db == "" {
				return fmt.Errorf("--db is required")
			}
			s, err := store.OpenReadOnly(db)
			if err != nil {
				return err
			}
			defer s.Close()
			all := map[string][]store.StepStat{}
			var labels []string
			for i, arg := range args {
				run, err := findRun(s, arg)
				if err != nil {
					return err
				}
				stats, err := s.StepStats(run.ID)
				if err != nil {
					return err
				}
				sum, err := diag.Summarize(run, stats)
				if err != nil {
					return fmt.Errorf("%s: %w", db, err)
				}
				if i > 0 {
					fmt.Fprintln(cmd.OutOrStdout())
				}
				if err := sum.Write(cmd.OutOrStdout(), format); err != nil {
					return err
				}
				label := fmt.Sprintf("%d %s", run.ID, run.Method)
				all[label], labels = stats, append(labels, label)
				if plots != "" {
					if err := os.MkdirAll(plots, 0o755); err != nil {
						return err
					}
					for _, p := range []struct{ field, module string }{{"dyn", "attn"}, {"dyn", "mlp"}, {"err", "attn"}, {"err", "mlp"}} {
						pl, err := diag.Heatmap(stats, p.field, p.module, fmt.Sprintf("run %d (%s): %s %s", run.ID, run.Method, p.module, map[string]string{"dyn": "dynamics", "err": "cache error"}[p.field]))
						if err != nil {
							fmt.Fprintf(cmd.ErrOrStderr(), "run %d: %s %s heatmap skipped: %v\n", run.ID, p.field, p.module, err)
							continue
						}
						if _, err := diag.Save(pl, plots, fmt.Sprintf("run%d_%s_%s", run.ID, p.field, p.module)); err != nil {
							return err
						}
					}
					if grid > 0 {
						if pl, err := diag.TokenRefresh(stats, grid, grid, "mlp"); err == nil {
							if _, err := diag.Save(pl, plots, fmt.Sprintf("run%d_token_refresh", run.ID)); err != nil {
								return err
							}
						} else {
							fmt.Fprintf(cmd.ErrOrStderr(), "run %d: token-refresh map skipped: %v\n", run.ID, err)
						}
					}
				}
			}
			if plots != "" {
				if pl, err := diag.ErrorAccumulation(all, labels); err == nil {
					if _, err := diag.Save(pl, plots, "error_accumulation"); err != nil {
						return err
					}
				} else {
					fmt.Fprintf(cmd.ErrOrStderr(), "error accumulation skipped: %v\n", err)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&db, "db", "", "results database")
	cmd.Flags().StringVar(&format, "format", "text", "text, md, csv or json")
	cmd.Flags().StringVar(&plots, "plots", "", "folder for the diagnostics figures (PNG and SVG)")
	cmd.Flags().IntVar(&grid, "grid", 16, "token grid side for the token-refresh map (16 for 256 tokens)")
	return cmd
}

// findRun resolves a run id or a config-hash prefix.
func findRun(s *store.DB, arg string) (store.Run, error) {
	if id, err := strconv.ParseInt(arg, 10, 64); err == nil {
		return s.Run(id)
	}
	runs, err := s.Runs()
	if err != nil {
		return store.Run{}, err
	}
	var hit []store.Run
	for _, r := range runs {
		if strings.HasPrefix(r.ConfigHash, arg) {
			hit = append(hit, r)
		}
	}
	switch len(hit) {
	case 1:
		return hit[0], nil
	case 0:
		return store.Run{}, fmt.Errorf("%s: no run with id or config hash %q", s.Path(), arg)
	}
	return store.Run{}, fmt.Errorf("%s: %d runs match config hash prefix %q; give more characters", s.Path(), len(hit), arg)
}
