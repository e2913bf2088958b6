// Package runner is the top floor of the harness: it turns configurations into stored results —
// one run (Run: batches, resume, shards, decoding, features, timings), sweeps of an experiment's
// configurations (RunSweep) and the metrics computed from stored features and images. It stands
// on harness (the sampling loop), methods, metrics and the store.
package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/gomlx/gomlx/backends"

	"github.com/cachebench/cachebench/harness"
	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/harness/store"
	"github.com/cachebench/cachebench/methods"
	"github.com/cachebench/cachebench/metrics"
)

// Model is what the runner samples: a denoiser that also counts the FLOPs of its plans.
type Model interface {
	hook.Model
	hook.FLOPsCounter
	Backend() backends.Backend
}

// Config is everything that changes the samples of a run; its canonical JSON hash keys the run,
// so the batch size and the shard split (which change nothing) are not in it.
type Config struct {
	Model      string         `json:"model"`
	Weights    string         `json:"weights_sha256"`
	Method     string         `json:"method"`
	Params     map[string]any `json:"params,omitempty"`
	Sampler    string         `json:"sampler"`
	Steps      string         `json:"steps"`
	CFGScale   float64        `json:"cfg_scale"`
	Guide      int            `json:"guide_channels"`
	Seed       int64          `json:"seed"`
	NumSamples int            `json:"num_samples"`
	Labels     []int64        `json:"labels,omitempty"` // cycled over the samples; nil = drawn from (seed, index)
	// Prompts identifies the captions of a text-conditioned model (the prompt file's and the
	// features' content hashes): sample i takes prompt i mod P, its label is that index.
	Prompts string `json:"prompts,omitempty"`
	Backend string `json:"backend"`
	// Features names the feature extractor whose output is stored with every sample (nil: none);
	// the stored features are results too, so another extractor is another run.
	Features *FeatureSpec `json:"features,omitempty"`
	// VAE identifies the decoder that turns latents into the stored images ("" = none: latents
	// are stored as they are); another decoder is another run.
	VAE string `json:"vae,omitempty"`
	// Calibration identifies the calibration the method reads (CalibrationID; "" = none):
	// another calibration is another run.
	Calibration string `json:"calibration,omitempty"`
}

// ImageDecoder turns the latents a model samples into images (the Stable Diffusion VAE decoder).
type ImageDecoder interface {
	// ID names the decoder and its weights (e.g. "sd-vae sha256:…"): Config.VAE.
	ID() string
	// ImageShape is the shape of the image decoded from a latent of the given shape.
	ImageShape(c, h, w int) (ic, ih, iw int, err error)
	// Decode turns n latents [n, c, h, w], as the sampler returns them, into n images
	// [n, ic, ih, iw] in the model's [−1, 1] range (unclamped).
	Decode(latent []float32, n int) ([]float32, error)
}

// Job is one configuration to sample into a results database.
type Job struct {
	Config
	RawParams map[string]string // the method's parameters as given (validated into Config.Params)
	Model     Model
	BatchSize int
	OutDir    string        // where images (PNG) or latents (safetensors) are written
	DB        *store.DB     // where the run, its samples and timings are recorded
	Shard     Shard         // which part of the sample index range this process does
	Compare   bool          // also time method none on every batch (realized speedup)
	Record    harness.Level // step_stats recording (harness.RecordOff, harness.RecordLight, harness.RecordFull)
	Audit     int           // images per batch audited for cache error (shadow full passes)
	// Extractor computes the features of every batch's images (Config.Features names it).
	Extractor metrics.Extractor
	// Decoder, when set, decodes every batch's latents into images (Config.VAE names it), in
	// chunks of DecodeBatch images (0: the sampling batch); images, not latents, are then stored
	// and fed to the extractor.
	Decoder     ImageDecoder
	DecodeBatch int
	// Prompts are the caption texts of Config.Prompts, in the order the model's labels index
	// them (stored with every sample).
	Prompts []string
	// Calibration is the calibration Config.Calibration names, checked against the model,
	// weights, sampler, steps and CFG before anything is stored.
	Calibration *CalibrationFile
	// DiscardOutputs deletes each sample's file once hashed (the row keeps the hash; large sweeps).
	DiscardOutputs bool
	GitRev         string
	Progress       func(done, total int)
}

// Shard selects the contiguous part I of N of the sample index range.
type Shard struct{ I, N int }

// Range returns the sample indices [lo, hi) of a shard of n samples (the whole range if unset).
func (s Shard) Range(n int) (lo, hi int) {
	if s.N <= 1 {
		return 0, n
	}
	return s.I * n / s.N, (s.I + 1) * n / s.N
}

// JobResult is what a job did.
type JobResult struct {
	Run    store.Run
	Done   int             // images generated now (0 when everything was already done)
	Timing harness.Timing  // of this invocation
	Base   *harness.Timing // method none on the same batches, with Job.Compare
	// Steady and BaseSteady leave out the first batch of this invocation, whose first executions
	// of each graph (allocations, autotuning on a JIT backend) are not the steady state; both are
	// empty when there was one batch.
	Steady, BaseSteady harness.Timing
}

// Run samples every missing image of the job's shard, batch by batch: each batch is one
// transaction (samples, timings, batch marker), so a killed run resumes at the first missing
// image and a cancelled context stops after the batch in flight.
func Run(ctx context.Context, job Job) (*JobResult, error) {
	r, err := prepare(job)
	if err != nil {
		return nil, err
	}
	res := &JobResult{Run: r.run}
	batches, total, err := r.missing()
	if err != nil || total == 0 {
		return res, err
	}
	if err := os.MkdirAll(job.OutDir, 0o755); err != nil {
		return nil, err
	}
	if err := job.DB.SetStatus(r.run.ID, store.StatusRunning); err != nil {
		return nil, err
	}
	var base harness.Timing
	for _, idx := range batches {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		b, err := r.sample(ctx, idx)
		if err != nil {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				_ = job.DB.SetStatus(r.run.ID, store.StatusFailed)
			}
			return res, err
		}
		if job.Compare && r.c.Method != "none" {
			b.req.Recorder = nil
			bb, err := TimeBaseline(context.WithoutCancel(ctx), job.Model, b.req)
			if err != nil {
				return res, err
			}
			base.Merge(*bb)
			if res.Done > 0 {
				res.BaseSteady.Merge(*bb)
			}
		}
		if err := r.commit(b); err != nil {
			return res, err
		}
		if res.Done > 0 {
			res.Steady.Merge(b.timing)
		}
		res.Done += len(idx)
		res.Timing.Merge(b.timing)
		if job.Progress != nil {
			job.Progress(res.Done, total)
		}
	}
	if job.Compare && r.c.Method != "none" {
		res.Base = &base
	}
	if all, err := job.DB.SampleIndices(r.run.ID); err == nil && len(all) == r.c.NumSamples {
		return res, job.DB.SetStatus(r.run.ID, store.StatusDone)
	}
	return res, nil
}

// jobRun is a job checked against its model and recorded in the store.
type jobRun struct {
	job  Job
	c    Config // resolved (defaults filled in, backend named)
	run  store.Run
	smp  sampler
	spec hook.Spec // what the model samples
	img  hook.Spec // what is stored: the samples, or their decoded images
}

// prepare checks everything about a job that can be checked before anything is stored, and
// records the run.
func prepare(job Job) (*jobRun, error) {
	r := &jobRun{job: job, c: job.Config, spec: job.Model.Spec()}
	c := &r.c
	var err error
	if r.smp, err = samplerFor(*c, IsUNet(job.Model)); err != nil {
		return nil, err
	}
	if c.NumSamples <= 0 || job.BatchSize <= 0 {
		return nil, fmt.Errorf("%d samples in batches of %d: both must be positive", c.NumSamples, job.BatchSize)
	}
	if job.Shard.N > 1 && (job.Shard.I < 0 || job.Shard.I >= job.Shard.N) {
		return nil, fmt.Errorf("shard %d/%d: want 0 ≤ i < n", job.Shard.I, job.Shard.N)
	}
	if (c.Prompts != "") != (job.Prompts != nil) || (job.Prompts != nil && len(job.Prompts) != r.spec.NumClasses) {
		return nil, fmt.Errorf("prompts: the configuration names %q, the job holds %d prompts and the model %d captions", c.Prompts, len(job.Prompts), r.spec.NumClasses)
	}
	if c.Prompts != "" && c.Labels != nil {
		return nil, fmt.Errorf("labels: a prompted run's sample i takes prompt i mod P; give no labels")
	}
	for _, y := range c.Labels {
		if y < 0 || y >= int64(r.spec.NumClasses) {
			return nil, fmt.Errorf("label %d out of range [0, %d)", y, r.spec.NumClasses)
		}
	}
	if c.Backend == "" {
		c.Backend = engine.Describe(job.Model.Backend())
	}
	r.img = r.spec
	if (job.Decoder != nil) != (c.VAE != "") || (job.Decoder != nil && job.Decoder.ID() != c.VAE) {
		return nil, fmt.Errorf("vae: the configuration names decoder %q but the job's is %v", c.VAE, decoderID(job.Decoder))
	}
	if job.Decoder != nil {
		if r.img.Channels, r.img.Height, r.img.Width, err = job.Decoder.ImageShape(r.spec.Channels, r.spec.Height, r.spec.Width); err != nil {
			return nil, fmt.Errorf("vae: %w", err)
		}
	}
	if err := checkFeatures(c.Features, job.Extractor, r.img); err != nil {
		return nil, err
	}
	if err := checkJobCalibration(*c, job.Calibration); err != nil {
		return nil, err
	}
	resolved, cj, err := ResolveConfig(*c, job.RawParams)
	if err != nil {
		return nil, err
	}
	r.c = resolved
	// Build the method once for this model before anything is stored: a setting the model cannot
	// take (Δ-DiT blocks > depth with weights whose depth only loading reveals) is one error here,
	// not a run left "running" after its first batch failed.
	n := min(job.BatchSize, r.c.NumSamples)
	if _, err := r.policy(make([]int, n)); err != nil {
		return nil, err
	}
	r.run, _, err = job.DB.EnsureRun(store.Run{ConfigJSON: string(cj), Method: r.c.Method, Model: r.c.Model, WeightsHash: r.c.Weights,
		Sampler: r.c.Sampler, Steps: r.smp.steps(), CFGScale: r.c.CFGScale, Seed: r.c.Seed, NumSamples: r.c.NumSamples,
		BatchSize: job.BatchSize, Backend: r.c.Backend, Device: engine.Describe(job.Model.Backend()), GitRev: job.GitRev})
	return r, err
}

// sampler is what a configuration samples with: DDPM/DDIM on a respaced schedule, DPM-Solver++
// (PixArt-α's), or for Stable Diffusion's UNet ldm's PLMS or DDIM on the LDM schedule.
type sampler struct {
	kind   diffusion.Kind
	sched  *diffusion.Schedule    // DDPM and DDIM; with DPM-Solver++, as many steps (the methods count them)
	solver *diffusion.DPMSolver   // DPM-Solver++ only
	plms   *diffusion.PLMSSampler // the UNet's: PLMS, or ldm's DDIM (the same machine, one call per step)
}

// steps is the number of sampler steps (PLMS makes one model call more: its first step makes two).
func (s sampler) steps() int {
	if s.plms != nil {
		return s.plms.Steps()
	}
	return s.sched.Steps()
}

// request is a harness request with the sampler's fields set. The UNet's samplers run as the
// harness's PLMS machine, which carries ldm's DDIM too.
func (s sampler) request() harness.Request {
	kind := s.kind
	if s.plms != nil {
		kind = diffusion.PLMS
	}
	return harness.Request{Sampler: kind, Schedule: s.sched, Solver: s.solver, PLMS: s.plms}
}

// IsUNet tells whether a model is Stable Diffusion's UNet (its layout lists its blocks), which
// samples on the LDM schedule it was trained with: ddim there is ldm's DDIM, and plms is its only
// other sampler.
func IsUNet(m interface{ Layout() hook.Layout }) bool { return m.Layout().Blocks != nil }

// samplerFor is the sampler a configuration names for a model: samplerOf's for the transformer
// stacks; for the UNet (unet) ldm's PLMS or DDIM (η = 0) on Stable Diffusion's schedule, a plain
// step count, guidance on every ε channel.
func samplerFor(c Config, unet bool) (sampler, error) {
	kind, err := diffusion.ParseKind(c.Sampler)
	if err != nil {
		return sampler{}, err
	}
	if !unet {
		if kind == diffusion.PLMS {
			return sampler{}, fmt.Errorf("sampler plms samples Stable Diffusion's UNet (the LDM schedule); this model samples with ddpm, ddim or dpmpp")
		}
		s := sampler{}
		s.kind, s.sched, s.solver, err = samplerOf(c)
		return s, err
	}
	p, err := NewLDMSampler(kind, c.Steps)
	if err != nil {
		return sampler{}, err
	}
	if c.Guide != 0 && c.Guide != diffusion.GuidanceAll {
		return sampler{}, fmt.Errorf("guide channels %d: ldm's %s guides every ε channel; guiding %d is DiT's DDPM/DDIM convention", c.Guide, kind, c.Guide)
	}
	return sampler{kind: kind, plms: p}, nil
}

// NewLDMSampler is the UNet's sampler for a configuration's steps (a plain count): ldm's PLMS, or
// ldm's DDIM (η = 0, PLMS's timesteps and update, one call per step).
func NewLDMSampler(kind diffusion.Kind, steps string) (*diffusion.PLMSSampler, error) {
	if kind != diffusion.PLMS && kind != diffusion.DDIM {
		return nil, fmt.Errorf("sampler %s: Stable Diffusion's UNet samples with plms or ddim (ldm's, on its own schedule)", kind)
	}
	n, err := strconv.Atoi(steps)
	if err != nil {
		return nil, fmt.Errorf("steps %q: the UNet's %s takes a plain step count (50), not a respacing spec", steps, kind)
	}
	var p *diffusion.PLMSSampler
	if kind == diffusion.DDIM {
		p, err = diffusion.NewLDMDDIM(n)
	} else {
		p, err = diffusion.NewPLMS(n)
	}
	if err != nil {
		return nil, fmt.Errorf("steps: %w", err)
	}
	return p, nil
}

// samplerOf is the sampler, schedule and (DPM-Solver++ only) solver of a configuration that calls
// the model once per step (DDPM, DDIM, DPM-Solver++): what the threshold caches' calibration and
// the runs of the transformer stacks sample with.
func samplerOf(c Config) (kind diffusion.Kind, sched *diffusion.Schedule, solver *diffusion.DPMSolver, err error) {
	if kind, err = diffusion.ParseKind(c.Sampler); err != nil {
		return
	}
	if kind == diffusion.PLMS {
		// PLMS calls the model twice at its first step, and samples the UNet, which no
		// threshold cache plans.
		err = fmt.Errorf("sampler plms: calibration and threshold caches run with ddpm, ddim or dpmpp (one model call per step); PLMS samples Stable Diffusion's UNet, whose methods read no calibration")
		return
	}
	if kind == diffusion.DPMSolverPP {
		// A plain count only: respacing specs are DDPM/DDIM's. The schedule of as many steps
		// still counts the steps for the store and the methods.
		if solver, err = diffusion.ParseDPMSolver(c.Steps); err != nil {
			return
		}
		if c.Guide != 0 && c.Guide != diffusion.GuidanceAll {
			err = fmt.Errorf("guide channels %d: DPM-Solver++ guides every ε channel (PixArt-α's wrapper); guiding %d is DiT's DDPM/DDIM convention", c.Guide, c.Guide)
			return
		}
	}
	if sched, err = diffusion.NewSchedule(1000, c.Steps); err != nil {
		err = fmt.Errorf("steps: %w", err)
	}
	return
}

// policy builds the method for a batch of the given sample indices (a fresh instance per batch:
// methods keep per-batch state).
func (r *jobRun) policy(idx []int) (methods.Method, error) {
	rows := len(idx)
	if r.c.CFGScale > 1 {
		rows *= 2
	}
	env := methods.Env{Layout: r.job.Model.Layout(), Steps: r.smp.steps(), Rows: rows, Seed: r.c.Seed, Samples: idx}
	if r.job.Calibration != nil {
		env.Calibration = &r.job.Calibration.Calibration
	}
	m, _, err := methods.New(r.c.Method, r.job.RawParams, env)
	return m, err
}

// missing returns the batches of this shard's samples the store does not hold, and their count.
func (r *jobRun) missing() ([][]int, int, error) {
	done, err := r.job.DB.SampleIndices(r.run.ID)
	if err != nil {
		return nil, 0, err
	}
	have := map[int]bool{}
	for _, i := range done {
		have[i] = true
	}
	lo, hi := r.job.Shard.Range(r.c.NumSamples)
	batches := missingBatches(lo, hi, r.job.BatchSize, have)
	total := 0
	for _, b := range batches {
		total += len(b)
	}
	return batches, total, nil
}

// sampled is one batch sampled and not yet stored.
type sampled struct {
	idx    []int
	labels []int64
	req    harness.Request // as sampled (for timing method none on the same inputs)
	out    harness.Result
	timing harness.Timing
	batch  store.Batch // timings and step statistics so far
}

// sample runs the reverse process for the samples idx: noise and labels from (seed, index) alone.
func (r *jobRun) sample(ctx context.Context, idx []int) (*sampled, error) {
	c, job := r.c, r.job
	B := len(idx)
	xInit, ys, noise := sampleInputs(c, r.spec, len(job.Prompts), idx)
	pol, err := r.policy(idx)
	if err != nil {
		return nil, err
	}
	var cache *hook.Cache
	if methods.NeedsCache(c.Method) {
		cache = hook.NewCache(job.Model.Layout())
	}
	b := &sampled{idx: idx, labels: ys}
	full := hook.FullPlan(job.Model.Layout())
	b.req = r.smp.request()
	b.req.CFGScale, b.req.GuideChannels, b.req.XInit, b.req.Labels = float32(c.CFGScale), c.Guide, xInit, ys
	b.req.Policy, b.req.Cache, b.req.Noise = pol, cache, noise
	b.req.OnStep = func(s harness.StepInfo) error { b.timing.Add(s, job.Model, full); return nil }
	var rec *harness.Recorder
	if job.Record != harness.RecordOff {
		rec = harness.NewRecorder(job.Model.Backend(), job.Record, idx, job.Audit)
		b.req.Recorder = rec
	}
	t0 := time.Now()
	// The batch in flight finishes even when ctx ends (SIGINT): its work is committed by commit
	// and the loop stops before the next batch.
	b.out, err = harness.Sample(context.WithoutCancel(ctx), job.Model, b.req)
	if cache != nil {
		cache.Reset()
	}
	if rec != nil {
		rec.Close()
	}
	if err != nil {
		return nil, err
	}
	b.timing.Images = B
	b.batch = store.Batch{Index: idx[0], FirstSample: idx[0], NumSamples: B, WallMS: float64(time.Since(t0).Microseconds()) / 1000,
		Timings: b.timing.StoreRows(), FLOPs: b.timing.FLOPs}
	if rec != nil {
		b.batch.StepStats = rec.Stats()
	}
	b.batch.CacheBytes = b.timing.CacheBytes
	return b, nil
}

// sampleInputs is what the samples idx start from — initial noise, labels (prompt indices for a
// prompted model with prompts captions) and the DDPM noise of every call —, from (seed, index)
// alone, so that a sample is the same whatever batch or shard it is drawn in.
func sampleInputs(c Config, spec hook.Spec, prompts int, idx []int) (xInit []float32, ys []int64, noise func(int, []float32) error) {
	B, per := len(idx), spec.Channels*spec.Height*spec.Width
	streams := make([]*diffusion.Noise, B)
	xInit = make([]float32, B*per)
	ys = make([]int64, B)
	for j, i := range idx {
		streams[j] = diffusion.NewNoise(c.Seed, i)
		streams[j].Fill(xInit[j*per : (j+1)*per])
		switch {
		case c.Prompts != "":
			ys[j] = int64(i % prompts)
		case c.Labels != nil:
			ys[j] = c.Labels[i%len(c.Labels)]
		default:
			ys[j] = int64(diffusion.Label(c.Seed, i, spec.NumClasses))
		}
	}
	// Each image's stream yields its own row's noise, then its null row's: batch-independent.
	noise = func(_ int, dst []float32) error {
		for j := range B {
			streams[j].Fill(dst[j*per : (j+1)*per])
			if len(dst) == 2*B*per {
				streams[j].Fill(dst[(B+j)*per : (B+j+1)*per])
			}
		}
		return nil
	}
	return xInit, ys, noise
}

// commit decodes a sampled batch (with a VAE), extracts its features, writes its images and
// commits it as one transaction.
func (r *jobRun) commit(b *sampled) error {
	job, B := r.job, len(b.idx)
	fail := func(err error) error {
		_ = job.DB.SetStatus(r.run.ID, store.StatusFailed)
		return err
	}
	images := b.out.Sample
	if job.Decoder != nil {
		t0 := time.Now()
		var err error
		per := r.spec.Channels * r.spec.Height * r.spec.Width
		if images, err = decodeChunks(job.Decoder, b.out.Sample, B, per, job.DecodeBatch); err != nil {
			return fail(err)
		}
		b.timing.Decode = time.Since(t0)
		b.batch.Timings = append(b.batch.Timings, store.Timing{Scope: "stage", Name: "decode", Count: B, TotalMS: float64(b.timing.Decode.Microseconds()) / 1000})
	}
	t1 := time.Now()
	feats, err := batchFeatures(job.Extractor, r.c.Features, images, B, r.img)
	if err != nil {
		return fail(err)
	}
	if feats != nil {
		b.timing.Features = time.Since(t1)
		b.batch.Timings = append(b.batch.Timings, store.Timing{Scope: "stage", Name: "features", Count: B, TotalMS: float64(b.timing.Features.Microseconds()) / 1000})
	}
	ipx := r.img.Channels * r.img.Height * r.img.Width
	for j, i := range b.idx {
		path, hash, err := WriteSample(job.OutDir, i, images[j*ipx:(j+1)*ipx], r.img.Channels, r.img.Height, r.img.Width)
		if err != nil {
			return err
		}
		if job.DiscardOutputs {
			if err := os.Remove(path); err != nil {
				return err
			}
			path = ""
		}
		label := int(b.labels[j])
		s := store.Sample{Index: i, Label: &label, NoiseSeed: r.c.Seed, OutputPath: path, OutputHash: hash}
		if job.Prompts != nil {
			s.Prompt = &job.Prompts[label]
		}
		if feats != nil {
			s.Features = feats[j]
		}
		b.batch.Samples = append(b.batch.Samples, s)
	}
	return job.DB.CommitBatch(r.run.ID, b.batch)
}

// decodeChunks decodes a batch's n latents (per values each) in chunks of at most size images
// (0: all at once), so the decoder's memory is bounded whatever the sampling batch.
func decodeChunks(d ImageDecoder, latents []float32, n, per, size int) ([]float32, error) {
	if size <= 0 {
		size = n
	}
	var out []float32
	for lo := 0; lo < n; lo += size {
		hi := min(n, lo+size)
		imgs, err := d.Decode(latents[lo*per:hi*per], hi-lo)
		if err != nil {
			return nil, fmt.Errorf("vae: decode images %d..%d of the batch: %w", lo, hi-1, err)
		}
		out = append(out, imgs...)
	}
	return out, nil
}

func decoderID(d ImageDecoder) string {
	if d == nil {
		return "none"
	}
	return fmt.Sprintf("%q", d.ID())
}

// ResolveConfig validates a configuration's method parameters into c.Params (defaults filled in,
// so equal settings hash equally however they were written) and returns it with its canonical
// JSON, whose hash keys the run.
func ResolveConfig(c Config, raw map[string]string) (Config, []byte, error) {
	info, err := methods.Lookup(c.Method)
	if err != nil {
		return c, nil, err
	}
	if c.Params, err = info.Parse(raw); err != nil {
		return c, nil, err
	}
	cj, err := store.CanonicalJSON(c)
	return c, cj, err
}

// missingBatches groups the missing sample indices of [lo, hi) into batches of consecutive
// indices of at most size.
func missingBatches(lo, hi, size int, have map[int]bool) [][]int {
	var out [][]int
	var cur []int
	for i := lo; i < hi; i++ {
		if have[i] {
			if len(cur) > 0 {
				out, cur = append(out, cur), nil
			}
			continue
		}
		cur = append(cur, i)
		if len(cur) == size {
			out, cur = append(out, cur), nil
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// TimeBaseline runs method none on the same request and returns its timing.
func TimeBaseline(ctx context.Context, m Model, req harness.Request) (*harness.Timing, error) {
	var t harness.Timing
	full := hook.FullPlan(m.Layout())
	req.Policy, req.Cache = nil, nil
	req.OnStep = func(s harness.StepInfo) error { t.Add(s, m, full); return nil }
	if _, err := harness.Sample(ctx, m, req); err != nil {
		return nil, err
	}
	t.Images = len(req.Labels)
	return &t, nil
}
