package reports

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, rewriting it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./reports -run %s -update to create it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (rerun with -update if the change is intended)\n--- got ---\n%s\n--- want ---\n%s", name, got, want)
	}
}

func loadFixture(t *testing.T, opts Options) *Data {
	t.Helper()
	d, err := LoadWith(opts, writeFixture(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func renderTables(t *testing.T, d *Data, render func(Table, *bytes.Buffer) error) []byte {
	t.Helper()
	var buf bytes.Buffer
	for i, tb := range d.Tables() {
		if i > 0 {
			buf.WriteString("\n")
		}
		if err := render(tb, &buf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestGoldenMarkdown(t *testing.T) {
	d := loadFixture(t, Options{FLOPs: fixtureFLOPs})
	golden(t, "tables.md", renderTables(t, d, func(tb Table, b *bytes.Buffer) error {
		b.WriteString("### " + escapeMarkdown(tb.Title) + "\n\n")
		return tb.Markdown(b)
	}))
}

func TestGoldenLaTeX(t *testing.T) {
	d := loadFixture(t, Options{FLOPs: fixtureFLOPs})
	golden(t, "tables.tex", renderTables(t, d, func(tb Table, b *bytes.Buffer) error { return tb.LaTeX(b) }))
}

// Without a FLOPs source (schema v3 stores none per image) the FLOPs cells are blank, never guessed.
func TestGoldenMarkdownNoFLOPs(t *testing.T) {
	d := loadFixture(t, Options{})
	golden(t, "tables-noflops.md", renderTables(t, d, func(tb Table, b *bytes.Buffer) error { return tb.Markdown(b) }))
}

func TestGoldenText(t *testing.T) {
	d := loadFixture(t, Options{FLOPs: fixtureFLOPs})
	golden(t, "tables.txt", renderTables(t, d, func(tb Table, b *bytes.Buffer) error { return tb.Text(b) }))
}
