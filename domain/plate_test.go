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

		{name: "empty", raw: "", code: domain.CodeInvalidPlate},
		{name: "only spaces", raw: "   ", code: domain.CodeInvalidPlate},
		{name: "only dashes", raw: "--", code: domain.CodeInvalidPlate},
		{name: "accented letter", raw: "ÄB-12", code: domain.CodeInvalidPlate},
		{name: "accented lower case", raw: "äb-12", code: domain.CodeInvalidPlate},
		{name: "full-width letters", raw: "ＡＢ12", code: domain.CodeInvalidPlate},
		{name: "DROP TABLE is nine characters", raw: "DROP TABLE", code: domain.CodeInvalidPlate},
		{name: "punctuation", raw: "DROP;TABLE", code: domain.CodeInvalidPlate},
		{name: "short with punctuation", raw: "AB;12", code: domain.CodeInvalidPlate},
		{name: "quote", raw: "AB'12", code: domain.CodeInvalidPlate},
		{name: "underscore", raw: "AB_12", code: domain.CodeInvalidPlate},
		{name: "dot", raw: "AB.12", code: domain.CodeInvalidPlate},
		{name: "tab is not a space", raw: "AB\t12", code: domain.CodeInvalidPlate},
		{name: "newline", raw: "AB12\n", code: domain.CodeInvalidPlate},
		{name: "NUL byte", raw: "AB\x0012", code: domain.CodeInvalidPlate},
		{name: "invalid UTF-8", raw: "AB\xff12", code: domain.CodeInvalidPlate},
		{name: "nine characters", raw: "ABCDE1234", code: domain.CodeInvalidPlate},
		{name: "nine characters with separators", raw: "AB-CD-12-345", code: domain.CodeInvalidPlate},
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
	plan, err := domain.PlanSession(z, rich(), domain.StartRequest{Plate: "ab-12-cd", ReceivedAt: r})
	if wantCode(t, err, "") && plan.Plate != "AB12CD" {
		t.Errorf("plan.Plate = %q, want AB12CD", plan.Plate)
	}
	for _, raw := range []string{"", "ÄB-12", "DROP TABLE", "DROP;TABLE", strings.Repeat("X", 40)} {
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
