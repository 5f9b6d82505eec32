package configdoc_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/courierhq/courier/internal/configdoc"
	"github.com/courierhq/courier/sinks/builtin"
)

// The reference in docs/ is what the declarations say today: a setting
// added, renamed or re-documented without regenerating it fails here.
func TestReferenceIsCurrent(t *testing.T) {
	root := filepath.Join("..", "..")
	want, err := configdoc.Generate(root, builtin.Kinds())
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("docs/configuration.md is stale: run go generate ./config and commit it")
	}
	keys := configdoc.Keys(want)
	for _, k := range []string{"outbox.sync", "circuit_breaker.failures", "retry.jitter", "url", "routing_key", "topic", "handler", "retry-max-age"} {
		if !slices.Contains(keys, k) {
			t.Errorf("the reference lacks %s", k)
		}
	}
}
