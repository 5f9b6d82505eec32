// Package nkeyseed reads NATS nkey user seed files: the configuration
// checks one before the worker starts, the outbox signs with it.
package nkeyseed

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nkeys"
)

// Public reads an nkey user seed file and returns its public key.
func Public(seedFile string) (string, error) {
	b, err := os.ReadFile(seedFile)
	if err != nil {
		return "", err
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(b))
	if err != nil {
		return "", fmt.Errorf("%s is not an nkey seed: %w", seedFile, err)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return "", fmt.Errorf("%s: %w", seedFile, err)
	}
	if !strings.HasPrefix(pub, "U") {
		return "", fmt.Errorf("%s is not a user nkey seed (SU...)", seedFile)
	}
	return pub, nil
}
