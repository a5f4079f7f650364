package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// DoLocked is Do serialised across goroutines and processes by an exclusive
// flock on a lock file beside the entry: two cnimatrix runs asking for the
// same product build it once, and the second one finds it complete. A hit
// does not take the lock, so warm calls cost a stat.
func (c *Cache) DoLocked(ctx context.Context, kind, name, key string, build func(ctx context.Context, dir string) error) (string, error) {
	if dir, ok := c.Lookup(kind, name, key); ok {
		return dir, nil
	}
	lockPath := filepath.Join(c.Dir, kind, "."+name+"-"+key+".lock")
	unlock, err := lockFile(ctx, lockPath, func() {
		c.Log.Infof("waiting for another build of %s/%s-%s to finish", kind, name, key)
	})
	if err != nil {
		return "", fmt.Errorf("lock %s/%s: %w", kind, name, err)
	}
	defer unlock()
	return c.Do(ctx, kind, name, key, build)
}

// Lookup returns the directory of a complete entry without building it.
func (c *Cache) Lookup(kind, name, key string) (string, bool) {
	final := filepath.Join(c.Dir, kind, name+"-"+key)
	if _, err := os.Stat(filepath.Join(final, ".complete")); err != nil {
		return "", false
	}
	return final, true
}

// lockFile takes an exclusive flock on path, creating it. flock locks belong
// to the open file description, so two goroutines of one process exclude each
// other as two processes do, and the kernel drops the lock when a holder
// dies. A blocking flock cannot observe ctx, so it polls with LOCK_NB and a
// growing delay; waiting is called once, when the lock is first found taken.
func lockFile(ctx context.Context, path string, waiting func()) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	delay := 50 * time.Millisecond
	for first := true; ; first = false {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("flock %s: %w", path, err)
		}
		if first && waiting != nil {
			waiting()
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
