package reports

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// group sorts the rows into groups by key, picks each row's baseline and computes its speedups.
func (d *Data) group(rows []*Row) {
	nones := map[Key][]*Row{}
	for _, r := range rows {
		if r.Method == BaselineMethod {
			nones[r.Key] = append(nones[r.Key], r)
		}
	}
	byKey := map[Key]*Group{}
	noBaseline := map[*Row]bool{}
	var stepsNotes = map[Key][]string{}
	for _, r := range rows {
		if r.Method == stepsMethod {
			key, note, ok := stepsKey(r, nones)
			r.Key = key
			if !ok {
				noBaseline[r] = true
			}
			if note != "" {
				stepsNotes[key] = append(stepsNotes[key], note)
			}
		}
		g := byKey[r.Key]
		if g == nil {
			g = &Group{Key: r.Key, Title: r.Key.Title()}
			byKey[r.Key] = g
			d.Groups = append(d.Groups, g)
		}
		g.Rows = append(g.Rows, r)
	}
	for _, g := range d.Groups {
		g.Notes = append(g.Notes, stepsNotes[g.Key]...)
		orderRows(g.Rows)
		g.measure(nones[g.Key], noBaseline)
	}
	uniqueTitles(d.Groups)
}

// stepsKey returns the key of the schedule a fewer-steps run shortens. The runner stores the
// reduced count as the run's steps, so the baseline is the none run of the same model, sampler,
// cfg and seed with more steps — when exactly one such step count exists; otherwise the run
// keeps its own key and (ok false) gets no baseline rather than a guessed one.
func stepsKey(r *Row, nones map[Key][]*Row) (key Key, note string, ok bool) {
	var c config
	_ = json.Unmarshal([]byte(r.Run.ConfigJSON), &c) // a bad config was already noted by fill
	if reduced, isNum := c.Params["steps"].(float64); isNum && int(reduced) != r.Key.Steps {
		return r.Key, "", true // the run's steps are the nominal schedule: its own key is the baseline's
	}
	var counts []int
	for k := range nones {
		same := k.Model == r.Key.Model && k.Weights == r.Key.Weights && k.Sampler == r.Key.Sampler &&
			k.CFGScale == r.Key.CFGScale && k.Seed == r.Key.Seed
		if same && k.Steps > r.Key.Steps && !slices.Contains(counts, k.Steps) {
			counts = append(counts, k.Steps)
		}
	}
	switch len(counts) {
	case 0:
		return r.Key, "", true
	case 1:
		k := r.Key
		k.Steps = counts[0]
		return k, "", true
	}
	sort.Ints(counts)
	strs := make([]string, len(counts))
	for i, n := range counts {
		strs[i] = fmt.Sprint(n)
	}
	return r.Key, fmt.Sprintf("%s: none runs with %s steps share its model, sampler, cfg and seed, so the schedule it shortens is ambiguous; its speedups are blank.",
		r.label(), strings.Join(strs, ", ")), false
}

// orderRows puts the baseline first, the fewer-steps runs next, then the other families in
// order of first appearance (the order of the experiment file), each in load order.
func orderRows(rows []*Row) {
	family := map[string]int{BaselineMethod: 0, stepsMethod: 1}
	for _, r := range rows {
		if _, ok := family[r.Method]; !ok {
			family[r.Method] = len(family)
		}
	}
	sort.SliceStable(rows, func(i, j int) bool { return family[rows[i].Method] < family[rows[j].Method] })
}

// measure picks each row's baseline among the group's none runs and computes the speedups;
// whatever is left blank gets a note.
func (g *Group) measure(nones []*Row, noBaseline map[*Row]bool) {
	if len(nones) == 0 {
		g.Notes = append(g.Notes, "No `none` run with this model, weights, sampler, steps, cfg and seed: the latency speedups are blank (–).")
		counted := false
		for _, r := range g.Rows {
			// The runner counts none's FLOPs on the reference schedule beside each run (run_flops),
			// a count, not an estimate, so the FLOPs speedup survives a missing none run.
			if !noBaseline[r] {
				r.FLOPsSpeedup = ratio(r.BaselineFLOPs, r.FLOPs)
				counted = counted || r.FLOPsSpeedup.Known
			}
		}
		if counted {
			g.Notes = append(g.Notes, "FLOPs speedups are over the FLOPs of method none that the runner counted on the reference schedule.")
		} else {
			g.Notes = append(g.Notes, "No FLOPs baseline either: the FLOPs speedups are blank (–).")
		}
	}
	multiple := map[string]bool{}
	foreign := map[string]bool{}
	for _, r := range g.Rows {
		if noBaseline[r] || len(nones) == 0 {
			continue
		}
		b, pool := pickBaseline(nones, r.Source)
		r.Baseline = b
		if pool > 1 && !multiple[b.Source] {
			multiple[b.Source] = true
			g.Notes = append(g.Notes, fmt.Sprintf("%d none runs of %s share this key; speedups use %s, the one over the most samples.",
				pool, filepath.Base(b.Source), b.label()))
		}
		if b.Source != r.Source && !foreign[r.Source] {
			foreign[r.Source] = true
			g.Notes = append(g.Notes, fmt.Sprintf("%s has no none run with this key: its rows are measured against %s.",
				filepath.Base(r.Source), b.label()))
		}
		r.FLOPsSpeedup = ratio(b.FLOPs, r.FLOPs)
		switch {
		case !r.Latency.Known || !b.Latency.Known:
		case r.Run.Device != b.Run.Device || r.Run.Backend != b.Run.Backend:
			g.Notes = append(g.Notes, fmt.Sprintf("%s ran on %s, its baseline on %s: the latency speedup is blank.",
				r.label(), describeDevice(r), describeDevice(b)))
		default:
			r.LatencySpeedup = ratio(b.Latency, r.Latency)
		}
	}
	from := map[string]bool{}
	for _, r := range g.Rows {
		if !r.Latency.Known {
			g.Notes = append(g.Notes, r.label()+" has no per-batch timings: its latency is blank.")
			continue
		}
		from[r.LatencyFrom] = true
	}
	if len(from) > 1 {
		g.Notes = append(g.Notes, "Latencies come from different measurements ("+strings.Join(sortedKeys(from), ", ")+"); compare them with care.")
	}
	var stage [2]struct {
		ms     float64
		images int
	}
	for _, r := range g.Rows {
		for i := range stage {
			stage[i].ms += r.StageMS[i]
			stage[i].images += r.StageImages[i]
		}
	}
	var parts []string
	for i, name := range []string{"latent decoding", "feature extraction"} {
		if stage[i].images > 0 && stage[i].ms > 0 {
			parts = append(parts, fmt.Sprintf("%s %.2f images/s", name, 1000*float64(stage[i].images)/stage[i].ms))
		}
	}
	if len(parts) > 0 {
		g.Notes = append(g.Notes, "Stages after sampling, over this table's runs (not in the latencies): "+strings.Join(parts, ", ")+".")
	}
}

// pickBaseline prefers the none runs of the row's own database (same machine, same
// conditions), then the one over the most samples, then the first loaded; pool is the number
// of candidates it chose among.
func pickBaseline(nones []*Row, source string) (best *Row, pool int) {
	cands := nones
	local := slices.DeleteFunc(slices.Clone(nones), func(n *Row) bool { return n.Source != source })
	if len(local) > 0 {
		cands = local
	}
	for _, n := range cands {
		if best == nil || n.Run.NumSamples > best.Run.NumSamples {
			best = n
		}
	}
	return best, len(cands)
}

func describeDevice(r *Row) string {
	dev, be := r.Run.Device, r.Run.Backend
	if dev == "" {
		dev = "an unrecorded device"
	}
	if be == "" {
		return dev
	}
	return dev + " (" + be + ")"
}

// uniqueTitles appends the weights hash to titles that would otherwise name two groups.
func uniqueTitles(groups []*Group) {
	count := map[string]int{}
	for _, g := range groups {
		count[g.Title]++
	}
	for _, g := range groups {
		if count[g.Title] > 1 {
			w := g.Key.Weights
			if len(w) > 12 {
				w = w[:12]
			}
			if w == "" {
				w = "unrecorded"
			}
			g.Title += ", weights " + w
		}
	}
}
