package eventlog

import (
	"context"
	"errors"
)

// Ops a Request may ask for.
const (
	OpList    = "list"
	OpShow    = "show"
	OpArchive = "archive"
	OpDelete  = "delete"
)

// Request is one query or change, as the CLI sends it to a worker and the
// admin API builds it from HTTP. Account, when set, scopes it to that
// account's events (an account token's view).
type Request struct {
	Op        string    `json:"op"`
	Filter    Filter    `json:"filter,omitzero"`
	ID        string    `json:"id,omitempty"`
	Selection Selection `json:"selection,omitzero"`
	Account   string    `json:"account,omitempty"`
}

// Response answers a Request. Error is set on failure, with NotFound or
// BadRequest saying which kind.
type Response struct {
	Events     []Event   `json:"events,omitempty"`
	Event      *Event    `json:"event,omitempty"`
	Attempts   []Attempt `json:"attempts,omitempty"`
	Count      int64     `json:"count,omitempty"`
	Error      string    `json:"error,omitempty"`
	NotFound   bool      `json:"not_found,omitempty"`
	BadRequest bool      `json:"bad_request,omitempty"`
}

// Do answers a request.
func (s *Store) Do(ctx context.Context, req Request) Response {
	var (
		resp Response
		err  error
	)
	switch req.Op {
	case OpList:
		f := req.Filter
		if req.Account != "" {
			if f.Account != "" && f.Account != req.Account {
				return Response{} // another account's events: none
			}
			f.Account = req.Account
		}
		resp.Events, err = s.List(ctx, f)
	case OpShow:
		var e Event
		e, resp.Attempts, err = s.Get(ctx, req.ID, req.Account)
		resp.Event = &e
	case OpArchive, OpDelete:
		sel := req.Selection
		sel.Account = req.Account
		if req.Op == OpArchive {
			resp.Count, err = s.Archive(ctx, sel)
		} else {
			resp.Count, err = s.Delete(ctx, sel)
		}
	default:
		err = errors.New("unknown op " + req.Op)
		return Response{Error: err.Error(), BadRequest: true}
	}
	if err != nil {
		return Response{Error: err.Error(), NotFound: errors.Is(err, ErrNotFound), BadRequest: errors.Is(err, ErrBadFilter)}
	}
	return resp
}
