package worker

import (
	"fmt"
	"syscall"
)

// Failed delivers the error that stops the worker for good: it cannot go
// on without a restart, so worker run exits with it (status 1) for its
// supervisor (systemd's Restart=on-failure, Kubernetes) to start it again.
func (w *Worker) Failed() <-chan error { return w.failed }

func (w *Worker) fail(err error) {
	select {
	case w.failed <- err:
	default: // one is enough
	}
}

// minFreeToReopen is the room data_dir needs before a failed store is
// worth reopening.
const minFreeToReopen = 1 << 20

// checkStoreFailure asks for a restart once the embedded outbox has failed
// a write on a full disk and data_dir has room again. JetStream marks a
// stream's store failed at the first write that finds the disk full and
// refuses every write after it, even once there is room, until the server
// reopens it. Until then the worker keeps delivering what the outbox holds.
// It runs every trim tick, whatever failed: a producer's emit, a dead
// letter, the attempt log or the trim.
func (w *Worker) checkStoreFailure() {
	if w.server == nil || !w.server.DiskFull() {
		return
	}
	var fs syscall.Statfs_t
	if syscall.Statfs(w.cfg.DataDir, &fs) != nil || int64(fs.Bavail)*int64(fs.Bsize) < minFreeToReopen {
		return
	}
	w.fail(fmt.Errorf("the outbox's store in %s failed on a full disk, and there is room again: JetStream reopens it only when the worker restarts, so it stops here for its supervisor to start it again", w.cfg.DataDir))
}
