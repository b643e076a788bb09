package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/parkd/parkd/brp"
)

// importCmd runs `parkd import registrations FILE.csv`. It exits 0 when the file
// was read to its end, whatever rows it rejected (the report lists them, and the
// good rows are loaded); it fails (exit 1) with nothing loaded when the file
// cannot be read, is not UTF-8 (or UTF-16 with a byte-order mark) or its header
// lacks a column, all before connecting to Postgres; and with the batches so far
// loaded when Postgres fails midway (run it again: loading is idempotent).
func importCmd(ctx context.Context, cfg config, log *slog.Logger, args []string) error {
	if len(args) != 2 || args[0] != "registrations" {
		return errors.New("usage: parkd import registrations FILE.csv")
	}
	name := args[1]
	raw, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	x, err := brp.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	d, err := connect(ctx, cfg, log, false)
	if err != nil {
		return err
	}
	defer d.close()
	if _, err := d.store.Migrate(ctx); err != nil {
		return err
	}
	rep, err := brp.Load(ctx, d.store, x, brp.DefaultBatch)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := rep.Write(os.Stdout, name); err != nil {
		return err
	}
	log.Info("registrations imported", "file", name, "encoding", x.Encoding, "separator", string(x.Separator),
		"rows", rep.Rows, "new", rep.New, "already_registered", rep.Existing, "rejected", len(rep.Rejected))
	return nil
}
