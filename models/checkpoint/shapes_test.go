package checkpoint

import (
	"strings"
	"testing"
)

func TestCheckShapes(t *testing.T) {
	want := map[string][]int{"a.weight": {64, 32}, "a.bias": {64}, "b": {}}
	ok := map[string]*Tensor{"a.weight": {Shape: []int{64, 32}}, "a.bias": {Shape: []int{64}}, "b": {Shape: []int{}}}
	if err := CheckShapes("m.safetensors", ok, want, "model M", nil); err != nil {
		t.Fatalf("matching state dict: %v", err)
	}
	many := map[string]*Tensor{"a.weight": {Shape: []int{32, 64}}, "b": {Shape: []int{}}, "bn.num_batches_tracked": {Shape: []int{}}}
	for i := range 7 {
		many[string(rune('p'+i))] = &Tensor{Shape: []int{i}}
	}
	for _, c := range []struct {
		got    map[string]*Tensor
		ignore func(string) bool
		want   []string
	}{
		{map[string]*Tensor{"a.weight": {Shape: []int{64, 32}}, "b": {Shape: []int{}}}, nil,
			[]string{`m.safetensors: missing tensor "a.bias" (want shape [64])`}},
		{map[string]*Tensor{"a.weight": {Shape: []int{64, 32}}, "a.bias": {Shape: []int{64}}, "b": {Shape: []int{1}}, "c": {Shape: []int{2, 2}}}, nil,
			[]string{`tensor "b" has shape [1], want []`, `(and 1 more: unexpected tensor "c" (shape [2, 2]) for model M)`}},
		{many, func(k string) bool { return strings.HasSuffix(k, ".num_batches_tracked") },
			[]string{`missing tensor "a.bias"`, "(and 8 more: ", `tensor "a.weight" has shape [32, 64], want [64, 32]`, "; …)"}},
	} {
		err := CheckShapes("m.safetensors", c.got, want, "model M", c.ignore)
		if err == nil {
			t.Fatalf("want an error for %v", c.got)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not contain %q", err, w)
			}
		}
		if strings.Contains(err.Error(), "num_batches_tracked") {
			t.Errorf("ignored key reported: %v", err)
		}
	}
}
