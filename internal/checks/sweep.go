package checks

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// A Service passes only when every backend answers through it. A single
// request would pass on whichever backend the proxy picked, and retrying a
// failed request would hide a backend that cannot be reached: the retry just
// lands on another one. So requests are sent until each backend has been seen,
// each failed request is counted, and a backend never seen fails the check.
const (
	// sweepPerBackend bounds the answered requests to 8 per backend: with random
	// backend choice, missing one of n healthy backends in 8n requests has a
	// probability below 1e-3 for n <= 4.
	sweepPerBackend = 8
	// sweepMaxFailures ends a sweep early: a broken path fails every
	// request routed to it, and each one may cost a full timeout...
	sweepMaxFailures = 4
)

// Variables so that unit tests need not wait them out.
var (
	// A sweep does not end early before sweepSettle has passed since its
	// first request: kube-proxy programs a new Service a moment after its
	// endpoints are ready, and until then the ClusterIP refuses connections
	// (seen here: four refusals within 0.6 s of the endpoints being ready).
	sweepSettle = 10 * time.Second
	// sweepBackoff spaces the requests that follow a failure.
	sweepBackoff = func() wait.Backoff {
		return wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 10, Cap: 4 * time.Second}
	}
)

// sweep is what a run of requests through a Service saw.
type sweep struct {
	backends []corev1.Pod
	requests int
	first    map[string]int           // backend -> request on which it first answered
	answers  map[string]int           // backend -> answers
	latency  map[string]time.Duration // backend -> latency of its first answer
	body     map[string]string        // backend -> its first body
	failures map[string]int           // failure detail -> count
	harness  int                      // failed requests whose exec failed (httpProbe.Harness)
	order    []string                 // failure details in order seen
}

// runSweep calls get (one request, no retries) until every backend answered,
// or the request or failure budget is spent, or ctx ends.
func runSweep(ctx context.Context, backends []corev1.Pod, get func(ctx context.Context) httpProbe) *sweep {
	s := &sweep{backends: backends, first: map[string]int{}, answers: map[string]int{}, latency: map[string]time.Duration{},
		body: map[string]string{}, failures: map[string]int{}}
	budget := sweepPerBackend * max(len(backends), 1)
	failed := 0
	start := time.Now()
	b := sweepBackoff()
	for len(s.first) < len(backends) && ctx.Err() == nil {
		// Failures are bounded by time (sweepSettle, with backoff between
		// them), and by count as a safety net.
		if (failed >= sweepMaxFailures && time.Since(start) >= sweepSettle) || failed >= 4*sweepMaxFailures {
			break
		}
		if s.requests-failed >= budget {
			// Every answer came from the backends seen so far. One node's
			// kube-proxy may not have programmed a new endpoint yet (seen
			// here: 16 of 16 NodePort requests to one node served by the
			// remote backend, 0.6 s after both were ready): another round
			// after a pause, until sweepSettle has passed.
			if time.Since(start) >= sweepSettle {
				break
			}
			budget += sweepPerBackend * len(backends)
			pause(ctx, b.Step())
		}
		s.requests++
		r := get(ctx)
		served := servedBy(r.Body, backends)
		if r.Err != "" || r.Code != 200 || served == "" {
			failed++
			if r.Harness {
				s.harness++
			}
			d := failureKey(detailHTTP(r, served, ""))
			if s.failures[d] == 0 {
				s.order = append(s.order, d)
			}
			s.failures[d]++
			pause(ctx, b.Step())
			continue
		}
		s.answers[served]++
		if _, seen := s.first[served]; !seen {
			s.first[served], s.latency[served], s.body[served] = s.requests, r.Latency, r.Body
		}
	}
	return s
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

var elapsedMS = regexp.MustCompile(`after \d+ ms`)

// failureKey drops what differs between two identical failures (curl's
// elapsed time), so they are counted as one.
func failureKey(d string) string {
	return elapsedMS.ReplaceAllString(d, "after … ms")
}

func (s *sweep) failureSummary() string {
	var parts []string
	for _, d := range s.order {
		if n := s.failures[d]; n > 1 {
			parts = append(parts, fmt.Sprintf("%s (x%d)", d, n))
		} else {
			parts = append(parts, d)
		}
	}
	return strings.Join(parts, "; ")
}

func (s *sweep) failedRequests() int {
	n := 0
	for _, c := range s.failures {
		n += c
	}
	return n
}

// evidence is one line per backend: reached through the Service or not.
func (s *sweep) evidence(check, source, target string) []Evidence {
	var ev []Evidence
	for i := range s.backends {
		b := &s.backends[i]
		e := Evidence{Check: check, Source: source, Target: fmt.Sprintf("%s -> backend %s@%s", target, b.Name, b.Spec.NodeName)}
		if at, ok := s.first[b.Name]; ok {
			e.OK, e.Latency, e.Attempts = true, s.latency[b.Name], at
			e.Detail = fmt.Sprintf("HTTP 200, answered %d of %d requests: %s", s.answers[b.Name], s.requests, excerpt(s.body[b.Name], 80))
			if f := s.failedRequests(); f > 0 {
				e.Detail += fmt.Sprintf("; %d requests failed: %s", f, s.failureSummary())
			}
		} else {
			e.Attempts = s.requests
			// never seen, and only because the harness could not exec
			e.Harness = s.harness > 0 && s.harness == s.failedRequests()
			e.Detail = fmt.Sprintf("never answered in %d requests", s.requests)
			if f := s.failedRequests(); f > 0 {
				e.Detail += fmt.Sprintf("; %d failed: %s", f, s.failureSummary())
			}
		}
		ev = append(ev, e)
	}
	return ev
}
