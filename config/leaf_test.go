package config_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The configuration is a leaf: it describes what the other packages do
// and imports none of them but the pure ones, so that reading a setting
// never drags in the outbox, the delivery loop or a sink's client.
func TestConfigImportsOnlyPurePackages(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/courierhq/courier/config").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := []string{"config", "event", "retry", "sinks", "delivery/breaker", "internal/netguard", "internal/nkeyseed"}
	for _, pkg := range strings.Fields(string(out)) {
		own, ok := strings.CutPrefix(pkg, "github.com/courierhq/courier/")
		if ok && !slices.Contains(allowed, own) {
			t.Errorf("config depends on %s; it may import only %v", own, allowed)
		}
	}
}
