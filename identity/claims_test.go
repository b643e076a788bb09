package identity_test

import (
	"testing"

	"github.com/parkd/parkd/identity"
)

// TestResidentActsOnThePermitsItHolds is the rule of README "The HTTP API": a
// resident acts on the permits parkd's records give it; a permits claim only
// narrows that.
func TestResidentActsOnThePermitsItHolds(t *testing.T) {
	t.Parallel()
	res := func(permits []string) *identity.Principal {
		return &identity.Principal{Role: identity.RoleResident, Sub: "RES-1", Permits: permits}
	}
	for _, c := range []struct {
		name           string
		p              *identity.Principal
		permit, holder string
		want           bool
	}{
		{"its own permit, no claim", res(nil), "1", "RES-1", true},
		{"its own permit, named in the claim", res([]string{"1"}), "1", "RES-1", true},
		{"its own permit, narrowed out by the claim", res([]string{"5"}), "1", "RES-1", false},
		{"its own permit, an empty claim", res([]string{}), "1", "RES-1", false},
		{"another's permit named in its claim (RES-1 with permits [2])", res([]string{"2"}), "2", "RES-3", false},
		{"another's permit, no claim", res(nil), "2", "RES-3", false},
		{"a permit nobody holds", res([]string{"9"}), "9", "", false},
		{"a sub that differs in case", res(nil), "1", "res-1", false},
		{"an operator whose sub is the holder", &identity.Principal{Role: identity.RoleOperator, Sub: "RES-1"}, "1", "RES-1", false},
		{"an eloket whose sub is the holder", &identity.Principal{Role: identity.RoleEloket, Sub: "RES-1"}, "1", "RES-1", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if got := c.p.MayActOn(c.permit, c.holder); got != c.want {
				t.Fatalf("MayActOn(%s, holder %q) = %v, want %v", c.permit, c.holder, got, c.want)
			}
		})
	}
}
