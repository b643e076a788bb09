package domain

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Limits of a permit's favourites (DOMAIN.md "Favourites").
const (
	MaxFavourites       = 25
	MaxFavouriteNameLen = 40 // characters (runes), after trimming
)

// Favourite is a named plate of a permit, as it is to be stored.
type Favourite struct {
	Plate string // normalised
	Name  string
}

// PlanFavourite applies the favourite rules to a PUT of plate with name on
// permit p, whose favourites so far have the (normalised) plates existing:
// the permit is active (an ended permit has no favourites: permit_not_active);
// the plate is normalised as a start's (invalid_plate), so that "ab-12-cd" and
// "AB 12 CD" name one favourite; the name is valid (NormalizeFavouriteName);
// and a plate not among existing is a new favourite, refused when the permit
// has MaxFavourites already (too_many_favourites). Renaming one is fine at the
// limit. The caller reads existing under the permit's lock, so that two PUTs
// at once cannot both be the 25th.
func PlanFavourite(p PermitState, plate, name string, existing []string) (Favourite, error) {
	if !p.Active {
		return Favourite{}, Reject(CodePermitNotActive, "the permit has ended")
	}
	plate, err := NormalizePlate(plate)
	if err != nil {
		return Favourite{}, err
	}
	name, err = NormalizeFavouriteName(name)
	if err != nil {
		return Favourite{}, err
	}
	if !slices.Contains(existing, plate) && len(existing) >= MaxFavourites {
		return Favourite{}, Reject(CodeTooManyFavourites, "the permit has %d favourites, the most it may have", len(existing))
	}
	return Favourite{Plate: plate, Name: name}, nil
}

// NormalizeFavouriteName checks a favourite's name and returns the form to
// store: valid UTF-8, composed (NFC, so that é typed as e and an accent is one
// character, as it is shown), trimmed of white space at both ends, 1-40
// characters (runes) long. Names are shown in apps and on operators' screens,
// so characters that break or disguise a line of text are refused inside it:
// control characters (tab, newline, escape), line and paragraph separators,
// and the bidirectional controls that reverse how the rest reads.
func NormalizeFavouriteName(raw string) (string, error) {
	if !utf8.ValidString(raw) {
		return "", Reject(CodeInvalidFavouriteName, "name is not valid UTF-8 text")
	}
	name := strings.TrimSpace(norm.NFC.String(raw))
	if n := utf8.RuneCountInString(name); n < 1 || n > MaxFavouriteNameLen {
		return "", Reject(CodeInvalidFavouriteName, "name must be 1-%d characters, not %d", MaxFavouriteNameLen, n)
	}
	for _, r := range name {
		if unicode.IsControl(r) || unicode.In(r, unicode.Zl, unicode.Zp, unicode.Bidi_Control) {
			return "", Reject(CodeInvalidFavouriteName, "name may not hold the control character %U", r)
		}
	}
	return name, nil
}
