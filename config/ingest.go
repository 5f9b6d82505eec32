package config

import (
	"fmt"
	"net"
	"time"
)

// Ingest configures the HTTP endpoint producers in any language post
// events to. It has its own listener because producers often live in other
// networks than the operators who reach the admin endpoint.
type Ingest struct {
	// Listen is host:port, or "off" (the default).
	Listen string `yaml:"listen"`
	// Tokens admit producers; each may bind its events to an account.
	// Without tokens the endpoint is open, which is allowed only on a
	// loopback address.
	Tokens []IngestToken `yaml:"tokens"`
	TLS    ServerTLS     `yaml:"tls"`
	// MaxBodyBytes caps one request's body (default 16MiB); a single
	// event is capped by outbox.max_event_size.
	MaxBodyBytes ByteSize `yaml:"max_body_bytes"`
	// Timeout bounds one request: reading it, storing its events and
	// answering (default 30s).
	Timeout time.Duration `yaml:"timeout"`
}

// IngestToken is one producer's bearer token: the token itself (write
// ${NAME}) or token_file, and optionally the account its events belong to.
type IngestToken struct {
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	Account   string `yaml:"account"`
}

// ServerTLS serves a listener over TLS with a certificate and its key
// (PEM files). Both or neither.
type ServerTLS struct {
	// CertFile and KeyFile are the server's PEM certificate (chain) and key.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// On reports whether TLS is configured.
func (t ServerTLS) On() bool { return t.CertFile != "" || t.KeyFile != "" }

func (t ServerTLS) validate(setting string) error {
	if t.On() && (t.CertFile == "" || t.KeyFile == "") {
		return fmt.Errorf("%s: give both cert_file and key_file", setting)
	}
	return nil
}

// Defaults of the ingest endpoint.
const (
	DefaultIngestMaxBody = 16 << 20
	DefaultIngestTimeout = 30 * time.Second
)

// On reports whether the ingest endpoint is served.
func (i Ingest) On() bool { return i.Listen != "" && i.Listen != "off" }

func (i *Ingest) setDefaults() {
	if i.Listen == "" {
		i.Listen = "off"
	}
	if i.MaxBodyBytes == 0 {
		i.MaxBodyBytes = DefaultIngestMaxBody
	}
	if i.Timeout == 0 {
		i.Timeout = DefaultIngestTimeout
	}
}

// TokenAccounts returns the ingest tokens, read from their files, mapped to
// their account ("" for a token bound to none).
func (i Ingest) TokenAccounts() (map[string]string, error) {
	out := make(map[string]string, len(i.Tokens))
	for n, t := range i.Tokens {
		setting := fmt.Sprintf("ingest.tokens[%d]", n)
		if t.Token != "" && t.TokenFile != "" {
			return nil, fmt.Errorf("%s: token and token_file exclude each other", setting)
		}
		token, err := readToken(setting, t.Token, t.TokenFile)
		if err != nil {
			return nil, err
		}
		if _, dup := out[token]; dup {
			return nil, fmt.Errorf("%s: the same token is given twice", setting)
		}
		out[token] = t.Account
	}
	return out, nil
}

func (i Ingest) validate(maxEventSize ByteSize) error {
	if !i.On() {
		return nil
	}
	host, _, err := net.SplitHostPort(i.Listen)
	if err != nil {
		return fmt.Errorf("ingest.listen %q: want host:port or off: %w", i.Listen, err)
	}
	if _, err := i.TokenAccounts(); err != nil {
		return err
	}
	if len(i.Tokens) == 0 && !isLoopback(host) {
		return fmt.Errorf("ingest.listen %s is not a loopback address, and ingest.tokens is empty: anyone who reaches it could emit; add a token", i.Listen)
	}
	if err := i.TLS.validate("ingest.tls"); err != nil {
		return err
	}
	if i.MaxBodyBytes < maxEventSize {
		return fmt.Errorf("ingest.max_body_bytes (%d) is below outbox.max_event_size (%d): the largest event could not be posted", i.MaxBodyBytes, maxEventSize)
	}
	return nil
}

// isLoopback reports whether host names only this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
