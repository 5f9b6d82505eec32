// Package registry keeps the sink definitions and operator settings in
// replicated JetStream buckets beside the outbox. The configuration file
// seeds them; `worker sinks add|del`, `worker config set|reset` and the
// admin API change them; every node watches them and applies changes live.
// That is what makes Gluster's manual `gluster-eventsapi sync` unnecessary:
// a node that was down reads the current definitions when it comes back.
//
// Only this package creates and deletes sinks' consumers, so a consumer
// exists exactly while its sink is defined: a node never recreates the
// consumer of a sink deleted meanwhile, which would pin the outbox.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/courierhq/courier/config"
	"github.com/courierhq/courier/outbox"
)

// Origins of a sink definition.
const (
	// OriginFile: seeded from a node's configuration file, which keeps it
	// up to date (and removes it when the file no longer has it).
	OriginFile = "file"
	// OriginAPI: added or changed by an operator at run time; configuration
	// files leave it alone.
	OriginAPI = "api"
)

// Errors callers tell apart.
var (
	// ErrExists: a sink of that name is already defined.
	ErrExists = errors.New("sink already exists")
	// ErrNoSink: no sink of that name is defined.
	ErrNoSink = errors.New("no such sink")
	// ErrInvalid: the definition or setting does not validate.
	ErrInvalid = errors.New("invalid")
)

// Record is one sink definition as stored.
type Record struct {
	Name string `json:"name"`
	// Definition is the sink as written (YAML), ${ENV} not expanded.
	Definition string    `json:"definition"`
	Origin     string    `json:"origin"`
	Node       string    `json:"node,omitempty"` // where it was last changed
	Updated    time.Time `json:"updated"`
}

// Registry reads and changes the replicated definitions.
type Registry struct {
	js       jetstream.JetStream
	sinks    *outbox.Bucket
	settings *outbox.Bucket
	node     string
	base     config.Settings
	env      config.Env
}

// Ensure creates or opens the buckets (the worker, at start). base holds
// the settings before any override: the configuration file's.
func Ensure(ctx context.Context, js jetstream.JetStream, replicas int, node string, base config.Settings, env config.Env) (*Registry, error) {
	r := &Registry{js: js, node: node, base: base, env: env}
	var err error
	if r.sinks, err = outbox.EnsureBucket(ctx, js, outbox.BucketSinks, "Courier sink definitions", replicas); err != nil {
		return nil, err
	}
	if r.settings, err = outbox.EnsureBucket(ctx, js, outbox.BucketSettings, "Courier settings (worker config set)", replicas); err != nil {
		return nil, err
	}
	return r, nil
}

// Open opens the buckets a worker created (operator commands).
func Open(ctx context.Context, js jetstream.JetStream, node string, base config.Settings, env config.Env) (*Registry, error) {
	r := &Registry{js: js, node: node, base: base, env: env}
	var err error
	if r.sinks, err = outbox.OpenBucket(ctx, js, outbox.BucketSinks); err != nil {
		return nil, fmt.Errorf("%w (has a worker started with this outbox?)", err)
	}
	if r.settings, err = outbox.OpenBucket(ctx, js, outbox.BucketSettings); err != nil {
		return nil, err
	}
	return r, nil
}

// Records returns every stored sink definition, sorted by name.
func (r *Registry) Records(ctx context.Context) ([]Record, error) {
	all, err := r.sinks.All(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(all))
	for _, key := range slices.Sorted(maps.Keys(all)) {
		var rec Record
		if err := json.Unmarshal(all[key], &rec); err != nil {
			return nil, fmt.Errorf("decode sink definition %s: %w", key, err)
		}
		out = append(out, rec)
	}
	return out, nil
}

// Sinks parses every stored definition with the current settings, for this
// node's environment. A definition that does not parse here (say, a
// ${TOKEN} this node's environment lacks) is reported in errs by name and
// left out; the others still run.
func (r *Registry) Sinks(ctx context.Context) (sinks []config.Sink, settings config.Settings, errs map[string]error, err error) {
	settings, serrs, err := r.Settings(ctx)
	if err != nil {
		return nil, settings, nil, err
	}
	recs, err := r.Records(ctx)
	if err != nil {
		return nil, settings, nil, err
	}
	errs = map[string]error{}
	for _, e := range serrs {
		errs["settings"] = e
	}
	for _, rec := range recs {
		s, err := r.parse([]byte(rec.Definition), rec.Origin, settings.Sink)
		if err != nil {
			errs[rec.Name] = err
			continue
		}
		sinks = append(sinks, s)
	}
	return sinks, settings, errs, nil
}

// parse reads a stored or new definition. One made at run time may
// reference only the environment variables secrets.allow_env lists; one
// from a node's file, any (the file is the operator's).
func (r *Registry) parse(def []byte, origin string, d config.SinkDefaults) (config.Sink, error) {
	if origin != OriginFile {
		if err := config.CheckRuntimeEnv(def, r.env.RuntimeAllow); err != nil {
			return config.Sink{}, err
		}
	}
	return config.ParseSink(def, r.env.Lookup, d, r.env.Kinds)
}

// Put validates a definition, makes sure the sink's consumer exists, then
// stores the definition, which every node picks up. With replace false an
// existing sink of that name is an error.
func (r *Registry) Put(ctx context.Context, definition []byte, origin string, replace bool) (config.Sink, error) {
	return r.put(ctx, definition, origin, replace, outbox.EnsureConsumer)
}

type ensureConsumerFunc func(ctx context.Context, js jetstream.JetStream, sink string, ackWait time.Duration, maxAckPending int) (jetstream.Consumer, error)

func (r *Registry) put(ctx context.Context, definition []byte, origin string, replace bool, ensure ensureConsumerFunc) (config.Sink, error) {
	settings, _, err := r.Settings(ctx)
	if err != nil {
		return config.Sink{}, err
	}
	s, err := r.parse(definition, origin, settings.Sink)
	if err != nil {
		return config.Sink{}, fmt.Errorf("%w sink definition: %w", ErrInvalid, err)
	}
	if !replace {
		// Checked here for a clear error before the consumer is created;
		// the store below is a Create, so a concurrent add still loses.
		if _, ok, err := r.sinks.Get(ctx, s.Name); err != nil {
			return s, err
		} else if ok {
			return s, fmt.Errorf("%w: %s (replace it, or delete it first)", ErrExists, s.Name)
		}
	}
	// The consumer first: once nodes see the definition they bind to it,
	// and events stored from now on are kept for this sink.
	if _, err := ensure(ctx, r.js, s.Name, s.AckWait(), s.MaxAckPending()); err != nil {
		return s, err
	}
	b, err := json.Marshal(Record{Name: s.Name, Definition: string(definition), Origin: origin, Node: r.node, Updated: time.Now().UTC()})
	if err != nil {
		return s, fmt.Errorf("encode sink %s: %w", s.Name, err)
	}
	if !replace {
		if err := r.sinks.Create(ctx, s.Name, b); errors.Is(err, outbox.ErrKeyExists) {
			return s, fmt.Errorf("%w: %s (replace it, or delete it first)", ErrExists, s.Name)
		} else if err != nil {
			return s, err
		}
		return s, nil
	}
	return s, r.sinks.Put(ctx, s.Name, b)
}

// Delete removes a sink's definition, then its consumer and with it the
// sink's claim on undelivered events. It returns how many events the sink
// still had to deliver. Dead letters stay until they expire.
func (r *Registry) Delete(ctx context.Context, name string) (undelivered uint64, err error) {
	// Read as a snapshot, not by a direct get: one answered by a replica
	// still catching up could miss the definition, and only the consumer
	// would go.
	all, err := r.sinks.All(ctx)
	if err != nil {
		return 0, err
	}
	_, defined := all[name]
	if defined {
		if err := r.sinks.Delete(ctx, name); err != nil {
			return 0, err
		}
	}
	// Also when the definition is gone already: a delete that failed
	// half-way is finished by running it again.
	removed, existed, err := outbox.RemoveConsumer(ctx, r.js, name)
	if err != nil {
		return 0, err
	}
	if !defined && !existed {
		return 0, fmt.Errorf("%w: %s", ErrNoSink, name)
	}
	return removed, nil
}

// Seed brings the sinks of a configuration file into the registry: a sink
// not defined yet is added; one a file defined before is updated when its
// definition in this file differs; one this node's file defined before but
// no longer has is deleted (only this node's: nodes whose files list
// different sinks must not delete each other's). Sinks defined at run time (OriginAPI) are left alone, and
// reported in overridden when the file defines them differently.
func (r *Registry) Seed(ctx context.Context, file *config.File) (added, updated, removed, overridden []string, err error) {
	recs, err := r.Records(ctx)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	stored := map[string]Record{}
	for _, rec := range recs {
		stored[rec.Name] = rec
	}
	inFile := map[string]bool{}
	for _, s := range file.Sinks {
		inFile[s.Name] = true
		rec, ok := stored[s.Name]
		switch {
		case !ok:
			added = append(added, s.Name)
		case rec.Origin == OriginAPI:
			if rec.Definition != s.Source {
				overridden = append(overridden, s.Name)
			}
			continue
		case rec.Definition == s.Source:
			// Make sure the consumer exists (a sink seeded by an earlier
			// version, or a consumer removed by hand).
			if _, err := outbox.EnsureStartupConsumer(ctx, r.js, s.Name, s.AckWait(), s.MaxAckPending()); err != nil {
				return added, updated, removed, overridden, err
			}
			continue
		default:
			updated = append(updated, s.Name)
		}
		if _, err := r.put(ctx, []byte(s.Source), OriginFile, true, outbox.EnsureStartupConsumer); err != nil {
			return added, updated, removed, overridden, fmt.Errorf("seed sink %s: %w", s.Name, err)
		}
	}
	for _, rec := range recs {
		if rec.Origin == OriginFile && rec.Node == r.node && !inFile[rec.Name] {
			if _, err := r.Delete(ctx, rec.Name); err != nil {
				return added, updated, removed, overridden, err
			}
			removed = append(removed, rec.Name)
		}
	}
	return added, updated, removed, overridden, nil
}

// Changes signals after any sink definition or setting changed.
func (r *Registry) Changes(ctx context.Context) (<-chan struct{}, error) {
	// Both watches end together, also when the second cannot start (the
	// caller may try again).
	ctx, cancel := context.WithCancel(ctx)
	sinks, err := r.sinks.Changes(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	settings, err := r.settings.Changes(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	out := make(chan struct{}, 1)
	go func() {
		defer cancel()
		for {
			select {
			case <-ctx.Done():
				return
			case <-sinks:
			case <-settings:
			}
			select {
			case out <- struct{}{}:
			default:
			}
		}
	}()
	return out, nil
}
