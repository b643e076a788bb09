package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/seed"
)

func newSeedCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "seed FILE.json",
		Short: "load a municipality (zones, addresses, registrations, permits) from JSON",
		Long: `parkd seed FILE.json loads a municipality: zones, the address register, a BRP
extract and permits to issue with hours to buy (deploy/demo/municipality.json is
one). Permits go through the same rules as any request; loading a file twice
changes nothing. The file may be UTF-8, with or without a byte-order mark, or
UTF-16 with one; a field the format lacks is refused.`,
		Args: wantArgs("FILE.json"),
	}
	cmd.RunE = a.work(func(ctx context.Context, cfg config, log *slog.Logger, args []string) error {
		m, err := seed.ReadFile(args[0])
		if err != nil {
			return err
		}
		var rep seed.Report
		err = onPostgres(ctx, cfg, log, func(store *repo.Store) error {
			if _, err := store.Migrate(ctx); err != nil {
				return err
			}
			r, err := seed.Load(ctx, store, log, m)
			rep = r
			return err
		})
		if err != nil {
			return err
		}
		for _, p := range rep.Issued {
			fmt.Fprintf(cmd.OutOrStdout(), "permit %s  resident %s  address %s\n", p.PermitID, p.ResidentID, p.AddressID)
			if p.TopupRefused != "" {
				log.Warn("seed top-up refused", "address_id", p.AddressID, "hours", p.TopupHours, "outcome", p.TopupRefused)
			}
		}
		for _, p := range rep.Refused {
			log.Warn("seed permit not issued", "address_id", p.AddressID, "outcome", p.Outcome)
		}
		log.Info("seeded", "zones", len(m.Zones), "addresses", len(m.Addresses), "registrations", len(m.Registrations), "permits", len(m.Permits))
		return nil
	})
	return cmd
}
