package identity

import (
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Grant is what a minted token says: who, in which role, for how long.
type Grant struct {
	Role string
	Sub  string
	// Permits narrows what a resident's token may act on (nil: everything the
	// resident holds). Only residents carry it.
	Permits []string
	TTL     time.Duration
}

// FieldError is a Grant that cannot be minted: Field names the part at fault
// (role, sub, permits, ttl, secret), so that a command can name its flag
// ("--role is required"), and Problem says what is wrong with it.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return "mint token: " + e.Field + " " + e.Problem }

// ErrNoSecret is Mint's answer to an empty secret.
var ErrNoSecret = &FieldError{Field: "secret", Problem: "is empty: HS256 needs the shared secret (PARKD_JWT_SECRET)"}

// Mint signs an HS256 token for g with secret, issued at now: for development,
// tests and upstream apps' test setups (`parkd token`). Production residents
// and operators get their tokens from the municipality's identity provider.
// Every error is a *FieldError.
func Mint(secret []byte, g Grant, now time.Time) (string, error) {
	if err := g.check(); err != nil {
		return "", err
	}
	if len(secret) == 0 {
		return "", ErrNoSecret
	}
	c := Claims{Role: g.Role, Permits: g.Permits, RegisteredClaims: jwt.RegisteredClaims{
		Subject:   g.Sub,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(g.TTL)),
	}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}

// check names the first part of g that cannot be minted.
func (g Grant) check() error {
	switch {
	case g.Role == "":
		return &FieldError{"role", "is required: " + rolesText}
	case !ValidRole(g.Role):
		return &FieldError{"role", "must be " + rolesText + ", not " + strconv.Quote(g.Role)}
	case strings.TrimSpace(g.Sub) == "":
		return &FieldError{"sub", "is required: who the token is for"}
	case g.Role != RoleResident && g.Permits != nil:
		return &FieldError{"permits", "is for residents only, not " + g.Role}
	case g.TTL <= 0:
		return &FieldError{"ttl", "must be positive, such as 24h"}
	}
	for _, id := range g.Permits {
		if strings.TrimSpace(id) == "" {
			return &FieldError{"permits", "has an empty permit ID"}
		}
	}
	return nil
}
