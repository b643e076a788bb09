package intake

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// MaxBodyBytes bounds a request body (openapi.yaml: larger is 400).
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
// the body as a whole) by its path from the root ("registration.area_id",
// "paid_hours[1].from"). A key must be exactly, case and all, the JSON name of
// one of v's fields, and no key may appear twice in one object (checkKeys):
// encoding/json alone would take "URL" for "url" and let the last of two
// equal keys win, so that what a client meant and what parkd read could differ
// without a word (openapi.yaml: bad input is refused, never guessed).
func decodeBody(b []byte, v any) error {
	if err := checkKeys(b, reflect.TypeOf(v)); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		// encoding/json names a misplaced value by its fields alone
		// ("paid_hours.from"); the walk gives the element too
		// ("paid_hours[1].from"), as the key checks and NUL checks do.
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			if p := pathAt(b, te.Offset); p != "" {
				te.Field = p
			}
		}
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

// checkKeys walks the JSON of b alongside t, the Go type it is about to be
// decoded into, and refuses, as a 400 naming the key by its full path, a key
// that is not exactly (case-sensitively) the JSON name of a field of the
// struct at that place, and a key repeated in one object (anywhere, also
// where no struct says which keys there are: a map, json.RawMessage, a type
// that decodes itself). It judges keys only: malformed JSON, and a value of
// the wrong kind (an object where a string belongs), it leaves to the decode
// that follows, whose errors say that as they always have.
//
// It is a walk over encoding/json's tokens rather than a switch to
// github.com/go-json-experiment/json (case-sensitive, refusing duplicate names
// by default), which would bring a pre-release dependency and other errors
// (JSON Pointers, its own type and UTF-8 errors) to map back onto every
// answer the intake gives: this keeps encoding/json's decoding and every
// existing error as it was, and adds the two refusals in one place.
func checkKeys(b []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // numbers are not looked at; no float rounding work
	err := walkValue(dec, t, "", 0)
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return nil // malformed JSON: the decode names it
}

// maxKeyDepth is encoding/json's own nesting limit: deeper, the decode refuses
// the body anyway.
const maxKeyDepth = 10000

// errStop ends a walk that has nothing more to judge (too deep): the decode
// that follows has the last word.
var errStop = errors.New("stop")

// walkValue reads one JSON value from dec, which t (nil: any, or a type that
// decodes itself) is to receive at path.
func walkValue(dec *json.Decoder, t reflect.Type, path string, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil // a scalar: no keys
	}
	if depth >= maxKeyDepth {
		return errStop
	}
	t = keyTarget(t)
	switch {
	case d == '{' && (t == nil || t.Kind() == reflect.Struct || t.Kind() == reflect.Map):
		return walkObject(dec, t, path, depth)
	case d == '[' && (t == nil || t.Kind() == reflect.Slice || t.Kind() == reflect.Array):
		var elem reflect.Type
		if t != nil {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := walkValue(dec, elem, path+"["+strconv.Itoa(i)+"]", depth+1); err != nil {
				return err
			}
		}
		_, err := dec.Token() // ]
		return err
	}
	// An object or array where t wants something else: the decode's type
	// error says so; its keys are not this walk's to judge.
	return skipRest(dec)
}

// walkObject reads the members of an object whose { has been read.
func walkObject(dec *json.Decoder, t reflect.Type, path string, depth int) error {
	var fields map[string]reflect.Type // the struct's JSON names; nil: any key
	var elem reflect.Type              // a map's values
	switch {
	case t == nil:
	case t.Kind() == reflect.Struct:
		fields = jsonFields(t)
	default:
		elem = t.Elem()
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		at := joinKey(path, key)
		if seen[key] {
			return badRequest(at, "given twice in one object; give each field once")
		}
		seen[key] = true
		vt := elem
		if fields != nil {
			ft, ok := fields[key]
			if !ok {
				return unknownField(at, key, fields)
			}
			vt = ft
		}
		if err := walkValue(dec, vt, at, depth+1); err != nil {
			return err
		}
	}
	_, err := dec.Token() // }
	return err
}

// pathAt is the path of the value of b whose first token ends at byte off
// (where encoding/json's UnmarshalTypeError points: after a scalar, after
// the { or [ of an object or array); "" when there is none, or it is the
// body itself.
func pathAt(b []byte, off int64) string {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	p, _ := valuePath(dec, "", off, 0)
	return p
}

func valuePath(dec *json.Decoder, path string, off int64, depth int) (string, bool) {
	tok, err := dec.Token()
	if err != nil || depth >= maxKeyDepth {
		return "", true
	}
	if dec.InputOffset() == off {
		return path, true
	}
	switch tok {
	case json.Delim('{'):
		for dec.More() {
			key, err := dec.Token()
			if err != nil {
				return "", true
			}
			k, _ := key.(string)
			if p, done := valuePath(dec, joinKey(path, k), off, depth+1); done {
				return p, true
			}
		}
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if p, done := valuePath(dec, path+"["+strconv.Itoa(i)+"]", off, depth+1); done {
				return p, true
			}
		}
	default:
		return "", false
	}
	_, err = dec.Token()
	return "", err != nil
}

// skipRest reads the rest of an object or array whose opening has been read.
func skipRest(dec *json.Decoder) error {
	for open := 1; open > 0; {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			open++
		case json.Delim('}'), json.Delim(']'):
			open--
		}
	}
	return nil
}

// unknownField is the 400 for a key no field of the object has; a key that
// differs from a field's name only in case says which name was meant.
func unknownField(at, key string, fields map[string]reflect.Type) error {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if strings.EqualFold(n, key) {
			return badRequest(at, "unknown field; field names are case-sensitive: did you mean %s?", n)
		}
	}
	return badRequest(at, "unknown field; the fields here are %s", strings.Join(names, ", "))
}

// maxPathLen bounds a path named in an answer.
const maxPathLen = 200

// joinKey is the path of key in the object at path: a.b, or the key quoted
// when it is not a plain name (empty, long, or with characters that would
// make the path ambiguous), so that an answer never echoes odd input raw.
func joinKey(path, key string) string {
	plain := key != "" && len(key) <= 64 && strings.IndexFunc(key, func(r rune) bool {
		return r < 0x21 || r > 0x7e || r == '.' || r == '[' || r == ']' || r == '"'
	}) < 0
	if !plain {
		cut := len(key) > 64
		key = strconv.QuoteToASCII(key[:min(len(key), 64)])
		if cut {
			key += "…"
		}
	}
	if path != "" {
		key = path + "." + key
	}
	if len(key) > maxPathLen {
		key = "…" + key[len(key)-maxPathLen:]
	}
	return key
}

// keyTarget is what decides the keys at a value of type t: t without its
// pointers, or nil when nothing does (an interface, or a type that decodes
// itself, json.RawMessage among them).
func keyTarget(t reflect.Type) reflect.Type {
	if t == nil {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Interface || reflect.PointerTo(t).Implements(unmarshalerType) ||
		reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return nil
	}
	return t
}

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	fieldsCache         sync.Map // reflect.Type → map[string]reflect.Type
)

// jsonFields maps the JSON names encoding/json decodes into a struct of type t
// to their field types: exported fields by their tag's name (or the Go name),
// "-" left out, the fields of an untagged embedded struct promoted unless a
// shallower field has the name. (encoding/json's rule for two promoted fields
// of one name at one depth, which it drops both of, no form of parkd's has.)
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if f, ok := fieldsCache.Load(t); ok {
		return f.(map[string]reflect.Type)
	}
	out := map[string]reflect.Type{}
	promoted := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for n, nt := range jsonFields(ft) {
					if _, ok := promoted[n]; !ok {
						promoted[n] = nt
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	for n, nt := range promoted {
		if _, ok := out[n]; !ok {
			out[n] = nt
		}
	}
	fieldsCache.Store(t, out)
	return out
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
	if err != nil || !offsetInRange(s) {
		return time.Time{}, badRequest(field, "want an RFC 3339 instant such as 2026-03-01T14:00:00+01:00")
	}
	if !domain.InstantInRange(t) {
		return time.Time{}, badRequest(field, "%s is outside %s", truncate(s, 40), domain.InstantRange)
	}
	return repo.Instant(t), nil
}

// offsetInRange says whether an RFC 3339 instant's offset, Z or ±hh:mm, has
// its hours 00-23 and minutes 00-59, as RFC 3339 allows: Go's parser takes
// +24:00 and +00:60, a day and an hour away from what a typo meant.
func offsetInRange(s string) bool {
	if strings.HasSuffix(s, "Z") || len(s) < 6 {
		return true // Z; or too short for an offset, which Parse has refused
	}
	off := s[len(s)-6:]
	if off[0] != '+' && off[0] != '-' || off[3] != ':' {
		return true // not an offset Parse took
	}
	h, m := off[1:3], off[4:6]
	return h <= "23" && m <= "59"
}

// queryParam is a query parameter an endpoint reads (Server.api): every other
// is refused.
type queryParam struct {
	name string
	many bool // may be given more than once, its values adding up
}

// one is a parameter read once; many one that may be repeated.
func one(name string) queryParam  { return queryParam{name: name} }
func many(name string) queryParam { return queryParam{name: name, many: true} }

// waitParam is what every queued write reads: how long to wait (parseWait).
var waitParam = one("wait")

// checkQuery refuses, as a 400 naming it, a query parameter the endpoint does
// not read (names are case-sensitive), one it reads once given more than once,
// and a query string that cannot be read at all. net/url would otherwise let
// the first of two values win and drop what it cannot parse, and an endpoint
// ignore a typo: ?afer=10 would read the feed from 0 (openapi.yaml:
// bad input gets an error naming the problem).
func checkQuery(r *http.Request, params []queryParam) error {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return badRequest("query", "malformed query string: %s", truncate(err.Error(), 80))
	}
	names := make([]string, 0, len(q))
	for n := range q {
		names = append(names, n)
	}
	slices.Sort(names) // the same answer for the same query
	for _, n := range names {
		i := slices.IndexFunc(params, func(p queryParam) bool { return p.name == n })
		if i < 0 {
			return unknownParam(joinKey("", n), n, params)
		}
		if k := len(q[n]); k > 1 && !params[i].many {
			return badRequest(params[i].name, "given %d times; give it once", k)
		}
	}
	return nil
}

// unknownParam is the 400 for a query parameter the endpoint does not read.
func unknownParam(field, name string, params []queryParam) error {
	if len(params) == 0 {
		return badRequest(field, "unknown query parameter; this endpoint reads none")
	}
	known := make([]string, len(params))
	for i, p := range params {
		known[i] = p.name
		if strings.EqualFold(p.name, name) {
			return badRequest(field, "unknown query parameter; names are case-sensitive: did you mean %s?", p.name)
		}
	}
	return badRequest(field, "unknown query parameter; this endpoint reads %s", strings.Join(known, ", "))
}
