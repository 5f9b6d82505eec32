package outbox

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Credentials identify a client to an outbox that requires them, and say
// how to trust its TLS certificate. The zero value connects without.
type Credentials struct {
	User, Password string
	// NkeySeedFile holds an nkey user seed (nk -gen user), for a server
	// that knows the user by its public nkey.
	NkeySeedFile string
	// CredsFile is a NATS .creds file (a user JWT and its seed), for an
	// external NATS server with decentralised auth.
	CredsFile string
	// CAFile verifies the server's certificate (default: the system's).
	CAFile string
	// CertFile and KeyFile are this client's certificate, for a server
	// that verifies its clients.
	CertFile, KeyFile string
}

// Options are the nats.go options that present the credentials.
func (c Credentials) Options() ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case c.CredsFile != "":
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	case c.NkeySeedFile != "":
		o, err := nats.NkeyOptionFromSeed(c.NkeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nkey seed %s: %w", c.NkeySeedFile, err)
		}
		opts = append(opts, o)
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.CAFile != "" {
		opts = append(opts, nats.RootCAs(c.CAFile))
	}
	if c.CertFile != "" {
		opts = append(opts, nats.ClientCert(c.CertFile, c.KeyFile))
	}
	return opts, nil
}

// LoadCredentials reads a producer's credentials file: a NATS .creds file,
// an nkey seed (a line starting with SU), or a line user:password.
func LoadCredentials(path string) (Credentials, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials: %w", err)
	}
	text := strings.TrimSpace(string(b))
	switch {
	case bytes.Contains(b, []byte("BEGIN NATS USER JWT")):
		return Credentials{CredsFile: path}, nil
	case strings.HasPrefix(text, "SU"):
		return Credentials{NkeySeedFile: path}, nil
	}
	user, password, ok := strings.Cut(text, ":")
	if !ok || user == "" || strings.ContainsAny(user, "\n") {
		return Credentials{}, fmt.Errorf("credentials file %s: want a NATS .creds file, an nkey seed (SU...) or one line user:password", path)
	}
	return Credentials{User: user, Password: password}, nil
}

// AuthUser is a client the embedded server admits: by user and password,
// or by public nkey.
type AuthUser struct {
	User, Password string
	Nkey           string
	// Producer limits the client to what emit needs: publishing events
	// and reading the acknowledgements. It cannot read events, consumers,
	// buckets or the JetStream API.
	Producer bool
}

// TLSFiles are a listener's certificate, its key and the CA its peers'
// certificates must chain to (clients are verified only when set).
type TLSFiles struct {
	CertFile, KeyFile, CAFile string
}

// On reports whether TLS is configured.
func (t TLSFiles) On() bool { return t.CertFile != "" }

func (t TLSFiles) config(verifyPeers bool) (*tls.Config, error) {
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: t.CertFile, KeyFile: t.KeyFile, CaFile: t.CAFile, Verify: verifyPeers,
	})
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s: %w", t.CertFile, err)
	}
	if verifyPeers {
		// Routes act as client and server: the CA verifies the peer in
		// both directions, as nats-server's own configuration parser
		// sets it up.
		tc.ClientAuth = tls.RequireAndVerifyClientCert
		tc.RootCAs = tc.ClientCAs
	}
	return tc, nil
}

// Inbox prefixes: replies to producers go under producerInbox, which is
// all a producer may subscribe to; the worker's own replies (fetched
// events, JetStream API answers) go under WorkerInbox, out of a producer's
// reach.
const (
	producerInbox = "_INBOX.>"
	// WorkerInbox is the inbox prefix of the worker's and operators'
	// connections.
	WorkerInbox = "_COURIER_INBOX"
)

// producerPermissions: publish events, receive acknowledgements.
func producerPermissions() *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{subjectEvents + ">"}},
		Subscribe: &server.SubjectPermission{Allow: []string{producerInbox}},
	}
}

// applyAuth adds the users to the server's options.
func applyAuth(opts *server.Options, users []AuthUser) error {
	for _, u := range users {
		var perms *server.Permissions
		if u.Producer {
			perms = producerPermissions()
		}
		switch {
		case u.Nkey != "":
			opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: u.Nkey, Permissions: perms})
		case u.User != "":
			opts.Users = append(opts.Users, &server.User{Username: u.User, Password: u.Password, Permissions: perms})
		default:
			return errors.New("an outbox user needs a user name or an nkey")
		}
	}
	return nil
}
