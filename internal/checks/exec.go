package checks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
	"k8s.io/streaming/pkg/httpstream"
)

// execOutput is what a command run in a pod produced. Err is set only when
// the exec itself failed (API server, kubelet, stream), never for a non-zero
// exit, which is Code.
type execOutput struct {
	Stdout, Stderr string
	Code           int
	Err            error
	Took           time.Duration
}

// maxOutput bounds what a probe may print; a probe that prints more is broken.
const maxOutput = 1 << 20

type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := maxOutput - b.Len(); room < len(p) {
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

// exec runs argv in the pod's first container. It tries the WebSocket
// protocol first and falls back to SPDY when the server cannot upgrade to it
// (API servers before 1.30), as kubectl does.
func (e *Env) exec(ctx context.Context, pod *corev1.Pod, argv ...string) execOutput {
	t0 := time.Now()
	if e.Config == nil {
		return execOutput{Err: errors.New("env has no rest.Config to exec with"), Took: time.Since(t0)}
	}
	if e.core == nil {
		cs, err := kubernetes.NewForConfig(e.Config)
		if err != nil {
			return execOutput{Err: fmt.Errorf("client for exec: %w", err)}
		}
		e.core = cs.CoreV1().RESTClient()
	}
	container := ""
	if len(pod.Spec.Containers) > 0 {
		container = pod.Spec.Containers[0].Name
	}
	req := e.core.Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: argv, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(e.Config, "GET", req.URL().String())
	if err != nil {
		return execOutput{Err: fmt.Errorf("websocket executor: %w", err), Took: time.Since(t0)}
	}
	spdy, err := remotecommand.NewSPDYExecutor(e.Config, "POST", req.URL())
	if err != nil {
		return execOutput{Err: fmt.Errorf("spdy executor: %w", err), Took: time.Since(t0)}
	}
	ex, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return execOutput{Err: fmt.Errorf("exec executor: %w", err), Took: time.Since(t0)}
	}
	var stdout, stderr limitedBuffer
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr})
	out := execOutput{Stdout: stdout.String(), Stderr: stderr.String(), Took: time.Since(t0)}
	var ee utilexec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		out.Code = ee.ExitStatus()
	case strings.Contains(err.Error(), "is forbidden:"):
		// RBAC: on a cluster cnimatrix did not create, the kubeconfig
		// may lack a right; say which file lists them.
		out.Err = fmt.Errorf("exec in pod %s/%s: %w (the kubeconfig needs create on pods/exec in namespace %s: see docs/existing-cluster-rbac.yaml)", pod.Namespace, pod.Name, err, pod.Namespace)
	default:
		out.Err = fmt.Errorf("exec in pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return out
}

// probeAttempts bounds the retries of one probe. Only transport failures
// are retried (see retry); with probeBackoff the waits add up to ~3.5 s.
const probeAttempts = 4

func probeBackoff() wait.Backoff {
	return wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: probeAttempts}
}

// retry calls attempt until it reports a result that is not transient, or
// max attempts were made, or ctx ends; it returns the number of attempts.
func retry(ctx context.Context, max int, attempt func(ctx context.Context) (transient bool)) int {
	b := probeBackoff()
	n := 0
	for {
		n++
		if !attempt(ctx) || n >= max {
			return n
		}
		t := time.NewTimer(b.Step())
		select {
		case <-ctx.Done():
			t.Stop()
			return n
		case <-t.C:
		}
	}
}
