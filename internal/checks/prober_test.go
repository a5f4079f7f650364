package checks

import (
	"strings"
	"testing"
	"time"
)

func TestSummarizeSamples(t *testing.T) {
	var samples []ProbeSample
	for i := 1; i <= 100; i++ {
		samples = append(samples, ProbeSample{At: time.Duration(i) * time.Second, From: "p@a", To: "nginx@b", OK: true, Latency: time.Duration(i) * time.Millisecond})
	}
	for i := 0; i < 25; i++ {
		samples = append(samples, ProbeSample{At: time.Duration(200+i) * time.Second, From: "p@a", To: "nginx@b", Err: "curl: (7) Failed to connect"})
	}
	st := summarizeSamples(samples)
	st.Window, st.Interval, st.Pairs = 225*time.Second, time.Second, 1
	if st.Requests != 125 || st.Failed != 25 || st.Availability != 80 {
		t.Errorf("requests %d failed %d availability %v", st.Requests, st.Failed, st.Availability)
	}
	// Latency is of the requests that succeeded; nearest rank.
	if st.P50 != 50*time.Millisecond || st.P95 != 95*time.Millisecond || st.P99 != 99*time.Millisecond || st.Max != 100*time.Millisecond {
		t.Errorf("p50 %s p95 %s p99 %s max %s", st.P50, st.P95, st.P99, st.Max)
	}
	if len(st.Failures) != maxFailures {
		t.Errorf("%d failures kept, want %d", len(st.Failures), maxFailures)
	}
	ev := st.Evidence("soak", false)
	if len(ev) != 1+maxFailures+1 || !strings.Contains(ev[len(ev)-1].Detail, "5 more failed requests") || ev[0].Attempts != 125 {
		t.Errorf("evidence: %d lines, first %+v, last %+v", len(ev), ev[0], ev[len(ev)-1])
	}
	if !strings.Contains(ev[1].Detail, "at +3m20s: curl: (7) Failed to connect") {
		t.Errorf("failure evidence = %q", ev[1].Detail)
	}
	want := "125 requests over 3m45s (every 1s, 1 pod pairs across nodes): 25 failed, availability 80.00%, latency p50 50ms p95 95ms p99 99ms max 100ms"
	if st.String() != want {
		t.Errorf("String:\n got %s\nwant %s", st, want)
	}
	if err := st.Judge(25); err != nil {
		t.Errorf("Judge(25) = %v", err)
	}
	if err := st.Judge(24); err == nil || !strings.Contains(err.Error(), "25 of 125 requests failed (at most 24 allowed): nginx@b: curl: (7) Failed to connect") {
		t.Errorf("Judge(24) = %v", err)
	}
	if err := st.JudgeAvailability(80); err != nil {
		t.Errorf("JudgeAvailability(80) = %v", err)
	}
	if err := st.JudgeAvailability(99.9); err == nil || !strings.Contains(err.Error(), "availability 80.00% < 99.90%") {
		t.Errorf("JudgeAvailability(99.9) = %v", err)
	}
}

func TestNoRequestsNeverPasses(t *testing.T) {
	st := summarizeSamples(nil)
	if st.Judge(1000) == nil || st.JudgeAvailability(1) == nil {
		t.Error("a window without requests passed")
	}
	if st.P50 != 0 || st.Availability != 0 {
		t.Errorf("empty stats = %+v", st)
	}
}
