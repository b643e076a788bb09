package load

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/identity"
)

// Resident is one permit holder of the bench: its permit and its own token, so
// that per-subject rate limits apply per resident as they would in life.
type Resident struct {
	ID       string
	PermitID string
	Token    string
}

// World is what Setup made: the zone and its residents.
type World struct {
	Zone      string
	Residents []Resident
	// Scan cars: enforcement tokens of several subjects, as a city has several
	// scan cars, each under its own rate limit.
	Scan []string
}

// Tokens mints the lab's bearer tokens in-process, as `parkd token` does,
// with parkd's secret.
type Tokens struct {
	Secret []byte
	TTL    time.Duration
}

// Mint is a token of role for subject sub, naming permits.
func (t Tokens) Mint(role, sub string, permits ...string) (string, error) {
	tok, err := identity.Mint(t.Secret, identity.Grant{Role: role, Sub: sub, Permits: permits, TTL: t.TTL}, time.Now())
	if err != nil {
		return "", fmt.Errorf("mint %s token for %s: %w", role, sub, err)
	}
	return tok, nil
}

// zoneSpec is the bench's zone: paid and valid around the clock every day, so
// that no start is refused or cut for the day or hour the bench happens to run
// on, with limits far above what a run uses.
func zoneSpec(run string, reg *domain.ZoneRegistration) map[string]any {
	spec := map[string]any{
		"name":                  "parkd bench " + run,
		"time_zone":             "Europe/Amsterdam",
		"tariff_cents_per_hour": 100,
		"paid_hours": []map[string]any{{
			"days": []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}, "from": "00:00", "to": "24:00",
		}},
		"invalid_weekdays":            []string{}, // [] says every day; absent would mean Saturday
		"max_session_minutes":         180,
		"max_plan_ahead_days":         7,
		"annual_purchase_limit_hours": 8784,
		"annual_usage_limit_hours":    8784,
		"year_starts":                 "01-01",
	}
	if reg != nil {
		spec["registration"] = reg
	}
	return spec
}

// SetupConfig sizes the setup.
type SetupConfig struct {
	Run         string // unique per run: names the zone, addresses, residents, request IDs
	Permits     int
	TopupHours  int
	Concurrency int
	ScanCars    int
	// Registration, when set, gives the zone its codes in the national
	// parking register: every session in it is then registered by a parkd
	// with a registrar (README "Pointing parkd at a register").
	Registration *domain.ZoneRegistration
}

// Setup creates the zone and, for each permit, an address, a registration, the
// permit and a top-up, all through the HTTP API with bounded concurrency. Each
// setup worker is an operator and an E-loket subject of its own, so that a
// target parkd's default rate limit does not throttle the setup; a 429 is
// retried all the same.
func Setup(ctx context.Context, a *Client, tk Tokens, cfg SetupConfig) (*World, error) {
	w := &World{Zone: "BENCH_" + cfg.Run, Residents: make([]Resident, cfg.Permits)}
	op, err := tk.Mint(identity.RoleOperator, "bench-operator-0")
	if err != nil {
		return nil, err
	}
	an, err := retry429(ctx, func() (Answer, error) {
		return a.Do(ctx, http.MethodPut, "/v1/admin/zones/"+w.Zone, op, "", zoneSpec(cfg.Run, cfg.Registration))
	})
	if err != nil {
		return nil, fmt.Errorf("put zone %s: %w", w.Zone, err)
	}
	if an.Status != http.StatusOK {
		return nil, fmt.Errorf("put zone %s: %w", w.Zone, &ErrAnswer{an})
	}
	for i := range max(cfg.ScanCars, 1) {
		t, err := tk.Mint(identity.RoleEnforcement, fmt.Sprintf("bench-scan-%s-%d", cfg.Run, i))
		if err != nil {
			return nil, err
		}
		w.Scan = append(w.Scan, t)
	}

	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fail := func(err error) { once.Do(func() { firstErr = err; cancel() }) }
	for s := range max(cfg.Concurrency, 1) {
		wg.Go(func() {
			op, err1 := tk.Mint(identity.RoleOperator, fmt.Sprintf("bench-operator-%d", s))
			el, err2 := tk.Mint(identity.RoleEloket, fmt.Sprintf("bench-eloket-%d", s))
			if err := errors.Join(err1, err2); err != nil {
				fail(err)
				return
			}
			for {
				i := int(next.Add(1) - 1)
				if i >= cfg.Permits || ctx.Err() != nil {
					return
				}
				r, err := setupPermit(ctx, a, tk, cfg, w.Zone, op, el, i)
				if err != nil {
					fail(fmt.Errorf("setup permit %d: %w", i, err))
					return
				}
				w.Residents[i] = r
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return w, nil
}

func setupPermit(ctx context.Context, a *Client, tk Tokens, cfg SetupConfig, zone, op, el string, i int) (Resident, error) {
	addr := fmt.Sprintf("bench-%s-a%d", cfg.Run, i)
	res := Resident{ID: fmt.Sprintf("bench-%s-r%d", cfg.Run, i)}
	for _, step := range []struct {
		path string
		body any
	}{
		{"/v1/admin/addresses", map[string]any{"address_id": addr, "zone": zone, "postcode": "1011AB", "house_number": fmt.Sprint(i + 1)}},
		{"/v1/admin/registrations", map[string]any{"resident_id": res.ID, "address_id": addr}},
	} {
		an, err := retry429(ctx, func() (Answer, error) { return a.Do(ctx, http.MethodPost, step.path, op, "", step.body) })
		if err != nil {
			return res, fmt.Errorf("POST %s: %w", step.path, err)
		}
		if an.Status != http.StatusCreated && an.Status != http.StatusOK {
			return res, fmt.Errorf("POST %s: %w", step.path, &ErrAnswer{an})
		}
	}
	o, err := writeRetry429(ctx, a, "/v1/permits", el, fmt.Sprintf("b%s-issue-%d", cfg.Run, i),
		map[string]any{"resident_id": res.ID, "address_id": addr})
	if err != nil {
		return res, fmt.Errorf("issue permit: %w", err)
	}
	if !o.Applied {
		return res, fmt.Errorf("issue permit: rejected: %s", o.Code)
	}
	if res.PermitID, err = IDOf(o.Result); err != nil {
		return res, fmt.Errorf("issue permit: %w", err)
	}
	if res.Token, err = tk.Mint(identity.RoleResident, res.ID, res.PermitID); err != nil {
		return res, err
	}
	o, err = writeRetry429(ctx, a, "/v1/permits/"+url.PathEscape(res.PermitID)+"/topups", res.Token,
		fmt.Sprintf("b%s-topup-%d", cfg.Run, i),
		map[string]any{"hours": cfg.TopupHours, "payment_ref": fmt.Sprintf("bench-%s-pay-%d", cfg.Run, i)})
	if err != nil {
		return res, fmt.Errorf("top up permit %s: %w", res.PermitID, err)
	}
	if !o.Applied {
		return res, fmt.Errorf("top up permit %s: rejected: %s", res.PermitID, o.Code)
	}
	return res, nil
}

// retry429 repeats a request the rate limiter refused, with a growing pause.
func retry429(ctx context.Context, f func() (Answer, error)) (Answer, error) {
	for pause := 100 * time.Millisecond; ; pause = min(2*pause, 2*time.Second) {
		an, err := f()
		if err != nil || an.Status != http.StatusTooManyRequests {
			return an, err
		}
		select {
		case <-ctx.Done():
			return an, ctx.Err()
		case <-time.After(pause):
		}
	}
}

// writeRetry429 is a POST write that is retried under the same request ID
// when rate limited (the ID makes the retry safe).
func writeRetry429(ctx context.Context, a *Client, path, token, key string, body any) (Outcome, error) {
	for pause := 100 * time.Millisecond; ; pause = min(2*pause, 2*time.Second) {
		o, err := a.Write(ctx, http.MethodPost, path, token, key, body, 30*time.Second)
		var ea *ErrAnswer
		if !errors.As(err, &ea) || ea.Answer.Status != http.StatusTooManyRequests {
			return o, err
		}
		select {
		case <-ctx.Done():
			return o, ctx.Err()
		case <-time.After(pause):
		}
	}
}

// RandomSecret is a fresh JWT secret for the parkd processes of one run.
func RandomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
