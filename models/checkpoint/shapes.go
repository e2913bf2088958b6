package checkpoint

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// CheckShapes reports every missing, misshapen or unexpected tensor of a state dict in one error:
// the first problem in full, then how many more and the next few. Shapes print as PyTorch prints
// them. ignore (may be nil) names keys that are neither expected nor unexpected (e.g. BatchNorm
// counters); model names what the file should hold.
func CheckShapes(path string, got map[string]*Tensor, want map[string][]int, model string, ignore func(key string) bool) error {
	var problems []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		t, ok := got[k]
		switch {
		case !ok || t == nil:
			problems = append(problems, fmt.Sprintf("missing tensor %q (want shape %s)", k, Shape(want[k])))
		case !slices.Equal(t.Shape, want[k]):
			problems = append(problems, fmt.Sprintf("tensor %q has shape %s, want %s", k, Shape(t.Shape), Shape(want[k])))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; ok || (ignore != nil && ignore(k)) {
			continue
		}
		shape := "?"
		if t := got[k]; t != nil {
			shape = Shape(t.Shape)
		}
		problems = append(problems, fmt.Sprintf("unexpected tensor %q (shape %s) for %s", k, shape, model))
	}
	if len(problems) == 0 {
		return nil
	}
	const shown = 5 // a wrong model can have hundreds of problems; the first few tell the story
	msg := problems[0]
	if rest := problems[1:]; len(rest) > 0 {
		list := strings.Join(rest[:min(len(rest), shown)], "; ")
		if len(rest) > shown {
			list += "; …"
		}
		msg += fmt.Sprintf(" (and %d more: %s)", len(rest), list)
	}
	return fmt.Errorf("%s: %s", path, msg)
}

// Shape prints a tensor shape the way PyTorch does: [64, 32], [] for a scalar.
func Shape(s []int) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// Ranks returns the shapes of the named tensors, each checked to exist with the given rank; what
// names the expected model in the error ("a DiT checkpoint"). Keys are checked in sorted order.
func Ranks(f *File, what string, ranks map[string]int) (map[string][]int, error) {
	keys := slices.Sorted(maps.Keys(ranks))
	out := make(map[string][]int, len(ranks))
	for _, k := range keys {
		t, ok := f.Tensors[k]
		if !ok {
			return nil, fmt.Errorf("%s: not %s: missing tensor %q", f.Path, what, k)
		}
		if len(t.Shape) != ranks[k] {
			return nil, fmt.Errorf("%s: tensor %q has shape %v, want rank %d", f.Path, k, t.Shape, ranks[k])
		}
		out[k] = t.Shape
	}
	return out, nil
}
