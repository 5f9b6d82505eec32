package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// The example runs as documented: each event is retried once, then
// applied, gv1's two events in emit order.
func TestExampleRuns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out, t.TempDir()); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, id := range []string{"ev-1", "ev-2", "ev-3"} {
		if !strings.Contains(got, id+": cache busy, retried") || !strings.Contains(got, id+": cache entry") {
			t.Errorf("%s was not retried then applied:\n%s", id, got)
		}
	}
	if strings.Index(got, "ev-1: cache entry") > strings.Index(got, "ev-3: cache entry") {
		t.Errorf("gv1's events applied out of order:\n%s", got)
	}
}
