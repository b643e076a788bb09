package intake_test

import (
	"context"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/parkd/parkd/intake"
)

// staticDocument is the one operation that cannot answer a 4XX (its lint
// warning is ignored in .redocly.lint-ignore.yaml, which says why).
const staticDocument = "GET /v1/openapi.yaml"

// TestOpenAPIDocumentIsComplete checks what `redocly lint` checks by hand (the
// document is valid; every operation has a unique, URL-safe operationId, a
// summary, tags that are declared, a 4XX; every response a description; info
// has a license and a contact; there are servers), what the contract adds
// (every status the server can give, with the headers it sends), and that the
// document and the intake's routes agree both ways.
func TestOpenAPIDocumentIsComplete(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(intake.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not valid: %v", err)
	}
	if doc.Info.License == nil || doc.Info.License.Name == "" || doc.Info.Contact == nil {
		t.Errorf("info: want a license and a contact, got %+v, %+v", doc.Info.License, doc.Info.Contact)
	}
	if len(doc.Servers) == 0 {
		t.Error("no servers")
	}
	tags := map[string]bool{}
	for _, tag := range doc.Tags {
		if tag.Description == "" {
			t.Errorf("tag %s has no description", tag.Name)
		}
		tags[tag.Name] = true
	}

	urlSafe := regexp.MustCompile(`^[A-Za-z0-9_.~-]+$`)
	ids := map[string]string{}
	var documented []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			at := method + " " + path
			documented = append(documented, at)
			switch prev, dup := ids[op.OperationID]; {
			case op.OperationID == "":
				t.Errorf("%s: no operationId", at)
			case dup:
				t.Errorf("%s: operationId %s is %s's too", at, op.OperationID, prev)
			case !urlSafe.MatchString(op.OperationID):
				t.Errorf("%s: operationId %q is not URL-safe", at, op.OperationID)
			}
			ids[op.OperationID] = at
			if op.Summary == "" {
				t.Errorf("%s: no summary", at)
			}
			if len(op.Tags) == 0 {
				t.Errorf("%s: no tags", at)
			}
			for _, tag := range op.Tags {
				if !tags[tag] {
					t.Errorf("%s: tag %s is not declared", at, tag)
				}
			}
			checkResponses(t, at, op, item)
		}
	}

	// Handler registers every route; Routes lists what it registered.
	api := &intake.Server{Secret: []byte("k"), Log: quietLog()}
	api.Handler()
	routes := api.Routes()
	if len(routes) < 10 {
		t.Fatalf("the intake registered %d routes: %v", len(routes), routes)
	}
	for _, r := range routes {
		if !slices.Contains(documented, r) {
			t.Errorf("the intake serves %s, which openapi.yaml does not describe", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(routes, d) {
			t.Errorf("openapi.yaml describes %s, which the intake does not serve", d)
		}
	}

	// Every query parameter an endpoint reads is documented for it, and
	// nothing else (the endpoint refuses every other); one it lets repeat
	// says so, and one it reads once is no array.
	query := api.RouteQuery()
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			at := method + " " + path
			reads, served := query[at]
			if !served {
				continue // not an API route (probes, the document itself)
			}
			documentedQuery := map[string]*openapi3.Parameter{}
			for _, p := range append(item.Parameters, op.Parameters...) {
				if p.Value != nil && p.Value.In == "query" {
					documentedQuery[p.Value.Name] = p.Value
				}
			}
			for name, repeatable := range reads {
				p := documentedQuery[name]
				switch {
				case p == nil:
					t.Errorf("%s reads ?%s=, which openapi.yaml does not list for it", at, name)
				case repeatable && !strings.Contains(p.Description, "repeated"):
					t.Errorf("%s: ?%s= may be repeated; its description does not say so", at, name)
				case !repeatable && p.Schema != nil && p.Schema.Value != nil && p.Schema.Value.Type.Is("array"):
					t.Errorf("%s: ?%s= is read once; openapi.yaml makes it an array", at, name)
				}
			}
			for name := range documentedQuery {
				if _, ok := reads[name]; !ok {
					t.Errorf("openapi.yaml lists ?%s= for %s, which refuses it as unknown", name, at)
				}
			}
		}
	}
}

// checkResponses: every response has a description; every status the server
// gives for this kind of operation is there, with the headers it sends.
func checkResponses(t *testing.T, at string, op *openapi3.Operation, item *openapi3.PathItem) {
	t.Helper()
	has4xx := false
	for code, ref := range op.Responses.Map() {
		if ref.Value == nil || ref.Value.Description == nil || strings.TrimSpace(*ref.Value.Description) == "" {
			t.Errorf("%s: response %s has no description", at, code)
		}
		if n, err := strconv.Atoi(code); err == nil && n >= 400 && n < 500 || code == "4XX" {
			has4xx = true
		}
	}
	if !has4xx && at != staticDocument {
		t.Errorf("%s: no 4XX response", at)
	}

	authenticated := op.Security == nil || len(*op.Security) > 0 // nil: the document's bearer
	write := slices.ContainsFunc(append(item.Parameters, op.Parameters...), func(p *openapi3.ParameterRef) bool {
		return p.Value != nil && p.Value.In == "header" && p.Value.Name == "Idempotency-Key"
	})
	var want []string
	if authenticated {
		// api(): authentication, the role, the rate limit, a query parameter
		// the endpoint does not read or one given twice; every handler may
		// meet an unreachable Postgres or Redis, or a fault of parkd's.
		want = append(want, "400", "401", "403", "429", "500", "503")
	}
	if write {
		// submit: pending, a reused request ID, a rule, not_found of a rule.
		want = append(want, "202", "400", "404", "409", "422")
	}
	for _, code := range want {
		if op.Responses.Value(code) == nil {
			t.Errorf("%s: the server can answer %s; openapi.yaml does not say so", at, code)
		}
	}

	headers := map[string]string{"202": "Location", "401": "WWW-Authenticate", "429": "Retry-After"}
	if authenticated {
		headers["503"] = "Retry-After" // writeError's; /readyz's own 503 is its body alone
	}
	if write {
		for code := range op.Responses.Map() {
			if code == "200" || code == "201" {
				headers[code] = "X-Request-Id"
			}
		}
	}
	for code, name := range headers {
		r := op.Responses.Value(code)
		if r == nil {
			continue
		}
		if h := r.Value.Headers[name]; h == nil || h.Value == nil || !h.Value.Required {
			t.Errorf("%s: response %s does not document its header %s as always sent", at, code, name)
		}
	}
}
