package main

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/experiments"
	"github.com/cachebench/cachebench/methods"
	"github.com/cachebench/cachebench/reports"
)

func newReportCmd() *cobra.Command {
	var format, out, experiment string
	cmd := &cobra.Command{
		Use:   "report DB... [--format text|md|latex|html] [--out DIR]",
		Short: "The papers' tables and quality-vs-speedup figures of results databases, without rerunning anything",
		Long: `Reads one or more results databases (read-only; shards merged or not) and reports every finished
run: one table per model, sampler, step count, cfg scale and seed, with the columns of the papers
(method, setting, FLOPs, FLOPs speedup, latency, latency speedup, FID, sFID, IS, precision, recall,
CLIP), and figures of each metric against the FLOPs speedup and the wall-clock speedup, one line
per method family with the Pareto front drawn over them.

Speedups are over the none run with the same model, sampler, steps, cfg and seed; where the
databases do not determine a number the cell is "–" and a note says why.

Without --out, the tables go to stdout in --format (text by default). With --out DIR, the report
is written there: report.md with figures/ (PNG and SVG), a self-contained report.html, tables.tex
(booktabs) and report.txt — or only the document of --format when it is given.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New("report: give at least one results database")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := reports.ParseFormat(format)
			if err != nil {
				return fmt.Errorf("--format: %w", err)
			}
			var opts reports.Options
			if experiment != "" {
				if opts.Published, err = publishedOf(experiment); err != nil {
					return err
				}
			}
			d, err := reports.LoadWith(opts, args...)
			if err != nil {
				return fmt.Errorf("report: %w", err)
			}
			r, err := reports.New(d)
			if err != nil {
				return fmt.Errorf("report: %w", err)
			}
			w := cmd.OutOrStdout()
			if out == "" {
				return r.Print(w, f)
			}
			var formats []reports.Format
			if cmd.Flags().Changed("format") {
				formats = []reports.Format{f}
			}
			written, err := r.Write(out, formats...)
			if err != nil {
				return fmt.Errorf("report: %w", err)
			}
			figures := 0
			for _, p := range written {
				if filepath.Base(filepath.Dir(p)) == "figures" {
					figures++
					continue
				}
				fmt.Fprintln(w, "wrote", p)
			}
			if figures > 0 {
				fmt.Fprintf(w, "wrote %d figure files to %s\n", figures, filepath.Join(out, "figures"))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", string(reports.FormatText), "text, md, latex or html: what goes to stdout, or with --out the one document written")
	cmd.Flags().StringVarP(&out, "out", "o", "", "write the report (documents and figures) into this directory")
	cmd.Flags().StringVar(&experiment, "experiment", "", "experiment file whose [methods.*] paper = {...} numbers are shown beside the measured ones, in \"(paper)\" columns")
	return cmd
}

// publishedOf reads the published numbers of an experiment file's configurations and matches a
// run to them by method and parameters (defaults filled in, as the run's configuration stores them).
func publishedOf(path string) (func(string, map[string]any) *reports.Published, error) {
	e, err := experiments.Load(path, experiments.Overrides{RandomWeights: true, NoMetrics: true})
	if err != nil {
		return nil, fmt.Errorf("--experiment: %w", err)
	}
	type entry struct {
		method string
		params map[string]string
		paper  *reports.Published
	}
	var known []entry
	for _, p := range e.Points() {
		if p.Paper == nil {
			continue
		}
		info, err := methods.Lookup(p.Method)
		if err != nil {
			return nil, err
		}
		vals, err := info.Parse(p.Params)
		if err != nil {
			return nil, fmt.Errorf("--experiment %s: %s: %w", path, p.Label(), err)
		}
		known = append(known, entry{p.Method, stringsOf(vals), &reports.Published{Values: p.Paper.Values, Source: p.Paper.Source}})
	}
	return func(method string, params map[string]any) *reports.Published {
		got := stringsOf(params)
		for _, k := range known {
			if k.method == method && maps.Equal(k.params, got) {
				return k.paper
			}
		}
		return nil
	}, nil
}

// stringsOf renders parameter values alike whether they come from methods.Values (int, float64,
// string) or from a run's JSON (float64, string).
func stringsOf[V any](m map[string]V) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = fmt.Sprint(v)
	}
	return out
}
