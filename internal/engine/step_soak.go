package engine

import (
	"context"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/checks"
	"github.com/cnimatrix/cnimatrix/internal/scenario"
)

// PhaseSoak is the phase of --soak: nginx probed across nodes for a while
// after the checks passed (the seed's success criterion was nginx up for 10
// hours on the arm64 nodes).
const PhaseSoak = "soak"

// soakFor is the soak a cell of s gets: the run's (cnimatrix run --soak)
// when set, else the scenario's; zero Duration is none.
func (e *Engine) soakFor(s *scenario.Scenario) scenario.Soak {
	if e.opts.Soak <= 0 {
		return s.Soak
	}
	sk := scenario.Soak{Duration: e.opts.Soak, Interval: e.opts.SoakInterval, MinAvailability: e.opts.SoakMinAvailability}
	if sk.Interval <= 0 {
		sk.Interval = time.Second
	}
	if sk.MinAvailability <= 0 {
		sk.MinAvailability = 100
	}
	return sk
}

// stepSoak probes nginx across nodes for the plan's soak after the checks
// passed, and fails below its availability.
var stepSoak = Step{Name: PhaseSoak, Applies: func(c *cellRun) bool { return c.plan.Soak.Duration > 0 }, Run: func(ctx context.Context, c *cellRun) StepResult {
	sk := c.plan.Soak
	c.log.Infof("soak: probing nginx across nodes every %s for %s (availability must stay >= %.2f%%)", sk.Interval, sk.Duration, sk.MinAvailability)
	// The soak's own deadline leaves room for the request in flight.
	sctx, cancel := context.WithTimeout(ctx, sk.Duration+time.Minute)
	defer cancel()
	st, err := checks.Soak(sctx, c.env, sk.Duration, sk.Interval)
	if err == nil {
		err = st.JudgeAvailability(sk.MinAvailability)
	}
	return StepResult{Evidence: matrixEvidence(st.Evidence(PhaseSoak, err == nil)), Err: err}
}}
