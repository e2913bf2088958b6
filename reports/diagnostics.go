package reports

import (
	"fmt"

	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/reports/diag"
)

// claimStepError and claimDynamics head the step_stats figures in report.md.
const (
	claimStepError = "Cache error per step"
	claimDynamics  = "Feature dynamics per step"
)

// AddDiagnostics is the Builder of the step_stats figures of a group: the deviation of every
// run from its uncached trajectory on one axes, and per cached run the step × block heatmap of
// its MLP cache error (or, without audited rows, of its MLP dynamics). Runs recorded with
// --record off contribute nothing; the section notes it.
func AddDiagnostics(s *Section) error {
	all := map[string][]store.StepStat{}
	var labels []string
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
		s.Figures = append(s.Figures, Figure{Name: fmt.Sprintf("%s-diag-%d", s.ID, i), Title: title, Subtitle: r.Setting, Claim: claimStepError, Custom: p})
	}
	if without > 0 {
		s.Notes = append(s.Notes, fmt.Sprintf("%d run(s) have no step statistics (sampled with --record off)", without))
	}
	if len(labels) > 0 {
		if p, err := diag.FeatureDynamics(all, labels); err == nil {
			s.Figures = append(s.Figures, Figure{Name: s.ID + "-diag-dynamics", Title: "feature dynamics per call", Subtitle: s.Title, Claim: claimDynamics, Custom: p})
		}
		if p, err := diag.ErrorAccumulation(all, labels); err == nil {
			s.Figures = append(s.Figures, Figure{Name: s.ID + "-diag-accumulation", Title: "deviation from the uncached trajectory", Subtitle: s.Title, Claim: claimStepError, Custom: p})
		} else {
			s.Notes = append(s.Notes, "no error-accumulation figure: "+err.Error())
		}
	}
	return nil
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
