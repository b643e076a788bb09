package brp

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

// world is a test database with a zone and the addresses A1..A3.
func world(t *testing.T) *repo.Store {
	t.Helper()
	ctx := context.Background()
	st, _ := repotest.NewDB(t)
	z, err := domain.CompileZone("IMP", domain.ZoneSpec{Name: "Import", TariffCentsPerHour: 100})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.PutZone(ctx, st.DB, z); err != nil {
		t.Fatal(err)
	}
	zone := "IMP"
	for _, a := range []string{"A1", "A2", "A3"} {
		if err := repo.PutAddress(ctx, st.DB, &repo.Address{ID: a, Zone: &zone}); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func registrations(t *testing.T, st *repo.Store) string {
	t.Helper()
	var rows []repo.Registration
	if err := st.DB.NewSelect().Model(&rows).OrderExpr("resident_id, address_id").Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.ResidentID + "@" + r.AddressID
	}
	return fmt.Sprint(out)
}

func load(t *testing.T, st *repo.Store, file []byte, batch int) Report {
	t.Helper()
	x, err := Parse(file)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Load(context.Background(), st, x, batch)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// The extract Excel writes (byte-order mark, quoted header, CRLF) loads into
// Postgres, and loading it again changes nothing.
func TestLoadExcelExtract(t *testing.T) {
	t.Parallel()
	st := world(t)
	rep := load(t, st, excelCSVUTF8, 0)
	if rep.Rows != 2 || rep.New != 2 || len(rep.Rejected) != 0 {
		t.Fatalf("report %+v, want 2 rows, 2 new", rep)
	}
	if got := registrations(t, st); got != "[R1@A1 R2@A2]" {
		t.Fatalf("registrations %v", got)
	}
	rep = load(t, st, excelCSVUTF8, 0)
	if rep.New != 0 || rep.Existing != 2 {
		t.Fatalf("second load %+v, want 2 already registered", rep)
	}
}

// An extract with every kind of bad row: each is rejected with its line and
// reason, every good row is loaded, and loading the file again changes nothing.
func TestLoadReportsEveryRow(t *testing.T) {
	t.Parallel()
	st := world(t)
	long := strings.Repeat("9", 65)
	file := "\ufeffBSN,Address_ID , resident_id,remark\n" + // BOM, any order, any case, extra columns
		"x,A1,R1,ok\n" + // line 2
		"x,A2,R2,\"quoted, with comma\"\n" + // line 3
		"x,A9,R3,unknown address\n" + // line 4
		"x,A1,,empty resident\n" + // line 5
		"x,A1,R4\n" + // line 6: 3 fields
		"x,A1,R1,duplicate of line 2\n" + // line 7
		"x,A1," + long + ",too long\n" + // line 8
		"x,A2,R\u200b8,zero-width space\n" + // line 9
		"x,A3,\"R5\nspans\",control character\n" + // lines 10-11
		"x,A3,R6,\"bad \"quote\"\n" + // line 12
		"\n" + // blank lines are skipped
		"x, A3 , R7 ,spaces trimmed\n" // line 14
	rep := load(t, st, []byte(file), 2)
	wantRejected := []struct {
		line   int
		reason string
	}{
		{4, RejectUnknownAddress}, {5, RejectEmptyField}, {6, RejectColumnCount}, {7, RejectDuplicate},
		{8, RejectTooLong}, {9, RejectCharacters}, {10, RejectCharacters}, {12, RejectMalformed},
	}
	if len(rep.Rejected) != len(wantRejected) {
		t.Fatalf("rejected %+v, want %v", rep.Rejected, wantRejected)
	}
	for i, w := range wantRejected {
		if r := rep.Rejected[i]; r.Line != w.line || r.Reason != w.reason || r.Detail == "" {
			t.Errorf("rejection %d = %+v, want line %d %s", i, r, w.line, w.reason)
		}
	}
	if rep.Rows != 11 || rep.New != 3 || rep.Existing != 0 {
		t.Fatalf("report %+v, want 11 rows, 3 new", rep)
	}
	if got := registrations(t, st); got != "[R1@A1 R2@A2 R7@A3]" {
		t.Fatalf("registrations %v", got)
	}
	var out bytes.Buffer
	if err := rep.Write(&out, "brp.csv"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "line 4: rejected: unknown_address: address \"A9\" is not in the register\n") ||
		!strings.Contains(out.String(), "line 9: rejected: invalid_characters: resident_id contains U+200B") ||
		!strings.HasSuffix(out.String(), "brp.csv: 11 rows, 3 accepted (3 new, 0 already registered), 8 rejected\n") {
		t.Fatalf("report:\n%s", out.String())
	}

	// Again: idempotent.
	rep = load(t, st, []byte(file), 2)
	if rep.New != 0 || rep.Existing != 3 || len(rep.Rejected) != 8 {
		t.Fatalf("second load %+v, want 3 already registered", rep)
	}
	if got := registrations(t, st); got != "[R1@A1 R2@A2 R7@A3]" {
		t.Fatalf("registrations after a second load %v", got)
	}
}

// Many rows, many batches: the counts add up, and a second run finds them all.
func TestLoadInBatches(t *testing.T) {
	t.Parallel()
	st := world(t)
	var b strings.Builder
	b.WriteString("resident_id;address_id\r\n")
	for i := range 12_345 {
		fmt.Fprintf(&b, "R%d;A%d\r\n", i, i%3+1)
	}
	rep := load(t, st, []byte(b.String()), DefaultBatch)
	if rep.Rows != 12_345 || rep.New != 12_345 || len(rep.Rejected) != 0 {
		t.Fatalf("%+v", rep.Accepted())
	}
	rep = load(t, st, []byte(b.String()), 1000)
	if rep.Existing != 12_345 || rep.New != 0 {
		t.Fatalf("second run: %d new %d existing", rep.New, rep.Existing)
	}
}
