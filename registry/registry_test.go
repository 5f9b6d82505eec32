package registry_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/courierhq/courier/config"
	"github.com/courierhq/courier/internal/testutil"
	"github.com/courierhq/courier/outbox"
	"github.com/courierhq/courier/registry"
	"github.com/courierhq/courier/sinks/builtin"
)

func file(t *testing.T, node string, sinks ...string) *config.File {
	t.Helper()
	y := "node_id: " + node + "\nwebhook_allow: [127.0.0.1/32]\nsinks:\n"
	for _, s := range sinks {
		y += s
	}
	cfg, err := config.Parse([]byte(y), func(string) (string, bool) { return "", false }, builtin.Kinds())
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

func hook(name, path string) string {
	return fmt.Sprintf("  - name: %s\n    type: webhook\n    url: http://127.0.0.1:9/%s\n", name, path)
}

func TestSeedAddsUpdatesAndRemovesOnlyItsOwnFileSinks(t *testing.T) {
	ctx := context.Background()
	_, js := testutil.StartOutbox(t, outbox.Limits{})
	base := file(t, "n1").BaseSettings()
	open := func(node string) *registry.Registry {
		r, err := registry.Ensure(ctx, js, 1, node, base, config.Env{Lookup: func(string) (string, bool) { return "", false }, Kinds: builtin.Kinds()})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	n1, n2 := open("n1"), open("n2")
	seed := func(r *registry.Registry, f *config.File) (added, updated, removed, overridden []string) {
		t.Helper()
		a, u, rm, o, err := r.Seed(ctx, f)
		if err != nil {
			t.Fatalf("seed: %v", err)
		}
		return a, u, rm, o
	}
	consumerExists := func(sink string) bool {
		_, err := js.Consumer(ctx, outbox.StreamEvents, outbox.ConsumerPrefix+sink)
		return err == nil
	}

	if a, _, _, _ := seed(n1, file(t, "n1", hook("a", "x"), hook("b", "x"))); !slices.Equal(a, []string{"a", "b"}) {
		t.Fatalf("added %v, want [a b]", a)
	}
	if !consumerExists("a") || !consumerExists("b") {
		t.Fatal("seeded sinks have no consumer")
	}
	if a, u, rm, _ := seed(n1, file(t, "n1", hook("a", "x"), hook("b", "x"))); len(a)+len(u)+len(rm) != 0 {
		t.Errorf("unchanged file changed the registry: added %v updated %v removed %v", a, u, rm)
	}
	if _, u, _, _ := seed(n1, file(t, "n1", hook("a", "changed"), hook("b", "x"))); !slices.Equal(u, []string{"a"}) {
		t.Errorf("updated %v, want [a]", u)
	}
	// Another node whose file lists no sinks deletes nothing of n1's.
	if _, _, rm, _ := seed(n2, file(t, "n2")); len(rm) != 0 {
		t.Errorf("n2 removed %v seeded by n1", rm)
	}
	// n1 dropping b from its file deletes b, and its consumer.
	if _, _, rm, _ := seed(n1, file(t, "n1", hook("a", "changed"))); !slices.Equal(rm, []string{"b"}) {
		t.Errorf("removed %v, want [b]", rm)
	}
	if consumerExists("b") {
		t.Error("consumer of the removed sink b still exists")
	}
	// A run-time definition wins over the file's.
	if _, err := n2.Put(ctx, []byte("name: a\ntype: webhook\nurl: http://127.0.0.1:9/api\n"), registry.OriginAPI, true); err != nil {
		t.Fatal(err)
	}
	if _, u, _, o := seed(n1, file(t, "n1", hook("a", "changed"))); len(u) != 0 || !slices.Equal(o, []string{"a"}) {
		t.Errorf("updated %v overridden %v, want the run-time definition kept", u, o)
	}
	recs, err := n1.Records(ctx)
	if err != nil || len(recs) != 1 || recs[0].Origin != registry.OriginAPI {
		t.Errorf("records %+v, %v", recs, err)
	}
	if _, err := n1.Put(ctx, []byte("name: a\ntype: webhook\nurl: http://127.0.0.1:9/again\n"), registry.OriginAPI, false); !errors.Is(err, registry.ErrExists) {
		t.Errorf("defining an existing sink: %v, want ErrExists", err)
	}
	if _, err := n1.Delete(ctx, "nope"); !errors.Is(err, registry.ErrNoSink) {
		t.Errorf("deleting an unknown sink: %v, want ErrNoSink", err)
	}
}

func TestSettingsOverridesApplyAndReset(t *testing.T) {
	ctx := context.Background()
	_, js := testutil.StartOutbox(t, outbox.Limits{})
	r, err := registry.Ensure(ctx, js, 1, "n1", file(t, "n1").BaseSettings(), config.Env{Lookup: func(string) (string, bool) { return "", false }, Kinds: builtin.Kinds()})
	if err != nil {
		t.Fatal(err)
	}
	for name, value := range map[string]string{"log-level": "debug", "retry-max-attempts": "3", "retry-initial": "250ms"} {
		if err := r.Set(ctx, name, value); err != nil {
			t.Fatalf("set %s: %v", name, err)
		}
	}
	if err := r.Set(ctx, "retry-initial", "-1s"); err == nil {
		t.Error("negative retry-initial accepted")
	}
	s, problems, err := r.Settings(ctx)
	if err != nil || len(problems) != 0 {
		t.Fatalf("settings: %v %v", err, problems)
	}
	if s.LogLevel != "debug" || s.Sink.Retry.MaxAttempts != 3 || s.Sink.Retry.Initial.String() != "250ms" {
		t.Errorf("settings in force: %+v", s)
	}
	// A sink without its own retry takes the defaults; one with its own keeps it.
	sinks, _, _, err := r.Sinks(ctx)
	if err != nil || len(sinks) != 0 {
		t.Fatalf("sinks: %v %v", sinks, err)
	}
	if _, err := r.Put(ctx, []byte("name: own\ntype: webhook\nurl: http://127.0.0.1:9/\nretry: {max_attempts: 7}\n"), registry.OriginAPI, false); err != nil {
		t.Fatal(err)
	}
	sinks, _, _, _ = r.Sinks(ctx)
	if got := sinks[0].Retry; got.MaxAttempts != 7 || got.Initial.String() != "250ms" {
		t.Errorf("sink retry %+v: want its own max_attempts 7 and the default initial 250ms", got)
	}
	if _, err := r.Put(ctx, []byte("name: capped\ntype: webhook\nurl: http://127.0.0.1:9/\nretry: {max_interval: 1s}\n"), registry.OriginAPI, false); err != nil {
		t.Fatal(err)
	}
	if err := r.Set(ctx, "retry-initial", "10s"); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("a default that breaks sink capped: %v, want ErrInvalid", err)
	}
	if err := r.Reset(ctx, "all"); err != nil {
		t.Fatal(err)
	}
	if s, _, _ := r.Settings(ctx); s.LogLevel != "info" || s.Sink.Retry.MaxAttempts != 25 {
		t.Errorf("after reset all: %+v", s)
	}
	if err := r.Reset(ctx, "colour"); err == nil {
		t.Error("reset of an unknown setting accepted")
	}
}
