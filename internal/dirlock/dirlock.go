// Package dirlock holds a directory for one process at a time.
//
// The embedded NATS server takes no lock on its store directory: two workers
// started on one data_dir write the same JetStream files and each deletes
// blocks the other acknowledged. An flock on a file inside the directory is
// the guard, because the kernel drops it when the process dies, however it
// dies: a SIGKILLed worker never leaves a stale lock behind.
package dirlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// FileName is the lock file's name inside the held directory.
const FileName = "courier.lock"

// HeldError says that another process holds the directory.
type HeldError struct {
	Dir string
	// PID is the holder's process id, 0 when it could not be read (the
	// holder is between taking the lock and writing its pid).
	PID int
}

func (e *HeldError) Error() string {
	holder := "another process"
	if e.PID > 0 {
		holder = "process " + strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("data_dir %s is in use by %s; stop that worker or give this one its own data_dir", e.Dir, holder)
}

// Lock is a held directory. Release it with Release, or let the process end.
type Lock struct {
	f *os.File
}

// Acquire creates dir when it is missing (mode 0700) and takes an exclusive
// lock on it without waiting. When another process holds it, the error is a
// *HeldError naming that process.
func Acquire(dir string) (*Lock, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("lock %s: %w", abs, err)
	}
	path := filepath.Join(abs, FileName)
	// Opened without O_TRUNC: the holder's pid must survive our failed try.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", abs, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &HeldError{Dir: abs, PID: readPID(path)}
		}
		return nil, fmt.Errorf("lock %s: %w", abs, err)
	}
	if err := writePID(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: write pid: %w", abs, err)
	}
	return &Lock{f: f}, nil
}

// Release gives the directory up. It is safe to call on a nil Lock and more
// than once.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	// Closing the file drops the flock. The pid stays in the file: a stale
	// pid without a lock means nothing, and removing the file would let a
	// process that opened it just before take a lock on an unlinked inode.
	err := l.f.Close()
	l.f = nil
	return err
}

func writePID(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return err
}

func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return pid
}
