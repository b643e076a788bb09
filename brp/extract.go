package brp

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"iter"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/textfile"
)

// maxIDLen is the longest resident or address ID the schema accepts.
const maxIDLen = 64

// Reasons a row of an extract is rejected; stable, for scripts reading the report.
const (
	RejectMalformed      = "malformed_csv"
	RejectColumnCount    = "wrong_column_count"
	RejectEmptyField     = "empty_field"
	RejectTooLong        = "too_long"
	RejectCharacters     = "invalid_characters"
	RejectDuplicate      = "duplicate_in_file"
	RejectUnknownAddress = "unknown_address"
)

// separators are the field separators an extract may use, in the order tried:
// the standard's comma, the semicolon that Excel writes as "CSV" where the
// decimal separator is a comma (the Dutch locale), and the tab of Excel's
// "Unicode text".
var separators = []rune{',', ';', '\t'}

// Extract is a BRP extract decoded and its header understood, ready to load.
type Extract struct {
	Encoding  string // as textfile names it: UTF-8, UTF-8 with BOM, UTF-16LE, UTF-16BE
	Separator rune   // ',', ';' or '\t'

	text  []byte
	cols  columns
	width int // fields in the header: every row must have as many
}

// Parse decodes an extract and finds its separator and its resident_id and
// address_id columns in the header row (in any order, any case; other columns
// are ignored). The separator is the one of comma, semicolon and tab with which
// the header names both columns. It refuses the whole file (nothing is to be
// loaded) when it is empty, is not UTF-8 or UTF-16 with a byte-order mark, or
// its header lacks a column; the rows are checked one by one as they are loaded.
func Parse(raw []byte) (*Extract, error) {
	text, err := textfile.Decode(raw)
	if errors.Is(err, textfile.ErrNotUTF8) {
		return nil, fmt.Errorf("%w; or, in Excel, save it as \"CSV UTF-8\"; nothing loaded", err)
	}
	if err != nil {
		return nil, err
	}
	x := &Extract{Encoding: text.Encoding, text: text.Bytes}
	var best struct {
		fields int
		err    error
	}
	for _, sep := range separators {
		x.Separator = sep
		header, err := x.reader().Read()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the file is empty: want a header row naming resident_id and address_id")
		}
		if err == nil {
			if x.cols, err = headerColumns(header); err == nil {
				x.width = len(header)
				return x, nil
			}
		} else {
			err = fmt.Errorf("header: %w", err)
		}
		// Of the separators that fail, the one that splits the header most is
		// the file's: its complaint is the one to show.
		if best.err == nil || len(header) > best.fields {
			best.fields, best.err = len(header), err
		}
	}
	return nil, best.err
}

func (x *Extract) reader() *csv.Reader {
	cr := csv.NewReader(bytes.NewReader(x.text))
	cr.Comma = x.Separator
	cr.FieldsPerRecord = -1 // a short or long row is that row's rejection, not the file's
	cr.ReuseRecord = true
	return cr
}

// dataRow is one data row of an extract: a registration to load, or, with a
// Reason, why it cannot be.
type dataRow struct {
	Line         int // line of the file where the row starts
	Registration repo.Registration
	Reason       string
	Detail       string
}

// rows yields every data row in file order, each checked on its own (a
// registration that repeats an earlier row of the file is rejected as a
// duplicate). Blank lines are no rows.
func (x *Extract) rows() iter.Seq[dataRow] {
	return func(yield func(dataRow) bool) {
		cr := x.reader()
		if _, err := cr.Read(); err != nil {
			return // Parse read it
		}
		seen := map[string]int{} // resident_id NUL address_id -> first line
		for {
			rec, err := cr.Read()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				// A ParseError (a bytes.Reader fails no other way): the
				// reader resumes after the broken record.
				row := dataRow{Reason: RejectMalformed, Detail: err.Error()}
				var pe *csv.ParseError
				if errors.As(err, &pe) {
					row.Line, row.Detail = pe.StartLine, pe.Err.Error()
				}
				if !yield(row) {
					return
				}
				continue
			}
			line, _ := cr.FieldPos(0)
			row := x.check(line, rec, seen)
			if !yield(row) {
				return
			}
		}
	}
}

func (x *Extract) check(line int, rec []string, seen map[string]int) dataRow {
	row := dataRow{Line: line}
	reject := func(reason, format string, args ...any) dataRow {
		row.Reason, row.Detail = reason, fmt.Sprintf(format, args...)
		return row
	}
	if len(rec) != x.width {
		return reject(RejectColumnCount, "%d fields, the header has %d", len(rec), x.width)
	}
	row.Registration = repo.Registration{
		ResidentID: strings.TrimSpace(rec[x.cols.resident]),
		AddressID:  strings.TrimSpace(rec[x.cols.address]),
	}
	if reason, detail := checkID("resident_id", row.Registration.ResidentID); reason != "" {
		return reject(reason, "%s", detail)
	}
	if reason, detail := checkID("address_id", row.Registration.AddressID); reason != "" {
		return reject(reason, "%s", detail)
	}
	key := row.Registration.ResidentID + "\x00" + row.Registration.AddressID
	if first, dup := seen[key]; dup {
		return reject(RejectDuplicate, "the same registration as line %d", first)
	}
	seen[key] = line
	return row
}

type columns struct{ resident, address int }

// headerColumns finds resident_id and address_id in a header row.
func headerColumns(header []string) (columns, error) {
	cols := columns{resident: -1, address: -1}
	names := make([]string, len(header))
	for i, h := range header {
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
	return cols, fmt.Errorf("header: no column %s (the header names: %s; separators tried: comma, semicolon, tab); nothing loaded",
		strings.Join(missing, " and no column "), strings.Join(quoteAll(names), ", "))
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}

// checkID says why an ID cannot be recorded, if it cannot. An ID is matched
// exactly, so a character no one can see (a control or format character, such
// as a zero-width space or a byte-order mark pasted mid-file) or the mark of a
// lossy conversion (U+FFFD) would make a registration that never matches.
func checkID(field, v string) (reason, detail string) {
	switch n := utf8.RuneCountInString(v); {
	case n == 0:
		return RejectEmptyField, field + " is empty"
	case n > maxIDLen:
		return RejectTooLong, fmt.Sprintf("%s is %d characters, at most %d", field, n, maxIDLen)
	}
	if i := strings.IndexFunc(v, invisible); i >= 0 {
		r, _ := utf8.DecodeRuneInString(v[i:])
		return RejectCharacters, fmt.Sprintf("%s contains %U, a control, invisible or replacement character", field, r)
	}
	return "", ""
}

func invisible(r rune) bool { return !unicode.IsGraphic(r) || r == utf8.RuneError }
