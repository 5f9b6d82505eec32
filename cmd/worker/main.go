// Command worker runs a Courier node and its operator subcommands.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/courierhq/courier/config"
	"github.com/courierhq/courier/internal/dirlock"
	"github.com/courierhq/courier/internal/httpserve"
	"github.com/courierhq/courier/internal/netguard"
	"github.com/courierhq/courier/observability"
	"github.com/courierhq/courier/outbox"
	"github.com/courierhq/courier/registry"
	"github.com/courierhq/courier/sinks/builtin"
	"github.com/courierhq/courier/status"
	"github.com/courierhq/courier/worker"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage: worker <command> [flags]

commands:
  run                       run the node: embedded outbox and delivery to every sink
  check                     validate the configuration and exit
  status                    nodes UP/DOWN and, per sink, pending, in flight, dead letters, last error
  sinks list                every defined sink, where it delivers and who defined it
  sinks add NAME URL        define a webhook sink on every node (--bearer-token, --secret, --events)
  sinks add -f FILE         define any sink from YAML, as one entry under sinks: (--replace)
  sinks del NAME            delete a sink on every node, with its claim on undelivered events
  sinks test NAME           send a test event to one sink now and print the outcome
  sinks enable NAME         resume a sink disabled by a 410 Gone (or by sinks disable)
  sinks disable NAME        stop delivering to a sink on every node; its events wait
  config get [NAME]         settings every node applies: log level, sink defaults, event purge
  config set NAME VALUE     change a setting on every node, live; waits for every node up
                            and prints a row per node (--wait 20s, --json)
  config reset NAME|all     back to the file's value or the default (--wait, --json)
  events list               the event log, newest first (--type GLOB --level --state --start-id
                            --account --domain --resource-id --keyword --since 2h | --start-date D
                            --until | --end-date D --archived --limit N --page K --json)
  events show ID            one event, its delivery state per sink and every attempt
  events attempts ID        every delivery attempt of one event, on every sink and node
  events archive|delete     by --id ID..., or --type GLOB and/or --end-date D [--start-date D]
  dlq list --sink S         list a sink's dead letters
  dlq replay --sink S (--id ID ... | --all)
                            deliver dead letters again, to that sink only
  completion bash|zsh|fish  print a shell completion script
  version                   print the version

Every command takes --config FILE (default $COURIER_CONFIG, then courier.yaml)
and --help, which lists its flags.
`

// usageError marks bad invocations, which exit with status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		if errors.Is(err, context.DeadlineExceeded) {
			fmt.Fprintln(os.Stderr, "worker: the outbox did not answer in time; in a cluster that just lost a node, new leaders may still be elected: run the command again in a few seconds")
		}
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func loadConfig(path string) (*config.File, error) {
	cfg, err := config.Load(path, builtin.Kinds())
	if err != nil {
		return nil, usageError{err.Error()}
	}
	return cfg, nil
}

func runCmd(ctx context.Context, cfgPath string, stderr io.Writer) error {
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return err
	}
	// A LevelVar, so worker config set log-level applies live.
	level := new(slog.LevelVar)
	if err := level.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		return usageError{fmt.Sprintf("log.level: %v", err)}
	}
	log, err := observability.NewLogger(stderr, level, cfg.Log.Format)
	if err != nil {
		return usageError{err.Error()}
	}
	log = slog.New(observability.WithTraceIDs(log.Handler()))
	tel, err := observability.Setup(ctx, "courier-worker", version)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("flush telemetry", "err", err)
		}
	}()
	// A clustered node waits for its quorum as long as it takes (nodes of a
	// cluster start in any order); a single node must be up in 30s.
	startCtx, cancel := context.WithCancel(ctx)
	if !cfg.Cluster.Enabled() {
		startCtx, cancel = context.WithTimeout(ctx, 30*time.Second)
	}
	w, err := worker.Start(startCtx, cfg, version, log, worker.WithTelemetry(tel), worker.WithLogLevel(level))
	cancel()
	var held *dirlock.HeldError
	if errors.As(err, &held) {
		// Not a failure to retry: the operator started a second worker.
		return usageError{held.Error()}
	}
	if err != nil {
		return err
	}
	var admin, ingest *httpserve.Server
	stopAll := func(ctx context.Context) {
		// Ingest first: a request in progress gets its answer while the
		// outbox is still there to acknowledge its events.
		if ingest != nil {
			ingest.Shutdown(ctx)
		}
		w.Shutdown(ctx)
		if admin != nil {
			admin.Shutdown(ctx)
		}
	}
	// Ingest listens before the admin endpoint, so that /readyz answering
	// means every listener is up.
	if h := w.IngestHandler(); h != nil {
		in := cfg.Ingest
		ingest, err = httpserve.Listen(in.Listen, h, httpserve.Options{
			CertFile: in.TLS.CertFile, KeyFile: in.TLS.KeyFile, Log: log,
			ReadTimeout: in.Timeout, WriteTimeout: in.Timeout + 5*time.Second, MaxConns: 1024,
		})
		if err != nil {
			stopAll(context.Background())
			return fmt.Errorf("ingest endpoint: %w", err)
		}
		ingest.Serve()
		log.Info("ingest endpoint listening", "url", ingest.URL()+"/v1/events", "tokens", len(in.Tokens))
	}
	if cfg.Admin.Listen != "off" {
		admin, err = httpserve.Listen(cfg.Admin.Listen, w.AdminHandler(), httpserve.Options{
			CertFile: cfg.Admin.TLS.CertFile, KeyFile: cfg.Admin.TLS.KeyFile, Log: log,
		})
		if err != nil {
			stopAll(context.Background())
			return fmt.Errorf("admin endpoint: %w", err)
		}
		admin.Serve()
		log.Info("admin endpoint listening", "url", admin.URL(), "paths", "/metrics /healthz /readyz")
	}
	var failed error
	select {
	case <-ctx.Done():
	case failed = <-w.Failed():
		log.Error("worker cannot go on; stopping", "err", failed)
	}
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	stopCtx, cancelStop := context.WithTimeout(context.Background(), cfg.ShutdownTimeout+5*time.Second)
	defer cancelStop()
	stopAll(stopCtx)
	return failed
}

func sinksTestCmd(ctx context.Context, cfgPath, name string, asJSON bool, stdout, stderr io.Writer) error {
	cfg, sc, policy, err := namedSink(ctx, cfgPath, name)
	if err != nil {
		return err
	}
	rows, err := sinkTestRows(ctx, cfg, *sc, policy, stderr)
	if err != nil {
		return err
	}
	failed := 0
	for _, r := range rows {
		if !r.OK && !r.Down { // a node down is listed, not counted as failed
			failed++
		}
	}
	if asJSON {
		if err := printJSONLines(stdout, rows); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tSINK\tRESULT")
		for _, r := range rows {
			switch {
			case r.OK:
				fmt.Fprintf(tw, "%s\t%s\tOK (%s, event %s)\n", r.Node, r.Sink, r.Took, r.EventID)
			case r.Kind != "":
				fmt.Fprintf(tw, "%s\t%s\tFAILED (%s, %s): %s\n", r.Node, r.Sink, r.Kind, r.Took, r.Error)
			default:
				fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Node, r.Sink, r.Error)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("sink %s did not accept the test event on %d of the nodes asked", sc.Name, failed)
	}
	return nil
}

// sinkTestRows asks every node up to send the sink a test event, and lists
// the nodes down as such. Without a running worker to ask, the test event
// goes from here.
func sinkTestRows(ctx context.Context, cfg *config.File, sc config.Sink, policy netguard.Policy, stderr io.Writer) ([]worker.SinkTestReply, error) {
	local := func() []worker.SinkTestReply {
		ctx, cancel := context.WithTimeout(ctx, sc.AttemptTimeout())
		defer cancel()
		res := worker.SendTestEvent(ctx, sc, cfg.NodeID, version, netguard.NewGuard(policy))
		r := worker.SinkTestReply{Node: cfg.NodeID, Sink: sc.Name, OK: res.Err == nil, EventID: res.EventID, Took: res.Took.String()}
		if res.Err != nil {
			r.Kind, r.Error = res.Kind.String(), res.Err.Error()
		}
		return []worker.SinkTestReply{r}
	}
	nc, err := connectOutbox(ctx, cfg)
	if err != nil {
		return local(), nil
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("open JetStream: %w", err)
	}
	wait := sc.AttemptTimeout() + 2*time.Second
	report, err := status.Read(ctx, js, nil)
	if err != nil {
		// JetStream may be electing a leader while the workers, on plain
		// NATS, still answer: ask whoever is there, waiting the whole time
		// as there is no list of nodes to wait for.
		replies, askErr := worker.AskSinkTest(ctx, nc, sc.Name, nil, wait)
		if askErr != nil || len(replies) == 0 {
			return nil, fmt.Errorf("read which nodes are up: %w; and no node answered the test within %s", err, wait)
		}
		fmt.Fprintf(stderr, "worker sinks test: could not read which nodes are up (%v): the rows are the nodes that answered\n", err)
		return replies, nil
	}
	var up []string
	for _, n := range report.Nodes {
		if n.Up {
			up = append(up, n.Node)
		}
	}
	if len(up) == 0 {
		return local(), nil
	}
	replies, err := worker.AskSinkTest(ctx, nc, sc.Name, up, wait)
	if err != nil {
		return nil, err
	}
	byNode := map[string]worker.SinkTestReply{}
	for _, r := range replies {
		byNode[r.Node] = r
	}
	var rows []worker.SinkTestReply
	for _, n := range report.Nodes {
		r, answered := byNode[n.Node]
		switch {
		case answered:
		case n.Up:
			r = worker.SinkTestReply{Node: n.Node, Sink: sc.Name, Error: fmt.Sprintf("NO ANSWER within %s", wait)}
		default:
			r = worker.SinkTestReply{Node: n.Node, Sink: sc.Name, Error: "DOWN (not asked)", Down: true}
		}
		rows = append(rows, r)
		delete(byNode, n.Node)
	}
	for _, r := range byNode { // a node that answered before its first heartbeat
		rows = append(rows, r)
	}
	return rows, nil
}

// deadLetters loads the configuration and connects to its outbox for the
// dlq commands.
func deadLetters(ctx context.Context, cfgPath string) (*outbox.DeadLetters, func(), error) {
	_, js, closeFn, err := connectConfigured(ctx, cfgPath)
	if err != nil {
		return nil, nil, err
	}
	return outbox.NewDeadLetters(js), closeFn, nil
}

// connectConfigured loads the configuration and reaches its outbox.
func connectConfigured(ctx context.Context, cfgPath string) (*config.File, jetstream.JetStream, func(), error) {
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return nil, nil, nil, err
	}
	js, closeFn, err := connectJS(ctx, cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	return cfg, js, closeFn, nil
}

// connectJS reaches the configured outbox's JetStream for an operator
// command.
func connectJS(ctx context.Context, cfg *config.File) (jetstream.JetStream, func(), error) {
	nc, err := connectOutbox(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("open JetStream: %w", err)
	}
	return js, nc.Close, nil
}

// connectOutbox reaches the configured outbox for an operator command,
// with the worker's credentials.
func connectOutbox(ctx context.Context, cfg *config.File) (*nats.Conn, error) {
	opts, err := worker.ConnectOptions(cfg)
	if err != nil {
		return nil, usageError{err.Error()}
	}
	nc, err := outbox.Connect(ctx, worker.ClientURL(cfg.Outbox), "courier-worker-cli", 5*time.Second, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w (is the worker running?)", err)
	}
	return nc, nil
}

// namedSink returns the configuration, the sink named name and what
// webhooks may reach: from the registry and its settings when the outbox
// is reachable (sinks added at run time included), else from the file.
func namedSink(ctx context.Context, cfgPath, name string) (*config.File, *config.Sink, netguard.Policy, error) {
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return nil, nil, netguard.Policy{}, err
	}
	if js, closeFn, err := connectJS(ctx, cfg); err == nil {
		defer closeFn()
		if reg, err := registry.Open(ctx, js, cfg.NodeID, cfg.BaseSettings(), cfg.Env()); err == nil {
			sinks, settings, problems, err := reg.Sinks(ctx)
			if err == nil {
				for i := range sinks {
					if sinks[i].Name == name {
						return cfg, &sinks[i], settings.Sink.Webhook, nil
					}
				}
				if p := problems[name]; p != nil {
					return nil, nil, netguard.Policy{}, fmt.Errorf("sink %s does not apply on this node: %w", name, p)
				}
			}
		}
	}
	for i := range cfg.Sinks {
		if cfg.Sinks[i].Name == name {
			policy, _ := cfg.WebhookPolicy() // validated by Load
			return cfg, &cfg.Sinks[i], policy, nil
		}
	}
	return nil, nil, netguard.Policy{}, usageError{fmt.Sprintf("no sink named %q (worker sinks list shows the defined ones)", name)}
}

func dlqListCmd(stdout io.Writer) *cobra.Command {
	c, cfgPath := leaf("list", "list a sink's dead letters")
	fs := c.Flags()
	sink := fs.String("sink", "", "sink name")
	limit := fs.Int("limit", 0, "show at most this many (0: all)")
	asJSON := fs.Bool("json", false, "print JSON lines")
	c.RunE = func(c *cobra.Command, args []string) error {
		ctx := c.Context()
		if *sink == "" {
			return usageError{"dlq list: --sink is required"}
		}
		dlq, closeFn, err := deadLetters(ctx, *cfgPath)
		if err != nil {
			return err
		}
		defer closeFn()
		list, err := dlq.List(ctx, *sink, *limit)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSONLines(stdout, list)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tEVENT ID\tTYPE\tATTEMPTS\tSTATUS\tDEAD AT\tREASON")
		for _, dl := range list {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\t%s\n", dl.Seq, dl.Event.ID, dl.Event.Type, dl.Attempts, dl.LastStatus, dl.DeadAt.Format(time.RFC3339), dl.Reason)
		}
		return tw.Flush()
	}
	return c
}

func dlqReplayCmd(stdout io.Writer) *cobra.Command {
	c, cfgPath := leaf("replay", "deliver dead letters again, to that sink only")
	fs := c.Flags()
	sink := fs.String("sink", "", "sink name")
	all := fs.Bool("all", false, "replay every dead letter of the sink")
	idFlag := fs.StringArray("id", nil, "event id to replay (repeatable)")
	c.RunE = func(c *cobra.Command, args []string) error {
		ctx := c.Context()
		ids := *idFlag
		if *sink == "" || (*all == (len(ids) > 0)) {
			return usageError{"dlq replay: give --sink and either --id ID (repeatable) or --all"}
		}
		dlq, closeFn, err := deadLetters(ctx, *cfgPath)
		if err != nil {
			return err
		}
		defer closeFn()
		n, err := dlq.Replay(ctx, *sink, ids)
		fmt.Fprintf(stdout, "replayed %d dead letters to sink %s\n", n, *sink)
		if err != nil {
			return err
		}
		if len(ids) > 0 && n < len(ids) {
			return fmt.Errorf("%d of the given ids were not dead letters of sink %s", len(ids)-n, *sink)
		}
		return nil
	}
	return c
}

// sinksStateCmd enables or disables a sink on every node of the outbox.
func sinksStateCmd(ctx context.Context, cfgPath, name string, disable bool, stdout io.Writer) error {
	cfg, sc, _, err := namedSink(ctx, cfgPath, name)
	if err != nil {
		return err
	}
	name = sc.Name
	js, closeFn, err := connectJS(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeFn()
	states, err := outbox.OpenSinkStates(ctx, js)
	if err != nil {
		return err
	}
	reason := "enabled by an operator"
	if disable {
		reason = "disabled by an operator"
	}
	if err := states.Put(ctx, name, outbox.SinkState{Disabled: disable, Reason: reason, At: time.Now().UTC()}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "sink %s %s\n", name, map[bool]string{true: "disabled", false: "enabled"}[disable])
	return nil
}

// statusCmd prints, like gluster-eventsapi status, every node with whether
// it is up, and every configured sink's backlog.
func statusCmd(stdout io.Writer) *cobra.Command {
	c, cfgPath := leaf("status", "nodes UP/DOWN and, per sink, pending, in flight, dead letters, last error")
	fs := c.Flags()
	asJSON := fs.Bool("json", false, "print JSON")
	c.RunE = func(c *cobra.Command, args []string) error {
		ctx := c.Context()
		cfg, js, closeFn, err := connectConfigured(ctx, *cfgPath)
		if err != nil {
			return err
		}
		defer closeFn()
		report, err := status.Read(ctx, js, definedSinks(ctx, cfg, js))
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(report)
		}
		now := time.Now()
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tNODE STATUS\tWORKER STATUS\tLAST SEEN\tVERSION\tEVENT LOG LAG")
		for _, n := range report.Nodes {
			up := "DOWN"
			if n.Up {
				up = "UP"
			}
			lag := "off"
			if n.EventLogLag != nil {
				lag = fmt.Sprintf("%d events", *n.EventLogLag)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s ago\t%s\t%s\n", n.Node, up, n.Worker(), now.Sub(n.Heartbeat).Round(time.Second), n.Version, lag)
		}
		fmt.Fprintln(tw, "\nSINK\tSTATE\tPENDING\tIN FLIGHT\tDEAD LETTERS\tLAST ERROR")
		for _, r := range report.Sinks {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\n", r.Sink, r.State, r.Pending, r.InFlight, r.DeadLetters, r.LastError)
		}
		return tw.Flush()
	}
	return c
}

// definedSinks names every sink defined in the registry, or, before any
// worker created the registry, the configuration file's.
func definedSinks(ctx context.Context, cfg *config.File, js jetstream.JetStream) []string {
	var names []string
	if reg, err := registry.Open(ctx, js, cfg.NodeID, cfg.BaseSettings(), cfg.Env()); err == nil {
		if recs, err := reg.Records(ctx); err == nil {
			for _, r := range recs {
				names = append(names, r.Name)
			}
			return names
		}
	}
	for _, s := range cfg.Sinks {
		names = append(names, s.Name)
	}
	return names
}

// printJSONLines writes one JSON object per line, for scripts.
func printJSONLines[T any](w io.Writer, items []T) error {
	enc := json.NewEncoder(w)
	for _, it := range items {
		if err := enc.Encode(it); err != nil {
			return err
		}
	}
	return nil
}
