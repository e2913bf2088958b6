package methods

import (
	"fmt"

	"github.com/cachebench/cachebench/harness/hook"
)

func init() {
	register(&Info{Name: "fbcache", DataDependent: true,
		Doc: "First-Block Cache (ParaAttention; diffusers 58eb52c, src/diffusers/hooks/first_block_cache.py): block 0 always runs; " +
			"blocks 1..L−1 are skipped, their residual from the last call that ran them added, when the relative L1 change " +
			"mean|r − r′| / mean|r′| of block 0's residual r against r′, the one of the last call that ran them, is ≤ thresh " +
			"(r′ is replaced only at calls that run them). No warm-up, no forced calls, no limit on skips",
		Params: []Param{
			{Name: "thresh", Kind: Float, Default: "0.05", Min: 0, Max: 1000, Doc: "threshold: skip when the residual's relative change is ≤ it (diffusers' default 0.05)"},
			decideParam,
		},
		New: func(v Values, env Env) (Method, error) {
			if env.Layout.Depth < 2 {
				return nil, fmt.Errorf("a model of depth %d has no blocks after the first to skip", env.Layout.Depth)
			}
			return newBlockCache("fbcache", env, 1, 0, v.String("decide"), blockRule{thresh: v.Float("thresh"), inclusive: true,
				maxCached: -1, maxContinuous: -1}), nil
		}})
	register(&Info{Name: "dbcache", DataDependent: true,
		Doc: "DBCache, cache-dit's Dual Block Cache (vipshop/cache-dit f86744a, src/cache_dit/caching/cache_blocks/pattern_base.py, " +
			"cache_contexts/cache_manager.py can_cache): the first Fn and last Bn blocks always run; the middle ones are skipped, their " +
			"residual from the last call that ran them added, when the relative L1 change of the Fn blocks' residual against the one of the " +
			"last call that ran the middle is < thresh — except during the first max_warmup_steps calls, after max_cached_steps skipped " +
			"calls, or when the run of skipped calls reaches max_continuous_cached_steps (faithful: cache-dit's counter; clean: " +
			"consecutive skipped calls). thresh ≤ 0 never skips, thresh ≥ 1 always may (cache-dit's special values). Fn=1, Bn=0 is " +
			"cache-dit's FBCache",
		Params: []Param{
			{Name: "Fn", Kind: Int, Default: "8", Min: 1, Max: 100000, Doc: "Fn_compute_blocks: first blocks always computed; their residual is the statistic"},
			{Name: "Bn", Kind: Int, Default: "0", Min: 0, Max: 100000, Doc: "Bn_compute_blocks: last blocks always computed"},
			{Name: "thresh", Kind: Float, Default: "0.08", Min: 0, Max: 1000, Doc: "residual_diff_threshold: skip when the Fn residual's relative change is < it"},
			{Name: "max_warmup_steps", Kind: Int, Default: "8", Min: 0, Max: 100000, Doc: "the first calls, never skipped"},
			{Name: "max_cached_steps", Kind: Int, Default: "-1", Min: -1, Max: 100000, Doc: "at most this many skipped calls per run (−1: no limit)"},
			{Name: "max_continuous_cached_steps", Kind: Int, Default: "-1", Min: -1, Max: 100000, Doc: "a run of skipped calls ends at this length (−1: no limit)"},
			decideParam,
			{Name: "mode", Kind: Enum, Default: "faithful", Choices: []string{"faithful", "clean"},
				Doc: "faithful: cache-dit's continuous-cached counter (not reset by a call the threshold makes run); clean: consecutive skipped calls"},
		},
		New: func(v Values, env Env) (Method, error) {
			fn, bn, l := v.Int("Fn"), v.Int("Bn"), env.Layout.Depth
			if fn+bn >= l {
				return nil, fmt.Errorf("Fn=%d + Bn=%d always-computed blocks leave none to skip on a model of depth %d (want Fn + Bn ≤ %d)", fn, bn, l, l-1)
			}
			return newBlockCache("dbcache", env, fn, bn, v.String("decide"), blockRule{thresh: v.Float("thresh"), cacheDiT: true,
				warmup: v.Int("max_warmup_steps"), maxCached: v.Int("max_cached_steps"), maxContinuous: v.Int("max_continuous_cached_steps"),
				clean: v.String("mode") == "clean"}), nil
		}})
}

// blockRule is the decision of First-Block Cache (diffusers) and DBCache (cache-dit).
type blockRule struct {
	thresh    float64
	inclusive bool // skip at diff ≤ thresh (diffusers) rather than < thresh (cache-dit)
	// cacheDiT keeps cache-dit's special thresholds: ≤ 0 never skips, ≥ 1 skips whatever the
	// diff (cache_manager.py, similarity).
	cacheDiT                 bool
	warmup                   int
	maxCached, maxContinuous int // −1: no limit
	clean                    bool
}

// blockState is one decision unit's counters (cache-dit's cached_steps, continuous_cached_steps).
type blockState struct {
	cached     int // skipped calls so far
	lastCached int // the last skipped call, −1 before any
	continuous int
}

// blockCache is FBCache/DBCache on the hook surface (docs/methods.md): one gate over the middle
// blocks Fn … L−1−Bn with the residual statistic.
type blockCache struct {
	gated
	rule  blockRule
	state []blockState
	reset []bool // this call's limit check ended a run (cache-dit zeroes the counter there)
	name  string
}

func newBlockCache(name string, env Env, fn, bn int, decide string, r blockRule) *blockCache {
	m := &blockCache{gated: newGated(env, hook.Span{From: fn, To: env.Layout.Depth - 1 - bn}, hook.StatResidual, decide), rule: r, name: name}
	m.state = make([]blockState, m.units())
	for u := range m.state {
		m.state[u].lastCached = -1
	}
	m.reset = make([]bool, m.units())
	return m
}

// allowed is cache-dit's can_cache before the threshold, in its order: warm-up, the total
// limit, then the continuous limit (which, when it fires, also asks for the counter's reset).
func (m *blockCache) allowed(call int, s blockState) (ok, reset bool) {
	r := m.rule
	switch {
	case call < r.warmup:
		return false, false
	case r.maxCached >= 0 && s.cached >= r.maxCached:
		return false, false
	case r.maxContinuous >= 0 && s.continuous >= r.maxContinuous:
		return false, true
	}
	return true, false
}

func (m *blockCache) similar(diff float64) bool {
	r := m.rule
	switch {
	case !finite(diff): // +Inf: no reference yet
		return false
	case r.cacheDiT && r.thresh <= 0:
		return false
	case r.cacheDiT && r.thresh >= 1:
		return true
	case r.inclusive:
		return diff <= r.thresh
	}
	return diff < r.thresh
}

func (m *blockCache) Plan(call, _ int) (*hook.Plan, error) {
	return m.plan(func(stat []float64) []bool {
		skip := make([]bool, len(stat))
		for u, d := range stat {
			ok, reset := m.allowed(call, m.state[u])
			m.reset[u] = reset
			skip[u] = ok && m.similar(d)
		}
		return skip
	}), nil
}

// Observe updates the counters as cache-dit's add_cached_step does at a skipped call.
func (m *blockCache) Observe(call, _ int, p *hook.Plan, _ *hook.Cache) error {
	skipped, err := m.outcome(p)
	if err != nil {
		return fmt.Errorf("%s: %w", m.name, err)
	}
	for u, s := range skipped {
		st := &m.state[u]
		switch {
		case s && m.rule.clean:
			st.continuous++
		case s:
			// cache-dit counts a skipped call that follows a skipped call (the first of such a pair
			// twice when the counter is at zero), and the very first skipped call of the run; a
			// call that runs leaves the counter alone unless the limit itself made it run.
			if st.cached == 0 {
				st.continuous++
			} else if call-st.lastCached == 1 {
				if st.continuous == 0 {
					st.continuous += 2
				} else {
					st.continuous++
				}
			}
		case m.rule.clean || m.reset[u]:
			st.continuous = 0
		}
		if s {
			st.cached++
			st.lastCached = call
		}
		m.reset[u] = false
	}
	return nil
}
