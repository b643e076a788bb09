package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/parkd/parkd/repo"
)

func newMigrateCmd(a *app) *cobra.Command {
	up := func(ctx context.Context, cfg config, log *slog.Logger, _ []string) error {
		return onPostgres(ctx, cfg, log, func(store *repo.Store) error {
			applied, err := store.Migrate(ctx)
			if err == nil {
				log.Info("schema up to date", "applied", applied)
			}
			return err
		})
	}
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "bring the database schema up to date (serve does it at start too)",
		Long: `parkd migrate brings the database schema up to date: it applies every pending
migration, each in its own transaction, marked applied only once it committed.
Two at once wait for each other on an advisory lock.

  parkd migrate          apply what is pending (also: parkd migrate up)
  parkd migrate status   list the migrations, applied and pending; changes nothing
  parkd migrate down     refused: parkd's migrations go forward only`,
		Args: noArgs,
		RunE: a.work(up),
	}
	cmd.AddCommand(
		&cobra.Command{Use: "up", Short: "apply every pending migration (what parkd migrate does)", Args: noArgs, RunE: a.work(up)},
		&cobra.Command{
			Use:   "status",
			Short: "list the migrations, applied (when) and pending; changes nothing",
			Args:  noArgs,
			RunE: a.work(func(ctx context.Context, cfg config, log *slog.Logger, _ []string) error {
				return onPostgres(ctx, cfg, log, func(store *repo.Store) error { return migrateStatus(ctx, store, cmd.OutOrStdout()) })
			}),
		},
		&cobra.Command{
			Use:   "down",
			Short: "refused: parkd's migrations go forward only",
			Args:  noArgs,
			// Refused before the configuration is read: nothing is connected to.
			RunE: func(*cobra.Command, []string) error {
				return refusedError{errors.New("refused: parkd's migrations go forward only. Rolling the schema back " +
					"drops tables and the permits, ledgers and sessions in them (the first migration's down drops every table). " +
					"To undo a release, restore the database backup taken before its migration; to drop the schema on purpose, " +
					"run the .down.sql files of repo/migrations with psql")}
			},
		},
	)
	return cmd
}

func migrateStatus(ctx context.Context, store *repo.Store, out io.Writer) error {
	states, err := store.MigrationStatus(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	pending := 0
	for _, m := range states {
		switch {
		case m.Unknown:
			fmt.Fprintf(tw, "%s\tapplied %s\tby a newer parkd: not in this one\n", m.Name, m.AppliedAt.UTC().Format(time.RFC3339))
		case m.AppliedAt.IsZero():
			pending++
			fmt.Fprintf(tw, "%s\tpending\t\n", m.Name)
		default:
			fmt.Fprintf(tw, "%s\tapplied %s\t\n", m.Name, m.AppliedAt.UTC().Format(time.RFC3339))
		}
	}
	fmt.Fprintf(tw, "%d applied, %d pending\n", len(states)-pending, pending)
	return tw.Flush()
}
