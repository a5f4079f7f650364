// Package artifacts saves what a person needs to debug a failed cell: pods,
// services, endpoints and events of every namespace, the status of failing
// pods, container logs (current and previous) and per-node facts. Collection
// is best effort: one failing command does not stop the others.
package artifacts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/cnimatrix/cnimatrix/internal/cluster"
	"github.com/cnimatrix/cnimatrix/internal/redact"
)

// Dir returns the artifacts root: $ARTIFACTS when set (as CI systems expect), else def.
func Dir(def string) string {
	if d := os.Getenv("ARTIFACTS"); d != "" {
		return d
	}
	return def
}

// Collect writes the bundle for one cell into dir and returns the errors of
// the parts that could not be collected.
func Collect(ctx context.Context, dir string, client kubernetes.Interface, nodes []cluster.Node) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	var errs []error
	keep := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	write := func(name string, v any) {
		b, err := yaml.Marshal(v)
		if err != nil {
			keep(fmt.Errorf("%s: %w", name, err))
			return
		}
		keep(WriteRedacted(filepath.Join(dir, name), b))
	}
	if pods, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err != nil {
		keep(fmt.Errorf("list pods: %w", err))
	} else {
		write("pods.yaml", withoutSecretEnv(pods))
		keep(podLogs(ctx, filepath.Join(dir, "logs"), client, pods.Items))
		keep(WriteRedacted(filepath.Join(dir, "pods.txt"), []byte(podTable(pods.Items))))
	}
	if svcs, err := client.CoreV1().Services("").List(ctx, metav1.ListOptions{}); err == nil {
		write("services.yaml", svcs)
	} else {
		keep(fmt.Errorf("list services: %w", err))
	}
	if eps, err := client.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{}); err == nil {
		write("endpointslices.yaml", eps)
	} else {
		keep(fmt.Errorf("list endpointslices: %w", err))
	}
	if evs, err := client.CoreV1().Events("").List(ctx, metav1.ListOptions{}); err == nil {
		sort.Slice(evs.Items, func(i, j int) bool { return evs.Items[i].LastTimestamp.Before(&evs.Items[j].LastTimestamp) })
		var b strings.Builder
		for _, e := range evs.Items {
			fmt.Fprintf(&b, "%s %s %s/%s %s: %s\n", e.LastTimestamp.Format("15:04:05"), e.Type, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
		}
		keep(WriteRedacted(filepath.Join(dir, "events.txt"), []byte(b.String())))
	} else {
		keep(fmt.Errorf("list events: %w", err))
	}
	if ns, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err == nil {
		write("nodes.yaml", ns)
	} else {
		keep(fmt.Errorf("list nodes: %w", err))
	}
	for _, n := range nodes {
		keep(nodeFacts(ctx, filepath.Join(dir, "nodes", n.Name), n))
	}
	return errors.Join(errs...)
}

// secretEnv names environment variables whose values are secrets by name.
var secretEnv = regexp.MustCompile(`(?i)(token|secret|passw|key|credential|auth)`)

// withoutSecretEnv is pods with the values of secret-named environment
// variables replaced: a pod's spec carries them in clear, and the text
// redaction cannot tell `value:` of API_TOKEN from that of NODE_NAME.
// (valueFrom references stay: they name a Secret, not its content.)
func withoutSecretEnv(pods *corev1.PodList) *corev1.PodList {
	out := pods.DeepCopy()
	for i := range out.Items {
		spec := &out.Items[i].Spec
		for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
			for j := range cs {
				for k := range cs[j].Env {
					if e := &cs[j].Env[k]; e.Value != "" && secretEnv.MatchString(e.Name) {
						e.Value = redact.Marker
					}
				}
			}
		}
	}
	return out
}

func podTable(pods []corev1.Pod) string {
	var b strings.Builder
	for _, p := range pods {
		fmt.Fprintf(&b, "%s/%s node=%s phase=%s ip=%s\n", p.Namespace, p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.PodIP)
		for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			state := "running"
			switch {
			case cs.State.Waiting != nil:
				state = "waiting " + cs.State.Waiting.Reason + ": " + cs.State.Waiting.Message
			case cs.State.Terminated != nil:
				state = fmt.Sprintf("terminated %s (exit %d): %s", cs.State.Terminated.Reason, cs.State.Terminated.ExitCode, cs.State.Terminated.Message)
			}
			fmt.Fprintf(&b, "  container %s image=%s ready=%v restarts=%d %s\n", cs.Name, cs.Image, cs.Ready, cs.RestartCount, state)
		}
	}
	return b.String()
}

func podLogs(ctx context.Context, dir string, client kubernetes.Interface, pods []corev1.Pod) error {
	var errs []error
	for _, p := range pods {
		for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			for _, previous := range []bool{false, true} {
				if previous && cs.RestartCount == 0 {
					continue
				}
				req := client.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: cs.Name, Previous: previous, TailLines: ptr(int64(2000))})
				rc, err := req.Stream(ctx)
				if err != nil {
					continue // containers that never started have no logs
				}
				b, _ := io.ReadAll(io.LimitReader(rc, 4<<20))
				rc.Close()
				name := fmt.Sprintf("%s_%s_%s.log", p.Namespace, p.Name, cs.Name)
				if previous {
					name = strings.TrimSuffix(name, ".log") + ".previous.log"
				}
				if err := WriteRedacted(filepath.Join(dir, name), b); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

func nodeFacts(ctx context.Context, dir string, n cluster.Node) error {
	if n.Exec == nil {
		return nil
	}
	cmds := map[string][]string{
		"kubelet.log":       {"journalctl", "-u", "kubelet", "--no-pager", "-n", "3000"},
		"containerd.log":    {"journalctl", "-u", "containerd", "--no-pager", "-n", "3000"},
		"crictl-ps.txt":     {"crictl", "ps", "-a"},
		"crictl-images.txt": {"crictl", "images"},
		"ip-route.txt":      {"ip", "route"},
		"ip-addr.txt":       {"ip", "addr"},
		"uname.txt":         {"uname", "-a"},
	}
	var errs []error
	for name, argv := range cmds {
		var out bytes.Buffer
		if err := n.Exec.Run(ctx, &out, &out, argv...); err != nil {
			fmt.Fprintf(&out, "\n(command failed: %v)\n", err)
		}
		if err := WriteRedacted(filepath.Join(dir, name), out.Bytes()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func ptr[T any](v T) *T { return &v }

// Redact removes secrets, tokens, certificates and keys from b.
func Redact(b []byte) []byte { return redact.Bytes(b) }

// WriteRedacted writes b with secrets removed, creating parent folders.
func WriteRedacted(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, Redact(b), 0o644)
}
