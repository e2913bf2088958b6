package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/reports"
)

func newReportCmd() *cobra.Command {
	var format, out string
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
			d, err := reports.Load(args...)
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
	return cmd
}
