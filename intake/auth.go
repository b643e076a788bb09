package intake

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Roles of CONTRACT.md.
const (
	RoleResident    = "resident"
	RoleEloket      = "eloket"
	RoleEnforcement = "enforcement"
	RoleOperator    = "operator"
)

// ValidRole reports whether role is one of the four roles.
func ValidRole(role string) bool {
	switch role {
	case RoleResident, RoleEloket, RoleEnforcement, RoleOperator:
		return true
	}
	return false
}

// Claims are the claims of a parkd bearer token.
type Claims struct {
	Role    string   `json:"role"`
	Permits []string `json:"permits,omitempty"` // residents: the permit IDs they hold
	jwt.RegisteredClaims
}

// leeway absorbs clock skew between the token's issuer and the intake.
const leeway = 30 * time.Second

// MintToken signs a token (HS256) for sub in role, valid for ttl from now. Only
// residents carry permits.
func MintToken(secret []byte, role, sub string, permits []string, now time.Time, ttl time.Duration) (string, error) {
	switch {
	case len(secret) == 0:
		return "", errors.New("mint token: empty secret")
	case !ValidRole(role):
		return "", fmt.Errorf("mint token: role %q is not one of resident, eloket, enforcement, operator", role)
	case strings.TrimSpace(sub) == "":
		return "", errors.New("mint token: sub is required")
	case ttl <= 0:
		return "", errors.New("mint token: ttl must be positive")
	case role != RoleResident && len(permits) > 0:
		return "", fmt.Errorf("mint token: only residents hold permits, not %s", role)
	}
	c := Claims{Role: role, Permits: permits, RegisteredClaims: jwt.RegisteredClaims{
		Subject:   sub,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}

// principal is who sent a request, from a verified token.
type principal struct {
	Role    string
	Sub     string
	permits []string
	expires time.Time
}

// subject identifies the principal in the requests table: role and sub, so that
// an operator named "alice" is not the resident "alice".
func (p *principal) subject() string { return p.Role + ":" + p.Sub }

// holds reports whether a resident's token names the permit.
func (p *principal) holds(permitID string) bool {
	return p.Role == RoleResident && slices.Contains(p.permits, permitID)
}

// authenticate verifies the bearer token of r (see verifyToken).
func (s *Server) authenticate(r *http.Request) (*principal, error) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if h == "" {
		return nil, errUnauthenticated("an Authorization: Bearer token is required")
	}
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return nil, errUnauthenticated("the Authorization header must be 'Bearer <token>'")
	}
	return verifyToken(s.Secret, strings.TrimSpace(tok), s.now)
}

// verifyToken checks a token however it came (bearer header, monitor cookie).
// Only HS256 is accepted (never "none", never an asymmetric algorithm keyed
// with the shared secret), and the token must carry an expiry.
func verifyToken(secret []byte, tok string, now func() time.Time) (*principal, error) {
	var c Claims
	_, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(now),
	)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, errUnauthenticated("the token has expired")
	case err != nil:
		return nil, errUnauthenticated("the token is not valid")
	case !ValidRole(c.Role):
		return nil, errUnauthenticated("the token's role is not one of resident, eloket, enforcement, operator")
	case strings.TrimSpace(c.Subject) == "":
		return nil, errUnauthenticated("the token has no sub")
	}
	return &principal{Role: c.Role, Sub: c.Subject, permits: c.Permits, expires: c.ExpiresAt.Time}, nil
}
