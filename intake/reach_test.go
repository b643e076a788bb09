package intake_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/identity/identitytest"
	"github.com/parkd/parkd/intake"
	"github.com/parkd/parkd/jobs"
)

// TestResidentActsOnWhatItHolds: a resident acts on the permits parkd's own
// records give it (permits.resident_id = sub) and their sessions, whatever its
// token claims; a permits claim only narrows that (README "The HTTP API").
// One subtest per family of resident endpoints.
func TestResidentActsOnWhatItHolds(t *testing.T) {
	e := setup(t, options{})
	// RES-1 and RES-3 of the issue: two residents, a permit each.
	mine, theirs := e.resident(20), e.resident(20)
	theirSession := e.startSession(theirs, "THEIRS1", nil)
	theirKey := uid("their-topup")
	e.mustDo("POST", "/v1/permits/"+theirs.permit+"/topups?wait=10s", theirs.token,
		map[string]any{"hours": 1, "payment_ref": uid("pay")}, http.StatusCreated, nil, "Idempotency-Key", theirKey)
	var before jobs.Permit
	e.mustDo("GET", "/v1/permits/"+theirs.permit, e.token(identity.RoleEloket, "el"), nil, http.StatusOK, &before)

	mint := func(g identity.Grant) string {
		g.Role, g.TTL = identity.RoleResident, time.Hour
		tok, err := identity.Mint(e.secret, g, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tokens := struct{ plain, naming, widened, widenedToo, emptyClaim, stranger string }{
		plain:      mine.token, // no permits claim: what an identity provider issues
		naming:     mint(identity.Grant{Sub: mine.id, Permits: []string{mine.permit}}),
		widened:    mint(identity.Grant{Sub: mine.id, Permits: []string{theirs.permit}}), // the token
		widenedToo: mint(identity.Grant{Sub: mine.id, Permits: []string{mine.permit, theirs.permit}}),
		emptyClaim: mint(identity.Grant{Sub: mine.id, Permits: []string{}}),
		stranger:   mint(identity.Grant{Sub: uid("nobody"), Permits: []string{mine.permit, theirs.permit}}),
	}

	// call is one endpoint on a permit (and, for the session family, on a
	// session of that permit); ok is its status when allowed.
	type call struct {
		method, path string
		body         func() any
		ok           int
	}
	families := map[string]func(permit, session string) []call{
		"permit reads": func(permit, _ string) []call {
			return []call{
				{"GET", "/v1/permits/" + permit, nil, http.StatusOK},
				{"GET", "/v1/permits/" + permit + "/sessions", nil, http.StatusOK},
				{"GET", "/v1/permits/" + permit + "/ledger", nil, http.StatusOK},
				{"GET", "/v1/permits/" + permit + "/statements", nil, http.StatusOK},
			}
		},
		"permit writes": func(permit, _ string) []call {
			return []call{
				{"POST", "/v1/permits/" + permit + "/sessions?wait=10s", func() any { return map[string]any{"plate": plate()} }, http.StatusCreated},
				{"POST", "/v1/permits/" + permit + "/topups?wait=10s", func() any { return map[string]any{"hours": 1, "payment_ref": uid("pay")} }, http.StatusCreated},
			}
		},
		"favourites": func(permit, _ string) []call {
			return []call{
				{"GET", "/v1/permits/" + permit + "/favourites", nil, http.StatusOK},
				{"PUT", "/v1/permits/" + permit + "/favourites/" + plate(), func() any { return map[string]any{"name": "Oma"} }, http.StatusOK},
				{"DELETE", "/v1/permits/" + permit + "/favourites/" + plate(), nil, http.StatusNoContent},
			}
		},
		"sessions by id": func(_, session string) []call {
			return []call{
				{"GET", "/v1/sessions/" + session, nil, http.StatusOK},
				{"POST", "/v1/sessions/" + session + "/stop?wait=10s", nil, http.StatusOK},
			}
		},
	}
	send := func(e *env, c call, tok string) *resp {
		var body any
		if c.body != nil {
			body = c.body()
		}
		return e.do(c.method, c.path, tok, body)
	}

	for name, family := range families {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := e.in(t)
			// A session of my own per family, for the session calls to stop.
			mySession := e.startSession(mine, plate(), nil)
			for _, c := range family(theirs.permit, theirSession.ID) {
				for tname, tok := range map[string]string{"no claim": tokens.plain, "claim naming theirs": tokens.widened,
					"claim naming both": tokens.widenedToo, "another sub naming theirs": tokens.stranger} {
					res := send(e, c, tok)
					wantError(t, res, http.StatusForbidden, intake.CodeForbidden)
					// Not theirs, and a session's answer does not name its permit.
					msg := string(res.Body)
					notHeld := strings.Contains(msg, "not one you hold") || strings.Contains(msg, "not on a permit you hold")
					if leaks := strings.HasPrefix(c.path, "/v1/sessions/") && strings.Contains(msg, "permit "+theirs.permit); !notHeld || leaks {
						t.Errorf("%s %s with %s: %s", c.method, c.path, tname, res.Body)
					}
				}
			}
			for _, c := range family(mine.permit, mySession.ID) {
				for tname, tok := range map[string]string{"claim naming theirs only": tokens.widened, "empty claim": tokens.emptyClaim} {
					res := send(e, c, tok)
					wantError(t, res, http.StatusForbidden, intake.CodeForbidden)
					if !strings.Contains(string(res.Body), "your token's permits") {
						t.Errorf("%s %s with %s: %s", c.method, c.path, tname, res.Body)
					}
				}
				for tname, tok := range map[string]string{"no claim": tokens.plain, "claim naming it": tokens.naming, "claim naming both": tokens.widenedToo} {
					if res := send(e, c, tok); res.Status != c.ok {
						t.Errorf("%s %s with %s: %s, want %d", c.method, c.path, tname, res, c.ok)
					}
				}
			}
		})
	}
	t.Run("request outcomes", func(t *testing.T) {
		t.Parallel()
		e := e.in(t)
		// The requester's own, by who asked (role and sub), never by a claim.
		for _, tok := range []string{tokens.plain, tokens.widened, tokens.widenedToo} {
			wantError(t, e.do("GET", "/v1/requests/"+theirKey, tok, nil), http.StatusForbidden, intake.CodeForbidden)
		}
		e.mustDo("GET", "/v1/requests/"+theirKey, theirs.token, nil, http.StatusOK, nil)
	})
	t.Run("a permit nobody holds", func(t *testing.T) {
		t.Parallel()
		e := e.in(t)
		ghost := mint(identity.Grant{Sub: "ghost", Permits: []string{"424242"}})
		for _, path := range []string{"/v1/permits/424242", "/v1/permits/424242/ledger", "/v1/permits/not-an-id"} {
			wantError(t, e.do("GET", path, ghost, nil), http.StatusForbidden, intake.CodeForbidden)
		}
	})

	// Nothing of theirs changed: no session started, no hours bought, their
	// session still open.
	var after jobs.Permit
	e.mustDo("GET", "/v1/permits/"+theirs.permit, e.token(identity.RoleEloket, "el"), nil, http.StatusOK, &after)
	if after.BalanceMinutes != before.BalanceMinutes || after.Year.PurchasedMinutes != before.Year.PurchasedMinutes {
		t.Errorf("their permit changed: %+v, was %+v", after, before)
	}
	var list struct{ Sessions []jobs.Session }
	e.mustDo("GET", "/v1/permits/"+theirs.permit+"/sessions", theirs.token, nil, http.StatusOK, &list)
	if len(list.Sessions) != 1 || list.Sessions[0].Status == "stopped" {
		t.Errorf("their sessions: %+v", list.Sessions)
	}
}

// plate is a plate no other call of this test process uses.
func plate() string { return fmt.Sprintf("RCH%d", seq.Add(1)) }

// TestIdentityProviderTokens: RS256 and ES256 tokens of the municipality's
// identity provider, verified against its JWKS, are accepted beside HS256;
// foreign, expired, unsigned and misaddressed ones are 401.
func TestIdentityProviderTokens(t *testing.T) {
	rs, es := identitytest.RSAKey(t, 0, "idp-rsa"), identitytest.ECKey(t, "idp-ec")
	idp := identitytest.NewProvider(t, rs, es)
	const iss, aud = "https://login.example.nl/realms/parkd", "parkd"
	e := setup(t, options{identity: identity.Config{JWKSURL: idp.URL, Issuer: iss, Audience: aud}})
	r := e.resident(2)
	path := "/v1/permits/" + r.permit
	claims := func(kv ...any) jwt.MapClaims {
		c := jwt.MapClaims{"sub": r.id, "role": "resident", "iss": iss, "aud": aud, "exp": time.Now().Add(time.Hour).Unix()}
		for i := 0; i+1 < len(kv); i += 2 {
			c[kv[i].(string)] = kv[i+1]
		}
		return c
	}
	hs256 := func(key []byte, c jwt.MapClaims, kid string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
		tok.Header["kid"] = kid
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	pem := identitytest.PublicPEM(t, rs)

	for name, tok := range map[string]string{
		"RS256":                 rs.Sign(t, claims()),
		"ES256":                 es.Sign(t, claims()),
		"HS256 with the secret": hs256(e.secret, claims(), ""),
	} {
		t.Run(name, func(t *testing.T) {
			e.in(t).mustDo("GET", path, tok, nil, http.StatusOK, nil)
		})
	}
	// The provider rotates: a token signed with the new key works at once
	// (before the forgers below, whose unknown kid spends the one fetch a
	// minute that unknown kids may cause).
	next := identitytest.ECKey(t, "idp-ec-2")
	idp.Serve(rs, es, next)
	e.mustDo("GET", path, next.Sign(t, claims()), nil, http.StatusOK, nil)
	for name, tok := range map[string]string{
		"a foreign key under the provider's kid": identitytest.RSAKey(t, 1, "idp-rsa").Sign(t, claims()),
		"a foreign key under a kid of its own":   identitytest.ECKey(t, "forger").Sign(t, claims()),
		"wrong iss":                              rs.Sign(t, claims("iss", "https://evil.example")),
		"wrong aud":                              es.Sign(t, claims("aud", "another-app")),
		"expired":                                rs.Sign(t, claims("exp", time.Now().Add(-time.Hour).Unix())),
		"alg none":                               unsigned(t, claims()),
		"HS256 keyed with the provider's public key": hs256(pem, claims(), "idp-rsa"),
	} {
		t.Run(name, func(t *testing.T) {
			res := e.in(t).do("GET", path, tok, nil)
			wantError(t, res, http.StatusUnauthorized, intake.CodeUnauthenticated)
			if !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: %v", res.Header)
			}
		})
	}
}

func unsigned(t *testing.T, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
