package repo

import "time"

// RightsQuery is the statement RightsLookup sends, for the test that EXPLAINs it.
func RightsQuery(plate, code string, at time.Time) (string, []any) {
	return rightsQuery(plate, code, at)
}
