package eventlog

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// Caller is who a request comes from: the admin (every event) or one
// account (its events only).
type Caller struct {
	Account string // empty for the admin
}

// Authenticate finds the request's caller; ok false refuses it, with the
// status and message to answer.
type Authenticate func(*http.Request) (c Caller, status int, msg string, ok bool)

// Handler serves the event log under /v1/events:
//
//	GET  /v1/events           list (FilterParams as query parameters)
//	GET  /v1/events/{id}      one event, its deliveries and attempts
//	POST /v1/events/archive   archive (SelectionParams, query or form)
//	POST /v1/events/delete    delete
//
// A bad parameter is 400 with the reason; nothing found is 404, also for
// another account's event.
func Handler(do func(context.Context, Request) Response, auth Authenticate) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		f, err := ParseFilter(r.URL.Query(), time.Now())
		if err != nil {
			writeJSON(w, http.StatusBadRequest, Response{Error: err.Error(), BadRequest: true})
			return
		}
		answer(w, r, do, Request{Op: OpList, Filter: f})
	})
	mux.HandleFunc("GET /v1/events/{id}", func(w http.ResponseWriter, r *http.Request) {
		answer(w, r, do, Request{Op: OpShow, ID: r.PathValue("id")})
	})
	for _, op := range []string{OpArchive, OpDelete} {
		mux.HandleFunc("POST /v1/events/"+op, func(w http.ResponseWriter, r *http.Request) {
			r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
			if err := r.ParseForm(); err != nil {
				writeJSON(w, http.StatusBadRequest, Response{Error: err.Error(), BadRequest: true})
				return
			}
			sel, err := ParseSelection(r.Form, time.Now())
			if err != nil {
				writeJSON(w, http.StatusBadRequest, Response{Error: err.Error(), BadRequest: true})
				return
			}
			answer(w, r, do, Request{Op: op, Selection: sel})
		})
	}
	// The caller is known before anything of the request is read: one
	// without a token costs no more than its headers.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, status, msg, ok := auth(r)
		if !ok {
			writeJSON(w, status, Response{Error: msg})
			return
		}
		mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
	})
}

// callerKey carries the authenticated Caller from Handler to answer.
type callerKey struct{}

func answer(w http.ResponseWriter, r *http.Request, do func(context.Context, Request) Response, req Request) {
	c, _ := r.Context().Value(callerKey{}).(Caller)
	req.Account = c.Account
	resp := do(r.Context(), req)
	switch {
	case resp.NotFound:
		writeJSON(w, http.StatusNotFound, resp)
	case resp.BadRequest:
		writeJSON(w, http.StatusBadRequest, resp)
	case resp.Error != "":
		writeJSON(w, http.StatusInternalServerError, resp)
	default:
		writeJSON(w, http.StatusOK, resp)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
