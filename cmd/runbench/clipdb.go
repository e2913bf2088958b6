package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/datasets"
	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/models/clip"
)

// clipPromptsRef is the reference column of a stored CLIP score: each image against the prompt
// its own sample row records.
const clipPromptsRef = "samples.prompt"

// clipDBReport is what `runbench clipscore --db --json` prints.
type clipDBReport struct {
	Database      string       `json:"database"`
	ModelID       string       `json:"model_id"`
	Model         string       `json:"model"`
	Extractor     string       `json:"extractor"`
	Weights       string       `json:"weights"`
	WeightsSHA256 string       `json:"weights_sha256"`
	Config        string       `json:"config"`
	ValueRange    string       `json:"value_range"`
	Preprocessing string       `json:"preprocessing"`
	Convention    string       `json:"convention"`
	Runs          []clipRunRes `json:"runs"`
	Skipped       []string     `json:"skipped,omitempty"`
}

// clipRunRes is the score of one run of the database.
type clipRunRes struct {
	RunID              int64   `json:"run_id"`
	Method             string  `json:"method"`
	Pairs              int     `json:"pairs"`
	ClipScore          float64 `json:"clip_score"`
	MeanPerPairClamped float64 `json:"mean_per_pair_clamped"`
}

// clipRun is a run to score with its samples in index order.
type clipRun struct {
	run     store.Run
	samples []store.Sample
}

// clipScoreDB scores the runs of a results database and stores each run's scores as soon as it
// is done, so that an interrupted pass keeps what it finished. load is called only once the
// database has been checked, so that a missing image fails before the weights are read.
func clipScoreDB(cmd *cobra.Command, dbPath string, ids []int64, vr clip.ValueRange, weights string,
	load func() (*clip.Model, *clip.Tokenizer, error), asJSON bool) error {
	// store.Open would create a missing file; a mistyped path must be an error instead.
	if st, err := os.Stat(dbPath); err != nil {
		return fmt.Errorf("--db %s: %w", dbPath, pathCause(err))
	} else if st.IsDir() {
		return fmt.Errorf("--db %s is a directory, want a results database file", dbPath)
	}
	db, err := store.Open(dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	stderr := cmd.ErrOrStderr()
	runs, skipped, err := planClipRuns(db, dbPath, ids)
	for _, s := range skipped {
		fmt.Fprintln(stderr, "clipscore: skipped", s)
	}
	if err != nil {
		return err
	}
	m, tok, err := load()
	if err != nil {
		return err
	}
	rep := clipDBReport{Database: dbPath, ModelID: m.ID(), Model: clipArch(m.Config), Weights: weights, WeightsSHA256: m.SHA256,
		Config: m.Config.String(), ValueRange: vr.String(), Preprocessing: clipPreprocessing(m, vr), Convention: clipConvention,
		Skipped: skipped}
	rep.Extractor = store.CLIPExtractor(rep.Model, rep.ModelID, rep.ValueRange)

	total := 0
	for _, r := range runs {
		total += len(r.samples)
	}
	bar := progressbar.NewOptions(total, progressbar.OptionSetWriter(stderr), progressbar.OptionSetDescription("clip score"),
		progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionSetWidth(20), progressbar.OptionThrottle(200*time.Millisecond))
	for _, r := range runs {
		bar.Describe(fmt.Sprintf("clip score, run %d", r.run.ID))
		s, err := scoreClipRun(m, tok, vr, dbPath, r, func(n int) { _ = bar.Add(n) })
		if err != nil {
			_ = bar.Exit()
			fmt.Fprintln(stderr)
			return err
		}
		ms := []store.Metric{
			{Name: store.MetricCLIPScore, Value: s.Mean, N: len(r.samples), Reference: clipPromptsRef, Extractor: rep.Extractor, Resize: rep.Preprocessing},
			{Name: store.MetricCLIPScorePairsClamped, Value: s.MeanPerPairClamped, N: len(r.samples), Reference: clipPromptsRef, Extractor: rep.Extractor, Resize: rep.Preprocessing},
		}
		if err := db.PutMetrics(r.run.ID, ms); err != nil {
			_ = bar.Exit()
			fmt.Fprintln(stderr)
			return err
		}
		rep.Runs = append(rep.Runs, clipRunRes{RunID: r.run.ID, Method: r.run.Method, Pairs: len(r.samples), ClipScore: s.Mean, MeanPerPairClamped: s.MeanPerPairClamped})
	}
	_ = bar.Finish()
	fmt.Fprintln(stderr)
	return printClipDB(cmd.OutOrStdout(), rep, vr, asJSON)
}

// planClipRuns picks the runs to score (all when ids is empty) and checks, before any image is
// encoded, that each has a prompt and a readable image file for every sample. Runs passed over
// are returned as messages; a run named in ids that cannot be scored is an error.
func planClipRuns(db *store.DB, dbPath string, ids []int64) ([]clipRun, []string, error) {
	explicit := len(ids) > 0
	var runs []store.Run
	if explicit {
		seen := map[int64]bool{}
		for _, id := range ids {
			if seen[id] {
				continue
			}
			seen[id] = true
			r, err := db.Run(id)
			if err != nil {
				return nil, nil, fmt.Errorf("--run %d: %w", id, err)
			}
			runs = append(runs, r)
		}
	} else {
		var err error
		if runs, err = db.Runs(); err != nil {
			return nil, nil, err
		}
		if len(runs) == 0 {
			return nil, nil, fmt.Errorf("%s holds no runs", dbPath)
		}
	}
	var out []clipRun
	var skipped []string
	for _, r := range runs {
		name := fmt.Sprintf("%s run %d (%s)", dbPath, r.ID, r.Method)
		if r.Status != store.StatusDone {
			if explicit {
				return nil, skipped, fmt.Errorf("%s is %s, not done: finish it (rerun, or merge its shards) before scoring it", name, r.Status)
			}
			skipped = append(skipped, fmt.Sprintf("%s: status %s, not done", name, r.Status))
			continue
		}
		samples, err := db.SampleOutputs(r.ID)
		if err != nil {
			return nil, skipped, err
		}
		prompted := 0
		for _, s := range samples {
			if s.Prompt != nil {
				prompted++
			}
		}
		if prompted == 0 {
			why := "its samples store no prompts (a class-conditional or unconditional run); the CLIP score needs a text-to-image run"
			if len(samples) == 0 {
				why = "it holds no samples"
			}
			if explicit {
				return nil, skipped, fmt.Errorf("%s cannot be scored: %s", name, why)
			}
			skipped = append(skipped, name+": "+why)
			continue
		}
		for _, s := range samples {
			if err := clipSampleReady(name, s); err != nil {
				return nil, skipped, err
			}
		}
		out = append(out, clipRun{run: r, samples: samples})
	}
	if len(out) == 0 {
		return nil, skipped, fmt.Errorf("%s: no run to score; the CLIP score needs finished text-to-image runs whose samples store prompts (samples.prompt)", dbPath)
	}
	return out, skipped, nil
}

// clipSampleReady checks that a sample has what its score needs: a prompt and its image file.
func clipSampleReady(run string, s store.Sample) error {
	switch {
	case s.Prompt == nil:
		return fmt.Errorf("%s sample %d has no prompt, although other samples of the run have one", run, s.Index)
	case s.OutputPath == "":
		return fmt.Errorf("%s sample %d: no image file was kept (outputs = \"hash\" stores only its sha256); rerun the sweep with outputs = \"keep\" to compute the CLIP score", run, s.Index)
	case !strings.HasSuffix(strings.ToLower(s.OutputPath), ".png"):
		return fmt.Errorf("%s sample %d: %s is not a PNG image (latents need a VAE: [model] vae)", run, s.Index, s.OutputPath)
	}
	if _, err := os.Stat(s.OutputPath); err != nil {
		return fmt.Errorf("%s sample %d: image %s: %w; keep the sweep's output folder (outputs = \"keep\") where the run wrote it", run, s.Index, s.OutputPath, pathCause(err))
	}
	return nil
}

// scoreClipRun encodes a run's prompts once each and its images a batch at a time (the files of a
// batch decoded in parallel); the image batches are the ones EncodeImages makes of a whole
// folder, so the score equals that of `clipscore --images` on the same files.
func scoreClipRun(m *clip.Model, tok *clip.Tokenizer, vr clip.ValueRange, dbPath string, r clipRun, progress func(int)) (clip.Scores, error) {
	name := fmt.Sprintf("%s run %d", dbPath, r.run.ID)
	// Sweeps cycle through a prompt list, so most runs repeat prompts: each is encoded once.
	var uniq []string
	row := make([]int, len(r.samples))
	at := map[string]int{}
	for i, s := range r.samples {
		j, ok := at[*s.Prompt]
		if !ok {
			j = len(uniq)
			at[*s.Prompt] = j
			uniq = append(uniq, *s.Prompt)
		}
		row[i] = j
	}
	txt, err := m.EncodeText(tok.Tokenize(uniq))
	if err != nil {
		return clip.Scores{}, fmt.Errorf("%s prompts: %w", name, err)
	}
	d := m.EmbedDim
	txtFeats := make([]float32, 0, len(r.samples)*d)
	for _, j := range row {
		txtFeats = append(txtFeats, txt[j*d:(j+1)*d]...)
	}

	bs := m.BatchSize
	if bs <= 0 {
		bs = clip.DefaultBatchSize
	}
	imgFeats := make([]float32, 0, len(r.samples)*d)
	h, w := 0, 0
	for lo := 0; lo < len(r.samples); lo += bs {
		hi := min(lo+bs, len(r.samples))
		pix, bh, bw, err := readClipBatch(name, r.samples[lo:hi], h, w)
		if err != nil {
			return clip.Scores{}, err
		}
		h, w = bh, bw
		f, err := m.EncodeImages(pix, hi-lo, h, w, vr)
		if err != nil {
			return clip.Scores{}, fmt.Errorf("%s samples %d–%d: %w", name, r.samples[lo].Index, r.samples[hi-1].Index, err)
		}
		imgFeats = append(imgFeats, f...)
		progress(hi - lo)
	}
	s, err := clip.Score(imgFeats, txtFeats, d)
	if err != nil {
		return clip.Scores{}, fmt.Errorf("%s: %w", name, err)
	}
	return s, nil
}

// readClipBatch decodes the image files of samples (after checking each against its recorded
// sha256) into one NHWC uint8 buffer. Every image must be h×w; h = 0 takes the first one's size.
func readClipBatch(run string, samples []store.Sample, h, w int) ([]uint8, int, int, error) {
	imgs := make([][]uint8, len(samples))
	sizes := make([][2]int, len(samples))
	errs := make([]error, len(samples))
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(runtime.GOMAXPROCS(0), len(samples)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				img, err := datasets.DecodeImage(samples[i].OutputPath, samples[i].OutputHash)
				if err != nil {
					errs[i] = fmt.Errorf("%s sample %d: %w", run, samples[i].Index, err)
					continue
				}
				b := img.Bounds()
				sizes[i] = [2]int{b.Dy(), b.Dx()}
				imgs[i] = datasets.RGB(img)
			}
		}()
	}
	for i := range samples {
		next <- i
	}
	close(next)
	wg.Wait()
	// The first failure in sample order, whichever goroutine met it first.
	if i := slices.IndexFunc(errs, func(e error) bool { return e != nil }); i >= 0 {
		return nil, 0, 0, errs[i]
	}
	if h == 0 {
		h, w = sizes[0][0], sizes[0][1]
	}
	pix := make([]uint8, 0, len(samples)*h*w*3)
	for i, sz := range sizes {
		if sz != [2]int{h, w} {
			return nil, 0, 0, fmt.Errorf("%s sample %d: %s is %d×%d pixels, the run's first image %d×%d; a run's images must have one size",
				run, samples[i].Index, samples[i].OutputPath, sz[1], sz[0], w, h)
		}
		pix = append(pix, imgs[i]...)
	}
	return pix, h, w, nil
}

// pathCause drops the path an os error repeats, for messages that name the file already.
func pathCause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// printClipDB prints the scored runs as a table with the model, or as one JSON object.
func printClipDB(out io.Writer, rep clipDBReport, vr clip.ValueRange, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "run\tmethod\tpairs\tCLIP score\tmean of per-pair max(100·cos, 0)")
	for _, r := range rep.Runs {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%.4f\t%.4f\n", r.RunID, r.Method, r.Pairs, r.ClipScore, r.MeanPerPairClamped)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "stored in %s as %s and %s (extractor %q)\n", rep.Database, store.MetricCLIPScore, store.MetricCLIPScorePairsClamped, rep.Extractor)
	fmt.Fprintf(out, "model: %s, %s\n", rep.ModelID, rep.Config)
	fmt.Fprintf(out, "image value range: %s (%s)\n", rep.ValueRange, vr.Describe())
	return nil
}
