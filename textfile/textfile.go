// Package textfile turns a text file that a person or their tools wrote (a
// spreadsheet export, an old municipal system, a hand-edited JSON file) into
// UTF-8 with one kind of line end, or says clearly why it cannot: parkd reads
// such files in more than one place, and each must accept the same forms and
// refuse the same way.
package textfile

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/transform"
)

// The encodings Decode tells apart.
const (
	UTF8    = "UTF-8"
	UTF8BOM = "UTF-8 with BOM"
	UTF16LE = "UTF-16LE"
	UTF16BE = "UTF-16BE"
)

// ErrNotUTF8 is what a file that is neither UTF-8 nor UTF-16 with a byte-order
// mark is refused with (wrapped in a *NotUTF8Error that says where).
var ErrNotUTF8 = errors.New("the file is not UTF-8")

// NotUTF8Error says where a file stops being UTF-8, and how to convert it.
type NotUTF8Error struct {
	Line   int  // 1-based, counting CRLF, LF and CR as line ends
	Offset int  // 0-based byte offset in the file as stored; -1 when decoded from UTF-16
	Byte   byte // the first byte that is not UTF-8
	NUL    bool // a NUL byte: UTF-16 without a byte-order mark, or not text at all
}

func (e *NotUTF8Error) Error() string {
	where := fmt.Sprintf("line %d", e.Line)
	if e.Offset >= 0 {
		where += fmt.Sprintf(", byte offset %d", e.Offset)
	}
	if e.NUL {
		return where + ": a NUL character: the file is not UTF-8 text (UTF-16 without a byte-order mark " +
			"looks like this); save it as UTF-8, or as UTF-16 with a byte-order mark (Excel: \"Unicode text\")"
	}
	// An old export is almost always Windows-1252 (Latin-1's superset), where a
	// lone high byte is an accented letter: naming it makes the cause obvious.
	msg := fmt.Sprintf("%s: byte 0x%02X is not UTF-8", where, e.Byte)
	if guess, err := charmap.Windows1252.NewDecoder().String(string([]byte{e.Byte})); err == nil && guess != "\uFFFD" {
		msg += fmt.Sprintf(" (in Windows-1252, as old exports write, it is %q)", guess)
	}
	return msg + ": the file must be UTF-8; convert it, e.g. iconv -f WINDOWS-1252 -t UTF-8 OLD > NEW"
}

func (e *NotUTF8Error) Unwrap() error { return ErrNotUTF8 }

// Text is a decoded file.
type Text struct {
	// Bytes is the content as UTF-8 without a byte-order mark, every line end
	// (CRLF, CR) made LF, so that a reader counts lines as an editor shows them.
	Bytes []byte
	// Encoding is the file's encoding as found: UTF8, UTF8BOM, UTF16LE or UTF16BE.
	Encoding string
}

// ReadFile reads and decodes the named file.
func ReadFile(name string) (Text, error) {
	raw, err := os.ReadFile(name)
	if err != nil {
		return Text{}, err
	}
	return Decode(raw)
}

// Decode reads raw as UTF-8, with or without a byte-order mark, or as UTF-16
// (either byte order) with one; anything else that is not valid UTF-8 is
// refused with a *NotUTF8Error naming the first offending byte. A byte-order
// mark decides, as the W3C's encoding standard has it: it is the only reliable
// sign of UTF-16, which is what Excel's "Unicode text" writes.
func Decode(raw []byte) (Text, error) {
	t := Text{Encoding: encodingName(raw)}
	text, _, err := transform.Bytes(unicode.BOMOverride(transform.Nop), raw)
	if err != nil {
		return Text{}, fmt.Errorf("decode %s: %w", t.Encoding, err)
	}
	bom := len(raw) - len(text) // UTF-8 only: its decoding is the mark's removal
	if _, n, err := transform.Bytes(encoding.UTF8Validator, text); err != nil {
		if !errors.Is(err, encoding.ErrInvalidUTF8) {
			return Text{}, fmt.Errorf("decode %s: %w", t.Encoding, err)
		}
		return Text{}, &NotUTF8Error{Line: lineAt(text, n), Offset: bom + n, Byte: text[n]}
	}
	if i := bytes.IndexByte(text, 0); i >= 0 {
		e := &NotUTF8Error{Line: lineAt(text, i), Offset: i, NUL: true}
		if t.Encoding == UTF8 || t.Encoding == UTF8BOM {
			e.Offset += bom
		} else {
			e.Offset = -1 // no single byte of the file to name
		}
		return Text{}, e
	}
	t.Bytes = normaliseLineEnds(text)
	return t, nil
}

func encodingName(raw []byte) string {
	switch {
	case bytes.HasPrefix(raw, []byte{0xEF, 0xBB, 0xBF}):
		return UTF8BOM
	case bytes.HasPrefix(raw, []byte{0xFF, 0xFE}):
		return UTF16LE
	case bytes.HasPrefix(raw, []byte{0xFE, 0xFF}):
		return UTF16BE
	}
	return UTF8
}

// normaliseLineEnds makes CRLF and a lone CR (old Mac exports) LF.
func normaliseLineEnds(b []byte) []byte {
	if bytes.IndexByte(b, '\r') < 0 {
		return b
	}
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\r"), []byte("\n"))
}

// lineAt is the 1-based line of offset i in b.
func lineAt(b []byte, i int) int {
	return bytes.Count(normaliseLineEnds(b[:i]), []byte("\n")) + 1
}
