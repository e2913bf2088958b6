package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/olekukonko/tablewriter"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/datasets"
	"github.com/cachebench/cachebench/extractors"
	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/metrics"
	"github.com/cachebench/cachebench/models/inception"
	"github.com/cachebench/cachebench/runner"
)

// extractorFlags pick the feature network.
type extractorFlags struct {
	extractor string
	weights   string
	batch     int
	noCache   bool
}

func (f *extractorFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.extractor, "extractor", "inception", "feature network (inception: pytorch-fid's FID Inception-v3; fmnist: the Fashion-MNIST classifier, FID-FMNIST)")
	cmd.Flags().StringVar(&f.weights, "weights", os.Getenv("CACHEBENCH_INCEPTION"), "Inception weights: pytorch-fid's pt_inception-2015-12-05-6726825d.pth or a safetensors copy (default $CACHEBENCH_INCEPTION); "+
		"with --extractor fmnist the classifier's safetensors, e.g. assets/fmnist_classifier.safetensors (default $CACHEBENCH_FMNIST)")
	cmd.Flags().IntVar(&f.batch, "batch", inception.DefaultBatchSize, "Inception images per forward pass (does not change results)")
	cmd.Flags().BoolVar(&f.noCache, "no-cache", false, "recompute reference statistics even when cached")
}

// extractor is an opened feature network with the input policy recorded beside its metrics.
type extractor struct {
	metrics.Extractor
	resize string
}

func (f *extractorFlags) open(cmd *cobra.Command) (*extractor, error) {
	k, err := extractors.Lookup(f.extractor)
	if err != nil {
		return nil, fmt.Errorf("--extractor: %w", err)
	}
	weights := f.weights // the flag's default is $CACHEBENCH_INCEPTION
	if k.Name != "inception" {
		// Another network's weights never default to Inception's.
		weights = k.DefaultWeights()
		if cmd.Flags().Changed("weights") {
			weights = f.weights
		}
	}
	switch {
	case weights == "" && k.Name == "inception":
		return nil, fmt.Errorf("images need Inception weights: give --weights (pytorch-fid's pt_inception-2015-12-05-6726825d.pth) or set $CACHEBENCH_INCEPTION; nothing is downloaded")
	case weights == "":
		return nil, fmt.Errorf("--extractor %s needs the classifier's weights: give --weights (assets/fmnist_classifier.safetensors in this repository) or set $%s", k.Name, k.WeightsEnv)
	}
	backendCfg, _ := cmd.Flags().GetString("backend")
	ex, err := k.Open(backendCfg, weights, f.batch)
	if err != nil {
		return nil, err
	}
	return &extractor{ex, k.Resize}, nil
}

// imageSet is one side of a comparison: images, or statistics only.
type imageSet struct {
	path   string
	images *datasets.Images
	labels []uint8 // class of each image, for real Fashion-MNIST sets only
	stats  *metrics.RefStats
}

// openSet reads a folder of images, an .npz of images (arr_0), an .npz of statistics (mu, sigma)
// or real Fashion-MNIST images with labels (fmnist:SPLIT[:N], padded to 32×32).
func openSet(path string) (*imageSet, error) {
	// Statistics are the metrics' concern; images of every kind the data sets'.
	if st, err := os.Stat(path); err == nil && !st.IsDir() && strings.HasSuffix(strings.ToLower(path), ".npz") {
		rs, errStats := metrics.ReadRefStats(path)
		if errStats == nil {
			return &imageSet{path: path, stats: rs}, nil
		}
		im, errImages := datasets.ReadImages(path)
		if errImages != nil {
			return nil, fmt.Errorf("%s holds neither statistics (%v) nor images (%v)", path, errStats, errImages)
		}
		return &imageSet{path: path, images: im}, nil
	}
	im, labels, err := datasets.Open(path)
	if err != nil {
		return nil, err
	}
	return &imageSet{path: path, images: im, labels: labels}, nil
}

// features runs the extractor on a set's images with a progress bar.
func features(cmd *cobra.Command, ex metrics.Extractor, s *imageSet) (*metrics.Features, error) {
	im := s.images
	bar := progressbar.NewOptions(im.N, progressbar.OptionSetWriter(cmd.ErrOrStderr()), progressbar.OptionSetDescription(filepath.Base(s.path)),
		progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true))
	f, err := ex.Extract(im.Pix, im.N, im.H, im.W, func(done, _ int) { _ = bar.Set(done) })
	_ = bar.Finish()
	fmt.Fprintln(cmd.ErrOrStderr())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.path, err)
	}
	return f, nil
}

// statsOf returns a set's statistics, from the file, the cache, or by extracting features.
func statsOf(cmd *cobra.Command, ef *extractorFlags, ex **extractor, s *imageSet) (*metrics.RefStats, *metrics.Features, error) {
	if s.stats != nil {
		return s.stats, nil, nil
	}
	if *ex == nil {
		var err error
		if *ex, err = ef.open(cmd); err != nil {
			return nil, nil, err
		}
	}
	im := s.images
	key := metrics.RefKey{ImagesSHA256: metrics.ImageSetHash(im.Pix, im.N, im.H, im.W, 3), Resolution: fmt.Sprintf("%dx%d", im.W, im.H),
		Resize: (*ex).resize, Extractor: (*ex).ID()}
	cache := metrics.DefaultRefCache()
	if !ef.noCache {
		if rs, err := cache.Get(key); err != nil || rs != nil {
			return rs, nil, err
		}
	}
	f, err := features(cmd, *ex, s)
	if err != nil {
		return nil, nil, err
	}
	rs, err := f.Stats()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", s.path, err)
	}
	if err := cache.Put(key, rs); err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: reference statistics not cached: %v\n", err)
	}
	return rs, f, nil
}

func newFIDCmd() *cobra.Command {
	var ef extractorFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "fid A B",
		Short: "Fréchet Inception Distance between two image sets (folders, .npz images or .npz statistics)",
		Long: `Prints the FID between A and B, as python -m pytorch_fid A B does. Each of A and B is a folder
of PNG/JPEG images, an .npz of images (arr_0, uint8 NHWC) or an .npz of statistics (mu, sigma;
pytorch-fid or ADM reference batches). Images go through pytorch-fid's Inception-v3
(bilinear resize to 299, align_corners=False), or with --extractor fmnist the Fashion-MNIST
classifier (FID-FMNIST); their statistics are cached by (pixels, resolution, resize policy,
network and weights) so a reference is computed once. fmnist:SPLIT or fmnist:SPLIT:N (SPLIT
train or test) names the first N real Fashion-MNIST images of ` + datasets.FashionMNISTDir + `,
padded to 32×32 as the classifier was trained.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var ex *extractor
			var st [2]*metrics.RefStats
			for i, p := range args {
				s, err := openSet(p)
				if err != nil {
					return err
				}
				if st[i], _, err = statsOf(cmd, &ef, &ex, s); err != nil {
					return err
				}
			}
			if len(st[0].Mu) != len(st[1].Mu) {
				return fmt.Errorf("%s has %d-dimensional statistics, %s %d (different feature networks?)", args[0], len(st[0].Mu), args[1], len(st[1].Mu))
			}
			fid, err := metrics.FrechetDistance(st[0].Mu, st[0].Sigma, st[1].Mu, st[1].Sigma)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{"fid": fid, "a": args[0], "b": args[1]})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "FID:  %v\n", fid)
			return nil
		},
	}
	ef.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

func newStatsCmd() *cobra.Command {
	var ef extractorFlags
	var images, out string
	var keepImages bool
	cmd := &cobra.Command{
		Use:   "stats --images DIR|NPZ|fmnist:SPLIT[:N] --extractor inception|fmnist --weights W --out REF.npz",
		Short: "Compute reference statistics (mu, sigma, mu_s, sigma_s) of an image set",
		Long: `Writes the statistics of an image set in the ADM reference-batch layout (mu, sigma of the
pool3 features; mu_s, sigma_s of the sFID spatial features), readable by pytorch-fid and the
ADM evaluator alike.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if images == "" || out == "" {
				return fmt.Errorf("--images and --out are required")
			}
			s, err := openSet(images)
			if err != nil {
				return err
			}
			if s.images == nil {
				return fmt.Errorf("%s already holds statistics", images)
			}
			var ex *extractor
			rs, _, err := statsOf(cmd, &ef, &ex, s)
			if err != nil {
				return err
			}
			if keepImages {
				rs.Images = &metrics.Images{N: s.images.N, H: s.images.H, W: s.images.W, C: 3, Pix: s.images.Pix}
			}
			if err := metrics.WriteRefStats(out, rs); err != nil {
				return err
			}
			if rs.MuS == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "%d images → %s (%d-dim features, no spatial)\n", s.images.N, out, len(rs.Mu))
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d images → %s (%d-dim pool3, %d-dim spatial)\n", s.images.N, out, len(rs.Mu), len(rs.MuS))
			return nil
		},
	}
	ef.register(cmd)
	cmd.Flags().StringVar(&images, "images", "", "folder of images, .npz (arr_0) or fmnist:SPLIT[:N] (real Fashion-MNIST)")
	cmd.Flags().StringVar(&out, "out", "", "statistics file to write (.npz)")
	cmd.Flags().BoolVar(&keepImages, "keep-images", false, "also write the images as arr_0, as ADM reference batches do (precision/recall and KID read them)")
	return cmd
}

func newMetricsCmd() *cobra.Command {
	var ef extractorFlags
	var images, ref, refImages, db string
	var runID int64
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "metrics --images X --ref REF.npz [--ref-images Y] [--db DB --run ID] [--json]",
		Short: "FID, sFID, IS, precision/recall and KID of generated images against a reference",
		Long: `Computes every metric of the generated images X (folder or .npz) against the reference
statistics REF.npz. Precision/recall (k = 3, ADM evaluator) and KID need reference features:
give --ref-images (or a REF.npz that also holds arr_0 images). With --db and --run the metrics
are stored in that run's metrics table, with the extractor and resize policy.

X may be real Fashion-MNIST images, fmnist:SPLIT or fmnist:SPLIT:N (the first N of the train or
test split, padded to 32×32): with --extractor fmnist that gives the real-data floor of
FID-FMNIST and IS-FMNIST, and class_acc, the share of images the classifier labels right.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if images == "" || ref == "" {
				return fmt.Errorf("--images and --ref are required")
			}
			gen, err := openSet(images)
			if err != nil {
				return err
			}
			if gen.images == nil {
				return fmt.Errorf("%s holds statistics; metrics need the generated images", images)
			}
			rs, err := metrics.ReadRefStats(ref)
			if err != nil {
				return err
			}
			ex, err := ef.open(cmd)
			if err != nil {
				return err
			}
			gf, err := features(cmd, ex, gen)
			if err != nil {
				return err
			}
			rf, err := refFeatures(cmd, ex, ref, refImages)
			if err != nil {
				return err
			}
			mr, err := metrics.Evaluate(gf, rs, rf, ex.ID())
			if err != nil {
				return err
			}
			rep := report{Report: mr}
			if gen.labels != nil {
				classAccuracy(&rep, ex, gf, gen.labels)
			}
			if db != "" {
				refID, err := metrics.ReferenceID(ref)
				if err != nil {
					return err
				}
				if err := storeReport(db, runID, rep, refID, ex.resize); err != nil {
					return err
				}
			}
			return printReport(cmd.OutOrStdout(), rep, asJSON)
		},
	}
	ef.register(cmd)
	cmd.Flags().StringVar(&images, "images", "", "generated images: folder or .npz (arr_0); or real ones, fmnist:SPLIT[:N]")
	cmd.Flags().StringVar(&ref, "ref", "", "reference statistics (.npz: mu, sigma [, mu_s, sigma_s, arr_0])")
	cmd.Flags().StringVar(&refImages, "ref-images", "", "reference images for precision/recall and KID")
	cmd.Flags().StringVar(&db, "db", "", "results database to store the metrics in (with --run)")
	cmd.Flags().Int64Var(&runID, "run", 0, "run id in --db")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

// report is what `metrics` prints: metrics.Report and, for labelled images, their class accuracy.
type report struct {
	*metrics.Report
	ClassAcc *float64 `json:"class_acc,omitempty"`
}

type reportRow struct {
	name  string
	value float64
}

// reportRows names FID and IS of the Fashion-MNIST classifier fid_fmnist and is_fmnist, as the
// sweep stores them, so that nobody mistakes them for Inception's.
func reportRows(r report) []reportRow {
	fid, is := runner.MetricName("fid", r.Extractor), runner.MetricName("is", r.Extractor)
	rows := []reportRow{{fid, r.FID}}
	for _, p := range []struct {
		name string
		v    *float64
	}{{"sfid", r.SFID}, {is, r.IS}, {"precision", r.Precision}, {"recall", r.Recall}, {"kid", r.KID}, {"class_acc", r.ClassAcc}} {
		if p.v != nil {
			rows = append(rows, reportRow{p.name, *p.v})
		}
	}
	return rows
}

// refFeatures are the reference images' features precision/recall and KID need: of --ref-images,
// or of the images REF.npz holds beside its statistics (nil when neither has images).
func refFeatures(cmd *cobra.Command, ex *extractor, ref, refImages string) (*metrics.Features, error) {
	if refImages == "" {
		im, err := datasets.ReadImages(ref)
		if err != nil {
			return nil, nil // statistics only
		}
		return features(cmd, ex, &imageSet{path: ref, images: im})
	}
	rset, err := openSet(refImages)
	if err != nil {
		return nil, err
	}
	if rset.images == nil {
		return nil, fmt.Errorf("--ref-images %s holds statistics, not images", refImages)
	}
	return features(cmd, ex, rset)
}

// classAccuracy adds the share of labelled images the classifier labels right; the labels are
// Fashion-MNIST classes, which other networks' logits do not name.
func classAccuracy(rep *report, ex *extractor, gf *metrics.Features, classes []uint8) {
	if k, _ := extractors.ByID(ex.ID()); k == nil || !k.Supports("class_acc") || gf.Logits == nil {
		rep.Notes = append(rep.Notes, "class_acc of labelled images needs --extractor fmnist")
		return
	}
	labels := make([]int64, len(classes))
	for i, l := range classes {
		labels[i] = int64(l)
	}
	v := metrics.ClassAccuracy(gf.Logits, gf.LogitDim, labels)
	rep.ClassAcc = &v
}

// printReport prints the metrics as a table with notes, or as one JSON object.
func printReport(w io.Writer, rep report, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(rep)
	}
	t := tablewriter.NewWriter(w)
	t.Header("metric", "value")
	for _, r := range reportRows(rep) {
		_ = t.Append(r.name, fmt.Sprintf("%.4f", r.value))
	}
	_ = t.Append("samples", fmt.Sprint(rep.N))
	_ = t.Append("extractor", rep.Extractor)
	if err := t.Render(); err != nil {
		return err
	}
	for _, n := range rep.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	return nil
}

func storeReport(path string, runID int64, r report, ref, resize string) error {
	if runID <= 0 {
		return errors.New("--db needs --run (the run id the images belong to)")
	}
	db, err := store.Open(path)
	if err != nil {
		return err
	}
	defer db.Close()
	var ms []store.Metric
	for _, row := range reportRows(r) {
		ms = append(ms, store.Metric{Name: row.name, Value: row.value, N: r.N, Reference: ref, Extractor: r.Extractor, Resize: resize})
	}
	return db.PutMetrics(runID, ms)
}
