// Package httpserve runs the worker's HTTP listeners (admin, ingest) with
// what each of them needs and net/http leaves off by default: timeouts on
// reading, writing and idling, so a client that sends nothing cannot hold a
// connection, and TLS from a certificate and key file.
package httpserve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// Options configure one listener. Zero timeouts take the defaults below.
type Options struct {
	// CertFile and KeyFile serve TLS (PEM); both empty serve plain HTTP.
	CertFile, KeyFile string
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout time.Duration
	// WriteTimeout bounds handling a request and writing its answer.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection no request came on.
	IdleTimeout time.Duration
	// MaxConns caps the connections served at once (default 256); more
	// wait to be accepted, so a flood of idle clients cannot use up the
	// process's file descriptors, which the embedded outbox needs too.
	MaxConns int
	// Log receives the server's own errors (TLS handshakes, panics).
	Log *slog.Logger
}

// Defaults.
const (
	readHeaderTimeout   = 10 * time.Second
	DefaultReadTimeout  = 30 * time.Second
	DefaultWriteTimeout = 60 * time.Second
	DefaultIdleTimeout  = 2 * time.Minute
	DefaultMaxConns     = 256
)

// Server is one listening HTTP server.
type Server struct {
	srv *http.Server
	ln  net.Listener
	url string
}

// Listen binds addr and prepares to serve h on it; Serve starts it. Bind
// errors come back at once, so a worker with a taken port does not start.
func Listen(addr string, h http.Handler, o Options) (*Server, error) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       orDefault(o.ReadTimeout, DefaultReadTimeout),
		WriteTimeout:      orDefault(o.WriteTimeout, DefaultWriteTimeout),
		IdleTimeout:       orDefault(o.IdleTimeout, DefaultIdleTimeout),
		MaxHeaderBytes:    64 << 10,
	}
	if o.Log != nil {
		srv.ErrorLog = slog.NewLogLogger(o.Log.Handler(), slog.LevelWarn)
	}
	scheme := "http"
	if o.CertFile != "" || o.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load TLS certificate %s: %w", o.CertFile, err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		scheme = "https"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	maxConns := o.MaxConns
	if maxConns <= 0 {
		maxConns = DefaultMaxConns
	}
	ln = netutil.LimitListener(ln, maxConns)
	if srv.TLSConfig != nil {
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	return &Server{srv: srv, ln: ln, url: scheme + "://" + ln.Addr().String()}, nil
}

// URL is the server's base URL, with the port actually bound.
func (s *Server) URL() string { return s.url }

// Serve serves until Shutdown; it returns at once.
func (s *Server) Serve() {
	go func() {
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) && s.srv.ErrorLog != nil {
			s.srv.ErrorLog.Printf("serve %s: %v", s.url, err)
		}
	}()
}

// Shutdown stops accepting, lets requests in progress finish until ctx
// ends, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) {
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
