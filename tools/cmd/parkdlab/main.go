// Command parkdlab is parkd's lab: the load generator (bench), faults under
// load (chaos) and the register emulator (registrar). It drives parkd as a
// separate binary, as production runs it, and is never linked into parkd.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

const usage = `parkdlab: the lab that loads parkd and injects faults into it

usage: parkdlab <command> [flags]

commands:
  bench   load generator: starts parkd on a fresh database (or drives --target URL) and
          reports pairs/s, latencies, auto-stop lateness, pgbench TPC-B, memory (bench -h)
  chaos   faults under load on a private Postgres and Redis: a worker SIGKILLed, Redis
          flushed, Postgres restarted and killed, 3 workers + 3 schedulers; audits after
          each and holds the database to every answer (exit 1 if a check fails; chaos -h)
  registrar
          a local national parking register for PARKD_REGISTRAR_URL: keeps the highest
          version of each right, answers enforcement queries, and fails, loses
          acknowledgements, reorders and lags on request (registrar -h)
  help    this text

parkd runs as a separate binary: --parkd PATH, by default the parkd next to parkdlab
(bin/parkd after make build).
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the command line; it returns the exit code: 0 done (or help
// given), 1 failed, 2 misused.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd := args[0]; cmd {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "bench":
		err = benchCmd(ctx, args[1:], stdout, stderr)
	case "chaos":
		err = chaosCmd(ctx, args[1:], stdout, stderr)
	case "registrar":
		err = registrarCmd(ctx, args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "parkdlab: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		return 2
	}
	slog.New(slog.NewTextHandler(stderr, nil)).Error("parkdlab "+args[0]+" failed", "err", err)
	return 1
}

// usageError is a command line that does not parse; its message and the
// usage are already on stderr.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }

// parseFlags parses a subcommand's flags. -h prints its usage to stdout and
// returns flag.ErrHelp, before anything is started; an unknown flag or a
// stray argument is said on stderr, with the usage, as a usageError.
func parseFlags(fs *flag.FlagSet, summary string, args []string, stdout, stderr io.Writer) error {
	fs.SetOutput(stderr) // flag's own message for a bad flag
	fs.Usage = func() {} // printed below, on the stream it belongs to
	printUsage := func(w io.Writer) {
		fmt.Fprintf(w, "usage: parkdlab %s [flags]\n\n%s\n\nflags:\n", fs.Name(), summary)
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(stderr)
	}
	err := fs.Parse(args)
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected arguments %q", fs.Args())
		fmt.Fprintln(stderr, err)
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		printUsage(stdout)
		return flag.ErrHelp
	case err != nil:
		printUsage(stderr)
		return usageError{err}
	}
	return nil
}

const parkdFlagHelp = "the parkd executable to run (default: the parkd next to parkdlab, bin/parkd after make build)"

// parkdBinary is the parkd executable to run: path, or the parkd next to
// this executable (both are built into bin/ by make).
func parkdBinary(path string) (string, error) {
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("--parkd: locate parkdlab itself: %w", err)
		}
		path = filepath.Join(filepath.Dir(exe), "parkd")
	}
	st, err := os.Stat(path)
	if err != nil || st.IsDir() {
		return "", fmt.Errorf("--parkd: no parkd executable at %s (make build builds bin/parkd; or name one with --parkd)", path)
	}
	return filepath.Abs(path)
}

// parseList reads a comma-separated list of names (--phases, --faults), each
// one of all; what says what a name is, for the error.
func parseList[T ~string](s string, all []T, what string) ([]T, error) {
	var out []T
	for name := range strings.SplitSeq(s, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		if !slices.Contains(all, T(name)) {
			return nil, fmt.Errorf("unknown %s %q (%ss: %s)", what, name, what, joinList(all))
		}
		out = append(out, T(name))
	}
	return out, nil
}

// joinList writes names as parseList reads them.
func joinList[T ~string](names []T) string {
	s := make([]string, len(names))
	for i, n := range names {
		s[i] = string(n)
	}
	return strings.Join(s, ",")
}
