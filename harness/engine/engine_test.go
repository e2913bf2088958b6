package engine

import (
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	t.Setenv("GOMLX_BACKEND", "")
	if got := Config(""); got != DefaultConfig {
		t.Errorf("Config(\"\") = %q, want %q", got, DefaultConfig)
	}
	b, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := New(DefaultConfig)
	if b != b2 {
		t.Error("the same configuration must share one backend")
	}
	if !strings.Contains(Describe(b), b.Name()) {
		t.Errorf("Describe = %q", Describe(b))
	}
	t.Setenv("GOMLX_BACKEND", "go:ops_sequential")
	if Config("") != "go:ops_sequential" || Config("x") != "x" {
		t.Error("explicit > $GOMLX_BACKEND > default")
	}
	for _, c := range []struct{ cfg, want string }{
		{"xla:cuda", "-tags xla"},
		{"tpu", "not compiled in"},
	} {
		if _, err := New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%q): %v, want an error mentioning %q", c.cfg, err, c.want)
		}
	}
}
