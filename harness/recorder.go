package harness

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/gomlx/gomlx/backends"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/harness/diffusion"
	"github.com/cachebench/cachebench/harness/hook"
	"github.com/cachebench/cachebench/harness/store"
)

// Level is how much a run records in step_stats.
type Level int

const (
	// RecordOff records nothing (and changes no bit of any sample).
	RecordOff Level = iota
	// RecordLight records batch-level dynamics, cache errors, token counts and FLOPs.
	RecordLight
	// RecordFull also records per-sample rows and the recomputed token indices.
	RecordFull
)

// ParseLevel reads off, light or full.
func ParseLevel(s string) (Level, error) {
	switch s {
	case "off":
		return RecordOff, nil
	case "light", "":
		return RecordLight, nil
	case "full":
		return RecordFull, nil
	}
	return 0, fmt.Errorf("record level %q: want off, light or full", s)
}

// Recorder measures, at every call, each module's feature dynamics (the change of its output
// since the previous call: ‖f_t − f_{t−1}‖ / ‖f_{t−1}‖, in L1 and L2, and per token), and on an
// audit subset the cache error of every module that was not fully computed against a shadow
// full computation on the same input, plus the deviation of the sampler state from the uncached
// trajectory that started from the same noise.
//
// Statistics are reduced over channels on the device; only per-token sums travel to the host.
type Recorder struct {
	level   Level
	backend backends.Backend
	images  []int // sample index of each image (rows 0..B−1, then their null rows under CFG)
	audit   int   // audited images (the first ones of the batch)

	call, step int
	timestep   int64
	rows       int
	plan       *hook.Plan

	prev map[[2]int]*tensors.Tensor // each module's output at the previous call (device copy)
	used map[[2]int]*tensors.Tensor // this call's used outputs of the audit rows, for the error
	// On the pure-Go backend device memory is host memory: reductions in Go loops beat graph
	// calls of single-threaded elementwise ops, so previous outputs are kept as host slices.
	host      bool
	prevHost  map[[2]int][]float32
	usedHost  map[[2]int][]float32
	prevOut   []float32
	prevState []float32
	stats     []store.StepStat
	hookTime  time.Duration

	uncached                 []float32            // audit rows' state along the uncached trajectory
	advance                  stepper              // the uncached trajectory's sampler update
	plms                     *diffusion.PLMSState // the uncached trajectory under PLMS (its calls and steps differ)
	outRef, stateRef         []float32            // this call's references (shadow output, uncached state)
	outRefRows, stateRefRows []int

	diffExec, copyExec, gatherExec *Exec
}

// NewRecorder returns a recorder for a batch whose image rows are the given sample indices;
// audit > 0 audits the first audit images with shadow computations.
func NewRecorder(b backends.Backend, level Level, images []int, audit int) *Recorder {
	r := &Recorder{level: level, backend: b, images: images, audit: min(audit, len(images)),
		prev: map[[2]int]*tensors.Tensor{}, used: map[[2]int]*tensors.Tensor{},
		host: b.String() == "go", prevHost: map[[2]int][]float32{}, usedHost: map[[2]int][]float32{}}
	// (a, b) → per (row, token): Σ|a−b|, Σ|b|, Σ(a−b)², Σb² over channels.
	r.diffExec = MustNewExec(b, func(in []*Node) []*Node {
		a, bb := in[0], in[1]
		d := Sub(a, bb)
		return []*Node{ReduceSum(Abs(d), -1), ReduceSum(Abs(bb), -1), ReduceSum(Square(d), -1), ReduceSum(Square(bb), -1)}
	}).SetMaxCache(-1)
	r.copyExec = MustNewExec(b, func(a *Node) *Node { return Add(a, ScalarZero(a.Graph(), a.DType())) }).SetMaxCache(-1)
	r.gatherExec = MustNewExec(b, func(a, idx *Node) *Node { return Gather(a, InsertAxes(idx, -1)) }).SetMaxCache(-1)
	return r
}

// Stats returns the rows recorded so far (the runner commits them with the batch).
func (r *Recorder) Stats() []store.StepStat { return r.stats }

// Close releases the recorder's device tensors.
func (r *Recorder) Close() {
	for k, t := range r.prev {
		t.MustFinalizeAll()
		delete(r.prev, k)
	}
	r.dropUsed()
}

func (r *Recorder) dropUsed() {
	for k, t := range r.used {
		t.MustFinalizeAll()
		delete(r.used, k)
	}
	clear(r.usedHost)
}

// begin starts a call.
func (r *Recorder) begin(call, step int, t int64, plan *hook.Plan, rows int) {
	r.call, r.step, r.timestep, r.plan, r.rows = call, step, t, plan, rows
	r.dropUsed()
}

// auditRows are the batch rows of the audited images: the first ones and, under CFG, their null rows.
func (r *Recorder) auditRows() []int32 {
	var out []int32
	for i := range r.audit {
		out = append(out, int32(i))
	}
	if r.rows == 2*len(r.images) {
		for i := range r.audit {
			out = append(out, int32(len(r.images)+i))
		}
	}
	return out
}

// module is the model's Options.Modules hook: dynamics of every module, and a copy of the audit
// rows of every module that was not fully computed.
func (r *Recorder) module(block int, m hook.Module, a hook.Action, fresh int, out *tensors.Tensor) {
	defer func(t0 time.Time) { r.hookTime += time.Since(t0) }(time.Now())
	key := [2]int{block, int(m)}
	row := store.StepStat{Call: r.call, Step: r.step, Timestep: r.timestep, Block: block, Module: m.String(), Action: a.String(), FreshTokens: &fresh}
	if r.level == RecordFull && a == hook.Partial {
		if data, err := json.Marshal(r.plan.Blocks[block].Modules[m].Tokens); err == nil {
			row.Tokens = string(data)
		}
	}
	if out == nil { // a skipped block: no output, dynamics undefined
		r.stats = append(r.stats, row)
		return
	}
	var perRow []sums
	if r.host {
		cur := tensors.MustCopyFlatData[float32](out)
		if p, ok := r.prevHost[key]; ok {
			perRow = hostSums(cur, p, out.Shape().Dimensions)
		}
		r.prevHost[key] = cur
		if r.audit > 0 && a != hook.Full {
			pick := make([]int, 0, len(r.auditRows()))
			for _, row := range r.auditRows() {
				pick = append(pick, int(row))
			}
			r.usedHost[key] = subRows(cur, r.rows, pick)
		}
		r.emit(row, perRow, nil, true)
		return
	}
	if p, ok := r.prev[key]; ok {
		perRow = r.diff(out, p)
		p.MustFinalizeAll()
	}
	r.prev[key] = r.copyExec.MustExec(out)[0]
	r.emit(row, perRow, nil, true)
	if r.audit > 0 && a != hook.Full {
		r.used[key] = r.gatherExec.MustExec(out, tensors.FromFlatDataAndDimensions(r.auditRows(), len(r.auditRows())))[0]
	}
}

// hostSums reduces (a − b) over channels per (row, token) for [rows, N, D] host arrays.
func hostSums(a, b []float32, dims []int) []sums {
	rows, n, d := dims[0], dims[1], dims[2]
	out := make([]sums, rows)
	var wg sync.WaitGroup
	for r := range rows {
		wg.Go(func() {
			s := sums{make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)}
			for t := range n {
				var ad, ar, sd, sr float32
				base := (r*n + t) * d
				bs, as := b[base:base+d], a[base:base+d]
				for i, bv := range bs {
					df := as[i] - bv
					ar += abs32(bv)
					sr += bv * bv
					ad += abs32(df)
					sd += df * df
				}
				s.absD[t], s.absR[t], s.sqD[t], s.sqR[t] = ad, ar, sd, sr
			}
			out[r] = s
		})
	}
	wg.Wait()
	return out
}

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// shadow is the Options.Modules hook of the shadow full pass on the audit rows: the error of the
// output the real call used against the full computation.
func (r *Recorder) shadow(block int, m hook.Module, a hook.Action, _ int, out *tensors.Tensor) {
	key := [2]int{block, int(m)}
	var perRow []sums
	if r.host {
		used, ok := r.usedHost[key]
		if !ok || out == nil {
			return
		}
		perRow = hostSums(used, tensors.MustCopyFlatData[float32](out), out.Shape().Dimensions)
		delete(r.usedHost, key)
	} else {
		used, ok := r.used[key]
		if !ok || out == nil {
			return
		}
		perRow = r.diff(used, out)
		delete(r.used, key)
		used.MustFinalizeAll()
	}
	// Find the row already emitted for this module at this call and attach the error.
	for i := len(r.stats) - 1; i >= 0; i-- {
		s := &r.stats[i]
		if s.Call != r.call {
			break
		}
		if s.Block == block && s.Module == m.String() && s.Sample == nil {
			r.attachError(s, perRow, r.plan.Blocks[block].Modules[m])
			break
		}
	}
}

// sums are one row's per-token channel sums.
type sums struct{ absD, absR, sqD, sqR []float32 }

func (r *Recorder) diff(a, b *tensors.Tensor) []sums {
	o := r.diffExec.MustExec(a, b)
	flat := make([][]float32, 4)
	for i, t := range o {
		flat[i] = tensors.MustCopyFlatData[float32](t)
		t.MustFinalizeAll()
	}
	rows := a.Shape().Dimensions[0]
	n := len(flat[0]) / rows
	out := make([]sums, rows)
	for i := range out {
		sl := func(x []float32) []float32 { return x[i*n : (i+1)*n] }
		out[i] = sums{sl(flat[0]), sl(flat[1]), sl(flat[2]), sl(flat[3])}
	}
	return out
}

// emit appends the batch row (and, in full mode, one row per image) with dynamics from perRow.
func (r *Recorder) emit(row store.StepStat, perRow []sums, _ []int, dyn bool) {
	set := func(s *store.StepStat, rs []sums) {
		if len(rs) == 0 {
			return
		}
		l1, l2, tok := summarize(rs, nil)
		s.DynRelL1, s.DynRelL2, s.DynTok = l1, l2, tok
	}
	b := row
	set(&b, perRow)
	r.stats = append(r.stats, b)
	if r.level == RecordFull && len(perRow) > 0 {
		for i, idx := range r.images {
			s := row
			s.Sample = &idx
			set(&s, r.imageRows(perRow, i))
			s.Tokens = ""
			r.stats = append(r.stats, s)
		}
	}
}

// imageRows picks the rows of image i (its row and, under CFG, its null row).
func (r *Recorder) imageRows(rs []sums, i int) []sums {
	out := []sums{rs[i]}
	if len(rs) == 2*len(r.images) {
		out = append(out, rs[len(r.images)+i])
	}
	return out
}

// attachError sets the error fields of a batch row from the audit rows' sums, split into the
// recomputed and the cached tokens for a partial module.
func (r *Recorder) attachError(s *store.StepStat, rs []sums, mp hook.ModulePlan) {
	l1, l2, tok := summarize(rs, nil)
	s.ErrRelL1, s.ErrRelL2, s.ErrTok = l1, l2, tok
	if mp.Action != hook.Partial {
		return
	}
	audit := r.auditRows()
	fresh := make([]map[int]bool, len(rs))
	for j, row := range audit {
		fresh[j] = map[int]bool{}
		for _, t := range mp.Tokens[row] {
			fresh[j][int(t)] = true
		}
	}
	for _, want := range []bool{true, false} {
		var d, ref float64
		for j, x := range rs {
			for t := range x.sqD {
				if fresh[j][t] == want {
					d += float64(x.sqD[t])
					ref += float64(x.sqR[t])
				}
			}
		}
		if ref > 0 {
			v := math.Sqrt(d / ref)
			if want {
				s.ErrFreshRelL2 = &v
			} else {
				s.ErrCachedRelL2 = &v
			}
		}
	}
}

// summarize gives relative L1 and L2 over all rows and tokens, and the distribution over (row,
// token) of the per-token relative L2 change.
func summarize(rs []sums, _ []bool) (*float64, *float64, *store.TokenStats) {
	var aD, aR, sD, sR float64
	var per []float64
	for _, x := range rs {
		for t := range x.absD {
			aD += float64(x.absD[t])
			aR += float64(x.absR[t])
			sD += float64(x.sqD[t])
			sR += float64(x.sqR[t])
			if x.sqR[t] > 0 {
				per = append(per, math.Sqrt(float64(x.sqD[t])/float64(x.sqR[t])))
			}
		}
	}
	var l1, l2 *float64
	if aR > 0 {
		v := aD / aR
		l1 = &v
	}
	if sR > 0 {
		v := math.Sqrt(sD / sR)
		l2 = &v
	}
	return l1, l2, tokenStats(per)
}

// tokenStats are mean, standard deviation and percentiles (nearest rank) of per-token values.
func tokenStats(v []float64) *store.TokenStats {
	if len(v) == 0 {
		return nil
	}
	slices.Sort(v)
	var sum, sq float64
	for _, x := range v {
		sum += x
	}
	mean := sum / float64(len(v))
	for _, x := range v {
		sq += (x - mean) * (x - mean)
	}
	pct := func(p float64) float64 { return v[min(len(v)-1, int(math.Ceil(p*float64(len(v))))-1+boolInt(p == 0))] }
	return &store.TokenStats{Mean: mean, Std: math.Sqrt(sq / float64(len(v))), P50: pct(0.5), P90: pct(0.9), P99: pct(0.99)}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// hostRow records the dynamics (and, with ref, the error) of a host array [rows, C, H, W]
// treated as rows × one "token" per pixel position: the model output and the sampler state.
func (r *Recorder) hostRow(module string, cur, prev, ref []float32, refRows []int, flops *int64) {
	row := store.StepStat{Call: r.call, Step: r.step, Timestep: r.timestep, Block: -1, Module: module, FLOPs: flops}
	per := func(a, b []float32, rows []int) []sums {
		if b == nil {
			return nil
		}
		n := len(a) / max(1, len(rows))
		out := make([]sums, len(rows))
		for j := range rows {
			s := sums{absD: make([]float32, 1), absR: make([]float32, 1), sqD: make([]float32, 1), sqR: make([]float32, 1)}
			for i := j * n; i < (j+1)*n; i++ {
				d := float64(a[i]) - float64(b[i])
				s.absD[0] += float32(math.Abs(d))
				s.absR[0] += float32(math.Abs(float64(b[i])))
				s.sqD[0] += float32(d * d)
				s.sqR[0] += float32(float64(b[i]) * float64(b[i]))
			}
			out[j] = s
		}
		return out
	}
	all := make([]int, r.rows)
	for i := range all {
		all[i] = i
	}
	dyn := per(cur, prev, all)
	if dyn != nil {
		row.DynRelL1, row.DynRelL2, _ = summarize(dyn, nil)
	}
	if ref != nil {
		e := per(subRows(cur, r.rows, refRows), ref, refRows)
		row.ErrRelL1, row.ErrRelL2, _ = summarize(e, nil)
	}
	r.stats = append(r.stats, row)
}

// subRows picks rows of a flat [rows, …] array.
func subRows(x []float32, rows int, pick []int) []float32 {
	n := len(x) / rows
	out := make([]float32, 0, n*len(pick))
	for _, p := range pick {
		out = append(out, x[p*n:(p+1)*n]...)
	}
	return out
}

// takeHookTime returns (and resets) the time spent in the module hook during the last forward.
func (r *Recorder) takeHookTime() time.Duration {
	d := r.hookTime
	r.hookTime = 0
	return d
}

// audited runs the shadow full pass on the audit rows of the model input, attaching the cache
// error of every module that was not fully computed, and of the model output.
func (r *Recorder) audited(m hook.Model, in []float32, t []float64, y []int64, raw []float32, spec hook.Spec) error {
	if r.audit == 0 {
		r.dropUsed()
		return nil
	}
	rows := r.auditRows()
	pick := make([]int, len(rows))
	ta := make([]float64, len(rows))
	ya := make([]int64, len(rows))
	for j, row := range rows {
		pick[j], ta[j], ya[j] = int(row), t[row], y[row]
	}
	full, err := m.Forward(subRows(in, r.rows, pick), ta, ya, hook.Options{Modules: r.shadow})
	r.dropUsed()
	if err != nil {
		return err
	}
	r.outRef, r.outRefRows = full, pick
	return nil
}

// trajectory advances the uncached trajectory of the audit rows by one call (same noise) and
// keeps its state as the reference of the sampler state's deviation.
func (r *Recorder) trajectory(m hook.Model, req Request, call, i int, t []float64, y []int64, guide int, noise []float32, spec hook.Spec, x []float32) error {
	if r.audit == 0 {
		return nil
	}
	rows := r.auditRows()
	pick := make([]int, len(rows))
	ta := make([]float64, len(rows))
	ya := make([]int64, len(rows))
	for j, row := range rows {
		pick[j], ta[j], ya[j] = int(row), t[row], y[row]
	}
	if r.uncached == nil {
		r.uncached = subRows(x, r.rows, pick) // the state before the first update: the shared noise
		if req.Sampler == diffusion.PLMS {
			r.plms = req.PLMS.NewState(r.uncached)
		} else {
			r.advance = req.newStepper(spec)
		}
	}
	cfg := len(rows) == 2*r.audit && r.rows == 2*len(r.images)
	per := spec.Channels * spec.Height * spec.Width
	in := r.uncached
	if r.plms != nil {
		// PLMS evaluates its own states: the corrector call of the first step reads the predictor's.
		c, ok := r.plms.Next()
		if !ok || c.Call != call {
			return fmt.Errorf("uncached PLMS trajectory at call %d, the run at %d", c.Call, call)
		}
		in = c.X
	}
	if cfg {
		in = append(append(make([]float32, 0, len(in)), in[:r.audit*per]...), in[:r.audit*per]...)
	}
	out, err := m.Forward(in, ta, ya, hook.Options{})
	if err != nil {
		return err
	}
	if cfg {
		if err := diffusion.GuideCFG(out, len(rows), spec.OutChannels(), spec.Channels, guide, req.CFGScale); err != nil {
			return err
		}
	}
	if r.plms != nil {
		eps, err := diffusion.EpsChannels(out, len(rows), spec.OutChannels(), spec.Channels)
		if err != nil {
			return err
		}
		res, err := r.plms.Step(eps)
		if err != nil {
			return err
		}
		if res.Complete {
			r.uncached = res.X
			r.stateRef, r.stateRefRows = res.X, pick
		}
		return nil
	}
	var nz []float32
	if noise != nil {
		nz = subRows(noise, r.rows, pick)
	}
	res, err := r.advance(call, i, r.uncached, out, len(rows), nz)
	if err != nil {
		return err
	}
	r.uncached = res.X
	r.stateRef, r.stateRefRows = res.X, pick
	return nil
}

// endCall records the model output and the sampler state of the call (state nil: the call did
// not finish a sampler step — PLMS's first call — and only its FLOPs are recorded there).
func (r *Recorder) endCall(raw, state []float32, flops int64) {
	r.hostRow("output", raw, r.prevOut, r.outRef, r.outRefRows, nil)
	if state == nil {
		r.stats = append(r.stats, store.StepStat{Call: r.call, Step: r.step, Timestep: r.timestep, Block: -1, Module: "state", FLOPs: &flops})
	} else {
		r.hostRow("state", state, r.prevState, r.stateRef, r.stateRefRows, &flops)
		r.prevState = state
	}
	r.prevOut = raw
	r.outRef, r.stateRef = nil, nil
}

// needsTokens reports whether the recorder reads token indices (full level, or the split of the
// cache error into recomputed and cached tokens on audited rows); nil records nothing.
func (r *Recorder) needsTokens() bool {
	return r != nil && (r.level == RecordFull || r.audit > 0)
}
