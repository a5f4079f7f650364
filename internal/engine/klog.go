package engine

import (
	"bytes"
	"sync"

	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/cnimatrix/cnimatrix/internal/logx"
)

// routeClientGoLogs sends what client-go prints by itself (klog lines such
// as the exec streams' "Copying stderr failed ... use of closed network
// connection" or "Websocket Ping failed", and the API server's warnings such
// as `unrecognized format "cidr"` for Calico's CRDs) to the run's logger as
// detail: shown with -v, not on the user's terminal otherwise. Both are
// process-wide, as klog is.
func routeClientGoLogs(log *logx.Logger) {
	w := &klogWriter{log: log}
	klog.LogToStderr(false)
	klog.SetOutput(w)
	rest.SetDefaultWarningHandler(warningLogger{log: log})
}

type klogWriter struct {
	mu  sync.Mutex
	log *logx.Logger
}

func (w *klogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		w.log.Debugf("client-go: %s", line)
	}
	return len(p), nil
}

type warningLogger struct{ log *logx.Logger }

func (l warningLogger) HandleWarningHeader(code int, agent, text string) {
	l.log.Debugf("kubernetes API warning: %s", text)
}
