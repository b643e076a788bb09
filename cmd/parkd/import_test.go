package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

// registrations lists a database's registrations as resident@address.
func registrations(t *testing.T, st *repo.Store) string {
	t.Helper()
	var rows []string
	if err := st.DB.NewRaw("SELECT resident_id || '@' || address_id FROM registrations ORDER BY 1").Scan(context.Background(), &rows); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(rows)
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// The command itself, as an operator runs it: exit 0 and the report on stdout for
// a file with bad rows, and for the extract Excel writes (byte-order mark,
// quoted header, CRLF); exit 1 and nothing loaded for a file without its
// header, or one that is not UTF-8, which is said once with the fix.
func TestImportCommand(t *testing.T) {
	st, dsn := repotest.NewDB(t)
	dir := writeFiles(t, map[string]string{
		"world.json": `{"zones": {"IMP": {"name": "Import", "tariff_cents_per_hour": 100}},
			"addresses": [{"address_id": "A1", "zone": "IMP"}, {"address_id": "A2", "zone": "IMP"}, {"address_id": "A3", "zone": "IMP"}]}`,
		"brp.csv":      "resident_id,address_id\nR1,A1\nR2,NOPE\n",
		"noheader.csv": "R1,A1\n",
		"excel.csv":    "\xEF\xBB\xBF\"resident_id\",\"address_id\"\r\n\"R3\",\"A2\"\r\n\"R4\",\"A3\"\r\n",
		"latin1.csv":   "resident_id;address_id\r\nR5;A1\r\nJos\xE9;A2\r\n",
	})
	env := []string{"PARKD_DATABASE_URL=" + dsn, "PARKD_STARTUP_WAIT=5s"}
	run := func(args ...string) (string, int) {
		t.Helper()
		stdout, stderr, code := runParkd(t, env, args...)
		return stdout + stderr, code
	}
	if out, code := run("seed", filepath.Join(dir, "world.json")); code != 0 {
		t.Fatalf("seed: exit %d:\n%s", code, out)
	}
	out, code := run("import", "registrations", filepath.Join(dir, "brp.csv"))
	if code != 0 || !strings.Contains(out, "line 3: rejected: unknown_address") || !strings.Contains(out, "2 rows, 1 accepted (1 new, 0 already registered), 1 rejected") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	out, code = run("import", "registrations", filepath.Join(dir, "excel.csv"))
	if code != 0 || !strings.Contains(out, "excel.csv: 2 rows, 2 accepted (2 new, 0 already registered), 0 rejected") {
		t.Fatalf("the extract Excel writes: exit %d:\n%s", code, out)
	}
	out, code = run("import", "registrations", filepath.Join(dir, "noheader.csv"))
	if code != 1 || !strings.Contains(out, "no column resident_id") {
		t.Fatalf("file without a header: exit %d:\n%s", code, out)
	}
	out, code = run("import", "registrations", filepath.Join(dir, "latin1.csv"))
	if code != 1 || strings.Count(out, "not UTF-8") != 1 || !strings.Contains(out, "line 3, byte offset 34: byte 0xE9") ||
		!strings.Contains(out, "iconv -f WINDOWS-1252 -t UTF-8") || !strings.Contains(out, "nothing loaded") {
		t.Fatalf("a Windows-1252 file: exit %d:\n%s", code, out)
	}
	if _, code = run("import", "addresses", filepath.Join(dir, "brp.csv")); code != 2 {
		t.Fatalf("import of an unknown kind: exit %d", code)
	}
	if got := registrations(t, st); got != "[R1@A1 R3@A2 R4@A3]" {
		t.Fatalf("registrations %v", got)
	}
}

// `parkd seed FILE` reads what editors write: JSON with a UTF-8 byte-order
// mark, or as UTF-16 (Notepad's "Unicode"); a file that is not UTF-8 is
// refused with where and how to convert it, and seeds nothing.
func TestSeedReadsWhatEditorsWrite(t *testing.T) {
	st, dsn := repotest.NewDB(t)
	seed := func(code string) string {
		return `{"zones": {"` + code + `": {"name": "Zoë", "tariff_cents_per_hour": 100}}}` + "\r\n"
	}
	utf16le := func(s string) string {
		var b strings.Builder
		b.WriteString("\xFF\xFE")
		for _, r := range s { // the seeds here are within Latin-1
			b.WriteByte(byte(r))
			b.WriteByte(0)
		}
		return b.String()
	}
	dir := writeFiles(t, map[string]string{
		"bom.json":    "\xEF\xBB\xBF" + seed("BOM"),
		"utf16.json":  utf16le(seed("UTF16")),
		"latin1.json": strings.ReplaceAll(seed("LATIN"), "ë", "\xEB"),
	})
	env := []string{"PARKD_DATABASE_URL=" + dsn, "PARKD_STARTUP_WAIT=5s"}
	for _, f := range []string{"bom.json", "utf16.json"} {
		if stdout, stderr, code := runParkd(t, env, "seed", filepath.Join(dir, f)); code != 0 {
			t.Errorf("%s: exit %d:\n%s%s", f, code, stdout, tail(stderr, 10))
		}
	}
	stdout, stderr, code := runParkd(t, env, "seed", filepath.Join(dir, "latin1.json"))
	if code != 1 || !strings.Contains(stderr, "line 1, byte offset 32: byte 0xEB is not UTF-8") {
		t.Errorf("latin1.json: exit %d:\n%s%s", code, stdout, tail(stderr, 10))
	}
	var names []string
	if err := st.DB.NewRaw("SELECT code || ':' || name FROM zones ORDER BY code").Scan(context.Background(), &names); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(names) != "[BOM:Zoë UTF16:Zoë]" {
		t.Fatalf("zones %v", names)
	}
}
