// Package spool keeps events on the producer's own disk while the outbox
// cannot take them.
//
// The outbox only says "stored" after JetStream fsynced an event; when it
// cannot answer at all (the server is down, the URL is wrong for a while, the
// node lost its cluster's quorum) a producer used to be left holding the
// event, and a script retrying it would mint a new id and risk a duplicate.
// The spool closes that gap: the event is fsynced here, one file per event
// named by its id, and sent later with the same id, so the outbox's
// de-duplication on Nats-Msg-Id makes a repeated send harmless.
//
// A spool is a plain directory. Several processes may use one at once (an
// emit run and the worker both flushing it, say): every write is a rename,
// and a flusher treats a file that vanished under it as sent by another.
// It relies on POSIX rename and directory fsync; it is not meant for Windows.
package spool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/courierhq/courier/event"
)

// ErrRejected is what an emit function passed to Flush wraps when the outbox
// will never take an event (too large, invalid): Flush moves that file to
// bad/ and goes on, instead of letting it block every event behind it.
var ErrRejected = errors.New("event rejected by the outbox")

// ErrBadFile is wrapped by Flush's error for each file it moved to bad/.
var ErrBadFile = errors.New("spool file moved aside")

const (
	suffix    = ".json"
	tmpPrefix = ".put-"
	tmpSuffix = ".tmp"
	badDir    = "bad"
	// staleTmp is how old a temporary file must be before Flush removes it:
	// a Put finishes in far less, so an older one was left by a crash, and
	// its Put never reported success.
	staleTmp = 10 * time.Minute
)

// Spool is a directory of events waiting to be sent. Its methods are safe for
// concurrent use, also by several processes on one directory.
type Spool struct {
	dir string
}

// Open returns the spool in dir, creating the directory (mode 0700: events
// may carry data only their producer should read) when it is missing.
func Open(dir string) (*Spool, error) {
	if dir == "" {
		return nil, errors.New("open spool: no directory given")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open spool %s: %w", dir, err)
	}
	return &Spool{dir: abs}, nil
}

// Dir is the spool's directory, as an absolute path.
func (s *Spool) Dir() string { return s.dir }

// Put stores e durably: when Put returns nil, the event survives a crash or
// a power loss. e must be complete and valid (it has its final id and time);
// an id already in the spool is replaced atomically.
func (s *Spool) Put(e event.Envelope) error {
	if err := e.Validate(); err != nil {
		return fmt.Errorf("spool event %s: %w", e.ID, err)
	}
	data, err := json.Marshal(&e)
	if err != nil {
		return fmt.Errorf("spool event %s: encode: %w", e.ID, err)
	}
	data = append(data, '\n')
	// Write, fsync, then rename: a reader sees the whole event or none of
	// it, and the directory fsync makes the new name itself durable.
	f, err := os.CreateTemp(s.dir, tmpPrefix+"*"+tmpSuffix)
	if err != nil {
		return fmt.Errorf("spool event %s: %w", e.ID, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, e.ID+suffix))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("spool event %s in %s: %w", e.ID, s.dir, err)
	}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("spool event %s: %w", e.ID, err)
	}
	return nil
}

// Len is the number of events waiting (files moved to bad/ not included).
func (s *Spool) Len() (int, error) {
	names, err := s.names()
	return len(names), err
}

// names lists the spooled events' files in id order. For UUIDv7 ids, the
// ones emit generates, that is the order they were emitted in.
func (s *Spool) names() ([]string, error) {
	entries, err := os.ReadDir(s.dir) // sorted by name
	if err != nil {
		return nil, fmt.Errorf("read spool %s: %w", s.dir, err)
	}
	var names []string
	for _, de := range entries {
		if n := de.Name(); strings.HasSuffix(n, suffix) && de.Type().IsRegular() {
			names = append(names, n)
		}
	}
	return names, nil
}

// Flush hands the spooled events to emit one at a time, in id order, and
// deletes each file once emit returned nil (emit must treat an id the outbox
// already holds as success). It stops at the first error of emit and returns
// it, keeping that file and the ones after it. A file that is not a valid
// event, or whose event emit rejected with ErrRejected, is moved to bad/ and
// reported (errors.Is(err, ErrBadFile)); Flush goes on with the next one.
// It returns how many events it sent.
//
// Two flushers on one directory may both send an event before either
// deletes it; the outbox stores it once. A file that vanished meanwhile was
// sent by the other flusher and is skipped.
func (s *Spool) Flush(ctx context.Context, emit func(context.Context, event.Envelope) error) (int, error) {
	s.removeStaleTemps()
	names, err := s.names()
	if err != nil {
		return 0, err
	}
	var (
		sent    int
		bad     []error
		removed bool
	)
	// The deletions are made durable once at the end rather than per file: a
	// deletion lost to a crash only means an event is sent again, which the
	// outbox de-duplicates.
	defer func() {
		if removed {
			_ = syncDir(s.dir)
		}
	}()
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return sent, errors.Join(append(bad, fmt.Errorf("flush spool %s: %w", s.dir, err))...)
		}
		path := filepath.Join(s.dir, name)
		e, err := readEvent(path, strings.TrimSuffix(name, suffix))
		if errors.Is(err, fs.ErrNotExist) {
			continue // another flusher sent it
		}
		if err != nil {
			if moved := s.moveAside(name, err); moved != nil {
				bad = append(bad, moved)
			}
			continue
		}
		if err := emit(ctx, e); err != nil {
			if errors.Is(err, ErrRejected) {
				if moved := s.moveAside(name, err); moved != nil {
					bad = append(bad, moved)
				}
				continue
			}
			return sent, errors.Join(append(bad, fmt.Errorf("flush spool %s: event %s: %w", s.dir, e.ID, err))...)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			// Sent but still here: it will be sent again, which is safe,
			// but something is wrong with the directory.
			return sent + 1, errors.Join(append(bad, fmt.Errorf("flush spool %s: event %s sent but its file stays: %w", s.dir, e.ID, err))...)
		}
		removed = true
		sent++
	}
	return sent, errors.Join(bad...)
}

// readEvent decodes one spool file strictly. The file name must be the
// event's id: Put guarantees it, and replacing by id depends on it.
func readEvent(path, id string) (event.Envelope, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return event.Envelope{}, err
	}
	e, err := event.Decode(b)
	if err == nil {
		err = e.Validate()
	}
	if err == nil && e.ID != id {
		err = fmt.Errorf("the file holds event %q, not %q", e.ID, id)
	}
	return e, err
}

// moveAside moves a file that cannot be sent to bad/, so that it neither
// blocks the spool nor disappears, and returns the error that says so. It
// returns nil when the file is gone already (another flusher moved it).
func (s *Spool) moveAside(name string, why error) error {
	bad := filepath.Join(s.dir, badDir)
	if err := os.MkdirAll(bad, 0o700); err != nil {
		return fmt.Errorf("%w: %s cannot be sent (%v), and bad/ cannot be created: %v", ErrBadFile, filepath.Join(s.dir, name), why, err)
	}
	dst := filepath.Join(bad, name)
	if _, err := os.Lstat(dst); err == nil {
		// Keep the earlier one too.
		dst += "." + time.Now().UTC().Format("20060102T150405.000000000Z")
	}
	if err := os.Rename(filepath.Join(s.dir, name), dst); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("%w: %s cannot be sent (%v), and moving it to bad/ failed: %v", ErrBadFile, filepath.Join(s.dir, name), why, err)
	}
	_ = syncDir(bad)
	_ = syncDir(s.dir)
	return fmt.Errorf("%w: %s cannot be sent, moved to %s: %v", ErrBadFile, name, dst, why)
}

// removeStaleTemps deletes what crashed Puts left behind.
func (s *Spool) removeStaleTemps() {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return
	}
	for _, de := range entries {
		n := de.Name()
		if !strings.HasPrefix(n, tmpPrefix) || !strings.HasSuffix(n, tmpSuffix) {
			continue
		}
		if info, err := de.Info(); err == nil && time.Since(info.ModTime()) > staleTmp {
			_ = os.Remove(filepath.Join(s.dir, n))
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
