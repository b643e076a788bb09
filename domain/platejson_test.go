package domain_test

import (
	"testing"

	"github.com/parkd/parkd/domain"
)

// TestOperatorsReadPlatesMasked: what operators read as JSON shows every plate
// masked but for its last two characters (DOMAIN.md, Privacy).
func TestOperatorsReadPlatesMasked(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"a task's payload", `{"request_id":"r1","permit_id":"7","plate":"ab-12-cd"}`, `{"permit_id":"7","plate":"****CD","request_id":"r1"}`},
		{"nested, with a big number kept whole", `{"session":{"plate":"XY987Z","n":12345678901234567890}}`, `{"session":{"n":12345678901234567890,"plate":"****7Z"}}`},
		{"any case of the key, in a list, not a plate", `[{"Plate":"Q!"}]`, `[{"Plate":"**"}]`},
		{"an erased plate", `{"plate":null}`, `{"plate":null}`},
		{"no plate, no HTML escaping", `{"note":"<b>&</b>"}`, `{"note":"<b>&</b>"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := domain.MaskPlatesInJSON([]byte(c.in), "")
			if err != nil || string(got) != c.want {
				t.Fatalf("MaskPlatesInJSON(%s) = %s, %v; want %s", c.in, got, err, c.want)
			}
		})
	}
	for _, in := range []string{``, `plate AB12CD`, `{"a":1} {"b":2}`} {
		if got, err := domain.MaskPlatesInJSON([]byte(in), ""); err == nil {
			t.Errorf("MaskPlatesInJSON(%q) = %s, want an error", in, got)
		}
	}
	if got, _ := domain.MaskPlatesInJSON([]byte(`{"plate":"AB12CD"}`), "  "); string(got) != "{\n  \"plate\": \"****CD\"\n}" {
		t.Errorf("indented: %q", got)
	}
}
