package intake_test

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/intake"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// numbered writes events of these types (as the worker's writers do) and
// numbers them (as the sequencer does).
func (e *env) numbered(types ...string) {
	e.t.Helper()
	permit := int64(42)
	evs := make([]*repo.Event, len(types))
	for i, typ := range types {
		evs[i] = &repo.Event{Type: typ, OccurredAt: time.Now(), PermitID: &permit, Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}
	}
	if err := repo.AddEvents(e.ctx, e.store.DB, evs...); err != nil {
		e.t.Fatal(err)
	}
	if _, _, err := repo.SequenceEvents(e.ctx, e.store.DB, 500); err != nil {
		e.t.Fatal(err)
	}
}

type eventPage struct {
	Events []jobs.Event `json:"events"`
	Next   *int64       `json:"next"`
}

func sequences(p eventPage) []int64 {
	var out []int64
	for _, ev := range p.Events {
		out = append(out, ev.Sequence)
	}
	return out
}

// GET /v1/events pages through the numbered events oldest first, filters by
// type, and refuses what is not an after, a limit or a known type, naming it.
func TestEventFeed(t *testing.T) {
	e := setup(t, options{noWorker: true})
	op := e.token(identity.RoleOperator, "op")
	var p eventPage
	e.mustDo("GET", "/v1/events", op, nil, http.StatusOK, &p)
	if len(p.Events) != 0 || p.Next != nil || !strings.Contains(string(e.do("GET", "/v1/events", op, nil).Body), `"events":[]`) {
		t.Fatalf("no events yet: %+v", p)
	}
	e.numbered(jobs.EventPermitIssued, jobs.EventSessionStarted, jobs.EventSessionStopped, jobs.EventSessionStarted, jobs.EventPermitEnded)

	// Pages of 2: next on a full page, the after of the following one.
	var got []int64
	after := "0"
	for page := 0; ; page++ {
		var p eventPage
		e.mustDo("GET", "/v1/events?limit=2&after="+after, op, nil, http.StatusOK, &p)
		got = append(got, sequences(p)...)
		if p.Next == nil {
			if len(p.Events) == 2 {
				t.Fatalf("a full page without next: %+v", p)
			}
			break
		}
		if *p.Next != p.Events[len(p.Events)-1].Sequence {
			t.Fatalf("next %d, want the page's last sequence", *p.Next)
		}
		after = fmt.Sprint(*p.Next)
	}
	if !slices.Equal(got, []int64{1, 2, 3, 4, 5}) {
		t.Fatalf("paged %v", got)
	}
	e.mustDo("GET", "/v1/events", op, nil, http.StatusOK, &p)
	if len(p.Events) != 5 || p.Next != nil || p.Events[0].Type != jobs.EventPermitIssued || *p.Events[0].PermitID != "42" {
		t.Fatalf("default page %+v", p)
	}
	e.mustDo("GET", "/v1/events?after=5", op, nil, http.StatusOK, &p)
	if len(p.Events) != 0 || p.Next != nil {
		t.Fatalf("after the last: %+v", p)
	}

	for q, want := range map[string][]int64{
		"type=session.started":                              {2, 4},
		"type=session.started,permit.ended":                 {2, 4, 5},
		"type=session.stopped&type=permit.issued":           {1, 3},
		"type=session.started&after=2":                      {4},
		"type=session.ending":                               nil,
		"type=session.started,session.started&limit=1":      {2},
		"type=" + jobs.EventRequestRejected + "&after=1000": nil,
	} {
		var p eventPage
		e.mustDo("GET", "/v1/events?"+q, op, nil, http.StatusOK, &p)
		if !slices.Equal(sequences(p), want) {
			t.Errorf("%s: %v, want %v", q, sequences(p), want)
		}
	}

	for q, field := range map[string]string{
		"after=-1": "after", "after=abc": "after", "after=%2B1": "after", "after=1.5": "after",
		"after=": "after", "after=99999999999999999999": "after",
		"limit=0": "limit", "limit=501": "limit", "limit=ten": "limit",
		"type=session.parked": "type", "type=session.started,": "type", "type=": "type",
	} {
		wantError(t, e.do("GET", "/v1/events?"+q, op, nil), http.StatusBadRequest, intake.CodeBadRequest, field)
	}
	r := e.do("GET", "/v1/events?type=session.started,session.parked", op, nil)
	wantError(t, r, http.StatusBadRequest, intake.CodeBadRequest, "type")
	if !strings.Contains(string(r.Body), "session.parked") {
		t.Fatalf("the message does not name the unknown type: %s", r.Body)
	}
}

func secretOf(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

// wrapped is secret with a line break after every 76 characters of its
// base64, as base64(1) writes it.
func wrapped(secret string) string {
	var b strings.Builder
	for i, r := range secret {
		if i > 0 && i%76 == 0 {
			b.WriteByte('\n')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// PUT, GET and DELETE /v1/admin/webhooks: written at once, never showing the
// secret; DELETE is 204 whether or not there was one.
func TestWebhookAdmin(t *testing.T) {
	e := setup(t, options{noWorker: true})
	op := e.token(identity.RoleOperator, "op")
	secret := secretOf(t, 32)
	var w jobs.Webhook
	r := e.mustDo("PUT", "/v1/admin/webhooks/app.prod-1", op, map[string]any{"url": "https://app.example.nl/hooks/parkd?x=1", "secret": secret}, http.StatusOK, &w)
	if w.Name != "app.prod-1" || w.URL != "https://app.example.nl/hooks/parkd?x=1" || w.Types != nil || !w.Active || w.CreatedAt.IsZero() {
		t.Fatalf("created %+v", w)
	}
	if strings.Contains(string(r.Body), "whsec_") || strings.Contains(string(r.Body), "secret") {
		t.Fatalf("the answer shows the secret: %s", r.Body)
	}
	if !strings.Contains(string(r.Body), `"types":null`) {
		t.Fatalf("every type is types null: %s", r.Body)
	}
	stored, err := repo.GetWebhook(e.ctx, e.store.DB, "app.prod-1")
	if err != nil || stored.Secret != secret {
		t.Fatalf("stored %+v %v", stored, err)
	}

	// Replaced: types (duplicates once), inactive, another secret.
	e.mustDo("PUT", "/v1/admin/webhooks/app.prod-1", op, map[string]any{"url": "http://10.0.0.7:8080/in", "secret": secretOf(t, 64),
		"types": []string{jobs.EventSessionStarted, jobs.EventPermitEnded, jobs.EventSessionStarted}, "active": false}, http.StatusOK, &w)
	if !slices.Equal(w.Types, []string{jobs.EventSessionStarted, jobs.EventPermitEnded}) || w.Active || w.URL != "http://10.0.0.7:8080/in" || !w.UpdatedAt.After(w.CreatedAt) {
		t.Fatalf("replaced %+v", w)
	}
	e.mustDo("PUT", "/v1/admin/webhooks/second", op, map[string]any{"url": "https://b.example/", "secret": secretOf(t, 24), "types": nil, "active": true}, http.StatusOK, nil)
	var list struct{ Webhooks []jobs.Webhook }
	r = e.mustDo("GET", "/v1/admin/webhooks", op, nil, http.StatusOK, &list)
	if len(list.Webhooks) != 2 || list.Webhooks[0].Name != "app.prod-1" || list.Webhooks[1].Name != "second" || strings.Contains(string(r.Body), "whsec_") {
		t.Fatalf("list %s", r.Body)
	}

	// Bad input, field by field: 400 naming it, and nothing changed.
	before := string(e.mustDo("GET", "/v1/admin/webhooks", op, nil, http.StatusOK, nil).Body)
	good := func(k string, v any) map[string]any {
		b := map[string]any{"url": "https://ok.example/", "secret": secretOf(t, 32)}
		if v == nil {
			delete(b, k)
		} else {
			b[k] = v
		}
		return b
	}
	for _, c := range []struct {
		name  string
		body  any
		field string
	}{
		{"second", good("url", nil), "url"},
		{"second", good("url", 7), "url"},
		{"second", good("url", "ftp://files.example/"), "url"},
		{"second", good("url", "https://"), "url"},
		{"second", good("url", "https://:8080/x"), "url"},
		{"second", good("url", "app.example.nl/hooks"), "url"},
		{"second", good("url", "https://user:pass@app.example.nl/"), "url"},
		{"second", good("url", "https://app.example.nl/#top"), "url"},
		{"second", good("url", "https://app.example.nl/"+strings.Repeat("a", 2048)), "url"},
		{"second", good("url", "http://a b.example/"), "url"},
		{"second", good("url", "https://app.example.nl/hooks/a b"), "url"},
		{"second", good("url", "https://app.example.nl/hooks "), "url"},
		{"second", good("url", "https://app.example.nl/hooks\u00a0"), "url"},
		{"second", good("url", "https://app.example.nl/a\u2003b"), "url"},
		{"second", good("url", "https://app.example.nl/\u0080x"), "url"},
		{"second", good("url", "https://app.example.nl/\u009bx"), "url"},
		{"second", good("url", "http://exa\u200bmple.nl/x"), "url"},
		{"second", good("url", "https://app.example.nl/\u202ex"), "url"},
		{"second", good("url", "https://app.example.nl/\ufeffx"), "url"},
		{"second", good("url", "https://app.example.nl/\xff"), "url"},
		{"second", good("url", "http://h:99999/x"), "url"},
		{"second", good("url", "http://h:0/x"), "url"},
		{"second", good("url", "http://h:/x"), "url"},
		{"second", good("url", "http://[::1]:/x"), "url"},
		{"second", good("secret", nil), "secret"},
		{"second", good("secret", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "secret"},
		{"second", good("secret", "whsec_not base64!"), "secret"},
		{"second", good("secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw="), "secret"},
		{"second", good("secret", secretOf(t, 16)), "secret"},
		{"second", good("secret", secretOf(t, 65)), "secret"},
		{"second", good("secret", 12), "secret"},
		{"second", good("secret", secretOf(t, 32)+"\n"), "secret"},
		{"second", good("secret", wrapped(secretOf(t, 60))), "secret"},
		{"second", good("types", []string{}), "types"},
		{"second", good("types", []string{jobs.EventSessionStarted, "session.parked"}), "types"},
		{"second", good("types", jobs.EventSessionStarted), "types"},
		{"second", good("types", []int{1}), "types[0]"},
		{"second", good("active", "yes"), "active"},
		{"second", good("colour", "red"), "colour"},
		{"second", `{"url":`, "body"},
		{"bad%20name", good("x", nil), "name"},
		{"bad!", good("x", nil), "name"},
		{"%2E", good("x", nil), "name"},
		{"%2E%2E", good("x", nil), "name"},
		{strings.Repeat("n", 65), good("x", nil), "name"},
	} {
		t.Run(c.field, func(t *testing.T) {
			r := e.in(t).do("PUT", "/v1/admin/webhooks/"+c.name, op, c.body)
			wantError(t, r, http.StatusBadRequest, intake.CodeBadRequest, c.field)
		})
	}
	r = e.do("PUT", "/v1/admin/webhooks/second", op, good("types", []string{"session.parked"}))
	if !strings.Contains(string(r.Body), "session.parked") {
		t.Fatalf("the message does not name the unknown type: %s", r.Body)
	}
	if after := string(e.mustDo("GET", "/v1/admin/webhooks", op, nil, http.StatusOK, nil).Body); after != before {
		t.Fatalf("bad input changed the webhooks:\n%s\n%s", before, after)
	}

	e.mustDo("DELETE", "/v1/admin/webhooks/second", op, nil, http.StatusNoContent, nil)
	e.mustDo("DELETE", "/v1/admin/webhooks/second", op, nil, http.StatusNoContent, nil)
	e.mustDo("DELETE", "/v1/admin/webhooks/never-was", op, nil, http.StatusNoContent, nil)
	wantError(t, e.do("DELETE", "/v1/admin/webhooks/bad!", op, nil), http.StatusBadRequest, intake.CodeBadRequest, "name")
	e.mustDo("GET", "/v1/admin/webhooks", op, nil, http.StatusOK, &list)
	if len(list.Webhooks) != 1 || list.Webhooks[0].Name != "app.prod-1" {
		t.Fatalf("after delete: %+v", list)
	}
}

// The feed and the webhooks are the operator's: every other role is 403,
// no token 401.
func TestEventsAndWebhooksAreForOperatorsOnly(t *testing.T) {
	e := setup(t, options{noWorker: true})
	body := map[string]any{"url": "https://app.example.nl/", "secret": secretOf(t, 32)}
	calls := []struct {
		method, path string
		body         any
		ok           int
	}{
		{"GET", "/v1/events", nil, http.StatusOK},
		{"GET", "/v1/admin/webhooks", nil, http.StatusOK},
		{"PUT", "/v1/admin/webhooks/roles", body, http.StatusOK},
		{"DELETE", "/v1/admin/webhooks/roles", nil, http.StatusNoContent},
	}
	for _, c := range calls {
		for _, role := range []string{identity.RoleResident, identity.RoleEloket, identity.RoleEnforcement} {
			wantError(t, e.do(c.method, c.path, e.token(role, "someone"), c.body), http.StatusForbidden, intake.CodeForbidden)
		}
		wantError(t, e.do(c.method, c.path, "", c.body), http.StatusUnauthorized, intake.CodeUnauthenticated)
		e.mustDo(c.method, c.path, e.token(identity.RoleOperator, "op"), c.body, c.ok, nil)
	}
}
