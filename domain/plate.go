package domain

import (
	"strings"
	"unicode/utf8"
)

// MaxPlateLen is the longest plate accepted after normalisation.
const MaxPlateLen = 8

// NormalizePlate upper-cases a licence plate and removes dashes and spaces. The
// result must be 1–8 ASCII letters or digits; anything else (accented letters,
// punctuation, an empty or over-long plate) is rejected with invalid_plate.
func NormalizePlate(raw string) (string, error) {
	var b strings.Builder
	b.Grow(len(raw))
	for _, r := range raw {
		switch {
		case r == '-' || r == ' ':
			continue
		case r >= 'a' && r <= 'z':
			b.WriteRune(r - 'a' + 'A')
		case (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9'):
			b.WriteRune(r)
		default:
			// The message is logged and kept with the outcome: it names the
			// offending character, never the plate.
			return "", Reject(CodeInvalidPlate, "plate may hold only letters A-Z, digits, dashes and spaces, not %q", r)
		}
		if b.Len() > MaxPlateLen {
			return "", Reject(CodeInvalidPlate, "plate is longer than %d letters and digits", MaxPlateLen)
		}
	}
	if b.Len() == 0 {
		return "", Reject(CodeInvalidPlate, "plate is empty")
	}
	return b.String(), nil
}

// MaskPlate hides all but the last two characters of a plate, for logs and
// operator screens that must not show who parked where.
func MaskPlate(plate string) string {
	if len(plate) <= 2 {
		return strings.Repeat("*", len(plate))
	}
	return strings.Repeat("*", len(plate)-2) + plate[len(plate)-2:]
}

// MaskPlatesIn masks, with MaskPlate, every occurrence in text of the plates
// given, as sent and as normalised: a message kept with a request's outcome or
// written to the log never shows a plate in full, however a rule worded it.
// Plates of one or two characters are left alone: masking them would blot
// every such letter out of the text, and they identify nobody.
func MaskPlatesIn(text string, plates ...string) string {
	for _, raw := range plates {
		forms := []string{raw}
		if n, err := NormalizePlate(raw); err == nil && n != raw {
			forms = append(forms, n)
		}
		for _, f := range forms {
			if len(strings.TrimSpace(f)) > 2 {
				text = strings.ReplaceAll(text, f, MaskPlate(f))
			}
		}
	}
	return text
}

// truncate shortens s to at most n bytes for an error message, without cutting
// a UTF-8 character in half.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
