package methods

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
)

// Calibration is what `runbench calibrate` measured on one model, sampler, step count and CFG
// scale: the data some threshold caches need besides their parameters (TeaCache's rescale
// polynomial, MagCache's magnitude ratios). It is only valid for that setting (Check).
type Calibration struct {
	Model   string  `json:"model"`            // the model's id, as the runner names it
	Sampler string  `json:"sampler"`          // the sampler, as --sampler spells it
	Steps   int     `json:"steps"`            // sampling steps (model calls)
	CFG     float64 `json:"cfg"`              // classifier-free guidance scale
	Images  int     `json:"images,omitempty"` // images the statistics were measured on
	// TeaCache is TeaCache's rescale polynomial, highest degree first (numpy.poly1d's order): it
	// maps the relative L1 change of block 0's modulated input between consecutive calls to that
	// of the model output, as the reference fits it.
	TeaCache []float64 `json:"teacache,omitempty"`
	// MagRatios are MagCache's magnitude ratios, one per call k = 0 … Steps−1: the mean over
	// tokens of ‖r_k‖ / ‖r_{k−1}‖, r the whole block stack's residual (output − input) and the
	// norm over channels; MagRatios[0] = 1 (there is no call before the first).
	MagRatios []float64 `json:"mag_ratios,omitempty"`
	// FBCacheDiff are quantiles, over calls 1 … Steps−1, of First-Block Cache's statistic (the
	// relative L1 change of block 0's residual between consecutive calls): a guide to thresholds.
	FBCacheDiff []Quantile `json:"fbcache_diff,omitempty"`

	path string // where it was read from, for messages
}

// Quantile is the value of a statistic at quantile Q (0 … 1).
type Quantile struct {
	Q     float64 `json:"q"`
	Value float64 `json:"value"`
}

// LoadCalibration reads and validates a calibration file (JSON).
func LoadCalibration(path string) (*Calibration, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("calibration: %w", err)
	}
	c := &Calibration{}
	if err := json.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("calibration %s: %w", path, err)
	}
	c.path = path
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Write saves the calibration as indented JSON.
func (c *Calibration) Write(path string) error {
	if err := c.Validate(); err != nil {
		return err
	}
	data, err := json.MarshalIndent(c, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("calibration: %w", err)
	}
	return nil
}

func (c *Calibration) name() string {
	if c.path != "" {
		return "calibration " + c.path
	}
	return "calibration"
}

// Validate checks that the file describes a setting and that its numbers are usable.
func (c *Calibration) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if strings.TrimSpace(c.Model) == "" {
		bad("no model")
	}
	if strings.TrimSpace(c.Sampler) == "" {
		bad("no sampler")
	}
	if c.Steps < 1 {
		bad("steps %d (want ≥ 1)", c.Steps)
	}
	if !finite(c.CFG) {
		bad("cfg %v", c.CFG)
	}
	for i, x := range c.TeaCache {
		if !finite(x) {
			bad("teacache coefficient %d is %v", i, x)
		}
	}
	if len(c.MagRatios) > 0 && len(c.MagRatios) != c.Steps {
		bad("%d magnitude ratios for %d steps (want one per call)", len(c.MagRatios), c.Steps)
	}
	for i, x := range c.MagRatios {
		// A ratio of norms: ≤ 0 or not finite means the measurement went wrong.
		if !finite(x) || x <= 0 {
			bad("magnitude ratio %d is %v (want a positive number)", i, x)
		}
	}
	for i, q := range c.FBCacheDiff {
		if !(q.Q >= 0 && q.Q <= 1) || !finite(q.Value) {
			bad("fbcache_diff quantile %d: q=%v value=%v", i, q.Q, q.Value)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s: %w", c.name(), errors.Join(errs...))
	}
	return nil
}

// Check refuses a calibration measured on another model, sampler, step count or CFG scale
// (the weights and the step spec are the runner's to compare: runner.CheckCalibration).
func (c *Calibration) Check(model, sampler string, steps int, cfg float64) error {
	var diff []string
	if c.Model != model {
		diff = append(diff, fmt.Sprintf("model %q (this run: %q)", c.Model, model))
	}
	if c.Sampler != sampler {
		diff = append(diff, fmt.Sprintf("sampler %s (this run: %s)", c.Sampler, sampler))
	}
	if c.Steps != steps {
		diff = append(diff, fmt.Sprintf("%d steps (this run: %d)", c.Steps, steps))
	}
	// Both come from decimal text, so equal settings give equal floats up to rounding.
	if math.Abs(c.CFG-cfg) > 1e-9*max(1, math.Abs(cfg)) {
		diff = append(diff, fmt.Sprintf("CFG %g (this run: %g)", c.CFG, cfg))
	}
	if len(diff) > 0 {
		return fmt.Errorf("%s was measured with %s: run `runbench calibrate` for this run's setting",
			c.name(), strings.Join(diff, ", "))
	}
	return nil
}
