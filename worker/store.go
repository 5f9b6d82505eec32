package worker

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/nats-io/nats.go/jetstream"
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

// checkStoreFailure looks at an error the embedded outbox answered a write
// with. JetStream marks a stream's store failed at the first write that
// finds the disk full, and refuses every write after it, even once there is
// room again, until the server reopens it: the worker asks for a restart
// as soon as data_dir has room again. Until then it keeps delivering what
// the outbox holds.
func (w *Worker) checkStoreFailure(err error) {
	var api *jetstream.APIError
	if w.server == nil || !errors.As(err, &api) || !strings.Contains(api.Description, syscall.ENOSPC.Error()) {
		return
	}
	var fs syscall.Statfs_t
	if syscall.Statfs(w.cfg.DataDir, &fs) != nil || int64(fs.Bavail)*fs.Bsize < minFreeToReopen {
		return
	}
	w.fail(fmt.Errorf("the outbox's store in %s failed on a full disk, and there is room again: JetStream reopens it only when the worker restarts, so it stops here for its supervisor to start it again", w.cfg.DataDir))
}
