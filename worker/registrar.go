package worker

import (
	"context"
	"errors"
	"time"
)

// Registrar registers rights in the national parking register (DOMAIN.md
// "Telling others", README "Pointing parkd at a register"). The registrar
// keeps the highest version of each right, so sending a state again, or late,
// changes nothing there.
type Registrar interface {
	// Register sends a right's full state. nil means acknowledged (200, 201,
	// 204, or 409: the registrar holds a newer version; an implementation may
	// say ErrSuperseded for the 409 instead, which is just as acknowledged and
	// which metrics count apart); a *Refusal is a refusal of the right that
	// retrying cannot change (any 4xx but 408, 409 and 429: README "Pointing
	// parkd at a register"); any other error is worth retrying (5xx, 408, 429, a
	// timeout, the registrar unreachable).
	Register(ctx context.Context, r Right) error
}

// ErrSuperseded is a registrar's 409: it holds a newer version of the right
// than the one sent. The right is acknowledged all the same (README "Pointing
// parkd at a register"): the newer version was sent by parkd, so it already
// stands there.
var ErrSuperseded = errors.New("registrar holds a newer version of the right (409)")

// Right is a session's right as the registrar gets it. RightID is opaque and
// stable per session ({issuer}-{session_id}), never the plate.
type Right struct {
	RightID       string    `json:"right_id"`
	Version       int       `json:"version"`
	Issuer        string    `json:"issuer"`
	AreaManagerID string    `json:"area_manager_id"`
	AreaID        string    `json:"area_id"`
	UsageID       string    `json:"usage_id"`
	Plate         string    `json:"plate"`
	Country       string    `json:"country"`
	StartAt       time.Time `json:"start_at"`
	EndAt         time.Time `json:"end_at"`
	Status        string    `json:"status"` // RightActive, RightEnded or RightCancelled
}

// Right statuses.
const (
	RightActive    = "active"    // planned or running; EndAt is the planned end
	RightEnded     = "ended"     // stopped; EndAt is the actual end
	RightCancelled = "cancelled" // cancelled before its start
)

// Refusal is a registrar's refusal of a right: a 4xx other than 408, 409
// and 429. An operator sends a refused right again by running its archived
// right:register task (asynqmon, queue registrar).
type Refusal struct {
	Status  int    // the HTTP status
	Message string // what the registrar said, plates masked
}

func (r *Refusal) Error() string { return "registrar refused the right: " + r.Message }
