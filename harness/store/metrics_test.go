package store

import (
	"math"
	"path/filepath"
	"testing"
)

func TestMetrics(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.SchemaVersion() < 2 {
		t.Fatalf("schema v%d has no metrics table (v2)", db.SchemaVersion())
	}
	r, _, err := db.EnsureRun(Run{ConfigJSON: `{"a":1}`})
	if err != nil {
		t.Fatal(err)
	}
	ms := []Metric{{Name: "fid", Value: 3.5, N: 10, Reference: "ref.npz", Extractor: "inc@1"}, {Name: "is", Value: 2, N: 10}}
	if err := db.PutMetrics(r.ID, ms); err != nil {
		t.Fatal(err)
	}
	ms[0].Value = 3.25 // recomputing replaces
	if err := db.PutMetrics(r.ID, ms[:1]); err != nil {
		t.Fatal(err)
	}
	got, err := db.Metrics(r.ID)
	if err != nil || len(got) != 2 || got[0].Name != "fid" || got[0].Value != 3.25 {
		t.Fatalf("metrics %+v, %v", got, err)
	}
	if err := db.PutMetrics(r.ID, []Metric{{Name: "fid", Value: math.NaN()}}); err == nil {
		t.Error("NaN metric: want an error")
	}
	if err := db.PutMetrics(999, ms); err == nil {
		t.Error("unknown run: want an error")
	}
}

func TestStepStatsRoundTrip(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r, _, _ := db.EnsureRun(Run{ConfigJSON: `{"b":1}`})
	one, k, fl := 0, 17, int64(99)
	v := func(x float64) *float64 { return &x }
	rows := []StepStat{
		{Call: 0, Step: 9, Timestep: 999, Block: 0, Module: "attn", Action: "full", FreshTokens: &k, DynRelL2: v(0.5), DynTok: &TokenStats{1, 2, 3, 4, 5}},
		{Sample: &one, Call: 1, Step: 8, Timestep: 900, Block: -1, Module: "state", FLOPs: &fl, ErrRelL1: v(0.1), ErrTok: &TokenStats{6, 7, 8, 9, 10},
			ErrFreshRelL2: v(0.2), ErrCachedRelL2: v(math.NaN()), Tokens: "[[1,2]]"},
	}
	if err := db.CommitBatch(r.ID, Batch{Index: 0, FirstSample: 0, NumSamples: 1, StepStats: rows}); err != nil {
		t.Fatal(err)
	}
	got, err := db.StepStats(r.ID)
	if err != nil || len(got) != 2 {
		t.Fatalf("%v %v", got, err)
	}
	a, b := got[0], got[1]
	if a.Sample != nil || *a.FreshTokens != 17 || *a.DynRelL2 != 0.5 || a.DynTok.P99 != 5 || a.ErrRelL2 != nil || a.Module != "attn" {
		t.Errorf("batch row %+v", a)
	}
	if *b.Sample != 0 || *b.FLOPs != 99 || b.ErrTok.Mean != 6 || *b.ErrFreshRelL2 != 0.2 || b.ErrCachedRelL2 != nil || b.Tokens != "[[1,2]]" || b.Block != -1 {
		t.Errorf("sample row %+v", b)
	}
}

func TestCLIPExtractor(t *testing.T) {
	id := CLIPExtractor("ViT-L/14", "my; clip.pt sha256:0123456789ab", "uint8")
	if id != "CLIP ViT-L/14; my; clip.pt sha256:0123456789ab; uint8" {
		t.Errorf("id %q", id)
	}
	if m, vr, ok := CLIPModel(id); !ok || m != "ViT-L/14" || vr != "uint8" {
		t.Errorf("CLIPModel(%q) = %q, %q, %v", id, m, vr, ok)
	}
	for _, other := range []string{"", "inception@1a2b", "CLIP ViT-L/14", "CLIP ; w; uint8", "CLIP ViT-L/14; w; "} {
		if m, vr, ok := CLIPModel(other); ok {
			t.Errorf("CLIPModel(%q) = %q, %q, true; want not a CLIP id", other, m, vr)
		}
	}

	// Rescoring with the same model and range replaces; another range is another row.
	db, err := Open(filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r, _, err := db.EnsureRun(Run{ConfigJSON: `{"c":1}`})
	if err != nil {
		t.Fatal(err)
	}
	put := func(v float64, vr string) {
		t.Helper()
		if err := db.PutMetrics(r.ID, []Metric{{Name: MetricCLIPScore, Value: v, N: 3, Reference: "samples.prompt",
			Extractor: CLIPExtractor("ViT-L/14", "w.pt sha256:0123456789ab", vr)}}); err != nil {
			t.Fatal(err)
		}
	}
	put(27, "uint8")
	put(27.5, "uint8")
	put(16, "unit-rescaled")
	got, err := db.Metrics(r.ID)
	if err != nil || len(got) != 2 || got[0].Value != 27.5 || got[1].Value != 16 {
		t.Errorf("metrics %+v, %v; want 27.5 (uint8, replaced) and 16 (unit-rescaled)", got, err)
	}
}
