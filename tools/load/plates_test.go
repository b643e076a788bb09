package load

import (
	"strings"
	"testing"

	"github.com/parkd/parkd/domain"
)

func TestPlatesAreValidUniqueAndSeeded(t *testing.T) {
	g := NewPlateGen(ShapeParked, 1)
	never := NewPlateGen(ShapeNeverParked, 1)
	seen := map[string]bool{}
	for range 200_000 {
		p := g.Next()
		n, err := domain.NormalizePlate(p)
		if err != nil {
			t.Fatalf("plate %q: %v", p, err)
		}
		if len(p) != len("XX-999-X") || strings.ContainsAny(n, "AEIOUCMQWY") {
			t.Fatalf("plate %q is not side code 9 with Dutch plate letters", p)
		}
		if seen[n] {
			t.Fatalf("plate %q handed out twice", p)
		}
		seen[n] = true
	}
	for i := range uint64(50_000) {
		p := never.At(i)
		n, err := domain.NormalizePlate(p)
		if err != nil {
			t.Fatalf("never-parked plate %q: %v", p, err)
		}
		if seen[n] {
			t.Fatalf("never-parked plate %q is also a parked one", p)
		}
	}
	// The same seed gives the same sequence; another seed another.
	a, b, c := NewPlateGen(ShapeParked, 7), NewPlateGen(ShapeParked, 7), NewPlateGen(ShapeParked, 8)
	same, diff := 0, 0
	for range 100 {
		pa, pb, pc := a.Next(), b.Next(), c.Next()
		if pa == pb {
			same++
		}
		if pa != pc {
			diff++
		}
	}
	if same != 100 || diff < 90 {
		t.Fatalf("seeding: %d of 100 equal for one seed, %d differ for another", same, diff)
	}
}

func TestPlateShapeIsABijection(t *testing.T) {
	// A small check of the whole space: every index of the shape maps to a
	// distinct plate (the affine map over it is then a bijection as well).
	s := PlateShape("L9")
	if s.size() != 160 {
		t.Fatalf("size %d", s.size())
	}
	seen := map[string]bool{}
	for k := range s.size() {
		seen[s.plate(k)] = true
	}
	if len(seen) != 160 {
		t.Fatalf("%d distinct plates of 160", len(seen))
	}
	g := &PlateGen{shape: s, n: 160, a: 7, b: 13}
	seen = map[string]bool{}
	for k := range uint64(160) {
		seen[g.At(k)] = true
	}
	if len(seen) != 160 {
		t.Fatalf("affine order: %d distinct plates of 160", len(seen))
	}
}
