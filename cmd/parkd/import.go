package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/parkd/parkd/brp"
	"github.com/parkd/parkd/repo"
)

func newImportCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import",
		Short: "load data from the municipality's systems: import registrations FILE.csv (a BRP extract)",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			return usageError{errors.New("name what to import: registrations")}
		},
	}
	registrations := &cobra.Command{
		Use:   "registrations FILE.csv",
		Short: "load a BRP extract (CSV with a header naming resident_id,address_id)",
		Long: `parkd import registrations FILE.csv loads a BRP extract: CSV whose header names at
least resident_id and address_id. It reads what spreadsheets and municipal systems
write (UTF-8 with or without a byte-order mark, UTF-16 with one; comma, semicolon
or tab; CRLF, LF or CR line ends). Loading is idempotent. Every rejected row is
listed with its line and reason; the exit status is 0 once the file was read to its
end. A file that cannot be read as a whole (not UTF-8, no header) loads nothing
and exits 1, before connecting to Postgres.`,
		Args: wantArgs("FILE.csv"),
	}
	registrations.RunE = a.work(func(ctx context.Context, cfg config, log *slog.Logger, args []string) error {
		return importRegistrations(ctx, cfg, log, args[0], registrations.OutOrStdout())
	})
	cmd.AddCommand(registrations)
	return cmd
}

// importRegistrations fails with nothing loaded when the file cannot be read,
// all before connecting to Postgres; and with the batches so far loaded when
// Postgres fails midway (run it again: loading is idempotent).
func importRegistrations(ctx context.Context, cfg config, log *slog.Logger, name string, out io.Writer) error {
	raw, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	x, err := brp.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	var rep brp.Report
	err = onPostgres(ctx, cfg, log, func(store *repo.Store) error {
		if _, err := store.Migrate(ctx); err != nil {
			return err
		}
		r, err := brp.Load(ctx, store, x, brp.DefaultBatch)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rep = r
		return rep.Write(out, name)
	})
	if err != nil {
		return err
	}
	log.Info("registrations imported", "file", name, "encoding", x.Encoding, "separator", string(x.Separator),
		"rows", rep.Rows, "new", rep.New, "already_registered", rep.Existing, "rejected", len(rep.Rejected))
	return nil
}
