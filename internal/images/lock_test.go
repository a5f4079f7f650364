package images

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cnimatrix/cnimatrix/internal/logx"
)

func TestLockFileExcludes(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.lock")
	ctx := context.Background()
	unlock, err := lockFile(ctx, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A second holder (another open file, as another process would have)
	// must wait for the first and give up with its context.
	short, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
	defer cancel()
	waited := false
	if _, err := lockFile(short, p, func() { waited = true }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock while held: %v, want deadline exceeded", err)
	}
	if !waited {
		t.Errorf("waiting callback not called")
	}
	unlock()
	unlock2, err := lockFile(ctx, p, nil)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}

func TestDoLockedBuildsOnce(t *testing.T) {
	c, err := NewCache(t.TempDir(), logx.Discard())
	if err != nil {
		t.Fatal(err)
	}
	var builds atomic.Int32
	build := func(ctx context.Context, dir string) error {
		builds.Add(1)
		time.Sleep(100 * time.Millisecond) // long enough for the others to queue
		return os.WriteFile(filepath.Join(dir, "out"), []byte("x"), 0o644)
	}
	var wg sync.WaitGroup
	dirs := make([]string, 4)
	for i := range dirs {
		wg.Go(func() {
			d, err := c.DoLocked(context.Background(), "test", "thing", "k1", build)
			if err != nil {
				t.Error(err)
			}
			dirs[i] = d
		})
	}
	wg.Wait()
	if n := builds.Load(); n != 1 {
		t.Errorf("built %d times, want 1", n)
	}
	for _, d := range dirs {
		if d != dirs[0] {
			t.Errorf("dirs differ: %v", dirs)
		}
	}
	if d, ok := c.Lookup("test", "thing", "k1"); !ok || d != dirs[0] {
		t.Errorf("Lookup = %q, %v", d, ok)
	}
	if _, ok := c.Lookup("test", "thing", "k2"); ok {
		t.Errorf("Lookup of an unbuilt key succeeded")
	}
}
