package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/parkd/parkd/identity"
)

// tokenCmd mints a bearer token signed with PARKD_JWT_SECRET, for local use and
// for upstream apps' test setups:
//
//	parkd token --role resident --sub alice --permits 1,2 [--ttl 24h]
func tokenCmd(cfg config, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	role := fs.String("role", "", "resident, eloket, enforcement or operator (required)")
	sub := fs.String("sub", "", "the subject: who the token is for (required)")
	permits := fs.String("permits", "", "residents: comma-separated permit IDs they hold")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("token: unexpected arguments %q", fs.Args())
	}
	var ids []string
	for p := range strings.SplitSeq(*permits, ",") {
		if p = strings.TrimSpace(p); p != "" {
			ids = append(ids, p)
		}
	}
	if cfg.JWTSecret == devJWTSecret {
		fmt.Fprintln(os.Stderr, "parkd token: signed with the development secret (PARKD_JWT_SECRET is not set)")
	}
	tok, err := identity.Mint([]byte(cfg.JWTSecret), identity.Grant{Role: *role, Sub: *sub, Permits: ids, TTL: *ttl}, time.Now())
	if fe := (*identity.FieldError)(nil); errors.As(err, &fe) {
		return fmt.Errorf("token: --%s %s", fe.Field, fe.Problem) // the field is the flag
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}
