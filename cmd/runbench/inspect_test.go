package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/reports/diag"
)

// Record a ToCa run (full recording, one audited image), inspect it in every format, and draw
// its diagnostics: the PNGs decode, the SVGs parse.
func TestInspectCLI(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "runs.db")
	w := golden.Path("dit/weights.safetensors")
	mustRun(t, "sample", "--weights", w, "--heads", "4", "--sampler", "ddim", "--steps", "12", "--num", "2", "--batch", "2",
		"--method", "toca", "--param", "N=3", "--param", "ratio=0.3", "--param", "scheduler=constant",
		"--record", "full", "--audit-samples", "1", "--out-dir", filepath.Join(dir, "s"), "--db", db)
	mustRun(t, "sample", "--weights", w, "--heads", "4", "--sampler", "ddim", "--steps", "12", "--num", "2", "--batch", "2",
		"--method", "fora", "--record", "light", "--audit-samples", "1", "--out-dir", filepath.Join(dir, "s"), "--db", db)
	var sum diag.Summary
	out := mustRun(t, "inspect", "1", "--db", db, "--format", "json")
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if sum.Method != "toca" || sum.Steps != 12 || len(sum.Rows) != 4 || sum.Rows[1].Module != "mlp" || sum.Rows[1].ErrFreshMean == nil {
		t.Errorf("summary %+v", sum)
	}
	for _, f := range []string{"text", "md", "csv"} {
		if out := mustRun(t, "inspect", "1", "--db", db, "--format", f); !strings.Contains(out, "mlp") {
			t.Errorf("format %s: %s", f, out)
		}
	}
	plots := filepath.Join(dir, "plots")
	mustRun(t, "inspect", "1", "2", "--db", db, "--plots", plots, "--grid", "4")
	for _, name := range []string{"run1_dyn_attn", "run1_err_mlp", "run2_err_attn", "run1_token_refresh", "error_accumulation"} {
		data, err := os.ReadFile(filepath.Join(plots, name+".png"))
		if err != nil {
			t.Errorf("%s.png: %v", name, err)
			continue
		}
		img, err := png.Decode(bytes.NewReader(data))
		if err != nil || img.Bounds().Dx() < 100 {
			t.Errorf("%s.png does not decode to an image: %v", name, err)
		}
		svg, err := os.ReadFile(filepath.Join(plots, name+".svg"))
		if err != nil {
			t.Fatal(err)
		}
		dec := xml.NewDecoder(bytes.NewReader(svg))
		for {
			if _, err := dec.Token(); err == io.EOF {
				break
			} else if err != nil {
				t.Errorf("%s.svg: %v", name, err)
				break
			}
		}
	}
	// The report embeds the diagnostics of the recorded runs.
	rep := filepath.Join(dir, "report")
	mustRun(t, "report", db, "--out", rep)
	md, err := os.ReadFile(filepath.Join(rep, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"MLP cache error", "deviation from the uncached trajectory"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md has no %q figure", want)
		}
	}
	for _, bad := range [][]string{{"inspect", "9", "--db", db}, {"inspect", "1"}, {"inspect", "zz", "--db", db}, {"inspect", "1", "--db", db, "--format", "xml"}} {
		if _, err := run(t, bad...); err == nil {
			t.Errorf("runbench %v: want an error", bad)
		}
	}
}
