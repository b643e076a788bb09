package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	lru "github.com/hashicorp/golang-lru/v2"
)

// Config configures a Verifier. At least one of Secret and JWKSURL is needed;
// with both, both kinds of token are accepted.
type Config struct {
	// Secret is the HS256 key shared with whoever mints tokens (PARKD_JWT_SECRET);
	// empty: HS256 tokens are refused.
	Secret []byte
	// JWKSURL is an identity provider's key set (PARKD_JWKS_URL), against which
	// RS256 and ES256 tokens are verified; empty: they are refused.
	JWKSURL string
	// Issuer, when set, must be the iss of every token verified against the
	// key set; Audience, when set, must be among its aud. HS256 tokens are
	// parkd's own (no one else holds the secret) and need neither.
	Issuer   string
	Audience string
	// Leeway absorbs clock skew between the token's issuer and parkd
	// (DefaultLeeway when zero).
	Leeway time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Log gets the failures to fetch the key set; slog.Default when nil.
	Log *slog.Logger
	// HTTPClient fetches the key set; http.DefaultClient when nil (each fetch
	// is bounded by KeysTimeout either way).
	HTTPClient *http.Client
	// RefreshInterval is how often the key set is fetched anyway
	// (DefaultRefreshInterval when zero).
	RefreshInterval time.Duration
	// UnknownKeyInterval spaces the fetches that a token signed with a key ID
	// not in the set causes (DefaultUnknownKeyInterval when zero): a key the
	// provider rotated in is picked up with its first token, and a flood of
	// made-up key IDs costs the provider one request per interval.
	UnknownKeyInterval time.Duration
}

// Defaults of a Config.
const (
	DefaultLeeway             = 30 * time.Second
	DefaultRefreshInterval    = time.Hour
	DefaultUnknownKeyInterval = time.Minute
	// KeysTimeout bounds one fetch of the key set, and the wait of a request
	// whose token's key is unknown for the fetch it causes.
	KeysTimeout = 5 * time.Second
)

// The algorithms of README "The HTTP API": HS256 with the shared secret, RS256
// and ES256 with the identity provider's keys.
var (
	secretAlgs = []string{jwt.SigningMethodHS256.Alg()}
	keySetAlgs = []string{jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg()}
)

// Verifier checks bearer tokens. It is safe for concurrent use; Close stops
// its key set's refreshes.
type Verifier struct {
	secret   []byte
	keys     keyfunc.Keyfunc // nil without a JWKS URL
	algs     []string
	issuer   string
	audience string
	leeway   time.Duration
	now      func() time.Time
	stop     context.CancelFunc
	// provider checks iss and aud on the key set's tokens; nil when neither
	// is configured.
	provider *jwt.Validator
	// accepted holds the HS256 tokens verified so far (AcceptedTokens at
	// most), each with its principal: a client sends the same token with
	// every request, and parsing and checking it again was 3.9 % of parkd's
	// CPU in the max phase's profile (docs/BENCHMARKS.md, issue 16, fifth
	// session). Only HS256 tokens: their key is the process's secret, fixed
	// for its life, so what a token's signature, role and sub decided holds
	// for good; only its time window (iat, nbf, exp, with the leeway) is
	// checked again on every use, against the clock, which may also step
	// back. A key set's tokens are always verified afresh, since a key the
	// provider withdraws must stop its tokens at once.
	accepted *lru.Cache[string, acceptedToken]
}

// AcceptedTokens is how many verified HS256 tokens a Verifier remembers.
const AcceptedTokens = 4096

// acceptedToken is a verified HS256 token's principal and its time window,
// leeway included: refused as not valid yet before from (its iat and nbf, the
// later), as expired from expires (its exp), as the parser would.
type acceptedToken struct {
	p             Principal
	from, expires time.Time
}

// window is a verified token's time window (see acceptedToken).
func (v *Verifier) window(c *Claims) (from, expires time.Time) {
	for _, d := range []*jwt.NumericDate{c.IssuedAt, c.NotBefore} {
		if d != nil && d.After(from) {
			from = d.Time
		}
	}
	if !from.IsZero() {
		from = from.Add(-v.leeway)
	}
	return from, c.ExpiresAt.Add(v.leeway)
}

// NewVerifier builds a Verifier. With a JWKS URL it fetches the key set once
// before it returns; a provider that does not answer then is logged, not fatal:
// the set is fetched again with the first token that needs it.
func NewVerifier(c Config) (*Verifier, error) {
	if len(c.Secret) == 0 && c.JWKSURL == "" {
		return nil, errors.New("identity: neither a secret (HS256) nor a JWKS URL (RS256, ES256): no token could be verified")
	}
	accepted, err := lru.New[string, acceptedToken](AcceptedTokens)
	if err != nil {
		return nil, err
	}
	v := &Verifier{secret: c.Secret, issuer: c.Issuer, audience: c.Audience, leeway: c.Leeway, now: c.Now, stop: func() {},
		accepted: accepted}
	if v.leeway == 0 {
		v.leeway = DefaultLeeway
	}
	if v.now == nil {
		v.now = time.Now
	}
	if len(c.Secret) > 0 {
		v.algs = append(v.algs, secretAlgs...)
	}
	if (c.Issuer != "" || c.Audience != "") && c.JWKSURL == "" {
		return nil, errors.New("identity: an issuer or audience is checked on the key set's tokens: a JWKS URL is needed too")
	}
	var checks []jwt.ParserOption
	if c.Issuer != "" {
		checks = append(checks, jwt.WithIssuer(c.Issuer))
	}
	if c.Audience != "" {
		checks = append(checks, jwt.WithAudience(c.Audience))
	}
	if len(checks) > 0 {
		v.provider = jwt.NewValidator(append(checks, jwt.WithLeeway(v.leeway), jwt.WithTimeFunc(v.now))...)
	}
	if c.JWKSURL != "" {
		ctx, stop := context.WithCancel(context.Background())
		keys, err := newKeySet(ctx, c)
		if err != nil {
			stop()
			return nil, err
		}
		v.keys, v.stop = keys, stop
		v.algs = append(v.algs, keySetAlgs...)
	}
	return v, nil
}

// Close stops refreshing the key set.
func (v *Verifier) Close() { v.stop() }

// Refusal is why a token was not accepted. Reason is fit to show the caller;
// Cause, the library's own words, is for the log.
type Refusal struct {
	Reason string
	Cause  error
}

func (r *Refusal) Error() string {
	if r.Cause == nil {
		return r.Reason
	}
	return r.Reason + ": " + r.Cause.Error()
}

func (r *Refusal) Unwrap() error { return r.Cause }

func refuse(reason string, cause error) *Refusal { return &Refusal{Reason: reason, Cause: cause} }

// Verify checks tok and returns who it is for; every error is a *Refusal. A
// token is accepted only when signed with an algorithm configured for its kind
// of key (never "none", never HS256 with a public key), unexpired, with an
// exp, with the configured iss and aud (the key set's tokens), a known role and
// a sub.
//
// An HS256 token verified before is not parsed again: its principal is
// remembered, and only its time window is checked again (see
// Verifier.accepted).
func (v *Verifier) Verify(ctx context.Context, tok string) (*Principal, error) {
	if a, ok := v.accepted.Get(tok); ok {
		if now := v.now(); !now.Before(a.from) && now.Before(a.expires) {
			p := a.p
			p.Permits = slices.Clone(p.Permits)
			return &p, nil
		}
		v.accepted.Remove(tok) // outside its window: the full check below says why
	}
	var c Claims
	opts := []jwt.ParserOption{
		// Canonical base64url only: the last character of a segment has
		// bits no byte uses, and a lenient decoder accepts each signature
		// under several spellings (a colleague's attack: the last letter
		// changed, the same token accepted).
		jwt.WithStrictDecoding(),
		jwt.WithValidMethods(v.algs),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(v.leeway),
		jwt.WithTimeFunc(v.now),
	}
	t, err := jwt.ParseWithClaims(tok, &c, v.keyFor(ctx), opts...)
	if err == nil && v.provider != nil && slices.Contains(keySetAlgs, t.Method.Alg()) {
		err = v.provider.Validate(&c)
	}
	if err != nil {
		return nil, v.refusal(t, &c, err)
	}
	switch {
	case !ValidRole(c.Role):
		return nil, refuse("the token's role is not one of "+rolesText, nil)
	case strings.TrimSpace(c.Subject) == "":
		return nil, refuse("the token has no sub", nil)
	}
	p := &Principal{Role: c.Role, Sub: c.Subject, Permits: c.Permits, Expires: c.ExpiresAt.Time}
	if t.Method.Alg() == jwt.SigningMethodHS256.Alg() {
		a := acceptedToken{p: *p}
		a.from, a.expires = v.window(&c)
		a.p.Permits = slices.Clone(p.Permits)
		v.accepted.Add(tok, a)
	}
	return p, nil
}

// keyFor gives each algorithm its own kind of key, so that no token chooses
// how it is checked: HS256 the shared secret, RS256 and ES256 the provider's
// key named by the token's kid (the library also checks that the key's own alg,
// when it states one, is the token's).
func (v *Verifier) keyFor(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		alg := t.Method.Alg()
		switch {
		case slices.Contains(secretAlgs, alg) && len(v.secret) > 0:
			return v.secret, nil
		case slices.Contains(keySetAlgs, alg) && v.keys != nil:
			return v.keys.KeyfuncCtx(ctx)(t)
		}
		// WithValidMethods refused it already; this is the second line.
		return nil, fmt.Errorf("no key for %s", alg)
	}
}

// refusal says in words what is wrong with a token.
func (v *Verifier) refusal(t *jwt.Token, c *Claims, err error) *Refusal {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return refuse("the token is malformed", err)
	case t != nil && t.Method != nil && !slices.Contains(v.algs, t.Method.Alg()):
		return refuse(fmt.Sprintf("the token is signed with %s; parkd accepts %s", t.Method.Alg(), strings.Join(v.algs, ", ")), err)
	case t != nil && t.Method == nil:
		return refuse("the token's algorithm is not one parkd accepts ("+strings.Join(v.algs, ", ")+")", err)
	case errors.Is(err, keyfunc.ErrKeyfunc):
		// Not in the set even after a fetch, or not a signing key, or one
		// for another algorithm.
		return refuse("the token's key (kid) is not one the identity provider signs with", err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return refuse("the token's signature is not valid", err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return refuse("the token has expired", err)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return refuse("the token lacks a claim parkd requires ("+v.missing(c)+")", err)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return refuse("the token's issuer (iss) is not "+v.issuer, err)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return refuse("the token is not meant for "+v.audience+" (aud)", err)
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return refuse("the token is not valid yet", err)
	}
	return refuse("the token is not valid", err)
}

// missing names the required claims that c lacks.
func (v *Verifier) missing(c *Claims) string {
	var out []string
	if c.ExpiresAt == nil {
		out = append(out, "exp")
	}
	if v.issuer != "" && c.Issuer == "" {
		out = append(out, "iss")
	}
	if v.audience != "" && len(c.Audience) == 0 {
		out = append(out, "aud")
	}
	return strings.Join(out, ", ")
}

// BearerToken is the token of an Authorization header value, which must be
// "Bearer <token>" (the scheme in any case).
func BearerToken(header string) (string, error) {
	if header == "" {
		return "", refuse("an Authorization: Bearer token is required", nil)
	}
	scheme, tok, ok := strings.Cut(header, " ")
	if tok = strings.TrimSpace(tok); !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", refuse("the Authorization header must be 'Bearer <token>'", nil)
	}
	return tok, nil
}
