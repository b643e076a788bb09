package intake_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/intake"
)

// The body reader's key rules, one by one (openapi.yaml, bad_request: unknown
// field, malformed JSON, wrong type are 400 naming the field): a key must be
// exactly a field's JSON name and appear once in its object; the field is
// named by its path from the root; what is not a key's fault keeps the answer
// it had.
func TestBodyKeysAreExactAndGivenOnce(t *testing.T) {
	type webhook struct {
		URL    *string `json:"url"`
		Secret *string `json:"secret"`
	}
	type inner struct {
		A string `json:"a"`
	}
	type embedding struct {
		inner
		B      string `json:"b"`
		Hidden string `json:"-"`
	}
	type address struct {
		Zone json.RawMessage `json:"zone"`
	}
	cases := []struct {
		name   string
		target func() any
		body   string
		field  string // "" when the body is accepted
		says   string // in the message
	}{
		{"exact keys", func() any { return &webhook{} }, `{"url":"u","secret":"s"}`, "", ""},
		{"an escaped key is the key", func() any { return &webhook{} }, `{"\u0075rl":"u"}`, "", ""},
		{"wrong case", func() any { return &webhook{} }, `{"URL":"u","Secret":"s"}`, "URL", "did you mean url?"},
		{"key twice", func() any { return &webhook{} }, `{"url":"a","secret":"s","url":"b"}`, "url", "given twice"},
		{"key twice, once escaped", func() any { return &webhook{} }, `{"url":"a","\u0075rl":"b"}`, "url", "given twice"},
		{"a case twin", func() any { return &domain.ZoneSpec{} }, `{"name":"x","NAME":"y"}`, "NAME", "did you mean name?"},
		{"unknown key lists the fields", func() any { return &webhook{} }, `{"url":"u","colour":1}`, "colour", "the fields here are secret, url"},
		{"nested wrong case", func() any { return &domain.ZoneSpec{} },
			`{"name":"x","registration":{"AREA_ID":"A1"}}`, "registration.AREA_ID", "did you mean area_id?"},
		{"nested unknown", func() any { return &domain.ZoneSpec{} },
			`{"name":"x","registration":{"area_id":"A1","foo":1}}`, "registration.foo", "unknown field"},
		{"nested twice", func() any { return &domain.ZoneSpec{} },
			`{"registration":{"area_id":"A1","area_id":"A2"}}`, "registration.area_id", "given twice"},
		{"in an array element", func() any { return &domain.ZoneSpec{} },
			`{"paid_hours":[{"days":["mon"],"from":"09:00","to":"10:00"},{"From":"09:00"}]}`, "paid_hours[1].From", "did you mean from?"},
		{"twice in an array element", func() any { return &domain.ZoneSpec{} },
			`{"paid_hours":[{},{"days":["mon"],"days":["tue"]}]}`, "paid_hours[1].days", "given twice"},
		{"promoted from an embedded struct", func() any { return &embedding{} }, `{"a":"1","b":"2"}`, "", ""},
		{"promoted, wrong case", func() any { return &embedding{} }, `{"A":"1"}`, "A", "did you mean a?"},
		{"a field json ignores", func() any { return &embedding{} }, `{"Hidden":"x"}`, "Hidden", "unknown field"},
		{"twice where any key goes", func() any { return &address{} }, `{"zone":{"x":1,"x":2}}`, "zone.x", "given twice"},
		{"twice in a map", func() any { return &map[string]int{} }, `{"a":1,"a":2}`, "a", "given twice"},
		{"an odd key is quoted", func() any { return &webhook{} }, `{"a.b":1}`, `"a.b"`, "unknown field"},
		{"an empty key is quoted", func() any { return &webhook{} }, `{"":1}`, `""`, "unknown field"},
		{"a long key is cut", func() any { return &webhook{} }, `{"` + strings.Repeat("k", 300) + `":1}`, `"` + strings.Repeat("k", 64) + `"…`, "unknown field"},
		// Not the keys' fault: the answers the decode always gave.
		{"type error, with the element", func() any { return &domain.ZoneSpec{} },
			`{"paid_hours":[{},{"from":3}]}`, "paid_hours[1].from", "want a string"},
		{"type error in a nested array", func() any { return &domain.ZoneSpec{} },
			`{"paid_hours":[{},{"days":["mon",4]}]}`, "paid_hours[1].days[1]", "want a string"},
		{"type error in an object", func() any { return &domain.ZoneSpec{} },
			`{"registration":{"area_id":5}}`, "registration.area_id", "want a string"},
		{"an object for a string: its type", func() any { return &webhook{} }, `{"url":{"a":1,"a":2}}`, "url", "want a string"},
		{"malformed", func() any { return &webhook{} }, `{"url":"a",`, "body", "malformed"},
		{"not an object", func() any { return &webhook{} }, `["url"]`, "body", "want a JSON object"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := intake.DecodeBody([]byte(c.body), c.target())
			if c.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %s", c.body)
			}
			status, code, field := intake.ErrorOf(err)
			if status != http.StatusBadRequest || code != intake.CodeBadRequest || field != c.field {
				t.Fatalf("got %d %s field %q (%v), want 400 %s field %q", status, code, field, err, intake.CodeBadRequest, c.field)
			}
			if !strings.Contains(err.Error(), c.says) || !strings.Contains(err.Error(), c.field) {
				t.Fatalf("message %q does not say %q about %s", err, c.says, c.field)
			}
		})
	}
}

// snapshot is every table a request could change, as text: equal snapshots
// mean nothing was written. It first waits for the outbox rows of the writes
// before it to be handed over (the worker deletes them after the commit that
// answered the client), so that only the requests after it can change it.
func (e *env) snapshot() map[string]string {
	e.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		n, err := e.store.DB.NewSelect().Table("outbox").Count(e.ctx)
		if err != nil {
			e.t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%d outbox rows not handed over", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	out := map[string]string{}
	for _, table := range []string{"zones", "addresses", "registrations", "permits", "permit_years", "sessions",
		"ledger", "requests", "outbox", "favourites", "events", "webhooks", "webhook_deliveries"} {
		var digest string
		if err := e.store.DB.NewRaw(fmt.Sprintf(`SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '')
			FROM %s t`, table)).Scan(e.ctx, &digest); err != nil {
			e.t.Fatal(err)
		}
		out[table] = digest
	}
	return out
}

func (e *env) sameAs(before map[string]string) {
	e.t.Helper()
	for table, digest := range e.snapshot() {
		if digest != before[table] {
			e.t.Errorf("table %s changed: %s, was %s", table, digest, before[table])
		}
	}
}

// Every body of the API, through HTTP: a key in the wrong case, a key given
// twice, an unknown key (nested where the body nests) is 400 naming it by its
// path, and nothing is written, queued or not.
func TestEveryBodyRefusesInexactAndRepeatedKeys(t *testing.T) {
	e := setup(t, options{})
	r := e.resident(10)
	s := e.startSession(r, "KEYS1", nil)
	op, el := e.token(identity.RoleOperator, "op"), e.token(identity.RoleEloket, "eloket")
	secret := secretOf(t, 32)
	e.mustDo("PUT", "/v1/admin/webhooks/keys", op, map[string]any{"url": "https://a.example/", "secret": secret}, http.StatusOK, nil)
	e.mustDo("PUT", "/v1/permits/"+r.permit+"/favourites/AB12CD", r.token, map[string]any{"name": "Oma"}, http.StatusOK, nil)
	end := s.PlannedEndAt.Add(-10 * time.Minute).Format(time.RFC3339)
	zone := `"name":"Test","tariff_cents_per_hour":210,"invalid_weekdays":[]`
	hours := `"paid_hours":[{"days":["mon"],"from":"09:00","to":"17:00"},`
	reg := `"registration":{"area_manager_id":"361","area_id":"ALK01","usage_id":"BEZOEKP"`

	families := []struct {
		family, method, path, token string
		cases                       [][2]string // body, field
	}{
		{"session start", "POST", "/v1/permits/" + r.permit + "/sessions?wait=10s", r.token, [][2]string{
			{`{"Plate":"KEYS2"}`, "Plate"},
			{`{"plate":"KEYS2","PLATE":"KEYS3"}`, "PLATE"},
			{`{"plate":"KEYS2","plate":"KEYS3"}`, "plate"},
			{`{"plate":"KEYS2","start":{"at":"now"}}`, "start"},
		}},
		{"session change", "PATCH", "/v1/sessions/" + s.ID + "?wait=10s", r.token, [][2]string{
			{`{"End_At":"` + end + `"}`, "End_At"},
			{`{"end_at":"` + end + `","end_at":"` + end + `"}`, "end_at"},
			{`{"plate":"KEYS4","plate":"KEYS5"}`, "plate"},
		}},
		{"session stop", "POST", "/v1/sessions/" + s.ID + "/stop?wait=10s", r.token, [][2]string{
			{`{"AT":"` + end + `"}`, "AT"},
			{`{"at":"` + end + `","at":"` + end + `"}`, "at"},
		}},
		{"quote", "POST", "/v1/permits/" + r.permit + "/quotes", r.token, [][2]string{
			{`{"plate":"Q1","Country":"NL"}`, "Country"},
			{`{"plate":"Q1","country":"NL","country":"BE"}`, "country"},
		}},
		{"top-up", "POST", "/v1/permits/" + r.permit + "/topups?wait=10s", r.token, [][2]string{
			{`{"hours":1,"payment_ref":"k1","HOURS":100}`, "HOURS"},
			{`{"hours":1,"hours":100,"payment_ref":"k2"}`, "hours"},
			{`{"hours":1,"Payment_Ref":"k3"}`, "Payment_Ref"},
		}},
		{"issue", "POST", "/v1/permits?wait=10s", el, [][2]string{
			{`{"resident_id":"` + r.id + `","Address_ID":"a"}`, "Address_ID"},
			{`{"resident_id":"x","resident_id":"` + r.id + `","address_id":"a"}`, "resident_id"},
		}},
		{"end", "POST", "/v1/permits/" + r.permit + "/end?wait=10s", el, [][2]string{
			{`{"Reason":"moved"}`, "Reason"},
			{`{"reason":"moved","reason":"died"}`, "reason"},
		}},
		{"favourite", "PUT", "/v1/permits/" + r.permit + "/favourites/AB12CD", r.token, [][2]string{
			{`{"Name":"Opa"}`, "Name"},
			{`{"name":"Opa","NAME":"Oom"}`, "NAME"},
			{`{"name":"Opa","name":"Oom"}`, "name"},
		}},
		{"zone", "PUT", "/v1/admin/zones/TEST", op, [][2]string{
			{`{` + zone + `,"NAME":"x"}`, "NAME"},
			{`{` + zone + `,"tariff_cents_per_hour":1}`, "tariff_cents_per_hour"},
			{`{` + zone + `,` + hours + `{"days":["tue"],"From":"09:00","to":"17:00"}]}`, "paid_hours[1].From"},
			{`{` + zone + `,` + hours + `{"days":["tue"],"days":["wed"],"from":"09:00","to":"17:00"}]}`, "paid_hours[1].days"},
			{`{` + zone + `,` + hours + `{"days":["tue"],"from":"09:00","to":"17:00","foo":1}]}`, "paid_hours[1].foo"},
			{`{` + zone + `,` + reg + `,"AREA_ID":"X"}}`, "registration.AREA_ID"},
			{`{` + zone + `,` + reg + `,"area_id":"X"}}`, "registration.area_id"},
			{`{` + zone + `,` + reg + `,"foo":"X"}}`, "registration.foo"},
		}},
		{"address", "POST", "/v1/admin/addresses", op, [][2]string{
			{`{"address_id":"A-KEYS","Zone":"TEST"}`, "Zone"},
			{`{"address_id":"A-KEYS","zone":"TEST","zone":null}`, "zone"},
			{`{"address_id":"A-KEYS","zone":"TEST","postcode":"1011AB","Postcode":"1011AC"}`, "Postcode"},
		}},
		{"registration", "POST", "/v1/admin/registrations", op, [][2]string{
			{`{"resident_id":"R-KEYS","Address_Id":"x"}`, "Address_Id"},
			{`{"resident_id":"R-KEYS","resident_id":"R-OTHER","address_id":"x"}`, "resident_id"},
		}},
		{"webhook", "PUT", "/v1/admin/webhooks/keys", op, [][2]string{
			{`{"URL":"https://b.example/","Secret":"` + secret + `"}`, "URL"},
			{`{"url":"https://b.example/","secret":"` + secret + `","url":"https://c.example/"}`, "url"},
			{`{"url":"https://b.example/","secret":"` + secret + `","types":["session.started"],"Active":false}`, "Active"},
		}},
	}
	before := e.snapshot()
	for _, f := range families {
		t.Run(f.family, func(t *testing.T) {
			for _, c := range f.cases {
				res := e.in(t).do(f.method, f.path, f.token, c[0])
				wantError(t, res, http.StatusBadRequest, intake.CodeBadRequest, c[1])
			}
		})
	}
	e.in(t).sameAs(before)
}

// Every API route refuses a query parameter it does not read (a typo, a name
// in the wrong case) and one it reads once given twice, naming it; a query
// string it cannot read is 400 as well. Nothing is written.
func TestEveryRouteRefusesUnknownAndRepeatedQueryParameters(t *testing.T) {
	e := setup(t, options{})
	r := e.resident(10)
	s := e.startSession(r, "QUERY1", nil)
	op, el, enf := e.token(identity.RoleOperator, "op"), e.token(identity.RoleEloket, "eloket"), e.token(identity.RoleEnforcement, "scan")
	res, perm, sess := "/v1/residents/"+r.id, "/v1/permits/"+r.permit, "/v1/sessions/"+s.ID
	routes := []struct {
		route, path, token string
		body               any
		params             map[string]string // what it reads, each with a valid value
	}{
		{"POST /v1/permits/{permit_id}/sessions", perm + "/sessions", r.token, map[string]any{"plate": "QUERY2"}, map[string]string{"wait": "1s"}},
		{"POST /v1/sessions/{session_id}/stop", sess + "/stop", r.token, nil, map[string]string{"wait": "1s"}},
		{"GET /v1/sessions/{session_id}", sess, r.token, nil, nil},
		{"PATCH /v1/sessions/{session_id}", sess, r.token, map[string]any{"plate": "QUERY3"}, map[string]string{"wait": "1s"}},
		{"POST /v1/permits/{permit_id}/quotes", perm + "/quotes", r.token, map[string]any{"plate": "QUERY2"}, nil},
		{"GET /v1/permits/{permit_id}/sessions", perm + "/sessions", r.token, nil, map[string]string{"status": "active"}},
		{"GET /v1/permits/{permit_id}", perm, r.token, nil, nil},
		{"POST /v1/permits/{permit_id}/topups", perm + "/topups", r.token, map[string]any{"hours": 1, "payment_ref": "q1"}, map[string]string{"wait": "1s"}},
		{"GET /v1/permits/{permit_id}/ledger", perm + "/ledger", r.token, nil, map[string]string{"limit": "2", "before": "1"}},
		{"GET /v1/permits/{permit_id}/statements", perm + "/statements", r.token, nil, nil},
		{"GET /v1/permits/{permit_id}/favourites", perm + "/favourites", r.token, nil, nil},
		{"PUT /v1/permits/{permit_id}/favourites/{plate}", perm + "/favourites/QUERY4", r.token, map[string]any{"name": "Oma"}, nil},
		{"DELETE /v1/permits/{permit_id}/favourites/{plate}", perm + "/favourites/QUERY4", r.token, nil, nil},
		{"POST /v1/permits", "/v1/permits", el, map[string]any{"resident_id": "R-Q", "address_id": "A-Q"}, map[string]string{"wait": "1s"}},
		{"POST /v1/permits/{permit_id}/end", perm + "/end", el, map[string]any{"reason": "moved"}, map[string]string{"wait": "1s"}},
		{"GET /v1/rights", "/v1/rights", enf, nil, map[string]string{"plate": "QUERY1", "zone": "TEST", "place": "paid", "at": "2026-03-04T12:00:00Z"}},
		{"GET /v1/requests/{request_id}", "/v1/requests/req-q", r.token, nil, nil},
		{"PUT /v1/admin/zones/{code}", "/v1/admin/zones/TEST", op, map[string]any{"name": "Q", "tariff_cents_per_hour": 1}, nil},
		{"POST /v1/admin/addresses", "/v1/admin/addresses", op, map[string]any{"address_id": "A-Q", "zone": "TEST"}, nil},
		{"POST /v1/admin/registrations", "/v1/admin/registrations", op, map[string]any{"resident_id": "R-Q", "address_id": "A-Q"}, nil},
		{"GET /v1/events", "/v1/events", op, nil, map[string]string{"after": "1", "limit": "2", "type": "session.started"}},
		{"GET /v1/admin/webhooks", "/v1/admin/webhooks", op, nil, nil},
		{"PUT /v1/admin/webhooks/{name}", "/v1/admin/webhooks/q", op, map[string]any{"url": "https://q.example/", "secret": secretOf(t, 32)}, nil},
		{"DELETE /v1/admin/webhooks/{name}", "/v1/admin/webhooks/q", op, nil, nil},
		{"GET /v1/residents/{resident_id}/export", res + "/export", op, nil, nil},
		{"POST /v1/residents/{resident_id}/erase", res + "/erase", op, nil, nil},
	}
	// The table is every API route, and reads what each route says it reads.
	declared := e.api.RouteQuery()
	var covered []string
	for _, c := range routes {
		covered = append(covered, c.route)
		reads, ok := declared[c.route]
		if !ok {
			t.Fatalf("%s is not an API route", c.route)
		}
		for name := range reads {
			if _, ok := c.params[name]; !ok {
				t.Errorf("%s reads ?%s=; the table gives it no value", c.route, name)
			}
		}
		if len(reads) != len(c.params) {
			t.Errorf("%s reads %v; the table gives %v", c.route, reads, c.params)
		}
	}
	for route := range declared {
		if !slices.Contains(covered, route) {
			t.Errorf("%s is not in the table", route)
		}
	}

	before := e.snapshot()
	for _, c := range routes {
		t.Run(c.route, func(t *testing.T) {
			e := e.in(t)
			method := strings.Fields(c.route)[0]
			valid := make([]string, 0, len(c.params))
			for name, v := range c.params {
				valid = append(valid, name+"="+v)
			}
			slices.Sort(valid)
			ask := func(extra string, field, says string) {
				t.Helper()
				q := strings.Join(append(slices.Clone(valid), extra), "&")
				res := e.do(method, c.path+"?"+q, c.token, c.body)
				wantError(t, res, http.StatusBadRequest, intake.CodeBadRequest, field)
				if !strings.Contains(string(res.Body), says) {
					t.Fatalf("?%s: the message does not say %q: %s", q, says, res.Body)
				}
			}
			ask("bogus=1", "bogus", "unknown query parameter")
			ask("%zz=1", "query", "malformed")
			ask("a=1;b=2", "query", "malformed")
			for name, v := range c.params {
				wrong := strings.ToUpper(name[:1]) + name[1:]
				ask(wrong+"="+v, wrong, "did you mean "+name+"?")
				if declared[c.route][name] {
					continue // may be repeated
				}
				ask(name+"="+v, name, "given 2 times")
			}
		})
	}
	e.in(t).sameAs(before)

	// The feed, as the colleague met it: a repeat no longer picks the first,
	// a typo no longer reads from 0; type still adds up, repeated or listed.
	wantError(t, e.do("GET", "/v1/events?after=1&after=10", op, nil), http.StatusBadRequest, intake.CodeBadRequest, "after")
	wantError(t, e.do("GET", "/v1/events?limit=1&limit=2", op, nil), http.StatusBadRequest, intake.CodeBadRequest, "limit")
	wantError(t, e.do("GET", "/v1/events?afer=10", op, nil), http.StatusBadRequest, intake.CodeBadRequest, "afer")
	e.mustDo("GET", "/v1/events?type=session.started&type=permit.issued,permit.topped_up&after=0", op, nil, http.StatusOK, nil)
	// A write refused for its query leaves no request behind, not even with
	// the key it was sent under.
	wantError(t, e.do("POST", perm+"/sessions?wait=1s&wait=2s", r.token, map[string]any{"plate": "QUERY5"}, "Idempotency-Key", "q-twice"),
		http.StatusBadRequest, intake.CodeBadRequest, "wait")
	wantError(t, e.do("GET", "/v1/requests/q-twice", r.token, nil), http.StatusNotFound, intake.CodeNotFound)
}
