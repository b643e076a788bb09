package intake

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// MaxBodyBytes bounds a request body (CONTRACT.md: larger is 400).
const MaxBodyBytes = 64 << 10

// readBody reads r's body, at most MaxBodyBytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, jsonError(err)
		}
		return nil, badRequest("body", "could not be read")
	}
	return b, nil
}

// decodeJSON reads r's body, one JSON object of at most MaxBodyBytes, into v.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	b, err := readBody(w, r)
	if err != nil {
		return err
	}
	return decodeBody(b, v)
}

// decodeOptionalJSON is decodeJSON for a body whose fields are all optional: no
// body at all means the empty object.
func decodeOptionalJSON(w http.ResponseWriter, r *http.Request, v any) error {
	b, err := readBody(w, r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	return decodeBody(b, v)
}

// decodeBody reads exactly one JSON object into v, refusing unknown fields. Every
// error it returns is a 400 naming the field at fault ("body" when the fault is
// the body as a whole).
func decodeBody(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	// Whatever follows the object is a mistake: two objects, stray text.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("body", "must hold one JSON object and nothing after it")
	}
	// JSON may carry NUL (\u0000); no field of parkd's holds it, and
	// Postgres's text cannot.
	if f := jobs.NULField(v); f != "" {
		return badRequest(f, "contains the NUL character, which is not text")
	}
	return nil
}

// jsonError turns a decoding error of encoding/json into a 400 naming the field.
func jsonError(err error) error {
	var (
		mbe *http.MaxBytesError
		se  *json.SyntaxError
		te  *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &mbe):
		return badRequest("body", "larger than %d KiB", MaxBodyBytes>>10)
	case errors.Is(err, io.EOF):
		return badRequest("body", "empty; want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("body", "malformed JSON: it ends too early")
	case errors.As(err, &se):
		return badRequest("body", "malformed JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return badRequest("body", "want a JSON object, got %s", jsonKind(te.Value))
		}
		return badRequest(field, "want %s, got %s", goKind(te.Type.Kind().String()), jsonKind(te.Value))
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if u, err := strconv.Unquote(name); err == nil {
			name = u
		}
		if name == "" || len(name) > 64 {
			return badRequest("body", "unknown field %q", truncate(name, 64))
		}
		return badRequest(name, "unknown field")
	}
	return badRequest("body", "malformed JSON")
}

// jsonKind names what a JSON value was, as encoding/json reports it ("number
// 3.5", "string"...), without echoing long input back.
func jsonKind(v string) string {
	if len(v) > 40 {
		v = v[:40] + "…"
	}
	return "JSON " + v
}

// goKind names the JSON a Go kind wants.
func goKind(k string) string {
	switch k {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice", "array":
		return "an array"
	case "struct", "map":
		return "an object"
	case "ptr":
		return "a value"
	}
	return "another type"
}

// text checks a string field: encoding/json quietly replaces bytes that are not
// UTF-8 (and lone surrogate escapes) by U+FFFD, so U+FFFD after decoding means
// the client sent something that is not text. No identifier, plate or reason of
// parkd ever contains U+FFFD, nor NUL, which Postgres's text cannot hold.
func text(field, s string) error {
	if strings.ContainsRune(s, utf8.RuneError) || !utf8.ValidString(s) {
		return badRequest(field, "not valid UTF-8 text")
	}
	if strings.ContainsRune(s, 0) {
		return badRequest(field, "contains the NUL character, which is not text")
	}
	return nil
}

// required checks a required string field: present and valid text.
func required(field string, s *string) (string, error) {
	if s == nil {
		return "", badRequest(field, "is required")
	}
	return *s, text(field, *s)
}

// optionalText checks an optional string field.
func optionalText(field string, s *string) error {
	if s == nil {
		return nil
	}
	return text(field, *s)
}

// identifier checks an ID a client names in a body (resident, address): 1–64
// characters, the bound the jobs constructors and the schema apply.
func identifier(field string, s *string) (string, error) {
	v, err := required(field, s)
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(v) == "" || len(v) > 64 {
		return "", badRequest(field, "must be 1-64 characters")
	}
	return v, nil
}

// instant parses an optional RFC 3339 instant in a body field.
func instant(field string, s *string) (*time.Time, error) {
	if s == nil {
		return nil, nil
	}
	t, err := parseInstant(field, *s)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// parseInstant reads every instant a client names, in a body field or a query
// parameter: RFC 3339, in the years parkd accepts (domain.InstantInRange; a
// year-1 or year-9999 instant is a mistake Postgres and JSON cannot even carry),
// at Postgres's precision (microseconds) so that what is stored and what was
// fingerprinted agree. Its errors are 400s naming the field.
func parseInstant(field, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, badRequest(field, "want an RFC 3339 instant such as 2026-03-01T14:00:00+01:00")
	}
	if !domain.InstantInRange(t) {
		return time.Time{}, badRequest(field, "%s is outside %s", truncate(s, 40), domain.InstantRange)
	}
	return repo.Instant(t), nil
}
