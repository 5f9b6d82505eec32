package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/courierhq/courier/config"
	"github.com/courierhq/courier/internal/bearer"
)

// maxDefinition bounds a request body: a sink definition is a few hundred
// bytes.
const maxDefinition = 64 << 10

// SinkView is a sink as the API and `worker sinks list` show it: where it
// delivers, never its credentials.
type SinkView struct {
	Name    string   `json:"name"`
	Type    string   `json:"type,omitempty"`
	Target  string   `json:"target,omitempty"`
	Events  []string `json:"events,omitempty"`
	Origin  string   `json:"origin"`
	Node    string   `json:"node,omitempty"`
	Updated string   `json:"updated"`
	Problem string   `json:"problem,omitempty"` // does not parse on this node
}

// Views lists every sink for display.
func (r *Registry) Views(ctx context.Context) ([]SinkView, error) {
	recs, err := r.Records(ctx)
	if err != nil {
		return nil, err
	}
	settings, _, err := r.Settings(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]SinkView, 0, len(recs))
	for _, rec := range recs {
		v := SinkView{Name: rec.Name, Origin: rec.Origin, Node: rec.Node, Updated: rec.Updated.Format(time.RFC3339)}
		if s, err := r.parse([]byte(rec.Definition), rec.Origin, settings.Sink); err != nil {
			v.Problem = err.Error()
		} else {
			v.Type, v.Target, v.Events = s.Type, s.Target(), s.Events
		}
		out = append(out, v)
	}
	return out, nil
}

// AdminOff is what the admin API answers while no token is set.
const AdminOff = "the admin API is off: set admin.token or admin.token_file in the worker's configuration"

// Handler serves the admin API under /v1/, every request authenticated by
// a bearer token compared in constant time. With an empty token the API is
// off and says how to turn it on.
//
//	GET    /v1/sinks            list
//	POST   /v1/sinks            define (the body is the YAML or JSON definition); 409 if it exists
//	PUT    /v1/sinks/{name}     define or replace
//	DELETE /v1/sinks/{name}     delete
//	GET    /v1/config           settings
//	PUT    /v1/config/{name}    set (the body is the value)
//	DELETE /v1/config/{name}    reset (name "all": every setting)
func (r *Registry) Handler(token string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/sinks", func(w http.ResponseWriter, req *http.Request) {
		views, err := r.Views(req.Context())
		reply(w, views, err)
	})
	define := func(w http.ResponseWriter, req *http.Request, replace bool) {
		body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxDefinition))
		if err != nil {
			replyError(w, http.StatusBadRequest, fmt.Errorf("read definition: %w", err))
			return
		}
		if name := req.PathValue("name"); name != "" {
			if err := sameName(body, name); err != nil {
				replyError(w, http.StatusBadRequest, err)
				return
			}
		}
		s, err := r.Put(req.Context(), body, OriginAPI, replace)
		switch {
		case errors.Is(err, ErrExists):
			replyError(w, http.StatusConflict, err)
		case errors.Is(err, ErrInvalid):
			replyError(w, http.StatusBadRequest, err)
		default:
			reply(w, map[string]string{"name": s.Name, "type": s.Type, "target": s.Target()}, err)
		}
	}
	mux.HandleFunc("POST /v1/sinks", func(w http.ResponseWriter, req *http.Request) { define(w, req, false) })
	mux.HandleFunc("PUT /v1/sinks/{name}", func(w http.ResponseWriter, req *http.Request) { define(w, req, true) })
	mux.HandleFunc("DELETE /v1/sinks/{name}", func(w http.ResponseWriter, req *http.Request) {
		undelivered, err := r.Delete(req.Context(), req.PathValue("name"))
		if errors.Is(err, ErrNoSink) {
			replyError(w, http.StatusNotFound, err)
			return
		}
		reply(w, map[string]any{"deleted": req.PathValue("name"), "undelivered": undelivered}, err)
	})
	mux.HandleFunc("GET /v1/config", func(w http.ResponseWriter, req *http.Request) {
		settings, problems, err := r.Settings(req.Context())
		if err != nil {
			reply(w, nil, err)
			return
		}
		overrides, err := r.Overrides(req.Context())
		out := map[string]any{}
		for _, st := range config.SettingNames() {
			v, _ := settings.Get(st.Name)
			_, set := overrides[st.Name]
			out[st.Name] = map[string]any{"value": v, "set": set}
		}
		if len(problems) > 0 {
			out["problems"] = fmt.Sprint(problems)
		}
		reply(w, out, err)
	})
	mux.HandleFunc("PUT /v1/config/{name}", func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, 1<<10))
		if err != nil {
			replyError(w, http.StatusBadRequest, err)
			return
		}
		if err := r.Set(req.Context(), req.PathValue("name"), strings.TrimSpace(string(body))); err != nil {
			replyError(w, http.StatusBadRequest, err)
			return
		}
		reply(w, map[string]string{"set": req.PathValue("name")}, nil)
	})
	mux.HandleFunc("DELETE /v1/config/{name}", func(w http.ResponseWriter, req *http.Request) {
		if err := r.Reset(req.Context(), req.PathValue("name")); err != nil {
			replyError(w, http.StatusBadRequest, err)
			return
		}
		reply(w, map[string]string{"reset": req.PathValue("name")}, nil)
	})
	return bearer.Require(token, AdminOff, mux)
}

// sameName refuses a PUT whose body names another sink than its path.
func sameName(def []byte, name string) error {
	var head struct {
		Name string `yaml:"name" json:"name"`
	}
	if err := yaml.Unmarshal(def, &head); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if head.Name != name {
		return fmt.Errorf("%w: the definition names sink %q, the path %q", ErrInvalid, head.Name, name)
	}
	return nil
}

func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		replyError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func replyError(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}
