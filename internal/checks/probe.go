package checks

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// probeMaxTime is curl's --max-time per attempt, in seconds: pod networks
// answer in milliseconds, so 5 s only ever expires on a black hole.
const probeMaxTime = 5

// DefaultExecSlack is added to a probe's own timeout for the exec round
// trip; Env.ExecSlack replaces it (the engine scales it for emulated nodes,
// where the round trip is slower).
const DefaultExecSlack = 30 * time.Second

// execSlack is the exec round trip's allowance for this cluster.
func (e *Env) execSlack() time.Duration {
	if e.ExecSlack > 0 {
		return e.ExecSlack
	}
	return DefaultExecSlack
}

// The exec deadlines of one curl and one dig: the tool's own limit plus
// the exec round trip.
func (e *Env) curlDeadline() time.Duration { return probeMaxTime*time.Second + e.execSlack() }
func (e *Env) digDeadline() time.Duration  { return 10*time.Second + e.execSlack() }

// httpProbe is the outcome of one HTTP probe, after retries.
type httpProbe struct {
	Code     int    // HTTP status, 0 when no response
	Body     string // what came back (bounded)
	Err      string // transport or tool error, "" when a response arrived
	Latency  time.Duration
	Attempts int
	// Harness: the exec into the probe pod failed (Err says how), so
	// curl's own outcome is unknown.
	Harness bool
}

const curlMarker = "\n<<cnimatrix-curl "

// curlArgv fetches url once (extra are curl options, e.g. a header); -w
// appends a marker line with the status code and timing so the body and the
// measurements travel in the same stdout.
func curlArgv(url string, extra ...string) []string {
	argv := []string{"curl", "-sS", "--max-time", strconv.Itoa(probeMaxTime), "--connect-timeout", "3",
		"-w", curlMarker + "%{http_code} %{time_total}>>"}
	return append(append(argv, extra...), url)
}

// curl exit codes worth another attempt: the network path may still be
// converging (routes, kube-proxy rules, DNS caches) right after setup.
var curlTransient = map[int]string{
	6:  "could not resolve host",
	7:  "failed to connect",
	28: "timed out",
	52: "empty reply",
	55: "send failure",
	56: "receive failure",
}

// curlFrom runs curl in pod against url (with extra curl options), up to
// attempts times while the failure is at transport level.
func (e *Env) curlFrom(ctx context.Context, pod *corev1.Pod, url string, attempts int, extra ...string) httpProbe {
	var p httpProbe
	p.Attempts = retry(ctx, attempts, func(ctx context.Context) bool {
		actx, cancel := context.WithTimeout(ctx, e.curlDeadline())
		defer cancel()
		out := e.exec(actx, pod, curlArgv(url, extra...)...)
		p = parseCurl(out, e.curlDeadline())
		if out.Err != nil {
			return true
		}
		_, transient := curlTransient[out.Code]
		return transient
	})
	return p
}

var curlTail = regexp.MustCompile(`(?s)^(.*)` + regexp.QuoteMeta(curlMarker) + `(\d{3}) ([0-9.]+)>>\s*$`)

// parseCurl reads curlArgv's output; deadline is the exec's, for the
// message of a harness fault.
func parseCurl(out execOutput, deadline time.Duration) httpProbe {
	p := httpProbe{Latency: out.Took}
	if out.Err != nil {
		p.Err, p.Harness = harnessError(out, deadline, fmt.Sprintf("curl's own --max-time %ds", probeMaxTime)), true
		return p
	}
	body := out.Stdout
	if m := curlTail.FindStringSubmatch(out.Stdout); m != nil {
		body = m[1]
		p.Code, _ = strconv.Atoi(m[2])
		if secs, err := strconv.ParseFloat(m[3], 64); err == nil && secs > 0 {
			p.Latency = time.Duration(secs * float64(time.Second))
		}
	}
	p.Body = body
	if out.Code != 0 {
		msg := strings.TrimSpace(out.Stderr)
		if msg == "" {
			msg = fmt.Sprintf("curl exited %d", out.Code)
			if what, ok := curlTransient[out.Code]; ok {
				msg += " (" + what + ")"
			}
		}
		if out.Code == 126 || out.Code == 127 {
			msg = fmt.Sprintf("probe image cannot run curl (exit %d): %s", out.Code, msg)
		}
		p.Err = msg
		p.Code = 0
	}
	return p
}

var tags = regexp.MustCompile(`<[^>]*>`)

// excerpt makes a body readable on one line: HTML tags dropped, whitespace
// collapsed, bounded.
func excerpt(body string, n int) string {
	s := strings.Join(strings.Fields(tags.ReplaceAllString(body, " ")), " ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// servedBy returns which of the nginx pods' names appears in body: the nginx
// image's page carries the serving pod's hostname, which is its pod name.
func servedBy(body string, pods []corev1.Pod) string {
	for _, p := range pods {
		if strings.Contains(body, p.Name) {
			return p.Name
		}
	}
	return ""
}

// detailHTTP is the evidence Detail of an HTTP probe.
func detailHTTP(p httpProbe, served, want string) string {
	if p.Err != "" {
		return p.Err
	}
	s := fmt.Sprintf("HTTP %d", p.Code)
	switch {
	case served != "" && want != "" && served != want:
		s += fmt.Sprintf(", served by %s, not the targeted %s", served, want)
	case served != "":
		s += ", served by " + served
	default:
		s += ", body names no nginx pod"
	}
	if b := excerpt(p.Body, 120); b != "" {
		return s + ": " + b
	}
	return s + " (empty body)"
}

// dnsProbe is the outcome of one lookup with dig.
type dnsProbe struct {
	Status   string   // NOERROR, NXDOMAIN, SERVFAIL...
	Answers  []string // addresses
	Server   string
	Err      string
	Latency  time.Duration
	Attempts int
	Harness  bool // the exec into the probe pod failed, as for httpProbe
}

// digArgv asks the pod's resolver, or server when one is given.
func digArgv(name, qtype string, server ...string) []string {
	argv := []string{"dig", "+time=2", "+tries=2", "+noall", "+comments", "+answer", "+stats"}
	for _, s := range server {
		argv = append(argv, "@"+s)
	}
	return append(argv, name, qtype)
}

// digFrom looks name up from pod with the pod's resolver configuration (or
// at server). dig exits 9 when no server answered, the only outcome worth
// retrying.
func (e *Env) digFrom(ctx context.Context, pod *corev1.Pod, name, qtype string, server ...string) dnsProbe {
	var d dnsProbe
	d.Attempts = retry(ctx, probeAttempts, func(ctx context.Context) bool {
		actx, cancel := context.WithTimeout(ctx, e.digDeadline())
		defer cancel()
		out := e.exec(actx, pod, digArgv(name, qtype, server...)...)
		d = parseDig(out, e.digDeadline())
		return out.Err != nil || out.Code == 9
	})
	return d
}

var (
	digStatus  = regexp.MustCompile(`status: ([A-Z]+)`)
	digServer  = regexp.MustCompile(`(?m)^;; SERVER: (\S+)`)
	digQueryMs = regexp.MustCompile(`(?m)^;; Query time: (\d+) msec`)
)

func parseDig(out execOutput, deadline time.Duration) dnsProbe {
	d := dnsProbe{Latency: out.Took}
	if out.Err != nil {
		d.Err, d.Harness = harnessError(out, deadline, "dig's own +time=2 +tries=2"), true
		return d
	}
	if m := digStatus.FindStringSubmatch(out.Stdout); m != nil {
		d.Status = m[1]
	}
	if m := digServer.FindStringSubmatch(out.Stdout); m != nil {
		d.Server = m[1]
	}
	if m := digQueryMs.FindStringSubmatch(out.Stdout); m != nil {
		ms, _ := strconv.Atoi(m[1])
		d.Latency = time.Duration(ms) * time.Millisecond
	}
	for _, line := range strings.Split(out.Stdout, "\n") {
		f := strings.Fields(line)
		// name ttl class type data
		if len(f) >= 5 && !strings.HasPrefix(f[0], ";") && (f[3] == "A" || f[3] == "AAAA") && net.ParseIP(f[4]) != nil {
			d.Answers = append(d.Answers, f[4])
		}
	}
	if out.Code != 0 {
		msg := strings.TrimSpace(out.Stdout + "\n" + out.Stderr)
		if out.Code == 9 {
			msg = "no DNS server answered: " + excerpt(msg, 200)
		}
		if out.Code == 126 || out.Code == 127 {
			msg = "probe image cannot run dig: " + msg
		}
		d.Err = fmt.Sprintf("dig exited %d: %s", out.Code, excerpt(msg, 300))
	}
	return d
}

// hostPort joins an IP (v4 or v6) and a port into a URL host.
func hostPort(ip string, port int32) string {
	return net.JoinHostPort(ip, strconv.Itoa(int(port)))
}

// harnessError says that the exec failed, after how long, beside the
// probe's own limit: two deadlines, one the harness's, one the request's.
func harnessError(out execOutput, deadline time.Duration, own string) string {
	return fmt.Sprintf("harness: %v (after %s; exec deadline %s, %s)", out.Err, out.Took.Truncate(time.Millisecond), deadline, own)
}
