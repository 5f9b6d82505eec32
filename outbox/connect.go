package outbox

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/nats-io/nats.go"
)

// userinfo matches the credentials of a nats:// URL, kept out of errors.
var userinfo = regexp.MustCompile(`//[^/@]*@`)

// DefaultURL is where a worker's embedded outbox listens unless configured
// otherwise. It is not 4222, which a system NATS server may hold.
const DefaultURL = "nats://127.0.0.1:4244"

// Connect opens a connection to the outbox. The first connection attempt is
// bounded by timeout and fails with ErrUnreachable; once connected, the
// client reconnects on its own for as long as it lives.
func Connect(ctx context.Context, url, name string, timeout time.Duration) (*nats.Conn, error) {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	nc, err := nats.Connect(url,
		nats.Name(name),
		nats.Timeout(timeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
	)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, userinfo.ReplaceAllString(url, "//"), err)
	}
	return nc, nil
}
