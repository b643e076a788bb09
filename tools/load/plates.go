package load

import (
	"math/rand/v2"
	"sync/atomic"
)

// Plates are drawn from Dutch side codes so that they look like real ones and
// pass domain.NormalizePlate. Letters are those of current Dutch series (no
// vowels, no C, M, Q, W, Y), 16 of them.
const plateLetters = "BDFGHJKLNPRSTVXZ"

// A PlateShape is a side code: L for a letter, 9 for a digit, - as written.
type PlateShape string

const (
	// ShapeParked (side code 9, "XX-999-X") is used for every session the bench
	// starts.
	ShapeParked PlateShape = "LL-999-L"
	// ShapeNeverParked (side code 11, "9-XXX-99") is never started, so a rights
	// check for it must answer not valid.
	ShapeNeverParked PlateShape = "9-LLL-99"
)

// size is the number of distinct plates of the shape.
func (s PlateShape) size() uint64 {
	n := uint64(1)
	for _, c := range s {
		switch c {
		case 'L':
			n *= uint64(len(plateLetters))
		case '9':
			n *= 10
		}
	}
	return n
}

// plate is the k-th plate of the shape (0 <= k < size), written with dashes as
// an app would send it.
func (s PlateShape) plate(k uint64) string {
	out := []byte(s)
	for i := len(out) - 1; i >= 0; i-- {
		switch out[i] {
		case 'L':
			out[i] = plateLetters[k%uint64(len(plateLetters))]
			k /= uint64(len(plateLetters))
		case '9':
			out[i] = byte('0' + k%10)
			k /= 10
		}
	}
	return string(out)
}

// PlateGen hands out plates of one shape, never the same one twice within a
// run (up to the shape's size, millions), in an order fixed by the seed: a
// plate is unique while parked because it is unique, full stop. Safe for
// concurrent use.
type PlateGen struct {
	shape PlateShape
	n     uint64 // size of the shape
	a, b  uint64 // k -> (a*k + b) mod n, a bijection because gcd(a, n) = 1
	next  atomic.Uint64
}

// NewPlateGen returns a generator for shape, its order drawn from seed.
func NewPlateGen(shape PlateShape, seed uint64) *PlateGen {
	g := &PlateGen{shape: shape, n: shape.size()}
	r := rand.New(rand.NewPCG(seed, uint64(len(shape))<<32|g.n))
	for {
		g.a = 1 + r.Uint64N(g.n-1)
		if gcd(g.a, g.n) == 1 {
			break
		}
	}
	g.b = r.Uint64N(g.n)
	return g
}

// At is the k-th plate of the generator's order.
func (g *PlateGen) At(k uint64) string {
	return g.shape.plate((g.a*(k%g.n) + g.b) % g.n) // a, k < 2^23: no overflow
}

// Next returns the next plate.
func (g *PlateGen) Next() string { return g.At(g.next.Add(1) - 1) }

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
