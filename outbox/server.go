package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ServerConfig configures the embedded NATS server.
type ServerConfig struct {
	// Name identifies the server (the node id).
	Name string
	// Listen is host:port for clients (emit in other processes); port 0
	// picks a free one.
	Listen string
	// DataDir holds the JetStream files.
	DataDir string
	// SyncAlways fsyncs before every acknowledgement. When false,
	// SyncInterval is how often data is flushed to disk: a power loss may
	// lose what was acknowledged in the last interval.
	SyncAlways   bool
	SyncInterval time.Duration
	// MaxPayload caps one message (event plus headers).
	MaxPayload int32
	// Cluster, when its Name is set, joins the server to other nodes'.
	Cluster ClusterConfig
	// Users, when any, are the only clients admitted; Self is the one
	// the worker connects as (in process too).
	Users []AuthUser
	Self  Credentials
	// TLS serves the client port over TLS.
	TLS TLSFiles
}

// ClusterConfig joins the embedded server to a NATS cluster of worker
// nodes, so streams and buckets can be replicated across them.
type ClusterConfig struct {
	Name   string
	Listen string   // host:port for the other nodes' routes
	Routes []string // nats-route:// URLs of the other nodes
	// User and Password, when set, are required of every route, and
	// presented to the other nodes.
	User, Password string
	// TLS, when set, is mutual: each node presents its certificate and
	// verifies the other's against CAFile.
	TLS TLSFiles
}

// Server is a running embedded NATS server with JetStream.
type Server struct {
	ns        *server.Server
	listen    string
	listening bool // from the start: clustered
	self      Credentials
	// diskFull is set when the server reports a write that found the disk
	// full (see DiskFull).
	diskFull *atomic.Bool
}

// StartServer starts the embedded server without its client listener: only
// in-process connections (InProcessConn) reach it until Listen is called.
// That lets the worker create the outbox stream and every sink's consumer
// before any producer can emit; an interest-retention stream discards events
// stored while no consumer exists.
func StartServer(ctx context.Context, cfg ServerConfig, log *slog.Logger) (*Server, error) {
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("outbox listen address %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("outbox listen port %q: %w", portStr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName:   cfg.Name,
		Host:         host,
		Port:         port,
		JetStream:    true,
		StoreDir:     filepath.Clean(cfg.DataDir),
		SyncAlways:   cfg.SyncAlways,
		SyncInterval: cfg.SyncInterval,
		MaxPayload:   cfg.MaxPayload,
		NoSigs:       true, // the worker handles signals and shuts down in order
		DontListen:   true, // until Listen
		// JetStream's default store limit is 75% of the space free when the
		// server starts: a worker restarted while its outbox holds a large
		// backlog could then refuse its own streams, just when they hold
		// the most undelivered events. The filesystem's size does not
		// shrink as the outbox fills; a disk that really fills is handled
		// where the write fails.
		JetStreamMaxStore: filesystemSize(cfg.DataDir),
	}
	if cfg.Cluster.Name != "" {
		if err := clusterOptions(opts, cfg.Cluster); err != nil {
			return nil, err
		}
	}
	if err := applyAuth(opts, cfg.Users); err != nil {
		return nil, err
	}
	if cfg.TLS.On() {
		tc, err := cfg.TLS.config(false)
		if err != nil {
			return nil, fmt.Errorf("outbox.tls: %w", err)
		}
		opts.TLSConfig, opts.TLS, opts.TLSTimeout = tc, true, 5
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("configure embedded outbox: %w", err)
	}
	diskFull := &atomic.Bool{}
	ns.SetLoggerV2(&natsLogger{log: log.With("component", "nats"), diskFull: diskFull}, false, false, false)
	go ns.Start()
	wait := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		wait = time.Until(dl)
	}
	if !ns.ReadyForConnections(wait) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded outbox did not start within %s", wait)
	}
	return &Server{ns: ns, listen: cfg.Listen, listening: !opts.DontListen, self: cfg.Self, diskFull: diskFull}, nil
}

// clusterOptions adds the cluster's routes. A clustered server listens for
// clients at once: nats-server opens its route listener only after the
// client listener, and without routes there is no quorum to create streams
// with. Producers that connect before the streams exist get ErrNoStream,
// not a lost event.
func clusterOptions(opts *server.Options, c ClusterConfig) error {
	host, portStr, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("cluster listen address %q: %w", c.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("cluster listen port %q: %w", portStr, err)
	}
	opts.Cluster.Name = c.Name
	opts.Cluster.Host = host
	opts.Cluster.Port = port
	opts.Routes = server.RoutesFromStr(strings.Join(c.Routes, ","))
	if c.User != "" {
		opts.Cluster.Username, opts.Cluster.Password = c.User, c.Password
		for _, r := range opts.Routes {
			r.User = url.UserPassword(c.User, c.Password)
		}
	}
	if c.TLS.On() {
		tc, err := c.TLS.config(true)
		if err != nil {
			return fmt.Errorf("cluster.tls: %w", err)
		}
		opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = tc, 5
	}
	opts.DontListen = false
	return nil
}

// Clustered reports whether the server is part of a cluster.
func (s *Server) Clustered() bool { return s.ns.JetStreamIsClustered() }

// InProcessConn connects to the server without the network.
func (s *Server) InProcessConn() (*nats.Conn, error) {
	creds, err := s.self.Options()
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect("", append(creds, nats.InProcessServer(s.ns), nats.Name("courier-setup"), nats.CustomInboxPrefix(WorkerInbox))...)
	if err != nil {
		return nil, fmt.Errorf("connect to embedded outbox in process: %w", err)
	}
	return nc, nil
}

// Listen opens the client listener, so producers in other processes can
// reach the outbox.
func (s *Server) Listen(ctx context.Context) error {
	if s.listening {
		return nil
	}
	ready := make(chan struct{})
	go s.ns.AcceptLoop(ready)
	select {
	case <-ready:
	case <-ctx.Done():
		return fmt.Errorf("open outbox listener: %w", ctx.Err())
	}
	if s.ns.Addr() == nil {
		return fmt.Errorf("open outbox listener on %s: address in use or not allowed", s.listen)
	}
	return nil
}

// ClientURL is the nats:// URL clients use.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Shutdown stops the server and waits until its files are closed.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// DiskFull reports whether the server has failed a write because the disk
// was full since it started. JetStream then keeps that stream's store
// failed, refusing every write, until the server restarts; the server only
// says so in its log.
func (s *Server) DiskFull() bool { return s.diskFull.Load() }

// natsLogger routes the server's log lines into slog, and notes the ones
// that say a write found the disk full.
type natsLogger struct {
	log      *slog.Logger
	diskFull *atomic.Bool
}

func (l *natsLogger) note(msg string) string {
	if strings.Contains(msg, syscall.ENOSPC.Error()) {
		l.diskFull.Store(true)
	}
	return msg
}

func (l *natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Warnf(format string, v ...any)   { l.log.Warn(l.note(fmt.Sprintf(format, v...))) }
func (l *natsLogger) Fatalf(format string, v ...any)  { l.log.Error(l.note(fmt.Sprintf(format, v...))) }
func (l *natsLogger) Errorf(format string, v ...any)  { l.log.Error(l.note(fmt.Sprintf(format, v...))) }
func (l *natsLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }

// filesystemSize is the size of the filesystem that holds dir (made if
// missing), or 0 (JetStream's default) when it cannot be read.
func filesystemSize(dir string) int64 {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return 0
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return 0
	}
	return int64(fs.Blocks) * int64(fs.Bsize)
}
