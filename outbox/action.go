package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/courierhq/courier/event"
)

// RunAction reports a job as CloudStack action events: Started before fn
// runs, then Completed with INFO when it succeeds, or Completed with ERROR
// and the error when it fails, all linked by start_id. job gives the type,
// source, key and data; its StartID, when set, links to an earlier event of
// the job (Created or Scheduled), otherwise the Started event's id does.
// It returns fn's error, or the error of an emit (fn does not run when
// Started cannot be stored). An event spooled (ErrSpooled) counts as
// stored: it is safe and will be sent.
func (p *Publisher) RunAction(ctx context.Context, job event.Envelope, fn func(context.Context) error) error {
	started := job
	started.ID, started.State, started.Level = "", event.StateStarted, event.LevelInfo
	startedID, err := p.Emit(ctx, started)
	if err != nil && !errors.Is(err, ErrSpooled) {
		return fmt.Errorf("emit Started for %s: %w", job.Type, err)
	}
	link := job.StartID
	if link == "" {
		link = startedID
	}
	runErr := fn(ctx)
	done := job
	done.ID, done.State, done.StartID, done.Level = "", event.StateCompleted, link, event.LevelInfo
	if runErr != nil {
		done.Level = event.LevelError
		detail, _ := json.Marshal(map[string]any{"error": runErr.Error(), "data": job.Data})
		done.Data = detail
	}
	if _, err := p.Emit(ctx, done); err != nil && !errors.Is(err, ErrSpooled) {
		if runErr != nil {
			return fmt.Errorf("%w (and emitting Completed failed: %v)", runErr, err)
		}
		return fmt.Errorf("emit Completed for %s: %w", job.Type, err)
	}
	return runErr
}
