// Package identitytest is an identity provider for tests: signing keys the
// test generates, tokens signed with them, and a JWKS endpoint on httptest
// serving their public halves, which a test can rotate or take down.
package identitytest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// Key is a provider's key pair.
type Key struct {
	KID  string
	Alg  string // RS256 or ES256
	Use  string // the JWK's use: "sig", "enc" or "" (none stated)
	priv crypto.Signer
}

// RSA keys take a while to generate: a test binary makes a few and reuses them.
var (
	rsaMu   sync.Mutex
	rsaPool = map[int]*rsa.PrivateKey{}
)

// RSAKey is RS256 key n of the pool (the same n, the same key pair) under kid:
// two different n under one kid are a provider's key and a forger's.
func RSAKey(t testing.TB, n int, kid string) *Key {
	t.Helper()
	rsaMu.Lock()
	defer rsaMu.Unlock()
	k, ok := rsaPool[n]
	if !ok {
		var err error
		if k, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			t.Fatal(err)
		}
		rsaPool[n] = k
	}
	return &Key{KID: kid, Alg: "RS256", Use: "sig", priv: k}
}

// ECKey is a fresh ES256 (P-256) key under kid.
func ECKey(t testing.TB, kid string) *Key {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &Key{KID: kid, Alg: "ES256", Use: "sig", priv: k}
}

// Public is the key's public half.
func (k *Key) Public() crypto.PublicKey { return k.priv.Public() }

// PublicPEM is the public half in PEM, as a provider publishes it beside its
// JWKS: the bytes an algorithm-confusion attack signs HS256 tokens with.
func PublicPEM(t testing.TB, k *Key) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// JWK is the public half as a JWK, written out by hand (RFC 7518, 6.2 and 6.3)
// rather than by the library that reads it.
func (k *Key) JWK() map[string]any {
	b64 := base64.RawURLEncoding.EncodeToString
	out := map[string]any{"kid": k.KID, "alg": k.Alg}
	if k.Use != "" {
		out["use"] = k.Use
	}
	switch pub := k.priv.Public().(type) {
	case *rsa.PublicKey:
		out["kty"], out["n"], out["e"] = "RSA", b64(pub.N.Bytes()), b64(big.NewInt(int64(pub.E)).Bytes())
	case *ecdsa.PublicKey:
		p, err := pub.Bytes() // 0x04 || X || Y
		if err != nil {
			panic(err)
		}
		out["kty"], out["crv"], out["x"], out["y"] = "EC", "P-256", b64(p[1:33]), b64(p[33:])
	}
	return out
}

// Sign is a token of claims signed with k, its kid in the header.
func (k *Key) Sign(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	return k.sign(t, claims, true)
}

// SignNoKID is a token signed with k that does not say which key signed it.
func (k *Key) SignNoKID(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	return k.sign(t, claims, false)
}

func (k *Key) sign(t testing.TB, claims jwt.MapClaims, kid bool) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.GetSigningMethod(k.Alg), claims)
	if kid {
		tok.Header["kid"] = k.KID
	}
	s, err := tok.SignedString(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Provider is an identity provider's JWKS endpoint (its URL is the Server's).
type Provider struct {
	*httptest.Server
	mu      sync.Mutex
	keys    []*Key
	down    bool
	fetches atomic.Int64
}

// NewProvider serves keys until the test ends.
func NewProvider(t testing.TB, keys ...*Key) *Provider {
	t.Helper()
	p := &Provider{keys: keys}
	p.Server = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.Close)
	return p
}

func (p *Provider) serve(w http.ResponseWriter, _ *http.Request) {
	p.fetches.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	set := make([]map[string]any, len(p.keys))
	for i, k := range p.keys {
		set[i] = k.JWK()
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	_ = json.NewEncoder(w).Encode(map[string]any{"keys": set})
}

// Serve replaces the keys served: a rotation.
func (p *Provider) Serve(keys ...*Key) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys, p.down = keys, false
}

// Down makes the endpoint answer 503 until the next Serve.
func (p *Provider) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
}

// Fetches is how often the key set was fetched.
func (p *Provider) Fetches() int64 { return p.fetches.Load() }
