package experiments

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/methods"
)

// Point is one configuration of a method, as the harness runs it.
type Point struct {
	Entry  string            // the [methods.NAME] table it comes from
	Method string            // registered method name
	Params map[string]string // raw parameter values as given (defaults not filled in)
	Order  []string          // parameter names in file order, for labels
	Steps  string            // sampling steps in force (the fewer-steps baseline overrides sampling.steps)
	Paper  *Published        // the entry's published numbers (nil = none)
	// Calibration is the calibration the method gets (nil = none): the entry's, or the model's
	// for a method that reads one.
	Calibration *Calibration
}

// Label names the point for people: the entry and its parameters in file order.
func (p Point) Label() string {
	if len(p.Order) == 0 {
		return p.Entry
	}
	parts := make([]string, len(p.Order))
	for i, k := range p.Order {
		parts[i] = k + "=" + p.Params[k]
	}
	return p.Entry + " " + strings.Join(parts, " ")
}

// Points expands every method entry into its configurations: entries in file order, each the
// Cartesian product of its axes (the last axis varying fastest) with each explicit point.
func (e *Experiment) Points() []Point {
	var out []Point
	for _, m := range e.Methods {
		for _, p := range m.points(e.Sampling.Steps) {
			if p.Calibration == nil && ReadsCalibration(p.Method) {
				p.Calibration = e.Model.Calibration
			}
			out = append(out, p)
		}
	}
	return out
}

func (m MethodEntry) points(steps string) []Point {
	pts := m.Points
	if pts == nil {
		pts = []map[string]string{{}}
	}
	var out []Point
	for _, extra := range pts {
		combos := [][]string{{}}
		for _, ax := range m.Axes {
			var next [][]string
			for _, c := range combos {
				for _, v := range ax.Values {
					next = append(next, append(append([]string{}, c...), v))
				}
			}
			combos = next
		}
		for _, c := range combos {
			p := Point{Entry: m.Name, Method: m.Method, Params: map[string]string{}, Steps: steps, Paper: m.Paper, Calibration: m.Calibration}
			for i, ax := range m.Axes {
				p.Params[ax.Param] = c[i]
				p.Order = append(p.Order, ax.Param)
			}
			for _, k := range sortedKeys(extra) {
				p.Params[k] = extra[k]
				p.Order = append(p.Order, k)
			}
			if info, err := methods.Lookup(m.Method); err == nil && info.Steps != nil {
				if v, err := info.Parse(p.Params); err == nil {
					p.Steps = strconv.Itoa(info.Steps(v))
				}
			}
			out = append(out, p)
		}
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// checkSteps validates a respacing spec as the sampler will read it.
func checkSteps(spec string) error {
	_, err := diffusion.NewSchedule(1000, spec)
	return err
}

// readPublished reads an entry's paper = { fid = 3.04, ..., source = "..." }.
func readPublished(t *table, v any) *Published {
	m, isTable := v.(map[string]any)
	if !isTable {
		t.errf("paper", "want a table of published numbers ({ fid = 3.04, source = \"...\" }), got %s", typeName(v))
		return nil
	}
	p := &Published{Values: map[string]float64{}}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		switch x := m[k].(type) {
		case string:
			if k != "source" {
				t.errf("paper", "%s = %q: want a number", k, x)
				continue
			}
			p.Source = x
		case int64:
			p.Values[k] = float64(x)
		case float64:
			p.Values[k] = x
		default:
			t.errf("paper", "%s is %s, want a number (or a string for source)", k, typeName(x))
			continue
		}
		if k != "source" && !slices.Contains(publishedKeys, k) {
			t.errf("paper", "unknown published quantity %q (known: %s)", k, strings.Join(publishedKeys, ", "))
		}
	}
	if p.Source == "" {
		t.errf("paper", "give source = \"...\": where the numbers are published")
	}
	if len(p.Values) == 0 {
		t.errf("paper", "no published numbers")
	}
	return p
}

// readMethods reads every [methods.NAME] table, checks each parameter value against the
// method's declared parameters, and checks that no two points are the same configuration.
func (e *Experiment) readMethods(t *table) {
	if len(t.keys) == 0 {
		t.errf("", "no methods: add a [methods.NAME] table per method")
		return
	}
	seen := map[string]string{} // canonical point → where it was first defined
	for _, name := range t.keys {
		sub := t.sub(name)
		if sub == nil {
			continue
		}
		entry := MethodEntry{Name: name, Method: name, Line: sub.line}
		if s, ok := sub.str("method"); ok {
			entry.Method = s
		}
		info, err := methods.Lookup(entry.Method)
		if err != nil {
			key := ""
			if sub.has("method") {
				key = "method"
			}
			sub.errf(key, "unknown method %q (known: %s; the method is the table name unless method = \"...\" says otherwise)",
				entry.Method, strings.Join(methods.Names(), ", "))
			continue
		}
		if fam := e.Model.Family; fam != "" && !fitsFamily(info, fam) {
			key := ""
			if sub.has("method") {
				key = "method"
			}
			what := map[bool]string{true: "Stable Diffusion's UNet (model.family = \"unet\")", false: "the transformer stack of model.family " + fam}[fam == FamilyUNet]
			sub.errf(key, "method %s does not apply to %s; the methods for this model are %s", entry.Method, what, familyMethods(fam))
			continue
		}
		params := map[string]methods.Param{}
		var names []string
		for _, p := range info.Params {
			params[p.Name] = p
			names = append(names, p.Name)
		}
		known := "takes no parameters"
		if len(names) > 0 {
			known = "parameters: " + strings.Join(names, ", ")
		}
		ok := true
		for _, k := range sub.keys {
			if k == "method" || k == "points" || k == "paper" || k == "calibration" {
				continue
			}
			v, _ := sub.raw(k)
			p, isParam := params[k]
			if !isParam {
				sub.errf(k, "method %s has no parameter %q (%s)", entry.Method, k, known)
				ok = false
				continue
			}
			vals, good := gridValues(sub, k, p, info, v)
			ok = ok && good
			entry.Axes = append(entry.Axes, Axis{Param: k, Values: vals})
		}
		if v, has := sub.raw("points"); has {
			pts, good := explicitPoints(sub, params, info, entry.Axes, known, v)
			ok = ok && good
			entry.Points = pts
		}
		if sub.has("calibration") {
			if !ReadsCalibration(entry.Method) {
				sub.errf("calibration", "method %s reads no calibration (those that do: %s)", entry.Method, strings.Join(calibrationReaderNames(), ", "))
			} else {
				entry.Calibration = e.readCalibration(sub, e.Sampling.Steps)
			}
		}
		if v, has := sub.raw("paper"); has {
			entry.Paper = readPublished(sub, v)
			if n := len(entry.points(e.Sampling.Steps)); n != 1 && entry.Paper != nil {
				sub.errf("paper", "published numbers belong to one configuration, and this entry has %d", n)
			}
		}
		if !ok {
			continue
		}
		line := sub.line
		for _, p := range entry.points(e.Sampling.Steps) {
			vals, err := info.Parse(p.Params)
			if err != nil {
				sub.errf("", "point %s: %v", p.Label(), err)
				continue
			}
			cal := ""
			if entry.Calibration != nil {
				cal = entry.Calibration.Path
			}
			key, _ := json.Marshal(struct {
				M string
				V methods.Values
				S string
				C string
			}{p.Method, vals, p.Steps, cal})
			if first, dup := seen[string(key)]; dup {
				sub.errf("", "point %q is the same configuration as %s", p.Label(), first)
				continue
			}
			seen[string(key)] = fmt.Sprintf("%q (line %d)", p.Label(), line)
			e.checkBuild(sub, p)
		}
		e.Methods = append(e.Methods, entry)
	}
}

// checkBuild builds the method once for the model and steps it will run with, so that
// combinations the method rejects (a stage boundary past the last step, ...) show up now and
// not hours into a sweep. It needs the architecture, so it is skipped for weights with heads only.
func (e *Experiment) checkBuild(t *table, p Point) {
	if info, err := methods.Lookup(p.Method); err == nil && info.Steps != nil && p.Steps != e.Sampling.Steps {
		// The fewer-steps baseline must take fewer steps than the sampler it is compared with.
		base, errB := diffusion.NewSchedule(1000, e.Sampling.Steps)
		fewer, errF := diffusion.NewSchedule(1000, p.Steps)
		if errB == nil && errF == nil && fewer.Steps() >= base.Steps() {
			t.errf("", "point %s: %d steps is not fewer than sampling.steps (%d): the fewer-steps baseline must take fewer", p.Label(), fewer.Steps(), base.Steps())
		}
	}
	if e.Model.Family == FamilyUNet && p.Steps != e.Sampling.Steps {
		if err := checkLDMSteps(e.Sampling.Sampler, p.Steps); err != nil {
			t.errf("", "point %s: %v", p.Label(), err)
		}
	}
	c, ok := e.Model.Config()
	if !ok || p.Steps == "" {
		return
	}
	sched, err := diffusion.NewSchedule(1000, p.Steps)
	if err != nil {
		t.errf("", "point %s: steps %q: %v", p.Label(), p.Steps, err)
		return
	}
	rows := 1
	if e.Sampling.CFG > 1 {
		rows = 2
	}
	env := methods.Env{Layout: c.Layout(), Steps: sched.Steps(), Rows: rows, Samples: []int{0}}
	if _, _, err := methods.New(p.Method, p.Params, env); err != nil {
		t.errf("", "point %s: %v", p.Label(), err)
	}
}

// gridValues reads one parameter of a method entry: a scalar (one value) or a list of values
// (a grid axis). Every value is checked against the parameter's type and range.
func gridValues(t *table, k string, p methods.Param, info *methods.Info, v any) ([]string, bool) {
	list, isList := v.([]any)
	if !isList {
		s, ok := paramValue(t, k, "", p, info, v)
		return []string{s}, ok
	}
	if len(list) == 0 {
		t.errf(k, "bad grid: empty list (give at least one value)")
		return nil, false
	}
	ok := true
	var out []string
	seen := map[string]bool{}
	for i, x := range list {
		s, good := paramValue(t, k, fmt.Sprintf("element %d: ", i), p, info, x)
		if !good {
			ok = false
			continue
		}
		if seen[s] {
			t.errf(k, "bad grid: element %d repeats the value %s", i, s)
			ok = false
			continue
		}
		seen[s] = true
		out = append(out, s)
	}
	return out, ok
}

// paramValue converts one TOML value of parameter p (found at key k) into the string
// methods.Info.Parse takes, checking its type against the parameter's kind and its range
// through the method itself.
func paramValue(t *table, k, where string, p methods.Param, info *methods.Info, v any) (string, bool) {
	var s string
	switch x := v.(type) {
	case int64:
		if p.Kind == methods.Enum {
			t.errf(k, "%swant one of %s (a string), got an integer", where, strings.Join(p.Choices, ", "))
			return "", false
		}
		s = strconv.FormatInt(x, 10)
	case float64:
		if p.Kind != methods.Float {
			want := "an integer"
			if p.Kind == methods.Enum {
				want = "one of " + strings.Join(p.Choices, ", ")
			}
			t.errf(k, "%swant %s, got the float %v", where, want, x)
			return "", false
		}
		s = strconv.FormatFloat(x, 'g', -1, 64)
	case string:
		if p.Kind != methods.Enum {
			t.errf(k, "%swant a number, got the string %q", where, x)
			return "", false
		}
		s = x
	default:
		what := "a number"
		if p.Kind == methods.Enum {
			what = "one of " + strings.Join(p.Choices, ", ")
		}
		t.errf(k, "%swant %s or a list of them, got %s", where, what, typeName(v))
		return "", false
	}
	if _, err := info.Parse(map[string]string{p.Name: s}); err != nil {
		t.errf(k, "%sbad value: %v", where, err)
		return "", false
	}
	return s, true
}

// explicitPoints reads `points = [{...}, ...]`: parameter sets combined with the grid.
func explicitPoints(t *table, params map[string]methods.Param, info *methods.Info, axes []Axis, known string, v any) ([]map[string]string, bool) {
	var list []map[string]any
	switch x := v.(type) {
	case []map[string]any:
		list = x
	case []any:
		for i, el := range x {
			m, isTable := el.(map[string]any)
			if !isTable {
				t.errf("points", "element %d is %s, want a table of parameters ({ N = 3 })", i, typeName(el))
				return nil, false
			}
			list = append(list, m)
		}
	default:
		t.errf("points", "want a list of parameter tables ([{ N = 3 }, { N = 5 }]), got %s", typeName(v))
		return nil, false
	}
	if len(list) == 0 {
		t.errf("points", "empty list: give at least one point, or remove points")
		return nil, false
	}
	onAxis := map[string]bool{}
	for _, a := range axes {
		onAxis[a.Param] = true
	}
	ok := true
	var out []map[string]string
	for i, m := range list {
		pt := map[string]string{}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p, isParam := params[k]
			where := fmt.Sprintf("point %d: ", i)
			switch {
			case !isParam:
				t.errf("points", "%smethod %s has no parameter %q (%s)", where, info.Name, k, known)
				ok = false
				continue
			case onAxis[k]:
				t.errf("points", "%s%s is also given outside points; give it in one place", where, k)
				ok = false
				continue
			}
			if _, isList := m[k].([]any); isList {
				t.errf("points", "%s%s: want one value per point, got a list (lists belong outside points, as grid axes)", where, k)
				ok = false
				continue
			}
			s, good := paramValue(t, "points", where+k+": ", p, info, m[k])
			if !good {
				ok = false
				continue
			}
			pt[k] = s
		}
		out = append(out, pt)
	}
	return out, ok
}
