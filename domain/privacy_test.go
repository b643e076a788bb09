package domain

import (
	"strings"
	"testing"
)

func TestMayErase(t *testing.T) {
	for _, c := range []struct {
		name   string
		active []string
		want   Code
	}{
		{"no permit at all", nil, ""},
		{"every permit ended", []string{}, ""},
		{"one active permit", []string{"17"}, CodePermitActive},
		{"two active permits", []string{"17", "18"}, CodePermitActive},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := MayErase("R1", c.active)
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			r, ok := AsRule(err)
			if !ok || r.Code != c.want {
				t.Fatalf("got %v, want %s", err, c.want)
			}
			for _, id := range c.active {
				if !strings.Contains(r.Message, id) {
					t.Fatalf("message %q names not permit %s", r.Message, id)
				}
			}
		})
	}
}
