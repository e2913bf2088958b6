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
