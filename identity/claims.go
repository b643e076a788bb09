package identity

import (
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are the claims of a parkd bearer token: the registered ones (sub, exp,
// iat, iss, aud) and the role. Permits, on a resident's token, narrows the
// permits the token may act on; it never grants one. Absent (nil) means no
// narrowing; present but empty means none at all: omitzero keeps the two apart
// when a token is minted, and encoding/json when one is read.
type Claims struct {
	Role    string   `json:"role"`
	Permits []string `json:"permits,omitzero"`
	jwt.RegisteredClaims
}

// Principal is who sent a request, from a verified token.
type Principal struct {
	Role string
	Sub  string
	// Permits is the token's permits claim: nil when it has none.
	Permits []string
	Expires time.Time
}

// Subject identifies the principal wherever parkd records who asked: role and
// sub, so that an operator named "alice" is not the resident "alice".
func (p *Principal) Subject() string { return p.Role + ":" + p.Sub }

// MayActOn is the one rule of a resident's reach (README "The HTTP API"):
// a resident acts on a permit when parkd's records say it holds it (holder is
// the permit's resident_id) and, if its token carries a permits claim, the
// claim names it. Any other role, or an unknown permit (holder ""), may not.
func (p *Principal) MayActOn(permitID, holder string) bool {
	if p.Role != RoleResident || holder == "" || holder != p.Sub {
		return false
	}
	return p.Permits == nil || slices.Contains(p.Permits, permitID)
}
