package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/parkd/parkd/repo"
)

// errViolations makes `parkd check` exit non-zero when an invariant is broken.
var errViolations = errors.New("consistency check found violations")

func newCheckCmd(a *app) *cobra.Command {
	var grace time.Duration
	var limit int
	cmd := &cobra.Command{
		Use:   "check",
		Short: "audit Postgres: ledgers, reservations, settlements, request effects, events, webhook deliveries, registered rights (exit 1 on a violation)",
		Long: fmt.Sprintf(`parkd check is the operator's consistency audit over Postgres (%d checks): balances equal
ledgers, reservations equal open sessions, nothing open past its end (plus --grace),
nothing settled twice or charged past its end, every applied request exactly one effect
and no ledger entry from a rejected one, no request pending over 5 minutes, every year's
expired minutes booked once, no favourites beyond the rules; events: none of a session or
permit that does not exist, none of a rejected request but its rejection, none left
unnumbered over 5 minutes; webhooks: every event numbered over 5 minutes ago delivered to
every active webhook it is owed to (else listed with status, attempts and last error); the
registrar: every session's right acknowledged (a right pending over 5 minutes, or refused,
is listed with its age and the refusal). A refused right is sent again by running its
archived task right:{session}:{version} in asynqmon's registrar queue after fixing the
cause. It prints every check it ran and every violation with the IDs involved, and exits 1
if there is any.`, len(repo.AuditChecks(0))),
		Args: noArgs,
	}
	cmd.Flags().DurationVar(&grace, "grace", 2*time.Minute, "how long past its planned end a session may still be open")
	cmd.Flags().IntVar(&limit, "limit", 100, "violations shown per check")
	cmd.RunE = a.work(func(ctx context.Context, cfg config, log *slog.Logger, _ []string) error {
		return onPostgres(ctx, cfg, log, func(store *repo.Store) error { return check(ctx, store, grace, limit, cmd.OutOrStdout()) })
	})
	return cmd
}

func check(ctx context.Context, store *repo.Store, grace time.Duration, limit int, out io.Writer) error {
	names, findings, err := repo.Audit(ctx, store.DB, grace, limit)
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
