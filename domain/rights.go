package domain

import (
	"fmt"
	"time"
)

// PlaceKind is the kind of parking place enforcement is looking at.
type PlaceKind string

// Kinds of place (DOMAIN.md).
const (
	PlacePermitHolder PlaceKind = "permit_holder"
	PlacePaid         PlaceKind = "paid"
	PlaceShortStay    PlaceKind = "short_stay"
	PlaceCarFree      PlaceKind = "car_free"
)

// ParsePlaceKind checks a place kind.
func ParsePlaceKind(s string) (PlaceKind, error) {
	switch k := PlaceKind(s); k {
	case PlacePermitHolder, PlacePaid, PlaceShortStay, PlaceCarFree:
		return k, nil
	}
	return "", fmt.Errorf("place %q is not one of permit_holder, paid, short_stay, car_free", truncate(s, 40))
}

// Reasons of an enforcement answer.
const (
	ReasonSession       = "active_session"
	ReasonNoRightNeeded = "no_right_needed"
	ReasonNotValidHere  = "permit_not_valid_at_place"
	ReasonNotValidOnDay = "permit_not_valid_on_day"
	ReasonNoSession     = "no_session"
)

// Right is the enforcement answer.
type Right struct {
	Valid  bool
	Reason string
}

// CheckRight answers "may this plate park here, now?" for a place of kind in zone
// z at instant at, given whether a session of this zone covers at. Only
// sessions of this zone count: a permit is valid only in its own zone.
//
// A covering session is valid whatever the zone says now: its interval was
// granted under the zone as it was then (cut at the invalid days it had), and a
// zone change applies forward, never taking back a right already granted
// (DOMAIN.md). The zone's invalid days only explain why there is no session.
func CheckRight(z *Zone, kind PlaceKind, at time.Time, covered bool) Right {
	switch kind {
	case PlaceShortStay, PlaceCarFree:
		return Right{Reason: ReasonNotValidHere}
	case PlacePaid:
		if !z.InPaidRegime(at) {
			return Right{Valid: true, Reason: ReasonNoRightNeeded}
		}
	}
	switch {
	case covered:
		return Right{Valid: true, Reason: ReasonSession}
	case !z.ValidOn(at):
		return Right{Reason: ReasonNotValidOnDay}
	}
	return Right{Reason: ReasonNoSession}
}
