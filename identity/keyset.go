package identity

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"golang.org/x/time/rate"

	"github.com/parkd/parkd/hostport"
)

// CheckJWKSURL says what is wrong with a JWKS URL, if anything: it must be an
// absolute http or https URL, with a port from 1 to 65535 if it gives one.
func CheckJWKSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q: want an http(s) URL such as https://login.example.nl/realms/parkd/protocol/openid-connect/certs", s)
	}
	if err := hostport.CheckHost(u.Host); err != nil {
		return fmt.Errorf("%q: %w", redact(s), err)
	}
	return nil
}

// newKeySet is the identity provider's key set, kept by jwkset: fetched now and
// every RefreshInterval, and again (at most once per UnknownKeyInterval) when a
// token names a key ID it does not hold, which is how a rotated key arrives.
// Only signing keys count: a provider's encryption keys (use "enc") verify
// nothing.
func newKeySet(ctx context.Context, c Config) (keyfunc.Keyfunc, error) {
	if err := CheckJWKSURL(c.JWKSURL); err != nil {
		return nil, fmt.Errorf("identity: JWKS URL %w", err)
	}
	log := c.Log
	if log == nil {
		log = slog.Default()
	}
	where := redact(c.JWKSURL)
	store, err := jwkset.NewStorageFromHTTP(c.JWKSURL, jwkset.HTTPClientStorageOptions{
		Client:                    c.HTTPClient,
		Ctx:                       ctx,
		HTTPTimeout:               KeysTimeout,
		NoErrorReturnFirstHTTPReq: true,
		RefreshErrorHandler: func(_ context.Context, err error) {
			log.Warn("fetching the identity provider's keys failed; keeping the keys held", "url", where, "err", err)
		},
		RefreshInterval: orDefault(c.RefreshInterval, DefaultRefreshInterval),
	})
	if err != nil {
		return nil, fmt.Errorf("identity: key set at %s: %w", where, err)
	}
	client, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          map[string]jwkset.Storage{c.JWKSURL: store},
		RateLimitWaitMax:  KeysTimeout,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(orDefault(c.UnknownKeyInterval, DefaultUnknownKeyInterval)), 1),
	})
	if err != nil {
		return nil, fmt.Errorf("identity: key set at %s: %w", where, err)
	}
	if keys, err := store.KeyReadAll(ctx); err == nil && len(keys) > 0 {
		log.Info("identity provider's keys fetched", "url", where, "keys", len(keys))
	}
	return keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: client, UseWhitelist: []jwkset.USE{jwkset.UseSig, ""}})
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// redact drops a URL's user information and query, which may hold credentials.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unreadable URL)"
	}
	u.User, u.RawQuery = nil, ""
	return u.String()
}
