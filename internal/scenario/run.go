package scenario

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Timeouts bound each wait of a cell.
type Timeouts struct {
	Cluster  time.Duration
	CNIReady time.Duration
	Checks   time.Duration
}

// ChecksSpec tunes the checks.
type ChecksSpec struct {
	// ServiceTargetPort is the nginx Service's targetPort. Only harness
	// self-tests change it from 80, to prove a broken Service fails.
	ServiceTargetPort int
}

// Soak is the scenario's soak block.
type Soak struct {
	Duration, Interval time.Duration
	MinAvailability    float64 // percent
}

// run parses how cells run: timeouts, checks, variant, reuseClusters and
// the soak block.
func (v *validator) run(raw *rawScenario, s *Scenario) {
	s.Timeouts = Timeouts{Cluster: 6 * time.Minute, CNIReady: 5 * time.Minute, Checks: 5 * time.Minute}
	v.duration(raw.Timeouts.Cluster, "timeouts.cluster", "90s or 5m", &s.Timeouts.Cluster)
	v.duration(raw.Timeouts.CNIReady, "timeouts.cniReady", "90s or 5m", &s.Timeouts.CNIReady)
	v.duration(raw.Timeouts.Checks, "timeouts.checks", "90s or 5m", &s.Timeouts.Checks)
	s.Checks.ServiceTargetPort = 80
	if raw.Checks.ServiceTargetPort.V != "" {
		var p int
		if _, err := fmt.Sscanf(raw.Checks.ServiceTargetPort.V, "%d", &p); err != nil || p < 1 || p > 65535 {
			v.add(raw.Checks.ServiceTargetPort.Line, "checks.serviceTargetPort %q: want a port number", raw.Checks.ServiceTargetPort.V)
		}
		s.Checks.ServiceTargetPort = p
	}
	s.Variant = raw.Variant.V
	if s.Variant != "" && !regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`).MatchString(s.Variant) {
		v.add(raw.Variant.Line, "variant %q: use lower-case letters, digits and '-'", s.Variant)
	}
	switch raw.ReuseClusters.V {
	case "", "false":
	case "true":
		s.ReuseClusters = true
	default:
		v.add(raw.ReuseClusters.Line, "reuseClusters %q: want true or false", raw.ReuseClusters.V)
	}
	if raw.Soak != nil {
		s.Soak = Soak{Interval: time.Second, MinAvailability: 100}
		v.duration(raw.Soak.Duration, "soak.duration", "30s or 10h", &s.Soak.Duration)
		v.duration(raw.Soak.Interval, "soak.interval", "30s or 10h", &s.Soak.Interval)
		if s.Soak.Duration == 0 {
			v.add(raw.Soak.Duration.Line, "soak.duration is required in a soak block")
		} else if s.Soak.Interval >= s.Soak.Duration {
			v.add(raw.Soak.Interval.Line, "soak.interval %s must be shorter than soak.duration %s", s.Soak.Interval, s.Soak.Duration)
		}
		if m := raw.Soak.MinAvailability; m.V != "" {
			f, err := strconv.ParseFloat(strings.TrimSuffix(m.V, "%"), 64)
			if err != nil || f < 0 || f > 100 {
				v.add(m.Line, "soak.minAvailability %q: want a percentage from 0 to 100", m.V)
			}
			s.Soak.MinAvailability = f
		}
	}
}
