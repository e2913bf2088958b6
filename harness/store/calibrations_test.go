package store

import (
	"path/filepath"
	"strings"
	"testing"
)

// A calibration is stored once per key (recalibrating replaces it), read back by its key, and
// merged into another file unless that file holds a different one for the same key.
func TestCalibrations(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(filepath.Join(dir, "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	key := CalibrationKey{Model: "DiT depth 4", WeightsHash: "abc", Sampler: "ddim", Steps: "20", CFGScale: 2}
	c := Calibration{CalibrationKey: key, NumSteps: 20, NumSamples: 8, Seed: 3, JSON: `{"steps":20}`, GitRev: "rev"}
	if err := db.PutCalibration(c); err != nil {
		t.Fatal(err)
	}
	c.JSON = `{"steps":20,"x":1}`
	if err := db.PutCalibration(c); err != nil {
		t.Fatal(err)
	}
	if err := db.PutCalibration(Calibration{CalibrationKey: key, NumSteps: 20, NumSamples: 8, JSON: "{"}); err == nil {
		t.Fatal("invalid JSON stored")
	}
	got, err := db.Calibration(key)
	if err != nil || got == nil || got.JSON != c.JSON || got.NumSamples != 8 || got.Seed != 3 || got.GitRev != "rev" || got.CreatedAt == "" {
		t.Fatalf("read back %+v, %v", got, err)
	}
	other := key
	other.Steps = "50"
	if got, err := db.Calibration(other); err != nil || got != nil {
		t.Fatalf("calibration of another step count: %+v, %v", got, err)
	}
	all, err := db.Calibrations()
	if err != nil || len(all) != 1 {
		t.Fatalf("%d calibrations, %v (recalibrating must replace)", len(all), err)
	}

	dst, err := Open(filepath.Join(dir, "b.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	for range 2 { // merging twice changes nothing
		if _, err := dst.Merge(db.Path()); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := dst.Calibration(key); err != nil || got == nil || got.JSON != c.JSON {
		t.Fatalf("merged calibration %+v, %v", got, err)
	}
	c.JSON = `{"steps":20,"x":2}`
	if err := dst.PutCalibration(c); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.Merge(db.Path()); err == nil || !strings.Contains(err.Error(), "calibration of DiT depth 4") {
		t.Fatalf("merge of a contradicting calibration: %v", err)
	}
}
