package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/courierhq/courier/internal/nkeyseed"
)

// OutboxAuth makes the outbox's client port admit only the worker and the
// producers listed. Without it, any client that reaches the port may read
// every event and change sinks and settings: allowed on loopback only.
type OutboxAuth struct {
	// User and Password (or NkeySeedFile) are the identity of the worker
	// itself and of the worker commands run with this file; it may do
	// everything.
	User         string `yaml:"user"`
	Password     string `yaml:"password"`
	NkeySeedFile string `yaml:"nkey_seed_file"`
	// Producers may only publish events and read their acknowledgements.
	Producers []Producer `yaml:"producers"`
}

// Producer is one producer identity: user and password, or a public nkey
// (its seed stays with the producer).
type Producer struct {
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	Nkey     string `yaml:"nkey"`
}

// On reports whether auth is configured.
func (a OutboxAuth) On() bool { return a.User != "" || a.NkeySeedFile != "" }

// ListenerTLS is a NATS listener's certificate, key and CA (the CA
// verifies the peers where they must present a certificate: routes).
type ListenerTLS struct {
	// CertFile and KeyFile are the listener's PEM certificate and key.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// CAFile holds the PEM certificates that sign the peers' certificates.
	CAFile string `yaml:"ca_file"`
}

// RouteAuth is the user and password every route must present.
type RouteAuth struct {
	// User and Password are what every node presents and requires (write
	// the password as ${NAME}).
	User     string `yaml:"user"`
	Password string `yaml:"password"`
}

func (f *File) validateNATSAuth() error {
	a, o, c := f.Outbox.Auth, f.Outbox, f.Cluster
	switch {
	case a.User != "" && a.NkeySeedFile != "":
		return errors.New("outbox.auth: give user and password or nkey_seed_file, not both")
	case a.User != "" && a.Password == "":
		return errors.New("outbox.auth.password is required with outbox.auth.user")
	case !a.On() && len(a.Producers) > 0:
		return errors.New("outbox.auth.producers needs the worker's own user (outbox.auth.user and password, or nkey_seed_file)")
	case o.URL != "" && len(a.Producers) > 0:
		return errors.New("outbox.auth.producers applies to the embedded outbox; with outbox.url the NATS server's own configuration admits producers")
	}
	if a.NkeySeedFile != "" {
		if _, err := nkeyseed.Public(a.NkeySeedFile); err != nil {
			return fmt.Errorf("outbox.auth.nkey_seed_file: %w", err)
		}
	}
	for i, p := range a.Producers {
		switch {
		case (p.User == "") == (p.Nkey == ""):
			return fmt.Errorf("outbox.auth.producers[%d]: give user and password, or nkey", i)
		case p.User != "" && p.Password == "":
			return fmt.Errorf("outbox.auth.producers[%d]: password is required with user", i)
		case p.User != "" && p.User == a.User:
			return fmt.Errorf("outbox.auth.producers[%d]: user %s is the worker's own", i, p.User)
		case p.Nkey != "" && !strings.HasPrefix(p.Nkey, "U"):
			return fmt.Errorf("outbox.auth.producers[%d]: nkey must be a user's public key (U...), not a seed", i)
		}
	}
	for name, t := range map[string]ListenerTLS{"outbox.tls": o.TLS, "cluster.tls": c.TLS} {
		if (t.CertFile == "") != (t.KeyFile == "") {
			return fmt.Errorf("%s: give both cert_file and key_file", name)
		}
		for _, file := range []string{t.CertFile, t.KeyFile, t.CAFile} {
			if file == "" {
				continue
			}
			if _, err := os.Stat(file); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	if c.TLS.CertFile != "" && c.TLS.CAFile == "" {
		return errors.New("cluster.tls.ca_file is required: routes verify each other's certificates (mutual TLS)")
	}
	if (c.Auth.User == "") != (c.Auth.Password == "") {
		return errors.New("cluster.auth: give both user and password")
	}
	if o.Insecure || o.URL != "" {
		return nil
	}
	if host, _, err := net.SplitHostPort(o.Listen); err == nil && !isLoopback(host) && !a.On() {
		return fmt.Errorf("outbox.listen %s is reachable from other machines and outbox.auth is not set: anyone reaching it could read every event and change sinks; set outbox.auth (and outbox.tls), or outbox.insecure: true if that is what you want", o.Listen)
	}
	if c.Enabled() {
		if host, _, err := net.SplitHostPort(c.Listen); err == nil && !isLoopback(host) && c.Auth.User == "" && c.TLS.CertFile == "" {
			return fmt.Errorf("cluster.listen %s is reachable from other machines and neither cluster.auth nor cluster.tls is set: any server reaching it could join the cluster and read its streams; set cluster.tls (mutual) and cluster.auth, or outbox.insecure: true", c.Listen)
		}
	}
	return nil
}
