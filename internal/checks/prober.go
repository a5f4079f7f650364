package checks

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Prober keeps fetching nginx pages across nodes, from every probe pod to
// every nginx pod on another node, once per interval, until Stop. It
// measures availability while something else happens to the cluster (a CNI
// upgrade rolling its pods) or while nothing does (a soak). Each request is
// tried once: a retry would hide exactly the dropped connections it counts.
type Prober struct {
	env      *Env
	pairs    []podPair
	nginx    []corev1.Pod
	interval time.Duration
	cancel   context.CancelFunc
	stop     chan struct{} // closed by Stop: no new request starts
	done     chan struct{}
	start    time.Time

	mu      sync.Mutex
	samples []ProbeSample
}

// ProbeSample is one request of a Prober.
type ProbeSample struct {
	At       time.Duration // since the prober started
	From, To string
	OK       bool
	Latency  time.Duration
	Err      string
}

// ProbeStats sums up a Prober's requests.
type ProbeStats struct {
	Window             time.Duration
	Interval           time.Duration
	Pairs              int
	Requests, Failed   int
	Availability       float64 // percent of requests that got the targeted nginx's page
	P50, P95, P99, Max time.Duration
	// Failures are the failed requests, in order (at most maxFailures kept).
	Failures []ProbeSample
}

// maxFailures bounds the failed samples kept for evidence: a dead network
// fails every request, and the first ones say why.
const maxFailures = 20

// StartProber starts probing the workloads Workloads deployed in
// env.Namespace. ctx bounds the whole probing; Stop ends it sooner.
func StartProber(ctx context.Context, env *Env, interval time.Duration) (*Prober, error) {
	env.init()
	if interval <= 0 {
		return nil, fmt.Errorf("probe interval %s: want > 0", interval)
	}
	d, err := loadDeployed(ctx, env)
	if err != nil {
		return nil, err
	}
	pairs := crossNodePairs(d.probes, d.nginx)
	if len(pairs) == 0 {
		return nil, fmt.Errorf("no probe pod and ready nginx pod on different nodes (%d probe pods, %d ready nginx pods): needs 2 nodes", len(d.probes), len(d.nginx))
	}
	pctx, cancel := context.WithCancel(ctx)
	p := &Prober{env: env, pairs: pairs, nginx: d.nginx, interval: interval, cancel: cancel, stop: make(chan struct{}), done: make(chan struct{}), start: time.Now()}
	go p.loop(pctx)
	return p, nil
}

func (p *Prober) loop(ctx context.Context) {
	defer close(p.done)
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		for _, pr := range p.pairs {
			select {
			case <-ctx.Done():
				return
			case <-p.stop:
				return
			default:
			}
			p.probe(ctx, pr)
		}
		// A round slower than the interval (an emulated node's exec) starts
		// the next one at once: the ticker drops the ticks it missed.
		select {
		case <-ctx.Done():
			return
		case <-p.stop:
			return
		case <-t.C:
		}
	}
}

func (p *Prober) probe(ctx context.Context, pr podPair) {
	at := time.Since(p.start)
	url := fmt.Sprintf("http://%s/", hostPort(pr.to.Status.PodIP, 80))
	r := p.env.curlFrom(ctx, pr.from, url, 1)
	if ctx.Err() != nil {
		return // cut by the caller's deadline: neither a success nor a failure of the network
	}
	served := servedBy(r.Body, p.nginx)
	s := ProbeSample{At: at, From: podRef(pr.from), To: fmt.Sprintf("pod %s@%s %s", pr.to.Name, pr.to.Spec.NodeName, url), Latency: r.Latency}
	s.OK = r.Err == "" && r.Code == 200 && served == pr.to.Name
	if !s.OK {
		s.Err = detailHTTP(r, served, pr.to.Name)
	}
	p.mu.Lock()
	p.samples = append(p.samples, s)
	p.mu.Unlock()
}

// Stop ends the probing and returns the statistics. The request in flight
// completes (at most curl's own timeout plus the exec's slack) and counts:
// cutting it would discard exactly the slow answer a window may end on.
func (p *Prober) Stop() ProbeStats {
	close(p.stop)
	<-p.done
	p.cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	st := summarizeSamples(p.samples)
	st.Window, st.Interval, st.Pairs = time.Since(p.start), p.interval, len(p.pairs)
	return st
}

func summarizeSamples(samples []ProbeSample) ProbeStats {
	var st ProbeStats
	var lat []time.Duration
	for _, s := range samples {
		st.Requests++
		if !s.OK {
			st.Failed++
			if len(st.Failures) < maxFailures {
				st.Failures = append(st.Failures, s)
			}
			continue
		}
		lat = append(lat, s.Latency)
	}
	if st.Requests > 0 {
		st.Availability = 100 * float64(st.Requests-st.Failed) / float64(st.Requests)
	}
	slices.Sort(lat)
	st.P50, st.P95, st.P99 = percentile(lat, 50), percentile(lat, 95), percentile(lat, 99)
	if len(lat) > 0 {
		st.Max = lat[len(lat)-1]
	}
	return st
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// String is the one-line summary a phase shows.
func (st ProbeStats) String() string {
	return fmt.Sprintf("%d requests over %s (every %s, %d pod pairs across nodes): %d failed, availability %.2f%%, latency p50 %s p95 %s p99 %s max %s",
		st.Requests, st.Window.Round(100*time.Millisecond), st.Interval, st.Pairs, st.Failed, st.Availability,
		roundLatency(st.P50), roundLatency(st.P95), roundLatency(st.P99), roundLatency(st.Max))
}

// Evidence is the statistics as evidence: the summary, then each failure
// kept.
func (st ProbeStats) Evidence(check string, ok bool) []Evidence {
	ev := []Evidence{{Check: check, Source: "prober", Target: "nginx across nodes", OK: ok, Detail: st.String(), Latency: st.P50, Attempts: st.Requests}}
	for _, f := range st.Failures {
		ev = append(ev, Evidence{Check: check, Source: f.From, Target: f.To, Detail: fmt.Sprintf("at +%s: %s", f.At.Round(100*time.Millisecond), f.Err), Latency: f.Latency, Attempts: 1})
	}
	if more := st.Failed - len(st.Failures); more > 0 {
		ev = append(ev, Evidence{Check: check, Source: "prober", Target: "nginx across nodes", Detail: fmt.Sprintf("%d more failed requests not listed", more)})
	}
	return ev
}

// Soak probes for d and returns the statistics; the caller judges them.
func Soak(ctx context.Context, env *Env, d, interval time.Duration) (ProbeStats, error) {
	p, err := StartProber(ctx, env, interval)
	if err != nil {
		return ProbeStats{}, err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	st := p.Stop()
	if err := ctx.Err(); err != nil && st.Window < d {
		return st, fmt.Errorf("soak cut short after %s of %s: %w", st.Window.Round(time.Second), d, err)
	}
	return st, nil
}

// failureSummary names the distinct failures of st for an error message.
func (st ProbeStats) failureSummary() string {
	var seen []string
	for _, f := range st.Failures {
		k := f.To + ": " + f.Err
		if !slices.Contains(seen, k) {
			seen = append(seen, k)
		}
		if len(seen) == 3 {
			break
		}
	}
	return strings.Join(seen, "; ")
}

// Judge returns an error when st has more than maxFailed failed requests.
func (st ProbeStats) Judge(maxFailed int) error {
	if st.Requests == 0 {
		return fmt.Errorf("no request was made in %s", st.Window.Round(time.Second))
	}
	if st.Failed > maxFailed {
		return fmt.Errorf("%d of %d requests failed (at most %d allowed): %s", st.Failed, st.Requests, maxFailed, st.failureSummary())
	}
	return nil
}

// JudgeAvailability returns an error when st's availability is below min percent.
func (st ProbeStats) JudgeAvailability(min float64) error {
	if st.Requests == 0 {
		return fmt.Errorf("no request was made in %s", st.Window.Round(time.Second))
	}
	if st.Availability < min {
		return fmt.Errorf("availability %.2f%% < %.2f%%: %d of %d requests failed: %s", st.Availability, min, st.Failed, st.Requests, st.failureSummary())
	}
	return nil
}
