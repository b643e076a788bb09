package identity_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/identity/identitytest"
)

const (
	testIssuer   = "https://login.example.nl/realms/parkd"
	testAudience = "parkd"
)

var testSecret = []byte("a-shared-secret-of-at-least-32-bytes!")

// claims is a valid resident token's claims, for the tests to vary.
func claims() jwt.MapClaims {
	return jwt.MapClaims{"sub": "RES-1", "role": "resident", "iss": testIssuer, "aud": testAudience,
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}
}

func with(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
		} else {
			c[kv[i].(string)] = kv[i+1]
		}
	}
	return c
}

func hs(t *testing.T, method jwt.SigningMethod, key any, c jwt.MapClaims, header ...string) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	for i := 0; i+1 < len(header); i += 2 {
		tok.Header[header[i]] = header[i+1]
	}
	out, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func newVerifier(t *testing.T, c identity.Config) *identity.Verifier {
	t.Helper()
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	v, err := identity.NewVerifier(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

// refused asserts that tok is refused, with a reason containing want.
func refused(t *testing.T, v *identity.Verifier, tok, want string) {
	t.Helper()
	p, err := v.Verify(context.Background(), tok)
	var r *identity.Refusal
	if err == nil || !errors.As(err, &r) {
		t.Fatalf("accepted (%+v, %v), want a refusal saying %q", p, err, want)
	}
	if !strings.Contains(r.Reason, want) {
		t.Fatalf("refused for %q, want %q (%v)", r.Reason, want, err)
	}
}

func accepted(t *testing.T, v *identity.Verifier, tok string) *identity.Principal {
	t.Helper()
	p, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatalf("refused: %v", err)
	}
	return p
}

// TestVerify: the shared secret and the identity provider's key set side by
// side, each token checked only with its own kind of key.
func TestVerify(t *testing.T) {
	t.Parallel()
	rs, es := identitytest.RSAKey(t, 0, "rsa-1"), identitytest.ECKey(t, "ec-1")
	es.Use = "" // a key that states no use counts as a signing key
	jwks := identitytest.NewProvider(t, rs, es)
	both := newVerifier(t, identity.Config{Secret: testSecret, JWKSURL: jwks.URL, Issuer: testIssuer, Audience: testAudience})
	foreign := identitytest.RSAKey(t, 1, "rsa-1") // another key under a known kid
	stranger := identitytest.RSAKey(t, 2, "rsa-unknown")

	good := map[string]string{
		"HS256 with the secret":      hs(t, jwt.SigningMethodHS256, testSecret, claims()),
		"RS256 from the key set":     rs.Sign(t, claims()),
		"ES256 from the key set":     es.Sign(t, claims()),
		"RS256 without a kid":        rs.SignNoKID(t, claims()),
		"aud as a list naming parkd": rs.Sign(t, with(claims(), "aud", []string{"portal", testAudience})),
		"expired within the leeway":  rs.Sign(t, with(claims(), "exp", time.Now().Add(-10*time.Second).Unix())),
		"HS256 without iss and aud":  hs(t, jwt.SigningMethodHS256, testSecret, with(claims(), "iss", nil, "aud", nil)),
	}
	for name, tok := range good {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := accepted(t, both, tok)
			if p.Role != identity.RoleResident || p.Sub != "RES-1" || p.Permits != nil || p.Subject() != "resident:RES-1" {
				t.Fatalf("principal = %+v", p)
			}
		})
	}

	pubPEM := identitytest.PublicPEM(t, rs)
	pubDER, _ := pem.Decode(pubPEM)
	pubJWK, _ := json.Marshal(rs.JWK())
	parts := strings.Split(rs.Sign(t, claims()), ".")

	bad := []struct{ name, tok, reason string }{
		{"RS256 by a foreign key under a known kid", foreign.Sign(t, claims()), "signature is not valid"},
		{"RS256 by a foreign key under an unknown kid", stranger.Sign(t, claims()), "key (kid)"},
		{"RS256 by a foreign key without a kid", foreign.SignNoKID(t, claims()), "signature is not valid"},
		{"HS256 keyed with the provider's public key (PEM)", hs(t, jwt.SigningMethodHS256, pubPEM, claims(), "kid", "rsa-1"), "signature is not valid"},
		{"HS256 keyed with the provider's public key (DER)", hs(t, jwt.SigningMethodHS256, pubDER.Bytes, claims(), "kid", "rsa-1"), "signature is not valid"},
		{"HS256 keyed with the provider's JWK", hs(t, jwt.SigningMethodHS256, pubJWK, claims(), "kid", "rsa-1"), "signature is not valid"},
		{"HS256 with another secret", hs(t, jwt.SigningMethodHS256, []byte("another secret"), claims()), "signature is not valid"},
		{"alg none", hs(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims()), "signed with none"},
		{"unsigned", parts[0] + "." + parts[1] + ".", "signature is not valid"},
		{"HS512", hs(t, jwt.SigningMethodHS512, testSecret, claims()), "signed with HS512"},
		{"RS256 claimed, ES256 key", retag(t, es.Sign(t, claims()), "RS256"), "key (kid)"},
		{"expired", rs.Sign(t, with(claims(), "exp", time.Now().Add(-time.Hour).Unix())), "expired"},
		{"expired HS256", hs(t, jwt.SigningMethodHS256, testSecret, with(claims(), "exp", time.Now().Add(-time.Hour).Unix())), "expired"},
		{"no exp", rs.Sign(t, with(claims(), "exp", nil)), "lacks a claim parkd requires (exp)"},
		{"not yet valid", rs.Sign(t, with(claims(), "nbf", time.Now().Add(time.Hour).Unix())), "not valid yet"},
		{"wrong iss", rs.Sign(t, with(claims(), "iss", "https://evil.example")), "issuer"},
		{"no iss", rs.Sign(t, with(claims(), "iss", nil)), "(iss)"},
		{"wrong aud", rs.Sign(t, with(claims(), "aud", "another-app")), "not meant for parkd"},
		{"no aud", es.Sign(t, with(claims(), "aud", nil)), "(aud)"},
		{"unknown role", rs.Sign(t, with(claims(), "role", "admin")), "role"},
		{"no sub", es.Sign(t, with(claims(), "sub", nil)), "no sub"},
		{"numeric permits", rs.Sign(t, with(claims(), "permits", []int{2})), "malformed"},
		{"garbage", "not.a.token", "malformed"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			refused(t, both, c.tok, c.reason)
		})
	}
}

// retag rewrites a token's alg header, keeping its signature.
func retag(t *testing.T, tok, alg string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	h, _ := json.Marshal(map[string]string{"alg": alg, "typ": "JWT", "kid": "ec-1"})
	parts[0] = base64.RawURLEncoding.EncodeToString(h)
	return strings.Join(parts, ".")
}

// TestVerifyOnlyWhatIsConfigured: without a key set, RS256 is refused; without
// a secret, HS256; iss and aud are looked at only when configured.
func TestVerifyOnlyWhatIsConfigured(t *testing.T) {
	t.Parallel()
	rs := identitytest.RSAKey(t, 0, "rsa-1")
	jwks := identitytest.NewProvider(t, rs)
	t.Run("secret only", func(t *testing.T) {
		t.Parallel()
		v := newVerifier(t, identity.Config{Secret: testSecret})
		refused(t, v, rs.Sign(t, claims()), "signed with RS256; parkd accepts HS256")
		accepted(t, v, hs(t, jwt.SigningMethodHS256, testSecret, with(claims(), "iss", "anyone", "aud", "anything")))
	})
	t.Run("key set only", func(t *testing.T) {
		t.Parallel()
		v := newVerifier(t, identity.Config{JWKSURL: jwks.URL})
		refused(t, v, hs(t, jwt.SigningMethodHS256, testSecret, claims()), "signed with HS256; parkd accepts RS256, ES256")
		accepted(t, v, rs.Sign(t, claims()))
	})
	t.Run("neither", func(t *testing.T) {
		t.Parallel()
		if _, err := identity.NewVerifier(identity.Config{}); err == nil {
			t.Fatal("a verifier that can verify nothing was built")
		}
	})
	t.Run("an issuer without a key set", func(t *testing.T) {
		t.Parallel()
		if _, err := identity.NewVerifier(identity.Config{Secret: testSecret, Issuer: testIssuer}); err == nil {
			t.Fatal("an issuer that no token is checked against was accepted")
		}
	})
	t.Run("not an http URL", func(t *testing.T) {
		t.Parallel()
		for _, u := range []string{"file:///etc/jwks.json", "login.example.nl/certs", "https://",
			"https://login.example.nl:99999/certs", "https://login.example.nl:0/certs", "https://login.example.nl:/certs"} {
			if _, err := identity.NewVerifier(identity.Config{JWKSURL: u}); err == nil {
				t.Errorf("JWKS URL %q accepted", u)
			}
			if err := identity.CheckJWKSURL(u); err == nil {
				t.Errorf("CheckJWKSURL(%q) accepted it", u)
			}
		}
	})
	t.Run("an encryption key verifies nothing", func(t *testing.T) {
		t.Parallel()
		enc := identitytest.RSAKey(t, 1, "enc-1")
		enc.Use = "enc"
		v := newVerifier(t, identity.Config{JWKSURL: identitytest.NewProvider(t, enc).URL})
		refused(t, v, enc.Sign(t, claims()), "key (kid)")
	})
	t.Run("a clock of its own", func(t *testing.T) {
		t.Parallel()
		later := func() time.Time { return time.Now().Add(2 * time.Hour) }
		v := newVerifier(t, identity.Config{Secret: testSecret, Now: later})
		refused(t, v, hs(t, jwt.SigningMethodHS256, testSecret, claims()), "expired")
	})
}

// TestKeyRotation: a key the provider adds is picked up with the first token
// it signed; a flood of unknown key IDs fetches the set at most once per
// interval; a provider down at start is not fatal.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	t.Run("a new kid at the JWKS", func(t *testing.T) {
		t.Parallel()
		old, next := identitytest.RSAKey(t, 0, "2026-01"), identitytest.ECKey(t, "2026-02")
		jwks := identitytest.NewProvider(t, old)
		v := newVerifier(t, identity.Config{JWKSURL: jwks.URL})
		accepted(t, v, old.Sign(t, claims()))
		if n := jwks.Fetches(); n != 1 {
			t.Fatalf("%d fetches before the rotation, want the first only", n)
		}
		jwks.Serve(old, next) // the provider rotates
		accepted(t, v, next.Sign(t, claims()))
		accepted(t, v, old.Sign(t, claims()))
		if n := jwks.Fetches(); n != 2 {
			t.Fatalf("%d fetches after the rotation, want one more", n)
		}
		// Made-up key IDs, many: at most one fetch in the interval (the one
		// above used it).
		for i := range 20 {
			refused(t, v, identitytest.RSAKey(t, 2, "made-up-"+string(rune('a'+i))).Sign(t, claims()), "kid")
		}
		if n := jwks.Fetches(); n != 2 {
			t.Fatalf("%d fetches after a flood of unknown kids, want none within the interval", n)
		}
	})
	t.Run("the provider down at start", func(t *testing.T) {
		t.Parallel()
		k := identitytest.ECKey(t, "k1")
		jwks := identitytest.NewProvider(t)
		jwks.Down()
		v := newVerifier(t, identity.Config{JWKSURL: jwks.URL, UnknownKeyInterval: time.Millisecond})
		refused(t, v, k.Sign(t, claims()), "kid")
		jwks.Serve(k)
		time.Sleep(5 * time.Millisecond) // past the interval
		accepted(t, v, k.Sign(t, claims()))
	})
}

// TestPermitsClaim: absent stays nil (no narrowing), empty stays empty (narrows
// to nothing), listed stays listed.
func TestPermitsClaim(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, identity.Config{Secret: testSecret})
	for name, c := range map[string]struct {
		permits any
		want    []string
	}{"absent": {nil, nil}, "empty": {[]string{}, []string{}}, "two": {[]string{"2", "7"}, []string{"2", "7"}}} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := accepted(t, v, hs(t, jwt.SigningMethodHS256, testSecret, with(claims(), "permits", c.permits)))
			if (p.Permits == nil) != (c.want == nil) || strings.Join(p.Permits, ",") != strings.Join(c.want, ",") {
				t.Fatalf("permits = %#v, want %#v", p.Permits, c.want)
			}
		})
	}
}

func TestBearerToken(t *testing.T) {
	t.Parallel()
	for h, want := range map[string]string{"Bearer abc": "abc", "bearer  abc ": "abc", "BEARER abc": "abc"} {
		if got, err := identity.BearerToken(h); err != nil || got != want {
			t.Errorf("BearerToken(%q) = %q, %v", h, got, err)
		}
	}
	for h, reason := range map[string]string{"": "is required", "Bearer": "must be 'Bearer <token>'", "Bearer ": "must be",
		"Basic dXNlcjpwYXNz": "must be", "abc": "must be"} {
		var r *identity.Refusal
		if _, err := identity.BearerToken(h); !errors.As(err, &r) || !strings.Contains(r.Reason, reason) {
			t.Errorf("BearerToken(%q): %v, want a refusal saying %q", h, err, reason)
		}
	}
}

// TestAcceptedTokenKeepsItsTimeWindow: an HS256 token verified once is
// remembered (Verifier.accepted) and then accepted without being parsed, but
// never outside its window: past its exp and the leeway it is refused as
// expired, and with a clock stepped back before its iat or nbf (less the
// leeway) as not valid yet, as a fresh Verifier would. What one caller does
// to its principal is not what the next one gets. A key set's token is never
// remembered.
func TestAcceptedTokenKeepsItsTimeWindow(t *testing.T) {
	t.Parallel()
	start := time.Now()
	var mu sync.Mutex
	now := start
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set := func(at time.Time) { mu.Lock(); defer mu.Unlock(); now = at }
	v := newVerifier(t, identity.Config{Secret: testSecret, Now: clock})
	tok := hs(t, jwt.SigningMethodHS256, testSecret, with(claims(), "iss", nil, "aud", nil,
		"permits", []string{"7"}, "iat", start.Unix(), "nbf", start.Add(time.Second).Unix(),
		"exp", start.Add(time.Minute).Unix()))
	set(start.Add(time.Second))
	for i := range 2 {
		p, err := v.Verify(context.Background(), tok)
		if err != nil || p.Sub != "RES-1" || len(p.Permits) != 1 || p.Permits[0] != "7" {
			t.Fatalf("verified (call %d): %+v %v", i, p, err)
		}
		if n := identity.AcceptedLen(v); n != 1 {
			t.Fatalf("remembered %d tokens, want 1", n)
		}
		p.Permits[0] = "8" // a caller's change stays the caller's
	}
	set(start.Add(time.Minute + identity.DefaultLeeway - time.Second))
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("within the leeway: %v", err)
	}
	set(start.Add(time.Minute + identity.DefaultLeeway + time.Second))
	refused(t, v, tok, "expired")
	refused(t, v, tok, "expired") // and stays refused
	if n := identity.AcceptedLen(v); n != 0 {
		t.Fatalf("an expired token still remembered (%d)", n)
	}

	// The clock steps back: before nbf less the leeway, refused.
	set(start.Add(time.Second))
	if _, err := v.Verify(context.Background(), tok); err != nil || identity.AcceptedLen(v) != 1 {
		t.Fatalf("verified again: %v", err)
	}
	set(start.Add(time.Second - identity.DefaultLeeway - time.Second))
	refused(t, v, tok, "not valid yet")

	// A key set's token is verified afresh every time.
	key := identitytest.RSAKey(t, 1, "sig-1")
	kv := newVerifier(t, identity.Config{JWKSURL: identitytest.NewProvider(t, key).URL, Issuer: testIssuer, Audience: testAudience})
	accepted(t, kv, key.Sign(t, claims()))
	if n := identity.AcceptedLen(kv); n != 0 {
		t.Fatalf("a key set's token remembered (%d)", n)
	}
}

// TestSignatureInItsCanonicalSpellingOnly: the last character of an HS256
// signature (43 base64url characters for 32 bytes) has two bits no byte uses;
// a token whose last character differs only there decodes to the same
// signature, and is refused, whether or not the canonical one was accepted
// (and remembered) before.
func TestSignatureInItsCanonicalSpellingOnly(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, identity.Config{Secret: testSecret})
	tok := hs(t, jwt.SigningMethodHS256, testSecret, with(claims(), "iss", nil, "aud", nil))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, tok[len(tok)-1])
	if last < 0 || last&3 != 0 {
		t.Fatalf("the signature's last character %q is not canonical", tok[len(tok)-1])
	}
	variant := tok[:len(tok)-1] + string(alphabet[last|1])
	refused(t, v, variant, "malformed")
	accepted(t, v, tok)
	refused(t, v, variant, "malformed")
}
