package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/parkd/parkd/repo"
)

// errViolations makes `parkd check` exit non-zero when an invariant is broken.
var errViolations = errors.New("consistency check found violations")

// checkCmd is the operator's consistency audit over Postgres: it prints every
// check it ran and every violation with the IDs involved.
func checkCmd(ctx context.Context, cfg config, log *slog.Logger, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	grace := fs.Duration("grace", 2*time.Minute, "how long past its planned end a session may still be open")
	limit := fs.Int("limit", 100, "violations shown per check")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, err := connect(ctx, cfg, log, false)
	if err != nil {
		return err
	}
	defer d.close()
	names, findings, err := repo.Audit(ctx, d.store.DB, *grace, *limit)
	if err != nil {
		return err
	}
	bad := map[string]int{}
	for _, f := range findings {
		bad[f.Check]++
	}
	for _, n := range names {
		status := "ok"
		if bad[n] > 0 {
			status = fmt.Sprintf("VIOLATED (%d shown)", bad[n])
		}
		fmt.Fprintf(out, "%-70s %s\n", n, status)
	}
	for _, f := range findings {
		fmt.Fprintf(out, "  - %s: %s\n", f.Check, f.Detail)
	}
	if len(findings) > 0 {
		return errViolations
	}
	fmt.Fprintf(out, "all %d checks hold\n", len(names))
	return nil
}
