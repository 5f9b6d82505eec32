package testutil

import (
	"os"
	"testing"
)

// Require stops a test that cannot run here: err says what is missing and
// why (a broker, a database, a browser, root). In CI, where everything
// must run, the test fails; elsewhere it is skipped, with the same words.
func Require(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%v, and CI requires it", err)
	}
	t.Skipf("%v (scripts/services.sh installs or starts what it can)", err)
}
