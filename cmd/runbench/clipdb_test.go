package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/internal/golden"
)

// clipDBSample is one stored sample of a test run: an image file (or none) and a prompt (or a label).
type clipDBSample struct {
	image  string // "" stores no file, as outputs = "hash" does
	prompt string // "" stores a class label instead
}

// writeClipDB stores finished runs, one batch each, through the store API as the runner would.
func writeClipDB(t *testing.T, path string, runs ...[]clipDBSample) []int64 {
	t.Helper()
	db, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ids []int64
	for k, samples := range runs {
		method := "toca-pixart"
		if samples[0].prompt == "" {
			method = "none"
		}
		r, _, err := db.EnsureRun(store.Run{ConfigJSON: fmt.Sprintf(`{"run":%d}`, k), Method: method, Model: "PixArt-alpha",
			Sampler: "dpmpp", Steps: 20, NumSamples: len(samples), BatchSize: len(samples)})
		if err != nil {
			t.Fatal(err)
		}
		b := store.Batch{Index: 0, FirstSample: 0, NumSamples: len(samples)}
		for i, s := range samples {
			row := store.Sample{Index: i, NoiseSeed: int64(i), OutputPath: s.image}
			if s.prompt != "" {
				p := s.prompt
				row.Prompt = &p
			} else {
				l := i
				row.Label = &l
			}
			src := s.image
			if src == "" {
				src = samples[0].image // a hash-only sample still records its hash
			}
			if src != "" {
				data, err := os.ReadFile(src)
				if err != nil {
					t.Fatal(err)
				}
				sum := sha256.Sum256(data)
				row.OutputHash = hex.EncodeToString(sum[:])
			}
			b.Samples = append(b.Samples, row)
		}
		if err := db.CommitBatch(r.ID, b); err != nil {
			t.Fatal(err)
		}
		if err := db.SetStatus(r.ID, store.StatusDone); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	return ids
}

// copyPNG copies a fixture image to a new file, as a run's own output folder would hold it.
func copyPNG(t *testing.T, src, dst string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// clipFolderScore is what `clipscore --images --captions` gives for the images and captions.
func clipFolderScore(t *testing.T, weights string, images []string, captions []string) clipScoreReport {
	t.Helper()
	dir := t.TempDir()
	for i, im := range images {
		copyPNG(t, im, filepath.Join(dir, fmt.Sprintf("%03d.png", i)))
	}
	caps := filepath.Join(t.TempDir(), "captions.txt")
	writeFile(t, caps, strings.Join(captions, "\n")+"\n")
	out, err := execClip(newClipScoreCmd(), "--weights", weights, "--vocab", golden.Path("clip/bpe_simple_vocab_16e6.txt.gz"),
		"--images", dir, "--captions", caps, "--vision-heads", "1", "--text-heads", "4", "--json")
	if err != nil {
		t.Fatalf("clipscore --images: %v\n%s", err, out)
	}
	var rep clipScoreReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	return rep
}

func TestClipScoreDB(t *testing.T) {
	weights, imgDir, _, _ := clipFixture(t)
	vocab := golden.Path("clip/bpe_simple_vocab_16e6.txt.gz")
	out := t.TempDir()
	img := func(i int) string { return filepath.Join(imgDir, fmt.Sprintf("%03d.png", i)) }
	caps := []string{"a photo of a cat", "a diagram of two red squares on a white table", "an astronaut riding a horse on the moon"}
	var prompted, cycled, labelled []clipDBSample
	for i := range 3 {
		prompted = append(prompted, clipDBSample{image: copyPNG(t, img(i), filepath.Join(out, fmt.Sprintf("a%06d.png", i))), prompt: caps[i]})
		labelled = append(labelled, clipDBSample{image: copyPNG(t, img(i), filepath.Join(out, fmt.Sprintf("b%06d.png", i)))})
	}
	// A sweep cycles through its prompt list: prompt i mod 2 on images 0, 1, 2, 0.
	for i, j := range []int{0, 1, 2, 0} {
		cycled = append(cycled, clipDBSample{image: copyPNG(t, img(j), filepath.Join(out, fmt.Sprintf("c%06d.png", i))), prompt: caps[i%2]})
	}
	dbPath := filepath.Join(t.TempDir(), "results.db")
	ids := writeClipDB(t, dbPath, prompted, labelled, cycled)

	args := []string{"--weights", weights, "--vocab", vocab, "--db", dbPath, "--vision-heads", "1", "--text-heads", "4"}
	var stderr strings.Builder
	cmd := newClipScoreCmd()
	cmd.SetErr(&stderr)
	var stdout strings.Builder
	cmd.SetOut(&stdout)
	cmd.SetArgs(append(args, "--json"))
	if err := cmd.Execute(); err != nil {
		t.Fatalf("clipscore --db: %v\n%s", err, stderr.String())
	}
	var rep clipDBReport
	if err := json.Unmarshal([]byte(stdout.String()), &rep); err != nil {
		t.Fatalf("json: %v\n%s", err, stdout.String())
	}
	if !strings.Contains(stderr.String(), fmt.Sprintf("skipped %s run %d (none): its samples store no prompts", dbPath, ids[1])) {
		t.Errorf("stderr lacks the skipped class-conditional run:\n%s", stderr.String())
	}
	if len(rep.Runs) != 2 || rep.Runs[0].RunID != ids[0] || rep.Runs[1].RunID != ids[2] || len(rep.Skipped) != 1 {
		t.Fatalf("report runs %+v, skipped %q: want runs %d and %d", rep.Runs, rep.Skipped, ids[0], ids[2])
	}
	wantEx := "CLIP custom ViT/8 32px 64×2; tiny-clip.safetensors sha256:"
	if !strings.HasPrefix(rep.Extractor, wantEx) || !strings.HasSuffix(rep.Extractor, "; uint8") {
		t.Errorf("extractor %q, want %q…; uint8", rep.Extractor, wantEx)
	}

	db, err := store.OpenReadOnly(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	metricsOf := func(id int64) map[string]store.Metric {
		t.Helper()
		ms, err := db.Metrics(id)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]store.Metric{}
		for _, m := range ms {
			out[m.Name] = m
		}
		return out
	}
	// Stored values equal the folder path's for the same pairs: the same image batches, bit for bit.
	folder := clipFolderScore(t, weights, []string{img(0), img(1), img(2)}, caps)
	ms := metricsOf(ids[0])
	cs, pc := ms[store.MetricCLIPScore], ms[store.MetricCLIPScorePairsClamped]
	if len(ms) != 2 || cs.Value != folder.ClipScore || pc.Value != folder.MeanPerPairClamped || rep.Runs[0].ClipScore != folder.ClipScore {
		t.Errorf("run %d metrics %+v, want clip_score %v and clamped %v", ids[0], ms, folder.ClipScore, folder.MeanPerPairClamped)
	}
	if cs.N != 3 || cs.Reference != "samples.prompt" || cs.Extractor != rep.Extractor || !strings.Contains(cs.Extractor, folder.ModelID) ||
		cs.Resize != folder.Preprocessing || pc.Extractor != cs.Extractor {
		t.Errorf("clip_score row %+v; want n 3, reference samples.prompt, extractor %q holding %q, resize %q", cs, rep.Extractor, folder.ModelID, folder.Preprocessing)
	}
	if len(metricsOf(ids[1])) != 0 {
		t.Errorf("the run without prompts got metrics %+v", metricsOf(ids[1]))
	}
	// Repeated prompts are encoded once; the score still pairs each image with its own prompt.
	cyc := clipFolderScore(t, weights, []string{img(0), img(1), img(2), img(0)}, []string{caps[0], caps[1], caps[0], caps[1]})
	if got := metricsOf(ids[2])[store.MetricCLIPScore]; got.N != 4 || math.Abs(got.Value-cyc.ClipScore) > 1e-4 {
		t.Errorf("cycled run: clip_score %+v, folder %v", got, cyc.ClipScore)
	}
	db.Close()

	// Rescoring one run replaces its rows; the table names the run and the model.
	table, err := execClip(newClipScoreCmd(), append(args, "--run", fmt.Sprint(ids[0]), "--batch", "2")...)
	if err != nil {
		t.Fatalf("rescore: %v\n%s", err, table)
	}
	for _, s := range []string{fmt.Sprintf("%d  ", ids[0]), "toca-pixart", "clip_score", rep.Extractor} {
		if !strings.Contains(table, s) {
			t.Errorf("table lacks %q:\n%s", s, table)
		}
	}
	if db, err = store.OpenReadOnly(dbPath); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if ms := metricsOf(ids[0]); len(ms) != 2 || math.Abs(ms[store.MetricCLIPScore].Value-folder.ClipScore) > 1e-4 {
		t.Errorf("after rescoring: %+v", ms)
	}
	if n, err := db.Metrics(ids[0]); err != nil || len(n) != 2 {
		t.Errorf("rescoring added rows: %+v, %v", n, err)
	}
}

func TestClipScoreDBErrors(t *testing.T) {
	weights, imgDir, captions, _ := clipFixture(t)
	vocab := golden.Path("clip/bpe_simple_vocab_16e6.txt.gz")
	dir := t.TempDir()
	img := func(name string, i int) string {
		return copyPNG(t, filepath.Join(imgDir, fmt.Sprintf("%03d.png", i)), filepath.Join(dir, name))
	}
	base := func(db string, extra ...string) []string {
		return append([]string{"--weights", weights, "--vocab", vocab, "--db", db, "--vision-heads", "1", "--text-heads", "4"}, extra...)
	}

	hashOnly := filepath.Join(dir, "hash.db")
	writeClipDB(t, hashOnly, []clipDBSample{{image: img("h0.png", 0), prompt: "a cat"}, {prompt: "a dog"}})
	gone := filepath.Join(dir, "gone.db")
	writeClipDB(t, gone, []clipDBSample{{image: img("g0.png", 0), prompt: "a cat"}, {image: img("g1.png", 1), prompt: "a dog"}})
	if err := os.Remove(filepath.Join(dir, "g1.png")); err != nil {
		t.Fatal(err)
	}
	replaced := filepath.Join(dir, "replaced.db")
	writeClipDB(t, replaced, []clipDBSample{{image: img("r0.png", 0), prompt: "a cat"}})
	img("r0.png", 1)
	noPrompts := filepath.Join(dir, "labels.db")
	ids := writeClipDB(t, noPrompts, []clipDBSample{{image: img("l0.png", 0)}, {image: img("l1.png", 1)}})
	missingDB := filepath.Join(dir, "none.db")

	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"hash-only sample", base(hashOnly), []string{hashOnly, "run 1", "sample 1", `outputs = "hash"`, `outputs = "keep"`}},
		{"deleted image", base(gone), []string{gone, "run 1", "sample 1", "g1.png"}},
		{"replaced image", base(replaced), []string{"run 1", "sample 0", "replaced"}},
		{"no prompts", base(noPrompts), []string{noPrompts, "no run to score", "prompts"}},
		{"no prompts, named run", base(noPrompts, "--run", fmt.Sprint(ids[0])), []string{fmt.Sprintf("run %d", ids[0]), "store no prompts"}},
		{"unknown run", base(noPrompts, "--run", "42"), []string{"--run 42", "not found"}},
		{"missing database", base(missingDB), []string{missingDB}},
		{"db and images", base(noPrompts, "--images", imgDir), []string{"--db", "excludes --images"}},
		{"run without db", []string{"--weights", weights, "--vocab", vocab, "--images", imgDir, "--captions", captions, "--run", "1"}, []string{"--run", "--db"}},
		{"neither images nor db", []string{"--weights", weights, "--vocab", vocab}, []string{"--images", "--db"}},
	} {
		out, err := execClip(newClipScoreCmd(), c.args...)
		if err == nil {
			t.Errorf("%s: no error\n%s", c.name, out)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", c.name, err, w)
			}
		}
	}
	if _, err := os.Stat(missingDB); !os.IsNotExist(err) {
		t.Errorf("a missing --db was created (%v)", err)
	}
	// A failed pass stores nothing.
	db, err := store.OpenReadOnly(hashOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if ms, err := db.Metrics(1); err != nil || len(ms) != 0 {
		t.Errorf("hash-only run got metrics %+v, %v", ms, err)
	}
}
