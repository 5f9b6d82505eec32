package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"

	"github.com/spf13/cobra"
)

// dispatch runs the command args name. The tree is built per call, so
// that each command's flags are its own values (the tests run many).
func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := commandTree(stdout, stderr)
	root.SetArgs(compatArgs(args))
	root.SetOut(stdout)
	root.SetErr(stderr)
	first := ""
	if len(args) > 0 {
		first = args[0]
	}
	// A flag before any command (worker --config x.yaml) is no command.
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		if c == root {
			fmt.Fprint(stderr, usage)
			return usageError{fmt.Sprintf("unknown command %q", first)}
		}
		return usageError{fmt.Sprintf("%s: %v (%s --help lists its flags)", c.CommandPath(), err, c.CommandPath())}
	})
	return root.ExecuteContext(ctx)
}

// commandTree is every command, each with its flags, --help and a line of
// its own in the shell completion.
func commandTree(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "worker",
		Short:         "a Courier node and its operator commands",
		Version:       version,
		SilenceErrors: true, // main prints them, and decides the exit status
		SilenceUsage:  true,
		Args:          cobra.ArbitraryArgs,
		RunE: func(_ *cobra.Command, args []string) error {
			fmt.Fprint(stderr, usage)
			if len(args) == 0 {
				return usageError{"no command given"}
			}
			return usageError{fmt.Sprintf("unknown command %q", args[0])}
		},
	}
	root.SetVersionTemplate("courier worker {{.Version}}\n")
	// worker help, -h and --help show the overview; each command's --help
	// is cobra's, with its flags.
	commandHelp := root.HelpFunc()
	root.SetHelpFunc(func(c *cobra.Command, args []string) {
		if c == root {
			fmt.Fprint(c.OutOrStdout(), usage)
			return
		}
		commandHelp(c, args)
	})

	run, runConfig := leaf("run", "run the node: embedded outbox and delivery to every sink")
	run.RunE = func(c *cobra.Command, _ []string) error { return runCmd(c.Context(), *runConfig, stderr) }

	check, checkConfig := leaf("check", "validate the configuration and exit")
	check.RunE = func(c *cobra.Command, _ []string) error {
		cfg, err := loadConfig(*checkConfig)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: ok (%d sinks)\n", *checkConfig, len(cfg.Sinks))
		return nil
	}

	sinks := group("sinks", "define, list, test, enable and disable sinks on every node",
		"usage: worker sinks list | add NAME URL | add -f FILE | del NAME | test NAME | enable NAME | disable NAME")
	del := sinksDelCmd(stdout)
	del.Aliases = []string{"delete"}
	sinks.AddCommand(sinksListCmd(stdout), sinksAddCmd(stdout), del, sinksTestCommand(stdout, stderr),
		sinksStateCommand(false, stdout), sinksStateCommand(true, stdout))

	cfg := group("config", "settings every node applies, changed live (Gluster's config-get/set/reset)", configUsage)
	cfg.AddCommand(configGetCmd(stdout), configSetCmd(stdout), configResetCmd(stdout))

	events := group("events", "the event log: list, show, attempts, archive, delete", eventsUsage)
	events.AddCommand(eventsListCmd(stdout), eventsShowCmd(stdout, false), eventsShowCmd(stdout, true),
		eventsChangeCmd("archive", stdout), eventsChangeCmd("delete", stdout))

	dlq := group("dlq", "dead letters: list and replay", "usage: worker dlq list|replay --sink S")
	dlq.AddCommand(dlqListCmd(stdout), dlqReplayCmd(stdout))

	versionCmd := &cobra.Command{Use: "version", Short: "print the version", Args: cobra.NoArgs,
		Run: func(*cobra.Command, []string) { fmt.Fprintln(stdout, "courier worker", version) }}

	root.AddCommand(run, check, statusCmd(stdout), sinks, cfg, events, dlq, versionCmd)
	return root
}

// leaf is a command that does something; every one takes --config.
func leaf(use, short string) (*cobra.Command, *string) {
	c := &cobra.Command{Use: use, Short: short, Args: cobra.ArbitraryArgs}
	def := os.Getenv("COURIER_CONFIG")
	if def == "" {
		def = "courier.yaml"
	}
	return c, c.Flags().String("config", def, "configuration file ($COURIER_CONFIG, then courier.yaml)")
}

// group is a command that only holds others: run without one of them (or
// with an unknown one), it is a usage error with the group's usage line.
func group(name, short, usageLine string) *cobra.Command {
	return &cobra.Command{Use: name, Short: short, Args: cobra.ArbitraryArgs,
		// worker events --config x.yaml names no command: the usage line
		// says which there are, not that the group has no --config.
		FParseErrWhitelist: cobra.FParseErrWhitelist{UnknownFlags: true},
		RunE:               func(*cobra.Command, []string) error { return usageError{usageLine} }}
}

func sinksTestCommand(stdout, stderr io.Writer) *cobra.Command {
	c, cfgPath := leaf("test NAME", "send a test event to one sink from every node up and print a row per node")
	asJSON := c.Flags().Bool("json", false, "print JSON lines, one per node")
	c.RunE = func(c *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usageError{"usage: worker sinks test [--config FILE] [--json] NAME"}
		}
		return sinksTestCmd(c.Context(), *cfgPath, args[0], *asJSON, stdout, stderr)
	}
	return c
}

func sinksStateCommand(disable bool, stdout io.Writer) *cobra.Command {
	verb, short := "enable", "resume a sink disabled by a 410 Gone (or by sinks disable)"
	if disable {
		verb, short = "disable", "stop delivering to a sink on every node; its events wait"
	}
	c, cfgPath := leaf(verb+" NAME", short)
	c.RunE = func(c *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usageError{fmt.Sprintf("usage: worker sinks %s [--config FILE] NAME", verb)}
		}
		return sinksStateCmd(c.Context(), *cfgPath, args[0], disable, stdout)
	}
	return c
}

// goStyleFlag is a long flag written with one dash, as Go's flag package
// (which parsed the worker's flags before) accepts: -config x.yaml.
var goStyleFlag = regexp.MustCompile(`^-[a-z][a-z-]+(=.*)?$`)

// compatArgs rewrites such flags with two dashes, so that scripts written
// for the earlier parser keep working.
func compatArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "--" {
			copy(out[i:], args[i:])
			break
		}
		if goStyleFlag.MatchString(a) {
			a = "-" + a
		}
		out[i] = a
	}
	return out
}
