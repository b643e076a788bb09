package cluster

import (
	"strings"
	"sync"
	"testing"
)

func TestLineWriterCountsLevels(t *testing.T) {
	var out strings.Builder
	w := &lineWriter{prefix: "[worker-1] ", dst: &out, mu: new(sync.Mutex)}
	_, _ = w.Write([]byte("time=x level=WARN msg=\"slow\"\ntime=x level=ERR"))
	_, _ = w.Write([]byte("OR msg=boom\n{\"level\":\"WARN\",\"msg\":\"json\"}\nplain\n"))
	c := w.Counts()
	if c.Warn != 2 || c.Error != 1 || len(c.Sample) != 3 {
		t.Fatalf("counts = %+v", c)
	}
	if !strings.HasPrefix(out.String(), "[worker-1] time=x level=WARN") || strings.Count(out.String(), "[worker-1] ") != 4 {
		t.Fatalf("forwarded:\n%s", out.String())
	}
	if !strings.HasSuffix(w.Tail(), "plain") {
		t.Fatalf("tail = %q", w.Tail())
	}
}

// An intake is named "intake" when it is the only one, so that the reports
// of a one-intake topology read as they always have; with more, each has
// its index, like workers.
func TestProcNames(t *testing.T) {
	for _, c := range []struct {
		p    *Proc
		want string
	}{
		{&Proc{Role: RoleServe, Index: 1, only: true}, "serve"},
		{&Proc{Role: RoleIntake, Index: 1, only: true}, "intake"},
		{&Proc{Role: RoleIntake, Index: 2}, "intake-2"},
		{&Proc{Role: RoleWorker, Index: 1, only: true}, "worker-1"},
		{&Proc{Role: RoleScheduler, Index: 3}, "scheduler-3"},
	} {
		if got := c.p.Name(); got != c.want {
			t.Errorf("%s %d: name %q, want %q", c.p.Role, c.p.Index, got, c.want)
		}
	}
}
