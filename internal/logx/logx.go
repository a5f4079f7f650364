// Package logx is the small logger every cnimatrix package takes from its
// caller: one line per phase with elapsed time, detail only with -v.
package logx

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/redact"
)

// Logger writes progress lines. The zero value is not usable; use New or Discard.
type Logger struct {
	mu      *sync.Mutex
	w       io.Writer
	verbose bool
	prefix  string
	start   time.Time
}

// New returns a logger that writes to w; verbose enables Debugf lines.
func New(w io.Writer, verbose bool) *Logger {
	return &Logger{mu: &sync.Mutex{}, w: w, verbose: verbose, start: time.Now()}
}

// Discard returns a logger that prints nothing.
func Discard() *Logger { return New(io.Discard, false) }

// Stderr is a convenience for New(os.Stderr, verbose).
func Stderr(verbose bool) *Logger { return New(os.Stderr, verbose) }

// With returns a logger whose lines carry an extra "[prefix]".
func (l *Logger) With(prefix string) *Logger {
	c := *l
	if c.prefix != "" {
		c.prefix += " "
	}
	c.prefix += "[" + prefix + "]"
	return &c
}

// Verbose reports whether Debugf prints.
func (l *Logger) Verbose() bool { return l.verbose }

// Writer returns where lines go (for subprocess output in verbose mode).
func (l *Logger) Writer() io.Writer { return l.w }

func (l *Logger) line(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ts := time.Since(l.start).Truncate(100 * time.Millisecond)
	p := l.prefix
	if p != "" {
		p += " "
	}
	// A line may quote a pod's log or a provider's output: never a secret.
	fmt.Fprintf(l.w, "%8s %s%s\n", ts, p, redact.String(fmt.Sprintf(format, args...)))
}

// Infof prints a line always.
func (l *Logger) Infof(format string, args ...any) { l.line(format, args...) }

// Debugf prints a line only in verbose mode.
func (l *Logger) Debugf(format string, args ...any) {
	if l.verbose {
		l.line(format, args...)
	}
}

// Phase prints the start of a phase and returns a func that prints its end
// with the elapsed time and, when err is non-nil, the error.
func (l *Logger) Phase(name string) func(err error) time.Duration {
	t0 := time.Now()
	l.line("▶ %s", name)
	return func(err error) time.Duration {
		d := time.Since(t0)
		if err != nil {
			l.line("✗ %s (%s): %v", name, d.Truncate(100*time.Millisecond), err)
		} else {
			l.line("✓ %s (%s)", name, d.Truncate(100*time.Millisecond))
		}
		return d
	}
}
