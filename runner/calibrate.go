package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"

	"github.com/gomlx/gomlx/pkg/core/tensors"
	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/stat"

	"github.com/cachebench/cachebench/experiments"
	"github.com/cachebench/cachebench/harness"
	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/methods"
)

// TeaCacheDegree is the degree of TeaCache's rescale polynomial (the reference fits numpy.polyfit
// with degree 4).
const TeaCacheDegree = 4

// CalibrateJob is a calibration pass for the threshold caches: the configuration it calibrates
// (Method and Params are ignored; NumSamples is the number of calibration samples, drawn from
// (Seed, index) as a run draws them) and the model.
type CalibrateJob struct {
	Config
	Model     Model
	Prompts   []string // the captions of a prompted model (Config.Prompts names them)
	BatchSize int
	// Progress receives the model calls done out of the pass's total.
	Progress func(done, total int)
}

// CalibrationFile is a calibration as written to disk and stored: the methods' Calibration
// (which the methods read) and what identifies and documents the measurement besides.
type CalibrationFile struct {
	methods.Calibration
	// Weights is the weights' hash: the model id names the architecture only, and trained and
	// random weights of one architecture have nothing in common.
	Weights string `json:"weights_sha256"`
	// StepSpec is the respacing spec ("50", "ddim50", "10,15,25"): two specs of one count are
	// two schedules.
	StepSpec string `json:"steps_spec"`
	Guide    int    `json:"guide_channels"`
	Seed     int64  `json:"seed"`
	Batch    int    `json:"batch"`
	// MagStd is, per call, the standard deviation over the rows (images and their CFG null rows)
	// of the ratio whose mean is MagRatios.
	MagStd []float64 `json:"mag_std"`
	// FBCacheByCall is, per call 1 … Steps−1, FBCache's statistic over the rows at quantiles
	// 0.1, 0.5, 0.9 (index 0 is call 1).
	FBCacheByCall [][3]float64 `json:"fbcache_diff_by_call"`
	// TeaCacheFit says how well the polynomial fits: the points (row, call) and the root mean
	// square of the residuals.
	TeaCacheFit *PolyFit `json:"teacache_fit,omitempty"`

	path string // where it was read from, for messages
}

func (f *CalibrationFile) name() string {
	if f.path != "" {
		return "calibration " + f.path
	}
	return "calibration"
}

// PolyFit summarises a least-squares fit.
type PolyFit struct {
	Points int     `json:"points"`
	RMSE   float64 `json:"rmse"`
}

// Key is the store key of the calibration.
func (f *CalibrationFile) Key() store.CalibrationKey {
	return store.CalibrationKey{Model: f.Model, WeightsHash: f.Weights, Sampler: f.Sampler, Steps: f.StepSpec, CFGScale: f.CFG}
}

// JSON is the file's content.
func (f *CalibrationFile) JSON() ([]byte, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(f, "", " ")
	return append(data, '\n'), err
}

// Write saves the calibration file.
func (f *CalibrationFile) Write(path string) error {
	data, err := f.JSON()
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("calibration: %w", err)
	}
	return nil
}

// Store records the calibration in a results database (replacing one of the same key).
func (f *CalibrationFile) Store(db *store.DB, gitRev string) error {
	data, err := f.JSON()
	if err != nil {
		return err
	}
	return db.PutCalibration(store.Calibration{CalibrationKey: f.Key(), NumSteps: f.Steps, NumSamples: f.Images, Seed: f.Seed,
		JSON: string(data), GitRev: gitRev})
}

// ReadCalibrationFile reads a calibration file with what identifies it (methods.LoadCalibration
// reads the methods' part of the same file).
func ReadCalibrationFile(path string) (*CalibrationFile, error) {
	c, err := methods.LoadCalibration(path)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("calibration: %w", err)
	}
	f := &CalibrationFile{}
	if err := json.Unmarshal(data, f); err != nil {
		return nil, fmt.Errorf("calibration %s: %w", path, err)
	}
	f.Calibration, f.path = *c, path
	return f, nil
}

// CalibrationID names a calibration's content in a run's configuration: what the methods read
// changes the samples, so another calibration is another run.
func CalibrationID(c *methods.Calibration) (string, error) {
	cj, err := store.CanonicalJSON(c)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(cj)
	return "sha256:" + hex.EncodeToString(sum[:8]), nil
}

// CheckCalibration refuses a calibration measured on another model, weights, sampler, step
// count or guidance scale than the configuration's.
func CheckCalibration(f *CalibrationFile, c Config) error {
	_, sched, _, err := samplerOf(c)
	if err != nil {
		return err
	}
	if err := f.Check(c.Model, c.Sampler, sched.Steps(), c.CFGScale); err != nil {
		return err
	}
	if f.Weights != c.Weights {
		return fmt.Errorf("%s was measured with weights %.16s (this run: %.16s): run `runbench calibrate` for this run's weights",
			f.name(), f.Weights, c.Weights)
	}
	return nil
}

// checkJobCalibration refuses a job whose calibration is not the one its configuration names,
// or was measured for another model, weights, sampler, steps or CFG.
func checkJobCalibration(c Config, f *CalibrationFile) error {
	if f == nil {
		if c.Calibration != "" {
			return fmt.Errorf("calibration: the configuration names %s and the job holds none", c.Calibration)
		}
		return nil
	}
	id, err := CalibrationID(&f.Calibration)
	if err != nil {
		return err
	}
	if id != c.Calibration {
		return fmt.Errorf("%s: its content is %s, the configuration names %q (was the file changed since the experiment was read?)", f.name(), id, c.Calibration)
	}
	return CheckCalibration(f, c)
}

// Recording is what a calibration pass measured, per batch of calibration samples: the
// statistics the threshold caches read, on a trajectory where every call computed everything.
// Predict and Search replay methods on it.
type Recording struct {
	Config  Config
	Layout  hook.Layout
	Steps   int
	Batches []*BatchRecording
	counter hook.FLOPsCounter
}

// BatchRecording holds one batch's statistics. A relative L1 is kept as its numerator and
// denominator per row, so that a pooled (per-batch) statistic is their ratio of sums, as the
// executor pools.
type BatchRecording struct {
	Samples []int // the batch's sample indices
	Rows    int   // model rows (2 per sample under CFG: the images, then their null rows)
	// Tea[k][r]: block 0's modulated input at call k against call k−1 (k ≥ 1; Tea[0] is nil).
	Tea [][]L1
	// FB[k][m][r]: block 0's residual at call k against the one at call m < k.
	FB [][][]L1
	// Out[k][i]: the guided model output's ε channels of image i at call k against call k−1.
	Out [][]float64
	// Mag[k][r]: the whole stack's residual at call k, mean over tokens of the norm over channels
	// of r_k divided by that of r_{k−1} (Mag[0] is nil).
	Mag [][]float64
	// ExecTea and ExecFB are the statistics the executor measured per row (+Inf at call 0),
	// which the host sums must reproduce.
	ExecTea, ExecFB [][]float64
}

// L1 is a relative L1 change Σ|v − ref| / Σ|ref| kept as its two sums.
type L1 struct{ Num, Den float64 }

// Value is the relative change (+Inf without a reference scale).
func (l L1) Value() float64 {
	if l.Den == 0 {
		return math.Inf(1)
	}
	return l.Num / l.Den
}

// CalibrationResult is a calibration pass: the file to write and the recording to search
// thresholds on.
type CalibrationResult struct {
	File      *CalibrationFile
	Recording *Recording
	// StatAgreement is the largest relative difference between the executor's statistics and
	// the host's recomputation (float32 device sums against float64 host sums).
	StatAgreement float64
}

// Calibrate runs the calibration pass. Every call computes the whole model; the plans carry
// gates that never skip, so that the executor measures and stores exactly what TeaCache and
// FBCache read at run time. One plan carries one gate, so every batch is sampled twice: once
// gated over the whole stack with TeaCache's statistic (its residual also gives MagCache's
// ratios), once gated over blocks 1..L−1 with FBCache's (its reference is block 0's residual).
// Both passes compute every call, so they follow the same trajectory. Block 0's residual of every
// call is kept on the host (calls × rows × tokens × hidden floats per batch) because FBCache
// compares against the residual of the last call that ran, which may lie several calls back.
func Calibrate(ctx context.Context, job CalibrateJob) (*CalibrationResult, error) {
	c := job.Config
	if IsUNet(job.Model) {
		return nil, fmt.Errorf("calibrate: the threshold caches (teacache, fbcache, dbcache, magcache) plan the transformer stacks; Stable Diffusion's UNet has none to calibrate")
	}
	kind, sched, solver, err := samplerOf(c)
	if err != nil {
		return nil, err
	}
	l, spec := job.Model.Layout(), job.Model.Spec()
	switch {
	case c.NumSamples <= 0 || job.BatchSize <= 0:
		return nil, fmt.Errorf("calibrate: %d samples in batches of %d: both must be positive", c.NumSamples, job.BatchSize)
	case l.Depth < 2:
		return nil, fmt.Errorf("calibrate: a model of depth %d has no blocks after the first (FBCache's range)", l.Depth)
	case sched.Steps() < 2:
		return nil, fmt.Errorf("calibrate: %d sampling steps: the statistics compare consecutive calls", sched.Steps())
	case (c.Prompts != "") != (job.Prompts != nil):
		return nil, fmt.Errorf("calibrate: prompts: the configuration names %q and the job holds %d prompts", c.Prompts, len(job.Prompts))
	}
	S := sched.Steps()
	rec := &Recording{Config: c, Layout: l, Steps: S, counter: job.Model}
	var batches [][]int
	for lo := 0; lo < c.NumSamples; lo += job.BatchSize {
		batches = append(batches, seq(lo, min(c.NumSamples, lo+job.BatchSize)))
	}
	total, done := 2*S*len(batches), 0
	progress := func() {
		done++
		if job.Progress != nil {
			job.Progress(done, total)
		}
	}
	for _, idx := range batches {
		xInit, ys, noise := sampleInputs(c, spec, len(job.Prompts), idx)
		req := harness.Request{Sampler: kind, Schedule: sched, Solver: solver, CFGScale: float32(c.CFGScale), GuideChannels: c.Guide,
			XInit: xInit, Labels: ys, Noise: noise}
		br, err := calibrateBatch(ctx, job.Model, req, idx, S, progress)
		if err != nil {
			return nil, err
		}
		rec.Batches = append(rec.Batches, br)
	}
	f, err := rec.file(spec)
	if err != nil {
		return nil, err
	}
	return &CalibrationResult{File: f, Recording: rec, StatAgreement: rec.agreement()}, nil
}

func seq(lo, hi int) []int {
	out := make([]int, 0, hi-lo)
	for i := lo; i < hi; i++ {
		out = append(out, i)
	}
	return out
}

// measure is a policy that computes everything under a gate that never skips, and hands every
// call's gate and gate cache to observe.
type measure struct {
	layout  hook.Layout
	span    hook.Span
	stat    hook.GateStat
	observe func(call int, g *hook.Gate, gc *hook.GateCache) error
}

func (m *measure) Plan(int, int) (*hook.Plan, error) {
	p := hook.FullPlan(m.layout)
	p.RangesOnly = true
	p.Gate = &hook.Gate{Span: m.span, Stat: m.stat, Decide: func(stat []float64) ([]bool, error) { return make([]bool, len(stat)), nil }}
	return p, nil
}

func (m *measure) Observe(call, _ int, p *hook.Plan, c *hook.Cache) error {
	gc := c.Gate(m.span)
	if gc == nil || gc.Residual == nil || gc.Ref == nil {
		return fmt.Errorf("calibrate: call %d left no residual and reference for blocks %d..%d in the cache", call, m.span.From, m.span.To)
	}
	return m.observe(call, p.Gate, gc)
}

// hostRows copies a [rows, …] float32 tensor to the host.
func hostRows(t *tensors.Tensor) ([]float32, []int, error) {
	v, err := tensors.CopyFlatData[float32](t)
	if err != nil {
		return nil, nil, fmt.Errorf("calibrate: %w", err)
	}
	return v, t.Shape().Dimensions, nil
}

// relL1Rows is Σ|v − ref| and Σ|ref| per row.
func relL1Rows(v, ref []float32, rows int) []L1 {
	out := make([]L1, rows)
	per := len(v) / rows
	for r := range rows {
		var num, den float64
		for i := r * per; i < (r+1)*per; i++ {
			num += math.Abs(float64(v[i] - ref[i]))
			den += math.Abs(float64(ref[i]))
		}
		out[r] = L1{num, den}
	}
	return out
}

// tokenNorms is the norm over channels of every token, [rows][tokens].
func tokenNorms(v []float32, dims []int) [][]float64 {
	rows, ch := dims[0], dims[len(dims)-1]
	tokens := len(v) / rows / ch
	out := make([][]float64, rows)
	for r := range rows {
		out[r] = make([]float64, tokens)
		for t := range tokens {
			var s float64
			for _, x := range v[(r*tokens+t)*ch : (r*tokens+t+1)*ch] {
				s += float64(x) * float64(x)
			}
			out[r][t] = math.Sqrt(s)
		}
	}
	return out
}

// calibrateBatch samples one batch twice (see Calibrate) and returns its statistics.
func calibrateBatch(ctx context.Context, m Model, req harness.Request, idx []int, S int, progress func()) (*BatchRecording, error) {
	l := m.Layout()
	br := &BatchRecording{Samples: idx, Tea: make([][]L1, S), FB: make([][][]L1, S), Out: make([][]float64, S), Mag: make([][]float64, S),
		ExecTea: make([][]float64, S), ExecFB: make([][]float64, S)}
	spec := m.Spec()
	B, per := len(idx), spec.Channels*spec.Height*spec.Width
	outPer := spec.OutChannels() * spec.Height * spec.Width
	var prevOut []float32
	// Pass 1: TeaCache's statistic, MagCache's ratios and the output's change.
	var prevRef []float32
	var prevNorms [][]float64
	tea := &measure{layout: l, span: hook.Span{From: 0, To: l.Depth - 1}, stat: hook.StatModulatedInput,
		observe: func(k int, g *hook.Gate, gc *hook.GateCache) error {
			br.ExecTea[k] = slices.Clone(g.Stats)
			ref, _, err := hostRows(gc.Ref)
			if err != nil {
				return err
			}
			res, dims, err := hostRows(gc.Residual)
			if err != nil {
				return err
			}
			br.Rows = dims[0]
			norms := tokenNorms(res, dims)
			if k > 0 {
				br.Tea[k] = relL1Rows(ref, prevRef, br.Rows)
				br.Mag[k] = make([]float64, br.Rows)
				for r := range br.Rows {
					var s float64
					for t, n := range norms[r] {
						s += n / prevNorms[r][t]
					}
					br.Mag[k][r] = s / float64(len(norms[r]))
				}
			}
			prevRef, prevNorms = ref, norms
			return nil
		}}
	req.Policy, req.Cache = tea, hook.NewCache(l)
	req.OnStep = func(s harness.StepInfo) error {
		// Both CFG halves hold the guided output; the images' rows come first.
		cur := make([]float32, 0, B*per)
		for i := range B {
			cur = append(cur, s.ModelOut[i*outPer:i*outPer+per]...)
		}
		if s.Call > 0 {
			br.Out[s.Call] = make([]float64, B)
			for i, d := range relL1Rows(cur, prevOut, B) {
				br.Out[s.Call][i] = d.Value()
			}
		}
		prevOut = cur
		progress()
		return nil
	}
	_, err := harness.Sample(ctx, m, req)
	req.Cache.Reset()
	if err != nil {
		return nil, err
	}
	// Pass 2: FBCache's statistic against every earlier call.
	var r0 [][]float32
	fb := &measure{layout: l, span: hook.Span{From: 1, To: l.Depth - 1}, stat: hook.StatResidual,
		observe: func(k int, g *hook.Gate, gc *hook.GateCache) error {
			br.ExecFB[k] = slices.Clone(g.Stats)
			cur, _, err := hostRows(gc.Ref)
			if err != nil {
				return err
			}
			br.FB[k] = make([][]L1, k)
			for j, old := range r0 {
				br.FB[k][j] = relL1Rows(cur, old, br.Rows)
			}
			r0 = append(r0, cur)
			return nil
		}}
	req.Policy, req.Cache = fb, hook.NewCache(l)
	req.OnStep = func(harness.StepInfo) error { progress(); return nil }
	_, err = harness.Sample(ctx, m, req)
	req.Cache.Reset()
	return br, err
}

// agreement is the largest relative difference between the executor's statistics and the host's.
func (rec *Recording) agreement() float64 {
	var worst float64
	cmp := func(exec float64, host L1) {
		if h := host.Value(); !math.IsInf(exec, 0) && h > 0 {
			worst = max(worst, math.Abs(exec-h)/h)
		}
	}
	for _, b := range rec.Batches {
		for k := 1; k < rec.Steps; k++ {
			for r := range b.Rows {
				cmp(b.ExecTea[k][r], b.Tea[k][r])
				cmp(b.ExecFB[k][r], b.FB[k][k-1][r])
			}
		}
	}
	return worst
}

// file turns the recording into the calibration: TeaCache's polynomial fitted from the input
// change of every row to the output change of its image, MagCache's mean ratio per call over the
// rows, FBCache's statistic between consecutive calls in quantiles.
func (rec *Recording) file(spec hook.Spec) (*CalibrationFile, error) {
	c, S := rec.Config, rec.Steps
	images := 0
	for _, b := range rec.Batches {
		images += len(b.Samples)
	}
	f := &CalibrationFile{Calibration: methods.Calibration{Model: c.Model, Sampler: c.Sampler, Steps: S, CFG: c.CFGScale, Images: images},
		Weights: c.Weights, StepSpec: c.Steps, Guide: c.Guide, Seed: c.Seed}
	if len(rec.Batches) > 0 {
		f.Batch = len(rec.Batches[0].Samples)
	}
	var xs, ys, all []float64
	f.MagRatios, f.MagStd = make([]float64, S), make([]float64, S)
	f.MagRatios[0] = 1
	for k := 1; k < S; k++ {
		var mags, diffs []float64
		for _, b := range rec.Batches {
			B := len(b.Samples)
			for r := range b.Rows {
				x, y := b.Tea[k][r].Value(), b.Out[k][r%B]
				if finite(x) && finite(y) {
					xs, ys = append(xs, x), append(ys, y)
				}
				mags = append(mags, b.Mag[k][r])
				diffs = append(diffs, b.FB[k][k-1][r].Value())
			}
		}
		f.MagRatios[k], f.MagStd[k] = stat.MeanStdDev(mags, nil)
		if len(mags) < 2 {
			f.MagStd[k] = 0
		}
		slices.Sort(diffs)
		f.FBCacheByCall = append(f.FBCacheByCall, [3]float64{quantile(diffs, 0.1), quantile(diffs, 0.5), quantile(diffs, 0.9)})
		all = append(all, diffs...)
	}
	slices.Sort(all)
	for _, q := range []float64{0.1, 0.5, 0.9} {
		f.FBCacheDiff = append(f.FBCacheDiff, methods.Quantile{Q: q, Value: quantile(all, q)})
	}
	poly, fit, err := polyFit(xs, ys, TeaCacheDegree)
	if err != nil {
		return nil, fmt.Errorf("calibrate: TeaCache's rescale polynomial: %w", err)
	}
	f.TeaCache, f.TeaCacheFit = poly, fit
	return f, f.Validate()
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// quantile of sorted values (linear interpolation, numpy's default).
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	return stat.Quantile(q, stat.LinInterp, sorted, nil)
}

// polyFit fits y ≈ p(x) of the given degree by least squares and returns p highest degree first
// (numpy.polyfit's order). Columns are scaled to unit norm first, as numpy does: relative changes
// are small and their fourth powers smaller still.
func polyFit(xs, ys []float64, degree int) ([]float64, *PolyFit, error) {
	n, m := len(xs), degree+1
	if n < m {
		return nil, nil, fmt.Errorf("%d points for a degree-%d polynomial (want ≥ %d: more samples or steps)", n, degree, m)
	}
	a := mat.NewDense(n, m, nil)
	for i, x := range xs {
		p := 1.0
		for j := m - 1; j >= 0; j-- {
			a.Set(i, j, p)
			p *= x
		}
	}
	scale := make([]float64, m)
	for j := range m {
		scale[j] = mat.Norm(a.ColView(j), 2)
		if scale[j] == 0 {
			scale[j] = 1
		}
		for i := range n {
			a.Set(i, j, a.At(i, j)/scale[j])
		}
	}
	var qr mat.QR
	qr.Factorize(a)
	var sol mat.Dense
	if err := qr.SolveTo(&sol, false, mat.NewDense(n, 1, slices.Clone(ys))); err != nil {
		return nil, nil, err
	}
	coef := make([]float64, m)
	for j := range m {
		coef[j] = sol.At(j, 0) / scale[j]
		if !finite(coef[j]) {
			return nil, nil, fmt.Errorf("coefficient %d is %v (the input changes are degenerate)", j, coef[j])
		}
	}
	var ss float64
	for i, x := range xs {
		var y float64
		for _, cf := range coef {
			y = y*x + cf
		}
		ss += (y - ys[i]) * (y - ys[i])
	}
	return coef, &PolyFit{Points: n, RMSE: math.Sqrt(ss / float64(n))}, nil
}

// ExperimentCalibration is the configuration a calibration of an experiment's model and
// sampling measures: model is the model's description, weights its weights hash, prompts its
// captions' id ("" for class labels), samples the number of calibration samples.
func ExperimentCalibration(e *experiments.Experiment, model, weights, backend, prompts string, samples int) Config {
	guide := harness.DefaultGuideChannels
	if e.Sampling.Guide == experiments.GuideAll {
		guide = diffusion.GuidanceAll
	}
	return Config{Model: model, Weights: weights, Method: "none", Sampler: e.Sampling.Sampler, Steps: e.Sampling.Steps,
		CFGScale: e.Sampling.CFG, Guide: guide, Seed: e.Sampling.Seed, NumSamples: samples, Labels: e.Sampling.Labels,
		Prompts: prompts, Backend: backend}
}
