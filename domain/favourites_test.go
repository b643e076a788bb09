package domain_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/parkd/parkd/domain"
)

// plates returns n distinct normalised plates, the favourites a permit has.
func plates(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("FAV%02d", i)
	}
	return out
}

// DOMAIN.md "Favourites": up to 25 named plates per permit, each name 1-40
// characters; a 26th plate is too_many_favourites, renaming one at 25 is fine.
func TestFavouritesAtMost25WithNamesOf1To40Characters(t *testing.T) {
	active := domain.PermitState{Active: true}
	tests := []struct {
		name      string
		p         domain.PermitState
		plate     string
		fav       string
		existing  []string
		code      domain.Code
		wantPlate string
		wantName  string
	}{
		{name: "first favourite", p: active, plate: "ab-12-cd", fav: "Oma", wantPlate: "AB12CD", wantName: "Oma"},
		{name: "plate with space and umlaut", p: active, plate: "Ö 12 cd", fav: "Buurman", wantPlate: "O12CD", wantName: "Buurman"},
		{name: "name trimmed", p: active, plate: "AB12CD", fav: "  Oma \u00a0", wantPlate: "AB12CD", wantName: "Oma"},
		{name: "name of 40 characters", p: active, plate: "AB12CD", fav: strings.Repeat("a", 40), wantPlate: "AB12CD", wantName: strings.Repeat("a", 40)},
		{name: "name of 40 two-byte characters", p: active, plate: "AB12CD", fav: strings.Repeat("é", 40), wantPlate: "AB12CD", wantName: strings.Repeat("é", 40)},
		{name: "name of 40 emoji", p: active, plate: "AB12CD", fav: strings.Repeat("🚗", 40), wantPlate: "AB12CD", wantName: strings.Repeat("🚗", 40)},
		{name: "e and a combining accent is one character", p: active, plate: "AB12CD", fav: strings.Repeat("e\u0301", 40),
			wantPlate: "AB12CD", wantName: strings.Repeat("é", 40)},
		{name: "name of 41 characters", p: active, plate: "AB12CD", fav: strings.Repeat("a", 41), code: domain.CodeInvalidFavouriteName},
		{name: "name of 41 two-byte characters", p: active, plate: "AB12CD", fav: strings.Repeat("é", 41), code: domain.CodeInvalidFavouriteName},
		{name: "40 characters inside spaces", p: active, plate: "AB12CD", fav: "  " + strings.Repeat("a", 40) + "  ",
			wantPlate: "AB12CD", wantName: strings.Repeat("a", 40)},
		{name: "empty name", p: active, plate: "AB12CD", fav: "", code: domain.CodeInvalidFavouriteName},
		{name: "blank name", p: active, plate: "AB12CD", fav: " \t\u3000 ", code: domain.CodeInvalidFavouriteName},
		{name: "newline inside", p: active, plate: "AB12CD", fav: "Oma\nOpa", code: domain.CodeInvalidFavouriteName},
		{name: "tab inside", p: active, plate: "AB12CD", fav: "Oma\tOpa", code: domain.CodeInvalidFavouriteName},
		{name: "escape inside", p: active, plate: "AB12CD", fav: "Oma\x1b[31m", code: domain.CodeInvalidFavouriteName},
		{name: "NUL inside", p: active, plate: "AB12CD", fav: "Oma\x00", code: domain.CodeInvalidFavouriteName},
		{name: "line separator inside", p: active, plate: "AB12CD", fav: "Oma\u2028Opa", code: domain.CodeInvalidFavouriteName},
		{name: "right-to-left override", p: active, plate: "AB12CD", fav: "Oma\u202egnp.exe", code: domain.CodeInvalidFavouriteName},
		{name: "invalid UTF-8", p: active, plate: "AB12CD", fav: "Oma\xff", code: domain.CodeInvalidFavouriteName},
		{name: "invalid plate", p: active, plate: "АВ12СD", fav: "Oma", code: domain.CodeInvalidPlate},
		{name: "ended permit", p: domain.PermitState{}, plate: "AB12CD", fav: "Oma", code: domain.CodePermitNotActive},

		{name: "24 favourites: a 25th", p: active, plate: "AB12CD", fav: "Oma", existing: plates(24), wantPlate: "AB12CD", wantName: "Oma"},
		{name: "25 favourites: a 26th", p: active, plate: "AB12CD", fav: "Oma", existing: plates(25), code: domain.CodeTooManyFavourites},
		{name: "25 favourites: renaming one", p: active, plate: "fav-07", fav: "Tante", existing: plates(25), wantPlate: "FAV07", wantName: "Tante"},
		{name: "25 favourites: a 26th with a bad name is the name's fault", p: active, plate: "AB12CD", fav: "", existing: plates(25),
			code: domain.CodeInvalidFavouriteName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := domain.PlanFavourite(tt.p, tt.plate, tt.fav, tt.existing)
			if !wantCode(t, err, tt.code) {
				return
			}
			if f.Plate != tt.wantPlate || f.Name != tt.wantName {
				t.Errorf("favourite %q %q, want %q %q", f.Plate, f.Name, tt.wantPlate, tt.wantName)
			}
		})
	}
}
