package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cachebench/cachebench/harness/store"
)

// startChild starts runbench (this test binary, see TestMain) with args.
func startChild(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	a, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"="+string(a))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out
}

// committed counts the batches committed in a database (0 while it does not exist yet).
func committed(path string) int {
	if _, err := os.Stat(path); err != nil {
		return 0
	}
	db, err := store.OpenReadOnly(path)
	if err != nil {
		return 0
	}
	defer db.Close()
	var n int
	if err := db.SQL().QueryRow("SELECT count(*) FROM batches").Scan(&n); err != nil {
		return 0
	}
	return n
}

// waitBatches polls until at least n batches are committed or the child exits.
func waitBatches(t *testing.T, path string, n int, done <-chan error) bool {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return false
		default:
		}
		if committed(path) >= n {
			return true
		}
		time.Sleep(3 * time.Millisecond)
	}
	t.Fatalf("%s: %d batches not committed within 60 s", path, n)
	return false
}

// consistent checks the invariants a kill must not break: every sample belongs to a committed
// batch, every committed batch has all its samples, and nothing is duplicated.
func consistent(t *testing.T, path string) {
	t.Helper()
	db, err := store.OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var orphans, short, dup int
	q := db.SQL()
	_ = q.QueryRow(`SELECT count(*) FROM samples s WHERE NOT EXISTS (SELECT 1 FROM batches b WHERE b.run_id = s.run_id
		AND s.sample_index >= b.first_sample AND s.sample_index < b.first_sample + b.num_samples)`).Scan(&orphans)
	_ = q.QueryRow(`SELECT count(*) FROM batches b WHERE b.num_samples != (SELECT count(*) FROM samples s WHERE s.run_id = b.run_id
		AND s.sample_index >= b.first_sample AND s.sample_index < b.first_sample + b.num_samples)`).Scan(&short)
	_ = q.QueryRow(`SELECT count(*) FROM (SELECT config_hash FROM runs GROUP BY config_hash HAVING count(*) > 1)`).Scan(&dup)
	if orphans+short+dup > 0 {
		t.Fatalf("%s after a kill: %d samples without a batch, %d incomplete batches, %d duplicated runs", path, orphans, short, dup)
	}
}

// batchRows lists every run's committed batch ranges (the partition, not only the coverage).
func batchRows(t *testing.T, path string) string {
	t.Helper()
	db, err := store.OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.SQL().Query(`SELECT r.config_hash, b.first_sample, b.num_samples FROM batches b JOIN runs r ON r.id = b.run_id
		ORDER BY r.config_hash, b.first_sample`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var h string
		var first, n int
		if err := rows.Scan(&h, &first, &n); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s [%d, %d)\n", h[:12], first, first+n)
	}
	return b.String()
}

// A sweep SIGKILLed after 3, 6 and 9 committed batches (mid-configuration and at
// configuration boundaries), then rerun to completion, holds exactly the rows of an
// uninterrupted run: same runs, same samples (index, label, output hash), same batches, no
// duplicates. Before that, a SIGINT finishes the batch in flight, commits it and exits with a
// resume hint.
func TestKillResume(t *testing.T) {
	if testing.Short() {
		t.Skip("starts runbench processes and kills them (~10 s); skipped with -short")
	}
	const total = 12
	dir := t.TempDir()
	exp := tinyExperiment(t, dir, 8, 20, 2) // 3 configurations × 4 batches
	ref := filepath.Join(dir, "ref.db")
	mustRunbench(t, "run", exp, "--db", ref, "--out", filepath.Join(dir, "ref"))
	want := resultRowsOf(t, ref)
	if len(want) < 3*(1+8) {
		t.Fatalf("reference run has %d result rows", len(want))
	}

	killed := filepath.Join(dir, "killed.db")
	args := []string{"run", exp, "--db", killed, "--out", filepath.Join(dir, "killed")}
	// SIGINT: the child finishes its batch, commits it, exits non-zero with a resume hint.
	cmd, out := startChild(t, args...)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if !waitBatches(t, killed, 1, done) {
		t.Fatalf("run finished before its first batch was seen:\n%s", out)
	}
	_ = cmd.Process.Signal(os.Interrupt)
	err := <-done
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(out.String(), "resume with: runbench run") {
		t.Errorf("SIGINT: exit %v, output:\n%s", err, out)
	}
	if n := committed(killed); n < 1 || n >= total {
		t.Errorf("SIGINT: %d of %d batches committed", n, total)
	} else {
		t.Logf("SIGINT: exited with %d of %d batches committed", n, total)
	}
	consistent(t, killed)

	kills := 0
	for _, at := range []int{3, 6, 9} {
		cmd, out := startChild(t, args...)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		if !waitBatches(t, killed, at, done) {
			t.Logf("run finished before %d batches were committed:\n%s", at, out)
			continue
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-done
		kills++
		t.Logf("SIGKILL with %d of %d batches committed", committed(killed), total)
		consistent(t, killed)
	}
	if kills < 2 {
		t.Fatalf("only %d of 3 kills landed before the run finished", kills)
	}
	if n := committed(killed); n >= total {
		t.Logf("the last kill came after every batch was committed")
	}
	mustRunbench(t, args...)
	consistent(t, killed)
	if d := diffRows(resultRowsOf(t, killed), want); d != "" {
		t.Fatalf("killed and resumed run differs from the uninterrupted one:\n%s", d)
	}
	if got, w := batchRows(t, killed), batchRows(t, ref); got != w {
		t.Errorf("batches differ:\n%s\nwant\n%s", got, w)
	}
}
