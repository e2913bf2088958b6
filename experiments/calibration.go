package experiments

import (
	"slices"

	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/methods"
)

// calibrationReaders are the methods whose plans depend on a calibration (methods.Env.Calibration):
// only they receive [model] calibration, so adding a calibration to a file leaves the other
// configurations' hashes, and their stored runs, as they were.
var calibrationReaders = map[string]bool{"teacache": true, "magcache": true}

func calibrationReaderNames() []string {
	var out []string
	for n := range calibrationReaders {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// ReadsCalibration tells whether a method's plans depend on a calibration.
func ReadsCalibration(method string) bool { return calibrationReaders[method] }

// Calibration is a calibration file an experiment names.
type Calibration struct {
	Path string
	*methods.Calibration
}

// readCalibration reads the calibration file of a table's `calibration` key and checks it
// against the experiment's sampling (the model is checked once it is resolved, before anything
// runs); nil when the key is absent, the file is unusable (a problem is then recorded) or the
// experiment was loaded with NoCalibration.
func (e *Experiment) readCalibration(t *table, steps string) *Calibration {
	path, ok := t.pathValue("calibration")
	if !ok || e.noCalibration {
		return nil
	}
	c, err := methods.LoadCalibration(path)
	if err != nil {
		t.errf("calibration", "%v (write one with `runbench calibrate`)", err)
		return nil
	}
	s := e.Sampling
	if sched, err := diffusion.NewSchedule(1000, steps); err == nil && s.Sampler != "" {
		// The model is compared with itself: only the runner knows the resolved one.
		if err := c.Check(c.Model, s.Sampler, sched.Steps(), s.CFG); err != nil {
			t.errf("calibration", "%v", err)
			return nil
		}
	}
	return &Calibration{Path: path, Calibration: c}
}
