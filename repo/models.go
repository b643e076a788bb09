package repo

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/uptrace/bun"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
)

// Zone is a row of zones.
type Zone struct {
	bun.BaseModel `bun:"table:zones"`

	Code                     string              `bun:"code,pk"`
	Name                     string              `bun:"name"`
	TimeZone                 string              `bun:"time_zone"`
	TariffCentsPerHour       int64               `bun:"tariff_cents_per_hour"`
	PaidHours                []domain.PaidWindow `bun:"paid_hours,type:jsonb"`
	InvalidWeekdays          []string            `bun:"invalid_weekdays,type:jsonb"`
	MaxSessionMinutes        int                 `bun:"max_session_minutes"`
	MaxPlanAheadDays         int                 `bun:"max_plan_ahead_days"`
	AnnualPurchaseLimitHours int                 `bun:"annual_purchase_limit_hours"`
	AnnualUsageLimitHours    int                 `bun:"annual_usage_limit_hours"`
	YearStarts               string              `bun:"year_starts"`
	UpdatedAt                time.Time           `bun:"updated_at"`
}

// Spec returns the zone as its operator wrote it.
func (z *Zone) Spec() domain.ZoneSpec {
	return domain.ZoneSpec{
		Name: z.Name, TimeZone: z.TimeZone, TariffCentsPerHour: z.TariffCentsPerHour,
		PaidHours: z.PaidHours, InvalidWeekdays: z.InvalidWeekdays,
		MaxSessionMinutes: z.MaxSessionMinutes, MaxPlanAheadDays: z.MaxPlanAheadDays,
		AnnualPurchaseLimitHours: z.AnnualPurchaseLimitHours, AnnualUsageLimitHours: z.AnnualUsageLimitHours,
		YearStarts: z.YearStarts,
	}
}

// Address is a row of addresses.
type Address struct {
	bun.BaseModel `bun:"table:addresses"`

	ID          string  `bun:"id,pk"`
	Zone        *string `bun:"zone"`
	Postcode    *string `bun:"postcode"`
	HouseNumber *string `bun:"house_number"`
}

// Registration is a row of the BRP extract.
type Registration struct {
	bun.BaseModel `bun:"table:registrations"`

	ResidentID string `bun:"resident_id,pk"`
	AddressID  string `bun:"address_id,pk"`
}

// Permit is a row of permits, with its current permit year's counters.
type Permit struct {
	bun.BaseModel `bun:"table:permits"`

	ID               int64      `bun:"id,pk,autoincrement"`
	ResidentID       string     `bun:"resident_id"`
	AddressID        string     `bun:"address_id"`
	Zone             string     `bun:"zone"`
	Status           string     `bun:"status"`
	BalanceMinutes   int        `bun:"balance_minutes"`
	ReservedMinutes  int        `bun:"reserved_minutes"`
	YearStartsAt     time.Time  `bun:"year_starts_at"`
	YearEndsAt       time.Time  `bun:"year_ends_at"`
	PurchasedMinutes int        `bun:"purchased_minutes"`
	UsedMinutes      int        `bun:"used_minutes"`
	IssuedAt         time.Time  `bun:"issued_at"`
	EndedAt          *time.Time `bun:"ended_at"`
	EndReason        *string    `bun:"end_reason"`
	RequestID        *string    `bun:"request_id"`

	// ZoneUpdatedAt is the version of the permit's zone, read with the permit by
	// LockPermit (zero when read otherwise).
	ZoneUpdatedAt time.Time `bun:"zone_updated_at,scanonly"`
}

// State is what the domain rules need of the permit.
func (p *Permit) State() domain.PermitState {
	return domain.PermitState{
		Active:           p.Status == domain.PermitActive,
		BalanceMinutes:   p.BalanceMinutes,
		PurchasedMinutes: p.PurchasedMinutes,
		UsedMinutes:      p.UsedMinutes,
		ReservedMinutes:  p.ReservedMinutes,
	}
}

// View renders the permit for answers and outcomes.
func (p *Permit) View() jobs.Permit {
	return jobs.Permit{
		ID: FormatID(p.ID), Zone: p.Zone, AddressID: p.AddressID, ResidentID: p.ResidentID,
		Status: p.Status, BalanceMinutes: p.BalanceMinutes, EndedAt: utcPtr(p.EndedAt),
		Year: jobs.PermitYear{
			StartsAt: p.YearStartsAt.UTC(), EndsAt: p.YearEndsAt.UTC(),
			PurchasedMinutes: p.PurchasedMinutes, UsedMinutes: p.UsedMinutes, ReservedMinutes: p.ReservedMinutes,
		},
	}
}

// Session is a row of sessions.
type Session struct {
	bun.BaseModel `bun:"table:sessions"`

	ID              int64           `bun:"id,pk,autoincrement"`
	PermitID        int64           `bun:"permit_id"`
	Zone            string          `bun:"zone"`
	Plate           string          `bun:"plate"`
	Country         string          `bun:"country"`
	State           domain.State    `bun:"state"`
	StartAt         time.Time       `bun:"start_at"`
	PlannedEndAt    time.Time       `bun:"planned_end_at"`
	EndAt           *time.Time      `bun:"end_at"`
	ReservedMinutes int             `bun:"reserved_minutes"`
	ChargedMinutes  *int            `bun:"charged_minutes"`
	Notices         []domain.Notice `bun:"notices,type:jsonb"`
	RequestID       string          `bun:"request_id"`
	CreatedAt       time.Time       `bun:"created_at,default:current_timestamp"`
	SettledAt       *time.Time      `bun:"settled_at"`
}

// DomainState is what the stop rules need of the session.
func (s *Session) DomainState() domain.SessionState {
	return domain.SessionState{State: s.State, StartAt: s.StartAt, PlannedEndAt: s.PlannedEndAt, ReservedMinutes: s.ReservedMinutes}
}

// View renders the session as seen at now.
func (s *Session) View(now time.Time) jobs.Session {
	notices := s.Notices
	if notices == nil {
		notices = []domain.Notice{}
	}
	return jobs.Session{
		ID: FormatID(s.ID), PermitID: FormatID(s.PermitID), Zone: s.Zone, Plate: s.Plate, Country: s.Country,
		Status: domain.StatusAt(s.State, s.StartAt, now), StartAt: s.StartAt.UTC(),
		PlannedEndAt: s.PlannedEndAt.UTC(), EndAt: utcPtr(s.EndAt),
		ReservedMinutes: s.ReservedMinutes, ChargedMinutes: s.ChargedMinutes, Notices: notices,
	}
}

// LedgerEntry is a row of the ledger.
type LedgerEntry struct {
	bun.BaseModel `bun:"table:ledger"`

	ID         int64     `bun:"id,pk,autoincrement"`
	PermitID   int64     `bun:"permit_id"`
	Kind       string    `bun:"kind"`
	Minutes    int       `bun:"minutes"`
	Cents      *int64    `bun:"cents"`
	SessionID  *int64    `bun:"session_id"`
	RequestID  *string   `bun:"request_id"`
	PaymentRef *string   `bun:"payment_ref"`
	At         time.Time `bun:"at"`
	// DuplicateOfTopup is set only on top-ups booked before a payment
	// reference was unique in the whole system, under a reference an earlier
	// top-up (this one) had used already.
	DuplicateOfTopup *int64 `bun:"duplicate_of_topup"`
}

// Ledger kinds.
const (
	LedgerTopup   = "topup"
	LedgerReserve = "reserve"
	LedgerRelease = "release"
	LedgerCharge  = "charge"
	LedgerExpire  = "expire"
)

// Request statuses.
const (
	RequestPending  = "pending"
	RequestApplied  = "applied"
	RequestRejected = "rejected"
)

// Request is a row of requests: the outcome of one request ID.
type Request struct {
	bun.BaseModel `bun:"table:requests"`

	RequestID string          `bun:"request_id,pk"`
	Type      string          `bun:"type"`
	BodyHash  string          `bun:"body_hash"`
	Status    string          `bun:"status"`
	Subject   *string         `bun:"subject"`
	Error     json.RawMessage `bun:"error,type:jsonb"`
	Result    json.RawMessage `bun:"result,type:jsonb"`
	CreatedAt time.Time       `bun:"created_at,default:current_timestamp"`
	UpdatedAt time.Time       `bun:"updated_at,default:current_timestamp"`
}

// OutboxTask is a row of the outbox: a task to enqueue once its transaction commits.
type OutboxTask struct {
	bun.BaseModel `bun:"table:outbox"`

	ID        int64           `bun:"id,pk,autoincrement"`
	TaskType  string          `bun:"task_type"`
	TaskID    string          `bun:"task_id"`
	Queue     string          `bun:"queue"`
	Payload   json.RawMessage `bun:"payload,type:jsonb"`
	ProcessAt time.Time       `bun:"process_at"`
	CreatedAt time.Time       `bun:"created_at,default:current_timestamp"`
}

// FormatID renders a numeric ID as the string the contract uses.
func FormatID(id int64) string { return strconv.FormatInt(id, 10) }

// ParseID reads a contract ID; anything that is not a positive integer names no row.
func ParseID(s string) (int64, bool) {
	id, err := strconv.ParseInt(s, 10, 64)
	return id, err == nil && id > 0 && FormatID(id) == s
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
