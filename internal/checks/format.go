package checks

import (
	"fmt"
	"strings"
	"time"
)

// String is one line: verdict, who probed what, what came back, how long.
//
//	ok   PodToClusterIP probe@w1 (10.244.1.4) -> service nginx 10.96.41.7:80: HTTP 200, served by nginx-x: ... [3ms, 1 attempt]
func (e Evidence) String() string {
	verdict := "ok  "
	if !e.OK {
		verdict = "FAIL"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", verdict, e.Check, e.Source)
	if e.Target != "" {
		b.WriteString(" -> " + e.Target)
	}
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	var meta []string
	switch {
	case e.Latency > 0:
		meta = append(meta, roundLatency(e.Latency).String())
	case e.Attempts > 0 && e.OK:
		// A probe that answered in less than its tool's resolution (dig
		// reports whole milliseconds).
		meta = append(meta, "<1ms")
	}
	switch {
	case e.Attempts == 1:
		meta = append(meta, "1 attempt")
	case e.Attempts > 1:
		meta = append(meta, fmt.Sprintf("%d attempts", e.Attempts))
	}
	if len(meta) > 0 {
		b.WriteString(" [" + strings.Join(meta, ", ") + "]")
	}
	return b.String()
}

func roundLatency(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// String is a header line (name, verdict, duration, error) followed by one
// indented line per piece of evidence.
func (r Result) String() string {
	var b strings.Builder
	verdict := "PASS"
	switch {
	case r.Skipped():
		verdict = "SKIP"
	case !r.OK:
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "%s %s (%s)", verdict, r.Name, r.Duration.Round(100*time.Millisecond))
	if r.Err != "" {
		b.WriteString(": " + r.Err)
	}
	for _, e := range r.Evidence {
		b.WriteString("\n  " + e.String())
	}
	return b.String()
}
