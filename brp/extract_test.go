package brp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/parkd/parkd/textfile"
)

// excelCSVUTF8 is what Excel writes as "CSV UTF-8 (Comma delimited)" for a
// sheet with the columns resident_id and address_id, byte for byte: a UTF-8
// byte-order mark, every field quoted, CRLF line ends.
var excelCSVUTF8 = []byte("\xEF\xBB\xBF\"resident_id\",\"address_id\"\r\n\"R1\",\"A1\"\r\n\"R2\",\"A2\"\r\n")

// withBOM encodes s as UTF-16 in the given byte order with a byte-order mark,
// as Excel's "Unicode text" does (little-endian), by the standard library's
// UTF-16 and not by the decoder under test.
func withBOM(order binary.AppendByteOrder, s string) []byte {
	b := order.AppendUint16(nil, 0xFEFF)
	for _, u := range utf16.Encode([]rune(s)) {
		b = order.AppendUint16(b, u)
	}
	return b
}

// rowsOf lists the rows of an extract as "line:resident@address", or
// "line:reason" for a rejected one.
func rowsOf(x *Extract) []string {
	var out []string
	for r := range x.rows() {
		if r.Reason != "" {
			out = append(out, fmt.Sprintf("%d:%s", r.Line, r.Reason))
			continue
		}
		out = append(out, fmt.Sprintf("%d:%s@%s", r.Line, r.Registration.ResidentID, r.Registration.AddressID))
	}
	return out
}

// Every form a municipal system or a spreadsheet writes an extract in reads as
// the same rows, with the lines an editor shows.
func TestParseReadsEveryFormOfExtract(t *testing.T) {
	for _, c := range []struct {
		name     string
		file     []byte
		encoding string
		sep      rune
		rows     string
	}{
		{"UTF-8, LF, comma", []byte("resident_id,address_id\nR1,A1\nR2,A2\n"),
			textfile.UTF8, ',', "[2:R1@A1 3:R2@A2]"},
		{"Excel CSV UTF-8: BOM, quoted header, CRLF", excelCSVUTF8,
			textfile.UTF8BOM, ',', "[2:R1@A1 3:R2@A2]"},
		{"Dutch Excel CSV: semicolons, CRLF, quoted field with a separator in it",
			[]byte("\xEF\xBB\xBFresident_id;address_id;opmerking\r\nR1;A1;\"Zoë; 2e verdieping\"\r\nR2;A2;\r\n"),
			textfile.UTF8BOM, ';', "[2:R1@A1 3:R2@A2]"},
		{"Excel Unicode text: UTF-16LE with BOM, tabs, CRLF",
			withBOM(binary.LittleEndian, "resident_id\taddress_id\r\nZoë\tA1\r\n\"R2\"\t\"A2\"\r\n"),
			textfile.UTF16LE, '\t', "[2:Zoë@A1 3:R2@A2]"},
		{"UTF-16BE with BOM, tabs, LF",
			withBOM(binary.BigEndian, "address_id\tresident_id\nA1\tR1\nA2\tR2\n"),
			textfile.UTF16BE, '\t', "[2:R1@A1 3:R2@A2]"},
		{"UTF-8 without BOM, tabs", []byte("resident_id\taddress_id\nR1\tA1\n"),
			textfile.UTF8, '\t', "[2:R1@A1]"},
		{"CR-only line ends (old Mac exports)", []byte("resident_id,address_id\rR1,A1\rR2,A2\r"),
			textfile.UTF8, ',', "[2:R1@A1 3:R2@A2]"},
		{"mixed line ends, no final line end", []byte("resident_id,address_id\r\nR1,A1\rR2,A2\nR3,A3"),
			textfile.UTF8, ',', "[2:R1@A1 3:R2@A2 4:R3@A3]"},
		{"quoted header with spaces, any case, extra columns, BOM, semicolons",
			[]byte("\xEF\xBB\xBF\"BSN\";\" Address_ID \";\"RESIDENT_ID\"\r\n\"x\";\"A1\";\"R1\"\r\n"),
			textfile.UTF8BOM, ';', "[2:R1@A1]"},
		{"blank lines skipped, lines still counted", []byte("resident_id,address_id\r\n\r\nR1,A1\r\n\r\n"),
			textfile.UTF8, ',', "[3:R1@A1]"},
		{"a quoted field spanning lines: the row starts at its first line",
			[]byte("resident_id;address_id\r\n\"R1\r\nR1\";A1\r\nR2;A2\r\n"),
			textfile.UTF8, ';', "[2:invalid_characters 4:R2@A2]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			x, err := Parse(c.file)
			if err != nil {
				t.Fatal(err)
			}
			if x.Encoding != c.encoding || x.Separator != c.sep {
				t.Errorf("read as %s separated by %q, want %s and %q", x.Encoding, x.Separator, c.encoding, c.sep)
			}
			if got := fmt.Sprint(rowsOf(x)); got != c.rows {
				t.Errorf("rows %s, want %s", got, c.rows)
			}
		})
	}
}

// A file that is not UTF-8 (nor UTF-16 with a byte-order mark) is refused as a
// whole, once, naming where and how to convert it: no row of it is loaded.
func TestParseRefusesAFileThatIsNotUTF8(t *testing.T) {
	for _, c := range []struct {
		name string
		file []byte
		want []string
	}{
		{"Windows-1252 from an old export", []byte("resident_id,address_id\r\nR1,A1\r\nJos\xE9,A2\r\nR\xEB,A3\r\n"),
			[]string{"line 3, byte offset 34:", "0xE9", `"é"`, "iconv -f WINDOWS-1252 -t UTF-8", `"CSV UTF-8"`, "nothing loaded"}},
		{"Windows-1252 in the header, semicolons",
			[]byte("resident_id;address_id;stra\xDFe\nR1;A1;x\n"),
			[]string{"line 1, byte offset 27:", "0xDF", `"ß"`}},
		{"a UTF-8 BOM, then Latin-1: the offset counts the mark",
			[]byte("\xEF\xBB\xBFresident_id,address_id\nR\xFC,A1\n"),
			[]string{"line 2, byte offset 27:", "0xFC", `"ü"`}},
		{"CR-only line ends count as lines", []byte("resident_id,address_id\rR1,A1\rR\x80,A2\r"),
			[]string{"line 3, byte offset 30:", "0x80", `"€"`}},
		{"a byte Windows-1252 does not define either", []byte("resident_id,address_id\nR\x81,A1\n"),
			[]string{"line 2, byte offset 24:", "0x81", "iconv"}},
		{"UTF-16 without a byte-order mark", []byte("r\x00e\x00s\x00,\x00a\x00\n\x00"),
			[]string{"line 1, byte offset 1:", "NUL", "byte-order mark"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			x, err := Parse(c.file)
			if !errors.Is(err, textfile.ErrNotUTF8) {
				t.Fatalf("read %+v, err %v; want it refused as not UTF-8", x, err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not say %q", err, w)
				}
			}
		})
	}
}

// The header decides the separator and the columns; without both columns under
// any separator the file is refused, saying what the header does name.
func TestParseNeedsItsHeader(t *testing.T) {
	for name, c := range map[string]struct{ file, want string }{
		"no address_id":          {"resident_id,adres\nR1,A1\n", `no column address_id (the header names: "resident_id", "adres"`},
		"no columns at all":      {"R1,A1\nR2,A2\n", "no column resident_id and no column address_id"},
		"semicolons, one column": {"resident_id;adres\nR1;A1\n", `no column address_id (the header names: "resident_id", "adres"`},
		"an unknown separator":   {"resident_id|address_id\nR1|A1\n", `the header names: "resident_id|address_id"`},
		"column twice":           {"resident_id,address_id,RESIDENT_ID\nR1,A1,R2\n", "appears twice"},
		"a broken quote":         {"\"resident_id,address_id\nR1,A1\n", "header: "},
		"empty file":             {"", "empty"},
		"only a byte-order mark": {"\xEF\xBB\xBF", "empty"},
		"only blank lines":       {"\r\n\r\n", "empty"},
	} {
		t.Run(name, func(t *testing.T) {
			x, err := Parse([]byte(c.file))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%+v, %v; want an error saying %q", x, err, c.want)
			}
		})
	}
}

// An ID is matched exactly: one with a character nobody sees cannot be recorded.
func TestCheckIDRefusesInvisibleCharacters(t *testing.T) {
	for _, c := range []struct{ id, reason string }{
		{"R1", ""},
		{"Zoë-12 b", ""},
		{"", RejectEmptyField},
		{strings.Repeat("9", 65), RejectTooLong},
		{strings.Repeat("é", 64), ""},
		{"R\n1", RejectCharacters},
		{"R\u200b1", RejectCharacters}, // zero-width space
		{"\ufeffR1", RejectCharacters}, // a byte-order mark mid-file (two files joined)
		{"R\ufffd", RejectCharacters},  // what a lossy conversion leaves
	} {
		if reason, detail := checkID("resident_id", c.id); reason != c.reason || (reason != "" && detail == "") {
			t.Errorf("%q: %q %q, want %q", c.id, reason, detail, c.reason)
		}
	}
}
