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
