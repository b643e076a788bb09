package jobs

import (
	"encoding/json"
	"time"

	"github.com/parkd/parkd/domain"
)

// The answers: what parkd tells its clients about permits, sessions, the
// ledger and requests (intake/openapi.yaml), as the HTTP API writes them and
// as a request's recorded outcome holds them. An upstream app that enqueues a
// request with this package reads its outcome into these types; fields may be
// added, never renamed or removed.
//
// Units everywhere: IDs are decimal strings; minutes are whole minutes of
// parking time (int); money is whole euro cents (int64); instants are UTC, to
// the microsecond (what Postgres keeps), written as RFC 3339.

// Session is a parking session: GET /v1/sessions/{id}, the list of a permit's
// sessions, and the result of session:start and session:stop.
type Session struct {
	ID       string `json:"id"`
	PermitID string `json:"permit_id"`
	Zone     string `json:"zone"`
	// Plate is normalised (1-12 of A-Z and 0-9); where an operator reads it,
	// masked but for its last two characters ("****2X"). Empty once erased
	// (plate retention, DOMAIN.md "Privacy"): JSON null.
	Plate   Plate  `json:"plate"`
	Country string `json:"country"` // ISO 3166-1 alpha-2
	// Status is planned, active, stopped or cancelled, as it stood when the
	// answer was made: a planned session becomes active at StartAt by itself.
	Status       string     `json:"status"`
	StartAt      time.Time  `json:"start_at"`
	PlannedEndAt time.Time  `json:"planned_end_at"`
	EndAt        *time.Time `json:"end_at,omitempty"` // once stopped or cancelled
	// ReservedMinutes is what the session reserved from the balance (StartAt
	// to PlannedEndAt, rounded up to whole minutes); ChargedMinutes is what it
	// was charged once settled (absent while open).
	ReservedMinutes int  `json:"reserved_minutes"`
	ChargedMinutes  *int `json:"charged_minutes,omitempty"`
	// Notices say where the session differs from what was asked (an end cut
	// by the balance or an invalid day, a run past the paid regime); never
	// null.
	Notices []domain.Notice `json:"notices"`
	// Registration is where the session's right stands with the national
	// register (README "Pointing parkd at a register").
	Registration Registration `json:"registration"`
}

// Quote is what a start would do now (POST /v1/permits/{id}/quotes): the
// times and minutes the session would get, what its reservation costs at the
// zone's tariff (minutes × tariff / 60, rounded up), and its notices. A quote
// changes nothing.
type Quote struct {
	StartAt         time.Time       `json:"start_at"`
	PlannedEndAt    time.Time       `json:"planned_end_at"`
	ReservedMinutes int             `json:"reserved_minutes"`
	CostCents       int64           `json:"cost_cents"`
	Notices         []domain.Notice `json:"notices"` // never null
}

// Permit is a visitor permit: GET /v1/permits/{id}, and the result of
// permit:issue, permit:topup and permit:end.
type Permit struct {
	ID         string `json:"id"`
	Zone       string `json:"zone"`
	AddressID  string `json:"address_id"`
	ResidentID string `json:"resident_id"`
	Status     string `json:"status"` // active or ended
	// BalanceMinutes is the parking time left to reserve: what was bought,
	// less what open sessions reserve, settled ones were charged and expired.
	BalanceMinutes int        `json:"balance_minutes"`
	Year           PermitYear `json:"year"`
	EndedAt        *time.Time `json:"ended_at,omitempty"`
}

// PermitYear is a permit's current permit year [StartsAt, EndsAt): the
// minutes bought in it (against the zone's annual purchase limit), charged in
// it, and reserved now by open sessions (charged plus reserved count against
// the annual usage limit).
type PermitYear struct {
	StartsAt         time.Time `json:"starts_at"`
	EndsAt           time.Time `json:"ends_at"`
	PurchasedMinutes int       `json:"purchased_minutes"`
	UsedMinutes      int       `json:"used_minutes"`
	ReservedMinutes  int       `json:"reserved_minutes"`
}

// LedgerEntry is one change of a permit's balance (GET
// /v1/permits/{id}/ledger): the balance is the sum of its entries.
type LedgerEntry struct {
	ID   string `json:"id"`
	Kind string `json:"kind"` // topup, reserve, release, charge or expire
	// Minutes is signed: + to the balance (topup, release), - from it
	// (reserve, charge, expire).
	Minutes    int       `json:"minutes"`
	Cents      *int64    `json:"cents,omitempty"`      // what a top-up cost
	SessionID  *string   `json:"session_id,omitempty"` // the session reserved, released or charged
	RequestID  *string   `json:"request_id,omitempty"` // the request that booked it; absent for auto-stops
	PaymentRef *string   `json:"payment_ref,omitempty"`
	At         time.Time `json:"at"`
}

// Statement is a closed permit year (GET /v1/permits/{id}/statements): what
// was bought and used in [YearStartsAt, YearEndsAt), the balance carried into
// the next year, and the balance above the zone's carry-over cap that expired
// at its end (an expire entry in the ledger).
type Statement struct {
	YearStartsAt       time.Time `json:"year_starts_at"`
	YearEndsAt         time.Time `json:"year_ends_at"`
	PurchasedMinutes   int       `json:"purchased_minutes"`
	UsedMinutes        int       `json:"used_minutes"`
	CarriedOverMinutes int       `json:"carried_over_minutes"`
	ExpiredMinutes     int       `json:"expired_minutes"`
}

// Favourite is a named plate of a permit (GET /v1/permits/{id}/favourites, and
// the answer of a PUT of one). Plate is normalised.
type Favourite struct {
	Plate     string    `json:"plate"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// Outcome is what became of a request (GET /v1/requests/{request_id}). A
// request still pending has no Error and no Result, and the 202 that says so
// carries RequestID and Status alone.
type Outcome struct {
	RequestID string `json:"request_id"`
	Type      string `json:"type,omitempty"` // the task type: session:start, permit:topup...
	Status    string `json:"status"`         // pending, applied or rejected
	// Error, when rejected, is a Rejection.
	Error json.RawMessage `json:"error,omitempty"`
	// Result, when applied, is what the write answered: a Session for
	// session:start and session:stop, a Permit for permit:issue, permit:topup
	// and permit:end.
	Result json.RawMessage `json:"result,omitempty"`
}

// Rejection is why a request was rejected: a rule's code from DOMAIN.md
// (insufficient_balance, plate_already_parked...), request_failed for a
// request no rule refused but that can never be applied, or bad_request for
// a payload the worker could not read; and a message for people.
type Rejection struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Plate is a session's plate in an answer: the empty plate, which is an
// erased one (no plate is empty), is JSON null and null reads back empty.
type Plate string

// MarshalJSON implements json.Marshaler.
func (p Plate) MarshalJSON() ([]byte, error) {
	if p == "" {
		return []byte("null"), nil
	}
	return json.Marshal(string(p))
}

// UnmarshalJSON implements json.Unmarshaler.
func (p *Plate) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*p = ""
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*p = Plate(s)
	return nil
}

// Export is everything parkd holds about a resident (GET
// /v1/residents/{id}/export, DOMAIN.md "Privacy"): permits and sessions as
// the API shows them, and by permit ID each permit's whole ledger (newest
// first), statements and favourites. Never null lists or maps.
type Export struct {
	ResidentID string                   `json:"resident_id"`
	Permits    []Permit                 `json:"permits"`
	Sessions   []Session                `json:"sessions"`
	Ledger     map[string][]LedgerEntry `json:"ledger"`
	Statements map[string][]Statement   `json:"statements"`
	Favourites map[string][]Favourite   `json:"favourites"`
}
