package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/courierhq/courier/config"
	"github.com/courierhq/courier/registry"
	"github.com/courierhq/courier/status"
)

// openRegistry loads the configuration and opens the replicated sink and
// settings buckets through the local node's outbox.
func openRegistry(ctx context.Context, cfgPath string) (*config.File, *registry.Registry, func(), error) {
	cfg, reg, _, closeFn, err := openRegistryJS(ctx, cfgPath)
	return cfg, reg, closeFn, err
}

// openRegistryJS is openRegistry that also returns the JetStream it opened
// the registry through.
func openRegistryJS(ctx context.Context, cfgPath string) (*config.File, *registry.Registry, jetstream.JetStream, func(), error) {
	cfg, js, closeFn, err := connectConfigured(ctx, cfgPath)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	reg, err := registry.Open(ctx, js, cfg.NodeID, cfg.BaseSettings(), cfg.Env())
	if err != nil {
		closeFn()
		return nil, nil, nil, nil, err
	}
	return cfg, reg, js, closeFn, nil
}

// applyFlags are the flags of the commands that change a sink on every
// node and then wait for the nodes.
func applyFlags(fs *pflag.FlagSet) (wait *time.Duration, asJSON *bool) {
	// Longer than a heartbeat may be old for its node to count as up
	// (15 s): a node killed just before the change turns DOWN within the
	// wait, instead of holding the command up as a node that never applied.
	return fs.Duration("wait", 20*time.Second, "how long to wait for every node up to apply the change (0: do not wait)"),
		fs.Bool("json", false, "print the per-node rows as JSON lines")
}

// sinksAddCmd defines a sink on every node: from a YAML definition (-f),
// or, like gluster-eventsapi webhook-add, a webhook from a name and a URL.
func sinksAddCmd(stdout io.Writer) *cobra.Command {
	c, cfgPath := leaf("add NAME URL | add -f FILE", "define a sink on every node: a webhook from NAME and URL, or any kind from YAML (-f)")
	fs := c.Flags()
	file := fs.StringP("file", "f", "", "sink definition in YAML, as one entry under sinks: in the configuration (- for stdin)")
	replace := fs.Bool("replace", false, "replace the sink if it exists")
	token := fs.String("bearer-token", "", "webhook: bearer token (prefer ${NAME}, expanded on each node)")
	secret := fs.String("secret", "", "webhook: Standard Webhooks signing secret, whsec_... (prefer ${NAME})")
	events := fs.String("events", "", "comma-separated event type globs (default: every event)")
	format := fs.String("format", "", "courier, gluster, cloudevents or cloudevents-binary")
	wait, asJSON := applyFlags(fs)
	c.RunE = func(c *cobra.Command, args []string) error {
		ctx := c.Context()
		var def []byte
		switch {
		case *file != "" && len(args) == 0:
			var err error
			if *file == "-" {
				def, err = io.ReadAll(os.Stdin)
			} else {
				def, err = os.ReadFile(*file)
			}
			if err != nil {
				return fmt.Errorf("read sink definition: %w", err)
			}
		case *file == "" && len(args) == 2:
			m := map[string]any{"name": args[0], "type": "webhook", "url": args[1]}
			if *token != "" {
				m["bearer_token"] = *token
			}
			if *secret != "" {
				m["secret"] = *secret
			}
			if *events != "" {
				m["events"] = strings.Split(*events, ",")
			}
			switch *format {
			case "":
			case "cloudevents-binary": // shorthand for the two settings
				m["format"], m["cloudevents_mode"] = "cloudevents", "binary"
			default:
				m["format"] = *format
			}
			var err error
			if def, err = yaml.Marshal(m); err != nil {
				return fmt.Errorf("encode sink definition: %w", err)
			}
		default:
			return usageError{"usage: worker sinks add NAME URL [--bearer-token T] [--secret S] [--events GLOBS] [--format F] [--wait D] [--json] | worker sinks add -f sink.yaml [--replace] [--wait D] [--json]"}
		}
		cfg, reg, js, closeFn, err := openRegistryJS(ctx, *cfgPath)
		if err != nil {
			return err
		}
		defer closeFn()
		s, err := reg.Put(ctx, def, registry.OriginAPI, *replace)
		if err != nil {
			return asUsage(err)
		}
		human := humanOutput(stdout, *asJSON)
		fmt.Fprintf(human, "sink %s (%s, %s) defined; every node delivers to it from now on\n", s.Name, s.Type, s.Target())
		if inFile(cfg, s.Name) {
			fmt.Fprintf(human, "note: %s also defines %s; this run-time definition takes precedence over the file's\n", *cfgPath, s.Name)
		}
		return reportApplied(ctx, js, s.Name, true, *wait, *asJSON, stdout)
	}
	return c
}

func sinksDelCmd(stdout io.Writer) *cobra.Command {
	c, cfgPath := leaf("del NAME", "delete a sink on every node, with its claim on undelivered events")
	fs := c.Flags()
	wait, asJSON := applyFlags(fs)
	c.RunE = func(c *cobra.Command, args []string) error {
		ctx := c.Context()
		if len(args) != 1 {
			return usageError{"usage: worker sinks del NAME [--wait D] [--json]"}
		}
		cfg, reg, js, closeFn, err := openRegistryJS(ctx, *cfgPath)
		if err != nil {
			return err
		}
		defer closeFn()
		name := args[0]
		undelivered, err := reg.Delete(ctx, name)
		if err != nil {
			return err
		}
		human := humanOutput(stdout, *asJSON)
		fmt.Fprintf(human, "sink %s deleted on every node; %d events it had not received are no longer kept for it\n", name, undelivered)
		if inFile(cfg, name) {
			fmt.Fprintf(human, "note: %s still defines %s: remove it there too, or it is defined again when this node restarts\n", *cfgPath, name)
		}
		return reportApplied(ctx, js, name, false, *wait, *asJSON, stdout)
	}
	return c
}

// humanOutput is where a command's sentences go: nowhere with --json, whose
// lines alone are the output.
func humanOutput(stdout io.Writer, asJSON bool) io.Writer {
	if asJSON {
		return io.Discard
	}
	return stdout
}

// NodeApplied is one node's row after a sink was defined or deleted, as
// gluster-eventsapi webhook-add prints one per peer.
type NodeApplied struct {
	Node       string `json:"node"`
	NodeStatus string `json:"node_status"` // UP or DOWN
	// SinkStatus is RUNNING, STOPPED, FAILED (Detail says why), WAITING
	// (not applied within the wait) or "-" for a node down.
	SinkStatus string `json:"sink_status"`
	Detail     string `json:"detail,omitempty"`
}

// reportApplied waits, up to wait, until every node up runs the sink
// (running) or no longer does, or says why it cannot, and prints a row per
// node. Nodes down are listed, not waited for: they apply the change when
// they start.
func reportApplied(ctx context.Context, js jetstream.JetStream, sink string, running bool, wait time.Duration, asJSON bool, stdout io.Writer) error {
	if wait <= 0 {
		return nil
	}
	var rows []NodeApplied
	took, err := waitForNodes(ctx, js, wait, func(nodes []status.Node) (settled bool) {
		rows, settled = appliedRows(nodes, sink, running)
		return settled
	})
	if err != nil {
		return err
	}
	pending := 0
	for i, r := range rows {
		if r.SinkStatus == "" {
			rows[i].SinkStatus, rows[i].Detail = "WAITING", fmt.Sprintf("not applied within %s (its log says why)", took)
		}
		if rows[i].NodeStatus == "UP" && (rows[i].SinkStatus == "WAITING" || rows[i].SinkStatus == "FAILED") {
			pending++
		}
	}
	err = printNodeRows(stdout, asJSON, "SINK STATUS", rows, func(r NodeApplied) (string, string, string) {
		st := r.SinkStatus
		if r.Detail != "" {
			st += ": " + r.Detail
		}
		return r.Node, r.NodeStatus, st
	})
	if err != nil {
		return err
	}
	if pending > 0 {
		verb := "is not running"
		if !running {
			verb = "is still running"
		}
		return fmt.Errorf("sink %s %s on %d of the nodes up", sink, verb, pending)
	}
	return nil
}

// waitForNodes reads the nodes' heartbeats until settled says every node
// up applied a change, or wait passed, and returns how long it waited. A
// node beats as soon as it applied a change, so this polls its heartbeat.
func waitForNodes(ctx context.Context, js jetstream.JetStream, wait time.Duration, settled func([]status.Node) bool) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(wait)
	var (
		read    bool
		readErr error
	)
	for {
		readCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		report, err := status.Read(readCtx, js, nil)
		cancel()
		if err != nil {
			readErr = err
		} else {
			read = true
			if settled(report.Nodes) {
				break
			}
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	if !read && readErr != nil {
		return 0, fmt.Errorf("the change is stored, but which nodes applied it could not be read: %w", readErr)
	}
	return time.Since(start).Round(time.Second), nil
}

// printNodeRows prints a row per node, as JSON lines or as a table of
// NODE, NODE STATUS and the column named status.
func printNodeRows[T any](stdout io.Writer, asJSON bool, status string, rows []T, cells func(T) (node, nodeStatus, st string)) error {
	if asJSON {
		return printJSONLines(stdout, rows)
	}
	if len(rows) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tNODE STATUS\t"+status)
	for _, r := range rows {
		node, up, st := cells(r)
		fmt.Fprintf(tw, "%s\t%s\t%s\n", node, up, st)
	}
	return tw.Flush()
}

// SettingApplied is one node's row after a setting changed.
type SettingApplied struct {
	Node       string `json:"node"`
	NodeStatus string `json:"node_status"` // UP or DOWN
	// SettingStatus is APPLIED (Value is what the node applies), FAILED
	// (Detail says why), WAITING (not applied within the wait) or "-" for
	// a node down.
	SettingStatus string `json:"setting_status"`
	Value         string `json:"value,omitempty"`
	Detail        string `json:"detail,omitempty"`
}

// reportSettingApplied waits, up to wait, until every node up applies the
// overrides now stored (their fingerprint) and prints a row per node with
// the value of name it applies.
func reportSettingApplied(ctx context.Context, js jetstream.JetStream, reg *registry.Registry, name string, wait time.Duration, asJSON bool, stdout io.Writer) error {
	if wait <= 0 {
		return nil
	}
	overrides, err := reg.Overrides(ctx)
	if err != nil {
		return fmt.Errorf("the change is stored, but the settings could not be read back: %w", err)
	}
	want := registry.Fingerprint(overrides)
	var rows []SettingApplied
	took, err := waitForNodes(ctx, js, wait, func(nodes []status.Node) bool {
		rows = rows[:0]
		settled := true
		for _, n := range nodes {
			row := SettingApplied{Node: n.Node, NodeStatus: "DOWN", SettingStatus: "-"}
			switch {
			case !n.Up:
			case n.Problems["settings"] != "":
				row.NodeStatus, row.SettingStatus, row.Detail = "UP", "FAILED", n.Problems["settings"]
			case n.SettingsApplied == want:
				row.NodeStatus, row.SettingStatus, row.Value = "UP", "APPLIED", n.Settings[name]
			default:
				row.NodeStatus = "UP"
				settled = false
			}
			rows = append(rows, row)
		}
		return settled
	})
	if err != nil {
		return err
	}
	pending := 0
	for i, r := range rows {
		if r.NodeStatus == "UP" && r.SettingStatus == "-" {
			rows[i].SettingStatus, rows[i].Detail = "WAITING", fmt.Sprintf("not applied within %s (its log says why)", took)
		}
		if rows[i].SettingStatus == "WAITING" || rows[i].SettingStatus == "FAILED" {
			pending++
		}
	}
	err = printNodeRows(stdout, asJSON, "SETTING STATUS", rows, func(r SettingApplied) (string, string, string) {
		st := r.SettingStatus
		switch {
		case r.Detail != "":
			st += ": " + r.Detail
		case r.SettingStatus == "APPLIED" && name != "all":
			st += " (" + name + " " + r.Value + ")"
		}
		return r.Node, r.NodeStatus, st
	})
	if err != nil {
		return err
	}
	if pending > 0 {
		return fmt.Errorf("the setting is stored but not applied on %d of the nodes up", pending)
	}
	return nil
}

// appliedRows is a row per node, with SinkStatus empty where a node up has
// not applied the change yet; settled says whether every node up has.
func appliedRows(nodes []status.Node, sink string, running bool) (rows []NodeApplied, settled bool) {
	settled = true
	for _, n := range nodes {
		row := NodeApplied{Node: n.Node, NodeStatus: "DOWN", SinkStatus: "-"}
		if n.Up {
			row.NodeStatus, row.SinkStatus = "UP", ""
			runs := slices.Contains(n.Sinks, sink)
			switch problem := n.Problems[sink]; {
			case running && problem != "":
				row.SinkStatus, row.Detail = "FAILED", problem
			case running && runs:
				row.SinkStatus = "RUNNING"
			case !running && !runs:
				row.SinkStatus = "STOPPED"
			default:
				settled = false
			}
		}
		rows = append(rows, row)
	}
	return rows, settled
}

// asUsage makes a refused definition or setting a usage error (exit 2);
// anything else (the outbox did not answer) stays a runtime error (exit 1).
func asUsage(err error) error {
	if errors.Is(err, registry.ErrInvalid) || errors.Is(err, registry.ErrExists) {
		return usageError{err.Error()}
	}
	return err
}

func inFile(cfg *config.File, name string) bool {
	for _, s := range cfg.Sinks {
		if s.Name == name {
			return true
		}
	}
	return false
}

func sinksListCmd(stdout io.Writer) *cobra.Command {
	c, cfgPath := leaf("list", "every defined sink, where it delivers and who defined it")
	fs := c.Flags()
	asJSON := fs.Bool("json", false, "print JSON lines")
	c.RunE = func(c *cobra.Command, args []string) error {
		ctx := c.Context()
		_, reg, closeFn, err := openRegistry(ctx, *cfgPath)
		if err != nil {
			return err
		}
		defer closeFn()
		rows, err := reg.Views(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSONLines(stdout, rows)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tTYPE\tTARGET\tEVENTS\tDEFINED BY\tUPDATED")
		for _, r := range rows {
			events := strings.Join(r.Events, ",")
			if events == "" {
				events = "*"
			}
			if r.Problem != "" {
				r.Target = "(does not parse here: " + r.Problem + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s on %s\t%s\n", r.Name, r.Type, r.Target, events, r.Origin, r.Node, r.Updated)
		}
		return tw.Flush()
	}
	return c
}

// settingListing is one row of worker config get.
type settingListing struct {
	Name        string `json:"name"`
	Value       string `json:"value"`
	Source      string `json:"source"` // set, or default
	Description string `json:"description"`
}

// configSetCmd and configResetCmd are Gluster's config-set and
// config-reset; they wait for the nodes as sinks add does.
func configSetCmd(stdout io.Writer) *cobra.Command {
	return configChangeCmd(stdout, "set NAME VALUE", "change a setting on every node, live, and wait for every node up", 2,
		func(ctx context.Context, reg *registry.Registry, args []string) (string, error) {
			return fmt.Sprintf("%s set to %s on every node", args[0], args[1]), reg.Set(ctx, args[0], args[1])
		})
}

func configResetCmd(stdout io.Writer) *cobra.Command {
	return configChangeCmd(stdout, "reset NAME|all", "back to the file's value or the default, on every node", 1,
		func(ctx context.Context, reg *registry.Registry, args []string) (string, error) {
			return args[0] + " reset to the configuration file's value or the default on every node", reg.Reset(ctx, args[0])
		})
}

// configChangeCmd is a command that changes the settings with nargs
// arguments, says what it did and waits for the nodes to apply it.
func configChangeCmd(stdout io.Writer, use, short string, nargs int, change func(context.Context, *registry.Registry, []string) (string, error)) *cobra.Command {
	c, cfgPath := leaf(use, short)
	wait, asJSON := applyFlags(c.Flags())
	c.RunE = func(c *cobra.Command, args []string) error {
		if len(args) != nargs {
			return usageError{configUsage}
		}
		ctx := c.Context()
		_, reg, js, closeFn, err := openRegistryJS(ctx, *cfgPath)
		if err != nil {
			return err
		}
		defer closeFn()
		done, err := change(ctx, reg, args)
		if err != nil {
			return asUsage(err)
		}
		fmt.Fprintln(humanOutput(stdout, *asJSON), done)
		return reportSettingApplied(ctx, js, reg, args[0], *wait, *asJSON, stdout)
	}
	return c
}

// configGetCmd is Gluster's config-get: every setting, or one.
func configGetCmd(stdout io.Writer) *cobra.Command {
	c, cfgPath := leaf("get [NAME]", "settings every node applies: log level, sink defaults, event purge")
	asJSON := c.Flags().Bool("json", false, "print JSON lines")
	c.RunE = func(c *cobra.Command, args []string) error {
		if len(args) > 1 {
			return usageError{configUsage}
		}
		ctx := c.Context()
		_, reg, closeFn, err := openRegistry(ctx, *cfgPath)
		if err != nil {
			return err
		}
		defer closeFn()
		settings, problems, err := reg.Settings(ctx)
		if err != nil {
			return err
		}
		overrides, err := reg.Overrides(ctx)
		if err != nil {
			return err
		}
		var rows []settingListing
		for _, st := range config.SettingNames() {
			if len(args) == 1 && st.Name != args[0] {
				continue
			}
			v, _ := settings.Get(st.Name)
			source := "default"
			if _, ok := overrides[st.Name]; ok {
				source = "set"
			}
			rows = append(rows, settingListing{Name: st.Name, Value: v, Source: source, Description: st.Description})
		}
		if len(rows) == 0 {
			_, err := settings.Get(args[0])
			return usageError{err.Error()}
		}
		if *asJSON {
			return printJSONLines(stdout, rows)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tVALUE\tSOURCE\tDESCRIPTION")
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.Value, r.Source, r.Description)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, p := range problems {
			fmt.Fprintln(stdout, "warning: a stored setting is not applied:", p)
		}
		return nil
	}
	return c
}

const configUsage = "usage: worker config get [NAME] | set NAME VALUE | reset NAME|all"
