package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

const configHelp = `Configuration (environment): PARKD_DATABASE_URL, PARKD_REDIS_URL, PARKD_HTTP_ADDR,
PARKD_JWT_SECRET, PARKD_ENV, PARKD_DB_MAX_CONNS, PARKD_WORKER_CONCURRENCY,
PARKD_SETTLE_BATCH, PARKD_SETTLE_COMMITTERS (requests per shared settlement transaction, and such transactions at once),
PARKD_TASK_CHECK_INTERVAL, PARKD_DELAYED_TASK_CHECK_INTERVAL, PARKD_STARTUP_WAIT,
PARKD_RATE_LIMIT, PARKD_RATE_BURST (intake: requests per second and burst per token subject),
PARKD_DB_CONN_MAX_LIFETIME, PARKD_MONITOR_READONLY (true: asynqmon view-only),
PARKD_PLATE_RETENTION (how long a plate is kept after its session ended; default 2184h, at least 1m),
PARKD_METRICS_ADDR (where to serve /metrics, /healthz, /readyz: empty, on PARKD_HTTP_ADDR,
or nowhere for a worker or scheduler; set, there and not on PARKD_HTTP_ADDR),
PARKD_PPROF_ADDR (a loopback HOST:PORT for Go's profiler), PARKD_LOG_LEVEL (debug, info, warn, error),
PARKD_REGISTRAR_URL (the national parking register's http(s) base URL; unset: rights are not registered),
PARKD_REGISTRAR_TOKEN (its bearer token; required in production when the URL is set),
PARKD_REGISTRAR_ISSUER (the first part of every right ID; default parkd, 1-32 of A-Za-z0-9_-).
PARKD_ENV is development (the default) or production, nothing else; production needs
PARKD_JWT_SECRET of at least 32 bytes. An invalid value stops every command before it starts
(exit 2); help and version need no configuration.`

// newRoot is the parkd command with every subcommand.
func newRoot(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "parkd",
		Short: "digital visitor parking permits",
		Long:  "parkd: digital visitor parking permits.\n\n" + configHelp,
		// No command: the list of commands, on standard error as for any
		// command line parkd cannot run.
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error { return usageError{errors.New("no command given")} },
		// parkd says what went wrong itself (execute), once.
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		Version:           versionText(),
	}
	root.SetVersionTemplate("{{.Version}}")
	root.SetHelpCommand(newHelpCmd())
	root.AddCommand(
		newRoleCmd(a, "serve", "every role in one process (migrate, intake, worker, scheduler, monitor at /monitor/)",
			roles{intake: true, worker: true, scheduler: true, monitor: true, migrate: true}),
		newRoleCmd(a, "intake", "the HTTP API: validates, enqueues, waits briefly for the outcome", roles{intake: true}),
		newRoleCmd(a, "worker", "the asynq worker and the outbox relay: applies the rules, settles into Postgres", roles{worker: true}),
		newRoleCmd(a, "scheduler", "periodic tasks (reconciliation every minute, permit-year rollover hourly at :05 UTC, plate retention hourly at :35 UTC); several may run", roles{scheduler: true}),
		newRoleCmd(a, "monitor", "asynqmon at /monitor/ behind operator sign-in, with /healthz, /readyz, /metrics on PARKD_HTTP_ADDR", roles{monitor: true}),
		newMigrateCmd(a),
		newCheckCmd(a),
		newRetentionCmd(a),
		newSeedCmd(a),
		newImportCmd(a),
		newTokenCmd(a),
		newVersionCmd(),
	)
	return root
}

// newHelpCmd is `parkd help [COMMAND]`: cobra's own answers an unknown topic
// with exit 0.
func newHelpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "help [COMMAND]",
		Short: "the usage of parkd, or of a command",
		RunE: func(cmd *cobra.Command, args []string) error {
			target, rest, err := cmd.Root().Find(args)
			if err != nil || len(rest) > 0 {
				return usageError{fmt.Errorf("no command %q", strings.Join(args, " "))}
			}
			return target.Help()
		},
	}
}
