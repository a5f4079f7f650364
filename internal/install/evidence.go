package install

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// NotReadyError is what WaitWorkloads returns when workloads did not become
// ready in time: for each, its counts and its not-ready pods as their status
// and events describe them.
type NotReadyError struct {
	Workloads []WorkloadReport
	Waited    time.Duration
	Err       error // why the wait stopped: the context's error, or a *PermanentError
}

// WorkloadReport is the state of one workload at the end of a wait.
type WorkloadReport struct {
	Workload
	OK             bool
	Ready, Desired int32
	Problem        string        // what is wrong beyond "not all pods ready", if known
	Events         []EventReport // Warning events of the workload object (FailedCreate, ...)
	Pods           []PodReport   // its pods that are not ready

	selector *metav1.LabelSelector
	uid      string
}

// PodReport is why one pod is not ready, from its status and events.
type PodReport struct {
	Name, Node string
	Phase      string
	Reason     string // pod-level (Evicted, NodeLost, ...)
	Message    string
	Conditions []string // False conditions with a message, e.g. "PodScheduled: Unschedulable: 0/2 nodes are available: ..."
	Containers []ContainerReport
	Events     []EventReport // most recent last
}

// ContainerReport is one container's state.
type ContainerReport struct {
	Name     string
	Init     bool
	Image    string // as the pod status reports it
	Ready    bool
	State    string // "waiting" | "running" | "terminated" | "unknown"
	Reason   string
	Message  string
	ExitCode int32 // when terminated
	Restarts int32
	// Last termination, which is where a crash-looping container's error is.
	LastReason   string
	LastMessage  string
	LastExitCode int32
	// Logs are the last lines the failed instance wrote (the terminated one,
	// else the last terminated one): with the default termination message
	// policy, a binary the kernel refuses leaves "exec ...: exec format
	// error" there and nowhere else.
	Logs string
}

// EventReport is one (possibly repeated) event.
type EventReport struct {
	Reason  string
	Message string
	Count   int32
	Last    time.Time
}

// Unwrap lets errors.Is(err, context.DeadlineExceeded) see why waiting stopped.
func (e *NotReadyError) Unwrap() error { return e.Err }

// maxPodsInError bounds the error string; the struct keeps every pod.
const maxPodsInError = 5

// Error is one line per workload:
//
//	daemonset kube-flannel/kube-flannel-ds: 0/2 ready; pod kube-flannel-ds-abc on node x: container kube-flannel waiting ImagePullBackOff: ...
func (e *NotReadyError) Error() string {
	var b strings.Builder
	for i, w := range e.Workloads {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(w.String())
	}
	if len(e.Workloads) == 0 {
		b.WriteString("workloads not ready")
	}
	if e.Err != nil {
		fmt.Fprintf(&b, " (gave up after %s: %v)", e.Waited.Truncate(100*time.Millisecond), e.Err)
	}
	return b.String()
}

func (w WorkloadReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d/%d ready", w.Workload, w.Ready, w.Desired)
	if w.Problem != "" {
		b.WriteString(" (" + w.Problem + ")")
	}
	for _, ev := range dedupEvents(w.Events, nil) {
		b.WriteString("; " + ev.String())
	}
	for i, p := range w.Pods {
		if i == maxPodsInError {
			fmt.Fprintf(&b, "; and %d more not-ready pods", len(w.Pods)-maxPodsInError)
			break
		}
		b.WriteString("; " + p.String())
	}
	return b.String()
}

func (p PodReport) String() string {
	var parts []string
	node := p.Node
	if node == "" {
		node = "<none>"
	}
	head := fmt.Sprintf("pod %s on node %s", p.Name, node)
	if p.Phase != "" && p.Phase != string(corev1.PodRunning) {
		head += " (" + p.Phase + ")"
	}
	if p.Reason != "" || p.Message != "" {
		head += ": " + joinNonEmpty(": ", p.Reason, clip(p.Message))
	}
	parts = append(parts, head)
	parts = append(parts, p.Conditions...)
	var said []string
	for _, c := range p.Containers {
		if c.Ready && c.Restarts == 0 {
			continue
		}
		s := c.String()
		parts = append(parts, s)
		said = append(said, s)
	}
	for _, ev := range dedupEvents(p.Events, said) {
		parts = append(parts, ev.String())
	}
	if len(parts) == 1 {
		return head
	}
	return head + ": " + strings.Join(parts[1:], ", ")
}

func (c ContainerReport) String() string {
	s := fmt.Sprintf("%s %s", c.Kind(), c.Name)
	if c.Image != "" {
		s += " (" + c.Image + ")"
	}
	s += " " + c.State
	if c.Reason != "" {
		s += " " + c.Reason
	}
	if c.State == "terminated" {
		s += fmt.Sprintf(" (exit %d)", c.ExitCode)
	}
	if c.Message != "" {
		s += ": " + clip(c.Message)
	}
	if c.State == "running" && !c.Ready {
		s += " but not ready"
	}
	if c.Restarts > 0 {
		s += fmt.Sprintf(", %d restarts", c.Restarts)
		if c.LastReason != "" || c.LastMessage != "" {
			s += fmt.Sprintf(", last exit %d %s", c.LastExitCode, c.LastReason)
			if c.LastMessage != "" {
				s += ": " + clip(c.LastMessage)
			}
		}
	}
	if logs := clipTail(c.Logs); logs != "" && !strings.Contains(s, logs) {
		s += ", logs: " + logs
	}
	return s
}

func (e EventReport) String() string {
	s := "event " + e.Reason
	if e.Count > 1 {
		s += fmt.Sprintf(" (x%d)", e.Count)
	}
	return s + ": " + clip(e.Message)
}

// maxMessage bounds one message in the error string: pull and sandbox errors
// put the useful part first, and a 4 KiB stack trace helps nobody in a matrix.
const maxMessage = 400

func clip(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= maxMessage {
		return s
	}
	return s[:maxMessage] + "…"
}

// clipTail is clip keeping the end: the last lines of a log say why it
// stopped.
func clipTail(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= maxMessage {
		return s
	}
	return "…" + s[len(s)-maxMessage:]
}

func joinNonEmpty(sep string, xs ...string) string {
	var out []string
	for _, x := range xs {
		if x != "" {
			out = append(out, x)
		}
	}
	return strings.Join(out, sep)
}

// maxEvents is how many recent events per object the error string shows.
const maxEvents = 3

// dedupEvents keeps the most recent events with distinct reasons whose
// message does not just repeat what a container status already says (the
// kubelet reports an image pull failure both ways).
func dedupEvents(evs []EventReport, said []string) []EventReport {
	var out []EventReport
	seen := map[string]bool{}
	for i := len(evs) - 1; i >= 0 && len(out) < maxEvents; i-- {
		ev := evs[i]
		if seen[ev.Reason] || terseEvent.MatchString(ev.Message) {
			continue
		}
		seen[ev.Reason] = true
		msg := clip(ev.Message)
		dup := false
		for _, s := range said {
			if strings.Contains(s, tail(msg)) || (ev.Reason == "BackOff" && strings.Contains(s, "BackOff")) {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, ev)
		}
	}
	// Back to oldest first, the order things happened in.
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// terseEvent matches the kubelet's companion events ("Error: ErrImagePull")
// that only repeat a container's waiting reason.
var terseEvent = regexp.MustCompile(`^Error: [A-Za-z]+$`)

// tail is the end of an event message: the kubelet words the same failure
// differently in an event and in a container status, but both end with the
// runtime's error.
func tail(msg string) string {
	const n = 60
	if len(msg) <= n {
		return msg
	}
	return msg[len(msg)-n:]
}

// DescribePod summarises why p is (not) ready. events are its events, oldest
// first (see EventIndex.For).
func DescribePod(p *corev1.Pod, events []EventReport) PodReport {
	r := PodReport{
		Name:    p.Name,
		Node:    p.Spec.NodeName,
		Phase:   string(p.Status.Phase),
		Reason:  p.Status.Reason,
		Message: p.Status.Message,
		Events:  events,
	}
	if p.DeletionTimestamp != nil {
		r.Reason = joinNonEmpty(" ", "Terminating", r.Reason)
	}
	for _, c := range p.Status.Conditions {
		// Ready/ContainersReady=False only restate the container states.
		if c.Status == corev1.ConditionTrue || c.Message == "" || c.Type == corev1.PodReady || c.Type == corev1.ContainersReady {
			continue
		}
		r.Conditions = append(r.Conditions, joinNonEmpty(": ", string(c.Type), c.Reason, clip(c.Message)))
	}
	for _, cs := range p.Status.InitContainerStatuses {
		r.Containers = append(r.Containers, describeContainer(cs, true))
	}
	for _, cs := range p.Status.ContainerStatuses {
		r.Containers = append(r.Containers, describeContainer(cs, false))
	}
	return r
}

func describeContainer(cs corev1.ContainerStatus, init bool) ContainerReport {
	c := ContainerReport{Name: cs.Name, Init: init, Image: cs.Image, Ready: cs.Ready, Restarts: cs.RestartCount, State: "unknown"}
	if init && cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0 {
		// A finished init container is as good as ready.
		c.Ready = true
	}
	switch s := cs.State; {
	case s.Waiting != nil:
		c.State, c.Reason, c.Message = "waiting", s.Waiting.Reason, s.Waiting.Message
	case s.Running != nil:
		c.State = "running"
	case s.Terminated != nil:
		c.State, c.Reason, c.Message, c.ExitCode = "terminated", s.Terminated.Reason, s.Terminated.Message, s.Terminated.ExitCode
	}
	if t := cs.LastTerminationState.Terminated; t != nil {
		c.LastReason, c.LastMessage, c.LastExitCode = t.Reason, t.Message, t.ExitCode
	}
	return c
}

// EventIndex holds a namespace's Warning events by involved object.
type EventIndex map[string][]indexedEvent

// WarningEvents lists the Warning events of a namespace. The type filter is
// also applied here, because not every client honours field selectors.
func WarningEvents(ctx context.Context, client kubernetes.Interface, namespace string) (EventIndex, error) {
	list, err := client.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{FieldSelector: "type=" + corev1.EventTypeWarning})
	if err != nil {
		return EventIndex{}, fmt.Errorf("list events in %s: %w", namespace, err)
	}
	idx := EventIndex{}
	for _, ev := range list.Items {
		if ev.Type != corev1.EventTypeWarning {
			continue
		}
		k := ev.InvolvedObject.Kind + "/" + ev.InvolvedObject.Name
		idx[k] = append(idx[k], eventReport(ev, string(ev.InvolvedObject.UID)))
	}
	for k := range idx {
		sort.SliceStable(idx[k], func(i, j int) bool { return idx[k][i].Last.Before(idx[k][j].Last) })
	}
	return idx, nil
}

// For returns the events of one object, oldest first. uid, when known,
// drops events of an earlier object of the same name.
func (x EventIndex) For(kind, name, uid string) []EventReport {
	var out []EventReport
	for _, ev := range x[kind+"/"+name] {
		if uid != "" && ev.uid != "" && ev.uid != uid {
			continue
		}
		out = append(out, ev.EventReport)
	}
	return out
}

type indexedEvent struct {
	EventReport
	uid string
}

func eventReport(ev corev1.Event, uid string) indexedEvent {
	r := EventReport{Reason: ev.Reason, Message: ev.Message, Count: ev.Count}
	// Events written through events.k8s.io/v1 leave the core timestamps and
	// count empty and use eventTime/series instead.
	for _, t := range []time.Time{ev.FirstTimestamp.Time, ev.LastTimestamp.Time, ev.EventTime.Time, ev.CreationTimestamp.Time} {
		if t.After(r.Last) {
			r.Last = t
		}
	}
	if ev.Series != nil {
		if ev.Series.LastObservedTime.After(r.Last) {
			r.Last = ev.Series.LastObservedTime.Time
		}
		if ev.Series.Count > r.Count {
			r.Count = ev.Series.Count
		}
	}
	return indexedEvent{EventReport: r, uid: uid}
}
