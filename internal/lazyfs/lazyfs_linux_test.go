package lazyfs_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/courierhq/courier/internal/lazyfs"
	"github.com/courierhq/courier/internal/testutil"
)

func mount(t *testing.T) (*lazyfs.FS, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		testutil.Require(t, fmt.Errorf("lazyfs mounts with mount(2), which needs root"))
	}
	backing, mnt := t.TempDir(), t.TempDir()
	f, err := lazyfs.Mount(backing, mnt)
	if err != nil {
		testutil.Require(t, err)
	}
	t.Cleanup(func() { _ = f.Unmount() })
	return f, mnt
}

func write(t *testing.T, path string, data []byte, sync bool) {
	t.Helper()
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if _, err := file.Write(data); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := file.Sync(); err != nil {
			t.Fatal(err)
		}
	}
}

// What was fsynced survives a power loss; what was written after it, or
// never synced, is gone, whether it overwrote, extended or truncated.
func TestPowerLossKeepsOnlyWhatWasSynced(t *testing.T) {
	f, mnt := mount(t)
	log, fresh, cut := filepath.Join(mnt, "log"), filepath.Join(mnt, "fresh"), filepath.Join(mnt, "cut")

	write(t, log, []byte("synced."), true)
	write(t, log, []byte("lost."), false)
	write(t, fresh, []byte("never synced"), false)
	write(t, cut, []byte("0123456789"), true)
	if err := os.Truncate(cut, 4); err != nil {
		t.Fatal(err)
	}
	// Overwrite in place, unsynced.
	file, err := os.OpenFile(log, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = file.WriteAt([]byte("XX"), 0)
	file.Close()
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(log); string(got) != "XXnced.lost." {
		t.Fatalf("before the power loss %q reads %q: writes must be visible at once", log, got)
	}

	stats, err := f.PowerLoss()
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{log: "synced.", fresh: "", cut: "0123456789"} {
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, []byte(want)) {
			t.Errorf("after the power loss %s = %q, want %q", filepath.Base(path), got, want)
		}
	}
	if stats.PowerLosses != 1 || stats.WritesDropped != 4 || stats.BytesDropped != int64(len("lost.")+len("never synced")+6+2) {
		t.Errorf("stats %+v: want 1 power loss, 4 writes and 25 bytes dropped", stats)
	}

	// The mount is usable again, and a second loss starts from there.
	write(t, log, []byte("again."), true)
	if _, err := f.PowerLoss(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(log); string(got) != "synced.again." {
		t.Errorf("after a second power loss log = %q, want %q", got, "synced.again.")
	}
}
