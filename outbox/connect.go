package outbox

import (
	"context"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// userinfo matches the credentials of a nats:// URL, kept out of errors.
var userinfo = regexp.MustCompile(`//[^/@]*@`)

// redactURL removes the credentials from a URL for messages.
func redactURL(url string) string { return userinfo.ReplaceAllString(url, "//") }

// DefaultURL is where a worker's embedded outbox listens unless configured
// otherwise. It is not 4222, which a system NATS server may hold.
const DefaultURL = "nats://127.0.0.1:4244"

// Connect opens a connection to the outbox. The first connection attempt is
// bounded by timeout and fails with ErrUnreachable; once connected, the
// client reconnects on its own for as long as it lives.
//
// extra adds options, such as Credentials.Options.
func Connect(ctx context.Context, url, name string, timeout time.Duration, extra ...nats.Option) (*nats.Conn, error) {
	nc, err := nats.Connect(url, append(connectOptions(ctx, name, timeout), extra...)...)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, redactURL(url), err)
	}
	return nc, nil
}

func connectOptions(ctx context.Context, name string, timeout time.Duration) []nats.Option {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	return []nats.Option{
		nats.Name(name),
		nats.Timeout(timeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
	}
}

// connState remembers why a connection is not up, for the error of an event
// spooled meanwhile.
type connState struct {
	mu  sync.Mutex
	err error
}

func (s *connState) set(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

func (s *connState) get() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// connectRetrying is Connect for a Publisher with a spool, which has a use
// for a connection that is not up yet: when nothing answers within timeout,
// it returns the connection anyway, still dialling in the background, so
// events are spooled now and go straight to the outbox once it answers.
func connectRetrying(ctx context.Context, url, name string, timeout time.Duration, state *connState, extra ...nats.Option) (*nats.Conn, error) {
	where := redactURL(url)
	first := make(chan struct{}, 1)
	opts := append(append(connectOptions(ctx, name, timeout), extra...),
		nats.RetryOnFailedConnect(true),
		// Called for the failed first attempt too, so the reason is known
		// before the first event is spooled.
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			state.set(fmt.Errorf("%w at %s: %v", ErrUnreachable, where, err))
			select {
			case first <- struct{}{}:
			default:
			}
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				err = nats.ErrDisconnected
			}
			state.set(fmt.Errorf("%w: connection to %s lost: %v", ErrUnreachable, where, err))
		}),
	)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, where, err)
	}
	if !nc.IsConnected() && state.get() == nil {
		// The handler runs on the client's callback goroutine right after
		// the failed attempt; this wait is short and bounded.
		t := time.NewTimer(time.Second)
		select {
		case <-first:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	return nc, nil
}
