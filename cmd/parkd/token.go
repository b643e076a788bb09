package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/parkd/parkd/identity"
)

// newTokenCmd mints a bearer token signed with PARKD_JWT_SECRET, for local use
// and for upstream apps' test setups.
func newTokenCmd(a *app) *cobra.Command {
	var role, sub, permits string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "token --role ROLE --sub SUBJECT [--permits 1,2] [--ttl 24h]",
		Short: "print an HS256 bearer token signed with PARKD_JWT_SECRET (development and tests)",
		Example: `  parkd token --role resident --sub RES-3 --permits 2
  parkd token --role operator --sub ops --ttl 8h`,
		// The command line is checked before the configuration, as a flag
		// parkd cannot parse is.
		Args: func(_ *cobra.Command, args []string) error {
			var errs []error
			if len(args) > 0 {
				errs = append(errs, fmt.Errorf("unexpected argument %q", args[0]))
			}
			switch {
			case role == "":
				errs = append(errs, errors.New("--role is required: resident, eloket, enforcement or operator"))
			case !identity.ValidRole(role):
				errs = append(errs, fmt.Errorf("--role %q: want resident, eloket, enforcement or operator", role))
			}
			if strings.TrimSpace(sub) == "" {
				errs = append(errs, errors.New("--sub is required: who the token is for"))
			}
			if ttl <= 0 {
				errs = append(errs, fmt.Errorf("--ttl %s: want a positive duration such as 24h", ttl))
			}
			if len(errs) > 0 {
				return usageError{errors.Join(errs...)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&role, "role", "", "resident, eloket, enforcement or operator (required)")
	cmd.Flags().StringVar(&sub, "sub", "", "the subject: who the token is for (required)")
	cmd.Flags().StringVar(&permits, "permits", "", "residents: comma-separated permit IDs the token may act on (\"\": none); not given, every permit they hold")
	cmd.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token is valid")
	cmd.RunE = a.work(func(_ context.Context, cfg config, _ *slog.Logger, _ []string) error {
		var ids []string
		if cmd.Flags().Changed("permits") {
			// Given, even empty: the token is narrowed to these (none at
			// all for ""), as the permits claim says; not given, it is not.
			ids = []string{}
		}
		for p := range strings.SplitSeq(permits, ",") {
			if p = strings.TrimSpace(p); p != "" {
				ids = append(ids, p)
			}
		}
		if cfg.JWTSecret == devJWTSecret {
			fmt.Fprintln(cmd.ErrOrStderr(), "parkd token: signed with the development secret (PARKD_JWT_SECRET is not set)")
		}
		tok, err := identity.Mint([]byte(cfg.JWTSecret), identity.Grant{Role: role, Sub: sub, Permits: ids, TTL: ttl}, time.Now())
		if fe := (*identity.FieldError)(nil); errors.As(err, &fe) {
			return usageError{fmt.Errorf("--%s %s", fe.Field, fe.Problem)} // the field is the flag
		}
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
		return err
	})
	return cmd
}
