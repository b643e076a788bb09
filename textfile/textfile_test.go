package textfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDecodeReadsUTF8AndUTF16WithBOM(t *testing.T) {
	for _, c := range []struct {
		name, raw, encoding, text string
	}{
		{"UTF-8", "{\"a\": \"Zoë\"}\n", UTF8, "{\"a\": \"Zoë\"}\n"},
		{"UTF-8 with BOM", "\xEF\xBB\xBF{\"a\": \"Zoë\"}", UTF8BOM, "{\"a\": \"Zoë\"}"},
		{"UTF-16LE with BOM", "\xFF\xFE{\x00\"\x00a\x00\"\x00:\x00 \x00\"\x00Z\x00o\x00\xEB\x00\"\x00}\x00", UTF16LE, "{\"a\": \"Zoë\"}"},
		{"UTF-16BE with BOM", "\xFE\xFF\x00Z\x00o\x00\xEB\x00\r\x00\n", UTF16BE, "Zoë\n"},
		{"UTF-16LE, a character outside the BMP", "\xFF\xFE\x3D\xD8\x97\xDE", UTF16LE, "🚗"},
		{"CRLF, CR and LF all become LF", "a\r\nb\rc\nd\r", UTF8, "a\nb\nc\nd\n"},
		{"an empty file", "", UTF8, ""},
		{"only a BOM", "\xEF\xBB\xBF", UTF8BOM, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Decode([]byte(c.raw))
			if err != nil {
				t.Fatal(err)
			}
			if got.Encoding != c.encoding || string(got.Bytes) != c.text {
				t.Errorf("%s %q, want %s %q", got.Encoding, got.Bytes, c.encoding, c.text)
			}
		})
	}
}

func TestDecodeRefusesWhatIsNotUTF8(t *testing.T) {
	for _, c := range []struct {
		name, raw    string
		line, offset int
		want         string
	}{
		{"Latin-1 on the first line", "caf\xE9\n", 1, 3, `byte 0xE9 is not UTF-8 (in Windows-1252, as old exports write, it is "é")`},
		{"after CRLF lines", "a\r\nb\r\nc\xE9", 3, 7, "0xE9"},
		{"after a BOM the offset is the file's", "\xEF\xBB\xBFa\n\xE9", 2, 5, "0xE9"},
		{"a truncated UTF-8 sequence", "ab\xC3", 1, 2, "0xC3"},
		{"a NUL: UTF-16 without a mark", "a\x00b\x00", 1, 1, "NUL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode([]byte(c.raw))
			var ne *NotUTF8Error
			if !errors.As(err, &ne) || !errors.Is(err, ErrNotUTF8) {
				t.Fatalf("%v, want a NotUTF8Error", err)
			}
			if ne.Line != c.line || ne.Offset != c.offset || !strings.Contains(err.Error(), c.want) {
				t.Errorf("line %d offset %d %q, want line %d offset %d saying %q", ne.Line, ne.Offset, err, c.line, c.offset, c.want)
			}
		})
	}
}

func TestReadFile(t *testing.T) {
	name := filepath.Join(t.TempDir(), "f.json")
	if err := os.WriteFile(name, []byte("\xEF\xBB\xBF{}\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(name)
	if err != nil || string(got.Bytes) != "{}\n" || got.Encoding != UTF8BOM {
		t.Fatalf("%q %s %v", got.Bytes, got.Encoding, err)
	}
	if _, err := ReadFile(name + ".missing"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a missing file: %v", err)
	}
}
