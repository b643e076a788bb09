package domain_test

import (
	"strings"
	"testing"

	"github.com/parkd/parkd/domain"
)

func TestPlateNormalisation(t *testing.T) {
	tests := []struct {
		name, raw, want string
		code            domain.Code
	}{
		{name: "dashes and lower case", raw: "ab-12-cd", want: "AB12CD"},
		{name: "spaces around and inside", raw: " 12 ABC 3 ", want: "12ABC3"},
		{name: "already normal", raw: "AB12CD", want: "AB12CD"},
		{name: "mixed case", raw: "aB-1c", want: "AB1C"},
		{name: "one character", raw: "x", want: "X"},
		{name: "digits only", raw: "123", want: "123"},
		{name: "eight characters", raw: "abcd1234", want: "ABCD1234"},
		{name: "eight characters with separators", raw: "-AB CD-12 34-", want: "ABCD1234"},

		// Latin letters with diacritics fold to their base letter.
		{name: "German district code with umlaut", raw: "GÖ-AB 123", want: "GOAB123"},
		{name: "umlaut in lower case", raw: "gö-ab 123", want: "GOAB123"},
		{name: "umlaut written decomposed (O + combining diaeresis)", raw: "GO\u0308-AB 123", want: "GOAB123"},
		{name: "Swedish ring", raw: "Å-1", want: "A1"},
		{name: "accented letter", raw: "ÄB-12", want: "AB12"},
		{name: "accented lower case", raw: "äb-12", want: "AB12"},
		{name: "Czech caron and acute", raw: "ŘÍ-Ž 1", want: "RIZ1"},
		{name: "Hungarian double acute", raw: "Ő-Ű 2", want: "OU2"},
		{name: "cedilla and ogonek", raw: "Ç-Ą 3", want: "CA3"},
		{name: "two diacritics on one letter", raw: "Ệ-7", want: "E7"},
		{name: "Turkish dotted and dotless i", raw: "İı-4", want: "II4"},
		{name: "Danish o with stroke", raw: "Ø-5", want: "O5"},
		{name: "Polish l with stroke", raw: "ł-6", want: "L6"},
		{name: "Kelvin sign is canonically K", raw: "\u212A-9", want: "K9"},

		// Irish plates reach 11 letters and digits; 12 is the most.
		{name: "Irish plate of 11", raw: "132-WW-123456", want: "132WW123456"},
		{name: "Irish plate of 9", raw: "12-D-12345", want: "12D12345"},
		{name: "Irish plate of 10", raw: "191-D-12345", want: "191D12345"},
		{name: "twelve characters", raw: "ABCDEF-123456", want: "ABCDEF123456"},
		{name: "DROP TABLE is just nine letters", raw: "DROP TABLE", want: "DROPTABLE"},

		// Every dash, space or dot character is removed.
		{name: "en dash", raw: "AB–12–CD", want: "AB12CD"},
		{name: "em dash", raw: "AB—12", want: "AB12"},
		{name: "hyphen", raw: "AB\u201012", want: "AB12"},
		{name: "non-breaking hyphen", raw: "AB\u201112", want: "AB12"},
		{name: "minus sign", raw: "AB\u221212", want: "AB12"},
		{name: "full-width hyphen-minus", raw: "AB\uFF0D12", want: "AB12"},
		{name: "no-break space", raw: "AB\u00A012\u00A0CD", want: "AB12CD"},
		{name: "narrow no-break space", raw: "AB\u202F12", want: "AB12"},
		{name: "thin space", raw: "AB\u200912", want: "AB12"},
		{name: "ideographic space", raw: "AB\u300012", want: "AB12"},
		{name: "dot", raw: "AB.12", want: "AB12"},
		{name: "middle dot", raw: "AB·12", want: "AB12"},
		{name: "bullet", raw: "AB•12", want: "AB12"},
		{name: "full-width full stop", raw: "AB．12", want: "AB12"},
		{name: "a pasted plate: en dash and no-break spaces", raw: "\u00A0132\u00A0–\u00A0WW\u00A0–\u00A0123456\u00A0", want: "132WW123456"},

		{name: "empty", raw: "", code: domain.CodeInvalidPlate},
		{name: "only spaces", raw: "   ", code: domain.CodeInvalidPlate},
		{name: "only dashes", raw: "--", code: domain.CodeInvalidPlate},
		{name: "only dots and no-break spaces", raw: ".\u00A0.", code: domain.CodeInvalidPlate},
		{name: "a diacritic alone", raw: "\u0308", code: domain.CodeInvalidPlate},
		{name: "a diacritic on a digit", raw: "1\u0301", code: domain.CodeInvalidPlate},
		{name: "a diacritic after a dash", raw: "AB-\u030112", code: domain.CodeInvalidPlate},

		// Look-alikes of other scripts, symbols and invisible characters.
		{name: "Cyrillic A", raw: "\u0410B-12", code: domain.CodeInvalidPlate},
		{name: "Cyrillic lower-case o", raw: "G\u043E-12", code: domain.CodeInvalidPlate},
		{name: "Cyrillic short i folds to Cyrillic, not Latin", raw: "Й-12", code: domain.CodeInvalidPlate},
		{name: "Greek capital alpha", raw: "\u0391B-12", code: domain.CodeInvalidPlate},
		{name: "full-width letters", raw: "ＡＢ12", code: domain.CodeInvalidPlate},
		{name: "mathematical bold A", raw: "\U0001D400B12", code: domain.CodeInvalidPlate},
		{name: "circled digit", raw: "AB①", code: domain.CodeInvalidPlate},
		{name: "ligature", raw: "ﬁ12", code: domain.CodeInvalidPlate},
		{name: "sharp s", raw: "STRAßE1", code: domain.CodeInvalidPlate},
		{name: "ae ligature letter", raw: "Æ1", code: domain.CodeInvalidPlate},
		{name: "icelandic eth", raw: "Ð1", code: domain.CodeInvalidPlate},
		{name: "emoji", raw: "AB🚗12", code: domain.CodeInvalidPlate},
		{name: "regional indicator letters", raw: "\U0001F1F3\U0001F1F1", code: domain.CodeInvalidPlate},
		{name: "keycap emoji", raw: "1\uFE0F\u20E3", code: domain.CodeInvalidPlate},
		{name: "variation selector after a letter", raw: "A\uFE0F1", code: domain.CodeInvalidPlate},
		{name: "zero-width space", raw: "AB\u200B12", code: domain.CodeInvalidPlate},
		{name: "zero-width joiner", raw: "AB\u200D12", code: domain.CodeInvalidPlate},
		{name: "zero-width no-break space (BOM)", raw: "\uFEFFAB12", code: domain.CodeInvalidPlate},
		{name: "soft hyphen", raw: "AB\u00AD12", code: domain.CodeInvalidPlate},
		{name: "right-to-left mark", raw: "AB\u200F12", code: domain.CodeInvalidPlate},
		{name: "word joiner", raw: "AB\u206012", code: domain.CodeInvalidPlate},
		{name: "punctuation", raw: "DROP;TABLE", code: domain.CodeInvalidPlate},
		{name: "short with punctuation", raw: "AB;12", code: domain.CodeInvalidPlate},
		{name: "quote", raw: "AB'12", code: domain.CodeInvalidPlate},
		{name: "underscore", raw: "AB_12", code: domain.CodeInvalidPlate},
		{name: "slash", raw: "AB/12", code: domain.CodeInvalidPlate},
		{name: "tab is not a space", raw: "AB\t12", code: domain.CodeInvalidPlate},
		{name: "newline", raw: "AB12\n", code: domain.CodeInvalidPlate},
		{name: "line separator", raw: "AB\u202812", code: domain.CodeInvalidPlate},
		{name: "NUL byte", raw: "AB\x0012", code: domain.CodeInvalidPlate},
		{name: "invalid UTF-8", raw: "AB\xff12", code: domain.CodeInvalidPlate},
		{name: "thirteen characters", raw: "ABCDEFG123456", code: domain.CodeInvalidPlate},
		{name: "thirteen characters with separators", raw: "AB-CD-12-345-678-9", code: domain.CodeInvalidPlate},
		{name: "thirteen once folded", raw: "ÄÖÜ-ÅÉÈ-1234567", code: domain.CodeInvalidPlate},
		{name: "forty characters", raw: strings.Repeat("AB12", 10), code: domain.CodeInvalidPlate},
		{name: "forty characters with separators", raw: strings.Repeat("A-", 20), code: domain.CodeInvalidPlate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := domain.NormalizePlate(tt.raw)
			if tt.code != "" && got != "" {
				t.Errorf("NormalizePlate(%q) = %q along with an error, want \"\"", tt.raw, got)
			}
			if !wantCode(t, err, tt.code) {
				return
			}
			if got != tt.want {
				t.Errorf("NormalizePlate(%q) = %q, want %q", tt.raw, got, tt.want)
			}
		})
	}
}

// The plate rule holds whatever the source: PlanSession normalises and rejects too.
func TestPlateNormalisationInStart(t *testing.T) {
	z := centrum(t)
	r := june(wed, 10, 0)
	for raw, want := range map[string]string{"ab-12-cd": "AB12CD", "GÖ-AB 123": "GOAB123", "132–WW\u00A0123456": "132WW123456"} {
		plan, err := domain.PlanSession(z, rich(), domain.StartRequest{Plate: raw, ReceivedAt: r})
		if wantCode(t, err, "") && plan.Plate != want {
			t.Errorf("plan.Plate = %q, want %s", plan.Plate, want)
		}
	}
	for _, raw := range []string{"", "\u0410B-12", "AB\u200B12", "DROP;TABLE", strings.Repeat("X", 13)} {
		_, err := domain.PlanSession(z, rich(), domain.StartRequest{Plate: raw, ReceivedAt: r})
		wantCode(t, err, domain.CodeInvalidPlate)
	}
}

func TestMaskPlate(t *testing.T) {
	tests := []struct{ plate, want string }{
		{"AB12CD", "****CD"},
		{"ABC", "*BC"},
		{"AB", "**"},
		{"A", "*"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := domain.MaskPlate(tt.plate); got != tt.want {
			t.Errorf("MaskPlate(%q) = %q, want %q", tt.plate, got, tt.want)
		}
	}
}

// A message kept with a request's outcome or logged never shows the request's
// plate in full, as sent or as normalised, whatever a rule's wording.
func TestMaskPlatesIn(t *testing.T) {
	tests := []struct {
		text   string
		plates []string
		want   string
	}{
		{"plate AB12CD already parked", []string{"ab-12-cd"}, "plate ****CD already parked"},
		{`plate "ab-12-cd" is odd`, []string{"ab-12-cd"}, `plate "******cd" is odd`},
		{"AB12CD and AB12CD", []string{"AB12CD"}, "****CD and ****CD"},
		{"plate ****CD already parked", []string{"AB12CD"}, "plate ****CD already parked"}, // masked already
		{"A is too short", []string{"A"}, "A is too short"},                                // one or two characters identify nobody
		{"no plate here", nil, "no plate here"},
	}
	for _, tt := range tests {
		if got := domain.MaskPlatesIn(tt.text, tt.plates...); got != tt.want {
			t.Errorf("MaskPlatesIn(%q, %q) = %q, want %q", tt.text, tt.plates, got, tt.want)
		}
	}
}

func TestPlateCountry(t *testing.T) {
	tests := []struct {
		name, raw, want string
		code            domain.Code
	}{
		{name: "none is the Netherlands", raw: "", want: "NL"},
		{name: "the Netherlands", raw: "NL", want: "NL"},
		{name: "Germany", raw: "DE", want: "DE"},
		{name: "Ireland", raw: "IE", want: "IE"},
		{name: "Belgium", raw: "BE", want: "BE"},
		{name: "United Kingdom", raw: "GB", want: "GB"},
		{name: "Curaçao", raw: "CW", want: "CW"},
		{name: "Kosovo (user-assigned, used by the EU)", raw: "XK", want: "XK"},

		{name: "lower case", raw: "nl", code: domain.CodeInvalidCountry},
		{name: "mixed case", raw: "Nl", code: domain.CodeInvalidCountry},
		{name: "alpha-3", raw: "NLD", code: domain.CodeInvalidCountry},
		{name: "numeric", raw: "528", code: domain.CodeInvalidCountry},
		{name: "one letter", raw: "N", code: domain.CodeInvalidCountry},
		{name: "padded", raw: " NL", code: domain.CodeInvalidCountry},
		{name: "Cyrillic look-alikes", raw: "\u041D\u041B", code: domain.CodeInvalidCountry},
		{name: "unknown region", raw: "ZZ", code: domain.CodeInvalidCountry},
		{name: "private use", raw: "XX", code: domain.CodeInvalidCountry},
		{name: "private use Q", raw: "QZ", code: domain.CodeInvalidCountry},
		{name: "not assigned", raw: "AA", code: domain.CodeInvalidCountry},
		{name: "a grouping: the EU", raw: "EU", code: domain.CodeInvalidCountry},
		{name: "a grouping: the UN", raw: "UN", code: domain.CodeInvalidCountry},
		{name: "UK is reserved; the code is GB", raw: "UK", code: domain.CodeInvalidCountry},
		{name: "Burma is now MM", raw: "BU", code: domain.CodeInvalidCountry},
		{name: "East Germany", raw: "DD", code: domain.CodeInvalidCountry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := domain.NormalizeCountry(tt.raw)
			if wantCode(t, err, tt.code) && got != tt.want {
				t.Errorf("NormalizeCountry(%q) = %q, want %q", tt.raw, got, tt.want)
			}
		})
	}
	// A start carries its country, checked after the plate.
	z := centrum(t)
	r := june(wed, 10, 0)
	plan, err := domain.PlanSession(z, rich(), domain.StartRequest{Plate: "GÖ-AB 123", Country: "DE", ReceivedAt: r})
	if wantCode(t, err, "") && (plan.Plate != "GOAB123" || plan.Country != "DE") {
		t.Errorf("plan %s %s, want GOAB123 DE", plan.Plate, plan.Country)
	}
	plan, err = domain.PlanSession(z, rich(), domain.StartRequest{Plate: "AB12", ReceivedAt: r})
	if wantCode(t, err, "") && plan.Country != domain.DefaultCountry {
		t.Errorf("plan country %q, want NL", plan.Country)
	}
	_, err = domain.PlanSession(z, rich(), domain.StartRequest{Plate: "AB12", Country: "XX", ReceivedAt: r})
	wantCode(t, err, domain.CodeInvalidCountry)
	_, err = domain.PlanSession(z, rich(), domain.StartRequest{Plate: "AB\u200B12", Country: "XX", ReceivedAt: r})
	wantCode(t, err, domain.CodeInvalidPlate)
}
