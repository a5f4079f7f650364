package install

import (
	"context"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// PermanentError is why a wait gave up before its deadline: a pod failed in
// a way that no amount of waiting cures, because the node cannot run what the
// image holds. On emulated nodes the waits are scaled up to many minutes;
// sitting them out would only delay the same verdict.
type PermanentError struct {
	Pod, Node string
	Container string // "init container x" or "container x"
	Image     string
	Why       string // the runtime's or the kernel's own words
}

func (e *PermanentError) Error() string {
	s := fmt.Sprintf("will not recover by waiting: pod %s on node %s: %s", e.Pod, orNone(e.Node), e.Container)
	if e.Image != "" {
		s += " (" + e.Image + ")"
	}
	return s + ": " + e.Why
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// permanentMarks are the runtime's words for failures that a retry repeats
// exactly: containerd found no entry for the node's platform in the image's
// index, the registry has no such image (NotFound: a tag that is not there
// does not appear while a cell waits; a registry that cannot be reached or
// refuses is a different error, retried), or the kernel refused to execute
// a binary of another machine.
var permanentMarks = []string{"no match for platform", "code = notfound desc = failed to pull and unpack image", "exec format error"}

// PermanentFailure returns why the pod can never become ready, or nil. It
// reads the containers' states, last terminations and logs (see
// ContainerReport.Logs).
func PermanentFailure(p PodReport) *PermanentError {
	for _, c := range p.Containers {
		for _, text := range []string{c.Message, c.LastMessage, c.Logs} {
			lt := strings.ToLower(text)
			for _, m := range permanentMarks {
				if i := strings.Index(lt, m); i >= 0 {
					return &PermanentError{Pod: p.Name, Node: p.Node, Container: c.Kind() + " " + c.Name, Image: c.Image, Why: lineAround(text, i)}
				}
			}
		}
	}
	return nil
}

// Kind is "init container" or "container", as messages name it.
func (c ContainerReport) Kind() string {
	if c.Init {
		return "init container"
	}
	return "container"
}

// lineAround returns the line of text holding byte i, clipped.
func lineAround(text string, i int) string {
	start := strings.LastIndexByte(text[:i], '\n') + 1
	end := len(text)
	if j := strings.IndexByte(text[i:], '\n'); j >= 0 {
		end = i + j
	}
	return clip(text[start:end])
}

// needsLogs reports whether a container has a failed instance whose output
// the report should carry, and whether that is the previous instance.
func needsLogs(c ContainerReport) (bool, bool) {
	switch {
	case c.State == "terminated" && c.ExitCode != 0:
		return true, false
	case c.Restarts > 0 && c.LastExitCode != 0:
		return true, true
	}
	return false, false
}

// logTailLines and logLimit bound what is read of a failed container's log:
// the error that ended it is in its last lines.
const (
	logTailLines = 5
	logLimit     = 4096
)

// containerLogs reads the last lines of one container instance.
func containerLogs(ctx context.Context, client kubernetes.Interface, ns, pod, container string, previous bool) (string, error) {
	tail, limit := int64(logTailLines), int64(logLimit)
	rc, err := client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Previous: previous, TailLines: &tail, LimitBytes: &limit}).Stream(ctx)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, logLimit))
	return strings.TrimSpace(string(b)), err
}

// logCache remembers the logs of terminated container instances, which do
// not change, so a wait polling every few seconds reads each once.
type logCache map[string]string

// addLogs fills in the logs of p's failed container instances.
func (lc logCache) addLogs(ctx context.Context, client kubernetes.Interface, ns string, uid string, p *PodReport) {
	for i := range p.Containers {
		c := &p.Containers[i]
		ok, previous := needsLogs(*c)
		if !ok {
			continue
		}
		key := fmt.Sprintf("%s/%s/%d/%v", uid, c.Name, c.Restarts, previous)
		if logs, seen := lc[key]; seen {
			c.Logs = logs
			continue
		}
		logs, err := containerLogs(ctx, client, ns, p.Name, c.Name, previous)
		if err != nil {
			// Not cached: the kubelet may answer on the next poll.
			c.Logs = "(logs unavailable: " + clip(err.Error()) + ")"
			continue
		}
		lc[key] = logs
		c.Logs = logs
	}
}

// permanent lists the workload's pods and returns the first permanent
// failure among those that are not ready.
func (lc logCache) permanent(ctx context.Context, client kubernetes.Interface, r WorkloadReport) *PermanentError {
	if r.selector == nil {
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(r.selector)
	if err != nil {
		return nil
	}
	pods, err := client.CoreV1().Pods(r.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil // the wait goes on; the final evidence will say what the API said
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if !sel.Matches(labels.Set(p.Labels)) || PodReady(p) || p.DeletionTimestamp != nil {
			continue
		}
		rep := DescribePod(p, nil)
		lc.addLogs(ctx, client, r.Namespace, string(p.UID), &rep)
		if pe := PermanentFailure(rep); pe != nil {
			return pe
		}
	}
	return nil
}
