package domain

import (
	"errors"
	"fmt"
)

// Code is the stable, machine-readable name of a rule rejection. Codes are part of
// the outside contract: they appear in request outcomes and HTTP 422 answers.
type Code string

// Rejection codes of DOMAIN.md.
const (
	CodeNotRegistered          Code = "not_registered"
	CodeAddressNotInZone       Code = "address_not_in_zone"
	CodePermitExistsForAddress Code = "permit_exists_for_address"
	CodeAnnualPurchaseLimit    Code = "annual_purchase_limit"
	CodeAnnualUsageLimit       Code = "annual_usage_limit"
	CodePermitNotActive        Code = "permit_not_active"
	CodeNotFound               Code = "not_found"
	CodeInvalidPlate           Code = "invalid_plate"
	CodeStartTooFarAhead       Code = "start_too_far_ahead"
	CodeStartInPast            Code = "start_in_past"
	CodeInvalidEnd             Code = "invalid_end"
	CodeNotValidOnDay          Code = "not_valid_on_day"
	CodeInsufficientBalance    Code = "insufficient_balance"
	CodePlateAlreadyParked     Code = "plate_already_parked"
	CodeInvalidStopTime        Code = "invalid_stop_time"
	CodeInvalidCountry         Code = "invalid_country"
	CodePaymentRefReused       Code = "payment_ref_reused"
	// CodeInvalidTopup rejects a top-up whose hours are not a positive whole number
	// or whose payment reference is missing.
	CodeInvalidTopup Code = "invalid_topup"
	// CodeInvalidZone rejects a zone definition that does not make sense.
	CodeInvalidZone Code = "invalid_zone"
	// CodeSessionNotOpen rejects a change of a session that is stopped or
	// cancelled, or whose planned end has passed (DOMAIN.md "What residents
	// can do besides start and stop", Change a session).
	CodeSessionNotOpen Code = "session_not_open"
	// CodePlateChangeWindowClosed rejects a plate correction received more than
	// PlateCorrectionWindow after the session's start (DOMAIN.md, Change a
	// session).
	CodePlateChangeWindowClosed Code = "plate_change_window_closed"
	// CodeTooManySessions rejects a start or change that would make more of a
	// permit's sessions overlap than the zone's max_concurrent_sessions
	// (DOMAIN.md, Visitors at once).
	CodeTooManySessions Code = "too_many_sessions"
	// CodeTooManyFavourites rejects a new favourite on a permit that has
	// MaxFavourites already (DOMAIN.md, Favourites).
	CodeTooManyFavourites Code = "too_many_favourites"
	// CodeInvalidFavouriteName rejects a favourite's name that is not 1-40
	// characters of text (DOMAIN.md, Favourites). An addition to DOMAIN.md's
	// list: the rule book gives the length, not the code.
	CodeInvalidFavouriteName Code = "invalid_favourite_name"
	// CodePermitActive refuses to erase a resident who still holds an active
	// permit (DOMAIN.md, Privacy: erase once the permits have ended).
	CodePermitActive Code = "permit_active"
	// CodeBadRequest rejects a request whose form is wrong rather than one that
	// breaks a rule, such as an instant outside the years parkd accepts. The HTTP
	// intake answers it before anything is queued (400); a task enqueued
	// directly by an upstream app gets it as its recorded outcome.
	CodeBadRequest Code = "bad_request"
)

// CodeRequestFailed ends a request that no rule of DOMAIN.md rejects but that
// can never be applied all the same (the database refuses what it would write,
// whatever the number of tries). It is recorded like a rejection, so that the
// requester reads a final outcome (422) instead of waiting on a request that
// is retried forever; the operators find it in the log.
const CodeRequestFailed Code = "request_failed"

// RuleError is a rejection by a rule of the domain. It is final: retrying the same
// request gives the same answer, so workers record it as the outcome and never retry.
type RuleError struct {
	Code    Code
	Message string
}

func (e *RuleError) Error() string { return string(e.Code) + ": " + e.Message }

// Reject builds a RuleError with a formatted message.
func Reject(code Code, format string, args ...any) *RuleError {
	return &RuleError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// AsRule reports whether err is (or wraps) a RuleError and returns it.
func AsRule(err error) (*RuleError, bool) {
	var re *RuleError
	if errors.As(err, &re) {
		return re, true
	}
	return nil, false
}
