package repo

import (
	"errors"
	"fmt"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
)

// Refusal is Postgres refusing a statement for a reason that trying again does
// not remove: the data is wrong for the schema (SQLSTATE class 22, data
// exception), breaks one of its constraints (class 23, integrity constraint
// violation: the constraints the code maps to rules never get this far, see
// ErrPlateParked and ErrPermitExists), the statement itself is wrong (class
// 42, syntax error or access rule violation), or passes one of the server's
// limits (class 54). Everything else (a lost connection, a serialization
// failure, a deadlock, a server shutting down) may pass, and is retried.
type Refusal struct {
	Code  string // the SQLSTATE
	Table string // the table refused, when Postgres names one
}

// AsRefusal finds a Refusal in err's chain.
func AsRefusal(err error) (*Refusal, bool) {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return nil, false
	}
	c := pe.Code
	if pgerrcode.IsDataException(c) || pgerrcode.IsIntegrityConstraintViolation(c) ||
		pgerrcode.IsSyntaxErrororAccessRuleViolation(c) || pgerrcode.IsProgramLimitExceeded(c) {
		return &Refusal{Code: c, Table: pe.TableName}, true
	}
	return nil, false
}

// Conflict reports a refusal that a concurrent writer can cause, and that the
// next attempt may then not meet (it sees the other's row and takes another
// path): a unique or exclusion violation. The caller tries such a refusal a
// few times before taking it as final.
func (r *Refusal) Conflict() bool {
	return r.Code == pgerrcode.UniqueViolation || r.Code == pgerrcode.ExclusionViolation
}

// Message says what was refused, for the requester and operators alike: what
// kind of value, of what kind of record, and the SQLSTATE, never the value
// (which may be a plate) nor the schema's names.
func (r *Refusal) Message() string {
	of := ""
	if n, ok := recordNames[r.Table]; ok {
		of = " of " + n
	}
	return fmt.Sprintf("the database refuses this request for good: "+refusalProblem(r.Code)+" (SQLSTATE %s); sending it again will not help",
		of, r.Code)
}

// recordNames names parkd's tables for people.
var recordNames = map[string]string{
	"zones": "a zone", "addresses": "an address", "registrations": "a registration",
	"permits": "a permit", "permit_years": "an annual statement", "sessions": "a session",
	"ledger": "a ledger entry", "requests": "the request's record", "outbox": "a follow-up task",
}

// refusalProblems are the problems the SQLSTATEs name, as formats whose %s
// takes " of <record>" (or nothing); refusalProblem covers the rest by class.
var refusalProblems = map[string]string{
	pgerrcode.StringDataRightTruncationDataException: "a value%s is too long",
	pgerrcode.NumericValueOutOfRange:                 "a number%s is out of range",
	pgerrcode.DatetimeFieldOverflow:                  "an instant%s is out of range",
	pgerrcode.InvalidTextRepresentation:              "a value%s has the wrong form",
	pgerrcode.InvalidDatetimeFormat:                  "a value%s has the wrong form",
	pgerrcode.CheckViolation:                         "a value%s is outside what is allowed",
	pgerrcode.NotNullViolation:                       "a required value%s is missing",
	pgerrcode.ForeignKeyViolation:                    "a value%s names something that does not exist",
	pgerrcode.UniqueViolation:                        "a value%s conflicts with one already stored",
	pgerrcode.ExclusionViolation:                     "a value%s conflicts with one already stored",
}

func refusalProblem(code string) string {
	if p, ok := refusalProblems[code]; ok {
		return p
	}
	switch {
	case pgerrcode.IsDataException(code):
		return "a value%s is not valid data"
	case pgerrcode.IsIntegrityConstraintViolation(code):
		return "a value%s breaks a rule of the stored data"
	case pgerrcode.IsProgramLimitExceeded(code):
		return "a value%s is beyond a limit of the database"
	}
	return "a statement%s is refused (a fault in parkd, logged for its operators)"
}
