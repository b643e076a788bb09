package intake

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/repo"
)

// Error codes of openapi.yaml that are not rule codes.
const (
	CodeBadRequest          = string(domain.CodeBadRequest)
	CodeUnauthenticated     = "unauthenticated"
	CodeForbidden           = "forbidden"
	CodeNotFound            = "not_found"
	CodeMethodNotAllowed    = "method_not_allowed"
	CodeIdempotencyConflict = "idempotency_conflict"
	CodeRateLimited         = "rate_limited"
	CodeUnavailable         = "unavailable"
	CodeInternal            = "internal"
)

// RetryUnavailable is the Retry-After, in seconds, of a 503: long enough for a
// restarting Postgres or Redis, or a failover, not to be hammered by every
// client at once; short enough that a blip costs a user little.
const RetryUnavailable = 5

// apiError is an answer that is not a success: its status, its stable code, a
// message for people and, for a bad request, the field at fault. Handlers return
// errors; writeError turns every one of them into an apiError, in one place.
type apiError struct {
	Status  int
	Code    string
	Message string
	Field   string
	cause   error // logged, never shown
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }
func (e *apiError) Unwrap() error { return e.cause }

// badRequest names the field at fault (or "body" for the body as a whole) in the
// message too, so that a client that only shows messages still says what is wrong.
func badRequest(field, format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: CodeBadRequest, Field: field,
		Message: field + ": " + fmt.Sprintf(format, args...)}
}

func errUnauthenticated(msg string) *apiError {
	return &apiError{Status: http.StatusUnauthorized, Code: CodeUnauthenticated, Message: msg}
}

func errForbidden(msg string) *apiError {
	return &apiError{Status: http.StatusForbidden, Code: CodeForbidden, Message: msg}
}

func errNotFound(format string, args ...any) *apiError {
	return &apiError{Status: http.StatusNotFound, Code: CodeNotFound, Message: fmt.Sprintf(format, args...)}
}

func errUnavailable(what string, cause error) *apiError {
	return &apiError{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
		Message: what + " is unavailable; try again shortly", cause: cause}
}

// toAPIError maps any error a handler returns to its answer. Rule rejections are
// 422 with the rule's code, except not_found, which is what 404 says already, and
// bad_request, which is what 400 says; an
// unreachable Postgres is 503; anything unexpected is 500 with a generic message
// (the cause goes to the log, never to the client).
func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	if rule, ok := domain.AsRule(err); ok {
		switch rule.Code {
		case domain.CodeNotFound:
			return &apiError{Status: http.StatusNotFound, Code: CodeNotFound, Message: rule.Message}
		case domain.CodeBadRequest:
			// A task's payload refused by the worker (enqueued through package
			// jobs), answered again under its request ID.
			return &apiError{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: rule.Message}
		}
		return &apiError{Status: http.StatusUnprocessableEntity, Code: string(rule.Code), Message: rule.Message}
	}
	if errors.Is(err, repo.ErrNotFound) {
		return &apiError{Status: http.StatusNotFound, Code: CodeNotFound, Message: "not found"}
	}
	if repo.IsUnavailable(err) {
		return errUnavailable("the database", err)
	}
	// A write the database refuses for good (a direct write: an admin
	// endpoint, a favourite) is what a queued request records as
	// request_failed: the same answer, not a 500.
	if ref, ok := repo.AsRefusal(err); ok {
		return &apiError{Status: http.StatusUnprocessableEntity, Code: string(domain.CodeRequestFailed),
			Message: ref.Message(), cause: err}
	}
	return &apiError{Status: http.StatusInternalServerError, Code: CodeInternal,
		Message: "internal error; it has been logged", cause: err}
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// writeError answers err. It is the only place where errors become HTTP.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := toAPIError(err)
	log := s.logger(r)
	switch {
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
		log.Info("request abandoned by the client", "err", err)
	case ae.Status >= 500:
		log.Error("request failed", "status", ae.Status, "code", ae.Code, "err", err)
	case ae.Code == string(domain.CodeRequestFailed):
		log.Warn("the database refused a write for good", "err", err)
	}
	switch ae.Status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="parkd"`)
	case http.StatusTooManyRequests:
		// PARKD_RATE_LIMIT is at least one request a second: a token is back
		// within a second.
		w.Header().Set("Retry-After", "1")
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", strconv.Itoa(RetryUnavailable))
	}
	writeJSON(w, ae.Status, errorBody{Error: errorDetail{Code: ae.Code, Message: ae.Message, Field: ae.Field}})
}
