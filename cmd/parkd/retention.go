package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/worker"
)

func newRetentionCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "retention",
		Short: "erase now every plate past PARKD_PLATE_RETENTION (what the hourly privacy:retention does) and print the counts",
		Long: `parkd retention erases, now, the plate of every session that ended longer than
PARKD_PLATE_RETENTION (default 2184h, 13 weeks) ago (a cancelled session ended when it
was cancelled), everywhere parkd wrote it: the session, the request outcomes that show
it, its events (their masked plate becomes null), and the task payloads in Redis.
Webhook deliveries and the registrar's tasks hold no plate. It does in this process
what the hourly privacy:retention task does in a worker, and may run beside them.
Minutes, money, ledger and statements stay.`,
		Args: noArgs,
	}
	cmd.RunE = a.work(func(ctx context.Context, cfg config, log *slog.Logger, _ []string) error {
		d, err := connect(ctx, cfg, log, true)
		if err != nil {
			return err
		}
		defer d.close()
		h := &worker.Handlers{Store: d.store, Client: d.client, Redis: d.redis, Log: log, PlateRetention: cfg.PlateRetention}
		res, err := h.Retention(ctx)
		printRetention(cmd.OutOrStdout(), res)
		return err
	})
	return cmd
}

func printRetention(out io.Writer, res jobs.PrivacyRetentionResult) {
	fmt.Fprintf(out, "sessions erased: %d\nrequest rows rewritten: %d\nredis tasks deleted: %d\n",
		res.Sessions, res.Requests, res.RedisTasks)
}
