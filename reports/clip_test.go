package reports

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/harness/store"
)

// clipTable stores a CLIP score (and its per-pair clamped variant) with the given extractor on
// each run of a two-run group and returns the group's table.
func clipTable(t *testing.T, extractors ...string) Table {
	t.Helper()
	path := writeDB(t, filepath.Join(t.TempDir(), "clip.db"),
		fixtureRun{method: "none", steps: 20, cfg: 4.5, imageMS: 1000, metrics: map[string]float64{"fid": 30}},
		fixtureRun{method: "toca", params: map[string]any{"N": 3}, steps: 20, cfg: 4.5, imageMS: 500, metrics: map[string]float64{"fid": 31}})
	db, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	runs, err := db.Runs()
	if err != nil || len(runs) != 2 {
		t.Fatalf("runs %v, %v", runs, err)
	}
	for i, ex := range extractors {
		ms := []store.Metric{
			{Name: store.MetricCLIPScore, Value: 27 - float64(i)/4, N: 4, Reference: "samples.prompt", Extractor: ex, Resize: "PIL-bicubic resize of the short side to 224"},
			{Name: store.MetricCLIPScorePairsClamped, Value: 27.5, N: 4, Reference: "samples.prompt", Extractor: ex},
		}
		if err := db.PutMetrics(runs[i].ID, ms); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	d, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Groups) != 1 {
		t.Fatalf("%d groups, want 1", len(d.Groups))
	}
	return NewTable(d.Groups[0])
}

func columnNames(t Table) []string {
	var out []string
	for _, c := range t.Columns {
		out = append(out, c.Name)
	}
	return out
}

func TestCLIPColumnNamesTheModel(t *testing.T) {
	l14 := store.CLIPExtractor("ViT-L/14", "ViT-L-14.safetensors sha256:0123456789ab", "uint8")
	tab := clipTable(t, l14, l14)
	names := columnNames(tab)
	i := slices.Index(names, "CLIP (ViT-L/14)")
	if i < 0 || slices.Contains(names, store.MetricCLIPScorePairsClamped) || slices.Contains(names, "CLIP") {
		t.Fatalf("columns %q: want one CLIP (ViT-L/14) column and no per-pair clamped one", names)
	}
	if tab.Rows[0][i].Value != known(27) || tab.Rows[1][i].Value != known(26.75) {
		t.Errorf("CLIP cells %v, %v", tab.Rows[0][i], tab.Rows[1][i])
	}
	if !hasNote(tab.Notes, l14) || !hasNote(tab.Notes, "same model and preprocessing") || !hasNote(tab.Notes, "resize of the short side to 224") {
		t.Errorf("notes %q: want the CLIP id, its preprocessing and the comparability warning", tab.Notes)
	}
	var md strings.Builder
	if err := tab.Markdown(&md); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "CLIP (ViT-L/14) ↑") {
		t.Errorf("markdown header lacks the model:\n%s", md.String())
	}

	rescaled := store.CLIPExtractor("ViT-L/14", "ViT-L-14.safetensors sha256:0123456789ab", "unit-rescaled")
	if names := columnNames(clipTable(t, rescaled, rescaled)); !slices.Contains(names, "CLIP (ViT-L/14, unit-rescaled)") {
		t.Errorf("columns %q: want the value range beside the model", names)
	}
}

func TestCLIPColumnMixedModels(t *testing.T) {
	l14 := store.CLIPExtractor("ViT-L/14", "ViT-L-14.safetensors sha256:0123456789ab", "uint8")
	b32 := store.CLIPExtractor("ViT-B/32", "ViT-B-32.safetensors sha256:ba9876543210", "uint8")
	tab := clipTable(t, l14, b32)
	if names := columnNames(tab); !slices.Contains(names, "CLIP") {
		t.Errorf("columns %q: mixed models must not be headed by one of them", names)
	}
	if !hasNote(tab.Notes, "different CLIP models") || !hasNote(tab.Notes, b32) || !hasNote(tab.Notes, "run 2 of clip.db") {
		t.Errorf("notes %q: want the mixed-model warning naming each model and run", tab.Notes)
	}
	// Scores without a CLIP id (written before ids were recorded) keep the plain header, no note.
	tab = clipTable(t, "inception@1a2b", "inception@1a2b")
	if names := columnNames(tab); !slices.Contains(names, "CLIP") || hasNote(tab.Notes, "CLIP:") {
		t.Errorf("columns %q, notes %q", names, tab.Notes)
	}
}
