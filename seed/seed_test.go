package seed

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

func write(t *testing.T, content string) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "municipality.json")
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

// balances lists every permit as address=balance minutes, and the ledger's length.
func balances(t *testing.T, st *repo.Store) string {
	t.Helper()
	var rows []string
	if err := st.DB.NewRaw("SELECT address_id || '=' || balance_minutes FROM permits ORDER BY address_id").Scan(context.Background(), &rows); err != nil {
		t.Fatal(err)
	}
	var entries int
	if err := st.DB.NewRaw("SELECT count(*) FROM ledger").Scan(context.Background(), &entries); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%v, %d ledger entries", rows, entries)
}

// A municipality loads through the rules any request meets: a permit the rules
// refuse, or hours past the annual limit, are reported, not forced in; loading
// the file again changes nothing and reports the same permits.
func TestLoadIsIdempotentAndFollowsTheRules(t *testing.T) {
	st, _ := repotest.NewDB(t)
	m, err := ReadFile(write(t, `{
		"zones": {"SEEDZ": {"name": "Seed", "tariff_cents_per_hour": 100}},
		"addresses": [{"address_id": "A1", "zone": "SEEDZ"}, {"address_id": "A2", "zone": "SEEDZ"},
		              {"address_id": "A3", "zone": "SEEDZ"}, {"address_id": "OUT", "zone": null}],
		"registrations": [{"resident_id": "R1", "address_id": "A1"}, {"resident_id": "R3", "address_id": "A3"},
		                  {"resident_id": "R4", "address_id": "OUT"}],
		"permits": [{"resident_id": "R1", "address_id": "A1", "topup_hours": 10},
		            {"resident_id": "R2", "address_id": "A2", "topup_hours": 10},
		            {"resident_id": "R3", "address_id": "A3", "topup_hours": 501},
		            {"resident_id": "R4", "address_id": "OUT"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var first Report
	for i := range 2 {
		rep, err := Load(context.Background(), st, slog.New(slog.DiscardHandler), m)
		if err != nil {
			t.Fatalf("load %d: %v", i+1, err)
		}
		if len(rep.Issued) != 2 || rep.Issued[0].AddressID != "A1" || rep.Issued[0].TopupRefused != "" ||
			rep.Issued[1].AddressID != "A3" || !strings.Contains(rep.Issued[1].TopupRefused, "annual_purchase_limit") {
			t.Errorf("load %d: issued %+v", i+1, rep.Issued)
		}
		if len(rep.Refused) != 2 || !strings.Contains(rep.Refused[0].Outcome, "not_registered") ||
			!strings.Contains(rep.Refused[1].Outcome, "address_not_in_zone") {
			t.Errorf("load %d: refused %+v", i+1, rep.Refused)
		}
		if got, want := balances(t, st), "[A1=600 A3=0], 1 ledger entries"; got != want {
			t.Errorf("load %d: %s, want %s", i+1, got, want)
		}
		if i == 0 {
			first = rep
		} else if fmt.Sprint(rep.Issued) != fmt.Sprint(first.Issued) {
			t.Errorf("the second load issued %+v, the first %+v", rep.Issued, first.Issued)
		}
	}
}

// A seed file is read strictly: a field the format lacks is a misspelling, not
// something to skip; a file that is not UTF-8 says where.
func TestReadFileRefuses(t *testing.T) {
	for content, want := range map[string]string{
		`{"zones": {}, "permit": []}`:                       `unknown field "permit"`,
		`{"addresses": [{"address_id": "A1", "zon": "X"}]}`: `unknown field "zon"`,
		"{\"zones\": {\"Z\": {\"name\": \"Zo\xEB\"}}}":      "byte 0xEB is not UTF-8",
		`{"zones": `: "unexpected EOF",
	} {
		name := write(t, content)
		if _, err := ReadFile(name); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v, want an error naming the file and saying %q", content, err, want)
		}
	}
}
