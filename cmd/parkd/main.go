// Command parkd runs the digital visitor parking permit system. Each subcommand
// is a role; `parkd serve` runs them all in one process.
//
// The command line is spf13/cobra's, the library kubectl, helm and most of the
// tools operators run beside parkd are built on: `-h`/`--help` on every
// command (usage on standard output, exit 0, nothing started), `parkd help
// COMMAND`, `--flag value` and `--flag=value`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
)

func main() {
	if err := setGCDefaults(); err != nil {
		fmt.Fprintln(os.Stderr, "parkd:", err)
		os.Exit(exitUsage)
	}
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit statuses: a command line or configuration parkd refuses is 2, as for
// Go's flag package and most Unix tools; a command that ran and failed, 1.
const (
	exitFailed = 1
	exitUsage  = 2
)

// usageError is a command line parkd cannot run; its usage follows the error.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }

// refusedError is a command parkd refuses to run, with the reason and the
// remedy: exit 2 without the usage, which would not help.
type refusedError struct{ err error }

func (e refusedError) Error() string { return e.err.Error() }

// app is what the commands share: the logger, once the configuration is read.
type app struct{ log *slog.Logger }

// execute runs `parkd args...` and returns its exit status.
func execute(args []string, stdout, stderr io.Writer) int {
	a := &app{}
	root := newRoot(a)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		// Go's flag package took -flag too; pflag reads -grace as -g -r -a...
		for _, arg := range args {
			if len(arg) > 2 && arg[0] == '-' && arg[1] != '-' {
				return usageError{fmt.Errorf("%w (a long flag takes two dashes: -%s)", err, arg)}
			}
		}
		return usageError{err}
	})
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteC()
	var ue usageError
	var re refusedError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s: %v\n\n%s", cmd.CommandPath(), err, cmd.UsageString())
		return exitUsage
	case errors.As(err, &re):
		fmt.Fprintf(stderr, "%s: %v\n", cmd.CommandPath(), err)
		return exitUsage
	case a.log != nil:
		a.log.Error(cmd.CommandPath()+" failed", "err", err)
	default:
		fmt.Fprintf(stderr, "%s failed: %v\n", cmd.CommandPath(), err)
	}
	return exitFailed
}

// work makes run a command's action: the configuration is read and checked
// first (so that no command connects anywhere, or signs anything, with a
// configuration it would misread; help, version and a refused command line
// never read it), and run gets a context that ends at SIGINT or SIGTERM.
func (a *app) work(run func(ctx context.Context, cfg config, log *slog.Logger, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		cfg, err := loadConfig()
		if err != nil {
			return refusedError{fmt.Errorf("configuration (nothing started):\n%s", indent(err.Error()))}
		}
		a.log = newLogger(cfg)
		slog.SetDefault(a.log) // the standard log package's lines too (asynq's x/metrics)
		redis.SetLogger(redisLog{a.log.With("component", "redis")})
		ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		return run(ctx, cfg, a.log, args)
	}
}

func newLogger(cfg config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.Env == "production" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }

// noArgs refuses positional arguments, naming the first; for a command with
// subcommands, it is an unknown subcommand, with the nearest names.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if !cmd.HasSubCommands() {
		return usageError{fmt.Errorf("unexpected argument %q", args[0])}
	}
	msg := fmt.Sprintf("unknown command %q", args[0])
	cmd.SuggestionsMinimumDistance = 2 // cobra's own default
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageError{errors.New(msg)}
}

// wantArgs wants exactly the positional arguments named.
func wantArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			return usageError{fmt.Errorf("%s is missing", strings.Join(names[len(args):], " "))}
		case len(args) > len(names):
			return usageError{fmt.Errorf("unexpected argument %q", args[len(names)])}
		}
		return nil
	}
}
