package domain

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
	"golang.org/x/text/unicode/rangetable"
)

// MaxPlateLen is the longest plate accepted after normalisation: Irish plates
// reach 11 letters and digits (132-WW-123456 is 11), with one to spare.
const MaxPlateLen = 12

// NormalizePlate brings a licence plate to the one form parkd stores, compares
// and looks up (DOMAIN.md, Start), so that a plate typed with an umlaut, an en
// dash or a no-break space is the plate a camera reads:
//
//   - a Latin letter with diacritics folds to its base letter (Ö→O, Å→A, Ø→O),
//     as plate-reading cameras read them;
//   - letters go to upper case;
//   - every dash, space or dot character is removed, whatever its code point
//     (en dash, minus sign, no-break space, middle dot…).
//
// What is left must be 1–12 of A–Z and 0–9; anything else is invalid_plate: a
// look-alike letter of another script (Cyrillic А, Greek Α), a full-width
// letter, an emoji, an invisible character (zero-width space, soft hyphen,
// joiners), a control character (tab, newline), other punctuation.
//
// The decomposition is Unicode's canonical one (golang.org/x/text/unicode/norm,
// NFD): only canonical equivalents fold, never compatibility look-alikes (ＡＢ,
// ①, ﬁ), which is what keeps other scripts and symbols out.
func NormalizePlate(raw string) (string, error) {
	if !utf8.ValidString(raw) {
		return "", Reject(CodeInvalidPlate, "plate is not valid UTF-8 text")
	}
	var b strings.Builder
	b.Grow(MaxPlateLen)
	// latin is whether the last rune kept was a Latin letter, whose
	// diacritics (the combining marks NFD split off it) are dropped.
	latin := false
	for _, r := range norm.NFD.String(raw) {
		if unicode.Is(unicode.Mn, r) && unicode.Is(unicode.Diacritic, r) && latin {
			continue
		}
		latin = false
		if isPlateSeparator(r) {
			continue
		}
		if base, ok := strokeBase[r]; ok {
			r = base
		}
		r = unicode.ToUpper(r)
		if (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			// The message is logged and kept with the outcome: it names the
			// offending character, never the plate.
			return "", Reject(CodeInvalidPlate, "plate may hold only Latin letters, digits, dashes, spaces and dots, not %+q", r)
		}
		latin = r >= 'A' && r <= 'Z'
		b.WriteRune(r)
		if b.Len() > MaxPlateLen {
			return "", Reject(CodeInvalidPlate, "plate is longer than %d letters and digits", MaxPlateLen)
		}
	}
	if b.Len() == 0 {
		return "", Reject(CodeInvalidPlate, "plate has no letters or digits")
	}
	return b.String(), nil
}

// isPlateSeparator reports whether r is a dash, space or dot character. Dashes
// are Unicode's Dash property (hyphen, en and em dash, minus sign, full-width
// hyphen…) and spaces its space separators (Zs: space, no-break space, thin and
// narrow spaces…). Unicode has no property for dots, hence plateDots. Line
// breaks, tabs and zero-width characters are none of these: they are refused.
func isPlateSeparator(r rune) bool {
	return unicode.Is(unicode.Dash, r) || unicode.Is(unicode.Zs, r) || unicode.Is(plateDots, r)
}

// plateDots are the dot characters people type or paste between the groups of
// a plate: full stop, middle dot, one-dot leader, hyphenation point, bullet and
// dot operators, and their full-width and CJK forms.
var plateDots = rangetable.New('.', '·', '․', '‧', '•', '∙', '⋅', '・', '．', '｡', '･', '。')

// strokeBase folds the Latin letters whose diacritic is a stroke or bar through
// the letter: Unicode gives them no decomposition (so NFD cannot fold them), yet
// they are a base letter with a diacritic all the same (Ø is O with a stroke).
var strokeBase = map[rune]rune{
	'Ø': 'O', 'ø': 'o',
	'Ł': 'L', 'ł': 'l',
	'Đ': 'D', 'đ': 'd',
	'Ħ': 'H', 'ħ': 'h',
	'Ŧ': 'T', 'ŧ': 't',
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

// PlateAlreadyParked is the rejection of a start, a plate change or a quote
// whose plate has another open session overlapping it in the zone: the
// exclusion the repo meets (in Postgres, whichever permit that session is on),
// said one way everywhere, the plate masked.
func PlateAlreadyParked(plate, zone string) error {
	return Reject(CodePlateAlreadyParked, "plate %s already has a session in zone %s that overlaps this one", MaskPlate(plate), zone)
}
