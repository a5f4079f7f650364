package engine

import (
	"context"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/checks"
	"github.com/cnimatrix/cnimatrix/internal/matrix"
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

func (e *Engine) soak(ctx context.Context, run *cellRun, env *checks.Env, sk scenario.Soak) error {
	interval, minAvail := sk.Interval, sk.MinAvailability
	run.log.Infof("soak: probing nginx across nodes every %s for %s (availability must stay >= %.2f%%)", interval, sk.Duration, minAvail)
	return run.phase(PhaseSoak, false, func() ([]matrix.Evidence, error) {
		// The soak's own deadline leaves room for the request in flight.
		sctx, cancel := context.WithTimeout(ctx, sk.Duration+time.Minute)
		defer cancel()
		st, err := checks.Soak(sctx, env, sk.Duration, interval)
		if err == nil {
			err = st.JudgeAvailability(minAvail)
		}
		return matrixEvidence(st.Evidence(PhaseSoak, err == nil)), err
	})
}
