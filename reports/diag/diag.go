// Package diag turns recorded step statistics (the step_stats table) into summaries and
// figures: per-module dynamics and cache error, their step × block heatmaps, the accumulation of
// error over steps, and how often each token was recomputed.
package diag

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/olekukonko/tablewriter"

	"github.com/cachebench/cachebench/harness/store"
)

// Row summarises one module kind of one run.
type Row struct {
	Module        string   `json:"module"` // attn, mlp, output, state
	Calls         int      `json:"calls"`
	CachedSteps   int      `json:"cached_steps"` // (call, block) pairs that used the cache (reused, skipped, partial, predicted)
	Computed      int      `json:"computed_steps"`
	MeanFresh     float64  `json:"mean_fresh_tokens"` // per row, over (call, block) pairs
	DynP50        *float64 `json:"dyn_rel_l2_p50,omitempty"`
	DynP90        *float64 `json:"dyn_rel_l2_p90,omitempty"`
	DynMax        *float64 `json:"dyn_rel_l2_max,omitempty"`
	ErrP50        *float64 `json:"err_rel_l2_p50,omitempty"`
	ErrP90        *float64 `json:"err_rel_l2_p90,omitempty"`
	ErrMax        *float64 `json:"err_rel_l2_max,omitempty"`
	ErrFreshMean  *float64 `json:"err_fresh_rel_l2_mean,omitempty"`
	ErrCachedMean *float64 `json:"err_cached_rel_l2_mean,omitempty"`
}

// Summary of a run's recording.
type Summary struct {
	Run        int64  `json:"run"`
	Method     string `json:"method"`
	Rows       []Row  `json:"modules"`
	TotalFLOPs int64  `json:"total_flops"` // sum of the per-call FLOPs recorded on the state rows
	Steps      int    `json:"steps"`
	// FeatureDynamics is the mean over calls of the feature dynamics figure's curve: the relative
	// L1 change of the module outputs since the previous call, a skipped module counting 0.
	FeatureDynamics *float64 `json:"mean_feature_dynamics,omitempty"`
}

// Summarize aggregates the batch-level rows (sample NULL) of a run.
func Summarize(run store.Run, stats []store.StepStat) (*Summary, error) {
	if len(stats) == 0 {
		return nil, fmt.Errorf("run %d has no step statistics (was it sampled with --record off?)", run.ID)
	}
	s := &Summary{Run: run.ID, Method: run.Method}
	type acc struct {
		row             Row
		dyn, err        []float64
		freshE, cachedE []float64
		fresh           float64
		calls           map[int]bool
	}
	by := map[string]*acc{}
	var order []string
	steps := map[int]bool{}
	for _, r := range stats {
		if r.Sample != nil {
			continue
		}
		steps[r.Call] = true
		a, ok := by[r.Module]
		if !ok {
			a = &acc{row: Row{Module: r.Module}, calls: map[int]bool{}}
			by[r.Module] = a
			order = append(order, r.Module)
		}
		a.calls[r.Call] = true
		if r.Block >= 0 {
			// A pruned module runs at this call (on fewer tokens, the rest copied from kept ones):
			// nothing comes from the cache.
			if r.Action == "full" || r.Action == "prune" {
				a.row.Computed++
			} else {
				a.row.CachedSteps++
			}
			if r.FreshTokens != nil {
				a.fresh += float64(*r.FreshTokens)
			}
		}
		if r.FLOPs != nil && r.Module == "state" {
			s.TotalFLOPs += *r.FLOPs
		}
		if r.DynRelL2 != nil {
			a.dyn = append(a.dyn, *r.DynRelL2)
		}
		if r.ErrRelL2 != nil {
			a.err = append(a.err, *r.ErrRelL2)
		}
		if r.ErrFreshRelL2 != nil {
			a.freshE = append(a.freshE, *r.ErrFreshRelL2)
		}
		if r.ErrCachedRelL2 != nil {
			a.cachedE = append(a.cachedE, *r.ErrCachedRelL2)
		}
	}
	s.Steps = len(steps)
	var curve []float64
	for _, pt := range dynamicsPerCall(stats) {
		curve = append(curve, pt.Y)
	}
	s.FeatureDynamics = mean(curve)
	sort.SliceStable(order, func(i, j int) bool { return rank(order[i]) < rank(order[j]) })
	for _, name := range order {
		a := by[name]
		a.row.Calls = len(a.calls)
		if n := a.row.Computed + a.row.CachedSteps; n > 0 {
			a.row.MeanFresh = a.fresh / float64(n)
		}
		a.row.DynP50, a.row.DynP90, a.row.DynMax = pct(a.dyn, 0.5), pct(a.dyn, 0.9), pct(a.dyn, 1)
		a.row.ErrP50, a.row.ErrP90, a.row.ErrMax = pct(a.err, 0.5), pct(a.err, 0.9), pct(a.err, 1)
		a.row.ErrFreshMean, a.row.ErrCachedMean = mean(a.freshE), mean(a.cachedE)
		s.Rows = append(s.Rows, a.row)
	}
	return s, nil
}

func rank(m string) int {
	switch m {
	case "attn":
		return 0
	case "cross_attn":
		return 1
	case "mlp":
		return 2
	case "output":
		return 3
	}
	return 4
}

// pct is the nearest-rank percentile (p = 1: the maximum), nil for no values.
func pct(v []float64, p float64) *float64 {
	if len(v) == 0 {
		return nil
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := max(0, int(math.Ceil(p*float64(len(s))))-1)
	return &s[i]
}

func mean(v []float64) *float64 {
	if len(v) == 0 {
		return nil
	}
	var m float64
	for _, x := range v {
		m += x
	}
	m /= float64(len(v))
	return &m
}

func cell(p *float64) string {
	if p == nil {
		return "–"
	}
	return fmt.Sprintf("%.4g", *p)
}

// Write renders a summary as a terminal table ("text"), Markdown ("md"), CSV ("csv") or JSON.
func (s *Summary) Write(w io.Writer, format string) error {
	header := []string{"module", "calls", "computed", "cached", "fresh tokens", "dyn p50", "dyn p90", "dyn max",
		"err p50", "err p90", "err max", "err fresh", "err cached"}
	var rows [][]string
	for _, r := range s.Rows {
		rows = append(rows, []string{r.Module, fmt.Sprint(r.Calls), fmt.Sprint(r.Computed), fmt.Sprint(r.CachedSteps),
			fmt.Sprintf("%.1f", r.MeanFresh), cell(r.DynP50), cell(r.DynP90), cell(r.DynMax),
			cell(r.ErrP50), cell(r.ErrP90), cell(r.ErrMax), cell(r.ErrFreshMean), cell(r.ErrCachedMean)})
	}
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", " ")
		return enc.Encode(s)
	case "csv":
		fmt.Fprintln(w, strings.Join(header, ","))
		for _, r := range rows {
			fmt.Fprintln(w, strings.Join(r, ","))
		}
		return nil
	case "md":
		fmt.Fprintf(w, "Run %d (%s): %d calls, %.4g TFLOPs in the blocks, mean feature dynamics %s. Relative L2 change since the previous call (dyn) and error against a full computation (err, audited rows).\n\n", s.Run, s.Method, s.Steps, float64(s.TotalFLOPs)/1e12, cell(s.FeatureDynamics))
		fmt.Fprintln(w, "| "+strings.Join(header, " | ")+" |")
		fmt.Fprintln(w, "|"+strings.Repeat("---|", len(header)))
		for _, r := range rows {
			fmt.Fprintln(w, "| "+strings.Join(r, " | ")+" |")
		}
		return nil
	case "text", "":
		fmt.Fprintf(w, "run %d (%s): %d calls, %.4g TFLOPs in the blocks, mean feature dynamics %s (relative L1 change per call, skipped modules 0)\n",
			s.Run, s.Method, s.Steps, float64(s.TotalFLOPs)/1e12, cell(s.FeatureDynamics))
		t := tablewriter.NewWriter(w)
		t.Header(header)
		for _, r := range rows {
			if err := t.Append(r); err != nil {
				return err
			}
		}
		return t.Render()
	}
	return fmt.Errorf("format %q: want text, md, csv or json", format)
}
