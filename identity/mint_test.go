package identity_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/parkd/parkd/identity"
)

// TestMint: a minted token verifies as what it was minted for; a grant that
// cannot be minted names its field, for `parkd token` to name its flag.
func TestMint(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, identity.Config{Secret: testSecret})
	for _, g := range []identity.Grant{
		{Role: identity.RoleResident, Sub: "RES-1", TTL: time.Hour},
		{Role: identity.RoleResident, Sub: "RES-1", Permits: []string{"2"}, TTL: time.Hour},
		{Role: identity.RoleResident, Sub: "RES-1", Permits: []string{}, TTL: time.Hour},
		{Role: identity.RoleOperator, Sub: "alice", TTL: time.Minute},
	} {
		tok, err := identity.Mint(testSecret, g, time.Now())
		if err != nil {
			t.Fatalf("%+v: %v", g, err)
		}
		p, err := v.Verify(context.Background(), tok)
		if err != nil {
			t.Fatalf("%+v: minted token refused: %v", g, err)
		}
		if p.Role != g.Role || p.Sub != g.Sub || (p.Permits == nil) != (g.Permits == nil) || len(p.Permits) != len(g.Permits) {
			t.Errorf("minted %+v, verified %+v", g, p)
		}
		if d := time.Until(p.Expires); d > g.TTL || d < g.TTL-5*time.Second {
			t.Errorf("%+v: expires in %s", g, d)
		}
	}

	ok := identity.Grant{Role: identity.RoleResident, Sub: "RES-1", TTL: time.Hour}
	for _, c := range []struct {
		name   string
		grant  func(identity.Grant) identity.Grant
		secret []byte
		field  string
	}{
		{"no role", func(g identity.Grant) identity.Grant { g.Role = ""; return g }, testSecret, "role"},
		{"unknown role", func(g identity.Grant) identity.Grant { g.Role = "admin"; return g }, testSecret, "role"},
		{"no sub", func(g identity.Grant) identity.Grant { g.Sub = " "; return g }, testSecret, "sub"},
		{"permits on an operator", func(g identity.Grant) identity.Grant {
			g.Role, g.Permits = identity.RoleOperator, []string{"1"}
			return g
		}, testSecret, "permits"},
		{"an empty permit ID", func(g identity.Grant) identity.Grant { g.Permits = []string{"1", ""}; return g }, testSecret, "permits"},
		{"no ttl", func(g identity.Grant) identity.Grant { g.TTL = 0; return g }, testSecret, "ttl"},
		{"no secret", func(g identity.Grant) identity.Grant { return g }, nil, "secret"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			tok, err := identity.Mint(c.secret, c.grant(ok), time.Now())
			var fe *identity.FieldError
			if !errors.As(err, &fe) || fe.Field != c.field || fe.Problem == "" {
				t.Fatalf("Mint = %q, %v; want a FieldError on %s", tok, err, c.field)
			}
		})
	}
	if _, err := identity.Mint(testSecret, identity.Grant{Sub: "x", TTL: time.Hour}, time.Now()); err == nil ||
		err.Error() != "mint token: role is required: resident, eloket, enforcement or operator" {
		t.Errorf("no role: %v", err)
	}
}
