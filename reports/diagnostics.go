package reports

import (
	"fmt"
	"strings"

	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/reports/diag"
)

// claimStepError and claimDynamics head the step_stats figures in report.md.
const (
	claimStepError = "Cache error per step"
	claimDynamics  = "Feature dynamics per step"
)

// AddDiagnostics is the Builder of the step_stats figures of a group: per method a panel of its
// runs' MLP cache error per call and one of their deviation from the uncached trajectory, per
// cached run the step × block heatmap of its MLP cache error (or, without audited rows, of its
// MLP dynamics), and per method a panel of the feature dynamics. Runs recorded with --record off
// contribute nothing; the section notes it.
func AddDiagnostics(s *Section) error {
	all := map[string][]store.StepStat{}
	var labels []string
	var heatmaps []Figure
	without := 0
	short := shortLabels(s.Group.Rows)
	for i, r := range s.Group.Rows {
		db, err := store.OpenReadOnly(r.Source)
		if err != nil {
			return err
		}
		stats, err := db.StepStats(r.Run.ID)
		db.Close()
		if err != nil {
			return err
		}
		if len(stats) == 0 {
			without++
			continue
		}
		label := short[r]
		all[label], labels = stats, append(labels, label)
		if r.Method == "none" {
			continue
		}
		title := r.Method + ": MLP cache error per step"
		p, err := diag.Heatmap(stats, "err", "mlp", title)
		if err != nil {
			title = r.Method + ": MLP dynamics per step"
			if p, err = diag.Heatmap(stats, "dyn", "mlp", title); err != nil {
				continue
			}
		}
		heatmaps = append(heatmaps, Figure{Name: fmt.Sprintf("%s-diag-%d", s.ID, i), Title: title, Subtitle: r.Setting, Claim: claimStepError, Custom: p})
	}
	if without > 0 {
		s.Notes = append(s.Notes, fmt.Sprintf("%d run(s) have no step statistics (sampled with --record off)", without))
	}
	if len(labels) == 0 {
		return nil
	}
	// One claim's figures are adjacent (report.md heads each run of them): the per-call
	// summaries first, then the per-run detail.
	if ps, err := diag.MLPCacheError(all, labels); err == nil {
		s.Figures = append(s.Figures, Figure{Name: s.ID + "-diag-mlp-error", Title: mlpErrorTitle, Subtitle: s.Title, Claim: claimStepError, Panels: ps})
		if omitted := withoutNone(ps.Omitted); len(omitted) > 0 {
			s.Notes = append(s.Notes, "MLP cache error of "+strings.Join(omitted, "; ")+": no audited MLP rows (the method caches elsewhere, or the run was recorded without --audit-samples)")
		}
	} else {
		s.Notes = append(s.Notes, "no MLP cache-error figure: "+err.Error())
	}
	if ps, err := diag.ErrorAccumulation(all, labels); err == nil {
		s.Figures = append(s.Figures, Figure{Name: s.ID + "-diag-accumulation", Title: "deviation from the uncached trajectory per call", Subtitle: s.Title, Claim: claimStepError, Panels: ps})
	} else {
		s.Notes = append(s.Notes, "no error-accumulation figure: "+err.Error())
	}
	s.Figures = append(s.Figures, heatmaps...)
	if ps, err := diag.FeatureDynamics(all, labels); err == nil {
		s.Figures = append(s.Figures, Figure{Name: s.ID + "-diag-dynamics", Title: "feature dynamics per call", Subtitle: s.Title, Claim: claimDynamics, Panels: ps})
	}
	return nil
}

// mlpErrorTitle says how a call is summarised, since the caption repeats the title.
const mlpErrorTitle = "MLP cache error per call (mean over the blocks served from the cache; 0 at a fully computed call)"

// withoutNone drops method none's labels: it has no cache, so no cache error, by design.
func withoutNone(labels []string) []string {
	var out []string
	for _, l := range labels {
		if m, _, _ := strings.Cut(l, " "); m != "none" {
			out = append(out, l)
		}
	}
	return out
}

// shortLabels names each run by its method and the parameters its method's runs differ in, as
// the trade-off figures' legends do (the rest is in the table).
func shortLabels(rows []*Row) map[*Row]string {
	byMethod := map[string]*Series{}
	var order []string
	for _, r := range rows {
		if byMethod[r.Method] == nil {
			byMethod[r.Method] = &Series{Method: r.Method}
			order = append(order, r.Method)
		}
		byMethod[r.Method].Points = append(byMethod[r.Method].Points, Point{Row: r})
	}
	out := map[*Row]string{}
	for _, m := range order {
		for _, set := range settingsOf(*byMethod[m]) {
			for _, pt := range set.points {
				out[pt.Row] = set.label
			}
		}
	}
	return out
}
