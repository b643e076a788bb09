package intake

import (
	"errors"
	"time"
)

// DecodeStart exposes the session start's form decoding to the fuzz test.
func DecodeStart(b []byte) (plate string, startAt, endAt *time.Time, err error) {
	f, err := decodeStart(b)
	return f.Plate, f.StartAt, f.EndAt, err
}

// ErrorOf maps an error as writeError would: status, code and field.
func ErrorOf(err error) (status int, code, field string) {
	ae := toAPIError(err)
	return ae.Status, ae.Code, ae.Field
}

// IsAPIError reports whether err is already an answer (not an unexpected fault).
func IsAPIError(err error) bool {
	var ae *apiError
	return errors.As(err, &ae)
}

// Routes are the mux patterns Handler registered ("GET /v1/rights"); Handler
// must have been called.
func (s *Server) Routes() []string { return s.apiPatterns }

// DecodeBody exposes the one body reader to its unit test.
func DecodeBody(b []byte, v any) error { return decodeBody(b, v) }

// RouteQuery is, for each API route Handler registered, the query parameters
// it reads, each true when it may be repeated.
func (s *Server) RouteQuery() map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for pattern, params := range s.apiQuery {
		out[pattern] = map[string]bool{}
		for _, p := range params {
			out[pattern][p.name] = p.many
		}
	}
	return out
}

// HolderReads counts the reads of a permit's or a session's holder that went
// to Postgres (misses of the holder caches); Handler must have been called.
func (s *Server) HolderReads() int64 { return s.holders.reads.Load() }
