package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/uptrace/bun"

	"github.com/parkd/parkd/repo"
)

// importBatch is how many rows of a BRP extract are loaded per transaction: one
// statement each, a few milliseconds, so a big extract never holds a long
// transaction, and a run that is interrupted is simply run again (loading is
// idempotent).
const importBatch = 5000

// maxIDLen is the longest resident or address ID the schema accepts.
const maxIDLen = 64

// Reasons a row of a BRP extract is rejected; stable, for scripts reading the report.
const (
	rejectMalformed      = "malformed_csv"
	rejectInvalidUTF8    = "invalid_utf8"
	rejectColumnCount    = "wrong_column_count"
	rejectEmptyField     = "empty_field"
	rejectTooLong        = "too_long"
	rejectControlChars   = "invalid_characters"
	rejectDuplicate      = "duplicate_in_file"
	rejectUnknownAddress = "unknown_address"
)

// importCmd runs `parkd import registrations FILE.csv`. It exits 0 when the file
// was read to its end, whatever rows it rejected (the report lists them, and the
// good rows are loaded); it fails (exit 1) with nothing loaded when the file
// cannot be opened or its header lacks a column, and with the batches so far
// loaded when Postgres fails midway (run it again: loading is idempotent).
func importCmd(ctx context.Context, cfg config, log *slog.Logger, args []string) error {
	if len(args) != 2 || args[0] != "registrations" {
		return errors.New("usage: parkd import registrations FILE.csv")
	}
	f, err := os.Open(args[1])
	if err != nil {
		return err
	}
	defer f.Close()
	d, err := connect(ctx, cfg, log, false)
	if err != nil {
		return err
	}
	defer d.close()
	if _, err := d.store.Migrate(ctx); err != nil {
		return err
	}
	rep, err := importRegistrations(ctx, d.store, f, importBatch)
	if err != nil {
		return fmt.Errorf("%s: %w", args[1], err)
	}
	if err := rep.write(os.Stdout, args[1]); err != nil {
		return err
	}
	log.Info("registrations imported", "file", args[1], "rows", rep.Rows, "new", rep.New,
		"already_registered", rep.Existing, "rejected", len(rep.Rejected))
	return nil
}

// importReport is what an import did.
type importReport struct {
	Rows     int // data rows read (the header not counted)
	New      int // registrations recorded by this import
	Existing int // registrations recorded before: accepted, nothing changed
	Rejected []rejectedRow
}

// Accepted is how many rows are now recorded registrations.
func (r importReport) Accepted() int { return r.New + r.Existing }

type rejectedRow struct {
	Line   int // line of the file where the row starts
	Reason string
	Detail string
}

func (r importReport) write(w io.Writer, name string) error {
	bw := bufio.NewWriter(w)
	for _, x := range r.Rejected {
		fmt.Fprintf(bw, "line %d: rejected: %s: %s\n", x.Line, x.Reason, x.Detail)
	}
	fmt.Fprintf(bw, "%s: %d rows, %d accepted (%d new, %d already registered), %d rejected\n",
		name, r.Rows, r.Accepted(), r.New, r.Existing, len(r.Rejected))
	return bw.Flush()
}

// importRegistrations loads a BRP extract: CSV, UTF-8, comma-separated, with a
// header row naming at least resident_id and address_id (in any order, any
// case; other columns are ignored). Every row is either loaded or rejected with
// its line and reason; a header without those columns is an error and nothing
// is loaded. The extract adds registrations; it removes none.
func importRegistrations(ctx context.Context, store *repo.Store, r io.Reader, batch int) (importReport, error) {
	var rep importReport
	cr := csv.NewReader(bufio.NewReaderSize(r, 1<<16))
	cr.FieldsPerRecord = -1 // a short or long row is that row's rejection, not the file's
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return rep, errors.New("the file is empty: want a header row naming resident_id and address_id")
	}
	if err != nil {
		return rep, fmt.Errorf("header: %w", err)
	}
	cols, err := headerColumns(header)
	if err != nil {
		return rep, err
	}
	width := len(header)

	seen := map[string]int{} // resident_id NUL address_id -> first line
	var pending []repo.Registration
	var lines []int
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		err := store.InTx(ctx, func(ctx context.Context, tx bun.Tx) error {
			out, err := repo.LoadRegistrations(ctx, tx, pending)
			if err != nil {
				return err
			}
			for i, o := range out {
				switch o {
				case repo.RegistrationNew:
					rep.New++
				case repo.RegistrationExisting:
					rep.Existing++
				case repo.RegistrationUnknownAddress:
					rep.Rejected = append(rep.Rejected, rejectedRow{Line: lines[i], Reason: rejectUnknownAddress,
						Detail: fmt.Sprintf("address %q is not in the register", pending[i].AddressID)})
				}
			}
			return nil
		})
		pending, lines = pending[:0], lines[:0]
		return err
	}

	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			// The reader resumes after the broken record.
			rep.Rows++
			rep.Rejected = append(rep.Rejected, rejectedRow{Line: pe.StartLine, Reason: rejectMalformed, Detail: pe.Err.Error()})
			continue
		}
		if err != nil {
			return rep, fmt.Errorf("read: %w", err)
		}
		rep.Rows++
		line, _ := cr.FieldPos(0)
		reject := func(reason, format string, args ...any) {
			rep.Rejected = append(rep.Rejected, rejectedRow{Line: line, Reason: reason, Detail: fmt.Sprintf(format, args...)})
		}
		if !validUTF8(rec) {
			reject(rejectInvalidUTF8, "the row is not valid UTF-8")
			continue
		}
		if len(rec) != width {
			reject(rejectColumnCount, "%d fields, the header has %d", len(rec), width)
			continue
		}
		reg := repo.Registration{
			ResidentID: strings.TrimSpace(rec[cols.resident]),
			AddressID:  strings.TrimSpace(rec[cols.address]),
		}
		if reason, detail := checkID("resident_id", reg.ResidentID); reason != "" {
			reject(reason, "%s", detail)
			continue
		}
		if reason, detail := checkID("address_id", reg.AddressID); reason != "" {
			reject(reason, "%s", detail)
			continue
		}
		key := reg.ResidentID + "\x00" + reg.AddressID
		if first, dup := seen[key]; dup {
			reject(rejectDuplicate, "the same registration as line %d", first)
			continue
		}
		seen[key] = line
		pending = append(pending, reg)
		lines = append(lines, line)
		if len(pending) >= batch {
			if err := flush(); err != nil {
				return rep, err
			}
		}
	}
	if err := flush(); err != nil {
		return rep, err
	}
	slices.SortStableFunc(rep.Rejected, func(a, b rejectedRow) int { return a.Line - b.Line })
	return rep, nil
}

type importColumns struct{ resident, address int }

// headerColumns finds resident_id and address_id in a header row.
func headerColumns(header []string) (importColumns, error) {
	cols := importColumns{resident: -1, address: -1}
	names := make([]string, len(header))
	for i, h := range header {
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff") // a byte-order mark, as spreadsheets write UTF-8
		}
		names[i] = strings.ToLower(strings.TrimSpace(h))
		var at *int
		switch names[i] {
		case "resident_id":
			at = &cols.resident
		case "address_id":
			at = &cols.address
		default:
			continue
		}
		if *at >= 0 {
			return cols, fmt.Errorf("header: column %s appears twice", names[i])
		}
		*at = i
	}
	var missing []string
	if cols.resident < 0 {
		missing = append(missing, "resident_id")
	}
	if cols.address < 0 {
		missing = append(missing, "address_id")
	}
	if len(missing) == 0 {
		return cols, nil
	}
	msg := fmt.Sprintf("header: no column %s (the header names: %s); nothing loaded",
		strings.Join(missing, " and no column "), strings.Join(quoteAll(names), ", "))
	if len(header) == 1 && strings.ContainsAny(header[0], ";\t") {
		msg += "; the file must be comma-separated"
	}
	return cols, errors.New(msg)
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}

func validUTF8(rec []string) bool {
	for _, f := range rec {
		if !utf8.ValidString(f) {
			return false
		}
	}
	return true
}

// checkID says why an ID cannot be recorded, if it cannot.
func checkID(field, v string) (reason, detail string) {
	switch n := utf8.RuneCountInString(v); {
	case n == 0:
		return rejectEmptyField, field + " is empty"
	case n > maxIDLen:
		return rejectTooLong, fmt.Sprintf("%s is %d characters, at most %d", field, n, maxIDLen)
	}
	if strings.IndexFunc(v, unicode.IsControl) >= 0 {
		return rejectControlChars, field + " contains control characters"
	}
	return "", ""
}
