package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

// importWorld is a test database with a zone and the addresses A1..A3.
func importWorld(t *testing.T) (*repo.Store, string) {
	t.Helper()
	ctx := context.Background()
	st, dsn := repotest.NewDB(t)
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
	return st, dsn
}

func registrations(t *testing.T, st *repo.Store) []string {
	t.Helper()
	var rows []repo.Registration
	if err := st.DB.NewSelect().Model(&rows).OrderExpr("resident_id, address_id").Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.ResidentID + "@" + r.AddressID
	}
	return out
}

// A BRP extract with every kind of bad row: each is rejected with its line and
// reason, every good row is loaded, and loading the file again changes nothing.
func TestImportRegistrationsReportsEveryRow(t *testing.T) {
	st, _ := importWorld(t)
	long := strings.Repeat("9", 65)
	file := "\ufeffBSN,Address_ID , resident_id,remark\n" + // BOM, any order, any case, extra columns
		"x,A1,R1,ok\n" + // line 2
		"x,A2,R2,\"quoted, with comma\"\n" + // line 3
		"x,A9,R3,unknown address\n" + // line 4
		"x,A1,,empty resident\n" + // line 5
		"x,A1,R4\n" + // line 6: 3 fields
		"x,A1,R1,duplicate of line 2\n" + // line 7
		"x,A1," + long + ",too long\n" + // line 8
		"x,A1,R\xff,not UTF-8\n" + // line 9
		"x,A3,\"R5\nspans\",control character\n" + // lines 10-11
		"x,A3,R6,\"bad \"quote\"\n" + // line 12
		"\n" + // blank lines are skipped
		"x, A3 , R7 ,spaces trimmed\n" // line 14
	rep, err := importRegistrations(context.Background(), st, strings.NewReader(file), 2)
	if err != nil {
		t.Fatal(err)
	}
	wantRejected := []struct {
		line   int
		reason string
	}{
		{4, rejectUnknownAddress}, {5, rejectEmptyField}, {6, rejectColumnCount}, {7, rejectDuplicate},
		{8, rejectTooLong}, {9, rejectInvalidUTF8}, {10, rejectControlChars}, {12, rejectMalformed},
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
	if got := registrations(t, st); fmt.Sprint(got) != "[R1@A1 R2@A2 R7@A3]" {
		t.Fatalf("registrations %v", got)
	}
	var out bytes.Buffer
	if err := rep.write(&out, "brp.csv"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "line 4: rejected: unknown_address: address \"A9\" is not in the register\n") ||
		!strings.HasSuffix(out.String(), "brp.csv: 11 rows, 3 accepted (3 new, 0 already registered), 8 rejected\n") {
		t.Fatalf("report:\n%s", out.String())
	}

	// Again: idempotent.
	rep, err = importRegistrations(context.Background(), st, strings.NewReader(file), 2)
	if err != nil || rep.New != 0 || rep.Existing != 3 || len(rep.Rejected) != 8 {
		t.Fatalf("second import %+v %v, want 3 already registered", rep, err)
	}
	if got := registrations(t, st); len(got) != 3 {
		t.Fatalf("registrations after a second import %v", got)
	}
}

func TestImportRegistrationsNeedsItsHeader(t *testing.T) {
	st, _ := importWorld(t)
	for name, c := range map[string]struct{ file, want string }{
		"no address_id":     {"resident_id,adres\nR1,A1\n", "no column address_id"},
		"no columns at all": {"R1,A1\nR2,A2\n", "no column resident_id and no column address_id"},
		"semicolons":        {"resident_id;address_id\nR1;A1\n", "comma-separated"},
		"column twice":      {"resident_id,address_id,RESIDENT_ID\nR1,A1,R2\n", "appears twice"},
		"empty file":        {"", "empty"},
	} {
		_, err := importRegistrations(context.Background(), st, strings.NewReader(c.file), 10)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, c.want)
		}
	}
	if got := registrations(t, st); len(got) != 0 {
		t.Fatalf("a bad header loaded %v", got)
	}
}

// Many rows, many batches: the counts add up, and a second run finds them all.
func TestImportRegistrationsInBatches(t *testing.T) {
	st, _ := importWorld(t)
	var b strings.Builder
	b.WriteString("resident_id,address_id\n")
	for i := range 12_345 {
		fmt.Fprintf(&b, "R%d,A%d\n", i, i%3+1)
	}
	rep, err := importRegistrations(context.Background(), st, strings.NewReader(b.String()), importBatch)
	if err != nil || rep.Rows != 12_345 || rep.New != 12_345 || len(rep.Rejected) != 0 {
		t.Fatalf("%+v %v", rep.Accepted(), err)
	}
	rep, err = importRegistrations(context.Background(), st, strings.NewReader(b.String()), 1000)
	if err != nil || rep.Existing != 12_345 || rep.New != 0 {
		t.Fatalf("second run: %d new %d existing %v", rep.New, rep.Existing, err)
	}
}

// The command itself, as an operator runs it: exit 0 and the report on stdout for
// a file with bad rows; exit 1 and nothing loaded for a file without its header.
func TestImportCommand(t *testing.T) {
	st, dsn := importWorld(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "brp.csv")
	bad := filepath.Join(dir, "noheader.csv")
	if err := os.WriteFile(good, []byte("resident_id,address_id\nR1,A1\nR2,NOPE\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("R1,A1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "PARKD_TEST_RUN_MAIN=1", "PARKD_TEST_ARGS="+strings.Join(args, " "),
			"PARKD_DATABASE_URL="+dsn, "PARKD_STARTUP_WAIT=5s")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return stdout.String() + stderr.String(), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), 0
	}
	out, code := run("import", "registrations", good)
	if code != 0 || !strings.Contains(out, "line 3: rejected: unknown_address") || !strings.Contains(out, "2 rows, 1 accepted (1 new, 0 already registered), 1 rejected") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	out, code = run("import", "registrations", bad)
	if code != 1 || !strings.Contains(out, "no column resident_id") {
		t.Fatalf("file without a header: exit %d:\n%s", code, out)
	}
	if _, code = run("import", "addresses", good); code != 1 {
		t.Fatalf("import of an unknown kind: exit %d", code)
	}
	if got := registrations(t, st); fmt.Sprint(got) != "[R1@A1]" {
		t.Fatalf("registrations %v", got)
	}
}
