package bench

import "testing"

func TestOpStatsCounts(t *testing.T) {
	s := NewOpStats()
	s.ok.Add(3)
	s.pending.Add(1)
	s.Fail("503 unavailable")
	s.Fail("503 unavailable")
	s.Fail("transport: timeout")
	r := s.Result()
	if r.OK != 3 || r.Pending != 1 || r.ErrorCount() != 3 || r.Errors["503 unavailable"] != 2 {
		t.Fatalf("result = %+v", r)
	}
	if got := errs(r); got != "errors 3 (2× 503 unavailable, 1× transport: timeout)" {
		t.Fatalf("errs = %q", got)
	}
}
