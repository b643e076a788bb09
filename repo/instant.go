package repo

import "time"

// Instant is t as Postgres keeps a timestamptz: in UTC, to the microsecond
// (bun writes the digits beyond it off, it does not round). Every instant
// parkd stamps with a clock or reads from a client goes through it before it
// is stored, fingerprinted or compared with what was stored, so that an
// instant written and read back equals itself.
func Instant(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
